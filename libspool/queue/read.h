/* read.h — batches, dead letters, statistics and meta values (read.c).
 * Reads only: a record that fails its check is handed back to the caller,
 * which dead-letters it (write.c) and reads again.
 * Floor 4: calls txn.c, env.c, record.c, util.c. */
#ifndef SPOOL_QUEUE_READ_H
#define SPOOL_QUEUE_READ_H

#include <stddef.h>
#include <stdint.h>

#include "env.h"

#define SPOOL_BAD_PER_READ 256

/* Records found unsound by a read, for the caller to dead-letter. */
struct spool_bad_records {
	size_t n;
	uint64_t seq[SPOOL_BAD_PER_READ];
	const char *why[SPOOL_BAD_PER_READ]; /* static strings (spool_rec_check) */
};

/* Pending records after after_seq; of one severity only when severity >=
 * 0, and then *scanned_to gets the highest seq the scan looked at (the
 * next read of that severity may start after it).  When bad->n is 0, *out
 * is the batch;
 * otherwise *out is NULL and bad lists unsound records met on the way (at
 * most SPOOL_BAD_PER_READ): the caller moves them to dead and reads again,
 * so that they never block the head. */
int spool_batch_read_events(struct spool_env *env, uint64_t after_seq, int severity, size_t max_events,
			    size_t max_bytes, struct spool_batch **out, uint64_t *scanned_to,
			    struct spool_bad_records *bad);
int spool_batch_read_dead(struct spool_env *env, uint64_t after_seq, size_t max_events,
			  struct spool_batch **out);
int spool_read_stats(struct spool_env *env, struct spool_stats *out);
int spool_read_meta(struct spool_env *env, const char *key, void *buf, size_t *len);

#endif
