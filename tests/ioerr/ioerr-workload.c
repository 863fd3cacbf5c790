/* ioerr-workload.c — the program test_ioerr runs under fault injection
 * (strace -e inject=..., fiu-run).  It opens a spool and appends events
 * {"p": producer, "n": counter} one at a time, a new counter for every
 * append call, and says on stdout, one line each, flushed at once:
 *
 *   A n        spool_append of counter n returned 0
 *   P n        counter n is promised: in sync mode its append returned 0; in
 *              the staged modes a later spool_sync returned 0
 *   F n rc     the append of counter n failed with rc (n is not stored)
 *   S rc       a spool_sync failed with rc
 *   O rc       a spool_open failed with rc (it is tried again)
 *   C rc       spool_close returned rc
 *   R ok|fail  whether an append was promised after the last error
 *   END errors promised
 *
 * It keeps appending after an error (that is the "works again once the
 * fault clears" check): it stops once `count` appends were made and, if an
 * error came, `after` further counters were promised after the last one, or
 * at the time limit.  Exit 0 whatever the spool did; only a crash or a hang
 * (the caller's timeout) is a failure of the run itself.  The workload
 * allocates nothing itself after start, so a malloc made to fail is one the
 * library met.
 *
 * usage: ioerr-workload DIR sync|commit|buffered PRODUCER COUNT [SECONDS [SYNC_TIMEOUT]]
 * SECONDS (default 10) bounds the run; SYNC_TIMEOUT (default 3) is the
 * timeout of each spool_sync: short, a fault that lasts a few commits makes
 * the staged modes' spool_sync report it rather than wait it out. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../spool/testutil.h"

#define AFTER 3

/* The event {"p": producer, "n": n, "message": "ioerr"} as msgpack, like
 * tu_payload's, but into buf: no malloc, so that the workload itself keeps
 * going when malloc is made to fail (fiu-run).  Returns the length. */
static size_t payload(unsigned char buf[64], int64_t producer, uint64_t n)
{
	size_t k = 0;
	buf[k++] = 0x83; /* map of 3 */
	buf[k++] = 0xa1;
	buf[k++] = 'p';
	buf[k++] = 0xd3; /* int 64 */
	for (int i = 7; i >= 0; i--)
		buf[k++] = (unsigned char)((uint64_t)producer >> (8 * i));
	buf[k++] = 0xa1;
	buf[k++] = 'n';
	buf[k++] = 0xcf; /* uint 64 */
	for (int i = 7; i >= 0; i--)
		buf[k++] = (unsigned char)(n >> (8 * i));
	buf[k++] = 0xa7;
	memcpy(buf + k, "message", 7);
	k += 7;
	buf[k++] = 0xa5;
	memcpy(buf + k, "ioerr", 5);
	k += 5;
	return k;
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void nap(double s)
{
	struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

int main(int argc, char **argv)
{
	if (argc < 5) {
		fprintf(stderr,
			"usage: %s DIR sync|commit|buffered PRODUCER COUNT [SECONDS [SYNC_TIMEOUT]]\n",
			argv[0]);
		return 2;
	}
	const char *dir = argv[1];
	enum spool_durability mode;
	if (spool_durability_parse(argv[2], &mode) != 0) {
		fprintf(stderr, "bad mode %s\n", argv[2]);
		return 2;
	}
	int64_t producer = strtoll(argv[3], NULL, 10);
	uint64_t count = strtoull(argv[4], NULL, 10);
	double limit = argc > 5 ? strtod(argv[5], NULL) : 10.0;
	double sync_timeout = argc > 6 ? strtod(argv[6], NULL) : 3.0;
	static char obuf[4096]; /* stdio must not need malloc either */
	setvbuf(stdout, obuf, _IOLBF, sizeof(obuf));

	double deadline = now_s() + limit;
	struct spool_options opt;
	spool_options_init(&opt);
	opt.durability = mode;
	opt.commit_interval_seconds = 0.001;
	opt.flush_interval_seconds = 0.05;
	opt.flush_batch = 4;
	opt.full_timeout_seconds = 0.5;

	unsigned long errors = 0, promised = 0;
	struct spool *s = NULL;
	for (;;) {
		char err[512] = "";
		int rc = spool_open(dir, &opt, &s, err, sizeof(err));
		if (rc == 0)
			break;
		errors++;
		printf("O %d\n", rc);
		fprintf(stderr, "spool_open: %s\n", err);
		if (now_s() > deadline) {
			printf("R fail\nEND %lu %lu\n", errors, promised);
			return 0;
		}
		nap(0.02);
	}

	/* counters appended (A) but not yet covered by a successful sync */
	static uint64_t staged[65536];
	size_t nstaged = 0, cap = sizeof(staged) / sizeof(staged[0]);
	uint64_t n = 0;
	unsigned since_err = 0; /* promises since the last error */
	bool any_err = errors > 0;
	while (now_s() < deadline) {
		if (n >= count && (!any_err || since_err >= AFTER))
			break;
		n++;
		unsigned char ev[64];
		size_t evlen = payload(ev, producer, n);
		int rc = spool_append(s, SPOOL_SEV_INFO, ev, evlen);
		if (rc != 0) {
			printf("F %llu %d\n", (unsigned long long)n, rc);
			errors++;
			any_err = true;
			since_err = 0;
			nap(0.005);
			continue;
		}
		printf("A %llu\n", (unsigned long long)n);
		if (mode == SPOOL_SYNC) {
			printf("P %llu\n", (unsigned long long)n);
			promised++;
			since_err++;
			continue;
		}
		if (nstaged < cap)
			staged[nstaged++] = n;
		double left = deadline - now_s();
		rc = spool_sync(s, left < sync_timeout ? (left > 0.1 ? left : 0.1) : sync_timeout,
				NULL);
		if (rc != 0) {
			printf("S %d\n", rc);
			errors++;
			any_err = true;
			since_err = 0;
			nap(0.005);
			continue;
		}
		for (size_t i = 0; i < nstaged; i++)
			printf("P %llu\n", (unsigned long long)staged[i]);
		promised += nstaged;
		since_err += (unsigned)nstaged;
		nstaged = 0;
	}
	/* staged records not yet synced: one last chance before close */
	if (nstaged > 0) {
		int rc = spool_sync(s, 3.0, NULL);
		if (rc == 0) {
			for (size_t i = 0; i < nstaged; i++)
				printf("P %llu\n", (unsigned long long)staged[i]);
			promised += nstaged;
			since_err += (unsigned)nstaged;
		} else {
			printf("S %d\n", rc);
			errors++;
			since_err = 0;
		}
	}
	printf("R %s\n", since_err > 0 ? "ok" : "fail");
	int rc = spool_close(s);
	printf("C %d\n", rc);
	if (rc)
		errors++;
	printf("END %lu %lu\n", errors, promised);
	return 0;
}
