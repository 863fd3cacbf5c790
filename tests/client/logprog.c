/* logprog.c — a program that logs through libmlog as a user's program
 * would, for the tests of the agent the library starts (test_client.c).
 *
 *   mlog-logprog COUNT PREFIX [FLUSH_SECONDS]
 *
 * Logs COUNT events "PREFIX 0" .. "PREFIX COUNT-1" with mlog() (settings from
 * the MASTER_LOG_* environment), then, with FLUSH_SECONDS, flushes.  Prints
 * on standard output, one per line: "log failed: ERROR" for a call that
 * failed; "spooled N", the calls whose event went to the spool (in direct
 * mode: those the server did not take); "flush ok" or "flush failed: ERROR",
 * and "flush took SECONDS";
 * "children none" when it has no child process at all (neither running nor
 * left to reap), else "children left".  Then returns 0 from main(), so that
 * the library's exit handler runs: the exit status tells whether the
 * program survived its own exit. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>

#include <spool/mlog.h>

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	if (argc < 3 || argc > 4) {
		fprintf(stderr, "usage: %s COUNT PREFIX [FLUSH_SECONDS]\n", argv[0]);
		return 2;
	}
	long count = strtol(argv[1], NULL, 10), spooled = 0;
	for (long i = 0; i < count; i++) {
		struct mlog_result r = mlog("%s %ld", argv[2], i);
		if (!r.ok)
			printf("log failed: %s\n", r.error);
		spooled += r.queued;
	}
	printf("spooled %ld\n", spooled);
	if (argc == 4) {
		double t0 = now();
		struct mlog_result r = mlog_flush(strtod(argv[3], NULL));
		double took = now() - t0;
		if (r.ok)
			printf("flush ok\n");
		else
			printf("flush failed: %s\n", r.error);
		printf("flush took %.3f\n", took);
	}
	int st;
	printf("children %s\n", waitpid(-1, &st, WNOHANG) < 0 && errno == ECHILD ? "none" : "left");
	fflush(stdout);
	return 0;
}
