/* mlog — log to Master Log from a shell, like logger(1): each call spools
 * one event (or one per line of standard input with `-`) and returns once it
 * is safe on disk; delivery is the agent's job. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <spool/event.h>
#include <spool/spool.h>
#include <spool/wake.h>

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
		"  -s, --severity S     debug, info (default), warn, error or fatal\n"
		"  -t, --tag TAG        a tag; repeat for more (at most %d)\n"
		"      --title TITLE    the event's title\n"
		"      --ttl SECONDS    the server expires the event after this many seconds\n"
		"  -m, --meta KEY=VALUE a metadata string; repeat for more (at most %d)\n"
		"      --spool DIR      spool directory (default: MASTER_LOG_SPOOL_DIR, else\n"
		"                       /var/spool/master-log for root, else\n"
		"                       ~/.local/state/master-log/spool)\n"
		"  -h, --help           this text\n"
		"\n"
		"Exit status: 0 when every event was spooled; 1 when one was not (the\n"
		"reason is on standard error); 2 for a usage error.\n",
		MAX_TAGS, MAX_META);
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

static int log_one(struct spool *s, struct spool_event *ev, const char *msg, size_t len)
{
	struct spool_buf buf = {0};
	ev->message = msg;
	ev->message_len = len;
	int rc = spool_event_encode(ev, &buf, NULL);
	if (rc == 0)
		rc = spool_append(s, ev->severity, buf.data, buf.len);
	spool_buf_free(&buf);
	if (rc) {
		fprintf(stderr, "mlog: event not spooled: %s\n", spool_strerror(rc));
		return 1;
	}
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
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	struct spool_event ev = {.severity = SPOOL_SEV_INFO};
	const char *tags[MAX_TAGS + 1];
	size_t ntags = 0;
	struct spool_kv meta[MAX_META];
	size_t nmeta = 0;
	char dir[4096] = "";
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
			meta[nmeta++] = (struct spool_kv){.key = optarg, .type = SPOOL_KV_STR, .s = eq + 1};
			break;
		}
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
		fprintf(stderr, "mlog: no message (give words, or '-' for standard input)\n");
		usage(stderr);
		return 2;
	}
	tags[ntags] = NULL;
	ev.tags = ntags ? tags : NULL;
	ev.metadata = meta;
	ev.nmetadata = nmeta;
	if (!dir[0]) {
		int rc = spool_default_dir(dir, sizeof(dir));
		if (rc) {
			fprintf(stderr, "mlog: no spool directory: %s\n", spool_strerror(rc));
			return 1;
		}
	}
	struct spool_options opt;
	spool_options_init(&opt);
	/* a short-lived command: each event is committed before mlog goes on */
	opt.durability = SPOOL_SYNC;
	char err[512];
	struct spool *s;
	int rc = spool_open(dir, &opt, &s, err, sizeof(err));
	if (rc) {
		fprintf(stderr, "mlog: %s\n", err);
		return 1;
	}
	int status = 0;
	if (strcmp(argv[optind], "-") == 0 && optind + 1 == argc) {
		char *line = NULL;
		size_t cap = 0;
		ssize_t n;
		while ((n = getline(&line, &cap, stdin)) >= 0) {
			if (n > 0 && line[n - 1] == '\n')
				line[--n] = '\0';
			if (log_one(s, &ev, line, (size_t)n) != 0) {
				status = 1;
				break;
			}
			spool_wake_agent(dir);
		}
		free(line);
	} else {
		size_t len = 0;
		for (int i = optind; i < argc; i++)
			len += strlen(argv[i]) + 1;
		char *msg = malloc(len + 1);
		if (!msg) {
			spool_close(s);
			fprintf(stderr, "mlog: out of memory\n");
			return 1;
		}
		msg[0] = '\0';
		size_t off = 0;
		for (int i = optind; i < argc; i++)
			off += (size_t)sprintf(msg + off, "%s%s", i > optind ? " " : "", argv[i]);
		status = log_one(s, &ev, msg, off);
		free(msg);
		spool_wake_agent(dir);
	}
	rc = spool_close(s);
	if (rc && status == 0) {
		fprintf(stderr, "mlog: closing the spool: %s\n", spool_strerror(rc));
		status = 1;
	}
	return status;
}
