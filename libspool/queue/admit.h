/* admit.h — room in the spool: the full policy inside a write transaction
 * (admission, eviction) and the headroom kept for deletes (admit.c).
 * Floor 5: calls txn.c, env.c, util.c. */
#ifndef SPOOL_QUEUE_ADMIT_H
#define SPOOL_QUEUE_ADMIT_H

#include <lmdb.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "env.h"
#include "record.h"
#include "txn.h"

struct spool_limits {
	uint64_t max_events;
	uint64_t max_bytes;
	enum spool_full_policy policy;
	/* false: staged records already promised to a caller; store them even
	 * over the limit */
	bool enforce;
};

/* Applies the limits to a request of n records and `bytes` bytes about to
 * be stored: 0 to store it, 1 to have the caller wait for room (block
 * policy), SPOOL_EFULL or SPOOL_ETOOBIG for this request alone.  Evicting
 * deletes records and updates *c, *pending and hints[] (for the caller to
 * adopt after a successful commit); an LMDB failure while evicting goes to
 * *mdb_rc.  lim may be NULL: no limits. */
int spool_admit(struct spool_env *env, MDB_txn *txn, struct spool_counters *c, uint64_t *pending,
		const struct spool_limits *lim, size_t n, uint64_t bytes,
		uint64_t hints[SPOOL_NSEV], int *mdb_rc);
/* -ENOSPC when appending `bytes` would leave too little room on a nearly
 * full file system for deletes; 0 otherwise. */
int spool_admit_headroom(struct spool_env *env, MDB_txn *txn, uint64_t bytes);

#endif
