/* link_util.h — what the remote-link tests (issue 12) share beyond
 * harness.h: events with incompressible text, the pending events of a spool
 * by number, a check that every event reached the receiver once, the
 * dead letters as `spoolctl dead list --json` shows them, and a private
 * network namespace with a `tc tbf` link on its loopback.
 * Helpers ck_assert on failure, except lk_netns_enter(), which reports. */
#ifndef AGENT_TEST_LINK_UTIL_H
#define AGENT_TEST_LINK_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "harness.h"

/* Writes the agent YAML with nothing but the spool, http.endpoint, debug
 * logs and `extra` (may be NULL): every other key keeps its default, unlike
 * th_config(), which holds the protocol tests to one request at a time. */
void lk_config(const struct th_dir *d, const char *endpoint, const char *extra);

/* Appends events "msg <first>" .. "msg <first+n-1>", each followed by a
 * space and `noise` random base32 characters (0: none), so that gzip cannot
 * shrink a batch to nothing. */
void lk_fill(const char *spool, uint64_t first, uint64_t n, size_t noise);

/* Marks in pending[] (indexed by the number in "msg <n>", size cap) every
 * event still pending in the spool; returns how many it marked.  The
 * agent must not be running. */
size_t lk_pending(const char *spool, char *pending, size_t cap);

/* `spoolctl --spool DIR dead list --json`: the number of dead letters, and
 * the status and the message of the first. */
size_t lk_dead_list(const char *spool, int *status, char *message, size_t len);

/* Runs argv (argv[0] looked up in PATH, then /usr/sbin and /sbin), its
 * stdout and stderr into out (may be NULL); returns the exit status, or 127
 * when it could not run.  Asserts nothing: it may run outside a test. */
int lk_run(const char *const *argv, char *out, size_t len);

/* Enters a private network namespace (a user namespace too when this
 * process may not make one alone, as `unshare -rn` does), in which only
 * `lo` exists, and brings lo up with MTU 1500: tc tbf drops every packet
 * larger than its burst, and lo sends 64 KiB ones otherwise.  Call from
 * main() before any thread or test starts.  Returns 0, or -1 with the
 * reason in why (the caller skips: exit 77). */
int lk_netns_enter(char *why, size_t len);

/* `tc qdisc replace dev lo root tbf rate RATE burst BURST latency LAT`.
 * Returns 0, or -1 with tc's words in why. */
int lk_tbf(const char *rate, const char *burst, const char *latency, char *why, size_t len);

/* Bytes the root qdisc of lo has sent ("Sent N bytes" of tc -s). */
uint64_t lk_qdisc_sent(void);

#endif
