/* harness.h — helpers for the spool-agent tests: temporary spools filled
 * with protocol-valid events, mlog-receiver and spool-agent as real
 * processes over 127.0.0.1, and reading back what the receiver stored.
 * Helpers ck_assert on failure; call them from the Check test process only. */
#ifndef AGENT_TEST_HARNESS_H
#define AGENT_TEST_HARNESS_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <spool/spool.h>

/* A fresh /tmp/agent-test-<tag>-XXXXXX directory (spool in DIR/spool). */
struct th_dir {
	char root[256];
	char spool[300];
	char out[300];	  /* receiver --out */
	char config[300]; /* agent YAML */
	char log[300];	  /* agent stderr */
};
void th_dir_make(struct th_dir *d, const char *tag);
void th_dir_remove(struct th_dir *d);

/* Appends events "msg <first>" .. "msg <first+n-1>" in sync mode.  With
 * poison_every > 0, every poison_every-th message gets the word POISON. */
void th_fill(const char *spool, uint64_t first, uint64_t n, unsigned poison_every);
/* Like th_fill(), each event with the severity sev_of(its number) (in the
 * spool's header and its "severity" field). */
void th_fill_sev(const char *spool, uint64_t first, uint64_t n, int (*sev_of)(uint64_t num));
/* One event with the given message text. */
void th_fill_text(const char *spool, const char *text);
struct spool_stats th_stats(const char *spool);
/* Dead letters: count, and the status/reason of the first. */
size_t th_dead(const char *spool, int *first_status, char *reason, size_t rlen);
/* Meta value as text ("" if absent). */
void th_meta(const char *spool, const char *key, char *buf, size_t len);

/* mlog-receiver on 127.0.0.1 with --port 0; extra flags NULL-terminated. */
struct th_rx {
	pid_t pid;
	int port;
	char url[64];
};
void th_rx_start(struct th_rx *rx, const char *out, ...);
void th_rx_stop(struct th_rx *rx);
/* GET /stats; the caller json_decref()s. */
json_t *th_rx_stats(const struct th_rx *rx);
/* The same for a receiver the caller started itself: GET BASE_URL/stats. */
json_t *th_stats_url(const char *base_url);
long th_rx_stat(const struct th_rx *rx, const char *name);

/* Writes the agent YAML: spool, http.endpoint (and a 10 s
 * http.timeouts.request_seconds unless `extra` sets timeouts), small
 * backoffs, then `extra` (more YAML lines, may be NULL; it may open the
 * `http:` section again, e.g. "http:\n  api_key: K\n": the keys merge). */
void th_config(const struct th_dir *d, const char *endpoint, const char *extra);
/* Runs spool-agent -c d->config with extra args (NULL-terminated), stderr
 * to d->log; waits up to timeout seconds and returns its exit status (or
 * -signal).  */
int th_agent_run(const struct th_dir *d, double timeout, ...);
/* Starts spool-agent in the background. */
pid_t th_agent_start(const struct th_dir *d, ...);
/* The same under a wrapper: wrapper[] (NULL-terminated, e.g. strace and
 * its options) runs spool-agent -c d->config and the extra args. */
pid_t th_agent_start_under(const struct th_dir *d, const char *const *wrapper, ...);
/* Sends sig and waits; returns the exit status (or -signal). */
int th_agent_stop(pid_t pid, int sig, double timeout);
/* true when the file contains the text. */
bool th_file_has(const char *path, const char *text);

/* Events stored by the receiver, in order: the number in "msg <n>" and the
 * spool_seq; returns the count (arrays malloc'd, may be NULL). */
size_t th_read_out(const char *out, long **msgs, long **seqs);
/* Every "msg N" of 1..n but `missing` (0: none) exactly once among msgs, in
 * any order. */
void th_assert_each_once(const long *msgs, size_t got, long n, long missing);
/* The same for a receiver's --out file; returns how many it holds. */
size_t th_assert_out_each_once(const char *out, long n, long missing);

/* For the tests' own small HTTP servers: reads one request from fd, its
 * head into buf (NUL-terminated, cap bytes at most) and its body (by
 * Content-Length) to nowhere.  Returns the head's length, 0 when the
 * connection ended before a whole head. */
size_t th_read_request(int fd, char *buf, size_t cap);

/* Waits until cond(arg) or timeout seconds; returns cond's last value. */
bool th_wait(bool (*cond)(void *arg), void *arg, double timeout);
double th_now(void);
/* Path of a built program from the environment (MLOG_RECEIVER, SPOOL_AGENT). */
const char *th_prog(const char *env);

#endif
