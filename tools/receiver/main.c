/* main.c - mlog-receiver: start-up, the listening socket, signals. */
#include <arpa/inet.h>
#include <errno.h>
#include <malloc.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "http.h"
#include "options.h"
#include "store.h"
#include "tls.h"

/* Binds exactly the address asked for.  Returns the listening socket or
 * -1 with a message on stderr. */
static int bind_listen(const char *addr, long port, bool *ipv6, int *bound)
{
	struct sockaddr_storage ss;
	socklen_t sl;
	char host[INET6_ADDRSTRLEN + 2];
	int one = 1;

	memset(&ss, 0, sizeof(ss));
	snprintf(host, sizeof(host), "%s", addr);
	/* Accept "[::1]" as well as "::1"; "localhost" means 127.0.0.1. */
	if (host[0] == '[' && host[strlen(host) - 1] == ']') {
		memmove(host, host + 1, strlen(host));
		host[strlen(host) - 1] = '\0';
	}
	if (strcmp(host, "localhost") == 0)
		snprintf(host, sizeof(host), "127.0.0.1");

	struct sockaddr_in *in4 = (struct sockaddr_in *)&ss;
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
	if (inet_pton(AF_INET, host, &in4->sin_addr) == 1) {
		in4->sin_family = AF_INET;
		in4->sin_port = htons((uint16_t)port);
		sl = sizeof(*in4);
		*ipv6 = false;
	} else if (inet_pton(AF_INET6, host, &in6->sin6_addr) == 1) {
		in6->sin6_family = AF_INET6;
		in6->sin6_port = htons((uint16_t)port);
		sl = sizeof(*in6);
		*ipv6 = true;
	} else {
		fprintf(stderr, "mlog-receiver: --listen %s: not a numeric "
				"IPv4 or IPv6 address\n",
			addr);
		return -1;
	}

	int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		goto fail;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (*ipv6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&ss, sl) || listen(fd, 128))
		goto fail;
	sl = sizeof(ss);
	if (getsockname(fd, (struct sockaddr *)&ss, &sl))
		goto fail;
	*bound = ntohs(*ipv6 ? in6->sin6_port : in4->sin_port);
	return fd;
fail:
	fprintf(stderr, "mlog-receiver: cannot listen on %s port %ld: %s\n",
		addr, port, strerror(errno));
	if (fd >= 0)
		close(fd);
	return -1;
}

/* Writes the port (and " https" when serving TLS) to `path` through a
 * temporary file and rename(), so a reader never sees a partial line. */
static int write_port_file(const char *path, int port, const char *scheme)
{
	size_t n = strlen(path) + 32;
	char *tmp = malloc(n);
	if (!tmp)
		return -1;
	snprintf(tmp, n, "%s.tmp.%ld", path, (long)getpid());
	FILE *f = fopen(tmp, "we");
	int rc = -1;
	if (f) {
		int w = fprintf(f, "%d%s\n", port, scheme);
		if (fclose(f) == 0 && w > 0 && rename(tmp, path) == 0)
			rc = 0;
		else
			unlink(tmp);
	}
	if (rc)
		fprintf(stderr, "mlog-receiver: cannot write --port-file %s: "
				"%s\n",
			path, strerror(errno));
	free(tmp);
	return rc;
}

int main(int argc, char **argv)
{
	struct rx_config cfg;
	struct store *store = NULL;
	struct MHD_Daemon *daemon = NULL;
	struct tls_pem tls = { 0 };
	char err[512];
	int fd = -1, port = 0, status = 1;
	bool ipv6 = false;
	sigset_t stop;

	switch (options_parse(argc, argv, &cfg)) {
	case OPT_RUN:
		break;
	case OPT_EXIT:
		return 0;
	case OPT_USAGE:
		return 2;
	}
	if (tls_pem_load(&cfg, &tls, err, sizeof(err))) {
		fprintf(stderr, "mlog-receiver: %s\n", err);
		return 2;
	}
	/* The ready line's word after the port; none for plain HTTP, so the
	 * line stays "port N" as before TLS existed. */
	const char *scheme = tls.cert ? " https" : "";

	/* Request bodies, their inflated copies and the lines kept are a few
	 * MB each, made and freed per request: glibc would map and unmap
	 * each (and fault its pages in again) above its mmap threshold.
	 * Keep freed memory in the heap for the next request instead. */
	mallopt(M_MMAP_THRESHOLD, 64 << 20);
	mallopt(M_TRIM_THRESHOLD, 256 << 20);

	/* Every thread inherits this mask; only sigwait() below sees the
	 * stop signals. */
	signal(SIGPIPE, SIG_IGN);
	sigemptyset(&stop);
	sigaddset(&stop, SIGINT);
	sigaddset(&stop, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &stop, NULL);

	int rc = store_create(&cfg, &store);
	if (rc) {
		fprintf(stderr, "mlog-receiver: cannot open --out %s: %s\n",
			cfg.out ? cfg.out : "", strerror(-rc));
		goto out;
	}
	fd = bind_listen(cfg.listen, cfg.port, &ipv6, &port);
	if (fd < 0)
		goto out;
	daemon = http_start(&cfg, store, fd, ipv6, &tls);
	if (!daemon) {
		fprintf(stderr, "mlog-receiver: libmicrohttpd did not start%s\n",
			tls.cert ? " (is --tls-key the key of --tls-cert?)"
				 : "");
		close(fd);
		goto out;
	}
	fd = -1; /* the daemon owns it now */
	if (cfg.port == 0) {
		printf("port %d%s\n", port, scheme);
		fflush(stdout);
	}
	if (cfg.port_file && write_port_file(cfg.port_file, port, scheme))
		goto out;
	if (cfg.verbose)
		fprintf(stderr, "mlog-receiver: listening on %s port %d (%s)\n",
			cfg.listen, port, tls.cert ? "https" : "http");

	int sig = 0;
	while (sigwait(&stop, &sig) != 0)
		;
	if (cfg.verbose)
		fprintf(stderr, "mlog-receiver: %s, stopping\n",
			strsignal(sig));
	status = 0;
out:
	http_stop(daemon);
	tls_pem_release(&tls);
	if (store_destroy(store)) {
		fprintf(stderr, "mlog-receiver: flushing --out failed\n");
		status = 1;
	}
	return status;
}
