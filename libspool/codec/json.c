/* json.c — the streaming msgpack-to-JSON encoder (docs/event-format.md).
 *
 * One pass over the stored bytes; the output buffer is the only allocation.
 * Recursion is bounded by SPOOL_JSON_MAX_DEPTH; deeper containers are
 * skipped iteratively and written as null. */
#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

#include "codec/json.h"

/* ---- the buffer ---- */

void spool_buf_init(struct spool_buf *b)
{
	if (b)
		*b = (struct spool_buf){0};
}

void spool_buf_init_with(struct spool_buf *b, void *storage, size_t cap)
{
	*b = (struct spool_buf){.data = storage, .cap = cap, .borrowed = true};
	if (cap)
		b->data[0] = '\0';
}

int spool_buf_reserve(struct spool_buf *b, size_t extra)
{
	if (!b)
		return -EINVAL;
	if (extra > SIZE_MAX / 2 - b->len)
		return -ENOMEM;
	size_t need = b->len + extra + 1;
	if (need <= b->cap)
		return 0;
	size_t cap = b->cap ? b->cap : 256;
	while (cap < need)
		cap *= 2;
	char *p;
	if (b->borrowed) {
		if (!(p = malloc(cap)))
			return -ENOMEM;
		if (b->cap)
			memcpy(p, b->data, b->len + 1);
		else
			p[0] = '\0';
		b->borrowed = false;
	} else if (!(p = realloc(b->data, cap))) {
		return -ENOMEM;
	}
	b->data = p;
	b->cap = cap;
	return 0;
}

int spool_buf_append(struct spool_buf *b, const void *p, size_t n)
{
	int rc = spool_buf_reserve(b, n);
	if (rc)
		return rc;
	if (n)
		memcpy(b->data + b->len, p, n);
	b->len += n;
	b->data[b->len] = '\0';
	return 0;
}

void spool_buf_free(struct spool_buf *b)
{
	if (!b)
		return;
	if (!b->borrowed)
		free(b->data);
	*b = (struct spool_buf){0};
}

/* ---- output helpers (callers reserve first where it pays) ---- */

#define PUT_LIT(b, s) spool_buf_append((b), (s), sizeof(s) - 1)

static int put_char(struct spool_buf *b, char c)
{
	if (b->len + 1 >= b->cap && spool_buf_reserve(b, 1))
		return -ENOMEM;
	b->data[b->len++] = c;
	b->data[b->len] = '\0';
	return 0;
}

static int put_u64(struct spool_buf *b, uint64_t v, bool neg)
{
	char tmp[24];
	size_t i = sizeof(tmp);
	do {
		tmp[--i] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	if (neg)
		tmp[--i] = '-';
	return spool_buf_append(b, tmp + i, sizeof(tmp) - i);
}

static int put_i64(struct spool_buf *b, int64_t v)
{
	if (v < 0)
		return put_u64(b, (uint64_t)0 - (uint64_t)v, true);
	return put_u64(b, (uint64_t)v, false);
}

/* Shortest %g form that reads back as the same value; ".0" added to an
 * integral-looking result so a float stays a float. */
static int put_double(struct spool_buf *b, double d, bool single)
{
	if (!isfinite(d))
		return PUT_LIT(b, "null");
	char tmp[40];
	int lo = single ? 6 : 15, hi = single ? 9 : 17;
	for (int prec = lo; prec <= hi; prec++) {
		snprintf(tmp, sizeof(tmp), "%.*g", prec, d);
		if (single ? (strtof(tmp, NULL) == (float)d) : (strtod(tmp, NULL) == d))
			break;
	}
	if (!strpbrk(tmp, ".eEn"))
		strcat(tmp, ".0");
	return spool_buf_append(b, tmp, strlen(tmp));
}

/* 0: copy, 1: escape, 2: non-ASCII (check UTF-8). */
static const unsigned char char_class[256] = {
	1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, /* 0x00 */
	1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, /* 0x10 */
	0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 0x20 '"' */
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, /* 0x50 '\\' */
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, /* 0x7f */
	2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
	2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
	2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
	2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
	2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
	2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
	2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
	2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
};

/* Length of the valid UTF-8 sequence at p (1..4), or 0 if the byte at p
 * does not start one (overlong forms, surrogates and code points above
 * U+10FFFF are invalid). */
static size_t utf8_valid(const unsigned char *p, size_t n)
{
	unsigned c = p[0];
	if (c >= 0xc2 && c <= 0xdf)
		return n >= 2 && (p[1] & 0xc0) == 0x80 ? 2 : 0;
	if (c >= 0xe0 && c <= 0xef) {
		if (n < 3 || (p[1] & 0xc0) != 0x80 || (p[2] & 0xc0) != 0x80)
			return 0;
		if (c == 0xe0 && p[1] < 0xa0)
			return 0; /* overlong */
		if (c == 0xed && p[1] >= 0xa0)
			return 0; /* surrogate */
		return 3;
	}
	if (c >= 0xf0 && c <= 0xf4) {
		if (n < 4 || (p[1] & 0xc0) != 0x80 || (p[2] & 0xc0) != 0x80 || (p[3] & 0xc0) != 0x80)
			return 0;
		if (c == 0xf0 && p[1] < 0x90)
			return 0; /* overlong */
		if (c == 0xf4 && p[1] >= 0x90)
			return 0; /* above U+10FFFF */
		return 4;
	}
	return 0;
}

#define ONES 0x0101010101010101ull
#define HIGHS 0x8080808080808080ull

/* Nonzero when one of the 8 bytes of x may need escaping or a UTF-8 check:
 * below 0x20, '"', '\\', 0x7f or above.  Exact for "none". */
static inline uint64_t needs_look8(uint64_t x)
{
	uint64_t lt20 = (x - ONES * 0x20) & ~x;
	uint64_t q = x ^ (ONES * '"'), bs = x ^ (ONES * '\\');
	uint64_t zq = (q - ONES) & ~q, zbs = (bs - ONES) & ~bs;
	uint64_t hi = x | (x + ONES); /* 0x7f..0xff set the high bit */
	return (lt20 | zq | zbs | hi) & HIGHS;
}

int spool_json_string(struct spool_buf *b, const void *s, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	const unsigned char *p = s, *end = p + n;
	/* worst case: every byte becomes \u00XX (6) or U+FFFD (3) */
	if (n > (SIZE_MAX - 8) / 6 || spool_buf_reserve(b, n * 6 + 2))
		return -ENOMEM;
	char *o = b->data + b->len;
	*o++ = '"';
	while (p < end) {
#ifdef __SSE2__
		/* sixteen plain bytes at a time while none needs a look: the
		 * signed compare with 0x20 also takes 0x80 and above */
		while (end - p >= 16) {
			__m128i x = _mm_loadu_si128((const __m128i *)(const void *)p);
			__m128i look = _mm_or_si128(
			    _mm_or_si128(_mm_cmplt_epi8(x, _mm_set1_epi8(0x20)),
					 _mm_cmpeq_epi8(x, _mm_set1_epi8('"'))),
			    _mm_or_si128(_mm_cmpeq_epi8(x, _mm_set1_epi8('\\')),
					 _mm_cmpeq_epi8(x, _mm_set1_epi8(0x7f))));
			if (_mm_movemask_epi8(look))
				break;
			_mm_storeu_si128((__m128i *)(void *)o, x);
			o += 16;
			p += 16;
		}
#endif
		/* eight plain bytes at a time while none needs a look */
		while (end - p >= 8) {
			uint64_t x;
			memcpy(&x, p, 8);
			if (needs_look8(x))
				break;
			memcpy(o, p, 8);
			o += 8;
			p += 8;
		}
		if (p == end)
			break;
		if (char_class[*p] == 0) {
			*o++ = (char)*p++;
			continue;
		}
		unsigned c = *p;
		if (char_class[c] == 2) {
			size_t k = utf8_valid(p, (size_t)(end - p));
			if (k) {
				memcpy(o, p, k);
				o += k;
				p += k;
			} else {
				memcpy(o, "\xef\xbf\xbd", 3);
				o += 3;
				p++;
			}
			continue;
		}
		*o++ = '\\';
		switch (c) {
		case '"':
			*o++ = '"';
			break;
		case '\\':
			*o++ = '\\';
			break;
		case '\n':
			*o++ = 'n';
			break;
		case '\r':
			*o++ = 'r';
			break;
		case '\t':
			*o++ = 't';
			break;
		case '\b':
			*o++ = 'b';
			break;
		case '\f':
			*o++ = 'f';
			break;
		default:
			memcpy(o, "u00", 3);
			o[3] = hex[c >> 4];
			o[4] = hex[c & 15];
			o += 5;
		}
		p++;
	}
	*o++ = '"';
	*o = '\0';
	b->len = (size_t)(o - b->data);
	return 0;
}

static int put_base64(struct spool_buf *b, const unsigned char *p, size_t n)
{
	static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	if (n > SIZE_MAX / 2 || spool_buf_reserve(b, (n + 2) / 3 * 4 + 2))
		return -ENOMEM;
	char *o = b->data + b->len;
	*o++ = '"';
	size_t i = 0;
	for (; i + 3 <= n; i += 3) {
		unsigned v = (unsigned)p[i] << 16 | (unsigned)p[i + 1] << 8 | p[i + 2];
		*o++ = tab[v >> 18];
		*o++ = tab[(v >> 12) & 63];
		*o++ = tab[(v >> 6) & 63];
		*o++ = tab[v & 63];
	}
	if (n - i == 1) {
		unsigned v = (unsigned)p[i] << 16;
		*o++ = tab[v >> 18];
		*o++ = tab[(v >> 12) & 63];
		*o++ = '=';
		*o++ = '=';
	} else if (n - i == 2) {
		unsigned v = (unsigned)p[i] << 16 | (unsigned)p[i + 1] << 8;
		*o++ = tab[v >> 18];
		*o++ = tab[(v >> 12) & 63];
		*o++ = tab[(v >> 6) & 63];
		*o++ = '=';
	}
	*o++ = '"';
	*o = '\0';
	b->len = (size_t)(o - b->data);
	return 0;
}

/* ---- the msgpack reader ---- */

struct rd {
	const unsigned char *p, *end;
};

enum mp_kind { K_NIL, K_BOOL, K_UINT, K_INT, K_F32, K_F64, K_STR, K_BIN, K_EXT, K_ARR, K_MAP };

struct mp_item {
	enum mp_kind kind;
	uint64_t u; /* uint, bool, container count */
	int64_t i;
	double d;
	const unsigned char *ptr; /* str, bin, ext payload */
	size_t len;
};

static uint64_t be(const unsigned char *p, int n)
{
	uint64_t v = 0;
	for (int i = 0; i < n; i++)
		v = v << 8 | p[i];
	return v;
}

/* Reads one header (and the payload of str/bin/ext).  -EINVAL on truncated
 * or malformed input. */
static int rd_item(struct rd *r, struct mp_item *it)
{
	if (r->p >= r->end)
		return -EINVAL;
	size_t avail = (size_t)(r->end - r->p);
	unsigned c = *r->p;
	size_t hdr = 1, plen = 0;
	memset(it, 0, sizeof(*it));
	if (c <= 0x7f) {
		it->kind = K_UINT;
		it->u = c;
	} else if (c <= 0x8f) {
		it->kind = K_MAP;
		it->u = c & 0x0f;
	} else if (c <= 0x9f) {
		it->kind = K_ARR;
		it->u = c & 0x0f;
	} else if (c <= 0xbf) {
		it->kind = K_STR;
		plen = c & 0x1f;
	} else if (c >= 0xe0) {
		it->kind = K_INT;
		it->i = (int8_t)c;
	} else {
		static const unsigned char need[0x20] = {
			/* c0 nil */ 1, 0, 1, 1, /* c4 bin */ 2, 3, 5, /* c7 ext */ 3, 4, 6,
			/* ca f32 */ 5, 9, /* cc uint */ 2, 3, 5, 9, /* d0 int */ 2, 3, 5, 9,
			/* d4 fixext */ 3, 4, 6, 10, 18, /* d9 str */ 2, 3, 5,
			/* dc arr */ 3, 5, /* de map */ 3, 5};
		hdr = need[c - 0xc0];
		if (hdr == 0 || avail < hdr)
			return -EINVAL;
		const unsigned char *q = r->p + 1;
		switch (c) {
		case 0xc0:
			it->kind = K_NIL;
			break;
		case 0xc2:
		case 0xc3:
			it->kind = K_BOOL;
			it->u = c == 0xc3;
			break;
		case 0xc4:
		case 0xc5:
		case 0xc6:
			it->kind = K_BIN;
			plen = (size_t)be(q, (int)hdr - 1);
			break;
		case 0xc7:
		case 0xc8:
		case 0xc9:
			it->kind = K_EXT;
			plen = (size_t)be(q, (int)hdr - 2);
			break;
		case 0xca: {
			uint32_t v = (uint32_t)be(q, 4);
			float f;
			memcpy(&f, &v, 4);
			it->kind = K_F32;
			it->d = f;
			break;
		}
		case 0xcb: {
			uint64_t v = be(q, 8);
			memcpy(&it->d, &v, 8);
			it->kind = K_F64;
			break;
		}
		case 0xcc:
		case 0xcd:
		case 0xce:
		case 0xcf:
			it->kind = K_UINT;
			it->u = be(q, (int)hdr - 1);
			break;
		case 0xd0:
			it->kind = K_INT;
			it->i = (int8_t)q[0];
			break;
		case 0xd1:
			it->kind = K_INT;
			it->i = (int16_t)be(q, 2);
			break;
		case 0xd2:
			it->kind = K_INT;
			it->i = (int32_t)be(q, 4);
			break;
		case 0xd3:
			it->kind = K_INT;
			it->i = (int64_t)be(q, 8);
			break;
		case 0xd4:
		case 0xd5:
		case 0xd6:
		case 0xd7:
		case 0xd8:
			it->kind = K_EXT;
			hdr = 2;
			plen = (size_t)1 << (c - 0xd4);
			break;
		case 0xd9:
		case 0xda:
		case 0xdb:
			it->kind = K_STR;
			plen = (size_t)be(q, (int)hdr - 1);
			break;
		case 0xdc:
		case 0xdd:
			it->kind = K_ARR;
			it->u = be(q, (int)hdr - 1);
			break;
		default: /* 0xde, 0xdf */
			it->kind = K_MAP;
			it->u = be(q, (int)hdr - 1);
			break;
		}
	}
	if (avail < hdr || avail - hdr < plen)
		return -EINVAL;
	it->ptr = r->p + hdr;
	it->len = plen;
	r->p += hdr + plen;
	/* every element takes at least one byte: refuse impossible counts */
	if (it->kind == K_ARR || it->kind == K_MAP) {
		size_t left = (size_t)(r->end - r->p);
		uint64_t elems = it->kind == K_MAP ? it->u * 2 : it->u;
		if (it->u > left || elems > left)
			return -EINVAL;
	}
	return 0;
}

/* Skips the contents of a container whose header was just read. */
static int rd_skip_contents(struct rd *r, const struct mp_item *head)
{
	uint64_t pending = head->kind == K_MAP ? head->u * 2 : head->u;
	struct mp_item it;
	while (pending) {
		if (rd_item(r, &it))
			return -EINVAL;
		pending--;
		if (it.kind == K_ARR)
			pending += it.u;
		else if (it.kind == K_MAP)
			pending += it.u * 2;
	}
	return 0;
}

/* ---- the encoder ---- */

enum role { R_NONE, R_TOP, R_META, R_CCLIENT };

struct enc {
	struct rd r;
	struct spool_buf *out;
	const struct spool_json_extra *x;
	bool in_key; /* writing the JSON text of a non-string key */
	const char *find;      /* a top-level member to report, or NULL */
	const char *found;     /* its first string value */
	size_t found_len;
};

static int enc_value(struct enc *e, const struct mp_item *it, int depth, enum role role);

static bool str_is(const struct mp_item *it, const char *s)
{
	size_t n = strlen(s);
	return it->kind == K_STR && it->len == n && memcmp(it->ptr, s, n) == 0;
}

static int put_seq_member(struct enc *e)
{
	int rc = PUT_LIT(e->out, "\"spool_seq\":");
	return rc ? rc : put_u64(e->out, e->x->spool_seq, false);
}

static int put_delivery_member(struct enc *e)
{
	int rc = PUT_LIT(e->out, "\"delivery\":{\"attempts\":");
	if (!rc)
		rc = put_u64(e->out, e->x->attempts, false);
	if (!rc)
		rc = PUT_LIT(e->out, ",\"spooled_seconds\":");
	if (!rc)
		rc = put_double(e->out, e->x->spooled_seconds, false);
	return rc ? rc : put_char(e->out, '}');
}

static int put_cclient_object(struct enc *e)
{
	int rc = PUT_LIT(e->out, "\"c_client\":{");
	if (!rc)
		rc = put_seq_member(e);
	return rc ? rc : put_char(e->out, '}');
}

/* Members the encoder adds at the end of a map of this role; *first tells
 * whether a comma is needed and is cleared. */
static int put_additions(struct enc *e, enum role role, bool have_meta, bool have_cc, bool *first)
{
	unsigned f = e->x ? e->x->flags : 0;
	int rc = 0;
	if (role == R_TOP && !have_meta && f) {
		if (!*first)
			rc = put_char(e->out, ',');
		*first = false;
		if (!rc)
			rc = PUT_LIT(e->out, "\"metadata\":{");
		bool inner_first = true;
		if (!rc)
			rc = put_additions(e, R_META, false, false, &inner_first);
		if (!rc)
			rc = put_char(e->out, '}');
	} else if (role == R_META) {
		if ((f & SPOOL_JSON_SEQ) && !have_cc) {
			if (!*first)
				rc = put_char(e->out, ',');
			*first = false;
			if (!rc)
				rc = put_cclient_object(e);
		}
		if (!rc && (f & SPOOL_JSON_DELIVERY)) {
			if (!*first)
				rc = put_char(e->out, ',');
			*first = false;
			if (!rc)
				rc = put_delivery_member(e);
		}
	} else if (role == R_CCLIENT && (f & SPOOL_JSON_SEQ)) {
		if (!*first)
			rc = put_char(e->out, ',');
		*first = false;
		if (!rc)
			rc = put_seq_member(e);
	}
	return rc;
}

/* A non-string key: its JSON text, as a string. */
static int enc_key_other(struct enc *e, const struct mp_item *key, int depth)
{
	if (e->in_key && (key->kind == K_MAP || key->kind == K_ARR)) {
		/* a container key inside a key's text: each level would escape
		 * the text of the one within again, doubling it (found by
		 * fuzzing: 81 bytes asked for 2 GiB), so it is written as "null" */
		if (rd_skip_contents(&e->r, key))
			return -EINVAL;
		return spool_buf_append(e->out, "\"null\"", 6);
	}
	struct spool_buf tmp = {0};
	struct enc sub = {.r = e->r, .out = &tmp, .x = NULL, .in_key = true};
	int rc = enc_value(&sub, key, depth, R_NONE);
	e->r = sub.r;
	if (!rc)
		rc = spool_json_string(e->out, tmp.data ? tmp.data : "", tmp.len);
	spool_buf_free(&tmp);
	return rc;
}

static int enc_map(struct enc *e, const struct mp_item *head, int depth, enum role role)
{
	unsigned f = e->x ? e->x->flags : 0;
	bool first = true, have_meta = false, have_cc = false;
	int rc = put_char(e->out, '{');
	for (uint64_t i = 0; !rc && i < head->u; i++) {
		struct mp_item key, val;
		if (rd_item(&e->r, &key))
			return -EINVAL;
		/* peek the value: injected members replace stored ones */
		enum role vrole = R_NONE;
		bool drop = false;
		if (role == R_TOP && f && str_is(&key, "metadata"))
			vrole = R_META;
		else if (role == R_META && str_is(&key, "c_client") && (f & SPOOL_JSON_SEQ))
			vrole = R_CCLIENT;
		else if (role == R_META && str_is(&key, "delivery") && (f & SPOOL_JSON_DELIVERY))
			drop = true;
		else if (role == R_CCLIENT && str_is(&key, "spool_seq") && (f & SPOOL_JSON_SEQ))
			drop = true;
		if (drop) {
			if (rd_item(&e->r, &val))
				return -EINVAL;
			if (val.kind == K_ARR || val.kind == K_MAP)
				rc = rd_skip_contents(&e->r, &val);
			continue;
		}
		if (!first)
			rc = put_char(e->out, ',');
		first = false;
		if (rc)
			break;
		if (key.kind == K_STR)
			rc = spool_json_string(e->out, key.ptr, key.len);
		else
			rc = enc_key_other(e, &key, depth + 1);
		if (!rc)
			rc = put_char(e->out, ':');
		if (rc)
			break;
		if (rd_item(&e->r, &val))
			return -EINVAL;
		if (role == R_TOP && e->find && !e->found && val.kind == K_STR &&
		    str_is(&key, e->find)) {
			e->found = (const char *)val.ptr;
			e->found_len = val.len;
		}
		/* a metadata or c_client that is not a map is written as stored
		 * and nothing is added (no second member of the same name) */
		if (vrole == R_META)
			have_meta = true;
		else if (vrole == R_CCLIENT)
			have_cc = true;
		if (vrole != R_NONE && val.kind != K_MAP)
			vrole = R_NONE;
		rc = enc_value(e, &val, depth + 1, vrole);
	}
	if (!rc && role != R_NONE)
		rc = put_additions(e, role, have_meta, have_cc, &first);
	return rc ? rc : put_char(e->out, '}');
}

static int enc_value(struct enc *e, const struct mp_item *it, int depth, enum role role)
{
	struct spool_buf *o = e->out;
	switch (it->kind) {
	case K_NIL:
		return PUT_LIT(o, "null");
	case K_BOOL:
		return it->u ? PUT_LIT(o, "true") : PUT_LIT(o, "false");
	case K_UINT:
		return put_u64(o, it->u, false);
	case K_INT:
		return put_i64(o, it->i);
	case K_F32:
		return put_double(o, it->d, true);
	case K_F64:
		return put_double(o, it->d, false);
	case K_STR:
		return spool_json_string(o, it->ptr, it->len);
	case K_BIN:
		return put_base64(o, it->ptr, it->len);
	case K_EXT:
		return PUT_LIT(o, "null");
	case K_ARR:
	case K_MAP:
		break;
	}
	if (depth > SPOOL_JSON_MAX_DEPTH) {
		if (rd_skip_contents(&e->r, it))
			return -EINVAL;
		return PUT_LIT(o, "null");
	}
	if (it->kind == K_MAP)
		return enc_map(e, it, depth, role);
	int rc = put_char(o, '[');
	for (uint64_t i = 0; !rc && i < it->u; i++) {
		struct mp_item v;
		if (rd_item(&e->r, &v))
			return -EINVAL;
		if (i)
			rc = put_char(o, ',');
		if (!rc)
			rc = enc_value(e, &v, depth + 1, R_NONE);
	}
	return rc ? rc : put_char(o, ']');
}

int spool_event_to_json(const void *mp, size_t len, const struct spool_json_extra *extra,
			struct spool_buf *out)
{
	return spool_event_to_json_find(mp, len, extra, out, NULL, NULL, NULL);
}

int spool_event_to_json_find(const void *mp, size_t len, const struct spool_json_extra *extra,
			     struct spool_buf *out, const char *key, const char **val,
			     size_t *vlen)
{
	if (val)
		*val = NULL;
	if (vlen)
		*vlen = 0;
	if (!out || (!mp && len) || (key && (!val || !vlen)))
		return -EINVAL;
	size_t mark = out->len;
	struct enc e = {.r = {mp, (const unsigned char *)mp + len}, .out = out, .x = extra,
			.find = key};
	struct mp_item top;
	int rc = rd_item(&e.r, &top);
	if (!rc && top.kind != K_MAP)
		rc = -EINVAL;
	if (!rc && spool_buf_reserve(out, len + len / 4 + 64))
		rc = -ENOMEM;
	if (!rc)
		rc = enc_value(&e, &top, 1, R_TOP);
	if (!rc && e.r.p != e.r.end)
		rc = -EINVAL; /* trailing bytes: not exactly one map */
	if (rc) {
		out->len = mark;
		if (out->data)
			out->data[mark] = '\0';
	} else if (key) {
		*val = e.found;
		*vlen = e.found_len;
	}
	return rc;
}

int spool_event_get_str(const void *mp, size_t len, const char *key, const char **val,
			size_t *vlen)
{
	if (!mp || !key || !val || !vlen)
		return -EINVAL;
	struct rd r = {mp, (const unsigned char *)mp + len};
	struct mp_item top, k, v;
	if (rd_item(&r, &top) || top.kind != K_MAP)
		return -EINVAL;
	for (uint64_t i = 0; i < top.u; i++) {
		if (rd_item(&r, &k))
			return -EINVAL;
		if ((k.kind == K_ARR || k.kind == K_MAP) && rd_skip_contents(&r, &k))
			return -EINVAL;
		if (rd_item(&r, &v))
			return -EINVAL;
		if (str_is(&k, key) && v.kind == K_STR) {
			*val = (const char *)v.ptr;
			*vlen = v.len;
			return 0;
		}
		if ((v.kind == K_ARR || v.kind == K_MAP) && rd_skip_contents(&r, &v))
			return -EINVAL;
	}
	return SPOOL_ENOTFOUND;
}
