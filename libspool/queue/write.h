/* write.h — every change to the queue's records: appends (through a group
 * committer shared by the threads of a process), settles (ack and dead
 * letters), discards, corrupt records, meta values and ring marks (write.c).
 * Floor 6: calls admit.c, txn.c, env.c, record.c, util.c. */
#ifndef SPOOL_QUEUE_WRITE_H
#define SPOOL_QUEUE_WRITE_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "admit.h"
#include "env.h"
#include "record.h"

/* One append request to the group committer. */
struct spool_wreq {
	struct spool_wreq *next;
	const struct spool_input *in; /* records, data = payload */
	/* prebuilt headers, or NULL: each data is a whole stored value */
	const unsigned char (*hdrs)[SPOOL_REC_HDR];
	size_t n;
	const struct spool_limits *lim;
	/* the caller hands a refusal on to its own caller (not a flusher, whose
	 * records stay staged): a failure counts the records as dropped */
	bool count_refused;
	/* exactly-once marker for staged rings: meta "spool.ring.<id>" = mark_no */
	uint64_t ring_id;
	uint64_t mark_no;
	/* results */
	int rc;
	uint64_t first_seq;
	bool done;
	pthread_cond_t cv; /* the waiting thread's own */
};

/* Appends through the group committer; rc in req->rc as well. */
int spool_write_append(struct spool_env *env, struct spool_wreq *req);
int spool_write_settle(struct spool_env *env, const uint64_t *acked, size_t nacked,
		       const struct spool_reject *rejected, size_t nrejected, uint64_t *settled);
int spool_write_discard(struct spool_env *env, const uint64_t *seqs, size_t n, uint64_t *deleted);
/* Moves corrupt records (found by a reader) to dead, counting them. */
int spool_write_corrupt(struct spool_env *env, const uint64_t *seqs, const char *const *reasons,
			size_t n);
int spool_write_meta(struct spool_env *env, const char *key, const void *val, size_t len);
int spool_write_del_meta(struct spool_env *env, const char *key);

/* Ring marks: meta "spool.ring.<id>" holds the number of the last entry of
 * ring <id> moved into LMDB (written by spool_write_append() with the
 * entries).  The mark is read in a write transaction (see write.c). */
int spool_write_get_mark(struct spool_env *env, uint64_t ring_id, uint64_t *mark);
int spool_write_del_mark(struct spool_env *env, uint64_t ring_id);
/* Deletes ring marks whose ring file no longer exists. */
int spool_write_gc_marks(struct spool_env *env);

#endif
