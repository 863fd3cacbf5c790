/* window.c — send windows: parsing "HH:MM[:SS]-HH:MM[:SS][Z]" and finding
 * whether a moment falls in one, and when that changes. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "window.h"

#define DAY 86400

/* ---- parsing ---- */

/* An entry as a message may show it: without the blanks around it, at
 * most 40 characters, control characters as '?'. */
static const char *shown(const char *s, char *buf, size_t len)
{
	size_t n = 0;
	s += strspn(s, " \t");
	size_t end = strlen(s);
	while (end && (s[end - 1] == ' ' || s[end - 1] == '\t'))
		end--;
	for (; n < end && n < 40 && n + 4 < len; n++)
		buf[n] = iscntrl((unsigned char)s[n]) ? '?' : s[n];
	if (n < end && n + 4 <= len) {
		memcpy(buf + n, "...", 3);
		n += 3;
	}
	buf[n] = '\0';
	return buf;
}

#define SHOWN(s) shown((s), (char[48]){0}, 48)

static const char FORM[] = "expected HH:MM-HH:MM (seconds optional, a trailing Z for UTC)";

/* "HH:MM" or "HH:MM:SS" at *pp, hours of one or two digits, the rest of
 * two.  0 with *secs set and *pp moved past it, or -1 with why set. */
static int parse_time(const char **pp, bool is_end, int32_t *secs, const char *entry, char *why,
		      size_t wl)
{
	const char *p = *pp;
	int v[3] = {0, 0, 0}, nf = 0;
	for (;;) {
		int digits = 0, x = 0;
		while (digits < 3 && isdigit((unsigned char)p[digits]))
			x = x * 10 + (p[digits++] - '0');
		if (digits < 1 || digits > 2 || (nf > 0 && digits != 2))
			break;
		v[nf++] = x;
		p += digits;
		if (nf == 3 || *p != ':')
			break;
		p++;
	}
	if (nf < 2) {
		snprintf(why, wl, "'%s' is not a window: %s", SHOWN(entry), FORM);
		return -1;
	}
	if (v[0] == 24 && v[1] == 0 && v[2] == 0 && !is_end) {
		snprintf(why, wl, "'%s': 24:00 may only end a window", SHOWN(entry));
		return -1;
	}
	if (v[0] > 23 && !(v[0] == 24 && v[1] == 0 && v[2] == 0)) {
		snprintf(why, wl, "'%s': hour %d is out of range (0 to 23; 24:00 may end a window)",
			 SHOWN(entry), v[0]);
		return -1;
	}
	if (v[1] > 59 || v[2] > 59) {
		snprintf(why, wl, "'%s': %s %d is out of range (0 to 59)", SHOWN(entry),
			 v[1] > 59 ? "minute" : "second", v[1] > 59 ? v[1] : v[2]);
		return -1;
	}
	*secs = v[0] * 3600 + v[1] * 60 + v[2];
	*pp = p;
	return 0;
}

static bool is_z(char c)
{
	return c == 'Z' || c == 'z';
}

static int parse_one(const char *entry, struct window *w, char *why, size_t wl)
{
	const char *p = entry + strspn(entry, " \t");
	if (parse_time(&p, false, &w->start, entry, why, wl))
		return -1;
	bool start_z = is_z(*p);
	p += start_z;
	p += strspn(p, " \t");
	if (*p != '-') {
		if (*p)
			snprintf(why, wl, "'%s' is not a window: %s", SHOWN(entry), FORM);
		else
			snprintf(why, wl, "'%s' has no end: %s", SHOWN(entry), FORM);
		return -1;
	}
	p++;
	p += strspn(p, " \t");
	if (parse_time(&p, true, &w->end, entry, why, wl))
		return -1;
	w->utc = is_z(*p);
	p += w->utc;
	p += strspn(p, " \t");
	if (*p) {
		snprintf(why, wl, "'%s' is not a window: %s", SHOWN(entry), FORM);
		return -1;
	}
	if (start_z && !w->utc) {
		snprintf(why, wl, "'%s' mixes UTC and local time: put one Z at the end",
			 SHOWN(entry));
		return -1;
	}
	if (w->start == w->end) {
		snprintf(why, wl, "'%s' is an empty window: it starts and ends at the same time",
			 SHOWN(entry));
		return -1;
	}
	return 0;
}

int window_parse(const char *const *items, size_t n, struct window_set *out, char *why,
		 size_t whylen)
{
	out->n = 0;
	if (n > WINDOW_MAX) {
		snprintf(why, whylen, "%zu send windows: at most %d", n, WINDOW_MAX);
		return -EINVAL;
	}
	for (size_t i = 0; i < n; i++) {
		if (!items[i] || parse_one(items[i], &out->w[i], why, whylen)) {
			if (!items[i])
				snprintf(why, whylen, "send window %zu is missing", i + 1);
			out->n = 0;
			return -EINVAL;
		}
	}
	out->n = n;
	return 0;
}

/* ---- when ---- */

struct span {
	time_t a, b; /* [a, b) */
};

static int span_cmp(const void *x, const void *y)
{
	const struct span *p = x, *q = y;
	return p->a < q->a ? -1 : p->a > q->a;
}

/* Local midnight of `day` plus k days, plus secs (mktime normalises: 24:00
 * is the next midnight; a time the clock skips lands after the gap). */
static time_t local_at(const struct tm *day, int k, int32_t secs)
{
	struct tm tm = {
		.tm_year = day->tm_year,
		.tm_mon = day->tm_mon,
		.tm_mday = day->tm_mday + k,
		.tm_hour = secs / 3600,
		.tm_min = secs / 60 % 60,
		.tm_sec = secs % 60,
		.tm_isdst = -1,
	};
	return mktime(&tm);
}

/* Days around t that are looked at: from the day before (a window that runs
 * past midnight into t's day) to three days after. */
#define FIRST_DAY (-1)
#define LAST_DAY  3

bool window_open_at(const struct window_set *w, time_t t, time_t *until, time_t *next_open)
{
	time_t dummy;
	until = until ? until : &dummy;
	next_open = next_open ? next_open : &dummy;
	*until = *next_open = 0;
	if (w->n == 0)
		return true;

	struct span s[WINDOW_MAX * (LAST_DAY - FIRST_DAY + 1)];
	size_t n = 0;
	struct tm today;
	bool have_local = localtime_r(&t, &today) != NULL;
	time_t utc_day = t - ((t % DAY) + DAY) % DAY;
	for (size_t i = 0; i < w->n; i++) {
		const struct window *x = &w->w[i];
		int over = x->end > x->start ? 0 : 1; /* the end is on the next day */
		for (int k = FIRST_DAY; k <= LAST_DAY; k++) {
			time_t a, b;
			if (x->utc) {
				a = utc_day + (time_t)k * DAY + x->start;
				b = utc_day + (time_t)(k + over) * DAY + x->end;
			} else {
				if (!have_local)
					continue;
				a = local_at(&today, k, x->start);
				b = local_at(&today, k + over, x->end);
				if (a == (time_t)-1 || b == (time_t)-1)
					continue;
			}
			if (b > a) /* a window inside a skipped hour is not there that day */
				s[n++] = (struct span){a, b};
		}
	}
	if (n == 0) /* no local time at all: nothing can be said to be open */
		return false;
	qsort(s, n, sizeof(s[0]), span_cmp);
	/* merge what overlaps or touches, then look for t */
	size_t m = 0;
	for (size_t i = 1; i < n; i++) {
		if (s[i].a <= s[m].b) {
			if (s[i].b > s[m].b)
				s[m].b = s[i].b;
		} else {
			s[++m] = s[i];
		}
	}
	n = m + 1;
	for (size_t i = 0; i < n; i++) {
		if (s[i].a <= t && t < s[i].b) {
			/* open for days on both sides: the windows cover the day */
			bool always = s[i].a <= t - DAY && s[i].b >= t + 2 * DAY;
			*until = always ? 0 : s[i].b;
			return true;
		}
		if (s[i].a > t) {
			*next_open = s[i].a;
			return false;
		}
	}
	return false; /* not reached: every window recurs within the days looked at */
}

void window_when(time_t at, time_t now, char *buf, size_t len)
{
	struct tm tm;
	char when[64] = "?";
	if (localtime_r(&at, &tm))
		strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S %Z", &tm);
	long long d = (long long)(at - now), min = (d + 59) / 60;
	if (d <= 0)
		snprintf(buf, len, "%s (now)", when);
	else if (d < 60)
		snprintf(buf, len, "%s (in %lld s)", when, d);
	else if (min < 120)
		snprintf(buf, len, "%s (in %lld min)", when, min);
	else
		snprintf(buf, len, "%s (in %lld h %lld min)", when, min / 60, min % 60);
}
