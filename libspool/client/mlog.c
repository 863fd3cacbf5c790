/* mlog.c — the Master Log client API (spool/mlog.h): client objects, the
 * process-wide client, async spooling with wake-ups and backpressure, the
 * start of spool-agent when none runs (spawn.c), the direct send with its
 * fall-back to the spool, flush, fork and exit.  No network code runs here
 * but the direct send, in the caller's thread. */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include <msgpack.h>
#include <spool/mlog.h>
#include <spool/spool.h>

#include "mlog_event.h"
#include "mlog_internal.h"

#define BACKPRESSURE_REFRESH 0.1  /* seconds between looks at the spool's fullness */
#define FLUSH_POLL           0.01 /* seconds between looks at the spool's head */
#define SPAWN_RETRY          10.0 /* seconds between attempts to start an agent after a failure */

struct mlog_client {
	struct mlog_client *prev, *next; /* every client, for fork() */
	pthread_mutex_t mu;              /* held briefly, never across a send or a wait */
	struct mlog_settings set;        /* never changes after client_alloc() */
	pid_t pid;                       /* the process that owns s and direct */
	struct spool *s;
	struct mlog_direct *direct;
	double signalled;                 /* monotonic: the last wake-up and look at the agent */
	bool spawning;                    /* a thread is starting spool-agent */
	double spawn_retry;               /* monotonic: no new start after a failure before */
	char spawn_error[MLOG_TEXT_MAX]; /* why the last start failed ("" when it did not) */
	uint64_t logged;                  /* events spooled by this handle */
	uint64_t dead_after;              /* flush: dead letters above this seq may be ours */
	double bp_checked;
	double bp_spe;
	double bp_fullness;
	bool is_global;
	char *block_name;       /* mlog_client_set_block(); NULL: the c_client block */
	struct spool_buf block; /* its msgpack key/value pair */
};

/* ---- the client list and fork() ---- */

static pthread_mutex_t list_mu = PTHREAD_MUTEX_INITIALIZER;
static struct mlog_client *list_head;
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;
/* getpid() is a system call: the clients compare against this copy, set
 * when the first client is made and renewed in every child of fork() */
static _Atomic pid_t cur_pid;

/* the process-wide client */
static pthread_rwlock_t g_lock = PTHREAD_RWLOCK_INITIALIZER;
static struct mlog_client *g_client;
static struct mlog_settings g_settings; /* from mlog_configure() */
static bool g_configured;
static pthread_once_t atexit_once = PTHREAD_ONCE_INIT;

/* Direct-send connections let go of at exit or in a forked child: never
 * torn down there (at exit the TLS library may have been cleaned up
 * already; in a child the connection is the parent's), but kept reachable
 * from here, so that leak checkers do not report them. */
struct kept_direct {
	struct kept_direct *next;
	struct mlog_direct *d;
};
static _Atomic(struct kept_direct *) kept_directs;

static void keep_direct(struct mlog_direct *d)
{
	struct kept_direct *k = d ? malloc(sizeof(*k)) : NULL;
	if (!k)
		return;
	k->d = d;
	k->next = atomic_load(&kept_directs);
	while (!atomic_compare_exchange_weak(&kept_directs, &k->next, k))
		;
}

static void fork_prepare(void)
{
	pthread_mutex_lock(&list_mu);
	for (struct mlog_client *c = list_head; c; c = c->next)
		pthread_mutex_lock(&c->mu);
}

static void fork_parent(void)
{
	for (struct mlog_client *c = list_head; c; c = c->next)
		pthread_mutex_unlock(&c->mu);
	pthread_mutex_unlock(&list_mu);
}

/* The child has one thread: every lock starts afresh.  What belongs to the
 * parent (spool handle, connection) is dropped at the client's next call,
 * seeing the pid change. */
static void fork_child(void)
{
	pthread_mutex_t fresh = PTHREAD_MUTEX_INITIALIZER;
	pthread_rwlock_t fresh_rw = PTHREAD_RWLOCK_INITIALIZER;
	for (struct mlog_client *c = list_head; c; c = c->next)
		c->mu = fresh;
	list_mu = fresh;
	g_lock = fresh_rw;
	atomic_store(&cur_pid, getpid());
}

static void install_atfork(void)
{
	atomic_store(&cur_pid, getpid());
	pthread_atfork(fork_prepare, fork_parent, fork_child);
}

static double mono_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void sleep_for(double s)
{
	if (s <= 0)
		return;
	struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

/* struct mlog_result before dead_lettered: returned by value, so its size
 * is ABI; the new field must live in the old tail padding. */
struct mlog_result_v0 {
	bool ok;
	int status_code;
	char event_id[MLOG_EVENT_ID_MAX];
	bool queued;
	bool accepted;
	char error[MLOG_ERROR_MAX];
};
_Static_assert(sizeof(struct mlog_result) == sizeof(struct mlog_result_v0),
               "struct mlog_result changed size: an ABI break");
_Static_assert(offsetof(struct mlog_result, error) == offsetof(struct mlog_result_v0, error),
               "struct mlog_result moved a field");

/* A byte that starts a character (not a UTF-8 continuation byte). */
static bool char_start(unsigned char c)
{
	return (c & 0xC0) != 0x80;
}

void mlog_fit_text(char *dst, size_t cap, const char *src)
{
	if (!cap)
		return;
	size_t len = strlen(src);
	if (len < cap) {
		memcpy(dst, src, len + 1);
		return;
	}
	static const char gap[] = " ... ";
	size_t room = cap - 1 - (sizeof(gap) - 1); /* bytes for head and tail */
	size_t tail = room * 2 / 5, head = room - tail;
	/* the tail starts after a space (or '/') near its nominal start */
	size_t t = len - tail;
	for (size_t k = t; k < len && k < t + 40; k++)
		if (src[k] == ' ' || src[k] == '/') {
			t = k + (src[k] == ' ');
			break;
		}
	while (t < len && !char_start((unsigned char)src[t]))
		t++;
	/* the head ends before a space, or after a '/', near its nominal end */
	size_t h = head;
	for (size_t k = head; k > 0 && k + 40 > head; k--)
		if (src[k - 1] == ' ' || src[k - 1] == '/') {
			h = src[k - 1] == ' ' ? k - 1 : k;
			break;
		}
	while (h > 0 && !char_start((unsigned char)src[h]))
		h--;
	while (h > 0 && src[h - 1] == ' ')
		h--;
	snprintf(dst, cap, "%.*s%s%s", (int)h, src, gap, src + t);
}

void mlog_set_error(struct mlog_result *r, const char *fmt, ...)
{
	char full[4096];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(full, sizeof(full), fmt, ap);
	va_end(ap);
	mlog_fit_text(r->error, sizeof(r->error), full);
}

#define set_error mlog_set_error

/* ---- client objects ---- */

static struct mlog_client *client_alloc(struct mlog_settings *set)
{
	pthread_once(&atfork_once, install_atfork);
	struct mlog_client *c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	pthread_mutex_init(&c->mu, NULL);
	c->set = *set; /* takes the strings */
	memset(set, 0, sizeof(*set));
	c->pid = atomic_load(&cur_pid);
	c->bp_spe = -1;
	pthread_mutex_lock(&list_mu);
	c->next = list_head;
	if (list_head)
		list_head->prev = c;
	list_head = c;
	pthread_mutex_unlock(&list_mu);
	return c;
}

int mlog_client_new(const struct mlog_config *cfg, struct mlog_client **out, char *err,
                    size_t errlen)
{
	char e[MLOG_TEXT_MAX];
	if (!out)
		return -EINVAL;
	*out = NULL;
	struct mlog_settings set;
	int rc = mlog_settings_resolve(cfg, &set, e, sizeof(e));
	if (rc) {
		if (err && errlen)
			snprintf(err, errlen, "%s", e);
		return rc;
	}
	*out = client_alloc(&set);
	if (!*out) {
		mlog_settings_free(&set);
		if (err && errlen)
			snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	return 0;
}

int mlog_client_set_block(struct mlog_client *c, const char *name, const char *json, char *err,
                          size_t errlen)
{
	char e[MLOG_ERROR_MAX];
	if (!c) {
		if (err && errlen)
			snprintf(err, errlen, "mlog_client_set_block: no client");
		return -EINVAL;
	}
	struct spool_buf block = {0};
	char *copy = NULL;
	if (name || json) {
		int rc = mlog_block_from_json(name, json, &block, e, sizeof(e));
		if (rc == 0 && !(copy = strdup(name))) {
			snprintf(e, sizeof(e), "out of memory");
			rc = -ENOMEM;
		}
		if (rc) {
			spool_buf_free(&block);
			if (err && errlen)
				snprintf(err, errlen, "%s", e);
			return rc;
		}
	}
	pthread_mutex_lock(&c->mu);
	char *old_name = c->block_name;
	struct spool_buf old = c->block;
	c->block_name = copy;
	c->block = block;
	pthread_mutex_unlock(&c->mu);
	free(old_name);
	spool_buf_free(&old);
	return 0;
}

/* In a child after fork(): forget the parent's handle and connection, and
 * start over with the agent.  The spool handle only frees memory in a
 * child; the connection is left alone (closing a TLS connection the parent
 * still uses would write to it).  Called with c->mu held. */
static void client_after_fork(struct mlog_client *c)
{
	pid_t me = atomic_load_explicit(&cur_pid, memory_order_relaxed);
	if (c->pid == me)
		return;
	spool_close(c->s); /* SPOOL_EFORKED handle: frees memory only */
	c->s = NULL;
	keep_direct(c->direct);
	c->direct = NULL;
	c->signalled = 0;
	c->spawning = false; /* another thread of the parent was starting one */
	c->spawn_retry = 0;
	c->spawn_error[0] = '\0';
	c->logged = 0;
	c->bp_checked = 0;
	c->pid = me;
}

static void spool_options_for(const struct mlog_client *c, struct spool_options *so)
{
	spool_options_init(so);
	so->durability = c->set.durability;
	so->max_events = (uint64_t)c->set.max_queue_size;
	so->max_bytes = c->set.max_spool_bytes;
	so->full_policy = c->set.drop_when_full ? SPOOL_FULL_DROP : SPOOL_FULL_BLOCK;
	so->full_timeout_seconds = c->set.queue_timeout;
	so->flush_interval_seconds = c->set.flush_interval;
	so->flush_batch = (uint32_t)c->set.batch_size;
}

/* Opens the spool if needed.  Called with c->mu held. */
static int client_open(struct mlog_client *c, struct mlog_result *r)
{
	if (c->s)
		return 0;
	struct spool_options so;
	spool_options_for(c, &so);
	char err[MLOG_TEXT_MAX];
	int rc = spool_open(c->set.spool_dir, &so, &c->s, err, sizeof(err));
	if (rc) {
		set_error(r, "%s", err);
		return rc;
	}
	/* every event of this process gets a sequence above this one */
	struct spool_stats st;
	if (spool_stats(c->s, &st) == 0 && st.next_seq > c->dead_after)
		c->dead_after = st.next_seq - 1;
	return 0;
}

/* A disk too full for this process's commit ring: the event goes in with a
 * sync commit of its own, through a handle opened for it alone, so that it
 * is stored when data.mdb has room inside, and otherwise refused by the
 * spool, which counts it in dropped_total.  The next call tries the
 * configured mode again.  Returns the open's code (*opened false, the
 * sentence in r->error) or the append's. */
static int spool_sync_once(struct mlog_client *c, const struct spool_buf *ev, int severity,
                           struct mlog_result *r, bool *opened)
{
	struct spool_options so;
	spool_options_for(c, &so);
	so.durability = SPOOL_SYNC;
	struct spool *s;
	char err[MLOG_TEXT_MAX];
	int rc = spool_open(c->set.spool_dir, &so, &s, err, sizeof(err));
	*opened = rc == 0;
	if (rc) {
		set_error(r, "%s", err);
		return rc;
	}
	r->error[0] = '\0';
	rc = spool_append(s, severity, ev->data, ev->len);
	spool_close(s);
	if (rc == 0)
		spool_wake_agent(c->set.spool_dir);
	return rc;
}

enum signal_result {
	SIGNAL_RUNS = 1,    /* an agent runs (it was there, or was started) */
	SIGNAL_NONE = 0,    /* none runs, and none was started (not wanted, not now) */
	SIGNAL_FAILED = -1, /* none runs: starting one failed (c->spawn_error) */
};

/* Wakes the agent and sees that one runs: when none holds the spool's agent
 * lock and the client may start one (spawn_agent, an endpoint, no attempt
 * failed in the last SPAWN_RETRY seconds unless `force`), starts spool-agent
 * in the calling thread, waiting at most `wait` seconds for it.  The wake-up
 * comes before the look at the lock: an agent leaving for idleness looks at
 * its wake-ups once more after it let go of the lock, so an event spooled
 * before this call is never left without an agent (spool-agent
 * --exit-idle).  Called without c->mu, with s open. */
static enum signal_result client_signal(struct mlog_client *c, struct spool *s, bool force,
                                        double wait)
{
	spool_wake_agent(c->set.spool_dir);
	double now = mono_now();
	pthread_mutex_lock(&c->mu);
	c->signalled = now;
	bool may = c->set.spawn_agent && c->set.endpoint_root && !c->spawning &&
	           (force || now >= c->spawn_retry) && wait > 0;
	pthread_mutex_unlock(&c->mu);
	int running = spool_agent_running(s, NULL);
	if (running != 0 || !may)
		return running == 1 ? SIGNAL_RUNS : SIGNAL_NONE;
	pthread_mutex_lock(&c->mu);
	if (c->spawning) { /* another thread got there first */
		pthread_mutex_unlock(&c->mu);
		return SIGNAL_NONE;
	}
	c->spawning = true;
	pthread_mutex_unlock(&c->mu);
	char err[MLOG_TEXT_MAX] = "";
	int rc = mlog_agent_spawn(&c->set, s, wait, err, sizeof(err));
	pthread_mutex_lock(&c->mu);
	c->spawning = false;
	if (rc == 0) {
		c->spawn_error[0] = '\0';
	} else {
		snprintf(c->spawn_error, sizeof(c->spawn_error), "%s", err);
		/* a start cut short by a caller's small wait is no verdict */
		if (rc != -ETIMEDOUT || wait >= MLOG_SPAWN_WAIT_SECONDS)
			c->spawn_retry = mono_now() + SPAWN_RETRY;
	}
	pthread_mutex_unlock(&c->mu);
	return rc == 0 ? SIGNAL_RUNS : SIGNAL_FAILED;
}

/* How full the spool is, from 0 to 1: the largest of its pending events
 * over max_queue_size, its pending bytes over max_spool_bytes, and its
 * pending bytes over the most its file could hold on that disk (its
 * present size plus the file system's free space: other files' growth
 * counts too). */
static double spool_fullness(const struct mlog_client *c, const struct spool_stats *st)
{
	double full = 0;
	if (c->set.max_queue_size > 0)
		full = (double)st->pending / (double)c->set.max_queue_size;
	if (c->set.max_spool_bytes > 0 &&
	    (double)st->pending_bytes / (double)c->set.max_spool_bytes > full)
		full = (double)st->pending_bytes / (double)c->set.max_spool_bytes;
	struct statvfs fs;
	if (statvfs(c->set.spool_dir, &fs) == 0) {
		double avail =
		    (double)(geteuid() == 0 ? fs.f_bfree : fs.f_bavail) * (double)fs.f_frsize;
		double room = (double)st->file_bytes + avail;
		if (room > 0 && (double)st->pending_bytes / room > full)
			full = (double)st->pending_bytes / room;
	}
	return full < 1 ? full : 1;
}

/* The sleep after an event: none while the spool is below half full (the
 * spool is the buffer, meant to take an outage at full speed), then the
 * agent's send time per event times how far past half it is (0 at half
 * full, all of it when full), capped. */
static double backpressure_sleep(struct mlog_client *c, struct spool *s)
{
	double now = mono_now();
	pthread_mutex_lock(&c->mu);
	bool stale = now - c->bp_checked >= BACKPRESSURE_REFRESH;
	if (stale)
		c->bp_checked = now;
	pthread_mutex_unlock(&c->mu);
	if (stale) {
		struct spool_stats st;
		double full = spool_stats(s, &st) == 0 ? spool_fullness(c, &st) : 0;
		char buf[64];
		size_t len = sizeof(buf) - 1;
		double spe = c->set.initial_spe;
		if (spool_meta_get(s, "agent.send_seconds_per_event", buf, &len) == 0) {
			buf[len] = '\0';
			char *end;
			double v = strtod(buf, &end);
			if (end != buf && isfinite(v) && v >= 0)
				spe = v;
		}
		pthread_mutex_lock(&c->mu);
		c->bp_fullness = full;
		c->bp_spe = spe;
		pthread_mutex_unlock(&c->mu);
	}
	pthread_mutex_lock(&c->mu);
	double past_half = (c->bp_fullness - 0.5) / 0.5;
	double sleep = past_half > 0 ? c->bp_spe * past_half : 0;
	pthread_mutex_unlock(&c->mu);
	if (sleep > c->set.max_enqueue_sleep)
		sleep = c->set.max_enqueue_sleep;
	return sleep > 0 ? sleep : 0;
}

/* Appends the encoded event to the spool. */
static void client_spool(struct mlog_client *c, const struct spool_buf *ev, int severity,
                         struct mlog_result *r)
{
	pthread_mutex_lock(&c->mu);
	client_after_fork(c);
	int rc = client_open(c, r);
	struct spool *s = c->s;
	pthread_mutex_unlock(&c->mu);
	bool once = (rc == -ENOSPC || rc == -EDQUOT) && c->set.durability != SPOOL_SYNC;
	if (once) {
		bool opened;
		rc = spool_sync_once(c, ev, severity, r, &opened);
		if (rc == 0) {
			r->ok = r->queued = r->accepted = true;
			return;
		}
		if (!opened) {
			r->ok = r->queued = r->accepted = false;
			return;
		}
	} else if (rc) {
		r->ok = r->queued = r->accepted = false;
		return;
	} else {
		rc = spool_append(s, severity, ev->data, ev->len);
	}
	if (rc) {
		r->ok = r->queued = r->accepted = false;
		if (rc == SPOOL_EFULL && c->set.drop_when_full)
			set_error(r, "spool full: event dropped (drop_when_full)");
		else if (rc == SPOOL_EFULL)
			set_error(r, "spool full: no room within queue_timeout_seconds %g",
			          c->set.queue_timeout);
		else if (rc == SPOOL_ETOOBIG) /* max_spool_bytes below the event's size */
			set_error(r, "event is %zu bytes encoded; the spool takes at most %llu "
			             "bytes in all (max_spool_bytes)",
			          ev->len, (unsigned long long)c->set.max_spool_bytes);
		else
			set_error(r, "event not spooled: %s", spool_strerror(rc));
		return;
	}
	r->ok = r->queued = r->accepted = true;
	/* the agent is woken (and started when none runs) at the first event,
	 * at every batch_size-th, and at least every quarter of a started
	 * agent's idle time while events come: so an agent about to leave for
	 * idleness is always told in time (client_signal()) */
	/* the coarse clock (a few ms of resolution, no hardware read) serves
	 * for a period of seconds */
	struct timespec coarse;
	clock_gettime(CLOCK_MONOTONIC_COARSE, &coarse);
	double now = (double)coarse.tv_sec + (double)coarse.tv_nsec / 1e9;
	pthread_mutex_lock(&c->mu);
	bool batch = ++c->logged % (uint64_t)c->set.batch_size == 0;
	bool due = batch || c->signalled == 0 ||
	           now - c->signalled >= mlog_agent_idle_seconds(&c->set) / 4 - 0.02;
	pthread_mutex_unlock(&c->mu);
	if (due)
		client_signal(c, s, false, MLOG_SPAWN_WAIT_SECONDS);
	if (c->set.backpressure && c->set.async_mode)
		sleep_for(backpressure_sleep(c, s));
}

static int to_spool_severity(enum mlog_severity sev)
{
	if (sev == MLOG_DEFAULT)
		return SPOOL_SEV_INFO;
	if (sev < MLOG_DEBUG || sev > MLOG_FATAL)
		return -1;
	return (int)sev - 1;
}

/* An encoded event must fit the spool's record limit and, as JSON, one
 * request of the ingest API; otherwise it could only ever be dead-lettered
 * (413), so the call refuses it.  0, or -E2BIG with r->error set. */
static int check_event_size(const struct spool_buf *ev, struct mlog_result *r)
{
	/* the client keeps the spool's default */
	static _Atomic size_t max_record_bytes;
	size_t max_rec = atomic_load_explicit(&max_record_bytes, memory_order_relaxed);
	if (!max_rec) {
		struct spool_options so;
		spool_options_init(&so);
		atomic_store(&max_record_bytes, max_rec = so.max_record_bytes);
	}
	if (ev->len > max_rec) {
		set_error(r,
		          "event is %zu bytes encoded; the limit is %zu bytes per event (the spool's "
		          "max_record_bytes: message, title, tags and metadata together)",
		          ev->len, max_rec);
		return -E2BIG;
	}
	/* a byte of the record becomes at most 6 of JSON (\u00XX): only large
	 * events need to be measured */
	if (ev->len <= (MLOG_MAX_EVENT_JSON_BYTES - 64) / 6)
		return 0;
	struct spool_buf js = {0};
	int rc = spool_event_to_json(ev->data, ev->len, NULL, &js);
	size_t jl = js.len;
	spool_buf_free(&js);
	if (rc) {
		set_error(r, "cannot encode the event as JSON: %s", spool_strerror(rc));
		return rc;
	}
	if (jl > MLOG_MAX_EVENT_JSON_BYTES) {
		set_error(r,
		          "event is %zu bytes as JSON; the limit is %zu bytes "
		          "(MLOG_MAX_EVENT_JSON_BYTES: one request of the ingest API)",
		          jl, MLOG_MAX_EVENT_JSON_BYTES);
		return -E2BIG;
	}
	return 0;
}

struct mlog_result mlog_client_send(struct mlog_client *c, const struct mlog_opts *opts,
                                    const char *message, size_t len)
{
	struct mlog_result r = {0};
	static const struct mlog_opts none = {0};
	if (!opts)
		opts = &none;
	if (!c || !message) {
		set_error(&r, "no client or no message");
		return r;
	}
	int sev = to_spool_severity(opts->severity);
	if (sev < 0) {
		set_error(&r, "severity %d is not MLOG_DEBUG to MLOG_FATAL", (int)opts->severity);
		return r;
	}
	if (opts->ttl_seconds < 0) {
		set_error(&r, "ttl_seconds must be > 0 (or 0 for none), got %lld",
		          (long long)opts->ttl_seconds);
		return r;
	}
	if (len > MLOG_MAX_MESSAGE_BYTES) {
		set_error(&r, "message is %zu bytes; the limit is %zu bytes (MLOG_MAX_MESSAGE_BYTES)",
		          len, MLOG_MAX_MESSAGE_BYTES);
		return r;
	}
	size_t ntyped = opts->metadata ? opts->nmetadata : 0;
	struct spool_kv small_kv[16], *typed = small_kv;
	if (ntyped > sizeof(small_kv) / sizeof(small_kv[0]) &&
	    !(typed = calloc(ntyped, sizeof(*typed)))) {
		set_error(&r, "out of memory");
		return r;
	}
	mlog_kv_to_spool(opts->metadata, ntyped, typed);
	/* the encoded event: on the stack unless large (no malloc per event) */
	char ev_storage[2048];
	struct spool_buf raw = {0}, ev;
	spool_buf_init_with(&ev, ev_storage, sizeof(ev_storage));
	size_t nraw = 0;
	char block_name[256] = ""; /* the binding's block, when set: copied, as it may change */
	pthread_mutex_lock(&c->mu);
	int brc = 0;
	if (c->block_name) {
		snprintf(block_name, sizeof(block_name), "%s", c->block_name);
		brc = spool_buf_append(&raw, c->block.data, c->block.len);
	}
	pthread_mutex_unlock(&c->mu);
	if (brc) {
		set_error(&r, "out of memory");
		goto out;
	}
	if (block_name[0]) {
		nraw = 1;
		for (size_t i = 0; i < ntyped; i++)
			if (typed[i].key && strcmp(typed[i].key, block_name) == 0) {
				set_error(
				    &r,
				    "metadata[%zu]: the key '%.60s' is the client's own block "
				    "(mlog_client_set_block)",
				    i, block_name);
				goto out;
			}
	}
	if (mlog_metadata_check(typed, ntyped, r.error, sizeof(r.error)) != 0)
		goto out;
	size_t njson = 0;
	if (opts->metadata_json &&
	    mlog_metadata_from_json_ex(opts->metadata_json, typed, ntyped,
	                               block_name[0] ? block_name : NULL, &raw, &njson, r.error,
	                               sizeof(r.error)) != 0)
		goto out;
	nraw += njson;
	struct spool_event e = {
	    .message = message,
	    .message_len = len,
	    .severity = sev,
	    .title = opts->title,
	    .tags = opts->tags,
	    .ttl_seconds = opts->ttl_seconds,
	    .metadata = typed,
	    .nmetadata = ntyped,
	    .no_client_block = block_name[0] != '\0',
	    .fqdn = block_name[0] ? NULL : mlog_fqdn(),
	    .metadata_raw = raw.data,
	    .metadata_raw_len = raw.len,
	    .metadata_raw_count = nraw,
	};
	int rc = spool_event_encode(&e, &ev, r.event_id);
	if (rc) {
		set_error(&r, "cannot build the event: %s",
		          rc == -EINVAL ? "bad argument" : spool_strerror(rc));
		goto out;
	}
	/* the same limits whichever way the event goes */
	if (check_event_size(&ev, &r) != 0)
		goto out;
	if (!c->set.async_mode) {
		pthread_mutex_lock(&c->mu);
		client_after_fork(c);
		char err[MLOG_TEXT_MAX] = "";
		if (!c->direct)
			mlog_direct_new(&c->set, &c->direct, err, sizeof(err));
		struct mlog_direct *d = c->direct;
		pthread_mutex_unlock(&c->mu);
		char why[2 * MLOG_TEXT_MAX];
		if (d) {
			char cid[MLOG_EVENT_ID_MAX];
			memcpy(cid, r.event_id, sizeof(cid));
			r.event_id[0] = '\0';
			enum mlog_direct_outcome o = mlog_direct_send(d, ev.data, ev.len, &r);
			if (o == MLOG_DIRECT_ACCEPTED) {
				r.ok = r.accepted = true;
				if (!r.event_id[0]) /* a 2xx without an id */
					memcpy(r.event_id, cid, sizeof(cid));
				goto out;
			}
			if (o == MLOG_DIRECT_REJECTED) {
				r.ok = r.accepted = false;
				memcpy(r.event_id, cid, sizeof(cid));
				goto out;
			}
			memcpy(r.event_id, cid, sizeof(cid));
			snprintf(why, sizeof(why), "%s", r.error);
		} else {
			snprintf(why, sizeof(why), "%s", err);
		}
		/* not taken now: the spool keeps it for the agent */
		client_spool(c, &ev, sev, &r);
		if (r.ok)
			set_error(&r, "not sent directly (%s): spooled for later delivery",
			          why);
		else
			set_error(&r, "not sent directly (%s) and not spooled: %s", why,
			          r.error);
		goto out;
	}
	client_spool(c, &ev, sev, &r);
out:
	if (typed != small_kv)
		free(typed);
	spool_buf_free(&raw);
	spool_buf_free(&ev);
	return r;
}

struct mlog_result mlog_client_vlog(struct mlog_client *c, const struct mlog_opts *opts,
                                    const char *fmt, va_list ap)
{
	char small[1024];
	struct mlog_result r = {0};
	if (!fmt) {
		set_error(&r, "no format");
		return r;
	}
	va_list aq;
	va_copy(aq, ap);
	int n = vsnprintf(small, sizeof(small), fmt, aq);
	va_end(aq);
	if (n < 0) {
		set_error(&r, "bad format");
		return r;
	}
	if ((size_t)n < sizeof(small))
		return mlog_client_send(c, opts, small, (size_t)n);
	if ((size_t)n > MLOG_MAX_MESSAGE_BYTES) { /* refused before formatting it */
		set_error(&r, "message is %zu bytes; the limit is %zu bytes (MLOG_MAX_MESSAGE_BYTES)",
		          (size_t)n, MLOG_MAX_MESSAGE_BYTES);
		return r;
	}
	char *big = malloc((size_t)n + 1);
	if (!big) {
		set_error(&r, "out of memory");
		return r;
	}
	vsnprintf(big, (size_t)n + 1, fmt, ap);
	r = mlog_client_send(c, opts, big, (size_t)n);
	free(big);
	return r;
}

struct mlog_result mlog_client_log(struct mlog_client *c, const struct mlog_opts *opts,
                                   const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	struct mlog_result r = mlog_client_vlog(c, opts, fmt, ap);
	va_end(ap);
	return r;
}

#define CLIENT_SEVERITY(fn, sev)                                                                   \
	struct mlog_result fn(struct mlog_client *c, const char *fmt, ...)                         \
	{                                                                                          \
		va_list ap;                                                                        \
		va_start(ap, fmt);                                                                 \
		struct mlog_result r =                                                             \
		    mlog_client_vlog(c, &(struct mlog_opts){.severity = sev}, fmt, ap);            \
		va_end(ap);                                                                        \
		return r;                                                                          \
	}

CLIENT_SEVERITY(mlog_client_debug, MLOG_DEBUG)
CLIENT_SEVERITY(mlog_client_info, MLOG_INFO)
CLIENT_SEVERITY(mlog_client_warn, MLOG_WARN)
CLIENT_SEVERITY(mlog_client_error, MLOG_ERROR)
CLIENT_SEVERITY(mlog_client_fatal, MLOG_FATAL)

/* Pending records with seq <= last (counted up to a cap). */
static uint64_t pending_upto(struct spool *s, uint64_t last, bool *more)
{
	struct spool_batch *b = NULL;
	*more = false;
	if (spool_read_batch(s, 0, 10000, 0, &b) != 0)
		return 0;
	uint64_t n = 0;
	const struct spool_record *rec = spool_batch_records(b);
	for (size_t i = 0; i < spool_batch_count(b); i++)
		n += rec[i].seq <= last;
	*more = spool_batch_count(b) == 10000 && rec[9999].seq <= last;
	spool_batch_release(b);
	return n;
}

/* Waits until the spool's head is past last, or until deadline.  true when
 * it is. */
static bool wait_head(struct spool *s, uint64_t last, double deadline, int *rc)
{
	for (;;) {
		struct spool_batch *b = NULL;
		*rc = spool_read_batch(s, 0, 1, 0, &b);
		if (*rc)
			return false;
		bool done = spool_batch_count(b) == 0 || spool_batch_records(b)[0].seq > last;
		spool_batch_release(b);
		if (done)
			return true;
		double left = deadline - mono_now();
		if (left <= 0)
			return false;
		sleep_for(left < FLUSH_POLL ? left : FLUSH_POLL);
	}
}

/* Why no agent runs, for an error. */
static void no_agent_reason(struct mlog_client *c, char *buf, size_t len)
{
	pthread_mutex_lock(&c->mu);
	if (!c->set.endpoint_root)
		snprintf(buf, len, "no spool-agent runs, and none is started: no endpoint is set");
	else if (!c->set.spawn_agent)
		snprintf(buf, len, "no spool-agent runs, and none is started: spawn_agent is off");
	else if (c->spawn_error[0])
		snprintf(buf, len, "no spool-agent runs: %s", c->spawn_error);
	else
		snprintf(buf, len, "no spool-agent runs");
	pthread_mutex_unlock(&c->mu);
}

/* The msgpack map entry `key` of o, or NULL. */
static const msgpack_object *map_get(const msgpack_object *o, const char *key)
{
	if (o->type != MSGPACK_OBJECT_MAP)
		return NULL;
	size_t kl = strlen(key);
	for (uint32_t i = 0; i < o->via.map.size; i++) {
		const msgpack_object_kv *kv = &o->via.map.ptr[i];
		if (kv->key.type == MSGPACK_OBJECT_STR && kv->key.via.str.size == kl &&
		    memcmp(kv->key.via.str.ptr, key, kl) == 0)
			return &kv->val;
	}
	return NULL;
}

/* Whether a stored event was logged by this process: the pid in its client
 * block, metadata.c_client or the binding's (block, from
 * mlog_client_set_block(); no other process of the host has the pid while
 * this one lives). */
static bool event_is_ours(const void *data, size_t len, const char *block)
{
	msgpack_unpacked u;
	msgpack_unpacked_init(&u);
	bool ours = false;
	if (msgpack_unpack_next(&u, data, len, NULL) == MSGPACK_UNPACK_SUCCESS) {
		const msgpack_object *m = map_get(&u.data, "metadata");
		const msgpack_object *cc = m ? map_get(m, block) : NULL;
		const msgpack_object *pid = cc ? map_get(cc, "pid") : NULL;
		ours = pid && pid->type == MSGPACK_OBJECT_POSITIVE_INTEGER &&
		       pid->via.u64 == (uint64_t)getpid();
	}
	msgpack_unpacked_destroy(&u);
	return ours;
}

/* After a flush saw everything up to `last` leave the queue: the events of
 * this process among them that were dead-lettered (rejected for good)
 * rather than accepted.  None: r->ok.  Some: not ok, their number in
 * r->dead_lettered and a sentence with the last one's status and reason. */
static void count_dead(struct mlog_client *c, struct spool *s, uint64_t last, struct mlog_result *r)
{
	pthread_mutex_lock(&c->mu);
	uint64_t after = c->dead_after;
	char block[256];
	snprintf(block, sizeof(block), "%s", c->block_name ? c->block_name : "c_client");
	pthread_mutex_unlock(&c->mu);
	uint64_t n = 0;
	int status = 0;
	char reason[MLOG_TEXT_MAX] = "";
	while (after < last) {
		struct spool_batch *b = NULL;
		if (spool_read_dead(s, after, 1000, &b) != 0)
			break;
		size_t cnt = spool_batch_count(b);
		const struct spool_record *rec = spool_batch_records(b);
		for (size_t i = 0; i < cnt && rec[i].seq <= last; i++) {
			if (event_is_ours(rec[i].data, rec[i].len, block)) {
				n++;
				status = rec[i].dead_status;
				snprintf(reason, sizeof(reason), "%s", rec[i].dead_reason ? rec[i].dead_reason : "");
			}
		}
		uint64_t top = cnt ? rec[cnt - 1].seq : last;
		spool_batch_release(b);
		if (cnt == 0 || top >= last)
			break;
		after = top;
	}
	pthread_mutex_lock(&c->mu);
	if (last > c->dead_after)
		c->dead_after = last;
	pthread_mutex_unlock(&c->mu);
	if (n == 0) {
		r->ok = true;
		return;
	}
	r->dead_lettered = n > UINT16_MAX ? UINT16_MAX : (uint16_t)n;
	set_error(r,
	          "flush: %llu event%s of this process %s rejected by the server for good and "
	          "dead-lettered (the last: %d %s); see spoolctl dead list",
	          (unsigned long long)n, n == 1 ? "" : "s", n == 1 ? "was" : "were", status,
	          reason[0] ? reason : "no reason given");
}

struct mlog_result mlog_client_flush(struct mlog_client *c, double timeout_seconds)
{
	struct mlog_result r = {0};
	if (!c) {
		set_error(&r, "no client");
		return r;
	}
	double timeout = timeout_seconds > 0 ? timeout_seconds : 0;
	double deadline = mono_now() + timeout;
	pthread_mutex_lock(&c->mu);
	client_after_fork(c);
	struct spool *s = c->s;
	pthread_mutex_unlock(&c->mu);
	if (!s) { /* nothing logged through the spool by this process */
		r.ok = true;
		return r;
	}
	uint64_t last = 0;
	int rc = spool_sync(s, timeout, &last);
	if (rc) {
		set_error(&r, "committing the staged events: %s", spool_strerror(rc));
		return r;
	}
	if (last == 0) {
		r.ok = true;
		return r;
	}
	bool more;
	char why[2 * MLOG_TEXT_MAX];
	/* an explicit flush tries to start an agent even after a failure */
	double left = deadline - mono_now();
	enum signal_result sr = client_signal(
	    c, s, true, left < MLOG_SPAWN_WAIT_SECONDS ? left : MLOG_SPAWN_WAIT_SECONDS);
	if (sr == SIGNAL_FAILED && spool_agent_running(s, NULL) != 1) {
		/* nobody will send them: say so now, not after the timeout */
		uint64_t n = pending_upto(s, last, &more);
		no_agent_reason(c, why, sizeof(why));
		if (n > 0 || more) {
			set_error(&r, "flush failed: %s%llu events pending; %s",
			          more ? "at least " : "", (unsigned long long)n, why);
			return r;
		}
	}
	if (wait_head(s, last, deadline, &rc)) {
		count_dead(c, s, last, &r);
		return r;
	}
	if (rc) {
		set_error(&r, "reading the spool: %s", spool_strerror(rc));
		return r;
	}
	uint64_t n = pending_upto(s, last, &more);
	if (spool_agent_running(s, NULL) == 1) {
		size_t len = sizeof(why) - 1;
		if (spool_meta_get(s, "agent.last_error", why, &len) == 0)
			why[len] = '\0';
		else
			why[0] = '\0';
	} else {
		no_agent_reason(c, why, sizeof(why));
	}
	set_error(&r, "flush timed out after %g s: %s%llu events still pending%s%s",
	          timeout_seconds, more ? "at least " : "", (unsigned long long)n,
	          why[0] ? "; " : "", why);
	return r;
}

/* The end of a client: commits what is staged, wakes the agent (starting
 * one when none runs and one may be started) and, only when an agent runs,
 * waits at most `bound` seconds in all for it to acknowledge what this
 * process logged; then closes the spool.  Nothing here sends or waits on a
 * network call.  At process exit (`exiting`) the direct-send connection is
 * kept as it is rather than torn down: the host's libraries (OpenSSL's
 * exit handler) may have been cleaned up already. */
static void client_shutdown(struct mlog_client *c, double bound, bool exiting)
{
	double deadline = mono_now() + bound;
	pthread_mutex_lock(&c->mu);
	client_after_fork(c);
	struct mlog_direct *d = c->direct;
	struct spool *s = c->s;
	c->direct = NULL;
	c->s = NULL;
	pthread_mutex_unlock(&c->mu);
	uint64_t last = 0;
	if (s && spool_sync(s, bound > 0.1 ? bound : 0.1, &last) == 0 && last > 0 &&
	    client_signal(c, s, false, deadline - mono_now()) == SIGNAL_RUNS) {
		int rc;
		wait_head(s, last, deadline, &rc);
	}
	if (exiting)
		keep_direct(d);
	else
		mlog_direct_free(d);
	spool_close(s);
}

static void client_end(struct mlog_client *c, double bound, bool exiting)
{
	client_shutdown(c, bound, exiting);
	pthread_mutex_lock(&list_mu);
	if (c->prev)
		c->prev->next = c->next;
	else
		list_head = c->next;
	if (c->next)
		c->next->prev = c->prev;
	pthread_mutex_unlock(&list_mu);
	mlog_settings_free(&c->set);
	free(c->block_name);
	spool_buf_free(&c->block);
	pthread_mutex_destroy(&c->mu);
	free(c);
}

void mlog_client_free(struct mlog_client *c)
{
	if (c)
		client_end(c, MLOG_EXIT_WAIT_SECONDS, false);
}

/* ---- the process-wide client ---- */

/* At exit, another thread may still be inside a call (a long flush, a
 * direct send): wait a little for it, within the exit's bound, then leave
 * the process-wide client alone (what it spooled is on disk or in its ring,
 * whatever the mode but buffered promises). */
static void at_exit(void)
{
	double deadline = mono_now() + MLOG_EXIT_WAIT_SECONDS;
	for (;;) {
		if (pthread_rwlock_trywrlock(&g_lock) == 0) {
			struct mlog_client *c = g_client;
			g_client = NULL;
			pthread_rwlock_unlock(&g_lock);
			if (c)
				client_end(c, deadline - mono_now(), true);
			return;
		}
		if (mono_now() >= deadline)
			return;
		sleep_for(0.01);
	}
}

static void install_atexit(void)
{
	atexit(at_exit);
}

/* Takes g_lock for reading with g_client made; NULL (lock not held) with
 * r->error set when the settings are bad. */
static struct mlog_client *global_get(struct mlog_result *r)
{
	for (;;) {
		pthread_rwlock_rdlock(&g_lock);
		if (g_client)
			return g_client;
		pthread_rwlock_unlock(&g_lock);
		pthread_rwlock_wrlock(&g_lock);
		if (!g_client) {
			struct mlog_settings set;
			int rc = g_configured ? mlog_settings_copy(&g_settings, &set)
			                      : mlog_settings_resolve(NULL, &set, r->error,
			                                              sizeof(r->error));
			if (rc == 0 && !(g_client = client_alloc(&set)))
				rc = -ENOMEM;
			if (rc) {
				mlog_settings_free(&set);
				if (!r->error[0])
					set_error(r, "out of memory");
				pthread_rwlock_unlock(&g_lock);
				return NULL;
			}
			g_client->is_global = true;
			pthread_once(&atexit_once, install_atexit);
		}
		pthread_rwlock_unlock(&g_lock);
	}
}

int mlog_configure(const struct mlog_config *cfg)
{
	return mlog_configure_ex(cfg, NULL, 0);
}

int mlog_configure_ex(const struct mlog_config *cfg, char *err, size_t errlen)
{
	char e[MLOG_TEXT_MAX];
	struct mlog_settings set;
	int rc = mlog_settings_resolve(cfg, &set, e, sizeof(e));
	if (rc) {
		if (err && errlen)
			snprintf(err, errlen, "%s", e);
		return rc;
	}
	pthread_rwlock_wrlock(&g_lock);
	struct mlog_client *old = g_client;
	g_client = NULL;
	mlog_settings_free(&g_settings);
	g_settings = set;
	g_configured = true;
	pthread_rwlock_unlock(&g_lock);
	mlog_client_free(old);
	return 0;
}

void mlog_shutdown(void)
{
	pthread_rwlock_wrlock(&g_lock);
	struct mlog_client *c = g_client;
	g_client = NULL;
	pthread_rwlock_unlock(&g_lock);
	mlog_client_free(c);
}

struct mlog_result mlog_ex_v(const struct mlog_opts *opts, const char *fmt, va_list ap)
{
	struct mlog_result r = {0};
	struct mlog_client *c = global_get(&r);
	if (!c)
		return r;
	r = mlog_client_vlog(c, opts, fmt, ap);
	pthread_rwlock_unlock(&g_lock);
	return r;
}

struct mlog_result mlog_v(enum mlog_severity sev, const char *fmt, va_list ap)
{
	return mlog_ex_v(&(struct mlog_opts){.severity = sev}, fmt, ap);
}

struct mlog_result mlog_ex(const struct mlog_opts *opts, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	struct mlog_result r = mlog_ex_v(opts, fmt, ap);
	va_end(ap);
	return r;
}

#define GLOBAL_SEVERITY(fn, sev)                                                                   \
	struct mlog_result fn(const char *fmt, ...)                                                \
	{                                                                                          \
		va_list ap;                                                                        \
		va_start(ap, fmt);                                                                 \
		struct mlog_result r = mlog_v(sev, fmt, ap);                                       \
		va_end(ap);                                                                        \
		return r;                                                                          \
	}

GLOBAL_SEVERITY(mlog, MLOG_INFO)
GLOBAL_SEVERITY(mlog_debug, MLOG_DEBUG)
GLOBAL_SEVERITY(mlog_info, MLOG_INFO)
GLOBAL_SEVERITY(mlog_warn, MLOG_WARN)
GLOBAL_SEVERITY(mlog_error, MLOG_ERROR)
GLOBAL_SEVERITY(mlog_fatal, MLOG_FATAL)

struct mlog_result mlog_flush(double timeout_seconds)
{
	struct mlog_result r = {0};
	pthread_rwlock_rdlock(&g_lock);
	if (!g_client) { /* nothing logged yet */
		pthread_rwlock_unlock(&g_lock);
		r.ok = true;
		return r;
	}
	r = mlog_client_flush(g_client, timeout_seconds);
	pthread_rwlock_unlock(&g_lock);
	return r;
}
