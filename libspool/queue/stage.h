/* stage.h — the staging ring in front of LMDB, commit and buffered modes
 * (stage.c).  The ring keeps the highest sequence it committed and hands it
 * back from spool_stage_sync(); it never calls up into the handle.
 * Floor 7: calls write.c, txn.c, env.c, fork.c, record.c, util.c. */
#ifndef SPOOL_QUEUE_STAGE_H
#define SPOOL_QUEUE_STAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "admit.h"
#include "env.h"

struct spool_stage;

/* A ring for one handle on dir (a file in dir/rings in commit mode, memory
 * in buffered mode) and its flusher thread, which moves the ring into env
 * under the limits `lim` (copied). */
int spool_stage_create(struct spool_env *env, const char *dir, const struct spool_options *opt,
		       const struct spool_limits *lim, struct spool_stage **out, char *errbuf,
		       size_t errlen);
int spool_stage_append(struct spool_stage *st, const struct spool_input *in, size_t n);
/* Waits until everything staged so far is in LMDB.  *last_seq (if not NULL)
 * gets the highest sequence this ring committed, even on failure. */
int spool_stage_sync(struct spool_stage *st, double timeout_seconds, uint64_t *last_seq);
/* NULL-safe.  forked: in a child, which frees its copy and touches nothing
 * of the parent's ring, thread or locks. */
int spool_stage_destroy(struct spool_stage *st, bool forked);
/* Moves the rings of dead processes into the queue.  A ring whose header
 * cannot be read is salvaged once and renamed rings/ring-<id>.bad (see
 * stage.c). */
int spool_stage_recover(struct spool_env *env, uint64_t *moved);
/* What the salvage of ring <id> recorded: entries moved into the queue,
 * entries counted as torn, when; SPOOL_ENOTFOUND if it recorded nothing. */
int spool_stage_bad_outcome(struct spool_env *env, uint64_t ring_id, uint64_t *recovered,
			    uint64_t *torn, int64_t *when_us);
/* Deletes that record (once its .bad file is gone). */
int spool_stage_bad_forget(struct spool_env *env, uint64_t ring_id);
/* Entries and bytes staged and not yet in LMDB. */
void spool_stage_outstanding(struct spool_stage *st, uint64_t *entries, uint64_t *bytes);

#endif
