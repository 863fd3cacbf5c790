/* test_replay.c — replaying a backlog: requests that grow to
 * max_batch_size while a backlog waits, the most severe events first with
 * replay_order: severity, and a paused drain that sends nothing.  Real
 * spool, real spool-agent, real mlog-receiver over 127.0.0.1. */
#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check_main.h"
#include "harness.h"

/* A backlog of 3,000 at the default batch_size 100: requests of 1,000
 * (max_batch_size), not 30 of 100.  A live trickle of 150 afterwards goes
 * spread over the window, at least batch_size events a request. */
START_TEST(backlog_requests_grow)
{
	enum { N = 3000 };
	struct th_dir d;
	struct th_rx rx;
	th_dir_make(&d, "grow");
	th_rx_start(&rx, d.out, NULL);
	th_fill(d.spool, 1, N, 0);
	th_config(&d, rx.url, "max_batch_size: 1000\nmax_in_flight: 4\n");
	ck_assert_int_eq(th_agent_run(&d, 60, "--once", NULL), 0);
	long *msgs = NULL;
	size_t got = th_read_out(d.out, &msgs, NULL);
	th_assert_each_once(msgs, got, N, 0);
	free(msgs);
	ck_assert_int_eq(th_rx_stat(&rx, "batches"), 3);

	/* 150 more with the window empty: two requests (150 > batch_size,
	 * spread over the free slots, 100 events a request at least) */
	th_fill(d.spool, N + 1, 150, 0);
	ck_assert_int_eq(th_agent_run(&d, 60, "--once", NULL), 0);
	ck_assert_int_eq(th_rx_stat(&rx, "batches"), 3 + 2);
	ck_assert_int_eq(th_stats(d.spool).pending, 0);
	th_rx_stop(&rx);
	th_dir_remove(&d);
}
END_TEST

/* A mixed backlog: every 97th event fatal, every 13th error, every 5th
 * warn, every 3rd debug, the rest info. */
static int mixed(uint64_t num)
{
	if (num % 97 == 0)
		return SPOOL_SEV_FATAL;
	if (num % 13 == 0)
		return SPOOL_SEV_ERROR;
	if (num % 5 == 0)
		return SPOOL_SEV_WARN;
	if (num % 3 == 0)
		return SPOOL_SEV_DEBUG;
	return SPOOL_SEV_INFO;
}

static int mixed_fatal(uint64_t num)
{
	(void)num;
	return SPOOL_SEV_FATAL;
}

/* replay_order: severity.  With one request at a time the receiver gets
 * every fatal, then every error, warn, info, debug, each in enqueue order.
 * With the default window of 4 the severities still arrive in blocks, most
 * severe first (requests of one severity may overtake each other). */
START_TEST(severity_order)
{
	enum { N = 5000 };
	int window = _i == 0 ? 1 : 4;
	struct th_dir d;
	struct th_rx rx;
	th_dir_make(&d, window == 1 ? "sev1" : "sev4");
	th_rx_start(&rx, d.out, NULL);
	th_fill_sev(d.spool, 1, N, mixed);
	char extra[200];
	snprintf(extra, sizeof(extra), "replay_order: severity\nbatch_size: 100\nmax_batch_size: 300\n"
	                               "max_in_flight: %d\n",
	         window);
	th_config(&d, rx.url, extra);
	ck_assert_int_eq(th_agent_run(&d, 60, "--once", NULL), 0);
	long *msgs = NULL;
	size_t got = th_read_out(d.out, &msgs, NULL);
	th_assert_each_once(msgs, got, N, 0);
	int last_sev = SPOOL_SEV_FATAL;
	long last_msg[SPOOL_SEV_FATAL + 1] = {0};
	size_t inversions = 0;
	for (size_t i = 0; i < got; i++) {
		int sev = mixed((uint64_t)msgs[i]);
		ck_assert_msg(sev <= last_sev, "message %ld (%s) arrived after a %s event", msgs[i],
		              spool_severity_name(sev), spool_severity_name(last_sev));
		last_sev = sev;
		inversions += msgs[i] < last_msg[sev];
		last_msg[sev] = msgs[i];
	}
	if (window == 1)
		ck_assert_int_eq(inversions, 0);
	free(msgs);
	ck_assert_int_eq(th_stats(d.spool).pending, 0);
	th_rx_stop(&rx);
	th_dir_remove(&d);
}
END_TEST

/* Fatal events that arrive while a long backlog of info is being replayed
 * go out before the rest of that backlog (the next read looks at fatal
 * first), and nothing is lost or sent twice. */
START_TEST(severity_new_fatal_overtakes)
{
	enum { N = 4000, F = 20 };
	struct th_dir d;
	struct th_rx rx;
	th_dir_make(&d, "sevnew");
	th_rx_start(&rx, d.out, "--latency-ms", "100", NULL);
	th_fill(d.spool, 1, N, 0);
	th_config(&d, rx.url, "replay_order: severity\nbatch_size: 100\nmax_batch_size: 100\n");
	pid_t pid = th_agent_start(&d, NULL);
	/* once the replay is under way, F fatal events */
	for (int i = 0; i < 200 && th_stats(d.spool).pending > N - 500; i++)
		usleep(20000);
	ck_assert_int_le(th_stats(d.spool).pending, N - 500);
	th_fill_sev(d.spool, N + 1, F, mixed_fatal);
	for (int i = 0; i < 600 && th_stats(d.spool).pending > 0; i++)
		usleep(50000);
	ck_assert_int_eq(th_agent_stop(pid, SIGTERM, 30), 0);
	long *msgs = NULL;
	size_t got = th_read_out(d.out, &msgs, NULL);
	th_assert_each_once(msgs, got, N + F, 0);
	size_t last_fatal = 0;
	for (size_t i = 0; i < got; i++)
		if (msgs[i] > N)
			last_fatal = i;
	/* the fatal ones were all in before the last info ones */
	ck_assert_msg(last_fatal < got - 500, "last fatal event arrived at %zu of %zu", last_fatal, got);
	free(msgs);
	th_rx_stop(&rx);
	th_dir_remove(&d);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("replay");
	TCase *tc = tcase_create("replay");
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, backlog_requests_grow);
	tcase_add_loop_test(tc, severity_order, 0, 2);
	tcase_add_test(tc, severity_new_fatal_overtakes);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return tc_run(suite());
}
