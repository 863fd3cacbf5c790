/* model.c — the model's bookkeeping and the comparison of the real spool
 * with it (model_check), run after every step of the model-based test. */
#include "model.h"

#include <check.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "testutil.h"

/* ---- setup ---- */

void model_init(struct model *m, uint64_t seed)
{
	memset(m, 0, sizeof(*m));
	m->seed = seed;
	m->rng = seed;
	m->next_seq = 1;
	m->hsrc = -1;
	m->src = calloc(MODEL_MAX_SRC, sizeof(*m->src));
	if (m->src == NULL)
		abort();
}

void model_free(struct model *m)
{
	for (size_t i = 0; i < m->nsrc; i++)
		free(m->src[i].q);
	free(m->src);
	free(m->ev);
	free(m->pend);
	free(m->dead);
	m->src = NULL;
	m->ev = NULL;
	m->pend = m->dead = NULL;
}

/* ---- the step log and failures ---- */

void model_op(struct model *m, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(m->op, sizeof(m->op), fmt, ap);
	va_end(ap);
	snprintf(m->log[m->nlog % MODEL_LOG], sizeof(m->log[0]), "step %u: %s", m->step, m->op);
	m->nlog++;
}

void model_note(struct model *m, const char *fmt, ...)
{
	if (m->nlog == 0)
		return;
	char *line = m->log[(m->nlog - 1) % MODEL_LOG];
	size_t used = strlen(line);
	if (used + 4 >= sizeof(m->log[0]))
		return;
	line[used++] = ';';
	line[used++] = ' ';
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line + used, sizeof(m->log[0]) - used, fmt, ap);
	va_end(ap);
}

void model_save_figures(const struct model *m)
{
	if (m->figfile == NULL)
		return;
	int fd = open(m->figfile, O_WRONLY | O_APPEND);
	if (fd < 0)
		return;
	char line[256];
	int n = snprintf(line, sizeof(line),
	                 "%u %" PRIu64 " %" PRIu64 " %" PRIu64 " %" PRIu64 " %" PRIu64 " %" PRIu64
	                 " %" PRIu64 "\n",
	                 m->step, m->f_events, m->f_lost, m->f_dups, m->f_crashes, m->f_window_lost,
	                 m->f_full, m->f_skip_full);
	tu_write_all(fd, line, (size_t)n);
	close(fd);
}

void model_fail(struct model *m, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	printf("\nMODEL FAILURE: %s\n", msg);
	printf("  seed %" PRIu64 ", step %u, operation: %s\n", m->seed, m->step, m->op);
	printf("  replay: SPOOL_TEST_SEED=%" PRIu64 " MODEL_SEEDS=1 MODEL_STEPS=%u\n", m->seed,
	       m->step + 1);
	printf("  state: %zu pending, %zu dead, next_seq %" PRIu64 ", handle %s, disk %s\n",
	       m->npend, m->ndead, m->next_seq, m->s ? tu_mode_label(m->o.durability) : "closed",
	       m->full ? "full" : "free");
	unsigned first = m->nlog > MODEL_LOG ? m->nlog - MODEL_LOG : 0;
	printf("  last %u steps:\n", m->nlog - first);
	for (unsigned i = first; i < m->nlog; i++)
		printf("    %s\n", m->log[i % MODEL_LOG]);
	printf("FIGURES scenario=model rounds=1 steps=%u events=%" PRIu64 " lost=%" PRIu64
	       " duplicates=%" PRIu64 " crashes=%" PRIu64 "\n",
	       m->step, m->f_events, m->f_lost, m->f_dups, m->f_crashes);
	fflush(stdout);
	model_save_figures(m);
	ck_abort_msg("model mismatch, seed %" PRIu64 " step %u (%s): %s", m->seed, m->step, m->op,
	             msg);
	abort();
}

uint64_t model_rand(struct model *m, uint64_t lo, uint64_t hi)
{
	return tu_rand_range(&m->rng, lo, hi);
}

bool model_chance(struct model *m, unsigned percent)
{
	return tu_rand(&m->rng) % 100 < percent;
}

/* ---- events and sources ---- */

struct mev *model_ev(struct model *m, uint64_t n)
{
	return n >= 1 && n <= m->nev ? &m->ev[n - 1] : NULL;
}

static void grow(void **v, size_t *cap, size_t need, size_t elem)
{
	if (need <= *cap)
		return;
	size_t c = *cap ? *cap : 64;
	while (c < need)
		c *= 2;
	void *nv = realloc(*v, c * elem);
	if (nv == NULL)
		abort();
	*v = nv;
	*cap = c;
}

static int64_t payload_producer(const struct model *m)
{
	return (int64_t)(m->seed % 1000003u);
}

void model_payload(const struct model *m, uint64_t n, unsigned char **data, size_t *len)
{
	struct tu_buf b;
	tu_payload(&b, payload_producer(m), n, "model", m->ev[n - 1].pad);
	*data = b.data;
	*len = b.len;
}

uint64_t model_new_event(struct model *m, int src, int sev, uint32_t pad, uint64_t group)
{
	size_t cap = (size_t)m->cap_ev;
	grow((void **)&m->ev, &cap, (size_t)m->nev + 1, sizeof(*m->ev));
	m->cap_ev = cap;
	uint64_t n = ++m->nev;
	struct mev *e = &m->ev[n - 1];
	memset(e, 0, sizeof(*e));
	e->state = EV_PLANNED;
	e->sev = (uint8_t)sev;
	e->src = (uint16_t)src;
	e->pad = pad;
	e->group = group;
	unsigned char *d;
	size_t len;
	model_payload(m, n, &d, &len);
	free(d);
	e->len = (uint32_t)len;
	struct msrc *s = &m->src[src];
	grow((void **)&s->q, &s->cap, s->len + 1, sizeof(*s->q));
	s->q[s->len++] = n;
	return n;
}

int model_new_source(struct model *m, int kind, enum spool_durability mode)
{
	if (m->nsrc == MODEL_MAX_SRC)
		model_fail(m, "too many sources for the model (test limit)");
	struct msrc *s = &m->src[m->nsrc];
	memset(s, 0, sizeof(*s));
	s->kind = kind;
	s->mode = mode;
	s->open = true;
	s->lossy = mode == SPOOL_BUFFERED && kind != SRC_RETRY;
	return (int)m->nsrc++;
}

void model_reason(uint64_t n, int status, uint32_t reason_pad, char *buf, size_t len)
{
	int k = snprintf(buf, len, "rejected n=%" PRIu64 " status=%d", n, status);
	for (size_t i = (size_t)k; i < (size_t)k + reason_pad && i + 1 < len; i++)
		buf[i] = (char)('a' + i % 26);
	size_t end = (size_t)k + reason_pad < len - 1 ? (size_t)k + reason_pad : len - 1;
	buf[end] = '\0';
}

uint64_t model_pending_bytes(const struct model *m)
{
	uint64_t b = 0;
	for (size_t i = 0; i < m->npend; i++)
		b += 16 + m->ev[m->pend[i] - 1].len;
	return b;
}

static bool remove_from(uint64_t *v, size_t *n, uint64_t x)
{
	for (size_t i = 0; i < *n; i++) {
		if (v[i] == x) {
			memmove(v + i, v + i + 1, (*n - i - 1) * sizeof(*v));
			(*n)--;
			return true;
		}
	}
	return false;
}

bool model_unpend(struct model *m, uint64_t n)
{
	return remove_from(m->pend, &m->npend, n);
}

void model_to_dead(struct model *m, uint64_t n, int status, uint32_t reason_pad)
{
	struct mev *e = model_ev(m, n);
	if (!model_unpend(m, n))
		model_fail(m, "model bug: dead-lettering n=%" PRIu64 " that is not pending", n);
	e->state = EV_DEAD;
	e->dead_status = status;
	e->reason_pad = reason_pad;
	/* dead keeps the record's sequence: insert in order */
	grow((void **)&m->dead, &m->cap_dead, m->ndead + 1, sizeof(*m->dead));
	size_t i = m->ndead;
	while (i > 0 && m->ev[m->dead[i - 1] - 1].seq > e->seq) {
		m->dead[i] = m->dead[i - 1];
		i--;
	}
	m->dead[i] = n;
	m->ndead++;
	m->dead_total++;
}

bool model_undead(struct model *m, uint64_t n)
{
	return remove_from(m->dead, &m->ndead, n);
}

uint64_t model_close_source(struct model *m, int src, bool count_dropped)
{
	struct msrc *s = &m->src[src];
	uint64_t lost = 0;
	for (size_t i = s->head; i < s->len; i++) {
		struct mev *e = model_ev(m, s->q[i]);
		if (e->state == EV_STAGED) {
			if (!s->lossy) {
				m->f_lost++;
				model_fail(m,
				           "source %d (%s): event n=%" PRIu64
				           " was appended with success but never committed",
				           src, tu_mode_label(s->mode), s->q[i]);
			}
			e->state = EV_LOST_OK;
			lost++;
		} else if (e->state == EV_PLANNED || e->state == EV_INFLIGHT) {
			e->state = EV_NEVER;
		}
	}
	s->len = s->head;
	s->required = s->head;
	s->open = false;
	m->f_window_lost += lost;
	if (count_dropped) {
		m->dropped_lo += lost;
		m->dropped_hi += lost;
	}
	return lost;
}

/* ---- reading the spool ---- */

struct snap {
	struct tu_rec *r;
	size_t n;
};

static void snap_free(struct snap *s)
{
	tu_recs_free(s->r, s->n);
	s->r = NULL;
	s->n = 0;
}

static void read_snap(struct model *m, bool dead, struct snap *out)
{
	int rc = 0;
	out->n = tu_read_all_nock(m->s, dead, 0, &out->r, &rc);
	MCHECK(m, out->n != (size_t)-1, "reading %s records failed: %d (%s)",
	       dead ? "dead" : "pending", rc, spool_strerror(rc));
}

static bool same_seqs(const struct snap *a, const struct snap *b)
{
	if (a->n != b->n)
		return false;
	for (size_t i = 0; i < a->n; i++)
		if (a->r[i].seq != b->r[i].seq)
			return false;
	return true;
}

/* Compares one stored record with event n of the model. */
static void compare_record(struct model *m, const struct tu_rec *r, uint64_t n, bool dead)
{
	const struct mev *e = model_ev(m, n);
	const char *where = dead ? "dead letter" : "pending record";
	MCHECK(m, r->severity == e->sev, "%s seq %" PRIu64 " (n=%" PRIu64 "): severity %d, want %d",
	       where, r->seq, n, r->severity, e->sev);
	unsigned char *d;
	size_t len;
	model_payload(m, n, &d, &len);
	bool same = r->len == len && memcmp(r->data, d, len) == 0;
	free(d);
	MCHECK(m, same, "%s seq %" PRIu64 " (n=%" PRIu64 "): payload differs (%zu bytes, want %zu)",
	       where, r->seq, n, r->len, len);
	MCHECK(m, e->enq_us == 0 || r->enqueue_us == e->enq_us,
	       "%s seq %" PRIu64 " (n=%" PRIu64 "): enqueue time changed from %" PRId64
	       " to %" PRId64,
	       where, r->seq, n, e->enq_us, r->enqueue_us);
	if (dead) {
		char want[2048];
		model_reason(n, e->dead_status, e->reason_pad, want, sizeof(want));
		want[1024] = '\0'; /* the spool keeps 1 KiB of reason */
		MCHECK(m, r->dead_status == e->dead_status,
		       "dead letter seq %" PRIu64 " (n=%" PRIu64 "): status %d, want %d", r->seq, n,
		       r->dead_status, e->dead_status);
		MCHECK(m, r->dead_reason && strcmp(r->dead_reason, want) == 0,
		       "dead letter seq %" PRIu64 " (n=%" PRIu64
		       "): reason \"%.60s\", want \"%.60s\"",
		       r->seq, n, r->dead_reason ? r->dead_reason : "(null)", want);
	}
}

static uint64_t decode_n(struct model *m, const struct tu_rec *r)
{
	struct tu_event ev;
	MCHECK(m, tu_decode(r->data, r->len, &ev) == 0, "record seq %" PRIu64 " does not decode",
	       r->seq);
	MCHECK(m, ev.p == payload_producer(m) && model_ev(m, ev.n) != NULL,
	       "record seq %" PRIu64 " is no event of this run (p=%" PRId64 " n=%" PRIu64 ")",
	       r->seq, ev.p, ev.n);
	return ev.n;
}

static const char *state_name(int st)
{
	static const char *names[] = {
	    "planned", "in flight", "staged", "pending",        "dead",
	    "acked",   "discarded", "purged", "never appended", "lost (buffered window)"};
	return st >= 0 && st <= EV_LOST_OK ? names[st] : "?";
}

/* A record the model has not seen before: it must be the next record of
 * the source that appended it, under the next sequence number. */
static void adopt(struct model *m, const struct tu_rec *r)
{
	uint64_t n = decode_n(m, r);
	struct mev *e = model_ev(m, n);
	if (e->state >= EV_PENDING && e->state <= EV_PURGED) {
		m->f_dups++;
		model_fail(m,
		           "duplicate: n=%" PRIu64 " committed again at seq %" PRIu64
		           " (it is %s, seq %" PRIu64 ")",
		           n, r->seq, state_name(e->state), e->seq);
	}
	MCHECK(m, e->state == EV_STAGED || e->state == EV_INFLIGHT,
	       "n=%" PRIu64 " appeared at seq %" PRIu64 " but it is %s", n, r->seq,
	       state_name(e->state));
	struct msrc *s = &m->src[e->src];
	MCHECK(m, s->head < s->len && s->q[s->head] == n,
	       "n=%" PRIu64 " (seq %" PRIu64 ") committed out of its producer's order: source %u "
	       "expected n=%" PRIu64 " next",
	       n, r->seq, e->src, s->head < s->len ? s->q[s->head] : 0);
	MCHECK(m, r->seq == m->next_seq,
	       "n=%" PRIu64 " got seq %" PRIu64 " where the next sequence is %" PRIu64, n, r->seq,
	       m->next_seq);
	s->head++;
	e->state = EV_PENDING;
	e->seq = r->seq;
	if (e->seq0 == 0)
		e->seq0 = r->seq;
	if (e->enq_us == 0)
		e->enq_us = r->enqueue_us;
	compare_record(m, r, n, false);
	grow((void **)&m->pend, &m->cap_pend, m->npend + 1, sizeof(*m->pend));
	m->pend[m->npend++] = n;
	m->next_seq++;
	m->appended++;
}

static void check_range(struct model *m, const char *what, uint64_t got, uint64_t *lo, uint64_t *hi)
{
	MCHECK(m, got >= *lo && got <= *hi,
	       "stats %s = %" PRIu64 ", model allows %" PRIu64 "..%" PRIu64, what, got, *lo, *hi);
	*lo = *hi = got;
}

static void check_stats(struct model *m, const struct spool_stats *st, size_t npend, size_t ndead)
{
	MCHECK(m, st->pending == npend, "stats pending = %" PRIu64 ", %zu records readable",
	       st->pending, npend);
	MCHECK(m, st->dead == ndead, "stats dead = %" PRIu64 ", %zu dead letters readable",
	       st->dead, ndead);
	uint64_t pb = model_pending_bytes(m);
	MCHECK(m, st->pending_bytes == pb, "stats pending_bytes = %" PRIu64 ", model %" PRIu64,
	       st->pending_bytes, pb);
	MCHECK(m, st->appended_total == m->appended,
	       "stats appended_total = %" PRIu64 ", model %" PRIu64, st->appended_total,
	       m->appended);
	MCHECK(m, st->acked_total == m->acked, "stats acked_total = %" PRIu64 ", model %" PRIu64,
	       st->acked_total, m->acked);
	MCHECK(m, st->dead_total == m->dead_total, "stats dead_total = %" PRIu64 ", model %" PRIu64,
	       st->dead_total, m->dead_total);
	MCHECK(m, st->evicted_total == m->evicted,
	       "stats evicted_total = %" PRIu64 ", model %" PRIu64, st->evicted_total, m->evicted);
	MCHECK(m, st->corrupt_total == 0, "stats corrupt_total = %" PRIu64 ", nothing was damaged",
	       st->corrupt_total);
	MCHECK(m, st->next_seq == m->next_seq, "stats next_seq = %" PRIu64 ", model %" PRIu64,
	       st->next_seq, m->next_seq);
	MCHECK(m, npend > 0 || st->oldest_age_seconds == 0.0,
	       "stats oldest_age_seconds = %g on an empty spool", st->oldest_age_seconds);
	MCHECK(m, st->oldest_age_seconds >= 0.0, "stats oldest_age_seconds = %g",
	       st->oldest_age_seconds);
	check_range(m, "dropped_total", st->dropped_total, &m->dropped_lo, &m->dropped_hi);
	check_range(m, "torn_total", st->torn_total, &m->torn_lo, &m->torn_hi);
}

static void check_verify(struct model *m)
{
	struct spool_verify_report rep;
	char err[512] = "";
	int rc = spool_verify(m->dir, false, &rep, err, sizeof(err));
	MCHECK(m, rc == 0, "spool_verify = %d (%s): %s", rc, spool_strerror(rc), err);
	MCHECK(m, rep.problems == 0, "spool_verify found problems 0x%x: %s", rep.problems,
	       rep.text);
	if (rep.records != m->npend)
		return; /* a flusher committed meanwhile: the counts are from another moment */
	uint64_t sev[5] = {0};
	for (size_t i = 0; i < m->npend; i++)
		sev[m->ev[m->pend[i] - 1].sev]++;
	for (int i = 0; i < 5; i++)
		MCHECK(m, rep.sev[i] == sev[i],
		       "spool_verify: %" PRIu64 " pending of severity %d, "
		       "model %" PRIu64,
		       rep.sev[i], i, sev[i]);
}

void model_check(struct model *m)
{
	if (m->s == NULL) {
		model_note(m, "no handle: check skipped");
		return;
	}
	m->f_checks++;
	struct snap a = {0}, b = {0}, d = {0};
	struct spool_stats st;
	/* a flusher may commit between the reads: retry until the pending
	 * records read before and after the statistics are the same */
	for (int attempt = 0;; attempt++) {
		read_snap(m, false, &a);
		int rc = spool_stats(m->s, &st);
		MCHECK(m, rc == 0, "spool_stats = %d (%s)", rc, spool_strerror(rc));
		read_snap(m, true, &d);
		read_snap(m, false, &b);
		bool same = same_seqs(&a, &b);
		snap_free(&b);
		if (same)
			break;
		snap_free(&a);
		snap_free(&d);
		MCHECK(m, attempt < 200, "the spool never held still for a consistent read");
		tu_sleep(0.001);
	}

	for (size_t k = 0; k < m->nsrc; k++)
		m->src[k].check_head = m->src[k].head;

	/* what the model holds pending must come first, unchanged */
	size_t i = 0;
	for (size_t k = 0; k < m->npend; k++, i++) {
		uint64_t n = m->pend[k];
		const struct mev *e = model_ev(m, n);
		if (i >= a.n || a.r[i].seq != e->seq) {
			m->f_lost++;
			model_fail(m,
			           "pending n=%" PRIu64 " (seq %" PRIu64
			           ") is gone; found %s%" PRIu64 " in its place",
			           n, e->seq, i < a.n ? "seq " : "end of queue",
			           i < a.n ? a.r[i].seq : 0);
		}
		uint64_t got = decode_n(m, &a.r[i]);
		MCHECK(m, got == n, "seq %" PRIu64 " holds n=%" PRIu64 ", model says n=%" PRIu64,
		       a.r[i].seq, got, n);
		compare_record(m, &a.r[i], n, false);
	}
	/* then what producers committed since the last check */
	for (; i < a.n; i++)
		adopt(m, &a.r[i]);

	/* dead letters: exactly the model's */
	MCHECK(m, d.n == m->ndead, "%zu dead letters, model has %zu", d.n, m->ndead);
	for (size_t k = 0; k < d.n; k++) {
		uint64_t n = m->dead[k];
		const struct mev *e = model_ev(m, n);
		MCHECK(m, d.r[k].seq == e->seq,
		       "dead letter %zu has seq %" PRIu64 ", model %" PRIu64 " (n=%" PRIu64 ")", k,
		       d.r[k].seq, e->seq, n);
		uint64_t got = decode_n(m, &d.r[k]);
		MCHECK(m, got == n, "dead seq %" PRIu64 " holds n=%" PRIu64 ", model n=%" PRIu64,
		       d.r[k].seq, got, n);
		compare_record(m, &d.r[k], n, true);
	}
	check_stats(m, &st, a.n, d.n);

	/* append_many is all or none: no source may stop inside a group, and
	 * nothing promised may be missing */
	for (size_t k = 0; k < m->nsrc; k++) {
		struct msrc *s = &m->src[k];
		if (s->head > 0 && s->head < s->len) {
			const struct mev *last = model_ev(m, s->q[s->head - 1]);
			const struct mev *next = model_ev(m, s->q[s->head]);
			MCHECK(
			    m, last->group == 0 || last->group != next->group,
			    "source %zu: only part of the append_many group starting at n=%" PRIu64
			    " is committed (up to n=%" PRIu64 ")",
			    k, last->group, s->q[s->head - 1]);
		}
		if (s->head < s->required) {
			m->f_lost += s->required - s->head;
			model_fail(m,
			           "source %zu (%s): %zu records promised, only %zu committed; "
			           "first missing n=%" PRIu64,
			           k, tu_mode_label(s->mode), s->required, s->head, s->q[s->head]);
		}
	}
	snap_free(&a);
	snap_free(&d);
	check_verify(m);
	for (size_t k = 0; k < m->nsrc; k++) {
		if (m->src[k].finalize) {
			m->src[k].finalize = false;
			model_close_source(m, (int)k, false);
		}
	}
}

uint64_t model_last_seen(const struct model *m, int src)
{
	return m->src[src].head - m->src[src].check_head;
}
