/* util.c — small helpers: time, byte order, directories, options, names. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <lmdb.h>

#include "util.h"

int64_t spool_now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int64_t spool_mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

void spool_deadline(struct timespec *ts, double seconds)
{
	clock_gettime(CLOCK_MONOTONIC, ts);
	if (seconds < 0)
		seconds = 0;
	if (seconds > 1e9)
		seconds = 1e9;
	long long ns = (long long)(seconds * 1e9) + ts->tv_nsec;
	ts->tv_sec += (time_t)(ns / 1000000000);
	ts->tv_nsec = (long)(ns % 1000000000);
}

int spool_mkdirs(const char *path, mode_t mode)
{
	char buf[4096];
	size_t len = strlen(path);
	if (len == 0 || len >= sizeof(buf))
		return -ENAMETOOLONG;
	memcpy(buf, path, len + 1);
	for (char *p = buf + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(buf, mode) != 0 && errno != EEXIST)
			return -errno;
		*p = '/';
	}
	if (mkdir(buf, mode) != 0 && errno != EEXIST)
		return -errno;
	return 0;
}

bool spool_dir_shared(const char *dir)
{
	struct stat st;
	return stat(dir, &st) == 0 && S_ISDIR(st.st_mode) && (st.st_mode & S_ISGID) &&
	       (st.st_mode & S_IWGRP);
}

mode_t spool_file_mode(const char *dir)
{
	return spool_dir_shared(dir) ? 0660 : 0600;
}

int spool_fix_mode(int fd, mode_t mode)
{
	struct stat st;
	if (fstat(fd, &st) != 0)
		return -errno;
	if ((st.st_mode & 07777) == mode || st.st_uid != geteuid())
		return 0;
	return fchmod(fd, mode) == 0 ? 0 : -errno;
}

static _Atomic unsigned aside_serial;

int spool_open_create(const char *path, int flags, mode_t mode)
{
	if ((mode & 0077) == 0) { /* private: the umask can only take bits away */
		int fd = open(path, flags | O_CREAT, mode);
		return fd >= 0 ? fd : -errno;
	}
	for (int attempt = 0; attempt < 8; attempt++) {
		int fd = open(path, flags);
		if (fd >= 0 || errno != ENOENT)
			return fd >= 0 ? fd : -errno;
		char tmp[4300];
		const char *slash = strrchr(path, '/');
		int dl = slash ? (int)(slash - path) : 1;
		if (snprintf(tmp, sizeof(tmp), "%.*s/.new-%s-%ld-%u", dl, slash ? path : ".",
			     slash ? slash + 1 : path, (long)getpid(),
			     atomic_fetch_add(&aside_serial, 1)) >= (int)sizeof(tmp))
			return -ENAMETOOLONG;
		int t = open(tmp, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, mode);
		if (t < 0)
			return -errno;
		int rc = fchmod(t, mode) == 0 ? 0 : -errno;
		close(t);
		if (!rc && link(tmp, path) != 0 && errno != EEXIST)
			rc = -errno;
		unlink(tmp);
		if (rc)
			return rc;
	}
	return -ENOENT;
}

int spool_mkdir_mode(const char *path, mode_t mode)
{
	struct stat st;
	if (stat(path, &st) == 0)
		return S_ISDIR(st.st_mode) ? 0 : -ENOTDIR;
	if ((mode & 0077) == 0)
		return mkdir(path, mode) == 0 || errno == EEXIST ? 0 : -errno;
	char tmp[4300];
	if (snprintf(tmp, sizeof(tmp), "%s.new-%ld-%u", path, (long)getpid(),
		     atomic_fetch_add(&aside_serial, 1)) >= (int)sizeof(tmp))
		return -ENAMETOOLONG;
	if (mkdir(tmp, mode) != 0)
		return -errno;
	int rc = chmod(tmp, mode) == 0 ? 0 : -errno;
	if (!rc && rename(tmp, path) != 0)
		rc = errno == EEXIST || errno == ENOTEMPTY ? 0 : -errno;
	rmdir(tmp); /* fails harmlessly once renamed */
	return rc;
}

void spool_errf(char *buf, size_t len, const char *fmt, ...)
{
	if (!buf || len == 0)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, len, fmt, ap);
	va_end(ap);
}

int spool_map_mdb_error(int rc)
{
	if (rc <= SPOOL_EFULL && rc > SPOOL_EFULL - 100)
		return rc; /* already ours */
	switch (rc) {
	case MDB_SUCCESS:
		return 0;
	case MDB_NOTFOUND:
		return SPOOL_ENOTFOUND;
	case MDB_MAP_FULL:
	case MDB_TXN_FULL:
		return SPOOL_EFULL;
	case MDB_CORRUPTED:
	case MDB_PAGE_NOTFOUND:
	case MDB_INVALID:
		return SPOOL_ECORRUPT;
	case MDB_VERSION_MISMATCH:
		return SPOOL_EVERSION;
	case MDB_READERS_FULL:
		return -EAGAIN;
	default:
		if (rc > 0)
			return -rc;
		return SPOOL_EBACKEND;
	}
}

uint64_t spool_random64(void)
{
	uint64_t v = 0;
	if (getrandom(&v, sizeof(v), 0) != sizeof(v))
		v = (uint64_t)spool_mono_ns() ^ ((uint64_t)getpid() << 32);
	return v;
}

void spool_atomic_raise(_Atomic uint64_t *v, uint64_t to)
{
	uint64_t cur = atomic_load(v);
	while (cur < to && !atomic_compare_exchange_weak(v, &cur, to))
		;
}

void spool_options_init(struct spool_options *opt)
{
	if (!opt)
		return;
	memset(opt, 0, sizeof(*opt));
	opt->durability = SPOOL_COMMIT;
	opt->max_events = 0;
	opt->max_bytes = (uint64_t)1 << 30;
	opt->full_policy = SPOOL_FULL_BLOCK;
	opt->full_timeout_seconds = 0.25;
	opt->commit_interval_seconds = 0.010;
	opt->flush_interval_seconds = 1.0;
	opt->flush_batch = 100;
	opt->ring_bytes = (size_t)4 << 20;
	opt->max_record_bytes = ((size_t)1 << 20) + 64 * 1024;
	opt->initial_map_bytes = (size_t)64 << 20;
	opt->max_readers = 1022;
}

static const char *const durability_names[] = {"commit", "sync", "buffered"};
static const char *const policy_names[] = {"block", "drop", "evict"};
static const char *const severity_names[] = {"debug", "info", "warn", "error", "fatal"};

int spool_durability_parse(const char *text, enum spool_durability *out)
{
	for (int i = 0; text && i < 3; i++) {
		if (strcasecmp(text, durability_names[i]) == 0) {
			*out = (enum spool_durability)i;
			return 0;
		}
	}
	return -EINVAL;
}

const char *spool_durability_name(enum spool_durability d)
{
	return (unsigned)d < 3 ? durability_names[d] : "unknown";
}

int spool_full_policy_parse(const char *text, enum spool_full_policy *out)
{
	for (int i = 0; text && i < 3; i++) {
		if (strcasecmp(text, policy_names[i]) == 0) {
			*out = (enum spool_full_policy)i;
			return 0;
		}
	}
	return -EINVAL;
}

int spool_severity_parse(const char *text, int *out)
{
	if (!text)
		return -EINVAL;
	for (int i = 0; i < SPOOL_NSEV; i++) {
		if (strcasecmp(text, severity_names[i]) == 0) {
			*out = i;
			return 0;
		}
	}
	if (strcasecmp(text, "warning") == 0) {
		*out = SPOOL_SEV_WARN;
		return 0;
	}
	return -EINVAL;
}

const char *spool_severity_name(int severity)
{
	return (unsigned)severity < SPOOL_NSEV ? severity_names[severity] : "unknown";
}

int spool_default_dir(char *buf, size_t len)
{
	const char *env = getenv("MASTER_LOG_SPOOL_DIR");
	int n;
	const char *sys = getenv("MASTER_LOG_SYSTEM_SPOOL_DIR");
	if (!sys || *sys != '/')
		sys = SPOOL_SYSTEM_DIR;
	if (env && *env) {
		n = snprintf(buf, len, "%s", env);
	} else if (geteuid() == 0 || faccessat(AT_FDCWD, sys, W_OK | X_OK, AT_EACCESS) == 0) {
		/* root, or a member of the system spool's group */
		n = snprintf(buf, len, "%s", sys);
	} else {
		const char *state = getenv("XDG_STATE_HOME");
		const char *home = getenv("HOME");
		if (state && *state == '/')
			n = snprintf(buf, len, "%s/master-log/spool", state);
		else if (home && *home)
			n = snprintf(buf, len, "%s/.local/state/master-log/spool", home);
		else
			return -ENOENT;
	}
	if (n < 0 || (size_t)n >= len)
		return -ENAMETOOLONG;
	return 0;
}

const char *spool_strerror(int err)
{
	switch (err) {
	case 0:
		return "success";
	case SPOOL_EFULL:
		return "spool full: record not stored";
	case SPOOL_ETOOBIG:
		return "record larger than the spool accepts";
	case SPOOL_ECORRUPT:
		return "spool file damaged or not a spool";
	case SPOOL_ELOCKED:
		return "another process holds the spool's agent lock";
	case SPOOL_EFORKED:
		return "spool handle inherited across fork(); open the spool again in the child";
	case SPOOL_EVERSION:
		return "spool written by an incompatible format version";
	case SPOOL_ENOTFOUND:
		return "not found";
	case SPOOL_EBACKEND:
		return "storage engine failure";
	case SPOOL_ECLOSED:
		return "spool handle's background committer has stopped";
	default:
		if (err < 0 && err > -4096)
			return strerror(-err);
		return "unknown spool error";
	}
}
