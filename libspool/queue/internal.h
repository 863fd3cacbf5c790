/* internal.h — every private header of the queue, for the tests that check
 * its insides.  The library's own files include only the headers of their
 * floor and the floors below, never this one.
 *
 * The floors, bottom to top.  Each file calls only files on lower floors;
 * a call that would point up is handed in as an argument (fork.c's
 * in_child callbacks) or returned as a value (the ring's last sequence,
 * the reader's unsound records).
 *
 *   9  admin.c   operator calls: dead retry/purge, verify, compact
 *   8  spool.c   the public API: handles, modes, agent lock      (handle.h)
 *   7  stage.c   per-process rings, their flusher, recovery
 *   6  write.c   append (group commit), settle, discard, corrupt, meta, marks
 *   5  admit.c   room: limits, eviction, headroom
 *   4  read.c    batches, dead letters, stats, meta: reads only
 *   3  txn.c     write-transaction helper, counters, waiting counts
 *   2  env.c     LMDB environment: open/create, share, grow, begin/end
 *   1  record.c  the stored record and dead-letter formats
 *   0  util.c    time, byte order, errors, names
 *      fork.c    pid cache, fork guard, registry of what a child lets go
 *      wake.c    the agent's wake-up FIFO (public, stands alone)
 */
#ifndef SPOOL_INTERNAL_H
#define SPOOL_INTERNAL_H

#include "util.h"
#include "fork.h"
#include "record.h"
#include "env.h"
#include "txn.h"
#include "read.h"
#include "admit.h"
#include "write.h"
#include "stage.h"
#include "handle.h"

#endif
