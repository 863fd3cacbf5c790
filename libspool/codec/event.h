/* event.h — building the event a producer spools (docs/event-format.md):
 * client_event_id (ULID), timestamp, the metadata.c_client block, and the
 * msgpack map the spool stores. */
#ifndef SPOOL_EVENT_H
#define SPOOL_EVENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "codec/json.h"
#include <spool/spool.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SPOOL_ULID_LEN 26      /* characters, without the NUL */
#define SPOOL_TIMESTAMP_LEN 27 /* "2026-11-24T14:29:21.123456Z" */

/* A new ULID: 48 bits of milliseconds since the epoch and 80 random bits, in
 * Crockford base32.  Strictly increasing within a process (several in one
 * millisecond count the random part up), and drawn afresh after fork().
 * out gets 26 characters and a NUL.  0, or -EAGAIN if the system has no
 * randomness to give. */
int spool_ulid_new(char out[SPOOL_ULID_LEN + 1]);

/* Formats microseconds since the epoch as RFC 3339 UTC with microseconds. */
void spool_timestamp_format(int64_t us, char out[SPOOL_TIMESTAMP_LEN + 1]);

/* A typed metadata value. */
enum spool_kv_type {
	SPOOL_KV_STR = 0,
	SPOOL_KV_INT = 1,
	SPOOL_KV_DOUBLE = 2,
	SPOOL_KV_BOOL = 3,
};

struct spool_kv {
	const char *key;
	enum spool_kv_type type;
	const char *s; /* SPOOL_KV_STR */
	int64_t i;     /* SPOOL_KV_INT */
	double d;      /* SPOOL_KV_DOUBLE */
	bool b;	       /* SPOOL_KV_BOOL */
};

struct spool_event {
	const char *message; /* required; may be "" */
	size_t message_len;  /* SIZE_MAX: strlen(message) */
	int severity;	     /* enum spool_severity */
	const char *title;   /* NULL: none */
	const char *const *tags;	/* NULL-terminated, or NULL */
	int64_t ttl_seconds;		/* 0: none; else > 0 */
	const struct spool_kv *metadata; /* nmetadata typed user values */
	size_t nmetadata;
	const char *client_event_id; /* NULL: a new ULID */
	int64_t timestamp_us;	     /* 0: now */
	bool no_client_block;	     /* true: leave out metadata.c_client */
	/* Appended fields (the client API): */
	const char *fqdn;	   /* c_client.fqdn; NULL: left out */
	const void *metadata_raw;  /* metadata_raw_count msgpack key/value pairs, */
	size_t metadata_raw_len;   /* packed back to back, added to metadata */
	size_t metadata_raw_count; /* after the typed values */
};

/* Encodes ev as the msgpack map of docs/event-format.md, appended to *out.
 * id (may be NULL) gets the event's client_event_id.  The c_client block
 * holds hostname, pid, process_name, cwd and library_version, and fqdn when
 * ev->fqdn is set (the client API resolves it once without blocking a log
 * call).
 * Returns 0; -EINVAL for a NULL message, a severity out of range, a
 * ttl_seconds below 0, a metadata entry without a key or of an unknown type,
 * a client_event_id that is not 26 Crockford base32 characters; -ENOMEM. */
int spool_event_encode(const struct spool_event *ev, struct spool_buf *out,
				 char id[SPOOL_ULID_LEN + 1]);

#ifdef __cplusplus
}
#endif
#endif
