/* main.c — spool-agent: the command line, the daemon loop (wake FIFO,
 * signals, SIGHUP reload) around the drain loop of drain.c. */
#include <errno.h>
#include <dirent.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include <spool/spool.h>
#include <spool/spool.h>

#include "config.h"
#include "drain.h"
#include "log.h"
#include "plugin.h"

#ifndef SPOOL_PLUGIN_INSTALL_DIR
#define SPOOL_PLUGIN_INSTALL_DIR "/usr/local/lib/master-log-spool/plugins"
#endif

enum { EXIT_CONFIG = 2, EXIT_REMAIN = 3 };

#define TLS_OFF_WARNING                                                                            \
	"tls.verify is false: the server's certificate and name are not checked, so anyone on the "  \
	"path can pose as the server and read the API key and the events; set tls.verify: true"

/* What one configuration brings up: the transport instances. */
struct runtime {
	struct agent_config cfg;
	struct spool_tx_config txc;
	struct plugin plugins[AGENT_MAX_TRANSPORTS];
	struct drain_link links[AGENT_MAX_TRANSPORTS];
	size_t n;
};

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: spool-agent [-c FILE] [--spool DIR] [--endpoint URL] [--once] [--check-config]\n"
		"                   [--log-level LEVEL]\n"
		"\n"
		"Drains a master-log-spool spool to Master Log over plugin transports and\n"
		"deletes each event only once the far side acknowledged it.\n"
		"\n"
		"  -c, --config FILE   YAML configuration (conf/spool-agent.yaml documents it)\n"
		"      --spool DIR     spool directory (overrides the file and MASTER_LOG_SPOOL_DIR)\n"
		"      --endpoint URL  Master Log endpoint (overrides the file and MASTER_LOG_ENDPOINT)\n"
		"      --once          drain until empty or nothing more can be sent now, then exit:\n"
		"                      0 when the spool is empty, 3 when events remain\n"
		"      --check-config  validate the configuration and the transports, then exit\n"
		"      --log-level L   error, warning, info or debug\n"
		"      --help-config   list every configuration key with its default\n"
		"  -h, --help          this text\n"
		"  -V, --version       print the version\n"
		"\n"
		"Exit status: 0 success, 1 runtime failure, 2 bad usage or configuration,\n"
		"3 (--once) events remain.  SIGTERM/SIGINT finish the request in flight and\n"
		"exit; SIGHUP reloads the configuration.\n");
}

static void runtime_free(struct runtime *rt)
{
	for (size_t i = 0; i < rt->n; i++)
		plugin_unload(&rt->plugins[i]);
	rt->n = 0;
	config_free(&rt->cfg);
}

/* Loads the configuration and its transports (and makes instances when
 * `create`).  0, or -1 with err set. */
static int runtime_load(struct runtime *rt, const char *path, const struct agent_overrides *ov,
			struct agent_log *log, bool create, char *err, size_t errlen)
{
	memset(rt, 0, sizeof(*rt));
	if (config_load(path, ov, &rt->cfg, err, errlen))
		return -1;
	struct agent_config *c = &rt->cfg;
	const char *dirs[3] = {c->plugin_dir, getenv("SPOOL_PLUGIN_DIR"), SPOOL_PLUGIN_INSTALL_DIR};
	rt->txc = (struct spool_tx_config){
		.struct_size = sizeof(struct spool_tx_config),
		.endpoint = c->endpoint_root,
		.api_key = c->api_key,
		.headers = c->headers,
		.nheaders = c->nheaders,
		.gzip = c->gzip,
		.connect_timeout = c->connect_timeout,
		.request_timeout = c->request_timeout,
		.tls_verify = c->tls_verify,
		.ca_file = c->ca_file,
		.client_cert = c->client_cert,
		.client_key = c->client_key,
		.user_agent = "master-log-spool/" SPOOL_VERSION_STRING,
		.max_body_bytes = (size_t)c->max_batch_bytes,
		.file_path = c->file_path,
		.log = agent_log,
		.log_ctx = log,
	};
	for (size_t i = 0; i < c->ntransports; i++) {
		struct plugin *p = &rt->plugins[i];
		char why[900];
		if (plugin_load(c->transports[i], dirs, 3, p, why, sizeof(why))) {
			snprintf(err, errlen, "%s: key 'transports': %s", path ? path : "configuration", why);
			goto fail;
		}
		rt->n = i + 1;
		if (create && plugin_create(p, &rt->txc, why, sizeof(why))) {
			snprintf(err, errlen, "transport %s: %s", c->transports[i], why);
			goto fail;
		}
		rt->links[i] = (struct drain_link){p->tx, p->state};
	}
	return 0;
fail:
	runtime_free(rt);
	return -1;
}

static void drain_params_from(const struct agent_config *c, struct drain_params *p)
{
	*p = (struct drain_params){
		.batch_size = (size_t)c->batch_size,
		.max_batch_bytes = (size_t)c->max_batch_bytes,
		.min_request_interval = c->min_request_interval,
		.retry_initial = c->retry_initial,
		.retry_max = c->retry_max,
		.retry_multiplier = c->retry_multiplier,
		.retry_jitter = c->retry_jitter,
		.auth_retry = c->auth_retry,
		.max_age = c->max_age,
		.delivery_metadata = c->delivery_metadata,
		.meta_interval = c->meta_interval,
		.recover_interval = c->recover_interval,
	};
}

static void describe(const struct runtime *rt, struct agent_log *log, const char *what)
{
	char key[64], chain[256] = "";
	config_redact_key(rt->cfg.api_key, key, sizeof(key));
	for (size_t i = 0; i < rt->n; i++) {
		size_t l = strlen(chain);
		snprintf(chain + l, sizeof(chain) - l, "%s%s", i ? " -> " : "", rt->plugins[i].tx->name);
	}
	agent_log(log, LOG_INFO, "%s: spool %s, endpoint %s, api key %s, transports %s, batch %ld", what,
		  rt->cfg.spool, rt->cfg.endpoint_root ? rt->cfg.endpoint_root : "(none)", key, chain,
		  rt->cfg.batch_size);
	if (!rt->cfg.tls_verify)
		agent_log(log, LOG_WARNING, "%s", TLS_OFF_WARNING);
}

/* Warns about a spool that others may write: the directory and the files
 * in it (and in rings/) should be the owner's alone (0700, 0600). */
static void check_spool_modes(struct agent_log *log, const char *dir, int depth)
{
	struct stat st;
	if (lstat(dir, &st) != 0)
		return;
	if (st.st_mode & (S_IWGRP | S_IWOTH))
		agent_log(log, LOG_WARNING,
			  "spool %s %s is writable by %s (mode %04o): other users can add, change or delete "
			  "events; chmod %s %s",
			  depth ? "file" : "directory", dir,
			  (st.st_mode & S_IWOTH) ? "everyone" : "its group", (unsigned)(st.st_mode & 07777),
			  S_ISDIR(st.st_mode) ? "700" : "600", dir);
	if (!S_ISDIR(st.st_mode) || depth > 1)
		return;
	DIR *d = opendir(dir);
	if (!d)
		return;
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		char p[4200];
		if (snprintf(p, sizeof(p), "%s/%s", dir, e->d_name) < (int)sizeof(p))
			check_spool_modes(log, p, depth + 1);
	}
	closedir(d);
}

static bool stop_pending(void *ctx)
{
	(void)ctx;
	sigset_t set;
	return sigpending(&set) == 0 && (sigismember(&set, SIGTERM) == 1 || sigismember(&set, SIGINT) == 1);
}

static double mono_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int to_ms(double s)
{
	if (s <= 0)
		return 0;
	double ms = ceil(s * 1000);
	return ms > INT_MAX / 2 ? INT_MAX / 2 : (int)ms;
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{"config", required_argument, NULL, 'c'},
		{"spool", required_argument, NULL, 's'},
		{"endpoint", required_argument, NULL, 'e'},
		{"once", no_argument, NULL, 'o'},
		{"check-config", no_argument, NULL, 'k'},
		{"log-level", required_argument, NULL, 'l'},
		{"help-config", no_argument, NULL, 'K'},
		{"help", no_argument, NULL, 'h'},
		{"version", no_argument, NULL, 'V'},
		{NULL, 0, NULL, 0},
	};
	const char *path = NULL;
	struct agent_overrides ov = {0};
	bool once = false, check = false;
	int c;
	while ((c = getopt_long(argc, argv, "c:hV", longopts, NULL)) != -1) {
		switch (c) {
		case 'c':
			path = optarg;
			break;
		case 's':
			ov.spool = optarg;
			break;
		case 'e':
			ov.endpoint = optarg;
			break;
		case 'o':
			once = true;
			break;
		case 'k':
			check = true;
			break;
		case 'l':
			ov.log_level = optarg;
			break;
		case 'K':
			config_print_keys(stdout);
			return 0;
		case 'h':
			usage(stdout);
			return 0;
		case 'V':
			printf("spool-agent %s (transport ABI %d)\n", SPOOL_VERSION_STRING, SPOOL_TRANSPORT_ABI);
			return 0;
		default:
			usage(stderr);
			return EXIT_CONFIG;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "spool-agent: unexpected argument '%s'\n", argv[optind]);
		return EXIT_CONFIG;
	}

	struct agent_log log = {.level = LOG_INFO};
	struct runtime *rt = calloc(1, sizeof(*rt));
	char err[1024];
	if (!rt) {
		fprintf(stderr, "spool-agent: out of memory\n");
		return 1;
	}
	if (runtime_load(rt, path, &ov, &log, false, err, sizeof(err))) {
		fprintf(stderr, "spool-agent: %s\n", err);
		free(rt);
		return EXIT_CONFIG;
	}
	if (check) {
		char key[64];
		config_redact_key(rt->cfg.api_key, key, sizeof(key));
		printf("spool-agent: configuration OK: spool %s, endpoint %s, api key %s, %zu transport(s)\n",
		       rt->cfg.spool, rt->cfg.endpoint_root ? rt->cfg.endpoint_root : "(none)", key, rt->n);
		if (!rt->cfg.tls_verify)
			fprintf(stderr, "spool-agent: warning: %s\n", TLS_OFF_WARNING);
		runtime_free(rt);
		free(rt);
		return 0;
	}
	runtime_free(rt);

	/* Signals are blocked and read from a signalfd: a request in flight is
	 * never interrupted, and the loop sees them between requests. */
	sigset_t sigs;
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGHUP);
	sigprocmask(SIG_BLOCK, &sigs, NULL);
	signal(SIGPIPE, SIG_IGN);
	int sfd = signalfd(-1, &sigs, SFD_NONBLOCK | SFD_CLOEXEC);

	int status = 1;
	struct spool *s = NULL;
	struct drain *d = NULL;
	int wfd = -1;
	if (runtime_load(rt, path, &ov, &log, true, err, sizeof(err))) {
		fprintf(stderr, "spool-agent: %s\n", err);
		free(rt);
		return EXIT_CONFIG;
	}
	agent_log_open(&log, config_log_level(rt->cfg.log_level), strcmp(rt->cfg.log_target, "syslog") == 0);
	agent_log_set_secret(&log, rt->cfg.api_key);
	check_spool_modes(&log, rt->cfg.spool, 0);

	struct spool_options so;
	spool_options_init(&so);
	so.durability = SPOOL_SYNC; /* a reader: sync mode has no ring */
	int rc = spool_open(rt->cfg.spool, &so, &s, err, sizeof(err));
	if (rc) {
		agent_log(&log, LOG_ERR, "%s", err);
		goto out;
	}
	rc = spool_agent_lock(s);
	if (rc) {
		long pid = 0;
		spool_agent_running(s, &pid);
		if (rc == SPOOL_ELOCKED)
			agent_log(&log, LOG_ERR, "another spool-agent (pid %ld) already drains %s", pid, rt->cfg.spool);
		else
			agent_log(&log, LOG_ERR, "cannot take the agent lock of %s: %s", rt->cfg.spool,
				  spool_strerror(rc));
		goto out;
	}
	wfd = spool_wake_open(rt->cfg.spool);
	if (wfd < 0)
		agent_log(&log, LOG_WARNING, "no wake-up FIFO in %s (%s): polling every %g s", rt->cfg.spool,
			  strerror(-wfd), rt->cfg.flush_interval);
	struct drain_params dp;
	drain_params_from(&rt->cfg, &dp);
	rc = drain_create(s, &dp, rt->links, rt->n, agent_log, &log, &d);
	if (rc) {
		agent_log(&log, LOG_ERR, "cannot start the drain loop: %s", strerror(-rc));
		goto out;
	}
	drain_set_cancel(d, stop_pending, NULL);
	describe(rt, &log, once ? "draining once" : "started");

	bool stop = false;
	for (;;) {
		double wait = 0;
		enum drain_result r = drain_step(d, &wait);
		if (r == DRAIN_PROGRESS && !stop_pending(NULL))
			continue;
		if (once && r == DRAIN_IDLE) {
			status = 0;
			break;
		}
		if (once && (r == DRAIN_BACKOFF || r == DRAIN_ERROR)) {
			status = EXIT_REMAIN;
			break;
		}
		double timeout = r == DRAIN_PROGRESS ? 0 : r == DRAIN_IDLE ? rt->cfg.flush_interval : wait;
		/* sleep until the timeout, a wake-up or a signal; come back for
		 * the drain's housekeeping (figures, rings) in between */
		double deadline = mono_now() + timeout;
		struct pollfd pf[2] = {{.fd = sfd, .events = POLLIN}, {.fd = wfd, .events = POLLIN}};
		for (;;) {
			double slice = deadline - mono_now();
			if (slice > rt->cfg.meta_interval)
				slice = rt->cfg.meta_interval;
			if (slice > rt->cfg.recover_interval)
				slice = rt->cfg.recover_interval;
			int np = poll(pf, wfd >= 0 ? 2 : 1, to_ms(slice));
			if (np < 0 && errno != EINTR) {
				agent_log(&log, LOG_ERR, "poll: %s", strerror(errno));
				break;
			}
			if (np > 0 || mono_now() >= deadline)
				break;
			drain_housekeep(d);
		}
		if (wfd >= 0 && (pf[1].revents & POLLIN))
			spool_wake_drain(wfd);
		struct signalfd_siginfo si;
		bool reload = false;
		while (read(sfd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
			if (si.ssi_signo == SIGHUP)
				reload = true;
			else
				stop = true;
		}
		if (stop)
			break;
		if (reload) {
			/* the transports keep pointers into their runtime: it lives
			 * on the heap until the next reload replaces it */
			struct runtime *nrt = calloc(1, sizeof(*nrt));
			if (!nrt || runtime_load(nrt, path, &ov, &log, true, err, sizeof(err))) {
				agent_log(&log, LOG_ERR, "SIGHUP: keeping the running configuration: %s",
					  nrt ? err : "out of memory");
				free(nrt);
				continue;
			}
			if (strcmp(nrt->cfg.spool, rt->cfg.spool) != 0)
				agent_log(&log, LOG_WARNING, "SIGHUP: a new spool (%s) takes a restart; still draining %s",
					  nrt->cfg.spool, rt->cfg.spool);
			drain_params_from(&nrt->cfg, &dp);
			if (drain_reconfigure(d, &dp, nrt->links, nrt->n) != 0) {
				agent_log(&log, LOG_ERR, "SIGHUP: bad drain parameters; keeping the running configuration");
				runtime_free(nrt);
				free(nrt);
				continue;
			}
			runtime_free(rt);
			free(rt);
			rt = nrt;
			agent_log_open(&log, config_log_level(rt->cfg.log_level),
				       strcmp(rt->cfg.log_target, "syslog") == 0);
			agent_log_set_secret(&log, rt->cfg.api_key);
			describe(rt, &log, "reloaded");
		}
	}
	if (stop) {
		struct spool_stats st;
		bool empty = spool_stats(s, &st) == 0 && st.pending == 0;
		status = once && !empty ? EXIT_REMAIN : 0;
		agent_log(&log, LOG_INFO, "stopping on signal");
	}
out:
	drain_destroy(d);
	if (wfd >= 0)
		close(wfd);
	if (s) {
		int crc = spool_close(s);
		if (crc)
			agent_log(&log, LOG_ERR, "closing the spool: %s", spool_strerror(crc));
	}
	runtime_free(rt);
	free(rt);
	agent_log_close(&log);
	if (sfd >= 0)
		close(sfd);
	return status;
}
