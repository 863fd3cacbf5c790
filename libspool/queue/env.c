/* env.c — the LMDB environment of a spool, shared by all handles that one
 * process opens on the same directory (LMDB forbids opening an environment
 * twice in a process: closing either copy would drop the other's locks). */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include "env.h"
#include "fork.h"
#include "record.h"
#include "util.h"

/* The environments of this process, under spool_fork_lock(). */
static struct spool_env *g_envs;

static const char KEY_FORMAT[] = "spool.format";

/* In a forked child: the environment belongs to the parent.  Drop the
 * shared lock on users.lock, so a child outliving its parent cannot keep
 * it, and forget the environment (fork.c keeps it reachable) without
 * closing it: that would clear the parent's reader slots. */
static void env_in_child(struct spool_fork_node *node)
{
	struct spool_env *env = (struct spool_env *)node;
	if (env->writer_fd >= 0) {
		/* the same description as the parent's: a copy kept open here
		 * would keep the parent's writer lock held after its death */
		close(env->writer_fd);
		env->writer_fd = -1;
	}
	if (env->users_fd >= 0) {
		close(env->users_fd);
		env->users_fd = -1;
	}
	for (struct spool_env **pp = &g_envs; *pp; pp = &(*pp)->next) {
		if (*pp == env) {
			*pp = env->next;
			break;
		}
	}
}

static int txn_begin_guarded(struct spool_env *env, bool rdonly, MDB_txn **txn);
static void writer_unlock(struct spool_env *env);
static void reader_check_guarded(struct spool_env *env, MDB_env *mdb);
static int precreate_shared(const char *dir);

static int env_open_mdb(struct spool_env *env, char *errbuf, size_t errlen)
{
	/* a lock.mdb removed since the spool was made (by hand, by a cleanup)
	 * comes back with the shared mode too, not with LMDB's and the umask */
	int rc = precreate_shared(env->dir);
	if (rc) {
		spool_errf(errbuf, errlen, "%s: cannot create the spool files: %s", env->dir,
			   strerror(-rc));
		return rc;
	}
	/* Default flags: full sync on every commit.  Never MDB_NOSYNC,
	 * MDB_NOMETASYNC or MDB_WRITEMAP (see LMDB-NOTES.md).  MDB_NOTLS: read
	 * transactions are tied to the transaction, not the thread. */
	for (int attempt = 0;; attempt++) {
		rc = mdb_env_create(&env->mdb);
		if (rc) {
			spool_errf(errbuf, errlen,
				   "%s: cannot create LMDB environment: %s (LMDB error %d)", env->dir,
				   mdb_strerror(rc), rc);
			env->mdb = NULL;
			return spool_map_mdb_error(rc);
		}
		mdb_env_set_maxdbs(env->mdb, 4);
		mdb_env_set_maxreaders(env->mdb, env->max_readers);
		mdb_env_set_mapsize(env->mdb, env->map_size);
		rc = mdb_env_open(env->mdb, env->dir, MDB_NOTLS, 0600);
		if (rc == 0)
			break;
		/* LMDB wants a handle whose open failed closed, never opened
		 * again: each try starts from a fresh one. */
		mdb_env_close(env->mdb);
		env->mdb = NULL;
		/* Opening can fail for a moment while another process sets up or
		 * tears down the lock file; a damaged or foreign file cannot. */
		bool transient = rc == EAGAIN || rc == EBUSY || rc == EINTR;
		if (!transient || attempt >= 50) {
			spool_errf(errbuf, errlen,
				   "%s: cannot open spool database (mdb_env_open): %s (LMDB error %d)",
				   env->dir, mdb_strerror(rc), rc);
			return spool_map_mdb_error(rc);
		}
		nanosleep(&(struct timespec){0, 10 * 1000 * 1000}, NULL);
	}
	reader_check_guarded(env, env->mdb);

	MDB_envinfo info;
	if (mdb_env_info(env->mdb, &info) == 0)
		env->map_size = info.me_mapsize;

	/* Find the databases; create them (and the format mark) on first use. */
	MDB_txn *txn;
	const char *step = "begin a transaction";
	int resized = 0;
	for (int pass = 0; pass < 2; pass++) {
		bool create = pass == 1;
		step = "begin a transaction";
		rc = txn_begin_guarded(env, !create, &txn);
		if (rc == MDB_MAP_RESIZED && resized++ < 20) {
			/* When the configured map is smaller than the file, LMDB maps
			 * exactly the pages in use; any commit elsewhere that extends
			 * the file before this first transaction makes it fail.  Adopt
			 * the size now recorded in the file and try the pass again. */
			step = "adopt the map size grown by another process";
			rc = mdb_env_set_mapsize(env->mdb, 0);
			if (rc)
				break;
			MDB_envinfo grown;
			if (mdb_env_info(env->mdb, &grown) == 0)
				env->map_size = grown.me_mapsize;
			pass--;
			continue;
		}
		if (rc)
			break;
		unsigned flags = create ? MDB_CREATE : 0;
		step = "open the events database";
		rc = mdb_dbi_open(txn, "events", flags, &env->dbi_events);
		if (!rc) {
			step = "open the dead-letter database";
			rc = mdb_dbi_open(txn, "dead", flags, &env->dbi_dead);
		}
		if (!rc) {
			step = "open the meta database";
			rc = mdb_dbi_open(txn, "meta", flags, &env->dbi_meta);
		}
		if (!rc) {
			MDB_val k = {sizeof(KEY_FORMAT) - 1, (void *)KEY_FORMAT}, v;
			step = "read the format mark";
			rc = mdb_get(txn, env->dbi_meta, &k, &v);
			if (rc == MDB_NOTFOUND && create) {
				unsigned char fmt[4];
				spool_put_le32(fmt, SPOOL_FORMAT_VERSION);
				v = (MDB_val){4, fmt};
				rc = mdb_put(txn, env->dbi_meta, &k, &v, 0);
			} else if (rc == 0) {
				if (v.mv_size != 4 ||
				    spool_get_le32(v.mv_data) != SPOOL_FORMAT_VERSION) {
					mdb_txn_abort(txn);
					if (create)
						writer_unlock(env);
					spool_errf(errbuf, errlen,
						   "%s: spool format %u is not the format this library "
						   "reads (%d)",
						   env->dir,
						   v.mv_size == 4 ? spool_get_le32(v.mv_data) : 0,
						   SPOOL_FORMAT_VERSION);
					mdb_env_close(env->mdb);
					env->mdb = NULL;
					return SPOOL_EVERSION;
				}
			}
		}
		if (rc == 0) {
			step = "commit";
			rc = mdb_txn_commit(txn);
		} else {
			mdb_txn_abort(txn);
		}
		if (create)
			writer_unlock(env);
		if (rc != MDB_NOTFOUND)
			break;
	}
	if (rc) {
		spool_errf(errbuf, errlen,
			   "%s: cannot prepare spool databases (%s): %s (LMDB error %d)", env->dir,
			   step, mdb_strerror(rc), rc);
		mdb_env_close(env->mdb);
		env->mdb = NULL;
		return spool_map_mdb_error(rc);
	}
	return 0;
}

/* LMDB's answers that say data.mdb is not a sound LMDB file (torn or
 * foreign content), as opposed to the system refusing (no space, no
 * permission, an I/O error), which setting the file aside would not cure. */
static bool unsound_file(int rc)
{
	return rc == MDB_INVALID || rc == MDB_VERSION_MISMATCH || rc == MDB_CORRUPTED ||
	       rc == MDB_PAGE_NOTFOUND || rc == MDB_PANIC || rc == MDB_INCOMPATIBLE ||
	       rc == MDB_BAD_TXN;
}

/* Opens (creating it if absent) the LMDB file of dir and makes it durable
 * whole: the databases and the format mark in one commit, then a full sync.
 * Returns 0 or LMDB's code (its own, or a positive errno); *step names
 * what failed. */
static int create_database(const char *dir, const char **step)
{
	MDB_env *mdb = NULL;
	MDB_txn *txn = NULL;
	*step = "open it";
	int rc = mdb_env_create(&mdb);
	if (rc)
		return rc;
	rc = mdb_env_set_maxdbs(mdb, 4);
	if (!rc)
		rc = mdb_env_open(mdb, dir, 0, 0600);
	if (!rc) {
		*step = "create its databases";
		rc = mdb_txn_begin(mdb, NULL, 0, &txn);
	}
	static const char *const names[] = {"events", "dead", "meta"};
	MDB_dbi dbi = 0;
	for (int i = 0; !rc && i < 3; i++)
		rc = mdb_dbi_open(txn, names[i], MDB_CREATE, &dbi);
	if (!rc) {
		unsigned char fmt[4];
		spool_put_le32(fmt, SPOOL_FORMAT_VERSION);
		MDB_val k = {sizeof(KEY_FORMAT) - 1, (void *)KEY_FORMAT}, v;
		rc = mdb_get(txn, dbi, &k, &v);
		if (rc == MDB_NOTFOUND) {
			v = (MDB_val){4, fmt};
			rc = mdb_put(txn, dbi, &k, &v, 0);
		}
	}
	if (!rc) {
		*step = "commit";
		rc = mdb_txn_commit(txn);
		txn = NULL;
	}
	if (!rc) {
		*step = "sync it";
		rc = mdb_env_sync(mdb, 1);
	}
	if (txn)
		mdb_txn_abort(txn);
	mdb_env_close(mdb);
	return rc;
}

/* In a shared spool, LMDB's files are made by us first, with mode 0660
 * whatever the umask (LMDB would apply it): every member of the group must
 * open lock.mdb and data.mdb for writing.  An empty data.mdb is a new
 * environment to LMDB, an empty lock.mdb one to set up.  0 or -errno. */
static int precreate_shared(const char *dir)
{
	if (!spool_dir_shared(dir))
		return 0;
	static const char *const names[] = {"data.mdb", "lock.mdb"};
	for (int i = 0; i < 2; i++) {
		char p[4400];
		snprintf(p, sizeof(p), "%s/%s", dir, names[i]);
		int fd = spool_open_create(p, O_RDWR | O_CLOEXEC, 0660);
		if (fd < 0)
			return fd;
		close(fd);
	}
	return 0;
}

/* Renames dir/data.mdb to dir/data.mdb.unfinished-<UTC time>[-N], never
 * over an existing file; the new name goes into aside. */
static int set_aside(const char *dir, const char *data, char *aside, size_t len)
{
	char stamp[32];
	time_t now = time(NULL);
	struct tm tm;
	strftime(stamp, sizeof(stamp), "%Y%m%dT%H%M%SZ", gmtime_r(&now, &tm));
	struct stat st;
	for (int n = 0; n < 1000; n++) {
		if (n == 0)
			snprintf(aside, len, "%s/data.mdb.unfinished-%s", dir, stamp);
		else
			snprintf(aside, len, "%s/data.mdb.unfinished-%s-%d", dir, stamp, n);
		if (lstat(aside, &st) != 0 && errno == ENOENT)
			return rename(data, aside) == 0 ? 0 : -errno;
	}
	return -EEXIST;
}

/* A new spool is only used once its data.mdb has been synced whole.  LMDB
 * writes the first meta pages of a new file without a sync, and a power loss
 * before the first commit's sync can leave a file that never opens again,
 * holding anything: zeros, a torn meta page, whatever the disk had there.
 * So whoever opens a spool without the `created` mark makes the file durable
 * (a synced commit), then makes the mark durable; nothing is appended before
 * that.  A spool without the mark has therefore never promised anything, and
 * a data.mdb of it that LMDB finds unsound, whatever it holds, is set aside
 * (renamed data.mdb.unfinished-<time>, said on stderr, listed by spoolctl
 * status and verify) and the spool created anew.  A data.mdb that opens is
 * kept: a spool whose mark was lost with a power loss right after its
 * creation may hold events.  create.lock serialises this among processes,
 * and the mark is checked again under it; a process that saw the mark never
 * takes the lock, and a spool with the mark is never set aside.  Once the
 * mark exists, opening costs one stat(). */
static int ensure_created(const char *dir, char *errbuf, size_t errlen)
{
	char mark[4400], lockp[4400], data[4400], aside[4500];
	snprintf(mark, sizeof(mark), "%s/created", dir);
	struct stat st;
	if (stat(mark, &st) == 0)
		return 0;
	snprintf(lockp, sizeof(lockp), "%s/create.lock", dir);
	mode_t fmode = spool_file_mode(dir);
	int lfd = spool_open_create(lockp, O_RDWR | O_CLOEXEC, fmode);
	if (lfd < 0)
		errno = -lfd;
	struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
	if (lfd < 0 || fcntl(lfd, F_OFD_SETLKW, &fl) != 0) {
		int e = errno;
		if (lfd >= 0)
			close(lfd);
		spool_errf(errbuf, errlen, "%s: %s", lockp, strerror(e));
		return -e;
	}
	int rc = 0;
	if (stat(mark, &st) == 0)
		goto out; /* another process finished it meanwhile */
	snprintf(data, sizeof(data), "%s/data.mdb", dir);
	const char *step;
	rc = precreate_shared(dir);
	if (rc) {
		spool_errf(errbuf, errlen, "%s: cannot create the spool files: %s", dir, strerror(-rc));
		goto out;
	}
	rc = create_database(dir, &step);
	if (unsound_file(rc) && stat(data, &st) == 0) {
		/* never marked, so never used: a creation cut short */
		int why = rc;
		rc = set_aside(dir, data, aside, sizeof(aside));
		if (rc) {
			spool_errf(errbuf, errlen,
				   "%s: data.mdb is not a sound LMDB file (%s) and cannot be set "
				   "aside: %s",
				   dir, mdb_strerror(why), strerror(-rc));
			goto out;
		}
		fprintf(stderr,
			"libspool: %s: data.mdb was never completed (a creation cut short, e.g. by "
			"a power loss) and is not a sound LMDB file (%s); it holds no event. Set "
			"aside as %s; creating the spool anew\n",
			dir, mdb_strerror(why), aside);
		rc = precreate_shared(dir);
		if (!rc)
			rc = create_database(dir, &step);
	}
	if (rc) {
		spool_errf(errbuf, errlen, "%s: cannot create the spool database (%s): %s (%s %d)",
			   dir, step, mdb_strerror(rc), rc < 0 ? "LMDB error" : "errno", rc);
		rc = spool_map_mdb_error(rc);
		goto out;
	}
	/* An error from here on leaves the mark as it is: the file is synced
	 * whole, so a mark that exists (even empty) tells the truth, and one
	 * that was lost makes the next opener only sync the file again. */
	static const char text[] = "master-log-spool format 1\n";
	int mfd = spool_open_create(mark, O_WRONLY | O_CLOEXEC, fmode);
	if (mfd < 0) {
		rc = mfd;
	} else {
		ssize_t w = write(mfd, text, sizeof(text) - 1);
		if (w != (ssize_t)(sizeof(text) - 1))
			rc = w < 0 ? -errno : -EIO;
		else if (fsync(mfd) != 0)
			rc = -errno;
		close(mfd);
	}
	if (!rc) {
		int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (dfd < 0 || fsync(dfd) != 0)
			rc = -errno;
		if (dfd >= 0)
			close(dfd);
	}
	if (rc)
		spool_errf(errbuf, errlen, "%s: cannot mark the spool created: %s", mark,
			   strerror(-rc));
out:
	close(lfd);
	return rc;
}

static size_t map_cap_for(const struct spool_options *opt)
{
	if (opt->max_bytes == 0)
		return SPOOL_MAP_CAP_UNLIMITED;
	/* B-tree pages, free pages held for readers and the dead store need room
	 * beside the pending bytes themselves. */
	uint64_t cap = opt->max_bytes * 2 + ((uint64_t)64 << 20);
	if (cap > SPOOL_MAP_CAP_UNLIMITED)
		cap = SPOOL_MAP_CAP_UNLIMITED;
	return (size_t)cap;
}

/* The spool directory is there but this process may not use it: for a
 * shared spool (a group's), the sentence names the group to join. */
static void no_access_error(const char *dir, const struct stat *st, int e, char *errbuf,
			    size_t errlen)
{
	if (e != EACCES && e != EPERM) {
		spool_errf(errbuf, errlen, "%s: %s", dir, strerror(e));
		return;
	}
	char name[256];
	struct group gr, *g = NULL;
	char buf[4096];
	if (getgrgid_r(st->st_gid, &gr, buf, sizeof(buf), &g) == 0 && g)
		snprintf(name, sizeof(name), "%s", g->gr_name);
	else
		snprintf(name, sizeof(name), "%u", (unsigned)st->st_gid);
	if ((st->st_mode & S_IWGRP) && (st->st_mode & S_IXGRP))
		spool_errf(errbuf, errlen,
			   "%s: permission denied: this spool is shared by the members of group "
			   "'%s' (mode %04o) and uid %u is not one of them; join the group "
			   "(usermod -a -G %s USER, then log in again) or use a spool of your own "
			   "(MASTER_LOG_SPOOL_DIR)",
			   dir, name, (unsigned)(st->st_mode & 07777), (unsigned)geteuid(), name);
	else
		spool_errf(errbuf, errlen,
			   "%s: permission denied: the spool belongs to uid %u (mode %04o) and this "
			   "process runs as uid %u; use a spool of your own (MASTER_LOG_SPOOL_DIR)",
			   dir, (unsigned)st->st_uid, (unsigned)(st->st_mode & 07777),
			   (unsigned)geteuid());
}

int spool_env_acquire(const char *dir, const struct spool_options *opt, struct spool_env **out,
		      char *errbuf, size_t errlen)
{
	*out = NULL;
	struct stat st;
	if (stat(dir, &st) != 0) {
		if (errno != ENOENT) {
			int e = errno;
			spool_errf(errbuf, errlen, "%s: %s", dir, strerror(e));
			return -e;
		}
		int rc = spool_mkdirs(dir, 0700);
		if (rc) {
			spool_errf(errbuf, errlen, "%s: cannot create spool directory: %s", dir,
				   strerror(-rc));
			return rc;
		}
		if (stat(dir, &st) != 0) {
			int e = errno;
			spool_errf(errbuf, errlen, "%s: %s", dir, strerror(e));
			return -e;
		}
	}
	if (!S_ISDIR(st.st_mode)) {
		spool_errf(errbuf, errlen, "%s: not a directory", dir);
		return -ENOTDIR;
	}
	if (faccessat(AT_FDCWD, dir, R_OK | W_OK | X_OK, AT_EACCESS) != 0) {
		int e = errno;
		no_access_error(dir, &st, e, errbuf, errlen);
		return -e;
	}
	bool shared = (st.st_mode & S_ISGID) && (st.st_mode & S_IWGRP);
	char rings[4096];
	if (snprintf(rings, sizeof(rings), "%s/rings", dir) >= (int)sizeof(rings)) {
		spool_errf(errbuf, errlen, "%s: path too long", dir);
		return -ENAMETOOLONG;
	}
	int mrc = spool_mkdir_mode(rings, shared ? 02770 : 0700);
	if (mrc) {
		spool_errf(errbuf, errlen, "%s: cannot create: %s", rings, strerror(-mrc));
		return mrc;
	}

	spool_fork_lock();
	pid_t me = spool_current_pid();
	for (struct spool_env *e = g_envs; e; e = e->next) {
		if (e->dev == st.st_dev && e->ino == st.st_ino && e->pid == me) {
			/* shared, but every open clears the slots of dead readers */
			if (e->mdb)
				reader_check_guarded(e, e->mdb);
			e->refs++;
			size_t cap = map_cap_for(opt);
			if (cap > e->map_cap)
				e->map_cap = cap;
			spool_fork_unlock();
			*out = e;
			return 0;
		}
	}

	struct spool_env *env = calloc(1, sizeof(*env));
	if (!env || !(env->dir = strdup(dir))) {
		free(env);
		spool_fork_unlock();
		spool_errf(errbuf, errlen, "%s: out of memory", dir);
		return -ENOMEM;
	}
	env->refs = 1;
	env->pid = me;
	env->dev = st.st_dev;
	env->ino = st.st_ino;
	env->max_readers = opt->max_readers ? opt->max_readers : 126;
	env->map_cap = map_cap_for(opt);
	env->map_size = opt->initial_map_bytes ? opt->initial_map_bytes : ((size_t)64 << 20);
	if (env->map_size > env->map_cap)
		env->map_size = env->map_cap;
	pthread_rwlock_init(&env->map_lock, NULL);
	pthread_mutex_init(&env->gc_mu, NULL);
	pthread_mutex_init(&env->count_mu, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&env->gc_join, &ca);
	pthread_condattr_destroy(&ca);

	/* every process using the spool holds a shared lock on users.lock, so
	 * that maintenance needing the spool to itself (compaction) can tell */
	char users[4200];
	snprintf(users, sizeof(users), "%s/users.lock", dir);
	env->users_fd = spool_open_create(users, O_RDWR | O_CLOEXEC, shared ? 0660 : 0600);
	if (env->users_fd < 0)
		errno = -env->users_fd;
	struct flock fl = {.l_type = F_RDLCK, .l_whence = SEEK_SET};
	if (env->users_fd < 0 || fcntl(env->users_fd, F_OFD_SETLK, &fl) != 0) {
		int e = errno;
		if (env->users_fd >= 0)
			close(env->users_fd);
		spool_fork_unlock();
		spool_errf(errbuf, errlen, "%s: %s", users,
			   e == EAGAIN || e == EACCES ? "the spool is being compacted; try again"
						   : strerror(e));
		pthread_rwlock_destroy(&env->map_lock);
		pthread_mutex_destroy(&env->gc_mu);
		pthread_mutex_destroy(&env->count_mu);
		pthread_cond_destroy(&env->gc_join);
		free(env->dir);
		free(env);
		return e == EAGAIN || e == EACCES ? -EBUSY : -e;
	}
	pthread_mutex_init(&env->writer_mu, NULL);
	pthread_mutex_init(&env->reader_mu, NULL);
	char writer[4200];
	snprintf(writer, sizeof(writer), "%s/writer.lock", dir);
	env->writer_fd = spool_open_create(writer, O_RDWR | O_CLOEXEC, shared ? 0660 : 0600);
	int rc = env->writer_fd < 0 ? env->writer_fd : 0;
	if (rc)
		spool_errf(errbuf, errlen, "%s: %s", writer, strerror(-rc));
	if (!rc)
		rc = ensure_created(dir, errbuf, errlen);
	if (!rc)
		rc = env_open_mdb(env, errbuf, errlen);
	if (rc) {
		if (env->writer_fd >= 0)
			close(env->writer_fd);
		pthread_mutex_destroy(&env->writer_mu);
		pthread_mutex_destroy(&env->reader_mu);
		close(env->users_fd);
		spool_fork_unlock();
		pthread_rwlock_destroy(&env->map_lock);
		pthread_mutex_destroy(&env->gc_mu);
		pthread_mutex_destroy(&env->count_mu);
		pthread_cond_destroy(&env->gc_join);
		free(env->dir);
		free(env);
		return rc;
	}
	env->next = g_envs;
	g_envs = env;
	env->fork_node.in_child = env_in_child;
	spool_fork_register(&env->fork_node);
	spool_fork_unlock();
	*out = env;
	return 0;
}

bool spool_env_release_shared(struct spool_env *env)
{
	if (!env)
		return true;
	spool_fork_lock();
	bool inherited = env->pid != spool_current_pid(); /* abandoned, never closed */
	bool shared = !inherited && env->refs > 1;
	if (shared)
		env->refs--;
	spool_fork_unlock();
	return inherited || shared;
}

void spool_env_release(struct spool_env *env)
{
	if (!env)
		return;
	spool_fork_lock();
	if (env->pid != spool_current_pid()) {
		/* inherited across fork: abandoned, never closed */
		spool_fork_unlock();
		return;
	}
	if (--env->refs > 0) {
		spool_fork_unlock();
		return;
	}
	for (struct spool_env **pp = &g_envs; *pp; pp = &(*pp)->next) {
		if (*pp == env) {
			*pp = env->next;
			break;
		}
	}
	spool_fork_unregister(&env->fork_node);
	spool_fork_unlock();
	if (env->mdb)
		mdb_env_close(env->mdb);
	if (env->writer_fd >= 0)
		close(env->writer_fd);
	pthread_mutex_destroy(&env->writer_mu);
	pthread_mutex_destroy(&env->reader_mu);
	if (env->users_fd >= 0)
		close(env->users_fd);
	pthread_rwlock_destroy(&env->map_lock);
	pthread_mutex_destroy(&env->gc_mu);
	pthread_mutex_destroy(&env->count_mu);
	pthread_cond_destroy(&env->gc_join);
	free(env->dir);
	free(env);
}

/* Take the map lock exclusively, waiting at most a few seconds: a thread of
 * this process that holds a batch keeps it shared, and must not deadlock us. */
static int map_lock_exclusive(struct spool_env *env)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += 5;
	int rc = pthread_rwlock_timedwrlock(&env->map_lock, &ts);
	return rc ? -rc : 0;
}

static int env_reopen(struct spool_env *env)
{
	int rc = map_lock_exclusive(env);
	if (rc)
		return rc;
	if (!atomic_load(&env->need_reopen)) {
		pthread_rwlock_unlock(&env->map_lock);
		return 0;
	}
	if (env->mdb)
		mdb_env_close(env->mdb);
	env->mdb = NULL;
	char err[256];
	rc = env_open_mdb(env, err, sizeof(err));
	if (rc == 0)
		atomic_store(&env->need_reopen, false);
	pthread_rwlock_unlock(&env->map_lock);
	return rc;
}

/* writer.lock (issue 17).  LMDB orders writers with a robust pthread mutex
 * in lock.mdb, and, with MDB_NOTLS, every new read transaction takes its
 * reader-table mutex for a moment.  A process that waits for either sleeps
 * in a futex wait, and with processes SIGKILLed over and over such waits
 * can be lost: an unlocker killed between releasing the word and waking a
 * waiter (or a woken waiter killed before it takes the word) leaves the
 * wake-up to the kernel's robust-list cleanup, which wakes a waiter only if
 * the word is still free at that moment; if a third process took the free
 * mutex meanwhile (without the waiters bit, which the release cleared), its
 * unlock wakes nobody either.  The waiters then sleep on a word that reads
 * 0 until something interrupts the wait (a ptrace attach: gdb).  So every
 * call of LMDB that takes one of those mutexes is made holding an
 * open-file-description lock on writer.lock first (byte 0 for a write
 * transaction, for its whole life; byte 1 around beginning a read
 * transaction and checking the reader table): at most one process at a
 * time ever asks for each of LMDB's mutexes, and the kernel hands a fcntl
 * lock over on every release, including the one at a holder's death.  The
 * threads of one process share the description, so writer_mu and reader_mu
 * order them first.  Both are taken with the map lock held shared, so a
 * reopen (map lock exclusive) never waits for a thread that holds them. */
#define GUARD_WRITER 0
#define GUARD_READER 1

static int guard_lock(struct spool_env *env, pthread_mutex_t *mu, off_t byte)
{
	pthread_mutex_lock(mu);
	struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = byte, .l_len = 1};
	while (env->writer_fd >= 0 && fcntl(env->writer_fd, F_OFD_SETLKW, &fl) != 0) {
		if (errno == EINTR)
			continue;
		int e = errno;
		pthread_mutex_unlock(mu);
		return -e;
	}
	return 0;
}

static void guard_unlock(struct spool_env *env, pthread_mutex_t *mu, off_t byte)
{
	struct flock fl = {.l_type = F_UNLCK, .l_whence = SEEK_SET, .l_start = byte, .l_len = 1};
	if (env->writer_fd >= 0)
		fcntl(env->writer_fd, F_OFD_SETLK, &fl);
	pthread_mutex_unlock(mu);
}

static int writer_lock(struct spool_env *env)
{
	return guard_lock(env, &env->writer_mu, GUARD_WRITER);
}

static void writer_unlock(struct spool_env *env)
{
	guard_unlock(env, &env->writer_mu, GUARD_WRITER);
}

/* mdb_txn_begin() under the guard of the mutex it takes. */
static int txn_begin_guarded(struct spool_env *env, bool rdonly, MDB_txn **txn)
{
	int rc = rdonly ? guard_lock(env, &env->reader_mu, GUARD_READER) : writer_lock(env);
	if (rc)
		return rc;
	rc = mdb_txn_begin(env->mdb, NULL, rdonly ? MDB_RDONLY : 0, txn);
	if (rdonly || rc)
		guard_unlock(env, rdonly ? &env->reader_mu : &env->writer_mu,
			     rdonly ? GUARD_READER : GUARD_WRITER);
	return rc; /* a write transaction keeps its guard: spool_env_end_write() */
}

/* mdb_reader_check() under the reader guard. */
static void reader_check_guarded(struct spool_env *env, MDB_env *mdb)
{
	int dead = 0;
	if (guard_lock(env, &env->reader_mu, GUARD_READER) != 0)
		return;
	mdb_reader_check(mdb, &dead);
	guard_unlock(env, &env->reader_mu, GUARD_READER);
}

void spool_env_reader_check(struct spool_env *env)
{
	pthread_rwlock_rdlock(&env->map_lock);
	if (env->mdb)
		reader_check_guarded(env, env->mdb);
	pthread_rwlock_unlock(&env->map_lock);
}

int spool_env_begin(struct spool_env *env, bool rdonly, MDB_txn **txn)
{
	for (int attempt = 0;; attempt++) {
		if (atomic_load(&env->need_reopen)) {
			int rc = env_reopen(env);
			if (rc)
				return rc;
		}
		pthread_rwlock_rdlock(&env->map_lock);
		if (!env->mdb) {
			pthread_rwlock_unlock(&env->map_lock);
			atomic_store(&env->need_reopen, true);
			if (attempt >= 3)
				return SPOOL_EBACKEND;
			continue;
		}
		int rc = txn_begin_guarded(env, rdonly, txn);
		if (rc == 0)
			return 0;
		pthread_rwlock_unlock(&env->map_lock);
		if (rc < 0 && rc > -4096)
			return rc; /* the guard's own failure */
		if (attempt >= 3)
			return spool_map_mdb_error(rc);
		if (rc == MDB_MAP_RESIZED) {
			/* another process grew the map: adopt its size */
			int lr = map_lock_exclusive(env);
			if (lr)
				return lr;
			mdb_env_set_mapsize(env->mdb, 0);
			MDB_envinfo info;
			if (mdb_env_info(env->mdb, &info) == 0)
				env->map_size = info.me_mapsize;
			pthread_rwlock_unlock(&env->map_lock);
			continue;
		}
		if (rc == MDB_PANIC) {
			atomic_store(&env->need_reopen, true);
			continue;
		}
		if (rc == MDB_READERS_FULL) {
			int dead = 0;
			guard_lock(env, &env->reader_mu, GUARD_READER);
			mdb_reader_check(env->mdb, &dead);
			guard_unlock(env, &env->reader_mu, GUARD_READER);
			if (dead > 0)
				continue;
		}
		return spool_map_mdb_error(rc);
	}
}

void spool_env_end(struct spool_env *env)
{
	pthread_rwlock_unlock(&env->map_lock);
}

void spool_env_end_write(struct spool_env *env)
{
	writer_unlock(env);
	pthread_rwlock_unlock(&env->map_lock);
}

int spool_env_grow(struct spool_env *env)
{
	int rc = map_lock_exclusive(env);
	if (rc)
		return SPOOL_EFULL;
	MDB_envinfo info;
	if (mdb_env_info(env->mdb, &info) == 0)
		env->map_size = info.me_mapsize;
	if (env->map_size >= env->map_cap) {
		pthread_rwlock_unlock(&env->map_lock);
		return SPOOL_EFULL;
	}
	size_t want = env->map_size * 2;
	if (want > env->map_cap || want < env->map_size)
		want = env->map_cap;
	rc = mdb_env_set_mapsize(env->mdb, want);
	if (rc == 0 && mdb_env_info(env->mdb, &info) == 0)
		env->map_size = info.me_mapsize;
	pthread_rwlock_unlock(&env->map_lock);
	return rc ? spool_map_mdb_error(rc) : 0;
}

void spool_env_failed(struct spool_env *env, int mdb_rc)
{
	/* A commit that failed for I/O (ENOSPC, EIO, a failed fsync that may
	 * have dropped dirty pages) or left LMDB panicked: reopen before the
	 * next transaction rather than trust the in-memory state. */
	if (mdb_rc == MDB_MAP_FULL || mdb_rc == MDB_TXN_FULL || mdb_rc == MDB_KEYEXIST ||
	    mdb_rc == MDB_NOTFOUND || mdb_rc == 0)
		return;
	atomic_store(&env->need_reopen, true);
}

int spool_env_commit_error(struct spool_env *env, int mdb_rc)
{
	int code = spool_map_mdb_error(mdb_rc);
	if (mdb_rc == MDB_MAP_FULL)
		return SPOOL_EFULL;
	if (code != -EIO && code != -ENOSPC)
		return code;
	/* LMDB reports a write cut short by a full disk as EIO: tell the caller
	 * what it is when the file system is (nearly) out of space */
	struct statvfs fs;
	if (statvfs(env->dir, &fs) == 0) {
		uint64_t avail = (uint64_t)(geteuid() == 0 ? fs.f_bfree : fs.f_bavail) * fs.f_frsize;
		if (avail < ((uint64_t)4 << 20))
			return -ENOSPC;
	}
	return code;
}

/* Room for deletes on a full disk.  LMDB copies each page a delete touches
 * before it frees any, so when data.mdb has no free page left, deleting
 * needs new pages at the end of the file; on a disk another program filled
 * that is impossible, and the agent could never remove what the server
 * acknowledged.  Two guards keep room for them, both sized by
 * spool_env_delete_room(): 1/32 of the file system, 64 KiB to 1 MiB.
 * spool_env_reserve_tail() reserves that much past the end of the file
 * (fallocate, size unchanged) whenever the file comes within 64 KiB of the
 * last reservation's end, so LMDB's page writes past the end land in blocks
 * already held; a reservation that fails (the disk is full already) is
 * tried again after the next commit.  admit.c's headroom keeps the spool's
 * own appends from taking the last of it. */
uint64_t spool_env_delete_room(const struct statvfs *fs)
{
	uint64_t room = (uint64_t)fs->f_blocks * fs->f_frsize / 32;
	return room < (64u << 10) ? (64u << 10) : room > (1u << 20) ? (1u << 20) : room;
}

void spool_env_reserve_tail(struct spool_env *env)
{
	MDB_envinfo info;
	MDB_stat st;
	int fd;
	if (mdb_env_info(env->mdb, &info) != 0 || mdb_env_stat(env->mdb, &st) != 0)
		return;
	uint64_t end = ((uint64_t)info.me_last_pgno + 1) * st.ms_psize;
	if (end + (64u << 10) <= atomic_load(&env->reserved_to))
		return;
	if (mdb_env_get_fd(env->mdb, &fd) != 0)
		return;
	struct statvfs fs;
	uint64_t want = fstatvfs(fd, &fs) == 0 ? spool_env_delete_room(&fs) : (1u << 20);
	if (fallocate(fd, FALLOC_FL_KEEP_SIZE, (off_t)end, (off_t)want) == 0)
		atomic_store(&env->reserved_to, end + want);
}
