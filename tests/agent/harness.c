/* harness.c — see harness.h. */
#include <check.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <msgpack.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "check_main.h"
#include "harness.h"

double th_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

const char *th_prog(const char *env)
{
	const char *p = getenv(env);
	ck_assert_msg(p && *p, "%s is not set (run through meson test)", env);
	return p;
}

void th_dir_make(struct th_dir *d, const char *tag)
{
	memset(d, 0, sizeof(*d));
	char name[96];
	snprintf(name, sizeof(name), "agent-test-%s", tag);
	/* removed by the runner if the test fails before th_dir_remove() */
	int rc = tc_scratch_dir(d->root, sizeof(d->root), name);
	ck_assert_msg(rc == 0, "scratch folder for %s: %s", tag, strerror(-rc));
	snprintf(d->spool, sizeof(d->spool), "%s/spool", d->root);
	snprintf(d->out, sizeof(d->out), "%s/out.jsonl", d->root);
	snprintf(d->config, sizeof(d->config), "%s/agent.yaml", d->root);
	snprintf(d->log, sizeof(d->log), "%s/agent.log", d->root);
}

void th_dir_remove(struct th_dir *d)
{
	if (getenv("AGENT_TEST_KEEP"))
		return;
	tc_remove_tree(d->root);
}

/* ---- events ---- */

static void ulid(char out[27], uint64_t n)
{
	static const char alpha[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
	static uint64_t run;
	if (!run)
		run = ((uint64_t)getpid() << 32) ^ (uint64_t)time(NULL) ^ ((uint64_t)th_now() << 20);
	out[0] = '0';
	uint64_t a = run;
	for (int i = 1; i <= 12; i++, a >>= 5)
		out[i] = alpha[a & 31];
	uint64_t b = n;
	for (int i = 25; i >= 13; i--, b >>= 5)
		out[i] = alpha[b & 31];
	out[26] = '\0';
}

static void pack_str(msgpack_packer *pk, const char *s)
{
	msgpack_pack_str_with_body(pk, s, strlen(s));
}

static uint64_t id_counter;

static void pack_event_sev(msgpack_sbuffer *sb, const char *text, int sev);

static void pack_event(msgpack_sbuffer *sb, const char *text)
{
	pack_event_sev(sb, text, SPOOL_SEV_INFO);
}

static void pack_event_sev(msgpack_sbuffer *sb, const char *text, int sev)
{
	msgpack_packer pk;
	msgpack_sbuffer_clear(sb);
	msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
	char id[27], ts[40];
	ulid(id, ++id_counter + ((uint64_t)getpid() << 40));
	struct timespec now;
	clock_gettime(CLOCK_REALTIME, &now);
	struct tm tm;
	gmtime_r(&now.tv_sec, &tm);
	strftime(ts, 24, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(ts + 19, sizeof(ts) - 19, ".%06ldZ", now.tv_nsec / 1000);
	msgpack_pack_map(&pk, 5);
	pack_str(&pk, "message");
	pack_str(&pk, text);
	pack_str(&pk, "severity");
	pack_str(&pk, spool_severity_name(sev));
	pack_str(&pk, "client_event_id");
	pack_str(&pk, id);
	pack_str(&pk, "timestamp");
	pack_str(&pk, ts);
	pack_str(&pk, "metadata");
	msgpack_pack_map(&pk, 1);
	pack_str(&pk, "c_client");
	msgpack_pack_map(&pk, 2);
	pack_str(&pk, "hostname");
	pack_str(&pk, "test");
	pack_str(&pk, "pid");
	msgpack_pack_int64(&pk, getpid());
}

static struct spool *open_sync(const char *dir)
{
	struct spool_options o;
	spool_options_init(&o);
	o.durability = SPOOL_SYNC;
	struct spool *s = NULL;
	char err[512];
	int rc = spool_open(dir, &o, &s, err, sizeof(err));
	ck_assert_msg(rc == 0, "spool_open %s: %s", dir, err);
	return s;
}

void th_fill(const char *spool, uint64_t first, uint64_t n, unsigned poison_every)
{
	struct spool *s = open_sync(spool);
	msgpack_sbuffer sb;
	msgpack_sbuffer_init(&sb);
	enum { CHUNK = 1000 };
	struct spool_input *in = calloc(CHUNK, sizeof(*in));
	char **bufs = calloc(CHUNK, sizeof(*bufs));
	for (uint64_t done = 0; done < n;) {
		size_t k = n - done < CHUNK ? (size_t)(n - done) : CHUNK;
		for (size_t i = 0; i < k; i++) {
			uint64_t num = first + done + i;
			char text[64];
			if (poison_every && num % poison_every == 0)
				snprintf(text, sizeof(text), "msg %llu POISON", (unsigned long long)num);
			else
				snprintf(text, sizeof(text), "msg %llu", (unsigned long long)num);
			pack_event(&sb, text);
			bufs[i] = malloc(sb.size);
			memcpy(bufs[i], sb.data, sb.size);
			in[i] = (struct spool_input){SPOOL_SEV_INFO, bufs[i], sb.size};
		}
		int rc = spool_append_many(s, in, k);
		ck_assert_msg(rc == 0, "append: %s", spool_strerror(rc));
		for (size_t i = 0; i < k; i++)
			free(bufs[i]);
		done += k;
	}
	free(in);
	free(bufs);
	msgpack_sbuffer_destroy(&sb);
	ck_assert_int_eq(spool_close(s), 0);
}

void th_fill_sev(const char *spool, uint64_t first, uint64_t n, int (*sev_of)(uint64_t num))
{
	struct spool *s = open_sync(spool);
	msgpack_sbuffer sb;
	msgpack_sbuffer_init(&sb);
	for (uint64_t num = first; num < first + n; num++) {
		char text[64];
		snprintf(text, sizeof(text), "msg %llu", (unsigned long long)num);
		int sev = sev_of(num);
		pack_event_sev(&sb, text, sev);
		int rc = spool_append(s, sev, sb.data, sb.size);
		ck_assert_msg(rc == 0, "append: %s", spool_strerror(rc));
	}
	msgpack_sbuffer_destroy(&sb);
	spool_close(s);
}

void th_fill_text(const char *spool, const char *text)
{
	struct spool *s = open_sync(spool);
	msgpack_sbuffer sb;
	msgpack_sbuffer_init(&sb);
	pack_event(&sb, text);
	ck_assert_int_eq(spool_append(s, SPOOL_SEV_INFO, sb.data, sb.size), 0);
	msgpack_sbuffer_destroy(&sb);
	ck_assert_int_eq(spool_close(s), 0);
}

struct spool_stats th_stats(const char *spool)
{
	struct spool *s = open_sync(spool);
	struct spool_stats st;
	ck_assert_int_eq(spool_stats(s, &st), 0);
	spool_close(s);
	return st;
}

size_t th_dead(const char *spool, int *first_status, char *reason, size_t rlen)
{
	struct spool *s = open_sync(spool);
	struct spool_batch *b;
	ck_assert_int_eq(spool_read_dead(s, 0, 0, &b), 0);
	size_t n = spool_batch_count(b);
	if (n && first_status)
		*first_status = spool_batch_records(b)[0].dead_status;
	if (reason && rlen)
		snprintf(reason, rlen, "%s", n ? spool_batch_records(b)[0].dead_reason : "");
	spool_batch_release(b);
	spool_close(s);
	return n;
}

void th_meta(const char *spool, const char *key, char *buf, size_t len)
{
	struct spool *s = open_sync(spool);
	size_t l = len - 1;
	int rc = spool_meta_get(s, key, buf, &l);
	buf[rc == 0 ? l : 0] = '\0';
	spool_close(s);
}

/* ---- processes ---- */

static pid_t spawn(const char *const *argv, const char *out_path, const char *err_path)
{
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		if (out_path) {
			int fd = open(out_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
			if (fd >= 0)
				dup2(fd, 1);
		}
		if (err_path) {
			int fd = open(err_path, O_WRONLY | O_CREAT | O_APPEND, 0600);
			if (fd >= 0)
				dup2(fd, 2);
		}
		execv(argv[0], (char *const *)argv);
		_exit(127);
	}
	return pid;
}

static int wait_for(pid_t pid, double timeout)
{
	double end = th_now() + timeout;
	int st;
	for (;;) {
		pid_t r = waitpid(pid, &st, WNOHANG);
		if (r == pid)
			return WIFEXITED(st) ? WEXITSTATUS(st) : -WTERMSIG(st);
		if (th_now() > end) {
			kill(pid, SIGKILL);
			waitpid(pid, &st, 0);
			ck_abort_msg("process %ld did not exit within %.0f s", (long)pid, timeout);
		}
		usleep(5000);
	}
}

void th_rx_start(struct th_rx *rx, const char *out, ...)
{
	const char *argv[64];
	char portfile[128];
	snprintf(portfile, sizeof(portfile), "/tmp/agent-test-port-%ld-%ld", (long)getpid(), (long)th_now());
	unlink(portfile);
	size_t n = 0;
	argv[n++] = th_prog("MLOG_RECEIVER");
	argv[n++] = "--listen";
	argv[n++] = "127.0.0.1";
	argv[n++] = "--port";
	argv[n++] = "0";
	argv[n++] = "--port-file";
	argv[n++] = portfile;
	if (out) {
		argv[n++] = "--out";
		argv[n++] = out;
	}
	va_list ap;
	va_start(ap, out);
	const char *a;
	while ((a = va_arg(ap, const char *)) != NULL && n < 62)
		argv[n++] = a;
	va_end(ap);
	argv[n] = NULL;
	rx->pid = spawn(argv, "/dev/null", NULL);
	double end = th_now() + 20;
	FILE *f = NULL;
	while (!(f = fopen(portfile, "r")) && th_now() < end)
		usleep(5000);
	ck_assert_msg(f != NULL, "mlog-receiver did not start");
	ck_assert_int_eq(fscanf(f, "%d", &rx->port), 1);
	fclose(f);
	unlink(portfile);
	snprintf(rx->url, sizeof(rx->url), "http://127.0.0.1:%d", rx->port);
}

void th_rx_stop(struct th_rx *rx)
{
	if (rx->pid > 0) {
		kill(rx->pid, SIGTERM);
		wait_for(rx->pid, 20);
	}
	rx->pid = 0;
}

static size_t collect(char *p, size_t size, size_t n, void *ud)
{
	struct {
		char *data;
		size_t len;
	} *b = ud;
	char *q = realloc(b->data, b->len + size * n + 1);
	if (!q)
		return 0;
	memcpy(q + b->len, p, size * n);
	b->data = q;
	b->len += size * n;
	q[b->len] = '\0';
	return size * n;
}

json_t *th_stats_url(const char *base_url)
{
	struct {
		char *data;
		size_t len;
	} b = {0};
	char url[128];
	snprintf(url, sizeof(url), "%s/stats", base_url);
	CURL *h = curl_easy_init();
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, collect);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, &b);
	curl_easy_setopt(h, CURLOPT_TIMEOUT, 10L);
	CURLcode rc = curl_easy_perform(h);
	curl_easy_cleanup(h);
	ck_assert_msg(rc == CURLE_OK, "GET /stats: %s", curl_easy_strerror(rc));
	const char *body = b.data ? b.data : "";
	json_t *j = json_loads(body, 0, NULL);
	/* docs/mlog-receiver.md promises /stats is never faulted, so a body
	 * that is not JSON is a failure of the receiver */
	ck_assert_msg(j != NULL,
		      "GET /stats answered %zu bytes that are not JSON ('%.*s'), though "
		      "docs/mlog-receiver.md says /stats is never faulted",
		      b.len, (int)strcspn(body, "\n"), body);
	free(b.data);
	return j;
}

json_t *th_rx_stats(const struct th_rx *rx)
{
	return th_stats_url(rx->url);
}

long th_rx_stat(const struct th_rx *rx, const char *name)
{
	json_t *j = th_rx_stats(rx);
	json_t *v = json_object_get(j, name);
	long r = json_is_integer(v) ? (long)json_integer_value(v) : -1;
	json_decref(j);
	return r;
}

void th_config(const struct th_dir *d, const char *endpoint, const char *extra)
{
	FILE *f = fopen(d->config, "w");
	ck_assert_ptr_nonnull(f);
	/* These tests check the protocol's outcomes event by event, in spool
	 * order: one request at a time, of batch_size events, unless `extra`
	 * says otherwise (the tests of the window and of growing batches do). */
	long batch = 100;
	const char *bs = extra ? strstr(extra, "batch_size:") : NULL;
	while (bs && bs != extra && bs[-1] != '\n')
		bs = strstr(bs + 1, "batch_size:");
	if (bs)
		batch = strtol(bs + strlen("batch_size:"), NULL, 10);
	if (!extra || !strstr(extra, "max_in_flight"))
		fprintf(f, "max_in_flight: 1\n");
	if (!extra || !strstr(extra, "max_batch_size"))
		fprintf(f, "max_batch_size: %ld\n", batch > 0 ? batch : 100);
	/* `extra` may open the http: section again: its keys merge */
	fprintf(f,
	        "spool: %s\n"
	        "http:\n"
	        "  endpoint: %s\n"
	        "%s"
	        "%s"
	        "retry:\n"
	        "  initial_seconds: 0.02\n"
	        "  max_seconds: 0.2\n"
	        "  auth_seconds: 30\n"
	        "log:\n"
	        "  level: debug\n"
	        "%s",
	        d->spool, endpoint,
	        extra && strstr(extra, "timeouts:") ? "" : "  timeouts:\n    request_seconds: 10\n",
	        extra && strstr(extra, "flush_interval_seconds") ? ""
	                                                         : "flush_interval_seconds: 0.2\n",
	        extra ? extra : "");
	fclose(f);
}

static size_t agent_argv(const struct th_dir *d, const char **argv, va_list ap)
{
	size_t n = 0;
	argv[n++] = th_prog("SPOOL_AGENT");
	argv[n++] = "-c";
	argv[n++] = d->config;
	const char *a;
	while ((a = va_arg(ap, const char *)) != NULL && n < 30)
		argv[n++] = a;
	argv[n] = NULL;
	return n;
}

int th_agent_run(const struct th_dir *d, double timeout, ...)
{
	const char *argv[32];
	va_list ap;
	va_start(ap, timeout);
	agent_argv(d, argv, ap);
	va_end(ap);
	return wait_for(spawn(argv, "/dev/null", d->log), timeout);
}

/* spool-agent with its args from ap, after wrapper[] (NULL: none). */
static pid_t agent_spawn(const struct th_dir *d, const char *const *wrapper, va_list ap)
{
	const char *argv[64];
	size_t n = 0;
	while (wrapper && wrapper[n] && n < 30) {
		argv[n] = wrapper[n];
		n++;
	}
	agent_argv(d, argv + n, ap);
	return spawn(argv, "/dev/null", d->log);
}

pid_t th_agent_start(const struct th_dir *d, ...)
{
	va_list ap;
	va_start(ap, d);
	pid_t pid = agent_spawn(d, NULL, ap);
	va_end(ap);
	return pid;
}

pid_t th_agent_start_under(const struct th_dir *d, const char *const *wrapper, ...)
{
	va_list ap;
	va_start(ap, wrapper);
	pid_t pid = agent_spawn(d, wrapper, ap);
	va_end(ap);
	return pid;
}

int th_agent_stop(pid_t pid, int sig, double timeout)
{
	kill(pid, sig);
	return wait_for(pid, timeout);
}

bool th_file_has(const char *path, const char *text)
{
	FILE *f = fopen(path, "r");
	if (!f)
		return false;
	char line[8192];
	bool found = false;
	while (!found && fgets(line, sizeof(line), f))
		found = strstr(line, text) != NULL;
	fclose(f);
	return found;
}

size_t th_read_out(const char *out, long **msgs, long **seqs)
{
	*msgs = NULL;
	if (seqs)
		*seqs = NULL;
	FILE *f = fopen(out, "r");
	if (!f)
		return 0;
	size_t n = 0, cap = 0;
	char *line = NULL;
	size_t ll = 0;
	while (getline(&line, &ll, f) > 0) {
		json_error_t je;
		json_t *j = json_loads(line, 0, &je);
		ck_assert_msg(j != NULL, "stored line is not JSON: %s", je.text);
		if (n == cap) {
			cap = cap ? cap * 2 : 1024;
			*msgs = realloc(*msgs, cap * sizeof(long));
			if (seqs)
				*seqs = realloc(*seqs, cap * sizeof(long));
		}
		const char *m = json_string_value(json_object_get(j, "message"));
		(*msgs)[n] = m && strncmp(m, "msg ", 4) == 0 ? atol(m + 4) : -1;
		if (seqs) {
			json_t *cc = json_object_get(json_object_get(j, "metadata"), "c_client");
			json_t *sq = json_object_get(cc, "spool_seq");
			(*seqs)[n] = json_is_integer(sq) ? (long)json_integer_value(sq) : -1;
		}
		json_decref(j);
		n++;
	}
	free(line);
	fclose(f);
	return n;
}

bool th_wait(bool (*cond)(void *arg), void *arg, double timeout)
{
	double end = th_now() + timeout;
	for (;;) {
		if (cond(arg))
			return true;
		if (th_now() > end)
			return false;
		usleep(10000);
	}
}

size_t th_read_request(int fd, char *buf, size_t cap)
{
	size_t n = 0;
	char *end = NULL;
	buf[0] = '\0'; /* strstr before the first read */
	while (n < cap - 1 && !(end = strstr(buf, "\r\n\r\n"))) {
		ssize_t r = read(fd, buf + n, cap - 1 - n);
		if (r <= 0)
			return 0;
		n += (size_t)r;
		buf[n] = '\0';
	}
	if (!end)
		return 0;
	size_t head = (size_t)(end - buf) + 4;
	const char *cl = strcasestr(buf, "\r\nContent-Length:");
	size_t want = cl ? (size_t)atol(cl + 17) : 0;
	while (n - head < want) {
		char tmp[4096];
		ssize_t r = read(fd, tmp, sizeof(tmp));
		if (r <= 0)
			break;
		n += (size_t)r;
	}
	return head;
}

void th_assert_each_once(const long *msgs, size_t got, long n, long missing)
{
	char *seen = calloc((size_t)n + 1, 1);
	ck_assert_ptr_nonnull(seen);
	for (size_t i = 0; i < got; i++) {
		ck_assert_msg(msgs[i] >= 1 && msgs[i] <= n, "stored line %zu: msg %ld, not one of 1..%ld", i,
		              msgs[i], n);
		ck_assert_msg(msgs[i] != missing, "msg %ld was stored", missing);
		ck_assert_msg(!seen[msgs[i]], "msg %ld stored twice", msgs[i]);
		seen[msgs[i]] = 1;
	}
	free(seen);
	ck_assert_int_eq(got, (size_t)n - (missing > 0));
}

size_t th_assert_out_each_once(const char *out, long n, long missing)
{
	long *msgs = NULL;
	size_t got = th_read_out(out, &msgs, NULL);
	th_assert_each_once(msgs, got, n, missing);
	free(msgs);
	return got;
}
