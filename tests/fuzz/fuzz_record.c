/* fuzz_record.c — the stored-record decoder: spool_rec_check(),
 * spool_msgpack_check_map() and spool_dead_decode() (libspool/queue/record.c,
 * record.h), against the codec's JSON encoder (libspool/codec/json.h).
 *
 * The input is used three ways:
 *   1. as a raw stored value (header checks, CRC, dead-letter decoding);
 *   2. as a msgpack payload wrapped in a header with a correct CRC, so the
 *      map check is reached every time: spool_rec_check() must then agree
 *      with spool_msgpack_check_map();
 *   3. differentially against the JSON encoder: spool_event_to_json()
 *      accepts exactly the inputs spool_msgpack_check_map() accepts (both
 *      mean "exactly one well-formed msgpack map").
 * Any disagreement aborts. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec/json.h"
#include "record.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fail(const char *what, const char *why)
{
	fprintf(stderr, "fuzz_record: %s (%s)\n", what, why ? why : "no reason");
	abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *why = NULL;

	/* 1. raw stored value */
	int raw = spool_rec_check(data, size, &why);
	if (raw != 0 && raw != -1)
		fail("spool_rec_check returned neither 0 nor -1", why);
	if (raw != 0 && !why)
		fail("spool_rec_check failed without a reason", NULL);

	struct spool_record rec;
	memset(&rec, 0, sizeof(rec));
	if (spool_dead_decode(data, size, &rec) == 0) {
		/* the reason and record must lie inside the value */
		const char *lo = (const char *)data, *hi = lo + size;
		if (rec.dead_reason < lo || rec.dead_reason >= hi ||
		    rec.dead_reason + strlen(rec.dead_reason) >= hi)
			fail("dead reason outside the value", NULL);
		if ((const char *)rec.data < lo || (const char *)rec.data + rec.len > hi)
			fail("dead record outside the value", NULL);
	}

	/* 2. payload behind a sound header */
	why = NULL;
	int map = spool_msgpack_check_map(data, size, &why);
	if (map != 0 && map != -1)
		fail("spool_msgpack_check_map returned neither 0 nor -1", why);
	if (map != 0 && !why)
		fail("spool_msgpack_check_map failed without a reason", NULL);
	unsigned char *stored = malloc(SPOOL_REC_HDR + size);
	if (!stored)
		return 0;
	spool_rec_header(stored, (int)(size % SPOOL_NSEV), (int64_t)size * 1000, data, size);
	if (size)
		memcpy(stored + SPOOL_REC_HDR, data, size);
	why = NULL;
	int wrapped = spool_rec_check(stored, SPOOL_REC_HDR + size, &why);
	if (wrapped != map)
		fail("spool_rec_check disagrees with spool_msgpack_check_map on a sound header", why);

	/* the same record as a dead letter must decode back to it */
	static const char reason[] = "fuzz";
	size_t dlen = spool_dead_encode_size(sizeof(reason) - 1, SPOOL_REC_HDR + size);
	unsigned char *dead = malloc(dlen);
	if (dead) {
		spool_dead_encode(dead, 422, 7, reason, sizeof(reason) - 1, stored, SPOOL_REC_HDR + size);
		memset(&rec, 0, sizeof(rec));
		if (spool_dead_decode(dead, dlen, &rec) != 0)
			fail("spool_dead_decode refused what spool_dead_encode wrote", NULL);
		if (rec.dead_status != 422 || strcmp(rec.dead_reason, reason) != 0)
			fail("dead letter round trip lost status or reason", NULL);
		if (map == 0 && (rec.severity != (int)(size % SPOOL_NSEV) || rec.len != size ||
				 (size && memcmp(rec.data, data, size) != 0)))
			fail("dead letter round trip changed a sound record", NULL);
		if (map != 0 && rec.severity != -1)
			fail("dead letter of an unsound record decoded as sound", NULL);
		free(dead);
	}
	free(stored);

	/* 3. the JSON encoder accepts exactly the same inputs */
	struct spool_buf out = {0};
	int js = spool_event_to_json(data, size, NULL, &out);
	if ((js == 0) != (map == 0)) {
		fprintf(stderr, "fuzz_record: check_map %d (%s), event_to_json %d\n", map,
			map ? why : "ok", js);
		fail("spool_msgpack_check_map and spool_event_to_json disagree", NULL);
	}
	spool_buf_free(&out);
	return 0;
}
