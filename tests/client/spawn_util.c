/* spawn_util.c — see spawn_util.h. */
#include <check.h>
#include <errno.h>
#include <jansson.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <spool/spool.h>

#include "codec/json.h"
#include "spawn_util.h"

extern char **environ;

void su_clear_env(void)
{
	for (;;) {
		char name[256] = "";
		for (char **e = environ; *e; e++) {
			if (strncmp(*e, "MASTER_LOG_", 11) == 0) {
				snprintf(name, sizeof(name), "%.*s", (int)strcspn(*e, "="), *e);
				break;
			}
		}
		if (!name[0])
			return;
		unsetenv(name);
	}
}

void su_logprog_start(struct su_run *r, const struct th_dir *d, const char *tag, const char *count,
                      const char *prefix, const char *flush)
{
	memset(r, 0, sizeof(*r));
	snprintf(r->out_path, sizeof(r->out_path), "%s/prog-%s.out", d->root, tag);
	const char *prog = th_prog("MLOG_LOGPROG");
	const char *argv[] = {prog, count, prefix, flush, NULL};
	r->started = th_now();
	r->pid = fork();
	ck_assert_int_ge(r->pid, 0);
	if (r->pid == 0) {
		int fd = open(r->out_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
		if (fd >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
			close(fd);
		}
		execv(prog, (char *const *)argv);
		_exit(127);
	}
}

void su_finish(struct su_run *r, double timeout)
{
	double end = r->started + timeout;
	int st;
	for (;;) {
		pid_t w = waitpid(r->pid, &st, WNOHANG);
		if (w == r->pid)
			break;
		if (th_now() > end) {
			kill(r->pid, SIGKILL);
			waitpid(r->pid, &st, 0);
			ck_abort_msg("mlog-logprog did not end within %.0f s", timeout);
		}
		usleep(2000);
	}
	r->seconds = th_now() - r->started;
	r->status = WIFEXITED(st) ? WEXITSTATUS(st) : -WTERMSIG(st);
	FILE *f = fopen(r->out_path, "r");
	size_t n = f ? fread(r->out, 1, sizeof(r->out) - 1, f) : 0;
	r->out[n] = '\0';
	if (f)
		fclose(f);
}

void su_logprog(struct su_run *r, const struct th_dir *d, const char *count, const char *prefix,
                const char *flush)
{
	su_logprog_start(r, d, "run", count, prefix, flush);
	su_finish(r, 120);
}

int su_lines(const char *path)
{
	FILE *f = fopen(path, "r");
	if (!f)
		return 0;
	int n = 0, c;
	while ((c = getc(f)) != EOF)
		n += c == '\n';
	fclose(f);
	return n;
}

size_t su_rx_count(const char *out)
{
	return (size_t)su_lines(out);
}

struct rx_wait {
	const char *out;
	size_t n;
};

static bool rx_has(void *arg)
{
	struct rx_wait *w = arg;
	return su_rx_count(w->out) >= w->n;
}

bool su_wait_rx(const char *out, size_t n, double timeout)
{
	struct rx_wait w = {out, n};
	return th_wait(rx_has, &w, timeout) && su_rx_count(out) == n;
}

static struct spool *open_spool(const char *spool)
{
	if (access(spool, F_OK) != 0)
		return NULL;
	struct spool_options o;
	spool_options_init(&o);
	o.durability = SPOOL_SYNC;
	struct spool *s = NULL;
	char err[512];
	return spool_open(spool, &o, &s, err, sizeof(err)) == 0 ? s : NULL;
}

long su_agent_pid(const char *spool)
{
	struct spool *s = open_spool(spool);
	long pid = 0;
	if (s && spool_agent_running(s, &pid) != 1)
		pid = 0;
	spool_close(s);
	return pid;
}

static bool lock_free(void *arg)
{
	return su_agent_pid(arg) == 0;
}

bool su_wait_lock_free(const char *spool, double timeout)
{
	return th_wait(lock_free, (void *)spool, timeout);
}

void su_stop_agent(const char *spool)
{
	double end = th_now() + 20;
	long pid;
	while ((pid = su_agent_pid(spool)) != 0 && th_now() < end) {
		if (pid > 0 && pid != (long)getpid())
			kill((pid_t)pid, SIGTERM);
		usleep(20000);
	}
}

void su_counting_agent(const struct th_dir *d, char *count, size_t len)
{
	char script[400];
	snprintf(count, len, "%s/agent-starts", d->root);
	snprintf(script, sizeof(script), "%s/agent-wrapper.sh", d->root);
	FILE *f = fopen(script, "w");
	ck_assert_ptr_nonnull(f);
	fprintf(f, "#!/bin/sh\necho start >> '%s'\nexec '%s' \"$@\"\n", count,
	        th_prog("SPOOL_AGENT"));
	fclose(f);
	ck_assert_int_eq(chmod(script, 0700), 0);
	setenv("MASTER_LOG_AGENT", script, 1);
}

json_t *su_spool_events(const char *spool)
{
	struct spool_options o;
	spool_options_init(&o);
	o.durability = SPOOL_SYNC;
	struct spool *s;
	char err[512];
	ck_assert_msg(spool_open(spool, &o, &s, err, sizeof(err)) == 0, "%s", err);
	struct spool_batch *b;
	ck_assert_int_eq(spool_read_batch(s, 0, 0, 0, &b), 0);
	json_t *arr = json_array();
	const struct spool_record *r = spool_batch_records(b);
	for (size_t i = 0; i < spool_batch_count(b); i++) {
		struct spool_buf out = {0};
		ck_assert_int_eq(spool_event_to_json(r[i].data, r[i].len, NULL, &out), 0);
		json_error_t je;
		json_t *j = json_loadb(out.data, out.len, 0, &je);
		ck_assert_msg(j != NULL, "%s", je.text);
		json_array_append_new(arr, j);
		spool_buf_free(&out);
	}
	spool_batch_release(b);
	spool_close(s);
	return arr;
}
