/* config_internal.h — what config.c (the tables, values and checks) and
 * config_yaml.c (walking the YAML document) share. */
#ifndef AGENT_CONFIG_INTERNAL_H
#define AGENT_CONFIG_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <yaml.h>

#include "config.h"

/* One key under its full name. */
struct key {
	char name[128]; /* "retry.max_seconds", "http.endpoint" */
	const struct spool_tx_option *o;
	size_t sec; /* index into agent_config.sections */
	size_t row; /* index into that section's options and values */
};

/* Where a value came from, for messages. */
enum from { FROM_DEFAULT, FROM_FILE, FROM_ENV, FROM_CMDLINE };

struct origin {
	enum from from;
	bool seen; /* named in the file, even with no value */
	size_t line, col;
	const char *opt; /* the command-line option */
};

struct loadctx {
	const char *path; /* NULL: no file */
	struct agent_config *cfg;
	struct key *keys;
	struct origin *o;
	size_t nkeys;
	char *err;
	size_t errlen;
};

/* The value a key sets. */
struct spool_tx_value *value_of(struct loadctx *lc, const struct key *k);
const struct key *find_key(const struct loadctx *lc, const char *name);
/* Sets a scalar key (or a comma-separated list) from text.  0, or -1 with
 * why filled. */
int set_scalar(const struct spool_tx_option *o, const char *text, struct spool_tx_value *v, char *why,
	       size_t wl);
void value_clear(struct spool_tx_value *v);
/* One sentence naming where key k came from; -1. */
int kerr(struct loadctx *lc, const struct key *k, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
bool parse_bool(const char *s, bool *out);
const char *type_name(uint32_t t);
bool is_names(const struct spool_tx_option *o);
/* A value as it may appear in a one-line message: at most max characters,
 * control characters as '?'. */
const char *show(const char *text, size_t max, char *buf, size_t len);
#define SHOW(text) show((text), 200, (char[256]){0}, 256)

/* config_yaml.c */

/* The file, parsed whole: one document holding a map.  0, or -1 with err
 * set (nothing to free then). */
int config_yaml_read(const char *path, yaml_document_t *doc, char *err, size_t errlen);
/* Sets every key the document names; -1 with lc->err set at the first
 * fault. */
int config_yaml_walk(struct loadctx *lc, yaml_document_t *doc);
/* The text of a top-level key when it is a plain scalar or a list of them
 * (joined with commas); "" otherwise. */
void config_yaml_peek(yaml_document_t *doc, const char *key, char *buf, size_t len);

#endif
