/* workload.c — the process the power-loss harness runs under the shim.
 *
 *   powerloss-workload MODE DIR PROMISES NEVENTS SEED
 *
 * MODE is sync, commit or buffered (the spool in that durability mode), or
 * raw-default, raw-nometasync, raw-nosync (LMDB opened directly with those
 * flags: the control, which must be able to fail).  It appends NEVENTS
 * events, acknowledges the oldest now and then (so freed pages are reused),
 * and writes to PROMISES (outside DIR, not tracked by the shim):
 *   P n c   event n is promised to survive a power loss at any crash point
 *           >= c (c: shim_points() once the call that promised it returned)
 *   A n c   an acknowledgement of event n began when c points were logged:
 *           from crash point c on, n may be gone
 * After each promise it calls shim_mark(), a crash point of its own, so a
 * power loss right after a promise is among the images (this is what gives
 * MDB_NOSYNC, which never syncs, any crash point at all). */
#include <dlfcn.h>
#include <errno.h>
#include <inttypes.h>
#include <lmdb.h>
#include <msgpack.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "pl_event.h"
#include "spool/spool.h"

static unsigned long (*points_fn)(void);
static unsigned long (*mark_fn)(void);
static FILE *g_prom;
static uint64_t g_rng;

static uint64_t rnd(void)
{
	/* splitmix64 */
	uint64_t z = (g_rng += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static void die(const char *what, const char *why)
{
	fprintf(stderr, "powerloss-workload: %s: %s\n", what, why);
	exit(2);
}

static void promise(const uint64_t *ns, size_t k)
{
	unsigned long c = points_fn();
	for (size_t i = 0; i < k; i++)
		fprintf(g_prom, "P %" PRIu64 " %lu\n", ns[i], c);
	mark_fn();
}

static void ack_begin(uint64_t n)
{
	fprintf(g_prom, "A %" PRIu64 " %lu\n", n, points_fn());
}

static void encode_event(msgpack_sbuffer *sb, uint64_t n, size_t padlen)
{
	static unsigned char pad[16384];
	for (size_t j = 0; j < padlen; j++)
		pad[j] = pl_pad_byte(n, j);
	msgpack_sbuffer_clear(sb);
	msgpack_packer pk;
	msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
	msgpack_pack_map(&pk, 2);
	msgpack_pack_str(&pk, 1);
	msgpack_pack_str_body(&pk, "n", 1);
	msgpack_pack_uint64(&pk, n);
	msgpack_pack_str(&pk, 3);
	msgpack_pack_str_body(&pk, "pad", 3);
	msgpack_pack_bin(&pk, padlen);
	msgpack_pack_bin_body(&pk, pad, padlen);
}

static void ack_oldest(struct spool *s, size_t k)
{
	struct spool_batch *b;
	int rc = spool_read_batch(s, 0, k, 0, &b);
	if (rc)
		die("spool_read_batch", spool_strerror(rc));
	uint64_t seqs[16];
	size_t m = spool_batch_count(b);
	const struct spool_record *r = spool_batch_records(b);
	for (size_t i = 0; i < m && i < 16; i++) {
		uint64_t n = 0;
		if (pl_event_decode(r[i].data, r[i].len, &n) != 0)
			die("read back", "an event does not decode");
		ack_begin(n);
		seqs[i] = r[i].seq;
	}
	spool_batch_release(b);
	fflush(g_prom);
	if (m && (rc = spool_ack(s, seqs, m < 16 ? m : 16, NULL)) != 0)
		die("spool_ack", spool_strerror(rc));
}

static int run_spool(enum spool_durability mode, const char *dir, uint64_t nevents)
{
	struct spool_options o;
	spool_options_init(&o);
	o.durability = mode;
	o.ring_bytes = 64 * 1024; /* small rings: the shim copies them at every sync */
	o.flush_batch = 16;
	char err[512];
	struct spool *s;
	int rc = spool_open(dir, &o, &s, err, sizeof(err));
	if (rc)
		die("spool_open", err);
	msgpack_sbuffer sb[3];
	for (int i = 0; i < 3; i++)
		msgpack_sbuffer_init(&sb[i]);
	uint64_t staged[64];
	size_t nstaged = 0;
	uint64_t next_sync = 1 + rnd() % 6;
	for (uint64_t n = 1; n <= nevents;) {
		size_t k = (rnd() % 6 == 0 && n + 2 <= nevents) ? 3 : 1;
		struct spool_input in[3];
		uint64_t ns[3];
		for (size_t i = 0; i < k; i++) {
			ns[i] = n + i;
			encode_event(&sb[i], ns[i], pl_pad_len(rnd()));
			in[i] = (struct spool_input){(int)(rnd() % 5), sb[i].data, sb[i].size};
		}
		rc = k == 1 ? spool_append(s, in[0].severity, in[0].data, in[0].len)
		            : spool_append_many(s, in, k);
		if (rc)
			die("spool_append", spool_strerror(rc));
		n += k;
		if (mode == SPOOL_SYNC) {
			promise(ns, k);
		} else {
			for (size_t i = 0; i < k; i++)
				staged[nstaged++] = ns[i];
			if (nstaged >= next_sync || nstaged > 56 || n > nevents) {
				if ((rc = spool_sync(s, -1, NULL)) != 0)
					die("spool_sync", spool_strerror(rc));
				promise(staged, nstaged);
				nstaged = 0;
				next_sync = 1 + rnd() % 6;
			}
			/* let the background committer run on its own now and then */
			if (rnd() % 4 == 0)
				nanosleep(&(struct timespec){0, (long)(rnd() % 3000) * 1000}, NULL);
		}
		if (rnd() % 8 == 0)
			ack_oldest(s, 1 + rnd() % 4);
	}
	fflush(g_prom);
	rc = spool_close(s);
	if (rc)
		die("spool_close", spool_strerror(rc));
	mark_fn();
	for (int i = 0; i < 3; i++)
		msgpack_sbuffer_destroy(&sb[i]);
	return 0;
}

static void mdb_check(int rc, const char *what)
{
	if (rc)
		die(what, mdb_strerror(rc));
}

static void put_be64(unsigned char *p, uint64_t v)
{
	for (int i = 7; i >= 0; i--, v >>= 8)
		p[i] = (unsigned char)v;
}

static int run_raw(unsigned flags, const char *dir, uint64_t nevents)
{
	MDB_env *env;
	mdb_check(mdb_env_create(&env), "mdb_env_create");
	mdb_check(mdb_env_set_mapsize(env, 64u << 20), "mdb_env_set_mapsize");
	mdb_check(mdb_env_open(env, dir, flags | MDB_NOTLS, 0600), "mdb_env_open");
	static unsigned char val[16384];
	uint64_t oldest = 1;
	for (uint64_t n = 1; n <= nevents; n++) {
		MDB_txn *txn;
		MDB_dbi dbi;
		mdb_check(mdb_txn_begin(env, NULL, 0, &txn), "mdb_txn_begin");
		mdb_check(mdb_dbi_open(txn, NULL, 0, &dbi), "mdb_dbi_open");
		size_t pad = pl_pad_len(rnd());
		for (int i = 0; i < 8; i++)
			val[i] = (unsigned char)(n >> (8 * i));
		for (size_t j = 0; j < pad; j++)
			val[8 + j] = pl_pad_byte(n, j);
		unsigned char kb[8];
		put_be64(kb, n);
		MDB_val k = {8, kb}, v = {8 + pad, val};
		mdb_check(mdb_put(txn, dbi, &k, &v, MDB_APPEND), "mdb_put");
		if (rnd() % 8 == 0) {
			uint64_t m = 1 + rnd() % 4;
			for (uint64_t i = 0; i < m && oldest < n; i++, oldest++) {
				ack_begin(oldest);
				put_be64(kb, oldest);
				MDB_val dk = {8, kb};
				int rc = mdb_del(txn, dbi, &dk, NULL);
				if (rc && rc != MDB_NOTFOUND)
					die("mdb_del", mdb_strerror(rc));
			}
			fflush(g_prom);
		}
		mdb_check(mdb_txn_commit(txn), "mdb_txn_commit");
		promise(&n, 1);
	}
	fflush(g_prom);
	mdb_env_close(env);
	mark_fn();
	return 0;
}

int main(int argc, char **argv)
{
	if (argc != 6) {
		fprintf(stderr, "usage: %s MODE DIR PROMISES NEVENTS SEED\n", argv[0]);
		return 2;
	}
	void *p = dlsym(RTLD_DEFAULT, "shim_points"), *q = dlsym(RTLD_DEFAULT, "shim_mark");
	if (!p || !q)
		die("shim", "not loaded (run under LD_PRELOAD=powerloss-shim)");
	memcpy(&points_fn, &p, sizeof(p));
	memcpy(&mark_fn, &q, sizeof(q));
	g_prom = fopen(argv[3], "w");
	if (!g_prom)
		die(argv[3], strerror(errno));
	uint64_t nevents = strtoull(argv[4], NULL, 10);
	g_rng = strtoull(argv[5], NULL, 0);
	const char *mode = argv[1], *dir = argv[2];
	int rc = 0;
	enum spool_durability d;
	if (strcmp(mode, "raw-default") == 0)
		rc = run_raw(0, dir, nevents);
	else if (strcmp(mode, "raw-nometasync") == 0)
		rc = run_raw(MDB_NOMETASYNC, dir, nevents);
	else if (strcmp(mode, "raw-nosync") == 0)
		rc = run_raw(MDB_NOSYNC, dir, nevents);
	else if (spool_durability_parse(mode, &d) == 0)
		rc = run_spool(d, dir, nevents);
	else
		die(mode, "unknown mode");
	if (fclose(g_prom) != 0)
		die(argv[3], strerror(errno));
	return rc;
}
