/* http.c — the libcurl side shared by http_batch and http_single (and the
 * client's direct send): the `http:` keys, the fate table, and transfers
 * in flight on one multi handle. */
#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <libdeflate.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "codec/endpoint.h"
#include "http.h"

#define RESP_MAX (16u << 20) /* answer bytes kept */

/* gzip: libdeflate at level 1.  On agent-bench's batches of 1000 it takes
 * 0.5 ms a batch where zlib takes 1.4 ms at its default level and 0.6 ms at
 * level 1, for a body 1% larger than zlib's default (on varied events: 7%
 * larger, twice as fast as zlib's level 1 and smaller than its level 3).
 * With it the agent's CPU is about 1.1 times that without gzip; with zlib's
 * level 1 or libdeflate's level 4 it was 1.35 times. */
#define GZIP_LEVEL 1

/* ---- settings ---- */

const struct spool_tx_option http_options[HTTP_NKEYS] = {
	[HTTP_ENDPOINT] = {"endpoint", SPOOL_TX_STRING, SPOOL_TX_URL, NULL, "MASTER_LOG_ENDPOINT", 0, 0, NULL,
			   "Master Log URL: the root, /api/v1 or /api/v1/logs"},
	[HTTP_API_KEY] = {"api_key", SPOOL_TX_STRING, SPOOL_TX_SECRET, NULL, "MASTER_LOG_API_KEY", 0, 0, NULL,
			  "API key sent as X-API-Key (never logged)"},
	[HTTP_API_KEY_FILE] = {"api_key_file", SPOOL_TX_STRING, SPOOL_TX_SECRET_FILE, NULL, NULL, 0, 0, NULL,
			       "file holding the API key (trailing white space ignored; owned by the agent's "
			       "user, mode 0600 or 0400); not with api_key"},
	[HTTP_HEADERS] = {"headers", SPOOL_TX_MAP, SPOOL_TX_TEXT, NULL, NULL, 0, 0, NULL,
			  "extra request headers, a map of name: value (not X-API-Key)"},
	[HTTP_GZIP] = {"gzip", SPOOL_TX_BOOL, SPOOL_TX_TEXT, "true", NULL, 0, 0, NULL,
		       "gzip request bodies (libdeflate, level 1; a 415 turns it off until restart)"},
	[HTTP_TLS_VERIFY] = {"tls.verify", SPOOL_TX_BOOL, SPOOL_TX_TEXT, "true", NULL, 0, 0, NULL,
			     "verify the server's certificate and name (false logs a warning at every start "
			     "and reload)"},
	[HTTP_TLS_CA_FILE] = {"tls.ca_file", SPOOL_TX_STRING, SPOOL_TX_READ_FILE, NULL, "MASTER_LOG_CA_FILE", 0, 0,
			      NULL, "CA bundle (PEM) to verify the server with instead of the system's"},
	[HTTP_TLS_CLIENT_CERT] = {"tls.client_cert", SPOOL_TX_STRING, SPOOL_TX_READ_FILE, NULL, NULL, 0, 0, NULL,
				  "client certificate (PEM)"},
	[HTTP_TLS_CLIENT_KEY] = {"tls.client_key", SPOOL_TX_STRING, SPOOL_TX_READ_FILE, NULL, NULL, 0, 0, NULL,
				 "client key (PEM)"},
	[HTTP_CONNECT_TIMEOUT] = {"timeouts.connect_seconds", SPOOL_TX_NUMBER, SPOOL_TX_TEXT, "10", NULL, 0.001,
				  3600, NULL, "TCP and TLS connect timeout"},
	[HTTP_REQUEST_TIMEOUT] = {"timeouts.request_seconds", SPOOL_TX_NUMBER, SPOOL_TX_TEXT, "30", NULL, 0.001,
				  86400, NULL, "whole-request timeout"},
	[HTTP_PROXY] = {"proxy", SPOOL_TX_STRING, SPOOL_TX_TEXT, NULL, NULL, 0, 0, NULL,
			"proxy URL (http://host:port, socks5://...), or none to ignore http_proxy, https_proxy "
			"and all_proxy, which libcurl honours otherwise (with no_proxy)"},
};

static int blame(size_t *key, size_t k, char *why, size_t whylen, const char *text)
{
	*key = k;
	snprintf(why, whylen, "%s", text);
	return -1;
}

int http_check(const struct spool_tx_value *v, size_t n, size_t *key, char *why, size_t whylen)
{
	if (n < HTTP_NKEYS)
		return blame(key, 0, why, whylen, "incomplete settings");
	if (!v[HTTP_ENDPOINT].set)
		return blame(key, HTTP_ENDPOINT, why, whylen,
			     "not set (nor MASTER_LOG_ENDPOINT); the HTTP transports need it");
	if (v[HTTP_API_KEY].set && v[HTTP_API_KEY_FILE].set)
		return blame(key, HTTP_API_KEY, why, whylen,
			     "'api_key' and 'api_key_file' are both set: give one, not both");
	if (v[HTTP_TLS_CLIENT_CERT].set != v[HTTP_TLS_CLIENT_KEY].set)
		return blame(key, v[HTTP_TLS_CLIENT_KEY].set ? HTTP_TLS_CLIENT_KEY : HTTP_TLS_CLIENT_CERT, why,
			     whylen, "tls.client_cert and tls.client_key go together: give both or neither");
	for (size_t i = 0; i < v[HTTP_HEADERS].npairs; i++)
		if (strcasecmp(v[HTTP_HEADERS].pairs[i].name, "X-API-Key") == 0)
			return blame(key, HTTP_HEADERS, why, whylen,
				     "set the key with api_key or api_key_file, not as a header");
	return 0;
}

/* ---- the fate table ---- */

enum http_fate http_fate(long s, enum http_use use)
{
	/* PROTOCOL.md, row for row: single event, batch as a whole, one entry
	 * of a 207 */
	static const struct {
		long lo, hi;
		enum http_fate single, batch, result;
	} rows[] = {
		{207, 207, HTTP_ACCEPT, HTTP_PER_EVENT, HTTP_ACCEPT},
		{200, 299, HTTP_ACCEPT, HTTP_ACCEPT, HTTP_ACCEPT},
		{400, 400, HTTP_REJECT, HTTP_BISECT, HTTP_REJECT},
		{422, 422, HTTP_REJECT, HTTP_BISECT, HTTP_REJECT},
		{401, 401, HTTP_AUTH, HTTP_AUTH, HTTP_KEEP},
		{403, 403, HTTP_AUTH, HTTP_AUTH, HTTP_KEEP},
		{404, 404, HTTP_MISSING, HTTP_FALLBACK, HTTP_KEEP},
		{405, 405, HTTP_MISSING, HTTP_FALLBACK, HTTP_REJECT},
		{501, 501, HTTP_MISSING, HTTP_FALLBACK, HTTP_KEEP},
		{408, 408, HTTP_TRANSIENT, HTTP_TRANSIENT, HTTP_KEEP},
		{429, 429, HTTP_TRANSIENT, HTTP_TRANSIENT, HTTP_KEEP},
		{413, 413, HTTP_REJECT, HTTP_SPLIT, HTTP_REJECT},
		{400, 499, HTTP_TRANSIENT, HTTP_TRANSIENT, HTTP_REJECT}, /* any other 4xx */
		{500, 599, HTTP_TRANSIENT, HTTP_TRANSIENT, HTTP_KEEP},
	};
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++)
		if (s >= rows[i].lo && s <= rows[i].hi)
			return use == HTTP_USE_SINGLE ? rows[i].single
			       : use == HTTP_USE_BATCH ? rows[i].batch
						       : rows[i].result;
	/* no answer, 1xx, 3xx (no redirect is followed), anything else */
	return use == HTTP_USE_RESULT ? HTTP_KEEP : HTTP_TRANSIENT;
}

double http_parse_retry_after(const char *v)
{
	while (*v == ' ' || *v == '\t')
		v++;
	if (!*v)
		return -1;
	if (isdigit((unsigned char)*v)) {
		char *end;
		double s = strtod(v, &end);
		while (*end == ' ' || *end == '\t' || *end == '\r' || *end == '\n')
			end++;
		return *end ? -1 : s;
	}
	char tmp[96];
	snprintf(tmp, sizeof(tmp), "%s", v);
	tmp[strcspn(tmp, "\r\n")] = '\0';
	time_t t = curl_getdate(tmp, NULL);
	if (t == (time_t)-1)
		return -1;
	double d = difftime(t, time(NULL));
	return d < 0 ? 0 : d;
}

void http_detail(const struct http_answer *a, char *buf, size_t len)
{
	buf[0] = '\0';
	if (!a->body || !a->body_len)
		return;
	json_t *j = json_loadb(a->body, a->body_len, 0, NULL);
	const char *d = j && json_is_object(j) ? json_string_value(json_object_get(j, "detail")) : NULL;
	if (d) {
		snprintf(buf, len, "%s", d);
	} else {
		size_t n = a->body_len < len - 1 ? a->body_len : len - 1;
		memcpy(buf, a->body, n);
		buf[n] = '\0';
		for (size_t i = 0; i < n; i++)
			if ((unsigned char)buf[i] < 0x20)
				buf[i] = ' ';
	}
	json_decref(j);
}

void http_fail_call(const struct http_answer *a, enum http_fate fate, struct spool_tx_status *st,
		    const char *what)
{
	long s = a->status;
	st->status = (int)s;
	st->retry_after = a->retry_after;
	st->call = fate == HTTP_AUTH ? SPOOL_TXC_AUTH : fate == HTTP_MISSING ? SPOOL_TXC_MISSING : SPOOL_TXC_TRANSIENT;
	if (s == 0) {
		snprintf(st->message, sizeof(st->message), "%s: %s", what, a->message ? a->message : "no answer");
		return;
	}
	char detail[160];
	http_detail(a, detail, sizeof(detail));
	if (fate == HTTP_AUTH)
		snprintf(st->message, sizeof(st->message), "%s: %ld: credentials refused (check api_key) %s", what,
			 s, detail);
	else if (fate == HTTP_MISSING)
		snprintf(st->message, sizeof(st->message), "%s: %ld: endpoint missing (check the endpoint) %s",
			 what, s, detail);
	else if (s >= 300 && s < 400)
		snprintf(st->message, sizeof(st->message),
			 "%s: %ld redirect not followed (%s%.120s; the API key never follows a redirect); fix the "
			 "endpoint",
			 what, s, a->location && a->location[0] ? "Location: " : "no Location",
			 a->location ? a->location : "");
	else
		snprintf(st->message, sizeof(st->message), "%s: %ld %s", what, s, detail);
}

/* ---- transfers ---- */

struct http_xfer {
	CURL *easy;
	struct curl_slist *headers;
	/* The body (http_submit_events()): open, the JSON of each event with
	 * sep between, close.  Read from the events themselves by on_read()
	 * while the transfer runs; gathered into `body` when it is small or
	 * to be compressed (start()). */
	const struct spool_tx_event *ev;
	size_t nev;
	const char *piece[3]; /* open, sep, close */
	size_t piece_len[3];
	size_t body_len; /* of the JSON, uncompressed */
	size_t at;	 /* on_read(): next piece (0 open, 2k+1 event k, 2k+2 sep or close) */
	size_t off;	 /* on_read(): bytes of piece `at` already read */
	struct spool_buf body; /* the JSON gathered */
	struct spool_buf gz;   /* compressed body */
	struct spool_buf resp; /* answer body */
	double retry_after;
	char location[256];
	char errbuf[CURL_ERROR_SIZE];
	char idem[128];
	bool gzipped; /* this attempt sent gz */
	bool busy;
	struct spool_tx_request *req;
};

struct http_client {
	CURLM *multi;
	const struct spool_tx_config *cfg;
	http_answer_fn on_answer;
	char *url;
	char shown[300]; /* url without user:password@, for messages */
	char user_agent[160];
	const char *api_key; /* api_key or api_key_file's key; NULL: none */
	bool gzip;	     /* turned off for good after a 415 */
	/* One compressor for every transfer (each body is compressed whole in
	 * start(), one at a time); NULL while gzip is off. */
	struct libdeflate_compressor *deflater;
	/* Header bytes every request carries whatever its body: the request
	 * line, Host, User-Agent, Accept, credentials of the URL, the blank
	 * line (fixed_head_bytes()). */
	size_t fixed_head;
	struct http_xfer *xfers;
	size_t nxfers;
	struct spool_tx_request **ready; /* finished without a transfer, or answered */
	size_t nready;
};

/* Piece i of x's body (see struct http_xfer). */
static const char *body_piece(const struct http_xfer *x, size_t i, size_t *len)
{
	if (i == 0) {
		*len = x->piece_len[0];
		return x->piece[0];
	}
	if (i % 2) {
		*len = x->ev[i / 2].json_len;
		return x->ev[i / 2].json;
	}
	size_t which = i == 2 * x->nev ? 2 : 1;
	*len = x->piece_len[which];
	return x->piece[which];
}

/* libcurl's read callback: the next bytes of the body, straight from the
 * events (one copy, into libcurl's upload buffer). */
static size_t on_read(char *buf, size_t size, size_t nitems, void *ud)
{
	struct http_xfer *x = ud;
	size_t room = size * nitems, n = 0;
	while (n < room && x->at <= 2 * x->nev) {
		size_t len;
		const char *p = body_piece(x, x->at, &len);
		size_t take = len - x->off < room - n ? len - x->off : room - n;
		memcpy(buf + n, p + x->off, take);
		n += take;
		x->off += take;
		if (x->off == len) {
			x->at++;
			x->off = 0;
		}
	}
	return n;
}

/* libcurl rewinds to send a body again (a request retried on a fresh
 * connection after a kept-alive one died): only to the start. */
static int on_seek(void *ud, curl_off_t offset, int origin)
{
	struct http_xfer *x = ud;
	if (offset != 0 || origin != SEEK_SET)
		return CURL_SEEKFUNC_CANTSEEK;
	x->at = 0;
	x->off = 0;
	return CURL_SEEKFUNC_OK;
}

/* Bodies up to this size are gathered and handed to libcurl whole
 * (libcurl's own limit for sending a POST body with its headers). */
#define INLINE_BODY_MAX (64 * 1024)

/* Gathers x's body into x->body. */
static int gather_body(struct http_xfer *x)
{
	x->body.len = 0;
	if (spool_buf_reserve(&x->body, x->body_len))
		return -ENOMEM;
	for (size_t i = 0; i <= 2 * x->nev; i++) {
		size_t len;
		const char *p = body_piece(x, i, &len);
		if (len)
			memcpy(x->body.data + x->body.len, p, len);
		x->body.len += len;
	}
	return 0;
}

static size_t on_body(char *ptr, size_t size, size_t nmemb, void *ud)
{
	struct http_xfer *x = ud;
	size_t n = size * nmemb;
	size_t keep = x->resp.len >= RESP_MAX ? 0 : (n < RESP_MAX - x->resp.len ? n : RESP_MAX - x->resp.len);
	if (keep && spool_buf_append(&x->resp, ptr, keep))
		return 0; /* out of memory: abort the transfer */
	return n;
}

static size_t on_header(char *buf, size_t size, size_t nitems, void *ud)
{
	struct http_xfer *x = ud;
	size_t n = size * nitems;
	static const char name[] = "retry-after:", loc[] = "location:";
	if (n > sizeof(loc) - 1 && strncasecmp(buf, loc, sizeof(loc) - 1) == 0) {
		size_t off = sizeof(loc) - 1, vl = n - off;
		while (vl && (buf[off] == ' ' || buf[off] == '\t'))
			off++, vl--;
		if (vl >= sizeof(x->location))
			vl = sizeof(x->location) - 1;
		memcpy(x->location, buf + off, vl);
		x->location[vl] = '\0';
		for (size_t i = 0; i < vl; i++)
			if ((unsigned char)x->location[i] < 0x20 || x->location[i] == 0x7f)
				x->location[i] = x->location[i] == '\r' || x->location[i] == '\n' ? '\0' : '?';
	}
	if (n > sizeof(name) - 1 && strncasecmp(buf, name, sizeof(name) - 1) == 0) {
		char v[128];
		size_t vl = n - (sizeof(name) - 1);
		if (vl >= sizeof(v))
			vl = sizeof(v) - 1;
		memcpy(v, buf + sizeof(name) - 1, vl);
		v[vl] = '\0';
		x->retry_after = http_parse_retry_after(v);
	}
	return n;
}

static const char *text(const struct spool_tx_config *cfg, enum http_key k)
{
	return k < cfg->nvalues && cfg->values[k].set ? cfg->values[k].text : NULL;
}

/* The agent's bandwidth_limit, 0 from an agent that does not know it. */
static double bandwidth_limit(const struct spool_tx_config *cfg)
{
	size_t end = offsetof(struct spool_tx_config, bandwidth_limit) + sizeof(cfg->bandwidth_limit);
	return cfg->struct_size >= end && cfg->bandwidth_limit > 0 ? cfg->bandwidth_limit : 0;
}

static int setup_easy(struct http_client *c, struct http_xfer *x)
{
	const struct spool_tx_config *cfg = c->cfg;
	const struct spool_tx_value *v = cfg->values;
	CURL *h = x->easy = curl_easy_init();
	if (!h)
		return -ENOMEM;
	bool verify = v[HTTP_TLS_VERIFY].boolean != 0;
	curl_easy_setopt(h, CURLOPT_URL, c->url);
	curl_easy_setopt(h, CURLOPT_POST, 1L);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_USERAGENT, c->user_agent);
	/* never follow a redirect: the key must not travel to another host */
	curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, (long)(v[HTTP_CONNECT_TIMEOUT].number * 1000));
	curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)(v[HTTP_REQUEST_TIMEOUT].number * 1000));
	curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
	curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, verify ? 1L : 0L);
	curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, verify ? 2L : 0L);
	if (text(cfg, HTTP_TLS_CA_FILE))
		curl_easy_setopt(h, CURLOPT_CAINFO, text(cfg, HTTP_TLS_CA_FILE));
	if (text(cfg, HTTP_TLS_CLIENT_CERT))
		curl_easy_setopt(h, CURLOPT_SSLCERT, text(cfg, HTTP_TLS_CLIENT_CERT));
	if (text(cfg, HTTP_TLS_CLIENT_KEY))
		curl_easy_setopt(h, CURLOPT_SSLKEY, text(cfg, HTTP_TLS_CLIENT_KEY));
	const char *proxy = text(cfg, HTTP_PROXY);
	if (proxy) /* "" turns libcurl's use of the environment off */
		curl_easy_setopt(h, CURLOPT_PROXY, strcasecmp(proxy, "none") == 0 ? "" : proxy);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, x);
	/* used while CURLOPT_POSTFIELDS is NULL (an uncompressed body) */
	curl_easy_setopt(h, CURLOPT_READFUNCTION, on_read);
	curl_easy_setopt(h, CURLOPT_READDATA, x);
	curl_easy_setopt(h, CURLOPT_SEEKFUNCTION, on_seek);
	curl_easy_setopt(h, CURLOPT_SEEKDATA, x);
	curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(h, CURLOPT_HEADERDATA, x);
	curl_easy_setopt(h, CURLOPT_ERRORBUFFER, x->errbuf);
	curl_easy_setopt(h, CURLOPT_PRIVATE, x);
	/* each request on its own stays under the cap; the agent averages
	 * over requests.  Without a cap a batch body goes to the socket in
	 * pieces of 512 KiB (libcurl's default of 64 KiB took nine send()
	 * calls for a 400 KB batch); with one, the default's smaller bursts
	 * keep the pace even. */
	if (bandwidth_limit(cfg) > 0)
		curl_easy_setopt(h, CURLOPT_MAX_SEND_SPEED_LARGE,
				 (curl_off_t)(bandwidth_limit(cfg) < 1 ? 1 : bandwidth_limit(cfg)));
	else
		curl_easy_setopt(h, CURLOPT_UPLOAD_BUFFERSIZE, 512L * 1024);
	return 0;
}

/* Whether no_proxy (as libcurl reads it) exempts host: "*", or a name
 * that is the host or a domain suffix of it. */
static bool no_proxy_for(const char *host, size_t hlen)
{
	const char *np = getenv("no_proxy");
	if (!np || !*np)
		np = getenv("NO_PROXY");
	if (!np)
		return false;
	for (const char *p = np; *p;) {
		size_t n = strcspn(p, ", ");
		const char *e = p;
		size_t en = n;
		if (en && e[0] == '.')
			e++, en--;
		if ((n == 1 && p[0] == '*') ||
		    (en && en <= hlen && strncasecmp(host + hlen - en, e, en) == 0 &&
		     (en == hlen || host[hlen - en - 1] == '.')))
			return true;
		p += n;
		p += strspn(p, ", ");
	}
	return false;
}

/* A plain-http endpoint reached through a proxy hands the proxy the API key
 * in clear: say so at start. */
static void warn_clear_proxy(struct http_client *c)
{
	const char *url = c->url;
	if (strncasecmp(url, "http://", 7) != 0)
		return;
	const char *proxy = text(c->cfg, HTTP_PROXY);
	const char *from = "proxy";
	if (proxy && strcasecmp(proxy, "none") == 0)
		return;
	if (!proxy) {
		const char *auth = url + 7;
		const char *at = memrchr(auth, '@', strcspn(auth, "/"));
		const char *host = at ? at + 1 : auth;
		size_t hlen = host[0] == '[' ? strcspn(host, "]") + 1 : strcspn(host, ":/");
		static const char *const vars[] = {"http_proxy", "all_proxy", "ALL_PROXY"};
		for (size_t i = 0; i < 3 && !proxy; i++)
			if (getenv(vars[i]) && *getenv(vars[i]))
				proxy = getenv(vars[i]), from = vars[i];
		if (!proxy || no_proxy_for(host, hlen))
			return;
	}
	char shown[300];
	spool_endpoint_display(proxy, shown, sizeof(shown));
	c->cfg->log(c->cfg->log_ctx, SPOOL_TX_LOG_WARNING,
		    "%s is plain http and goes through the %s %s: the API key and the events travel in clear "
		    "to it; use an https endpoint, or set proxy: none",
		    c->shown, from, shown);
}

/* ---- bytes on the wire ----
 *
 * What libcurl writes for a request, counted from what it is given:
 *
 *   POST PATH HTTP/1.1            Host: HOST[:PORT] (no default port)
 *   Authorization: Basic ...      (credentials in the URL)
 *   User-Agent, Accept            (unless the extra headers set them)
 *   the header list, Content-Length: N, and a blank line.
 *
 * Exact for HTTP/1.1 straight to the server; TLS adds its framing (some 30
 * bytes per 16 KiB), a proxy a longer request line, and over HTTP/2 (header
 * compression) it is more than the wire carries. */

static bool has_header(const struct http_client *c, const char *name)
{
	const struct spool_tx_value *hv = &c->cfg->values[HTTP_HEADERS];
	for (size_t i = 0; i < hv->npairs; i++)
		if (strcasecmp(hv->pairs[i].name, name) == 0)
			return true;
	return false;
}

static size_t url_part_len(CURLU *u, CURLUPart part, unsigned flags)
{
	char *v = NULL;
	size_t n = curl_url_get(u, part, &v, flags) == CURLUE_OK && v ? strlen(v) : 0;
	curl_free(v);
	return n;
}

/* c->fixed_head from c->url and the configured headers. */
static int fixed_head_bytes(struct http_client *c)
{
	CURLU *u = curl_url();
	if (!u)
		return -ENOMEM;
	if (curl_url_set(u, CURLUPART_URL, c->url, 0) != CURLUE_OK) {
		curl_url_cleanup(u);
		return -EINVAL;
	}
	char *scheme = NULL, *port = NULL;
	curl_url_get(u, CURLUPART_SCHEME, &scheme, 0);
	curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT);
	bool https = scheme && strcasecmp(scheme, "https") == 0;
	bool default_port = port && strcmp(port, https ? "443" : "80") == 0;
	size_t n = strlen("POST ") + url_part_len(u, CURLUPART_PATH, 0) + strlen(" HTTP/1.1\r\n");
	if (!has_header(c, "Host"))
		n += strlen("Host: ") + url_part_len(u, CURLUPART_HOST, 0) +
		     (default_port || !port ? 0 : 1 + strlen(port)) + 2;
	if (url_part_len(u, CURLUPART_USER, 0)) {
		size_t cred = url_part_len(u, CURLUPART_USER, CURLU_URLDECODE) + 1 +
			      url_part_len(u, CURLUPART_PASSWORD, CURLU_URLDECODE);
		n += strlen("Authorization: Basic ") + 4 * ((cred + 2) / 3) + 2;
	}
	if (!has_header(c, "User-Agent"))
		n += strlen("User-Agent: ") + strlen(c->user_agent) + 2;
	if (!has_header(c, "Accept"))
		n += strlen("Accept: */*\r\n");
	c->fixed_head = n + 2;
	curl_free(scheme);
	curl_free(port);
	curl_url_cleanup(u);
	return 0;
}

/* The bytes libcurl sends for a header list: each line and its CRLF, but
 * nothing for "Name:" with no value, which removes a header of its own. */
static size_t list_bytes(const struct curl_slist *l)
{
	size_t n = 0;
	for (; l; l = l->next) {
		const char *colon = strchr(l->data, ':');
		if (colon && colon[1 + strspn(colon + 1, " \t")] == '\0')
			continue;
		n += strlen(l->data) + 2;
	}
	return n;
}

int http_client_create(const struct spool_tx_config *cfg, const char *path, http_answer_fn on_answer,
		       struct http_client **out, char *err, size_t errlen)
{
	*out = NULL;
	if (!cfg || cfg->nvalues < HTTP_NKEYS || !text(cfg, HTTP_ENDPOINT)) {
		snprintf(err, errlen, "no endpoint configured");
		return -EINVAL;
	}
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		snprintf(err, errlen, "curl_global_init failed");
		return -EIO;
	}
	struct http_client *c = calloc(1, sizeof(*c));
	size_t n = cfg->max_in_flight ? cfg->max_in_flight : 1;
	if (c) {
		c->cfg = cfg;
		c->on_answer = on_answer;
		c->gzip = cfg->values[HTTP_GZIP].boolean != 0;
		c->api_key = text(cfg, HTTP_API_KEY) ? text(cfg, HTTP_API_KEY) : text(cfg, HTTP_API_KEY_FILE);
		c->multi = curl_multi_init();
		c->xfers = calloc(n, sizeof(*c->xfers));
		c->ready = calloc(n, sizeof(*c->ready));
		size_t ul = strlen(text(cfg, HTTP_ENDPOINT)) + strlen(path) + 1;
		c->url = malloc(ul);
		if (c->url)
			snprintf(c->url, ul, "%s%s", text(cfg, HTTP_ENDPOINT), path);
		c->nxfers = n;
	}
	if (!c || !c->multi || !c->xfers || !c->ready || !c->url) {
		snprintf(err, errlen, "out of memory");
		if (c)
			c->nxfers = 0;
		http_client_destroy(c);
		if (!c)
			curl_global_cleanup();
		return -ENOMEM;
	}
	spool_endpoint_display(c->url, c->shown, sizeof(c->shown));
	warn_clear_proxy(c);
	const curl_version_info_data *vi = curl_version_info(CURLVERSION_NOW);
	snprintf(c->user_agent, sizeof(c->user_agent), "%s libcurl/%s",
		 cfg->user_agent ? cfg->user_agent : "master-log-spool", vi->version);
	int rc = fixed_head_bytes(c);
	if (rc) {
		snprintf(err, errlen, rc == -ENOMEM ? "out of memory" : "cannot parse the endpoint %s", c->shown);
		http_client_destroy(c);
		return rc;
	}
	if (c->gzip && !(c->deflater = libdeflate_alloc_compressor(GZIP_LEVEL))) {
		snprintf(err, errlen, "out of memory");
		http_client_destroy(c);
		return -ENOMEM;
	}
	for (size_t i = 0; i < n; i++)
		if (setup_easy(c, &c->xfers[i])) {
			snprintf(err, errlen, "out of memory");
			http_client_destroy(c);
			return -ENOMEM;
		}
	*out = c;
	return 0;
}

void http_client_destroy(struct http_client *c)
{
	if (!c)
		return;
	for (size_t i = 0; i < c->nxfers; i++) {
		struct http_xfer *x = &c->xfers[i];
		if (x->easy) {
			if (x->busy)
				curl_multi_remove_handle(c->multi, x->easy);
			curl_easy_cleanup(x->easy);
		}
		curl_slist_free_all(x->headers);
		spool_buf_free(&x->body);
		spool_buf_free(&x->gz);
		spool_buf_free(&x->resp);
	}
	if (c->multi)
		curl_multi_cleanup(c->multi);
	libdeflate_free_compressor(c->deflater);
	free(c->xfers);
	free(c->ready);
	free(c->url);
	free(c);
	curl_global_cleanup();
}

const struct spool_tx_config *http_config(const struct http_client *c)
{
	return c->cfg;
}

/* Compresses in[0, len) into out (a transfer's own buffer, kept from one
 * request to the next) as one gzip member. */
static int gzip_body(struct http_client *c, struct spool_buf *out, const char *in, size_t len)
{
	size_t bound = libdeflate_gzip_compress_bound(c->deflater, len);
	out->len = 0;
	if (spool_buf_reserve(out, bound))
		return -ENOMEM;
	size_t n = libdeflate_gzip_compress(c->deflater, in, len, out->data, bound);
	if (n == 0)
		return -EIO; /* cannot happen within the bound */
	out->len = n;
	return 0;
}

static struct curl_slist *add_header(struct curl_slist *l, const char *name, const char *value, bool *ok)
{
	char line[8192];
	if (snprintf(line, sizeof(line), "%s: %s", name, value) >= (int)sizeof(line)) {
		*ok = false;
		return l;
	}
	struct curl_slist *n = curl_slist_append(l, line);
	if (!n) {
		*ok = false;
		return l;
	}
	return n;
}

/* Starts x as it stands (body, idem), compressed when gzip is on, and adds
 * the bytes it puts on the wire to its request's wire_bytes. */
static int start(struct http_client *c, struct http_xfer *x)
{
	const struct spool_tx_value *hv = &c->cfg->values[HTTP_HEADERS];
	bool ok = true;
	struct curl_slist *hl = NULL;
	x->gzipped = c->gzip;
	hl = add_header(hl, "Content-Type", "application/json", &ok);
	struct curl_slist *e = curl_slist_append(hl, "Expect:"); /* no 100-continue round trip */
	if (e)
		hl = e;
	else
		ok = false;
	if (c->api_key)
		hl = add_header(hl, "X-API-Key", c->api_key, &ok);
	if (x->idem[0])
		hl = add_header(hl, "Idempotency-Key", x->idem, &ok);
	if (x->gzipped)
		hl = add_header(hl, "Content-Encoding", "gzip", &ok);
	for (size_t i = 0; i < hv->npairs; i++)
		hl = add_header(hl, hv->pairs[i].name, hv->pairs[i].value, &ok);
	if (!ok) {
		curl_slist_free_all(hl);
		return -ENOMEM;
	}
	/* A large body is read by libcurl through on_read() (body NULL); a
	 * small one is gathered and goes out in one write with the headers,
	 * as libcurl sends a short CURLOPT_POSTFIELDS; one to compress is
	 * gathered first too. */
	const char *body = NULL;
	size_t len = x->body_len;
	if (x->gzipped || x->body_len <= INLINE_BODY_MAX) {
		int rc = gather_body(x);
		body = x->body.data ? x->body.data : "";
		if (!rc && x->gzipped) {
			rc = gzip_body(c, &x->gz, body, x->body.len);
			body = x->gz.data;
			len = x->gz.len;
		}
		if (rc) {
			curl_slist_free_all(hl);
			return rc;
		}
	}
	x->at = 0;
	x->off = 0;
	char clen[48];
	size_t head = c->fixed_head + list_bytes(hl) +
		      (size_t)snprintf(clen, sizeof(clen), "Content-Length: %zu\r\n", len);
	curl_slist_free_all(x->headers);
	x->headers = hl;
	x->resp.len = 0;
	x->retry_after = -1;
	x->location[0] = '\0';
	x->errbuf[0] = '\0';
	curl_easy_setopt(x->easy, CURLOPT_HTTPHEADER, hl);
	curl_easy_setopt(x->easy, CURLOPT_POSTFIELDS, body);
	curl_easy_setopt(x->easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
	if (curl_multi_add_handle(c->multi, x->easy) != CURLM_OK)
		return -ENOMEM;
	x->busy = true;
	x->req->wire_bytes += head + len;
	return 0;
}

size_t http_events_len(const struct spool_tx_request *req, const char *open, const char *sep,
		       const char *close)
{
	size_t n = strlen(open) + strlen(close);
	for (size_t i = 0; i < req->count; i++)
		n += req->events[i].json_len + (i ? strlen(sep) : 0);
	return n;
}

int http_submit_events(struct http_client *c, struct spool_tx_request *req, const char *idem,
		       const char *open, const char *sep, const char *close, size_t body_len)
{
	if (req->count == 0)
		return -EINVAL;
	struct http_xfer *x = NULL;
	for (size_t i = 0; i < c->nxfers && !x; i++)
		if (!c->xfers[i].busy)
			x = &c->xfers[i];
	if (!x)
		return -EBUSY;
	x->ev = req->events;
	x->nev = req->count;
	const char *pieces[3] = {open, sep, close};
	for (int i = 0; i < 3; i++) {
		x->piece[i] = pieces[i];
		x->piece_len[i] = strlen(pieces[i]);
	}
	x->body_len = body_len ? body_len : http_events_len(req, open, sep, close);
	snprintf(x->idem, sizeof(x->idem), "%s", idem ? idem : "");
	x->req = req;
	req->wire_bytes = 0; /* start() adds each attempt's: a 415's resend too */
	return start(c, x);
}

void http_finish_now(struct http_client *c, struct spool_tx_request *req)
{
	c->ready[c->nready++] = req;
}

/* A server that echoes the key (in a 401's detail, say) must not put it
 * into the agent's log, its meta store or a client's error text: every copy
 * in the answer is overwritten with '*' before anyone reads it. */
static void scrub_key(struct spool_buf *b, const char *key)
{
	size_t kl = key ? strlen(key) : 0;
	if (kl < 8 || !b->data || b->len < kl)
		return;
	for (size_t i = 0; i + kl <= b->len; i++)
		if (memcmp(b->data + i, key, kl) == 0)
			memset(b->data + i, '*', kl);
}

/* One transfer ended with result cr: answer it, or send it again
 * uncompressed after a 415 to a compressed body. */
static void finished(struct http_client *c, struct http_xfer *x, CURLcode cr)
{
	curl_multi_remove_handle(c->multi, x->easy);
	x->busy = false;
	long status = 0;
	if (cr == CURLE_OK)
		curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &status);
	if (status == 415 && x->gzipped) {
		c->gzip = false;
		libdeflate_free_compressor(c->deflater);
		c->deflater = NULL;
		c->cfg->log(c->cfg->log_ctx, SPOOL_TX_LOG_WARNING,
			    "%s answered 415 to a gzip body: sending uncompressed from now on", c->shown);
		if (start(c, x) == 0)
			return;
	}
	if (status >= 300 && status < 400)
		c->cfg->log(c->cfg->log_ctx, SPOOL_TX_LOG_ERR,
			    "%s answered %ld (%s%.120s): redirects are never followed, since the API key must not "
			    "travel to another host; fix the endpoint",
			    c->shown, status, x->location[0] ? "Location: " : "no Location", x->location);
	char msg[CURL_ERROR_SIZE + 320] = "";
	if (cr != CURLE_OK)
		snprintf(msg, sizeof(msg), "POST %s: %s", c->shown, x->errbuf[0] ? x->errbuf : curl_easy_strerror(cr));
	scrub_key(&x->resp, c->api_key);
	if (spool_buf_reserve(&x->resp, 1) == 0)
		x->resp.data[x->resp.len] = '\0';
	struct http_answer a = {
		.status = status,
		.retry_after = x->retry_after,
		.body = x->resp.data && cr == CURLE_OK ? x->resp.data : "",
		.body_len = cr == CURLE_OK ? x->resp.len : 0,
		.location = x->location,
		.message = msg,
	};
	c->on_answer(c, x->req, &a, x->body_len);
	c->ready[c->nready++] = x->req;
	x->req = NULL;
}

static double mono_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void collect(struct http_client *c)
{
	int running = 0, left = 0;
	curl_multi_perform(c->multi, &running);
	CURLMsg *m;
	while ((m = curl_multi_info_read(c->multi, &left)) != NULL) {
		if (m->msg != CURLMSG_DONE)
			continue;
		struct http_xfer *x = NULL;
		curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&x);
		if (x)
			finished(c, x, m->data.result);
	}
}

static bool any_busy(const struct http_client *c)
{
	for (size_t i = 0; i < c->nxfers; i++)
		if (c->xfers[i].busy)
			return true;
	return false;
}

int http_poll(struct http_client *c, double timeout, struct spool_tx_request **done, size_t max)
{
	double deadline = mono_now() + (timeout > 0 ? timeout : 0);
	collect(c);
	while (c->nready == 0 && any_busy(c)) {
		double left = deadline - mono_now();
		if (left <= 0)
			break;
		int ms = left > 3600 ? 3600000 : (int)(left * 1000) + 1;
		if (curl_multi_poll(c->multi, NULL, 0, ms, NULL) != CURLM_OK)
			return -EIO;
		collect(c);
	}
	size_t n = c->nready < max ? c->nready : max;
	memcpy(done, c->ready, n * sizeof(*done));
	memmove(c->ready, c->ready + n, (c->nready - n) * sizeof(*c->ready));
	c->nready -= n;
	return (int)n;
}
