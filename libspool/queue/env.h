/* env.h — the LMDB environment of a spool, one per process and spool
 * directory (env.c): open/create, share among handles, grow, begin/end.
 * Floor 2: calls fork.c, record.c, util.c. */
#ifndef SPOOL_QUEUE_ENV_H
#define SPOOL_QUEUE_ENV_H

#include <lmdb.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/statvfs.h>
#include <sys/types.h>

#include "fork.h"
#include "record.h"

#define SPOOL_MAP_CAP_UNLIMITED ((size_t)1 << 40) /* 1 TiB of address space */

struct spool_wreq;

/* env.c owns the environment and its locks; the sections below it are
 * state that the floors above keep per environment (named with each). */
struct spool_env {
	struct spool_fork_node fork_node; /* first: a child keeps the whole env reachable */
	struct spool_env *next;           /* env.c's registry, under spool_fork_lock() */
	int refs;
	pid_t pid;
	dev_t dev;
	ino_t ino;
	char *dir;
	MDB_env *mdb;
	int users_fd; /* shared lock on users.lock while this process uses the spool */
	/* writer.lock: its byte 0 held (an open-file-description lock,
	 * F_OFD_SETLKW) around every write transaction, its byte 1 around
	 * LMDB's calls that take the reader-table mutex, so that neither of
	 * LMDB's robust mutexes is ever waited for across processes;
	 * writer_mu and reader_mu order this process's threads, which share
	 * the one description.  See spool_env_begin(). */
	int writer_fd;
	pthread_mutex_t writer_mu;
	pthread_mutex_t reader_mu;
	MDB_dbi dbi_events, dbi_dead, dbi_meta;
	unsigned max_readers;
	size_t map_size;
	size_t map_cap;
	/* Held shared around every transaction, exclusively to resize the map
	 * or reopen after a fatal error (LMDB forbids both with a transaction
	 * open in the process). */
	pthread_rwlock_t map_lock;
	atomic_bool need_reopen;
	_Atomic uint64_t reserved_to; /* data.mdb blocks reserved up to here (fallocate) */

	/* txn.c: figures of the last commit anyone in this process made, for
	 * cheap full-spool checks in the staged modes */
	_Atomic uint64_t cached_pending;
	_Atomic uint64_t cached_pending_bytes;
	/* txn.c: counts to fold into the next write transaction */
	_Atomic uint64_t add_dropped;
	_Atomic uint64_t add_torn;
	/* A commit that stores those counts and takes them off add_* happens
	 * under count_mu, and bumps commit_gen there, so that spool_stats()
	 * never sees a count both or neither committed and waiting. */
	pthread_mutex_t count_mu;
	uint64_t commit_gen;

	/* write.c: group commit */
	pthread_mutex_t gc_mu;
	pthread_cond_t gc_join; /* to a gathering leader: a request was queued */
	struct spool_wreq *gc_head, *gc_tail;
	bool gc_busy;
	bool gc_gathering;
	unsigned gc_queued; /* requests in the queue */
	unsigned gc_peak;   /* largest recent group, decaying */
	unsigned gc_last;   /* size of the last group */
	int64_t gc_last_ns; /* duration of the last commit */
	/* write.c and admit.c: no record of severity s lies below evict_hint[s] */
	uint64_t evict_hint[SPOOL_NSEV];
	/* read.c: the range of the map last populated around the backlog
	 * reader (a hint only; races are harmless) */
	_Atomic uintptr_t ahead_lo, ahead_hi;
};

int spool_env_acquire(const char *dir, const struct spool_options *opt, struct spool_env **out,
		      char *errbuf, size_t errlen);
/* Drops a reference; the last one closes the environment.  An environment
 * inherited across fork is abandoned, never closed. */
void spool_env_release(struct spool_env *env);
/* Drops the caller's reference and returns true, unless it is the last
 * one: then it returns false and changes nothing, and the caller stores
 * what must outlive the environment before spool_env_release().  True, and
 * nothing done, for an environment inherited across fork. */
bool spool_env_release_shared(struct spool_env *env);
/* Begin a transaction with the map lock held shared; handles
 * MDB_MAP_RESIZED and pending reopen.  spool_env_end() drops the lock.
 * A write transaction (rdonly false) also takes writer.lock first, and
 * must end with spool_env_end_write(), which drops both. */
int spool_env_begin(struct spool_env *env, bool rdonly, MDB_txn **txn);
void spool_env_end(struct spool_env *env);
void spool_env_end_write(struct spool_env *env);
/* Clears the reader slots of dead processes (mdb_reader_check), guarded
 * like a read transaction's begin. */
void spool_env_reader_check(struct spool_env *env);
/* After MDB_MAP_FULL (no transaction open in this thread): grow the map. */
int spool_env_grow(struct spool_env *env);
/* After a failed commit: mark for reopen when LMDB may be unusable. */
void spool_env_failed(struct spool_env *env, int mdb_rc);
/* The caller's code for a failed write transaction (EIO on a full disk
 * becomes -ENOSPC). */
int spool_env_commit_error(struct spool_env *env, int mdb_rc);
/* Room kept for deletes on a nearly full file system (see env.c). */
uint64_t spool_env_delete_room(const struct statvfs *fs);
/* After a commit: reserve that room past the end of data.mdb. */
void spool_env_reserve_tail(struct spool_env *env);

#endif
