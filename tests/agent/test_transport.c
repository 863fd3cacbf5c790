/* test_transport.c — the transport ABI 2 as spool-agent uses it, through
 * the real spool-agent: an external asynchronous transport (tx_test.so,
 * tx_test.c) loaded from plugin_dir with keys of its own section; an ABI-1
 * transport refused; the built-in transports working from the build tree
 * with no SPOOL_PLUGIN_DIR; `--help-config` listing every key; and
 * max_in_flight, measured by a relay of the test's own between the agent
 * and mlog-receiver that counts the requests open at each moment. */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <regex.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check_main.h"
#include "config.h"
#include "harness.h"

extern char **environ;

static const char *tx_dir(void)
{
	return th_prog("TX_TEST_DIR");
}

static void write_config(const struct th_dir *d, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void write_config(const struct th_dir *d, const char *fmt, ...)
{
	FILE *f = fopen(d->config, "w");
	ck_assert_ptr_nonnull(f);
	va_list ap;
	va_start(ap, fmt);
	vfprintf(f, fmt, ap);
	va_end(ap);
	fclose(f);
}

static long count_lines(const char *path)
{
	FILE *f = fopen(path, "r");
	if (!f)
		return 0;
	long n = 0;
	int c;
	while ((c = fgetc(f)) != EOF)
		n += c == '\n';
	fclose(f);
	return n;
}

/* The first number after `text` in the file, or -1. */
static long number_after(const char *path, const char *text)
{
	FILE *f = fopen(path, "r");
	if (!f)
		return -1;
	char line[4096];
	long v = -1;
	while (v < 0 && fgets(line, sizeof(line), f)) {
		const char *p = strstr(line, text);
		if (p)
			v = atol(p + strlen(text));
	}
	fclose(f);
	return v;
}

/* ---- an external transport of ABI 2 ---- */

/* The agent loads tx_test.so from plugin_dir, hands it the keys of its
 * section, keeps up to max_in_flight requests open in it, and every event
 * lands in its file exactly once; in order, since tx_test finishes
 * requests in the order they were submitted. */
START_TEST(external_transport_drains_each_event_once)
{
	enum { N = 700 };
	struct th_dir d;
	th_dir_make(&d, "txtest");
	th_fill(d.spool, 1, N, 0);
	/* its section twice (the keys merge); no http: section at all, since
	 * no HTTP transport is in the chain */
	write_config(&d,
	             "spool: %s\n"
	             "plugin_dir: %s\n"
	             "transports: [tx_test]\n"
	             "tx_test:\n"
	             "  path: %s\n"
	             "batch_size: 25\n"
	             "max_in_flight: 3\n"
	             "tx_test:\n"
	             "  note: from-the-test\n"
	             "log:\n"
	             "  level: debug\n",
	             d.spool, tx_dir(), d.out);
	ck_assert_int_eq(th_agent_run(&d, 120, "--once", NULL), 0);
	long *msgs, *seqs;
	size_t got = th_read_out(d.out, &msgs, &seqs);
	ck_assert_int_eq((long)got, N);
	for (size_t i = 0; i < got; i++) {
		ck_assert_int_eq(msgs[i], (long)i + 1);
		ck_assert_int_gt(seqs[i], 0); /* the agent's encoding: spool_seq added */
		if (i)
			ck_assert_int_gt(seqs[i], seqs[i - 1]);
	}
	free(msgs);
	free(seqs);
	struct spool_stats st = th_stats(d.spool);
	ck_assert_int_eq(st.pending, 0);
	ck_assert_int_eq(st.dead, 0);
	ck_assert_uint_eq(st.acked_total, N);
	/* its keys reached create(): the note, and the window */
	ck_assert(th_file_has(d.log, "tx_test: note from-the-test, writing "));
	ck_assert(th_file_has(d.log, ", 3 in flight at most"));
	long most = number_after(d.log, "most requests open at once: ");
	ck_assert_msg(most >= 1 && most <= 3, "tx_test saw %ld requests open at once", most);
	th_dir_remove(&d);
}
END_TEST

/* fail_every: every 4th request fails as transient and writes nothing; the
 * agent keeps those events and sends them again: still each exactly once,
 * nothing dead-lettered.  The note's default reaches create(). */
START_TEST(external_transport_failures_keep_events)
{
	enum { N = 300 };
	struct th_dir d;
	th_dir_make(&d, "txfail");
	th_fill(d.spool, 1, N, 0);
	write_config(&d,
	             "spool: %s\n"
	             "plugin_dir: %s\n"
	             "transports:\n"
	             "  - tx_test\n"
	             "tx_test:\n"
	             "  path: %s\n"
	             "  fail_every: 4\n"
	             "batch_size: 10\n"
	             "max_batch_size: 10\n"
	             "max_in_flight: 2\n"
	             "retry:\n"
	             "  initial_seconds: 0.01\n"
	             "  max_seconds: 0.05\n",
	             d.spool, tx_dir(), d.out);
	int rc = -1, runs = 0;
	for (; runs < 200 && rc != 0; runs++) {
		rc = th_agent_run(&d, 60, "--once", NULL);
		ck_assert_msg(rc == 0 || rc == 3, "run %d: exit %d", runs, rc);
	}
	ck_assert_int_eq(rc, 0);
	ck_assert_int_gt(runs, 1); /* a failure did stop a run */
	th_assert_out_each_once(d.out, N, 0);
	struct spool_stats st = th_stats(d.spool);
	ck_assert_int_eq(st.pending, 0);
	ck_assert_int_eq(st.dead, 0);
	ck_assert(th_file_has(d.log, "tx_test: note hello, writing "));
	ck_assert(th_file_has(d.log, "failed on purpose"));
	th_dir_remove(&d);
}
END_TEST

/* The agent checks tx_test's keys against its table like its own: one
 * line, exit 2, FILE:LINE:COL and the full key name; check() blames the
 * row it names; nothing is written and the spool is untouched. */
START_TEST(external_transport_bad_values)
{
	struct th_dir d;
	th_dir_make(&d, "txbad");
	th_fill(d.spool, 1, 5, 0);
	static const struct {
		const char *lines; /* the tx_test: section's lines after `path` */
		const char *path;  /* NULL: the test's file; "": no path key */
		const char *key;
		const char *what;
		bool position;
	} cases[] = {
	    {"  fail_every: lots\n", NULL, "tx_test.fail_every",
	     "expected an integer from 0 to 1000, got 'lots'", true},
	    {"  fail_every: -1\n", NULL, "tx_test.fail_every", "from 0 to 1000", true},
	    {"  fail_every: 1001\n", NULL, "tx_test.fail_every", "from 0 to 1000", true},
	    {"  fail_every: \"3\"\n", NULL, "tx_test.fail_every", "drop the quotes", true},
	    {"  fail_every: [3]\n", NULL, "tx_test.fail_every", "got a list", true},
	    {"  note: true\n", NULL, "tx_test.note", "boolean", true},
	    {"  note: \"\"\n", NULL, "tx_test.note", "is empty", true},
	    {"  bogus: 1\n", NULL, "tx_test.bogus", "unknown key", true},
	    {"  note: x\n", "", "tx_test.path",
	     "not set; the tx_test transport needs a file to write", false},
	    {"", "/nonexistent/dir/out.jsonl", "tx_test.path", "/nonexistent/dir", true},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char path[400] = "";
		const char *p = cases[i].path ? cases[i].path : d.out;
		if (*p)
			snprintf(path, sizeof(path), "  path: %s\n", p);
		write_config(&d, "spool: %s\nplugin_dir: %s\ntransports: [tx_test]\ntx_test:\n%s%s",
		             d.spool, tx_dir(), path, cases[i].lines);
		static const char *const modes[] = {"--once", "--check-config"};
		for (size_t m = 0; m < 2; m++) {
			unlink(d.log);
			int rc = th_agent_run(&d, 30, modes[m], NULL);
			ck_assert_msg(rc == 2, "case %zu %s: exit %d", i, modes[m], rc);
			ck_assert_msg(count_lines(d.log) == 1, "case %zu %s: %ld lines", i,
			              modes[m], count_lines(d.log));
			char want[256];
			snprintf(want, sizeof(want), "key '%s'", cases[i].key);
			ck_assert_msg(th_file_has(d.log, want), "case %zu %s: no \"%s\"", i,
			              modes[m], want);
			ck_assert_msg(th_file_has(d.log, cases[i].what), "case %zu %s: no \"%s\"",
			              i, modes[m], cases[i].what);
			ck_assert_msg(th_file_has(d.log, d.config),
			              "case %zu %s: the file is not named", i, modes[m]);
			if (cases[i].position) {
				/* FILE:LINE:COL: key 'tx_test.KEY' */
				char pat[600], line[2048] = "";
				snprintf(pat, sizeof(pat), "%s:[0-9]+:[0-9]+: %s", d.config, want);
				FILE *f = fopen(d.log, "r");
				ck_assert_ptr_nonnull(fgets(line, sizeof(line), f));
				fclose(f);
				regex_t re;
				ck_assert_int_eq(regcomp(&re, pat, REG_EXTENDED | REG_NOSUB), 0);
				bool found = regexec(&re, line, 0, NULL, 0) == 0;
				regfree(&re);
				ck_assert_msg(found, "case %zu %s: no FILE:LINE:COL: %s in: %s", i,
				              modes[m], want, line);
			}
		}
		ck_assert_int_eq(access(d.out, F_OK), -1);
	}
	/* the exact place of one of them: line 5, column 15 */
	write_config(&d,
	             "spool: %s\nplugin_dir: %s\ntransports: [tx_test]\ntx_test:\n  fail_every: "
	             "lots\n  path: %s\n",
	             d.spool, tx_dir(), d.out);
	unlink(d.log);
	ck_assert_int_eq(th_agent_run(&d, 30, "--check-config", NULL), 2);
	char want[600];
	snprintf(want, sizeof(want), "%s:5:15: key 'tx_test.fail_every': ", d.config);
	ck_assert_msg(th_file_has(d.log, want), "no \"%s\"", want);
	struct spool_stats st = th_stats(d.spool);
	ck_assert_int_eq(st.pending, 5);
	ck_assert_int_eq(st.dead, 0);
	th_dir_remove(&d);
}
END_TEST

/* Runs spool-agent with args (NULL-terminated), stdout to out; returns the
 * exit status. */
static int run_to(const char *out, const char *err, const char *const *args)
{
	const char *argv[16];
	size_t n = 0;
	argv[n++] = th_prog("SPOOL_AGENT");
	for (; *args && n < 15; args++)
		argv[n++] = *args;
	argv[n] = NULL;
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		int fo = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0600);
		int fe = open(err, O_WRONLY | O_CREAT | O_TRUNC, 0600);
		if (fo < 0 || fe < 0)
			_exit(126);
		dup2(fo, 1);
		dup2(fe, 2);
		execv(argv[0], (char *const *)argv);
		_exit(127);
	}
	int st;
	ck_assert_int_eq(waitpid(pid, &st, 0), pid);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -WTERMSIG(st);
}

/* The line of the listing that starts with "NAME (", or false. */
static bool listed(const char *path, const char *name, char *line, size_t len)
{
	FILE *f = fopen(path, "r");
	ck_assert_ptr_nonnull(f);
	size_t nl = strlen(name);
	bool found = false;
	while (!found && fgets(line, (int)len, f))
		found = strncmp(line, name, nl) == 0 && strncmp(line + nl, " (", 2) == 0;
	fclose(f);
	return found;
}

static void assert_listed(const char *path, const char *name, const char *def, const char *env)
{
	char line[1024], want[300];
	ck_assert_msg(listed(path, name, line, sizeof(line)), "--help-config does not list %s",
	              name);
	if (def) {
		snprintf(want, sizeof(want), "default %s", def);
		ck_assert_msg(strstr(line, want), "%s: no \"%s\" in: %s", name, want, line);
	} else {
		ck_assert_msg(!strstr(line, "default "), "%s: a default it does not have: %s", name,
		              line);
	}
	if (env) {
		snprintf(want, sizeof(want), "env %s", env);
		ck_assert_msg(strstr(line, want), "%s: no \"%s\" in: %s", name, want, line);
	} else {
		ck_assert_msg(!strstr(line, "env "), "%s: a variable it does not have: %s", name,
		              line);
	}
}

/* --help-config lists the agent's keys and the built-in transports' section
 * keys under their full names, each with its default and variable; with
 * -c FILE it lists the keys of the file's transports loaded from .so too. */
START_TEST(help_config_lists_every_key)
{
	struct th_dir d;
	th_dir_make(&d, "helpcfg");
	char out[400];
	snprintf(out, sizeof(out), "%s/help.txt", d.root);
	const char *args[] = {"--help-config", NULL};
	ck_assert_int_eq(run_to(out, d.log, args), 0);
	/* the keys the brief names, so the sweep below cannot pass empty */
	assert_listed(out, "http.endpoint", NULL, "MASTER_LOG_ENDPOINT");
	assert_listed(out, "http.api_key", NULL, "MASTER_LOG_API_KEY");
	assert_listed(out, "http.tls.ca_file", NULL, "MASTER_LOG_CA_FILE");
	assert_listed(out, "http.tls.verify", "true", NULL);
	assert_listed(out, "http.timeouts.request_seconds", "30", NULL);
	assert_listed(out, "file.path", NULL, NULL);
	assert_listed(out, "max_in_flight", "4", "MASTER_LOG_MAX_IN_FLIGHT");
	assert_listed(out, "max_batch_size", "1000", "MASTER_LOG_MAX_BATCH_SIZE");
	assert_listed(out, "bandwidth_limit", "0", "MASTER_LOG_BANDWIDTH_LIMIT");
	assert_listed(out, "replay_order", "fifo", "MASTER_LOG_REPLAY_ORDER");
	assert_listed(out, "batch_size", "100", "MASTER_LOG_BATCH_SIZE");
	assert_listed(out, "spool", NULL, "MASTER_LOG_SPOOL_DIR");
	/* every key of the table */
	struct config_key_info k;
	size_t n = 0;
	for (; config_key_info(n, &k) == 0; n++)
		assert_listed(out, k.key, k.def, k.env);
	ck_assert_uint_eq(n, config_key_count());
	ck_assert_uint_ge(n, 30);
	/* the old top-level names are gone */
	char line[1024];
	ck_assert(!listed(out, "endpoint", line, sizeof(line)));
	ck_assert(!listed(out, "file_path", line, sizeof(line)));
	ck_assert(!listed(out, "tx_test.path", line, sizeof(line)));

	/* with a file whose chain loads tx_test.so: its keys too */
	write_config(&d, "spool: %s\nplugin_dir: %s\ntransports: [tx_test]\ntx_test:\n  path: %s\n",
	             d.spool, tx_dir(), d.out);
	const char *args2[] = {"-c", d.config, "--help-config", NULL};
	ck_assert_int_eq(run_to(out, d.log, args2), 0);
	assert_listed(out, "tx_test.path", NULL, NULL);
	assert_listed(out, "tx_test.note", "hello", NULL);
	assert_listed(out, "tx_test.fail_every", "0", NULL);
	assert_listed(out, "http.endpoint", NULL, "MASTER_LOG_ENDPOINT");
	ck_assert(th_file_has(out, "tx_test.so"));
	th_dir_remove(&d);
}
END_TEST

/* An ABI-1 transport found by name in plugin_dir is refused at start,
 * naming its file and both ABI versions; nothing is sent. */
START_TEST(abi1_transport_refused)
{
	struct th_dir d;
	th_dir_make(&d, "abi1");
	th_fill(d.spool, 1, 3, 0);
	write_config(&d, "spool: %s\nplugin_dir: %s\ntransports: [bad_abi]\n", d.spool, tx_dir());
	static const char *const modes[] = {"--once", "--check-config"};
	for (size_t m = 0; m < 2; m++) {
		unlink(d.log);
		ck_assert_int_eq(th_agent_run(&d, 30, modes[m], NULL), 2);
		ck_assert_int_eq(count_lines(d.log), 1);
		char so[600];
		snprintf(so, sizeof(so), "%s/bad_abi.so", tx_dir());
		ck_assert_msg(th_file_has(d.log, so), "%s: the file is not named", modes[m]);
		ck_assert_msg(th_file_has(d.log, "ABI version 1,"), "%s: its version is not named",
		              modes[m]);
		ck_assert_msg(th_file_has(d.log, "needs 2"), "%s: the agent's version is not named",
		              modes[m]);
		ck_assert(th_file_has(d.log, "key 'transports'"));
	}
	ck_assert_int_eq(th_stats(d.spool).pending, 3);
	th_dir_remove(&d);
}
END_TEST

/* ---- the built-in transports from the build tree ---- */

/* The environment of this process without SPOOL_PLUGIN_DIR and MASTER_LOG_*
 * (which main() cleared): execv passes it on as it is. */
static bool env_has(const char *prefix)
{
	for (char **e = environ; *e; e++)
		if (strncmp(*e, prefix, strlen(prefix)) == 0)
			return true;
	return false;
}

/* Whether a running process's environment holds NAME=. */
static bool proc_env_has(pid_t pid, const char *prefix)
{
	char path[64], buf[65536];
	snprintf(path, sizeof(path), "/proc/%ld/environ", (long)pid);
	FILE *f = fopen(path, "r");
	ck_assert_ptr_nonnull(f);
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	for (size_t off = 0; off < n; off += strlen(buf + off) + 1)
		if (strncmp(buf + off, prefix, strlen(prefix)) == 0)
			return true;
	return false;
}

static bool spool_empty(void *arg)
{
	return th_stats(arg).pending == 0;
}

/* build/agent/spool-agent --spool S --endpoint URL, with no configuration
 * file and no SPOOL_PLUGIN_DIR: http_batch is built in.  Then as a daemon
 * with a file: the same. */
START_TEST(builtin_transports_need_no_plugin_dir)
{
	ck_assert_ptr_null(getenv("SPOOL_PLUGIN_DIR"));
	ck_assert(!env_has("SPOOL_PLUGIN_DIR="));
	ck_assert(!env_has("MASTER_LOG_"));
	const char *agent = th_prog("SPOOL_AGENT"), *build = th_prog("SPOOL_TEST_BUILD_DIR");
	ck_assert_msg(strncmp(agent, build, strlen(build)) == 0, "%s is not in the build tree %s",
	              agent, build);
	struct th_dir d;
	struct th_rx rx;
	th_dir_make(&d, "noenv");
	th_rx_start(&rx, d.out, NULL);
	th_fill(d.spool, 1, 150, 0);
	char out[400];
	snprintf(out, sizeof(out), "%s/stdout.txt", d.root);
	const char *args[] = {"--spool", d.spool, "--endpoint", rx.url, "--once", NULL};
	int rc = run_to(out, d.log, args);
	ck_assert_msg(rc == 0, "exit %d", rc);
	ck_assert_msg(!th_file_has(d.log, ".so"), "a plugin was looked for");
	th_assert_out_each_once(d.out, 150, 0);
	ck_assert_int_eq(th_stats(d.spool).pending, 0);
	ck_assert_int_eq(th_rx_stat(&rx, "batches"), 2);

	/* the daemon, from a file: its environment lacks the variable */
	th_config(&d, rx.url, NULL);
	pid_t pid = th_agent_start(&d, NULL);
	for (int i = 0; i < 3000 && !th_file_has(d.log, "started:"); i++)
		usleep(10000);
	ck_assert(th_file_has(d.log, "started:"));
	ck_assert(!proc_env_has(pid, "SPOOL_PLUGIN_DIR="));
	th_fill(d.spool, 151, 50, 0);
	spool_wake_agent(d.spool);
	ck_assert(th_wait(spool_empty, d.spool, 60));
	ck_assert_int_eq(th_agent_stop(pid, SIGTERM, 30), 0);
	th_assert_out_each_once(d.out, 200, 0);
	ck_assert_int_eq(th_rx_stat(&rx, "duplicates"), 0);
	th_rx_stop(&rx);
	th_dir_remove(&d);
}
END_TEST

/* ---- max_in_flight, measured on the wire ---- */

/* A TCP relay from 127.0.0.1:port to the receiver.  HTTP/1.1 without
 * pipelining: on each connection a request is open from its first byte
 * (client to server) until the first byte of its answer (server to client).
 * The relay counts the connections with a request open and keeps the
 * largest count. */
enum { RELAY_MAX = 64 };

struct relay {
	int lfd, port, target;
	int stop[2];
	pthread_t thread;
	struct {
		int c, s;
		bool open;
	} pair[RELAY_MAX];
	size_t npairs;
	int open_now, open_most;
	long requests;
};

static void relay_close(struct relay *r, size_t i)
{
	close(r->pair[i].c);
	close(r->pair[i].s);
	if (r->pair[i].open)
		r->open_now--;
	r->pair[i] = r->pair[--r->npairs];
}

static bool relay_copy(int from, int to)
{
	char buf[65536];
	ssize_t n = read(from, buf, sizeof(buf));
	if (n <= 0)
		return false;
	for (ssize_t off = 0; off < n;) {
		ssize_t w = write(to, buf + off, (size_t)(n - off));
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return false;
		off += w;
	}
	return true;
}

static void *relay_main(void *arg)
{
	struct relay *r = arg;
	for (;;) {
		struct pollfd pf[2 + 2 * RELAY_MAX];
		size_t np = 0;
		pf[np++] = (struct pollfd){.fd = r->stop[0], .events = POLLIN};
		pf[np++] = (struct pollfd){.fd = r->lfd, .events = POLLIN};
		for (size_t i = 0; i < r->npairs; i++) {
			pf[np++] = (struct pollfd){.fd = r->pair[i].c, .events = POLLIN};
			pf[np++] = (struct pollfd){.fd = r->pair[i].s, .events = POLLIN};
		}
		if (poll(pf, np, -1) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		if (pf[0].revents)
			break;
		size_t npairs = r->npairs;
		/* pairs from the back, so that closing one moves none still to see */
		for (size_t k = npairs; k-- > 0;) {
			short cr = pf[2 + 2 * k].revents, sr = pf[3 + 2 * k].revents;
			bool ok = true;
			if (cr) {
				ok = relay_copy(r->pair[k].c, r->pair[k].s);
				if (ok && !r->pair[k].open) {
					r->pair[k].open = true;
					r->requests++;
					if (++r->open_now > r->open_most)
						r->open_most = r->open_now;
				}
			}
			if (ok && sr) {
				ok = relay_copy(r->pair[k].s, r->pair[k].c);
				if (ok && r->pair[k].open) {
					r->pair[k].open = false;
					r->open_now--;
				}
			}
			if (!ok)
				relay_close(r, k);
		}
		if (pf[1].revents & POLLIN) {
			int c = accept4(r->lfd, NULL, NULL, SOCK_CLOEXEC);
			if (c < 0)
				continue;
			int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
			struct sockaddr_in a = {.sin_family = AF_INET,
			                        .sin_port = htons((uint16_t)r->target),
			                        .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
			if (r->npairs == RELAY_MAX || s < 0 ||
			    connect(s, (struct sockaddr *)&a, sizeof(a)) != 0) {
				close(c);
				if (s >= 0)
					close(s);
				continue;
			}
			r->pair[r->npairs].c = c;
			r->pair[r->npairs].s = s;
			r->pair[r->npairs].open = false;
			r->npairs++;
		}
	}
	return NULL;
}

static void relay_start(struct relay *r, int target)
{
	memset(r, 0, sizeof(*r));
	r->target = target;
	r->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	ck_assert_int_ge(r->lfd, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	ck_assert_int_eq(bind(r->lfd, (struct sockaddr *)&a, sizeof(a)), 0);
	ck_assert_int_eq(listen(r->lfd, 64), 0);
	socklen_t al = sizeof(a);
	ck_assert_int_eq(getsockname(r->lfd, (struct sockaddr *)&a, &al), 0);
	r->port = ntohs(a.sin_port);
	ck_assert_int_eq(pipe2(r->stop, O_CLOEXEC), 0);
	ck_assert_int_eq(pthread_create(&r->thread, NULL, relay_main, r), 0);
}

static void relay_stop(struct relay *r)
{
	ck_assert_int_eq(write(r->stop[1], "x", 1), 1);
	pthread_join(r->thread, NULL);
	while (r->npairs)
		relay_close(r, r->npairs - 1);
	close(r->lfd);
	close(r->stop[0]);
	close(r->stop[1]);
}

/* 2,000 events, batches of 100, a receiver that holds every request 300 ms:
 * with max_in_flight 4 more than one request is open at a time (never more
 * than 4), with 1 never more than one; every event arrives exactly once. */
START_TEST(max_in_flight_window)
{
	enum { N = 2000 };
	int window = _i == 0 ? 4 : 1;
	struct th_dir d;
	struct th_rx rx;
	struct relay r;
	th_dir_make(&d, window > 1 ? "window4" : "window1");
	th_rx_start(&rx, d.out, "--latency-ms", "300", NULL);
	relay_start(&r, rx.port);
	th_fill(d.spool, 1, N, 0);
	char url[64], extra[128];
	snprintf(url, sizeof(url), "http://127.0.0.1:%d", r.port);
	snprintf(extra, sizeof(extra), "batch_size: 100\nmax_in_flight: %d\n", window);
	th_config(&d, url, extra);
	double t0 = th_now();
	ck_assert_int_eq(th_agent_run(&d, 120, "--once", NULL), 0);
	double took = th_now() - t0;
	relay_stop(&r);
	printf("max_in_flight %d: %ld requests, at most %d open at once, %.2f s\n", window,
	       r.requests, r.open_most, took);
	th_assert_out_each_once(d.out, N, 0);
	ck_assert_int_eq(th_rx_stat(&rx, "duplicates"), 0);
	ck_assert_int_eq(th_rx_stat(&rx, "batches"), N / 100);
	ck_assert_int_eq(r.requests, N / 100);
	struct spool_stats st = th_stats(d.spool);
	ck_assert_int_eq(st.pending, 0);
	ck_assert_int_eq(st.dead, 0);
	char buf[512];
	th_meta(d.spool, "agent.counters", buf, sizeof(buf));
	const char *mif = strstr(buf, "max_in_flight=");
	ck_assert_msg(mif, "counters: %s", buf);
	long agent_most = atol(mif + 14);
	if (window > 1) {
		ck_assert_msg(r.open_most > 1, "never more than one request open (%d)",
		              r.open_most);
		ck_assert_msg(r.open_most <= window, "%d requests open at once, max_in_flight %d",
		              r.open_most, window);
		/* 20 requests held 300 ms each cannot take less than 6 s one at a
		 * time */
		ck_assert_msg(took < N / 100 * 0.3, "%.2f s", took);
		ck_assert_msg(agent_most > 1 && agent_most <= window, "counters: %s", buf);
	} else {
		ck_assert_int_eq(r.open_most, 1);
		ck_assert_msg(took >= N / 100 * 0.3, "%.2f s", took);
		ck_assert_msg(agent_most == 1, "counters: %s", buf);
	}
	th_rx_stop(&rx);
	th_dir_remove(&d);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("agent-transport");
	TCase *tc = tcase_create("transport");
	tcase_set_timeout(tc, 300);
	tcase_add_test(tc, external_transport_drains_each_event_once);
	tcase_add_test(tc, external_transport_failures_keep_events);
	tcase_add_test(tc, external_transport_bad_values);
	tcase_add_test(tc, help_config_lists_every_key);
	tcase_add_test(tc, abi1_transport_refused);
	tcase_add_test(tc, builtin_transports_need_no_plugin_dir);
	tcase_add_loop_test(tc, max_in_flight_window, 0, 2);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	/* nothing from outside: no plugin folder, no MASTER_LOG_* setting */
	unsetenv("SPOOL_PLUGIN_DIR");
	for (char **e = environ; *e;) {
		if (strncmp(*e, "MASTER_LOG_", 11) == 0) {
			char name[256];
			snprintf(name, sizeof(name), "%.*s", (int)strcspn(*e, "="), *e);
			unsetenv(name);
			e = environ; /* unsetenv moved the rest */
		} else {
			e++;
		}
	}
	return tc_run(suite());
}
