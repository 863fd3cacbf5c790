/* test_window.c — send windows in-process (agent/window.c): what parses and
 * what is refused with a sentence naming the entry, and whether a moment
 * is in a window and when that changes: UTC windows, windows past
 * midnight, seconds, windows that touch, the whole day, and local windows
 * on the two days a year Europe/Berlin changes its clocks. */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "check_main.h"
#include "window.h"

static time_t utc(int y, int mon, int d, int h, int m, int s)
{
	struct tm tm = {.tm_year = y - 1900,
	                .tm_mon = mon - 1,
	                .tm_mday = d,
	                .tm_hour = h,
	                .tm_min = m,
	                .tm_sec = s};
	return timegm(&tm);
}

static void use_tz(const char *tz)
{
	ck_assert_int_eq(setenv("TZ", tz, 1), 0);
	tzset();
}

/* Parses the entries (ck_asserts success). */
static struct window_set parse(size_t n, const char *const *items)
{
	struct window_set w;
	char why[300] = "";
	int rc = window_parse(items, n, &w, why, sizeof(why));
	ck_assert_msg(rc == 0, "%s: %s", n ? items[0] : "(none)", why);
	ck_assert_uint_eq(w.n, n);
	return w;
}

#define PARSE(...)                                                                                 \
	parse(sizeof((const char *[]){__VA_ARGS__}) / sizeof(const char *),                        \
	      (const char *const[]){__VA_ARGS__})

START_TEST(good_entries)
{
	static const struct {
		const char *text;
		int start, end;
		bool utc;
	} t[] = {
	    {"01:00-05:00", 3600, 18000, false},    {"13:30-14:10Z", 48600, 51000, true},
	    {"22:00-02:00", 79200, 7200, false},    {"08:00:30-08:00:45Z", 28830, 28845, true},
	    {" 1:05 - 2:10 ", 3900, 7800, false},   {"00:00-24:00", 0, 86400, false},
	    {"23:59:59-00:00:01z", 86399, 1, true}, {"13:30Z-14:10Z", 48600, 51000, true},
	};
	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		struct window_set w = PARSE(t[i].text);
		ck_assert_msg(w.w[0].start == t[i].start && w.w[0].end == t[i].end &&
		                  w.w[0].utc == t[i].utc,
		              "%s: %d-%d %d", t[i].text, w.w[0].start, w.w[0].end, w.w[0].utc);
	}
	struct window_set w = PARSE("01:00-05:00", "13:30-14:10Z");
	ck_assert(!w.w[0].utc && w.w[1].utc);
}
END_TEST

START_TEST(bad_entries_named)
{
	static const struct {
		const char *text, *what;
	} t[] = {
	    {"25:00-26:00", "hour 25 is out of range"},
	    {"01:00", "has no end"},
	    {"01:00-01:00", "empty window"},
	    {"01:00:00-01:00Z", "empty window"},
	    {"1-5", "not a window"},
	    {"01:60-02:00", "minute 60 is out of range"},
	    {"01:00-02:00:60", "second 60 is out of range"},
	    {"24:00-02:00", "24:00 may only end a window"},
	    {"01:00-24:01", "hour 24 is out of range"},
	    {"01:00Z-02:00", "mixes UTC and local time"},
	    {"01:00-02:00X", "not a window"},
	    {"001:00-02:00", "not a window"},
	    {"01:0-02:00", "not a window"},
	    {"", "not a window"},
	    {"01:00-", "not a window"},
	    {"01:00-02:00\nX-Injected", "not a window"},
	};
	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		struct window_set w;
		char why[300] = "";
		const char *items[] = {"03:00-04:00", t[i].text};
		int rc = window_parse(items, 2, &w, why, sizeof(why));
		ck_assert_msg(rc == -EINVAL, "'%s' parsed", t[i].text);
		ck_assert_uint_eq(w.n, 0);
		ck_assert_msg(strstr(why, t[i].what), "'%s': %s", t[i].text, why);
		/* one line that shows the entry (up to a control character) */
		ck_assert_msg(!strchr(why, '\n'), "'%s': %s", t[i].text, why);
		char head[40];
		snprintf(head, sizeof(head), "'%.*s", (int)strcspn(t[i].text, "\n"), t[i].text);
		ck_assert_msg(strstr(why, head), "'%s' not named: %s", t[i].text, why);
	}
	/* from the environment, split at commas: shown without the blanks */
	struct window_set w;
	char why[300];
	const char *spaced[] = {" 25:00-26:00 "};
	ck_assert_int_eq(window_parse(spaced, 1, &w, why, sizeof(why)), -EINVAL);
	ck_assert_msg(strncmp(why, "'25:00-26:00': hour 25", 22) == 0, "%s", why);
	/* too many */
	const char *many[WINDOW_MAX + 1];
	for (size_t i = 0; i <= WINDOW_MAX; i++)
		many[i] = "01:00-02:00";
	ck_assert_int_eq(window_parse(many, WINDOW_MAX, &w, why, sizeof(why)), 0);
	ck_assert_int_eq(window_parse(many, WINDOW_MAX + 1, &w, why, sizeof(why)), -EINVAL);
	ck_assert_ptr_nonnull(strstr(why, "at most"));
}
END_TEST

/* open_at, with both answers checked */
static void expect(const struct window_set *w, time_t t, bool open, time_t change, const char *what)
{
	time_t until = 12345, next = 12345;
	bool o = window_open_at(w, t, &until, &next);
	ck_assert_msg(o == open, "%s: %s at %lld", what, o ? "open" : "closed", (long long)t);
	time_t got = open ? until : next, other = open ? next : until;
	ck_assert_msg(got == change, "%s: %s %lld, expected %lld (off by %lld s)", what,
	              open ? "until" : "next_open", (long long)got, (long long)change,
	              (long long)(got - change));
	ck_assert_msg(other == 0, "%s: the other answer is %lld", what, (long long)other);
}

START_TEST(none_is_always_open)
{
	struct window_set w;
	char why[100];
	ck_assert_int_eq(window_parse(NULL, 0, &w, why, sizeof(why)), 0);
	expect(&w, utc(2025, 6, 1, 12, 0, 0), true, 0, "no windows");
	ck_assert(window_open_at(&w, 0, NULL, NULL));
}
END_TEST

START_TEST(utc_windows)
{
	use_tz("Asia/Kathmandu"); /* +05:45: a Z window pays no attention */
	struct window_set w = PARSE("13:30-14:10Z");
	time_t noon = utc(2025, 6, 1, 12, 0, 0);
	expect(&w, noon, false, utc(2025, 6, 1, 13, 30, 0), "before");
	expect(&w, utc(2025, 6, 1, 13, 30, 0), true, utc(2025, 6, 1, 14, 10, 0), "at the start");
	expect(&w, utc(2025, 6, 1, 14, 9, 59), true, utc(2025, 6, 1, 14, 10, 0), "last second");
	expect(&w, utc(2025, 6, 1, 14, 10, 0), false, utc(2025, 6, 2, 13, 30, 0), "at the end");
	/* NULL pointers are fine */
	ck_assert(!window_open_at(&w, noon, NULL, NULL));
}
END_TEST

START_TEST(past_midnight)
{
	use_tz("UTC");
	struct window_set w = PARSE("22:00-02:00Z");
	expect(&w, utc(2025, 6, 1, 23, 0, 0), true, utc(2025, 6, 2, 2, 0, 0), "before midnight");
	expect(&w, utc(2025, 6, 2, 1, 0, 0), true, utc(2025, 6, 2, 2, 0, 0), "after midnight");
	expect(&w, utc(2025, 6, 2, 2, 0, 0), false, utc(2025, 6, 2, 22, 0, 0), "closed");
	expect(&w, utc(2025, 6, 2, 21, 59, 59), false, utc(2025, 6, 2, 22, 0, 0), "just before");
	/* the same in local time */
	w = PARSE("22:00-02:00");
	expect(&w, utc(2025, 12, 31, 23, 30, 0), true, utc(2026, 1, 1, 2, 0, 0), "new year");
	/* a year's end and the first of a month */
	w = PARSE("23:00-01:00Z");
	expect(&w, utc(2025, 2, 28, 23, 30, 0), true, utc(2025, 3, 1, 1, 0, 0), "end of February");
}
END_TEST

START_TEST(seconds)
{
	struct window_set w = PARSE("08:00:30-08:00:45Z");
	expect(&w, utc(2025, 6, 1, 8, 0, 29), false, utc(2025, 6, 1, 8, 0, 30), "a second early");
	expect(&w, utc(2025, 6, 1, 8, 0, 30), true, utc(2025, 6, 1, 8, 0, 45), "open");
	expect(&w, utc(2025, 6, 1, 8, 0, 44), true, utc(2025, 6, 1, 8, 0, 45), "last second");
	expect(&w, utc(2025, 6, 1, 8, 0, 45), false, utc(2025, 6, 2, 8, 0, 30), "closed");
}
END_TEST

START_TEST(several_windows)
{
	use_tz("UTC");
	/* windows that touch count as one; the next of several is the nearest */
	struct window_set w = PARSE("13:00-14:00Z", "01:00-02:00Z", "02:00-03:00");
	expect(&w, utc(2025, 6, 1, 1, 30, 0), true, utc(2025, 6, 1, 3, 0, 0), "touching");
	expect(&w, utc(2025, 6, 1, 3, 0, 0), false, utc(2025, 6, 1, 13, 0, 0), "between");
	expect(&w, utc(2025, 6, 1, 14, 0, 0), false, utc(2025, 6, 2, 1, 0, 0), "after the last");
	/* overlapping */
	w = PARSE("10:00-12:00Z", "11:00-11:30Z", "11:45-12:30Z");
	expect(&w, utc(2025, 6, 1, 10, 0, 0), true, utc(2025, 6, 1, 12, 30, 0), "overlapping");
	/* the whole day: never closes */
	w = PARSE("00:00-24:00Z");
	expect(&w, utc(2025, 6, 1, 23, 59, 59), true, 0, "all day");
	w = PARSE("12:00-00:00Z", "00:00-12:00Z");
	expect(&w, utc(2025, 6, 1, 5, 0, 0), true, 0, "two halves");
	/* everything but a second */
	w = PARSE("00:00:01-24:00Z");
	expect(&w, utc(2025, 6, 1, 5, 0, 0), true, utc(2025, 6, 2, 0, 0, 0), "all but a second");
	expect(&w, utc(2025, 6, 2, 0, 0, 0), false, utc(2025, 6, 2, 0, 0, 1), "the second");
}
END_TEST

/* Europe/Berlin: 2025-03-30 02:00 CET becomes 03:00 CEST (01:00 UTC);
 * 2025-10-26 03:00 CEST becomes 02:00 CET (01:00 UTC).  A day of 86400
 * seconds would be an hour off. */
START_TEST(local_time_across_dst)
{
	use_tz("Europe/Berlin");
	struct window_set w = PARSE("01:00-04:00");
	/* spring: 01:00 CET (00:00Z) to 04:00 CEST (02:00Z): two hours */
	expect(&w, utc(2025, 3, 29, 23, 59, 59), false, utc(2025, 3, 30, 0, 0, 0),
	       "spring, before");
	expect(&w, utc(2025, 3, 30, 0, 30, 0), true, utc(2025, 3, 30, 2, 0, 0), "spring, open");
	expect(&w, utc(2025, 3, 30, 2, 0, 0), false, utc(2025, 3, 30, 23, 0, 0), "spring, after");
	/* autumn: 01:00 CEST (23:00Z the day before) to 04:00 CET (03:00Z):
	 * four hours */
	expect(&w, utc(2025, 10, 25, 22, 0, 0), false, utc(2025, 10, 25, 23, 0, 0),
	       "autumn, before");
	expect(&w, utc(2025, 10, 25, 23, 30, 0), true, utc(2025, 10, 26, 3, 0, 0), "autumn, open");
	expect(&w, utc(2025, 10, 26, 1, 30, 0), true, utc(2025, 10, 26, 3, 0, 0),
	       "autumn, twice 02:30");
	expect(&w, utc(2025, 10, 26, 3, 0, 0), false, utc(2025, 10, 27, 0, 0, 0), "autumn, after");
	/* the next opening is across the change */
	w = PARSE("10:00-11:00");
	expect(&w, utc(2025, 3, 29, 12, 0, 0), false, utc(2025, 3, 30, 8, 0, 0),
	       "spring, next day");
	expect(&w, utc(2025, 10, 25, 12, 0, 0), false, utc(2025, 10, 26, 9, 0, 0),
	       "autumn, next day");
	/* a window past midnight into the change */
	w = PARSE("22:00-06:00");
	expect(&w, utc(2025, 3, 29, 22, 0, 0), true, utc(2025, 3, 30, 4, 0, 0),
	       "spring, overnight");
	expect(&w, utc(2025, 10, 25, 21, 0, 0), true, utc(2025, 10, 26, 5, 0, 0),
	       "autumn, overnight");
	/* UTC windows on that day keep their hours */
	w = PARSE("01:00-04:00Z");
	expect(&w, utc(2025, 3, 30, 1, 30, 0), true, utc(2025, 3, 30, 4, 0, 0), "Z on the day");
}
END_TEST

START_TEST(when_text)
{
	use_tz("UTC");
	char buf[128];
	time_t now = utc(2025, 6, 1, 12, 0, 0);
	window_when(now + 42 * 60, now, buf, sizeof(buf));
	ck_assert_str_eq(buf, "2025-06-01 12:42:00 UTC (in 42 min)");
	window_when(now + 30, now, buf, sizeof(buf));
	ck_assert_str_eq(buf, "2025-06-01 12:00:30 UTC (in 30 s)");
	window_when(now + 3 * 3600 + 60, now, buf, sizeof(buf));
	ck_assert_str_eq(buf, "2025-06-01 15:01:00 UTC (in 3 h 1 min)");
	window_when(now, now, buf, sizeof(buf));
	ck_assert_str_eq(buf, "2025-06-01 12:00:00 UTC (now)");
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("agent-window");
	TCase *tc = tcase_create("window");
	tcase_add_test(tc, good_entries);
	tcase_add_test(tc, bad_entries_named);
	tcase_add_test(tc, none_is_always_open);
	tcase_add_test(tc, utc_windows);
	tcase_add_test(tc, past_midnight);
	tcase_add_test(tc, seconds);
	tcase_add_test(tc, several_windows);
	tcase_add_test(tc, local_time_across_dst);
	tcase_add_test(tc, when_text);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return tc_run(suite());
}
