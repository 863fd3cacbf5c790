/* txn.h — write transactions and the counters they keep (txn.c).
 * Floor 3: calls env.c, record.c, util.c. */
#ifndef SPOOL_QUEUE_TXN_H
#define SPOOL_QUEUE_TXN_H

#include <lmdb.h>
#include <stdint.h>

#include "env.h"
#include "record.h"

/* ---- counters kept in meta under "spool.counters" ---- */
struct spool_counters {
	uint64_t next_seq;
	uint64_t pending_bytes;
	uint64_t sev[SPOOL_NSEV]; /* pending records per severity */
	uint64_t appended;
	uint64_t acked;
	uint64_t dead;
	uint64_t evicted;
	uint64_t dropped;
	uint64_t corrupt;
	uint64_t torn;
	/* The spool's waiting-counts file (see txn.c): its id and its dropped
	 * and torn totals already included above, as stored (`*_was`) and as a
	 * store would write them after this load took in what it holds. */
	uint64_t counts_id, counts_dropped, counts_torn;
	uint64_t counts_id_was, counts_dropped_was, counts_torn_was;
	uint64_t counts_took_dropped, counts_took_torn;
};

/* Loads the counters, with dropped and torn including what the
 * waiting-counts file holds beyond them (so a read sees every count). */
int spool_counters_load(struct spool_env *env, MDB_txn *txn, struct spool_counters *c);
/* Stores them; what the load took from the waiting-counts file is kept
 * only once that file is synced (otherwise it stays waiting there). */
int spool_counters_store(struct spool_env *env, MDB_txn *txn, const struct spool_counters *c);
/* Takes the stored record v off the pending figures. */
void spool_counters_remove(struct spool_counters *c, const MDB_val *v);

/* ---- counts waiting for the next write transaction ----
 *
 * A record refused, or a torn ring entry found, outside a transaction that
 * commits (a full disk fails the commit; a full ring refuses before any)
 * is counted at once in the spool's `counts` file: totals that only grow,
 * added under a lock on the file, readable by every process.  The counters
 * in LMDB keep, with dropped and torn, how much of those totals they
 * include; every load adds the rest, and every write transaction that
 * commits stores it (the next one made by any process), syncing the file
 * first, so that the totals on disk never fall below what LMDB took.  An
 * add itself is not synced: a power loss can lose counts not yet taken
 * (never an event).  Without that file (a spool created on a full disk or
 * in a read-only directory) counts wait in the process instead, as the
 * last resort, and the last release tries to store them. */
/* Creates the spool's counts file when it is missing (spool_open() calls
 * it, while the disk has room); best effort. */
void spool_txn_counts_create(struct spool_env *env);
void spool_txn_add_dropped(struct spool_env *env, uint64_t n);
void spool_txn_add_torn(struct spool_env *env, uint64_t n);
/* The counts waiting in this process now (read inside a write transaction). */
void spool_txn_waiting(struct spool_env *env, uint64_t *dropped, uint64_t *torn);

/* Records pending in `events`, as LMDB counts them. */
uint64_t spool_txn_pending(struct spool_env *env, MDB_txn *txn);
/* Commits a write transaction that stored the waiting counts `dropped` and
 * `torn`, taking them off the waiting ones in the same critical section (a
 * failed commit leaves them waiting), then reserves room past the end of
 * data.mdb.  Returns mdb_txn_commit()'s code. */
int spool_txn_commit(struct spool_env *env, MDB_txn *txn, uint64_t dropped, uint64_t torn);
/* Keeps the figures of a commit for the staged modes' full-spool checks. */
void spool_txn_publish(struct spool_env *env, const struct spool_counters *c, uint64_t pending);

/* Runs fn in one write transaction with the counters loaded before and
 * stored after it (counts waiting in the env folded in), retrying once the
 * map has grown; returns fn's error or the commit's, as a spool code. */
typedef int (*spool_txn_body)(struct spool_env *env, MDB_txn *txn, struct spool_counters *c,
			      void *arg);
int spool_txn_write(struct spool_env *env, spool_txn_body fn, void *arg);

/* spool_env_release() for a user of the spool: the last one stores the
 * counts still waiting first, which would die with the environment. */
void spool_txn_release_env(struct spool_env *env);

#endif
