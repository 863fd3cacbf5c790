/* http.h — what http_batch and http_single share (and the client's direct
 * send, through http_single): the `http:` section's keys, one libcurl multi
 * handle with up to max_in_flight transfers on kept-alive connections, the
 * request headers of PROTOCOL.md, gzip (libdeflate) with the 415 fall-back,
 * Retry-After, the bytes each request puts on the wire, and the one table
 * from HTTP status to an event's fate. */
#ifndef SPOOL_PLUGIN_HTTP_H
#define SPOOL_PLUGIN_HTTP_H

#include <curl/curl.h>
#include <stdbool.h>
#include <stddef.h>

#include <spool/transport.h>

#include "codec/json.h"

/* The rows of http_options[], in order: spool_tx_config.values[i] holds
 * the value of row i. */
enum http_key {
	HTTP_ENDPOINT,
	HTTP_API_KEY,
	HTTP_API_KEY_FILE,
	HTTP_HEADERS,
	HTTP_GZIP,
	HTTP_TLS_VERIFY,
	HTTP_TLS_CA_FILE,
	HTTP_TLS_CLIENT_CERT,
	HTTP_TLS_CLIENT_KEY,
	HTTP_CONNECT_TIMEOUT,
	HTTP_REQUEST_TIMEOUT,
	HTTP_PROXY,
	HTTP_NKEYS
};

/* The `http:` section, shared by http_batch and http_single. */
extern const struct spool_tx_option http_options[HTTP_NKEYS];

/* The rules no single row states: an endpoint, one source of the key,
 * client certificate and key together. */
int http_check(const struct spool_tx_value *v, size_t n, size_t *key, char *why, size_t whylen);

/* ---- the fate table (PROTOCOL.md) ---- */

/* Where an answer's status was met. */
enum http_use {
	HTTP_USE_SINGLE, /* POST ROOT/api/v1/logs */
	HTTP_USE_BATCH,	 /* POST ROOT/api/v1/logs/batch, the request as a whole */
	HTTP_USE_RESULT, /* one entry of a 207's results */
};

enum http_fate {
	HTTP_ACCEPT,	/* accepted: delete */
	HTTP_REJECT,	/* rejected for good: dead-letter */
	HTTP_KEEP,	/* this event stays, the others go on (207 entries) */
	HTTP_AUTH,	/* credentials refused: keep all, back off long */
	HTTP_MISSING,	/* endpoint missing: keep all, back off long */
	HTTP_FALLBACK,	/* no batch endpoint: next transport of the chain */
	HTTP_SPLIT,	/* too large: halves */
	HTTP_BISECT,	/* some event poisons the batch: halves, recursively, to find it */
	HTTP_ISOLATE,	/* nobody knows which events were taken: one by one */
	HTTP_TRANSIENT, /* keep all, retry after the backoff */
	HTTP_PER_EVENT, /* 207: read the results */
};

/* The fate of status (0: no answer) met as `use`. */
enum http_fate http_fate(long status, enum http_use use);

/* ---- one answer ---- */

struct http_answer {
	long status;	   /* 0: no answer (network error, timeout); message says why */
	double retry_after; /* < 0 if none */
	const char *body;  /* NUL-terminated, may be "" */
	size_t body_len;
	const char *location; /* Location header ("" if none) */
	const char *message;  /* no answer: the network error */
};

/* Copies the "detail" (or the start of the body) of an answer into buf. */
void http_detail(const struct http_answer *a, char *buf, size_t len);

/* Fills a request's status for an answer that concerns the whole endpoint
 * (fate AUTH, MISSING or TRANSIENT); `what` names the request in the message. */
void http_fail_call(const struct http_answer *a, enum http_fate fate, struct spool_tx_status *st,
		    const char *what);

/* Parses Retry-After (delta seconds or an HTTP-date); < 0 if unusable. */
double http_parse_retry_after(const char *value);

/* ---- the client: transfers in flight ---- */

struct http_client;
struct http_xfer;

/* What a transport does with a finished transfer: fill req->out and
 * req->status from the answer.  body_len: bytes of the JSON the transfer
 * carried (before any compression). */
typedef void (*http_answer_fn)(struct http_client *c, struct spool_tx_request *req,
			       const struct http_answer *a, size_t body_len);

/* path: "/api/v1/logs" or "/api/v1/logs/batch".  0 or a negative errno
 * with err filled. */
int http_client_create(const struct spool_tx_config *cfg, const char *path, http_answer_fn on_answer,
		       struct http_client **out, char *err, size_t errlen);
/* Abandons what is in flight (no answer is waited for) and frees. */
void http_client_destroy(struct http_client *c);

/* Bytes of the body http_submit_events() sends for req, uncompressed. */
size_t http_events_len(const struct spool_tx_request *req, const char *open, const char *sep,
		       const char *close);
/* Starts a POST whose body is open, then the JSON of req's events with sep
 * between them, then close, with an Idempotency-Key when idem is not NULL,
 * and sets req->wire_bytes (body as sent and request headers; a resend
 * after a 415 adds its own).  The body is read from req->events while the
 * transfer runs (they stay valid until the request is handed back), and
 * gathered into one buffer only to be compressed.  open, sep and close
 * must outlive the transfer too (string literals).  0, -EBUSY when
 * max_in_flight transfers are open already, or another negative errno
 * (the transfer was not started).  body_len: http_events_len() of the
 * same arguments when the caller has it already, or 0 to have it counted. */
int http_submit_events(struct http_client *c, struct spool_tx_request *req, const char *idem,
		       const char *open, const char *sep, const char *close, size_t body_len);
/* Hands req back finished without a transfer (out and status already
 * filled): the next http_poll() returns it. */
void http_finish_now(struct http_client *c, struct spool_tx_request *req);
/* The transport ABI's poll(): waits at most timeout seconds. */
int http_poll(struct http_client *c, double timeout, struct spool_tx_request **done, size_t max);

const struct spool_tx_config *http_config(const struct http_client *c);

#endif
