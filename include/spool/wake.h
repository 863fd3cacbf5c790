/* wake.h — waking the spool's agent without waiting for it.
 *
 * The agent keeps a FIFO named `wake` in the spool directory open for
 * reading (O_RDWR | O_NONBLOCK) and polls it with its flush timeout.  A
 * producer that completed a batch calls spool_wake_agent(): one byte written
 * with O_NONBLOCK, so the call never blocks.  No agent (no reader: ENXIO), a
 * full pipe (EAGAIN: a wake-up is already pending) or no FIFO at all (ENOENT:
 * no agent ever ran) are not errors.
 */
#ifndef SPOOL_WAKE_H
#define SPOOL_WAKE_H

#include <spool/spool.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Name of the FIFO inside the spool directory. */
#define SPOOL_WAKE_NAME "wake"

/* Wakes the agent of the spool directory `dir`.  Returns 0 (including the
 * harmless cases above), -EINVAL for a NULL dir, -ENAMETOOLONG, or another
 * negated errno (e.g. -EACCES). */
SPOOL_API int spool_wake_agent(const char *dir);

/* For agents: creates the FIFO if needed (mode 0600) and opens it
 * O_RDWR | O_NONBLOCK | O_CLOEXEC.  Returns the descriptor, or a negated
 * errno (-EEXIST when `wake` exists and is not a FIFO). */
SPOOL_API int spool_wake_open(const char *dir);

/* For agents: reads and discards every pending wake byte on fd; returns the
 * number of bytes drained. */
SPOOL_API int spool_wake_drain(int fd);

#ifdef __cplusplus
}
#endif
#endif
