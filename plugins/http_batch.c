/* http_batch.c — the `http_batch` transport: POST ROOT/api/v1/logs/batch
 * with {"logs": [...]} and the batch rows of PROTOCOL.md. */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http.h"

struct batch_state {
	struct http_conn conn;
	struct spool_buf body;
	size_t *map; /* body position -> event index */
	size_t map_cap;
};

static int batch_create(const struct spool_tx_config *cfg, void **out, char *err, size_t errlen)
{
	struct batch_state *st = calloc(1, sizeof(*st));
	if (!st) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	int rc = http_conn_init(&st->conn, cfg, "/api/v1/logs/batch", err, errlen);
	if (rc) {
		free(st);
		return rc;
	}
	*out = st;
	return 0;
}

static void batch_destroy(void *p)
{
	struct batch_state *st = p;
	if (!st)
		return;
	http_conn_fini(&st->conn);
	spool_buf_free(&st->body);
	free(st->map);
	free(st);
}

static void set_reason(struct spool_tx_outcome *o, const char *text)
{
	snprintf(o->reason, sizeof(o->reason), "%s", text);
}

/* 207: one result per event, in order. */
static void apply_results(json_t *results, const size_t *map, size_t n,
			  struct spool_tx_outcome *out)
{
	for (size_t k = 0; k < n; k++) {
		struct spool_tx_outcome *o = &out[map[k]];
		json_t *r = json_array_get(results, k);
		json_t *js = r ? json_object_get(r, "status") : NULL;
		if (!json_is_integer(js)) {
			/* no verdict for this event: keep it (the server dedups) */
			o->result = SPOOL_TX_RETRY;
			set_reason(o, "207 without a result for this event");
			continue;
		}
		int s = (int)json_integer_value(js);
		const char *id = json_string_value(json_object_get(r, "id"));
		const char *detail = json_string_value(json_object_get(r, "detail"));
		o->status = s;
		if (s >= 200 && s < 300) {
			o->result = SPOOL_TX_ACCEPTED;
			if (id)
				snprintf(o->id, sizeof(o->id), "%s", id);
		} else if (s == 401 || s == 403 || s == 404 || s == 408 || s == 429) {
			o->result = SPOOL_TX_RETRY;
			set_reason(o, detail ? detail : "kept");
		} else if (s >= 400 && s < 500) {
			o->result = SPOOL_TX_REJECTED;
			set_reason(o, detail ? detail : "rejected");
		} else {
			o->result = SPOOL_TX_RETRY;
			set_reason(o, detail ? detail : "retry");
		}
	}
}

static void accept_all(const size_t *map, size_t n, struct spool_tx_outcome *out, int status)
{
	for (size_t k = 0; k < n; k++) {
		struct spool_tx_outcome *o = &out[map[k]];
		o->result = SPOOL_TX_ACCEPTED;
		o->status = status;
	}
}

static int batch_send(void *p, const struct spool_tx_batch *b, struct spool_tx_outcome *out,
		      struct spool_tx_status *call)
{
	struct batch_state *st = p;
	if (st->map_cap < b->count) {
		size_t *m = realloc(st->map, b->count * sizeof(*m));
		if (!m)
			return -ENOMEM;
		st->map = m;
		st->map_cap = b->count;
	}
	st->body.len = 0;
	if (spool_buf_append(&st->body, "{\"logs\":[", 9))
		return -ENOMEM;
	size_t n = 0;
	for (size_t i = 0; i < b->count; i++) {
		const struct spool_tx_event *ev = &b->events[i];
		struct spool_json_extra x = {.flags = SPOOL_JSON_SEQ, .spool_seq = ev->seq};
		if (b->delivery_metadata) {
			x.flags |= SPOOL_JSON_DELIVERY;
			x.attempts = ev->attempts + 1;
			x.spooled_seconds = (double)(b->now_us - ev->enqueue_us) / 1e6;
		}
		if (n && spool_buf_append(&st->body, ",", 1))
			return -ENOMEM;
		int rc = spool_event_to_json(ev->data, ev->len, &x, &st->body);
		if (rc == -EINVAL) {
			if (n)
				st->body.len--; /* the comma */
			out[i].result = SPOOL_TX_REJECTED;
			out[i].status = SPOOL_ECORRUPT;
			set_reason(&out[i], "stored event is not a well-formed msgpack map");
			continue;
		}
		if (rc)
			return rc;
		st->map[n++] = i;
	}
	if (n == 0)
		return 0;
	if (spool_buf_append(&st->body, "]}", 2))
		return -ENOMEM;
	size_t maxb = st->conn.cfg->max_body_bytes;
	if (maxb && n > 1 && st->body.len > maxb) {
		call->call = SPOOL_TXC_SPLIT;
		snprintf(call->message, sizeof(call->message),
			 "batch body of %zu bytes is over max_batch_bytes %zu", st->body.len, maxb);
		return 0;
	}
	/* Idempotency-Key: <client_event_id of the first event>-<count> */
	char idem[128];
	const struct spool_tx_event *first = &b->events[st->map[0]];
	if (first->client_event_id && first->client_event_id_len < 90)
		snprintf(idem, sizeof(idem), "%.*s-%zu", (int)first->client_event_id_len,
			 first->client_event_id, n);
	else
		snprintf(idem, sizeof(idem), "seq%llu-%zu", (unsigned long long)first->seq, n);

	struct http_answer a;
	int rc = http_conn_post(&st->conn, st->body.data, st->body.len, idem, &a, call->message,
				sizeof(call->message));
	if (rc)
		return rc;
	long s = a.status;
	call->status = (int)s;
	call->retry_after = a.retry_after;
	if (s >= 200 && s < 300) {
		/* 207: one verdict per event.  Any other 2xx acknowledges the
		 * whole batch whatever its body says; the ids it may list are
		 * not needed to delete, so the body is not even parsed. */
		if (s != 207) {
			accept_all(st->map, n, out, (int)s);
			return 0;
		}
		/* A 207 says that not every event was taken.  Without a
		 * readable results array nobody knows which ones were:
		 * acknowledging them all would delete events the server never
		 * stored.  Several events are sent again one by one, where each
		 * gets its own answer (the server dedups those it has); a
		 * single one is kept for a later retry. */
		json_t *j = a.body_len ? json_loadb(a.body, a.body_len, 0, NULL) : NULL;
		json_t *results = j ? json_object_get(j, "results") : NULL;
		bool readable = json_is_array(results);
		if (readable)
			apply_results(results, st->map, n, out);
		json_decref(j);
		if (readable)
			return 0;
		snprintf(call->message, sizeof(call->message),
			 "207 without a readable results array");
		if (n > 1) {
			call->call = SPOOL_TXC_ISOLATE;
			return 0;
		}
		for (size_t k = 0; k < n; k++) {
			out[st->map[k]].result = SPOOL_TX_RETRY;
			set_reason(&out[st->map[k]], call->message);
		}
		return 0;
	}
	char detail[160];
	switch (s) {
	case 404:
	case 405:
	case 501:
		call->call = SPOOL_TXC_FALLBACK;
		snprintf(call->message, sizeof(call->message), "batch endpoint answered %ld", s);
		return 0;
	case 413:
		call->call = SPOOL_TXC_SPLIT;
		/* for a single event this becomes its dead-letter reason: say
		 * how large it was and what the server said */
		http_detail(&a, detail, sizeof(detail));
		snprintf(call->message, sizeof(call->message),
			 "batch of %zu events (%zu bytes of JSON): 413 too large%s%s", n, st->body.len,
			 detail[0] ? ": " : "", detail);
		return 0;
	case 400:
	case 422:
		call->call = SPOOL_TXC_ISOLATE;
		http_detail(&a, detail, sizeof(detail));
		snprintf(call->message, sizeof(call->message), "%ld %s", s, detail);
		return 0;
	default:
		http_classify_failure(&st->conn, &a, call, "batch");
		return 0;
	}
}

SPOOL_TRANSPORT_EXPORT const struct spool_transport spool_transport_entry = {
	.abi_version = SPOOL_TRANSPORT_ABI,
	.struct_size = sizeof(struct spool_transport),
	.name = "http_batch",
	.description = "POST ROOT/api/v1/logs/batch (libcurl, keep-alive)",
	.create = batch_create,
	.destroy = batch_destroy,
	.send = batch_send,
};
