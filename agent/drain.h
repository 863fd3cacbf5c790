/* drain.h — the drain loop: read a batch from the spool, send it through a
 * transport chain, delete on acknowledgement, dead-letter permanent
 * rejections, keep everything else and back off.  No global state: the
 * agent runs one, and the library's embedded sender can run another.
 *
 *   struct drain *d;
 *   drain_create(spool, &params, chain, n, log, log_ctx, &d);
 *   for (;;) {
 *           double wait;
 *           switch (drain_step(d, &wait)) { ... }   // see enum drain_result
 *   }
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
	size_t batch_size;
	size_t max_batch_bytes;
	double min_request_interval;
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
	DRAIN_IDLE = 0,	    /* the spool is empty */
	DRAIN_PROGRESS = 1, /* events were settled: call again */
	DRAIN_PACE = 2,	    /* min_request_interval: call again after *wait */
	DRAIN_BACKOFF = 3,  /* a send failed: events remain; call again after *wait */
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
	uint64_t failures; /* calls that failed as a whole */
	uint64_t recovered; /* ring records moved by spool_recover() */
};

struct drain;

/* The chain (1 to 8 links) and params are copied; link states stay the
 * caller's.  0 or -ENOMEM / -EINVAL. */
int drain_create(struct spool *s, const struct drain_params *p, const struct drain_link *chain, size_t n,
		 drain_log_fn log, void *log_ctx, struct drain **out);
/* Publishes the figures one last time and frees; NULL-safe. */
void drain_destroy(struct drain *d);
/* New parameters and chain (SIGHUP): resets the backoff and the fallback. */
int drain_reconfigure(struct drain *d, const struct drain_params *p, const struct drain_link *chain,
		      size_t n);
/* Called between requests of one step; a true answer stops the step early
 * (the events not sent stay in the spool). */
void drain_set_cancel(struct drain *d, bool (*cancelled)(void *ctx), void *ctx);

/* One round: at most one batch read and sent (split, isolated or fallen back
 * as the answers say).  *wait gets the seconds to wait before the next call
 * for DRAIN_PACE, DRAIN_BACKOFF and DRAIN_ERROR. */
enum drain_result drain_step(struct drain *d, double *wait);

/* What drain_step() does first, for a caller waiting a long time between
 * steps: publishes the figures every meta_interval (when they changed) and
 * recovers dead producers' rings every recover_interval. */
void drain_housekeep(struct drain *d);

/* Writes the figures into the spool's meta store now. */
int drain_publish(struct drain *d);
const struct drain_counters *drain_counters(const struct drain *d);

#endif
