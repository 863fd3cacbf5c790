/* harness.c - start the real mlog-receiver and talk HTTP to it. */
#include "harness.h"

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <zlib.h>

double test_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static const char *receiver_path(void)
{
	const char *p = getenv("MLOG_RECEIVER");
	ck_assert_msg(p && *p, "MLOG_RECEIVER is not set");
	return p;
}

static void start(struct rx *rx, const char *const *args, bool with_out)
{
	const char *argv[96];
	char port_file[96];
	size_t n = 0;

	memset(rx, 0, sizeof(*rx));
	snprintf(rx->dir, sizeof(rx->dir), "/tmp/mlog-rx-test.XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(rx->dir));
	snprintf(rx->out, sizeof(rx->out), "%s/out.jsonl", rx->dir);
	snprintf(rx->stdout_path, sizeof(rx->stdout_path), "%s/stdout",
		 rx->dir);
	snprintf(port_file, sizeof(port_file), "%s/port", rx->dir);

	argv[n++] = receiver_path();
	argv[n++] = "--port";
	argv[n++] = "0";
	argv[n++] = "--port-file";
	argv[n++] = port_file;
	if (with_out) {
		argv[n++] = "--out";
		argv[n++] = rx->out;
	}
	for (size_t i = 0; args && args[i]; i++) {
		ck_assert_uint_lt(n, sizeof(argv) / sizeof(argv[0]) - 1);
		if (strcmp(args[i], "--listen") == 0 && args[i + 1] &&
		    strchr(args[i + 1], ':'))
			rx->ipv6 = true;
		argv[n++] = args[i];
	}
	argv[n] = NULL;

	pid_t parent = getpid();
	rx->pid = fork();
	ck_assert_int_ge(rx->pid, 0);
	if (rx->pid == 0) {
		/* Never outlive the test process, even when it fails. */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)
			_exit(127);
		int fd = open(rx->stdout_path, O_WRONLY | O_CREAT | O_TRUNC,
			      0600);
		if (fd >= 0) {
			dup2(fd, 1);
			close(fd);
		}
		execv(argv[0], (char *const *)argv);
		_exit(127);
	}

	double deadline = test_now() + 5.0;
	while (test_now() < deadline) {
		FILE *f = fopen(port_file, "r");
		if (f) {
			/* "N\n", or "N https\n" when serving TLS */
			char scheme[8] = "";
			int ok = fscanf(f, "%d%7s", &rx->port, scheme);
			fclose(f);
			if (ok >= 1 && rx->port > 0) {
				ck_assert_msg(ok == 1 || strcmp(scheme, "https") == 0,
					      "port file: unknown scheme '%s'",
					      scheme);
				rx->https = ok == 2;
				return;
			}
		}
		int status;
		ck_assert_msg(waitpid(rx->pid, &status, WNOHANG) == 0,
			      "mlog-receiver exited during start-up");
		usleep(5000);
	}
	ck_abort_msg("mlog-receiver did not write its port file in 5 s");
}

void rx_start(struct rx *rx, const char *const *args)
{
	start(rx, args, true);
}

void rx_start_no_out(struct rx *rx, const char *const *args)
{
	start(rx, args, false);
}

bool rx_alive(struct rx *rx)
{
	int status;
	return waitpid(rx->pid, &status, WNOHANG) == 0;
}

static void remove_dir(const char *dir)
{
	static const char *const names[] = { "out.jsonl", "stdout", "port",
					     "outage" };
	char path[128];
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
		unlink(path);
	}
	rmdir(dir);
}

int rx_stop(struct rx *rx)
{
	int status = -1;
	ck_assert_int_eq(kill(rx->pid, SIGTERM), 0);
	double deadline = test_now() + 10.0;
	while (test_now() < deadline) {
		pid_t p = waitpid(rx->pid, &status, WNOHANG);
		if (p == rx->pid)
			break;
		usleep(5000);
	}
	if (test_now() >= deadline) {
		kill(rx->pid, SIGKILL);
		waitpid(rx->pid, &status, 0);
		ck_abort_msg("mlog-receiver did not stop within 10 s");
	}
	remove_dir(rx->dir);
	return status;
}

struct sink {
	char *data;
	size_t len;
};

static size_t on_body(char *p, size_t size, size_t n, void *ud)
{
	struct sink *s = ud;
	size_t add = size * n;
	char *grown = realloc(s->data, s->len + add + 1);
	if (!grown)
		return 0;
	memcpy(grown + s->len, p, add);
	s->data = grown;
	s->len += add;
	s->data[s->len] = '\0';
	return add;
}

static void copy_value(char *dst, size_t size, const char *line,
		       size_t len)
{
	const char *colon = memchr(line, ':', len);
	if (!colon)
		return;
	const char *v = colon + 1;
	const char *end = line + len;
	while (v < end && (*v == ' ' || *v == '\t'))
		v++;
	while (end > v && (end[-1] == '\r' || end[-1] == '\n'))
		end--;
	snprintf(dst, size, "%.*s", (int)(end - v), v);
}

static size_t on_header(char *p, size_t size, size_t n, void *ud)
{
	struct resp *r = ud;
	size_t len = size * n;
	if (len > 12 && strncasecmp(p, "Retry-After:", 12) == 0)
		copy_value(r->retry_after, sizeof(r->retry_after), p, len);
	else if (len > 6 && strncasecmp(p, "Allow:", 6) == 0)
		copy_value(r->allow, sizeof(r->allow), p, len);
	else if (len > 13 && strncasecmp(p, "Content-Type:", 13) == 0)
		copy_value(r->content_type, sizeof(r->content_type), p, len);
	return len;
}

void rx_request(struct rx *rx, const char *method, const char *path,
		const void *body, size_t len, const char *const *headers,
		long timeout_ms, struct resp *out)
{
	char url[160];
	struct sink sink = { NULL, 0 };
	struct curl_slist *list = NULL;

	memset(out, 0, sizeof(*out));
	snprintf(url, sizeof(url), "%s://%s:%d%s", rx->https ? "https" : "http",
		 rx->ipv6 ? "[::1]" : "127.0.0.1", rx->port, path);
	CURL *c = curl_easy_init();
	ck_assert_ptr_nonnull(c);
	curl_easy_setopt(c, CURLOPT_URL, url);
	if (rx->https) {
		ck_assert_msg(rx->ca_file != NULL,
			      "an https receiver needs rx->ca_file");
		curl_easy_setopt(c, CURLOPT_CAINFO, rx->ca_file);
		curl_easy_setopt(c, CURLOPT_CAPATH, NULL);
	}
	curl_easy_setopt(c, CURLOPT_NOPROXY, "*");
	curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
	if (body) {
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
		curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE,
				 (curl_off_t)len);
	}
	list = curl_slist_append(list, "Content-Type: application/json");
	for (size_t i = 0; headers && headers[i]; i++)
		list = curl_slist_append(list, headers[i]);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, list);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &sink);
	curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(c, CURLOPT_HEADERDATA, out);
	curl_easy_setopt(c, CURLOPT_TIMEOUT_MS,
			 timeout_ms > 0 ? timeout_ms : 10000L);
	double t0 = test_now();
	out->rc = curl_easy_perform(c);
	out->seconds = test_now() - t0;
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &out->status);
	curl_slist_free_all(list);
	curl_easy_cleanup(c);
	out->body = sink.data ? sink.data : strdup("");
	out->len = sink.len;
}

void rx_post(struct rx *rx, const char *path, const char *json,
	     struct resp *out)
{
	rx_request(rx, "POST", path, json, strlen(json), NULL, 0, out);
}

void resp_free(struct resp *r)
{
	free(r->body);
	r->body = NULL;
}

json_t *resp_json(const struct resp *r)
{
	json_error_t err;
	json_t *j = json_loadb(r->body, r->len, 0, &err);
	ck_assert_msg(j != NULL, "status %ld body is not JSON: %s (%s)",
		      r->status, r->body, err.text);
	return j;
}

json_t *rx_stats(struct rx *rx)
{
	struct resp r;
	rx_request(rx, "GET", "/stats", NULL, 0, NULL, 0, &r);
	ck_assert_int_eq(r.rc, CURLE_OK);
	ck_assert_int_eq(r.status, 200);
	json_t *j = resp_json(&r);
	resp_free(&r);
	return j;
}

long long rx_stat(struct rx *rx, const char *name)
{
	json_t *s = rx_stats(rx);
	json_t *v = json_object_get(s, name);
	ck_assert_msg(json_is_integer(v), "/stats has no counter %s", name);
	long long n = json_integer_value(v);
	json_decref(s);
	return n;
}

json_t *rx_out_lines(struct rx *rx)
{
	json_t *lines = json_array();
	FILE *f = fopen(rx->out, "r");
	if (!f)
		return lines;
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;
	while ((n = getline(&line, &cap, f)) > 0) {
		json_error_t err;
		ck_assert_msg(line[n - 1] == '\n', "unterminated out line");
		json_t *j = json_loadb(line, (size_t)n - 1, 0, &err);
		ck_assert_msg(j != NULL, "out line is not JSON: %s", line);
		json_array_append_new(lines, j);
	}
	free(line);
	fclose(f);
	return lines;
}

void test_ulid(unsigned long long n, char out[27])
{
	/* "01HX" then 22 decimal digits: digits are Crockford base32 too. */
	snprintf(out, 27, "01HX%022llu", n);
}

json_t *test_event(unsigned long long n, const char *message)
{
	char id[27];
	test_ulid(n, id);
	return json_pack("{s:s, s:s, s:s, s:[s,s], s:{s:{s:s, s:i}}, s:s, s:s}",
			 "message", message, "severity", "info", "title",
			 "test event", "tags", "a", "b", "metadata",
			 "c_client", "hostname", "h", "pid", 42,
			 "client_event_id", id, "timestamp",
			 "2026-11-24T14:29:21.123456Z");
}

char *test_dump(const json_t *v)
{
	char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
	ck_assert_ptr_nonnull(s);
	return s;
}

json_t *test_batch(unsigned long long n0, size_t count)
{
	json_t *logs = json_array();
	for (size_t i = 0; i < count; i++)
		json_array_append_new(logs, test_event(n0 + i, "batched"));
	return json_pack("{s:o}", "logs", logs);
}

void *test_gzip(const void *data, size_t len, size_t *out_len)
{
	z_stream zs;
	memset(&zs, 0, sizeof(zs));
	ck_assert_int_eq(deflateInit2(&zs, 6, Z_DEFLATED, 16 + MAX_WBITS, 8,
				      Z_DEFAULT_STRATEGY),
			 Z_OK);
	size_t cap = deflateBound(&zs, (uLong)len) + 64;
	unsigned char *out = malloc(cap);
	ck_assert_ptr_nonnull(out);
	zs.next_in = (unsigned char *)(uintptr_t)data;
	zs.avail_in = (uInt)len;
	zs.next_out = out;
	zs.avail_out = (uInt)cap;
	ck_assert_int_eq(deflate(&zs, Z_FINISH), Z_STREAM_END);
	*out_len = zs.total_out;
	deflateEnd(&zs);
	return out;
}
