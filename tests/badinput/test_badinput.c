/* test_badinput.c — the end-to-end bad-input sweep.
 *
 * Every hostile input of cases.c is logged, each call in a child process of
 * its own so that a crash is counted instead of ending the sweep:
 *   async  — libmlog into the spool (commit durability), drained by the real
 *            spool-agent to the real mlog-receiver;
 *   direct — the same with async_mode off (POST at the call);
 *   cmd    — the `mlog` command (message as an argument or a line of stdin).
 * Each call must either be refused with an error naming what is wrong, or be
 * accepted and then reach the receiver once, as valid JSON, with message,
 * title, tags and metadata intact (invalid UTF-8 repaired by the documented
 * rule), or sit in the dead-letter store with a reason.  Every accepted
 * call carries metadata.bi_case, which is how the receiver's lines and the
 * dead letters are matched back to calls. */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check_main.h"
#include "codec/event.h"
#include "codec/json.h"
#include <spool/mlog.h>
#include <spool/spool.h>

#include "badinput.h"
#include "harness.h"

#define CALL_TIMEOUT  60.0 /* seconds a child may take before it counts as a crash (hang) */
#define DRAIN_TIMEOUT 60.0 /* seconds the agent gets to empty the spool */

enum outcome { O_ACCEPTED, O_REFUSED, O_CRASHED };

struct call {
	size_t ci;
	unsigned way;
	char marker[32];
	enum outcome out;
	char error[600];
	char cid[MLOG_EVENT_ID_MAX]; /* async API calls: the client_event_id */
	int seen;                    /* lines at the receiver */
	bool dead;
	char dead_reason[300];
	bool bad; /* the expectation failed */
	char note[200];
};

static struct th_dir dir;
static struct th_rx rx;
static struct bi_list cases;
static struct call *calls;
static size_t ncalls;

static const char *way_name(unsigned way)
{
	return way == BI_ASYNC    ? "async"
	       : way == BI_DIRECT ? "direct"
	       : way == BI_CMD    ? "cmd"
	                          : "raw";
}

/* ---- running one call ---- */

/* Waits for pid up to CALL_TIMEOUT; the wait status, or -1 after killing it. */
static int reap(pid_t pid)
{
	double end = th_now() + CALL_TIMEOUT;
	int st;
	for (;;) {
		pid_t r = waitpid(pid, &st, WNOHANG);
		if (r == pid)
			return st;
		if (r < 0 && errno != EINTR)
			return -1;
		if (th_now() > end) {
			kill(pid, SIGKILL);
			waitpid(pid, &st, 0);
			return -1;
		}
		usleep(2000);
	}
}

static void api_child(const struct bi_case *c, unsigned way, const char *marker, int fd)
{
	struct mlog_config cfg = {
	    .endpoint = rx.url,
	    .spool_dir = dir.spool,
	    .async_mode = way == BI_DIRECT ? MLOG_OFF : MLOG_ON,
	    .spawn_agent = MLOG_OFF, /* spool-agent drains */
	    .backpressure = MLOG_OFF,
	};
	struct mlog_kv *kv = calloc(c->nkv + 1, sizeof(*kv));
	if (c->nkv)
		memcpy(kv, c->kv, c->nkv * sizeof(*kv));
	kv[c->nkv] = (struct mlog_kv){.key = "bi_case", .type = MLOG_KV_STR, .s = marker};
	struct mlog_opts o = {
	    .severity = c->severity,
	    .title = c->title,
	    .tags = (const char *const *)c->tags,
	    .metadata_json = c->meta_json,
	    .metadata = kv,
	    .nmetadata = c->nkv + 1,
	};
	struct mlog_result r = {0};
	char err[MLOG_ERROR_MAX];
	if (c->printf_path) {
		if (mlog_configure_ex(&cfg, err, sizeof(err)) != 0) {
			snprintf(r.error, sizeof(r.error), "configure: %.200s", err);
		} else {
			const char *nul = memchr(c->msg, '\0', c->len);
			if (nul) /* a NUL through %c: only the first one is supported here */
				r = mlog_ex(&o, "%.*s%c%s", (int)(nul - c->msg), c->msg, 0,
				            nul + 1);
			else
				r = mlog_ex(&o, "%s", c->msg);
		}
		mlog_shutdown();
	} else {
		struct mlog_client *cl;
		if (mlog_client_new(&cfg, &cl, err, sizeof(err)) != 0) {
			snprintf(r.error, sizeof(r.error), "client: %.200s", err);
		} else {
			r = mlog_client_send(cl, &o, c->msg, c->len);
			mlog_client_free(cl);
		}
	}
	ssize_t w = write(fd, &r, sizeof(r));
	_exit(w == (ssize_t)sizeof(r) ? 0 : 9);
}

static void run_api(struct call *k)
{
	const struct bi_case *c = &cases.c[k->ci];
	int p[2];
	ck_assert_int_eq(pipe(p), 0);
	fflush(NULL);
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		close(p[0]);
		api_child(c, k->way, k->marker, p[1]);
	}
	close(p[1]);
	struct mlog_result r;
	size_t got = 0;
	while (got < sizeof(r)) {
		ssize_t n = read(p[0], (char *)&r + got, sizeof(r) - got);
		if (n <= 0 && !(n < 0 && errno == EINTR))
			break;
		if (n > 0)
			got += (size_t)n;
	}
	close(p[0]);
	int st = reap(pid);
	if (st < 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0 || got != sizeof(r)) {
		k->out = O_CRASHED;
		snprintf(k->error, sizeof(k->error), "child %s %d",
		         st >= 0 && WIFSIGNALED(st) ? "killed by signal" : "failed, status",
		         st >= 0 && WIFSIGNALED(st) ? WTERMSIG(st) : st);
		return;
	}
	r.error[sizeof(r.error) - 1] = '\0';
	snprintf(k->error, sizeof(k->error), "%s", r.error);
	k->out = r.ok ? O_ACCEPTED : O_REFUSED;
	if (r.ok != r.accepted)
		snprintf(k->note, sizeof(k->note), "ok %d but accepted %d", r.ok, r.accepted);
	if (k->way == BI_ASYNC && r.ok) {
		r.event_id[sizeof(r.event_id) - 1] = '\0';
		snprintf(k->cid, sizeof(k->cid), "%s", r.event_id);
	}
}

static void run_cmd(struct call *k)
{
	const struct bi_case *c = &cases.c[k->ci];
	size_t ntags = 0;
	while (c->tags && c->tags[ntags])
		ntags++;
	const char **argv = calloc(32 + 2 * (ntags + c->nkv), sizeof(char *));
	char **owned = calloc(c->nkv + 2, sizeof(char *));
	size_t n = 0, no = 0;
	argv[n++] = th_prog("MLOG_COMMAND");
	argv[n++] = "--spool";
	argv[n++] = dir.spool;
	if (c->title) {
		argv[n++] = "--title";
		argv[n++] = c->title;
	}
	for (size_t i = 0; i < ntags; i++) {
		argv[n++] = "-t";
		argv[n++] = c->tags[i];
	}
	if (c->meta_json) {
		argv[n++] = "--metadata-json";
		argv[n++] = c->meta_json;
	}
	for (size_t i = 0; i <= c->nkv; i++) {
		const char *key = i < c->nkv ? c->kv[i].key : "bi_case";
		const char *val = i < c->nkv ? c->kv[i].s : k->marker;
		ck_assert_msg(i == c->nkv || c->kv[i].type == MLOG_KV_STR, "%s: -m takes strings",
		              c->name);
		char *kvs = malloc(strlen(key) + strlen(val) + 2);
		sprintf(kvs, "%s=%s", key, val);
		owned[no++] = kvs;
		argv[n++] = "-m";
		argv[n++] = kvs;
	}
	argv[n++] = "--";
	argv[n++] = c->cmd_stdin ? "-" : c->msg;
	argv[n] = NULL;

	char errpath[400];
	snprintf(errpath, sizeof(errpath), "%s/cmd.err", dir.root);
	int in[2];
	ck_assert_int_eq(pipe(in), 0);
	fflush(NULL);
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		dup2(in[0], 0);
		close(in[0]);
		close(in[1]);
		int fd = open(errpath, O_WRONLY | O_CREAT | O_TRUNC, 0600);
		dup2(fd, 2);
		int nul = open("/dev/null", O_WRONLY);
		dup2(nul, 1);
		execv(argv[0], (char *const *)argv);
		_exit(127);
	}
	close(in[0]);
	if (c->cmd_stdin) {
		/* the message as one line; the command may stop reading early */
		const char *p = c->msg;
		size_t left = c->len;
		while (left) {
			ssize_t w = write(in[1], p, left);
			if (w < 0 && errno == EINTR)
				continue;
			if (w <= 0)
				break;
			p += w;
			left -= (size_t)w;
		}
		if (!left && write(in[1], "\n", 1) < 0) {
			/* the command exited first: its status says why */
		}
	}
	close(in[1]);
	int st = reap(pid);
	for (size_t i = 0; i < no; i++)
		free(owned[i]);
	free(owned);
	free(argv);
	FILE *f = fopen(errpath, "r");
	size_t got = f ? fread(k->error, 1, sizeof(k->error) - 1, f) : 0;
	k->error[got] = '\0';
	for (char *q = k->error; *q; q++)
		if (*q == '\n')
			*q = ' ';
	if (f)
		fclose(f);
	if (st < 0 || WIFSIGNALED(st) || !WIFEXITED(st) || WEXITSTATUS(st) > 2) {
		k->out = O_CRASHED;
		snprintf(k->note, sizeof(k->note), "mlog %s %d",
		         st >= 0 && WIFSIGNALED(st) ? "signal" : "status",
		         st >= 0 && WIFSIGNALED(st) ? WTERMSIG(st)
		         : st >= 0                  ? WEXITSTATUS(st)
		                                    : -1);
		return;
	}
	k->out = WEXITSTATUS(st) == 0 ? O_ACCEPTED : O_REFUSED;
}

/* A producer of its own: the public event and spool calls, none of
 * libmlog's limits. */
static void run_raw(struct call *k)
{
	const struct bi_case *c = &cases.c[k->ci];
	struct spool_kv kv = {.key = "bi_case", .type = SPOOL_KV_STR, .s = k->marker};
	struct spool_event e = {
	    .message = c->msg,
	    .message_len = c->len,
	    .severity = SPOOL_SEV_INFO,
	    .metadata = &kv,
	    .nmetadata = 1,
	};
	struct spool_buf b = {0};
	char id[SPOOL_ULID_LEN + 1];
	int rc = spool_event_encode(&e, &b, id);
	if (rc == 0) {
		struct spool_options o;
		spool_options_init(&o);
		struct spool *s;
		char err[256];
		rc = spool_open(dir.spool, &o, &s, err, sizeof(err));
		if (rc == 0) {
			rc = spool_append(s, SPOOL_SEV_INFO, b.data, b.len);
			spool_close(s);
		}
	}
	spool_buf_free(&b);
	k->out = rc == 0 ? O_ACCEPTED : O_REFUSED;
	snprintf(k->error, sizeof(k->error), "%s", rc ? spool_strerror(rc) : "");
	snprintf(k->cid, sizeof(k->cid), "%s", rc ? "" : id);
}

/* ---- what arrived ---- */

static struct call *by_marker(const char *m)
{
	for (size_t i = 0; m && i < ncalls; i++)
		if (strcmp(calls[i].marker, m) == 0)
			return &calls[i];
	return NULL;
}

static const char *marker_of(json_t *ev)
{
	return json_string_value(json_object_get(json_object_get(ev, "metadata"), "bi_case"));
}

static json_t *repaired_string(const char *s, size_t len)
{
	size_t rl;
	char *r = bi_repair(s, len, &rl);
	json_t *j = json_stringn(r, rl);
	free(r);
	return j;
}

/* The user metadata a call should deliver, marker included. */
static json_t *expected_metadata(const struct call *k)
{
	const struct bi_case *c = &cases.c[k->ci];
	json_t *m = c->meta_json ? json_loads(c->meta_json, JSON_ALLOW_NUL, NULL) : json_object();
	ck_assert_ptr_nonnull(m);
	for (size_t i = 0; i < c->nkv; i++) {
		const struct mlog_kv *v = &c->kv[i];
		json_t *j = v->type == MLOG_KV_STR      ? repaired_string(v->s, strlen(v->s))
		            : v->type == MLOG_KV_INT    ? json_integer(v->i)
		            : v->type == MLOG_KV_DOUBLE ? json_real(v->d)
		                                         : json_boolean(v->b);
		json_object_set_new(m, v->key, j);
	}
	json_object_set_new(m, "bi_case", json_string(k->marker));
	return m;
}

static bool same_string(json_t *got, const char *s, size_t len)
{
	json_t *want = repaired_string(s, len);
	bool ok = json_is_string(got) && json_equal(got, want);
	json_decref(want);
	return ok;
}

/* Empty when ev is what k logged, else what differs. */
static void check_intact(struct call *k, json_t *ev, char *why, size_t wlen)
{
	const struct bi_case *c = &cases.c[k->ci];
	why[0] = '\0';
	if (!same_string(json_object_get(ev, "message"), c->msg, c->len)) {
		json_t *m = json_object_get(ev, "message");
		snprintf(why, wlen, "message differs (%zu bytes arrived, %zu logged)",
		         json_string_length(m), c->len);
		return;
	}
	const char *sev = json_string_value(json_object_get(ev, "severity"));
	if (!sev || strcmp(sev, "info") != 0) {
		snprintf(why, wlen, "severity %s", sev ? sev : "missing");
		return;
	}
	json_t *t = json_object_get(ev, "title");
	if (c->title ? !same_string(t, c->title, strlen(c->title)) : t != NULL) {
		snprintf(why, wlen, "title differs");
		return;
	}
	json_t *tags = json_object_get(ev, "tags");
	size_t ntags = 0;
	while (c->tags && c->tags[ntags])
		ntags++;
	if (c->tags ? json_array_size(tags) != ntags : tags != NULL) {
		snprintf(why, wlen, "%zu tags arrived, %zu logged", json_array_size(tags), ntags);
		return;
	}
	for (size_t i = 0; i < ntags; i++)
		if (!same_string(json_array_get(tags, i), c->tags[i], strlen(c->tags[i]))) {
			snprintf(why, wlen, "tag %zu differs", i);
			return;
		}
	json_t *m = json_object_get(ev, "metadata"), *want = expected_metadata(k);
	const char *key;
	json_t *v;
	json_object_foreach(want, key, v)
	{
		if (!json_equal(json_object_get(m, key), v)) {
			snprintf(why, wlen, "metadata '%.40s' differs or is missing", key);
			break;
		}
	}
	json_object_foreach(m, key, v)
	{
		if (!why[0] && !json_object_get(want, key) && strcmp(key, "c_client") != 0)
			snprintf(why, wlen, "metadata has an extra key '%.40s'", key);
	}
	json_decref(want);
	if (why[0])
		return;
	json_t *cc = json_object_get(m, "c_client");
	if (!json_is_object(cc) || !json_is_integer(json_object_get(cc, "pid")))
		snprintf(why, wlen, "no c_client block");
	else if (k->way != BI_DIRECT && !json_is_integer(json_object_get(cc, "spool_seq")))
		snprintf(why, wlen, "spooled event without c_client.spool_seq");
	else if (k->cid[0] &&
	         strcmp(k->cid, json_string_value(json_object_get(ev, "client_event_id"))
	                            ? json_string_value(json_object_get(ev, "client_event_id"))
	                            : "") != 0)
		snprintf(why, wlen, "client_event_id is not the one the call returned");
}

static bool pending_zero(void *arg)
{
	(void)arg;
	return th_stats(dir.spool).pending == 0;
}

/* Reads the receiver's lines: counts per call, checks each; returns lines
 * that are not JSON or belong to no accepted call. */
static size_t read_receiver(void)
{
	FILE *f = fopen(dir.out, "r");
	ck_assert_ptr_nonnull(f);
	char *line = NULL;
	size_t cap = 0, strays = 0;
	ssize_t n;
	while ((n = getline(&line, &cap, f)) > 0) {
		json_error_t je;
		json_t *ev = json_loadb(line, (size_t)n, JSON_ALLOW_NUL, &je);
		if (!ev) {
			printf("stored line is not JSON: %s\n", je.text);
			strays++;
			continue;
		}
		struct call *k = by_marker(marker_of(ev));
		if (!k || k->out != O_ACCEPTED) {
			printf("stored event of no accepted call: %.60s\n", line);
			strays++;
		} else if (++k->seen == 1) {
			char why[160];
			check_intact(k, ev, why, sizeof(why));
			if (why[0]) {
				k->bad = true;
				snprintf(k->note, sizeof(k->note), "MANGLED: %s", why);
			}
		}
		json_decref(ev);
	}
	free(line);
	fclose(f);
	return strays;
}

static void read_dead(void)
{
	struct spool_options o;
	spool_options_init(&o);
	o.durability = SPOOL_SYNC;
	struct spool *s;
	char err[512];
	ck_assert_msg(spool_open(dir.spool, &o, &s, err, sizeof(err)) == 0, "%s", err);
	struct spool_batch *b;
	ck_assert_int_eq(spool_read_dead(s, 0, 0, &b), 0);
	const struct spool_record *r = spool_batch_records(b);
	for (size_t i = 0; i < spool_batch_count(b); i++) {
		struct spool_buf js = {0};
		json_t *ev = NULL;
		if (spool_event_to_json(r[i].data, r[i].len, NULL, &js) == 0)
			ev = json_loadb(js.data, js.len, JSON_ALLOW_NUL, NULL);
		struct call *k = by_marker(marker_of(ev));
		if (k) {
			k->dead = true;
			snprintf(k->dead_reason, sizeof(k->dead_reason), "%d %s", r[i].dead_status,
			         r[i].dead_reason ? r[i].dead_reason : "");
		}
		json_decref(ev);
		spool_buf_free(&js);
	}
	spool_batch_release(b);
	spool_close(s);
}

/* ---- the verdict of one call ---- */

static const char *judge(struct call *k)
{
	const struct bi_case *c = &cases.c[k->ci];
	if (k->out == O_CRASHED) {
		k->bad = true;
		return "CRASH";
	}
	if (k->out == O_REFUSED) {
		if (c->expect != BI_REFUSE) {
			k->bad = true;
			snprintf(k->note, sizeof(k->note), "expected to arrive");
		}
		for (int i = 0; i < 3 && c->words[i] && !k->bad; i++)
			if (!strstr(k->error, c->words[i])) {
				k->bad = true;
				snprintf(k->note, sizeof(k->note), "error lacks '%s'", c->words[i]);
			}
		if (!k->error[0] && !k->bad) {
			k->bad = true;
			snprintf(k->note, sizeof(k->note), "refused without an error");
		}
		return "refused";
	}
	if (c->expect == BI_REFUSE && !k->bad) {
		k->bad = true;
		snprintf(k->note, sizeof(k->note), "accepted, expected a refusal (%s)",
		         c->words[0] ? c->words[0] : "");
	}
	if (k->seen > 1) {
		k->bad = true;
		return "DUPLICATE";
	}
	if (k->seen == 1) {
		if (c->expect == BI_DEAD && !k->bad) {
			k->bad = true;
			snprintf(k->note, sizeof(k->note), "arrived, expected a dead letter");
		}
		return "arrived";
	}
	if (k->dead) {
		k->bad = k->bad || c->expect != BI_DEAD || !k->dead_reason[0];
		for (int i = 0; i < 3 && c->words[i]; i++)
			k->bad = k->bad || !strstr(k->dead_reason, c->words[i]);
		snprintf(k->note, sizeof(k->note), "%.190s", k->dead_reason);
		return "dead";
	}
	k->bad = true;
	return "LOST";
}

START_TEST(test_bad_input_sweep)
{
	double t0 = th_now();
	bi_cases(&cases);
	th_dir_make(&dir, "badinput");
	th_rx_start(&rx, dir.out, NULL);
	th_config(&dir, rx.url, NULL);
	pid_t agent = th_agent_start(&dir, NULL);

	calls = calloc(cases.n * 4, sizeof(*calls));
	static const unsigned ways[] = {BI_ASYNC, BI_DIRECT, BI_CMD, BI_RAW};
	for (size_t i = 0; i < cases.n; i++)
		for (size_t w = 0; w < 4; w++) {
			if (!(cases.c[i].ways & ways[w]))
				continue;
			struct call *k = &calls[ncalls];
			k->ci = i;
			k->way = ways[w];
			snprintf(k->marker, sizeof(k->marker), "%zu-%s", ncalls, way_name(ways[w]));
			ncalls++;
			if (k->way == BI_CMD)
				run_cmd(k);
			else if (k->way == BI_RAW)
				run_raw(k);
			else
				run_api(k);
		}
	double t_calls = th_now() - t0;

	/* everything accepted into the spool leaves it: acknowledged or dead */
	bool drained = th_wait(pending_zero, NULL, DRAIN_TIMEOUT);
	int agent_status = th_agent_stop(agent, SIGTERM, 20);
	th_rx_stop(&rx);
	size_t strays = read_receiver();
	read_dead();

	size_t accepted = 0, refused = 0, crashes = 0, lost = 0, dups = 0, dead = 0, bad = 0;
	printf("\n%-28s %-6s %-9s %s\n", "input", "way", "result", "error / note");
	for (size_t i = 0; i < ncalls; i++) {
		struct call *k = &calls[i];
		const char *v = judge(k);
		accepted += k->out == O_ACCEPTED;
		refused += k->out == O_REFUSED;
		crashes += k->out == O_CRASHED;
		lost += k->out == O_ACCEPTED && !k->seen && !k->dead;
		dups += k->seen > 1 ? (size_t)k->seen - 1 : 0;
		dead += k->out == O_ACCEPTED && !k->seen && k->dead;
		bad += k->bad;
		printf("%-28s %-6s %-9s %s%.110s%s%.90s\n", cases.c[k->ci].name, way_name(k->way),
		       v, k->bad ? "!! " : "", k->out == O_REFUSED ? k->error : "",
		       k->note[0] && k->out == O_REFUSED ? " | " : "", k->note);
	}
	printf("\n%zu inputs, %zu calls in %.1f s; %zu accepted (%zu dead-lettered), %zu refused, "
	       "%zu not as expected, %zu stray lines; spool drained: %s; agent exit %d; %.1f s in "
	       "all\n",
	       cases.n, ncalls, t_calls, accepted, dead, refused, bad, strays,
	       drained ? "yes" : "NO", agent_status, th_now() - t0);
	printf(
	    "FIGURES scenario=bad-input rounds=%zu events=%zu lost=%zu duplicates=%zu crashes=%zu "
	    "refused=%zu\n",
	    ncalls, accepted, lost, dups, crashes, refused);
	fflush(stdout);

	ck_assert_msg(drained, "the agent did not empty the spool within %.0f s", DRAIN_TIMEOUT);
	ck_assert_int_eq(agent_status, 0);
	ck_assert_uint_eq(crashes, 0);
	ck_assert_uint_eq(lost, 0);
	ck_assert_uint_eq(dups, 0);
	ck_assert_uint_eq(strays, 0);
	ck_assert_msg(bad == 0, "%zu calls did not do what they should (marked !! above)", bad);
	free(calls);
	bi_cases_free(&cases);
	th_dir_remove(&dir);
}
END_TEST

/* `mlog -`: a line that is refused is named on standard error, and the
 * lines after it are still logged; the exit status is 1. */
START_TEST(test_cmd_stdin_goes_on_after_a_refused_line)
{
	th_dir_make(&dir, "badinput-lines");
	memset(&cases, 0, sizeof(cases));
	cases.n = cases.cap = 1;
	cases.c = calloc(1, sizeof(*cases.c));
	struct bi_case *c = &cases.c[0];
	snprintf(c->name, sizeof(c->name), "cmd-stdin-lines");
	size_t big = MLOG_MAX_MESSAGE_BYTES + 1;
	c->msg = malloc(big + 64);
	size_t o = (size_t)sprintf(c->msg, "first\n");
	memset(c->msg + o, 'x', big);
	o += big;
	o += (size_t)sprintf(c->msg + o, "\n\xff third");
	c->len = o;
	c->cmd_stdin = true;
	struct call k = {.ci = 0, .way = BI_CMD, .marker = "lines"};
	run_cmd(&k);
	printf("mlog - with a refused second line: %s\n", k.error);
	ck_assert_msg(k.out == O_REFUSED, "exit status should say a line was not logged");
	ck_assert_msg(strstr(k.error, "line 2:") && strstr(k.error, "1048577"), "%s", k.error);

	struct spool_options so;
	spool_options_init(&so);
	so.durability = SPOOL_SYNC;
	struct spool *sp;
	char err[256];
	ck_assert_int_eq(spool_open(dir.spool, &so, &sp, err, sizeof(err)), 0);
	struct spool_batch *b;
	ck_assert_int_eq(spool_read_batch(sp, 0, 0, 0, &b), 0);
	ck_assert_uint_eq(spool_batch_count(b), 2);
	static const char *const want[] = {"first", "\xef\xbf\xbd third"};
	for (size_t i = 0; i < 2; i++) {
		const struct spool_record *r = &spool_batch_records(b)[i];
		struct spool_buf js = {0};
		ck_assert_int_eq(spool_event_to_json(r->data, r->len, NULL, &js), 0);
		json_t *ev = json_loadb(js.data, js.len, 0, NULL);
		ck_assert_ptr_nonnull(ev);
		ck_assert_str_eq(json_string_value(json_object_get(ev, "message")), want[i]);
		json_decref(ev);
		spool_buf_free(&js);
	}
	spool_batch_release(b);
	spool_close(sp);
	bi_cases_free(&cases);
	th_dir_remove(&dir);
}
END_TEST

int main(void)
{
	static const char *const vars[] = {
	    "MASTER_LOG_API_KEY",         "MASTER_LOG_ENDPOINT",       "MASTER_LOG_SPOOL_DIR",
	    "MASTER_LOG_ASYNC",           "MASTER_LOG_DURABILITY",     "MASTER_LOG_BATCH_SIZE",
	    "MASTER_LOG_MAX_SPOOL_BYTES", "MASTER_LOG_MAX_QUEUE_SIZE",
	};
	for (size_t i = 0; i < sizeof(vars) / sizeof(vars[0]); i++)
		unsetenv(vars[i]);
	signal(SIGPIPE, SIG_IGN);
	Suite *s = suite_create("badinput");
	TCase *tc = tcase_create("sweep");
	tcase_set_timeout(tc, 300);
	tcase_add_test(tc, test_bad_input_sweep);
	suite_add_tcase(s, tc);
	tc = tcase_create("cmd-lines");
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_cmd_stdin_goes_on_after_a_refused_line);
	suite_add_tcase(s, tc);
	return tc_run(s); /* EXIT_FAILURE is 1 */
}
