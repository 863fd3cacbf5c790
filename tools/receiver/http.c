/* http.c - the libmicrohttpd side: routing, bodies, faults, answers.
 *
 * libmicrohttpd calls on_request() once when the headers are in, then once
 * per piece of body, then once more with no data: that last call answers.
 * Everything that can be decided from the headers (route, method, faults,
 * key, encoding, declared length) is decided on the first call; the body
 * of a request that will be refused anyway is read and thrown away, so the
 * client always gets to read the answer.
 */
#include "http.h"

#include <errno.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <microhttpd.h>

#include "body.h"
#include "event.h"
#include "jscan.h"

#define DETAIL_MAX 256

struct http_ctx {
	const struct rx_config *cfg;
	struct store *store;
};

/* One http_ctx for the daemon; MHD only keeps a pointer. */
static struct http_ctx the_ctx;

enum route { ROUTE_NONE, ROUTE_SINGLE, ROUTE_BATCH, ROUTE_STATS, ROUTE_HEALTH };

struct req {
	enum route route;
	bool api;	  /* a POST to an API endpoint */
	int early_status; /* decided from the headers; the body is dropped */
	char early_detail[DETAIL_MAX];
	const char *allow; /* Allow header of a 405 */
	bool fault;	   /* early_status is an injected fault */
	bool gzip;
	bool too_big;
	bool oom;
	bool begun; /* on_request has seen the headers */
	bool open;  /* counted in the requests open now (store_request_open) */
	size_t uri_len; /* the request target as sent, query included */
	uint64_t wire_bytes; /* body bytes as received */
	struct buf body;
};

struct answer {
	int status;
	struct buf body; /* JSON text */
	const char *allow;
	bool retry_after;
	bool drop; /* close the connection instead of answering */
	bool api;  /* an API answer: the body faults apply (never /stats, /healthz) */
};

static void sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
	while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
		;
}

static bool key_matches(const char *given, const char *want)
{
	size_t n = strlen(want);
	if (strlen(given) != n)
		return false;
	unsigned char diff = 0;
	for (size_t i = 0; i < n; i++)
		diff |= (unsigned char)(given[i] ^ want[i]);
	return diff == 0;
}

static const char *header(struct MHD_Connection *c, const char *name)
{
	return MHD_lookup_connection_value(c, MHD_HEADER_KIND, name);
}

static void refuse(struct req *r, int status, bool fault, const char *detail)
{
	r->early_status = status;
	r->fault = fault;
	snprintf(r->early_detail, sizeof(r->early_detail), "%s", detail);
}

/* The checks of an API POST that need only the headers, in order. */
static void check_api_headers(const struct http_ctx *ctx,
			      struct MHD_Connection *c, struct req *r)
{
	const struct rx_config *cfg = ctx->cfg;

	if (cfg->outage_file && access(cfg->outage_file, F_OK) == 0) {
		refuse(r, (int)cfg->outage_status, true, "outage");
		return;
	}
	int fault = store_pick_fault(ctx->store);
	if (fault) {
		refuse(r, fault, true, "injected failure");
		return;
	}
	if (cfg->api_key) {
		const char *key = header(c, "X-API-Key");
		if (!key || !key_matches(key, cfg->api_key)) {
			refuse(r, (int)cfg->auth_status, false,
			       key ? "X-API-Key: not accepted"
				   : "X-API-Key: header required");
			return;
		}
	}
	const char *enc = header(c, MHD_HTTP_HEADER_CONTENT_ENCODING);
	if (enc && *enc && strcasecmp(enc, "identity") != 0) {
		if (strcasecmp(enc, "gzip") != 0 &&
		    strcasecmp(enc, "x-gzip") != 0) {
			refuse(r, 415, false,
			       "Content-Encoding: only gzip is supported");
			return;
		}
		if (cfg->no_gzip) {
			refuse(r, 415, false,
			       "Content-Encoding: gzip is not accepted here");
			return;
		}
		r->gzip = true;
	}
	const char *len = header(c, MHD_HTTP_HEADER_CONTENT_LENGTH);
	if (len) {
		unsigned long long n = strtoull(len, NULL, 10);
		if (n > cfg->max_body)
			r->too_big = true;
		else if (n > 0 && buf_reserve(&r->body, (size_t)n))
			r->oom = true;
	}
}

static enum MHD_Result add_header_len(void *cls, enum MHD_ValueKind kind,
				      const char *key, const char *value)
{
	uint64_t *n = cls;
	(void)kind;
	*n += strlen(key) + 2 + (value ? strlen(value) : 0) + 2;
	return MHD_YES;
}

/* The request line and the header lines as the client sent them (each
 * header counted as "Name: value" CRLF), and the blank line. */
static uint64_t head_bytes(struct MHD_Connection *c, const char *method,
			   const char *version, size_t uri_len)
{
	uint64_t n = strlen(method) + 1 + uri_len + 1 + strlen(version) + 2;
	MHD_get_connection_values(c, MHD_HEADER_KIND, add_header_len, &n);
	return n + 2;
}

static void begin_request(const struct http_ctx *ctx,
			  struct MHD_Connection *c, const char *url,
			  const char *method, const char *version,
			  struct req *r)
{
	bool post = strcmp(method, MHD_HTTP_METHOD_POST) == 0;
	bool get = strcmp(method, MHD_HTTP_METHOD_GET) == 0;

	if (strcmp(url, "/api/v1/logs") == 0)
		r->route = ROUTE_SINGLE;
	else if (strcmp(url, "/api/v1/logs/batch") == 0)
		r->route = ROUTE_BATCH;
	else if (strcmp(url, "/stats") == 0)
		r->route = ROUTE_STATS;
	else if (strcmp(url, "/healthz") == 0)
		r->route = ROUTE_HEALTH;
	else if (ctx->cfg->any_json)
		r->route = ROUTE_BATCH; /* a peer's URL */
	if (ctx->cfg->any_json && r->route == ROUTE_SINGLE)
		r->route = ROUTE_BATCH;

	switch (r->route) {
	case ROUTE_NONE:
		refuse(r, 404, false, "not found");
		return;
	case ROUTE_STATS:
	case ROUTE_HEALTH:
		if (!get) {
			refuse(r, 405, false, "method not allowed");
			r->allow = "GET";
		}
		return;
	case ROUTE_BATCH:
		if (ctx->cfg->no_batch) {
			refuse(r, (int)ctx->cfg->no_batch_status, false,
			       "batch endpoint disabled");
			return;
		}
		break;
	case ROUTE_SINGLE:
		break;
	}
	if (!post) {
		refuse(r, 405, false, "method not allowed");
		r->allow = "POST";
		return;
	}
	r->api = true;
	/* From here until its answer is queued the request counts as open,
	 * --latency-ms included. */
	store_request_open(ctx->store,
			   head_bytes(c, method, version, r->uri_len));
	r->open = true;
	check_api_headers(ctx, c, r);
}

static void take_body(const struct http_ctx *ctx, struct req *r,
		      const char *data, size_t size)
{
	r->wire_bytes += size;
	if (r->api)
		store_count_wire(ctx->store, size);
	if (r->early_status || r->too_big || r->oom || !r->api)
		return; /* read and dropped */
	if (size > ctx->cfg->max_body - r->body.len) {
		r->too_big = true;
		buf_free(&r->body);
		return;
	}
	if (buf_append(&r->body, data, size)) {
		r->oom = true;
		buf_free(&r->body);
	}
}

/* ---- answers ---- */

static void answer_json(struct answer *a, int status, json_t *doc)
{
	a->status = status;
	char *text = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
	json_decref(doc);
	buf_free(&a->body);
	if (!text) {
		a->status = 500;
		text = strdup("{\"detail\":\"out of memory\"}");
	}
	if (text) {
		a->body.data = text;
		a->body.len = strlen(text);
		a->body.cap = a->body.len + 1;
	}
}

static void answer_detail(struct answer *a, int status, const char *detail)
{
	answer_json(a, status, json_pack("{s:s}", "detail", detail));
}

struct slow_body {
	char *data;
	size_t len;
	long ms;
	size_t chunk;
};

static ssize_t slow_read(void *cls, uint64_t pos, char *out, size_t max)
{
	struct slow_body *s = cls;
	if (pos >= s->len)
		return MHD_CONTENT_READER_END_OF_STREAM;
	sleep_ms(s->ms);
	size_t n = s->len - (size_t)pos;
	if (n > s->chunk)
		n = s->chunk;
	if (n > max)
		n = max;
	memcpy(out, s->data + pos, n);
	return (ssize_t)n;
}

static void slow_free(void *cls)
{
	struct slow_body *s = cls;
	free(s->data);
	free(s);
}

static void add_retry_after(const struct rx_config *cfg,
			    struct MHD_Response *resp)
{
	char value[64];
	if (cfg->retry_after < 0)
		return;
	if (cfg->retry_after_date) {
		time_t when = time(NULL) + cfg->retry_after;
		struct tm tm;
		gmtime_r(&when, &tm);
		strftime(value, sizeof(value), "%a, %d %b %Y %H:%M:%S GMT",
			 &tm);
	} else {
		snprintf(value, sizeof(value), "%ld", cfg->retry_after);
	}
	MHD_add_response_header(resp, MHD_HTTP_HEADER_RETRY_AFTER, value);
}

/* Queues the answer (taking its body) or, for a drop, refuses to. */
static enum MHD_Result send_answer(const struct rx_config *cfg,
				   struct MHD_Connection *c, struct answer *a)
{
	static const char not_json[] = "<html><body>stored</body></html>\n";
	const char *ctype = "application/json";
	struct MHD_Response *resp;

	if (a->drop) {
		buf_free(&a->body);
		return MHD_NO; /* libmicrohttpd closes the connection */
	}
	if (a->api && a->status >= 200 && a->status < 300) {
		if (cfg->empty_2xx) {
			a->body.len = 0;
		} else if (cfg->bad_json_2xx) {
			buf_free(&a->body);
			buf_append(&a->body, not_json, sizeof(not_json) - 1);
			ctype = "text/html";
		}
	}
	if (a->api && cfg->slow_body_ms > 0 && a->body.len > 0) {
		struct slow_body *s = malloc(sizeof(*s));
		if (!s) {
			buf_free(&a->body);
			return MHD_NO;
		}
		*s = (struct slow_body){ a->body.data, a->body.len,
					 cfg->slow_body_ms,
					 (size_t)cfg->slow_body_chunk };
		a->body.data = NULL;
		resp = MHD_create_response_from_callback(
			s->len, s->chunk, slow_read, s, slow_free);
		if (!resp)
			slow_free(s);
	} else if (a->body.len > 0) {
		resp = MHD_create_response_from_buffer(
			a->body.len, a->body.data, MHD_RESPMEM_MUST_FREE);
		if (resp)
			a->body.data = NULL;
	} else {
		resp = MHD_create_response_from_buffer(0, (void *)"",
						       MHD_RESPMEM_PERSISTENT);
	}
	buf_free(&a->body);
	if (!resp)
		return MHD_NO;
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
	if (a->allow)
		MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, a->allow);
	if (a->retry_after)
		add_retry_after(cfg, resp);
	enum MHD_Result rc =
		MHD_queue_response(c, (unsigned int)a->status, resp);
	MHD_destroy_response(resp);
	return rc;
}

/* ---- the two API endpoints ---- */

/* --reject-word and --transient-word on a message's decoded text: returns
 * 0 or the status to refuse the event with (detail filled in). */
static int word_rules(const struct rx_config *cfg, const char *msg,
		      size_t len, char *detail, size_t detail_len,
		      bool *transient)
{
	*transient = false;
	if (cfg->reject_word && memmem(msg, len, cfg->reject_word,
				       strlen(cfg->reject_word))) {
		snprintf(detail, detail_len,
			 "message: contains a rejected word");
		return (int)cfg->reject_status;
	}
	if (cfg->transient_word && memmem(msg, len, cfg->transient_word,
					  strlen(cfg->transient_word))) {
		snprintf(detail, detail_len,
			 "message: contains the transient word; try again");
		*transient = true;
		return (int)cfg->transient_status;
	}
	return 0;
}

/* Decides one event: 0 to store it (se->key filled in), or the status it
 * is refused with (detail filled in).  Plainly valid events are decided
 * from the scan; everything else by jansson and event_validate(). */
static int classify(const struct rx_config *cfg, const char *body,
		    const struct jevent *je, struct store_event *se,
		    char *detail, size_t detail_len, bool *transient)
{
	const struct jfield *msg = &je->f[F_MESSAGE];
	bool words = cfg->reject_word || cfg->transient_word;

	*transient = false;
	if (!cfg->validate_with_jansson &&
	    event_fast_check(je, &se->key) == 0 &&
	    (!words || !(msg->flags & JF_ESCAPED)))
		return word_rules(cfg, msg->raw, msg->len, detail, detail_len,
				  transient);

	json_error_t err;
	json_t *ev = json_loadb(body + je->raw_off, je->raw_len,
				JSON_ALLOW_NUL | JSON_DECODE_ANY, &err);
	if (!ev) {
		/* The scanner accepted what jansson refuses: a bug. */
		snprintf(detail, detail_len, "event: invalid JSON: %s",
			 err.text);
		return 400;
	}
	int status = 0;
	if (event_validate(ev, &se->key, detail, detail_len)) {
		status = 422;
	} else {
		json_t *m = json_object_get(ev, "message");
		status = word_rules(cfg, json_string_value(m),
				    json_string_length(m), detail, detail_len,
				    transient);
	}
	json_decref(ev);
	return status;
}

static void answer_single(const struct http_ctx *ctx, const char *body,
			  const struct jscan_result *res,
			  const struct buf *lines, struct answer *a,
			  struct store_tally *t)
{
	const struct jevent *je = &res->events[0];
	struct store_event se = { 0 };
	char detail[DETAIL_MAX];
	char id[STORE_ID_MAX];
	bool transient;

	int status = classify(ctx->cfg, body, je, &se, detail, sizeof(detail),
			      &transient);
	if (status) {
		if (transient)
			t->transient = 1;
		else
			t->rejected = 1;
		answer_detail(a, status, detail);
		return;
	}
	se.line_off = je->line_off;
	se.line_len = je->line_len;
	if (store_commit(ctx->store, &se, 1, lines->data)) {
		answer_detail(a, 500, "could not write the out file");
		return;
	}
	store_format_id(ctx->store, se.id, id);
	if (se.duplicate)
		answer_json(a, 200,
			    json_pack("{s:s, s:b}", "id", id, "duplicate", 1));
	else
		answer_json(a, 201, json_pack("{s:s}", "id", id));
}

/* 200 {"accepted": N, "duplicates": K, "ids": [...]}, built by hand: this
 * is the hot path and ids need no escaping. */
static void answer_all_accepted(const struct http_ctx *ctx,
				const struct store_event *ev, size_t n,
				struct answer *a)
{
	char head[96];
	char id[STORE_ID_MAX];
	size_t dups = 0;
	for (size_t i = 0; i < n; i++)
		dups += ev[i].duplicate;
	int k = snprintf(head, sizeof(head),
			 "{\"accepted\":%zu,\"duplicates\":%zu,\"ids\":[", n,
			 dups);
	if (buf_reserve(&a->body, n * (STORE_ID_MAX + 3) + (size_t)k + 4)) {
		answer_detail(a, 500, "out of memory");
		return;
	}
	/* Room is reserved: append without further checks. */
	char *p = a->body.data;
	memcpy(p, head, (size_t)k);
	p += k;
	for (size_t i = 0; i < n; i++) {
		size_t m = store_format_id(ctx->store, ev[i].id, id);
		if (i)
			*p++ = ',';
		*p++ = '"';
		memcpy(p, id, m);
		p += m;
		*p++ = '"';
	}
	*p++ = ']';
	*p++ = '}';
	a->body.len = (size_t)(p - a->body.data);
	a->status = 200;
}

static void answer_results(const struct http_ctx *ctx,
			   const struct store_event *ev, char **details,
			   size_t n, struct answer *a)
{
	char id[STORE_ID_MAX];
	json_t *results = json_array();
	for (size_t i = 0; i < n && results; i++) {
		json_t *r;
		if (ev[i].status) {
			r = json_pack("{s:i, s:s}", "status", ev[i].status,
				      "detail",
				      details[i] ? details[i] : "rejected");
		} else {
			store_format_id(ctx->store, ev[i].id, id);
			r = ev[i].duplicate
				    ? json_pack("{s:i, s:s, s:b}", "status",
						200, "id", id, "duplicate", 1)
				    : json_pack("{s:i, s:s}", "status", 201,
						"id", id);
		}
		if (!r || json_array_append_new(results, r)) {
			json_decref(results);
			results = NULL;
		}
	}
	answer_json(a, 207,
		    results ? json_pack("{s:o}", "results", results) : NULL);
}

static void answer_batch(const struct http_ctx *ctx, const char *body,
			 const struct jscan_result *res,
			 const struct buf *lines, struct answer *a,
			 struct store_tally *t)
{
	const struct rx_config *cfg = ctx->cfg;
	size_t n = res->n_events, refused = 0, first_rejected = SIZE_MAX;
	char detail[DETAIL_MAX];
	char **details = NULL;
	bool transient;

	if (n == 0) {
		answer_detail(a, 422, "logs: must not be empty");
		return;
	}
	if (n > (size_t)cfg->max_batch_events) {
		snprintf(detail, sizeof(detail),
			 "logs: more than %ld events in one batch",
			 cfg->max_batch_events);
		answer_detail(a, 413, detail);
		return;
	}
	struct store_event *ev = calloc(n, sizeof(*ev));
	if (!ev)
		goto oom;
	for (size_t i = 0; i < n; i++) {
		const struct jevent *je = &res->events[i];
		ev[i].line_off = je->line_off;
		ev[i].line_len = je->line_len;
		if (cfg->any_json) {
			ev[i].no_dedup = true; /* counted as it is */
			continue;
		}
		int status = classify(cfg, body, je, &ev[i], detail,
				      sizeof(detail), &transient);
		if (!status)
			continue;
		if (!details && !(details = calloc(n, sizeof(*details))))
			goto oom;
		ev[i].status = status;
		details[i] = strdup(detail);
		if (!details[i])
			goto oom;
		refused++;
		if (transient) {
			t->transient++;
		} else {
			t->rejected++;
			if (first_rejected == SIZE_MAX)
				first_rejected = i;
		}
	}

	if (cfg->reject_whole_batch && first_rejected != SIZE_MAX) {
		snprintf(detail, sizeof(detail), "logs[%zu]: %s",
			 first_rejected, details[first_rejected]);
		answer_detail(a, 422, detail);
		t->rejected = n; /* nothing of it is kept */
		t->transient = 0;
		goto out;
	}
	if (store_commit(ctx->store, ev, n, lines->data)) {
		answer_detail(a, 500, "could not write the out file");
		goto out;
	}
	if (refused == 0)
		answer_all_accepted(ctx, ev, n, a);
	else
		answer_results(ctx, ev, details, n, a);
	goto out;
oom:
	answer_detail(a, 500, "out of memory");
out:
	for (size_t i = 0; details && i < n; i++)
		free(details[i]);
	free(details);
	free(ev);
}

/* The body is in: decode, scan and answer an API request. */
static void handle_api(const struct http_ctx *ctx, struct req *r,
		       struct answer *a, struct store_tally *t)
{
	const struct rx_config *cfg = ctx->cfg;
	struct buf inflated = { 0 };
	struct buf lines = { 0 };
	struct jscan_result res = { 0 };
	const char *data = r->body.data;
	size_t len = r->body.len;
	bool batch = r->route == ROUTE_BATCH;
	char detail[DETAIL_MAX];

	if (r->too_big) {
		snprintf(detail, sizeof(detail),
			 "body: larger than %zu bytes", cfg->max_body);
		answer_detail(a, 413, detail);
		return;
	}
	if (r->oom) {
		answer_detail(a, 500, "out of memory");
		return;
	}
	if (r->gzip) {
		int rc = body_gunzip(data, len, cfg->max_inflated, &inflated);
		if (rc == -EFBIG) {
			snprintf(detail, sizeof(detail),
				 "body: inflates to more than %zu bytes",
				 cfg->max_inflated);
			answer_detail(a, 413, detail);
		} else if (rc == -ENOMEM) {
			answer_detail(a, 500, "out of memory");
		} else if (rc) {
			answer_detail(a, 400, "body: not a valid gzip stream");
		}
		if (rc)
			goto out;
		data = inflated.data;
		len = inflated.len;
	}
	t->bytes_inflated = len;
	if (len == 0) {
		answer_detail(a, 400, "body: empty");
		goto out;
	}
	if (batch && len > cfg->max_batch_bytes) {
		snprintf(detail, sizeof(detail),
			 "body: batch JSON larger than %zu bytes",
			 cfg->max_batch_bytes);
		answer_detail(a, 413, detail);
		goto out;
	}

	/* Compact lines are at most as long as the body plus newlines. */
	bool want_lines = store_has_out(ctx->store);
	if (want_lines && buf_reserve(&lines, len + len / 16 + 64)) {
		answer_detail(a, 500, "out of memory");
		goto out;
	}
	switch (jscan_body(data, len, batch,
			   batch ? (size_t)cfg->max_batch_events : 1,
			   want_lines ? &lines : NULL, &res)) {
	case JS_OK:
		break;
	case JS_SYNTAX:
		snprintf(detail, sizeof(detail), "body: invalid JSON: %s",
			 res.err);
		answer_detail(a, 400, detail);
		goto out;
	case JS_ROOT_NOT_OBJECT:
		answer_detail(a, 400,
			      "body: must be an object {\"logs\": [...]}");
		goto out;
	case JS_NO_LOGS:
		answer_detail(a, 400, "logs: field required");
		goto out;
	case JS_LOGS_NOT_ARRAY:
		answer_detail(a, 400, "logs: must be an array of events");
		goto out;
	default:
		answer_detail(a, 500, "out of memory");
		goto out;
	}
	if (batch)
		answer_batch(ctx, data, &res, &lines, a, t);
	else
		answer_single(ctx, data, &res, &lines, a, t);
	if (a->status >= 200 && a->status < 300 &&
	    store_pick_drop(ctx->store)) {
		a->drop = true;
		t->dropped = true;
	}
out:
	jscan_result_free(&res);
	buf_free(&lines);
	buf_free(&inflated);
}

static enum MHD_Result finish_request(const struct http_ctx *ctx,
				      struct MHD_Connection *c,
				      const char *method, const char *url,
				      struct req *r)
{
	const struct rx_config *cfg = ctx->cfg;
	struct answer a = { 0 };
	const char *idem = header(c, "Idempotency-Key");
	struct store_tally t = {
		.api = r->api,
		.batch = r->route == ROUTE_BATCH,
		.gzip = r->gzip,
		.fault = r->fault,
		.idempotency_key = r->api && idem != NULL,
		.bytes_in = r->wire_bytes,
		.user_agent = header(c, MHD_HTTP_HEADER_USER_AGENT),
		.idempotency_val = idem,
	};

	if (r->api && cfg->latency_ms > 0)
		sleep_ms(cfg->latency_ms);

	if (r->early_status) {
		answer_detail(&a, r->early_status, r->early_detail);
		a.allow = r->allow;
		a.retry_after = r->fault;
	} else if (r->route == ROUTE_STATS) {
		char *text = store_stats_json(ctx->store);
		if (text) {
			a.status = 200;
			a.body.data = text;
			a.body.len = strlen(text);
			a.body.cap = a.body.len + 1;
		} else {
			answer_detail(&a, 500, "out of memory");
		}
	} else if (r->route == ROUTE_HEALTH) {
		answer_json(&a, 200, json_pack("{s:s}", "status", "ok"));
	} else {
		handle_api(ctx, r, &a, &t);
	}

	a.api = r->api;
	t.status = a.drop ? 0 : a.status;
	store_tally(ctx->store, &t);
	if (r->open) {
		/* before the answer is queued: a client that waits for it
		 * to send its next request never sees both counted */
		store_request_closed(ctx->store);
		r->open = false;
	}
	if (cfg->verbose)
		fprintf(stderr, "mlog-receiver: %s %s -> %d%s (%" PRIu64
				" bytes)\n",
			method, url, a.status, a.drop ? " dropped" : "",
			r->wire_bytes);
	return send_answer(cfg, c, &a);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c,
				  const char *url, const char *method,
				  const char *version, const char *upload_data,
				  size_t *upload_data_size, void **con_cls)
{
	const struct http_ctx *ctx = cls;
	struct req *r = *con_cls;

	if (!r) {
		/* on_uri() had no memory: the target as parsed will do */
		r = calloc(1, sizeof(*r));
		if (!r)
			return MHD_NO;
		r->uri_len = strlen(url);
		*con_cls = r;
	}
	if (!r->begun) {
		r->begun = true;
		begin_request(ctx, c, url, method, version, r);
		return MHD_YES;
	}
	if (*upload_data_size) {
		take_body(ctx, r, upload_data, *upload_data_size);
		*upload_data_size = 0;
		return MHD_YES;
	}
	return finish_request(ctx, c, method, url, r);
}

/* Called with the request target as sent, before the headers are read:
 * the request's state starts here, so that the target's length counts as
 * sent (libmicrohttpd hands on_request() the path decoded, without the
 * query).  Returns the state, or NULL (on_request() then makes it). */
static void *on_uri(void *cls, const char *uri, struct MHD_Connection *c)
{
	(void)cls;
	(void)c;
	struct req *r = calloc(1, sizeof(*r));
	if (r)
		r->uri_len = strlen(uri);
	return r;
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
			 enum MHD_RequestTerminationCode toe)
{
	const struct http_ctx *ctx = cls;
	struct req *r = *con_cls;
	if (!r)
		return;
	if (r->open) /* the connection ended before an answer was queued */
		store_request_closed(ctx->store);
	buf_free(&r->body);
	free(r);
	*con_cls = NULL;
}

/* True while MHD_start_daemon runs: why it refuses (a key that does not
 * match the certificate, say) is worth printing without --verbose. */
static atomic_bool starting;

__attribute__((format(printf, 2, 0))) static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
	const struct rx_config *cfg = cls;
	if (!cfg->verbose && !atomic_load(&starting))
		return;
	fputs("mlog-receiver: libmicrohttpd: ", stderr);
	vfprintf(stderr, fmt, ap);
}

struct MHD_Daemon *http_start(const struct rx_config *cfg,
			      struct store *store, int fd, bool ipv6,
			      const struct tls_pem *tls)
{
	struct MHD_OptionItem tls_opts[] = {
		{ MHD_OPTION_HTTPS_MEM_CERT, 0, tls->cert },
		{ MHD_OPTION_HTTPS_MEM_KEY, 0, tls->key },
		{ MHD_OPTION_END, 0, NULL },
	};
	the_ctx.cfg = cfg;
	the_ctx.store = store;
	unsigned int flags = MHD_USE_INTERNAL_POLLING_THREAD |
			     MHD_USE_THREAD_PER_CONNECTION | MHD_USE_POLL |
			     MHD_USE_ERROR_LOG;
	if (ipv6)
		flags |= MHD_USE_IPv6;
	if (tls->cert)
		flags |= MHD_USE_TLS;
	else
		tls_opts[0].option = MHD_OPTION_END;
	atomic_store(&starting, true);
	struct MHD_Daemon *d = MHD_start_daemon(
		flags, 0, NULL, NULL, on_request, &the_ctx,
		MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, (void *)cfg,
		MHD_OPTION_LISTEN_SOCKET, (MHD_socket)fd,
		MHD_OPTION_CONNECTION_LIMIT, (unsigned int)cfg->max_connections,
		MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)cfg->idle_timeout,
		MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)(256 * 1024),
		MHD_OPTION_URI_LOG_CALLBACK, on_uri, NULL,
		MHD_OPTION_NOTIFY_COMPLETED, on_completed, &the_ctx,
		MHD_OPTION_ARRAY, tls_opts,
		MHD_OPTION_END);
	atomic_store(&starting, false);
	return d;
}

void http_stop(struct MHD_Daemon *d)
{
	if (d)
		MHD_stop_daemon(d);
}
