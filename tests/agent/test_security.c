/* test_security.c — what the agent and the client keep private: the spool's
 * modes (0700 folders, 0600 files, made by the client and by the agent; a
 * warning for a spool others may write), the API key (never in a log line,
 * an error, --help/--check-config or spoolctl status, even when the server
 * echoes it), api_key_file permissions, the warning for tls.verify: false,
 * and redirects that are never followed (a 3xx pointing at another host on
 * ::1 gets no connection from the agent nor from the client's direct send).
 * Real processes over 127.0.0.1 and ::1; small servers of the test's own. */
#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <spool/mlog.h>

#include "check_main.h"
#include "harness.h"

#define CANARY      "Zq7LeakCanary-4b1d-SECRET-9f3a"
#define CANARY_HEAD "Zq7LeakCanary" /* any part of it before the last 4 */

/* ---- a small HTTP server: every request gets the same answer ---- */

struct tiny {
	int fd;
	int port;
	char answer[512]; /* status line and headers, without the final CRLF */
	bool echo_key;    /* the body is a 401 detail quoting X-API-Key */
	pthread_t th;
	pthread_mutex_t mu;
	int requests, connections;
};

static void tiny_answer(struct tiny *s, int c)
{
	char buf[1 << 16];
	if (!th_read_request(c, buf, sizeof(buf)))
		return;
	char body[600] = "";
	if (s->echo_key) {
		const char *k = strcasestr(buf, "\r\nX-API-Key: ");
		char key[256] = "";
		if (k)
			snprintf(key, sizeof(key), "%.*s", (int)strcspn(k + 13, "\r\n"), k + 13);
		snprintf(body, sizeof(body), "{\"detail\": \"key %s is not valid; X-API-Key: %s\"}",
		         key, key);
	}
	pthread_mutex_lock(&s->mu);
	s->requests++;
	pthread_mutex_unlock(&s->mu);
	char out[1400];
	int m = snprintf(out, sizeof(out),
	                 "%s\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n"
	                 "Connection: close\r\n\r\n%s",
	                 s->answer, strlen(body), body);
	if (write(c, out, (size_t)m) < 0)
		perror("write");
}

static void *tiny_serve(void *arg)
{
	struct tiny *s = arg;
	for (;;) {
		int c = accept(s->fd, NULL, NULL);
		if (c < 0)
			return NULL;
		pthread_mutex_lock(&s->mu);
		s->connections++;
		pthread_mutex_unlock(&s->mu);
		if (s->answer[0])
			tiny_answer(s, c);
		close(c);
	}
}

/* Listens on 127.0.0.1 (v6: ::1) at a free port. */
static void tiny_start(struct tiny *s, bool v6, const char *answer, bool echo_key)
{
	memset(s, 0, sizeof(*s));
	snprintf(s->answer, sizeof(s->answer), "%s", answer ? answer : "");
	s->echo_key = echo_key;
	pthread_mutex_init(&s->mu, NULL);
	s->fd = socket(v6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	ck_assert_int_ge(s->fd, 0);
	int one = 1;
	setsockopt(s->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (v6) {
		struct sockaddr_in6 a = {.sin6_family = AF_INET6,
		                         .sin6_addr = IN6ADDR_LOOPBACK_INIT};
		ck_assert_msg(bind(s->fd, (struct sockaddr *)&a, sizeof(a)) == 0, "bind ::1: %s",
		              strerror(errno));
		socklen_t sl = sizeof(a);
		getsockname(s->fd, (struct sockaddr *)&a, &sl);
		s->port = ntohs(a.sin6_port);
	} else {
		struct sockaddr_in a = {.sin_family = AF_INET,
		                        .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
		ck_assert_int_eq(bind(s->fd, (struct sockaddr *)&a, sizeof(a)), 0);
		socklen_t sl = sizeof(a);
		getsockname(s->fd, (struct sockaddr *)&a, &sl);
		s->port = ntohs(a.sin_port);
	}
	ck_assert_int_eq(listen(s->fd, 16), 0);
	pthread_create(&s->th, NULL, tiny_serve, s);
}

static void tiny_stop(struct tiny *s)
{
	shutdown(s->fd, SHUT_RDWR);
	close(s->fd);
	pthread_join(s->th, NULL);
}

/* ---- helpers ---- */

static void write_text(const char *path, const char *text, mode_t mode)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode);
	ck_assert_msg(fd >= 0, "%s: %s", path, strerror(errno));
	ck_assert_int_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	ck_assert_int_eq(fchmod(fd, mode), 0);
	close(fd);
}

/* Runs argv with stdout+stderr appended to out; returns the exit status. */
static int run_to(const char *const *argv, const char *out)
{
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		int fd = open(out, O_WRONLY | O_CREAT | O_APPEND, 0600);
		if (fd < 0)
			_exit(126);
		dup2(fd, 1);
		dup2(fd, 2);
		execv(argv[0], (char *const *)argv);
		_exit(127);
	}
	int st;
	waitpid(pid, &st, 0);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -WTERMSIG(st);
}

static bool file_holds(const char *path, const char *text)
{
	FILE *f = fopen(path, "r");
	if (!f)
		return false;
	char buf[1 << 16];
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	return strstr(buf, text) != NULL;
}

static int count_in(const char *path, const char *text)
{
	FILE *f = fopen(path, "r");
	if (!f)
		return 0;
	char line[8192];
	int n = 0;
	while (fgets(line, sizeof(line), f))
		n += strstr(line, text) != NULL;
	fclose(f);
	return n;
}

/* Waits (up to a minute) until the file holds text at least n times. */
static void wait_count(const char *path, const char *text, int n)
{
	for (int i = 0; i < 6000 && count_in(path, text) < n; i++)
		usleep(10000);
	ck_assert_msg(count_in(path, text) >= n, "%s: \"%s\" not %d times", path, text, n);
}

static void spoolctl_status(const char *spool, const char *out)
{
	char prog[600];
	snprintf(prog, sizeof(prog), "%s/tools/spoolctl", th_prog("SPOOL_TEST_BUILD_DIR"));
	const char *text[] = {prog, "--spool", spool, "status", NULL};
	const char *json[] = {prog, "--spool", spool, "status", "--json", NULL};
	ck_assert_int_eq(run_to(text, out), 0);
	ck_assert_int_eq(run_to(json, out), 0);
}

/* The key appears in none of the outputs nor in the spool's meta values. */
static void assert_no_key(const char *what, const char *path, const char *spool)
{
	ck_assert_msg(!file_holds(path, CANARY_HEAD), "%s: the API key leaks into %s", what, path);
	if (!spool)
		return;
	static const char *const meta[] = {"agent.last_error", "agent.counters",
	                                   "agent.last_success", "agent.send_seconds_per_event"};
	for (size_t i = 0; i < sizeof(meta) / sizeof(meta[0]); i++) {
		char v[1024];
		th_meta(spool, meta[i], v, sizeof(v));
		ck_assert_msg(!strstr(v, CANARY_HEAD), "%s: the key leaks into meta %s: %s", what,
		              meta[i], v);
	}
}

/* ---- the spool's modes ---- */

static int bad_modes;
static char bad_mode_path[512];

static int check_mode(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)flag;
	(void)ftw;
	mode_t m = st->st_mode & 07777, want = S_ISDIR(st->st_mode) ? 0700 : 0600;
	if (m != want) {
		bad_modes++;
		snprintf(bad_mode_path, sizeof(bad_mode_path), "%s (mode %04o, want %04o)", path,
		         (unsigned)m, (unsigned)want);
	}
	return 0;
}

/* Everything under top, top included, is 0700 (folders) or 0600. */
static void assert_private_tree(const char *top)
{
	bad_modes = 0;
	ck_assert_int_eq(nftw(top, check_mode, 16, FTW_PHYS), 0);
	ck_assert_msg(bad_modes == 0, "%d entries not private, e.g. %s", bad_modes, bad_mode_path);
}

START_TEST(spool_is_private_client_and_agent)
{
	mode_t old = umask(0); /* whatever the umask, the spool is private */
	struct th_dir d;
	struct th_rx rx;
	th_dir_make(&d, "sec-modes");
	th_rx_start(&rx, NULL, NULL);
	/* the client makes the spool, its parents and its files (ring too) */
	char top[400], spool[500];
	snprintf(top, sizeof(top), "%s/client", d.root);
	snprintf(spool, sizeof(spool), "%s/a/b/spool", top);
	struct mlog_client *c;
	char err[512];
	struct mlog_config cfg = {.endpoint = rx.url,
	                          .spool_dir = spool,
	                          .durability = "commit",
	                          .spawn_agent = MLOG_OFF};
	ck_assert_msg(mlog_client_new(&cfg, &c, err, sizeof(err)) == 0, "%s", err);
	struct mlog_result r = mlog_client_info(c, "private %d", 1);
	ck_assert_msg(r.ok, "%s", r.error);
	assert_private_tree(top); /* while the ring file exists */
	mlog_client_free(c);
	assert_private_tree(top);
	/* the agent makes a missing spool the same way */
	snprintf(top, sizeof(top), "%s/agent", d.root);
	snprintf(spool, sizeof(spool), "%s/x/spool", top);
	FILE *f = fopen(d.config, "w");
	fprintf(f, "spool: %s\nhttp:\n  endpoint: %s\n", spool, rx.url);
	fclose(f);
	ck_assert_int_eq(th_agent_run(&d, 60, "--once", NULL), 0);
	assert_private_tree(top);
	ck_assert(!file_holds(d.log, "writable by"));
	th_rx_stop(&rx);
	umask(old);
	th_dir_remove(&d);
}
END_TEST

START_TEST(agent_warns_about_a_shared_spool)
{
	mode_t old = umask(0);
	struct th_dir d;
	struct th_rx rx;
	th_dir_make(&d, "sec-shared");
	th_rx_start(&rx, NULL, NULL);
	ck_assert_int_eq(mkdir(d.spool, 0777), 0);
	th_fill(d.spool, 1, 3, 0);
	th_config(&d, rx.url, NULL);
	ck_assert_int_eq(th_agent_run(&d, 60, "--once", NULL), 0);
	ck_assert_int_eq(th_stats(d.spool).pending, 0); /* a warning, not a refusal */
	char want[600];
	snprintf(want, sizeof(want), "spool directory %s is writable by everyone (mode 0777)",
	         d.spool);
	ck_assert_msg(file_holds(d.log, want), "no warning naming the path and mode");
	ck_assert(file_holds(d.log, "chmod 700"));
	/* group-writable: the same, and said as such */
	ck_assert_int_eq(chmod(d.spool, 0770), 0);
	unlink(d.log);
	ck_assert_int_eq(th_agent_run(&d, 60, "--once", NULL), 0);
	snprintf(want, sizeof(want), "spool directory %s is writable by its group (mode 0770)",
	         d.spool);
	ck_assert(file_holds(d.log, want));
	/* private again: no warning */
	ck_assert_int_eq(chmod(d.spool, 0700), 0);
	unlink(d.log);
	ck_assert_int_eq(th_agent_run(&d, 60, "--once", NULL), 0);
	ck_assert(!file_holds(d.log, "writable by"));
	/* shared by a group (setgid, 2770, as the system spool is): its files
	 * are group-writable by design, no warning; a file writable by another
	 * group, or by everyone, is warned about */
	ck_assert_int_eq(chmod(d.spool, 02770), 0);
	th_fill(d.spool, 1, 3, 0);
	unlink(d.log);
	ck_assert_int_eq(th_agent_run(&d, 60, "--once", NULL), 0);
	ck_assert_int_eq(th_stats(d.spool).pending, 0);
	ck_assert_msg(!file_holds(d.log, "writable by"), "a shared spool was warned about");
	char stray[500];
	snprintf(stray, sizeof(stray), "%s/stray", d.spool);
	int sfd = open(stray, O_CREAT | O_WRONLY, 0660);
	ck_assert_int_ge(sfd, 0);
	close(sfd);
	gid_t other = getegid() + 1;
	if (chown(stray, (uid_t)-1, other) == 0) { /* root, or a member of that group */
		unlink(d.log);
		ck_assert_int_eq(th_agent_run(&d, 60, "--once", NULL), 0);
		snprintf(want, sizeof(want), "spool file %s is writable by group %u (mode 0660), not by "
		         "the shared spool's group %u", stray, (unsigned)other, (unsigned)getegid());
		ck_assert_msg(file_holds(d.log, want), "no warning about a file of another group");
		ck_assert_int_eq(chown(stray, (uid_t)-1, getegid()), 0);
	}
	ck_assert_int_eq(chmod(stray, 0662), 0);
	unlink(d.log);
	ck_assert_int_eq(th_agent_run(&d, 60, "--once", NULL), 0);
	snprintf(want, sizeof(want), "spool file %s is writable by everyone (mode 0662)", stray);
	ck_assert_msg(file_holds(d.log, want), "no warning about a world-writable file");
	unlink(stray);
	ck_assert_int_eq(chmod(d.spool, 0700), 0);
	th_rx_stop(&rx);
	umask(old);
	th_dir_remove(&d);
}
END_TEST

/* ---- the API key ---- */

START_TEST(api_key_never_in_output)
{
	struct th_dir d;
	struct th_rx rx;
	th_dir_make(&d, "sec-key");
	char out[400], keyfile[400], extra[800];
	snprintf(out, sizeof(out), "%s/outputs.txt", d.root);
	snprintf(keyfile, sizeof(keyfile), "%s/api-key", d.root);
	write_text(keyfile, CANARY "\n", 0600);
	th_rx_start(&rx, NULL, "--api-key", "the-right-key-000", NULL);
	th_fill(d.spool, 1, 4, 0);
	for (int pass = 0; pass < 2; pass++) {
		/* 401 with debug logging, the key given inline then from a file */
		if (pass == 0)
			snprintf(extra, sizeof(extra), "http:\n  api_key: %s\n", CANARY);
		else
			snprintf(extra, sizeof(extra), "http:\n  api_key_file: %s\n", keyfile);
		th_config(&d, rx.url, extra);
		ck_assert_int_eq(th_agent_run(&d, 60, "--once", NULL), 3);
		ck_assert(file_holds(d.log, "credentials refused"));
		ck_assert(file_holds(d.log, "...9f3a")); /* at most the last 4 */
		const char *agent = th_prog("SPOOL_AGENT");
		const char *check[] = {agent, "-c", d.config, "--check-config", NULL};
		ck_assert_int_eq(run_to(check, out), 0);
		const char *verbose[] = {agent,         "-c",    d.config, "--once",
		                         "--log-level", "debug", NULL};
		ck_assert_int_eq(run_to(verbose, out), 3);
		/* a daemon reloading on SIGHUP logs its configuration again */
		pid_t pid = th_agent_start(&d, NULL);
		wait_count(d.log, "started:", pass + 1);
		kill(pid, SIGHUP);
		wait_count(d.log, "reloaded:", pass + 1);
		ck_assert_int_eq(th_agent_stop(pid, SIGTERM, 30), 0);
		spoolctl_status(d.spool, out);
		assert_no_key(pass ? "api_key_file" : "api_key", d.log, d.spool);
		assert_no_key("outputs", out, NULL);
	}
	ck_assert_int_eq(th_stats(d.spool).pending, 4);
	ck_assert_int_eq(th_stats(d.spool).dead, 0);
	th_rx_stop(&rx);
	/* a bad endpoint: nothing listens, then one that cannot be parsed */
	setenv("MASTER_LOG_API_KEY", CANARY, 1);
	th_config(&d, "http://127.0.0.1:1", NULL);
	unlink(d.log);
	ck_assert_int_eq(th_agent_run(&d, 60, "--once", NULL), 3);
	assert_no_key("no server", d.log, d.spool);
	th_config(&d, "ftp://127.0.0.1/", NULL);
	ck_assert_int_eq(th_agent_run(&d, 60, "--once", NULL), 2);
	assert_no_key("bad endpoint", d.log, NULL);
	/* the help texts */
	const char *agent = th_prog("SPOOL_AGENT");
	const char *help[] = {agent, "--help", NULL}, *keys[] = {agent, "--help-config", NULL};
	ck_assert_int_eq(run_to(help, out), 0);
	ck_assert_int_eq(run_to(keys, out), 0);
	assert_no_key("help", out, NULL);
	unsetenv("MASTER_LOG_API_KEY");
	th_dir_remove(&d);
}
END_TEST

/* A server that quotes the key back in its refusal: the agent's log, its
 * meta store and the client's error text still never hold it. */
START_TEST(api_key_echoed_by_server_is_scrubbed)
{
	struct tiny srv;
	tiny_start(&srv, false, "HTTP/1.1 401 Unauthorized", true);
	struct th_dir d;
	th_dir_make(&d, "sec-echo");
	th_fill(d.spool, 1, 2, 0);
	char url[64], extra[200];
	snprintf(url, sizeof(url), "http://127.0.0.1:%d", srv.port);
	snprintf(extra, sizeof(extra), "http:\n  api_key: %s\n", CANARY);
	th_config(&d, url, extra);
	ck_assert_int_eq(th_agent_run(&d, 60, "--once", NULL), 3);
	ck_assert_int_ge(srv.requests, 1);
	ck_assert(file_holds(d.log, "is not valid")); /* the detail is logged... */
	assert_no_key("echo", d.log, d.spool);        /* ...without the key */
	char out[400];
	snprintf(out, sizeof(out), "%s/status.txt", d.root);
	spoolctl_status(d.spool, out);
	assert_no_key("echo status", out, NULL);
	/* the client's direct send */
	struct mlog_client *c;
	char err[512];
	struct mlog_config cfg = {.endpoint = url,
	                          .api_key = CANARY,
	                          .spool_dir = d.spool,
	                          .async_mode = MLOG_OFF,
	                          .spawn_agent = MLOG_OFF};
	ck_assert_msg(mlog_client_new(&cfg, &c, err, sizeof(err)) == 0, "%s", err);
	struct mlog_result r = mlog_client_info(c, "direct");
	ck_assert_int_eq(r.status_code, 401);
	ck_assert_msg(!strstr(r.error, CANARY_HEAD), "the client's error holds the key: %s",
	              r.error);
	mlog_client_free(c);
	tiny_stop(&srv);
	th_dir_remove(&d);
}
END_TEST

START_TEST(api_key_file_must_be_private)
{
	struct th_dir d;
	struct th_rx rx;
	th_dir_make(&d, "sec-keyfile");
	th_rx_start(&rx, NULL, "--api-key", CANARY, NULL);
	th_fill(d.spool, 1, 2, 0);
	char keyfile[400], extra[600], want[800];
	snprintf(keyfile, sizeof(keyfile), "%s/api-key", d.root);
	snprintf(extra, sizeof(extra), "http:\n  api_key_file: %s\n", keyfile);
	th_config(&d, rx.url, extra);
	static const mode_t bad[] = {0644, 0640, 0604, 0660, 0620};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		write_text(keyfile, CANARY "\n", bad[i]);
		unlink(d.log);
		ck_assert_int_eq(th_agent_run(&d, 60, "--check-config", NULL), 2);
		ck_assert_int_eq(th_agent_run(&d, 60, "--once", NULL), 2);
		snprintf(want, sizeof(want), "key 'http.api_key_file': %s: refused: mode %04o",
		         keyfile, (unsigned)bad[i]);
		ck_assert_msg(file_holds(d.log, want), "mode %04o: no \"%s\"", (unsigned)bad[i],
		              want);
		snprintf(want, sizeof(want), "expected 0600 or 0400: chmod 600 %s", keyfile);
		ck_assert(file_holds(d.log, want));
		assert_no_key("refused key file", d.log, NULL);
	}
	if (geteuid() == 0) {
		write_text(keyfile, CANARY "\n", 0600);
		ck_assert_int_eq(chown(keyfile, 65534, 65534), 0);
		unlink(d.log);
		ck_assert_int_eq(th_agent_run(&d, 60, "--once", NULL), 2);
		ck_assert(file_holds(d.log, "owned by uid 65534, not by the agent's user (uid 0)"));
		ck_assert_int_eq(chown(keyfile, 0, 0), 0);
	}
	ck_assert_int_eq(th_rx_stat(&rx, "requests"), 0);
	/* 0600 and 0400 are fine, and the key works */
	write_text(keyfile, CANARY "\n", 0400);
	ck_assert_int_eq(th_agent_run(&d, 60, "--once", NULL), 0);
	ck_assert_int_eq(th_stats(d.spool).pending, 0);
	/* a reload meets a key file made readable: it keeps running with the
	 * key it has, and says why */
	write_text(keyfile, CANARY "\n", 0600);
	unlink(d.log);
	pid_t pid = th_agent_start(&d, NULL);
	wait_count(d.log, "started:", 1);
	ck_assert_int_eq(chmod(keyfile, 0644), 0);
	kill(pid, SIGHUP);
	wait_count(d.log, "keeping the running configuration", 1);
	ck_assert(file_holds(d.log, "refused: mode 0644"));
	th_fill(d.spool, 10, 1, 0);
	for (int i = 0; i < 1000 && th_stats(d.spool).pending; i++)
		usleep(10000);
	ck_assert_int_eq(th_stats(d.spool).pending, 0);
	ck_assert_int_eq(th_agent_stop(pid, SIGTERM, 30), 0);
	assert_no_key("reload", d.log, d.spool);
	th_rx_stop(&rx);
	th_dir_remove(&d);
}
END_TEST

/* ---- TLS ---- */

START_TEST(tls_verify_off_warns_at_start_and_reload)
{
	struct th_dir d;
	struct th_rx rx;
	th_dir_make(&d, "sec-tls");
	th_rx_start(&rx, NULL, NULL);
	th_config(&d, rx.url, NULL);
	ck_assert_int_eq(th_agent_run(&d, 60, "--once", NULL), 0);
	ck_assert(!file_holds(d.log, "tls.verify is false")); /* on by default */
	th_config(&d, rx.url, "http:\n  tls:\n    verify: false\n");
	ck_assert_int_eq(th_agent_run(&d, 60, "--once", NULL), 0);
	ck_assert_int_eq(count_in(d.log, "warning: tls.verify is false"), 1);
	/* --check-config says it too */
	char out[400];
	snprintf(out, sizeof(out), "%s/check.txt", d.root);
	const char *check[] = {th_prog("SPOOL_AGENT"), "-c", d.config, "--check-config", NULL};
	ck_assert_int_eq(run_to(check, out), 0);
	ck_assert(file_holds(out, "warning: tls.verify is false"));
	/* a daemon: once at start, once more per reload */
	unlink(d.log);
	pid_t pid = th_agent_start(&d, NULL);
	wait_count(d.log, "started:", 1);
	kill(pid, SIGHUP);
	wait_count(d.log, "reloaded:", 1);
	ck_assert_int_eq(th_agent_stop(pid, SIGTERM, 30), 0);
	ck_assert_int_eq(count_in(d.log, "warning: tls.verify is false"), 2);
	ck_assert_int_eq(count_in(d.log, "reloaded:"), 1);
	th_rx_stop(&rx);
	th_dir_remove(&d);
}
END_TEST

/* ---- redirects ---- */

START_TEST(redirect_to_another_host_not_followed)
{
	static const int codes[] = {307, 302, 301, 308, 303};
	int code = codes[_i];
	struct tiny other, srv;
	tiny_start(&other, true, NULL, false); /* ::1: counts connections only */
	char answer[256];
	snprintf(answer, sizeof(answer),
	         "HTTP/1.1 %d Moved\r\nLocation: http://[::1]:%d/api/v1/logs/batch", code,
	         other.port);
	tiny_start(&srv, false, answer, false);
	struct th_dir d;
	th_dir_make(&d, "sec-redirect");
	th_fill(d.spool, 1, 3, 0);
	char url[64], extra[200];
	snprintf(url, sizeof(url), "http://127.0.0.1:%d", srv.port);
	snprintf(extra, sizeof(extra), "http:\n  api_key: %s\n", CANARY);
	th_config(&d, url, extra);
	/* 3xx is "any other: transient": kept, and --once says events remain */
	int rc = th_agent_run(&d, 60, "--once", NULL);
	pthread_mutex_lock(&other.mu);
	int reached = other.connections;
	pthread_mutex_unlock(&other.mu);
	ck_assert_msg(reached == 0, "the agent followed the %d to [::1]:%d", code, other.port);
	ck_assert_int_eq(rc, 3);
	ck_assert_int_ge(srv.requests, 1);
	ck_assert_int_eq(th_stats(d.spool).pending, 3);
	ck_assert_int_eq(th_stats(d.spool).dead, 0);
	char want[200];
	snprintf(want, sizeof(want), "%d redirect not followed (Location: http://[::1]:%d/", code,
	         other.port);
	ck_assert_msg(file_holds(d.log, want), "no \"%s\" in the log", want);
	/* the client's direct send (MASTER_LOG_ASYNC=false) */
	setenv("MASTER_LOG_ASYNC", "false", 1);
	setenv("MASTER_LOG_ENDPOINT", url, 1);
	setenv("MASTER_LOG_API_KEY", CANARY, 1);
	setenv("MASTER_LOG_SPOOL_DIR", d.spool, 1);
	struct mlog_client *c;
	char err[512];
	struct mlog_config cfg = {.spawn_agent = MLOG_OFF};
	ck_assert_msg(mlog_client_new(&cfg, &c, err, sizeof(err)) == 0, "%s", err);
	struct mlog_result r = mlog_client_info(c, "direct");
	pthread_mutex_lock(&other.mu);
	reached = other.connections;
	pthread_mutex_unlock(&other.mu);
	ck_assert_msg(reached == 0, "the client followed the %d to [::1]:%d", code, other.port);
	ck_assert_int_eq(r.status_code, code);
	ck_assert_msg(r.queued, "a redirected event is kept in the spool: %s", r.error);
	mlog_client_free(c);
	unsetenv("MASTER_LOG_ASYNC");
	unsetenv("MASTER_LOG_ENDPOINT");
	unsetenv("MASTER_LOG_API_KEY");
	unsetenv("MASTER_LOG_SPOOL_DIR");
	ck_assert_int_eq(th_stats(d.spool).pending, 4);
	tiny_stop(&srv);
	tiny_stop(&other);
	ck_assert_int_ge(srv.requests, 2);
	ck_assert_msg(other.connections == 0, "%d connections reached the redirect target",
	              other.connections);
	th_dir_remove(&d);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("agent-security");
	TCase *tc = tcase_create("security");
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, spool_is_private_client_and_agent);
	tcase_add_test(tc, agent_warns_about_a_shared_spool);
	tcase_add_test(tc, api_key_never_in_output);
	tcase_add_test(tc, api_key_echoed_by_server_is_scrubbed);
	tcase_add_test(tc, api_key_file_must_be_private);
	tcase_add_test(tc, tls_verify_off_warns_at_start_and_reload);
	tcase_add_loop_test(tc, redirect_to_another_host_not_followed, 0, 5);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	static const char *const vars[] = {"MASTER_LOG_SPOOL_DIR", "MASTER_LOG_ENDPOINT",
	                                   "MASTER_LOG_API_KEY", "MASTER_LOG_ASYNC",
	                                   "MASTER_LOG_BATCH_SIZE"};
	for (size_t i = 0; i < sizeof(vars) / sizeof(vars[0]); i++)
		unsetenv(vars[i]);
	return tc_run(suite());
}
