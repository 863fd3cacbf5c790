/* txn.c — the write-transaction helper and the counters every write keeps
 * in meta: load and store, the counts waiting in memory for the next
 * commit, and the figures published for cheap full-spool checks. */
#include <string.h>

#include "env.h"
#include "record.h"
#include "txn.h"
#include "util.h"

static const char KEY_COUNTERS[] = "spool.counters";
#define NCOUNTERS 16

int spool_counters_load(struct spool_env *env, MDB_txn *txn, struct spool_counters *c)
{
	memset(c, 0, sizeof(*c));
	MDB_val k = {sizeof(KEY_COUNTERS) - 1, (void *)KEY_COUNTERS}, v;
	int rc = mdb_get(txn, env->dbi_meta, &k, &v);
	if (rc == MDB_NOTFOUND) {
		c->next_seq = 1;
		return 0;
	}
	if (rc)
		return rc;
	uint64_t f[NCOUNTERS] = {0};
	size_t n = v.mv_size / 8;
	if (n > NCOUNTERS)
		n = NCOUNTERS;
	for (size_t i = 0; i < n; i++)
		f[i] = spool_get_le64((const unsigned char *)v.mv_data + 8 * i);
	c->next_seq = f[0] ? f[0] : 1;
	c->pending_bytes = f[1];
	for (int i = 0; i < SPOOL_NSEV; i++)
		c->sev[i] = f[2 + i];
	c->appended = f[7];
	c->acked = f[8];
	c->dead = f[9];
	c->evicted = f[10];
	c->dropped = f[11];
	c->corrupt = f[12];
	c->torn = f[13];
	return 0;
}

int spool_counters_store(struct spool_env *env, MDB_txn *txn, const struct spool_counters *c)
{
	uint64_t f[NCOUNTERS] = {0};
	f[0] = c->next_seq;
	f[1] = c->pending_bytes;
	for (int i = 0; i < SPOOL_NSEV; i++)
		f[2 + i] = c->sev[i];
	f[7] = c->appended;
	f[8] = c->acked;
	f[9] = c->dead;
	f[10] = c->evicted;
	f[11] = c->dropped;
	f[12] = c->corrupt;
	f[13] = c->torn;
	unsigned char buf[NCOUNTERS * 8];
	for (int i = 0; i < NCOUNTERS; i++)
		spool_put_le64(buf + 8 * i, f[i]);
	MDB_val k = {sizeof(KEY_COUNTERS) - 1, (void *)KEY_COUNTERS}, v = {sizeof(buf), buf};
	return mdb_put(txn, env->dbi_meta, &k, &v, 0);
}

void spool_counters_remove(struct spool_counters *c, const MDB_val *v)
{
	const unsigned char *p = v->mv_data;
	if (v->mv_size >= SPOOL_REC_HDR && p[1] < SPOOL_NSEV && c->sev[p[1]] > 0)
		c->sev[p[1]]--;
	c->pending_bytes = c->pending_bytes >= v->mv_size ? c->pending_bytes - v->mv_size : 0;
}

void spool_txn_add_dropped(struct spool_env *env, uint64_t n)
{
	atomic_fetch_add(&env->add_dropped, n);
}

void spool_txn_add_torn(struct spool_env *env, uint64_t n)
{
	atomic_fetch_add(&env->add_torn, n);
}

void spool_txn_waiting(struct spool_env *env, uint64_t *dropped, uint64_t *torn)
{
	pthread_mutex_lock(&env->count_mu);
	*dropped = atomic_load(&env->add_dropped);
	*torn = atomic_load(&env->add_torn);
	pthread_mutex_unlock(&env->count_mu);
}

uint64_t spool_txn_pending(struct spool_env *env, MDB_txn *txn)
{
	MDB_stat st;
	if (mdb_stat(txn, env->dbi_events, &st) != 0)
		return 0;
	return st.ms_entries;
}

int spool_txn_commit(struct spool_env *env, MDB_txn *txn, uint64_t dropped, uint64_t torn)
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
		spool_env_reserve_tail(env);
	return rc;
}

void spool_txn_publish(struct spool_env *env, const struct spool_counters *c, uint64_t pending)
{
	atomic_store(&env->cached_pending, pending);
	atomic_store(&env->cached_pending_bytes, c->pending_bytes);
}

int spool_txn_write(struct spool_env *env, spool_txn_body fn, void *arg)
{
	for (int attempt = 0;; attempt++) {
		MDB_txn *txn;
		int rc = spool_env_begin(env, false, &txn);
		if (rc)
			return rc;
		struct spool_counters c;
		uint64_t dropped, torn;
		spool_txn_waiting(env, &dropped, &torn);
		rc = spool_counters_load(env, txn, &c);
		c.dropped += dropped;
		c.torn += torn;
		if (!rc)
			rc = fn(env, txn, &c, arg);
		if (!rc)
			rc = spool_counters_store(env, txn, &c);
		uint64_t pending = 0;
		if (!rc) {
			pending = spool_txn_pending(env, txn);
			rc = spool_txn_commit(env, txn, dropped, torn);
			if (rc)
				spool_env_failed(env, rc);
		} else {
			mdb_txn_abort(txn);
		}
		spool_env_end(env);
		if (rc == 0) {
			spool_txn_publish(env, &c, pending);
			return 0;
		}
		if (rc == MDB_MAP_FULL && attempt < 40 && spool_env_grow(env) == 0)
			continue;
		return rc > 0 || rc < -4095 ? spool_env_commit_error(env, rc) : rc;
	}
}

/* An empty write transaction: spool_txn_write() folds the waiting counts in. */
static int fold_counts(struct spool_env *env, MDB_txn *txn, struct spool_counters *c, void *arg)
{
	(void)env;
	(void)txn;
	(void)c;
	(void)arg;
	return 0;
}

void spool_txn_release_env(struct spool_env *env)
{
	if (spool_env_release_shared(env))
		return;
	/* The last user.  Counts waiting for the next commit (records refused
	 * or lost from a buffered handle, torn ring entries) would die with the
	 * environment: store them now.  Best effort: on a full disk this commit
	 * can fail.  (Should another thread of this process take the spool
	 * meanwhile, the release below only drops this reference.) */
	if (atomic_load(&env->add_dropped) || atomic_load(&env->add_torn))
		spool_txn_write(env, fold_counts, NULL);
	spool_env_release(env);
}
