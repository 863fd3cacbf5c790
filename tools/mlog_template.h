/* mlog_template.h — the events of `mlog -`, one per line, built without
 * encoding each one from scratch.
 *
 * Every line of one run shares everything but three parts: the message, the
 * client_event_id and the timestamp.  event_template_build() has the codec
 * (spool_event_encode(), the one place that knows the event's layout)
 * encode a sample event once, with a placeholder in each of those three
 * parts, and finds them in the bytes; event_template_encode() then copies
 * the sample with the line's message, a new ULID and the time put in.  The
 * build checks the result against the codec for messages of every msgpack
 * string size, and fails if they differ in one byte. */
#ifndef MLOG_TEMPLATE_H
#define MLOG_TEMPLATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "codec/event.h"
#include "codec/json.h"

struct event_template {
	struct spool_buf sample; /* the sample event, placeholders in place */
	size_t msg_at;           /* offset of the placeholder message's str header */
	size_t msg_end;          /* offset just past the placeholder message */
	size_t id_at;            /* offset of the 26 characters of the ULID */
	size_t stamp_at;         /* offset of the 27 characters of the timestamp */
};

/* Builds *t for events like ev (ev->message, client_event_id and
 * timestamp_us are ignored; every other field is used as given, and the
 * pointers in ev need not outlive the call).  0; -EINVAL when the codec
 * refuses ev (a bad field); -EPROTO when the sample's bytes cannot serve
 * as a template (the codec changed its layout: a message, id or timestamp
 * that is not one msgpack string of its own), with a sentence in err;
 * -ENOMEM; -EAGAIN when the system has no randomness to give. */
int event_template_build(struct event_template *t, const struct spool_event *ev, char *err,
                         size_t errlen);

/* Appends to *out the event for message msg[0, len) with a new
 * client_event_id and the timestamp now_us (microseconds since the epoch),
 * byte for byte what spool_event_encode() would give.  0, -ENOMEM (out is
 * then as it was), or -EAGAIN (no randomness for the ULID). */
int event_template_encode(struct event_template *t, const char *msg, size_t len, int64_t now_us,
                          struct spool_buf *out);

/* Frees what *t holds; t may be NULL. */
void event_template_free(struct event_template *t);

#endif
