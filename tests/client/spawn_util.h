/* spawn_util.h — helpers of the tests of the agent the client library
 * starts (test_spawn.c, test_tls.c) and of the other client tests: the
 * mlog-logprog program as a real process, the receiver's output, the
 * spool's agent lock and its pending events.  Helpers
 * ck_assert on failure; call them from the Check test process only. */
#ifndef CLIENT_TEST_SPAWN_UTIL_H
#define CLIENT_TEST_SPAWN_UTIL_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "harness.h"

/* One run of mlog-logprog ($MLOG_LOGPROG). */
struct su_run {
	pid_t pid;
	int status;     /* exit status, or -signal */
	double started; /* th_now() at the start */
	double seconds; /* how long it ran */
	char out_path[400];
	char out[8192]; /* what it printed (stdout and stderr) */
};

/* Unsets every MASTER_LOG_* variable. */
void su_clear_env(void);

/* Starts `mlog-logprog COUNT PREFIX [FLUSH]` (flush may be NULL) with this
 * process's environment; its output goes to DIR/prog-TAG.out. */
void su_logprog_start(struct su_run *r, const struct th_dir *d, const char *tag, const char *count,
                      const char *prefix, const char *flush);
/* Waits for it (killing it after timeout seconds, which fails the test)
 * and reads its output. */
void su_finish(struct su_run *r, double timeout);
/* Both. */
void su_logprog(struct su_run *r, const struct th_dir *d, const char *count, const char *prefix,
                const char *flush);

/* Events in the receiver's --out file. */
size_t su_rx_count(const char *out);
/* Waits until the receiver has stored n events (true) or timeout seconds. */
bool su_wait_rx(const char *out, size_t n, double timeout);

/* The pid of the agent holding the spool's lock, 0 when none. */
long su_agent_pid(const char *spool);
/* Waits until no agent holds the spool's lock. */
bool su_wait_lock_free(const char *spool, double timeout);
/* Stops (SIGTERM) the agent holding the spool's lock, if any, and waits for
 * the lock to be free. */
void su_stop_agent(const char *spool);

/* Writes DIR/agent-wrapper.sh, which appends a line to DIR/agent-starts
 * (its path in count) and runs $SPOOL_AGENT, and names it in
 * MASTER_LOG_AGENT. */
void su_counting_agent(const struct th_dir *d, char *count, size_t len);
/* Lines in a file (0 when it is missing). */
int su_lines(const char *path);

/* Every pending event of the spool as JSON objects, in order (a JSON array
 * the caller decrefs). */
json_t *su_spool_events(const char *spool);

#endif
