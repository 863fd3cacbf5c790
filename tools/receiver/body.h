/* body.h - growable byte buffer and capped gzip inflation. */
#ifndef MLOG_RECEIVER_BODY_H
#define MLOG_RECEIVER_BODY_H

#include <stdarg.h>
#include <stddef.h>

struct buf {
	char *data;
	size_t len;
	size_t cap;
};

/* Makes room for `extra` more bytes.  Returns 0 or -ENOMEM. */
int buf_reserve(struct buf *b, size_t extra);
int buf_append(struct buf *b, const void *data, size_t len);
int buf_append_str(struct buf *b, const char *s);
/* NULL-safe; leaves *b empty. */
void buf_free(struct buf *b);

/* Inflates a gzip stream (concatenated members allowed) into *out.
 * Returns 0; -EFBIG when the output would exceed `cap` bytes; -EINVAL when
 * the input is not valid gzip (including a truncated stream); -ENOMEM. */
int body_gunzip(const char *in, size_t len, size_t cap, struct buf *out);

#endif
