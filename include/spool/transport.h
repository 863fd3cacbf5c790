/* transport.h — the plugin ABI of spool-agent transports.
 *
 * A transport is a shared object exporting one symbol, SPOOL_TRANSPORT_ENTRY
 * ("spool_transport_entry"): a `const struct spool_transport` whose first
 * field is abi_version.  The loader reads abi_version first and refuses the
 * plugin unless it equals SPOOL_TRANSPORT_ABI; fields are only ever appended
 * (struct_size tells how many the plugin knows).
 *
 * The transport only classifies: for each event it says accepted (with the
 * server's id), rejected for good (status and reason), or try again (maybe
 * after N seconds), and for the call as a whole whether the agent should fall
 * back to the next transport of its chain, split the batch, send its events
 * one by one, or back off.  The agent owns retry, backoff, deletion and dead
 * letters.
 *
 * Example (a transport that accepts everything):
 *
 *   static int ok_send(void *st, const struct spool_tx_batch *b,
 *                      struct spool_tx_outcome *out, struct spool_tx_status *cs)
 *   {
 *           for (size_t i = 0; i < b->count; i++)
 *                   out[i].result = SPOOL_TX_ACCEPTED;
 *           return 0;
 *   }
 *   SPOOL_TRANSPORT_EXPORT const struct spool_transport spool_transport_entry = {
 *           .abi_version = SPOOL_TRANSPORT_ABI,
 *           .struct_size = sizeof(struct spool_transport),
 *           .name = "ok", .send = ok_send,
 *   };
 */
#ifndef SPOOL_TRANSPORT_H
#define SPOOL_TRANSPORT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SPOOL_TRANSPORT_ABI 1
#define SPOOL_TRANSPORT_ENTRY "spool_transport_entry"

#if defined(__GNUC__)
#define SPOOL_TRANSPORT_EXPORT __attribute__((visibility("default")))
#else
#define SPOOL_TRANSPORT_EXPORT
#endif

/* One extra request header from the configuration. */
struct spool_tx_header {
	const char *name;
	const char *value;
};

/* Log levels of the agent's logger (syslog's numbers). */
enum spool_tx_log_level {
	SPOOL_TX_LOG_ERR = 3,
	SPOOL_TX_LOG_WARNING = 4,
	SPOOL_TX_LOG_INFO = 6,
	SPOOL_TX_LOG_DEBUG = 7,
};

/* What create() gets.  Every pointer stays valid until destroy().  Strings
 * may be NULL when not configured. */
struct spool_tx_config {
	uint32_t struct_size;	 /* sizeof(struct spool_tx_config) of the agent */
	const char *endpoint;	 /* ROOT: normalised, no trailing '/', no /api/v1 */
	const char *api_key;	 /* never log it; at most its last 4 characters */
	const struct spool_tx_header *headers;
	size_t nheaders;
	int gzip;		 /* compress request bodies */
	double connect_timeout;	 /* seconds */
	double request_timeout;	 /* seconds, whole request */
	int tls_verify;		 /* verify peer and host (default on) */
	const char *ca_file;
	const char *client_cert;
	const char *client_key;
	const char *user_agent;	 /* "master-log-spool/<version>" (libcurl adds its own) */
	size_t max_body_bytes;	 /* largest JSON body to send for >1 event (0: none) */
	const char *file_path;	 /* the file transport's output */
	/* The agent's logger; never NULL. */
	void (*log)(void *log_ctx, int level, const char *fmt, ...)
		__attribute__((format(printf, 3, 4)));
	void *log_ctx;
};

/* One event of a batch.  data points to the stored msgpack map; every
 * pointer stays valid for the duration of send(). */
struct spool_tx_event {
	uint64_t seq;
	int severity;	     /* enum spool_severity */
	int64_t enqueue_us;  /* microseconds since the epoch */
	const void *data;    /* msgpack map (docs/event-format.md) */
	size_t len;
	const char *client_event_id; /* from the map, or NULL; not NUL-terminated */
	size_t client_event_id_len;
	uint32_t attempts;   /* sends tried before this one */
};

struct spool_tx_batch {
	const struct spool_tx_event *events;
	size_t count;
	int delivery_metadata; /* add metadata.delivery when encoding */
	int64_t now_us;
};

/* Per-event outcome.  The agent zeroes the array before send(): an event the
 * transport does not touch stays SPOOL_TX_RETRY. */
enum spool_tx_result {
	SPOOL_TX_RETRY = 0,	  /* keep; try again after the agent's backoff */
	SPOOL_TX_ACCEPTED = 1,	  /* acknowledged: delete it; id may be set */
	SPOOL_TX_REJECTED = 2,	  /* rejected for good: dead-letter (status, reason) */
	SPOOL_TX_RETRY_AFTER = 3, /* keep; the server asked to wait retry_after seconds */
};

struct spool_tx_outcome {
	int result; /* enum spool_tx_result */
	int status; /* HTTP status (or another code) that decided it; 0 if none */
	double retry_after;
	char id[80];
	char reason[240];
};

/* The call as a whole. */
enum spool_tx_call {
	SPOOL_TXC_DONE = 0,	/* the outcomes say it all */
	SPOOL_TXC_FALLBACK = 1, /* this transport cannot serve the endpoint (no batch API): use the next in the chain */
	SPOOL_TXC_SPLIT = 2,	/* too large as a whole: send each half */
	SPOOL_TXC_ISOLATE = 3,	/* refused as a whole because of some event: send them one by one */
	SPOOL_TXC_AUTH = 4,	/* credentials refused: keep every event, back off long */
	SPOOL_TXC_MISSING = 5,	/* endpoint missing or misconfigured: keep every event, back off long */
	SPOOL_TXC_TRANSIENT = 6, /* failed for now (network, timeout, 5xx, 429): keep every event */
};

struct spool_tx_status {
	int call;	    /* enum spool_tx_call; the agent sets DONE before send() */
	int status;	    /* HTTP status of the deciding answer, 0 if none */
	double retry_after; /* seconds the server asked for, < 0 if none */
	char message[240];  /* for logs and agent.last_error; never the API key */
};

struct spool_transport {
	uint32_t abi_version; /* SPOOL_TRANSPORT_ABI: checked before anything else */
	uint32_t struct_size; /* sizeof(struct spool_transport) when built */
	const char *name;
	const char *description;
	/* Makes an instance.  0, or a negative errno with err filled. */
	int (*create)(const struct spool_tx_config *cfg, void **state, char *err, size_t errlen);
	/* NULL-safe on state. */
	void (*destroy)(void *state);
	/* Sends batch->count >= 1 events; fills out[0..count) and *call.
	 * Returns 0, or a negative errno for a local failure (the agent then
	 * treats the call as transient). */
	int (*send)(void *state, const struct spool_tx_batch *batch, struct spool_tx_outcome *out,
		    struct spool_tx_status *call);
	/* SPOOL_TX_F_* (read only when struct_size covers it). */
	uint32_t flags;
};

/* send() makes one request per event (the agent then paces the events
 * itself when min_request_interval_seconds is set). */
#define SPOOL_TX_F_REQUEST_PER_EVENT 1u

#ifdef __cplusplus
}
#endif
#endif
