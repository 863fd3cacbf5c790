/* test_link_crash.c — the agent killed with SIGKILL while it has 4 requests
 * open, 30 rounds: nothing is lost, and the only duplicates are events the
 * receiver had stored while they were still pending in the spool. */
#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check_main.h"
#include "harness.h"
#include "link_util.h"

struct stat_wait {
	const struct th_rx *rx;
	const char *name;
	long at_least, at_most;
};

static bool stat_within(void *arg)
{
	const struct stat_wait *w = arg;
	long v = th_rx_stat(w->rx, w->name);
	return v >= w->at_least && v <= w->at_most;
}

/* Each round starts the agent on the backlog, waits until the receiver
 * holds 4 of its requests (--latency-ms), and kills it at a random moment
 * in the first half of their wait.  The receiver finishes the requests it
 * holds and stores their events although nobody reads the answer: the
 * agent's "lost answer".  Once the receiver has none open, the events it
 * has stored that are still pending in the spool are the ones that may
 * come again; their sum over the rounds bounds the duplicates.  Then one
 * agent drains the rest: every event is stored exactly once, none is dead. */
START_TEST(sigkill_with_four_requests_open_loses_nothing)
{
	/* a backlog that outlasts 30 rounds on a loaded machine too */
	enum { N = 8000, ROUNDS = 30, WINDOW = 4, LATENCY_MS = 200 };
	struct th_dir d;
	struct th_rx rx;
	th_dir_make(&d, "killopen");
	th_rx_start(&rx, d.out, "--latency-ms", "200", NULL);
	th_fill(d.spool, 1, N, 0);
	/* small requests, so that 30 rounds leave a backlog */
	lk_config(&d, rx.url, "batch_size: 10\nmax_batch_size: 10\n");
	char *stored = calloc(N + 1, 1), *pending = calloc(N + 1, 1);
	ck_assert(stored && pending);
	unsigned seed = (unsigned)getpid();
	long may_repeat = 0;
	int full_window = 0;
	for (int r = 0; r < ROUNDS; r++) {
		pid_t pid = th_agent_start(&d, NULL);
		struct stat_wait open4 = {&rx, "requests_open", WINDOW, WINDOW};
		bool reached = th_wait(stat_within, &open4, 20);
		usleep((useconds_t)(rand_r(&seed) % (LATENCY_MS * 1000 / 2)));
		int st = th_agent_stop(pid, SIGKILL, 30);
		long open_at_kill = th_rx_stat(&rx, "requests_open");
		ck_assert_msg(st == -SIGKILL, "round %d: the agent had ended (%d) before the kill",
		              r, st);
		full_window += reached && open_at_kill == WINDOW;
		struct stat_wait idle = {&rx, "requests_open", 0, 0};
		ck_assert(th_wait(stat_within, &idle, 10));

		long *msgs;
		size_t got = th_read_out(d.out, &msgs, NULL);
		for (size_t i = 0; i < got; i++) {
			ck_assert(msgs[i] >= 1 && msgs[i] <= N);
			stored[msgs[i]] = 1;
		}
		free(msgs);
		size_t left = lk_pending(d.spool, pending, N + 1);
		ck_assert_msg(left > 0, "round %d: the backlog ran out", r);
		for (long m = 1; m <= N; m++)
			may_repeat += stored[m] && pending[m];
	}
	/* the rest, in larger requests */
	lk_config(&d, rx.url, NULL);
	int rc = -1;
	for (int i = 0; i < 5 && (rc = th_agent_run(&d, 120, "--once", NULL)) != 0; i++)
		;
	ck_assert_int_eq(rc, 0);

	long dups = th_rx_stat(&rx, "duplicates");
	fprintf(stderr,
	        "%d rounds, %d killed with %d requests open; %ld duplicates, %ld events stored and "
	        "still pending at the kills\n",
	        ROUNDS, full_window, WINDOW, dups, may_repeat);
	ck_assert_msg(full_window >= ROUNDS / 2, "only %d of %d kills with %d requests open",
	              full_window, ROUNDS, WINDOW);
	th_assert_out_each_once(d.out, N, 0);
	ck_assert_int_eq(th_rx_stat(&rx, "unique_ids"), N);
	ck_assert_msg(dups <= may_repeat,
	              "%ld duplicates, but only %ld events were stored and still pending at a kill",
	              dups, may_repeat);
	struct spool_stats ss = th_stats(d.spool);
	ck_assert_int_eq(ss.pending, 0);
	ck_assert_int_eq(ss.dead, 0);
	ck_assert_int_eq(ss.acked_total, N);
	free(stored);
	free(pending);
	th_rx_stop(&rx);
	th_dir_remove(&d);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("agent-link-crash");
	TCase *tc = tcase_create("crash");
	tcase_set_timeout(tc, 300);
	tcase_add_test(tc, sigkill_with_four_requests_open_loses_nothing);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return tc_run(suite());
}
