/* http_single.c — the `http_single` transport: one POST ROOT/api/v1/logs
 * per event, with the single-event rows of PROTOCOL.md.  The client's
 * direct send (async_mode false) goes through it too. */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http.h"
#include "transports.h"

static void single_answer(struct http_client *c, struct spool_tx_request *req, const struct http_answer *a,
			  size_t body_len)
{
	(void)c;
	(void)body_len;
	struct spool_tx_outcome *o = &req->out[0];
	long s = a->status;
	enum http_fate fate = http_fate(s, HTTP_USE_SINGLE);
	o->status = (int)s;
	if (fate == HTTP_ACCEPT) {
		o->result = SPOOL_TX_ACCEPTED;
		json_t *j = a->body_len ? json_loadb(a->body, a->body_len, 0, NULL) : NULL;
		const char *id = j ? json_string_value(json_object_get(j, "id")) : NULL;
		if (id)
			snprintf(o->id, sizeof(o->id), "%s", id);
		json_decref(j);
		return;
	}
	if (fate == HTTP_REJECT) {
		o->result = SPOOL_TX_REJECTED;
		char detail[200];
		http_detail(a, detail, sizeof(detail));
		snprintf(o->reason, sizeof(o->reason), "%s",
			 detail[0] ? detail : (s == 413 ? "too large" : "rejected"));
		return;
	}
	o->result = SPOOL_TX_RETRY;
	http_fail_call(a, fate, &req->status, "single");
}

static int single_create(const struct spool_tx_config *cfg, void **out, char *err, size_t errlen)
{
	return http_client_create(cfg, "/api/v1/logs", single_answer, (struct http_client **)out, err, errlen);
}

static void single_destroy(void *st)
{
	http_client_destroy(st);
}

static int single_submit(void *st, struct spool_tx_request *req)
{
	struct http_client *c = st;
	if (req->count != 1)
		return -EINVAL; /* SPOOL_TX_F_ONE_PER_REQUEST */
	/* the body is the event's JSON itself */
	return http_submit_events(c, req, NULL, "", "", "", 0);
}

static int single_poll(void *st, double timeout, struct spool_tx_request **done, size_t max)
{
	return http_poll(st, timeout, done, max);
}

const struct spool_transport spool_tx_http_single = {
	.abi_version = SPOOL_TRANSPORT_ABI,
	.struct_size = sizeof(struct spool_transport),
	.name = "http_single",
	.description = "POST ROOT/api/v1/logs, one event per request (libcurl, keep-alive)",
	.section = "http",
	.options = http_options,
	.noptions = HTTP_NKEYS,
	.check = http_check,
	.create = single_create,
	.destroy = single_destroy,
	.submit = single_submit,
	.poll = single_poll,
	.flags = SPOOL_TX_F_ONE_PER_REQUEST,
};
