/* write.c — every write transaction of the spool: appends (through a group
 * committer shared by the threads of a process), settles (ack and dead
 * letters), corrupt records, meta values and ring marks. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "internal.h"

#define RING_MARK_PREFIX "spool.ring."

static void mark_key(char *buf, size_t len, uint64_t ring_id)
{
	snprintf(buf, len, RING_MARK_PREFIX "%016" PRIx64, ring_id);
}

/* Records pending in `events`, as LMDB counts them. */
static uint64_t pending_count(struct spool_env *env, MDB_txn *txn)
{
	MDB_stat st;
	if (mdb_stat(txn, env->dbi_events, &st) != 0)
		return 0;
	return st.ms_entries;
}

static void sev_dec(struct spool_counters *c, const MDB_val *v)
{
	const unsigned char *p = v->mv_data;
	if (v->mv_size >= SPOOL_REC_HDR && p[1] < SPOOL_NSEV && c->sev[p[1]] > 0)
		c->sev[p[1]]--;
	c->pending_bytes = c->pending_bytes >= v->mv_size ? c->pending_bytes - v->mv_size : 0;
}

/* Deletes the oldest records of the lowest severity present until `need_n`
 * records and `need_b` bytes are gone.  hints[] are updated for the caller
 * to adopt after a successful commit.  Returns 0 or an LMDB code. */
static int evict(struct spool_env *env, MDB_txn *txn, struct spool_counters *c, uint64_t *pending,
		 uint64_t need_n, uint64_t need_b, uint64_t hints[SPOOL_NSEV])
{
	uint64_t got_n = 0, got_b = 0;
	MDB_cursor *cur;
	int rc = mdb_cursor_open(txn, env->dbi_events, &cur);
	if (rc)
		return rc;
	for (int sev = 0; sev < SPOOL_NSEV && (got_n < need_n || got_b < need_b); sev++) {
		if (c->sev[sev] == 0)
			continue;
		unsigned char kb[8];
		spool_put_be64(kb, hints[sev]);
		MDB_val k = {8, kb}, v;
		rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
		while (rc == 0 && (got_n < need_n || got_b < need_b)) {
			const unsigned char *p = v.mv_data;
			uint64_t seq = spool_get_be64(k.mv_data);
			if (v.mv_size >= SPOOL_REC_HDR && p[1] == sev) {
				size_t sz = v.mv_size;
				sev_dec(c, &v);
				rc = mdb_cursor_del(cur, 0);
				if (rc)
					break;
				c->evicted++;
				(*pending)--;
				got_n++;
				got_b += sz;
				hints[sev] = seq + 1;
			}
			rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
		}
		if (rc == MDB_NOTFOUND) {
			/* scanned to the end: none of this severity left past the hint */
			hints[sev] = c->next_seq;
			rc = 0;
		}
		if (rc)
			break;
	}
	mdb_cursor_close(cur);
	return rc;
}

/* Applies the limits to one request: 0 to store it, 1 to have the caller
 * wait for room (block policy), SPOOL_EFULL or SPOOL_ETOOBIG for this
 * request alone; an LMDB failure while evicting goes to *mdb_rc. */
static int admit(struct spool_env *env, MDB_txn *txn, struct spool_counters *c, uint64_t *pending,
		 const struct spool_wreq *r, uint64_t bytes, uint64_t hints[SPOOL_NSEV], int *mdb_rc)
{
	const struct spool_limits *lim = r->lim;
	if (!lim)
		return 0;
	bool too_many = lim->max_events && *pending + r->n > lim->max_events;
	bool too_big = lim->max_bytes && c->pending_bytes + bytes > lim->max_bytes;
	if (!too_many && !too_big)
		return 0;
	if ((lim->max_events && r->n > lim->max_events) || (lim->max_bytes && bytes > lim->max_bytes))
		return lim->enforce ? SPOOL_ETOOBIG : 0;
	if (lim->policy == SPOOL_FULL_EVICT) {
		uint64_t need_n = too_many ? *pending + r->n - lim->max_events : 0;
		uint64_t need_b = too_big ? c->pending_bytes + bytes - lim->max_bytes : 0;
		*mdb_rc = evict(env, txn, c, pending, need_n, need_b, hints);
		return 0;
	}
	if (!lim->enforce)
		return 0; /* staged records were promised to their callers: keep them */
	if (lim->policy == SPOOL_FULL_DROP) {
		c->dropped += r->n;
		return SPOOL_EFULL;
	}
	return 1; /* SPOOL_FULL_BLOCK: the caller waits and tries again */
}

static int put_records(struct spool_env *env, MDB_txn *txn, MDB_cursor *cur,
		       struct spool_counters *c, struct spool_wreq *r)
{
	for (size_t i = 0; i < r->n; i++) {
		const struct spool_input *in = &r->in[i];
		size_t size = r->hdrs ? SPOOL_REC_HDR + in->len : in->len;
		unsigned char kb[8];
		spool_put_be64(kb, c->next_seq);
		MDB_val k = {8, kb}, v = {size, NULL};
		int rc = mdb_cursor_put(cur, &k, &v, MDB_APPEND | MDB_RESERVE);
		if (rc)
			return rc;
		if (r->hdrs) {
			memcpy(v.mv_data, r->hdrs[i], SPOOL_REC_HDR);
			if (in->len)
				memcpy((unsigned char *)v.mv_data + SPOOL_REC_HDR, in->data, in->len);
		} else {
			memcpy(v.mv_data, in->data, in->len);
		}
		c->next_seq++;
		c->appended++;
		c->pending_bytes += size;
		if ((unsigned)in->severity < SPOOL_NSEV)
			c->sev[in->severity]++;
	}
	if (r->ring_id) {
		char key[64];
		mark_key(key, sizeof(key), r->ring_id);
		unsigned char mb[8];
		spool_put_le64(mb, r->mark_no);
		MDB_val k = {strlen(key), key}, v = {8, mb};
		int rc = mdb_put(txn, env->dbi_meta, &k, &v, 0);
		if (rc)
			return rc;
	}
	return 0;
}

void spool_pending_counts(struct spool_env *env, uint64_t *dropped, uint64_t *torn)
{
	pthread_mutex_lock(&env->count_mu);
	*dropped = atomic_load(&env->add_dropped);
	*torn = atomic_load(&env->add_torn);
	pthread_mutex_unlock(&env->count_mu);
}

/* Room for deletes on a full disk.  LMDB copies each page a delete touches
 * before it frees any, so when data.mdb has no free page left, deleting
 * needs new pages at the end of the file; on a disk another program filled
 * that is impossible, and the agent could never remove what the server
 * acknowledged.  Two guards keep room for them, both sized by delete_room():
 * 1/32 of the file system, 64 KiB to 1 MiB.  reserve_tail() reserves that
 * much past the end of the file (fallocate, size unchanged) whenever the
 * file comes within 64 KiB of the last reservation's end, so LMDB's page
 * writes past the end land in blocks already held; a reservation that fails
 * (the disk is full already) is tried again after the next commit.
 * headroom() keeps the spool's own appends from taking the last of it. */
static uint64_t delete_room(const struct statvfs *fs)
{
	uint64_t room = (uint64_t)fs->f_blocks * fs->f_frsize / 32;
	return room < (64u << 10) ? (64u << 10) : room > (1u << 20) ? (1u << 20) : room;
}

static void reserve_tail(struct spool_env *env)
{
	MDB_envinfo info;
	MDB_stat st;
	int fd;
	if (mdb_env_info(env->mdb, &info) != 0 || mdb_env_stat(env->mdb, &st) != 0)
		return;
	uint64_t end = ((uint64_t)info.me_last_pgno + 1) * st.ms_psize;
	if (end + (64u << 10) <= atomic_load(&env->reserved_to))
		return;
	if (mdb_env_get_fd(env->mdb, &fd) != 0)
		return;
	struct statvfs fs;
	uint64_t want = fstatvfs(fd, &fs) == 0 ? delete_room(&fs) : (1u << 20);
	if (fallocate(fd, FALLOC_FL_KEEP_SIZE, (off_t)end, (off_t)want) == 0)
		atomic_store(&env->reserved_to, end + want);
}

/* Commits a write transaction that stored the waiting counts `dropped` and
 * `torn`, and takes them off the waiting ones in the same critical section
 * (a failed commit leaves them waiting). */
static int commit_counted(struct spool_env *env, MDB_txn *txn, uint64_t dropped, uint64_t torn)
{
	pthread_mutex_lock(&env->count_mu);
	int rc = mdb_txn_commit(txn);
	if (rc == 0) {
		atomic_fetch_sub(&env->add_dropped, dropped);
		atomic_fetch_sub(&env->add_torn, torn);
		env->commit_gen++;
	}
	pthread_mutex_unlock(&env->count_mu);
	if (rc == 0)
		reserve_tail(env);
	return rc;
}

/* Headroom for deletes (see delete_room above): when the file system is
 * nearly full, an append that would leave fewer than delete_room() bytes
 * between the free pages inside data.mdb and the free space of the disk is
 * refused with -ENOSPC before it writes anything.  Deletes are never
 * refused. */
static int headroom(struct spool_env *env, MDB_txn *txn, uint64_t bytes)
{
	struct statvfs fs;
	if (statvfs(env->dir, &fs) != 0)
		return 0;
	uint64_t keep = delete_room(&fs);
	uint64_t disk = (uint64_t)(geteuid() == 0 ? fs.f_bfree : fs.f_bavail) * fs.f_frsize;
	uint64_t need = bytes + bytes / 2 + 8 * 4096;
	if (disk >= keep + need)
		return 0;
	MDB_envinfo info;
	MDB_stat st;
	if (mdb_env_info(env->mdb, &info) != 0 || mdb_env_stat(env->mdb, &st) != 0)
		return 0;
	uint64_t used = 2; /* meta pages */
	MDB_dbi dbis[] = {0, 1, env->dbi_events, env->dbi_dead, env->dbi_meta};
	for (size_t i = 0; i < sizeof(dbis) / sizeof(dbis[0]); i++) {
		MDB_stat ds;
		if (mdb_stat(txn, dbis[i], &ds) != 0)
			return 0;
		used += ds.ms_branch_pages + ds.ms_leaf_pages + ds.ms_overflow_pages;
	}
	uint64_t total = (uint64_t)info.me_last_pgno + 1;
	uint64_t inside = total > used ? (total - used) * st.ms_psize : 0;
	return inside + disk >= keep + need ? 0 : -ENOSPC;
}

/* One write transaction for a list of append requests. */
static void commit_list(struct spool_env *env, struct spool_wreq *list)
{
	for (int attempt = 0;; attempt++) {
		MDB_txn *txn;
		int rc = spool_env_begin(env, false, &txn);
		if (rc) {
			for (struct spool_wreq *r = list; r; r = r->next)
				r->rc = rc;
			return;
		}
		uint64_t dropped, torn;
		spool_pending_counts(env, &dropped, &torn);
		struct spool_counters c;
		uint64_t hints[SPOOL_NSEV];
		memcpy(hints, env->evict_hint, sizeof(hints));
		MDB_cursor *cur = NULL;
		rc = spool_counters_load(env, txn, &c);
		if (!rc)
			rc = mdb_cursor_open(txn, env->dbi_events, &cur);
		if (!rc) {
			/* the sequence never goes back, even if the counters were lost */
			MDB_val k, v;
			int lr = mdb_cursor_get(cur, &k, &v, MDB_LAST);
			if (lr == 0 && k.mv_size == 8) {
				uint64_t last = spool_get_be64(k.mv_data);
				if (last >= c.next_seq)
					c.next_seq = last + 1;
			}
		}
		c.dropped += dropped;
		c.torn += torn;
		if (!rc) {
			uint64_t all = 0;
			for (struct spool_wreq *r = list; r; r = r->next)
				for (size_t i = 0; i < r->n; i++)
					all += SPOOL_REC_HDR + r->in[i].len;
			rc = headroom(env, txn, all);
		}
		uint64_t pending = rc ? 0 : pending_count(env, txn);
		for (struct spool_wreq *r = list; r && !rc; r = r->next) {
			uint64_t bytes = 0;
			for (size_t i = 0; i < r->n; i++)
				bytes += r->hdrs ? SPOOL_REC_HDR + r->in[i].len : r->in[i].len;
			r->first_seq = 0;
			r->rc = admit(env, txn, &c, &pending, r, bytes, hints, &rc);
			if (rc)
				break; /* an LMDB failure while evicting */
			if (r->rc != 0)
				continue;
			r->first_seq = c.next_seq;
			rc = put_records(env, txn, cur, &c, r);
			pending += r->n;
		}
		if (cur)
			mdb_cursor_close(cur);
		if (!rc)
			rc = spool_counters_store(env, txn, &c);
		if (!rc) {
			rc = commit_counted(env, txn, dropped, torn);
			if (rc)
				spool_env_failed(env, rc);
		} else {
			mdb_txn_abort(txn);
		}
		spool_env_end(env);
		if (rc == 0) {
			memcpy(env->evict_hint, hints, sizeof(hints));
			spool_env_publish(env, &c, pending);
			return;
		}
		if ((rc == MDB_MAP_FULL || rc == MDB_TXN_FULL) && attempt < 40) {
			if (rc == MDB_MAP_FULL && spool_env_grow(env) == 0)
				continue;
			rc = MDB_MAP_FULL;
		}
		int code = rc < -4095 || rc > 0 ? spool_env_commit_error(env, rc) : rc;
		for (struct spool_wreq *r = list; r; r = r->next) {
			r->rc = code;
			r->first_seq = 0;
		}
		return;
	}
}

/* Group commit: the first thread to find no commit running leads, and
 * commits every request queued by then in one transaction; the others wait,
 * each on its own condition variable, so a finished commit wakes exactly
 * the threads it served, plus the first one queued behind it to lead next.
 * After a commit shared by several threads, those threads need a moment to
 * come back with their next records, so the next leader waits for them (up
 * to the size of the recent groups, at most half a commit time) rather
 * than commit the few that happened to be queued already. */
int spool_write_append(struct spool_env *env, struct spool_wreq *req)
{
	req->next = NULL;
	req->done = false;
	pthread_cond_init(&req->cv, NULL);
	pthread_mutex_lock(&env->gc_mu);
	if (env->gc_tail)
		env->gc_tail->next = req;
	else
		env->gc_head = req;
	env->gc_tail = req;
	env->gc_queued++;
	if (env->gc_gathering && env->gc_queued >= env->gc_peak)
		pthread_cond_signal(&env->gc_join);
	while (!req->done) {
		if (env->gc_busy) {
			pthread_cond_wait(&req->cv, &env->gc_mu);
			continue;
		}
		env->gc_busy = true;
		if (env->gc_last > 1 && env->gc_queued < env->gc_peak) {
			int64_t wait_ns = env->gc_last_ns / 2;
			if (wait_ns > 500 * 1000)
				wait_ns = 500 * 1000;
			struct timespec ts;
			spool_deadline(&ts, (double)wait_ns / 1e9);
			env->gc_gathering = true;
			while (env->gc_queued < env->gc_peak &&
			       pthread_cond_timedwait(&env->gc_join, &env->gc_mu, &ts) == 0)
				;
			env->gc_gathering = false;
		}
		struct spool_wreq *list = env->gc_head;
		unsigned n = env->gc_queued;
		env->gc_head = env->gc_tail = NULL;
		env->gc_queued = 0;
		pthread_mutex_unlock(&env->gc_mu);
		int64_t t0 = spool_mono_ns();
		commit_list(env, list);
		int64_t took = spool_mono_ns() - t0;
		pthread_mutex_lock(&env->gc_mu);
		for (struct spool_wreq *r = list, *next; r; r = next) {
			next = r->next;
			r->done = true;
			if (r != req)
				pthread_cond_signal(&r->cv);
		}
		env->gc_last = n;
		env->gc_last_ns = took;
		/* the peak decays, so a burst of threads that has gone does not make
		 * later leaders wait for it */
		env->gc_peak = n >= env->gc_peak ? n : env->gc_peak - (env->gc_peak - n + 3) / 4;
		env->gc_busy = false;
		if (env->gc_head)
			pthread_cond_signal(&env->gc_head->cv); /* the next leader */
	}
	pthread_mutex_unlock(&env->gc_mu);
	pthread_cond_destroy(&req->cv);
	return req->rc;
}

/* Moves the value under key k to `dead` with status and reason. */
static int move_dead(struct spool_env *env, MDB_txn *txn, MDB_val *k, const MDB_val *v, int status,
		     const char *reason)
{
	size_t rlen = reason ? strnlen(reason, SPOOL_REASON_MAX) : 0;
	size_t size = spool_dead_encode_size(rlen, v->mv_size);
	unsigned char *copy = malloc(v->mv_size ? v->mv_size : 1);
	if (!copy)
		return ENOMEM;
	memcpy(copy, v->mv_data, v->mv_size);
	size_t reclen = v->mv_size;
	int rc = mdb_del(txn, env->dbi_events, k, NULL);
	if (!rc) {
		MDB_val dv = {size, NULL};
		rc = mdb_put(txn, env->dbi_dead, k, &dv, MDB_RESERVE);
		if (!rc)
			spool_dead_encode(dv.mv_data, status, spool_now_us(), reason, rlen, copy,
					  reclen);
	}
	free(copy);
	return rc;
}

int spool_write_txn(struct spool_env *env, spool_txn_body fn, void *arg)
{
	for (int attempt = 0;; attempt++) {
		MDB_txn *txn;
		int rc = spool_env_begin(env, false, &txn);
		if (rc)
			return rc;
		struct spool_counters c;
		uint64_t dropped, torn;
		spool_pending_counts(env, &dropped, &torn);
		rc = spool_counters_load(env, txn, &c);
		c.dropped += dropped;
		c.torn += torn;
		if (!rc)
			rc = fn(env, txn, &c, arg);
		if (!rc)
			rc = spool_counters_store(env, txn, &c);
		uint64_t pending = 0;
		if (!rc) {
			pending = pending_count(env, txn);
			rc = commit_counted(env, txn, dropped, torn);
			if (rc)
				spool_env_failed(env, rc);
		} else {
			mdb_txn_abort(txn);
		}
		spool_env_end(env);
		if (rc == 0) {
			spool_env_publish(env, &c, pending);
			return 0;
		}
		if (rc == MDB_MAP_FULL && attempt < 40 && spool_env_grow(env) == 0)
			continue;
		return rc > 0 || rc < -4095 ? spool_env_commit_error(env, rc) : rc;
	}
}

struct settle_arg {
	const uint64_t *acked;
	size_t nacked;
	const struct spool_reject *rejected;
	size_t nrejected;
	uint64_t settled;
};

/* Deletes the pending records among seqs[0..n), adding each to *counter;
 * *deleted counts them.  Sequences not pending are skipped. */
static int delete_pending(struct spool_env *env, MDB_txn *txn, struct spool_counters *c,
			  const uint64_t *seqs, size_t n, uint64_t *counter, uint64_t *deleted)
{
	for (size_t i = 0; i < n; i++) {
		unsigned char kb[8];
		spool_put_be64(kb, seqs[i]);
		MDB_val k = {8, kb}, v;
		int rc = mdb_get(txn, env->dbi_events, &k, &v);
		if (rc == MDB_NOTFOUND)
			continue;
		if (!rc) {
			sev_dec(c, &v);
			rc = mdb_del(txn, env->dbi_events, &k, NULL);
		}
		if (rc)
			return rc;
		(*counter)++;
		(*deleted)++;
	}
	return 0;
}

/* Moves pending record seq to `dead` with status and reason, counting it;
 * *moved is false (and nothing is done) when seq is not pending. */
static int dead_letter_pending(struct spool_env *env, MDB_txn *txn, struct spool_counters *c,
			       uint64_t seq, int status, const char *reason, bool *moved)
{
	*moved = false;
	unsigned char kb[8];
	spool_put_be64(kb, seq);
	MDB_val k = {8, kb}, v;
	int rc = mdb_get(txn, env->dbi_events, &k, &v);
	if (rc == MDB_NOTFOUND)
		return 0;
	if (!rc) {
		sev_dec(c, &v);
		rc = move_dead(env, txn, &k, &v, status, reason);
	}
	if (rc)
		return rc;
	c->dead++;
	*moved = true;
	return 0;
}

static int settle_body(struct spool_env *env, MDB_txn *txn, struct spool_counters *c, void *p)
{
	struct settle_arg *a = p;
	a->settled = 0;
	int rc = delete_pending(env, txn, c, a->acked, a->nacked, &c->acked, &a->settled);
	for (size_t i = 0; !rc && i < a->nrejected; i++) {
		bool moved;
		rc = dead_letter_pending(env, txn, c, a->rejected[i].seq, a->rejected[i].status,
					 a->rejected[i].reason, &moved);
		a->settled += moved;
	}
	return rc;
}

int spool_write_settle(struct spool_env *env, const uint64_t *acked, size_t nacked,
		       const struct spool_reject *rejected, size_t nrejected, uint64_t *settled)
{
	struct settle_arg a = {acked, nacked, rejected, nrejected, 0};
	int rc = spool_write_txn(env, settle_body, &a);
	if (settled)
		*settled = rc ? 0 : a.settled;
	size_t total = nacked + nrejected;
	if (rc != -ENOSPC || total < 2)
		return rc;
	/* A full disk.  LMDB copies every page a delete touches before it
	 * frees any, so deleting a batch can need more new pages than the
	 * free list holds, and the file cannot grow.  Halves need fewer, and
	 * each one that commits frees pages for the next: split, in order,
	 * down to one record.  Records settled before a failure stay settled
	 * (sequences no longer pending are skipped when the caller retries). */
	size_t k = total / 2, ka = k < nacked ? k : nacked, kr = k - ka;
	uint64_t s1 = 0, s2 = 0;
	rc = spool_write_settle(env, acked, ka, rejected, kr, &s1);
	if (rc == 0)
		rc = spool_write_settle(env, acked + ka, nacked - ka, rejected + kr, nrejected - kr,
					&s2);
	if (settled)
		*settled = s1 + s2;
	return rc;
}

struct discard_arg {
	const uint64_t *seqs;
	size_t n;
	uint64_t deleted;
};

static int discard_body(struct spool_env *env, MDB_txn *txn, struct spool_counters *c, void *p)
{
	struct discard_arg *a = p;
	a->deleted = 0;
	return delete_pending(env, txn, c, a->seqs, a->n, &c->evicted, &a->deleted);
}

int spool_write_discard(struct spool_env *env, const uint64_t *seqs, size_t n, uint64_t *deleted)
{
	struct discard_arg a = {seqs, n, 0};
	int rc = spool_write_txn(env, discard_body, &a);
	if (deleted)
		*deleted = rc ? 0 : a.deleted;
	return rc;
}

struct corrupt_arg {
	const uint64_t *seqs;
	const char *const *reasons;
	size_t n;
};

static int corrupt_body(struct spool_env *env, MDB_txn *txn, struct spool_counters *c, void *p)
{
	struct corrupt_arg *a = p;
	int rc = 0;
	for (size_t i = 0; !rc && i < a->n; i++) {
		bool moved;
		rc = dead_letter_pending(env, txn, c, a->seqs[i], SPOOL_ECORRUPT, a->reasons[i], &moved);
		c->corrupt += moved;
	}
	return rc;
}

int spool_write_corrupt(struct spool_env *env, const uint64_t *seqs, const char *const *reasons,
			size_t n)
{
	struct corrupt_arg a = {seqs, reasons, n};
	return spool_write_txn(env, corrupt_body, &a);
}

struct meta_arg {
	const char *key;
	const void *val;
	size_t len;
	bool del;
};

static int meta_body(struct spool_env *env, MDB_txn *txn, struct spool_counters *c, void *p)
{
	struct meta_arg *a = p;
	(void)c;
	MDB_val k = {strlen(a->key), (void *)a->key}, v = {a->len, (void *)a->val};
	if (a->del) {
		int rc = mdb_del(txn, env->dbi_meta, &k, NULL);
		return rc == MDB_NOTFOUND ? 0 : rc;
	}
	return mdb_put(txn, env->dbi_meta, &k, &v, 0);
}

int spool_write_meta(struct spool_env *env, const char *key, const void *val, size_t len)
{
	struct meta_arg a = {key, val, len, false};
	return spool_write_txn(env, meta_body, &a);
}

int spool_write_del_meta(struct spool_env *env, const char *key)
{
	struct meta_arg a = {key, NULL, 0, true};
	return spool_write_txn(env, meta_body, &a);
}

/* Ring marks whose ring file is gone are deleted.  Done inside the write
 * transaction so that a ring being created concurrently (its file exists
 * before its first mark is written, in a later transaction) is never hit. */
static int gc_body(struct spool_env *env, MDB_txn *txn, struct spool_counters *c, void *p)
{
	(void)c;
	(void)p;
	MDB_cursor *cur;
	int rc = mdb_cursor_open(txn, env->dbi_meta, &cur);
	if (rc)
		return rc;
	const size_t plen = sizeof(RING_MARK_PREFIX) - 1;
	MDB_val k = {plen, (void *)RING_MARK_PREFIX}, v;
	rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
	while (rc == 0 && k.mv_size > plen && memcmp(k.mv_data, RING_MARK_PREFIX, plen) == 0) {
		char path[4200];
		snprintf(path, sizeof(path), "%s/rings/ring-%.*s", env->dir, (int)(k.mv_size - plen),
			 (const char *)k.mv_data + plen);
		struct stat st;
		if (stat(path, &st) != 0 && errno == ENOENT) {
			rc = mdb_cursor_del(cur, 0);
			if (rc)
				break;
		}
		rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
	}
	mdb_cursor_close(cur);
	return rc == MDB_NOTFOUND ? 0 : rc;
}

int spool_write_gc_marks(struct spool_env *env)
{
	return spool_write_txn(env, gc_body, NULL);
}

/* Reads the mark in a write transaction, which is aborted.  A read
 * transaction is not enough: a writer killed after its meta page reached the
 * disk but before it published the new transaction id in the lock file leaves
 * a commit that is durable yet invisible to readers, until the next writer
 * takes the (robust) write mutex and repairs the id.  Recovery would read the
 * old mark and then, in its own write transaction, append on top of the new
 * state the entries that commit already moved: duplicates.  Taking the write
 * mutex first repairs the id, so the mark read here is the latest one, and
 * the ring's lock keeps it so until the transfer. */
int spool_read_mark(struct spool_env *env, uint64_t ring_id, uint64_t *mark)
{
	*mark = 0;
	MDB_txn *txn;
	int rc = spool_env_begin(env, false, &txn);
	if (rc)
		return rc;
	char key[64];
	mark_key(key, sizeof(key), ring_id);
	MDB_val k = {strlen(key), key}, v;
	rc = mdb_get(txn, env->dbi_meta, &k, &v);
	if (rc == 0 && v.mv_size == 8)
		*mark = spool_get_le64(v.mv_data);
	mdb_txn_abort(txn);
	spool_env_end(env);
	return rc == MDB_NOTFOUND || rc == 0 ? 0 : spool_map_mdb_error(rc);
}

int spool_write_del_mark(struct spool_env *env, uint64_t ring_id)
{
	char key[64];
	mark_key(key, sizeof(key), ring_id);
	return spool_write_del_meta(env, key);
}
