/* test_jscan.c - the receiver's JSON scanner against jansson, its
 * reference: same verdict on every input, events found where jansson finds
 * them, compact lines that mean the same, and a fast path that never
 * accepts an event event_validate() refuses. */
#include <check.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "body.h"
#include "event.h"
#include "jscan.h"
#include "tests.h"

static uint64_t rng_state;

static uint64_t rnd(void)
{
	uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static size_t pick(size_t n)
{
	return (size_t)(rnd() % n);
}

static bool jansson_ok(const char *s, size_t n)
{
	json_t *j = json_loadb(s, n, JSON_ALLOW_NUL | JSON_DECODE_ANY, NULL);
	json_decref(j);
	return j != NULL;
}

static bool scan_ok(const char *s, size_t n)
{
	struct jscan_result res;
	struct buf lines = { 0 };
	int rc = jscan_body(s, n, false, 1, &lines, &res);
	ck_assert_int_ne(rc, JS_NOMEM);
	jscan_result_free(&res);
	buf_free(&lines);
	return rc == JS_OK;
}

/* Same verdict as jansson, with one known exception: jansson 2.14 swallows
 * a raw NUL byte that follows a number or a literal ("[1\0,2]" loads as
 * [1,2]).  RFC 8259 allows no NUL there and the scanner refuses it; being
 * stricter is safe (a 400), accepting more would not be. */
static bool same_verdict(const char *s, size_t n)
{
	bool want = jansson_ok(s, n);
	if (want && memchr(s, '\0', n) && !scan_ok(s, n))
		return false;
	ck_assert_msg(scan_ok(s, n) == want,
		      "jansson says %s, the scanner disagrees: [%.*s]",
		      want ? "valid" : "invalid", (int)(n > 200 ? 200 : n), s);
	return want;
}

/* ---- a random JSON generator: compact text and a spaced-out copy ---- */

struct gen {
	struct buf compact;
	struct buf spaced;
};

static void emit(struct gen *g, const char *s)
{
	buf_append_str(&g->compact, s);
	buf_append_str(&g->spaced, s);
}

static void space(struct gen *g)
{
	static const char *const ws[] = { "", "", "", " ", "\n", "\t ", "\r\n  " };
	buf_append_str(&g->spaced, ws[pick(sizeof(ws) / sizeof(ws[0]))]);
}

static void gen_string(struct gen *g)
{
	static const char *const pieces[] = {
		"a", "Z", " ", "message", "logs", "\\n", "\\\"", "\\\\", "\\/",
		"\\u00e9", "\\ud83d\\ude00", "\\u0000", "\xc3\xa9",
		"\xf0\x9f\x98\x80", "\xe4\xb8\xad", "\\t", "x y", "0", "{", "]",
	};
	emit(g, "\"");
	size_t n = pick(6);
	for (size_t i = 0; i < n; i++)
		emit(g, pieces[pick(sizeof(pieces) / sizeof(pieces[0]))]);
	emit(g, "\"");
}

static void gen_value(struct gen *g, int depth)
{
	static const char *const numbers[] = {
		"0", "-0", "12", "-7", "1.5", "1e10", "-2.5E-3", "3e+2",
		"9223372036854775807", "-9223372036854775808", "0.000001",
		"123456789012345678",
	};
	static const char *const keys[] = {
		"\"a\"", "\"message\"", "\"logs\"", "\"mess\\u0061ge\"",
		"\"severity\"", "\"tags\"", "\"\\u00e9\"", "\"\"",
		"\"ttl_seconds\"",
	};
	size_t kind = pick(depth > 4 ? 5 : 7);
	switch (kind) {
	case 0:
		gen_string(g);
		break;
	case 1:
		emit(g, numbers[pick(sizeof(numbers) / sizeof(numbers[0]))]);
		break;
	case 2:
		emit(g, "true");
		break;
	case 3:
		emit(g, "null");
		break;
	case 4:
		emit(g, "false");
		break;
	case 5: {
		size_t n = pick(5);
		emit(g, "[");
		for (size_t i = 0; i < n; i++) {
			if (i)
				emit(g, ",");
			space(g);
			gen_value(g, depth + 1);
			space(g);
		}
		emit(g, "]");
		break;
	}
	default: {
		size_t n = pick(5);
		emit(g, "{");
		for (size_t i = 0; i < n; i++) {
			if (i)
				emit(g, ",");
			space(g);
			emit(g, keys[pick(sizeof(keys) / sizeof(keys[0]))]);
			space(g);
			emit(g, ":");
			space(g);
			gen_value(g, depth + 1);
			space(g);
		}
		emit(g, "}");
		break;
	}
	}
}

static void gen_free(struct gen *g)
{
	buf_free(&g->compact);
	buf_free(&g->spaced);
}

START_TEST(corpus_same_verdict_as_jansson)
{
	static const char *const corpus[] = {
		"{}", "[]", "0", "-0", "01", "1.", ".5", "1e", "1e+", "-", "1E5",
		"\"\"", "\"\\u0000\"", "{\"a\\u0000\":1}", "\"\\ud800\"",
		"\"\\udc00\"", "\"\\ud83d\\ude00\"", "\"\\ud800\\u0041\"",
		"\"\\ud800x\"", "\"\\u12\"", "\"\\uZZZZ\"", "\"\\x\"", "\"\\",
		"\"abc", "\"\xc0\xaf\"", "\"\xed\xa0\x80\"", "\"\xf4\x90\x80\x80\"",
		"\"\xf4\x8f\xbf\xbf\"", "\"\xe0\x9f\xbf\"", "\"\xc3\"", "\"\x7f\"",
		"\"\xff\"", "\"\x80\"", "\"\t\"", "true", "tru", "nul", "falsey",
		"[1,]", "[,1]", "{\"a\":1,}", "{\"a\" 1}", "{1:2}", "{\"a\":}",
		"[1 2]", " [ 1 , 2 ] ", "\v1", "\f1", "\xef\xbb\xbf{}", "1 2",
		"9223372036854775807", "9223372036854775808",
		"-9223372036854775808", "-9223372036854775809",
		"12345678901234567890123", "1e400", "-1e400", "1e-400",
		"0.00000000000000000000000000000000000000000000001",
		"{\"a\":1,\"a\":2}", "[[[[]]]]", "{\"logs\":[{}]}", "", " ", "\n",
		"[\"\\/\\b\\f\\n\\r\\t\\\"\\\\\"]", "-01", "-0.0e-0", "2.e3",
		"[1e1000000000000000000000]",
	};
	for (size_t i = 0; i < sizeof(corpus) / sizeof(corpus[0]); i++)
		same_verdict(corpus[i], strlen(corpus[i]));
	same_verdict("\"a\0\"", 4);
	same_verdict("{}\0", 3);
	/* the jansson quirk above: refused here, on purpose */
	ck_assert(jansson_ok("[0\0]", 4));
	ck_assert(!scan_ok("[0\0]", 4));
}
END_TEST

static void depth_case(int d)
{
	char *b = malloc(2 * (size_t)d);
	memset(b, '[', (size_t)d);
	memset(b + d, ']', (size_t)d);
	same_verdict(b, 2 * (size_t)d);
	free(b);
}

START_TEST(nesting_limit_matches_jansson)
{
	for (int d = 2040; d <= 2056; d++)
		depth_case(d);
	/* a batch counts its root and "logs" levels too */
	static const char head[] = "{\"logs\":[";
	for (size_t n = 2040; n <= 2050; n++) {
		size_t k = sizeof(head) - 1, len = k + 2 * n + 2;
		char *b = malloc(len);
		ck_assert_ptr_nonnull(b);
		memcpy(b, head, k);
		for (size_t i = 0; i < n; i++) {
			b[k + i] = '[';
			b[k + n + i] = ']';
		}
		b[len - 2] = ']';
		b[len - 1] = '}';
		struct jscan_result res;
		int rc = jscan_body(b, len, true, 10, NULL, &res);
		ck_assert_msg((rc == JS_OK) == jansson_ok(b, len), "depth %zu", n);
		jscan_result_free(&res);
		free(b);
	}
}
END_TEST

START_TEST(random_documents_compact_lines_and_spans)
{
	rng_state = 42;
	for (int iter = 0; iter < 3000; iter++) {
		struct gen g = { { 0 }, { 0 } };
		/* a batch whose logs hold random values, most of them objects */
		emit(&g, "{");
		space(&g);
		emit(&g, "\"x\":");
		gen_value(&g, 3);
		emit(&g, ",");
		space(&g);
		emit(&g, "\"logs\"");
		space(&g);
		emit(&g, ":");
		space(&g);
		emit(&g, "[");
		size_t n = pick(6);
		for (size_t i = 0; i < n; i++) {
			if (i)
				emit(&g, ",");
			space(&g);
			gen_value(&g, 0);
			space(&g);
		}
		emit(&g, "]");
		space(&g);
		emit(&g, "}");

		json_t *ref = json_loadb(g.spaced.data, g.spaced.len,
					 JSON_ALLOW_NUL | JSON_DECODE_ANY, NULL);
		struct jscan_result res;
		struct buf lines = { 0 };
		int rc = jscan_body(g.spaced.data, g.spaced.len, true, 100,
				    &lines, &res);
		ck_assert_msg((rc == JS_OK) == (ref != NULL), "%.*s",
			      (int)g.spaced.len, g.spaced.data);
		if (ref) {
			json_t *logs = json_object_get(ref, "logs");
			ck_assert_uint_eq(res.n_events, json_array_size(logs));
			/* compact lines: the compact text of each event */
			struct buf want = { 0 };
			struct jscan_result cres;
			ck_assert_int_eq(jscan_body(g.compact.data, g.compact.len,
						    true, 100, &want, &cres),
					 JS_OK);
			ck_assert_uint_eq(lines.len, want.len);
			ck_assert(want.len == 0 ||
				  memcmp(lines.data, want.data, want.len) == 0);
			for (size_t i = 0; i < res.n_events; i++) {
				const struct jevent *e = &res.events[i];
				json_t *raw = json_loadb(
					g.spaced.data + e->raw_off, e->raw_len,
					JSON_ALLOW_NUL | JSON_DECODE_ANY, NULL);
				json_t *line = json_loadb(
					lines.data + e->line_off,
					e->line_len - 1,
					JSON_ALLOW_NUL | JSON_DECODE_ANY, NULL);
				ck_assert(json_equal(raw, json_array_get(logs, i)));
				ck_assert(json_equal(line, raw));
				ck_assert_int_eq(lines.data[e->line_off +
							    e->line_len - 1],
						 '\n');
				json_decref(raw);
				json_decref(line);
			}
			jscan_result_free(&cres);
			buf_free(&want);
		}
		json_decref(ref);
		jscan_result_free(&res);
		buf_free(&lines);
		gen_free(&g);
	}
}
END_TEST

START_TEST(mutated_documents_same_verdict_as_jansson)
{
	static const char interesting[] = "{}[]\",:\\ u0123456789eE.-+tfn\x80\xc3\xed\xf4\x00\t\n";
	size_t valid = 0;
	rng_state = 7;
	for (int iter = 0; iter < 20000; iter++) {
		struct gen g = { { 0 }, { 0 } };
		gen_value(&g, 0);
		struct buf *b = &g.spaced;
		size_t muts = 1 + pick(3);
		for (size_t m = 0; m < muts && b->len > 0; m++) {
			size_t at = pick(b->len);
			switch (pick(4)) {
			case 0: /* replace a byte */
				b->data[at] = interesting[pick(sizeof(interesting) - 1)];
				break;
			case 1: /* delete a byte */
				memmove(b->data + at, b->data + at + 1,
					b->len - at - 1);
				b->len--;
				break;
			case 2: /* insert a byte */
				buf_reserve(b, 1);
				memmove(b->data + at + 1, b->data + at, b->len - at);
				b->data[at] = interesting[pick(sizeof(interesting) - 1)];
				b->len++;
				break;
			default: /* truncate */
				b->len = at;
				break;
			}
		}
		valid += same_verdict(b->data ? b->data : "", b->len);
		gen_free(&g);
	}
	/* the mutations make plenty of both */
	ck_assert_uint_gt(valid, 1000);
	ck_assert_uint_lt(valid, 18000);
}
END_TEST

/* ---- the fast path never accepts what event_validate() refuses ---- */

static const char *const field_values[][10] = {
	/* message */
	{ "\"hi\"", "\"\"", "\"a\\nb\"", "3", "null", "[\"x\"]", NULL },
	/* severity */
	{ "\"info\"", "\"fatal\"", "\"inf\\u006f\"", "\"warning\"", "\"\"", "1", NULL },
	/* title */
	{ "\"t\"", "\"\"", "false", "{}", NULL },
	/* tags */
	{ "[]", "[\"a\",\"b\"]", "[\"a\",1]", "\"a\"", "[[]]", NULL },
	/* ttl_seconds */
	{ "1", "60", "0", "-0", "-5", "1.0", "1e3", "\"5\"",
	  "9223372036854775807", NULL },
	/* metadata */
	{ "{}", "{\"c_client\":{\"pid\":1}}", "[]", "null", NULL },
	/* client_event_id */
	{ "\"01HX0000000000000000000001\"", "\"01hx0000000000000000000002\"",
	  "\"01HX000000000000000000000\\u0033\"", "\"81HX0000000000000000000001\"",
	  "\"01HX000000000000000000000U\"", "\"short\"", "7", NULL },
	/* timestamp */
	{ "\"2026-11-24T14:29:21.123456Z\"", "\"2026-11-24T14:29:21Z\"",
	  "\"2026-11-24T14:29:21+00:00\"", "\"2026-02-30T00:00:00Z\"",
	  "\"2026-11-24T14:29:21\"", "\"2026-11-24T14:29:21\\u005a\"", "0", NULL },
};
static const char *const field_names[] = {
	"\"message\"", "\"severity\"", "\"title\"", "\"tags\"",
	"\"ttl_seconds\"", "\"metadata\"", "\"client_event_id\"", "\"timestamp\"",
};

START_TEST(fast_check_agrees_with_event_validate)
{
	rng_state = 99;
	size_t fast_ok = 0;
	for (int iter = 0; iter < 20000; iter++) {
		struct buf b = { 0 };
		buf_append_str(&b, "{");
		bool first = true;
		for (int f = 0; f < 8; f++) {
			/* absent, once, or (rarely) twice */
			size_t times = pick(10) == 0 ? 0 : (pick(20) == 0 ? 2 : 1);
			for (size_t t = 0; t < times; t++) {
				size_t nv = 0;
				while (nv < 10 && field_values[f][nv])
					nv++;
				if (!first)
					buf_append_str(&b, ",");
				first = false;
				buf_append_str(&b, field_names[f]);
				buf_append_str(&b, ":");
				/* valid values are likelier */
				size_t v = pick(3) ? pick(2) : pick(nv);
				buf_append_str(&b, field_values[f][v]);
			}
		}
		buf_append_str(&b, "}");

		struct jscan_result res;
		ck_assert_int_eq(jscan_body(b.data, b.len, false, 1, NULL, &res),
				 JS_OK);
		struct dedup_key fk = { 0, 0 }, sk = { 1, 1 };
		int fast = event_fast_check(&res.events[0], &fk);
		json_t *ev = json_loadb(b.data, b.len, JSON_ALLOW_NUL, NULL);
		char detail[256];
		int slow = event_validate(ev, &sk, detail, sizeof(detail));
		if (fast == 0) {
			fast_ok++;
			ck_assert_msg(slow == 0, "fast path accepted %.*s: %s",
				      (int)b.len, b.data, detail);
			ck_assert(fk.hi == sk.hi && fk.lo == sk.lo);
		}
		json_decref(ev);
		jscan_result_free(&res);
		buf_free(&b);
	}
	/* and it is a fast path: it takes a fair share of the valid ones */
	ck_assert_uint_gt(fast_ok, 1000);
}
END_TEST

TCase *jscan_tcase(void)
{
	TCase *tc = tcase_create("jscan");
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, corpus_same_verdict_as_jansson);
	tcase_add_test(tc, nesting_limit_matches_jansson);
	tcase_add_test(tc, random_documents_compact_lines_and_spans);
	tcase_add_test(tc, mutated_documents_same_verdict_as_jansson);
	tcase_add_test(tc, fast_check_agrees_with_event_validate);
	return tc;
}
