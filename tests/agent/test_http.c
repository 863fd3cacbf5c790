/* test_http.c — pieces of the HTTP transports that the receiver cannot
 * provoke: Retry-After forms and the classification of redirects. */
#include <check.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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

static int logged;

static void test_log(void *ctx, int level, const char *fmt, ...)
{
	(void)ctx;
	(void)fmt;
	logged += level == SPOOL_TX_LOG_ERR;
}

START_TEST(redirects_are_transient_and_loud)
{
	struct spool_tx_config cfg = {.struct_size = sizeof(cfg), .endpoint = "http://127.0.0.1:9", .log = test_log};
	struct http_conn c;
	char err[256];
	ck_assert_int_eq(http_conn_init(&c, &cfg, "/api/v1/logs", err, sizeof(err)), 0);
	static const long codes[] = {301, 302, 307, 308};
	for (size_t i = 0; i < 4; i++) {
		struct http_answer a = {.status = codes[i], .retry_after = -1, .body = "", .body_len = 0};
		struct spool_tx_status call = {0};
		logged = 0;
		http_classify_failure(&c, &a, &call, "batch");
		ck_assert_int_eq(call.call, SPOOL_TXC_TRANSIENT);
		ck_assert_int_eq(logged, 1);
		ck_assert(strstr(call.message, "redirect not followed"));
	}
	struct http_answer a = {.status = 403, .retry_after = -1, .body = "{\"detail\":\"bad key\"}", .body_len = 20};
	struct spool_tx_status call = {0};
	http_classify_failure(&c, &a, &call, "batch");
	ck_assert_int_eq(call.call, SPOOL_TXC_AUTH);
	ck_assert(strstr(call.message, "bad key"));
	http_conn_fini(&c);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("agent-http");
	TCase *tc = tcase_create("http");
	tcase_add_test(tc, retry_after_forms);
	tcase_add_test(tc, redirects_are_transient_and_loud);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(suite());
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
