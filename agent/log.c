/* log.c — stderr (with a time stamp and level, or with the syslog priority
 * prefix the journal reads) or syslog. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

#define LOG_LINE_MAX 2048 /* bytes of one line, after the key is scrubbed */

/* true when stderr is the stream systemd connected to the journal:
 * $JOURNAL_STREAM is "DEVICE:INODE" of that stream (systemd.exec(5)), so a
 * stderr redirected elsewhere by a child's caller is not taken for it. */
static bool stderr_is_journal(void)
{
	const char *js = getenv("JOURNAL_STREAM");
	unsigned long long dev, ino;
	struct stat st;
	if (!js || sscanf(js, "%llu:%llu", &dev, &ino) != 2 || fstat(STDERR_FILENO, &st) != 0)
		return false;
	return (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino;
}

void agent_log_open(struct agent_log *l, int level, const char *target)
{
	bool use_syslog = target && strcmp(target, "syslog") == 0;
	if (l->syslog && !use_syslog)
		closelog();
	if (use_syslog && !l->syslog)
		openlog(l->ident ? l->ident : "spool-agent", LOG_PID, LOG_DAEMON);
	l->level = level;
	l->syslog = use_syslog;
	l->journal = !use_syslog && ((target && strcmp(target, "journal") == 0) || stderr_is_journal());
}

void agent_log_close(struct agent_log *l)
{
	if (l->syslog)
		closelog();
	l->syslog = false;
	agent_log_set_secret(l, NULL);
}

void agent_log_set_secret(struct agent_log *l, const char *key)
{
	if (l->secret) {
		explicit_bzero(l->secret, strlen(l->secret));
		free(l->secret);
	}
	l->secret = key && strlen(key) >= 8 ? strdup(key) : NULL;
}

/* Copies msg to out with every copy of the secret replaced. */
static void scrub(const char *msg, const char *secret, char *out, size_t len)
{
	static const char mark[] = "[api key]";
	size_t sl = strlen(secret), n = 0;
	while (*msg && n + 1 < len) {
		if (strncmp(msg, secret, sl) == 0) {
			if (n + sizeof(mark) > len)
				break; /* no room for the mark: cut here, never in the key */
			memcpy(out + n, mark, sizeof(mark) - 1);
			n += sizeof(mark) - 1;
			msg += sl;
		} else {
			out[n++] = *msg++;
		}
	}
	out[n] = '\0';
}

static const char *level_name(int level)
{
	switch (level) {
	case LOG_EMERG:
	case LOG_ALERT:
	case LOG_CRIT:
	case LOG_ERR:
		return "error";
	case LOG_WARNING:
		return "warning";
	case LOG_NOTICE:
	case LOG_INFO:
		return "info";
	default:
		return "debug";
	}
}

void agent_log(void *ctx, int level, const char *fmt, ...)
{
	struct agent_log *l = ctx;
	if (l && level > l->level)
		return;
	/* the whole line first: a key must be scrubbed before the line is cut
	 * to LOG_LINE_MAX, or a cut key would be left in part */
	char small[LOG_LINE_MAX], *full = small;
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(small, sizeof(small), fmt, ap);
	va_end(ap);
	if (n >= (int)sizeof(small)) {
		full = malloc((size_t)n + 1);
		if (full) {
			va_start(ap, fmt);
			vsnprintf(full, (size_t)n + 1, fmt, ap);
			va_end(ap);
		} else {
			full = small; /* cut: drop the last bytes that could hold a key */
			size_t keep = sizeof(small) - 1, kl = l && l->secret ? strlen(l->secret) : 0;
			small[keep > kl ? keep - kl : 0] = '\0';
		}
	}
	char msg[LOG_LINE_MAX];
	if (l && l->secret && strstr(full, l->secret))
		scrub(full, l->secret, msg, sizeof(msg));
	else
		snprintf(msg, sizeof(msg), "%s", full);
	if (full != small)
		free(full);
	if (l && l->syslog) {
		syslog(level, "%s", msg);
		return;
	}
	if (l && l->journal) {
		/* one record per line: a line break in a message (a server's
		 * answer, say) would start a record without a priority */
		for (char *c = msg; *c; c++)
			if (*c == '\n' || *c == '\r')
				*c = ' ';
		fprintf(stderr, "<%d>%s\n", level, msg);
		return;
	}
	struct timespec ts;
	struct tm tm;
	char when[32];
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm);
	fprintf(stderr, "%s.%03ldZ %s[%ld] %s: %s\n", when, ts.tv_nsec / 1000000,
		l->ident ? l->ident : "spool-agent", (long)getpid(),
		level_name(level), msg);
}
