/* jscan.h - a strict one-pass JSON scanner for request bodies.
 *
 * It accepts exactly what jansson's json_loadb(JSON_ALLOW_NUL |
 * JSON_DECODE_ANY) accepts (RFC 8259, strict UTF-8, paired surrogates, no
 * NUL in keys, integers within int64, no real overflow, nesting up to
 * 2048), and on the way:
 *  - finds the events (the root value of a single, or the elements of the
 *    root object's "logs" array of a batch) and the raw bytes of each;
 *  - notes, for each event object, the type and raw text of the members
 *    that PROTOCOL.md gives rules for;
 *  - optionally writes each event as a compact JSON line: the text as
 *    received with the whitespace between tokens removed.
 * jansson stays the reference: an event this scanner cannot vouch for is
 * checked again with jansson (see event.h).
 */
#ifndef MLOG_RECEIVER_JSCAN_H
#define MLOG_RECEIVER_JSCAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "body.h"

enum jtype { J_NONE = 0, J_OBJECT, J_ARRAY, J_STRING, J_NUMBER, J_TRUE,
	     J_FALSE, J_NULL };

/* The members with rules, in PROTOCOL.md's order. */
enum jfield_id { F_MESSAGE, F_SEVERITY, F_TITLE, F_TAGS, F_TTL, F_METADATA,
		 F_CLIENT_EVENT_ID, F_TIMESTAMP, F_COUNT };

#define JF_ESCAPED 0x01	    /* string: has backslash escapes */
#define JF_INTEGER 0x02	    /* number: no fraction or exponent */
#define JF_NEGATIVE 0x04    /* number: starts with '-' */
#define JF_ALL_STRINGS 0x08 /* array: every element is a string */

struct jfield {
	const char *raw; /* string: its content between the quotes, as
			    received; other types: the value's first byte */
	uint32_t len;	 /* string: content length; number: token length */
	uint8_t type;	 /* enum jtype; J_NONE when absent */
	uint8_t flags;
	uint8_t count; /* times the key occurred (saturates at 255) */
};

struct jevent {
	uint8_t type; /* enum jtype of the event value */
	size_t raw_off, raw_len;   /* the event's bytes in the body */
	size_t line_off, line_len; /* its compact line (with '\n') */
	struct jfield f[F_COUNT];
};

enum jscan_shape {
	JS_OK = 0,
	JS_SYNTAX,	   /* not valid JSON: see err */
	JS_ROOT_NOT_OBJECT, /* batch: the root is not an object */
	JS_NO_LOGS,	   /* batch: no "logs" member */
	JS_LOGS_NOT_ARRAY, /* batch: "logs" is not an array */
	JS_NOMEM,
};

struct jscan_result {
	struct jevent *events; /* malloc'd; at most max_events + 1 kept */
	size_t n_events;       /* events found (may exceed those kept) */
	size_t n_kept;
	char err[160]; /* for JS_SYNTAX: what and where */
};

/* Scans a single-event body (batch false: the root value is the event) or
 * a batch body (batch true).  When `lines` is not NULL each kept event's
 * compact line is appended to it.  Returns an enum jscan_shape. */
int jscan_body(const char *in, size_t len, bool batch, size_t max_events,
	       struct buf *lines, struct jscan_result *res);

void jscan_result_free(struct jscan_result *res);

#endif
