/* crash.c — reliability scenario: producers and spool-agent are killed with
 * SIGKILL at random moments while events flow, and afterwards the
 * receiver's store must hold every event a producer was promised.
 *
 * Producers are forked children of the test process that use the public
 * client API (mlog_configure, mlog, mlog_ex) in async mode, with sync or
 * commit durability, in one or two threads.  A thread writes "p<k> t<t>
 * n<i>" and, once the call has returned ok, reports i to the parent through
 * a pipe before it logs i+1.  So everything up to the last reported i of
 * each stream is promised, i+1 may or may not arrive (killed between return
 * and report, or in the middle of the call), and anything beyond that was
 * never tried.  spool-agent and mlog-receiver run as real processes over
 * 127.0.0.1; the receiver's latency and dropped answers make kills land in
 * the middle of requests.
 *
 * Three scenarios, one test each:
 *   producer-kill  producers are killed and respawned, the agent drains
 *   agent-kill     the agent is killed and restarted, producers keep logging
 *   both-kill      both at once
 * After the last round the remaining producers stop cleanly, the agent
 * drains the spool, and the out file is checked: every promised event
 * exactly once, nothing that was never tried, each stream in its order,
 * spool order (spool_seq) kept, the right pid in c_client.  The spool's
 * counters must agree (records taken in = acknowledged = events stored),
 * and the receiver's duplicates must stay within two batches per agent
 * kill and one per dropped answer.  Each test prints one FIGURES line and one line
 * saying what was tried.
 *
 * SCENARIO_SIZE=short (default) or long; SPOOL_TEST_SEED replays the random
 * choices (kill times, modes, pacing; the process timing itself is not
 * replayable).  AGENT_TEST_KEEP=1 keeps the temporary directories. */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <spool/mlog.h>
#include <spool/spool.h>

#include "check_main.h"
#include "harness.h"
#include "testutil.h"

enum { MAX_THREADS = 2, MAX_SLOTS = 8, MAX_NOTES = 12 };

/* How big a run is; chosen by SCENARIO_SIZE. */
struct size {
	const char *name;
	double phase_seconds;         /* producers log (and things get killed) this long */
	int producers;                /* running at once */
	int life_lo_ms, life_hi_ms;   /* a producer's life before its SIGKILL */
	int agent_lo_ms, agent_hi_ms; /* the agent's life before its SIGKILL */
	int restart_hi_ms;            /* the agent stays down up to this long */
	int pace_hi_us;               /* a producer thread's pause between events */
	double drain_seconds;         /* deadline for the final drain */
};

static const struct size SIZE_SHORT = {"short", 5.0, 3, 80, 600, 60, 700, 120, 1500, 120};
static const struct size SIZE_LONG = {"long", 60.0, 5, 80, 1500, 40, 1500, 300, 1500, 600};

static const struct size *run_size(void)
{
	const char *s = getenv("SCENARIO_SIZE");
	if (s && strcmp(s, "long") == 0)
		return &SIZE_LONG;
	ck_assert_msg(!s || !*s || strcmp(s, "short") == 0,
	              "SCENARIO_SIZE must be short or long, got '%s'", s);
	return &SIZE_SHORT;
}

/* What a scenario attacks. */
struct scenario {
	const char *name;
	bool kill_producers;
	bool kill_agent;
	const char *latency_ms; /* receiver --latency-ms */
	const char *drop_rate;  /* receiver --drop-rate */
	int batch_size;
};

/* One producer thread's events: everything up to `promised` is owed. */
struct stream {
	pid_t pid;
	long promised; /* last n reported; -1: none */
	bool sync;     /* sync durability (else commit) */
	/* filled by the check */
	unsigned char *seen; /* per n, times it is in the out file */
	long last_n;         /* last n seen in out-file order */
};

struct slot {
	pid_t pid; /* 0: empty */
	unsigned k;
	int fd; /* report pipe, read end, non-blocking */
	unsigned char part[8];
	size_t npart;
	double kill_at; /* 0: never killed */
};

struct run {
	const struct scenario *sc;
	const struct size *sz;
	uint64_t rng;
	struct th_dir d;
	struct th_rx rx;
	int stop_r, stop_w; /* closing stop_w tells every producer to finish */
	struct slot slot[MAX_SLOTS];
	struct stream *st; /* index k * MAX_THREADS + t */
	size_t nst;
	unsigned next_k;
	pid_t agent;
	double agent_kill_at, agent_start_at;
	long producer_kills, agent_kills, agent_starts, crashes;
	long sync_producers, commit_producers;
	unsigned sync_offset;
	bool draining; /* no more kills */
};

/* ---- the producer (a forked child: no ck_assert here) ---- */

struct pthread_arg {
	unsigned k, t;
	int report_fd, stop_fd;
	int pace_hi_us;
	uint64_t rng;
	int failed;
};

static bool stop_requested(int fd)
{
	struct pollfd p = {.fd = fd, .events = POLLIN};
	return poll(&p, 1, 0) > 0;
}

static void *producer_thread(void *argp)
{
	struct pthread_arg *a = argp;
	static const char *const tags[] = {"scenario", "crash", NULL};
	unsigned burst = 0;
	for (uint32_t n = 0; !stop_requested(a->stop_fd); n++) {
		struct mlog_result r;
		switch (tu_rand(&a->rng) % 4) {
		case 0:
			r = mlog("p%u t%u n%" PRIu32, a->k, a->t, n);
			break;
		case 1:
			r = mlog_ex(&(struct mlog_opts){.severity = MLOG_WARN, .tags = tags},
			            "p%u t%u n%" PRIu32, a->k, a->t, n);
			break;
		case 2: {
			char js[64];
			snprintf(js, sizeof(js), "{\"n\": %" PRIu32 ", \"ok\": true}", n);
			r = mlog_ex(&(struct mlog_opts){.severity = MLOG_ERROR,
			                                .title = "crash scenario",
			                                .metadata_json = js},
			            "p%u t%u n%" PRIu32, a->k, a->t, n);
			break;
		}
		default:
			r = mlog_ex(NULL, "p%u t%u n%" PRIu32, a->k, a->t, n);
			break;
		}
		if (!r.ok || !r.queued) {
			fprintf(stderr, "producer p%u t%u: event n%" PRIu32 " not spooled: %s\n",
			        a->k, a->t, n, r.error);
			a->failed = 1;
			return NULL;
		}
		uint32_t rep[2] = {a->t, n};
		if (tu_write_all(a->report_fd, rep, sizeof(rep)) != 0) {
			a->failed = 1;
			return NULL;
		}
		/* mostly paced, now and then a burst without pauses, so that kills
		 * also land inside calls and ring appends */
		if (burst > 0)
			burst--;
		else if (tu_rand(&a->rng) % 100 == 0)
			burst = (unsigned)tu_rand_range(&a->rng, 10, 200);
		else
			usleep((useconds_t)tu_rand_range(&a->rng, 0, (uint64_t)a->pace_hi_us));
	}
	return NULL;
}

static _Noreturn void producer_main(const struct run *w, unsigned k, int threads, bool sync,
                                    int report_fd, uint64_t seed)
{
	close(w->stop_w);
	struct mlog_config cfg = {
	    .spool_dir = w->d.spool,
	    .durability = sync ? "sync" : "commit",
	    .spawn_agent = MLOG_OFF, /* the test's spool-agent is the one sender */
	    .batch_size = w->sc->batch_size,
	};
	char err[256];
	if (mlog_configure_ex(&cfg, err, sizeof(err)) != 0) {
		fprintf(stderr, "producer p%u: mlog_configure: %s\n", k, err);
		_exit(2);
	}
	struct pthread_arg a[MAX_THREADS];
	pthread_t th[MAX_THREADS];
	for (int t = 0; t < threads; t++) {
		a[t] = (struct pthread_arg){.k = k,
		                            .t = (unsigned)t,
		                            .report_fd = report_fd,
		                            .stop_fd = w->stop_r,
		                            .pace_hi_us = w->sz->pace_hi_us,
		                            .rng = seed + (uint64_t)t * 7919};
		if (pthread_create(&th[t], NULL, producer_thread, &a[t]) != 0)
			_exit(4);
	}
	int failed = 0;
	for (int t = 0; t < threads; t++) {
		pthread_join(th[t], NULL);
		failed |= a[t].failed;
	}
	mlog_shutdown();
	_exit(failed ? 3 : 0);
}

/* ---- the parent's bookkeeping ---- */

static double ms_between(struct run *w, int lo, int hi)
{
	return (double)tu_rand_range(&w->rng, (uint64_t)lo, (uint64_t)hi) / 1000.0;
}

static void spawn_producer(struct run *w, struct slot *s, double now)
{
	unsigned k = w->next_k++;
	size_t need = ((size_t)k + 1) * MAX_THREADS;
	if (need > w->nst) {
		size_t cap = need * 2;
		w->st = realloc(w->st, cap * sizeof(*w->st));
		ck_assert_ptr_nonnull(w->st);
		memset(w->st + w->nst, 0, (cap - w->nst) * sizeof(*w->st));
		w->nst = cap;
	}
	int threads = (int)tu_rand_range(&w->rng, 1, MAX_THREADS);
	bool sync = (k + w->sync_offset) % 2; /* sync and commit take turns */
	uint64_t seed = tu_rand(&w->rng);
	int p[2];
	ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
	pid_t pid = tu_fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		close(p[0]);
		producer_main(w, k, threads, sync, p[1], seed);
	}
	close(p[1]);
	fcntl(p[0], F_SETFL, fcntl(p[0], F_GETFL) | O_NONBLOCK);
	for (int t = 0; t < MAX_THREADS; t++) {
		struct stream *st = &w->st[k * MAX_THREADS + (unsigned)t];
		st->pid = pid;
		st->promised = -1;
		st->sync = sync;
	}
	if (sync)
		w->sync_producers++;
	else
		w->commit_producers++;
	*s = (struct slot){.pid = pid, .k = k, .fd = p[0]};
	/* one in six dies young: while it opens the spool (and recovers the
	 * rings of those killed before it) or logs its first events */
	double life = tu_rand(&w->rng) % 6 == 0
	                  ? ms_between(w, 0, 30)
	                  : ms_between(w, w->sz->life_lo_ms, w->sz->life_hi_ms);
	s->kill_at = w->sc->kill_producers ? now + life : 0;
}

/* Reads what the slot's producer reported so far; true at end of file. */
static bool read_reports(struct run *w, struct slot *s)
{
	for (;;) {
		unsigned char buf[4096];
		memcpy(buf, s->part, s->npart);
		ssize_t r = read(s->fd, buf + s->npart, sizeof(buf) - s->npart);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return false; /* EAGAIN: nothing more now */
		if (r == 0)
			return true;
		size_t have = s->npart + (size_t)r, i = 0;
		for (; i + 8 <= have; i += 8) {
			uint32_t rep[2];
			memcpy(rep, buf + i, sizeof(rep));
			ck_assert_msg(rep[0] < MAX_THREADS, "bad report from p%u", s->k);
			struct stream *st = &w->st[s->k * MAX_THREADS + rep[0]];
			ck_assert_msg((long)rep[1] == st->promised + 1,
			              "p%u t%u reported n%u after n%ld", s->k, rep[0], rep[1],
			              st->promised);
			st->promised = rep[1];
		}
		s->npart = have - i;
		memcpy(s->part, buf + i, s->npart);
	}
}

/* Waits for the slot's producer, reads its last reports, empties the slot.
 * `killed` says whether this test sent the SIGKILL. */
static void reap_producer(struct run *w, struct slot *s, bool killed)
{
	int rc = tu_wait_until(s->pid, tu_now() + 60);
	while (!read_reports(w, s))
		tu_sleep(0.001);
	ck_assert_msg(s->npart == 0, "p%u: a torn report", s->k);
	close(s->fd);
	bool expected = killed ? rc == 128 + SIGKILL : rc == 0;
	if (!expected) {
		w->crashes++;
		fprintf(stderr, "UNEXPECTED: producer p%u (pid %ld) ended with %d%s\n", s->k,
		        (long)s->pid, rc, rc > 128 ? " (128 + signal)" : "");
	}
	s->pid = 0;
}

static void write_agent_config(const struct run *w)
{
	FILE *f = fopen(w->d.config, "w");
	ck_assert_ptr_nonnull(f);
	fprintf(f,
	        "spool: %s\n"
	        "http:\n"
	        "  endpoint: %s\n"
	        "  timeouts:\n"
	        "    connect_seconds: 5\n"
	        "    request_seconds: 20\n"
	        /* one request at a time, of batch_size events: the checks below
	         * hold the server's arrival order to the spool's, and bound the
	         * duplicates by two batches per kill (agent-link-crash covers a
	         * window of 4) */
	        "batch_size: %d\n"
	        "max_batch_size: %d\n"
	        "max_in_flight: 1\n"
	        "flush_interval_seconds: 0.1\n"
	        "recover_interval_seconds: 0.5\n"
	        "meta_interval_seconds: 0.5\n"
	        "retry:\n"
	        "  initial_seconds: 0.02\n"
	        "  max_seconds: 0.2\n"
	        "log:\n"
	        "  level: info\n",
	        w->d.spool, w->rx.url, w->sc->batch_size, w->sc->batch_size);
	fclose(f);
}

static void start_agent(struct run *w, double now)
{
	w->agent = th_agent_start(&w->d, NULL);
	w->agent_starts++;
	/* one in five is killed while it starts: opening the spool, recovering
	 * rings, reading its first batch */
	double life = tu_rand(&w->rng) % 5 == 0
	                  ? ms_between(w, 0, 50)
	                  : ms_between(w, w->sz->agent_lo_ms, w->sz->agent_hi_ms);
	w->agent_kill_at = w->sc->kill_agent && !w->draining ? now + life : 0;
}

/* An agent that ended without our signal is a crash; it is started again. */
static void check_agent(struct run *w, double now)
{
	if (w->agent <= 0) {
		if (now >= w->agent_start_at)
			start_agent(w, now);
		return;
	}
	int st;
	pid_t r = waitpid(w->agent, &st, WNOHANG);
	if (r == w->agent) {
		w->crashes++;
		fprintf(stderr, "UNEXPECTED: spool-agent (pid %ld) ended on its own: %s %d\n",
		        (long)w->agent, WIFEXITED(st) ? "exit" : "signal",
		        WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
		w->agent = 0;
		w->agent_start_at = now;
		return;
	}
	if (w->agent_kill_at > 0 && now >= w->agent_kill_at) {
		int rc = th_agent_stop(w->agent, SIGKILL, 30);
		if (rc != -SIGKILL) {
			w->crashes++;
			fprintf(stderr,
			        "UNEXPECTED: spool-agent ended with %d before our SIGKILL\n", rc);
		}
		w->agent_kills++;
		w->agent = 0;
		w->agent_start_at = now + ms_between(w, 0, w->sz->restart_hi_ms);
	}
}

/* Reads reports from every running producer, waiting up to `wait` s. */
static void poll_reports(struct run *w, double wait)
{
	struct pollfd p[MAX_SLOTS];
	struct slot *map[MAX_SLOTS];
	nfds_t n = 0;
	for (int i = 0; i < MAX_SLOTS; i++)
		if (w->slot[i].pid > 0) {
			p[n] = (struct pollfd){.fd = w->slot[i].fd, .events = POLLIN};
			map[n++] = &w->slot[i];
		}
	if (poll(p, n, (int)(wait * 1000)) <= 0)
		return;
	for (nfds_t i = 0; i < n; i++)
		if (p[i].revents)
			read_reports(w, map[i]);
}

/* The rounds: producers log, and whatever the scenario kills gets killed
 * and replaced, until the phase is over. */
static void run_phase(struct run *w)
{
	double now = tu_now(), end = now + w->sz->phase_seconds;
	for (int i = 0; i < w->sz->producers; i++)
		spawn_producer(w, &w->slot[i], now);
	start_agent(w, now);
	while ((now = tu_now()) < end) {
		poll_reports(w, 0.005);
		now = tu_now();
		for (int i = 0; i < w->sz->producers; i++) {
			struct slot *s = &w->slot[i];
			if (s->kill_at > 0 && now >= s->kill_at) {
				kill(s->pid, SIGKILL);
				reap_producer(w, s, true);
				w->producer_kills++;
				/* now and then two die together */
				if (tu_rand(&w->rng) % 4 == 0) {
					struct slot *o = &w->slot[(i + 1) % w->sz->producers];
					if (o != s && o->pid > 0)
						o->kill_at = now;
				}
				spawn_producer(w, s, now);
			}
		}
		/* a producer that ended on its own is a crash */
		for (int i = 0; i < w->sz->producers; i++) {
			struct slot *s = &w->slot[i];
			siginfo_t si = {0};
			if (waitid(P_PID, (id_t)s->pid, &si, WEXITED | WNOHANG | WNOWAIT) == 0 &&
			    si.si_pid == s->pid) {
				reap_producer(w, s, false);
				spawn_producer(w, s, now);
			}
		}
		check_agent(w, now);
	}
}

/* The end: producers finish their call and exit, the agent (started if it
 * is down) drains the spool. */
static bool spool_drained(void *arg)
{
	return th_stats(arg).pending == 0;
}

/* For a producer that hangs: what each of its threads is waiting in. */
static void dump_threads(pid_t pid)
{
	char cmd[300];
	snprintf(cmd, sizeof(cmd),
	         "for t in /proc/%ld/task/*; do echo \"$t: $(cat $t/comm) wchan=$(cat $t/wchan)"
	         " syscall=$(cut -d' ' -f1 $t/syscall)\"; done >&2",
	         (long)pid);
	fflush(stderr);
	if (system(cmd) != 0)
		fprintf(stderr, "(could not list the threads of %ld)\n", (long)pid);
}

static void finish(struct run *w)
{
	close(w->stop_w);
	double end = tu_now() + 60;
	for (int i = 0; i < MAX_SLOTS; i++) {
		struct slot *s = &w->slot[i];
		while (s->pid > 0) {
			siginfo_t si = {0};
			if (waitid(P_PID, (id_t)s->pid, &si, WEXITED | WNOHANG | WNOWAIT) == 0 &&
			    si.si_pid == s->pid) {
				reap_producer(w, s, false);
				break;
			}
			if (tu_now() >= end)
				dump_threads(s->pid);
			ck_assert_msg(tu_now() < end,
			              "producer p%u (pid %ld) did not stop within 60 s", s->k,
			              (long)s->pid);
			poll_reports(w, 0.01);
		}
	}
	/* no more kills; an agent that ends on its own still counts and is
	 * started again.  Opening the spool for its figures also moves the
	 * rings of killed producers into the queue. */
	w->draining = true;
	w->agent_start_at = tu_now();
	w->agent_kill_at = 0;
	end = tu_now() + w->sz->drain_seconds;
	for (;;) {
		check_agent(w, tu_now());
		if (spool_drained(w->d.spool))
			break;
		ck_assert_msg(tu_now() < end,
		              "%s: the spool did not drain within %.0f s (pending %" PRIu64 ")",
		              w->sc->name, w->sz->drain_seconds, th_stats(w->d.spool).pending);
		tu_sleep(0.1);
	}
	check_agent(w, tu_now());
	ck_assert_int_gt(w->agent, 0);
	int rc = th_agent_stop(w->agent, SIGTERM, 60);
	if (rc != 0) {
		w->crashes++;
		fprintf(stderr, "UNEXPECTED: spool-agent exited with %d after SIGTERM\n", rc);
	}
	w->agent = 0;
}

/* ---- the check ---- */

struct verdict {
	long lines, promised, lost, unpromised, untried, again, disorder, seq_disorder, foreign,
	    wrong_pid;
	int notes;
};

static void note(struct verdict *v, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void note(struct verdict *v, const char *fmt, ...)
{
	if (v->notes++ >= MAX_NOTES)
		return;
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "CHECK: ");
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
}

/* One stored line against the promises. */
static void check_line(struct run *w, struct verdict *v, const char *line, long *last_seq)
{
	json_error_t je;
	json_t *j = json_loads(line, 0, &je);
	if (!j) {
		v->foreign++;
		note(v, "line %ld is not JSON: %s", v->lines, je.text);
		return;
	}
	const char *m = json_string_value(json_object_get(j, "message"));
	json_t *cc = json_object_get(json_object_get(j, "metadata"), "c_client");
	json_int_t pid = json_integer_value(json_object_get(cc, "pid"));
	json_int_t seq = json_integer_value(json_object_get(cc, "spool_seq"));
	unsigned k, t;
	long n;
	char tail;
	if (!m || sscanf(m, "p%u t%u n%ld%c", &k, &t, &n, &tail) != 3 || t >= MAX_THREADS ||
	    (size_t)k * MAX_THREADS + t >= w->nst || k >= w->next_k || n < 0) {
		v->foreign++;
		note(v, "line %ld: an event no producer logged: %.80s", v->lines, m ? m : "(none)");
		goto out;
	}
	struct stream *st = &w->st[k * MAX_THREADS + t];
	if (n > st->promised + 1) {
		v->untried++;
		note(v, "p%u t%u n%ld arrived, but only n%ld was promised: never logged", k, t, n,
		     st->promised);
		goto out;
	}
	if (st->seen[n]++) {
		v->again++;
		note(v, "p%u t%u n%ld stored %d times, now with spool_seq %lld and id %s", k, t, n,
		     st->seen[n], (long long)seq,
		     json_string_value(json_object_get(j, "client_event_id")));
	}
	if (n <= st->last_n) {
		v->disorder++;
		note(v, "p%u t%u: n%ld stored after n%ld", k, t, n, st->last_n);
	} else {
		st->last_n = n;
	}
	if (pid != st->pid) {
		v->wrong_pid++;
		note(v, "p%u t%u n%ld carries pid %lld, the producer was %ld", k, t, n,
		     (long long)pid, (long)st->pid);
	}
	if (seq <= *last_seq) {
		v->seq_disorder++;
		note(v, "spool_seq %lld stored after %ld", (long long)seq, *last_seq);
	}
	*last_seq = (long)seq;
out:
	json_decref(j);
}

static void check_out(struct run *w, struct verdict *v)
{
	memset(v, 0, sizeof(*v));
	for (size_t i = 0; i < w->nst; i++) {
		w->st[i].seen = calloc((size_t)(w->st[i].promised + 2), 1);
		w->st[i].last_n = -1;
	}
	FILE *f = fopen(w->d.out, "r");
	ck_assert_msg(f != NULL, "no out file %s", w->d.out);
	char *line = NULL;
	size_t cap = 0;
	long last_seq = -1;
	while (getline(&line, &cap, f) > 0) {
		v->lines++;
		check_line(w, v, line, &last_seq);
	}
	free(line);
	fclose(f);
	for (unsigned k = 0; k < w->next_k; k++)
		for (unsigned t = 0; t < MAX_THREADS; t++) {
			struct stream *st = &w->st[k * MAX_THREADS + t];
			v->promised += st->promised + 1;
			for (long n = 0; n <= st->promised; n++)
				if (!st->seen[n]) {
					v->lost++;
					note(v,
					     "LOST: p%u t%u n%ld (%s durability, promised up to "
					     "n%ld)",
					     k, t, n, st->sync ? "sync" : "commit", st->promised);
				}
			v->unpromised += st->seen[st->promised + 1] ? 1 : 0;
		}
	for (size_t i = 0; i < w->nst; i++) {
		free(w->st[i].seen);
		w->st[i].seen = NULL;
	}
}

static void print_tail(const char *path, int lines)
{
	char cmd[400];
	snprintf(cmd, sizeof(cmd), "tail -n %d '%s' >&2", lines, path);
	fprintf(stderr, "---- last lines of %s ----\n", path);
	fflush(stderr);
	if (system(cmd) != 0)
		fprintf(stderr, "(could not show it)\n");
}

/* ---- one scenario ---- */

static void run_scenario(const struct scenario *sc)
{
	struct run *w = calloc(1, sizeof(*w));
	ck_assert_ptr_nonnull(w);
	w->sc = sc;
	w->sz = run_size();
	char what[64];
	snprintf(what, sizeof(what), "scenario-crash %s", sc->name);
	w->rng = tu_seed(what);
	w->sync_offset = (unsigned)(tu_rand(&w->rng) % 2);
	char rx_seed[32];
	snprintf(rx_seed, sizeof(rx_seed), "%" PRIu64, tu_rand(&w->rng) % 1000000007u);
	double t0 = tu_now();

	unsetenv("MASTER_LOG_ENDPOINT");
	unsetenv("MASTER_LOG_ASYNC");
	unsetenv("MASTER_LOG_API_KEY");
	th_dir_make(&w->d, sc->name);
	th_rx_start(&w->rx, w->d.out, "--latency-ms", sc->latency_ms, "--drop-rate", sc->drop_rate,
	            "--seed", rx_seed, NULL);
	write_agent_config(w);
	int sp[2];
	ck_assert_int_eq(pipe2(sp, O_CLOEXEC), 0);
	w->stop_r = sp[0];
	w->stop_w = sp[1];

	run_phase(w);
	finish(w);
	close(w->stop_r);

	struct verdict v;
	check_out(w, &v);
	long dups = th_rx_stat(&w->rx, "duplicates");
	long dropped = th_rx_stat(&w->rx, "dropped");
	long requests = th_rx_stat(&w->rx, "requests");
	struct spool_stats ss = th_stats(w->d.spool);
	long rounds = w->producer_kills + w->agent_kills;

	printf("FIGURES scenario=%s rounds=%ld events=%ld lost=%ld duplicates=%ld crashes=%ld\n",
	       sc->name, rounds, v.promised, v.lost, dups, w->crashes);
	printf("%s (%s, %.0f s): %u producers (%ld sync, %ld commit durability, 1-2 threads, "
	       "mlog/mlog_ex) of which %ld SIGKILLed; spool-agent started %ld times and SIGKILLed "
	       "%ld times; receiver latency %s ms, drop rate %s: %ld requests, %ld answers "
	       "dropped after storing, %ld duplicates; %ld lines stored, %ld unpromised events "
	       "arrived too, %" PRIu64 " torn ring records skipped, %" PRIu64 " dead\n",
	       sc->name, w->sz->name, tu_now() - t0, w->next_k, w->sync_producers,
	       w->commit_producers, w->producer_kills, w->agent_starts, w->agent_kills,
	       sc->latency_ms, sc->drop_rate, requests, dropped, dups, v.lines, v.unpromised,
	       ss.torn_total, ss.dead);
	fflush(stdout);

	bool bad = v.lost || v.untried || v.again || v.disorder || v.seq_disorder || v.foreign ||
	           v.wrong_pid || w->crashes || ss.pending || ss.dead;
	if (bad)
		print_tail(w->d.log, 30);
	ck_assert_msg(v.lost == 0, "%s: %ld of %ld promised events lost", sc->name, v.lost,
	              v.promised);
	ck_assert_msg(v.again == 0, "%s: %ld events stored more than once", sc->name, v.again);
	ck_assert_msg(v.untried == 0 && v.foreign == 0,
	              "%s: %ld events stored that were never logged, %ld foreign lines", sc->name,
	              v.untried, v.foreign);
	ck_assert_msg(v.disorder == 0, "%s: %ld events out of their producer's order", sc->name,
	              v.disorder);
	ck_assert_msg(v.seq_disorder == 0, "%s: %ld events out of spool order", sc->name,
	              v.seq_disorder);
	ck_assert_msg(v.wrong_pid == 0, "%s: %ld events with another producer's pid", sc->name,
	              v.wrong_pid);
	ck_assert_msg(w->crashes == 0, "%s: %ld unexpected crashes (see UNEXPECTED above)",
	              sc->name, w->crashes);
	ck_assert_msg(ss.pending == 0 && ss.dead == 0,
	              "%s: spool left %" PRIu64 " pending, %" PRIu64 " dead", sc->name, ss.pending,
	              ss.dead);
	/* Every event entered the queue once and left it by acknowledgement:
	 * the spool's counters agree with the out file.  More records than
	 * stored lines means some event was committed twice (the receiver then
	 * drops the copy as a duplicate, which the next check counts too). */
	ck_assert_msg(ss.acked_total == ss.appended_total && ss.appended_total == (uint64_t)v.lines,
	              "%s: the spool took in %" PRIu64 " records and acknowledged %" PRIu64
	              ", but the receiver stored %ld distinct events: %s",
	              sc->name, ss.appended_total, ss.acked_total, v.lines,
	              ss.appended_total > (uint64_t)v.lines
	                  ? "some events entered the queue twice"
	                  : "records left the queue without being stored");
	/* A duplicate needs a request whose events the receiver stored but
	 * whose deletes never became durable.  Per kill that is at most two
	 * batches with one request in flight: the one out, and the one
	 * answered whose deletes the settler was still committing (the drain
	 * reads the next batch while that commit runs; docs/agent.md).  Each
	 * dropped answer adds one more.  Each carries at most batch_size
	 * events. */
	long dup_bound = (long)sc->batch_size * (2 * w->agent_kills + dropped);
	ck_assert_msg(dups <= dup_bound,
	              "%s: %ld duplicates, more than %d (batch) x (2 x %ld kills + %ld dropped "
	              "answers)",
	              sc->name, dups, sc->batch_size, w->agent_kills, dropped);
	ck_assert_msg(v.promised > 0 && rounds > 0, "%s: nothing was tried", sc->name);

	th_rx_stop(&w->rx);
	th_dir_remove(&w->d);
	free(w->st);
	free(w);
}

static const struct scenario PRODUCER_KILL = {"producer-kill", true, false, "2", "0", 50};
static const struct scenario AGENT_KILL = {"agent-kill", false, true, "15", "0.03", 100};
static const struct scenario BOTH_KILL = {"both-kill", true, true, "15", "0.03", 100};

START_TEST(producer_kill)
{
	run_scenario(&PRODUCER_KILL);
}
END_TEST

START_TEST(agent_kill)
{
	run_scenario(&AGENT_KILL);
}
END_TEST

START_TEST(both_kill)
{
	run_scenario(&BOTH_KILL);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("scenario-crash");
	TCase *tc = tcase_create("crash");
	tcase_set_timeout(tc, 850);
	tcase_add_test(tc, producer_kill);
	tcase_add_test(tc, agent_kill);
	tcase_add_test(tc, both_kill);
	suite_add_tcase(s, tc);
	return tc_run_forked(s);
}
