/* lockstress.c — processes SIGKILLed within milliseconds, over and over,
 * on one spool, with a watchdog for processes stuck in the library
 * (issue 17, item 4).
 *
 *   lock-stress --dir DIR [--seconds S] [--procs P] [--stuck SECONDS]
 *               [--kill-ms MS] [--raw] [--seed S]
 *
 * A supervisor keeps P worker processes running on the spool in DIR (its
 * contents are removed first) and SIGKILLs one of them every 0..MS
 * milliseconds.  A worker opens the spool (sync or commit durability, at
 * random), appends, reads, acknowledges, closes and opens again; now and
 * then it forks, and parent and child both go on working (the child opens
 * the spool again, as the API asks).  With --raw the workers use LMDB
 * directly (MDB_NOTLS, write and read transactions, a fork child opening its
 * own environment): the library's guard is then out of the picture, which
 * shows whether LMDB's own lock can hang; --puts N makes each write
 * transaction N puts or deletes long, so that more processes wait.
 *
 * Each worker marks in shared memory when it enters and leaves a library
 * call.  A process inside one call for more than --stuck seconds (default 5)
 * is reported: its wchan, syscall and kernel stack per thread, the words of
 * LMDB's reader and writer mutexes in lock.mdb, then gdb's backtrace of
 * every thread (attaching gdb interrupts a futex wait, so the report also
 * says whether the process got out of the call after gdb); then it is
 * killed and the run goes on.  Exit status 1 if any process was stuck or a
 * worker died of something other than our SIGKILL; the last line is a
 * FIGURES line for tests/soak/run.sh. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <lmdb.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "spool/spool.h"

#define MAX_SLOTS 48

struct slot {
	_Atomic int pid;           /* 0: free */
	_Atomic int64_t since_ms;  /* in a library call since (monotonic ms), 0: not */
	_Atomic int what;          /* which call */
	_Atomic uint64_t ops;
	_Atomic int reported;
};

static const char *const what_name[] = {"-", "open", "append", "read", "ack", "close",
					"mdb_env_open", "mdb_txn_begin(write)",
					"mdb_txn_begin(read)", "mdb_txn_commit", "stats"};
enum { W_NONE, W_OPEN, W_APPEND, W_READ, W_ACK, W_CLOSE, W_ENVOPEN, W_WBEGIN, W_RBEGIN,
       W_COMMIT, W_STATS };

static struct slot *g_slots;
static const char *g_dir;
static bool g_raw;
static unsigned g_puts = 1; /* --puts: records per raw write transaction */
static unsigned g_procs;
static uint64_t g_rng;

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static uint64_t rnd(void)
{
	uint64_t z = (g_rng += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/* ---- workers ---- */

static struct slot *g_me;

static void enter(int what)
{
	atomic_store(&g_me->what, what);
	atomic_store(&g_me->since_ms, now_ms());
}

static void leave(void)
{
	atomic_store(&g_me->since_ms, 0);
	atomic_fetch_add(&g_me->ops, 1);
}

static struct slot *claim_slot(void)
{
	for (int i = 0; i < MAX_SLOTS; i++) {
		int z = 0;
		if (atomic_compare_exchange_strong(&g_slots[i].pid, &z, (int)getpid())) {
			atomic_store(&g_slots[i].since_ms, 0);
			atomic_store(&g_slots[i].reported, 0);
			return &g_slots[i];
		}
	}
	return NULL;
}

/* Forks now and then; returns in both processes (false: stop working). */
static bool maybe_fork(void)
{
	if (rnd() % 16)
		return true;
	unsigned live = 0;
	for (int i = 0; i < MAX_SLOTS; i++)
		live += atomic_load(&g_slots[i].pid) != 0;
	if (live >= 2 * g_procs)
		return true; /* at most twice --procs processes in all */
	pid_t pid = fork();
	if (pid != 0)
		return true; /* the parent (or fork failed): go on */
	g_rng ^= (uint64_t)getpid() << 20;
	g_me = claim_slot();
	return g_me != NULL;
}

static void work_lib(void)
{
	static unsigned char ev[300];
	for (size_t i = 0; i < sizeof(ev); i++)
		ev[i] = (unsigned char)i;
	/* a msgpack map {"n": 1}: the queue checks records are sound msgpack */
	static const unsigned char rec[] = {0x81, 0xa1, 'n', 0x01};
	for (;;) {
		struct spool_options o;
		spool_options_init(&o);
		o.durability = rnd() % 2 ? SPOOL_SYNC : SPOOL_COMMIT;
		o.ring_bytes = 64 * 1024;
		o.commit_interval_seconds = 0.002;
		struct spool *s = NULL;
		char err[512];
		enter(W_OPEN);
		int rc = spool_open(g_dir, &o, &s, err, sizeof(err));
		leave();
		if (rc) {
			fprintf(stderr, "lock-stress: worker %d: spool_open: %s\n", (int)getpid(), err);
			_exit(3);
		}
		pid_t owner = getpid();
		unsigned rounds = 1 + (unsigned)(rnd() % 20);
		for (unsigned r = 0; r < rounds; r++) {
			if (!maybe_fork())
				_exit(0);
			if (getpid() != owner)
				break; /* a forked child: its inherited handle is dead */
			enter(W_APPEND);
			rc = spool_append(s, SPOOL_SEV_INFO, rec, sizeof(rec));
			leave();
			if (rc && rc != SPOOL_EFULL) {
				fprintf(stderr, "lock-stress: worker %d: spool_append: %s\n",
					(int)getpid(), spool_strerror(rc));
				_exit(3);
			}
			if (rnd() % 3 == 0) {
				struct spool_batch *b;
				enter(W_READ);
				rc = spool_read_batch(s, 0, 8, 0, &b);
				leave();
				if (rc == 0) {
					uint64_t seqs[8];
					size_t n = spool_batch_count(b);
					for (size_t i = 0; i < n && i < 8; i++)
						seqs[i] = spool_batch_records(b)[i].seq;
					spool_batch_release(b);
					enter(W_ACK);
					if (n)
						spool_ack(s, seqs, n < 8 ? n : 8, NULL);
					leave();
				}
			}
			if (rnd() % 8 == 0) {
				struct spool_stats st;
				enter(W_STATS);
				spool_stats(s, &st);
				leave();
			}
		}
		enter(W_CLOSE);
		spool_close(s); /* in a forked child: frees memory only */
		leave();
	}
}

static void mdb_ok(int rc, const char *what)
{
	if (rc) {
		fprintf(stderr, "lock-stress: worker %d: %s: %s\n", (int)getpid(), what,
			mdb_strerror(rc));
		_exit(3);
	}
}

static void work_raw(void)
{
	for (;;) {
		MDB_env *env;
		mdb_ok(mdb_env_create(&env), "mdb_env_create");
		mdb_ok(mdb_env_set_mapsize(env, 64u << 20), "mdb_env_set_mapsize");
		enter(W_ENVOPEN);
		/* no syncs: only the locks matter here, and more transactions a
		 * second mean more chances */
		int rc = mdb_env_open(env, g_dir, MDB_NOTLS | MDB_NOSYNC, 0600);
		leave();
		mdb_ok(rc, "mdb_env_open");
		/* the slots of killed readers pin old pages: clear them, as the
		 * library does at open */
		int dead = 0;
		mdb_reader_check(env, &dead);
		pid_t owner = getpid();
		unsigned rounds = 1 + (unsigned)(rnd() % 40);
		for (unsigned r = 0; r < rounds; r++) {
			if (!maybe_fork())
				_exit(0);
			if (getpid() != owner)
				break; /* a child: abandon the parent's environment */
			MDB_txn *txn;
			MDB_dbi dbi;
			bool write = rnd() % 2;
			enter(write ? W_WBEGIN : W_RBEGIN);
			rc = mdb_txn_begin(env, NULL, write ? 0 : MDB_RDONLY, &txn);
			leave();
			mdb_ok(rc, "mdb_txn_begin");
			mdb_ok(mdb_dbi_open(txn, NULL, 0, &dbi), "mdb_dbi_open");
			uint64_t k = rnd() % 4096;
			MDB_val key = {sizeof(k), &k}, val = {sizeof(k), &k};
			if (write) {
				for (unsigned i = 0; i < g_puts; i++) {
					k = rnd() % 4096;
					if (rnd() % 3)
						rc = mdb_put(txn, dbi, &key, &val, 0);
					else if ((rc = mdb_del(txn, dbi, &key, NULL)) == MDB_NOTFOUND)
						rc = 0;
					if (rc == MDB_MAP_FULL)
						break;
					mdb_ok(rc, "mdb_put/mdb_del");
				}
				enter(W_COMMIT);
				rc = mdb_txn_commit(txn);
				leave();
				if (rc == MDB_MAP_FULL)
					mdb_reader_check(env, &dead);
				else
					mdb_ok(rc, "mdb_txn_commit");
			} else {
				mdb_get(txn, dbi, &key, &val);
				mdb_txn_abort(txn);
			}
		}
		if (getpid() == owner)
			mdb_env_close(env);
	}
}

/* ---- the watchdog ---- */

static void cat_file(const char *path, const char *indent)
{
	FILE *f = fopen(path, "r");
	if (!f) {
		printf("%s(%s: %s)\n", indent, path, strerror(errno));
		return;
	}
	char line[512];
	bool any = false;
	while (fgets(line, sizeof(line), f)) {
		printf("%s%s", indent, line);
		any = any || true;
		if (line[strlen(line) - 1] != '\n')
			printf("\n");
	}
	if (!any)
		printf("%s(empty)\n", indent);
	fclose(f);
}

/* The first word of LMDB's reader mutex (offset 8 of lock.mdb) and writer
 * mutex (offset 64), as glibc keeps a robust mutex: owner TID, bit 30
 * FUTEX_OWNER_DIED, bit 31 FUTEX_WAITERS. */
static void print_mutex_words(void)
{
	char p[4200];
	snprintf(p, sizeof(p), "%s/lock.mdb", g_dir);
	int fd = open(p, O_RDONLY | O_CLOEXEC);
	uint32_t r = 0, w = 0;
	if (fd < 0 || pread(fd, &r, 4, 8) != 4 || pread(fd, &w, 4, 64) != 4)
		printf("    lock.mdb: cannot read\n");
	else
		printf("    lock.mdb: reader mutex word 0x%08x, writer mutex word 0x%08x\n", r, w);
	if (fd >= 0)
		close(fd);
}

static void report_stuck(struct slot *sl, int pid, int64_t age)
{
	int what = atomic_load(&sl->what);
	printf("STUCK: pid %d in %s for %.1f s (ops done %" PRIu64 ")\n", pid,
	       what >= 0 && what <= W_STATS ? what_name[what] : "?", (double)age / 1000,
	       atomic_load(&sl->ops));
	print_mutex_words();
	char dpath[64];
	snprintf(dpath, sizeof(dpath), "/proc/%d/task", pid);
	DIR *d = opendir(dpath);
	struct dirent *de;
	while (d && (de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		char p[400];
		printf("  thread %s:\n", de->d_name);
		snprintf(p, sizeof(p), "/proc/%d/task/%s/wchan", pid, de->d_name);
		printf("    wchan: ");
		fflush(stdout);
		cat_file(p, "");
		snprintf(p, sizeof(p), "/proc/%d/task/%s/syscall", pid, de->d_name);
		printf("    syscall: ");
		fflush(stdout);
		cat_file(p, "");
		snprintf(p, sizeof(p), "/proc/%d/task/%s/stack", pid, de->d_name);
		cat_file(p, "    ");
	}
	if (d)
		closedir(d);
	fflush(stdout);
	char cmd[256];
	snprintf(cmd, sizeof(cmd),
		 "timeout 30 gdb -nx -p %d -batch -ex 'thread apply all bt' 2>&1 | "
		 "grep -E '^(Thread|#)' | sed 's/^/    gdb: /'",
		 pid);
	if (system(cmd) == -1)
		printf("    (gdb did not run)\n");
	/* did gdb's attach get it out? */
	for (int i = 0; i < 20 && atomic_load(&sl->pid) == pid &&
			atomic_load(&sl->since_ms) != 0 && now_ms() - atomic_load(&sl->since_ms) > 1000;
	     i++)
		nanosleep(&(struct timespec){0, 50 * 1000 * 1000}, NULL);
	bool out = atomic_load(&sl->pid) != pid || atomic_load(&sl->since_ms) == 0 ||
		   now_ms() - atomic_load(&sl->since_ms) <= 1000;
	printf("  after gdb: %s\n", out ? "the process left the call (gdb's attach woke it)"
				     : "still in the call");
	fflush(stdout);
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static void usage(void)
{
	fprintf(stderr, "usage: lock-stress --dir DIR [--seconds S] [--procs P] [--stuck SECONDS] "
			"[--kill-ms MS] [--raw [--puts N]] [--seed S]\n");
	exit(2);
}

static void free_slot_of(int pid)
{
	for (int i = 0; i < MAX_SLOTS; i++) {
		int p = pid;
		if (atomic_compare_exchange_strong(&g_slots[i].pid, &p, 0))
			atomic_store(&g_slots[i].since_ms, 0);
	}
}

int main(int argc, char **argv)
{
	double seconds = 60, stuck_s = 5;
	unsigned procs = 4, kill_ms = 10;
	g_rng = (uint64_t)time(NULL);
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (strcmp(a, "--raw") == 0) {
			g_raw = true;
			continue;
		}
		if (!v)
			usage();
		i++;
		if (strcmp(a, "--dir") == 0)
			g_dir = v;
		else if (strcmp(a, "--seconds") == 0)
			seconds = atof(v);
		else if (strcmp(a, "--procs") == 0)
			procs = (unsigned)atoi(v);
		else if (strcmp(a, "--stuck") == 0)
			stuck_s = atof(v);
		else if (strcmp(a, "--kill-ms") == 0)
			kill_ms = (unsigned)atoi(v);
		else if (strcmp(a, "--puts") == 0)
			g_puts = (unsigned)atoi(v) ? (unsigned)atoi(v) : 1;
		else if (strcmp(a, "--seed") == 0)
			g_rng = strtoull(v, NULL, 0);
		else
			usage();
	}
	g_procs = procs;
	if (!g_dir || procs == 0 || procs > MAX_SLOTS / 2 || kill_ms == 0)
		usage();
	nftw(g_dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	if (mkdir(g_dir, 0700) != 0) {
		perror(g_dir);
		return 2;
	}
	g_slots = mmap(NULL, sizeof(struct slot) * MAX_SLOTS, PROT_READ | PROT_WRITE,
		       MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (g_slots == MAP_FAILED)
		return 2;
	/* orphaned grandchildren come back to us, to be reaped and counted */
	prctl(PR_SET_CHILD_SUBREAPER, 1);
	setvbuf(stdout, NULL, _IOLBF, 0);
	printf("lock-stress: %s, %u workers, a SIGKILL every 0..%u ms, for %.0f s; stuck after "
	       "%.0f s\n",
	       g_raw ? "raw LMDB (no guard)" : "library", procs, kill_ms, seconds, stuck_s);
	int64_t t0 = now_ms(), end = t0 + (int64_t)(seconds * 1000), next_kill = t0;
	int64_t next_note = t0 + 60000;
	uint64_t kills = 0, spawned = 0, stuck = 0, odd_deaths = 0, stuck_woken = 0;
	while (now_ms() < end) {
		/* keep procs top-level workers (forked children come on top) */
		unsigned live = 0;
		for (int i = 0; i < MAX_SLOTS; i++)
			live += atomic_load(&g_slots[i].pid) != 0;
		while (live < procs) {
			g_rng += 7;
			pid_t pid = fork();
			if (pid == 0) {
				g_rng ^= (uint64_t)getpid() << 24;
				g_me = claim_slot();
				if (!g_me)
					_exit(0);
				if (g_raw)
					work_raw();
				else
					work_lib();
				_exit(0);
			}
			if (pid < 0)
				break;
			/* wait until it holds its slot, so the count is right */
			for (int k = 0; k < 200; k++) {
				bool in = false;
				for (int i = 0; i < MAX_SLOTS && !in; i++)
					in = atomic_load(&g_slots[i].pid) == pid;
				if (in)
					break;
				nanosleep(&(struct timespec){0, 100 * 1000}, NULL);
			}
			spawned++;
			live++;
		}
		int64_t t = now_ms();
		if (t >= next_kill) {
			int cand[MAX_SLOTS], nc = 0;
			for (int i = 0; i < MAX_SLOTS; i++)
				if (atomic_load(&g_slots[i].pid) && !atomic_load(&g_slots[i].reported))
					cand[nc++] = i;
			if (nc) {
				int pid = atomic_load(&g_slots[cand[rnd() % (uint64_t)nc]].pid);
				if (pid > 0 && kill(pid, SIGKILL) == 0)
					kills++;
			}
			next_kill = t + (int64_t)(rnd() % (kill_ms + 1));
		}
		/* the watchdog */
		for (int i = 0; i < MAX_SLOTS; i++) {
			int pid = atomic_load(&g_slots[i].pid);
			int64_t since = atomic_load(&g_slots[i].since_ms);
			if (!pid || !since || atomic_load(&g_slots[i].reported))
				continue;
			if (now_ms() - since > (int64_t)(stuck_s * 1000)) {
				/* stop it first, so that a kill elsewhere cannot free it
				 * between the look and the report */
				atomic_store(&g_slots[i].reported, 1);
				stuck++;
				report_stuck(&g_slots[i], pid, now_ms() - since);
				int64_t s2 = atomic_load(&g_slots[i].since_ms);
				if (atomic_load(&g_slots[i].pid) != pid || s2 == 0 || s2 != since)
					stuck_woken++;
				kill(pid, SIGKILL);
			}
		}
		/* reap */
		int status;
		pid_t dead;
		while ((dead = waitpid(-1, &status, WNOHANG)) > 0) {
			if (!(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) &&
			    !(WIFEXITED(status) && WEXITSTATUS(status) == 0)) {
				odd_deaths++;
				printf("lock-stress: worker %d died: %s %d\n", (int)dead,
				       WIFSIGNALED(status) ? "signal" : "exit status",
				       WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
			}
			free_slot_of(dead);
		}
		if (now_ms() >= next_note) {
			uint64_t ops = 0;
			for (int i = 0; i < MAX_SLOTS; i++)
				ops += atomic_load(&g_slots[i].ops);
			printf("lock-stress: %.0f min: %" PRIu64 " kills, %" PRIu64
			       " workers started, %" PRIu64 " stuck\n",
			       (double)(now_ms() - t0) / 60000, kills, spawned, stuck);
			next_note += 60000;
		}
		nanosleep(&(struct timespec){0, 500 * 1000}, NULL);
	}
	/* stop everyone */
	for (int round = 0; round < 50; round++) {
		bool any = false;
		for (int i = 0; i < MAX_SLOTS; i++) {
			int pid = atomic_load(&g_slots[i].pid);
			if (pid) {
				kill(pid, SIGKILL);
				any = true;
			}
		}
		int status;
		pid_t dead;
		while ((dead = waitpid(-1, &status, WNOHANG)) > 0)
			free_slot_of(dead);
		if (!any)
			break;
		nanosleep(&(struct timespec){0, 20 * 1000 * 1000}, NULL);
	}
	while (waitpid(-1, NULL, 0) > 0)
		;
	uint64_t ops = 0;
	for (int i = 0; i < MAX_SLOTS; i++)
		ops += atomic_load(&g_slots[i].ops);
	double mins = (double)(now_ms() - t0) / 60000;
	printf("lock-stress: %.1f min, %" PRIu64 " workers started, %" PRIu64 " SIGKILLs, %" PRIu64
	       " library calls, %" PRIu64 " stuck (%" PRIu64 " left the call after gdb), %" PRIu64
	       " workers died otherwise\n",
	       mins, spawned, kills, ops, stuck, stuck_woken, odd_deaths);
	printf("FIGURES scenario=lock-stress%s rounds=%" PRIu64 " events=%" PRIu64
	       " crashes=%" PRIu64 " stuck=%" PRIu64 " minutes=%.0f\n",
	       g_raw ? "-raw" : "", kills, ops, odd_deaths, stuck, mins);
	nftw(g_dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	return stuck || odd_deaths ? 1 : 0;
}
