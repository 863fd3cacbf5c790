/* spawn.c — starting spool-agent for the client: where the program is, and
 * how a library starts it from a host program that may run many threads.
 *
 * The agent is started with posix_spawn (the host is never forked, so none
 * of its code or locks run in a child before the exec), in a session of its
 * own, with descriptors 0-2 on /dev/null and every other descriptor closed,
 * default signal dispositions and an empty signal mask.  It is started with
 * --detach: spool-agent forks once more, and the process posix_spawn made
 * exits as soon as its child holds the spool's agent lock (0) or has failed
 * (the child's exit status).  The library waits for that short-lived
 * process by its pid, with a bound, so no zombie is left behind, and the
 * agent itself is nobody's child.  Two programs that start an agent at once
 * each get one; one takes the lock, the other exits at once, and both
 * programs see an agent running. */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "mlog_internal.h"

/* From meson: the folder libmlog is built in, the agent built beside it,
 * and the installed agent. */
#ifndef MLOG_BUILD_DIR
#define MLOG_BUILD_DIR ""
#endif
#ifndef MLOG_BUILD_AGENT
#define MLOG_BUILD_AGENT ""
#endif
#ifndef MLOG_INSTALL_AGENT
#define MLOG_INSTALL_AGENT "/usr/local/bin/spool-agent"
#endif

#define AGENT_NAME "spool-agent"

extern char **environ;

/* An address inside this library, for dladdr(). */
static const char self_anchor = 1;

double mlog_agent_idle_seconds(const struct mlog_settings *set)
{
	double floor = 3 * set->flush_interval;
	return set->agent_idle > floor ? set->agent_idle : floor;
}

/* 0 when path is a regular file this process may execute, else an errno
 * (ENOEXEC for a file that is not executable). */
static int runnable(const char *path)
{
	struct stat st;
	if (stat(path, &st) != 0)
		return errno;
	if (!S_ISREG(st.st_mode) || access(path, X_OK) != 0)
		return ENOEXEC;
	return 0;
}

static int copy_path(char *out, size_t len, const char *path)
{
	if ((size_t)snprintf(out, len, "%s", path) >= len)
		return -ENAMETOOLONG;
	return 0;
}

/* true when this library is the one in the build tree (then the agent of
 * the same build is the one to run, not an installed one) */
static bool in_build_tree(void)
{
	Dl_info info;
	if (!MLOG_BUILD_DIR[0] || !dladdr(&self_anchor, &info) || !info.dli_fname)
		return false;
	char *lib = realpath(info.dli_fname, NULL);
	char *dir = realpath(MLOG_BUILD_DIR, NULL);
	bool same = false;
	char *slash = lib ? strrchr(lib, '/') : NULL;
	if (slash && dir) {
		*slash = '\0';
		same = strcmp(lib, dir) == 0;
	}
	free(lib);
	free(dir);
	return same;
}

int mlog_agent_find(char *path, size_t pathlen, char *err, size_t errlen)
{
	const char *env = getenv("MASTER_LOG_AGENT");
	if (env && *env) {
		int e = runnable(env);
		if (e == 0)
			return copy_path(path, pathlen, env);
		snprintf(err, errlen, AGENT_NAME " not found: MASTER_LOG_AGENT=%.120s: %s", env,
		         e == ENOEXEC ? "not an executable file" : strerror(e));
		return -ENOENT;
	}
	bool build = in_build_tree();
	if (build && runnable(MLOG_BUILD_AGENT) == 0)
		return copy_path(path, pathlen, MLOG_BUILD_AGENT);
	if (runnable(MLOG_INSTALL_AGENT) == 0)
		return copy_path(path, pathlen, MLOG_INSTALL_AGENT);
	const char *dirs = getenv("PATH");
	if (!dirs)
		dirs = "/usr/local/bin:/usr/bin:/bin";
	for (const char *p = dirs;;) {
		size_t n = strcspn(p, ":");
		char cand[PATH_MAX];
		/* an empty entry is the current folder */
		int len =
		    snprintf(cand, sizeof(cand), "%.*s/" AGENT_NAME, n ? (int)n : 1, n ? p : ".");
		if (len > 0 && (size_t)len < sizeof(cand) && runnable(cand) == 0)
			return copy_path(path, pathlen, cand);
		if (!p[n])
			break;
		p += n + 1;
	}
	snprintf(err, errlen,
	         AGENT_NAME " not found%s%s%s at " MLOG_INSTALL_AGENT
	                    " or on PATH, and MASTER_LOG_AGENT is not set",
	         build ? " in the build tree (" : "", build ? MLOG_BUILD_AGENT : "",
	         build ? ")," : "");
	return -ENOENT;
}

/* ---- the agent's environment ---- */

/* What the agent gets of the client's settings through its environment:
 * these replace the host's values, or are removed when the client has none. */
static const char *const passed[] = {
    "MASTER_LOG_API_KEY",
    "MASTER_LOG_BATCH_SIZE",
    "MASTER_LOG_FLUSH_INTERVAL_SECONDS",
    "MASTER_LOG_MIN_REQUEST_INTERVAL_SECONDS",
    "MASTER_LOG_CA_FILE",
};
#define NPASSED (sizeof(passed) / sizeof(passed[0]))

/* Seconds as plain decimal text (no exponent), e.g. "0.25", "1", "86400". */
static void seconds_text(char *buf, size_t len, double v)
{
	snprintf(buf, len, "%.6f", v);
	char *dot = strchr(buf, '.');
	if (!dot)
		return;
	char *end = buf + strlen(buf);
	while (end > dot + 1 && end[-1] == '0')
		*--end = '\0';
	if (end == dot + 1)
		*dot = '\0';
}

static bool is_passed(const char *entry)
{
	for (size_t i = 0; i < NPASSED; i++) {
		size_t n = strlen(passed[i]);
		if (strncmp(entry, passed[i], n) == 0 && entry[n] == '=')
			return true;
	}
	return false;
}

struct child_env {
	char **envp; /* the host's entries (borrowed) and ours (owned) */
	char *own[NPASSED];
};

static void child_env_free(struct child_env *ce)
{
	for (size_t i = 0; i < NPASSED; i++) {
		if (ce->own[i]) {
			explicit_bzero(ce->own[i], strlen(ce->own[i])); /* may hold the key */
			free(ce->own[i]);
		}
	}
	free(ce->envp);
}

/* The host's environment with the client's settings in place of the
 * MASTER_LOG_* variables above.  0 or -ENOMEM. */
static int child_env_make(const struct mlog_settings *set, struct child_env *ce)
{
	memset(ce, 0, sizeof(*ce));
	char flush[64], interval[64];
	seconds_text(flush, sizeof(flush), set->flush_interval);
	seconds_text(interval, sizeof(interval), set->min_request_interval);
	const char *values[NPASSED] = {set->api_key, NULL, flush, interval, set->ca_file};
	char batch[32];
	snprintf(batch, sizeof(batch), "%ld", set->batch_size);
	values[1] = batch;
	size_t n = 0;
	for (char **e = environ; e && *e; e++)
		n++;
	ce->envp = calloc(n + NPASSED + 1, sizeof(char *));
	if (!ce->envp)
		return -ENOMEM;
	size_t k = 0;
	for (char **e = environ; e && *e; e++)
		if (!is_passed(*e))
			ce->envp[k++] = *e;
	for (size_t i = 0; i < NPASSED; i++) {
		if (!values[i])
			continue;
		size_t len = strlen(passed[i]) + strlen(values[i]) + 2;
		if (!(ce->own[i] = malloc(len))) {
			child_env_free(ce);
			return -ENOMEM;
		}
		snprintf(ce->own[i], len, "%s=%s", passed[i], values[i]);
		ce->envp[k++] = ce->own[i];
	}
	ce->envp[k] = NULL;
	return 0;
}

/* ---- spawning and waiting ---- */

static double mono_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

enum waited { WAITED_EXITED, WAITED_TIMEOUT, WAITED_LOST };

/* Waits at most timeout seconds for the child pid; past that, kills it and
 * reaps it.  WAITED_LOST when the host reaps children itself (SIGCHLD
 * ignored, or its own handler got there first). */
static enum waited wait_child(pid_t pid, double timeout, int *status)
{
	double end = mono_now() + timeout;
	long nap_ns = 500000; /* 0.5 ms, growing to 20 ms */
	for (;;) {
		pid_t r = waitpid(pid, status, WNOHANG);
		if (r == pid)
			return WAITED_EXITED;
		if (r < 0 && errno != EINTR)
			return WAITED_LOST;
		if (mono_now() >= end) {
			kill(pid, SIGKILL);
			while ((r = waitpid(pid, status, 0)) < 0 && errno == EINTR)
				;
			return r == pid ? WAITED_TIMEOUT : WAITED_LOST;
		}
		struct timespec ts = {0, nap_ns};
		nanosleep(&ts, NULL);
		if (nap_ns < 20000000)
			nap_ns *= 2;
	}
}

int mlog_agent_spawn(const struct mlog_settings *set, struct spool *s, double timeout, char *err,
                     size_t errlen)
{
	char agent[PATH_MAX];
	int rc = mlog_agent_find(agent, sizeof(agent), err, errlen);
	if (rc)
		return rc;
	if (!set->endpoint_root) {
		snprintf(err, errlen, "no endpoint is set for the agent");
		return -EINVAL;
	}
	/* absolute: the agent does not need the host's working folder */
	char spool[PATH_MAX];
	if (!realpath(set->spool_dir, spool))
		snprintf(spool, sizeof(spool), "%s", set->spool_dir);
	char idle[64];
	seconds_text(idle, sizeof(idle), mlog_agent_idle_seconds(set));
	char *const argv[] = {agent, "--detach",   "--exit-idle",      idle, "--spool",
	                      spool, "--endpoint", set->endpoint_root, NULL};
	struct child_env ce;
	if (child_env_make(set, &ce) != 0) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t at;
	sigset_t none, all;
	sigemptyset(&none);
	sigfillset(&all);
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
	posix_spawn_file_actions_adddup2(&fa, 1, 2);
	posix_spawn_file_actions_addclosefrom_np(&fa, 3); /* glibc 2.34 */
	posix_spawnattr_init(&at);
	posix_spawnattr_setsigmask(&at, &none);
	posix_spawnattr_setsigdefault(&at, &all);
	posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSID | POSIX_SPAWN_SETSIGMASK |
	                                  POSIX_SPAWN_SETSIGDEF);
	pid_t pid = 0;
	rc = posix_spawn(&pid, agent, &fa, &at, argv, ce.envp);
	posix_spawnattr_destroy(&at);
	posix_spawn_file_actions_destroy(&fa);
	child_env_free(&ce);
	if (rc != 0) {
		snprintf(err, errlen, "cannot start %.150s: %s", agent, strerror(rc));
		return -rc;
	}
	int st = 0;
	enum waited w = wait_child(pid, timeout, &st);
	if (w == WAITED_EXITED && WIFEXITED(st) && WEXITSTATUS(st) == 0)
		return 0;
	/* it did not start; another one may have (it holds the lock) */
	if (spool_agent_running(s, NULL) == 1)
		return 0;
	if (w == WAITED_TIMEOUT)
		snprintf(err, errlen, "%.150s did not start within %g s", agent, timeout);
	else if (w == WAITED_LOST)
		snprintf(
		    err, errlen,
		    "%.150s ended (this program reaps child processes itself, so its status is "
		    "lost) and no agent holds the spool's lock",
		    agent);
	else if (WIFSIGNALED(st))
		snprintf(err, errlen, "%.150s was killed by signal %d", agent, WTERMSIG(st));
	else if (WEXITSTATUS(st) == 2)
		snprintf(err, errlen,
		         "%.150s refused the settings (exit status 2; run it with --spool, "
		         "--endpoint and --check-config to see why)",
		         agent);
	else
		snprintf(err, errlen, "%.150s could not start on the spool (exit status %d)", agent,
		         WEXITSTATUS(st));
	return w == WAITED_TIMEOUT ? -ETIMEDOUT : -ECHILD;
}
