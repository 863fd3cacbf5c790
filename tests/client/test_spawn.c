/* test_spawn.c — the spool-agent the client library starts when none runs
 * (docs/client.md, "The agent the library starts"), with real programs:
 * mlog-logprog (logprog.c), built against libmlog in the build tree, the
 * real spool-agent it finds there by itself, the real mlog-receiver over
 * 127.0.0.1, and a real spool.  test_tls.c has the same over https://. */
#include <check.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <spool/mlog.h>
#include <spool/spool.h>

#include "check_main.h"
#include "harness.h"
#include "spawn_util.h"

static struct th_dir dir;

static void setup(void)
{
	su_clear_env();
	th_dir_make(&dir, "spawn");
	setenv("MASTER_LOG_SPOOL_DIR", dir.spool, 1);
	/* an agent the library starts leaves 3 s after the last event */
	setenv("MASTER_LOG_AGENT_IDLE_SECONDS", "2", 1);
}

static void teardown(void)
{
	mlog_shutdown();
	su_stop_agent(dir.spool);
	th_dir_remove(&dir);
}

/* A program logs with no agent running: the agent it starts delivers every
 * event and leaves once the spool has been idle; the program has no child
 * process left (the short-lived parent of --detach was reaped, and the
 * agent is not its child). */
START_TEST(test_program_starts_an_agent_that_delivers_and_leaves)
{
	struct th_rx rx;
	th_rx_start(&rx, dir.out, NULL);
	setenv("MASTER_LOG_ENDPOINT", rx.url, 1);
	struct su_run run;
	su_logprog(&run, &dir, "40", "first", "30");
	ck_assert_msg(run.status == 0, "the program ended with %d: %s", run.status, run.out);
	ck_assert_msg(strstr(run.out, "flush ok\n"), "%s", run.out);
	ck_assert_msg(strstr(run.out, "children none\n"), "%s", run.out);
	ck_assert_msg(!strstr(run.out, "log failed"), "%s", run.out);
	ck_assert_uint_eq(su_rx_count(dir.out), 40);
	long pid = su_agent_pid(dir.spool);
	ck_assert_msg(pid > 0 && pid != run.pid, "no agent of its own runs (pid %ld)", pid);
	ck_assert_msg(su_wait_lock_free(dir.spool, 30), "the agent did not leave once idle");
	ck_assert_uint_eq(th_stats(dir.spool).pending, 0);
	/* a program that just logs and returns: its exit wakes the agent it
	 * started, which delivers */
	su_logprog(&run, &dir, "5", "second", NULL);
	ck_assert_msg(run.status == 0, "the program ended with %d: %s", run.status, run.out);
	ck_assert_msg(su_wait_rx(dir.out, 45, 30), "%zu of 45 events arrived",
	              su_rx_count(dir.out));
	ck_assert_msg(su_wait_lock_free(dir.spool, 30), "the agent did not leave once idle");
	th_rx_stop(&rx);
}
END_TEST

/* A second program finds the first one's agent running and starts none: the
 * agent's path is a wrapper that counts its starts. */
START_TEST(test_second_program_uses_the_running_agent)
{
	struct th_rx rx;
	th_rx_start(&rx, dir.out, NULL);
	setenv("MASTER_LOG_ENDPOINT", rx.url, 1);
	setenv("MASTER_LOG_AGENT_IDLE_SECONDS", "60", 1);
	char count[400];
	su_counting_agent(&dir, count, sizeof(count));
	struct su_run run;
	su_logprog(&run, &dir, "10", "first", "30");
	ck_assert_msg(run.status == 0 && strstr(run.out, "flush ok\n"), "%d: %s", run.status,
	              run.out);
	ck_assert_int_eq(su_lines(count), 1);
	long agent = su_agent_pid(dir.spool);
	ck_assert_int_gt(agent, 0);
	su_logprog(&run, &dir, "10", "second", "30");
	ck_assert_msg(run.status == 0 && strstr(run.out, "flush ok\n"), "%d: %s", run.status,
	              run.out);
	ck_assert_int_eq(su_lines(count), 1); /* not started again */
	ck_assert_int_eq(su_agent_pid(dir.spool), agent);
	ck_assert_uint_eq(su_rx_count(dir.out), 20);
	th_rx_stop(&rx);
}
END_TEST

/* Two programs start at once with no agent running: each may start one,
 * one agent takes the lock, the other start is harmless; every event
 * arrives once. */
START_TEST(test_two_programs_at_once)
{
	struct th_rx rx;
	th_rx_start(&rx, dir.out, NULL);
	setenv("MASTER_LOG_ENDPOINT", rx.url, 1);
	setenv("MASTER_LOG_AGENT_IDLE_SECONDS", "60", 1);
	char count[400];
	su_counting_agent(&dir, count, sizeof(count));
	struct su_run a, b;
	su_logprog_start(&a, &dir, "a", "30", "pa", "30");
	su_logprog_start(&b, &dir, "b", "30", "pb", "30");
	su_finish(&a, 60);
	su_finish(&b, 60);
	ck_assert_msg(a.status == 0 && strstr(a.out, "flush ok\n"), "%d: %s", a.status, a.out);
	ck_assert_msg(b.status == 0 && strstr(b.out, "flush ok\n"), "%d: %s", b.status, b.out);
	ck_assert_msg(strstr(a.out, "children none\n") && strstr(b.out, "children none\n"), "%s%s",
	              a.out, b.out);
	int starts = su_lines(count);
	ck_assert_msg(starts == 1 || starts == 2, "%d starts", starts);
	ck_assert_int_gt(su_agent_pid(dir.spool), 0);
	ck_assert_uint_eq(su_rx_count(dir.out), 60);
	ck_assert_int_eq(th_rx_stat(&rx, "duplicates"), 0);
	printf("two programs at once: %d agent start(s), one agent runs\n", starts);
	th_rx_stop(&rx);
}
END_TEST

/* MASTER_LOG_AGENT names no program: mlog_flush() says so at once, not
 * after its timeout, naming the agent; the events stay in the spool. */
START_TEST(test_missing_agent_fails_flush_at_once)
{
	setenv("MASTER_LOG_ENDPOINT", "http://127.0.0.1:9", 1);
	setenv("MASTER_LOG_AGENT", "/nonexistent", 1);
	for (int i = 0; i < 3; i++) {
		struct mlog_result r = mlog("nobody can send %d", i);
		ck_assert_msg(r.ok && r.queued, "%s", r.error); /* logging does not fail for it */
	}
	double t0 = th_now();
	struct mlog_result r = mlog_flush(30);
	double took = th_now() - t0;
	printf("mlog_flush(30) with MASTER_LOG_AGENT=/nonexistent failed after %.4f s: %s\n", took,
	       r.error);
	ck_assert(!r.ok);
	ck_assert_msg(took < 5, "took %.2f s of its 30 s timeout", took);
	ck_assert_msg(strstr(r.error, "spool-agent") &&
	                  strstr(r.error, "MASTER_LOG_AGENT=/nonexistent"),
	              "%s", r.error);
	ck_assert_msg(strstr(r.error, "3 events pending"), "%s", r.error);
	ck_assert_uint_eq(th_stats(dir.spool).pending, 3);
	/* the same in a program of its own, which exits 0 */
	struct su_run run;
	su_logprog(&run, &dir, "2", "lost", "30");
	ck_assert_msg(run.status == 0, "%d: %s", run.status, run.out);
	ck_assert_msg(strstr(run.out, "flush failed: ") && strstr(run.out, "/nonexistent"), "%s",
	              run.out);
	ck_assert_msg(run.seconds < 5, "the program took %.2f s", run.seconds);
}
END_TEST

/* The server is down: the program exits within the exit bound (it never
 * waits on the network), the agent it started keeps the events and delivers
 * them once the server is up. */
START_TEST(test_exit_within_bound_when_server_is_down)
{
	struct th_rx rx;
	th_rx_start(&rx, NULL, NULL);
	int port = rx.port;
	th_rx_stop(&rx); /* nothing listens there now */
	char url[64], portarg[16];
	snprintf(url, sizeof(url), "http://127.0.0.1:%d", port);
	snprintf(portarg, sizeof(portarg), "%d", port);
	setenv("MASTER_LOG_ENDPOINT", url, 1);
	struct su_run run;
	su_logprog(&run, &dir, "5", "while down", NULL);
	printf("a program logging to a server that is down exited after %.3f s (bound %.1f s)\n",
	       run.seconds, MLOG_EXIT_WAIT_SECONDS);
	ck_assert_msg(run.status == 0, "%d: %s", run.status, run.out);
	ck_assert_msg(run.seconds < MLOG_EXIT_WAIT_SECONDS + 3, "it took %.2f s", run.seconds);
	ck_assert_uint_eq(th_stats(dir.spool).pending, 5);
	ck_assert_int_gt(su_agent_pid(dir.spool), 0); /* still trying */
	th_rx_start(&rx, dir.out, "--port", portarg, NULL);
	ck_assert_msg(su_wait_rx(dir.out, 5, 90), "%zu of 5 arrived", su_rx_count(dir.out));
	th_rx_stop(&rx);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("client-spawn");
	struct {
		const char *name;
		const TTest *t;
	} tests[] = {
	    {"starts-delivers-leaves", test_program_starts_an_agent_that_delivers_and_leaves},
	    {"second-program", test_second_program_uses_the_running_agent},
	    {"two-at-once", test_two_programs_at_once},
	    {"missing-agent", test_missing_agent_fails_flush_at_once},
	    {"server-down-exit", test_exit_within_bound_when_server_is_down},
	};
	for (size_t i = 0; i < sizeof(tests) / sizeof(tests[0]); i++) {
		TCase *tc = tcase_create(tests[i].name);
		tcase_add_checked_fixture(tc, setup, teardown);
		tcase_set_timeout(tc, 180);
		tcase_add_test(tc, tests[i].t);
		suite_add_tcase(s, tc);
	}
	return s;
}

int main(void)
{
	signal(SIGPIPE, SIG_IGN);
	return tc_run(suite());
}
