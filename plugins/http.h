/* http.h — what http_batch and http_single share: one reused libcurl easy
 * handle (keep-alive), the request headers of PROTOCOL.md, gzip with the 415
 * fall-back, Retry-After, and response capture.  Compiled into each plugin. */
#ifndef SPOOL_PLUGIN_HTTP_H
#define SPOOL_PLUGIN_HTTP_H

#include <curl/curl.h>
#include <stdbool.h>
#include <stddef.h>

#include "codec/json.h"
#include <spool/transport.h>

struct http_conn {
	CURL *curl;
	const struct spool_tx_config *cfg;
	char *url;
	char user_agent[160];
	bool gzip; /* current setting: turned off for good after a 415 */
	struct spool_buf gz;   /* compressed body */
	struct spool_buf resp; /* answer body */
	double retry_after;    /* from the last answer, < 0 if none */
	char location[256];    /* Location of the last answer ("" if none), for messages */
	char errbuf[CURL_ERROR_SIZE];
};

/* The answer to one POST. */
struct http_answer {
	long status; /* 0: no answer (network error, timeout) */
	double retry_after;
	const char *body; /* c->resp.data, NUL-terminated, may be "" */
	size_t body_len;
};

/* path: "/api/v1/logs" or "/api/v1/logs/batch".  0 or a negative errno with
 * err filled. */
int http_conn_init(struct http_conn *c, const struct spool_tx_config *cfg, const char *path,
		   char *err, size_t errlen);
void http_conn_fini(struct http_conn *c);

/* POSTs body[0..len) with the protocol's headers (and Idempotency-Key when
 * idem is not NULL).  Compresses when gzip is on; a 415 to a compressed body
 * turns gzip off for this connection and resends uncompressed.  Returns 0
 * with *ans filled (ans->status 0 and msg set when no answer came), or a
 * negative errno for a local failure. */
int http_conn_post(struct http_conn *c, const char *body, size_t len, const char *idem,
		   struct http_answer *ans, char *msg, size_t msglen);

/* Fills call->call/status/retry_after/message for an answer that is not a
 * per-event verdict: 401/403 AUTH, 3xx/408/429/5xx/other TRANSIENT, no
 * answer TRANSIENT. */
void http_classify_failure(const struct http_conn *c, const struct http_answer *a,
			   struct spool_tx_status *call, const char *what);

/* Copies the "detail" (or the start of the body) of an answer into buf. */
void http_detail(const struct http_answer *a, char *buf, size_t len);

/* Parses Retry-After (delta seconds or an HTTP-date); < 0 if unusable. */
double http_parse_retry_after(const char *value);

#endif
