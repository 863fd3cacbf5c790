/* log.c — stderr (with a time stamp and level) or syslog. */
#include <stdarg.h>
#include <stdio.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

void agent_log_open(struct agent_log *l, int level, bool use_syslog)
{
	if (l->syslog && !use_syslog)
		closelog();
	if (use_syslog && !l->syslog)
		openlog("spool-agent", LOG_PID, LOG_DAEMON);
	l->level = level;
	l->syslog = use_syslog;
}

void agent_log_close(struct agent_log *l)
{
	if (l->syslog)
		closelog();
	l->syslog = false;
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
	char msg[2048];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (l && l->syslog) {
		syslog(level, "%s", msg);
		return;
	}
	struct timespec ts;
	struct tm tm;
	char when[32];
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm);
	fprintf(stderr, "%s.%03ldZ spool-agent[%ld] %s: %s\n", when, ts.tv_nsec / 1000000, (long)getpid(),
		level_name(level), msg);
}
