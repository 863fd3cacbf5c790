/* event.c — ULIDs, timestamps and the msgpack event map. */
#include <errno.h>
#include <limits.h>
#include <msgpack.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
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

/* getpid() is a system call, and the ULID state and the c_client block
 * depend on it once per event: this copy is renewed in every child of
 * fork() (for the ULID, a child must draw its randomness afresh). */
static _Atomic pid_t cached_pid;
static pthread_once_t pid_once = PTHREAD_ONCE_INIT;

static void pid_after_fork(void)
{
	atomic_store(&cached_pid, getpid());
}

static void pid_init(void)
{
	atomic_store(&cached_pid, getpid());
	pthread_atfork(NULL, NULL, pid_after_fork);
}

static pid_t current_pid(void)
{
	pthread_once(&pid_once, pid_init);
	return atomic_load_explicit(&cached_pid, memory_order_relaxed);
}

/* Adds one to the 80-bit big-endian number; false when it wrapped. */
static bool rand_increment(uint8_t r[10])
{
	for (int i = 9; i >= 0; i--)
		if (++r[i] != 0)
			return true;
	return false;
}

/* 40 bits, big-endian, from b[0..5). */
static uint64_t be40(const uint8_t b[5])
{
	uint64_t v = 0;
	for (int i = 0; i < 5; i++)
		v = (v << 8) | b[i];
	return v;
}

static void ulid_encode(uint64_t ms, const uint8_t r[10], char out[SPOOL_ULID_LEN + 1])
{
	/* 128 bits: 48 of time (10 digits, the first holding the top 3 bits
	 * of a 50-bit field), then 80 of randomness (16 digits: two runs of
	 * 40 bits, 8 digits each) */
	for (int d = 0; d < 10; d++)
		out[d] = CROCKFORD[(ms >> (45 - 5 * d)) & 31];
	uint64_t hi = be40(r), lo = be40(r + 5);
	for (int d = 0; d < 8; d++) {
		out[10 + d] = CROCKFORD[(hi >> (35 - 5 * d)) & 31];
		out[18 + d] = CROCKFORD[(lo >> (35 - 5 * d)) & 31];
	}
	out[SPOOL_ULID_LEN] = '\0';
}

static int64_t now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* A ULID for the millisecond ms (see spool_ulid_new()). */
static int ulid_at(uint64_t ms, char out[SPOOL_ULID_LEN + 1])
{
	pid_t me = current_pid();
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

int spool_ulid_new(char out[SPOOL_ULID_LEN + 1])
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return ulid_at((uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000, out);
}

void spool_timestamp_format(int64_t us, char out[SPOOL_TIMESTAMP_LEN + 1])
{
	/* the date and time of the last second formatted, per thread: events
	 * come many to a second */
	static _Thread_local time_t last_sec = -1;
	static _Thread_local char last_text[20];
	time_t sec = (time_t)(us / 1000000);
	long frac = (long)(us % 1000000);
	if (frac < 0) {
		frac += 1000000;
		sec--;
	}
	if (sec != last_sec || last_sec == -1) {
		struct tm tm;
		gmtime_r(&sec, &tm);
		char date[24];
		strftime(date, sizeof(date), "%Y-%m-%dT%H:%M:%S", &tm);
		snprintf(last_text, sizeof(last_text), "%.19s", date);
		last_sec = sec;
	}
	memcpy(out, last_text, 19);
	out[19] = '.';
	for (int i = 25; i >= 20; i--) {
		out[i] = (char)('0' + frac % 10);
		frac /= 10;
	}
	out[26] = 'Z';
	out[27] = '\0';
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

/* The c_client block ("c_client" and its map), packed once per process
 * (and again when the fqdn given changes, as it does once its lookup
 * ends) and copied into each event as bytes.  The hostname and the cwd are
 * read once per process, as before. */
static pthread_mutex_t client_mu = PTHREAD_MUTEX_INITIALIZER;
static pid_t client_pid;
static struct spool_buf client_block;
static char *client_fqdn; /* the fqdn the block holds; NULL: none */

/* The packer's sink: msgpack-c's pack calls report no error to their
 * caller, so a failed append is remembered here. */
struct sink {
	struct spool_buf *b;
	bool failed;
};

static int buf_write(void *data, const char *p, size_t n)
{
	struct sink *k = data;
	struct spool_buf *b = k->b;
	if (k->failed)
		return -1;
	if (b->len + n < b->cap) { /* the room reserved up front */
		memcpy(b->data + b->len, p, n);
		b->len += n;
		b->data[b->len] = '\0';
		return 0;
	}
	if (spool_buf_append(b, p, n) != 0)
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

static bool same_fqdn(const char *a, const char *b)
{
	return a == b || (a && b && strcmp(a, b) == 0);
}

/* Packs the block for this process into client_block; under client_mu. */
static int client_block_pack(pid_t me, const char *fqdn)
{
	static pid_t facts_pid;
	static char host[256], cwd[PATH_MAX];
	if (facts_pid != me) {
		if (gethostname(host, sizeof(host)) != 0)
			host[0] = '\0';
		host[sizeof(host) - 1] = '\0';
		if (!getcwd(cwd, sizeof(cwd)))
			cwd[0] = '\0';
		facts_pid = me;
	}
	char *keep = NULL;
	if (fqdn && !(keep = strdup(fqdn)))
		return -ENOMEM;
	client_block.len = 0;
	msgpack_packer pk;
	struct sink sink = {&client_block, false};
	msgpack_packer_init(&pk, &sink, buf_write);
	pack_cstr(&pk, "c_client");
	msgpack_pack_map(&pk, fqdn ? 6 : 5);
	pack_cstr(&pk, "hostname");
	pack_cstr(&pk, host);
	if (fqdn) {
		pack_cstr(&pk, "fqdn");
		pack_cstr(&pk, fqdn);
	}
	pack_cstr(&pk, "pid");
	msgpack_pack_int64(&pk, (int64_t)me);
	pack_cstr(&pk, "process_name");
	pack_cstr(&pk, program_invocation_short_name);
	pack_cstr(&pk, "cwd");
	pack_cstr(&pk, cwd);
	pack_cstr(&pk, "library_version");
	pack_cstr(&pk, SPOOL_VERSION_STRING);
	free(client_fqdn);
	client_fqdn = keep;
	if (sink.failed) {
		client_pid = 0; /* packed again next time */
		return -ENOMEM;
	}
	client_pid = me;
	return 0;
}

/* Appends this process's c_client block to k. */
static void client_block_append(struct sink *k, const char *fqdn)
{
	pid_t me = current_pid();
	pthread_mutex_lock(&client_mu);
	if ((client_pid != me || !same_fqdn(fqdn, client_fqdn)) && client_block_pack(me, fqdn) != 0)
		k->failed = true;
	else
		buf_write(k, client_block.data, client_block.len);
	pthread_mutex_unlock(&client_mu);
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
	}
	/* one clock reading for the ULID and the timestamp */
	int64_t wall = now_us();
	if (!ev->client_event_id) {
		int rc = ulid_at((uint64_t)wall / 1000, ulid);
		if (rc)
			return rc;
	}
	char stamp[SPOOL_TIMESTAMP_LEN + 1];
	spool_timestamp_format(ev->timestamp_us ? ev->timestamp_us : wall, stamp);
	size_t mlen = ev->message_len == SIZE_MAX ? strlen(ev->message) : ev->message_len;
	/* room for the message, the fixed fields and a usual c_client block,
	 * so the packer writes without growing the buffer */
	if (mlen < SIZE_MAX / 2 && spool_buf_reserve(out, mlen + 1024) != 0)
		return -ENOMEM;

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
		if (!ev->no_client_block)
			client_block_append(&sink, ev->fqdn);
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
