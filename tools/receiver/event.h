/* event.h - validation of one event object against PROTOCOL.md. */
#ifndef MLOG_RECEIVER_EVENT_H
#define MLOG_RECEIVER_EVENT_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include "dedup.h"
#include "jscan.h"

/* Checks every field rule of the event object.  On success returns 0 and
 * stores the decoded client_event_id in *key.  On failure returns -1 and
 * writes "<field>: <what is wrong>" into detail (always NUL-terminated). */
int event_validate(const json_t *ev, struct dedup_key *key, char *detail,
		   size_t detail_len);

/* Decodes a 26-character Crockford base32 ULID (either case; I, L, O and U
 * are not part of the alphabet; the first character is at most 7 so the
 * value fits 128 bits).  Returns 0, or -1 when `s` is not one. */
int ulid_decode(const char *s, size_t len, struct dedup_key *key);

/* True for an RFC 3339 date-time in UTC: YYYY-MM-DDTHH:MM:SS, an optional
 * fraction of 1-9 digits, then Z (or +00:00).  Ranges are checked,
 * including the day of the month in leap years. */
bool rfc3339_utc_valid(const char *s, size_t len);

/* The fast path: returns 0 when the scanned event obeys every rule in a
 * form that needs no decoding (key filled in), or -1 when jansson and
 * event_validate() must decide.  Never accepts what event_validate()
 * would refuse. */
int event_fast_check(const struct jevent *ev, struct dedup_key *key);

#endif
