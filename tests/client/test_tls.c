/* test_tls.c — a program built against libmlog from the build tree logs
 * over https:// to mlog-receiver serving TLS with a private CA
 * (MASTER_LOG_CA_FILE=ca.pem; tests/common/make-certs.sh): with the server
 * up, with the server presenting a certificate of another CA (refused), and
 * with the server down.  The program exits 0 every time (issue 11: it used
 * to die with SIGSEGV at exit, the embedded sender thread inside libcurl
 * after OpenSSL's exit clean-up), and every event arrives once the right
 * server is reachable (the agent the library started retries).  Async
 * (loop 0) and direct, MASTER_LOG_ASYNC=false (loop 1). */
#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <spool/mlog.h>

#include "check_main.h"
#include "harness.h"
#include "spawn_util.h"

static char certs[256]; /* made once by main() */
static struct th_dir dir;

static void setup(void)
{
	su_clear_env();
	th_dir_make(&dir, "tls");
	setenv("MASTER_LOG_SPOOL_DIR", dir.spool, 1);
	setenv("MASTER_LOG_AGENT_IDLE_SECONDS", "2", 1);
}

static void teardown(void)
{
	su_stop_agent(dir.spool);
	th_dir_remove(&dir);
}

/* mlog-receiver serving TLS on port (0: any) with certs/NAME.pem and
 * NAME.key, storing into out. */
static void rx_tls(struct th_rx *rx, const char *out, int port, const char *name)
{
	char cert[400], key[400], portarg[16];
	snprintf(cert, sizeof(cert), "%s/%s.pem", certs, name);
	snprintf(key, sizeof(key), "%s/%s.key", certs, name);
	snprintf(portarg, sizeof(portarg), "%d", port);
	th_rx_start(rx, out, "--tls-cert", cert, "--tls-key", key, "--port", portarg, NULL);
}

/* Every "PREFIX i" of the three programs is in the receiver's file. */
static void assert_all_arrived(const char *out, const char *const *prefixes, size_t n, int each)
{
	FILE *f = fopen(out, "r");
	ck_assert_ptr_nonnull(f);
	char *text = NULL;
	size_t cap = 0;
	ssize_t len = getdelim(&text, &cap, '\0', f);
	fclose(f);
	ck_assert_int_gt(len, 0);
	for (size_t p = 0; p < n; p++)
		for (int i = 0; i < each; i++) {
			char want[96];
			snprintf(want, sizeof(want), "\"message\":\"%s %d\"", prefixes[p], i);
			char spaced[96];
			snprintf(spaced, sizeof(spaced), "\"message\": \"%s %d\"", prefixes[p], i);
			ck_assert_msg(strstr(text, want) || strstr(text, spaced),
			              "%s %d never arrived", prefixes[p], i);
		}
	free(text);
}

START_TEST(test_https_up_refused_down)
{
	const bool direct = _i == 1;
	if (direct)
		setenv("MASTER_LOG_ASYNC", "false", 1);
	char ca[400], url[64], wrong_out[400];
	snprintf(ca, sizeof(ca), "%s/ca.pem", certs);
	setenv("MASTER_LOG_CA_FILE", ca, 1);
	snprintf(wrong_out, sizeof(wrong_out), "%s/wrong.jsonl", dir.root);

	/* up: the right certificate */
	struct th_rx rx;
	rx_tls(&rx, dir.out, 0, "server");
	int port = rx.port;
	snprintf(url, sizeof(url), "https://127.0.0.1:%d", port);
	setenv("MASTER_LOG_ENDPOINT", url, 1);
	struct su_run run;
	su_logprog(&run, &dir, "5", "up", "30");
	ck_assert_msg(run.status == 0, "server up: the program ended with %d: %s", run.status,
	              run.out);
	ck_assert_msg(strstr(run.out, "flush ok\n"), "%s", run.out);
	ck_assert_msg(!strstr(run.out, "log failed"), "%s", run.out);
	/* direct: each event taken by the server at once, over TLS with ca_file */
	ck_assert_msg(strstr(run.out, direct ? "spooled 0\n" : "spooled 5\n"), "%s", run.out);
	ck_assert_msg(su_wait_rx(dir.out, 5, 30), "%zu of 5 arrived", su_rx_count(dir.out));
	th_rx_stop(&rx);

	/* refused: a certificate of another CA on the same address */
	rx_tls(&rx, wrong_out, port, "wrong");
	su_logprog(&run, &dir, "5", "refused", "2");
	printf("%s, server with another CA: %s", direct ? "direct" : "async", run.out);
	ck_assert_msg(run.status == 0, "certificate refused: the program ended with %d: %s",
	              run.status, run.out);
	ck_assert_msg(strstr(run.out, "flush failed: "), "%s", run.out);
	ck_assert_msg(!strstr(run.out, "log failed"), "%s", run.out);
	ck_assert_msg(strstr(run.out, "spooled 5\n"), "%s", run.out); /* not sent: spooled */
	ck_assert_uint_eq(su_rx_count(wrong_out), 0);
	th_rx_stop(&rx);

	/* down */
	su_logprog(&run, &dir, "5", "down", NULL);
	ck_assert_msg(run.status == 0, "server down: the program ended with %d: %s", run.status,
	              run.out);
	ck_assert_msg(run.seconds < MLOG_EXIT_WAIT_SECONDS + 3, "it took %.2f s to exit",
	              run.seconds);

	/* the right server again: the agent delivers what waited */
	rx_tls(&rx, dir.out, port, "server");
	ck_assert_msg(su_wait_rx(dir.out, 15, 120), "%zu of 15 arrived", su_rx_count(dir.out));
	static const char *const prefixes[] = {"up", "refused", "down"};
	assert_all_arrived(dir.out, prefixes, 3, 5);
	ck_assert_uint_eq(su_rx_count(wrong_out), 0);
	th_rx_stop(&rx);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("client-tls");
	TCase *tc = tcase_create("https");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 300);
	tcase_add_loop_test(tc, test_https_up_refused_down, 0, 2);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	signal(SIGPIPE, SIG_IGN);
	const char *make = getenv("MAKE_CERTS");
	snprintf(certs, sizeof(certs), "/tmp/client-tls-certs-%ld", (long)getpid());
	char cmd[700];
	snprintf(cmd, sizeof(cmd), "bash '%s' '%s'", make ? make : "make-certs.sh", certs);
	if (!make || system(cmd) != 0) {
		fprintf(stderr, "cannot make the TLS fixture with %s\n", cmd);
		return 1;
	}
	int rc = tc_run(suite());
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", certs);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", certs);
	return rc;
}
