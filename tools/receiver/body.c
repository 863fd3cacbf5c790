/* body.c - growable byte buffer and capped gzip inflation. */
#include "body.h"

#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

int buf_reserve(struct buf *b, size_t extra)
{
	if (b->cap - b->len >= extra)
		return 0;
	if (extra > SIZE_MAX / 2 - b->len)
		return -ENOMEM;
	size_t want = b->len + extra;
	size_t cap = b->cap ? b->cap : 256;
	while (cap < want)
		cap *= 2;
	char *p = realloc(b->data, cap);
	if (!p)
		return -ENOMEM;
	b->data = p;
	b->cap = cap;
	return 0;
}

int buf_append(struct buf *b, const void *data, size_t len)
{
	int rc = buf_reserve(b, len);
	if (rc)
		return rc;
	if (len)
		memcpy(b->data + b->len, data, len);
	b->len += len;
	return 0;
}

int buf_append_str(struct buf *b, const char *s)
{
	return buf_append(b, s, strlen(s));
}

void buf_free(struct buf *b)
{
	if (!b)
		return;
	free(b->data);
	b->data = NULL;
	b->len = 0;
	b->cap = 0;
}

int body_gunzip(const char *in, size_t len, size_t cap, struct buf *out)
{
	z_stream zs;
	int rc = 0;

	memset(&zs, 0, sizeof(zs));
	if (inflateInit2(&zs, 16 + MAX_WBITS) != Z_OK)
		return -ENOMEM;

	const unsigned char *next = (const unsigned char *)in;
	size_t left = len;
	int zrc = Z_OK;
	for (;;) {
		/* zlib counts in uInt: feed at most UINT_MAX bytes at a time */
		if (zs.avail_in == 0 && left > 0) {
			zs.next_in = (unsigned char *)(uintptr_t)next;
			zs.avail_in = left > UINT_MAX ? UINT_MAX : (uInt)left;
			next += zs.avail_in;
			left -= zs.avail_in;
		}
		if (out->len >= cap + 1) {
			rc = -EFBIG;
			break;
		}
		/* Never let the output pass cap + 1 bytes. */
		size_t room_wanted = out->len < 65536 ? 65536 : out->len;
		if (room_wanted > cap + 1 - out->len)
			room_wanted = cap + 1 - out->len;
		if (buf_reserve(out, room_wanted)) {
			rc = -ENOMEM;
			break;
		}
		size_t room = out->cap - out->len;
		if (room > cap + 1 - out->len)
			room = cap + 1 - out->len;
		if (room > UINT_MAX)
			room = UINT_MAX;
		zs.next_out = (unsigned char *)out->data + out->len;
		zs.avail_out = (uInt)room;
		zrc = inflate(&zs, Z_NO_FLUSH);
		out->len += room - zs.avail_out;
		if (out->len > cap) {
			rc = -EFBIG;
			break;
		}
		if (zrc == Z_STREAM_END) {
			if (zs.avail_in == 0 && left == 0)
				break;
			/* Another gzip member follows. */
			if (inflateReset(&zs) != Z_OK) {
				rc = -EINVAL;
				break;
			}
			continue;
		}
		if (zrc == Z_BUF_ERROR && zs.avail_in == 0 && left == 0) {
			rc = -EINVAL; /* truncated stream */
			break;
		}
		if (zrc != Z_OK && zrc != Z_BUF_ERROR) {
			rc = zrc == Z_MEM_ERROR ? -ENOMEM : -EINVAL;
			break;
		}
	}
	inflateEnd(&zs);
	return rc;
}
