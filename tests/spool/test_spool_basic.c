/* test_spool_basic.c — the single-process contract of <spool/spool.h>:
 * round trip and order in every durability mode, read limits, ack, sequence
 * numbers, stats, meta, settle and dead letters, error text, option helpers,
 * open errors and file modes. */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "check_main.h"
#include "record.h"
#include "testutil.h"

static char g_dir[PATH_MAX];

static void setup(void)
{
	tu_mkdtemp(g_dir, sizeof(g_dir), "basic");
}

static void teardown(void)
{
	tu_rmrf(g_dir);
}

static int64_t wall_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* Opens g_dir/spool in mode d with extra tweaks. */
static struct spool *open_mode(enum spool_durability d, struct spool_options *o_out)
{
	struct spool_options o;
	tu_opts(&o, d);
	if (o_out)
		*o_out = o;
	char path[PATH_MAX];
	tu_join(path, sizeof(path), g_dir, "spool");
	return tu_open(path, &o);
}

static void sync_ok(struct spool *s, uint64_t *last)
{
	int rc = spool_sync(s, 30.0, last);
	ck_assert_msg(rc == 0, "spool_sync = %d (%s)", rc, spool_strerror(rc));
}

/* ------------------------------------------------------------------ */

/* The record checksum is zlib's CRC-32 over header bytes 0-3, 8-15 and
 * the payload: the values below were computed with zlib, so records
 * written by any version of the library (zlib's crc32() before, libdeflate
 * now) check alike. */
START_TEST(test_record_crc_format)
{
	static const unsigned char small[] = {0x81, 0xa1, 0x61, 0xa1, 0x62};
	unsigned char big[306] = {0x81, 0xa1, 0x6d, 0xda, 0x01, 0x2c};
	for (int i = 0; i < 300; i++)
		big[6 + i] = (unsigned char)((i * 7) & 0x7f);
	struct {
		const unsigned char *p;
		size_t len;
		uint32_t crc;
	} cases[] = {{small, sizeof(small), 0x42aa7b92u}, {big, sizeof(big), 0xbb5cde65u}};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		unsigned char rec[SPOOL_REC_HDR + 306];
		spool_rec_header(rec, 2, (int64_t)0x0102030405060708LL, cases[i].p, cases[i].len);
		memcpy(rec + SPOOL_REC_HDR, cases[i].p, cases[i].len);
		ck_assert_uint_eq(rec[0], SPOOL_FORMAT_VERSION);
		uint32_t crc = (uint32_t)rec[4] | (uint32_t)rec[5] << 8 | (uint32_t)rec[6] << 16 |
			       (uint32_t)rec[7] << 24;
		ck_assert_uint_eq(crc, cases[i].crc);
		const char *why = NULL;
		ck_assert_int_eq(spool_rec_check(rec, SPOOL_REC_HDR + cases[i].len, &why), 0);
		rec[SPOOL_REC_HDR + cases[i].len - 1] ^= 1; /* one bit of payload */
		ck_assert_int_eq(spool_rec_check(rec, SPOOL_REC_HDR + cases[i].len, &why), -1);
		ck_assert_str_eq(why, "record checksum mismatch");
	}
}
END_TEST

START_TEST(test_options_defaults)
{
	struct spool_options o;
	memset(&o, 0x5a, sizeof(o));
	spool_options_init(&o);
	ck_assert_int_eq(o.durability, SPOOL_COMMIT);
	ck_assert_uint_eq(o.max_events, 0);
	ck_assert_uint_eq(o.max_bytes, (uint64_t)1 << 30);
	ck_assert_int_eq(o.full_policy, SPOOL_FULL_BLOCK);
	ck_assert_double_eq_tol(o.full_timeout_seconds, 0.25, 1e-9);
	ck_assert_double_eq_tol(o.commit_interval_seconds, 0.010, 1e-9);
	ck_assert_double_eq_tol(o.flush_interval_seconds, 1.0, 1e-9);
	ck_assert_uint_eq(o.flush_batch, 100);
	ck_assert_uint_eq(o.ring_bytes, (size_t)4 << 20);
	ck_assert_uint_eq(o.max_record_bytes, ((size_t)1 << 20) + ((size_t)64 << 10));
	ck_assert_uint_eq(o.initial_map_bytes, (size_t)64 << 20);
	ck_assert_uint_eq(o.max_readers, 1022);
}
END_TEST

START_TEST(test_parse_helpers)
{
	enum spool_durability d = SPOOL_COMMIT;
	ck_assert_int_eq(spool_durability_parse("sync", &d), 0);
	ck_assert_int_eq(d, SPOOL_SYNC);
	ck_assert_int_eq(spool_durability_parse("buffered", &d), 0);
	ck_assert_int_eq(d, SPOOL_BUFFERED);
	ck_assert_int_eq(spool_durability_parse("commit", &d), 0);
	ck_assert_int_eq(d, SPOOL_COMMIT);
	d = SPOOL_SYNC;
	ck_assert_int_eq(spool_durability_parse("fast", &d), -EINVAL);
	ck_assert_int_eq(spool_durability_parse("", &d), -EINVAL);
	ck_assert_int_eq(spool_durability_parse(NULL, &d), -EINVAL);
	ck_assert_int_eq(d, SPOOL_SYNC); /* untouched on failure */

	for (int i = 0; i < TU_NMODES; i++) {
		const char *name = spool_durability_name(tu_modes[i]);
		ck_assert_ptr_nonnull(name);
		ck_assert_str_eq(name, tu_mode_label(tu_modes[i]));
		enum spool_durability back;
		ck_assert_int_eq(spool_durability_parse(name, &back), 0);
		ck_assert_int_eq(back, tu_modes[i]);
	}

	enum spool_full_policy p = SPOOL_FULL_BLOCK;
	ck_assert_int_eq(spool_full_policy_parse("drop", &p), 0);
	ck_assert_int_eq(p, SPOOL_FULL_DROP);
	ck_assert_int_eq(spool_full_policy_parse("evict", &p), 0);
	ck_assert_int_eq(p, SPOOL_FULL_EVICT);
	ck_assert_int_eq(spool_full_policy_parse("block", &p), 0);
	ck_assert_int_eq(p, SPOOL_FULL_BLOCK);
	ck_assert_int_eq(spool_full_policy_parse("wait", &p), -EINVAL);
	ck_assert_int_eq(spool_full_policy_parse(NULL, &p), -EINVAL);

	static const char *const sev[] = {"debug", "info", "warn", "error", "fatal"};
	for (int i = 0; i < 5; i++) {
		int v = -1;
		ck_assert_int_eq(spool_severity_parse(sev[i], &v), 0);
		ck_assert_int_eq(v, i);
		ck_assert_str_eq(spool_severity_name(i), sev[i]);
	}
	int v = -1;
	ck_assert_int_eq(spool_severity_parse("warning", &v), 0);
	ck_assert_int_eq(v, SPOOL_SEV_WARN);
	ck_assert_int_eq(spool_severity_parse("critical", &v), -EINVAL);
	ck_assert_int_eq(spool_severity_parse("", &v), -EINVAL);
	ck_assert_int_eq(spool_severity_parse(NULL, &v), -EINVAL);
}
END_TEST

START_TEST(test_strerror_codes)
{
	static const int codes[] = {SPOOL_EFULL,   SPOOL_ETOOBIG,	SPOOL_ECORRUPT,
				    SPOOL_ELOCKED, SPOOL_EFORKED,	SPOOL_EVERSION,
				    SPOOL_ENOTFOUND, SPOOL_EBACKEND, SPOOL_ECLOSED};
	const size_t n = sizeof(codes) / sizeof(codes[0]);
	for (size_t i = 0; i < n; i++) {
		const char *t = spool_strerror(codes[i]);
		ck_assert_msg(t != NULL && t[0] != '\0', "no text for code %d", codes[i]);
		for (size_t j = 0; j < i; j++)
			ck_assert_msg(strcmp(t, spool_strerror(codes[j])) != 0,
				      "codes %d and %d share the text \"%s\"", codes[i], codes[j], t);
		/* Library text must not be confused with an errno's. */
		ck_assert_str_ne(t, spool_strerror(-ENOSPC));
	}
	static const int errnos[] = {ENOSPC, EINVAL, ENOENT, EACCES, ETIMEDOUT, ENOMEM, EIO};
	for (size_t i = 0; i < sizeof(errnos) / sizeof(errnos[0]); i++) {
		const char *t = spool_strerror(-errnos[i]);
		ck_assert_msg(t != NULL && t[0] != '\0', "no text for -%d", errnos[i]);
		ck_assert_msg(strcmp(t, strerror(errnos[i])) == 0 ||
				      strstr(t, strerror(errnos[i])) != NULL,
			      "spool_strerror(-%d) = \"%s\", expected the errno text \"%s\"",
			      errnos[i], t, strerror(errnos[i]));
	}
	ck_assert_str_ne(spool_strerror(-ENOSPC), spool_strerror(-EINVAL));
	const char *ok = spool_strerror(0);
	ck_assert_ptr_nonnull(ok);
	/* Codes never issued still get some text, never NULL. */
	ck_assert_ptr_nonnull(spool_strerror(-30650));
	ck_assert_ptr_nonnull(spool_strerror(12345));
	ck_assert_ptr_nonnull(spool_strerror(INT_MIN));
}
END_TEST

START_TEST(test_default_dir)
{
	char buf[PATH_MAX];
	setenv("MASTER_LOG_SPOOL_DIR", "/srv/some/spool", 1);
	ck_assert_int_eq(spool_default_dir(buf, sizeof(buf)), 0);
	ck_assert_str_eq(buf, "/srv/some/spool");
	char small[8];
	ck_assert_int_eq(spool_default_dir(small, sizeof(small)), -ENAMETOOLONG);

	unsetenv("MASTER_LOG_SPOOL_DIR");
	if (geteuid() == 0) {
		ck_assert_int_eq(spool_default_dir(buf, sizeof(buf)), 0);
		ck_assert_str_eq(buf, "/var/spool/master-log");
	} else {
		setenv("XDG_STATE_HOME", "/xdg/state", 1);
		ck_assert_int_eq(spool_default_dir(buf, sizeof(buf)), 0);
		ck_assert_str_eq(buf, "/xdg/state/master-log/spool");
		unsetenv("XDG_STATE_HOME");
		setenv("HOME", "/home/u", 1);
		ck_assert_int_eq(spool_default_dir(buf, sizeof(buf)), 0);
		ck_assert_str_eq(buf, "/home/u/.local/state/master-log/spool");
		unsetenv("HOME");
		ck_assert_int_eq(spool_default_dir(buf, sizeof(buf)), -ENOENT);
	}
}
END_TEST

/* Round trip: every record comes back in order, bytes identical, with its
 * severity, a plausible enqueue time and strictly increasing sequences. */
START_TEST(test_roundtrip)
{
	enum spool_durability mode = tu_modes[_i];
	struct spool *s = open_mode(mode, NULL);
	const int N = 60;
	struct tu_buf *p = calloc(N, sizeof(*p));
	ck_assert_ptr_nonnull(p);

	struct spool_stats st0 = tu_stats(s);
	ck_assert_uint_eq(st0.pending, 0);
	ck_assert_uint_eq(st0.appended_total, 0);

	int64_t t0 = wall_us();
	for (int i = 0; i < N; i++) {
		char msg[64];
		snprintf(msg, sizeof(msg), "round trip %s #%d", tu_mode_label(mode), i);
		tu_payload(&p[i], 7, (uint64_t)i, msg, (size_t)(i * 37) % 400);
		int rc = spool_append(s, i % 5, p[i].data, p[i].len);
		ck_assert_msg(rc == 0, "append %d = %d (%s)", i, rc, spool_strerror(rc));
	}
	uint64_t last = 0;
	sync_ok(s, &last);
	int64_t t1 = wall_us();

	struct tu_rec *r = NULL;
	size_t n = tu_read_all(s, false, &r);
	ck_assert_uint_eq(n, (size_t)N);
	for (int i = 0; i < N; i++) {
		ck_assert_uint_eq(r[i].len, p[i].len);
		ck_assert_mem_eq(r[i].data, p[i].data, p[i].len);
		ck_assert_int_eq(r[i].severity, i % 5);
		ck_assert_msg(r[i].enqueue_us >= t0 - 2000000 && r[i].enqueue_us <= t1 + 2000000,
			      "record %d enqueue_us %" PRId64 " outside [%" PRId64 ", %" PRId64 "]",
			      i, r[i].enqueue_us, t0, t1);
		ck_assert_int_eq(r[i].dead_status, 0);
		ck_assert_ptr_null(r[i].dead_reason);
		ck_assert_uint_gt(r[i].seq, 0);
		if (i > 0)
			ck_assert_uint_gt(r[i].seq, r[i - 1].seq);
		struct tu_event ev;
		ck_assert_int_eq(tu_decode(r[i].data, r[i].len, &ev), 0);
		ck_assert_uint_eq(ev.n, (uint64_t)i);
	}
	ck_assert_uint_ge(r[0].seq, st0.next_seq);
	ck_assert_uint_eq(last, r[N - 1].seq);

	struct spool_stats st = tu_stats(s);
	ck_assert_uint_eq(st.pending, (uint64_t)N);
	ck_assert_uint_eq(st.appended_total, (uint64_t)N);
	ck_assert_uint_eq(st.acked_total, 0);
	ck_assert_uint_eq(st.dead, 0);
	ck_assert_uint_gt(st.next_seq, r[N - 1].seq);

	tu_recs_free(r, n);
	for (int i = 0; i < N; i++)
		tu_buf_free(&p[i]);
	free(p);
	ck_assert_int_eq(spool_close(s), 0);
}
END_TEST

/* after_seq, max_events, max_bytes; the first record always comes back. */
START_TEST(test_read_limits)
{
	enum spool_durability mode = tu_modes[_i];
	struct spool *s = open_mode(mode, NULL);
	enum { N = 20 };
	struct tu_buf p[N];
	/* Record 0 is big; the rest grow slowly. */
	for (int i = 0; i < N; i++) {
		tu_payload(&p[i], 1, (uint64_t)i, "limits", i == 0 ? 5000 : (size_t)i * 10);
		ck_assert_int_eq(spool_append(s, SPOOL_SEV_INFO, p[i].data, p[i].len), 0);
	}
	sync_ok(s, NULL);

	struct tu_rec *all = NULL;
	ck_assert_uint_eq(tu_read_all(s, false, &all), N);

	struct spool_batch *b = NULL;
	/* max_events */
	ck_assert_int_eq(spool_read_batch(s, 0, 7, 0, &b), 0);
	ck_assert_uint_eq(spool_batch_count(b), 7);
	for (size_t i = 0; i < 7; i++)
		ck_assert_uint_eq(spool_batch_records(b)[i].seq, all[i].seq);
	spool_batch_release(b);

	/* after_seq: starts right after the given sequence */
	ck_assert_int_eq(spool_read_batch(s, all[9].seq, 3, 0, &b), 0);
	ck_assert_uint_eq(spool_batch_count(b), 3);
	ck_assert_uint_eq(spool_batch_records(b)[0].seq, all[10].seq);
	ck_assert_mem_eq(spool_batch_records(b)[0].data, p[10].data, p[10].len);
	spool_batch_release(b);

	/* after_seq between sequences (not itself a key) still works */
	ck_assert_int_eq(spool_read_batch(s, all[N - 1].seq, 0, 0, &b), 0);
	ck_assert_uint_eq(spool_batch_count(b), 0);
	spool_batch_release(b);

	/* max_bytes: stops before the record that would pass the limit */
	size_t two = p[1].len + p[2].len;
	ck_assert_int_eq(spool_read_batch(s, all[0].seq, 0, two, &b), 0);
	ck_assert_uint_eq(spool_batch_count(b), 2);
	spool_batch_release(b);
	ck_assert_int_eq(spool_read_batch(s, all[0].seq, 0, two - 1, &b), 0);
	ck_assert_uint_eq(spool_batch_count(b), 1);
	spool_batch_release(b);
	ck_assert_int_eq(spool_read_batch(s, all[0].seq, 0, two + p[3].len, &b), 0);
	ck_assert_uint_eq(spool_batch_count(b), 3);
	spool_batch_release(b);

	/* the first record always comes back, whatever its size */
	ck_assert_int_eq(spool_read_batch(s, 0, 0, 100, &b), 0);
	ck_assert_uint_eq(spool_batch_count(b), 1);
	ck_assert_uint_eq(spool_batch_records(b)[0].len, p[0].len);
	ck_assert_mem_eq(spool_batch_records(b)[0].data, p[0].data, p[0].len);
	spool_batch_release(b);
	ck_assert_int_eq(spool_read_batch(s, 0, 0, 1, &b), 0);
	ck_assert_uint_eq(spool_batch_count(b), 1);
	spool_batch_release(b);

	/* both limits: the smaller one wins */
	ck_assert_int_eq(spool_read_batch(s, all[0].seq, 2, 1 << 20, &b), 0);
	ck_assert_uint_eq(spool_batch_count(b), 2);
	spool_batch_release(b);

	/* two batches held at once both stay valid */
	struct spool_batch *b2 = NULL;
	ck_assert_int_eq(spool_read_batch(s, 0, 5, 0, &b), 0);
	ck_assert_int_eq(spool_read_batch(s, all[4].seq, 5, 0, &b2), 0);
	ck_assert_mem_eq(spool_batch_records(b)[4].data, p[4].data, p[4].len);
	ck_assert_mem_eq(spool_batch_records(b2)[0].data, p[5].data, p[5].len);
	spool_batch_release(b2);
	spool_batch_release(b);
	spool_batch_release(NULL);

	tu_recs_free(all, N);
	for (int i = 0; i < N; i++)
		tu_buf_free(&p[i]);
	ck_assert_int_eq(spool_close(s), 0);
}
END_TEST

START_TEST(test_ack_reread)
{
	enum spool_durability mode = tu_modes[_i];
	struct spool *s = open_mode(mode, NULL);
	for (int i = 0; i < 30; i++)
		tu_append_ok(s, SPOOL_SEV_INFO, 1, (uint64_t)i);
	sync_ok(s, NULL);
	struct tu_rec *r = NULL;
	ck_assert_uint_eq(tu_read_all(s, false, &r), 30);

	uint64_t seqs[10];
	for (int i = 0; i < 10; i++)
		seqs[i] = r[i].seq;
	uint64_t del = 99;
	ck_assert_int_eq(spool_ack(s, seqs, 10, &del), 0);
	ck_assert_uint_eq(del, 10);

	struct spool_batch *b = NULL;
	ck_assert_int_eq(spool_read_batch(s, 0, 0, 0, &b), 0);
	ck_assert_uint_eq(spool_batch_count(b), 20);
	ck_assert_uint_eq(spool_batch_records(b)[0].seq, r[10].seq);
	struct tu_event ev;
	ck_assert_int_eq(tu_decode(spool_batch_records(b)[0].data, spool_batch_records(b)[0].len,
				   &ev),
			 0);
	ck_assert_uint_eq(ev.n, 10);
	spool_batch_release(b);

	/* acking again, or sequences that never existed, deletes nothing */
	ck_assert_int_eq(spool_ack(s, seqs, 10, &del), 0);
	ck_assert_uint_eq(del, 0);
	uint64_t mixed[3] = {r[10].seq, r[29].seq + 1000, r[0].seq};
	ck_assert_int_eq(spool_ack(s, mixed, 3, &del), 0);
	ck_assert_uint_eq(del, 1);
	/* ack out of order, in the middle */
	uint64_t mid[2] = {r[20].seq, r[15].seq};
	ck_assert_int_eq(spool_ack(s, mid, 2, NULL), 0);

	struct tu_rec *r2 = NULL;
	size_t n2 = tu_read_all(s, false, &r2);
	ck_assert_uint_eq(n2, 17);
	for (size_t i = 0; i < n2; i++) {
		ck_assert_uint_ne(r2[i].seq, r[15].seq);
		ck_assert_uint_ne(r2[i].seq, r[20].seq);
		if (i)
			ck_assert_uint_gt(r2[i].seq, r2[i - 1].seq);
	}
	struct spool_stats st = tu_stats(s);
	ck_assert_uint_eq(st.pending, 17);
	ck_assert_uint_eq(st.acked_total, 13);
	ck_assert_uint_eq(st.appended_total, 30);
	ck_assert_int_eq(spool_ack(s, NULL, 0, &del), 0);
	ck_assert_uint_eq(del, 0);

	tu_recs_free(r, 30);
	tu_recs_free(r2, n2);
	ck_assert_int_eq(spool_close(s), 0);
}
END_TEST

/* Sequences are strictly increasing and never reused, even after the spool
 * was drained (and reopened). */
START_TEST(test_seq_never_reused)
{
	enum spool_durability mode = tu_modes[_i];
	struct spool_options o;
	tu_opts(&o, mode);
	char path[PATH_MAX];
	tu_join(path, sizeof(path), g_dir, "spool");
	uint64_t high = 0;
	for (int round = 0; round < 3; round++) {
		struct spool *s = tu_open(path, &o);
		struct spool_stats st = tu_stats(s);
		ck_assert_uint_gt(st.next_seq, high);
		for (int k = 0; k < 2; k++) {
			for (int i = 0; i < 5; i++)
				tu_append_ok(s, SPOOL_SEV_INFO, round, (uint64_t)i);
			uint64_t last = 0;
			sync_ok(s, &last);
			struct tu_rec *r = NULL;
			size_t n = tu_read_all(s, false, &r);
			ck_assert_uint_eq(n, 5);
			ck_assert_uint_gt(r[0].seq, high);
			for (size_t i = 1; i < n; i++)
				ck_assert_uint_gt(r[i].seq, r[i - 1].seq);
			ck_assert_uint_eq(last, r[4].seq);
			high = r[4].seq;
			tu_recs_free(r, n);
			/* drain completely, so "last key + 1" alone would reuse */
			ck_assert_uint_eq(tu_ack_all(s), 5);
			st = tu_stats(s);
			ck_assert_uint_eq(st.pending, 0);
			ck_assert_uint_gt(st.next_seq, high);
		}
		ck_assert_int_eq(spool_close(s), 0);
	}
}
END_TEST

START_TEST(test_stats_figures)
{
	struct spool *s = open_mode(SPOOL_SYNC, NULL);
	struct spool_stats st = tu_stats(s);
	ck_assert_uint_eq(st.pending, 0);
	ck_assert_uint_eq(st.pending_bytes, 0);
	ck_assert_uint_eq(st.dead, 0);
	ck_assert_uint_eq(st.appended_total, 0);
	ck_assert_uint_eq(st.acked_total, 0);
	ck_assert_uint_eq(st.dead_total, 0);
	ck_assert_uint_eq(st.evicted_total, 0);
	ck_assert_uint_eq(st.dropped_total, 0);
	ck_assert_uint_eq(st.corrupt_total, 0);
	ck_assert_uint_eq(st.torn_total, 0);
	ck_assert_double_eq(st.oldest_age_seconds, 0.0);
	ck_assert_uint_gt(st.next_seq, 0);
	ck_assert_uint_gt(st.file_bytes, 0);
	ck_assert_uint_ge(st.map_bytes, st.file_bytes);

	struct tu_buf a, b;
	tu_payload(&a, 1, 1, "stats a", 10);
	tu_payload(&b, 1, 2, "stats b", 300);
	ck_assert_int_eq(spool_append(s, SPOOL_SEV_WARN, a.data, a.len), 0);
	st = tu_stats(s);
	ck_assert_uint_eq(st.pending, 1);
	ck_assert_uint_gt(st.pending_bytes, a.len); /* header included */
	uint64_t hdr = st.pending_bytes - a.len;
	ck_assert_msg(hdr <= 256, "per-record overhead %" PRIu64 " bytes is implausible", hdr);
	ck_assert_uint_eq(st.appended_total, 1);
	ck_assert_msg(st.oldest_age_seconds >= 0.0 && st.oldest_age_seconds < 3600.0,
		      "oldest_age_seconds %f", st.oldest_age_seconds);

	ck_assert_int_eq(spool_append(s, SPOOL_SEV_ERROR, b.data, b.len), 0);
	st = tu_stats(s);
	ck_assert_uint_eq(st.pending, 2);
	ck_assert_uint_eq(st.pending_bytes, a.len + b.len + 2 * hdr);
	ck_assert_uint_eq(st.appended_total, 2);

	struct tu_rec *r = NULL;
	ck_assert_uint_eq(tu_read_all(s, false, &r), 2);
	ck_assert_uint_gt(st.next_seq, r[1].seq);

	/* the age of the head grows while it waits */
	tu_sleep(0.05);
	struct spool_stats st2 = tu_stats(s);
	ck_assert_double_gt(st2.oldest_age_seconds, 0.0);

	ck_assert_int_eq(spool_ack(s, &r[0].seq, 1, NULL), 0);
	st = tu_stats(s);
	ck_assert_uint_eq(st.pending, 1);
	ck_assert_uint_eq(st.pending_bytes, b.len + hdr);
	ck_assert_uint_eq(st.acked_total, 1);

	ck_assert_int_eq(spool_dead_letter(s, r[1].seq, 422, "unprocessable"), 0);
	st = tu_stats(s);
	ck_assert_uint_eq(st.pending, 0);
	ck_assert_uint_eq(st.pending_bytes, 0);
	ck_assert_uint_eq(st.dead, 1);
	ck_assert_uint_eq(st.dead_total, 1);
	ck_assert_uint_eq(st.acked_total, 1);
	ck_assert_uint_eq(st.appended_total, 2);
	ck_assert_double_eq(st.oldest_age_seconds, 0.0);

	/* the counters live in the spool, not the handle */
	ck_assert_int_eq(spool_close(s), 0);
	s = open_mode(SPOOL_SYNC, NULL);
	struct spool_stats st3 = tu_stats(s);
	ck_assert_uint_eq(st3.appended_total, 2);
	ck_assert_uint_eq(st3.acked_total, 1);
	ck_assert_uint_eq(st3.dead, 1);
	ck_assert_uint_eq(st3.dead_total, 1);
	ck_assert_uint_eq(st3.next_seq, st.next_seq);

	tu_recs_free(r, 2);
	tu_buf_free(&a);
	tu_buf_free(&b);
	ck_assert_int_eq(spool_close(s), 0);
}
END_TEST

START_TEST(test_meta)
{
	struct spool *s = open_mode(SPOOL_SYNC, NULL);
	char buf[128];
	size_t len = sizeof(buf);
	ck_assert_int_eq(spool_meta_get(s, "agent.last_success", buf, &len), SPOOL_ENOTFOUND);

	ck_assert_int_eq(spool_meta_put(s, "agent.last_success", "1700000000", 10), 0);
	len = sizeof(buf);
	ck_assert_int_eq(spool_meta_get(s, "agent.last_success", buf, &len), 0);
	ck_assert_uint_eq(len, 10);
	ck_assert_mem_eq(buf, "1700000000", 10);

	/* too small a buffer: -ENOSPC with the size needed */
	len = 4;
	ck_assert_int_eq(spool_meta_get(s, "agent.last_success", buf, &len), -ENOSPC);
	ck_assert_uint_eq(len, 10);
	len = 0;
	ck_assert_int_eq(spool_meta_get(s, "agent.last_success", NULL, &len), -ENOSPC);
	ck_assert_uint_eq(len, 10);

	/* overwrite */
	ck_assert_int_eq(spool_meta_put(s, "agent.last_success", "x", 1), 0);
	len = sizeof(buf);
	ck_assert_int_eq(spool_meta_get(s, "agent.last_success", buf, &len), 0);
	ck_assert_uint_eq(len, 1);
	ck_assert_int_eq(buf[0], 'x');

	/* reserved prefix and bad keys */
	ck_assert_int_eq(spool_meta_put(s, "spool.counters", "x", 1), -EINVAL);
	ck_assert_int_eq(spool_meta_put(s, "spool.", "x", 1), -EINVAL);
	len = sizeof(buf);
	ck_assert_int_eq(spool_meta_get(s, "spool.counters", buf, &len), -EINVAL);
	ck_assert_int_eq(spool_meta_put(s, "", "x", 1), -EINVAL);
	ck_assert_int_eq(spool_meta_put(s, NULL, "x", 1), -EINVAL);
	/* "spoolx" and "Spool." are ordinary keys */
	ck_assert_int_eq(spool_meta_put(s, "spoolx", "y", 1), 0);

	char key[300];
	memset(key, 'k', sizeof(key));
	key[255] = '\0';
	ck_assert_int_eq(spool_meta_put(s, key, "255", 3), 0);
	len = sizeof(buf);
	ck_assert_int_eq(spool_meta_get(s, key, buf, &len), 0);
	ck_assert_uint_eq(len, 3);
	key[255] = 'k';
	key[256] = '\0';
	ck_assert_int_eq(spool_meta_put(s, key, "256", 3), -EINVAL);

	/* values up to 64 KiB */
	size_t big = 64 * 1024;
	unsigned char *v = malloc(big + 1);
	unsigned char *back = malloc(big + 1);
	ck_assert_ptr_nonnull(v);
	ck_assert_ptr_nonnull(back);
	for (size_t i = 0; i <= big; i++)
		v[i] = (unsigned char)(i * 131 + 7);
	ck_assert_int_eq(spool_meta_put(s, "big", v, big), 0);
	len = big + 1;
	ck_assert_int_eq(spool_meta_get(s, "big", back, &len), 0);
	ck_assert_uint_eq(len, big);
	ck_assert_mem_eq(back, v, big);
	ck_assert_int_eq(spool_meta_put(s, "bigger", v, big + 1), -EINVAL);
	len = big + 1;
	ck_assert_int_eq(spool_meta_get(s, "bigger", back, &len), SPOOL_ENOTFOUND);

	/* empty value */
	ck_assert_int_eq(spool_meta_put(s, "empty", "", 0), 0);
	len = sizeof(buf);
	ck_assert_int_eq(spool_meta_get(s, "empty", buf, &len), 0);
	ck_assert_uint_eq(len, 0);

	/* shared with other handles and kept across reopen */
	ck_assert_int_eq(spool_close(s), 0);
	s = open_mode(SPOOL_COMMIT, NULL);
	len = sizeof(buf);
	ck_assert_int_eq(spool_meta_get(s, "agent.last_success", buf, &len), 0);
	ck_assert_uint_eq(len, 1);
	ck_assert_int_eq(buf[0], 'x');
	len = big + 1;
	ck_assert_int_eq(spool_meta_get(s, "big", back, &len), 0);
	ck_assert_mem_eq(back, v, big);

	free(v);
	free(back);
	ck_assert_int_eq(spool_close(s), 0);
}
END_TEST

/* spool_settle acks some and dead-letters others in one call. */
START_TEST(test_settle_and_dead)
{
	enum spool_durability mode = tu_modes[_i];
	struct spool *s = open_mode(mode, NULL);
	struct tu_buf p[6];
	for (int i = 0; i < 6; i++) {
		tu_payload(&p[i], 3, (uint64_t)i, "settle", (size_t)i * 3);
		ck_assert_int_eq(spool_append(s, i % 5, p[i].data, p[i].len), 0);
	}
	sync_ok(s, NULL);
	struct tu_rec *r = NULL;
	ck_assert_uint_eq(tu_read_all(s, false, &r), 6);

	int64_t before = wall_us();
	uint64_t acked[3] = {r[0].seq, r[2].seq, r[5].seq + 1000};
	struct spool_reject rej[2] = {
		{.seq = r[1].seq, .status = 400, .reason = "bad request: no message"},
		{.seq = r[4].seq, .status = 413, .reason = "payload too large"},
	};
	uint64_t settled = 0;
	ck_assert_int_eq(spool_settle(s, acked, 3, rej, 2, &settled), 0);
	ck_assert_uint_eq(settled, 4);

	struct tu_rec *pend = NULL;
	size_t np = tu_read_all(s, false, &pend);
	ck_assert_uint_eq(np, 2);
	ck_assert_uint_eq(pend[0].seq, r[3].seq);
	ck_assert_uint_eq(pend[1].seq, r[5].seq);

	struct tu_rec *dead = NULL;
	size_t nd = tu_read_all(s, true, &dead);
	ck_assert_uint_eq(nd, 2);
	ck_assert_uint_eq(dead[0].seq, r[1].seq);
	ck_assert_int_eq(dead[0].dead_status, 400);
	ck_assert_str_eq(dead[0].dead_reason, "bad request: no message");
	ck_assert_uint_eq(dead[0].len, p[1].len);
	ck_assert_mem_eq(dead[0].data, p[1].data, p[1].len);
	ck_assert_int_eq(dead[0].severity, 1);
	ck_assert_int_eq(dead[0].enqueue_us, r[1].enqueue_us);
	ck_assert_uint_eq(dead[1].seq, r[4].seq);
	ck_assert_int_eq(dead[1].dead_status, 413);
	ck_assert_str_eq(dead[1].dead_reason, "payload too large");
	ck_assert_mem_eq(dead[1].data, p[4].data, p[4].len);

	/* dead_us is the time of dead-lettering */
	struct spool_batch *b = NULL;
	ck_assert_int_eq(spool_read_dead(s, 0, 1, &b), 0);
	ck_assert_uint_eq(spool_batch_count(b), 1);
	int64_t dus = spool_batch_records(b)[0].dead_us;
	ck_assert_msg(dus >= before - 2000000 && dus <= wall_us() + 2000000, "dead_us %" PRId64,
		      dus);
	spool_batch_release(b);
	/* read_dead honours after_seq and max_events */
	ck_assert_int_eq(spool_read_dead(s, r[1].seq, 10, &b), 0);
	ck_assert_uint_eq(spool_batch_count(b), 1);
	ck_assert_uint_eq(spool_batch_records(b)[0].seq, r[4].seq);
	spool_batch_release(b);

	struct spool_stats st = tu_stats(s);
	ck_assert_uint_eq(st.pending, 2);
	ck_assert_uint_eq(st.dead, 2);
	ck_assert_uint_eq(st.dead_total, 2);
	ck_assert_uint_eq(st.acked_total, 2);
	ck_assert_uint_eq(st.appended_total, 6);
	ck_assert_uint_eq(st.corrupt_total, 0);

	/* settling already-settled sequences counts nothing */
	ck_assert_int_eq(spool_settle(s, acked, 3, rej, 2, &settled), 0);
	ck_assert_uint_eq(settled, 0);
	st = tu_stats(s);
	ck_assert_uint_eq(st.dead, 2);
	ck_assert_uint_eq(st.acked_total, 2);

	/* the shorthand, with a long reason truncated to 1 KiB */
	char *reason = malloc(5000);
	ck_assert_ptr_nonnull(reason);
	for (int i = 0; i < 4999; i++)
		reason[i] = (char)('a' + i % 26);
	reason[4999] = '\0';
	ck_assert_int_eq(spool_dead_letter(s, r[3].seq, 500, reason), 0);
	ck_assert_int_eq(spool_read_dead(s, r[1].seq, 0, &b), 0);
	ck_assert_uint_eq(spool_batch_count(b), 2);
	const struct spool_record *d = &spool_batch_records(b)[0];
	ck_assert_uint_eq(d->seq, r[3].seq);
	ck_assert_int_eq(d->dead_status, 500);
	ck_assert_ptr_nonnull(d->dead_reason);
	size_t rl = strlen(d->dead_reason);
	ck_assert_msg(rl > 0 && rl <= 1024, "reason kept %zu bytes", rl);
	ck_assert_int_eq(strncmp(d->dead_reason, reason, rl), 0);
	spool_batch_release(b);
	free(reason);

	/* a library code is a valid dead status too, and an empty reason */
	struct spool_reject rj = {.seq = r[5].seq, .status = SPOOL_ECORRUPT, .reason = ""};
	ck_assert_int_eq(spool_settle(s, NULL, 0, &rj, 1, &settled), 0);
	ck_assert_uint_eq(settled, 1);
	st = tu_stats(s);
	ck_assert_uint_eq(st.pending, 0);
	ck_assert_uint_eq(st.dead, 4);
	ck_assert_uint_eq(st.dead_total, 4);

	tu_recs_free(r, 6);
	tu_recs_free(pend, np);
	tu_recs_free(dead, nd);
	for (int i = 0; i < 6; i++)
		tu_buf_free(&p[i]);
	ck_assert_int_eq(spool_close(s), 0);
}
END_TEST

START_TEST(test_append_invalid)
{
	enum spool_durability mode = tu_modes[_i];
	struct spool *s = open_mode(mode, NULL);
	struct tu_buf p;
	tu_payload(&p, 1, 1, "invalid", 0);
	ck_assert_int_eq(spool_append(s, -1, p.data, p.len), -EINVAL);
	ck_assert_int_eq(spool_append(s, 5, p.data, p.len), -EINVAL);
	ck_assert_int_eq(spool_append(s, SPOOL_SEV_INFO, NULL, 10), -EINVAL);
	ck_assert_int_eq(spool_append(s, SPOOL_SEV_INFO, p.data, 0), -EINVAL);
	ck_assert_int_eq(spool_append(s, SPOOL_SEV_INFO, NULL, 0), -EINVAL);
	ck_assert_int_eq(spool_append(NULL, SPOOL_SEV_INFO, p.data, p.len), -EINVAL);
	ck_assert_int_eq(spool_read_batch(s, 0, 0, 0, NULL), -EINVAL);
	ck_assert_int_eq(spool_stats(s, NULL), -EINVAL);
	/* nothing was stored by the failed calls */
	ck_assert_int_eq(spool_sync(s, 30.0, NULL), 0);
	struct spool_stats st = tu_stats(s);
	ck_assert_uint_eq(st.pending, 0);
	ck_assert_uint_eq(st.appended_total, 0);
	ck_assert_int_eq(spool_append(s, SPOOL_SEV_FATAL, p.data, p.len), 0);
	tu_buf_free(&p);
	ck_assert_int_eq(spool_close(s), 0);
	ck_assert_int_eq(spool_close(NULL), 0);
}
END_TEST

/* spool_append_many: in order, all or none. */
START_TEST(test_append_many)
{
	enum spool_durability mode = tu_modes[_i];
	struct spool *s = open_mode(mode, NULL);
	enum { N = 8 };
	struct tu_buf p[N];
	struct spool_input in[N];
	for (int i = 0; i < N; i++) {
		tu_payload(&p[i], 2, (uint64_t)i, "many", (size_t)i);
		in[i] = (struct spool_input){.severity = i % 5, .data = p[i].data, .len = p[i].len};
	}
	ck_assert_int_eq(spool_append_many(s, in, N), 0);

	/* one bad record in the middle: none of them is stored */
	in[4].severity = 17;
	ck_assert_int_eq(spool_append_many(s, in, N), -EINVAL);
	in[4].severity = 4;
	in[5].len = 0;
	ck_assert_int_eq(spool_append_many(s, in, N), -EINVAL);
	in[5].len = p[5].len;
	ck_assert_int_eq(spool_append_many(s, in, 0), 0);

	ck_assert_int_eq(spool_append_many(s, in, 3), 0);
	sync_ok(s, NULL);
	struct tu_rec *r = NULL;
	size_t n = tu_read_all(s, false, &r);
	ck_assert_uint_eq(n, N + 3);
	for (size_t i = 0; i < n; i++) {
		size_t k = i < N ? i : i - N;
		ck_assert_uint_eq(r[i].len, p[k].len);
		ck_assert_mem_eq(r[i].data, p[k].data, p[k].len);
		ck_assert_int_eq(r[i].severity, (int)(k % 5));
		if (i)
			ck_assert_uint_gt(r[i].seq, r[i - 1].seq);
	}
	struct spool_stats st = tu_stats(s);
	ck_assert_uint_eq(st.appended_total, N + 3);
	tu_recs_free(r, n);
	for (int i = 0; i < N; i++)
		tu_buf_free(&p[i]);
	ck_assert_int_eq(spool_close(s), 0);
}
END_TEST

/* A payload that is not exactly one msgpack map never comes back as a
 * pending record: either append refuses it or the read dead-letters it. */
START_TEST(test_non_map_payload)
{
	struct spool *s = open_mode(SPOOL_SYNC, NULL);
	static const unsigned char array3[] = {0x93, 0x01, 0x02, 0x03};
	static const unsigned char never_used[] = {0xc1, 0xc1, 0xc1};
	static const unsigned char truncated_map[] = {0x82, 0xa1, 'a', 0x01, 0xa1};
	/* a map followed by a second map: not exactly one map */
	struct tu_buf m;
	tu_payload(&m, 1, 1, "ok", 0);
	unsigned char *two = malloc(2 * m.len);
	ck_assert_ptr_nonnull(two);
	memcpy(two, m.data, m.len);
	memcpy(two + m.len, m.data, m.len);
	const struct {
		const void *d;
		size_t l;
	} bad[] = {
		{array3, sizeof(array3)},
		{never_used, sizeof(never_used)},
		{truncated_map, sizeof(truncated_map)},
		{two, 2 * m.len},
	};

	int stored = 0;
	tu_append_ok(s, SPOOL_SEV_INFO, 1, 0); /* a good one first */
	for (size_t i = 0; i < 4; i++) {
		int rc = spool_append(s, SPOOL_SEV_INFO, bad[i].d, bad[i].l);
		ck_assert_msg(rc == 0 || rc == -EINVAL, "bad payload %zu: append = %d (%s)", i, rc,
			      spool_strerror(rc));
		if (rc == 0)
			stored++;
	}
	tu_append_ok(s, SPOOL_SEV_INFO, 1, 1); /* and a good one last */

	struct tu_rec *r = NULL;
	size_t n = tu_read_all(s, false, &r);
	ck_assert_uint_eq(n, 2);
	for (size_t i = 0; i < n; i++) {
		struct tu_event ev;
		ck_assert_int_eq(tu_decode(r[i].data, r[i].len, &ev), 0);
		ck_assert_uint_eq(ev.n, i);
	}
	struct spool_stats st = tu_stats(s);
	ck_assert_uint_eq(st.pending, 2);
	ck_assert_uint_eq(st.dead, (uint64_t)stored);
	ck_assert_uint_eq(st.corrupt_total, (uint64_t)stored);
	struct tu_rec *d = NULL;
	size_t nd = tu_read_all(s, true, &d);
	ck_assert_uint_eq(nd, (size_t)stored);
	for (size_t i = 0; i < nd; i++) {
		ck_assert_int_eq(d[i].dead_status, SPOOL_ECORRUPT);
		ck_assert_msg(d[i].dead_reason && d[i].dead_reason[0], "dead letter without reason");
	}
	printf("non-map payloads: %d of 4 accepted by append and dead-lettered on read\n",
	       stored);
	tu_recs_free(r, n);
	tu_recs_free(d, nd);
	free(two);
	tu_buf_free(&m);
	ck_assert_int_eq(spool_close(s), 0);
}
END_TEST

/* Staged modes: records become visible to other readers without any
 * spool_sync(), once the commit/flush interval passes. */
START_TEST(test_visible_after_interval)
{
	enum spool_durability mode = _i == 0 ? SPOOL_COMMIT : SPOOL_BUFFERED;
	struct spool_options o;
	tu_opts(&o, mode);
	o.commit_interval_seconds = 0.05;
	o.flush_interval_seconds = 0.1;
	o.flush_batch = 100000;
	char path[PATH_MAX];
	tu_join(path, sizeof(path), g_dir, "spool");
	struct spool *w = tu_open(path, &o);
	struct spool_options ro;
	tu_opts(&ro, SPOOL_SYNC);
	struct spool *rd = tu_open(path, &ro);
	for (int i = 0; i < 20; i++)
		tu_append_ok(w, SPOOL_SEV_INFO, 5, (uint64_t)i);

	size_t seen = 0;
	double deadline = tu_now() + 30.0;
	while (tu_now() < deadline) {
		struct spool_batch *b = NULL;
		ck_assert_int_eq(spool_read_batch(rd, 0, 0, 0, &b), 0);
		seen = spool_batch_count(b);
		spool_batch_release(b);
		if (seen >= 20)
			break;
		tu_sleep(0.02);
	}
	ck_assert_msg(seen == 20, "%s mode: %zu of 20 records visible without spool_sync",
		      tu_mode_label(mode), seen);
	struct tu_rec *r = NULL;
	ck_assert_uint_eq(tu_read_all(rd, false, &r), 20);
	for (int i = 0; i < 20; i++) {
		struct tu_event ev;
		ck_assert_int_eq(tu_decode(r[i].data, r[i].len, &ev), 0);
		ck_assert_uint_eq(ev.n, (uint64_t)i);
	}
	tu_recs_free(r, 20);
	ck_assert_int_eq(spool_close(w), 0);
	ck_assert_int_eq(spool_close(rd), 0);
}
END_TEST

/* Buffered mode commits early once flush_batch records wait. */
START_TEST(test_buffered_flush_batch)
{
	struct spool_options o;
	tu_opts(&o, SPOOL_BUFFERED);
	o.flush_interval_seconds = 3600;
	o.flush_batch = 5;
	char path[PATH_MAX];
	tu_join(path, sizeof(path), g_dir, "spool");
	struct spool *w = tu_open(path, &o);
	struct spool_options ro;
	tu_opts(&ro, SPOOL_SYNC);
	struct spool *rd = tu_open(path, &ro);
	for (int i = 0; i < 5; i++)
		tu_append_ok(w, SPOOL_SEV_INFO, 6, (uint64_t)i);
	struct spool_stats st;
	double deadline = tu_now() + 30.0;
	do {
		st = tu_stats(rd);
		if (st.pending >= 5)
			break;
		tu_sleep(0.02);
	} while (tu_now() < deadline);
	ck_assert_uint_eq(st.pending, 5);
	ck_assert_int_eq(spool_close(w), 0);
	ck_assert_int_eq(spool_close(rd), 0);
}
END_TEST

/* spool_sync() commits at once in the staged modes, even with a long
 * interval, and reports the last sequence. */
START_TEST(test_sync_forces_commit)
{
	enum spool_durability mode = tu_modes[_i];
	struct spool_options o;
	tu_opts(&o, mode);
	o.commit_interval_seconds = 3600;
	o.flush_interval_seconds = 3600;
	o.flush_batch = 100000;
	char path[PATH_MAX];
	tu_join(path, sizeof(path), g_dir, "spool");
	struct spool *s = tu_open(path, &o);
	uint64_t last = 12345;
	ck_assert_int_eq(spool_sync(s, 20.0, &last), 0);
	ck_assert_uint_eq(last, 0); /* nothing committed by this handle yet */
	for (int i = 0; i < 3; i++)
		tu_append_ok(s, SPOOL_SEV_INFO, 8, (uint64_t)i);
	int rc = spool_sync(s, 20.0, &last);
	ck_assert_msg(rc == 0, "spool_sync with a long interval = %d (%s)", rc, spool_strerror(rc));
	struct spool_stats st = tu_stats(s);
	ck_assert_uint_eq(st.pending, 3);
	ck_assert_uint_eq(st.appended_total, 3);
	struct tu_rec *r = NULL;
	ck_assert_uint_eq(tu_read_all(s, false, &r), 3);
	ck_assert_uint_eq(last, r[2].seq);
	tu_recs_free(r, 3);
	ck_assert_int_eq(spool_close(s), 0);
}
END_TEST

/* spool_close() commits whatever the handle still stages. */
START_TEST(test_close_commits_staged)
{
	enum spool_durability mode = tu_modes[_i];
	struct spool_options o;
	tu_opts(&o, mode);
	o.commit_interval_seconds = 3600;
	o.flush_interval_seconds = 3600;
	o.flush_batch = 100000;
	char path[PATH_MAX];
	tu_join(path, sizeof(path), g_dir, "spool");
	struct spool *s = tu_open(path, &o);
	for (int i = 0; i < 7; i++)
		tu_append_ok(s, i % 5, 9, (uint64_t)i);
	ck_assert_int_eq(spool_close(s), 0);

	s = tu_open(path, &o);
	struct tu_rec *r = NULL;
	size_t n = tu_read_all(s, false, &r);
	ck_assert_uint_eq(n, 7);
	for (size_t i = 0; i < n; i++) {
		struct tu_event ev;
		ck_assert_int_eq(tu_decode(r[i].data, r[i].len, &ev), 0);
		ck_assert_uint_eq(ev.n, i);
		ck_assert_int_eq(r[i].severity, (int)(i % 5));
	}
	struct spool_stats st = tu_stats(s);
	ck_assert_uint_eq(st.appended_total, 7);
	ck_assert_uint_eq(st.torn_total, 0);
	tu_recs_free(r, n);
	uint64_t moved = 99;
	ck_assert_int_eq(spool_recover(s, &moved), 0);
	ck_assert_uint_eq(moved, 0); /* a clean close leaves no ring to recover */
	ck_assert_int_eq(spool_close(s), 0);
}
END_TEST

/* Several handles in one process see each other's records. */
START_TEST(test_two_handles)
{
	char path[PATH_MAX];
	tu_join(path, sizeof(path), g_dir, "spool");
	struct spool_options o;
	tu_opts(&o, SPOOL_SYNC);
	struct spool *a = tu_open(path, &o);
	tu_opts(&o, SPOOL_COMMIT);
	struct spool *b = tu_open(path, &o);
	ck_assert_str_eq(spool_dir(a), path);
	tu_append_ok(a, SPOOL_SEV_INFO, 1, 0);
	tu_append_ok(b, SPOOL_SEV_INFO, 2, 0);
	ck_assert_int_eq(spool_sync(b, 30.0, NULL), 0);
	struct spool_stats sa = tu_stats(a), sb = tu_stats(b);
	ck_assert_uint_eq(sa.pending, 2);
	ck_assert_uint_eq(sb.pending, 2);
	ck_assert_int_eq(spool_close(a), 0);
	tu_append_ok(b, SPOOL_SEV_INFO, 2, 1);
	ck_assert_int_eq(spool_sync(b, 30.0, NULL), 0);
	ck_assert_uint_eq(tu_stats(b).pending, 3);
	ck_assert_int_eq(spool_close(b), 0);
}
END_TEST

START_TEST(test_empty_read)
{
	struct spool *s = open_mode(SPOOL_SYNC, NULL);
	struct spool_batch *b = NULL;
	ck_assert_int_eq(spool_read_batch(s, 0, 10, 0, &b), 0);
	ck_assert_ptr_nonnull(b);
	ck_assert_uint_eq(spool_batch_count(b), 0);
	spool_batch_release(b);
	b = NULL;
	ck_assert_int_eq(spool_read_dead(s, 0, 10, &b), 0);
	ck_assert_ptr_nonnull(b);
	ck_assert_uint_eq(spool_batch_count(b), 0);
	spool_batch_release(b);
	uint64_t moved = 7;
	ck_assert_int_eq(spool_recover(s, &moved), 0);
	ck_assert_uint_eq(moved, 0);
	ck_assert_int_eq(spool_close(s), 0);
}
END_TEST

/* ---- open errors and file modes ---- */

static void assert_open_fails_naming(const char *path, const char *name_in_msg)
{
	char err[512];
	memset(err, 0, sizeof(err));
	struct spool *s = (struct spool *)(uintptr_t)1;
	int rc = spool_open(path, NULL, &s, err, sizeof(err));
	ck_assert_msg(rc != 0, "spool_open(%s) succeeded", path);
	ck_assert_msg(s == NULL, "*out not NULL after a failed open");
	ck_assert_msg(strstr(err, name_in_msg) != NULL, "errbuf \"%s\" does not name \"%s\"", err,
		      name_in_msg);
	printf("open(%s): %d (%s): %s\n", path, rc, spool_strerror(rc), err);
}

START_TEST(test_open_file_not_dir)
{
	char f[PATH_MAX];
	tu_join(f, sizeof(f), g_dir, "plainfile");
	int fd = open(f, O_CREAT | O_WRONLY, 0600);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, "hello", 5), 5);
	close(fd);
	assert_open_fails_naming(f, f);
	char sub[PATH_MAX];
	tu_join(sub, sizeof(sub), f, "spool");
	assert_open_fails_naming(sub, f);
	/* the file is left alone */
	struct stat st;
	ck_assert_int_eq(stat(f, &st), 0);
	ck_assert(S_ISREG(st.st_mode));
	ck_assert_int_eq(st.st_size, 5);

	/* a NULL errbuf and a tiny errbuf are both fine */
	struct spool *s = NULL;
	ck_assert_int_ne(spool_open(f, NULL, &s, NULL, 0), 0);
	ck_assert_ptr_null(s);
	char tiny[6];
	memset(tiny, 'Z', sizeof(tiny));
	ck_assert_int_ne(spool_open(f, NULL, &s, tiny, sizeof(tiny)), 0);
	ck_assert_msg(memchr(tiny, '\0', sizeof(tiny)) != NULL, "errbuf not NUL-terminated");
}
END_TEST

/* Unwritable directory: root bypasses permissions, so the check runs in a
 * child that drops to an unprivileged user. */
START_TEST(test_open_unwritable)
{
	char ro[PATH_MAX], path[PATH_MAX];
	tu_join(ro, sizeof(ro), g_dir, "readonly");
	ck_assert_int_eq(mkdir(ro, 0755), 0);
	tu_join(path, sizeof(path), ro, "spool");
	/* the unprivileged child may reach readonly/ but not write in it */
	char base[PATH_MAX];
	snprintf(base, sizeof(base), "%s", g_dir);
	char *slash = strrchr(base, '/');
	ck_assert_ptr_nonnull(slash);
	*slash = '\0';
	if (strcmp(base, "/tmp") != 0)
		ck_assert_int_eq(chmod(base, 0755), 0);
	ck_assert_int_eq(chmod(g_dir, 0755), 0);
	ck_assert_int_eq(chmod(ro, 0555), 0);

	if (geteuid() != 0) {
		assert_open_fails_naming(path, path);
		return;
	}
	pid_t pid = tu_fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		if (setgid(65534) != 0 || setuid(65534) != 0)
			_exit(77);
		char err[512] = "";
		struct spool *s = (struct spool *)(uintptr_t)1;
		int rc = spool_open(path, NULL, &s, err, sizeof(err));
		if (rc == 0)
			_exit(10);
		if (s != NULL)
			_exit(11);
		if (strstr(err, path) == NULL && strstr(err, ro) == NULL) {
			fprintf(stderr, "errbuf \"%s\" does not name %s\n", err, path);
			_exit(12);
		}
		printf("unprivileged open(%s): %d (%s): %s\n", path, rc, spool_strerror(rc), err);
		fflush(stdout);
		_exit(0);
	}
	int code = tu_wait_until(pid, tu_now() + 60.0);
	if (code == 77) {
		printf("SKIP test_open_unwritable: running as root and cannot drop to uid 65534\n");
		return;
	}
	ck_assert_msg(code == 0, "unprivileged child: code %d (10: open succeeded, 11: out set, "
				 "12: path not named)",
		      code);
	/* nothing was created */
	struct stat st;
	ck_assert_int_ne(stat(path, &st), 0);
}
END_TEST

/* A data file that is not an LMDB file, in a spool marked created (one that
 * may have promised events): SPOOL_ECORRUPT naming the path, and the file is
 * not overwritten.  (Without the mark the file is set aside and the spool
 * created anew: tests/spoolctl/test_setaside.c.) */
START_TEST(test_open_garbage)
{
	char path[PATH_MAX], data[PATH_MAX], mark[PATH_MAX];
	tu_join(path, sizeof(path), g_dir, "spool");
	ck_assert_int_eq(mkdir(path, 0700), 0);
	tu_join(mark, sizeof(mark), path, "created");
	int fd = open(mark, O_CREAT | O_WRONLY, 0600);
	ck_assert_int_ge(fd, 0);
	close(fd);
	tu_join(data, sizeof(data), path, "data.mdb");
	fd = open(data, O_CREAT | O_WRONLY, 0600);
	ck_assert_int_ge(fd, 0);
	char junk[8192];
	for (size_t i = 0; i < sizeof(junk); i++)
		junk[i] = (char)('A' + i % 23);
	for (int k = 0; k < 8; k++)
		ck_assert_int_eq(write(fd, junk, sizeof(junk)), (ssize_t)sizeof(junk));
	close(fd);

	char err[512] = "";
	struct spool *s = NULL;
	int rc = spool_open(path, NULL, &s, err, sizeof(err));
	ck_assert_msg(rc == SPOOL_ECORRUPT, "open of a garbage spool = %d (%s), want ECORRUPT", rc,
		      spool_strerror(rc));
	ck_assert_ptr_null(s);
	ck_assert_msg(strstr(err, path) != NULL, "errbuf \"%s\" does not name %s", err, path);
	printf("garbage data.mdb: %s\n", err);

	fd = open(data, O_RDONLY);
	ck_assert_int_ge(fd, 0);
	char back[sizeof(junk)];
	ck_assert_int_eq(read(fd, back, sizeof(back)), (ssize_t)sizeof(back));
	close(fd);
	ck_assert_mem_eq(back, junk, sizeof(junk));
}
END_TEST

START_TEST(test_open_bad_args)
{
	char path[PATH_MAX];
	tu_join(path, sizeof(path), g_dir, "spool");
	struct spool *s = NULL;
	ck_assert_int_eq(spool_open(NULL, NULL, &s, NULL, 0), -EINVAL);
	ck_assert_int_eq(spool_open("", NULL, &s, NULL, 0), -EINVAL);
	ck_assert_int_eq(spool_open(path, NULL, NULL, NULL, 0), -EINVAL);
	struct spool_options o;
	spool_options_init(&o);
	o.durability = (enum spool_durability)9;
	ck_assert_int_eq(spool_open(path, &o, &s, NULL, 0), -EINVAL);
	ck_assert_ptr_null(s);
	spool_options_init(&o);
	o.full_policy = (enum spool_full_policy)9;
	ck_assert_int_eq(spool_open(path, &o, &s, NULL, 0), -EINVAL);
	ck_assert_ptr_null(s);
}
END_TEST

static int g_mode_bad;
static char g_mode_msg[512];

static int check_mode(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)ftw;
	mode_t m = st->st_mode & 07777;
	if (flag == FTW_D || flag == FTW_DP) {
		if (m != 0700 && !g_mode_bad) {
			g_mode_bad = 1;
			snprintf(g_mode_msg, sizeof(g_mode_msg), "directory %s has mode %04o", p, m);
		}
	} else if (S_ISREG(st->st_mode) && m != 0600 && !g_mode_bad) {
		g_mode_bad = 1;
		snprintf(g_mode_msg, sizeof(g_mode_msg), "file %s has mode %04o", p, m);
	}
	return 0;
}

/* The spool directory is created 0700 and every file in it 0600, whatever
 * the umask. */
START_TEST(test_modes_created)
{
	enum spool_durability mode = tu_modes[_i];
	umask(0);
	char path[PATH_MAX];
	tu_join(path, sizeof(path), g_dir, "spool");
	struct spool_options o;
	tu_opts(&o, mode);
	struct spool *s = tu_open(path, &o);
	tu_append_ok(s, SPOOL_SEV_INFO, 1, 1);
	ck_assert_int_eq(spool_meta_put(s, "k", "v", 1), 0);
	ck_assert_int_eq(spool_sync(s, 30.0, NULL), 0);
	ck_assert_int_eq(spool_agent_lock(s), 0);
	/* while open (rings, lock files exist) */
	g_mode_bad = 0;
	ck_assert_int_eq(nftw(path, check_mode, 16, FTW_PHYS), 0);
	ck_assert_msg(!g_mode_bad, "%s", g_mode_msg);
	ck_assert_int_eq(spool_close(s), 0);
	g_mode_bad = 0;
	ck_assert_int_eq(nftw(path, check_mode, 16, FTW_PHYS), 0);
	ck_assert_msg(!g_mode_bad, "%s", g_mode_msg);
	struct stat st;
	ck_assert_int_eq(stat(path, &st), 0);
	ck_assert_int_eq(st.st_mode & 07777, 0700);
}
END_TEST

static Suite *basic_suite(void)
{
	Suite *s = suite_create("spool-basic");
	TCase *tc = tcase_create("api");
	tcase_add_checked_fixture(tc, setup, teardown);
	tu_add_cleanup_fixture(tc);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_options_defaults);
	tcase_add_test(tc, test_record_crc_format);
	tcase_add_test(tc, test_parse_helpers);
	tcase_add_test(tc, test_strerror_codes);
	tcase_add_test(tc, test_default_dir);
	tcase_add_loop_test(tc, test_roundtrip, 0, TU_NMODES);
	tcase_add_loop_test(tc, test_read_limits, 0, TU_NMODES);
	tcase_add_loop_test(tc, test_ack_reread, 0, TU_NMODES);
	tcase_add_loop_test(tc, test_seq_never_reused, 0, TU_NMODES);
	tcase_add_test(tc, test_stats_figures);
	tcase_add_test(tc, test_meta);
	tcase_add_loop_test(tc, test_settle_and_dead, 0, TU_NMODES);
	tcase_add_loop_test(tc, test_append_invalid, 0, TU_NMODES);
	tcase_add_loop_test(tc, test_append_many, 0, TU_NMODES);
	tcase_add_test(tc, test_non_map_payload);
	tcase_add_loop_test(tc, test_visible_after_interval, 0, 2);
	tcase_add_test(tc, test_buffered_flush_batch);
	tcase_add_loop_test(tc, test_sync_forces_commit, 0, TU_NMODES);
	tcase_add_loop_test(tc, test_close_commits_staged, 0, TU_NMODES);
	tcase_add_test(tc, test_two_handles);
	tcase_add_test(tc, test_empty_read);
	suite_add_tcase(s, tc);

	TCase *op = tcase_create("open");
	tcase_add_checked_fixture(op, setup, teardown);
	tu_add_cleanup_fixture(op);
	tcase_set_timeout(op, 120);
	tcase_add_test(op, test_open_file_not_dir);
	tcase_add_test(op, test_open_unwritable);
	tcase_add_test(op, test_open_garbage);
	tcase_add_test(op, test_open_bad_args);
	tcase_add_loop_test(op, test_modes_created, 0, TU_NMODES);
	suite_add_tcase(s, op);
	return s;
}

int main(void)
{
	return tc_run_forked(basic_suite());
}
