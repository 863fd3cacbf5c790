/* config.h — spool-agent's configuration.  The agent's own keys are one
 * table (config.c); each transport brings its own table for its section of
 * the file (transport.h).  Both are read the same way: the YAML file with
 * libyaml, then the MASTER_LOG_* environment for what the file leaves out,
 * then the defaults, then the checks, every error naming file, line, column
 * and key. */
#ifndef AGENT_CONFIG_H
#define AGENT_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <sys/socket.h>

#include <spool/transport.h>

#include "plugin.h"

#define AGENT_MAX_TRANSPORTS 8
#define AGENT_MAX_SECTIONS   (AGENT_MAX_TRANSPORTS + 4)

/* The keys of one section as loaded: one value per option row. */
struct agent_section {
	const char *name; /* "" for the agent's own keys, else "http", "file", ... */
	const struct spool_tx_option *options;
	size_t noptions;
	struct spool_tx_value *values; /* owned */
	bool in_chain;		       /* a transport of the chain reads it */
};

struct agent_config {
	char *spool;
	char **transports;
	size_t ntransports;
	char *plugin_dir;
	long batch_size;
	long max_batch_size;
	long max_batch_bytes;
	long max_in_flight;
	double bandwidth_limit; /* bytes per second; 0: none */
	char **send_windows;	/* as written; agent/window.h reads them */
	size_t nsend_windows;
	bool replay_severity;	/* replay_order: severity */
	double flush_interval;
	double min_request_interval;
	double retry_initial;
	double retry_max;
	double retry_multiplier;
	bool retry_jitter;
	double auth_retry;
	double max_age;
	bool delivery_metadata;
	double recover_interval;
	double meta_interval;
	char *log_level;
	char *log_target;
	char *metrics_listen; /* NULL or "": no metrics endpoint */
	/* the chain, resolved: built in, or loaded from a shared object */
	struct plugin plugins[AGENT_MAX_TRANSPORTS];
	/* the sections: [0] the agent's own keys, then the built-in
	 * transports' and the chain's */
	struct agent_section sections[AGENT_MAX_SECTIONS];
	size_t nsections;
};

/* Command-line values that win over the file and the environment (NULL:
 * not given). */
struct agent_overrides {
	const char *spool;
	const char *endpoint; /* http.endpoint */
	const char *log_level;
	/* More sections to read, each with its key table and check() (NULL
	 * create): for programs that share the agent's file conventions and
	 * transports (mlog-relay's `relay:` and `nats:`). */
	const struct spool_transport *const *sections;
	size_t nsections;
};

/* Loads `path` (NULL: no file), then the environment, then defaults,
 * resolves the transport chain, then validates.  0, or -1 with one sentence
 * in err naming the file, line, column and key (or the environment
 * variable). */
int config_load(const char *path, const struct agent_overrides *ov, struct agent_config *cfg,
		char *err, size_t errlen);
/* Frees the values and unloads the transports' shared objects. */
void config_free(struct agent_config *cfg);

/* The section named `name` ("" for the agent's own keys), or NULL. */
const struct agent_section *config_section(const struct agent_config *cfg, const char *name);
/* A key's value by its full name ("http.endpoint"), or NULL. */
const struct spool_tx_value *config_value(const struct agent_config *cfg, const char *key);

/* Prints every key (the agent's, then each built-in transport's section,
 * then those of cfg's chain loaded from shared objects; cfg may be NULL)
 * with its type, default, variable and description. */
void config_print_keys(FILE *f, const struct agent_config *cfg);
/* Prints the keys of one section (tx->section, tx->options), one row each
 * as config_print_keys() does. */
void config_print_section(FILE *f, const struct spool_transport *tx);

/* What a key holds: the transport ABI's types and kinds, and two kinds of
 * the agent's own. */
enum config_type {
	CONFIG_STR = SPOOL_TX_STRING,
	CONFIG_INT = SPOOL_TX_INT,
	CONFIG_SECONDS = SPOOL_TX_NUMBER,
	CONFIG_BOOL = SPOOL_TX_BOOL,
	CONFIG_LIST = SPOOL_TX_LIST,
	CONFIG_HEADERS = SPOOL_TX_MAP,
};

enum config_kind {
	CONFIG_K_TEXT = SPOOL_TX_TEXT,
	CONFIG_K_URL = SPOOL_TX_URL,
	CONFIG_K_SECRET = SPOOL_TX_SECRET,
	CONFIG_K_SECRET_FILE = SPOOL_TX_SECRET_FILE,
	CONFIG_K_READ_FILE = SPOOL_TX_READ_FILE,
	CONFIG_K_DIR = SPOOL_TX_DIR,
	CONFIG_K_OUT_FILE = SPOOL_TX_OUT_FILE,
	CONFIG_K_CHOICE = SPOOL_TX_CHOICE,
	CONFIG_K_SPOOL = 100, /* a directory, made when missing */
	CONFIG_K_NAMES = 101, /* a list of transport names */
	CONFIG_K_RATE = 102,  /* bytes per second: 62500, 500k, 1.5M */
	CONFIG_K_WINDOWS = 103, /* send windows (agent/window.h) */
	CONFIG_K_LISTEN = 104,	/* a loopback ADDR:PORT (metrics_listen) */
};

struct config_key_info {
	const char *key;     /* full name: "retry.initial_seconds", "http.endpoint" */
	enum config_type type;
	enum config_kind kind;
	const char *def;     /* NULL: unset */
	const char *env;     /* MASTER_LOG_* or NULL */
	double min, max;     /* CONFIG_INT and CONFIG_SECONDS */
	const char *choices; /* CONFIG_K_CHOICE: "a|b|c" */
};

/* The keys --help-config lists (the agent's and the built-in transports'),
 * for tests that sweep every key. */
size_t config_key_count(void);
const char *config_key_name(size_t i);
/* 0 with *out filled, or -1 when i is out of range. */
int config_key_info(size_t i, struct config_key_info *out);

/* The longest API key (any secret) accepted, in bytes. */
#define CONFIG_KEY_MAX 1024

/* "...abcd": at most the last 4 characters of a secret, for logs. */
void config_redact_key(const char *key, char *buf, size_t len);

/* "62500", "500k", "1.5M" (k and M: thousands and millions of bytes per
 * second) -> bytes per second; NULL or "0" -> 0.  -1 with why filled
 * (when given) for anything else. */
double config_parse_rate(const char *text, char *why, size_t whylen);
/* metrics_listen: a loopback address and a port, "127.0.0.1:9464" (any of
 * 127.0.0.0/8) or "[::1]:9464"; port 0 picks a free one.  Fills *sa and
 * *salen; 0, or -1 with a sentence in why.  Any other address is refused:
 * the endpoint has no authentication. */
int config_parse_listen(const char *text, struct sockaddr_storage *sa, socklen_t *salen, char *why,
			size_t whylen);

/* Log levels by name: "error", "warning", "info", "debug" -> syslog level. */
int config_log_level(const char *name);

#endif
