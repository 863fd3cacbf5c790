/* metrics.c — the agent's Prometheus endpoint (metrics.h), on
 * libmicrohttpd with one internal thread. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <microhttpd.h>
#include <netinet/in.h>

#include "config.h"
#include "metrics.h"

struct metrics_server {
	struct MHD_Daemon *mhd;
	struct spool *s; /* this thread's own handle */
	const struct prom_requests *req;
	unsigned port;
};

static enum MHD_Result reply(struct MHD_Connection *conn, unsigned status, char *body, size_t len,
			     const char *type)
{
	struct MHD_Response *r = MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
	if (!r) {
		free(body);
		return MHD_NO;
	}
	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
	if (status == MHD_HTTP_METHOD_NOT_ALLOWED)
		MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
	enum MHD_Result rc = MHD_queue_response(conn, status, r);
	MHD_destroy_response(r);
	return rc;
}

static enum MHD_Result text(struct MHD_Connection *conn, unsigned status, const char *msg)
{
	char *b = strdup(msg);
	return b ? reply(conn, status, b, strlen(b), "text/plain; charset=utf-8") : MHD_NO;
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
			      const char *version, const char *upload, size_t *upload_size, void **ctx)
{
	(void)version;
	(void)upload;
	struct metrics_server *m = cls;
	if (*ctx == NULL) { /* the headers: answer when the (empty) body is in */
		*ctx = m;
		return MHD_YES;
	}
	if (*upload_size) {
		*upload_size = 0;
		return MHD_YES;
	}
	if (strcmp(url, "/metrics") != 0)
		return text(conn, MHD_HTTP_NOT_FOUND, "not found: the metrics are at /metrics\n");
	if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
		return text(conn, MHD_HTTP_METHOD_NOT_ALLOWED, "only GET and HEAD\n");
	struct spool_stats st;
	int rc = spool_stats(m->s, &st);
	if (rc) {
		char msg[300];
		snprintf(msg, sizeof(msg), "cannot read the spool's figures: %s\n", spool_strerror(rc));
		return text(conn, MHD_HTTP_INTERNAL_SERVER_ERROR, msg);
	}
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	if (!f)
		return MHD_NO;
	rc = prom_write(f, &st, m->req);
	fclose(f);
	if (rc) {
		free(buf);
		return MHD_NO;
	}
	return reply(conn, MHD_HTTP_OK, buf, len, "text/plain; version=0.0.4; charset=utf-8");
}

int metrics_start(const char *listen, const char *spool_dir, const struct prom_requests *req,
		  struct metrics_server **out, char *err, size_t errlen)
{
	*out = NULL;
	struct sockaddr_storage sa;
	socklen_t salen;
	char why[400];
	if (config_parse_listen(listen, &sa, &salen, why, sizeof(why)) != 0) {
		snprintf(err, errlen, "metrics_listen: %s", why);
		return -1;
	}
	struct metrics_server *m = calloc(1, sizeof(*m));
	if (!m) {
		snprintf(err, errlen, "metrics: out of memory");
		return -1;
	}
	m->req = req;
	struct spool_options so;
	spool_options_init(&so);
	so.durability = SPOOL_SYNC; /* a reader: no ring */
	char serr[600];
	if (spool_open(spool_dir, &so, &m->s, serr, sizeof(serr)) != 0) {
		snprintf(err, errlen, "metrics: %s", serr);
		free(m);
		return -1;
	}
	unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL;
	if (sa.ss_family == AF_INET6)
		flags |= MHD_USE_IPv6;
	m->mhd = MHD_start_daemon(flags, 0, NULL, NULL, handle, m, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa,
				  MHD_OPTION_CONNECTION_LIMIT, (unsigned)16, MHD_OPTION_CONNECTION_TIMEOUT,
				  (unsigned)10, MHD_OPTION_END);
	if (!m->mhd) {
		int e = errno;
		snprintf(err, errlen, "metrics_listen: cannot listen on %s: %s", listen,
			 e ? strerror(e) : "libmicrohttpd failed to start");
		spool_close(m->s);
		free(m);
		return -1;
	}
	const union MHD_DaemonInfo *info = MHD_get_daemon_info(m->mhd, MHD_DAEMON_INFO_LISTEN_FD);
	struct sockaddr_storage bound;
	socklen_t blen = sizeof(bound);
	if (info && getsockname(info->listen_fd, (struct sockaddr *)&bound, &blen) == 0)
		m->port = ntohs(bound.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&bound)->sin6_port
							    : ((struct sockaddr_in *)&bound)->sin_port);
	*out = m;
	return 0;
}

unsigned metrics_port(const struct metrics_server *m)
{
	return m ? m->port : 0;
}

void metrics_stop(struct metrics_server *m)
{
	if (!m)
		return;
	MHD_stop_daemon(m->mhd);
	spool_close(m->s);
	free(m);
}
