/* stage.c — the staging ring in front of LMDB (commit and buffered modes).
 *
 * A ring is a header page and a data area.  In commit mode it is a file in
 * the spool's rings/ folder, preallocated and mapped shared, so what a
 * producer wrote survives the producer's crash; in buffered mode it is
 * anonymous memory.  Producers append entries and then publish the new head;
 * a flusher thread moves everything between tail and head into LMDB in one
 * synced transaction through the group committer, writing in the same
 * transaction the number of the last entry moved (the ring's mark), and only
 * then advances the tail.  Whoever recovers a dead process's ring skips the
 * entries at or below the mark: each entry reaches LMDB exactly once.
 *
 * Entry layout, 8-byte aligned:
 *   u32 marker   ENTRY_MARK ^ low 32 bits of the entry number; PAD_MARK for
 *                padding up to the end of the data area
 *   u32 size     bytes of the stored value that follows
 *   u64 number   1, 2, 3 ... within the ring
 *   the stored value: the 16-byte record header, then the msgpack event
 * The ring is owned by one process, which holds an open-file-description
 * lock on the file for its whole life; a ring whose lock can be taken
 * belongs to a process that is gone.
 *
 * The ring keeps the highest sequence it committed and hands it back from
 * spool_stage_sync(); a forked child lets go of the ring's descriptor
 * through the ring's own node in fork.c's registry. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "env.h"
#include "fork.h"
#include "record.h"
#include "stage.h"
#include "txn.h"
#include "util.h"
#include "write.h"

#define RING_MAGIC "MLSRING1"
#define RING_HDR_SIZE 4096u
#define ENTRY_HDR 16u
#define ENTRY_MARK 0x9e3779b9u
#define PAD_MARK 0x50414444u /* "PADD" */
#define RING_MIN_BYTES (64u * 1024u)
#define TRANSFER_MAX_ENTRIES 16384u
#define TRANSFER_MAX_BYTES (16u << 20)

struct ring_shared {
	char magic[8];
	uint32_t version;
	uint32_t hdr_size;
	uint64_t data_size;
	uint64_t ring_id;
	int64_t pid;
	int64_t created_us;
	_Atomic uint64_t head; /* end of the published entries (absolute position) */
	_Atomic uint64_t tail; /* start of the entries not yet in LMDB */
	_Atomic uint64_t head_no;
};

struct spool_stage {
	struct spool_fork_node fork_node; /* first: a child keeps the whole ring reachable */
	bool registered;		  /* fork_node is in fork.c's registry */
	struct spool_env *env;
	struct spool_limits lim;   /* for the flusher's transfers (staged: never enforced) */
	double full_timeout;	   /* seconds a producer waits for room in the ring */
	_Atomic uint64_t last_seq; /* highest sequence this ring committed */
	struct ring_shared *sh;
	unsigned char *data;
	size_t size; /* data area bytes */
	size_t map_len;
	int fd; /* -1 in buffered mode */
	uint64_t ring_id;
	char path[4200];

	pthread_mutex_t wmu; /* producers, for a whole append */
	uint64_t wpos;	     /* next write position (under wmu) */
	uint64_t wno;	     /* last entry number written (under wmu) */

	pthread_mutex_t mu; /* flusher state and the condition variables */
	pthread_cond_t wake;  /* to the flusher */
	pthread_cond_t moved; /* from the flusher: tail advanced or error */
	bool stop;
	atomic_bool urgent; /* skip the interval wait: set under mu, read anywhere */
	atomic_bool idle;
	atomic_bool kicked; /* a producer has signalled since the flusher last looked */
	_Atomic uint64_t committed_no;
	_Atomic int err; /* last failure of the flusher, 0 when it is making progress */
	pthread_t thread;
	bool thread_started;
	double interval;
	uint64_t batch; /* buffered: flush at this many staged entries */
};


/* Makes a removal or rename in the folder of path durable.  Called before a
 * ring's mark is deleted: the mark is what keeps a ring's moved entries from
 * being moved again, so a power loss must never bring back a ring file whose
 * mark is already gone (its entries would reach the queue twice). */
static void sync_parent_dir(const char *path)
{
	char dir[4600];
	snprintf(dir, sizeof(dir), "%s", path);
	char *slash = strrchr(dir, '/');
	if (!slash)
		return;
	*slash = '\0';
	int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd >= 0) {
		fsync(dfd);
		close(dfd);
	}
}
static size_t align8(size_t n)
{
	return (n + 7) & ~(size_t)7;
}

static size_t entry_size(size_t value_len)
{
	return ENTRY_HDR + align8(value_len);
}

static void cond_init_mono(pthread_cond_t *cv)
{
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(cv, &ca);
	pthread_condattr_destroy(&ca);
}

static int ofd_trylock(int fd)
{
	struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 0};
	return fcntl(fd, F_OFD_SETLK, &fl) == 0 ? 0 : -errno;
}

/* ---- reading entries (flusher and recovery) ---- */

struct entry_view {
	uint64_t no;
	const unsigned char *value;
	uint32_t size;
};

/* Reads the entry at *pos (skipping padding); 1 with *e filled, 0 at end,
 * -1 if the entry is damaged. */
static int entry_at(const unsigned char *data, size_t size, uint64_t *pos, uint64_t end,
		    struct entry_view *e)
{
	while (*pos < end) {
		size_t off = (size_t)(*pos % size);
		size_t room = size - off;
		if (room < ENTRY_HDR) {
			*pos += room;
			continue;
		}
		const unsigned char *p = data + off;
		uint32_t marker = atomic_load_explicit((_Atomic uint32_t *)(void *)p,
						       memory_order_acquire);
		if (marker == PAD_MARK) {
			*pos += room;
			continue;
		}
		uint32_t vsize;
		uint64_t no;
		memcpy(&vsize, p + 4, 4);
		memcpy(&no, p + 8, 8);
		if (marker != (ENTRY_MARK ^ (uint32_t)no) || vsize < SPOOL_REC_HDR ||
		    entry_size(vsize) > room || *pos + entry_size(vsize) > end)
			return -1;
		e->no = no;
		e->value = p + ENTRY_HDR;
		e->size = vsize;
		*pos += entry_size(vsize);
		return 1;
	}
	return 0;
}

/* Moves entries [*tail, head) with numbers above `mark` into LMDB, in
 * transactions of bounded size.  Updates *tail and *last_no as it commits;
 * returns 0 or the first error.  *torn counts a damaged entry (the move
 * stops there). */
static int transfer(struct spool_env *env, const struct spool_limits *lim, const unsigned char *data,
		    size_t size, uint64_t ring_id, uint64_t *tail, uint64_t head, uint64_t mark,
		    uint64_t *last_no, uint64_t *first_seq_out, uint64_t *last_seq_out, uint64_t *moved,
		    bool *torn, bool verify)
{
	struct spool_input *in = malloc(TRANSFER_MAX_ENTRIES * sizeof(*in));
	if (!in)
		return -ENOMEM;
	int rc = 0;
	while (*tail < head && rc == 0) {
		size_t n = 0, bytes = 0;
		uint64_t pos = *tail, no = *last_no;
		struct entry_view e;
		int r;
		while (n < TRANSFER_MAX_ENTRIES && bytes < TRANSFER_MAX_BYTES &&
		       (r = entry_at(data, size, &pos, head, &e)) == 1) {
			const char *why;
			if (verify && (e.no != no + 1 || spool_rec_check(e.value, e.size, &why) != 0)) {
				r = -1;
				pos = head;
				break;
			}
			no = e.no;
			if (e.no <= mark)
				continue; /* moved before the ring's owner died */
			in[n++] = (struct spool_input){e.value[1], e.value, e.size};
			bytes += e.size;
		}
		if (r == -1 && torn) {
			*torn = true;
			pos = head; /* nothing past damage can be trusted */
		}
		if (n > 0) {
			struct spool_wreq req = {.in = in, .n = n, .lim = lim, .ring_id = ring_id,
						 .mark_no = no};
			rc = spool_write_append(env, &req);
			if (rc == 0) {
				if (first_seq_out && *first_seq_out == 0)
					*first_seq_out = req.first_seq;
				if (last_seq_out)
					*last_seq_out = req.first_seq + n - 1;
				if (moved)
					*moved += n;
			}
		}
		if (rc == 0) {
			*tail = pos;
			*last_no = no;
		}
		if (r == -1)
			break;
	}
	free(in);
	return rc;
}

/* ---- the flusher thread ---- */

static bool pending_work(struct spool_stage *st)
{
	return atomic_load(&st->sh->head) != atomic_load(&st->sh->tail);
}

static void *flusher_main(void *arg)
{
	struct spool_stage *st = arg;
	double backoff = 0.1;
	pthread_mutex_lock(&st->mu);
	for (;;) {
		/* sleep until there is something to move */
		while (!st->stop && !pending_work(st)) {
			atomic_store(&st->kicked, false);
			atomic_store(&st->idle, true);
			if (pending_work(st))
				break;
			struct timespec ts;
			spool_deadline(&ts, 5.0);
			pthread_cond_timedwait(&st->wake, &st->mu, &ts);
		}
		atomic_store(&st->idle, false);
		if (st->stop && !pending_work(st))
			break;
		/* let the group grow for one interval, unless asked to hurry */
		if (!st->stop && !atomic_load(&st->urgent)) {
			struct timespec ts;
			spool_deadline(&ts, st->interval);
			while (!st->stop && !atomic_load(&st->urgent) &&
			       pthread_cond_timedwait(&st->wake, &st->mu, &ts) == 0)
				;
		}
		atomic_store(&st->urgent, false);
		atomic_store(&st->kicked, false);
		/* close's last try is a transfer that starts after stop was set:
		 * one already under way when close came (a retry on a full disk
		 * that close's caller has since freed) does not count as it */
		bool last_try = st->stop;
		pthread_mutex_unlock(&st->mu);

		uint64_t tail = atomic_load(&st->sh->tail);
		uint64_t head = atomic_load_explicit(&st->sh->head, memory_order_acquire);
		uint64_t last_no = atomic_load(&st->committed_no), last_seq = 0;
		spool_fork_guard_enter();
		int rc = transfer(st->env, &st->lim, st->data, st->size,
				  st->fd >= 0 ? st->ring_id : 0, &tail, head, 0, &last_no, NULL,
				  &last_seq, NULL, NULL, false);
		spool_fork_guard_leave();
		pthread_mutex_lock(&st->mu);
		if (last_no != atomic_load(&st->committed_no)) {
			/* the sequence first: spool_sync() returns as soon as it sees
			 * committed_no, without the lock, and reports last_seq */
			if (last_seq)
				spool_atomic_raise(&st->last_seq, last_seq);
			atomic_store_explicit(&st->sh->tail, tail, memory_order_release);
			atomic_store(&st->committed_no, last_no);
		}
		atomic_store(&st->err, rc);
		pthread_cond_broadcast(&st->moved);
		if (rc) {
			/* disk full, I/O error: keep the entries, try again later */
			if (last_try)
				break;
			/* the backoff holds against producers' and sync callers'
			 * wake-ups (only close cuts it short): a persistent fault must
			 * not turn into a busy loop of reopen and retry */
			struct timespec ts;
			spool_deadline(&ts, backoff);
			while (!st->stop && pthread_cond_timedwait(&st->wake, &st->mu, &ts) == 0)
				;
			backoff = backoff * 2 > 2.0 ? 2.0 : backoff * 2;
		} else {
			backoff = 0.1;
		}
	}
	pthread_mutex_unlock(&st->mu);
	return NULL;
}

/* ---- create and destroy ---- */

static int ring_map(struct spool_stage *st, size_t data_size, bool file, char *errbuf, size_t errlen,
		    const char *dir)
{
	st->map_len = RING_HDR_SIZE + data_size;
	st->size = data_size;
	if (!file) {
		void *m = mmap(NULL, st->map_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
			       -1, 0);
		if (m == MAP_FAILED) {
			int e = errno;
			spool_errf(errbuf, errlen, "%s: cannot allocate the staging buffer: %s", dir,
				   strerror(e));
			return -e;
		}
		st->sh = m;
		st->data = (unsigned char *)m + RING_HDR_SIZE;
		return 0;
	}
	char tmp[4200];
	st->ring_id = spool_random64() | 1;
	snprintf(tmp, sizeof(tmp), "%s/rings/tmp-%016" PRIx64, dir, st->ring_id);
	snprintf(st->path, sizeof(st->path), "%s/rings/ring-%016" PRIx64, dir, st->ring_id);
	mode_t fmode = spool_file_mode(dir);
	int fd = open(tmp, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, fmode);
	if (fd < 0) {
		int e = errno;
		spool_errf(errbuf, errlen, "%s: cannot create commit ring: %s", tmp, strerror(e));
		return -e;
	}
	/* a shared spool: whoever drains next (the agent, another member of
	 * the group) must be able to move the records of a dead producer */
	int rc = spool_fix_mode(fd, fmode);
	if (rc == 0)
		rc = ofd_trylock(fd);
	if (rc == 0) {
		rc = posix_fallocate(fd, 0, (off_t)st->map_len);
		rc = rc ? -rc : 0;
	}
	void *m = MAP_FAILED;
	if (rc == 0) {
		m = mmap(NULL, st->map_len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		if (m == MAP_FAILED)
			rc = -errno;
	}
	if (rc == 0) {
		st->sh = m;
		st->data = (unsigned char *)m + RING_HDR_SIZE;
		memset(st->sh, 0, sizeof(*st->sh));
		st->sh->version = 1;
		st->sh->hdr_size = RING_HDR_SIZE;
		st->sh->data_size = data_size;
		st->sh->ring_id = st->ring_id;
		st->sh->pid = getpid();
		st->sh->created_us = spool_now_us();
		memcpy(st->sh->magic, RING_MAGIC, 8);
		/* only now visible to recovery, complete and locked */
		if (rename(tmp, st->path) != 0)
			rc = -errno;
	}
	if (rc) {
		spool_errf(errbuf, errlen, "%s: cannot create commit ring: %s", tmp, strerror(-rc));
		if (m != MAP_FAILED)
			munmap(m, st->map_len);
		st->sh = NULL;
		unlink(tmp);
		close(fd);
		return rc;
	}
	st->fd = fd;
	return 0;
}

/* In a forked child: the ring belongs to the parent; drop its descriptor,
 * which carries the ownership lock, so a child outliving its parent does
 * not keep the ring from being recovered. */
static void stage_in_child(struct spool_fork_node *node)
{
	struct spool_stage *st = (struct spool_stage *)node;
	if (st->fd >= 0) {
		close(st->fd);
		st->fd = -1;
	}
}

int spool_stage_create(struct spool_env *env, const char *dir, const struct spool_options *opt,
		       const struct spool_limits *lim, struct spool_stage **out, char *errbuf,
		       size_t errlen)
{
	*out = NULL;
	struct spool_stage *st = calloc(1, sizeof(*st));
	if (!st) {
		spool_errf(errbuf, errlen, "%s: out of memory", dir);
		return -ENOMEM;
	}
	st->fd = -1;
	size_t size = opt->ring_bytes < RING_MIN_BYTES ? RING_MIN_BYTES : opt->ring_bytes;
	size = (size + 4095) & ~(size_t)4095;
	int rc = ring_map(st, size, opt->durability == SPOOL_COMMIT, errbuf, errlen, dir);
	/* A nearly full disk (data.mdb never shrinks, and may hold most of it
	 * free inside): a smaller ring still gives commit durability, since
	 * records too large for it go straight to LMDB; refuse only when not
	 * even the smallest ring fits. */
	while ((rc == -ENOSPC || rc == -EDQUOT) && size > RING_MIN_BYTES) {
		size = (size / 2 + 4095) & ~(size_t)4095;
		if (size < RING_MIN_BYTES)
			size = RING_MIN_BYTES;
		rc = ring_map(st, size, true, errbuf, errlen, dir);
	}
	if (rc) {
		free(st);
		return rc;
	}
	pthread_mutex_init(&st->wmu, NULL);
	pthread_mutex_init(&st->mu, NULL);
	cond_init_mono(&st->wake);
	cond_init_mono(&st->moved);
	st->interval = opt->durability == SPOOL_COMMIT ? opt->commit_interval_seconds
						       : opt->flush_interval_seconds;
	if (st->interval < 0)
		st->interval = 0;
	st->batch = opt->durability == SPOOL_BUFFERED && opt->flush_batch ? opt->flush_batch
									  : UINT64_MAX;
	st->env = env;
	st->lim = *lim;
	st->full_timeout = opt->full_timeout_seconds;
	rc = pthread_create(&st->thread, NULL, flusher_main, st);
	if (rc) {
		spool_errf(errbuf, errlen, "%s: cannot start the commit thread: %s", dir,
			   strerror(rc));
		spool_stage_destroy(st, false);
		return -rc;
	}
	st->thread_started = true;
	st->fork_node.in_child = stage_in_child;
	spool_fork_lock();
	spool_fork_register(&st->fork_node);
	st->registered = true;
	spool_fork_unlock();
	*out = st;
	return 0;
}

int spool_stage_destroy(struct spool_stage *st, bool forked)
{
	if (!st)
		return 0;
	if (forked) {
		/* the parent owns the ring, its thread and its locks */
		if (st->sh)
			munmap(st->sh, st->map_len);
		free(st);
		return 0;
	}
	if (st->registered) {
		spool_fork_lock();
		spool_fork_unregister(&st->fork_node);
		spool_fork_unlock();
	}
	int rc = 0;
	if (st->thread_started) {
		pthread_mutex_lock(&st->mu);
		st->stop = true;
		pthread_cond_signal(&st->wake);
		pthread_mutex_unlock(&st->mu);
		pthread_join(st->thread, NULL);
	}
	bool drained = st->sh && !pending_work(st);
	if (!drained) {
		rc = atomic_load(&st->err) ? atomic_load(&st->err) : SPOOL_ECLOSED;
		if (st->fd < 0) {
			/* buffered records that never reached LMDB are lost with the
			 * memory: count them, in the next commit this process makes */
			uint64_t head_no = atomic_load(&st->sh->head_no);
			uint64_t done = atomic_load(&st->committed_no);
			if (head_no > done)
				spool_txn_add_dropped(st->env, head_no - done);
		}
	}
	if (st->fd >= 0) {
		if (drained) {
			/* unlink first: a recoverer that still opens the old name finds
			 * nothing past the tail */
			unlink(st->path);
			sync_parent_dir(st->path);
			spool_write_del_mark(st->env, st->ring_id);
		}
		/* undrained: the file stays, and the next opener recovers it */
		close(st->fd);
	}
	if (st->sh)
		munmap(st->sh, st->map_len);
	pthread_mutex_destroy(&st->wmu);
	pthread_mutex_destroy(&st->mu);
	pthread_cond_destroy(&st->wake);
	pthread_cond_destroy(&st->moved);
	free(st);
	return rc;
}

/* ---- producers ---- */

/* Waits (with mu held) until the ring has `need` free bytes at wpos. */
static int wait_space(struct spool_stage *st, uint64_t need, const struct timespec *deadline)
{
	while (st->wpos + need - atomic_load(&st->sh->tail) > st->size) {
		atomic_store(&st->urgent, true);
		pthread_cond_signal(&st->wake);
		if (pthread_cond_timedwait(&st->moved, &st->mu, deadline) != 0) {
			if (st->wpos + need - atomic_load(&st->sh->tail) <= st->size)
				break;
			int err = atomic_load(&st->err);
			return err ? err : SPOOL_EFULL;
		}
	}
	return 0;
}

int spool_stage_append(struct spool_stage *st, const struct spool_input *in, size_t n)
{
	size_t total = 0;
	for (size_t i = 0; i < n; i++)
		total += entry_size(SPOOL_REC_HDR + in[i].len) + ENTRY_HDR;
	if (total > st->size / 4) {
		/* too large for the ring: keep this handle's order (everything
		 * staged before goes first), then commit straight to LMDB */
		int rc = spool_stage_sync(st, st->full_timeout + 5.0, NULL);
		unsigned char(*hdrs)[SPOOL_REC_HDR] = rc ? NULL : malloc(n * SPOOL_REC_HDR);
		if (!hdrs) {
			spool_txn_add_dropped(st->env, n);
			return rc ? rc : -ENOMEM;
		}
		int64_t now = spool_now_us();
		for (size_t i = 0; i < n; i++)
			spool_rec_header(hdrs[i], in[i].severity, now, in[i].data, in[i].len);
		struct spool_wreq req = {.in = in, .hdrs = (const unsigned char(*)[SPOOL_REC_HDR])hdrs,
					 .n = n, .lim = &st->lim, .count_refused = true};
		rc = spool_write_append(st->env, &req);
		free(hdrs);
		if (rc == 0)
			spool_atomic_raise(&st->last_seq, req.first_seq + n - 1);
		return rc;
	}

	pthread_mutex_lock(&st->wmu);
	if (st->wpos == 0 && st->wno == 0) {
		st->wpos = atomic_load(&st->sh->head);
		st->wno = atomic_load(&st->sh->head_no);
	}
	/* room for all of it, padding included, before writing any of it */
	uint64_t need = 0, pos = st->wpos;
	for (size_t i = 0; i < n; i++) {
		size_t es = entry_size(SPOOL_REC_HDR + in[i].len);
		size_t room = st->size - (size_t)(pos % st->size);
		if (room < es) {
			need += room;
			pos += room;
		}
		need += es;
		pos += es;
	}
	if (need > st->size) {
		pthread_mutex_unlock(&st->wmu);
		return SPOOL_ETOOBIG;
	}
	if (st->wpos + need - atomic_load(&st->sh->tail) > st->size) {
		struct timespec deadline;
		spool_deadline(&deadline, st->full_timeout);
		pthread_mutex_lock(&st->mu);
		int rc = wait_space(st, need, &deadline);
		pthread_mutex_unlock(&st->mu);
		if (rc) {
			pthread_mutex_unlock(&st->wmu);
			spool_txn_add_dropped(st->env, n);
			return rc;
		}
	}
	int64_t now = spool_now_us();
	for (size_t i = 0; i < n; i++) {
		size_t vsize = SPOOL_REC_HDR + in[i].len;
		size_t es = entry_size(vsize);
		size_t off = (size_t)(st->wpos % st->size);
		size_t room = st->size - off;
		if (room < es) {
			if (room >= ENTRY_HDR)
				atomic_store_explicit((_Atomic uint32_t *)(void *)(st->data + off),
						      PAD_MARK, memory_order_relaxed);
			st->wpos += room;
			off = 0;
		}
		unsigned char *p = st->data + off;
		uint64_t no = ++st->wno;
		uint32_t vs = (uint32_t)vsize;
		memcpy(p + 4, &vs, 4);
		memcpy(p + 8, &no, 8);
		if (in[i].len)
			memcpy(p + ENTRY_HDR + SPOOL_REC_HDR, in[i].data, in[i].len);
		spool_rec_header(p + ENTRY_HDR, in[i].severity, now, in[i].data, in[i].len);
		atomic_store_explicit((_Atomic uint32_t *)(void *)p, ENTRY_MARK ^ (uint32_t)no,
				      memory_order_release);
		st->wpos += es;
	}
	/* publish: the whole group becomes visible at once */
	atomic_store(&st->sh->head_no, st->wno);
	atomic_store(&st->sh->head, st->wpos);
	uint64_t staged = st->wno - atomic_load(&st->committed_no);
	bool fill = st->wpos - atomic_load(&st->sh->tail) > st->size / 2;
	pthread_mutex_unlock(&st->wmu);

	/* wake the flusher when it sleeps with nothing to do (once per sleep),
	 * and hurry it when a batch is complete or the ring half full (once per
	 * interval wait) */
	bool hurry = (fill || staged >= st->batch) && !atomic_load(&st->urgent);
	bool wake = atomic_load(&st->idle) && !atomic_exchange(&st->kicked, true);
	if (hurry || wake) {
		pthread_mutex_lock(&st->mu);
		if (hurry)
			atomic_store(&st->urgent, true);
		pthread_cond_signal(&st->wake);
		pthread_mutex_unlock(&st->mu);
	}
	return 0;
}

int spool_stage_sync(struct spool_stage *st, double timeout_seconds, uint64_t *last_seq)
{
	uint64_t target = atomic_load(&st->sh->head_no);
	if (atomic_load(&st->committed_no) >= target) {
		if (last_seq)
			*last_seq = atomic_load(&st->last_seq);
		return 0;
	}
	struct timespec deadline;
	spool_deadline(&deadline, timeout_seconds < 0 ? 1e9 : timeout_seconds);
	int rc = 0;
	pthread_mutex_lock(&st->mu);
	while (atomic_load(&st->committed_no) < target) {
		atomic_store(&st->urgent, true);
		pthread_cond_signal(&st->wake);
		if (pthread_cond_timedwait(&st->moved, &st->mu, &deadline) != 0 &&
		    atomic_load(&st->committed_no) < target) {
			int err = atomic_load(&st->err);
			rc = err ? err : -ETIMEDOUT;
			break;
		}
	}
	pthread_mutex_unlock(&st->mu);
	if (last_seq)
		*last_seq = atomic_load(&st->last_seq);
	return rc;
}

/* ---- recovery of the rings of dead processes ---- */

/* A ring whose header cannot be read (its pages never reached the disk
 * before a power loss, or it was damaged) is salvaged once: every entry in
 * its data area that carries a sound marker and record (checksum and
 * msgpack) and a number above the ring's mark is moved into the queue, in
 * number order, with the mark, so none is moved twice; the numbers missing
 * between the mark and the highest entry found are counted as torn (at
 * least one: what may have followed it is unknown).  The outcome is written
 * to meta "spool.badring.<id>" (entries recovered, entries torn, when) in
 * the same transaction as the torn count, then the file is renamed
 * ring-<id>.bad, which nothing moves again and compaction does not wait
 * for; `spoolctl verify` lists it and `verify --repair` removes it.  A
 * salvage cut short is redone by the next recovery: the mark keeps what was
 * moved, and a written outcome makes the rest only the rename.
 *
 * Entries whose group (spool_append_many) was not published when the ring
 * stopped cannot be told apart without the header: each sound one is moved,
 * so a group cut by the power loss may arrive in part. */
#define BADRING_PREFIX "spool.badring."
#define BADRING_VALUE 24 /* recovered, torn, when (µs): u64 LE each */

static int badring_key(char *buf, size_t len, uint64_t ring_id)
{
	return snprintf(buf, len, BADRING_PREFIX "%016" PRIx64, ring_id);
}

struct found_entry {
	uint64_t no;
	size_t off;
	uint32_t size;
};

static int cmp_found(const void *a, const void *b)
{
	uint64_t x = ((const struct found_entry *)a)->no, y = ((const struct found_entry *)b)->no;
	return x < y ? -1 : x > y;
}

/* The ring id in a ring file's path (".../ring-" and 16 hex digits). */
static bool ring_id_of(const char *path, uint64_t *id)
{
	const char *name = strrchr(path, '/');
	name = name ? name + 1 : path;
	if (strncmp(name, "ring-", 5) != 0 || strlen(name) != 21)
		return false;
	char *end;
	errno = 0;
	*id = strtoull(name + 5, &end, 16);
	return errno == 0 && *end == '\0';
}

struct badring_arg {
	const char *key;
	const unsigned char *value; /* NULL: only look whether the outcome is written */
	uint64_t torn;
	bool present;
};

/* Writes the outcome and the torn count in one transaction, unless an
 * outcome is there already; either way a->present tells whether one was. */
static int badring_body(struct spool_env *env, MDB_txn *txn, struct spool_counters *c, void *p)
{
	struct badring_arg *a = p;
	MDB_val k = {strlen(a->key), (void *)a->key}, v;
	int rc = mdb_get(txn, env->dbi_meta, &k, &v);
	if (rc != MDB_NOTFOUND) {
		a->present = rc == 0;
		return rc;
	}
	a->present = false;
	if (!a->value)
		return 0;
	v = (MDB_val){BADRING_VALUE, (void *)a->value};
	rc = mdb_put(txn, env->dbi_meta, &k, &v, 0);
	if (!rc)
		c->torn += a->torn;
	return rc;
}

/* Moves the sound entries of the unreadable ring (data area `data`, `size`
 * bytes) with numbers above its mark; *recovered and *torn get the counts. */
static int salvage_entries(struct spool_env *env, uint64_t ring_id, const unsigned char *data,
			   size_t size, uint64_t *recovered, uint64_t *torn)
{
	*recovered = 0;
	*torn = 1;
	uint64_t mark = 0;
	int rc = spool_write_get_mark(env, ring_id, &mark);
	if (rc)
		return rc;
	struct found_entry *found = NULL;
	size_t n = 0, cap = 0;
	/* entries are 8-byte aligned: look at every such place, so that damage
	 * anywhere costs only the entries it touches */
	for (size_t off = 0; off + ENTRY_HDR <= size;) {
		const unsigned char *p = data + off;
		uint32_t marker, vsize;
		uint64_t no;
		memcpy(&marker, p, 4);
		memcpy(&vsize, p + 4, 4);
		memcpy(&no, p + 8, 8);
		const char *why;
		if (no == 0 || marker != (ENTRY_MARK ^ (uint32_t)no) || vsize < SPOOL_REC_HDR ||
		    entry_size(vsize) > size - off ||
		    spool_rec_check(p + ENTRY_HDR, vsize, &why) != 0) {
			off += 8;
			continue;
		}
		if (no > mark) {
			if (n == cap) {
				cap = cap ? cap * 2 : 256;
				struct found_entry *nf = realloc(found, cap * sizeof(*nf));
				if (!nf) {
					free(found);
					return -ENOMEM;
				}
				found = nf;
			}
			found[n++] = (struct found_entry){no, off, vsize};
		}
		off += entry_size(vsize);
	}
	if (n > 1) /* found is NULL when the ring held no entry past the mark */
		qsort(found, n, sizeof(*found), cmp_found);
	struct spool_input *in = malloc(TRANSFER_MAX_ENTRIES * sizeof(*in));
	if (!in) {
		free(found);
		return -ENOMEM;
	}
	static const struct spool_limits keep = {0, 0, SPOOL_FULL_BLOCK, false};
	uint64_t last = mark, moved = 0;
	for (size_t i = 0; i < n && rc == 0;) {
		size_t k = 0, bytes = 0;
		uint64_t no = last;
		for (; i < n && k < TRANSFER_MAX_ENTRIES && bytes < TRANSFER_MAX_BYTES; i++) {
			if (found[i].no == no)
				continue; /* the same number twice: keep the first */
			const unsigned char *value = data + found[i].off + ENTRY_HDR;
			in[k++] = (struct spool_input){value[1], value, found[i].size};
			bytes += found[i].size;
			no = found[i].no;
		}
		struct spool_wreq req = {.in = in, .n = k, .lim = &keep, .ring_id = ring_id,
					 .mark_no = no};
		rc = k ? spool_write_append(env, &req) : 0;
		if (rc == 0) {
			moved += k;
			last = no;
		}
	}
	free(in);
	free(found);
	if (rc)
		return rc;
	*recovered = moved;
	uint64_t missing = last - mark - moved;
	*torn = missing ? missing : 1;
	return 0;
}

/* Salvages the unreadable ring at path (locked through fd; its data area,
 * if it has one, mapped at m), records the outcome and renames it .bad. */
static int salvage_ring(struct spool_env *env, const char *path, void *m, size_t file_size,
			uint64_t *moved)
{
	char bad[4600], key[64];
	snprintf(bad, sizeof(bad), "%s.bad", path);
	uint64_t ring_id;
	if (!ring_id_of(path, &ring_id)) {
		rename(path, bad);
		spool_txn_add_torn(env, 1);
		return 0;
	}
	badring_key(key, sizeof(key), ring_id);
	struct badring_arg a = {key, NULL, 0, false};
	/* in a write transaction: an outcome committed by a recoverer that
	 * died is seen (see spool_write_get_mark()) */
	int rc = spool_txn_write(env, badring_body, &a);
	if (rc == 0 && !a.present) {
		uint64_t recovered = 0, torn = 1;
		if (m && file_size > RING_HDR_SIZE)
			rc = salvage_entries(env, ring_id, (const unsigned char *)m + RING_HDR_SIZE,
					     (file_size - RING_HDR_SIZE) & ~(size_t)7, &recovered,
					     &torn);
		if (rc == 0) {
			unsigned char value[BADRING_VALUE];
			spool_put_le64(value, recovered);
			spool_put_le64(value + 8, torn);
			spool_put_le64(value + 16, (uint64_t)spool_now_us());
			a = (struct badring_arg){key, value, torn, false};
			rc = spool_txn_write(env, badring_body, &a);
		}
		if (rc == 0 && moved)
			*moved += recovered;
	}
	if (rc)
		return rc; /* the ring stays; the next recovery goes on from its mark */
	if (rename(path, bad) != 0)
		return -errno;
	/* the new name durable before the mark goes: a power loss must not
	 * bring back a ring-<id> with neither */
	sync_parent_dir(path);
	spool_write_del_mark(env, ring_id);
	return 0;
}

int spool_stage_bad_outcome(struct spool_env *env, uint64_t ring_id, uint64_t *recovered,
			    uint64_t *torn, int64_t *when_us)
{
	char key[64];
	badring_key(key, sizeof(key), ring_id);
	MDB_txn *txn;
	int rc = spool_env_begin(env, true, &txn);
	if (rc)
		return rc;
	MDB_val k = {strlen(key), key}, v;
	rc = mdb_get(txn, env->dbi_meta, &k, &v);
	if (rc == 0 && v.mv_size == BADRING_VALUE) {
		*recovered = spool_get_le64(v.mv_data);
		*torn = spool_get_le64((const unsigned char *)v.mv_data + 8);
		*when_us = (int64_t)spool_get_le64((const unsigned char *)v.mv_data + 16);
	} else if (rc == 0) {
		rc = MDB_NOTFOUND;
	}
	mdb_txn_abort(txn);
	spool_env_end(env);
	return spool_map_mdb_error(rc);
}

int spool_stage_bad_forget(struct spool_env *env, uint64_t ring_id)
{
	char key[64];
	badring_key(key, sizeof(key), ring_id);
	return spool_write_del_meta(env, key);
}

/* Recovery checks each entry of a dead process's ring (its number follows
 * the last, its record is sound) before moving it.  A test build of the
 * library (SPOOL_TEST_HOOKS, tests/powerloss only; never the installed
 * library) skips that check when SPOOL_TEST_SKIP_RING_CRC=1: a broken
 * recovery, which the power-loss harness must catch. */
#ifdef SPOOL_TEST_HOOKS
static bool ring_check_on(void)
{
	const char *e = getenv("SPOOL_TEST_SKIP_RING_CRC");
	return !(e && strcmp(e, "1") == 0);
}
#else
static bool ring_check_on(void)
{
	return true;
}
#endif

static int recover_one(struct spool_env *env, const char *path, uint64_t *moved, uint64_t *found)
{
	int fd = open(path, O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT ? 0 : -errno;
	if (ofd_trylock(fd) != 0) {
		close(fd); /* its owner lives */
		return 0;
	}
	struct stat st;
	int rc = 0;
	void *m = MAP_FAILED;
	struct stat named;
	if (fstat(fd, &st) != 0 || st.st_nlink == 0 || stat(path, &named) != 0 ||
	    named.st_ino != st.st_ino || named.st_dev != st.st_dev) {
		close(fd); /* already recovered (removed, or renamed .bad) by someone else */
		return 0;
	}
	(*found)++;
	if ((size_t)st.st_size > RING_HDR_SIZE)
		m = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	struct ring_shared *sh = m == MAP_FAILED ? NULL : m;
	if (!sh || memcmp(sh->magic, RING_MAGIC, 8) != 0 || sh->version != 1 ||
	    sh->hdr_size != RING_HDR_SIZE || sh->data_size + RING_HDR_SIZE != (uint64_t)st.st_size ||
	    sh->head < sh->tail || sh->head - sh->tail > sh->data_size) {
		/* a header we cannot read: salvage what can be, then set it aside */
		rc = salvage_ring(env, path, sh, (size_t)st.st_size, moved);
		if (sh)
			munmap(m, (size_t)st.st_size);
		close(fd);
		return rc;
	}
	uint64_t mark = 0;
	rc = spool_write_get_mark(env, sh->ring_id, &mark);
	uint64_t tail = atomic_load(&sh->tail), head = atomic_load(&sh->head);
	/* the number of the entry before the tail: entries carry their own */
	uint64_t last_no = 0;
	bool torn = false;
	const unsigned char *data = (const unsigned char *)sh + RING_HDR_SIZE;
	if (rc == 0 && tail < head) {
		uint64_t p = tail;
		struct entry_view e;
		if (entry_at(data, sh->data_size, &p, head, &e) == 1)
			last_no = e.no - 1;
		static const struct spool_limits keep = {0, 0, SPOOL_FULL_BLOCK, false};
		rc = transfer(env, &keep, data, sh->data_size, sh->ring_id, &tail, head, mark,
			      &last_no, NULL, NULL, moved, &torn, ring_check_on());
		if (rc == 0 || tail != atomic_load(&sh->tail))
			atomic_store(&sh->tail, tail);
	}
	if (rc == 0) {
		/* an entry its producer was still writing when it died: its call
		 * never returned, so it is only counted */
		uint64_t p = head;
		size_t off = (size_t)(p % sh->data_size);
		if (sh->data_size - off >= ENTRY_HDR) {
			uint64_t no;
			memcpy(&no, data + off + 8, 8);
			uint32_t marker;
			memcpy(&marker, data + off, 4);
			if (no == atomic_load(&sh->head_no) + 1 && marker != (ENTRY_MARK ^ (uint32_t)no))
				torn = true;
		}
		if (torn)
			spool_txn_add_torn(env, 1);
		unlink(path);
		sync_parent_dir(path);
		spool_write_del_mark(env, sh->ring_id);
	}
	munmap(m, (size_t)st.st_size);
	close(fd);
	return rc;
}

int spool_stage_recover(struct spool_env *env, uint64_t *moved)
{
	char dirpath[4200];
	snprintf(dirpath, sizeof(dirpath), "%s/rings", env->dir);
	DIR *d = opendir(dirpath);
	if (!d)
		return errno == ENOENT ? 0 : -errno;
	int first_err = 0;
	uint64_t found = 0;
	struct dirent *de;
	int64_t now = spool_now_us();
	while ((de = readdir(d)) != NULL) {
		char path[4500];
		snprintf(path, sizeof(path), "%s/%s", dirpath, de->d_name);
		size_t len = strlen(de->d_name);
		if (strncmp(de->d_name, "ring-", 5) == 0 && len == 21) {
			int rc = recover_one(env, path, moved, &found);
			if (rc && !first_err)
				first_err = rc;
		} else if (strncmp(de->d_name, "tmp-", 4) == 0) {
			/* a ring whose creator died before finishing it holds nothing.
			 * Its age is checked before the lock is tried: locking a ring
			 * being created, even briefly, makes its creator's own lock
			 * fail and its open with it */
			struct stat st;
			if (stat(path, &st) != 0 ||
			    now - (int64_t)st.st_mtime * 1000000 <= 60 * 1000000LL)
				continue;
			int fd = open(path, O_RDWR | O_CLOEXEC);
			if (fd >= 0 && ofd_trylock(fd) == 0 && fstat(fd, &st) == 0 &&
			    now - (int64_t)st.st_mtime * 1000000 > 60 * 1000000LL)
				unlink(path);
			if (fd >= 0)
				close(fd);
		}
	}
	closedir(d);
	/* after a recovery: fold the torn count in, drop marks of vanished rings */
	int rc = found ? spool_write_gc_marks(env) : 0;
	return first_err ? first_err : rc;
}

void spool_stage_outstanding(struct spool_stage *st, uint64_t *entries, uint64_t *bytes)
{
	uint64_t head_no = atomic_load(&st->sh->head_no);
	uint64_t done = atomic_load(&st->committed_no);
	uint64_t head = atomic_load(&st->sh->head), tail = atomic_load(&st->sh->tail);
	*entries = head_no > done ? head_no - done : 0;
	*bytes = head > tail ? head - tail : 0;
}
