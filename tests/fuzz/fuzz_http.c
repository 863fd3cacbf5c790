/* fuzz_http.c — the HTTP transports' handling of the server's answer:
 * status, Retry-After header, and body (the batch 207 per-event results of
 * http_batch, the single answer's id of http_single, the "detail" of an
 * error), plugins/http.c, http_batch.c and http_single.c.
 *
 * The per-event parser (apply_results() in http_batch.c) is static, so this
 * file includes http_batch.c and http_single.c (renaming their exported
 * entry points) and drives each transport's send() exactly as the agent
 * does.  The network is replaced: this file defines curl_easy_setopt(),
 * curl_easy_perform() and curl_easy_getinfo(), which take precedence over
 * libcurl's (the rest of libcurl is the real one).  perform() hands the
 * fuzzed header lines and body to the callbacks http.c registered, and
 * getinfo() reports the fuzzed status.  No plugin code is changed.
 *
 * Input layout:
 *   byte 0     flags: 1 http_single (else http_batch), 2 gzip on,
 *              4 delivery metadata, 8 event 1 is corrupt, 16 no answer
 *              (network error), 32 body delivered in one chunk
 *   byte 1     events in the batch: 1 + byte % 8
 *   bytes 2-3  HTTP status, big-endian, modulo 600
 *   byte 4     length H of the header block
 *   H bytes    header block, handed to the header callback line by line
 *   the rest   the response body
 * Aborts when an outcome or the call status is out of range or not
 * NUL-terminated, or when a corrupt event is not rejected as such. */
#define CURL_DISABLE_TYPECHECK 1
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <spool/spool.h>

#define spool_transport_entry fuzz_http_batch_entry
#include "http_batch.c"
#undef spool_transport_entry
#define spool_transport_entry fuzz_http_single_entry
#include "http_single.c"
#undef spool_transport_entry

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* ---- the replaced part of libcurl ---- */

static struct {
	curl_write_callback write_cb;
	void *write_ud;
	curl_write_callback header_cb;
	void *header_ud;
	bool fail;
	bool one_chunk;
	long status;
	const uint8_t *hdr, *body;
	size_t hdr_len, body_len;
	unsigned performs;
} mock;

CURLcode curl_easy_setopt(CURL *h, CURLoption opt, ...)
{
	va_list ap;
	va_start(ap, opt);
	switch (opt) {
	case CURLOPT_WRITEFUNCTION:
		mock.write_cb = va_arg(ap, curl_write_callback);
		break;
	case CURLOPT_WRITEDATA:
		mock.write_ud = va_arg(ap, void *);
		break;
	case CURLOPT_HEADERFUNCTION:
		mock.header_cb = va_arg(ap, curl_write_callback);
		break;
	case CURLOPT_HEADERDATA:
		mock.header_ud = va_arg(ap, void *);
		break;
	default:
		break; /* the real handle keeps its defaults; it never sends */
	}
	va_end(ap);
	(void)h;
	return CURLE_OK;
}

/* Hands p[0, n) to cb in a buffer of exactly n bytes (not NUL-terminated,
 * like libcurl's), so ASan sees any read past it. */
static size_t deliver(curl_write_callback cb, void *ud, const uint8_t *p, size_t n)
{
	char *copy = malloc(n ? n : 1);
	if (!copy)
		abort();
	if (n)
		memcpy(copy, p, n);
	size_t r = cb(copy, 1, n, ud);
	free(copy);
	return r;
}

CURLcode curl_easy_perform(CURL *h)
{
	(void)h;
	mock.performs++;
	if (mock.fail)
		return CURLE_COULDNT_CONNECT;
	/* status line, then the fuzzed header lines, then the blank line */
	static const char status_line[] = "HTTP/1.1 200 OK\r\n";
	deliver(mock.header_cb, mock.header_ud, (const uint8_t *)status_line, sizeof(status_line) - 1);
	size_t i = 0;
	while (i < mock.hdr_len) {
		const uint8_t *nl = memchr(mock.hdr + i, '\n', mock.hdr_len - i);
		size_t n = nl ? (size_t)(nl - (mock.hdr + i)) + 1 : mock.hdr_len - i;
		deliver(mock.header_cb, mock.header_ud, mock.hdr + i, n);
		i += n;
	}
	deliver(mock.header_cb, mock.header_ud, (const uint8_t *)"\r\n", 2);
	if (mock.body_len) {
		size_t half = mock.one_chunk ? mock.body_len : mock.body_len / 2;
		if (half && deliver(mock.write_cb, mock.write_ud, mock.body, half) != half)
			return CURLE_WRITE_ERROR;
		if (mock.body_len > half &&
		    deliver(mock.write_cb, mock.write_ud, mock.body + half, mock.body_len - half) !=
			    mock.body_len - half)
			return CURLE_WRITE_ERROR;
	}
	return CURLE_OK;
}

CURLcode curl_easy_getinfo(CURL *h, CURLINFO info, ...)
{
	(void)h;
	va_list ap;
	va_start(ap, info);
	if (info == CURLINFO_RESPONSE_CODE)
		*va_arg(ap, long *) = mock.status;
	va_end(ap);
	return CURLE_OK;
}

/* ---- the events ---- */

/* {"message": "fuzz event N", "client_event_id": "01HZZZZZZZZZZZZZZZZZZZZZZN"} */
static size_t make_event(unsigned char *buf, unsigned n)
{
	size_t o = 0;
	buf[o++] = 0x82;
	buf[o++] = 0xa7;
	memcpy(buf + o, "message", 7);
	o += 7;
	buf[o++] = 0xac;
	memcpy(buf + o, "fuzz event ", 11);
	o += 11;
	buf[o++] = (unsigned char)('0' + n % 10);
	buf[o++] = 0xaf;
	memcpy(buf + o, "client_event_id", 15);
	o += 15;
	buf[o++] = 0xba;
	memcpy(buf + o, "01HZZZZZZZZZZZZZZZZZZZZZZ", 25);
	o += 25;
	buf[o++] = (unsigned char)('0' + n % 10);
	return o;
}

static void nolog(void *ctx, int level, const char *fmt, ...)
{
	(void)ctx;
	(void)level;
	(void)fmt;
}

static void fail(const char *what, size_t k)
{
	fprintf(stderr, "fuzz_http: %s (event %zu)\n", what, k);
	abort();
}

static bool terminated(const char *s, size_t cap)
{
	return memchr(s, '\0', cap) != NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 5)
		return 0;
	unsigned flags = data[0];
	size_t count = 1 + data[1] % 8;
	memset(&mock, 0, sizeof(mock));
	mock.status = (long)(((unsigned)data[2] << 8 | data[3]) % 600);
	mock.fail = flags & 16;
	mock.one_chunk = flags & 32;
	size_t hl = data[4];
	if (hl > size - 5)
		hl = size - 5;
	mock.hdr = data + 5;
	mock.hdr_len = hl;
	mock.body = data + 5 + hl;
	mock.body_len = size - 5 - hl;

	struct spool_tx_config cfg = {
		.struct_size = sizeof(cfg),
		.endpoint = "http://127.0.0.1:9",
		.api_key = "fuzz-key-0123456789",
		.gzip = (flags & 2) != 0,
		.connect_timeout = 1,
		.request_timeout = 1,
		.tls_verify = 1,
		.user_agent = "master-log-spool/fuzz",
		.max_body_bytes = 0,
		.log = nolog,
	};
	const struct spool_transport *tx = flags & 1 ? &fuzz_http_single_entry : &fuzz_http_batch_entry;
	char err[256];
	void *st = NULL;
	if (tx->create(&cfg, &st, err, sizeof(err)) != 0)
		abort();

	unsigned char ev_data[8][80];
	struct spool_tx_event ev[8];
	memset(ev, 0, sizeof(ev));
	for (size_t k = 0; k < count; k++) {
		ev[k].seq = 1000 + k;
		ev[k].severity = SPOOL_SEV_INFO;
		ev[k].enqueue_us = 1700000000000000;
		ev[k].data = ev_data[k];
		ev[k].len = make_event(ev_data[k], (unsigned)k);
		ev[k].client_event_id = (const char *)ev_data[k] + ev[k].len - 26;
		ev[k].client_event_id_len = 26;
		ev[k].attempts = (uint32_t)k;
	}
	bool corrupt = (flags & 8) && count > 1;
	if (corrupt)
		ev[1].len = 5; /* a map header and a truncated key */
	struct spool_tx_batch b = {
		.events = ev,
		.count = count,
		.delivery_metadata = (flags & 4) != 0,
		.now_us = 1700000001000000,
	};
	struct spool_tx_outcome out[8];
	memset(out, 0, sizeof(out));
	struct spool_tx_status call = {.call = SPOOL_TXC_DONE, .retry_after = -1};
	int rc = tx->send(st, &b, out, &call);
	if (rc == 0) {
		if (call.call < SPOOL_TXC_DONE || call.call > SPOOL_TXC_TRANSIENT)
			fail("call status out of range", 0);
		if (!terminated(call.message, sizeof(call.message)))
			fail("call message not terminated", 0);
		for (size_t k = 0; k < count; k++) {
			if (out[k].result < SPOOL_TX_RETRY || out[k].result > SPOOL_TX_RETRY_AFTER)
				fail("outcome out of range", k);
			if (!terminated(out[k].id, sizeof(out[k].id)) ||
			    !terminated(out[k].reason, sizeof(out[k].reason)))
				fail("outcome id or reason not terminated", k);
		}
		/* http_single stops at the first answer about the whole endpoint, so
		 * it may never reach event 1 */
		if (corrupt && !(flags & 1) &&
		    (out[1].result != SPOOL_TX_REJECTED || out[1].status != SPOOL_ECORRUPT))
			fail("corrupt event not rejected as corrupt", 1);
		if (!mock.fail && !(flags & 1) && mock.status >= 200 && mock.status < 300 &&
		    mock.status != 207)
			for (size_t k = 0; k < count; k++)
				if (!(corrupt && k == 1) && out[k].result != SPOOL_TX_ACCEPTED)
					fail("2xx batch answer did not accept the event", k);
	}
	tx->destroy(st);
	return 0;
}
