/* fulldisk.c — reliability scenario: the spool's file system runs full.
 *
 * The spool lives on a small tmpfs mounted in a private mount namespace of
 * the Check-forked test process; the receiver's out file, the agent's
 * config and log and the producers' result files stay outside it, in /tmp.
 * mlog-receiver, spool-agent and the producer processes are children of
 * the test process, so they see the same mounts.  Each round (fill cycle):
 *
 *   a. outage: the receiver answers 503 (--outage-file), part of the free
 *      space is taken by a filler file, and producer processes log through
 *      the public client API until the disk refuses them;
 *   b. the filler takes what is left, and fresh producers log again: every
 *      refusal must be a clear result (ok false, an error naming the full
 *      disk or the full spool), never a crash or a hang; `spoolctl status`
 *      must still read the spool; the agent is restarted on the full disk
 *      (in the first round it starts there for the first time);
 *   c. the receiver comes back while the disk is still full: the agent must
 *      deliver at least every event committed in LMDB (records still in
 *      dead producers' rings may wait for space), which needs deletes on a
 *      full disk, and must not resend without deleting;
 *   d. the filler goes, the backlog drains, and producers succeed again.
 *
 * At the end every event whose call returned ok must be stored exactly once
 * by the receiver (under the client_event_id the call returned), no refused
 * event may be stored, `spoolctl verify` must pass, the spool must be empty
 * and no process may have died from a signal or hung.
 *
 * Variants: `sync` and `commit` (durability, default full policy), `drop`
 * (drop_when_full) and `block` (block, then fail after queue_timeout), the
 * last two with sync and commit producers on the same spool.  Each prints
 * one FIGURES line (scenario=fulldisk-<variant> rounds events lost
 * duplicates crashes refused) and a line for people.  SCENARIO_SIZE=short
 * (default) or long; SPOOL_TEST_SEED replays a run; FULLDISK_VARIANT=<name>
 * runs one variant. */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include <spool/mlog.h>

#include "check_main.h"
#include "harness.h"
#include "testutil.h"

/* Message numbers: producer * NUM_STRIDE + i, logged as "msg <number> <pad>". */
#define NUM_STRIDE 1000000L
#define MAX_PROD   4
/* Deadlines that only catch hangs; nothing is asserted on speed. */
#define PROC_DEADLINE  120.0
#define DRAIN_DEADLINE 120.0
#define STALL_SECONDS  5.0

struct variant {
	const char *name;
	const char *tmpfs;         /* mount option */
	const char *dur[MAX_PROD]; /* durability per producer (NULL ends) */
	enum mlog_switch drop;     /* MLOG_UNSET: the default policy (drop) */
	double queue_timeout;      /* 0: the default */
};

static const struct variant variants[] = {
    {"sync", "size=8m", {"sync", "sync", "sync"}, MLOG_UNSET, 0},
    {"commit", "size=20m", {"commit", "commit"}, MLOG_UNSET, 0},
    {"drop", "size=14m", {"commit", "sync", "sync"}, MLOG_ON, 0},
    {"block", "size=14m", {"commit", "sync", "sync"}, MLOG_OFF, 0.2},
};
#define NVARIANTS (sizeof(variants) / sizeof(variants[0]))

enum phase { PH_FILL, PH_FULL, PH_AFTER, NPHASES };
static const char *const phase_name[NPHASES] = {"fill", "full", "after"};

/* What one producer process is asked to do. */
struct prod {
	long id; /* messages id * NUM_STRIDE + i */
	const char *durability;
	long max_events;
	int stop_after; /* consecutive refusals that end it; 0: never */
	enum phase phase;
	uint64_t seed;
	char res[300]; /* its result file, outside the tmpfs */
	pid_t pid;
};

/* One logging call, as the producer reported it. */
struct outcome {
	long num;
	bool ok;
	unsigned char phase;
	char id[32]; /* the result's event_id: the client_event_id */
};

/* One event the receiver stored. */
struct stored {
	long num;
	char id[32];
};

struct scen {
	const struct variant *v;
	struct th_dir d; /* root in /tmp; spool inside the tmpfs */
	char mnt[264], filler[280], outage[300];
	struct th_rx rx;
	pid_t agent;
	bool agent_gone;
	uint64_t rng;
	long next_id;
	int rounds;
	struct outcome *oc;
	size_t noc, capoc;
	size_t promised, refused;
	size_t refused_by[NPHASES], promised_by[NPHASES];
	unsigned crashes, hangs, unclear, fails;
	bool aborted;
	double drained_full; /* events the agent delivered with the disk full */
	long resent_full;    /* receiver duplicates seen while full */
	uint64_t filler_max;
	char first_fail[1536];
};

static uint64_t g_seed;
static bool g_long;

static void note_fail(struct scen *sc, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void note_fail(struct scen *sc, const char *fmt, ...)
{
	char line[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	printf("fulldisk-%s: FAIL: %s\n", sc->v->name, line);
	fflush(stdout);
	if (sc->fails++ < 4) {
		size_t l = strlen(sc->first_fail);
		snprintf(sc->first_fail + l, sizeof(sc->first_fail) - l, "%s%s", l ? "; " : "",
		         line);
	}
}

/* ------------------------------------------------------------------ */
/* The producer process (no ck_assert here: it reports through its file) */

static void producer_main(const struct scen *sc, const struct prod *p)
{
	FILE *f = fopen(p->res, "w");
	if (!f)
		_exit(3);
	setvbuf(f, NULL, _IOLBF, 0);
	/* larger than the tmpfs: the disk, not the policy, is the limit */
	setenv("MASTER_LOG_MAX_SPOOL_BYTES", "268435456", 1);
	struct mlog_config cfg = {
	    .spool_dir = sc->d.spool,
	    .durability = p->durability,
	    .drop_when_full = sc->v->drop,
	    .queue_timeout_seconds = sc->v->queue_timeout,
	    .backpressure = MLOG_OFF,
	    .spawn_agent = MLOG_OFF, /* spool-agent drains */
	    .batch_size = 50,
	};
	char err[256];
	if (mlog_configure_ex(&cfg, err, sizeof(err)) != 0) {
		fprintf(f, "config %s\n", err);
		fclose(f);
		_exit(4);
	}
	char pad[2048];
	uint64_t rng = p->seed;
	for (size_t i = 0; i < sizeof(pad); i++)
		pad[i] = (char)('a' + tu_rand(&rng) % 26);
	int consecutive = 0;
	for (long i = 0; i < p->max_events; i++) {
		long num = p->id * NUM_STRIDE + i;
		int plen = (int)tu_rand_range(&rng, 100, 1500);
		struct mlog_result r = mlog_ex(&(struct mlog_opts){.severity = MLOG_INFO},
		                               "msg %ld %.*s", num, plen, pad);
		/* ok num phase id|error */
		fprintf(f, "%d %ld %d %s|%s\n", r.ok ? 1 : 0, num, (int)p->phase,
		        r.event_id[0] ? r.event_id : "-", r.error);
		consecutive = r.ok ? 0 : consecutive + 1;
		if (p->stop_after && consecutive >= p->stop_after)
			break;
		if (!r.ok)
			tu_sleep(0.005);
	}
	mlog_shutdown();
	fclose(f);
	_exit(0);
}

/* ------------------------------------------------------------------ */
/* The test side */

static bool refusal_is_clear(const char *error)
{
	return strstr(error, "No space left on device") || strstr(error, "spool full");
}

static void add_outcome(struct scen *sc, const struct outcome *o)
{
	if (sc->noc == sc->capoc) {
		sc->capoc = sc->capoc ? sc->capoc * 2 : 4096;
		sc->oc = realloc(sc->oc, sc->capoc * sizeof(*sc->oc));
		ck_assert_ptr_nonnull(sc->oc);
	}
	sc->oc[sc->noc++] = *o;
	if (o->ok) {
		sc->promised++;
		sc->promised_by[o->phase]++;
	} else {
		sc->refused++;
		sc->refused_by[o->phase]++;
	}
}

/* Reads a producer's result file; returns the refusals in it. */
static size_t read_results(struct scen *sc, const struct prod *p)
{
	FILE *f = fopen(p->res, "r");
	if (!f) {
		note_fail(sc, "producer %ld left no result file", p->id);
		return 0;
	}
	char *line = NULL;
	size_t cap = 0, refused = 0;
	while (getline(&line, &cap, f) > 0) {
		struct outcome o = {0};
		int ok, ph, used = 0;
		if (sscanf(line, "%d %ld %d %31[^|]|%n", &ok, &o.num, &ph, o.id, &used) < 4 ||
		    used == 0) {
			note_fail(sc, "producer %ld: unreadable result line: %.200s", p->id, line);
			continue;
		}
		char *error = line + used;
		error[strcspn(error, "\n")] = '\0';
		o.ok = ok == 1;
		o.phase = (unsigned char)ph;
		if (!o.ok) {
			refused++;
			if (!refusal_is_clear(error)) {
				sc->unclear++;
				note_fail(sc, "refusal without a clear reason (msg %ld): '%s'",
				          o.num, error);
			}
		} else if (strlen(o.id) != 26) {
			note_fail(sc, "msg %ld: ok but event_id '%s' is no client_event_id", o.num,
			          o.id);
		}
		add_outcome(sc, &o);
	}
	free(line);
	fclose(f);
	return refused;
}

static void start_producers(struct scen *sc, struct prod *ps, size_t n, enum phase ph,
                            long max_events, int stop_after)
{
	for (size_t k = 0; k < n; k++) {
		struct prod *p = &ps[k];
		memset(p, 0, sizeof(*p));
		p->id = ++sc->next_id;
		p->durability = sc->v->dur[k];
		p->max_events = max_events;
		p->stop_after = stop_after;
		p->phase = ph;
		p->seed = tu_rand(&sc->rng);
		snprintf(p->res, sizeof(p->res), "%s/prod-%ld.res", sc->d.root, p->id);
		p->pid = tu_fork();
		ck_assert_int_ge(p->pid, 0);
		if (p->pid == 0)
			producer_main(sc, p);
	}
}

/* Waits for the producers; a signal is a crash, the deadline a hang. */
static size_t finish_producers(struct scen *sc, struct prod *ps, size_t n)
{
	double deadline = tu_now() + PROC_DEADLINE;
	size_t refused = 0;
	for (size_t k = 0; k < n; k++) {
		int rc = tu_wait_until(ps[k].pid, deadline);
		if (rc == -2) {
			sc->hangs++;
			note_fail(sc, "producer %ld (%s) hung: killed after %.0f s", ps[k].id,
			          ps[k].durability, PROC_DEADLINE);
		} else if (rc >= 128) {
			sc->crashes++;
			note_fail(sc, "producer %ld (%s) died from signal %d", ps[k].id,
			          ps[k].durability, rc - 128);
		} else if (rc != 0) {
			note_fail(sc, "producer %ld (%s) exited %d", ps[k].id, ps[k].durability,
			          rc);
		}
		refused += read_results(sc, &ps[k]);
	}
	return refused;
}

static size_t nprod(const struct variant *v)
{
	size_t n = 0;
	while (n < MAX_PROD && v->dur[n])
		n++;
	return n;
}

static uint64_t free_bytes(const char *path)
{
	struct statvfs fs;
	ck_assert_int_eq(statvfs(path, &fs), 0);
	return (uint64_t)fs.f_bfree * fs.f_frsize;
}

/* Appends to the filler until `limit` bytes were added or the file system
 * refuses even a page; returns the bytes added. */
static uint64_t fill(const char *path, uint64_t limit)
{
	int fd = open(path, O_CREAT | O_WRONLY | O_APPEND | O_CLOEXEC, 0600);
	ck_assert_int_ge(fd, 0);
	static char blk[65536];
	memset(blk, 0x5a, sizeof(blk));
	uint64_t added = 0;
	size_t chunk = sizeof(blk);
	while (added < limit && chunk >= 4096) {
		size_t want = limit - added < chunk ? (size_t)(limit - added) : chunk;
		ssize_t w = write(fd, blk, want);
		if (w > 0) {
			added += (uint64_t)w;
			continue;
		}
		ck_assert_msg(w < 0 && errno == ENOSPC, "filler write: %s", strerror(errno));
		chunk /= 2;
	}
	close(fd);
	return added;
}

/* Starts spool-agent and waits until it says it started (or exits). */
static void agent_start(struct scen *sc, const char *when)
{
	sc->agent = th_agent_start(&sc->d, NULL);
	sc->agent_gone = false;
	char want[64];
	snprintf(want, sizeof(want), "spool-agent[%ld] info: started:", (long)sc->agent);
	double deadline = tu_now() + 30;
	while (!th_file_has(sc->d.log, want) && tu_now() < deadline) {
		int st;
		if (waitpid(sc->agent, &st, WNOHANG) == sc->agent) {
			sc->agent_gone = true;
			if (WIFSIGNALED(st))
				sc->crashes++;
			note_fail(sc, "spool-agent started %s did not start: %s %d (log %s)", when,
			          WIFSIGNALED(st) ? "signal" : "exit status",
			          WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st), sc->d.log);
			return;
		}
		tu_sleep(0.02);
	}
	if (!th_file_has(sc->d.log, want))
		note_fail(sc, "spool-agent started %s: no start line within 30 s", when);
}

/* SIGTERM: the agent must finish and exit 0. */
static void agent_stop(struct scen *sc, const char *when)
{
	if (sc->agent_gone)
		return;
	int st = th_agent_stop(sc->agent, SIGTERM, 60);
	sc->agent_gone = true;
	if (st < 0) {
		sc->crashes++;
		note_fail(sc, "spool-agent died from signal %d at SIGTERM %s", -st, when);
	} else if (st != 0) {
		note_fail(sc, "spool-agent exited %d at SIGTERM %s (log %s)", st, when, sc->d.log);
	}
}

/* Lines of the agent's log that contain text. */
static long log_count(const char *path, const char *text)
{
	FILE *f = fopen(path, "r");
	if (!f)
		return 0;
	char line[4096];
	long n = 0;
	while (fgets(line, sizeof(line), f))
		n += strstr(line, text) != NULL;
	fclose(f);
	return n;
}

static bool agent_alive(struct scen *sc)
{
	if (sc->agent_gone || !sc->agent)
		return false;
	int st;
	pid_t r = waitpid(sc->agent, &st, WNOHANG);
	if (r == 0)
		return true;
	sc->agent_gone = true;
	if (r == sc->agent && WIFSIGNALED(st)) {
		sc->crashes++;
		note_fail(sc, "spool-agent died from signal %d (log %s)", WTERMSIG(st), sc->d.log);
	} else {
		note_fail(sc, "spool-agent exited (status %d) while it should run (log %s)",
		          r == sc->agent && WIFEXITED(st) ? WEXITSTATUS(st) : -1, sc->d.log);
	}
	return false;
}

/* Waits until the receiver stored `want` events.  With stall > 0, also
 * returns once nothing new was stored for that long.  Returns the count. */
static long wait_stored(struct scen *sc, long want, double stall, double deadline_s)
{
	double deadline = tu_now() + deadline_s, changed = tu_now();
	long got = th_rx_stat(&sc->rx, "accepted"), last = got;
	while (got < want && tu_now() < deadline) {
		if (!agent_alive(sc))
			break;
		tu_sleep(0.1);
		got = th_rx_stat(&sc->rx, "accepted");
		if (got != last) {
			last = got;
			changed = tu_now();
		} else if (stall > 0 && tu_now() - changed >= stall) {
			break;
		}
	}
	return got;
}

static void touch(const char *path)
{
	int fd = open(path, O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
	ck_assert_int_ge(fd, 0);
	close(fd);
}

/* Runs spoolctl; returns its exit status (128 + signal when killed). */
static int spoolctl(struct scen *sc, const char *args, char *out, size_t len)
{
	char cmd[1024];
	snprintf(cmd, sizeof(cmd), "exec %s --spool %s %s 2>&1", th_prog("SPOOLCTL"), sc->d.spool,
	         args);
	int st = tu_capture(cmd, out, len);
	ck_assert_int_ne(st, -1);
	if (WIFSIGNALED(st)) {
		sc->crashes++;
		note_fail(sc, "spoolctl %s died from signal %d", args, WTERMSIG(st));
		return 128 + WTERMSIG(st);
	}
	return WEXITSTATUS(st);
}

/* One fill cycle. */
static void round_run(struct scen *sc, int round)
{
	const struct variant *v = sc->v;
	size_t np = nprod(v);
	struct prod ps[MAX_PROD];
	char out[4096];

	/* a. outage; a filler takes 35-55 % of the free space, so that removing
	 * it later frees a good part of the disk whatever the spool grew to */
	touch(sc->outage);
	uint64_t avail = free_bytes(sc->mnt);
	uint64_t pre = avail * tu_rand_range(&sc->rng, 35, 55) / 100;
	uint64_t filler = fill(sc->filler, pre);
	start_producers(sc, ps, np, PH_FILL, 400000, 4);
	size_t refused_fill = finish_producers(sc, ps, np);

	/* b. the filler takes the rest; producers must be refused clearly */
	filler += fill(sc->filler, UINT64_MAX);
	if (filler > sc->filler_max)
		sc->filler_max = filler;
	uint64_t left = free_bytes(sc->mnt);
	start_producers(sc, ps, np, PH_FULL, 40, 4);
	size_t refused_full = finish_producers(sc, ps, np);
	if (refused_fill + refused_full == 0)
		note_fail(sc, "round %d: the disk never refused an event", round);
	/* the spool stays readable on a full disk; what it holds committed
	 * (not in producers' rings) is what the agent must deliver while the
	 * disk stays full */
	long committed = -1;
	int rc = spoolctl(sc, "status --json", out, sizeof(out));
	json_t *j = rc == 0 ? json_loads(out, 0, NULL) : NULL;
	if (j)
		committed = (long)json_integer_value(json_object_get(j, "pending"));
	json_decref(j);
	if (committed < 0)
		note_fail(sc, "round %d: spoolctl status on the full disk exited %d: %.300s", round,
		          rc, out);
	/* From the second round on, the agent has lived through the fill (its
	 * meta writes and ring recoveries failing with ENOSPC) and is restarted
	 * now, as after a reboot or an upgrade.  In the first round it was not
	 * running yet: it starts for the first time on the full disk. */
	tu_sleep(0.5);
	if (sc->agent && !agent_alive(sc)) {
		sc->aborted = true;
		return;
	}
	if (sc->agent)
		agent_stop(sc, "on a full disk");
	agent_start(sc, "on a full disk");
	tu_sleep(0.5);
	if (!agent_alive(sc)) {
		sc->aborted = true;
		return;
	}

	/* c. the receiver is back while the disk stays full: the agent must
	 * deliver at least every committed event, which takes deletes on a full
	 * disk; it gets until nothing new arrives for STALL_SECONDS */
	long rx_before = th_rx_stat(&sc->rx, "accepted");
	long dup_before = th_rx_stat(&sc->rx, "duplicates");
	long rec_fail_before = log_count(sc->d.log, "spool_recover: No space left");
	unlink(sc->outage);
	long got = wait_stored(sc, (long)sc->promised, STALL_SECONDS, DRAIN_DEADLINE);
	long dup_mid = th_rx_stat(&sc->rx, "duplicates");
	long got_mid = got;
	if (got < (long)sc->promised) {
		tu_sleep(1.0);
		got = th_rx_stat(&sc->rx, "accepted");
	}
	long dup_after = th_rx_stat(&sc->rx, "duplicates");
	long rec_fail = log_count(sc->d.log, "spool_recover: No space left") - rec_fail_before;
	sc->drained_full += (double)(got - rx_before);
	sc->resent_full += dup_after - dup_before;
	printf("fulldisk-%s round %d: refused %zu while filling, %zu on the full disk (%llu bytes "
	       "left); disk full: agent delivered %ld of %zu pending (%ld committed, the rest in "
	       "rings), receiver saw %ld resent, %ld ring recoveries failed\n",
	       v->name, round, refused_fill, refused_full, (unsigned long long)left,
	       got - rx_before, sc->promised - (size_t)rx_before, committed, dup_after - dup_before,
	       rec_fail);
	fflush(stdout);
	if (!agent_alive(sc)) {
		sc->aborted = true;
		return;
	}
	/* Records still in the rings of dead producers need free pages in
	 * data.mdb to be moved; the committed ones need only deletes */
	if (got - rx_before < committed) {
		if (dup_after > dup_mid && got == got_mid)
			note_fail(sc,
			          "round %d: with the disk full the agent resends without "
			          "deleting (%ld duplicates in 1 s, nothing new; log %s)",
			          round, dup_after - dup_mid, sc->d.log);
		note_fail(sc,
		          "round %d: with the disk full the agent stalled: it delivered %ld of "
		          "the %ld events committed in the spool (log %s)",
		          round, got - rx_before, committed, sc->d.log);
	}

	/* d. space comes back: the backlog drains, then producers succeed */
	ck_assert_int_eq(unlink(sc->filler), 0);
	got = wait_stored(sc, (long)sc->promised, 0, DRAIN_DEADLINE);
	if (got < (long)sc->promised) {
		note_fail(sc,
		          "round %d: %ld of %zu promised events stored %.0f s after space came "
		          "back (log %s)",
		          round, got, sc->promised, DRAIN_DEADLINE, sc->d.log);
		sc->aborted = true;
		return;
	}
	long each = g_long ? 400 : 150;
	start_producers(sc, ps, np, PH_AFTER, each, 0);
	size_t refused_after = finish_producers(sc, ps, np);
	if (refused_after)
		note_fail(sc, "round %d: %zu events refused after space came back", round,
		          refused_after);
	got = wait_stored(sc, (long)sc->promised, 0, DRAIN_DEADLINE);
	if (got < (long)sc->promised) {
		note_fail(sc, "round %d: %ld of %zu promised events stored after the last phase",
		          round, got, sc->promised);
		sc->aborted = true;
	}
	sc->rounds = round;
}

static int cmp_outcome(const void *a, const void *b)
{
	long x = ((const struct outcome *)a)->num, y = ((const struct outcome *)b)->num;
	return (x > y) - (x < y);
}

static int cmp_stored(const void *a, const void *b)
{
	long x = ((const struct stored *)a)->num, y = ((const struct stored *)b)->num;
	return (x > y) - (x < y);
}

/* The receiver's out file: message number and client_event_id per line. */
static size_t read_stored(const char *out, struct stored **res)
{
	*res = NULL;
	FILE *f = fopen(out, "r");
	if (!f)
		return 0;
	size_t n = 0, cap = 0, ll = 0;
	char *line = NULL;
	while (getline(&line, &ll, f) > 0) {
		json_error_t je;
		json_t *j = json_loads(line, 0, &je);
		ck_assert_msg(j != NULL, "stored line is not JSON: %s", je.text);
		if (n == cap) {
			cap = cap ? cap * 2 : 4096;
			*res = realloc(*res, cap * sizeof(**res));
			ck_assert_ptr_nonnull(*res);
		}
		const char *m = json_string_value(json_object_get(j, "message"));
		const char *id = json_string_value(json_object_get(j, "client_event_id"));
		(*res)[n].num = m && strncmp(m, "msg ", 4) == 0 ? atol(m + 4) : -1;
		snprintf((*res)[n].id, sizeof((*res)[n].id), "%s", id ? id : "");
		json_decref(j);
		n++;
	}
	free(line);
	fclose(f);
	return n;
}

/* Compares the promises with the store. */
static void check_store(struct scen *sc, size_t *lost, size_t *dups)
{
	struct stored *st = NULL;
	size_t ns = read_stored(sc->d.out, &st);
	qsort(sc->oc, sc->noc, sizeof(*sc->oc), cmp_outcome);
	if (ns)
		qsort(st, ns, sizeof(*st), cmp_stored);
	size_t ghosts = 0, strangers = 0, wrong_id = 0;
	*lost = *dups = 0;
	size_t j = 0;
	for (size_t i = 0; i < sc->noc; i++) {
		const struct outcome *o = &sc->oc[i];
		while (j < ns && st[j].num < o->num) {
			if (strangers++ == 0)
				note_fail(sc,
				          "the receiver stored msg %ld, which no producer logged",
				          st[j].num);
			j++;
		}
		size_t copies = 0;
		for (; j < ns && st[j].num == o->num; j++) {
			if (copies++ == 0 && o->ok && strcmp(st[j].id, o->id) != 0 &&
			    wrong_id++ == 0)
				note_fail(sc, "msg %ld stored as %s, the call returned %s", o->num,
				          st[j].id, o->id);
		}
		if (o->ok && copies == 0 && (*lost)++ == 0)
			note_fail(sc, "msg %ld (%s phase) returned ok and never arrived", o->num,
			          phase_name[o->phase]);
		if (copies > 1 && (*dups)++ == 0)
			note_fail(sc, "msg %ld stored %zu times", o->num, copies);
		if (!o->ok && copies > 0 && ghosts++ == 0)
			note_fail(sc, "msg %ld was refused (%s phase) but the receiver stored it",
			          o->num, phase_name[o->phase]);
	}
	for (; j < ns; j++)
		if (strangers++ == 0)
			note_fail(sc, "the receiver stored msg %ld, which no producer logged",
			          st[j].num);
	if (*lost > 1)
		note_fail(sc, "%zu promised events lost in all", *lost);
	if (*dups > 1)
		note_fail(sc, "%zu events stored more than once in all", *dups);
	if (ghosts > 1 || strangers > 1 || wrong_id > 1)
		note_fail(sc, "%zu refused events stored, %zu unknown, %zu under another id",
		          ghosts, strangers, wrong_id);
	free(st);
}

static void run_variant(const struct variant *v, int index)
{
	struct scen *sc = calloc(1, sizeof(*sc));
	ck_assert_ptr_nonnull(sc);
	sc->v = v;
	sc->rng = g_seed ^ ((uint64_t)(index + 1) * 0x9e3779b97f4a7c15u);
	double t0 = tu_now();

	/* everything but the spool lives outside the tmpfs */
	snprintf(sc->d.root, sizeof(sc->d.root), "/tmp/scenario-fulldisk-%s-XXXXXX", v->name);
	ck_assert_ptr_nonnull(mkdtemp(sc->d.root));
	snprintf(sc->mnt, sizeof(sc->mnt), "%s/mnt", sc->d.root);
	snprintf(sc->d.spool, sizeof(sc->d.spool), "%s/spool", sc->mnt);
	snprintf(sc->filler, sizeof(sc->filler), "%s/filler", sc->mnt);
	snprintf(sc->d.out, sizeof(sc->d.out), "%s/out.jsonl", sc->d.root);
	snprintf(sc->d.config, sizeof(sc->d.config), "%s/agent.yaml", sc->d.root);
	snprintf(sc->d.log, sizeof(sc->d.log), "%s/agent.log", sc->d.root);
	snprintf(sc->outage, sizeof(sc->outage), "%s/outage", sc->d.root);
	ck_assert_int_eq(mkdir(sc->mnt, 0700), 0);
	ck_assert_msg(tu_private_tmpfs(sc->mnt, v->tmpfs) == 0, "cannot mount the tmpfs");

	touch(sc->outage);
	th_rx_start(&sc->rx, sc->d.out, "--outage-file", sc->outage, NULL);
	th_config(&sc->d, sc->rx.url,
	          "batch_size: 100\nmeta_interval_seconds: 0.1\nrecover_interval_seconds: 0.3\n");

	int rounds = g_long ? 6 : 2;
	for (int r = 1; r <= rounds && !sc->aborted; r++)
		round_run(sc, r);

	/* the end: with space and the server back and an agent running (a new
	 * one if a round failed), everything promised must arrive; the agent
	 * stops cleanly */
	unlink(sc->filler);
	unlink(sc->outage);
	if (!agent_alive(sc))
		agent_start(sc, "for the final drain");
	wait_stored(sc, (long)sc->promised, 0, DRAIN_DEADLINE);
	if (agent_alive(sc))
		agent_stop(sc, "at the end");
	long rx_dups = th_rx_stat(&sc->rx, "duplicates");
	th_rx_stop(&sc->rx);
	size_t lost = 0, dups = 0;
	check_store(sc, &lost, &dups);

	char out[4096];
	int vrc = spoolctl(sc, "verify", out, sizeof(out));
	if (vrc != 0)
		note_fail(sc, "spoolctl verify exited %d: %.300s", vrc, out);
	int src = spoolctl(sc, "status --json", out, sizeof(out));
	long pending = -1, dropped = -1, file_bytes = -1;
	json_t *j = src == 0 ? json_loads(out, 0, NULL) : NULL;
	if (j) {
		pending = (long)json_integer_value(json_object_get(j, "pending"));
		dropped = (long)json_integer_value(json_object_get(j, "dropped_total"));
		file_bytes = (long)json_integer_value(json_object_get(j, "file_bytes"));
		json_decref(j);
	} else {
		note_fail(sc, "spoolctl status --json exited %d: %.300s", src, out);
	}
	if (pending != 0)
		note_fail(sc, "%ld events still pending at the end", pending);
	/* every refusal counts as a drop (issue 17), and nothing else does */
	if (dropped != (long)sc->refused)
		note_fail(sc, "dropped_total %ld, but %zu calls were refused", dropped,
		          sc->refused);

	printf("FIGURES scenario=fulldisk-%s rounds=%d events=%zu lost=%zu duplicates=%zu "
	       "crashes=%u refused=%zu\n",
	       v->name, sc->rounds, sc->promised, lost, dups, sc->crashes, sc->refused);
	printf("fulldisk-%s: %d fill cycle(s) on a %s tmpfs in %.1f s: %zu events promised "
	       "(fill %zu, full %zu, after %zu), %zu refused (fill %zu, full %zu, after %zu; "
	       "%u without a clear reason), dropped_total %ld; with the disk full the agent "
	       "delivered %.0f events and resent %ld; receiver duplicates %ld; hangs %u; "
	       "data.mdb %ld bytes; largest filler %llu bytes; verify %s\n",
	       v->name, sc->rounds, v->tmpfs + 5, tu_now() - t0, sc->promised,
	       sc->promised_by[PH_FILL], sc->promised_by[PH_FULL], sc->promised_by[PH_AFTER],
	       sc->refused, sc->refused_by[PH_FILL], sc->refused_by[PH_FULL],
	       sc->refused_by[PH_AFTER], sc->unclear, dropped, sc->drained_full, sc->resent_full,
	       rx_dups, sc->hangs, file_bytes, (unsigned long long)sc->filler_max,
	       vrc == 0 ? "clean" : "FAILED");
	fflush(stdout);

	umount2(sc->mnt, MNT_DETACH);
	bool ok = sc->fails == 0;
	if (ok && !getenv("SCENARIO_KEEP"))
		th_dir_remove(&sc->d);
	ck_assert_msg(ok, "fulldisk-%s: %u failure(s): %s (files in %s)", v->name, sc->fails,
	              sc->first_fail, sc->d.root);
	free(sc->oc);
	free(sc);
}

START_TEST(test_fulldisk)
{
	const char *only = getenv("FULLDISK_VARIANT");
	if (only && *only && strcmp(only, variants[_i].name) != 0)
		return;
	run_variant(&variants[_i], _i);
}
END_TEST

/* Whether this process may make a private mount namespace and mount a tmpfs
 * (not in a chroot or an unprivileged container): tried in a child. */
static bool can_mount(void)
{
	char dir[] = "/tmp/scenario-fulldisk-probe-XXXXXX";
	if (!mkdtemp(dir))
		return false;
	pid_t pid = fork();
	if (pid == 0) {
		bool ok = unshare(CLONE_NEWNS) == 0 &&
		          mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) == 0 &&
		          mount("tmpfs", dir, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m") == 0;
		if (!ok)
			printf("SKIP: cannot mount a private tmpfs: %s\n", strerror(errno));
		fflush(stdout);
		_exit(ok ? 0 : 1);
	}
	int st = 0;
	bool ok = pid > 0 && waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0;
	rmdir(dir);
	return ok;
}

int main(void)
{
	const char *size = getenv("SCENARIO_SIZE");
	g_long = size && strcmp(size, "long") == 0;
	if (size && *size && !g_long && strcmp(size, "short") != 0) {
		fprintf(stderr, "SCENARIO_SIZE: expected short or long, got '%s'\n", size);
		return 2;
	}
	if (!can_mount())
		return 77;
	if (!tu_ck_forking()) {
		printf("SKIP: needs CK_FORK (each variant unshares its own mount namespace)\n");
		return 77;
	}
	printf("fulldisk: size %s\n", g_long ? "long" : "short");
	g_seed = tu_seed("fulldisk");
	Suite *s = suite_create("scenario-fulldisk");
	TCase *tc = tcase_create("fulldisk");
	tcase_set_timeout(tc, 900);
	tcase_add_loop_test(tc, test_fulldisk, 0, (int)NVARIANTS);
	suite_add_tcase(s, tc);
	return tc_run_forked(s);
}
