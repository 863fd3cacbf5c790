/* window.h — send windows: the times of day when the agent may send
 * (`send_windows` in the configuration).  Each window is "HH:MM-HH:MM",
 * seconds optional ("HH:MM:SS"), in local time, or in UTC with a trailing
 * "Z" ("13:30-14:10Z"); "24:00" may end a window; a window whose end comes
 * before its start runs past midnight ("22:00-02:00").  No windows: always
 * open.  No global state; local time is whatever localtime_r() and mktime()
 * say (the TZ variable, /etc/localtime), day by day, so a local window on
 * the day a clock changes is as long as the clock on the wall says.
 *
 *   struct window_set w;
 *   char why[200];
 *   if (window_parse(items, n, &w, why, sizeof(why)) != 0)
 *           ... why names the bad entry
 *   time_t until, next;
 *   if (window_open_at(&w, time(NULL), &until, &next))
 *           ... send, until `until`
 *   else
 *           ... send nothing before `next`
 */
#ifndef AGENT_WINDOW_H
#define AGENT_WINDOW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

/* The most windows one set holds. */
#define WINDOW_MAX 64

struct window {
	int32_t start; /* seconds after midnight, 0 to 86399 */
	int32_t end;   /* 1 to 86400; end < start runs past midnight */
	bool utc;      /* "Z": UTC; else local time */
};

struct window_set {
	struct window w[WINDOW_MAX];
	size_t n; /* 0: always open */
};

/* Parses n entries (leading and trailing blanks ignored) into *out.  0, or
 * -EINVAL with one sentence in why naming the bad entry (out is then
 * empty).  n == 0 gives the empty set: always open. */
int window_parse(const char *const *items, size_t n, struct window_set *out, char *why,
		 size_t whylen);

/* Whether sending is allowed at t.  When open, *until gets the moment it
 * stops being (windows that touch or overlap count as one), or 0 when the
 * set never closes (no windows, or the windows cover the whole day); when
 * closed, *next_open gets the next opening.  The other one gets 0.  Either
 * pointer may be NULL. */
bool window_open_at(const struct window_set *w, time_t t, time_t *until, time_t *next_open);

/* "2025-06-01 13:30:00 CEST (in 42 min)": `at` in local time, and how far
 * it is from `now`, for logs and spoolctl status. */
void window_when(time_t at, time_t now, char *buf, size_t len);

#endif
