/* json.h — the streaming msgpack-to-JSON encoder of master-log-spool.
 *
 * Turns one stored event (a msgpack map, docs/event-format.md) into the JSON
 * event object of the Master Log ingest API, straight from the stored bytes,
 * without building a tree.  The output is always valid UTF-8 JSON:
 *   - str: bytes that are not valid UTF-8 become U+FFFD, one per bad byte;
 *     `"` and `\` are escaped; control characters below 0x20 and 0x7f as
 *     \u00XX (\n \r \t \b \f in their short forms);
 *   - bin: a base64 string; ext: null; nil: null; bool, int: as is;
 *   - float: shortest form that reads back to the same value (with ".0" when
 *     it would otherwise look like an integer); NaN and infinities: null;
 *   - map keys that are not strings: a string holding their JSON text (in
 *     which a key that is a map or an array becomes "null", so nested keys
 *     cannot double the output per level);
 *   - containers nested deeper than SPOOL_JSON_MAX_DEPTH (the event map is
 *     depth 1) become null.
 * With extra->flags & SPOOL_JSON_SEQ the encoder adds
 * metadata.c_client.spool_seq (creating `metadata` and `c_client` when
 * absent, replacing a stored `spool_seq`); with SPOOL_JSON_DELIVERY it adds
 * metadata.delivery {"attempts", "spooled_seconds"} (replacing a stored one).
 * A `metadata` or `c_client` that is not a map is written as stored and gets
 * nothing added.
 */
#ifndef SPOOL_JSON_H
#define SPOOL_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <spool/spool.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SPOOL_JSON_MAX_DEPTH 64

/* A growable byte buffer.  Zero-initialised (or spool_buf_init()) it is
 * empty; data is NUL-terminated whenever len > 0 after a spool_* append. */
struct spool_buf {
	char *data;
	size_t len;
	size_t cap;
	bool borrowed; /* data is the caller's storage (spool_buf_init_with) */
};

void spool_buf_init(struct spool_buf *b);
/* An empty buffer writing into the caller's storage[0, cap) until it needs
 * more, then into memory of its own (a common path without malloc).
 * spool_buf_free() frees only memory the buffer allocated; storage must
 * outlive the buffer's use of it. */
void spool_buf_init_with(struct spool_buf *b, void *storage, size_t cap);
/* Makes room for `extra` more bytes (plus a NUL); 0 or -ENOMEM. */
int spool_buf_reserve(struct spool_buf *b, size_t extra);
int spool_buf_append(struct spool_buf *b, const void *p, size_t n);
/* Frees the memory and empties the buffer; NULL is allowed. */
void spool_buf_free(struct spool_buf *b);

enum {
	SPOOL_JSON_SEQ = 1u << 0,      /* inject metadata.c_client.spool_seq */
	SPOOL_JSON_DELIVERY = 1u << 1, /* inject metadata.delivery */
};

/* What the encoder keeps from one event to the next (the last c_client
 * block, stored and encoded), so that a run of events from one process
 * encodes that block once.  Zero-initialised it is empty; one memo per
 * thread of calls. */
struct spool_json_memo {
	unsigned flags;
	bool empty;	  /* the block had no member written */
	size_t raw_len;	  /* 0: nothing kept */
	size_t json_len;
	unsigned char raw[512];
	char json[1024];
};

struct spool_json_extra {
	unsigned flags;		/* SPOOL_JSON_* */
	uint64_t spool_seq;	/* SPOOL_JSON_SEQ */
	uint32_t attempts;	/* SPOOL_JSON_DELIVERY */
	double spooled_seconds; /* SPOOL_JSON_DELIVERY */
	struct spool_json_memo *memo; /* optional (NULL: none), used with SPOOL_JSON_SEQ */
};

/* Appends the JSON object for the msgpack map in mp[0..len) to *out.
 * extra may be NULL (nothing injected).  Returns 0; -EINVAL when mp does not
 * hold exactly one well-formed msgpack map (out is then left as it was);
 * -ENOMEM. */
int spool_event_to_json(const void *mp, size_t len, const struct spool_json_extra *extra,
				  struct spool_buf *out);
/* The same, and on the way, as spool_event_get_str() would: *val and *vlen
 * get the first string value of the top-level member `key` (pointing into
 * mp), or NULL and 0 when there is none.  One pass over the event instead
 * of two. */
int spool_event_to_json_find(const void *mp, size_t len, const struct spool_json_extra *extra,
			     struct spool_buf *out, const char *key, const char **val,
			     size_t *vlen);

/* Appends s[0..len) as a JSON string (quotes included) under the rules
 * above.  0 or -ENOMEM. */
int spool_json_string(struct spool_buf *out, const void *s, size_t len);

/* Finds the string member `key` of the top-level msgpack map in mp[0, len).
 * 0 with *val and *vlen pointing into mp; SPOOL_ENOTFOUND when absent or not a
 * string; -EINVAL when mp is not a well-formed map. */
int spool_event_get_str(const void *mp, size_t len, const char *key, const char **val,
				  size_t *vlen);

#ifdef __cplusplus
}
#endif
#endif
