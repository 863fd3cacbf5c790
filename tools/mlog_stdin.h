/* mlog_stdin.h — `mlog -` (without --sync): one event per line of standard
 * input, committed in groups.
 *
 * The promise (mlog --help, docs/client.md): mlog reads standard input in
 * large chunks and, whenever it has nothing more to give at once (or the
 * group reaches GROUP_MAX_BYTES), appends every line read so far as one
 * group in one LMDB transaction committed with a full sync (the spool's
 * sync durability).  It reads nothing past a group before that group is on
 * disk, so a line is in the spool before mlog reads past the group holding
 * it; at end of input, exit status 0 means every line is in the spool, and
 * a power loss after mlog exits loses none of them.  Killed at any moment,
 * mlog leaves in the spool the lines of the groups it committed: a prefix
 * of the input, in order, without a gap or a duplicate (a line refused and
 * named on standard error is the only hole). */
#ifndef MLOG_STDIN_H
#define MLOG_STDIN_H

#include <spool/mlog.h>

/* Logs each line of descriptor fd (the '\n' removed; a last line without
 * one is logged too) with the options o, through the spool settings of cfg
 * (cfg->durability is ignored: sync).  A line that is refused (over
 * MLOG_MAX_MESSAGE_BYTES, over the spool's limits, a full spool) is named
 * on standard error and the lines after it are still logged.  Returns the
 * exit status of mlog: 0 when every line was spooled; 1 when one was not,
 * when o cannot make an event (bad metadata: refused before any line is
 * read), or the spool cannot be opened; 2 for a bad MASTER_LOG_* value. */
int mlog_stdin_run(int fd, const struct mlog_config *cfg, const struct mlog_opts *o);

#endif
