/* test_robust.c - bad requests never crash the receiver; limits; start-up
 * and shut-down; concurrency. */
#include <arpa/inet.h>
#include <check.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#include "tests.h"

#define SINGLE "/api/v1/logs"
#define BATCH "/api/v1/logs/batch"

static char *event_text(unsigned long long n, const char *message)
{
	json_t *ev = test_event(n, message);
	char *text = test_dump(ev);
	json_decref(ev);
	return text;
}

static size_t out_count(struct rx *rx)
{
	json_t *lines = rx_out_lines(rx);
	size_t n = json_array_size(lines);
	json_decref(lines);
	return n;
}

static void assert_healthy(struct rx *rx)
{
	struct resp r;
	ck_assert(rx_alive(rx));
	rx_request(rx, "GET", "/healthz", NULL, 0, NULL, 0, &r);
	ck_assert_int_eq(r.status, 200);
	resp_free(&r);
}

START_TEST(broken_bodies_are_400_and_harmless)
{
	struct rx rx;
	struct resp r;
	rx_start(&rx, NULL);
	char *ev = event_text(1, "whole");
	size_t deep_len = 200000;
	char *deep = malloc(deep_len + 1);
	memset(deep, '[', deep_len);
	deep[deep_len] = '\0';
	const struct {
		const char *path;
		const char *body;
		size_t len; /* 0: strlen(body) */
		long status;
	} rows[] = {
		{ SINGLE, "{not json", 0, 400 },
		{ SINGLE, ev, strlen(ev) / 2, 400 }, /* truncated */
		{ SINGLE, "", 0, 400 },
		{ SINGLE, "{\"message\":\"\xff\xfe\"}", 0, 400 }, /* not UTF-8 */
		{ SINGLE, "{} {}", 0, 400 },
		{ SINGLE, deep, deep_len, 400 },
		{ SINGLE, "[1,2]", 0, 422 },
		{ SINGLE, "\"text\"", 0, 422 },
		{ BATCH, "{\"logs\": [", 0, 400 },
		{ BATCH, deep, deep_len, 400 },
		{ BATCH, "null", 0, 400 },
	};
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		size_t len = rows[i].len ? rows[i].len : strlen(rows[i].body);
		rx_request(&rx, "POST", rows[i].path, rows[i].body, len, NULL,
			   0, &r);
		ck_assert_msg(r.status == rows[i].status, "row %zu: got %ld %s",
			      i, r.status, r.body);
		json_decref(resp_json(&r));
		resp_free(&r);
	}
	assert_healthy(&rx);
	ck_assert_uint_eq(out_count(&rx), 0);
	free(deep);
	free(ev);
	ck_assert_int_eq(rx_stop(&rx), 0);
}
END_TEST

START_TEST(oversize_bodies_are_413_then_business_as_usual)
{
	const char *args[] = { "--max-body", "1000", NULL };
	const char *expect[] = { "Expect: 100-continue", NULL };
	const char *no_expect[] = { "Expect:", NULL };
	const char *chunked[] = { "Transfer-Encoding: chunked", NULL };
	struct rx rx;
	struct resp r;
	rx_start(&rx, args);
	size_t len = 2000000;
	char *big = malloc(len);
	memset(big, ' ', len);
	big[0] = '{';
	big[len - 1] = '}';
	const char *const *variants[] = { expect, no_expect, chunked };
	for (size_t i = 0; i < 3; i++) {
		rx_request(&rx, "POST", SINGLE, big, len, variants[i], 0, &r);
		ck_assert_int_eq(r.rc, CURLE_OK);
		ck_assert_int_eq(r.status, 413);
		resp_free(&r);
		rx_request(&rx, "POST", BATCH, big, 1001, variants[i], 0, &r);
		ck_assert_int_eq(r.status, 413);
		resp_free(&r);
	}
	char *ev = event_text(1, "fits");
	rx_post(&rx, SINGLE, ev, &r);
	ck_assert_int_eq(r.status, 201);
	resp_free(&r);
	free(ev);
	free(big);
	ck_assert_int_eq(rx_stop(&rx), 0);
}
END_TEST

START_TEST(default_max_body_is_16_mib_and_gzip_bombs_are_413)
{
	const char *gz[] = { "Content-Encoding: gzip", NULL };
	struct rx rx;
	struct resp r;
	rx_start(&rx, NULL);
	size_t len = (16u << 20) + 1;
	char *big = calloc(1, len);
	rx_request(&rx, "POST", SINGLE, big, len, NULL, 0, &r);
	ck_assert_int_eq(r.status, 413);
	resp_free(&r);
	/* 64 MiB of zeros in about 64 KiB of gzip */
	size_t bomb_len = 64u << 20, zlen;
	char *zeros = calloc(1, bomb_len);
	void *z = test_gzip(zeros, bomb_len, &zlen);
	ck_assert_uint_lt(zlen, 1u << 20);
	rx_request(&rx, "POST", SINGLE, z, zlen, gz, 0, &r);
	ck_assert_int_eq(r.status, 413);
	resp_free(&r);
	rx_request(&rx, "POST", BATCH, z, zlen, gz, 0, &r);
	ck_assert_int_eq(r.status, 413);
	resp_free(&r);
	assert_healthy(&rx);
	free(z);
	free(zeros);
	free(big);
	ck_assert_int_eq(rx_stop(&rx), 0);
}
END_TEST

static int raw_connect(int port)
{
	struct sockaddr_in sa = { 0 };
	sa.sin_family = AF_INET;
	sa.sin_port = htons((uint16_t)port);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	struct timeval tv = { 5, 0 };
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	return fd;
}

/* Sends `req` raw, half-closes, returns what came back (NUL-terminated). */
static char *raw_exchange(int port, const char *req, size_t len)
{
	int fd = raw_connect(port);
	ck_assert_int_eq(send(fd, req, len, MSG_NOSIGNAL), (ssize_t)len);
	shutdown(fd, SHUT_WR);
	char *out = calloc(1, 65536);
	size_t got = 0;
	ssize_t n;
	while (got < 65535 &&
	       (n = recv(fd, out + got, 65535 - got, 0)) > 0)
		got += (size_t)n;
	close(fd);
	return out;
}

START_TEST(wrong_content_length_never_stores_or_crashes)
{
	struct rx rx;
	char req[2048];
	rx_start(&rx, NULL);
	char *ev = event_text(1, "raw");
	size_t evlen = strlen(ev);

	/* Announces more than it sends, then stops sending. */
	int n = snprintf(req, sizeof(req),
			 "POST " SINGLE " HTTP/1.1\r\nHost: x\r\n"
			 "Content-Type: application/json\r\n"
			 "Content-Length: %zu\r\n\r\n%s",
			 evlen + 100, ev);
	char *got = raw_exchange(rx.port, req, (size_t)n);
	ck_assert_msg(strncmp(got, "HTTP/1.1 2", 10) != 0, "answered: %s", got);
	free(got);

	/* Announces less than it sends: the cut-off JSON is a 400. */
	n = snprintf(req, sizeof(req),
		     "POST " SINGLE " HTTP/1.1\r\nHost: x\r\n"
		     "Connection: close\r\n"
		     "Content-Length: %zu\r\n\r\n%s",
		     evlen - 10, ev);
	got = raw_exchange(rx.port, req, (size_t)n);
	ck_assert_msg(strncmp(got, "HTTP/1.1 400", 12) == 0, "got: %s", got);
	free(got);

	/* A Content-Length that is not a number. */
	n = snprintf(req, sizeof(req),
		     "POST " SINGLE " HTTP/1.1\r\nHost: x\r\n"
		     "Content-Length: lots\r\n\r\n%s",
		     ev);
	got = raw_exchange(rx.port, req, (size_t)n);
	ck_assert_msg(strncmp(got, "HTTP/1.1 4", 10) == 0, "got: %s", got);
	free(got);

	/* Garbage instead of HTTP. */
	got = raw_exchange(rx.port, "\x16\x03\x01 hello\r\n\r\n", 14);
	ck_assert_msg(strncmp(got, "HTTP/1.1 2", 10) != 0, "answered: %s", got);
	free(got);

	assert_healthy(&rx);
	ck_assert_uint_eq(out_count(&rx), 0);
	free(ev);
	ck_assert_int_eq(rx_stop(&rx), 0);
}
END_TEST

/* A full disk under the out file: the request fails with 500, and since the
 * event was never stored its retry is not acknowledged as a duplicate. */
START_TEST(unwritable_out_file_is_500_and_the_retry_is_not_a_duplicate)
{
	struct rx rx;
	struct resp r;
	const char *args[] = { "--out", "/dev/full", NULL };
	rx_start_no_out(&rx, args);
	char *ev = event_text(7, "never stored");
	for (int attempt = 0; attempt < 2; attempt++) {
		rx_post(&rx, SINGLE, ev, &r);
		ck_assert_int_eq(r.rc, CURLE_OK);
		ck_assert_msg(r.status == 500, "attempt %d: status %ld, want 500 (%s)", attempt,
			      r.status, r.body ? r.body : "");
		resp_free(&r);
	}
	ck_assert_int_eq(rx_stat(&rx, "accepted"), 0);
	ck_assert_int_eq(rx_stat(&rx, "duplicates"), 0);
	free(ev);
	ck_assert(rx_alive(&rx));
	rx_stop(&rx);
}
END_TEST

START_TEST(keep_alive_survives_refusals)
{
	struct rx rx;
	char url[96];
	rx_start(&rx, NULL);
	snprintf(url, sizeof(url), "http://127.0.0.1:%d" SINGLE, rx.port);
	CURL *c = curl_easy_init();
	FILE *devnull = fopen("/dev/null", "w");
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, devnull);
	char *ev = event_text(1, "ka");
	const char *bodies[] = { "{oops", "{}", ev, ev };
	const long want[] = { 400, 422, 201, 200 };
	for (size_t i = 0; i < 4; i++) {
		long status = 0, connects = -1;
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, bodies[i]);
		ck_assert_int_eq(curl_easy_perform(c), CURLE_OK);
		curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
		curl_easy_getinfo(c, CURLINFO_NUM_CONNECTS, &connects);
		ck_assert_int_eq(status, want[i]);
		if (i > 0)
			ck_assert_msg(connects == 0, "request %zu reconnected",
				      i);
	}
	curl_easy_cleanup(c);
	fclose(devnull);
	free(ev);
	ck_assert_int_eq(rx_stop(&rx), 0);
}
END_TEST

struct racer {
	struct rx *rx;
	int ok;
};

static void *race(void *arg)
{
	struct racer *r = arg;
	for (unsigned i = 0; i < 50; i++) {
		char *ev = event_text(5000 + i, "race");
		struct resp resp;
		rx_post(r->rx, SINGLE, ev, &resp);
		r->ok += resp.status == 201 || resp.status == 200;
		resp_free(&resp);
		free(ev);
	}
	return NULL;
}

START_TEST(concurrent_clients_store_each_event_once)
{
	struct rx rx;
	pthread_t t[4];
	struct racer racers[4];
	rx_start(&rx, NULL);
	for (int i = 0; i < 4; i++) {
		racers[i] = (struct racer){ &rx, 0 };
		ck_assert_int_eq(pthread_create(&t[i], NULL, race, &racers[i]),
				 0);
	}
	for (int i = 0; i < 4; i++) {
		pthread_join(t[i], NULL);
		ck_assert_int_eq(racers[i].ok, 50);
	}
	ck_assert_uint_eq(out_count(&rx), 50);
	ck_assert_int_eq(rx_stat(&rx, "accepted"), 50);
	ck_assert_int_eq(rx_stat(&rx, "duplicates"), 150);
	ck_assert_int_eq(rx_stop(&rx), 0);
}
END_TEST

START_TEST(dedup_memory_is_bounded)
{
	const char *args[] = { "--dedup-max", "2", NULL };
	struct rx rx;
	rx_start(&rx, args);
	for (unsigned i = 0; i < 7; i++) {
		char *ev = event_text(i, "bounded");
		struct resp r;
		rx_post(&rx, SINGLE, ev, &r);
		ck_assert_int_eq(r.status, 201);
		resp_free(&r);
		free(ev);
	}
	/* The last two are always remembered... */
	for (unsigned i = 5; i < 7; i++) {
		char *ev = event_text(i, "bounded");
		struct resp r;
		rx_post(&rx, SINGLE, ev, &r);
		ck_assert_int_eq(r.status, 200);
		resp_free(&r);
		free(ev);
	}
	/* ...and never more than two generations of two. */
	ck_assert_int_le(rx_stat(&rx, "unique_ids"), 4);
	ck_assert_int_eq(rx_stop(&rx), 0);
}
END_TEST

static void term_flushes(int sig)
{
	struct rx rx;
	struct resp r;
	rx_start(&rx, NULL);
	json_t *batch = test_batch(1, 200);
	char *text = test_dump(batch);
	rx_post(&rx, BATCH, text, &r);
	ck_assert_int_eq(r.status, 200);
	resp_free(&r);
	/* Keep a copy of the out path: rx_stop removes the directory. */
	ck_assert_int_eq(kill(rx.pid, sig), 0);
	int status;
	ck_assert_int_eq(waitpid(rx.pid, &status, 0), rx.pid);
	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
		      "status 0x%x", status);
	json_t *lines = rx_out_lines(&rx);
	ck_assert(json_equal(lines, json_object_get(batch, "logs")));
	json_decref(lines);
	json_decref(batch);
	free(text);
	/* Already reaped: only clean up. */
	rx.pid = getpid() + 1000000;
	char path[128];
	snprintf(path, sizeof(path), "%s/out.jsonl", rx.dir);
	unlink(path);
	snprintf(path, sizeof(path), "%s/stdout", rx.dir);
	unlink(path);
	snprintf(path, sizeof(path), "%s/port", rx.dir);
	unlink(path);
	rmdir(rx.dir);
}

START_TEST(sigterm_and_sigint_stop_cleanly_with_out_file_complete)
{
	term_flushes(SIGTERM);
	term_flushes(SIGINT);
}
END_TEST

static char *slurp(const char *path)
{
	FILE *f = fopen(path, "r");
	ck_assert_ptr_nonnull(f);
	char *buf = calloc(1, 1 << 16);
	size_t n = fread(buf, 1, (1 << 16) - 1, f);
	buf[n] = '\0';
	fclose(f);
	return buf;
}

START_TEST(out_dash_writes_events_to_stdout_after_port_line)
{
	const char *args[] = { "--out", "-", NULL };
	struct rx rx;
	struct resp r;
	rx_start_no_out(&rx, args);
	char *ev = event_text(1, "to stdout");
	rx_post(&rx, SINGLE, ev, &r);
	ck_assert_int_eq(r.status, 201);
	resp_free(&r);
	char *text = slurp(rx.stdout_path);
	char want[4096];
	snprintf(want, sizeof(want), "port %d\n%s\n", rx.port, ev);
	ck_assert_str_eq(text, want);
	free(text);
	free(ev);
	ck_assert_int_eq(rx_stop(&rx), 0);
}
END_TEST

/* Whether /proc/net/tcp{,6} lists a listening socket on `port` bound to
 * `hexaddr`, and no listening socket on it bound to anything else. */
static void assert_bound_only(const char *table, int port,
			      const char *hexaddr)
{
	FILE *f = fopen(table, "r");
	ck_assert_ptr_nonnull(f);
	char line[512], local[64], want_port[8];
	int found = 0;
	snprintf(want_port, sizeof(want_port), "%04X", port);
	while (fgets(line, sizeof(line), f)) {
		unsigned st;
		if (sscanf(line, " %*d: %63s %*s %x", local, &st) != 2 ||
		    st != 0x0A)
			continue;
		char *colon = strrchr(local, ':');
		if (!colon || strcmp(colon + 1, want_port) != 0)
			continue;
		*colon = '\0';
		ck_assert_str_eq(local, hexaddr);
		found++;
	}
	fclose(f);
	ck_assert_int_eq(found, 1);
}

START_TEST(binds_only_loopback_and_reports_port)
{
	struct rx rx;
	rx_start_no_out(&rx, NULL);
	char *text = slurp(rx.stdout_path);
	char want[32];
	snprintf(want, sizeof(want), "port %d\n", rx.port);
	ck_assert_str_eq(text, want);
	free(text);
	assert_bound_only("/proc/net/tcp", rx.port, "0100007F");
	ck_assert_int_eq(rx_stop(&rx), 0);
}
END_TEST

static bool have_ipv6_loopback(void)
{
	struct sockaddr_in6 sa = { 0 };
	sa.sin6_family = AF_INET6;
	sa.sin6_addr = in6addr_loopback;
	int fd = socket(AF_INET6, SOCK_STREAM, 0);
	if (fd < 0)
		return false;
	bool ok = bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
	close(fd);
	return ok;
}

START_TEST(listen_ipv6_loopback)
{
	if (!have_ipv6_loopback()) {
		fprintf(stderr, "no ::1 here: listen_ipv6_loopback skipped\n");
		return;
	}
	const char *args[] = { "--listen", "::1", NULL };
	struct rx rx;
	struct resp r;
	rx_start(&rx, args);
	char *ev = event_text(1, "v6");
	rx_post(&rx, SINGLE, ev, &r);
	ck_assert_int_eq(r.status, 201);
	resp_free(&r);
	assert_bound_only("/proc/net/tcp6", rx.port,
			  "00000000000000000000000001000000");
	free(ev);
	ck_assert_int_eq(rx_stop(&rx), 0);
}
END_TEST

/* Runs the receiver with `args` to completion; returns its wait status
 * and what it printed on stdout. */
static int run_cli(const char *const *args, char **output)
{
	const char *argv[16];
	size_t n = 0;
	int fds[2];
	argv[n++] = getenv("MLOG_RECEIVER");
	for (size_t i = 0; args[i] && n < 15; i++)
		argv[n++] = args[i];
	argv[n] = NULL;
	ck_assert_int_eq(pipe(fds), 0);
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		dup2(fds[1], 1);
		int null = open("/dev/null", O_WRONLY);
		dup2(null, 2);
		close(fds[0]);
		execv(argv[0], (char *const *)argv);
		_exit(127);
	}
	close(fds[1]);
	size_t cap = 1 << 16, got = 0;
	char *buf = calloc(1, cap);
	ssize_t k;
	while (got < cap - 1 && (k = read(fds[0], buf + got, cap - 1 - got)) > 0)
		got += (size_t)k;
	close(fds[0]);
	int status;
	waitpid(pid, &status, 0);
	*output = buf;
	return status;
}

START_TEST(cli_help_and_usage_errors)
{
	char *out;
	const char *help[] = { "--help", NULL };
	int st = run_cli(help, &out);
	ck_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	static const char *const flags[] = {
		"--port", "--port-file", "--listen", "--out", "--api-key",
		"--max-body", "--max-batch-events", "--max-batch-bytes",
		"--fail-first", "--fail-status", "--retry-after", "--fail-rate",
		"--seed", "--outage-file", "--latency-ms", "--reject-word",
		"--reject-whole-batch", "--no-batch", "--drop-after-store",
		"--slow-body-ms", "--bad-json-2xx", "--transient-word",
		"--no-gzip", "--drop-rate", "--tls-cert", "--tls-key",
	};
	for (size_t i = 0; i < sizeof(flags) / sizeof(flags[0]); i++)
		ck_assert_msg(strstr(out, flags[i]) != NULL,
			      "--help lacks %s", flags[i]);
	free(out);

	static const char *const bad[][4] = {
		{ "--no-such-flag", NULL },
		{ "--fail-rate", "1.5", NULL },
		{ "--port", "70000", NULL },
		{ "--fail-status", "42", NULL },
		{ "--max-body", "12Q", NULL },
		{ "stray", NULL },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		st = run_cli(bad[i], &out);
		ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 2,
			      "%s: status 0x%x", bad[i][0], st);
		free(out);
	}
	const char *badaddr[] = { "--listen", "example.com", "--port", "0",
				  NULL };
	st = run_cli(badaddr, &out);
	ck_assert(WIFEXITED(st) && WEXITSTATUS(st) == 1);
	free(out);
}
END_TEST

TCase *robust_tcase(void)
{
	TCase *tc = tcase_create("robust");
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, broken_bodies_are_400_and_harmless);
	tcase_add_test(tc, oversize_bodies_are_413_then_business_as_usual);
	tcase_add_test(tc, default_max_body_is_16_mib_and_gzip_bombs_are_413);
	tcase_add_test(tc, wrong_content_length_never_stores_or_crashes);
	tcase_add_test(tc, keep_alive_survives_refusals);
	tcase_add_test(tc, unwritable_out_file_is_500_and_the_retry_is_not_a_duplicate);
	tcase_add_test(tc, concurrent_clients_store_each_event_once);
	tcase_add_test(tc, dedup_memory_is_bounded);
	tcase_add_test(tc, sigterm_and_sigint_stop_cleanly_with_out_file_complete);
	tcase_add_test(tc, out_dash_writes_events_to_stdout_after_port_line);
	tcase_add_test(tc, binds_only_loopback_and_reports_port);
	tcase_add_test(tc, listen_ipv6_loopback);
	tcase_add_test(tc, cli_help_and_usage_errors);
	return tc;
}
