/* test_crash.c — no loss: a 10,000-event backlog after an outage, the
 * agent killed with SIGKILL at random moments during sends, and its delete
 * commits failing with EIO. */
#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check_main.h"
#include "strace_util.h"
#include "harness.h"

static bool spool_empty(void *arg)
{
	return th_stats(arg).pending == 0;
}

struct stat_at_least {
	const struct th_rx *rx;
	const char *name;
	long n;
};

static bool stat_reached(void *arg)
{
	struct stat_at_least *s = arg;
	return th_rx_stat(s->rx, s->name) >= s->n;
}

START_TEST(backlog_after_outage_drains_in_order)
{
	enum { N = 10000 };
	struct th_dir d;
	struct th_rx rx;
	th_dir_make(&d, "backlog");
	char outage[320];
	snprintf(outage, sizeof(outage), "%s/outage", d.root);
	fclose(fopen(outage, "w"));
	th_rx_start(&rx, d.out, "--outage-file", outage, NULL);
	th_fill(d.spool, 1, 1, 0);
	FILE *f = fopen(d.config, "w");
	fprintf(f,
	        "spool: %s\nhttp:\n  endpoint: %s\nbatch_size: 500\nmax_batch_size: 500\nmax_in_flight: 1\n"
	        "flush_interval_seconds: 0.2\n"
	        "retry:\n  initial_seconds: 0.05\n  max_seconds: 0.5\n",
	        d.spool, rx.url);
	fclose(f);
	pid_t pid = th_agent_start(&d, NULL);
	struct stat_at_least faults = {&rx, "faults", 3};
	ck_assert(th_wait(stat_reached, &faults, 60));
	th_fill(d.spool, 2, N - 1, 0); /* the backlog builds up during the outage */
	ck_assert_int_eq(th_stats(d.spool).pending, N);
	unlink(outage);
	ck_assert(th_wait(spool_empty, d.spool, 180));
	ck_assert_int_eq(th_agent_stop(pid, SIGTERM, 30), 0);
	long *msgs, *seqs;
	size_t got = th_read_out(d.out, &msgs, &seqs);
	ck_assert_int_eq(got, N);
	for (size_t i = 0; i < got; i++) {
		ck_assert_int_eq(msgs[i], (long)i + 1);
		if (i)
			ck_assert_int_gt(seqs[i], seqs[i - 1]);
	}
	free(msgs);
	free(seqs);
	ck_assert_int_eq(th_rx_stat(&rx, "duplicates"), 0);
	ck_assert_int_eq(th_stats(d.spool).dead, 0);
	th_rx_stop(&rx);
	th_dir_remove(&d);
}
END_TEST

/* 30 rounds: start the agent, kill -9 it at a random moment while it sends.
 * Then drain the rest.  Every event arrives (the receiver stores each
 * client_event_id once); the only duplicates are re-sends of batches the
 * receiver had stored when a kill landed: with one request in flight, at
 * most two batches per kill (one whose deletes were being committed while
 * the next was out). */
START_TEST(sigkill_during_sends_loses_nothing)
{
	enum { N = 20000, ROUNDS = 30, BATCH = 50 };
	struct th_dir d;
	struct th_rx rx;
	th_dir_make(&d, "kill");
	th_rx_start(&rx, d.out, "--latency-ms", "5", NULL);
	th_fill(d.spool, 1, N, 0);
	FILE *f = fopen(d.config, "w");
	fprintf(f,
	        "spool: %s\nhttp:\n  endpoint: %s\nbatch_size: %d\nmax_batch_size: %d\nmax_in_flight: 1\n"
	        "retry:\n  initial_seconds: 0.01\n  max_seconds: 0.1\n",
	        d.spool, rx.url, BATCH, BATCH);
	fclose(f);
	unsigned seed = (unsigned)getpid();
	int killed_mid = 0;
	for (int r = 0; r < ROUNDS; r++) {
		pid_t pid = th_agent_start(&d, NULL);
		usleep(20000 + (useconds_t)(rand_r(&seed) % 120000));
		int st = th_agent_stop(pid, SIGKILL, 30);
		/* killed while it still had events to send */
		killed_mid += st == -SIGKILL && th_stats(d.spool).pending > 0;
	}
	ck_assert_int_gt(killed_mid, ROUNDS / 2);
	int rc;
	for (int i = 0; i < 5 && (rc = th_agent_run(&d, 120, "--once", NULL)) != 0; i++)
		;
	ck_assert_int_eq(rc, 0);
	long *msgs;
	size_t got = th_read_out(d.out, &msgs, NULL);
	ck_assert_int_eq(got, N);
	char *seen = calloc(N + 1, 1);
	for (size_t i = 0; i < got; i++) {
		ck_assert(msgs[i] >= 1 && msgs[i] <= N);
		ck_assert_msg(!seen[msgs[i]], "msg %ld stored twice", msgs[i]);
		seen[msgs[i]] = 1;
	}
	free(seen);
	free(msgs);
	long dups = th_rx_stat(&rx, "duplicates");
	ck_assert_int_le(dups, (long)ROUNDS * 2 * BATCH);
	struct spool_stats ss = th_stats(d.spool);
	ck_assert_int_eq(ss.pending, 0);
	ck_assert_int_eq(ss.dead, 0);
	ck_assert_int_eq(ss.acked_total, N);
	fprintf(stderr, "sigkill rounds: %d killed mid-run, %ld duplicates re-sent\n", killed_mid, dups);
	th_rx_stop(&rx);
	th_dir_remove(&d);
}
END_TEST

/* The agent's settling commits fail (fdatasync returns EIO, injected by
 * strace at each thread's 2nd to 12th calls, while batches are answered): the
 * acknowledged events stay in the spool until a commit succeeds, the agent
 * goes on, and in the end every event is in the receiver's store exactly
 * once, none sent twice (the deletes are tried again, the events not read
 * again), none dead-lettered and the spool empty. */
START_TEST(failed_delete_commits_are_retried)
{
	enum { N = 6000 };
	char why[700];
	if (tc_strace_usable(why, sizeof(why)) != 0) {
		fprintf(stderr, "failed_delete_commits_are_retried: SKIP: %s\n", why);
		return;
	}
	tc_asan_without_leaks(); /* the agent runs under strace */
	struct th_dir d;
	struct th_rx rx;
	th_dir_make(&d, "settle-eio");
	th_rx_start(&rx, d.out, NULL);
	th_fill(d.spool, 1, N, 0);
	FILE *f = fopen(d.config, "w");
	fprintf(f,
	        "spool: %s\nhttp:\n  endpoint: %s\nbatch_size: 100\nmax_batch_size: 100\nmax_in_flight: 4\n"
	        "retry:\n  initial_seconds: 0.01\n  max_seconds: 0.1\n",
	        d.spool, rx.url);
	fclose(f);
	/* strace found in PATH (the harness execv()s a path) */
	static const char *const wrapper[] = {"/usr/bin/env", "strace", "-f", "-o", "/dev/null", "-e",
					      "inject=fdatasync:error=EIO:when=2..12", NULL};
	/* it leaves by itself once the spool stayed empty (a signal would
	 * reach strace, not the agent) */
	pid_t pid = th_agent_start_under(&d, wrapper, "--exit-idle", "1", NULL);
	ck_assert_int_eq(th_agent_stop(pid, 0, 180), 0);
	ck_assert_msg(th_file_has(d.log, "settling"), "no settling commit failed: the fault missed");
	th_assert_out_each_once(d.out, N, 0);
	struct spool_stats ss = th_stats(d.spool);
	ck_assert_int_eq(ss.pending, 0);
	ck_assert_int_eq(ss.dead, 0);
	ck_assert_int_eq(ss.acked_total, N);
	/* the failed deletes were committed later, not re-read and sent again */
	ck_assert_int_eq(th_rx_stat(&rx, "duplicates"), 0);
	th_rx_stop(&rx);
	th_dir_remove(&d);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("agent-crash");
	TCase *tc = tcase_create("crash");
	tcase_set_timeout(tc, 300);
	tcase_add_test(tc, backlog_after_outage_drains_in_order);
	tcase_add_test(tc, sigkill_during_sends_loses_nothing);
	tcase_add_test(tc, failed_delete_commits_are_retried);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return tc_run(suite());
}
