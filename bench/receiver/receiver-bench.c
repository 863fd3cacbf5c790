/* receiver-bench.c - how many events per second mlog-receiver takes and
 * stores, in 1000-event batches over loopback keep-alive connections.
 *
 * Starts the receiver (--receiver PATH, else $MLOG_RECEIVER, else the build
 * tree's), storing to a temporary --out file, posts pre-built batch bodies
 * whose client_event_ids are all distinct (so dedup never short-circuits),
 * checks every answer, and prints one JSON object.
 */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#ifndef MLOG_RECEIVER_DEFAULT
#define MLOG_RECEIVER_DEFAULT "mlog-receiver"
#endif

#define ULID_LEN 26

struct opts {
	const char *receiver;
	long batches;
	long events;
	long connections;
	bool keep_out;
	bool no_out;
};

struct worker {
	const struct opts *o;
	int port;
	long index;
	long batches; /* this worker's share */
	char *body;
	size_t body_len;
	size_t *id_pos; /* offsets of the ULIDs inside body */
	unsigned long long next_seq;
	long failures;
	char error[256];
};

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what)
{
	fprintf(stderr, "receiver-bench: %s\n", what);
	exit(1);
}

/* "01HX" then 22 decimal digits (digits are Crockford base32). */
static void put_ulid(char *dst, unsigned long long seq)
{
	char tmp[ULID_LEN + 1];
	snprintf(tmp, sizeof(tmp), "01HX%022llu", seq);
	memcpy(dst, tmp, ULID_LEN);
}

/* One realistic event, about 480 bytes, as the agent would send it. */
static int format_event(char *dst, size_t size, long i)
{
	return snprintf(
		dst, size,
		"{\"message\":\"GET /api/orders/%ld completed in %ld ms for user "
		"%ld (cache miss, 4 queries)\",\"severity\":\"info\","
		"\"title\":\"request done\",\"tags\":[\"http\",\"orders\"],"
		"\"metadata\":{\"route\":\"/api/orders\",\"status\":200,"
		"\"c_client\":{\"hostname\":\"bench-host\",\"fqdn\":"
		"\"bench-host.example.internal\",\"pid\":4242,\"process_name\":"
		"\"bench-app\",\"cwd\":\"/srv/app\",\"library_version\":\"0.1.0\","
		"\"spool_seq\":%ld},\"delivery\":{\"attempts\":1,"
		"\"spooled_seconds\":0.012}},\"client_event_id\":\""
		"%026d\",\"timestamp\":\"2026-11-24T14:29:21.123456Z\"}",
		10000 + i, i % 97, 8000 + i, 100000 + i, 0);
}

static void build_body(struct worker *w)
{
	long n = w->o->events;
	size_t cap = (size_t)n * 700 + 64, len = 0;
	char *body = malloc(cap);
	w->id_pos = malloc((size_t)n * sizeof(*w->id_pos));
	if (!body || !w->id_pos)
		die("out of memory");
	len += (size_t)snprintf(body, cap, "{\"logs\":[");
	for (long i = 0; i < n; i++) {
		if (i)
			body[len++] = ',';
		int k = format_event(body + len, cap - len, i);
		if (k < 0 || (size_t)k >= cap - len)
			die("event template too large");
		/* The id is the 26 zeros just before "\",\"timestamp\"". */
		char *ts = strstr(body + len, "\",\"timestamp\"");
		w->id_pos[i] = (size_t)(ts - body) - ULID_LEN;
		len += (size_t)k;
	}
	len += (size_t)snprintf(body + len, cap - len, "]}");
	w->body = body;
	w->body_len = len;
}

static void next_ids(struct worker *w)
{
	for (long i = 0; i < w->o->events; i++)
		put_ulid(w->body + w->id_pos[i], w->next_seq++);
}

struct sink {
	char buf[1 << 16];
	size_t len;
};

static size_t on_body(char *p, size_t size, size_t n, void *ud)
{
	struct sink *s = ud;
	size_t add = size * n;
	size_t room = sizeof(s->buf) - 1 - s->len;
	memcpy(s->buf + s->len, p, add < room ? add : room);
	s->len += add < room ? add : room;
	s->buf[s->len] = '\0';
	return add;
}

static CURL *open_handle(struct worker *w, struct sink *sink,
			 struct curl_slist **hdrs)
{
	char url[96];
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/api/v1/logs/batch",
		 w->port);
	CURL *c = curl_easy_init();
	if (!c)
		die("curl_easy_init failed");
	*hdrs = curl_slist_append(NULL, "Content-Type: application/json");
	*hdrs = curl_slist_append(*hdrs, "Expect:");
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_NOPROXY, "*");
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, *hdrs);
	curl_easy_setopt(c, CURLOPT_POSTFIELDS, w->body);
	curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE,
			 (curl_off_t)w->body_len);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, sink);
	curl_easy_setopt(c, CURLOPT_TIMEOUT, 60L);
	return c;
}

/* Posts `count` batches, each with fresh ids, checking every answer. */
static void post_batches(struct worker *w, CURL *c, struct sink *sink,
			 long count)
{
	char want[64];
	snprintf(want, sizeof(want), "{\"accepted\":%ld,\"duplicates\":0,",
		 w->o->events);
	for (long b = 0; b < count; b++) {
		long status = 0;
		next_ids(w);
		sink->len = 0;
		CURLcode rc = curl_easy_perform(c);
		curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
		if (rc != CURLE_OK || status != 200 ||
		    strncmp(sink->buf, want, strlen(want)) != 0) {
			if (!w->failures++)
				snprintf(w->error, sizeof(w->error),
					 "batch answer: %s status %ld: %.120s",
					 curl_easy_strerror(rc), status,
					 sink->buf);
		}
	}
}

static struct sink *worker_sinks;
static pthread_barrier_t start_line;

static void *run_worker(void *arg)
{
	struct worker *w = arg;
	struct sink *sink = &worker_sinks[w->index];
	struct curl_slist *hdrs;
	CURL *c = open_handle(w, sink, &hdrs);
	post_batches(w, c, sink, 1); /* warm-up: connect, fault pages in */
	pthread_barrier_wait(&start_line);
	post_batches(w, c, sink, w->batches);
	curl_easy_cleanup(c);
	curl_slist_free_all(hdrs);
	return NULL;
}

/* utime + stime of `pid`, in seconds; -1 when unreadable. */
static double proc_cpu_seconds(pid_t pid)
{
	char path[64], buf[1024];
	snprintf(path, sizeof(path), "/proc/%ld/stat", (long)pid);
	FILE *f = fopen(path, "r");
	if (!f)
		return -1;
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	/* Fields after the ")" that ends the command name: state is field
	 * 3, utime field 14, stime field 15. */
	char *p = strrchr(buf, ')');
	unsigned long long ut, st;
	if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u "
				"%*u %llu %llu",
			 &ut, &st) != 2)
		return -1;
	return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

static pid_t start_receiver(const struct opts *o, const char *dir,
			    const char *out, int *port)
{
	char port_file[256], max_events[32];
	snprintf(port_file, sizeof(port_file), "%s/port", dir);
	snprintf(max_events, sizeof(max_events), "%ld", o->events);
	const char *argv[] = { o->receiver, "--port", "0", "--port-file",
			       port_file, "--max-batch-events", max_events,
			       "--max-batch-bytes", "64M", "--max-body", "64M",
			       o->no_out ? NULL : "--out", out, NULL };
	pid_t parent = getpid();
	pid_t pid = fork();
	if (pid < 0)
		die("fork failed");
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)
			_exit(127);
		if (!freopen("/dev/null", "w", stdout))
			_exit(127);
		execv(argv[0], (char *const *)argv);
		fprintf(stderr, "receiver-bench: cannot run %s: %s\n", argv[0],
			strerror(errno));
		_exit(127);
	}
	for (double end = now_s() + 10; now_s() < end;) {
		FILE *f = fopen(port_file, "r");
		if (f) {
			int ok = fscanf(f, "%d", port);
			fclose(f);
			if (ok == 1 && *port > 0)
				return pid;
		}
		int status;
		if (waitpid(pid, &status, WNOHANG) == pid)
			die("the receiver exited during start-up");
		usleep(5000);
	}
	die("the receiver did not start within 10 s");
	return -1;
}

static long long receiver_accepted(int port)
{
	char url[96];
	struct sink *sink = calloc(1, sizeof(*sink));
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/stats", port);
	CURL *c = curl_easy_init();
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_NOPROXY, "*");
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, sink);
	long long n = -1;
	if (curl_easy_perform(c) == CURLE_OK) {
		const char *p = strstr(sink->buf, "\"accepted\":");
		if (p)
			n = strtoll(p + 11, NULL, 10);
	}
	curl_easy_cleanup(c);
	free(sink);
	return n;
}

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: receiver-bench [--receiver PATH] [--batches N] "
		"[--events N] [--connections N]\n"
		"                      [--no-out] [--keep-out] [--quick]\n"
		"Posts N batches of --events events (default 2000 x 1000) over "
		"--connections keep-alive\n"
		"connections (default 2) to a receiver it starts, storing to a "
		"temporary --out file\n"
		"(--no-out: count only), and prints one JSON object.\n"
		"The receiver is --receiver, else $MLOG_RECEIVER, else %s.\n",
		MLOG_RECEIVER_DEFAULT);
}

int main(int argc, char **argv)
{
	struct opts o = { NULL, 2000, 1000, 2, false, false };
	static const struct option longopts[] = {
		{ "receiver", required_argument, NULL, 'r' },
		{ "batches", required_argument, NULL, 'b' },
		{ "events", required_argument, NULL, 'e' },
		{ "connections", required_argument, NULL, 'c' },
		{ "no-out", no_argument, NULL, 'n' },
		{ "keep-out", no_argument, NULL, 'k' },
		{ "quick", no_argument, NULL, 'q' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int ch;
	while ((ch = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (ch) {
		case 'r': o.receiver = optarg; break;
		case 'b': o.batches = atol(optarg); break;
		case 'e': o.events = atol(optarg); break;
		case 'c': o.connections = atol(optarg); break;
		case 'n': o.no_out = true; break;
		case 'k': o.keep_out = true; break;
		case 'q': o.batches = 20; break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (optind < argc)
		o.receiver = argv[optind];
	if (!o.receiver)
		o.receiver = getenv("MLOG_RECEIVER");
	if (!o.receiver || !*o.receiver)
		o.receiver = MLOG_RECEIVER_DEFAULT;
	if (o.batches < 1 || o.events < 1 || o.events > 100000 ||
	    o.connections < 1 || o.connections > 64) {
		usage(stderr);
		return 2;
	}

	char dir[] = "/tmp/receiver-bench.XXXXXX";
	char out[128], port_file[128];
	if (!mkdtemp(dir))
		die("mkdtemp failed");
	snprintf(out, sizeof(out), "%s/out.jsonl", dir);
	snprintf(port_file, sizeof(port_file), "%s/port", dir);

	curl_global_init(CURL_GLOBAL_DEFAULT);
	int port;
	pid_t pid = start_receiver(&o, dir, out, &port);

	long nw = o.connections;
	struct worker *w = calloc((size_t)nw, sizeof(*w));
	pthread_t *t = calloc((size_t)nw, sizeof(*t));
	worker_sinks = calloc((size_t)nw, sizeof(*worker_sinks));
	if (!w || !t || !worker_sinks)
		die("out of memory");
	pthread_barrier_init(&start_line, NULL, (unsigned)nw + 1);
	for (long i = 0; i < nw; i++) {
		w[i].o = &o;
		w[i].port = port;
		w[i].index = i;
		w[i].batches = o.batches / nw + (i < o.batches % nw);
		/* Disjoint id ranges per worker. */
		w[i].next_seq = (unsigned long long)i * 1000000000000ull;
		build_body(&w[i]);
		if (pthread_create(&t[i], NULL, run_worker, &w[i]))
			die("pthread_create failed");
	}

	pthread_barrier_wait(&start_line);
	double cpu0 = proc_cpu_seconds(pid);
	double t0 = now_s();
	long failures = 0;
	size_t body_bytes = 0;
	for (long i = 0; i < nw; i++) {
		pthread_join(t[i], NULL);
		failures += w[i].failures;
		if (w[i].failures)
			fprintf(stderr, "receiver-bench: %s\n", w[i].error);
		body_bytes += w[i].body_len * (size_t)w[i].batches;
	}
	double secs = now_s() - t0;
	double cpu = proc_cpu_seconds(pid);
	cpu = cpu0 >= 0 && cpu >= 0 ? cpu - cpu0 : -1;

	long long events = (long long)o.batches * o.events;
	long long accepted = receiver_accepted(port);
	long long expected = events + nw * o.events; /* plus the warm-ups */

	kill(pid, SIGTERM);
	int status = 0;
	waitpid(pid, &status, 0);
	if (!o.keep_out) {
		unlink(out);
		unlink(port_file);
		rmdir(dir);
	}

	printf("{\"name\":\"receiver-batch%ld\",\"events\":%lld,"
	       "\"batches\":%ld,\"connections\":%ld,\"stored\":%s,"
	       "\"seconds\":%.3f,\"events_per_sec\":%.0f,"
	       "\"mib_per_sec\":%.1f,\"bytes_per_event\":%.0f,"
	       "\"receiver_cpu_seconds\":%.2f,"
	       "\"receiver_cpu_us_per_event\":%.2f,\"failures\":%ld}\n",
	       o.events, events, o.batches, nw, o.no_out ? "false" : "true",
	       secs, (double)events / secs,
	       (double)body_bytes / secs / 1048576.0,
	       (double)body_bytes / (double)events, cpu,
	       cpu >= 0 ? cpu * 1e6 / (double)events : -1.0, failures);
	fflush(stdout);

	for (long i = 0; i < nw; i++) {
		free(w[i].body);
		free(w[i].id_pos);
	}
	free(w);
	free(t);
	free(worker_sinks);
	pthread_barrier_destroy(&start_line);
	curl_global_cleanup();
	if (failures || accepted != expected) {
		fprintf(stderr,
			"receiver-bench: %ld failed batches; receiver accepted "
			"%lld of %lld events\n",
			failures, accepted, expected);
		return 1;
	}
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		fprintf(stderr, "receiver-bench: the receiver did not exit "
				"cleanly on SIGTERM\n");
		return 1;
	}
	return 0;
}
