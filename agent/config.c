/* config.c — the options table, the YAML reader, the environment and the
 * checks.  Parsing, defaults and `spool-agent --help-config` all come from
 * the one table below. */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <syslog.h>
#include <unistd.h>
#include <yaml.h>

#include "codec/endpoint.h"
#include <spool/spool.h>

#include "config.h"

#define T_STR	  CONFIG_STR
#define T_INT	  CONFIG_INT
#define T_SECONDS CONFIG_SECONDS
#define T_BOOL	  CONFIG_BOOL
#define T_LIST	  CONFIG_LIST
#define T_HEADERS CONFIG_HEADERS

struct key_row {
	const char *key;
	enum config_type type;
	const char *def; /* parsed like a configured value; NULL: unset */
	size_t off;
	const char *env;
	double min, max;
	const char *doc;
	enum config_kind kind;
	const char *choices; /* CONFIG_K_CHOICE: "a|b|c", the first spelling of each kept */
};

#define OFF(f) offsetof(struct agent_config, f)

static const struct key_row keys[] = {
	{"spool", T_STR, NULL, OFF(spool), "MASTER_LOG_SPOOL_DIR", 0, 0,
	 "spool directory (default: /var/spool/master-log for root, else ~/.local/state/master-log/spool)",
	 CONFIG_K_SPOOL, NULL},
	{"endpoint", T_STR, NULL, OFF(endpoint), "MASTER_LOG_ENDPOINT", 0, 0,
	 "Master Log URL: the root, /api/v1 or /api/v1/logs (required by the HTTP transports)",
	 CONFIG_K_URL, NULL},
	{"api_key", T_STR, NULL, OFF(api_key), "MASTER_LOG_API_KEY", 0, 0,
	 "API key sent as X-API-Key (never logged)", CONFIG_K_SECRET, NULL},
	{"api_key_file", T_STR, NULL, OFF(api_key_file), NULL, 0, 0,
	 "file holding the API key (trailing white space ignored; owned by the agent's user, mode 0600 "
	 "or 0400); not with api_key",
	 CONFIG_K_SECRET_FILE, NULL},
	{"headers", T_HEADERS, NULL, OFF(headers), NULL, 0, 0, "extra request headers, a map of name: value",
	 CONFIG_K_TEXT, NULL},
	{"transports", T_LIST, "http_batch,http_single", OFF(transports), NULL, 0, 0,
	 "transport chain, first first; each falls back to the next", CONFIG_K_NAMES, NULL},
	{"plugin_dir", T_STR, NULL, OFF(plugin_dir), NULL, 0, 0,
	 "folder searched first for <name>.so (then $SPOOL_PLUGIN_DIR, then the install folder)",
	 CONFIG_K_DIR, NULL},
	{"file.path", T_STR, NULL, OFF(file_path), NULL, 0, 0,
	 "output of the `file` transport (JSON lines; its folder must exist)", CONFIG_K_OUT_FILE, NULL},
	{"batch_size", T_INT, "100", OFF(batch_size), "MASTER_LOG_BATCH_SIZE", 1, 100000,
	 "events per request at most", CONFIG_K_TEXT, NULL},
	{"max_batch_bytes", T_INT, "5242880", OFF(max_batch_bytes), NULL, 1024, 1 << 30,
	 "bytes per request at most (stored bytes when reading, JSON bytes when sending)", CONFIG_K_TEXT,
	 NULL},
	{"flush_interval_seconds", T_SECONDS, "1.0", OFF(flush_interval), "MASTER_LOG_FLUSH_INTERVAL_SECONDS",
	 0.001, 86400, "an idle agent looks at the spool this often (a producer's wake-up is at once)",
	 CONFIG_K_TEXT, NULL},
	{"min_request_interval_seconds", T_SECONDS, "0", OFF(min_request_interval),
	 "MASTER_LOG_MIN_REQUEST_INTERVAL_SECONDS", 0, 3600, "least time between request starts",
	 CONFIG_K_TEXT, NULL},
	{"retry.initial_seconds", T_SECONDS, "1.0", OFF(retry_initial), NULL, 0.001, 86400,
	 "first backoff after a failed send", CONFIG_K_TEXT, NULL},
	{"retry.max_seconds", T_SECONDS, "300", OFF(retry_max), NULL, 0.001, 86400, "backoff cap",
	 CONFIG_K_TEXT, NULL},
	{"retry.multiplier", T_SECONDS, "2.0", OFF(retry_multiplier), NULL, 1, 100,
	 "backoff growth per consecutive failure", CONFIG_K_TEXT, NULL},
	{"retry.jitter", T_BOOL, "true", OFF(retry_jitter), NULL, 0, 0,
	 "full jitter: wait a uniform random time from 0 to the backoff", CONFIG_K_TEXT, NULL},
	{"retry.auth_seconds", T_SECONDS, "300", OFF(auth_retry), NULL, 0.001, 86400,
	 "wait after 401/403 or a missing endpoint (events are kept)", CONFIG_K_TEXT, NULL},
	{"timeouts.connect_seconds", T_SECONDS, "10", OFF(connect_timeout), NULL, 0.001, 3600,
	 "TCP and TLS connect timeout", CONFIG_K_TEXT, NULL},
	{"timeouts.request_seconds", T_SECONDS, "30", OFF(request_timeout), NULL, 0.001, 86400,
	 "whole-request timeout", CONFIG_K_TEXT, NULL},
	{"gzip", T_BOOL, "false", OFF(gzip), NULL, 0, 0, "gzip request bodies (a 415 turns it off until restart)",
	 CONFIG_K_TEXT, NULL},
	{"tls.verify", T_BOOL, "true", OFF(tls_verify), NULL, 0, 0,
	 "verify the server's certificate and name (false logs a warning at every start and reload)",
	 CONFIG_K_TEXT, NULL},
	{"tls.ca_file", T_STR, NULL, OFF(ca_file), NULL, 0, 0, "CA bundle (PEM)", CONFIG_K_READ_FILE, NULL},
	{"tls.client_cert", T_STR, NULL, OFF(client_cert), NULL, 0, 0, "client certificate (PEM)",
	 CONFIG_K_READ_FILE, NULL},
	{"tls.client_key", T_STR, NULL, OFF(client_key), NULL, 0, 0, "client key (PEM)", CONFIG_K_READ_FILE,
	 NULL},
	{"max_age_seconds", T_SECONDS, "0", OFF(max_age), NULL, 0, 1e9,
	 "drop (and count) events older than this; 0: never", CONFIG_K_TEXT, NULL},
	{"delivery_metadata", T_BOOL, "false", OFF(delivery_metadata), NULL, 0, 0,
	 "add metadata.delivery {attempts, spooled_seconds} when sending", CONFIG_K_TEXT, NULL},
	{"recover_interval_seconds", T_SECONDS, "10", OFF(recover_interval), NULL, 0.01, 86400,
	 "how often dead producers' rings are recovered", CONFIG_K_TEXT, NULL},
	{"meta_interval_seconds", T_SECONDS, "1", OFF(meta_interval), NULL, 0.01, 3600,
	 "how often the agent's figures are published into the spool's meta store", CONFIG_K_TEXT, NULL},
	{"log.level", T_STR, "info", OFF(log_level), NULL, 0, 0, "error, warning, info or debug",
	 CONFIG_K_CHOICE, "error|warning|info|debug|warn"},
	{"log.target", T_STR, "stderr", OFF(log_target), NULL, 0, 0, "stderr or syslog", CONFIG_K_CHOICE,
	 "stderr|syslog"},
};

#define NKEYS (sizeof(keys) / sizeof(keys[0]))

static const char *type_name(enum config_type t)
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

int config_key_info(size_t i, struct config_key_info *out)
{
	if (i >= NKEYS || !out)
		return -1;
	const struct key_row *r = &keys[i];
	*out = (struct config_key_info){r->key, r->type, r->kind, r->def, r->env, r->min, r->max, r->choices};
	return 0;
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

/* A value as it may appear in a one-line message: at most max characters,
 * control characters as '?'. */
static const char *show(const char *text, size_t max, char *buf, size_t len)
{
	size_t n = 0, i = 0;
	for (; text[i] && i < max && n + 4 < len; i++)
		buf[n++] = (unsigned char)text[i] < 0x20 || text[i] == 0x7f ? '?' : text[i];
	if (text[i] && n + 4 <= len) {
		memcpy(buf + n, "...", 3);
		n += 3;
	}
	buf[n] = '\0';
	return buf;
}

#define SHOW(text) show((text), 200, (char[256]){0}, 256)

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
			snprintf(why, wl, "expected an integer from %.0f to %.0f, got '%s'", r->min, r->max,
				 SHOW(text));
			return -1;
		}
		*(long *)dst = v;
		return 0;
	}
	case T_SECONDS: {
		/* decimal only: no "inf", "nan" or hexadecimal */
		errno = 0;
		double v = strtod(text, &end);
		if (errno || end == text || *end || strspn(text, "0123456789+-.eE") != strlen(text) ||
		    !isfinite(v) || v < r->min || v > r->max) {
			snprintf(why, wl, "expected a number from %g to %g, got '%s'", r->min, r->max, SHOW(text));
			return -1;
		}
		*(double *)dst = v;
		return 0;
	}
	case T_BOOL:
		if (!parse_bool(text, (bool *)dst)) {
			snprintf(why, wl, "expected true or false, got '%s'", SHOW(text));
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

/* ---- where a value came from, for messages ---- */

enum from { FROM_DEFAULT, FROM_FILE, FROM_ENV, FROM_CMDLINE };

struct origin {
	enum from from;
	bool seen; /* named in the file, even with no value */
	size_t line, col;
	const char *opt; /* the command-line option */
};

struct loadctx {
	const char *path; /* NULL: no file */
	struct origin o[NKEYS];
	char *err;
	size_t errlen;
};

/* "FILE:LINE:COL: key 'k'", "environment VAR (key 'k', ...)" or "command
 * line --opt (key 'k')". */
static void where(const struct loadctx *lc, const struct key_row *r, char *buf, size_t len)
{
	const struct origin *o = &lc->o[r - keys];
	switch (o->from) {
	case FROM_FILE:
		snprintf(buf, len, "%s:%zu:%zu: key '%s'", lc->path, o->line, o->col, r->key);
		break;
	case FROM_ENV:
		snprintf(buf, len, "environment %s (key '%s'%s%s)", r->env, r->key,
			 lc->path ? ", not set in " : "", lc->path ? lc->path : "");
		break;
	case FROM_CMDLINE:
		snprintf(buf, len, "command line %s (key '%s')", o->opt, r->key);
		break;
	default:
		snprintf(buf, len, "%s: key '%s'", lc->path ? lc->path : "configuration", r->key);
	}
}

static int kerr(struct loadctx *lc, const struct key_row *r, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int kerr(struct loadctx *lc, const struct key_row *r, const char *fmt, ...)
{
	char w[512];
	where(lc, r, w, sizeof(w));
	int off = snprintf(lc->err, lc->errlen, "%s: ", w);
	if (off >= 0 && (size_t)off < lc->errlen) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(lc->err + off, lc->errlen - (size_t)off, fmt, ap);
		va_end(ap);
	}
	return -1;
}

/* ---- YAML ---- */

struct yctx {
	const char *path;
	yaml_document_t *doc;
	struct agent_config *cfg;
	struct loadctx *lc;
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

static const char *scalar(const yaml_node_t *n)
{
	return (const char *)n->data.scalar.value;
}

/* RFC 9110 token characters. */
static bool header_name_ok(const char *s)
{
	if (!*s)
		return false;
	for (; *s; s++)
		if (!isalnum((unsigned char)*s) && !strchr("!#$%&'*+-.^_`|~", *s))
			return false;
	return true;
}

static bool header_value_ok(const char *s)
{
	for (; *s; s++)
		if (((unsigned char)*s < 0x20 && *s != '\t') || *s == 0x7f)
			return false;
	return true;
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
			return yerr(y, k->type != YAML_SCALAR_NODE ? k : v, r->key, "%s",
				    "header names and values must be strings");
		const char *name = scalar(k), *val = scalar(v);
		if (!header_name_ok(name))
			return yerr(y, k, r->key, "bad header name '%s'", SHOW(name));
		if (!header_value_ok(val))
			return yerr(y, v, r->key, "header '%s': the value holds a control character", name);
		if (strcasecmp(name, "X-API-Key") == 0)
			return yerr(y, k, r->key, "%s", "set the key with api_key or api_key_file, not as a header");
		for (size_t i = 0; i < cfg->nheaders; i++)
			if (strcasecmp(cfg->headers[i].name, name) == 0)
				return yerr(y, k, r->key, "header '%s' given twice", name);
		struct spool_tx_header *h = realloc(cfg->headers, (cfg->nheaders + 1) * sizeof(*h));
		if (!h)
			return yerr(y, k, r->key, "%s", "out of memory");
		cfg->headers = h;
		h[cfg->nheaders].name = strdup(name);
		h[cfg->nheaders].value = strdup(val);
		cfg->nheaders++;
		if (!h[cfg->nheaders - 1].name || !h[cfg->nheaders - 1].value)
			return yerr(y, k, r->key, "%s", "out of memory");
	}
	return 0;
}

static int set_list(struct yctx *y, const struct key_row *r, yaml_node_t *v)
{
	char joined[1024] = "";
	for (yaml_node_item_t *it = v->data.sequence.items.start; it < v->data.sequence.items.top; it++) {
		yaml_node_t *e = yaml_document_get_node(y->doc, *it);
		if (e->type != YAML_SCALAR_NODE || !*scalar(e) || strpbrk(scalar(e), ", "))
			return yerr(y, e, r->key, "%s", "expected a list of transport names");
		if (strlen(joined) + strlen(scalar(e)) + 2 >= sizeof(joined))
			return yerr(y, e, r->key, "%s", "list too long");
		if (*joined)
			strcat(joined, ",");
		strcat(joined, scalar(e));
	}
	char why[256];
	if (set_scalar(r, joined, y->cfg, why, sizeof(why)))
		return yerr(y, v, r->key, "%s", why);
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
		snprintf(name, sizeof(name), "%s%s%s", prefix, *prefix ? "." : "", scalar(k));
		const struct key_row *r = find_key(name);
		/* YAML forbids a key twice in one map; libyaml does not check.  (A
		 * section may come twice: its keys merge, each still at most once.) */
		for (yaml_node_pair_t *q = map->data.mapping.pairs.start; r && q < p; q++) {
			yaml_node_t *kq = yaml_document_get_node(y->doc, q->key);
			if (kq->type == YAML_SCALAR_NODE && strcmp(scalar(kq), scalar(k)) == 0)
				return yerr(y, k, name, "given twice (first on line %zu)",
					    (size_t)kq->start_mark.line + 1);
		}
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
		struct origin *o = &y->lc->o[r - keys];
		if (o->seen)
			return yerr(y, k, name, "%s", "given twice");
		o->seen = true;
		if (is_null(v))
			continue; /* `key:` with no value: the default */
		*o = (struct origin){FROM_FILE, true, (size_t)v->start_mark.line + 1,
				     (size_t)v->start_mark.column + 1, NULL};
		if (r->type == T_HEADERS) {
			if (set_headers(y, r, v))
				return -1;
			continue;
		}
		if (r->type == T_LIST && v->type == YAML_SEQUENCE_NODE) {
			if (set_list(y, r, v))
				return -1;
			continue;
		}
		if (v->type != YAML_SCALAR_NODE)
			return yerr(y, v, name, "expected a %s, got a %s", type_name(r->type),
				    v->type == YAML_MAPPING_NODE ? "map" : "list");
		bool plain = v->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
		bool b;
		if (!plain && (r->type == T_INT || r->type == T_SECONDS || r->type == T_BOOL))
			return yerr(y, v, name, "expected a %s, got the quoted string \"%s\" (drop the quotes)",
				    type_name(r->type), SHOW(scalar(v)));
		if (plain && r->type == T_STR && strcmp(scalar(v), "0") != 0 && strcmp(scalar(v), "1") != 0 &&
		    parse_bool(scalar(v), &b))
			return yerr(y, v, name, "expected a string, got the boolean %s (quote it if it is text)",
				    scalar(v));
		char why[256];
		if (set_scalar(r, scalar(v), y->cfg, why, sizeof(why)))
			return yerr(y, v, name, "%s", why);
	}
	return 0;
}

static int parse_error(const char *path, const yaml_parser_t *parser, char *err, size_t errlen)
{
	snprintf(err, errlen, "%s:%zu:%zu: %s%s%s", path, (size_t)parser->problem_mark.line + 1,
		 (size_t)parser->problem_mark.column + 1, parser->problem ? parser->problem : "YAML error",
		 parser->context ? " " : "", parser->context ? parser->context : "");
	return -1;
}

static int load_yaml(const char *path, struct agent_config *cfg, struct loadctx *lc, char *err,
		     size_t errlen)
{
	FILE *f = fopen(path, "re");
	if (!f) {
		snprintf(err, errlen, "%s: cannot open the configuration: %s", path, strerror(errno));
		return -1;
	}
	struct stat st;
	if (fstat(fileno(f), &st) == 0 && S_ISDIR(st.st_mode)) {
		fclose(f);
		snprintf(err, errlen, "%s: is a directory, not a YAML configuration file", path);
		return -1;
	}
	yaml_parser_t parser;
	yaml_document_t doc, more;
	int rc = -1;
	if (!yaml_parser_initialize(&parser)) {
		fclose(f);
		snprintf(err, errlen, "%s: out of memory", path);
		return -1;
	}
	yaml_parser_set_input_file(&parser, f);
	if (!yaml_parser_load(&parser, &doc)) {
		parse_error(path, &parser, err, errlen);
		yaml_parser_delete(&parser);
		fclose(f);
		return -1;
	}
	yaml_node_t *root = yaml_document_get_root_node(&doc);
	struct yctx y = {path, &doc, cfg, lc, err, errlen};
	if (!root || is_null(root)) {
		snprintf(err, errlen,
			 "%s: no keys: the file is empty (run without -c to take everything from the "
			 "environment and the defaults)",
			 path);
	} else if (root->type != YAML_MAPPING_NODE) {
		yerr(&y, root, NULL, "expected a map of keys at the top, got a %s",
		     root->type == YAML_SEQUENCE_NODE ? "list" : "single value");
	} else if (walk(&y, root, "") == 0) {
		/* libyaml reads one document at a time: anything after it is an
		 * error too, not something to ignore */
		if (!yaml_parser_load(&parser, &more)) {
			parse_error(path, &parser, err, errlen);
		} else {
			yaml_node_t *r2 = yaml_document_get_root_node(&more);
			if (r2 && !is_null(r2))
				yerr(&y, r2, NULL, "%s",
				     "a second YAML document ('---'): put every key in one document");
			else
				rc = 0;
			yaml_document_delete(&more);
		}
	}
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

/* ---- checks after loading ---- */

/* The key travels in a header: printable, no white space, bounded.  The
 * value is never shown. */
static int check_secret(struct loadctx *lc, const struct key_row *r, const char *v, const char *what)
{
	size_t n = strlen(v);
	if (n > CONFIG_KEY_MAX)
		return kerr(lc, r, "%s is longer than %d bytes (the value is not shown)", what, CONFIG_KEY_MAX);
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)v[i] <= 0x20 || v[i] == 0x7f)
			return kerr(lc, r, "%s holds a space or control character at byte %zu (the value is not shown)",
				    what, i + 1);
	return 0;
}

/* api_key_file: a regular file, owned by the agent's user, readable by it
 * alone, holding one line. */
static int read_key_file(struct loadctx *lc, const struct key_row *r, struct agent_config *cfg)
{
	const char *p = cfg->api_key_file;
	int fd = open(p, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0)
		return kerr(lc, r, "%s: %s", SHOW(p), strerror(errno));
	struct stat st;
	int rc = -1;
	char buf[4097];
	size_t n = 0;
	if (fstat(fd, &st) != 0) {
		kerr(lc, r, "%s: %s", SHOW(p), strerror(errno));
	} else if (!S_ISREG(st.st_mode)) {
		kerr(lc, r, "%s: not a regular file", SHOW(p));
	} else if (st.st_uid != geteuid()) {
		kerr(lc, r,
		     "%s: refused: owned by uid %lu, not by the agent's user (uid %lu); chown it to the "
		     "agent's user and chmod 600",
		     SHOW(p), (unsigned long)st.st_uid, (unsigned long)geteuid());
	} else if (st.st_mode & 077) {
		kerr(lc, r,
		     "%s: refused: mode %04o lets group or others read or change the key; expected 0600 or "
		     "0400: chmod 600 %s",
		     SHOW(p), (unsigned)(st.st_mode & 07777), SHOW(p));
	} else {
		for (;;) {
			ssize_t got = read(fd, buf + n, sizeof(buf) - 1 - n);
			if (got < 0 && errno == EINTR)
				continue;
			if (got < 0) {
				kerr(lc, r, "%s: %s", SHOW(p), strerror(errno));
				goto out;
			}
			if (got == 0 || (n += (size_t)got) == sizeof(buf) - 1)
				break;
		}
		buf[n] = '\0';
		while (n && isspace((unsigned char)buf[n - 1]))
			buf[--n] = '\0';
		if (n >= sizeof(buf) - 2)
			kerr(lc, r, "%s: larger than %zu bytes: expected one line holding the key", SHOW(p),
			     sizeof(buf) - 2);
		else if (!n || strpbrk(buf, "\r\n") || strlen(buf) != n)
			kerr(lc, r, "%s: expected one line holding the key", SHOW(p));
		else if (check_secret(lc, r, buf, "the key in the file") == 0)
			rc = 0;
	}
	if (rc == 0) {
		free(cfg->api_key);
		cfg->api_key = strdup(buf);
		if (!cfg->api_key)
			rc = kerr(lc, r, "%s", "out of memory");
	}
out:
	explicit_bzero(buf, sizeof(buf));
	close(fd);
	return rc;
}

static int check_choice(struct loadctx *lc, const struct key_row *r, char **dst)
{
	char list[256] = "";
	const char *c = r->choices;
	while (*c) {
		size_t k = strcspn(c, "|");
		if (strlen(*dst) == k && strncasecmp(*dst, c, k) == 0) {
			for (char *q = *dst; *q; q++)
				*q = (char)tolower((unsigned char)*q);
			return 0;
		}
		size_t l = strlen(list);
		snprintf(list + l, sizeof(list) - l, "%s%.*s", l ? ", " : "", (int)k, c);
		c += k + (c[k] == '|');
	}
	return kerr(lc, r, "'%s' is not one of %s", SHOW(*dst), list);
}

/* Checks one string key's value by its kind. */
static int check_string(struct loadctx *lc, const struct key_row *r, struct agent_config *cfg)
{
	char **dst = (char **)((char *)cfg + r->off);
	const char *v = *dst;
	struct stat st;
	if (!v)
		return 0;
	if (!*v)
		return kerr(lc, r, "%s", "is empty (leave the key out for the default)");
	switch (r->kind) {
	case CONFIG_K_URL: {
		char e[300];
		if (config_endpoint_root(v, &cfg->endpoint_root, e, sizeof(e)))
			return kerr(lc, r, "%s", e);
		return 0;
	}
	case CONFIG_K_SECRET:
		return check_secret(lc, r, v, "the key");
	case CONFIG_K_SECRET_FILE:
		return read_key_file(lc, r, cfg);
	case CONFIG_K_READ_FILE: {
		int fd = open(v, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
		if (fd < 0)
			return kerr(lc, r, "%s: %s", SHOW(v), strerror(errno));
		int ok = fstat(fd, &st) == 0 && S_ISREG(st.st_mode);
		close(fd);
		return ok ? 0 : kerr(lc, r, "%s: not a regular file", SHOW(v));
	}
	case CONFIG_K_DIR:
		if (stat(v, &st) != 0)
			return kerr(lc, r, "%s: %s", SHOW(v), strerror(errno));
		return S_ISDIR(st.st_mode) ? 0 : kerr(lc, r, "%s: not a directory", SHOW(v));
	case CONFIG_K_OUT_FILE: {
		if (stat(v, &st) == 0 && S_ISDIR(st.st_mode))
			return kerr(lc, r, "%s: is a directory", SHOW(v));
		char dir[4096];
		snprintf(dir, sizeof(dir), "%s", v);
		char *slash = strrchr(dir, '/');
		if (!slash)
			snprintf(dir, sizeof(dir), ".");
		else
			slash[slash == dir] = '\0';
		if (stat(dir, &st) != 0)
			return kerr(lc, r, "%s: its folder %s: %s", SHOW(v), SHOW(dir), strerror(errno));
		return S_ISDIR(st.st_mode) ? 0 : kerr(lc, r, "%s: %s is not a directory", SHOW(v), SHOW(dir));
	}
	case CONFIG_K_SPOOL:
		if (stat(v, &st) == 0)
			return S_ISDIR(st.st_mode) ? 0 : kerr(lc, r, "%s: exists and is not a directory", SHOW(v));
		return errno == ENOENT ? 0 : kerr(lc, r, "%s: %s", SHOW(v), strerror(errno));
	case CONFIG_K_CHOICE:
		return check_choice(lc, r, dst);
	default:
		return 0;
	}
}

/* Transport names: a plugin name or a path, each once. */
static int check_names(struct loadctx *lc, const struct key_row *r, const struct agent_config *cfg)
{
	for (size_t i = 0; i < cfg->ntransports; i++) {
		const char *n = cfg->transports[i];
		for (const char *c = n; *c; c++)
			if (!isalnum((unsigned char)*c) && !strchr("_-./+", *c))
				return kerr(lc, r, "'%s' is not a transport name", SHOW(n));
		for (size_t j = 0; j < i; j++)
			if (strcmp(cfg->transports[j], n) == 0)
				return kerr(lc, r, "'%s' named twice", SHOW(n));
	}
	return 0;
}

static bool in_chain(const struct agent_config *cfg, const char *prefix, bool exact)
{
	for (size_t i = 0; i < cfg->ntransports; i++)
		if (exact ? strcmp(cfg->transports[i], prefix) == 0
			  : strncmp(cfg->transports[i], prefix, strlen(prefix)) == 0)
			return true;
	return false;
}

static int set_override(struct loadctx *lc, const char *key, const char *opt, const char *val,
			struct agent_config *cfg)
{
	const struct key_row *r = find_key(key);
	char why[256];
	lc->o[r - keys] = (struct origin){FROM_CMDLINE, false, 0, 0, opt};
	if (set_scalar(r, val, cfg, why, sizeof(why)))
		return kerr(lc, r, "%s", why);
	return 0;
}

int config_load(const char *path, const struct agent_overrides *ov, struct agent_config *cfg,
		char *err, size_t errlen)
{
	struct loadctx *lc = calloc(1, sizeof(*lc));
	char why[256];
	memset(cfg, 0, sizeof(*cfg));
	if (!lc) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	*lc = (struct loadctx){.path = path, .err = err, .errlen = errlen};
	if (path && load_yaml(path, cfg, lc, err, errlen))
		goto fail;
	if (ov && ov->spool && set_override(lc, "spool", "--spool", ov->spool, cfg))
		goto fail;
	if (ov && ov->endpoint && set_override(lc, "endpoint", "--endpoint", ov->endpoint, cfg))
		goto fail;
	if (ov && ov->log_level && set_override(lc, "log.level", "--log-level", ov->log_level, cfg))
		goto fail;
	for (size_t i = 0; i < NKEYS; i++) {
		const struct key_row *r = &keys[i];
		if (lc->o[i].from != FROM_DEFAULT)
			continue;
		const char *ev = r->env ? getenv(r->env) : NULL;
		if (ev && *ev) {
			lc->o[i].from = FROM_ENV;
			if (set_scalar(r, ev, cfg, why, sizeof(why))) {
				kerr(lc, r, "%s", why);
				goto fail;
			}
		} else if (r->def && set_scalar(r, r->def, cfg, why, sizeof(why))) {
			kerr(lc, r, "bad default: %s", why); /* a table bug */
			goto fail;
		}
	}
	const struct key_row *spool = find_key("spool"), *key = find_key("api_key");
	if (!cfg->spool) {
		char dir[4096];
		int rc = spool_default_dir(dir, sizeof(dir));
		if (rc) {
			kerr(lc, spool, "not set and no default: %s", spool_strerror(rc));
			goto fail;
		}
		cfg->spool = strdup(dir);
	}
	if (cfg->api_key && cfg->api_key_file && lc->o[key - keys].from != FROM_DEFAULT) {
		kerr(lc, key, "%s", "'api_key' and 'api_key_file' are both set: give one, not both");
		goto fail;
	}
	if ((cfg->client_key != NULL) != (cfg->client_cert != NULL)) {
		kerr(lc, find_key(cfg->client_key ? "tls.client_key" : "tls.client_cert"), "%s",
		     "tls.client_cert and tls.client_key go together: give both or neither");
		goto fail;
	}
	for (size_t i = 0; i < NKEYS; i++) {
		if (keys[i].type == T_STR && check_string(lc, &keys[i], cfg))
			goto fail;
		if (keys[i].kind == CONFIG_K_NAMES && check_names(lc, &keys[i], cfg))
			goto fail;
	}
	if (!cfg->endpoint && in_chain(cfg, "http", false)) {
		kerr(lc, find_key("endpoint"), "not set (nor MASTER_LOG_ENDPOINT); the %s transport needs it",
		     cfg->transports[0]);
		goto fail;
	}
	if (!cfg->file_path && in_chain(cfg, "file", true)) {
		kerr(lc, find_key("file.path"), "%s", "not set; the file transport needs it");
		goto fail;
	}
	if (cfg->retry_max < cfg->retry_initial) {
		kerr(lc, find_key("retry.max_seconds"), "%g is smaller than retry.initial_seconds (%g)",
		     cfg->retry_max, cfg->retry_initial);
		goto fail;
	}
	free(lc);
	return 0;
fail:
	free(lc);
	config_free(cfg);
	return -1;
}
