/* test_headers.c — what goes on the wire, seen by a tiny recording server
 * on 127.0.0.1: the protocol's headers and the configured extra ones, gzip,
 * and a redirect that must not be followed (the key never travels on). */
#include <arpa/inet.h>
#include <check.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "check_main.h"
#include "harness.h"

struct rec_server {
	int fd;
	int port;
	const char *answer; /* full status line and headers, no body */
	const char *body;
	pthread_t th;
	pthread_mutex_t mu;
	char seen[65536]; /* request heads, one after the other */
	size_t seen_len;
	int requests;
};

static void *serve(void *arg)
{
	struct rec_server *s = arg;
	for (;;) {
		int c = accept(s->fd, NULL, NULL);
		if (c < 0)
			return NULL;
		char buf[1 << 16];
		size_t head = th_read_request(c, buf, sizeof(buf));
		if (head) {
			pthread_mutex_lock(&s->mu);
			if (s->seen_len + head < sizeof(s->seen)) {
				memcpy(s->seen + s->seen_len, buf, head);
				s->seen_len += head;
				s->seen[s->seen_len] = '\0';
			}
			s->requests++;
			pthread_mutex_unlock(&s->mu);
			char out[1024];
			int m = snprintf(out, sizeof(out), "%sContent-Length: %zu\r\nConnection: close\r\n\r\n%s",
					 s->answer, strlen(s->body), s->body);
			if (write(c, out, (size_t)m) < 0)
				perror("write");
		}
		close(c);
	}
}

static void rec_start(struct rec_server *s, const char *answer, const char *body)
{
	memset(s, 0, sizeof(*s));
	s->answer = answer;
	s->body = body;
	pthread_mutex_init(&s->mu, NULL);
	s->fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	ck_assert_int_eq(bind(s->fd, (struct sockaddr *)&a, sizeof(a)), 0);
	ck_assert_int_eq(listen(s->fd, 16), 0);
	socklen_t sl = sizeof(a);
	getsockname(s->fd, (struct sockaddr *)&a, &sl);
	s->port = ntohs(a.sin_port);
	pthread_create(&s->th, NULL, serve, s);
}

static void rec_stop(struct rec_server *s)
{
	shutdown(s->fd, SHUT_RDWR);
	close(s->fd);
	pthread_join(s->th, NULL);
}

START_TEST(protocol_and_extra_headers)
{
	bool gz = _i == 1;
	struct rec_server s;
	rec_start(&s, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n", "{\"accepted\": 3}");
	struct th_dir d;
	th_dir_make(&d, "headers");
	th_fill(d.spool, 1, 3, 0);
	char url[64];
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/api/v1/logs", s.port);
	/* gzip is on unless the file turns it off */
	th_config(&d, url,
	          gz ? "http:\n  api_key: key-0123456789-LAST\n"
	               "  headers:\n    X-Site: ship-7\n    X-Trace: \"a b\"\n"
	             : "http:\n  api_key: key-0123456789-LAST\n"
	               "  headers:\n    X-Site: ship-7\n    X-Trace: \"a b\"\n"
	               "  gzip: false\n");
	ck_assert_int_eq(th_agent_run(&d, 60, "--once", NULL), 0);
	rec_stop(&s);
	ck_assert_int_eq(s.requests, 1);
	const char *h = s.seen;
	ck_assert_msg(strstr(h, "POST /api/v1/logs/batch HTTP/1.1\r\n"), "%s", h);
	ck_assert(strstr(h, "\r\nX-API-Key: key-0123456789-LAST\r\n"));
	ck_assert(strstr(h, "\r\nContent-Type: application/json\r\n"));
	ck_assert(strstr(h, "\r\nUser-Agent: master-log-spool/" SPOOL_VERSION_STRING " libcurl/"));
	ck_assert(strstr(h, "\r\nIdempotency-Key: 0"));
	ck_assert(strstr(h, "-3\r\n"));
	ck_assert(strstr(h, "\r\nX-Site: ship-7\r\n"));
	ck_assert(strstr(h, "\r\nX-Trace: a b\r\n"));
	ck_assert(!strcasestr(h, "\r\nExpect:"));
	ck_assert(!gz == !strstr(h, "\r\nContent-Encoding: gzip\r\n"));
	ck_assert_int_eq(th_stats(d.spool).pending, 0);
	th_dir_remove(&d);
}
END_TEST

/* A redirect to another host is not followed: the events stay, the key is
 * sent only to the configured host, and the log says so loudly. */
START_TEST(redirect_not_followed)
{
	struct rec_server other, s;
	rec_start(&other, "HTTP/1.1 200 OK\r\n", "{}");
	char answer[256];
	snprintf(answer, sizeof(answer), "HTTP/1.1 307 Temporary Redirect\r\nLocation: http://127.0.0.1:%d/api/v1/logs/batch\r\n",
		 other.port);
	rec_start(&s, answer, "");
	struct th_dir d;
	th_dir_make(&d, "redirect");
	th_fill(d.spool, 1, 2, 0);
	char url[64];
	snprintf(url, sizeof(url), "http://127.0.0.1:%d", s.port);
	th_config(&d, url, "http:\n  api_key: key-0123456789-LAST\n");
	ck_assert_int_eq(th_agent_run(&d, 60, "--once", NULL), 3);
	rec_stop(&s);
	rec_stop(&other);
	ck_assert_int_eq(s.requests, 1);
	ck_assert_int_eq(other.requests, 0);
	ck_assert_int_eq(th_stats(d.spool).pending, 2);
	ck_assert_int_eq(th_stats(d.spool).dead, 0);
	ck_assert(th_file_has(d.log, "redirect not followed"));
	th_dir_remove(&d);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("agent-headers");
	TCase *tc = tcase_create("headers");
	tcase_set_timeout(tc, 60);
	tcase_add_loop_test(tc, protocol_and_extra_headers, 0, 2);
	tcase_add_test(tc, redirect_not_followed);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return tc_run(suite());
}
