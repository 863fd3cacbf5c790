/* write.c — every change to the queue's records: appends (through a group
 * committer shared by the threads of a process), settles (ack and dead
 * letters), discards, corrupt records, meta values and ring marks.  Room
 * (limits, eviction, headroom) is admit.c's; the transaction helper and the
 * counters are txn.c's. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "admit.h"
#include "env.h"
#include "record.h"
#include "txn.h"
#include "util.h"
#include "write.h"

#define RING_MARK_PREFIX "spool.ring."

static void mark_key(char *buf, size_t len, uint64_t ring_id)
{
	snprintf(buf, len, RING_MARK_PREFIX "%016" PRIx64, ring_id);
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

/* A transaction that failed: every request of the list gets `code`.  Its
 * refused records cannot be counted in it; they count as waiting, which the
 * next commit by any process stores (txn.h). */
static void refuse_list(struct spool_env *env, struct spool_wreq *list, int code)
{
	for (struct spool_wreq *r = list; r; r = r->next) {
		r->rc = code;
		r->first_seq = 0;
		if (r->count_refused)
			spool_txn_add_dropped(env, r->n);
	}
}

/* One write transaction for a list of append requests. */
static void commit_list(struct spool_env *env, struct spool_wreq *list)
{
	for (int attempt = 0;; attempt++) {
		MDB_txn *txn;
		int rc = spool_env_begin(env, false, &txn);
		if (rc) {
			refuse_list(env, list, rc);
			return;
		}
		uint64_t dropped, torn;
		spool_txn_waiting(env, &dropped, &torn);
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
			rc = spool_admit_headroom(env, txn, all);
		}
		uint64_t pending = rc ? 0 : spool_txn_pending(env, txn);
		for (struct spool_wreq *r = list; r && !rc; r = r->next) {
			uint64_t bytes = 0;
			for (size_t i = 0; i < r->n; i++)
				bytes += r->hdrs ? SPOOL_REC_HDR + r->in[i].len : r->in[i].len;
			r->first_seq = 0;
			r->rc = spool_admit(env, txn, &c, &pending, r->lim, r->n, bytes, hints,
					    &rc);
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
			rc = spool_txn_commit(env, txn, dropped, torn);
			if (rc)
				spool_env_failed(env, rc);
		} else {
			mdb_txn_abort(txn);
		}
		spool_env_end_write(env);
		if (rc == 0) {
			memcpy(env->evict_hint, hints, sizeof(hints));
			spool_txn_publish(env, &c, pending);
			return;
		}
		if ((rc == MDB_MAP_FULL || rc == MDB_TXN_FULL) && attempt < 40) {
			if (rc == MDB_MAP_FULL && spool_env_grow(env) == 0)
				continue;
			rc = MDB_MAP_FULL;
		}
		refuse_list(env, list, rc < -4095 || rc > 0 ? spool_env_commit_error(env, rc) : rc);
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
	/* One cursor for the whole list: after a delete it rests on the next
	 * record, which is usually the next sequence of the list (a batch is
	 * a run of consecutive keys), so most records need no search from
	 * the root; a record found there is used only when its key is the
	 * one asked for. */
	MDB_cursor *cur;
	int rc = mdb_cursor_open(txn, env->dbi_events, &cur);
	if (rc)
		return rc;
	bool placed = false; /* the cursor rests where the last delete left it */
	for (size_t i = 0; i < n && !rc; i++) {
		unsigned char kb[8];
		spool_put_be64(kb, seqs[i]);
		MDB_val k, v;
		bool found = false;
		if (placed) {
			rc = mdb_cursor_get(cur, &k, &v, MDB_GET_CURRENT);
			found = rc == 0 && k.mv_size == 8 && memcmp(k.mv_data, kb, 8) == 0;
			if (rc == MDB_NOTFOUND || rc == EINVAL)
				rc = 0;
		}
		if (!rc && !found) {
			k = (MDB_val){8, kb};
			rc = mdb_cursor_get(cur, &k, &v, MDB_SET_KEY);
			placed = false;
			if (rc == MDB_NOTFOUND) {
				rc = 0;
				continue;
			}
			found = rc == 0;
		}
		if (!found)
			break;
		spool_counters_remove(c, &v);
		rc = mdb_cursor_del(cur, 0);
		if (rc)
			break;
		placed = true;
		(*counter)++;
		(*deleted)++;
	}
	mdb_cursor_close(cur);
	return rc;
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
		spool_counters_remove(c, &v);
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
	int rc = spool_txn_write(env, settle_body, &a);
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
	int rc = spool_txn_write(env, discard_body, &a);
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
	return spool_txn_write(env, corrupt_body, &a);
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
	return spool_txn_write(env, meta_body, &a);
}

int spool_write_del_meta(struct spool_env *env, const char *key)
{
	struct meta_arg a = {key, NULL, 0, true};
	return spool_txn_write(env, meta_body, &a);
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
	return spool_txn_write(env, gc_body, NULL);
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
int spool_write_get_mark(struct spool_env *env, uint64_t ring_id, uint64_t *mark)
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
	spool_env_end_write(env);
	return rc == MDB_NOTFOUND || rc == 0 ? 0 : spool_map_mdb_error(rc);
}

int spool_write_del_mark(struct spool_env *env, uint64_t ring_id)
{
	char key[64];
	mark_key(key, sizeof(key), ring_id);
	return spool_write_del_meta(env, key);
}
