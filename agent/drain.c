/* drain.c — the drain loop (drain.h): delete on acknowledgement, and the
 * policy for every answer a transport classifies. */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "codec/json.h"

#include "backoff.h"
#include "drain.h"

#define MAX_LINKS 8
#define MAX_RETRY_AFTER 86400.0

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

	/* the batch being sent, copied out of the spool */
	struct spool_buf arena;
	struct spool_tx_event *ev;
	struct spool_tx_outcome *out;
	size_t cap;
	uint64_t *acked;
	struct spool_reject *rej;
	uint64_t head_seq; /* first seq of the last batch, for attempt counts */
	uint32_t head_attempts;

	/* the call failure that stopped a step */
	bool failed;
	struct spool_tx_status fail;
	double max_retry_after;
	bool stopped; /* cancelled */

	/* figures */
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

static int set_chain(struct drain *d, const struct drain_params *p, const struct drain_link *chain,
		     size_t n)
{
	if (!p || !chain || n == 0 || n > MAX_LINKS || p->batch_size == 0)
		return -EINVAL;
	d->p = *p;
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
	*out = d;
	return 0;
}

int drain_reconfigure(struct drain *d, const struct drain_params *p, const struct drain_link *chain,
		      size_t n)
{
	return set_chain(d, p, chain, n);
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

void drain_destroy(struct drain *d)
{
	if (!d)
		return;
	drain_publish(d);
	spool_buf_free(&d->arena);
	free(d->ev);
	free(d->out);
	free(d->acked);
	free(d->rej);
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
	if (memcmp(&d->published, &d->c, sizeof(d->c)) == 0 && d->published_spe == d->spe &&
	    !d->success_dirty && !d->error_dirty)
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
		 "recovered=%llu\n",
		 (unsigned long long)d->c.requests, (unsigned long long)d->c.sent, (unsigned long long)d->c.acked,
		 (unsigned long long)d->c.dead, (unsigned long long)d->c.retried, (unsigned long long)d->c.expired,
		 (unsigned long long)d->c.failures, (unsigned long long)d->c.recovered);
	rc |= put_text(d, "agent.counters", buf);
	return rc ? -EIO : 0;
}

static void note_error(struct drain *d, const char *msg)
{
	snprintf(d->last_error, sizeof(d->last_error), "%.6f %s", wall_now(), msg);
	d->error_dirty = true;
}

/* ---- one batch ---- */

static int reserve(struct drain *d, size_t n)
{
	if (n <= d->cap)
		return 0;
	struct spool_tx_event *ev = realloc(d->ev, n * sizeof(*ev));
	if (ev)
		d->ev = ev;
	struct spool_tx_outcome *out = realloc(d->out, n * sizeof(*out));
	if (out)
		d->out = out;
	uint64_t *acked = realloc(d->acked, n * sizeof(*acked));
	if (acked)
		d->acked = acked;
	struct spool_reject *rej = realloc(d->rej, n * sizeof(*rej));
	if (rej)
		d->rej = rej;
	if (!ev || !out || !acked || !rej)
		return -ENOMEM;
	d->cap = n;
	return 0;
}

static void reject_one(struct spool_tx_outcome *o, int status, const char *why)
{
	o->result = SPOOL_TX_REJECTED;
	o->status = status;
	snprintf(o->reason, sizeof(o->reason), "%s", why);
}

/* Sends ev[off, off+n) through link ti.  Returns 0 to go on, 1 when the
 * step must stop (a failure of the whole endpoint, recorded in d->fail, or
 * a cancel). */
static uint32_t link_flags(const struct drain_link *l)
{
	return l->tx->struct_size >= offsetof(struct spool_transport, flags) + sizeof(uint32_t) ? l->tx->flags : 0;
}

/* min_request_interval between request starts, inside a step too (splits,
 * isolation, one request per event). */
static void pace(struct drain *d)
{
	if (d->p.min_request_interval <= 0 || d->c.requests == 0)
		return;
	double left = d->last_request + d->p.min_request_interval - mono_now();
	if (left > 0) {
		struct timespec ts = {(time_t)left, (long)((left - (double)(time_t)left) * 1e9)};
		nanosleep(&ts, NULL);
	}
}

static int send_range(struct drain *d, size_t off, size_t n, size_t ti)
{
	if (d->cancelled && d->c.requests && d->cancelled(d->cancel_ctx)) {
		d->stopped = true;
		return 1;
	}
	const struct drain_link *l = &d->chain[ti];
	if (n > 1 && d->p.min_request_interval > 0 && (link_flags(l) & SPOOL_TX_F_REQUEST_PER_EVENT)) {
		for (size_t i = 0; i < n; i++)
			if (send_range(d, off + i, 1, ti))
				return 1;
		return 0;
	}
	pace(d);
	struct spool_tx_status cs = {.call = SPOOL_TXC_DONE, .retry_after = -1};
	struct spool_tx_batch b = {
		.events = d->ev + off,
		.count = n,
		.delivery_metadata = d->p.delivery_metadata,
		.now_us = (int64_t)(wall_now() * 1e6),
	};
	memset(d->out + off, 0, n * sizeof(*d->out));
	d->last_request = mono_now();
	double t0 = d->last_request;
	int rc = l->tx->send(l->state, &b, d->out + off, &cs);
	double took = mono_now() - t0;
	d->c.requests++;
	d->c.sent += n;
	if (rc) {
		cs.call = SPOOL_TXC_TRANSIENT;
		snprintf(cs.message, sizeof(cs.message), "transport %s: local failure: %s", l->tx->name,
			 strerror(rc < 0 ? -rc : rc));
	}
	switch (cs.call) {
	case SPOOL_TXC_DONE: {
		size_t ok = 0;
		for (size_t i = off; i < off + n; i++)
			ok += d->out[i].result == SPOOL_TX_ACCEPTED;
		if (ok) {
			double per = took / (double)ok;
			d->spe = d->spe < 0 ? per : 0.8 * d->spe + 0.2 * per;
		}
		return 0;
	}
	case SPOOL_TXC_FALLBACK:
		if (ti + 1 < d->nchain) {
			d->log(d->log_ctx, LOG_WARNING, "%s: %s: falling back to %s for this endpoint", l->tx->name,
			       cs.message, d->chain[ti + 1].tx->name);
			if (d->active == ti)
				d->active = ti + 1;
			return send_range(d, off, n, ti + 1);
		}
		cs.call = SPOOL_TXC_MISSING;
		break;
	case SPOOL_TXC_SPLIT:
		if (n > 1) {
			d->log(d->log_ctx, LOG_INFO, "%s: %s: splitting %zu events in halves", l->tx->name, cs.message, n);
			size_t h = n / 2;
			if (send_range(d, off, h, ti))
				return 1;
			return send_range(d, off + h, n - h, ti);
		}
		reject_one(&d->out[off], cs.status ? cs.status : 413, cs.message[0] ? cs.message : "too large");
		return 0;
	case SPOOL_TXC_ISOLATE:
		if (n > 1) {
			size_t nt = ti + 1 < d->nchain ? ti + 1 : ti;
			d->log(d->log_ctx, LOG_WARNING, "%s: %s: sending its %zu events one by one through %s",
			       l->tx->name, cs.message, n, d->chain[nt].tx->name);
			for (size_t i = 0; i < n; i++)
				if (send_range(d, off + i, 1, nt))
					return 1;
			return 0;
		}
		reject_one(&d->out[off], cs.status ? cs.status : 422, cs.message[0] ? cs.message : "rejected");
		return 0;
	default:
		break;
	}
	/* AUTH, MISSING, TRANSIENT: the whole endpoint failed; the outcomes the
	 * transport filled before stopping still count */
	d->failed = true;
	d->fail = cs;
	d->c.failures++;
	return 1;
}

static int copy_batch(struct drain *d, const struct spool_record *r, size_t n, size_t *nsend,
		      uint64_t *expired, size_t *nexp)
{
	int64_t now_us = (int64_t)(wall_now() * 1e6);
	int64_t max_age_us = (int64_t)(d->p.max_age * 1e6);
	size_t total = 0;
	for (size_t i = 0; i < n; i++)
		total += r[i].len;
	d->arena.len = 0;
	if (spool_buf_reserve(&d->arena, total))
		return -ENOMEM; /* nothing below reallocates then */
	if (r[0].seq == d->head_seq) {
		d->head_attempts++;
	} else {
		d->head_seq = r[0].seq;
		d->head_attempts = 0;
	}
	size_t k = 0;
	*nexp = 0;
	for (size_t i = 0; i < n; i++) {
		if (max_age_us > 0 && now_us - r[i].enqueue_us > max_age_us) {
			expired[(*nexp)++] = r[i].seq;
			continue;
		}
		size_t at = d->arena.len;
		spool_buf_append(&d->arena, r[i].data, r[i].len);
		d->ev[k] = (struct spool_tx_event){
			.seq = r[i].seq,
			.severity = r[i].severity,
			.enqueue_us = r[i].enqueue_us,
			.data = (const void *)(uintptr_t)at, /* fixed up below: the arena may move */
			.len = r[i].len,
			.attempts = d->head_attempts,
		};
		k++;
	}
	for (size_t i = 0; i < k; i++) {
		struct spool_tx_event *e = &d->ev[i];
		e->data = d->arena.data + (uintptr_t)e->data;
		const char *id;
		size_t idlen;
		if (spool_event_get_str(e->data, e->len, "client_event_id", &id, &idlen) == 0) {
			e->client_event_id = id;
			e->client_event_id_len = idlen;
		}
	}
	*nsend = k;
	return 0;
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

enum drain_result drain_step(struct drain *d, double *wait)
{
	double now = mono_now();
	*wait = 0;
	drain_housekeep(d);

	if (now < d->next_attempt) {
		*wait = d->next_attempt - now;
		return DRAIN_BACKOFF;
	}
	if (d->p.min_request_interval > 0 && d->c.requests &&
	    now < d->last_request + d->p.min_request_interval) {
		*wait = d->last_request + d->p.min_request_interval - now;
		return DRAIN_PACE;
	}
	struct spool_batch *batch = NULL;
	int rc = spool_read_batch(d->s, 0, d->p.batch_size, d->p.max_batch_bytes, &batch);
	if (rc) {
		d->log(d->log_ctx, LOG_ERR, "reading the spool: %s", spool_strerror(rc));
		*wait = 1;
		return DRAIN_ERROR;
	}
	size_t n = spool_batch_count(batch);
	if (n == 0) {
		spool_batch_release(batch);
		return DRAIN_IDLE;
	}
	size_t nsend = 0, nexp = 0;
	rc = reserve(d, n);
	if (!rc)
		rc = copy_batch(d, spool_batch_records(batch), n, &nsend, d->acked, &nexp);
	/* the read transaction ends before the network send */
	spool_batch_release(batch);
	if (rc) {
		d->log(d->log_ctx, LOG_ERR, "out of memory for a batch of %zu", n);
		*wait = 1;
		return DRAIN_ERROR;
	}
	if (nexp) {
		uint64_t gone = 0;
		/* a policy removal: counted by the spool as an eviction, not an ack */
		rc = spool_discard(d->s, d->acked, nexp, &gone);
		if (rc) {
			d->log(d->log_ctx, LOG_ERR, "dropping expired events: %s", spool_strerror(rc));
			*wait = 1;
			return DRAIN_ERROR;
		}
		d->c.expired += gone;
		d->log(d->log_ctx, LOG_WARNING, "dropped %llu events older than max_age_seconds %g",
		       (unsigned long long)gone, d->p.max_age);
		if (nsend == 0)
			return DRAIN_PROGRESS;
	}

	d->failed = false;
	d->stopped = false;
	d->max_retry_after = -1;
	memset(d->out, 0, nsend * sizeof(*d->out));
	send_range(d, 0, nsend, d->active);

	size_t na = 0, nr = 0, nkeep = 0;
	for (size_t i = 0; i < nsend; i++) {
		struct spool_tx_outcome *o = &d->out[i];
		switch (o->result) {
		case SPOOL_TX_ACCEPTED:
			d->acked[na++] = d->ev[i].seq;
			break;
		case SPOOL_TX_REJECTED:
			d->rej[nr++] = (struct spool_reject){d->ev[i].seq, o->status, o->reason};
			d->log(d->log_ctx, LOG_WARNING, "event %llu rejected for good (%d %s): dead-lettered",
			       (unsigned long long)d->ev[i].seq, o->status, o->reason);
			break;
		case SPOOL_TX_RETRY_AFTER:
			if (o->retry_after > d->max_retry_after)
				d->max_retry_after = o->retry_after;
			nkeep++;
			break;
		default:
			nkeep++;
		}
	}
	if (na || nr) {
		uint64_t settled = 0;
		rc = spool_settle(d->s, d->acked, na, d->rej, nr, &settled);
		if (rc) {
			/* not deleted: they are sent again (the server dedups) */
			d->log(d->log_ctx, LOG_ERR, "settling %zu events: %s", na + nr, spool_strerror(rc));
			*wait = 1;
			return DRAIN_ERROR;
		}
		d->c.acked += na;
		d->c.dead += nr;
	}
	if (na) {
		d->last_success = wall_now();
		d->success_dirty = true;
	}
	d->c.retried += nkeep;
	if (d->stopped)
		return na || nr ? DRAIN_PROGRESS : DRAIN_PACE;
	if (nkeep == 0 && !d->failed) {
		backoff_reset(&d->bo);
		return DRAIN_PROGRESS;
	}

	/* something stays: wait before the next try */
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
		d->log(d->log_ctx, LOG_WARNING, "%s; %zu events kept, next try in %.3f s%s", why, nkeep, delay,
		       ra >= 0 ? " (Retry-After)" : "");
	note_error(d, why);
	d->next_attempt = mono_now() + delay;
	*wait = delay;
	return na || nr ? DRAIN_PROGRESS : DRAIN_BACKOFF;
}
