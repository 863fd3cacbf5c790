/* test_link_tbf.c — bandwidth_limit on a 1 Mbit/s link.  The program moves
 * itself into a network namespace of its own (unshare, as `unshare -rn`
 * does), where lo (MTU 1500) goes through `tc tbf rate 1mbit`, and runs the
 * receiver and the agent there.  Where namespaces or tc are not allowed it
 * exits 77, which meson reports as skipped, with the reason on stderr.
 *
 * The link carries both directions (requests, answers, ACKs): its use is
 * what tbf sent (`tc -s qdisc`) per second against 125,000 bytes/s.  The
 * agent's own rate is what the receiver counts of its requests (request
 * line, headers and body as sent: `request_bytes`) per second of the
 * receiver's clock. */
#include <check.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check_main.h"
#include "harness.h"
#include "link_util.h"

enum {
	LINK_BYTES = 125000, /* 1 Mbit/s */
	NOISE = 200,         /* random characters per event: gzip cannot make them vanish */
};

static const double WARMUP_S = 5, SPAN_S = 30;

struct sample {
	double rx_seconds; /* the receiver's uptime_ms, in seconds */
	double request_bytes, accepted;
	double qdisc_bytes, t;
};

static void sample(const struct th_rx *rx, struct sample *s)
{
	json_t *j = th_rx_stats(rx);
	s->rx_seconds = (double)json_integer_value(json_object_get(j, "uptime_ms")) / 1000;
	s->request_bytes = (double)json_integer_value(json_object_get(j, "request_bytes"));
	s->accepted = (double)json_integer_value(json_object_get(j, "accepted"));
	json_decref(j);
	s->qdisc_bytes = (double)lk_qdisc_sent();
	s->t = th_now();
}

static bool sending(void *arg)
{
	return th_rx_stat(arg, "request_bytes") > 0;
}

struct rates {
	double wire;   /* the agent's request bytes per second */
	double link;   /* bytes per second through tbf, both directions */
	double events; /* accepted per second */
};

/* Starts the agent on a backlog with `extra` configuration, skips
 * WARMUP_S from its first byte, measures SPAN_S, kills it.  The backlog
 * must outlast the span. */
static void run_case(const char *tag, uint64_t backlog, const char *extra, struct rates *out)
{
	struct th_dir d;
	struct th_rx rx;
	th_dir_make(&d, tag);
	th_rx_start(&rx, NULL, NULL);
	lk_fill(d.spool, 1, backlog, NOISE);
	char cfg[512];
	snprintf(cfg, sizeof(cfg), "http:\n  timeouts:\n    request_seconds: 120\n%s", extra);
	lk_config(&d, rx.url, cfg);
	pid_t pid = th_agent_start(&d, NULL);
	ck_assert_msg(th_wait(sending, &rx, 30), "%s: the agent sent nothing in 30 s", tag);
	usleep((useconds_t)(WARMUP_S * 1e6));
	struct sample a, b;
	sample(&rx, &a);
	usleep((useconds_t)(SPAN_S * 1e6));
	sample(&rx, &b);
	uint64_t left = th_stats(d.spool).pending;
	th_agent_stop(pid, SIGKILL, 30);
	ck_assert_msg(left > 0, "%s: the backlog of %llu ran out before the end of the span", tag,
	              (unsigned long long)backlog);
	out->wire = (b.request_bytes - a.request_bytes) / (b.rx_seconds - a.rx_seconds);
	out->events = (b.accepted - a.accepted) / (b.rx_seconds - a.rx_seconds);
	out->link = (b.qdisc_bytes - a.qdisc_bytes) / (b.t - a.t);
	fprintf(
	    stderr,
	    "%s: over %.1f s: requests %.0f bytes/s, %.0f events/s (%.0f wire bytes per event); "
	    "link %.0f bytes/s = %.1f%% of %d\n",
	    tag, b.rx_seconds - a.rx_seconds, out->wire, out->events,
	    out->events > 0 ? out->wire / out->events : 0, out->link, 100 * out->link / LINK_BYTES,
	    LINK_BYTES);
	th_rx_stop(&rx);
	th_dir_remove(&d);
}

/* bandwidth_limit: 62500: the agent's requests come at 62,500 bytes/s,
 * within 5%, over 30 s of steady state. */
START_TEST(bandwidth_limit_holds_the_wire_rate)
{
	struct rates r;
	run_case("cap", 30000, "bandwidth_limit: 62500\n", &r);
	double off = fabs(r.wire - 62500) / 62500;
	ck_assert_msg(off <= 0.05, "%.0f request bytes/s: %.1f%% off bandwidth_limit 62500", r.wire,
	              100 * off);
}
END_TEST

/* No cap: the agent keeps the link at least 90% busy. */
START_TEST(no_cap_uses_the_link)
{
	struct rates r;
	run_case("nocap", 45000, "", &r);
	ck_assert_msg(r.link >= 0.90 * LINK_BYTES, "the link was %.1f%% busy (%.0f of %d bytes/s)",
	              100 * r.link / LINK_BYTES, r.link, LINK_BYTES);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("agent-link-tbf");
	TCase *tc = tcase_create("tbf");
	tcase_set_timeout(tc, 200);
	tcase_add_test(tc, bandwidth_limit_holds_the_wire_rate);
	tcase_add_test(tc, no_cap_uses_the_link);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	char why[1024];
	/* 1 Mbit/s; a burst of 4 KB (two full-size packets, and more than the
	 * 1514 bytes of one: tbf drops a packet bigger than its burst); 400 ms
	 * of queue, about 50 KB */
	if (lk_netns_enter(why, sizeof(why)) != 0 ||
	    lk_tbf("1mbit", "32kbit", "400ms", why, sizeof(why)) != 0) {
		fprintf(stderr, "agent-link-tbf: skipped: %s\n", why);
		return 77;
	}
	return tc_run(suite());
}
