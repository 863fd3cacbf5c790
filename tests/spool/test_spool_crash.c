/* test_spool_crash.c — a producer killed with SIGKILL at a random moment.
 *
 * Each round a child opens the spool, appends in a loop, and after every
 * append that returned 0 writes that event's counter to a pipe.  The parent
 * kills it after a random delay (seeded, printed; SPOOL_TEST_SEED replays),
 * reopens the spool (which recovers the dead ring), and checks:
 *   - the spool opens cleanly, spool_stats works, every record decodes;
 *   - the round's events present are exactly 0..k-1, once each, in order
 *     (at most one more than reported: the append the kill interrupted);
 *   - sync and commit mode: every reported event is present (k >= reported);
 *     buffered mode may lose the unflushed window by design;
 *   - no event of an earlier round comes back, sequences keep increasing.
 * Then it acks the round's events, so each round starts from an empty spool
 * whose history (rings, counters) has seen every earlier crash. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check_main.h"
#include "testutil.h"

static char g_dir[PATH_MAX];
static char g_path[PATH_MAX];

static void setup(void)
{
	tu_mkdtemp(g_dir, sizeof(g_dir), "crash");
	tu_join(g_path, sizeof(g_path), g_dir, "spool");
}

static void teardown(void)
{
	tu_rmrf(g_dir);
}

static int rounds_from_env(int dflt)
{
	const char *e = getenv("SPOOL_CRASH_ROUNDS");
	if (e && *e) {
		int n = atoi(e);
		if (n > 0)
			return n;
	}
	return dflt;
}

/* The child: appends events {p = round, n} until killed (or until limit,
 * then waits to be killed), reporting each n whose append returned 0. */
static void crash_child(const struct spool_options *o, int round, uint64_t limit, int wfd,
			size_t pad)
{
	struct spool *s = tu_open_nock(g_path, o);
	if (s == NULL)
		_exit(2);
	for (uint64_t n = 0; n < limit; n++) {
		struct tu_buf b;
		tu_payload(&b, round, n, "crash", pad);
		int rc = spool_append(s, SPOOL_SEV_INFO + (int)(n % 3), b.data, b.len);
		tu_buf_free(&b);
		if (rc != 0) {
			fprintf(stderr, "crash child: append %" PRIu64 " = %d (%s)\n", n, rc,
				spool_strerror(rc));
			_exit(3);
		}
		if (tu_write_all(wfd, &n, sizeof(n)) != 0)
			_exit(4);
	}
	for (;;)
		pause();
}

struct round_result {
	uint64_t reported; /* events 0..reported-1 were acknowledged to the child */
	uint64_t present;  /* events 0..present-1 are in the spool */
	uint64_t max_seq;
	uint64_t pending_before_kill; /* committed figure a live observer saw */
};

/* Reads reported counters from fd until the deadline, then kills pid and
 * reads the rest.  Returns the number reported (they arrive in order). */
static uint64_t collect_and_kill(pid_t pid, int rfd, double deadline, uint64_t *observe_pending,
				 const char *observe_path)
{
	uint64_t reported = 0;
	uint64_t buf[4096];
	size_t carry = 0; /* bytes of a partial counter kept at the front */
	unsigned char *raw = (unsigned char *)buf;
	bool killed = false;
	for (;;) {
		double now = tu_now();
		if (!killed && now >= deadline) {
			if (observe_path && observe_pending) {
				/* A live observer: the ring of a running process
				 * is not "dead" and must not be recovered. */
				struct spool_options o;
				tu_opts(&o, SPOOL_SYNC);
				struct spool *s = tu_open(observe_path, &o);
				*observe_pending = tu_stats(s).pending;
				ck_assert_int_eq(spool_close(s), 0);
			}
			ck_assert_int_eq(kill(pid, SIGKILL), 0);
			killed = true;
		}
		int timeout_ms = killed ? 1000 : (int)((deadline - now) * 1000) + 1;
		struct pollfd pfd = {.fd = rfd, .events = POLLIN};
		int pr = poll(&pfd, 1, timeout_ms);
		if (pr < 0 && errno == EINTR)
			continue;
		ck_assert_int_ge(pr, 0);
		if (pr == 0)
			continue;
		ssize_t r = read(rfd, raw + carry, sizeof(buf) - carry);
		if (r < 0 && errno == EINTR)
			continue;
		ck_assert_int_ge(r, 0);
		if (r == 0)
			break; /* child gone, pipe drained */
		size_t have = carry + (size_t)r;
		size_t whole = have / sizeof(uint64_t);
		for (size_t i = 0; i < whole; i++) {
			ck_assert_msg(buf[i] == reported, "child reported %" PRIu64 " after %" PRIu64,
				      buf[i], reported);
			reported++;
		}
		carry = have % sizeof(uint64_t);
		memmove(raw, raw + whole * sizeof(uint64_t), carry);
	}
	ck_assert_msg(carry == 0, "torn counter on the pipe");
	return reported;
}

static void verify_round(enum spool_durability mode, int round, uint64_t reported,
			 uint64_t prev_max_seq, struct round_result *res)
{
	struct spool_options o;
	tu_opts(&o, SPOOL_SYNC);
	struct spool *s = tu_open(g_path, &o);
	ck_assert_int_eq(spool_sync(s, 30.0, NULL), 0);
	struct spool_stats st = tu_stats(s);
	ck_assert_uint_eq(st.dead, 0);
	ck_assert_uint_eq(st.corrupt_total, 0);

	struct tu_rec *r = NULL;
	size_t n = tu_read_all(s, false, &r);
	uint64_t next = 0, last_seq = prev_max_seq;
	for (size_t i = 0; i < n; i++) {
		struct tu_event ev;
		ck_assert_msg(tu_decode(r[i].data, r[i].len, &ev) == 0,
			      "round %d: seq %" PRIu64 " does not decode", round, r[i].seq);
		ck_assert_msg(ev.p == round, "round %d: event of round %" PRId64 " (n %" PRIu64
					     ") came back at seq %" PRIu64,
			      round, ev.p, ev.n, r[i].seq);
		ck_assert_msg(ev.n == next,
			      "round %d (%s): event %" PRIu64 " at seq %" PRIu64
			      " where %" PRIu64 " was due (%s)",
			      round, tu_mode_label(mode), ev.n, r[i].seq, next,
			      ev.n < next ? "duplicate" : "gap");
		ck_assert_msg(r[i].seq > last_seq, "round %d: seq %" PRIu64 " not above %" PRIu64,
			      round, r[i].seq, last_seq);
		ck_assert_int_eq(r[i].severity, SPOOL_SEV_INFO + (int)(ev.n % 3));
		last_seq = r[i].seq;
		next++;
	}
	ck_assert_uint_eq(st.pending, n);
	ck_assert_msg(next <= reported + 1,
		      "round %d: %" PRIu64 " events present, only %" PRIu64 " were appended", round,
		      next, reported);
	if (mode != SPOOL_BUFFERED)
		ck_assert_msg(next >= reported,
			      "round %d (%s): %" PRIu64 " events reported as stored, %" PRIu64
			      " present after the crash",
			      round, tu_mode_label(mode), reported, next);
	/* nothing more to recover for this handle's reopen */
	uint64_t moved = 99;
	ck_assert_int_eq(spool_recover(s, &moved), 0);
	ck_assert_uint_eq(moved, 0);
	ck_assert_uint_eq(tu_ack_all(s), n);
	st = tu_stats(s);
	ck_assert_uint_eq(st.pending, 0);
	ck_assert_uint_gt(st.next_seq, last_seq);
	ck_assert_int_eq(spool_close(s), 0);
	tu_recs_free(r, n);
	res->present = next;
	res->max_seq = last_seq;
}

static void run_crash_rounds(enum spool_durability mode, int rounds, double commit_interval,
			     uint64_t limit, double max_delay, const char *name, bool observe)
{
	char what[128];
	snprintf(what, sizeof(what), "%s (%s)", name, tu_mode_label(mode));
	uint64_t rng = tu_seed(what);
	struct spool_options o;
	tu_opts(&o, mode);
	if (commit_interval > 0)
		o.commit_interval_seconds = commit_interval;
	uint64_t max_seq = 0, tot_rep = 0, tot_present = 0, lost = 0, extra = 0;
	for (int round = 0; round < rounds; round++) {
		double delay = (double)tu_rand_range(&rng, 0, (uint64_t)(max_delay * 1e6)) / 1e6;
		size_t pad = (size_t)tu_rand_range(&rng, 0, 200);
		int pfd[2];
		ck_assert_int_eq(pipe(pfd), 0);
		double t0 = tu_now();
		pid_t pid = tu_fork();
		ck_assert_int_ge(pid, 0);
		if (pid == 0) {
			close(pfd[0]);
			crash_child(&o, round, limit, pfd[1], pad);
		}
		close(pfd[1]);
		uint64_t observed = UINT64_MAX;
		uint64_t reported = collect_and_kill(pid, pfd[0], t0 + delay,
						     observe ? &observed : NULL, g_path);
		close(pfd[0]);
		int code = tu_wait(pid);
		ck_assert_msg(code == 128 + SIGKILL,
			      "round %d: child ended with %d before the kill (2: open failed, "
			      "3: append failed)",
			      round, code);
		struct round_result res = {0};
		verify_round(mode, round, reported, max_seq, &res);
		if (observe)
			printf("  round %d: kill at %.3f s, %" PRIu64 " reported, %" PRIu64
			       " committed before the kill, %" PRIu64 " present after\n",
			       round, delay, reported, observed, res.present);
		max_seq = res.max_seq > max_seq ? res.max_seq : max_seq;
		tot_rep += reported;
		tot_present += res.present;
		if (res.present < reported)
			lost += reported - res.present;
		if (res.present > reported)
			extra++;
	}
	printf("%s: %d rounds, %" PRIu64 " events reported, %" PRIu64 " present, %" PRIu64
	       " lost (allowed only in buffered mode), %" PRIu64
	       " rounds kept the interrupted append\n",
	       what, rounds, tot_rep, tot_present, lost, extra);
	fflush(stdout);
}

/* Killed at a random moment, in each durability mode. */
START_TEST(test_crash_rounds)
{
	enum spool_durability mode = tu_modes[_i];
	run_crash_rounds(mode, rounds_from_env(20), 0, UINT64_MAX, 0.25, "crash rounds", false);
}
END_TEST

/* Commit mode with the kill landing while the ring holds everything: a
 * 30 s commit interval means no record reaches LMDB before the kill
 * (except through the child's own ring-full handling); every reported
 * record must arrive with the next open.  A live observer opens the spool
 * just before the kill: it must not steal the live ring. */
START_TEST(test_crash_uncommitted_ring)
{
	/* 12,000 events of at most ~300 bytes stay below the 4 MiB ring */
	run_crash_rounds(SPOOL_COMMIT, rounds_from_env(12), 30.0, 12000, 0.05,
			 "crash with uncommitted ring", true);
}
END_TEST

/* The agent's path: a long-lived handle stays open while a commit-mode
 * producer dies with records only in its ring; spool_recover() on that
 * handle moves exactly those records, once. */
START_TEST(test_recover_while_open)
{
	uint64_t rng = tu_seed("recover while open");
	struct spool_options ao;
	tu_opts(&ao, SPOOL_SYNC);
	struct spool *agent = tu_open(g_path, &ao);
	struct spool_options po;
	tu_opts(&po, SPOOL_COMMIT);
	po.commit_interval_seconds = 30.0;
	for (int round = 0; round < 5; round++) {
		uint64_t limit = tu_rand_range(&rng, 1, 800);
		int pfd[2];
		ck_assert_int_eq(pipe(pfd), 0);
		pid_t pid = tu_fork();
		ck_assert_int_ge(pid, 0);
		if (pid == 0) {
			close(pfd[0]);
			crash_child(&po, round, limit, pfd[1], 50);
		}
		close(pfd[1]);
		/* wait until all `limit` appends are reported, then kill */
		uint64_t reported = 0, n;
		while (reported < limit && tu_read_full(pfd[0], &n, sizeof(n)) == 0) {
			ck_assert_uint_eq(n, reported);
			reported++;
		}
		ck_assert_uint_eq(reported, limit);
		/* the live producer's ring is not touched */
		uint64_t moved = 99;
		ck_assert_int_eq(spool_recover(agent, &moved), 0);
		ck_assert_uint_eq(moved, 0);
		ck_assert_int_eq(kill(pid, SIGKILL), 0);
		ck_assert_int_eq(tu_wait(pid), 128 + SIGKILL);
		close(pfd[0]);

		ck_assert_int_eq(spool_recover(agent, &moved), 0);
		ck_assert_uint_eq(moved, limit);
		ck_assert_int_eq(spool_recover(agent, &moved), 0);
		ck_assert_uint_eq(moved, 0); /* never twice */
		struct tu_rec *r = NULL;
		size_t got = tu_read_all(agent, false, &r);
		ck_assert_uint_eq(got, limit);
		for (size_t i = 0; i < got; i++) {
			struct tu_event ev;
			ck_assert_int_eq(tu_decode(r[i].data, r[i].len, &ev), 0);
			ck_assert_int_eq(ev.p, round);
			ck_assert_uint_eq(ev.n, i);
		}
		tu_recs_free(r, got);
		ck_assert_uint_eq(tu_ack_all(agent), limit);
	}
	struct spool_stats st = tu_stats(agent);
	ck_assert_uint_eq(st.pending, 0);
	ck_assert_uint_eq(st.dead, 0);
	ck_assert_int_eq(spool_close(agent), 0);
}
END_TEST

static Suite *crash_suite(void)
{
	Suite *s = suite_create("spool-crash");
	TCase *tc = tcase_create("crash");
	tcase_add_checked_fixture(tc, setup, teardown);
	tu_add_cleanup_fixture(tc);
	tcase_set_timeout(tc, 300);
	tcase_add_loop_test(tc, test_crash_rounds, 0, TU_NMODES);
	tcase_add_test(tc, test_crash_uncommitted_ring);
	tcase_add_test(tc, test_recover_while_open);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return tc_run_forked(crash_suite());
}
