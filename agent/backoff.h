/* backoff.h — exponential backoff with full jitter, capped. */
#ifndef AGENT_BACKOFF_H
#define AGENT_BACKOFF_H

#include <stdbool.h>
#include <stdint.h>

struct backoff {
	double initial, max, multiplier;
	bool jitter;
	unsigned failures; /* consecutive */
	uint64_t rng;	   /* xorshift state */
};

void backoff_init(struct backoff *b, double initial, double max, double multiplier, bool jitter,
		  uint64_t seed);
/* Counts one more failure and returns the wait before the next try:
 * min(max, initial * multiplier^(failures-1)), or a uniform random time from
 * 0 to that with jitter. */
double backoff_next(struct backoff *b);
void backoff_reset(struct backoff *b);

#endif
