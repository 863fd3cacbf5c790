/* drain.h — the drain loop: read batches from the spool, encode each event
 * once, hand them to a transport chain with up to max_in_flight requests
 * open, delete on acknowledgement, dead-letter permanent rejections (and
 * corrupt records, before any transport sees them), keep everything else
 * and back off.  The one place that decides each event's fate.  No global
 * state.
 *
 *   struct drain *d;
 *   drain_create(spool, &params, chain, n, log, log_ctx, &d);
 *   for (;;) {
 *           double wait;
 *           switch (drain_step(d, &wait)) { ... }   // see enum drain_result
 *   }
 *   drain_finish(d, 30);   // settles what is in flight
 *   drain_destroy(d);
 */
#ifndef AGENT_DRAIN_H
#define AGENT_DRAIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <spool/spool.h>
#include <spool/transport.h>

struct drain_params {
	size_t batch_size;	  /* events per request for live traffic */
	size_t max_batch_size;	  /* ... and while a backlog waits (0: batch_size) */
	size_t max_batch_bytes;
	size_t max_in_flight; /* requests open at once (0 or 1: one at a time) */
	double min_request_interval;
	double bandwidth_limit;	  /* bytes per second on the wire, averaged; 0: none */
	bool severity_order;	  /* replay_order: severity */
	double retry_initial, retry_max, retry_multiplier;
	bool retry_jitter;
	double auth_retry;	  /* wait after 401/403 or a missing endpoint */
	double max_age;		  /* 0: off */
	bool delivery_metadata;
	double meta_interval;	  /* publish figures this often */
	double recover_interval;  /* spool_recover() this often */
};

/* One link of the transport chain: an instance made by the caller. */
struct drain_link {
	const struct spool_transport *tx;
	void *state;
};

typedef void (*drain_log_fn)(void *ctx, int level, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

enum drain_result {
	DRAIN_IDLE = 0,	    /* the spool is empty and nothing is in flight */
	DRAIN_PROGRESS = 1, /* events were sent or settled: call again */
	DRAIN_PACE = 2,	    /* min_request_interval: call again after *wait */
	DRAIN_BACKOFF = 3,  /* a send failed: events remain; call again after *wait */
	DRAIN_BUSY = 4,	    /* requests are in flight: call again (the step waited a little) */
	DRAIN_ERROR = -1,   /* the spool failed (logged); call again after *wait */
};

/* Counters since drain_create(), also published in meta "agent.counters". */
struct drain_counters {
	uint64_t requests;
	uint64_t sent;	   /* events handed to a transport */
	uint64_t acked;	   /* deleted on acknowledgement */
	uint64_t dead;	   /* dead-lettered */
	uint64_t retried;  /* outcomes that kept an event */
	uint64_t expired;  /* dropped by max_age */
	uint64_t failures; /* requests that failed as a whole */
	uint64_t recovered; /* ring records moved by spool_recover() */
	uint64_t max_in_flight; /* most requests seen open at once */
};

struct drain;

/* The chain (1 to 8 links) and params are copied; link states stay the
 * caller's.  0 or -ENOMEM / -EINVAL. */
int drain_create(struct spool *s, const struct drain_params *p, const struct drain_link *chain, size_t n,
		 drain_log_fn log, void *log_ctx, struct drain **out);
/* Settles nothing more: call drain_finish() first.  Publishes the figures
 * one last time and frees; NULL-safe. */
void drain_destroy(struct drain *d);
/* New parameters and chain (SIGHUP): waits for the requests in flight on
 * the old chain (drain_finish()), then resets the backoff and the fallback. */
int drain_reconfigure(struct drain *d, const struct drain_params *p, const struct drain_link *chain,
		      size_t n);
/* Checked before each request starts; a true answer starts no more (the
 * events not sent stay in the spool; those in flight finish). */
void drain_set_cancel(struct drain *d, bool (*cancelled)(void *ctx), void *ctx);

/* Counts the requests (in flight, latency) into *r, read by another thread
 * (the metrics endpoint); r must outlive the drain.  NULL stops counting. */
struct prom_requests;
void drain_set_requests(struct drain *d, struct prom_requests *r);

/* Paused (send windows closed): starts no request, reads nothing; the
 * requests in flight finish and are settled by drain_step() as usual,
 * which returns DRAIN_IDLE once none is open.  Resuming starts from the
 * head of the spool. */
void drain_pause(struct drain *d, bool paused);
bool drain_paused(const struct drain *d);

/* One round: collects the answers that arrived and settles what they
 * decide, then starts requests while the window has room (reading the
 * spool, splitting, isolating or falling back as answers say).  *wait gets
 * the seconds to wait before the next call for DRAIN_PACE, DRAIN_BACKOFF
 * and DRAIN_ERROR. */
enum drain_result drain_step(struct drain *d, double *wait);

/* Starts nothing new and waits up to timeout seconds for the requests in
 * flight, settling their events.  Returns how many are still open (their
 * events stay in the spool). */
size_t drain_finish(struct drain *d, double timeout);

/* Requests open now. */
size_t drain_in_flight(const struct drain *d);

/* What drain_step() does first, for a caller waiting a long time between
 * steps: publishes the figures every meta_interval (when they changed) and
 * recovers dead producers' rings every recover_interval. */
void drain_housekeep(struct drain *d);

/* Writes the figures into the spool's meta store now. */
int drain_publish(struct drain *d);
const struct drain_counters *drain_counters(const struct drain *d);

#endif
