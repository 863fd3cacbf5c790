/* test_secrets.c — what must never leave the agent, and the proxy rules:
 * the API key in a log line longer than the line limit (scrubbed before
 * the line is cut), user:password@ in the endpoint (never in logs, errors,
 * the meta store or spoolctl), the environment's proxies honoured unless
 * `http.proxy: none`, and the warning for plain http through a proxy. */
#include <check.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <syslog.h>
#include <unistd.h>

#include "check_main.h"
#include "harness.h"
#include "log.h"

#define KEY "Zq7-long-line-SECRET-0042"
#define PASSWORD "Zq7pw-SECRET-991"

/* Runs agent_log() with stderr sent to a file; returns what it wrote
 * (static storage). */
static const char *logged(struct agent_log *l, const char *msg)
{
	static char out[8192];
	char path[] = "/tmp/agent-test-secrets-XXXXXX";
	int fd = mkstemp(path);
	ck_assert_int_ge(fd, 0);
	fflush(stderr);
	int saved = dup(2);
	dup2(fd, 2);
	agent_log(l, LOG_ERR, "%s", msg);
	fflush(stderr);
	dup2(saved, 2);
	close(saved);
	ssize_t n = pread(fd, out, sizeof(out) - 1, 0);
	out[n > 0 ? n : 0] = '\0';
	close(fd);
	unlink(path);
	return out;
}

/* No run of 6 or more characters of the key is in text. */
static void assert_no_key_part(const char *text, const char *where)
{
	size_t kl = strlen(KEY);
	for (size_t len = 6; len <= kl; len++)
		for (size_t at = 0; at + len <= kl; at++) {
			char part[64];
			snprintf(part, sizeof(part), "%.*s", (int)len, KEY + at);
			ck_assert_msg(!strstr(text, part), "%s: the log line holds '%s' of the key", where, part);
		}
}

START_TEST(key_scrubbed_before_the_line_is_cut)
{
	struct agent_log l = {.level = LOG_DEBUG};
	agent_log_set_secret(&l, KEY);
	char msg[4096];
	/* at the end of a 3,000-byte line */
	memset(msg, 'x', 3000);
	memcpy(msg + 3000 - strlen(KEY), KEY, strlen(KEY));
	msg[3000] = '\0';
	assert_no_key_part(logged(&l, msg), "key at the end of 3,000 bytes");
	/* across the line limit (2,048 bytes of text), at every offset */
	for (size_t at = 2020; at < 2060; at++) {
		memset(msg, 'y', sizeof(msg));
		memcpy(msg + at, KEY, strlen(KEY));
		msg[3000] = '\0';
		char where[64];
		snprintf(where, sizeof(where), "key at byte %zu", at);
		assert_no_key_part(logged(&l, msg), where);
	}
	/* a short line still shows where the key was */
	ck_assert(strstr(logged(&l, "server said " KEY " back"), "server said [api key] back"));
	agent_log_set_secret(&l, NULL);
}
END_TEST

static void assert_no_password(const struct th_dir *d, const char *where)
{
	ck_assert_msg(!th_file_has(d->log, PASSWORD), "%s: the password is in the agent's log", where);
	ck_assert_msg(!th_file_has(d->log, "user:"), "%s: user: is in the agent's log", where);
	char v[1024];
	th_meta(d->spool, "agent.last_error", v, sizeof(v));
	ck_assert_msg(!strstr(v, PASSWORD), "%s: the password is in agent.last_error", where);
}

/* Runs a command with its output (both streams) to path; returns its exit
 * status. */
static int run_to(const char *path, const char *const *argv)
{
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
		dup2(fd, 1);
		dup2(fd, 2);
		execv(argv[0], (char *const *)argv);
		_exit(127);
	}
	int st;
	waitpid(pid, &st, 0);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

START_TEST(url_credentials_never_shown)
{
	struct th_dir d;
	th_dir_make(&d, "urlcreds");
	th_fill(d.spool, 1, 5, 0);
	/* nothing listens on port 1: the agent fails, logs and publishes why */
	th_config(&d, "http://user:" PASSWORD "@127.0.0.1:1/api/v1", NULL);
	ck_assert_int_eq(th_agent_run(&d, 30, "--once", NULL), 3);
	ck_assert_msg(th_file_has(d.log, "http://***@127.0.0.1:1"), "the endpoint is shown without credentials");
	assert_no_password(&d, "unreachable");
	ck_assert_int_eq(th_agent_run(&d, 30, "--check-config", NULL), 0);
	assert_no_password(&d, "--check-config");
	/* spoolctl status shows the agent's last error */
	char out[400], spoolctl[600];
	snprintf(out, sizeof(out), "%s/status.txt", d.root);
	snprintf(spoolctl, sizeof(spoolctl), "%s/tools/spoolctl", getenv("SPOOL_TEST_BUILD_DIR"));
	const char *av[] = {spoolctl, "--spool", d.spool, "status", NULL};
	ck_assert_int_eq(run_to(out, av), 0);
	ck_assert_msg(!th_file_has(out, PASSWORD), "the password is in spoolctl status");
	/* a bad port: the error names the port, not the password */
	th_config(&d, "http://user:" PASSWORD "@127.0.0.1:99999", NULL);
	ck_assert_int_eq(th_agent_run(&d, 30, "--once", NULL), 2);
	ck_assert_msg(th_file_has(d.log, "port 99999 is out of range"), "the error says what is wrong");
	assert_no_password(&d, "bad port");
	th_dir_remove(&d);
}
END_TEST

START_TEST(environment_proxy_and_proxy_none)
{
	struct th_dir d;
	struct th_rx rx;
	th_dir_make(&d, "proxy");
	th_rx_start(&rx, d.out, NULL);
	th_fill(d.spool, 1, 20, 0);
	unsetenv("no_proxy");
	unsetenv("NO_PROXY");
	/* a proxy that does not answer: libcurl takes it from the environment,
	 * so nothing arrives, and the agent warns that the key would travel in
	 * clear to it */
	th_config(&d, rx.url, NULL);
	setenv("http_proxy", "http://127.0.0.1:1", 1); /* for the agent only */
	ck_assert_int_eq(th_agent_run(&d, 30, "--once", NULL), 3);
	unsetenv("http_proxy");
	ck_assert_msg(th_file_has(d.log, "goes through the http_proxy http://127.0.0.1:1"),
	              "no warning about plain http through the proxy");
	ck_assert_int_eq(th_rx_stat(&rx, "accepted"), 0);
	/* proxy: none: straight to the receiver, no warning */
	th_config(&d, rx.url, "http:\n  proxy: none\n");
	unlink(d.log); /* the agent's stderr is appended run after run */
	setenv("http_proxy", "http://127.0.0.1:1", 1);
	ck_assert_int_eq(th_agent_run(&d, 30, "--once", NULL), 0);
	unsetenv("http_proxy");
	ck_assert_int_eq(th_rx_stat(&rx, "accepted"), 20);
	ck_assert_msg(!th_file_has(d.log, "goes through the"), "a warning although proxy: none");
	th_rx_stop(&rx);
	th_dir_remove(&d);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("agent-secrets");
	TCase *tc = tcase_create("secrets");
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, key_scrubbed_before_the_line_is_cut);
	tcase_add_test(tc, url_credentials_never_shown);
	tcase_add_test(tc, environment_proxy_and_proxy_none);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return tc_run(suite());
}
