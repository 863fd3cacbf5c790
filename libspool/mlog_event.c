/* mlog_event.c — what the client adds to an event: metadata given as JSON
 * text (converted to msgpack with jansson) and the fully qualified domain
 * name, resolved once per process in a detached thread so that no log call
 * waits for DNS. */
#include <errno.h>
#include <jansson.h>
#include <msgpack.h>
#include <netdb.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "mlog_event.h"

/* ---- fqdn ---- */

enum { FQDN_NONE, FQDN_RESOLVING, FQDN_DONE, FQDN_FAILED };

static pthread_once_t fqdn_once = PTHREAD_ONCE_INIT;
static atomic_int fqdn_state;
static char fqdn_buf[256];

static void *fqdn_main(void *arg)
{
	(void)arg;
	char host[256];
	if (gethostname(host, sizeof(host)) != 0) {
		atomic_store(&fqdn_state, FQDN_FAILED);
		return NULL;
	}
	host[sizeof(host) - 1] = '\0';
	struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_flags = AI_CANONNAME}, *res = NULL;
	int rc = getaddrinfo(host, NULL, &hints, &res);
	if (rc == 0 && res && res->ai_canonname && res->ai_canonname[0]) {
		snprintf(fqdn_buf, sizeof(fqdn_buf), "%s", res->ai_canonname);
		atomic_store(&fqdn_state, FQDN_DONE); /* publishes fqdn_buf */
	} else {
		atomic_store(&fqdn_state, FQDN_FAILED);
	}
	if (res)
		freeaddrinfo(res);
	return NULL;
}

static void fqdn_start(void)
{
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

int mlog_metadata_from_json(const char *text, struct spool_buf *out, size_t *count, char *err,
                            size_t errlen)
{
	json_error_t je;
	*count = 0;
	json_t *j = json_loads(text, JSON_REJECT_DUPLICATES, &je);
	if (!j) {
		snprintf(err, errlen, "metadata_json: not valid JSON: %s (line %d, column %d)",
		         je.text, je.line, je.column);
		return -EINVAL;
	}
	if (!json_is_object(j)) {
		json_decref(j);
		snprintf(err, errlen, "metadata_json: expected a JSON object ({...})");
		return -EINVAL;
	}
	if (json_object_get(j, "c_client")) {
		json_decref(j);
		snprintf(err, errlen, "metadata_json: the key 'c_client' is the client's own");
		return -EINVAL;
	}
	msgpack_packer pk;
	msgpack_packer_init(&pk, out, sb_write);
	size_t start = out->len;
	const char *k;
	json_t *v;
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
