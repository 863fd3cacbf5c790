/* test_wire.c — what the built-in transports say they put on the wire
 * (spool_tx_request.wire_bytes, which the agent's bandwidth_limit is charged
 * with) against what the real mlog-receiver on 127.0.0.1 counted, with gzip
 * on and off, batches and singles, a 415's resend, credentials in the URL
 * and several requests in flight; that a bandwidth_limit slows a single
 * request down to it; and the file transport's bytes written.  The
 * transports run in-process, as the agent drives them: submit, then poll. */
#include <check.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check_main.h"
#include "harness.h"
#include "http.h"
#include "transports.h"

/* ---- the transport, as the agent sets it up ---- */

static void quiet(void *ctx, int level, const char *fmt, ...)
{
	(void)ctx;
	(void)level;
	(void)fmt;
}

struct link {
	struct spool_tx_value values[HTTP_NKEYS];
	struct spool_tx_pair headers[2];
	struct spool_tx_config cfg;
	const struct spool_transport *tx;
	void *state;
};

struct link_opts {
	bool gzip;
	const char *api_key;
	bool extra_headers;
	uint32_t in_flight;
	double bandwidth_limit;
};

static void link_open(struct link *l, const struct spool_transport *tx, const char *endpoint,
                      const struct link_opts *o)
{
	memset(l, 0, sizeof(*l));
	struct spool_tx_value *v = l->values;
	v[HTTP_ENDPOINT] = (struct spool_tx_value){.set = 1, .text = endpoint};
	v[HTTP_API_KEY] = (struct spool_tx_value){.set = o->api_key != NULL, .text = o->api_key};
	v[HTTP_GZIP] = (struct spool_tx_value){
	    .set = 1, .text = o->gzip ? "true" : "false", .boolean = o->gzip};
	v[HTTP_TLS_VERIFY] = (struct spool_tx_value){.set = 1, .text = "true", .boolean = 1};
	v[HTTP_CONNECT_TIMEOUT] = (struct spool_tx_value){.set = 1, .text = "10", .number = 10};
	v[HTTP_REQUEST_TIMEOUT] = (struct spool_tx_value){.set = 1, .text = "30", .number = 30};
	v[HTTP_PROXY] = (struct spool_tx_value){.set = 1, .text = "none"};
	if (o->extra_headers) {
		l->headers[0] = (struct spool_tx_pair){"X-Site", "ship-7"};
		l->headers[1] = (struct spool_tx_pair){"X-Trace", "a b c"};
		v[HTTP_HEADERS] =
		    (struct spool_tx_value){.set = 1, .pairs = l->headers, .npairs = 2};
	}
	l->cfg = (struct spool_tx_config){
	    .struct_size = sizeof(struct spool_tx_config),
	    .name = tx->name,
	    .values = l->values,
	    .nvalues = HTTP_NKEYS,
	    .user_agent = "master-log-spool/test",
	    .max_batch_events = 1000,
	    .max_body_bytes = 5u << 20,
	    .max_in_flight = o->in_flight ? o->in_flight : 1,
	    .log = quiet,
	    .bandwidth_limit = o->bandwidth_limit,
	};
	l->tx = tx;
	char err[256] = "";
	ck_assert_msg(tx->create(&l->cfg, &l->state, err, sizeof(err)) == 0, "create: %s", err);
}

static void link_close(struct link *l)
{
	l->tx->destroy(l->state);
}

/* ---- requests ---- */

enum { MAX_EVENTS = 600 };

struct request {
	struct spool_tx_request r;
	struct spool_tx_event ev[MAX_EVENTS];
	struct spool_tx_outcome out[MAX_EVENTS];
	char *json[MAX_EVENTS];
	size_t json_bytes; /* of the events, without the batch envelope */
};

/* n protocol-valid events numbered from first, each with pad bytes of
 * filler in its message. */
static void request_fill(struct request *q, uint64_t first, size_t n, size_t pad)
{
	ck_assert_uint_le(n, MAX_EVENTS);
	memset(q, 0, sizeof(*q));
	char *filler = malloc(pad + 1);
	for (size_t i = 0; i < pad; i++)
		filler[i] = "abcdefghijklmnopqrstuvwxyz 0123456789"[(i * 7 + i / 13) % 37];
	filler[pad] = '\0';
	for (size_t i = 0; i < n; i++) {
		char *j = NULL;
		int len = asprintf(
		    &j,
		    "{\"message\":\"msg %llu %s\",\"severity\":\"info\","
		    "\"client_event_id\":\"01JZWXRE%018llu\","
		    "\"timestamp\":\"2026-11-24T14:29:21.123456Z\","
		    "\"metadata\":{\"c_client\":{\"hostname\":\"test-host\",\"spool_seq\":%llu}}}",
		    (unsigned long long)(first + i), filler, (unsigned long long)(first + i),
		    (unsigned long long)(first + i));
		ck_assert_int_gt(len, 0);
		q->json[i] = j;
		q->ev[i] =
		    (struct spool_tx_event){.seq = first + i, .json = j, .json_len = (size_t)len};
		q->json_bytes += (size_t)len;
	}
	free(filler);
	q->r = (struct spool_tx_request){
	    .events = q->ev,
	    .count = n,
	    .out = q->out,
	    .status = {.call = SPOOL_TXC_DONE, .retry_after = -1},
	};
}

static void request_free(struct request *q)
{
	for (size_t i = 0; i < q->r.count; i++)
		free(q->json[i]);
}

/* Submits each of qs[0..n) (all at once when the link allows), checks that
 * wire_bytes is set as each starts, and waits until every one is answered. */
static void send_all(struct link *l, struct request **qs, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		ck_assert_int_eq(l->tx->submit(l->state, &qs[i]->r), 0);
		/* set when it starts: the agent charges its bucket right here */
		ck_assert_uint_gt(qs[i]->r.wire_bytes, qs[i]->r.count > 1 ? 100 : 0);
	}
	size_t done = 0;
	double end = th_now() + 60;
	while (done < n && th_now() < end) {
		struct spool_tx_request *got[8];
		int k = l->tx->poll(l->state, 1, got, 8);
		ck_assert_int_ge(k, 0);
		done += (size_t)k;
	}
	ck_assert_uint_eq(done, n);
	for (size_t i = 0; i < n; i++) {
		ck_assert_msg(qs[i]->r.status.call == SPOOL_TXC_DONE, "call %d: %s",
		              qs[i]->r.status.call, qs[i]->r.status.message);
		for (size_t k = 0; k < qs[i]->r.count; k++)
			ck_assert_int_eq(qs[i]->out[k].result, SPOOL_TX_ACCEPTED);
	}
}

/* ---- what the receiver counted ---- */

struct counted {
	long requests, gzip_requests, bytes_in, bytes_inflated, accepted;
	long request_bytes; /* head and body; -1 when this receiver does not count it */
};

static struct counted counted(const struct th_rx *rx)
{
	json_t *st = th_rx_stats(rx);
	ck_assert_ptr_nonnull(st);
	struct counted c = {
	    .requests = (long)json_integer_value(json_object_get(st, "requests")),
	    .gzip_requests = (long)json_integer_value(json_object_get(st, "gzip_requests")),
	    .bytes_in = (long)json_integer_value(json_object_get(st, "bytes_in")),
	    .bytes_inflated = (long)json_integer_value(json_object_get(st, "bytes_inflated")),
	    .accepted = (long)json_integer_value(json_object_get(st, "accepted")),
	    .request_bytes = json_is_integer(json_object_get(st, "request_bytes"))
	                         ? (long)json_integer_value(json_object_get(st, "request_bytes"))
	                         : -1,
	};
	json_decref(st);
	return c;
}

/* The transports' own count against the receiver's: the bodies exactly
 * (bytes_in), and the whole requests within a few bytes (request_bytes,
 * where the receiver counts the head as the header lines it parsed). */
static void assert_wire_matches(const struct counted *c, uint64_t wire, long requests)
{
	ck_assert_int_eq(c->requests, requests);
	long head = (long)wire - c->bytes_in;
	ck_assert_msg(head >= 120 * requests && head <= 500 * requests,
	              "%llu wire bytes for %ld bytes of body in %ld requests",
	              (unsigned long long)wire, c->bytes_in, requests);
	if (c->request_bytes >= 0)
		ck_assert_msg(labs((long)wire - c->request_bytes) <= 4 * requests,
		              "the transport said %llu bytes, the receiver counted %ld",
		              (unsigned long long)wire, c->request_bytes);
}

/* ---- tests ---- */

/* One batch of 200, gzip on (_i 0) and off (_i 1). */
START_TEST(batch_wire_bytes)
{
	bool gzip = _i == 0;
	struct th_rx rx;
	th_rx_start(&rx, NULL, NULL);
	struct link l;
	link_open(&l, &spool_tx_http_batch, rx.url, &(struct link_opts){.gzip = gzip});
	struct request *q = malloc(sizeof(*q));
	request_fill(q, 1, 200, 40);
	send_all(&l, &q, 1);
	struct counted c = counted(&rx);
	ck_assert_int_eq(c.accepted, 200);
	assert_wire_matches(&c, q->r.wire_bytes, 1);
	/* {"logs":[e1,e2,...]}: the JSON, 199 commas and 11 bytes around */
	size_t json = q->json_bytes + 199 + 11;
	if (gzip) {
		ck_assert_int_eq(c.gzip_requests, 1);
		ck_assert_int_eq(c.bytes_inflated, (long)json);
		ck_assert_msg(c.bytes_in * 4 < (long)json, "%ld bytes of gzip for %zu of JSON",
		              c.bytes_in, json);
	} else {
		ck_assert_int_eq(c.gzip_requests, 0);
		ck_assert_int_eq(c.bytes_in, (long)json);
	}
	request_free(q);
	free(q);
	link_close(&l);
	th_rx_stop(&rx);
}
END_TEST

/* Singles with an API key, extra headers and credentials in the URL (an
 * Authorization header of libcurl's own), three in flight at once. */
START_TEST(singles_in_flight_with_headers)
{
	struct th_rx rx;
	th_rx_start(&rx, NULL, "--api-key", "key-0123456789-wire", NULL);
	char url[128];
	snprintf(url, sizeof(url), "http://user:s%%65cret@127.0.0.1:%d", rx.port);
	struct link l;
	link_open(&l, &spool_tx_http_single, url,
	          &(struct link_opts){.gzip = true,
	                              .api_key = "key-0123456789-wire",
	                              .extra_headers = true,
	                              .in_flight = 3});
	struct request *q[3];
	uint64_t wire = 0;
	for (size_t i = 0; i < 3; i++) {
		q[i] = malloc(sizeof(*q[i]));
		request_fill(q[i], 10 + i, 1, 100 * i);
	}
	send_all(&l, q, 3);
	for (size_t i = 0; i < 3; i++) {
		wire += q[i]->r.wire_bytes;
		request_free(q[i]);
		free(q[i]);
	}
	struct counted c = counted(&rx);
	ck_assert_int_eq(c.accepted, 3);
	ck_assert_int_eq(c.gzip_requests, 3);
	assert_wire_matches(&c, wire, 3);
	link_close(&l);
	th_rx_stop(&rx);
}
END_TEST

/* A 415 to the gzip body: the plain resend's bytes are added to the same
 * request's wire_bytes, so both attempts are counted. */
START_TEST(resend_after_415_counted)
{
	struct th_rx rx;
	th_rx_start(&rx, NULL, "--no-gzip", NULL);
	struct link l;
	link_open(&l, &spool_tx_http_batch, rx.url, &(struct link_opts){.gzip = true});
	struct request *q = malloc(sizeof(*q));
	request_fill(q, 1, 50, 20);
	send_all(&l, &q, 1);
	struct counted c = counted(&rx);
	ck_assert_int_eq(c.accepted, 50);
	ck_assert_int_eq(c.gzip_requests, 0);
	assert_wire_matches(&c, q->r.wire_bytes, 2);
	request_free(q);
	free(q);
	link_close(&l);
	th_rx_stop(&rx);
}
END_TEST

/* bandwidth_limit: one request of about 240 KB at 80 KB/s takes about 3 s
 * (libcurl holds its writes to the limit), where nothing holds it back
 * otherwise.  gzip is off so that the body keeps its size. */
START_TEST(one_request_held_to_the_limit)
{
	struct th_rx rx;
	th_rx_start(&rx, NULL, NULL);
	struct link l;
	link_open(&l, &spool_tx_http_batch, rx.url,
	          &(struct link_opts){.gzip = false, .bandwidth_limit = 80000});
	struct request *q = malloc(sizeof(*q));
	request_fill(q, 1, 480, 380);
	double t0 = th_now();
	send_all(&l, &q, 1);
	double took = th_now() - t0;
	ck_assert_uint_gt(q->r.wire_bytes, 230000);
	double at_limit = (double)q->r.wire_bytes / 80000;
	/* libcurl may write its first upload buffer (64 KiB) before it waits */
	ck_assert_msg(took >= at_limit - 65536.0 / 80000 - 0.2, "%.0f bytes in %.2f s at 80000 B/s",
	              (double)q->r.wire_bytes, took);
	ck_assert_int_eq(counted(&rx).accepted, 480);
	request_free(q);
	free(q);
	link_close(&l);
	th_rx_stop(&rx);
}
END_TEST

/* The file transport: wire_bytes is what it wrote. */
START_TEST(file_wire_bytes)
{
	char dir[] = "/tmp/agent-test-wire-XXXXXX";
	ck_assert_ptr_nonnull(mkdtemp(dir));
	char path[128];
	snprintf(path, sizeof(path), "%s/out.jsonl", dir);
	struct spool_tx_value v = {.set = 1, .text = path};
	struct spool_tx_config cfg = {
	    .struct_size = sizeof(cfg),
	    .name = "file",
	    .values = &v,
	    .nvalues = 1,
	    .max_in_flight = 1,
	    .log = quiet,
	};
	void *st = NULL;
	char err[256] = "";
	ck_assert_msg(spool_tx_file.create(&cfg, &st, err, sizeof(err)) == 0, "%s", err);
	struct request *q = malloc(sizeof(*q));
	uint64_t wire = 0;
	for (int round = 0; round < 2; round++) {
		request_fill(q, 1 + 20 * (uint64_t)round, 20, 10);
		ck_assert_int_eq(spool_tx_file.send(st, &q->r), 0);
		ck_assert_uint_eq(q->r.wire_bytes,
		                  q->json_bytes + 20); /* each line and its newline */
		wire += q->r.wire_bytes;
		request_free(q);
	}
	free(q);
	spool_tx_file.destroy(st);
	struct stat sb;
	ck_assert_int_eq(stat(path, &sb), 0);
	ck_assert_uint_eq((uint64_t)sb.st_size, wire);
	unlink(path);
	rmdir(dir);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("agent-wire");
	TCase *tc = tcase_create("wire");
	tcase_set_timeout(tc, 120);
	tcase_add_loop_test(tc, batch_wire_bytes, 0, 2);
	tcase_add_test(tc, singles_in_flight_with_headers);
	tcase_add_test(tc, resend_after_415_counted);
	tcase_add_test(tc, one_request_held_to_the_limit);
	tcase_add_test(tc, file_wire_bytes);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return tc_run(suite());
}
