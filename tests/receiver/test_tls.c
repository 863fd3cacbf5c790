/* test_tls.c - mlog-receiver --tls-cert/--tls-key: HTTPS with a private CA
 * made by tests/common/make-certs.sh, a client trusting another CA is
 * refused before anything is stored, and bad TLS options are refused. */
#include <arpa/inet.h>
#include <check.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#include "tests.h"

#define BATCH "/api/v1/logs/batch"

/* The fixture folder, made once for the test case by the parent process
 * (an unchecked fixture), so it is removed even when a test fails. */
static char certs[64];

static void cert_path(char *out, size_t size, const char *name)
{
	snprintf(out, size, "%s/%s", certs, name);
}

static void make_certs(void)
{
	const char *src = getenv("SPOOL_SOURCE_DIR");
	char script[512];

	ck_assert_msg(src && *src, "SPOOL_SOURCE_DIR is not set");
	snprintf(script, sizeof(script), "%s/tests/common/make-certs.sh", src);
	snprintf(certs, sizeof(certs), "/tmp/mlog-rx-certs.XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(certs));
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		execlp("bash", "bash", script, certs, (char *)NULL);
		_exit(127);
	}
	int status;
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "%s %s failed: status 0x%x",
	              script, certs, status);
	static const char *const made[] = {"ca.pem",       "ca.key",    "server.pem", "server.key",
	                                   "other-ca.pem", "wrong.pem", "wrong.key"};
	for (size_t i = 0; i < sizeof(made) / sizeof(made[0]); i++) {
		char path[128];
		struct stat st;
		cert_path(path, sizeof(path), made[i]);
		ck_assert_msg(stat(path, &st) == 0 && st.st_size > 0, "make-certs.sh made no %s",
		              made[i]);
		if (strstr(made[i], ".key"))
			ck_assert_msg((st.st_mode & 0777) == 0600, "%s has mode %o", made[i],
			              (unsigned)(st.st_mode & 0777));
	}
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	return remove(path);
}

static void remove_certs(void)
{
	if (certs[0])
		nftw(certs, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
	certs[0] = '\0';
}

/* Starts the receiver serving `cert`/`key` from the fixture, with `extra`
 * (NULL-terminated, at most 6) after them; requests trust ca.pem. */
static void start_tls(struct rx *rx, const char *cert, const char *key, const char *const *extra)
{
	static char cert_file[128], key_file[128], ca_file[128];
	const char *args[12] = {"--listen", "127.0.0.1", "--tls-cert",
	                        cert_file,  "--tls-key", key_file};
	size_t n = 6;

	cert_path(cert_file, sizeof(cert_file), cert);
	cert_path(key_file, sizeof(key_file), key);
	cert_path(ca_file, sizeof(ca_file), "ca.pem");
	for (size_t i = 0; extra && extra[i]; i++) {
		ck_assert_uint_lt(n, sizeof(args) / sizeof(args[0]) - 1);
		if (strcmp(extra[i], "--listen") == 0) {
			args[1] = extra[++i]; /* replaces the 127.0.0.1 above */
			continue;
		}
		args[n++] = extra[i];
	}
	args[n] = NULL;
	rx_start(rx, args);
	ck_assert_msg(rx->https, "the port file does not say https");
	rx->ca_file = ca_file;
}

static char *slurp(const char *path)
{
	FILE *f = fopen(path, "r");
	ck_assert_ptr_nonnull(f);
	char *buf = calloc(1, 1 << 16);
	ck_assert_ptr_nonnull(buf);
	size_t n = fread(buf, 1, (1 << 16) - 1, f);
	buf[n] = '\0';
	fclose(f);
	return buf;
}

static size_t out_count(struct rx *rx)
{
	json_t *lines = rx_out_lines(rx);
	size_t n = json_array_size(lines);
	json_decref(lines);
	return n;
}

/* One POST of `body` to `url` with libcurl, trusting only `ca` (NULL: the
 * system's CAs).  Returns the curl code; *status gets the HTTP status. */
static CURLcode post_to(const char *url, const char *ca, const char *body, long *status)
{
	CURL *c = curl_easy_init();
	ck_assert_ptr_nonnull(c);
	struct curl_slist *hdr = curl_slist_append(NULL, "Content-Type: application/json");
	FILE *sink = fopen("/dev/null", "w");
	ck_assert_ptr_nonnull(sink);
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_NOPROXY, "*");
	curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdr);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, sink);
	curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 10000L);
	curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 1L);
	curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 2L);
	if (ca) {
		curl_easy_setopt(c, CURLOPT_CAINFO, ca);
		curl_easy_setopt(c, CURLOPT_CAPATH, NULL);
	}
	*status = 0;
	CURLcode rc = curl_easy_perform(c);
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, status);
	fclose(sink);
	curl_slist_free_all(hdr);
	curl_easy_cleanup(c);
	return rc;
}

static char *batch_text(unsigned long long n0, size_t count)
{
	json_t *b = test_batch(n0, count);
	char *text = test_dump(b);
	json_decref(b);
	return text;
}

START_TEST(https_batch_from_a_client_trusting_the_ca_is_stored)
{
	struct rx rx;
	struct resp r;
	start_tls(&rx, "server.pem", "server.key", NULL);

	/* The ready line says the scheme, so a test can build the URL. */
	char *text = slurp(rx.stdout_path);
	char want[64];
	snprintf(want, sizeof(want), "port %d https\n", rx.port);
	ck_assert_str_eq(text, want);
	free(text);

	char *batch = batch_text(1, 3);
	rx_post(&rx, BATCH, batch, &r);
	ck_assert_int_eq(r.rc, CURLE_OK);
	ck_assert_int_eq(r.status, 200);
	json_t *j = resp_json(&r);
	ck_assert_int_eq(json_integer_value(json_object_get(j, "accepted")), 3);
	ck_assert_int_eq(json_integer_value(json_object_get(j, "duplicates")), 0);
	json_decref(j);
	resp_free(&r);

	/* /stats and /healthz over the same TLS port. */
	ck_assert_int_eq(rx_stat(&rx, "accepted"), 3);
	ck_assert_int_eq(rx_stat(&rx, "batches"), 1);
	ck_assert_uint_eq(out_count(&rx), 3);
	rx_request(&rx, "GET", "/healthz", NULL, 0, NULL, 0, &r);
	ck_assert_int_eq(r.status, 200);
	resp_free(&r);

	/* Dedup is the same over TLS: the batch again is all duplicates. */
	rx_post(&rx, BATCH, batch, &r);
	ck_assert_int_eq(r.status, 200);
	j = resp_json(&r);
	ck_assert_int_eq(json_integer_value(json_object_get(j, "duplicates")), 3);
	json_decref(j);
	resp_free(&r);
	ck_assert_int_eq(rx_stat(&rx, "accepted"), 3);
	ck_assert_int_eq(rx_stat(&rx, "duplicates"), 3);

	/* The name localhost is in the certificate too. */
	char url[128];
	long status;
	snprintf(url, sizeof(url), "https://localhost:%d" BATCH, rx.port);
	char *more = batch_text(10, 2);
	ck_assert_int_eq(post_to(url, rx.ca_file, more, &status), CURLE_OK);
	ck_assert_int_eq(status, 200);
	ck_assert_int_eq(rx_stat(&rx, "accepted"), 5);
	ck_assert_uint_eq(out_count(&rx), 5);

	free(more);
	free(batch);
	ck_assert_int_eq(rx_stop(&rx), 0);
}
END_TEST

START_TEST(client_trusting_another_ca_is_refused_and_nothing_is_stored)
{
	struct rx rx;
	char url[128], other_ca[128];
	long status;
	start_tls(&rx, "server.pem", "server.key", NULL);
	cert_path(other_ca, sizeof(other_ca), "other-ca.pem");
	snprintf(url, sizeof(url), "https://127.0.0.1:%d" BATCH, rx.port);
	char *batch = batch_text(1, 3);

	ck_assert_int_eq(post_to(url, other_ca, batch, &status), CURLE_PEER_FAILED_VERIFICATION);
	ck_assert_int_eq(status, 0);
	/* Plain HTTP to the TLS port gets no HTTP answer either. */
	snprintf(url, sizeof(url), "http://127.0.0.1:%d" BATCH, rx.port);
	ck_assert_int_ne(post_to(url, NULL, batch, &status), CURLE_OK);
	ck_assert_int_eq(status, 0);

	ck_assert(rx_alive(&rx));
	ck_assert_int_eq(rx_stat(&rx, "requests"), 0);
	ck_assert_int_eq(rx_stat(&rx, "accepted"), 0);
	ck_assert_uint_eq(out_count(&rx), 0);
	free(batch);
	ck_assert_int_eq(rx_stop(&rx), 0);
}
END_TEST

START_TEST(server_with_a_certificate_from_another_ca_is_refused)
{
	struct rx rx;
	char url[128];
	long status;
	start_tls(&rx, "wrong.pem", "wrong.key", NULL);
	snprintf(url, sizeof(url), "https://127.0.0.1:%d" BATCH, rx.port);
	char *batch = batch_text(1, 3);
	ck_assert_int_eq(post_to(url, rx.ca_file, batch, &status), CURLE_PEER_FAILED_VERIFICATION);
	ck_assert_int_eq(status, 0);
	ck_assert_uint_eq(out_count(&rx), 0);
	free(batch);
	ck_assert_int_eq(rx_stop(&rx), 0);
}
END_TEST

START_TEST(fault_flags_work_the_same_over_tls)
{
	const char *extra[] = {"--fail-first", "1", "--retry-after", "7", NULL};
	struct rx rx;
	struct resp r;
	start_tls(&rx, "server.pem", "server.key", extra);
	char *batch = batch_text(1, 2);
	rx_post(&rx, BATCH, batch, &r);
	ck_assert_int_eq(r.status, 503);
	ck_assert_str_eq(r.retry_after, "7");
	resp_free(&r);
	rx_post(&rx, BATCH, batch, &r);
	ck_assert_int_eq(r.status, 200);
	resp_free(&r);
	ck_assert_int_eq(rx_stat(&rx, "faults"), 1);
	ck_assert_int_eq(rx_stat(&rx, "accepted"), 2);
	free(batch);
	ck_assert_int_eq(rx_stop(&rx), 0);
}
END_TEST

static bool have_ipv6_loopback(void)
{
	struct sockaddr_in6 sa = {0};
	sa.sin6_family = AF_INET6;
	sa.sin6_addr = in6addr_loopback;
	int fd = socket(AF_INET6, SOCK_STREAM, 0);
	if (fd < 0)
		return false;
	bool ok = bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
	close(fd);
	return ok;
}

START_TEST(https_on_ipv6_loopback)
{
	if (!have_ipv6_loopback()) {
		fprintf(stderr, "no ::1 here: https_on_ipv6_loopback skipped\n");
		return;
	}
	const char *extra[] = {"--listen", "::1", NULL};
	struct rx rx;
	struct resp r;
	start_tls(&rx, "server.pem", "server.key", extra);
	ck_assert(rx.ipv6); /* rx_request uses [::1], which the certificate names */
	char *batch = batch_text(1, 1);
	rx_post(&rx, BATCH, batch, &r);
	ck_assert_int_eq(r.rc, CURLE_OK);
	ck_assert_int_eq(r.status, 200);
	resp_free(&r);
	ck_assert_int_eq(rx_stat(&rx, "accepted"), 1);
	free(batch);
	ck_assert_int_eq(rx_stop(&rx), 0);
}
END_TEST

/* Runs the receiver with `args` (NULL-terminated, at most 12); returns its
 * wait status and what it wrote on stderr (malloc'd). */
static int run_stderr(const char *const *args, char **err)
{
	const char *argv[16];
	size_t n = 0;
	int fds[2];
	argv[n++] = getenv("MLOG_RECEIVER");
	for (size_t i = 0; args[i]; i++) {
		ck_assert_uint_lt(n, sizeof(argv) / sizeof(argv[0]) - 1);
		argv[n++] = args[i];
	}
	argv[n] = NULL;
	ck_assert_int_eq(pipe(fds), 0);
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		int null = open("/dev/null", O_WRONLY);
		dup2(null, 1);
		dup2(fds[1], 2);
		close(fds[0]);
		execv(argv[0], (char *const *)argv);
		_exit(127);
	}
	close(fds[1]);
	size_t cap = 1 << 14, got = 0;
	char *buf = calloc(1, cap);
	ck_assert_ptr_nonnull(buf);
	ssize_t k;
	while (got < cap - 1 && (k = read(fds[0], buf + got, cap - 1 - got)) > 0)
		got += (size_t)k;
	close(fds[0]);
	int status;
	waitpid(pid, &status, 0);
	*err = buf;
	return status;
}

START_TEST(bad_tls_options_are_refused_with_the_option_and_file_named)
{
	char cert[128], key[128], ca[128], nokey[128], wrong_key[128];
	cert_path(cert, sizeof(cert), "server.pem");
	cert_path(key, sizeof(key), "server.key");
	cert_path(ca, sizeof(ca), "ca.pem");
	cert_path(nokey, sizeof(nokey), "no-such.key");
	cert_path(wrong_key, sizeof(wrong_key), "wrong.key");
	const struct {
		const char *args[8];
		const char *names[2]; /* what the message must contain */
	} cases[] = {
	    {{"--port", "0", "--tls-cert", cert, NULL}, {"--tls-key", "missing"}},
	    {{"--port", "0", "--tls-key", key, NULL}, {"--tls-cert", "missing"}},
	    {{"--port", "0", "--tls-cert", cert, "--tls-key", nokey, NULL}, {"--tls-key", nokey}},
	    {{"--port", "0", "--tls-cert", nokey, "--tls-key", key, NULL}, {"--tls-cert", nokey}},
	    /* a folder, a key given as the certificate, and the reverse */
	    {{"--port", "0", "--tls-cert", certs, "--tls-key", key, NULL}, {"--tls-cert", certs}},
	    {{"--port", "0", "--tls-cert", key, "--tls-key", key, NULL},
	     {"--tls-cert", "not a PEM certificate"}},
	    {{"--port", "0", "--tls-cert", cert, "--tls-key", ca, NULL},
	     {"--tls-key", "not a PEM private key"}},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *err;
		int st = run_stderr(cases[i].args, &err);
		ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 2, "case %zu: status 0x%x: %s", i,
		              st, err);
		for (size_t k = 0; k < 2; k++)
			ck_assert_msg(strstr(err, cases[i].names[k]) != NULL,
			              "case %zu: no '%s' in: %s", i, cases[i].names[k], err);
		free(err);
	}

	/* A key that is not the certificate's: GnuTLS says so at start-up. */
	const char *mismatch[] = {"--port", "0", "--tls-cert", cert, "--tls-key", wrong_key, NULL};
	char *err;
	int st = run_stderr(mismatch, &err);
	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 1, "status 0x%x: %s", st, err);
	ck_assert_msg(strstr(err, "--tls-key") != NULL, "no --tls-key in: %s", err);
	free(err);
}
END_TEST

TCase *tls_tcase(void)
{
	TCase *tc = tcase_create("tls");
	tcase_set_timeout(tc, 30);
	tcase_add_unchecked_fixture(tc, make_certs, remove_certs);
	tcase_add_test(tc, https_batch_from_a_client_trusting_the_ca_is_stored);
	tcase_add_test(tc, client_trusting_another_ca_is_refused_and_nothing_is_stored);
	tcase_add_test(tc, server_with_a_certificate_from_another_ca_is_refused);
	tcase_add_test(tc, fault_flags_work_the_same_over_tls);
	tcase_add_test(tc, https_on_ipv6_loopback);
	tcase_add_test(tc, bad_tls_options_are_refused_with_the_option_and_file_named);
	return tc;
}
