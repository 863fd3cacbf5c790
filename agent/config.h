/* config.h — spool-agent's configuration: one table row per key (type,
 * default, destination, environment variable, description), read from YAML
 * with libyaml, then the MASTER_LOG_* environment for what the file leaves
 * out, then the defaults. */
#ifndef AGENT_CONFIG_H
#define AGENT_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include <spool/transport.h>

#define AGENT_MAX_TRANSPORTS 8

struct agent_config {
	char *spool;
	char *endpoint;	     /* as configured */
	char *endpoint_root; /* normalised (PROTOCOL.md); NULL when no endpoint */
	char *api_key;
	char *api_key_file;
	struct spool_tx_header *headers;
	size_t nheaders;
	char **transports;
	size_t ntransports;
	char *plugin_dir;
	char *file_path;
	long batch_size;
	long max_batch_bytes;
	double flush_interval;
	double min_request_interval;
	double retry_initial;
	double retry_max;
	double retry_multiplier;
	bool retry_jitter;
	double auth_retry;
	double connect_timeout;
	double request_timeout;
	bool gzip;
	bool tls_verify;
	char *ca_file;
	char *client_cert;
	char *client_key;
	double max_age;
	bool delivery_metadata;
	double recover_interval;
	double meta_interval;
	char *log_level;
	char *log_target;
};

/* Command-line values that win over the file and the environment (NULL:
 * not given). */
struct agent_overrides {
	const char *spool;
	const char *endpoint;
	const char *log_level;
};

/* Loads `path` (NULL: no file), then the environment, then defaults, then
 * validates.  0, or -1 with one sentence in err naming the file, line,
 * column and key (or the environment variable). */
int config_load(const char *path, const struct agent_overrides *ov, struct agent_config *cfg,
		char *err, size_t errlen);
void config_free(struct agent_config *cfg);

/* Normalises an endpoint to ROOT (PROTOCOL.md): 0, or -1 with err set. */
int config_endpoint_root(const char *url, char **root, char *err, size_t errlen);

/* Prints every key with its type, default, variable and description. */
void config_print_keys(FILE *f);

/* The table's keys, for tests and documentation checks. */
size_t config_key_count(void);
const char *config_key_name(size_t i);

/* What a key holds, as the table says: tests sweep every key from this. */
enum config_type {
	CONFIG_STR,
	CONFIG_INT,
	CONFIG_SECONDS,
	CONFIG_BOOL,
	CONFIG_LIST,
	CONFIG_HEADERS,
};

/* How a string key's value is checked after loading. */
enum config_kind {
	CONFIG_K_TEXT,	      /* any non-empty text */
	CONFIG_K_URL,	      /* an endpoint (PROTOCOL.md) */
	CONFIG_K_SECRET,      /* the API key: printable, never echoed */
	CONFIG_K_SECRET_FILE, /* a private (0600, own user) file holding the key */
	CONFIG_K_READ_FILE,   /* an existing, readable regular file */
	CONFIG_K_DIR,	      /* an existing directory */
	CONFIG_K_OUT_FILE,    /* a file to write, in an existing directory */
	CONFIG_K_SPOOL,	      /* a directory, made when missing */
	CONFIG_K_CHOICE,      /* one of `choices` */
	CONFIG_K_NAMES,	      /* a list of transport names */
};

struct config_key_info {
	const char *key;     /* "retry.initial_seconds" */
	enum config_type type;
	enum config_kind kind;
	const char *def;     /* NULL: unset */
	const char *env;     /* MASTER_LOG_* or NULL */
	double min, max;     /* CONFIG_INT and CONFIG_SECONDS */
	const char *choices; /* CONFIG_K_CHOICE: "a|b|c" */
};

/* 0 with *out filled, or -1 when i is out of range. */
int config_key_info(size_t i, struct config_key_info *out);

/* The longest API key accepted, in bytes. */
#define CONFIG_KEY_MAX 1024

/* "...abcd": at most the last 4 characters of the key, for logs. */
void config_redact_key(const char *key, char *buf, size_t len);

/* Log levels by name: "error", "warning", "info", "debug" -> syslog level. */
int config_log_level(const char *name);

#endif
