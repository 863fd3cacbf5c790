/* tx_test.c — an external transport of ABI 2 (include/spool/transport.h)
 * for the agent's tests, built as tx_test.so and loaded from plugin_dir.
 *
 * Its section `tx_test:` holds three keys of different types: `path` (the
 * JSON-lines file it writes; required, through check()), `note` (a string
 * with a default, logged at start) and `fail_every` (an integer: every Nth
 * request fails as transient, writing nothing).  It is asynchronous: submit()
 * only queues a request, and the next poll() finishes the queued ones in
 * order, writing each event's JSON as one line.  At destroy() it logs the
 * most requests it ever had open at once. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <spool/transport.h>

enum { TT_PATH, TT_NOTE, TT_FAIL_EVERY, TT_NKEYS };

static const struct spool_tx_option tt_options[TT_NKEYS] = {
    [TT_PATH] = {.key = "path",
                 .type = SPOOL_TX_STRING,
                 .kind = SPOOL_TX_OUT_FILE,
                 .doc = "JSON-lines file to append the events to (required)"},
    [TT_NOTE] = {.key = "note",
                 .type = SPOOL_TX_STRING,
                 .kind = SPOOL_TX_TEXT,
                 .def = "hello",
                 .doc = "a word logged at start"},
    [TT_FAIL_EVERY] = {.key = "fail_every",
                       .type = SPOOL_TX_INT,
                       .def = "0",
                       .min = 0,
                       .max = 1000,
                       .doc = "every Nth request fails as transient, writing nothing (0: none)"},
};

struct tt_state {
	const struct spool_tx_config *cfg;
	int fd;
	long long fail_every;
	unsigned long long requests; /* finished so far */
	size_t most_open;
	size_t cap; /* max_in_flight */
	size_t nopen;
	struct spool_tx_request **open; /* in submission order */
	char *line;
	size_t line_cap;
};

static int tt_check(const struct spool_tx_value *v, size_t n, size_t *key, char *why, size_t whylen)
{
	if (n < TT_NKEYS || !v[TT_PATH].set) {
		*key = TT_PATH;
		snprintf(why, whylen, "not set; the tx_test transport needs a file to write");
		return -1;
	}
	return 0;
}

static void tt_destroy(void *p)
{
	struct tt_state *st = p;
	if (!st)
		return;
	st->cfg->log(st->cfg->log_ctx, SPOOL_TX_LOG_INFO,
	             "tx_test: most requests open at once: %zu", st->most_open);
	if (st->fd >= 0)
		close(st->fd);
	free(st->open);
	free(st->line);
	free(st);
}

static int tt_create(const struct spool_tx_config *cfg, void **out, char *err, size_t errlen)
{
	size_t key;
	*out = NULL;
	if (cfg->nvalues < TT_NKEYS || tt_check(cfg->values, cfg->nvalues, &key, err, errlen))
		return -EINVAL;
	struct tt_state *st = calloc(1, sizeof(*st));
	if (!st) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	st->cfg = cfg;
	st->fail_every = cfg->values[TT_FAIL_EVERY].integer;
	st->cap = cfg->max_in_flight ? cfg->max_in_flight : 1;
	st->open = calloc(st->cap, sizeof(*st->open));
	st->fd = open(cfg->values[TT_PATH].text, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
	if (!st->open || st->fd < 0) {
		int e = st->open ? errno : ENOMEM;
		snprintf(err, errlen, "cannot open %s: %s", cfg->values[TT_PATH].text, strerror(e));
		tt_destroy(st);
		return -e;
	}
	cfg->log(cfg->log_ctx, SPOOL_TX_LOG_INFO,
	         "tx_test: note %s, writing %s, %zu in flight at most", cfg->values[TT_NOTE].text,
	         cfg->values[TT_PATH].text, st->cap);
	*out = st;
	return 0;
}

static int tt_submit(void *p, struct spool_tx_request *req)
{
	struct tt_state *st = p;
	if (st->nopen == st->cap)
		return -EBUSY;
	st->open[st->nopen++] = req;
	if (st->nopen > st->most_open)
		st->most_open = st->nopen;
	return 0;
}

static int write_all(int fd, const char *buf, size_t len)
{
	while (len) {
		ssize_t w = write(fd, buf, len);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return -errno;
		buf += w;
		len -= (size_t)w;
	}
	return 0;
}

/* Writes one request's events as lines, all at once. */
static void finish(struct tt_state *st, struct spool_tx_request *req)
{
	st->requests++;
	if (st->fail_every && st->requests % (unsigned long long)st->fail_every == 0) {
		req->status.call = SPOOL_TXC_TRANSIENT;
		snprintf(req->status.message, sizeof(req->status.message),
		         "tx_test: request %llu failed on purpose", st->requests);
		return;
	}
	size_t need = 0;
	for (size_t i = 0; i < req->count; i++)
		need += req->events[i].json_len + 1;
	if (need > st->line_cap) {
		char *l = realloc(st->line, need);
		if (!l) {
			req->status.call = SPOOL_TXC_TRANSIENT;
			snprintf(req->status.message, sizeof(req->status.message),
			         "tx_test: out of memory");
			return;
		}
		st->line = l;
		st->line_cap = need;
	}
	size_t off = 0;
	for (size_t i = 0; i < req->count; i++) {
		memcpy(st->line + off, req->events[i].json, req->events[i].json_len);
		off += req->events[i].json_len;
		st->line[off++] = '\n';
	}
	int rc = write_all(st->fd, st->line, off);
	if (rc) {
		req->status.call = SPOOL_TXC_TRANSIENT;
		snprintf(req->status.message, sizeof(req->status.message), "tx_test: %s",
		         strerror(-rc));
		return;
	}
	for (size_t i = 0; i < req->count; i++) {
		req->out[i].result = SPOOL_TX_ACCEPTED;
		snprintf(req->out[i].id, sizeof(req->out[i].id), "tx-%llu",
		         (unsigned long long)req->events[i].seq);
	}
}

static int tt_poll(void *p, double timeout, struct spool_tx_request **done, size_t max)
{
	(void)timeout; /* what is open finishes now */
	struct tt_state *st = p;
	size_t n = st->nopen < max ? st->nopen : max;
	for (size_t i = 0; i < n; i++) {
		finish(st, st->open[i]);
		done[i] = st->open[i];
	}
	memmove(st->open, st->open + n, (st->nopen - n) * sizeof(*st->open));
	st->nopen -= n;
	return (int)n;
}

SPOOL_TRANSPORT_EXPORT const struct spool_transport spool_transport_entry = {
    .abi_version = SPOOL_TRANSPORT_ABI,
    .struct_size = sizeof(struct spool_transport),
    .name = "tx_test",
    .description = "the tests' asynchronous transport: JSON lines to tx_test.path",
    .section = "tx_test",
    .options = tt_options,
    .noptions = TT_NKEYS,
    .check = tt_check,
    .create = tt_create,
    .destroy = tt_destroy,
    .submit = tt_submit,
    .poll = tt_poll,
};
