/* test_faults.c - each fault-injection flag does what --help says. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "tests.h"

#define SINGLE "/api/v1/logs"
#define BATCH "/api/v1/logs/batch"

static char *event_text(unsigned long long n, const char *message)
{
	json_t *ev = test_event(n, message);
	char *text = test_dump(ev);
	json_decref(ev);
	return text;
}

static char *batch_text(json_t *batch)
{
	char *text = test_dump(batch);
	json_decref(batch);
	return text;
}

static size_t out_count(struct rx *rx)
{
	json_t *lines = rx_out_lines(rx);
	size_t n = json_array_size(lines);
	json_decref(lines);
	return n;
}

static long post_status(struct rx *rx, const char *path, const char *body)
{
	struct resp r;
	rx_post(rx, path, body, &r);
	long s = r.status;
	resp_free(&r);
	return s;
}

START_TEST(fail_first_answers_status_with_retry_after)
{
	const char *args[] = { "--fail-first", "2", "--fail-status", "429",
			       "--retry-after", "7", NULL };
	struct rx rx;
	struct resp r;
	rx_start(&rx, args);
	char *ev = event_text(1, "ff");
	for (int i = 0; i < 2; i++) {
		rx_post(&rx, SINGLE, ev, &r);
		ck_assert_int_eq(r.status, 429);
		ck_assert_str_eq(r.retry_after, "7");
		resp_free(&r);
	}
	/* /stats is never faulted and does not use up the count. */
	ck_assert_int_eq(rx_stat(&rx, "accepted"), 0);
	rx_post(&rx, SINGLE, ev, &r);
	ck_assert_int_eq(r.status, 201);
	ck_assert_str_eq(r.retry_after, "");
	resp_free(&r);
	ck_assert_uint_eq(out_count(&rx), 1);
	ck_assert_int_eq(rx_stat(&rx, "faults"), 2);
	free(ev);
	ck_assert_int_eq(rx_stop(&rx), 0);
}
END_TEST

START_TEST(retry_after_can_be_an_http_date)
{
	const char *args[] = { "--fail-first", "1", "--retry-after", "30",
			       "--retry-after-date", NULL };
	struct rx rx;
	struct resp r;
	rx_start(&rx, args);
	char *batch = batch_text(test_batch(1, 2));
	rx_post(&rx, BATCH, batch, &r);
	ck_assert_int_eq(r.status, 503);
	time_t when = curl_getdate(r.retry_after, NULL);
	time_t now = time(NULL);
	ck_assert_msg(when >= now + 20 && when <= now + 40,
		      "Retry-After '%s' is not about 30 s ahead",
		      r.retry_after);
	resp_free(&r);
	ck_assert_int_eq(post_status(&rx, BATCH, batch), 200);
	free(batch);
	ck_assert_int_eq(rx_stop(&rx), 0);
}
END_TEST

static void fail_rate_run(const char *seed, long statuses[40])
{
	const char *args[] = { "--fail-rate", "0.5", "--seed", seed, NULL };
	struct rx rx;
	rx_start(&rx, args);
	for (int i = 0; i < 40; i++) {
		char *ev = event_text(100 + (unsigned)i, "rate");
		statuses[i] = post_status(&rx, SINGLE, ev);
		free(ev);
	}
	ck_assert_int_eq(rx_stop(&rx), 0);
}

START_TEST(fail_rate_is_random_but_seeded)
{
	long a[40], b[40], c[40];
	int fails = 0, s500 = 0, s503 = 0;
	fail_rate_run("7", a);
	fail_rate_run("7", b);
	fail_rate_run("8", c);
	for (int i = 0; i < 40; i++) {
		ck_assert_int_eq(a[i], b[i]);
		ck_assert_msg(a[i] == 201 || a[i] == 500 || a[i] == 503,
			      "status %ld", a[i]);
		fails += a[i] != 201;
		s500 += a[i] == 500;
		s503 += a[i] == 503;
	}
	ck_assert_msg(fails >= 8 && fails <= 32, "%d of 40 failed", fails);
	ck_assert_int_gt(s500, 0);
	ck_assert_int_gt(s503, 0);
	ck_assert(memcmp(a, c, sizeof(a)) != 0);
}
END_TEST

START_TEST(fail_rate_one_with_status_fails_every_request)
{
	const char *args[] = { "--fail-rate", "1", "--fail-rate-status", "502",
			       NULL };
	struct rx rx;
	rx_start(&rx, args);
	char *ev = event_text(1, "x");
	for (int i = 0; i < 5; i++)
		ck_assert_int_eq(post_status(&rx, SINGLE, ev), 502);
	ck_assert_uint_eq(out_count(&rx), 0);
	free(ev);
	ck_assert_int_eq(rx_stop(&rx), 0);
}
END_TEST

START_TEST(outage_file_answers_503_while_it_exists)
{
	struct rx rx;
	struct resp r;
	char flag[128];
	/* The harness's temp dir is only known after start: use our own. */
	snprintf(flag, sizeof(flag), "/tmp/mlog-rx-outage.%ld",
		 (long)getpid());
	unlink(flag);
	const char *args[] = { "--outage-file", flag, "--retry-after", "3",
			       NULL };
	rx_start(&rx, args);
	char *ev = event_text(1, "o");
	ck_assert_int_eq(post_status(&rx, SINGLE, ev), 201);
	FILE *f = fopen(flag, "w");
	ck_assert_ptr_nonnull(f);
	fclose(f);
	rx_post(&rx, SINGLE, ev, &r);
	ck_assert_int_eq(r.status, 503);
	ck_assert_str_eq(r.retry_after, "3");
	resp_free(&r);
	ck_assert_int_eq(post_status(&rx, BATCH, "{\"logs\":[]}"), 503);
	unlink(flag);
	ck_assert_int_eq(post_status(&rx, SINGLE, ev), 200);
	free(ev);
	ck_assert_int_eq(rx_stop(&rx), 0);
}
END_TEST

START_TEST(latency_ms_delays_api_answers)
{
	const char *args[] = { "--latency-ms", "300", NULL };
	struct rx rx;
	struct resp r;
	rx_start(&rx, args);
	char *ev = event_text(1, "slow");
	rx_post(&rx, SINGLE, ev, &r);
	ck_assert_int_eq(r.status, 201);
	ck_assert_msg(r.seconds >= 0.29, "answered in %.3f s", r.seconds);
	resp_free(&r);
	rx_request(&rx, "GET", "/stats", NULL, 0, NULL, 0, &r);
	ck_assert_int_eq(r.status, 200);
	ck_assert_msg(r.seconds < 0.25, "/stats took %.3f s", r.seconds);
	resp_free(&r);
	free(ev);
	ck_assert_int_eq(rx_stop(&rx), 0);
}
END_TEST

START_TEST(reject_word_refuses_matching_events)
{
	const char *args[] = { "--reject-word", "POISON", NULL };
	struct rx rx;
	struct resp r;
	rx_start(&rx, args);
	char *bad = event_text(1, "this is POISON here");
	rx_post(&rx, SINGLE, bad, &r);
	ck_assert_int_eq(r.status, 422);
	json_t *j = resp_json(&r);
	ck_assert_ptr_nonnull(
		strstr(json_string_value(json_object_get(j, "detail")),
		       "message"));
	json_decref(j);
	resp_free(&r);
	/* The word hidden behind escapes is still found. */
	char *escaped = event_text(2, "x");
	char *m = strstr(escaped, "\"x\"");
	ck_assert_ptr_nonnull(m);
	char *esc_body;
	ck_assert_int_gt(asprintf(&esc_body, "%.*s\"PO\\u0049SON\"%s",
				  (int)(m - escaped), escaped, m + 3),
			 0);
	ck_assert_int_eq(post_status(&rx, SINGLE, esc_body), 422);
	free(esc_body);
	free(escaped);

	json_t *b = test_batch(10, 3);
	json_object_set_new(json_array_get(json_object_get(b, "logs"), 1),
			    "message", json_string("POISON"));
	char *batch = batch_text(b);
	rx_post(&rx, BATCH, batch, &r);
	ck_assert_int_eq(r.status, 207);
	j = resp_json(&r);
	json_t *res = json_object_get(j, "results");
	ck_assert_int_eq(json_integer_value(json_object_get(
				 json_array_get(res, 0), "status")),
			 201);
	ck_assert_int_eq(json_integer_value(json_object_get(
				 json_array_get(res, 1), "status")),
			 422);
	ck_assert_int_eq(json_integer_value(json_object_get(
				 json_array_get(res, 2), "status")),
			 201);
	json_decref(j);
	resp_free(&r);
	ck_assert_uint_eq(out_count(&rx), 2);
	free(bad);
	free(batch);
	ck_assert_int_eq(rx_stop(&rx), 0);
}
END_TEST

START_TEST(reject_whole_batch_refuses_the_batch)
{
	const char *args[] = { "--reject-word", "POISON",
			       "--reject-whole-batch", NULL };
	struct rx rx;
	struct resp r;
	rx_start(&rx, args);
	json_t *b = test_batch(10, 3);
	json_object_set_new(json_array_get(json_object_get(b, "logs"), 2),
			    "message", json_string("POISON"));
	char *poisoned = batch_text(b);
	rx_post(&rx, BATCH, poisoned, &r);
	ck_assert_int_eq(r.status, 422);
	json_t *j = resp_json(&r);
	ck_assert_ptr_nonnull(strstr(
		json_string_value(json_object_get(j, "detail")), "logs[2]"));
	json_decref(j);
	resp_free(&r);
	/* A field error poisons the batch too. */
	b = test_batch(20, 2);
	json_object_set_new(json_array_get(json_object_get(b, "logs"), 0),
			    "ttl_seconds", json_integer(0));
	char *bad_field = batch_text(b);
	ck_assert_int_eq(post_status(&rx, BATCH, bad_field), 422);
	ck_assert_uint_eq(out_count(&rx), 0);
	ck_assert_int_eq(rx_stat(&rx, "accepted"), 0);
	/* The good events one by one, as the client would send them. */
	char *good = event_text(10, "batched");
	ck_assert_int_eq(post_status(&rx, SINGLE, good), 201);
	char *clean = batch_text(test_batch(30, 2));
	ck_assert_int_eq(post_status(&rx, BATCH, clean), 200);
	ck_assert_uint_eq(out_count(&rx), 3);
	free(poisoned);
	free(bad_field);
	free(good);
	free(clean);
	ck_assert_int_eq(rx_stop(&rx), 0);
}
END_TEST

START_TEST(transient_word_gives_retryable_status)
{
	const char *args[] = { "--transient-word", "LATER",
			       "--transient-status", "503", NULL };
	struct rx rx;
	struct resp r;
	rx_start(&rx, args);
	char *ev = event_text(1, "try LATER");
	ck_assert_int_eq(post_status(&rx, SINGLE, ev), 503);
	json_t *b = test_batch(10, 2);
	json_object_set_new(json_array_get(json_object_get(b, "logs"), 0),
			    "message", json_string("LATER please"));
	char *batch = batch_text(b);
	rx_post(&rx, BATCH, batch, &r);
	ck_assert_int_eq(r.status, 207);
	json_t *j = resp_json(&r);
	json_t *res = json_object_get(j, "results");
	ck_assert_int_eq(json_integer_value(json_object_get(
				 json_array_get(res, 0), "status")),
			 503);
	ck_assert_int_eq(json_integer_value(json_object_get(
				 json_array_get(res, 1), "status")),
			 201);
	json_decref(j);
	resp_free(&r);
	ck_assert_uint_eq(out_count(&rx), 1);
	ck_assert_int_eq(rx_stat(&rx, "transient"), 2);
	free(ev);
	free(batch);
	ck_assert_int_eq(rx_stop(&rx), 0);
}
END_TEST

START_TEST(no_batch_hides_the_batch_endpoint)
{
	const char *args[] = { "--no-batch", NULL };
	struct rx rx;
	rx_start(&rx, args);
	char *batch = batch_text(test_batch(1, 2));
	char *ev = event_text(1, "single still works");
	ck_assert_int_eq(post_status(&rx, BATCH, batch), 404);
	ck_assert_int_eq(post_status(&rx, SINGLE, ev), 201);
	ck_assert_int_eq(rx_stop(&rx), 0);

	const char *args501[] = { "--no-batch", "--no-batch-status", "501",
				  NULL };
	rx_start(&rx, args501);
	ck_assert_int_eq(post_status(&rx, BATCH, batch), 501);
	ck_assert_uint_eq(out_count(&rx), 0);
	ck_assert_int_eq(rx_stop(&rx), 0);
	free(batch);
	free(ev);
}
END_TEST

START_TEST(no_gzip_answers_415_to_gzip)
{
	const char *args[] = { "--no-gzip", NULL };
	const char *gz[] = { "Content-Encoding: gzip", NULL };
	struct rx rx;
	struct resp r;
	rx_start(&rx, args);
	char *ev = event_text(1, "z");
	size_t zlen;
	void *z = test_gzip(ev, strlen(ev), &zlen);
	rx_request(&rx, "POST", SINGLE, z, zlen, gz, 0, &r);
	ck_assert_int_eq(r.status, 415);
	resp_free(&r);
	ck_assert_int_eq(post_status(&rx, SINGLE, ev), 201);
	free(z);
	free(ev);
	ck_assert_int_eq(rx_stop(&rx), 0);
}
END_TEST

START_TEST(drop_after_store_single_then_duplicate)
{
	const char *args[] = { "--drop-after-store", "1", NULL };
	struct rx rx;
	struct resp r;
	rx_start(&rx, args);
	char *ev = event_text(1, "dropped answer");
	rx_post(&rx, SINGLE, ev, &r);
	ck_assert_msg(r.rc != CURLE_OK, "got an answer: %ld", r.status);
	resp_free(&r);
	/* Stored although unanswered: the retry is a duplicate. */
	ck_assert_uint_eq(out_count(&rx), 1);
	rx_post(&rx, SINGLE, ev, &r);
	ck_assert_int_eq(r.rc, CURLE_OK);
	ck_assert_int_eq(r.status, 200);
	json_t *j = resp_json(&r);
	ck_assert(json_is_true(json_object_get(j, "duplicate")));
	json_decref(j);
	resp_free(&r);
	ck_assert_uint_eq(out_count(&rx), 1);
	ck_assert_int_eq(rx_stat(&rx, "dropped"), 1);
	free(ev);
	ck_assert_int_eq(rx_stop(&rx), 0);
}
END_TEST

START_TEST(drop_after_store_batch_then_duplicates)
{
	const char *args[] = { "--drop-after-store", "1", NULL };
	struct rx rx;
	struct resp r;
	rx_start(&rx, args);
	char *batch = batch_text(test_batch(1, 10));
	rx_post(&rx, BATCH, batch, &r);
	ck_assert_int_ne(r.rc, CURLE_OK);
	resp_free(&r);
	rx_post(&rx, BATCH, batch, &r);
	ck_assert_int_eq(r.status, 200);
	json_t *j = resp_json(&r);
	ck_assert_int_eq(json_integer_value(json_object_get(j, "duplicates")),
			 10);
	json_decref(j);
	resp_free(&r);
	ck_assert_uint_eq(out_count(&rx), 10);
	free(batch);
	ck_assert_int_eq(rx_stop(&rx), 0);
}
END_TEST

/* --drop-skip 2: the first two 2xx requests are answered, the third is
 * stored and dropped, the fourth answered again. */
START_TEST(drop_skip_answers_first)
{
	const char *args[] = { "--drop-after-store", "1", "--drop-skip", "2", NULL };
	struct rx rx;
	struct resp r;
	rx_start(&rx, args);
	for (int i = 1; i <= 4; i++) {
		char *ev = event_text(i, "skip then drop");
		rx_post(&rx, SINGLE, ev, &r);
		if (i == 3)
			ck_assert_msg(r.rc != CURLE_OK, "request 3 got an answer: %ld", r.status);
		else
			ck_assert_msg(r.rc == CURLE_OK && r.status == 201,
				      "request %d: curl %d, status %ld", i, (int)r.rc, r.status);
		resp_free(&r);
		free(ev);
	}
	ck_assert_uint_eq(out_count(&rx), 4);
	ck_assert_int_eq(rx_stat(&rx, "dropped"), 1);
	ck_assert_int_eq(rx_stop(&rx), 0);
}
END_TEST

START_TEST(drop_rate_one_drops_only_2xx)
{
	const char *args[] = { "--drop-rate", "1", NULL };
	struct rx rx;
	struct resp r;
	rx_start(&rx, args);
	char *ev = event_text(1, "d");
	rx_post(&rx, SINGLE, ev, &r);
	ck_assert_int_ne(r.rc, CURLE_OK);
	resp_free(&r);
	rx_post(&rx, SINGLE, "{\"message\": 3}", &r);
	ck_assert_int_eq(r.rc, CURLE_OK);
	ck_assert_int_eq(r.status, 422);
	resp_free(&r);
	ck_assert_uint_eq(out_count(&rx), 1);
	free(ev);
	ck_assert_int_eq(rx_stop(&rx), 0);
}
END_TEST

START_TEST(slow_body_dribbles_the_answer)
{
	const char *args[] = { "--slow-body-ms", "100", "--slow-body-chunk",
			       "8", NULL };
	struct rx rx;
	struct resp r;
	rx_start(&rx, args);
	char *ev = event_text(1, "slow body");
	rx_post(&rx, SINGLE, ev, &r);
	ck_assert_int_eq(r.status, 201);
	/* {"id":"ev-xxxxxxxx-1"} is 22 bytes: 3 pieces, 100 ms before each */
	ck_assert_msg(r.seconds >= 0.29, "answered in %.3f s", r.seconds);
	json_t *j = resp_json(&r);
	ck_assert(json_is_string(json_object_get(j, "id")));
	json_decref(j);
	resp_free(&r);
	/* A client with a short whole-request timeout gives up. */
	rx_request(&rx, "POST", SINGLE, ev, strlen(ev), NULL, 150, &r);
	ck_assert_int_eq(r.rc, CURLE_OPERATION_TIMEDOUT);
	resp_free(&r);
	free(ev);
	ck_assert_int_eq(rx_stop(&rx), 0);
}
END_TEST

START_TEST(bad_json_2xx_keeps_status_breaks_body)
{
	const char *args[] = { "--bad-json-2xx", NULL };
	struct rx rx;
	struct resp r;
	rx_start(&rx, args);
	char *ev = event_text(1, "b");
	rx_post(&rx, SINGLE, ev, &r);
	ck_assert_int_eq(r.status, 201);
	ck_assert_ptr_null(json_loadb(r.body, r.len, 0, NULL));
	ck_assert_uint_gt(r.len, 0);
	resp_free(&r);
	char *batch = batch_text(test_batch(5, 3));
	rx_post(&rx, BATCH, batch, &r);
	ck_assert_int_eq(r.status, 200);
	ck_assert_ptr_null(json_loadb(r.body, r.len, 0, NULL));
	resp_free(&r);
	/* Refusals are still JSON. */
	rx_post(&rx, SINGLE, "{}", &r);
	ck_assert_int_eq(r.status, 422);
	json_decref(resp_json(&r));
	resp_free(&r);
	ck_assert_uint_eq(out_count(&rx), 4);
	/* /stats and /healthz are never faulted. */
	rx_request(&rx, "GET", "/stats", NULL, 0, NULL, 0, &r);
	ck_assert_int_eq(r.status, 200);
	json_decref(resp_json(&r));
	resp_free(&r);
	ck_assert_int_eq(rx_stop(&rx), 0);

	const char *empty[] = { "--empty-2xx", "--slow-body-ms", "300", NULL };
	rx_start(&rx, empty);
	rx_post(&rx, SINGLE, ev, &r);
	ck_assert_int_eq(r.status, 201);
	ck_assert_uint_eq(r.len, 0);
	resp_free(&r);
	rx_request(&rx, "GET", "/healthz", NULL, 0, NULL, 0, &r);
	ck_assert_int_eq(r.status, 200);
	json_decref(resp_json(&r));
	resp_free(&r);
	rx_request(&rx, "GET", "/stats", NULL, 0, NULL, 0, &r);
	ck_assert_int_eq(r.status, 200);
	ck_assert_msg(r.seconds < 0.25, "/stats took %.3f s", r.seconds);
	json_decref(resp_json(&r));
	resp_free(&r);
	ck_assert_uint_eq(out_count(&rx), 1);
	ck_assert_int_eq(rx_stop(&rx), 0);
	free(ev);
	free(batch);
}
END_TEST

TCase *faults_tcase(void)
{
	TCase *tc = tcase_create("faults");
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, fail_first_answers_status_with_retry_after);
	tcase_add_test(tc, retry_after_can_be_an_http_date);
	tcase_add_test(tc, fail_rate_is_random_but_seeded);
	tcase_add_test(tc, fail_rate_one_with_status_fails_every_request);
	tcase_add_test(tc, outage_file_answers_503_while_it_exists);
	tcase_add_test(tc, latency_ms_delays_api_answers);
	tcase_add_test(tc, reject_word_refuses_matching_events);
	tcase_add_test(tc, reject_whole_batch_refuses_the_batch);
	tcase_add_test(tc, transient_word_gives_retryable_status);
	tcase_add_test(tc, no_batch_hides_the_batch_endpoint);
	tcase_add_test(tc, no_gzip_answers_415_to_gzip);
	tcase_add_test(tc, drop_after_store_single_then_duplicate);
	tcase_add_test(tc, drop_after_store_batch_then_duplicates);
	tcase_add_test(tc, drop_skip_answers_first);
	tcase_add_test(tc, drop_rate_one_drops_only_2xx);
	tcase_add_test(tc, slow_body_dribbles_the_answer);
	tcase_add_test(tc, bad_json_2xx_keeps_status_breaks_body);
	return tc;
}
