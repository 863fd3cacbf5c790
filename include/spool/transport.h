/* transport.h — the transport ABI of spool-agent (version 2).
 *
 * A transport moves events to some far side and says, for each event,
 * what became of it: accepted (with the far side's id), rejected for good
 * (status and reason), or try again (maybe after N seconds); and, for a
 * request as a whole, whether the agent should fall back to the next
 * transport of its chain, split the request, send its events one by one, or
 * back off.  The agent owns everything else: reading the spool, encoding
 * each event once, retry, backoff, pacing, deletion and dead letters.
 *
 * The transports http_batch, http_single and file are built into the agent.
 * Any other is a shared object exporting one symbol, SPOOL_TRANSPORT_ENTRY
 * ("spool_transport_entry"): a `const struct spool_transport` whose first
 * field is abi_version.  The loader reads abi_version first and refuses the
 * object, naming the file, unless it equals SPOOL_TRANSPORT_ABI; fields are
 * only ever appended (struct_size tells how many the transport knows).
 *
 * Settings: a transport declares its keys in a table (`options`), each with
 * a type, a default and a one-line description.  The agent reads them from
 * the transport's own section of the YAML file (`section:`), checks them
 * against the table with the same FILE:LINE:COL errors as its own keys, lists
 * them in `spool-agent --help-config`, and hands create() the values in
 * table order (spool_tx_config.values).
 *
 * Requests: the agent hands over a run of events (struct spool_tx_request),
 * each already encoded as one JSON object.  A transport either sends it at
 * once and returns (send), or starts it and reports it finished later
 * (submit and poll), so that up to spool_tx_config.max_in_flight requests
 * are open at the same time.  SPOOL_TXC_SPLIT or SPOOL_TXC_ISOLATE for a
 * request of one event dead-letters it with the request's status and
 * message.
 *
 * Example (a transport that accepts everything; its one key is `ok.note`):
 *
 *   static const struct spool_tx_option ok_options[] = {
 *           {.key = "note", .type = SPOOL_TX_STRING, .doc = "a word to log at start"},
 *   };
 *   static int ok_send(void *state, struct spool_tx_request *req)
 *   {
 *           for (size_t i = 0; i < req->count; i++)
 *                   req->out[i].result = SPOOL_TX_ACCEPTED;
 *           return 0;
 *   }
 *   SPOOL_TRANSPORT_EXPORT const struct spool_transport spool_transport_entry = {
 *           .abi_version = SPOOL_TRANSPORT_ABI,
 *           .struct_size = sizeof(struct spool_transport),
 *           .name = "ok",
 *           .section = "ok",
 *           .options = ok_options,
 *           .noptions = 1,
 *           .send = ok_send,
 *   };
 */
#ifndef SPOOL_TRANSPORT_H
#define SPOOL_TRANSPORT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SPOOL_TRANSPORT_ABI 2
#define SPOOL_TRANSPORT_ENTRY "spool_transport_entry"

#if defined(__GNUC__)
#define SPOOL_TRANSPORT_EXPORT __attribute__((visibility("default")))
#else
#define SPOOL_TRANSPORT_EXPORT
#endif

/* ---- settings ---- */

/* What a key holds in the YAML file. */
enum spool_tx_type {
	SPOOL_TX_STRING = 0, /* text, checked by its kind */
	SPOOL_TX_INT = 1,    /* a whole number from min to max */
	SPOOL_TX_NUMBER = 2, /* a decimal number from min to max (seconds, ...) */
	SPOOL_TX_BOOL = 3,   /* true or false */
	SPOOL_TX_LIST = 4,   /* a list of non-empty strings (or one comma-separated string) */
	SPOOL_TX_MAP = 5,    /* a map of HTTP-header-like names to strings */
};

/* How the agent checks a string's value before create() sees it. */
enum spool_tx_kind {
	SPOOL_TX_TEXT = 0,	  /* any non-empty text */
	SPOOL_TX_URL = 1,	  /* a Master Log endpoint (PROTOCOL.md); the value is ROOT */
	SPOOL_TX_SECRET = 2,	  /* printable, no white space, at most 1 KiB, never echoed */
	SPOOL_TX_SECRET_FILE = 3, /* a file owned by the agent's user, mode 0600 or 0400,
				   * holding one line; the value is that line */
	SPOOL_TX_READ_FILE = 4,	  /* an existing, readable regular file */
	SPOOL_TX_DIR = 5,	  /* an existing directory */
	SPOOL_TX_OUT_FILE = 6,	  /* a file to write, in an existing directory */
	SPOOL_TX_CHOICE = 7,	  /* one of `choices`, matched without case */
};

/* One row of a transport's key table. */
struct spool_tx_option {
	const char *key;     /* inside the section; dots nest: "tls.ca_file" */
	uint32_t type;	     /* enum spool_tx_type */
	uint32_t kind;	     /* enum spool_tx_kind (strings) */
	const char *def;     /* default, written as in the file; NULL: unset */
	const char *env;     /* variable read when the file leaves the key out; NULL */
	double min, max;     /* SPOOL_TX_INT and SPOOL_TX_NUMBER */
	const char *choices; /* SPOOL_TX_CHOICE: "a|b|c" */
	const char *doc;     /* one line for --help-config */
};

struct spool_tx_pair {
	const char *name;
	const char *value;
};

/* A key's value, as create() and check() get it.  Every pointer stays valid
 * until destroy() (for check(): until it returns). */
struct spool_tx_value {
	int set;	  /* 1: configured, from the environment or a default */
	const char *text; /* strings: the value (SPOOL_TX_URL: ROOT; SECRET_FILE:
			   * the key read from the file); other types: as written */
	int64_t integer;  /* SPOOL_TX_INT */
	double number;	  /* SPOOL_TX_NUMBER */
	int boolean;	  /* SPOOL_TX_BOOL */
	const char *const *items; /* SPOOL_TX_LIST */
	size_t nitems;
	const struct spool_tx_pair *pairs; /* SPOOL_TX_MAP */
	size_t npairs;
};

/* Log levels of the agent's logger (syslog's numbers). */
enum spool_tx_log_level {
	SPOOL_TX_LOG_ERR = 3,
	SPOOL_TX_LOG_WARNING = 4,
	SPOOL_TX_LOG_INFO = 6,
	SPOOL_TX_LOG_DEBUG = 7,
};

/* What create() gets.  Every pointer stays valid until destroy(). */
struct spool_tx_config {
	uint32_t struct_size; /* sizeof(struct spool_tx_config) of the agent */
	const char *name;     /* the transport's name in the chain */
	/* One value per row of the transport's options, in table order. */
	const struct spool_tx_value *values;
	size_t nvalues;
	const char *user_agent;	 /* "master-log-spool/<version>" */
	size_t max_batch_events; /* most events the agent puts in one request */
	size_t max_body_bytes;	 /* most bytes of JSON a request of several events may carry */
	uint32_t max_in_flight;	 /* most requests the agent keeps open at once (>= 1) */
	/* The agent's logger; never NULL.  The agent removes the API key from
	 * every line it is given. */
	void (*log)(void *log_ctx, int level, const char *fmt, ...)
#if defined(__GNUC__)
		__attribute__((format(printf, 3, 4)))
#endif
		;
	void *log_ctx;
	/* The agent's bandwidth_limit in bytes per second (0: none).  The agent
	 * paces request starts to it; a transport that can also slow its own
	 * writes (libcurl's CURLOPT_MAX_SEND_SPEED_LARGE) keeps each request
	 * under it, so no request bursts above the cap. */
	double bandwidth_limit;
};

/* ---- requests ---- */

/* One event of a request.  Every pointer stays valid until the request is
 * finished (returned by send(), or by poll()). */
struct spool_tx_event {
	uint64_t seq;	     /* its sequence in the spool */
	int severity;	     /* enum spool_severity */
	int64_t enqueue_us;  /* when it was spooled, microseconds since the epoch */
	const char *json;    /* the event as one JSON object (metadata.c_client.spool_seq
			      * and, when configured, metadata.delivery included); not
			      * NUL-terminated */
	size_t json_len;
	const char *client_event_id; /* NUL-terminated, or NULL when the event has none */
	uint32_t attempts;   /* sends tried before this one */
};

/* Per-event outcome.  The agent clears them before handing the request
 * over (result SPOOL_TX_RETRY, status 0, retry_after 0, id and reason
 * empty strings; the rest of the text buffers is not zeroed): an event the
 * transport does not touch stays SPOOL_TX_RETRY. */
enum spool_tx_result {
	SPOOL_TX_RETRY = 0,	  /* keep; try again after the agent's backoff */
	SPOOL_TX_ACCEPTED = 1,	  /* acknowledged: delete it; id may be set */
	SPOOL_TX_REJECTED = 2,	  /* rejected for good: dead-letter (status, reason) */
	SPOOL_TX_RETRY_AFTER = 3, /* keep; the far side asked to wait retry_after seconds */
};

struct spool_tx_outcome {
	int result; /* enum spool_tx_result */
	int status; /* status (HTTP or other) that decided it; 0 if none */
	double retry_after;
	char id[80];
	char reason[240];
};

/* The request as a whole. */
enum spool_tx_call {
	SPOOL_TXC_DONE = 0,	 /* the outcomes say it all */
	SPOOL_TXC_FALLBACK = 1,	 /* this transport cannot serve the far side (no batch API): use the next in the chain */
	SPOOL_TXC_SPLIT = 2,	 /* refused as a whole (too large, or some event in it is bad):
				  * send each half as its own request, recursively */
	SPOOL_TXC_ISOLATE = 3,	 /* unknown which events were taken: send them one by one
				  * through the next transport */
	SPOOL_TXC_AUTH = 4,	 /* credentials refused: keep every event, back off long */
	SPOOL_TXC_MISSING = 5,	 /* far side missing or misconfigured: keep every event, back off long */
	SPOOL_TXC_TRANSIENT = 6, /* failed for now (network, timeout, 5xx, 429): keep every event */
};

struct spool_tx_status {
	int call;	    /* enum spool_tx_call; the agent sets DONE before handing over */
	int status;	    /* status of the deciding answer, 0 if none */
	double retry_after; /* seconds the far side asked for, < 0 if none */
	char message[240];  /* for logs and agent.last_error */
};

struct spool_tx_request {
	const struct spool_tx_event *events;
	size_t count;		      /* >= 1 */
	struct spool_tx_outcome *out; /* count outcomes, cleared */
	struct spool_tx_status status;
	void *host; /* the agent's: the transport leaves it alone */
	/* Set by the transport when it starts the request (submit or send):
	 * the bytes it puts on the wire for it, body as sent (compressed) and
	 * request headers.  0: unknown (the agent then counts the events'
	 * JSON).  The agent's bandwidth_limit is charged with it. */
	uint64_t wire_bytes;
};

/* ---- the entry ---- */

struct spool_transport {
	uint32_t abi_version; /* SPOOL_TRANSPORT_ABI: checked before anything else */
	uint32_t struct_size; /* sizeof(struct spool_transport) when built */
	const char *name;
	const char *description;
	/* The YAML section holding its keys (NULL: none).  Transports that
	 * share a section (http_batch and http_single: `http`) share one
	 * table. */
	const char *section;
	const struct spool_tx_option *options;
	size_t noptions;
	/* Checks what no single row can (keys that go together, a key this
	 * transport needs).  values: one per option, as for create().  0, or -1
	 * with *key the index of the option to blame and why filled.  NULL: no
	 * such rules. */
	int (*check)(const struct spool_tx_value *values, size_t nvalues, size_t *key, char *why,
		     size_t whylen);
	/* Makes an instance.  0, or a negative errno with err filled. */
	int (*create)(const struct spool_tx_config *cfg, void **state, char *err, size_t errlen);
	/* Finishes what is open without waiting for answers, then frees.
	 * NULL-safe on state. */
	void (*destroy)(void *state);
	/* Blocking form: sends req and fills req->out and req->status before
	 * returning.  Returns 0, or a negative errno for a local failure (the
	 * agent then treats the request as transient).  A transport gives
	 * send, or submit and poll. */
	int (*send)(void *state, struct spool_tx_request *req);
	/* Asynchronous form: submit starts req and returns at once (0), or
	 * returns a negative errno when it could not start it (nothing was
	 * sent).  The agent never has more than max_in_flight started. */
	int (*submit)(void *state, struct spool_tx_request *req);
	/* Waits at most timeout seconds (0: not at all) for started requests
	 * to finish; puts up to max finished ones, with out and status filled,
	 * into done and returns how many (0 when none finished in time), or a
	 * negative errno. */
	int (*poll)(void *state, double timeout, struct spool_tx_request **done, size_t max);
	uint32_t flags; /* SPOOL_TX_F_* */
};

/* Each request carries one event whatever its count: the agent hands this
 * transport single events (and paces them itself when
 * min_request_interval_seconds is set). */
#define SPOOL_TX_F_ONE_PER_REQUEST 1u

#ifdef __cplusplus
}
#endif
#endif
