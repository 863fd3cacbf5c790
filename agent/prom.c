/* prom.c — the Prometheus text exposition (prom.h). */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>

#include "prom.h"

static const double latency_bounds[PROM_LATENCY_BUCKETS] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
							    0.5,   1,    2.5,   5,    10,  30};

void prom_request_started(struct prom_requests *r)
{
	if (r)
		atomic_fetch_add(&r->in_flight, 1);
}

void prom_request_unstarted(struct prom_requests *r)
{
	if (r)
		atomic_fetch_sub(&r->in_flight, 1);
}

void prom_request_finished(struct prom_requests *r, double seconds)
{
	if (!r)
		return;
	if (seconds < 0)
		seconds = 0;
	size_t i = 0;
	while (i < PROM_LATENCY_BUCKETS && seconds > latency_bounds[i])
		i++;
	atomic_fetch_add(&r->bucket[i], 1);
	atomic_fetch_add(&r->sum_us, (uint64_t)(seconds * 1e6 + 0.5));
	atomic_fetch_add(&r->count, 1);
	atomic_fetch_sub(&r->in_flight, 1);
}

static void family(FILE *f, const char *name, const char *type, const char *help)
{
	fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void one(FILE *f, const char *name, const char *type, const char *help, uint64_t v)
{
	family(f, name, type, help);
	fprintf(f, "%s %llu\n", name, (unsigned long long)v);
}

int prom_write(FILE *f, const struct spool_stats *st, const struct prom_requests *r)
{
	static const struct {
		const char *name, *help;
		size_t off;
	} counters[] = {
#define C(n, field, h) {"master_log_spool_events_" n "_total", h, offsetof(struct spool_stats, field)}
	    C("appended", appended_total, "Events committed to the spool."),
	    C("acked", acked_total, "Events the server acknowledged, deleted from the spool."),
	    C("dead_lettered", dead_total,
	      "Events moved to the dead letters (rejected for good, or undecodable)."),
	    C("evicted", evicted_total, "Events removed by policy (max_age, purge, the evict policy)."),
	    C("dropped", dropped_total, "Events refused by an append (spool or disk full, a failed commit)."),
	    C("corrupt", corrupt_total, "Undecodable records found and dead-lettered."),
	    C("torn", torn_total, "Torn ring records of killed producers, skipped (never acknowledged)."),
#undef C
	};
	for (size_t i = 0; i < sizeof(counters) / sizeof(counters[0]); i++)
		one(f, counters[i].name, "counter", counters[i].help,
		    *(const uint64_t *)(const void *)((const char *)st + counters[i].off));
	one(f, "master_log_spool_events_pending", "gauge", "Events waiting in the spool.", st->pending);
	one(f, "master_log_spool_pending_bytes", "gauge",
	    "Stored bytes of the events waiting (headers included).", st->pending_bytes);
	one(f, "master_log_spool_dead_letters", "gauge", "Events in the dead letters.", st->dead);
	family(f, "master_log_spool_oldest_event_age_seconds", "gauge",
	       "Age of the oldest waiting event; 0 when none waits.");
	fprintf(f, "master_log_spool_oldest_event_age_seconds %.3f\n", st->oldest_age_seconds);
	one(f, "master_log_spool_file_bytes", "gauge", "Size of the spool's data file.", st->file_bytes);
	if (r) {
		one(f, "master_log_agent_requests_in_flight", "gauge",
		    "Requests to the server open now.", atomic_load(&r->in_flight));
		family(f, "master_log_agent_request_duration_seconds", "histogram",
		       "Time from a request's start to its answer (or failure).");
		uint64_t cum = 0;
		for (size_t i = 0; i <= PROM_LATENCY_BUCKETS; i++) {
			cum += atomic_load(&r->bucket[i]);
			if (i < PROM_LATENCY_BUCKETS)
				fprintf(f, "master_log_agent_request_duration_seconds_bucket{le=\"%g\"} %llu\n",
					latency_bounds[i], (unsigned long long)cum);
			else
				fprintf(f, "master_log_agent_request_duration_seconds_bucket{le=\"+Inf\"} %llu\n",
					(unsigned long long)cum);
		}
		fprintf(f, "master_log_agent_request_duration_seconds_sum %.6f\n",
			(double)atomic_load(&r->sum_us) / 1e6);
		/* the count agrees with the +Inf bucket even when a request ends
		 * between the two loads */
		fprintf(f, "master_log_agent_request_duration_seconds_count %llu\n", (unsigned long long)cum);
	}
	return fflush(f) == 0 && !ferror(f) ? 0 : -EIO;
}
