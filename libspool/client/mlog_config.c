/* mlog_config.c — the client's settings: one table row per setting (field,
 * variable, type, range, default), resolved as mlog_configure() > the
 * MASTER_LOG_* environment > the default. */
#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "codec/endpoint.h"

#include "mlog_internal.h"

enum stype { S_STR, S_FILE, S_ENDPOINT, S_LONG, S_SECONDS, S_SWITCH, S_DURABILITY, S_BYTES };

struct srow {
	const char *name; /* mlog_config field */
	const char *env;
	enum stype type;
	size_t cfg_off, set_off;
	double min, max;
	const char *def; /* parsed like an environment value; NULL: unset */
};

#define C(f) offsetof(struct mlog_config, f)
#define S(f) offsetof(struct mlog_settings, f)

static const struct srow rows[] = {
    {"api_key", "MASTER_LOG_API_KEY", S_STR, C(api_key), S(api_key), 0, 0, NULL},
    {"endpoint", "MASTER_LOG_ENDPOINT", S_ENDPOINT, C(endpoint), S(endpoint_root), 0, 0, NULL},
    {"batch_size", "MASTER_LOG_BATCH_SIZE", S_LONG, C(batch_size), S(batch_size), 1, 100000, "100"},
    {"flush_interval_seconds", "MASTER_LOG_FLUSH_INTERVAL_SECONDS", S_SECONDS,
     C(flush_interval_seconds), S(flush_interval), 0.001, 86400, "1.0"},
    {"max_queue_size", "MASTER_LOG_MAX_QUEUE_SIZE", S_LONG, C(max_queue_size), S(max_queue_size), 0,
     1e12, "0"},
    {"drop_when_full", "MASTER_LOG_DROP_WHEN_FULL", S_SWITCH, C(drop_when_full), S(drop_when_full),
     0, 0, "true"},
    {"queue_timeout_seconds", "MASTER_LOG_QUEUE_TIMEOUT_SECONDS", S_SECONDS,
     C(queue_timeout_seconds), S(queue_timeout), 0, 3600, "0.25"},
    {"backpressure", "MASTER_LOG_BACKPRESSURE", S_SWITCH, C(backpressure), S(backpressure), 0, 0,
     "true"},
    {"initial_send_seconds_per_log", "MASTER_LOG_INITIAL_SEND_SECONDS_PER_LOG", S_SECONDS,
     C(initial_send_seconds_per_log), S(initial_spe), 0, 60, "0.005"},
    {"max_enqueue_sleep_seconds", "MASTER_LOG_MAX_ENQUEUE_SLEEP_SECONDS", S_SECONDS,
     C(max_enqueue_sleep_seconds), S(max_enqueue_sleep), 0, 60, "0.25"},
    {"min_request_interval_seconds", "MASTER_LOG_MIN_REQUEST_INTERVAL_SECONDS", S_SECONDS,
     C(min_request_interval_seconds), S(min_request_interval), 0, 3600, "0"},
    {"async_mode", "MASTER_LOG_ASYNC", S_SWITCH, C(async_mode), S(async_mode), 0, 0, "true"},
    {"spool_dir", "MASTER_LOG_SPOOL_DIR", S_STR, C(spool_dir), S(spool_dir), 0, 0, NULL},
    {"durability", "MASTER_LOG_DURABILITY", S_DURABILITY, C(durability), S(durability), 0, 0,
     "commit"},
    {"max_spool_bytes", "MASTER_LOG_MAX_SPOOL_BYTES", S_BYTES, C(max_spool_bytes),
     S(max_spool_bytes), 65536, (double)(1ull << 50), "1073741824"},
    {"spawn_agent", "MASTER_LOG_SPAWN_AGENT", S_SWITCH, C(spawn_agent), S(spawn_agent), 0, 0,
     "true"},
    {"ca_file", "MASTER_LOG_CA_FILE", S_FILE, C(ca_file), S(ca_file), 0, 0, NULL},
    {"agent_idle_seconds", "MASTER_LOG_AGENT_IDLE_SECONDS", S_SECONDS, C(agent_idle_seconds),
     S(agent_idle), 1, 86400, "30"},
};

#define NROWS (sizeof(rows) / sizeof(rows[0]))

static int parse_switch(const char *s, bool *out)
{
	static const char *const yes[] = {"true", "yes", "on", "1"}, *const no[] = {"false", "no",
	                                                                            "off", "0"};
	for (size_t i = 0; i < 4; i++) {
		if (strcasecmp(s, yes[i]) == 0)
			return *out = true, 0;
		if (strcasecmp(s, no[i]) == 0)
			return *out = false, 0;
	}
	return -1;
}

/* Parses text (an environment value or a default) into the settings field. */
static int set_text(const struct srow *r, const char *text, struct mlog_settings *st, char *why,
                    size_t wl)
{
	void *dst = (char *)st + r->set_off;
	char *end;
	switch (r->type) {
	case S_STR: {
		char *s = strdup(text);
		if (!s)
			return snprintf(why, wl, "out of memory"), -ENOMEM;
		free(*(char **)dst);
		*(char **)dst = s;
		return 0;
	}
	case S_FILE: {
		/* an existing, readable regular file, kept as an absolute path
		 * (the agent the library starts may run elsewhere) */
		struct stat sb;
		char *abs = realpath(text, NULL);
		if (!abs || stat(abs, &sb) != 0) {
			snprintf(why, wl, "cannot use '%s': %s", text, strerror(errno));
			free(abs);
			return -EINVAL;
		}
		if (!S_ISREG(sb.st_mode) || access(abs, R_OK) != 0) {
			snprintf(why, wl, "'%s' is not a readable regular file", text);
			free(abs);
			return -EINVAL;
		}
		free(*(char **)dst);
		*(char **)dst = abs;
		return 0;
	}
	case S_ENDPOINT: {
		char *root = NULL;
		int rc = spool_endpoint_normalise(text, &root, why, wl);
		if (rc)
			return rc;
		free(*(char **)dst);
		*(char **)dst = root;
		return 0;
	}
	case S_LONG:
	case S_BYTES: {
		errno = 0;
		long long v = strtoll(text, &end, 10);
		if (errno || end == text || *end || (double)v < r->min || (double)v > r->max) {
			snprintf(why, wl, "expected a whole number from %.0f to %.0f, got '%s'",
			         r->min, r->max, text);
			return -EINVAL;
		}
		if (r->type == S_LONG)
			*(long *)dst = (long)v;
		else
			*(uint64_t *)dst = (uint64_t)v;
		return 0;
	}
	case S_SECONDS: {
		errno = 0;
		double v = strtod(text, &end);
		if (errno || end == text || *end || !isfinite(v) || v < r->min || v > r->max) {
			snprintf(why, wl, "expected a number of seconds from %g to %g, got '%s'",
			         r->min, r->max, text);
			return -EINVAL;
		}
		*(double *)dst = v;
		return 0;
	}
	case S_SWITCH:
		if (parse_switch(text, (bool *)dst)) {
			snprintf(why, wl, "expected true or false (yes/no, on/off, 1/0), got '%s'",
			         text);
			return -EINVAL;
		}
		return 0;
	case S_DURABILITY:
		if (spool_durability_parse(text, (enum spool_durability *)dst)) {
			snprintf(why, wl, "expected sync, commit or buffered, got '%s'", text);
			return -EINVAL;
		}
		return 0;
	}
	return -EINVAL;
}

/* The value mlog_configure() gave for the row as text, or NULL when unset.
 * MLOG_NONE becomes "0". */
static const char *cfg_text(const struct srow *r, const struct mlog_config *cfg, char *buf,
                            size_t len)
{
	if (!cfg)
		return NULL;
	const void *src = (const char *)cfg + r->cfg_off;
	switch (r->type) {
	case S_STR:
	case S_FILE:
	case S_ENDPOINT:
	case S_DURABILITY:
		return *(const char *const *)src;
	case S_LONG: {
		long v = *(const long *)src;
		if (v == 0)
			return NULL;
		snprintf(buf, len, "%ld", v == MLOG_NONE ? 0 : v);
		return buf;
	}
	case S_BYTES: {
		int64_t v = *(const int64_t *)src;
		if (v == 0)
			return NULL;
		snprintf(buf, len, "%lld", (long long)(v == MLOG_NONE ? 0 : v));
		return buf;
	}
	case S_SECONDS: {
		double v = *(const double *)src;
		if (v == 0)
			return NULL;
		snprintf(buf, len, "%.17g", v == MLOG_NONE ? 0.0 : v);
		return buf;
	}
	case S_SWITCH: {
		enum mlog_switch v = *(const enum mlog_switch *)src;
		if (v == MLOG_UNSET)
			return NULL;
		return v == MLOG_ON    ? "true"
		       : v == MLOG_OFF ? "false"
		                       : "(not MLOG_ON or MLOG_OFF)";
	}
	}
	return NULL;
}

void mlog_settings_free(struct mlog_settings *s)
{
	if (!s)
		return;
	free(s->api_key);
	free(s->endpoint_root);
	free(s->spool_dir);
	free(s->ca_file);
	memset(s, 0, sizeof(*s));
}

int mlog_settings_resolve(const struct mlog_config *cfg, struct mlog_settings *out, char *err,
                          size_t errlen)
{
	char tmp[64], why[300];
	memset(out, 0, sizeof(*out));
	for (size_t i = 0; i < NROWS; i++) {
		const struct srow *r = &rows[i];
		const char *text = cfg_text(r, cfg, tmp, sizeof(tmp));
		int rc = 0;
		if (text) {
			rc = set_text(r, text, out, why, sizeof(why));
			if (rc) {
				snprintf(err, errlen, "mlog_configure: %s: %s", r->name, why);
				goto fail;
			}
			continue;
		}
		const char *ev = r->env ? getenv(r->env) : NULL;
		if (ev && *ev) {
			rc = set_text(r, ev, out, why, sizeof(why));
			if (rc) {
				snprintf(err, errlen, "environment variable %s: %s", r->env, why);
				goto fail;
			}
			continue;
		}
		if (r->def && (rc = set_text(r, r->def, out, why, sizeof(why))) != 0) {
			snprintf(err, errlen, "default of %s: %s", r->name, why); /* a table bug */
			goto fail;
		}
	}
	if (!out->spool_dir) {
		char dir[4096];
		int rc = spool_default_dir(dir, sizeof(dir));
		if (rc) {
			snprintf(err, errlen,
			         "no spool directory: set MASTER_LOG_SPOOL_DIR or spool_dir (%s)",
			         spool_strerror(rc));
			goto fail;
		}
		out->spool_dir = strdup(dir);
		if (!out->spool_dir) {
			snprintf(err, errlen, "out of memory");
			goto fail;
		}
	}
	return 0;
fail:
	mlog_settings_free(out);
	return -EINVAL;
}

static int dup_str(const char *in, char **out)
{
	*out = NULL;
	if (in && !(*out = strdup(in)))
		return -ENOMEM;
	return 0;
}

int mlog_settings_copy(const struct mlog_settings *in, struct mlog_settings *out)
{
	*out = *in;
	out->api_key = out->endpoint_root = out->spool_dir = out->ca_file = NULL;
	if (dup_str(in->api_key, &out->api_key) ||
	    dup_str(in->endpoint_root, &out->endpoint_root) ||
	    dup_str(in->spool_dir, &out->spool_dir) || dup_str(in->ca_file, &out->ca_file)) {
		mlog_settings_free(out);
		return -ENOMEM;
	}
	return 0;
}
