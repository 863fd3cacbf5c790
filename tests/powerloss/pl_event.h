/* pl_event.h — the events the power-loss workload writes, and their check.
 *
 * Spool modes: each event is a msgpack map {"n": <counter>, "pad": <bin>}
 * whose pad bytes follow a pattern of n, so a record that decodes but holds
 * the wrong bytes is caught too.  Raw-LMDB modes: key = 8-byte big-endian n,
 * value = 8-byte little-endian n then the same pattern. */
#ifndef PL_EVENT_H
#define PL_EVENT_H

#include <msgpack.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

static inline unsigned char pl_pad_byte(uint64_t n, size_t j)
{
	return (unsigned char)(n * 31u + j * 7u + 1u);
}

/* Pad length for event n from the workload's random draw r. */
static inline size_t pl_pad_len(uint64_t r)
{
	if (r % 23 == 0)
		return 5000 + (size_t)(r % 4000); /* spans pages: an overflow page */
	return 16 + (size_t)(r % 1400);
}

static inline bool pl_pad_ok(uint64_t n, const unsigned char *p, size_t len)
{
	for (size_t j = 0; j < len; j++)
		if (p[j] != pl_pad_byte(n, j))
			return false;
	return true;
}

/* Decodes a spool event; 0 with *n set, -1 if it is not a sound event. */
static inline int pl_event_decode(const void *data, size_t len, uint64_t *n)
{
	msgpack_unpacked u;
	msgpack_unpacked_init(&u);
	size_t off = 0;
	int rc = -1;
	bool have_n = false, pad_ok = false;
	if (msgpack_unpack_next(&u, data, len, &off) == MSGPACK_UNPACK_SUCCESS && off == len &&
	    u.data.type == MSGPACK_OBJECT_MAP) {
		const msgpack_object_map *m = &u.data.via.map;
		const msgpack_object *pad = NULL;
		for (uint32_t i = 0; i < m->size; i++) {
			const msgpack_object *k = &m->ptr[i].key, *v = &m->ptr[i].val;
			if (k->type != MSGPACK_OBJECT_STR || k->via.str.size == 0)
				continue;
			if (k->via.str.size == 1 && k->via.str.ptr[0] == 'n' &&
			    v->type == MSGPACK_OBJECT_POSITIVE_INTEGER) {
				*n = v->via.u64;
				have_n = true;
			} else if (k->via.str.size == 3 && memcmp(k->via.str.ptr, "pad", 3) == 0 &&
			           v->type == MSGPACK_OBJECT_BIN) {
				pad = v;
			}
		}
		if (have_n && pad)
			pad_ok = pl_pad_ok(*n, (const unsigned char *)pad->via.bin.ptr,
			                   pad->via.bin.size);
		rc = have_n && pad_ok ? 0 : -1;
	}
	msgpack_unpacked_destroy(&u);
	return rc;
}

#endif
