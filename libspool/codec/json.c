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

/* ---- output helpers ----
 *
 * The encoder's writers check for room with one compare and write no NUL
 * of their own: spool_event_to_json_find() ends the text once, at the end
 * (room for it is always kept: reserve() counts one byte more). */

#define LIKELY(x) __builtin_expect(!!(x), 1)
#define UNLIKELY(x) __builtin_expect(!!(x), 0)

/* Room for k more bytes and the NUL after them. */
static inline int room(struct spool_buf *b, size_t k)
{
	if (LIKELY(b->cap - b->len > k))
		return 0;
	return spool_buf_reserve(b, k);
}

static inline int put_raw(struct spool_buf *b, const void *p, size_t n)
{
	if (room(b, n))
		return -ENOMEM;
	memcpy(b->data + b->len, p, n);
	b->len += n;
	return 0;
}

#define PUT_LIT(b, s) put_raw((b), (s), sizeof(s) - 1)

static inline int put_char(struct spool_buf *b, char c)
{
	if (room(b, 1))
		return -ENOMEM;
	b->data[b->len++] = c;
	return 0;
}

static int put_u64(struct spool_buf *b, uint64_t v, bool neg)
{
	static const char pairs[201] = "00010203040506070809101112131415161718192021222324"
				       "25262728293031323334353637383940414243444546474849"
				       "50515253545556575859606162636465666768697071727374"
				       "75767778798081828384858687888990919293949596979899";
	if (room(b, 21))
		return -ENOMEM;
	char *o = b->data + b->len;
	if (neg)
		*o++ = '-';
	/* digits, then written from the last, two at a time, in place */
	size_t n = 1;
	for (uint64_t t = 10; n < 20 && v >= t; t *= 10)
		n++;
	char *q = o + n;
	while (v >= 100) {
		unsigned d = (unsigned)(v % 100) * 2;
		v /= 100;
		*--q = pairs[d + 1];
		*--q = pairs[d];
	}
	if (v >= 10) {
		*--q = pairs[v * 2 + 1];
		*--q = pairs[v * 2];
	} else {
		*--q = (char)('0' + v);
	}
	b->len = (size_t)(o + n - b->data);
	return 0;
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
	return put_raw(b, tmp, strlen(tmp));
}

/* A count of seconds that is a whole number of microseconds (as the
 * drain's spooled_seconds is): the same text as put_double() gives, without
 * its printf and strtod.  For d = us / 1e6 with 100 <= us < 10^15 the
 * decimal has at most 15 significant digits and no exponent in %g form, so
 * %.15g prints it exactly and it reads back; trailing zeros go, as %g's do. */
static int put_seconds(struct spool_buf *b, double d)
{
	double scaled = d * 1e6;
	if (!(scaled >= 100.0 && scaled < 1e15))
		return put_double(b, d, false);
	uint64_t us = (uint64_t)(scaled + 0.5);
	if ((double)us / 1e6 != d)
		return put_double(b, d, false);
	int rc = put_u64(b, us / 1000000, false);
	if (rc)
		return rc;
	unsigned frac = (unsigned)(us % 1000000);
	if (frac == 0)
		return PUT_LIT(b, ".0");
	char f[8] = {'.'};
	int k = 6;
	for (int i = 6; i >= 1; i--, frac /= 10)
		f[i] = (char)('0' + frac % 10);
	while (f[k] == '0')
		k--;
	return put_raw(b, f, (size_t)k + 1);
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

#ifdef __SSE2__
/* Lanes of x that need a look: below 0x20 (the signed compare also takes
 * 0x80 and above), '"', '\\' and 0x7f. */
static inline unsigned look16(__m128i x)
{
	__m128i look = _mm_or_si128(_mm_or_si128(_mm_cmplt_epi8(x, _mm_set1_epi8(0x20)),
						 _mm_cmpeq_epi8(x, _mm_set1_epi8('"'))),
				    _mm_or_si128(_mm_cmpeq_epi8(x, _mm_set1_epi8('\\')),
						 _mm_cmpeq_epi8(x, _mm_set1_epi8(0x7f))));
	return (unsigned)_mm_movemask_epi8(look);
}
#endif

/* s[0, n) as a JSON string, quotes included, whatever it holds; no NUL
 * after it. */
static int put_str_any(struct spool_buf *b, const unsigned char *s, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	const unsigned char *p = s, *end = s + n;
	/* worst case: every byte becomes \u00XX (6) or U+FFFD (3) */
	if (UNLIKELY(n > (SIZE_MAX - 32) / 6) || room(b, n * 6 + 2))
		return -ENOMEM;
	char *o = b->data + b->len;
	*o++ = '"';
#ifdef __SSE2__
	char *o0 = o;
#endif
	while (p < end) {
#ifdef __SSE2__
		/* sixteen plain bytes at a time while none needs a look */
		while (end - p >= 16) {
			__m128i x = _mm_loadu_si128((const __m128i *)(const void *)p);
			if (look16(x))
				break;
			_mm_storeu_si128((__m128i *)(void *)o, x);
			o += 16;
			p += 16;
		}
		/* the last few bytes of a plain string of 16 or more: the 16
		 * that end it, checked and stored over the output that already
		 * holds the same bytes (nothing was expanded so far) */
		if (end - p < 16 && n >= 16 && (size_t)(o - o0) == (size_t)(p - s)) {
			size_t rem = (size_t)(end - p);
			__m128i x = _mm_loadu_si128((const __m128i *)(const void *)(end - 16));
			if (!(look16(x) >> (16 - rem))) {
				_mm_storeu_si128((__m128i *)(void *)(o - (16 - rem)), x);
				o += rem;
				break;
			}
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
	b->len = (size_t)(o - b->data);
	return 0;
}

/* A short plain string (the most common kind: keys, severities, ids)
 * with one 16-byte load, check and store; `lim` (>= s + n) is how far
 * reading is allowed (the end of the stored event).  pre and post: a
 * character written before the opening and after the closing quote, or
 * 0.  1 when done, 0 when the string needs put_str_any(), -ENOMEM. */
static inline int put_str_fast(struct spool_buf *b, const unsigned char *s, size_t n,
			       const unsigned char *lim, char pre, char post)
{
#ifdef __SSE2__
	if (n <= 16 && lim - s >= 16) {
		if (room(b, 20))
			return -ENOMEM;
		__m128i x = _mm_loadu_si128((const __m128i *)(const void *)s);
		if (!(look16(x) & ((1u << n) - 1))) {
			char *o = b->data + b->len;
			if (pre)
				*o++ = pre;
			*o++ = '"';
			_mm_storeu_si128((__m128i *)(void *)o, x);
			o += n;
			*o++ = '"';
			if (post)
				*o++ = post;
			b->len = (size_t)(o - b->data);
			return 1;
		}
	}
#else
	(void)b, (void)s, (void)n, (void)lim, (void)pre, (void)post;
#endif
	return 0;
}

static inline int put_str(struct spool_buf *b, const unsigned char *s, size_t n, const unsigned char *lim)
{
	int rc = put_str_fast(b, s, n, lim, 0, 0);
	return rc ? (rc < 0 ? rc : 0) : put_str_any(b, s, n);
}

/* A member's name: `,"name":` (no comma before the first). */
static inline int put_key(struct spool_buf *b, const unsigned char *s, size_t n, const unsigned char *lim,
			  bool first)
{
	int rc = put_str_fast(b, s, n, lim, first ? 0 : ',', ':');
	if (rc)
		return rc < 0 ? rc : 0;
	if (!first && put_char(b, ','))
		return -ENOMEM;
	rc = put_str_any(b, s, n);
	return rc ? rc : put_char(b, ':');
}

int spool_json_string(struct spool_buf *b, const void *s, size_t n)
{
	if (!b || (!s && n))
		return -EINVAL;
	int rc = put_str_any(b, s, n);
	if (!rc)
		b->data[b->len] = '\0';
	return rc;
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
static int rd_item_any(struct rd *r, struct mp_item *it)
{
	if (UNLIKELY(r->p >= r->end))
		return -EINVAL;
	size_t avail = (size_t)(r->end - r->p);
	unsigned c = *r->p;
	size_t hdr = 1, plen = 0;
	it->u = 0;
	it->i = 0;
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

/* rd_item_any(), with the common short string (keys and most values)
 * read inline. */
static inline int rd_item(struct rd *r, struct mp_item *it)
{
	if (LIKELY(r->p < r->end)) {
		unsigned c = *r->p;
		size_t plen = c & 0x1f;
		if (c >= 0xa0 && c <= 0xbf && LIKELY((size_t)(r->end - r->p) - 1 >= plen)) {
			it->kind = K_STR;
			it->ptr = r->p + 1;
			it->len = plen;
			r->p += 1 + plen;
			return 0;
		}
	}
	return rd_item_any(r, it);
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
	size_t find_len;
	const char *found;     /* its first string value */
	size_t found_len;
};

static int enc_value(struct enc *e, const struct mp_item *it, int depth, enum role role);

static inline bool str_is_n(const struct mp_item *it, const char *s, size_t n)
{
	return it->kind == K_STR && it->len == n && memcmp(it->ptr, s, n) == 0;
}

#define STR_IS(it, lit) str_is_n((it), (lit), sizeof(lit) - 1)

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
		rc = put_seconds(e->out, e->x->spooled_seconds);
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
		return PUT_LIT(e->out, "\"null\"");
	}
	struct spool_buf tmp = {0};
	struct enc sub = {.r = e->r, .out = &tmp, .x = NULL, .in_key = true};
	int rc = enc_value(&sub, key, depth, R_NONE);
	e->r = sub.r;
	if (!rc)
		rc = put_str(e->out, (const unsigned char *)tmp.data, tmp.len,
			     (const unsigned char *)tmp.data + tmp.len);
	spool_buf_free(&tmp);
	return rc;
}

static int enc_cclient(struct enc *e, const struct mp_item *head, const unsigned char *start, int depth);

/* '{' and the members of a map (dropping the ones an addition replaces);
 * *first tells whether none was written; have_*: whether a metadata or
 * c_client member was seen (for the additions). */
static int enc_members(struct enc *e, const struct mp_item *head, int depth, enum role role, bool *first_out,
		       bool *have_meta_out, bool *have_cc_out)
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
		if (role == R_NONE)
			;
		else if (role == R_TOP && f && STR_IS(&key, "metadata"))
			vrole = R_META;
		else if (role == R_META && STR_IS(&key, "c_client") && (f & SPOOL_JSON_SEQ))
			vrole = R_CCLIENT;
		else if (role == R_META && STR_IS(&key, "delivery") && (f & SPOOL_JSON_DELIVERY))
			drop = true;
		else if (role == R_CCLIENT && STR_IS(&key, "spool_seq") && (f & SPOOL_JSON_SEQ))
			drop = true;
		if (drop) {
			if (rd_item(&e->r, &val))
				return -EINVAL;
			if (val.kind == K_ARR || val.kind == K_MAP)
				rc = rd_skip_contents(&e->r, &val);
			continue;
		}
		if (key.kind == K_STR) {
			rc = put_key(e->out, key.ptr, key.len, e->r.end, first);
		} else {
			if (!first)
				rc = put_char(e->out, ',');
			if (!rc)
				rc = enc_key_other(e, &key, depth + 1);
			if (!rc)
				rc = put_char(e->out, ':');
		}
		first = false;
		if (rc)
			break;
		const unsigned char *vstart = e->r.p;
		if (rd_item(&e->r, &val))
			return -EINVAL;
		if (role == R_TOP && e->find && !e->found && val.kind == K_STR &&
		    str_is_n(&key, e->find, e->find_len)) {
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
		if (vrole == R_CCLIENT && e->x->memo)
			rc = enc_cclient(e, &val, vstart, depth + 1);
		else
			rc = enc_value(e, &val, depth + 1, vrole);
	}
	*first_out = first;
	*have_meta_out = have_meta;
	*have_cc_out = have_cc;
	return rc;
}

static int enc_map(struct enc *e, const struct mp_item *head, int depth, enum role role)
{
	bool first, have_meta, have_cc;
	int rc = enc_members(e, head, depth, role, &first, &have_meta, &have_cc);
	if (!rc && role != R_NONE)
		rc = put_additions(e, role, have_meta, have_cc, &first);
	return rc ? rc : put_char(e->out, '}');
}

/* A c_client map (its header read, `start` where it began) through the
 * memo: the events of one process carry the same block, so when its
 * stored bytes begin with the block encoded last (msgpack says where a
 * value ends, so they then hold exactly that block) its JSON is copied;
 * otherwise it is encoded and kept for the next event.  The additions
 * (spool_seq) are written fresh either way. */
static int enc_cclient(struct enc *e, const struct mp_item *head, const unsigned char *start, int depth)
{
	struct spool_json_memo *m = e->x->memo;
	unsigned f = e->x->flags;
	bool first, have_meta, have_cc;
	int rc;
	if (m->raw_len && m->flags == f && (size_t)(e->r.end - start) >= m->raw_len &&
	    memcmp(start, m->raw, m->raw_len) == 0) {
		if (put_raw(e->out, m->json, m->json_len))
			return -ENOMEM;
		e->r.p = start + m->raw_len;
		first = m->empty;
	} else {
		size_t at = e->out->len;
		m->raw_len = 0;
		if ((rc = enc_members(e, head, depth, R_CCLIENT, &first, &have_meta, &have_cc)) != 0)
			return rc;
		size_t raw_len = (size_t)(e->r.p - start), json_len = e->out->len - at;
		if (raw_len <= sizeof(m->raw) && json_len <= sizeof(m->json)) {
			memcpy(m->raw, start, raw_len);
			memcpy(m->json, e->out->data + at, json_len);
			m->raw_len = raw_len;
			m->json_len = json_len;
			m->flags = f;
			m->empty = first;
		}
	}
	rc = put_additions(e, R_CCLIENT, false, false, &first);
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
		return put_str(o, it->ptr, it->len, e->r.end);
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
			.find = key, .find_len = key ? strlen(key) : 0};
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
		return rc;
	}
	out->data[out->len] = '\0'; /* room for it is always kept */
	if (key) {
		*val = e.found;
		*vlen = e.found_len;
	}
	return 0;
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
	size_t klen = strlen(key);
	for (uint64_t i = 0; i < top.u; i++) {
		if (rd_item(&r, &k))
			return -EINVAL;
		if ((k.kind == K_ARR || k.kind == K_MAP) && rd_skip_contents(&r, &k))
			return -EINVAL;
		if (rd_item(&r, &v))
			return -EINVAL;
		if (str_is_n(&k, key, klen) && v.kind == K_STR) {
			*val = (const char *)v.ptr;
			*vlen = v.len;
			return 0;
		}
		if ((v.kind == K_ARR || v.kind == K_MAP) && rd_skip_contents(&r, &v))
			return -EINVAL;
	}
	return SPOOL_ENOTFOUND;
}
