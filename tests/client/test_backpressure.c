/* test_backpressure.c — the client's backpressure (docs/client.md): no
 * sleep while the spool is below half full, so that programs log at full
 * speed through an outage; past half, a sleep that grows toward the agent's
 * send time per event as the spool fills, capped by
 * max_enqueue_sleep_seconds.  No agent runs in these tests (no endpoint):
 * the spool only fills, as it does offline.  Times are compared within one
 * run, with wide margins. */
#include <check.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "check_main.h"
#include <spool/mlog.h>
#include <spool/spool.h>

#include "harness.h"
#include "spawn_util.h"


static struct th_dir dir;

static void setup(void)
{
	su_clear_env();
	th_dir_make(&dir, "backpressure");
	setenv("MASTER_LOG_SPOOL_DIR", dir.spool, 1);
}

static void teardown(void)
{
	mlog_shutdown();
	th_dir_remove(&dir);
}

static struct spool *open_sync(void)
{
	struct spool_options o;
	spool_options_init(&o);
	o.durability = SPOOL_SYNC;
	struct spool *s;
	char err[512];
	ck_assert_msg(spool_open(dir.spool, &o, &s, err, sizeof(err)) == 0, "%s", err);
	return s;
}

/* The agent's send time per event, as spool-agent publishes it. */
static void put_spe(const char *value)
{
	struct spool *s = open_sync();
	ck_assert_int_eq(spool_meta_put(s, "agent.send_seconds_per_event", value, strlen(value)),
	                 0);
	spool_close(s);
}

/* Adds n events waiting for an agent, in one transaction. */
static void fill(size_t n)
{
	static const unsigned char ev[] = {0x81, 0xa7, 'm', 'e', 's', 's', 'a', 'g', 'e',
	                                   0xa6, 'w', 'a', 'i', 't', 'e', 'd'};
	struct spool_input *in = malloc(n * sizeof(*in));
	ck_assert_ptr_nonnull(in);
	for (size_t i = 0; i < n; i++)
		in[i] = (struct spool_input){SPOOL_SEV_INFO, ev, sizeof(ev)};
	struct spool *s = open_sync();
	ck_assert_int_eq(spool_append_many(s, in, n), 0);
	spool_close(s);
	free(in);
}

static uint64_t pending(void)
{
	struct spool *s = open_sync();
	struct spool_stats st;
	ck_assert_int_eq(spool_stats(s, &st), 0);
	spool_close(s);
	return st.pending;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

static double median10(double *v)
{
	qsort(v, 10, sizeof(*v), cmp_double);
	return (v[4] + v[5]) / 2;
}

/* Offline, with 5,000 events waiting in a spool far from full and the
 * agent's last figure at 6 ms per event (the seed sleeps that long after
 * every call once more than batch_size events wait), 1,000 mlog() calls
 * with the default backpressure take at most 1.5 times as long as 1,000
 * calls with it off.  The two run in the same process, interleaved in
 * blocks of 100 (on off off on ...), and each side's typical block (the
 * median of 10) is compared: a call takes microseconds, so one commit of
 * the ring or one preemption on a shared machine would otherwise decide
 * the ratio.  A sleep would lengthen every block alike (the seed's rule
 * makes the ratio about 1,000).  A noisy attempt is measured again, up to
 * 3 times. */
START_TEST(test_backpressure_free_far_from_full)
{
	put_spe("0.006");
	fill(5000);
	struct mlog_client *off;
	char err[512];
	ck_assert_msg(mlog_client_new(&(struct mlog_config){.backpressure = MLOG_OFF}, &off, err,
	                              sizeof(err)) == 0,
	              "%s", err);
	ck_assert(mlog("warm up").ok && mlog_client_info(off, "warm up").ok);
	double ratio = 0;
	for (int attempt = 0; attempt < 3; attempt++) {
		double t_on[10], t_off[10], sum_on = 0, sum_off = 0;
		int n_on = 0, n_off = 0;
		for (int block = 0; block < 20; block++) {
			bool on = block % 4 == 0 || block % 4 == 3;
			double t0 = th_now();
			for (int i = 0; i < 100; i++) {
				struct mlog_result r = on ? mlog("on %d %d", block, i)
				                          : mlog_client_info(off, "off %d %d", block, i);
				ck_assert_msg(r.ok, "%s", r.error);
			}
			double t = th_now() - t0;
			if (on) {
				t_on[n_on++] = t;
				sum_on += t;
			} else {
				t_off[n_off++] = t;
				sum_off += t;
			}
		}
		ratio = median10(t_on) / median10(t_off);
		printf("attempt %d: 1,000 calls with backpressure %.4f s, without %.4f s; median "
		       "block of 100 %.3f ms and %.3f ms: ratio %.2f\n",
		       attempt + 1, sum_on, sum_off, median10(t_on) * 1e3, median10(t_off) * 1e3,
		       ratio);
		if (ratio <= 1.5)
			break;
	}
	mlog_client_free(off);
	mlog_shutdown();
	uint64_t n = pending();
	ck_assert_uint_ge(n, 5000 + 2000 + 2);
	ck_assert_msg(ratio <= 1.5,
	              "with %llu events waiting, backpressure made mlog() %.2f times slower",
	              (unsigned long long)n, ratio);
}
END_TEST

/* Past half full the sleep engages and grows toward the send time per
 * event (50 ms here), as the spool fills: with max_queue_size 1000, 20
 * calls at 400 waiting events do not sleep, at 700 they sleep about 20 ms
 * each, at 900 about 40 ms each (sleeps never end early, so the lower
 * bounds are firm). */
START_TEST(test_backpressure_grows_past_half)
{
	put_spe("0.05");
	static const size_t level[3] = {400, 700, 900};
	double per[3];
	size_t have = 0;
	for (int i = 0; i < 3; i++) {
		fill(level[i] - have);
		struct mlog_client *c;
		ck_assert_int_eq(mlog_client_new(&(struct mlog_config){.max_queue_size = 1000}, &c,
		                                 NULL, 0),
		                 0);
		double t0 = th_now();
		for (int k = 0; k < 20; k++)
			ck_assert(mlog_client_info(c, "at %zu: %d", level[i], k).ok);
		per[i] = (th_now() - t0) / 20;
		mlog_client_free(c); /* commits its 20 */
		have = level[i] + 20;
		printf("%zu of 1000 waiting: %.1f ms per call\n", level[i], per[i] * 1e3);
	}
	ck_assert_uint_eq(pending(), have);
	ck_assert_msg(per[0] < 0.005, "below half full: %.1f ms per call", per[0] * 1e3);
	ck_assert_msg(per[1] >= 0.018, "70%% full: %.1f ms per call, want about 20", per[1] * 1e3);
	ck_assert_msg(per[2] >= 0.036, "90%% full: %.1f ms per call, want about 40", per[2] * 1e3);
	ck_assert_msg(per[2] > per[1] + 0.01, "the sleep did not grow from 70%% (%.1f ms) to 90%% "
	                                      "full (%.1f ms)",
	              per[1] * 1e3, per[2] * 1e3);
}
END_TEST

/* The agent claims 1000 s per event.  Below half full nothing sleeps; past
 * it the sleep is capped by max_enqueue_sleep_seconds; with backpressure
 * off nothing sleeps.  Were any rule broken, the calls below would sleep
 * for hours and the test would fail by its timeout. */
START_TEST(test_backpressure_capped)
{
	put_spe("1000.0");
	setenv("MASTER_LOG_MAX_QUEUE_SIZE", "100", 1);
	setenv("MASTER_LOG_MAX_ENQUEUE_SLEEP_SECONDS", "60", 1);
	for (int i = 0; i < 40; i++) /* at most 40% full: no sleep at all */
		ck_assert(mlog("calm %d", i).ok);
	mlog_shutdown();
	fill(30);
	ck_assert_int_eq(mlog_configure(&(struct mlog_config){.max_enqueue_sleep_seconds = 0.01}),
	                 0);
	for (int i = 0; i < 20; i++) /* 70% full and more: capped sleeps */
		ck_assert(mlog("busy %d", i).ok);
	ck_assert_int_eq(mlog_configure(&(struct mlog_config){.max_queue_size = MLOG_NONE,
	                                                      .max_enqueue_sleep_seconds = 60,
	                                                      .backpressure = MLOG_OFF}),
	                 0);
	for (int i = 0; i < 20; i++)
		ck_assert(mlog("unlimited %d", i).ok);
	mlog_shutdown();
	ck_assert_uint_eq(pending(), 110);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("client-backpressure");
	struct {
		const char *name;
		const TTest *t;
	} tests[] = {
	    {"far-from-full", test_backpressure_free_far_from_full},
	    {"grows", test_backpressure_grows_past_half},
	    {"capped", test_backpressure_capped},
	};
	for (size_t i = 0; i < sizeof(tests) / sizeof(tests[0]); i++) {
		TCase *tc = tcase_create(tests[i].name);
		tcase_add_checked_fixture(tc, setup, teardown);
		tcase_set_timeout(tc, 60);
		tcase_add_test(tc, tests[i].t);
		suite_add_tcase(s, tc);
	}
	return s;
}

int main(void)
{
	return tc_run(suite());
}
