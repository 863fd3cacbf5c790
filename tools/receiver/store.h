/* store.h - what the receiver keeps: the dedup set, the out file, the
 * counters and the fault dice.  All behind one mutex. */
#ifndef MLOG_RECEIVER_STORE_H
#define MLOG_RECEIVER_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "body.h"
#include "dedup.h"
#include "options.h"

#define STORE_ID_MAX 40 /* room for a server id, with its NUL */

/* One event of a request, as the HTTP layer hands it to store_commit(). */
struct store_event {
	struct dedup_key key;
	int status; /* in: 0 = valid, to store; else its rejection status */
	bool duplicate;	 /* out */
	uint64_t id;	 /* out: server id (sequence number) */
	size_t line_off; /* in: its JSON line inside the request's lines */
	size_t line_len;
	bool no_dedup; /* in: store it without looking for an earlier copy */
};

/* Counters served at GET /stats. */
struct store_counts {
	uint64_t http_requests; /* every HTTP request, /stats included */
	uint64_t requests;	/* POSTs to the two API endpoints */
	uint64_t singles;
	uint64_t batches;
	uint64_t accepted; /* events stored for the first time */
	uint64_t duplicates;
	uint64_t rejected;  /* events refused for good (4xx) */
	uint64_t transient; /* events refused with a retryable status */
	uint64_t bytes_in;  /* request body bytes as received */
	uint64_t bytes_inflated;
	uint64_t gzip_requests;
	uint64_t faults;  /* injected fault answers */
	uint64_t dropped; /* connections closed after storing */
	uint64_t idempotency_keys;
	uint64_t write_errors;
	uint64_t requests_open;	     /* API requests open now */
	uint64_t requests_open_most; /* the most API requests open at once */
	uint64_t request_bytes; /* API requests as received: head and body */
	uint64_t status[600];
};

struct store;

/* Opens cfg->out (if any) for appending.  Returns 0 or a negative errno. */
int store_create(const struct rx_config *cfg, struct store **out);

/* Flushes and closes the out file; NULL-safe.  Returns 0 or -EIO when the
 * last flush failed. */
int store_destroy(struct store *s);

/* Whether accepted events are written anywhere (if not, the HTTP layer
 * skips serialising them). */
bool store_has_out(const struct store *s);

/* Decides, under the lock, the fault for a new API request: returns the
 * status to answer with, or 0 for none.  Counts fail-first and the dice. */
int store_pick_fault(struct store *s);

/* Whether to drop a request that would get a 2xx (--drop-after-store and
 * --drop-rate).  Counts it. */
bool store_pick_drop(struct store *s);

/* Stores every event with status 0 that is not a duplicate: its line from
 * `lines` is written to the out file, which is flushed once at the end.
 * Duplicates get duplicate = true and the id of their first time.  Returns
 * 0, or -EIO when writing failed: then none of the new events counts as
 * stored, and their ids are forgotten so that a retry is stored. */
int store_commit(struct store *s, struct store_event *ev, size_t n,
		 const char *lines);

/* Formats the server id for sequence number `id`; returns its length. */
size_t store_format_id(const struct store *s, uint64_t id,
		       char buf[STORE_ID_MAX]);

/* Accounting for one answered (or dropped) HTTP request. */
struct store_tally {
	bool api;
	bool batch;
	bool gzip;
	bool fault;
	bool dropped;
	bool idempotency_key;
	int status; /* 0 when no answer was sent */
	uint64_t bytes_in;
	uint64_t bytes_inflated;
	uint64_t rejected;
	uint64_t transient;
	const char *user_agent;	     /* may be NULL */
	const char *idempotency_val; /* may be NULL */
};
void store_tally(struct store *s, const struct store_tally *t);

/* An API request is open from the moment its headers are in until its
 * answer is queued (or its connection ends first): store_request_open()
 * counts it, with the `head` bytes of its request line and headers, and
 * store_request_closed() ends it.  Each call to one is matched by exactly
 * one call to the other. */
void store_request_open(struct store *s, uint64_t head);
void store_request_closed(struct store *s);

/* Adds n body bytes of an API request to request_bytes as they arrive, so
 * that the figure follows the wire while a long body is still coming in.
 * Lock-free. */
void store_count_wire(struct store *s, uint64_t n);

/* The GET /stats body (malloc'd JSON text), or NULL on ENOMEM. */
char *store_stats_json(struct store *s);

#endif
