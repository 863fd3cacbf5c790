/* nats_conn.h — what the `nats` transport and mlog-relay share: the
 * connection keys of a `nats:` section (servers, auth, TLS), connecting
 * with them (libnats), telling a refused credential from an unreachable
 * cluster, and checking that a stream exists and takes a subject. */
#ifndef SPOOL_PLUGIN_NATS_CONN_H
#define SPOOL_PLUGIN_NATS_CONN_H

#include <nats/nats.h>
#include <stdbool.h>
#include <stddef.h>

#include <spool/transport.h>

/* The rows of nats_options[], the `nats:` section: the transport reads
 * them all; mlog-relay reads the connection keys and `stream`. */
enum nats_key {
	NK_SERVERS,
	NK_SUBJECT,
	NK_STREAM,
	NK_CREDS_FILE,
	NK_USER,
	NK_PASSWORD_FILE,
	NK_TOKEN_FILE,
	NK_TLS_CA_FILE,
	NK_TLS_CLIENT_CERT,
	NK_TLS_CLIENT_KEY,
	NK_MAX_PENDING,
	NK_ACK_TIMEOUT,
	NK_CONNECT_TIMEOUT,
	NK_NKEYS
};

extern const struct spool_tx_option nats_options[NK_NKEYS];

/* The rules no single row states (servers set and well-formed, one kind
 * of credentials, creds_file private, client cert with key). */
int nats_section_check(const struct spool_tx_value *v, size_t n, size_t *key, char *why, size_t whylen);

/* The connection settings, as read from a `nats:` section.  Strings are
 * borrowed from the caller and must outlive the connection. */
struct nats_link_config {
	const char *const *servers; /* nats:// or tls:// URLs */
	size_t nservers;
	const char *creds_file;
	const char *user;
	const char *password; /* read from password_file */
	const char *token;    /* read from token_file */
	const char *ca_file;
	const char *client_cert;
	const char *client_key;
	double connect_timeout; /* seconds */
	const char *name;	/* connection name shown by the server */
};

/* Why a connection attempt failed. */
enum nats_link_fail {
	NATS_LINK_OK = 0,
	NATS_LINK_AUTH,	       /* the server refused the credentials */
	NATS_LINK_UNREACHABLE, /* no server could be reached (or TLS failed) */
	NATS_LINK_LOCAL,       /* a local problem (options, files, memory) */
};

/* The connection settings of a loaded `nats:` section (pointers into v). */
void nats_link_config_from(const struct spool_tx_value *v, const char *name, struct nats_link_config *lc);

/* Connects to the first server that answers; reconnects for ever in the
 * background afterwards.  NATS_LINK_OK with *out set, or the failure with
 * err filled: one sentence naming the servers and the key to look at. */
enum nats_link_fail nats_link_connect(const struct nats_link_config *lc, natsConnection **out, char *err,
				      size_t errlen);

/* "nats://a:4222 (and 2 more)" for messages. */
void nats_link_servers_text(const struct nats_link_config *lc, char *buf, size_t len);

/* The creds_file rule (the same as api_key_file's): a regular file owned
 * by this user, mode 0600 or 0400.  0, or -1 with why filled. */
int nats_link_check_private(const char *path, char *why, size_t whylen);

/* Outcome of nats_link_check_stream(). */
enum nats_stream_check {
	NATS_STREAM_OK = 0,
	NATS_STREAM_MISSING,	 /* no such stream */
	NATS_STREAM_NOT_BOUND,	 /* the stream exists but does not take subject */
	NATS_STREAM_UNAVAILABLE, /* JetStream did not answer (try again later) */
};

/* Asks JetStream for `stream` and checks that it takes `subject` (NULL:
 * not checked).  err says what was found. */
enum nats_stream_check nats_link_check_stream(natsConnection *nc, const char *stream, const char *subject,
					      double timeout, char *err, size_t errlen);

/* true when a subject with NATS wildcards (`*` one token, `>` the rest)
 * matches the literal subject. */
bool nats_subject_matches(const char *pattern, const char *subject);

#endif
