/* handle.h — the spool handle of the public API (spool.c), which admin.c
 * uses too.  Floor 8: spool.c calls stage.c, write.c, read.c, txn.c,
 * env.c, fork.c, record.c, util.c. */
#ifndef SPOOL_QUEUE_HANDLE_H
#define SPOOL_QUEUE_HANDLE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "admit.h"
#include "env.h"
#include "fork.h"
#include "stage.h"

#define SPOOL_META_KEY_MAX 255
#define SPOOL_META_VAL_MAX (64 * 1024)

struct spool {
	struct spool_fork_node fork_node; /* first: a child keeps the whole handle reachable */
	struct spool_env *env;
	pid_t pid;
	char *dir;
	struct spool_options opt;
	struct spool_limits lim_enforce; /* sync mode */
	struct spool_limits lim_staged;  /* commit/buffered flusher */
	struct spool_stage *stage;       /* NULL in sync mode */
	_Atomic uint64_t last_seq;       /* sync mode: highest seq this handle committed */
	int agent_fd;                    /* agent lock, -1 when not held */
};

/* Whether s was opened by another process (this one is its forked child). */
bool spool_forked(const struct spool *s);

#endif
