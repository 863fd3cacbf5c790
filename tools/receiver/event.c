/* event.c - validation of one event object against PROTOCOL.md. */
#include "event.h"

#include <stdio.h>
#include <string.h>


static int crockford_value(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'z')
		c = (char)(c - 'a' + 'A');
	if (c < 'A' || c > 'Z')
		return -1;
	/* Crockford's alphabet: 0-9 then A-Z without I, L, O, U. */
	static const signed char letters[26] = {
		10, 11, 12, 13, 14, 15, 16, 17, -1, 18, 19, -1, 20,
		21, -1, 22, 23, 24, 25, 26, -1, 27, 28, 29, 30, 31,
	};
	return letters[c - 'A'];
}

int ulid_decode(const char *s, size_t len, struct dedup_key *key)
{
	if (len != 26)
		return -1;
	uint64_t hi = 0, lo = 0;
	for (size_t i = 0; i < 26; i++) {
		int v = crockford_value(s[i]);
		if (v < 0)
			return -1;
		if (i == 0 && v > 7)
			return -1;
		/* Shift the 128-bit value left by 5 and add v. */
		hi = (hi << 5) | (lo >> 59);
		lo = (lo << 5) | (uint64_t)v;
	}
	key->hi = hi;
	key->lo = lo;
	return 0;
}

static bool digits(const char *s, size_t n, int *value)
{
	int v = 0;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		v = v * 10 + (s[i] - '0');
	}
	*value = v;
	return true;
}

static int days_in_month(int year, int month)
{
	static const int days[12] = { 31, 28, 31, 30, 31, 30,
				      31, 31, 30, 31, 30, 31 };
	if (month == 2) {
		bool leap = (year % 4 == 0 && year % 100 != 0) ||
			    year % 400 == 0;
		return leap ? 29 : 28;
	}
	return days[month - 1];
}

bool rfc3339_utc_valid(const char *s, size_t len)
{
	int year, month, day, hour, minute, second;
	/* "YYYY-MM-DDTHH:MM:SS" is 19 characters; at least "Z" follows. */
	if (len < 20)
		return false;
	if (!digits(s, 4, &year) || s[4] != '-' ||
	    !digits(s + 5, 2, &month) || s[7] != '-' ||
	    !digits(s + 8, 2, &day) || (s[10] != 'T' && s[10] != 't') ||
	    !digits(s + 11, 2, &hour) || s[13] != ':' ||
	    !digits(s + 14, 2, &minute) || s[16] != ':' ||
	    !digits(s + 17, 2, &second))
		return false;
	if (month < 1 || month > 12 || day < 1 ||
	    day > days_in_month(year, month) || hour > 23 || minute > 59 ||
	    second > 60)
		return false;

	size_t i = 19;
	if (s[i] == '.') {
		size_t start = ++i;
		while (i < len && s[i] >= '0' && s[i] <= '9')
			i++;
		if (i == start || i - start > 9)
			return false;
	}
	if (i + 1 == len && (s[i] == 'Z' || s[i] == 'z'))
		return true;
	return i + 6 == len && memcmp(s + i, "+00:00", 6) == 0;
}

static bool severity_valid(const char *s, size_t len)
{
	static const char *const names[] = { "debug", "info", "warn",
					     "error", "fatal" };
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (strlen(names[i]) == len && memcmp(s, names[i], len) == 0)
			return true;
	return false;
}

int event_fast_check(const struct jevent *ev, struct dedup_key *key)
{
	const struct jfield *f = ev->f;
	if (ev->type != J_OBJECT)
		return -1;
	for (int i = 0; i < F_COUNT; i++)
		if (f[i].count > 1)
			return -1;
	if (f[F_MESSAGE].type != J_STRING)
		return -1;
	const struct jfield *sev = &f[F_SEVERITY];
	if (sev->type != J_NONE &&
	    (sev->type != J_STRING || (sev->flags & JF_ESCAPED) ||
	     !severity_valid(sev->raw, sev->len)))
		return -1;
	if (f[F_TITLE].type != J_NONE && f[F_TITLE].type != J_STRING)
		return -1;
	if (f[F_TAGS].type != J_NONE &&
	    (f[F_TAGS].type != J_ARRAY || !(f[F_TAGS].flags & JF_ALL_STRINGS)))
		return -1;
	/* A non-negative JSON integer token is > 0 unless it is "0" (no
	 * leading zeros in JSON); the scanner refused any beyond int64. */
	const struct jfield *ttl = &f[F_TTL];
	if (ttl->type != J_NONE &&
	    (ttl->type != J_NUMBER || !(ttl->flags & JF_INTEGER) ||
	     (ttl->flags & JF_NEGATIVE) || (ttl->len == 1 && ttl->raw[0] == '0')))
		return -1;
	if (f[F_METADATA].type != J_NONE && f[F_METADATA].type != J_OBJECT)
		return -1;
	const struct jfield *id = &f[F_CLIENT_EVENT_ID];
	if (id->type != J_STRING || (id->flags & JF_ESCAPED) ||
	    ulid_decode(id->raw, id->len, key))
		return -1;
	const struct jfield *ts = &f[F_TIMESTAMP];
	if (ts->type != J_STRING || (ts->flags & JF_ESCAPED) ||
	    !rfc3339_utc_valid(ts->raw, ts->len))
		return -1;
	return 0;
}

#define FAIL(...)                                          \
	do {                                               \
		snprintf(detail, detail_len, __VA_ARGS__); \
		return -1;                                 \
	} while (0)

int event_validate(const json_t *ev, struct dedup_key *key, char *detail,
		   size_t detail_len)
{
	const json_t *v;

	if (!json_is_object(ev))
		FAIL("event: must be a JSON object");

	v = json_object_get(ev, "message");
	if (!v)
		FAIL("message: field required");
	if (!json_is_string(v))
		FAIL("message: must be a string");

	v = json_object_get(ev, "severity");
	if (v) {
		if (!json_is_string(v))
			FAIL("severity: must be a string");
		if (!severity_valid(json_string_value(v), json_string_length(v)))
			FAIL("severity: must be one of debug, info, warn, "
			     "error, fatal");
	}

	v = json_object_get(ev, "title");
	if (v && !json_is_string(v))
		FAIL("title: must be a string");

	v = json_object_get(ev, "tags");
	if (v) {
		size_t i;
		const json_t *tag;
		if (!json_is_array(v))
			FAIL("tags: must be an array of strings");
		json_array_foreach(v, i, tag)
		{
			if (!json_is_string(tag))
				FAIL("tags: item %zu must be a string", i);
		}
	}

	v = json_object_get(ev, "ttl_seconds");
	if (v && (!json_is_integer(v) || json_integer_value(v) <= 0))
		FAIL("ttl_seconds: must be an integer > 0");

	v = json_object_get(ev, "metadata");
	if (v && !json_is_object(v))
		FAIL("metadata: must be an object");

	v = json_object_get(ev, "client_event_id");
	if (!v)
		FAIL("client_event_id: field required");
	if (!json_is_string(v))
		FAIL("client_event_id: must be a string");
	if (ulid_decode(json_string_value(v), json_string_length(v), key))
		FAIL("client_event_id: must be a 26-character Crockford "
		     "base32 ULID");

	v = json_object_get(ev, "timestamp");
	if (!v)
		FAIL("timestamp: field required");
	if (!json_is_string(v))
		FAIL("timestamp: must be a string");
	if (!rfc3339_utc_valid(json_string_value(v), json_string_length(v)))
		FAIL("timestamp: must be an RFC 3339 UTC date-time such as "
		     "2026-11-24T14:29:21.123456Z");
	return 0;
}
