/* relay.c — mlog-relay: feeds Master Log from a NATS JetStream durable
 * pull consumer (docs/nats.md).
 *
 * It reads the same YAML file conventions as spool-agent (the agent's
 * loader, agent/config.c): `transports:` (http_batch, http_single),
 * `http:`, `batch_size`, `max_in_flight`, `min_request_interval_seconds`,
 * `retry:`, `log:`; plus `nats:` (the nats transport's section: servers,
 * credentials, TLS, stream) and `relay:` (consumer, dead-letter subject).
 * Messages fetched from the consumer go to Master Log through the built-in
 * HTTP transports and their one status table; each message's fate:
 *
 *   accepted by the server          ack
 *   kept (408, 429, 5xx, network)   nak with the backoff's delay, or the
 *                                   server's Retry-After
 *   rejected for good (400, 413..)  republished to relay.dead_letter_subject
 *                                   with Mlog-Status and Mlog-Reason headers,
 *                                   then terminated
 *   credentials refused, endpoint   nak all, pause fetching for
 *   missing                         retry.auth_seconds, log it loudly
 *
 * Several relays on one consumer share its messages.  SIGTERM: no new
 * fetch; the requests in flight finish and are settled; exit 0. */
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include <spool/spool.h>
#include <spool/transport.h>

#include "config.h"
#include "log.h"
#include "nats_conn.h"
#include "project_version.h"

enum relay_key { RK_CONSUMER, RK_DEAD_LETTER, RK_ACK_WAIT, RK_MAX_ACK_PENDING, RK_NKEYS };

static const struct spool_tx_option relay_options[RK_NKEYS] = {
	[RK_CONSUMER] = {"consumer", SPOOL_TX_STRING, SPOOL_TX_TEXT, "mlog-relay", NULL, 0, 0, NULL,
			 "durable pull consumer on nats.stream (made when missing; relays on one consumer share it)"},
	[RK_DEAD_LETTER] = {"dead_letter_subject", SPOOL_TX_STRING, SPOOL_TX_TEXT, "mlog.dead", NULL, 0, 0, NULL,
			    "subject for events Master Log rejected for good (headers Mlog-Status, Mlog-Reason)"},
	[RK_ACK_WAIT] = {"ack_wait_seconds", SPOOL_TX_NUMBER, SPOOL_TX_TEXT, "120", NULL, 1, 86400, NULL,
			 "consumer's AckWait when the relay makes it: longer than http.timeouts.request_seconds"},
	[RK_MAX_ACK_PENDING] = {"max_ack_pending", SPOOL_TX_INT, SPOOL_TX_TEXT, "20000", NULL, 1, 10000000, NULL,
				"consumer's MaxAckPending when the relay makes it"},
};

static int relay_check(const struct spool_tx_value *v, size_t n, size_t *key, char *why, size_t whylen)
{
	if (strpbrk(v[RK_CONSUMER].text, " .*>\t")) {
		*key = RK_CONSUMER;
		snprintf(why, whylen, "'%s': a consumer name has no dots, spaces or wildcards", v[RK_CONSUMER].text);
		return -1;
	}
	if (strpbrk(v[RK_DEAD_LETTER].text, " *>\t")) {
		*key = RK_DEAD_LETTER;
		snprintf(why, whylen, "'%s': not a subject to publish to", v[RK_DEAD_LETTER].text);
		return -1;
	}
	return 0;
}

static const struct spool_transport relay_section = {
	.abi_version = SPOOL_TRANSPORT_ABI,
	.struct_size = sizeof(struct spool_transport),
	.name = "mlog-relay",
	.section = "relay",
	.options = relay_options,
	.noptions = RK_NKEYS,
	.check = relay_check,
};

static const struct spool_transport nats_section = {
	.abi_version = SPOOL_TRANSPORT_ABI,
	.struct_size = sizeof(struct spool_transport),
	.name = "nats",
	.section = "nats",
	.options = nats_options,
	.noptions = NK_NKEYS,
	.check = nats_section_check,
};

/* One request to Master Log: the messages it carries. */
struct relay_req {
	struct spool_tx_request r;
	natsMsg **msgs;
	struct spool_tx_event *ev;
	struct spool_tx_outcome *out;
	size_t n;
	int link; /* index of the transport it went to */
	bool used;
};

struct relay {
	struct agent_config cfg;
	struct agent_log log;
	const struct spool_tx_value *rv; /* relay: */
	const struct spool_tx_value *nv; /* nats: */
	struct nats_link_config lc;
	const struct spool_transport *tx[AGENT_MAX_TRANSPORTS];
	struct spool_tx_config txc[AGENT_MAX_TRANSPORTS];
	void *state[AGENT_MAX_TRANSPORTS];
	size_t ntx;
	size_t active; /* the chain's transport in use (after FALLBACK: the next) */
	natsConnection *nc;
	jsCtx *js;
	natsSubscription *sub;
	struct relay_req *reqs;
	size_t nreqs, nopen;
	natsMsg **redo; /* messages to send one by one (SPLIT, ISOLATE) */
	size_t nredo, redo_cap;
	unsigned fails;
	double pause_until, next_start;
	unsigned long long acked, naked, dead;
	char inbox[128];
	char next_subject[300];
	bool pulling;	    /* a pull request is open */
	double pull_until;  /* when it expires (monotonic) */
	natsMsg **got;	    /* messages of the open pull, not yet sent */
	size_t ngot;
};

static volatile sig_atomic_t stopping;

static void on_term(int sig)
{
	(void)sig;
	stopping = 1;
}

static double mono_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

#define RLOG(rl, lvl, ...) agent_log(&(rl)->log, (lvl), __VA_ARGS__)

/* The delay before a kept message comes again: exponential backoff with
 * full jitter, or what the server asked for. */
static double backoff_delay(struct relay *rl, double retry_after)
{
	if (retry_after > 0)
		return retry_after;
	double d = rl->cfg.retry_initial * pow(rl->cfg.retry_multiplier, rl->fails < 30 ? rl->fails : 30);
	if (d > rl->cfg.retry_max)
		d = rl->cfg.retry_max;
	if (rl->cfg.retry_jitter)
		d *= (double)rand() / RAND_MAX;
	return d > 0.001 ? d : 0.001;
}

/* Acknowledgements on the message's $JS.ACK reply subject (the JetStream
 * protocol: +ACK, -NAK {"delay": ns}, +TERM). */
static void ack_with(struct relay *rl, natsMsg *m, const char *body)
{
	const char *reply = natsMsg_GetReply(m);
	if (reply && *reply)
		natsConnection_PublishString(rl->nc, reply, body);
}

static void nak(struct relay *rl, natsMsg *m, double delay)
{
	char body[64];
	snprintf(body, sizeof(body), "-NAK {\"delay\": %lld}", (long long)(delay * 1e9));
	ack_with(rl, m, body);
	rl->naked++;
}

/* Republishes m to the dead-letter subject, then terminates it; a dead
 * letter that cannot be stored is nak'ed instead (never lost). */
static void dead_letter(struct relay *rl, natsMsg *m, int status, const char *reason)
{
	const char *subject = rl->rv[RK_DEAD_LETTER].text;
	natsMsg *d = NULL;
	char st[16];
	snprintf(st, sizeof(st), "%d", status);
	natsStatus s = natsMsg_Create(&d, subject, NULL, natsMsg_GetData(m), natsMsg_GetDataLength(m));
	const char *id = NULL;
	if (s == NATS_OK && natsMsgHeader_Get(m, "Nats-Msg-Id", &id) == NATS_OK && id)
		s = natsMsgHeader_Set(d, "Nats-Msg-Id", id);
	if (s == NATS_OK)
		s = natsMsgHeader_Set(d, "Mlog-Status", st);
	if (s == NATS_OK)
		s = natsMsgHeader_Set(d, "Mlog-Reason", reason && *reason ? reason : "rejected");
	if (s == NATS_OK) {
		jsPubAck *pa = NULL;
		jsErrCode jerr = 0;
		jsPubOptions po;
		jsPubOptions_Init(&po);
		po.MaxWait = 3000;
		s = js_PublishMsg(&pa, rl->js, d, &po, &jerr);
		jsPubAck_Destroy(pa);
		if (s == NATS_NO_RESPONDERS) {
			/* no stream keeps the subject: hand it to its subscribers */
			RLOG(rl, LOG_WARNING, "relay.dead_letter_subject %s: no stream stores it; published without "
			     "an acknowledgement", subject);
			natsMsg_Destroy(d);
			d = NULL;
			s = natsMsg_Create(&d, subject, NULL, natsMsg_GetData(m), natsMsg_GetDataLength(m));
			if (s == NATS_OK && id)
				s = natsMsgHeader_Set(d, "Nats-Msg-Id", id);
			if (s == NATS_OK)
				s = natsMsgHeader_Set(d, "Mlog-Status", st);
			if (s == NATS_OK)
				s = natsMsgHeader_Set(d, "Mlog-Reason", reason && *reason ? reason : "rejected");
			if (s == NATS_OK)
				s = natsConnection_PublishMsg(rl->nc, d);
			if (s == NATS_OK)
				s = natsConnection_FlushTimeout(rl->nc, 5000);
		}
	}
	natsMsg_Destroy(d);
	if (s != NATS_OK) {
		RLOG(rl, LOG_ERR, "cannot publish a dead letter to %s: %s; message kept", subject,
		     natsStatus_GetText(s));
		nak(rl, m, backoff_delay(rl, -1));
		return;
	}
	RLOG(rl, LOG_WARNING, "dead letter to %s (status %d): %s", subject, status, reason);
	ack_with(rl, m, "+TERM");
	rl->dead++;
}

static struct relay_req *free_req(struct relay *rl)
{
	for (size_t i = 0; i < rl->nreqs; i++)
		if (!rl->reqs[i].used)
			return &rl->reqs[i];
	return NULL;
}

static void release(struct relay *rl, struct relay_req *q)
{
	for (size_t i = 0; i < q->n; i++)
		natsMsg_Destroy(q->msgs[i]);
	q->n = 0;
	q->used = false;
	rl->nopen--;
}

/* Starts q (its messages in place) through transport `link`. */
static void start(struct relay *rl, struct relay_req *q, size_t link);

static void settle(struct relay *rl, struct relay_req *q)
{
	struct spool_tx_status *st = &q->r.status;
	switch (st->call) {
	case SPOOL_TXC_DONE: {
		bool any = false;
		for (size_t i = 0; i < q->n; i++) {
			struct spool_tx_outcome *o = &q->out[i];
			switch (o->result) {
			case SPOOL_TX_ACCEPTED:
				ack_with(rl, q->msgs[i], "+ACK");
				rl->acked++;
				any = true;
				break;
			case SPOOL_TX_REJECTED:
				dead_letter(rl, q->msgs[i], o->status, o->reason);
				break;
			case SPOOL_TX_RETRY_AFTER:
				nak(rl, q->msgs[i], backoff_delay(rl, o->retry_after));
				break;
			default:
				nak(rl, q->msgs[i], backoff_delay(rl, -1));
			}
		}
		if (any)
			rl->fails = 0;
		release(rl, q);
		return;
	}
	case SPOOL_TXC_FALLBACK:
		if (q->link + 1 < (int)rl->ntx) {
			if (rl->active <= (size_t)q->link) {
				rl->active = (size_t)q->link + 1;
				RLOG(rl, LOG_INFO, "%s: %s; using %s", rl->tx[q->link]->name, st->message,
				     rl->tx[rl->active]->name);
			}
			start(rl, q, (size_t)q->link + 1);
			return;
		}
		break;
	case SPOOL_TXC_SPLIT:
	case SPOOL_TXC_ISOLATE:
		if (q->n == 1) {
			dead_letter(rl, q->msgs[0], st->status, st->message);
			release(rl, q);
			return;
		}
		/* one by one, ahead of new fetches */
		for (size_t i = 0; i < q->n; i++) {
			rl->redo[rl->nredo++] = q->msgs[i];
			q->msgs[i] = NULL;
		}
		release(rl, q);
		return;
	default:
		break;
	}
	/* the request as a whole failed: keep every message, back off */
	bool loud = st->call == SPOOL_TXC_AUTH || st->call == SPOOL_TXC_MISSING;
	double delay = loud ? rl->cfg.auth_retry : backoff_delay(rl, st->retry_after);
	rl->fails++;
	rl->pause_until = mono_now() + delay;
	RLOG(rl, loud ? LOG_ERR : LOG_WARNING, "%s: %s; %zu messages kept, next try in %.3g s",
	     rl->tx[q->link]->name, st->message, q->n, delay);
	for (size_t i = 0; i < q->n; i++)
		nak(rl, q->msgs[i], delay);
	release(rl, q);
}

static void start(struct relay *rl, struct relay_req *q, size_t link)
{
	q->link = (int)link;
	memset(q->out, 0, q->n * sizeof(*q->out));
	q->r = (struct spool_tx_request){.events = q->ev, .count = q->n, .out = q->out,
					 .status = {.call = SPOOL_TXC_DONE, .retry_after = -1}, .host = q};
	const struct spool_transport *tx = rl->tx[link];
	int rc;
	if (tx->submit) {
		rc = tx->submit(rl->state[link], &q->r);
	} else {
		rc = tx->send(rl->state[link], &q->r);
		if (!rc)
			settle(rl, q);
	}
	if (rc) {
		q->r.status.call = SPOOL_TXC_TRANSIENT;
		snprintf(q->r.status.message, sizeof(q->r.status.message), "cannot start a request: %s",
			 strerror(-rc));
		settle(rl, q);
	}
}

/* Builds a request of msgs[0..n-1] (taken over) and starts it. */
static void send_msgs(struct relay *rl, natsMsg **msgs, size_t n)
{
	struct relay_req *q = free_req(rl);
	q->used = true;
	rl->nopen++;
	q->n = n;
	for (size_t i = 0; i < n; i++) {
		natsMsg *m = msgs[i];
		q->msgs[i] = m;
		const char *id = NULL;
		natsMsgHeader_Get(m, "Nats-Msg-Id", &id);
		q->ev[i] = (struct spool_tx_event){
			.seq = 0,
			.json = natsMsg_GetData(m),
			.json_len = (size_t)natsMsg_GetDataLength(m),
			.client_event_id = id,
		};
	}
	start(rl, q, rl->active);
}

/* Waits at most timeout seconds for finished requests and settles them. */
static void collect(struct relay *rl, double timeout)
{
	struct spool_tx_request *done[64];
	for (size_t l = 0; l < rl->ntx; l++) {
		if (!rl->tx[l]->poll)
			continue;
		bool open = false;
		for (size_t i = 0; i < rl->nreqs; i++)
			open |= rl->reqs[i].used && rl->reqs[i].link == (int)l;
		if (!open)
			continue;
		int n = rl->tx[l]->poll(rl->state[l], timeout, done, 64);
		for (int i = 0; i < n; i++)
			settle(rl, done[i]->host);
		timeout = 0;
	}
}

static int open_consumer(struct relay *rl, char *err, size_t errlen)
{
	const char *stream = rl->nv[NK_STREAM].text;
	const char *durable = rl->rv[RK_CONSUMER].text;
	jsOptions jo;
	jsOptions_Init(&jo);
	jo.Wait = 10000;
	natsStatus s = natsConnection_JetStream(&rl->js, rl->nc, &jo);
	if (s != NATS_OK) {
		snprintf(err, errlen, "nats: no JetStream context: %s", natsStatus_GetText(s));
		return -1;
	}
	jsConsumerInfo *ci = NULL;
	jsErrCode jerr = 0;
	s = js_GetConsumerInfo(&ci, rl->js, stream, durable, NULL, &jerr);
	if (s != NATS_OK && jerr == JSStreamNotFoundErr) {
		snprintf(err, errlen, "nats.stream: stream '%s' does not exist on the cluster", stream);
		return -1;
	}
	if (s != NATS_OK) {
		jsConsumerConfig cc;
		jsConsumerConfig_Init(&cc);
		cc.Durable = durable;
		cc.AckPolicy = js_AckExplicit;
		cc.DeliverPolicy = js_DeliverAll;
		cc.AckWait = (int64_t)(rl->rv[RK_ACK_WAIT].number * 1e9);
		cc.MaxAckPending = rl->rv[RK_MAX_ACK_PENDING].integer;
		cc.MaxDeliver = -1;
		s = js_AddConsumer(&ci, rl->js, stream, &cc, NULL, &jerr);
		if (s != NATS_OK) {
			snprintf(err, errlen, "relay.consumer: cannot make consumer '%s' on stream '%s': %s (%d)",
				 durable, stream, nats_GetLastError(NULL), (int)jerr);
			return -1;
		}
		RLOG(rl, LOG_INFO, "made durable consumer %s on stream %s", durable, stream);
	}
	jsConsumerInfo_Destroy(ci);
	/* Pull requests of our own, answered on our inbox (libnats 3.4's
	 * natsSubscription_Fetch can return more messages than asked for when
	 * late ones of an earlier request wait in the subscription, and writes
	 * past its list). */
	natsInbox *ib = NULL;
	s = natsInbox_Create(&ib);
	if (s == NATS_OK) {
		snprintf(rl->inbox, sizeof(rl->inbox), "%s", (const char *)ib);
		natsInbox_Destroy(ib);
		s = natsConnection_SubscribeSync(&rl->sub, rl->nc, rl->inbox);
	}
	if (s == NATS_OK)
		s = natsSubscription_SetPendingLimits(rl->sub, -1, -1);
	if (s != NATS_OK) {
		snprintf(err, errlen, "nats: cannot subscribe to the relay's inbox: %s", natsStatus_GetText(s));
		return -1;
	}
	snprintf(rl->next_subject, sizeof(rl->next_subject), "$JS.API.CONSUMER.MSG.NEXT.%s.%s", stream, durable);
	return 0;
}

static int relay_connect(struct relay *rl, char *err, size_t errlen)
{
	if (nats_link_connect(&rl->lc, &rl->nc, err, errlen) != NATS_LINK_OK)
		return -1;
	return open_consumer(rl, err, errlen);
}

static void relay_free(struct relay *rl)
{
	for (size_t i = 0; i < rl->nreqs; i++) {
		if (rl->reqs[i].used)
			for (size_t k = 0; k < rl->reqs[i].n; k++)
				natsMsg_Destroy(rl->reqs[i].msgs[k]);
		free(rl->reqs[i].msgs);
		free(rl->reqs[i].ev);
		free(rl->reqs[i].out);
	}
	for (size_t i = 0; i < rl->nredo; i++)
		natsMsg_Destroy(rl->redo[i]);
	for (size_t i = 0; i < rl->ngot; i++)
		natsMsg_Destroy(rl->got[i]);
	free(rl->got);
	free(rl->redo);
	free(rl->reqs);
	for (size_t l = 0; l < rl->ntx; l++)
		if (rl->state[l])
			rl->tx[l]->destroy(rl->state[l]);
	natsSubscription_Destroy(rl->sub);
	jsCtx_Destroy(rl->js);
	natsConnection_Destroy(rl->nc);
	config_free(&rl->cfg);
}

static int load(struct relay *rl, const char *path, char *err, size_t errlen)
{
	static const struct spool_transport *const extra[] = {&nats_section, &relay_section};
	/* The relay has no spool: the agent's `spool` key is pointed at a
	 * folder that exists, so that the loader makes none. */
	struct agent_overrides ov = {.spool = "/", .sections = extra, .nsections = 2};
	if (config_load(path, &ov, &rl->cfg, err, errlen))
		return -1;
	const struct agent_section *ns = config_section(&rl->cfg, "nats");
	const struct agent_section *rs = config_section(&rl->cfg, "relay");
	rl->nv = ns->values;
	rl->rv = rs->values;
	nats_link_config_from(rl->nv, "mlog-relay/" SPOOL_VERSION_STRING, &rl->lc);
	return 0;
}

static int cmd_status(struct relay *rl)
{
	char err[512];
	if (nats_link_connect(&rl->lc, &rl->nc, err, sizeof(err)) != NATS_LINK_OK) {
		fprintf(stderr, "mlog-relay: %s\n", err);
		return 1;
	}
	natsStatus s = natsConnection_JetStream(&rl->js, rl->nc, NULL);
	jsConsumerInfo *ci = NULL;
	jsErrCode jerr = 0;
	if (s == NATS_OK)
		s = js_GetConsumerInfo(&ci, rl->js, rl->nv[NK_STREAM].text, rl->rv[RK_CONSUMER].text, NULL, &jerr);
	if (s != NATS_OK) {
		fprintf(stderr, "mlog-relay: relay.consumer: no consumer '%s' on stream '%s': %s\n",
			rl->rv[RK_CONSUMER].text, rl->nv[NK_STREAM].text, nats_GetLastError(NULL));
		return 1;
	}
	json_t *j = json_pack("{s:s, s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:s}", "stream", ci->Stream, "consumer",
			      ci->Name, "num_pending", (json_int_t)ci->NumPending, "num_ack_pending",
			      (json_int_t)ci->NumAckPending, "num_redelivered", (json_int_t)ci->NumRedelivered,
			      "num_waiting", (json_int_t)ci->NumWaiting, "delivered_stream_seq",
			      (json_int_t)ci->Delivered.Stream, "ack_floor_stream_seq", (json_int_t)ci->AckFloor.Stream,
			      "dead_letter_subject", rl->rv[RK_DEAD_LETTER].text);
	char *text = json_dumps(j, JSON_INDENT(2));
	printf("%s\n", text);
	free(text);
	json_decref(j);
	jsConsumerInfo_Destroy(ci);
	return 0;
}

static int run(struct relay *rl)
{
	char err[512];
	size_t window = (size_t)rl->cfg.max_in_flight;
	size_t batch = (size_t)rl->cfg.batch_size;
	rl->nreqs = window;
	rl->reqs = calloc(window, sizeof(*rl->reqs));
	rl->redo_cap = window * batch;
	rl->redo = calloc(rl->redo_cap, sizeof(*rl->redo));
	rl->got = calloc(batch, sizeof(*rl->got));
	if (!rl->reqs || !rl->redo || !rl->got)
		return 1;
	for (size_t i = 0; i < window; i++) {
		struct relay_req *q = &rl->reqs[i];
		q->msgs = calloc(batch, sizeof(*q->msgs));
		q->ev = calloc(batch, sizeof(*q->ev));
		q->out = calloc(batch, sizeof(*q->out));
		if (!q->msgs || !q->ev || !q->out)
			return 1;
	}
	for (size_t i = 0; i < AGENT_MAX_TRANSPORTS && rl->cfg.plugins[i].tx; i++) {
		const struct spool_transport *tx = rl->cfg.plugins[i].tx;
		const struct agent_section *sec = tx->section ? config_section(&rl->cfg, tx->section) : NULL;
		rl->tx[i] = tx;
		rl->txc[i] = (struct spool_tx_config){
			.struct_size = sizeof(struct spool_tx_config),
			.name = tx->name,
			.values = sec ? sec->values : NULL,
			.nvalues = sec ? sec->noptions : 0,
			.user_agent = "master-log-spool/" SPOOL_VERSION_STRING,
			.max_batch_events = batch,
			.max_body_bytes = (size_t)rl->cfg.max_batch_bytes,
			.max_in_flight = tx->submit ? (uint32_t)window : 1,
			.log = agent_log,
			.log_ctx = &rl->log,
		};
		int rc = tx->create(&rl->txc[i], &rl->state[i], err, sizeof(err));
		if (rc) {
			fprintf(stderr, "mlog-relay: transport %s: %s\n", tx->name, err);
			return 2;
		}
		rl->ntx++;
	}
	/* connect, then keep trying (the cluster may come later) */
	while (!stopping && relay_connect(rl, err, sizeof(err))) {
		RLOG(rl, LOG_ERR, "%s; trying again in %.3g s", err, rl->cfg.auth_retry);
		natsSubscription_Destroy(rl->sub);
		jsCtx_Destroy(rl->js);
		natsConnection_Destroy(rl->nc);
		rl->sub = NULL;
		rl->js = NULL;
		rl->nc = NULL;
		for (double end = mono_now() + rl->cfg.auth_retry; !stopping && mono_now() < end;)
			usleep(50000);
	}
	if (!stopping)
		RLOG(rl, LOG_INFO, "relaying stream %s, consumer %s, to Master Log through %s", rl->nv[NK_STREAM].text,
		     rl->rv[RK_CONSUMER].text, rl->tx[0]->name);
	while (!stopping) {
		double now = mono_now();
		bool room = rl->nopen < window;
		if (room && rl->nredo) {
			natsMsg *m = rl->redo[--rl->nredo];
			send_msgs(rl, &m, 1);
			continue;
		}
		if (room && !rl->pulling && now >= rl->pause_until && now >= rl->next_start) {
			char body[96];
			double expires = rl->nopen ? 0.05 : 0.5;
			snprintf(body, sizeof(body), "{\"batch\": %zu, \"expires\": %lld}", batch,
				 (long long)(expires * 1e9));
			natsStatus s = natsConnection_PublishRequestString(rl->nc, rl->next_subject, rl->inbox, body);
			if (s == NATS_OK) {
				rl->pulling = true;
				rl->pull_until = now + expires + 2;
			} else {
				RLOG(rl, LOG_WARNING, "pull from consumer %s: %s", rl->rv[RK_CONSUMER].text,
				     natsStatus_GetText(s));
				usleep(200000);
			}
		}
		if (rl->pulling) {
			/* the pull ends with its batch, or a status (408 expired,
			 * 404, 409), or when its answer is overdue */
			natsMsg *m = NULL;
			natsStatus s = natsSubscription_NextMsg(&m, rl->sub, rl->nopen ? 5 : 100);
			bool ended = false;
			if (s == NATS_OK) {
				const char *reply = natsMsg_GetReply(m);
				if (reply && strncmp(reply, "$JS.ACK.", 8) == 0) {
					rl->got[rl->ngot++] = m;
					ended = rl->ngot == batch;
				} else {
					const char *st = NULL, *desc = NULL;
					natsMsgHeader_Get(m, "Status", &st);
					RLOG(rl, LOG_DEBUG, "pull ended: status %s, %zu messages", st ? st : "?", rl->ngot);
					if (st && strcmp(st, "408") != 0 && strcmp(st, "404") != 0) {
						/* 409 and others: the consumer is gone or
						 * refuses; do not spin */
						natsMsgHeader_Get(m, "Description", &desc);
						RLOG(rl, LOG_WARNING, "consumer %s answered a pull with %s %s",
						     rl->rv[RK_CONSUMER].text, st, desc ? desc : "");
						rl->next_start = mono_now() + 1;
					}
					natsMsg_Destroy(m);
					ended = true;
				}
			} else if (mono_now() > rl->pull_until) {
				RLOG(rl, LOG_DEBUG, "pull overdue, %zu messages", rl->ngot);
				ended = true;
			}
			if (ended) {
				rl->pulling = false;
				if (rl->ngot) {
					send_msgs(rl, rl->got, rl->ngot);
					rl->ngot = 0;
					rl->next_start = mono_now() + rl->cfg.min_request_interval;
				}
			}
			collect(rl, 0);
			continue;
		}
		if (rl->nopen)
			collect(rl, 0.05);
		else
			usleep(20000);
	}
	/* SIGTERM: the open pull ends (its expiry is short) and what it
	 * brought is given back at once below; what is in flight finishes */
	while (rl->pulling && mono_now() < rl->pull_until) {
		natsMsg *m = NULL;
		if (natsSubscription_NextMsg(&m, rl->sub, 100) != NATS_OK)
			continue;
		const char *reply = natsMsg_GetReply(m);
		if (reply && strncmp(reply, "$JS.ACK.", 8) == 0 && rl->ngot < batch) {
			rl->got[rl->ngot++] = m;
			if (rl->ngot == batch)
				rl->pulling = false;
		} else {
			natsMsg_Destroy(m);
			rl->pulling = false;
		}
	}
	rl->pulling = false;
	for (double end = mono_now() + 120; rl->nopen && mono_now() < end;)
		collect(rl, 0.2);
	for (size_t i = 0; i < rl->nredo; i++) {
		ack_with(rl, rl->redo[i], "-NAK");
		natsMsg_Destroy(rl->redo[i]);
	}
	rl->nredo = 0;
	for (size_t i = 0; i < rl->ngot; i++) {
		ack_with(rl, rl->got[i], "-NAK");
		natsMsg_Destroy(rl->got[i]);
	}
	rl->ngot = 0;
	if (rl->nc)
		natsConnection_FlushTimeout(rl->nc, 2000);
	RLOG(rl, LOG_INFO, "stopped: %llu acked, %llu kept (nak), %llu dead-lettered", rl->acked, rl->naked,
	     rl->dead);
	return 0;
}

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: mlog-relay -c FILE [--check-config] [--log-level LEVEL]\n"
		"       mlog-relay -c FILE status [--json]\n"
		"\n"
		"Feeds Master Log from a NATS JetStream durable pull consumer (docs/nats.md):\n"
		"each message is acknowledged to JetStream only after Master Log accepted it;\n"
		"kept ones are nak'ed with the backoff's delay (or the server's Retry-After);\n"
		"ones rejected for good go to relay.dead_letter_subject with Mlog-Status and\n"
		"Mlog-Reason headers, then are terminated.  Several relays may share one\n"
		"consumer.\n"
		"\n"
		"  -c, --config FILE   YAML configuration: spool-agent's keys (transports, http:,\n"
		"                      batch_size, max_in_flight, min_request_interval_seconds,\n"
		"                      retry:, log:), nats: (servers, credentials, tls, stream)\n"
		"                      and relay: (consumer, dead_letter_subject, ack_wait_seconds,\n"
		"                      max_ack_pending)\n"
		"      --check-config  validate the configuration, then exit\n"
		"      --help-config   list the relay's own keys (section relay:) with their\n"
		"                      defaults; spool-agent --help-config lists the others\n"
		"      --log-level L   error, warning, info or debug\n"
		"  status [--json]     the consumer's state (pending, in flight, redelivered)\n"
		"  -h, --help          this text\n"
		"  -V, --version       print the version\n"
		"\n"
		"Exit status: 0 success, 1 runtime failure, 2 bad usage or configuration.\n"
		"SIGTERM/SIGINT: no new fetch; the requests in flight finish, then exit 0.\n");
}

int main(int argc, char **argv)
{
	const char *path = NULL, *level = NULL;
	bool check = false, status = false;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if ((!strcmp(a, "-c") || !strcmp(a, "--config")) && i + 1 < argc) {
			path = argv[++i];
		} else if (!strcmp(a, "--log-level") && i + 1 < argc) {
			level = argv[++i];
		} else if (!strcmp(a, "--check-config")) {
			check = true;
		} else if (!strcmp(a, "status")) {
			status = true;
		} else if (!strcmp(a, "--json")) {
			/* status prints JSON (the only form) */
		} else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
			usage(stdout);
			return 0;
		} else if (!strcmp(a, "--help-config")) {
			printf("mlog-relay's own keys:\n\n");
			config_print_section(stdout, &relay_section);
			printf("\nThe relay reads spool-agent's keys too (transports, http:, batch_size,\n"
			       "max_in_flight, retry:, log:, ...) and the section nats: (servers,\n"
			       "credentials, tls, stream): `spool-agent --help-config` and\n"
			       "spool-agent.yaml(5) list them; mlog-relay(8) says which it uses.\n");
			return 0;
		} else if (!strcmp(a, "-V") || !strcmp(a, "--version")) {
			printf("mlog-relay (%s) %s (transport ABI %d, libnats %s)\n", SPOOL_PROJECT_NAME,
			       SPOOL_PROJECT_VERSION,
			       SPOOL_TRANSPORT_ABI, nats_GetVersion());
			return 0;
		} else {
			fprintf(stderr, "mlog-relay: unknown argument '%s'\n", a);
			usage(stderr);
			return 2;
		}
	}
	if (!path) {
		fprintf(stderr, "mlog-relay: -c FILE is required\n");
		return 2;
	}
	static struct relay rl;
	char err[1024];
	if (load(&rl, path, err, sizeof(err))) {
		fprintf(stderr, "mlog-relay: %s\n", err);
		return 2;
	}
	int lvl = config_log_level(level ? level : rl.cfg.log_level);
	if (lvl < 0) {
		fprintf(stderr, "mlog-relay: --log-level: '%s': use error, warning, info or debug\n", level);
		config_free(&rl.cfg);
		return 2;
	}
	rl.log.ident = "mlog-relay";
	agent_log_open(&rl.log, lvl, rl.cfg.log_target);
	const struct spool_tx_value *key = config_value(&rl.cfg, "http.api_key");
	if (key && key->set)
		agent_log_set_secret(&rl.log, key->text);
	int rc = 0;
	if (check) {
		printf("mlog-relay: %s: configuration valid\n", path);
	} else if (status) {
		rc = cmd_status(&rl);
	} else {
		struct sigaction sa = {.sa_handler = on_term};
		sigemptyset(&sa.sa_mask);
		sigaction(SIGTERM, &sa, NULL);
		sigaction(SIGINT, &sa, NULL);
		signal(SIGPIPE, SIG_IGN);
		srand((unsigned)getpid() ^ (unsigned)time(NULL));
		rc = run(&rl);
	}
	relay_free(&rl);
	agent_log_close(&rl.log);
	nats_CloseAndWait(2000);
	return rc;
}
