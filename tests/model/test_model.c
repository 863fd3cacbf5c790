/* test_model.c — a model-based test of the spool: random sequences of
 * appends (each durability mode), reads, acks, dead letters, dead-letter
 * retry and purge, close and reopen, producers killed with SIGKILL and a
 * full disk, with the spool compared against an in-memory model after every
 * step (model.c).
 *
 * Each round is one seed, run in its own Check-forked process with the
 * spool on a private tmpfs (so the disk can be filled).  The seed of every
 * round is printed; SPOOL_TEST_SEED=<seed> MODEL_SEEDS=1 replays a round.
 * MODEL_SEEDS (default 4) and MODEL_STEPS (default 400) set the size; the
 * summary line is
 *   FIGURES scenario=model rounds=.. steps=.. events=.. lost=.. duplicates=.. crashes=..
 * A kill lands at a moment the scheduler picks, so a replay follows the same
 * operations but may see a crash cut at another record. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check_main.h"
#include "ops.h"
#include "testutil.h"

static unsigned g_seeds, g_steps;
static uint64_t g_master;
static char g_figfile[PATH_MAX];

static unsigned env_uint(const char *name, unsigned dflt)
{
	const char *e = getenv(name);
	if (e && *e) {
		long v = strtol(e, NULL, 0);
		if (v > 0)
			return (unsigned)v;
	}
	return dflt;
}

static uint64_t round_seed(int i)
{
	if (i == 0)
		return g_master;
	uint64_t st = g_master ^ (uint64_t)i * 0x9e3779b97f4a7c15u;
	return tu_rand(&st);
}

/* Picks the next operation: weights per cent, shifted toward acks when
 * the queue grows long and toward dead-letter work when there is some. */
static void step(struct model *m)
{
	uint64_t r = model_rand(m, 0, 999);
	if (m->npend > 300 && r < 300) {
		op_ack(m, false);
		return;
	}
	r = r % 1000;
	if (r < 200)
		op_append(m, false);
	else if (r < 300)
		op_append(m, true);
	else if (r < 370)
		op_read(m);
	else if (r < 490)
		op_ack(m, false);
	else if (r < 530)
		op_settle(m);
	else if (r < 580)
		op_dead_letter(m);
	else if (r < 600)
		op_ack(m, true);
	else if (r < 630)
		op_read_dead(m);
	else if (r < 665)
		op_dead_retry(m, false);
	else if (r < 685)
		op_dead_retry(m, true);
	else if (r < 740)
		op_sync(m);
	else if (r < 810)
		op_reopen(m);
	else if (r < 900)
		op_kill(m);
	else if (r < 925 && !m->full)
		op_full_on(m);
	else if (r < 945)
		op_bad_input(m);
	else
		op_append(m, false);
}

/* At the end: everything promised is there after a clean close and a
 * reopen, and the queue drains to empty. */
static void finish(struct model *m)
{
	m->step++;
	if (m->full)
		op_full_off(m);
	model_op(m, "final close, reopen, drain");
	ops_close_current(m);
	MCHECK(m, ops_open(m, SPOOL_SYNC), "final open failed");
	model_check(m);
	for (size_t k = 0; k < m->nsrc; k++)
		MCHECK(m,
		       !m->src[k].dead_ring &&
		           (!m->src[k].open || m->src[k].head >= m->src[k].promised),
		       "source %zu still holds promised records at the end", k);
	uint64_t acked = tu_ack_all(m->s);
	for (size_t i = 0; i < m->npend; i++)
		model_ev(m, m->pend[i])->state = EV_ACKED;
	m->acked += acked;
	MCHECK(m, acked == m->npend, "draining acked %" PRIu64 " of %zu", acked, m->npend);
	m->npend = 0;
	uint64_t purged = 0;
	MCHECK(m, spool_dead_purge(m->s, NULL, 0, true, &purged) == 0 && purged == m->ndead,
	       "purging all dead letters: %" PRIu64 " of %zu", purged, m->ndead);
	m->ndead = 0;
	model_check(m);
	struct spool_stats st = tu_stats(m->s);
	MCHECK(m, st.pending == 0 && st.dead == 0, "not empty after draining");
	MCHECK(m, spool_close(m->s) == 0, "final close failed");
	m->s = NULL;
}

START_TEST(test_model_round)
{
	uint64_t seed = round_seed(_i);
	printf("model round %d: seed %" PRIu64 " (replay: SPOOL_TEST_SEED=%" PRIu64
	       " MODEL_SEEDS=1), %u steps\n",
	       _i, seed, seed, g_steps);
	fflush(stdout);
	struct model *m = calloc(1, sizeof(*m));
	ck_assert_ptr_nonnull(m);
	model_init(m, seed);
	m->figfile = g_figfile;
	tu_mkdtemp(m->base, sizeof(m->base), "model");
	char mnt[PATH_MAX];
	tu_join(mnt, sizeof(mnt), m->base, "mnt");
	ck_assert_int_eq(mkdir(mnt, 0700), 0);
	m->tmpfs = tu_private_tmpfs(mnt, "size=32m") == 0;
	tu_join(m->dir, sizeof(m->dir), mnt, "spool");
	tu_join(m->filler, sizeof(m->filler), mnt, "filler");

	model_op(m, "open");
	MCHECK(m, ops_open(m, ops_pick_mode(m)), "first open failed");
	model_check(m);
	for (unsigned i = 1; i <= g_steps; i++) {
		m->step = i;
		step(m);
		if (m->full && --m->full_left == 0)
			op_full_off(m);
		else if (m->full)
			model_note(m, "disk full for %u more steps", m->full_left);
		ops_ensure(m);
		model_check(m);
	}
	finish(m);
	printf("model round %d: %" PRIu64 " events appended, %" PRIu64 " kills, %" PRIu64
	       " full disks, %" PRIu64 " lost to buffered crashes as documented, %" PRIu64
	       " checks\n",
	       _i, m->f_events, m->f_crashes, m->f_full, m->f_window_lost, m->f_checks);
	m->step = g_steps; /* the figures count the random steps */
	model_save_figures(m);
	if (m->tmpfs)
		umount2(mnt, MNT_DETACH);
	tu_rmrf(m->base);
	model_free(m);
	free(m);
}
END_TEST

int main(void)
{
	g_steps = env_uint("MODEL_STEPS", 400);
	g_seeds = env_uint("MODEL_SEEDS", 4);
	g_master = tu_seed("model");
	snprintf(g_figfile, sizeof(g_figfile), "/tmp/spool-model-figures-XXXXXX");
	int fd = mkstemp(g_figfile);
	if (fd < 0) {
		perror("mkstemp");
		return 1;
	}
	close(fd);

	Suite *s = suite_create("model");
	TCase *tc = tcase_create("model");
	tu_add_cleanup_fixture(tc);
	tcase_set_timeout(tc, 120.0 + g_steps * 0.5);
	tcase_add_loop_test(tc, test_model_round, 0, (int)g_seeds);
	suite_add_tcase(s, tc);
	int rc = tc_run_forked(s);

	/* sum the rounds (a failed round saved its figures up to the failure) */
	uint64_t rounds = 0, steps = 0, ev = 0, lost = 0, dups = 0, crashes = 0, window = 0,
	         full = 0, skips = 0;
	FILE *f = fopen(g_figfile, "r");
	unsigned st;
	uint64_t a, b, c, d, e, g, h;
	while (f && fscanf(f,
	                   "%u %" SCNu64 " %" SCNu64 " %" SCNu64 " %" SCNu64 " %" SCNu64 " %" SCNu64
	                   " %" SCNu64,
	                   &st, &a, &b, &c, &d, &e, &g, &h) == 8) {
		rounds++;
		steps += st;
		ev += a;
		lost += b;
		dups += c;
		crashes += d;
		window += e;
		full += g;
		skips += h;
	}
	if (f)
		fclose(f);
	unlink(g_figfile);
	printf("model: %" PRIu64 " of %u rounds ran; %" PRIu64 " full-disk phases%s; %" PRIu64
	       " events lost by buffered-mode crashes (allowed)\n",
	       rounds, g_seeds, full, skips ? " (some skipped)" : "", window);
	printf("FIGURES scenario=model rounds=%" PRIu64 " steps=%" PRIu64 " events=%" PRIu64
	       " lost=%" PRIu64 " duplicates=%" PRIu64 " crashes=%" PRIu64 "\n",
	       rounds, steps, ev, lost, dups, crashes);
	return rc;
}
