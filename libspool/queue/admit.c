/* admit.c — room in the spool: whether a request fits under the limits
 * (max_events, max_bytes), eviction for the evict policy, and the headroom
 * an append must leave on a nearly full disk so that deletes still work. */
#include <errno.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "admit.h"
#include "env.h"
#include "record.h"
#include "txn.h"
#include "util.h"

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
				spool_counters_remove(c, &v);
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

int spool_admit(struct spool_env *env, MDB_txn *txn, struct spool_counters *c, uint64_t *pending,
		const struct spool_limits *lim, size_t n, uint64_t bytes,
		uint64_t hints[SPOOL_NSEV], int *mdb_rc)
{
	if (!lim)
		return 0;
	bool too_many = lim->max_events && *pending + n > lim->max_events;
	bool too_big = lim->max_bytes && c->pending_bytes + bytes > lim->max_bytes;
	if (!too_many && !too_big)
		return 0;
	if ((lim->max_events && n > lim->max_events) || (lim->max_bytes && bytes > lim->max_bytes))
		return lim->enforce ? SPOOL_ETOOBIG : 0;
	if (lim->policy == SPOOL_FULL_EVICT) {
		uint64_t need_n = too_many ? *pending + n - lim->max_events : 0;
		uint64_t need_b = too_big ? c->pending_bytes + bytes - lim->max_bytes : 0;
		*mdb_rc = evict(env, txn, c, pending, need_n, need_b, hints);
		return 0;
	}
	if (!lim->enforce)
		return 0; /* staged records were promised to their callers: keep them */
	if (lim->policy == SPOOL_FULL_DROP) {
		c->dropped += n;
		return SPOOL_EFULL;
	}
	return 1; /* SPOOL_FULL_BLOCK: the caller waits and tries again */
}

/* Headroom for deletes (see spool_env_delete_room() in env.c): when the
 * file system is nearly full, an append that would leave fewer than that
 * many bytes between the free pages inside data.mdb and the free space of
 * the disk is refused with -ENOSPC before it writes anything.  Deletes are
 * never refused. */
int spool_admit_headroom(struct spool_env *env, MDB_txn *txn, uint64_t bytes)
{
	struct statvfs fs;
	if (statvfs(env->dir, &fs) != 0)
		return 0;
	uint64_t keep = spool_env_delete_room(&fs);
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
