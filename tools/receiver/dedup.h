/* dedup.h - bounded set of client_event_ids, each mapped to the server id
 * it was first given.
 *
 * Keys are the 128-bit values of decoded ULIDs.  The set keeps two
 * generations of open-addressing tables: inserts go to the current one, and
 * when it holds `max_per_gen` keys the older generation is dropped and the
 * current one becomes the older.  Memory is therefore bounded, and at least
 * the last `max_per_gen` distinct ids are always remembered.
 *
 * Not thread-safe: the caller serialises access.
 */
#ifndef MLOG_RECEIVER_DEDUP_H
#define MLOG_RECEIVER_DEDUP_H

#include <stddef.h>
#include <stdint.h>

struct dedup;

struct dedup_key {
	uint64_t hi;
	uint64_t lo;
};

/* Creates an empty set.  max_per_gen 0 selects the default (1,000,000).
 * Returns 0 or -ENOMEM. */
int dedup_create(size_t max_per_gen, struct dedup **out);

/* NULL-safe. */
void dedup_destroy(struct dedup *d);

/* Looks `key` up.  If present, stores its value in *value and returns 1.
 * If absent, inserts it with `value` (which must not be 0) and returns 0.
 * Returns -ENOMEM when the table could not grow (the key is not stored). */
int dedup_lookup_or_insert(struct dedup *d, struct dedup_key key,
			   uint64_t value, uint64_t *existing);

/* Makes `key` absent again (after the event it named could not be
 * stored), so that a retry is stored rather than taken for a duplicate. */
void dedup_forget(struct dedup *d, struct dedup_key key);

/* Number of keys currently remembered (both generations). */
size_t dedup_count(const struct dedup *d);

#endif
