/* cases.c — the hostile inputs of the bad-input sweep, and the UTF-8 repair
 * rule the test expects (written here from the Unicode definition of a
 * well-formed sequence, not copied from the encoder). */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "badinput.h"

#define MIB ((size_t)1 << 20)
#define KIB ((size_t)1 << 10)

/* ---- UTF-8 ---- */

/* Length of the well-formed sequence at p, 0 when p[0] starts none. */
static size_t seq_len(const unsigned char *p, size_t n)
{
	unsigned c = p[0];
	size_t need;
	uint32_t cp, min;
	if (c < 0x80)
		return 1;
	if ((c & 0xe0) == 0xc0)
		need = 2, cp = c & 0x1f, min = 0x80;
	else if ((c & 0xf0) == 0xe0)
		need = 3, cp = c & 0x0f, min = 0x800;
	else if ((c & 0xf8) == 0xf0)
		need = 4, cp = c & 0x07, min = 0x10000;
	else
		return 0; /* a continuation byte or 0xf8..0xff */
	if (n < need)
		return 0;
	for (size_t i = 1; i < need; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return 0;
		cp = cp << 6 | (p[i] & 0x3f);
	}
	if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return need;
}

bool bi_utf8_ok(const char *s, size_t len)
{
	const unsigned char *p = (const unsigned char *)s;
	for (size_t i = 0; i < len;) {
		size_t k = seq_len(p + i, len - i);
		if (!k)
			return false;
		i += k;
	}
	return true;
}

char *bi_repair(const char *s, size_t len, size_t *olen)
{
	const unsigned char *p = (const unsigned char *)s;
	char *out = malloc(len * 3 + 1);
	size_t o = 0;
	for (size_t i = 0; i < len;) {
		size_t k = seq_len(p + i, len - i);
		if (k) {
			memcpy(out + o, p + i, k);
			o += k;
			i += k;
		} else {
			memcpy(out + o, "\xef\xbf\xbd", 3);
			o += 3;
			i++;
		}
	}
	out[o] = '\0';
	*olen = o;
	return out;
}

/* ---- building cases ---- */

static struct bi_case *add(struct bi_list *l, const char *name, unsigned ways, enum bi_expect e)
{
	if (l->n == l->cap) {
		l->cap = l->cap ? l->cap * 2 : 64;
		l->c = realloc(l->c, l->cap * sizeof(*l->c));
	}
	struct bi_case *c = &l->c[l->n++];
	memset(c, 0, sizeof(*c));
	snprintf(c->name, sizeof(c->name), "%s", name);
	c->ways = ways;
	c->expect = e;
	c->msg = strdup("bad input");
	c->len = strlen(c->msg);
	return c;
}

static void words(struct bi_case *c, const char *a, const char *b, const char *d)
{
	c->words[0] = a;
	c->words[1] = b;
	c->words[2] = d;
}

static void msg(struct bi_case *c, const void *s, size_t len)
{
	free(c->msg);
	c->msg = malloc(len + 1);
	memcpy(c->msg, s, len);
	c->msg[len] = '\0';
	c->len = len;
}

#define MSG(c, lit) msg((c), (lit), sizeof(lit) - 1)

static void msg_fill(struct bi_case *c, int byte, size_t len)
{
	free(c->msg);
	c->msg = malloc(len + 1);
	memset(c->msg, byte, len);
	c->msg[len] = '\0';
	c->len = len;
}

static char *filled(int byte, size_t len)
{
	char *s = malloc(len + 1);
	memset(s, byte, len);
	s[len] = '\0';
	return s;
}

/* Tags from a NULL-terminated list of literals. */
static void tags(struct bi_case *c, const char *const *t)
{
	size_t n = 0;
	while (t[n])
		n++;
	c->tags = calloc(n + 1, sizeof(char *));
	for (size_t i = 0; i < n; i++)
		c->tags[i] = strdup(t[i]);
}

#define TAGS(c, ...) tags((c), (const char *const[]){__VA_ARGS__, NULL})

/* n distinct tags of `each` digits. */
static void tags_many(struct bi_case *c, size_t n, size_t each)
{
	c->tags = calloc(n + 1, sizeof(char *));
	for (size_t i = 0; i < n; i++) {
		c->tags[i] = malloc(each + 1);
		snprintf(c->tags[i], each + 1, "%0*zu", (int)each, i);
	}
}

static struct mlog_kv *kv(struct bi_case *c, const char *key, enum mlog_kv_type type)
{
	c->kv = realloc(c->kv, (c->nkv + 1) * sizeof(*c->kv));
	struct mlog_kv *k = &c->kv[c->nkv++];
	memset(k, 0, sizeof(*k));
	k->key = key ? strdup(key) : NULL;
	k->type = type;
	return k;
}

static void kv_str(struct bi_case *c, const char *key, const char *val)
{
	kv(c, key, MLOG_KV_STR)->s = val ? strdup(val) : NULL;
}

static void kv_dbl(struct bi_case *c, const char *key, double d)
{
	kv(c, key, MLOG_KV_DOUBLE)->d = d;
}

static void kv_int(struct bi_case *c, const char *key, int64_t i)
{
	kv(c, key, MLOG_KV_INT)->i = i;
}

static void meta(struct bi_case *c, const char *json)
{
	free(c->meta_json);
	c->meta_json = strdup(json);
}

/* {"d":{"d":...{"d":1}...}}: `levels` objects in all, the outer one included. */
static char *deep_json(size_t levels)
{
	char *s = malloc(levels * 6 + 8);
	size_t o = 0;
	for (size_t i = 0; i < levels; i++)
		o += (size_t)sprintf(s + o, i + 1 < levels ? "{\"d\":" : "{\"d\":1");
	for (size_t i = 0; i < levels; i++)
		s[o++] = '}';
	s[o] = '\0';
	return s;
}

/* The words a size refusal must hold: the size and the limit, in bytes. */
#define LIMIT_MSG    "1048576" /* MLOG_MAX_MESSAGE_BYTES */
#define LIMIT_RECORD "1114112" /* the spool's max_record_bytes default */

static void size_cases(struct bi_list *l)
{
	struct bi_case *c;
	c = add(l, "msg-0-bytes", BI_ALL, BI_ARRIVE);
	msg(c, "", 0);
	c = add(l, "msg-1-byte", BI_ALL, BI_ARRIVE);
	MSG(c, "x");
	c = add(l, "msg-1-byte-printf", BI_ASYNC, BI_ARRIVE);
	MSG(c, "%");
	c->printf_path = true;
	c = add(l, "msg-at-limit-1MiB", BI_ALL, BI_ARRIVE);
	msg_fill(c, 'a', MLOG_MAX_MESSAGE_BYTES);
	c->cmd_stdin = true;
	c = add(l, "msg-limit+1", BI_ALL, BI_REFUSE);
	msg_fill(c, 'a', MLOG_MAX_MESSAGE_BYTES + 1);
	words(c, "1048577", LIMIT_MSG, NULL);
	c->cmd_stdin = true;
	c = add(l, "msg-limit+1-printf", BI_ASYNC, BI_REFUSE);
	msg_fill(c, 'a', MLOG_MAX_MESSAGE_BYTES + 1);
	words(c, "1048577", LIMIT_MSG, NULL);
	c->printf_path = true;
	c = add(l, "msg-100MiB", BI_ALL, BI_REFUSE);
	msg_fill(c, 'b', 100 * MIB);
	words(c, "104857600", LIMIT_MSG, NULL);
	c->cmd_stdin = true;
	c = add(l, "msg-100MiB-printf", BI_ASYNC, BI_REFUSE);
	msg_fill(c, 'b', 100 * MIB);
	words(c, "104857600", LIMIT_MSG, NULL);
	c->printf_path = true;
	/* fits the spool, but its JSON (\u0001 for each byte) does not fit the
	 * 5 MiB a request may hold */
	c = add(l, "msg-1MiB-ctl-json-6MiB", BI_ALL, BI_REFUSE);
	msg_fill(c, 1, MLOG_MAX_MESSAGE_BYTES);
	words(c, "JSON", "5238784", NULL);
	c->cmd_stdin = true;
	c = add(l, "msg-800KiB-ctl-json-4.7MiB", BI_API, BI_ARRIVE);
	msg_fill(c, 1, 800 * KIB);
	/* either side of MLOG_MAX_EVENT_JSON_BYTES (5 MiB - 4 KiB) */
	c = add(l, "msg-850KiB-ctl-json-under", BI_ASYNC, BI_ARRIVE);
	msg_fill(c, 1, 850 * KIB);
	c = add(l, "msg-855KiB-ctl-json-over", BI_ASYNC, BI_REFUSE);
	msg_fill(c, 1, 855 * KIB);
	words(c, "JSON", "5238784", NULL);
	/* a producer that skips libmlog's checks: the agent must dead-letter
	 * it (413) with a reason, not lose it */
	c = add(l, "raw-json-6MiB-dead-letter", BI_RAW, BI_DEAD);
	msg_fill(c, 1, MLOG_MAX_MESSAGE_BYTES);
	words(c, "413", NULL, NULL);
	c = add(l, "msg-long-line-700KiB", BI_ALL, BI_ARRIVE);
	msg_fill(c, 'l', 700 * KIB);
	for (size_t i = 0; i < c->len; i += 97)
		c->msg[i] = (char)(' ' + i % 90);
	c->cmd_stdin = true;
}

static void utf8_cases(struct bi_list *l)
{
	static const struct {
		const char *name, *s;
	} bad[] = {
	    {"utf8-overlong-2", "a\xc0\xaf"
	                        "b"},
	    {"utf8-overlong-3", "\xe0\x80\xaf"},
	    {"utf8-overlong-4", "\xf0\x80\x80\xaf"},
	    {"utf8-overlong-nul", "x\xc0\x80y"},
	    {"utf8-surrogate-hi", "\xed\xa0\x80"},
	    {"utf8-surrogate-lo", "z\xed\xbf\xbfz"},
	    {"utf8-surrogate-pair", "\xed\xa0\xbd\xed\xb8\x80"},
	    {"utf8-truncated-mid", "a\xe2\x82"
	                           "b"},
	    {"utf8-truncated-end", "ok\xf0\x9f\x98"},
	    {"utf8-lone-cont", "\x80"},
	    {"utf8-cont-run", "\xbf\x80\x81\x82"},
	    {"utf8-ff-fe", "\xff\xfe\xff"},
	    {"utf8-above-10ffff", "\xf4\x90\x80\x80\xf5\x80\x80\x80"},
	    {"utf8-valid-mix", "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80 \xef\xbf\xbf"},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct bi_case *c = add(l, bad[i].name, BI_ALL, BI_ARRIVE);
		msg(c, bad[i].s, strlen(bad[i].s));
	}
	struct bi_case *c = add(l, "utf8-printf", BI_ASYNC, BI_ARRIVE);
	MSG(c, "\xff\xc0\xaf\xed\xa0\x80");
	c->printf_path = true;
}

static void byte_cases(struct bi_list *l)
{
	struct bi_case *c;
	c = add(l, "nul-inside", BI_API, BI_ARRIVE);
	MSG(c, "before\0after");
	c = add(l, "nul-only", BI_API, BI_ARRIVE);
	MSG(c, "\0");
	c = add(l, "nul-trailing", BI_API, BI_ARRIVE);
	MSG(c, "x\0\0\0");
	c = add(l, "nul-printf-%c", BI_ASYNC, BI_ARRIVE);
	MSG(c, "left\0right");
	c->printf_path = true;
	c = add(l, "nul-cmd-stdin", BI_CMD, BI_ARRIVE);
	MSG(c, "a\0b\0\0c");
	c->cmd_stdin = true;
	char ctl[64];
	size_t n = 0;
	for (int b = 1; b < 0x20; b++)
		ctl[n++] = (char)b;
	ctl[n++] = 0x7f;
	c = add(l, "ctl-01-1f-7f", BI_ALL, BI_ARRIVE);
	msg(c, ctl, n);
	c = add(l, "ctl-no-newline-stdin", BI_CMD, BI_ARRIVE);
	msg(c, ctl, n);
	memmove(c->msg + 9, c->msg + 10, n - 10); /* no \n: one line */
	c->len = n - 1;
	c->cmd_stdin = true;
	c = add(l, "u2028-u2029", BI_ALL, BI_ARRIVE);
	MSG(c, "line\xe2\x80\xa8sep\xe2\x80\xa9para");
	c = add(l, "quotes-backslash", BI_ALL, BI_ARRIVE);
	MSG(c, "\"\\/\\u0000\\\"'`$(x)%s%n");
	c = add(l, "many-newlines", BI_API, BI_ARRIVE);
	msg_fill(c, '\n', 10000);
	c = add(l, "crlf-escapes", BI_ALL, BI_ARRIVE);
	MSG(c, "\r\n\t\b\f\x1b[31mred\x1b[0m");
}

static void title_tag_cases(struct bi_list *l)
{
	struct bi_case *c;
	c = add(l, "title-bad-utf8-ctl", BI_ALL, BI_ARRIVE);
	c->title = strdup("T\xff\xc0\xaf\x01\n\x7f\xe2\x80\xa8\"");
	c = add(l, "title-empty", BI_ALL, BI_ARRIVE);
	c->title = strdup("");
	c = add(l, "title-100KiB", BI_ALL, BI_ARRIVE);
	c->title = filled('T', 100 * KIB);
	c = add(l, "title-2MiB", BI_API, BI_REFUSE);
	c->title = filled('T', 2 * MIB);
	words(c, "bytes", LIMIT_RECORD, NULL);
	c = add(l, "tag-empty", BI_ALL, BI_ARRIVE);
	TAGS(c, "");
	c = add(l, "tags-punctuation", BI_ALL, BI_ARRIVE);
	TAGS(c, "a,b", "\"q\"", "new\nline", "back\\slash", "{json:[1]}", " ", "tab\there");
	c = add(l, "tags-bad-utf8", BI_ALL, BI_ARRIVE);
	TAGS(c, "\xff", "\xc0\xaf", "ok\xe2\x82", "\xed\xa0\x80", "\x80x");
	c = add(l, "tags-duplicates", BI_ALL, BI_ARRIVE);
	TAGS(c, "same", "same", "same");
	c = add(l, "tags-5000", BI_API, BI_ARRIVE);
	tags_many(c, 5000, 6);
	c = add(l, "tags-65-cmd", BI_CMD, BI_REFUSE);
	tags_many(c, 65, 3);
	words(c, "64", "tag", NULL);
	c = add(l, "tags-200000", BI_API, BI_REFUSE);
	tags_many(c, 200000, 8);
	words(c, "bytes", LIMIT_RECORD, NULL);
	c = add(l, "tag-300KiB", BI_API, BI_ARRIVE);
	c->tags = calloc(2, sizeof(char *));
	c->tags[0] = filled('g', 300 * KIB);
	c = add(l, "tag-100KiB-cmd", BI_CMD, BI_ARRIVE);
	c->tags = calloc(2, sizeof(char *));
	c->tags[0] = filled('g', 100 * KIB);
	c = add(l, "tag-2MiB", BI_API, BI_REFUSE);
	c->tags = calloc(2, sizeof(char *));
	c->tags[0] = filled('g', 2 * MIB);
	words(c, "bytes", LIMIT_RECORD, NULL);
}

static void json_meta_cases(struct bi_list *l)
{
	static const struct {
		const char *name, *json;
		enum bi_expect e;
		const char *word;
	} js[] = {
	    {"meta-not-object-array", "[1,2]", BI_REFUSE, "object"},
	    {"meta-not-object-string", "\"text\"", BI_REFUSE, "object"},
	    {"meta-not-object-number", "42", BI_REFUSE, "object"},
	    {"meta-not-object-null", "null", BI_REFUSE, "object"},
	    {"meta-invalid-open", "{", BI_REFUSE, "metadata_json"},
	    {"meta-invalid-quotes", "{'a': 1}", BI_REFUSE, "metadata_json"},
	    {"meta-invalid-empty", "", BI_REFUSE, "metadata_json"},
	    {"meta-trailing-garbage", "{} x", BI_REFUSE, "metadata_json"},
	    {"meta-bad-utf8-value", "{\"a\": \"\xff\"}", BI_REFUSE, "metadata_json"},
	    {"meta-lone-surrogate-esc", "{\"a\": \"\\ud800\"}", BI_REFUSE, "metadata_json"},
	    {"meta-nul-in-key", "{\"a\\u0000b\": 1}", BI_REFUSE, "metadata_json"},
	    {"meta-duplicate-keys", "{\"a\": 1, \"a\": 2}", BI_REFUSE, "duplicate"},
	    {"meta-1e400", "{\"x\": 1e400}", BI_REFUSE, "metadata_json"},
	    {"meta-minus-1e400", "{\"x\": -1e400}", BI_REFUSE, "metadata_json"},
	    {"meta-2^64", "{\"x\": 18446744073709551616}", BI_REFUSE, "metadata_json"},
	    {"meta-2^63", "{\"x\": 9223372036854775808}", BI_REFUSE, "metadata_json"},
	    {"meta-int64-range", "{\"min\": -9223372036854775808, \"max\": 9223372036854775807}",
	     BI_ARRIVE, NULL},
	    {"meta-minus-zero", "{\"i\": -0, \"r\": -0.0, \"e\": -0e0}", BI_ARRIVE, NULL},
	    {"meta-real-edges",
	     "{\"big\": 1.7976931348623157e308, \"tiny\": 5e-324, \"tenth\": 0.1, \"e\": 1E+2}",
	     BI_ARRIVE, NULL},
	    {"meta-c_client-key", "{\"c_client\": {\"pid\": 1}}", BI_REFUSE, "c_client"},
	    {"meta-delivery-key", "{\"delivery\": {\"attempts\": 99}}", BI_REFUSE, "delivery"},
	    {"meta-hostile-keys",
	     "{\"\": 1, \"\\\"\": 2, \"\\\\\": 3, \"\\n\": 4, \"__proto__\": 5, \"\\u2028\": 6, "
	     "\"spool_seq\": 7, \"a.b[0]\": 8, \"\\u001f\": 9, \"x\": {\"c_client\": 10}}",
	     BI_ARRIVE, NULL},
	    {"meta-empty-object", "{}", BI_ARRIVE, NULL},
	    {"meta-escapes-values",
	     "{\"s\": \"\\u0000nul\\u0001\\\"\\\\\\/\\b\\f\\n\\r\\t\\u00e9\\ud83d\\ude00\"}",
	     BI_ARRIVE, NULL},
	    {"meta-mixed-types",
	     "{\"a\": [1, -2.5, true, false, null, \"s\", [], {}], \"n\": null}", BI_ARRIVE, NULL},
	};
	struct bi_case *c;
	for (size_t i = 0; i < sizeof(js) / sizeof(js[0]); i++) {
		c = add(l, js[i].name, BI_ALL, js[i].e);
		meta(c, js[i].json);
		words(c, js[i].word, NULL, NULL);
	}
	char *d;
	c = add(l, "meta-deep-1000", BI_ALL, BI_REFUSE);
	c->meta_json = deep_json(1000);
	words(c, "metadata_json", "deep", NULL);
	c = add(l, "meta-deep-100000", BI_API, BI_REFUSE);
	c->meta_json = deep_json(100000);
	words(c, "metadata_json", NULL, NULL);
	c = add(l, "meta-deep-at-limit", BI_ALL, BI_ARRIVE);
	c->meta_json = deep_json(MLOG_METADATA_MAX_DEPTH);
	c = add(l, "meta-deep-limit+1", BI_ALL, BI_REFUSE);
	c->meta_json = deep_json(MLOG_METADATA_MAX_DEPTH + 1);
	words(c, "metadata_json", "deep", NULL);
	/* several MiB: over the spool's limit for one event */
	c = add(l, "meta-3MiB", BI_API, BI_REFUSE);
	d = filled('m', 3 * MIB + 16);
	memcpy(d, "{\"blob\": \"", 10);
	memcpy(d + 3 * MIB + 14, "\"}", 2);
	c->meta_json = d;
	words(c, "bytes", LIMIT_RECORD, NULL);
	c = add(l, "meta-900KiB", BI_API, BI_ARRIVE);
	d = filled('m', 900 * KIB + 16);
	memcpy(d, "{\"blob\": \"", 10);
	memcpy(d + 900 * KIB + 14, "\"}", 2);
	c->meta_json = d;
	c = add(l, "meta-array-100000", BI_API, BI_ARRIVE);
	d = malloc(100000 * 2 + 16);
	size_t o = (size_t)sprintf(d, "{\"a\": [");
	for (int i = 0; i < 100000; i++)
		o += (size_t)sprintf(d + o, "%s0", i ? "," : "");
	sprintf(d + o, "]}");
	c->meta_json = d;
	c = add(l, "meta-key-64KiB", BI_API, BI_ARRIVE);
	d = filled('k', 64 * KIB + 16);
	d[0] = '{';
	d[1] = '"';
	memcpy(d + 64 * KIB + 10, "\": 1}", 6);
	c->meta_json = d;
}

static void typed_meta_cases(struct bi_list *l)
{
	struct bi_case *c;
	c = add(l, "kv-nan", BI_API, BI_REFUSE);
	kv_dbl(c, "x", NAN);
	words(c, "x", "finite", NULL);
	c = add(l, "kv-inf", BI_API, BI_REFUSE);
	kv_dbl(c, "x", INFINITY);
	words(c, "x", "finite", NULL);
	c = add(l, "kv-minus-inf", BI_API, BI_REFUSE);
	kv_dbl(c, "x", -INFINITY);
	words(c, "x", "finite", NULL);
	c = add(l, "kv-number-edges", BI_API, BI_ARRIVE);
	kv_int(c, "min", INT64_MIN);
	kv_int(c, "max", INT64_MAX);
	kv_dbl(c, "nzero", -0.0);
	kv_dbl(c, "dmax", DBL_MAX);
	kv_dbl(c, "dmin", DBL_MIN);
	kv_dbl(c, "denorm", 5e-324);
	kv(c, "t", MLOG_KV_BOOL)->b = true;
	c = add(l, "kv-null-string", BI_API, BI_REFUSE);
	kv_str(c, "s", NULL);
	words(c, "metadata", NULL, NULL);
	c = add(l, "kv-null-key", BI_API, BI_REFUSE);
	kv_str(c, NULL, "v");
	words(c, "metadata", NULL, NULL);
	c = add(l, "kv-bad-type", BI_API, BI_REFUSE);
	kv(c, "k", (enum mlog_kv_type)99);
	words(c, "metadata", "type", NULL);
	c = add(l, "kv-empty-key", BI_API, BI_ARRIVE);
	kv_str(c, "", "empty key");
	c = add(l, "kv-empty-key-cmd", BI_CMD, BI_REFUSE); /* -m =value */
	kv_str(c, "", "empty key");
	words(c, "KEY=VALUE", NULL, NULL);
	c = add(l, "kv-bad-utf8-key", BI_ALL, BI_REFUSE);
	kv_str(c, "k\xff", "v");
	words(c, "metadata", "UTF-8", NULL);
	c = add(l, "kv-bad-utf8-value", BI_ALL, BI_ARRIVE);
	kv_str(c, "v", "\xff\xc0\xaf\xed\xa0\x80ok\x01\n");
	c = add(l, "kv-duplicate-keys", BI_ALL, BI_REFUSE);
	kv_str(c, "dup", "1");
	kv_str(c, "dup", "2");
	words(c, "dup", "duplicate", NULL);
	c = add(l, "kv-and-json-same-key", BI_ALL, BI_REFUSE);
	kv_str(c, "both", "typed");
	meta(c, "{\"both\": \"json\"}");
	words(c, "both", "duplicate", NULL);
	c = add(l, "kv-c_client", BI_ALL, BI_REFUSE);
	kv_str(c, "c_client", "mine");
	words(c, "c_client", NULL, NULL);
	c = add(l, "kv-delivery", BI_ALL, BI_REFUSE);
	kv_str(c, "delivery", "mine");
	words(c, "delivery", NULL, NULL);
	c = add(l, "kv-10000-keys", BI_API, BI_ARRIVE);
	for (int i = 0; i < 10000; i++) {
		char k[16];
		snprintf(k, sizeof(k), "k%d", i);
		kv_int(c, k, i);
	}
	c = add(l, "kv-2MiB-value", BI_API, BI_REFUSE);
	kv(c, "v", MLOG_KV_STR)->s = filled('v', 2 * MIB);
	words(c, "bytes", LIMIT_RECORD, NULL);
}

void bi_cases(struct bi_list *l)
{
	memset(l, 0, sizeof(*l));
	size_cases(l);
	utf8_cases(l);
	byte_cases(l);
	title_tag_cases(l);
	json_meta_cases(l);
	typed_meta_cases(l);
}

void bi_cases_free(struct bi_list *l)
{
	for (size_t i = 0; i < l->n; i++) {
		struct bi_case *c = &l->c[i];
		free(c->msg);
		free(c->title);
		for (size_t k = 0; c->tags && c->tags[k]; k++)
			free(c->tags[k]);
		free(c->tags);
		free(c->meta_json);
		for (size_t k = 0; k < c->nkv; k++) {
			free((char *)c->kv[k].key);
			if (c->kv[k].type == MLOG_KV_STR)
				free((char *)c->kv[k].s);
		}
		free(c->kv);
	}
	free(l->c);
	memset(l, 0, sizeof(*l));
}
