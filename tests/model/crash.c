/* crash.c — the hostile steps of the model-based test: a child process that
 * uses the spool and is killed with SIGKILL at a random point, and a full
 * disk (a filler file on the test's private tmpfs). */
#include "ops.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "testutil.h"

/* ---- the killed child ---- */

#define MAX_ITEMS   32
#define REPORT_DONE 0xffffffffu
#define REPORT_FAIL 0x80000000u
#define REPORT_OPEN 0x7fffffffu

/* One call the child makes: an append (of the events q[first..first+n) of
 * its source) or a settle of records the model holds pending. */
struct item {
	bool settle;
	size_t first, n;
	size_t na, nr; /* settle: ns[0..na) acked, ns[na..na+nr) rejected */
	uint64_t seqs[8], ns[8];
	int status[8];
	uint32_t rpad[8];
};

struct report {
	uint32_t code;
	int32_t rc;
};

static void child_report(int fd, uint32_t code, int rc)
{
	struct report r = {code, rc};
	if (tu_write_all(fd, &r, sizeof(r)) != 0)
		_exit(4);
}

/* Runs in the child: no Check calls here, only the exit code and the pipe. */
static void child_main(const struct model *m, const struct spool_options *o, int src,
                       const struct item *it, size_t ni, int wfd)
{
	struct spool *s = NULL;
	char err[512] = "";
	int rc = spool_open(m->dir, o, &s, err, sizeof(err));
	if (rc) {
		child_report(wfd, REPORT_OPEN, rc);
		_exit(2);
	}
	const struct msrc *q = &m->src[src];
	for (size_t i = 0; i < ni; i++) {
		if (it[i].settle) {
			struct spool_reject rej[8];
			char reasons[8][1400];
			for (size_t j = 0; j < it[i].nr; j++) {
				size_t at = it[i].na + j;
				model_reason(it[i].ns[at], it[i].status[at], it[i].rpad[at],
				             reasons[j], sizeof(reasons[j]));
				rej[j] = (struct spool_reject){it[i].seqs[at], it[i].status[at],
				                               reasons[j]};
			}
			uint64_t settled = 0;
			rc = spool_settle(s, it[i].seqs, it[i].na, rej, it[i].nr, &settled);
			if (rc == 0 && settled != it[i].na + it[i].nr)
				rc = -EPROTO;
		} else {
			struct spool_input in[16];
			unsigned char *data[16];
			for (size_t j = 0; j < it[i].n; j++) {
				uint64_t n = q->q[it[i].first + j];
				size_t len;
				model_payload(m, n, &data[j], &len);
				in[j] = (struct spool_input){m->ev[n - 1].sev, data[j], len};
			}
			rc = it[i].n == 1 ? spool_append(s, in[0].severity, in[0].data, in[0].len)
			                  : spool_append_many(s, in, it[i].n);
			for (size_t j = 0; j < it[i].n; j++)
				free(data[j]);
		}
		if (rc) {
			child_report(wfd, REPORT_FAIL | (uint32_t)i, rc);
			_exit(3);
		}
		child_report(wfd, (uint32_t)i, 0);
	}
	child_report(wfd, REPORT_DONE, 0);
	for (;;)
		pause();
}

/* Pending records for a settle item, none already used by the plan. */
static size_t pick_unused(struct model *m, size_t k, uint64_t *used, size_t *nused, uint64_t *seqs,
                          uint64_t *ns)
{
	uint64_t start = model_rand(m, 0, 1u << 30);
	size_t got = 0;
	for (size_t i = 0; i < m->npend && got < k; i++) {
		uint64_t n = m->pend[(start + i) % m->npend];
		bool taken = false;
		for (size_t j = 0; j < *nused; j++)
			taken |= used[j] == n;
		if (taken)
			continue;
		used[(*nused)++] = n;
		ns[got] = n;
		seqs[got++] = model_ev(m, n)->seq;
	}
	return got;
}

/* Reads reports until `until` items were reported (or done / failed / EOF
 * when until is SIZE_MAX).  Returns false when the pipe reached EOF. */
static bool read_reports(struct model *m, int fd, size_t until, size_t *reported, int *failed,
                         int *fail_rc, bool *done, double deadline)
{
	while (*reported < until && !*done && *failed < 0) {
		struct pollfd p = {.fd = fd, .events = POLLIN};
		int pr = poll(&p, 1, 100);
		if (pr < 0 && errno == EINTR)
			continue;
		MCHECK(m, pr >= 0, "poll: %s", strerror(errno));
		MCHECK(m, tu_now() < deadline, "the child hung (no report for 60 s)");
		if (pr == 0)
			continue;
		struct report r;
		if (tu_read_full(fd, &r, sizeof(r)) != 0)
			return false;
		if (r.code == REPORT_DONE) {
			*done = true;
		} else if (r.code == REPORT_OPEN) {
			*failed = (int)MAX_ITEMS;
			*fail_rc = r.rc;
		} else if (r.code & REPORT_FAIL) {
			*failed = (int)(r.code & ~REPORT_FAIL);
			*fail_rc = r.rc;
		} else {
			MCHECK(m, r.code == *reported, "child reported item %u after %zu", r.code,
			       *reported);
			(*reported)++;
		}
	}
	return true;
}

static void apply_settle(struct model *m, const struct item *it)
{
	for (size_t j = 0; j < it->na; j++) {
		model_unpend(m, it->ns[j]);
		model_ev(m, it->ns[j])->state = EV_ACKED;
		m->acked++;
	}
	for (size_t j = it->na; j < it->na + it->nr; j++)
		model_to_dead(m, it->ns[j], it->status[j], it->rpad[j]);
}

/* A settle the kill interrupted happened entirely or not at all. */
static void settle_in_flight(struct model *m, const struct item *it)
{
	struct tu_rec *r = NULL;
	int rc = 0;
	size_t n = tu_read_all_nock(m->s, false, 0, &r, &rc);
	MCHECK(m, n != (size_t)-1, "read after kill: %d (%s)", rc, spool_strerror(rc));
	size_t present = 0;
	for (size_t j = 0; j < it->na + it->nr; j++)
		for (size_t i = 0; i < n; i++)
			present += r[i].seq == it->seqs[j];
	tu_recs_free(r, n);
	size_t all = it->na + it->nr;
	MCHECK(m, present == 0 || present == all,
	       "a settle of %zu records cut by the kill left %zu of them pending", all, present);
	model_note(m, "interrupted settle %s", present ? "not applied" : "applied");
	if (present == 0)
		apply_settle(m, it);
}

void op_kill(struct model *m)
{
	enum spool_durability mode = ops_pick_mode(m);
	struct spool_options o;
	ops_options(m, &o, mode, false);
	size_t ni = (size_t)model_rand(m, 1, 24);
	uint64_t style = model_rand(m, 0, 2);
	size_t kill_after = (size_t)model_rand(m, 0, ni - 1);
	double delay = (double)model_rand(m, 0, 20000) / 1e6;
	model_op(m, "kill a %s child: %zu calls, kill %s %zu", tu_mode_label(mode), ni,
	         style == 0   ? "after all, at"
	         : style == 1 ? "after call"
	                      : "after us",
	         style == 2   ? (size_t)(delay * 1e6)
	         : style == 0 ? ni
	                      : kill_after);
	if (!ops_ensure(m))
		return;

	int src = model_new_source(m, SRC_CHILD, mode);
	struct item it[MAX_ITEMS];
	uint64_t used[64];
	size_t nused = 0;
	for (size_t i = 0; i < ni; i++) {
		struct item *t = &it[i];
		memset(t, 0, sizeof(*t));
		bool settle = model_chance(m, 12);
		size_t na = (size_t)model_rand(m, 0, 4), nr = (size_t)model_rand(m, 0, 2);
		size_t n = model_chance(m, 30) ? (size_t)model_rand(m, 2, 6) : 1;
		if (settle && na + nr > 0 && nused + na + nr <= 64) {
			t->settle = true;
			size_t got = pick_unused(m, na + nr, used, &nused, t->seqs, t->ns);
			t->na = got < na ? got : na;
			t->nr = got - t->na;
			for (size_t j = 0; j < got; j++) {
				t->status[j] = 400 + (int)model_rand(m, 0, 99);
				t->rpad[j] = (uint32_t)model_rand(m, 0, 30);
			}
			if (got > 0)
				continue;
			t->settle = false;
		}
		t->first = m->src[src].len;
		t->n = n;
		uint64_t group = 0;
		for (size_t j = 0; j < n; j++) {
			int sev = (int)model_rand(m, 0, 4);
			uint64_t ev = model_new_event(m, src, sev, ops_pick_pad(m), 0);
			if (n > 1) {
				group = group ? group : ev;
				model_ev(m, ev)->group = group;
			}
		}
	}

	int pfd[2];
	MCHECK(m, pipe(pfd) == 0, "pipe: %s", strerror(errno));
	pid_t pid = tu_fork();
	MCHECK(m, pid >= 0, "fork: %s", strerror(errno));
	if (pid == 0) {
		close(pfd[0]);
		child_main(m, &o, src, it, ni, pfd[1]);
	}
	close(pfd[1]);
	double deadline = tu_now() + 60.0;
	size_t reported = 0;
	int failed = -1, fail_rc = 0;
	bool done = false;
	if (style == 0)
		read_reports(m, pfd[0], SIZE_MAX, &reported, &failed, &fail_rc, &done, deadline);
	else if (style == 1)
		read_reports(m, pfd[0], kill_after, &reported, &failed, &fail_rc, &done, deadline);
	else
		tu_sleep(delay);
	kill(pid, SIGKILL);
	/* what the child managed to report before it died */
	read_reports(m, pfd[0], SIZE_MAX, &reported, &failed, &fail_rc, &done, deadline);
	close(pfd[0]);
	int code = tu_wait_until(pid, deadline);
	MCHECK(m, code == 128 + SIGKILL || (failed >= 0 && (code == 2 || code == 3)),
	       "child ended with %d (2: open failed, 3: a call failed, 4: pipe)", code);
	if (failed >= 0) {
		MCHECK(m, m->full && ops_full_error(fail_rc), "child: %s = %d (%s) with free disk",
		       failed == MAX_ITEMS ? "open" : "call", fail_rc, spool_strerror(fail_rc));
		model_note(m, "child %s failed: %s", failed == MAX_ITEMS ? "open" : "call",
		           spool_strerror(fail_rc));
		/* a refused append counts, though the child dies before any commit */
		if (failed < (int)ni && !it[failed].settle) {
			m->dropped_lo += it[failed].n;
			m->dropped_hi += it[failed].n;
		}
	}
	m->f_crashes++;
	model_note(m, "%zu calls reported", reported);
	/* LMDB: a writer killed after writing its meta page but before
	 * publishing the new transaction id leaves that commit invisible to
	 * readers until the next writer takes the write lock and adopts it.
	 * One write transaction here makes the child's work final. */
	uint64_t fence = m->step;
	int frc = spool_meta_put(m->s, "model.fence", &fence, sizeof(fence));
	MCHECK(m, frc == 0 || (m->full && ops_full_error(frc)), "meta_put after the kill = %d (%s)",
	       frc, spool_strerror(frc));

	/* reported calls happened; the next one may have; later ones did not */
	struct msrc *s = &m->src[src];
	s->promised = 0;
	for (size_t i = 0; i < ni; i++) {
		bool in_flight = i == reported && failed < 0;
		if (i < reported) {
			if (it[i].settle) {
				apply_settle(m, &it[i]);
			} else {
				for (size_t j = 0; j < it[i].n; j++)
					model_ev(m, s->q[it[i].first + j])->state = EV_STAGED;
				s->promised = it[i].first + it[i].n;
				m->f_events += it[i].n;
			}
		} else if (in_flight) {
			if (it[i].settle)
				settle_in_flight(m, &it[i]);
			else {
				for (size_t j = 0; j < it[i].n; j++)
					model_ev(m, s->q[it[i].first + j])->state = EV_INFLIGHT;
				m->dropped_hi += it[i].n; /* refused and counted, unreported */
			}
		}
	}
	m->torn_hi += m->dead_rings; /* the child's open may have recovered them */
	if (mode == SPOOL_SYNC) {
		s->required = s->promised;
		s->finalize = true;
		return;
	}
	if (mode == SPOOL_BUFFERED) {
		s->finalize = true; /* whatever it had not flushed died with it */
		return;
	}
	/* commit mode: the ring outlives the child until someone recovers it */
	s->dead_ring = true;
	m->dead_rings++;
	if (!model_chance(m, 70)) {
		/* the next open recovers it */
		ops_close_current(m);
		ops_open(m, ops_pick_mode(m));
		return;
	}
	model_check(m);
	uint64_t moved = 0;
	m->torn_hi += m->dead_rings; /* each ring may end in one torn entry */
	int rc = spool_recover(m->s, &moved);
	if (rc) {
		MCHECK(m, m->full && ops_full_error(rc), "spool_recover = %d (%s)", rc,
		       spool_strerror(rc));
		return;
	}
	/* every dead ring was moved: count what appears from them */
	int rings[MODEL_MAX_SRC > 256 ? 256 : MODEL_MAX_SRC];
	size_t nr = 0;
	for (size_t k = 0; k < m->nsrc && nr < 256; k++)
		if (m->src[k].dead_ring)
			rings[nr++] = (int)k;
	bool counted = !m->full;
	if (!m->full)
		ops_rings_recovered(m);
	model_check(m);
	uint64_t seen = 0;
	for (size_t k = 0; k < nr; k++)
		seen += model_last_seen(m, rings[k]);
	MCHECK(m, !counted || moved == seen,
	       "spool_recover reports %" PRIu64 " records moved, %" PRIu64 " appeared", moved,
	       seen);
	model_note(m, "recovered %" PRIu64, moved);
}

/* ---- the full disk ---- */

static void fill_disk(struct model *m)
{
	int fd = open(m->filler, O_CREAT | O_WRONLY | O_APPEND, 0600);
	MCHECK(m, fd >= 0, "filler %s: %s", m->filler, strerror(errno));
	static char blk[1 << 20];
	memset(blk, 0x5a, sizeof(blk));
	for (size_t chunk = sizeof(blk); chunk >= 4096; chunk /= 16) {
		for (;;) {
			ssize_t w = write(fd, blk, chunk);
			if (w < (ssize_t)chunk)
				break;
		}
	}
	close(fd);
}

void op_full_on(struct model *m)
{
	model_op(m, "fill the disk");
	if (!m->tmpfs) {
		if (m->f_skip_full++ == 0)
			printf("SKIP: disk-full steps (no private tmpfs for the spool)\n");
		model_note(m, "skipped: no tmpfs");
		return;
	}
	uint64_t steps = model_rand(m, 2, 6);
	fill_disk(m);
	m->full = true;
	m->full_left = (unsigned)steps;
	m->f_full++;
	if (!ops_ensure(m))
		return;
	/* append until the spool says no; a handle whose full policy evicts may
	 * live on the pages it frees */
	uint64_t tried = 0, ok = 0;
	int rc = 0;
	bool evicting = m->o.durability == SPOOL_SYNC && m->o.full_policy == SPOOL_FULL_EVICT &&
	                (m->o.max_events || m->o.max_bytes != ((uint64_t)1 << 30));
	while (rc == 0 && tried < ((uint64_t)40 << 20)) {
		int sev = (int)model_rand(m, 0, 4);
		uint32_t pad = (uint32_t)model_rand(m, 500, 3000);
		rc = ops_do_append(m, 1, &sev, &pad, false);
		tried += pad;
		ok += rc == 0;
		if (evicting && ok > 200)
			break;
	}
	model_note(m, "%s: %" PRIu64 " appends, then %d (%s)", tu_mode_label(m->o.durability), ok,
	           rc, spool_strerror(rc));
	MCHECK(m, rc != 0 || evicting,
	       "appends still succeed after %" PRIu64 " bytes on a full disk", tried);
}

void op_full_off(struct model *m)
{
	model_op(m, "free the disk");
	MCHECK(m, unlink(m->filler) == 0, "unlink filler: %s", strerror(errno));
	m->full = false;
	m->full_left = 0;
	bool reopen = model_chance(m, 60);
	enum spool_durability mode = ops_pick_mode(m);
	if (m->s && m->o.durability != SPOOL_SYNC) {
		if (reopen) {
			/* close gives the flusher a last try, without its backoff */
			ops_close_current(m);
		} else {
			int rc = spool_sync(m->s, 60.0, NULL);
			MCHECK(m, rc == 0, "sync after freeing the disk = %d (%s)", rc,
			       spool_strerror(rc));
			m->src[m->hsrc].required = m->src[m->hsrc].len;
		}
	}
	if (m->s) {
		uint64_t moved = 0;
		m->torn_hi += m->dead_rings;
		int rc = spool_recover(m->s, &moved);
		MCHECK(m, rc == 0, "recover after freeing the disk = %d (%s)", rc,
		       spool_strerror(rc));
		ops_rings_recovered(m);
	} else {
		MCHECK(m, ops_open(m, mode), "cannot open the spool after freeing the disk");
	}
	/* and appends work again */
	int sev = SPOOL_SEV_WARN;
	uint32_t pad = 100;
	int rc = ops_do_append(m, 1, &sev, &pad, false);
	MCHECK(m, rc == 0 || rc == SPOOL_EFULL, "append after freeing the disk = %d (%s)", rc,
	       spool_strerror(rc));
}
