/* dedup.c - two-generation open-addressing hash set (see dedup.h). */
#include "dedup.h"

#include <errno.h>
#include <stdlib.h>

#define DEDUP_DEFAULT_MAX 1000000u
#define DEDUP_INITIAL_SLOTS 4096u

struct slot {
	struct dedup_key key;
	uint64_t value; /* 0 = empty, DEDUP_FORGOTTEN = key kept for probing but absent */
};

#define DEDUP_FORGOTTEN UINT64_MAX

struct table {
	struct slot *slots;
	size_t mask; /* slot count - 1; slot count is a power of two */
	size_t count;
};

struct dedup {
	struct table cur;
	struct table old;
	size_t max_per_gen;
};

static uint64_t key_hash(struct dedup_key k)
{
	/* splitmix64 finaliser over both halves */
	uint64_t x = k.hi ^ (k.lo * 0x9e3779b97f4a7c15ull);
	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ull;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebull;
	x ^= x >> 31;
	return x;
}

static int table_init(struct table *t, size_t slots)
{
	t->slots = calloc(slots, sizeof(*t->slots));
	if (!t->slots)
		return -ENOMEM;
	t->mask = slots - 1;
	t->count = 0;
	return 0;
}

static void table_free(struct table *t)
{
	free(t->slots);
	t->slots = NULL;
	t->mask = 0;
	t->count = 0;
}

/* Returns the slot holding `key`, or the empty slot where it belongs. */
static struct slot *table_find(const struct table *t, struct dedup_key key)
{
	size_t i = (size_t)key_hash(key) & t->mask;
	for (;;) {
		struct slot *s = &t->slots[i];
		if (s->value == 0 ||
		    (s->key.hi == key.hi && s->key.lo == key.lo))
			return s;
		i = (i + 1) & t->mask;
	}
}

static int table_grow(struct table *t)
{
	struct table bigger;
	int rc = table_init(&bigger, (t->mask + 1) * 2);
	if (rc)
		return rc;
	for (size_t i = 0; i <= t->mask; i++) {
		struct slot *s = &t->slots[i];
		if (s->value == 0)
			continue;
		*table_find(&bigger, s->key) = *s;
		bigger.count++;
	}
	table_free(t);
	*t = bigger;
	return 0;
}

int dedup_create(size_t max_per_gen, struct dedup **out)
{
	struct dedup *d = calloc(1, sizeof(*d));
	if (!d)
		goto fail;
	d->max_per_gen = max_per_gen ? max_per_gen : DEDUP_DEFAULT_MAX;
	if (table_init(&d->cur, DEDUP_INITIAL_SLOTS))
		goto fail;
	*out = d;
	return 0;
fail:
	free(d);
	return -ENOMEM;
}

void dedup_destroy(struct dedup *d)
{
	if (!d)
		return;
	table_free(&d->cur);
	table_free(&d->old);
	free(d);
}

int dedup_lookup_or_insert(struct dedup *d, struct dedup_key key,
			   uint64_t value, uint64_t *existing)
{
	struct slot *s = table_find(&d->cur, key);
	if (s->value == DEDUP_FORGOTTEN) {
		s->value = value; /* the slot already holds this key */
		return 0;
	}
	if (s->value) {
		*existing = s->value;
		return 1;
	}
	if (d->old.slots) {
		struct slot *o = table_find(&d->old, key);
		if (o->value && o->value != DEDUP_FORGOTTEN) {
			*existing = o->value;
			return 1;
		}
	}

	if (d->cur.count >= d->max_per_gen) {
		/* Rotate: forget the oldest generation. */
		struct table fresh;
		if (table_init(&fresh, DEDUP_INITIAL_SLOTS))
			return -ENOMEM;
		table_free(&d->old);
		d->old = d->cur;
		d->cur = fresh;
		s = table_find(&d->cur, key);
	} else if ((d->cur.count + 1) * 2 > d->cur.mask + 1) {
		/* Keep the load factor at or under one half. */
		if (table_grow(&d->cur))
			return -ENOMEM;
		s = table_find(&d->cur, key);
	}
	s->key = key;
	s->value = value;
	d->cur.count++;
	return 0;
}

void dedup_forget(struct dedup *d, struct dedup_key key)
{
	struct slot *s = table_find(&d->cur, key);
	if (s->value)
		s->value = DEDUP_FORGOTTEN;
	if (d->old.slots) {
		struct slot *o = table_find(&d->old, key);
		if (o->value)
			o->value = DEDUP_FORGOTTEN;
	}
}

size_t dedup_count(const struct dedup *d)
{
	return d->cur.count + d->old.count;
}
