/* mlog — log to Master Log from a shell, like logger(1): each call spools
 * one event (or one per line of standard input with `-`) and returns once it
 * is safe on disk; delivery is the agent's job.  With --sync each event is
 * sent directly instead (libmlog's async_mode=false), and spooled only when
 * the server cannot take it now.  mlog never starts the embedded sender.
 * `-` without --sync commits the lines in groups (mlog_stdin.c). */
#include <errno.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "codec/event.h"
#include "project_version.h"
#include "mlog_stdin.h"
#include <spool/mlog.h>
#include <spool/spool.h>

enum { EXIT_NOT_LOGGED = 1, EXIT_USAGE = 2, EXIT_SPOOLED = 3 };

#define MAX_TAGS 64
#define MAX_META 64

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: mlog [OPTION]... MESSAGE...\n"
		"       mlog [OPTION]... -\n"
		"\n"
		"Spools one event for Master Log (the words of MESSAGE joined by spaces), or\n"
		"with '-' one event per line of standard input, until end of input.  The\n"
		"event is committed to the spool on disk (sync durability) before mlog\n"
		"goes on; spool-agent sends it.\n"
		"\n"
		"With '-', mlog reads standard input in large chunks and, whenever it has\n"
		"nothing more to give at once (or 8 MiB of events are waiting), commits every\n"
		"line read so far as one group, in one transaction synced to disk.  It reads\n"
		"nothing past a group before the group is committed: a line is in the spool\n"
		"before mlog reads past the group holding it, and a line that arrives alone\n"
		"(tail -F) is committed at once.  At end of input, exit status 0 means every\n"
		"line is in the spool, and a power loss after mlog exits loses none of them.\n"
		"Killed at any moment, mlog leaves in the spool the lines it committed: the\n"
		"first lines of the input, in order, with no gap and no duplicate.  A pipe on\n"
		"standard input is enlarged to 1 MiB (as far as the system allows).\n"
		"\n"
		"  -s, --severity S     debug, info (default), warn, error or fatal\n"
		"  -t, --tag TAG        a tag; repeat for more (at most %d)\n"
		"      --title TITLE    the event's title\n"
		"      --ttl SECONDS    the server expires the event after this many seconds\n"
		"  -m, --meta KEY=VALUE a metadata string; repeat for more (at most %d)\n"
		"      --metadata-json JSON  metadata as a JSON object, e.g. '{\"fwhm\": 3.4}'\n"
		"      --sync           send each event now to MASTER_LOG_ENDPOINT (with\n"
		"                       MASTER_LOG_API_KEY) instead of spooling it; an event\n"
		"                       the server cannot take now is spooled instead\n"
		"      --spool DIR      spool directory (default: MASTER_LOG_SPOOL_DIR, else\n"
		"                       /var/spool/master-log for root and group master-log, else\n"
		"                       ~/.local/state/master-log/spool)\n"
		"  -h, --help           this text\n"
		"      --version        print the version\n"
		"\n"
		"A line of standard input that is refused (a message over %zu bytes, say)\n"
		"is named on standard error and the lines after it are still logged.\n"
		"Options that no event can carry (bad metadata) are refused before any\n"
		"line is read.\n"
		"\n"
		"Exit status: 0 when every event was spooled (with --sync: accepted by the\n"
		"server); 1 when one was not (the reason is on standard error); 2 for a\n"
		"usage or configuration error; 3 (--sync) when the server did not take an\n"
		"event now and it was spooled for the agent instead.\n",
		MAX_TAGS, MAX_META, MLOG_MAX_MESSAGE_BYTES);
}

static int parse_ttl(const char *text, int64_t *out)
{
	char *end;
	errno = 0;
	long long v = strtoll(text, &end, 10);
	if (errno || end == text || *end || v <= 0)
		return -1;
	*out = v;
	return 0;
}

/* 0 logged (with --sync: accepted), EXIT_SPOOLED, or EXIT_NOT_LOGGED.
 * line > 0: the event is that line of standard input (named in errors). */
static int log_one(struct mlog_client *c, const struct mlog_opts *o, bool sync, const char *msg,
		   size_t len, size_t line)
{
	char where[40] = "";
	if (line)
		snprintf(where, sizeof(where), "line %zu: ", line);
	struct mlog_result r = mlog_client_send(c, o, msg, len);
	if (sync && r.ok && r.queued) {
		fprintf(stderr, "mlog: %s%s\n", where, r.error);
		return EXIT_SPOOLED;
	}
	if (!r.ok) {
		if (sync && r.status_code)
			fprintf(stderr, "mlog: %sevent not accepted (%d): %s\n", where, r.status_code,
				r.error);
		else
			fprintf(stderr, "mlog: %sevent not logged: %s\n", where, r.error);
		return EXIT_NOT_LOGGED;
	}
	if (sync)
		printf("%s\n", r.event_id);
	return 0;
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{"severity", required_argument, NULL, 's'},
		{"tag", required_argument, NULL, 't'},
		{"title", required_argument, NULL, 'T'},
		{"ttl", required_argument, NULL, 'L'},
		{"meta", required_argument, NULL, 'm'},
		{"spool", required_argument, NULL, 'S'},
		{"metadata-json", required_argument, NULL, 'J'},
		{"sync", no_argument, NULL, 'Y'},
		{"help", no_argument, NULL, 'h'},
		{"version", no_argument, NULL, 'V'},
		{NULL, 0, NULL, 0},
	};
	struct spool_event ev = {.severity = SPOOL_SEV_INFO};
	const char *tags[MAX_TAGS + 1];
	size_t ntags = 0;
	struct mlog_kv meta[MAX_META];
	size_t nmeta = 0;
	char dir[4096] = "";
	const char *metadata_json = NULL;
	bool sync = false;
	int c;
	while ((c = getopt_long(argc, argv, "+s:t:m:h", longopts, NULL)) != -1) {
		switch (c) {
		case 's':
			if (spool_severity_parse(optarg, &ev.severity) != 0) {
				fprintf(stderr, "mlog: --severity: '%s' is not debug, info, warn, error or fatal\n",
					optarg);
				return 2;
			}
			break;
		case 't':
			if (ntags == MAX_TAGS) {
				fprintf(stderr, "mlog: --tag: more than %d tags\n", MAX_TAGS);
				return 2;
			}
			tags[ntags++] = optarg;
			break;
		case 'T':
			ev.title = optarg;
			break;
		case 'L':
			if (parse_ttl(optarg, &ev.ttl_seconds) != 0) {
				fprintf(stderr, "mlog: --ttl: '%s' is not a whole number of seconds above 0\n",
					optarg);
				return 2;
			}
			break;
		case 'm': {
			char *eq = strchr(optarg, '=');
			if (!eq || eq == optarg) {
				fprintf(stderr, "mlog: --meta: '%s' is not KEY=VALUE\n", optarg);
				return 2;
			}
			if (nmeta == MAX_META) {
				fprintf(stderr, "mlog: --meta: more than %d entries\n", MAX_META);
				return 2;
			}
			*eq = '\0';
			meta[nmeta++] = (struct mlog_kv){.key = optarg, .type = MLOG_KV_STR, .s = eq + 1};
			break;
		}
		case 'S':
			snprintf(dir, sizeof(dir), "%s", optarg);
			break;
		case 'J':
			metadata_json = optarg;
			break;
		case 'Y':
			sync = true;
			break;
		case 'h':
			usage(stdout);
			return 0;
		case 'V':
			printf("mlog (%s) %s\n", SPOOL_PROJECT_NAME, SPOOL_PROJECT_VERSION);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind >= argc) {
		fprintf(stderr, "mlog: no message (give words, or '-' for standard input)\n");
		usage(stderr);
		return 2;
	}
	tags[ntags] = NULL;
	ev.tags = ntags ? tags : NULL;
	if (!dir[0]) {
		int rc = spool_default_dir(dir, sizeof(dir));
		if (rc) {
			fprintf(stderr, "mlog: no spool directory: %s\n", spool_strerror(rc));
			return 1;
		}
	}
	/* a short-lived command: each event is committed (sync durability)
	 * before mlog goes on; a running agent sends it (mlog starts none) */
	struct mlog_config cfg = {
		.spool_dir = dir,
		.durability = "sync",
		.async_mode = sync ? MLOG_OFF : MLOG_ON,
		.spawn_agent = MLOG_OFF,
		.backpressure = MLOG_OFF,
	};
	struct mlog_opts o = {
		.severity = (enum mlog_severity)(ev.severity + 1),
		.title = ev.title,
		.tags = ev.tags,
		.ttl_seconds = ev.ttl_seconds,
		.metadata_json = metadata_json,
		.metadata = meta,
		.nmetadata = nmeta,
	};
	bool from_stdin = strcmp(argv[optind], "-") == 0 && optind + 1 == argc;
	if (from_stdin && !sync) /* lines committed in groups */
		return mlog_stdin_run(STDIN_FILENO, &cfg, &o);
	char err[512];
	struct mlog_client *client;
	int rc = mlog_client_new(&cfg, &client, err, sizeof(err));
	if (rc) {
		fprintf(stderr, "mlog: %s\n", err);
		return EXIT_USAGE;
	}
	int status = 0;
	if (from_stdin) {
		char *line = NULL;
		size_t cap = 0, lineno = 0;
		ssize_t n;
		/* a line that is refused (too long, say) does not stop the ones
		 * after it; the exit status still says that one was not logged */
		while ((n = getline(&line, &cap, stdin)) >= 0) {
			if (n > 0 && line[n - 1] == '\n')
				line[--n] = '\0';
			int st = log_one(client, &o, sync, line, (size_t)n, ++lineno);
			if (st && status != EXIT_NOT_LOGGED)
				status = st;
			spool_wake_agent(dir);
		}
		free(line);
	} else {
		size_t len = 0;
		for (int i = optind; i < argc; i++)
			len += strlen(argv[i]) + 1;
		char *msg = malloc(len + 1);
		if (!msg) {
			mlog_client_free(client);
			fprintf(stderr, "mlog: out of memory\n");
			return 1;
		}
		msg[0] = '\0';
		size_t off = 0;
		for (int i = optind; i < argc; i++)
			off += (size_t)sprintf(msg + off, "%s%s", i > optind ? " " : "", argv[i]);
		status = log_one(client, &o, sync, msg, off, 0);
		free(msg);
		spool_wake_agent(dir);
	}
	mlog_client_free(client);
	return status;
}
