/* event.c — ULIDs, timestamps and the msgpack event map. */
#include <errno.h>
#include <limits.h>
#include <msgpack.h>
#include <pthread.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "codec/event.h"

static const char CROCKFORD[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";

static pthread_mutex_t ulid_mu = PTHREAD_MUTEX_INITIALIZER;
static uint64_t ulid_ms;
static uint8_t ulid_rand[10];
static pid_t ulid_pid;

/* Adds one to the 80-bit big-endian number; false when it wrapped. */
static bool rand_increment(uint8_t r[10])
{
	for (int i = 9; i >= 0; i--)
		if (++r[i] != 0)
			return true;
	return false;
}

static void ulid_encode(uint64_t ms, const uint8_t r[10], char out[SPOOL_ULID_LEN + 1])
{
	/* 128 bits: 48 of time, 80 of randomness; 26 base32 digits, the first
	 * holding the top 3 bits */
	uint8_t b[16];
	for (int i = 0; i < 6; i++)
		b[i] = (uint8_t)(ms >> (40 - 8 * i));
	memcpy(b + 6, r, 10);
	for (int d = 0; d < SPOOL_ULID_LEN; d++) {
		/* bit offset of this digit in a 130-bit field with 2 leading zeros */
		int bit = d * 5 - 2;
		unsigned v = 0;
		for (int k = 0; k < 5; k++) {
			int pos = bit + k;
			unsigned one = pos < 0 ? 0 : (b[pos / 8] >> (7 - pos % 8)) & 1u;
			v = (v << 1) | one;
		}
		out[d] = CROCKFORD[v];
	}
	out[SPOOL_ULID_LEN] = '\0';
}

static int64_t now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int spool_ulid_new(char out[SPOOL_ULID_LEN + 1])
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	uint64_t ms = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
	pid_t me = getpid();
	pthread_mutex_lock(&ulid_mu);
	bool fresh = me != ulid_pid || ms > ulid_ms;
	if (!fresh && !rand_increment(ulid_rand)) {
		/* 2^80 ids in one millisecond: borrow the next one */
		ulid_ms++;
		fresh = true;
		ms = ulid_ms;
	}
	if (fresh) {
		if (getrandom(ulid_rand, sizeof(ulid_rand), 0) != (ssize_t)sizeof(ulid_rand)) {
			pthread_mutex_unlock(&ulid_mu);
			return -EAGAIN;
		}
		/* leave room to count up within the millisecond */
		ulid_rand[0] &= 0x7f;
		if (me == ulid_pid && ms < ulid_ms)
			ms = ulid_ms; /* the clock stepped back: stay ordered */
		ulid_ms = ms;
		ulid_pid = me;
	}
	ulid_encode(ulid_ms, ulid_rand, out);
	pthread_mutex_unlock(&ulid_mu);
	return 0;
}

void spool_timestamp_format(int64_t us, char out[SPOOL_TIMESTAMP_LEN + 1])
{
	time_t sec = (time_t)(us / 1000000);
	long frac = (long)(us % 1000000);
	if (frac < 0) {
		frac += 1000000;
		sec--;
	}
	struct tm tm;
	gmtime_r(&sec, &tm);
	char date[24];
	strftime(date, sizeof(date), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(out, SPOOL_TIMESTAMP_LEN + 1, "%.19s.%06ldZ", date, frac);
}

static bool ulid_valid(const char *s)
{
	if (strlen(s) != SPOOL_ULID_LEN || s[0] > '7')
		return false;
	for (int i = 0; i < SPOOL_ULID_LEN; i++)
		if (!strchr(CROCKFORD, s[i]) || s[i] == '\0')
			return false;
	return true;
}

/* The process facts of the c_client block, read once per process. */
static pthread_mutex_t client_mu = PTHREAD_MUTEX_INITIALIZER;
static pid_t client_pid;
static char client_host[256];
static char client_cwd[PATH_MAX];

static void client_facts(pid_t me, char *host, size_t hlen, char *cwd, size_t clen)
{
	pthread_mutex_lock(&client_mu);
	if (client_pid != me) {
		if (gethostname(client_host, sizeof(client_host)) != 0)
			client_host[0] = '\0';
		client_host[sizeof(client_host) - 1] = '\0';
		if (!getcwd(client_cwd, sizeof(client_cwd)))
			client_cwd[0] = '\0';
		client_pid = me;
	}
	snprintf(host, hlen, "%s", client_host);
	snprintf(cwd, clen, "%s", client_cwd);
	pthread_mutex_unlock(&client_mu);
}

/* The packer's sink: msgpack-c's pack calls report no error to their
 * caller, so a failed append is remembered here. */
struct sink {
	struct spool_buf *b;
	bool failed;
};

static int buf_write(void *data, const char *p, size_t n)
{
	struct sink *k = data;
	if (!k->failed && spool_buf_append(k->b, p, n) != 0)
		k->failed = true;
	return k->failed ? -1 : 0;
}

static void pack_str(msgpack_packer *pk, const char *s, size_t len)
{
	msgpack_pack_str_with_body(pk, s, len);
}

static void pack_cstr(msgpack_packer *pk, const char *s)
{
	pack_str(pk, s, strlen(s));
}

int spool_event_encode(const struct spool_event *ev, struct spool_buf *out,
		       char id[SPOOL_ULID_LEN + 1])
{
	if (!ev || !out || !ev->message || (unsigned)ev->severity >= (SPOOL_SEV_FATAL + 1) ||
	    ev->ttl_seconds < 0)
		return -EINVAL;
	for (size_t i = 0; i < ev->nmetadata; i++)
		if (!ev->metadata || !ev->metadata[i].key ||
		    (unsigned)ev->metadata[i].type > SPOOL_KV_BOOL ||
		    (ev->metadata[i].type == SPOOL_KV_STR && !ev->metadata[i].s))
			return -EINVAL;
	char ulid[SPOOL_ULID_LEN + 1];
	if (ev->client_event_id) {
		if (!ulid_valid(ev->client_event_id))
			return -EINVAL;
		memcpy(ulid, ev->client_event_id, sizeof(ulid));
	} else {
		int rc = spool_ulid_new(ulid);
		if (rc)
			return rc;
	}
	char stamp[SPOOL_TIMESTAMP_LEN + 1];
	spool_timestamp_format(ev->timestamp_us ? ev->timestamp_us : now_us(), stamp);
	size_t mlen = ev->message_len == SIZE_MAX ? strlen(ev->message) : ev->message_len;

	size_t start = out->len;
	msgpack_packer pk;
	struct sink sink = {out, false};
	msgpack_packer_init(&pk, &sink, buf_write);
	uint32_t fields = 4 + (ev->title ? 1 : 0) + (ev->tags ? 1 : 0) + (ev->ttl_seconds ? 1 : 0);
	if (ev->metadata_raw_count && (!ev->metadata_raw || !ev->metadata_raw_len))
		return -EINVAL;
	bool meta = ev->nmetadata > 0 || ev->metadata_raw_count > 0 || !ev->no_client_block;
	fields += meta ? 1 : 0;
	msgpack_pack_map(&pk, fields);
	pack_cstr(&pk, "message");
	pack_str(&pk, ev->message, mlen);
	pack_cstr(&pk, "severity");
	pack_cstr(&pk, spool_severity_name(ev->severity));
	if (ev->title) {
		pack_cstr(&pk, "title");
		pack_cstr(&pk, ev->title);
	}
	if (ev->tags) {
		size_t n = 0;
		while (ev->tags[n])
			n++;
		pack_cstr(&pk, "tags");
		msgpack_pack_array(&pk, n);
		for (size_t i = 0; i < n; i++)
			pack_cstr(&pk, ev->tags[i]);
	}
	if (ev->ttl_seconds) {
		pack_cstr(&pk, "ttl_seconds");
		msgpack_pack_int64(&pk, ev->ttl_seconds);
	}
	if (meta) {
		pack_cstr(&pk, "metadata");
		msgpack_pack_map(&pk, ev->nmetadata + ev->metadata_raw_count + (ev->no_client_block ? 0 : 1));
		for (size_t i = 0; i < ev->nmetadata; i++) {
			const struct spool_kv *kv = &ev->metadata[i];
			pack_cstr(&pk, kv->key);
			switch (kv->type) {
			case SPOOL_KV_STR: pack_cstr(&pk, kv->s); break;
			case SPOOL_KV_INT: msgpack_pack_int64(&pk, kv->i); break;
			case SPOOL_KV_DOUBLE: msgpack_pack_double(&pk, kv->d); break;
			case SPOOL_KV_BOOL:
				if (kv->b)
					msgpack_pack_true(&pk);
				else
					msgpack_pack_false(&pk);
				break;
			}
		}
		if (ev->metadata_raw_count)
			buf_write(&sink, ev->metadata_raw, ev->metadata_raw_len);
		if (!ev->no_client_block) {
			char host[256], cwd[PATH_MAX];
			pid_t me = getpid();
			client_facts(me, host, sizeof(host), cwd, sizeof(cwd));
			pack_cstr(&pk, "c_client");
			msgpack_pack_map(&pk, ev->fqdn ? 6 : 5);
			pack_cstr(&pk, "hostname");
			pack_cstr(&pk, host);
			if (ev->fqdn) {
				pack_cstr(&pk, "fqdn");
				pack_cstr(&pk, ev->fqdn);
			}
			pack_cstr(&pk, "pid");
			msgpack_pack_int64(&pk, (int64_t)me);
			pack_cstr(&pk, "process_name");
			pack_cstr(&pk, program_invocation_short_name);
			pack_cstr(&pk, "cwd");
			pack_cstr(&pk, cwd);
			pack_cstr(&pk, "library_version");
			pack_cstr(&pk, SPOOL_VERSION_STRING);
		}
	}
	pack_cstr(&pk, "client_event_id");
	pack_cstr(&pk, ulid);
	pack_cstr(&pk, "timestamp");
	pack_cstr(&pk, stamp);
	if (sink.failed) {
		out->len = start;
		return -ENOMEM;
	}
	if (id)
		memcpy(id, ulid, sizeof(ulid));
	return 0;
}
