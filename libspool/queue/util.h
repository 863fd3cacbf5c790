/* util.h — small helpers: time, byte order, directories, errors (util.c).
 * Floor 0: calls nothing else of the queue. */
#ifndef SPOOL_QUEUE_UTIL_H
#define SPOOL_QUEUE_UTIL_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#include "spool/spool.h"

#define SPOOL_NSEV 5 /* severities debug..fatal (SPOOL_SEV_*) */

int64_t spool_now_us(void);                               /* CLOCK_REALTIME */
int64_t spool_mono_ns(void);                              /* CLOCK_MONOTONIC */
void spool_deadline(struct timespec *ts, double seconds); /* CLOCK_MONOTONIC absolute */
void spool_put_be64(unsigned char *p, uint64_t v);
uint64_t spool_get_be64(const unsigned char *p);
void spool_put_le64(unsigned char *p, uint64_t v);
uint64_t spool_get_le64(const unsigned char *p);
void spool_put_le32(unsigned char *p, uint32_t v);
uint32_t spool_get_le32(const unsigned char *p);
int spool_mkdirs(const char *path, mode_t mode);
void spool_errf(char *buf, size_t len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
int spool_map_mdb_error(int rc); /* LMDB code -> spool code */
uint64_t spool_random64(void);
/* Raises *v to `to` unless it is already higher (threads finish their
 * commits in any order). */
void spool_atomic_raise(_Atomic uint64_t *v, uint64_t to);

#endif
