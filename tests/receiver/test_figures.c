/* test_figures.c - the figures a link test reads from GET /stats:
 * requests_open and requests_open_most (API requests between their headers
 * and their answer, --latency-ms included), request_bytes (what the API
 * requests put on the wire: request line, headers, body as sent),
 * uptime_ms and last_accepted_ms. */
#include <arpa/inet.h>
#include <check.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "harness.h"
#include "tests.h"

#define SINGLE "/api/v1/logs"
#define BATCH "/api/v1/logs/batch"

static int connect_to(int port)
{
	struct sockaddr_in sa = { 0 };
	sa.sin_family = AF_INET;
	sa.sin_port = htons((uint16_t)port);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	struct timeval tv = { 10, 0 };
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	return fd;
}

static void send_all(int fd, const void *data, size_t len)
{
	ck_assert_int_eq(send(fd, data, len, MSG_NOSIGNAL), (ssize_t)len);
}

/* Reads until the peer closes; returns the status code of the answer. */
static int read_status(int fd)
{
	char buf[4096];
	size_t got = 0;
	ssize_t n;
	while (got < sizeof(buf) - 1 &&
	       (n = recv(fd, buf + got, sizeof(buf) - 1 - got, 0)) > 0)
		got += (size_t)n;
	buf[got] = '\0';
	int status = 0;
	if (sscanf(buf, "HTTP/1.1 %d", &status) != 1)
		status = -1;
	return status;
}

/* A request head with Connection: close, in `out`; returns its length. */
static size_t make_head(char *out, size_t cap, const char *target,
			const char *extra, size_t body_len)
{
	int n = snprintf(out, cap,
			 "POST %s HTTP/1.1\r\n"
			 "Host: 127.0.0.1\r\n"
			 "Content-Type: application/json\r\n"
			 "%s"
			 "Connection: close\r\n"
			 "Content-Length: %zu\r\n\r\n",
			 target, extra, body_len);
	ck_assert(n > 0 && (size_t)n < cap);
	return (size_t)n;
}

static long long stat_of(struct rx *rx, const char *name)
{
	json_t *s = rx_stats(rx);
	json_t *v = json_object_get(s, name);
	ck_assert_msg(json_is_integer(v), "/stats has no integer %s", name);
	long long n = json_integer_value(v);
	json_decref(s);
	return n;
}

/* Every byte of an API request counts, as sent: the request target with
 * its query, each header, the blank line and the body (compressed when it
 * is gzip).  Requests that are not API requests do not count. */
START_TEST(request_bytes_count_head_and_body_as_sent)
{
	struct rx rx;
	char head[512];
	rx_start(&rx, NULL);
	ck_assert_int_eq(stat_of(&rx, "request_bytes"), 0);

	json_t *ev = test_event(1, "bytes");
	char *text = test_dump(ev);
	json_decref(ev);
	size_t len = strlen(text);
	size_t hl = make_head(head, sizeof(head), SINGLE "?trace=a%20b", "",
			      len);
	int fd = connect_to(rx.port);
	send_all(fd, head, hl);
	send_all(fd, text, len);
	ck_assert_int_eq(read_status(fd), 201);
	close(fd);
	long long want = (long long)(hl + len);
	ck_assert_int_eq(stat_of(&rx, "request_bytes"), want);

	/* gzip: the compressed length is what travelled */
	json_t *b = test_batch(10, 50);
	char *batch = test_dump(b);
	json_decref(b);
	size_t zlen;
	void *z = test_gzip(batch, strlen(batch), &zlen);
	ck_assert_uint_lt(zlen, strlen(batch));
	hl = make_head(head, sizeof(head), BATCH,
		       "Content-Encoding: gzip\r\n"
		       "Idempotency-Key: 01HX-50\r\n",
		       zlen);
	fd = connect_to(rx.port);
	send_all(fd, head, hl);
	send_all(fd, z, zlen);
	ck_assert_int_eq(read_status(fd), 200);
	close(fd);
	want += (long long)(hl + zlen);
	ck_assert_int_eq(stat_of(&rx, "request_bytes"), want);

	/* a refused API request still travelled */
	hl = make_head(head, sizeof(head), SINGLE, "", 5);
	fd = connect_to(rx.port);
	send_all(fd, head, hl);
	send_all(fd, "{bad}", 5);
	ck_assert_int_eq(read_status(fd), 400);
	close(fd);
	want += (long long)(hl + 5);

	/* not API requests: /stats, /healthz, a 404 */
	struct resp r;
	rx_request(&rx, "GET", "/healthz", NULL, 0, NULL, 0, &r);
	resp_free(&r);
	rx_request(&rx, "POST", "/nowhere", "{}", 2, NULL, 0, &r);
	ck_assert_int_eq(r.status, 404);
	resp_free(&r);
	ck_assert_int_eq(stat_of(&rx, "request_bytes"), want);
	ck_assert_int_eq(stat_of(&rx, "requests"), 3);
	free(z);
	free(batch);
	free(text);
	ck_assert_int_eq(rx_stop(&rx), 0);
}
END_TEST

/* Five requests held by --latency-ms 600 are open at once; after their
 * answers none is, and the most stays 5.  /stats, asked meanwhile, is not
 * counted. */
START_TEST(requests_open_counts_the_latency_wait)
{
	enum { N = 5 };
	const char *args[] = { "--latency-ms", "600", NULL };
	struct rx rx;
	char head[512];
	int fd[N];
	rx_start(&rx, args);
	for (int i = 0; i < N; i++) {
		json_t *ev = test_event(100 + (unsigned long long)i, "open");
		char *text = test_dump(ev);
		json_decref(ev);
		size_t hl = make_head(head, sizeof(head), SINGLE, "",
				      strlen(text));
		fd[i] = connect_to(rx.port);
		send_all(fd[i], head, hl);
		send_all(fd[i], text, strlen(text));
		free(text);
	}
	/* all five are in their wait (600 ms) once the receiver has read them */
	double end = test_now() + 0.5;
	long long open_now = 0;
	while (test_now() < end && (open_now = stat_of(&rx, "requests_open")) < N)
		usleep(10000);
	ck_assert_int_eq(open_now, N);
	for (int i = 0; i < N; i++) {
		ck_assert_int_eq(read_status(fd[i]), 201);
		close(fd[i]);
	}
	ck_assert_int_eq(stat_of(&rx, "requests_open"), 0);
	ck_assert_int_eq(stat_of(&rx, "requests_open_most"), N);
	ck_assert_int_eq(stat_of(&rx, "requests"), N);
	ck_assert_int_eq(rx_stop(&rx), 0);
}
END_TEST

/* Requests one after another never overlap; a request whose client goes
 * away in the middle of its body stops counting as open. */
START_TEST(requests_open_most_is_one_for_requests_in_turn)
{
	struct rx rx;
	struct resp r;
	char head[512];
	rx_start(&rx, NULL);
	for (int i = 0; i < 3; i++) {
		json_t *ev = test_event(200 + (unsigned long long)i, "turn");
		char *text = test_dump(ev);
		json_decref(ev);
		rx_post(&rx, SINGLE, text, &r);
		ck_assert_int_eq(r.status, 201);
		resp_free(&r);
		free(text);
	}
	ck_assert_int_eq(stat_of(&rx, "requests_open_most"), 1);

	/* announces 1000 bytes, sends 10, hangs up: what came counts */
	long long before = stat_of(&rx, "request_bytes");
	size_t hl = make_head(head, sizeof(head), SINGLE, "", 1000);
	int fd = connect_to(rx.port);
	send_all(fd, head, hl);
	send_all(fd, "{\"message\"", 10);
	double end = test_now() + 2;
	while (test_now() < end && stat_of(&rx, "requests_open") != 1)
		usleep(5000);
	ck_assert_int_eq(stat_of(&rx, "requests_open"), 1);
	close(fd);
	end = test_now() + 5;
	while (test_now() < end && stat_of(&rx, "requests_open") != 0)
		usleep(10000);
	ck_assert_int_eq(stat_of(&rx, "requests_open"), 0);
	ck_assert_int_eq(stat_of(&rx, "requests_open_most"), 1);
	ck_assert_int_eq(stat_of(&rx, "request_bytes"),
			 before + (long long)hl + 10);
	ck_assert_int_eq(rx_stop(&rx), 0);
}
END_TEST

/* uptime_ms is a whole number of milliseconds that grows. */
START_TEST(uptime_ms_is_an_integer_that_grows)
{
	struct rx rx;
	rx_start(&rx, NULL);
	long long a = stat_of(&rx, "uptime_ms");
	usleep(120000);
	long long b = stat_of(&rx, "uptime_ms");
	ck_assert_int_ge(a, 0);
	ck_assert_int_ge(b - a, 100);
	ck_assert_int_lt(b - a, 5000);
	ck_assert_int_eq(rx_stop(&rx), 0);
}
END_TEST

/* last_accepted_ms: -1 before any event is stored, then the uptime_ms of
 * the last one stored as new; a duplicate does not move it. */
START_TEST(last_accepted_ms_marks_the_last_new_event)
{
	struct rx rx;
	struct resp r;
	rx_start(&rx, NULL);
	ck_assert_int_eq(stat_of(&rx, "last_accepted_ms"), -1);
	usleep(150000);
	json_t *ev = test_event(300, "last");
	char *text = test_dump(ev);
	json_decref(ev);
	long long before = stat_of(&rx, "uptime_ms");
	rx_post(&rx, SINGLE, text, &r);
	ck_assert_int_eq(r.status, 201);
	resp_free(&r);
	long long after = stat_of(&rx, "uptime_ms");
	long long at = stat_of(&rx, "last_accepted_ms");
	ck_assert_int_ge(at, before);
	ck_assert_int_le(at, after);
	usleep(150000);
	/* the same event again: a duplicate, not a new one */
	rx_post(&rx, SINGLE, text, &r);
	resp_free(&r);
	free(text);
	ck_assert_int_eq(stat_of(&rx, "duplicates"), 1);
	ck_assert_int_eq(stat_of(&rx, "last_accepted_ms"), at);
	ck_assert_int_eq(rx_stop(&rx), 0);
}
END_TEST

TCase *figures_tcase(void)
{
	TCase *tc = tcase_create("figures");
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, request_bytes_count_head_and_body_as_sent);
	tcase_add_test(tc, requests_open_counts_the_latency_wait);
	tcase_add_test(tc, requests_open_most_is_one_for_requests_in_turn);
	tcase_add_test(tc, uptime_ms_is_an_integer_that_grows);
	tcase_add_test(tc, last_accepted_ms_marks_the_last_new_event);
	return tc;
}
