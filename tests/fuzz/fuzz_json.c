/* fuzz_json.c — the codec's msgpack-to-JSON encoder, spool_event_to_json()
 * (libspool/codec/json.h).
 *
 * The whole input is the msgpack event.  It is encoded three times: with no
 * extra, with SPOOL_JSON_SEQ, and with SPOOL_JSON_SEQ | SPOOL_JSON_DELIVERY
 * (values taken from the input's length, one of them a NaN now and then).
 * Aborts when:
 *   - an accepted input gives output that the strict RFC 8259 + UTF-8
 *     checker below refuses, or that jansson's json_loadb() refuses (except
 *     a \u0000 inside an object key, which jansson does not support)
 *     (jansson checks the UTF-8 too;
 *     \u0000 is valid JSON, so JSON_ALLOW_NUL; integers past
 *     INT64_MAX are valid JSON, so JSON_DECODE_INT_AS_REAL) or that is not one JSON object;
 *   - with an extra, metadata.c_client.spool_seq or metadata.delivery is
 *     missing although the stored metadata (and c_client) are maps or absent;
 *   - the three calls disagree on accepting the input;
 *   - a refused input changed the buffer (it must be left as it was);
 *   - the buffer is not NUL-terminated after the call. */
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec/json.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* ---- a strict RFC 8259 checker, for what jansson cannot load although it
 * is valid JSON (a \u0000 in an object key) ---- */

struct jv {
	const unsigned char *p, *end;
	int depth;
};

static void jv_ws(struct jv *v)
{
	while (v->p < v->end && (*v->p == ' ' || *v->p == '\t' || *v->p == '\n' || *v->p == '\r'))
		v->p++;
}

static bool jv_lit(struct jv *v, const char *s)
{
	size_t n = strlen(s);
	if ((size_t)(v->end - v->p) < n || memcmp(v->p, s, n) != 0)
		return false;
	v->p += n;
	return true;
}

static bool jv_hex(unsigned char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

static bool jv_string(struct jv *v)
{
	if (v->p >= v->end || *v->p != '"')
		return false;
	v->p++;
	while (v->p < v->end) {
		unsigned c = *v->p;
		if (c == '"') {
			v->p++;
			return true;
		}
		if (c < 0x20)
			return false;
		if (c == '\\') {
			if (++v->p >= v->end)
				return false;
			c = *v->p++;
			if (c == 'u') {
				if (v->end - v->p < 4)
					return false;
				for (int i = 0; i < 4; i++)
					if (!jv_hex(v->p[i]))
						return false;
				v->p += 4;
			} else if (!strchr("\"\\/bfnrt", (int)c) || c == 0) {
				return false;
			}
			continue;
		}
		if (c < 0x80) {
			v->p++;
			continue;
		}
		/* UTF-8: well-formed, shortest form, no surrogates, <= U+10FFFF */
		size_t n = (size_t)(v->end - v->p);
		const unsigned char *q = v->p;
		size_t k;
		if (c >= 0xc2 && c <= 0xdf)
			k = 2;
		else if (c >= 0xe0 && c <= 0xef)
			k = 3;
		else if (c >= 0xf0 && c <= 0xf4)
			k = 4;
		else
			return false;
		if (n < k)
			return false;
		for (size_t i = 1; i < k; i++)
			if ((q[i] & 0xc0) != 0x80)
				return false;
		if ((c == 0xe0 && q[1] < 0xa0) || (c == 0xed && q[1] >= 0xa0) ||
		    (c == 0xf0 && q[1] < 0x90) || (c == 0xf4 && q[1] >= 0x90))
			return false;
		v->p += k;
	}
	return false;
}

static bool jv_digits(struct jv *v)
{
	const unsigned char *s = v->p;
	while (v->p < v->end && *v->p >= '0' && *v->p <= '9')
		v->p++;
	return v->p > s;
}

static bool jv_number(struct jv *v)
{
	if (v->p < v->end && *v->p == '-')
		v->p++;
	if (v->p < v->end && *v->p == '0')
		v->p++;
	else if (!jv_digits(v))
		return false;
	if (v->p < v->end && *v->p == '.') {
		v->p++;
		if (!jv_digits(v))
			return false;
	}
	if (v->p < v->end && (*v->p == 'e' || *v->p == 'E')) {
		v->p++;
		if (v->p < v->end && (*v->p == '+' || *v->p == '-'))
			v->p++;
		if (!jv_digits(v))
			return false;
	}
	return true;
}

static bool jv_value(struct jv *v)
{
	jv_ws(v);
	if (v->p >= v->end)
		return false;
	unsigned c = *v->p;
	if (c == '"')
		return jv_string(v);
	if (c == '{' || c == '[') {
		if (++v->depth > 10000)
			return false;
		unsigned close = c == '{' ? '}' : ']';
		v->p++;
		jv_ws(v);
		if (v->p < v->end && *v->p == close) {
			v->p++;
			v->depth--;
			return true;
		}
		for (;;) {
			if (c == '{') {
				jv_ws(v);
				if (!jv_string(v))
					return false;
				jv_ws(v);
				if (v->p >= v->end || *v->p++ != ':')
					return false;
			}
			if (!jv_value(v))
				return false;
			jv_ws(v);
			if (v->p >= v->end)
				return false;
			if (*v->p == ',') {
				v->p++;
				continue;
			}
			if (*v->p++ != close)
				return false;
			v->depth--;
			return true;
		}
	}
	if (c == 't')
		return jv_lit(v, "true");
	if (c == 'f')
		return jv_lit(v, "false");
	if (c == 'n')
		return jv_lit(v, "null");
	return jv_number(v);
}

/* Whether s[0, n) is exactly one JSON object, strictly by RFC 8259. */
static bool json_object_text_ok(const char *s, size_t n)
{
	struct jv v = {(const unsigned char *)s, (const unsigned char *)s + n, 0};
	jv_ws(&v);
	if (v.p >= v.end || *v.p != '{' || !jv_value(&v))
		return false;
	jv_ws(&v);
	return v.p == v.end;
}

static void fail(const char *what, const struct spool_buf *out, size_t from)
{
	fprintf(stderr, "fuzz_json: %s\n", what);
	if (out && out->data)
		fprintf(stderr, "output: %.*s\n", (int)(out->len - from > 2000 ? 2000 : out->len - from),
			out->data + from);
	abort();
}

static int encode(const uint8_t *data, size_t size, const struct spool_json_extra *x)
{
	static const char prefix[] = "[prefix]";
	struct spool_buf out = {0};
	if (spool_buf_append(&out, prefix, sizeof(prefix) - 1))
		return -ENOMEM;
	int rc = spool_event_to_json(data, size, x, &out);
	if (!out.data || out.data[out.len] != '\0')
		fail("buffer not NUL-terminated", NULL, 0);
	if (rc != 0) {
		if (rc != -EINVAL && rc != -ENOMEM)
			fail("unexpected return code", NULL, 0);
		if (out.len != sizeof(prefix) - 1 || memcmp(out.data, prefix, out.len) != 0)
			fail("a refused input changed the buffer", &out, 0);
		spool_buf_free(&out);
		return rc;
	}
	if (memcmp(out.data, prefix, sizeof(prefix) - 1) != 0)
		fail("the encoder overwrote what the buffer held", &out, 0);
	size_t from = sizeof(prefix) - 1;
	json_error_t err;
	json_t *j = json_loadb(out.data + from, out.len - from, JSON_DECODE_ANY | JSON_ALLOW_NUL | JSON_DECODE_INT_AS_REAL,
			       &err);
	bool strict_ok = json_object_text_ok(out.data + from, out.len - from);
	if (!strict_ok)
		fail("output is not one valid JSON object (strict check)", &out, from);
	if (!j) {
		/* the one thing jansson refuses in valid JSON */
		if (strstr(err.text, "NUL byte in object key") != NULL) {
			spool_buf_free(&out);
			return 0;
		}
		fprintf(stderr, "jansson: %s at %d\n", err.text, err.position);
		fail("output is not valid JSON", &out, from);
	}
	if (!json_is_object(j))
		fail("output is not a JSON object", &out, from);
	if (x && x->flags) {
		/* jansson keeps the last of duplicate keys; the encoder adds its
		 * members after the stored ones, so the last is the added one. */
		json_t *meta = json_object_get(j, "metadata");
		if (!meta)
			fail("metadata not added", &out, from);
		if (json_is_object(meta)) {
			json_t *cc = json_object_get(meta, "c_client");
			if ((x->flags & SPOOL_JSON_SEQ) && json_is_object(cc) &&
			    !json_is_number(json_object_get(cc, "spool_seq")))
				fail("metadata.c_client.spool_seq missing", &out, from);
			if ((x->flags & SPOOL_JSON_SEQ) && !cc)
				fail("metadata.c_client missing", &out, from);
			if ((x->flags & SPOOL_JSON_DELIVERY) &&
			    !json_is_object(json_object_get(meta, "delivery")))
				fail("metadata.delivery missing", &out, from);
		}
	}
	json_decref(j);
	spool_buf_free(&out);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct spool_json_extra seq = {.flags = SPOOL_JSON_SEQ, .spool_seq = UINT64_MAX - size};
	struct spool_json_extra all = {
		.flags = SPOOL_JSON_SEQ | SPOOL_JSON_DELIVERY,
		.spool_seq = size,
		.attempts = (uint32_t)size * 2654435761u,
		.spooled_seconds = size % 7 == 3 ? NAN : (double)size / 3.0,
	};
	int a = encode(data, size, NULL);
	int b = encode(data, size, &seq);
	int c = encode(data, size, &all);
	if ((a == 0) != (b == 0) || (a == 0) != (c == 0))
		fail("the extras changed whether the input is accepted", NULL, 0);

	/* spool_event_get_str must not read outside the input either */
	const char *v;
	size_t vl;
	if (size && spool_event_get_str(data, size, "message", &v, &vl) == 0 &&
	    (v < (const char *)data || v + vl > (const char *)data + size))
		fail("spool_event_get_str points outside the input", NULL, 0);
	return 0;
}
