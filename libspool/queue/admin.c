/* admin.c — what an operator does to a spool (spoolctl): retry and purge
 * dead letters, verify the records against the counters (and repair them),
 * and compact the LMDB file.  Each change is one write transaction. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <libdeflate.h>

#include "env.h"
#include "handle.h"
#include "record.h"
#include "stage.h"
#include "txn.h"
#include "util.h"

uint32_t spool_crc32(uint32_t crc, const void *data, size_t len)
{
	/* zlib's CRC-32, by libdeflate (record.c) */
	return libdeflate_crc32(crc, data, len);
}

static int guard(struct spool *s)
{
	if (!s)
		return -EINVAL;
	return spool_forked(s) ? SPOOL_EFORKED : 0;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/* A sorted copy of seqs without duplicates; *n is updated. */
static uint64_t *sorted_unique(const uint64_t *seqs, size_t *n)
{
	uint64_t *v = malloc((*n ? *n : 1) * sizeof(*v));
	if (!v)
		return NULL;
	if (*n)
		memcpy(v, seqs, *n * sizeof(*v));
	qsort(v, *n, sizeof(*v), cmp_u64);
	size_t out = 0;
	for (size_t i = 0; i < *n; i++)
		if (out == 0 || v[out - 1] != v[i])
			v[out++] = v[i];
	*n = out;
	return v;
}

/* The highest 8-byte key of dbi, 0 when empty. */
static int last_key(MDB_txn *txn, MDB_dbi dbi, uint64_t *last)
{
	*last = 0;
	MDB_cursor *cur;
	int rc = mdb_cursor_open(txn, dbi, &cur);
	if (rc)
		return rc;
	MDB_val k, v;
	rc = mdb_cursor_get(cur, &k, &v, MDB_LAST);
	if (rc == 0 && k.mv_size == 8)
		*last = spool_get_be64(k.mv_data);
	mdb_cursor_close(cur);
	return rc == MDB_NOTFOUND ? 0 : rc;
}

/* ---- dead letters ---- */

struct dead_arg {
	const uint64_t *seqs; /* sorted, unique */
	size_t n;
	bool all;
	bool retry; /* false: purge */
	uint64_t done;
};

/* Appends the stored record held by dead letter v to `events` under the next
 * sequence.  Returns 1 when the dead letter holds no sound record (it stays
 * where it is), 0 when moved, an LMDB code on failure. */
static int requeue(MDB_cursor *ev, struct spool_counters *c, const MDB_val *v)
{
	struct spool_record r;
	if (spool_dead_decode(v->mv_data, v->mv_size, &r) != 0 || r.severity < 0)
		return 1;
	const unsigned char *rec = (const unsigned char *)r.data - SPOOL_REC_HDR;
	size_t size = r.len + SPOOL_REC_HDR;
	unsigned char *copy = malloc(size);
	if (!copy)
		return ENOMEM;
	memcpy(copy, rec, size);
	unsigned char kb[8];
	spool_put_be64(kb, c->next_seq);
	MDB_val k = {8, kb}, nv = {size, NULL};
	int rc = mdb_cursor_put(ev, &k, &nv, MDB_APPEND | MDB_RESERVE);
	if (!rc) {
		/* the header (format, severity, enqueue time, checksum) does not
		 * hold the sequence: the record moves unchanged */
		memcpy(nv.mv_data, copy, size);
		c->next_seq++;
		c->appended++;
		c->pending_bytes += size;
		c->sev[copy[1]]++;
	}
	free(copy);
	return rc;
}

static int dead_body(struct spool_env *env, MDB_txn *txn, struct spool_counters *c, void *p)
{
	struct dead_arg *a = p;
	a->done = 0;
	MDB_cursor *ev = NULL, *dc = NULL;
	int rc = 0;
	if (a->retry) {
		/* never reuse a sequence, even if the counters fell behind */
		uint64_t le, ld;
		rc = last_key(txn, env->dbi_events, &le);
		if (!rc)
			rc = last_key(txn, env->dbi_dead, &ld);
		if (rc)
			return rc;
		if (le >= c->next_seq)
			c->next_seq = le + 1;
		if (ld >= c->next_seq)
			c->next_seq = ld + 1;
		rc = mdb_cursor_open(txn, env->dbi_events, &ev);
		if (rc)
			return rc;
	}
	rc = mdb_cursor_open(txn, env->dbi_dead, &dc);
	if (rc)
		goto out;
	MDB_val k, v;
	size_t i = 0;
	unsigned char kb[8];
	if (a->all) {
		rc = mdb_cursor_get(dc, &k, &v, MDB_FIRST);
	} else if (a->n > 0) {
		spool_put_be64(kb, a->seqs[0]);
		k = (MDB_val){8, kb};
		rc = mdb_cursor_get(dc, &k, &v, MDB_SET_KEY);
	} else {
		rc = MDB_NOTFOUND;
	}
	/* in key order: retried records keep their order relative to each other */
	for (;;) {
		if (a->all && rc == MDB_NOTFOUND)
			break; /* past the last one */
		if (rc == 0) {
			int moved = a->retry ? requeue(ev, c, &v) : 0;
			if (moved < 0 || moved > 1) {
				rc = moved;
				break;
			}
			if (moved == 0) {
				rc = mdb_cursor_del(dc, 0);
				if (rc)
					break;
				a->done++;
			}
		} else if (rc != MDB_NOTFOUND) {
			break;
		}
		if (a->all) {
			rc = mdb_cursor_get(dc, &k, &v, MDB_NEXT);
			if (rc == MDB_NOTFOUND)
				break;
			continue;
		}
		if (++i >= a->n)
			break;
		spool_put_be64(kb, a->seqs[i]);
		k = (MDB_val){8, kb};
		rc = mdb_cursor_get(dc, &k, &v, MDB_SET_KEY);
	}
	if (rc == MDB_NOTFOUND)
		rc = 0;
out:
	if (dc)
		mdb_cursor_close(dc);
	if (ev)
		mdb_cursor_close(ev);
	return rc;
}

static int dead_op(struct spool *s, const uint64_t *seqs, size_t n, bool all, bool retry,
                   uint64_t *done)
{
	if (done)
		*done = 0;
	int rc = guard(s);
	if (rc)
		return rc;
	if ((n && !seqs) || (all && n))
		return -EINVAL;
	if (!all && n == 0)
		return 0;
	uint64_t *sorted = NULL;
	if (!all && !(sorted = sorted_unique(seqs, &n)))
		return -ENOMEM;
	struct dead_arg a = {sorted, n, all, retry, 0};
	rc = spool_txn_write(s->env, dead_body, &a);
	free(sorted);
	if (done)
		*done = rc ? 0 : a.done;
	return rc;
}

int spool_dead_retry(struct spool *s, const uint64_t *seqs, size_t n, bool all, uint64_t *moved)
{
	return dead_op(s, seqs, n, all, true, moved);
}

int spool_dead_purge(struct spool *s, const uint64_t *seqs, size_t n, bool all, uint64_t *purged)
{
	return dead_op(s, seqs, n, all, false, purged);
}

/* ---- verify ---- */

static void add_problem(struct spool_verify_report *r, unsigned flag, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void add_problem(struct spool_verify_report *r, unsigned flag, const char *fmt, ...)
{
	r->problems |= flag;
	size_t used = strlen(r->text);
	if (used + 1 >= sizeof(r->text))
		return;
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(r->text + used, sizeof(r->text) - used, fmt, ap);
	va_end(ap);
	used = n > 0 ? used + (size_t)n : used;
	if (used + 1 < sizeof(r->text)) {
		r->text[used] = '\n';
		r->text[used + 1] = '\0';
	} else {
		r->text[sizeof(r->text) - 1] = '\0';
	}
}

/* What the counters should say, from the records themselves. */
struct tally {
	uint64_t records, bytes, sev[SPOOL_NSEV], max_seq;
	uint64_t bad, bad_keys, first_bad;
	const char *first_reason;
};

static int tally_events(struct spool_env *env, MDB_txn *txn, struct tally *t)
{
	memset(t, 0, sizeof(*t));
	MDB_cursor *cur;
	int rc = mdb_cursor_open(txn, env->dbi_events, &cur);
	if (rc)
		return rc;
	MDB_val k, v;
	rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
	while (rc == 0) {
		const unsigned char *p = v.mv_data;
		const char *why = NULL;
		uint64_t seq = k.mv_size == 8 ? spool_get_be64(k.mv_data) : 0;
		t->records++;
		t->bytes += v.mv_size;
		if (v.mv_size >= SPOOL_REC_HDR && p[1] < SPOOL_NSEV)
			t->sev[p[1]]++;
		if (k.mv_size != 8) {
			t->bad_keys++;
		} else {
			if (seq > t->max_seq)
				t->max_seq = seq;
			if (spool_rec_check(v.mv_data, v.mv_size, &why) != 0) {
				if (t->bad++ == 0) {
					t->first_bad = seq;
					t->first_reason = why;
				}
			}
		}
		rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
	}
	mdb_cursor_close(cur);
	return rc == MDB_NOTFOUND ? 0 : rc;
}

static int verify_read(struct spool_env *env, struct spool_verify_report *r)
{
	MDB_txn *txn;
	int rc = spool_env_begin(env, true, &txn);
	if (rc)
		return rc;
	struct spool_counters c;
	struct tally t;
	MDB_stat st;
	rc = spool_counters_load(env, txn, &c);
	if (!rc)
		rc = tally_events(env, txn, &t);
	if (!rc)
		rc = mdb_stat(txn, env->dbi_events, &st);
	/* dead letters */
	uint64_t dead_max = 0;
	if (!rc) {
		MDB_cursor *cur;
		rc = mdb_cursor_open(txn, env->dbi_dead, &cur);
		if (!rc) {
			MDB_val k, v;
			rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
			while (rc == 0) {
				struct spool_record rec;
				r->dead++;
				if (k.mv_size == 8 && spool_get_be64(k.mv_data) > dead_max)
					dead_max = spool_get_be64(k.mv_data);
				if (k.mv_size != 8 ||
				    spool_dead_decode(v.mv_data, v.mv_size, &rec) != 0) {
					if (r->bad_dead++ == 0)
						r->first_bad_dead =
						    k.mv_size == 8 ? spool_get_be64(k.mv_data) : 0;
				}
				rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
			}
			mdb_cursor_close(cur);
			if (rc == MDB_NOTFOUND)
				rc = 0;
		}
	}
	mdb_txn_abort(txn);
	spool_env_end(env);
	if (rc)
		return spool_map_mdb_error(rc);

	r->records = t.records;
	r->bad = t.bad + t.bad_keys;
	r->first_bad_seq = t.first_bad;
	r->pending_bytes = t.bytes;
	memcpy(r->sev, t.sev, sizeof(r->sev));
	r->max_seq = t.max_seq > dead_max ? t.max_seq : dead_max;
	r->stored_pending_bytes = c.pending_bytes;
	memcpy(r->stored_sev, c.sev, sizeof(r->stored_sev));
	r->stored_next_seq = c.next_seq;

	if (t.bad)
		add_problem(r, SPOOL_VERIFY_BAD_RECORDS,
		            "%" PRIu64
		            " pending record(s) fail their check; the first, seq %" PRIu64 ": %s",
		            t.bad, t.first_bad, t.first_reason ? t.first_reason : "?");
	if (t.bad_keys)
		add_problem(r, SPOOL_VERIFY_BAD_RECORDS,
		            "%" PRIu64 " pending record(s) have a key that is not a sequence",
		            t.bad_keys);
	uint64_t sev_sum = 0;
	for (int i = 0; i < SPOOL_NSEV; i++)
		sev_sum += c.sev[i];
	if (st.ms_entries != t.records || sev_sum != t.records)
		add_problem(r, SPOOL_VERIFY_PENDING_COUNT,
		            "pending count: the severity counters add up to %" PRIu64
		            ", the database holds %" PRIu64 " records",
		            sev_sum, t.records);
	if (c.pending_bytes != t.bytes)
		add_problem(r, SPOOL_VERIFY_PENDING_BYTES,
		            "pending_bytes: counter %" PRIu64 ", records hold %" PRIu64,
		            c.pending_bytes, t.bytes);
	for (int i = 0; i < SPOOL_NSEV; i++)
		if (c.sev[i] != t.sev[i])
			add_problem(r, SPOOL_VERIFY_SEV_COUNTS,
			            "%s count: counter %" PRIu64 ", records %" PRIu64,
			            spool_severity_name(i), c.sev[i], t.sev[i]);
	if (r->max_seq && c.next_seq <= r->max_seq)
		add_problem(r, SPOOL_VERIFY_NEXT_SEQ,
		            "next_seq %" PRIu64 " is not above the highest key %" PRIu64,
		            c.next_seq, r->max_seq);
	if (r->bad_dead)
		add_problem(r, SPOOL_VERIFY_BAD_DEAD,
		            "%" PRIu64 " dead letter(s) cannot be decoded (first key %" PRIu64
		            "); repair leaves them, dead purge removes them",
		            r->bad_dead, r->first_bad_dead);
	return 0;
}

/* Moves the value at the cursor to `dead` as a corrupt record. */
static int move_corrupt(struct spool_env *env, MDB_txn *txn, MDB_cursor *cur, const MDB_val *k,
                        const MDB_val *v, const char *why)
{
	size_t rlen = strnlen(why, SPOOL_REASON_MAX);
	size_t size = spool_dead_encode_size(rlen, v->mv_size);
	unsigned char *rec = malloc(v->mv_size ? v->mv_size : 1);
	unsigned char *key = malloc(k->mv_size ? k->mv_size : 1);
	if (!rec || !key) {
		free(rec);
		free(key);
		return ENOMEM;
	}
	memcpy(rec, v->mv_data, v->mv_size);
	memcpy(key, k->mv_data, k->mv_size);
	size_t reclen = v->mv_size;
	MDB_val dk = {k->mv_size, key};
	int rc = mdb_cursor_del(cur, 0);
	if (!rc) {
		MDB_val dv = {size, NULL};
		rc = mdb_put(txn, env->dbi_dead, &dk, &dv, MDB_RESERVE);
		if (!rc)
			spool_dead_encode(dv.mv_data, SPOOL_ECORRUPT, spool_now_us(), why, rlen,
			                  rec, reclen);
	}
	free(rec);
	free(key);
	return rc;
}

struct repair_arg {
	uint64_t moved;
};

static int repair_body(struct spool_env *env, MDB_txn *txn, struct spool_counters *c, void *p)
{
	struct repair_arg *a = p;
	a->moved = 0;
	MDB_cursor *cur;
	int rc = mdb_cursor_open(txn, env->dbi_events, &cur);
	if (rc)
		return rc;
	MDB_val k, v;
	rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
	while (rc == 0) {
		const char *why = NULL;
		if (k.mv_size != 8)
			why = "record key is not a sequence";
		else if (spool_rec_check(v.mv_data, v.mv_size, &why) != 0 && !why)
			why = "record fails its check";
		if (why) {
			rc = move_corrupt(env, txn, cur, &k, &v, why);
			if (rc)
				break;
			c->dead++;
			c->corrupt++;
			a->moved++;
		}
		rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
	}
	mdb_cursor_close(cur);
	if (rc != MDB_NOTFOUND)
		return rc;
	/* the counters, from what is left */
	struct tally t;
	rc = tally_events(env, txn, &t);
	if (rc)
		return rc;
	uint64_t ld;
	rc = last_key(txn, env->dbi_dead, &ld);
	if (rc)
		return rc;
	c->pending_bytes = t.bytes;
	memcpy(c->sev, t.sev, sizeof(c->sev));
	uint64_t top = t.max_seq > ld ? t.max_seq : ld;
	if (c->next_seq <= top)
		c->next_seq = top + 1;
	return 0;
}

/* ---- files set aside after a crash ---- */

/* A ring set aside as unreadable: "ring-" 16 hex digits ".bad". */
static bool bad_ring_name(const char *name, uint64_t *id)
{
	if (strncmp(name, "ring-", 5) != 0 || strlen(name) != 25 || strcmp(name + 21, ".bad") != 0)
		return false;
	char hex[17], *end;
	memcpy(hex, name + 5, 16);
	hex[16] = '\0';
	*id = strtoull(hex, &end, 16);
	return *end == '\0';
}

#define SET_ASIDE_PREFIX "data.mdb.unfinished-"
#define VERIFY_LEFTOVERS (SPOOL_VERIFY_BAD_RINGS | SPOOL_VERIFY_SET_ASIDE)
#define LEFTOVER_LINES 8 /* named one by one; the rest counted */

/* Names in the report the rings set aside as unreadable (rings/ring-*.bad,
 * with what their salvage recorded) and the data.mdb files of a creation
 * cut short (data.mdb.unfinished-*); with repair, removes them. */
static int check_leftovers(struct spool_env *env, const char *dir, bool repair,
                           struct spool_verify_report *r)
{
	char path[4400];
	uint64_t lines = 0;
	snprintf(path, sizeof(path), "%s/rings", dir);
	DIR *d = opendir(path);
	struct dirent *de;
	while (d && (de = readdir(d)) != NULL) {
		uint64_t id, recovered, torn;
		int64_t when;
		if (!bad_ring_name(de->d_name, &id))
			continue;
		r->bad_rings++;
		bool known = spool_stage_bad_outcome(env, id, &recovered, &torn, &when) == 0;
		if (lines++ >= LEFTOVER_LINES)
			r->problems |= SPOOL_VERIFY_BAD_RINGS;
		else if (known)
			add_problem(r, SPOOL_VERIFY_BAD_RINGS,
			            "rings/%s: a ring left unreadable by a crash; its sound entries "
			            "were recovered once: %" PRIu64 " moved into the queue, %" PRIu64
			            " counted as torn; --repair removes the file",
			            de->d_name, recovered, torn);
		else
			add_problem(r, SPOOL_VERIFY_BAD_RINGS,
			            "rings/%s: a ring set aside as unreadable by an earlier version, "
			            "its entries never recovered; --repair removes the file",
			            de->d_name);
		if (!repair)
			continue;
		snprintf(path, sizeof(path), "%s/rings/%s", dir, de->d_name);
		int rc = unlink(path) == 0 ? 0 : -errno;
		if (!rc) {
			r->files_removed++;
			rc = spool_stage_bad_forget(env, id);
		}
		if (rc) {
			closedir(d);
			return rc;
		}
	}
	if (d)
		closedir(d);
	d = opendir(dir);
	if (!d)
		return -errno;
	while ((de = readdir(d)) != NULL) {
		if (strncmp(de->d_name, SET_ASIDE_PREFIX, sizeof(SET_ASIDE_PREFIX) - 1) != 0)
			continue;
		r->set_aside++;
		if (lines++ >= LEFTOVER_LINES)
			r->problems |= SPOOL_VERIFY_SET_ASIDE;
		else
			add_problem(r, SPOOL_VERIFY_SET_ASIDE,
			            "%s: a data.mdb whose creation was cut short (e.g. by a power "
			            "loss), set aside when the spool was created anew; it never held "
			            "an event; --repair removes it",
			            de->d_name);
		if (!repair)
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		if (unlink(path) != 0) {
			int e = errno;
			closedir(d);
			return -e;
		}
		r->files_removed++;
	}
	closedir(d);
	if (lines > LEFTOVER_LINES)
		add_problem(r, 0, "and %" PRIu64 " more such file(s)", lines - LEFTOVER_LINES);
	return 0;
}

int spool_verify(const char *dir, bool repair, struct spool_verify_report *out, char *errbuf,
                 size_t errlen)
{
	if (errbuf && errlen)
		errbuf[0] = '\0';
	if (!dir || !out)
		return -EINVAL;
	memset(out, 0, sizeof(*out));
	char data[4200];
	struct stat st;
	if (snprintf(data, sizeof(data), "%s/data.mdb", dir) >= (int)sizeof(data))
		return -ENAMETOOLONG;
	if (stat(data, &st) != 0) {
		int e = errno;
		spool_errf(errbuf, errlen, "%s: no spool there: %s", dir, strerror(e));
		return -e;
	}
	/* The environment alone: spool_open() would also move dead producers'
	 * rings into the queue, and verify changes nothing unless asked to. */
	struct spool_options opt;
	spool_options_init(&opt);
	struct spool_env *env;
	int rc = spool_env_acquire(dir, &opt, &env, errbuf, errlen);
	if (rc)
		return rc;
	rc = verify_read(env, out);
	if (!rc)
		rc = check_leftovers(env, dir, false, out);
	if (rc) {
		spool_errf(errbuf, errlen, "%s: cannot read the spool: %s", dir,
		           spool_strerror(rc));
		goto out;
	}
	if (repair && (out->problems & ~(unsigned)(SPOOL_VERIFY_BAD_DEAD | VERIFY_LEFTOVERS))) {
		struct repair_arg a = {0};
		rc = spool_txn_write(env, repair_body, &a);
		if (rc) {
			spool_errf(errbuf, errlen, "%s: repair failed: %s", dir,
			           spool_strerror(rc));
			goto out;
		}
		out->repaired = a.moved;
		out->counters_rewritten = true;
	}
	if (repair && (out->problems & VERIFY_LEFTOVERS)) {
		struct spool_verify_report *again = calloc(1, sizeof(*again));
		rc = again ? check_leftovers(env, dir, true, again) : -ENOMEM;
		out->files_removed = again ? again->files_removed : 0;
		free(again);
		if (rc)
			spool_errf(errbuf, errlen, "%s: cannot remove the files set aside: %s", dir,
			           spool_strerror(rc));
	}
out:
	spool_txn_release_env(env);
	return rc;
}

/* ---- compact ---- */

static int fsync_dir(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	int rc = fsync(fd) == 0 ? 0 : -errno;
	close(fd);
	return rc;
}

/* Ring files left in SPOOL/rings: 1 if any, 0 if none, negative errno. */
static int rings_present(const char *dir, char *name, size_t len)
{
	char path[4200];
	snprintf(path, sizeof(path), "%s/rings", dir);
	DIR *d = opendir(path);
	if (!d)
		return errno == ENOENT ? 0 : -errno;
	int found = 0;
	struct dirent *de;
	uint64_t id;
	while ((de = readdir(d)) != NULL) {
		/* a .bad ring was salvaged once and is final: nothing to move */
		if (strncmp(de->d_name, "ring-", 5) == 0 && !bad_ring_name(de->d_name, &id)) {
			snprintf(name, len, "%s", de->d_name);
			found = 1;
			break;
		}
	}
	closedir(d);
	return found;
}

int spool_compact(const char *dir, uint64_t *before, uint64_t *after, char *errbuf, size_t errlen)
{
	if (errbuf && errlen)
		errbuf[0] = '\0';
	if (before)
		*before = 0;
	if (after)
		*after = 0;
	if (!dir || !*dir)
		return -EINVAL;
	char data[4200], tmp[4200], users[4200], lockf[4200];
	if (snprintf(data, sizeof(data), "%s/data.mdb", dir) >= (int)sizeof(data))
		return -ENAMETOOLONG;
	snprintf(tmp, sizeof(tmp), "%s/data.mdb.compact", dir);
	snprintf(users, sizeof(users), "%s/users.lock", dir);
	snprintf(lockf, sizeof(lockf), "%s/lock.mdb", dir);
	struct stat st;
	if (stat(data, &st) != 0) {
		int e = errno;
		spool_errf(errbuf, errlen, "%s: no spool there: %s", dir, strerror(e));
		return -e;
	}
	uint64_t size0 = (uint64_t)st.st_size;

	/* Everyone who has the spool open holds users.lock shared; taking it
	 * exclusively proves we are alone, and keeps newcomers out (their
	 * open fails with "being compacted") until the swap is done. */
	mode_t fmode = spool_file_mode(dir);
	int ufd = spool_open_create(users, O_RDWR | O_CLOEXEC, fmode);
	if (ufd < 0) {
		int e = -ufd;
		spool_errf(errbuf, errlen, "%s: %s", users, strerror(e));
		return -e;
	}
	struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
	if (fcntl(ufd, F_OFD_SETLK, &fl) != 0) {
		int e = errno;
		close(ufd);
		if (e == EAGAIN || e == EACCES) {
			spool_errf(errbuf, errlen,
			           "%s: the spool is in use (a producer, the agent or another "
			           "spoolctl has it open); stop them and try again",
			           dir);
			return -EBUSY;
		}
		spool_errf(errbuf, errlen, "%s: cannot lock: %s", users, strerror(e));
		return -e;
	}
	char ring[256];
	int rc = rings_present(dir, ring, sizeof(ring));
	if (rc != 0) {
		close(ufd);
		if (rc < 0) {
			spool_errf(errbuf, errlen, "%s/rings: %s", dir, strerror(-rc));
			return rc;
		}
		spool_errf(errbuf, errlen,
		           "%s: rings/%s holds records of a producer that did not close the "
		           "spool; open the spool once (e.g. `spoolctl status`) to move them into "
		           "the queue, then compact",
		           dir, ring);
		return -EBUSY;
	}

	MDB_env *mdb = NULL;
	int fd = -1;
	rc = mdb_env_create(&mdb);
	if (!rc)
		rc = mdb_env_set_maxdbs(mdb, 4);
	if (!rc)
		rc = mdb_env_open(mdb, dir, MDB_NOTLS, 0600);
	if (rc) {
		spool_errf(errbuf, errlen, "%s: cannot open the spool database: %s", dir,
		           mdb_strerror(rc));
		rc = spool_map_mdb_error(rc);
		goto fail;
	}
	unlink(tmp); /* a leftover of an interrupted compaction */
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, fmode);
	if (fd < 0 || (rc = spool_fix_mode(fd, fmode)) != 0) {
		rc = fd < 0 ? -errno : rc;
		spool_errf(errbuf, errlen, "%s: %s", tmp, strerror(-rc));
		goto fail;
	}
	rc = mdb_env_copyfd2(mdb, fd, MDB_CP_COMPACT);
	if (rc) {
		spool_errf(errbuf, errlen, "%s: compacting copy failed: %s", tmp, mdb_strerror(rc));
		rc = spool_map_mdb_error(rc);
		goto fail;
	}
	if (fsync(fd) != 0 || fstat(fd, &st) != 0) {
		rc = -errno;
		spool_errf(errbuf, errlen, "%s: %s", tmp, strerror(-rc));
		goto fail;
	}
	close(fd);
	fd = -1;
	mdb_env_close(mdb);
	mdb = NULL;
	if (rename(tmp, data) != 0) {
		rc = -errno;
		spool_errf(errbuf, errlen, "%s: cannot replace data.mdb: %s", tmp, strerror(-rc));
		goto fail;
	}
	/* the lock file describes the old file's readers; nobody has it open */
	unlink(lockf);
	rc = fsync_dir(dir);
	if (rc) {
		spool_errf(errbuf, errlen, "%s: %s", dir, strerror(-rc));
		close(ufd);
		return rc;
	}
	close(ufd);
	if (before)
		*before = size0;
	if (after)
		*after = (uint64_t)st.st_size;
	return 0;
fail:
	if (fd >= 0) {
		close(fd);
		unlink(tmp);
	}
	if (mdb)
		mdb_env_close(mdb);
	close(ufd);
	return rc;
}
