/* fork.h — what fork() must not break (fork.c): the cached pid, the fork
 * guard of the library's own threads, and the registry of what a forked
 * child must let go of.  Floor 0: calls nothing else of the queue. */
#ifndef SPOOL_QUEUE_FORK_H
#define SPOOL_QUEUE_FORK_H

#include <sys/types.h>

/* Something a forked child must let go of (the descriptors that carry
 * locks: ring ownership, the agent lock, users.lock).  The owner embeds the
 * node as the first member of its structure and hands in `in_child`; in the
 * child, fork.c calls in_child(node) for every registered node, with the
 * registry locked (in_child must not take it), then forgets them all: the
 * child never touches the parent's objects again, and keeps them reachable
 * only so that leak checkers do not count them as lost. */
struct spool_fork_node {
	struct spool_fork_node *next;
	void (*in_child)(struct spool_fork_node *node);
};

/* The registry lock.  fork() takes it (so the child never inherits it held
 * half way through a change), which makes it the lock for any list that
 * must be consistent in a child too: env.c keeps its environments under it. */
void spool_fork_lock(void);
void spool_fork_unlock(void);
/* With spool_fork_lock() held. */
void spool_fork_register(struct spool_fork_node *node);
void spool_fork_unregister(struct spool_fork_node *node);

pid_t spool_current_pid(void); /* getpid(), cached and renewed at fork */

/* Around the library's own threads' work in LMDB: fork() waits for it. */
void spool_fork_guard_enter(void);
void spool_fork_guard_leave(void);

#endif
