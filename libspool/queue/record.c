/* record.c — the stored record format and its checks. */
#include <string.h>
#include <libdeflate.h>

#include "record.h"
#include "util.h"

static uint32_t rec_crc(const unsigned char hdr[SPOOL_REC_HDR], const void *data, size_t len)
{
	/* the CRC-32 of zlib (IEEE 802.3, reflected), computed by libdeflate,
	 * which uses the carry-less multiply instructions where the CPU has
	 * them: the same values as zlib's crc32(), several times faster */
	uint32_t crc = libdeflate_crc32(0, hdr, 4);
	crc = libdeflate_crc32(crc, hdr + 8, 8);
	return libdeflate_crc32(crc, data, len);
}

void spool_rec_header(unsigned char hdr[SPOOL_REC_HDR], int severity, int64_t enqueue_us,
		      const void *data, size_t len)
{
	hdr[0] = SPOOL_FORMAT_VERSION;
	hdr[1] = (unsigned char)severity;
	hdr[2] = 0;
	hdr[3] = 0;
	spool_put_le64(hdr + 8, (uint64_t)enqueue_us);
	spool_put_le32(hdr + 4, rec_crc(hdr, data, len));
}

int spool_rec_check(const void *val, size_t len, const char **reason)
{
	const unsigned char *p = val;
	if (len < SPOOL_REC_HDR) {
		*reason = "record shorter than its header";
		return -1;
	}
	if (p[0] != SPOOL_FORMAT_VERSION) {
		*reason = "record has an unknown format version";
		return -1;
	}
	if (p[1] >= SPOOL_NSEV) {
		*reason = "record has an invalid severity";
		return -1;
	}
	if (spool_get_le32(p + 4) != rec_crc(p, p + SPOOL_REC_HDR, len - SPOOL_REC_HDR)) {
		*reason = "record checksum mismatch";
		return -1;
	}
	return spool_msgpack_check_map(p + SPOOL_REC_HDR, len - SPOOL_REC_HDR, reason);
}

/* Bytes of the length field (0 when the length is in the tag) and the
 * payload kind of msgpack tag b.  kind: 0 scalar of fixed size `fixed`,
 * 1 string/binary with a length, 2 ext with a length, 3 array, 4 map, -1
 * invalid. */
struct mp_tag {
	int kind;
	unsigned lenbytes;
	size_t fixed; /* scalar size, or count/length when in the tag */
};

static struct mp_tag mp_classify(unsigned char b)
{
	if (b <= 0x7f || b >= 0xe0)
		return (struct mp_tag){0, 0, 0};
	if (b <= 0x8f)
		return (struct mp_tag){4, 0, b & 0x0fu};
	if (b <= 0x9f)
		return (struct mp_tag){3, 0, b & 0x0fu};
	if (b <= 0xbf)
		return (struct mp_tag){1, 0, b & 0x1fu};
	switch (b) {
	case 0xc0: case 0xc2: case 0xc3:
		return (struct mp_tag){0, 0, 0};
	case 0xc4: return (struct mp_tag){1, 1, 0};
	case 0xc5: return (struct mp_tag){1, 2, 0};
	case 0xc6: return (struct mp_tag){1, 4, 0};
	case 0xc7: return (struct mp_tag){2, 1, 0};
	case 0xc8: return (struct mp_tag){2, 2, 0};
	case 0xc9: return (struct mp_tag){2, 4, 0};
	case 0xca: return (struct mp_tag){0, 0, 4};
	case 0xcb: return (struct mp_tag){0, 0, 8};
	case 0xcc: case 0xd0: return (struct mp_tag){0, 0, 1};
	case 0xcd: case 0xd1: return (struct mp_tag){0, 0, 2};
	case 0xce: case 0xd2: return (struct mp_tag){0, 0, 4};
	case 0xcf: case 0xd3: return (struct mp_tag){0, 0, 8};
	case 0xd4: return (struct mp_tag){0, 0, 2};
	case 0xd5: return (struct mp_tag){0, 0, 3};
	case 0xd6: return (struct mp_tag){0, 0, 5};
	case 0xd7: return (struct mp_tag){0, 0, 9};
	case 0xd8: return (struct mp_tag){0, 0, 17};
	case 0xd9: return (struct mp_tag){1, 1, 0};
	case 0xda: return (struct mp_tag){1, 2, 0};
	case 0xdb: return (struct mp_tag){1, 4, 0};
	case 0xdc: return (struct mp_tag){3, 2, 0};
	case 0xdd: return (struct mp_tag){3, 4, 0};
	case 0xde: return (struct mp_tag){4, 2, 0};
	case 0xdf: return (struct mp_tag){4, 4, 0};
	default: return (struct mp_tag){-1, 0, 0}; /* 0xc1 is never used */
	}
}

int spool_msgpack_check_map(const void *data, size_t len, const char **reason)
{
	const unsigned char *p = data;
	size_t pos = 0;
	size_t pending = 1; /* objects still to read */
	if (len == 0 || mp_classify(p[0]).kind != 4) {
		*reason = "event is not a msgpack map";
		return -1;
	}
	while (pending > 0) {
		if (pos >= len) {
			*reason = "msgpack event truncated";
			return -1;
		}
		unsigned char tag = p[pos++];
		if (tag >= 0xa0 && tag <= 0xbf) {
			/* the common short string, without the general path */
			size_t sl = tag & 0x1fu;
			if (sl > len - pos) {
				*reason = "msgpack event truncated";
				return -1;
			}
			pos += sl;
			pending--;
			continue;
		}
		struct mp_tag t = mp_classify(tag);
		if (t.kind < 0) {
			*reason = "msgpack event holds an invalid type byte";
			return -1;
		}
		size_t n = t.fixed;
		if (t.lenbytes) {
			if (len - pos < t.lenbytes) {
				*reason = "msgpack event truncated";
				return -1;
			}
			n = 0;
			for (unsigned i = 0; i < t.lenbytes; i++)
				n = (n << 8) | p[pos + i];
			pos += t.lenbytes;
		}
		pending--;
		size_t skip = 0;
		switch (t.kind) {
		case 0: skip = n; break;
		case 1: skip = n; break;
		case 2: skip = n + 1; break; /* type byte, then data */
		case 3:
		case 4: {
			size_t items = t.kind == 4 ? n * 2 : n;
			/* every item takes at least one byte */
			if (items > len - pos || pending > len - pos - items) {
				*reason = "msgpack container larger than the event";
				return -1;
			}
			pending += items;
			break;
		}
		}
		if (skip > len - pos) {
			*reason = "msgpack event truncated";
			return -1;
		}
		pos += skip;
	}
	if (pos != len) {
		*reason = "trailing bytes after the msgpack event";
		return -1;
	}
	return 0;
}

size_t spool_dead_encode_size(size_t reason_len, size_t rec_len)
{
	return 16 + reason_len + 1 + rec_len;
}

void spool_dead_encode(unsigned char *out, int status, int64_t dead_us, const char *reason,
		       size_t reason_len, const void *rec, size_t rec_len)
{
	spool_put_le32(out, (uint32_t)status);
	spool_put_le64(out + 4, (uint64_t)dead_us);
	out[12] = (unsigned char)reason_len;
	out[13] = (unsigned char)(reason_len >> 8);
	out[14] = 0;
	out[15] = 0;
	if (reason_len)
		memcpy(out + 16, reason, reason_len);
	out[16 + reason_len] = '\0';
	if (rec_len)
		memcpy(out + 17 + reason_len, rec, rec_len);
}

int spool_dead_decode(const void *val, size_t len, struct spool_record *out)
{
	const unsigned char *p = val;
	if (len < 17)
		return -1;
	size_t rlen = (size_t)p[12] | (size_t)p[13] << 8;
	if (16 + rlen + 1 > len || p[16 + rlen] != '\0')
		return -1;
	out->dead_status = (int)(int32_t)spool_get_le32(p);
	out->dead_us = (int64_t)spool_get_le64(p + 4);
	out->dead_reason = (const char *)p + 16;
	const unsigned char *rec = p + 17 + rlen;
	size_t reclen = len - 17 - rlen;
	const char *why;
	if (reclen >= SPOOL_REC_HDR && rec[0] == SPOOL_FORMAT_VERSION && rec[1] < SPOOL_NSEV &&
	    spool_rec_check(rec, reclen, &why) == 0) {
		out->severity = rec[1];
		out->enqueue_us = (int64_t)spool_get_le64(rec + 8);
		out->data = rec + SPOOL_REC_HDR;
		out->len = reclen - SPOOL_REC_HDR;
	} else {
		/* a corrupt record: hand back its raw bytes */
		out->severity = -1;
		out->enqueue_us = 0;
		out->data = rec;
		out->len = reclen;
	}
	return 0;
}
