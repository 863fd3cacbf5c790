/* options.c - the flag table: name, type, default, destination, help.
 * Parsing, defaults and --help are all generated from it so they cannot
 * drift apart. */
#include "options.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "project_version.h"

enum opt_type { T_FLAG, T_LONG, T_STATUS, T_SIZE, T_PROB, T_STR };

struct opt_row {
	const char *name;
	enum opt_type type;
	const char *def; /* default as it would be typed; NULL: unset/off */
	size_t offset;	 /* destination inside struct rx_config */
	long min, max;	 /* T_LONG only */
	const char *arg; /* argument name for --help */
	const char *help;
	const char *group; /* starts a new --help section when set */
};

#define AT(field) offsetof(struct rx_config, field)

/* clang-format off */
static const struct opt_row rows[] = {
	{ "listen", T_STR, "127.0.0.1", AT(listen), 0, 0, "ADDR",
	  "numeric address to bind: 127.0.0.1, ::1 or another local address "
	  "(only that one address is bound)", "Listening" },
	{ "port", T_LONG, "0", AT(port), 0, 65535, "N",
	  "TCP port; 0 picks a free one and prints \"port N\" on stdout "
	  "(\"port N https\" with --tls-cert)", NULL },
	{ "port-file", T_STR, NULL, AT(port_file), 0, 0, "FILE",
	  "write the bound port number to FILE, followed by \" https\" with "
	  "--tls-cert (temp file + rename)", NULL },
	{ "max-connections", T_LONG, "256", AT(max_connections), 1, 100000, "N",
	  "concurrent connections (one thread each)", NULL },
	{ "idle-timeout", T_LONG, "60", AT(idle_timeout), 0, 86400, "SECS",
	  "close connections idle this long (0: never)", NULL },

	{ "tls-cert", T_STR, NULL, AT(tls_cert), 0, 0, "FILE",
	  "serve HTTPS with this PEM certificate (the server's first, then "
	  "any intermediates); needs --tls-key", "TLS (both or neither; "
	  "without them the receiver serves plain HTTP)" },
	{ "tls-key", T_STR, NULL, AT(tls_key), 0, 0, "FILE",
	  "the PEM private key of --tls-cert, unencrypted", NULL },

	{ "out", T_STR, NULL, AT(out), 0, 0, "FILE",
	  "append accepted events to FILE as JSON lines (\"-\": stdout); "
	  "default: count only", "Storing" },
	{ "dedup-max", T_LONG, "1000000", AT(dedup_max), 1, LONG_MAX, "N",
	  "client_event_ids per dedup generation; two generations are kept, "
	  "so at least the last N are always remembered", NULL },

	{ "max-body", T_SIZE, "16M", AT(max_body), 0, 0, "BYTES",
	  "largest request body on the wire; more gets 413", "Limits" },
	{ "max-inflated", T_SIZE, "0", AT(max_inflated), 0, 0, "BYTES",
	  "largest gzip-inflated body, more gets 413 (0: same as --max-body)",
	  NULL },
	{ "max-batch-events", T_LONG, "1000", AT(max_batch_events), 1, LONG_MAX,
	  "N", "most events in one batch; more gets 413", NULL },
	{ "max-batch-bytes", T_SIZE, "5M", AT(max_batch_bytes), 0, 0, "BYTES",
	  "largest batch JSON (after inflating); more gets 413", NULL },

	{ "api-key", T_STR, NULL, AT(api_key), 0, 0, "KEY",
	  "require \"X-API-Key: KEY\" on the API endpoints", "Authentication" },
	{ "auth-status", T_STATUS, "401", AT(auth_status), 0, 0, "S",
	  "status for a missing or wrong key (e.g. 403)", NULL },

	{ "fail-first", T_LONG, "0", AT(fail_first), 0, LONG_MAX, "N",
	  "answer the first N API requests with --fail-status", "Fault injection "
	  "(API endpoints only; /stats and /healthz are never faulted)" },
	{ "fail-status", T_STATUS, "503", AT(fail_status), 0, 0, "S",
	  "status used by --fail-first", NULL },
	{ "fail-rate", T_PROB, "0", AT(fail_rate), 0, 0, "P",
	  "answer each API request with a failure with probability P (0..1)",
	  NULL },
	{ "fail-rate-status", T_STATUS, "0", AT(fail_rate_status), 0, 0, "S",
	  "status used by --fail-rate (0: 500 or 503 at random)", NULL },
	{ "seed", T_LONG, "1", AT(seed), LONG_MIN, LONG_MAX, "N",
	  "seed of the random choices of --fail-rate and --drop-rate", NULL },
	{ "retry-after", T_LONG, "-1", AT(retry_after), -1, 1000000000L, "SECS",
	  "add \"Retry-After: SECS\" to injected failures and outage answers "
	  "(-1: no header)", NULL },
	{ "retry-after-date", T_FLAG, NULL, AT(retry_after_date), 0, 0, NULL,
	  "send Retry-After as an HTTP-date (now + SECS) instead of seconds",
	  NULL },
	{ "outage-file", T_STR, NULL, AT(outage_file), 0, 0, "FILE",
	  "while FILE exists answer every API request with --outage-status",
	  NULL },
	{ "outage-status", T_STATUS, "503", AT(outage_status), 0, 0, "S",
	  "status used by --outage-file", NULL },
	{ "latency-ms", T_LONG, "0", AT(latency_ms), 0, 3600000, "N",
	  "wait N ms before answering each API request", NULL },
	{ "reject-word", T_STR, NULL, AT(reject_word), 0, 0, "W",
	  "reject events whose message contains W: a single gets "
	  "--reject-status, a batch a 207 with that status for the event", NULL },
	{ "reject-status", T_STATUS, "422", AT(reject_status), 0, 0, "S",
	  "status for events rejected by --reject-word (e.g. 400)", NULL },
	{ "reject-whole-batch", T_FLAG, NULL, AT(reject_whole_batch), 0, 0, NULL,
	  "a batch with any rejected event (bad field or --reject-word) gets "
	  "422 as a whole and nothing of it is stored", NULL },
	{ "transient-word", T_STR, NULL, AT(transient_word), 0, 0, "W",
	  "events whose message contains W are not stored: a single gets "
	  "--transient-status, a batch a 207 with that status for the event",
	  NULL },
	{ "transient-status", T_STATUS, "503", AT(transient_status), 0, 0, "S",
	  "status used by --transient-word", NULL },
	{ "no-batch", T_FLAG, NULL, AT(no_batch), 0, 0, NULL,
	  "the batch endpoint does not exist: it answers --no-batch-status",
	  NULL },
	{ "no-batch-status", T_STATUS, "404", AT(no_batch_status), 0, 0, "S",
	  "status used by --no-batch (404, 405 or 501)", NULL },
	{ "no-gzip", T_FLAG, NULL, AT(no_gzip), 0, 0, NULL,
	  "answer 415 to \"Content-Encoding: gzip\" bodies", NULL },
	{ "any-json", T_FLAG, NULL, AT(any_json), 0, 0, NULL,
	  "for benchmarks against other log shippers (bench/peers): a POST to "
	  "any path but /stats and /healthz is a batch, {\"logs\": [...]} of "
	  "any JSON values; each is stored and counted as an event, without "
	  "checking Master Log fields and without deduplication", NULL },
	{ "drop-after-store", T_LONG, "0", AT(drop_after_store), 0, LONG_MAX, "N",
	  "for the first N requests that would get a 2xx, store the events "
	  "and then close the connection without answering", NULL },
	{ "drop-skip", T_LONG, "0", AT(drop_skip), 0, LONG_MAX, "N",
	  "with --drop-after-store: answer the first N such requests before "
	  "the drops begin (a drop on a kept-alive connection)", NULL },
	{ "drop-rate", T_PROB, "0", AT(drop_rate), 0, 0, "P",
	  "the same, for each such request with probability P", NULL },
	{ "slow-body-ms", T_LONG, "0", AT(slow_body_ms), 0, 3600000, "N",
	  "send response bodies in pieces, waiting N ms before each piece",
	  NULL },
	{ "slow-body-chunk", T_LONG, "8", AT(slow_body_chunk), 1, 1 << 20,
	  "BYTES", "piece size for --slow-body-ms", NULL },
	{ "bad-json-2xx", T_FLAG, NULL, AT(bad_json_2xx), 0, 0, NULL,
	  "keep the status of every 2xx answer but send a body that is not "
	  "JSON", NULL },
	{ "empty-2xx", T_FLAG, NULL, AT(empty_2xx), 0, 0, NULL,
	  "keep the status of every 2xx answer but send an empty body", NULL },

	{ "validate-with-jansson", T_FLAG, NULL, AT(validate_with_jansson), 0,
	  0, NULL, "check every event with jansson instead of the fast path "
	  "(slower; for cross-checking)", "Other" },
	{ "verbose", T_FLAG, NULL, AT(verbose), 0, 0, NULL,
	  "log one line per request to stderr", NULL },
};
/* clang-format on */

#define N_ROWS (sizeof(rows) / sizeof(rows[0]))
#define ROW_BASE 256 /* getopt_long values of table rows */
#define OPT_HELP 1000
#define OPT_VERSION 1001

static int parse_long(const char *s, long min, long max, long *out)
{
	char *end;
	errno = 0;
	long v = strtol(s, &end, 10);
	if (errno || end == s || *end || v < min || v > max)
		return -1;
	*out = v;
	return 0;
}

static int parse_size(const char *s, size_t *out)
{
	char *end;
	errno = 0;
	if (*s == '-')
		return -1;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno || end == s)
		return -1;
	unsigned long long mult = 1;
	switch (*end) {
	case '\0':
		break;
	case 'k':
	case 'K':
		mult = 1ull << 10;
		end++;
		break;
	case 'm':
	case 'M':
		mult = 1ull << 20;
		end++;
		break;
	case 'g':
	case 'G':
		mult = 1ull << 30;
		end++;
		break;
	default:
		return -1;
	}
	if (*end || v > SIZE_MAX / mult)
		return -1;
	*out = (size_t)(v * mult);
	return 0;
}

static int set_value(const struct opt_row *r, const char *arg,
		     struct rx_config *cfg)
{
	char *dst = (char *)cfg + r->offset;
	long l;
	double d;
	char *end;

	switch (r->type) {
	case T_FLAG:
		*(bool *)dst = true;
		return 0;
	case T_LONG:
		if (parse_long(arg, r->min, r->max, &l))
			return -1;
		*(long *)dst = l;
		return 0;
	case T_STATUS:
		/* 0 is only meaningful where the help text says so */
		if (parse_long(arg, 0, 599, &l) || (l != 0 && l < 100))
			return -1;
		*(long *)dst = l;
		return 0;
	case T_SIZE:
		return parse_size(arg, (size_t *)dst);
	case T_PROB:
		errno = 0;
		d = strtod(arg, &end);
		if (errno || end == arg || *end || !(d >= 0.0 && d <= 1.0))
			return -1;
		*(double *)dst = d;
		return 0;
	case T_STR:
		*(const char **)dst = arg;
		return 0;
	}
	return -1;
}

static const char *type_hint(enum opt_type t)
{
	switch (t) {
	case T_LONG:
		return "an integer in range";
	case T_STATUS:
		return "an HTTP status 100-599";
	case T_SIZE:
		return "a byte count (suffix K, M or G allowed)";
	case T_PROB:
		return "a probability between 0 and 1";
	default:
		return "a value";
	}
}

/* Prints `text` word-wrapped from column `indent` to column 79. */
static void print_wrapped(FILE *f, const char *text, int col, int indent)
{
	while (*text) {
		const char *word = text;
		while (*text && *text != ' ')
			text++;
		int n = (int)(text - word);
		if (col > indent && col + 1 + n > 79) {
			fprintf(f, "\n%*s", indent, "");
			col = indent;
		} else if (col > indent) {
			fputc(' ', f);
			col++;
		}
		fwrite(word, 1, (size_t)n, f);
		col += n;
		while (*text == ' ')
			text++;
	}
	fputc('\n', f);
}

void options_help(FILE *f, const char *prog)
{
	fprintf(f,
		"Usage: %s [OPTION]...\n"
		"A local Master Log ingest server (the server side of "
		"PROTOCOL.md) for tests\nand benchmarks.  Endpoints: "
		"POST /api/v1/logs, POST /api/v1/logs/batch,\n"
		"GET /stats, GET /healthz.\n",
		prog);
	for (size_t i = 0; i < N_ROWS; i++) {
		const struct opt_row *r = &rows[i];
		char head[64], text[512];
		if (r->group)
			fprintf(f, "\n%s:\n", r->group);
		snprintf(head, sizeof(head), "--%s%s%s", r->name,
			 r->arg ? " " : "", r->arg ? r->arg : "");
		if (r->def && r->type != T_FLAG)
			snprintf(text, sizeof(text), "%s [default: %s]",
				 r->help, r->def);
		else
			snprintf(text, sizeof(text), "%s", r->help);
		int col = fprintf(f, "  %-22s", head);
		if (col > 24) {
			fprintf(f, "\n%*s", 25, "");
			col = 25;
		} else {
			fputc(' ', f);
			col++;
		}
		print_wrapped(f, text, col, 25);
	}
	fprintf(f, "  %-22s %s\n  %-22s %s\n", "-h, --help",
		"show this help and exit", "--version",
		"show the version and exit");
	fprintf(f, "\nSee docs/mlog-receiver.md for the details.\n");
}

enum opt_result options_parse(int argc, char **argv, struct rx_config *cfg)
{
	struct option longopts[N_ROWS + 3];

	memset(cfg, 0, sizeof(*cfg));
	for (size_t i = 0; i < N_ROWS; i++) {
		const struct opt_row *r = &rows[i];
		if (r->def && r->type != T_FLAG && set_value(r, r->def, cfg)) {
			fprintf(stderr, "bad built-in default for --%s\n",
				r->name);
			return OPT_USAGE;
		}
		longopts[i] = (struct option){
			r->name, r->type == T_FLAG ? no_argument
						   : required_argument,
			NULL, ROW_BASE + (int)i };
	}
	longopts[N_ROWS] = (struct option){ "help", no_argument, NULL,
					    OPT_HELP };
	longopts[N_ROWS + 1] = (struct option){ "version", no_argument, NULL,
						OPT_VERSION };
	longopts[N_ROWS + 2] = (struct option){ NULL, 0, NULL, 0 };

	optind = 1;
	for (;;) {
		int c = getopt_long(argc, argv, "h", longopts, NULL);
		if (c == -1)
			break;
		if (c == 'h' || c == OPT_HELP) {
			options_help(stdout, argv[0]);
			return OPT_EXIT;
		}
		if (c == OPT_VERSION) {
			printf("mlog-receiver (%s) %s\n", SPOOL_PROJECT_NAME,
			       SPOOL_PROJECT_VERSION);
			return OPT_EXIT;
		}
		if (c < ROW_BASE || (size_t)(c - ROW_BASE) >= N_ROWS) {
			fprintf(stderr, "Try '%s --help'.\n", argv[0]);
			return OPT_USAGE;
		}
		const struct opt_row *r = &rows[c - ROW_BASE];
		if (set_value(r, optarg, cfg)) {
			fprintf(stderr, "%s: --%s: '%s' is not %s\n", argv[0],
				r->name, optarg, type_hint(r->type));
			return OPT_USAGE;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "%s: unexpected argument '%s'\n", argv[0],
			argv[optind]);
		return OPT_USAGE;
	}
	if (cfg->auth_status == 0 || cfg->fail_status == 0 ||
	    cfg->outage_status == 0 || cfg->reject_status == 0 ||
	    cfg->transient_status == 0 || cfg->no_batch_status == 0) {
		fprintf(stderr, "%s: status 0 is only allowed for "
				"--fail-rate-status\n",
			argv[0]);
		return OPT_USAGE;
	}
	if (!cfg->tls_cert != !cfg->tls_key) {
		fprintf(stderr, "%s: --%s is missing: --%s needs it (give "
				"both or neither)\n",
			argv[0], cfg->tls_cert ? "tls-key" : "tls-cert",
			cfg->tls_cert ? "tls-cert" : "tls-key");
		return OPT_USAGE;
	}
	if (cfg->max_inflated == 0)
		cfg->max_inflated = cfg->max_body;
	return OPT_RUN;
}
