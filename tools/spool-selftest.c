/* spool-selftest — writes events through a spool, reads them back, checks
 * them and acknowledges them: the end-to-end check of a spool directory on
 * this machine's disk (and, until the agent exists, the project's main job). */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <msgpack.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <spool/spool.h>

#include "project_version.h"

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: spool-selftest [--spool DIR] [--durability MODE] [--events N]\n"
		"\n"
		"Appends N events to the spool, waits until they are committed, reads them\n"
		"back in order, checks every byte, acknowledges them and prints the spool's\n"
		"figures.  Exit status 0 when every event came back intact, 1 otherwise,\n"
		"2 for a usage error.\n"
		"\n"
		"  --spool DIR         spool directory (default: MASTER_LOG_SPOOL_DIR, else\n"
		"                      /var/spool/master-log for root and group master-log, else\n"
		"                      ~/.local/state/master-log/spool)\n"
		"  --durability MODE   sync, commit (default) or buffered\n"
		"  --events N          how many events (default 1000, at most 10000000)\n"
		"  -h, --help          this text\n"
		"      --version       print the version\n");
}

static void pack_event(msgpack_sbuffer *sb, uint64_t n, const char *mode)
{
	msgpack_packer pk;
	msgpack_sbuffer_clear(sb);
	msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
	char msg[96];
	int len = snprintf(msg, sizeof(msg), "spool-selftest event %" PRIu64 " (%s)", n, mode);
	msgpack_pack_map(&pk, 3);
	msgpack_pack_str_with_body(&pk, "message", 7);
	msgpack_pack_str_with_body(&pk, msg, (size_t)len);
	msgpack_pack_str_with_body(&pk, "severity", 8);
	msgpack_pack_str_with_body(&pk, "info", 4);
	msgpack_pack_str_with_body(&pk, "selftest_n", 10);
	msgpack_pack_uint64(&pk, n);
}

static double mono(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{"spool", required_argument, NULL, 's'},
		{"durability", required_argument, NULL, 'd'},
		{"events", required_argument, NULL, 'n'},
		{"help", no_argument, NULL, 'h'},
		{"version", no_argument, NULL, 'V'},
		{NULL, 0, NULL, 0},
	};
	char dir[4096] = "";
	struct spool_options opt;
	spool_options_init(&opt);
	unsigned long long events = 1000;
	int c;
	while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (c) {
		case 's':
			snprintf(dir, sizeof(dir), "%s", optarg);
			break;
		case 'd':
			if (spool_durability_parse(optarg, &opt.durability) != 0) {
				fprintf(stderr, "spool-selftest: --durability: '%s' is not sync, commit or buffered\n",
					optarg);
				return 2;
			}
			break;
		case 'n': {
			char *end;
			errno = 0;
			events = strtoull(optarg, &end, 10);
			if (errno || *end || end == optarg || events == 0 || events > 10000000) {
				fprintf(stderr, "spool-selftest: --events: '%s' is not a number from 1 to 10000000\n",
					optarg);
				return 2;
			}
			break;
		}
		case 'h':
			usage(stdout);
			return 0;
		case 'V':
			printf("spool-selftest (%s) %s\n", SPOOL_PROJECT_NAME, SPOOL_PROJECT_VERSION);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "spool-selftest: unexpected argument '%s'\n", argv[optind]);
		usage(stderr);
		return 2;
	}
	if (!dir[0]) {
		int rc = spool_default_dir(dir, sizeof(dir));
		if (rc) {
			fprintf(stderr, "spool-selftest: no spool directory: %s\n", spool_strerror(rc));
			return 2;
		}
	}

	const char *mode = spool_durability_name(opt.durability);
	char err[512];
	struct spool *s;
	int rc = spool_open(dir, &opt, &s, err, sizeof(err));
	if (rc) {
		fprintf(stderr, "spool-selftest: %s\n", err);
		return 1;
	}
	msgpack_sbuffer sb;
	msgpack_sbuffer_init(&sb);
	double t0 = mono();
	for (uint64_t i = 0; i < events; i++) {
		pack_event(&sb, i, mode);
		rc = spool_append(s, SPOOL_SEV_INFO, sb.data, sb.size);
		if (rc) {
			fprintf(stderr, "spool-selftest: append %" PRIu64 ": %s\n", i, spool_strerror(rc));
			goto fail;
		}
	}
	double t1 = mono();
	uint64_t last = 0;
	rc = spool_sync(s, 30.0, &last);
	if (rc) {
		fprintf(stderr, "spool-selftest: waiting for the commit: %s\n", spool_strerror(rc));
		goto fail;
	}
	double t2 = mono();

	/* read back what this run wrote: the last `events` sequences */
	uint64_t after = last - events, expect = 0, bad = 0;
	uint64_t *seqs = malloc(events * sizeof(*seqs));
	if (!seqs) {
		rc = -ENOMEM;
		goto fail;
	}
	while (expect < events) {
		struct spool_batch *b;
		rc = spool_read_batch(s, after, 1000, 0, &b);
		if (rc) {
			fprintf(stderr, "spool-selftest: read: %s\n", spool_strerror(rc));
			free(seqs);
			goto fail;
		}
		size_t n = spool_batch_count(b);
		const struct spool_record *r = spool_batch_records(b);
		for (size_t i = 0; i < n && expect < events; i++) {
			pack_event(&sb, expect, mode);
			if (r[i].len != sb.size || memcmp(r[i].data, sb.data, sb.size) != 0 ||
			    r[i].severity != SPOOL_SEV_INFO)
				bad++;
			seqs[expect++] = r[i].seq;
			after = r[i].seq;
		}
		spool_batch_release(b);
		if (n == 0)
			break;
	}
	uint64_t acked = 0;
	rc = spool_ack(s, seqs, expect, &acked);
	free(seqs);
	if (rc) {
		fprintf(stderr, "spool-selftest: ack: %s\n", spool_strerror(rc));
		goto fail;
	}
	struct spool_stats st;
	rc = spool_stats(s, &st);
	if (rc)
		goto fail;
	printf("spool-selftest: %s mode, %s\n", mode, dir);
	printf("  appended %llu events in %.3f s (%.0f events/s), committed after %.3f s more\n",
	       events, t1 - t0, (double)events / (t1 - t0 > 0 ? t1 - t0 : 1e-9), t2 - t1);
	printf("  read back %" PRIu64 ", intact %" PRIu64 ", damaged or missing %" PRIu64
	       ", acknowledged %" PRIu64 "\n",
	       expect, expect - bad, bad + ((uint64_t)events - expect), acked);
	printf("  spool now: pending %" PRIu64 ", dead %" PRIu64 ", appended_total %" PRIu64
	       ", acked_total %" PRIu64 ", next_seq %" PRIu64 ", file %" PRIu64 " bytes\n",
	       st.pending, st.dead, st.appended_total, st.acked_total, st.next_seq, st.file_bytes);
	msgpack_sbuffer_destroy(&sb);
	rc = spool_close(s);
	if (rc) {
		fprintf(stderr, "spool-selftest: close: %s\n", spool_strerror(rc));
		return 1;
	}
	return bad == 0 && expect == events && acked == events ? 0 : 1;
fail:
	msgpack_sbuffer_destroy(&sb);
	spool_close(s);
	return 1;
}
