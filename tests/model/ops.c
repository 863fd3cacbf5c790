/* ops.c — the steps of the model-based spool test.  Each operation does one
 * thing to the real spool and the same thing to the model; model_check()
 * then compares the two.  Kills and the full disk are in crash.c. */
#include "ops.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

bool ops_full_error(int rc)
{
	return rc == -ENOSPC || rc == SPOOL_EFULL || rc == SPOOL_ECLOSED;
}

/* Sizes: mostly small events, some kilobytes, a few larger than a quarter
 * of the smallest ring (the staged modes then commit them directly). */
uint32_t ops_pick_pad(struct model *m)
{
	uint64_t r = model_rand(m, 0, 99);
	uint64_t big = model_rand(m, 17000, 40000);
	uint64_t mid = model_rand(m, 3000, 12000);
	uint64_t some = model_rand(m, 200, 3000);
	uint64_t small = model_rand(m, 0, 200);
	if (m->full)
		return (uint32_t)(r < 60 ? small : some);
	return (uint32_t)(r < 70 ? small : r < 90 ? some : r < 98 ? mid : big);
}

/* Random handle options; limits (and exact full-policy predictions) only in
 * sync mode, where they are applied inside the append's own transaction. */
void ops_options(struct model *m, struct spool_options *o, enum spool_durability mode, bool limits)
{
	static const double commit_iv[] = {0.001, 0.01, 0.05, 0.5};
	static const double flush_iv[] = {0.002, 0.02, 0.2, 1.0};
	static const uint32_t batch[] = {1, 8, 100, 1000};
	tu_opts(o, mode);
	o->initial_map_bytes = (size_t)(64 * 1024) << model_rand(m, 0, 6);
	o->ring_bytes = (size_t)(64 * 1024) << model_rand(m, 0, 2);
	o->commit_interval_seconds = commit_iv[model_rand(m, 0, 3)];
	o->flush_interval_seconds = flush_iv[model_rand(m, 0, 3)];
	o->flush_batch = batch[model_rand(m, 0, 3)];
	o->full_timeout_seconds = 0.02;
	bool small_max = model_chance(m, 10);
	bool lim = model_chance(m, 40);
	uint64_t max_ev = model_rand(m, 3, 80);
	uint64_t max_b = model_rand(m, 4000, 200000);
	uint64_t which = model_rand(m, 0, 2);
	uint64_t pol = model_rand(m, 0, 2);
	if (small_max && limits)
		o->max_record_bytes = 6000;
	if (limits && mode == SPOOL_SYNC && lim) {
		if (which != 1)
			o->max_events = max_ev;
		if (which != 0)
			o->max_bytes = max_b;
		o->full_policy = (enum spool_full_policy)pol;
		o->full_timeout_seconds = 0.005;
	}
}

enum spool_durability ops_pick_mode(struct model *m)
{
	return tu_modes[model_rand(m, 0, TU_NMODES - 1)];
}

/* Dead rings are moved into the queue by every open and recovery that
 * succeeds: from now on their promised records must all be there. */
void ops_rings_recovered(struct model *m)
{
	for (size_t k = 0; k < m->nsrc; k++) {
		struct msrc *s = &m->src[k];
		if (!s->dead_ring)
			continue;
		s->dead_ring = false;
		s->required = s->promised;
		s->finalize = true;
	}
	m->dead_rings = 0;
}

/* Opens the test's handle in `mode`; false (with a note) when the open
 * failed on a full disk. */
bool ops_open(struct model *m, enum spool_durability mode)
{
	struct spool_options o;
	ops_options(m, &o, mode, true);
	char err[512] = "";
	struct spool *s = NULL;
	m->torn_hi += m->dead_rings; /* opening recovers dead rings */
	int rc = spool_open(m->dir, &o, &s, err, sizeof(err));
	if (rc != 0) {
		MCHECK(m, m->full && ops_full_error(rc), "spool_open(%s) = %d (%s): %s",
		       tu_mode_label(mode), rc, spool_strerror(rc), err);
		model_note(m, "open %s on the full disk: %s", tu_mode_label(mode),
		           spool_strerror(rc));
		return false;
	}
	m->s = s;
	m->o = o;
	m->hsrc = model_new_source(m, SRC_HANDLE, mode);
	if (!m->full)
		ops_rings_recovered(m);
	model_note(m, "opened %s%s%s", tu_mode_label(mode),
	           o.max_events || o.max_bytes != ((uint64_t)1 << 30) ? " with limits" : "",
	           o.max_record_bytes == 6000 ? " max_record 6000" : "");
	return true;
}

bool ops_ensure(struct model *m)
{
	return m->s != NULL || ops_open(m, ops_pick_mode(m));
}

/* What happens to the handle's source when the handle closes with rc. */
void ops_handle_closed(struct model *m, int src, int rc)
{
	struct msrc *s = &m->src[src];
	if (m->full && m->s == NULL) {
		/* the process's last handle: torn counts not yet committed are
		 * stored at release, which a full disk can refuse (refusals wait
		 * in the spool's counts file, which outlives the process) */
		m->torn_lo = 0;
	}
	if (rc == 0) {
		s->required = s->len;
		s->finalize = true;
		return;
	}
	MCHECK(m, m->full && (ops_full_error(rc) || rc == -ETIMEDOUT),
	       "spool_close = %d (%s) with free disk", rc, spool_strerror(rc));
	if (s->mode == SPOOL_COMMIT) {
		/* the ring file stays for the next opener */
		s->dead_ring = true;
		s->promised = s->len;
		m->dead_rings++;
	} else {
		/* buffered records in memory are lost, and counted as dropped
		 * (or not, if this process's last handle went with them) */
		s->finalize = true;
		s->required = s->head;
		m->dropped_hi += s->len - s->head;
	}
}

int ops_close_current(struct model *m)
{
	if (!m->s)
		return 0;
	struct spool *old = m->s;
	int src = m->hsrc;
	m->s = NULL;
	m->hsrc = -1;
	int rc = spool_close(old);
	if (rc)
		model_note(m, "close rc %d (%s)", rc, spool_strerror(rc));
	ops_handle_closed(m, src, rc);
	return rc;
}

/* ---- appends ---- */

/* The outcome the full policy gives a sync-mode append of n records of
 * `bytes` stored bytes; evicts in the model when the policy does. */
static int predict_limits(struct model *m, size_t n, uint64_t bytes, uint64_t **evict,
                          size_t *nevict)
{
	const struct spool_options *o = &m->o;
	*nevict = 0;
	if (o->durability != SPOOL_SYNC || (!o->max_events && o->max_bytes == ((uint64_t)1 << 30)))
		return 0;
	/* the prediction needs the queue as it is now (a handle closed since
	 * the last check may have committed more) */
	model_check(m);
	uint64_t pb = model_pending_bytes(m);
	bool too_many = o->max_events && m->npend + n > o->max_events;
	bool too_big = o->max_bytes && pb + bytes > o->max_bytes;
	if (!too_many && !too_big)
		return 0;
	if ((o->max_events && n > o->max_events) || (o->max_bytes && bytes > o->max_bytes))
		return SPOOL_ETOOBIG;
	if (o->full_policy != SPOOL_FULL_EVICT)
		return SPOOL_EFULL;
	/* lowest severity first, oldest first within it */
	uint64_t need_n = too_many ? m->npend + n - o->max_events : 0;
	uint64_t need_b = too_big ? pb + bytes - o->max_bytes : 0;
	uint64_t got_n = 0, got_b = 0;
	*evict = malloc((m->npend + 1) * sizeof(**evict));
	if (*evict == NULL)
		abort();
	for (int sev = 0; sev < 5 && (got_n < need_n || got_b < need_b); sev++) {
		for (size_t i = 0; i < m->npend && (got_n < need_n || got_b < need_b); i++) {
			const struct mev *e = model_ev(m, m->pend[i]);
			if (e->sev != sev)
				continue;
			(*evict)[(*nevict)++] = m->pend[i];
			got_n++;
			got_b += 16 + e->len;
		}
	}
	return 0;
}

/* Appends n events (one call) through the test's handle; returns the call's
 * result after checking it against the model's prediction. */
int ops_do_append(struct model *m, size_t n, const int *sev, const uint32_t *pad, bool many)
{
	struct msrc *s = &m->src[m->hsrc];
	size_t first_idx = s->len;
	struct spool_input in[16];
	unsigned char *data[16];
	uint64_t bytes = 0, first_n = 0;
	bool too_big = false;
	for (size_t i = 0; i < n; i++) {
		uint64_t ev = model_new_event(m, m->hsrc, sev[i], pad[i], 0);
		if (i == 0)
			first_n = ev;
		if (many)
			model_ev(m, ev)->group = first_n;
		size_t len;
		model_payload(m, ev, &data[i], &len);
		in[i] = (struct spool_input){sev[i], data[i], len};
		bytes += 16 + len;
		too_big |= len > m->o.max_record_bytes;
	}
	s = &m->src[m->hsrc];
	uint64_t *evict = NULL;
	size_t nevict = 0;
	int want = too_big ? SPOOL_ETOOBIG : predict_limits(m, n, bytes, &evict, &nevict);
	int rc = many ? spool_append_many(m->s, in, n)
	              : spool_append(m->s, sev[0], in[0].data, in[0].len);
	for (size_t i = 0; i < n; i++)
		free(data[i]);
	if (rc == 0) {
		MCHECK(m, want == 0, "append of n=%" PRIu64 "..: got 0, want %d (%s)", first_n,
		       want, spool_strerror(want));
		for (size_t i = 0; i < n; i++)
			model_ev(m, s->q[first_idx + i])->state = EV_STAGED;
		s->promised = s->len;
		m->f_events += n;
		if (m->o.durability == SPOOL_SYNC)
			s->required = s->len; /* committed before the call returned */
		for (size_t i = 0; i < nevict; i++) {
			model_unpend(m, evict[i]);
			model_ev(m, evict[i])->state = EV_DISCARDED;
			m->evicted++;
		}
		if (nevict)
			model_note(m, "evicts %zu", nevict);
		free(evict);
		return 0;
	}
	free(evict);
	/* not stored: these events must never show up */
	for (size_t i = 0; i < n; i++)
		model_ev(m, s->q[first_idx + i])->state = EV_NEVER;
	s->len = first_idx;
	if (want != 0 && rc == want) {
		if (rc == SPOOL_EFULL) {
			m->dropped_lo += n;
			m->dropped_hi += n;
		}
		return rc;
	}
	MCHECK(m, m->full && ops_full_error(rc), "append of n=%" PRIu64 "..: %d (%s), want %d (%s)",
	       first_n, rc, spool_strerror(rc), want, spool_strerror(want));
	/* every refusal counts (on a full disk too, in the spool's counts file) */
	m->dropped_lo += n;
	m->dropped_hi += n;
	return rc;
}

void op_append(struct model *m, bool many)
{
	size_t n = many ? (size_t)model_rand(m, 2, 12) : 1;
	int sev[16] = {0};
	uint32_t pad[16] = {0};
	for (size_t i = 0; i < n; i++) {
		sev[i] = (int)model_rand(m, 0, 4);
		pad[i] = ops_pick_pad(m);
	}
	model_op(m, "append%s n=%zu sev=%d pad=%u%s", many ? "_many" : "", n, sev[0], pad[0],
	         n > 1 ? " ..." : "");
	if (!ops_ensure(m))
		return;
	model_note(m, "%s", tu_mode_label(m->o.durability));
	int rc = ops_do_append(m, n, sev, pad, many);
	if (rc)
		model_note(m, "rc %d (%s)", rc, spool_strerror(rc));
}

/* Appends that break the rules: nothing is stored, nothing counted. */
void op_bad_input(struct model *m)
{
	uint64_t kind = model_rand(m, 0, 4);
	model_op(m, "bad input %" PRIu64, kind);
	if (!ops_ensure(m))
		return;
	static const unsigned char not_a_map[] = {0x2a};
	static const unsigned char map[] = {0x80};
	int rc, want = -EINVAL;
	switch (kind) {
	case 0:
		rc = spool_append(m->s, 5, map, sizeof(map));
		break;
	case 1:
		rc = spool_append(m->s, SPOOL_SEV_INFO, map, 0);
		break;
	case 2:
		rc = spool_append(m->s, SPOOL_SEV_INFO, not_a_map, sizeof(not_a_map));
		break;
	case 3:
		rc = spool_append(m->s, SPOOL_SEV_INFO, NULL, 4);
		break;
	default:
		rc = spool_append_many(m->s, NULL, 0);
		want = 0;
		break;
	}
	MCHECK(m, rc == want, "bad input %" PRIu64 ": %d (%s), want %d", kind, rc,
	       spool_strerror(rc), want);
}

/* ---- picking targets ---- */

/* Up to k pending sequences: the head of the queue (as an agent acks) or a
 * random choice.  Returns how many. */
size_t ops_pick_pending(struct model *m, size_t k, uint64_t *out, uint64_t *ns)
{
	bool head = model_chance(m, 60);
	uint64_t start = model_rand(m, 0, 1u << 30);
	if (k > m->npend)
		k = m->npend;
	if (k == 0)
		return 0;
	size_t got = 0;
	if (head) {
		for (size_t i = 0; i < k; i++) {
			out[got] = model_ev(m, m->pend[i])->seq;
			ns[got++] = m->pend[i];
		}
		return got;
	}
	/* a stride through the queue from a random start: distinct picks */
	size_t step = 1 + (size_t)(start % 7);
	for (size_t i = 0, at = (size_t)start % m->npend; i < m->npend && got < k;
	     i++, at = (at + step) % m->npend) {
		bool dup = false;
		for (size_t j = 0; j < got; j++)
			dup |= ns[j] == m->pend[at];
		if (dup)
			continue;
		out[got] = model_ev(m, m->pend[at])->seq;
		ns[got++] = m->pend[at];
	}
	return got;
}

/* A sequence that is not pending: one settled long ago, or one far ahead. */
uint64_t ops_bogus_seq(struct model *m)
{
	uint64_t r = model_rand(m, 0, 2);
	uint64_t far = m->next_seq + 100000 + model_rand(m, 0, 1000);
	if (r == 0 || m->nev == 0)
		return far;
	for (uint64_t tries = 0; tries < 8; tries++) {
		const struct mev *e = model_ev(m, model_rand(m, 1, m->nev));
		if (e->seq &&
		    (e->state == EV_ACKED || e->state == EV_DISCARDED || e->state == EV_PURGED))
			return e->seq;
	}
	return r == 1 ? 0 : far;
}

/* ---- settling ---- */

static void apply_acks(struct model *m, const uint64_t *ns, size_t k, uint64_t *counter, int state)
{
	for (size_t i = 0; i < k; i++) {
		if (model_unpend(m, ns[i])) {
			model_ev(m, ns[i])->state = (uint8_t)state;
			(*counter)++;
		}
	}
}

/* One entry of a settle request as the spool sees it: the acked list first,
 * then the rejected one.  n is 0 for a sequence that is not pending. */
struct settle_item {
	uint64_t n;
	bool reject;
	int status;
	uint32_t rpad;
};

/* Applies a settle request to the model.  A settle that failed with -ENOSPC
 * may still have committed part of it: the spool splits the combined list
 * (acks, then rejects) in halves, in order, and stops at the first part that
 * does not fit, so what it applied is a prefix of the list.  That prefix is
 * rebuilt here from *settled (entries that are not pending, or were settled
 * earlier in the list, count nothing); model_check() then compares every
 * record, so a spool that applied anything else fails there.  Any other
 * outcome must have applied all (rc 0) or nothing. */
static void apply_settle(struct model *m, const struct settle_item *it, size_t k, int rc,
                         uint64_t settled, const char *what)
{
	uint64_t applied = 0;
	MCHECK(m, rc == 0 || rc == -ENOSPC || settled == 0,
	       "%s = %d (%s) but reports %" PRIu64 " settled", what, rc, spool_strerror(rc),
	       settled);
	for (size_t i = 0; i < k && (rc == 0 || applied < settled); i++) {
		if (it[i].n == 0 || model_ev(m, it[i].n)->state != EV_PENDING)
			continue; /* the spool skips it too */
		if (it[i].reject) {
			model_to_dead(m, it[i].n, it[i].status, it[i].rpad);
		} else {
			model_unpend(m, it[i].n);
			model_ev(m, it[i].n)->state = EV_ACKED;
			m->acked++;
		}
		applied++;
	}
	MCHECK(m, applied == settled,
	       "%s (rc %d) reports %" PRIu64 " settled, model applies %" PRIu64, what, rc, settled,
	       applied);
	if (rc != 0 && settled)
		model_note(m, "%" PRIu64 " settled before the failure", settled);
}

void op_ack(struct model *m, bool discard)
{
	size_t want_k = (size_t)model_rand(m, 1, 40);
	bool bogus = model_chance(m, 25);
	uint64_t extra = ops_bogus_seq(m);
	bool dup = model_chance(m, 10);
	model_op(m, "%s k=%zu%s%s", discard ? "discard" : "ack", want_k, bogus ? " +bogus" : "",
	         dup ? " +dup" : "");
	if (!ops_ensure(m))
		return;
	uint64_t seqs[48], ns[48];
	size_t k = ops_pick_pending(m, want_k, seqs, ns);
	size_t real = k;
	if (bogus)
		seqs[k++] = extra;
	if (dup && real)
		seqs[k++] = seqs[0];
	uint64_t done = 99;
	int rc = discard ? spool_discard(m->s, seqs, k, &done) : spool_ack(m->s, seqs, k, &done);
	if (rc != 0 && !discard) {
		/* an ack is a settle: on a full disk part of it may be done */
		MCHECK(m, m->full && ops_full_error(rc), "ack = %d (%s)", rc, spool_strerror(rc));
		model_note(m, "rc %d (%s)", rc, spool_strerror(rc));
		struct settle_item it[48];
		for (size_t i = 0; i < k; i++)
			it[i] = (struct settle_item){i < real ? ns[i] : 0, false, 0, 0};
		apply_settle(m, it, k, rc, done, "ack");
		return;
	}
	if (rc != 0) {
		MCHECK(m, m->full && ops_full_error(rc), "%s = %d (%s)",
		       discard ? "discard" : "ack", rc, spool_strerror(rc));
		model_note(m, "rc %d (%s)", rc, spool_strerror(rc));
		return;
	}
	MCHECK(m, done == real, "%s of %zu pending (+%zu others) reports %" PRIu64,
	       discard ? "discard" : "ack", real, k - real, done);
	apply_acks(m, ns, real, discard ? &m->evicted : &m->acked,
	           discard ? EV_DISCARDED : EV_ACKED);
}

static int pick_status(struct model *m)
{
	static const int st[] = {400, 404, 409, 413, 422, 451, SPOOL_ECORRUPT};
	return st[model_rand(m, 0, 6)];
}

/* Acks and rejects in one call; sometimes the same record in both lists
 * (the ack wins: acks are applied first). */
void op_settle(struct model *m)
{
	size_t na = (size_t)model_rand(m, 0, 10), nr = (size_t)model_rand(m, 1, 4);
	bool overlap = model_chance(m, 15);
	model_op(m, "settle acks=%zu rejects=%zu%s", na, nr, overlap ? " overlapping" : "");
	if (!ops_ensure(m))
		return;
	uint64_t seqs[16], ns[16];
	size_t k = ops_pick_pending(m, na + nr, seqs, ns);
	size_t ka = k < na ? k : na, kr = k - ka;
	struct spool_reject rej[8];
	char reasons[8][1400];
	int status[8];
	uint32_t rpad[8];
	uint64_t rn[8];
	for (size_t i = 0; i < kr + (overlap && ka ? 1 : 0); i++) {
		bool ov = i == kr; /* the overlapping one rejects an acked record */
		rn[i] = ov ? ns[0] : ns[ka + i];
		status[i] = pick_status(m);
		rpad[i] = model_chance(m, 10) ? 1100 : (uint32_t)model_rand(m, 0, 40);
		model_reason(rn[i], status[i], rpad[i], reasons[i], sizeof(reasons[i]));
		rej[i] = (struct spool_reject){ov ? seqs[0] : seqs[ka + i], status[i], reasons[i]};
	}
	size_t nrej = kr + (overlap && ka ? 1 : 0);
	uint64_t settled = 99;
	int rc = spool_settle(m->s, seqs, ka, rej, nrej, &settled);
	if (rc != 0) {
		MCHECK(m, m->full && ops_full_error(rc), "settle = %d (%s)", rc,
		       spool_strerror(rc));
		model_note(m, "rc %d (%s)", rc, spool_strerror(rc));
	} else {
		MCHECK(m, settled == ka + kr, "settle of %zu acks and %zu rejects reports %" PRIu64,
		       ka, kr, settled);
	}
	struct settle_item it[16];
	for (size_t i = 0; i < ka; i++)
		it[i] = (struct settle_item){ns[i], false, 0, 0};
	for (size_t i = 0; i < nrej; i++)
		it[ka + i] = (struct settle_item){rn[i], true, status[i], rpad[i]};
	apply_settle(m, it, ka + nrej, rc, settled, "settle");
}

void op_dead_letter(struct model *m)
{
	bool real = model_chance(m, 85);
	uint64_t bogus = ops_bogus_seq(m);
	int status = pick_status(m);
	uint32_t rpad = model_chance(m, 10) ? 1100 : (uint32_t)model_rand(m, 0, 40);
	model_op(m, "dead_letter%s status=%d", real ? "" : " (not pending)", status);
	if (!ops_ensure(m))
		return;
	uint64_t seq, n = 0;
	if (!real || ops_pick_pending(m, 1, &seq, &n) == 0) {
		real = false;
		seq = bogus;
	}
	char reason[1400];
	model_reason(n, status, rpad, reason, sizeof(reason));
	int rc = spool_dead_letter(m->s, seq, status, reason);
	if (!real) {
		MCHECK(m, rc == SPOOL_ENOTFOUND || (m->full && ops_full_error(rc)),
		       "dead_letter(seq %" PRIu64 ", not pending) = %d (%s)", seq, rc,
		       spool_strerror(rc));
		return;
	}
	if (rc != 0) {
		MCHECK(m, m->full && ops_full_error(rc), "dead_letter = %d (%s)", rc,
		       spool_strerror(rc));
		model_note(m, "rc %d (%s)", rc, spool_strerror(rc));
		return;
	}
	model_to_dead(m, n, status, rpad);
}

/* ---- dead letters ---- */

static size_t pick_dead(struct model *m, size_t k, uint64_t *seqs, uint64_t *ns)
{
	uint64_t start = model_rand(m, 0, 1u << 30);
	if (k > m->ndead)
		k = m->ndead;
	size_t got = 0;
	for (size_t i = 0; i < k; i++) {
		size_t at = (size_t)(start + i * 3) % m->ndead;
		bool dup = false;
		for (size_t j = 0; j < got; j++)
			dup |= ns[j] == m->dead[at];
		if (dup)
			continue;
		ns[got] = m->dead[at];
		seqs[got++] = model_ev(m, m->dead[at])->seq;
	}
	return got;
}

void op_dead_retry(struct model *m, bool purge)
{
	bool all = model_chance(m, 25);
	size_t want_k = (size_t)model_rand(m, 1, 8);
	bool bogus = model_chance(m, 25);
	uint64_t extra = ops_bogus_seq(m);
	bool dup = model_chance(m, 15);
	model_op(m, "dead_%s %s%s", purge ? "purge" : "retry", all ? "all" : "some",
	         bogus ? " +bogus" : "");
	if (!ops_ensure(m))
		return;
	uint64_t seqs[16], ns[16];
	size_t k = all ? 0 : pick_dead(m, want_k, seqs, ns), real = k;
	if (!all && bogus)
		seqs[k++] = extra;
	if (!all && dup && real)
		seqs[k++] = seqs[real - 1];
	if (all) {
		real = m->ndead < 16 ? m->ndead : 16;
		if (m->ndead > 16)
			all = false, k = real = pick_dead(m, 16, seqs, ns); /* keep it bounded */
		else
			for (size_t i = 0; i < real; i++)
				ns[i] = m->dead[i];
	}
	uint64_t done = 99;
	int rc = purge ? spool_dead_purge(m->s, all ? NULL : seqs, all ? 0 : k, all, &done)
	               : spool_dead_retry(m->s, all ? NULL : seqs, all ? 0 : k, all, &done);
	if (rc != 0) {
		MCHECK(m, m->full && ops_full_error(rc), "dead_%s = %d (%s)",
		       purge ? "purge" : "retry", rc, spool_strerror(rc));
		model_note(m, "rc %d (%s)", rc, spool_strerror(rc));
		return;
	}
	MCHECK(m, done == real, "dead_%s of %zu dead letters reports %" PRIu64,
	       purge ? "purge" : "retry", real, done);
	if (purge) {
		for (size_t i = 0; i < real; i++) {
			model_undead(m, ns[i]);
			model_ev(m, ns[i])->state = EV_PURGED;
		}
		return;
	}
	/* back into the queue under new sequences, in the order of their old
	 * ones, all in one transaction: a source that must deliver at once */
	int src = model_new_source(m, SRC_RETRY, SPOOL_SYNC);
	struct msrc *s = &m->src[src];
	uint64_t *order = calloc(real + 1, sizeof(*order));
	size_t no = 0;
	for (size_t i = 0; i < m->ndead; i++)
		for (size_t j = 0; j < real; j++)
			if (m->dead[i] == ns[j])
				order[no++] = ns[j];
	s->q = order;
	s->cap = real + 1;
	s->len = s->promised = s->required = no;
	s->finalize = true;
	for (size_t i = 0; i < no; i++) {
		model_undead(m, order[i]);
		struct mev *e = model_ev(m, order[i]);
		e->state = EV_STAGED;
		e->src = (uint16_t)src;
		e->group = order[0]; /* one transaction: all or none */
	}
}

/* ---- reading ---- */

/* A window read: exactly the model's records after after_seq, cut by the
 * count and byte limits, except that records a flusher committed after the
 * read began may be missing at its end. */
void op_read(struct model *m)
{
	uint64_t how = model_rand(m, 0, 2);
	uint64_t pick = model_rand(m, 0, 1u << 30);
	size_t max_ev = (size_t)model_rand(m, 0, 25);
	size_t max_b = model_chance(m, 50) ? 0 : (size_t)model_rand(m, 100, 30000);
	model_op(m, "read_batch from=%" PRIu64 " max_events=%zu max_bytes=%zu", how, max_ev, max_b);
	if (!ops_ensure(m))
		return;
	uint64_t after = how == 0 || m->npend == 0 ? 0
	                 : how == 1                ? model_ev(m, m->pend[pick % m->npend])->seq
	                                           : m->next_seq + 3;
	size_t known = m->npend;
	struct spool_batch *b = NULL;
	int rc = spool_read_batch(m->s, after, max_ev, max_b, &b);
	MCHECK(m, rc == 0, "read_batch = %d (%s)", rc, spool_strerror(rc));
	size_t c = spool_batch_count(b);
	const struct spool_record *r = spool_batch_records(b);
	uint64_t *got = malloc((c + 1) * sizeof(*got));
	size_t *lens = malloc((c + 1) * sizeof(*lens));
	for (size_t i = 0; i < c; i++) {
		got[i] = r[i].seq;
		lens[i] = r[i].len;
	}
	spool_batch_release(b);
	model_check(m); /* adopt what committed meanwhile */
	size_t j = 0;
	while (j < m->npend && model_ev(m, m->pend[j])->seq <= after)
		j++;
	size_t want = 0, bytes = 0;
	for (size_t i = j; i < m->npend; i++, want++) {
		if (max_ev && want == max_ev)
			break;
		size_t len = model_ev(m, m->pend[i])->len;
		if (max_b && want > 0 && bytes + len > max_b)
			break;
		bytes += len;
	}
	for (size_t i = 0; i < c; i++) {
		MCHECK(m, j + i < m->npend && model_ev(m, m->pend[j + i])->seq == got[i],
		       "read_batch record %zu: seq %" PRIu64 ", model expects %" PRIu64, i, got[i],
		       j + i < m->npend ? model_ev(m, m->pend[j + i])->seq : 0);
		MCHECK(m, lens[i] == model_ev(m, m->pend[j + i])->len,
		       "read_batch seq %" PRIu64 ": %zu bytes", got[i], lens[i]);
	}
	MCHECK(m, c <= want && (c == want || j + c >= known),
	       "read_batch after %" PRIu64 " (max %zu events, %zu bytes) returned %zu records, "
	       "model expects %zu",
	       after, max_ev, max_b, c, want);
	free(got);
	free(lens);
}

void op_read_dead(struct model *m)
{
	bool from_start = model_chance(m, 50);
	uint64_t pick = model_rand(m, 0, 1u << 30);
	size_t max_ev = (size_t)model_rand(m, 0, 12);
	model_op(m, "read_dead max_events=%zu", max_ev);
	if (!ops_ensure(m))
		return;
	uint64_t after =
	    from_start || m->ndead == 0 ? 0 : model_ev(m, m->dead[pick % m->ndead])->seq;
	struct spool_batch *b = NULL;
	int rc = spool_read_dead(m->s, after, max_ev, &b);
	MCHECK(m, rc == 0, "read_dead = %d (%s)", rc, spool_strerror(rc));
	size_t c = spool_batch_count(b);
	const struct spool_record *r = spool_batch_records(b);
	size_t j = 0;
	while (j < m->ndead && model_ev(m, m->dead[j])->seq <= after)
		j++;
	size_t want = m->ndead - j;
	if (max_ev && want > max_ev)
		want = max_ev;
	bool ok = c == want;
	for (size_t i = 0; ok && i < c; i++)
		ok = r[i].seq == model_ev(m, m->dead[j + i])->seq &&
		     r[i].dead_status == model_ev(m, m->dead[j + i])->dead_status;
	spool_batch_release(b);
	MCHECK(m, ok, "read_dead after %" PRIu64 " max %zu: %zu records, model expects %zu", after,
	       max_ev, c, want);
}

/* ---- sync, close, reopen ---- */

void op_sync(struct model *m)
{
	model_op(m, "sync");
	if (!ops_ensure(m))
		return;
	model_note(m, "%s", tu_mode_label(m->o.durability));
	uint64_t last = 0;
	int rc = spool_sync(m->s, m->full ? 0.05 : 60.0, &last);
	if (rc != 0) {
		MCHECK(m, m->full && (ops_full_error(rc) || rc == -ETIMEDOUT), "sync = %d (%s)", rc,
		       spool_strerror(rc));
		model_note(m, "rc %d (%s)", rc, spool_strerror(rc));
		return;
	}
	struct msrc *s = &m->src[m->hsrc];
	s->required = s->len;
	model_check(m);
	/* the handle committed each of these under its first sequence; one
	 * that was dead-lettered and retried since has a new one, which the
	 * retry committed, not the handle */
	uint64_t want = 0;
	for (size_t i = 0; i < s->head; i++) {
		const struct mev *e = model_ev(m, s->q[i]);
		if (e->seq0 > want)
			want = e->seq0;
	}
	MCHECK(m, last == want,
	       "sync: last_seq %" PRIu64 ", highest committed by the handle %" PRIu64, last, want);
}

void op_reopen(struct model *m)
{
	bool overlap = model_chance(m, 35);
	enum spool_durability mode = ops_pick_mode(m);
	model_op(m, "close and reopen %s%s", tu_mode_label(mode),
	         overlap ? " (new handle first)" : "");
	struct spool *old = m->s;
	int old_src = m->hsrc;
	if (old && overlap) {
		m->s = NULL;
		if (!ops_open(m, mode)) {
			m->s = old;
			m->hsrc = old_src;
			return;
		}
		int rc = spool_close(old);
		ops_handle_closed(m, old_src, rc);
		return;
	}
	ops_close_current(m);
	ops_open(m, mode);
}
