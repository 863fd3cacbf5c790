/* pl_log.h — the record format of the power-loss shim's write log.
 *
 * The log is a sequence of records, each a fixed header followed by `len`
 * payload bytes.  Every record takes the next global sequence number, so the
 * log order is the order in which the shim saw the calls (the shim holds one
 * mutex around each logged call and its record). */
#ifndef PL_LOG_H
#define PL_LOG_H

#include <stdint.h>

enum pl_rec_type {
	PL_FILE = 1,    /* file id `file` is the path in the payload (relative to SHIM_DIR) */
	PL_WRITE = 2,   /* `len` bytes at `off` of `file`; aux & PL_DSYNC: durable on return */
	PL_SYNC = 3,    /* fsync/fdatasync of `file` returned; it covers writes with seq < aux */
	PL_TRUNC = 4,   /* ftruncate of `file` to `off` */
	PL_MARK = 5,    /* a crash point asked for by the workload (shim_mark) */
	PL_RINGSET = 6, /* the next `aux` PL_RING records are the rings/ folder right now */
	PL_RING = 7,    /* a ring file in that set: payload is its name (aux bytes), `off` its size */
	PL_MSYNC = 8,   /* msync called (nothing tracked goes through a mapping; for the record) */
	PL_RINGPAGE = 9, /* page `off` of a ring: payload is its name (aux bytes), then the
	                  * page as it is now (it changed since that ring's last PL_RINGPAGE) */
};

/* Commit rings are written through a shared mapping, which no shim sees.
 * With SHIM_RINGS=1 the shim looks at the rings/ folder at every crash
 * point (before the sync or dsync write is issued, and again after it
 * returned, and at each workload mark) and logs the set of ring files and
 * every page that changed since it last looked: each version a page had
 * that the kernel may have written back.  The harness builds a ring in an
 * image from the versions logged before the crash point. */
#define PL_PAGE 4096u

#define PL_DSYNC 1u

struct pl_rec {
	uint32_t type;
	uint32_t file;
	uint64_t seq;
	uint64_t off;
	uint64_t len;
	uint64_t aux;
};

/* Crash points are the PL_SYNC records, the PL_WRITE records with PL_DSYNC,
 * and the PL_MARK records, numbered from 0 in log order.  shim_points()
 * (exported by the shim, found with dlsym) returns how many have been
 * logged so far: a promise made when it returned c holds for a power loss
 * at any crash point N >= c. */

#endif
