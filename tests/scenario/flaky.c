/* flaky.c — reliability scenarios against a server that is down or
 * misbehaves.  Producers log through the public client API (mlog_configure,
 * mlog_ex) in forked children; spool-agent and mlog-receiver run as real
 * processes over 127.0.0.1.
 *
 * outage: the receiver answers 503 (--outage-file), then is stopped so
 *   connections are refused, while 100,000 events (more in the long size) are
 *   logged; then it comes back.  Every event arrives exactly once, in spool
 *   order and in each producer's order, and the agent's requests during the
 *   outage stay within what its backoff policy (jitter off, so the schedule
 *   is exact) allows for the outage's length.
 * flaky: phases with random 500/503, 429 with Retry-After, connections
 *   closed after storing, slow answers, non-JSON and empty 2xx bodies, and
 *   207s with transient and rejected events.  Every event arrives exactly
 *   once except the rejected ones, which are exactly the dead letters;
 *   nothing stays stuck; no request comes before a Retry-After elapsed.
 *
 * The receiver is restarted between phases on the same port and out file.
 * Its dedup table does not survive a restart, so a phase ends only when no
 * event the receiver stored is still pending in the spool.
 *
 * Each scenario prints one "FIGURES scenario=..." line and one line for
 * people.  SCENARIO_SIZE=short (default) or long; SPOOL_TEST_SEED replays. */
#include <check.h>
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "check_main.h"
#include "codec/json.h"
#include <spool/mlog.h>

#include "harness.h"
#include "testutil.h"

#define NPROD          2
#define REJECT_WORD    "REJECTME"
#define TRANSIENT_WORD "LATER"

/* K_DEAD: a reject found among the dead letters (check_dead) */
enum kind { K_PLAIN = 0, K_REJECT = 1, K_TRANSIENT = 2, K_DEAD = 3 };

static bool long_size(void)
{
	const char *s = getenv("SCENARIO_SIZE");
	return s && strcmp(s, "long") == 0;
}

static double wall_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- the receiver, with a timestamp for every request it answers ---- */

/* One answered API request, from the receiver's --verbose line, stamped
 * when this process read it. */
struct rx_req {
	double t; /* th_now() */
	int status;
};

struct rx {
	pid_t pid;
	int port;
	char url[64];
	int errfd;
	pthread_t reader;
	struct rx_req *req; /* written by the reader thread; read after rx_stop */
	size_t nreq, cap;
	FILE *log; /* every stderr line, stamped, for a reader of a failure */
};

static void *rx_reader(void *arg)
{
	struct rx *rx = arg;
	FILE *f = fdopen(rx->errfd, "r");
	char line[1024];
	while (f && fgets(line, sizeof(line), f)) {
		double t = th_now();
		int status;
		char method[16], path[64];
		const char *arrow = strstr(line, " -> ");
		if (rx->log)
			fprintf(rx->log, "%.6f %s", t, line);
		if (!arrow || sscanf(line, "mlog-receiver: %15s %63s", method, path) != 2 ||
		    strcmp(method, "POST") != 0 || strncmp(path, "/api/v1/logs", 12) != 0 ||
		    sscanf(arrow, " -> %d", &status) != 1)
			continue;
		if (rx->nreq == rx->cap) {
			rx->cap = rx->cap ? 2 * rx->cap : 256;
			rx->req = realloc(rx->req, rx->cap * sizeof(*rx->req));
		}
		if (rx->req)
			rx->req[rx->nreq++] = (struct rx_req){t, status};
	}
	if (f)
		fclose(f);
	return NULL;
}

/* Starts mlog-receiver --verbose on `port` (0: a free one), storing to out,
 * with the extra flags (NULL-terminated list). */
static void rx_start(struct rx *rx, int port, const char *out, const char *logpath,
                     const char *const *flags)
{
	char portfile[160], portarg[16];
	snprintf(portfile, sizeof(portfile), "/tmp/flaky-port-%ld-%.0f", (long)getpid(),
	         th_now() * 1e6);
	snprintf(portarg, sizeof(portarg), "%d", port);
	const char *argv[48] = {th_prog("MLOG_RECEIVER"),
	                        "--listen",
	                        "127.0.0.1",
	                        "--port",
	                        portarg,
	                        "--port-file",
	                        portfile,
	                        "--out",
	                        out,
	                        "--verbose"};
	size_t n = 10;
	for (size_t i = 0; flags && flags[i] && n < 46; i++)
		argv[n++] = flags[i];
	argv[n] = NULL;

	int p[2];
	ck_assert_int_eq(pipe(p), 0);
	memset(rx, 0, sizeof(*rx));
	rx->log = fopen(logpath, "a");
	if (rx->log)
		setvbuf(rx->log, NULL, _IOLBF, 0);
	rx->pid = tu_fork();
	ck_assert_int_ge(rx->pid, 0);
	if (rx->pid == 0) {
		close(p[0]);
		dup2(p[1], 2);
		FILE *null = freopen("/dev/null", "w", stdout);
		(void)null;
		execv(argv[0], (char *const *)argv);
		_exit(127);
	}
	close(p[1]);
	rx->errfd = p[0];
	ck_assert_int_eq(pthread_create(&rx->reader, NULL, rx_reader, rx), 0);
	double end = th_now() + 20;
	FILE *f = NULL;
	while (!(f = fopen(portfile, "r")) && th_now() < end) {
		ck_assert_msg(waitpid(rx->pid, NULL, WNOHANG) == 0,
		              "mlog-receiver exited at start");
		usleep(5000);
	}
	ck_assert_msg(f != NULL, "mlog-receiver did not start");
	ck_assert_int_eq(fscanf(f, "%d", &rx->port), 1);
	fclose(f);
	unlink(portfile);
	ck_assert(port == 0 || rx->port == port);
	snprintf(rx->url, sizeof(rx->url), "http://127.0.0.1:%d", rx->port);
}

/* Stops the receiver with SIGTERM; returns its exit status (0 expected).
 * The request lines stay readable until the next rx_start. */
static int rx_stop(struct rx *rx)
{
	kill(rx->pid, SIGTERM);
	int rc = tu_wait_until(rx->pid, tu_now() + 30);
	pthread_join(rx->reader, NULL);
	if (rx->log)
		fclose(rx->log);
	rx->log = NULL;
	rx->pid = 0;
	return rc;
}

static long rx_stat(const struct rx *rx, const char *name)
{
	json_t *j = th_stats_url(rx->url);
	json_t *v = json_object_get(j, name);
	long r = json_is_integer(v) ? (long)json_integer_value(v) : 0;
	json_decref(j);
	return r;
}

/* ---- producers: forked children logging through libmlog ---- */

/* Which word event n of producer p carries; filled before the children
 * are forked, so parent and children agree without talking. */
static uint8_t *kinds[NPROD];

static void kinds_init(uint64_t total)
{
	for (int p = 0; p < NPROD; p++) {
		kinds[p] = calloc(total, 1);
		ck_assert_ptr_nonnull(kinds[p]);
	}
}

static void kinds_free(void)
{
	for (int p = 0; p < NPROD; p++)
		free(kinds[p]);
}

struct plan {
	const char *spool;
	const char *tag; /* first word of every message */
	uint64_t first, count;
	uint64_t gate_at; /* log up to here, report, wait for the gate; 0: none */
	int gate_fd, report_fd;
	double pause_max; /* random pause after every 50 events, seconds */
	uint64_t seed;
};

/* The child's body: exit 0 when every call returned ok and queued. */
static void produce(int p, const struct plan *pl)
{
	unsetenv("MASTER_LOG_ENDPOINT");
	char err[256];
	struct mlog_config cfg = {
	    .spool_dir = pl->spool,
	    .durability = "commit",
	    .backpressure = MLOG_OFF, /* the backlog is the point of an outage */
	    .spawn_agent = MLOG_OFF,
	};
	if (mlog_configure_ex(&cfg, err, sizeof(err))) {
		fprintf(stderr, "producer %d: mlog_configure: %s\n", p, err);
		_exit(1);
	}
	static const char *const tags[] = {"scenario", "flaky", NULL};
	uint64_t rng = pl->seed ^ ((uint64_t)p << 56);
	for (uint64_t n = pl->first; n < pl->first + pl->count; n++) {
		if (pl->gate_at && n == pl->gate_at) {
			char c = 'r';
			if (write(pl->report_fd, &c, 1) != 1 || read(pl->gate_fd, &c, 1) != 1)
				_exit(3);
		}
		const char *word = kinds[p][n] == K_REJECT      ? " " REJECT_WORD
		                   : kinds[p][n] == K_TRANSIENT ? " " TRANSIENT_WORD
		                                                : "";
		char meta[64];
		snprintf(meta, sizeof(meta), "{\"producer\": %d, \"n\": %" PRIu64 "}", p, n);
		struct mlog_result r =
		    mlog_ex(&(struct mlog_opts){.severity = (enum mlog_severity)(1 + n % 5),
		                                .title = n % 3 ? NULL : "scenario event",
		                                .tags = n % 2 ? tags : NULL,
		                                .metadata_json = n % 4 ? NULL : meta},
		            "%s p%d n%" PRIu64 "%s", pl->tag, p, n, word);
		if (!r.ok || !r.queued) {
			fprintf(stderr, "producer %d: event %" PRIu64 " not spooled: %s\n", p, n,
			        r.error);
			_exit(1);
		}
		if (pl->pause_max > 0 && n % 50 == 49)
			tu_sleep(pl->pause_max * (double)(tu_rand(&rng) % 1000) / 1000.0);
	}
	mlog_shutdown();
	_exit(0);
}

struct producers {
	pid_t pid[NPROD];
	int gate[NPROD];   /* write end */
	int report[NPROD]; /* read end */
};

static void producers_start(struct producers *ps, const struct plan *pl)
{
	for (int p = 0; p < NPROD; p++) {
		int g[2], r[2];
		ck_assert_int_eq(pipe(g), 0);
		ck_assert_int_eq(pipe(r), 0);
		struct plan mine = *pl;
		mine.gate_fd = g[0];
		mine.report_fd = r[1];
		ps->pid[p] = tu_fork();
		ck_assert_int_ge(ps->pid[p], 0);
		if (ps->pid[p] == 0)
			produce(p, &mine);
		ps->gate[p] = g[1];
		ps->report[p] = r[0];
		close(g[0]);
		close(r[1]);
	}
}

/* Waits until every producer has reached its gate. */
static void producers_at_gate(struct producers *ps, double timeout)
{
	for (int p = 0; p < NPROD; p++) {
		char c;
		struct pollfd pf = {.fd = ps->report[p], .events = POLLIN};
		ck_assert_msg(poll(&pf, 1, (int)(timeout * 1000)) == 1 &&
		                  read(ps->report[p], &c, 1) == 1,
		              "producer %d did not reach its gate", p);
	}
}

/* Waits for the producers; returns how many did not exit 0. */
static int producers_wait(struct producers *ps, double timeout)
{
	int bad = 0;
	double end = tu_now() + timeout;
	for (int p = 0; p < NPROD; p++) {
		int rc = tu_wait_until(ps->pid[p], end);
		if (rc != 0)
			fprintf(stderr, "producer %d exited with %d\n", p, rc);
		bad += rc != 0;
		close(ps->gate[p]);
		close(ps->report[p]);
	}
	return bad;
}

/* ---- the agent ---- */

struct policy {
	double initial, multiplier, max;
	bool jitter;
};

static void write_config(const struct th_dir *d, const char *url, long batch,
                         const struct policy *po)
{
	FILE *f = fopen(d->config, "w");
	ck_assert_ptr_nonnull(f);
	fprintf(f,
	        "spool: %s\nhttp:\n  endpoint: %s\n  timeouts:\n    connect_seconds: 5\n"
	        "    request_seconds: 10\nbatch_size: %ld\nmax_batch_size: %ld\nmax_in_flight: 1\n"
	        "flush_interval_seconds: 0.2\n"
	        "meta_interval_seconds: 0.1\n"
	        "retry:\n  initial_seconds: %g\n  multiplier: %g\n  max_seconds: %g\n  jitter: %s\n"
	        "  auth_seconds: 30\n"
	        "log:\n  level: info\n",
	        d->spool, url, batch, batch, po->initial, po->multiplier, po->max,
	        po->jitter ? "true" : "false");
	fclose(f);
}

/* A field of agent.counters in the meta store (-1 when absent). */
static long agent_counter(const char *spool, const char *name)
{
	char buf[512], key[64];
	th_meta(spool, "agent.counters", buf, sizeof(buf));
	snprintf(key, sizeof(key), "%s=", name);
	for (char *p = strstr(buf, key); p; p = strstr(p + 1, key))
		if (p == buf || p[-1] == ' ')
			return atol(p + strlen(key));
	return -1;
}

/* The agent's failure lines ("...; N events kept, next try in X s"), with
 * their wall-clock time and the wait they announce. */
struct failure {
	double t;
	double wait;
	bool retry_after;
};

static size_t agent_failures(const char *log, struct failure **out)
{
	*out = NULL;
	FILE *f = fopen(log, "r");
	if (!f)
		return 0;
	size_t n = 0, cap = 0;
	char line[2048];
	while (fgets(line, sizeof(line), f)) {
		const char *w = strstr(line, "next try in ");
		struct tm tm = {0};
		int ms = 0;
		if (!w || sscanf(line, "%d-%d-%dT%d:%d:%d.%dZ", &tm.tm_year, &tm.tm_mon,
		                 &tm.tm_mday, &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &ms) != 7)
			continue;
		tm.tm_year -= 1900;
		tm.tm_mon -= 1;
		if (n == cap) {
			cap = cap ? 2 * cap : 64;
			*out = realloc(*out, cap * sizeof(**out));
			ck_assert_ptr_nonnull(*out);
		}
		(*out)[n++] = (struct failure){(double)timegm(&tm) + ms / 1000.0,
		                               atof(w + strlen("next try in ")),
		                               strstr(w, "(Retry-After)") != NULL};
	}
	fclose(f);
	return n;
}

/* ---- what the receiver stored ---- */

struct tally {
	uint64_t lines, lost, duplicates, stray, order_breaks, rejects_stored;
};

/* Reads the out file and checks it against the plan: every event of
 * producer p numbered below sent[p] that is not a reject stored exactly
 * once; spool_seq rising through the file and each producer's numbers
 * rising, except for transient events, which arrive after their phase. */
static struct tally check_out(const char *out, const char *tag, const uint64_t sent[NPROD])
{
	struct tally t = {0};
	uint32_t *seen[NPROD];
	for (int p = 0; p < NPROD; p++)
		seen[p] = calloc(sent[p] + 1, sizeof(uint32_t));
	FILE *f = fopen(out, "r");
	ck_assert_ptr_nonnull(f);
	char *line = NULL;
	size_t ll = 0;
	long last_seq = -1;
	int64_t last_n[NPROD];
	for (int p = 0; p < NPROD; p++)
		last_n[p] = -1;
	while (getline(&line, &ll, f) > 0) {
		t.lines++;
		json_error_t je;
		json_t *j = json_loads(line, 0, &je);
		ck_assert_msg(j != NULL, "stored line %" PRIu64 " is not JSON: %s", t.lines,
		              je.text);
		const char *m = json_string_value(json_object_get(j, "message"));
		json_t *sq = json_object_get(
		    json_object_get(json_object_get(j, "metadata"), "c_client"), "spool_seq");
		long seq = json_is_integer(sq) ? (long)json_integer_value(sq) : -1;
		char word[32] = "";
		char mtag[32];
		int p = -1;
		uint64_t n = 0;
		if (!m || sscanf(m, "%31s p%d n%" SCNu64 " %31s", mtag, &p, &n, word) < 3 ||
		    strcmp(mtag, tag) != 0 || p < 0 || p >= NPROD || n >= sent[p]) {
			t.stray++;
			fprintf(stderr, "stray stored event: %s", line);
			json_decref(j);
			continue;
		}
		json_decref(j);
		if (kinds[p][n] == K_REJECT)
			t.rejects_stored++;
		if (seen[p][n]++)
			t.duplicates++;
		if (kinds[p][n] == K_TRANSIENT)
			continue; /* kept by a 207, sent again after later events */
		if (seq <= last_seq || (int64_t)n <= last_n[p]) {
			if (t.order_breaks++ < 5)
				fprintf(stderr,
				        "out of order at line %" PRIu64
				        ": seq %ld after %ld, p%d n%" PRIu64 " after n%" PRId64
				        "\n",
				        t.lines, seq, last_seq, p, n, last_n[p]);
		}
		last_seq = seq;
		last_n[p] = (int64_t)n;
	}
	free(line);
	fclose(f);
	for (int p = 0; p < NPROD; p++) {
		for (uint64_t n = 0; n < sent[p]; n++)
			if (!seen[p][n] && kinds[p][n] != K_REJECT) {
				if (t.lost++ < 5)
					fprintf(stderr, "lost: %s p%d n%" PRIu64 "\n", tag, p, n);
			}
		free(seen[p]);
	}
	return t;
}

/* Dead letters: how many, and how many are not a reject or are a reject
 * seen twice.  Call it last: it marks the rejects it finds in kinds. */
static size_t check_dead(const char *spool, const uint64_t sent[NPROD], size_t *wrong)
{
	struct spool_options o;
	spool_options_init(&o);
	o.durability = SPOOL_SYNC;
	struct spool *s = tu_open(spool, &o);
	struct spool_batch *b;
	ck_assert_int_eq(spool_read_dead(s, 0, 0, &b), 0);
	size_t n = spool_batch_count(b);
	const struct spool_record *r = spool_batch_records(b);
	*wrong = 0;
	for (size_t i = 0; i < n; i++) {
		const char *m;
		size_t ml;
		char text[128] = "";
		int p = -1;
		uint64_t ev = 0;
		if (spool_event_get_str(r[i].data, r[i].len, "message", &m, &ml) == 0)
			snprintf(text, sizeof(text), "%.*s", (int)ml, m);
		bool ok = sscanf(text, "%*s p%d n%" SCNu64, &p, &ev) == 2 && p >= 0 && p < NPROD &&
		          ev < sent[p] && kinds[p][ev] == K_REJECT && r[i].dead_status == 422;
		if (ok) {
			kinds[p][ev] = K_DEAD; /* a second dead letter of it is wrong */
		} else {
			(*wrong)++;
			fprintf(stderr, "unexpected dead letter seq %" PRIu64 " (%d %s): %s\n",
			        r[i].seq, r[i].dead_status, r[i].dead_reason, text);
		}
	}
	spool_batch_release(b);
	spool_close(s);
	return n;
}

/* ---- waiting for the spool to settle ---- */

struct settle {
	const char *spool;
	struct rx *rx;
	long accepted_before; /* stored by earlier receiver runs */
	uint64_t want_stored, want_pending, want_dead;
	long stored;
	struct spool_stats st;
};

static bool settled(void *arg)
{
	struct settle *s = arg;
	s->stored = s->accepted_before + rx_stat(s->rx, "accepted");
	s->st = th_stats(s->spool);
	return (uint64_t)s->stored >= s->want_stored && s->st.pending == s->want_pending &&
	       s->st.dead == s->want_dead;
}

static void wait_settled(struct settle *s, double timeout, const char *what)
{
	usleep(50000);
	bool ok = th_wait(settled, s, timeout);
	ck_assert_msg(ok,
	              "%s: not settled within %.0f s: stored %ld of %" PRIu64 ", pending %" PRIu64
	              " (want %" PRIu64 "), dead %" PRIu64 " (want %" PRIu64 ")",
	              what, timeout, s->stored, s->want_stored, s->st.pending, s->want_pending,
	              s->st.dead, s->want_dead);
	ck_assert_msg((uint64_t)s->stored == s->want_stored, "%s: stored %ld, want %" PRIu64, what,
	              s->stored, s->want_stored);
}

/* ---- outage ---- */

/* Most requests a backoff with no jitter allows in a window of `len`
 * seconds: the waits only grow, so a window that starts at the first
 * failure holds the most of them. */
static long backoff_bound(const struct policy *po, double len)
{
	long n = 1;
	double t = 0, d = po->initial;
	for (;;) {
		double w = d < po->max ? d : po->max;
		if (t + w > len)
			return n;
		t += w;
		n++;
		d *= po->multiplier;
	}
}

/* The agent's failure lines between wall-clock times from and to, one
 * outage: the k-th must announce the policy's k-th wait (jitter is off) and
 * come no sooner than the wait the previous one announced.  Returns how
 * many there are; *bad counts the lines that break either rule. */
static long check_failure_log(const char *log, double from, double to, const struct policy *po,
                              long *bad)
{
	struct failure *fl;
	size_t nf = agent_failures(log, &fl);
	long k = 0;
	for (size_t i = 0; i < nf; i++) {
		if (fl[i].t < from - 0.01 || fl[i].t > to + 0.01)
			continue;
		double want = fmin(po->max, po->initial * pow(po->multiplier, (double)k));
		/* log times have millisecond resolution */
		double early = k ? fl[i - 1].t + fl[i - 1].wait - 0.002 - fl[i].t : 0;
		if (fabs(fl[i].wait - want) > 0.0015 || early > 0) {
			(*bad)++;
			fprintf(stderr,
			        "failure %ld of the outage: wait %.3f s (policy %.3f s), %.3f s "
			        "before the previous wait ran out\n",
			        k + 1, fl[i].wait, want, early > 0 ? early : 0.0);
		}
		k++;
	}
	free(fl);
	return k;
}

START_TEST(outage)
{
	bool lng = long_size();
	int rounds = lng ? 3 : 1;
	uint64_t each = 100000 / NPROD; /* per producer and round */
	double down_503 = lng ? 15 : 2.5, down_refused = lng ? 15 : 2.5;
	struct policy po = {0.05, 2, lng ? 3.2 : 0.8, false};
	uint64_t seed = tu_seed("scenario outage");
	double t_start = th_now();

	struct th_dir d;
	th_dir_make(&d, "outage");
	char outage_file[320], rxlog[320];
	snprintf(outage_file, sizeof(outage_file), "%s/outage", d.root);
	snprintf(rxlog, sizeof(rxlog), "%s/receiver.log", d.root);
	kinds_init(each * (uint64_t)rounds); /* all plain */
	const char *oflags[] = {"--outage-file", outage_file, NULL};

	struct rx rx;
	int port = 0, crashes = 0;
	long accepted = 0, req_503 = 0, req_refused = 0, bound = 0, prev_failures = 0;
	long over_bound = 0, bad_waits = 0, log_mismatch = 0, rx_dups = 0;
	uint64_t sent[NPROD] = {0};
	pid_t agent = 0;
	for (int round = 0; round < rounds; round++) {
		FILE *of = fopen(outage_file, "w");
		ck_assert_ptr_nonnull(of);
		fclose(of);
		rx_start(&rx, port, d.out, rxlog, oflags);
		double t_down = th_now(), w_down = wall_now();
		if (!agent) {
			port = rx.port;
			write_config(&d, rx.url, 500, &po);
			agent = th_agent_start(&d, NULL);
		}
		/* half of the round's events while the server answers 503 */
		struct producers ps;
		struct plan pl = {.spool = d.spool,
		                  .tag = "outage",
		                  .first = sent[0],
		                  .count = each,
		                  .gate_at = sent[0] + each / 2,
		                  .seed = seed + (uint64_t)round};
		producers_start(&ps, &pl);
		producers_at_gate(&ps, 300);
		while (th_now() < t_down + down_503)
			usleep(20000);
		/* requests after this read, 503 or refused, count as refused */
		json_t *st = th_stats_url(rx.url);
		double t_refused = th_now();
		long r503 = (long)json_integer_value(json_object_get(st, "requests"));
		json_t *n503 = json_object_get(json_object_get(st, "status"), "503");
		ck_assert_int_eq(json_integer_value(n503), r503);
		ck_assert_int_eq(json_integer_value(json_object_get(st, "accepted")), 0);
		json_decref(st);
		ck_assert_int_eq(rx_stop(&rx), 0);
		free(rx.req);

		/* the other half while nothing listens: connections refused */
		for (int p = 0; p < NPROD; p++)
			ck_assert_int_eq(write(ps.gate[p], "g", 1), 1);
		crashes += producers_wait(&ps, 300);
		for (int p = 0; p < NPROD; p++)
			sent[p] += each;
		while (th_now() < t_refused + down_refused)
			usleep(20000);
		ck_assert_msg(waitpid(agent, NULL, WNOHANG) == 0, "spool-agent died in the outage");

		/* back up: everything drains */
		unlink(outage_file);
		rx_start(&rx, port, d.out, rxlog, NULL);
		double t_up = th_now(), w_up = wall_now();
		struct settle s = {.spool = d.spool,
		                   .rx = &rx,
		                   .accepted_before = accepted,
		                   .want_stored = sent[0] + sent[1]};
		wait_settled(&s, lng ? 900 : 300, "outage recovery");
		accepted = s.stored;
		/* the agent publishes its counters every meta_interval_seconds */
		for (double end = th_now() + 10;
		     agent_counter(d.spool, "acked") < accepted && th_now() < end;)
			usleep(20000);
		long failures = agent_counter(d.spool, "failures");
		rx_dups += rx_stat(&rx, "duplicates");
		ck_assert_int_eq(rx_stop(&rx), 0);
		free(rx.req);

		/* requests during the outage against the backoff schedule; +1
		 * for a request crossing a boundary */
		long rref = failures - prev_failures - r503;
		prev_failures = failures;
		long b503 = backoff_bound(&po, t_refused - t_down) + 1;
		long bref = backoff_bound(&po, t_up - t_refused) + 1;
		long ball = backoff_bound(&po, t_up - t_down) + 1;
		printf(
		    "outage round %d: %.1f s of 503 with %ld requests (bound %ld), %.1f s refused "
		    "with %ld requests (bound %ld), %ld in all (bound %ld)\n",
		    round + 1, t_refused - t_down, r503, b503, t_up - t_refused, rref, bref,
		    r503 + rref, ball);
		over_bound += r503 > b503 || rref > bref || r503 + rref > ball || rref < 0;
		/* the agent's own account agrees, wait by wait */
		long logged = check_failure_log(d.log, w_down, w_up, &po, &bad_waits);
		if (logged != r503 + rref) {
			log_mismatch++;
			fprintf(stderr, "the agent logged %ld failures, its counters say %ld\n",
			        logged, r503 + rref);
		}
		ck_assert_msg(r503 >= 1, "no request reached the server during the 503 phase");
		req_503 += r503;
		req_refused += rref;
		bound += ball;
	}
	crashes += th_agent_stop(agent, SIGTERM, 30) != 0;

	struct tally t = check_out(d.out, "outage", sent);
	size_t wrong;
	size_t dead = check_dead(d.spool, sent, &wrong);
	uint64_t events = sent[0] + sent[1];
	printf("FIGURES scenario=outage rounds=%d events=%" PRIu64 " lost=%" PRIu64
	       " duplicates=%" PRIu64 " crashes=%d requests_during_outage=%ld bound=%ld "
	       "requests_503=%ld requests_refused=%ld backoff_breaks=%ld order_breaks=%" PRIu64
	       " server_duplicates=%ld dead=%zu seconds=%.1f\n",
	       rounds, events, t.lost, t.duplicates, crashes, req_503 + req_refused, bound, req_503,
	       req_refused, bad_waits, t.order_breaks, rx_dups, dead, th_now() - t_start);
	printf("outage: %" PRIu64
	       " events logged during %d outage(s) of %.1f s arrived with %" PRIu64
	       " lost, %" PRIu64 " duplicated, %" PRIu64 " out of order; the agent tried %ld times "
	       "while the server was down (its backoff allows %ld)\n",
	       events, rounds, down_503 + down_refused, t.lost, t.duplicates, t.order_breaks,
	       req_503 + req_refused, bound);
	fflush(stdout);
	ck_assert_msg(over_bound == 0, "more requests during an outage than the backoff allows");
	ck_assert_msg(bad_waits == 0, "a wait broke the backoff policy (see stderr)");
	ck_assert_int_eq(log_mismatch, 0);
	ck_assert_int_eq(t.lines, events);
	ck_assert_int_eq(t.lost, 0);
	ck_assert_int_eq(t.duplicates, 0);
	ck_assert_int_eq(t.stray, 0);
	ck_assert_int_eq(t.order_breaks, 0);
	ck_assert_int_eq(rx_dups, 0);
	ck_assert_int_eq(dead, 0);
	ck_assert_int_eq(crashes, 0);
	ck_assert_int_eq(th_stats(d.spool).pending, 0);
	kinds_free();
	th_dir_remove(&d);
}
END_TEST

/* ---- flaky ---- */

#define RJ " --reject-word " REJECT_WORD
#define TR " --transient-word " TRANSIENT_WORD

/* One receiver run.  Flags that cannot share a run: the reject and
 * transient words need 207 bodies, which --bad-json-2xx and --empty-2xx
 * spoil (a 2xx without results acknowledges the whole batch). */
struct phase {
	const char *name;
	const char *flags; /* receiver flags, space-separated; SEED is replaced */
	unsigned reject_pct;
	/* events with the transient word: fewer than a batch, since they stay
	 * at the head of the queue while the word is refused */
	unsigned transient;
	double retry_after; /* > 0: no request sooner than this after a fault */
	uint64_t per_producer;
};

static const struct phase short_phases[] = {
    {"fail-500-503", "--fail-rate 0.3 --seed SEED" RJ, 3, 0, 0, 600},
    {"429-retry-after", "--fail-first 2 --fail-status 429 --retry-after 1" RJ, 3, 0, 1, 400},
    {"drop-transient-207", "--drop-rate 0.3 --seed SEED" TR RJ, 3, 30, 0, 600},
    {"slow", "--latency-ms 100 --slow-body-ms 10 --slow-body-chunk 256" RJ, 3, 0, 0, 400},
    {"bad-json-2xx", "--bad-json-2xx --fail-rate 0.2 --seed SEED", 0, 0, 0, 600},
    {"empty-2xx", "--empty-2xx --drop-rate 0.2 --seed SEED", 0, 0, 0, 600},
    {"clean", RJ, 2, 0, 0, 200},
};

static const struct phase long_phases[] = {
    {"fail-500-503", "--fail-rate 0.4 --seed SEED" RJ, 3, 0, 0, 5000},
    {"429-retry-after", "--fail-rate 0.1 --fail-rate-status 429 --retry-after 1 --seed SEED" RJ, 3,
     0, 1, 3000},
    {"503-retry-after-date", "--fail-rate 0.1 --retry-after 2 --retry-after-date --seed SEED" RJ, 3,
     0, 0.9, 2000},
    {"drop-transient-207", "--drop-rate 0.3 --seed SEED" TR RJ, 3, 40, 0, 5000},
    {"slow", "--latency-ms 150 --slow-body-ms 10 --slow-body-chunk 128" RJ, 3, 0, 0, 3000},
    {"transient-fail", "--fail-rate 0.2 --seed SEED" TR RJ, 3, 60, 0, 5000},
    {"bad-json-2xx", "--bad-json-2xx --fail-rate 0.2 --seed SEED", 0, 0, 0, 5000},
    {"drop-slow", "--drop-rate 0.2 --latency-ms 50 --seed SEED" RJ, 3, 0, 0, 3000},
    {"empty-2xx", "--empty-2xx --drop-rate 0.2 --seed SEED", 0, 0, 0, 5000},
    {"fail-heavy", "--fail-rate 0.6 --seed SEED" TR RJ, 3, 30, 0, 3000},
    {"clean", RJ, 2, 0, 0, 1000},
};

/* Gaps after the fault answers (429/500/503) of a run with Retry-After:
 * returns how many were checked, keeps the smallest gap and counts the
 * requests that came sooner than ra (less the reader's latency). */
static long check_retry_after(struct rx *rx, double ra, double *min_gap, long *early)
{
	long checked = 0;
	for (size_t i = 0; i + 1 < rx->nreq; i++) {
		int s = rx->req[i].status;
		if (s != 429 && s != 500 && s != 503)
			continue;
		double gap = rx->req[i + 1].t - rx->req[i].t;
		*min_gap = fmin(*min_gap, gap);
		checked++;
		if (gap < ra - 0.3) {
			(*early)++;
			fprintf(stderr, "a request came %.3f s after a %d with Retry-After %g s\n",
			        gap, s, ra);
		}
	}
	return checked;
}

/* Marks which events of a phase carry a word; returns the rejects. */
static uint64_t choose_kinds(const struct phase *ph, const uint64_t sent[NPROD], uint64_t *rng)
{
	uint64_t rejects = 0;
	for (int p = 0; p < NPROD; p++)
		for (uint64_t n = sent[p]; n < sent[p] + ph->per_producer; n++) {
			kinds[p][n] = tu_rand(rng) % 100 < ph->reject_pct ? K_REJECT : K_PLAIN;
			rejects += kinds[p][n] == K_REJECT;
		}
	for (unsigned k = 0; k < ph->transient;) {
		int p = (int)(tu_rand(rng) % NPROD);
		uint64_t n = sent[p] + tu_rand(rng) % ph->per_producer;
		if (kinds[p][n] == K_PLAIN) {
			kinds[p][n] = K_TRANSIENT;
			k++;
		}
	}
	return rejects;
}

START_TEST(flaky)
{
	bool lng = long_size();
	const struct phase *ph = lng ? long_phases : short_phases;
	size_t nph = lng ? sizeof(long_phases) / sizeof(long_phases[0])
	                 : sizeof(short_phases) / sizeof(short_phases[0]);
	uint64_t seed = tu_seed("scenario flaky");
	uint64_t rng = seed;
	double t_start = th_now();
	struct policy po = {0.02, 2, 0.2, true};

	struct th_dir d;
	th_dir_make(&d, "flaky");
	char rxlog[320];
	snprintf(rxlog, sizeof(rxlog), "%s/receiver.log", d.root);
	uint64_t total = 0;
	for (size_t i = 0; i < nph; i++)
		total += ph[i].per_producer;
	kinds_init(total);

	uint64_t sent[NPROD] = {0}, rejects = 0, blocked = 0;
	long accepted = 0, faults = 0, drops = 0, transient = 0, rx_dups = 0, rejected = 0;
	long ra_checked = 0, ra_early = 0;
	double min_gap = 1e9;
	int port = 0, crashes = 0;
	pid_t agent = 0;
	for (size_t i = 0; i < nph; i++) {
		rejects += choose_kinds(&ph[i], sent, &rng);
		char rxseed[32], flagbuf[256], *save = NULL;
		snprintf(rxseed, sizeof(rxseed), "%" PRIu64, tu_rand(&rng) % 1000000000);
		snprintf(flagbuf, sizeof(flagbuf), "%s", ph[i].flags);
		const char *flags[24];
		size_t nf = 0;
		for (char *w = strtok_r(flagbuf, " ", &save); w && nf < 23;
		     w = strtok_r(NULL, " ", &save))
			flags[nf++] = strcmp(w, "SEED") == 0 ? rxseed : w;
		flags[nf] = NULL;

		struct rx rx;
		rx_start(&rx, port, d.out, rxlog, flags);
		if (!agent) {
			port = rx.port;
			write_config(&d, rx.url, 100, &po);
			agent = th_agent_start(&d, NULL);
		}
		struct producers ps;
		struct plan pl = {.spool = d.spool,
		                  .tag = "flaky",
		                  .first = sent[0],
		                  .count = ph[i].per_producer,
		                  .pause_max = 0.05,
		                  .seed = seed + i};
		producers_start(&ps, &pl);
		crashes += producers_wait(&ps, 300);
		/* this phase's transient events stay; an earlier phase's went now */
		blocked = 0;
		for (int p = 0; p < NPROD; p++) {
			for (uint64_t n = sent[p]; n < sent[p] + ph[i].per_producer; n++)
				blocked += kinds[p][n] == K_TRANSIENT && strstr(ph[i].flags, TR);
			sent[p] += ph[i].per_producer;
		}
		struct settle s = {.spool = d.spool,
		                   .rx = &rx,
		                   .accepted_before = accepted,
		                   .want_stored = sent[0] + sent[1] - rejects - blocked,
		                   .want_pending = blocked,
		                   .want_dead = rejects};
		char what[96];
		snprintf(what, sizeof(what), "phase %s", ph[i].name);
		wait_settled(&s, lng ? 600 : 120, what);
		ck_assert_msg(waitpid(agent, NULL, WNOHANG) == 0, "spool-agent died in %s", what);
		accepted = s.stored;
		json_t *st = th_stats_url(rx.url);
		long f = (long)json_integer_value(json_object_get(st, "faults"));
		long dr = (long)json_integer_value(json_object_get(st, "dropped"));
		long tr = (long)json_integer_value(json_object_get(st, "transient"));
		long du = (long)json_integer_value(json_object_get(st, "duplicates"));
		rejected += (long)json_integer_value(json_object_get(st, "rejected"));
		json_decref(st);
		faults += f;
		drops += dr;
		transient += tr;
		rx_dups += du;
		ck_assert_int_eq(rx_stop(&rx), 0);
		long got = 0;
		if (ph[i].retry_after > 0) {
			got = check_retry_after(&rx, ph[i].retry_after, &min_gap, &ra_early);
			ck_assert_msg(got > 0, "%s: no fault answer to check", what);
			ra_checked += got;
		}
		printf("phase %-20s %5" PRIu64 " events, %4zu requests, %3ld fault answers, %3ld "
		       "dropped, %3ld transient, %4ld duplicates%s\n",
		       ph[i].name, ph[i].per_producer * NPROD, rx.nreq, f, dr, tr, du,
		       got ? ", Retry-After gaps checked" : "");
		free(rx.req);
	}
	ck_assert_msg(blocked == 0, "the last phase must not hold transient events");
	crashes += th_agent_stop(agent, SIGTERM, 30) != 0;

	struct tally t = check_out(d.out, "flaky", sent);
	size_t wrong;
	size_t dead = check_dead(d.spool, sent, &wrong);
	uint64_t events = sent[0] + sent[1];
	struct failure *fl;
	size_t nfl = agent_failures(d.log, &fl), ra_lines = 0;
	for (size_t k = 0; k < nfl; k++)
		ra_lines += fl[k].retry_after;
	free(fl);
	/* spoolctl's view of the dead letters */
	char cmd[512], buf[64];
	snprintf(cmd, sizeof(cmd), "%s --spool %s dead list --json | wc -l", th_prog("SPOOLCTL"),
	         d.spool);
	ck_assert_int_eq(tu_capture(cmd, buf, sizeof(buf)), 0);
	long ctl_dead = atol(buf);

	printf("FIGURES scenario=flaky rounds=%zu events=%" PRIu64 " lost=%" PRIu64
	       " duplicates=%" PRIu64 " crashes=%d fault_answers=%ld dropped=%ld transient=%ld "
	       "server_duplicates=%ld rejects=%" PRIu64 " dead=%zu wrong_dead=%zu "
	       "retry_after_checked=%ld early_retries=%ld min_retry_gap=%.3f order_breaks=%" PRIu64
	       " seconds=%.1f\n",
	       nph, events, t.lost, t.duplicates, crashes, faults, drops, transient, rx_dups,
	       rejects, dead, wrong, ra_checked, ra_early, ra_checked ? min_gap : 0.0,
	       t.order_breaks, th_now() - t_start);
	printf("flaky: %" PRIu64 " events through %zu misbehaving server runs (%ld fault answers, "
	       "%ld dropped connections, %ld transient verdicts): %" PRIu64 " lost, %" PRIu64
	       " duplicated, %zu dead letters for %" PRIu64 " rejected events\n",
	       events, nph, faults, drops, transient, t.lost, t.duplicates, dead, rejects);
	fflush(stdout);
	ck_assert_int_eq(t.lost, 0);
	ck_assert_int_eq(t.duplicates, 0);
	ck_assert_int_eq(t.stray, 0);
	ck_assert_int_eq(t.rejects_stored, 0);
	ck_assert_int_eq(t.order_breaks, 0);
	ck_assert_int_eq(t.lines, events - rejects);
	ck_assert_int_eq(dead, rejects);
	ck_assert_int_eq(wrong, 0);
	ck_assert_int_eq(ctl_dead, (long)rejects);
	/* a dropped 207 makes the server refuse the same event again */
	ck_assert_int_ge(rejected, (long)rejects);
	ck_assert_int_eq(ra_early, 0);
	ck_assert_msg(ra_lines > 0, "the agent never logged a Retry-After wait");
	ck_assert_int_eq(crashes, 0);
	ck_assert_int_eq(th_stats(d.spool).pending, 0);
	kinds_free();
	th_dir_remove(&d);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("scenario-flaky");
	TCase *tc = tcase_create("flaky");
	tcase_set_timeout(tc, long_size() ? 1800 : 600);
	tcase_add_test(tc, outage);
	tcase_add_test(tc, flaky);
	suite_add_tcase(s, tc);
	return tc_run_forked(s);
}
