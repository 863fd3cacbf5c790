/* prom.h — the spool's figures and the agent's requests in the Prometheus
 * text exposition format (version 0.0.4), for the agent's metrics_listen
 * endpoint and for `spoolctl status --prometheus` (node_exporter's textfile
 * collector).  Names: master_log_spool_* for the spool (the same in both),
 * master_log_agent_* for the agent's requests (the endpoint only). */
#ifndef SPOOL_AGENT_PROM_H
#define SPOOL_AGENT_PROM_H

#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>

#include <spool/spool.h>

/* Upper bounds of the request-latency histogram, seconds (then +Inf). */
#define PROM_LATENCY_BUCKETS 12

/* The agent's requests, written by the drain loop, read by the metrics
 * thread: atomics, no lock. */
struct prom_requests {
	_Atomic uint64_t in_flight;
	_Atomic uint64_t bucket[PROM_LATENCY_BUCKETS + 1]; /* not cumulative; last: above all */
	_Atomic uint64_t count;
	_Atomic uint64_t sum_us;
};

void prom_request_started(struct prom_requests *r);
/* A request that finished (answered, failed or timed out) after `seconds`. */
void prom_request_finished(struct prom_requests *r, double seconds);
/* A start that the transport refused at once (no room): not a request. */
void prom_request_unstarted(struct prom_requests *r);

/* Writes the exposition: the spool's figures from st, then, when r is not
 * NULL, the agent's requests.  Returns 0 or -errno (a write error). */
int prom_write(FILE *f, const struct spool_stats *st, const struct prom_requests *r);

#endif
