/* mlog_stdin.c — `mlog -` (without --sync): standard input read in large
 * chunks and split into lines, each line made an event from a template
 * (mlog_template.h), and every line read so far appended as one group in
 * one synced LMDB transaction (spool_append_many() in sync mode) before
 * anything more is read.  The promise is in mlog_stdin.h.
 *
 * The options are checked and converted by the client library's own code
 * (libspool/client/mlog_event.c and mlog_config.c, compiled into mlog), so
 * a line becomes the event mlog_client_send() would have made of it, and
 * is refused for the same reasons with the same words. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "mlog_event.h"
#include "mlog_internal.h"
#include "mlog_stdin.h"
#include "mlog_template.h"

#define READ_CHUNK      ((size_t)1 << 20) /* bytes asked of one read() */
#define PIPE_BYTES      (1 << 20)         /* the capacity asked for a pipe on standard input */
#define GROUP_MAX_BYTES ((size_t)8 << 20) /* a group is committed at this many event bytes */

/* The events read and not yet committed. */
struct group {
	struct spool_buf events; /* encoded back to back */
	size_t *end;             /* end[i]: the offset just past event i */
	size_t *line;            /* line[i]: its line number */
	struct spool_input *in;  /* filled at commit */
	size_t n, cap;
};

struct run {
	int fd;
	const struct mlog_settings *set;
	struct spool *s;
	size_t max_record_bytes;
	int severity;
	struct spool_event ev; /* the options, as the codec takes them */
	struct event_template tmpl;
	struct group g;
	char *buf;       /* READ_CHUNK + MLOG_MAX_MESSAGE_BYTES bytes */
	size_t have;     /* a line not ended yet at buf[0, have) */
	bool skipping;   /* that line is over the limit: passed over, counted */
	size_t skip_len; /* its bytes so far */
	size_t lineno;   /* lines met so far */
	int status;
};

static void refuse(struct run *r, size_t line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Names a line that is not logged on standard error. */
static void refuse(struct run *r, size_t line, const char *fmt, ...)
{
	char why[MLOG_ERROR_MAX + 64];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	fprintf(stderr, "mlog: line %zu: event not logged: %s\n", line, why);
	r->status = 1;
}

static void refuse_too_long(struct run *r, size_t line, size_t len)
{
	refuse(r, line, "message is %zu bytes; the limit is %zu bytes (MLOG_MAX_MESSAGE_BYTES)",
	       len, MLOG_MAX_MESSAGE_BYTES);
}

static int64_t now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* The limits mlog_client_send() puts on an encoded event: the spool's
 * record limit, and one request of the ingest API as JSON.  true when
 * ev[0, len) is within them; false with the reason in why. */
static bool event_fits(const struct run *r, const char *ev, size_t len, char *why, size_t wlen)
{
	if (len > r->max_record_bytes) {
		snprintf(
		    why, wlen,
		    "event is %zu bytes encoded; the limit is %zu bytes per event (the spool's "
		    "max_record_bytes: message, title, tags and metadata together)",
		    len, r->max_record_bytes);
		return false;
	}
	/* a byte of the record becomes at most 6 of JSON (\u00XX): only large
	 * events need to be measured */
	if (len <= (MLOG_MAX_EVENT_JSON_BYTES - 64) / 6)
		return true;
	struct spool_buf js = {0};
	int rc = spool_event_to_json(ev, len, NULL, &js);
	size_t jl = js.len;
	spool_buf_free(&js);
	if (rc) {
		snprintf(why, wlen, "cannot encode the event as JSON: %s", spool_strerror(rc));
		return false;
	}
	if (jl > MLOG_MAX_EVENT_JSON_BYTES) {
		snprintf(why, wlen,
		         "event is %zu bytes as JSON; the limit is %zu bytes "
		         "(MLOG_MAX_EVENT_JSON_BYTES: one request of the ingest API)",
		         jl, MLOG_MAX_EVENT_JSON_BYTES);
		return false;
	}
	return true;
}

/* Why the spool refused events (the words of mlog_client_send()). */
static void spool_refusal(const struct run *r, int rc, size_t len, char *why, size_t wlen)
{
	if (rc == SPOOL_EFULL && r->set->drop_when_full)
		snprintf(why, wlen, "spool full: event dropped (drop_when_full)");
	else if (rc == SPOOL_EFULL)
		snprintf(why, wlen, "spool full: no room within queue_timeout_seconds %g",
		         r->set->queue_timeout);
	else if (rc == SPOOL_ETOOBIG)
		snprintf(why, wlen,
		         "event is %zu bytes encoded; the spool takes at most %llu bytes in all "
		         "(max_spool_bytes)",
		         len, (unsigned long long)r->set->max_spool_bytes);
	else
		snprintf(why, wlen, "event not spooled: %s", spool_strerror(rc));
}

static int group_push(struct group *g, size_t end, size_t line)
{
	if (g->n == g->cap) {
		size_t cap = g->cap ? 2 * g->cap : 1024;
		size_t *e = realloc(g->end, cap * sizeof(*e));
		if (e)
			g->end = e;
		size_t *l = realloc(g->line, cap * sizeof(*l));
		if (l)
			g->line = l;
		struct spool_input *in = realloc(g->in, cap * sizeof(*in));
		if (in)
			g->in = in;
		if (!e || !l || !in)
			return -ENOMEM;
		g->cap = cap;
	}
	g->end[g->n] = end;
	g->line[g->n] = line;
	g->n++;
	return 0;
}

static void group_free(struct group *g)
{
	spool_buf_free(&g->events);
	free(g->end);
	free(g->line);
	free(g->in);
}

/* Appends the group in one synced transaction, and wakes the agent.  A
 * group the spool refuses for want of room (full, or over max_spool_bytes
 * as a whole) is appended again line by line, so that each line is stored
 * or refused on its own, as one event would be. */
static void commit(struct run *r)
{
	struct group *g = &r->g;
	if (g->n == 0)
		return;
	for (size_t i = 0; i < g->n; i++) {
		size_t start = i ? g->end[i - 1] : 0;
		g->in[i] =
		    (struct spool_input){r->severity, g->events.data + start, g->end[i] - start};
	}
	int rc = spool_append_many(r->s, g->in, g->n);
	char why[MLOG_ERROR_MAX];
	if (rc == 0) {
		/* nothing */
	} else if ((rc == SPOOL_EFULL || rc == SPOOL_ETOOBIG) && g->n > 1) {
		for (size_t i = 0; i < g->n; i++) {
			int one = spool_append_many(r->s, &g->in[i], 1);
			if (one) {
				spool_refusal(r, one, g->in[i].len, why, sizeof(why));
				refuse(r, g->line[i], "%s", why);
			}
		}
	} else {
		spool_refusal(r, rc, g->in[0].len, why, sizeof(why));
		for (size_t i = 0; i < g->n; i++)
			refuse(r, g->line[i], "%s", why);
	}
	spool_wake_agent(spool_dir(r->s));
	g->n = 0;
	g->events.len = 0;
}

/* Makes line `line`, msg[0, len), an event of the group (or refuses it). */
static void add_line(struct run *r, const char *msg, size_t len, size_t line)
{
	if (len > MLOG_MAX_MESSAGE_BYTES) {
		refuse_too_long(r, line, len);
		return;
	}
	/* the host's canonical name, once resolved (in a thread of its
	 * own), joins the events of the groups after */
	if (r->g.n == 0 && !r->ev.fqdn && (r->ev.fqdn = mlog_fqdn()) != NULL) {
		struct event_template t;
		char err[MLOG_ERROR_MAX];
		if (event_template_build(&t, &r->ev, err, sizeof(err)) == 0) {
			event_template_free(&r->tmpl);
			r->tmpl = t;
		}
	}
	struct group *g = &r->g;
	size_t start = g->events.len;
	int rc = event_template_encode(&r->tmpl, msg, len, now_us(), &g->events);
	if (rc) {
		refuse(r, line, "cannot build the event: %s", spool_strerror(rc));
		return;
	}
	char why[MLOG_ERROR_MAX];
	if (!event_fits(r, g->events.data + start, g->events.len - start, why, sizeof(why))) {
		g->events.len = start;
		refuse(r, line, "%s", why);
		return;
	}
	if (group_push(g, g->events.len, line) != 0) {
		g->events.len = start;
		refuse(r, line, "out of memory");
	}
}

/* Takes the lines that ended in buf[0, have) into the group; keeps the
 * start of the next one, or passes over it when it is already too long. */
static void take_lines(struct run *r)
{
	size_t at = 0;
	for (;;) {
		const char *nl = memchr(r->buf + at, '\n', r->have - at);
		if (!nl)
			break;
		size_t len = (size_t)(nl - (r->buf + at));
		r->lineno++;
		if (r->skipping) {
			refuse_too_long(r, r->lineno, r->skip_len + len);
			r->skipping = false;
		} else {
			add_line(r, r->buf + at, len, r->lineno);
		}
		at += len + 1;
	}
	size_t rest = r->have - at;
	if (r->skipping || rest > MLOG_MAX_MESSAGE_BYTES) {
		r->skip_len = (r->skipping ? r->skip_len : 0) + rest;
		r->skipping = true;
		rest = 0;
	}
	memmove(r->buf, r->buf + at, rest);
	r->have = rest;
}

/* Whether fd has more to give at once (data, end of input or an error). */
static bool more_waiting(int fd)
{
	struct pollfd p = {.fd = fd, .events = POLLIN};
	return poll(&p, 1, 0) > 0;
}

/* The end of input: the last line, if it has no '\n'. */
static void take_last_line(struct run *r)
{
	if (!r->skipping && r->have == 0)
		return;
	r->lineno++;
	if (r->skipping)
		refuse_too_long(r, r->lineno, r->skip_len + r->have);
	else
		add_line(r, r->buf, r->have, r->lineno);
	r->skipping = false;
	r->have = 0;
}

static void read_all(struct run *r)
{
	/* a larger pipe lets a group take more lines per synced commit */
	int pipe_bytes = fcntl(r->fd, F_GETPIPE_SZ);
	if (pipe_bytes > 0 && pipe_bytes < PIPE_BYTES)
		fcntl(r->fd, F_SETPIPE_SZ, PIPE_BYTES);
	for (;;) {
		ssize_t n = read(r->fd, r->buf + r->have, READ_CHUNK);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			/* a non-blocking descriptor with nothing now: commit,
			 * then wait for more */
			commit(r);
			struct pollfd p = {.fd = r->fd, .events = POLLIN};
			poll(&p, 1, -1);
			continue;
		}
		if (n < 0) {
			fprintf(stderr, "mlog: reading standard input: %s\n", strerror(errno));
			r->status = 1;
			break;
		}
		if (n == 0)
			break;
		r->have += (size_t)n;
		take_lines(r);
		/* nothing is read past a group before it is committed: the
		 * group ends when the input has nothing more at once */
		if (r->g.events.len >= GROUP_MAX_BYTES || !more_waiting(r->fd))
			commit(r);
	}
	take_last_line(r);
	commit(r);
}

/* Settles the options of every line's event: the checks and conversions
 * of mlog_client_send(), once.  0, or 1 with the reason on stderr. */
static int prepare_event(struct run *r, const struct mlog_opts *o, struct spool_kv *typed,
                         struct spool_buf *raw)
{
	char err[MLOG_ERROR_MAX];
	size_t ntyped = o->metadata ? o->nmetadata : 0, nraw = 0;
	r->severity = o->severity == MLOG_DEFAULT ? SPOOL_SEV_INFO : (int)o->severity - 1;
	mlog_kv_to_spool(o->metadata, ntyped, typed);
	if (mlog_metadata_check(typed, ntyped, err, sizeof(err)) != 0 ||
	    (o->metadata_json && mlog_metadata_from_json(o->metadata_json, typed, ntyped, raw,
	                                                 &nraw, err, sizeof(err)) != 0)) {
		fprintf(stderr, "mlog: no line logged: %s\n", err);
		return 1;
	}
	r->ev = (struct spool_event){
	    .severity = r->severity,
	    .title = o->title,
	    .tags = o->tags,
	    .ttl_seconds = o->ttl_seconds,
	    .metadata = typed,
	    .nmetadata = ntyped,
	    .fqdn = mlog_fqdn(),
	    .metadata_raw = raw->data,
	    .metadata_raw_len = raw->len,
	    .metadata_raw_count = nraw,
	};
	if (event_template_build(&r->tmpl, &r->ev, err, sizeof(err)) != 0) {
		fprintf(stderr, "mlog: no line logged: cannot build the event: %s\n", err);
		return 1;
	}
	return 0;
}

int mlog_stdin_run(int fd, const struct mlog_config *cfg, const struct mlog_opts *o)
{
	struct run r = {.fd = fd};
	struct mlog_settings set;
	char err[MLOG_ERROR_MAX];
	if (mlog_settings_resolve(cfg, &set, err, sizeof(err)) != 0) {
		fprintf(stderr, "mlog: %s\n", err);
		return 2;
	}
	r.set = &set;
	size_t ntyped = o->metadata ? o->nmetadata : 0;
	struct spool_kv *typed = calloc(ntyped ? ntyped : 1, sizeof(*typed));
	struct spool_buf raw = {0};
	r.buf = malloc(READ_CHUNK + MLOG_MAX_MESSAGE_BYTES);
	int status = 1;
	if (!typed || !r.buf) {
		fprintf(stderr, "mlog: out of memory\n");
		goto out;
	}
	if (prepare_event(&r, o, typed, &raw) != 0)
		goto out;
	/* the spool as the client library opens it, with sync durability */
	struct spool_options so;
	spool_options_init(&so);
	so.durability = SPOOL_SYNC;
	so.max_events = (uint64_t)set.max_queue_size;
	so.max_bytes = set.max_spool_bytes;
	so.full_policy = set.drop_when_full ? SPOOL_FULL_DROP : SPOOL_FULL_BLOCK;
	so.full_timeout_seconds = set.queue_timeout;
	r.max_record_bytes = so.max_record_bytes;
	int rc = spool_open(set.spool_dir, &so, &r.s, err, sizeof(err));
	if (rc) {
		fprintf(stderr, "mlog: no line logged: %s\n", err);
		goto out;
	}
	read_all(&r);
	status = r.status;
	rc = spool_close(r.s);
	if (rc) {
		fprintf(stderr, "mlog: closing the spool: %s\n", spool_strerror(rc));
		status = 1;
	}
out:
	group_free(&r.g);
	event_template_free(&r.tmpl);
	spool_buf_free(&raw);
	free(typed);
	free(r.buf);
	mlog_settings_free(&set);
	return status;
}
