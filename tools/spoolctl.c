/* spoolctl — see and act on a spool directory.  This first version has the
 * `status` command; peek, dead letters, verify, compact, export and import
 * follow (issue: spoolctl). */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <spool/json.h>
#include <spool/spool.h>

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: spoolctl [--spool DIR] COMMAND [OPTIONS]\n"
		"\n"
		"Commands:\n"
		"  status [--json]   pending events and bytes, the oldest event's age, dead\n"
		"                    letters, the spool's counters, whether an agent holds the\n"
		"                    spool, its last success and last error, its send time per\n"
		"                    event and the time to drain the backlog at that rate\n"
		"\n"
		"Options:\n"
		"  --spool DIR  spool directory (default: MASTER_LOG_SPOOL_DIR, else\n"
		"               /var/spool/master-log for root, else\n"
		"               ~/.local/state/master-log/spool)\n"
		"  -h, --help   this text (and `spoolctl COMMAND --help`)\n"
		"\n"
		"Exit status: 0 on success, 1 when the spool cannot be read, 2 for a usage\n"
		"error.\n");
}

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

static int cmd_status(struct spool *s, bool json)
{
	struct spool_stats st;
	int rc = spool_stats(s, &st);
	if (rc) {
		fprintf(stderr, "spoolctl: %s: cannot read the figures: %s\n", spool_dir(s),
			spool_strerror(rc));
		return 1;
	}
	long pid = 0;
	int running = spool_agent_running(s, &pid);
	char success[64], error[1024], spe_text[64];
	meta_text(s, "agent.last_success", success, sizeof(success));
	meta_text(s, "agent.last_error", error, sizeof(error));
	meta_text(s, "agent.send_seconds_per_event", spe_text, sizeof(spe_text));
	double spe = spe_text[0] ? strtod(spe_text, NULL) : -1;
	double drain = spe > 0 ? spe * (double)st.pending : -1;
	if (json) {
		printf("{\"spool\":");
		put_json_str(stdout, spool_dir(s));
		printf(",\"pending\":%" PRIu64 ",\"pending_bytes\":%" PRIu64
		       ",\"oldest_age_seconds\":%.3f,\"dead\":%" PRIu64 ",\"appended_total\":%" PRIu64
		       ",\"acked_total\":%" PRIu64 ",\"dead_total\":%" PRIu64
		       ",\"evicted_total\":%" PRIu64 ",\"dropped_total\":%" PRIu64
		       ",\"corrupt_total\":%" PRIu64 ",\"torn_total\":%" PRIu64
		       ",\"agent_running\":%s,\"agent_pid\":%ld",
		       st.pending, st.pending_bytes, st.oldest_age_seconds, st.dead, st.appended_total,
		       st.acked_total, st.dead_total, st.evicted_total, st.dropped_total,
		       st.corrupt_total, st.torn_total, running == 1 ? "true" : "false",
		       running == 1 ? pid : 0L);
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
			printf(",\"send_seconds_per_event\":%.9f,\"drain_seconds_estimate\":%.1f", spe,
			       drain);
		else
			printf(",\"send_seconds_per_event\":null,\"drain_seconds_estimate\":null");
		printf(",\"file_bytes\":%" PRIu64 "}\n", st.file_bytes);
		return 0;
	}
	printf("spool          %s\n", spool_dir(s));
	printf("pending        %" PRIu64 " events, %" PRIu64 " bytes", st.pending, st.pending_bytes);
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
	if (error[0])
		printf("last error     %s\n", error);
	if (spe > 0)
		printf("send time      %.1f us per event; backlog drains in about %.0f s\n", spe * 1e6,
		       drain);
	printf("file           %" PRIu64 " bytes\n", st.file_bytes);
	return 0;
}

int main(int argc, char **argv)
{
	static const struct option top[] = {
		{"spool", required_argument, NULL, 'S'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	char dir[4096] = "";
	int c;
	while ((c = getopt_long(argc, argv, "+h", top, NULL)) != -1) {
		switch (c) {
		case 'S':
			snprintf(dir, sizeof(dir), "%s", optarg);
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind >= argc) {
		fprintf(stderr, "spoolctl: no command given\n");
		usage(stderr);
		return 2;
	}
	const char *cmd = argv[optind];
	if (strcmp(cmd, "status") != 0) {
		fprintf(stderr, "spoolctl: unknown command '%s'\n", cmd);
		usage(stderr);
		return 2;
	}
	bool json = false;
	for (int i = optind + 1; i < argc; i++) {
		if (strcmp(argv[i], "--json") == 0) {
			json = true;
		} else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
			printf("Usage: spoolctl [--spool DIR] status [--json]\n\n"
			       "Shows the spool's backlog, counters and agent; --json prints one\n"
			       "object with the keys pending, pending_bytes, oldest_age_seconds, dead,\n"
			       "appended_total, acked_total, dead_total, evicted_total, dropped_total,\n"
			       "agent_running, last_success, last_error (and a few more).\n");
			return 0;
		} else {
			fprintf(stderr, "spoolctl: status: unknown option '%s'\n", argv[i]);
			return 2;
		}
	}
	if (!dir[0]) {
		int rc = spool_default_dir(dir, sizeof(dir));
		if (rc) {
			fprintf(stderr, "spoolctl: no spool directory: %s\n", spool_strerror(rc));
			return 2;
		}
	}
	char data[4200];
	struct stat st;
	snprintf(data, sizeof(data), "%s/data.mdb", dir);
	if (stat(data, &st) != 0) {
		fprintf(stderr, "spoolctl: %s: no spool there (%s)\n", dir, strerror(errno));
		return 1;
	}
	struct spool_options opt;
	spool_options_init(&opt);
	opt.durability = SPOOL_SYNC; /* reads only: no ring */
	char err[512];
	struct spool *s;
	int rc = spool_open(dir, &opt, &s, err, sizeof(err));
	if (rc) {
		fprintf(stderr, "spoolctl: %s\n", err);
		return 1;
	}
	int status = cmd_status(s, json);
	spool_close(s);
	return status;
}
