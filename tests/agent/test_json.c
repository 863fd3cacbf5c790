/* test_json.c — the msgpack-to-JSON encoder (libspool/codec/json.h) and the wake
 * FIFO helpers (spool/spool.h). */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <math.h>
#include <msgpack.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check_main.h"
#include "codec/json.h"
#include <spool/spool.h>

static msgpack_sbuffer sb;
static msgpack_packer pk;

static void mp_begin(void)
{
	msgpack_sbuffer_clear(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
}

static void str(const char *s)
{
	msgpack_pack_str_with_body(&pk, s, strlen(s));
}

static void raw(const void *p, size_t n)
{
	msgpack_pack_str_with_body(&pk, p, n);
}

/* Encodes sb; asserts success and that jansson reads it back. */
static char *enc(const struct spool_json_extra *x)
{
	struct spool_buf out = {0};
	int rc = spool_event_to_json(sb.data, sb.size, x, &out);
	ck_assert_int_eq(rc, 0);
	json_error_t je;
	json_t *j = json_loadb(out.data, out.len, JSON_ALLOW_NUL | JSON_DECODE_INT_AS_REAL, &je);
	ck_assert_msg(j != NULL, "not valid JSON (%s): %s", je.text, out.data);
	json_decref(j);
	return out.data;
}

/* {"v": <value packed by the caller>} → the text of the value. */
#define VALUE_CASE(pack, expect)                                                      \
	do {                                                                          \
		mp_begin();                                                           \
		msgpack_pack_map(&pk, 1);                                             \
		str("v");                                                             \
		pack;                                                                 \
		char *got = enc(NULL);                                                \
		char want[512];                                                       \
		snprintf(want, sizeof(want), "{\"v\":%s}", expect);                   \
		ck_assert_str_eq(got, want);                                          \
		free(got);                                                            \
	} while (0)

START_TEST(every_msgpack_type)
{
	static const char ext300[300] = {1};
	VALUE_CASE(msgpack_pack_nil(&pk), "null");
	VALUE_CASE(msgpack_pack_true(&pk), "true");
	VALUE_CASE(msgpack_pack_false(&pk), "false");
	VALUE_CASE(msgpack_pack_fix_uint8(&pk, 7), "7");
	VALUE_CASE(msgpack_pack_uint8(&pk, 200), "200");
	VALUE_CASE(msgpack_pack_uint16(&pk, 65535), "65535");
	VALUE_CASE(msgpack_pack_fix_uint32(&pk, 4294967295u), "4294967295");
	VALUE_CASE(msgpack_pack_fix_uint64(&pk, UINT64_MAX), "18446744073709551615");
	VALUE_CASE(msgpack_pack_int(&pk, -1), "-1");
	VALUE_CASE(msgpack_pack_fix_int8(&pk, -128), "-128");
	VALUE_CASE(msgpack_pack_fix_int16(&pk, -32768), "-32768");
	VALUE_CASE(msgpack_pack_fix_int32(&pk, INT32_MIN), "-2147483648");
	VALUE_CASE(msgpack_pack_fix_int64(&pk, INT64_MIN), "-9223372036854775808");
	VALUE_CASE(msgpack_pack_double(&pk, 0.1), "0.1");
	VALUE_CASE(msgpack_pack_double(&pk, 1.0), "1.0");
	VALUE_CASE(msgpack_pack_double(&pk, -2.5e-300), "-2.5e-300");
	VALUE_CASE(msgpack_pack_double(&pk, 1e300), "1e+300");
	VALUE_CASE(msgpack_pack_double(&pk, 0.30000000000000004), "0.30000000000000004");
	VALUE_CASE(msgpack_pack_float(&pk, 0.1f), "0.1");
	VALUE_CASE(msgpack_pack_float(&pk, 3.0f), "3.0");
	VALUE_CASE(msgpack_pack_double(&pk, NAN), "null");
	VALUE_CASE(msgpack_pack_double(&pk, INFINITY), "null");
	VALUE_CASE(msgpack_pack_float(&pk, -INFINITY), "null");
	VALUE_CASE(str(""), "\"\"");
	VALUE_CASE(str("plain text"), "\"plain text\"");
	VALUE_CASE((msgpack_pack_bin(&pk, 0)), "\"\"");
	VALUE_CASE((msgpack_pack_bin(&pk, 1), msgpack_pack_bin_body(&pk, "f", 1)), "\"Zg==\"");
	VALUE_CASE((msgpack_pack_bin(&pk, 2), msgpack_pack_bin_body(&pk, "fo", 2)), "\"Zm8=\"");
	VALUE_CASE((msgpack_pack_bin(&pk, 3), msgpack_pack_bin_body(&pk, "foo", 3)), "\"Zm9v\"");
	VALUE_CASE((msgpack_pack_bin(&pk, 6), msgpack_pack_bin_body(&pk, "foobar", 6)), "\"Zm9vYmFy\"");
	VALUE_CASE((msgpack_pack_ext(&pk, 5, 1), msgpack_pack_ext_body(&pk, "abcde", 5)), "null");
	VALUE_CASE((msgpack_pack_ext(&pk, 8, -1), msgpack_pack_ext_body(&pk, "12345678", 8)), "null");
	VALUE_CASE((msgpack_pack_ext(&pk, 300, 3), msgpack_pack_ext_body(&pk, ext300, 300)), "null");
	VALUE_CASE((msgpack_pack_array(&pk, 0)), "[]");
	VALUE_CASE((msgpack_pack_array(&pk, 3), msgpack_pack_int(&pk, 1), str("a"), msgpack_pack_nil(&pk)),
		   "[1,\"a\",null]");
	VALUE_CASE((msgpack_pack_map(&pk, 0)), "{}");
	VALUE_CASE((msgpack_pack_map(&pk, 2), str("a"), msgpack_pack_int(&pk, 1), str("b"), msgpack_pack_array(&pk, 1),
		    msgpack_pack_true(&pk)),
		   "{\"a\":1,\"b\":[true]}");
}
END_TEST

START_TEST(wide_containers_and_strings)
{
	/* array16/32, map16, str16/32 headers */
	mp_begin();
	msgpack_pack_map(&pk, 3);
	str("a");
	msgpack_pack_array(&pk, 70000);
	for (int i = 0; i < 70000; i++)
		msgpack_pack_int(&pk, i % 10);
	str("m");
	msgpack_pack_map(&pk, 20);
	for (int i = 0; i < 20; i++) {
		char k[8];
		snprintf(k, sizeof(k), "k%d", i);
		str(k);
		msgpack_pack_int(&pk, i);
	}
	str("s");
	char *big = malloc(70000);
	memset(big, 'y', 70000);
	raw(big, 70000);
	free(big);
	struct spool_buf out = {0};
	ck_assert_int_eq(spool_event_to_json(sb.data, sb.size, NULL, &out), 0);
	json_t *j = json_loadb(out.data, out.len, 0, NULL);
	ck_assert_ptr_nonnull(j);
	ck_assert_int_eq(json_array_size(json_object_get(j, "a")), 70000);
	ck_assert_int_eq(json_object_size(json_object_get(j, "m")), 20);
	ck_assert_int_eq(json_string_length(json_object_get(j, "s")), 70000);
	json_decref(j);
	spool_buf_free(&out);
}
END_TEST

START_TEST(invalid_utf8_replaced_per_byte)
{
	static const struct {
		const char *in;
		size_t len;
		const char *out;
	} cases[] = {
		{"\xff", 1, "\"\xef\xbf\xbd\""},
		{"a\xfe" "b", 3, "\"a\xef\xbf\xbd" "b\""},
		{"\xe2\x82", 2, "\"\xef\xbf\xbd\xef\xbf\xbd\""},	   /* truncated 3-byte */
		{"\xe2\x82" "A", 3, "\"\xef\xbf\xbd\xef\xbf\xbd" "A\""},   /* cut by ASCII */
		{"\xc0\xaf", 2, "\"\xef\xbf\xbd\xef\xbf\xbd\""},	   /* overlong '/' */
		{"\xe0\x80\xaf", 3, "\"\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\""}, /* overlong */
		{"\xed\xa0\x80", 3, "\"\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\""}, /* surrogate */
		{"\xf4\x90\x80\x80", 4, "\"\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\""}, /* > U+10FFFF */
		{"\x80", 1, "\"\xef\xbf\xbd\""},				   /* lone continuation */
		{"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80", 9, "\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\""}, /* é € 😀 */
		{"\xef\xbf\xbd", 3, "\"\xef\xbf\xbd\""},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct spool_buf out = {0};
		ck_assert_int_eq(spool_json_string(&out, cases[i].in, cases[i].len), 0);
		ck_assert_msg(strcmp(out.data, cases[i].out) == 0, "case %zu: got %s", i, out.data);
		spool_buf_free(&out);
		/* and inside an event, through jansson's strict UTF-8 check */
		mp_begin();
		msgpack_pack_map(&pk, 1);
		str("message");
		raw(cases[i].in, cases[i].len);
		free(enc(NULL));
	}
}
END_TEST

START_TEST(control_characters_escaped)
{
	struct spool_buf out = {0};
	const char in[] = "q\"b\\n\nr\rt\tb\bf\f\x01\x1f\x7f z";
	ck_assert_int_eq(spool_json_string(&out, in, sizeof(in) - 1), 0);
	ck_assert_str_eq(out.data, "\"q\\\"b\\\\n\\nr\\rt\\tb\\bf\\f\\u0001\\u001f\\u007f z\"");
	spool_buf_free(&out);
	/* NUL bytes too */
	ck_assert_int_eq(spool_json_string(&out, "a\0b", 3), 0);
	ck_assert_str_eq(out.data, "\"a\\u0000b\"");
	spool_buf_free(&out);
}
END_TEST

/* A plain byte-at-a-time reference of the string rules. */
static void ref_string(const unsigned char *p, size_t n, char *o)
{
	*o++ = '"';
	for (size_t i = 0; i < n;) {
		unsigned c = p[i];
		size_t k = 0;
		if (c >= 0xc2 && c <= 0xdf && i + 1 < n && (p[i + 1] & 0xc0) == 0x80)
			k = 2;
		else if (c >= 0xe0 && c <= 0xef && i + 2 < n && (p[i + 1] & 0xc0) == 0x80 &&
			 (p[i + 2] & 0xc0) == 0x80 && !(c == 0xe0 && p[i + 1] < 0xa0) && !(c == 0xed && p[i + 1] >= 0xa0))
			k = 3;
		else if (c >= 0xf0 && c <= 0xf4 && i + 3 < n && (p[i + 1] & 0xc0) == 0x80 &&
			 (p[i + 2] & 0xc0) == 0x80 && (p[i + 3] & 0xc0) == 0x80 && !(c == 0xf0 && p[i + 1] < 0x90) &&
			 !(c == 0xf4 && p[i + 1] >= 0x90))
			k = 4;
		if (k) {
			memcpy(o, p + i, k);
			o += k;
			i += k;
			continue;
		}
		if (c >= 0x80) {
			o += sprintf(o, "\xef\xbf\xbd");
		} else if (c == '"' || c == '\\') {
			o += sprintf(o, "\\%c", c);
		} else if (c == '\n') {
			o += sprintf(o, "\\n");
		} else if (c == '\r') {
			o += sprintf(o, "\\r");
		} else if (c == '\t') {
			o += sprintf(o, "\\t");
		} else if (c == '\b') {
			o += sprintf(o, "\\b");
		} else if (c == '\f') {
			o += sprintf(o, "\\f");
		} else if (c < 0x20 || c == 0x7f) {
			o += sprintf(o, "\\u%04x", c);
		} else {
			*o++ = (char)c;
		}
		i++;
	}
	*o++ = '"';
	*o = '\0';
}

/* The fast paths (sixteen and eight bytes at a time) agree with the
 * reference at every alignment and mix of bytes. */
START_TEST(strings_match_reference)
{
	static const unsigned char alphabet[] = "abcXYZ09 ~\"\\\n\t\x01\x1f\x7f\x80\xbf\xc3\xa9\xe2\x82\xac\xed\xf0\x9f\xf4\xff";
	unsigned seed = 99;
	for (int iter = 0; iter < 200000; iter++) {
		unsigned char in[80];
		size_t n = (size_t)rand_r(&seed) % sizeof(in);
		bool plain = iter % 3 == 0;
		for (size_t i = 0; i < n; i++)
			in[i] = plain && rand_r(&seed) % 16 ? (unsigned char)('a' + rand_r(&seed) % 26)
							     : alphabet[(size_t)rand_r(&seed) % (sizeof(alphabet) - 1)];
		char want[80 * 6 + 8];
		ref_string(in, n, want);
		struct spool_buf out = {0};
		ck_assert_int_eq(spool_json_string(&out, in, n), 0);
		ck_assert_msg(strcmp(out.data, want) == 0, "iteration %d differs", iter);
		spool_buf_free(&out);
	}
}
END_TEST

static int json_depth(json_t *j)
{
	if (json_is_array(j)) {
		int d = 0;
		for (size_t i = 0; i < json_array_size(j); i++) {
			int c = json_depth(json_array_get(j, i));
			d = c > d ? c : d;
		}
		return d + 1;
	}
	if (json_is_object(j)) {
		int d = 0;
		const char *k;
		json_t *v;
		json_object_foreach(j, k, v)
		{
			int c = json_depth(v);
			d = c > d ? c : d;
		}
		return d + 1;
	}
	return 0;
}

START_TEST(deep_nesting_capped)
{
	int levels[] = {62, 63, 64, 100, 5000};
	for (size_t t = 0; t < sizeof(levels) / sizeof(levels[0]); t++) {
		int n = levels[t];
		mp_begin();
		msgpack_pack_map(&pk, 2);
		str("deep");
		for (int i = 0; i < n; i++) {
			if (i % 2) {
				msgpack_pack_map(&pk, 1);
				str("k");
			} else {
				msgpack_pack_array(&pk, 1);
			}
		}
		msgpack_pack_int(&pk, 42);
		str("after");
		str("still here");
		struct spool_buf out = {0};
		ck_assert_int_eq(spool_event_to_json(sb.data, sb.size, NULL, &out), 0);
		json_t *j = json_loadb(out.data, out.len, 0, NULL);
		ck_assert_ptr_nonnull(j);
		/* the event map is depth 1; containers below depth 64 become null */
		int want = 1 + n < SPOOL_JSON_MAX_DEPTH ? 1 + n : SPOOL_JSON_MAX_DEPTH;
		ck_assert_int_eq(json_depth(j), want);
		ck_assert_str_eq(json_string_value(json_object_get(j, "after")), "still here");
		ck_assert(n + 1 <= SPOOL_JSON_MAX_DEPTH || strstr(out.data, "null") != NULL);
		json_decref(j);
		spool_buf_free(&out);
	}
}
END_TEST

START_TEST(non_string_keys)
{
	mp_begin();
	msgpack_pack_map(&pk, 4);
	msgpack_pack_int(&pk, 5);
	str("five");
	msgpack_pack_nil(&pk);
	msgpack_pack_true(&pk);
	msgpack_pack_array(&pk, 2);
	msgpack_pack_int(&pk, 1);
	str("x\"y");
	msgpack_pack_int(&pk, 0);
	msgpack_pack_double(&pk, 1.5);
	str("f");
	char *got = enc(NULL);
	ck_assert_str_eq(got, "{\"5\":\"five\",\"null\":true,\"[1,\\\"x\\\\\\\"y\\\"]\":0,\"1.5\":\"f\"}");
	free(got);
}
END_TEST

/* Maps used as keys of maps used as keys...: each level would escape the
 * text of the one within again and double it (the fuzzer's 81 bytes asked
 * for 2 GiB).  A container key inside a key's text is written as "null". */
START_TEST(nested_container_keys_stay_small)
{
	mp_begin();
	for (int i = 0; i < 40; i++)
		msgpack_pack_map(&pk, 1);
	msgpack_pack_nil(&pk);
	for (int i = 0; i < 40; i++)
		msgpack_pack_nil(&pk);
	char *got = enc(NULL);
	ck_assert_msg(strlen(got) < 256, "%zu bytes of JSON for 81 bytes of msgpack", strlen(got));
	ck_assert_str_eq(got, "{\"{\\\"null\\\":null}\":null}");
	free(got);

	/* one level is still written as its JSON text */
	mp_begin();
	msgpack_pack_map(&pk, 1);
	msgpack_pack_map(&pk, 1);
	str("k");
	msgpack_pack_int(&pk, 1);
	str("v");
	got = enc(NULL);
	ck_assert_str_eq(got, "{\"{\\\"k\\\":1}\":\"v\"}");
	free(got);
}
END_TEST

/* The event of docs/event-format.md, with or without metadata and c_client. */
static void pack_event(int meta_kind)
{
	mp_begin();
	msgpack_pack_map(&pk, meta_kind ? 3 : 2);
	str("message");
	str("hi");
	if (meta_kind) {
		str("metadata");
		switch (meta_kind) {
		case 1: /* user keys, no c_client */
			msgpack_pack_map(&pk, 1);
			str("user");
			msgpack_pack_int(&pk, 1);
			break;
		case 2: /* c_client present, with a stale spool_seq */
			msgpack_pack_map(&pk, 2);
			str("c_client");
			msgpack_pack_map(&pk, 2);
			str("spool_seq");
			msgpack_pack_int(&pk, 999);
			str("pid");
			msgpack_pack_int(&pk, 12);
			str("delivery");
			str("old");
			break;
		case 3: /* not a map */
			str("just text");
			break;
		case 4: /* empty map */
			msgpack_pack_map(&pk, 0);
			break;
		}
	}
	str("client_event_id");
	str("01HX0000000000000000000000");
}

START_TEST(spool_seq_injection)
{
	struct spool_json_extra x = {.flags = SPOOL_JSON_SEQ, .spool_seq = 77};
	static const char *want[] = {
		"{\"message\":\"hi\",\"client_event_id\":\"01HX0000000000000000000000\","
		"\"metadata\":{\"c_client\":{\"spool_seq\":77}}}",
		"{\"message\":\"hi\",\"metadata\":{\"user\":1,\"c_client\":{\"spool_seq\":77}},"
		"\"client_event_id\":\"01HX0000000000000000000000\"}",
		"{\"message\":\"hi\",\"metadata\":{\"c_client\":{\"pid\":12,\"spool_seq\":77},\"delivery\":\"old\"},"
		"\"client_event_id\":\"01HX0000000000000000000000\"}",
		"{\"message\":\"hi\",\"metadata\":\"just text\",\"client_event_id\":\"01HX0000000000000000000000\"}",
		"{\"message\":\"hi\",\"metadata\":{\"c_client\":{\"spool_seq\":77}},"
		"\"client_event_id\":\"01HX0000000000000000000000\"}",
	};
	for (int k = 0; k < 5; k++) {
		pack_event(k);
		char *got = enc(&x);
		ck_assert_msg(strcmp(got, want[k]) == 0, "case %d: %s", k, got);
		free(got);
	}
	/* nothing injected without extra */
	pack_event(2);
	char *got = enc(NULL);
	ck_assert(strstr(got, "\"spool_seq\":999"));
	free(got);
}
END_TEST

START_TEST(delivery_injection)
{
	struct spool_json_extra x = {
		.flags = SPOOL_JSON_SEQ | SPOOL_JSON_DELIVERY, .spool_seq = 5, .attempts = 3, .spooled_seconds = 1.5};
	pack_event(2);
	char *got = enc(&x);
	ck_assert_str_eq(got, "{\"message\":\"hi\",\"metadata\":{\"c_client\":{\"pid\":12,\"spool_seq\":5},"
			      "\"delivery\":{\"attempts\":3,\"spooled_seconds\":1.5}},"
			      "\"client_event_id\":\"01HX0000000000000000000000\"}");
	free(got);
	pack_event(0);
	got = enc(&x);
	ck_assert(strstr(got, "\"metadata\":{\"c_client\":{\"spool_seq\":5},\"delivery\":{\"attempts\":3,"));
	free(got);
}
END_TEST

/* An event with metadata.c_client {"pid": pid, "host": host}, and a
 * stored spool_seq when stale. */
static void pack_cclient_event(int pid, const char *host, bool stale)
{
	mp_begin();
	msgpack_pack_map(&pk, 2);
	str("message");
	str("m");
	str("metadata");
	msgpack_pack_map(&pk, 1);
	str("c_client");
	msgpack_pack_map(&pk, stale ? 3 : 2);
	str("pid");
	msgpack_pack_int(&pk, pid);
	if (stale) {
		str("spool_seq");
		msgpack_pack_int(&pk, 1);
	}
	str("host");
	str(host);
}

START_TEST(memo_gives_the_same_text)
{
	/* the encoder's memo of the last c_client block: every event's text
	 * is the one encoded without it, whether the block repeats or not */
	static const struct {
		int pid;
		const char *host;
		bool stale;
		int kind; /* -1: pack_cclient_event(); else pack_event(kind) */
	} seq[] = {
	    {1, "a", false, -1}, {1, "a", false, -1}, {2, "a", false, -1}, {2, "a", true, -1},
	    {2, "a", true, -1},	 {0, NULL, false, 2}, {0, NULL, false, 4}, {0, NULL, false, 2},
	    {1, "a", false, -1}, {1, "ab", false, -1},
	};
	struct spool_json_memo memo = {0};
	for (size_t i = 0; i < sizeof(seq) / sizeof(seq[0]); i++) {
		for (unsigned flags = SPOOL_JSON_SEQ; flags <= (SPOOL_JSON_SEQ | SPOOL_JSON_DELIVERY);
		     flags += SPOOL_JSON_DELIVERY) {
			if (seq[i].kind < 0)
				pack_cclient_event(seq[i].pid, seq[i].host, seq[i].stale);
			else
				pack_event(seq[i].kind);
			struct spool_json_extra x = {.flags = flags, .spool_seq = 100 + i, .attempts = 1,
						     .spooled_seconds = 0.5};
			char *want = enc(&x);
			x.memo = &memo;
			char *got = enc(&x);
			ck_assert_msg(strcmp(got, want) == 0, "event %zu flags %u: %s, not %s", i, flags, got,
				      want);
			free(got);
			free(want);
		}
	}
	/* the memo is used: a block just encoded is taken from it */
	pack_cclient_event(7, "h", false);
	struct spool_json_extra x = {.flags = SPOOL_JSON_SEQ, .spool_seq = 1, .memo = &memo};
	free(enc(&x));
	ck_assert_uint_gt(memo.raw_len, 0);
	char *p = memchr(memo.json, '7', memo.json_len);
	ck_assert_ptr_nonnull(p);
	*p = '8';
	char *got = enc(&x);
	ck_assert_msg(strstr(got, "\"pid\":8") != NULL, "memo not used: %s", got);
	free(got);
}
END_TEST

/* The delivery member's spooled_seconds, as the drain computes it (whole
 * microseconds / 1e6), reads as the shortest %g text that reads back, the
 * float rule of every other number. */
START_TEST(spooled_seconds_text)
{
	static const long long us[] = {0,	  1,	     50,	99,	    100,	  101,
				       250000,	  999999,    1000000,	1000001,    1500000,	  86400000000,
				       123456789, 987654321, 1000000000001, 999999999999999, 1000000000000000};
	for (size_t i = 0; i < sizeof(us) / sizeof(us[0]); i++) {
		double d = (double)us[i] / 1e6;
		char ref[40];
		for (int prec = 15; prec <= 17; prec++) {
			snprintf(ref, sizeof(ref), "%.*g", prec, d);
			if (strtod(ref, NULL) == d)
				break;
		}
		if (!strpbrk(ref, ".eEn"))
			strcat(ref, ".0");
		mp_begin();
		msgpack_pack_map(&pk, 1);
		str("message");
		str("m");
		struct spool_json_extra x = {
		    .flags = SPOOL_JSON_SEQ | SPOOL_JSON_DELIVERY, .spool_seq = 1, .attempts = 1, .spooled_seconds = d};
		char *got = enc(&x);
		char want[200];
		snprintf(want, sizeof(want), "\"spooled_seconds\":%s}", ref);
		ck_assert_msg(strstr(got, want) != NULL, "%lld us: %s lacks %s", us[i], got, want);
		free(got);
	}
}
END_TEST

START_TEST(malformed_input_refused)
{
	struct spool_buf out = {0};
	spool_buf_append(&out, "prefix", 6);
	static const struct {
		const char *b;
		size_t n;
	} bad[] = {
		{"", 0},
		{"\x90", 1},		  /* array, not a map */
		{"\xa1" "a", 2},	  /* string */
		{"\x81", 1},		  /* map of 1, nothing in it */
		{"\x81\xa1" "a", 3},	  /* value missing */
		{"\x81\xa1" "a\xc1", 4}, /* 0xc1 is never used */
		{"\x81\xa1" "a\xa5" "ab", 6}, /* string cut short */
		{"\x80\x80", 2},	  /* trailing bytes */
		{"\xdf\xff\xff\xff\xff", 5}, /* a huge count with nothing behind */
		{"\x81\xa1" "a\xdd\x7f\xff\xff\xff\x01", 9},
		{"\x81\xa1" "a\xcb\x00\x00", 6}, /* float cut short */
		{"\x81\xa1" "a\xc6\xff\xff\xff\xff", 8},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		ck_assert_msg(spool_event_to_json(bad[i].b, bad[i].n, NULL, &out) == -EINVAL, "case %zu", i);
		ck_assert_int_eq(out.len, 6);
		ck_assert_str_eq(out.data, "prefix");
	}
	ck_assert_int_eq(spool_event_to_json("\x80", 1, NULL, &out), 0);
	ck_assert_str_eq(out.data, "prefix{}");
	spool_buf_free(&out);
}
END_TEST

/* Random and mutated inputs: -EINVAL, or JSON that jansson accepts. */
START_TEST(fuzz_never_invalid_json)
{
	unsigned seed = 12345;
	struct spool_json_extra x = {.flags = SPOOL_JSON_SEQ, .spool_seq = 1};
	int ok = 0;
	for (int iter = 0; iter < 20000; iter++) {
		mp_begin();
		pack_event(iter % 5);
		unsigned char buf[256];
		size_t n = sb.size < sizeof(buf) ? sb.size : sizeof(buf);
		memcpy(buf, sb.data, n);
		int muts = 1 + rand_r(&seed) % 4;
		for (int m = 0; m < muts; m++)
			buf[rand_r(&seed) % n] = (unsigned char)rand_r(&seed);
		if (iter % 7 == 0)
			n = (size_t)rand_r(&seed) % (n + 1);
		struct spool_buf out = {0};
		int rc = spool_event_to_json(buf, n, iter % 2 ? &x : NULL, &out);
		ck_assert(rc == 0 || rc == -EINVAL);
		if (rc == 0) {
			json_error_t je;
			json_t *j = json_loadb(out.data, out.len, JSON_ALLOW_NUL | JSON_DECODE_INT_AS_REAL, &je);
			/* jansson cannot hold a NUL inside an object key; \u0000
			 * there is valid JSON all the same */
			ck_assert_msg(j != NULL || strstr(je.text, "NUL byte in object key"), "iteration %d: %s",
				      iter, je.text);
			json_decref(j);
			ok++;
		}
		spool_buf_free(&out);
	}
	ck_assert_int_gt(ok, 100);
}
END_TEST

START_TEST(get_str_member)
{
	pack_event(2);
	const char *v;
	size_t n;
	ck_assert_int_eq(spool_event_get_str(sb.data, sb.size, "client_event_id", &v, &n), 0);
	ck_assert_int_eq(n, 26);
	ck_assert(memcmp(v, "01HX0000000000000000000000", 26) == 0);
	ck_assert_int_eq(spool_event_get_str(sb.data, sb.size, "metadata", &v, &n), SPOOL_ENOTFOUND);
	ck_assert_int_eq(spool_event_get_str(sb.data, sb.size, "nope", &v, &n), SPOOL_ENOTFOUND);
	ck_assert_int_eq(spool_event_get_str("\x91", 1, "nope", &v, &n), -EINVAL);
}
END_TEST

START_TEST(wake_fifo)
{
	char dir[] = "/tmp/agent-test-wake-XXXXXX";
	ck_assert_ptr_nonnull(mkdtemp(dir));
	/* no FIFO, no agent: not an error */
	ck_assert_int_eq(spool_wake_agent(dir), 0);
	int fd = spool_wake_open(dir);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(spool_wake_drain(fd), 0);
	ck_assert_int_eq(spool_wake_agent(dir), 0);
	ck_assert_int_eq(spool_wake_agent(dir), 0);
	ck_assert_int_eq(spool_wake_drain(fd), 2);
	/* a full pipe never blocks the producer */
	for (int i = 0; i < 100000; i++)
		ck_assert_int_eq(spool_wake_agent(dir), 0);
	ck_assert_int_gt(spool_wake_drain(fd), 0);
	close(fd);
	/* the FIFO stays; no reader now: still 0 at once (ENXIO) */
	ck_assert_int_eq(spool_wake_agent(dir), 0);
	char path[128];
	snprintf(path, sizeof(path), "%s/wake", dir);
	unlink(path);
	/* a plain file in its place is refused by the agent side */
	close(open(path, O_CREAT | O_WRONLY, 0600));
	ck_assert_int_eq(spool_wake_open(dir), -EEXIST);
	unlink(path);
	rmdir(dir);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("agent-json");
	TCase *tc = tcase_create("json");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, every_msgpack_type);
	tcase_add_test(tc, wide_containers_and_strings);
	tcase_add_test(tc, invalid_utf8_replaced_per_byte);
	tcase_add_test(tc, control_characters_escaped);
	tcase_add_test(tc, strings_match_reference);
	tcase_add_test(tc, deep_nesting_capped);
	tcase_add_test(tc, non_string_keys);
	tcase_add_test(tc, nested_container_keys_stay_small);
	tcase_add_test(tc, spool_seq_injection);
	tcase_add_test(tc, delivery_injection);
	tcase_add_test(tc, memo_gives_the_same_text);
	tcase_add_test(tc, spooled_seconds_text);
	tcase_add_test(tc, malformed_input_refused);
	tcase_add_test(tc, fuzz_never_invalid_json);
	tcase_add_test(tc, get_str_member);
	tcase_add_test(tc, wake_fifo);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	msgpack_sbuffer_init(&sb);
	int rc = tc_run(suite());
	msgpack_sbuffer_destroy(&sb);
	return rc;
}
