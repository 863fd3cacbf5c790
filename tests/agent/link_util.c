/* link_util.c — see link_util.h. */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <msgpack.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "link_util.h"

static const char b32[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";

static uint64_t rng_next(uint64_t *state)
{
	/* splitmix64 */
	uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static void pack_str(msgpack_packer *pk, const char *s, size_t len)
{
	msgpack_pack_str_with_body(pk, s, len);
}

#define PACK_LIT(pk, s) pack_str(pk, s, sizeof(s) - 1)

static struct spool *open_sync(const char *dir)
{
	struct spool_options o;
	spool_options_init(&o);
	o.durability = SPOOL_SYNC;
	o.max_bytes = (uint64_t)4 << 30;
	struct spool *s = NULL;
	char err[512];
	int rc = spool_open(dir, &o, &s, err, sizeof(err));
	ck_assert_msg(rc == 0, "spool_open %s: %s", dir, err);
	return s;
}

void lk_config(const struct th_dir *d, const char *endpoint, const char *extra)
{
	FILE *f = fopen(d->config, "w");
	ck_assert_ptr_nonnull(f);
	fprintf(f, "spool: %s\nlog:\n  level: debug\nhttp:\n  endpoint: %s\n%s", d->spool, endpoint,
	        extra ? extra : "");
	ck_assert_int_eq(fclose(f), 0);
}

void lk_fill(const char *spool, uint64_t first, uint64_t n, size_t noise)
{
	static uint64_t run;
	if (!run)
		ck_assert_int_eq(getrandom(&run, sizeof(run), 0), (ssize_t)sizeof(run));
	uint64_t rng = run ^ first;
	struct spool *s = open_sync(spool);
	enum { CHUNK = 1000 };
	struct spool_input *in = calloc(CHUNK, sizeof(*in));
	msgpack_sbuffer *sb = calloc(CHUNK, sizeof(*sb));
	char *text = malloc(64 + noise);
	ck_assert(in && sb && text);
	struct timespec now;
	clock_gettime(CLOCK_REALTIME, &now);
	struct tm tm;
	gmtime_r(&now.tv_sec, &tm);
	char ts[40];
	strftime(ts, 24, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(ts + 19, sizeof(ts) - 19, ".%06ldZ", now.tv_nsec / 1000);
	for (uint64_t done = 0; done < n;) {
		size_t k = n - done < CHUNK ? (size_t)(n - done) : CHUNK;
		for (size_t i = 0; i < k; i++) {
			uint64_t num = first + done + i;
			int tl = snprintf(text, 64, "msg %llu", (unsigned long long)num);
			if (noise) {
				text[tl++] = ' ';
				for (size_t j = 0; j < noise; j++)
					text[tl++] = b32[rng_next(&rng) & 31];
			}
			/* a ULID: 48 bits of this run, then 80 of the number's */
			char id[27];
			uint64_t a = run, b = num;
			id[0] = '0';
			for (int j = 1; j <= 12; j++, a >>= 5)
				id[j] = b32[a & 31];
			for (int j = 25; j >= 13; j--, b >>= 5)
				id[j] = b32[b & 31];
			id[26] = '\0';
			msgpack_sbuffer_init(&sb[i]);
			msgpack_packer pk;
			msgpack_packer_init(&pk, &sb[i], msgpack_sbuffer_write);
			msgpack_pack_map(&pk, 5);
			PACK_LIT(&pk, "message");
			pack_str(&pk, text, (size_t)tl);
			PACK_LIT(&pk, "severity");
			PACK_LIT(&pk, "info");
			PACK_LIT(&pk, "client_event_id");
			pack_str(&pk, id, 26);
			PACK_LIT(&pk, "timestamp");
			pack_str(&pk, ts, strlen(ts));
			PACK_LIT(&pk, "metadata");
			msgpack_pack_map(&pk, 1);
			PACK_LIT(&pk, "c_client");
			msgpack_pack_map(&pk, 2);
			PACK_LIT(&pk, "hostname");
			PACK_LIT(&pk, "link-test");
			PACK_LIT(&pk, "pid");
			msgpack_pack_int64(&pk, getpid());
			in[i] = (struct spool_input){SPOOL_SEV_INFO, sb[i].data, sb[i].size};
		}
		int rc = spool_append_many(s, in, k);
		ck_assert_msg(rc == 0, "append: %s", spool_strerror(rc));
		for (size_t i = 0; i < k; i++)
			msgpack_sbuffer_destroy(&sb[i]);
		done += k;
	}
	free(text);
	free(sb);
	free(in);
	ck_assert_int_eq(spool_close(s), 0);
}

/* The number in "msg <n>" of a stored msgpack event, or -1. */
static long event_number(const void *data, size_t len)
{
	msgpack_unpacked u;
	msgpack_unpacked_init(&u);
	long num = -1;
	if (msgpack_unpack_next(&u, data, len, NULL) == MSGPACK_UNPACK_SUCCESS &&
	    u.data.type == MSGPACK_OBJECT_MAP) {
		const msgpack_object_map *m = &u.data.via.map;
		for (uint32_t i = 0; i < m->size; i++) {
			const msgpack_object *k = &m->ptr[i].key, *v = &m->ptr[i].val;
			if (k->type == MSGPACK_OBJECT_STR && k->via.str.size == 7 &&
			    memcmp(k->via.str.ptr, "message", 7) == 0 &&
			    v->type == MSGPACK_OBJECT_STR && v->via.str.size > 4 &&
			    memcmp(v->via.str.ptr, "msg ", 4) == 0) {
				char digits[24];
				size_t dl = v->via.str.size - 4 < sizeof(digits) - 1
				                ? v->via.str.size - 4
				                : sizeof(digits) - 1;
				memcpy(digits, v->via.str.ptr + 4, dl);
				digits[dl] = '\0';
				num = atol(digits);
			}
		}
	}
	msgpack_unpacked_destroy(&u);
	return num;
}

size_t lk_pending(const char *spool, char *pending, size_t cap)
{
	struct spool *s = open_sync(spool);
	uint64_t after = 0;
	size_t marked = 0;
	memset(pending, 0, cap);
	for (;;) {
		struct spool_batch *b;
		ck_assert_int_eq(spool_read_batch(s, after, 1000, 0, &b), 0);
		size_t n = spool_batch_count(b);
		const struct spool_record *r = spool_batch_records(b);
		for (size_t i = 0; i < n; i++) {
			long num = event_number(r[i].data, r[i].len);
			ck_assert_msg(num > 0 && (size_t)num < cap,
			              "pending record %llu: no 'msg <n>'",
			              (unsigned long long)r[i].seq);
			pending[num] = 1;
			marked++;
			after = r[i].seq;
		}
		spool_batch_release(b);
		if (n == 0)
			break;
	}
	ck_assert_int_eq(spool_close(s), 0);
	return marked;
}

int lk_run(const char *const *argv, char *out, size_t len)
{
	/* no ck_assert: lk_netns_enter() runs this before any test */
	int pipefd[2];
	if (out && len)
		out[0] = '\0';
	if (pipe2(pipefd, O_CLOEXEC) != 0)
		return 127;
	pid_t pid = fork();
	if (pid < 0) {
		close(pipefd[0]);
		close(pipefd[1]);
		return 127;
	}
	if (pid == 0) {
		dup2(pipefd[1], 1);
		dup2(pipefd[1], 2);
		execvp(argv[0], (char *const *)argv);
		static const char *const dirs[] = {"/usr/sbin/", "/sbin/", "/usr/bin/"};
		for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++) {
			char path[256];
			snprintf(path, sizeof(path), "%s%s", dirs[i], argv[0]);
			execv(path, (char *const *)argv);
		}
		_exit(127);
	}
	close(pipefd[1]);
	size_t got = 0;
	char sink[4096];
	for (;;) {
		char *to = out && got + 1 < len ? out + got : sink;
		size_t room = out && got + 1 < len ? len - 1 - got : sizeof(sink);
		ssize_t r = read(pipefd[0], to, room);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		if (to != sink)
			got += (size_t)r;
	}
	close(pipefd[0]);
	if (out && len)
		out[got] = '\0';
	int st;
	while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
		;
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

size_t lk_dead_list(const char *spool, int *status, char *message, size_t len)
{
	char prog[512], out[65536];
	snprintf(prog, sizeof(prog), "%s/tools/spoolctl", th_prog("SPOOL_TEST_BUILD_DIR"));
	const char *argv[] = {prog, "--spool", spool, "dead", "list", "--json", NULL};
	int rc = lk_run(argv, out, sizeof(out));
	ck_assert_msg(rc == 0, "spoolctl dead list: exit %d: %s", rc, out);
	size_t n = 0;
	for (char *line = strtok(out, "\n"); line; line = strtok(NULL, "\n")) {
		json_error_t je;
		json_t *j = json_loads(line, 0, &je);
		ck_assert_msg(j != NULL, "spoolctl dead list --json: '%s': %s", line, je.text);
		if (n++ == 0) {
			*status = (int)json_integer_value(json_object_get(j, "status"));
			const char *m = json_string_value(
			    json_object_get(json_object_get(j, "event"), "message"));
			snprintf(message, len, "%s", m ? m : "");
		}
		json_decref(j);
	}
	return n;
}

/* Writes text to a /proc file; 0 or -errno. */
static int write_proc(const char *path, const char *text)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	ssize_t w = write(fd, text, strlen(text));
	int rc = w == (ssize_t)strlen(text) ? 0 : -errno;
	close(fd);
	return rc;
}

int lk_netns_enter(char *why, size_t len)
{
	/* As root (or with CAP_SYS_ADMIN) a network namespace alone will do;
	 * otherwise a user namespace first, in which this user is root, as
	 * `unshare --map-root-user --net` makes it. */
	if (unshare(CLONE_NEWNET) != 0) {
		int first = errno;
		uid_t uid = getuid();
		gid_t gid = getgid();
		if (unshare(CLONE_NEWUSER | CLONE_NEWNET) != 0) {
			snprintf(why, len,
			         "cannot make a network namespace: unshare(CLONE_NEWNET): %s; "
			         "unshare(CLONE_NEWUSER|CLONE_NEWNET): %s (user namespaces "
			         "disabled? see sysctl user.max_user_namespaces and "
			         "kernel.unprivileged_userns_clone)",
			         strerror(first), strerror(errno));
			return -1;
		}
		char map[64];
		snprintf(map, sizeof(map), "0 %lu 1", (unsigned long)uid);
		int rc = write_proc("/proc/self/setgroups", "deny");
		if (rc == 0 || rc == -ENOENT)
			rc = write_proc("/proc/self/uid_map", map);
		snprintf(map, sizeof(map), "0 %lu 1", (unsigned long)gid);
		if (rc == 0)
			rc = write_proc("/proc/self/gid_map", map);
		if (rc) {
			snprintf(why, len, "cannot map root in the new user namespace: %s",
			         strerror(-rc));
			return -1;
		}
	}
	char out[1024];
	const char *up[] = {"ip", "link", "set", "lo", "up", "mtu", "1500", NULL};
	int rc = lk_run(up, out, sizeof(out));
	if (rc) {
		snprintf(why, len, "`ip link set lo up mtu 1500` in the new namespace: %s",
		         rc == 127 ? "no `ip` command (install iproute2)" : out);
		return -1;
	}
	return 0;
}

int lk_tbf(const char *rate, const char *burst, const char *latency, char *why, size_t len)
{
	char out[1024];
	const char *argv[] = {"tc",   "qdisc", "replace", "dev", "lo",      "root",  "tbf",
	                      "rate", rate,    "burst",   burst, "latency", latency, NULL};
	int rc = lk_run(argv, out, sizeof(out));
	if (rc) {
		snprintf(why, len,
		         "`tc qdisc replace dev lo root tbf rate %s burst %s latency %s`: %s", rate,
		         burst, latency, rc == 127 ? "no `tc` command (install iproute2)" : out);
		return -1;
	}
	return 0;
}

uint64_t lk_qdisc_sent(void)
{
	char out[4096];
	const char *argv[] = {"tc", "-s", "qdisc", "show", "dev", "lo", NULL};
	int rc = lk_run(argv, out, sizeof(out));
	ck_assert_msg(rc == 0, "tc -s qdisc show dev lo: %s", out);
	const char *sent = strstr(out, "Sent ");
	ck_assert_msg(sent != NULL, "no 'Sent' in tc -s: %s", out);
	return strtoull(sent + 5, NULL, 10);
}
