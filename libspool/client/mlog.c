/* mlog.c — the Master Log client API (spool/mlog.h): client objects, the
 * process-wide client, async spooling with wake-ups and backpressure, the
 * direct send with its fall-back to the spool, flush, fork and exit. */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <spool/mlog.h>
#include <spool/spool.h>

#include "mlog_event.h"
#include "mlog_internal.h"

#define BACKPRESSURE_REFRESH 0.1  /* seconds between reads of the backlog */
#define FLUSH_POLL           0.01 /* seconds between looks at the spool's head */
#define EXIT_FLUSH_SECONDS   2.0  /* best-effort flush at exit with the embedded sender */
#define SENDER_RETRY         10.0 /* seconds between attempts to start a sender that failed */

struct mlog_client {
	struct mlog_client *prev, *next; /* every client, for fork() */
	pthread_mutex_t mu;              /* held briefly, never across a send or a wait */
	struct mlog_settings set;
	pid_t pid; /* the process that owns s, direct and sender */
	struct spool *s;
	struct mlog_direct *direct;
	struct mlog_sender *sender;
	double sender_retry;               /* monotonic: no new start attempt before */
	char sender_error[MLOG_ERROR_MAX]; /* why the last start failed */
	uint64_t logged;                   /* events spooled by this handle */
	double bp_checked;
	double bp_spe;
	uint64_t bp_pending;
	bool is_global;
};

/* ---- the client list and fork() ---- */

static pthread_mutex_t list_mu = PTHREAD_MUTEX_INITIALIZER;
static struct mlog_client *list_head;
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

/* the process-wide client */
static pthread_rwlock_t g_lock = PTHREAD_RWLOCK_INITIALIZER;
static struct mlog_client *g_client;
static struct mlog_settings g_settings; /* from mlog_configure() */
static bool g_configured;
static pthread_once_t atexit_once = PTHREAD_ONCE_INIT;

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
 * parent (spool handle, connection, sender thread) is dropped at the
 * client's next call, seeing the pid change. */
static void fork_child(void)
{
	pthread_mutex_t fresh = PTHREAD_MUTEX_INITIALIZER;
	pthread_rwlock_t fresh_rw = PTHREAD_RWLOCK_INITIALIZER;
	for (struct mlog_client *c = list_head; c; c = c->next)
		c->mu = fresh;
	list_mu = fresh;
	g_lock = fresh_rw;
}

static void install_atfork(void)
{
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

static void set_error(struct mlog_result *r, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void set_error(struct mlog_result *r, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(r->error, sizeof(r->error), fmt, ap);
	va_end(ap);
}

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
	c->pid = getpid();
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
	char e[MLOG_ERROR_MAX];
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

/* In a child after fork(): forget the parent's handle, connection and
 * sender.  The spool handle only frees memory in a child; the connection
 * and the sender are left alone (closing a TLS connection the parent still
 * uses would write to it).  Called with c->mu held. */
static void client_after_fork(struct mlog_client *c)
{
	pid_t me = getpid();
	if (c->pid == me)
		return;
	spool_close(c->s); /* SPOOL_EFORKED handle: frees memory only */
	c->s = NULL;
	c->direct = NULL;
	c->sender = NULL;
	c->logged = 0;
	c->bp_checked = 0;
	c->pid = me;
}

/* Opens the spool if needed.  Called with c->mu held. */
static int client_open(struct mlog_client *c, struct mlog_result *r)
{
	if (c->s)
		return 0;
	struct spool_options so;
	spool_options_init(&so);
	so.durability = c->set.durability;
	so.max_events = (uint64_t)c->set.max_queue_size;
	so.max_bytes = c->set.max_spool_bytes;
	so.full_policy = c->set.drop_when_full ? SPOOL_FULL_DROP : SPOOL_FULL_BLOCK;
	so.full_timeout_seconds = c->set.queue_timeout;
	so.flush_interval_seconds = c->set.flush_interval;
	so.flush_batch = (uint32_t)c->set.batch_size;
	char err[MLOG_ERROR_MAX];
	int rc = spool_open(c->set.spool_dir, &so, &c->s, err, sizeof(err));
	if (rc) {
		set_error(r, "%s", err);
		return rc;
	}
	return 0;
}

/* Starts the embedded sender when it is wanted and no agent holds the
 * spool's lock.  Called with c->mu held and c->s open. */
static void client_maybe_send(struct mlog_client *c)
{
	/* (with async_mode false the spool only holds what a direct send could
	 * not deliver: the sender starts once such an event is spooled) */
	if (c->sender || !c->set.embedded_sender || !c->set.endpoint_root)
		return;
	if (mono_now() < c->sender_retry)
		return;
	if (spool_agent_running(c->s, NULL) != 0)
		return; /* an agent (or some other sender) drains it */
	int rc = mlog_sender_start(&c->set, &c->sender, c->sender_error, sizeof(c->sender_error));
	if (rc && rc != SPOOL_ELOCKED)
		c->sender_retry = mono_now() + SENDER_RETRY; /* e.g. no transport plugins */
	else if (rc == 0)
		c->sender_error[0] = '\0';
}

static void client_wake(struct mlog_client *c)
{
	spool_wake_agent(c->set.spool_dir);
	pthread_mutex_lock(&c->mu);
	client_maybe_send(c);
	mlog_sender_wake(c->sender);
	pthread_mutex_unlock(&c->mu);
}

/* The agent's send time per event when the backlog is above batch_size,
 * capped; 0 otherwise. */
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
		uint64_t pending = spool_stats(s, &st) == 0 ? st.pending : 0;
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
		c->bp_pending = pending;
		c->bp_spe = spe;
		pthread_mutex_unlock(&c->mu);
	}
	pthread_mutex_lock(&c->mu);
	double sleep = c->bp_pending > (uint64_t)c->set.batch_size ? c->bp_spe : 0;
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
	bool opening = c->s == NULL;
	int rc = client_open(c, r);
	struct spool *s = c->s;
	if (rc == 0 && opening) /* later: at each batch's wake-up and at flush */
		client_maybe_send(c);
	pthread_mutex_unlock(&c->mu);
	if (rc) {
		r->ok = r->queued = r->accepted = false;
		return;
	}
	rc = spool_append(s, severity, ev->data, ev->len);
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
	pthread_mutex_lock(&c->mu);
	bool wake = ++c->logged % (uint64_t)c->set.batch_size == 0;
	pthread_mutex_unlock(&c->mu);
	if (wake)
		client_wake(c);
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
	struct spool_options so;
	spool_options_init(&so); /* the client keeps the spool's default */
	if (ev->len > so.max_record_bytes) {
		set_error(r,
		          "event is %zu bytes encoded; the limit is %zu bytes per event (the spool's "
		          "max_record_bytes: message, title, tags and metadata together)",
		          ev->len, so.max_record_bytes);
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
	struct spool_buf raw = {0}, ev = {0};
	size_t nraw = 0;
	if (mlog_metadata_check(typed, ntyped, r.error, sizeof(r.error)) != 0)
		goto out;
	if (opts->metadata_json &&
	    mlog_metadata_from_json(opts->metadata_json, typed, ntyped, &raw, &nraw, r.error,
	                            sizeof(r.error)) != 0)
		goto out;
	struct spool_event e = {
	    .message = message,
	    .message_len = len,
	    .severity = sev,
	    .title = opts->title,
	    .tags = opts->tags,
	    .ttl_seconds = opts->ttl_seconds,
	    .metadata = typed,
	    .nmetadata = ntyped,
	    .fqdn = mlog_fqdn(),
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
		char err[MLOG_ERROR_MAX] = "";
		if (!c->direct)
			mlog_direct_new(&c->set, &c->direct, err, sizeof(err));
		struct mlog_direct *d = c->direct;
		pthread_mutex_unlock(&c->mu);
		char why[MLOG_ERROR_MAX];
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
		/* not taken now: the spool keeps it for a sender */
		client_spool(c, &ev, sev, &r);
		if (r.ok)
			set_error(&r, "not sent directly (%.150s): spooled for later delivery",
			          why);
		else
			set_error(&r, "not sent directly (%.100s) and not spooled: %.120s", why,
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

struct mlog_result mlog_client_flush(struct mlog_client *c, double timeout_seconds)
{
	struct mlog_result r = {0};
	if (!c) {
		set_error(&r, "no client");
		return r;
	}
	double deadline = mono_now() + (timeout_seconds > 0 ? timeout_seconds : 0);
	pthread_mutex_lock(&c->mu);
	client_after_fork(c);
	struct spool *s = c->s;
	if (s)
		client_maybe_send(c);
	pthread_mutex_unlock(&c->mu);
	if (!s) { /* nothing logged through the spool by this process */
		r.ok = true;
		return r;
	}
	uint64_t last = 0;
	int rc = spool_sync(s, timeout_seconds > 0 ? timeout_seconds : 0, &last);
	if (rc) {
		set_error(&r, "committing the staged events: %s", spool_strerror(rc));
		return r;
	}
	if (last == 0) {
		r.ok = true;
		return r;
	}
	client_wake(c);
	for (;;) {
		struct spool_batch *b = NULL;
		rc = spool_read_batch(s, 0, 1, 0, &b);
		if (rc) {
			set_error(&r, "reading the spool: %s", spool_strerror(rc));
			return r;
		}
		bool done = spool_batch_count(b) == 0 || spool_batch_records(b)[0].seq > last;
		spool_batch_release(b);
		if (done) {
			r.ok = true;
			return r;
		}
		double left = deadline - mono_now();
		if (left <= 0)
			break;
		sleep_for(left < FLUSH_POLL ? left : FLUSH_POLL);
	}
	bool more;
	uint64_t n = pending_upto(s, last, &more);
	long pid = 0;
	char why[200] = "";
	if (spool_agent_running(s, &pid) == 1) {
		pthread_mutex_lock(&c->mu);
		if (c->sender)
			mlog_sender_last_error(c->sender, why, sizeof(why));
		pthread_mutex_unlock(&c->mu);
		if (!why[0]) {
			size_t len = sizeof(why) - 1;
			if (spool_meta_get(s, "agent.last_error", why, &len) == 0)
				why[len] = '\0';
			else
				why[0] = '\0';
		}
	} else {
		pthread_mutex_lock(&c->mu);
		snprintf(why, sizeof(why), "no sender: no spool-agent runs%s%.120s",
		         !c->set.endpoint_root ? " and no endpoint is set for the embedded sender"
		         : !c->set.embedded_sender ? " and the embedded sender is off"
		         : c->sender_error[0]      ? "; the embedded sender did not start: "
		                                   : "",
		         c->set.endpoint_root && c->set.embedded_sender ? c->sender_error : "");
		pthread_mutex_unlock(&c->mu);
	}
	set_error(&r, "flush timed out after %g s: %s%llu events still pending%s%.150s",
	          timeout_seconds, more ? "at least " : "", (unsigned long long)n,
	          why[0] ? "; " : "", why);
	return r;
}

/* Best-effort end: commit what is staged, give the embedded sender a short
 * while to deliver, stop it, close the spool. */
static void client_shutdown(struct mlog_client *c)
{
	pthread_mutex_lock(&c->mu);
	client_after_fork(c);
	bool sending = c->sender != NULL;
	pthread_mutex_unlock(&c->mu);
	if (sending)
		mlog_client_flush(c, EXIT_FLUSH_SECONDS);
	pthread_mutex_lock(&c->mu);
	struct mlog_sender *snd = c->sender;
	struct mlog_direct *d = c->direct;
	struct spool *s = c->s;
	c->sender = NULL;
	c->direct = NULL;
	c->s = NULL;
	pthread_mutex_unlock(&c->mu);
	mlog_sender_stop(snd);
	mlog_direct_free(d);
	spool_close(s);
}

void mlog_client_free(struct mlog_client *c)
{
	if (!c)
		return;
	client_shutdown(c);
	pthread_mutex_lock(&list_mu);
	if (c->prev)
		c->prev->next = c->next;
	else
		list_head = c->next;
	if (c->next)
		c->next->prev = c->prev;
	pthread_mutex_unlock(&list_mu);
	mlog_settings_free(&c->set);
	pthread_mutex_destroy(&c->mu);
	free(c);
}

/* ---- the process-wide client ---- */

/* At exit, another thread may still be inside a call (a long flush, a
 * direct send): wait a little for it, then leave the process-wide client
 * alone (what it spooled is on disk or in its ring, whatever the mode but
 * buffered promises). */
static void at_exit(void)
{
	for (int i = 0; i < 100; i++) {
		if (pthread_rwlock_trywrlock(&g_lock) == 0) {
			struct mlog_client *c = g_client;
			g_client = NULL;
			pthread_rwlock_unlock(&g_lock);
			mlog_client_free(c);
			return;
		}
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
	char e[MLOG_ERROR_MAX];
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
