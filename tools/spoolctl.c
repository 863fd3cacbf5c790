/* spoolctl — see and act on a spool directory without writing code: status,
 * peek, dead letters, purge, verify, compact, export and import.
 * docs/spoolctl.md describes every command and its exit codes:
 * 0 success, 1 failure or problems found, 2 usage error. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "codec/json.h"
#include <spool/spool.h>

#include "project_version.h"
#include "prom.h"
#include "spoolctl.h"
#include "window.h"


static void usage(FILE *f)
{
	fprintf(f, "Usage: spoolctl [--spool DIR] COMMAND [OPTIONS]\n"
	           "\n"
	           "Commands:\n"
	           "  status [--json|--prometheus]     backlog, counters, agent, send rate\n"
	           "  peek [-n N] [--json] [--severity S] [--since TIME]\n"
	           "                                   the oldest pending events\n"
	           "  dead list [--json]               dead letters with status and reason\n"
	           "  dead retry (SEQ...|--all)        put dead letters back into the queue\n"
	           "  dead purge (SEQ...|--all)        delete dead letters for good\n"
	           "  purge (--before TIME|--severity S|--all) --yes\n"
	           "                                   delete pending events (counted as evicted)\n"
	           "  verify [--repair] [--json]       check records and counters\n"
	           "  compact [--json]                 give the file's free space back\n"
	           "  export FILE [--delete]           write pending events to one file\n"
	           "  import FILE                      append the events of an export file\n"
	           "\n"
	           "Options:\n"
	           "  --spool DIR  spool directory (default: MASTER_LOG_SPOOL_DIR, else\n"
	           "               /var/spool/master-log for root and group master-log, else\n"
	           "               ~/.local/state/master-log/spool)\n"
	           "  -h, --help   this text (and `spoolctl COMMAND --help`)\n"
	           "  --version    print the version\n"
	           "\n"
	           "TIME: seconds since the epoch, 2026-11-24, 2026-11-24T14:29:21Z (UTC), or\n"
	           "an age: 90s, 30m, 12h, 7d.\n"
	           "\n"
	           "Exit status: 0 on success, 1 on failure or when problems are found, 2 for\n"
	           "a usage error.\n");
}

/* ---- helpers ---- */

static int parse_u64(const char *s, uint64_t *out)
{
	if (!s || !*s || *s == '-' || *s == '+')
		return -1;
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno || *end)
		return -1;
	*out = v;
	return 0;
}

int64_t now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* TIME (see usage) to microseconds since the epoch; 0 or -1. */
static int parse_time(const char *s, int64_t *out)
{
	uint64_t v;
	if (parse_u64(s, &v) == 0 && v < ((uint64_t)1 << 40)) {
		*out = (int64_t)v * 1000000;
		return 0;
	}
	size_t len = strlen(s);
	if (len >= 2 && len < 20 && strchr("smhd", s[len - 1])) {
		char num[24];
		memcpy(num, s, len - 1);
		num[len - 1] = '\0';
		if (parse_u64(num, &v) == 0 && v < ((uint64_t)1 << 32)) {
			int64_t unit = s[len - 1] == 's'   ? 1
			               : s[len - 1] == 'm' ? 60
			               : s[len - 1] == 'h' ? 3600
			                                   : 86400;
			*out = now_us() - (int64_t)v * unit * 1000000;
			return 0;
		}
	}
	struct tm tm = {0};
	int used = 0;
	if (sscanf(s, "%4d-%2d-%2d%n", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &used) != 3 ||
	    used != 10)
		return -1;
	const char *p = s + used;
	if (*p == 'T' || *p == ' ') {
		int hh, mm, ss = 0, n = 0;
		if (sscanf(p + 1, "%2d:%2d%n", &hh, &mm, &n) != 2 || n != 5)
			return -1;
		p += 1 + n;
		if (*p == ':') {
			if (sscanf(p + 1, "%2d%n", &ss, &n) != 1 || n != 2)
				return -1;
			p += 1 + n;
		}
		tm.tm_hour = hh;
		tm.tm_min = mm;
		tm.tm_sec = ss;
	}
	if (*p == 'Z')
		p++;
	if (*p || tm.tm_mon < 1 || tm.tm_mon > 12 || tm.tm_mday < 1 || tm.tm_mday > 31 ||
	    tm.tm_hour > 23 || tm.tm_min > 59 || tm.tm_sec > 60)
		return -1;
	tm.tm_year -= 1900;
	tm.tm_mon -= 1;
	*out = (int64_t)timegm(&tm) * 1000000;
	return 0;
}

void fmt_time(int64_t us, char *buf, size_t len)
{
	time_t t = (time_t)(us / 1000000);
	struct tm tm;
	if (us <= 0 || !gmtime_r(&t, &tm)) {
		snprintf(buf, len, "-");
		return;
	}
	char day[32];
	strftime(day, sizeof(day), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(buf, len, "%s.%03dZ", day, (int)(us % 1000000 / 1000));
}

/* The event's message for people: control bytes as '?', at most 300 bytes. */
static void put_message(FILE *f, const void *data, size_t len)
{
	const char *m;
	size_t ml;
	if (spool_event_get_str(data, len, "message", &m, &ml) != 0) {
		fputs("(no message)", f);
		return;
	}
	size_t shown = ml > 300 ? 300 : ml;
	for (size_t i = 0; i < shown; i++) {
		unsigned char c = (unsigned char)m[i];
		fputc(c < 0x20 || c == 0x7f ? '?' : c, f);
	}
	if (shown < ml)
		fputs("...", f);
}

/* The directory from --spool, else the default; 0 or EXIT_USAGE. */
static int resolve_dir(char *dir, size_t len)
{
	if (dir[0])
		return 0;
	int rc = spool_default_dir(dir, len);
	if (rc) {
		fprintf(stderr, "spoolctl: no spool directory: %s\n", spool_strerror(rc));
		return EXIT_USAGE;
	}
	return 0;
}

/* Opens the spool for an operator: sync mode (no ring of its own), no
 * limits (the operator's own actions are never refused as "full").  Unless
 * `create`, the spool must exist already. */
struct spool *open_spool(const char *dir, bool create)
{
	char data[4200];
	struct stat st;
	snprintf(data, sizeof(data), "%s/data.mdb", dir);
	if (!create && stat(data, &st) != 0) {
		fprintf(stderr, "spoolctl: %s: no spool there (%s)\n", dir, strerror(errno));
		return NULL;
	}
	struct spool_options opt;
	spool_options_init(&opt);
	opt.durability = SPOOL_SYNC;
	opt.max_bytes = 0;
	opt.max_events = 0;
	opt.max_record_bytes = (size_t)256 << 20;
	char err[512];
	struct spool *s;
	int rc = spool_open(dir, &opt, &s, err, sizeof(err));
	if (rc) {
		fprintf(stderr, "spoolctl: %s\n", err);
		return NULL;
	}
	return s;
}

/* getopt_long over a command's own arguments (argv[0] is the command). */
static void getopt_reset(void)
{
	optind = 0;
	opterr = 1;
}

static bool wants_help(int argc, char **argv)
{
	for (int i = 1; i < argc; i++)
		if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)
			return true;
	return false;
}

/* ---- status ---- */

/* A text value the agent keeps in the meta store, or "" when absent. */
static void meta_text(struct spool *s, const char *key, char *buf, size_t len)
{
	size_t n = len - 1;
	if (spool_meta_get(s, key, buf, &n) != 0)
		n = 0;
	buf[n] = '\0';
}

static void put_json_str(FILE *f, const char *s)
{
	struct spool_buf b = {0};
	if (spool_json_string(&b, s, strlen(s)) == 0 && b.len)
		fwrite(b.data, 1, b.len, f);
	else
		fputs("null", f);
	spool_buf_free(&b);
}

/* The agent's send windows, as it published them in meta
 * "agent.send_windows" (the entries as written, joined by commas), and
 * where they stand now in this machine's local time. */
struct send_windows {
	char text[4096];
	const char *item[WINDOW_MAX + 1];
	size_t n; /* 0: none, always sending */
	bool ok;  /* parsed */
	bool open;
	time_t until; /* open: when it closes (0: never) */
	time_t next;  /* closed: when the next opens */
};

static void read_windows(struct spool *s, struct send_windows *w, time_t now)
{
	memset(w, 0, sizeof(*w));
	meta_text(s, "agent.send_windows", w->text, sizeof(w->text));
	for (char *save = NULL, *t = strtok_r(w->text, ",", &save); t && w->n <= WINDOW_MAX;
	     t = strtok_r(NULL, ",", &save))
		w->item[w->n++] = t;
	struct window_set set;
	char why[300];
	w->ok = window_parse(w->item, w->n, &set, why, sizeof(why)) == 0;
	if (w->ok) /* no windows: always open */
		w->open = window_open_at(&set, now, &w->until, &w->next);
}

/* Files set aside after a crash, which `verify` names and `verify --repair`
 * removes: rings left unreadable (rings/ring-<id>.bad) and the data.mdb of a
 * creation cut short (data.mdb.unfinished-<time>). */
static void count_set_aside(const char *dir, unsigned *bad_rings, unsigned *unfinished)
{
	*bad_rings = *unfinished = 0;
	char path[PATH_MAX + 8];
	snprintf(path, sizeof(path), "%s/rings", dir);
	const char *where[2] = {path, dir};
	for (int i = 0; i < 2; i++) {
		DIR *d = opendir(where[i]);
		struct dirent *de;
		while (d && (de = readdir(d)) != NULL) {
			size_t len = strlen(de->d_name);
			if (i == 0 && strncmp(de->d_name, "ring-", 5) == 0 && len > 4 &&
			    strcmp(de->d_name + len - 4, ".bad") == 0)
				(*bad_rings)++;
			else if (i == 1 && strncmp(de->d_name, "data.mdb.unfinished-", 20) == 0)
				(*unfinished)++;
		}
		if (d)
			closedir(d);
	}
}

/* The spool's figures into *st; on failure says so on stderr and returns
 * non-zero. */
static int read_stats(struct spool *s, struct spool_stats *st)
{
	int rc = spool_stats(s, st);
	if (rc)
		fprintf(stderr, "spoolctl: %s: cannot read the figures: %s\n", spool_dir(s),
		        spool_strerror(rc));
	return rc;
}

static int cmd_status(struct spool *s, bool json)
{
	struct spool_stats st;
	if (read_stats(s, &st) != 0)
		return 1;
	long pid = 0;
	int running = spool_agent_running(s, &pid);
	char success[64], error[1024], spe_text[64];
	meta_text(s, "agent.last_success", success, sizeof(success));
	meta_text(s, "agent.last_error", error, sizeof(error));
	meta_text(s, "agent.send_seconds_per_event", spe_text, sizeof(spe_text));
	double spe = spe_text[0] ? strtod(spe_text, NULL) : -1;
	double drain = spe > 0 ? spe * (double)st.pending : -1;
	time_t now = time(NULL);
	struct send_windows win;
	read_windows(s, &win, now);
	unsigned bad_rings, unfinished;
	count_set_aside(spool_dir(s), &bad_rings, &unfinished);
	if (json) {
		printf("{\"spool\":");
		put_json_str(stdout, spool_dir(s));
		printf(",\"pending\":%" PRIu64 ",\"pending_bytes\":%" PRIu64
		       ",\"oldest_age_seconds\":%.3f,\"dead\":%" PRIu64
		       ",\"appended_total\":%" PRIu64 ",\"acked_total\":%" PRIu64
		       ",\"dead_total\":%" PRIu64 ",\"evicted_total\":%" PRIu64
		       ",\"dropped_total\":%" PRIu64 ",\"corrupt_total\":%" PRIu64
		       ",\"torn_total\":%" PRIu64 ",\"agent_running\":%s,\"agent_pid\":%ld",
		       st.pending, st.pending_bytes, st.oldest_age_seconds, st.dead,
		       st.appended_total, st.acked_total, st.dead_total, st.evicted_total,
		       st.dropped_total, st.corrupt_total, st.torn_total,
		       running == 1 ? "true" : "false", running == 1 ? pid : 0L);
		printf(",\"last_success\":");
		if (success[0])
			printf("%s", success);
		else
			printf("null");
		printf(",\"last_error\":");
		if (error[0])
			put_json_str(stdout, error);
		else
			printf("null");
		if (spe > 0)
			printf(",\"send_seconds_per_event\":%.9f,\"drain_seconds_estimate\":%.1f",
			       spe, drain);
		else
			printf(",\"send_seconds_per_event\":null,\"drain_seconds_estimate\":null");
		printf(",\"send_windows\":[");
		for (size_t i = 0; i < win.n; i++) {
			printf("%s", i ? "," : "");
			put_json_str(stdout, win.item[i]);
		}
		printf("]");
		if (win.ok)
			printf(",\"sending_now\":%s", win.open ? "true" : "false");
		else
			printf(",\"sending_now\":null");
		printf(",\"window_closes_at\":%lld,\"window_opens_at\":%lld", (long long)win.until,
		       (long long)win.next);
		printf(",\"bad_rings\":%u,\"set_aside\":%u", bad_rings, unfinished);
		printf(",\"file_bytes\":%" PRIu64 "}\n", st.file_bytes);
		return 0;
	}
	printf("spool          %s\n", spool_dir(s));
	printf("pending        %" PRIu64 " events, %" PRIu64 " bytes", st.pending,
	       st.pending_bytes);
	if (st.pending)
		printf(", oldest %.1f s old", st.oldest_age_seconds);
	printf("\ndead letters   %" PRIu64 "\n", st.dead);
	printf("counters       appended %" PRIu64 ", acked %" PRIu64 ", dead-lettered %" PRIu64
	       ", evicted %" PRIu64 ", dropped %" PRIu64 ", corrupt %" PRIu64 ", torn %" PRIu64
	       "\n",
	       st.appended_total, st.acked_total, st.dead_total, st.evicted_total, st.dropped_total,
	       st.corrupt_total, st.torn_total);
	if (running == 1)
		printf("agent          running (pid %ld)\n", pid);
	else
		printf("agent          not running\n");
	if (success[0]) {
		time_t t = (time_t)strtod(success, NULL);
		char when[64];
		strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S UTC", gmtime(&t));
		printf("last success   %s\n", when);
	}
	if (error[0]) {
		/* the agent writes "<unix time> <message>" */
		char *rest;
		double t = strtod(error, &rest);
		if (rest != error && *rest == ' ' && t > 0) {
			char when[64];
			fmt_time((int64_t)(t * 1e6), when, sizeof(when));
			printf("last error     %s: %s\n", when, rest + 1);
		} else {
			printf("last error     %s\n", error);
		}
	}
	if (spe > 0)
		printf("send time      %.1f us per event; backlog drains in about %.0f s\n",
		       spe * 1e6, drain);
	if (win.n) {
		char when[128];
		printf("send windows   ");
		for (size_t i = 0; i < win.n; i++)
			printf("%s%s", i ? ", " : "", win.item[i]);
		printf(" (Z: UTC; else local time)\n");
		if (!win.ok) {
			printf("               not understood by this spoolctl\n");
		} else if (win.open && !win.until) {
			printf("               sending now (the windows cover the whole day)\n");
		} else if (win.open) {
			window_when(win.until, now, when, sizeof(when));
			printf("               sending now; the window closes at %s\n", when);
		} else {
			window_when(win.next, now, when, sizeof(when));
			printf("               next window opens at %s\n", when);
		}
	}
	printf("file           %" PRIu64 " bytes\n", st.file_bytes);
	if (bad_rings || unfinished)
		printf("set aside      %u unreadable ring(s) (rings/ring-*.bad), %u unfinished "
		       "data.mdb (data.mdb.unfinished-*) after a crash: see `spoolctl verify`\n",
		       bad_rings, unfinished);
	return 0;
}

static int cmd_status_prometheus(struct spool *s)
{
	struct spool_stats st;
	if (read_stats(s, &st) != 0)
		return 1;
	if (prom_write(stdout, &st, NULL) != 0) {
		fprintf(stderr, "spoolctl: status: cannot write: %s\n", strerror(errno));
		return 1;
	}
	return 0;
}

static const char STATUS_HELP[] =
    "Usage: spoolctl [--spool DIR] status [--json|--prometheus]\n\n"
    "Shows the spool's backlog, counters and agent; --json prints one\n"
    "object with the keys pending, pending_bytes, oldest_age_seconds, dead,\n"
    "appended_total, acked_total, dead_total, evicted_total, dropped_total,\n"
    "agent_running, last_success, last_error, send_windows, sending_now (and a\n"
    "few more).  --prometheus prints the spool's figures in the Prometheus\n"
    "text format, as the agent's metrics_listen serves them (for\n"
    "node_exporter's textfile collector: write to a temporary file, then\n"
    "rename it into the collector's folder).\n"
    "Exit status: 0, 1 when the spool cannot be read, 2 for a usage error.\n";

static int run_status(int argc, char **argv, const char *dir)
{
	bool json = false, prometheus = false;
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--json") == 0) {
			json = true;
		} else if (strcmp(argv[i], "--prometheus") == 0) {
			prometheus = true;
		} else {
			fprintf(stderr, "spoolctl: status: unknown option '%s'\n", argv[i]);
			return EXIT_USAGE;
		}
	}
	if (json && prometheus) {
		fprintf(stderr, "spoolctl: status: --json and --prometheus exclude each other\n");
		return EXIT_USAGE;
	}
	struct spool *s = open_spool(dir, false);
	if (!s)
		return EXIT_FAIL;
	int status = prometheus ? cmd_status_prometheus(s) : cmd_status(s, json);
	spool_close(s);
	return status;
}

/* ---- peek ---- */

static const char PEEK_HELP[] =
    "Usage: spoolctl [--spool DIR] peek [-n N] [--json] [--severity S] [--since TIME]\n\n"
    "Shows the oldest pending events (default 10), oldest first, as the agent\n"
    "would send them: seq, enqueue time (UTC), severity and message; with\n"
    "--json one JSON event per line, with metadata.c_client.spool_seq.\n"
    "--severity S shows only events of that severity; --since TIME only those\n"
    "enqueued at or after TIME.  -n N (or --count N) shows N events; -n 0\n"
    "shows them all.  Like the agent, reading\n"
    "moves a record that fails its checksum to the dead letters.\n"
    "Exit status: 0, 1 when the spool cannot be read, 2 for a usage error.\n";

static int run_peek(int argc, char **argv, const char *dir)
{
	static const struct option opts[] = {
	    {"json", no_argument, NULL, 'j'},
	    {"severity", required_argument, NULL, 's'},
	    {"since", required_argument, NULL, 't'},
	    {"count", required_argument, NULL, 'n'},
	    {NULL, 0, NULL, 0},
	};
	uint64_t want = 10;
	bool json = false;
	int sev = -1;
	int64_t since = INT64_MIN;
	int c;
	getopt_reset();
	while ((c = getopt_long(argc, argv, "n:", opts, NULL)) != -1) {
		if (c == 'j') {
			json = true;
		} else if (c == 'n' && parse_u64(optarg, &want) == 0) {
		} else if (c == 's' && spool_severity_parse(optarg, &sev) == 0) {
		} else if (c == 't' && parse_time(optarg, &since) == 0) {
		} else {
			if (c != '?')
				fprintf(stderr, "spoolctl: peek: bad value '%s'\n", optarg);
			return EXIT_USAGE;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "spoolctl: peek: unexpected argument '%s'\n", argv[optind]);
		return EXIT_USAGE;
	}
	struct spool *s = open_spool(dir, false);
	if (!s)
		return EXIT_FAIL;
	uint64_t after = 0, shown = 0;
	int rc = 0;
	struct spool_buf out = {0};
	while (want == 0 || shown < want) {
		struct spool_batch *b;
		rc = spool_read_batch(s, after, CHUNK, 0, &b);
		if (rc)
			break;
		size_t n = spool_batch_count(b);
		const struct spool_record *r = spool_batch_records(b);
		for (size_t i = 0; i < n && (want == 0 || shown < want); i++) {
			after = r[i].seq;
			if ((sev >= 0 && r[i].severity != sev) || r[i].enqueue_us < since)
				continue;
			shown++;
			if (json) {
				struct spool_json_extra x = {.flags = SPOOL_JSON_SEQ,
				                             .spool_seq = r[i].seq};
				out.len = 0;
				if (spool_event_to_json(r[i].data, r[i].len, &x, &out) == 0) {
					fwrite(out.data, 1, out.len, stdout);
					fputc('\n', stdout);
				}
				continue;
			}
			char when[48];
			fmt_time(r[i].enqueue_us, when, sizeof(when));
			printf("%-8" PRIu64 " %s %-5s ", r[i].seq, when,
			       spool_severity_name(r[i].severity));
			put_message(stdout, r[i].data, r[i].len);
			fputc('\n', stdout);
		}
		spool_batch_release(b);
		if (n == 0)
			break;
	}
	spool_buf_free(&out);
	spool_close(s);
	if (rc) {
		fprintf(stderr, "spoolctl: %s: cannot read events: %s\n", dir, spool_strerror(rc));
		return EXIT_FAIL;
	}
	if (!json && shown == 0)
		printf("no pending events%s\n", sev >= 0 || since != INT64_MIN ? " match" : "");
	return 0;
}

/* ---- dead letters ---- */

static const char DEAD_HELP[] =
    "Usage: spoolctl [--spool DIR] dead list [--json]\n"
    "       spoolctl [--spool DIR] dead retry (SEQ...|--all)\n"
    "       spoolctl [--spool DIR] dead purge (SEQ...|--all)\n\n"
    "list   every dead letter: seq, when it died, the status that rejected it\n"
    "       (an HTTP code, or a negative spool code such as -30602 for a corrupt\n"
    "       record), the reason, severity and message; --json: one object per line\n"
    "       {seq, dead_at, status, reason, severity, enqueue_us, event}.\n"
    "retry  moves the dead letters back into the queue, behind what is pending,\n"
    "       under new sequence numbers, in their original order (counted as\n"
    "       appended).  Corrupt records cannot be retried and stay dead.\n"
    "purge  deletes the dead letters for good.\n"
    "Exit status: 0; 1 on failure, or when a SEQ given was not retried or purged\n"
    "(not a dead letter, or corrupt); 2 for a usage error.\n";

static void put_json_event_or_null(FILE *f, const struct spool_record *r, struct spool_buf *out)
{
	out->len = 0;
	if (r->severity >= 0 && spool_event_to_json(r->data, r->len, NULL, out) == 0)
		fwrite(out->data, 1, out->len, f);
	else
		fputs("null", f);
}

static int dead_list(struct spool *s, bool json)
{
	uint64_t after = 0, total = 0;
	struct spool_buf out = {0};
	int rc;
	for (;;) {
		struct spool_batch *b;
		rc = spool_read_dead(s, after, CHUNK, &b);
		if (rc)
			break;
		size_t n = spool_batch_count(b);
		const struct spool_record *r = spool_batch_records(b);
		for (size_t i = 0; i < n; i++) {
			char when[48];
			after = r[i].seq;
			total++;
			fmt_time(r[i].dead_us, when, sizeof(when));
			const char *reason = r[i].dead_reason ? r[i].dead_reason : "";
			if (json) {
				printf("{\"seq\":%" PRIu64
				       ",\"dead_at\":\"%s\",\"status\":%d,\"reason\":",
				       r[i].seq, when, r[i].dead_status);
				put_json_str(stdout, reason);
				printf(",\"severity\":");
				if (r[i].severity >= 0)
					printf("\"%s\"", spool_severity_name(r[i].severity));
				else
					printf("null");
				printf(",\"enqueue_us\":%" PRId64 ",\"event\":", r[i].enqueue_us);
				put_json_event_or_null(stdout, &r[i], &out);
				printf("}\n");
				continue;
			}
			printf("%-8" PRIu64 " %s status %d  %s\n         ", r[i].seq, when,
			       r[i].dead_status, reason);
			if (r[i].severity >= 0) {
				printf("%-5s ", spool_severity_name(r[i].severity));
				put_message(stdout, r[i].data, r[i].len);
			} else {
				printf("(corrupt record, %zu bytes)", r[i].len);
			}
			fputc('\n', stdout);
		}
		spool_batch_release(b);
		if (n == 0)
			break;
	}
	spool_buf_free(&out);
	if (rc) {
		fprintf(stderr, "spoolctl: %s: cannot read dead letters: %s\n", spool_dir(s),
		        spool_strerror(rc));
		return EXIT_FAIL;
	}
	if (!json)
		printf("%" PRIu64 " dead letter%s\n", total, total == 1 ? "" : "s");
	return 0;
}

static int run_dead(int argc, char **argv, const char *dir)
{
	if (argc < 2) {
		fprintf(stderr, "spoolctl: dead: list, retry or purge?\n%s", DEAD_HELP);
		return EXIT_USAGE;
	}
	const char *what = argv[1];
	bool list = strcmp(what, "list") == 0, retry = strcmp(what, "retry") == 0;
	if (!list && !retry && strcmp(what, "purge") != 0) {
		fprintf(stderr, "spoolctl: dead: unknown subcommand '%s'\n", what);
		return EXIT_USAGE;
	}
	bool json = false, all = false;
	uint64_t *seqs = calloc((size_t)argc, sizeof(*seqs));
	size_t n = 0;
	if (!seqs)
		return EXIT_FAIL;
	for (int i = 2; i < argc; i++) {
		if (list && strcmp(argv[i], "--json") == 0) {
			json = true;
		} else if (!list && strcmp(argv[i], "--all") == 0) {
			all = true;
		} else if (!list && parse_u64(argv[i], &seqs[n]) == 0) {
			n++;
		} else {
			fprintf(stderr, "spoolctl: dead %s: bad argument '%s'\n", what, argv[i]);
			free(seqs);
			return EXIT_USAGE;
		}
	}
	if (!list && (all == (n > 0))) {
		fprintf(stderr, "spoolctl: dead %s: give sequence numbers or --all (not both)\n",
		        what);
		free(seqs);
		return EXIT_USAGE;
	}
	struct spool *s = open_spool(dir, false);
	if (!s) {
		free(seqs);
		return EXIT_FAIL;
	}
	int status = 0;
	if (list) {
		status = dead_list(s, json);
	} else {
		uint64_t done = 0;
		int rc = retry ? spool_dead_retry(s, all ? NULL : seqs, n, all, &done)
		               : spool_dead_purge(s, all ? NULL : seqs, n, all, &done);
		if (rc) {
			fprintf(stderr, "spoolctl: %s: dead %s failed: %s\n", dir, what,
			        spool_strerror(rc));
			status = EXIT_FAIL;
		} else {
			printf("%s %" PRIu64 " dead letter%s\n", retry ? "retried" : "purged", done,
			       done == 1 ? "" : "s");
			/* duplicates on the command line count once */
			size_t distinct = 0;
			for (size_t i = 0; i < n; i++) {
				bool dup = false;
				for (size_t j = 0; j < i && !dup; j++)
					dup = seqs[j] == seqs[i];
				distinct += !dup;
			}
			if (!all && done < distinct) {
				fprintf(stderr,
				        "spoolctl: dead %s: %zu of the sequences given %s\n", what,
				        distinct - (size_t)done,
				        retry ? "are not dead letters or hold a corrupt record"
				              : "are not dead letters");
				status = EXIT_FAIL;
			}
		}
	}
	spool_close(s);
	free(seqs);
	return status;
}

/* ---- purge ---- */

static const char PURGE_HELP[] =
    "Usage: spoolctl [--spool DIR] purge (--before TIME | --severity S | --all) [--yes]\n\n"
    "Deletes pending events that will then never be sent: those enqueued before\n"
    "TIME, those of severity S (both given: those matching both), or all.\n"
    "They are counted as evicted (evicted_total).  Without --yes nothing is\n"
    "deleted: it says how many would be, and exits 2.\n"
    "Exit status: 0 when purged; 1 on failure; 2 for a usage error or without --yes.\n";

static int run_purge(int argc, char **argv, const char *dir)
{
	static const struct option opts[] = {
	    {"before", required_argument, NULL, 'b'},
	    {"severity", required_argument, NULL, 's'},
	    {"all", no_argument, NULL, 'a'},
	    {"yes", no_argument, NULL, 'y'},
	    {NULL, 0, NULL, 0},
	};
	int64_t before = 0;
	bool has_before = false, all = false, yes = false;
	int sev = -1, c;
	getopt_reset();
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (c == 'b' && parse_time(optarg, &before) == 0) {
			has_before = true;
		} else if (c == 's' && spool_severity_parse(optarg, &sev) == 0) {
		} else if (c == 'a') {
			all = true;
		} else if (c == 'y') {
			yes = true;
		} else {
			if (c != '?')
				fprintf(stderr, "spoolctl: purge: bad value '%s'\n", optarg);
			return EXIT_USAGE;
		}
	}
	if (optind < argc || (all && (has_before || sev >= 0)) ||
	    (!all && !has_before && sev < 0)) {
		fprintf(stderr, "spoolctl: purge: give --before TIME, --severity S, or --all\n");
		return EXIT_USAGE;
	}
	struct spool *s = open_spool(dir, false);
	if (!s)
		return EXIT_FAIL;
	struct spool_stats st;
	int rc = spool_stats(s, &st);
	uint64_t *sel = malloc(CHUNK * sizeof(*sel));
	uint64_t after = 0, matched = 0, deleted = 0;
	size_t nsel = 0;
	if (!sel)
		rc = -ENOMEM;
	/* only what was there when we started: not events appended meanwhile */
	while (rc == 0) {
		struct spool_batch *b;
		rc = spool_read_batch(s, after, CHUNK, 0, &b);
		if (rc)
			break;
		size_t n = spool_batch_count(b);
		const struct spool_record *r = spool_batch_records(b);
		bool end = n == 0;
		for (size_t i = 0; i < n; i++) {
			if (r[i].seq >= st.next_seq) {
				end = true;
				break;
			}
			after = r[i].seq;
			if (!all && ((has_before && r[i].enqueue_us >= before) ||
			             (sev >= 0 && r[i].severity != sev)))
				continue;
			matched++;
			if (yes)
				sel[nsel++] = r[i].seq;
		}
		spool_batch_release(b);
		if (nsel > 0) {
			uint64_t d = 0;
			rc = spool_discard(s, sel, nsel, &d);
			deleted += d;
			nsel = 0;
		}
		if (end)
			break;
	}
	free(sel);
	spool_close(s);
	if (rc) {
		fprintf(stderr, "spoolctl: %s: purge failed after %" PRIu64 " events: %s\n", dir,
		        deleted, spool_strerror(rc));
		return EXIT_FAIL;
	}
	if (!yes) {
		printf("would purge %" PRIu64 " of %" PRIu64
		       " pending events; run again with --yes to delete them\n",
		       matched, st.pending);
		return EXIT_USAGE;
	}
	printf("purged %" PRIu64 " events (counted as evicted)\n", deleted);
	return 0;
}

/* ---- verify ---- */

static const char VERIFY_HELP[] =
    "Usage: spoolctl [--spool DIR] verify [--repair] [--json]\n\n"
    "Checks that every pending record decodes (header checksum, one msgpack\n"
    "map), that every dead letter decodes, and that the counters agree with the\n"
    "records: pending count, pending_bytes, per-severity counts, next_seq above\n"
    "every key.  Names the files set aside after a crash: rings left unreadable\n"
    "(rings/ring-*.bad; their sound entries were recovered once) and the data.mdb\n"
    "of a creation cut short (data.mdb.unfinished-*).  Changes nothing, and\n"
    "names each problem.  With --repair, moves bad records to the dead letters\n"
    "(status -30602, counted as corrupt), rewrites the counters from the\n"
    "records, removes the files set aside, then checks again.\n"
    "Exit status: 0 when the spool is sound (after --repair: when it is now);\n"
    "1 when problems are found or the check fails; 2 for a usage error.\n";

static void put_verify_json(const struct spool_verify_report *r,
                            const struct spool_verify_report *after)
{
	printf("{\"ok\":%s,\"records\":%" PRIu64 ",\"bad\":%" PRIu64 ",\"dead\":%" PRIu64
	       ",\"bad_dead\":%" PRIu64 ",\"pending_bytes\":%" PRIu64
	       ",\"stored_pending_bytes\":%" PRIu64 ",\"max_seq\":%" PRIu64
	       ",\"stored_next_seq\":%" PRIu64 ",\"bad_rings\":%" PRIu64
	       ",\"set_aside\":%" PRIu64 ",\"problems\":[",
	       r->problems ? "false" : "true", r->records, r->bad, r->dead, r->bad_dead,
	       r->pending_bytes, r->stored_pending_bytes, r->max_seq, r->stored_next_seq,
	       r->bad_rings, r->set_aside);
	const char *line = r->text;
	bool first = true;
	while (*line) {
		const char *nl = strchr(line, '\n');
		size_t len = nl ? (size_t)(nl - line) : strlen(line);
		struct spool_buf b = {0};
		if (spool_json_string(&b, line, len) == 0 && b.len) {
			printf("%s%s", first ? "" : ",", b.data);
			first = false;
		}
		spool_buf_free(&b);
		line += len + (nl ? 1 : 0);
	}
	printf("]");
	if (after)
		printf(",\"repaired\":%" PRIu64 ",\"files_removed\":%" PRIu64
		       ",\"ok_after_repair\":%s",
		       r->repaired, r->files_removed, after->problems ? "false" : "true");
	printf("}\n");
}

static int run_verify(int argc, char **argv, const char *dir)
{
	bool repair = false, json = false;
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--repair") == 0) {
			repair = true;
		} else if (strcmp(argv[i], "--json") == 0) {
			json = true;
		} else {
			fprintf(stderr, "spoolctl: verify: unknown option '%s'\n", argv[i]);
			return EXIT_USAGE;
		}
	}
	struct spool_verify_report *r = calloc(2, sizeof(*r));
	if (!r)
		return EXIT_FAIL;
	char err[512];
	int rc = spool_verify(dir, repair, &r[0], err, sizeof(err));
	if (rc == 0 && repair && r[0].problems)
		rc = spool_verify(dir, false, &r[1], err, sizeof(err));
	if (rc) {
		fprintf(stderr, "spoolctl: %s\n", err[0] ? err : spool_strerror(rc));
		free(r);
		return EXIT_FAIL;
	}
	const struct spool_verify_report *after = repair && r[0].problems ? &r[1] : NULL;
	unsigned left = after ? after->problems : r[0].problems;
	if (json) {
		put_verify_json(&r[0], after);
	} else {
		printf("checked %" PRIu64 " pending records and %" PRIu64 " dead letters\n",
		       r[0].records, r[0].dead);
		if (r[0].problems)
			printf("problems:\n%s", r[0].text);
		if (after) {
			if (r[0].repaired || r[0].counters_rewritten)
				printf("repaired: %" PRIu64
				       " records moved to the dead letters%s\n",
				       r[0].repaired,
				       r[0].counters_rewritten ? ", counters rewritten" : "");
			if (r[0].files_removed)
				printf("removed: %" PRIu64 " file(s) set aside after a crash\n",
				       r[0].files_removed);
			if (after->problems)
				printf("still wrong:\n%s", after->text);
		}
		printf("%s\n", left ? "NOT OK" : "ok");
	}
	free(r);
	return left ? EXIT_FAIL : 0;
}

/* ---- compact ---- */

static const char COMPACT_HELP[] =
    "Usage: spoolctl [--spool DIR] compact [--json]\n\n"
    "Gives the free space of the spool's file back to the file system (an LMDB\n"
    "file never shrinks by itself): writes a compacting copy, syncs it and\n"
    "renames it over data.mdb.  Needs the spool to itself: refused while any\n"
    "producer, agent or spoolctl has it open, or while rings/ holds ring files\n"
    "of producers that died (open the spool once, e.g. `spoolctl status`, to\n"
    "move them in; rings set aside as ring-*.bad do not count).  Reports the\n"
    "file size before and after.\n"
    "Exit status: 0; 1 when refused or failed; 2 for a usage error.\n";

static int run_compact(int argc, char **argv, const char *dir)
{
	bool json = false;
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--json") == 0) {
			json = true;
		} else {
			fprintf(stderr, "spoolctl: compact: unknown option '%s'\n", argv[i]);
			return EXIT_USAGE;
		}
	}
	uint64_t before, after;
	char err[768];
	int rc = spool_compact(dir, &before, &after, err, sizeof(err));
	if (rc) {
		fprintf(stderr, "spoolctl: compact: %s\n", err[0] ? err : spool_strerror(rc));
		return EXIT_FAIL;
	}
	if (json)
		printf("{\"before_bytes\":%" PRIu64 ",\"after_bytes\":%" PRIu64 "}\n", before,
		       after);
	else
		printf("compacted %s: %" PRIu64 " bytes before, %" PRIu64 " after\n", dir, before,
		       after);
	return 0;
}

/* ---- export and import ----
 * An export file, every integer little-endian:
 *   header   "MLSPOOLX", u32 format version (1), u32 header bytes, u64 count,
 *            i64 created (us since the epoch), u16 + source host name,
 *            u16 + source spool path
 *   records  count times: u32 event bytes, u64 seq, u8 severity,
 *            i64 enqueue time (us), the msgpack event as stored
 *   trailer  "MLSPTAIL", u64 count, u32 CRC-32 (zlib) of every byte before it */

struct command {
	const char *name;
	int (*run)(int argc, char **argv, const char *dir);
	const char *help;
};

static const struct command commands[] = {
    {"status", run_status, STATUS_HELP}, {"peek", run_peek, PEEK_HELP},
    {"dead", run_dead, DEAD_HELP},       {"purge", run_purge, PURGE_HELP},
    {"verify", run_verify, VERIFY_HELP}, {"compact", run_compact, COMPACT_HELP},
    {"export", run_export, EXPORT_HELP}, {"import", run_import, IMPORT_HELP},
};

int main(int argc, char **argv)
{
	static const struct option top[] = {
	    {"spool", required_argument, NULL, 'S'},
	    {"help", no_argument, NULL, 'h'},
	    {"version", no_argument, NULL, 'V'},
	    {NULL, 0, NULL, 0},
	};
	char dir[4096] = "";
	int c;
	while ((c = getopt_long(argc, argv, "+h", top, NULL)) != -1) {
		switch (c) {
		case 'S':
			if (snprintf(dir, sizeof(dir), "%s", optarg) >= (int)sizeof(dir)) {
				fprintf(stderr, "spoolctl: spool path too long\n");
				return EXIT_USAGE;
			}
			break;
		case 'h':
			usage(stdout);
			return 0;
		case 'V':
			printf("spoolctl (%s) %s\n", SPOOL_PROJECT_NAME, SPOOL_PROJECT_VERSION);
			return 0;
		default:
			usage(stderr);
			return EXIT_USAGE;
		}
	}
	if (optind >= argc) {
		fprintf(stderr, "spoolctl: no command given\n");
		usage(stderr);
		return EXIT_USAGE;
	}
	const char *name = argv[optind];
	const struct command *cmd = NULL;
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (strcmp(commands[i].name, name) == 0)
			cmd = &commands[i];
	if (!cmd) {
		fprintf(stderr, "spoolctl: unknown command '%s'\n", name);
		usage(stderr);
		return EXIT_USAGE;
	}
	if (wants_help(argc - optind, argv + optind)) {
		fputs(cmd->help, stdout);
		return 0;
	}
	int rc = resolve_dir(dir, sizeof(dir));
	if (rc)
		return rc;
	return cmd->run(argc - optind, argv + optind, dir);
}
