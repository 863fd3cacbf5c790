/* fuzz_http.c — how the HTTP transports read the server's answer
 * (plugins/http.c, http_batch.c, http_single.c): the status → fate table
 * http_fate(), Retry-After (http_parse_retry_after()), the "detail" of a
 * refusal (http_detail(), http_fail_call()), and the two per-answer
 * handlers, batch_answer() (the whole-batch statuses and a 207's
 * per-event results) and single_answer().
 *
 * The handlers are static, so this file includes http_batch.c and
 * http_single.c and calls them as http.c's finished() does, with a
 * synthetic struct http_answer; no libcurl transfer is made.  Their
 * entries (spool_tx_http_batch, spool_tx_http_single) are defined only
 * here in this program, so they keep their names.  The handlers never
 * touch the client: it is NULL here.
 *
 * Input layout:
 *   byte 0     flags: 1 http_single (else http_batch), 2 no answer (status
 *              0, a network error, no body), 4 a Location header
 *   byte 1     events in a batch request: 1 + byte % 8 (http_single: 1)
 *   bytes 2-3  HTTP status, big-endian, modulo 1000
 *   byte 4     length R of the Retry-After value
 *   R bytes    the Retry-After value (http_parse_retry_after())
 *   the rest   the response body
 * Bytes 0-7 are also read as one long, a status for http_fate() alone.
 *
 * Aborts when:
 *   - http_fate() returns, for any status and any use, a fate outside what
 *     PROTOCOL.md's row for that status allows (every status from -2 to
 *     1100 and the extremes are checked once at start, then the fuzzed
 *     ones);
 *   - http_parse_retry_after() gives NaN;
 *   - an outcome is not one of enum spool_tx_result, or the call status not
 *     one of enum spool_tx_call, or an id, reason or message is not
 *     NUL-terminated within its array;
 *   - SPLIT or ISOLATE is asked for a request of one event;
 *   - a request the handler sends back whole (any call but DONE) has an
 *     event accepted or rejected, or no message;
 *   - the outcomes disagree with the fate of the answer's status: a batch
 *     2xx other than 207 must accept every event, a 207 must apply its
 *     results array entry by entry (read here independently, with the
 *     entry's status as the server wrote it) or, without one, send the
 *     events one by one (ISOLATE; a lone event kept), a batch 400/413/422
 *     be split in halves (a lone event rejected), a single 2xx accept, a
 *     refusal reject with the status and a reason, a failure of the whole
 *     endpoint keep every event with the right call, status and
 *     Retry-After. */
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http_batch.c"
#include "http_single.c"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_EVENTS 8

static void fail(const char *what, long status, size_t k)
{
	fprintf(stderr, "fuzz_http: %s (status %ld, event %zu)\n", what, status, k);
	abort();
}

static bool terminated(const char *s, size_t cap)
{
	return memchr(s, '\0', cap) != NULL;
}

/* ---- PROTOCOL.md's rows ---- */

#define FATE(f) (1u << (f))

/* The fates PROTOCOL.md allows for status s met as `use`, as a mask of
 * FATE() bits.  Where no row names the status, what docs/agent.md says
 * ("anything else": kept, backoff). */
static unsigned protocol_fates(long s, enum http_use use)
{
	bool ok = s >= 200 && s <= 299;
	switch (use) {
	case HTTP_USE_SINGLE:
		if (s == 200 || s == 201)
			return FATE(HTTP_ACCEPT);
		if (s == 400 || s == 422 || s == 413)
			return FATE(HTTP_REJECT);
		if (s == 401 || s == 403)
			return FATE(HTTP_AUTH);
		if (s == 404 || s == 405 || s == 501)
			return FATE(HTTP_MISSING);
		/* No row names another 2xx for a single event: "any other"
		 * makes it transient, the note that a client tolerates
		 * unexpected 2xx bodies an acknowledgement.  Either keeps the
		 * promise that nothing is lost. */
		if (ok)
			return FATE(HTTP_ACCEPT) | FATE(HTTP_TRANSIENT);
		return FATE(HTTP_TRANSIENT); /* 408, 429, 5xx, any other */
	case HTTP_USE_BATCH:
		if (s == 207)
			return FATE(HTTP_PER_EVENT);
		/* "a 2xx whose body is missing or not the JSON above" too */
		if (ok)
			return FATE(HTTP_ACCEPT);
		if (s == 404 || s == 405 || s == 501)
			return FATE(HTTP_FALLBACK);
		if (s == 413)
			return FATE(HTTP_SPLIT);
		/* some event poisons it: halves, recursively */
		if (s == 400 || s == 422)
			return FATE(HTTP_BISECT);
		if (s == 401 || s == 403)
			return FATE(HTTP_AUTH);
		return FATE(HTTP_TRANSIENT); /* 408, 429, 5xx, and no answer, 1xx, 3xx, ... */
	case HTTP_USE_RESULT:
		if (ok)
			return FATE(HTTP_ACCEPT);
		if (s == 401 || s == 403 || s == 404 || s == 408 || s == 429)
			return FATE(HTTP_KEEP);
		if (s >= 400 && s <= 499)
			return FATE(HTTP_REJECT);
		return FATE(HTTP_KEEP); /* 5xx, and what no row names */
	}
	return 0;
}

static void check_fate(long s)
{
	static const enum http_use uses[] = {HTTP_USE_SINGLE, HTTP_USE_BATCH, HTTP_USE_RESULT};
	for (size_t u = 0; u < sizeof(uses) / sizeof(uses[0]); u++) {
		unsigned f = (unsigned)http_fate(s, uses[u]);
		if (f > HTTP_PER_EVENT || !(FATE(f) & protocol_fates(s, uses[u]))) {
			fprintf(stderr,
			        "fuzz_http: http_fate(%ld, use %d) = %u: not PROTOCOL.md's row\n",
			        s, (int)uses[u], f);
			abort();
		}
	}
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	for (long s = -2; s <= 1100; s++)
		check_fate(s);
	static const long far[] = {
	    LONG_MIN, LONG_MIN + 1,      INT_MIN,           (long)INT_MIN - 1,
	    INT_MAX,  (long)INT_MAX + 1, 4294967296L + 201, -4294967296L + 413,
	    LONG_MAX};
	for (size_t i = 0; i < sizeof(far) / sizeof(far[0]); i++)
		check_fate(far[i]);
	return 0;
}

/* ---- the request ---- */

/* {"message":"fuzz event K","client_event_id":"01HZZZZZZZZZZZZZZZZZZZZZZK"} */
static void make_event(struct spool_tx_event *ev, char json[96], char id[27], size_t k)
{
	snprintf(id, 27, "01HZZZZZZZZZZZZZZZZZZZZZZ%c", (char)('0' + k % 10));
	int n = snprintf(json, 96, "{\"message\":\"fuzz event %zu\",\"client_event_id\":\"%s\"}", k,
	                 id);
	*ev = (struct spool_tx_event){
	    .seq = 1000 + k,
	    .severity = SPOOL_SEV_INFO,
	    .enqueue_us = 1700000000000000,
	    .json = json,
	    .json_len = (size_t)n,
	    .client_event_id = id,
	    .attempts = (uint32_t)k,
	};
}

/* The body the transfer carried, as batch_submit() and single_submit()
 * build it. */
static void make_body(struct spool_buf *b, const struct spool_tx_event *ev, size_t n, bool single)
{
	int rc = single ? 0 : spool_buf_append(b, "{\"logs\":[", 9);
	for (size_t i = 0; i < n && !rc; i++) {
		if (i)
			rc = spool_buf_append(b, ",", 1);
		if (!rc)
			rc = spool_buf_append(b, ev[i].json, ev[i].json_len);
	}
	if (!rc && !single)
		rc = spool_buf_append(b, "]}", 2);
	if (rc)
		abort();
}

/* ---- the checks ---- */

static bool same_double(double a, double b)
{
	return a == b || (isnan(a) && isnan(b));
}

/* out[k] came from 207 result r: as the entry's status says (the whole
 * number the server wrote, not cut to an int). */
static void check_result(const struct spool_tx_outcome *o, json_t *r, size_t k)
{
	json_t *js = r ? json_object_get(r, "status") : NULL;
	if (!json_is_integer(js)) {
		if (o->result != SPOOL_TX_RETRY)
			fail("207 entry without an integer status did not keep its event", 207, k);
		return;
	}
	json_int_t v = json_integer_value(js);
	long s = v < LONG_MIN ? LONG_MIN : v > LONG_MAX ? LONG_MAX : (long)v;
	unsigned want = protocol_fates(s, HTTP_USE_RESULT);
	const char *id = json_string_value(json_object_get(r, "id"));
	switch (o->result) {
	case SPOOL_TX_ACCEPTED:
		if (!(want & FATE(HTTP_ACCEPT)))
			fail("207 entry accepted an event its status does not accept", s, k);
		if (id ? strncmp(o->id, id, sizeof(o->id) - 1) != 0 : o->id[0] != '\0')
			fail("207 entry's id not reported", s, k);
		break;
	case SPOOL_TX_REJECTED:
		if (!(want & FATE(HTTP_REJECT)))
			fail("207 entry rejected an event its status does not reject", s, k);
		break;
	case SPOOL_TX_RETRY:
		if (!(want & FATE(HTTP_KEEP)))
			fail("207 entry kept an event its status decides", s, k);
		break;
	default:
		fail("207 entry gave SPOOL_TX_RETRY_AFTER", s, k);
	}
	/* a status outside 100-599 is no verdict: the event is kept and no
	 * status is reported for it */
	if (v >= 100 && v <= 599 && o->status != (int)v)
		fail("207 entry's status not reported", s, k);
	if ((v < 100 || v > 599) && o->status != 0)
		fail("207 entry's status outside 100-599 reported", s, k);
}

static void check_207(const struct spool_tx_request *req, const struct http_answer *a)
{
	json_t *j = a->body_len ? json_loadb(a->body, a->body_len, 0, NULL) : NULL;
	json_t *results = j ? json_object_get(j, "results") : NULL;
	if (json_is_array(results)) {
		if (req->status.call != SPOOL_TXC_DONE)
			fail("207 with a results array not read", 207, 0);
		for (size_t k = 0; k < req->count; k++)
			check_result(&req->out[k], json_array_get(results, k), k);
	} else {
		/* nobody knows which events the server took */
		for (size_t k = 0; k < req->count; k++)
			if (req->out[k].result != SPOOL_TX_RETRY)
				fail("207 without a results array settled an event", 207, k);
		if (req->status.call != (req->count > 1 ? SPOOL_TXC_ISOLATE : SPOOL_TXC_DONE))
			fail("207 without a results array: not sent one by one (or kept, alone)",
			     207, 0);
	}
	json_decref(j);
}

/* A failure of the whole endpoint: every event kept, the call as the fate
 * says, the status and the Retry-After passed on. */
static void check_whole_failure(const struct spool_tx_request *req, const struct http_answer *a,
                                enum http_fate fate)
{
	int want = fate == HTTP_AUTH      ? SPOOL_TXC_AUTH
	           : fate == HTTP_MISSING ? SPOOL_TXC_MISSING
	                                  : SPOOL_TXC_TRANSIENT;
	if (req->status.call != want)
		fail("whole-endpoint failure with the wrong call status", a->status, 0);
	if (req->status.status != (int)a->status)
		fail("whole-endpoint failure without its status", a->status, 0);
	if (!same_double(req->status.retry_after, a->retry_after))
		fail("Retry-After not passed on", a->status, 0);
}

static void check_batch(const struct spool_tx_request *req, const struct http_answer *a)
{
	long s = a->status;
	enum http_fate fate = http_fate(s, HTTP_USE_BATCH);
	size_t n = req->count;
	switch (fate) {
	case HTTP_ACCEPT:
		for (size_t k = 0; k < n; k++)
			if (req->out[k].result != SPOOL_TX_ACCEPTED || req->out[k].status != (int)s)
				fail("2xx batch answer did not accept the event", s, k);
		if (req->status.call != SPOOL_TXC_DONE)
			fail("2xx batch answer not DONE", s, 0);
		break;
	case HTTP_PER_EVENT:
		check_207(req, a);
		break;
	case HTTP_FALLBACK:
		if (req->status.call != SPOOL_TXC_FALLBACK)
			fail("no batch endpoint, but no fall-back", s, 0);
		break;
	case HTTP_SPLIT:
	case HTTP_BISECT:
		/* too large, or some event poisons it: halves; alone, the
		 * event is rejected */
		if (n > 1) {
			if (req->status.call != SPOOL_TXC_SPLIT || req->status.status != (int)s)
				fail("batch refused as a whole, but not split in halves", s, 0);
		} else if (req->status.call != SPOOL_TXC_DONE ||
		           req->out[0].result != SPOOL_TX_REJECTED ||
		           req->out[0].status != (int)s || !req->out[0].reason[0]) {
			fail("lone event refused as a whole not rejected with status and reason", s,
			     0);
		}
		break;
	case HTTP_AUTH:
	case HTTP_MISSING:
	case HTTP_TRANSIENT:
		check_whole_failure(req, a, fate);
		break;
	default:
		fail("batch status with a fate no batch has", s, 0);
	}
}

static void check_single(const struct spool_tx_request *req, const struct http_answer *a)
{
	long s = a->status;
	enum http_fate fate = http_fate(s, HTTP_USE_SINGLE);
	const struct spool_tx_outcome *o = &req->out[0];
	if (fate == HTTP_ACCEPT) {
		if (o->result != SPOOL_TX_ACCEPTED || o->status != (int)s ||
		    req->status.call != SPOOL_TXC_DONE)
			fail("single event acknowledged but not accepted", s, 0);
		json_t *j = a->body_len ? json_loadb(a->body, a->body_len, 0, NULL) : NULL;
		const char *id = j ? json_string_value(json_object_get(j, "id")) : NULL;
		if (id ? strncmp(o->id, id, sizeof(o->id) - 1) != 0 : o->id[0] != '\0')
			fail("single answer's id not reported", s, 0);
		json_decref(j);
	} else if (fate == HTTP_REJECT) {
		if (o->result != SPOOL_TX_REJECTED || o->status != (int)s || !o->reason[0] ||
		    req->status.call != SPOOL_TXC_DONE)
			fail("single event refused but not rejected with status and reason", s, 0);
	} else if (fate == HTTP_AUTH || fate == HTTP_MISSING || fate == HTTP_TRANSIENT) {
		check_whole_failure(req, a, fate);
	} else {
		fail("single status with a fate no single event has", s, 0);
	}
}

/* What holds whatever the answer. */
static void check_common(const struct spool_tx_request *req, long s)
{
	const struct spool_tx_status *st = &req->status;
	if (st->call < SPOOL_TXC_DONE || st->call > SPOOL_TXC_TRANSIENT)
		fail("call status out of range", s, 0);
	if (!terminated(st->message, sizeof(st->message)))
		fail("call message not terminated", s, 0);
	if ((st->call == SPOOL_TXC_SPLIT || st->call == SPOOL_TXC_ISOLATE) && req->count < 2)
		fail("SPLIT or ISOLATE for a request of one event", s, 0);
	if (st->call != SPOOL_TXC_DONE && !st->message[0])
		fail("request sent back whole without a message", s, 0);
	for (size_t k = 0; k < req->count; k++) {
		const struct spool_tx_outcome *o = &req->out[k];
		if (o->result < SPOOL_TX_RETRY || o->result > SPOOL_TX_RETRY_AFTER)
			fail("outcome out of range", s, k);
		if (!terminated(o->id, sizeof(o->id)) || !terminated(o->reason, sizeof(o->reason)))
			fail("outcome id or reason not terminated", s, k);
		/* the agent sends it again (halves, one by one, the next
		 * transport) or keeps it: nothing may be settled yet */
		if (st->call != SPOOL_TXC_DONE && o->result != SPOOL_TX_RETRY)
			fail("request sent back whole with an event settled", s, k);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 5)
		return 0;
	long raw = 0;
	memcpy(&raw, data, size < sizeof(raw) ? size : sizeof(raw));
	check_fate(raw);

	unsigned flags = data[0];
	bool single = flags & 1, no_answer = flags & 2;
	size_t count = single ? 1 : 1 + data[1] % MAX_EVENTS;
	long status = no_answer ? 0 : (long)(((unsigned)data[2] << 8 | data[3]) % 1000);
	size_t rl = data[4];
	if (rl > size - 5)
		rl = size - 5;
	char retry[256];
	memcpy(retry, data + 5, rl);
	retry[rl] = '\0';
	const uint8_t *body = data + 5 + rl;
	size_t body_len = no_answer ? 0 : size - 5 - rl;

	double ra = rl ? http_parse_retry_after(retry) : -1;
	if (isnan(ra))
		fail("http_parse_retry_after gave NaN", status, 0);
	check_fate(status);

	/* the answer as finished() hands it over: the body NUL-terminated, in
	 * a block of exactly that size */
	char *copy = malloc(body_len + 1);
	if (!copy)
		abort();
	if (body_len)
		memcpy(copy, body, body_len);
	copy[body_len] = '\0';
	struct http_answer a = {
	    .status = status,
	    .retry_after = ra,
	    .body = copy,
	    .body_len = body_len,
	    .location = flags & 4 ? "https://elsewhere.example/api/v1/logs" : "",
	    .message =
	        no_answer ? "POST http://127.0.0.1:9/api/v1/logs: Couldn't connect to server" : "",
	};

	static char json[MAX_EVENTS][96], ids[MAX_EVENTS][27];
	struct spool_tx_event ev[MAX_EVENTS];
	for (size_t k = 0; k < count; k++)
		make_event(&ev[k], json[k], ids[k], k);
	struct spool_buf sent = {0};
	make_body(&sent, ev, count, single);

	/* exactly count outcomes, zeroed, as the agent hands them over */
	struct spool_tx_outcome *out = calloc(count, sizeof(*out));
	if (!out)
		abort();
	struct spool_tx_request req = {
	    .events = ev,
	    .count = count,
	    .out = out,
	    .status = {.call = SPOOL_TXC_DONE, .retry_after = -1},
	};
	if (single)
		single_answer(NULL, &req, &a, sent.len);
	else
		batch_answer(NULL, &req, &a, sent.len);

	check_common(&req, status);
	if (single)
		check_single(&req, &a);
	else
		check_batch(&req, &a);

	free(out);
	spool_buf_free(&sent);
	free(copy);
	return 0;
}
