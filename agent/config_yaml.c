/* config_yaml.c — the agent's configuration file: one YAML document read
 * with libyaml and walked key by key against the tables of config.c. */
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "config_internal.h"


struct yctx {
	const char *path;
	yaml_document_t *doc;
	struct loadctx *lc;
	char *err;
	size_t errlen;
};

static int yerr(struct yctx *y, const yaml_node_t *n, const char *key, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static int yerr(struct yctx *y, const yaml_node_t *n, const char *key, const char *fmt, ...)
{
	/* a key's name may hold anything a quoted YAML key can: shown safe */
	int off = snprintf(y->err, y->errlen, "%s:%zu:%zu: %s%s%s", y->path, (size_t)n->start_mark.line + 1,
			   (size_t)n->start_mark.column + 1, key ? "key '" : "", key ? SHOW(key) : "",
			   key ? "': " : "");
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

static int set_map(struct yctx *y, const struct key *k, yaml_node_t *n)
{
	if (n->type != YAML_MAPPING_NODE)
		return yerr(y, n, k->name, "%s", "expected a map of header names to values");
	struct spool_tx_value *v = value_of(y->lc, k);
	value_clear(v);
	v->set = 1;
	for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
		yaml_node_t *kn = yaml_document_get_node(y->doc, p->key);
		yaml_node_t *vn = yaml_document_get_node(y->doc, p->value);
		if (kn->type != YAML_SCALAR_NODE || vn->type != YAML_SCALAR_NODE)
			return yerr(y, kn->type != YAML_SCALAR_NODE ? kn : vn, k->name, "%s",
				    "header names and values must be strings");
		const char *name = scalar(kn), *val = scalar(vn);
		if (!header_name_ok(name))
			return yerr(y, kn, k->name, "bad header name '%s'", SHOW(name));
		if (!header_value_ok(val))
			return yerr(y, vn, k->name, "header '%s': the value holds a control character", name);
		if (strcasecmp(name, "X-API-Key") == 0)
			return yerr(y, kn, k->name, "%s", "set the key with api_key or api_key_file, not as a header");
		for (size_t i = 0; i < v->npairs; i++)
			if (strcasecmp(v->pairs[i].name, name) == 0)
				return yerr(y, kn, k->name, "header '%s' given twice", name);
		struct spool_tx_pair *h = realloc((void *)v->pairs, (v->npairs + 1) * sizeof(*h));
		if (!h)
			return yerr(y, kn, k->name, "%s", "out of memory");
		v->pairs = h;
		h[v->npairs].name = strdup(name);
		h[v->npairs].value = strdup(val);
		v->npairs++;
		if (!h[v->npairs - 1].name || !h[v->npairs - 1].value)
			return yerr(y, kn, k->name, "%s", "out of memory");
	}
	return 0;
}

static int set_list(struct yctx *y, const struct key *k, yaml_node_t *v)
{
	char joined[4096] = "";
	const char *bad = is_names(k->o) ? ", " : ",";
	for (yaml_node_item_t *it = v->data.sequence.items.start; it < v->data.sequence.items.top; it++) {
		yaml_node_t *e = yaml_document_get_node(y->doc, *it);
		if (e->type != YAML_SCALAR_NODE || !*scalar(e) || strpbrk(scalar(e), bad))
			return yerr(y, e, k->name, "expected a list of %s",
				    is_names(k->o) ? "transport names" : "names without commas");
		if (strlen(joined) + strlen(scalar(e)) + 2 >= sizeof(joined))
			return yerr(y, e, k->name, "%s", "list too long");
		if (*joined)
			strcat(joined, ",");
		strcat(joined, scalar(e));
	}
	char why[256];
	if (set_scalar(k->o, joined, value_of(y->lc, k), why, sizeof(why)))
		return yerr(y, v, k->name, "%s", why);
	return 0;
}

/* Whether some key's name starts with "name.". */
static bool is_section(const struct loadctx *lc, const char *name)
{
	size_t nl = strlen(name);
	for (size_t i = 0; i < lc->nkeys; i++)
		if (strncmp(lc->keys[i].name, name, nl) == 0 && lc->keys[i].name[nl] == '.')
			return true;
	return false;
}

static int walk(struct yctx *y, yaml_node_t *map, const char *prefix)
{
	struct loadctx *lc = y->lc;
	for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
		yaml_node_t *kn = yaml_document_get_node(y->doc, p->key);
		yaml_node_t *v = yaml_document_get_node(y->doc, p->value);
		if (kn->type != YAML_SCALAR_NODE)
			return yerr(y, kn, NULL, "%s", "keys must be plain names");
		char name[256];
		snprintf(name, sizeof(name), "%s%s%s", prefix, *prefix ? "." : "", scalar(kn));
		const struct key *k = find_key(lc, name);
		/* YAML forbids a key twice in one map; libyaml does not check.  (A
		 * section may come twice: its keys merge, each still at most once.) */
		for (yaml_node_pair_t *q = map->data.mapping.pairs.start; k && q < p; q++) {
			yaml_node_t *kq = yaml_document_get_node(y->doc, q->key);
			if (kq->type == YAML_SCALAR_NODE && strcmp(scalar(kq), scalar(kn)) == 0)
				return yerr(y, kn, name, "given twice (first on line %zu)",
					    (size_t)kq->start_mark.line + 1);
		}
		if (!k) {
			bool section = is_section(lc, name);
			if (section && v->type == YAML_MAPPING_NODE) {
				if (walk(y, v, name))
					return -1;
				continue;
			}
			if (section)
				return yerr(y, v, name, "%s", "expected a map of its keys");
			return yerr(y, kn, name, "%s", "unknown key (spool-agent --help-config lists them)");
		}
		struct origin *o = &lc->o[k - lc->keys];
		if (o->seen)
			return yerr(y, kn, name, "%s", "given twice");
		o->seen = true;
		if (is_null(v))
			continue; /* `key:` with no value: the default */
		*o = (struct origin){FROM_FILE, true, (size_t)v->start_mark.line + 1, (size_t)v->start_mark.column + 1,
				     NULL};
		if (k->o->type == SPOOL_TX_MAP) {
			if (set_map(y, k, v))
				return -1;
			continue;
		}
		if (k->o->type == SPOOL_TX_LIST && v->type == YAML_SEQUENCE_NODE) {
			if (set_list(y, k, v))
				return -1;
			continue;
		}
		if (v->type != YAML_SCALAR_NODE)
			return yerr(y, v, name, "expected %s, got a %s", type_name(k->o->type),
				    v->type == YAML_MAPPING_NODE ? "map" : "list");
		bool plain = v->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
		bool b;
		uint32_t t = k->o->type;
		if (!plain && (t == SPOOL_TX_INT || t == SPOOL_TX_NUMBER || t == SPOOL_TX_BOOL))
			return yerr(y, v, name, "expected %s, got the quoted string \"%s\" (drop the quotes)",
				    type_name(t), SHOW(scalar(v)));
		if (plain && t == SPOOL_TX_STRING && strcmp(scalar(v), "0") != 0 && strcmp(scalar(v), "1") != 0 &&
		    parse_bool(scalar(v), &b))
			return yerr(y, v, name, "expected a string, got the boolean %s (quote it if it is text)",
				    scalar(v));
		char why[256];
		if (set_scalar(k->o, scalar(v), value_of(lc, k), why, sizeof(why)))
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

int config_yaml_read(const char *path, yaml_document_t *doc, char *err, size_t errlen)
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
	yaml_document_t more;
	int rc = -1;
	if (!yaml_parser_initialize(&parser)) {
		fclose(f);
		snprintf(err, errlen, "%s: out of memory", path);
		return -1;
	}
	yaml_parser_set_input_file(&parser, f);
	if (!yaml_parser_load(&parser, doc)) {
		parse_error(path, &parser, err, errlen);
		yaml_parser_delete(&parser);
		fclose(f);
		return -1;
	}
	yaml_node_t *root = yaml_document_get_root_node(doc);
	struct yctx y = {path, doc, NULL, err, errlen};
	if (!root || is_null(root)) {
		snprintf(err, errlen,
			 "%s: no keys: the file is empty (run without -c to take everything from the "
			 "environment and the defaults)",
			 path);
	} else if (root->type != YAML_MAPPING_NODE) {
		yerr(&y, root, NULL, "expected a map of keys at the top, got a %s",
		     root->type == YAML_SEQUENCE_NODE ? "list" : "single value");
	} else if (!yaml_parser_load(&parser, &more)) {
		/* libyaml reads one document at a time: anything after it is an
		 * error too, not something to ignore */
		parse_error(path, &parser, err, errlen);
	} else {
		yaml_node_t *r2 = yaml_document_get_root_node(&more);
		if (r2 && !is_null(r2))
			yerr(&y, r2, NULL, "%s", "a second YAML document ('---'): put every key in one document");
		else
			rc = 0;
		yaml_document_delete(&more);
	}
	if (rc)
		yaml_document_delete(doc);
	yaml_parser_delete(&parser);
	fclose(f);
	return rc;
}

/* The text of a top-level key in the file, when it is a plain scalar or a
 * list of them (joined with commas); "" otherwise.  The chain is needed
 * before the walk, since it decides which sections there are; a malformed
 * value is reported by the walk. */
void config_yaml_peek(yaml_document_t *doc, const char *key, char *buf, size_t len)
{
	buf[0] = '\0';
	yaml_node_t *root = yaml_document_get_root_node(doc);
	for (yaml_node_pair_t *p = root->data.mapping.pairs.start; p < root->data.mapping.pairs.top; p++) {
		yaml_node_t *k = yaml_document_get_node(doc, p->key);
		yaml_node_t *v = yaml_document_get_node(doc, p->value);
		if (k->type != YAML_SCALAR_NODE || strcmp(scalar(k), key) != 0)
			continue;
		if (v->type == YAML_SCALAR_NODE && !is_null(v)) {
			snprintf(buf, len, "%s", scalar(v));
		} else if (v->type == YAML_SEQUENCE_NODE) {
			for (yaml_node_item_t *it = v->data.sequence.items.start; it < v->data.sequence.items.top; it++) {
				yaml_node_t *e = yaml_document_get_node(doc, *it);
				if (e->type != YAML_SCALAR_NODE || strpbrk(scalar(e), ", ")) {
					buf[0] = '\0';
					return;
				}
				size_t l = strlen(buf);
				snprintf(buf + l, len - l, "%s%s", l ? "," : "", scalar(e));
			}
		}
		return;
	}
}


int config_yaml_walk(struct loadctx *lc, yaml_document_t *doc)
{
	struct yctx y = {lc->path, doc, lc, lc->err, lc->errlen};
	return walk(&y, yaml_document_get_root_node(doc), "");
}
