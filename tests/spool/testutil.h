/* testutil.h — shared helpers for the libspool test suites: temporary
 * directories, msgpack payloads, seeded randomness, child processes.
 *
 * Helpers whose name ends in _nock never call ck_assert: use them in
 * processes the tests fork themselves (a failed ck_assert there would report
 * into the Check runner's channel from the wrong process).  Such children
 * report through their exit code and stderr. */
#ifndef SPOOL_TESTUTIL_H
#define SPOOL_TESTUTIL_H

#include <check.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <spool/spool.h>

/* The three durability modes, in the order loop tests index them. */
#define TU_NMODES 3
extern const enum spool_durability tu_modes[TU_NMODES];
const char *tu_mode_label(enum spool_durability d);

/* ---- directories and files ---- */

/* Creates a fresh directory <base>/<tag>-XXXXXX into buf, where <base> is
 * the test case's base directory (see tu_add_cleanup_fixture), or
 * /tmp/spool-test-<tag>-XXXXXX without one. */
void tu_mkdtemp(char *buf, size_t len, const char *tag);
/* Removes a directory tree; quiet if it is gone. */
void tu_rmrf(const char *path);
/* Adds an unchecked fixture to tc: the Check runner process creates a base
 * directory /tmp/spool-test-<name>-XXXXXX before the test case and removes
 * it, with everything the tests left in it, after the test case.  A test
 * that fails (Check ends its process with _exit, skipping the checked
 * teardown) or crashes therefore leaves nothing behind. */
void tu_add_cleanup_fixture(TCase *tc);

/* buf = dir "/" name. */
void tu_join(char *buf, size_t len, const char *dir, const char *name);

/* ---- payloads: msgpack maps {"p": producer, "n": counter, "message": text} ---- */

struct tu_buf {
	unsigned char *data;
	size_t len;
};

/* Encodes one event.  pad > 0 appends that many 'x' to the message. */
void tu_payload(struct tu_buf *out, int64_t producer, uint64_t n, const char *msg, size_t pad);
void tu_buf_free(struct tu_buf *b);

struct tu_event {
	int64_t p;
	uint64_t n;
	bool has_p, has_n;
	char msg[128]; /* first bytes of "message", NUL-terminated */
};

/* 0 if data is exactly one msgpack map carrying integer "p" and "n". */
int tu_decode(const void *data, size_t len, struct tu_event *ev);

/* ---- opening ---- */

void tu_opts(struct spool_options *o, enum spool_durability d);
/* Opens or fails the test, printing errbuf. */
struct spool *tu_open(const char *dir, const struct spool_options *opt);
/* Opens; on failure prints to stderr and returns NULL. */
struct spool *tu_open_nock(const char *dir, const struct spool_options *opt);

/* Appends the event {p, n} or fails the test. */
void tu_append_ok(struct spool *s, int severity, int64_t p, uint64_t n);
struct spool_stats tu_stats(struct spool *s);

/* ---- records read back, copied out of the batch ---- */

struct tu_rec {
	uint64_t seq;
	int64_t enqueue_us;
	int severity;
	unsigned char *data;
	size_t len;
	int dead_status;
	char *dead_reason;
};

/* Reads every pending (dead = false) or dead record in order, in batches of
 * `chunk` (0: one batch).  Returns the count; *out is malloc'd.  Returns
 * (size_t)-1 and leaves *out NULL if a read fails (rc in *rc when not NULL). */
size_t tu_read_all_nock(struct spool *s, bool dead, size_t chunk, struct tu_rec **out, int *rc);
size_t tu_read_all(struct spool *s, bool dead, struct tu_rec **out);
void tu_recs_free(struct tu_rec *r, size_t n);
/* Acks every pending record; returns the number deleted. */
uint64_t tu_ack_all(struct spool *s);

/* ---- randomness: seeded, printed, replayable with SPOOL_TEST_SEED ---- */

uint64_t tu_seed(const char *what);
uint64_t tu_rand(uint64_t *state);
/* Uniform in [lo, hi]. */
uint64_t tu_rand_range(uint64_t *state, uint64_t lo, uint64_t hi);

/* ---- time (for deadlines and pacing, never asserted) ---- */

double tu_now(void); /* CLOCK_MONOTONIC seconds */
void tu_sleep(double seconds);

/* ---- processes ---- */

/* fork() for tests: flushes stdio first; the child gets SIGKILL if this
 * process dies (so a timed-out test leaves no children behind). */
pid_t tu_fork(void);
/* Waits for pid; returns its exit code, or 128 + signal when killed. */
int tu_wait(pid_t pid);
/* Like tu_wait, but SIGKILLs pid at the deadline (tu_now() seconds) and
 * returns -2 then, so a hung child fails the test instead of hanging it. */
int tu_wait_until(pid_t pid, double deadline);
/* Writes all of buf to fd (retrying EINTR / short writes); 0 or -1. */
int tu_write_all(int fd, const void *buf, size_t len);
/* Reads exactly len bytes; 0, or -1 on EOF or error before that. */
int tu_read_full(int fd, void *buf, size_t len);
/* Fails the test unless running under CK_FORK (tests that fork or unshare
 * need Check's per-test process).  Returns true if forking is on. */
bool tu_ck_forking(void);

/* Mounts a tmpfs with options size_opt ("size=2m") on dir, in a private
 * mount namespace of this (Check-forked) test process, so the mount dies
 * with it.  0, or -1 with "SKIP: <reason>" printed (no CK_FORK, no
 * privilege to unshare, as in a chroot). */
int tu_private_tmpfs(const char *dir, const char *size_opt);

/* Runs `cmd` through the shell, captures up to len-1 bytes of stdout. */
int tu_capture(const char *cmd, char *buf, size_t len);

#endif
