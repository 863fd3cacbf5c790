/* http_single.c — the `http_single` transport: one POST ROOT/api/v1/logs per
 * event, with the single-event rows of PROTOCOL.md.  Stops at the first
 * answer that concerns the whole endpoint (401/403, 404/405/501, transient);
 * the events not reached stay SPOOL_TX_RETRY. */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http.h"

struct single_state {
	struct http_conn conn;
	struct spool_buf body;
};

static int single_create(const struct spool_tx_config *cfg, void **out, char *err, size_t errlen)
{
	struct single_state *st = calloc(1, sizeof(*st));
	if (!st) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	int rc = http_conn_init(&st->conn, cfg, "/api/v1/logs", err, errlen);
	if (rc) {
		free(st);
		return rc;
	}
	*out = st;
	return 0;
}

static void single_destroy(void *p)
{
	struct single_state *st = p;
	if (!st)
		return;
	http_conn_fini(&st->conn);
	spool_buf_free(&st->body);
	free(st);
}

static int single_send(void *p, const struct spool_tx_batch *b, struct spool_tx_outcome *out,
		       struct spool_tx_status *call)
{
	struct single_state *st = p;
	for (size_t i = 0; i < b->count; i++) {
		const struct spool_tx_event *ev = &b->events[i];
		struct spool_tx_outcome *o = &out[i];
		struct spool_json_extra x = {.flags = SPOOL_JSON_SEQ, .spool_seq = ev->seq};
		if (b->delivery_metadata) {
			x.flags |= SPOOL_JSON_DELIVERY;
			x.attempts = ev->attempts + 1;
			x.spooled_seconds = (double)(b->now_us - ev->enqueue_us) / 1e6;
		}
		st->body.len = 0;
		int rc = spool_event_to_json(ev->data, ev->len, &x, &st->body);
		if (rc == -EINVAL) {
			o->result = SPOOL_TX_REJECTED;
			o->status = SPOOL_ECORRUPT;
			snprintf(o->reason, sizeof(o->reason), "stored event is not a well-formed msgpack map");
			continue;
		}
		if (rc)
			return rc;
		struct http_answer a;
		rc = http_conn_post(&st->conn, st->body.data, st->body.len, NULL, &a, call->message,
				    sizeof(call->message));
		if (rc)
			return rc;
		long s = a.status;
		o->status = (int)s;
		if (s >= 200 && s < 300) {
			o->result = SPOOL_TX_ACCEPTED;
			json_t *j = a.body_len ? json_loadb(a.body, a.body_len, 0, NULL) : NULL;
			const char *id = j ? json_string_value(json_object_get(j, "id")) : NULL;
			if (id)
				snprintf(o->id, sizeof(o->id), "%s", id);
			json_decref(j);
			continue;
		}
		if (s == 400 || s == 422 || s == 413) {
			o->result = SPOOL_TX_REJECTED;
			char detail[200];
			http_detail(&a, detail, sizeof(detail));
			snprintf(o->reason, sizeof(o->reason), "%s", detail[0] ? detail : (s == 413 ? "too large" : "rejected"));
			continue;
		}
		o->result = SPOOL_TX_RETRY;
		if (s == 404 || s == 405 || s == 501) {
			call->call = SPOOL_TXC_MISSING;
			call->status = (int)s;
			snprintf(call->message, sizeof(call->message),
				 "single-event endpoint answered %ld: check the endpoint", s);
		} else {
			http_classify_failure(&st->conn, &a, call, "single");
		}
		return 0;
	}
	return 0;
}

SPOOL_TRANSPORT_EXPORT const struct spool_transport spool_transport_entry = {
	.abi_version = SPOOL_TRANSPORT_ABI,
	.struct_size = sizeof(struct spool_transport),
	.name = "http_single",
	.description = "POST ROOT/api/v1/logs, one event per request (libcurl, keep-alive)",
	.create = single_create,
	.destroy = single_destroy,
	.send = single_send,
	.flags = SPOOL_TX_F_REQUEST_PER_EVENT,
};
