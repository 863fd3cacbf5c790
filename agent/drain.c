/* drain.c — the drain loop (drain.h): a window of requests in flight,
 * delete on acknowledgement, and the policy for every answer a transport
 * classifies. */
#include <errno.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "backoff.h"
#include "codec/json.h"
#include "drain.h"
#include "prom.h"

#define MAX_LINKS 8
#define MAX_RETRY_AFTER 86400.0
#define MAX_WINDOW 64
#define WAIT_SLICE 0.1 /* longest wait inside one step for answers */
#define SPOOL_NSEV_DRAIN 5 /* enum spool_severity: debug .. fatal */
#define BW_BURST_SECONDS 1.0 /* an idle link saves up at most this much of the cap */

/* A run of events read from the spool together, encoded once; its
 * requests may cover parts of it (after a split or isolation). */
struct batch {
	struct batch *next;
	struct spool_buf json;	    /* the events' JSON objects, back to back */
	struct spool_buf ids;	    /* their client_event_ids, NUL-terminated */
	struct spool_tx_event *ev;  /* the events handed to transports */
	struct spool_tx_outcome *out;
	size_t n;
	size_t cap;		    /* events the arrays hold */
	struct spool_reject *bad;   /* corrupt records: dead-lettered with the batch */
	size_t nbad;
	size_t open;		    /* requests not finished */
	bool failed;		    /* a request failed as a whole */
	struct spool_tx_status fail; /* the first such failure */
	int severity;		    /* severity order: the one severity it holds; else -1 */
	size_t nkeep;		    /* settle_collect(): events that stay */
};

/* The deletes and dead-letterings of answered batches, committed by a
 * thread of their own while the drain goes on reading, encoding and
 * sending: one synced commit takes the disk's flush time, and the next
 * requests need not wait for it.  The lists (and the batches their
 * reasons point into) belong to the main thread while `busy` is false,
 * to the settler while it is true. */
struct settle_job {
	uint64_t *acked;
	size_t na, acap;
	struct spool_reject *rej;
	size_t nr, rcap;
	struct batch *batches; /* whose outcomes these are: freed once committed */
};

struct settler {
	pthread_t th;
	pthread_mutex_t mu;
	pthread_cond_t cv;    /* to the thread: a job, or quit */
	pthread_cond_t done;  /* to the main thread: busy went false */
	bool started;	      /* the thread runs; else settle in the caller */
	bool tried;	      /* settler_start() was called */
	bool busy;	      /* job is the settler's */
	bool quit;
	int rc;		      /* the last commit's result */
	struct spool *s;
	struct settle_job job; /* handed over, being committed */
};

/* One request: a range of a batch's events on one link. */
struct req {
	struct spool_tx_request r;
	struct batch *b;
	size_t off, n;
	size_t link;
	double started;
	size_t window; /* requests open when it started, for the send time per event */
	struct req *next;
};

struct drain {
	struct spool *s;
	struct drain_params p;
	struct drain_link chain[MAX_LINKS];
	size_t nchain;
	size_t active; /* the chain link in use (fall-back moves it on) */
	drain_log_fn log;
	void *log_ctx;
	bool (*cancelled)(void *ctx);
	void *cancel_ctx;

	struct backoff bo;
	double next_attempt; /* monotonic seconds */
	double last_request;
	double next_recover;
	double next_publish;

	struct batch *batches;	 /* read and not yet settled */
	struct batch *spare;	 /* settled, kept with their buffers for the next reads */
	size_t nspare;
	struct settle_job pend;	 /* answered, to hand to the settler when it is free */
	struct settler st;
	struct req *waiting;	 /* ranges to start (splits, isolation, fall-back), in order */
	struct req *waiting_tail;
	size_t open;		 /* requests started and not finished */
	size_t open_on[MAX_LINKS];
	uint64_t read_after;	 /* highest sequence handed out since the window was empty */
	bool halted;		 /* something stays: no new batch until the window empties */
	bool failed;		 /* ... and a request failed as a whole: */
	struct spool_tx_status fail; /* the first such failure since the last try */
	bool stopped;		 /* cancelled */
	bool paused;		 /* drain_pause() */
	bool probing;		 /* after a failed round: one request at a time until one is answered */
	uint64_t sev_after[SPOOL_NSEV_DRAIN]; /* severity order: scanned up to, per severity */
	double bw_tokens;	 /* bandwidth_limit: bytes that may go now (< 0: in debt) */
	double bw_stamp;	 /* when bw_tokens was last brought up to date */
	struct spool_json_memo memo; /* the encoder's: a process's c_client block, encoded once */
	uint64_t head_seq;	 /* first seq of the last batch read from the start */
	uint32_t head_attempts;
	double max_retry_after;

	/* figures */
	struct prom_requests *req_stats; /* NULL: not counted */
	struct drain_counters c;
	double spe;	/* moving average send seconds per event; < 0 unknown */
	double last_success; /* wall clock */
	char last_error[300];
	bool error_dirty, success_dirty;
	struct drain_counters published; /* counters as last written */
	double published_spe;
};

static double mono_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double wall_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int set_chain(struct drain *d, const struct drain_params *p, const struct drain_link *chain, size_t n)
{
	if (!p || !chain || n == 0 || n > MAX_LINKS || p->batch_size == 0)
		return -EINVAL;
	d->p = *p;
	if (d->p.max_in_flight == 0)
		d->p.max_in_flight = 1;
	if (d->p.max_in_flight > MAX_WINDOW)
		d->p.max_in_flight = MAX_WINDOW;
	if (d->p.max_batch_size < d->p.batch_size)
		d->p.max_batch_size = d->p.batch_size;
	if (d->p.bandwidth_limit < 0)
		d->p.bandwidth_limit = 0;
	d->bw_tokens = 0;
	d->bw_stamp = mono_now();
	memcpy(d->chain, chain, n * sizeof(*chain));
	d->nchain = n;
	d->active = 0;
	uint64_t seed = (uint64_t)getpid() * 0x9e3779b97f4a7c15ull ^ (uint64_t)(wall_now() * 1e6);
	backoff_init(&d->bo, p->retry_initial, p->retry_max, p->retry_multiplier, p->retry_jitter, seed);
	d->next_attempt = 0;
	return 0;
}

int drain_create(struct spool *s, const struct drain_params *p, const struct drain_link *chain, size_t n,
		 drain_log_fn log, void *log_ctx, struct drain **out)
{
	if (!s || !log || !out)
		return -EINVAL;
	struct drain *d = calloc(1, sizeof(*d));
	if (!d)
		return -ENOMEM;
	int rc = set_chain(d, p, chain, n);
	if (rc) {
		free(d);
		return rc;
	}
	d->s = s;
	d->log = log;
	d->log_ctx = log_ctx;
	d->spe = -1;
	d->published_spe = -1;
	d->max_retry_after = -1;
	*out = d;
	return 0;
}

void drain_set_cancel(struct drain *d, bool (*cancelled)(void *ctx), void *ctx)
{
	d->cancelled = cancelled;
	d->cancel_ctx = ctx;
}

const struct drain_counters *drain_counters(const struct drain *d)
{
	return &d->c;
}

void drain_set_requests(struct drain *d, struct prom_requests *r)
{
	d->req_stats = r;
}

size_t drain_in_flight(const struct drain *d)
{
	return d->open;
}

/* Outcomes as a transport finds them (transport.h): RETRY, no status, no
 * wait, empty id and reason.  Field by field: each is 336 bytes, mostly
 * text buffers, and a batch holds thousands. */
static void clear_outcomes(struct spool_tx_outcome *o, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		o[i].result = SPOOL_TX_RETRY;
		o[i].status = 0;
		o[i].retry_after = 0;
		o[i].id[0] = '\0';
		o[i].reason[0] = '\0';
	}
}

static void batch_free(struct batch *b)
{
	spool_buf_free(&b->json);
	spool_buf_free(&b->ids);
	free(b->ev);
	free(b->out);
	free(b->bad);
	free(b);
}

/* A batch with room for n events: a spare one when there is one (its
 * buffers stay allocated from batch to batch), else a new one.  NULL when
 * out of memory. */
static struct batch *batch_get(struct drain *d, size_t n)
{
	struct batch *b = d->spare;
	if (b) {
		d->spare = b->next;
		d->nspare--;
	} else if (!(b = calloc(1, sizeof(*b)))) {
		return NULL;
	}
	b->next = NULL;
	b->n = b->nbad = b->open = 0;
	b->failed = false;
	b->json.len = b->ids.len = 0;
	if (n > b->cap) {
		struct spool_tx_event *ev = realloc(b->ev, n * sizeof(*ev));
		if (ev)
			b->ev = ev;
		struct spool_tx_outcome *out = realloc(b->out, n * sizeof(*out));
		if (out)
			b->out = out;
		struct spool_reject *bad = realloc(b->bad, n * sizeof(*bad));
		if (bad)
			b->bad = bad;
		if (!ev || !out || !bad) {
			batch_free(b);
			return NULL;
		}
		b->cap = n;
	}
	/* a range never started must read as "keep", not a past answer */
	clear_outcomes(b->out, n);
	return b;
}

/* Keeps a settled batch for the next read (a window's worth at most). */
static void batch_put(struct drain *d, struct batch *b)
{
	if (d->nspare > d->p.max_in_flight) {
		batch_free(b);
		return;
	}
	b->next = d->spare;
	d->spare = b;
	d->nspare++;
}

static void drop_waiting(struct drain *d)
{
	while (d->waiting) {
		struct req *q = d->waiting;
		d->waiting = q->next;
		q->b->open--;
		free(q);
	}
	d->waiting_tail = NULL;
}

static int settle_all(struct drain *d);
static void settler_stop(struct settler *t);
static void job_free(struct settle_job *j);

void drain_destroy(struct drain *d)
{
	if (!d)
		return;
	/* what was answered is deleted before the figures go out */
	settle_all(d);
	settler_stop(&d->st);
	drain_publish(d);
	drop_waiting(d);
	/* requests still open belong to transports the caller destroys; their
	 * events stay in the spool */
	while (d->batches) {
		struct batch *b = d->batches;
		d->batches = b->next;
		batch_free(b);
	}
	while (d->spare) {
		struct batch *b = d->spare;
		d->spare = b->next;
		batch_free(b);
	}
	job_free(&d->pend);
	job_free(&d->st.job);
	free(d);
}

/* ---- figures in the meta store ---- */

static int put_text(struct drain *d, const char *key, const char *text)
{
	int rc = spool_meta_put(d->s, key, text, strlen(text));
	if (rc)
		d->log(d->log_ctx, LOG_WARNING, "cannot publish %s: %s", key, spool_strerror(rc));
	return rc;
}

int drain_publish(struct drain *d)
{
	char buf[512];
	int rc = 0;
	/* each put is a synced transaction: an idle agent writes nothing */
	if (memcmp(&d->published, &d->c, sizeof(d->c)) == 0 && d->published_spe == d->spe && !d->success_dirty &&
	    !d->error_dirty)
		return 0;
	d->published = d->c;
	if (d->spe >= 0 && d->spe != d->published_spe) {
		d->published_spe = d->spe;
		snprintf(buf, sizeof(buf), "%.9f", d->spe);
		rc |= put_text(d, "agent.send_seconds_per_event", buf);
	}
	if (d->success_dirty) {
		snprintf(buf, sizeof(buf), "%.6f", d->last_success);
		rc |= put_text(d, "agent.last_success", buf);
		d->success_dirty = false;
	}
	if (d->error_dirty) {
		rc |= put_text(d, "agent.last_error", d->last_error);
		d->error_dirty = false;
	}
	snprintf(buf, sizeof(buf),
		 "requests=%llu sent=%llu acked=%llu dead=%llu retried=%llu expired=%llu failures=%llu "
		 "recovered=%llu max_in_flight=%llu\n",
		 (unsigned long long)d->c.requests, (unsigned long long)d->c.sent, (unsigned long long)d->c.acked,
		 (unsigned long long)d->c.dead, (unsigned long long)d->c.retried, (unsigned long long)d->c.expired,
		 (unsigned long long)d->c.failures, (unsigned long long)d->c.recovered,
		 (unsigned long long)d->c.max_in_flight);
	rc |= put_text(d, "agent.counters", buf);
	return rc ? -EIO : 0;
}

static void note_error(struct drain *d, const char *msg)
{
	snprintf(d->last_error, sizeof(d->last_error), "%.6f %s", wall_now(), msg);
	d->error_dirty = true;
}

void drain_housekeep(struct drain *d)
{
	double now = mono_now();
	if (now >= d->next_publish) {
		if (d->next_publish > 0)
			drain_publish(d);
		d->next_publish = now + d->p.meta_interval;
	}
	if (now >= d->next_recover) {
		uint64_t moved = 0;
		int rc = spool_recover(d->s, &moved);
		if (rc)
			d->log(d->log_ctx, LOG_WARNING, "spool_recover: %s", spool_strerror(rc));
		else if (moved)
			d->log(d->log_ctx, LOG_INFO, "recovered %llu events from dead producers' rings",
			       (unsigned long long)moved);
		d->c.recovered += moved;
		d->next_recover = now + d->p.recover_interval;
	}
}

/* ---- reading and encoding a batch ---- */

/* Copies the records out of the read transaction, each encoded once as
 * the JSON the transports send.  Expired records go to expired[], corrupt
 * ones to the batch's bad list.  0 or -ENOMEM. */
static int encode_batch(struct drain *d, struct batch *b, const struct spool_record *r, size_t n,
			uint64_t *expired, size_t *nexp)
{
	int64_t now_us = (int64_t)(wall_now() * 1e6);
	int64_t max_age_us = (int64_t)(d->p.max_age * 1e6);
	size_t total = 0;
	for (size_t i = 0; i < n; i++)
		total += r[i].len;
	if (spool_buf_reserve(&b->json, total + total / 2 + 256) || spool_buf_reserve(&b->ids, n * 27))
		return -ENOMEM;
	if (d->read_after == 0 && r[0].seq == d->head_seq) {
		d->head_attempts++;
	} else if (d->read_after == 0) {
		d->head_seq = r[0].seq;
		d->head_attempts = 0;
	}
	uint32_t attempts = d->read_after == 0 ? d->head_attempts : 0;
	*nexp = 0;
	for (size_t i = 0; i < n; i++) {
		if (max_age_us > 0 && now_us - r[i].enqueue_us > max_age_us) {
			expired[(*nexp)++] = r[i].seq;
			continue;
		}
		struct spool_json_extra x = {.flags = SPOOL_JSON_SEQ, .spool_seq = r[i].seq, .memo = &d->memo};
		if (d->p.delivery_metadata) {
			x.flags |= SPOOL_JSON_DELIVERY;
			x.attempts = attempts + 1;
			x.spooled_seconds = (double)(now_us - r[i].enqueue_us) / 1e6;
		}
		size_t at = b->json.len;
		const char *id;
		size_t idlen;
		int rc = spool_event_to_json_find(r[i].data, r[i].len, &x, &b->json,
						  "client_event_id", &id, &idlen);
		if (rc == -EINVAL) {
			/* never handed to a transport: dead-lettered here */
			b->json.len = at;
			b->bad[b->nbad++] = (struct spool_reject){r[i].seq, SPOOL_ECORRUPT,
								  "stored event is not a well-formed msgpack map"};
			continue;
		}
		if (rc)
			return rc;
		size_t idat = SIZE_MAX;
		if (id) {
			idat = b->ids.len;
			if (spool_buf_append(&b->ids, id, idlen) || spool_buf_append(&b->ids, "", 1))
				return -ENOMEM;
		}
		b->ev[b->n++] = (struct spool_tx_event){
			.seq = r[i].seq,
			.severity = r[i].severity,
			.enqueue_us = r[i].enqueue_us,
			.json = (const char *)(uintptr_t)at, /* fixed up below: the buffer may move */
			.json_len = b->json.len - at,
			.client_event_id = (const char *)(uintptr_t)idat,
			.attempts = attempts,
		};
	}
	for (size_t i = 0; i < b->n; i++) {
		struct spool_tx_event *e = &b->ev[i];
		e->json = b->json.data + (uintptr_t)e->json;
		uintptr_t idat = (uintptr_t)e->client_event_id;
		e->client_event_id = idat == SIZE_MAX ? NULL : b->ids.data + idat;
	}
	return 0;
}

/* Requests that may be open now: the window, or one while probing an
 * endpoint that failed. */
static size_t window(const struct drain *d)
{
	return d->probing ? 1 : d->p.max_in_flight;
}

/* ---- bandwidth_limit: a token bucket in bytes ----
 *
 * A request may start while the bucket is not in debt; its wire bytes are
 * then taken out whole, which may put the bucket in debt until time pays it
 * back.  So the bytes sent over any long span stay within the cap plus one
 * request, and the transport keeps each request's own speed under the cap.
 * An idle link saves up at most BW_BURST_SECONDS of it. */
static double bw_tokens_at(const struct drain *d, double now)
{
	double t = d->bw_tokens + (now - d->bw_stamp) * d->p.bandwidth_limit;
	double cap = d->p.bandwidth_limit * BW_BURST_SECONDS;
	return t > cap ? cap : t;
}

static void bw_charge(struct drain *d, double now, uint64_t bytes)
{
	if (d->p.bandwidth_limit <= 0)
		return;
	d->bw_tokens = bw_tokens_at(d, now) - (double)bytes;
	d->bw_stamp = now;
}

/* Bytes a request puts on the wire when its transport does not say: the
 * body's JSON and a little for the request line and headers. */
static uint64_t wire_estimate(const struct req *q)
{
	uint64_t n = 13 + 200;
	for (size_t i = 0; i < q->n; i++)
		n += q->b->ev[q->off + i].json_len + 1;
	return n;
}

/* ---- requests ---- */

static struct req *new_req(struct batch *b, size_t off, size_t n, size_t link)
{
	struct req *q = calloc(1, sizeof(*q));
	if (!q)
		return NULL;
	q->b = b;
	q->off = off;
	q->n = n;
	q->link = link;
	b->open++;
	return q;
}

static void queue_req(struct drain *d, struct req *q)
{
	q->next = NULL;
	if (d->waiting_tail)
		d->waiting_tail->next = q;
	else
		d->waiting = q;
	d->waiting_tail = q;
}

/* Requests made in answer to one request, in the order they are to start. */
struct run {
	struct req *head, *tail;
};

/* Adds off..off+n of b for link to the run, one event per request where
 * the link takes no more.  0 or -ENOMEM. */
static int run_add(struct run *r, struct batch *b, size_t off, size_t n, size_t link, const struct drain *d)
{
	bool one = (d->chain[link].tx->flags & SPOOL_TX_F_ONE_PER_REQUEST) != 0;
	size_t step = one ? 1 : n;
	for (size_t i = 0; i < n; i += step) {
		struct req *q = new_req(b, off + i, step < n - i ? step : n - i, link);
		if (!q)
			return -ENOMEM;
		if (r->tail)
			r->tail->next = q;
		else
			r->head = q;
		r->tail = q;
	}
	return 0;
}

/* What answers ask for goes before what waited already, so that a split
 * or a fall-back keeps the events in spool order. */
static void run_front(struct drain *d, struct run *r)
{
	if (!r->head)
		return;
	r->tail->next = d->waiting;
	if (!d->waiting)
		d->waiting_tail = r->tail;
	d->waiting = r->head;
}

static void run_drop(struct run *r)
{
	while (r->head) {
		struct req *q = r->head;
		r->head = q->next;
		q->b->open--;
		free(q);
	}
	r->tail = NULL;
}

/* Queues off..off+n of b for link at the end.  0 or -ENOMEM. */
static int queue_range(struct drain *d, struct batch *b, size_t off, size_t n, size_t link)
{
	struct run r = {NULL, NULL};
	if (run_add(&r, b, off, n, link, d)) {
		run_drop(&r);
		return -ENOMEM;
	}
	for (struct req *q = r.head, *next; q; q = next) {
		next = q->next;
		queue_req(d, q);
	}
	return 0;
}

static void reject_one(struct spool_tx_outcome *o, int status, const char *why)
{
	o->result = SPOOL_TX_REJECTED;
	o->status = status;
	snprintf(o->reason, sizeof(o->reason), "%s", why);
}

/* What an answer to q says, beyond its per-event outcomes: more requests
 * (halves, one by one, the next link) or a failure of the whole endpoint. */
static void answered(struct drain *d, struct req *q, double now)
{
	struct batch *b = q->b;
	const struct drain_link *l = &d->chain[q->link];
	struct spool_tx_status *cs = &q->r.status;
	struct run more = {NULL, NULL};
	size_t ok = 0;
	switch (cs->call) {
	case SPOOL_TXC_DONE:
		d->probing = false; /* the endpoint answers: the whole window again */
		for (size_t i = 0; i < q->n; i++)
			ok += b->out[q->off + i].result == SPOOL_TX_ACCEPTED;
		if (ok) {
			double per = (now - q->started) / (double)ok / (double)(q->window ? q->window : 1);
			d->spe = d->spe < 0 ? per : 0.8 * d->spe + 0.2 * per;
		}
		return;
	case SPOOL_TXC_FALLBACK:
		if (q->link + 1 < d->nchain) {
			d->log(d->log_ctx, LOG_WARNING, "%s: %s: falling back to %s for this endpoint", l->tx->name,
			       cs->message, d->chain[q->link + 1].tx->name);
			if (d->active == q->link)
				d->active = q->link + 1;
			if (run_add(&more, b, q->off, q->n, q->link + 1, d) == 0) {
				run_front(d, &more);
				return;
			}
			run_drop(&more);
			cs->call = SPOOL_TXC_TRANSIENT;
			break;
		}
		cs->call = SPOOL_TXC_MISSING;
		break;
	case SPOOL_TXC_SPLIT:
		if (q->n > 1) {
			d->log(d->log_ctx, LOG_INFO, "%s: %s: splitting %zu events in halves", l->tx->name, cs->message,
			       q->n);
			size_t h = q->n / 2;
			if (run_add(&more, b, q->off, h, q->link, d) == 0 &&
			    run_add(&more, b, q->off + h, q->n - h, q->link, d) == 0) {
				run_front(d, &more);
				return;
			}
			run_drop(&more);
			cs->call = SPOOL_TXC_TRANSIENT;
			break;
		}
		/* a transport refusing one event as a whole rejects it */
		reject_one(&b->out[q->off], cs->status, cs->message[0] ? cs->message : "refused");
		return;
	case SPOOL_TXC_ISOLATE:
		if (q->n > 1) {
			size_t nt = q->link + 1 < d->nchain ? q->link + 1 : q->link;
			d->log(d->log_ctx, LOG_WARNING, "%s: %s: sending its %zu events one by one through %s",
			       l->tx->name, cs->message, q->n, d->chain[nt].tx->name);
			bool okq = true;
			for (size_t i = 0; i < q->n && okq; i++)
				okq = run_add(&more, b, q->off + i, 1, nt, d) == 0;
			if (okq) {
				run_front(d, &more);
				return;
			}
			run_drop(&more);
			cs->call = SPOOL_TXC_TRANSIENT;
			break;
		}
		reject_one(&b->out[q->off], cs->status, cs->message[0] ? cs->message : "rejected");
		return;
	default:
		break;
	}
	/* AUTH, MISSING, TRANSIENT: the whole endpoint failed; the outcomes the
	 * transport filled before stopping still count */
	d->c.failures++;
	if (!b->failed) {
		b->failed = true;
		b->fail = *cs;
	}
	/* the ranges not started yet wait for the next try */
	drop_waiting(d);
	d->halted = true;
}

/* A finished request: its outcomes are in the batch; what its status asks
 * for comes next. */
static void finished(struct drain *d, struct spool_tx_request *r, double now)
{
	struct req *q = r->host;
	d->open--;
	d->open_on[q->link]--;
	prom_request_finished(d->req_stats, now - q->started);
	answered(d, q, now);
	q->b->open--;
	free(q);
}

/* Starts q (or fails it locally).  Returns 0, or 1 when the transport had
 * no room (q stays first in the queue). */
static int start(struct drain *d, struct req *q, double now)
{
	const struct drain_link *l = &d->chain[q->link];
	struct batch *b = q->b;
	clear_outcomes(b->out + q->off, q->n);
	q->r = (struct spool_tx_request){
		.events = b->ev + q->off,
		.count = q->n,
		.out = b->out + q->off,
		.status = {.call = SPOOL_TXC_DONE, .retry_after = -1},
		.host = q,
	};
	q->started = now;
	q->window = d->open + 1;
	d->last_request = now;
	d->c.requests++;
	d->c.sent += q->n;
	d->open++;
	d->open_on[q->link]++;
	if (d->open > d->c.max_in_flight)
		d->c.max_in_flight = d->open;
	prom_request_started(d->req_stats);
	int rc = l->tx->send ? l->tx->send(l->state, &q->r) : l->tx->submit(l->state, &q->r);
	if (rc == -EBUSY && !l->tx->send) {
		prom_request_unstarted(d->req_stats);
		d->open--;
		d->open_on[q->link]--;
		d->c.requests--;
		d->c.sent -= q->n;
		return 1;
	}
	if (rc == 0)
		bw_charge(d, now, q->r.wire_bytes ? q->r.wire_bytes : wire_estimate(q));
	if (rc) {
		clear_outcomes(b->out + q->off, q->n);
		q->r.status.call = SPOOL_TXC_TRANSIENT;
		snprintf(q->r.status.message, sizeof(q->r.status.message), "transport %s: local failure: %s",
			 l->tx->name, strerror(rc < 0 ? -rc : rc));
	}
	if (rc || l->tx->send)
		finished(d, &q->r, mono_now());
	return 0;
}

/* Collects the answers that arrived, waiting at most timeout seconds for
 * the first.  Returns how many. */
static size_t collect(struct drain *d, double timeout)
{
	struct spool_tx_request *done[MAX_WINDOW];
	size_t got = 0;
	/* wait on the link with the most requests open, then look at the rest */
	size_t busiest = 0;
	for (size_t i = 1; i < d->nchain; i++)
		if (d->open_on[i] > d->open_on[busiest])
			busiest = i;
	for (size_t pass = 0; pass < 2; pass++)
		for (size_t i = 0; i < d->nchain; i++) {
			const struct drain_link *l = &d->chain[i];
			if (!d->open_on[i] || !l->tx->poll || (pass == 0) != (i == busiest))
				continue;
			int n = l->tx->poll(l->state, pass == 0 ? timeout : 0, done, MAX_WINDOW);
			if (n < 0) {
				d->log(d->log_ctx, LOG_ERR, "transport %s: poll: %s", l->tx->name, strerror(-n));
				continue;
			}
			double now = mono_now();
			for (int k = 0; k < n; k++)
				finished(d, done[k], now);
			got += (size_t)n;
		}
	return got;
}

/* ---- settling ---- */

static bool job_empty(const struct settle_job *j)
{
	return !j->na && !j->nr && !j->batches;
}

/* Room in j for na more acknowledgements and nr more rejections.  0 or
 * -ENOMEM. */
static int job_reserve(struct settle_job *j, size_t na, size_t nr)
{
	if (j->na + na > j->acap) {
		size_t cap = j->acap ? j->acap : 1024;
		while (cap < j->na + na)
			cap *= 2;
		uint64_t *a = realloc(j->acked, cap * sizeof(*a));
		if (!a)
			return -ENOMEM;
		j->acked = a;
		j->acap = cap;
	}
	if (j->nr + nr > j->rcap) {
		size_t cap = j->rcap ? j->rcap : 64;
		while (cap < j->nr + nr)
			cap *= 2;
		struct spool_reject *r = realloc(j->rej, cap * sizeof(*r));
		if (!r)
			return -ENOMEM;
		j->rej = r;
		j->rcap = cap;
	}
	return 0;
}

/* Moves everything of src to the end of dst (src keeps its buffers).  0
 * or -ENOMEM (then nothing moved). */
static int job_append(struct settle_job *dst, struct settle_job *src)
{
	if (job_reserve(dst, src->na, src->nr))
		return -ENOMEM;
	if (src->na)
		memcpy(dst->acked + dst->na, src->acked, src->na * sizeof(*src->acked));
	if (src->nr)
		memcpy(dst->rej + dst->nr, src->rej, src->nr * sizeof(*src->rej));
	dst->na += src->na;
	dst->nr += src->nr;
	struct batch **tail = &dst->batches;
	while (*tail)
		tail = &(*tail)->next;
	*tail = src->batches;
	src->batches = NULL;
	src->na = src->nr = 0;
	return 0;
}

static void job_free(struct settle_job *j)
{
	while (j->batches) {
		struct batch *b = j->batches;
		j->batches = b->next;
		batch_free(b);
	}
	free(j->acked);
	free(j->rej);
	*j = (struct settle_job){0};
}

/* Deletes j's acknowledged events and dead-letters its rejected ones in
 * one synced commit: 0 or the spool's error. */
static int job_commit(struct spool *s, const struct settle_job *j)
{
	uint64_t settled = 0;
	return spool_settle(s, j->acked, j->na, j->rej, j->nr, &settled);
}

static void *settler_main(void *arg)
{
	struct settler *t = arg;
	pthread_mutex_lock(&t->mu);
	for (;;) {
		while (!t->busy && !t->quit)
			pthread_cond_wait(&t->cv, &t->mu);
		if (!t->busy)
			break;
		pthread_mutex_unlock(&t->mu);
		int rc = job_commit(t->s, &t->job);
		pthread_mutex_lock(&t->mu);
		t->rc = rc;
		t->busy = false;
		pthread_cond_broadcast(&t->done);
	}
	pthread_mutex_unlock(&t->mu);
	return NULL;
}

/* Starts the settler thread once; without it (no thread could be made)
 * every commit runs in the caller, as settle_kick() does then. */
static void settler_start(struct drain *d)
{
	struct settler *t = &d->st;
	t->s = d->s;
	if (pthread_mutex_init(&t->mu, NULL) != 0)
		return;
	if (pthread_cond_init(&t->cv, NULL) != 0) {
		pthread_mutex_destroy(&t->mu);
		return;
	}
	if (pthread_cond_init(&t->done, NULL) != 0) {
		pthread_cond_destroy(&t->cv);
		pthread_mutex_destroy(&t->mu);
		return;
	}
	int rc = pthread_create(&t->th, NULL, settler_main, t);
	if (rc) {
		d->log(d->log_ctx, LOG_WARNING, "cannot start the settling thread (%s): settling in the drain loop",
		       strerror(rc));
		pthread_cond_destroy(&t->done);
		pthread_cond_destroy(&t->cv);
		pthread_mutex_destroy(&t->mu);
		return;
	}
	t->started = true;
}

static void settler_stop(struct settler *t)
{
	if (!t->started)
		return;
	pthread_mutex_lock(&t->mu);
	t->quit = true;
	pthread_cond_signal(&t->cv);
	pthread_mutex_unlock(&t->mu);
	pthread_join(t->th, NULL);
	pthread_cond_destroy(&t->done);
	pthread_cond_destroy(&t->cv);
	pthread_mutex_destroy(&t->mu);
	t->started = false;
}

static bool settler_busy(struct settler *t)
{
	if (!t->started)
		return false;
	pthread_mutex_lock(&t->mu);
	bool busy = t->busy;
	pthread_mutex_unlock(&t->mu);
	return busy;
}

/* Waits until the settler has committed what it holds. */
static void settler_wait(struct settler *t)
{
	if (!t->started)
		return;
	pthread_mutex_lock(&t->mu);
	while (t->busy)
		pthread_cond_wait(&t->done, &t->mu);
	pthread_mutex_unlock(&t->mu);
}

/* Takes a commit that finished: its counts go to the figures and its
 * batches back to the spare list.  A failed one goes back in front of
 * what waits for the next try (its events stay in the spool until then,
 * and are sent again if the agent stops first: the server dedups).
 * 0, or -1 when the commit failed. */
static int settle_reap(struct drain *d)
{
	struct settler *t = &d->st;
	struct settle_job *j = &t->job;
	if (settler_busy(t) || job_empty(j))
		return 0;
	if (t->rc) {
		d->log(d->log_ctx, LOG_ERR, "settling %zu events: %s", j->na + j->nr, spool_strerror(t->rc));
		/* what waited goes after the failed job, which then waits in its
		 * place; without the memory to join them, both stay as they are
		 * (failed still) for the next call */
		if (job_append(j, &d->pend) == 0) {
			struct settle_job failed = *j;
			*j = d->pend;
			d->pend = failed;
			t->rc = 0;
		}
		return -1;
	}
	d->c.acked += j->na;
	d->c.dead += j->nr;
	if (j->na) {
		d->last_success = wall_now();
		d->success_dirty = true;
	}
	while (j->batches) {
		struct batch *b = j->batches;
		j->batches = b->next;
		batch_put(d, b);
	}
	j->na = j->nr = 0;
	return 0;
}

/* Hands what waits to the settler when it is free (in the caller when
 * there is no thread).  0, or -1 when a commit made here failed. */
static int settle_kick(struct drain *d)
{
	struct settler *t = &d->st;
	if (job_empty(&d->pend))
		return 0;
	if (settle_reap(d) < 0)
		return -1;
	if (settler_busy(t) || !job_empty(&t->job))
		return 0; /* answers gather for the next commit: a group commit */
	if (!t->tried) {
		t->tried = true;
		settler_start(d);
	}
	struct settle_job j = t->job;
	t->job = d->pend;
	d->pend = j;
	if (!t->started) {
		t->rc = job_commit(d->s, &t->job);
		return settle_reap(d);
	}
	pthread_mutex_lock(&t->mu);
	t->busy = true;
	t->rc = 0;
	pthread_cond_signal(&t->cv);
	pthread_mutex_unlock(&t->mu);
	return 0;
}

/* Waits for the commit in progress, takes its outcome and hands over
 * what waits.  0, or -1 when a commit failed. */
static int settle_handover(struct drain *d)
{
	settler_wait(&d->st);
	return settle_reap(d) < 0 || settle_kick(d) < 0 ? -1 : 0;
}

/* Adds batch b's outcomes to d->pend (room made by the caller); b->nkeep
 * gets how many stay. */
static void settle_collect(struct drain *d, struct batch *b)
{
	struct settle_job *j = &d->pend;
	b->nkeep = 0;
	for (size_t i = 0; i < b->nbad; i++) {
		j->rej[j->nr++] = b->bad[i];
		d->log(d->log_ctx, LOG_WARNING, "event %llu: %s: dead-lettered", (unsigned long long)b->bad[i].seq,
		       b->bad[i].reason);
	}
	for (size_t i = 0; i < b->n; i++) {
		struct spool_tx_outcome *o = &b->out[i];
		switch (o->result) {
		case SPOOL_TX_ACCEPTED:
			j->acked[j->na++] = b->ev[i].seq;
			break;
		case SPOOL_TX_REJECTED:
			j->rej[j->nr++] = (struct spool_reject){b->ev[i].seq, o->status, o->reason};
			d->log(d->log_ctx, LOG_WARNING, "event %llu rejected for good (%d %s): dead-lettered",
			       (unsigned long long)b->ev[i].seq, o->status, o->reason);
			break;
		case SPOOL_TX_RETRY_AFTER:
			if (o->retry_after > d->max_retry_after)
				d->max_retry_after = o->retry_after;
			b->nkeep++;
			break;
		default:
			b->nkeep++;
		}
	}
}

/* Takes the outcomes of every batch whose requests finished and hands
 * them to the settler, which deletes and dead-letters them in one synced
 * commit (all that came in while the last one synced: a group commit of
 * the deletes) while the drain goes on.  A batch where something stays
 * halts the window (no new batch) and keeps the first whole failure for
 * plan_retry().  Returns how many batches were taken, or -1 when the
 * spool failed (then their events wait for the next try, and are sent
 * again if the agent stops first: the server dedups). */
static int settle_finished(struct drain *d)
{
	if (settle_reap(d) < 0)
		return -1;
	size_t na = 0, nr = 0;
	for (struct batch *b = d->batches; b; b = b->next)
		if (!b->open) {
			na += b->n;
			nr += b->n + b->nbad;
		}
	if (job_reserve(&d->pend, na, nr)) {
		d->log(d->log_ctx, LOG_ERR, "out of memory settling %zu events", na);
		return -1;
	}
	int n = 0;
	for (struct batch **pb = &d->batches; *pb;) {
		struct batch *b = *pb;
		if (b->open) {
			pb = &b->next;
			continue;
		}
		settle_collect(d, b);
		d->c.retried += b->nkeep;
		if (b->nkeep > 0 || b->failed) {
			d->halted = true;
			if (b->failed && !d->failed) {
				d->failed = true;
				d->fail = b->fail;
			}
		}
		*pb = b->next;
		b->next = d->pend.batches;
		d->pend.batches = b;
		n++;
	}
	if (settle_kick(d) < 0)
		return -1;
	return n;
}

/* settle_finished(), then waits until everything taken is committed: for
 * when the window is empty, before a read from the head (which must not
 * find events whose deletes are still on their way) and before stopping.
 * Returns what settle_finished() did, or -1 on a failed commit. */
static int settle_all(struct drain *d)
{
	int n = settle_finished(d);
	while (n >= 0 && (!job_empty(&d->pend) || !job_empty(&d->st.job)))
		if (settle_handover(d) < 0)
			return -1;
	return n;
}

/* Once a halted window is empty: the wait before the next try (one backoff
 * step per round, however many requests failed in it), logged. */
static double plan_retry(struct drain *d)
{
	double delay, ra = d->max_retry_after;
	const char *why = "some events were not accepted";
	if (d->failed) {
		why = d->fail.message[0] ? d->fail.message : "send failed";
		if (d->fail.retry_after > ra)
			ra = d->fail.retry_after;
	}
	bool auth = d->failed && (d->fail.call == SPOOL_TXC_AUTH || d->fail.call == SPOOL_TXC_MISSING);
	delay = auth ? d->p.auth_retry : backoff_next(&d->bo);
	if (ra >= 0)
		delay = ra < MAX_RETRY_AFTER ? ra : MAX_RETRY_AFTER;
	if (auth)
		d->log(d->log_ctx, LOG_ERR, "%s; keeping every event, next try in %.1f s", why, delay);
	else
		d->log(d->log_ctx, LOG_WARNING, "%s; events kept, next try in %.3f s%s", why, delay,
		       ra >= 0 ? " (Retry-After)" : "");
	note_error(d, why);
	/* a server that is down gets one request per try, not a window's worth */
	if (d->failed)
		d->probing = true;
	d->failed = false;
	d->max_retry_after = -1;
	return delay;
}

/* Reads the next batch after what is out and queues it.  1 when one was
 * queued, 0 when the spool holds nothing more, -1 on a spool failure. */
/* The most severe severity of the batches out, or -1. */
static int out_severity(const struct drain *d)
{
	int most = -1;
	for (const struct batch *b = d->batches; b; b = b->next)
		if (b->severity > most)
			most = b->severity;
	return most;
}

/* Severity order: the next batch from the most severe severity that has
 * one, scanning each from where its last read stopped.  A less severe
 * batch waits until the more severe ones out are answered, so the server
 * gets every fatal event before any error, and so on; a more severe one
 * may start beside them.  *sb NULL: nothing to read now. */
static int read_severity(struct drain *d, size_t limit, struct spool_batch **sb, int *severity)
{
	int floor = out_severity(d);
	*sb = NULL;
	for (int sev = SPOOL_NSEV_DRAIN - 1; sev >= 0 && sev >= floor; sev--) {
		uint64_t scanned = d->sev_after[sev];
		int rc = spool_read_severity(d->s, sev, d->sev_after[sev], limit, d->p.max_batch_bytes, sb,
					     &scanned);
		if (rc)
			return rc;
		d->sev_after[sev] = scanned;
		if (spool_batch_count(*sb)) {
			*severity = sev;
			return 0;
		}
		spool_batch_release(*sb);
		*sb = NULL;
	}
	return 0;
}

/* Queues a batch's events as requests: one while the backlog is larger
 * than the batch (it was read full), else spread over the free slots of
 * the window, batch_size events each at least.  0 or -ENOMEM. */
static int queue_batch(struct drain *d, struct batch *b, size_t limit)
{
	size_t n = b->n, per = n;
	size_t w = window(d);
	size_t slots = w > d->open ? w - d->open : 1;
	bool async = d->chain[d->active].tx->submit != NULL;
	if (async && n > d->p.batch_size && n < limit && slots > 1) {
		size_t pieces = (n + d->p.batch_size - 1) / d->p.batch_size;
		if (pieces > slots)
			pieces = slots;
		per = (n + pieces - 1) / pieces;
	}
	for (size_t off = 0; off < n; off += per)
		if (queue_range(d, b, off, per < n - off ? per : n - off, d->active))
			return -ENOMEM;
	return 0;
}

static int read_next(struct drain *d)
{
	struct spool_batch *sb = NULL;
	/* a backlog goes in requests of up to max_batch_size; live traffic
	 * arrives in fewer and goes as it comes */
	size_t limit = d->p.max_batch_size;
	int severity = -1;
	int rc = d->p.severity_order
			 ? read_severity(d, limit, &sb, &severity)
			 : spool_read_batch(d->s, d->read_after, limit, d->p.max_batch_bytes, &sb);
	if (rc) {
		d->log(d->log_ctx, LOG_ERR, "reading the spool: %s", spool_strerror(rc));
		return -1;
	}
	size_t n = spool_batch_count(sb);
	if (n == 0) {
		spool_batch_release(sb);
		return 0;
	}
	const struct spool_record *r = spool_batch_records(sb);
	uint64_t last = r[n - 1].seq;
	struct batch *b = batch_get(d, n);
	uint64_t *expired = d->p.max_age > 0 ? calloc(n, sizeof(*expired)) : NULL;
	size_t nexp = 0;
	rc = b && (expired || d->p.max_age <= 0) ? encode_batch(d, b, r, n, expired, &nexp) : -ENOMEM;
	/* the read transaction ends before any send */
	spool_batch_release(sb);
	if (rc) {
		d->log(d->log_ctx, LOG_ERR, "out of memory for a batch of %zu", n);
		if (b)
			batch_put(d, b);
		free(expired);
		return -1;
	}
	if (nexp) {
		uint64_t gone = 0;
		/* a policy removal: counted by the spool as an eviction, not an ack */
		rc = spool_discard(d->s, expired, nexp, &gone);
		free(expired);
		if (rc) {
			d->log(d->log_ctx, LOG_ERR, "dropping expired events: %s", spool_strerror(rc));
			batch_put(d, b);
			return -1;
		}
		d->c.expired += gone;
		d->log(d->log_ctx, LOG_WARNING, "dropped %llu events older than max_age_seconds %g",
		       (unsigned long long)gone, d->p.max_age);
	} else {
		free(expired);
	}
	if (!d->p.severity_order || last > d->read_after)
		d->read_after = last;
	b->severity = severity;
	b->next = d->batches;
	d->batches = b;
	if (b->n && queue_batch(d, b, limit)) {
		d->log(d->log_ctx, LOG_ERR, "out of memory for the requests of a batch of %zu", b->n);
		drop_waiting(d);
		d->halted = true;
	}
	return 1;
}

/* The next read starts from the head again (in every severity). */
static void reset_reads(struct drain *d)
{
	d->read_after = 0;
	memset(d->sev_after, 0, sizeof(d->sev_after));
}

void drain_pause(struct drain *d, bool paused)
{
	d->paused = paused;
}

bool drain_paused(const struct drain *d)
{
	return d->paused;
}

static bool stop_now(struct drain *d)
{
	if (d->paused)
		return true;
	if (!d->stopped && d->cancelled && d->c.requests && d->cancelled(d->cancel_ctx))
		d->stopped = true;
	return d->stopped;
}

/* How long min_request_interval and bandwidth_limit hold the next request
 * start back (0: it may start now). */
static double pace_left(const struct drain *d, double now)
{
	double left = 0;
	if (d->p.min_request_interval > 0 && d->c.requests > 0)
		left = d->last_request + d->p.min_request_interval - now;
	if (d->p.bandwidth_limit > 0) {
		double t = bw_tokens_at(d, now);
		double bw = t < 0 ? -t / d->p.bandwidth_limit : 0;
		if (bw > left)
			left = bw;
	}
	return left > 0 ? left : 0;
}

enum drain_result drain_step(struct drain *d, double *wait)
{
	*wait = 0;
	drain_housekeep(d);
	bool progress = false;
	size_t reads = 0;

	if (d->open)
		progress |= collect(d, 0) > 0;
	for (;;) {
		double now = mono_now();
		/* start what waits, as the window and the pace allow */
		while (d->waiting && d->open < window(d) && !stop_now(d) && pace_left(d, now) == 0) {
			struct req *q = d->waiting;
			d->waiting = q->next;
			if (!d->waiting)
				d->waiting_tail = NULL;
			if (start(d, q, now)) {
				queue_req(d, q); /* no room in the transport: later */
				break;
			}
			progress = true;
			now = mono_now();
		}
		int s = settle_finished(d);
		if (s < 0) {
			*wait = 1;
			return DRAIN_ERROR;
		}
		progress |= s > 0;
		/* a new batch when nothing waits and nothing stays; at most a
		 * window's worth per step, so the caller's housekeeping and
		 * signals get their turn */
		if (d->waiting || d->halted || stop_now(d) || d->open >= window(d) || reads >= window(d) ||
		    now < d->next_attempt || pace_left(d, now) > 0)
			break;
		/* answers that wait for the settler hold new reads back until
		 * their commit starts: so at most a commit's and a window's worth
		 * of acknowledged events are not yet deleted at any moment (what
		 * a crash then sends again), and memory stays bounded */
		if (!job_empty(&d->pend) && settle_handover(d) < 0) {
			*wait = 1;
			return DRAIN_ERROR;
		}
		int r = read_next(d);
		if (r < 0) {
			*wait = 1;
			return DRAIN_ERROR;
		}
		if (r == 0)
			break;
		reads++;
		progress = true;
	}

	double now = mono_now();
	if (d->open == 0 && d->halted) {
		/* everything out came back and something stays: the next try
		 * starts from the head, after the backoff */
		drop_waiting(d);
		if (settle_all(d) < 0) {
			*wait = 1;
			return DRAIN_ERROR;
		}
		d->halted = false;
		reset_reads(d);
		/* the wait starts now, as plan_retry() logs it, not before
		 * settle_all() waited for the settler */
		now = mono_now();
		d->next_attempt = now + plan_retry(d);
		*wait = d->next_attempt - now;
		/* BACKOFF even when this step settled something: a caller that
		 * stops at the first failure (--once) must not go on when the
		 * jittered wait happens to be 0 */
		return DRAIN_BACKOFF;
	}
	if (d->open == 0 && d->paused) {
		/* what waited starts again from the head once resumed */
		drop_waiting(d);
		if (settle_all(d) < 0) {
			*wait = 1;
			return DRAIN_ERROR;
		}
		reset_reads(d);
		if (!d->failed)
			d->halted = false; /* kept by the pause, not by a failure */
		return progress ? DRAIN_PROGRESS : DRAIN_IDLE;
	}
	if (d->open == 0 && !d->waiting) {
		/* the next read starts from the head: the deletes of what was
		 * answered are committed first */
		int n = settle_all(d);
		if (n < 0) {
			*wait = 1;
			return DRAIN_ERROR;
		}
		progress |= n > 0;
		reset_reads(d);
		now = mono_now();
		if (progress) {
			backoff_reset(&d->bo);
			return DRAIN_PROGRESS;
		}
		if (d->stopped)
			return DRAIN_PACE;
		if (now < d->next_attempt) {
			*wait = d->next_attempt - now;
			return DRAIN_BACKOFF;
		}
		if (pace_left(d, now) > 0) {
			*wait = pace_left(d, now);
			return DRAIN_PACE;
		}
		return DRAIN_IDLE;
	}
	if (progress)
		return DRAIN_PROGRESS;
	if (d->open == 0) {
		/* ranges wait for the pace alone */
		*wait = pace_left(d, now);
		return DRAIN_PACE;
	}
	/* requests in flight, nothing else to do now: wait a little for
	 * answers (or until the pace lets the next one start) */
	double slice = WAIT_SLICE;
	if (d->waiting && d->open < window(d) && pace_left(d, now) < slice)
		slice = pace_left(d, now);
	collect(d, slice);
	return DRAIN_BUSY;
}

size_t drain_finish(struct drain *d, double timeout)
{
	double deadline = mono_now() + timeout;
	drop_waiting(d);
	d->stopped = true;
	while (d->open && mono_now() < deadline) {
		double left = deadline - mono_now();
		collect(d, left < WAIT_SLICE ? left : WAIT_SLICE);
		drop_waiting(d); /* answers asking for more are not followed now */
		if (settle_finished(d) < 0)
			break;
	}
	settle_all(d);
	if (d->halted && d->open == 0) {
		d->halted = false;
		reset_reads(d);
		d->next_attempt = mono_now() + plan_retry(d);
	}
	d->stopped = false;
	return d->open;
}

int drain_reconfigure(struct drain *d, const struct drain_params *p, const struct drain_link *chain, size_t n)
{
	drain_finish(d, 30);
	if (d->open)
		return -EBUSY;
	return set_chain(d, p, chain, n);
}
