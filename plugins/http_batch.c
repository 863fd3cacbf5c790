/* http_batch.c — the `http_batch` transport: POST ROOT/api/v1/logs/batch
 * with {"logs": [...]} and the batch rows of PROTOCOL.md. */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http.h"
#include "transports.h"

static void set_reason(struct spool_tx_outcome *o, const char *text)
{
	snprintf(o->reason, sizeof(o->reason), "%s", text);
}

/* 207: one result per event, in order. */
static void apply_results(json_t *results, struct spool_tx_request *req)
{
	for (size_t k = 0; k < req->count; k++) {
		struct spool_tx_outcome *o = &req->out[k];
		json_t *r = json_array_get(results, k);
		json_t *js = r ? json_object_get(r, "status") : NULL;
		json_int_t status = json_is_integer(js) ? json_integer_value(js) : 0;
		if (status < 100 || status > 599) {
			/* no verdict for this event: keep it (the server dedups) */
			o->result = SPOOL_TX_RETRY;
			set_reason(o, "207 without a result for this event");
			continue;
		}
		int s = (int)status;
		const char *id = json_string_value(json_object_get(r, "id"));
		const char *detail = json_string_value(json_object_get(r, "detail"));
		o->status = s;
		switch (http_fate(s, HTTP_USE_RESULT)) {
		case HTTP_ACCEPT:
			o->result = SPOOL_TX_ACCEPTED;
			if (id)
				snprintf(o->id, sizeof(o->id), "%s", id);
			break;
		case HTTP_REJECT:
			o->result = SPOOL_TX_REJECTED;
			set_reason(o, detail ? detail : "rejected");
			break;
		default:
			o->result = SPOOL_TX_RETRY;
			set_reason(o, detail ? detail : "kept");
		}
	}
}

/* A request the server refused as a whole because of its size or some
 * event in it: halves when it holds several events; its one event is
 * rejected for good otherwise. */
static void refuse_whole(struct spool_tx_request *req, int call, long status, const char *msg)
{
	req->status.status = (int)status;
	snprintf(req->status.message, sizeof(req->status.message), "%s", msg);
	if (req->count > 1) {
		req->status.call = call;
		return;
	}
	req->out[0].result = SPOOL_TX_REJECTED;
	req->out[0].status = (int)status;
	set_reason(&req->out[0], msg);
}

static void batch_answer(struct http_client *c, struct spool_tx_request *req, const struct http_answer *a,
			 size_t body_len)
{
	(void)c;
	long s = a->status;
	req->status.status = (int)s;
	req->status.retry_after = a->retry_after;
	char detail[160], msg[240];
	enum http_fate fate = http_fate(s, HTTP_USE_BATCH);
	switch (fate) {
	case HTTP_ACCEPT:
		/* every event; the ids the body may list are not needed to
		 * delete, so it is not even parsed */
		for (size_t k = 0; k < req->count; k++) {
			req->out[k].result = SPOOL_TX_ACCEPTED;
			req->out[k].status = (int)s;
		}
		return;
	case HTTP_PER_EVENT: {
		/* A 207 says that not every event was taken.  Without a readable
		 * results array nobody knows which ones were: acknowledging them
		 * all would delete events the server never stored.  Several
		 * events go again one by one, where each gets its own answer
		 * (the server dedups those it has); a single one is kept. */
		json_t *j = a->body_len ? json_loadb(a->body, a->body_len, 0, NULL) : NULL;
		json_t *results = j ? json_object_get(j, "results") : NULL;
		bool readable = json_is_array(results);
		if (readable)
			apply_results(results, req);
		json_decref(j);
		if (readable)
			return;
		snprintf(req->status.message, sizeof(req->status.message), "207 without a readable results array");
		if (req->count > 1) {
			req->status.call = SPOOL_TXC_ISOLATE;
			return;
		}
		req->out[0].result = SPOOL_TX_RETRY;
		set_reason(&req->out[0], req->status.message);
		return;
	}
	case HTTP_FALLBACK:
		req->status.call = SPOOL_TXC_FALLBACK;
		snprintf(req->status.message, sizeof(req->status.message), "batch endpoint answered %ld", s);
		return;
	case HTTP_SPLIT:
		/* for a single event this becomes its dead-letter reason: say
		 * how large it was and what the server said */
		http_detail(a, detail, sizeof(detail));
		snprintf(msg, sizeof(msg), "batch of %zu events (%zu bytes of JSON): %ld too large%s%s", req->count,
			 body_len, s, detail[0] ? ": " : "", detail);
		refuse_whole(req, SPOOL_TXC_SPLIT, s, msg);
		return;
	case HTTP_BISECT:
		/* one bad event in n costs at most 2*ceil(log2 n)+1 requests */
		http_detail(a, detail, sizeof(detail));
		snprintf(msg, sizeof(msg), "%ld %s", s, detail);
		refuse_whole(req, SPOOL_TXC_SPLIT, s, msg);
		return;
	default:
		http_fail_call(a, fate, &req->status, "batch");
	}
}

static int batch_create(const struct spool_tx_config *cfg, void **out, char *err, size_t errlen)
{
	return http_client_create(cfg, "/api/v1/logs/batch", batch_answer, (struct http_client **)out, err,
				  errlen);
}

static void batch_destroy(void *st)
{
	http_client_destroy(st);
}

/* The body: {"logs":[event,event,...]}, read from the events as it goes
 * out (http_submit_events()). */
#define BATCH_OPEN "{\"logs\":["
#define BATCH_SEP ","
#define BATCH_CLOSE "]}"

static int batch_submit(void *st, struct spool_tx_request *req)
{
	struct http_client *c = st;
	if (req->count == 0)
		return -EINVAL;
	size_t len = http_events_len(req, BATCH_OPEN, BATCH_SEP, BATCH_CLOSE);
	size_t maxb = http_config(c)->max_body_bytes;
	if (maxb && req->count > 1 && len > maxb) {
		req->status.call = SPOOL_TXC_SPLIT;
		snprintf(req->status.message, sizeof(req->status.message),
			 "batch body of %zu bytes is over max_batch_bytes %zu", len, maxb);
		http_finish_now(c, req);
		return 0;
	}
	/* Idempotency-Key: <client_event_id of the first event>-<count> */
	char idem[128];
	const struct spool_tx_event *first = &req->events[0];
	if (first->client_event_id && strlen(first->client_event_id) < 90)
		snprintf(idem, sizeof(idem), "%s-%zu", first->client_event_id, req->count);
	else
		snprintf(idem, sizeof(idem), "seq%llu-%zu", (unsigned long long)first->seq, req->count);
	return http_submit_events(c, req, idem, BATCH_OPEN, BATCH_SEP, BATCH_CLOSE, len);
}

static int batch_poll(void *st, double timeout, struct spool_tx_request **done, size_t max)
{
	return http_poll(st, timeout, done, max);
}

const struct spool_transport spool_tx_http_batch = {
	.abi_version = SPOOL_TRANSPORT_ABI,
	.struct_size = sizeof(struct spool_transport),
	.name = "http_batch",
	.description = "POST ROOT/api/v1/logs/batch (libcurl, keep-alive, requests in flight)",
	.section = "http",
	.options = http_options,
	.noptions = HTTP_NKEYS,
	.check = http_check,
	.create = batch_create,
	.destroy = batch_destroy,
	.submit = batch_submit,
	.poll = batch_poll,
};
