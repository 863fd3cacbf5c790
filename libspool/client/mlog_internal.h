/* mlog_internal.h — what the pieces of libmlog share: the resolved
 * settings, the direct (synchronous) sender and the embedded sender. */
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
	bool embedded_sender;
};

/* Resolves cfg (may be NULL) over the environment and the defaults.  0, or
 * -EINVAL / -ENOMEM with one sentence in err. */
int mlog_settings_resolve(const struct mlog_config *cfg, struct mlog_settings *out, char *err,
                          size_t errlen);
int mlog_settings_copy(const struct mlog_settings *in, struct mlog_settings *out);
void mlog_settings_free(struct mlog_settings *s);

/* The transport configuration both senders use (points into set). */
struct spool_tx_config;
void mlog_tx_config(const struct mlog_settings *set, struct spool_tx_config *txc);

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

/* ---- embedded sender ---- */

struct mlog_sender;
/* Opens its own handle on the spool and takes the agent lock: SPOOL_ELOCKED
 * when an agent (or another sender) holds it; then loads the transports and
 * starts the thread.  0 or an error with err filled. */
int mlog_sender_start(const struct mlog_settings *set, struct mlog_sender **out, char *err,
                      size_t errlen);
void mlog_sender_wake(struct mlog_sender *snd);
/* Stops the thread (the request in flight finishes), releases the lock and
 * frees.  NULL-safe. */
void mlog_sender_stop(struct mlog_sender *snd);
/* The last send error, "" if none. */
void mlog_sender_last_error(struct mlog_sender *snd, char *buf, size_t len);

#endif
