/* mlog_event.c — what the client adds to an event: metadata given as JSON
 * text (converted to msgpack with jansson), the checks on typed metadata,
 * and the fully qualified domain name, resolved once per process in a
 * detached thread so that no log call waits for DNS. */
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <msgpack.h>
#include <netdb.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "mlog_event.h"

/* ---- fqdn ---- */

enum { FQDN_NONE, FQDN_RESOLVING, FQDN_DONE, FQDN_FAILED };

/* How long the first event of a process waits for the host's canonical
 * name: a host whose resolver hangs pays this once, its later events go
 * without waiting (and carry the name once it arrives). */
#define FQDN_WAIT_SECONDS 1.0

static pthread_once_t fqdn_once = PTHREAD_ONCE_INIT;
static atomic_int fqdn_state;
static char fqdn_buf[256];
static pthread_mutex_t fqdn_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t fqdn_cond;
static struct timespec fqdn_deadline; /* CLOCK_MONOTONIC */

static void fqdn_finish(int state)
{
	pthread_mutex_lock(&fqdn_mu);
	atomic_store(&fqdn_state, state); /* DONE publishes fqdn_buf */
	pthread_cond_broadcast(&fqdn_cond);
	pthread_mutex_unlock(&fqdn_mu);
}

static void *fqdn_main(void *arg)
{
	(void)arg;
	char host[256];
	if (gethostname(host, sizeof(host)) != 0) {
		fqdn_finish(FQDN_FAILED);
		return NULL;
	}
	host[sizeof(host) - 1] = '\0';
	struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_flags = AI_CANONNAME}, *res = NULL;
	int rc = getaddrinfo(host, NULL, &hints, &res);
	if (rc == 0 && res && res->ai_canonname && res->ai_canonname[0]) {
		snprintf(fqdn_buf, sizeof(fqdn_buf), "%s", res->ai_canonname);
		fqdn_finish(FQDN_DONE);
	} else {
		fqdn_finish(FQDN_FAILED);
	}
	if (res)
		freeaddrinfo(res);
	return NULL;
}

static void fqdn_start(void)
{
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&fqdn_cond, &ca);
	pthread_condattr_destroy(&ca);
	clock_gettime(CLOCK_MONOTONIC, &fqdn_deadline);
	fqdn_deadline.tv_sec += (time_t)FQDN_WAIT_SECONDS;
	fqdn_deadline.tv_nsec += (long)((FQDN_WAIT_SECONDS - (double)(time_t)FQDN_WAIT_SECONDS) * 1e9);
	if (fqdn_deadline.tv_nsec >= 1000000000L) {
		fqdn_deadline.tv_sec++;
		fqdn_deadline.tv_nsec -= 1000000000L;
	}
	pthread_attr_t a;
	pthread_t t;
	atomic_store(&fqdn_state, FQDN_RESOLVING);
	pthread_attr_init(&a);
	pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
	if (pthread_create(&t, &a, fqdn_main, NULL) != 0)
		atomic_store(&fqdn_state, FQDN_FAILED);
	pthread_attr_destroy(&a);
}

const char *mlog_fqdn(void)
{
	pthread_once(&fqdn_once, fqdn_start);
	if (atomic_load(&fqdn_state) == FQDN_RESOLVING) {
		/* the first events wait for the name, up to FQDN_WAIT_SECONDS
		 * after the process first asked (a one-shot program has only
		 * its first event) */
		pthread_mutex_lock(&fqdn_mu);
		while (atomic_load(&fqdn_state) == FQDN_RESOLVING &&
		       pthread_cond_timedwait(&fqdn_cond, &fqdn_mu, &fqdn_deadline) == 0)
			;
		pthread_mutex_unlock(&fqdn_mu);
	}
	return atomic_load(&fqdn_state) == FQDN_DONE ? fqdn_buf : NULL;
}

/* ---- JSON metadata ---- */

static int sb_write(void *data, const char *p, size_t n)
{
	return spool_buf_append(data, p, n) == 0 ? 0 : -1;
}

static void pack_json(msgpack_packer *pk, const json_t *j, int depth)
{
	if (depth > SPOOL_JSON_MAX_DEPTH) {
		msgpack_pack_nil(pk);
		return;
	}
	switch (json_typeof(j)) {
	case JSON_OBJECT: {
		const char *k;
		json_t *v;
		msgpack_pack_map(pk, json_object_size(j));
		json_object_foreach((json_t *)j, k, v)
		{
			msgpack_pack_str_with_body(pk, k, strlen(k));
			pack_json(pk, v, depth + 1);
		}
		break;
	}
	case JSON_ARRAY:
		msgpack_pack_array(pk, json_array_size(j));
		for (size_t i = 0; i < json_array_size(j); i++)
			pack_json(pk, json_array_get(j, i), depth + 1);
		break;
	case JSON_STRING:
		msgpack_pack_str_with_body(pk, json_string_value(j), json_string_length(j));
		break;
	case JSON_INTEGER:
		msgpack_pack_int64(pk, (int64_t)json_integer_value(j));
		break;
	case JSON_REAL:
		msgpack_pack_double(pk, json_real_value(j));
		break;
	case JSON_TRUE:
		msgpack_pack_true(pk);
		break;
	case JSON_FALSE:
		msgpack_pack_false(pk);
		break;
	case JSON_NULL:
		msgpack_pack_nil(pk);
		break;
	}
}

/* Length of the well-formed UTF-8 sequence at p (n bytes left), 0 if none
 * starts there (overlong forms, surrogates, above U+10FFFF). */
static size_t utf8_seq(const unsigned char *p, size_t n)
{
	unsigned c = p[0];
	if (c < 0x80)
		return 1;
	size_t k = c >= 0xc2 && c <= 0xdf   ? 2
	           : c >= 0xe0 && c <= 0xef ? 3
	           : c >= 0xf0 && c <= 0xf4 ? 4
	                                    : 0;
	if (!k || n < k)
		return 0;
	for (size_t i = 1; i < k; i++)
		if ((p[i] & 0xc0) != 0x80)
			return 0;
	if ((c == 0xe0 && p[1] < 0xa0) || (c == 0xed && p[1] >= 0xa0) || (c == 0xf0 && p[1] < 0x90) ||
	    (c == 0xf4 && p[1] >= 0x90))
		return 0;
	return k;
}

static bool utf8_ok(const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t n = strlen(s);
	for (size_t i = 0; i < n;) {
		size_t k = utf8_seq(p + i, n - i);
		if (!k)
			return false;
		i += k;
	}
	return true;
}

/* Keys of metadata that senders write themselves (PROTOCOL.md): a user
 * value there would be replaced or sent twice. */
static const char *reserved_key(const char *k)
{
	if (strcmp(k, "c_client") == 0)
		return "the client's own block";
	if (strcmp(k, "delivery") == 0)
		return "added by the agent (delivery_metadata)";
	return NULL;
}

static int key_cmp(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

int mlog_metadata_check(const struct spool_kv *kv, size_t n, char *err, size_t errlen)
{
	for (size_t i = 0; i < n; i++) {
		const struct spool_kv *v = &kv[i];
		const char *why;
		if (!v->key) {
			snprintf(err, errlen, "metadata[%zu]: the key is NULL", i);
			return -EINVAL;
		}
		if (!utf8_ok(v->key)) {
			snprintf(err, errlen, "metadata[%zu]: the key is not valid UTF-8", i);
			return -EINVAL;
		}
		if ((why = reserved_key(v->key))) {
			snprintf(err, errlen, "metadata[%zu]: the key '%s' is %s", i, v->key, why);
			return -EINVAL;
		}
		if ((unsigned)v->type > SPOOL_KV_BOOL) {
			snprintf(err, errlen, "metadata '%.60s': unknown type %d", v->key, (int)v->type);
			return -EINVAL;
		}
		if (v->type == SPOOL_KV_STR && !v->s) {
			snprintf(err, errlen, "metadata '%.60s': the string value is NULL", v->key);
			return -EINVAL;
		}
		if (v->type == SPOOL_KV_DOUBLE && !isfinite(v->d)) {
			snprintf(err, errlen,
			         "metadata '%.60s': %s is not a finite number and has no JSON form",
			         v->key, isnan(v->d) ? "NaN" : v->d > 0 ? "inf" : "-inf");
			return -EINVAL;
		}
	}
	if (n <= 16) { /* the usual few: no allocation */
		for (size_t i = 1; i < n; i++)
			for (size_t j = 0; j < i; j++)
				if (strcmp(kv[i].key, kv[j].key) == 0) {
					snprintf(err, errlen, "metadata: duplicate key '%.60s'",
					         kv[i].key);
					return -EINVAL;
				}
		return 0;
	}
	const char **keys = malloc(n * sizeof(*keys));
	if (!keys) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	for (size_t i = 0; i < n; i++)
		keys[i] = kv[i].key;
	qsort(keys, n, sizeof(*keys), key_cmp);
	int rc = 0;
	for (size_t i = 1; i < n && !rc; i++)
		if (strcmp(keys[i - 1], keys[i]) == 0) {
			snprintf(err, errlen, "metadata: duplicate key '%.60s'", keys[i]);
			rc = -EINVAL;
		}
	free(keys);
	return rc;
}

/* Levels of nesting of j (a scalar is 0, {} or [] is 1); stops counting
 * past limit. */
static int json_depth(const json_t *j, int limit)
{
	int deepest = 0;
	if (json_is_object(j)) {
		const char *k;
		json_t *v;
		json_object_foreach((json_t *)j, k, v)
		{
			int d = json_depth(v, limit - 1);
			if (d > deepest)
				deepest = d;
			if (deepest >= limit)
				break;
		}
	} else if (json_is_array(j)) {
		for (size_t i = 0; i < json_array_size(j) && deepest < limit; i++) {
			int d = json_depth(json_array_get(j, i), limit - 1);
			if (d > deepest)
				deepest = d;
		}
	} else {
		return 0;
	}
	return deepest + 1;
}

static const char *json_type_name(const json_t *j)
{
	switch (json_typeof(j)) {
	case JSON_ARRAY:
		return "an array";
	case JSON_STRING:
		return "a string";
	case JSON_INTEGER:
	case JSON_REAL:
		return "a number";
	case JSON_TRUE:
	case JSON_FALSE:
		return "a boolean";
	case JSON_NULL:
		return "null";
	default:
		return "an object";
	}
}

int mlog_metadata_from_json(const char *text, const struct spool_kv *typed, size_t ntyped,
                            struct spool_buf *out, size_t *count, char *err, size_t errlen)
{
	return mlog_metadata_from_json_ex(text, typed, ntyped, NULL, out, count, err, errlen);
}

int mlog_metadata_from_json_ex(const char *text, const struct spool_kv *typed, size_t ntyped,
                               const char *block, struct spool_buf *out, size_t *count, char *err,
                               size_t errlen)
{
	json_error_t je;
	*count = 0;
	/* any root, so that "42" is told it is not an object; NUL allowed in
	 * values, as in the message (msgpack and the JSON encoder carry it) */
	json_t *j = json_loads(text, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY | JSON_ALLOW_NUL, &je);
	if (!j) {
		snprintf(err, errlen, "metadata_json: not valid JSON: %s (line %d, column %d)",
		         je.text, je.line, je.column);
		return -EINVAL;
	}
	if (!json_is_object(j)) {
		snprintf(err, errlen, "metadata_json: expected a JSON object ({...}), got %s",
		         json_type_name(j));
		json_decref(j);
		return -EINVAL;
	}
	const char *k;
	json_t *v;
	json_object_foreach(j, k, v)
	{
		const char *why = reserved_key(k);
		if (!why && block && strcmp(k, block) == 0)
			why = "the client's own block (mlog_client_set_block)";
		if (why) {
			snprintf(err, errlen, "metadata_json: the key '%s' is %s", k, why);
			json_decref(j);
			return -EINVAL;
		}
	}
	for (size_t i = 0; i < ntyped; i++)
		if (typed[i].key && json_object_get(j, typed[i].key)) {
			snprintf(err, errlen,
			         "metadata: duplicate key '%.60s' (typed and in metadata_json)",
			         typed[i].key);
			json_decref(j);
			return -EINVAL;
		}
	/* deeper containers would reach the JSON encoder's depth cap
	 * (SPOOL_JSON_MAX_DEPTH) and arrive as null: refuse them here */
	int depth = json_depth(j, MLOG_METADATA_MAX_DEPTH + 1);
	if (depth > MLOG_METADATA_MAX_DEPTH) {
		snprintf(err, errlen,
		         "metadata_json: nested too deep (over %d levels of objects and arrays, "
		         "MLOG_METADATA_MAX_DEPTH)",
		         MLOG_METADATA_MAX_DEPTH);
		json_decref(j);
		return -EINVAL;
	}
	msgpack_packer pk;
	msgpack_packer_init(&pk, out, sb_write);
	size_t start = out->len;
	json_object_foreach(j, k, v)
	{
		msgpack_pack_str_with_body(&pk, k, strlen(k));
		pack_json(&pk, v, 2);
		(*count)++;
	}
	json_decref(j);
	if (*count && out->len == start) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	return 0;
}

void mlog_kv_to_spool(const struct mlog_kv *in, size_t n, struct spool_kv *out)
{
	for (size_t i = 0; i < n; i++) {
		enum spool_kv_type t = (enum spool_kv_type)in[i].type;
		switch (in[i].type) {
		case MLOG_KV_STR:
			t = SPOOL_KV_STR;
			break;
		case MLOG_KV_INT:
			t = SPOOL_KV_INT;
			break;
		case MLOG_KV_DOUBLE:
			t = SPOOL_KV_DOUBLE;
			break;
		case MLOG_KV_BOOL:
			t = SPOOL_KV_BOOL;
			break;
		}
		/* an unknown type passes through: the check below refuses it */
		out[i] = (struct spool_kv){.key = in[i].key, .type = t, .s = in[i].s, .i = in[i].i,
		                           .d = in[i].d, .b = in[i].b};
	}
}

int mlog_block_from_json(const char *name, const char *json, struct spool_buf *out, char *err,
                         size_t errlen)
{
	const char *why;
	if (!name || !name[0] || !json) {
		snprintf(err, errlen, "mlog_client_set_block: %s is missing",
		         !json ? "the block's JSON" : "the block's name");
		return -EINVAL;
	}
	if (strlen(name) > MLOG_BLOCK_NAME_MAX) {
		snprintf(err, errlen,
		         "mlog_client_set_block: the name is %zu bytes; the limit is %d",
		         strlen(name), MLOG_BLOCK_NAME_MAX);
		return -EINVAL;
	}
	if (!utf8_ok(name)) {
		snprintf(err, errlen, "mlog_client_set_block: the name is not valid UTF-8");
		return -EINVAL;
	}
	if ((why = reserved_key(name))) {
		snprintf(err, errlen, "mlog_client_set_block: the name '%.60s' is %s", name, why);
		return -EINVAL;
	}
	json_error_t je;
	json_t *j = json_loads(json, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &je);
	if (!j) {
		snprintf(err, errlen,
		         "mlog_client_set_block: not valid JSON: %s (line %d, column %d)", je.text,
		         je.line, je.column);
		return -EINVAL;
	}
	if (!json_is_object(j)) {
		snprintf(err, errlen,
		         "mlog_client_set_block: expected a JSON object ({...}), got %s",
		         json_type_name(j));
		json_decref(j);
		return -EINVAL;
	}
	/* the block sits one level below metadata, as a user value would */
	if (json_depth(j, MLOG_METADATA_MAX_DEPTH) >= MLOG_METADATA_MAX_DEPTH) {
		snprintf(err, errlen,
		         "mlog_client_set_block: nested too deep (MLOG_METADATA_MAX_DEPTH)");
		json_decref(j);
		return -EINVAL;
	}
	msgpack_packer pk;
	msgpack_packer_init(&pk, out, sb_write);
	size_t start = out->len;
	msgpack_pack_str_with_body(&pk, name, strlen(name));
	pack_json(&pk, j, 2);
	json_decref(j);
	if (out->len == start) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	return 0;
}
