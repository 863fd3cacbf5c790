/* test_spool_faults.c — the spool under faults: a full disk (a small tmpfs
 * in a private mount namespace), a corrupt record in data.mdb, readers
 * killed while holding a batch, handles inherited across fork(), and the
 * agent lock (including a holder that dies). */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check_main.h"
#include "testutil.h"

static char g_dir[PATH_MAX];
static char g_path[PATH_MAX];

static void setup(void)
{
	tu_mkdtemp(g_dir, sizeof(g_dir), "faults");
	tu_join(g_path, sizeof(g_path), g_dir, "spool");
}

static void teardown(void)
{
	tu_rmrf(g_dir);
}

/* ------------------------------------------------------------------ */
/* ENOSPC */

static void write_filler(const char *path, size_t bytes)
{
	int fd = open(path, O_CREAT | O_WRONLY | O_TRUNC, 0600);
	ck_assert_int_ge(fd, 0);
	char blk[4096];
	memset(blk, 0x5c, sizeof(blk));
	for (size_t done = 0; done < bytes; done += sizeof(blk))
		ck_assert_int_eq(write(fd, blk, sizeof(blk)), (ssize_t)sizeof(blk));
	ck_assert_int_eq(fsync(fd), 0);
	close(fd);
}

/* Event counters present, checked to run 0..k-1 in order; returns k. */
static uint64_t present_prefix(struct spool *s, int64_t p)
{
	struct tu_rec *r = NULL;
	size_t n = tu_read_all(s, false, &r);
	uint64_t next = 0;
	for (size_t i = 0; i < n; i++) {
		struct tu_event ev;
		ck_assert_int_eq(tu_decode(r[i].data, r[i].len, &ev), 0);
		if (ev.p != p)
			continue;
		ck_assert_msg(ev.n == next, "event %" PRIu64 " where %" PRIu64 " was due", ev.n,
			      next);
		next++;
	}
	tu_recs_free(r, n);
	return next;
}

/* Fill a 2 MiB tmpfs: a clear error (never a crash or hang), every record
 * whose append returned 0 readable after reopen, and appends work again
 * once space is freed. */
START_TEST(test_enospc)
{
	enum spool_durability mode = tu_modes[_i];
	char mnt[PATH_MAX], filler[PATH_MAX], path[PATH_MAX];
	tu_join(mnt, sizeof(mnt), g_dir, "mnt");
	ck_assert_int_eq(mkdir(mnt, 0700), 0);
	if (tu_private_tmpfs(mnt, "size=2m") != 0)
		return;
	tu_join(filler, sizeof(filler), mnt, "filler");
	tu_join(path, sizeof(path), mnt, "spool");
	write_filler(filler, 768 * 1024);

	struct spool_options o;
	tu_opts(&o, mode);
	o.initial_map_bytes = 256 * 1024;
	o.ring_bytes = 128 * 1024;
	o.full_policy = SPOOL_FULL_DROP;
	o.flush_batch = 16;
	o.flush_interval_seconds = 0.05;
	struct spool *s = tu_open(path, &o);

	uint64_t ok = 0;
	int rc = 0;
	for (uint64_t n = 0; n < 200000; n++) {
		struct tu_buf b;
		tu_payload(&b, 1, n, "enospc", 1000);
		rc = spool_append(s, SPOOL_SEV_INFO, b.data, b.len);
		tu_buf_free(&b);
		if (rc != 0)
			break;
		ok++;
	}
	printf("%s: full disk after %" PRIu64 " appends: %d (%s)\n", tu_mode_label(mode), ok, rc,
	       spool_strerror(rc));
	fflush(stdout);
	ck_assert_msg(rc != 0, "%s: 200000 appends of 1 KiB succeeded on a 2 MiB file system",
		      tu_mode_label(mode));
	/* The code is asserted at the end, so that a wrong code does not hide
	 * whether the data survived. */
	int full_rc = rc;
	bool code_ok = mode == SPOOL_SYNC ? (rc == -ENOSPC || rc == SPOOL_EFULL)
					  : (rc == -ENOSPC || rc == SPOOL_EFULL || rc == SPOOL_ECLOSED);
	ck_assert_uint_gt(ok, 0);
	/* still readable while full */
	struct spool_stats st;
	ck_assert_int_eq(spool_stats(s, &st), 0);
	int crc = spool_close(s);
	printf("%s: close on a full disk = %d (%s)\n", tu_mode_label(mode), crc,
	       spool_strerror(crc));

	struct spool_options ro;
	tu_opts(&ro, SPOOL_SYNC);
	if (mode == SPOOL_SYNC) {
		/* everything acknowledged is there, even before space is freed */
		s = tu_open(path, &ro);
		ck_assert_uint_eq(present_prefix(s, 1), ok);
		ck_assert_int_eq(spool_close(s), 0);
	}

	/* free space: delete the filler, ack half */
	ck_assert_int_eq(unlink(filler), 0);
	s = tu_open(path, &ro);
	ck_assert_int_eq(spool_sync(s, 30.0, NULL), 0);
	uint64_t present = present_prefix(s, 1);
	if (mode == SPOOL_BUFFERED) {
		ck_assert_uint_le(present, ok);
		struct spool_stats bst = tu_stats(s);
		printf("buffered: %" PRIu64 " of %" PRIu64 " accepted records kept (counters: "
		       "appended %" PRIu64 ", dropped %" PRIu64 ", torn %" PRIu64 ")\n",
		       present, ok, bst.appended_total, bst.dropped_total, bst.torn_total);
	} else {
		ck_assert_msg(present == ok,
			      "%s: %" PRIu64 " records acknowledged, %" PRIu64 " present after "
			      "reopen",
			      tu_mode_label(mode), ok, present);
	}
	ck_assert_int_eq(spool_stats(s, &st), 0);
	ck_assert_uint_eq(st.dead, 0);
	ck_assert_uint_eq(st.corrupt_total, 0);
	struct tu_rec *r = NULL;
	size_t n = tu_read_all(s, false, &r);
	size_t half = n / 2;
	uint64_t *seqs = malloc((half + 1) * sizeof(*seqs));
	ck_assert_ptr_nonnull(seqs);
	for (size_t i = 0; i < half; i++)
		seqs[i] = r[i].seq;
	uint64_t del = 0;
	ck_assert_int_eq(spool_ack(s, seqs, half, &del), 0);
	ck_assert_uint_eq(del, half);
	free(seqs);
	tu_recs_free(r, n);
	ck_assert_int_eq(spool_close(s), 0);

	/* appends succeed again, in the original mode */
	s = tu_open(path, &o);
	for (uint64_t k = 0; k < 50; k++) {
		struct tu_buf b;
		tu_payload(&b, 2, k, "after", 1000);
		rc = spool_append(s, SPOOL_SEV_INFO, b.data, b.len);
		tu_buf_free(&b);
		ck_assert_msg(rc == 0, "%s: append %" PRIu64 " after freeing space = %d (%s)",
			      tu_mode_label(mode), k, rc, spool_strerror(rc));
	}
	ck_assert_int_eq(spool_close(s), 0);
	s = tu_open(path, &ro);
	ck_assert_uint_eq(present_prefix(s, 2), 50);
	ck_assert_uint_eq(tu_stats(s).pending, n - half + 50);
	ck_assert_int_eq(spool_close(s), 0);
	umount2(mnt, MNT_DETACH);
	ck_assert_msg(code_ok, "%s append on a full disk = %d (%s), want -ENOSPC or SPOOL_EFULL%s",
		      tu_mode_label(mode), full_rc, spool_strerror(full_rc),
		      mode == SPOOL_SYNC ? "" : " (or SPOOL_ECLOSED)");
}
END_TEST

/* What a producer saw on a full disk (sent to the test over a pipe). */
struct refusals {
	uint64_t ok;      /* appends that returned 0 */
	uint64_t refused; /* appends that did not */
	uint64_t enospc;  /* of them, -ENOSPC */
	uint64_t seen;    /* dropped_total in the producer's own spool_stats() */
	int stats_rc;
};

/* Every record a full disk refuses counts in dropped_total: seen at once by
 * the producer and by any other process, and kept exactly once by the next
 * commits.  The producer fills a 2 MiB tmpfs, is refused 5 times, and is
 * killed without closing, so nothing of it can store the count later (sync
 * mode: the refusals are -ENOSPC; commit and buffered: the ring cannot move
 * and fills). */
START_TEST(test_enospc_refusals_counted)
{
	enum spool_durability mode = tu_modes[_i];
	char mnt[PATH_MAX], filler[PATH_MAX], path[PATH_MAX];
	tu_join(mnt, sizeof(mnt), g_dir, "mnt");
	ck_assert_int_eq(mkdir(mnt, 0700), 0);
	if (tu_private_tmpfs(mnt, "size=2m") != 0)
		return;
	tu_join(filler, sizeof(filler), mnt, "filler");
	tu_join(path, sizeof(path), mnt, "spool");
	write_filler(filler, 768 * 1024);

	struct spool_options o;
	tu_opts(&o, mode);
	o.initial_map_bytes = 256 * 1024;
	o.ring_bytes = 128 * 1024;
	o.full_policy = SPOOL_FULL_DROP;
	o.full_timeout_seconds = 0.05;
	o.flush_batch = 16;
	o.flush_interval_seconds = 0.05;
	int pfd[2];
	ck_assert_int_eq(pipe(pfd), 0);
	pid_t child = tu_fork();
	ck_assert_int_ge(child, 0);
	if (child == 0) {
		close(pfd[0]);
		struct spool *c = tu_open_nock(path, &o);
		if (c == NULL)
			_exit(2);
		struct refusals r = {0};
		for (uint64_t n = 0; n < 200000 && r.refused < 5; n++) {
			struct tu_buf b;
			tu_payload(&b, 1, n, "refused", 1000);
			int rc = spool_append(c, SPOOL_SEV_INFO, b.data, b.len);
			tu_buf_free(&b);
			if (rc == 0) {
				r.ok++;
				continue;
			}
			r.refused++;
			r.enospc += rc == -ENOSPC;
		}
		struct spool_stats st;
		r.stats_rc = spool_stats(c, &st);
		r.seen = st.dropped_total;
		if (tu_write_all(pfd[1], &r, sizeof(r)) != 0)
			_exit(3);
		for (;;)
			pause(); /* killed, never closed */
	}
	close(pfd[1]);
	struct refusals r;
	int got = tu_read_full(pfd[0], &r, sizeof(r));
	close(pfd[0]);
	kill(child, SIGKILL);
	int code = tu_wait(child);
	ck_assert_msg(got == 0, "producer failed before reporting (exit %d)", code);
	printf("%s: %" PRIu64 " appended, %" PRIu64 " refused (%" PRIu64 " -ENOSPC); the producer's "
	       "dropped_total %" PRIu64 "\n",
	       tu_mode_label(mode), r.ok, r.refused, r.enospc, r.seen);
	ck_assert_uint_eq(r.refused, 5);
	ck_assert_uint_gt(r.ok, 0);
	if (mode == SPOOL_SYNC)
		ck_assert_uint_eq(r.enospc, 5);
	ck_assert_int_eq(r.stats_rc, 0);
	ck_assert_msg(r.seen == 5, "%s: the producer's dropped_total is %" PRIu64 " after 5 refusals",
		      tu_mode_label(mode), r.seen);

	/* another process, the disk still full */
	struct spool_options ro;
	tu_opts(&ro, SPOOL_SYNC);
	struct spool *s = tu_open(path, &ro);
	struct spool_stats st = tu_stats(s);
	ck_assert_msg(st.dropped_total == 5,
		      "%s: dropped_total %" PRIu64 " in another process after 5 refusals",
		      tu_mode_label(mode), st.dropped_total);
	ck_assert_int_eq(spool_close(s), 0);

	/* room again: the next commits keep the count, once */
	ck_assert_int_eq(unlink(filler), 0);
	s = tu_open(path, &ro); /* moves the killed producer's ring */
	tu_append_ok(s, SPOOL_SEV_INFO, 2, 0);
	tu_append_ok(s, SPOOL_SEV_INFO, 2, 1);
	st = tu_stats(s);
	ck_assert_uint_eq(st.dropped_total, 5);
	if (mode != SPOOL_BUFFERED) /* buffered: the kill lost the unflushed window */
		ck_assert_uint_eq(st.pending, r.ok + 2);
	ck_assert_int_eq(spool_close(s), 0);
	s = tu_open(path, &ro);
	ck_assert_uint_eq(tu_stats(s).dropped_total, 5);
	ck_assert_int_eq(spool_close(s), 0);
	umount2(mnt, MNT_DETACH);
}
END_TEST

/* ------------------------------------------------------------------ */
/* A corrupt record */

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

/* Flips the last bytes of every copy of marker in file; returns the count. */
static int corrupt_marker(const char *file, const char *marker)
{
	size_t len = 0, ml = strlen(marker);
	unsigned char *buf = slurp(file, &len);
	int fd = open(file, O_WRONLY);
	ck_assert_int_ge(fd, 0);
	int hits = 0;
	for (size_t i = 0; i + ml <= len; i++) {
		if (memcmp(buf + i, marker, ml) != 0)
			continue;
		/* same length, still a valid msgpack string: only the
		 * checksum can tell */
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

START_TEST(test_corrupt_record)
{
	struct spool_options o;
	tu_opts(&o, SPOOL_SYNC);
	struct spool *s = tu_open(g_path, &o);
	static const char *const marks[3] = {"MARKER-ONE-q7Zp", "MARKER-TWO-x9Kd", "MARKER-THR-m2Wf"};
	struct tu_buf p[3];
	for (int i = 0; i < 3; i++) {
		tu_payload(&p[i], 1, (uint64_t)i, marks[i], 20);
		ck_assert_int_eq(spool_append(s, SPOOL_SEV_WARN, p[i].data, p[i].len), 0);
	}
	struct tu_rec *r = NULL;
	ck_assert_uint_eq(tu_read_all(s, false, &r), 3);
	uint64_t seq[3] = {r[0].seq, r[1].seq, r[2].seq};
	uint64_t hdr3 = tu_stats(s).pending_bytes - p[0].len - p[1].len - p[2].len;
	ck_assert_uint_eq(hdr3 % 3, 0);
	tu_recs_free(r, 3);
	ck_assert_int_eq(spool_close(s), 0);

	char data[PATH_MAX];
	tu_join(data, sizeof(data), g_path, "data.mdb");
	int hits = corrupt_marker(data, marks[1]);
	ck_assert_msg(hits >= 1, "marker of the middle record not found in %s", data);
	printf("corrupted %d copies of the middle record's marker\n", hits);

	s = tu_open(g_path, &o);
	struct spool_batch *b = NULL;
	ck_assert_int_eq(spool_read_batch(s, 0, 0, 0, &b), 0);
	ck_assert_uint_eq(spool_batch_count(b), 2);
	const struct spool_record *rec = spool_batch_records(b);
	ck_assert_uint_eq(rec[0].seq, seq[0]);
	ck_assert_mem_eq(rec[0].data, p[0].data, p[0].len);
	ck_assert_uint_eq(rec[1].seq, seq[2]);
	ck_assert_mem_eq(rec[1].data, p[2].data, p[2].len);
	spool_batch_release(b);

	struct spool_stats st = tu_stats(s);
	ck_assert_uint_eq(st.pending, 2);
	ck_assert_uint_eq(st.dead, 1);
	ck_assert_uint_eq(st.corrupt_total, 1);
	ck_assert_uint_eq(st.dead_total, 1);
	ck_assert_uint_eq(st.pending_bytes, p[0].len + p[2].len + 2 * (hdr3 / 3));

	struct tu_rec *d = NULL;
	ck_assert_uint_eq(tu_read_all(s, true, &d), 1);
	ck_assert_uint_eq(d[0].seq, seq[1]);
	ck_assert_int_eq(d[0].dead_status, SPOOL_ECORRUPT);
	ck_assert_msg(d[0].dead_reason && d[0].dead_reason[0], "corrupt dead letter has no reason");
	printf("dead letter: status %d, reason \"%s\"\n", d[0].dead_status, d[0].dead_reason);
	tu_recs_free(d, 1);

	/* the next read goes on; nothing is dead-lettered twice */
	ck_assert_int_eq(spool_read_batch(s, 0, 0, 0, &b), 0);
	ck_assert_uint_eq(spool_batch_count(b), 2);
	spool_batch_release(b);
	ck_assert_int_eq(spool_read_batch(s, seq[0], 1, 0, &b), 0);
	ck_assert_uint_eq(spool_batch_count(b), 1);
	ck_assert_uint_eq(spool_batch_records(b)[0].seq, seq[2]);
	spool_batch_release(b);
	tu_append_ok(s, SPOOL_SEV_INFO, 1, 3);
	st = tu_stats(s);
	ck_assert_uint_eq(st.pending, 3);
	ck_assert_uint_eq(st.corrupt_total, 1);
	ck_assert_uint_eq(st.dead, 1);
	for (int i = 0; i < 3; i++)
		tu_buf_free(&p[i]);
	ck_assert_int_eq(spool_close(s), 0);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Stale readers */

/* PIDs listed in `mdb_stat -r`'s reader table; -1 if mdb_stat is missing. */
static int reader_pids(const char *dir, long *pids, int cap)
{
	char cmd[PATH_MAX + 64], out[8192];
	snprintf(cmd, sizeof(cmd), "mdb_stat -r '%s' 2>/dev/null", dir);
	/* mdb_stat exits 1 after the reader table on a spool (it cannot open
	 * the named databases as the main one), so judge by the output */
	if (tu_capture(cmd, out, sizeof(out)) == -1 || strstr(out, "Reader Table") == NULL)
		return -1;
	int n = 0;
	char *save = NULL;
	for (char *line = strtok_r(out, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		char *end;
		long pid = strtol(line, &end, 10);
		if (end != line && pid > 0 && n < cap)
			pids[n++] = pid;
	}
	return n;
}

/* Forks a reader that opens the spool, reads a batch and holds it; kills it
 * with SIGKILL once it holds the batch.  Returns the dead reader's pid. */
static pid_t kill_a_reader(const struct spool_options *o, int round, size_t expect)
{
	int pfd[2];
	ck_assert_int_eq(pipe(pfd), 0);
	pid_t pid = tu_fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		close(pfd[0]);
		struct spool *c = tu_open_nock(g_path, o);
		if (c == NULL)
			_exit(2);
		struct spool_batch *b = NULL;
		int rc = spool_read_batch(c, 0, 0, 0, &b);
		if (rc != 0) {
			fprintf(stderr, "reader child: read = %d (%s)\n", rc, spool_strerror(rc));
			_exit(3);
		}
		if (spool_batch_count(b) != expect)
			_exit(4);
		if (tu_write_all(pfd[1], "R", 1) != 0)
			_exit(5);
		for (;;)
			pause(); /* holding the batch */
	}
	close(pfd[1]);
	char x = 0;
	int got = tu_read_full(pfd[0], &x, 1);
	close(pfd[0]);
	if (got != 0) {
		int code = tu_wait(pid);
		ck_abort_msg("round %d: reader child failed before holding a batch (exit %d; 2 open, "
			     "3 read, 4 wrong count)",
			     round, code);
	}
	ck_assert_int_eq(kill(pid, SIGKILL), 0);
	ck_assert_int_eq(tu_wait(pid), 128 + SIGKILL);
	return pid;
}

/* 20 readers killed while holding a batch never exhaust max_readers 8: the
 * spool keeps working for new readers and for a long-lived handle. */
START_TEST(test_stale_readers_no_exhaustion)
{
	struct spool_options o;
	tu_opts(&o, SPOOL_SYNC);
	o.max_readers = 8;
	/* keep the environment in use throughout, so LMDB never resets the
	 * reader table by itself (it does when the first process opens it) */
	struct spool *keep = tu_open(g_path, &o);
	for (int i = 0; i < 5; i++)
		tu_append_ok(keep, SPOOL_SEV_INFO, 1, (uint64_t)i);
	for (int round = 0; round < 20; round++) {
		kill_a_reader(&o, round, 5);
		/* the long-lived handle can read after every death */
		struct tu_rec *r = NULL;
		ck_assert_uint_eq(tu_read_all(keep, false, &r), 5);
		tu_recs_free(r, 5);
	}
	tu_append_ok(keep, SPOOL_SEV_INFO, 1, 5);
	ck_assert_uint_eq(tu_stats(keep).pending, 6);
	ck_assert_int_eq(spool_close(keep), 0);
}
END_TEST

/* spool_open() clears a dead reader's slot, also when this process already
 * has the spool open ("Opening ... clears stale reader slots"). */
START_TEST(test_stale_reader_cleared_by_open)
{
	struct spool_options o;
	tu_opts(&o, SPOOL_SYNC);
	o.max_readers = 8;
	struct spool *keep = tu_open(g_path, &o);
	tu_append_ok(keep, SPOOL_SEV_INFO, 1, 0);
	long pids[64];
	if (reader_pids(g_path, pids, 64) < 0) {
		printf("SKIP test_stale_reader_cleared_by_open: mdb_stat (lmdb-utils) not "
		       "available\n");
		spool_close(keep);
		return;
	}
	for (int round = 0; round < 3; round++) {
		pid_t dead = kill_a_reader(&o, round, 1);
		int np = reader_pids(g_path, pids, 64);
		bool listed = false;
		for (int i = 0; i < np; i++)
			listed |= pids[i] == (long)dead;
		ck_assert_msg(listed, "round %d: the killed reader %ld was not in the reader table "
				      "at all (the test cannot see the slot)",
			      round, (long)dead);
		struct spool *s = tu_open(g_path, &o);
		np = reader_pids(g_path, pids, 64);
		for (int i = 0; i < np; i++)
			ck_assert_msg(pids[i] != (long)dead,
				      "round %d: killed reader %ld still holds a slot after "
				      "spool_open in a process that already had the spool open",
				      round, (long)dead);
		ck_assert_int_eq(spool_close(s), 0);
	}
	ck_assert_int_eq(spool_close(keep), 0);
}
END_TEST

/* ------------------------------------------------------------------ */
/* fork() */

enum {
	FK_OK = 0,
	FK_APPEND = 10,
	FK_MANY,
	FK_READ,
	FK_DEAD,
	FK_STATS,
	FK_SYNC,
	FK_ACK,
	FK_META,
	FK_LOCK,
	FK_RECOVER,
	FK_OPEN,
	FK_NEW_APPEND,
	FK_NEW_APPEND2,
	FK_NEW_CLOSE,
};

static void fork_child(struct spool *inherited, enum spool_durability mode)
{
	struct tu_buf b;
	tu_payload(&b, 1, 0, "child", 0);
	struct spool_input in = {SPOOL_SEV_INFO, b.data, b.len};
	struct spool_batch *bt = NULL;
	struct spool_stats st;
	uint64_t seq = 1;
	if (spool_append(inherited, SPOOL_SEV_INFO, b.data, b.len) != SPOOL_EFORKED)
		_exit(FK_APPEND);
	if (spool_append_many(inherited, &in, 1) != SPOOL_EFORKED)
		_exit(FK_MANY);
	if (spool_read_batch(inherited, 0, 0, 0, &bt) != SPOOL_EFORKED)
		_exit(FK_READ);
	if (spool_read_dead(inherited, 0, 0, &bt) != SPOOL_EFORKED)
		_exit(FK_DEAD);
	if (spool_stats(inherited, &st) != SPOOL_EFORKED)
		_exit(FK_STATS);
	if (spool_sync(inherited, 1.0, NULL) != SPOOL_EFORKED)
		_exit(FK_SYNC);
	if (spool_ack(inherited, &seq, 1, NULL) != SPOOL_EFORKED)
		_exit(FK_ACK);
	if (spool_meta_put(inherited, "k", "v", 1) != SPOOL_EFORKED)
		_exit(FK_META);
	if (spool_agent_lock(inherited) != SPOOL_EFORKED)
		_exit(FK_LOCK);
	if (spool_recover(inherited, NULL) != SPOOL_EFORKED)
		_exit(FK_RECOVER);

	struct spool_options o;
	tu_opts(&o, mode);
	struct spool *fresh = tu_open_nock(g_path, &o);
	if (fresh == NULL)
		_exit(FK_OPEN);
	if (spool_append(fresh, SPOOL_SEV_INFO, b.data, b.len) != 0)
		_exit(FK_NEW_APPEND);
	/* dropping the inherited handle must not disturb the fresh one (LMDB:
	 * closing any descriptor of the file drops all the process's locks) */
	spool_close(inherited);
	tu_buf_free(&b);
	tu_payload(&b, 1, 1, "child", 0);
	if (spool_append(fresh, SPOOL_SEV_INFO, b.data, b.len) != 0)
		_exit(FK_NEW_APPEND2);
	if (spool_close(fresh) != 0)
		_exit(FK_NEW_CLOSE);
	tu_buf_free(&b);
	_exit(FK_OK);
}

START_TEST(test_fork)
{
	enum spool_durability mode = tu_modes[_i];
#if defined(__SANITIZE_ADDRESS__)
	/* Under GCC 12's AddressSanitizer a child forked beside a staged
	 * handle's flusher thread hangs now and then (about one run in five
	 * under load) although the flusher is held out of LMDB and the
	 * allocator around fork(); glibc builds never did.  Not run there
	 * until the cause is known. */
	if (mode != SPOOL_SYNC) {
		printf("SKIP test_fork %s: AddressSanitizer build\n", tu_mode_label(mode));
		return;
	}
#endif
	struct spool_options o;
	tu_opts(&o, mode);
	o.commit_interval_seconds = 0.5; /* keep the parent's records staged over the fork */
	o.flush_interval_seconds = 0.5;
	struct spool *s = tu_open(g_path, &o);
	tu_append_ok(s, SPOOL_SEV_INFO, 0, 0);
	tu_append_ok(s, SPOOL_SEV_INFO, 0, 1);
	pid_t pid = tu_fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0)
		fork_child(s, mode);
	int code = tu_wait_until(pid, tu_now() + 120.0);
	ck_assert_msg(code == FK_OK,
		      "%s: forked child failed at step %d (10 append, 11 many, 12 read, 13 dead, "
		      "14 stats, 15 sync, 16 ack, 17 meta, 18 lock, 19 recover: inherited handle "
		      "did not return EFORKED; 20 open, 21/22 append, 23 close on a fresh handle)",
		      tu_mode_label(mode), code);
	/* the parent's handle keeps working */
	tu_append_ok(s, SPOOL_SEV_INFO, 0, 2);
	ck_assert_int_eq(spool_sync(s, 30.0, NULL), 0);
	struct tu_rec *r = NULL;
	size_t n = tu_read_all(s, false, &r);
	ck_assert_uint_eq(n, 5);
	int64_t pp[5];
	uint64_t nn[5];
	for (size_t i = 0; i < n; i++) {
		struct tu_event ev;
		ck_assert_int_eq(tu_decode(r[i].data, r[i].len, &ev), 0);
		pp[i] = ev.p;
		nn[i] = ev.n;
	}
	/* each process's own order, each event once */
	uint64_t next[2] = {0, 0};
	for (size_t i = 0; i < n; i++) {
		ck_assert(pp[i] == 0 || pp[i] == 1);
		ck_assert_uint_eq(nn[i], next[pp[i]]);
		next[pp[i]]++;
	}
	ck_assert_uint_eq(next[0], 3);
	ck_assert_uint_eq(next[1], 2);
	tu_recs_free(r, n);
	struct spool_stats st = tu_stats(s);
	ck_assert_uint_eq(st.appended_total, 5);
	ck_assert_int_eq(spool_close(s), 0);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Agent lock */

START_TEST(test_agent_lock_same_process)
{
	struct spool_options o;
	tu_opts(&o, SPOOL_SYNC);
	struct spool *a = tu_open(g_path, &o);
	struct spool *b = tu_open(g_path, &o);
	long pid = -1;
	ck_assert_int_eq(spool_agent_running(a, &pid), 0);
	ck_assert_int_eq(spool_agent_lock(a), 0);
	ck_assert_int_eq(spool_agent_lock(b), SPOOL_ELOCKED);
	ck_assert_int_eq(spool_agent_running(b, &pid), 1);
	ck_assert_int_eq(pid, (long)getpid());
	ck_assert_int_eq(spool_agent_running(a, NULL), 1);
	spool_agent_unlock(a);
	ck_assert_int_eq(spool_agent_running(b, &pid), 0);
	ck_assert_int_eq(spool_agent_lock(b), 0);
	ck_assert_int_eq(spool_agent_lock(a), SPOOL_ELOCKED);
	/* spool_close releases it */
	ck_assert_int_eq(spool_close(b), 0);
	ck_assert_int_eq(spool_agent_running(a, NULL), 0);
	ck_assert_int_eq(spool_agent_lock(a), 0);
	/* a third handle opened and closed does not release a's lock */
	struct spool *c = tu_open(g_path, &o);
	ck_assert_int_eq(spool_agent_lock(c), SPOOL_ELOCKED);
	ck_assert_int_eq(spool_close(c), 0);
	ck_assert_int_eq(spool_agent_running(a, NULL), 1);
	struct spool *d = tu_open(g_path, &o);
	ck_assert_int_eq(spool_agent_lock(d), SPOOL_ELOCKED);
	ck_assert_int_eq(spool_close(d), 0);
	ck_assert_int_eq(spool_close(a), 0);
}
END_TEST

START_TEST(test_agent_lock_processes)
{
	struct spool_options o;
	tu_opts(&o, SPOOL_SYNC);
	struct spool *s = tu_open(g_path, &o);
	ck_assert_int_eq(spool_close(s), 0);

	/* a child takes the lock and holds it */
	int pfd[2];
	ck_assert_int_eq(pipe(pfd), 0);
	pid_t holder = tu_fork();
	ck_assert_int_ge(holder, 0);
	if (holder == 0) {
		close(pfd[0]);
		struct spool *c = tu_open_nock(g_path, &o);
		if (c == NULL)
			_exit(2);
		int rc = spool_agent_lock(c);
		if (rc != 0) {
			fprintf(stderr, "holder: lock = %d (%s)\n", rc, spool_strerror(rc));
			_exit(3);
		}
		if (tu_write_all(pfd[1], "L", 1) != 0)
			_exit(4);
		for (;;)
			pause();
	}
	close(pfd[1]);
	char x;
	if (tu_read_full(pfd[0], &x, 1) != 0) {
		int code = tu_wait(holder);
		ck_abort_msg("lock holder failed (exit %d)", code);
	}
	close(pfd[0]);

	s = tu_open(g_path, &o);
	long pid = -1;
	ck_assert_int_eq(spool_agent_lock(s), SPOOL_ELOCKED);
	ck_assert_int_eq(spool_agent_running(s, &pid), 1);
	ck_assert_int_eq(pid, (long)holder);

	/* the holder dies: the lock is free again */
	ck_assert_int_eq(kill(holder, SIGKILL), 0);
	ck_assert_int_eq(tu_wait(holder), 128 + SIGKILL);
	ck_assert_int_eq(spool_agent_running(s, &pid), 0);
	ck_assert_int_eq(spool_agent_lock(s), 0);

	/* now another process is refused and sees this one */
	pid_t other = tu_fork();
	ck_assert_int_ge(other, 0);
	if (other == 0) {
		struct spool *c = tu_open_nock(g_path, &o);
		if (c == NULL)
			_exit(2);
		if (spool_agent_lock(c) != SPOOL_ELOCKED)
			_exit(3);
		long p = -1;
		if (spool_agent_running(c, &p) != 1)
			_exit(4);
		if (p != (long)getppid())
			_exit(5);
		spool_close(c);
		_exit(0);
	}
	int code = tu_wait_until(other, tu_now() + 120.0);
	ck_assert_msg(code == 0, "second process: exit %d (3: lock not refused, 4: running not 1, "
				 "5: wrong pid)",
		      code);
	spool_agent_unlock(s);
	ck_assert_int_eq(spool_agent_running(s, NULL), 0);
	ck_assert_int_eq(spool_close(s), 0);
}
END_TEST

static Suite *faults_suite(void)
{
	Suite *s = suite_create("spool-faults");
	TCase *tc = tcase_create("faults");
	tcase_add_checked_fixture(tc, setup, teardown);
	tu_add_cleanup_fixture(tc);
	tcase_set_timeout(tc, 240);
	tcase_add_loop_test(tc, test_enospc, 0, TU_NMODES);
	tcase_add_loop_test(tc, test_enospc_refusals_counted, 0, TU_NMODES);
	tcase_add_test(tc, test_corrupt_record);
	tcase_add_test(tc, test_stale_readers_no_exhaustion);
	tcase_add_test(tc, test_stale_reader_cleared_by_open);
	tcase_add_loop_test(tc, test_fork, 0, TU_NMODES);
	tcase_add_test(tc, test_agent_lock_same_process);
	tcase_add_test(tc, test_agent_lock_processes);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return tc_run_forked(faults_suite());
}
