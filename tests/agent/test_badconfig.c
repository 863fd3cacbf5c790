/* test_badconfig.c — the bad-configuration sweep.  Every key of the agent's
 * options table (read through config_key_info(), so a key added to the table
 * is swept without touching this file) gets values of the wrong type and
 * wrong values for its type and kind; every key with a MASTER_LOG_* variable
 * gets bad values through the environment; then the files themselves:
 * missing, unreadable, a directory, empty, YAML syntax errors, duplicate and
 * unknown keys, a list or a second document.  Each case runs the real
 * spool-agent (--once, and again with --check-config) against a spool with
 * events and a real mlog-receiver: it must exit 2 with exactly one line on
 * stderr naming the file (or variable or option), the key and the fault, and
 * the receiver must see no request at all. */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <regex.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check_main.h"
#include "config.h"
#include "harness.h"

#define NOBODY 65534 /* owner of files "not owned by the agent's user" when run as root */

struct bcase {
	char name[160];    /* for failure messages */
	char *yaml;        /* file text; NULL: leave the file as the case set it up */
	char key[96];      /* the key the message must name ("" for file-level faults) */
	const char *env;   /* variable to set for the run, or NULL */
	char envval[2100]; /* its value */
	const char *opt;   /* a command-line option to add (with optval) */
	char optval[256];
	const char *secret; /* must not appear in the message */
	bool position;      /* the message must hold FILE:LINE:COL */
	bool no_file;       /* the file need not be named (command-line faults) */
	const char *what;   /* text the message must hold, or NULL */
};

struct sweep {
	struct th_dir d;
	struct th_rx rx;
	char scratch[400]; /* a folder for files the cases need */
	struct bcase *c;
	size_t n, cap;
	size_t runs;
};

static struct bcase *add(struct sweep *s, const char *key, const char *name)
{
	if (s->n == s->cap) {
		s->cap = s->cap ? s->cap * 2 : 256;
		s->c = realloc(s->c, s->cap * sizeof(*s->c));
		ck_assert_ptr_nonnull(s->c);
	}
	struct bcase *c = &s->c[s->n++];
	memset(c, 0, sizeof(*c));
	snprintf(c->key, sizeof(c->key), "%s", key);
	snprintf(c->name, sizeof(c->name), "%s: %s", key[0] ? key : "file", name);
	c->position = true;
	return c;
}

/* The base file: the spool and the receiver (http.endpoint, in the http:
 * section), unless the case's own key is one of them (then the case's
 * fragment sets it).  A fragment may open the http: section again: a
 * section may come twice, its keys merge. */
static char *compose(const struct sweep *s, const char *key, const char *fragment)
{
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);
	if (strcmp(key, "spool") != 0)
		fprintf(f, "spool: %s\n", s->d.spool);
	if (strcmp(key, "http.endpoint") != 0)
		fprintf(f, "http:\n  endpoint: %s\n", s->rx.url);
	fputs(fragment, f);
	fclose(f);
	return text;
}

/* key: value, nested at the first dot of the key ("retry.max_seconds";
 * "http.tls.verify" becomes `http:` then `  tls.verify: value`, which the
 * agent reads as the same key). */
static void fragment(char *buf, size_t len, const char *key, const char *value)
{
	const char *dot = strchr(key, '.');
	if (dot)
		snprintf(buf, len, "%.*s:\n  %s: %s\n", (int)(dot - key), key, dot + 1, value);
	else
		snprintf(buf, len, "%s: %s\n", key, value);
}

static struct bcase *add_value(struct sweep *s, const char *key, const char *value, const char *why)
{
	char frag[4096], name[160];
	fragment(frag, sizeof(frag), key, value);
	snprintf(name, sizeof(name), "%s (%.60s)", why, value);
	struct bcase *c = add(s, key, name);
	c->yaml = compose(s, key, frag);
	return c;
}

static void make_file(const char *path, const char *text, mode_t mode)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode);
	ck_assert_msg(fd >= 0, "%s: %s", path, strerror(errno));
	ck_assert_int_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	ck_assert_int_eq(fchmod(fd, mode), 0);
	close(fd);
}

/* A scratch file for a case; returns its path (static storage per call). */
static const char *scratch_file(struct sweep *s, const char *name, const char *text, mode_t mode)
{
	static char paths[32][512];
	static unsigned next;
	char *p = paths[next++ % 32];
	snprintf(p, 512, "%s/%s", s->scratch, name);
	make_file(p, text, mode);
	return p;
}

/* ---- cases from the table ---- */

static void type_cases(struct sweep *s, const struct config_key_info *k)
{
	static const char *const ints[] = {"ten", "[1, 2]", "{n: 1}", "true",
	                                   "1.5", "\"10\"", "0x10",   "1e3"};
	static const char *const secs[] = {"soon", "[1]",  "{s: 1}", "true", "\"1\"",
	                                   ".inf", ".nan", "0x10",   "1s"};
	static const char *const bools[] = {"maybe", "2", "[true]", "{b: true}", "\"true\"", "1.0"};
	static const char *const strs[] = {"[a, b]", "{a: b}", "true", "\"\""};
	static const char *const lists[] = {"{a: b}", "[]", "[a, [b]]", "[\"\"]",
	                                    "[a, b, c, d, e, f, g, h, i]"};
	static const char *const heads[] = {"x",
	                                    "[a]",
	                                    "{\"bad name\": v}",
	                                    "{X-API-Key: k}",
	                                    "{X-A: [1]}",
	                                    "{X-A: \"a\\nb\"}",
	                                    "{X-A: 1, x-a: 2}",
	                                    "{\"\": v}"};
	const char *const *v = NULL;
	size_t n = 0;
#define USE(a) (v = (a), n = sizeof(a) / sizeof((a)[0]))
	switch (k->type) {
	case CONFIG_INT:
		USE(ints);
		break;
	case CONFIG_SECONDS:
		USE(secs);
		break;
	case CONFIG_BOOL:
		USE(bools);
		break;
	case CONFIG_STR:
		USE(strs);
		break;
	case CONFIG_LIST:
		USE(lists);
		break;
	case CONFIG_HEADERS:
		USE(heads);
		break;
	}
#undef USE
	ck_assert_msg(n > 0, "key %s: a type the sweep does not know", k->key);
	for (size_t i = 0; i < n; i++) {
		/* no send windows at all is the default, not an error */
		if (k->kind == CONFIG_K_WINDOWS && strcmp(v[i], "[]") == 0)
			continue;
		add_value(s, k->key, v[i], "wrong type");
	}
}

static void range_cases(struct sweep *s, const struct config_key_info *k)
{
	char v[64];
	if (k->type != CONFIG_INT && k->type != CONFIG_SECONDS)
		return;
	add_value(s, k->key, "-1", "negative");
	if (k->min > 0)
		add_value(s, k->key, "0", "zero, not allowed");
	if (k->min > 0 && k->type == CONFIG_SECONDS) {
		snprintf(v, sizeof(v), "%.17g", k->min / 2);
		add_value(s, k->key, v, "below the minimum");
	}
	if (k->type == CONFIG_INT)
		snprintf(v, sizeof(v), "%.0f", k->max + 1);
	else
		snprintf(v, sizeof(v), "%.17g", k->max * 2);
	add_value(s, k->key, v, "above the maximum");
	add_value(s, k->key, "99999999999999999999999", "overflow");
}

static void secret_case(struct sweep *s, const char *key, const char *value, const char *secret,
                        const char *why)
{
	struct bcase *c = add_value(s, key, value, why);
	c->secret = secret;
}

static void kind_cases(struct sweep *s, const struct config_key_info *k)
{
	struct bcase *c;
	switch (k->kind) {
	case CONFIG_K_URL:
		add_value(s, k->key, "ftp://127.0.0.1/", "unknown scheme");
		add_value(s, k->key, "127.0.0.1:8000", "no scheme");
		add_value(s, k->key, "http://", "no host");
		add_value(s, k->key, "http://127.0.0.1:99999", "port out of range");
		add_value(s, k->key, "http://127.0.0.1/a?b=1", "query string");
		break;
	case CONFIG_K_SECRET: {
		secret_case(s, k->key, "\"Zq7-ctrl\\x01-SECRET-0000\"", "Zq7-ctrl",
		            "control character");
		secret_case(s, k->key, "\"Zq7 space SECRET 0000\"", "Zq7 space", "white space");
		secret_case(s, k->key, "\"Zq7-crlf-SECRET\\r\\nX-Injected: 1\"", "Zq7-crlf",
		            "header injection");
		static char longkey[CONFIG_KEY_MAX + 64];
		memset(longkey, 'K', sizeof(longkey) - 1);
		memcpy(longkey, "Zq7long", 7);
		secret_case(s, k->key, longkey, "Zq7long", "too long");
		break;
	}
	case CONFIG_K_SECRET_FILE: {
		add_value(s, k->key, "/nonexistent/api-key", "missing file");
		add_value(s, k->key, s->scratch, "a directory");
		const char *p = scratch_file(s, "key-0644", "Zq7-perm-SECRET-0001\n", 0644);
		c = add_value(s, k->key, p, "group and world readable");
		c->secret = "Zq7-perm";
		c->what = "chmod 600";
		p = scratch_file(s, "key-0640", "Zq7-perm-SECRET-0002\n", 0640);
		c = add_value(s, k->key, p, "group readable");
		c->secret = "Zq7-perm";
		c->what = "mode 0640";
		p = scratch_file(s, "key-0602", "Zq7-perm-SECRET-0003\n", 0602);
		c = add_value(s, k->key, p, "world writable");
		c->what = "chmod 600";
		if (geteuid() == 0) {
			p = scratch_file(s, "key-other", "Zq7-owner-SECRET-0004\n", 0600);
			ck_assert_int_eq(chown(p, NOBODY, NOBODY), 0);
			c = add_value(s, k->key, p, "owned by another user");
			c->secret = "Zq7-owner";
			c->what = "not by the agent's user";
		}
		add_value(s, k->key, scratch_file(s, "key-empty", "\n\n", 0600), "empty key file");
		c = add_value(s, k->key,
		              scratch_file(s, "key-2lines", "Zq7-two-lines\nsecond\n", 0600),
		              "two lines");
		c->secret = "Zq7-two";
		c = add_value(s, k->key,
		              scratch_file(s, "key-ctrl", "Zq7-ctrl-in-file\x01x\n", 0600),
		              "control character");
		c->secret = "Zq7-ctrl-in";
		static char big[6000];
		memset(big, 'B', sizeof(big) - 1);
		add_value(s, k->key, scratch_file(s, "key-big", big, 0600), "too big");
		break;
	}
	case CONFIG_K_READ_FILE:
		add_value(s, k->key, "/nonexistent/file.pem", "missing file");
		add_value(s, k->key, s->scratch, "a directory");
		break;
	case CONFIG_K_DIR:
		add_value(s, k->key, "/nonexistent/plugins", "missing directory");
		add_value(s, k->key, scratch_file(s, "plain-file", "x\n", 0600),
		          "a file, not a directory");
		break;
	case CONFIG_K_OUT_FILE:
		add_value(s, k->key, "/nonexistent/dir/out.jsonl", "folder missing");
		add_value(s, k->key, s->scratch, "a directory");
		break;
	case CONFIG_K_SPOOL:
		add_value(s, k->key, "/dev/null", "not a directory");
		add_value(s, k->key, "/dev/null/spool", "under a file");
		break;
	case CONFIG_K_CHOICE:
		c = add_value(s, k->key, "loud", "unknown choice");
		c->what = "is not one of";
		add_value(s, k->key, "5", "a number for a choice");
		break;
	case CONFIG_K_NAMES:
		c = add_value(s, k->key, "[carrier_pigeon]", "unknown transport");
		c->position = false; /* found by the plugin loader, after the file */
		c->what = "carrier_pigeon.so";
		add_value(s, k->key, "[http_batch, http_batch]", "named twice");
		add_value(s, k->key, "[\"http batch\"]", "space in a name");
		break;
	case CONFIG_K_LISTEN:
		c = add_value(s, k->key, "0.0.0.0:9464", "every address");
		c->what = "0.0.0.0 is not a loopback address";
		c = add_value(s, k->key, "192.0.2.7:9464", "a remote address");
		c->what = "not a loopback address";
		c = add_value(s, k->key, "\"[::]:9464\"", "every IPv6 address");
		c->what = "not a loopback address";
		c = add_value(s, k->key, "127.0.0.1", "no port");
		c->what = "expected ADDR:PORT";
		c = add_value(s, k->key, "127.0.0.1:99999", "port out of range");
		c->what = "port '99999' is not a number from 0 to 65535";
		c = add_value(s, k->key, "localhost:9464", "a name, not an address");
		c->what = "not a numeric address";
		add_value(s, k->key, "\"[::1:9464\"", "unclosed bracket");
		break;
	case CONFIG_K_RATE:
		c = add_value(s, k->key, "fast", "not a number");
		c->what = "not a rate";
		add_value(s, k->key, "-5k", "negative");
		add_value(s, k->key, "10G", "unknown suffix");
		add_value(s, k->key, "50", "below 100 bytes per second");
		break;
	case CONFIG_K_WINDOWS:
		add_value(s, k->key, "[\"25:00-26:00\"]", "hour out of range");
		add_value(s, k->key, "[\"01:00\"]", "no end");
		add_value(s, k->key, "[\"01:00-01:00\"]", "empty window");
		add_value(s, k->key, "[\"1-5\"]", "no minutes");
		break;
	case CONFIG_K_TEXT:
		break;
	}
}

static void env_cases(struct sweep *s, const struct config_key_info *k)
{
	static const char *const bad_int[] = {"lots", "-1", "1.5", "0x10"};
	static const char *const bad_secs[] = {"soon", "-1", "inf", "nan"};
	const char *const *v = NULL;
	size_t n = 0;
	if (!k->env)
		return;
	if (k->type == CONFIG_INT)
		v = bad_int, n = 4;
	else if (k->type == CONFIG_SECONDS)
		v = bad_secs, n = 4;
	for (size_t i = 0; i < n; i++) {
		struct bcase *c = add(s, k->key, "environment");
		c->yaml = compose(s, "", "");
		c->env = k->env;
		snprintf(c->envval, sizeof(c->envval), "%s", v[i]);
		snprintf(c->name, sizeof(c->name), "%s=%s", k->env, v[i]);
		c->position = false;
	}
	struct bcase *c = NULL;
	switch (k->kind) {
	case CONFIG_K_URL:
		c = add(s, k->key, "environment URL");
		snprintf(c->envval, sizeof(c->envval), "gopher://127.0.0.1/");
		break;
	case CONFIG_K_SPOOL:
		c = add(s, k->key, "environment spool");
		snprintf(c->envval, sizeof(c->envval), "/dev/null");
		break;
	case CONFIG_K_SECRET:
		c = add(s, k->key, "environment key");
		snprintf(c->envval, sizeof(c->envval), "Zq7-env key-SECRET");
		c->secret = "Zq7-env";
		break;
	case CONFIG_K_READ_FILE:
		c = add(s, k->key, "environment file");
		snprintf(c->envval, sizeof(c->envval), "/nonexistent/from-the-environment.pem");
		c->what = "/nonexistent/from-the-environment.pem";
		break;
	default:
		break;
	}
	if (c) {
		/* the base file leaves the key out so the variable counts */
		char frag[600] = "";
		if (k->kind == CONFIG_K_URL)
			snprintf(frag, sizeof(frag), "spool: %s\n", s->d.spool);
		else if (k->kind == CONFIG_K_SPOOL)
			snprintf(frag, sizeof(frag), "http:\n  endpoint: %s\n", s->rx.url);
		c->yaml = k->kind == CONFIG_K_SECRET || k->kind == CONFIG_K_READ_FILE
		              ? compose(s, "", "")
		              : strdup(frag);
		c->env = k->env;
		c->position = false;
	}
}

/* Sections ("retry", "http", "http.tls", ...: every prefix of a dotted key)
 * given as something other than a map, and an unknown key in each. */
static void section_cases(struct sweep *s)
{
	char done[1024] = "|";
	for (size_t i = 0; i < config_key_count(); i++) {
		const char *k = config_key_name(i);
		for (const char *dot = strchr(k, '.'); dot; dot = strchr(dot + 1, '.')) {
			char sec[96], mark[100];
			snprintf(sec, sizeof(sec), "%.*s", (int)(dot - k), k);
			snprintf(mark, sizeof(mark), "|%s|", sec);
			if (strstr(done, mark))
				continue;
			strncat(done, mark + 1, sizeof(done) - strlen(done) - 1);
			char frag[256], full[128];
			fragment(frag, sizeof(frag), sec, "5");
			add(s, sec, "a number for a section")->yaml = compose(s, "", frag);
			fragment(frag, sizeof(frag), sec, "[a, b]");
			add(s, sec, "a list for a section")->yaml = compose(s, "", frag);
			snprintf(full, sizeof(full), "%s.no_such_key", sec);
			fragment(frag, sizeof(frag), full, "1");
			add(s, full, "unknown key in a section")->yaml = compose(s, "", frag);
		}
	}
}

/* Faults of the file as a whole. */
static void file_cases(struct sweep *s)
{
	/* raw: the text alone (no base lines in front, so the line numbers
	 * are the case's own); pos: the message holds FILE:LINE:COL */
	static const struct {
		const char *name, *text, *key, *what;
		bool raw, pos;
	} t[] = {
	    {"empty file", "", "", "empty", true, false},
	    {"only comments", "# nothing here\n\n", "", "empty", true, false},
	    {"only null", "~\n", "", "empty", true, false},
	    {"a list", "- a\n- b\n", "", "expected a map of keys at the top", true, true},
	    {"a single value", "hello\n", "", "expected a map of keys at the top", true, true},
	    {"bad indentation", "retry:\n  initial_seconds: 1\n   max_seconds: 2\n", "", NULL, true,
	     true},
	    {"unclosed quote", "http:\n  api_key: \"abc\nbatch_size: 1\n", "", NULL, true, true},
	    {"unclosed flow", "transports: [http_batch\n", "", NULL, true, true},
	    {"tab indentation", "retry:\n\tinitial_seconds: 1\n", "", NULL, true, true},
	    {"duplicate key", "batch_size: 10\nbatch_size: 20\n", "batch_size", "given twice",
	     false, true},
	    {"duplicate key, first empty", "http:\n  gzip:\n  gzip: true\n", "http.gzip",
	     "given twice", false, true},
	    /* the base file's http: section comes first, then this one */
	    {"duplicate key in a section given twice", "http:\n  endpoint: http://127.0.0.1:1\n",
	     "http.endpoint", "given twice", false, true},
	    {"duplicate nested key", "retry:\n  jitter: true\n  jitter: false\n", "retry.jitter",
	     "given twice", false, true},
	    {"dotted and nested", "retry.jitter: true\nretry:\n  jitter: false\n", "retry.jitter",
	     "given twice", false, true},
	    {"unknown key", "batch_sise: 5\n", "batch_sise", "unknown key", false, true},
	    {"unknown key, no value", "colour:\n", "colour", "unknown key", false, true},
	    {"two documents", "batch_size: 5\n---\nbatch_size: 6\n", "", "second YAML document",
	     false, true},
	    {"bad second document", "batch_size: 5\n---\n[\n", "", NULL, false, true},
	    {"not UTF-8", "http:\n  api_key: \xff\xfe\n", "", NULL, false, true},
	    {"a map as a key", "? {a: b}\n: 1\n", "", "plain names", false, true},
	    {"an agent's key in a section", "http:\n  batch_size: 5\n", "http.batch_size",
	     "unknown key", false, true},
	    {"a transport's key at the top", "endpoint: http://127.0.0.1:1\n", "endpoint",
	     "unknown key", false, true},
	    {"retry max below initial", "retry:\n  initial_seconds: 10\n  max_seconds: 1\n",
	     "retry.max_seconds", "smaller", false, true},
	    {"file transport without path", "transports: [file]\n", "file.path", "not set", false,
	     false},
	};
	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		struct bcase *c = add(s, t[i].key, t[i].name);
		c->what = t[i].what;
		c->yaml = t[i].raw ? strdup(t[i].text) : compose(s, "", t[i].text);
		c->position = t[i].pos;
	}
	/* the key the HTTP transports need */
	struct bcase *c = add(s, "http.endpoint", "endpoint missing");
	char frag[600];
	snprintf(frag, sizeof(frag), "spool: %s\n", s->d.spool);
	c->yaml = strdup(frag);
	c->position = false;
	c->what = "not set";
	/* keys that go together: each file exists and is private, so that the
	 * rule itself is what the message is about */
	const char *key = scratch_file(s, "key-pair", "Zq7-pair-SECRET-0005\n", 0600);
	c = add(s, "http.api_key", "api_key and api_key_file");
	snprintf(frag, sizeof(frag), "http:\n  api_key: abcdefgh-1234\n  api_key_file: %s\n", key);
	c->yaml = compose(s, "", frag);
	c->what = "both set";
	c->secret = "Zq7-pair";
	const char *pem = scratch_file(s, "client.pem", "not really a certificate\n", 0600);
	c = add(s, "http.tls.client_cert", "client cert without key");
	snprintf(frag, sizeof(frag), "http:\n  tls:\n    client_cert: %s\n", pem);
	c->yaml = compose(s, "", frag);
	c->what = "give both or neither";
	c = add(s, "http.tls.client_key", "client key without cert");
	snprintf(frag, sizeof(frag), "http:\n  tls.client_key: %s\n", pem);
	c->yaml = compose(s, "", frag);
	c->what = "give both or neither";
}

/* Command-line values are checked like the file's. */
static void option_cases(struct sweep *s)
{
	static const struct {
		const char *opt, *val, *key;
	} t[] = {
	    {"--spool", "/dev/null", "spool"},
	    {"--spool", "", "spool"},
	    {"--endpoint", "ftp://127.0.0.1/", "http.endpoint"},
	    {"--endpoint", "", "http.endpoint"},
	    {"--log-level", "loud", "log.level"},
	};
	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		struct bcase *c = add(s, t[i].key, t[i].opt);
		c->yaml = compose(s, "", "");
		c->opt = t[i].opt;
		snprintf(c->optval, sizeof(c->optval), "%s", t[i].val);
		c->position = false;
		c->no_file = true;
		c->what = t[i].opt;
	}
}

/* ---- running ---- */

/* Runs spool-agent -c path [mode] [opt val] as uid (or ourselves: -1) with
 * one variable set; returns the exit status, stderr in log. */
static int run_agent(const char *path, const char *mode, const struct bcase *c, const char *log,
                     int uid)
{
	const char *argv[12];
	size_t n = 0;
	argv[n++] = th_prog("SPOOL_AGENT");
	argv[n++] = "-c";
	argv[n++] = path;
	argv[n++] = mode;
	if (c && c->opt) {
		argv[n++] = c->opt;
		argv[n++] = c->optval;
	}
	argv[n] = NULL;
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0666);
		int nul = open("/dev/null", O_RDWR);
		if (fd < 0 || nul < 0)
			_exit(126);
		dup2(fd, 2);
		dup2(nul, 1);
		dup2(nul, 0);
		if (c && c->env)
			setenv(c->env, c->envval, 1);
		if (uid >= 0 && (setgid((gid_t)uid) != 0 || setuid((uid_t)uid) != 0))
			_exit(125);
		execv(argv[0], (char *const *)argv);
		_exit(127);
	}
	double end = th_now() + 60;
	int st;
	while (waitpid(pid, &st, WNOHANG) == 0) {
		if (th_now() > end) {
			kill(pid, SIGKILL);
			waitpid(pid, &st, 0);
			ck_abort_msg("spool-agent did not exit");
		}
		usleep(2000);
	}
	return WIFEXITED(st) ? WEXITSTATUS(st) : -WTERMSIG(st);
}

static char *slurp(const char *path)
{
	FILE *f = fopen(path, "r");
	ck_assert_ptr_nonnull(f);
	static char buf[16384];
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	return buf;
}

/* Failures are collected, so one run lists the cases that fail (the first
 * few in full: Check's messages are short) and counts them all. */
static char failures[3000];
static size_t nfail;

static void note_failure(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void note_failure(const char *fmt, ...)
{
	char one[300];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(one, sizeof(one), fmt, ap);
	va_end(ap);
	fprintf(stderr, "FAIL %s\n", one); /* all of them in the test log */
	size_t l = strlen(failures);
	if (l + strlen(one) + 2 < sizeof(failures))
		snprintf(failures + l, sizeof(failures) - l, "%s\n", one);
	nfail++;
}

#define EXPECT(cond, ...)                                                                          \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			note_failure(__VA_ARGS__);                                                 \
			return;                                                                    \
		}                                                                                  \
	} while (0)

/* The one message: exit 2, one line, names what the case says. */
static void check_message(const struct bcase *c, const char *mode, int rc, const char *log,
                          const char *path)
{
	const char *m = slurp(log), *name = c ? c->name : "file";
	EXPECT(rc == 2, "[%s] %s: exit %d, not 2; stderr: %s", name, mode, rc, m);
	const char *nl = strchr(m, '\n');
	EXPECT(nl && nl[1] == '\0', "[%s] %s: not exactly one line: %s", name, mode, m);
	EXPECT(strncmp(m, "spool-agent: ", 13) == 0, "[%s] %s: %s", name, mode, m);
	if (!c)
		return;
	EXPECT(c->no_file || strstr(m, path), "[%s] %s: the file is not named: %s", name, mode, m);
	char k[128];
	snprintf(k, sizeof(k), "key '%s'", c->key);
	EXPECT(!c->key[0] || strstr(m, k), "[%s] %s: no \"%s\" in: %s", name, mode, k, m);
	EXPECT(!c->env || strstr(m, c->env), "[%s] %s: the variable is not named: %s", name, mode,
	       m);
	EXPECT(!c->what || strstr(m, c->what), "[%s] %s: no \"%s\" in: %s", name, mode, c->what, m);
	EXPECT(!c->secret || !strstr(m, c->secret), "[%s] %s: the key leaks: %s", name, mode, m);
	if (c->position) {
		regex_t re;
		char pat[600];
		snprintf(pat, sizeof(pat), "%s:[0-9]+:[0-9]+: ", path);
		ck_assert_int_eq(regcomp(&re, pat, REG_EXTENDED | REG_NOSUB), 0);
		bool found = regexec(&re, m, 0, NULL, 0) == 0;
		regfree(&re);
		EXPECT(found, "[%s] %s: no FILE:LINE:COL in: %s", name, mode, m);
	}
}

static void run_case(struct sweep *s, const struct bcase *c)
{
	if (c->yaml) {
		FILE *f = fopen(s->d.config, "w");
		ck_assert_ptr_nonnull(f);
		fputs(c->yaml, f);
		fclose(f);
	}
	static const char *const modes[] = {"--once", "--check-config"};
	for (size_t m = 0; m < 2; m++) {
		int rc = run_agent(s->d.config, modes[m], c, s->d.log, -1);
		check_message(c, modes[m], rc, s->d.log, s->d.config);
		s->runs++;
	}
}

static void sweep_start(struct sweep *s)
{
	memset(s, 0, sizeof(*s));
	umask(022);
	th_dir_make(&s->d, "badcfg");
	snprintf(s->scratch, sizeof(s->scratch), "%s/scratch", s->d.root);
	ck_assert_int_eq(mkdir(s->scratch, 0755), 0);
	th_rx_start(&s->rx, s->d.out, NULL);
	th_fill(s->d.spool, 1, 5, 0);
}

static void sweep_end(struct sweep *s)
{
	ck_assert_msg(nfail == 0, "%zu failures:\n%s", nfail, failures);
	/* nothing was sent and nothing left the spool */
	ck_assert_int_eq(th_rx_stat(&s->rx, "requests"), 0);
	ck_assert_int_eq(th_stats(s->d.spool).pending, 5);
	ck_assert_int_eq(th_stats(s->d.spool).dead, 0);
	th_rx_stop(&s->rx);
	for (size_t i = 0; i < s->n; i++)
		free(s->c[i].yaml);
	free(s->c);
	th_dir_remove(&s->d);
}

START_TEST(every_key_wrong_type_and_value)
{
	struct sweep s;
	sweep_start(&s);
	size_t nkeys = config_key_count(), per_key[64] = {0};
	ck_assert_uint_le(nkeys, 64);
	for (size_t i = 0; i < nkeys; i++) {
		struct config_key_info k;
		ck_assert_int_eq(config_key_info(i, &k), 0);
		ck_assert_str_eq(k.key, config_key_name(i));
		size_t before = s.n;
		type_cases(&s, &k);
		range_cases(&s, &k);
		kind_cases(&s, &k);
		env_cases(&s, &k);
		per_key[i] = s.n - before;
	}
	ck_assert_int_eq(config_key_info(nkeys, &(struct config_key_info){0}), -1);
	for (size_t i = 0; i < nkeys; i++)
		ck_assert_msg(per_key[i] >= 4, "key %s: only %zu cases", config_key_name(i),
		              per_key[i]);
	size_t from_table = s.n;
	section_cases(&s);
	option_cases(&s);
	for (size_t i = 0; i < s.n; i++)
		run_case(&s, &s.c[i]);
	fprintf(stderr, "badconfig: %zu keys, %zu cases from the table, %zu more; %zu agent runs\n",
	        nkeys, from_table, s.n - from_table, s.runs);
	sweep_end(&s);
}
END_TEST

START_TEST(broken_files)
{
	struct sweep s;
	sweep_start(&s);
	file_cases(&s);
	for (size_t i = 0; i < s.n; i++)
		run_case(&s, &s.c[i]);
	static const char *const modes[] = {"--once", "--check-config"};
	for (size_t m = 0; m < 2; m++) {
		/* a missing file */
		char path[600];
		snprintf(path, sizeof(path), "%s/no-such.yaml", s.d.root);
		int rc = run_agent(path, modes[m], NULL, s.d.log, -1);
		check_message(NULL, modes[m], rc, s.d.log, path);
		if (!th_file_has(s.d.log, path) || !th_file_has(s.d.log, "No such file"))
			note_failure("[missing file] %s: %s", modes[m], slurp(s.d.log));
		/* a directory */
		rc = run_agent(s.scratch, modes[m], NULL, s.d.log, -1);
		check_message(NULL, modes[m], rc, s.d.log, s.scratch);
		if (!th_file_has(s.d.log, s.scratch) || !th_file_has(s.d.log, "directory"))
			note_failure("[a directory] %s: %s", modes[m], slurp(s.d.log));
		/* a file the agent's user cannot read: as root, run the agent as
		 * nobody (root reads anything) */
		snprintf(path, sizeof(path), "%s/unreadable.yaml", s.scratch);
		make_file(path, "batch_size: 5\n", 0000);
		ck_assert_int_eq(chmod(s.d.root, 0755), 0);
		rc = run_agent(path, modes[m], NULL, s.d.log, geteuid() == 0 ? NOBODY : -1);
		check_message(NULL, modes[m], rc, s.d.log, path);
		if (!th_file_has(s.d.log, "Permission denied"))
			note_failure("[unreadable] %s: %s", modes[m], slurp(s.d.log));
		s.runs += 3;
	}
	fprintf(stderr, "badconfig: %zu file cases; %zu agent runs\n", s.n + 3, s.runs);
	sweep_end(&s);
}
END_TEST

/* A good file still loads, so the sweep's failures are the cases' own. */
START_TEST(base_file_is_good)
{
	struct sweep s;
	sweep_start(&s);
	char *y = compose(&s, "", "");
	FILE *f = fopen(s.d.config, "w");
	fputs(y, f);
	fclose(f);
	free(y);
	ck_assert_int_eq(run_agent(s.d.config, "--check-config", NULL, s.d.log, -1), 0);
	ck_assert_int_eq(th_rx_stat(&s.rx, "requests"), 0);
	ck_assert_int_eq(run_agent(s.d.config, "--once", NULL, s.d.log, -1), 0);
	ck_assert_int_eq(th_stats(s.d.spool).pending, 0);
	th_rx_stop(&s.rx);
	th_dir_remove(&s.d);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("agent-badconfig");
	TCase *tc = tcase_create("badconfig");
	tcase_set_timeout(tc, 600);
	tcase_add_test(tc, base_file_is_good);
	tcase_add_test(tc, every_key_wrong_type_and_value);
	tcase_add_test(tc, broken_files);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	/* only the cases' own variables count */
	struct config_key_info k;
	for (size_t i = 0; config_key_info(i, &k) == 0; i++)
		if (k.env)
			unsetenv(k.env);
	return tc_run(suite());
}
