/* mlog_internal.h — what the pieces of libmlog share: the resolved
 * settings, the direct (synchronous) send and the start of spool-agent. */
#ifndef SPOOL_MLOG_INTERNAL_H
#define SPOOL_MLOG_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <spool/mlog.h>
#include <spool/spool.h>

/* Settings after configure > environment > default. */
struct mlog_settings {
	char *api_key;
	char *endpoint_root; /* normalised; NULL: none */
	char *spool_dir;
	long batch_size;
	double flush_interval;
	long max_queue_size; /* 0: no count limit */
	bool drop_when_full;
	double queue_timeout;
	bool backpressure;
	double initial_spe;
	double max_enqueue_sleep;
	double min_request_interval;
	bool async_mode;
	enum spool_durability durability;
	uint64_t max_spool_bytes; /* 0: no limit */
	bool spawn_agent;
	char *ca_file;     /* absolute; NULL: the system's CA bundle */
	double agent_idle; /* agent_idle_seconds as given */
};

/* Resolves cfg (may be NULL) over the environment and the defaults.  0, or
 * -EINVAL / -ENOMEM with one sentence in err. */
int mlog_settings_resolve(const struct mlog_config *cfg, struct mlog_settings *out, char *err,
                          size_t errlen);
int mlog_settings_copy(const struct mlog_settings *in, struct mlog_settings *out);
void mlog_settings_free(struct mlog_settings *s);

/* Room for a sentence before it is fitted into mlog_result.error. */
#define MLOG_TEXT_MAX 1024

/* Writes src into dst (cap bytes, NUL included).  A text that does not fit
 * keeps its beginning and its end (where the reason usually is), joined by
 * " ... ", each cut between words (at a space or '/'), never inside a UTF-8
 * character. */
void mlog_fit_text(char *dst, size_t cap, const char *src);
/* printf into r->error through mlog_fit_text(). */
struct mlog_result;
void mlog_set_error(struct mlog_result *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ---- direct send (async_mode false) ---- */

struct mlog_direct;
int mlog_direct_new(const struct mlog_settings *set, struct mlog_direct **out, char *err,
                    size_t errlen);
void mlog_direct_free(struct mlog_direct *d);

enum mlog_direct_outcome {
	MLOG_DIRECT_ACCEPTED = 0, /* r->status_code, r->event_id set */
	MLOG_DIRECT_REJECTED = 1, /* rejected for good: r->status_code, r->error set */
	MLOG_DIRECT_KEEP =
	    2, /* not taken now (no answer, 401, 5xx...): spool it; r->error says why */
};
/* POSTs the msgpack event mp[0, len) as JSON to ROOT/api/v1/logs.  Thread-safe. */
enum mlog_direct_outcome mlog_direct_send(struct mlog_direct *d, const void *mp, size_t len,
                                          struct mlog_result *r);

/* ---- starting spool-agent (spawn.c) ---- */

/* How long the library waits at most for a spool-agent it started to say
 * that it runs (holds the spool's agent lock) or has failed. */
#define MLOG_SPAWN_WAIT_SECONDS 5.0

/* The idle time (--exit-idle) of an agent started for set: agent_idle,
 * but at least 3 flush intervals, so that an event a producer committed
 * reaches the agent's view of the spool well before it may exit. */
double mlog_agent_idle_seconds(const struct mlog_settings *set);

/* Finds spool-agent: $MASTER_LOG_AGENT (a path: nothing else is tried); the
 * build tree's agent/spool-agent when this library runs from the build
 * tree; <prefix>/<bindir>/spool-agent; spool-agent on $PATH.  0 with the
 * path in path, or -ENOENT with a sentence naming what was searched in
 * err. */
int mlog_agent_find(char *path, size_t pathlen, char *err, size_t errlen);

/* Starts `spool-agent --detach` for set's spool and endpoint (the rest of
 * set through MASTER_LOG_* variables in its environment; descriptors 0-2 on
 * /dev/null, no other inherited, a session of its own) and waits, at most
 * timeout seconds, for the short-lived parent that --detach leaves to exit:
 * once its child holds the agent lock, or has failed.  No process is left
 * for the caller to reap.  s (the caller's handle on the spool) tells
 * whether some agent runs after all when this one did not start (two
 * programs started one each at once: one wins the lock).  0 when an agent
 * runs, or a negative errno with one sentence in err. */
int mlog_agent_spawn(const struct mlog_settings *set, struct spool *s, double timeout, char *err,
                     size_t errlen);

#endif
