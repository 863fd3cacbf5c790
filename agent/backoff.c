/* backoff.c — exponential backoff with full jitter. */
#include <math.h>

#include "backoff.h"

void backoff_init(struct backoff *b, double initial, double max, double multiplier, bool jitter,
		  uint64_t seed)
{
	b->initial = initial;
	b->max = max;
	b->multiplier = multiplier;
	b->jitter = jitter;
	b->failures = 0;
	b->rng = seed ? seed : 0x9e3779b97f4a7c15ull;
}

static double uniform01(struct backoff *b)
{
	uint64_t x = b->rng;
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	b->rng = x;
	return (double)(x >> 11) / 9007199254740992.0;
}

double backoff_next(struct backoff *b)
{
	if (b->failures < 1000)
		b->failures++;
	double d = b->initial * pow(b->multiplier, (double)(b->failures - 1));
	if (!(d < b->max))
		d = b->max;
	return b->jitter ? d * uniform01(b) : d;
}

void backoff_reset(struct backoff *b)
{
	b->failures = 0;
}
