/* test_config.c — the agent's configuration (YAML, environment, defaults,
 * errors), endpoint normalisation, backoff and the plugin loader. */
#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backoff.h"
#include "check_main.h"
#include "codec/endpoint.h"
#include "config.h"
#include "plugin.h"

static char path[128];

static void clear_env(void)
{
	static const char *vars[] = {"MASTER_LOG_ENDPOINT", "MASTER_LOG_API_KEY", "MASTER_LOG_SPOOL_DIR",
				     "MASTER_LOG_BATCH_SIZE", "MASTER_LOG_FLUSH_INTERVAL_SECONDS",
				     "MASTER_LOG_MIN_REQUEST_INTERVAL_SECONDS", "MASTER_LOG_CA_FILE",
				     "MASTER_LOG_METRICS_LISTEN"};
	for (size_t i = 0; i < sizeof(vars) / sizeof(vars[0]); i++)
		unsetenv(vars[i]);
	setenv("MASTER_LOG_SPOOL_DIR", "/tmp/agent-test-config-spool", 1);
}

static void write_file(const char *text)
{
	snprintf(path, sizeof(path), "/tmp/agent-test-config-%ld.yaml", (long)getpid());
	FILE *f = fopen(path, "w");
	ck_assert_ptr_nonnull(f);
	fputs(text, f);
	fclose(f);
}

/* Loads text; returns 0/-1 and leaves the message in err. */
static int load(const char *text, struct agent_config *cfg, char *err, size_t len)
{
	write_file(text);
	int rc = config_load(path, NULL, cfg, err, len);
	unlink(path);
	return rc;
}

/* A key's value by its full name; fails the test when the key is unknown. */
static const struct spool_tx_value *val(const struct agent_config *c, const char *key)
{
	const struct spool_tx_value *v = config_value(c, key);
	ck_assert_msg(v != NULL, "no key '%s'", key);
	return v;
}

START_TEST(defaults_and_environment)
{
	clear_env();
	struct agent_config c;
	char err[512];
	/* an HTTP chain needs an endpoint */
	ck_assert_int_eq(config_load(NULL, NULL, &c, err, sizeof(err)), -1);
	ck_assert_msg(strstr(err, "key 'http.endpoint'") && strstr(err, "MASTER_LOG_ENDPOINT"),
	              "%s", err);
	setenv("MASTER_LOG_ENDPOINT", "https://logs.example.org/prefix/api/v1/logs/", 1);
	setenv("MASTER_LOG_API_KEY", "k-1234567890", 1);
	ck_assert_msg(config_load(NULL, NULL, &c, err, sizeof(err)) == 0, "%s", err);
	ck_assert(val(&c, "http.endpoint")->set);
	ck_assert_str_eq(val(&c, "http.endpoint")->text, "https://logs.example.org/prefix");
	ck_assert_str_eq(c.spool, "/tmp/agent-test-config-spool");
	ck_assert_int_eq(c.batch_size, 100);
	ck_assert_int_eq(c.max_batch_bytes, 5242880);
	ck_assert_int_eq(c.max_in_flight, 4);
	ck_assert_int_eq(c.max_batch_size, 1000);
	ck_assert_double_eq(c.bandwidth_limit, 0);
	ck_assert_int_eq(c.nsend_windows, 0);
	ck_assert(!c.replay_severity);
	ck_assert_double_eq(c.flush_interval, 1.0);
	ck_assert_double_eq(c.min_request_interval, 0.0);
	ck_assert_double_eq(val(&c, "http.timeouts.connect_seconds")->number, 10);
	ck_assert_double_eq(val(&c, "http.timeouts.request_seconds")->number, 30);
	ck_assert(val(&c, "http.tls.verify")->set && val(&c, "http.tls.verify")->boolean);
	ck_assert(val(&c, "http.gzip")->set && val(&c, "http.gzip")->boolean);
	ck_assert(!val(&c, "http.tls.ca_file")->set);
	ck_assert(!val(&c, "http.api_key_file")->set);
	ck_assert(!val(&c, "http.headers")->set);
	ck_assert(!val(&c, "file.path")->set);
	ck_assert(c.retry_jitter);
	ck_assert_double_eq(c.max_age, 0);
	ck_assert_int_eq(c.ntransports, 2);
	ck_assert_str_eq(c.transports[0], "http_batch");
	ck_assert_str_eq(c.transports[1], "http_single");
	ck_assert_str_eq(val(&c, "http.api_key")->text, "k-1234567890");
	/* the sections: the agent's own keys, then the transports' */
	const struct agent_section *own = config_section(&c, ""),
	                           *http = config_section(&c, "http");
	ck_assert_ptr_nonnull(own);
	ck_assert_ptr_nonnull(http);
	ck_assert(http->in_chain);
	ck_assert_int_eq(val(&c, "batch_size")->integer, 100);
	ck_assert(own->in_chain);
	ck_assert_ptr_null(config_value(&c, "endpoint"));
	ck_assert_ptr_null(config_value(&c, "http.batch_size"));
	config_free(&c);

	/* MASTER_LOG_CA_FILE: http.tls.ca_file, checked like the file's */
	setenv("MASTER_LOG_CA_FILE", "/nonexistent/ca.pem", 1);
	ck_assert_int_eq(config_load(NULL, NULL, &c, err, sizeof(err)), -1);
	ck_assert_msg(strstr(err, "MASTER_LOG_CA_FILE") && strstr(err, "key 'http.tls.ca_file'") &&
	                  strstr(err, "/nonexistent/ca.pem"),
	              "%s", err);
	char ca[128];
	snprintf(ca, sizeof(ca), "/tmp/agent-test-ca-%ld.pem", (long)getpid());
	FILE *f = fopen(ca, "w");
	ck_assert_ptr_nonnull(f);
	fputs("not really a certificate\n", f);
	fclose(f);
	setenv("MASTER_LOG_CA_FILE", ca, 1);
	ck_assert_msg(config_load(NULL, NULL, &c, err, sizeof(err)) == 0, "%s", err);
	ck_assert_str_eq(val(&c, "http.tls.ca_file")->text, ca);
	config_free(&c);
	unsetenv("MASTER_LOG_CA_FILE");
	unlink(ca);

	setenv("MASTER_LOG_BATCH_SIZE", "250", 1);
	setenv("MASTER_LOG_FLUSH_INTERVAL_SECONDS", "0.5", 1);
	setenv("MASTER_LOG_MIN_REQUEST_INTERVAL_SECONDS", "0.25", 1);
	/* the file wins over the environment */
	ck_assert_msg(load("batch_size: 7\nhttp:\n  api_key: from-the-file-0001\n", &c, err,
	                   sizeof(err)) == 0,
	              "%s", err);
	ck_assert_int_eq(c.batch_size, 7);
	ck_assert_str_eq(val(&c, "http.api_key")->text, "from-the-file-0001");
	ck_assert_double_eq(c.flush_interval, 0.5);
	ck_assert_double_eq(c.min_request_interval, 0.25);
	config_free(&c);
	/* the command line wins over both */
	struct agent_overrides ov = {.spool = "/tmp/x", .endpoint = "http://127.0.0.1:9", .log_level = "debug"};
	ck_assert_msg(config_load(NULL, &ov, &c, err, sizeof(err)) == 0, "%s", err);
	ck_assert_str_eq(c.spool, "/tmp/x");
	ck_assert_str_eq(val(&c, "http.endpoint")->text, "http://127.0.0.1:9");
	ck_assert_str_eq(c.log_level, "debug");
	config_free(&c);

	setenv("MASTER_LOG_BATCH_SIZE", "lots", 1);
	ck_assert_int_eq(config_load(NULL, NULL, &c, err, sizeof(err)), -1);
	ck_assert_msg(strstr(err, "MASTER_LOG_BATCH_SIZE") && strstr(err, "'lots'"), "%s", err);
	clear_env();
}
END_TEST

START_TEST(full_file)
{
	clear_env();
	char keyfile[128];
	snprintf(keyfile, sizeof(keyfile), "/tmp/agent-test-key-%ld", (long)getpid());
	FILE *f = fopen(keyfile, "w");
	fputs("secret-from-file-ABCD\n\n", f);
	fclose(f);
	chmod(keyfile, 0600); /* a key file must be private */
	char text[2048];
	/* the http: section twice (its keys merge), a dotted key inside it, a
	 * flow map, and the file transport's section though it is not in the
	 * chain */
	snprintf(text, sizeof(text),
	         "# a comment\n"
	         "spool: /tmp/s\n"
	         "http:\n"
	         "  endpoint: http://[::1]:8080/api/v1\n"
	         "  api_key_file: %s\n"
	         "  headers:\n"
	         "    X-Site: ship-7\n"
	         "    X-Other: \"a b\"\n"
	         "transports:\n"
	         "  - http_single\n"
	         "batch_size: 1000\n"
	         "max_batch_bytes: 1048576\n"
	         "max_in_flight: 4\n"
	         "retry:\n"
	         "  initial_seconds: 0.5\n"
	         "  max_seconds: 60\n"
	         "  multiplier: 3\n"
	         "  jitter: false\n"
	         "http:\n"
	         "  timeouts: {connect_seconds: 2, request_seconds: 5}\n"
	         "  gzip: yes\n"
	         "  tls.verify: false\n"
	         "  tls:\n"
	         "    ca_file: %s\n"
	         "file:\n"
	         "  path: /tmp/agent-test-file-out.jsonl\n"
	         "max_age_seconds: 86400\n"
	         "log:\n"
	         "  level: warning\n"
	         "  target: syslog\n"
	         "plugin_dir:\n",
	         keyfile, keyfile);
	struct agent_config c;
	char err[512];
	ck_assert_msg(load(text, &c, err, sizeof(err)) == 0, "%s", err);
	unlink(keyfile);
	ck_assert_str_eq(val(&c, "http.endpoint")->text, "http://[::1]:8080");
	/* api_key_file's value is the key read from the file */
	ck_assert_str_eq(val(&c, "http.api_key_file")->text, "secret-from-file-ABCD");
	ck_assert(!val(&c, "http.api_key")->set);
	const struct spool_tx_value *h = val(&c, "http.headers");
	ck_assert_int_eq(h->npairs, 2);
	ck_assert_str_eq(h->pairs[0].name, "X-Site");
	ck_assert_str_eq(h->pairs[0].value, "ship-7");
	ck_assert_str_eq(h->pairs[1].name, "X-Other");
	ck_assert_str_eq(h->pairs[1].value, "a b");
	ck_assert_int_eq(c.ntransports, 1);
	ck_assert_str_eq(c.transports[0], "http_single");
	ck_assert_int_eq(c.batch_size, 1000);
	ck_assert_int_eq(c.max_batch_bytes, 1048576);
	ck_assert_int_eq(c.max_in_flight, 4);
	ck_assert_double_eq(c.retry_initial, 0.5);
	ck_assert_double_eq(c.retry_max, 60);
	ck_assert_double_eq(c.retry_multiplier, 3);
	ck_assert(!c.retry_jitter);
	ck_assert_double_eq(val(&c, "http.timeouts.connect_seconds")->number, 2);
	ck_assert_double_eq(val(&c, "http.timeouts.request_seconds")->number, 5);
	ck_assert(val(&c, "http.gzip")->boolean);
	ck_assert(!val(&c, "http.tls.verify")->boolean);
	ck_assert_str_eq(val(&c, "http.tls.ca_file")->text, keyfile);
	ck_assert_str_eq(val(&c, "file.path")->text, "/tmp/agent-test-file-out.jsonl");
	ck_assert(!config_section(&c, "file")->in_chain);
	ck_assert_double_eq(c.max_age, 86400);
	ck_assert_str_eq(c.log_level, "warning");
	ck_assert_str_eq(c.log_target, "syslog");
	ck_assert_ptr_null(c.plugin_dir);
	config_free(&c);
}
END_TEST

/* Each bad file: one message naming the file, line, column and key. */
START_TEST(errors_name_file_line_column_key)
{
	clear_env();
	setenv("MASTER_LOG_ENDPOINT", "http://127.0.0.1:1", 1);
	/* a private key file and a readable PEM path, so that the rules about
	 * keys that go together are reached (each file's own checks pass) */
	char keyfile[128], both_keys[400], cert_only[400];
	snprintf(keyfile, sizeof(keyfile), "/tmp/agent-test-key2-%ld", (long)getpid());
	FILE *f = fopen(keyfile, "w");
	ck_assert_ptr_nonnull(f);
	fputs("secret-from-file-EFGH\n", f);
	fclose(f);
	chmod(keyfile, 0600);
	snprintf(both_keys, sizeof(both_keys),
	         "http:\n  api_key: abcdefgh-1234\n  api_key_file: %s\n", keyfile);
	snprintf(cert_only, sizeof(cert_only), "http:\n  tls:\n    client_cert: %s\n", keyfile);
	static const struct {
		const char *text;
		const char *where; /* ":line:col:" */
		const char *what;
	} fixed[] = {
	    {"batch_size: 10\nbatch_sise: 5\n", ":2:1:", "key 'batch_sise': unknown key"},
	    {"batch_size: ten\n", ":1:13:", "key 'batch_size': expected an integer"},
	    {"batch_size: 0\n", ":1:13:", "from 1 to 100000"},
	    {"max_in_flight: 65\n",
	     ":1:16:", "key 'max_in_flight': expected an integer from 1 to 64"},
	    {"retry:\n  initial_seconds: -1\n", ":2:20:", "key 'retry.initial_seconds'"},
	    {"retry:\n  bogus: 1\n", ":2:3:", "key 'retry.bogus': unknown key"},
	    {"retry: 5\n", ":1:8:", "key 'retry': expected a map"},
	    {"http: 5\n", ":1:7:", "key 'http': expected a map"},
	    {"http:\n  gzip: maybe\n", ":2:9:", "key 'http.gzip': expected true or false"},
	    {"http:\n  gzip: true\n  gzip: false\n", ":3:3:", "key 'http.gzip': given twice"},
	    /* the section twice: each key still at most once */
	    {"http:\n  gzip: true\nhttp:\n  gzip: false\n",
	     ":4:3:", "key 'http.gzip': given twice"},
	    /* the keys moved into their sections are not top-level keys */
	    {"gzip: true\n", ":1:1:", "key 'gzip': unknown key"},
	    {"endpoint: http://127.0.0.1:2\n", ":1:1:", "key 'endpoint': unknown key"},
	    {"http:\n  bogus: 1\n", ":2:3:", "key 'http.bogus': unknown key"},
	    {"http:\n  tls: {verify: maybe}\n",
	     ":2:17:", "key 'http.tls.verify': expected true or false"},
	    {"transports: {a: b}\n", ":1:13:", "key 'transports'"},
	    {"http:\n  headers: [a]\n", ":2:12:", "key 'http.headers'"},
	    {"http:\n  headers:\n    X-API-Key: x\n", ":3:5:", "api_key"},
	    {"http:\n  endpoint: ftp://host/x\n", "",
	     "key 'http.endpoint': endpoint 'ftp://host/x': needs an http"},
	    {"http:\n  endpoint: [unclosed\n", ":3:1:", "flow sequence"},
	    {"- a\n- b\n", ":1:1:", "expected a map of keys"},
	    {"log:\n  level: loud\n", "", "key 'log.level'"},
	    {"log:\n  target: file\n", "", "key 'log.target'"},
	    {"http:\n  api_key_file: /nonexistent/key\n", "",
	     "key 'http.api_key_file': /nonexistent/key"},
	    {"file:\n  path: /nonexistent/dir/out.jsonl\n", "",
	     "key 'file.path': /nonexistent/dir/out.jsonl"},
	    {"transports: [file]\n", "", "key 'file.path': not set"},
	    {"retry:\n  initial_seconds: 10\n  max_seconds: 1\n", "", "retry.max_seconds"},
	};
	struct {
		const char *text, *where, *what;
	} cases[sizeof(fixed) / sizeof(fixed[0]) + 2];
	size_t n = 0;
	for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++, n++) {
		cases[n].text = fixed[i].text;
		cases[n].where = fixed[i].where;
		cases[n].what = fixed[i].what;
	}
	cases[n].text = both_keys;
	cases[n].where = "";
	cases[n++].what = "key 'http.api_key': 'api_key' and 'api_key_file' are both set";
	cases[n].text = cert_only;
	cases[n].where = "";
	cases[n++].what = "give both or neither";
	for (size_t i = 0; i < n; i++) {
		struct agent_config c;
		char err[512];
		ck_assert_msg(load(cases[i].text, &c, err, sizeof(err)) == -1, "case %zu loaded", i);
		ck_assert_msg(strstr(err, path) == err, "case %zu: file not named: %s", i, err);
		ck_assert_msg(strstr(err, cases[i].where), "case %zu: no '%s' in: %s", i, cases[i].where, err);
		ck_assert_msg(strstr(err, cases[i].what), "case %zu: no '%s' in: %s", i, cases[i].what, err);
		ck_assert_msg(!strchr(err, '\n'), "case %zu: one line: %s", i, err);
		ck_assert_msg(!strstr(err, "abcdefgh-1234") && !strstr(err, "secret-from-file"),
		              "case %zu: the key leaks: %s", i, err);
	}
	unlink(keyfile);
	clear_env();
}
END_TEST

/* MASTER_LOG_API_KEY exported (for the producers, say) while the file names
 * api_key_file: the file wins, as for any key it sets, and the key comes
 * from the file; no "both set" error.  Without api_key_file in the file the
 * variable is read as before. */
START_TEST(environment_key_yields_to_key_file)
{
	clear_env();
	setenv("MASTER_LOG_ENDPOINT", "http://127.0.0.1:1", 1);
	setenv("MASTER_LOG_API_KEY", "from-environment-WXYZ", 1);
	char keyfile[128], text[400], err[512];
	snprintf(keyfile, sizeof(keyfile), "/tmp/agent-test-key3-%ld", (long)getpid());
	FILE *f = fopen(keyfile, "w");
	ck_assert_ptr_nonnull(f);
	fputs("secret-from-file-IJKL\n", f);
	fclose(f);
	chmod(keyfile, 0600);
	snprintf(text, sizeof(text), "http:\n  api_key_file: %s\n", keyfile);
	struct agent_config c;
	ck_assert_msg(load(text, &c, err, sizeof(err)) == 0, "%s", err);
	ck_assert(!val(&c, "http.api_key")->set);
	ck_assert_str_eq(val(&c, "http.api_key_file")->text, "secret-from-file-IJKL");
	config_free(&c);
	/* the file sets api_key too: the environment loses to it as well */
	ck_assert_msg(load("http:\n  api_key: from-file-abcd\n", &c, err, sizeof(err)) == 0, "%s", err);
	ck_assert_str_eq(val(&c, "http.api_key")->text, "from-file-abcd");
	config_free(&c);
	/* the file names no key: the environment's is used */
	ck_assert_msg(load("batch_size: 10\n", &c, err, sizeof(err)) == 0, "%s", err);
	ck_assert_str_eq(val(&c, "http.api_key")->text, "from-environment-WXYZ");
	ck_assert(!val(&c, "http.api_key_file")->set);
	config_free(&c);
	unlink(keyfile);
	clear_env();
}
END_TEST

START_TEST(endpoint_normalisation)
{
	static const struct {
		const char *in, *root;
	} ok[] = {
		{"http://h", "http://h"},
		{"http://h/", "http://h"},
		{"https://h:8443/api/v1", "https://h:8443"},
		{"https://h/api/v1/", "https://h"},
		{"https://h/api/v1/logs", "https://h"},
		{"https://h/api/v1/logs/", "https://h"},
		{"https://h/api/v1/logs/batch", "https://h"},
		{"https://h/prefix/api/v1", "https://h/prefix"},
		{"https://h/prefix/", "https://h/prefix"},
		{"HTTP://127.0.0.1:80//", "HTTP://127.0.0.1:80"},
		{"http://[::1]:9/api/v1", "http://[::1]:9"},
		{"http://user:pw@h.example/api/v1", "http://user:pw@h.example"},
	};
	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		char *root, err[256];
		ck_assert_msg(spool_endpoint_normalise(ok[i].in, &root, err, sizeof(err)) == 0,
		              "%s: %s", ok[i].in, err);
		ck_assert_str_eq(root, ok[i].root);
		free(root);
	}
	static const char *bad[] = {"host.example/api/v1", "ftp://h/", "http://", "http:///x", "http://h:0",
				    "http://h:99999", "http://h:x", "http://h/a?b=1", "http://h/#f", "http://h h/",
				    "mailto:x@y", "", "http://[::1/"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char *root, err[256];
		ck_assert_msg(spool_endpoint_normalise(bad[i], &root, err, sizeof(err)) == -EINVAL,
		              "accepted '%s'", bad[i]);
		ck_assert_ptr_null(root);
		ck_assert(strstr(err, "endpoint"));
	}
}
END_TEST

START_TEST(rates)
{
	char why[200];
	ck_assert_double_eq(config_parse_rate("0", why, sizeof(why)), 0);
	ck_assert_double_eq(config_parse_rate(NULL, why, sizeof(why)), 0);
	ck_assert_double_eq(config_parse_rate("62500", why, sizeof(why)), 62500);
	ck_assert_double_eq(config_parse_rate("500k", why, sizeof(why)), 500000);
	ck_assert_double_eq(config_parse_rate("1.5M", why, sizeof(why)), 1500000);
	static const char *const bad[] = {"", "k", "fast", "-1", "1e300", "10G", "5 k", "50", " 100", "nan"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		why[0] = '\0';
		ck_assert_msg(config_parse_rate(bad[i], why, sizeof(why)) < 0, "'%s' accepted", bad[i]);
		ck_assert_msg(why[0] != '\0', "no reason for '%s'", bad[i]);
	}
}
END_TEST

/* metrics_listen: loopback addresses with a port, nothing else. */
START_TEST(metrics_listen_loopback_only)
{
	char why[400];
	struct sockaddr_storage sa;
	socklen_t len;
	ck_assert_int_eq(config_parse_listen("127.0.0.1:9464", &sa, &len, why, sizeof(why)), 0);
	ck_assert_int_eq(sa.ss_family, AF_INET);
	ck_assert_int_eq(ntohs(((struct sockaddr_in *)&sa)->sin_port), 9464);
	ck_assert_int_eq(config_parse_listen("127.8.9.10:0", &sa, &len, why, sizeof(why)), 0);
	ck_assert_int_eq(config_parse_listen("[::1]:9464", &sa, &len, why, sizeof(why)), 0);
	ck_assert_int_eq(sa.ss_family, AF_INET6);
	ck_assert_int_eq(len, sizeof(struct sockaddr_in6));
	static const char *const bad[] = {"0.0.0.0:9464", "10.1.2.3:9464", "[::]:9464", "[::2]:1",
					  "::1:9464", "127.0.0.1", "127.0.0.1:", "127.0.0.1:x",
					  "127.0.0.1:65536", "127.0.0.1:-1", "localhost:9464", "[::1]9464", ":9464"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		why[0] = '\0';
		ck_assert_msg(config_parse_listen(bad[i], &sa, &len, why, sizeof(why)) != 0, "'%s' accepted",
			      bad[i]);
		ck_assert_msg(strstr(why, bad[i]), "the reason for '%s' does not name it: %s", bad[i], why);
	}
	/* the key: off unless set; set from the environment too */
	clear_env();
	setenv("MASTER_LOG_ENDPOINT", "http://127.0.0.1:1", 1);
	struct agent_config c;
	char err[600];
	ck_assert_msg(config_load(NULL, NULL, &c, err, sizeof(err)) == 0, "%s", err);
	ck_assert(!c.metrics_listen || !*c.metrics_listen);
	config_free(&c);
	setenv("MASTER_LOG_METRICS_LISTEN", "0.0.0.0:9464", 1);
	ck_assert_int_eq(config_load(NULL, NULL, &c, err, sizeof(err)), -1);
	ck_assert_msg(strstr(err, "metrics_listen") && strstr(err, "not a loopback address"), "%s", err);
	setenv("MASTER_LOG_METRICS_LISTEN", "127.0.0.1:9464", 1);
	ck_assert_msg(config_load(NULL, NULL, &c, err, sizeof(err)) == 0, "%s", err);
	ck_assert_str_eq(c.metrics_listen, "127.0.0.1:9464");
	config_free(&c);
	clear_env();
}
END_TEST

START_TEST(key_redaction)
{
	char buf[64];
	config_redact_key("super-secret-key-9f3a", buf, sizeof(buf));
	ck_assert_str_eq(buf, "...9f3a");
	config_redact_key("short", buf, sizeof(buf));
	ck_assert(!strstr(buf, "short") && !strstr(buf, "hort"));
	config_redact_key(NULL, buf, sizeof(buf));
	ck_assert_str_eq(buf, "(none)");
}
END_TEST

START_TEST(backoff_growth_cap_jitter)
{
	struct backoff b;
	backoff_init(&b, 1, 10, 2, false, 1);
	ck_assert_double_eq(backoff_next(&b), 1);
	ck_assert_double_eq(backoff_next(&b), 2);
	ck_assert_double_eq(backoff_next(&b), 4);
	ck_assert_double_eq(backoff_next(&b), 8);
	ck_assert_double_eq(backoff_next(&b), 10);
	for (int i = 0; i < 2000; i++)
		ck_assert_double_eq(backoff_next(&b), 10);
	backoff_reset(&b);
	ck_assert_double_eq(backoff_next(&b), 1);
	backoff_init(&b, 1, 10, 2, true, 7);
	double lo = 1e9, hi = 0;
	for (int i = 0; i < 1000; i++) {
		double d = backoff_next(&b);
		ck_assert(d >= 0 && d <= 10);
		if (i > 10) {
			lo = d < lo ? d : lo;
			hi = d > hi ? d : hi;
		}
	}
	ck_assert(lo < 2 && hi > 8); /* full jitter spreads from 0 to the cap */
}
END_TEST

static void test_log(void *ctx, int level, const char *fmt, ...)
{
	(void)ctx;
	(void)level;
	(void)fmt;
}

/* Built-in transports resolve by name with no folder at all; any other
 * name is <name>.so from the folders, checked for its entry and ABI. */
START_TEST(plugin_loader)
{
	const char *dir = getenv("TX_TEST_DIR");
	ck_assert_msg(dir && *dir, "TX_TEST_DIR is not set (run through meson test)");
	struct plugin p;
	char err[1024];
	static const char *names[] = {"http_batch", "http_single", "file"};
	for (int i = 0; i < 3; i++) {
		const char *none[] = {NULL};
		ck_assert_msg(plugin_load(names[i], none, 0, &p, err, sizeof(err)) == 0, "%s", err);
		ck_assert_str_eq(p.tx->name, names[i]);
		ck_assert_int_eq(p.tx->abi_version, SPOOL_TRANSPORT_ABI);
		ck_assert_ptr_null(p.dl); /* nothing was loaded */
		plugin_unload(&p);
		plugin_unload(&p); /* idempotent */
	}
	ck_assert_uint_eq(plugin_nbuiltin, 3);
	for (size_t i = 0; i < plugin_nbuiltin; i++)
		ck_assert_str_eq(plugin_builtin[i]->name, names[i]);
	plugin_unload(NULL);

	const char *dirs[] = {"/nonexistent", NULL, dir};
	ck_assert_int_eq(plugin_load("carrier_pigeon", dirs, 3, &p, err, sizeof(err)), -1);
	ck_assert_msg(strstr(err, "carrier_pigeon.so") && strstr(err, "/nonexistent") && strstr(err, dir), "%s", err);
	/* an ABI-2 transport from a shared object, found in the last folder */
	ck_assert_msg(plugin_load("tx_test", dirs, 3, &p, err, sizeof(err)) == 0, "%s", err);
	ck_assert_ptr_nonnull(p.dl);
	ck_assert_str_eq(p.tx->name, "tx_test");
	ck_assert_str_eq(p.tx->section, "tx_test");
	ck_assert_int_eq(p.tx->abi_version, SPOOL_TRANSPORT_ABI);
	ck_assert_msg(strstr(p.path, dir) && strstr(p.path, "tx_test.so"), "%s", p.path);
	plugin_unload(&p);
	/* an ABI-1 one is refused, naming the file and both versions */
	const char *bad = getenv("BAD_ABI_PLUGIN");
	ck_assert_msg(bad && *bad, "BAD_ABI_PLUGIN is not set (run through meson test)");
	ck_assert_int_eq(plugin_load(bad, dirs, 3, &p, err, sizeof(err)), -1);
	ck_assert_msg(strstr(err, bad) && strstr(err, "ABI version 1,") && strstr(err, "needs 2"),
	              "%s", err);
	ck_assert_ptr_null(p.dl);
	ck_assert_ptr_null(p.tx);
	/* a shared object that is no transport */
	char lib[512];
	snprintf(lib, sizeof(lib), "%s/libspool/queue/libspool.so", getenv("SPOOL_TEST_BUILD_DIR"));
	ck_assert_int_eq(plugin_load(lib, dirs, 3, &p, err, sizeof(err)), -1);
	ck_assert_msg(strstr(err, lib) && strstr(err, "spool_transport_entry"), "%s", err);
	/* the file transport refuses to start without file.path: its check()
	 * blames that row, and create() fails */
	ck_assert_int_eq(plugin_load("file", dirs, 3, &p, err, sizeof(err)), 0);
	ck_assert(p.tx->check != NULL);
	ck_assert_uint_eq(p.tx->noptions, 1);
	struct spool_tx_value unset[1] = {{0}};
	size_t blamed = 99;
	char why[256] = "";
	ck_assert_int_eq(p.tx->check(unset, 1, &blamed, why, sizeof(why)), -1);
	ck_assert_uint_eq(blamed, 0);
	ck_assert_str_eq(p.tx->options[blamed].key, "path");
	ck_assert_msg(strstr(why, "not set"), "%s", why);
	struct spool_tx_config txc = {.struct_size = sizeof(txc),
	                              .name = "file",
	                              .values = unset,
	                              .nvalues = 1,
	                              .max_in_flight = 1,
	                              .log = test_log};
	void *state = NULL;
	err[0] = '\0';
	ck_assert_int_lt(p.tx->create(&txc, &state, err, sizeof(err)), 0);
	ck_assert_ptr_null(state);
	ck_assert_msg(err[0], "create() failed without a message");
	plugin_unload(&p);
}
END_TEST

/* conf/spool-agent.yaml is a valid file and documents every key. */
START_TEST(example_file_documents_every_key)
{
	clear_env();
	char conf[512];
	snprintf(conf, sizeof(conf), "%s/conf/spool-agent.yaml", getenv("SPOOL_SOURCE_DIR"));
	struct agent_config c;
	char err[512];
	/* the example's api_key_file does not exist here: everything before it
	 * must parse */
	int rc = config_load(conf, NULL, &c, err, sizeof(err));
	if (rc == 0)
		config_free(&c);
	else
		ck_assert_msg(strstr(err, "api_key_file"), "%s", err);
	FILE *f = fopen(conf, "r");
	ck_assert_ptr_nonnull(f);
	char text[16384];
	size_t n = fread(text, 1, sizeof(text) - 1, f);
	fclose(f);
	text[n] = '\0';
	for (size_t i = 0; i < config_key_count(); i++) {
		const char *k = config_key_name(i);
		const char *leaf = strrchr(k, '.') ? strrchr(k, '.') + 1 : k;
		char pat[128];
		snprintf(pat, sizeof(pat), "%s:", leaf);
		ck_assert_msg(strstr(text, pat), "conf/spool-agent.yaml does not document '%s'", k);
	}
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("agent-config");
	TCase *tc = tcase_create("config");
	tcase_add_test(tc, defaults_and_environment);
	tcase_add_test(tc, full_file);
	tcase_add_test(tc, errors_name_file_line_column_key);
	tcase_add_test(tc, environment_key_yields_to_key_file);
	tcase_add_test(tc, endpoint_normalisation);
	tcase_add_test(tc, rates);
	tcase_add_test(tc, key_redaction);
	tcase_add_test(tc, backoff_growth_cap_jitter);
	tcase_add_test(tc, plugin_loader);
	tcase_add_test(tc, example_file_documents_every_key);
	tcase_add_test(tc, metrics_listen_loopback_only);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return tc_run(suite());
}
