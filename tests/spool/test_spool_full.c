/* test_spool_full.c — what spool_append() does when the spool is full:
 * SPOOL_FULL_DROP, SPOOL_FULL_BLOCK (timing out, or room made by another
 * thread or process), SPOOL_FULL_EVICT (lowest severity, oldest first),
 * max_bytes, and records too big to ever fit.  Exact counts are checked in
 * sync mode; the staged modes check against the last known count, so there
 * only the eventual refusal is asserted. */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
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
	tu_mkdtemp(g_dir, sizeof(g_dir), "full");
	tu_join(g_path, sizeof(g_path), g_dir, "spool");
}

static void teardown(void)
{
	tu_rmrf(g_dir);
}

static struct spool *open_limited(enum spool_durability d, uint64_t max_events,
				  uint64_t max_bytes, enum spool_full_policy pol, double timeout)
{
	struct spool_options o;
	tu_opts(&o, d);
	o.max_events = max_events;
	if (max_bytes)
		o.max_bytes = max_bytes;
	o.full_policy = pol;
	o.full_timeout_seconds = timeout;
	return tu_open(g_path, &o);
}

static int append_n(struct spool *s, int sev, uint64_t n, size_t pad)
{
	struct tu_buf b;
	tu_payload(&b, 1, n, "full", pad);
	int rc = spool_append(s, sev, b.data, b.len);
	tu_buf_free(&b);
	return rc;
}

/* The "n" values of the pending records, in order. */
static size_t pending_ns(struct spool *s, uint64_t *ns, size_t cap)
{
	struct tu_rec *r = NULL;
	size_t n = tu_read_all(s, false, &r);
	ck_assert_uint_le(n, cap);
	for (size_t i = 0; i < n; i++) {
		struct tu_event ev;
		ck_assert_int_eq(tu_decode(r[i].data, r[i].len, &ev), 0);
		ns[i] = ev.n;
	}
	tu_recs_free(r, n);
	return n;
}

static void assert_pending_ns(struct spool *s, const uint64_t *want, size_t nwant)
{
	uint64_t got[64];
	size_t n = pending_ns(s, got, 64);
	char gs[512] = "", ws[512] = "";
	for (size_t i = 0; i < n; i++)
		snprintf(gs + strlen(gs), sizeof(gs) - strlen(gs), " %" PRIu64, got[i]);
	for (size_t i = 0; i < nwant; i++)
		snprintf(ws + strlen(ws), sizeof(ws) - strlen(ws), " %" PRIu64, want[i]);
	ck_assert_msg(n == nwant && memcmp(got, want, n * sizeof(*got)) == 0,
		      "pending n values [%s ] want [%s ]", gs, ws);
}

/* ------------------------------------------------------------------ */

START_TEST(test_drop)
{
	struct spool *s = open_limited(SPOOL_SYNC, 10, 0, SPOOL_FULL_DROP, 0.25);
	for (uint64_t i = 0; i < 10; i++)
		ck_assert_int_eq(append_n(s, SPOOL_SEV_INFO, i, 0), 0);
	ck_assert_int_eq(append_n(s, SPOOL_SEV_FATAL, 10, 0), SPOOL_EFULL);
	ck_assert_int_eq(append_n(s, SPOOL_SEV_INFO, 11, 0), SPOOL_EFULL);
	struct spool_stats st = tu_stats(s);
	ck_assert_uint_eq(st.pending, 10);
	ck_assert_uint_eq(st.appended_total, 10);
	ck_assert_uint_eq(st.dropped_total, 2);
	ck_assert_uint_eq(st.evicted_total, 0);

	/* all or none: two records with room for one */
	struct tu_rec *r = NULL;
	ck_assert_uint_eq(tu_read_all(s, false, &r), 10);
	ck_assert_int_eq(spool_ack(s, &r[0].seq, 1, NULL), 0);
	struct tu_buf a, b;
	tu_payload(&a, 1, 20, "many", 0);
	tu_payload(&b, 1, 21, "many", 0);
	struct spool_input in[2] = {{SPOOL_SEV_INFO, a.data, a.len}, {SPOOL_SEV_INFO, b.data, b.len}};
	ck_assert_int_eq(spool_append_many(s, in, 2), SPOOL_EFULL);
	st = tu_stats(s);
	ck_assert_uint_eq(st.pending, 9);
	ck_assert_uint_gt(st.dropped_total, 2);

	/* room again after an ack */
	ck_assert_int_eq(spool_append_many(s, in, 1), 0);
	ck_assert_int_eq(append_n(s, SPOOL_SEV_INFO, 22, 0), SPOOL_EFULL);
	uint64_t want[10] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 20};
	assert_pending_ns(s, want, 10);
	tu_buf_free(&a);
	tu_buf_free(&b);
	tu_recs_free(r, 10);
	ck_assert_int_eq(spool_close(s), 0);
}
END_TEST

START_TEST(test_block_times_out)
{
	struct spool *s = open_limited(SPOOL_SYNC, 10, 0, SPOOL_FULL_BLOCK, 0.3);
	for (uint64_t i = 0; i < 10; i++)
		ck_assert_int_eq(append_n(s, SPOOL_SEV_INFO, i, 0), 0);
	double t0 = tu_now();
	int rc = append_n(s, SPOOL_SEV_INFO, 10, 0);
	double waited = tu_now() - t0;
	ck_assert_msg(rc == SPOOL_EFULL, "blocked append = %d (%s)", rc, spool_strerror(rc));
	printf("block policy: gave up after %.3f s (full_timeout 0.3 s)\n", waited);
	struct spool_stats st = tu_stats(s);
	ck_assert_uint_eq(st.pending, 10);
	ck_assert_uint_eq(st.dropped_total, 1);
	ck_assert_uint_eq(st.appended_total, 10);
	ck_assert_int_eq(spool_close(s), 0);
}
END_TEST

struct acker {
	struct spool *s;
	double delay;
	int rc;
	uint64_t deleted;
	uint64_t seq;
};

static void *acker_main(void *arg)
{
	struct acker *a = arg;
	tu_sleep(a->delay);
	struct spool_batch *b = NULL;
	a->rc = spool_read_batch(a->s, 0, 1, 0, &b);
	if (a->rc != 0)
		return NULL;
	if (spool_batch_count(b) != 1) {
		a->rc = -1000;
		spool_batch_release(b);
		return NULL;
	}
	a->seq = spool_batch_records(b)[0].seq;
	spool_batch_release(b);
	a->rc = spool_ack(a->s, &a->seq, 1, &a->deleted);
	return NULL;
}

/* A blocked append goes through once another thread acks. */
START_TEST(test_block_thread_makes_room)
{
	struct spool *s = open_limited(SPOOL_SYNC, 10, 0, SPOOL_FULL_BLOCK, 20.0);
	for (uint64_t i = 0; i < 10; i++)
		ck_assert_int_eq(append_n(s, SPOOL_SEV_INFO, i, 0), 0);
	struct acker a = {.s = s, .delay = 0.2};
	pthread_t th;
	ck_assert_int_eq(pthread_create(&th, NULL, acker_main, &a), 0);
	int rc = append_n(s, SPOOL_SEV_INFO, 10, 0);
	pthread_join(th, NULL);
	ck_assert_msg(a.rc == 0 && a.deleted == 1, "acker thread: rc %d deleted %" PRIu64, a.rc,
		      a.deleted);
	ck_assert_msg(rc == 0, "append blocked on a full spool = %d (%s) though a thread acked",
		      rc, spool_strerror(rc));
	uint64_t want[10] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
	assert_pending_ns(s, want, 10);
	struct spool_stats st = tu_stats(s);
	ck_assert_uint_eq(st.dropped_total, 0);
	ck_assert_int_eq(spool_close(s), 0);
}
END_TEST

/* A blocked append goes through once another process acks. */
START_TEST(test_block_process_makes_room)
{
	struct spool *s = open_limited(SPOOL_SYNC, 10, 0, SPOOL_FULL_BLOCK, 20.0);
	for (uint64_t i = 0; i < 10; i++)
		ck_assert_int_eq(append_n(s, SPOOL_SEV_INFO, i, 0), 0);
	ck_assert_int_eq(spool_close(s), 0);

	int go[2];
	ck_assert_int_eq(pipe(go), 0);
	pid_t pid = tu_fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		close(go[1]);
		struct spool_options o;
		tu_opts(&o, SPOOL_SYNC);
		struct spool *c = tu_open_nock(g_path, &o);
		if (c == NULL)
			_exit(2);
		char x;
		if (tu_read_full(go[0], &x, 1) != 0)
			_exit(3);
		tu_sleep(0.3);
		struct acker a = {.s = c};
		acker_main(&a);
		if (a.rc != 0 || a.deleted != 1) {
			fprintf(stderr, "child acker: rc %d deleted %" PRIu64 "\n", a.rc, a.deleted);
			_exit(4);
		}
		spool_close(c);
		_exit(0);
	}
	close(go[0]);
	s = open_limited(SPOOL_SYNC, 10, 0, SPOOL_FULL_BLOCK, 20.0);
	ck_assert_int_eq(tu_write_all(go[1], "g", 1), 0);
	int rc = append_n(s, SPOOL_SEV_INFO, 10, 0);
	int code = tu_wait_until(pid, tu_now() + 120.0);
	close(go[1]);
	ck_assert_msg(code == 0, "acking child exited with %d", code);
	ck_assert_msg(rc == 0, "append blocked on a full spool = %d (%s) though a process acked",
		      rc, spool_strerror(rc));
	uint64_t want[10] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
	assert_pending_ns(s, want, 10);
	ck_assert_int_eq(spool_close(s), 0);
}
END_TEST

/* Eviction takes the lowest severity present, oldest first. */
START_TEST(test_evict_order)
{
	struct spool *s = open_limited(SPOOL_SYNC, 10, 0, SPOOL_FULL_EVICT, 0.25);
	static const int sev[10] = {SPOOL_SEV_INFO,  SPOOL_SEV_DEBUG, SPOOL_SEV_WARN,
				    SPOOL_SEV_DEBUG, SPOOL_SEV_ERROR, SPOOL_SEV_INFO,
				    SPOOL_SEV_DEBUG, SPOOL_SEV_FATAL, SPOOL_SEV_INFO,
				    SPOOL_SEV_WARN};
	for (uint64_t i = 0; i < 10; i++)
		ck_assert_int_eq(append_n(s, sev[i], i, 0), 0);

	/* debug 1, 3, 6 go first, then info 0, 5, 8, then warn 2, 9 */
	static const uint64_t victims[] = {1, 3, 6, 0, 5, 8, 2, 9};
	uint64_t present[20];
	size_t np = 10;
	for (size_t i = 0; i < 10; i++)
		present[i] = i;
	for (size_t k = 0; k < sizeof(victims) / sizeof(victims[0]); k++) {
		uint64_t n = 10 + k;
		int rc = append_n(s, SPOOL_SEV_ERROR, n, 0);
		ck_assert_msg(rc == 0, "evicting append %" PRIu64 " = %d (%s)", n, rc,
			      spool_strerror(rc));
		size_t w = 0;
		for (size_t i = 0; i < np; i++)
			if (present[i] != victims[k])
				present[w++] = present[i];
		ck_assert_uint_eq(w, np - 1);
		present[w++] = n;
		np = w;
		assert_pending_ns(s, present, np);
		struct spool_stats st = tu_stats(s);
		ck_assert_uint_eq(st.pending, 10);
		ck_assert_uint_eq(st.evicted_total, k + 1);
		ck_assert_uint_eq(st.dropped_total, 0);
		ck_assert_uint_eq(st.appended_total, 10 + k + 1);
	}
	ck_assert_int_eq(spool_close(s), 0);
}
END_TEST

/* "the lowest severity present" even when the newcomer is lower still. */
START_TEST(test_evict_lowest_present)
{
	struct spool *s = open_limited(SPOOL_SYNC, 5, 0, SPOOL_FULL_EVICT, 0.25);
	for (uint64_t i = 0; i < 5; i++)
		ck_assert_int_eq(append_n(s, SPOOL_SEV_ERROR, i, 0), 0);
	ck_assert_int_eq(append_n(s, SPOOL_SEV_DEBUG, 5, 0), 0);
	uint64_t want1[5] = {1, 2, 3, 4, 5};
	assert_pending_ns(s, want1, 5);
	/* now the debug one is lowest */
	ck_assert_int_eq(append_n(s, SPOOL_SEV_FATAL, 6, 0), 0);
	uint64_t want2[5] = {1, 2, 3, 4, 6};
	assert_pending_ns(s, want2, 5);
	ck_assert_uint_eq(tu_stats(s).evicted_total, 2);
	ck_assert_int_eq(spool_close(s), 0);
}
END_TEST

/* Stored size of one record with payload pad `pad` (header included). */
static uint64_t stored_size(size_t pad, size_t *payload_len)
{
	char probe[PATH_MAX];
	tu_join(probe, sizeof(probe), g_dir, "probe");
	struct spool_options o;
	tu_opts(&o, SPOOL_SYNC);
	struct spool *s = tu_open(probe, &o);
	struct tu_buf b;
	tu_payload(&b, 1, 1, "full", pad);
	ck_assert_int_eq(spool_append(s, SPOOL_SEV_INFO, b.data, b.len), 0);
	if (payload_len)
		*payload_len = b.len;
	tu_buf_free(&b);
	uint64_t sz = tu_stats(s).pending_bytes;
	ck_assert_int_eq(spool_close(s), 0);
	tu_rmrf(probe);
	return sz;
}

START_TEST(test_max_bytes_drop)
{
	uint64_t S = stored_size(100, NULL);
	struct spool *s = open_limited(SPOOL_SYNC, 0, 3 * S + S / 2, SPOOL_FULL_DROP, 0.25);
	for (uint64_t i = 0; i < 3; i++)
		ck_assert_int_eq(append_n(s, SPOOL_SEV_INFO, i, 100), 0);
	ck_assert_int_eq(append_n(s, SPOOL_SEV_INFO, 3, 100), SPOOL_EFULL);
	struct spool_stats st = tu_stats(s);
	ck_assert_uint_eq(st.pending, 3);
	ck_assert_uint_eq(st.pending_bytes, 3 * S);
	ck_assert_uint_eq(st.dropped_total, 1);
	/* a smaller record still fits in what is left */
	ck_assert_int_eq(append_n(s, SPOOL_SEV_INFO, 4, 0), 0);
	ck_assert_uint_le(tu_stats(s).pending_bytes, 3 * S + S / 2);
	ck_assert_int_eq(spool_close(s), 0);
}
END_TEST

START_TEST(test_max_bytes_evict)
{
	size_t small_len = 0;
	uint64_t S = stored_size(100, &small_len);
	uint64_t H = S - small_len;
	uint64_t limit = 3 * S + S / 2;
	struct spool *s = open_limited(SPOOL_SYNC, 0, limit, SPOOL_FULL_EVICT, 0.25);
	ck_assert_int_eq(append_n(s, SPOOL_SEV_WARN, 0, 100), 0);
	ck_assert_int_eq(append_n(s, SPOOL_SEV_DEBUG, 1, 100), 0);
	ck_assert_int_eq(append_n(s, SPOOL_SEV_INFO, 2, 100), 0);
	/* a record of about 2 S: debug 1 and info 2 must go, warn 0 stays */
	struct tu_buf big;
	tu_payload(&big, 1, 3, "full", 100 + (size_t)S);
	uint64_t B = big.len + H;
	ck_assert_uint_gt(B + S, limit - S); /* evicting one is not enough */
	ck_assert_uint_le(B + S, limit);     /* evicting two is */
	ck_assert_int_eq(spool_append(s, SPOOL_SEV_ERROR, big.data, big.len), 0);
	uint64_t want[2] = {0, 3};
	assert_pending_ns(s, want, 2);
	struct spool_stats st = tu_stats(s);
	ck_assert_uint_eq(st.evicted_total, 2);
	ck_assert_uint_eq(st.pending_bytes, S + B);
	tu_buf_free(&big);
	ck_assert_int_eq(spool_close(s), 0);
}
END_TEST

/* Records over max_record_bytes, or over max_bytes itself, are refused with
 * SPOOL_ETOOBIG in every mode and policy, and nothing is evicted for them. */
START_TEST(test_too_big)
{
	enum spool_durability mode = tu_modes[_i % TU_NMODES];
	enum spool_full_policy pol = _i < TU_NMODES ? SPOOL_FULL_DROP : SPOOL_FULL_EVICT;
	struct spool_options o;
	tu_opts(&o, mode);
	o.max_record_bytes = 1024;
	o.full_policy = pol;
	struct spool *s = tu_open(g_path, &o);
	ck_assert_int_eq(append_n(s, SPOOL_SEV_DEBUG, 0, 500), 0);
	ck_assert_int_eq(append_n(s, SPOOL_SEV_FATAL, 1, 2000), SPOOL_ETOOBIG);
	ck_assert_int_eq(append_n(s, SPOOL_SEV_FATAL, 2, 1 << 20), SPOOL_ETOOBIG);
	ck_assert_int_eq(spool_sync(s, 30.0, NULL), 0);
	ck_assert_int_eq(spool_close(s), 0);

	/* bigger than max_bytes: can never fit, so no eviction for it */
	tu_opts(&o, mode);
	o.max_bytes = 600;
	o.full_policy = pol;
	s = tu_open(g_path, &o);
	ck_assert_int_eq(append_n(s, SPOOL_SEV_FATAL, 3, 1000), SPOOL_ETOOBIG);
	ck_assert_int_eq(spool_sync(s, 30.0, NULL), 0);
	struct spool_stats st = tu_stats(s);
	ck_assert_uint_eq(st.pending, 1);
	ck_assert_uint_eq(st.appended_total, 1);
	ck_assert_uint_eq(st.evicted_total, 0);
	uint64_t want[1] = {0};
	assert_pending_ns(s, want, 1);
	ck_assert_int_eq(spool_close(s), 0);
}
END_TEST

/* Staged modes with DROP: the check uses the last known count, but a full
 * spool is refused eventually, and with a sync after each append nearly at
 * once. */
START_TEST(test_staged_drop_refuses)
{
	enum spool_durability mode = _i == 0 ? SPOOL_COMMIT : SPOOL_BUFFERED;
	struct spool_options o;
	tu_opts(&o, mode);
	o.max_events = 10;
	o.full_policy = SPOOL_FULL_DROP;
	o.flush_interval_seconds = 0.05;
	struct spool *s = tu_open(g_path, &o);

	uint64_t ok = 0;
	int rc = 0;
	for (uint64_t i = 0; i < 20; i++) {
		rc = append_n(s, SPOOL_SEV_INFO, i, 0);
		if (rc != 0)
			break;
		ok++;
		ck_assert_int_eq(spool_sync(s, 30.0, NULL), 0);
	}
	ck_assert_msg(rc == SPOOL_EFULL, "%s: no EFULL in 20 synced appends (last rc %d)",
		      tu_mode_label(mode), rc);
	ck_assert_msg(ok >= 10 && ok <= 12, "%s: %" PRIu64 " appends accepted with max_events 10",
		      tu_mode_label(mode), ok);
	ck_assert_int_eq(spool_sync(s, 30.0, NULL), 0);
	struct spool_stats st = tu_stats(s);
	ck_assert_uint_eq(st.pending, ok);
	ck_assert_uint_ge(st.dropped_total, 1);

	/* without syncs: refused eventually */
	ck_assert_uint_eq(tu_ack_all(s), ok);
	ok = 0;
	rc = 0;
	double deadline = tu_now() + 60.0;
	for (uint64_t i = 0; i < 2000000 && tu_now() < deadline; i++) {
		rc = append_n(s, SPOOL_SEV_INFO, 100 + (i % 20), 0);
		if (rc != 0)
			break;
		ok++;
	}
	ck_assert_msg(rc == SPOOL_EFULL, "%s: no EFULL after %" PRIu64 " unsynced appends (rc %d)",
		      tu_mode_label(mode), ok, rc);
	ck_assert_int_eq(spool_sync(s, 30.0, NULL), 0);
	st = tu_stats(s);
	ck_assert_uint_eq(st.pending, ok); /* every accepted record is stored */
	printf("%s drop: %" PRIu64 " unsynced appends accepted before EFULL (max_events 10)\n",
	       tu_mode_label(mode), ok);
	ck_assert_int_eq(spool_close(s), 0);
}
END_TEST

static Suite *full_suite(void)
{
	Suite *s = suite_create("spool-full");
	TCase *tc = tcase_create("full");
	tcase_add_checked_fixture(tc, setup, teardown);
	tu_add_cleanup_fixture(tc);
	tcase_set_timeout(tc, 150);
	tcase_add_test(tc, test_drop);
	tcase_add_test(tc, test_block_times_out);
	tcase_add_test(tc, test_block_thread_makes_room);
	tcase_add_test(tc, test_block_process_makes_room);
	tcase_add_test(tc, test_evict_order);
	tcase_add_test(tc, test_evict_lowest_present);
	tcase_add_test(tc, test_max_bytes_drop);
	tcase_add_test(tc, test_max_bytes_evict);
	tcase_add_loop_test(tc, test_too_big, 0, 2 * TU_NMODES);
	tcase_add_loop_test(tc, test_staged_drop_refuses, 0, 2);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return tc_run_forked(full_suite());
}
