/* test_link.c — issue 12 over loopback, judged by the receiver's own
 * figures: a backlog replayed with several requests open at once, and one
 * bad event in a batch of 1000 that the server refuses as a whole, found by
 * halving in at most 2·⌈log2 1000⌉+1 = 21 requests. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check_main.h"
#include "harness.h"
#include "link_util.h"

/* A server that answers each request after 300 ms and a backlog of 5,000
 * events, at the default configuration: the receiver sees more than one
 * request open at once (max_in_flight is 4 by default, and never more than
 * that), and every event arrives once.  No speed is asserted here; the
 * link bench measures it. */
START_TEST(backlog_goes_with_several_requests_open)
{
	enum { N = 5000, WINDOW = 4 };
	struct th_dir d;
	struct th_rx rx;
	th_dir_make(&d, "inflight");
	th_rx_start(&rx, d.out, "--latency-ms", "300", NULL);
	th_fill(d.spool, 1, N, 0);
	lk_config(&d, rx.url, NULL);
	double t0 = th_now();
	ck_assert_int_eq(th_agent_run(&d, 180, "--once", NULL), 0);
	double took = th_now() - t0;
	long most = th_rx_stat(&rx, "requests_open_most");
	long requests = th_rx_stat(&rx, "requests");
	fprintf(stderr,
	        "backlog %d, receiver latency 300 ms: %ld requests, at most %ld open at once, "
	        "%.2f s\n",
	        N, requests, most, took);
	ck_assert_msg(most >= 2, "the receiver never saw two requests open at once (%ld)", most);
	ck_assert_msg(most <= WINDOW, "%ld requests open at once, max_in_flight is %d", most,
	              WINDOW);
	ck_assert_int_eq(th_rx_stat(&rx, "requests_open"), 0);
	th_assert_out_each_once(d.out, N, 0);
	ck_assert_int_eq(th_rx_stat(&rx, "accepted"), N);
	ck_assert_int_eq(th_rx_stat(&rx, "duplicates"), 0);
	struct spool_stats st = th_stats(d.spool);
	ck_assert_int_eq(st.pending, 0);
	ck_assert_int_eq(st.dead, 0);
	th_rx_stop(&rx);
	th_dir_remove(&d);
}
END_TEST

/* batch_size 1000 and a server that refuses a whole batch with 422 when
 * one event in it is bad (--reject-whole-batch; the bad event carries the
 * rejected word).  The bad event is first, in the middle or last: the
 * halves find it in at most 21 requests, it alone is dead-lettered (as
 * `spoolctl dead list` shows it, with the 422), and the receiver stores the
 * other 999 once each. */
START_TEST(one_bad_event_in_1000_costs_at_most_21_requests)
{
	enum { N = 1000, MOST = 21 };
	static const long where[] = {1, 537, 1000};
	long bad = where[_i];
	struct th_dir d;
	struct th_rx rx;
	th_dir_make(&d, "halves");
	th_rx_start(&rx, d.out, "--reject-word", "POISON", "--reject-whole-batch", NULL);
	th_fill(d.spool, 1, (uint64_t)bad - 1, 0);
	char text[64];
	snprintf(text, sizeof(text), "msg %ld POISON", bad);
	th_fill_text(d.spool, text);
	th_fill(d.spool, (uint64_t)bad + 1, (uint64_t)(N - bad), 0);
	ck_assert_int_eq(th_stats(d.spool).pending, N);
	lk_config(&d, rx.url, "batch_size: 1000\n");
	ck_assert_int_eq(th_agent_run(&d, 120, "--once", NULL), 0);

	long requests = th_rx_stat(&rx, "requests");
	json_t *s = th_rx_stats(&rx);
	long refused =
	    (long)json_integer_value(json_object_get(json_object_get(s, "status"), "422"));
	json_decref(s);
	fprintf(stderr, "bad event at %ld of %d: %ld requests, %ld refused whole\n", bad, N,
	        requests, refused);
	ck_assert_msg(requests <= MOST, "%ld requests to isolate one bad event in %d", requests, N);
	/* the batch itself and the bad event alone, at least */
	ck_assert_int_ge(refused, 2);

	int status = 0;
	char message[128];
	ck_assert_int_eq(lk_dead_list(d.spool, &status, message, sizeof(message)), 1);
	ck_assert_int_eq(status, 422);
	ck_assert_str_eq(message, text);
	th_assert_out_each_once(d.out, N, bad);
	ck_assert_int_eq(th_rx_stat(&rx, "accepted"), N - 1);
	ck_assert_int_eq(th_rx_stat(&rx, "duplicates"), 0);
	struct spool_stats st = th_stats(d.spool);
	ck_assert_int_eq(st.pending, 0);
	ck_assert_int_eq(st.dead, 1);
	th_rx_stop(&rx);
	th_dir_remove(&d);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("agent-link");
	TCase *tc = tcase_create("link");
	tcase_set_timeout(tc, 300);
	tcase_add_test(tc, backlog_goes_with_several_requests_open);
	tcase_add_loop_test(tc, one_bad_event_in_1000_costs_at_most_21_requests, 0, 3);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return tc_run(suite());
}
