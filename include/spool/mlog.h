/* mlog.h — the Master Log client API (libmlog; docs/client.md).
 *
 * Logging a line:
 *
 *   #include <spool/mlog.h>
 *
 *   mlog("Telescope array online");
 *   mlog_warn("Seeing degraded: %.1f arcsec", fwhm);
 *   mlog_ex(&(struct mlog_opts){ .severity = MLOG_WARN,
 *                                .tags = (const char *[]){ "dome", "weather", NULL } },
 *           "Dome slit wind threshold approaching");
 *   struct mlog_result r = mlog_flush(5);
 *   if (!r.ok)
 *           fprintf(stderr, "Master Log flush failed: %s\n", r.error);
 *
 * By default (async mode) each call commits one event to the spool on local
 * disk (see spool.h for the durability modes) and returns at once;
 * spool-agent, a process of its own, sends it.  When no agent runs on the
 * spool the library starts one (spawn_agent), which exits by itself once
 * the spool has stayed empty and idle for a while.  No request to the
 * server is made on a thread of the calling program, apart from the direct
 * send below, in the caller's own thread.
 * With async_mode false a call POSTs its event to ROOT/api/v1/logs and
 * returns the server's answer; an event the server cannot take now is
 * spooled instead.
 *
 * Settings: what mlog_configure() (or mlog_client_new()) sets wins, then the
 * MASTER_LOG_* environment variable, then the default.  A bad environment
 * value is an error naming the variable; each logging call then returns it.
 *
 * Failures are never fatal: no call aborts, exits or prints.  Every call is
 * thread-safe, and safe in a child after fork() (the child reopens the
 * spool and leaves the parent's connection alone).
 */
#ifndef SPOOL_MLOG_H
#define SPOOL_MLOG_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>


#ifdef __cplusplus
extern "C" {
#endif

/* Marks the library's exported functions (it is built with hidden
 * visibility; users of the header see a plain declaration). */
#if defined(MLOG_BUILDING) && defined(__GNUC__)
#define MLOG_API __attribute__((visibility("default")))
#else
#define MLOG_API
#endif

#if defined(__GNUC__)
#define MLOG_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define MLOG_PRINTF(f, a)
#endif

/* Severities.  0 (what a designated initialiser leaves) means info. */
enum mlog_severity {
	MLOG_DEFAULT = 0, /* info */
	MLOG_DEBUG = 1,
	MLOG_INFO = 2,
	MLOG_WARN = 3,
	MLOG_ERROR = 4,
	MLOG_FATAL = 5,
};

/* A typed metadata value (mlog_opts.metadata). */
enum mlog_kv_type {
	MLOG_KV_STR = 0,
	MLOG_KV_INT = 1,
	MLOG_KV_DOUBLE = 2,
	MLOG_KV_BOOL = 3,
};

struct mlog_kv {
	const char *key;        /* UTF-8, not c_client or delivery */
	enum mlog_kv_type type;
	const char *s;          /* MLOG_KV_STR */
	int64_t i;              /* MLOG_KV_INT */
	double d;               /* MLOG_KV_DOUBLE: finite */
	bool b;                 /* MLOG_KV_BOOL */
};

#define MLOG_EVENT_ID_MAX 80
#define MLOG_ERROR_MAX    256

/* Limits a logging call checks (docs/client.md, "Limits"): the message
 * text; how deep metadata_json may nest (its outer object is level 1); the
 * event as JSON, which must fit one request of the ingest API (5 MiB,
 * PROTOCOL.md) with room for what the sender adds.  The whole encoded event
 * must also fit the spool's max_record_bytes (1 MiB + 64 KiB by default). */
#define MLOG_MAX_MESSAGE_BYTES    ((size_t)1 << 20)
#define MLOG_METADATA_MAX_DEPTH   63
#define MLOG_MAX_EVENT_JSON_BYTES (((size_t)5 << 20) - 4096)

/* What a call did.  Plain data: copy it, keep it, nothing to free. */
struct mlog_result {
	bool ok;         /* the event is safe: spooled, or accepted by the server */
	int status_code; /* HTTP status of a direct send (async_mode false); 0 otherwise */
	char event_id[MLOG_EVENT_ID_MAX]; /* the server's id (direct send), else the client_event_id
	                                   */
	bool queued;                      /* the event sits in the spool for the agent */
	bool accepted; /* the spool or the server took the event (false: dropped or rejected) */
	char error[MLOG_ERROR_MAX]; /* "" when ok and nothing to report; a longer
	                             * sentence keeps its start and end, joined
	                             * by " ... " */
	/* mlog_flush(): events of this process, logged since its previous
	 * flush, that the server rejected for good (moved to the dead letters;
	 * ok is then false).  A later addition, placed in what was the
	 * struct's tail padding: its size and every other field are as they
	 * were, so programs built before it work unchanged. */
	uint16_t dead_lettered;
};

/* Per-event options, all optional (zero: none / default).  A call refuses
 * (ok false, error naming it) metadata_json that is not one JSON object or
 * nests deeper than MLOG_METADATA_MAX_DEPTH; typed values with a NULL or
 * invalid UTF-8 key, an unknown type, a NULL string or a NaN/infinite
 * double; a key given twice (typed and JSON together); and the reserved
 * keys c_client and delivery.  Text that is not valid UTF-8 in the message,
 * title, tags or string values is sent with each bad byte as U+FFFD. */
struct mlog_opts {
	enum mlog_severity severity;
	const char *title;
	const char *const *tags;         /* NULL-terminated */
	int64_t ttl_seconds;             /* 0: none; else > 0 */
	const char *metadata_json;       /* a JSON object as text, e.g. "{\"fwhm\": 3.4}" */
	const struct mlog_kv *metadata; /* typed values */
	size_t nmetadata;
};

/* Tri-state switches: MLOG_UNSET takes the environment, then the default. */
enum mlog_switch {
	MLOG_UNSET = 0,
	MLOG_OFF = 1,
	MLOG_ON = 2,
};

/* In a number field, 0 means "not set".  MLOG_NONE sets it to zero (or "no
 * limit" for max_queue_size and max_spool_bytes). */
#define MLOG_NONE (-1)

/* Settings; docs/client.md lists each with its variable and default. */
struct mlog_config {
	const char *api_key;             /* MASTER_LOG_API_KEY */
	const char *endpoint;            /* MASTER_LOG_ENDPOINT: root, /api/v1 or /api/v1/logs */
	long batch_size;                 /* MASTER_LOG_BATCH_SIZE (100) */
	double flush_interval_seconds;   /* MASTER_LOG_FLUSH_INTERVAL_SECONDS (1.0) */
	long max_queue_size;             /* MASTER_LOG_MAX_QUEUE_SIZE: spool events (no limit) */
	enum mlog_switch drop_when_full; /* MASTER_LOG_DROP_WHEN_FULL (on) */
	double queue_timeout_seconds;    /* MASTER_LOG_QUEUE_TIMEOUT_SECONDS (0.25) */
	enum mlog_switch backpressure;   /* MASTER_LOG_BACKPRESSURE (on) */
	double initial_send_seconds_per_log; /* MASTER_LOG_INITIAL_SEND_SECONDS_PER_LOG (0.005) */
	double max_enqueue_sleep_seconds;    /* MASTER_LOG_MAX_ENQUEUE_SLEEP_SECONDS (0.25) */
	double min_request_interval_seconds; /* MASTER_LOG_MIN_REQUEST_INTERVAL_SECONDS (0) */
	enum mlog_switch async_mode;         /* MASTER_LOG_ASYNC (on) */
	const char *spool_dir;               /* MASTER_LOG_SPOOL_DIR (spool_default_dir()) */
	const char *durability;  /* MASTER_LOG_DURABILITY: sync, commit, buffered (commit) */
	int64_t max_spool_bytes; /* MASTER_LOG_MAX_SPOOL_BYTES (1 GiB) */
	/* MASTER_LOG_SPAWN_AGENT: start spool-agent for the spool when none
	 * runs (on) */
	enum mlog_switch spawn_agent;
	const char *ca_file; /* MASTER_LOG_CA_FILE: CA bundle (PEM) for https endpoints (the
	                      * system's) */
	/* MASTER_LOG_AGENT_IDLE_SECONDS: how long an agent the library started
	 * stays with an empty spool and no new event before it exits (30; at
	 * least 3 x flush_interval_seconds) */
	double agent_idle_seconds;
};

/* At exit (and in mlog_shutdown(), mlog_client_free()), how long the
 * library waits at most for the agent to acknowledge what this process
 * logged, when an agent runs. */
#define MLOG_EXIT_WAIT_SECONDS 2.0

/* ---- the process-wide client ---- */

/* Sets the settings of the process-wide client (the fields left unset come
 * from the environment, then the defaults) and checks them.  Returns 0, or
 * -EINVAL when a field or a MASTER_LOG_* variable is bad (the previous
 * settings then stay; mlog_configure_ex() gives the sentence naming it).  The next
 * logging call opens the spool with the new settings (the old client is
 * shut down first, as by mlog_shutdown()). */
MLOG_API int mlog_configure(const struct mlog_config *cfg);
/* The same, with the sentence in err (may be NULL). */
MLOG_API int mlog_configure_ex(const struct mlog_config *cfg, char *err, size_t errlen);

/* printf-style, info severity. */
MLOG_API struct mlog_result mlog(const char *fmt, ...) MLOG_PRINTF(1, 2);
MLOG_API struct mlog_result mlog_debug(const char *fmt, ...) MLOG_PRINTF(1, 2);
MLOG_API struct mlog_result mlog_info(const char *fmt, ...) MLOG_PRINTF(1, 2);
MLOG_API struct mlog_result mlog_warn(const char *fmt, ...) MLOG_PRINTF(1, 2);
MLOG_API struct mlog_result mlog_error(const char *fmt, ...) MLOG_PRINTF(1, 2);
MLOG_API struct mlog_result mlog_fatal(const char *fmt, ...) MLOG_PRINTF(1, 2);
/* With options (opts may be NULL). */
MLOG_API struct mlog_result mlog_ex(const struct mlog_opts *opts, const char *fmt, ...)
    MLOG_PRINTF(2, 3);
/* va_list forms. */
MLOG_API struct mlog_result mlog_v(enum mlog_severity sev, const char *fmt, va_list ap)
    MLOG_PRINTF(2, 0);
MLOG_API struct mlog_result mlog_ex_v(const struct mlog_opts *opts, const char *fmt, va_list ap)
    MLOG_PRINTF(2, 0);

/* Waits until every event this process logged before the call has left
 * the spool (acknowledged by the server through spool-agent, or
 * dead-lettered), or timeout_seconds passed (ok false; error says how many
 * are still pending, and why when known).  When some of this process's
 * events were dead-lettered (rejected for good) since its previous flush,
 * ok is false, dead_lettered counts them and error says so.  Starts spool-agent first when
 * none runs (spawn_agent); when none runs and none can be started (not
 * found, refused its settings) it fails at once, saying why.  With no
 * endpoint, or spawn_agent off, and no agent running it times out. */
MLOG_API struct mlog_result mlog_flush(double timeout_seconds);

/* Commits what is staged, wakes the agent (starting one if need be) and,
 * only when an agent runs, waits at most MLOG_EXIT_WAIT_SECONDS for its
 * acknowledgements (best effort; never on a network call), then closes the
 * spool.  Logging again afterwards starts over.  Also run at normal exit
 * (atexit). */
MLOG_API void mlog_shutdown(void);

/* ---- client objects (no global state) ---- */

struct mlog_client;

/* A client with its own settings (cfg may be NULL: environment and
 * defaults).  0, or -EINVAL / -ENOMEM with a sentence in err. */
MLOG_API int mlog_client_new(const struct mlog_config *cfg, struct mlog_client **out, char *err,
                              size_t errlen);
MLOG_API struct mlog_result mlog_client_log(struct mlog_client *c, const struct mlog_opts *opts,
                                             const char *fmt, ...) MLOG_PRINTF(3, 4);
MLOG_API struct mlog_result mlog_client_vlog(struct mlog_client *c, const struct mlog_opts *opts,
                                              const char *fmt, va_list ap) MLOG_PRINTF(3, 0);
MLOG_API struct mlog_result mlog_client_debug(struct mlog_client *c, const char *fmt, ...)
    MLOG_PRINTF(2, 3);
MLOG_API struct mlog_result mlog_client_info(struct mlog_client *c, const char *fmt, ...)
    MLOG_PRINTF(2, 3);
MLOG_API struct mlog_result mlog_client_warn(struct mlog_client *c, const char *fmt, ...)
    MLOG_PRINTF(2, 3);
MLOG_API struct mlog_result mlog_client_error(struct mlog_client *c, const char *fmt, ...)
    MLOG_PRINTF(2, 3);
MLOG_API struct mlog_result mlog_client_fatal(struct mlog_client *c, const char *fmt, ...)
    MLOG_PRINTF(2, 3);
MLOG_API struct mlog_result mlog_client_flush(struct mlog_client *c, double timeout_seconds);
/* Like mlog_shutdown() for this client, then frees it.  NULL is allowed.
 * No other call on c may run during or after it. */
MLOG_API void mlog_client_free(struct mlog_client *c);

/* Logs a message that is already text (no format): for tools such as the
 * mlog command, whose messages may hold '%'. */
MLOG_API struct mlog_result mlog_client_send(struct mlog_client *c, const struct mlog_opts *opts,
                                              const char *message, size_t len);

/* For language bindings (python/: master_log_client): replaces the
 * automatic metadata.c_client block of c's events by the binding's own,
 * metadata.NAME = the JSON object `json` (e.g. "python_client" with the
 * host, pid, process name and versions the binding reports), from the
 * next call on.  The agent still adds c_client.spool_seq at send time
 * (docs/event-format.md).  The key NAME is then refused in the caller's
 * metadata, like c_client.  The block is copied and sent as given: the
 * caller sets it again when a value in it changes (a pid after fork()).
 * name and json both NULL restore the c_client block.  A name has at most
 * MLOG_BLOCK_NAME_MAX bytes.
 * 0, or -EINVAL with a sentence in err (may be NULL): a name that is
 * empty, not valid UTF-8, c_client or delivery; json that is not one JSON
 * object or nests deeper than MLOG_METADATA_MAX_DEPTH - 1; -ENOMEM.
 * Thread-safe; a call already under way keeps the block it started with. */
#define MLOG_BLOCK_NAME_MAX 128
MLOG_API int mlog_client_set_block(struct mlog_client *c, const char *name, const char *json,
                                   char *err, size_t errlen);

#ifdef __cplusplus
}
#endif
#endif
