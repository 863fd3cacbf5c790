/* peer-producer — the workload of bench/peers/run.sh: N events of 190 bytes,
 * each naming its number ("seq=0000000042 " and padding), so that the
 * receiver's out file tells which arrived, and how often.
 *
 *   peer-producer mlog N         mlog() N times: the client library with the
 *                                settings of the environment (MASTER_LOG_*),
 *                                then exit (the library commits at exit)
 *   peer-producer socket PATH N  N lines into the Unix stream socket PATH
 *                                (a syslog daemon's source), then exit
 *   peer-producer post URL FILE N  the sink's ceiling: the body in FILE (a
 *                                batch of E events, E counted as its lines)
 *                                POSTed to URL until N events went, 4
 *                                requests in flight on keep-alive
 *                                connections, as the agent's default window
 *
 * Exit status 0 when every event was taken (mlog() ok, or every byte
 * written); 1 otherwise, with the first error on stderr. */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <spool/mlog.h>

#define MESSAGE_BYTES 190

static void message(char out[MESSAGE_BYTES + 1], uint64_t seq)
{
	int n = snprintf(out, MESSAGE_BYTES + 1, "seq=%010" PRIu64 " ", seq);
	memset(out + n, 'x', (size_t)(MESSAGE_BYTES - n));
	out[MESSAGE_BYTES] = '\0';
}

static double mono_seconds(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int by_mlog(uint64_t n)
{
	char msg[MESSAGE_BYTES + 1];
	double t0 = mono_seconds();
	for (uint64_t i = 0; i < n; i++) {
		message(msg, i);
		struct mlog_result r = mlog("%s", msg);
		if (!r.ok) {
			fprintf(stderr, "peer-producer: event %" PRIu64 ": %s\n", i, r.error);
			return 1;
		}
	}
	/* the calls alone; exit then waits a little for the agent (the
	 * client's exit flush) */
	fprintf(stderr, "peer-producer: %" PRIu64 " mlog() calls in %.3f s\n", n, mono_seconds() - t0);
	return 0;
}

/* Writes p[0, len); returns the bytes written before a failure (len when
 * none). */
static size_t write_some(int fd, const char *p, size_t len)
{
	size_t done = 0;
	while (done < len) {
		ssize_t k = write(fd, p + done, len - done);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			break;
		done += (size_t)k;
	}
	return done;
}

/* Connects to path, trying for up to 30 s (the daemon may be restarting). */
static int connect_path(const char *path)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	for (int tries = 0; tries < 600; tries++) {
		int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd < 0)
			return -1;
		if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0)
			return fd;
		close(fd);
		usleep(50000);
	}
	return -1;
}

/* Lines into the socket.  A line is taken once all its bytes are written
 * (a syslog source gives no other answer); when the daemon goes away the
 * producer connects again and goes on from the first line not wholly
 * written, as a program logging to syslog would. */
static int by_socket(const char *path, uint64_t n)
{
	if (strlen(path) >= sizeof(((struct sockaddr_un *)0)->sun_path)) {
		fprintf(stderr, "peer-producer: socket path too long\n");
		return 1;
	}
	signal(SIGPIPE, SIG_IGN);
	int fd = connect_path(path);
	if (fd < 0) {
		fprintf(stderr, "peer-producer: %s: %s\n", path, strerror(errno));
		return 1;
	}
	unsigned reconnects = 0;
	enum { LINES = 64, LINE = MESSAGE_BYTES + 1 };
	static char chunk[LINES * LINE];
	for (uint64_t i = 0; i < n;) {
		size_t len = 0;
		uint64_t k = 0;
		for (; k < LINES && i + k < n; k++) {
			message(chunk + len, i + k);
			len += MESSAGE_BYTES;
			chunk[len++] = '\n';
		}
		size_t done = write_some(fd, chunk, len);
		i += done / LINE;
		if (done == len)
			continue;
		close(fd);
		reconnects++;
		if ((fd = connect_path(path)) < 0) {
			fprintf(stderr, "peer-producer: %s: %s (after %" PRIu64 " lines)\n", path,
				strerror(errno), i);
			return 1;
		}
	}
	if (reconnects)
		fprintf(stderr, "peer-producer: connected again %u times\n", reconnects);
	return close(fd) == 0 ? 0 : 1;
}

static size_t discard(char *p, size_t size, size_t n, void *ctx)
{
	(void)p;
	(void)ctx;
	return size * n;
}

/* The body of FILE, and how many events it holds (its lines: run.sh
 * writes one event per line between "{"logs":[" and "]}"). */
static char *read_body(const char *path, size_t *len, uint64_t *events)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return NULL;
	char *buf = NULL;
	size_t cap = 0;
	*len = 0;
	*events = 0;
	for (;;) {
		if (*len + 65536 > cap) {
			char *nb = realloc(buf, cap = 2 * cap + 65536);
			if (!nb)
				break;
			buf = nb;
		}
		size_t k = fread(buf + *len, 1, cap - *len, f);
		if (k == 0)
			break;
		*len += k;
	}
	fclose(f);
	for (size_t i = 0; buf && i < *len; i++)
		*events += buf[i] == '\n';
	return buf;
}

/* Posts the body until n events went; 0 when every answer was 200. */
static int by_post(const char *url, const char *path, uint64_t n)
{
	size_t len = 0;
	uint64_t per = 0;
	char *body = read_body(path, &len, &per);
	if (!body || per == 0) {
		fprintf(stderr, "peer-producer: %s: no events\n", path);
		free(body);
		return 1;
	}
	enum { IN_FLIGHT = 4 };
	curl_global_init(CURL_GLOBAL_DEFAULT);
	CURLM *m = curl_multi_init();
	CURL *e[IN_FLIGHT];
	struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
	h = curl_slist_append(h, "Expect:");
	uint64_t sent = 0, failed = 0;
	int running = 0;
	for (int i = 0; i < IN_FLIGHT; i++) {
		e[i] = curl_easy_init();
		curl_easy_setopt(e[i], CURLOPT_URL, url);
		curl_easy_setopt(e[i], CURLOPT_POSTFIELDS, body);
		curl_easy_setopt(e[i], CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
		curl_easy_setopt(e[i], CURLOPT_HTTPHEADER, h);
		curl_easy_setopt(e[i], CURLOPT_WRITEFUNCTION, discard);
		if (sent < n) {
			curl_multi_add_handle(m, e[i]);
			sent += per;
			running++;
		}
	}
	while (running) {
		int still = 0;
		curl_multi_perform(m, &still);
		CURLMsg *msg;
		int left = 0;
		while ((msg = curl_multi_info_read(m, &left))) {
			if (msg->msg != CURLMSG_DONE)
				continue;
			long status = 0;
			curl_easy_getinfo(msg->easy_handle, CURLINFO_RESPONSE_CODE, &status);
			failed += msg->data.result != CURLE_OK || status != 200;
			curl_multi_remove_handle(m, msg->easy_handle);
			running--;
			if (sent < n) {
				curl_multi_add_handle(m, msg->easy_handle);
				sent += per;
				running++;
			}
		}
		if (running)
			curl_multi_poll(m, NULL, 0, 1000, NULL);
	}
	for (int i = 0; i < IN_FLIGHT; i++)
		curl_easy_cleanup(e[i]);
	curl_multi_cleanup(m);
	curl_slist_free_all(h);
	free(body);
	if (failed)
		fprintf(stderr, "peer-producer: %" PRIu64 " requests failed\n", failed);
	return failed ? 1 : 0;
}

int main(int argc, char **argv)
{
	if (argc == 3 && strcmp(argv[1], "mlog") == 0)
		return by_mlog(strtoull(argv[2], NULL, 10));
	if (argc == 4 && strcmp(argv[1], "socket") == 0)
		return by_socket(argv[2], strtoull(argv[3], NULL, 10));
	if (argc == 5 && strcmp(argv[1], "post") == 0)
		return by_post(argv[2], argv[3], strtoull(argv[4], NULL, 10));
	fprintf(stderr, "usage: peer-producer mlog N | peer-producer socket PATH N | peer-producer post URL FILE N\n");
	return 2;
}
