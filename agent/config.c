/* config.c — the options table, the YAML reader, the environment and the
 * checks.  Parsing, defaults and `spool-agent --help-config` all come from
 * the one table below. */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <syslog.h>
#include <yaml.h>

#include <spool/endpoint.h>
#include <spool/spool.h>

#include "config.h"

enum ktype { T_STR, T_INT, T_SECONDS, T_BOOL, T_LIST, T_HEADERS };

struct key_row {
	const char *key;
	enum ktype type;
	const char *def; /* parsed like a configured value; NULL: unset */
	size_t off;
	const char *env;
	double min, max;
	const char *doc;
};

#define OFF(f) offsetof(struct agent_config, f)

static const struct key_row keys[] = {
	{"spool", T_STR, NULL, OFF(spool), "MASTER_LOG_SPOOL_DIR", 0, 0,
	 "spool directory (default: /var/spool/master-log for root, else ~/.local/state/master-log/spool)"},
	{"endpoint", T_STR, NULL, OFF(endpoint), "MASTER_LOG_ENDPOINT", 0, 0,
	 "Master Log URL: the root, /api/v1 or /api/v1/logs (required by the HTTP transports)"},
	{"api_key", T_STR, NULL, OFF(api_key), "MASTER_LOG_API_KEY", 0, 0,
	 "API key sent as X-API-Key (never logged)"},
	{"api_key_file", T_STR, NULL, OFF(api_key_file), NULL, 0, 0,
	 "file holding the API key (trailing white space ignored); not with api_key"},
	{"headers", T_HEADERS, NULL, OFF(headers), NULL, 0, 0,
	 "extra request headers, a map of name: value"},
	{"transports", T_LIST, "http_batch,http_single", OFF(transports), NULL, 0, 0,
	 "transport chain, first first; each falls back to the next"},
	{"plugin_dir", T_STR, NULL, OFF(plugin_dir), NULL, 0, 0,
	 "folder searched first for <name>.so (then $SPOOL_PLUGIN_DIR, then the install folder)"},
	{"file.path", T_STR, NULL, OFF(file_path), NULL, 0, 0,
	 "output of the `file` transport (JSON lines)"},
	{"batch_size", T_INT, "100", OFF(batch_size), "MASTER_LOG_BATCH_SIZE", 1, 100000,
	 "events per request at most"},
	{"max_batch_bytes", T_INT, "5242880", OFF(max_batch_bytes), NULL, 1024, 1 << 30,
	 "bytes per request at most (stored bytes when reading, JSON bytes when sending)"},
	{"flush_interval_seconds", T_SECONDS, "1.0", OFF(flush_interval), "MASTER_LOG_FLUSH_INTERVAL_SECONDS",
	 0.001, 86400, "an idle agent looks at the spool this often (a producer's wake-up is at once)"},
	{"min_request_interval_seconds", T_SECONDS, "0", OFF(min_request_interval),
	 "MASTER_LOG_MIN_REQUEST_INTERVAL_SECONDS", 0, 3600, "least time between request starts"},
	{"retry.initial_seconds", T_SECONDS, "1.0", OFF(retry_initial), NULL, 0.001, 86400,
	 "first backoff after a failed send"},
	{"retry.max_seconds", T_SECONDS, "300", OFF(retry_max), NULL, 0.001, 86400, "backoff cap"},
	{"retry.multiplier", T_SECONDS, "2.0", OFF(retry_multiplier), NULL, 1, 100,
	 "backoff growth per consecutive failure"},
	{"retry.jitter", T_BOOL, "true", OFF(retry_jitter), NULL, 0, 0,
	 "full jitter: wait a uniform random time from 0 to the backoff"},
	{"retry.auth_seconds", T_SECONDS, "300", OFF(auth_retry), NULL, 0.001, 86400,
	 "wait after 401/403 or a missing endpoint (events are kept)"},
	{"timeouts.connect_seconds", T_SECONDS, "10", OFF(connect_timeout), NULL, 0.001, 3600,
	 "TCP and TLS connect timeout"},
	{"timeouts.request_seconds", T_SECONDS, "30", OFF(request_timeout), NULL, 0.001, 86400,
	 "whole-request timeout"},
	{"gzip", T_BOOL, "false", OFF(gzip), NULL, 0, 0,
	 "gzip request bodies (a 415 turns it off until restart)"},
	{"tls.verify", T_BOOL, "true", OFF(tls_verify), NULL, 0, 0, "verify the server's certificate and name"},
	{"tls.ca_file", T_STR, NULL, OFF(ca_file), NULL, 0, 0, "CA bundle (PEM)"},
	{"tls.client_cert", T_STR, NULL, OFF(client_cert), NULL, 0, 0, "client certificate (PEM)"},
	{"tls.client_key", T_STR, NULL, OFF(client_key), NULL, 0, 0, "client key (PEM)"},
	{"max_age_seconds", T_SECONDS, "0", OFF(max_age), NULL, 0, 1e9,
	 "drop (and count) events older than this; 0: never"},
	{"delivery_metadata", T_BOOL, "false", OFF(delivery_metadata), NULL, 0, 0,
	 "add metadata.delivery {attempts, spooled_seconds} when sending"},
	{"recover_interval_seconds", T_SECONDS, "10", OFF(recover_interval), NULL, 0.01, 86400,
	 "how often dead producers' rings are recovered"},
	{"meta_interval_seconds", T_SECONDS, "1", OFF(meta_interval), NULL, 0.01, 3600,
	 "how often the agent's figures are published into the spool's meta store"},
	{"log.level", T_STR, "info", OFF(log_level), NULL, 0, 0, "error, warning, info or debug"},
	{"log.target", T_STR, "stderr", OFF(log_target), NULL, 0, 0, "stderr or syslog"},
};

#define NKEYS (sizeof(keys) / sizeof(keys[0]))

static const char *type_name(enum ktype t)
{
	switch (t) {
	case T_STR:
		return "string";
	case T_INT:
		return "integer";
	case T_SECONDS:
		return "number";
	case T_BOOL:
		return "boolean";
	case T_LIST:
		return "list of names";
	case T_HEADERS:
		return "map of strings";
	}
	return "?";
}

void config_print_keys(FILE *f)
{
	for (size_t i = 0; i < NKEYS; i++) {
		const struct key_row *r = &keys[i];
		fprintf(f, "%s (%s", r->key, type_name(r->type));
		if (r->def)
			fprintf(f, ", default %s", r->def);
		if (r->env)
			fprintf(f, ", env %s", r->env);
		fprintf(f, ")\n    %s\n", r->doc);
	}
}

size_t config_key_count(void)
{
	return NKEYS;
}

const char *config_key_name(size_t i)
{
	return i < NKEYS ? keys[i].key : NULL;
}

static void free_list(char **l, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(l[i]);
	free(l);
}

static void free_headers(struct spool_tx_header *h, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free((char *)h[i].name);
		free((char *)h[i].value);
	}
	free(h);
}

void config_free(struct agent_config *cfg)
{
	if (!cfg)
		return;
	for (size_t i = 0; i < NKEYS; i++) {
		void *p = (char *)cfg + keys[i].off;
		if (keys[i].type == T_STR)
			free(*(char **)p);
	}
	free(cfg->endpoint_root);
	free_list(cfg->transports, cfg->ntransports);
	free_headers(cfg->headers, cfg->nheaders);
	memset(cfg, 0, sizeof(*cfg));
}

static bool parse_bool(const char *s, bool *out)
{
	static const char *yes[] = {"true", "yes", "on", "1"}, *no[] = {"false", "no", "off", "0"};
	for (size_t i = 0; i < 4; i++) {
		if (strcasecmp(s, yes[i]) == 0)
			return *out = true, true;
		if (strcasecmp(s, no[i]) == 0)
			return *out = false, true;
	}
	return false;
}

/* Sets a scalar key (or a comma-separated list) from text.  0, or -1 with
 * why filled. */
static int set_scalar(const struct key_row *r, const char *text, struct agent_config *cfg,
		      char *why, size_t wl)
{
	void *dst = (char *)cfg + r->off;
	char *end;
	switch (r->type) {
	case T_STR: {
		char *s = strdup(text);
		if (!s)
			return snprintf(why, wl, "out of memory"), -1;
		free(*(char **)dst);
		*(char **)dst = s;
		return 0;
	}
	case T_INT: {
		errno = 0;
		long v = strtol(text, &end, 10);
		if (errno || end == text || *end || v < r->min || v > r->max) {
			snprintf(why, wl, "expected an integer from %.0f to %.0f, got '%s'", r->min, r->max, text);
			return -1;
		}
		*(long *)dst = v;
		return 0;
	}
	case T_SECONDS: {
		errno = 0;
		double v = strtod(text, &end);
		if (errno || end == text || *end || !isfinite(v) || v < r->min || v > r->max) {
			snprintf(why, wl, "expected a number from %g to %g, got '%s'", r->min, r->max, text);
			return -1;
		}
		*(double *)dst = v;
		return 0;
	}
	case T_BOOL:
		if (!parse_bool(text, (bool *)dst)) {
			snprintf(why, wl, "expected true or false, got '%s'", text);
			return -1;
		}
		return 0;
	case T_LIST: {
		char **l = NULL;
		size_t n = 0;
		const char *p = text;
		while (*p) {
			size_t k = strcspn(p, ", ");
			if (k) {
				char **nl = realloc(l, (n + 1) * sizeof(*l));
				if (!nl || !(nl[n] = strndup(p, k))) {
					free_list(nl ? nl : l, n);
					return snprintf(why, wl, "out of memory"), -1;
				}
				l = nl;
				n++;
			}
			p += k;
			p += strspn(p, ", ");
		}
		if (n == 0 || n > AGENT_MAX_TRANSPORTS) {
			free_list(l, n);
			snprintf(why, wl, "expected 1 to %d transport names", AGENT_MAX_TRANSPORTS);
			return -1;
		}
		free_list(cfg->transports, cfg->ntransports);
		cfg->transports = l;
		cfg->ntransports = n;
		return 0;
	}
	case T_HEADERS:
		snprintf(why, wl, "expected a map of header names to values");
		return -1;
	}
	return -1;
}

static const struct key_row *find_key(const char *name)
{
	for (size_t i = 0; i < NKEYS; i++)
		if (strcmp(keys[i].key, name) == 0)
			return &keys[i];
	return NULL;
}

/* ---- YAML ---- */

struct yctx {
	const char *path;
	yaml_document_t *doc;
	struct agent_config *cfg;
	bool *set; /* per table row: given by the file */
	char *err;
	size_t errlen;
};

static int yerr(struct yctx *y, const yaml_node_t *n, const char *key, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static int yerr(struct yctx *y, const yaml_node_t *n, const char *key, const char *fmt, ...)
{
	int off = snprintf(y->err, y->errlen, "%s:%zu:%zu: %s%s%s", y->path,
			   (size_t)n->start_mark.line + 1, (size_t)n->start_mark.column + 1,
			   key ? "key '" : "", key ? key : "", key ? "': " : "");
	if (off >= 0 && (size_t)off < y->errlen) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(y->err + off, y->errlen - (size_t)off, fmt, ap);
		va_end(ap);
	}
	return -1;
}

static bool is_null(const yaml_node_t *n)
{
	if (n->type != YAML_SCALAR_NODE)
		return false;
	const char *v = (const char *)n->data.scalar.value;
	return n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE &&
	       (!*v || strcmp(v, "~") == 0 || strcmp(v, "null") == 0 || strcmp(v, "Null") == 0 ||
		strcmp(v, "NULL") == 0);
}

static int set_headers(struct yctx *y, const struct key_row *r, yaml_node_t *n)
{
	if (n->type != YAML_MAPPING_NODE)
		return yerr(y, n, r->key, "%s", "expected a map of header names to values");
	struct agent_config *cfg = y->cfg;
	for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
		yaml_node_t *k = yaml_document_get_node(y->doc, p->key);
		yaml_node_t *v = yaml_document_get_node(y->doc, p->value);
		if (k->type != YAML_SCALAR_NODE || v->type != YAML_SCALAR_NODE)
			return yerr(y, k, r->key, "%s", "header names and values must be strings");
		const char *name = (const char *)k->data.scalar.value;
		const char *val = (const char *)v->data.scalar.value;
		if (!*name || strpbrk(name, ": \t\r\n") || strpbrk(val, "\r\n"))
			return yerr(y, k, r->key, "bad header '%s'", name);
		if (strcasecmp(name, "X-API-Key") == 0)
			return yerr(y, k, r->key, "%s", "set the key with api_key or api_key_file, not as a header");
		struct spool_tx_header *h = realloc(cfg->headers, (cfg->nheaders + 1) * sizeof(*h));
		if (!h)
			return yerr(y, k, r->key, "%s", "out of memory");
		cfg->headers = h;
		h[cfg->nheaders].name = strdup(name);
		h[cfg->nheaders].value = strdup(val);
		cfg->nheaders++;
	}
	return 0;
}

static int walk(struct yctx *y, yaml_node_t *map, const char *prefix)
{
	for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
		yaml_node_t *k = yaml_document_get_node(y->doc, p->key);
		yaml_node_t *v = yaml_document_get_node(y->doc, p->value);
		if (k->type != YAML_SCALAR_NODE)
			return yerr(y, k, NULL, "%s", "keys must be plain names");
		char name[256];
		snprintf(name, sizeof(name), "%s%s%s", prefix, *prefix ? "." : "",
			 (const char *)k->data.scalar.value);
		const struct key_row *r = find_key(name);
		if (!r) {
			/* a section: recurse when some key starts with "name." */
			size_t nl = strlen(name);
			bool section = false;
			for (size_t i = 0; i < NKEYS && !section; i++)
				section = strncmp(keys[i].key, name, nl) == 0 && keys[i].key[nl] == '.';
			if (section && v->type == YAML_MAPPING_NODE) {
				if (walk(y, v, name))
					return -1;
				continue;
			}
			if (section)
				return yerr(y, v, name, "%s", "expected a map of its keys");
			return yerr(y, k, name, "%s", "unknown key (spool-agent --help-config lists them)");
		}
		size_t idx = (size_t)(r - keys);
		if (y->set[idx])
			return yerr(y, k, name, "%s", "given twice");
		if (is_null(v))
			continue; /* `key:` with no value: the default */
		y->set[idx] = true;
		if (r->type == T_HEADERS) {
			if (set_headers(y, r, v))
				return -1;
			continue;
		}
		if (r->type == T_LIST && v->type == YAML_SEQUENCE_NODE) {
			char joined[1024] = "";
			for (yaml_node_item_t *it = v->data.sequence.items.start;
			     it < v->data.sequence.items.top; it++) {
				yaml_node_t *e = yaml_document_get_node(y->doc, *it);
				if (e->type != YAML_SCALAR_NODE || strpbrk((char *)e->data.scalar.value, ", "))
					return yerr(y, e, name, "%s", "expected a list of transport names");
				if (strlen(joined) + strlen((char *)e->data.scalar.value) + 2 >= sizeof(joined))
					return yerr(y, e, name, "%s", "list too long");
				if (*joined)
					strcat(joined, ",");
				strcat(joined, (char *)e->data.scalar.value);
			}
			char why[256];
			if (set_scalar(r, joined, y->cfg, why, sizeof(why)))
				return yerr(y, v, name, "%s", why);
			continue;
		}
		if (v->type != YAML_SCALAR_NODE)
			return yerr(y, v, name, "expected a %s", type_name(r->type));
		char why[256];
		if (set_scalar(r, (const char *)v->data.scalar.value, y->cfg, why, sizeof(why)))
			return yerr(y, v, name, "%s", why);
	}
	return 0;
}

static int load_yaml(const char *path, struct agent_config *cfg, bool *set, char *err, size_t errlen)
{
	FILE *f = fopen(path, "re");
	if (!f) {
		snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
		return -1;
	}
	yaml_parser_t parser;
	yaml_document_t doc;
	int rc = -1;
	if (!yaml_parser_initialize(&parser)) {
		fclose(f);
		snprintf(err, errlen, "%s: out of memory", path);
		return -1;
	}
	yaml_parser_set_input_file(&parser, f);
	if (!yaml_parser_load(&parser, &doc)) {
		snprintf(err, errlen, "%s:%zu:%zu: %s%s%s", path, (size_t)parser.problem_mark.line + 1,
			 (size_t)parser.problem_mark.column + 1, parser.problem ? parser.problem : "YAML error",
			 parser.context ? " " : "", parser.context ? parser.context : "");
		yaml_parser_delete(&parser);
		fclose(f);
		return -1;
	}
	yaml_node_t *root = yaml_document_get_root_node(&doc);
	struct yctx y = {path, &doc, cfg, set, err, errlen};
	if (!root || is_null(root))
		rc = 0; /* an empty file: everything from the environment and defaults */
	else if (root->type != YAML_MAPPING_NODE)
		rc = yerr(&y, root, NULL, "%s", "expected a map of keys at the top");
	else
		rc = walk(&y, root, "");
	yaml_document_delete(&doc);
	yaml_parser_delete(&parser);
	fclose(f);
	return rc;
}

/* ---- endpoint ---- */

int config_endpoint_root(const char *url, char **root, char *err, size_t errlen)
{
	/* one rule for the agent and the client library */
	return spool_endpoint_normalise(url, root, err, errlen) == 0 ? 0 : -1;
}

void config_redact_key(const char *key, char *buf, size_t len)
{
	size_t n = key ? strlen(key) : 0;
	if (n == 0)
		snprintf(buf, len, "(none)");
	else if (n <= 8)
		snprintf(buf, len, "(set, %zu characters)", n);
	else
		snprintf(buf, len, "...%s", key + n - 4);
}

int config_log_level(const char *name)
{
	static const struct {
		const char *n;
		int l;
	} t[] = {{"error", LOG_ERR}, {"warning", LOG_WARNING}, {"warn", LOG_WARNING}, {"info", LOG_INFO}, {"debug", LOG_DEBUG}};
	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++)
		if (name && strcasecmp(name, t[i].n) == 0)
			return t[i].l;
	return -1;
}

static int read_key_file(struct agent_config *cfg, const char *where, char *err, size_t errlen)
{
	FILE *f = fopen(cfg->api_key_file, "re");
	if (!f) {
		snprintf(err, errlen, "%s: key 'api_key_file': %s: %s", where, cfg->api_key_file, strerror(errno));
		return -1;
	}
	char buf[4096];
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	while (n && isspace((unsigned char)buf[n - 1]))
		buf[--n] = '\0';
	if (!n || strpbrk(buf, "\r\n")) {
		snprintf(err, errlen, "%s: key 'api_key_file': %s: expected one line holding the key", where,
			 cfg->api_key_file);
		return -1;
	}
	free(cfg->api_key);
	cfg->api_key = strdup(buf);
	memset(buf, 0, sizeof(buf));
	return cfg->api_key ? 0 : -1;
}

static int set_override(const char *key, const char *val, struct agent_config *cfg, bool *set,
			char *err, size_t errlen)
{
	const struct key_row *r = find_key(key);
	char why[256];
	if (set_scalar(r, val, cfg, why, sizeof(why))) {
		snprintf(err, errlen, "command line: %s: %s", key, why);
		return -1;
	}
	set[r - keys] = true;
	return 0;
}

int config_load(const char *path, const struct agent_overrides *ov, struct agent_config *cfg,
		char *err, size_t errlen)
{
	bool set[NKEYS] = {false};
	char why[256];
	memset(cfg, 0, sizeof(*cfg));
	if (path && load_yaml(path, cfg, set, err, errlen))
		goto fail;
	if (ov && ov->spool && set_override("spool", ov->spool, cfg, set, err, errlen))
		goto fail;
	if (ov && ov->endpoint && set_override("endpoint", ov->endpoint, cfg, set, err, errlen))
		goto fail;
	if (ov && ov->log_level && set_override("log.level", ov->log_level, cfg, set, err, errlen))
		goto fail;
	for (size_t i = 0; i < NKEYS; i++) {
		const struct key_row *r = &keys[i];
		if (set[i])
			continue;
		const char *ev = r->env ? getenv(r->env) : NULL;
		if (ev && *ev) {
			if (set_scalar(r, ev, cfg, why, sizeof(why))) {
				snprintf(err, errlen, "environment %s (key '%s'): %s", r->env, r->key, why);
				goto fail;
			}
			set[i] = true;
		} else if (r->def && set_scalar(r, r->def, cfg, why, sizeof(why))) {
			snprintf(err, errlen, "default of '%s': %s", r->key, why); /* a table bug */
			goto fail;
		}
	}
	const char *where = path ? path : "configuration";
	if (!cfg->spool) {
		char dir[4096];
		int rc = spool_default_dir(dir, sizeof(dir));
		if (rc) {
			snprintf(err, errlen, "%s: key 'spool': not set and no default: %s", where, spool_strerror(rc));
			goto fail;
		}
		cfg->spool = strdup(dir);
	}
	if (cfg->api_key && cfg->api_key_file && set[(size_t)(find_key("api_key") - keys)]) {
		snprintf(err, errlen, "%s: keys 'api_key' and 'api_key_file': give one, not both", where);
		goto fail;
	}
	if (cfg->api_key_file && read_key_file(cfg, where, err, errlen))
		goto fail;
	bool http = false;
	for (size_t i = 0; i < cfg->ntransports; i++)
		http |= strncmp(cfg->transports[i], "http", 4) == 0;
	if (cfg->endpoint) {
		char e[300];
		if (config_endpoint_root(cfg->endpoint, &cfg->endpoint_root, e, sizeof(e))) {
			snprintf(err, errlen, "%s: key 'endpoint': %s", where, e);
			goto fail;
		}
	} else if (http) {
		snprintf(err, errlen, "%s: key 'endpoint': not set (nor MASTER_LOG_ENDPOINT); the %s transport needs it",
			 where, cfg->transports[0]);
		goto fail;
	}
	if (config_log_level(cfg->log_level) < 0) {
		snprintf(err, errlen, "%s: key 'log.level': '%s' is not error, warning, info or debug", where,
			 cfg->log_level);
		goto fail;
	}
	if (strcmp(cfg->log_target, "stderr") != 0 && strcmp(cfg->log_target, "syslog") != 0) {
		snprintf(err, errlen, "%s: key 'log.target': '%s' is not stderr or syslog", where, cfg->log_target);
		goto fail;
	}
	if (cfg->retry_max < cfg->retry_initial) {
		snprintf(err, errlen, "%s: key 'retry.max_seconds': smaller than retry.initial_seconds", where);
		goto fail;
	}
	if ((cfg->client_key != NULL) != (cfg->client_cert != NULL)) {
		snprintf(err, errlen, "%s: keys 'tls.client_cert' and 'tls.client_key': give both or neither", where);
		goto fail;
	}
	return 0;
fail:
	config_free(cfg);
	return -1;
}
