/* record.h — the stored record format and its checks (record.c).
 * Floor 1: calls util.c. */
#ifndef SPOOL_QUEUE_RECORD_H
#define SPOOL_QUEUE_RECORD_H

#include <stddef.h>
#include <stdint.h>

#include "spool/spool.h"
#include "util.h"

#define SPOOL_FORMAT_VERSION 1
#define SPOOL_REC_HDR        16   /* bytes of the fixed record header */
#define SPOOL_REASON_MAX     1024 /* dead-letter reason bytes kept */

/* The stored record:
 * byte 0      format version (1)
 * byte 1      severity
 * bytes 2-3   flags (0)
 * bytes 4-7   CRC-32 (zlib) of bytes 0-3 with the CRC field zero, 8-15, and the payload
 * bytes 8-15  enqueue time, microseconds since the epoch, little-endian
 * then        the msgpack event */
void spool_rec_header(unsigned char hdr[SPOOL_REC_HDR], int severity, int64_t enqueue_us,
		      const void *data, size_t len);
/* 0 if the stored value is a sound record; otherwise -1 with a reason (a
 * static string). */
int spool_rec_check(const void *val, size_t len, const char **reason);
/* Validates that data holds exactly one msgpack map; 0 or -1 with reason. */
int spool_msgpack_check_map(const void *data, size_t len, const char **reason);

/* Dead-letter value: status (i32 LE), dead time (i64 LE), reason length
 * (u16 LE), 2 zero bytes, reason bytes, NUL, then the stored record. */
size_t spool_dead_encode_size(size_t reason_len, size_t rec_len);
void spool_dead_encode(unsigned char *out, int status, int64_t dead_us, const char *reason,
		       size_t reason_len, const void *rec, size_t rec_len);
int spool_dead_decode(const void *val, size_t len, struct spool_record *out);

#endif
