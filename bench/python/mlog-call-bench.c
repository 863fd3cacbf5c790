/* mlog-call-bench: the C side of bench/python/bench.py.  Logs N events
 * through mlog_client_send() (the call master_log_client makes), with the
 * same message, tags and JSON metadata as the Python case, into a spool in
 * commit durability (no agent, no endpoint), in BURSTS bursts of BURST
 * calls with a 50 ms pause between them (so that the 4 MiB commit ring
 * never fills: the figure is the call, not the disk), and prints one JSON
 * object: {"case": ..., "events": N, "ns_per_call": the median burst's
 * wall time per call, "cpu_ns_per_call": its CPU time on the calling
 * thread per call (CLOCK_THREAD_CPUTIME_ID: what the call costs, whatever
 * else the machine runs)}.
 *
 * Usage: mlog-call-bench SPOOL_DIR BURSTS BURST [metadata]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <spool/mlog.h>

static double now(clockid_t clock)
{
	struct timespec ts;
	clock_gettime(clock, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
	if (argc < 4 || atol(argv[2]) < 1 || atol(argv[2]) > 1000 || atol(argv[3]) < 1) {
		fprintf(stderr,
		        "usage: mlog-call-bench SPOOL_DIR BURSTS(1-1000) BURST [metadata]\n");
		return 2;
	}
	long bursts = atol(argv[2]), n = atol(argv[3]);
	int with_meta = argc > 4 && strcmp(argv[4], "metadata") == 0;
	struct mlog_client *c;
	char err[MLOG_ERROR_MAX];
	if (mlog_client_new(&(struct mlog_config){.spool_dir = argv[1],
	                                          .durability = "commit",
	                                          .spawn_agent = MLOG_OFF},
	                    &c, err, sizeof(err)) != 0) {
		fprintf(stderr, "mlog-call-bench: %s\n", err);
		return 1;
	}
	const char *tags[] = {"imaging", NULL};
	struct mlog_opts o = {.severity = MLOG_INFO, .tags = tags};
	if (with_meta)
		o.metadata_json = "{\"target\": \"M13\", \"duration_seconds\": 18}";
	/* a block like the binding's, so that the event is the same size */
	mlog_client_set_block(
	    c, "python_client",
	    "{\"hostname\": \"h\", \"pid\": 1, \"process_name\": \"MainProcess\", "
	    "\"cwd\": \"/tmp\", \"python_version\": \"3.11.2\", "
	    "\"library_version\": \"0.1.0\"}",
	    NULL, 0);
	const char *msg = "Captured frame 42 for M31";
	size_t len = strlen(msg);
	for (long i = 0; i < n / 10; i++) /* warm-up: the spool and the ring exist */
		mlog_client_send(c, &o, msg, len);
	double per[1000], cpu[1000];
	for (long b = 0; b < bursts; b++) {
		nanosleep(&(struct timespec){0, 50 * 1000 * 1000}, NULL);
		double t0 = now(CLOCK_MONOTONIC), c0 = now(CLOCK_THREAD_CPUTIME_ID);
		for (long i = 0; i < n; i++) {
			struct mlog_result r = mlog_client_send(c, &o, msg, len);
			if (!r.ok) {
				fprintf(stderr, "mlog-call-bench: %s\n", r.error);
				return 1;
			}
		}
		per[b] = (now(CLOCK_MONOTONIC) - t0) / (double)n * 1e9;
		cpu[b] = (now(CLOCK_THREAD_CPUTIME_ID) - c0) / (double)n * 1e9;
	}
	mlog_client_free(c);
	qsort(per, (size_t)bursts, sizeof(per[0]), cmp_double);
	qsort(cpu, (size_t)bursts, sizeof(cpu[0]), cmp_double);
	printf("{\"case\": \"c-mlog_client_send%s\", \"events\": %ld, \"ns_per_call\": %.1f, "
	       "\"cpu_ns_per_call\": %.1f}\n",
	       with_meta ? "-metadata" : "", bursts * n, per[bursts / 2], cpu[bursts / 2]);
	return 0;
}
