/* test_send_windows.c — send windows through the real spool-agent and
 * mlog-receiver over 127.0.0.1: nothing reaches the receiver before a
 * window opens and everything does from the moment it opens, while
 * producers keep spooling; a window closing starts no more requests and
 * lets those in flight finish (--once then exits 3); --once outside every
 * window exits 3 at once and sends nothing; SIGHUP applies new windows; and
 * spoolctl status shows where the windows stand. */
#include <check.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <spool/spool.h>

#include "check_main.h"
#include "harness.h"

static double wall(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* send_windows: ["HH:MM:SS-HH:MM:SSZ"] from a to b (UTC; past midnight
 * when b's time of day comes before a's), as a line of YAML. */
static void window_line(time_t a, time_t b, char *buf, size_t len)
{
	struct tm ta, tb;
	gmtime_r(&a, &ta);
	gmtime_r(&b, &tb);
	snprintf(buf, len, "send_windows: [\"%02d:%02d:%02d-%02d:%02d:%02dZ\"]\n", ta.tm_hour,
	         ta.tm_min, ta.tm_sec, tb.tm_hour, tb.tm_min, tb.tm_sec);
}

/* Runs spoolctl --spool DIR status [--json] into out; its exit status. */
static int spoolctl_status(const char *spool, bool json, const char *out)
{
	char prog[600];
	snprintf(prog, sizeof(prog), "%s/tools/spoolctl", th_prog("SPOOL_TEST_BUILD_DIR"));
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		if (!freopen(out, "w", stdout))
			_exit(126);
		execl(prog, prog, "--spool", spool, "status", json ? "--json" : NULL, (char *)NULL);
		_exit(127);
	}
	int st;
	ck_assert_int_eq(waitpid(pid, &st, 0), pid);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* metadata.delivery.spooled_seconds and the timestamp of each stored event
 * give when the agent sent it (at the latest; the timestamp is taken a
 * moment before the event is spooled).  The earliest. */
static double earliest_send(const char *out, size_t *n)
{
	FILE *f = fopen(out, "r");
	ck_assert_ptr_nonnull(f);
	char *line = NULL;
	size_t ll = 0;
	double first = INFINITY;
	*n = 0;
	while (getline(&line, &ll, f) > 0) {
		json_t *j = json_loads(line, 0, NULL);
		ck_assert_ptr_nonnull(j);
		const char *ts = json_string_value(json_object_get(j, "timestamp"));
		json_t *dl = json_object_get(json_object_get(j, "metadata"), "delivery");
		json_t *sp = json_object_get(dl, "spooled_seconds");
		ck_assert_msg(ts && json_is_number(sp), "no timestamp or delivery metadata: %s",
		              line);
		struct tm tm = {0};
		double frac = 0;
		const char *rest = strptime(ts, "%Y-%m-%dT%H:%M:%S", &tm);
		ck_assert_ptr_nonnull(rest);
		if (*rest == '.')
			frac = strtod(rest, NULL);
		double sent = (double)timegm(&tm) + frac + json_number_value(sp);
		if (sent < first)
			first = sent;
		json_decref(j);
		(*n)++;
	}
	free(line);
	fclose(f);
	return first;
}

START_TEST(nothing_before_the_window_opens)
{
	struct th_dir d;
	struct th_rx rx;
	th_dir_make(&d, "win-open");
	th_rx_start(&rx, d.out, NULL);
	th_fill(d.spool, 1, 40, 0);
	/* a window that opens 3 s from now, on a whole second */
	time_t open_at = (time_t)wall() + 3;
	char extra[300], win[100];
	window_line(open_at, open_at + 600, win, sizeof(win));
	snprintf(extra, sizeof(extra),
	         "%sdelivery_metadata: true\nbatch_size: 10\nmax_in_flight: 2\n", win);
	th_config(&d, rx.url, extra);
	pid_t pid = th_agent_start(&d, NULL);
	/* closed: the receiver sees nothing, and producers keep spooling */
	bool more = false;
	while (wall() < (double)open_at - 0.1) {
		ck_assert_msg(th_rx_stat(&rx, "requests") == 0,
		              "a request %.2f s before the window", (double)open_at - wall());
		if (!more && wall() > (double)open_at - 2) {
			th_fill(d.spool, 41, 10, 0);
			more = true;
		}
		usleep(50000);
	}
	ck_assert(more);
	ck_assert_int_eq(th_stats(d.spool).pending, 50);
	/* open: everything, and at once (not at the next poll of some period) */
	double first = 0, end = (double)open_at + 15;
	for (;;) {
		if (!first && th_rx_stat(&rx, "requests") > 0)
			first = wall();
		if (wall() > end ||
		    (th_rx_stat(&rx, "accepted") == 50 && !th_stats(d.spool).pending))
			break;
		usleep(20000);
	}
	ck_assert_int_eq(th_stats(d.spool).pending, 0);
	ck_assert_msg(first > 0 && first < (double)open_at + 1.0,
	              "first request %.2f s after the window opened", first - (double)open_at);
	/* the stored events say when they were sent: none before the window */
	size_t n;
	double sent = earliest_send(d.out, &n);
	ck_assert_uint_eq(n, 50);
	ck_assert_msg(sent >= (double)open_at - 0.05, "an event sent %.3f s before the window",
	              (double)open_at - sent);
	th_assert_out_each_once(d.out, 50, 0);
	ck_assert_int_eq(th_agent_stop(pid, SIGTERM, 30), 0);
	ck_assert(th_file_has(d.log, "closed now, the next opens at"));
	ck_assert(th_file_has(d.log, "send window opened: sending until"));
	th_rx_stop(&rx);
	th_dir_remove(&d);
}
END_TEST

START_TEST(closing_lets_requests_in_flight_finish)
{
	struct th_dir d;
	struct th_rx rx;
	th_dir_make(&d, "win-close");
	th_rx_start(&rx, d.out, "--latency-ms", "300", NULL);
	th_fill(d.spool, 1, 400, 0);
	/* open for an hour already, closing 2 s from now */
	time_t close_at = (time_t)wall() + 2;
	char extra[300], win[100];
	window_line(close_at - 3600, close_at, win, sizeof(win));
	snprintf(extra, sizeof(extra), "%sbatch_size: 10\nmax_in_flight: 2\n", win);
	th_config(&d, rx.url, extra);
	int rc = th_agent_run(&d, 30, "--once", NULL);
	double done = wall();
	ck_assert_int_eq(rc, 3);
	/* it sent until the window closed and then only finished what was
	 * open (a 300 ms answer) */
	ck_assert_msg(done >= (double)close_at && done < (double)close_at + 2,
	              "--once ended %.2f s after the window closed", done - (double)close_at);
	long accepted = th_rx_stat(&rx, "accepted");
	uint64_t pending = th_stats(d.spool).pending;
	ck_assert_msg(accepted >= 10 && pending > 0, "accepted %ld, pending %llu", accepted,
	              (unsigned long long)pending);
	/* the requests in flight were settled: what the receiver took left the
	 * spool, the rest stayed */
	ck_assert_int_eq((long)pending + accepted, 400);
	ck_assert_int_eq(th_rx_stat(&rx, "duplicates"), 0);
	char buf[4096] = "";
	FILE *f = fopen(d.log, "r");
	ck_assert_ptr_nonnull(f);
	const char *at = NULL;
	while (!at && fgets(buf, sizeof(buf), f))
		at = strstr(buf, "send window closed: no new requests until");
	fclose(f);
	ck_assert_msg(at, "no close logged");
	/* how many were in flight at the close is the scheduler's business (a
	 * loaded machine can land the close between two requests); that those
	 * open were finished and settled is checked above */
	ck_assert_ptr_nonnull(strrchr(at, ';'));
	ck_assert(th_file_has(d.log, "--once: outside the send windows"));
	/* nothing more starts after the close */
	long requests = th_rx_stat(&rx, "requests");
	usleep(300000);
	ck_assert_int_eq(th_rx_stat(&rx, "requests"), requests);
	th_rx_stop(&rx);
	th_dir_remove(&d);
}
END_TEST

START_TEST(once_outside_exits_3_at_once)
{
	struct th_dir d;
	struct th_rx rx;
	th_dir_make(&d, "win-once");
	th_rx_start(&rx, d.out, NULL);
	time_t now = (time_t)wall();
	char extra[300], out[400];
	window_line(now + 7200, now + 10800, extra, sizeof(extra));
	th_config(&d, rx.url, extra);
	snprintf(out, sizeof(out), "%s/status.txt", d.root);
	/* an empty spool: nothing remains */
	ck_assert_int_eq(th_agent_run(&d, 30, "--once", NULL), 0);
	th_fill(d.spool, 1, 10, 0);
	double t0 = th_now();
	int rc = th_agent_run(&d, 30, "--once", NULL);
	double took = th_now() - t0;
	ck_assert_int_eq(rc, 3);
	ck_assert_msg(took < 1.0, "--once took %.2f s", took);
	ck_assert_int_eq(th_rx_stat(&rx, "requests"), 0);
	ck_assert_int_eq(th_stats(d.spool).pending, 10);
	ck_assert(th_file_has(d.log,
	                      "--once: outside the send windows: 10 events stay in the spool; "
	                      "the next window opens at"));
	ck_assert(th_file_has(d.log, "(in 2 h 0 min)"));
	/* spoolctl status: the windows the agent published, and the next one */
	struct tm tm;
	char win[40];
	time_t w0 = now + 7200, w1 = now + 10800;
	gmtime_r(&w0, &tm);
	strftime(win, sizeof(win), "%H:%M:%S-", &tm);
	gmtime_r(&w1, &tm);
	strftime(win + strlen(win), sizeof(win) - strlen(win), "%H:%M:%SZ", &tm);
	ck_assert_int_eq(spoolctl_status(d.spool, false, out), 0);
	ck_assert_msg(th_file_has(out, "send windows") && th_file_has(out, win), "no %s", win);
	ck_assert(th_file_has(out, "next window opens at "));
	ck_assert(th_file_has(out, "(in 2 h 0 min)"));
	ck_assert_int_eq(spoolctl_status(d.spool, true, out), 0);
	ck_assert(th_file_has(out, "\"sending_now\":false"));
	ck_assert(th_file_has(out, win));
	/* inside a window --once drains, and spoolctl says when it closes */
	window_line(now - 60, now + 3600, extra, sizeof(extra));
	th_config(&d, rx.url, extra);
	ck_assert_int_eq(th_agent_run(&d, 30, "--once", NULL), 0);
	ck_assert_int_eq(th_stats(d.spool).pending, 0);
	ck_assert_int_eq(spoolctl_status(d.spool, false, out), 0);
	ck_assert(th_file_has(out, "sending now; the window closes at "));
	ck_assert_int_eq(spoolctl_status(d.spool, true, out), 0);
	ck_assert(th_file_has(out, "\"sending_now\":true"));
	th_rx_stop(&rx);
	th_dir_remove(&d);
}
END_TEST

static bool log_has_closed(void *arg)
{
	return th_file_has(arg, "closed now, the next opens at");
}

static bool spool_empty(void *arg)
{
	return th_stats(arg).pending == 0;
}

START_TEST(sighup_applies_new_windows)
{
	struct th_dir d;
	struct th_rx rx;
	th_dir_make(&d, "win-hup");
	th_rx_start(&rx, d.out, NULL);
	th_fill(d.spool, 1, 20, 0);
	time_t now = (time_t)wall();
	char extra[300], meta[200];
	window_line(now + 7200, now + 10800, extra, sizeof(extra));
	th_config(&d, rx.url, extra);
	pid_t pid = th_agent_start(&d, NULL);
	ck_assert(th_wait(log_has_closed, d.log, 10));
	usleep(300000);
	ck_assert_int_eq(th_rx_stat(&rx, "requests"), 0);
	th_meta(d.spool, "agent.send_windows", meta, sizeof(meta));
	ck_assert_msg(strlen(meta) == 18 && meta[17] == 'Z', "published: '%s'", meta);
	/* no windows: always */
	th_config(&d, rx.url, NULL);
	double t0 = th_now();
	kill(pid, SIGHUP);
	ck_assert(th_wait(spool_empty, d.spool, 10));
	ck_assert_msg(th_now() - t0 < 3, "drained %.2f s after SIGHUP", th_now() - t0);
	th_assert_out_each_once(d.out, 20, 0);
	ck_assert(th_file_has(d.log, "no send windows: sending at any time"));
	th_meta(d.spool, "agent.send_windows", meta, sizeof(meta));
	ck_assert_str_eq(meta, "");
	ck_assert_int_eq(th_agent_stop(pid, SIGTERM, 30), 0);
	th_rx_stop(&rx);
	th_dir_remove(&d);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("agent-send-windows");
	TCase *tc = tcase_create("windows");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, once_outside_exits_3_at_once);
	tcase_add_test(tc, sighup_applies_new_windows);
	tcase_add_test(tc, closing_lets_requests_in_flight_finish);
	tcase_add_test(tc, nothing_before_the_window_opens);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	/* the windows of the tests are in UTC; the agent's local time does
	 * not matter, but keep it fixed */
	setenv("TZ", "UTC", 1);
	unsetenv("MASTER_LOG_SEND_WINDOWS");
	return tc_run(suite());
}
