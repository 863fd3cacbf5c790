/* txn.c — the write-transaction helper and the counters every write keeps
 * in meta: load and store, the counts waiting (in the spool's counts file,
 * or in memory) for the next commit, and the figures published for cheap
 * full-spool checks. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "env.h"
#include "record.h"
#include "txn.h"
#include "util.h"

static const char KEY_COUNTERS[] = "spool.counters";
#define NCOUNTERS 17

/* ---- the counts file ----
 *
 * SPOOL/counts holds 32 bytes, little-endian: a magic, the file's id
 * (random, so that a file made again is told from the one the counters
 * refer to), the total of records refused (dropped) and the total of torn
 * ring entries counted outside a committed transaction.  The totals only
 * grow; each add rewrites its 8 bytes in place under a write lock on the
 * file (an open-file-description lock, let go if the process dies), so it
 * needs no new block on a full disk. */
#define COUNTS_MAGIC "spoolcnt"
#define COUNTS_SIZE 32
#define COUNTS_DROPPED 2 /* the slot of each total */
#define COUNTS_TORN 3

static int counts_path(const struct spool_env *env, char *buf, size_t len)
{
	return snprintf(buf, len, "%s/counts", env->dir) >= (int)len ? -1 : 0;
}

/* f[0] = id, f[1] = dropped, f[2] = torn; 0, or -1 without a sound file. */
static int counts_read(const struct spool_env *env, uint64_t f[3])
{
	char path[4200];
	if (counts_path(env, path, sizeof(path)) != 0)
		return -1;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	unsigned char b[COUNTS_SIZE];
	ssize_t n = pread(fd, b, sizeof(b), 0);
	close(fd);
	if (n != COUNTS_SIZE || memcmp(b, COUNTS_MAGIC, 8) != 0)
		return -1;
	for (int i = 0; i < 3; i++)
		f[i] = spool_get_le64(b + 8 + 8 * i);
	return 0;
}

static int counts_add(const struct spool_env *env, int slot, uint64_t n)
{
	char path[4200];
	if (counts_path(env, path, sizeof(path)) != 0)
		return -1;
	int fd = open(path, O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return -1;
	struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_len = COUNTS_SIZE};
	int rc;
	while ((rc = fcntl(fd, F_OFD_SETLKW, &fl)) != 0 && errno == EINTR)
		;
	unsigned char b[COUNTS_SIZE];
	if (rc == 0 && pread(fd, b, sizeof(b), 0) == COUNTS_SIZE &&
	    memcmp(b, COUNTS_MAGIC, 8) == 0) {
		unsigned char v[8];
		spool_put_le64(v, spool_get_le64(b + 8 * slot) + n);
		rc = pwrite(fd, v, sizeof(v), 8 * slot) == (ssize_t)sizeof(v) ? 0 : -1;
	} else {
		rc = -1;
	}
	close(fd); /* and with it the lock */
	return rc;
}

static int counts_sync(const struct spool_env *env)
{
	char path[4200];
	if (counts_path(env, path, sizeof(path)) != 0)
		return -1;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	int rc = fdatasync(fd);
	close(fd);
	return rc;
}

void spool_txn_counts_create(struct spool_env *env)
{
	char path[4200], tmp[4300];
	uint64_t f[3];
	if (counts_path(env, path, sizeof(path)) != 0 || counts_read(env, f) == 0)
		return;
	bool damaged = access(path, F_OK) == 0;
	/* written aside, synced, then given its name: nobody sees it half
	 * made, and a file another process made meanwhile is kept (link()
	 * does not replace it; only a damaged one is renamed over) */
	static _Atomic unsigned serial;
	snprintf(tmp, sizeof(tmp), "%s/.counts-%ld-%u", env->dir, (long)getpid(),
		 atomic_fetch_add(&serial, 1));
	mode_t fmode = spool_file_mode(env->dir);
	int fd = open(tmp, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, fmode);
	if (fd < 0)
		return;
	spool_fix_mode(fd, fmode);
	unsigned char b[COUNTS_SIZE] = {0};
	memcpy(b, COUNTS_MAGIC, 8);
	spool_put_le64(b + 8, spool_random64() | 1);
	bool ok = write(fd, b, sizeof(b)) == (ssize_t)sizeof(b) && fdatasync(fd) == 0;
	close(fd);
	if (ok)
		ok = damaged ? rename(tmp, path) == 0 : link(tmp, path) == 0;
	unlink(tmp);
	if (!ok)
		return;
	int dfd = open(env->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd >= 0) {
		fsync(dfd);
		close(dfd);
	}
}

/* Adds to c what the counts file holds beyond what c includes already. */
static void counts_take(const struct spool_env *env, struct spool_counters *c)
{
	c->counts_id_was = c->counts_id;
	c->counts_dropped_was = c->counts_dropped;
	c->counts_torn_was = c->counts_torn;
	c->counts_took_dropped = c->counts_took_torn = 0;
	uint64_t f[3];
	if (counts_read(env, f) != 0)
		return; /* no file: the marks stay for when it is back */
	uint64_t d = c->counts_dropped, t = c->counts_torn;
	if (f[0] != c->counts_id)
		d = t = 0; /* a file the counters never took from */
	/* Totals below the marks cannot come from this library (a store syncs
	 * the file first); the marks follow the file down, taking nothing. */
	c->counts_took_dropped = f[1] > d ? f[1] - d : 0;
	c->counts_took_torn = f[2] > t ? f[2] - t : 0;
	c->dropped += c->counts_took_dropped;
	c->torn += c->counts_took_torn;
	c->counts_id = f[0];
	c->counts_dropped = f[1];
	c->counts_torn = f[2];
}

int spool_counters_load(struct spool_env *env, MDB_txn *txn, struct spool_counters *c)
{
	memset(c, 0, sizeof(*c));
	MDB_val k = {sizeof(KEY_COUNTERS) - 1, (void *)KEY_COUNTERS}, v;
	int rc = mdb_get(txn, env->dbi_meta, &k, &v);
	if (rc == MDB_NOTFOUND) {
		c->next_seq = 1;
		counts_take(env, c);
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
	c->counts_id = f[14];
	c->counts_dropped = f[15];
	c->counts_torn = f[16];
	counts_take(env, c);
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
	f[14] = c->counts_id;
	f[15] = c->counts_dropped;
	f[16] = c->counts_torn;
	/* What this commit takes from the counts file must be on disk there
	 * first: a power loss must not leave the file's totals below the
	 * marks, where new counts would hide.  Unsynced, it stays waiting. */
	if ((c->counts_took_dropped || c->counts_took_torn) && counts_sync(env) != 0) {
		f[11] -= c->counts_took_dropped;
		f[13] -= c->counts_took_torn;
		f[14] = c->counts_id_was;
		f[15] = c->counts_dropped_was;
		f[16] = c->counts_torn_was;
	}
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
	if (n && counts_add(env, COUNTS_DROPPED, n) != 0)
		atomic_fetch_add(&env->add_dropped, n);
}

void spool_txn_add_torn(struct spool_env *env, uint64_t n)
{
	if (n && counts_add(env, COUNTS_TORN, n) != 0)
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
		spool_env_end_write(env);
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
	/* The last user.  Counts waiting in memory for the next commit (only
	 * when the spool has no counts file) would die with the environment:
	 * store them now.  Best effort: on a full disk this commit can fail.
	 * (Should another thread of this process take the spool meanwhile,
	 * the release below only drops this reference.) */
	if (atomic_load(&env->add_dropped) || atomic_load(&env->add_torn))
		spool_txn_write(env, fold_counts, NULL);
	spool_env_release(env);
}
