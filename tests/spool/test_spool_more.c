/* test_spool_more.c — the LMDB map: it grows on demand, within one process
 * and when another process grew it first (MDB_MAP_RESIZED), and stops
 * growing at its cap, where the full policy answers; and spool_discard(),
 * the policy removal that is counted as an eviction, not an ack; and
 * writer.lock, which every write transaction and every read transaction's
 * begin takes before LMDB's mutexes (issue 17). */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check_main.h"
#include "testutil.h"

#define SPOOL_REC_HDR_BYTES 16 /* the stored header before each event */

/* Appends `count` events of about `pad` bytes, numbered from n0. */
static int append_padded_nock(struct spool *s, int64_t p, uint64_t n0, uint64_t count, size_t pad)
{
	for (uint64_t i = 0; i < count; i++) {
		struct tu_buf b;
		tu_payload(&b, p, n0 + i, "map", pad);
		int rc = spool_append(s, SPOOL_SEV_INFO, b.data, b.len);
		tu_buf_free(&b);
		if (rc)
			return rc;
	}
	return 0;
}

START_TEST(test_map_grows_in_one_process)
{
	char dir[256];
	tu_mkdtemp(dir, sizeof(dir), "map");
	struct spool_options o;
	tu_opts(&o, SPOOL_SYNC);
	o.initial_map_bytes = 256 * 1024;
	o.max_bytes = 64 << 20;
	struct spool *s = tu_open(dir, &o);
	struct spool_stats st = tu_stats(s);
	uint64_t map0 = st.map_bytes;
	/* ~4 MiB of records in batches: far past the first map */
	struct spool_input in[64];
	struct tu_buf b[64];
	for (int round = 0; round < 64; round++) {
		for (int i = 0; i < 64; i++) {
			tu_payload(&b[i], 1, (uint64_t)round * 64 + (uint64_t)i, "grow", 1000);
			in[i] = (struct spool_input){SPOOL_SEV_INFO, b[i].data, b[i].len};
		}
		ck_assert_int_eq(spool_append_many(s, in, 64), 0);
		for (int i = 0; i < 64; i++)
			tu_buf_free(&b[i]);
	}
	st = tu_stats(s);
	ck_assert_uint_eq(st.pending, 64 * 64);
	ck_assert_uint_gt(st.map_bytes, map0);
	ck_assert_uint_ge(st.map_bytes, st.file_bytes);
	struct tu_rec *r;
	size_t n = tu_read_all(s, false, &r);
	ck_assert_uint_eq(n, 64 * 64);
	for (size_t i = 0; i < n; i++) {
		struct tu_event ev;
		ck_assert_int_eq(tu_decode(r[i].data, r[i].len, &ev), 0);
		ck_assert_uint_eq(ev.n, i);
	}
	tu_recs_free(r, n);
	ck_assert_int_eq(spool_close(s), 0);
	tu_rmrf(dir);
}
END_TEST

/* Another process grows the map while this one has the spool open: this
 * process's next transaction meets MDB_MAP_RESIZED, adopts the new size and
 * goes on; every record of both is readable from both. */
START_TEST(test_map_grown_by_another_process)
{
	tu_ck_forking();
	char dir[256];
	tu_mkdtemp(dir, sizeof(dir), "map2");
	struct spool_options o;
	tu_opts(&o, SPOOL_SYNC);
	o.initial_map_bytes = 256 * 1024;
	o.max_bytes = 64 << 20;
	struct spool *s = tu_open(dir, &o);
	tu_append_ok(s, SPOOL_SEV_INFO, 0, 0);
	uint64_t map_before = tu_stats(s).map_bytes;

	pid_t pid = tu_fork();
	if (pid == 0) {
		struct spool *c = tu_open_nock(dir, &o);
		if (!c)
			_exit(10);
		int rc = append_padded_nock(c, 1, 0, 3000, 1000); /* ~3 MiB */
		if (rc) {
			fprintf(stderr, "child append: %s\n", spool_strerror(rc));
			_exit(11);
		}
		_exit(spool_close(c) == 0 ? 0 : 12);
	}
	ck_assert_int_eq(tu_wait_until(pid, tu_now() + 120), 0);

	/* the parent's handle still has the small map */
	ck_assert_int_eq(append_padded_nock(s, 0, 1, 500, 1000), 0);
	struct spool_stats st = tu_stats(s);
	ck_assert_uint_gt(st.map_bytes, map_before);
	ck_assert_uint_eq(st.pending, 1 + 3000 + 500);
	struct tu_rec *r;
	size_t n = tu_read_all(s, false, &r);
	ck_assert_uint_eq(n, 3501);
	uint64_t next[2] = {0, 0};
	for (size_t i = 0; i < n; i++) {
		struct tu_event ev;
		ck_assert_int_eq(tu_decode(r[i].data, r[i].len, &ev), 0);
		ck_assert(ev.p == 0 || ev.p == 1);
		ck_assert_uint_eq(ev.n, next[ev.p]); /* each producer in its own order */
		next[ev.p]++;
	}
	tu_recs_free(r, n);
	ck_assert_int_eq(spool_close(s), 0);
	tu_rmrf(dir);
}
END_TEST

/* The map stops growing at its cap (twice max_bytes plus slack): before
 * that, the byte limit refuses records with SPOOL_EFULL, and the spool
 * stays readable and writable once the agent made room. */
START_TEST(test_limit_before_the_map_cap)
{
	char dir[256];
	tu_mkdtemp(dir, sizeof(dir), "mapcap");
	struct spool_options o;
	tu_opts(&o, SPOOL_SYNC);
	o.initial_map_bytes = 128 * 1024;
	o.max_bytes = 1 << 20;
	o.full_policy = SPOOL_FULL_DROP;
	struct spool *s = tu_open(dir, &o);
	int rc = 0;
	uint64_t stored = 0;
	while ((rc = append_padded_nock(s, 0, stored, 1, 2000)) == 0)
		stored++;
	ck_assert_int_eq(rc, SPOOL_EFULL);
	struct spool_stats st = tu_stats(s);
	ck_assert_uint_eq(st.pending, stored);
	ck_assert_uint_le(st.pending_bytes, o.max_bytes);
	ck_assert_uint_ge(st.dropped_total, 1);
	ck_assert_uint_eq(tu_ack_all(s), stored);
	ck_assert_int_eq(append_padded_nock(s, 0, stored, 10, 2000), 0);
	ck_assert_uint_eq(tu_stats(s).pending, 10);
	ck_assert_int_eq(spool_close(s), 0);
	tu_rmrf(dir);
}
END_TEST

START_TEST(test_discard_counts_evictions)
{
	char dir[256];
	tu_mkdtemp(dir, sizeof(dir), "discard");
	struct spool_options o;
	tu_opts(&o, SPOOL_SYNC);
	struct spool *s = tu_open(dir, &o);
	for (uint64_t i = 0; i < 5; i++)
		tu_append_ok(s, SPOOL_SEV_WARN, 0, i);
	struct tu_rec *r;
	size_t n = tu_read_all(s, false, &r);
	ck_assert_uint_eq(n, 5);
	/* the 2nd and 4th go, plus a sequence that does not exist */
	uint64_t seqs[3] = {r[1].seq, r[3].seq, r[4].seq + 1000};
	uint64_t deleted = 99;
	ck_assert_int_eq(spool_discard(s, seqs, 3, &deleted), 0);
	ck_assert_uint_eq(deleted, 2);
	ck_assert_int_eq(spool_discard(s, NULL, 1, NULL), -EINVAL);
	struct spool_stats st = tu_stats(s);
	ck_assert_uint_eq(st.pending, 3);
	ck_assert_uint_eq(st.evicted_total, 2);
	ck_assert_uint_eq(st.acked_total, 0);
	ck_assert_uint_eq(st.pending_bytes, SPOOL_REC_HDR_BYTES * 3 + r[0].len + r[2].len + r[4].len);
	tu_recs_free(r, n);
	n = tu_read_all(s, false, &r);
	ck_assert_uint_eq(n, 3);
	struct tu_event ev;
	ck_assert_int_eq(tu_decode(r[1].data, r[1].len, &ev), 0);
	ck_assert_uint_eq(ev.n, 2);
	tu_recs_free(r, n);
	ck_assert_int_eq(spool_close(s), 0);
	tu_rmrf(dir);
}
END_TEST

static void *kill_later(void *arg)
{
	tu_sleep(0.4);
	kill(*(pid_t *)arg, SIGKILL);
	return NULL;
}

/* A process holding writer.lock (bytes 0 and 1) holds up this process's
 * write transactions and read begins; when it is killed, the kernel lets
 * them go on. */
START_TEST(test_writer_lock_orders_processes)
{
	char dir[256], lockp[300];
	tu_mkdtemp(dir, sizeof(dir), "wlock");
	struct spool_options o;
	tu_opts(&o, SPOOL_SYNC);
	struct spool *s = tu_open(dir, &o);
	tu_append_ok(s, SPOOL_SEV_INFO, 1, 0);
	tu_join(lockp, sizeof(lockp), dir, "writer.lock");
	int pfd[2];
	ck_assert_int_eq(pipe(pfd), 0);
	pid_t pid = tu_fork();
	if (pid == 0) {
		int fd = open(lockp, O_RDWR | O_CLOEXEC);
		struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 2};
		if (fd < 0 || fcntl(fd, F_OFD_SETLKW, &fl) != 0)
			_exit(3);
		char c = 'x';
		if (write(pfd[1], &c, 1) != 1)
			_exit(4);
		sleep(60);
		_exit(0);
	}
	char c;
	ck_assert_int_eq(read(pfd[0], &c, 1), 1);
	pthread_t th;
	double t0 = tu_now();
	ck_assert_int_eq(pthread_create(&th, NULL, kill_later, &pid), 0);
	tu_append_ok(s, SPOOL_SEV_INFO, 1, 1); /* waits for the kill */
	double waited = tu_now() - t0;
	pthread_join(th, NULL);
	tu_wait(pid);
	ck_assert_msg(waited >= 0.35, "append went past a held writer.lock (%.3f s)", waited);
	struct tu_rec *r;
	size_t n = tu_read_all(s, false, &r);
	ck_assert_uint_eq(n, 2);
	tu_recs_free(r, n);
	/* and byte 1 alone holds up a read's begin */
	pid = tu_fork();
	if (pid == 0) {
		int fd = open(lockp, O_RDWR | O_CLOEXEC);
		struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 1, .l_len = 1};
		if (fd < 0 || fcntl(fd, F_OFD_SETLKW, &fl) != 0)
			_exit(3);
		char x = 'x';
		if (write(pfd[1], &x, 1) != 1)
			_exit(4);
		sleep(60);
		_exit(0);
	}
	ck_assert_int_eq(read(pfd[0], &c, 1), 1);
	t0 = tu_now();
	ck_assert_int_eq(pthread_create(&th, NULL, kill_later, &pid), 0);
	n = tu_read_all(s, false, &r);
	waited = tu_now() - t0;
	pthread_join(th, NULL);
	tu_wait(pid);
	ck_assert_uint_eq(n, 2);
	tu_recs_free(r, n);
	ck_assert_msg(waited >= 0.35, "read went past a held writer.lock (%.3f s)", waited);
	close(pfd[0]);
	close(pfd[1]);
	ck_assert_int_eq(spool_close(s), 0);
	tu_rmrf(dir);
}
END_TEST

static Suite *map_suite(void)
{
	Suite *su = suite_create("more");
	TCase *tc = tcase_create("map");
	tcase_set_timeout(tc, 180);
	tcase_add_test(tc, test_map_grows_in_one_process);
	tcase_add_test(tc, test_map_grown_by_another_process);
	tcase_add_test(tc, test_limit_before_the_map_cap);
	suite_add_tcase(su, tc);
	TCase *td = tcase_create("discard");
	tcase_add_test(td, test_discard_counts_evictions);
	suite_add_tcase(su, td);
	TCase *tw = tcase_create("writer-lock");
	tcase_set_timeout(tw, 60);
	tcase_add_test(tw, test_writer_lock_orders_processes);
	suite_add_tcase(su, tw);
	return su;
}

int main(void)
{
	return tc_run_forked(map_suite());
}
