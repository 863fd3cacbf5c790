/* spool-bench — libspool append latency and throughput, each figure printed
 * beside the machine's own limit measured in the same run, in the same
 * directory (so on the same file system and disk).
 *
 * Cases, run in this order (--cases picks some; the limit a case is compared
 * with is always run with it):
 *
 *   raw-fdatasync    4 KiB pwrite + fdatasync, overwriting the blocks of a
 *                    1 MiB file written and synced beforehand, so only data
 *                    goes to the disk (the cheapest durable write).
 *   lmdb-put-sync    one mdb_put (MDB_APPEND, 8-byte big-endian key, the bench
 *                    payload) per write transaction, LMDB default flags: a full
 *                    sync per commit.  Limit: raw-fdatasync.
 *   lmdb-put-nosync  the same with MDB_NOSYNC.  A yardstick only: the product
 *                    never opens LMDB like this.
 *   sync-1t          SPOOL_SYNC, one thread.  Limit: lmdb-put-sync.
 *   sync-8t          SPOOL_SYNC, 8 threads on one handle (group commit).
 *                    Limit: sync-1t (throughput ratio).
 *   commit-1t        SPOOL_COMMIT, one thread, then spool_sync(): the headline
 *                    throughput counts events made durable in LMDB.
 *                    Limit: lmdb-put-nosync.
 *   buffered-1t      SPOOL_BUFFERED, one thread.  Limit (yardstick):
 *                    lmdb-put-nosync; the target is absolute.
 *   commit-4p        SPOOL_COMMIT, 4 forked processes, each opening the spool
 *                    itself, appending at once, then spool_sync().
 *                    Limit: commit-1t.
 *   mlog-stdin       lines/s through the `mlog -` command (tools/mlog of the
 *                    build folder holding this program, or --mlog PATH): --events
 *                    lines of MLOG_LINE_BYTES bytes written into a pipe on its
 *                    standard input, timed from the start of mlog to its exit
 *                    with status 0 (every line in the spool, each group of
 *                    lines committed with a full sync).  Limit: commit-1t.
 *   mlog-call        CPU-microseconds per mlog() call (libmlog, the global
 *                    client): --events calls with a 190-byte message in commit
 *                    mode, backpressure off, no agent started, in a child
 *                    process, then mlog_shutdown() (every event synced into
 *                    LMDB); the process's CPU time (its flusher thread
 *                    included) over the calls and the shutdown.  Limit:
 *                    commit-1t, whose CPU per spool_append() (and final
 *                    spool_sync) is measured the same way.
 *
 * Each call is timed alone with two clock_gettime(CLOCK_MONOTONIC) reads; all
 * latencies are kept (uint32 ns) and sorted for exact percentiles.  The loop's
 * wall time, timing reads included, gives the throughput; the clock's own
 * cost is measured and printed so it can be taken into account.
 *
 * Spool settings (all cases): max_bytes 4 GiB (the full policy never
 * triggers), initial_map_bytes 1 GiB (map growth stays out of the measured
 * loop), ring_bytes 16 MiB (--ring-mib; about 50 ms of appends at the
 * commit-1t target with these ~260-byte events, against ~13 ms for the 4 MiB
 * default, so one slow synced commit does not stall the producer at once);
 * commit_interval, flush_interval and flush_batch keep the library defaults.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <linux/magic.h>

#include <lmdb.h>
#include <msgpack.h>
#include <spool/mlog.h>
#include <spool/spool.h>

#define NS_PER_SEC 1000000000ull
#define GIB (1024ull * 1024ull * 1024ull)
#define MIB (1024ull * 1024ull)
#define MAX_APPEND_ERRORS 100 /* a loop stops after this many failed calls */
#define SYNC_TIMEOUT_S 600.0
#define SYNC_THREADS 8
#define COMMIT_PROCESSES 4
#define RAW_FILE_BLOCKS 256 /* raw-fdatasync cycles over a 1 MiB file */

enum case_id {
	C_RAW,
	C_LMDB_SYNC,
	C_LMDB_NOSYNC,
	C_SYNC_1T,
	C_SYNC_8T,
	C_COMMIT_1T,
	C_BUFFERED_1T,
	C_COMMIT_4P,
	C_MLOG_STDIN,
	C_MLOG_CALL,
	C_COUNT
};

static const char *const case_names[C_COUNT] = {
	"raw-fdatasync", "lmdb-put-sync", "lmdb-put-nosync", "sync-1t",
	"sync-8t",	 "commit-1t",	  "buffered-1t",     "commit-4p",
	"mlog-stdin",	 "mlog-call",
};

/* The case whose figures a case is compared with (-1: none). */
static const int case_limit[C_COUNT] = {
	-1, C_RAW, -1, C_LMDB_SYNC, C_SYNC_1T, C_LMDB_NOSYNC, C_LMDB_NOSYNC, C_COMMIT_1T,
	C_COMMIT_1T, C_COMMIT_1T,
};

struct payload {
	unsigned char *buf;
	size_t len;
	size_t msg_off; /* 10 chars of the message patched per event */
	size_t id_off;	/* last 10 chars of client_event_id, patched likewise */
};

struct result {
	const char *name;
	bool ran;
	const char *durability;
	int threads, processes;
	size_t payload_bytes;
	uint64_t events; /* calls that succeeded and were timed */
	uint64_t errors; /* calls that failed */
	bool failed;	 /* something other than an append failed */
	char error[512];
	double elapsed_s; /* for the headline events_per_sec */
	double events_per_sec;
	const char *throughput_basis;
	double append_events_per_sec; /* the append loop alone */
	double synced_events_per_sec;  /* loop + final spool_sync (NAN: n/a) */
	double final_sync_ms;	       /* the final spool_sync alone (NAN: n/a) */
	double p50_us, p90_us, p99_us, p999_us, min_us, max_us, mean_us;
	const char *limit_name;
	double limit_p50_us, ratio_p50, limit_events_per_sec, ratio_throughput;
	const char *target;
	int meets_target; /* 1, 0, -1 = no target or not decidable */
	double cpu_us_per_event; /* process CPU per event (commit-1t, mlog-call; NAN: n/a) */
	double limit_cpu_us_per_event, ratio_cpu;
	bool stored_checked;
	uint64_t stored_expected, stored;
	char config[256];
};

struct ctx {
	uint64_t events;	/* staged-mode cases (commit, buffered) */
	uint64_t sync_events;	/* fsync-bound cases */
	uint64_t nosync_events; /* lmdb-put-nosync */
	uint64_t warm_sync, warm_staged, warm_nosync;
	size_t ring_bytes;
	char root[PATH_MAX];
	char fs[PATH_MAX + 160];
	bool fs_is_tmpfs;
	struct payload pl;
	long cpus;
	double clock_ns;
	char mlog[PATH_MAX]; /* the mlog command (mlog-stdin) */
};

/* ------------------------------------------------------------------ time */

/* CPU time of the whole process (every thread: the flusher too). */
static uint64_t cpu_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return (uint64_t)ts.tv_sec * NS_PER_SEC + (uint64_t)ts.tv_nsec;
}

static inline uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * NS_PER_SEC + (uint64_t)ts.tv_nsec;
}

static inline uint32_t clamp32(uint64_t v)
{
	return v > UINT32_MAX ? UINT32_MAX : (uint32_t)v;
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return (x > y) - (x < y);
}

/* Median cost of one clock_gettime, from back-to-back pairs. */
static double clock_overhead_ns(void)
{
	enum { N = 2001 };
	uint32_t *d = malloc(N * sizeof *d);
	if (!d)
		return NAN;
	for (int i = 0; i < N; i++) {
		uint64_t a = now_ns();
		uint64_t b = now_ns();
		d[i] = clamp32(b - a);
	}
	qsort(d, N, sizeof *d, cmp_u32);
	double v = d[N / 2];
	free(d);
	return v;
}

/* Sorts ns[] and fills the percentiles (nearest rank) of r. */
static void lat_fill(struct result *r, uint32_t *ns, size_t n)
{
	if (n == 0) {
		r->p50_us = r->p90_us = r->p99_us = r->p999_us = NAN;
		r->min_us = r->max_us = r->mean_us = NAN;
		return;
	}
	qsort(ns, n, sizeof *ns, cmp_u32);
	double sum = 0;
	for (size_t i = 0; i < n; i++)
		sum += ns[i];
	const double q[4] = { 0.50, 0.90, 0.99, 0.999 };
	double *out[4] = { &r->p50_us, &r->p90_us, &r->p99_us, &r->p999_us };
	for (int i = 0; i < 4; i++) {
		double rank = ceil(q[i] * (double)n);
		size_t idx = rank < 1 ? 0 : (size_t)rank - 1;
		if (idx >= n)
			idx = n - 1;
		*out[i] = ns[idx] / 1000.0;
	}
	r->min_us = ns[0] / 1000.0;
	r->max_us = ns[n - 1] / 1000.0;
	r->mean_us = sum / (double)n / 1000.0;
}

/* ---------------------------------------------------------------- errors */

static void note_error(struct result *r, const char *what, const char *detail)
{
	if (r->error[0])
		return;
	snprintf(r->error, sizeof r->error, "%s: %s", what, detail);
}

static void fail(struct result *r, const char *what, const char *detail)
{
	r->failed = true;
	note_error(r, what, detail);
}

/* ------------------------------------------------------------- temp dirs */

static char g_cleanup_dir[PATH_MAX];
static volatile sig_atomic_t g_cleanup_armed;
static pid_t g_main_pid;

static int rm_cb(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	remove(path);
	return 0;
}

static void rm_rf(const char *path)
{
	nftw(path, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

/* On SIGINT/SIGTERM/SIGHUP the main process removes its temp dir (with
 * async-signal-safe calls only: _Fork, execv of rm, waitpid) and dies of the
 * signal; forked bench children just die. */
static void on_fatal_signal(int sig)
{
	if (getpid() == g_main_pid && g_cleanup_armed) {
		g_cleanup_armed = 0;
#if defined(__GLIBC__) && defined(__GLIBC_PREREQ)
#if __GLIBC_PREREQ(2, 34)
		pid_t c = _Fork();
#else
		pid_t c = fork();
#endif
#else
		pid_t c = fork();
#endif
		if (c == 0) {
			char *argv[] = { "rm", "-rf", "--", g_cleanup_dir, NULL };
			execv("/bin/rm", argv);
			_exit(127);
		}
		if (c > 0)
			waitpid(c, NULL, 0);
	}
	signal(sig, SIG_DFL);
	raise(sig);
}

static bool path_is_tmpfs(const char *path)
{
	struct statfs sf;
	if (statfs(path, &sf) != 0)
		return false;
	return sf.f_type == TMPFS_MAGIC || sf.f_type == RAMFS_MAGIC;
}

/* Decodes the octal escapes (\040) of a /proc/self/mountinfo field. */
static void unescape_mount(char *s)
{
	char *w = s;
	for (char *p = s; *p; p++) {
		if (p[0] == '\\' && p[1] >= '0' && p[1] <= '3' && p[2] >= '0' && p[2] <= '7' &&
		    p[3] >= '0' && p[3] <= '7') {
			*w++ = (char)((p[1] - '0') * 64 + (p[2] - '0') * 8 + (p[3] - '0'));
			p += 3;
		} else {
			*w++ = *p;
		}
	}
	*w = '\0';
}

/* "ext4 (/dev/vda mounted on /)": the mount holding path. */
static void fs_describe(const char *path, char *out, size_t outlen)
{
	char rp[PATH_MAX];
	snprintf(out, outlen, "unknown");
	if (!realpath(path, rp))
		return;
	FILE *f = fopen("/proc/self/mountinfo", "re");
	if (!f)
		return;
	char *line = NULL;
	size_t cap = 0;
	size_t best = 0;
	while (getline(&line, &cap, f) > 0) {
		char *save = NULL, *mp = NULL, *type = NULL, *src = NULL;
		int idx = 0, after = -1;
		for (char *tok = strtok_r(line, " \n", &save); tok; tok = strtok_r(NULL, " \n", &save), idx++) {
			if (idx == 4)
				mp = tok;
			else if (after >= 0) {
				if (after == 0)
					type = tok;
				else if (after == 1)
					src = tok;
				after++;
			} else if (idx > 5 && strcmp(tok, "-") == 0)
				after = 0;
		}
		if (!mp || !type)
			continue;
		unescape_mount(mp);
		size_t l = strlen(mp);
		bool match = strcmp(mp, "/") == 0 ||
			     (strncmp(rp, mp, l) == 0 && (rp[l] == '/' || rp[l] == '\0'));
		if (match && l >= best) {
			best = l;
			snprintf(out, outlen, "%s (%s mounted on %s)", type, src ? src : "?", mp);
		}
	}
	free(line);
	fclose(f);
}

/* --------------------------------------------------------------- payload */

static const char b32[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"; /* Crockford, as ULIDs */

static void pack_cstr(msgpack_packer *pk, const char *s)
{
	size_t l = strlen(s);
	msgpack_pack_str(pk, l);
	msgpack_pack_str_body(pk, s, l);
}

/* A realistic event map, built once; per event only 2 x 10 characters change
 * (payload_patch), so its size never varies. */
static int payload_build(struct payload *p)
{
	static const char msg_head[] = "event ";
	static const char msg[] = "event 0000000000: user alice signed in from 192.0.2.17";
	static const char id[] = "01JDQ5Z8X2K7M3N9P400000000"; /* a ULID: 26 characters */

	char host[65] = "localhost";
	gethostname(host, sizeof host - 1);
	host[16] = '\0'; /* the size must not depend much on the machine */

	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	struct tm tm;
	gmtime_r(&ts.tv_sec, &tm);
	char stamp[96];
	snprintf(stamp, sizeof stamp, "%04d-%02d-%02dT%02d:%02d:%02d.%06ldZ", tm.tm_year + 1900,
		 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000);

	msgpack_sbuffer sb;
	msgpack_packer pk;
	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);

	msgpack_pack_map(&pk, 7);
	pack_cstr(&pk, "message");
	pack_cstr(&pk, msg);
	pack_cstr(&pk, "severity");
	pack_cstr(&pk, "info");
	pack_cstr(&pk, "title");
	pack_cstr(&pk, "login");
	pack_cstr(&pk, "tags");
	msgpack_pack_array(&pk, 3);
	pack_cstr(&pk, "auth");
	pack_cstr(&pk, "ssh");
	pack_cstr(&pk, "bench");
	pack_cstr(&pk, "client_event_id");
	pack_cstr(&pk, id);
	pack_cstr(&pk, "timestamp");
	pack_cstr(&pk, stamp);
	pack_cstr(&pk, "metadata");
	msgpack_pack_map(&pk, 1);
	pack_cstr(&pk, "c_client");
	msgpack_pack_map(&pk, 4);
	pack_cstr(&pk, "library");
	pack_cstr(&pk, "libspool");
	pack_cstr(&pk, "version");
	pack_cstr(&pk, SPOOL_VERSION_STRING);
	pack_cstr(&pk, "pid");
	msgpack_pack_int64(&pk, (int64_t)getpid());
	pack_cstr(&pk, "hostname");
	pack_cstr(&pk, host);

	p->len = sb.size;
	p->buf = malloc(sb.size);
	if (!p->buf) {
		msgpack_sbuffer_destroy(&sb);
		return -1;
	}
	memcpy(p->buf, sb.data, sb.size);
	msgpack_sbuffer_destroy(&sb);

	const unsigned char *m = memmem(p->buf, p->len, msg, sizeof msg - 1);
	const unsigned char *i = memmem(p->buf, p->len, id, 26);
	if (!m || !i)
		return -1;
	p->msg_off = (size_t)(m - p->buf) + sizeof msg_head - 1;
	p->id_off = (size_t)(i - p->buf) + 16;
	return 0;
}

static inline void payload_patch(unsigned char *buf, const struct payload *p, uint64_t v)
{
	unsigned char *m = buf + p->msg_off, *id = buf + p->id_off;
	for (int k = 9; k >= 0; k--) {
		unsigned char c = (unsigned char)b32[v & 31];
		m[k] = c;
		id[k] = c;
		v >>= 5;
	}
}

/* Counter bases: each worker gets its own range, so ids stay unique. */
static inline uint64_t worker_base(unsigned worker)
{
	return (uint64_t)worker << 40;
}

/* ----------------------------------------------------------- spool loops */

struct loop_out {
	uint64_t ok, errors;
	int first_err;
	uint64_t t_start, t_end;
};

static void append_loop(struct spool *s, unsigned char *buf, const struct payload *pl, uint64_t base,
			uint64_t n, uint32_t *lat, struct loop_out *o)
{
	o->ok = 0;
	o->errors = 0;
	o->first_err = 0;
	o->t_start = now_ns();
	for (uint64_t i = 0; i < n; i++) {
		payload_patch(buf, pl, base + i);
		uint64_t a = now_ns();
		int rc = spool_append(s, SPOOL_SEV_INFO, buf, pl->len);
		uint64_t b = now_ns();
		if (rc == 0) {
			if (lat)
				lat[o->ok] = clamp32(b - a);
			o->ok++;
		} else {
			if (o->errors++ == 0)
				o->first_err = rc;
			if (o->errors >= MAX_APPEND_ERRORS)
				break;
		}
	}
	o->t_end = now_ns();
}

static void bench_spool_options(const struct ctx *cx, enum spool_durability d, struct spool_options *o)
{
	spool_options_init(o);
	o->durability = d;
	o->max_bytes = 4 * GIB;
	o->initial_map_bytes = (size_t)GIB;
	o->ring_bytes = cx->ring_bytes;
}

static void describe_options(const struct spool_options *o, char *buf, size_t len)
{
	snprintf(buf, len,
		 "max_bytes=%" PRIu64 " initial_map_bytes=%zu ring_bytes=%zu commit_interval_s=%g "
		 "flush_interval_s=%g flush_batch=%u full_policy=%s",
		 o->max_bytes, o->initial_map_bytes, o->ring_bytes, o->commit_interval_seconds,
		 o->flush_interval_seconds, o->flush_batch,
		 o->full_policy == SPOOL_FULL_BLOCK  ? "block"
		 : o->full_policy == SPOOL_FULL_DROP ? "drop"
						     : "evict");
}

static void case_dir(const struct ctx *cx, const char *name, char *out, size_t len)
{
	snprintf(out, len, "%s/%s", cx->root, name);
}

/* Reopens the spool and reads how many records it holds. */
static void check_stored(const struct ctx *cx, const char *dir, struct result *r, uint64_t expected)
{
	struct spool_options o;
	bench_spool_options(cx, SPOOL_SYNC, &o);
	struct spool *s = NULL;
	char err[512] = "";
	int rc = spool_open(dir, &o, &s, err, sizeof err);
	if (rc != 0) {
		fail(r, "reopen for the count", err[0] ? err : spool_strerror(rc));
		return;
	}
	struct spool_stats st;
	rc = spool_stats(s, &st);
	if (rc != 0)
		fail(r, "spool_stats", spool_strerror(rc));
	else {
		r->stored_checked = true;
		r->stored_expected = expected;
		r->stored = st.pending;
		if (st.pending != expected) {
			char d[160];
			snprintf(d, sizeof d, "%" PRIu64 " records stored, %" PRIu64 " appended", st.pending,
				 expected);
			fail(r, "count after the run", d);
		}
	}
	spool_close(s);
}

static double rate(uint64_t events, uint64_t ns)
{
	return ns ? (double)events * 1e9 / (double)ns : NAN;
}

/* sync-1t, commit-1t, buffered-1t. */
static void case_spool_1t(const struct ctx *cx, struct result *r, enum spool_durability d, uint64_t n,
			  uint64_t warm)
{
	char dir[PATH_MAX + 32];
	case_dir(cx, r->name, dir, sizeof dir);
	struct spool_options o;
	bench_spool_options(cx, d, &o);
	describe_options(&o, r->config, sizeof r->config);
	r->durability = spool_durability_name(d);
	r->threads = 1;
	r->processes = 1;

	uint32_t *lat = malloc((n ? n : 1) * sizeof *lat);
	unsigned char *buf = malloc(cx->pl.len);
	struct spool *s = NULL;
	char err[512] = "";
	if (!lat || !buf) {
		fail(r, "malloc", strerror(ENOMEM));
		goto out;
	}
	memcpy(buf, cx->pl.buf, cx->pl.len);
	int rc = spool_open(dir, &o, &s, err, sizeof err);
	if (rc != 0) {
		fail(r, "spool_open", err[0] ? err : spool_strerror(rc));
		goto out;
	}

	struct loop_out w, m;
	append_loop(s, buf, &cx->pl, worker_base(1000), warm, NULL, &w);
	if (w.errors)
		fail(r, "warm-up spool_append", spool_strerror(w.first_err));
	rc = spool_sync(s, SYNC_TIMEOUT_S, NULL);
	if (rc != 0)
		fail(r, "warm-up spool_sync", spool_strerror(rc));

	uint64_t cpu0 = cpu_ns();
	append_loop(s, buf, &cx->pl, worker_base(0), n, lat, &m);
	uint64_t s0 = now_ns();
	rc = spool_sync(s, SYNC_TIMEOUT_S, NULL);
	uint64_t s1 = now_ns();
	uint64_t cpu1 = cpu_ns();
	if (rc != 0)
		fail(r, "final spool_sync", spool_strerror(rc));
	rc = spool_close(s);
	s = NULL;
	if (rc != 0)
		fail(r, "spool_close", spool_strerror(rc));

	r->events = m.ok;
	r->errors = m.errors;
	if (m.ok)
		r->cpu_us_per_event = (double)(cpu1 - cpu0) / 1e3 / (double)m.ok;
	if (m.errors)
		note_error(r, "spool_append", spool_strerror(m.first_err));
	lat_fill(r, lat, m.ok);
	r->append_events_per_sec = rate(m.ok, m.t_end - m.t_start);
	if (d == SPOOL_SYNC) {
		r->elapsed_s = (double)(m.t_end - m.t_start) / 1e9;
		r->events_per_sec = r->append_events_per_sec;
		r->throughput_basis = "append (each append returns durable)";
		r->synced_events_per_sec = NAN;
		r->final_sync_ms = (double)(s1 - s0) / 1e6;
	} else {
		r->synced_events_per_sec = rate(m.ok, s1 - m.t_start);
		r->final_sync_ms = (double)(s1 - s0) / 1e6;
		if (d == SPOOL_COMMIT) {
			r->elapsed_s = (double)(s1 - m.t_start) / 1e9;
			r->events_per_sec = r->synced_events_per_sec;
			r->throughput_basis = "append+final spool_sync (durable in LMDB)";
		} else {
			r->elapsed_s = (double)(m.t_end - m.t_start) / 1e9;
			r->events_per_sec = r->append_events_per_sec;
			r->throughput_basis = "append (in memory, as the mode promises)";
		}
	}
	if (!r->failed)
		check_stored(cx, dir, r, w.ok + m.ok);
out:
	if (s)
		spool_close(s);
	free(buf);
	free(lat);
	rm_rf(dir);
}

/* sync-8t: SYNC_THREADS threads appending on one handle. */
struct worker {
	pthread_t th;
	struct spool *s;
	const struct payload *pl;
	pthread_barrier_t *bar;
	unsigned id;
	uint64_t n;
	uint32_t *lat;
	struct loop_out out;
	bool nomem;
};

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	unsigned char *buf = malloc(w->pl->len);
	if (buf)
		memcpy(buf, w->pl->buf, w->pl->len);
	else
		w->nomem = true;
	pthread_barrier_wait(w->bar);
	if (buf)
		append_loop(w->s, buf, w->pl, worker_base(w->id), w->n, w->lat, &w->out);
	free(buf);
	return NULL;
}

static void case_sync_8t(const struct ctx *cx, struct result *r, uint64_t n, uint64_t warm)
{
	char dir[PATH_MAX + 32];
	case_dir(cx, r->name, dir, sizeof dir);
	struct spool_options o;
	bench_spool_options(cx, SPOOL_SYNC, &o);
	describe_options(&o, r->config, sizeof r->config);
	r->durability = spool_durability_name(SPOOL_SYNC);
	r->threads = SYNC_THREADS;
	r->processes = 1;
	r->throughput_basis = "append (each append returns durable)";
	r->synced_events_per_sec = NAN;
	r->final_sync_ms = NAN;

	uint64_t per = n / SYNC_THREADS;
	if (per == 0)
		per = 1;
	uint32_t *lat = malloc(per * SYNC_THREADS * sizeof *lat);
	unsigned char *buf = malloc(cx->pl.len);
	struct worker w[SYNC_THREADS];
	pthread_barrier_t bar;
	struct spool *s = NULL;
	char err[512] = "";
	memset(w, 0, sizeof w);
	if (!lat || !buf) {
		fail(r, "malloc", strerror(ENOMEM));
		goto out;
	}
	memcpy(buf, cx->pl.buf, cx->pl.len);
	int rc = spool_open(dir, &o, &s, err, sizeof err);
	if (rc != 0) {
		fail(r, "spool_open", err[0] ? err : spool_strerror(rc));
		goto out;
	}
	struct loop_out wu;
	append_loop(s, buf, &cx->pl, worker_base(1000), warm, NULL, &wu);
	if (wu.errors)
		fail(r, "warm-up spool_append", spool_strerror(wu.first_err));

	pthread_barrier_init(&bar, NULL, SYNC_THREADS);
	int started = 0;
	for (int i = 0; i < SYNC_THREADS; i++) {
		w[i].s = s;
		w[i].pl = &cx->pl;
		w[i].bar = &bar;
		w[i].id = (unsigned)i;
		w[i].n = per;
		w[i].lat = lat + (size_t)i * per;
		rc = pthread_create(&w[i].th, NULL, worker_main, &w[i]);
		if (rc != 0) {
			/* The barrier would never open: give up before it matters. */
			fprintf(stderr, "spool-bench: pthread_create: %s\n", strerror(rc));
			rm_rf(cx->root);
			exit(1);
		}
		started++;
	}
	for (int i = 0; i < started; i++)
		pthread_join(w[i].th, NULL);
	pthread_barrier_destroy(&bar);

	uint64_t t0 = UINT64_MAX, t1 = 0, k = 0;
	for (int i = 0; i < SYNC_THREADS; i++) {
		if (w[i].nomem)
			fail(r, "malloc", strerror(ENOMEM));
		if (w[i].out.t_start < t0)
			t0 = w[i].out.t_start;
		if (w[i].out.t_end > t1)
			t1 = w[i].out.t_end;
		if (w[i].out.errors && r->errors == 0)
			note_error(r, "spool_append", spool_strerror(w[i].out.first_err));
		r->errors += w[i].out.errors;
		memmove(lat + k, w[i].lat, w[i].out.ok * sizeof *lat);
		k += w[i].out.ok;
	}
	rc = spool_close(s);
	s = NULL;
	if (rc != 0)
		fail(r, "spool_close", spool_strerror(rc));
	r->events = k;
	lat_fill(r, lat, k);
	r->elapsed_s = t1 > t0 ? (double)(t1 - t0) / 1e9 : NAN;
	r->events_per_sec = t1 > t0 ? rate(k, t1 - t0) : NAN;
	r->append_events_per_sec = r->events_per_sec;
	if (!r->failed)
		check_stored(cx, dir, r, wu.ok + k);
out:
	if (s)
		spool_close(s);
	free(buf);
	free(lat);
	rm_rf(dir);
}

/* commit-4p: COMMIT_PROCESSES forked processes, each with its own handle. */
struct child_res {
	uint64_t t_start, t_append_end, t_sync_end;
	uint64_t warm_ok, ok, errors;
	int first_err;
	int failed_rc;
	char failed_what[64];
};

static void child_fail(struct child_res *cr, const char *what, int rc)
{
	if (cr->failed_rc)
		return;
	cr->failed_rc = rc ? rc : -1;
	snprintf(cr->failed_what, sizeof cr->failed_what, "%s", what);
}

static void child_main(const struct ctx *cx, const char *dir, unsigned id, uint64_t n, uint64_t warm,
		       struct child_res *cr, uint32_t *lat, int ready_fd, int go_fd)
{
	struct spool_options o;
	bench_spool_options(cx, SPOOL_COMMIT, &o);
	struct spool *s = NULL;
	char err[512] = "";
	unsigned char *buf = malloc(cx->pl.len);
	char c = 'r';
	if (!buf) {
		child_fail(cr, "malloc", -ENOMEM);
		(void)!write(ready_fd, &c, 1);
		_exit(1);
	}
	memcpy(buf, cx->pl.buf, cx->pl.len);
	int rc = spool_open(dir, &o, &s, err, sizeof err);
	if (rc != 0) {
		child_fail(cr, "spool_open", rc);
		(void)!write(ready_fd, &c, 1);
		_exit(1);
	}
	struct loop_out w, m;
	append_loop(s, buf, &cx->pl, worker_base(1000 + id), warm, NULL, &w);
	cr->warm_ok = w.ok;
	if (w.errors)
		child_fail(cr, "warm-up spool_append", w.first_err);
	rc = spool_sync(s, SYNC_TIMEOUT_S, NULL);
	if (rc != 0)
		child_fail(cr, "warm-up spool_sync", rc);

	(void)!write(ready_fd, &c, 1);
	close(ready_fd);
	while (read(go_fd, &c, 1) < 0 && errno == EINTR)
		;
	close(go_fd);

	append_loop(s, buf, &cx->pl, worker_base(id), n, lat, &m);
	rc = spool_sync(s, SYNC_TIMEOUT_S, NULL);
	cr->t_sync_end = now_ns();
	if (rc != 0)
		child_fail(cr, "final spool_sync", rc);
	cr->t_start = m.t_start;
	cr->t_append_end = m.t_end;
	cr->ok = m.ok;
	cr->errors = m.errors;
	cr->first_err = m.first_err;
	rc = spool_close(s);
	if (rc != 0)
		child_fail(cr, "spool_close", rc);
	free(buf);
	_exit(cr->failed_rc ? 1 : 0);
}

static void case_commit_4p(const struct ctx *cx, struct result *r, uint64_t n, uint64_t warm)
{
	char dir[PATH_MAX + 32];
	case_dir(cx, r->name, dir, sizeof dir);
	struct spool_options o;
	bench_spool_options(cx, SPOOL_COMMIT, &o);
	describe_options(&o, r->config, sizeof r->config);
	r->durability = spool_durability_name(SPOOL_COMMIT);
	r->threads = 1;
	r->processes = COMMIT_PROCESSES;
	r->throughput_basis = "append+final spool_sync in every process (durable in LMDB)";

	uint64_t per = n / COMMIT_PROCESSES;
	if (per == 0)
		per = 1;
	size_t shm_len = COMMIT_PROCESSES * sizeof(struct child_res) + per * COMMIT_PROCESSES * sizeof(uint32_t);
	void *shm = mmap(NULL, shm_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (shm == MAP_FAILED) {
		fail(r, "mmap", strerror(errno));
		return;
	}
	struct child_res *cr = shm;
	uint32_t *lat = (uint32_t *)(void *)(cr + COMMIT_PROCESSES);
	memset(cr, 0, COMMIT_PROCESSES * sizeof *cr);

	/* Create the spool once, before any child opens it. */
	{
		struct spool_options so;
		bench_spool_options(cx, SPOOL_SYNC, &so);
		struct spool *s = NULL;
		char err[512] = "";
		int rc = spool_open(dir, &so, &s, err, sizeof err);
		if (rc != 0) {
			fail(r, "spool_open", err[0] ? err : spool_strerror(rc));
			munmap(shm, shm_len);
			rm_rf(dir);
			return;
		}
		spool_close(s);
	}

	int ready[2], go[2];
	if (pipe2(ready, O_CLOEXEC) != 0 || pipe2(go, O_CLOEXEC) != 0) {
		fail(r, "pipe", strerror(errno));
		munmap(shm, shm_len);
		rm_rf(dir);
		return;
	}
	pid_t pids[COMMIT_PROCESSES];
	int nchild = 0;
	fflush(NULL);
	for (unsigned i = 0; i < COMMIT_PROCESSES; i++) {
		pid_t p = fork();
		if (p == 0) {
			prctl(PR_SET_PDEATHSIG, SIGKILL);
			if (getppid() != g_main_pid)
				_exit(1);
			close(ready[0]);
			close(go[1]);
			child_main(cx, dir, i, per, warm, &cr[i], lat + (size_t)i * per, ready[1], go[0]);
			_exit(1); /* not reached */
		}
		if (p < 0) {
			fail(r, "fork", strerror(errno));
			break;
		}
		pids[nchild++] = p;
	}
	close(ready[1]);
	close(go[0]);
	/* Wait until every child has opened the spool and warmed up (or exited),
	 * then start them all at once by closing the go pipe. */
	int got = 0;
	while (got < nchild) {
		char c;
		ssize_t k = read(ready[0], &c, 1);
		if (k == 1)
			got++;
		else if (k == 0 || errno != EINTR)
			break;
	}
	close(go[1]);
	close(ready[0]);
	for (int i = 0; i < nchild; i++) {
		int st = 0;
		while (waitpid(pids[i], &st, 0) < 0 && errno == EINTR)
			;
		if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
			char d[96];
			if (WIFSIGNALED(st))
				snprintf(d, sizeof d, "child %d killed by signal %d", i, WTERMSIG(st));
			else
				snprintf(d, sizeof d, "child %d exited with %d", i, WEXITSTATUS(st));
			fail(r, "commit-4p", d);
		}
	}

	uint64_t t0 = UINT64_MAX, ta = 0, ts = 0, k = 0, warm_ok = 0;
	for (int i = 0; i < nchild; i++) {
		if (cr[i].failed_rc) {
			char d[160];
			snprintf(d, sizeof d, "child %d: %s", i, spool_strerror(cr[i].failed_rc));
			fail(r, cr[i].failed_what, d);
		}
		if (cr[i].errors && r->errors == 0)
			note_error(r, "spool_append", spool_strerror(cr[i].first_err));
		r->errors += cr[i].errors;
		if (cr[i].t_start && cr[i].t_start < t0)
			t0 = cr[i].t_start;
		if (cr[i].t_append_end > ta)
			ta = cr[i].t_append_end;
		if (cr[i].t_sync_end > ts)
			ts = cr[i].t_sync_end;
		memmove(lat + k, lat + (size_t)i * per, cr[i].ok * sizeof *lat);
		k += cr[i].ok;
		warm_ok += cr[i].warm_ok;
	}
	r->events = k;
	lat_fill(r, lat, k);
	if (t0 != UINT64_MAX && ts > t0) {
		r->append_events_per_sec = rate(k, ta - t0);
		r->synced_events_per_sec = rate(k, ts - t0);
		r->events_per_sec = r->synced_events_per_sec;
		r->elapsed_s = (double)(ts - t0) / 1e9;
		r->final_sync_ms = (double)(ts - ta) / 1e6;
	} else {
		r->append_events_per_sec = r->synced_events_per_sec = r->events_per_sec = NAN;
		r->elapsed_s = r->final_sync_ms = NAN;
	}
	munmap(shm, shm_len);
	if (!r->failed)
		check_stored(cx, dir, r, warm_ok + k);
	rm_rf(dir);
}

/* ------------------------------------------------------------ mlog-stdin */

#define MLOG_LINE_BYTES 190   /* each line's message; the '\n' comes on top */
#define MLOG_WRITE_LINES 4096 /* lines per write() into the pipe */

/* Writes lines first..first+n-1 ("line 0000000042 xxx...") to fd. */
static int mlog_write_lines(int fd, char *chunk, uint64_t first, uint64_t n)
{
	for (uint64_t i = 0; i < n; i++) {
		char *l = chunk + (size_t)i * (MLOG_LINE_BYTES + 1);
		char num[16];
		snprintf(num, sizeof num, "%010" PRIu64, (uint64_t)((first + i) % 10000000000ull));
		memcpy(l + 5, num, 10);
	}
	size_t len = (size_t)n * (MLOG_LINE_BYTES + 1), off = 0;
	while (off < len) {
		ssize_t w = write(fd, chunk + off, len - off);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		off += (size_t)w;
	}
	return 0;
}

/* The build's mlog: <build>/tools/mlog, this program being
 * <build>/bench/spool-bench. */
static void mlog_default_path(char *out, size_t len)
{
	char exe[PATH_MAX - 16]; /* room for "/tools/mlog" in a PATH_MAX out */
	ssize_t k = readlink("/proc/self/exe", exe, sizeof exe - 1);
	out[0] = '\0';
	if (k <= 0)
		return;
	exe[k] = '\0';
	for (int up = 0; up < 2; up++) {
		char *slash = strrchr(exe, '/');
		if (!slash)
			return;
		*slash = '\0';
	}
	snprintf(out, len, "%s/tools/mlog", exe);
}

/* mlog-stdin: n lines through `mlog --spool DIR -`, fed from a pipe. */
static void case_mlog_stdin(const struct ctx *cx, struct result *r, uint64_t n)
{
	char dir[PATH_MAX + 32];
	case_dir(cx, r->name, dir, sizeof dir);
	r->durability = spool_durability_name(SPOOL_SYNC);
	r->threads = 1;
	r->processes = 1;
	r->payload_bytes = MLOG_LINE_BYTES + 1; /* a line on the pipe, not an event */
	r->throughput_basis = "lines through `mlog -` from a pipe, start to exit 0 (groups synced)";
	snprintf(r->config, sizeof r->config,
		 "%s --spool DIR -; lines of %d bytes and a newline; MASTER_LOG_MAX_SPOOL_BYTES=%llu, "
		 "other MASTER_LOG_* as in the environment",
		 cx->mlog, MLOG_LINE_BYTES, 4 * GIB);
	if (access(cx->mlog, X_OK) != 0) {
		fail(r, "mlog", "not found (build tools/mlog, or give --mlog PATH)");
		return;
	}
	char *chunk = malloc((size_t)MLOG_WRITE_LINES * (MLOG_LINE_BYTES + 1));
	int p[2] = { -1, -1 };
	if (!chunk || pipe2(p, O_CLOEXEC) != 0) {
		fail(r, "setup", strerror(chunk ? errno : ENOMEM));
		free(chunk);
		return;
	}
	for (size_t i = 0; i < MLOG_WRITE_LINES; i++) {
		char *l = chunk + i * (MLOG_LINE_BYTES + 1);
		memset(l, 'x', MLOG_LINE_BYTES);
		memcpy(l, "line ", 5);
		l[15] = ' ';
		l[MLOG_LINE_BYTES] = '\n';
	}
	/* mlog exiting early must fail the case, not kill the bench */
	struct sigaction ign = { .sa_handler = SIG_IGN }, old;
	sigaction(SIGPIPE, &ign, &old);
	fflush(NULL);
	uint64_t t0 = now_ns();
	pid_t pid = fork();
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		dup2(p[0], STDIN_FILENO);
		char bytes[32];
		snprintf(bytes, sizeof bytes, "%llu", 4 * GIB);
		setenv("MASTER_LOG_MAX_SPOOL_BYTES", bytes, 1);
		execl(cx->mlog, "mlog", "--spool", dir, "-", (char *)NULL);
		_exit(127);
	}
	close(p[0]);
	bool write_failed = false;
	for (uint64_t done = 0; pid > 0 && done < n && !write_failed;) {
		uint64_t k = n - done < MLOG_WRITE_LINES ? n - done : MLOG_WRITE_LINES;
		write_failed = mlog_write_lines(p[1], chunk, done + 1, k) != 0;
		done += k;
	}
	close(p[1]);
	int st = 0;
	while (pid > 0 && waitpid(pid, &st, 0) < 0 && errno == EINTR)
		;
	uint64_t t1 = now_ns();
	sigaction(SIGPIPE, &old, NULL);
	free(chunk);
	if (pid < 0) {
		fail(r, "fork", strerror(errno));
	} else if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
		char d[96];
		if (WIFSIGNALED(st))
			snprintf(d, sizeof d, "killed by signal %d", WTERMSIG(st));
		else
			snprintf(d, sizeof d, "exited with %d%s", WEXITSTATUS(st),
				 write_failed ? " before reading every line" : "");
		fail(r, "mlog", d);
	} else {
		r->events = n;
		r->elapsed_s = (double)(t1 - t0) / 1e9;
		r->events_per_sec = rate(n, t1 - t0);
		r->append_events_per_sec = r->events_per_sec;
		check_stored(cx, dir, r, n);
	}
	rm_rf(dir);
}

/* ------------------------------------------------------------- mlog-call */

#define MLOG_CALL_MESSAGE_BYTES 190

struct mlog_call_out {
	uint64_t ok, errors;
	double cpu_s, wall_s;
	char error[256];
};

/* In the child: warm calls, then n timed ones and the shutdown. */
static void mlog_call_child(const char *dir, uint64_t n, uint64_t warm, struct mlog_call_out *o)
{
	struct mlog_config cfg = {
		.spool_dir = dir,
		.durability = "commit",
		.backpressure = MLOG_OFF,
		.spawn_agent = MLOG_OFF,
		.max_spool_bytes = (int64_t)(4 * GIB),
	};
	if (mlog_configure_ex(&cfg, o->error, sizeof o->error) != 0) {
		o->errors = 1;
		return;
	}
	char msg[MLOG_CALL_MESSAGE_BYTES + 1];
	memset(msg, 'x', MLOG_CALL_MESSAGE_BYTES);
	msg[MLOG_CALL_MESSAGE_BYTES] = '\0';
	for (uint64_t i = 0; i < warm; i++) {
		snprintf(msg, 11, "%010" PRIu64, i);
		msg[10] = ' ';
		struct mlog_result r = mlog("%s", msg);
		if (!r.ok) {
			o->errors++;
			snprintf(o->error, sizeof o->error, "warm-up: %.200s", r.error);
			return;
		}
	}
	uint64_t c0 = cpu_ns(), t0 = now_ns();
	for (uint64_t i = 0; i < n; i++) {
		snprintf(msg, 11, "%010" PRIu64, warm + i);
		msg[10] = ' ';
		struct mlog_result r = mlog("%s", msg);
		if (r.ok) {
			o->ok++;
		} else {
			if (!o->errors++)
				snprintf(o->error, sizeof o->error, "%s", r.error);
			if (o->errors >= MAX_APPEND_ERRORS)
				break;
		}
	}
	mlog_shutdown(); /* the ring's events synced into LMDB */
	o->cpu_s = (double)(cpu_ns() - c0) / 1e9;
	o->wall_s = (double)(now_ns() - t0) / 1e9;
}

static void case_mlog_call(const struct ctx *cx, struct result *r, uint64_t n, uint64_t warm)
{
	char dir[PATH_MAX + 32];
	case_dir(cx, r->name, dir, sizeof dir);
	r->durability = spool_durability_name(SPOOL_COMMIT);
	r->threads = 1;
	r->processes = 1;
	r->payload_bytes = MLOG_CALL_MESSAGE_BYTES; /* the message, not the event */
	r->throughput_basis = "mlog() calls, then mlog_shutdown() (durable in LMDB)";
	snprintf(r->config, sizeof r->config,
		 "mlog(\"%%s\", %d-byte message); durability commit, backpressure off, spawn_agent "
		 "off, max_spool_bytes 4 GiB, other MASTER_LOG_* as in the environment; spool defaults",
		 MLOG_CALL_MESSAGE_BYTES);
	struct mlog_call_out *o = mmap(NULL, sizeof *o, PROT_READ | PROT_WRITE,
				       MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (o == MAP_FAILED) {
		fail(r, "mmap", strerror(errno));
		return;
	}
	memset(o, 0, sizeof *o);
	fflush(NULL);
	pid_t pid = fork();
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		mlog_call_child(dir, n, warm, o);
		_exit(0);
	}
	int st = 0;
	while (pid > 0 && waitpid(pid, &st, 0) < 0 && errno == EINTR)
		;
	if (pid < 0) {
		fail(r, "fork", strerror(errno));
	} else if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
		fail(r, "child", WIFSIGNALED(st) ? strsignal(WTERMSIG(st)) : "exited with an error");
	} else {
		r->events = o->ok;
		r->errors = o->errors;
		if (o->errors)
			note_error(r, "mlog", o->error);
		if (o->ok) {
			r->cpu_us_per_event = o->cpu_s * 1e6 / (double)o->ok;
			r->elapsed_s = o->wall_s;
			r->events_per_sec = (double)o->ok / o->wall_s;
			r->append_events_per_sec = r->events_per_sec;
		}
		if (!r->failed && !o->errors)
			check_stored(cx, dir, r, warm + o->ok);
	}
	munmap(o, sizeof *o);
	rm_rf(dir);
}

/* ---------------------------------------------------------------- limits */

static void case_raw_fdatasync(const struct ctx *cx, struct result *r, uint64_t n, uint64_t warm)
{
	char path[PATH_MAX + 32];
	snprintf(path, sizeof path, "%s/raw-fdatasync.dat", cx->root);
	r->durability = "fdatasync";
	r->threads = 1;
	r->processes = 1;
	r->payload_bytes = 4096;
	r->throughput_basis = "pwrite+fdatasync";
	r->synced_events_per_sec = NAN;
	r->final_sync_ms = NAN;
	snprintf(r->config, sizeof r->config,
		 "4096-byte pwrite at a cycling offset in a preallocated, synced %d KiB file, then fdatasync",
		 RAW_FILE_BLOCKS * 4);

	uint32_t *lat = malloc((n ? n : 1) * sizeof *lat);
	void *blk = NULL;
	int fd = -1;
	if (!lat || posix_memalign(&blk, 4096, 4096) != 0) {
		fail(r, "malloc", strerror(ENOMEM));
		goto out;
	}
	memset(blk, 0x5a, 4096);
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0) {
		fail(r, "open", strerror(errno));
		goto out;
	}
	for (int i = 0; i < RAW_FILE_BLOCKS; i++) {
		if (pwrite(fd, blk, 4096, (off_t)i * 4096) != 4096) {
			fail(r, "pwrite", strerror(errno));
			goto out;
		}
	}
	if (fsync(fd) != 0) {
		fail(r, "fsync", strerror(errno));
		goto out;
	}
	uint64_t k = 0, t0 = 0;
	for (uint64_t i = 0; i < warm + n; i++) {
		if (i == warm)
			t0 = now_ns();
		memcpy(blk, &i, sizeof i);
		uint64_t a = now_ns();
		ssize_t wr = pwrite(fd, blk, 4096, (off_t)(i % RAW_FILE_BLOCKS) * 4096);
		int rc = fdatasync(fd);
		uint64_t b = now_ns();
		if (wr != 4096 || rc != 0) {
			r->errors++;
			note_error(r, "pwrite+fdatasync", strerror(errno));
			if (r->errors >= MAX_APPEND_ERRORS)
				break;
			continue;
		}
		if (i >= warm)
			lat[k++] = clamp32(b - a);
	}
	uint64_t t1 = now_ns();
	r->events = k;
	lat_fill(r, lat, k);
	r->elapsed_s = (double)(t1 - t0) / 1e9;
	r->events_per_sec = rate(k, t1 - t0);
	r->append_events_per_sec = r->events_per_sec;
out:
	if (fd >= 0)
		close(fd);
	free(blk);
	free(lat);
	unlink(path);
}

static void case_lmdb(const struct ctx *cx, struct result *r, unsigned flags, uint64_t n, uint64_t warm)
{
	char dir[PATH_MAX + 32];
	case_dir(cx, r->name, dir, sizeof dir);
	r->durability = (flags & MDB_NOSYNC) ? "lmdb-nosync" : "lmdb-default";
	r->threads = 1;
	r->processes = 1;
	r->throughput_basis = "one put per committed transaction";
	r->synced_events_per_sec = NAN;
	r->final_sync_ms = NAN;
	snprintf(r->config, sizeof r->config,
		 "mdb_env_open flags=%s, map 2 GiB, mdb_put(MDB_APPEND, 8-byte big-endian key, bench payload) "
		 "in its own write transaction",
		 (flags & MDB_NOSYNC) ? "MDB_NOSYNC" : "0 (default: full sync)");

	uint32_t *lat = malloc((n ? n : 1) * sizeof *lat);
	MDB_env *env = NULL;
	MDB_txn *txn = NULL;
	MDB_dbi dbi;
	int rc;
	if (!lat) {
		fail(r, "malloc", strerror(ENOMEM));
		goto out;
	}
	if (mkdir(dir, 0700) != 0) {
		fail(r, "mkdir", strerror(errno));
		goto out;
	}
	if ((rc = mdb_env_create(&env)) != 0 || (rc = mdb_env_set_mapsize(env, (size_t)(2 * GIB))) != 0 ||
	    (rc = mdb_env_open(env, dir, flags, 0600)) != 0) {
		fail(r, "mdb_env_open", mdb_strerror(rc));
		goto out;
	}
	if ((rc = mdb_txn_begin(env, NULL, 0, &txn)) != 0 || (rc = mdb_dbi_open(txn, NULL, 0, &dbi)) != 0) {
		fail(r, "mdb_dbi_open", mdb_strerror(rc));
		if (txn)
			mdb_txn_abort(txn);
		goto out;
	}
	if ((rc = mdb_txn_commit(txn)) != 0) {
		fail(r, "mdb_txn_commit", mdb_strerror(rc));
		goto out;
	}
	unsigned char *val = malloc(cx->pl.len);
	if (!val) {
		fail(r, "malloc", strerror(ENOMEM));
		goto out;
	}
	memcpy(val, cx->pl.buf, cx->pl.len);
	uint64_t k = 0, t0 = 0;
	for (uint64_t i = 0; i < warm + n; i++) {
		if (i == warm)
			t0 = now_ns();
		uint64_t seq = i + 1;
		unsigned char key[8];
		for (int b = 0; b < 8; b++)
			key[b] = (unsigned char)(seq >> (56 - 8 * b));
		payload_patch(val, &cx->pl, worker_base(2000) + i);
		MDB_val mk = { sizeof key, key }, mv = { cx->pl.len, val };
		uint64_t a = now_ns();
		rc = mdb_txn_begin(env, NULL, 0, &txn);
		if (rc == 0) {
			rc = mdb_put(txn, dbi, &mk, &mv, MDB_APPEND);
			if (rc == 0)
				rc = mdb_txn_commit(txn);
			else
				mdb_txn_abort(txn);
		}
		uint64_t b2 = now_ns();
		if (rc != 0) {
			r->errors++;
			note_error(r, "mdb put/commit", mdb_strerror(rc));
			if (r->errors >= MAX_APPEND_ERRORS)
				break;
			continue;
		}
		if (i >= warm)
			lat[k++] = clamp32(b2 - a);
	}
	uint64_t t1 = now_ns();
	free(val);
	r->events = k;
	lat_fill(r, lat, k);
	r->elapsed_s = (double)(t1 - t0) / 1e9;
	r->events_per_sec = rate(k, t1 - t0);
	r->append_events_per_sec = r->events_per_sec;
out:
	if (env)
		mdb_env_close(env);
	free(lat);
	rm_rf(dir);
}

/* ---------------------------------------------------- limits and targets */

static void link_and_judge(struct result *res)
{
	for (int c = 0; c < C_COUNT; c++) {
		struct result *r = &res[c];
		r->limit_name = NULL;
		r->limit_p50_us = r->ratio_p50 = r->limit_events_per_sec = r->ratio_throughput = NAN;
		r->limit_cpu_us_per_event = r->ratio_cpu = NAN;
		r->meets_target = -1;
		r->target = NULL;
		if (!r->ran)
			continue;
		int l = case_limit[c];
		if (l >= 0 && res[l].ran) {
			const struct result *lim = &res[l];
			r->limit_name = lim->name;
			if (lim->events > 0) {
				r->limit_p50_us = lim->p50_us;
				r->limit_events_per_sec = lim->events_per_sec;
				if (r->events > 0 && lim->p50_us > 0)
					r->ratio_p50 = r->p50_us / lim->p50_us;
				if (r->events > 0 && lim->events_per_sec > 0)
					r->ratio_throughput = r->events_per_sec / lim->events_per_sec;
				r->limit_cpu_us_per_event = lim->cpu_us_per_event;
				if (r->events > 0 && lim->cpu_us_per_event > 0)
					r->ratio_cpu = r->cpu_us_per_event / lim->cpu_us_per_event;
			}
		}
		bool bad = r->events == 0 || r->errors > 0 || r->failed;
		switch (c) {
		case C_SYNC_1T:
			r->target = "ratio_p50 <= 1.2 (p50 within 1.2x of lmdb-put-sync)";
			r->meets_target = bad ? 0 : isnan(r->ratio_p50) ? -1 : r->ratio_p50 <= 1.2;
			break;
		case C_SYNC_8T:
			r->target = "ratio_throughput >= 5 (group commit: 5x the sync-1t events/s)";
			r->meets_target = bad ? 0 : isnan(r->ratio_throughput) ? -1 : r->ratio_throughput >= 5.0;
			break;
		case C_COMMIT_1T:
			r->target = "ratio_p50 <= 0.5 (vs lmdb-put-nosync) and events_per_sec > 1000000 "
				    "(append+final sync)";
			r->meets_target = bad ? 0
					  : isnan(r->ratio_p50) ? -1
								: (r->ratio_p50 <= 0.5 && r->events_per_sec > 1e6);
			break;
		case C_BUFFERED_1T:
			r->target = "p50_us < 0.5 and events_per_sec > 2000000";
			r->meets_target = bad ? 0 : (r->p50_us < 0.5 && r->events_per_sec > 2e6);
			break;
		case C_MLOG_STDIN:
			r->target = "events_per_sec >= 300000 (lines/s through `mlog -`, groups synced)";
			r->meets_target = bad ? 0 : r->events_per_sec >= 3e5;
			break;
		case C_MLOG_CALL:
			r->target = "cpu_us_per_event <= 1.0 (CPU per mlog() call, 190-byte message, "
				    "commit mode)";
			r->meets_target = bad ? 0 : r->cpu_us_per_event <= 1.0;
			break;
		default:
			r->target = c == C_COMMIT_4P ? "none (informational)" : "none (machine limit)";
			r->meets_target = -1;
			break;
		}
	}
}

/* ---------------------------------------------------------------- output */

static void json_str(FILE *f, const char *s)
{
	if (!s) {
		fputs("null", f);
		return;
	}
	fputc('"', f);
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		if (*p == '"' || *p == '\\') {
			fputc('\\', f);
			fputc(*p, f);
		} else if (*p < 0x20) {
			fprintf(f, "\\u%04x", *p);
		} else {
			fputc(*p, f);
		}
	}
	fputc('"', f);
}

static void json_key(FILE *f, const char *k)
{
	fputs(",\n    ", f);
	json_str(f, k);
	fputs(": ", f);
}

static void json_num(FILE *f, const char *k, double v, int prec)
{
	json_key(f, k);
	if (isnan(v) || isinf(v))
		fputs("null", f);
	else
		fprintf(f, "%.*f", prec, v);
}

static void json_u64(FILE *f, const char *k, uint64_t v)
{
	json_key(f, k);
	fprintf(f, "%" PRIu64, v);
}

static void json_kstr(FILE *f, const char *k, const char *v)
{
	json_key(f, k);
	json_str(f, v);
}

static void print_json(FILE *f, const struct ctx *cx, const struct result *res)
{
	bool first = true;
	fputs("[", f);
	for (int c = 0; c < C_COUNT; c++) {
		const struct result *r = &res[c];
		if (!r->ran)
			continue;
		fputs(first ? "\n  {\n    \"name\": " : ",\n  {\n    \"name\": ", f);
		first = false;
		json_str(f, r->name);
		json_kstr(f, "durability", r->durability);
		json_u64(f, "threads", (uint64_t)r->threads);
		json_u64(f, "processes", (uint64_t)r->processes);
		json_u64(f, "payload_bytes", r->payload_bytes);
		json_u64(f, "events", r->events);
		json_u64(f, "errors", r->errors);
		json_kstr(f, "error", r->error[0] ? r->error : NULL);
		json_num(f, "elapsed_s", r->elapsed_s, 6);
		json_num(f, "events_per_sec", r->events_per_sec, 1);
		json_kstr(f, "throughput_basis", r->throughput_basis);
		json_num(f, "append_events_per_sec", r->append_events_per_sec, 1);
		json_num(f, "synced_events_per_sec", r->synced_events_per_sec, 1);
		json_num(f, "final_sync_ms", r->final_sync_ms, 3);
		json_num(f, "p50_us", r->p50_us, 3);
		json_num(f, "p90_us", r->p90_us, 3);
		json_num(f, "p99_us", r->p99_us, 3);
		json_num(f, "p999_us", r->p999_us, 3);
		json_num(f, "min_us", r->min_us, 3);
		json_num(f, "max_us", r->max_us, 3);
		json_num(f, "mean_us", r->mean_us, 3);
		json_kstr(f, "limit_name", r->limit_name);
		json_num(f, "limit_p50_us", r->limit_p50_us, 3);
		json_num(f, "ratio_p50", r->ratio_p50, 4);
		json_num(f, "limit_events_per_sec", r->limit_events_per_sec, 1);
		json_num(f, "ratio_throughput", r->ratio_throughput, 4);
		json_num(f, "cpu_us_per_event", r->cpu_us_per_event, 3);
		json_num(f, "limit_cpu_us_per_event", r->limit_cpu_us_per_event, 3);
		json_num(f, "ratio_cpu", r->ratio_cpu, 4);
		json_kstr(f, "target", r->target);
		json_key(f, "meets_target");
		fputs(r->meets_target < 0 ? "null" : r->meets_target ? "true" : "false", f);
		json_key(f, "stored");
		if (r->stored_checked)
			fprintf(f, "%" PRIu64, r->stored);
		else
			fputs("null", f);
		json_key(f, "stored_expected");
		if (r->stored_checked)
			fprintf(f, "%" PRIu64, r->stored_expected);
		else
			fputs("null", f);
		json_kstr(f, "config", r->config);
		json_kstr(f, "dir", cx->root);
		json_kstr(f, "filesystem", cx->fs);
		json_u64(f, "cpus", (uint64_t)cx->cpus);
		json_num(f, "clock_overhead_ns", cx->clock_ns, 1);
		fputs("\n  }", f);
	}
	fputs(first ? "]\n" : "\n]\n", f);
}

static void fmt_num(char *b, size_t n, double v, int prec)
{
	if (isnan(v) || isinf(v))
		snprintf(b, n, "-");
	else
		snprintf(b, n, "%.*f", prec, v);
}

static void print_table(FILE *f, const struct ctx *cx, const struct result *res)
{
	fprintf(f, "spool-bench %s: %s\n", SPOOL_VERSION_STRING, cx->root);
	fprintf(f, "  filesystem %s%s\n", cx->fs, cx->fs_is_tmpfs ? "  ** tmpfs: fdatasync is free here **" : "");
	fprintf(f, "  %ld cpus, payload %zu bytes (msgpack), clock_gettime %.0f ns per read (inside each timing)\n\n",
		cx->cpus, cx->pl.len, cx->clock_ns);
	fprintf(f, "%-16s %-12s %3s %4s %9s %12s %9s %9s %9s %9s  %-15s %9s %9s  %s\n", "case", "mode", "thr",
		"proc", "events", "events/s", "p50 us", "p99 us", "p99.9 us", "max us", "limit", "ratio_p50",
		"ratio_thr", "target met");
	for (int c = 0; c < C_COUNT; c++) {
		const struct result *r = &res[c];
		if (!r->ran)
			continue;
		char eps[32], p50[32], p99[32], p999[32], pmax[32], rp[32], rt[32];
		fmt_num(eps, sizeof eps, r->events_per_sec, 0);
		fmt_num(p50, sizeof p50, r->p50_us, 2);
		fmt_num(p99, sizeof p99, r->p99_us, 2);
		fmt_num(p999, sizeof p999, r->p999_us, 2);
		fmt_num(pmax, sizeof pmax, r->max_us, 1);
		fmt_num(rp, sizeof rp, r->ratio_p50, 3);
		fmt_num(rt, sizeof rt, r->ratio_throughput, 3);
		fprintf(f, "%-16s %-12s %3d %4d %9" PRIu64 " %12s %9s %9s %9s %9s  %-15s %9s %9s  %s\n", r->name,
			r->durability ? r->durability : "-", r->threads, r->processes, r->events, eps, p50, p99,
			p999, pmax, r->limit_name ? r->limit_name : "-", rp, rt,
			r->meets_target < 0 ? "n/a" : r->meets_target ? "yes" : "NO");
	}
	fputs("\n", f);
	for (int c = 0; c < C_COUNT; c++) {
		const struct result *r = &res[c];
		if (!r->ran)
			continue;
		if (!isnan(r->cpu_us_per_event))
			fprintf(f, "  %-14s CPU %.3f us per event%s", r->name, r->cpu_us_per_event,
				isnan(r->ratio_cpu) ? "\n" : "");
		if (!isnan(r->cpu_us_per_event) && !isnan(r->ratio_cpu))
			fprintf(f, " (%.2fx %s's %.3f us)\n", r->ratio_cpu, r->limit_name,
				r->limit_cpu_us_per_event);
		if (!isnan(r->synced_events_per_sec))
			fprintf(f, "  %-14s append-only %.0f events/s; with the final spool_sync %.0f events/s "
				   "(final sync %.3f ms)\n",
				r->name, r->append_events_per_sec, r->synced_events_per_sec, r->final_sync_ms);
	}
	for (int c = 0; c < C_COUNT; c++) {
		const struct result *r = &res[c];
		if (r->ran && r->meets_target >= 0)
			fprintf(f, "  %-14s target: %s -> %s\n", r->name, r->target, r->meets_target ? "met" : "MISSED");
	}
	for (int c = 0; c < C_COUNT; c++) {
		const struct result *r = &res[c];
		if (r->ran && r->stored_checked)
			fprintf(f, "  %-14s stored %" PRIu64 " of %" PRIu64 " appended (warm-up included)\n", r->name,
				r->stored, r->stored_expected);
	}
	for (int c = 0; c < C_COUNT; c++) {
		const struct result *r = &res[c];
		if (r->ran && r->error[0])
			fprintf(f, "  %-14s ERROR %s (%" PRIu64 " failed calls)\n", r->name, r->error, r->errors);
	}
	fprintf(f, "\nsettings: %s\n", res[C_COMMIT_1T].ran ? res[C_COMMIT_1T].config
				       : res[C_SYNC_1T].ran  ? res[C_SYNC_1T].config
							     : "(no spool case run)");
}

/* ------------------------------------------------------------------ main */

static void usage(FILE *f)
{
	fputs("usage: spool-bench [options]\n"
	      "Measures libspool append latency and throughput beside this machine's limits\n"
	      "(raw fdatasync, raw LMDB put), all in one temp dir on one file system.\n\n"
	      "  --events N       events for commit-1t, buffered-1t and commit-4p (total over the\n"
	      "                   4 processes), lines for mlog-stdin; lmdb-put-nosync uses\n"
	      "                   min(N, 200000).\n"
	      "                   Default 1000000 (suffixes k, M accepted).\n"
	      "  --sync-events N  events for raw-fdatasync, lmdb-put-sync, sync-1t and sync-8t\n"
	      "                   (total over the 8 threads). Default 5000.\n"
	      "  --cases a,b,c    run only these cases (their limits run too). Cases:\n"
	      "                   raw-fdatasync lmdb-put-sync lmdb-put-nosync sync-1t sync-8t\n"
	      "                   commit-1t buffered-1t commit-4p mlog-stdin mlog-call (default: all)\n"
	      "  --dir DIR        make the temp dir under DIR (default /var/tmp, or the current\n"
	      "                   dir if /var/tmp is tmpfs). Use a real disk: on tmpfs fdatasync is free.\n"
	      "  --ring-mib N     spool ring_bytes in MiB for the staged modes (default 16)\n"
	      "  --mlog PATH      the mlog command for mlog-stdin (default: tools/mlog in the\n"
	      "                   build folder holding this program)\n"
	      "  --quick          small counts, for a smoke test (20000 / 100 events)\n"
	      "  --json           print a JSON array, one object per case\n"
	      "  --help           this text\n\n"
	      "Exit status: 0 when every case ran and stored what it appended (targets are\n"
	      "reported, not enforced); 1 when a case failed or produced no events; 2 on bad usage.\n",
	      f);
}

static int parse_count(const char *s, uint64_t *out)
{
	char *end = NULL;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno || end == s || s[0] == '-')
		return -1;
	if (*end == 'k' || *end == 'K') {
		v *= 1000ull;
		end++;
	} else if (*end == 'M' || *end == 'm') {
		v *= 1000000ull;
		end++;
	}
	if (*end != '\0' || v == 0)
		return -1;
	*out = v;
	return 0;
}

static int parse_cases(const char *list, bool *want)
{
	char *copy = strdup(list);
	if (!copy)
		return -1;
	char *save = NULL;
	int n = 0;
	for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		int found = -1;
		for (int c = 0; c < C_COUNT; c++)
			if (strcmp(tok, case_names[c]) == 0)
				found = c;
		if (strcmp(tok, "all") == 0) {
			for (int c = 0; c < C_COUNT; c++)
				want[c] = true;
			n++;
			continue;
		}
		if (found < 0) {
			fprintf(stderr, "spool-bench: unknown case '%s' (see --help)\n", tok);
			free(copy);
			return -1;
		}
		want[found] = true;
		n++;
	}
	free(copy);
	return n > 0 ? 0 : -1;
}

/* "--opt value" or "--opt=value". */
static const char *opt_value(int argc, char **argv, int *i, const char *name)
{
	size_t l = strlen(name);
	if (strncmp(argv[*i], name, l) != 0)
		return NULL;
	if (argv[*i][l] == '=')
		return argv[*i] + l + 1;
	if (argv[*i][l] == '\0') {
		if (*i + 1 >= argc) {
			fprintf(stderr, "spool-bench: %s needs a value\n", name);
			exit(2);
		}
		return argv[++*i];
	}
	return NULL;
}

int main(int argc, char **argv)
{
	static struct ctx cx;
	static struct result res[C_COUNT];
	bool want[C_COUNT] = { false };
	bool any_case = false, json = false, quick = false;
	bool events_set = false, sync_set = false;
	const char *dir = NULL;
	uint64_t ring_mib = 16;

	cx.events = 1000000;
	cx.sync_events = 5000;
	for (int i = 1; i < argc; i++) {
		const char *v;
		if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
			usage(stdout);
			return 0;
		} else if (strcmp(argv[i], "--json") == 0) {
			json = true;
		} else if (strcmp(argv[i], "--quick") == 0) {
			quick = true;
		} else if ((v = opt_value(argc, argv, &i, "--events"))) {
			if (parse_count(v, &cx.events) != 0) {
				fprintf(stderr, "spool-bench: bad --events '%s'\n", v);
				return 2;
			}
			events_set = true;
		} else if ((v = opt_value(argc, argv, &i, "--sync-events"))) {
			if (parse_count(v, &cx.sync_events) != 0) {
				fprintf(stderr, "spool-bench: bad --sync-events '%s'\n", v);
				return 2;
			}
			sync_set = true;
		} else if ((v = opt_value(argc, argv, &i, "--ring-mib"))) {
			if (parse_count(v, &ring_mib) != 0 || ring_mib > 4096) {
				fprintf(stderr, "spool-bench: bad --ring-mib '%s'\n", v);
				return 2;
			}
		} else if ((v = opt_value(argc, argv, &i, "--cases"))) {
			if (parse_cases(v, want) != 0)
				return 2;
			any_case = true;
		} else if ((v = opt_value(argc, argv, &i, "--dir"))) {
			dir = v;
		} else if ((v = opt_value(argc, argv, &i, "--mlog"))) {
			snprintf(cx.mlog, sizeof cx.mlog, "%s", v);
		} else {
			fprintf(stderr, "spool-bench: unknown argument '%s'\n", argv[i]);
			usage(stderr);
			return 2;
		}
	}
	if (quick) {
		if (!events_set)
			cx.events = 20000;
		if (!sync_set)
			cx.sync_events = 100;
	}
	cx.nosync_events = cx.events < 200000 ? cx.events : 200000;
	cx.warm_sync = quick ? 5 : 20;
	cx.warm_staged = quick ? 500 : 10000;
	cx.warm_nosync = quick ? 200 : 1000;
	cx.ring_bytes = (size_t)(ring_mib * MIB);
	if (!any_case)
		for (int c = 0; c < C_COUNT; c++)
			want[c] = true;
	/* A case's limit runs with it (transitively: limits come first in order). */
	for (int c = C_COUNT - 1; c >= 0; c--)
		if (want[c] && case_limit[c] >= 0)
			want[case_limit[c]] = true;

	if (!dir) {
		dir = "/var/tmp";
		if (access(dir, W_OK) != 0 || path_is_tmpfs(dir))
			dir = ".";
	}
	if (!cx.mlog[0])
		mlog_default_path(cx.mlog, sizeof cx.mlog);
	cx.fs_is_tmpfs = path_is_tmpfs(dir);
	if (cx.fs_is_tmpfs)
		fprintf(stderr, "spool-bench: warning: %s is tmpfs; fdatasync costs nothing there and the "
				"figures say nothing about a disk\n",
			dir);

	snprintf(cx.root, sizeof cx.root, "%s/spool-bench.XXXXXX", dir);
	if (!mkdtemp(cx.root)) {
		fprintf(stderr, "spool-bench: mkdtemp %s: %s\n", cx.root, strerror(errno));
		return 1;
	}
	{
		char rp[PATH_MAX];
		if (realpath(cx.root, rp))
			snprintf(cx.root, sizeof cx.root, "%s", rp);
	}
	g_main_pid = getpid();
	snprintf(g_cleanup_dir, sizeof g_cleanup_dir, "%s", cx.root);
	g_cleanup_armed = 1;
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_fatal_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);

	fs_describe(cx.root, cx.fs, sizeof cx.fs);
	cx.cpus = sysconf(_SC_NPROCESSORS_ONLN);
	if (payload_build(&cx.pl) != 0) {
		fprintf(stderr, "spool-bench: could not build the payload\n");
		rm_rf(cx.root);
		return 1;
	}
	cx.clock_ns = clock_overhead_ns();
	fprintf(stderr, "spool-bench: dir %s on %s; payload %zu bytes; clock_gettime %.0f ns\n", cx.root, cx.fs,
		cx.pl.len, cx.clock_ns);

	for (int c = 0; c < C_COUNT; c++) {
		struct result *r = &res[c];
		r->name = case_names[c];
		r->payload_bytes = cx.pl.len;
		r->p50_us = r->p90_us = r->p99_us = r->p999_us = NAN;
		r->min_us = r->max_us = r->mean_us = NAN;
		r->events_per_sec = r->append_events_per_sec = r->synced_events_per_sec = NAN;
		r->cpu_us_per_event = NAN;
		r->elapsed_s = r->final_sync_ms = NAN;
		if (!want[c])
			continue;
		r->ran = true;
		uint64_t t = now_ns();
		fprintf(stderr, "spool-bench: %-15s ...", r->name);
		fflush(stderr);
		switch (c) {
		case C_RAW:
			case_raw_fdatasync(&cx, r, cx.sync_events, cx.warm_sync);
			break;
		case C_LMDB_SYNC:
			case_lmdb(&cx, r, 0, cx.sync_events, cx.warm_sync);
			break;
		case C_LMDB_NOSYNC:
			case_lmdb(&cx, r, MDB_NOSYNC, cx.nosync_events, cx.warm_nosync);
			break;
		case C_SYNC_1T:
			case_spool_1t(&cx, r, SPOOL_SYNC, cx.sync_events, cx.warm_sync);
			break;
		case C_SYNC_8T:
			case_sync_8t(&cx, r, cx.sync_events, cx.warm_sync);
			break;
		case C_COMMIT_1T:
			case_spool_1t(&cx, r, SPOOL_COMMIT, cx.events, cx.warm_staged);
			break;
		case C_BUFFERED_1T:
			case_spool_1t(&cx, r, SPOOL_BUFFERED, cx.events, cx.warm_staged);
			break;
		case C_COMMIT_4P:
			case_commit_4p(&cx, r, cx.events, cx.warm_staged / COMMIT_PROCESSES);
			break;
		case C_MLOG_STDIN:
			case_mlog_stdin(&cx, r, cx.events);
			break;
		case C_MLOG_CALL:
			case_mlog_call(&cx, r, cx.events, cx.warm_staged);
			break;
		default:
			break;
		}
		fprintf(stderr, " %" PRIu64 " events, %.0f events/s, p50 %.2f us (%.1f s)%s%s\n", r->events,
			isnan(r->events_per_sec) ? 0.0 : r->events_per_sec, isnan(r->p50_us) ? 0.0 : r->p50_us,
			(double)(now_ns() - t) / 1e9, r->error[0] ? "; ERROR " : "", r->error);
	}
	link_and_judge(res);

	if (json)
		print_json(stdout, &cx, res);
	else
		print_table(stdout, &cx, res);
	fflush(stdout);

	g_cleanup_armed = 0;
	rm_rf(cx.root);
	free(cx.pl.buf);

	int status = 0;
	for (int c = 0; c < C_COUNT; c++) {
		const struct result *r = &res[c];
		if (!r->ran)
			continue;
		if (r->events == 0 || r->errors > 0 || r->failed ||
		    (r->stored_checked && r->stored != r->stored_expected)) {
			fprintf(stderr, "spool-bench: case %s failed: %s\n", r->name,
				r->error[0] ? r->error : "no events");
			status = 1;
		}
	}
	return status;
}
