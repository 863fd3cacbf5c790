/* mlog_send.c — the client's two ways to the server: the direct send of
 * async_mode=false (plugins/http.c, the same requests as the http_single
 * transport, without the spool_seq a spooled event gets), and the embedded
 * sender: agent/drain.c's loop in a thread, over the transport plugins the
 * agent loads, while this process holds the spool's agent lock. */
#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "codec/json.h"
#include <spool/transport.h>

#include "drain.h"
#include "http.h"
#include "mlog_internal.h"
#include "plugin.h"

#ifndef SPOOL_PLUGIN_INSTALL_DIR
#define SPOOL_PLUGIN_INSTALL_DIR "/usr/local/lib/master-log-spool/plugins"
#endif

/* The library never prints: transport log lines are dropped (the drain
 * loop's last error is kept by the sender and published in the meta store). */
static void quiet_log(void *ctx, int level, const char *fmt, ...)
{
	(void)ctx;
	(void)level;
	(void)fmt;
}

void mlog_tx_config(const struct mlog_settings *set, struct spool_tx_config *txc)
{
	*txc = (struct spool_tx_config){
	    .struct_size = sizeof(struct spool_tx_config),
	    .endpoint = set->endpoint_root,
	    .api_key = set->api_key,
	    .connect_timeout = 10,
	    .request_timeout = 30,
	    .tls_verify = 1,
	    .user_agent = "master-log-spool/" SPOOL_VERSION_STRING,
	    .max_body_bytes = 5u << 20,
	    .log = quiet_log,
	};
}

/* ---- direct send ---- */

struct mlog_direct {
	pthread_mutex_t mu; /* one request at a time on the connection */
	struct spool_tx_config txc;
	struct http_conn conn;
	struct spool_buf body;
	char *root, *key; /* owned copies the config points to */
};

int mlog_direct_new(const struct mlog_settings *set, struct mlog_direct **out, char *err,
                    size_t errlen)
{
	*out = NULL;
	if (!set->endpoint_root) {
		snprintf(err, errlen,
		         "no endpoint: set MASTER_LOG_ENDPOINT or endpoint to send directly");
		return -EINVAL;
	}
	struct mlog_direct *d = calloc(1, sizeof(*d));
	if (!d)
		return snprintf(err, errlen, "out of memory"), -ENOMEM;
	d->root = strdup(set->endpoint_root);
	d->key = set->api_key ? strdup(set->api_key) : NULL;
	if (!d->root || (set->api_key && !d->key)) {
		free(d->root);
		free(d->key);
		free(d);
		return snprintf(err, errlen, "out of memory"), -ENOMEM;
	}
	mlog_tx_config(set, &d->txc);
	d->txc.endpoint = d->root;
	d->txc.api_key = d->key;
	int rc = http_conn_init(&d->conn, &d->txc, "/api/v1/logs", err, errlen);
	if (rc) {
		free(d->root);
		free(d->key);
		free(d);
		return rc;
	}
	pthread_mutex_init(&d->mu, NULL);
	*out = d;
	return 0;
}

void mlog_direct_free(struct mlog_direct *d)
{
	if (!d)
		return;
	http_conn_fini(&d->conn);
	spool_buf_free(&d->body);
	pthread_mutex_destroy(&d->mu);
	free(d->root);
	free(d->key);
	free(d);
}

enum mlog_direct_outcome mlog_direct_send(struct mlog_direct *d, const void *mp, size_t len,
                                          struct mlog_result *r)
{
	pthread_mutex_lock(&d->mu);
	d->body.len = 0;
	enum mlog_direct_outcome out = MLOG_DIRECT_KEEP;
	int rc = spool_event_to_json(mp, len, NULL, &d->body);
	if (rc) {
		snprintf(r->error, sizeof(r->error), "cannot encode the event as JSON: %s",
		         strerror(-rc));
		goto done;
	}
	struct http_answer a;
	char msg[240] = "";
	rc = http_conn_post(&d->conn, d->body.data, d->body.len, NULL, &a, msg, sizeof(msg));
	if (rc) {
		snprintf(r->error, sizeof(r->error), "cannot send: %s", strerror(-rc));
		goto done;
	}
	r->status_code = (int)a.status;
	long s = a.status;
	if (s >= 200 && s < 300) {
		out = MLOG_DIRECT_ACCEPTED;
		json_t *j = a.body_len ? json_loadb(a.body, a.body_len, 0, NULL) : NULL;
		const char *id = j ? json_string_value(json_object_get(j, "id")) : NULL;
		if (id)
			snprintf(r->event_id, sizeof(r->event_id), "%s", id);
		json_decref(j);
	} else if (s == 400 || s == 422 || s == 413) {
		out = MLOG_DIRECT_REJECTED;
		char detail[200];
		http_detail(&a, detail, sizeof(detail));
		snprintf(r->error, sizeof(r->error), "rejected by the server (%ld): %s", s,
		         detail[0] ? detail : "no detail");
	} else if (s == 0) {
		snprintf(r->error, sizeof(r->error), "server not reached (%s)",
		         msg[0] ? msg : "no answer");
	} else {
		char detail[160];
		http_detail(&a, detail, sizeof(detail));
		snprintf(r->error, sizeof(r->error), "server answered %ld%s%s", s,
		         detail[0] ? ": " : "", detail);
	}
done:
	pthread_mutex_unlock(&d->mu);
	return out;
}

/* ---- embedded sender ---- */

#define SENDER_LINKS 2

struct mlog_sender {
	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t cond;
	bool woken;
	atomic_bool stop;
	struct spool *s;
	struct drain *drain;
	double flush_interval;
	struct mlog_settings set;
	struct spool_tx_config txc;
	struct plugin plugins[SENDER_LINKS];
	size_t nplugins;
	char last_error[256]; /* under mu */
};

__attribute__((format(printf, 3, 4))) static void sender_log(void *ctx, int level, const char *fmt, ...)
{
	struct mlog_sender *snd = ctx;
	if (level > SPOOL_TX_LOG_WARNING)
		return;
	char line[256];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	pthread_mutex_lock(&snd->mu);
	snprintf(snd->last_error, sizeof(snd->last_error), "%s", line);
	pthread_mutex_unlock(&snd->mu);
}

static bool sender_cancelled(void *ctx)
{
	struct mlog_sender *snd = ctx;
	return atomic_load(&snd->stop);
}

static void *sender_main(void *arg)
{
	struct mlog_sender *snd = arg;
	while (!atomic_load(&snd->stop)) {
		double wait = 0;
		enum drain_result r = drain_step(snd->drain, &wait);
		if (r == DRAIN_PROGRESS)
			continue;
		double timeout = r == DRAIN_IDLE ? snd->flush_interval : wait;
		if (timeout > snd->flush_interval && r == DRAIN_ERROR)
			timeout = snd->flush_interval;
		struct timespec ts;
		clock_gettime(CLOCK_MONOTONIC, &ts);
		double t = (double)ts.tv_sec + (double)ts.tv_nsec / 1e9 + timeout;
		ts.tv_sec = (time_t)t;
		ts.tv_nsec = (long)((t - (double)ts.tv_sec) * 1e9);
		pthread_mutex_lock(&snd->mu);
		while (!snd->woken && !atomic_load(&snd->stop))
			if (pthread_cond_timedwait(&snd->cond, &snd->mu, &ts) == ETIMEDOUT)
				break;
		/* a wake-up during a backoff only makes drain_step() say how
		 * long is left */
		snd->woken = false;
		pthread_mutex_unlock(&snd->mu);
	}
	return NULL;
}

static void sender_free(struct mlog_sender *snd)
{
	drain_destroy(snd->drain);
	for (size_t i = 0; i < snd->nplugins; i++)
		plugin_unload(&snd->plugins[i]);
	spool_close(snd->s);
	mlog_settings_free(&snd->set);
	pthread_cond_destroy(&snd->cond);
	pthread_mutex_destroy(&snd->mu);
	free(snd);
}

int mlog_sender_start(const struct mlog_settings *set, struct mlog_sender **out, char *err,
                      size_t errlen)
{
	*out = NULL;
	if (!set->endpoint_root) {
		snprintf(err, errlen, "no endpoint configured");
		return -EINVAL;
	}
	struct mlog_sender *snd = calloc(1, sizeof(*snd));
	if (!snd)
		return snprintf(err, errlen, "out of memory"), -ENOMEM;
	pthread_mutex_init(&snd->mu, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&snd->cond, &ca);
	pthread_condattr_destroy(&ca);
	snd->flush_interval = set->flush_interval;
	int rc = mlog_settings_copy(set, &snd->set);
	if (rc) {
		snprintf(err, errlen, "out of memory");
		mlog_settings_free(&snd->set);
		pthread_cond_destroy(&snd->cond);
		pthread_mutex_destroy(&snd->mu);
		free(snd);
		return rc;
	}
	struct spool_options so;
	spool_options_init(&so);
	so.durability = SPOOL_SYNC; /* a reader: no ring */
	rc = spool_open(set->spool_dir, &so, &snd->s, err, errlen);
	if (rc)
		goto fail;
	rc = spool_agent_lock(snd->s);
	if (rc) {
		snprintf(err, errlen, "%s",
		         rc == SPOOL_ELOCKED ? "an agent drains the spool" : spool_strerror(rc));
		goto fail;
	}
	mlog_tx_config(&snd->set, &snd->txc);
	snd->txc.log = sender_log;
	snd->txc.log_ctx = snd;
	const char *dirs[2] = {getenv("SPOOL_PLUGIN_DIR"), SPOOL_PLUGIN_INSTALL_DIR};
	static const char *const names[SENDER_LINKS] = {"http_batch", "http_single"};
	struct drain_link links[SENDER_LINKS];
	for (size_t i = 0; i < SENDER_LINKS; i++) {
		if (plugin_load(names[i], dirs, 2, &snd->plugins[i], err, errlen)) {
			rc = -ENOENT;
			goto fail;
		}
		snd->nplugins = i + 1;
		if (plugin_create(&snd->plugins[i], &snd->txc, err, errlen)) {
			rc = -EINVAL;
			goto fail;
		}
		links[i] = (struct drain_link){snd->plugins[i].tx, snd->plugins[i].state};
	}
	struct drain_params dp = {
	    .batch_size = (size_t)set->batch_size,
	    .max_batch_bytes = 5u << 20,
	    .min_request_interval = set->min_request_interval,
	    .retry_initial = 0.5,
	    .retry_max = 60,
	    .retry_multiplier = 2,
	    .retry_jitter = true,
	    .auth_retry = 60,
	    .meta_interval = 1,
	    .recover_interval = 10,
	};
	rc = drain_create(snd->s, &dp, links, SENDER_LINKS, sender_log, snd, &snd->drain);
	if (rc) {
		snprintf(err, errlen, "cannot start the drain loop: %s", strerror(-rc));
		goto fail;
	}
	drain_set_cancel(snd->drain, sender_cancelled, snd);
	rc = -pthread_create(&snd->thread, NULL, sender_main, snd);
	if (rc) {
		snprintf(err, errlen, "cannot start the sender thread: %s", strerror(-rc));
		goto fail;
	}
	*out = snd;
	return 0;
fail:
	sender_free(snd);
	return rc ? rc : -EINVAL;
}

void mlog_sender_wake(struct mlog_sender *snd)
{
	if (!snd)
		return;
	pthread_mutex_lock(&snd->mu);
	snd->woken = true;
	pthread_cond_signal(&snd->cond);
	pthread_mutex_unlock(&snd->mu);
}

void mlog_sender_stop(struct mlog_sender *snd)
{
	if (!snd)
		return;
	atomic_store(&snd->stop, true);
	mlog_sender_wake(snd);
	pthread_join(snd->thread, NULL);
	sender_free(snd);
}

void mlog_sender_last_error(struct mlog_sender *snd, char *buf, size_t len)
{
	if (!snd) {
		snprintf(buf, len, "%s", "");
		return;
	}
	pthread_mutex_lock(&snd->mu);
	snprintf(buf, len, "%s", snd->last_error);
	pthread_mutex_unlock(&snd->mu);
}
