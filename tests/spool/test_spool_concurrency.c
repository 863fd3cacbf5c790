/* test_spool_concurrency.c — several processes and threads appending to one
 * spool at once, in every durability mode: afterwards every event is present
 * exactly once and each producer's events keep its own order.  Also
 * processes racing to create a spool, and a drain (read + ack) running while
 * producers append. */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check_main.h"
#include "testutil.h"

#define NPROC 4
#define PER_PROC 10000
#define NTHREAD 8
#define PER_THREAD 2500

static char g_dir[PATH_MAX];
static char g_path[PATH_MAX];

static void setup(void)
{
	tu_mkdtemp(g_dir, sizeof(g_dir), "conc");
	tu_join(g_path, sizeof(g_path), g_dir, "spool");
}

static void teardown(void)
{
	tu_rmrf(g_dir);
}

/* Per-producer order check over records read in sequence order: producer p's
 * n values must run 0, 1, 2, ... with no gap, duplicate or reordering. */
struct order_check {
	int nprod;
	uint64_t *next;
	uint64_t total;
	uint64_t last_seq;
	char err[256];
};

static void oc_init(struct order_check *oc, int nprod)
{
	memset(oc, 0, sizeof(*oc));
	oc->nprod = nprod;
	oc->next = calloc((size_t)nprod, sizeof(*oc->next));
	ck_assert_ptr_nonnull(oc->next);
}

/* Returns false (with oc->err) on the first violation. */
static bool oc_feed(struct order_check *oc, const struct spool_record *r)
{
	if (oc->err[0])
		return false;
	struct tu_event ev;
	if (r->seq <= oc->last_seq) {
		snprintf(oc->err, sizeof(oc->err), "seq %" PRIu64 " after %" PRIu64, r->seq,
			 oc->last_seq);
		return false;
	}
	oc->last_seq = r->seq;
	if (tu_decode(r->data, r->len, &ev) != 0) {
		snprintf(oc->err, sizeof(oc->err), "seq %" PRIu64 " does not decode", r->seq);
		return false;
	}
	if (ev.p < 0 || ev.p >= oc->nprod) {
		snprintf(oc->err, sizeof(oc->err), "seq %" PRIu64 ": unknown producer %" PRId64,
			 r->seq, ev.p);
		return false;
	}
	if (ev.n != oc->next[ev.p]) {
		snprintf(oc->err, sizeof(oc->err),
			 "seq %" PRIu64 ": producer %" PRId64 " event %" PRIu64
			 " where %" PRIu64 " was due (%s)",
			 r->seq, ev.p, ev.n, oc->next[ev.p],
			 ev.n < oc->next[ev.p] ? "duplicate or reordered" : "missing events");
		return false;
	}
	oc->next[ev.p]++;
	oc->total++;
	return true;
}

/* Reads the whole spool through the checker. */
static void oc_read_all(struct order_check *oc, struct spool *s)
{
	uint64_t after = 0;
	for (;;) {
		struct spool_batch *b = NULL;
		int rc = spool_read_batch(s, after, 4096, 0, &b);
		ck_assert_msg(rc == 0, "spool_read_batch = %d (%s)", rc, spool_strerror(rc));
		size_t c = spool_batch_count(b);
		const struct spool_record *r = spool_batch_records(b);
		for (size_t i = 0; i < c; i++) {
			oc_feed(oc, &r[i]);
			after = r[i].seq;
		}
		spool_batch_release(b);
		ck_assert_msg(oc->err[0] == 0, "%s", oc->err);
		if (c == 0)
			break;
	}
}

static void oc_expect(struct order_check *oc, uint64_t per)
{
	for (int p = 0; p < oc->nprod; p++)
		ck_assert_msg(oc->next[p] == per, "producer %d: %" PRIu64 " of %" PRIu64 " events",
			      p, oc->next[p], per);
	ck_assert_uint_eq(oc->total, per * (uint64_t)oc->nprod);
	free(oc->next);
	oc->next = NULL;
}

/* A producer process: opens the spool itself, says so on readyfd (if >= 0),
 * waits for the start signal (EOF on gofd), appends count events, closes.
 * Exit 0 on success. */
static void producer_child(enum spool_durability mode, int p, uint64_t count, int readyfd,
			   int gofd, size_t pad)
{
	struct spool_options o;
	tu_opts(&o, mode);
	struct spool *s = tu_open_nock(g_path, &o);
	if (s == NULL)
		_exit(2);
	if (readyfd >= 0) {
		if (tu_write_all(readyfd, "r", 1) != 0)
			_exit(5);
		/* so that the parent sees EOF if a sibling dies before this */
		close(readyfd);
	}
	char x;
	while (gofd >= 0 && read(gofd, &x, 1) > 0)
		;
	for (uint64_t n = 0; n < count; n++) {
		struct tu_buf b;
		tu_payload(&b, p, n, "concurrent producer", pad);
		int rc = spool_append(s, SPOOL_SEV_INFO + (int)(n % 4), b.data, b.len);
		tu_buf_free(&b);
		if (rc != 0) {
			fprintf(stderr, "producer %d: append %" PRIu64 " = %d (%s)\n", p, n, rc,
				spool_strerror(rc));
			_exit(3);
		}
	}
	int rc = spool_close(s);
	if (rc != 0) {
		fprintf(stderr, "producer %d: close = %d (%s)\n", p, rc, spool_strerror(rc));
		_exit(4);
	}
	_exit(0);
}

/* Reaps n producers; any still running after `seconds` is killed and
 * the test fails (a hang is a failure, never a stuck suite). */
static void reap_producers(pid_t *pids, int n, double seconds)
{
	double deadline = tu_now() + seconds;
	int codes[64];
	bool ok = true;
	for (int p = 0; p < n; p++) {
		codes[p] = tu_wait_until(pids[p], deadline);
		ok &= codes[p] == 0;
	}
	for (int p = 0; p < n && !ok; p++)
		ck_assert_msg(codes[p] == 0, "producer %d exited with %d (-2: hung, killed after %.0f s)",
			      p, codes[p], seconds);
}

/* Forks n producers and returns once every one has opened the spool; they
 * start appending together when *go_w is closed. */
static void spawn_producers(pid_t *pids, int n, enum spool_durability mode, uint64_t count,
			    int *go_w, size_t pad)
{
	int go[2], ready[2];
	ck_assert_int_eq(pipe(go), 0);
	ck_assert_int_eq(pipe(ready), 0);
	for (int p = 0; p < n; p++) {
		pids[p] = tu_fork();
		ck_assert_int_ge(pids[p], 0);
		if (pids[p] == 0) {
			close(go[1]);
			close(ready[0]);
			producer_child(mode, p, count, ready[1], go[0], pad);
		}
	}
	close(go[0]);
	close(ready[1]);
	for (int p = 0; p < n; p++) {
		char x;
		if (tu_read_full(ready[0], &x, 1) != 0) {
			/* a producer died before it had opened the spool */
			close(go[1]);
			close(ready[0]);
			char codes[256] = "";
			for (int q = 0; q < n; q++) {
				kill(pids[q], SIGKILL);
				snprintf(codes + strlen(codes), sizeof(codes) - strlen(codes), " %d",
					 tu_wait_until(pids[q], tu_now() + 10.0));
			}
			ck_abort_msg("a producer failed to open the spool (exit codes:%s; 2 = "
				     "open failed, 137 = killed here)",
				     codes);
		}
	}
	close(ready[0]);
	*go_w = go[1];
}

/* 4 processes x 10,000 events, all at once. */
START_TEST(test_procs_append)
{
	enum spool_durability mode = tu_modes[_i];
	struct spool_options o;
	tu_opts(&o, mode);
	struct spool *s = tu_open(g_path, &o); /* create it first */
	ck_assert_int_eq(spool_close(s), 0);

	pid_t pids[NPROC];
	int go;
	double t0 = tu_now();
	spawn_producers(pids, NPROC, mode, PER_PROC, &go, 0);
	close(go); /* start */
	reap_producers(pids, NPROC, 300.0);
	double t1 = tu_now();

	s = tu_open(g_path, &o);
	struct order_check oc;
	oc_init(&oc, NPROC);
	oc_read_all(&oc, s);
	oc_expect(&oc, PER_PROC);
	struct spool_stats st = tu_stats(s);
	ck_assert_uint_eq(st.pending, NPROC * PER_PROC);
	ck_assert_uint_eq(st.appended_total, NPROC * PER_PROC);
	ck_assert_uint_eq(st.torn_total, 0);
	ck_assert_uint_eq(st.corrupt_total, 0);
	ck_assert_uint_eq(st.dead, 0);
	printf("%s: %d processes x %d events in %.2f s\n", tu_mode_label(mode), NPROC, PER_PROC,
	       t1 - t0);
	ck_assert_int_eq(spool_close(s), 0);
}
END_TEST

struct thread_arg {
	struct spool *s;
	int p;
	pthread_barrier_t *bar;
	int rc;
	uint64_t failed_at;
};

static void *thread_producer(void *arg)
{
	struct thread_arg *a = arg;
	pthread_barrier_wait(a->bar);
	bool many = a->p % 2 == 1;
	for (uint64_t n = 0; n < PER_THREAD;) {
		if (many) {
			struct tu_buf b[5];
			struct spool_input in[5];
			for (int k = 0; k < 5; k++) {
				tu_payload(&b[k], a->p, n + (uint64_t)k, "thread many", 0);
				in[k] = (struct spool_input){SPOOL_SEV_WARN, b[k].data, b[k].len};
			}
			a->rc = spool_append_many(a->s, in, 5);
			for (int k = 0; k < 5; k++)
				tu_buf_free(&b[k]);
			if (a->rc != 0) {
				a->failed_at = n;
				return NULL;
			}
			n += 5;
		} else {
			struct tu_buf b;
			tu_payload(&b, a->p, n, "thread one", 0);
			a->rc = spool_append(a->s, SPOOL_SEV_INFO, b.data, b.len);
			tu_buf_free(&b);
			if (a->rc != 0) {
				a->failed_at = n;
				return NULL;
			}
			n++;
		}
	}
	return NULL;
}

/* Several threads appending to one handle. */
START_TEST(test_threads_append)
{
	enum spool_durability mode = tu_modes[_i];
	struct spool_options o;
	tu_opts(&o, mode);
	struct spool *s = tu_open(g_path, &o);
	pthread_barrier_t bar;
	pthread_barrier_init(&bar, NULL, NTHREAD);
	pthread_t th[NTHREAD];
	struct thread_arg a[NTHREAD];
	for (int i = 0; i < NTHREAD; i++) {
		a[i] = (struct thread_arg){.s = s, .p = i, .bar = &bar};
		ck_assert_int_eq(pthread_create(&th[i], NULL, thread_producer, &a[i]), 0);
	}
	for (int i = 0; i < NTHREAD; i++)
		pthread_join(th[i], NULL);
	pthread_barrier_destroy(&bar);
	for (int i = 0; i < NTHREAD; i++)
		ck_assert_msg(a[i].rc == 0, "thread %d: append at %" PRIu64 " = %d (%s)", i,
			      a[i].failed_at, a[i].rc, spool_strerror(a[i].rc));
	uint64_t last = 0;
	ck_assert_int_eq(spool_sync(s, 60.0, &last), 0);

	struct order_check oc;
	oc_init(&oc, NTHREAD);
	oc_read_all(&oc, s);
	ck_assert_uint_eq(last, oc.last_seq);
	oc_expect(&oc, PER_THREAD);
	struct spool_stats st = tu_stats(s);
	ck_assert_uint_eq(st.pending, NTHREAD * PER_THREAD);
	ck_assert_uint_eq(st.appended_total, NTHREAD * PER_THREAD);
	ck_assert_int_eq(spool_close(s), 0);
}
END_TEST

/* Processes racing to create and open a spool that does not exist yet. */
START_TEST(test_concurrent_create)
{
	enum spool_durability mode = tu_modes[_i];
	enum { N = 8, PER = 20 };
	int go[2];
	ck_assert_int_eq(pipe(go), 0);
	pid_t pids[N];
	for (int p = 0; p < N; p++) {
		pids[p] = tu_fork();
		ck_assert_int_ge(pids[p], 0);
		if (pids[p] == 0) {
			close(go[1]);
			char x;
			while (read(go[0], &x, 1) > 0)
				;
			producer_child(mode, p, PER, -1, -1, 0);
		}
	}
	close(go[0]);
	close(go[1]);
	reap_producers(pids, N, 120.0);

	struct spool_options o;
	tu_opts(&o, SPOOL_SYNC);
	struct spool *s = tu_open(g_path, &o);
	struct order_check oc;
	oc_init(&oc, N);
	oc_read_all(&oc, s);
	oc_expect(&oc, PER);
	ck_assert_int_eq(spool_close(s), 0);
}
END_TEST

/* An agent-like drain (read a batch, ack it) runs while two producer
 * processes append in the given mode: everything is seen exactly once, in each producer's
 * order, and nothing is left. */
START_TEST(test_drain_while_appending)
{
	enum spool_durability mode = tu_modes[_i];
	enum { NP = 2, PER = 5000 };
	/* The drain is a sync-mode handle (as an agent's): no background thread
	 * in this process while it forks, so the producers inherit no lock held
	 * mid-operation (ASan's allocator is not fork-safe). */
	struct spool_options o;
	tu_opts(&o, SPOOL_SYNC);
	struct spool *s = tu_open(g_path, &o);
	pid_t pids[NP];
	int go;
	spawn_producers(pids, NP, mode, PER, &go, 40);
	close(go);

	struct order_check oc;
	oc_init(&oc, NP);
	uint64_t acked = 0;
	int alive = NP;
	bool reaped[NP] = {false};
	double deadline = tu_now() + 300.0;
	for (;;) {
		struct spool_batch *b = NULL;
		int rc = spool_read_batch(s, 0, 300, 0, &b);
		ck_assert_msg(rc == 0, "drain read = %d (%s)", rc, spool_strerror(rc));
		size_t c = spool_batch_count(b);
		uint64_t seqs[300];
		const struct spool_record *r = spool_batch_records(b);
		for (size_t i = 0; i < c; i++) {
			oc_feed(&oc, &r[i]);
			seqs[i] = r[i].seq;
		}
		spool_batch_release(b);
		ck_assert_msg(oc.err[0] == 0, "%s", oc.err);
		if (c > 0) {
			uint64_t del = 0;
			ck_assert_int_eq(spool_ack(s, seqs, c, &del), 0);
			ck_assert_uint_eq(del, c);
			acked += del;
			continue;
		}
		if (alive == 0)
			break;
		for (int p = 0; p < NP; p++) {
			if (reaped[p])
				continue;
			int st;
			pid_t w = waitpid(pids[p], &st, WNOHANG);
			if (w == pids[p]) {
				reaped[p] = true;
				alive--;
				ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0,
					      "producer %d failed (status 0x%x)", p, st);
			}
		}
		if (tu_now() >= deadline) {
			for (int p = 0; p < NP; p++)
				if (!reaped[p])
					tu_wait_until(pids[p], 0);
			ck_abort_msg("producers still running after 300 s (hung?)");
		}
		tu_sleep(0.005);
	}
	oc_expect(&oc, PER);
	ck_assert_uint_eq(acked, NP * PER);
	struct spool_stats st = tu_stats(s);
	ck_assert_uint_eq(st.pending, 0);
	ck_assert_uint_eq(st.acked_total, NP * PER);
	ck_assert_uint_eq(st.appended_total, NP * PER);
	ck_assert_int_eq(spool_close(s), 0);
}
END_TEST

static Suite *conc_suite(void)
{
	Suite *s = suite_create("spool-concurrency");
	TCase *tc = tcase_create("concurrency");
	tcase_add_checked_fixture(tc, setup, teardown);
	tu_add_cleanup_fixture(tc);
	tcase_set_timeout(tc, 600);
	tcase_add_loop_test(tc, test_procs_append, 0, TU_NMODES);
	tcase_add_loop_test(tc, test_threads_append, 0, TU_NMODES);
	tcase_add_loop_test(tc, test_concurrent_create, 0, TU_NMODES);
	tcase_add_loop_test(tc, test_drain_while_appending, 0, TU_NMODES);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return tc_run_forked(conc_suite());
}
