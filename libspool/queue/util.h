/* util.h — small helpers: time, byte order, directories, errors (util.c).
 * Floor 0: calls nothing else of the queue. */
#ifndef SPOOL_QUEUE_UTIL_H
#define SPOOL_QUEUE_UTIL_H

#include <endian.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/types.h>
#include <time.h>

#include "spool/spool.h"

#define SPOOL_NSEV 5 /* severities debug..fatal (SPOOL_SEV_*) */

int64_t spool_now_us(void);                               /* CLOCK_REALTIME */
int64_t spool_mono_ns(void);                              /* CLOCK_MONOTONIC */
void spool_deadline(struct timespec *ts, double seconds); /* CLOCK_MONOTONIC absolute */

/* Byte order of keys (big-endian, so LMDB's byte order is sequence order)
 * and record headers (little-endian), at any alignment.  Inline: the reader
 * calls them for every record. */
static inline void spool_put_be64(unsigned char *p, uint64_t v)
{
	v = htobe64(v);
	memcpy(p, &v, sizeof(v));
}

static inline uint64_t spool_get_be64(const unsigned char *p)
{
	uint64_t v;
	memcpy(&v, p, sizeof(v));
	return be64toh(v);
}

static inline void spool_put_le64(unsigned char *p, uint64_t v)
{
	v = htole64(v);
	memcpy(p, &v, sizeof(v));
}

static inline uint64_t spool_get_le64(const unsigned char *p)
{
	uint64_t v;
	memcpy(&v, p, sizeof(v));
	return le64toh(v);
}

static inline void spool_put_le32(unsigned char *p, uint32_t v)
{
	v = htole32(v);
	memcpy(p, &v, sizeof(v));
}

static inline uint32_t spool_get_le32(const unsigned char *p)
{
	uint32_t v;
	memcpy(&v, p, sizeof(v));
	return le32toh(v);
}

int spool_mkdirs(const char *path, mode_t mode);
/* A shared spool is a directory that is setgid and writable by its group
 * (the system spool, 2770 root:master-log): every file in it is made 0660
 * and every directory 2770, whatever the umask, so each member of the group
 * can log and the agent can drain.  Any other spool is private: 0600 files,
 * 0700 directories. */
bool spool_dir_shared(const char *dir);
mode_t spool_file_mode(const char *dir);
/* Opens path with flags; when it is missing, creates it with exactly
 * `mode` (umask notwithstanding): a group-readable mode is given under a
 * temporary name and the file then linked into place, so no other process
 * ever opens it with fewer rights.  Returns the descriptor or -errno. */
int spool_open_create(const char *path, int flags, mode_t mode);
/* mkdir(path) with exactly `mode` for a shared one (made aside, then
 * renamed into place); 0 if it exists already, or -errno. */
int spool_mkdir_mode(const char *path, mode_t mode);
/* Gives the file of fd exactly `mode` when its creator (this process) could
 * not because of the umask; 0 or -errno. */
int spool_fix_mode(int fd, mode_t mode);
void spool_errf(char *buf, size_t len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
int spool_map_mdb_error(int rc); /* LMDB code -> spool code */
uint64_t spool_random64(void);
/* Raises *v to `to` unless it is already higher (threads finish their
 * commits in any order). */
void spool_atomic_raise(_Atomic uint64_t *v, uint64_t to);

#endif
