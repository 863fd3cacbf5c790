/* store.c - the dedup set, the out file, the counters and the fault dice,
 * all behind one mutex. */
#include "store.h"

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

struct store {
	pthread_mutex_t lock;
	const struct rx_config *cfg;
	FILE *out;
	bool out_is_stdout;
	struct dedup *dedup;
	uint64_t next_id;
	uint32_t run_tag;
	uint64_t rng;
	long fail_first_left;
	long drop_first_left;
	long drop_skip_left;
	struct store_counts counts;
	_Atomic uint64_t request_bytes; /* outside the lock: per body piece */
	char last_user_agent[256];
	char last_idempotency_key[128];
	struct timespec started;
	struct timespec last_accepted; /* when an event was last stored new; 0: never */
};

static uint64_t rng_next(uint64_t *state)
{
	/* splitmix64 */
	uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/* Uniform in [0, 1). */
static double rng_unit(uint64_t *state)
{
	return (double)(rng_next(state) >> 11) * (1.0 / 9007199254740992.0);
}

int store_create(const struct rx_config *cfg, struct store **out)
{
	int rc = -ENOMEM;
	struct store *s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->cfg = cfg;
	pthread_mutex_init(&s->lock, NULL);
	clock_gettime(CLOCK_MONOTONIC, &s->started);
	s->next_id = 1;
	s->rng = (uint64_t)cfg->seed;
	s->fail_first_left = cfg->fail_first;
	s->drop_first_left = cfg->drop_after_store;
	s->drop_skip_left = cfg->drop_skip;

	/* A tag that differs between runs, so ids of two runs differ. */
	struct timespec now;
	clock_gettime(CLOCK_REALTIME, &now);
	uint64_t tag_seed = (uint64_t)now.tv_nsec ^
			    ((uint64_t)now.tv_sec << 20) ^ (uint64_t)getpid();
	s->run_tag = (uint32_t)rng_next(&tag_seed);

	rc = dedup_create((size_t)cfg->dedup_max, &s->dedup);
	if (rc)
		goto fail;
	if (cfg->out && strcmp(cfg->out, "-") == 0) {
		s->out = stdout;
		s->out_is_stdout = true;
	} else if (cfg->out) {
		s->out = fopen(cfg->out, "ae");
		if (!s->out) {
			rc = -errno;
			goto fail;
		}
	}
	if (s->out)
		setvbuf(s->out, NULL, _IOFBF, 1 << 20);
	*out = s;
	return 0;
fail:
	dedup_destroy(s->dedup);
	pthread_mutex_destroy(&s->lock);
	free(s);
	return rc;
}

int store_destroy(struct store *s)
{
	int rc = 0;
	if (!s)
		return 0;
	if (s->out) {
		if (fflush(s->out) != 0)
			rc = -EIO;
		if (!s->out_is_stdout && fclose(s->out) != 0)
			rc = -EIO;
	}
	dedup_destroy(s->dedup);
	pthread_mutex_destroy(&s->lock);
	free(s);
	return rc;
}

bool store_has_out(const struct store *s)
{
	return s->out != NULL;
}

int store_pick_fault(struct store *s)
{
	const struct rx_config *cfg = s->cfg;
	int status = 0;

	pthread_mutex_lock(&s->lock);
	if (s->fail_first_left > 0) {
		s->fail_first_left--;
		status = (int)cfg->fail_status;
	} else if (cfg->fail_rate > 0 && rng_unit(&s->rng) < cfg->fail_rate) {
		status = (int)cfg->fail_rate_status;
		if (status == 0)
			status = (rng_next(&s->rng) & 1) ? 503 : 500;
	}
	pthread_mutex_unlock(&s->lock);
	return status;
}

bool store_pick_drop(struct store *s)
{
	bool drop = false;
	pthread_mutex_lock(&s->lock);
	if (s->drop_first_left > 0 && s->drop_skip_left > 0) {
		s->drop_skip_left--;
	} else if (s->drop_first_left > 0) {
		s->drop_first_left--;
		drop = true;
	} else if (s->cfg->drop_rate > 0 &&
		   rng_unit(&s->rng) < s->cfg->drop_rate) {
		drop = true;
	}
	pthread_mutex_unlock(&s->lock);
	return drop;
}

int store_commit(struct store *s, struct store_event *ev, size_t n,
		 const char *lines)
{
	int rc = 0;
	/* Runs of consecutive new lines are written with one fwrite. */
	const char *run = NULL;
	size_t run_len = 0;

	pthread_mutex_lock(&s->lock);
	uint64_t accepted_before = s->counts.accepted;
	for (size_t i = 0; i < n; i++) {
		struct store_event *e = &ev[i];
		if (e->status != 0)
			continue;
		uint64_t existing;
		int found = e->no_dedup ? 0
					: dedup_lookup_or_insert(s->dedup, e->key,
								 s->next_id, &existing);
		if (found == 1) {
			e->duplicate = true;
			e->id = existing;
			s->counts.duplicates++;
			continue;
		}
		/* On ENOMEM the event is still stored, only not remembered:
		 * a later copy would be stored again. */
		e->duplicate = false;
		e->id = s->next_id++;
		s->counts.accepted++;
		if (!s->out)
			continue;
		const char *line = lines + e->line_off;
		if (run && run + run_len == line) {
			run_len += e->line_len;
			continue;
		}
		if (run && fwrite(run, 1, run_len, s->out) != run_len)
			rc = -EIO;
		run = line;
		run_len = e->line_len;
	}
	if (s->out) {
		if (run && fwrite(run, 1, run_len, s->out) != run_len)
			rc = -EIO;
		if (fflush(s->out) != 0)
			rc = -EIO;
	}
	if (rc) {
		/* Nothing of this call counts as stored: forget its new ids, so
		 * the client's retry is stored instead of acknowledged as a
		 * duplicate of an event the file never got. */
		s->counts.write_errors++;
		for (size_t i = 0; i < n; i++) {
			if (ev[i].status != 0 || ev[i].duplicate)
				continue;
			dedup_forget(s->dedup, ev[i].key);
			s->counts.accepted--;
		}
	} else if (s->counts.accepted != accepted_before) {
		clock_gettime(CLOCK_MONOTONIC, &s->last_accepted);
	}
	pthread_mutex_unlock(&s->lock);
	return rc;
}

size_t store_format_id(const struct store *s, uint64_t id,
		       char buf[STORE_ID_MAX])
{
	/* "ev-" + the run tag in hex + "-" + the sequence in decimal, by
	 * hand: a 1000-event answer formats 1000 of these. */
	static const char hex[] = "0123456789abcdef";
	char digits[24];
	size_t n = 0, k = 0;
	memcpy(buf, "ev-", 3);
	n = 3;
	for (int shift = 28; shift >= 0; shift -= 4)
		buf[n++] = hex[(s->run_tag >> shift) & 0xf];
	buf[n++] = '-';
	do {
		digits[k++] = (char)('0' + id % 10);
		id /= 10;
	} while (id);
	while (k)
		buf[n++] = digits[--k];
	buf[n] = '\0';
	return n;
}

static void copy_header(char *dst, size_t size, const char *src)
{
	/* Printable ASCII only, so /stats is always valid JSON. */
	size_t i = 0;
	if (!src)
		return;
	for (; src[i] && i + 1 < size; i++)
		dst[i] = (src[i] >= 0x20 && src[i] < 0x7f) ? src[i] : '?';
	dst[i] = '\0';
}

void store_tally(struct store *s, const struct store_tally *t)
{
	pthread_mutex_lock(&s->lock);
	struct store_counts *c = &s->counts;
	c->http_requests++;
	if (t->api) {
		c->requests++;
		if (t->batch)
			c->batches++;
		else
			c->singles++;
		copy_header(s->last_user_agent, sizeof(s->last_user_agent),
			    t->user_agent);
	}
	if (t->idempotency_key) {
		c->idempotency_keys++;
		copy_header(s->last_idempotency_key,
			    sizeof(s->last_idempotency_key),
			    t->idempotency_val);
	}
	c->gzip_requests += t->gzip;
	c->faults += t->fault;
	c->dropped += t->dropped;
	c->bytes_in += t->bytes_in;
	c->bytes_inflated += t->bytes_inflated;
	c->rejected += t->rejected;
	c->transient += t->transient;
	if (t->status >= 100 && t->status < 600)
		c->status[t->status]++;
	pthread_mutex_unlock(&s->lock);
}

void store_request_open(struct store *s, uint64_t head)
{
	atomic_fetch_add_explicit(&s->request_bytes, head,
				  memory_order_relaxed);
	pthread_mutex_lock(&s->lock);
	if (++s->counts.requests_open > s->counts.requests_open_most)
		s->counts.requests_open_most = s->counts.requests_open;
	pthread_mutex_unlock(&s->lock);
}

void store_request_closed(struct store *s)
{
	pthread_mutex_lock(&s->lock);
	assert(s->counts.requests_open > 0);
	s->counts.requests_open--;
	pthread_mutex_unlock(&s->lock);
}

void store_count_wire(struct store *s, uint64_t n)
{
	atomic_fetch_add_explicit(&s->request_bytes, n, memory_order_relaxed);
}

/* Milliseconds from the store's start to ts. */
static long long ms_since_start(const struct store *s, const struct timespec *ts)
{
	return (long long)(ts->tv_sec - s->started.tv_sec) * 1000 +
	       (ts->tv_nsec - s->started.tv_nsec) / 1000000;
}

char *store_stats_json(struct store *s)
{
	struct store_counts c;
	size_t unique;
	char ua[sizeof(s->last_user_agent)];
	char ik[sizeof(s->last_idempotency_key)];
	struct timespec now;

	pthread_mutex_lock(&s->lock);
	c = s->counts;
	c.request_bytes = atomic_load_explicit(&s->request_bytes,
					       memory_order_relaxed);
	unique = dedup_count(s->dedup);
	struct timespec last = s->last_accepted;
	memcpy(ua, s->last_user_agent, sizeof(ua));
	memcpy(ik, s->last_idempotency_key, sizeof(ik));
	pthread_mutex_unlock(&s->lock);

	clock_gettime(CLOCK_MONOTONIC, &now);
	long long uptime_ms = ms_since_start(s, &now);
	long long last_ms = last.tv_sec || last.tv_nsec ? ms_since_start(s, &last) : -1;

	json_t *status = json_object();
	for (int i = 100; i < 600 && status; i++) {
		if (!c.status[i])
			continue;
		char key[8];
		snprintf(key, sizeof(key), "%d", i);
		json_object_set_new(status, key,
				    json_integer((json_int_t)c.status[i]));
	}
#define I(v) json_integer((json_int_t)(v))
	json_t *root = json_pack(
		"{s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o,"
		" s:o, s:o, s:o, s:o, s:o, s:s, s:s, s:I}",
		"requests", I(c.requests), "accepted", I(c.accepted),
		"duplicates", I(c.duplicates), "rejected", I(c.rejected),
		"transient", I(c.transient), "batches", I(c.batches),
		"singles", I(c.singles), "bytes_in", I(c.bytes_in),
		"bytes_inflated", I(c.bytes_inflated), "gzip_requests",
		I(c.gzip_requests), "faults", I(c.faults), "dropped",
		I(c.dropped), "idempotency_keys", I(c.idempotency_keys),
		"write_errors", I(c.write_errors), "http_requests",
		I(c.http_requests), "unique_ids", I(unique), "status",
		status ? status : json_object(), "last_user_agent", ua,
		"last_idempotency_key", ik, "uptime_ms", (json_int_t)uptime_ms);
	if (root &&
	    (json_object_set_new(root, "requests_open", I(c.requests_open)) ||
	     json_object_set_new(root, "requests_open_most",
				 I(c.requests_open_most)) ||
	     json_object_set_new(root, "request_bytes",
				 I(c.request_bytes)) ||
	     json_object_set_new(root, "last_accepted_ms",
				 json_integer((json_int_t)last_ms)))) {
		json_decref(root);
		root = NULL;
	}
#undef I
	if (!root)
		return NULL;
	char *text = json_dumps(root, JSON_COMPACT);
	json_decref(root);
	return text;
}
