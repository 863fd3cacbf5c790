/* mlog_template.c — the events of `mlog -` from one sample encoded by the
 * codec (see mlog_template.h). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "mlog_template.h"

#define PLACEHOLDER_LEN 32    /* characters of the placeholder message */
#define BUILD_ATTEMPTS  8     /* fresh placeholders tried when one is not unique */
#define CHECK_BYTES     70000 /* the longest message of the check against the codec */

/* 1 January 2001 and one year in microseconds: placeholder times lie there */
#define PLACEHOLDER_EPOCH_US 978307200000000LL
#define YEAR_US              (365LL * 86400 * 1000000)

static const char CROCKFORD[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/* The msgpack str header for a string of len bytes, as msgpack-c writes it
 * (the smallest form); returns its size. */
static size_t str_header(size_t len, unsigned char out[5])
{
	if (len < 32) {
		out[0] = (unsigned char)(0xa0 | len);
		return 1;
	}
	if (len < 256) {
		out[0] = 0xd9;
		out[1] = (unsigned char)len;
		return 2;
	}
	if (len < 65536) {
		out[0] = 0xda;
		out[1] = (unsigned char)(len >> 8);
		out[2] = (unsigned char)len;
		return 3;
	}
	out[0] = 0xdb;
	for (int i = 0; i < 4; i++)
		out[1 + i] = (unsigned char)(len >> (24 - 8 * i));
	return 5;
}

/* The offset of the only occurrence of s[0, n) in the sample, preceded by
 * its own msgpack str header; false when it is absent, occurs twice, or is
 * not a string of its own. */
static bool find_once(const struct spool_buf *b, const char *s, size_t n, size_t *at)
{
	const char *p = memmem(b->data, b->len, s, n);
	if (!p)
		return false;
	size_t off = (size_t)(p - b->data);
	if (memmem(p + 1, b->len - off - 1, s, n))
		return false;
	unsigned char h[5];
	size_t hl = str_header(n, h);
	if (off < hl || memcmp(b->data + off - hl, h, hl) != 0)
		return false;
	*at = off;
	return true;
}

/* Where the part at offset `at` of the sample (the id or the timestamp)
 * lies in an event whose message str, header included, is `msg_bytes`
 * long: before the message it stays; after it, it moves by the change in
 * the message's size. */
static size_t part_at(const struct event_template *t, size_t at, size_t msg_bytes)
{
	return at < t->msg_at ? at : at - t->msg_end + t->msg_at + msg_bytes;
}

int event_template_encode(struct event_template *t, const char *msg, size_t len, int64_t now_us,
                          struct spool_buf *out)
{
	unsigned char h[5];
	size_t hl = str_header(len, h);
	size_t head = t->msg_at, tail = t->sample.len - t->msg_end;
	int rc = spool_buf_reserve(out, head + hl + len + tail);
	if (rc)
		return rc;
	char id[SPOOL_ULID_LEN + 1], when[SPOOL_TIMESTAMP_LEN + 1];
	rc = spool_ulid_new(id);
	if (rc)
		return rc;
	spool_timestamp_format(now_us, when);
	char *ev = out->data + out->len;
	memcpy(ev, t->sample.data, head);
	memcpy(ev + head, h, hl);
	memcpy(ev + head + hl, msg, len);
	memcpy(ev + head + hl + len, t->sample.data + t->msg_end, tail);
	memcpy(ev + part_at(t, t->id_at, hl + len), id, SPOOL_ULID_LEN);
	memcpy(ev + part_at(t, t->stamp_at, hl + len), when, SPOOL_TIMESTAMP_LEN);
	out->len += head + hl + len + tail;
	out->data[out->len] = '\0';
	return 0;
}

/* Encodes the sample with fresh placeholders and finds them: 0, 1 when a
 * placeholder is not unique in it (try others), or an error. */
static int try_sample(struct event_template *t, const struct spool_event *ev)
{
	unsigned char rnd[PLACEHOLDER_LEN + 8];
	if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd))
		return -EAGAIN;
	char msg[PLACEHOLDER_LEN];
	for (size_t i = 0; i < PLACEHOLDER_LEN; i++)
		msg[i] = CROCKFORD[rnd[i] & 31];
	uint64_t r = 0;
	memcpy(&r, rnd + PLACEHOLDER_LEN, sizeof(r));
	int64_t when_us = PLACEHOLDER_EPOCH_US + (int64_t)(r % (uint64_t)YEAR_US);
	char id[SPOOL_ULID_LEN + 1], when[SPOOL_TIMESTAMP_LEN + 1];
	int rc = spool_ulid_new(id);
	if (rc)
		return rc;
	spool_timestamp_format(when_us, when);

	struct spool_event e = *ev;
	e.message = msg;
	e.message_len = PLACEHOLDER_LEN;
	e.client_event_id = id;
	e.timestamp_us = when_us;
	t->sample.len = 0;
	rc = spool_event_encode(&e, &t->sample, NULL);
	if (rc)
		return rc;
	size_t at;
	if (!find_once(&t->sample, msg, PLACEHOLDER_LEN, &at) ||
	    !find_once(&t->sample, id, SPOOL_ULID_LEN, &t->id_at) ||
	    !find_once(&t->sample, when, SPOOL_TIMESTAMP_LEN, &t->stamp_at))
		return 1;
	unsigned char h[5];
	t->msg_at = at - str_header(PLACEHOLDER_LEN, h);
	t->msg_end = at + PLACEHOLDER_LEN;
	return 0;
}

/* Events from the template and from the codec, for messages of each size
 * of msgpack string header (and at the edges between them), must be the
 * same bytes.  0, -EPROTO when they differ, or an error. */
static int check_against_codec(struct event_template *t, const struct spool_event *ev)
{
	static const size_t sizes[] = {0, 1, 31, 32, 255, 256, 65535, 65536, CHECK_BYTES};
	char *msg = malloc(CHECK_BYTES);
	struct spool_buf mine = {0}, codec = {0};
	int rc = msg ? 0 : -ENOMEM;
	for (size_t i = 0; i < CHECK_BYTES && msg; i++)
		msg[i] = (char)(i * 7 + 1); /* NUL, control and non-UTF-8 bytes too */
	for (size_t k = 0; !rc && k < sizeof(sizes) / sizeof(sizes[0]); k++) {
		mine.len = 0;
		codec.len = 0;
		int64_t when_us = PLACEHOLDER_EPOCH_US + (int64_t)k * 1234567;
		rc = event_template_encode(t, msg, sizes[k], when_us, &mine);
		if (rc)
			break;
		/* the codec gets the id and the time the template chose */
		unsigned char h[5];
		char id[SPOOL_ULID_LEN + 1];
		memcpy(id, mine.data + part_at(t, t->id_at, str_header(sizes[k], h) + sizes[k]),
		       SPOOL_ULID_LEN);
		id[SPOOL_ULID_LEN] = '\0';
		struct spool_event e = *ev;
		e.message = msg;
		e.message_len = sizes[k];
		e.client_event_id = id;
		e.timestamp_us = when_us;
		rc = spool_event_encode(&e, &codec, NULL);
		if (rc)
			break;
		if (mine.len != codec.len || memcmp(mine.data, codec.data, mine.len) != 0)
			rc = -EPROTO;
	}
	free(msg);
	spool_buf_free(&mine);
	spool_buf_free(&codec);
	return rc;
}

int event_template_build(struct event_template *t, const struct spool_event *ev, char *err,
                         size_t errlen)
{
	*t = (struct event_template){0};
	int rc = 1;
	for (int i = 0; i < BUILD_ATTEMPTS && rc == 1; i++)
		rc = try_sample(t, ev);
	if (rc == 1) {
		snprintf(err, errlen,
		         "the event's message, client_event_id and timestamp are not each one "
		         "msgpack string of their own");
		rc = -EPROTO;
	} else if (rc == 0) {
		rc = check_against_codec(t, ev);
		if (rc == -EPROTO)
			snprintf(err, errlen,
			         "events built from the template differ from the codec's");
	}
	if (rc == -EINVAL)
		snprintf(err, errlen, "the event's options are refused by the encoder");
	else if (rc && rc != -EPROTO)
		snprintf(err, errlen, "%s", strerror(-rc));
	if (rc)
		event_template_free(t);
	return rc;
}

void event_template_free(struct event_template *t)
{
	if (!t)
		return;
	spool_buf_free(&t->sample);
	*t = (struct event_template){0};
}
