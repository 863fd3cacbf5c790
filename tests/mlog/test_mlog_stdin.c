/* test_mlog_stdin.c — `mlog -` (tools/mlog_stdin.c), the real command
 * ($MLOG_COMMAND) fed through a pipe by a producer writing numbered lines of
 * many lengths:
 *   - killed with SIGKILL at a random moment (seeded, printed;
 *     SPOOL_TEST_SEED replays), mid-stream, with the producer writing flat
 *     out or in bursts: the spool holds lines 1..k, in order, each one
 *     intact and once, nothing else, and no dead letter;
 *   - at a clean end of input: exit status 0, and the spool holds every
 *     line (the last one without its '\n' too);
 *   - a slow trickle: each line is in the spool while mlog still waits for
 *     the next one (a group never waits to be filled);
 *   - a line over the message limit in the middle is named on standard
 *     error, exit status 1, and the lines around it are logged;
 *   - every option makes the same event as the one-shot `mlog MESSAGE`
 *     (libmlog's mlog_client_send()), but for id, time and pid. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <jansson.h>

#include "check_main.h"
#include "codec/json.h"
#include "testutil.h"

#define LINE_MAX_BYTES 6000 /* the longest line line_text() makes */
#define KILL_ROUNDS    40
#define EOF_ROUNDS     8
#define KILL_WITHIN_S  0.060             /* mlog is killed this soon after it starts, at most */
#define LIMIT_BYTES    ((size_t)1 << 20) /* MLOG_MAX_MESSAGE_BYTES */

/* Line n (from 1): "00000042:" and letters, 9 to 408 bytes long, and every
 * 997th 5,000 bytes longer, so lines of all sizes straddle every read and
 * group boundary.  Returns its length (no '\n'). */
static size_t line_text(uint64_t n, char *out)
{
	int h = snprintf(out, 16, "%08" PRIu64 ":", n);
	size_t len = (size_t)h + (size_t)(n * 131 % 400);
	if (n % 997 == 0)
		len += 5000;
	for (size_t j = (size_t)h; j < len; j++)
		out[j] = (char)('a' + (n + j) % 26);
	return len;
}

/* ---- the producer: a child writing lines 1..count into fd ---- */

enum pace { FLAT_OUT, BURSTS };

/* In the child: writes lines 1..count ('\n' after each, but after the last
 * one only when last_newline), then exits; exits at once when the reader
 * is gone.  BURSTS: 1 to 200 lines, then a pause of up to 2 ms. */
static void produce(int fd, uint64_t count, enum pace pace, bool last_newline, uint64_t seed)
{
	signal(SIGPIPE, SIG_IGN);
	size_t cap = 1 << 16;
	char *buf = malloc(cap + LINE_MAX_BYTES + 1);
	if (!buf)
		_exit(2);
	size_t used = 0;
	uint64_t rnd = seed | 1, burst = 0;
	for (uint64_t n = 1; n <= count; n++) {
		used += line_text(n, buf + used);
		if (n < count || last_newline)
			buf[used++] = '\n';
		bool flush = used >= cap || n == count;
		if (pace == BURSTS && burst-- == 0) {
			burst = tu_rand_range(&rnd, 1, 200);
			flush = true;
		}
		if (flush) {
			if (tu_write_all(fd, buf, used) != 0)
				_exit(0); /* mlog is gone */
			used = 0;
			if (pace == BURSTS)
				tu_sleep((double)tu_rand_range(&rnd, 0, 2000) / 1e6);
		}
	}
	free(buf);
	_exit(0);
}

/* ---- mlog ---- */

/* Starts `mlog --spool spool -` with standard input `in` and standard
 * error into errpath. */
static pid_t start_mlog(const char *spool, int in, const char *errpath)
{
	const char *exe = getenv("MLOG_COMMAND");
	ck_assert_msg(exe != NULL, "MLOG_COMMAND not set");
	pid_t pid = tu_fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		dup2(in, STDIN_FILENO);
		int err = open(errpath, O_WRONLY | O_CREAT | O_TRUNC, 0600);
		if (err >= 0)
			dup2(err, STDERR_FILENO);
		execl(exe, "mlog", "--spool", spool, "-", (char *)NULL);
		_exit(127);
	}
	return pid;
}

/* A producer of count lines and mlog reading them, joined by a pipe. */
struct stream {
	pid_t producer, mlog;
};

static struct stream stream_start(const char *spool, const char *errpath, uint64_t count,
                                  enum pace pace, bool last_newline, uint64_t seed)
{
	int p[2];
	ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
	struct stream st;
	st.producer = tu_fork();
	ck_assert_int_ge(st.producer, 0);
	if (st.producer == 0) {
		close(p[0]);
		produce(p[1], count, pace, last_newline, seed);
	}
	close(p[1]);
	st.mlog = start_mlog(spool, p[0], errpath);
	close(p[0]);
	return st;
}

/* ---- what the spool holds ---- */

/* Checks that the spool holds lines 1..k exactly (k >= 0), in order, each
 * intact, as events that encode to JSON, and no dead letter; returns k. */
static size_t spool_prefix(const char *spool, const char *what)
{
	struct spool_options o;
	tu_opts(&o, SPOOL_SYNC);
	struct spool *s = tu_open(spool, &o);
	struct tu_rec *r;
	size_t n = tu_read_all(s, false, &r);
	char *want = malloc(LINE_MAX_BYTES);
	ck_assert_ptr_nonnull(want);
	for (size_t i = 0; i < n; i++) {
		const char *msg;
		size_t len;
		ck_assert_msg(spool_event_get_str(r[i].data, r[i].len, "message", &msg, &len) == 0,
		              "%s: record %zu has no message", what, i + 1);
		size_t wlen = line_text(i + 1, want);
		ck_assert_msg(
		    len == wlen && memcmp(msg, want, len) == 0,
		    "%s: record %zu holds \"%.20s...\" (%zu bytes), not line %zu (%zu bytes)", what,
		    i + 1, msg, len, i + 1, wlen);
		struct spool_buf js = {0};
		ck_assert_int_eq(spool_event_to_json(r[i].data, r[i].len, NULL, &js), 0);
		spool_buf_free(&js);
	}
	free(want);
	tu_recs_free(r, n);
	ck_assert_uint_eq(tu_read_all(s, true, &r), 0);
	tu_recs_free(r, 0);
	ck_assert_int_eq(spool_close(s), 0);
	return n;
}

/* Pending events of the spool, as committed (0 before mlog made it). */
static uint64_t pending(const char *spool)
{
	char data[PATH_MAX + 64];
	snprintf(data, sizeof(data), "%s/data.mdb", spool);
	if (access(data, F_OK) != 0)
		return 0;
	struct spool_options o;
	tu_opts(&o, SPOOL_SYNC);
	struct spool *s = tu_open(spool, &o);
	uint64_t n = tu_stats(s).pending;
	ck_assert_int_eq(spool_close(s), 0);
	return n;
}

/* Waits until the spool holds at least n events, or the deadline. */
static uint64_t wait_pending(const char *spool, uint64_t n, double deadline)
{
	uint64_t got;
	while ((got = pending(spool)) < n && tu_now() < deadline)
		tu_sleep(0.002);
	return got;
}

static char g_dir[PATH_MAX];

static void setup(void)
{
	tu_mkdtemp(g_dir, sizeof(g_dir), "mlog-stdin");
}

static void teardown(void)
{
	tu_rmrf(g_dir);
}

/* Killed with SIGKILL mid-stream: a gap-free, undamaged prefix.  Even
 * rounds kill mlog at a random moment from its start (before it opened
 * the spool, too); odd ones at a random moment after its first commit. */
START_TEST(test_kill_leaves_prefix)
{
	uint64_t rnd = tu_seed("mlog-stdin-kill");
	size_t rounds_with_lines = 0, most = 0;
	for (int round = 0; round < KILL_ROUNDS; round++) {
		char spool[PATH_MAX + 32], errpath[PATH_MAX + 32], what[64];
		snprintf(spool, sizeof(spool), "%s/kill-%d", g_dir, round);
		snprintf(errpath, sizeof(errpath), "%s/kill-%d.err", g_dir, round);
		snprintf(what, sizeof(what), "kill round %d", round);
		enum pace pace = round % 4 < 2 ? FLAT_OUT : BURSTS;
		struct stream st =
		    stream_start(spool, errpath, UINT64_MAX / 2, pace, true, tu_rand(&rnd));
		if (round % 2)
			ck_assert_msg(wait_pending(spool, 1, tu_now() + 30) > 0,
			              "%s: nothing committed", what);
		tu_sleep((double)tu_rand_range(&rnd, 0, (uint64_t)(KILL_WITHIN_S * 1e6)) / 1e6);
		kill(st.mlog, SIGKILL);
		int mlog_status = tu_wait(st.mlog);
		ck_assert_msg(mlog_status == 128 + SIGKILL,
		              "%s: mlog ended with %d before the kill", what, mlog_status);
		ck_assert_int_eq(tu_wait_until(st.producer, tu_now() + 10), 0);
		size_t k = spool_prefix(spool, what);
		rounds_with_lines += k > 0;
		most = k > most ? k : most;
		tu_rmrf(spool);
	}
	printf("mlog-stdin kill: %d rounds, %zu with lines in the spool, at most %zu lines\n",
	       KILL_ROUNDS, rounds_with_lines, most);
	/* the kills fell mid-stream, not all before the first commit */
	ck_assert_uint_ge(rounds_with_lines, KILL_ROUNDS / 2);
}
END_TEST

/* A clean end of input: exit status 0, every line in the spool. */
START_TEST(test_end_of_input_all_lines)
{
	uint64_t rnd = tu_seed("mlog-stdin-eof");
	for (int round = 0; round < EOF_ROUNDS; round++) {
		char spool[PATH_MAX + 32], errpath[PATH_MAX + 32], what[64];
		snprintf(spool, sizeof(spool), "%s/eof-%d", g_dir, round);
		snprintf(errpath, sizeof(errpath), "%s/eof-%d.err", g_dir, round);
		snprintf(what, sizeof(what), "end-of-input round %d", round);
		uint64_t count = round == 0 ? 0 : tu_rand_range(&rnd, 1, 40000);
		bool last_newline = round % 3 != 1;
		struct stream st =
		    stream_start(spool, errpath, count, round % 2 ? BURSTS : FLAT_OUT, last_newline,
		                 tu_rand(&rnd));
		ck_assert_int_eq(tu_wait_until(st.producer, tu_now() + 60), 0);
		int status = tu_wait_until(st.mlog, tu_now() + 60);
		ck_assert_msg(status == 0, "%s: mlog exited with %d", what, status);
		size_t k = spool_prefix(spool, what);
		ck_assert_msg(k == count, "%s: %zu lines in the spool, %" PRIu64 " written", what,
		              k, count);
		tu_rmrf(spool);
	}
}
END_TEST

/* A trickle (tail -F): each line is committed before the next one comes. */
START_TEST(test_trickle_commits_each_line)
{
	char spool[PATH_MAX + 32], errpath[PATH_MAX + 32];
	snprintf(spool, sizeof(spool), "%s/trickle", g_dir);
	snprintf(errpath, sizeof(errpath), "%s/trickle.err", g_dir);
	int p[2];
	ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
	pid_t mlog = start_mlog(spool, p[0], errpath);
	close(p[0]);
	char line[LINE_MAX_BYTES + 1];
	for (uint64_t n = 1; n <= 5; n++) {
		size_t len = line_text(n, line);
		line[len++] = '\n';
		ck_assert_int_eq(tu_write_all(p[1], line, len), 0);
		ck_assert_msg(wait_pending(spool, n, tu_now() + 10) == n,
		              "line %" PRIu64 " not committed while mlog waits", n);
	}
	close(p[1]);
	ck_assert_int_eq(tu_wait_until(mlog, tu_now() + 30), 0);
	ck_assert_uint_eq(spool_prefix(spool, "trickle"), 5);
}
END_TEST

/* A line over the limit is named, and the others are logged. */
START_TEST(test_refused_line_named)
{
	char spool[PATH_MAX + 32], errpath[PATH_MAX + 32];
	snprintf(spool, sizeof(spool), "%s/refused", g_dir);
	snprintf(errpath, sizeof(errpath), "%s/refused.err", g_dir);
	int p[2];
	ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
	pid_t mlog = start_mlog(spool, p[0], errpath);
	close(p[0]);
	char line[LINE_MAX_BYTES + 1];
	size_t len = line_text(1, line);
	line[len++] = '\n';
	ck_assert_int_eq(tu_write_all(p[1], line, len), 0);
	/* line 2: the limit and one byte more, in pieces */
	char *big = malloc(LIMIT_BYTES + 2);
	ck_assert_ptr_nonnull(big);
	memset(big, 'z', LIMIT_BYTES + 1);
	big[LIMIT_BYTES + 1] = '\n';
	ck_assert_int_eq(tu_write_all(p[1], big, LIMIT_BYTES + 2), 0);
	free(big);
	len = line_text(2, line); /* logged as the spool's second event */
	line[len++] = '\n';
	ck_assert_int_eq(tu_write_all(p[1], line, len), 0);
	close(p[1]);
	ck_assert_int_eq(tu_wait_until(mlog, tu_now() + 30), 1);
	ck_assert_uint_eq(spool_prefix(spool, "refused"), 2);
	char err[1024] = "";
	FILE *f = fopen(errpath, "r");
	ck_assert_ptr_nonnull(f);
	size_t got = fread(err, 1, sizeof(err) - 1, f);
	err[got] = '\0';
	fclose(f);
	ck_assert_msg(strstr(err, "line 2: event not logged: message is 1048577 bytes") != NULL,
	              "stderr: %s", err);
}
END_TEST

/* The event of the spool's record i as JSON, without what differs from
 * one run to the next: client_event_id, timestamp, c_client's pid (and
 * fqdn, which a run may log before its resolver thread has it). */
static json_t *event_json(const struct tu_rec *r)
{
	struct spool_buf js = {0};
	ck_assert_int_eq(spool_event_to_json(r->data, r->len, NULL, &js), 0);
	json_t *j = json_loadb(js.data, js.len, JSON_ALLOW_NUL, NULL);
	spool_buf_free(&js);
	ck_assert_ptr_nonnull(j);
	ck_assert_ptr_nonnull(json_object_get(j, "client_event_id"));
	ck_assert_ptr_nonnull(json_object_get(j, "timestamp"));
	json_object_del(j, "client_event_id");
	json_object_del(j, "timestamp");
	json_t *client = json_object_get(json_object_get(j, "metadata"), "c_client");
	ck_assert_ptr_nonnull(client);
	json_object_del(client, "pid");
	json_object_del(client, "fqdn");
	return j;
}

/* `mlog -` and `mlog MESSAGE` with every option make the same event. */
START_TEST(test_same_event_as_one_shot)
{
	const char *exe = getenv("MLOG_COMMAND");
	ck_assert_msg(exe != NULL, "MLOG_COMMAND not set");
	static const char opts[] =
	    "-s warn -t camera -t 'dome & slit' --title Cooling --ttl 30 -m site=LP -m loop=2 "
	    "--metadata-json '{\"fwhm\": 3.4, \"ok\": true, \"n\": [1, null, {\"deep\": \"x\"}]}'";
	char spool[PATH_MAX + 32], cmd[PATH_MAX * 2 + sizeof(opts) + 64];
	snprintf(spool, sizeof(spool), "%s/same", g_dir);
	snprintf(cmd, sizeof(cmd), "printf 'same words\\n' | '%s' --spool '%s' %s -", exe, spool,
	         opts);
	ck_assert_int_eq(WEXITSTATUS(system(cmd)), 0);
	snprintf(cmd, sizeof(cmd), "'%s' --spool '%s' %s same words", exe, spool, opts);
	ck_assert_int_eq(WEXITSTATUS(system(cmd)), 0);

	struct spool_options o;
	tu_opts(&o, SPOOL_SYNC);
	struct spool *s = tu_open(spool, &o);
	struct tu_rec *r;
	ck_assert_uint_eq(tu_read_all(s, false, &r), 2);
	ck_assert_int_eq(r[0].severity, SPOOL_SEV_WARN);
	ck_assert_int_eq(r[1].severity, SPOOL_SEV_WARN);
	json_t *from_stdin = event_json(&r[0]), *one_shot = event_json(&r[1]);
	char *a = json_dumps(from_stdin, JSON_SORT_KEYS), *b = json_dumps(one_shot, JSON_SORT_KEYS);
	ck_assert_msg(json_equal(from_stdin, one_shot), "mlog -: %s\nmlog MESSAGE: %s", a, b);
	ck_assert_ptr_nonnull(strstr(a, "\"loop\": \"2\""));
	ck_assert_ptr_nonnull(strstr(a, "\"deep\": \"x\""));
	free(a);
	free(b);
	json_decref(from_stdin);
	json_decref(one_shot);
	tu_recs_free(r, 2);
	ck_assert_int_eq(spool_close(s), 0);
}
END_TEST

static Suite *mlog_stdin_suite(void)
{
	Suite *su = suite_create("mlog-stdin");
	TCase *tc = tcase_create("mlog-stdin");
	tcase_set_timeout(tc, 120);
	tu_add_cleanup_fixture(tc); /* what a failed test leaves goes too */
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_kill_leaves_prefix);
	tcase_add_test(tc, test_end_of_input_all_lines);
	tcase_add_test(tc, test_trickle_commits_each_line);
	tcase_add_test(tc, test_refused_line_named);
	tcase_add_test(tc, test_same_event_as_one_shot);
	suite_add_tcase(su, tc);
	return su;
}

int main(void)
{
	return tc_run_forked(mlog_stdin_suite());
}
