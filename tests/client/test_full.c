/* test_full.c — the client on a full disk (a small tmpfs in a private mount
 * namespace of the Check-forked test): an event whose commit ring cannot be
 * made goes in with a sync commit while data.mdb has room inside, and every
 * event refused after that counts in the spool's dropped_total. */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check_main.h"
#include <spool/mlog.h>
#include <spool/spool.h>

#include "harness.h"
#include "spawn_util.h"

static struct th_dir dir;
static char mnt[400], spool_path[450], filler[450];

static void setup(void)
{
	su_clear_env();
	th_dir_make(&dir, "client-full");
	snprintf(mnt, sizeof(mnt), "%s/mnt", dir.root);
	snprintf(spool_path, sizeof(spool_path), "%s/spool", mnt);
	snprintf(filler, sizeof(filler), "%s/filler", mnt);
	ck_assert_int_eq(mkdir(mnt, 0700), 0);
}

static void teardown(void)
{
	umount2(mnt, MNT_DETACH);
	th_dir_remove(&dir);
}

/* A tmpfs on mnt, in a mount namespace of this test process alone; false
 * (with SKIP printed) where that is not allowed. */
static bool private_tmpfs(const char *size_opt)
{
	const char *fork_env = getenv("CK_FORK");
	if (fork_env && strcmp(fork_env, "no") == 0) {
		printf("SKIP: needs CK_FORK (the mount namespace must die with the test)\n");
		return false;
	}
	if (unshare(CLONE_NEWNS) != 0 || mount("none", "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0 ||
	    mount("tmpfs", mnt, "tmpfs", MS_NOSUID | MS_NODEV, size_opt) != 0) {
		printf("SKIP: no private tmpfs: %s\n", strerror(errno));
		return false;
	}
	return true;
}

static struct spool *open_sync(void)
{
	struct spool_options o;
	spool_options_init(&o);
	o.durability = SPOOL_SYNC;
	struct spool *s;
	char err[512];
	ck_assert_msg(spool_open(spool_path, &o, &s, err, sizeof(err)) == 0, "%s", err);
	return s;
}

static struct spool_stats stats(void)
{
	struct spool *s = open_sync();
	struct spool_stats st;
	ck_assert_int_eq(spool_stats(s, &st), 0);
	spool_close(s);
	return st;
}

/* Writes the filler until the file system refuses a byte more. */
static void fill_disk(void)
{
	int fd = open(filler, O_CREAT | O_WRONLY | O_APPEND, 0600);
	ck_assert_int_ge(fd, 0);
	static char blk[65536];
	memset(blk, 'f', sizeof(blk));
	for (size_t sz = sizeof(blk); sz >= 512; sz /= 2)
		while (write(fd, blk, sz) == (ssize_t)sz)
			;
	close(fd);
}

START_TEST(test_full_disk_events_stored_or_counted)
{
	if (!private_tmpfs("size=4m"))
		return;
	/* 1.5 MiB of events, all acknowledged: data.mdb keeps its pages, free
	 * inside */
	struct spool *s = open_sync();
	static char big[1500];
	memset(big, 'x', sizeof(big));
	unsigned char ev[1600] = {0x81, 0xa7, 'm', 'e', 's', 's', 'a', 'g', 'e', 0xda, 0x05, 0xdc};
	memcpy(ev + 12, big, sizeof(big));
	struct spool_input in[100];
	for (int i = 0; i < 100; i++)
		in[i] = (struct spool_input){SPOOL_SEV_INFO, ev, 12 + sizeof(big)};
	for (int k = 0; k < 10; k++)
		ck_assert_int_eq(spool_append_many(s, in, 100), 0);
	struct spool_batch *b;
	ck_assert_int_eq(spool_read_batch(s, 0, 0, 0, &b), 0);
	uint64_t seqs[1000];
	size_t n = spool_batch_count(b);
	ck_assert_uint_eq(n, 1000);
	for (size_t i = 0; i < n; i++)
		seqs[i] = spool_batch_records(b)[i].seq;
	spool_batch_release(b);
	ck_assert_int_eq(spool_ack(s, seqs, n, NULL), 0);
	spool_close(s);
	fill_disk();

	struct mlog_client *c;
	char err[512];
	ck_assert_msg(mlog_client_new(&(struct mlog_config){.spool_dir = spool_path,
	                                                    .durability = "commit",
	                                                    .backpressure = MLOG_OFF},
	                              &c, err, sizeof(err)) == 0,
	              "%s", err);
	/* no room for a commit ring: a sync commit into data.mdb's free pages */
	struct mlog_result r = mlog_client_info(c, "on a full disk");
	ck_assert_msg(r.ok && r.queued, "first event on a full disk: %s", r.error);
	ck_assert_uint_eq(stats().pending, 1);

	/* until data.mdb is full too: then each event is refused, and counted */
	unsigned stored = 1, refused = 0;
	for (int i = 0; i < 2000 && refused < 3; i++) {
		r = mlog_client_info(c, "filling %d %.*s", i, (int)sizeof(big), big);
		if (r.ok) {
			stored++;
			continue;
		}
		refused++;
		ck_assert_msg(strstr(r.error, "No space left on device") != NULL, "refusal: %s",
		              r.error);
	}
	struct spool_stats st = stats();
	printf("full disk: %u events stored through sync commits, %u refused; dropped_total "
	       "%llu\n",
	       stored, refused, (unsigned long long)st.dropped_total);
	ck_assert_uint_eq(refused, 3);
	ck_assert_uint_eq(st.pending, stored);
	ck_assert_uint_eq(st.dropped_total, 3);

	/* room again: the configured mode, and the count stays */
	ck_assert_int_eq(unlink(filler), 0);
	r = mlog_client_info(c, "room again");
	ck_assert_msg(r.ok, "%s", r.error);
	mlog_client_free(c);
	st = stats();
	ck_assert_uint_eq(st.pending, stored + 1);
	ck_assert_uint_eq(st.dropped_total, 3);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("client-full");
	TCase *tc = tcase_create("full");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_full_disk_events_stored_or_counted);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return tc_run(suite());
}
