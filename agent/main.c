/* main.c — spool-agent: the command line, the daemon loop (wake FIFO,
 * signals, SIGHUP reload) around the drain loop of drain.c. */
#include <errno.h>
#include <dirent.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <malloc.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#ifdef HAVE_SYSTEMD
#include <systemd/sd-daemon.h>
#endif

#include <spool/spool.h>

#include "codec/endpoint.h"
#include "config.h"
#include "drain.h"
#include "log.h"
#include "project_version.h"
#include "metrics.h"
#include "prom.h"
#include "window.h"

enum { EXIT_CONFIG = 2, EXIT_REMAIN = 3 };

/* How long SIGTERM waits for the requests in flight. */
#define FINISH_SECONDS 30

#define TLS_OFF_WARNING                                                                            \
	"tls.verify is false: the server's certificate and name are not checked, so anyone on the "  \
	"path can pose as the server and read the API key and the events; set tls.verify: true"

/* What one configuration brings up: the transport instances. */
struct runtime {
	struct agent_config cfg;
	struct spool_tx_config txc[AGENT_MAX_TRANSPORTS];
	struct drain_link links[AGENT_MAX_TRANSPORTS];
	size_t n;
	char endpoint[300];   /* the chain's first endpoint (a URL key), without user:password@ */
	const char *secret;   /* the chain's first secret (the API key), for redaction */
	bool tls_off;	      /* some section of the chain has tls.verify false */
};

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: spool-agent [-c FILE] [--spool DIR] [--endpoint URL] [--once] [--check-config]\n"
		"                   [--log-level LEVEL] [--exit-idle SECONDS] [--detach]\n"
		"\n"
		"Drains a master-log-spool spool to Master Log over its transports and\n"
		"deletes each event only once the far side acknowledged it.\n"
		"\n"
		"  -c, --config FILE   YAML configuration (conf/spool-agent.yaml documents it)\n"
		"      --spool DIR     spool directory (overrides the file and MASTER_LOG_SPOOL_DIR)\n"
		"      --endpoint URL  Master Log endpoint, http.endpoint (overrides the file and\n"
		"                      MASTER_LOG_ENDPOINT)\n"
		"      --once          drain until empty or nothing more can be sent now, then exit:\n"
		"                      0 when the spool is empty, 3 when events remain\n"
		"      --check-config  validate the configuration and the transports, then exit\n"
		"      --log-level L   error, warning, info or debug\n"
		"      --exit-idle S   exit once the spool has been empty, with no new event\n"
		"                      and no wake-up, for S seconds (agents started by the\n"
		"                      client library)\n"
		"      --detach        run in the background: return once the agent holds the\n"
		"                      spool's agent lock (0) or has failed (its exit status)\n"
		"      --help-config   list every configuration key with its default (with -c,\n"
		"                      the keys of the file's transports loaded from .so too)\n"
		"  -h, --help          this text\n"
		"  -V, --version       print the version\n"
		"\n"
		"Exit status: 0 success, 1 runtime failure, 2 bad usage or configuration,\n"
		"3 (--once) events remain.  SIGTERM/SIGINT finish the requests in flight and\n"
		"exit; SIGHUP reloads the configuration.\n");
}

static void runtime_free(struct runtime *rt)
{
	for (size_t i = 0; i < rt->n; i++)
		if (rt->links[i].tx && rt->links[i].tx->destroy && rt->links[i].state)
			rt->links[i].tx->destroy(rt->links[i].state);
	rt->n = 0;
	config_free(&rt->cfg);
}

/* What the chain's sections say that the agent reports itself. */
static void runtime_describe(struct runtime *rt)
{
	const struct agent_config *c = &rt->cfg;
	for (size_t s = 1; s < c->nsections; s++) {
		const struct agent_section *sec = &c->sections[s];
		if (!sec->in_chain)
			continue;
		for (size_t i = 0; i < sec->noptions; i++) {
			const struct spool_tx_option *o = &sec->options[i];
			const struct spool_tx_value *v = &sec->values[i];
			if (!v->set)
				continue;
			if (o->kind == SPOOL_TX_URL && !rt->endpoint[0])
				spool_endpoint_display(v->text, rt->endpoint, sizeof(rt->endpoint));
			if ((o->kind == SPOOL_TX_SECRET || o->kind == SPOOL_TX_SECRET_FILE) && !rt->secret)
				rt->secret = v->text;
			if (o->type == SPOOL_TX_BOOL && strcmp(o->key, "tls.verify") == 0 && !v->boolean)
				rt->tls_off = true;
		}
	}
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
	runtime_describe(rt);
	for (size_t i = 0; i < AGENT_MAX_TRANSPORTS && c->plugins[i].tx; i++) {
		const struct spool_transport *tx = c->plugins[i].tx;
		const struct agent_section *sec = tx->section ? config_section(c, tx->section) : NULL;
		rt->txc[i] = (struct spool_tx_config){
			.struct_size = sizeof(struct spool_tx_config),
			.name = tx->name,
			.values = sec ? sec->values : NULL,
			.nvalues = sec ? sec->noptions : 0,
			.user_agent = "master-log-spool/" SPOOL_VERSION_STRING,
			.max_batch_events = (size_t)c->max_batch_size,
			.max_body_bytes = (size_t)c->max_batch_bytes,
			.max_in_flight = tx->submit ? (uint32_t)c->max_in_flight : 1,
			.log = agent_log,
			.log_ctx = log,
			.bandwidth_limit = c->bandwidth_limit,
		};
		rt->links[i] = (struct drain_link){tx, NULL};
		rt->n = i + 1;
		if (!create || !tx->create)
			continue;
		char why[512] = "";
		int rc = tx->create(&rt->txc[i], &rt->links[i].state, why, sizeof(why));
		if (rc) {
			snprintf(err, errlen, "transport %s (%s): %s", tx->name, c->plugins[i].path,
				 why[0] ? why : strerror(-rc));
			rt->links[i].state = NULL;
			goto fail;
		}
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
		.max_batch_size = (size_t)c->max_batch_size,
		.bandwidth_limit = c->bandwidth_limit,
		.severity_order = c->replay_severity,
		.max_batch_bytes = (size_t)c->max_batch_bytes,
		.max_in_flight = (size_t)c->max_in_flight,
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
	config_redact_key(rt->secret, key, sizeof(key));
	for (size_t i = 0; i < rt->n; i++) {
		size_t l = strlen(chain);
		snprintf(chain + l, sizeof(chain) - l, "%s%s", i ? " -> " : "", rt->links[i].tx->name);
	}
	agent_log(log, LOG_INFO, "%s: spool %s, endpoint %s, api key %s, transports %s, batch %ld, in flight %ld",
		  what, rt->cfg.spool, rt->endpoint[0] ? rt->endpoint : "(none)", key, chain, rt->cfg.batch_size,
		  rt->cfg.max_in_flight);
	if (rt->tls_off)
		agent_log(log, LOG_WARNING, "%s", TLS_OFF_WARNING);
}

/* Warns about a spool that others may write.  A private spool's directory
 * and files (and those in rings/) are the owner's alone (0700, 0600).  A
 * shared spool (its directory setgid and group-writable, like the system
 * spool's 2770 root:master-log) is meant to be written by its group: a path
 * in it is warned about when others may write it, or a group other than the
 * directory's. */
static void check_spool_modes(struct agent_log *log, const char *dir, int depth, const struct stat *top)
{
	struct stat st;
	if (lstat(dir, &st) != 0)
		return;
	if (!top)
		top = &st;
	bool shared = (top->st_mode & S_ISGID) && (top->st_mode & S_IWGRP);
	const char *what = depth ? "file" : "directory";
	unsigned mode = (unsigned)(st.st_mode & 07777);
	if (st.st_mode & S_IWOTH)
		agent_log(log, LOG_WARNING,
			  "spool %s %s is writable by everyone (mode %04o): other users can add, change or "
			  "delete events; chmod %s %s (%s for a spool shared by a group)",
			  what, dir, mode, S_ISDIR(st.st_mode) ? "700" : "600", dir,
			  S_ISDIR(st.st_mode) ? "2770" : "660");
	else if ((st.st_mode & S_IWGRP) && !shared)
		agent_log(log, LOG_WARNING,
			  "spool %s %s is writable by its group (mode %04o): other users can add, change or "
			  "delete events; chmod %s %s (or share the spool with a group: chgrp GROUP, chmod "
			  "2770 on the directory)",
			  what, dir, mode, S_ISDIR(st.st_mode) ? "700" : "600", dir);
	else if ((st.st_mode & S_IWGRP) && st.st_gid != top->st_gid)
		agent_log(log, LOG_WARNING,
			  "spool %s %s is writable by group %u (mode %04o), not by the shared spool's group "
			  "%u: chgrp %u %s",
			  what, dir, (unsigned)st.st_gid, mode, (unsigned)top->st_gid, (unsigned)top->st_gid,
			  dir);
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
			check_spool_modes(log, p, depth + 1, top);
	}
	closedir(d);
}

#ifdef SPOOL_HAVE_METRICS
/* The address part of metrics_listen, for the log line. */
static const char *listen_host(const char *listen)
{
	static char host[64];
	const char *b = listen[0] == '[' ? listen + 1 : listen;
	const char *e = listen[0] == '[' ? strchr(b, ']') : strrchr(b, ':');
	snprintf(host, sizeof(host), "%.*s", e ? (int)(e - b) : (int)strlen(b), b);
	return host;
}
#endif

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

/* ---- send windows ----
 *
 * Outside every window the drain is paused: it starts no request and reads
 * nothing, the requests in flight finish, producers keep spooling.  The
 * state is looked at again only when it is due to change (or the clock
 * went back); the daemon sleeps until then, so a window opens on time
 * without polling. */

/* The longest sleep with the windows closed: a clock set forward or back
 * is noticed within this. */
#define WINDOW_RECHECK_SECONDS 60

#define WINDOWS_META_KEY "agent.send_windows"

struct send_window {
	struct window_set set;
	bool known;	  /* looked at since the (re)load */
	bool open;
	time_t change;	  /* when `open` changes next; 0: never */
	time_t looked_at; /* wall clock of the last look */
};

static double wall_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* "01:00-05:00,13:30-14:10Z": the windows as written, joined by sep (no
 * entry holds a comma). */
static void windows_text(const struct agent_config *c, const char *sep, char *buf, size_t len)
{
	size_t at = 0;
	buf[0] = '\0';
	for (size_t i = 0; i < c->nsend_windows && at < len; i++) {
		int w = snprintf(buf + at, len - at, "%s%s", i ? sep : "", c->send_windows[i]);
		if (w < 0)
			break;
		at += (size_t)w;
	}
}

/* The configuration's windows (config_load() checked them). */
static void send_window_load(struct send_window *sw, const struct agent_config *c,
			     struct agent_log *log)
{
	char why[300];
	*sw = (struct send_window){0};
	if (window_parse((const char *const *)c->send_windows, c->nsend_windows, &sw->set, why,
			 sizeof(why)) != 0)
		agent_log(log, LOG_ERR, "send_windows: %s; sending at any time", why);
}

/* Publishes the windows as written in meta WINDOWS_META_KEY for spoolctl
 * status, when they differ from what is there. */
static void send_window_publish(struct spool *s, const struct agent_config *c,
				struct agent_log *log)
{
	char text[4096], old[4096];
	size_t n = sizeof(old) - 1;
	windows_text(c, ",", text, sizeof(text));
	int rc = spool_meta_get(s, WINDOWS_META_KEY, old, &n);
	if (rc == 0) {
		old[n] = '\0';
		if (strcmp(old, text) == 0)
			return;
	} else if (!text[0]) {
		return; /* never had any */
	}
	rc = spool_meta_put(s, WINDOWS_META_KEY, text, strlen(text));
	if (rc)
		agent_log(log, LOG_WARNING, "cannot publish %s: %s", WINDOWS_META_KEY,
			  spool_strerror(rc));
}

/* Looks at the windows when a change is due, pauses or resumes the drain,
 * and logs the change (and, after a (re)load, the state). */
static void send_window_update(struct send_window *sw, const struct agent_config *c,
			       struct drain *d, struct agent_log *log)
{
	time_t t = (time_t)floor(wall_now());
	if (sw->known && (sw->change == 0 || t < sw->change) && t >= sw->looked_at)
		return;
	time_t until, next;
	bool open = window_open_at(&sw->set, t, &until, &next);
	bool first = !sw->known, changed = first || open != sw->open;
	sw->known = true;
	sw->open = open;
	sw->change = open ? until : next;
	sw->looked_at = t;
	if (!changed)
		return;
	drain_pause(d, !open);
	if (sw->set.n == 0)
		return;
	char when[128] = "further notice", list[4096];
	if (sw->change)
		window_when(sw->change, t, when, sizeof(when));
	if (first) {
		windows_text(c, ", ", list, sizeof(list));
		agent_log(log, LOG_INFO, "send windows %s: %s %s", list,
			  open ? "open now, sending until" : "closed now, the next opens at", when);
	} else if (open) {
		agent_log(log, LOG_INFO, "send window opened: sending until %s", when);
	} else {
		agent_log(log, LOG_INFO,
			  "send window closed: no new requests until %s; %zu in flight finish", when,
			  drain_in_flight(d));
	}
}

/* Seconds until the windows change, or -1 when they never do. */
static double send_window_left(const struct send_window *sw)
{
	if (!sw->known || sw->change == 0)
		return -1;
	double left = (double)sw->change - wall_now();
	return left > 0 ? left : 0;
}

/* ---- systemd: readiness and watchdog (Type=notify) ----
 *
 * Without $NOTIFY_SOCKET (not started by systemd with Type=notify) every
 * call is a no-op; without libsystemd at build time (-Dsystemd=disabled)
 * too. */

static void notify(const char *state)
{
#ifdef HAVE_SYSTEMD
	sd_notify(0, state);
#else
	(void)state;
#endif
}

/* Seconds between two WATCHDOG=1: half of $WATCHDOG_USEC (WatchdogSec=),
 * or 0 when systemd watches nothing. */
static double watchdog_interval(void)
{
#ifdef HAVE_SYSTEMD
	uint64_t usec = 0;
	if (sd_watchdog_enabled(0, &usec) > 0 && usec > 0)
		return (double)usec / 2e6;
#endif
	return 0;
}

struct watchdog {
	double interval; /* 0: off */
	double last;	 /* monotonic time of the last ping */
};

/* Called from the drain loop, which comes back at least every
 * `interval` (the sleeps are cut to it): pings when half the watchdog time
 * has passed, so a loop stuck anywhere gets the agent restarted. */
static void watchdog_kick(struct watchdog *w, double now)
{
	if (w->interval > 0 && now - w->last >= w->interval * 0.9) {
		notify("WATCHDOG=1");
		w->last = now;
	}
}

/* ---- --detach ---- */

/* The write end of the pipe to the parent that --detach leaves waiting; -1
 * when not detached, or once that parent was told. */
static int detach_fd = -1;

/* Forks.  The child goes on, in a session of its own; the parent waits until
 * the child holds the agent lock (detach_ready(): exit 0) or has ended (the
 * child's exit status), so that whoever started the agent learns which, and
 * the agent is nobody's child to reap.  Returns in the child, or -1 when the
 * fork failed. */
static int detach_begin(void)
{
	int p[2];
	if (pipe2(p, O_CLOEXEC) != 0)
		return -1;
	pid_t pid = fork();
	if (pid < 0) {
		close(p[0]);
		close(p[1]);
		return -1;
	}
	if (pid == 0) {
		close(p[0]);
		setsid();
		detach_fd = p[1];
		return 0;
	}
	close(p[1]);
	char b;
	ssize_t n;
	while ((n = read(p[0], &b, 1)) < 0 && errno == EINTR)
		;
	if (n == 1)
		_exit(0);
	int st = 0;
	pid_t w;
	while ((w = waitpid(pid, &st, 0)) < 0 && errno == EINTR)
		;
	_exit(w == pid && WIFEXITED(st) ? WEXITSTATUS(st) : 1);
}

static void detach_ready(void)
{
	if (detach_fd < 0)
		return;
	char b = 1;
	ssize_t n;
	while ((n = write(detach_fd, &b, 1)) < 0 && errno == EINTR)
		;
	close(detach_fd);
	detach_fd = -1;
}

/* ---- --exit-idle ----
 *
 * An agent the client library started exits by itself once the spool has
 * been empty, with no new event (its next sequence unchanged) and no wake-up,
 * for `seconds`.  It lets go of the agent lock first and then looks once
 * more: a producer wakes the agent before it looks at the lock, so one that
 * still found the lock held left a wake-up that is seen here, and the agent
 * takes the lock back (or, when the agent that producer started has it
 * already, leaves the spool to that one). */
struct idle_exit {
	double seconds; /* 0: never */
	double since;	/* the last sign of a producer */
	uint64_t next_seq;
};

static void idle_exit_init(struct idle_exit *ie, double seconds, struct spool *s)
{
	struct spool_stats st;
	*ie = (struct idle_exit){.seconds = seconds, .since = mono_now()};
	if (spool_stats(s, &st) == 0)
		ie->next_seq = st.next_seq;
}

/* true when the spool is empty and no event came since the last look */
static bool idle_spool_quiet(struct spool *s, uint64_t *next_seq)
{
	struct spool_stats st;
	if (spool_stats(s, &st) != 0)
		return false;
	bool quiet = st.pending == 0 && st.next_seq == *next_seq;
	*next_seq = st.next_seq;
	return quiet;
}

static bool idle_wake_pending(int wfd)
{
	struct pollfd pf = {.fd = wfd, .events = POLLIN};
	return wfd >= 0 && poll(&pf, 1, 0) > 0;
}

/* true when the agent is to exit now, the agent lock already released */
static bool idle_exit_due(struct idle_exit *ie, struct spool *s, int wfd, bool woken,
			  struct agent_log *log)
{
	double now = mono_now();
	if (!idle_spool_quiet(s, &ie->next_seq) || woken) {
		ie->since = now;
		return false;
	}
	if (now - ie->since < ie->seconds)
		return false;
	spool_agent_unlock(s);
	if (!idle_wake_pending(wfd) && idle_spool_quiet(s, &ie->next_seq)) {
		agent_log(log, LOG_INFO, "the spool has been empty and idle for %g s: exiting (--exit-idle)",
			  ie->seconds);
		return true;
	}
	if (spool_agent_lock(s) != 0) {
		agent_log(log, LOG_INFO, "idle, and another agent took the spool over: exiting");
		return true;
	}
	ie->since = now;
	return false;
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
		{"exit-idle", required_argument, NULL, 'x'},
		{"detach", no_argument, NULL, 'D'},
		{"help-config", no_argument, NULL, 'K'},
		{"help", no_argument, NULL, 'h'},
		{"version", no_argument, NULL, 'V'},
		{NULL, 0, NULL, 0},
	};
	const char *path = NULL;
	struct agent_overrides ov = {0};
	bool detach = false;
	double exit_idle = 0;
	bool once = false, check = false, help_config = false;
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
		case 'x': {
			char *end;
			errno = 0;
			exit_idle = strtod(optarg, &end);
			if (errno || end == optarg || *end || !isfinite(exit_idle) || exit_idle <= 0 ||
			    exit_idle > 31536000) {
				fprintf(stderr, "spool-agent: --exit-idle: expected seconds above 0, got '%s'\n",
					optarg);
				return EXIT_CONFIG;
			}
			break;
		}
		case 'D':
			detach = true;
			break;
		case 'K':
			help_config = true;
			break;
		case 'h':
			usage(stdout);
			return 0;
		case 'V':
			printf("spool-agent (%s) %s, transport ABI %d\n", SPOOL_PROJECT_NAME, SPOOL_PROJECT_VERSION,
			       SPOOL_TRANSPORT_ABI);
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

	if (help_config) {
		/* with -c FILE, the keys of the file's chain loaded from shared
		 * objects too */
		struct agent_config hc;
		char herr[1024];
		bool loaded = path && config_load(path, &ov, &hc, herr, sizeof(herr)) == 0;
		config_print_keys(stdout, loaded ? &hc : NULL);
		if (loaded)
			config_free(&hc);
		else if (path)
			fprintf(stderr, "spool-agent: %s (only the built-in transports are listed)\n", herr);
		return 0;
	}

	/* An agent the client library started (--detach, --exit-idle) may have
	 * inherited the notify socket of its producer's service: its READY=1
	 * and STOPPING=1 are not that service's. */
	if (detach || exit_idle > 0)
		unsetenv("NOTIFY_SOCKET");

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
		config_redact_key(rt->secret, key, sizeof(key));
		printf("spool-agent: configuration OK: spool %s, endpoint %s, api key %s, %zu transport(s)\n",
		       rt->cfg.spool, rt->endpoint[0] ? rt->endpoint : "(none)", key, rt->n);
		if (rt->tls_off)
			fprintf(stderr, "spool-agent: warning: %s\n", TLS_OFF_WARNING);
		runtime_free(rt);
		free(rt);
		return 0;
	}
	runtime_free(rt);

	/* --detach: from here on the agent runs in a child; this process
	 * returns once that child holds the agent lock or has failed */
	if (detach && detach_begin() != 0) {
		fprintf(stderr, "spool-agent: --detach: cannot fork: %s\n", strerror(errno));
		free(rt);
		return 1;
	}

	/* Signals are blocked and read from a signalfd: a request in flight is
	 * never interrupted, and the loop sees them between requests. */
	sigset_t sigs;
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGHUP);
	sigprocmask(SIG_BLOCK, &sigs, NULL);
	signal(SIGPIPE, SIG_IGN);
	/* Every delete commit copies the leaf pages it touches into pages LMDB
	 * mallocs and frees at the commit (hundreds of KB per batch), and a
	 * batch's buffers are hundreds of KB each: with glibc's defaults the
	 * heap top is trimmed after each commit and large blocks are mapped
	 * and unmapped each time, so their pages are faulted in again for
	 * every batch.  Keep freed memory for the next batch instead (the
	 * agent's peak is bounded by its window). */
	mallopt(M_MMAP_THRESHOLD, 32 << 20);
	mallopt(M_TRIM_THRESHOLD, 128 << 20);
	int sfd = signalfd(-1, &sigs, SFD_NONBLOCK | SFD_CLOEXEC);

	int status = 1;
	struct spool *s = NULL;
	struct drain *d = NULL;
	int wfd = -1;
	static struct prom_requests req_stats;
	struct metrics_server *metrics = NULL;
	if (runtime_load(rt, path, &ov, &log, true, err, sizeof(err))) {
		fprintf(stderr, "spool-agent: %s\n", err);
		free(rt);
		return EXIT_CONFIG;
	}
	agent_log_open(&log, config_log_level(rt->cfg.log_level), rt->cfg.log_target);
	agent_log_set_secret(&log, rt->secret);
	check_spool_modes(&log, rt->cfg.spool, 0, NULL);

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
	detach_ready(); /* --detach: the lock is held */
	struct drain_params dp;
	drain_params_from(&rt->cfg, &dp);
	rc = drain_create(s, &dp, rt->links, rt->n, agent_log, &log, &d);
	if (rc) {
		agent_log(&log, LOG_ERR, "cannot start the drain loop: %s", strerror(-rc));
		goto out;
	}
	drain_set_cancel(d, stop_pending, NULL);
	drain_set_requests(d, &req_stats);
	if (rt->cfg.metrics_listen && *rt->cfg.metrics_listen) {
#ifdef SPOOL_HAVE_METRICS
		if (metrics_start(rt->cfg.metrics_listen, rt->cfg.spool, &req_stats, &metrics, err, sizeof(err)) == 0)
			agent_log(&log, LOG_INFO, "metrics: serving http://%s%s%s:%u/metrics",
				  strchr(rt->cfg.metrics_listen, '[') ? "[" : "", listen_host(rt->cfg.metrics_listen),
				  strchr(rt->cfg.metrics_listen, '[') ? "]" : "", metrics_port(metrics));
		else
			agent_log(&log, LOG_ERR, "%s; draining without metrics", err);
#else
		agent_log(&log, LOG_ERR,
			  "metrics_listen: this spool-agent was built without libmicrohttpd; draining without "
			  "metrics (spoolctl status --prometheus prints the spool's figures)");
#endif
	}
	describe(rt, &log, once ? "draining once" : "started");
	/* the spool is open, the lock held and the transports made */
	struct watchdog wd = {.interval = watchdog_interval(), .last = mono_now()};
	notify("READY=1\nSTATUS=draining");
	if (wd.interval > 0)
		agent_log(&log, LOG_DEBUG, "systemd watchdog: a ping every %g s", wd.interval);
	struct send_window sw;
	send_window_load(&sw, &rt->cfg, &log);
	send_window_publish(s, &rt->cfg, &log);

	struct idle_exit idle;
	idle_exit_init(&idle, once ? 0 : exit_idle, s);
	bool stop = false;
	for (;;) {
		watchdog_kick(&wd, mono_now());
		send_window_update(&sw, &rt->cfg, d, &log);
		double wait = 0;
		enum drain_result r = drain_step(d, &wait);
		if ((r == DRAIN_PROGRESS || r == DRAIN_BUSY) && !stop_pending(NULL))
			continue;
		if (once && r == DRAIN_IDLE && drain_paused(d)) {
			/* outside the windows (or one closed): nothing in flight */
			struct spool_stats st;
			bool empty = spool_stats(s, &st) == 0 && st.pending == 0;
			char when[128];
			window_when(sw.change, (time_t)floor(wall_now()), when, sizeof(when));
			agent_log(&log, LOG_INFO,
				  "--once: outside the send windows: %llu events stay in the spool; the next "
				  "window opens at %s",
				  empty ? 0ULL : (unsigned long long)st.pending, when);
			status = empty ? 0 : EXIT_REMAIN;
			break;
		}
		if (once && r == DRAIN_IDLE) {
			status = 0;
			break;
		}
		if (once && (r == DRAIN_BACKOFF || r == DRAIN_ERROR)) {
			status = EXIT_REMAIN;
			break;
		}
		double timeout = r == DRAIN_PROGRESS ? 0 : r == DRAIN_IDLE ? rt->cfg.flush_interval : wait;
		/* paused, there is nothing to look at before the windows change */
		if (r == DRAIN_IDLE && drain_paused(d))
			timeout = WINDOW_RECHECK_SECONDS;
		double change = send_window_left(&sw);
		if (change >= 0 && change < timeout)
			timeout = change;
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
			if (wd.interval > 0 && slice > wd.interval / 2)
				slice = wd.interval / 2;
			int np = poll(pf, wfd >= 0 ? 2 : 1, to_ms(slice));
			if (np < 0 && errno != EINTR) {
				agent_log(&log, LOG_ERR, "poll: %s", strerror(errno));
				break;
			}
			watchdog_kick(&wd, mono_now());
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
		if (idle.seconds > 0 &&
		    idle_exit_due(&idle, s, wfd, wfd >= 0 && (pf[1].revents & POLLIN), &log)) {
			status = 0;
			break;
		}
		if (reload) {
			/* systemd waits for READY=1 after RELOADING=1 (systemctl reload) */
			notify("RELOADING=1");
			/* the transports keep pointers into their runtime: it lives
			 * on the heap until the next reload replaces it */
			struct runtime *nrt = calloc(1, sizeof(*nrt));
			if (!nrt || runtime_load(nrt, path, &ov, &log, true, err, sizeof(err))) {
				agent_log(&log, LOG_ERR, "SIGHUP: keeping the running configuration: %s",
					  nrt ? err : "out of memory");
				free(nrt);
				notify("READY=1"); /* the running configuration goes on */
				continue;
			}
			if (strcmp(nrt->cfg.metrics_listen ? nrt->cfg.metrics_listen : "",
				   rt->cfg.metrics_listen ? rt->cfg.metrics_listen : "") != 0)
				agent_log(&log, LOG_WARNING, "SIGHUP: a new metrics_listen takes a restart");
			if (strcmp(nrt->cfg.spool, rt->cfg.spool) != 0)
				agent_log(&log, LOG_WARNING, "SIGHUP: a new spool (%s) takes a restart; still draining %s",
					  nrt->cfg.spool, rt->cfg.spool);
			drain_params_from(&nrt->cfg, &dp);
			if (drain_reconfigure(d, &dp, nrt->links, nrt->n) != 0) {
				agent_log(&log, LOG_ERR, "SIGHUP: bad drain parameters; keeping the running configuration");
				runtime_free(nrt);
				free(nrt);
				notify("READY=1"); /* the running configuration goes on */
				continue;
			}
			runtime_free(rt);
			free(rt);
			rt = nrt;
			agent_log_open(&log, config_log_level(rt->cfg.log_level), rt->cfg.log_target);
			agent_log_set_secret(&log, rt->secret);
			describe(rt, &log, "reloaded");
			bool had_windows = sw.set.n > 0;
			send_window_load(&sw, &rt->cfg, &log);
			send_window_publish(s, &rt->cfg, &log);
			if (had_windows && sw.set.n == 0)
				agent_log(&log, LOG_INFO, "no send windows: sending at any time");
			notify("READY=1");
		}
	}
	notify("STOPPING=1");
	if (d && drain_in_flight(d)) {
		size_t left = drain_finish(d, FINISH_SECONDS);
		if (left)
			agent_log(&log, LOG_WARNING, "%zu requests still open after %d s: their events stay in the spool",
				  left, FINISH_SECONDS);
	}
	if (stop) {
		struct spool_stats st;
		bool empty = spool_stats(s, &st) == 0 && st.pending == 0;
		status = once && !empty ? EXIT_REMAIN : 0;
		agent_log(&log, LOG_INFO, "stopping on signal");
	}
out:
#ifdef SPOOL_HAVE_METRICS
	metrics_stop(metrics);
#else
	(void)metrics;
#endif
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
