/* test_setaside.c — what a crash can leave, and what becomes of it (issue
 * 17): a data.mdb whose creation was cut short is set aside and the spool
 * created anew (never one with its `created` mark, never one that opens,
 * also when several processes open the new spool at once); a commit ring
 * whose header is unreadable is salvaged once (every sound entry moved
 * exactly once, the rest counted as torn), renamed .bad, no longer blocks
 * compaction, is named by `spoolctl verify` and removed by `verify
 * --repair`.  spoolctl runs as the real binary ($SPOOLCTL). */
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check_main.h"
#include <spool/spool.h>

#include "testutil.h"

static char g_out[1 << 16];

/* Runs spoolctl with the arguments on spool dir, stdout and stderr in
 * g_out; returns its exit code. */
static int ctl(const char *dir, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int ctl(const char *dir, const char *fmt, ...)
{
	const char *exe = getenv("SPOOLCTL");
	ck_assert_msg(exe != NULL, "SPOOLCTL not set");
	char args[1024], cmd[PATH_MAX + 2048];
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

static void spit(const char *path, const unsigned char *buf, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(tu_write_all(fd, buf, len), 0);
	close(fd);
}

static unsigned char *slurp(const char *path, size_t *len)
{
	int fd = open(path, O_RDONLY);
	ck_assert_msg(fd >= 0, "%s: %s", path, strerror(errno));
	struct stat st;
	ck_assert_int_eq(fstat(fd, &st), 0);
	unsigned char *b = malloc((size_t)st.st_size + 1);
	ck_assert_ptr_nonnull(b);
	ck_assert_int_eq(tu_read_full(fd, b, (size_t)st.st_size), 0);
	close(fd);
	*len = (size_t)st.st_size;
	return b;
}

/* The names in dir starting with prefix: how many, the first into name. */
static int names_with(const char *dir, const char *prefix, char *name, size_t len)
{
	DIR *d = opendir(dir);
	ck_assert_ptr_nonnull(d);
	int n = 0;
	struct dirent *de;
	while ((de = readdir(d)) != NULL)
		if (strncmp(de->d_name, prefix, strlen(prefix)) == 0 && n++ == 0 && name)
			snprintf(name, len, "%s", de->d_name);
	closedir(d);
	return n;
}

/* Garbage, as a disk returns a never-written sector. */
static void garbage(unsigned char *b, size_t len, uint64_t seed)
{
	for (size_t i = 0; i < len; i++) {
		seed = seed * 6364136223846793005ull + 1442695040888963407ull;
		b[i] = (unsigned char)(seed >> 56);
	}
}

static struct spool *open_sync(const char *dir)
{
	struct spool_options o;
	tu_opts(&o, SPOOL_SYNC);
	return tu_open(dir, &o);
}

/* The events {p: 1, n} pending, by n: fails on a duplicate or a stranger,
 * and when `ordered` on one out of order; returns how many, and whether
 * each of 1..max is there in seen[]. */
static size_t pending_by_n(struct spool *s, bool *seen, uint64_t max, bool ordered)
{
	struct tu_rec *r = NULL;
	size_t n = tu_read_all(s, false, &r);
	memset(seen, 0, (max + 1) * sizeof(*seen));
	uint64_t prev = 0;
	for (size_t i = 0; i < n; i++) {
		struct tu_event ev;
		ck_assert_int_eq(tu_decode(r[i].data, r[i].len, &ev), 0);
		ck_assert_msg(ev.n >= 1 && ev.n <= max, "event n=%llu unknown",
		              (unsigned long long)ev.n);
		ck_assert_msg(!seen[ev.n], "event n=%llu twice", (unsigned long long)ev.n);
		ck_assert_msg(!ordered || ev.n > prev, "event n=%llu after n=%llu",
		              (unsigned long long)ev.n, (unsigned long long)prev);
		seen[ev.n] = true;
		prev = ev.n;
	}
	tu_recs_free(r, n);
	return n;
}

/* Append, read back and settle work on the spool. */
static void assert_works(const char *dir)
{
	struct spool *s = open_sync(dir);
	struct spool_stats before = tu_stats(s);
	tu_append_ok(s, SPOOL_SEV_INFO, 9, 9999);
	struct spool_batch *b;
	ck_assert_int_eq(spool_read_batch(s, before.next_seq - 1, 0, 0, &b), 0);
	ck_assert_uint_eq(spool_batch_count(b), 1);
	uint64_t seq = spool_batch_records(b)[0].seq;
	spool_batch_release(b);
	uint64_t settled = 0;
	ck_assert_int_eq(spool_settle(s, &seq, 1, NULL, 0, &settled), 0);
	ck_assert_uint_eq(settled, 1);
	ck_assert_uint_eq(tu_stats(s).pending, before.pending);
	ck_assert_int_eq(spool_close(s), 0);
}

/* ---- a data.mdb whose creation was cut short ---- */

START_TEST(test_unfinished_data_set_aside)
{
	char dir[PATH_MAX], data[PATH_MAX + 16], name[256], aside[PATH_MAX + 300];
	tu_mkdtemp(dir, sizeof(dir), "unfinished");
	tu_join(data, sizeof(data), dir, "data.mdb");
	/* a first sector of garbage, as a power loss before LMDB's first
	 * sync can leave it; no `created` mark */
	unsigned char junk[8192];
	garbage(junk, sizeof(junk), 17);
	spit(data, junk, sizeof(junk));

	struct spool *s = open_sync(dir);
	tu_append_ok(s, SPOOL_SEV_INFO, 1, 1);
	ck_assert_int_eq(spool_close(s), 0);
	/* set aside whole, not deleted */
	ck_assert_int_eq(names_with(dir, "data.mdb.unfinished-", name, sizeof(name)), 1);
	snprintf(aside, sizeof(aside), "%s/%s", dir, name);
	size_t len;
	unsigned char *kept = slurp(aside, &len);
	ck_assert_uint_eq(len, sizeof(junk));
	ck_assert(memcmp(kept, junk, len) == 0);
	free(kept);
	assert_works(dir);

	/* reported, and cleared on request */
	ck_assert_int_eq(ctl(dir, "status"), 0);
	assert_out_has("1 unfinished data.mdb");
	ck_assert_int_eq(ctl(dir, "status --json"), 0);
	assert_out_has("\"set_aside\":1");
	ck_assert_int_eq(ctl(dir, "verify"), 1);
	assert_out_has(name);
	assert_out_has("never held an event");
	ck_assert_int_eq(ctl(dir, "verify --repair"), 0);
	assert_out_has("removed: 1 file(s)");
	ck_assert_int_eq(names_with(dir, "data.mdb.unfinished-", NULL, 0), 0);
	ck_assert_int_eq(ctl(dir, "verify"), 0);
	s = open_sync(dir);
	ck_assert_uint_eq(tu_stats(s).pending, 1);
	ck_assert_int_eq(spool_close(s), 0);
}
END_TEST

START_TEST(test_marked_spool_never_set_aside)
{
	char dir[PATH_MAX], data[PATH_MAX + 16];
	tu_mkdtemp(dir, sizeof(dir), "marked");
	struct spool *s = open_sync(dir);
	tu_append_ok(s, SPOOL_SEV_INFO, 1, 1);
	ck_assert_int_eq(spool_close(s), 0);
	/* the spool promised an event; now its first page is damaged */
	tu_join(data, sizeof(data), dir, "data.mdb");
	size_t len;
	unsigned char *b = slurp(data, &len);
	garbage(b, 4096, 5);
	spit(data, b, len);
	struct spool_options o;
	tu_opts(&o, SPOOL_SYNC);
	char err[512] = "";
	ck_assert_int_ne(spool_open(dir, &o, &s, err, sizeof(err)), 0);
	ck_assert_msg(strstr(err, "data.mdb") || strstr(err, dir), "error: %s", err);
	/* reported, never moved aside or changed */
	ck_assert_int_eq(names_with(dir, "data.mdb.unfinished-", NULL, 0), 0);
	size_t len2;
	unsigned char *b2 = slurp(data, &len2);
	ck_assert_uint_eq(len2, len);
	ck_assert(memcmp(b, b2, len) == 0);
	free(b);
	free(b2);
}
END_TEST

START_TEST(test_unmarked_sound_spool_kept)
{
	/* a power loss can take the `created` mark of a spool that was synced
	 * whole and then used: a data.mdb that opens is kept, events and all */
	char dir[PATH_MAX], mark[PATH_MAX + 16];
	tu_mkdtemp(dir, sizeof(dir), "unmarked");
	struct spool *s = open_sync(dir);
	for (uint64_t n = 1; n <= 5; n++)
		tu_append_ok(s, SPOOL_SEV_INFO, 1, n);
	ck_assert_int_eq(spool_close(s), 0);
	tu_join(mark, sizeof(mark), dir, "created");
	ck_assert_int_eq(unlink(mark), 0);
	s = open_sync(dir);
	bool seen[6];
	ck_assert_uint_eq(pending_by_n(s, seen, 5, true), 5);
	ck_assert_int_eq(spool_close(s), 0);
	ck_assert_int_eq(names_with(dir, "data.mdb.unfinished-", NULL, 0), 0);
	ck_assert_int_eq(access(mark, F_OK), 0);
}
END_TEST

START_TEST(test_concurrent_first_open)
{
	/* several producers start at once on a spool whose creation was cut
	 * short: one sets the file aside, all open, nothing is lost */
	enum { NPROC = 6, ROUNDS = 3 };
	for (int round = 0; round < ROUNDS; round++) {
		char dir[PATH_MAX], data[PATH_MAX + 16];
		tu_mkdtemp(dir, sizeof(dir), "concurrent");
		tu_join(data, sizeof(data), dir, "data.mdb");
		unsigned char junk[4096 * 3];
		garbage(junk, sizeof(junk), 100 + (uint64_t)round);
		spit(data, junk, sizeof(junk));
		int go[2];
		ck_assert_int_eq(pipe(go), 0);
		pid_t pids[NPROC];
		for (int i = 0; i < NPROC; i++) {
			pids[i] = tu_fork();
			ck_assert_int_ge(pids[i], 0);
			if (pids[i] == 0) {
				close(go[1]);
				char c;
				if (read(go[0], &c, 1) != 0)
					_exit(3);
				struct spool_options o;
				tu_opts(&o, tu_modes[i % TU_NMODES]);
				struct spool *s = tu_open_nock(dir, &o);
				if (!s)
					_exit(1);
				struct tu_buf b;
				tu_payload(&b, 1, (uint64_t)i + 1, "first", 0);
				int rc = spool_append(s, SPOOL_SEV_INFO, b.data, b.len);
				tu_buf_free(&b);
				if (rc || spool_close(s))
					_exit(2);
				_exit(0);
			}
		}
		close(go[0]);
		close(go[1]); /* all start now */
		for (int i = 0; i < NPROC; i++)
			ck_assert_int_eq(tu_wait_until(pids[i], tu_now() + 60), 0);
		ck_assert_int_eq(names_with(dir, "data.mdb.unfinished-", NULL, 0), 1);
		struct spool *s = open_sync(dir);
		bool seen[NPROC + 1];
		ck_assert_uint_eq(pending_by_n(s, seen, NPROC, false), NPROC);
		ck_assert_int_eq(spool_close(s), 0);
	}
}
END_TEST

/* ---- a commit ring whose header is unreadable ---- */

enum { COMMITTED = 10, STAGED = 8, TORN_N = COMMITTED + 3, TOTAL = COMMITTED + STAGED };

/* A producer that committed events 1..COMMITTED, staged COMMITTED+1..TOTAL
 * in its ring and died: the ring file is left with both. */
static void dead_producer(const char *dir)
{
	pid_t pid = tu_fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		struct spool_options o;
		tu_opts(&o, SPOOL_COMMIT);
		o.commit_interval_seconds = 3600; /* nothing moves unless asked */
		o.ring_bytes = 64 * 1024;
		struct spool *s = tu_open_nock(dir, &o);
		if (!s)
			_exit(1);
		for (int n = 1; n <= TOTAL; n++) {
			char msg[32];
			snprintf(msg, sizeof(msg), "event-%04d", n);
			struct tu_buf b;
			tu_payload(&b, 1, (uint64_t)n, msg, 0);
			if (spool_append(s, SPOOL_SEV_WARN, b.data, b.len) != 0)
				_exit(2);
			tu_buf_free(&b);
			if (n == COMMITTED && spool_sync(s, 30, NULL) != 0)
				_exit(3);
		}
		_exit(0); /* as if killed: no spool_close() */
	}
	ck_assert_int_eq(tu_wait_until(pid, tu_now() + 60), 0);
}

/* Damages the ring: its header page, and the checksum of event TORN_N. */
static void damage_ring(const char *path)
{
	size_t len;
	unsigned char *b = slurp(path, &len);
	ck_assert_uint_gt(len, 4096);
	garbage(b, 4096, 77);
	char msg[32];
	snprintf(msg, sizeof(msg), "event-%04d", TORN_N);
	unsigned char *at = memmem(b + 4096, len - 4096, msg, strlen(msg));
	ck_assert_ptr_nonnull(at);
	at[0] ^= 0x20;
	spit(path, b, len);
	free(b);
}

START_TEST(test_bad_ring_salvaged_once)
{
	char dir[PATH_MAX], rings[PATH_MAX + 16], ring[256], path[PATH_MAX + 300],
	    bad[PATH_MAX + 310];
	tu_mkdtemp(dir, sizeof(dir), "badring");
	tu_join(rings, sizeof(rings), dir, "rings");
	dead_producer(dir);
	ck_assert_int_eq(names_with(rings, "ring-", ring, sizeof(ring)), 1);
	snprintf(path, sizeof(path), "%s/%s", rings, ring);
	snprintf(bad, sizeof(bad), "%s.bad", path);
	damage_ring(path);

	/* the ring holds what was never moved: compaction waits for one open */
	ck_assert_int_eq(ctl(dir, "compact"), 1);
	assert_out_has("open the spool once");
	ck_assert_int_eq(ctl(dir, "status"), 0); /* the one open */
	assert_out_has("1 unreadable ring(s)");
	ck_assert_int_eq(access(path, F_OK), -1);
	ck_assert_int_eq(access(bad, F_OK), 0);
	ck_assert_int_eq(ctl(dir, "compact"), 0);

	/* every sound entry exactly once, in order; the damaged one counted */
	struct spool *s = open_sync(dir);
	bool seen[TOTAL + 1];
	ck_assert_uint_eq(pending_by_n(s, seen, TOTAL, true), TOTAL - 1);
	for (int n = 1; n <= TOTAL; n++)
		ck_assert_msg(seen[n] == (n != TORN_N), "event %d %s", n,
		              seen[n] ? "present" : "missing");
	ck_assert_uint_eq(tu_stats(s).torn_total, 1);
	ck_assert_int_eq(spool_close(s), 0);

	ck_assert_int_eq(ctl(dir, "verify"), 1);
	assert_out_has(ring);
	assert_out_has("7 moved into the queue, 1 counted as torn");
	ck_assert_int_eq(ctl(dir, "verify --json"), 1);
	assert_out_has("\"bad_rings\":1");

	/* a power loss that undid the rename: nothing moves a second time */
	ck_assert_int_eq(rename(bad, path), 0);
	s = open_sync(dir);
	ck_assert_uint_eq(pending_by_n(s, seen, TOTAL, true), TOTAL - 1);
	ck_assert_uint_eq(tu_stats(s).torn_total, 1);
	ck_assert_int_eq(spool_close(s), 0);
	ck_assert_int_eq(access(bad, F_OK), 0);

	ck_assert_int_eq(ctl(dir, "verify --repair"), 0);
	assert_out_has("removed: 1 file(s)");
	ck_assert_int_eq(access(bad, F_OK), -1);
	ck_assert_int_eq(ctl(dir, "verify"), 0);
	ck_assert_int_eq(ctl(dir, "compact"), 0);
	s = open_sync(dir);
	ck_assert_uint_eq(pending_by_n(s, seen, TOTAL, true), TOTAL - 1);
	ck_assert_int_eq(spool_close(s), 0);
	assert_works(dir);
}
END_TEST

START_TEST(test_lost_ring_and_old_bad_ring)
{
	char dir[PATH_MAX], rings[PATH_MAX + 16], path[PATH_MAX + 300];
	tu_mkdtemp(dir, sizeof(dir), "lostring");
	tu_join(rings, sizeof(rings), dir, "rings");
	struct spool *s = open_sync(dir);
	tu_append_ok(s, SPOOL_SEV_INFO, 1, 1);
	ck_assert_int_eq(spool_close(s), 0);
	/* a ring whose pages never reached the disk: all zeros */
	static unsigned char zeros[4096 + 64 * 1024];
	snprintf(path, sizeof(path), "%s/ring-0000000000000abd", rings);
	spit(path, zeros, sizeof(zeros));
	/* and one an earlier version set aside without recovering it */
	unsigned char junk[8192];
	garbage(junk, sizeof(junk), 3);
	snprintf(path, sizeof(path), "%s/ring-00000000000000ab.bad", rings);
	spit(path, junk, sizeof(junk));

	s = open_sync(dir);
	ck_assert_uint_eq(tu_stats(s).pending, 1);
	ck_assert_uint_eq(tu_stats(s).torn_total, 1);
	ck_assert_int_eq(spool_close(s), 0);
	ck_assert_int_eq(ctl(dir, "compact"), 0);
	ck_assert_int_eq(ctl(dir, "verify"), 1);
	assert_out_has("ring-0000000000000abd.bad: a ring left unreadable by a crash");
	assert_out_has("0 moved into the queue, 1 counted as torn");
	assert_out_has("ring-00000000000000ab.bad: a ring set aside as unreadable by an earlier");
	ck_assert_int_eq(ctl(dir, "verify --repair --json"), 0);
	assert_out_has("\"files_removed\":2");
	assert_out_has("\"ok_after_repair\":true");
	ck_assert_int_eq(names_with(rings, "ring-", NULL, 0), 0);
	assert_works(dir);
}
END_TEST

static Suite *setaside_suite(void)
{
	Suite *s = suite_create("spoolctl-setaside");
	TCase *tc = tcase_create("set aside");
	tu_add_cleanup_fixture(tc);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_unfinished_data_set_aside);
	tcase_add_test(tc, test_marked_spool_never_set_aside);
	tcase_add_test(tc, test_unmarked_sound_spool_kept);
	tcase_add_test(tc, test_concurrent_first_open);
	tcase_add_test(tc, test_bad_ring_salvaged_once);
	tcase_add_test(tc, test_lost_ring_and_old_bad_ring);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return tc_run_forked(setaside_suite());
}
