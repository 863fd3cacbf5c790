/* config.c — the agent's options table, the YAML reader, the environment
 * and the checks.  The agent's own keys and each transport's section are
 * tables of the same row type (struct spool_tx_option), read by the same
 * code: parsing, defaults and `spool-agent --help-config` all come from the
 * tables. */
#include <arpa/inet.h>
#include <ctype.h>
#include <netinet/in.h>
#include <yaml.h>
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

#include <spool/spool.h>

#include "codec/endpoint.h"
#include "config.h"
#include "config_internal.h"
#include "window.h"

#ifndef SPOOL_PLUGIN_INSTALL_DIR
#define SPOOL_PLUGIN_INSTALL_DIR "/usr/local/lib/master-log-spool/plugins"
#endif

/* ---- the agent's own keys ---- */

#define T_STR	  SPOOL_TX_STRING
#define T_INT	  SPOOL_TX_INT
#define T_SECONDS SPOOL_TX_NUMBER
#define T_BOOL	  SPOOL_TX_BOOL
#define T_LIST	  SPOOL_TX_LIST

enum agent_key {
	K_SPOOL,
	K_TRANSPORTS,
	K_PLUGIN_DIR,
	K_BATCH_SIZE,
	K_MAX_BATCH_SIZE,
	K_MAX_BATCH_BYTES,
	K_MAX_IN_FLIGHT,
	K_BANDWIDTH_LIMIT,
	K_SEND_WINDOWS,
	K_REPLAY_ORDER,
	K_FLUSH_INTERVAL,
	K_MIN_REQUEST_INTERVAL,
	K_RETRY_INITIAL,
	K_RETRY_MAX,
	K_RETRY_MULTIPLIER,
	K_RETRY_JITTER,
	K_RETRY_AUTH,
	K_MAX_AGE,
	K_DELIVERY_METADATA,
	K_RECOVER_INTERVAL,
	K_META_INTERVAL,
	K_LOG_LEVEL,
	K_LOG_TARGET,
	K_METRICS_LISTEN,
	K_COUNT
};

static const struct spool_tx_option agent_options[K_COUNT] = {
	[K_SPOOL] = {"spool", T_STR, CONFIG_K_SPOOL, NULL, "MASTER_LOG_SPOOL_DIR", 0, 0, NULL,
		     "spool directory (default: /var/spool/master-log for root and group master-log, else "
		     "~/.local/state/master-log/spool)"},
	[K_TRANSPORTS] = {"transports", T_LIST, CONFIG_K_NAMES, "http_batch,http_single", NULL, 0, 0, NULL,
			  "transport chain, first first; each falls back to the next (built in: http_batch, "
			  "http_single, file; any other name is loaded as <name>.so)"},
	[K_PLUGIN_DIR] = {"plugin_dir", T_STR, CONFIG_K_DIR, NULL, NULL, 0, 0, NULL,
			  "folder searched first for <name>.so of a transport that is not built in (then "
			  "$SPOOL_PLUGIN_DIR, then the install folder)"},
	[K_BATCH_SIZE] = {"batch_size", T_INT, CONFIG_K_TEXT, "100", "MASTER_LOG_BATCH_SIZE", 1, 100000, NULL,
			  "events per request for live traffic (the seed's meaning)"},
	[K_MAX_BATCH_SIZE] = {"max_batch_size", T_INT, CONFIG_K_TEXT, "1000", "MASTER_LOG_MAX_BATCH_SIZE", 1, 100000,
			      NULL,
			      "events per request at most while a backlog waits (1000 is the HTTP protocol's "
			      "limit); not below batch_size"},
	[K_MAX_BATCH_BYTES] = {"max_batch_bytes", T_INT, CONFIG_K_TEXT, "5242880", NULL, 1024, 1 << 30, NULL,
			       "bytes per request at most (stored bytes when reading, JSON bytes when sending)"},
	[K_MAX_IN_FLIGHT] = {"max_in_flight", T_INT, CONFIG_K_TEXT, "4", "MASTER_LOG_MAX_IN_FLIGHT", 1, 64, NULL,
			     "requests open at once (for transports that can keep several; batches may then "
			     "complete out of order)"},
	[K_BANDWIDTH_LIMIT] = {"bandwidth_limit", T_STR, CONFIG_K_RATE, "0", "MASTER_LOG_BANDWIDTH_LIMIT", 0, 0,
			       NULL,
			       "bytes per second the agent sends at most (request bodies as sent, and headers), "
			       "averaged; suffix k or M for thousands or millions; 0: no cap"},
	[K_SEND_WINDOWS] = {"send_windows", T_LIST, CONFIG_K_WINDOWS, NULL, "MASTER_LOG_SEND_WINDOWS", 0, 0, NULL,
			    "times of day when sending is allowed, as HH:MM[:SS]-HH:MM[:SS], local time or "
			    "with a trailing Z for UTC (e.g. [\"01:00-05:00\", \"13:30-14:10Z\"]); empty: "
			    "always"},
	[K_REPLAY_ORDER] = {"replay_order", T_STR, CONFIG_K_CHOICE, "fifo", "MASTER_LOG_REPLAY_ORDER", 0, 0,
			    "fifo|severity",
			    "fifo: oldest first; severity: a waiting backlog goes fatal, error, warn, info, "
			    "debug, each in enqueue order"},
	[K_FLUSH_INTERVAL] = {"flush_interval_seconds", T_SECONDS, CONFIG_K_TEXT, "1.0",
			      "MASTER_LOG_FLUSH_INTERVAL_SECONDS", 0.001, 86400, NULL,
			      "an idle agent looks at the spool this often (a producer's wake-up is at once)"},
	[K_MIN_REQUEST_INTERVAL] = {"min_request_interval_seconds", T_SECONDS, CONFIG_K_TEXT, "0",
				    "MASTER_LOG_MIN_REQUEST_INTERVAL_SECONDS", 0, 3600, NULL,
				    "least time between request starts"},
	[K_RETRY_INITIAL] = {"retry.initial_seconds", T_SECONDS, CONFIG_K_TEXT, "1.0", NULL, 0.001, 86400, NULL,
			     "first backoff after a failed send"},
	[K_RETRY_MAX] = {"retry.max_seconds", T_SECONDS, CONFIG_K_TEXT, "300", NULL, 0.001, 86400, NULL,
			 "backoff cap"},
	[K_RETRY_MULTIPLIER] = {"retry.multiplier", T_SECONDS, CONFIG_K_TEXT, "2.0", NULL, 1, 100, NULL,
				"backoff growth per consecutive failure"},
	[K_RETRY_JITTER] = {"retry.jitter", T_BOOL, CONFIG_K_TEXT, "true", NULL, 0, 0, NULL,
			    "full jitter: wait a uniform random time from 0 to the backoff"},
	[K_RETRY_AUTH] = {"retry.auth_seconds", T_SECONDS, CONFIG_K_TEXT, "300", NULL, 0.001, 86400, NULL,
			  "wait after 401/403 or a missing endpoint (events are kept)"},
	[K_MAX_AGE] = {"max_age_seconds", T_SECONDS, CONFIG_K_TEXT, "0", NULL, 0, 1e9, NULL,
		       "drop (and count) events older than this; 0: never"},
	[K_DELIVERY_METADATA] = {"delivery_metadata", T_BOOL, CONFIG_K_TEXT, "false", NULL, 0, 0, NULL,
				 "add metadata.delivery {attempts, spooled_seconds} when sending"},
	[K_RECOVER_INTERVAL] = {"recover_interval_seconds", T_SECONDS, CONFIG_K_TEXT, "10", NULL, 0.01, 86400,
				NULL, "how often dead producers' rings are recovered"},
	[K_META_INTERVAL] = {"meta_interval_seconds", T_SECONDS, CONFIG_K_TEXT, "1", NULL, 0.01, 3600, NULL,
			     "how often the agent's figures are published into the spool's meta store"},
	[K_LOG_LEVEL] = {"log.level", T_STR, CONFIG_K_CHOICE, "info", NULL, 0, 0, "error|warning|info|debug|warn",
			 "error, warning, info or debug"},
	[K_LOG_TARGET] = {"log.target", T_STR, CONFIG_K_CHOICE, "stderr", NULL, 0, 0,
			  "stderr|syslog|journal",
			  "stderr (with <N> priority prefixes when stderr is the journal), syslog, or journal "
			  "(stderr with the prefixes always)"},
	[K_METRICS_LISTEN] = {"metrics_listen", T_STR, CONFIG_K_LISTEN, NULL, "MASTER_LOG_METRICS_LISTEN", 0, 0,
			      NULL,
			      "serve Prometheus metrics at http://ADDR:PORT/metrics; a loopback address only, "
			      "127.0.0.1:PORT or [::1]:PORT (e.g. 127.0.0.1:9464); absent: off"},
};

/* ---- every key: the sections' rows under their full names ---- */


const char *type_name(uint32_t t)
{
	switch (t) {
	case T_STR:
		return "a string";
	case T_INT:
		return "an integer";
	case T_SECONDS:
		return "a number";
	case T_BOOL:
		return "a boolean";
	case T_LIST:
		return "a list";
	case SPOOL_TX_MAP:
		return "a map of strings";
	}
	return "?";
}

static void full_name(char *buf, size_t len, const char *section, const char *key)
{
	snprintf(buf, len, "%s%s%s", section, *section ? "." : "", key);
}

/* The keys --help-config lists: the agent's, then each built-in
 * transport's section once. */
struct listed {
	const char *section;
	const struct spool_tx_option *o;
};

static size_t listed_keys(struct listed *out, size_t max)
{
	size_t n = 0;
	for (size_t i = 0; i < K_COUNT; i++)
		if (n < max)
			out[n++] = (struct listed){"", &agent_options[i]};
	for (size_t t = 0; t < plugin_nbuiltin; t++) {
		const struct spool_transport *tx = plugin_builtin[t];
		bool seen = false;
		for (size_t u = 0; u < t; u++)
			seen |= plugin_builtin[u]->section && tx->section &&
				strcmp(plugin_builtin[u]->section, tx->section) == 0;
		if (seen || !tx->section)
			continue;
		for (size_t i = 0; i < tx->noptions && n < max; i++)
			out[n++] = (struct listed){tx->section, &tx->options[i]};
	}
	return n;
}

#define MAX_LISTED 128

static void print_row(FILE *f, const char *section, const struct spool_tx_option *o)
{
	char name[128];
	full_name(name, sizeof(name), section, o->key);
	fprintf(f, "%s (%s", name, type_name(o->type) + (o->type == T_INT ? 3 : 2));
	if (o->def)
		fprintf(f, ", default %s", o->def);
	if (o->env)
		fprintf(f, ", env %s", o->env);
	fprintf(f, ")\n    %s\n", o->doc ? o->doc : "");
}

static void print_transport(FILE *f, const struct spool_transport *tx, const struct spool_transport *const *before,
			    size_t nbefore)
{
	fprintf(f, "\ntransport %s: %s\n", tx->name, tx->description ? tx->description : "");
	bool seen = false;
	for (size_t u = 0; u < nbefore; u++)
		seen |= before[u]->section && tx->section && strcmp(before[u]->section, tx->section) == 0;
	if (!tx->section || !tx->noptions) {
		fprintf(f, "  (no keys)\n");
		return;
	}
	if (seen) {
		fprintf(f, "  the keys of section '%s' above\n", tx->section);
		return;
	}
	fprintf(f, "  section '%s':\n", tx->section);
	for (size_t i = 0; i < tx->noptions; i++)
		print_row(f, tx->section, &tx->options[i]);
}

void config_print_keys(FILE *f, const struct agent_config *cfg)
{
	const struct spool_transport *shown[AGENT_MAX_TRANSPORTS + 8];
	size_t n = 0;
	fprintf(f, "spool-agent's own keys:\n\n");
	for (size_t i = 0; i < K_COUNT; i++)
		print_row(f, "", &agent_options[i]);
	for (size_t t = 0; t < plugin_nbuiltin; t++) {
		print_transport(f, plugin_builtin[t], shown, n);
		shown[n++] = plugin_builtin[t];
	}
	for (size_t i = 0; cfg && i < AGENT_MAX_TRANSPORTS && cfg->plugins[i].tx; i++) {
		if (!cfg->plugins[i].dl)
			continue; /* built in: listed above */
		print_transport(f, cfg->plugins[i].tx, shown, n);
		fprintf(f, "  (loaded from %s)\n", cfg->plugins[i].path);
		shown[n++] = cfg->plugins[i].tx;
	}
}

void config_print_section(FILE *f, const struct spool_transport *tx)
{
	for (size_t i = 0; i < tx->noptions; i++)
		print_row(f, tx->section ? tx->section : "", &tx->options[i]);
}

size_t config_key_count(void)
{
	struct listed l[MAX_LISTED];
	return listed_keys(l, MAX_LISTED);
}

const char *config_key_name(size_t i)
{
	static __thread char name[128];
	struct listed l[MAX_LISTED];
	if (i >= listed_keys(l, MAX_LISTED))
		return NULL;
	full_name(name, sizeof(name), l[i].section, l[i].o->key);
	return name;
}

int config_key_info(size_t i, struct config_key_info *out)
{
	struct listed l[MAX_LISTED];
	if (!out || i >= listed_keys(l, MAX_LISTED))
		return -1;
	const struct spool_tx_option *o = l[i].o;
	*out = (struct config_key_info){config_key_name(i), (enum config_type)o->type, (enum config_kind)o->kind,
					o->def, o->env, o->min, o->max, o->choices};
	return 0;
}

/* ---- values ---- */

void value_clear(struct spool_tx_value *v)
{
	if (v->text) {
		explicit_bzero((char *)v->text, strlen(v->text)); /* it may be a key */
		free((char *)v->text);
	}
	for (size_t i = 0; i < v->nitems; i++)
		free((char *)v->items[i]);
	free((void *)v->items);
	for (size_t i = 0; i < v->npairs; i++) {
		free((char *)v->pairs[i].name);
		free((char *)v->pairs[i].value);
	}
	free((void *)v->pairs);
	memset(v, 0, sizeof(*v));
}

void config_free(struct agent_config *cfg)
{
	if (!cfg)
		return;
	for (size_t s = 0; s < cfg->nsections; s++) {
		struct agent_section *sec = &cfg->sections[s];
		for (size_t i = 0; sec->values && i < sec->noptions; i++)
			value_clear(&sec->values[i]);
		free(sec->values);
	}
	for (size_t i = 0; i < AGENT_MAX_TRANSPORTS; i++)
		plugin_unload(&cfg->plugins[i]);
	/* the fields below only point into section 0's values */
	memset(cfg, 0, sizeof(*cfg));
}

const struct agent_section *config_section(const struct agent_config *cfg, const char *name)
{
	for (size_t s = 0; s < cfg->nsections; s++)
		if (strcmp(cfg->sections[s].name, name) == 0)
			return &cfg->sections[s];
	return NULL;
}

const struct spool_tx_value *config_value(const struct agent_config *cfg, const char *key)
{
	char name[128];
	for (size_t s = 0; s < cfg->nsections; s++) {
		const struct agent_section *sec = &cfg->sections[s];
		for (size_t i = 0; i < sec->noptions; i++) {
			full_name(name, sizeof(name), sec->name, sec->options[i].key);
			if (strcmp(name, key) == 0)
				return &sec->values[i];
		}
	}
	return NULL;
}

bool parse_bool(const char *s, bool *out)
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
const char *show(const char *text, size_t max, char *buf, size_t len)
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

bool is_names(const struct spool_tx_option *o)
{
	return o->kind == CONFIG_K_NAMES;
}

/* Sets a scalar key (or a comma-separated list) from text.  0, or -1 with
 * why filled. */
int set_scalar(const struct spool_tx_option *o, const char *text, struct spool_tx_value *v, char *why,
		      size_t wl)
{
	char *end;
	switch (o->type) {
	case T_STR: {
		char *s = strdup(text);
		if (!s)
			return snprintf(why, wl, "out of memory"), -1;
		value_clear(v);
		v->text = s;
		v->set = 1;
		return 0;
	}
	case T_INT: {
		errno = 0;
		long long x = strtoll(text, &end, 10);
		if (errno || end == text || *end || x < o->min || x > o->max) {
			snprintf(why, wl, "expected an integer from %.0f to %.0f, got '%s'", o->min, o->max,
				 SHOW(text));
			return -1;
		}
		v->integer = x;
		v->set = 1;
		return 0;
	}
	case T_SECONDS: {
		/* decimal only: no "inf", "nan" or hexadecimal */
		errno = 0;
		double x = strtod(text, &end);
		if (errno || end == text || *end || strspn(text, "0123456789+-.eE") != strlen(text) ||
		    !isfinite(x) || x < o->min || x > o->max) {
			snprintf(why, wl, "expected a number from %g to %g, got '%s'", o->min, o->max, SHOW(text));
			return -1;
		}
		v->number = x;
		v->set = 1;
		return 0;
	}
	case T_BOOL: {
		bool b;
		if (!parse_bool(text, &b)) {
			snprintf(why, wl, "expected true or false, got '%s'", SHOW(text));
			return -1;
		}
		v->boolean = b;
		v->set = 1;
		return 0;
	}
	case T_LIST: {
		char **l = NULL;
		size_t n = 0;
		const char *p = text;
		const char *sep = is_names(o) ? ", " : ",";
		while (*p) {
			size_t k = strcspn(p, sep);
			if (k) {
				char **nl = realloc(l, (n + 1) * sizeof(*l));
				if (nl)
					l = nl;
				if (!nl || !(l[n] = strndup(p, k))) {
					for (size_t i = 0; i < n; i++)
						free(l[i]);
					free(l);
					return snprintf(why, wl, "out of memory"), -1;
				}
				n++;
			}
			p += k;
			p += strspn(p, sep);
		}
		size_t most = is_names(o) ? AGENT_MAX_TRANSPORTS : 1000;
		if ((n == 0 && o->kind != CONFIG_K_WINDOWS) || n > most) {
			for (size_t i = 0; i < n; i++)
				free(l[i]);
			free(l);
			if (is_names(o))
				snprintf(why, wl, "expected 1 to %d transport names", AGENT_MAX_TRANSPORTS);
			else
				snprintf(why, wl, "expected 1 to %zu names", most);
			return -1;
		}
		value_clear(v);
		v->items = (const char *const *)l;
		v->nitems = n;
		v->set = 1;
		return 0;
	}
	case SPOOL_TX_MAP:
		snprintf(why, wl, "expected a map of header names to values");
		return -1;
	}
	return -1;
}

struct spool_tx_value *value_of(struct loadctx *lc, const struct key *k)
{
	return &lc->cfg->sections[k->sec].values[k->row];
}

const struct key *find_key(const struct loadctx *lc, const char *name)
{
	for (size_t i = 0; i < lc->nkeys; i++)
		if (strcmp(lc->keys[i].name, name) == 0)
			return &lc->keys[i];
	return NULL;
}

/* "FILE:LINE:COL: key 'k'", "environment VAR (key 'k', ...)" or "command
 * line --opt (key 'k')". */
static void where(const struct loadctx *lc, const struct key *k, char *buf, size_t len)
{
	const struct origin *o = &lc->o[k - lc->keys];
	switch (o->from) {
	case FROM_FILE:
		snprintf(buf, len, "%s:%zu:%zu: key '%s'", lc->path, o->line, o->col, k->name);
		break;
	case FROM_ENV:
		snprintf(buf, len, "environment %s (key '%s'%s%s)", k->o->env, k->name, lc->path ? ", not set in " : "",
			 lc->path ? lc->path : "");
		break;
	case FROM_CMDLINE:
		snprintf(buf, len, "command line %s (key '%s')", o->opt, k->name);
		break;
	default:
		snprintf(buf, len, "%s: key '%s'", lc->path ? lc->path : "configuration", k->name);
	}
}

int kerr(struct loadctx *lc, const struct key *k, const char *fmt, ...)
{
	char w[512];
	where(lc, k, w, sizeof(w));
	int off = snprintf(lc->err, lc->errlen, "%s: ", w);
	if (off >= 0 && (size_t)off < lc->errlen) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(lc->err + off, lc->errlen - (size_t)off, fmt, ap);
		va_end(ap);
	}
	return -1;
}

/* A chain the walk will accept: 1 to AGENT_MAX_TRANSPORTS names, each
 * once.  Anything else resolves the default chain first, and the walk then
 * reports the fault with its line and column. */
static bool chain_well_formed(const char *chain)
{
	char names[1024];
	const char *seen[AGENT_MAX_TRANSPORTS];
	size_t n = 0;
	snprintf(names, sizeof(names), "%s", chain);
	/* split as the walk splits a scalar (set_scalar): at commas and spaces */
	for (char *save = NULL, *t = strtok_r(names, ", ", &save); t; t = strtok_r(NULL, ", ", &save)) {
		if (n == AGENT_MAX_TRANSPORTS || !*t)
			return false;
		for (const char *c = t; *c; c++)
			if (!isalnum((unsigned char)*c) && !strchr("_-./+", *c))
				return false;
		for (size_t i = 0; i < n; i++)
			if (strcmp(seen[i], t) == 0)
				return false;
		seen[n++] = t;
	}
	return n > 0;
}

/* ---- checks after loading ---- */

/* A secret travels in a header: printable, no white space, bounded.  The
 * value is never shown. */
static int check_secret(struct loadctx *lc, const struct key *k, const char *v, const char *what)
{
	size_t n = strlen(v);
	if (n > CONFIG_KEY_MAX)
		return kerr(lc, k, "%s is longer than %d bytes (the value is not shown)", what, CONFIG_KEY_MAX);
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)v[i] <= 0x20 || v[i] == 0x7f)
			return kerr(lc, k, "%s holds a space or control character at byte %zu (the value is not shown)",
				    what, i + 1);
	return 0;
}

/* A secret file: a regular file, owned by the agent's user, readable by it
 * alone, holding one line, which becomes the value. */
static int read_secret_file(struct loadctx *lc, const struct key *k, struct spool_tx_value *val)
{
	const char *p = val->text;
	int fd = open(p, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0)
		return kerr(lc, k, "%s: %s", SHOW(p), strerror(errno));
	struct stat st;
	int rc = -1;
	char buf[4097];
	size_t n = 0;
	if (fstat(fd, &st) != 0) {
		kerr(lc, k, "%s: %s", SHOW(p), strerror(errno));
	} else if (!S_ISREG(st.st_mode)) {
		kerr(lc, k, "%s: not a regular file", SHOW(p));
	} else if (st.st_uid != geteuid()) {
		kerr(lc, k,
		     "%s: refused: owned by uid %lu, not by the agent's user (uid %lu); chown it to the "
		     "agent's user and chmod 600",
		     SHOW(p), (unsigned long)st.st_uid, (unsigned long)geteuid());
	} else if (st.st_mode & 077) {
		kerr(lc, k,
		     "%s: refused: mode %04o lets group or others read or change the key; expected 0600 or "
		     "0400: chmod 600 %s",
		     SHOW(p), (unsigned)(st.st_mode & 07777), SHOW(p));
	} else {
		for (;;) {
			ssize_t got = read(fd, buf + n, sizeof(buf) - 1 - n);
			if (got < 0 && errno == EINTR)
				continue;
			if (got < 0) {
				kerr(lc, k, "%s: %s", SHOW(p), strerror(errno));
				goto out;
			}
			if (got == 0 || (n += (size_t)got) == sizeof(buf) - 1)
				break;
		}
		buf[n] = '\0';
		while (n && isspace((unsigned char)buf[n - 1]))
			buf[--n] = '\0';
		if (n >= sizeof(buf) - 2)
			kerr(lc, k, "%s: larger than %zu bytes: expected one line holding the key", SHOW(p),
			     sizeof(buf) - 2);
		else if (!n || strpbrk(buf, "\r\n") || strlen(buf) != n)
			kerr(lc, k, "%s: expected one line holding the key", SHOW(p));
		else if (check_secret(lc, k, buf, "the key in the file") == 0)
			rc = 0;
	}
	if (rc == 0) {
		char *key = strdup(buf);
		if (!key) {
			rc = kerr(lc, k, "%s", "out of memory");
		} else {
			free((char *)val->text);
			val->text = key;
		}
	}
out:
	explicit_bzero(buf, sizeof(buf));
	close(fd);
	return rc;
}

static int check_choice(struct loadctx *lc, const struct key *k, struct spool_tx_value *val)
{
	char list[256] = "";
	const char *c = k->o->choices;
	char *v = (char *)val->text;
	while (c && *c) {
		size_t n = strcspn(c, "|");
		if (strlen(v) == n && strncasecmp(v, c, n) == 0) {
			for (char *q = v; *q; q++)
				*q = (char)tolower((unsigned char)*q);
			return 0;
		}
		size_t l = strlen(list);
		snprintf(list + l, sizeof(list) - l, "%s%.*s", l ? ", " : "", (int)n, c);
		c += n + (c[n] == '|');
	}
	return kerr(lc, k, "'%s' is not one of %s", SHOW(v), list);
}

/* Checks one string key's value by its kind. */
static int check_string(struct loadctx *lc, const struct key *k)
{
	struct spool_tx_value *val = value_of(lc, k);
	const char *v = val->text;
	struct stat st;
	if (!val->set || !v)
		return 0;
	if (!*v)
		return kerr(lc, k, "%s", "is empty (leave the key out for the default)");
	switch (k->o->kind) {
	case CONFIG_K_URL: {
		char e[300], *root = NULL;
		if (spool_endpoint_normalise(v, &root, e, sizeof(e)) != 0)
			return kerr(lc, k, "%s", e);
		free((char *)val->text);
		val->text = root; /* the transport gets ROOT */
		return 0;
	}
	case CONFIG_K_SECRET:
		return check_secret(lc, k, v, "the key");
	case CONFIG_K_SECRET_FILE:
		return read_secret_file(lc, k, val);
	case CONFIG_K_READ_FILE: {
		int fd = open(v, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
		if (fd < 0)
			return kerr(lc, k, "%s: %s", SHOW(v), strerror(errno));
		int ok = fstat(fd, &st) == 0 && S_ISREG(st.st_mode);
		close(fd);
		return ok ? 0 : kerr(lc, k, "%s: not a regular file", SHOW(v));
	}
	case CONFIG_K_DIR:
		if (stat(v, &st) != 0)
			return kerr(lc, k, "%s: %s", SHOW(v), strerror(errno));
		return S_ISDIR(st.st_mode) ? 0 : kerr(lc, k, "%s: not a directory", SHOW(v));
	case CONFIG_K_OUT_FILE: {
		if (stat(v, &st) == 0 && S_ISDIR(st.st_mode))
			return kerr(lc, k, "%s: is a directory", SHOW(v));
		char dir[4096];
		snprintf(dir, sizeof(dir), "%s", v);
		char *slash = strrchr(dir, '/');
		if (!slash)
			snprintf(dir, sizeof(dir), ".");
		else
			slash[slash == dir] = '\0';
		if (stat(dir, &st) != 0)
			return kerr(lc, k, "%s: its folder %s: %s", SHOW(v), SHOW(dir), strerror(errno));
		return S_ISDIR(st.st_mode) ? 0 : kerr(lc, k, "%s: %s is not a directory", SHOW(v), SHOW(dir));
	}
	case CONFIG_K_SPOOL:
		if (stat(v, &st) == 0)
			return S_ISDIR(st.st_mode) ? 0 : kerr(lc, k, "%s: exists and is not a directory", SHOW(v));
		return errno == ENOENT ? 0 : kerr(lc, k, "%s: %s", SHOW(v), strerror(errno));
	case CONFIG_K_CHOICE:
		return check_choice(lc, k, val);
	case CONFIG_K_RATE: {
		char why[200];
		if (config_parse_rate(v, why, sizeof(why)) < 0)
			return kerr(lc, k, "%s", why);
		return 0;
	}
	case CONFIG_K_LISTEN: {
		char why[300];
		struct sockaddr_storage sa;
		socklen_t salen;
		if (*v && config_parse_listen(v, &sa, &salen, why, sizeof(why)) != 0)
			return kerr(lc, k, "%s", why);
		return 0;
	}
	default:
		return 0;
	}
}

/* Transport names: a name or a path, each once. */
static int check_names(struct loadctx *lc, const struct key *k)
{
	const struct spool_tx_value *v = value_of(lc, k);
	for (size_t i = 0; i < v->nitems; i++) {
		const char *n = v->items[i];
		for (const char *c = n; *c; c++)
			if (!isalnum((unsigned char)*c) && !strchr("_-./+", *c))
				return kerr(lc, k, "'%s' is not a transport name", SHOW(n));
		for (size_t j = 0; j < i; j++)
			if (strcmp(v->items[j], n) == 0)
				return kerr(lc, k, "'%s' named twice", SHOW(n));
	}
	return 0;
}

/* Send windows: every entry a window (agent/window.h). */
static int check_windows(struct loadctx *lc, const struct key *k)
{
	const struct spool_tx_value *v = value_of(lc, k);
	struct window_set w;
	char why[300];
	if (v->set && window_parse(v->items, v->nitems, &w, why, sizeof(why)) != 0)
		return kerr(lc, k, "%s", why);
	return 0;
}

/* ---- sections ---- */

/* Adds a section for transport tx unless one of that name exists; two
 * transports sharing a section must share its table.  0, or -1 with err. */
static int add_section(struct agent_config *cfg, const struct spool_transport *tx, bool in_chain, char *err,
		       size_t errlen)
{
	if (!tx->section || !tx->noptions)
		return 0;
	for (size_t s = 0; s < cfg->nsections; s++) {
		struct agent_section *sec = &cfg->sections[s];
		if (strcmp(sec->name, tx->section) != 0)
			continue;
		if (sec->options != tx->options || sec->noptions != tx->noptions) {
			snprintf(err, errlen,
				 "transport %s: its section '%s' is taken by another transport with other keys",
				 tx->name, tx->section);
			return -1;
		}
		sec->in_chain |= in_chain;
		return 0;
	}
	if (cfg->nsections == AGENT_MAX_SECTIONS) {
		snprintf(err, errlen, "too many configuration sections");
		return -1;
	}
	struct agent_section *sec = &cfg->sections[cfg->nsections];
	sec->values = calloc(tx->noptions, sizeof(*sec->values));
	if (!sec->values) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	sec->name = tx->section;
	sec->options = tx->options;
	sec->noptions = tx->noptions;
	sec->in_chain = in_chain;
	cfg->nsections++;
	return 0;
}

static size_t count_keys(const struct agent_config *cfg)
{
	size_t n = 0;
	for (size_t s = 0; s < cfg->nsections; s++)
		n += cfg->sections[s].noptions;
	return n;
}

static void make_keys(const struct agent_config *cfg, struct key *keys)
{
	size_t n = 0;
	for (size_t s = 0; s < cfg->nsections; s++)
		for (size_t i = 0; i < cfg->sections[s].noptions; i++, n++) {
			const struct agent_section *sec = &cfg->sections[s];
			full_name(keys[n].name, sizeof(keys[n].name), sec->name, sec->options[i].key);
			keys[n].o = &sec->options[i];
			keys[n].sec = s;
			keys[n].row = i;
		}
}

/* Resolves the chain: built in, or <name>.so found in the plugin folders. */
static int resolve_chain(struct agent_config *cfg, const char *chain, const char *plugin_dir, char *why,
			 size_t whylen)
{
	const char *dirs[3] = {plugin_dir, getenv("SPOOL_PLUGIN_DIR"), SPOOL_PLUGIN_INSTALL_DIR};
	char names[1024];
	snprintf(names, sizeof(names), "%s", chain);
	size_t n = 0;
	for (char *save = NULL, *t = strtok_r(names, ", ", &save); t; t = strtok_r(NULL, ", ", &save)) {
		if (plugin_load(t, dirs, 3, &cfg->plugins[n], why, whylen))
			return -1;
		n++;
	}
	return 0;
}

/* The agent's fields from section 0. */
static void fill_fields(struct agent_config *cfg)
{
	const struct spool_tx_value *v = cfg->sections[0].values;
	cfg->spool = (char *)v[K_SPOOL].text;
	cfg->transports = (char **)v[K_TRANSPORTS].items;
	cfg->ntransports = v[K_TRANSPORTS].nitems;
	cfg->plugin_dir = (char *)v[K_PLUGIN_DIR].text;
	cfg->batch_size = (long)v[K_BATCH_SIZE].integer;
	cfg->max_batch_size = (long)v[K_MAX_BATCH_SIZE].integer;
	cfg->max_batch_bytes = (long)v[K_MAX_BATCH_BYTES].integer;
	cfg->bandwidth_limit = config_parse_rate(v[K_BANDWIDTH_LIMIT].text, NULL, 0);
	cfg->send_windows = (char **)v[K_SEND_WINDOWS].items;
	cfg->nsend_windows = v[K_SEND_WINDOWS].nitems;
	cfg->replay_severity = v[K_REPLAY_ORDER].text && strcmp(v[K_REPLAY_ORDER].text, "severity") == 0;
	cfg->max_in_flight = (long)v[K_MAX_IN_FLIGHT].integer;
	cfg->flush_interval = v[K_FLUSH_INTERVAL].number;
	cfg->min_request_interval = v[K_MIN_REQUEST_INTERVAL].number;
	cfg->retry_initial = v[K_RETRY_INITIAL].number;
	cfg->retry_max = v[K_RETRY_MAX].number;
	cfg->retry_multiplier = v[K_RETRY_MULTIPLIER].number;
	cfg->retry_jitter = v[K_RETRY_JITTER].boolean;
	cfg->auth_retry = v[K_RETRY_AUTH].number;
	cfg->max_age = v[K_MAX_AGE].number;
	cfg->delivery_metadata = v[K_DELIVERY_METADATA].boolean;
	cfg->recover_interval = v[K_RECOVER_INTERVAL].number;
	cfg->meta_interval = v[K_META_INTERVAL].number;
	cfg->log_level = (char *)v[K_LOG_LEVEL].text;
	cfg->log_target = (char *)v[K_LOG_TARGET].text;
	cfg->metrics_listen = (char *)v[K_METRICS_LISTEN].text;
}

/* The rule for an environment variable that conflicts with the file: the
 * file wins.  A key the file (or the command line) sets is not read from
 * the environment, and neither is its alternative: a secret's variable
 * (MASTER_LOG_API_KEY for http.api_key) is not read when the same section
 * sets a secret file (http.api_key_file) in the file or on the command
 * line.  So a key file named in /etc/master-log/spool-agent.yaml is used
 * even where MASTER_LOG_API_KEY is exported for the producers. */
static bool env_overruled(const struct loadctx *lc, const struct key *k)
{
	if (k->o->kind != CONFIG_K_SECRET)
		return false;
	for (size_t i = 0; i < lc->nkeys; i++) {
		const struct key *alt = &lc->keys[i];
		if (alt->sec == k->sec && alt->o->kind == CONFIG_K_SECRET_FILE &&
		    (lc->o[i].from == FROM_FILE || lc->o[i].from == FROM_CMDLINE))
			return true;
	}
	return false;
}

static int set_override(struct loadctx *lc, const char *key, const char *opt, const char *val)
{
	const struct key *k = find_key(lc, key);
	char why[256];
	if (!k)
		return 0;
	lc->o[k - lc->keys] = (struct origin){FROM_CMDLINE, false, 0, 0, opt};
	if (set_scalar(k->o, val, value_of(lc, k), why, sizeof(why)))
		return kerr(lc, k, "%s", why);
	return 0;
}

/* The chain and the plugin folder before the walk: from the file, else the
 * environment, else the defaults. */
static int prepare(const char *path, yaml_document_t *doc, struct agent_config *cfg, char *err, size_t errlen)
{
	char chain[1024], dir[4096], why[900];
	chain[0] = dir[0] = '\0';
	if (doc) {
		config_yaml_peek(doc, "transports", chain, sizeof(chain));
		config_yaml_peek(doc, "plugin_dir", dir, sizeof(dir));
	}
	if (!chain_well_formed(chain))
		snprintf(chain, sizeof(chain), "%s", agent_options[K_TRANSPORTS].def);
	cfg->sections[0] = (struct agent_section){"", agent_options, K_COUNT, calloc(K_COUNT, sizeof(struct spool_tx_value)),
						  true};
	cfg->nsections = 1;
	if (!cfg->sections[0].values) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	if (resolve_chain(cfg, chain, dir[0] ? dir : NULL, why, sizeof(why))) {
		snprintf(err, errlen, "%s: key 'transports': %s", path ? path : "configuration", why);
		return -1;
	}
	for (size_t i = 0; i < AGENT_MAX_TRANSPORTS && cfg->plugins[i].tx; i++)
		if (add_section(cfg, cfg->plugins[i].tx, true, err, errlen))
			return -1;
	for (size_t i = 0; i < plugin_nbuiltin; i++)
		if (add_section(cfg, plugin_builtin[i], false, err, errlen))
			return -1;
	return 0;
}

/* The rules of the whole agent section and each transport's own. */
static int check_section(struct loadctx *lc, const struct spool_transport *tx);

static int cross_checks(struct loadctx *lc, const struct agent_overrides *ov)
{
	struct agent_config *cfg = lc->cfg;
	for (size_t i = 0; ov && i < ov->nsections; i++)
		if (check_section(lc, ov->sections[i]))
			return -1;
	const struct spool_tx_value *v = cfg->sections[0].values;
	if (v[K_BATCH_SIZE].integer > v[K_MAX_BATCH_SIZE].integer)
		return kerr(lc, find_key(lc, "batch_size"), "%lld is larger than max_batch_size (%lld)",
			    (long long)v[K_BATCH_SIZE].integer, (long long)v[K_MAX_BATCH_SIZE].integer);
	if (v[K_RETRY_MAX].number < v[K_RETRY_INITIAL].number)
		return kerr(lc, find_key(lc, "retry.max_seconds"), "%g is smaller than retry.initial_seconds (%g)",
			    v[K_RETRY_MAX].number, v[K_RETRY_INITIAL].number);
	for (size_t i = 0; i < AGENT_MAX_TRANSPORTS && cfg->plugins[i].tx; i++)
		if (check_section(lc, cfg->plugins[i].tx))
			return -1;
	return 0;
}

/* A transport's (or an extra section's) own rules. */
static int check_section(struct loadctx *lc, const struct spool_transport *tx)
{
	const struct agent_section *sec = tx->section ? config_section(lc->cfg, tx->section) : NULL;
	if (!tx->check)
		return 0;
	size_t bad = 0;
	char why[400];
	if (tx->check(sec ? sec->values : NULL, sec ? sec->noptions : 0, &bad, why, sizeof(why)) == 0)
		return 0;
	if (!sec || bad >= sec->noptions) {
		snprintf(lc->err, lc->errlen, "%s: transport %s: %s", lc->path ? lc->path : "configuration", tx->name,
			 why);
		return -1;
	}
	char name[128];
	full_name(name, sizeof(name), sec->name, sec->options[bad].key);
	return kerr(lc, find_key(lc, name), "%s", why);
}

int config_load(const char *path, const struct agent_overrides *ov, struct agent_config *cfg, char *err,
		size_t errlen)
{
	struct loadctx lc = {.path = path, .cfg = cfg, .err = err, .errlen = errlen};
	yaml_document_t doc;
	bool have_doc = false;
	char why[256];
	memset(cfg, 0, sizeof(*cfg));
	if (path) {
		if (config_yaml_read(path, &doc, err, errlen))
			return -1;
		have_doc = true;
	}
	if (prepare(path, have_doc ? &doc : NULL, cfg, err, errlen))
		goto fail;
	for (size_t i = 0; ov && i < ov->nsections; i++)
		if (add_section(cfg, ov->sections[i], true, err, errlen))
			goto fail;
	lc.nkeys = count_keys(cfg);
	lc.keys = calloc(lc.nkeys, sizeof(*lc.keys));
	lc.o = calloc(lc.nkeys, sizeof(*lc.o));
	if (!lc.keys || !lc.o) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	make_keys(cfg, lc.keys);
	if (have_doc) {
		if (config_yaml_walk(&lc, &doc))
			goto fail;
	}
	if (ov && ov->spool && set_override(&lc, "spool", "--spool", ov->spool))
		goto fail;
	if (ov && ov->endpoint && set_override(&lc, "http.endpoint", "--endpoint", ov->endpoint))
		goto fail;
	if (ov && ov->log_level && set_override(&lc, "log.level", "--log-level", ov->log_level))
		goto fail;
	for (size_t i = 0; i < lc.nkeys; i++) {
		const struct key *k = &lc.keys[i];
		if (lc.o[i].from != FROM_DEFAULT)
			continue;
		const char *ev = k->o->env && !env_overruled(&lc, k) ? getenv(k->o->env) : NULL;
		if (ev && *ev) {
			lc.o[i].from = FROM_ENV;
			if (set_scalar(k->o, ev, value_of(&lc, k), why, sizeof(why))) {
				kerr(&lc, k, "%s", why);
				goto fail;
			}
		} else if (k->o->def && set_scalar(k->o, k->o->def, value_of(&lc, k), why, sizeof(why))) {
			kerr(&lc, k, "bad default: %s", why); /* a table bug */
			goto fail;
		}
	}
	struct spool_tx_value *spool = &cfg->sections[0].values[K_SPOOL];
	if (!spool->set) {
		char dir[4096];
		int rc = spool_default_dir(dir, sizeof(dir));
		if (rc) {
			kerr(&lc, find_key(&lc, "spool"), "not set and no default: %s", spool_strerror(rc));
			goto fail;
		}
		set_scalar(&agent_options[K_SPOOL], dir, spool, why, sizeof(why));
	}
	for (size_t i = 0; i < lc.nkeys; i++) {
		const struct key *k = &lc.keys[i];
		if (k->o->type == T_STR && check_string(&lc, k))
			goto fail;
		if (is_names(k->o) && check_names(&lc, k))
			goto fail;
		if (k->o->kind == CONFIG_K_WINDOWS && check_windows(&lc, k))
			goto fail;
	}
	if (cross_checks(&lc, ov))
		goto fail;
	fill_fields(cfg);
	free(lc.keys);
	free(lc.o);
	if (have_doc)
		yaml_document_delete(&doc);
	return 0;
fail:
	free(lc.keys);
	free(lc.o);
	if (have_doc)
		yaml_document_delete(&doc);
	config_free(cfg);
	return -1;
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

int config_parse_listen(const char *text, struct sockaddr_storage *sa, socklen_t *salen, char *why,
			size_t whylen)
{
	char host[64];
	const char *colon;
	memset(sa, 0, sizeof(*sa));
	if (text[0] == '[') {
		const char *close = strchr(text, ']');
		if (!close || close[1] != ':' || (size_t)(close - text - 1) >= sizeof(host)) {
			snprintf(why, whylen, "'%.100s': expected [::1]:PORT", text);
			return -1;
		}
		snprintf(host, sizeof(host), "%.*s", (int)(close - text - 1), text + 1);
		colon = close + 1;
	} else {
		colon = strrchr(text, ':');
		if (!colon || (size_t)(colon - text) >= sizeof(host) || memchr(text, ':', (size_t)(colon - text))) {
			snprintf(why, whylen, "'%.100s': expected ADDR:PORT, e.g. 127.0.0.1:9464 or [::1]:9464",
				 text);
			return -1;
		}
		snprintf(host, sizeof(host), "%.*s", (int)(colon - text), text);
	}
	char *end;
	errno = 0;
	long port = strtol(colon + 1, &end, 10);
	if (!isdigit((unsigned char)colon[1]) || *end || errno || port < 0 || port > 65535) {
		snprintf(why, whylen, "'%.100s': port '%.20s' is not a number from 0 to 65535", text, colon + 1);
		return -1;
	}
	struct sockaddr_in *s4 = (struct sockaddr_in *)sa;
	struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)sa;
	if (inet_pton(AF_INET, host, &s4->sin_addr) == 1) {
		if ((ntohl(s4->sin_addr.s_addr) >> 24) != 127)
			goto not_loopback;
		s4->sin_family = AF_INET;
		s4->sin_port = htons((uint16_t)port);
		*salen = sizeof(*s4);
		return 0;
	}
	if (inet_pton(AF_INET6, host, &s6->sin6_addr) == 1) {
		if (!IN6_IS_ADDR_LOOPBACK(&s6->sin6_addr))
			goto not_loopback;
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons((uint16_t)port);
		*salen = sizeof(*s6);
		return 0;
	}
	snprintf(why, whylen, "'%.100s': '%s' is not a numeric address (127.0.0.1 or [::1])", text, host);
	return -1;
not_loopback:
	snprintf(why, whylen,
		 "'%.100s': %s is not a loopback address; the metrics have no authentication, so only "
		 "127.0.0.0/8 or ::1 is served (scrape from another host through a proxy or an SSH "
		 "tunnel, or use `spoolctl status --prometheus` with node_exporter)",
		 text, host);
	return -1;
}

double config_parse_rate(const char *text, char *why, size_t whylen)
{
	if (!text)
		return 0;
	char *end = NULL;
	errno = 0;
	double v = strtod(text, &end);
	double unit = 1;
	if (end != text && (*end == 'k' || *end == 'K')) {
		unit = 1e3;
		end++;
	} else if (end != text && *end == 'M') {
		unit = 1e6;
		end++;
	}
	if (end == text || *end || errno || !isfinite(v) || v < 0 || !isdigit((unsigned char)text[0])) {
		if (why)
			snprintf(why, whylen, "'%.40s' is not a rate in bytes per second (like 62500, 500k or 1.5M)",
				 text);
		return -1;
	}
	v *= unit;
	if (v > 1e12) {
		if (why)
			snprintf(why, whylen, "'%.40s' is more than 1e12 bytes per second", text);
		return -1;
	}
	if (v > 0 && v < 100) {
		if (why)
			snprintf(why, whylen, "'%.40s' is below 100 bytes per second (0 turns the cap off)", text);
		return -1;
	}
	return v;
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
