/* http.c — the libcurl side shared by http_batch and http_single. */
#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zlib.h>

#include "http.h"

#define RESP_MAX (16u << 20) /* answer bytes kept */

static size_t on_body(char *ptr, size_t size, size_t nmemb, void *ud)
{
	struct http_conn *c = ud;
	size_t n = size * nmemb;
	size_t keep = c->resp.len >= RESP_MAX ? 0 : (n < RESP_MAX - c->resp.len ? n : RESP_MAX - c->resp.len);
	if (keep && spool_buf_append(&c->resp, ptr, keep))
		return 0; /* out of memory: abort the transfer */
	return n;
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

static size_t on_header(char *buf, size_t size, size_t nitems, void *ud)
{
	struct http_conn *c = ud;
	size_t n = size * nitems;
	static const char name[] = "retry-after:", loc[] = "location:";
	if (n > sizeof(loc) - 1 && strncasecmp(buf, loc, sizeof(loc) - 1) == 0) {
		size_t off = sizeof(loc) - 1, vl = n - off;
		while (vl && (buf[off] == ' ' || buf[off] == '\t'))
			off++, vl--;
		if (vl >= sizeof(c->location))
			vl = sizeof(c->location) - 1;
		memcpy(c->location, buf + off, vl);
		c->location[vl] = '\0';
		for (size_t i = 0; i < vl; i++)
			if ((unsigned char)c->location[i] < 0x20 || c->location[i] == 0x7f)
				c->location[i] = c->location[i] == '\r' || c->location[i] == '\n' ? '\0' : '?';
	}
	if (n > sizeof(name) - 1 && strncasecmp(buf, name, sizeof(name) - 1) == 0) {
		char v[128];
		size_t vl = n - (sizeof(name) - 1);
		if (vl >= sizeof(v))
			vl = sizeof(v) - 1;
		memcpy(v, buf + sizeof(name) - 1, vl);
		v[vl] = '\0';
		c->retry_after = http_parse_retry_after(v);
	}
	return n;
}

int http_conn_init(struct http_conn *c, const struct spool_tx_config *cfg, const char *path,
		   char *err, size_t errlen)
{
	memset(c, 0, sizeof(*c));
	c->cfg = cfg;
	c->gzip = cfg->gzip != 0;
	if (!cfg->endpoint || !*cfg->endpoint) {
		snprintf(err, errlen, "no endpoint configured");
		return -EINVAL;
	}
	size_t n = strlen(cfg->endpoint) + strlen(path) + 1;
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		snprintf(err, errlen, "curl_global_init failed");
		return -EIO;
	}
	c->url = malloc(n);
	c->curl = curl_easy_init();
	if (!c->url || !c->curl) {
		snprintf(err, errlen, "out of memory");
		http_conn_fini(c);
		return -ENOMEM;
	}
	snprintf(c->url, n, "%s%s", cfg->endpoint, path);
	const curl_version_info_data *vi = curl_version_info(CURLVERSION_NOW);
	snprintf(c->user_agent, sizeof(c->user_agent), "%s libcurl/%s",
		 cfg->user_agent ? cfg->user_agent : "master-log-spool", vi->version);
	CURL *h = c->curl;
	curl_easy_setopt(h, CURLOPT_URL, c->url);
	curl_easy_setopt(h, CURLOPT_POST, 1L);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_USERAGENT, c->user_agent);
	/* never follow a redirect: the key must not travel to another host */
	curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, (long)(cfg->connect_timeout * 1000));
	curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)(cfg->request_timeout * 1000));
	curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
	curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, cfg->tls_verify ? 1L : 0L);
	curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, cfg->tls_verify ? 2L : 0L);
	if (cfg->ca_file)
		curl_easy_setopt(h, CURLOPT_CAINFO, cfg->ca_file);
	if (cfg->client_cert)
		curl_easy_setopt(h, CURLOPT_SSLCERT, cfg->client_cert);
	if (cfg->client_key)
		curl_easy_setopt(h, CURLOPT_SSLKEY, cfg->client_key);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, c);
	curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(h, CURLOPT_HEADERDATA, c);
	curl_easy_setopt(h, CURLOPT_ERRORBUFFER, c->errbuf);
	return 0;
}

void http_conn_fini(struct http_conn *c)
{
	if (!c)
		return;
	if (c->curl) {
		curl_easy_cleanup(c->curl);
		c->curl = NULL;
	}
	free(c->url);
	c->url = NULL;
	spool_buf_free(&c->gz);
	spool_buf_free(&c->resp);
	curl_global_cleanup();
}

static int gzip_body(struct spool_buf *out, const char *in, size_t len)
{
	z_stream z;
	memset(&z, 0, sizeof(z));
	if (deflateInit2(&z, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
		return -ENOMEM;
	size_t bound = deflateBound(&z, (uLong)len) + 32;
	out->len = 0;
	if (spool_buf_reserve(out, bound)) {
		deflateEnd(&z);
		return -ENOMEM;
	}
	z.next_in = (Bytef *)(uintptr_t)in;
	z.avail_in = (uInt)len;
	z.next_out = (Bytef *)out->data;
	z.avail_out = (uInt)bound;
	int zr = deflate(&z, Z_FINISH);
	out->len = z.total_out;
	deflateEnd(&z);
	return zr == Z_STREAM_END ? 0 : -EIO;
}

static struct curl_slist *add_header(struct curl_slist *l, const char *name, const char *value,
				     bool *ok)
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

static int post_once(struct http_conn *c, const char *body, size_t len, const char *idem,
		     bool gz, struct http_answer *ans, char *msg, size_t msglen)
{
	const struct spool_tx_config *cfg = c->cfg;
	bool ok = true;
	struct curl_slist *hl = NULL;
	hl = add_header(hl, "Content-Type", "application/json", &ok);
	hl = curl_slist_append(hl, "Expect:"); /* no 100-continue round trip */
	if (cfg->api_key)
		hl = add_header(hl, "X-API-Key", cfg->api_key, &ok);
	if (idem)
		hl = add_header(hl, "Idempotency-Key", idem, &ok);
	if (gz)
		hl = add_header(hl, "Content-Encoding", "gzip", &ok);
	for (size_t i = 0; i < cfg->nheaders; i++)
		hl = add_header(hl, cfg->headers[i].name, cfg->headers[i].value, &ok);
	if (!ok || !hl) {
		curl_slist_free_all(hl);
		return -ENOMEM;
	}
	if (gz) {
		int rc = gzip_body(&c->gz, body, len);
		if (rc) {
			curl_slist_free_all(hl);
			return rc;
		}
		body = c->gz.data;
		len = c->gz.len;
	}
	c->resp.len = 0;
	if (c->resp.data)
		c->resp.data[0] = '\0';
	c->retry_after = -1;
	c->location[0] = '\0';
	c->errbuf[0] = '\0';
	curl_easy_setopt(c->curl, CURLOPT_HTTPHEADER, hl);
	curl_easy_setopt(c->curl, CURLOPT_POSTFIELDS, body);
	curl_easy_setopt(c->curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
	CURLcode cr = curl_easy_perform(c->curl);
	curl_easy_setopt(c->curl, CURLOPT_HTTPHEADER, NULL);
	curl_slist_free_all(hl);
	memset(ans, 0, sizeof(*ans));
	ans->retry_after = -1;
	if (cr != CURLE_OK) {
		snprintf(msg, msglen, "POST %s: %s", c->url, c->errbuf[0] ? c->errbuf : curl_easy_strerror(cr));
		return 0;
	}
	curl_easy_getinfo(c->curl, CURLINFO_RESPONSE_CODE, &ans->status);
	scrub_key(&c->resp, cfg->api_key);
	ans->retry_after = c->retry_after;
	ans->body = c->resp.data ? c->resp.data : "";
	ans->body_len = c->resp.len;
	msg[0] = '\0';
	return 0;
}

int http_conn_post(struct http_conn *c, const char *body, size_t len, const char *idem,
		   struct http_answer *ans, char *msg, size_t msglen)
{
	bool gz = c->gzip;
	int rc = post_once(c, body, len, idem, gz, ans, msg, msglen);
	if (rc == 0 && gz && ans->status == 415) {
		c->gzip = false;
		c->cfg->log(c->cfg->log_ctx, SPOOL_TX_LOG_WARNING,
			    "%s answered 415 to a gzip body: sending uncompressed from now on", c->url);
		rc = post_once(c, body, len, idem, false, ans, msg, msglen);
	}
	return rc;
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

void http_classify_failure(const struct http_conn *c, const struct http_answer *a,
			   struct spool_tx_status *call, const char *what)
{
	long s = a->status;
	call->status = (int)s;
	call->retry_after = a->retry_after;
	if (s == 0) {
		call->call = SPOOL_TXC_TRANSIENT;
		return; /* message already holds the network error */
	}
	char detail[160];
	http_detail(a, detail, sizeof(detail));
	if (s == 401 || s == 403) {
		call->call = SPOOL_TXC_AUTH;
		snprintf(call->message, sizeof(call->message),
			 "%s: %ld: credentials refused (check api_key) %s", what, s, detail);
	} else if (s >= 300 && s < 400) {
		call->call = SPOOL_TXC_TRANSIENT;
		snprintf(call->message, sizeof(call->message),
			 "%s: %ld redirect not followed (%s%.120s; the API key never follows a redirect); fix "
			 "the endpoint",
			 what, s, c->location[0] ? "Location: " : "no Location", c->location);
		c->cfg->log(c->cfg->log_ctx, SPOOL_TX_LOG_ERR, "%s", call->message);
	} else {
		call->call = SPOOL_TXC_TRANSIENT;
		snprintf(call->message, sizeof(call->message), "%s: %ld %s", what, s, detail);
	}
}
