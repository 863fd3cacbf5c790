/* read.c — batches, dead letters, statistics and meta values.  Reads only:
 * unsound records are handed back to the caller to dead-letter. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "env.h"
#include "read.h"
#include "record.h"
#include "txn.h"
#include "util.h"

struct spool_batch {
	struct spool_env *env;
	MDB_txn *txn;
	size_t count;
	size_t cap;
	struct spool_record *recs;
};

static int batch_push(struct spool_batch *b, const struct spool_record *r, size_t want)
{
	if (b->count == b->cap) {
		/* first the batch's size when known (one allocation per read),
		 * then doubling */
		size_t cap = b->cap ? b->cap * 2 : want && want <= 8192 ? want : 64;
		struct spool_record *n = realloc(b->recs, cap * sizeof(*n));
		if (!n)
			return -ENOMEM;
		b->recs = n;
		b->cap = cap;
	}
	b->recs[b->count++] = *r;
	return 0;
}

/* A full batch means a backlog.  Its records lie in runs of consecutive
 * pages (one per commit that wrote them), the runs a little out of order,
 * within a megabyte or so of each other.  The first read of each page costs
 * a page fault, one per 16 pages or so; one MADV_POPULATE_READ maps 4 MiB
 * around the reader at once: 1 MiB behind the last record read, 3 MiB
 * ahead, again only when the reader comes within 1 MiB of that range's
 * end.  Advice only: the range may run past the map or over other pages,
 * and any error is ignored (it reads nothing but page tables). */
#define AHEAD_BEHIND ((uintptr_t)1 << 20)
#define AHEAD_AFTER ((uintptr_t)3 << 20)

static void read_ahead(struct spool_env *env, const void *last)
{
#ifdef MADV_POPULATE_READ
	long ps = sysconf(_SC_PAGESIZE);
	uintptr_t page = ps > 0 ? (uintptr_t)ps : 4096;
	uintptr_t at = (uintptr_t)last & ~(page - 1);
	uintptr_t lo = atomic_load_explicit(&env->ahead_lo, memory_order_relaxed);
	uintptr_t hi = atomic_load_explicit(&env->ahead_hi, memory_order_relaxed);
	if (at >= lo && at + AHEAD_BEHIND <= hi)
		return;
	lo = at > AHEAD_BEHIND ? at - AHEAD_BEHIND : 0;
	hi = at + AHEAD_AFTER;
	atomic_store_explicit(&env->ahead_lo, lo, memory_order_relaxed);
	atomic_store_explicit(&env->ahead_hi, hi, memory_order_relaxed);
	(void)madvise((void *)lo, hi - lo, MADV_POPULATE_READ);
#else
	(void)env;
	(void)last;
#endif
}

static void batch_reset(struct spool_batch *b)
{
	if (b->txn) {
		mdb_txn_abort(b->txn);
		b->txn = NULL;
		spool_env_end(b->env);
	}
	b->count = 0;
}

int spool_batch_read_events(struct spool_env *env, uint64_t after_seq, int severity, size_t max_events,
			    size_t max_bytes, struct spool_batch **out, uint64_t *scanned_to,
			    struct spool_bad_records *bad)
{
	*out = NULL;
	bad->n = 0;
	struct spool_batch *b = calloc(1, sizeof(*b));
	if (!b)
		return -ENOMEM;
	b->env = env;
	int rc = spool_env_begin(env, true, &b->txn);
	if (rc) {
		b->txn = NULL;
		spool_batch_release(b);
		return rc;
	}
	size_t bytes = 0;
	uint64_t scanned = after_seq;
	MDB_cursor *cur = NULL;
	if (severity >= 0) {
		/* none of this severity pending: nothing to scan (the counts are
		 * kept in the same transactions as the records) */
		struct spool_counters c;
		rc = spool_counters_load(env, b->txn, &c);
		if (!rc && c.sev[severity] == 0) {
			*scanned_to = c.next_seq ? c.next_seq - 1 : 0;
			if (*scanned_to < after_seq)
				*scanned_to = after_seq;
			*out = b;
			return 0;
		}
	}
	if (!rc)
		rc = mdb_cursor_open(b->txn, env->dbi_events, &cur);
	if (!rc) {
		unsigned char kb[8];
		spool_put_be64(kb, after_seq + 1);
		MDB_val k = {8, kb}, v;
		rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
		while (rc == 0 && (max_events == 0 || b->count < max_events)) {
			uint64_t seq = k.mv_size == 8 ? spool_get_be64(k.mv_data) : 0;
			const unsigned char *h = v.mv_data;
			const char *reason;
			/* another severity's record with a sound header is passed
			 * over unchecked; its own pass checks it */
			if (severity >= 0 && v.mv_size >= SPOOL_REC_HDR && h[0] == SPOOL_FORMAT_VERSION &&
			    h[1] < SPOOL_NSEV && h[1] != severity) {
				scanned = seq;
				rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
				continue;
			}
			if (spool_rec_check(v.mv_data, v.mv_size, &reason) != 0) {
				bad->seq[bad->n] = seq;
				bad->why[bad->n] = reason;
				if (++bad->n == SPOOL_BAD_PER_READ)
					break;
			} else {
				const unsigned char *p = v.mv_data;
				size_t len = v.mv_size - SPOOL_REC_HDR;
				if (max_bytes && b->count > 0 && bytes + len > max_bytes)
					break;
				scanned = seq;
				struct spool_record r = {
					.seq = seq,
					.enqueue_us = (int64_t)spool_get_le64(p + 8),
					.severity = p[1],
					.data = p + SPOOL_REC_HDR,
					.len = len,
				};
				if ((rc = batch_push(b, &r, max_events)) != 0)
					break;
				bytes += len;
			}
			rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
		}
		mdb_cursor_close(cur);
		/* in key order only: a severity's records lie all over */
		if (rc == 0 && severity < 0 && max_events && b->count == max_events)
			read_ahead(env, b->recs[b->count - 1].data);
	}
	if (rc == MDB_NOTFOUND)
		rc = 0;
	if (scanned_to)
		*scanned_to = scanned;
	if (rc || bad->n) {
		/* on a failure nothing is handed back; unsound records found are
		 * the caller's to move, and it reads again */
		spool_batch_release(b);
		if (rc)
			bad->n = 0;
		return rc < 0 && rc > -4096 ? rc : spool_map_mdb_error(rc);
	}
	*out = b;
	return 0;
}

int spool_batch_read_dead(struct spool_env *env, uint64_t after_seq, size_t max_events,
			  struct spool_batch **out)
{
	struct spool_batch *b = calloc(1, sizeof(*b));
	if (!b)
		return -ENOMEM;
	b->env = env;
	int rc = spool_env_begin(env, true, &b->txn);
	if (rc) {
		b->txn = NULL;
		spool_batch_release(b);
		return rc;
	}
	MDB_cursor *cur;
	rc = mdb_cursor_open(b->txn, env->dbi_dead, &cur);
	if (!rc) {
		unsigned char kb[8];
		spool_put_be64(kb, after_seq + 1);
		MDB_val k = {8, kb}, v;
		rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
		while (rc == 0 && (max_events == 0 || b->count < max_events)) {
			struct spool_record r = {.seq = k.mv_size == 8 ? spool_get_be64(k.mv_data) : 0};
			if (spool_dead_decode(v.mv_data, v.mv_size, &r) != 0) {
				r.severity = -1;
				r.data = v.mv_data;
				r.len = v.mv_size;
				r.dead_status = SPOOL_ECORRUPT;
				r.dead_reason = "undecodable dead letter";
			}
			if ((rc = batch_push(b, &r, max_events)) != 0)
				break;
			rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
		}
		mdb_cursor_close(cur);
	}
	if (rc == MDB_NOTFOUND)
		rc = 0;
	if (rc) {
		spool_batch_release(b);
		return rc < 0 && rc > -4096 ? rc : spool_map_mdb_error(rc);
	}
	*out = b;
	return 0;
}

size_t spool_batch_count(const struct spool_batch *b)
{
	return b ? b->count : 0;
}

const struct spool_record *spool_batch_records(const struct spool_batch *b)
{
	return b ? b->recs : NULL;
}

void spool_batch_release(struct spool_batch *b)
{
	if (!b)
		return;
	batch_reset(b);
	free(b->recs);
	free(b);
}

/* The figures of one read transaction; the counts still waiting in the
 * environment are left out. */
static int read_stats_once(struct spool_env *env, struct spool_stats *out)
{
	memset(out, 0, sizeof(*out));
	MDB_txn *txn;
	int rc = spool_env_begin(env, true, &txn);
	if (rc)
		return rc;
	struct spool_counters c;
	rc = spool_counters_load(env, txn, &c);
	MDB_stat st;
	if (!rc && (rc = mdb_stat(txn, env->dbi_events, &st)) == 0)
		out->pending = st.ms_entries;
	if (!rc && (rc = mdb_stat(txn, env->dbi_dead, &st)) == 0)
		out->dead = st.ms_entries;
	if (!rc) {
		MDB_cursor *cur;
		if (mdb_cursor_open(txn, env->dbi_events, &cur) == 0) {
			MDB_val k, v;
			if (mdb_cursor_get(cur, &k, &v, MDB_FIRST) == 0 && v.mv_size >= SPOOL_REC_HDR) {
				int64_t t = (int64_t)spool_get_le64((const unsigned char *)v.mv_data + 8);
				int64_t age = spool_now_us() - t;
				out->oldest_age_seconds = age > 0 ? (double)age / 1e6 : 0.0;
			}
			if (mdb_cursor_get(cur, &k, &v, MDB_LAST) == 0 && k.mv_size == 8 &&
			    spool_get_be64(k.mv_data) >= c.next_seq)
				c.next_seq = spool_get_be64(k.mv_data) + 1;
			mdb_cursor_close(cur);
		}
		MDB_envinfo info;
		if (mdb_env_info(env->mdb, &info) == 0)
			out->map_bytes = info.me_mapsize;
		int fd;
		struct stat fst;
		if (mdb_env_get_fd(env->mdb, &fd) == 0 && fstat(fd, &fst) == 0)
			out->file_bytes = (uint64_t)fst.st_size;
	}
	mdb_txn_abort(txn);
	spool_env_end(env);
	if (rc)
		return spool_map_mdb_error(rc);
	out->pending_bytes = c.pending_bytes;
	out->appended_total = c.appended;
	out->acked_total = c.acked;
	out->dead_total = c.dead;
	out->evicted_total = c.evicted;
	out->dropped_total = c.dropped;
	out->corrupt_total = c.corrupt;
	out->torn_total = c.torn;
	out->next_seq = c.next_seq;
	spool_txn_publish(env, &c, out->pending);
	return 0;
}

int spool_read_stats(struct spool_env *env, struct spool_stats *out)
{
	/* Committed counts plus those still waiting, from the same moment: a
	 * commit that moves counts from waiting to stored bumps commit_gen, so
	 * read again if one finished while the transaction was read. */
	for (int attempt = 0;; attempt++) {
		pthread_mutex_lock(&env->count_mu);
		uint64_t gen = env->commit_gen;
		pthread_mutex_unlock(&env->count_mu);
		int rc = read_stats_once(env, out);
		if (rc)
			return rc;
		pthread_mutex_lock(&env->count_mu);
		bool same = gen == env->commit_gen;
		uint64_t dropped = atomic_load(&env->add_dropped);
		uint64_t torn = atomic_load(&env->add_torn);
		pthread_mutex_unlock(&env->count_mu);
		if (same || attempt >= 50) {
			out->dropped_total += dropped;
			out->torn_total += torn;
			return 0;
		}
	}
}

int spool_read_meta(struct spool_env *env, const char *key, void *buf, size_t *len)
{
	MDB_txn *txn;
	int rc = spool_env_begin(env, true, &txn);
	if (rc)
		return rc;
	MDB_val k = {strlen(key), (void *)key}, v;
	rc = mdb_get(txn, env->dbi_meta, &k, &v);
	if (rc == 0) {
		size_t room = *len;
		*len = v.mv_size;
		if (v.mv_size > room)
			rc = -ENOSPC;
		else if (v.mv_size)
			memcpy(buf, v.mv_data, v.mv_size);
	}
	mdb_txn_abort(txn);
	spool_env_end(env);
	if (rc == -ENOSPC)
		return rc;
	return spool_map_mdb_error(rc);
}
