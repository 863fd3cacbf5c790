/* model.h — the in-memory model that the model-based spool test compares
 * the real spool against after every step.
 *
 * Every event the test ever tries to append gets a number n (1, 2, ...) and
 * an entry in the event table; its payload is rebuilt from (n, pad) when a
 * record has to be compared byte for byte.  Records that were appended but
 * not yet seen committed wait in "sources": one ordered queue per producer
 * (the test's own handle, one per killed child, one per dead-letter retry).
 * A committed record must always be the head of its source's queue, so each
 * producer's order is kept while producers interleave.  What a source must
 * have delivered by a given point (the durability promise) is its
 * `required` mark; losing records before that mark fails the test. */
#ifndef MODEL_H
#define MODEL_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <spool/spool.h>

/* Life of one event in the model. */
enum ev_state {
	EV_PLANNED = 0, /* a child may append it; not started yet */
	EV_INFLIGHT,    /* an append was running when its process died: either way */
	EV_STAGED,      /* append returned 0; not seen committed yet */
	EV_PENDING,     /* committed, in `events` */
	EV_DEAD,        /* in `dead` */
	EV_ACKED,
	EV_DISCARDED, /* spool_discard or evicted by the full policy */
	EV_PURGED,    /* dead letter deleted for good */
	EV_NEVER,     /* its append failed or never ran: must never show up */
	EV_LOST_OK,   /* buffered mode lost it with a crash or a failed close, as documented */
};

struct mev {
	uint8_t state;
	uint8_t sev;
	uint16_t src;   /* source index */
	uint32_t pad;   /* payload padding; the payload is rebuilt from (n, pad) */
	uint32_t len;   /* payload bytes */
	uint64_t group; /* n of the first event of its append_many call, 0 for single */
	uint64_t seq;   /* while pending or dead */
	uint64_t seq0;  /* its first sequence, as its producer committed it (a retry moves seq) */
	int64_t enq_us; /* enqueue time as first seen; must never change */
	int dead_status;
	uint32_t reason_pad; /* dead reason is rebuilt from (n, status, reason_pad) */
};

enum src_kind { SRC_HANDLE, SRC_CHILD, SRC_RETRY };

struct msrc {
	int kind;
	enum spool_durability mode;
	uint64_t *q; /* event numbers in append order */
	size_t len, cap;
	size_t head;       /* q[0..head) were seen committed */
	size_t required;   /* q[0..required) must have been seen by now */
	size_t check_head; /* head when the last check began */
	size_t promised;   /* q[0..promised) were reported appended */
	bool open;         /* more may still be committed */
	bool lossy;        /* unseen STAGED entries may be lost when it closes (buffered) */
	bool dead_ring;    /* a commit ring whose process is gone, not yet recovered */
	bool finalize;     /* close the source after the next check */
};

#define MODEL_LOG     24
#define MODEL_MAX_SRC 4096

struct model {
	uint64_t seed;
	uint64_t rng;
	unsigned step;
	char op[256]; /* what the current step does, for the failure report */
	char log[MODEL_LOG][320];
	unsigned nlog;

	struct mev *ev; /* ev[n - 1] */
	uint64_t nev, cap_ev;
	uint64_t *pend; /* event numbers in `events`, in sequence order */
	size_t npend, cap_pend;
	uint64_t *dead; /* event numbers in `dead`, in sequence order */
	size_t ndead, cap_dead;
	struct msrc *src;
	size_t nsrc;

	/* counters as spool_stats must show them */
	uint64_t next_seq;
	uint64_t appended, acked, dead_total, evicted;
	uint64_t dropped_lo, dropped_hi; /* exact outside a full disk */
	uint64_t torn_lo, torn_hi;       /* a killed commit-mode producer may tear one entry */

	/* the real spool */
	char base[PATH_MAX]; /* test directory (or tmpfs mount) */
	char dir[PATH_MAX];  /* the spool */
	char filler[PATH_MAX];
	bool tmpfs;
	bool full;          /* the filler is eating the disk */
	unsigned full_left; /* steps until the disk is freed again */
	struct spool *s;
	struct spool_options o;
	int hsrc;            /* source of s, -1 when closed */
	unsigned dead_rings; /* commit-mode rings of dead producers not yet recovered */

	/* figures */
	const char *figfile; /* one line per round is appended there */
	uint64_t f_events, f_lost, f_dups, f_crashes, f_window_lost, f_full, f_checks;
	uint64_t f_skip_full;
};

/* ---- model.c ---- */
void model_init(struct model *m, uint64_t seed);
void model_free(struct model *m);
/* Logs the step's operation (printf style) into the ring of recent steps. */
void model_op(struct model *m, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Adds a note to the current step's log line. */
void model_note(struct model *m, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Appends this round's figures to m->figfile. */
void model_save_figures(const struct model *m);
/* Reports a mismatch (seed, step, operation, recent steps) and fails the test. */
void model_fail(struct model *m, const char *fmt, ...)
    __attribute__((format(printf, 2, 3), noreturn));
#define MCHECK(m, cond, ...)                                                                       \
	do {                                                                                       \
		if (!(cond))                                                                       \
			model_fail((m), __VA_ARGS__);                                              \
	} while (0)

uint64_t model_rand(struct model *m, uint64_t lo, uint64_t hi);
bool model_chance(struct model *m, unsigned percent);

struct mev *model_ev(struct model *m, uint64_t n);
/* A new event (state EV_PLANNED) in source src; returns its n. */
uint64_t model_new_event(struct model *m, int src, int sev, uint32_t pad, uint64_t group);
int model_new_source(struct model *m, int kind, enum spool_durability mode);
/* The payload of event n (malloc'd into *data, *len). */
void model_payload(const struct model *m, uint64_t n, unsigned char **data, size_t *len);
/* The dead reason text for event n (into buf). */
void model_reason(uint64_t n, int status, uint32_t reason_pad, char *buf, size_t len);
uint64_t model_pending_bytes(const struct model *m);

/* Removes event n from pending; 0 if it was not there. */
bool model_unpend(struct model *m, uint64_t n);
/* Pending event to dead (keeps its seq). */
void model_to_dead(struct model *m, uint64_t n, int status, uint32_t reason_pad);
bool model_undead(struct model *m, uint64_t n);

/* Marks everything a source still holds unseen as final: STAGED entries of a
 * lossy source become EV_LOST_OK (counted as dropped when count_dropped),
 * anything else EV_NEVER.  STAGED entries of a non-lossy source fail the
 * test.  Returns the number of entries made EV_LOST_OK. */
uint64_t model_close_source(struct model *m, int src, bool count_dropped);

/* Reads the spool and compares it with the model: pending records (order,
 * sequence, bytes, enqueue time), dead letters, the statistics and
 * spool_verify(); records that sources committed since the last check are
 * adopted in their producers' order, and every source must have delivered
 * what it promised.  Sources marked `finalize` are closed afterwards. */
void model_check(struct model *m);
/* Number of entries of source src seen committed in the last check. */
uint64_t model_last_seen(const struct model *m, int src);

#endif
