/* internal.h — libspool's private structures.  Nothing here is exported. */
#ifndef SPOOL_INTERNAL_H
#define SPOOL_INTERNAL_H

#include <lmdb.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <sys/types.h>

#include "spool/spool.h"

#define SPOOL_FORMAT_VERSION 1
#define SPOOL_REC_HDR 16	    /* bytes of the fixed record header */
#define SPOOL_NSEV 5		    /* severities debug..fatal */
#define SPOOL_REASON_MAX 1024	    /* dead-letter reason bytes kept */
#define SPOOL_META_KEY_MAX 255
#define SPOOL_META_VAL_MAX (64 * 1024)
#define SPOOL_MAP_CAP_UNLIMITED ((size_t)1 << 40) /* 1 TiB of address space */

/* ---- util.c ---- */
int64_t spool_now_us(void);	   /* CLOCK_REALTIME */
int64_t spool_mono_ns(void);	   /* CLOCK_MONOTONIC */
void spool_deadline(struct timespec *ts, double seconds); /* CLOCK_MONOTONIC absolute */
void spool_put_be64(unsigned char *p, uint64_t v);
uint64_t spool_get_be64(const unsigned char *p);
void spool_put_le64(unsigned char *p, uint64_t v);
uint64_t spool_get_le64(const unsigned char *p);
void spool_put_le32(unsigned char *p, uint32_t v);
uint32_t spool_get_le32(const unsigned char *p);
int spool_mkdirs(const char *path, mode_t mode);
void spool_errf(char *buf, size_t len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
int spool_map_mdb_error(int rc); /* LMDB code -> spool code */
uint64_t spool_random64(void);

/* ---- record.c: the stored record format ----
 * byte 0      format version (1)
 * byte 1      severity
 * bytes 2-3   flags (0)
 * bytes 4-7   CRC-32 (zlib) of bytes 0-3 with the CRC field zero, 8-15, and the payload
 * bytes 8-15  enqueue time, microseconds since the epoch, little-endian
 * then        the msgpack event */
void spool_rec_header(unsigned char hdr[SPOOL_REC_HDR], int severity, int64_t enqueue_us,
		      const void *data, size_t len);
/* 0 if the stored value is a sound record; otherwise -1 with a reason. */
int spool_rec_check(const void *val, size_t len, const char **reason);
/* Validates that data holds exactly one msgpack map; 0 or -1 with reason. */
int spool_msgpack_check_map(const void *data, size_t len, const char **reason);

/* Dead-letter value: status (i32 LE), dead time (i64 LE), reason length
 * (u16 LE), 2 zero bytes, reason bytes, NUL, then the stored record. */
size_t spool_dead_encode_size(size_t reason_len, size_t rec_len);
void spool_dead_encode(unsigned char *out, int status, int64_t dead_us, const char *reason,
		       size_t reason_len, const void *rec, size_t rec_len);
int spool_dead_decode(const void *val, size_t len, struct spool_record *out);

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
};

/* ---- env.c: one LMDB environment per process and spool directory ---- */
struct spool_env {
	struct spool_env *next; /* registry */
	int refs;
	pid_t pid;
	dev_t dev;
	ino_t ino;
	char *dir;
	MDB_env *mdb;
	int users_fd; /* shared lock on users.lock while this process uses the spool */
	MDB_dbi dbi_events, dbi_dead, dbi_meta;
	unsigned max_readers;
	size_t map_size;
	size_t map_cap;
	/* Held shared around every transaction, exclusively to resize the map
	 * or reopen after a fatal error (LMDB forbids both with a transaction
	 * open in the process). */
	pthread_rwlock_t map_lock;
	atomic_bool need_reopen;

	/* group commit */
	pthread_mutex_t gc_mu;
	pthread_cond_t gc_join; /* to a gathering leader: a request was queued */
	struct spool_wreq *gc_head, *gc_tail;
	bool gc_busy;
	bool gc_gathering;
	unsigned gc_queued;  /* requests in the queue */
	unsigned gc_peak;    /* largest recent group, decaying */
	unsigned gc_last;    /* size of the last group */
	int64_t gc_last_ns;  /* duration of the last commit */

	/* figures of the last commit anyone in this process made, for cheap
	 * full-spool checks in the staged modes */
	_Atomic uint64_t cached_pending;
	_Atomic uint64_t cached_pending_bytes;
	/* counts to fold into the next write transaction */
	_Atomic uint64_t add_dropped;
	_Atomic uint64_t add_torn;
	/* A commit that stores those counts and takes them off add_* happens
	 * under count_mu, and bumps commit_gen there, so that spool_stats()
	 * never sees a count both or neither committed and waiting. */
	pthread_mutex_t count_mu;
	uint64_t commit_gen;
	_Atomic uint64_t reserved_to; /* data.mdb blocks reserved up to here (fallocate) */
	/* eviction: no record of severity s lies below evict_hint[s] */
	uint64_t evict_hint[SPOOL_NSEV];
};

int spool_env_acquire(const char *dir, const struct spool_options *opt, struct spool_env **out,
		      char *errbuf, size_t errlen);
void spool_env_release(struct spool_env *env);
/* Begin a transaction with the map lock held shared; handles
 * MDB_MAP_RESIZED and pending reopen.  spool_env_end() drops the lock. */
int spool_env_begin(struct spool_env *env, bool rdonly, MDB_txn **txn);
void spool_env_end(struct spool_env *env);
/* After MDB_MAP_FULL (no transaction open in this thread): grow the map. */
int spool_env_grow(struct spool_env *env);
/* After a failed commit: mark for reopen when LMDB may be unusable. */
void spool_env_failed(struct spool_env *env, int mdb_rc);
/* The caller's code for a failed write transaction (EIO on a full disk
 * becomes -ENOSPC). */
int spool_env_commit_error(struct spool_env *env, int mdb_rc);
int spool_counters_load(struct spool_env *env, MDB_txn *txn, struct spool_counters *c);
int spool_counters_store(struct spool_env *env, MDB_txn *txn, const struct spool_counters *c);
void spool_env_publish(struct spool_env *env, const struct spool_counters *c, uint64_t pending);

struct spool;

/* ---- write.c ---- */
struct spool_limits {
	uint64_t max_events;
	uint64_t max_bytes;
	enum spool_full_policy policy;
	bool enforce; /* false: staged records already promised to a caller; store them even over the limit */
};

/* One append request to the group committer. */
struct spool_wreq {
	struct spool_wreq *next;
	const struct spool_input *in; /* records, data = payload */
	const unsigned char (*hdrs)[SPOOL_REC_HDR]; /* prebuilt headers, or NULL to build */
	size_t n;
	const struct spool_limits *lim;
	/* exactly-once marker for staged rings: meta "spool.ring.<id>" = mark_no */
	uint64_t ring_id;
	uint64_t mark_no;
	/* results */
	int rc;
	uint64_t first_seq;
	bool done;
	pthread_cond_t cv; /* the waiting thread's own */
};

/* Runs fn in one write transaction with the counters loaded before and
 * stored after it (counts waiting in the env folded in), retrying once the
 * map has grown; returns fn's error or the commit's, as a spool code. */
typedef int (*spool_txn_body)(struct spool_env *env, MDB_txn *txn, struct spool_counters *c,
			      void *arg);
int spool_write_txn(struct spool_env *env, spool_txn_body fn, void *arg);
/* The counts waiting in env->add_* (read inside a write transaction). */
void spool_pending_counts(struct spool_env *env, uint64_t *dropped, uint64_t *torn);

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
/* Deletes ring marks whose ring file no longer exists. */
int spool_write_gc_marks(struct spool_env *env);
int spool_write_del_mark(struct spool_env *env, uint64_t ring_id);
int spool_read_mark(struct spool_env *env, uint64_t ring_id, uint64_t *mark);

/* ---- read.c ---- */
int spool_batch_read_events(struct spool *s, uint64_t after_seq, size_t max_events,
			    size_t max_bytes, struct spool_batch **out);
int spool_batch_read_dead(struct spool *s, uint64_t after_seq, size_t max_events,
			  struct spool_batch **out);
int spool_read_stats(struct spool_env *env, struct spool_stats *out);
int spool_read_meta(struct spool_env *env, const char *key, void *buf, size_t *len);

/* ---- stage.c: the staging ring (commit and buffered modes) ---- */
struct spool_stage;
int spool_stage_create(struct spool *s, char *errbuf, size_t errlen);
int spool_stage_append(struct spool *s, const struct spool_input *in, size_t n);
int spool_stage_sync(struct spool *s, double timeout_seconds);
int spool_stage_destroy(struct spool *s, bool forked);
int spool_stage_recover(struct spool_env *env, uint64_t *moved);
/* Entries and bytes staged by this handle and not yet in LMDB. */
void spool_stage_outstanding(struct spool *s, uint64_t *entries, uint64_t *bytes);
void spool_stage_forget_fd(struct spool *s); /* fork child: close fds only */

/* ---- the handle ---- */
struct spool {
	struct spool *next_handle; /* fork registry */
	struct spool_env *env;
	pid_t pid;
	char *dir;
	struct spool_options opt;
	struct spool_limits lim_enforce; /* sync mode */
	struct spool_limits lim_staged;	 /* commit/buffered flusher */
	struct spool_stage *stage;	 /* NULL in sync mode */
	_Atomic uint64_t last_seq;	 /* highest seq this handle committed */
	int agent_fd;			 /* agent lock, -1 when not held */
};

bool spool_forked(const struct spool *s);
/* Raises s->last_seq to seq unless it is already higher (threads finish
 * their commits in any order). */
void spool_note_seq(struct spool *s, uint64_t seq);
pid_t spool_current_pid(void); /* getpid(), cached and renewed at fork */
/* Around the library's own threads' work in LMDB: fork() waits for it. */
void spool_fork_guard_enter(void);
void spool_fork_guard_leave(void);
void spool_handle_register(struct spool *s);
void spool_handle_unregister(struct spool *s);
/* Enforce the full policy for the staged modes before accepting records. */
int spool_staged_admit(struct spool *s, size_t n, size_t bytes);

#endif
