/* test_api.c - the two API endpoints as PROTOCOL.md describes them:
 * statuses, bodies, validation of every field, dedup, gzip, auth, stats. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "tests.h"

#define SINGLE "/api/v1/logs"
#define BATCH "/api/v1/logs/batch"

static void post_value(struct rx *rx, const char *path, const json_t *v,
		       struct resp *r)
{
	char *text = test_dump(v);
	rx_post(rx, path, text, r);
	free(text);
}

static const char *detail_of(const json_t *j)
{
	const char *d = json_string_value(json_object_get(j, "detail"));
	ck_assert_msg(d != NULL, "no detail string in the answer");
	return d;
}

START_TEST(single_accepted_201_and_stored_as_sent)
{
	struct rx rx;
	struct resp r;
	rx_start(&rx, NULL);
	json_t *ev = test_event(1, "hello \xc3\xa9 \"quoted\"");
	post_value(&rx, SINGLE, ev, &r);
	ck_assert_int_eq(r.rc, CURLE_OK);
	ck_assert_int_eq(r.status, 201);
	ck_assert_str_eq(r.content_type, "application/json");
	json_t *j = resp_json(&r);
	const char *id = json_string_value(json_object_get(j, "id"));
	ck_assert_ptr_nonnull(id);
	ck_assert_uint_gt(strlen(id), 0);
	ck_assert_ptr_null(json_object_get(j, "duplicate"));

	json_t *lines = rx_out_lines(&rx);
	ck_assert_uint_eq(json_array_size(lines), 1);
	ck_assert(json_equal(json_array_get(lines, 0), ev));
	ck_assert_int_eq(rx_stat(&rx, "accepted"), 1);
	ck_assert_int_eq(rx_stat(&rx, "singles"), 1);
	json_decref(lines);
	json_decref(j);
	json_decref(ev);
	resp_free(&r);
	ck_assert_int_eq(rx_stop(&rx), 0);
}
END_TEST

START_TEST(single_repeat_is_200_duplicate_with_first_id_stored_once)
{
	struct rx rx;
	struct resp r1, r2, r3;
	rx_start(&rx, NULL);
	json_t *ev = test_event(7, "once");
	post_value(&rx, SINGLE, ev, &r1);
	ck_assert_int_eq(r1.status, 201);
	/* The same client_event_id with another message is still the same
	 * event as far as the server is concerned. */
	json_object_set_new(ev, "message", json_string("changed"));
	post_value(&rx, SINGLE, ev, &r2);
	post_value(&rx, SINGLE, ev, &r3);
	ck_assert_int_eq(r2.status, 200);
	ck_assert_int_eq(r3.status, 200);
	json_t *j1 = resp_json(&r1), *j2 = resp_json(&r2), *j3 = resp_json(&r3);
	ck_assert_str_eq(json_string_value(json_object_get(j2, "id")),
			 json_string_value(json_object_get(j1, "id")));
	ck_assert_str_eq(json_string_value(json_object_get(j3, "id")),
			 json_string_value(json_object_get(j1, "id")));
	ck_assert(json_is_true(json_object_get(j2, "duplicate")));

	json_t *lines = rx_out_lines(&rx);
	ck_assert_uint_eq(json_array_size(lines), 1);
	ck_assert_str_eq(json_string_value(json_object_get(
				 json_array_get(lines, 0), "message")),
			 "once");
	ck_assert_int_eq(rx_stat(&rx, "duplicates"), 2);
	ck_assert_int_eq(rx_stat(&rx, "accepted"), 1);
	json_decref(lines);
	json_decref(j1);
	json_decref(j2);
	json_decref(j3);
	json_decref(ev);
	resp_free(&r1);
	resp_free(&r2);
	resp_free(&r3);
	ck_assert_int_eq(rx_stop(&rx), 0);
}
END_TEST

/* One bad field per row: the answer is 422 and its detail names it. */
struct bad_field {
	const char *field;
	const char *json; /* value to set; NULL removes the field */
};

static const struct bad_field bad_fields[] = {
	{ "message", NULL },
	{ "message", "42" },
	{ "message", "null" },
	{ "message", "[\"a\"]" },
	{ "severity", "\"warning\"" },
	{ "severity", "\"INFO\"" },
	{ "severity", "3" },
	{ "title", "7" },
	{ "title", "null" },
	{ "tags", "\"a,b\"" },
	{ "tags", "[\"a\", 1]" },
	{ "tags", "{}" },
	{ "ttl_seconds", "0" },
	{ "ttl_seconds", "-5" },
	{ "ttl_seconds", "1.5" },
	{ "ttl_seconds", "\"60\"" },
	{ "metadata", "[]" },
	{ "metadata", "\"x\"" },
	{ "client_event_id", NULL },
	{ "client_event_id", "123" },
	{ "client_event_id", "\"01HX\"" },
	{ "client_event_id", "\"01HX0000000000000000000000X\"" }, /* 27 */
	{ "client_event_id", "\"01HX000000000000000000000U\"" },  /* U */
	{ "client_event_id", "\"01HX000000000000000000000-\"" },
	{ "client_event_id", "\"81HX0000000000000000000000\"" }, /* > 128 bit */
	{ "timestamp", NULL },
	{ "timestamp", "1700000000" },
	{ "timestamp", "\"2026-11-24 14:29:21Z\"" },
	{ "timestamp", "\"2026-11-24T14:29:21.123456\"" },
	{ "timestamp", "\"2026-11-24T14:29:21.123456+01:00\"" },
	{ "timestamp", "\"2026-13-24T14:29:21Z\"" },
	{ "timestamp", "\"2026-02-29T14:29:21Z\"" },
	{ "timestamp", "\"2026-11-24T24:00:00Z\"" },
	{ "timestamp", "\"2026-11-24T14:29:21.Z\"" },
	{ "timestamp", "\"yesterday\"" },
};

/* Each table runs twice: on the fast path, and with every event checked
 * by jansson (--validate-with-jansson); the answers must be the same. */
static const char *const jansson_mode[] = { "--validate-with-jansson", NULL };

START_TEST(single_bad_field_is_422_naming_the_field)
{
	struct rx rx;
	struct resp r;
	rx_start(&rx, _i ? jansson_mode : NULL);
	size_t n = sizeof(bad_fields) / sizeof(bad_fields[0]);
	for (size_t i = 0; i < n; i++) {
		const struct bad_field *b = &bad_fields[i];
		json_t *ev = test_event(100 + i, "m");
		if (b->json)
			json_object_set_new(
				ev, b->field,
				json_loads(b->json, JSON_DECODE_ANY, NULL));
		else
			json_object_del(ev, b->field);
		post_value(&rx, SINGLE, ev, &r);
		ck_assert_msg(r.status == 422, "%s=%s: got %ld", b->field,
			      b->json ? b->json : "(absent)", r.status);
		json_t *j = resp_json(&r);
		ck_assert_msg(strstr(detail_of(j), b->field) != NULL,
			      "detail '%s' does not name %s", detail_of(j),
			      b->field);
		json_decref(j);
		json_decref(ev);
		resp_free(&r);
	}
	ck_assert_int_eq(rx_stat(&rx, "rejected"), (long long)n);
	ck_assert_int_eq(rx_stat(&rx, "accepted"), 0);
	json_t *lines = rx_out_lines(&rx);
	ck_assert_uint_eq(json_array_size(lines), 0);
	json_decref(lines);
	ck_assert_int_eq(rx_stop(&rx), 0);
}
END_TEST

/* Allowed shapes at the edges of the rules are accepted. */
START_TEST(single_edge_values_are_accepted)
{
	static const char *const good[][2] = {
		{ "message", "\"\"" },
		{ "severity", "\"debug\"" },
		{ "severity", "\"warn\"" },
		{ "severity", "\"error\"" },
		{ "severity", "\"fatal\"" },
		{ "tags", "[]" },
		{ "ttl_seconds", "1" },
		{ "ttl_seconds", "9007199254740993" },
		{ "metadata", "{}" },
		{ "timestamp", "\"2028-02-29T00:00:00Z\"" },
		{ "timestamp", "\"2026-11-24T14:29:21+00:00\"" },
		{ "timestamp", "\"2026-11-24T14:29:21.123456789Z\"" },
		{ "unknown_extra_field", "{\"x\":1}" },
		{ "message", "\"tab\\t quote\\\" \\u00e9 \\ud83d\\ude00\"" },
	};
	struct rx rx;
	struct resp r;
	size_t n = sizeof(good) / sizeof(good[0]);
	rx_start(&rx, _i ? jansson_mode : NULL);
	for (size_t i = 0; i < n; i++) {
		json_t *ev = test_event(200 + i, "m");
		json_object_set_new(ev, good[i][0],
				    json_loads(good[i][1], JSON_DECODE_ANY,
					       NULL));
		post_value(&rx, SINGLE, ev, &r);
		ck_assert_msg(r.status == 201, "%s=%s: got %ld %s",
			      good[i][0], good[i][1], r.status, r.body);
		json_decref(ev);
		resp_free(&r);
	}
	/* severity may be left out (default info); lowercase ids are the
	 * same id as uppercase ones. */
	json_t *ev = test_event(300, "m");
	json_object_del(ev, "severity");
	json_object_set_new(ev, "client_event_id",
			    json_string("01hx0000000000000000000abc"));
	post_value(&rx, SINGLE, ev, &r);
	ck_assert_int_eq(r.status, 201);
	resp_free(&r);
	json_object_set_new(ev, "client_event_id",
			    json_string("01HX0000000000000000000ABC"));
	post_value(&rx, SINGLE, ev, &r);
	ck_assert_int_eq(r.status, 200);
	resp_free(&r);
	json_decref(ev);
	ck_assert_int_eq(rx_stat(&rx, "accepted"), (long long)n + 1);
	ck_assert_int_eq(rx_stop(&rx), 0);
}
END_TEST

START_TEST(batch_all_accepted_200_with_ids_in_order)
{
	struct rx rx;
	struct resp r;
	rx_start(&rx, NULL);
	json_t *batch = test_batch(1000, 5);
	post_value(&rx, BATCH, batch, &r);
	ck_assert_int_eq(r.status, 200);
	json_t *j = resp_json(&r);
	ck_assert_int_eq(json_integer_value(json_object_get(j, "accepted")), 5);
	json_t *ids = json_object_get(j, "ids");
	ck_assert_uint_eq(json_array_size(ids), 5);
	for (size_t a = 0; a < 5; a++)
		for (size_t b = a + 1; b < 5; b++)
			ck_assert_str_ne(
				json_string_value(json_array_get(ids, a)),
				json_string_value(json_array_get(ids, b)));
	json_t *lines = rx_out_lines(&rx);
	ck_assert(json_equal(lines, json_object_get(batch, "logs")));
	ck_assert_int_eq(rx_stat(&rx, "batches"), 1);
	ck_assert_int_eq(rx_stat(&rx, "accepted"), 5);
	json_decref(lines);
	json_decref(j);
	json_decref(batch);
	resp_free(&r);
	ck_assert_int_eq(rx_stop(&rx), 0);
}
END_TEST

/* --any-json (bench/peers): any path takes a {"logs": [...]} batch of any
 * JSON values, each stored and counted, twice when sent twice; the shape
 * is still checked. */
START_TEST(any_json_counts_every_value_without_dedup)
{
	struct rx rx;
	struct resp r;
	const char *args[] = {"--any-json", NULL};
	rx_start(&rx, args);
	const char *body = "{\"logs\":[{\"message\":\"line 1\"},{\"no\":\"fields\"},\"text\",3]}";
	rx_post(&rx, "/peer", body, &r);
	ck_assert_int_eq(r.status, 200);
	resp_free(&r);
	rx_post(&rx, "/peer", body, &r);
	ck_assert_int_eq(r.status, 200);
	resp_free(&r);
	rx_post(&rx, BATCH, "{\"logs\":[{\"severity\":\"nonsense\"}]}", &r);
	ck_assert_int_eq(r.status, 200);
	resp_free(&r);
	rx_post(&rx, "/peer", "[1,2]", &r);
	ck_assert_int_eq(r.status, 400);
	resp_free(&r);
	ck_assert_int_eq(rx_stat(&rx, "accepted"), 9);
	ck_assert_int_eq(rx_stat(&rx, "duplicates"), 0);
	ck_assert_int_eq(rx_stop(&rx), 0);
}
END_TEST

START_TEST(batch_with_bad_events_is_207_per_event)
{
	struct rx rx;
	struct resp r;
	rx_start(&rx, NULL);
	json_t *batch = test_batch(2000, 5);
	json_t *logs = json_object_get(batch, "logs");
	json_object_set_new(json_array_get(logs, 1), "message",
			    json_integer(1));
	json_array_set_new(logs, 3, json_string("not an object"));
	json_object_set_new(json_array_get(logs, 4), "client_event_id",
			    json_string("nope"));
	post_value(&rx, BATCH, batch, &r);
	ck_assert_int_eq(r.status, 207);
	json_t *j = resp_json(&r);
	json_t *res = json_object_get(j, "results");
	ck_assert_uint_eq(json_array_size(res), 5);
	static const int want[5] = { 201, 422, 201, 422, 422 };
	static const char *const field[5] = { NULL, "message", NULL, "event",
					      "client_event_id" };
	for (size_t i = 0; i < 5; i++) {
		json_t *e = json_array_get(res, i);
		ck_assert_int_eq(json_integer_value(json_object_get(e, "status")),
				 want[i]);
		if (want[i] == 201)
			ck_assert(json_is_string(json_object_get(e, "id")));
		else
			ck_assert_ptr_nonnull(
				strstr(detail_of(e), field[i]));
	}
	json_t *lines = rx_out_lines(&rx);
	ck_assert_uint_eq(json_array_size(lines), 2);
	ck_assert(json_equal(json_array_get(lines, 1), json_array_get(logs, 2)));
	ck_assert_int_eq(rx_stat(&rx, "rejected"), 3);
	json_decref(lines);
	json_decref(j);
	json_decref(batch);
	resp_free(&r);
	ck_assert_int_eq(rx_stop(&rx), 0);
}
END_TEST

START_TEST(batch_duplicates_keep_their_first_ids)
{
	struct rx rx;
	struct resp r;
	rx_start(&rx, NULL);
	json_t *batch = test_batch(3000, 3);
	post_value(&rx, BATCH, batch, &r);
	ck_assert_int_eq(r.status, 200);
	json_t *first = resp_json(&r);
	resp_free(&r);

	/* The whole batch again: every event accepted, same ids. */
	post_value(&rx, BATCH, batch, &r);
	ck_assert_int_eq(r.status, 200);
	json_t *again = resp_json(&r);
	resp_free(&r);
	ck_assert(json_equal(json_object_get(again, "ids"),
			     json_object_get(first, "ids")));
	ck_assert_int_eq(json_integer_value(json_object_get(again, "duplicates")),
			 3);

	/* Old event, new event, and the new one twice in the same batch. */
	json_t *mixed = test_batch(3000, 1);
	json_t *logs = json_object_get(mixed, "logs");
	json_array_append_new(logs, test_event(3100, "new"));
	json_array_append_new(logs, test_event(3100, "new again"));
	post_value(&rx, BATCH, mixed, &r);
	ck_assert_int_eq(r.status, 200);
	json_t *mj = resp_json(&r);
	resp_free(&r);
	json_t *ids = json_object_get(mj, "ids");
	ck_assert_str_eq(json_string_value(json_array_get(ids, 0)),
			 json_string_value(json_array_get(
				 json_object_get(first, "ids"), 0)));
	ck_assert_str_eq(json_string_value(json_array_get(ids, 1)),
			 json_string_value(json_array_get(ids, 2)));

	/* A 207 reports a repeat as status 200 with duplicate: true. */
	json_t *partial = test_batch(3000, 1);
	json_array_append_new(json_object_get(partial, "logs"),
			      json_string("bad"));
	post_value(&rx, BATCH, partial, &r);
	ck_assert_int_eq(r.status, 207);
	json_t *pj = resp_json(&r);
	resp_free(&r);
	json_t *r0 = json_array_get(json_object_get(pj, "results"), 0);
	ck_assert_int_eq(json_integer_value(json_object_get(r0, "status")), 200);
	ck_assert(json_is_true(json_object_get(r0, "duplicate")));
	ck_assert_str_eq(json_string_value(json_object_get(r0, "id")),
			 json_string_value(json_array_get(
				 json_object_get(first, "ids"), 0)));

	json_t *lines = rx_out_lines(&rx);
	ck_assert_uint_eq(json_array_size(lines), 4);
	ck_assert_int_eq(rx_stat(&rx, "accepted"), 4);
	ck_assert_int_eq(rx_stat(&rx, "duplicates"), 3 + 2 + 1);
	json_decref(lines);
	json_decref(first);
	json_decref(again);
	json_decref(mj);
	json_decref(pj);
	json_decref(batch);
	json_decref(mixed);
	json_decref(partial);
	ck_assert_int_eq(rx_stop(&rx), 0);
}
END_TEST

START_TEST(batch_shape_errors_are_whole_batch_4xx)
{
	static const struct {
		const char *body;
		long status;
	} rows[] = {
		{ "[]", 400 },
		{ "{\"events\": []}", 400 },
		{ "{\"logs\": {}}", 400 },
		{ "{\"logs\": \"x\"}", 400 },
		{ "{\"logs\": []}", 422 },
	};
	struct rx rx;
	struct resp r;
	rx_start(&rx, NULL);
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		rx_post(&rx, BATCH, rows[i].body, &r);
		ck_assert_msg(r.status == rows[i].status, "%s: got %ld",
			      rows[i].body, r.status);
		json_t *j = resp_json(&r);
		detail_of(j);
		json_decref(j);
		resp_free(&r);
	}
	ck_assert_int_eq(rx_stop(&rx), 0);
}
END_TEST

START_TEST(batch_limits_default_1000_events_and_5_mib)
{
	struct rx rx;
	struct resp r;
	rx_start(&rx, NULL);
	json_t *big = test_batch(10000, 1001);
	post_value(&rx, BATCH, big, &r);
	ck_assert_int_eq(r.status, 413);
	resp_free(&r);
	json_array_remove(json_object_get(big, "logs"), 1000);
	post_value(&rx, BATCH, big, &r);
	ck_assert_int_eq(r.status, 200);
	resp_free(&r);

	/* Two events, but more than 5 MiB of JSON. */
	size_t mlen = 3u << 20;
	char *msg = malloc(mlen + 1);
	memset(msg, 'x', mlen);
	msg[mlen] = '\0';
	json_t *fat = test_batch(20000, 2);
	json_t *logs = json_object_get(fat, "logs");
	json_object_set_new(json_array_get(logs, 0), "message",
			    json_string(msg));
	json_object_set_new(json_array_get(logs, 1), "message",
			    json_string(msg));
	post_value(&rx, BATCH, fat, &r);
	ck_assert_int_eq(r.status, 413);
	resp_free(&r);
	/* One of them alone fits. */
	json_array_remove(logs, 1);
	post_value(&rx, BATCH, fat, &r);
	ck_assert_int_eq(r.status, 200);
	resp_free(&r);
	ck_assert_int_eq(rx_stat(&rx, "accepted"), 1001);
	free(msg);
	json_decref(fat);
	json_decref(big);
	ck_assert_int_eq(rx_stop(&rx), 0);
}
END_TEST

START_TEST(batch_limit_flags_change_the_limits)
{
	const char *args[] = { "--max-batch-events", "2", "--max-batch-bytes",
			       "2000", NULL };
	struct rx rx;
	struct resp r;
	rx_start(&rx, args);
	json_t *three = test_batch(1, 3);
	post_value(&rx, BATCH, three, &r);
	ck_assert_int_eq(r.status, 413);
	resp_free(&r);
	json_t *two = test_batch(1, 2);
	post_value(&rx, BATCH, two, &r);
	ck_assert_int_eq(r.status, 200);
	resp_free(&r);
	char msg[2100];
	memset(msg, 'y', sizeof(msg) - 1);
	msg[sizeof(msg) - 1] = '\0';
	json_object_set_new(json_array_get(json_object_get(two, "logs"), 0),
			    "message", json_string(msg));
	post_value(&rx, BATCH, two, &r);
	ck_assert_int_eq(r.status, 413);
	resp_free(&r);
	/* The batch limits are not single-event limits. */
	post_value(&rx, SINGLE, json_array_get(json_object_get(two, "logs"), 0),
		   &r);
	ck_assert_int_eq(r.status, 200); /* already stored by the batch */
	resp_free(&r);
	json_decref(two);
	json_decref(three);
	ck_assert_int_eq(rx_stop(&rx), 0);
}
END_TEST

START_TEST(routes_404_and_405)
{
	struct rx rx;
	struct resp r;
	rx_start(&rx, NULL);
	static const struct {
		const char *method, *path;
		long status;
		const char *allow;
	} rows[] = {
		{ "GET", "/", 404, NULL },
		{ "POST", "/api/v1/log", 404, NULL },
		{ "POST", "/api/v1/logs/", 404, NULL },
		{ "POST", "/api/v2/logs", 404, NULL },
		{ "GET", SINGLE, 405, "POST" },
		{ "PUT", SINGLE, 405, "POST" },
		{ "DELETE", BATCH, 405, "POST" },
		{ "GET", BATCH, 405, "POST" },
		{ "POST", "/stats", 405, "GET" },
		{ "GET", "/healthz", 200, NULL },
	};
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		rx_request(&rx, rows[i].method, rows[i].path, "{}", 2, NULL, 0,
			   &r);
		ck_assert_msg(r.status == rows[i].status, "%s %s: got %ld",
			      rows[i].method, rows[i].path, r.status);
		if (rows[i].allow)
			ck_assert_str_eq(r.allow, rows[i].allow);
		resp_free(&r);
	}
	ck_assert_int_eq(rx_stop(&rx), 0);
}
END_TEST

START_TEST(gzip_bodies_are_inflated)
{
	struct rx rx;
	struct resp r;
	const char *gz[] = { "Content-Encoding: gzip", NULL };
	rx_start(&rx, NULL);
	json_t *batch = test_batch(500, 50);
	char *text = test_dump(batch);
	size_t zlen;
	void *z = test_gzip(text, strlen(text), &zlen);
	rx_request(&rx, "POST", BATCH, z, zlen, gz, 0, &r);
	ck_assert_int_eq(r.status, 200);
	resp_free(&r);
	free(z);
	json_t *ev = test_event(900, "gz single");
	char *one = test_dump(ev);
	json_decref(ev);
	z = test_gzip(one, strlen(one), &zlen);
	rx_request(&rx, "POST", SINGLE, z, zlen, gz, 0, &r);
	ck_assert_int_eq(r.status, 201);
	resp_free(&r);
	/* The same stream cut short is not gzip. */
	rx_request(&rx, "POST", SINGLE, z, zlen - 6, gz, 0, &r);
	ck_assert_int_eq(r.status, 400);
	resp_free(&r);
	/* Nor is plain JSON that claims to be. */
	rx_request(&rx, "POST", SINGLE, one, strlen(one), gz, 0, &r);
	ck_assert_int_eq(r.status, 400);
	resp_free(&r);
	const char *br[] = { "Content-Encoding: br", NULL };
	rx_request(&rx, "POST", SINGLE, one, strlen(one), br, 0, &r);
	ck_assert_int_eq(r.status, 415);
	resp_free(&r);

	json_t *lines = rx_out_lines(&rx);
	ck_assert_uint_eq(json_array_size(lines), 51);
	ck_assert(json_equal(json_array_get(lines, 49),
			     json_array_get(json_object_get(batch, "logs"), 49)));
	ck_assert_int_eq(rx_stat(&rx, "gzip_requests"), 4);
	ck_assert_int_lt(rx_stat(&rx, "bytes_in"), rx_stat(&rx, "bytes_inflated"));
	json_decref(lines);
	free(z);
	free(one);
	free(text);
	json_decref(batch);
	ck_assert_int_eq(rx_stop(&rx), 0);
}
END_TEST

START_TEST(api_key_required_when_set)
{
	const char *args[] = { "--api-key", "s3cret-key", NULL };
	const char *wrong[] = { "X-API-Key: s3cret-kez", NULL };
	const char *right[] = { "X-API-Key: s3cret-key", NULL };
	struct rx rx;
	struct resp r;
	rx_start(&rx, args);
	json_t *e = test_event(1, "k");
	json_t *bj = test_batch(1, 2);
	char *ev = test_dump(e);
	char *batch = test_dump(bj);
	json_decref(e);
	json_decref(bj);
	rx_request(&rx, "POST", SINGLE, ev, strlen(ev), NULL, 0, &r);
	ck_assert_int_eq(r.status, 401);
	resp_free(&r);
	rx_request(&rx, "POST", SINGLE, ev, strlen(ev), wrong, 0, &r);
	ck_assert_int_eq(r.status, 401);
	resp_free(&r);
	rx_request(&rx, "POST", BATCH, batch, strlen(batch), NULL, 0, &r);
	ck_assert_int_eq(r.status, 401);
	resp_free(&r);
	ck_assert_int_eq(rx_stat(&rx, "accepted"), 0);
	rx_request(&rx, "POST", SINGLE, ev, strlen(ev), right, 0, &r);
	ck_assert_int_eq(r.status, 201);
	resp_free(&r);
	rx_request(&rx, "POST", BATCH, batch, strlen(batch), right, 0, &r);
	ck_assert_int_eq(r.status, 200);
	resp_free(&r);
	ck_assert_int_eq(rx_stat(&rx, "accepted"), 2);
	ck_assert_int_eq(rx_stop(&rx), 0);

	const char *args403[] = { "--api-key", "k", "--auth-status", "403",
				  NULL };
	rx_start(&rx, args403);
	rx_request(&rx, "POST", SINGLE, ev, strlen(ev), wrong, 0, &r);
	ck_assert_int_eq(r.status, 403);
	resp_free(&r);
	ck_assert_int_eq(rx_stop(&rx), 0);
	free(ev);
	free(batch);
}
END_TEST

START_TEST(stats_count_what_happened)
{
	struct rx rx;
	struct resp r;
	const char *hdrs[] = { "Idempotency-Key: 01HX-3",
			       "User-Agent: master-log-spool/0.1.0 test", NULL };
	size_t bytes = 0;
	rx_start(&rx, NULL);
	json_t *e1 = test_event(1, "a"), *e2 = test_event(2, "b");
	char *ok = test_dump(e1);
	char *bad = test_dump(e2);
	json_decref(e1);
	json_decref(e2);
	bad[strlen(bad) - 3] = '7'; /* the timestamp's Z: last field */
	json_t *b = test_batch(10, 3);
	json_object_del(json_array_get(json_object_get(b, "logs"), 2),
			"timestamp");
	char *batch = test_dump(b);

	rx_request(&rx, "POST", SINGLE, ok, strlen(ok), NULL, 0, &r);
	ck_assert_int_eq(r.status, 201);
	resp_free(&r);
	rx_request(&rx, "POST", SINGLE, ok, strlen(ok), NULL, 0, &r);
	ck_assert_int_eq(r.status, 200);
	resp_free(&r);
	rx_request(&rx, "POST", SINGLE, bad, strlen(bad), NULL, 0, &r);
	ck_assert_int_eq(r.status, 422);
	resp_free(&r);
	rx_request(&rx, "POST", BATCH, batch, strlen(batch), hdrs, 0, &r);
	ck_assert_int_eq(r.status, 207);
	resp_free(&r);
	bytes = 2 * strlen(ok) + strlen(bad) + strlen(batch);

	json_t *s = rx_stats(&rx);
	ck_assert_int_eq(json_integer_value(json_object_get(s, "requests")), 4);
	ck_assert_int_eq(json_integer_value(json_object_get(s, "singles")), 3);
	ck_assert_int_eq(json_integer_value(json_object_get(s, "batches")), 1);
	ck_assert_int_eq(json_integer_value(json_object_get(s, "accepted")), 3);
	ck_assert_int_eq(json_integer_value(json_object_get(s, "duplicates")), 1);
	ck_assert_int_eq(json_integer_value(json_object_get(s, "rejected")), 2);
	ck_assert_int_eq(json_integer_value(json_object_get(s, "bytes_in")),
			 (long long)bytes);
	ck_assert_int_eq(json_integer_value(json_object_get(s, "idempotency_keys")),
			 1);
	ck_assert_str_eq(json_string_value(json_object_get(s, "last_idempotency_key")),
			 "01HX-3");
	ck_assert_str_eq(json_string_value(json_object_get(s, "last_user_agent")),
			 "master-log-spool/0.1.0 test");
	json_t *st = json_object_get(s, "status");
	ck_assert_int_eq(json_integer_value(json_object_get(st, "201")), 1);
	ck_assert_int_eq(json_integer_value(json_object_get(st, "200")), 1);
	ck_assert_int_eq(json_integer_value(json_object_get(st, "422")), 1);
	ck_assert_int_eq(json_integer_value(json_object_get(st, "207")), 1);
	json_decref(s);
	json_decref(b);
	free(ok);
	free(bad);
	free(batch);
	ck_assert_int_eq(rx_stop(&rx), 0);
}
END_TEST

TCase *api_tcase(void)
{
	TCase *tc = tcase_create("api");
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, single_accepted_201_and_stored_as_sent);
	tcase_add_test(tc, single_repeat_is_200_duplicate_with_first_id_stored_once);
	tcase_add_loop_test(tc, single_bad_field_is_422_naming_the_field, 0, 2);
	tcase_add_loop_test(tc, single_edge_values_are_accepted, 0, 2);
	tcase_add_test(tc, batch_all_accepted_200_with_ids_in_order);
	tcase_add_test(tc, batch_with_bad_events_is_207_per_event);
	tcase_add_test(tc, batch_duplicates_keep_their_first_ids);
	tcase_add_test(tc, batch_shape_errors_are_whole_batch_4xx);
	tcase_add_test(tc, batch_limits_default_1000_events_and_5_mib);
	tcase_add_test(tc, batch_limit_flags_change_the_limits);
	tcase_add_test(tc, routes_404_and_405);
	tcase_add_test(tc, gzip_bodies_are_inflated);
	tcase_add_test(tc, api_key_required_when_set);
	tcase_add_test(tc, stats_count_what_happened);
	tcase_add_test(tc, any_json_counts_every_value_without_dedup);
	return tc;
}
