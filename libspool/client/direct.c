/* direct.c — the direct send of async_mode=false: the event goes to
 * ROOT/api/v1/logs in the caller's own thread through the agent's
 * http_single transport (plugins/), so one status table decides its fate
 * wherever it is sent from.  A spooled event gets metadata.c_client.spool_seq
 * from the agent; a direct one has none. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <spool/transport.h>

#include "codec/json.h"
#include "http.h"
#include "mlog_internal.h"
#include "transports.h"

/* The library never prints: transport log lines are dropped (what
 * matters reaches the caller in the result). */
static void quiet_log(void *ctx, int level, const char *fmt, ...)
{
	(void)ctx;
	(void)level;
	(void)fmt;
}

struct mlog_direct {
	pthread_mutex_t mu; /* one request at a time on the connection */
	struct spool_tx_value values[HTTP_NKEYS];
	struct spool_tx_config txc;
	void *state; /* the http_single instance */
	struct spool_buf body;
	char *root, *key, *ca; /* owned copies the values point to */
};

static void direct_free_strings(struct mlog_direct *d)
{
	free(d->root);
	if (d->key) {
		explicit_bzero(d->key, strlen(d->key));
		free(d->key);
	}
	free(d->ca);
}

int mlog_direct_new(const struct mlog_settings *set, struct mlog_direct **out, char *err, size_t errlen)
{
	*out = NULL;
	if (!set->endpoint_root) {
		snprintf(err, errlen, "no endpoint: set MASTER_LOG_ENDPOINT or endpoint to send directly");
		return -EINVAL;
	}
	struct mlog_direct *d = calloc(1, sizeof(*d));
	if (!d)
		return snprintf(err, errlen, "out of memory"), -ENOMEM;
	d->root = strdup(set->endpoint_root);
	d->key = set->api_key ? strdup(set->api_key) : NULL;
	d->ca = set->ca_file ? strdup(set->ca_file) : NULL;
	if (!d->root || (set->api_key && !d->key) || (set->ca_file && !d->ca)) {
		direct_free_strings(d);
		free(d);
		return snprintf(err, errlen, "out of memory"), -ENOMEM;
	}
	/* the `http:` section as the agent's defaults would fill it */
	struct spool_tx_value *v = d->values;
	v[HTTP_ENDPOINT] = (struct spool_tx_value){.set = 1, .text = d->root};
	v[HTTP_API_KEY] = (struct spool_tx_value){.set = d->key != NULL, .text = d->key};
	v[HTTP_GZIP] = (struct spool_tx_value){.set = 1, .text = "false"};
	v[HTTP_TLS_VERIFY] = (struct spool_tx_value){.set = 1, .text = "true", .boolean = 1};
	v[HTTP_TLS_CA_FILE] = (struct spool_tx_value){.set = d->ca != NULL, .text = d->ca};
	v[HTTP_CONNECT_TIMEOUT] = (struct spool_tx_value){.set = 1, .text = "10", .number = 10};
	v[HTTP_REQUEST_TIMEOUT] = (struct spool_tx_value){.set = 1, .text = "30", .number = 30};
	d->txc = (struct spool_tx_config){
		.struct_size = sizeof(struct spool_tx_config),
		.name = spool_tx_http_single.name,
		.values = d->values,
		.nvalues = HTTP_NKEYS,
		.user_agent = "master-log-spool/" SPOOL_VERSION_STRING,
		.max_batch_events = 1,
		.max_in_flight = 1,
		.log = quiet_log,
	};
	int rc = spool_tx_http_single.create(&d->txc, &d->state, err, errlen);
	if (rc) {
		direct_free_strings(d);
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
	spool_tx_http_single.destroy(d->state);
	spool_buf_free(&d->body);
	pthread_mutex_destroy(&d->mu);
	direct_free_strings(d);
	free(d);
}

enum mlog_direct_outcome mlog_direct_send(struct mlog_direct *d, const void *mp, size_t len,
                                          struct mlog_result *r)
{
	pthread_mutex_lock(&d->mu);
	d->body.len = 0;
	enum mlog_direct_outcome result = MLOG_DIRECT_KEEP;
	int rc = spool_event_to_json(mp, len, NULL, &d->body);
	if (rc) {
		mlog_set_error(r, "cannot encode the event as JSON: %s", strerror(-rc));
		goto done;
	}
	struct spool_tx_event ev = {.json = d->body.data, .json_len = d->body.len};
	struct spool_tx_outcome o;
	memset(&o, 0, sizeof(o));
	struct spool_tx_request req = {
	    .events = &ev,
	    .count = 1,
	    .out = &o,
	    .status = {.call = SPOOL_TXC_DONE, .retry_after = -1},
	};
	struct spool_tx_request *done = NULL;
	rc = spool_tx_http_single.submit(d->state, &req);
	/* the transport's own request timeout ends the transfer */
	while (rc == 0 && (rc = spool_tx_http_single.poll(d->state, 3600, &done, 1)) == 0)
		;
	if (rc < 0) {
		mlog_set_error(r, "cannot send: %s", strerror(-rc));
		goto done;
	}
	r->status_code = o.status;
	switch (o.result) {
	case SPOOL_TX_ACCEPTED:
		result = MLOG_DIRECT_ACCEPTED;
		if (o.id[0])
			snprintf(r->event_id, sizeof(r->event_id), "%s", o.id);
		break;
	case SPOOL_TX_REJECTED:
		result = MLOG_DIRECT_REJECTED;
		mlog_set_error(r, "rejected by the server (%d): %s", o.status,
		         o.reason[0] ? o.reason : "no detail");
		break;
	default:
		r->status_code = req.status.status;
		mlog_set_error(r, "%s", req.status.status ? req.status.message : "server not reached");
		if (!req.status.status && req.status.message[0])
			mlog_set_error(r, "server not reached (%s)", req.status.message);
	}
done:
	pthread_mutex_unlock(&d->mu);
	return result;
}
