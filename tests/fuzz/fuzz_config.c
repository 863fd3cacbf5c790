/* fuzz_config.c — spool-agent's YAML configuration loader, config_load()
 * (agent/config.c, agent/config_yaml.c), with the built-in transports'
 * sections (`http:`, `file:`) and their check().
 *
 * config_load() takes a file path, so each input is written to a memfd and
 * loaded through /proc/self/fd/N.  Every key's environment variable (as
 * config_key_info() lists them) and SPOOL_PLUGIN_DIR are cleared first, so
 * only the file counts.  plugin.c's dlopen() is replaced (the link wraps
 * it): a chain naming a shared object gets "cannot load", and nothing
 * outside this program runs.
 *
 * Aborts when a load that succeeded leaves:
 *   - a required field unset (spool, log level and target, the chain), the
 *     chain empty, too long or naming a transport twice;
 *   - the resolved transports (cfg.plugins) other than the chain the file
 *     names (cfg.transports);
 *   - a key with a default unset, or any value outside its row: an integer
 *     or number out of [min, max] (or not finite), a string empty, a choice
 *     not among its choices, a secret longer than CONFIG_KEY_MAX or holding
 *     a space or control character, an endpoint that is not a valid
 *     endpoint itself, a list empty, a header without name or value, with
 *     a bad name, a control character in its value, named X-API-Key or
 *     twice;
 *   - a rule across keys broken: retry.max_seconds < retry.initial_seconds,
 *     an HTTP transport in the chain without http.endpoint, http.api_key
 *     with http.api_key_file, only one of tls.client_cert and
 *     tls.client_key, `file` in the chain without file.path;
 *   - a section flagged in the chain that no transport of the chain reads
 *     (or the reverse), a listed key that config_value() does not find, or
 *     a field of struct agent_config that differs from its key's value;
 *   - config_redact_key() on http.api_key (or the key api_key_file read)
 *     showing more than the last 4 characters of a key of more than 8, or
 *     anything but the length of a shorter one;
 * and when a failed load leaves no message.  ASan's leak check covers
 * config_free() and the failure paths. */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <unistd.h>

#include "codec/endpoint.h"
#include "config.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
/* plugin.c's dlopen() and dlerror() (-Wl,--wrap) */
void *__wrap_dlopen(const char *file, int mode);
char *__wrap_dlerror(void);

static int memfd = -1;
static char path[64];
static const char *dl_error;

void *__wrap_dlopen(const char *file, int mode)
{
	(void)file;
	(void)mode;
	dl_error = "fuzz_config loads no shared object";
	return NULL;
}

char *__wrap_dlerror(void)
{
	char *e = (char *)dl_error;
	dl_error = NULL;
	return e;
}

static void fail(const char *what, const char *detail)
{
	fprintf(stderr, "fuzz_config: %s (%s)\n", what, detail ? detail : "");
	abort();
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	struct config_key_info info;
	for (size_t i = 0; config_key_info(i, &info) == 0; i++)
		if (info.env)
			unsetenv(info.env);
	unsetenv("SPOOL_PLUGIN_DIR");
	/* an api_key_file naming /dev/stdin must not block the fuzzer */
	int nul = open("/dev/null", O_RDONLY);
	if (nul >= 0) {
		dup2(nul, 0);
		close(nul);
	}
	memfd = memfd_create("fuzz-config.yaml", MFD_CLOEXEC);
	if (memfd < 0) {
		perror("memfd_create");
		abort();
	}
	snprintf(path, sizeof(path), "/proc/self/fd/%d", memfd);
	return 0;
}

/* ---- one value against its row ---- */

static bool is_choice(const char *v, const char *choices)
{
	size_t vl = strlen(v);
	for (const char *c = choices; c && *c;) {
		size_t n = strcspn(c, "|");
		if (n == vl && strncmp(c, v, n) == 0)
			return true;
		c += n + (c[n] == '|');
	}
	return false;
}

static bool header_name_ok(const char *s)
{
	if (!*s)
		return false;
	for (; *s; s++)
		if (!isalnum((unsigned char)*s) && !strchr("!#$%&'*+-.^_`|~", *s))
			return false;
	return true;
}

static void check_string(const char *key, const struct spool_tx_option *o,
                         const struct spool_tx_value *v)
{
	if (!v->text || !v->text[0])
		fail("string key set but empty", key);
	size_t n = strlen(v->text);
	switch (o->kind) {
	case SPOOL_TX_SECRET:
	case SPOOL_TX_SECRET_FILE:
		if (n > CONFIG_KEY_MAX)
			fail("secret longer than CONFIG_KEY_MAX", key);
		for (size_t i = 0; i < n; i++)
			if ((unsigned char)v->text[i] <= 0x20 || v->text[i] == 0x7f)
				fail("secret holds a space or control character", key);
		break;
	case SPOOL_TX_CHOICE:
		if (!is_choice(v->text, o->choices))
			fail("choice not among its choices", v->text);
		break;
	case SPOOL_TX_URL: {
		char err[300], *again = NULL;
		int rc = spool_endpoint_normalise(v->text, &again, err, sizeof(err));
		free(again);
		if (rc != 0 && rc != -ENOMEM)
			fail("endpoint ROOT is not a valid endpoint", v->text);
		break;
	}
	default:
		break;
	}
}

static void check_value(const char *key, const struct spool_tx_option *o,
                        const struct spool_tx_value *v)
{
	if (o->def && !v->set)
		fail("key with a default left unset", key);
	if (!v->set)
		return;
	switch (o->type) {
	case SPOOL_TX_STRING:
		check_string(key, o, v);
		break;
	case SPOOL_TX_INT:
		if ((double)v->integer < o->min || (double)v->integer > o->max)
			fail("integer out of its range", key);
		break;
	case SPOOL_TX_NUMBER:
		if (!isfinite(v->number) || v->number < o->min || v->number > o->max)
			fail("number out of its range", key);
		break;
	case SPOOL_TX_BOOL:
		if (v->boolean != 0 && v->boolean != 1)
			fail("boolean neither 0 nor 1", key);
		break;
	case SPOOL_TX_LIST:
		if (v->nitems < 1 || !v->items)
			fail("list set but empty", key);
		for (size_t i = 0; i < v->nitems; i++)
			if (!v->items[i] || !v->items[i][0])
				fail("list with an empty item", key);
		break;
	case SPOOL_TX_MAP:
		if (v->npairs && !v->pairs)
			fail("map without its pairs", key);
		for (size_t i = 0; i < v->npairs; i++) {
			const struct spool_tx_pair *p = &v->pairs[i];
			if (!p->name || !p->value)
				fail("header without name or value", key);
			if (!header_name_ok(p->name))
				fail("bad header name", p->name);
			for (const char *c = p->value; *c; c++)
				if (((unsigned char)*c < 0x20 && *c != '\t') || *c == 0x7f)
					fail("header value with a control character", p->name);
			if (strcasecmp(p->name, "X-API-Key") == 0)
				fail("X-API-Key given as a header", key);
			for (size_t j = 0; j < i; j++)
				if (strcasecmp(v->pairs[j].name, p->name) == 0)
					fail("header given twice", p->name);
		}
		break;
	default:
		fail("value of an unknown type", key);
	}
}

/* ---- the whole configuration ---- */

static const struct spool_tx_value *value(const struct agent_config *cfg, const char *key)
{
	const struct spool_tx_value *v = config_value(cfg, key);
	if (!v)
		fail("config_value() does not find a key", key);
	return v;
}

static bool in_chain(const struct agent_config *cfg, const char *name)
{
	for (size_t i = 0; i < cfg->ntransports; i++)
		if (strcmp(cfg->transports[i], name) == 0)
			return true;
	return false;
}

static void check_chain(const struct agent_config *cfg)
{
	if (!cfg->transports || cfg->ntransports < 1 || cfg->ntransports > AGENT_MAX_TRANSPORTS)
		fail("chain empty or too long", NULL);
	for (size_t i = 0; i < cfg->ntransports; i++) {
		const char *n = cfg->transports[i];
		if (!n || !n[0])
			fail("empty transport name", NULL);
		for (size_t j = 0; j < i; j++)
			if (strcmp(cfg->transports[j], n) == 0)
				fail("transport named twice", n);
		const struct spool_transport *tx = cfg->plugins[i].tx;
		if (!tx || !tx->name || strcmp(tx->name, n) != 0) {
			char what[600];
			snprintf(what, sizeof(what),
			         "the file names '%s' as transport %zu, the agent resolved '%s'", n,
			         i + 1, tx && tx->name ? tx->name : "(none)");
			fail("resolved chain is not the configured chain", what);
		}
		if (cfg->plugins[i].dl)
			fail("a shared object was loaded", n);
	}
	for (size_t i = cfg->ntransports; i < AGENT_MAX_TRANSPORTS; i++)
		if (cfg->plugins[i].tx)
			fail("resolved chain longer than the configured chain",
			     cfg->plugins[i].tx->name);
}

static void check_sections(const struct agent_config *cfg)
{
	if (cfg->nsections < 1 || cfg->nsections > AGENT_MAX_SECTIONS ||
	    strcmp(cfg->sections[0].name, "") != 0)
		fail("sections malformed", NULL);
	for (size_t s = 0; s < cfg->nsections; s++) {
		const struct agent_section *sec = &cfg->sections[s];
		if (!sec->name || !sec->values || (sec->noptions && !sec->options))
			fail("section without its table or values", sec->name);
		bool read = s == 0;
		for (size_t i = 0; i < cfg->ntransports; i++) {
			const struct spool_transport *tx = cfg->plugins[i].tx;
			read |= tx && tx->section && strcmp(tx->section, sec->name) == 0;
		}
		if (sec->in_chain != read)
			fail("section's in_chain flag wrong", sec->name);
		for (size_t i = 0; i < sec->noptions; i++) {
			char key[160];
			snprintf(key, sizeof(key), "%s%s%s", sec->name, sec->name[0] ? "." : "",
			         sec->options[i].key);
			check_value(key, &sec->options[i], &sec->values[i]);
		}
	}
	/* every key --help-config lists is there */
	for (size_t i = 0; i < config_key_count(); i++)
		(void)value(cfg, config_key_name(i));
	if (config_value(cfg, "http.no_such_key") || config_value(cfg, "no_such_key"))
		fail("config_value() finds a key that does not exist", NULL);
}

/* The fields of struct agent_config are the agent's keys' values. */
static void check_fields(const struct agent_config *cfg)
{
	if (!cfg->spool || cfg->spool != value(cfg, "spool")->text)
		fail("spool field", cfg->spool);
	if (!cfg->log_level || cfg->log_level != value(cfg, "log.level")->text ||
	    config_log_level(cfg->log_level) < 0)
		fail("log level field", cfg->log_level);
	if (!cfg->log_target || cfg->log_target != value(cfg, "log.target")->text ||
	    (strcmp(cfg->log_target, "stderr") != 0 && strcmp(cfg->log_target, "syslog") != 0))
		fail("log target field", cfg->log_target);
	if (cfg->transports != (char **)value(cfg, "transports")->items ||
	    cfg->ntransports != value(cfg, "transports")->nitems)
		fail("transports field", NULL);
	if (cfg->batch_size != value(cfg, "batch_size")->integer ||
	    cfg->max_batch_bytes != value(cfg, "max_batch_bytes")->integer ||
	    cfg->max_in_flight != value(cfg, "max_in_flight")->integer)
		fail("integer field differs from its key", NULL);
	if (cfg->max_in_flight < 1 || cfg->max_in_flight > 64)
		fail("max_in_flight out of its range", NULL);
	if (cfg->retry_initial != value(cfg, "retry.initial_seconds")->number ||
	    cfg->retry_max != value(cfg, "retry.max_seconds")->number ||
	    cfg->retry_multiplier != value(cfg, "retry.multiplier")->number ||
	    cfg->flush_interval != value(cfg, "flush_interval_seconds")->number)
		fail("number field differs from its key", NULL);
	if (!(cfg->retry_max >= cfg->retry_initial) || !(cfg->retry_multiplier >= 1))
		fail("retry.max_seconds < retry.initial_seconds, or multiplier < 1", NULL);
}

/* The rules across keys: each transport of the chain has what it needs. */
static void check_rules(const struct agent_config *cfg)
{
	const struct spool_tx_value *key = value(cfg, "http.api_key"),
	                            *file = value(cfg, "http.api_key_file");
	if (key->set && file->set)
		fail("http.api_key and http.api_key_file both set", NULL);
	if (value(cfg, "http.tls.client_cert")->set != value(cfg, "http.tls.client_key")->set)
		fail("only one of http.tls.client_cert and http.tls.client_key", NULL);
	if ((in_chain(cfg, "http_batch") || in_chain(cfg, "http_single")) &&
	    !value(cfg, "http.endpoint")->set)
		fail("HTTP transport in the chain without http.endpoint", NULL);
	if (in_chain(cfg, "file") && !value(cfg, "file.path")->set)
		fail("file transport in the chain without file.path", NULL);
}

/* What the agent's logs and --check-config show of a key. */
static void check_redacted(const struct spool_tx_value *v)
{
	const char *k = v->set ? v->text : NULL;
	size_t n = k ? strlen(k) : 0;
	char red[64], want[64];
	config_redact_key(k, red, sizeof(red));
	if (n == 0)
		snprintf(want, sizeof(want), "(none)");
	else if (n <= 8)
		snprintf(want, sizeof(want), "(set, %zu characters)", n);
	else
		snprintf(want, sizeof(want), "...%s", k + n - 4);
	if (strcmp(red, want) != 0)
		fail("config_redact_key() shows more than it may", red);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (ftruncate(memfd, 0) != 0 || (size && pwrite(memfd, data, size, 0) != (ssize_t)size))
		abort();
	struct agent_config cfg;
	char err[512] = "";
	int rc = config_load(path, NULL, &cfg, err, sizeof(err));
	if (rc == 0) {
		check_chain(&cfg);
		check_sections(&cfg);
		check_fields(&cfg);
		check_rules(&cfg);
		check_redacted(value(&cfg, "http.api_key"));
		check_redacted(value(&cfg, "http.api_key_file"));
		config_free(&cfg);
	} else if (rc == -1) {
		if (!err[0] || !memchr(err, '\0', sizeof(err)))
			fail("failed without a message", NULL);
	} else {
		fail("config_load returned neither 0 nor -1", err);
	}
	return 0;
}
