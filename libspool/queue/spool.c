/* spool.c — the public queue API: argument checks, modes, the agent lock. */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "env.h"
#include "fork.h"
#include "handle.h"
#include "read.h"
#include "record.h"
#include "stage.h"
#include "txn.h"
#include "util.h"
#include "write.h"

#define GUARD(s)                                                                                   \
	do {                                                                                       \
		if (!(s))                                                                          \
			return -EINVAL;                                                            \
		if (spool_forked(s))                                                               \
			return SPOOL_EFORKED;                                                      \
	} while (0)

bool spool_forked(const struct spool *s)
{
	return s->pid != spool_current_pid();
}

/* In a forked child: the handle belongs to the parent; drop the agent lock
 * (its ring, if any, lets go of its own descriptor). */
static void handle_in_child(struct spool_fork_node *node)
{
	struct spool *s = (struct spool *)node;
	if (s->agent_fd >= 0) {
		close(s->agent_fd);
		s->agent_fd = -1;
	}
}

static bool bad_seconds(double v)
{
	return !isfinite(v) || v < 0 || v > 1e6;
}

static int check_options(const struct spool_options *o, const char *dir, char *errbuf, size_t errlen)
{
	const char *what = NULL;
	if ((unsigned)o->durability > SPOOL_BUFFERED)
		what = "durability is not sync, commit or buffered";
	else if ((unsigned)o->full_policy > SPOOL_FULL_EVICT)
		what = "full_policy is not block, drop or evict";
	else if (bad_seconds(o->full_timeout_seconds))
		what = "full_timeout_seconds must be between 0 and 1e6";
	else if (bad_seconds(o->commit_interval_seconds))
		what = "commit_interval_seconds must be between 0 and 1e6";
	else if (bad_seconds(o->flush_interval_seconds))
		what = "flush_interval_seconds must be between 0 and 1e6";
	else if (o->ring_bytes > ((size_t)1 << 30))
		what = "ring_bytes must be at most 1 GiB";
	else if (o->max_record_bytes == 0 || o->max_record_bytes > ((size_t)256 << 20))
		what = "max_record_bytes must be between 1 and 256 MiB";
	else if (o->max_readers > 100000)
		what = "max_readers must be at most 100000";
	if (!what)
		return 0;
	spool_errf(errbuf, errlen, "%s: bad spool option: %s", dir, what);
	return -EINVAL;
}

int spool_open(const char *dir, const struct spool_options *opt, struct spool **out, char *errbuf,
	       size_t errlen)
{
	if (errbuf && errlen)
		errbuf[0] = '\0';
	if (!out)
		return -EINVAL;
	*out = NULL;
	if (!dir || !*dir) {
		spool_errf(errbuf, errlen, "spool directory not given");
		return -EINVAL;
	}
	if (strlen(dir) > 3000) {
		spool_errf(errbuf, errlen, "spool directory path longer than 3000 bytes");
		return -ENAMETOOLONG;
	}
	struct spool_options o;
	if (opt)
		o = *opt;
	else
		spool_options_init(&o);
	int rc = check_options(&o, dir, errbuf, errlen);
	if (rc)
		return rc;

	struct spool *s = calloc(1, sizeof(*s));
	if (!s || !(s->dir = strdup(dir))) {
		free(s);
		spool_errf(errbuf, errlen, "%s: out of memory", dir);
		return -ENOMEM;
	}
	s->opt = o;
	s->pid = spool_current_pid();
	s->agent_fd = -1;
	s->lim_enforce = (struct spool_limits){o.max_events, o.max_bytes, o.full_policy, true};
	s->lim_staged = (struct spool_limits){o.max_events, o.max_bytes, o.full_policy, false};

	rc = spool_env_acquire(dir, &o, &s->env, errbuf, errlen);
	if (rc) {
		free(s->dir);
		free(s);
		return rc;
	}
	/* what dead producers left in their rings goes into the queue first;
	 * a failure here (a full disk) leaves the rings for the next try */
	spool_txn_counts_create(s->env); /* while the disk has room (txn.h) */
	spool_stage_recover(s->env, NULL);
	if (o.durability != SPOOL_SYNC) {
		rc = spool_stage_create(s->env, dir, &o, &s->lim_staged, &s->stage, errbuf, errlen);
		if (rc) {
			spool_txn_release_env(s->env);
			free(s->dir);
			free(s);
			return rc;
		}
	}
	s->fork_node.in_child = handle_in_child;
	spool_fork_lock();
	spool_fork_register(&s->fork_node);
	spool_fork_unlock();
	*out = s;
	return 0;
}

int spool_close(struct spool *s)
{
	if (!s)
		return 0;
	int rc = 0;
	if (spool_forked(s)) {
		spool_stage_destroy(s->stage, true);
	} else {
		spool_fork_lock();
		spool_fork_unregister(&s->fork_node);
		spool_fork_unlock();
		rc = spool_stage_destroy(s->stage, false);
		spool_agent_unlock(s);
	}
	s->stage = NULL;
	spool_txn_release_env(s->env);
	free(s->dir);
	free(s);
	return rc;
}

const char *spool_dir(const struct spool *s)
{
	return s ? s->dir : NULL;
}

static int check_inputs(const struct spool *s, const struct spool_input *in, size_t n,
			uint64_t *bytes)
{
	*bytes = 0;
	for (size_t i = 0; i < n; i++) {
		if ((unsigned)in[i].severity >= SPOOL_NSEV || in[i].len == 0 || !in[i].data)
			return -EINVAL;
		if (in[i].len > s->opt.max_record_bytes)
			return SPOOL_ETOOBIG;
		const char *why;
		if (spool_msgpack_check_map(in[i].data, in[i].len, &why) != 0)
			return -EINVAL;
		*bytes += SPOOL_REC_HDR + in[i].len;
	}
	return 0;
}

static void refresh_cache(struct spool *s)
{
	struct spool_stats st;
	spool_read_stats(s->env, &st);
}

static bool staged_over(struct spool *s, uint64_t n, uint64_t bytes)
{
	uint64_t out_n, out_b;
	spool_stage_outstanding(s->stage, &out_n, &out_b);
	uint64_t pend = atomic_load(&s->env->cached_pending) + out_n;
	uint64_t pend_b = atomic_load(&s->env->cached_pending_bytes) + out_b;
	return (s->opt.max_events && pend + n > s->opt.max_events) ||
	       (s->opt.max_bytes && pend_b + bytes > s->opt.max_bytes);
}

/* The full policy in the staged modes, checked against the figures of the
 * last commit (and re-read from the spool when they say full): the exact
 * count is only known inside a write transaction, after the caller has
 * been told its record is safe.  Concurrent producers can therefore
 * overshoot the limits by what they staged in one commit interval. */
static int staged_admit(struct spool *s, size_t n, size_t bytes)
{
	if (!s->opt.max_events && !s->opt.max_bytes)
		return 0;
	if ((s->opt.max_events && n > s->opt.max_events) ||
	    (s->opt.max_bytes && bytes > s->opt.max_bytes))
		return SPOOL_ETOOBIG;
	if (!staged_over(s, n, bytes) || s->opt.full_policy == SPOOL_FULL_EVICT)
		return 0;
	refresh_cache(s);
	if (!staged_over(s, n, bytes))
		return 0;
	if (s->opt.full_policy == SPOOL_FULL_BLOCK) {
		int64_t end = spool_mono_ns() + (int64_t)(s->opt.full_timeout_seconds * 1e9);
		while (spool_mono_ns() < end) {
			nanosleep(&(struct timespec){0, 2 * 1000 * 1000}, NULL);
			refresh_cache(s);
			if (!staged_over(s, n, bytes))
				return 0;
		}
	}
	spool_txn_add_dropped(s->env, n);
	return SPOOL_EFULL;
}

static int sync_append(struct spool *s, const struct spool_input *in, size_t n)
{
	unsigned char stack[8][SPOOL_REC_HDR];
	unsigned char(*hdrs)[SPOOL_REC_HDR] = n <= 8 ? stack : malloc(n * SPOOL_REC_HDR);
	if (!hdrs) {
		spool_txn_add_dropped(s->env, n);
		return -ENOMEM;
	}
	int64_t now = spool_now_us();
	for (size_t i = 0; i < n; i++)
		spool_rec_header(hdrs[i], in[i].severity, now, in[i].data, in[i].len);
	struct spool_wreq req = {.in = in, .hdrs = (const unsigned char(*)[SPOOL_REC_HDR])hdrs, .n = n,
				 .lim = &s->lim_enforce, .count_refused = true};
	int64_t end = 0;
	int rc;
	for (;;) {
		rc = spool_write_append(s->env, &req);
		if (rc != 1)
			break;
		/* block policy: wait for the agent to make room */
		int64_t now_ns = spool_mono_ns();
		if (end == 0)
			end = now_ns + (int64_t)(s->opt.full_timeout_seconds * 1e9);
		if (now_ns >= end) {
			spool_txn_add_dropped(s->env, n);
			rc = SPOOL_EFULL;
			break;
		}
		nanosleep(&(struct timespec){0, 2 * 1000 * 1000}, NULL);
	}
	if (hdrs != stack)
		free(hdrs);
	if (rc == 0)
		spool_atomic_raise(&s->last_seq, req.first_seq + n - 1);
	return rc;
}

int spool_append_many(struct spool *s, const struct spool_input *in, size_t n)
{
	GUARD(s);
	if (n == 0)
		return 0;
	if (!in)
		return -EINVAL;
	uint64_t bytes;
	int rc = check_inputs(s, in, n, &bytes);
	if (rc)
		return rc;
	if (s->opt.durability == SPOOL_SYNC)
		return sync_append(s, in, n);
	rc = staged_admit(s, n, bytes);
	if (rc)
		return rc;
	return spool_stage_append(s->stage, in, n);
}

int spool_append(struct spool *s, int severity, const void *data, size_t len)
{
	struct spool_input in = {severity, data, len};
	return spool_append_many(s, &in, 1);
}

int spool_sync(struct spool *s, double timeout_seconds, uint64_t *last_seq)
{
	GUARD(s);
	if (s->stage)
		return spool_stage_sync(s->stage, timeout_seconds, last_seq);
	if (last_seq)
		*last_seq = atomic_load(&s->last_seq);
	return 0;
}

int spool_recover(struct spool *s, uint64_t *moved)
{
	GUARD(s);
	if (moved)
		*moved = 0;
	MDB_txn *txn;
	/* Take LMDB's write mutex once (an aborted write transaction): a
	 * writer killed after its meta page reached the disk but before it
	 * published the new transaction id leaves a durable commit that
	 * readers do not see until the next writer takes the mutex and adopts
	 * it.  In sync mode nothing else may write for a long time, and the
	 * agent would not see those records.  Clear the reader slots of dead
	 * processes while at it. */
	if (spool_env_begin(s->env, false, &txn) == 0) {
		mdb_txn_abort(txn);
		spool_env_end_write(s->env);
		spool_env_reader_check(s->env);
	}
	return spool_stage_recover(s->env, moved);
}

int spool_read_batch(struct spool *s, uint64_t after_seq, size_t max_events, size_t max_bytes,
		     struct spool_batch **out)
{
	GUARD(s);
	if (!out)
		return -EINVAL;
	*out = NULL;
	/* unsound records never block the head: the reader hands them back,
	 * they go to dead, and the read starts again */
	struct spool_bad_records bad;
	for (;;) {
		int rc = spool_batch_read_events(s->env, after_seq, -1, max_events, max_bytes, out, NULL,
						 &bad);
		if (rc || bad.n == 0)
			return rc;
		rc = spool_write_corrupt(s->env, bad.seq, bad.why, bad.n);
		if (rc)
			return rc;
	}
}

int spool_read_severity(struct spool *s, int severity, uint64_t after_seq, size_t max_events,
			size_t max_bytes, struct spool_batch **out, uint64_t *scanned_to)
{
	GUARD(s);
	if (!out || !scanned_to || severity < 0 || severity >= SPOOL_NSEV)
		return -EINVAL;
	*out = NULL;
	*scanned_to = after_seq;
	struct spool_bad_records bad;
	for (;;) {
		int rc = spool_batch_read_events(s->env, after_seq, severity, max_events, max_bytes, out,
						 scanned_to, &bad);
		if (rc || bad.n == 0)
			return rc;
		rc = spool_write_corrupt(s->env, bad.seq, bad.why, bad.n);
		if (rc)
			return rc;
	}
}

int spool_read_dead(struct spool *s, uint64_t after_seq, size_t max_events,
		    struct spool_batch **out)
{
	GUARD(s);
	if (!out)
		return -EINVAL;
	*out = NULL;
	return spool_batch_read_dead(s->env, after_seq, max_events, out);
}

int spool_settle(struct spool *s, const uint64_t *acked, size_t nacked,
		 const struct spool_reject *rejected, size_t nrejected, uint64_t *settled)
{
	GUARD(s);
	if (settled)
		*settled = 0;
	if ((nacked && !acked) || (nrejected && !rejected))
		return -EINVAL;
	if (nacked == 0 && nrejected == 0)
		return 0;
	return spool_write_settle(s->env, acked, nacked, rejected, nrejected, settled);
}

int spool_ack(struct spool *s, const uint64_t *seqs, size_t n, uint64_t *deleted)
{
	return spool_settle(s, seqs, n, NULL, 0, deleted);
}

int spool_discard(struct spool *s, const uint64_t *seqs, size_t n, uint64_t *deleted)
{
	GUARD(s);
	if (deleted)
		*deleted = 0;
	if (n && !seqs)
		return -EINVAL;
	if (n == 0)
		return 0;
	return spool_write_discard(s->env, seqs, n, deleted);
}

int spool_dead_letter(struct spool *s, uint64_t seq, int status, const char *reason)
{
	struct spool_reject r = {seq, status, reason};
	uint64_t moved = 0;
	int rc = spool_settle(s, NULL, 0, &r, 1, &moved);
	if (rc == 0 && moved == 0)
		return SPOOL_ENOTFOUND;
	return rc;
}

int spool_stats(struct spool *s, struct spool_stats *out)
{
	GUARD(s);
	if (!out)
		return -EINVAL;
	return spool_read_stats(s->env, out);
}

static int check_key(const char *key)
{
	if (!key)
		return -EINVAL;
	size_t len = strnlen(key, SPOOL_META_KEY_MAX + 1);
	if (len == 0 || len > SPOOL_META_KEY_MAX || strncmp(key, "spool.", 6) == 0)
		return -EINVAL;
	return 0;
}

int spool_meta_put(struct spool *s, const char *key, const void *val, size_t len)
{
	GUARD(s);
	int rc = check_key(key);
	if (rc)
		return rc;
	if ((len && !val) || len > SPOOL_META_VAL_MAX)
		return -EINVAL;
	return spool_write_meta(s->env, key, val, len);
}

int spool_meta_get(struct spool *s, const char *key, void *buf, size_t *len)
{
	GUARD(s);
	int rc = check_key(key);
	if (rc)
		return rc;
	if (!len || (*len && !buf))
		return -EINVAL;
	return spool_read_meta(s->env, key, buf, len);
}

static int lock_path(const struct spool *s, char *buf, size_t len)
{
	return snprintf(buf, len, "%s/agent.lock", s->dir) >= (int)len ? -ENAMETOOLONG : 0;
}

int spool_agent_lock(struct spool *s)
{
	GUARD(s);
	if (s->agent_fd >= 0)
		return 0;
	char path[4200];
	int rc = lock_path(s, path, sizeof(path));
	if (rc)
		return rc;
	int fd = spool_open_create(path, O_RDWR | O_CLOEXEC, spool_file_mode(s->dir));
	if (fd < 0)
		return fd;
	/* an open-file-description lock: it conflicts with every other open of
	 * the file, in this process too, and dies with its holder */
	struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
	if (fcntl(fd, F_OFD_SETLK, &fl) != 0) {
		int e = errno;
		close(fd);
		return e == EAGAIN || e == EACCES ? SPOOL_ELOCKED : -e;
	}
	/* The pid is for spool_agent_running() and for people; the lock is what
	 * counts.  It is written in place at a fixed width (no truncation, so a
	 * file that has its block keeps it), and on a full disk the lock is kept
	 * without it: an agent must be able to start, and drain, exactly when
	 * the disk is full. */
	char pid[32];
	int n = snprintf(pid, sizeof(pid), "%-20ld\n", (long)getpid());
	ssize_t w = pwrite(fd, pid, (size_t)n, 0);
	if (w != n) {
		int e = w < 0 ? errno : EIO;
		if (e != ENOSPC && e != EDQUOT) {
			close(fd);
			return -e;
		}
	}
	s->agent_fd = fd;
	return 0;
}

void spool_agent_unlock(struct spool *s)
{
	if (!s || spool_forked(s) || s->agent_fd < 0)
		return;
	close(s->agent_fd);
	s->agent_fd = -1;
}

int spool_agent_running(struct spool *s, long *pid)
{
	GUARD(s);
	if (pid)
		*pid = 0;
	if (s->agent_fd >= 0) {
		if (pid)
			*pid = (long)getpid();
		return 1;
	}
	char path[4200];
	int rc = lock_path(s, path, sizeof(path));
	if (rc)
		return rc;
	int fd = open(path, O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT ? 0 : -errno;
	struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
	if (fcntl(fd, F_OFD_GETLK, &fl) != 0) {
		int e = errno;
		close(fd);
		return -e;
	}
	int running = fl.l_type != F_UNLCK;
	if (running && pid) {
		char buf[32] = {0};
		if (pread(fd, buf, sizeof(buf) - 1, 0) > 0)
			*pid = strtol(buf, NULL, 10);
	}
	close(fd);
	return running;
}
