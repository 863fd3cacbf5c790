/* test_http.c — the pure pieces of the HTTP transports (plugins/http.c):
 * Retry-After forms, the one table from HTTP status to an event's fate
 * against PROTOCOL.md row for row (single event, batch as a whole, one
 * entry of a 207), and what a failed request tells the agent (redirects
 * transient, "redirect not followed"; credentials; missing endpoint). */
#include <check.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "check_main.h"
#include "http.h"

START_TEST(retry_after_forms)
{
	ck_assert_double_eq(http_parse_retry_after("120"), 120);
	ck_assert_double_eq(http_parse_retry_after(" 7\r\n"), 7);
	ck_assert_double_eq(http_parse_retry_after("0"), 0);
	ck_assert_double_lt(http_parse_retry_after(""), 0);
	ck_assert_double_lt(http_parse_retry_after("soon"), 0);
	ck_assert_double_lt(http_parse_retry_after("12abc"), 0);
	/* an HTTP-date 100 s ahead, and one in the past (no wait) */
	char date[64];
	time_t t = time(NULL) + 100;
	struct tm tm;
	gmtime_r(&t, &tm);
	strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S GMT\r\n", &tm);
	double d = http_parse_retry_after(date);
	ck_assert_msg(d > 90 && d <= 100, "%s -> %g", date, d);
	ck_assert_double_eq(http_parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), 0);
}
END_TEST

static const char *fate_name(enum http_fate f)
{
	static const char *const names[] = {
	    [HTTP_ACCEPT] = "ACCEPT",       [HTTP_REJECT] = "REJECT",
	    [HTTP_KEEP] = "KEEP",           [HTTP_AUTH] = "AUTH",
	    [HTTP_MISSING] = "MISSING",     [HTTP_FALLBACK] = "FALLBACK",
	    [HTTP_SPLIT] = "SPLIT",         [HTTP_ISOLATE] = "ISOLATE",
	    [HTTP_BISECT] = "BISECT",
	    [HTTP_TRANSIENT] = "TRANSIENT", [HTTP_PER_EVENT] = "PER_EVENT",
	};
	return (size_t)f < sizeof(names) / sizeof(names[0]) && names[f] ? names[f] : "?";
}

/* One row per status the brief names; 0 is "no answer" (network error,
 * timeout).  The columns are PROTOCOL.md's three tables. */
static const struct {
	long status;
	enum http_fate single, batch, result;
} protocol_rows[] = {
    /* single: 200/201 accepted.  batch: 200/201 accept every event; 207
     * reads the results.  207 entry: {"status": 201, "id"} accepted.  A 2xx
     * the tables do not name is still an acceptance ("the client must
     * tolerate ... unexpected 2xx bodies"; a 2xx acknowledges the batch). */
    {200, HTTP_ACCEPT, HTTP_ACCEPT, HTTP_ACCEPT},
    {201, HTTP_ACCEPT, HTTP_ACCEPT, HTTP_ACCEPT},
    {207, HTTP_ACCEPT, HTTP_PER_EVENT, HTTP_ACCEPT},
    /* single: 400, 422 rejected for good.  batch: "some event poisons it:
     * split the batch in halves and send each half as a batch,
     * recursively".  entry: 4xx rejected for good. */
    {400, HTTP_REJECT, HTTP_BISECT, HTTP_REJECT},
    {422, HTTP_REJECT, HTTP_BISECT, HTTP_REJECT},
    /* 401, 403: credentials refused, every event kept; an entry keeps its
     * event */
    {401, HTTP_AUTH, HTTP_AUTH, HTTP_KEEP},
    {403, HTTP_AUTH, HTTP_AUTH, HTTP_KEEP},
    /* single: 404, 405, 501 endpoint missing.  batch: no batch endpoint,
     * fall back to single sends.  entry: 404 keeps, 405 is a 4xx not
     * excepted (rejected), 501 a 5xx (kept). */
    {404, HTTP_MISSING, HTTP_FALLBACK, HTTP_KEEP},
    {405, HTTP_MISSING, HTTP_FALLBACK, HTTP_REJECT},
    {501, HTTP_MISSING, HTTP_FALLBACK, HTTP_KEEP},
    /* 408, 429, 5xx: transient; an entry keeps its event */
    {408, HTTP_TRANSIENT, HTTP_TRANSIENT, HTTP_KEEP},
    {429, HTTP_TRANSIENT, HTTP_TRANSIENT, HTTP_KEEP},
    {500, HTTP_TRANSIENT, HTTP_TRANSIENT, HTTP_KEEP},
    {502, HTTP_TRANSIENT, HTTP_TRANSIENT, HTTP_KEEP},
    {503, HTTP_TRANSIENT, HTTP_TRANSIENT, HTTP_KEEP},
    {504, HTTP_TRANSIENT, HTTP_TRANSIENT, HTTP_KEEP},
    /* single: 413 can never go, dead-letter.  batch: split in halves.
     * entry: a 4xx, rejected */
    {413, HTTP_REJECT, HTTP_SPLIT, HTTP_REJECT},
    /* single "any other": transient.  batch: as for single events.  entry:
     * a 4xx not excepted, rejected */
    {418, HTTP_TRANSIENT, HTTP_TRANSIENT, HTTP_REJECT},
    /* a redirect is never followed: transient, kept */
    {302, HTTP_TRANSIENT, HTTP_TRANSIENT, HTTP_KEEP},
    /* no answer (reset, timeout, TLS failure): transient, kept */
    {0, HTTP_TRANSIENT, HTTP_TRANSIENT, HTTP_KEEP},
};

#define NROWS (sizeof(protocol_rows) / sizeof(protocol_rows[0]))

static void check_column(enum http_use use, const char *what)
{
	char bad[2048] = "";
	for (size_t i = 0; i < NROWS; i++) {
		enum http_fate want = use == HTTP_USE_SINGLE  ? protocol_rows[i].single
		                      : use == HTTP_USE_BATCH ? protocol_rows[i].batch
		                                              : protocol_rows[i].result;
		enum http_fate got = http_fate(protocol_rows[i].status, use);
		if (got != want) {
			size_t l = strlen(bad);
			snprintf(bad + l, sizeof(bad) - l, " %ld: %s, PROTOCOL.md says %s;",
			         protocol_rows[i].status, fate_name(got), fate_name(want));
		}
	}
	ck_assert_msg(!bad[0], "%s:%s", what, bad);
}

START_TEST(fate_single_event)
{
	check_column(HTTP_USE_SINGLE, "single event");
}
END_TEST

START_TEST(fate_batch_as_a_whole)
{
	check_column(HTTP_USE_BATCH, "batch as a whole");
}
END_TEST

START_TEST(fate_207_entries)
{
	check_column(HTTP_USE_RESULT, "207 entry");
}
END_TEST

/* The table's edges: every 1xx, 3xx and unknown code is transient (kept in a
 * 207), every 5xx but 501 is transient, every 2xx accepts. */
START_TEST(fate_every_status)
{
	for (long s = 0; s < 1000; s++) {
		enum http_fate sg = http_fate(s, HTTP_USE_SINGLE),
		               bt = http_fate(s, HTTP_USE_BATCH),
		               rs = http_fate(s, HTTP_USE_RESULT);
		if (s >= 200 && s < 300) {
			ck_assert_msg(sg == HTTP_ACCEPT && rs == HTTP_ACCEPT, "%ld", s);
			ck_assert_msg(bt == (s == 207 ? HTTP_PER_EVENT : HTTP_ACCEPT), "%ld", s);
		} else if (s >= 500 && s < 600) {
			ck_assert_msg(rs == HTTP_KEEP, "%ld: %s", s, fate_name(rs));
			if (s != 501)
				ck_assert_msg(sg == HTTP_TRANSIENT && bt == HTTP_TRANSIENT, "%ld",
				              s);
		} else if (s < 400 || s >= 600) {
			ck_assert_msg(
			    sg == HTTP_TRANSIENT && bt == HTTP_TRANSIENT && rs == HTTP_KEEP,
			    "%ld: %s %s %s", s, fate_name(sg), fate_name(bt), fate_name(rs));
		} else {
			/* 4xx: an entry is rejected unless 401/403/404/408/429 */
			bool kept = s == 401 || s == 403 || s == 404 || s == 408 || s == 429;
			ck_assert_msg(rs == (kept ? HTTP_KEEP : HTTP_REJECT), "%ld: %s", s,
			              fate_name(rs));
			/* a single event is rejected for good only by 400, 413, 422 */
			bool rejected = s == 400 || s == 413 || s == 422;
			ck_assert_msg((sg == HTTP_REJECT) == rejected, "%ld: %s", s, fate_name(sg));
			/* nothing in a 4xx accepts */
			ck_assert_msg(sg != HTTP_ACCEPT && bt != HTTP_ACCEPT && rs != HTTP_ACCEPT,
			              "%ld", s);
		}
	}
}
END_TEST

/* A 3xx: transient for the whole request, with a message that says the
 * redirect was not followed and where it pointed. */
START_TEST(redirects_are_transient)
{
	static const long codes[] = {301, 302, 303, 307, 308};
	for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
		for (int with_location = 0; with_location < 2; with_location++) {
			struct http_answer a = {
			    .status = codes[i],
			    .retry_after = -1,
			    .body = "",
			    .body_len = 0,
			    .location = with_location ? "http://elsewhere.example/api/v1/logs" : "",
			    .message = ""};
			enum http_fate f = http_fate(codes[i], HTTP_USE_BATCH);
			ck_assert_int_eq(f, HTTP_TRANSIENT);
			ck_assert_int_eq(http_fate(codes[i], HTTP_USE_SINGLE), HTTP_TRANSIENT);
			struct spool_tx_status st = {.call = SPOOL_TXC_DONE, .retry_after = -1};
			http_fail_call(&a, f, &st, "batch");
			ck_assert_int_eq(st.call, SPOOL_TXC_TRANSIENT);
			ck_assert_int_eq(st.status, codes[i]);
			ck_assert_msg(strstr(st.message, "redirect not followed"), "%s",
			              st.message);
			if (with_location)
				ck_assert_msg(
				    strstr(st.message,
				           "Location: http://elsewhere.example/api/v1/logs"),
				    "%s", st.message);
			else
				ck_assert_msg(strstr(st.message, "no Location"), "%s", st.message);
		}
	}
}
END_TEST

/* What the other failures of a whole request say. */
START_TEST(failed_calls)
{
	static const char detail_403[] = "{\"detail\":\"bad key\"}";
	struct http_answer a = {.status = 403,
	                        .retry_after = -1,
	                        .body = detail_403,
	                        .body_len = sizeof(detail_403) - 1,
	                        .location = "",
	                        .message = ""};
	struct spool_tx_status st = {0};
	http_fail_call(&a, http_fate(403, HTTP_USE_BATCH), &st, "batch");
	ck_assert_int_eq(st.call, SPOOL_TXC_AUTH);
	ck_assert_int_eq(st.status, 403);
	ck_assert_msg(strstr(st.message, "credentials refused") && strstr(st.message, "bad key"),
	              "%s", st.message);

	a.status = 404;
	a.body = "not here\n";
	a.body_len = 9;
	memset(&st, 0, sizeof(st));
	http_fail_call(&a, http_fate(404, HTTP_USE_SINGLE), &st, "single");
	ck_assert_int_eq(st.call, SPOOL_TXC_MISSING);
	ck_assert_msg(strstr(st.message, "endpoint missing") && strstr(st.message, "not here"),
	              "%s", st.message);
	ck_assert_msg(!strchr(st.message, '\n'), "%s", st.message);

	/* Retry-After reaches the status */
	a.status = 503;
	a.retry_after = 7;
	a.body = "";
	a.body_len = 0;
	memset(&st, 0, sizeof(st));
	http_fail_call(&a, http_fate(503, HTTP_USE_BATCH), &st, "batch");
	ck_assert_int_eq(st.call, SPOOL_TXC_TRANSIENT);
	ck_assert_double_eq(st.retry_after, 7);
	ck_assert_msg(strstr(st.message, "503"), "%s", st.message);

	/* no answer: the network's reason */
	struct http_answer none = {
	    .status = 0,
	    .retry_after = -1,
	    .body = "",
	    .location = "",
	    .message = "POST http://127.0.0.1:1/api/v1/logs/batch: Connection refused"};
	memset(&st, 0, sizeof(st));
	http_fail_call(&none, http_fate(0, HTTP_USE_BATCH), &st, "batch");
	ck_assert_int_eq(st.call, SPOOL_TXC_TRANSIENT);
	ck_assert_int_eq(st.status, 0);
	ck_assert_msg(strstr(st.message, "Connection refused"), "%s", st.message);
}
END_TEST

START_TEST(detail_of_an_answer)
{
	char buf[64];
	struct http_answer a = {.status = 422, .retry_after = -1, .location = "", .message = ""};
	a.body = "{\"detail\": \"message: required\", \"x\": 1}";
	a.body_len = strlen(a.body);
	http_detail(&a, buf, sizeof(buf));
	ck_assert_str_eq(buf, "message: required");
	/* not JSON: the start of the body, control characters as spaces, cut */
	a.body =
	    "line one\r\nline two\tand a very long tail that does not fit in the buffer at all";
	a.body_len = strlen(a.body);
	http_detail(&a, buf, sizeof(buf));
	ck_assert_uint_eq(strlen(buf), sizeof(buf) - 1);
	ck_assert(strncmp(buf, "line one  line two and", 22) == 0);
	a.body = "";
	a.body_len = 0;
	http_detail(&a, buf, sizeof(buf));
	ck_assert_str_eq(buf, "");
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("agent-http");
	TCase *tc = tcase_create("http");
	tcase_add_test(tc, retry_after_forms);
	tcase_add_test(tc, fate_single_event);
	tcase_add_test(tc, fate_batch_as_a_whole);
	tcase_add_test(tc, fate_207_entries);
	tcase_add_test(tc, fate_every_status);
	tcase_add_test(tc, redirects_are_transient);
	tcase_add_test(tc, failed_calls);
	tcase_add_test(tc, detail_of_an_answer);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return tc_run(suite());
}
