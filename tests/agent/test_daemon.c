/* test_daemon.c — spool-agent as a process: the command line and exit
 * codes, bad configurations, Retry-After, the wake FIFO, signals, SIGHUP,
 * the agent lock and the CPU an idle agent uses. */
#include <check.h>
#include <dirent.h>
#include <stdbool.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <spool/spool.h>

#include "check_main.h"
#include "harness.h"

/* Runs spool-agent with the given config text and args; returns the exit
 * status, stderr in d->log. */
static int run_with(struct th_dir *d, const char *yaml, const char *arg)
{
	FILE *f = fopen(d->config, "w");
	fputs(yaml, f);
	fclose(f);
	unlink(d->log);
	return th_agent_run(d, 30, arg, NULL);
}

static long count_lines(const char *path)
{
	FILE *f = fopen(path, "r");
	if (!f)
		return 0;
	long n = 0;
	int c;
	while ((c = fgetc(f)) != EOF)
		n += c == '\n';
	fclose(f);
	return n;
}

START_TEST(bad_configs_one_message_each)
{
	struct th_dir d;
	th_dir_make(&d, "badcfg");
	char text[1024];
	const char *bad = getenv("BAD_ABI_PLUGIN");
	struct {
		const char *yaml;
		const char *msg;
	} cases[] = {
	    {"http:\n  endpoint: http://127.0.0.1:1\nbatch_size: many\n",
	     ":3:13: key 'batch_size'"},
	    {"http:\n  endpoint: http://127.0.0.1:1\nflush_intreval_seconds: 1\n",
	     ":3:1: key 'flush_intreval_seconds': unknown key"},
	    {"http:\n  endpoint: 127.0.0.1:8000\n", "key 'http.endpoint'"},
	    {"http:\n  endpoint: gopher://h/\n", "key 'http.endpoint'"},
	    {"spool: /tmp/x\n", "key 'http.endpoint': not set"},
	    {"http:\n  endpoint: http://127.0.0.1:1\ntransports: [carrier_pigeon]\n",
	     "no carrier_pigeon.so in"},
	    {NULL, "has ABI version 1, this agent needs 2"},
	    {"http:\n  endpoint: http://127.0.0.1:1\nspool: [\n", "agent.yaml:"},
	    /* a key of the agent's own put in a transport's section */
	    {"http:\n  endpoint: http://127.0.0.1:1\n  batch_size: 5\n",
	     ":3:3: key 'http.batch_size': unknown key"},
	};
	snprintf(text, sizeof(text), "http:\n  endpoint: http://127.0.0.1:1\ntransports: [%s]\n",
	         bad);
	cases[6].yaml = text;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int rc = run_with(&d, cases[i].yaml, "--check-config");
		ck_assert_msg(rc == 2, "case %zu: exit %d", i, rc);
		ck_assert_msg(count_lines(d.log) == 1, "case %zu: %ld lines", i, count_lines(d.log));
		ck_assert_msg(th_file_has(d.log, cases[i].msg), "case %zu: no '%s'", i, cases[i].msg);
		ck_assert(th_file_has(d.log, "spool-agent: "));
		if (cases[i].yaml == text) /* the refused plugin: its file named */
			ck_assert_msg(th_file_has(d.log, bad), "case %zu: %s not named", i, bad);
	}
	/* a good one */
	snprintf(text, sizeof(text),
	         "spool: %s\nhttp:\n  endpoint: http://127.0.0.1:1/api/v1\n  api_key: "
	         "abcdefgh-1234-WXYZ\n",
	         d.spool);
	FILE *f = fopen(d.config, "w");
	fputs(text, f);
	fclose(f);
	ck_assert_int_eq(th_agent_run(&d, 30, "--check-config", NULL), 0);
	/* unknown flags and arguments */
	ck_assert_int_eq(th_agent_run(&d, 30, "--bogus", NULL), 2);
	ck_assert_int_eq(th_agent_run(&d, 30, "extra", NULL), 2);
	ck_assert_int_eq(th_agent_run(&d, 30, "--version", NULL), 0);
	ck_assert_int_eq(th_agent_run(&d, 30, "--help", NULL), 0);
	ck_assert_int_eq(th_agent_run(&d, 30, "--help-config", NULL), 0);
	th_dir_remove(&d);
}
END_TEST

START_TEST(once_exit_codes)
{
	struct th_dir d;
	struct th_rx rx;
	th_dir_make(&d, "once");
	char outage[320];
	snprintf(outage, sizeof(outage), "%s/outage", d.root);
	th_rx_start(&rx, d.out, "--outage-file", outage, NULL);
	th_config(&d, rx.url, NULL);
	/* empty spool: 0 */
	ck_assert_int_eq(th_agent_run(&d, 30, "--once", NULL), 0);
	th_fill(d.spool, 1, 10, 0);
	FILE *f = fopen(outage, "w");
	fclose(f);
	/* cannot send now: 3, events kept */
	ck_assert_int_eq(th_agent_run(&d, 30, "--once", NULL), 3);
	ck_assert_int_eq(th_stats(d.spool).pending, 10);
	char buf[512];
	th_meta(d.spool, "agent.last_error", buf, sizeof(buf));
	ck_assert_msg(strstr(buf, "503"), "last_error: %s", buf);
	unlink(outage);
	/* logging to syslog: nothing on stderr */
	th_config(&d, rx.url, "log:\n  target: syslog\n");
	FILE *cf = fopen(d.config, "r");
	char cfg[2048];
	size_t cl = fread(cfg, 1, sizeof(cfg) - 1, cf);
	fclose(cf);
	cfg[cl] = '\0';
	ck_assert_int_eq(run_with(&d, cfg, "--once"), 0);
	ck_assert_int_eq(count_lines(d.log), 0);
	ck_assert_int_eq(th_stats(d.spool).pending, 0);
	th_rx_stop(&rx);
	th_dir_remove(&d);
}
END_TEST

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

static bool spool_empty(void *arg)
{
	return th_stats(arg).pending == 0;
}

/* Retry-After honoured, seen as an order of events: the event logged after
 * the 503 still makes the same retry batch as the one before it. */
START_TEST(retry_after_orders_events)
{
	bool date = _i == 1;
	struct th_dir d;
	struct th_rx rx;
	th_dir_make(&d, "retryafter");
	if (date)
		th_rx_start(&rx, d.out, "--fail-first", "1", "--retry-after", "3", "--retry-after-date", NULL);
	else
		th_rx_start(&rx, d.out, "--fail-first", "1", "--retry-after", "2", NULL);
	th_fill(d.spool, 1, 1, 0);
	th_config(&d, rx.url, NULL);
	pid_t pid = th_agent_start(&d, NULL);
	struct stat_at_least req1 = {&rx, "requests", 1};
	ck_assert(th_wait(stat_reached, &req1, 30));
	th_fill(d.spool, 2, 1, 0); /* logged during the server's Retry-After */
	spool_wake_agent(d.spool);
	ck_assert(th_wait(spool_empty, d.spool, 30));
	ck_assert_int_eq(th_agent_stop(pid, SIGTERM, 30), 0);
	json_t *st = th_rx_stats(&rx);
	ck_assert_int_eq(json_integer_value(json_object_get(st, "requests")), 2);
	ck_assert_int_eq(json_integer_value(json_object_get(st, "faults")), 1);
	json_decref(st);
	long *msgs;
	ck_assert_int_eq(th_read_out(d.out, &msgs, NULL), 2);
	ck_assert_int_eq(msgs[0], 1);
	ck_assert_int_eq(msgs[1], 2);
	free(msgs);
	ck_assert(th_file_has(d.log, "(Retry-After)"));
	th_rx_stop(&rx);
	th_dir_remove(&d);
}
END_TEST

/* A long Retry-After holds even when the server is back and a producer
 * wakes the agent; SIGTERM then exits 0 with the events kept. */
START_TEST(retry_after_holds_against_wakeups)
{
	struct th_dir d;
	struct th_rx rx;
	th_dir_make(&d, "holds");
	char outage[320];
	snprintf(outage, sizeof(outage), "%s/outage", d.root);
	fclose(fopen(outage, "w"));
	th_rx_start(&rx, d.out, "--outage-file", outage, "--retry-after", "3600", NULL);
	th_fill(d.spool, 1, 5, 0);
	th_config(&d, rx.url, NULL);
	pid_t pid = th_agent_start(&d, NULL);
	struct stat_at_least req1 = {&rx, "requests", 1};
	ck_assert(th_wait(stat_reached, &req1, 30));
	unlink(outage);
	th_fill(d.spool, 6, 1, 0);
	for (int i = 0; i < 5; i++) {
		spool_wake_agent(d.spool);
		usleep(200 * 1000);
	}
	ck_assert_int_eq(th_agent_stop(pid, SIGTERM, 30), 0);
	ck_assert_int_eq(th_rx_stat(&rx, "requests"), 1);
	ck_assert_int_eq(th_stats(d.spool).pending, 6);
	th_rx_stop(&rx);
	th_dir_remove(&d);
}
END_TEST

/* A wake-up sends at once, long before flush_interval. */
START_TEST(wake_sends_at_once)
{
	struct th_dir d;
	struct th_rx rx;
	th_dir_make(&d, "wake");
	th_rx_start(&rx, d.out, NULL);
	th_config(&d, rx.url, "flush_interval_seconds: 3600\n");
	pid_t pid = th_agent_start(&d, NULL);
	char fifo[400];
	snprintf(fifo, sizeof(fifo), "%s/wake", d.spool);
	struct stat sb;
	for (int i = 0; i < 3000 && stat(fifo, &sb) != 0; i++)
		usleep(10000);
	ck_assert(S_ISFIFO(sb.st_mode));
	usleep(100 * 1000); /* the agent is asleep on its hour-long flush interval */
	th_fill(d.spool, 1, 20, 0);
	ck_assert_int_eq(spool_wake_agent(d.spool), 0);
	ck_assert(th_wait(spool_empty, d.spool, 60));
	ck_assert_int_eq(th_agent_stop(pid, SIGTERM, 30), 0);
	long *msgs;
	ck_assert_int_eq(th_read_out(d.out, &msgs, NULL), 20);
	free(msgs);
	th_rx_stop(&rx);
	th_dir_remove(&d);
}
END_TEST

/* SIGTERM during a request: it finishes (its events deleted), then exit 0. */
START_TEST(sigterm_finishes_request_in_flight)
{
	struct th_dir d;
	struct th_rx rx;
	th_dir_make(&d, "term");
	th_rx_start(&rx, d.out, "--latency-ms", "1500", NULL);
	th_fill(d.spool, 1, 30, 0);
	th_config(&d, rx.url, "batch_size: 10\n");
	pid_t pid = th_agent_start(&d, NULL);
	/* the receiver counts a request when it answers: wait for the agent's
	 * start line, then signal while the first (1.5 s) request is out */
	for (int i = 0; i < 3000 && !th_file_has(d.log, "started:"); i++)
		usleep(10000);
	usleep(400 * 1000);
	ck_assert_int_eq(th_rx_stat(&rx, "requests"), 0);
	ck_assert_int_eq(th_agent_stop(pid, SIGTERM, 30), 0);
	long *msgs;
	ck_assert_int_eq(th_read_out(d.out, &msgs, NULL), 10);
	free(msgs);
	ck_assert_int_eq(th_stats(d.spool).pending, 20);
	ck_assert_int_eq(th_rx_stat(&rx, "requests"), 1);
	th_rx_stop(&rx);
	th_dir_remove(&d);
}
END_TEST

/* SIGHUP: a fixed key is picked up without waiting out the 401 backoff. */
START_TEST(sighup_reloads)
{
	struct th_dir d;
	struct th_rx rx;
	th_dir_make(&d, "hup");
	th_rx_start(&rx, d.out, "--api-key", "good-key-0001", NULL);
	th_fill(d.spool, 1, 10, 0);
	th_config(&d, rx.url, "http:\n  api_key: bad-key-0002\n"); /* auth backoff: 30 s */
	pid_t pid = th_agent_start(&d, NULL);
	struct stat_at_least req1 = {&rx, "requests", 1};
	ck_assert(th_wait(stat_reached, &req1, 30));
	th_config(&d, rx.url, "http:\n  api_key: good-key-0001\n");
	kill(pid, SIGHUP);
	ck_assert(th_wait(spool_empty, d.spool, 20));
	/* a broken file on SIGHUP keeps the running configuration */
	FILE *f = fopen(d.config, "w");
	fputs("batch_size: [\n", f);
	fclose(f);
	kill(pid, SIGHUP);
	usleep(300 * 1000);
	th_fill(d.spool, 11, 5, 0);
	spool_wake_agent(d.spool);
	ck_assert(th_wait(spool_empty, d.spool, 20));
	ck_assert_int_eq(th_agent_stop(pid, SIGTERM, 30), 0);
	ck_assert(th_file_has(d.log, "reloaded"));
	ck_assert(th_file_has(d.log, "keeping the running configuration"));
	long *msgs;
	ck_assert_int_eq(th_read_out(d.out, &msgs, NULL), 15);
	free(msgs);
	th_rx_stop(&rx);
	th_dir_remove(&d);
}
END_TEST

START_TEST(one_agent_per_spool)
{
	struct th_dir d;
	struct th_rx rx;
	th_dir_make(&d, "lock");
	th_rx_start(&rx, d.out, NULL);
	th_config(&d, rx.url, NULL);
	pid_t pid = th_agent_start(&d, NULL);
	char fifo[400];
	snprintf(fifo, sizeof(fifo), "%s/wake", d.spool);
	for (int i = 0; i < 3000 && access(fifo, F_OK) != 0; i++)
		usleep(10000);
	ck_assert_int_eq(th_agent_run(&d, 30, "--once", NULL), 1);
	ck_assert(th_file_has(d.log, "another spool-agent"));
	ck_assert_int_eq(th_agent_stop(pid, SIGINT, 30), 0);
	th_rx_stop(&rx);
	th_dir_remove(&d);
}
END_TEST

/* CPU time of every thread of pid, in seconds, from the scheduler's
 * nanosecond account (/proc/PID/task/TID/schedstat); -1 if unavailable. */
static double cpu_seconds_precise(pid_t pid)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%ld/task", (long)pid);
	DIR *d = opendir(path);
	if (!d)
		return -1;
	double total = 0;
	bool any = false;
	struct dirent *de;
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		char sp[400];
		snprintf(sp, sizeof(sp), "%s/%s/schedstat", path, de->d_name);
		FILE *f = fopen(sp, "r");
		unsigned long long ns;
		if (f && fscanf(f, "%llu", &ns) == 1) {
			total += (double)ns / 1e9;
			any = true;
		}
		if (f)
			fclose(f);
	}
	closedir(d);
	return any ? total : -1;
}

/* The same from /proc/PID/stat, in clock ticks (10 ms steps). */
static double cpu_seconds(pid_t pid)
{
	char path[64], buf[1024];
	snprintf(path, sizeof(path), "/proc/%ld/stat", (long)pid);
	FILE *f = fopen(path, "r");
	ck_assert_ptr_nonnull(f);
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	char *p = strrchr(buf, ')');
	ck_assert_ptr_nonnull(p);
	unsigned long ut = 0, st = 0;
	/* fields after the command: state is field 3; utime 14, stime 15 */
	ck_assert_int_eq(sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st), 2);
	return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

/* An idle agent polls its FIFO with the flush timeout: under 1% CPU. */
START_TEST(idle_agent_uses_no_cpu)
{
	struct th_dir d;
	struct th_rx rx;
	th_dir_make(&d, "idle");
	th_rx_start(&rx, d.out, NULL);
	th_config(&d, rx.url, NULL); /* flush_interval 0.2 s: it still looks 5 times a second */
	pid_t pid = th_agent_start(&d, NULL);
	char fifo[400];
	snprintf(fifo, sizeof(fifo), "%s/wake", d.spool);
	for (int i = 0; i < 3000 && access(fifo, F_OK) != 0; i++)
		usleep(10000);
	usleep(500 * 1000);
	/* the scheduler's nanosecond account where the kernel keeps one: the
	 * tick-based figure charges a whole 10 ms tick to whoever runs when it
	 * fires, too coarse for a 20 ms budget on a busy machine */
	bool precise = cpu_seconds_precise(pid) >= 0;
	double c0 = precise ? cpu_seconds_precise(pid) : cpu_seconds(pid);
	sleep(2);
	double used = (precise ? cpu_seconds_precise(pid) : cpu_seconds(pid)) - c0;
	printf("idle agent: %.4f CPU seconds in 2 s (%s)\n", used, precise ? "schedstat" : "ticks");
	ck_assert_msg(used < 0.02, "idle agent used %.3f CPU seconds in 2 s", used);
	ck_assert_int_eq(th_agent_stop(pid, SIGTERM, 30), 0);
	th_rx_stop(&rx);
	th_dir_remove(&d);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("agent-daemon");
	TCase *tc = tcase_create("daemon");
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, bad_configs_one_message_each);
	tcase_add_test(tc, once_exit_codes);
	tcase_add_loop_test(tc, retry_after_orders_events, 0, 2);
	tcase_add_test(tc, retry_after_holds_against_wakeups);
	tcase_add_test(tc, wake_sends_at_once);
	tcase_add_test(tc, sigterm_finishes_request_in_flight);
	tcase_add_test(tc, sighup_reloads);
	tcase_add_test(tc, one_agent_per_spool);
	tcase_add_test(tc, idle_agent_uses_no_cpu);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return tc_run(suite());
}
