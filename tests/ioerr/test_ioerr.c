/* test_ioerr.c — I/O errors made to happen at the Nth call (issue 7).
 *
 * For each durability mode, each injected fault (fdatasync EIO; pwrite64 and
 * writev, LMDB's meta and data page writes, with EIO and ENOSPC) and each N
 * of a sweep, ioerr-workload runs under
 *     strace -f -o /dev/null -e inject=SYSCALL:error=ERR:when=N
 * on a fresh spool; then this process opens the spool without faults and
 * checks: it opens; every promised counter is stored exactly once (in commit
 * mode every append that returned 0, which the ring keeps across a crash);
 * no counter is stored twice, and none whose append failed; spool_verify
 * finds nothing wrong; the workload ended (no crash, no hang) and was
 * promised an append after its last error (it works again once the fault
 * cleared).  Each (mode, fault) sweep must have reported an error in at
 * least one run (a given N may hit a call outside the commit path, or none),
 * except the staged modes' single-call sweep: their flusher retries a failed
 * commit at once and spool_sync never sees a one-off fault, which is
 * allowed (the record is kept and committed later).  The burst sweep makes
 * the fault outlast spool_sync's timeout so that the staged modes report it.
 *
 * strace's when=N fails the Nth call only, so the calls after it succeed.
 * Without strace, or where it cannot trace (ptrace refused), the test is
 * skipped (exit 77), never failed.  IOERR_NMAX overrides the sweep's top N.
 * A second test case (test_malloc) does the same checks with malloc made to
 * fail at random by fiu-run; it passes with a note if fiu-run is missing. */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../spool/testutil.h"
#include "check_main.h"
#include "strace_util.h"

#ifndef IOERR_WORKLOAD
#error "IOERR_WORKLOAD must name the workload binary"
#endif

#define EVENTS 20	/* appends a run makes (more after an error) */
/* The burst sweep fails calls N..N+len-1 with spool_sync's timeout at
 * 0.25 s.  Sync mode: 4 calls (4 appends fail).  The staged modes: 5 calls,
 * each also held 20 ms (strace's delay_exit).  The flusher backs off after
 * each failed commit (0.1 s doubling, capped at 2 s) whatever callers wait
 * for it, so 5 failures take about 3 s: longer than the sync timeout (the
 * caller is told) and well inside RUN_LIMIT (the caller sees recovery).
 * Swept over fewer N (1, 9, 17) to keep the test short. */
#define BURST_SYNC 4
#define BURST_STAGED 5
#define BURST_STAGED_DELAY ":delay_exit=20000"
#define BURST_STAGED_STEP 8
#define RUN_LIMIT 8	/* seconds the workload keeps trying */
#define HANG_LIMIT 40	/* seconds before a run counts as hung */
#define MAXN 4096	/* counters tracked per run */

struct fault {
	const char *sys;
	const char *err;
};

static const struct fault faults[] = {
	{"fdatasync", "EIO"},
	{"pwrite64", "EIO"},
	{"pwrite64", "ENOSPC"},
	{"writev", "EIO"},
	{"writev", "ENOSPC"},
};
#define NFAULTS (sizeof(faults) / sizeof(faults[0]))

static int sweep_max(void)
{
	const char *e = getenv("IOERR_NMAX");
	int n = e ? atoi(e) : 24;
	return n > 0 ? n : 24;
}

/* What one workload run said. */
struct outcome {
	unsigned char appended[MAXN + 1], promised[MAXN + 1], failed[MAXN + 1];
	uint64_t maxn;
	unsigned errors; /* F, S, O lines and nonzero C */
	bool recovered, ended;
};

static void parse(const char *path, struct outcome *o)
{
	memset(o, 0, sizeof(*o));
	FILE *f = fopen(path, "r");
	if (!f)
		return;
	char line[256];
	while (fgets(line, sizeof(line), f)) {
		unsigned long long n = 0;
		int rc = 0;
		if (sscanf(line, "A %llu", &n) == 1 && n <= MAXN) {
			o->appended[n] = 1;
		} else if (sscanf(line, "P %llu", &n) == 1 && n <= MAXN) {
			o->promised[n] = 1;
		} else if (sscanf(line, "F %llu %d", &n, &rc) == 2 && n <= MAXN) {
			o->failed[n] = 1;
			o->errors++;
		} else if (line[0] == 'S' || line[0] == 'O') {
			o->errors++;
		} else if (sscanf(line, "C %d", &rc) == 1) {
			if (rc)
				o->errors++;
		} else if (strncmp(line, "R ok", 4) == 0) {
			o->recovered = true;
		} else if (strncmp(line, "END", 3) == 0) {
			o->ended = true;
		}
		if (n > o->maxn)
			o->maxn = n;
	}
	fclose(f);
}

struct tally {
	unsigned runs, runs_with_errors, recovered, promised_checked;
	unsigned problems;
	unsigned lost, dups, crashes; /* promised events missing, stored twice; runs killed */
	char report[8192];
	size_t used;
};

static void problem(struct tally *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void problem(struct tally *t, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	fprintf(stderr, "ioerr PROBLEM: %s\n", msg);
	t->problems++;
	if (t->used < sizeof(t->report) - 1) {
		int w = snprintf(t->report + t->used, sizeof(t->report) - t->used, "%s\n", msg);
		if (w > 0)
			t->used += (size_t)w;
		if (t->used >= sizeof(t->report))
			t->used = sizeof(t->report) - 1;
	}
}

/* One run: a fresh spool, the workload under `injector` (a command prefix),
 * then the checks without faults.  `repro` names the run in problems. */
static void run_checked(struct tally *t, enum spool_durability mode, const char *tag,
			const char *injector, const char *repro, const char *sync_timeout,
			int64_t producer, struct outcome *o)
{
	const char *mname = tu_mode_label(mode);
	char dir[4096], spool[4200], out[4200], err[4200], cmd[16384];
	tu_mkdtemp(dir, sizeof(dir), tag);
	tu_join(spool, sizeof(spool), dir, "spool");
	tu_join(out, sizeof(out), dir, "out");
	tu_join(err, sizeof(err), dir, "err");
	/* created here, without faults: the sweep is about appending */
	struct spool_options opt;
	tu_opts(&opt, mode);
	spool_close(tu_open(spool, &opt));

	snprintf(cmd, sizeof(cmd),
		 "exec timeout -s KILL %d %s '%s' '%s' %s %" PRId64 " %d %d %s >'%s' 2>'%s'",
		 HANG_LIMIT, injector, IOERR_WORKLOAD, spool, mname, producer, EVENTS, RUN_LIMIT,
		 sync_timeout, out, err);
	int st = system(cmd);
	t->runs++;
	parse(out, o);
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
		t->crashes++;
		problem(t, "%s: workload status %d (%s)", repro, st,
			WIFEXITED(st) && WEXITSTATUS(st) == 137 ? "hung: killed by timeout"
								: "crashed or failed");
	} else if (!o->ended) {
		problem(t, "%s: workload output has no END line", repro);
	}
	if (o->errors)
		t->runs_with_errors++;
	if (o->ended && !o->recovered)
		problem(t, "%s: nothing promised after the last error (no recovery)", repro);
	if (o->recovered)
		t->recovered++;

	char ebuf[512] = "";
	struct spool *s = NULL;
	int rc = spool_open(spool, &opt, &s, ebuf, sizeof(ebuf));
	if (rc != 0) {
		problem(t, "%s: reopen without faults failed: %d %s: %s", repro, rc,
			spool_strerror(rc), ebuf);
		return;
	}
	struct tu_rec *recs = NULL;
	int rrc = 0;
	size_t nrec = tu_read_all_nock(s, false, 0, &recs, &rrc);
	if (nrec == (size_t)-1) {
		problem(t, "%s: reading back failed: %d %s", repro, rrc, spool_strerror(rrc));
		spool_close(s);
		return;
	}
	static unsigned short seen[MAXN + 1];
	memset(seen, 0, sizeof(seen));
	for (size_t i = 0; i < nrec; i++) {
		struct tu_event ev;
		if (tu_decode(recs[i].data, recs[i].len, &ev) != 0 || ev.p != producer ||
		    ev.n == 0 || ev.n > MAXN) {
			problem(t, "%s: stored record seq %" PRIu64 " is not one of the run's events",
				repro, recs[i].seq);
			continue;
		}
		seen[ev.n]++;
	}
	tu_recs_free(recs, nrec);
	for (uint64_t c = 1; c <= MAXN; c++) {
		bool promised = o->promised[c] || (mode == SPOOL_COMMIT && o->appended[c]);
		if (promised)
			t->promised_checked++;
		if (promised && seen[c] == 0) {
			t->lost++;
			problem(t, "%s: promised event n=%" PRIu64 " LOST", repro, c);
		}
		if (seen[c] > 1) {
			t->dups++;
			problem(t, "%s: event n=%" PRIu64 " stored %u times", repro, c, seen[c]);
		}
		if (o->failed[c] && seen[c])
			problem(t, "%s: event n=%" PRIu64 " stored although its append failed", repro,
				c);
		if (seen[c] && !o->appended[c] && !o->failed[c])
			problem(t, "%s: event n=%" PRIu64 " stored but never appended", repro, c);
	}
	rc = spool_close(s);
	if (rc != 0)
		problem(t, "%s: closing the reopened spool: %d %s", repro, rc, spool_strerror(rc));
	struct spool_verify_report vr;
	rc = spool_verify(spool, false, &vr, ebuf, sizeof(ebuf));
	if (rc != 0)
		problem(t, "%s: spool_verify could not run: %d %s", repro, rc, ebuf);
	else if (vr.problems)
		problem(t, "%s: spool_verify found problems 0x%x: %s", repro, vr.problems, vr.text);
	if (t->problems == 0)
		tu_rmrf(dir); /* keep the spool of a failing run for a look */
}

/* One strace run: fault fl at the Nth call, or at calls N..N+burst-1. */
static void one_run(struct tally *t, enum spool_durability mode, const struct fault *fl, int n,
		    int burst, struct outcome *o)
{
	const char *mname = tu_mode_label(mode);
	char when[64], tag[96], injector[256], repro[512];
	if (burst)
		snprintf(when, sizeof(when), "%d..%d%s", n, n + burst - 1,
			 mode == SPOOL_SYNC ? "" : BURST_STAGED_DELAY);
	else
		snprintf(when, sizeof(when), "%d", n);
	snprintf(tag, sizeof(tag), "%s-%s-%s-%d%s", mname, fl->sys, fl->err, n, burst ? "b" : "");
	snprintf(injector, sizeof(injector), "strace -f -o /dev/null -e inject=%s:error=%s:when=%s",
		 fl->sys, fl->err, when);
	snprintf(repro, sizeof(repro), "mode=%s inject=%s:error=%s:when=%s%s", mname, fl->sys,
		 fl->err, when, burst ? " (spool_sync timeout 0.25 s)" : "");
	run_checked(t, mode, tag, injector, repro, burst ? "0.25" : "3", 1000 + n, o);
}

START_TEST(test_sweep)
{
	enum spool_durability mode = tu_modes[_i % TU_NMODES];
	int burst = _i < TU_NMODES ? 0 : mode == SPOOL_SYNC ? BURST_SYNC : BURST_STAGED;
	int step = burst == BURST_STAGED ? BURST_STAGED_STEP : 1;
	int nmax = sweep_max();
	static struct outcome o;
	double t0 = tu_now();
	for (size_t f = 0; f < NFAULTS; f++) {
		struct tally t = {0};
		for (int n = 1; n <= nmax; n += step)
			one_run(&t, mode, &faults[f], n, burst, &o);
		char when[64] = "N";
		if (burst)
			snprintf(when, sizeof(when), "N..N+%d%s", burst - 1,
				 mode == SPOOL_SYNC ? "" : BURST_STAGED_DELAY);
		fprintf(stderr,
			"ioerr %s inject=%s:error=%s when=%s for N=1..%d step %d: %u runs, "
			"%u reported errors, %u recovered, %u promised events checked, "
			"%u problems\n",
			tu_mode_label(mode), faults[f].sys, faults[f].err, when, nmax, step, t.runs,
			t.runs_with_errors, t.recovered, t.promised_checked, t.problems);
		fprintf(stderr,
			"FIGURES scenario=ioerr-%s-%s-%s%s rounds=%u events=%u lost=%u duplicates=%u "
			"crashes=%u reported=%u recovered=%u\n",
			tu_mode_label(mode), faults[f].sys, faults[f].err, burst ? "-burst" : "", t.runs,
			t.promised_checked, t.lost, t.dups, t.crashes, t.runs_with_errors, t.recovered);
		ck_assert_msg(t.problems == 0, "%u problems:\n%s", t.problems, t.report);
		if (mode == SPOOL_SYNC || burst)
			ck_assert_msg(t.runs_with_errors > 0,
				      "%s mode, %s:%s%s swept 1..%d: no run reported an error",
				      tu_mode_label(mode), faults[f].sys, faults[f].err,
				      burst ? " (burst)" : "", nmax);
		ck_assert_msg(t.promised_checked > 0, "no promised event to check");
	}
	fprintf(stderr, "ioerr %s%s: %.1f s\n", tu_mode_label(mode), burst ? " burst" : "",
		tu_now() - t0);
}
END_TEST

/* malloc made to fail: libfiu's fiu-run (Debian fiu-utils) with its POSIX
 * preload, at random with probability P (libfiu has no "Nth call"; a run is
 * not exactly replayable, its probability and mode are what the report
 * gives).  The same checks as above; across the sweep some run must have
 * reported an error (-ENOMEM). */
static const char *const malloc_probs[] = {"0.01", "0.05", "0.1"};
#define MALLOC_REPS 4

START_TEST(test_malloc)
{
#if defined(__SANITIZE_ADDRESS__)
	/* AddressSanitizer owns malloc; fiu's preloaded wrapper cannot sit in
	 * front of it (the workload crashes in the wrapper) */
	fprintf(stderr, "ioerr malloc: SKIPPED in an AddressSanitizer build\n");
	return;
#endif
	if (system("command -v fiu-run >/dev/null 2>&1") != 0) {
		fprintf(stderr, "ioerr malloc: SKIPPED, fiu-run not installed (fiu-utils)\n");
		return;
	}
	static struct outcome o;
	struct tally t = {0};
	double t0 = tu_now();
	for (int m = 0; m < TU_NMODES; m++) {
		for (size_t p = 0; p < sizeof(malloc_probs) / sizeof(malloc_probs[0]); p++) {
			for (int r = 0; r < MALLOC_REPS; r++) {
				const char *mname = tu_mode_label(tu_modes[m]);
				char tag[96], injector[256], repro[512];
				snprintf(tag, sizeof(tag), "%s-malloc-%s-%d", mname, malloc_probs[p], r);
				snprintf(injector, sizeof(injector),
					 "fiu-run -x -f '' -c 'enable_random "
					 "name=libc/mm/malloc,probability=%s'",
					 malloc_probs[p]);
				snprintf(repro, sizeof(repro),
					 "mode=%s fiu-run malloc probability=%s (run %d, random)", mname,
					 malloc_probs[p], r);
				run_checked(&t, tu_modes[m], tag, injector, repro, "3",
					    2000 + 100 * m + 10 * (int)p + r, &o);
			}
		}
	}
	fprintf(stderr,
		"ioerr malloc (fiu-run, probability 0.01/0.05/0.1 x %d runs x 3 modes): %u runs, "
		"%u reported errors, %u recovered, %u promised events checked, %u problems, "
		"%.1f s\n",
		MALLOC_REPS, t.runs, t.runs_with_errors, t.recovered, t.promised_checked, t.problems,
		tu_now() - t0);
	fprintf(stderr,
		"FIGURES scenario=ioerr-malloc rounds=%u events=%u lost=%u duplicates=%u crashes=%u "
		"reported=%u recovered=%u\n",
		t.runs, t.promised_checked, t.lost, t.dups, t.crashes, t.runs_with_errors, t.recovered);
	ck_assert_msg(t.problems == 0, "%u problems:\n%s", t.problems, t.report);
	ck_assert_msg(t.runs_with_errors > 0, "no malloc failure was reported in %u runs", t.runs);
}
END_TEST

int main(void)
{
	char why[700];
	if (tc_strace_usable(why, sizeof(why)) != 0) {
		printf("SKIP ioerr: %s\n", why);
		return 77;
	}
	/* in a sanitizer build the workloads run under strace */
	tc_asan_without_leaks();
	Suite *s = suite_create("ioerr");
	TCase *tc = tcase_create("strace-inject");
	tu_add_cleanup_fixture(tc);
	tcase_set_timeout(tc, 280);
	/* 0..2: one failed call; 3..5: a burst of failed calls in a row */
	tcase_add_loop_test(tc, test_sweep, 0, 2 * TU_NMODES);
	suite_add_tcase(s, tc);
	TCase *tm = tcase_create("fiu-malloc");
	tu_add_cleanup_fixture(tm);
	tcase_set_timeout(tm, 120);
	tcase_add_test(tm, test_malloc);
	suite_add_tcase(s, tm);
	return tc_run_forked(s);
}
