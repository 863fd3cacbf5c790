/* nats.c — the `nats` transport (a shared object, nats.so): publishes each
 * event's JSON to a NATS JetStream stream with `Nats-Msg-Id:
 * <client_event_id>`, and calls an event accepted only on the stream's
 * PubAck (a duplicate's too; the id kept is `stream:sequence`).
 *
 * The publishes are plain NATS messages with a reply subject of our own
 * inbox, `<inbox>.<request>.<event>`, so that each PubAck names the event
 * it acknowledges; poll() reads the acks from one subscription on
 * `<inbox>.>` in the agent's thread.  What happens to an event:
 *
 *   PubAck (stored or duplicate)          accepted, id stream:seq
 *   no responders, JetStream 503, no ack  kept (no ack within
 *   within ack_timeout_seconds, lost      ack_timeout_seconds; the stream
 *   connection                            drops the resend by Nats-Msg-Id)
 *   over the server's max_payload, or     rejected for good (dead letter,
 *   over the stream's max_msg_size        status 413)
 *   stream missing, or not taking the     the whole request: endpoint
 *   subject                               missing (keep all, back off long)
 *   credentials refused                   the whole request: auth */
#include <errno.h>
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <spool/transport.h>

#include "nats_conn.h"

/* One request in flight. */
struct nats_open {
	struct spool_tx_request *req;
	uint64_t serial;
	size_t left;	   /* events without an answer */
	size_t accepted;
	size_t noresp;	   /* no responders */
	size_t notstream;  /* "expected stream does not match" / stream not found */
	double deadline;   /* monotonic */
	unsigned char *answered;
};

struct nats_tx {
	const struct spool_tx_config *cfg;
	struct nats_link_config lc;
	const char *stream;
	char subject[256];
	char servers_text[300];
	int64_t max_pending;
	double ack_timeout;
	natsConnection *nc;
	natsSubscription *sub;
	char inbox[128];
	size_t inbox_len;
	bool stream_ok;
	uint64_t next_serial;
	size_t pending; /* publishes waiting for a PubAck */
	unsigned long long acked, duplicates, timed_out;
	struct nats_open *open;
	size_t nopen, cap;
	struct spool_tx_request **done;
	size_t ndone;
	char *reply; /* scratch for reply subjects */
};

static double mono_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

#define LOG(t, lvl, ...) (t)->cfg->log((t)->cfg->log_ctx, (lvl), __VA_ARGS__)

/* subject with {hostname} replaced; dots, spaces and wildcards of the host
 * name become '_' so that it stays one token */
static int expand_subject(const char *pat, char *out, size_t len)
{
	char host[256] = "";
	if (gethostname(host, sizeof(host) - 1) != 0)
		snprintf(host, sizeof(host), "unknown");
	for (char *p = host; *p; p++)
		if (*p == '.' || *p == ' ' || *p == '*' || *p == '>')
			*p = '_';
	size_t o = 0;
	for (const char *p = pat; *p;) {
		if (strncmp(p, "{hostname}", 10) == 0) {
			int w = snprintf(out + o, len - o, "%s", host);
			if (w < 0 || (size_t)w >= len - o)
				return -1;
			o += (size_t)w;
			p += 10;
		} else {
			if (o + 1 >= len)
				return -1;
			out[o++] = *p++;
		}
	}
	out[o] = '\0';
	return 0;
}

static void drop_connection(struct nats_tx *t)
{
	natsSubscription_Destroy(t->sub);
	t->sub = NULL;
	if (t->nc) {
		natsConnection_Close(t->nc);
		natsConnection_Destroy(t->nc);
	}
	t->nc = NULL;
	t->stream_ok = false;
}

/* Connects (when not connected) and checks the stream (until it was found
 * once).  SPOOL_TXC_DONE, or the call that fails every request now, with
 * msg filled. */
static int ensure_ready(struct nats_tx *t, char *msg, size_t len)
{
	if (t->nc && natsConnection_Status(t->nc) == NATS_CONN_STATUS_CLOSED)
		drop_connection(t);
	if (!t->nc) {
		enum nats_link_fail f = nats_link_connect(&t->lc, &t->nc, msg, len);
		if (f != NATS_LINK_OK) {
			LOG(t, SPOOL_TX_LOG_ERR, "%s", msg);
			return f == NATS_LINK_AUTH ? SPOOL_TXC_AUTH : SPOOL_TXC_TRANSIENT;
		}
		natsInbox *ib = NULL;
		natsStatus s = natsInbox_Create(&ib);
		if (s == NATS_OK) {
			snprintf(t->inbox, sizeof(t->inbox), "%s", (const char *)ib);
			natsInbox_Destroy(ib);
			t->inbox_len = strlen(t->inbox);
			char all[160];
			snprintf(all, sizeof(all), "%s.>", t->inbox);
			s = natsConnection_SubscribeSync(&t->sub, t->nc, all);
		}
		if (s == NATS_OK)
			s = natsSubscription_SetPendingLimits(t->sub, -1, -1);
		if (s != NATS_OK) {
			snprintf(msg, len, "nats: cannot subscribe to the reply inbox: %s", natsStatus_GetText(s));
			drop_connection(t);
			return SPOOL_TXC_TRANSIENT;
		}
		char url[256] = "";
		natsConnection_GetConnectedUrl(t->nc, url, sizeof(url));
		LOG(t, SPOOL_TX_LOG_INFO, "nats: connected to %s; publishing to %s (stream %s)", url, t->subject,
		    t->stream);
	}
	if (natsConnection_Status(t->nc) != NATS_CONN_STATUS_CONNECTED) {
		snprintf(msg, len, "nats: not connected (reconnecting to nats.servers %.150s)", t->servers_text);
		return SPOOL_TXC_TRANSIENT;
	}
	if (!t->stream_ok) {
		switch (nats_link_check_stream(t->nc, t->stream, t->subject, t->ack_timeout, msg, len)) {
		case NATS_STREAM_OK:
			t->stream_ok = true;
			break;
		case NATS_STREAM_MISSING:
		case NATS_STREAM_NOT_BOUND: {
			size_t l = strlen(msg);
			snprintf(msg + l, len - l, "; events are kept until it does (docs/nats.md)");
			LOG(t, SPOOL_TX_LOG_ERR, "%s", msg);
			return SPOOL_TXC_MISSING;
		}
		default:
			return SPOOL_TXC_TRANSIENT;
		}
	}
	return SPOOL_TXC_DONE;
}

static void finish(struct nats_tx *t, size_t slot)
{
	struct nats_open *o = &t->open[slot];
	struct spool_tx_request *r = o->req;
	size_t kept = 0;
	for (size_t i = 0; i < r->count; i++) {
		if (!o->answered[i]) {
			t->timed_out++;
			r->out[i].result = SPOOL_TX_RETRY;
			snprintf(r->out[i].reason, sizeof(r->out[i].reason),
				 "no PubAck within nats.ack_timeout_seconds (%.3g s)", t->ack_timeout);
		}
		if (r->out[i].result == SPOOL_TX_RETRY)
			kept++;
	}
	t->pending -= o->left;
	if (o->accepted == 0 && kept == r->count) {
		if (o->notstream == r->count || (o->noresp && o->noresp + o->notstream == r->count)) {
			/* nobody stores this subject: is the stream gone? */
			char why[240];
			enum nats_stream_check c =
				nats_link_check_stream(t->nc, t->stream, t->subject, t->ack_timeout, why, sizeof(why));
			if (c == NATS_STREAM_MISSING || c == NATS_STREAM_NOT_BOUND) {
				r->status.call = SPOOL_TXC_MISSING;
				t->stream_ok = false;
				snprintf(r->status.message, sizeof(r->status.message),
					 "%.180s; events are kept until it does (docs/nats.md)", why);
				LOG(t, SPOOL_TX_LOG_ERR, "%s", r->status.message);
			} else {
				r->status.call = SPOOL_TXC_TRANSIENT;
				snprintf(r->status.message, sizeof(r->status.message),
					 "nats: no responders on %.150s (JetStream unavailable?)", t->subject);
			}
			r->status.status = 503;
		} else {
			r->status.call = SPOOL_TXC_TRANSIENT;
			snprintf(r->status.message, sizeof(r->status.message), "nats: %.200s",
				 r->out[0].reason[0] ? r->out[0].reason : "no PubAck");
		}
	}
	free(o->answered);
	t->done[t->ndone++] = r;
	t->open[slot] = t->open[--t->nopen];
}

/* Settles one event from its PubAck (or no-responders) message. */
static void on_reply(struct nats_tx *t, natsMsg *m)
{
	const char *subj = natsMsg_GetSubject(m);
	if (strncmp(subj, t->inbox, t->inbox_len) != 0 || subj[t->inbox_len] != '.')
		return;
	char *end = NULL;
	unsigned long long serial = strtoull(subj + t->inbox_len + 1, &end, 10);
	if (!end || *end != '.')
		return;
	unsigned long long idx = strtoull(end + 1, NULL, 10);
	size_t slot = SIZE_MAX;
	for (size_t i = 0; i < t->nopen; i++)
		if (t->open[i].serial == serial)
			slot = i;
	if (slot == SIZE_MAX)
		return; /* a request that timed out already: its events went back */
	struct nats_open *o = &t->open[slot];
	if (idx >= o->req->count || o->answered[idx])
		return;
	struct spool_tx_outcome *out = &o->req->out[idx];
	o->answered[idx] = 1;
	o->left--;
	t->pending--;
	if (natsMsg_IsNoResponders(m)) {
		o->noresp++;
		out->result = SPOOL_TX_RETRY;
		out->status = 503;
		snprintf(out->reason, sizeof(out->reason), "no responders on %.150s", t->subject);
	} else {
		json_t *j = json_loadb(natsMsg_GetData(m), (size_t)natsMsg_GetDataLength(m), 0, NULL);
		json_t *e = j ? json_object_get(j, "error") : NULL;
		const char *stream = j ? json_string_value(json_object_get(j, "stream")) : NULL;
		json_t *seq = j ? json_object_get(j, "seq") : NULL;
		if (e) {
			json_int_t code = json_integer_value(json_object_get(e, "code"));
			json_int_t ecode = json_integer_value(json_object_get(e, "err_code"));
			const char *desc = json_string_value(json_object_get(e, "description"));
			snprintf(out->reason, sizeof(out->reason), "JetStream: %s (%lld/%lld)", desc ? desc : "error",
				 (long long)code, (long long)ecode);
			out->status = (int)code;
			if (ecode == JSStreamMessageExceedsMaximumErr) {
				out->result = SPOOL_TX_REJECTED;
				out->status = 413;
			} else {
				out->result = SPOOL_TX_RETRY;
				if (ecode == JSStreamNotFoundErr || code == 404 ||
				    (desc && strstr(desc, "expected stream")))
					o->notstream++;
			}
		} else if (stream && json_is_integer(seq)) {
			out->result = SPOOL_TX_ACCEPTED;
			out->status = 200;
			snprintf(out->id, sizeof(out->id), "%s:%lld", stream, (long long)json_integer_value(seq));
			o->accepted++;
			t->acked++;
			if (json_is_true(json_object_get(j, "duplicate")))
				t->duplicates++;
		} else {
			out->result = SPOOL_TX_RETRY;
			snprintf(out->reason, sizeof(out->reason), "unreadable PubAck");
		}
		json_decref(j);
	}
	if (o->left == 0)
		finish(t, slot);
}

/* Reads replies for at most timeout seconds (and finishes timed-out
 * requests); returns after the first batch of replies. */
static void pump(struct nats_tx *t, double timeout)
{
	double now = mono_now();
	double until = now + timeout;
	for (size_t i = 0; i < t->nopen; i++)
		if (t->open[i].deadline < until)
			until = t->open[i].deadline;
	natsMsg *m = NULL;
	int64_t ms = (int64_t)((until - now) * 1000);
	if (t->sub && natsConnection_Status(t->nc) != NATS_CONN_STATUS_CLOSED) {
		natsStatus s = natsSubscription_NextMsg(&m, t->sub, ms > 0 ? ms : 1);
		while (s == NATS_OK) {
			on_reply(t, m);
			natsMsg_Destroy(m);
			m = NULL;
			/* the acks already here, without waiting again */
			int queued = 0;
			if (natsSubscription_GetPending(t->sub, &queued, NULL) != NATS_OK || queued <= 0)
				break;
			s = natsSubscription_NextMsg(&m, t->sub, 1);
		}
	} else if (ms > 0) {
		struct timespec ts = {ms / 1000, (ms % 1000) * 1000000};
		nanosleep(&ts, NULL);
	}
	now = mono_now();
	for (size_t i = 0; i < t->nopen;) {
		if (t->open[i].deadline <= now)
			finish(t, i);
		else
			i++;
	}
}

static void nats_destroy(void *p)
{
	struct nats_tx *t = p;
	if (!t)
		return;
	LOG(t, SPOOL_TX_LOG_INFO, "nats: %llu PubAcks (%llu for duplicates), %llu publishes without an ack in time",
	    t->acked, t->duplicates, t->timed_out);
	for (size_t i = 0; i < t->nopen; i++)
		free(t->open[i].answered);
	drop_connection(t);
	free(t->open);
	free(t->done);
	free(t->reply);
	free(t);
}

static int nats_create(const struct spool_tx_config *cfg, void **out, char *err, size_t errlen)
{
	const struct spool_tx_value *v = cfg->values;
	size_t key = 0;
	*out = NULL;
	if (nats_section_check(v, cfg->nvalues, &key, err, errlen)) {
		size_t l = strlen(err);
		snprintf(err + l, errlen - l, " (nats.%s)", nats_options[key].key);
		return -EINVAL;
	}
	struct nats_tx *t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	t->cfg = cfg;
	nats_link_config_from(v, cfg->user_agent, &t->lc);
	nats_link_servers_text(&t->lc, t->servers_text, sizeof(t->servers_text));
	t->stream = v[NK_STREAM].text;
	t->max_pending = v[NK_MAX_PENDING].integer;
	t->ack_timeout = v[NK_ACK_TIMEOUT].number;
	t->cap = cfg->max_in_flight ? cfg->max_in_flight : 1;
	if (expand_subject(v[NK_SUBJECT].text, t->subject, sizeof(t->subject))) {
		snprintf(err, errlen, "nats.subject: '%s' is too long once {hostname} is filled in",
			 v[NK_SUBJECT].text);
		free(t);
		return -EINVAL;
	}
	t->open = calloc(t->cap, sizeof(*t->open));
	t->done = calloc(t->cap, sizeof(*t->done));
	t->reply = malloc(256);
	if (!t->open || !t->done || !t->reply) {
		nats_destroy(t);
		return -ENOMEM;
	}
	/* Connect now to say early what is wrong; a failure is not fatal: the
	 * events wait in the spool and each request tries again. */
	char msg[240];
	if (ensure_ready(t, msg, sizeof(msg)) != SPOOL_TXC_DONE)
		LOG(t, SPOOL_TX_LOG_WARNING, "nats: not ready at start, events stay in the spool: %s", msg);
	*out = t;
	return 0;
}

static void finish_now(struct nats_tx *t, struct spool_tx_request *req)
{
	t->done[t->ndone++] = req;
}

static int nats_submit(void *p, struct spool_tx_request *req)
{
	struct nats_tx *t = p;
	if (t->nopen + t->ndone >= t->cap)
		return -EBUSY;
	int call = ensure_ready(t, req->status.message, sizeof(req->status.message));
	if (call != SPOOL_TXC_DONE) {
		req->status.call = call;
		finish_now(t, req);
		return 0;
	}
	/* room for this request's publishes under max_pending */
	while (t->nopen && t->pending + req->count > (size_t)t->max_pending)
		pump(t, t->ack_timeout);
	size_t slot = t->nopen;
	struct nats_open *o = &t->open[slot];
	*o = (struct nats_open){.req = req, .serial = t->next_serial++, .left = 0};
	o->answered = calloc(req->count, 1);
	if (!o->answered)
		return -ENOMEM;
	t->nopen++;
	int64_t maxp = natsConnection_GetMaxPayload(t->nc);
	uint64_t wire = 0;
	natsStatus s = NATS_OK;
	for (size_t i = 0; i < req->count; i++) {
		const struct spool_tx_event *e = &req->events[i];
		/* the headers add ~60 bytes to the body */
		if (maxp > 0 && (int64_t)e->json_len + 128 > maxp) {
			o->answered[i] = 1;
			req->out[i].result = SPOOL_TX_REJECTED;
			req->out[i].status = 413;
			snprintf(req->out[i].reason, sizeof(req->out[i].reason),
				 "event of %zu bytes of JSON is over the server's max_payload of %lld bytes", e->json_len,
				 (long long)maxp);
			continue;
		}
		snprintf(t->reply, 256, "%s.%llu.%zu", t->inbox, (unsigned long long)o->serial, i);
		natsMsg *m = NULL;
		s = natsMsg_Create(&m, t->subject, t->reply, e->json, (int)e->json_len);
		if (s == NATS_OK && e->client_event_id)
			s = natsMsgHeader_Set(m, "Nats-Msg-Id", e->client_event_id);
		if (s == NATS_OK)
			s = natsConnection_PublishMsg(t->nc, m);
		natsMsg_Destroy(m);
		if (s != NATS_OK) {
			snprintf(req->status.message, sizeof(req->status.message), "nats: publish failed: %s",
				 natsStatus_GetText(s));
			break;
		}
		o->left++;
		t->pending++;
		wire += e->json_len + strlen(t->subject) + strlen(t->reply) + 64;
	}
	req->wire_bytes = wire;
	o->deadline = mono_now() + t->ack_timeout;
	if (s != NATS_OK) {
		/* the events after the failure stay unsent: kept */
		for (size_t i = 0; i < req->count; i++)
			if (!o->answered[i] && req->out[i].result == SPOOL_TX_RETRY && !req->out[i].reason[0])
				snprintf(req->out[i].reason, sizeof(req->out[i].reason), "%s", req->status.message);
	}
	if (o->left == 0)
		finish(t, slot);
	return 0;
}

static int nats_poll(void *p, double timeout, struct spool_tx_request **done, size_t max)
{
	struct nats_tx *t = p;
	double until = mono_now() + timeout;
	while (t->ndone == 0 && t->nopen) {
		double left = until - mono_now();
		pump(t, left > 0 ? left : 0);
		if (left <= 0)
			break;
	}
	size_t n = t->ndone < max ? t->ndone : max;
	for (size_t i = 0; i < n; i++)
		done[i] = t->done[i];
	memmove(t->done, t->done + n, (t->ndone - n) * sizeof(*t->done));
	t->ndone -= n;
	return (int)n;
}

SPOOL_TRANSPORT_EXPORT const struct spool_transport spool_transport_entry = {
	.abi_version = SPOOL_TRANSPORT_ABI,
	.struct_size = sizeof(struct spool_transport),
	.name = "nats",
	.description = "publish to a NATS JetStream stream (Nats-Msg-Id = client_event_id, delete on PubAck)",
	.section = "nats",
	.options = nats_options,
	.noptions = NK_NKEYS,
	.check = nats_section_check,
	.create = nats_create,
	.destroy = nats_destroy,
	.submit = nats_submit,
	.poll = nats_poll,
};
