/* spool.h — the durable on-disk event queue of master-log-spool.
 *
 * A spool is a directory holding an LMDB environment with three databases:
 * `events` (pending records under 64-bit big-endian sequence keys), `dead`
 * (records rejected for good, with status and reason) and `meta` (counters,
 * the sequence high-water mark, and the agent's published figures).  Several
 * processes and threads may append to the same spool at once; sequence numbers
 * stay strictly increasing across all of them.
 *
 * Conventions (as LMDB's): every call returns int, 0 on success, a negated
 * errno value or one of the SPOOL_E* codes below on failure;
 * spool_strerror() describes both.  Results come back through out-parameters.
 * Codes are only ever appended, never renumbered.
 *
 * Durability modes (spool_options.durability):
 *   SPOOL_SYNC      spool_append() returns after the LMDB transaction that
 *                   holds the record committed with a full sync.  Concurrent
 *                   callers in one process share one commit (group commit).
 *                   Survives power loss.
 *   SPOOL_COMMIT    (default) spool_append() returns once the record sits in
 *                   this handle's ring: a checksummed, preallocated file in
 *                   the spool's `rings/` folder, mapped shared, so the record
 *                   survives any crash of the process.  A background thread
 *                   moves ring records into LMDB with full-sync commits every
 *                   commit_interval.  The ring of a process that died is moved
 *                   by the next spool_open() or spool_recover() on the spool.
 *                   Power loss loses at most the last commit_interval.
 *   SPOOL_BUFFERED  spool_append() returns once the record is in process
 *                   memory; a background thread commits every
 *                   flush_interval or flush_batch records; spool_close()
 *                   commits what is left.  A crash loses the unflushed window.
 * LMDB is never opened with MDB_NOSYNC, MDB_NOMETASYNC or MDB_WRITEMAP: the
 * files are consistent after a power loss in every mode.
 *
 * Fork: a handle belongs to the process that opened it.  In a child after
 * fork() every call on an inherited handle fails with SPOOL_EFORKED and
 * touches nothing; the child opens the spool again (and may spool_close() the
 * inherited handle, which then only frees memory).
 */
#ifndef SPOOL_SPOOL_H
#define SPOOL_SPOOL_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(SPOOL_BUILDING) && defined(__GNUC__)
#define SPOOL_API __attribute__((visibility("default")))
#else
#define SPOOL_API
#endif

#define SPOOL_VERSION_STRING "0.1.0"

/* Library error codes, in a reserved range clear of errno and of LMDB's. */
enum {
	SPOOL_EFULL = -30600,	 /* spool full: the record was not stored (counted as dropped) */
	SPOOL_ETOOBIG = -30601,	 /* record larger than max_record_bytes (or than max_bytes) */
	SPOOL_ECORRUPT = -30602, /* a file of the spool is damaged or not a spool */
	SPOOL_ELOCKED = -30603,	 /* another process holds the agent lock */
	SPOOL_EFORKED = -30604,	 /* handle inherited across fork(); open the spool again */
	SPOOL_EVERSION = -30605, /* spool written by an incompatible format version */
	SPOOL_ENOTFOUND = -30606, /* no such key or sequence */
	SPOOL_EBACKEND = -30607, /* the storage engine failed in a way not listed here */
	SPOOL_ECLOSED = -30608,	 /* the handle's background committer stopped after an error */
};

enum spool_durability {
	SPOOL_COMMIT = 0, /* default */
	SPOOL_SYNC = 1,
	SPOOL_BUFFERED = 2,
};

/* What spool_append() does when the spool holds max_events records or
 * max_bytes record bytes. */
enum spool_full_policy {
	SPOOL_FULL_BLOCK = 0, /* default: wait up to full_timeout_seconds for room, then SPOOL_EFULL */
	SPOOL_FULL_DROP = 1,  /* refuse the new record at once with SPOOL_EFULL */
	SPOOL_FULL_EVICT = 2, /* delete the oldest records of the lowest severity present until it fits */
};

/* Severities, lowest first (the order eviction uses). */
enum spool_severity {
	SPOOL_SEV_DEBUG = 0,
	SPOOL_SEV_INFO = 1,
	SPOOL_SEV_WARN = 2,
	SPOOL_SEV_ERROR = 3,
	SPOOL_SEV_FATAL = 4,
};

struct spool_options {
	enum spool_durability durability; /* SPOOL_COMMIT */
	uint64_t max_events;		  /* pending records allowed; 0 = no count limit (default) */
	uint64_t max_bytes;		  /* pending record bytes allowed; default 1 GiB */
	enum spool_full_policy full_policy; /* SPOOL_FULL_BLOCK */
	double full_timeout_seconds;	  /* SPOOL_FULL_BLOCK wait; default 0.25 */
	double commit_interval_seconds;	  /* SPOOL_COMMIT: ring to LMDB; default 0.010 */
	double flush_interval_seconds;	  /* SPOOL_BUFFERED: memory to LMDB; default 1.0 */
	uint32_t flush_batch;		  /* SPOOL_BUFFERED: commit early at this many records; default 100 */
	size_t ring_bytes;		  /* staging ring (commit and buffered); default 4 MiB */
	size_t max_record_bytes;	  /* largest record accepted; default 1 MiB + 64 KiB */
	size_t initial_map_bytes;	  /* first LMDB map size; grows by doubling to the cap; default 64 MiB */
	unsigned max_readers;		  /* LMDB reader slots (processes x threads reading); default 1022 */
};

/* Fills *opt with the defaults above. */
SPOOL_API void spool_options_init(struct spool_options *opt);

/* Parses "sync", "commit", "buffered" (SPOOL_* mode) and "block", "drop",
 * "evict" (full policy); 0 or -EINVAL. */
SPOOL_API int spool_durability_parse(const char *text, enum spool_durability *out);
SPOOL_API int spool_full_policy_parse(const char *text, enum spool_full_policy *out);
SPOOL_API const char *spool_durability_name(enum spool_durability d);
/* "debug", "info", "warn", "error", "fatal"; parse accepts "warning" too. */
SPOOL_API int spool_severity_parse(const char *text, int *out);
SPOOL_API const char *spool_severity_name(int severity);

/* The system spool, shared by every service of the host: owned by group
 * master-log, mode 2770.  MASTER_LOG_SYSTEM_SPOOL_DIR (an absolute path)
 * stands in for it, for tests and relocated installs. */
#define SPOOL_SYSTEM_DIR "/var/spool/master-log"

/* The spool directory every program uses when none is given: the
 * MASTER_LOG_SPOOL_DIR environment variable; else, for root and for any
 * process that may write the system spool (a member of its group),
 * SPOOL_SYSTEM_DIR; else, a private spool: $XDG_STATE_HOME/master-log/spool,
 * else $HOME/.local/state/master-log/spool.  Writes it into buf;
 * -ENAMETOOLONG if it does not fit, -ENOENT if no rule applies. */
SPOOL_API int spool_default_dir(char *buf, size_t len);

struct spool;

/* Opens (creating with mode 0700, files 0600) the spool directory `dir`.
 * A directory that is setgid and group-writable (the system spool, 2770) is
 * shared: every file and directory the library makes in it is 0660 / 2770
 * whatever the umask, and keeps the directory's group.  A process that may
 * not use the directory gets -EACCES and a sentence naming the group to
 * join.
 * opt may be NULL for the defaults.  On failure *out is NULL and, when errbuf
 * is not NULL, errbuf holds a sentence naming the path and the problem.
 * Opening recovers the rings of dead processes and clears stale reader slots.
 * A data.mdb that a creation cut short (a power loss before the spool was
 * marked created, so it never held an event) left unopenable is renamed
 * data.mdb.unfinished-<time>, with a line on stderr, and the spool created
 * anew; a spool marked created is never set aside (its damage is an error).
 * One process may open the same spool several times (the handles share one
 * LMDB environment internally). */
SPOOL_API int spool_open(const char *dir, const struct spool_options *opt, struct spool **out,
			 char *errbuf, size_t errlen);

/* Commits what this handle still stages (buffered and commit mode), removes
 * its ring, releases the agent lock if this handle holds it, and frees the
 * handle.  Returns the first error met; the handle is freed in every case.
 * The commit it makes starts after the call, so a disk freed just before
 * it counts even while the flusher was retrying a failed commit.
 * If the staged records cannot be committed (a full disk), the ring file of
 * a commit-mode handle stays, and the next spool_open() moves it.  No other
 * call on the handle may run during or after spool_close().  NULL is
 * allowed.  On a handle inherited across fork() it frees memory only. */
SPOOL_API int spool_close(struct spool *s);

/* The directory the handle was opened on. */
SPOOL_API const char *spool_dir(const struct spool *s);

/* One record to append: `data` is one msgpack-encoded event (a map); the
 * spool stores it behind a fixed header (format version, severity, enqueue
 * time, checksum) and never changes it. */
struct spool_input {
	int severity; /* enum spool_severity */
	const void *data;
	size_t len;
};

/* Appends one record.  Returns 0 once the record is as safe as the handle's
 * durability mode promises; SPOOL_EFULL (policy drop, or block timed out),
 * SPOOL_ETOOBIG, -EINVAL (bad severity, NULL data with len > 0, empty
 * record), -ENOSPC and other errors otherwise: a record whose append did not
 * return 0 is not stored, and counts in dropped_total unless the call was
 * refused for its arguments (-EINVAL, SPOOL_ETOOBIG, SPOOL_EFORKED).  When
 * no transaction could record the count (a full disk), it waits in the
 * spool's `counts` file, which spool_stats() reads in every process, until
 * the next commit by any process stores it.  Thread-safe. */
SPOOL_API int spool_append(struct spool *s, int severity, const void *data, size_t len);

/* Appends n records in order, all or none: in sync mode in one LMDB
 * transaction; in the staged modes as one unit of the ring. */
SPOOL_API int spool_append_many(struct spool *s, const struct spool_input *in, size_t n);

/* Waits until every record this handle appended before the call is committed
 * to LMDB with a full sync (immediate in sync mode).  *last_seq (may be NULL)
 * gets the highest sequence this handle has committed, 0 if none.
 * -ETIMEDOUT after timeout_seconds (a negative timeout waits for ever). */
SPOOL_API int spool_sync(struct spool *s, double timeout_seconds, uint64_t *last_seq);

/* Moves the records left in the rings of processes that died into LMDB (it is
 * done at open; the agent calls it periodically).  *moved (may be NULL) counts
 * the records moved. */
SPOOL_API int spool_recover(struct spool *s, uint64_t *moved);

/* A stored record, as a view into the spool.  For pending records
 * dead_status is 0 and dead_reason NULL. */
struct spool_record {
	uint64_t seq;
	int64_t enqueue_us; /* wall clock at append, microseconds since the epoch */
	int severity;
	const void *data; /* the msgpack event as appended */
	size_t len;
	int dead_status;	 /* dead letters: the status that rejected it (HTTP code or a SPOOL_E*) */
	const char *dead_reason; /* dead letters: NUL-terminated reason */
	int64_t dead_us;	 /* dead letters: when it was dead-lettered */
};

struct spool_batch;

/* Reads up to max_events records with seq > after_seq (0: from the head), in
 * order, stopping before the record that would take the total of `len` past
 * max_bytes (the first record is always returned, whatever its size).
 * max_events 0 means no count limit and max_bytes 0 no byte limit.  Nothing
 * is copied: the records and their data point into the spool's map.
 * A record that fails its checksum or does not decode as one msgpack map is
 * moved to `dead` (status SPOOL_ECORRUPT, with the reason) and counted, and
 * the read goes on past it.
 * The batch (possibly empty) and every pointer in it stay valid until
 * spool_batch_release(); do not free them.  Hold a batch briefly: it pins a
 * read transaction, and the pages it sees cannot be reused until released.
 * A batch must be released by the thread that read it, before spool_close(). */
SPOOL_API int spool_read_batch(struct spool *s, uint64_t after_seq, size_t max_events,
			       size_t max_bytes, struct spool_batch **out);
/* Like spool_read_batch(), for one severity: up to max_events records of
 * `severity` with seq > after_seq, in order (the spool keeps enqueue order
 * within each severity, as it does across all of them).  Records of other
 * severities are passed over; *scanned_to gets the highest seq looked at
 * (after_seq when none), so that the next read of this severity can start
 * after it instead of scanning the same records again.  A severity with no
 * record pending costs no scan (the spool counts records per severity).
 * -EINVAL for a bad severity or a NULL pointer. */
SPOOL_API int spool_read_severity(struct spool *s, int severity, uint64_t after_seq, size_t max_events,
				  size_t max_bytes, struct spool_batch **out, uint64_t *scanned_to);
/* Reads dead letters with seq > after_seq, like spool_read_batch(). */
SPOOL_API int spool_read_dead(struct spool *s, uint64_t after_seq, size_t max_events,
			      struct spool_batch **out);
SPOOL_API size_t spool_batch_count(const struct spool_batch *b);
SPOOL_API const struct spool_record *spool_batch_records(const struct spool_batch *b);
/* NULL is allowed. */
SPOOL_API void spool_batch_release(struct spool_batch *b);

/* A permanent rejection: move record `seq` to `dead` with this status and
 * reason (truncated to 1 KiB). */
struct spool_reject {
	uint64_t seq;
	int status;
	const char *reason;
};

/* In one write transaction: deletes exactly the pending records in acked[]
 * and moves those in rejected[] to `dead`.  Sequences that are not pending
 * (already acked, evicted, never existed) are skipped.  *settled (may be NULL)
 * counts the records actually deleted or moved.  Exception: when the
 * transaction fails with -ENOSPC (a full disk, where deleting needs new
 * pages too), the lists are split in halves, in order, down to single
 * records, and each part that fits is committed on its own; the call then
 * returns -ENOSPC if any part failed, with *settled counting the parts
 * that were applied.  Calling again with the same lists finishes the job. */
SPOOL_API int spool_settle(struct spool *s, const uint64_t *acked, size_t nacked,
			   const struct spool_reject *rejected, size_t nrejected, uint64_t *settled);
/* Shorthands for spool_settle(). */
SPOOL_API int spool_ack(struct spool *s, const uint64_t *seqs, size_t n, uint64_t *deleted);
SPOOL_API int spool_dead_letter(struct spool *s, uint64_t seq, int status, const char *reason);

/* Deletes pending records by policy rather than by acknowledgement (the
 * agent's max_age, an operator's purge): like spool_ack(), but each one is
 * counted in evicted_total.  *deleted (may be NULL) counts them. */
SPOOL_API int spool_discard(struct spool *s, const uint64_t *seqs, size_t n, uint64_t *deleted);

struct spool_stats {
	uint64_t pending;	 /* records in `events` */
	uint64_t pending_bytes;	 /* their stored bytes (header included) */
	double oldest_age_seconds; /* age of the head record; 0 when empty */
	uint64_t dead;		 /* records in `dead` */
	uint64_t appended_total; /* monotonic counters, over the spool's life */
	uint64_t acked_total;
	uint64_t dead_total; /* dead-lettered, corrupt records included */
	uint64_t evicted_total; /* removed by the evict policy or spool_discard() */
	uint64_t dropped_total; /* refused by an append: spool or disk full, a failed commit */
	uint64_t corrupt_total; /* undecodable records found and dead-lettered */
	uint64_t torn_total;	/* torn ring records skipped (never acknowledged to a caller) */
	uint64_t next_seq;	/* the sequence the next committed record gets */
	uint64_t file_bytes;	/* size of the LMDB data file */
	uint64_t map_bytes;	/* current LMDB map size */
};

/* Committed figures (records still staged in rings or memory are not counted;
 * call spool_sync() first for those of this handle). */
SPOOL_API int spool_stats(struct spool *s, struct spool_stats *out);

/* A small key/value store shared by everyone using the spool (the agent's
 * send time per event, last success, last error).  Keys are NUL-terminated,
 * 1 to 255 bytes, and must not start with "spool."; values up to 64 KiB.
 * spool_meta_get: *len is the size of buf on entry and the value's size on
 * return; SPOOL_ENOTFOUND if absent, -ENOSPC (with *len set) if buf is too
 * small.  Each put is one synced transaction. */
SPOOL_API int spool_meta_put(struct spool *s, const char *key, const void *val, size_t len);
SPOOL_API int spool_meta_get(struct spool *s, const char *key, void *buf, size_t *len);

/* The agent lock: one agent per spool.  Takes it without waiting: 0, or
 * SPOOL_ELOCKED when another handle or process holds it.  A holder that dies
 * releases it.  Released by spool_agent_unlock() or spool_close(). */
SPOOL_API int spool_agent_lock(struct spool *s);
SPOOL_API void spool_agent_unlock(struct spool *s);
/* 1 if some handle or process holds the agent lock, 0 if none; *pid (may be
 * NULL) gets the holder's pid when known. */
SPOOL_API int spool_agent_running(struct spool *s, long *pid);

/* Text for a code returned by any spool_* call (SPOOL_E*, negated errno). */
SPOOL_API const char *spool_strerror(int err);

/* ---- waking the agent ----
 *
 * The agent keeps a FIFO named `wake` in the spool directory open for
 * reading and polls it with its flush timeout.  A producer that completed a
 * batch calls spool_wake_agent(): one byte written with O_NONBLOCK, so the
 * call never blocks.  No agent (no reader: ENXIO), a full pipe (EAGAIN: a
 * wake-up is already pending) or no FIFO at all (ENOENT: no agent ever ran)
 * are not errors. */

/* Name of the FIFO inside the spool directory. */
#define SPOOL_WAKE_NAME "wake"

/* Wakes the agent of the spool directory `dir`.  Returns 0 (including the
 * harmless cases above), -EINVAL for a NULL dir, -ENAMETOOLONG, or another
 * negated errno (e.g. -EACCES). */
SPOOL_API int spool_wake_agent(const char *dir);

/* For agents: creates the FIFO if needed (mode 0600) and opens it
 * O_RDWR | O_NONBLOCK | O_CLOEXEC.  Returns the descriptor, or a negated
 * errno (-EEXIST when `wake` exists and is not a FIFO). */
SPOOL_API int spool_wake_open(const char *dir);

/* For agents: reads and discards every pending wake byte on fd; returns the
 * number of bytes drained. */
SPOOL_API int spool_wake_drain(int fd);


/* ---- administration (spoolctl) ---- */
#include <stdbool.h>

/* CRC-32 (zlib's polynomial) of data[0, len), continuing from crc (0 to
 * start): the checksum of spoolctl's export files. */
SPOOL_API uint32_t spool_crc32(uint32_t crc, const void *data, size_t len);

/* Moves dead letters back into the queue, in one write transaction: the
 * sequences in seqs[] (in any order, duplicates ignored), or every dead
 * letter when `all` (then seqs must be NULL and n 0).  They are appended
 * under new sequence numbers, in the order of their old ones, with their
 * stored record (severity, enqueue time, event bytes) unchanged, and count
 * as appended (appended_total) like any new record; dead_total, a total
 * over the spool's life, does not go down.  Sequences not in `dead`, and
 * dead letters whose record is corrupt, are skipped (they stay dead).
 * *moved (may be NULL) counts the records moved.  The full policy is not
 * applied: the operator asked for them. */
SPOOL_API int spool_dead_retry(struct spool *s, const uint64_t *seqs, size_t n, bool all,
			       uint64_t *moved);
/* Deletes dead letters for good (seqs[] or `all`, as above), in one write
 * transaction.  *purged (may be NULL) counts them. */
SPOOL_API int spool_dead_purge(struct spool *s, const uint64_t *seqs, size_t n, bool all,
			       uint64_t *purged);

/* Problems spool_verify() finds (spool_verify_report.problems). */
enum {
	SPOOL_VERIFY_BAD_RECORDS = 1 << 0,   /* pending records failing checksum or msgpack check */
	SPOOL_VERIFY_PENDING_COUNT = 1 << 1, /* severity counters do not add up to the records */
	SPOOL_VERIFY_PENDING_BYTES = 1 << 2, /* pending_bytes differs from the records' bytes */
	SPOOL_VERIFY_SEV_COUNTS = 1 << 3,    /* a per-severity count differs */
	SPOOL_VERIFY_NEXT_SEQ = 1 << 4,	     /* next_seq not above every key */
	SPOOL_VERIFY_BAD_DEAD = 1 << 5,	     /* undecodable dead letters (not repaired) */
	SPOOL_VERIFY_BAD_RINGS = 1 << 6,     /* rings/ring-*.bad: rings unreadable after a crash */
	SPOOL_VERIFY_SET_ASIDE = 1 << 7,     /* data.mdb.unfinished-*: a creation cut short */
};

struct spool_verify_report {
	unsigned problems;	 /* SPOOL_VERIFY_* found (before any repair) */
	uint64_t records;	 /* pending records examined */
	uint64_t bad;		 /* of them, failing their check */
	uint64_t first_bad_seq;	 /* the first of those */
	uint64_t dead;		 /* dead letters examined */
	uint64_t bad_dead;	 /* of them, undecodable */
	uint64_t first_bad_dead; /* the first of those */
	uint64_t pending_bytes;	 /* the records' stored bytes */
	uint64_t sev[5];	 /* records per severity (by header) */
	uint64_t max_seq;	 /* highest key in events and dead */
	uint64_t stored_pending_bytes; /* the counters as stored */
	uint64_t stored_sev[5];
	uint64_t stored_next_seq;
	uint64_t repaired;	 /* records moved to dead by the repair */
	bool counters_rewritten; /* the repair rewrote the counters */
	char text[2048];	 /* one line per problem, for people */
	uint64_t bad_rings;	 /* rings/ring-*.bad files found */
	uint64_t set_aside;	 /* data.mdb.unfinished-* files found */
	uint64_t files_removed;	 /* of those, removed by the repair */
};

/* Checks every pending record (header checksum, one msgpack map) and every
 * dead letter of the spool in `dir`, and the counters against the records:
 * the pending count, pending_bytes, the per-severity counts, and next_seq
 * above every key.  It also lists the files set aside after a crash: rings
 * whose header was unreadable (rings/ring-<id>.bad; their sound entries were
 * moved into the queue once, with what was recovered and counted as torn)
 * and data.mdb files of a creation cut short (data.mdb.unfinished-<time>;
 * they never held an event).  Without `repair` nothing is changed (not even
 * the rings of dead producers, which spool_open() would move).  With
 * `repair`, when something is wrong, one write transaction moves bad records
 * to `dead` (status SPOOL_ECORRUPT, counted in dead_total and corrupt_total)
 * and rewrites those counters from the records, and the files set aside are
 * removed.  Returns 0 when the check ran (look at out->problems); an error,
 * with a sentence in errbuf, when it could not. */
SPOOL_API int spool_verify(const char *dir, bool repair, struct spool_verify_report *out,
			   char *errbuf, size_t errlen);

/* Rewrites the spool in `dir` with an LMDB compacting copy (free pages
 * dropped), fsynced and renamed over data.mdb; the directory is fsynced and
 * the stale lock.mdb removed.  Refused with -EBUSY (and a sentence in errbuf)
 * while any process has the spool open (the users.lock every user holds
 * shared; a process must not call it with the spool open itself), or while
 * rings/ holds ring files (open the spool once to move them; rings set aside
 * as rings/ring-<id>.bad do not count).  *before and *after (may be NULL)
 * get data.mdb's size before and after. */
SPOOL_API int spool_compact(const char *dir, uint64_t *before, uint64_t *after, char *errbuf,
			    size_t errlen);

#ifdef __cplusplus
}
#endif
#endif
