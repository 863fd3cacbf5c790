/* testutil.c — shared helpers for the libspool test suites. */
#include "testutil.h"

#include <errno.h>
#include <ftw.h>
#include <signal.h>
#include <inttypes.h>
#include <msgpack.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <limits.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

const enum spool_durability tu_modes[TU_NMODES] = {SPOOL_SYNC, SPOOL_COMMIT, SPOOL_BUFFERED};

const char *tu_mode_label(enum spool_durability d)
{
	switch (d) {
	case SPOOL_SYNC:
		return "sync";
	case SPOOL_COMMIT:
		return "commit";
	case SPOOL_BUFFERED:
		return "buffered";
	}
	return "?";
}

/* ---- directories ---- */

/* The test case's base directory, made by the runner process. */
static char g_base[PATH_MAX];

static void base_setup(void)
{
	snprintf(g_base, sizeof(g_base), "/tmp/spool-test-%s-XXXXXX",
		 program_invocation_short_name);
	if (mkdtemp(g_base) == NULL) {
		fprintf(stderr, "mkdtemp(%s): %s\n", g_base, strerror(errno));
		g_base[0] = '\0';
	}
}

static void base_teardown(void)
{
	tu_rmrf(g_base);
	g_base[0] = '\0';
}

void tu_add_cleanup_fixture(TCase *tc)
{
	tcase_add_unchecked_fixture(tc, base_setup, base_teardown);
}

void tu_mkdtemp(char *buf, size_t len, const char *tag)
{
	int n = g_base[0] ? snprintf(buf, len, "%s/%s-XXXXXX", g_base, tag)
			  : snprintf(buf, len, "/tmp/spool-test-%s-XXXXXX", tag);
	ck_assert_msg(n > 0 && (size_t)n < len, "temp dir name too long");
	ck_assert_msg(mkdtemp(buf) != NULL, "mkdtemp(%s): %s", buf, strerror(errno));
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)ftw;
	if (flag == FTW_DP || flag == FTW_D)
		rmdir(path);
	else
		unlink(path);
	return 0;
}

void tu_rmrf(const char *path)
{
	if (path == NULL || path[0] == '\0')
		return;
	nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

void tu_join(char *buf, size_t len, const char *dir, const char *name)
{
	int n = snprintf(buf, len, "%s/%s", dir, name);
	ck_assert_msg(n > 0 && (size_t)n < len, "path too long");
}

/* ---- payloads ---- */

static void pack_str(msgpack_packer *pk, const char *s, size_t len)
{
	msgpack_pack_str(pk, len);
	msgpack_pack_str_body(pk, s, len);
}

void tu_payload(struct tu_buf *out, int64_t producer, uint64_t n, const char *msg, size_t pad)
{
	msgpack_sbuffer sb;
	msgpack_packer pk;
	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);

	size_t mlen = msg ? strlen(msg) : 0;
	char *text = malloc(mlen + pad + 1);
	if (text == NULL)
		abort();
	if (mlen)
		memcpy(text, msg, mlen);
	memset(text + mlen, 'x', pad);
	text[mlen + pad] = '\0';

	msgpack_pack_map(&pk, 3);
	pack_str(&pk, "p", 1);
	msgpack_pack_int64(&pk, producer);
	pack_str(&pk, "n", 1);
	msgpack_pack_uint64(&pk, n);
	pack_str(&pk, "message", 7);
	pack_str(&pk, text, mlen + pad);
	free(text);

	/* Hand the buffer over; the sbuffer's memory is plain malloc. */
	out->len = sb.size;
	out->data = (unsigned char *)msgpack_sbuffer_release(&sb);
	msgpack_sbuffer_destroy(&sb);
}

void tu_buf_free(struct tu_buf *b)
{
	if (b == NULL)
		return;
	free(b->data);
	b->data = NULL;
	b->len = 0;
}

static bool key_is(const msgpack_object *k, const char *name)
{
	size_t n = strlen(name);
	return k->type == MSGPACK_OBJECT_STR && k->via.str.size == n &&
	       memcmp(k->via.str.ptr, name, n) == 0;
}

int tu_decode(const void *data, size_t len, struct tu_event *ev)
{
	memset(ev, 0, sizeof(*ev));
	msgpack_unpacked up;
	msgpack_unpacked_init(&up);
	size_t off = 0;
	int rc = -1;
	if (msgpack_unpack_next(&up, data, len, &off) != MSGPACK_UNPACK_SUCCESS)
		goto out;
	if (off != len || up.data.type != MSGPACK_OBJECT_MAP)
		goto out;
	const msgpack_object_map *m = &up.data.via.map;
	for (uint32_t i = 0; i < m->size; i++) {
		const msgpack_object *k = &m->ptr[i].key;
		const msgpack_object *v = &m->ptr[i].val;
		if (key_is(k, "p")) {
			if (v->type == MSGPACK_OBJECT_POSITIVE_INTEGER)
				ev->p = (int64_t)v->via.u64;
			else if (v->type == MSGPACK_OBJECT_NEGATIVE_INTEGER)
				ev->p = v->via.i64;
			else
				goto out;
			ev->has_p = true;
		} else if (key_is(k, "n")) {
			if (v->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
				goto out;
			ev->n = v->via.u64;
			ev->has_n = true;
		} else if (key_is(k, "message") && v->type == MSGPACK_OBJECT_STR) {
			size_t c = v->via.str.size < sizeof(ev->msg) - 1 ? v->via.str.size
									  : sizeof(ev->msg) - 1;
			memcpy(ev->msg, v->via.str.ptr, c);
			ev->msg[c] = '\0';
		}
	}
	rc = ev->has_p && ev->has_n ? 0 : -1;
out:
	msgpack_unpacked_destroy(&up);
	return rc;
}

/* ---- opening ---- */

void tu_opts(struct spool_options *o, enum spool_durability d)
{
	spool_options_init(o);
	o->durability = d;
}

struct spool *tu_open(const char *dir, const struct spool_options *opt)
{
	char err[512] = "";
	struct spool *s = NULL;
	int rc = spool_open(dir, opt, &s, err, sizeof(err));
	ck_assert_msg(rc == 0, "spool_open(%s) = %d (%s): %s", dir, rc, spool_strerror(rc), err);
	ck_assert_ptr_nonnull(s);
	return s;
}

struct spool *tu_open_nock(const char *dir, const struct spool_options *opt)
{
	char err[512] = "";
	struct spool *s = NULL;
	int rc = spool_open(dir, opt, &s, err, sizeof(err));
	if (rc != 0 || s == NULL) {
		fprintf(stderr, "[pid %ld] spool_open(%s) = %d (%s): %s\n", (long)getpid(), dir, rc,
			spool_strerror(rc), err);
		return NULL;
	}
	return s;
}

void tu_append_ok(struct spool *s, int severity, int64_t p, uint64_t n)
{
	struct tu_buf b;
	tu_payload(&b, p, n, "event", 0);
	int rc = spool_append(s, severity, b.data, b.len);
	tu_buf_free(&b);
	ck_assert_msg(rc == 0, "spool_append(p=%" PRId64 " n=%" PRIu64 ") = %d (%s)", p, n, rc,
		      spool_strerror(rc));
}

struct spool_stats tu_stats(struct spool *s)
{
	struct spool_stats st;
	memset(&st, 0xa5, sizeof(st));
	int rc = spool_stats(s, &st);
	ck_assert_msg(rc == 0, "spool_stats = %d (%s)", rc, spool_strerror(rc));
	return st;
}

/* ---- reading back ---- */

static char *dup_str(const char *s)
{
	if (s == NULL)
		return NULL;
	size_t n = strlen(s);
	char *d = malloc(n + 1);
	if (d == NULL)
		abort();
	memcpy(d, s, n + 1);
	return d;
}

size_t tu_read_all_nock(struct spool *s, bool dead, size_t chunk, struct tu_rec **out, int *rcp)
{
	size_t cap = 64, n = 0;
	struct tu_rec *v = malloc(cap * sizeof(*v));
	uint64_t after = 0;
	if (v == NULL)
		abort();
	*out = NULL;
	for (;;) {
		struct spool_batch *b = NULL;
		int rc = dead ? spool_read_dead(s, after, chunk, &b)
			      : spool_read_batch(s, after, chunk, 0, &b);
		if (rcp)
			*rcp = rc;
		if (rc != 0) {
			fprintf(stderr, "[pid %ld] spool_read_%s(after=%" PRIu64 ") = %d (%s)\n",
				(long)getpid(), dead ? "dead" : "batch", after, rc,
				spool_strerror(rc));
			tu_recs_free(v, n);
			return (size_t)-1;
		}
		size_t c = spool_batch_count(b);
		const struct spool_record *r = spool_batch_records(b);
		for (size_t i = 0; i < c; i++) {
			if (n == cap) {
				cap *= 2;
				struct tu_rec *nv = realloc(v, cap * sizeof(*v));
				if (nv == NULL)
					abort();
				v = nv;
			}
			struct tu_rec *t = &v[n++];
			t->seq = r[i].seq;
			t->enqueue_us = r[i].enqueue_us;
			t->severity = r[i].severity;
			t->len = r[i].len;
			t->data = malloc(r[i].len ? r[i].len : 1);
			if (t->data == NULL)
				abort();
			if (r[i].len)
				memcpy(t->data, r[i].data, r[i].len);
			t->dead_status = r[i].dead_status;
			t->dead_reason = dup_str(r[i].dead_reason);
			after = r[i].seq;
		}
		spool_batch_release(b);
		if (c == 0 || chunk == 0)
			break;
	}
	*out = v;
	return n;
}

size_t tu_read_all(struct spool *s, bool dead, struct tu_rec **out)
{
	int rc = 0;
	size_t n = tu_read_all_nock(s, dead, 1000, out, &rc);
	ck_assert_msg(n != (size_t)-1, "reading the spool failed: %d (%s)", rc, spool_strerror(rc));
	return n;
}

void tu_recs_free(struct tu_rec *r, size_t n)
{
	if (r == NULL)
		return;
	for (size_t i = 0; i < n; i++) {
		free(r[i].data);
		free(r[i].dead_reason);
	}
	free(r);
}

uint64_t tu_ack_all(struct spool *s)
{
	uint64_t total = 0;
	for (;;) {
		struct spool_batch *b = NULL;
		int rc = spool_read_batch(s, 0, 5000, 0, &b);
		ck_assert_msg(rc == 0, "spool_read_batch = %d (%s)", rc, spool_strerror(rc));
		size_t c = spool_batch_count(b);
		if (c == 0) {
			spool_batch_release(b);
			return total;
		}
		uint64_t *seqs = malloc(c * sizeof(*seqs));
		if (seqs == NULL)
			abort();
		const struct spool_record *r = spool_batch_records(b);
		for (size_t i = 0; i < c; i++)
			seqs[i] = r[i].seq;
		spool_batch_release(b);
		uint64_t del = 0;
		rc = spool_ack(s, seqs, c, &del);
		free(seqs);
		ck_assert_msg(rc == 0, "spool_ack = %d (%s)", rc, spool_strerror(rc));
		ck_assert_msg(del == c, "spool_ack deleted %" PRIu64 " of %zu pending records", del, c);
		total += del;
	}
}

/* ---- randomness ---- */

uint64_t tu_seed(const char *what)
{
	const char *env = getenv("SPOOL_TEST_SEED");
	uint64_t seed;
	if (env && *env) {
		seed = strtoull(env, NULL, 0);
	} else {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		seed = ((uint64_t)ts.tv_sec * 1000000007u) ^ (uint64_t)ts.tv_nsec ^
		       ((uint64_t)getpid() << 32);
	}
	printf("%s: seed %" PRIu64 " (replay with SPOOL_TEST_SEED=%" PRIu64 ")\n", what, seed,
	       seed);
	fflush(stdout);
	return seed ? seed : 0x9e3779b97f4a7c15u;
}

uint64_t tu_rand(uint64_t *state)
{
	/* splitmix64 */
	uint64_t z = (*state += 0x9e3779b97f4a7c15u);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
	return z ^ (z >> 31);
}

uint64_t tu_rand_range(uint64_t *state, uint64_t lo, uint64_t hi)
{
	if (hi <= lo)
		return lo;
	return lo + tu_rand(state) % (hi - lo + 1);
}

/* ---- time ---- */

double tu_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void tu_sleep(double seconds)
{
	if (seconds <= 0)
		return;
	struct timespec ts = {(time_t)seconds, (long)((seconds - (double)(time_t)seconds) * 1e9)};
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

/* ---- processes ---- */

pid_t tu_fork(void)
{
	pid_t parent = getpid();
	fflush(stdout);
	fflush(stderr);
	pid_t pid = fork();
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)
			_exit(99); /* the parent died before prctl took effect */
	}
	return pid;
}

int tu_wait(pid_t pid)
{
	int st = 0;
	pid_t r;
	do {
		r = waitpid(pid, &st, 0);
	} while (r < 0 && errno == EINTR);
	if (r < 0)
		return -1;
	if (WIFEXITED(st))
		return WEXITSTATUS(st);
	if (WIFSIGNALED(st))
		return 128 + WTERMSIG(st);
	return -1;
}

int tu_wait_until(pid_t pid, double deadline)
{
	for (;;) {
		int st = 0;
		pid_t r = waitpid(pid, &st, WNOHANG);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -1;
		if (r == pid) {
			if (WIFEXITED(st))
				return WEXITSTATUS(st);
			if (WIFSIGNALED(st))
				return 128 + WTERMSIG(st);
			return -1;
		}
		if (tu_now() >= deadline) {
			kill(pid, SIGKILL);
			tu_wait(pid);
			return -2;
		}
		tu_sleep(0.01);
	}
}

int tu_write_all(int fd, const void *buf, size_t len)
{
	const unsigned char *p = buf;
	while (len > 0) {
		ssize_t w = write(fd, p, len);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += w;
		len -= (size_t)w;
	}
	return 0;
}

int tu_read_full(int fd, void *buf, size_t len)
{
	unsigned char *p = buf;
	while (len > 0) {
		ssize_t r = read(fd, p, len);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return -1;
		p += r;
		len -= (size_t)r;
	}
	return 0;
}

bool tu_ck_forking(void)
{
	const char *f = getenv("CK_FORK");
	return !(f && strcmp(f, "no") == 0);
}

int tu_capture(const char *cmd, char *buf, size_t len)
{
	FILE *p = popen(cmd, "r");
	if (p == NULL)
		return -1;
	size_t n = fread(buf, 1, len - 1, p);
	buf[n] = '\0';
	return pclose(p);
}


int tu_private_tmpfs(const char *dir, const char *size_opt)
{
	if (!tu_ck_forking()) {
		printf("SKIP: needs CK_FORK (the mount namespace must die with the test)\n");
		return -1;
	}
	if (unshare(CLONE_NEWNS) != 0) {
		printf("SKIP: unshare(CLONE_NEWNS): %s\n", strerror(errno));
		return -1;
	}
	if (mount("none", "/", "none", MS_REC | MS_PRIVATE, NULL) != 0) {
		printf("SKIP: making / private: %s\n", strerror(errno));
		return -1;
	}
	if (mount("tmpfs", dir, "tmpfs", MS_NOSUID | MS_NODEV, size_opt) != 0) {
		printf("SKIP: mount tmpfs on %s: %s\n", dir, strerror(errno));
		return -1;
	}
	return 0;
}
