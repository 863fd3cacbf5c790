/* test_spool_event.c — the spooled event: ULIDs (format, order, unique
 * across threads and a fork), timestamps, the msgpack map and its fields,
 * and the mlog command writing it into a real spool. */
#include <check.h>
#include <errno.h>
#include <msgpack.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check_main.h"
#include "codec/event.h"

#include "testutil.h"

static const char CROCK[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";

static void assert_ulid(const char *id)
{
	ck_assert_uint_eq(strlen(id), 26);
	ck_assert_msg(id[0] <= '7', "first ULID digit %c", id[0]);
	for (int i = 0; i < 26; i++)
		ck_assert_msg(strchr(CROCK, id[i]) != NULL, "bad ULID character %c in %s", id[i], id);
}

START_TEST(test_ulid_format_and_order)
{
	char prev[27] = "", id[27];
	for (int i = 0; i < 100000; i++) {
		ck_assert_int_eq(spool_ulid_new(id), 0);
		if (i < 5)
			assert_ulid(id);
		ck_assert_msg(strcmp(prev, id) < 0, "not increasing: %s then %s", prev, id);
		memcpy(prev, id, sizeof(id));
	}
	/* the time part is now: the first 10 characters encode milliseconds */
	uint64_t ms = 0;
	for (int i = 0; i < 10; i++)
		ms = ms * 32 + (uint64_t)(strchr(CROCK, id[i]) - CROCK);
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	uint64_t wall = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
	ck_assert_msg(ms <= wall + 1000 && ms + 60000 > wall, "ULID time %llu vs now %llu",
		      (unsigned long long)ms, (unsigned long long)wall);
}
END_TEST

#define NTHREADS 4
#define PER_THREAD 20000

static char (*thread_ids)[27];

static void *ulid_thread(void *arg)
{
	size_t base = (size_t)(uintptr_t)arg * PER_THREAD;
	for (size_t i = 0; i < PER_THREAD; i++)
		if (spool_ulid_new(thread_ids[base + i]) != 0)
			return (void *)1;
	return NULL;
}

static int cmp_id(const void *a, const void *b)
{
	return strcmp(a, b);
}

START_TEST(test_ulid_unique_across_threads_and_fork)
{
	tu_ck_forking();
	size_t total = NTHREADS * PER_THREAD * 2;
	thread_ids = calloc(total, 27);
	ck_assert_ptr_nonnull(thread_ids);
	int pfd[2];
	ck_assert_int_eq(pipe(pfd), 0);
	spool_ulid_new(thread_ids[0]); /* the parent has state before the fork */
	pid_t pid = tu_fork();
	if (pid == 0) {
		close(pfd[0]);
		char id[27];
		for (int i = 0; i < NTHREADS * PER_THREAD; i++) {
			if (spool_ulid_new(id) != 0 || tu_write_all(pfd[1], id, 27) != 0)
				_exit(1);
		}
		_exit(0);
	}
	close(pfd[1]);
	pthread_t th[NTHREADS];
	for (uintptr_t t = 0; t < NTHREADS; t++)
		ck_assert_int_eq(pthread_create(&th[t], NULL, ulid_thread, (void *)t), 0);
	for (int t = 0; t < NTHREADS; t++) {
		void *r;
		pthread_join(th[t], &r);
		ck_assert_ptr_null(r);
	}
	for (size_t i = 0; i < NTHREADS * PER_THREAD; i++)
		ck_assert_int_eq(tu_read_full(pfd[0], thread_ids[NTHREADS * PER_THREAD + i], 27), 0);
	close(pfd[0]);
	ck_assert_int_eq(tu_wait(pid), 0);
	qsort(thread_ids, total, 27, cmp_id);
	for (size_t i = 1; i < total; i++)
		ck_assert_msg(strcmp(thread_ids[i - 1], thread_ids[i]) != 0, "duplicate ULID %s",
			      thread_ids[i]);
	free(thread_ids);
}
END_TEST

START_TEST(test_timestamp_format)
{
	char ts[SPOOL_TIMESTAMP_LEN + 1];
	spool_timestamp_format(0, ts);
	ck_assert_str_eq(ts, "1970-01-01T00:00:00.000000Z");
	spool_timestamp_format(1795962561123456LL, ts);
	ck_assert_str_eq(ts, "2026-11-29T14:29:21.123456Z");
	spool_timestamp_format(-1, ts);
	ck_assert_str_eq(ts, "1969-12-31T23:59:59.999999Z");
	/* the formatted second is kept between calls: a new second, and a
	 * step back, each read right */
	spool_timestamp_format(1795962561999999LL, ts);
	ck_assert_str_eq(ts, "2026-11-29T14:29:21.999999Z");
	spool_timestamp_format(1795962562000000LL, ts);
	ck_assert_str_eq(ts, "2026-11-29T14:29:22.000000Z");
	spool_timestamp_format(1795962561000007LL, ts);
	ck_assert_str_eq(ts, "2026-11-29T14:29:21.000007Z");
}
END_TEST

/* Finds key in a msgpack map object. */
static const msgpack_object *get(const msgpack_object *map, const char *key)
{
	if (map->type != MSGPACK_OBJECT_MAP)
		return NULL;
	for (uint32_t i = 0; i < map->via.map.size; i++) {
		const msgpack_object *k = &map->via.map.ptr[i].key;
		if (k->type == MSGPACK_OBJECT_STR && k->via.str.size == strlen(key) &&
		    memcmp(k->via.str.ptr, key, k->via.str.size) == 0)
			return &map->via.map.ptr[i].val;
	}
	return NULL;
}

static void assert_str(const msgpack_object *o, const char *want)
{
	ck_assert_ptr_nonnull(o);
	ck_assert_int_eq(o->type, MSGPACK_OBJECT_STR);
	ck_assert_uint_eq(o->via.str.size, strlen(want));
	ck_assert(memcmp(o->via.str.ptr, want, o->via.str.size) == 0);
}

START_TEST(test_encode_fields)
{
	const char *tags[] = {"dome", "weather", NULL};
	struct spool_kv kv[] = {
		{.key = "target", .type = SPOOL_KV_STR, .s = "M13"},
		{.key = "duration_seconds", .type = SPOOL_KV_INT, .i = 18},
		{.key = "fwhm_arcseconds", .type = SPOOL_KV_DOUBLE, .d = 3.4},
		{.key = "ok", .type = SPOOL_KV_BOOL, .b = true},
	};
	struct spool_event ev = {
		.message = "glint\0after NUL",
		.message_len = 15,
		.severity = SPOOL_SEV_WARN,
		.title = "Temporary satellite glint alert",
		.tags = tags,
		.ttl_seconds = 120,
		.metadata = kv,
		.nmetadata = 4,
		.timestamp_us = 1795962561123456LL,
	};
	struct spool_buf b = {0};
	char id[27];
	ck_assert_int_eq(spool_event_encode(&ev, &b, id), 0);
	assert_ulid(id);
	msgpack_unpacked u;
	msgpack_unpacked_init(&u);
	size_t off = 0;
	ck_assert_int_eq(msgpack_unpack_next(&u, b.data, b.len, &off), MSGPACK_UNPACK_SUCCESS);
	ck_assert_uint_eq(off, b.len);
	const msgpack_object *m = &u.data;
	const msgpack_object *msg = get(m, "message");
	ck_assert_ptr_nonnull(msg);
	ck_assert_uint_eq(msg->via.str.size, 15);
	ck_assert(memcmp(msg->via.str.ptr, "glint\0after NUL", 15) == 0);
	assert_str(get(m, "severity"), "warn");
	assert_str(get(m, "title"), "Temporary satellite glint alert");
	const msgpack_object *t = get(m, "tags");
	ck_assert_ptr_nonnull(t);
	ck_assert_uint_eq(t->via.array.size, 2);
	assert_str(&t->via.array.ptr[1], "weather");
	ck_assert_int_eq(get(m, "ttl_seconds")->via.u64, 120);
	assert_str(get(m, "client_event_id"), id);
	assert_str(get(m, "timestamp"), "2026-11-29T14:29:21.123456Z");
	const msgpack_object *md = get(m, "metadata");
	assert_str(get(md, "target"), "M13");
	ck_assert_int_eq(get(md, "duration_seconds")->via.u64, 18);
	ck_assert(get(md, "fwhm_arcseconds")->via.f64 == 3.4);
	ck_assert(get(md, "ok")->via.boolean);
	const msgpack_object *cc = get(md, "c_client");
	ck_assert_ptr_nonnull(cc);
	ck_assert_int_eq(get(cc, "pid")->via.u64, getpid());
	assert_str(get(cc, "library_version"), SPOOL_VERSION_STRING);
	ck_assert_ptr_nonnull(get(cc, "hostname"));
	ck_assert_ptr_nonnull(get(cc, "cwd"));
	ck_assert_ptr_nonnull(get(cc, "process_name"));
	msgpack_unpacked_destroy(&u);

	/* the same event, JSON as the agent sends it */
	struct spool_buf j = {0};
	ck_assert_int_eq(spool_event_to_json(b.data, b.len, NULL, &j), 0);
	ck_assert_ptr_nonnull(strstr(j.data, "\"message\":\"glint\\u0000after NUL\""));
	ck_assert_ptr_nonnull(strstr(j.data, "\"tags\":[\"dome\",\"weather\"]"));
	spool_buf_free(&j);

	/* no client block, no metadata: a 4-field map */
	spool_buf_free(&b);
	struct spool_event bare = {.message = "", .message_len = SIZE_MAX, .no_client_block = true,
				   .client_event_id = id};
	ck_assert_int_eq(spool_event_encode(&bare, &b, NULL), 0);
	ck_assert_uint_eq((unsigned char)b.data[0], 0x84);
	spool_buf_free(&b);
}
END_TEST

/* The c_client block of one encoded event: its pid and fqdn (NULL when
 * it has none). */
static void client_block_of(const char *fqdn, int64_t *pid, char *fqdn_out, size_t fqdn_len)
{
	struct spool_event ev = {.message = "m", .message_len = SIZE_MAX, .fqdn = fqdn};
	struct spool_buf b = {0};
	ck_assert_int_eq(spool_event_encode(&ev, &b, NULL), 0);
	msgpack_unpacked u;
	msgpack_unpacked_init(&u);
	size_t off = 0;
	ck_assert_int_eq(msgpack_unpack_next(&u, b.data, b.len, &off), MSGPACK_UNPACK_SUCCESS);
	const msgpack_object *cc = get(get(&u.data, "metadata"), "c_client");
	ck_assert_ptr_nonnull(cc);
	*pid = (int64_t)get(cc, "pid")->via.u64;
	const msgpack_object *f = get(cc, "fqdn");
	fqdn_out[0] = '\0';
	if (f)
		snprintf(fqdn_out, fqdn_len, "%.*s", (int)f->via.str.size, f->via.str.ptr);
	ck_assert_uint_eq(get(cc, "fqdn") ? 6 : 5, cc->via.map.size);
	msgpack_unpacked_destroy(&u);
	spool_buf_free(&b);
}

/* The block is packed once per process and copied: it still follows the
 * fqdn given with each event, and a child of fork() writes its own pid. */
START_TEST(test_client_block_follows_fqdn_and_fork)
{
	int64_t pid;
	char fq[64];
	client_block_of(NULL, &pid, fq, sizeof(fq));
	ck_assert_int_eq(pid, getpid());
	ck_assert_str_eq(fq, "");
	client_block_of("a.example.org", &pid, fq, sizeof(fq));
	ck_assert_str_eq(fq, "a.example.org");
	client_block_of("b.example.org", &pid, fq, sizeof(fq));
	ck_assert_str_eq(fq, "b.example.org");
	client_block_of(NULL, &pid, fq, sizeof(fq));
	ck_assert_str_eq(fq, "");
	pid_t child = fork();
	ck_assert_int_ne(child, -1);
	if (child == 0) {
		client_block_of(NULL, &pid, fq, sizeof(fq));
		_exit(pid == getpid() ? 0 : 1);
	}
	ck_assert_int_eq(tu_wait(child), 0);
	client_block_of(NULL, &pid, fq, sizeof(fq));
	ck_assert_int_eq(pid, getpid());
}
END_TEST

/* spool_event_to_json_find() writes what spool_event_to_json() writes and
 * reports the top-level member as spool_event_get_str() finds it. */
START_TEST(test_to_json_find_matches_get_str)
{
	struct spool_kv kv[] = {{.key = "client_event_id", .type = SPOOL_KV_STR, .s = "nested"}};
	struct spool_event ev = {.message = "m", .message_len = SIZE_MAX, .metadata = kv,
				 .nmetadata = 1};
	struct spool_buf b = {0}, j1 = {0}, j2 = {0};
	char id[27];
	ck_assert_int_eq(spool_event_encode(&ev, &b, id), 0);
	struct spool_json_extra x = {.flags = SPOOL_JSON_SEQ, .spool_seq = 7};
	const char *v = NULL, *w = NULL;
	size_t vl = 0, wl = 0;
	ck_assert_int_eq(spool_event_to_json(b.data, b.len, &x, &j1), 0);
	ck_assert_int_eq(spool_event_to_json_find(b.data, b.len, &x, &j2, "client_event_id", &v, &vl), 0);
	ck_assert_str_eq(j1.data, j2.data);
	ck_assert_int_eq(spool_event_get_str(b.data, b.len, "client_event_id", &w, &wl), 0);
	ck_assert_ptr_eq(v, w);
	ck_assert_uint_eq(vl, 26);
	ck_assert(memcmp(v, id, 26) == 0);
	/* absent: NULL */
	j2.len = 0;
	ck_assert_int_eq(spool_event_to_json_find(b.data, b.len, NULL, &j2, "title", &v, &vl), 0);
	ck_assert_ptr_null(v);
	ck_assert_uint_eq(vl, 0);
	spool_buf_free(&b);
	spool_buf_free(&j1);
	spool_buf_free(&j2);
}
END_TEST

START_TEST(test_encode_rejects_bad_input)
{
	struct spool_buf b = {0};
	struct spool_event ev = {.message = "x", .message_len = SIZE_MAX};
	ev.severity = 5;
	ck_assert_int_eq(spool_event_encode(&ev, &b, NULL), -EINVAL);
	ev.severity = SPOOL_SEV_INFO;
	ev.ttl_seconds = -1;
	ck_assert_int_eq(spool_event_encode(&ev, &b, NULL), -EINVAL);
	ev.ttl_seconds = 0;
	ev.client_event_id = "not-a-ulid";
	ck_assert_int_eq(spool_event_encode(&ev, &b, NULL), -EINVAL);
	ev.client_event_id = "01M879J1F5969ASFG2G7Q39WZI"; /* I is not Crockford */
	ck_assert_int_eq(spool_event_encode(&ev, &b, NULL), -EINVAL);
	ev.client_event_id = NULL;
	struct spool_kv kv = {.key = NULL, .type = SPOOL_KV_STR, .s = "v"};
	ev.metadata = &kv;
	ev.nmetadata = 1;
	ck_assert_int_eq(spool_event_encode(&ev, &b, NULL), -EINVAL);
	ev.nmetadata = 0;
	ev.message = NULL;
	ck_assert_int_eq(spool_event_encode(&ev, &b, NULL), -EINVAL);
	ck_assert_uint_eq(b.len, 0); /* nothing half-written */
	spool_buf_free(&b);
}
END_TEST

/* The mlog command spools what it is given, intact, one event per line of
 * standard input with '-', and refuses bad options with status 2. */
START_TEST(test_mlog_command)
{
	const char *build = getenv("SPOOL_TEST_BUILD_DIR");
	ck_assert_msg(build != NULL, "SPOOL_TEST_BUILD_DIR not set");
	char dir[256], cmd[2048];
	tu_mkdtemp(dir, sizeof(dir), "mlog");
	snprintf(cmd, sizeof(cmd),
		 "%s/tools/mlog --spool %s/s -s error -t ccd -t camera --title Cooling --ttl 30 "
		 "-m loop=2 CCD cooling loop failed to settle",
		 build, dir);
	ck_assert_int_eq(WEXITSTATUS(system(cmd)), 0);
	snprintf(cmd, sizeof(cmd), "printf 'first\\nsecond\\n' | %s/tools/mlog --spool %s/s -t app -",
		 build, dir);
	ck_assert_int_eq(WEXITSTATUS(system(cmd)), 0);
	snprintf(cmd, sizeof(cmd), "%s/tools/mlog --spool %s/s --ttl 0 x 2>/dev/null", build, dir);
	ck_assert_int_eq(WEXITSTATUS(system(cmd)), 2);
	snprintf(cmd, sizeof(cmd), "%s/tools/mlog --spool %s/s -s shout x 2>/dev/null", build, dir);
	ck_assert_int_eq(WEXITSTATUS(system(cmd)), 2);

	char sdir[300];
	snprintf(sdir, sizeof(sdir), "%s/s", dir);
	struct spool_options o;
	tu_opts(&o, SPOOL_SYNC);
	struct spool *s = tu_open(sdir, &o);
	struct tu_rec *r;
	size_t n = tu_read_all(s, false, &r);
	ck_assert_uint_eq(n, 3);
	ck_assert_int_eq(r[0].severity, SPOOL_SEV_ERROR);
	const char *val;
	size_t vlen;
	ck_assert_int_eq(spool_event_get_str(r[0].data, r[0].len, "message", &val, &vlen), 0);
	ck_assert_uint_eq(vlen, strlen("CCD cooling loop failed to settle"));
	ck_assert(memcmp(val, "CCD cooling loop failed to settle", vlen) == 0);
	ck_assert_int_eq(spool_event_get_str(r[0].data, r[0].len, "title", &val, &vlen), 0);
	ck_assert(vlen == 7 && memcmp(val, "Cooling", 7) == 0);
	ck_assert_int_eq(spool_event_get_str(r[2].data, r[2].len, "message", &val, &vlen), 0);
	ck_assert(vlen == 6 && memcmp(val, "second", 6) == 0);
	struct spool_buf j = {0};
	ck_assert_int_eq(spool_event_to_json(r[0].data, r[0].len, NULL, &j), 0);
	ck_assert_ptr_nonnull(strstr(j.data, "\"tags\":[\"ccd\",\"camera\"]"));
	ck_assert_ptr_nonnull(strstr(j.data, "\"ttl_seconds\":30"));
	ck_assert_ptr_nonnull(strstr(j.data, "\"loop\":\"2\""));
	ck_assert_ptr_nonnull(strstr(j.data, "\"process_name\":\"mlog\""));
	spool_buf_free(&j);
	tu_recs_free(r, n);
	ck_assert_int_eq(spool_close(s), 0);

	/* spoolctl status reports the same backlog */
	char out[4096];
	snprintf(cmd, sizeof(cmd), "%s/tools/spoolctl --spool %s status --json", build, sdir);
	ck_assert_int_eq(tu_capture(cmd, out, sizeof(out)), 0);
	ck_assert_msg(strstr(out, "\"pending\":3,") != NULL, "status: %s", out);
	ck_assert_msg(strstr(out, "\"appended_total\":3,") != NULL, "status: %s", out);
	ck_assert_msg(strstr(out, "\"agent_running\":false") != NULL, "status: %s", out);
	snprintf(cmd, sizeof(cmd), "%s/tools/spoolctl --spool %s/none status 2>/dev/null", build, dir);
	ck_assert_int_eq(WEXITSTATUS(system(cmd)), 1);
	tu_rmrf(dir);
}
END_TEST

static Suite *event_suite(void)
{
	Suite *su = suite_create("event");
	TCase *tc = tcase_create("event");
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_ulid_format_and_order);
	tcase_add_test(tc, test_ulid_unique_across_threads_and_fork);
	tcase_add_test(tc, test_timestamp_format);
	tcase_add_test(tc, test_encode_fields);
	tcase_add_test(tc, test_to_json_find_matches_get_str);
	tcase_add_test(tc, test_client_block_follows_fqdn_and_fork);
	tcase_add_test(tc, test_encode_rejects_bad_input);
	tcase_add_test(tc, test_mlog_command);
	suite_add_tcase(su, tc);
	return su;
}

int main(void)
{
	return tc_run_forked(event_suite());
}
