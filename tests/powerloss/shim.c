/* shim.c — LD_PRELOAD shim for the power-loss harness.
 *
 * Loaded into a workload process with SHIM_DIR (a directory) and SHIM_LOG (a
 * file outside it) set.  It records, in SHIM_LOG (format in pl_log.h), every
 * write to a regular file under SHIM_DIR, every successful fsync/fdatasync of
 * such a file, and every ftruncate, each with a global sequence number.  A
 * write through a descriptor opened with O_DSYNC or O_SYNC (LMDB's meta page
 * descriptor) is durable when it returns, and is logged as such.  With
 * SHIM_RINGS=1 it also logs the spool's rings/ folder at every crash point:
 * the commit-mode rings are written through a shared mapping, which no shim
 * can watch, so it logs the pages that changed since it last looked (see
 * pl_log.h), and the harness builds each ring page of an image from those
 * versions.
 *
 * Not tracked: the LMDB lock file, agent.lock and rings/ (none of them needs
 * to survive a power loss byte for byte; the rings are handled as above).
 * The workload finds shim_points() and shim_mark() with dlsym. */
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

#include "pl_log.h"

#define MAX_FDS   8192
#define MAX_FILES 64

unsigned long shim_points(void);
unsigned long shim_mark(void);

static int (*real_open)(const char *, int, ...);
static int (*real_openat)(int, const char *, int, ...);
static int (*real_close)(int);
static ssize_t (*real_write)(int, const void *, size_t);
static ssize_t (*real_pwrite)(int, const void *, size_t, off_t);
static ssize_t (*real_writev)(int, const struct iovec *, int);
static ssize_t (*real_pwritev)(int, const struct iovec *, int, off_t);
static int (*real_ftruncate)(int, off_t);
static int (*real_fsync)(int);
static int (*real_fdatasync)(int);
static int (*real_msync)(void *, size_t, int);

static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static pthread_mutex_t g_mu = PTHREAD_RECURSIVE_MUTEX_INITIALIZER_NP;
static bool g_on;    /* SHIM_DIR and SHIM_LOG given and usable */
static bool g_rings; /* SHIM_RINGS=1 */
static char g_dir[PATH_MAX];
static size_t g_dirlen;
static int g_log = -1;
static uint64_t g_seq;    /* sequence number of the next record */
static uint64_t g_points; /* crash points logged */

struct fdinfo {
	uint32_t file; /* 0: not tracked */
	bool dsync;
	bool append;
};
static struct fdinfo g_fds[MAX_FDS];
static char *g_files[MAX_FILES + 1]; /* by id, from 1 */
static uint32_t g_nfiles;

static void resolve(void **slot, const char *name)
{
	void *p = dlsym(RTLD_NEXT, name);
	if (!p) {
		fprintf(stderr, "powerloss shim: no %s\n", name);
		abort();
	}
	memcpy(slot, &p, sizeof(p));
}

static void init(void)
{
	resolve((void **)&real_open, "open");
	resolve((void **)&real_openat, "openat");
	resolve((void **)&real_close, "close");
	resolve((void **)&real_write, "write");
	resolve((void **)&real_pwrite, "pwrite");
	resolve((void **)&real_writev, "writev");
	resolve((void **)&real_pwritev, "pwritev");
	resolve((void **)&real_ftruncate, "ftruncate");
	resolve((void **)&real_fsync, "fsync");
	resolve((void **)&real_fdatasync, "fdatasync");
	resolve((void **)&real_msync, "msync");
	const char *dir = getenv("SHIM_DIR"), *log = getenv("SHIM_LOG");
	if (!dir || !log || !realpath(dir, g_dir))
		return;
	g_dirlen = strlen(g_dir);
	g_log = real_open(log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (g_log < 0) {
		fprintf(stderr, "powerloss shim: cannot open %s: %s\n", log, strerror(errno));
		abort();
	}
	const char *r = getenv("SHIM_RINGS");
	g_rings = r && strcmp(r, "1") == 0;
	g_on = true;
}

static void ensure(void)
{
	pthread_once(&g_once, init);
}

__attribute__((constructor)) static void shim_ctor(void)
{
	ensure();
}

static void write_all(const struct iovec *iov, int n)
{
	struct iovec v[8];
	memcpy(v, iov, (size_t)n * sizeof(*iov));
	int i = 0;
	while (i < n) {
		ssize_t w = real_writev(g_log, v + i, n - i);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			fprintf(stderr, "powerloss shim: log write: %s\n", strerror(errno));
			abort();
		}
		size_t left = (size_t)w;
		while (i < n && left >= v[i].iov_len) {
			left -= v[i].iov_len;
			i++;
		}
		if (i < n) {
			v[i].iov_base = (char *)v[i].iov_base + left;
			v[i].iov_len -= left;
		}
	}
}

/* Appends one record (caller holds g_mu); the payload is up to 6 pieces. */
static void log_rec(uint32_t type, uint32_t file, uint64_t off, uint64_t aux,
                    const struct iovec *pay, int npay, uint64_t len)
{
	struct pl_rec r = {type, file, g_seq++, off, len, aux};
	struct iovec v[8];
	v[0] = (struct iovec){&r, sizeof(r)};
	int n = 1;
	uint64_t left = len;
	for (int i = 0; i < npay && left > 0; i++) {
		size_t take = pay[i].iov_len < left ? pay[i].iov_len : (size_t)left;
		v[n++] = (struct iovec){pay[i].iov_base, take};
		left -= take;
		if (n == 8 && left > 0 && i + 1 < npay) {
			write_all(v, n);
			n = 0;
		}
	}
	if (n)
		write_all(v, n);
}

static void log_writev(uint32_t type, uint32_t file, uint64_t off, uint64_t aux,
                       const struct iovec *iov, int iovcnt, uint64_t len)
{
	/* log_rec takes at most 7 pieces at a time: chunk long vectors */
	if (iovcnt <= 7) {
		log_rec(type, file, off, aux, iov, iovcnt, len);
		return;
	}
	size_t total = 0;
	for (int i = 0; i < iovcnt; i++)
		total += iov[i].iov_len;
	if (total > len)
		total = (size_t)len;
	char *buf = malloc(total ? total : 1);
	if (!buf)
		abort();
	size_t at = 0;
	for (int i = 0; i < iovcnt && at < total; i++) {
		size_t take = iov[i].iov_len < total - at ? iov[i].iov_len : total - at;
		memcpy(buf + at, iov[i].iov_base, take);
		at += take;
	}
	struct iovec one = {buf, total};
	log_rec(type, file, off, aux, &one, 1, total);
	free(buf);
}

static uint32_t file_id(const char *rel)
{
	for (uint32_t i = 1; i <= g_nfiles; i++)
		if (strcmp(g_files[i], rel) == 0)
			return i;
	if (g_nfiles == MAX_FILES)
		return 0;
	g_files[++g_nfiles] = strdup(rel);
	struct iovec p = {(void *)rel, strlen(rel)};
	log_rec(PL_FILE, g_nfiles, 0, 0, &p, 1, p.iov_len);
	return g_nfiles;
}

static void track(int fd, int flags)
{
	if (!g_on || fd < 0 || fd >= MAX_FDS)
		return;
	char link[64], path[PATH_MAX];
	snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	ssize_t n = readlink(link, path, sizeof(path) - 1);
	if (n <= 0)
		return;
	path[n] = '\0';
	struct stat st;
	if ((size_t)n <= g_dirlen + 1 || memcmp(path, g_dir, g_dirlen) != 0 ||
	    path[g_dirlen] != '/' || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode))
		return;
	const char *rel = path + g_dirlen + 1;
	if (strcmp(rel, "lock.mdb") == 0 || strcmp(rel, "agent.lock") == 0 ||
	    strncmp(rel, "rings/", 6) == 0)
		return;
	pthread_mutex_lock(&g_mu);
	uint32_t id = file_id(rel);
	g_fds[fd] = (struct fdinfo){id, (flags & O_DSYNC) != 0, (flags & O_APPEND) != 0};
	pthread_mutex_unlock(&g_mu);
}

static struct fdinfo tracked(int fd)
{
	struct fdinfo none = {0, false, false};
	if (!g_on || fd < 0 || fd >= MAX_FDS)
		return none;
	return g_fds[fd];
}

static mode_t mode_arg(int flags, va_list ap)
{
	return (flags & O_CREAT) || (flags & O_TMPFILE) == O_TMPFILE ? (mode_t)va_arg(ap, int) : 0;
}

int open(const char *path, int flags, ...)
{
	ensure();
	va_list ap;
	va_start(ap, flags);
	mode_t mode = mode_arg(flags, ap);
	va_end(ap);
	int fd = real_open(path, flags, mode);
	track(fd, flags);
	return fd;
}

int open64(const char *path, int flags, ...)
{
	ensure();
	va_list ap;
	va_start(ap, flags);
	mode_t mode = mode_arg(flags, ap);
	va_end(ap);
	int fd = real_open(path, flags, mode);
	track(fd, flags);
	return fd;
}

int openat(int dirfd, const char *path, int flags, ...)
{
	ensure();
	va_list ap;
	va_start(ap, flags);
	mode_t mode = mode_arg(flags, ap);
	va_end(ap);
	int fd = real_openat(dirfd, path, flags, mode);
	track(fd, flags);
	return fd;
}

int openat64(int dirfd, const char *path, int flags, ...)
{
	ensure();
	va_list ap;
	va_start(ap, flags);
	mode_t mode = mode_arg(flags, ap);
	va_end(ap);
	int fd = real_openat(dirfd, path, flags, mode);
	track(fd, flags);
	return fd;
}

int close(int fd)
{
	ensure();
	if (tracked(fd).file) {
		pthread_mutex_lock(&g_mu);
		g_fds[fd] = (struct fdinfo){0, false, false};
		pthread_mutex_unlock(&g_mu);
	}
	return real_close(fd);
}

static void snapshot_rings(void);

/* The write calls: the real call and its record happen under one lock, so
 * the log order is the order of the writes. */
static ssize_t do_write(int fd, const struct iovec *iov, int iovcnt, off_t off, bool positioned)
{
	struct fdinfo fi = tracked(fd);
	if (!fi.file) {
		if (positioned)
			return real_pwritev(fd, iov, iovcnt, off);
		return real_writev(fd, iov, iovcnt);
	}
	pthread_mutex_lock(&g_mu);
	if (fi.dsync && g_rings)
		snapshot_rings(); /* a crash point: the rings as it is issued */
	off_t at = off;
	if (!positioned) {
		struct stat st;
		if (fi.append && fstat(fd, &st) == 0)
			at = st.st_size;
		else
			at = lseek(fd, 0, SEEK_CUR);
	}
	ssize_t r = positioned ? real_pwritev(fd, iov, iovcnt, off) : real_writev(fd, iov, iovcnt);
	int e = errno;
	if (r > 0 && at >= 0) {
		log_writev(PL_WRITE, fi.file, (uint64_t)at, fi.dsync ? PL_DSYNC : 0, iov, iovcnt,
		           (uint64_t)r);
		if (fi.dsync)
			g_points++;
	}
	pthread_mutex_unlock(&g_mu);
	errno = e;
	return r;
}

ssize_t write(int fd, const void *buf, size_t n)
{
	ensure();
	if (!tracked(fd).file)
		return real_write(fd, buf, n);
	struct iovec v = {(void *)buf, n};
	return do_write(fd, &v, 1, 0, false);
}

ssize_t pwrite(int fd, const void *buf, size_t n, off_t off)
{
	ensure();
	if (!tracked(fd).file)
		return real_pwrite(fd, buf, n, off);
	struct iovec v = {(void *)buf, n};
	return do_write(fd, &v, 1, off, true);
}

ssize_t pwrite64(int fd, const void *buf, size_t n, off64_t off)
{
	return pwrite(fd, buf, n, (off_t)off);
}

ssize_t writev(int fd, const struct iovec *iov, int iovcnt)
{
	ensure();
	return do_write(fd, iov, iovcnt, 0, false);
}

ssize_t pwritev(int fd, const struct iovec *iov, int iovcnt, off_t off)
{
	ensure();
	return do_write(fd, iov, iovcnt, off, true);
}

ssize_t pwritev64(int fd, const struct iovec *iov, int iovcnt, off64_t off)
{
	return pwritev(fd, iov, iovcnt, (off_t)off);
}

int ftruncate(int fd, off_t len)
{
	ensure();
	struct fdinfo fi = tracked(fd);
	if (!fi.file)
		return real_ftruncate(fd, len);
	pthread_mutex_lock(&g_mu);
	int r = real_ftruncate(fd, len);
	int e = errno;
	if (r == 0)
		log_rec(PL_TRUNC, fi.file, (uint64_t)len, 0, NULL, 0, 0);
	pthread_mutex_unlock(&g_mu);
	errno = e;
	return r;
}

int ftruncate64(int fd, off64_t len)
{
	return ftruncate(fd, (off_t)len);
}

/* The rings as last logged, to log only the pages that changed. */
struct ringcopy {
	char name[64];
	unsigned char *b;
	size_t len;
};
static struct ringcopy g_rc[32];
static unsigned g_nrc;

static struct ringcopy *ring_copy(const char *name)
{
	for (unsigned i = 0; i < g_nrc; i++)
		if (strcmp(g_rc[i].name, name) == 0)
			return &g_rc[i];
	if (g_nrc == 32)
		return NULL;
	struct ringcopy *c = &g_rc[g_nrc++];
	snprintf(c->name, sizeof(c->name), "%s", name);
	c->b = NULL;
	c->len = 0;
	return c;
}

/* Logs the ring-* files of SHIM_DIR/rings (a PL_RINGSET, a PL_RING for
 * each), then every page of theirs that changed since the last look (caller
 * holds g_mu).  A page is read with pread, from the page cache, which is
 * what the shared mappings write to: what writeback would take. */
static void snapshot_rings(void)
{
	char dpath[PATH_MAX + 8];
	snprintf(dpath, sizeof(dpath), "%s/rings", g_dir);
	char *names[32];
	unsigned n = 0;
	DIR *d = opendir(dpath);
	if (d) {
		struct dirent *de;
		while ((de = readdir(d)) != NULL && n < 32)
			if (strncmp(de->d_name, "ring-", 5) == 0 && strlen(de->d_name) < 64)
				names[n++] = strdup(de->d_name);
		closedir(d);
	}
	unsigned char *bufs[32];
	size_t lens[32];
	unsigned kept = 0;
	for (unsigned i = 0; i < n; i++) {
		char p[PATH_MAX + 300];
		snprintf(p, sizeof(p), "%s/%s", dpath, names[i]);
		int fd = real_open(p, O_RDONLY | O_CLOEXEC, 0);
		struct stat st;
		if (fd < 0 || fstat(fd, &st) != 0 || st.st_size > (64 << 20)) {
			if (fd >= 0)
				real_close(fd);
			free(names[i]);
			continue;
		}
		unsigned char *b = malloc((size_t)st.st_size + 1);
		ssize_t got = b ? pread(fd, b, (size_t)st.st_size, 0) : -1;
		real_close(fd);
		if (got < 0) {
			free(b);
			free(names[i]);
			continue;
		}
		names[kept] = names[i];
		bufs[kept] = b;
		lens[kept] = (size_t)got;
		kept++;
	}
	log_rec(PL_RINGSET, 0, 0, kept, NULL, 0, 0);
	for (unsigned i = 0; i < kept; i++) {
		size_t nl = strlen(names[i]);
		struct iovec p = {names[i], nl};
		log_rec(PL_RING, 0, lens[i], nl, &p, 1, nl);
	}
	for (unsigned i = 0; i < kept; i++) {
		size_t nl = strlen(names[i]);
		struct ringcopy *c = ring_copy(names[i]);
		for (size_t off = 0; off < lens[i]; off += PL_PAGE) {
			size_t len = lens[i] - off < PL_PAGE ? lens[i] - off : PL_PAGE;
			if (c && off + len <= c->len && memcmp(c->b + off, bufs[i] + off, len) == 0)
				continue;
			struct iovec p[2] = {{names[i], nl}, {bufs[i] + off, len}};
			log_rec(PL_RINGPAGE, 0, off / PL_PAGE, nl, p, 2, nl + len);
		}
		if (c) {
			free(c->b);
			c->b = bufs[i];
			c->len = lens[i];
		} else {
			free(bufs[i]);
		}
		free(names[i]);
	}
}

static int do_sync(int fd, int (*fn)(int))
{
	struct fdinfo fi = tracked(fd);
	if (!fi.file)
		return fn(fd);
	pthread_mutex_lock(&g_mu);
	/* the rings as they are when the sync is issued: a power loss before
	 * it returns sees these pages at most */
	if (g_rings)
		snapshot_rings();
	uint64_t start = g_seq; /* every write logged before this is covered */
	pthread_mutex_unlock(&g_mu);
	int r = fn(fd);
	int e = errno;
	if (r == 0) {
		pthread_mutex_lock(&g_mu);
		log_rec(PL_SYNC, fi.file, 0, start, NULL, 0, 0);
		g_points++;
		/* and after: for the crash points that follow (the flusher moves
		 * the tail only once its commit returned) */
		if (g_rings)
			snapshot_rings();
		pthread_mutex_unlock(&g_mu);
	}
	errno = e;
	return r;
}

int fsync(int fd)
{
	ensure();
	return do_sync(fd, real_fsync);
}

int fdatasync(int fd)
{
	ensure();
	return do_sync(fd, real_fdatasync);
}

int msync(void *addr, size_t len, int flags)
{
	ensure();
	int r = real_msync(addr, len, flags);
	if (g_on) {
		pthread_mutex_lock(&g_mu);
		log_rec(PL_MSYNC, 0, (uint64_t)(uintptr_t)addr, (uint64_t)len, NULL, 0, 0);
		pthread_mutex_unlock(&g_mu);
	}
	return r;
}

unsigned long shim_points(void)
{
	ensure();
	pthread_mutex_lock(&g_mu);
	unsigned long n = (unsigned long)g_points;
	pthread_mutex_unlock(&g_mu);
	return n;
}

unsigned long shim_mark(void)
{
	ensure();
	pthread_mutex_lock(&g_mu);
	unsigned long n = (unsigned long)g_points;
	if (g_on) {
		if (g_rings)
			snapshot_rings(); /* the rings at the workload's promise */
		log_rec(PL_MARK, 0, 0, 0, NULL, 0, 0);
		g_points++;
	}
	pthread_mutex_unlock(&g_mu);
	return n;
}
