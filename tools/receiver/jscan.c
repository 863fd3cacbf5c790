/* jscan.c - strict one-pass JSON scanner (see jscan.h). */
#include "jscan.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_DEPTH 2048 /* as jansson: 2048 nested levels are accepted */

/* Byte classes inside a string: 0 = plain ASCII, copy on. */
enum { C_PLAIN = 0, C_QUOTE, C_BACKSLASH, C_CONTROL, C_HIGH };

static unsigned char str_class[256];
static bool classes_ready;

static void init_classes(void)
{
	for (int c = 0; c < 256; c++)
		str_class[c] = c < 0x20    ? C_CONTROL
			       : c == '"'  ? C_QUOTE
			       : c == '\\' ? C_BACKSLASH
			       : c >= 0x80 ? C_HIGH
					   : C_PLAIN;
	classes_ready = true;
}

struct scan {
	const unsigned char *start, *p, *end;
	int depth;
	/* compact lines: bytes from seg to p are pending while copying */
	struct buf *out;
	bool copying;
	const unsigned char *seg;
	bool oom;
	char *err;
	size_t err_len;
	bool failed;
};

static void fail(struct scan *s, const char *what)
{
	if (s->failed)
		return;
	s->failed = true;
	snprintf(s->err, s->err_len, "%s at byte %zu", what,
		 (size_t)(s->p - s->start));
}

static void flush(struct scan *s, const unsigned char *upto)
{
	if (s->copying && upto > s->seg && buf_append(s->out, s->seg,
						      (size_t)(upto - s->seg)))
		s->oom = true;
	s->seg = upto;
}

static bool is_ws(unsigned char c)
{
	return c == ' ' || c == '\n' || c == '\r' || c == '\t';
}

static void skip_ws(struct scan *s)
{
	if (s->p >= s->end || !is_ws(*s->p))
		return;
	const unsigned char *ws = s->p;
	while (s->p < s->end && is_ws(*s->p))
		s->p++;
	if (s->copying) {
		flush(s, ws);
		s->seg = s->p;
	}
}

static int hex4(const unsigned char *p)
{
	int v = 0;
	for (int i = 0; i < 4; i++) {
		int c = p[i], d;
		if (c >= '0' && c <= '9')
			d = c - '0';
		else if (c >= 'a' && c <= 'f')
			d = c - 'a' + 10;
		else if (c >= 'A' && c <= 'F')
			d = c - 'A' + 10;
		else
			return -1;
		v = v * 16 + d;
	}
	return v;
}

/* Validates one UTF-8 sequence starting at s->p (a byte >= 0x80). */
static bool utf8_seq(struct scan *s)
{
	const unsigned char *p = s->p;
	size_t left = (size_t)(s->end - p);
	unsigned c = p[0];
	size_t n;
	unsigned lo = 0x80, hi = 0xBF; /* range of the second byte */

	if (c >= 0xC2 && c <= 0xDF) {
		n = 2;
	} else if (c >= 0xE0 && c <= 0xEF) {
		n = 3;
		if (c == 0xE0)
			lo = 0xA0; /* no overlong forms */
		if (c == 0xED)
			hi = 0x9F; /* no UTF-16 surrogates */
	} else if (c >= 0xF0 && c <= 0xF4) {
		n = 4;
		if (c == 0xF0)
			lo = 0x90;
		if (c == 0xF4)
			hi = 0x8F; /* nothing above U+10FFFF */
	} else {
		return false;
	}
	if (left < n || p[1] < lo || p[1] > hi)
		return false;
	for (size_t i = 2; i < n; i++)
		if (p[i] < 0x80 || p[i] > 0xBF)
			return false;
	s->p += n;
	return true;
}

/* At the opening quote.  Fills f (raw, len, type, JF_ESCAPED); *has_nul
 * tells whether a \u0000 escape occurred. */
static bool scan_string(struct scan *s, struct jfield *f, bool *has_nul)
{
	const unsigned char *content = ++s->p;
	uint8_t flags = 0;
	*has_nul = false;
	for (;;) {
		while (s->p < s->end && str_class[*s->p] == C_PLAIN)
			s->p++;
		if (s->p >= s->end) {
			fail(s, "unterminated string");
			return false;
		}
		switch (str_class[*s->p]) {
		case C_QUOTE:
			f->raw = (const char *)content;
			f->len = (uint32_t)(s->p - content);
			f->type = J_STRING;
			f->flags = flags;
			s->p++;
			return true;
		case C_CONTROL:
			fail(s, "control character in string");
			return false;
		case C_HIGH:
			if (!utf8_seq(s)) {
				fail(s, "invalid UTF-8");
				return false;
			}
			break;
		case C_BACKSLASH:
			flags |= JF_ESCAPED;
			if (s->end - s->p < 2) {
				fail(s, "unterminated string");
				return false;
			}
			switch (s->p[1]) {
			case '"': case '\\': case '/': case 'b': case 'f':
			case 'n': case 'r': case 't':
				s->p += 2;
				break;
			case 'u': {
				int cp = s->end - s->p >= 6 ? hex4(s->p + 2) : -1;
				if (cp < 0) {
					fail(s, "invalid \\u escape");
					return false;
				}
				s->p += 6;
				if (cp == 0)
					*has_nul = true;
				if (cp >= 0xDC00 && cp <= 0xDFFF) {
					fail(s, "lone low surrogate");
					return false;
				}
				if (cp >= 0xD800 && cp <= 0xDBFF) {
					int lo = -1;
					if (s->end - s->p >= 6 && s->p[0] == '\\' &&
					    s->p[1] == 'u')
						lo = hex4(s->p + 2);
					if (lo < 0xDC00 || lo > 0xDFFF) {
						fail(s, "unpaired high surrogate");
						return false;
					}
					s->p += 6;
				}
				break;
			}
			default:
				fail(s, "invalid escape");
				return false;
			}
			break;
		}
	}
}

static bool digits(struct scan *s)
{
	const unsigned char *d = s->p;
	while (s->p < s->end && *s->p >= '0' && *s->p <= '9')
		s->p++;
	return s->p > d;
}

static bool scan_number(struct scan *s, struct jfield *f)
{
	const unsigned char *tok = s->p;
	uint8_t flags = JF_INTEGER;
	if (*s->p == '-') {
		flags |= JF_NEGATIVE;
		s->p++;
	}
	if (s->p < s->end && *s->p == '0') {
		s->p++;
	} else if (!digits(s)) {
		fail(s, "invalid number");
		return false;
	}
	if (s->p < s->end && *s->p == '.') {
		s->p++;
		flags &= (uint8_t)~JF_INTEGER;
		if (!digits(s)) {
			fail(s, "invalid number");
			return false;
		}
	}
	if (s->p < s->end && (*s->p == 'e' || *s->p == 'E')) {
		s->p++;
		flags &= (uint8_t)~JF_INTEGER;
		if (s->p < s->end && (*s->p == '+' || *s->p == '-'))
			s->p++;
		if (!digits(s)) {
			fail(s, "invalid number");
			return false;
		}
	}
	size_t n = (size_t)(s->p - tok);
	/* Range checks as jansson's: int64 integers, finite reals.  Short
	 * integers cannot overflow; the rest go through strtoll/strtod. */
	if (!(flags & JF_INTEGER) || n > 18) {
		char tmp[512];
		if (n >= sizeof(tmp)) {
			/* Beyond int64 for sure; a real this long is either
			 * huge or has many digits: let strtod decide. */
			if (flags & JF_INTEGER) {
				fail(s, "integer out of range");
				return false;
			}
			char *big = malloc(n + 1);
			if (!big) {
				s->oom = true;
				return false;
			}
			memcpy(big, tok, n);
			big[n] = '\0';
			errno = 0;
			double v = strtod(big, NULL);
			free(big);
			if (errno == ERANGE && isinf(v)) {
				fail(s, "real number overflow");
				return false;
			}
		} else {
			memcpy(tmp, tok, n);
			tmp[n] = '\0';
			errno = 0;
			if (flags & JF_INTEGER) {
				(void)strtoll(tmp, NULL, 10);
				if (errno == ERANGE) {
					fail(s, "integer out of range");
					return false;
				}
			} else {
				double v = strtod(tmp, NULL);
				if (errno == ERANGE && isinf(v)) {
					fail(s, "real number overflow");
					return false;
				}
			}
		}
	}
	f->raw = (const char *)tok;
	f->len = (uint32_t)n;
	f->type = J_NUMBER;
	f->flags = flags;
	return true;
}

static bool literal(struct scan *s, const char *word, size_t n)
{
	if ((size_t)(s->end - s->p) < n || memcmp(s->p, word, n) != 0) {
		fail(s, "invalid token");
		return false;
	}
	s->p += n;
	return true;
}

static bool scan_value(struct scan *s, struct jfield *f,
		       struct jevent *members);

/* Decodes the escapes of a short key into out (UTF-8).  Returns its
 * length, or -1 when it does not fit. */
static int unescape_key(const char *raw, size_t len, char *out, size_t cap)
{
	size_t o = 0;
	for (size_t i = 0; i < len;) {
		unsigned cp;
		if (raw[i] != '\\') {
			if (o >= cap)
				return -1;
			out[o++] = raw[i++];
			continue;
		}
		char e = raw[i + 1];
		i += 2;
		if (e != 'u') {
			static const char from[] = "\"\\/bfnrt";
			static const char to[] = "\"\\/\b\f\n\r\t";
			const char *at = strchr(from, e);
			if (o >= cap || !at)
				return -1;
			out[o++] = to[at - from];
			continue;
		}
		cp = (unsigned)hex4((const unsigned char *)raw + i);
		i += 4;
		if (cp >= 0xD800 && cp <= 0xDBFF) {
			unsigned lo = (unsigned)hex4(
				(const unsigned char *)raw + i + 2);
			i += 6;
			cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
		}
		if (o + 4 > cap)
			return -1;
		if (cp < 0x80) {
			out[o++] = (char)cp;
		} else if (cp < 0x800) {
			out[o++] = (char)(0xC0 | (cp >> 6));
			out[o++] = (char)(0x80 | (cp & 0x3F));
		} else if (cp < 0x10000) {
			out[o++] = (char)(0xE0 | (cp >> 12));
			out[o++] = (char)(0x80 | ((cp >> 6) & 0x3F));
			out[o++] = (char)(0x80 | (cp & 0x3F));
		} else {
			out[o++] = (char)(0xF0 | (cp >> 18));
			out[o++] = (char)(0x80 | ((cp >> 12) & 0x3F));
			out[o++] = (char)(0x80 | ((cp >> 6) & 0x3F));
			out[o++] = (char)(0x80 | (cp & 0x3F));
		}
	}
	return (int)o;
}

static int field_of_key(const struct jfield *key)
{
	static const char *const names[F_COUNT] = {
		"message",	    "severity", "title",	   "tags",
		"ttl_seconds", "metadata", "client_event_id", "timestamp",
	};
	const char *k = key->raw;
	size_t n = key->len;
	char tmp[64];
	if (key->flags & JF_ESCAPED) {
		/* Every escape is at least 2 bytes for 1: a long raw key
		 * can still be short once decoded. */
		if (n > 6 * sizeof(tmp))
			return -1;
		int m = unescape_key(key->raw, n, tmp, sizeof(tmp));
		if (m < 0)
			return -1;
		k = tmp;
		n = (size_t)m;
	}
	for (int i = 0; i < F_COUNT; i++)
		if (strlen(names[i]) == n && memcmp(names[i], k, n) == 0)
			return i;
	return -1;
}

/* At '{'.  With `members`, records the members with rules. */
static bool scan_object(struct scan *s, struct jevent *members)
{
	struct jfield key, val;
	bool nul;

	if (++s->depth > MAX_DEPTH) {
		fail(s, "maximum nesting depth reached");
		return false;
	}
	s->p++;
	skip_ws(s);
	if (s->p < s->end && *s->p == '}') {
		s->p++;
		s->depth--;
		return true;
	}
	for (;;) {
		if (s->p >= s->end || *s->p != '"') {
			fail(s, "string key expected");
			return false;
		}
		if (!scan_string(s, &key, &nul))
			return false;
		if (nul) {
			fail(s, "NUL byte in object key");
			return false;
		}
		skip_ws(s);
		if (s->p >= s->end || *s->p != ':') {
			fail(s, "':' expected");
			return false;
		}
		s->p++;
		skip_ws(s);
		if (!scan_value(s, &val, NULL))
			return false;
		if (members) {
			int id = field_of_key(&key);
			if (id >= 0) {
				uint8_t count = members->f[id].count;
				members->f[id] = val;
				members->f[id].count =
					count < 255 ? (uint8_t)(count + 1) : 255;
			}
		}
		skip_ws(s);
		if (s->p < s->end && *s->p == ',') {
			s->p++;
			skip_ws(s);
			continue;
		}
		if (s->p < s->end && *s->p == '}') {
			s->p++;
			s->depth--;
			return true;
		}
		fail(s, "',' or '}' expected");
		return false;
	}
}

/* At '['.  Sets JF_ALL_STRINGS in *flags when every element is one. */
static bool scan_array(struct scan *s, uint8_t *flags)
{
	struct jfield val;
	bool all_strings = true;

	if (++s->depth > MAX_DEPTH) {
		fail(s, "maximum nesting depth reached");
		return false;
	}
	s->p++;
	skip_ws(s);
	if (s->p < s->end && *s->p == ']') {
		s->p++;
		s->depth--;
		*flags = JF_ALL_STRINGS;
		return true;
	}
	for (;;) {
		if (!scan_value(s, &val, NULL))
			return false;
		all_strings = all_strings && val.type == J_STRING;
		skip_ws(s);
		if (s->p < s->end && *s->p == ',') {
			s->p++;
			skip_ws(s);
			continue;
		}
		if (s->p < s->end && *s->p == ']') {
			s->p++;
			s->depth--;
			*flags = all_strings ? JF_ALL_STRINGS : 0;
			return true;
		}
		fail(s, "',' or ']' expected");
		return false;
	}
}

static bool scan_value(struct scan *s, struct jfield *f,
		       struct jevent *members)
{
	bool nul;
	memset(f, 0, sizeof(*f));
	if (s->p >= s->end) {
		fail(s, "value expected");
		return false;
	}
	f->raw = (const char *)s->p;
	switch (*s->p) {
	case '{':
		f->type = J_OBJECT;
		return scan_object(s, members);
	case '[':
		f->type = J_ARRAY;
		return scan_array(s, &f->flags);
	case '"':
		return scan_string(s, f, &nul);
	case 't':
		f->type = J_TRUE;
		return literal(s, "true", 4);
	case 'f':
		f->type = J_FALSE;
		return literal(s, "false", 5);
	case 'n':
		f->type = J_NULL;
		return literal(s, "null", 4);
	default:
		if (*s->p == '-' || (*s->p >= '0' && *s->p <= '9'))
			return scan_number(s, f);
		fail(s, "invalid token");
		return false;
	}
}

/* Scans one event value at s->p, recording it in res when there is room. */
static bool scan_event(struct scan *s, struct jscan_result *res,
		       size_t max_kept, bool want_lines)
{
	struct jevent scratch;
	struct jevent *ev = &scratch;
	if (res->n_kept < max_kept) {
		ev = &res->events[res->n_kept++];
	}
	memset(ev, 0, sizeof(*ev));
	ev->raw_off = (size_t)(s->p - s->start);
	bool keep_line = want_lines && ev != &scratch;
	if (keep_line) {
		s->copying = true;
		s->seg = s->p;
		ev->line_off = s->out->len;
	}
	struct jfield v;
	bool ok = scan_value(s, &v, s->p < s->end && *s->p == '{' ? ev : NULL);
	ev->type = v.type;
	ev->raw_len = (size_t)(s->p - s->start) - ev->raw_off;
	if (keep_line) {
		flush(s, s->p);
		s->copying = false;
		if (buf_append(s->out, "\n", 1))
			s->oom = true;
		ev->line_len = s->out->len - ev->line_off;
	}
	res->n_events++;
	return ok;
}

static bool grow_events(struct jscan_result *res, size_t want)
{
	struct jevent *e = realloc(res->events, want * sizeof(*e));
	if (!e)
		return false;
	res->events = e;
	return true;
}

int jscan_body(const char *in, size_t len, bool batch, size_t max_events,
	       struct buf *lines, struct jscan_result *res)
{
	struct scan s = { 0 };
	int shape = JS_OK;
	bool saw_logs = false;
	/* Keep one more than allowed, so "too many" is known. */
	size_t max_kept = max_events + 1;
	size_t cap = 0;

	if (!classes_ready)
		init_classes();
	memset(res, 0, sizeof(*res));
	s.start = s.p = (const unsigned char *)in;
	s.end = s.start + len;
	s.out = lines;
	s.err = res->err;
	s.err_len = sizeof(res->err);

	skip_ws(&s);
	if (!batch) {
		if (!grow_events(res, 1))
			return JS_NOMEM;
		scan_event(&s, res, 1, lines != NULL);
	} else if (s.p < s.end && *s.p == '{') {
		/* The root object, member by member, to find "logs". */
		struct jfield key, val;
		bool nul;
		s.depth = 1;
		s.p++;
		skip_ws(&s);
		if (s.p < s.end && *s.p == '}') {
			s.p++;
			goto root_done;
		}
		for (;;) {
			if (s.p >= s.end || *s.p != '"') {
				fail(&s, "string key expected");
				break;
			}
			if (!scan_string(&s, &key, &nul))
				break;
			if (nul) {
				fail(&s, "NUL byte in object key");
				break;
			}
			skip_ws(&s);
			if (s.p >= s.end || *s.p != ':') {
				fail(&s, "':' expected");
				break;
			}
			s.p++;
			skip_ws(&s);
			bool is_logs = false;
			if (key.len == 4 && !(key.flags & JF_ESCAPED))
				is_logs = memcmp(key.raw, "logs", 4) == 0;
			else if (key.flags & JF_ESCAPED && key.len <= 24) {
				char tmp[24];
				is_logs = unescape_key(key.raw, key.len, tmp,
						       sizeof(tmp)) == 4 &&
					  memcmp(tmp, "logs", 4) == 0;
			}
			if (is_logs && s.p < s.end && *s.p == '[') {
				/* The last "logs" wins, as in jansson. */
				saw_logs = true;
				shape = JS_OK;
				res->n_events = res->n_kept = 0;
				if (lines)
					lines->len = 0;
				if (++s.depth > MAX_DEPTH) {
					fail(&s, "maximum nesting depth reached");
					break;
				}
				s.p++;
				skip_ws(&s);
				if (s.p < s.end && *s.p == ']') {
					s.p++;
					s.depth--;
				} else {
					for (;;) {
						if (res->n_kept == cap &&
						    cap < max_kept) {
							cap = cap ? cap * 2 : 64;
							if (cap > max_kept)
								cap = max_kept;
							if (!grow_events(res, cap)) {
								s.oom = true;
								break;
							}
						}
						if (!scan_event(&s, res, cap,
								lines != NULL))
							break;
						skip_ws(&s);
						if (s.p < s.end && *s.p == ',') {
							s.p++;
							skip_ws(&s);
							continue;
						}
						if (s.p < s.end && *s.p == ']') {
							s.p++;
							s.depth--;
							break;
						}
						fail(&s, "',' or ']' expected");
						break;
					}
					if (s.failed || s.oom)
						break;
				}
			} else {
				if (!scan_value(&s, &val, NULL))
					break;
				if (is_logs) {
					saw_logs = true;
					shape = JS_LOGS_NOT_ARRAY;
				}
			}
			skip_ws(&s);
			if (s.p < s.end && *s.p == ',') {
				s.p++;
				skip_ws(&s);
				continue;
			}
			if (s.p < s.end && *s.p == '}') {
				s.p++;
				break;
			}
			fail(&s, "',' or '}' expected");
			break;
		}
root_done:
		if (!saw_logs)
			shape = JS_NO_LOGS;
	} else {
		struct jfield root;
		scan_value(&s, &root, NULL);
		shape = JS_ROOT_NOT_OBJECT;
	}
	if (s.oom)
		return JS_NOMEM;
	if (!s.failed) {
		skip_ws(&s);
		if (s.p != s.end)
			fail(&s, "end of input expected");
	}
	if (s.failed)
		return JS_SYNTAX;
	return shape;
}

void jscan_result_free(struct jscan_result *res)
{
	if (!res)
		return;
	free(res->events);
	res->events = NULL;
	res->n_events = res->n_kept = 0;
}
