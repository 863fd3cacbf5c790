/* test_protocol.c — every answer row of PROTOCOL.md, through the real
 * spool-agent (--once) against the real mlog-receiver on 127.0.0.1. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check_main.h"
#include "harness.h"

/* Every event of 1..n stored exactly once, in order. */
static void assert_delivered_in_order(const char *out, long n)
{
	long *msgs, *seqs;
	size_t got = th_read_out(out, &msgs, &seqs);
	ck_assert_int_eq((long)got, n);
	for (size_t i = 0; i < got; i++) {
		ck_assert_int_eq(msgs[i], (long)i + 1);
		ck_assert_int_gt(seqs[i], 0);
		if (i)
			ck_assert_int_gt(seqs[i], seqs[i - 1]);
	}
	free(msgs);
	free(seqs);
}

START_TEST(batch_200_accepts_and_deletes)
{
	struct th_dir d;
	struct th_rx rx;
	th_dir_make(&d, "ok");
	th_rx_start(&rx, d.out, NULL);
	th_fill(d.spool, 1, 250, 0);
	th_config(&d, rx.url, "batch_size: 100\n");
	ck_assert_int_eq(th_agent_run(&d, 60, "--once", NULL), 0);
	assert_delivered_in_order(d.out, 250);
	ck_assert_int_eq(th_stats(d.spool).pending, 0);
	ck_assert_int_eq(th_rx_stat(&rx, "batches"), 3);
	/* protocol headers reached the server */
	json_t *st = th_rx_stats(&rx);
	const char *ua = json_string_value(json_object_get(st, "last_user_agent"));
	ck_assert_ptr_nonnull(ua);
	ck_assert_msg(strncmp(ua, "master-log-spool/", 17) == 0 && strstr(ua, " libcurl/"), "UA %s", ua);
	const char *idem = json_string_value(json_object_get(st, "last_idempotency_key"));
	ck_assert_msg(idem && strlen(idem) == 26 + 3 && strcmp(idem + 26, "-50") == 0, "key %s", idem);
	ck_assert_int_eq(json_integer_value(json_object_get(st, "idempotency_keys")), 3);
	json_decref(st);
	/* the agent's figures are in the meta store */
	char buf[512];
	th_meta(d.spool, "agent.counters", buf, sizeof(buf));
	ck_assert_msg(strstr(buf, "acked=250"), "counters: %s", buf);
	th_meta(d.spool, "agent.last_success", buf, sizeof(buf));
	ck_assert_double_gt(atof(buf), 1e9);
	th_meta(d.spool, "agent.send_seconds_per_event", buf, sizeof(buf));
	ck_assert_double_gt(atof(buf), 0);
	th_rx_stop(&rx);
	th_dir_remove(&d);
}
END_TEST

START_TEST(batch_2xx_bad_or_empty_body_acknowledges)
{
	const char *flag = _i == 0 ? "--bad-json-2xx" : "--empty-2xx";
	struct th_dir d;
	struct th_rx rx;
	th_dir_make(&d, "2xx");
	th_rx_start(&rx, d.out, flag, NULL);
	th_fill(d.spool, 1, 30, 0);
	th_config(&d, rx.url, NULL);
	ck_assert_int_eq(th_agent_run(&d, 60, "--once", NULL), 0);
	assert_delivered_in_order(d.out, 30);
	ck_assert_int_eq(th_stats(d.spool).pending, 0);
	ck_assert_int_eq(th_stats(d.spool).dead, 0);
	th_rx_stop(&rx);
	th_dir_remove(&d);
}
END_TEST

/* A 207 that cannot be read acknowledges nothing: the server said that not
 * all were taken, and "msg 3" (a 503 inside it) was never stored.  The
 * agent sends them again one by one: 1 and 2 are taken, msg 3 gets its
 * 503, and the agent stops there to retry later, keeping 3, 4 and 5. */
START_TEST(batch_207_unreadable_keeps_events)
{
	const char *flag = _i == 0 ? "--bad-json-2xx" : "--empty-2xx";
	struct th_dir d;
	struct th_rx rx;
	th_dir_make(&d, "207bad");
	th_rx_start(&rx, d.out, flag, "--transient-word", "msg 3", NULL);
	th_fill(d.spool, 1, 5, 0);
	th_config(&d, rx.url, NULL);
	ck_assert_int_eq(th_agent_run(&d, 60, "--once", NULL), 3);
	ck_assert_int_eq(th_stats(d.spool).pending, 3);
	ck_assert_int_eq(th_stats(d.spool).dead, 0);
	th_rx_stop(&rx);
	/* a sound server later: every event arrives, msg 3 too */
	th_rx_start(&rx, d.out, NULL);
	th_config(&d, rx.url, NULL);
	ck_assert_int_eq(th_agent_run(&d, 60, "--once", NULL), 0);
	long *msgs;
	size_t got = th_read_out(d.out, &msgs, NULL);
	bool three = false;
	for (size_t i = 0; i < got; i++)
		three |= msgs[i] == 3;
	free(msgs);
	ck_assert(three);
	ck_assert_int_eq(th_stats(d.spool).pending, 0);
	th_rx_stop(&rx);
	th_dir_remove(&d);
}
END_TEST

/* 404, 405, 501 on the batch endpoint: single sends for this server. */
START_TEST(batch_missing_falls_back_to_single)
{
	static const char *status[] = {"404", "405", "501"};
	struct th_dir d;
	struct th_rx rx;
	th_dir_make(&d, "fallback");
	th_rx_start(&rx, d.out, "--no-batch", "--no-batch-status", status[_i], NULL);
	th_fill(d.spool, 1, 40, 0);
	th_config(&d, rx.url, "batch_size: 10\n");
	ck_assert_int_eq(th_agent_run(&d, 60, "--once", NULL), 0);
	assert_delivered_in_order(d.out, 40);
	ck_assert_int_eq(th_rx_stat(&rx, "singles"), 40);
	ck_assert(th_file_has(d.log, "falling back to http_single"));
	th_rx_stop(&rx);
	th_dir_remove(&d);
}
END_TEST

/* 400/422 on a whole batch: only the bad events end up alone and
 * dead-lettered; every other one is delivered. */
START_TEST(batch_poison_isolated)
{
	struct th_dir d;
	struct th_rx rx;
	th_dir_make(&d, "poison");
	th_rx_start(&rx, d.out, "--reject-word", "POISON", "--reject-whole-batch", NULL);
	th_fill(d.spool, 1, 50, 7); /* 7, 14, ..., 49 poisoned */
	th_config(&d, rx.url, "batch_size: 20\n");
	ck_assert_int_eq(th_agent_run(&d, 60, "--once", NULL), 0);
	long *msgs;
	size_t got = th_read_out(d.out, &msgs, NULL);
	ck_assert_int_eq(got, 50 - 7);
	for (size_t i = 0; i < got; i++)
		ck_assert_int_ne(msgs[i] % 7, 0);
	free(msgs);
	int status = 0;
	char reason[256];
	ck_assert_int_eq(th_dead(d.spool, &status, reason, sizeof(reason)), 7);
	ck_assert_int_eq(status, 422);
	ck_assert_int_eq(th_stats(d.spool).pending, 0);
	th_rx_stop(&rx);
	th_dir_remove(&d);
}
END_TEST

/* PROTOCOL.md: a batch refused as a whole with 400/422 is split in halves,
 * each sent as a batch, recursively: "one bad event in n costs at most
 * 2*ceil(log2 n)+1 requests".  40 events with one bad: at most 13. */
START_TEST(batch_poison_halves)
{
	struct th_dir d;
	struct th_rx rx;
	th_dir_make(&d, "halves");
	/* the receiver answers 422 to the whole batch (docs/mlog-receiver.md) */
	th_rx_start(&rx, d.out, "--reject-word", "POISON", "--reject-whole-batch", NULL);
	th_fill(d.spool, 1, 40, 23); /* only "msg 23" is poisoned */
	th_config(&d, rx.url, "batch_size: 40\n");
	ck_assert_int_eq(th_agent_run(&d, 60, "--once", NULL), 0);
	long *msgs;
	size_t got = th_read_out(d.out, &msgs, NULL);
	ck_assert_int_eq(got, 39);
	for (size_t i = 0; i < got; i++)
		ck_assert_int_eq(msgs[i], (long)i + 1 + (i >= 22)); /* in order, 23 left out */
	free(msgs);
	int st = 0;
	ck_assert_int_eq(th_dead(d.spool, &st, NULL, 0), 1);
	ck_assert_int_eq(st, 422);
	ck_assert_int_eq(th_stats(d.spool).pending, 0);
	long requests = th_rx_stat(&rx, "requests");
	ck_assert_msg(requests <= 13,
	              "one bad event in 40 took %ld requests; PROTOCOL.md allows 13", requests);
	th_rx_stop(&rx);
	th_dir_remove(&d);
}
END_TEST

/* 207: per-event verdicts.  4xx dead-lettered except 401/403/404/408/429,
 * which keep the event like 5xx. */
START_TEST(batch_207_per_event)
{
	static const struct {
		const char *status;
		bool dead;
	} rows[] = {{"422", true}, {"400", true}, {"409", true}, {"401", false},
		    {"403", false}, {"404", false}, {"408", false}, {"429", false}};
	struct th_dir d;
	struct th_rx rx;
	th_dir_make(&d, "207");
	th_rx_start(&rx, d.out, "--reject-word", "POISON", "--reject-status", rows[_i].status,
		    "--transient-word", "msg 3", NULL);
	th_fill(d.spool, 1, 20, 5); /* 5, 10, 15, 20 poisoned; "msg 3" gets a 503 */
	th_config(&d, rx.url, NULL);
	ck_assert_int_eq(th_agent_run(&d, 60, "--once", NULL), 3);
	long *msgs;
	size_t got = th_read_out(d.out, &msgs, NULL);
	ck_assert_int_eq(got, 20 - 4 - 1);
	free(msgs);
	int status = 0;
	struct spool_stats st = th_stats(d.spool);
	if (rows[_i].dead) {
		ck_assert_int_eq(th_dead(d.spool, &status, NULL, 0), 4);
		ck_assert_int_eq(status, atoi(rows[_i].status));
		ck_assert_int_eq(st.pending, 1); /* msg 3 stays for a retry */
	} else {
		ck_assert_int_eq(st.dead, 0);
		ck_assert_int_eq(st.pending, 5);
	}
	th_rx_stop(&rx);
	th_dir_remove(&d);
}
END_TEST

/* 413 on a batch: halves until it fits. */
START_TEST(batch_413_splits)
{
	struct th_dir d;
	struct th_rx rx;
	th_dir_make(&d, "413");
	th_rx_start(&rx, d.out, "--max-batch-events", "7", NULL);
	th_fill(d.spool, 1, 64, 0);
	th_config(&d, rx.url, "batch_size: 64\n");
	ck_assert_int_eq(th_agent_run(&d, 60, "--once", NULL), 0);
	assert_delivered_in_order(d.out, 64);
	ck_assert_int_eq(th_stats(d.spool).dead, 0);
	ck_assert_int_gt(th_rx_stat(&rx, "batches"), 8);
	th_rx_stop(&rx);
	th_dir_remove(&d);
}
END_TEST

/* A single event still too large is dead-lettered with 413; the rest go. */
START_TEST(single_event_too_large_dead_lettered)
{
	struct th_dir d;
	struct th_rx rx;
	th_dir_make(&d, "big");
	th_rx_start(&rx, d.out, "--max-body", "4000", NULL);
	th_fill(d.spool, 1, 3, 0);
	char big[6000];
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	th_fill_text(d.spool, big);
	th_fill(d.spool, 4, 3, 0);
	th_config(&d, rx.url, NULL);
	ck_assert_int_eq(th_agent_run(&d, 60, "--once", NULL), 0);
	assert_delivered_in_order(d.out, 6);
	int status = 0;
	ck_assert_int_eq(th_dead(d.spool, &status, NULL, 0), 1);
	ck_assert_int_eq(status, 413);
	th_rx_stop(&rx);
	th_dir_remove(&d);
}
END_TEST

/* Single endpoint: 400/422 dead-letter that event, 413 too. */
START_TEST(single_rejections)
{
	static const char *status[] = {"400", "422", "413"};
	struct th_dir d;
	struct th_rx rx;
	th_dir_make(&d, "single-rej");
	th_rx_start(&rx, d.out, "--no-batch", "--reject-word", "POISON", "--reject-status", status[_i], NULL);
	th_fill(d.spool, 1, 12, 4);
	th_config(&d, rx.url, "transports: [http_single]\n");
	ck_assert_int_eq(th_agent_run(&d, 60, "--once", NULL), 0);
	long *msgs;
	ck_assert_int_eq(th_read_out(d.out, &msgs, NULL), 9);
	free(msgs);
	int st = 0;
	ck_assert_int_eq(th_dead(d.spool, &st, NULL, 0), 3);
	ck_assert_int_eq(st, atoi(status[_i]));
	th_rx_stop(&rx);
	th_dir_remove(&d);
}
END_TEST

/* 408, 429, 500, 502, 503, 504 and an unlisted status: kept, retried, then
 * delivered; nothing dead-lettered.  Batch (i < 7) and single (i >= 7). */
START_TEST(transient_kept_and_retried)
{
	static const char *status[] = {"408", "429", "500", "502", "503", "504", "418"};
	const char *s = status[_i % 7];
	bool single = _i >= 7;
	struct th_dir d;
	struct th_rx rx;
	th_dir_make(&d, "transient");
	if (single)
		th_rx_start(&rx, d.out, "--fail-first", "2", "--fail-status", s, "--no-batch", NULL);
	else
		th_rx_start(&rx, d.out, "--fail-first", "2", "--fail-status", s, NULL);
	th_fill(d.spool, 1, 15, 0);
	th_config(&d, rx.url, single ? "transports: [http_single]\n" : NULL);
	/* --once stops at the first failure with events kept */
	ck_assert_int_eq(th_agent_run(&d, 60, "--once", NULL), 3);
	ck_assert_int_eq(th_stats(d.spool).pending, 15);
	ck_assert_int_eq(th_agent_run(&d, 60, "--once", NULL), 3);
	ck_assert_int_eq(th_agent_run(&d, 60, "--once", NULL), 0);
	assert_delivered_in_order(d.out, 15);
	ck_assert_int_eq(th_stats(d.spool).dead, 0);
	char buf[512];
	th_meta(d.spool, "agent.last_error", buf, sizeof(buf));
	ck_assert_msg(strstr(buf, s) != NULL, "last_error: %s", buf);
	th_rx_stop(&rx);
	th_dir_remove(&d);
}
END_TEST

/* 401/403: every event kept, nothing dead-lettered, the key never logged. */
START_TEST(wrong_key_dead_letters_nothing)
{
	static const char *status[] = {"401", "403"};
	bool single = _i >= 2;
	struct th_dir d;
	struct th_rx rx;
	th_dir_make(&d, "auth");
	th_rx_start(&rx, d.out, "--api-key", "right-key-123456", "--auth-status", status[_i % 2], NULL);
	th_fill(d.spool, 1, 30, 0);
	th_config(&d, rx.url,
	          single ? "http:\n  api_key: wrong-secret-key-WXYZ\ntransports: [http_single]\n"
	                 : "http:\n  api_key: wrong-secret-key-WXYZ\n");
	ck_assert_int_eq(th_agent_run(&d, 60, "--once", NULL), 3);
	struct spool_stats st = th_stats(d.spool);
	ck_assert_int_eq(st.pending, 30);
	ck_assert_int_eq(st.dead, 0);
	ck_assert(!th_file_has(d.log, "wrong-secret-key"));
	ck_assert(th_file_has(d.log, "...WXYZ"));
	ck_assert(th_file_has(d.log, "credentials refused"));
	/* the right key then delivers everything */
	th_config(&d, rx.url, "http:\n  api_key: right-key-123456\n");
	ck_assert_int_eq(th_agent_run(&d, 60, "--once", NULL), 0);
	assert_delivered_in_order(d.out, 30);
	th_rx_stop(&rx);
	th_dir_remove(&d);
}
END_TEST

/* 404 on both endpoints (wrong path prefix): a configuration problem, kept. */
START_TEST(missing_endpoint_keeps_events)
{
	struct th_dir d;
	struct th_rx rx;
	th_dir_make(&d, "missing");
	th_rx_start(&rx, d.out, NULL);
	th_fill(d.spool, 1, 5, 0);
	char url[128];
	snprintf(url, sizeof(url), "%s/wrong-prefix/api/v1/", rx.url);
	th_config(&d, url, NULL);
	ck_assert_int_eq(th_agent_run(&d, 60, "--once", NULL), 3);
	ck_assert_int_eq(th_stats(d.spool).pending, 5);
	ck_assert_int_eq(th_stats(d.spool).dead, 0);
	ck_assert(th_file_has(d.log, "check the endpoint"));
	th_rx_stop(&rx);
	th_dir_remove(&d);
}
END_TEST

/* Endpoint given as root, /api/v1, /api/v1/logs, with trailing slashes. */
START_TEST(endpoint_forms_normalised)
{
	static const char *suffix[] = {"", "/", "/api/v1", "/api/v1/", "/api/v1/logs", "/api/v1/logs/"};
	struct th_dir d;
	struct th_rx rx;
	th_dir_make(&d, "endpoint");
	th_rx_start(&rx, d.out, NULL);
	th_fill(d.spool, 1, 3, 0);
	char url[128];
	snprintf(url, sizeof(url), "%s%s", rx.url, suffix[_i]);
	th_config(&d, url, NULL);
	ck_assert_int_eq(th_agent_run(&d, 60, "--once", NULL), 0);
	assert_delivered_in_order(d.out, 3);
	th_rx_stop(&rx);
	th_dir_remove(&d);
}
END_TEST

static int cmp_long(const void *a, const void *b)
{
	long x = *(const long *)a, y = *(const long *)b;
	return (x > y) - (x < y);
}

/* Every event of 1..n stored exactly once, in any order (requests in
 * flight may be answered out of order). */
static void assert_delivered_once(const char *out, long n)
{
	long *msgs, *seqs;
	size_t got = th_read_out(out, &msgs, &seqs);
	ck_assert_int_eq((long)got, n);
	qsort(msgs, got, sizeof(*msgs), cmp_long);
	for (size_t i = 0; i < got; i++)
		ck_assert_int_eq(msgs[i], (long)i + 1);
	free(msgs);
	free(seqs);
}

/* gzip is on by default and compresses every request; a 415 to a gzip
 * body: resent plain, and gzip stays off (with one request in flight, one
 * 415; with four, at most one per request started compressed); gzip:
 * false sends plain.  The loop's cases: */
static const struct {
	const char *yaml;  /* beside batch_size and max_batch_size 20 */
	bool refuse;	   /* receiver --no-gzip */
	bool gzip;	   /* the agent compresses */
} gzip_cases[] = {
    {"max_in_flight: 1\n", false, true},
    {"max_in_flight: 1\n", true, true},
    {"http:\n  gzip: false\n", false, false},
    {"http:\n  gzip: true\nmax_in_flight: 4\n", true, true},
};

START_TEST(gzip_and_415)
{
	bool refuse = gzip_cases[_i].refuse, gzip = gzip_cases[_i].gzip;
	struct th_dir d;
	struct th_rx rx;
	th_dir_make(&d, "gzip");
	if (refuse)
		th_rx_start(&rx, d.out, "--no-gzip", NULL);
	else
		th_rx_start(&rx, d.out, NULL);
	th_fill(d.spool, 1, 60, 0);
	char yaml[200];
	snprintf(yaml, sizeof(yaml), "batch_size: 20\nmax_batch_size: 20\n%s", gzip_cases[_i].yaml);
	th_config(&d, rx.url, yaml);
	ck_assert_int_eq(th_agent_run(&d, 60, "--once", NULL), 0);
	assert_delivered_once(d.out, 60);
	ck_assert_int_eq(th_stats(d.spool).pending, 0);
	json_t *st = th_rx_stats(&rx);
	long requests = (long)json_integer_value(json_object_get(st, "requests"));
	long gz = (long)json_integer_value(json_object_get(st, "gzip_requests"));
	long s415 = (long)json_integer_value(json_object_get(json_object_get(st, "status"), "415"));
	long in = (long)json_integer_value(json_object_get(st, "bytes_in"));
	long inflated = (long)json_integer_value(json_object_get(st, "bytes_inflated"));
	json_decref(st);
	ck_assert_int_ge(requests, 3); /* batches of 20 */
	if (refuse) {
		long started_gzip = strstr(gzip_cases[_i].yaml, "max_in_flight: 1") ? 1 : 3;
		ck_assert_msg(s415 >= 1 && s415 <= started_gzip, "%ld answers 415", s415);
		ck_assert_int_eq(gz, 0);
		ck_assert(th_file_has(d.log, "sending uncompressed"));
	} else if (gzip) {
		ck_assert_int_eq(gz, requests); /* every request compressed */
		ck_assert_int_eq(s415, 0);
		ck_assert_msg(in * 2 < inflated, "%ld bytes on the wire for %ld of JSON", in, inflated);
	} else {
		ck_assert_int_eq(gz, 0);
		ck_assert_int_eq(s415, 0);
	}
	th_rx_stop(&rx);
	th_dir_remove(&d);
}
END_TEST

/* The server stored, then the answer was lost: sent again and accepted as a
 * duplicate (batch: 200 with duplicates; single: 200 "duplicate": true). */
START_TEST(lost_answer_resent_without_loss)
{
	bool single = _i == 1;
	struct th_dir d;
	struct th_rx rx;
	th_dir_make(&d, "drop");
	th_rx_start(&rx, d.out, "--drop-after-store", "1", NULL);
	th_fill(d.spool, 1, 40, 0);
	th_config(&d, rx.url, single ? "transports: [http_single]\n" : "batch_size: 20\n");
	ck_assert_int_eq(th_agent_run(&d, 60, "--once", NULL), 3);
	ck_assert_int_eq(th_agent_run(&d, 60, "--once", NULL), 0);
	assert_delivered_in_order(d.out, 40); /* the receiver stores each once */
	ck_assert_int_eq(th_rx_stat(&rx, "duplicates"), single ? 1 : 20);
	ck_assert_int_eq(th_stats(d.spool).dead, 0);
	th_rx_stop(&rx);
	th_dir_remove(&d);
}
END_TEST

/* The answer lost on a kept-alive connection: libcurl sends the request
 * again on a fresh one by itself, rewinding the body, which it reads from
 * the events when it is over 64 KiB and not compressed (plugins/http.c,
 * on_read() and on_seek(); batches of 400 events here).  The resend must
 * carry the whole body: the receiver takes it as 400 duplicates, nothing is
 * refused, and the agent never sees a failure (--once exits 0: without a
 * working rewind libcurl gives up, and --once stops with 3). */
START_TEST(lost_answer_on_kept_alive_connection_resent_whole)
{
	bool gzip = _i == 1;
	struct th_dir d;
	struct th_rx rx;
	th_dir_make(&d, "rewind");
	th_rx_start(&rx, d.out, "--drop-after-store", "1", "--drop-skip", "1", NULL);
	th_fill(d.spool, 1, 1200, 0);
	th_config(&d, rx.url,
		  gzip ? "batch_size: 400\nmax_batch_size: 400\nmax_in_flight: 1\nhttp:\n  gzip: true\n"
		       : "batch_size: 400\nmax_batch_size: 400\nmax_in_flight: 1\nhttp:\n  gzip: false\n");
	ck_assert_int_eq(th_agent_run(&d, 60, "--once", NULL), 0);
	assert_delivered_in_order(d.out, 1200);
	ck_assert_int_eq(th_rx_stat(&rx, "dropped"), 1);
	ck_assert_int_eq(th_rx_stat(&rx, "duplicates"), 400);
	ck_assert_int_gt(th_rx_stat(&rx, "bytes_inflated"), 4 * 64 * 1024); /* bodies over 64 KiB */
	ck_assert_int_eq(th_rx_stat(&rx, "rejected"), 0);
	ck_assert_int_eq(th_rx_stat(&rx, "requests"), 4); /* 3 batches and the resend */
	ck_assert_int_eq(th_stats(d.spool).dead, 0);
	th_rx_stop(&rx);
	th_dir_remove(&d);
}
END_TEST

/* min_request_interval_seconds spaces request starts, inside a fall-back
 * to single sends too: 4 requests take at least 3 intervals. */
START_TEST(min_request_interval_paces)
{
	struct th_dir d;
	struct th_rx rx;
	th_dir_make(&d, "pace");
	th_rx_start(&rx, d.out, "--no-batch", NULL);
	th_fill(d.spool, 1, 3, 0);
	th_config(&d, rx.url, "min_request_interval_seconds: 0.3\n");
	double t0 = th_now();
	ck_assert_int_eq(th_agent_run(&d, 60, "--once", NULL), 0);
	double took = th_now() - t0;
	assert_delivered_in_order(d.out, 3);
	/* the 404 on the batch, then 3 singles: a lower bound set by the
	 * agent's own sleeps, not a speed */
	ck_assert_int_eq(th_rx_stat(&rx, "singles"), 3);
	ck_assert_msg(took >= 0.9, "4 requests in %.3f s", took);
	th_rx_stop(&rx);
	th_dir_remove(&d);
}
END_TEST

/* A record damaged on disk is dead-lettered, never blocking the rest. */
#include <lmdb.h>
START_TEST(corrupt_record_dead_lettered)
{
	struct th_dir d;
	struct th_rx rx;
	th_dir_make(&d, "corrupt");
	th_rx_start(&rx, d.out, NULL);
	th_fill(d.spool, 1, 5, 0);
	/* flip a payload byte of record 3 straight in LMDB */
	MDB_env *env;
	MDB_txn *txn;
	MDB_dbi dbi;
	ck_assert_int_eq(mdb_env_create(&env), 0);
	ck_assert_int_eq(mdb_env_set_maxdbs(env, 8), 0);
	ck_assert_int_eq(mdb_env_open(env, d.spool, 0, 0600), 0);
	ck_assert_int_eq(mdb_txn_begin(env, NULL, 0, &txn), 0);
	ck_assert_int_eq(mdb_dbi_open(txn, "events", 0, &dbi), 0);
	unsigned char kb[8] = {0, 0, 0, 0, 0, 0, 0, 3};
	MDB_val k = {8, kb}, v;
	ck_assert_int_eq(mdb_get(txn, dbi, &k, &v), 0);
	unsigned char *copy = malloc(v.mv_size);
	memcpy(copy, v.mv_data, v.mv_size);
	copy[v.mv_size - 3] ^= 0x55;
	MDB_val nv = {v.mv_size, copy};
	ck_assert_int_eq(mdb_put(txn, dbi, &k, &nv, 0), 0);
	ck_assert_int_eq(mdb_txn_commit(txn), 0);
	mdb_env_close(env);
	free(copy);

	th_config(&d, rx.url, NULL);
	ck_assert_int_eq(th_agent_run(&d, 60, "--once", NULL), 0);
	long *msgs;
	ck_assert_int_eq(th_read_out(d.out, &msgs, NULL), 4);
	free(msgs);
	int status = 0;
	ck_assert_int_eq(th_dead(d.spool, &status, NULL, 0), 1);
	ck_assert_int_eq(status, SPOOL_ECORRUPT);
	ck_assert_int_eq(th_stats(d.spool).pending, 0);
	th_rx_stop(&rx);
	th_dir_remove(&d);
}
END_TEST

/* The file transport: JSON lines, acknowledged after fdatasync. */
START_TEST(file_transport)
{
	struct th_dir d;
	th_dir_make(&d, "file");
	th_fill(d.spool, 1, 120, 0);
	char extra[512];
	snprintf(extra, sizeof(extra), "transports: [file]\nfile:\n  path: %s\n", d.out);
	FILE *f = fopen(d.config, "w");
	fprintf(f, "spool: %s\n%s", d.spool, extra);
	fclose(f);
	ck_assert_int_eq(th_agent_run(&d, 60, "--once", NULL), 0);
	assert_delivered_in_order(d.out, 120);
	ck_assert_int_eq(th_stats(d.spool).pending, 0);
	th_dir_remove(&d);
}
END_TEST

/* max_age_seconds: old events dropped and counted, not sent. */
START_TEST(max_age_drops_and_counts)
{
	struct th_dir d;
	struct th_rx rx;
	th_dir_make(&d, "maxage");
	th_rx_start(&rx, d.out, NULL);
	th_fill(d.spool, 1, 10, 0);
	usleep(1200 * 1000);
	th_fill(d.spool, 11, 5, 0);
	th_config(&d, rx.url, "max_age_seconds: 1\n");
	ck_assert_int_eq(th_agent_run(&d, 60, "--once", NULL), 0);
	long *msgs;
	ck_assert_int_eq(th_read_out(d.out, &msgs, NULL), 5);
	ck_assert_int_eq(msgs[0], 11);
	free(msgs);
	char buf[512];
	th_meta(d.spool, "agent.counters", buf, sizeof(buf));
	ck_assert_msg(strstr(buf, "expired=10"), "counters: %s", buf);
	/* the spool counts them as evicted, not acknowledged */
	struct spool_stats ss = th_stats(d.spool);
	ck_assert_uint_eq(ss.evicted_total, 10);
	ck_assert_uint_eq(ss.acked_total, 5);
	th_rx_stop(&rx);
	th_dir_remove(&d);
}
END_TEST

/* No answer at all: refused connection, a TLS handshake with a plain HTTP
 * server, a request timeout.  Transient: every event kept, none dead. */
START_TEST(no_answer_is_transient)
{
	struct th_dir d;
	struct th_rx rx;
	th_dir_make(&d, "noanswer");
	th_rx_start(&rx, d.out, "--latency-ms", _i == 2 ? "3000" : "0", NULL);
	th_fill(d.spool, 1, 8, 0);
	char url[128];
	if (_i == 0) {
		snprintf(url, sizeof(url), "%s", rx.url);
		th_rx_stop(&rx);
	} else if (_i == 1) {
		snprintf(url, sizeof(url), "https://127.0.0.1:%d", rx.port);
	} else {
		snprintf(url, sizeof(url), "%s", rx.url);
	}
	th_config(&d, url, "http:\n  timeouts:\n    request_seconds: 0.5\n");
	ck_assert_int_eq(th_agent_run(&d, 60, "--once", NULL), 3);
	struct spool_stats st = th_stats(d.spool);
	ck_assert_int_eq(st.pending, 8);
	ck_assert_int_eq(st.dead, 0);
	char buf[512];
	th_meta(d.spool, "agent.last_error", buf, sizeof(buf));
	ck_assert_msg(strstr(buf, "POST http://") || strstr(buf, "POST https://"), "last_error: %s", buf);
	if (_i)
		th_rx_stop(&rx);
	th_dir_remove(&d);
}
END_TEST

/* delivery_metadata: metadata.delivery added at send time. */
START_TEST(delivery_metadata_added)
{
	struct th_dir d;
	struct th_rx rx;
	th_dir_make(&d, "delivery");
	th_rx_start(&rx, d.out, NULL);
	th_fill(d.spool, 1, 5, 0);
	th_config(&d, rx.url, "delivery_metadata: true\n");
	ck_assert_int_eq(th_agent_run(&d, 60, "--once", NULL), 0);
	assert_delivered_in_order(d.out, 5);
	ck_assert(th_file_has(d.out, "\"delivery\":{\"attempts\":1,\"spooled_seconds\":"));
	th_rx_stop(&rx);
	th_dir_remove(&d);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("agent-protocol");
	TCase *tc = tcase_create("protocol");
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, batch_200_accepts_and_deletes);
	tcase_add_loop_test(tc, batch_2xx_bad_or_empty_body_acknowledges, 0, 2);
	tcase_add_loop_test(tc, batch_207_unreadable_keeps_events, 0, 2);
	tcase_add_loop_test(tc, batch_missing_falls_back_to_single, 0, 3);
	tcase_add_test(tc, batch_poison_isolated);
	tcase_add_test(tc, batch_poison_halves);
	tcase_add_loop_test(tc, batch_207_per_event, 0, 8);
	tcase_add_test(tc, batch_413_splits);
	tcase_add_test(tc, single_event_too_large_dead_lettered);
	tcase_add_loop_test(tc, single_rejections, 0, 3);
	tcase_add_loop_test(tc, transient_kept_and_retried, 0, 14);
	tcase_add_loop_test(tc, wrong_key_dead_letters_nothing, 0, 4);
	tcase_add_test(tc, missing_endpoint_keeps_events);
	tcase_add_loop_test(tc, endpoint_forms_normalised, 0, 6);
	tcase_add_loop_test(tc, gzip_and_415, 0, (int)(sizeof(gzip_cases) / sizeof(gzip_cases[0])));
	tcase_add_loop_test(tc, lost_answer_resent_without_loss, 0, 2);
	tcase_add_test(tc, min_request_interval_paces);
	tcase_add_test(tc, corrupt_record_dead_lettered);
	tcase_add_test(tc, file_transport);
	tcase_add_loop_test(tc, lost_answer_on_kept_alive_connection_resent_whole, 0, 2);
	tcase_add_test(tc, max_age_drops_and_counts);
	tcase_add_test(tc, delivery_metadata_added);
	tcase_add_loop_test(tc, no_answer_is_transient, 0, 3);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return tc_run(suite());
}
