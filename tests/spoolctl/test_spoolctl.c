/* test_spoolctl.c — the spoolctl commands on real spools, run as the real
 * binary (path in $SPOOLCTL), and the library calls behind them: status
 * figures, peek, dead letters (retry keeps order), purge, verify (a record
 * corrupted on disk is found, and --repair fixes it), export and import
 * (identical bytes; damaged files refused), compact. */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check_main.h"
#include "codec/event.h"
#include <spool/spool.h>

#include "internal.h" /* to damage the counters on purpose */
#include "testutil.h"

static char g_out[1 << 16];

/* Runs spoolctl with the arguments (a shell fragment) on spool dir,
 * capturing stdout and stderr in g_out; returns its exit code. */
static int ctl(const char *dir, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int ctl(const char *dir, const char *fmt, ...)
{
	const char *exe = getenv("SPOOLCTL");
	ck_assert_msg(exe != NULL, "SPOOLCTL not set");
	char args[2048], cmd[4096];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(args, sizeof(args), fmt, ap);
	va_end(ap);
	snprintf(cmd, sizeof(cmd), "'%s' --spool '%s' %s 2>&1", exe, dir, args);
	int st = tu_capture(cmd, g_out, sizeof(g_out));
	ck_assert_msg(st != -1 && WIFEXITED(st), "%s did not exit normally", cmd);
	return WEXITSTATUS(st);
}

static void assert_out_has(const char *what)
{
	ck_assert_msg(strstr(g_out, what) != NULL, "output lacks \"%s\":\n%s", what, g_out);
}

static struct spool *open_sync(const char *dir)
{
	struct spool_options o;
	tu_opts(&o, SPOOL_SYNC);
	return tu_open(dir, &o);
}

/* Appends {p: 1, n: i, message: "<tag>-<i>"} for i in [from, to). */
static void append_range(struct spool *s, int sev, uint64_t from, uint64_t to, const char *tag,
                         size_t pad)
{
	for (uint64_t i = from; i < to; i++) {
		char msg[64];
		snprintf(msg, sizeof(msg), "%s-%llu", tag, (unsigned long long)i);
		struct tu_buf b;
		tu_payload(&b, 1, i, msg, pad);
		ck_assert_int_eq(spool_append(s, sev, b.data, b.len), 0);
		tu_buf_free(&b);
	}
}

START_TEST(test_status_figures)
{
	char dir[PATH_MAX];
	tu_mkdtemp(dir, sizeof(dir), "status");
	struct spool *s = open_sync(dir);
	append_range(s, SPOOL_SEV_INFO, 0, 6, "info", 0);
	append_range(s, SPOOL_SEV_ERROR, 6, 10, "err", 0);
	uint64_t acked[3] = {1, 2, 3}, gone[2] = {4, 5}, n = 0;
	ck_assert_int_eq(spool_ack(s, acked, 3, &n), 0);
	ck_assert_uint_eq(n, 3);
	ck_assert_int_eq(spool_discard(s, gone, 2, &n), 0);
	ck_assert_uint_eq(n, 2);
	ck_assert_int_eq(spool_dead_letter(s, 7, 422, "bad field"), 0);
	struct spool_stats st = tu_stats(s);

	ck_assert_int_eq(ctl(dir, "status --json"), 0);
	char want[128];
	snprintf(want, sizeof(want), "\"pending_bytes\":%llu",
	         (unsigned long long)st.pending_bytes);
	assert_out_has(want);
	assert_out_has("\"pending\":4,");
	assert_out_has("\"dead\":1,");
	assert_out_has("\"appended_total\":10,");
	assert_out_has("\"acked_total\":3,");
	assert_out_has("\"dead_total\":1,");
	assert_out_has("\"evicted_total\":2,");
	ck_assert_int_eq(ctl(dir, "status"), 0);
	assert_out_has("pending        4 events");
	ck_assert_int_eq(ctl(dir, "status --bogus"), 2);
	ck_assert_int_eq(ctl(dir, "frobnicate"), 2);
	ck_assert_int_eq(ctl(dir, "status --help"), 0);
	assert_out_has("Usage: spoolctl");
	/* without --spool: MASTER_LOG_SPOOL_DIR */
	char cmd[2 * PATH_MAX + 64];
	snprintf(cmd, sizeof(cmd), "MASTER_LOG_SPOOL_DIR='%s' '%s' status --json", dir,
	         getenv("SPOOLCTL"));
	ck_assert_int_eq(tu_capture(cmd, g_out, sizeof(g_out)), 0);
	assert_out_has("\"pending\":4,");
	ck_assert_int_eq(spool_close(s), 0);
	char none[PATH_MAX + 8];
	snprintf(none, sizeof(none), "%s/none", dir);
	ck_assert_int_eq(ctl(none, "status"), 1);
	ck_assert_int_eq(ctl(none, "peek"), 1);
}
END_TEST

START_TEST(test_peek)
{
	char dir[PATH_MAX];
	tu_mkdtemp(dir, sizeof(dir), "peek");
	struct spool *s = open_sync(dir);
	append_range(s, SPOOL_SEV_DEBUG, 0, 5, "dbg", 0);
	append_range(s, SPOOL_SEV_ERROR, 5, 8, "boom", 0);
	ck_assert_int_eq(ctl(dir, "peek -n 3"), 0);
	assert_out_has("dbg-0");
	assert_out_has("dbg-2");
	ck_assert_ptr_null(strstr(g_out, "dbg-3"));
	ck_assert_int_eq(ctl(dir, "peek --json --severity error -n 2"), 0);
	/* two JSON lines, the oldest errors, with their spool sequence */
	int lines = 0;
	for (const char *p = g_out; *p; p++)
		lines += *p == '\n';
	ck_assert_int_eq(lines, 2);
	assert_out_has("{\"p\":1,\"n\":5,\"message\":\"boom-5\"");
	assert_out_has("\"spool_seq\":6");
	assert_out_has("\"spool_seq\":7");
	ck_assert_ptr_null(strstr(g_out, "dbg"));
	ck_assert_int_eq(ctl(dir, "peek --since 1d -n 0"), 0);
	assert_out_has("boom-7");
	ck_assert_int_eq(ctl(dir, "peek --since 2999-01-01"), 0);
	assert_out_has("no pending events match");
	ck_assert_int_eq(ctl(dir, "peek --severity loud"), 2);
	ck_assert_int_eq(ctl(dir, "peek --since yesterday"), 2);
	/* peeking takes nothing away */
	ck_assert_uint_eq(tu_stats(s).pending, 8);
	ck_assert_int_eq(spool_close(s), 0);
}
END_TEST

START_TEST(test_dead_retry_keeps_order)
{
	char dir[PATH_MAX];
	tu_mkdtemp(dir, sizeof(dir), "dead");
	struct spool *s = open_sync(dir);
	append_range(s, SPOOL_SEV_WARN, 0, 8, "ev", 0); /* seqs 1..8 hold n 0..7 */
	/* dead-lettered out of order: 6, 2, 4 (n 5, 1, 3) */
	ck_assert_int_eq(spool_dead_letter(s, 6, 400, "six"), 0);
	ck_assert_int_eq(spool_dead_letter(s, 2, 400, "two"), 0);
	ck_assert_int_eq(spool_dead_letter(s, 4, 410, "four"), 0);
	ck_assert_int_eq(spool_dead_letter(s, 8, 400, "eight"), 0);
	ck_assert_int_eq(ctl(dir, "dead list"), 0);
	assert_out_has("4 dead letters");
	assert_out_has("status 410  four");
	ck_assert_int_eq(ctl(dir, "dead list --json"), 0);
	assert_out_has("\"seq\":2,");
	assert_out_has("\"reason\":\"two\"");
	assert_out_has("\"message\":\"ev-3\"");

	/* the library: explicit sequences in any order; unknown ones skipped */
	uint64_t pick[3] = {6, 99, 2}, moved = 0;
	ck_assert_int_eq(spool_dead_retry(s, pick, 3, false, &moved), 0);
	ck_assert_uint_eq(moved, 2);
	/* the command: the rest */
	ck_assert_int_eq(ctl(dir, "dead retry --all"), 0);
	assert_out_has("retried 2 dead letters");

	struct tu_rec *r = NULL;
	size_t n = tu_read_all(s, false, &r);
	ck_assert_uint_eq(n, 8);
	/* never dead: n 0, 2, 4, 6 at their old places; then n 1, 5 (retried
	 * together, in their old order), then n 3, 7 */
	static const uint64_t want_n[8] = {0, 2, 4, 6, 1, 5, 3, 7};
	uint64_t prev = 0;
	for (size_t i = 0; i < n; i++) {
		struct tu_event ev;
		ck_assert_int_eq(tu_decode(r[i].data, r[i].len, &ev), 0);
		ck_assert_msg(ev.n == want_n[i], "record %zu is n=%llu, want %llu", i,
		              (unsigned long long)ev.n, (unsigned long long)want_n[i]);
		ck_assert_uint_gt(r[i].seq, prev);
		prev = r[i].seq;
		ck_assert_int_eq(r[i].severity, SPOOL_SEV_WARN);
	}
	ck_assert_uint_gt(r[4].seq, 8); /* new sequence numbers */
	tu_recs_free(r, n);
	struct spool_stats st = tu_stats(s);
	ck_assert_uint_eq(st.dead, 0);
	ck_assert_uint_eq(st.pending, 8);
	ck_assert_uint_eq(st.appended_total, 12);
	ck_assert_uint_eq(st.dead_total, 4);
	ck_assert_int_eq(ctl(dir, "verify"), 0);

	/* purge: by sequence, unknown ones make it exit 1 */
	ck_assert_int_eq(spool_dead_letter(s, 1, 400, "one"), 0);
	ck_assert_int_eq(spool_dead_letter(s, 3, 400, "three"), 0);
	ck_assert_int_eq(ctl(dir, "dead purge 1 12345"), 1);
	assert_out_has("purged 1 dead letter");
	ck_assert_int_eq(ctl(dir, "dead purge"), 2);
	ck_assert_int_eq(ctl(dir, "dead purge 3 --all"), 2);
	ck_assert_int_eq(ctl(dir, "dead purge --all"), 0);
	st = tu_stats(s);
	ck_assert_uint_eq(st.dead, 0);
	ck_assert_uint_eq(st.pending, 6);
	ck_assert_int_eq(ctl(dir, "verify"), 0);
	ck_assert_int_eq(spool_close(s), 0);
}
END_TEST

START_TEST(test_purge)
{
	char dir[PATH_MAX];
	tu_mkdtemp(dir, sizeof(dir), "purge");
	struct spool *s = open_sync(dir);
	append_range(s, SPOOL_SEV_DEBUG, 0, 30, "dbg", 0);
	append_range(s, SPOOL_SEV_ERROR, 30, 40, "err", 0);
	ck_assert_int_eq(ctl(dir, "purge --severity debug"), 2);
	assert_out_has("would purge 30 of 40");
	ck_assert_uint_eq(tu_stats(s).pending, 40);
	ck_assert_int_eq(ctl(dir, "purge --yes"), 2);
	ck_assert_int_eq(ctl(dir, "purge --all --severity debug --yes"), 2);
	ck_assert_int_eq(ctl(dir, "purge --severity debug --yes"), 0);
	struct spool_stats st = tu_stats(s);
	ck_assert_uint_eq(st.pending, 10);
	ck_assert_uint_eq(st.evicted_total, 30);
	ck_assert_int_eq(ctl(dir, "purge --before 2000-01-01 --yes"), 0);
	assert_out_has("purged 0 events");
	ck_assert_int_eq(ctl(dir, "purge --before 2999-01-01T00:00:00Z --yes"), 0);
	assert_out_has("purged 10 events");
	st = tu_stats(s);
	ck_assert_uint_eq(st.pending, 0);
	ck_assert_uint_eq(st.pending_bytes, 0);
	ck_assert_uint_eq(st.evicted_total, 40);
	append_range(s, SPOOL_SEV_INFO, 0, 5, "late", 0);
	ck_assert_int_eq(ctl(dir, "purge --all --yes"), 0);
	ck_assert_uint_eq(tu_stats(s).pending, 0);
	ck_assert_int_eq(ctl(dir, "verify"), 0);
	ck_assert_int_eq(spool_close(s), 0);
}
END_TEST

/* Flips the last bytes of every copy of marker in file (same length, still
 * valid msgpack: only the checksum tells); returns the count. */
static int corrupt_marker(const char *file, const char *marker)
{
	int fd = open(file, O_RDWR);
	ck_assert_int_ge(fd, 0);
	struct stat st;
	ck_assert_int_eq(fstat(fd, &st), 0);
	size_t len = (size_t)st.st_size, ml = strlen(marker);
	unsigned char *buf = malloc(len);
	ck_assert_ptr_nonnull(buf);
	ck_assert_int_eq(tu_read_full(fd, buf, len), 0);
	int hits = 0;
	for (size_t i = 0; i + ml <= len; i++) {
		if (memcmp(buf + i, marker, ml) != 0)
			continue;
		char flipped[64];
		memcpy(flipped, marker, ml);
		flipped[ml - 1] ^= 0x01;
		flipped[ml - 2] ^= 0x02;
		ck_assert_int_eq(pwrite(fd, flipped, ml, (off_t)i), (ssize_t)ml);
		hits++;
	}
	ck_assert_int_eq(fsync(fd), 0);
	close(fd);
	free(buf);
	return hits;
}

START_TEST(test_verify_finds_and_repairs)
{
	char dir[PATH_MAX], data[PATH_MAX];
	tu_mkdtemp(dir, sizeof(dir), "verify");
	struct spool *s = open_sync(dir);
	append_range(s, SPOOL_SEV_INFO, 0, 3, "MARKER-A-k3Jq", 10);
	append_range(s, SPOOL_SEV_ERROR, 3, 4, "MARKER-B-z8Wd", 10);
	append_range(s, SPOOL_SEV_INFO, 4, 6, "MARKER-C-p1Xv", 10);
	ck_assert_int_eq(ctl(dir, "verify"), 0);
	assert_out_has("checked 6 pending records");
	struct spool_stats before = tu_stats(s);
	ck_assert_int_eq(spool_close(s), 0);

	tu_join(data, sizeof(data), dir, "data.mdb");
	ck_assert_int_ge(corrupt_marker(data, "MARKER-B-z8Wd-3"), 1);

	/* found, named, and nothing changed: twice the same answer */
	for (int i = 0; i < 2; i++) {
		ck_assert_int_eq(ctl(dir, "verify"), 1);
		assert_out_has("1 pending record(s) fail their check; the first, seq 4");
		assert_out_has("checksum");
		assert_out_has("NOT OK");
	}
	struct spool_verify_report rep;
	char err[256];
	ck_assert_int_eq(spool_verify(dir, false, &rep, err, sizeof(err)), 0);
	ck_assert_uint_eq(rep.problems, SPOOL_VERIFY_BAD_RECORDS);
	ck_assert_uint_eq(rep.records, 6);
	ck_assert_uint_eq(rep.bad, 1);
	ck_assert_uint_eq(rep.first_bad_seq, 4);
	ck_assert_uint_eq(rep.stored_pending_bytes, before.pending_bytes);
	ck_assert_uint_eq(rep.pending_bytes, before.pending_bytes);
	ck_assert_uint_eq(rep.sev[SPOOL_SEV_ERROR], 1);

	ck_assert_int_eq(ctl(dir, "verify --repair --json"), 0);
	assert_out_has("\"ok\":false");
	assert_out_has("\"repaired\":1");
	assert_out_has("\"ok_after_repair\":true");
	ck_assert_int_eq(ctl(dir, "verify"), 0);

	s = open_sync(dir);
	struct spool_stats st = tu_stats(s);
	ck_assert_uint_eq(st.pending, 5);
	ck_assert_uint_eq(st.dead, 1);
	ck_assert_uint_eq(st.corrupt_total, 1);
	ck_assert_uint_lt(st.pending_bytes, before.pending_bytes);
	struct tu_rec *d = NULL;
	ck_assert_uint_eq(tu_read_all(s, true, &d), 1);
	ck_assert_uint_eq(d[0].seq, 4);
	ck_assert_int_eq(d[0].dead_status, SPOOL_ECORRUPT);
	tu_recs_free(d, 1);
	/* a corrupt record cannot be retried; it stays dead */
	ck_assert_int_eq(ctl(dir, "dead retry 4"), 1);
	ck_assert_uint_eq(tu_stats(s).dead, 1);
	ck_assert_int_eq(ctl(dir, "dead list"), 0);
	assert_out_has("corrupt record");
	ck_assert_int_eq(spool_close(s), 0);
}
END_TEST

/* Counters that disagree with the records (as a bug or a bad restore could
 * leave them): each disagreement is named, and --repair recomputes them. */
START_TEST(test_verify_counters)
{
	char dir[PATH_MAX];
	tu_mkdtemp(dir, sizeof(dir), "counters");
	struct spool *s = open_sync(dir);
	append_range(s, SPOOL_SEV_INFO, 0, 4, "c", 0);
	append_range(s, SPOOL_SEV_WARN, 4, 6, "c", 0);
	struct spool_stats good = tu_stats(s);
	ck_assert_int_eq(spool_close(s), 0);

	struct spool_options o;
	tu_opts(&o, SPOOL_SYNC);
	struct spool_env *env;
	char err[256];
	ck_assert_int_eq(spool_env_acquire(dir, &o, &env, err, sizeof(err)), 0);
	MDB_txn *txn;
	ck_assert_int_eq(spool_env_begin(env, false, &txn), 0);
	struct spool_counters c;
	ck_assert_int_eq(spool_counters_load(env, txn, &c), 0);
	c.pending_bytes += 7;
	c.sev[SPOOL_SEV_INFO] += 2;
	c.next_seq = 3;
	ck_assert_int_eq(spool_counters_store(env, txn, &c), 0);
	ck_assert_int_eq(mdb_txn_commit(txn), 0);
	spool_env_end(env);
	spool_env_release(env);

	ck_assert_int_eq(ctl(dir, "verify"), 1);
	assert_out_has("pending_bytes: counter");
	assert_out_has("info count: counter 6, records 4");
	assert_out_has("pending count: the severity counters add up to 8, the database holds 6");
	assert_out_has("next_seq 3 is not above the highest key 6");
	struct spool_verify_report rep;
	ck_assert_int_eq(spool_verify(dir, false, &rep, err, sizeof(err)), 0);
	ck_assert_uint_eq(rep.problems, SPOOL_VERIFY_PENDING_COUNT | SPOOL_VERIFY_PENDING_BYTES |
	                                    SPOOL_VERIFY_SEV_COUNTS | SPOOL_VERIFY_NEXT_SEQ);
	ck_assert_uint_eq(rep.bad, 0);

	ck_assert_int_eq(spool_verify(dir, true, &rep, err, sizeof(err)), 0);
	ck_assert(rep.counters_rewritten);
	ck_assert_uint_eq(rep.repaired, 0);
	ck_assert_int_eq(spool_verify(dir, false, &rep, err, sizeof(err)), 0);
	ck_assert_uint_eq(rep.problems, 0);
	ck_assert_int_eq(ctl(dir, "verify --json"), 0);
	assert_out_has("\"ok\":true");
	s = open_sync(dir);
	struct spool_stats st = tu_stats(s);
	ck_assert_uint_eq(st.pending_bytes, good.pending_bytes);
	ck_assert_uint_eq(st.next_seq, 7);
	ck_assert_uint_eq(st.pending, 6);
	ck_assert_int_eq(spool_close(s), 0);
}
END_TEST

static unsigned char *slurp(const char *path, size_t *len)
{
	int fd = open(path, O_RDONLY);
	ck_assert_int_ge(fd, 0);
	struct stat st;
	ck_assert_int_eq(fstat(fd, &st), 0);
	unsigned char *buf = malloc((size_t)st.st_size + 1);
	ck_assert_ptr_nonnull(buf);
	ck_assert_int_eq(tu_read_full(fd, buf, (size_t)st.st_size), 0);
	close(fd);
	*len = (size_t)st.st_size;
	return buf;
}

static void spit(const char *path, const unsigned char *buf, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(tu_write_all(fd, buf, len), 0);
	close(fd);
}

START_TEST(test_export_import)
{
	char src[PATH_MAX], dst[PATH_MAX], file[PATH_MAX];
	tu_mkdtemp(src, sizeof(src), "export-src");
	tu_mkdtemp(dst, sizeof(dst), "export-dst");
	tu_join(file, sizeof(file), dst, "events.mlx");
	char to[PATH_MAX + 8];
	snprintf(to, sizeof(to), "%s/spool", dst);
	struct spool *s = open_sync(src);
	append_range(s, SPOOL_SEV_INFO, 0, 20, "small", 0);
	append_range(s, SPOOL_SEV_FATAL, 20, 25, "big", 3000);
	append_range(s, SPOOL_SEV_DEBUG, 25, 40, "tail", 7);
	uint64_t first[2] = {1, 2}, n = 0;
	ck_assert_int_eq(spool_ack(s, first, 2, &n), 0); /* exports start past a gap */
	struct tu_rec *a = NULL;
	size_t na = tu_read_all(s, false, &a);
	ck_assert_uint_eq(na, 38);

	ck_assert_int_eq(ctl(src, "export '%s'", file), 0);
	assert_out_has("exported 38 events");
	ck_assert_int_eq(access(file, R_OK), 0);
	char tmp[PATH_MAX + 8];
	snprintf(tmp, sizeof(tmp), "%s.tmp", file);
	ck_assert_int_ne(access(tmp, F_OK), 0);
	ck_assert_uint_eq(tu_stats(s).pending, 38); /* without --delete, kept */

	ck_assert_int_eq(ctl(to, "import '%s'", file), 0);
	assert_out_has("imported 38 events");
	struct spool *d = open_sync(to);
	struct tu_rec *b = NULL;
	size_t nb = tu_read_all(d, false, &b);
	ck_assert_uint_eq(nb, 38);
	for (size_t i = 0; i < nb; i++) {
		ck_assert_int_eq(b[i].severity, a[i].severity);
		ck_assert_uint_eq(b[i].len, a[i].len);
		ck_assert_mem_eq(b[i].data, a[i].data, a[i].len);
	}
	tu_recs_free(b, nb);
	/* a second import adds them again here; the server drops the copies by
	 * their client_event_id, which the bytes keep */
	ck_assert_int_eq(ctl(to, "import '%s'", file), 0);
	nb = tu_read_all(d, false, &b);
	ck_assert_uint_eq(nb, 76);
	ck_assert_mem_eq(b[38].data, a[0].data, a[0].len);
	ck_assert_mem_eq(b[75].data, a[37].data, a[37].len);
	tu_recs_free(b, nb);
	ck_assert_int_eq(spool_close(d), 0);

	/* --delete: acknowledged once the file is complete */
	char file2[PATH_MAX + 8];
	snprintf(file2, sizeof(file2), "%s.2", file);
	ck_assert_int_eq(ctl(src, "export '%s' --delete", file2), 0);
	assert_out_has("deleted 38 exported events");
	struct spool_stats st = tu_stats(s);
	ck_assert_uint_eq(st.pending, 0);
	ck_assert_uint_eq(st.acked_total, 40);
	size_t l1, l2;
	unsigned char *f1 = slurp(file, &l1), *f2 = slurp(file2, &l2);
	ck_assert_uint_eq(l1, l2); /* same events: same size (same host, path) */
	free(f1);
	free(f2);
	/* an empty spool exports an empty, valid file */
	ck_assert_int_eq(ctl(src, "export '%s.3'", file), 0);
	assert_out_has("exported 0 events");
	ck_assert_int_eq(ctl(src, "export"), 2);
	tu_recs_free(a, na);
	ck_assert_int_eq(spool_close(s), 0);
}
END_TEST

START_TEST(test_import_refuses_damaged_file)
{
	char src[PATH_MAX], dst[PATH_MAX], file[PATH_MAX], bad[PATH_MAX];
	tu_mkdtemp(src, sizeof(src), "damaged-src");
	tu_mkdtemp(dst, sizeof(dst), "damaged-dst");
	tu_join(file, sizeof(file), dst, "good.mlx");
	tu_join(bad, sizeof(bad), dst, "bad.mlx");
	char to[PATH_MAX + 8];
	snprintf(to, sizeof(to), "%s/spool", dst);
	struct spool *s = open_sync(src);
	append_range(s, SPOOL_SEV_INFO, 0, 10, "UNIQUE-BODY-w4", 50);
	ck_assert_int_eq(spool_close(s), 0);
	ck_assert_int_eq(ctl(src, "export '%s'", file), 0);
	size_t len;
	unsigned char *buf = slurp(file, &len);

	/* truncated, at several places */
	const size_t cuts[4] = {len - 1, len - 20, len / 2, 10};
	for (int i = 0; i < 4; i++) {
		spit(bad, buf, cuts[i]);
		ck_assert_int_eq(ctl(to, "import '%s'", bad), 1);
		assert_out_has("nothing imported");
	}
	/* one byte of an event altered: only the checksum can tell */
	unsigned char *m = memmem(buf, len, "UNIQUE-BODY-w4-5", 16);
	ck_assert_ptr_nonnull(m);
	m[15] ^= 0x01;
	spit(bad, buf, len);
	ck_assert_int_eq(ctl(to, "import '%s'", bad), 1);
	assert_out_has("checksum mismatch");
	m[15] ^= 0x01;
	/* a length field altered */
	unsigned char save = buf[len / 2];
	buf[len / 2] ^= 0xff;
	spit(bad, buf, len);
	ck_assert_int_eq(ctl(to, "import '%s'", bad), 1);
	assert_out_has("nothing imported");
	buf[len / 2] = save;
	/* not an export at all; a newer version */
	buf[0] = 'X';
	spit(bad, buf, len);
	ck_assert_int_eq(ctl(to, "import '%s'", bad), 1);
	assert_out_has("bad magic");
	buf[0] = 'M';
	buf[8] = 2;
	spit(bad, buf, len);
	ck_assert_int_eq(ctl(to, "import '%s'", bad), 1);
	assert_out_has("version");
	buf[8] = 1;
	/* trailing garbage */
	unsigned char *longer = malloc(len + 3);
	memcpy(longer, buf, len);
	memcpy(longer + len, "abc", 3);
	spit(bad, longer, len + 3);
	ck_assert_int_eq(ctl(to, "import '%s'", bad), 1);
	free(longer);
	ck_assert_int_eq(ctl(to, "import '%s/missing'", dst), 1);
	ck_assert_int_eq(ctl(to, "import"), 2);

	/* nothing was imported: the target spool was never even created */
	char data[PATH_MAX + 32];
	snprintf(data, sizeof(data), "%s/data.mdb", to);
	ck_assert_int_ne(access(data, F_OK), 0);
	/* and the intact file still imports */
	spit(bad, buf, len);
	ck_assert_int_eq(ctl(to, "import '%s'", bad), 0);
	assert_out_has("imported 10 events");
	free(buf);
}
END_TEST

/* Writes {"logs": [lines first..first+n)] } of g_out's JSON lines to path. */
static void batch_body(const char *path, int first, int n)
{
	FILE *f = fopen(path, "w");
	ck_assert_ptr_nonnull(f);
	fputs("{\"logs\":[", f);
	const char *p = g_out;
	for (int i = 0; i < first + n; i++) {
		const char *nl = strchr(p, '\n');
		ck_assert_ptr_nonnull(nl);
		if (i >= first) {
			if (i > first)
				fputc(',', f);
			fwrite(p, 1, (size_t)(nl - p), f);
		}
		p = nl + 1;
	}
	fputs("]}", f);
	ck_assert_int_eq(fclose(f), 0);
}

/* Both copies of a twice-imported file reach the real receiver; it keeps
 * one of each, by client_event_id. */
START_TEST(test_double_import_server_dedups)
{
	const char *rx = getenv("MLOG_RECEIVER");
	char out[256];
	if (!rx || tu_capture("command -v curl", out, sizeof(out)) != 0) {
		printf("skipped: needs mlog-receiver (MLOG_RECEIVER) and curl\n");
		return;
	}
	char base[PATH_MAX], src[PATH_MAX + 8], dst[PATH_MAX + 8], file[PATH_MAX + 8],
	    portf[PATH_MAX + 8], body[PATH_MAX + 8];
	tu_mkdtemp(base, sizeof(base), "dedup");
	snprintf(src, sizeof(src), "%s/src", base);
	snprintf(dst, sizeof(dst), "%s/dst", base);
	snprintf(file, sizeof(file), "%s/f.mlx", base);
	snprintf(portf, sizeof(portf), "%s/port", base);
	snprintf(body, sizeof(body), "%s/body", base);
	struct spool *s = open_sync(src);
	for (int i = 0; i < 4; i++) {
		char msg[32];
		snprintf(msg, sizeof(msg), "dedup %d", i);
		struct spool_event ev = {
		    .message = msg, .message_len = SIZE_MAX, .severity = SPOOL_SEV_WARN};
		struct spool_buf b = {0};
		ck_assert_int_eq(spool_event_encode(&ev, &b, NULL), 0);
		ck_assert_int_eq(spool_append(s, SPOOL_SEV_WARN, b.data, b.len), 0);
		spool_buf_free(&b);
	}
	ck_assert_int_eq(spool_close(s), 0);
	ck_assert_int_eq(ctl(src, "export '%s'", file), 0);
	ck_assert_int_eq(ctl(dst, "import '%s'", file), 0);
	ck_assert_int_eq(ctl(dst, "import '%s'", file), 0);

	pid_t pid = tu_fork();
	if (pid == 0) {
		int null = open("/dev/null", O_WRONLY);
		dup2(null, 1);
		execl(rx, rx, "--port", "0", "--port-file", portf, (char *)NULL);
		_exit(127);
	}
	int port = 0;
	for (double end = tu_now() + 10; port == 0 && tu_now() < end; tu_sleep(0.02)) {
		FILE *f = fopen(portf, "r");
		if (f) {
			if (fscanf(f, "%d", &port) != 1)
				port = 0;
			fclose(f);
		}
	}
	ck_assert_msg(port > 0, "mlog-receiver did not start");

	ck_assert_int_eq(ctl(dst, "peek --json -n 0"), 0);
	char cmd[3 * PATH_MAX];
	for (int half = 0; half < 2; half++) {
		batch_body(body, half * 4, 4);
		snprintf(cmd, sizeof(cmd),
		         "curl -s -H 'Content-Type: application/json' --data-binary @'%s' "
		         "http://127.0.0.1:%d/api/v1/logs/batch",
		         body, port);
		char reply[4096];
		ck_assert_int_eq(tu_capture(cmd, reply, sizeof(reply)), 0);
		ck_assert_msg(strstr(reply, half ? "\"duplicates\":4" : "\"duplicates\":0") != NULL,
		              "import %d: receiver answered %s", half + 1, reply);
	}
	snprintf(cmd, sizeof(cmd), "curl -s http://127.0.0.1:%d/stats", port);
	char stats[4096];
	ck_assert_int_eq(tu_capture(cmd, stats, sizeof(stats)), 0);
	ck_assert_msg(strstr(stats, "\"accepted\":4,\"duplicates\":4") != NULL, "stats: %s", stats);
	kill(pid, SIGTERM);
	tu_wait_until(pid, tu_now() + 10);
}
END_TEST

static uint64_t file_size(const char *dir)
{
	char data[PATH_MAX];
	tu_join(data, sizeof(data), dir, "data.mdb");
	struct stat st;
	ck_assert_int_eq(stat(data, &st), 0);
	return (uint64_t)st.st_size;
}

START_TEST(test_compact)
{
	char dir[PATH_MAX];
	tu_mkdtemp(dir, sizeof(dir), "compact");
	/* the default mode: a closed handle leaves no ring behind to refuse on */
	struct spool_options o;
	tu_opts(&o, SPOOL_COMMIT);
	struct spool *s = tu_open(dir, &o);
	for (int round = 0; round < 4; round++)
		append_range(s, SPOOL_SEV_INFO, (uint64_t)round * 500, (uint64_t)round * 500 + 500,
		             "fill", 2000);
	append_range(s, SPOOL_SEV_ERROR, 2000, 2003, "keep", 0);
	ck_assert_int_eq(spool_sync(s, 30, NULL), 0);
	/* drain all but the last three */
	struct tu_rec *r = NULL;
	size_t n = tu_read_all(s, false, &r);
	ck_assert_uint_eq(n, 2003);
	uint64_t *seqs = malloc(2000 * sizeof(*seqs)), deleted = 0;
	for (size_t i = 0; i < 2000; i++)
		seqs[i] = r[i].seq;
	ck_assert_int_eq(spool_ack(s, seqs, 2000, &deleted), 0);
	ck_assert_uint_eq(deleted, 2000);
	free(seqs);
	tu_recs_free(r, n);

	/* this process has the spool open: refused, and nothing touched */
	uint64_t size0 = file_size(dir);
	ck_assert_int_eq(ctl(dir, "compact"), 1);
	assert_out_has("in use");
	char err[512];
	uint64_t before = 0, after = 0;
	ck_assert_int_eq(spool_compact(dir, &before, &after, err, sizeof(err)), -EBUSY);
	ck_assert_uint_eq(file_size(dir), size0);
	ck_assert_int_eq(spool_close(s), 0);

	/* a ring left by a producer: refused with what to do */
	char ring[PATH_MAX + 64];
	snprintf(ring, sizeof(ring), "%s/rings/ring-00000000000000aa", dir);
	int fd = open(ring, O_WRONLY | O_CREAT, 0600);
	ck_assert_int_ge(fd, 0);
	close(fd);
	ck_assert_int_eq(ctl(dir, "compact"), 1);
	assert_out_has("open the spool once");
	unlink(ring);

	/* alone: works, and the file shrinks */
	ck_assert_int_eq(ctl(dir, "compact --json"), 0);
	char want[96];
	snprintf(want, sizeof(want), "\"before_bytes\":%llu", (unsigned long long)size0);
	assert_out_has(want);
	uint64_t size1 = file_size(dir);
	ck_assert_msg(size1 * 4 < size0, "file %llu bytes before, %llu after",
	              (unsigned long long)size0, (unsigned long long)size1);
	ck_assert_int_eq(ctl(dir, "verify"), 0);

	/* the spool works on: the pending events are there, appends go on */
	s = open_sync(dir);
	n = tu_read_all(s, false, &r);
	ck_assert_uint_eq(n, 3);
	struct tu_event ev;
	ck_assert_int_eq(tu_decode(r[0].data, r[0].len, &ev), 0);
	ck_assert_uint_eq(ev.n, 2000);
	uint64_t last = r[2].seq;
	tu_recs_free(r, n);
	append_range(s, SPOOL_SEV_INFO, 0, 1, "after", 0);
	n = tu_read_all(s, false, &r);
	ck_assert_uint_eq(n, 4);
	ck_assert_uint_gt(r[3].seq, last);
	tu_recs_free(r, n);
	ck_assert_int_eq(spool_close(s), 0);
	ck_assert_int_eq(spool_compact(dir, &before, &after, err, sizeof(err)), 0);
	ck_assert_uint_le(after, before);
	ck_assert_uint_gt(after, 0);
}
END_TEST

static Suite *spoolctl_suite(void)
{
	Suite *s = suite_create("spoolctl");
	TCase *tc = tcase_create("commands");
	tu_add_cleanup_fixture(tc);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_status_figures);
	tcase_add_test(tc, test_peek);
	tcase_add_test(tc, test_dead_retry_keeps_order);
	tcase_add_test(tc, test_purge);
	tcase_add_test(tc, test_verify_finds_and_repairs);
	tcase_add_test(tc, test_verify_counters);
	tcase_add_test(tc, test_export_import);
	tcase_add_test(tc, test_import_refuses_damaged_file);
	tcase_add_test(tc, test_double_import_server_dedups);
	tcase_add_test(tc, test_compact);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return tc_run_forked(spoolctl_suite());
}
