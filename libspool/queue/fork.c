/* fork.c — the process side of fork(): a child must never use what its
 * parent opened (LMDB-NOTES.md, pitfall 8), must not keep the parent's locks
 * alive, and must not start while one of the library's threads is inside
 * LMDB or the allocator.  The objects themselves (environments, handles,
 * rings) live in the files above; each registers a node here and says, in
 * its own in_child, what a child lets go of. */
#include <pthread.h>
#include <stdatomic.h>
#include <unistd.h>

#include "fork.h"

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static struct spool_fork_node *g_nodes;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;
/* getpid() is a system call; the hot path compares against this copy, which
 * the fork handler renews in every child. */
static _Atomic pid_t g_pid;

/* Held shared by the flusher threads while they move records into LMDB, and
 * exclusively around fork(): a child never starts while one of the
 * library's own threads is inside LMDB or the allocator (an allocator
 * whose locks are not fork-aware, such as AddressSanitizer's, would leave
 * the child waiting for ever).  Writers are preferred, so a busy flusher
 * cannot hold fork() off for more than one transfer. */
static pthread_rwlock_t g_fork_rw;
/* What a child inherited and must never touch, kept reachable so leak
 * checkers do not count the parent's objects as lost. */
static struct spool_fork_node *g_old_nodes;

static void fork_rw_init(void)
{
	pthread_rwlockattr_t ra;
	pthread_rwlockattr_init(&ra);
	pthread_rwlockattr_setkind_np(&ra, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
	pthread_rwlock_init(&g_fork_rw, &ra);
	pthread_rwlockattr_destroy(&ra);
}

void spool_fork_guard_enter(void)
{
	pthread_rwlock_rdlock(&g_fork_rw);
}

void spool_fork_guard_leave(void)
{
	pthread_rwlock_unlock(&g_fork_rw);
}

static void atfork_prepare(void)
{
	pthread_rwlock_wrlock(&g_fork_rw);
	pthread_mutex_lock(&g_mu);
}

static void atfork_parent(void)
{
	pthread_mutex_unlock(&g_mu);
	pthread_rwlock_unlock(&g_fork_rw);
}

/* In the child: everything registered belongs to the parent.  Each owner
 * drops the descriptors that carry locks, so a child outliving its parent
 * cannot keep them; the rest is abandoned untouched (closing the LMDB
 * environment here would clear the parent's reader slots). */
static void atfork_child(void)
{
	for (struct spool_fork_node *n = g_nodes; n; n = n->next)
		n->in_child(n);
	if (g_nodes) {
		struct spool_fork_node *last = g_nodes;
		while (last->next)
			last = last->next;
		last->next = g_old_nodes;
		g_old_nodes = g_nodes;
	}
	g_nodes = NULL;
	atomic_store(&g_pid, getpid());
	pthread_mutex_unlock(&g_mu);
	/* not unlocked: glibc knows the write owner by thread id, which
	 * changed in the child; this thread is the child's only one */
	fork_rw_init();
}

static void init_once(void)
{
	fork_rw_init();
	atomic_store(&g_pid, getpid());
	pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
}

pid_t spool_current_pid(void)
{
	pthread_once(&g_once, init_once);
	return atomic_load_explicit(&g_pid, memory_order_relaxed);
}

void spool_fork_lock(void)
{
	pthread_once(&g_once, init_once);
	pthread_mutex_lock(&g_mu);
}

void spool_fork_unlock(void)
{
	pthread_mutex_unlock(&g_mu);
}

void spool_fork_register(struct spool_fork_node *node)
{
	node->next = g_nodes;
	g_nodes = node;
}

void spool_fork_unregister(struct spool_fork_node *node)
{
	for (struct spool_fork_node **pp = &g_nodes; *pp; pp = &(*pp)->next) {
		if (*pp == node) {
			*pp = node->next;
			break;
		}
	}
}
