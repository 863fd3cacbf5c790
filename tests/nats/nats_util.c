/* nats_util.c — see nats_util.h. */
#include "nats_util.h"

#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

const char *nu_server_prog(void)
{
	const char *p = getenv("NATS_SERVER");
	if (p && *p)
		return access(p, X_OK) == 0 ? p : NULL;
	static const char *const known[] = {"/usr/sbin/nats-server", "/usr/bin/nats-server",
					    "/usr/local/bin/nats-server"};
	for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
		if (access(known[i], X_OK) == 0)
			return known[i];
	return NULL;
}

int nu_free_port(void)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	ck_assert_int_ge(fd, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	socklen_t l = sizeof(a);
	ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&a, &l), 0);
	close(fd);
	return ntohs(a.sin_port);
}

static bool port_open(int port)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
				.sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	bool ok = connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
	close(fd);
	return ok;
}

static void write_conf(struct nu_cluster *c, int i)
{
	struct nu_node *nd = &c->node[i];
	FILE *f = fopen(nd->conf, "w");
	ck_assert_ptr_nonnull(f);
	fprintf(f, "server_name: n%d\nlisten: 127.0.0.1:%d\n", i + 1, nd->port);
	fprintf(f, "jetstream {\n  store_dir: \"%s/js\"\n  max_memory_store: 64MB\n  max_file_store: 2GB\n}\n",
		nd->dir);
	if (c->n > 1) {
		fprintf(f, "cluster {\n  name: spooltest\n  listen: 127.0.0.1:%d\n  routes: [", nd->cport);
		const char *sep = "";
		for (int k = 0; k < c->n; k++)
			if (k != i) {
				fprintf(f, "%s nats://127.0.0.1:%d", sep, c->node[k].cport);
				sep = ",";
			}
		fprintf(f, " ]\n}\n");
	}
	fprintf(f, "%s\n", c->extra);
	fclose(f);
}

void nu_node_start(struct nu_cluster *c, int i)
{
	struct nu_node *nd = &c->node[i];
	const char *prog = nu_server_prog();
	ck_assert_ptr_nonnull(prog);
	pid_t parent = getpid();
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		/* never outlive the test */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)
			_exit(1);
		int fd = open(nd->log, O_WRONLY | O_CREAT | O_APPEND, 0600);
		if (fd >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
		}
		execl(prog, prog, "-c", nd->conf, (char *)NULL);
		_exit(127);
	}
	nd->pid = pid;
	double end = now_s() + 20;
	while (!port_open(nd->port)) {
		ck_assert_msg(now_s() < end, "nats-server n%d did not listen on %d (log %s)", i + 1, nd->port, nd->log);
		ck_assert_msg(waitpid(pid, NULL, WNOHANG) == 0, "nats-server n%d exited (log %s)", i + 1, nd->log);
		usleep(20000);
	}
}

void nu_cluster_start(struct nu_cluster *c, const char *root, int n, const char *extra)
{
	memset(c, 0, sizeof(*c));
	ck_assert(n >= 1 && n <= NU_MAX_NODES);
	c->n = n;
	snprintf(c->extra, sizeof(c->extra), "%s", extra ? extra : "");
	for (int i = 0; i < n; i++) {
		struct nu_node *nd = &c->node[i];
		nd->port = nu_free_port();
		nd->cport = nu_free_port();
		snprintf(nd->dir, sizeof(nd->dir), "%s/n%d", root, i + 1);
		ck_assert_int_eq(mkdir(nd->dir, 0700), 0);
		snprintf(nd->conf, sizeof(nd->conf), "%s/server.conf", nd->dir);
		snprintf(nd->log, sizeof(nd->log), "%s/server.log", nd->dir);
		snprintf(c->urls[i], sizeof(c->urls[i]), "nats://127.0.0.1:%d", nd->port);
		c->url_list[i] = c->urls[i];
	}
	for (int i = 0; i < n; i++)
		write_conf(c, i);
	for (int i = 0; i < n; i++)
		nu_node_start(c, i);
}

void nu_node_kill(struct nu_cluster *c, int i)
{
	if (c->node[i].pid > 0) {
		kill(c->node[i].pid, SIGKILL);
		waitpid(c->node[i].pid, NULL, 0);
	}
	c->node[i].pid = 0;
}

void nu_cluster_stop(struct nu_cluster *c)
{
	for (int i = 0; i < c->n; i++)
		nu_node_kill(c, i);
}

natsConnection *nu_connect(const struct nu_cluster *c, const char *user, const char *password)
{
	natsOptions *o = NULL;
	ck_assert_int_eq(natsOptions_Create(&o), NATS_OK);
	ck_assert_int_eq(natsOptions_SetServers(o, (const char **)c->url_list, c->n), NATS_OK);
	natsOptions_SetMaxReconnect(o, -1);
	natsOptions_SetReconnectWait(o, 100);
	if (user)
		natsOptions_SetUserInfo(o, user, password);
	natsConnection *nc = NULL;
	natsStatus s = NATS_ERR;
	double end = now_s() + 20;
	while ((s = natsConnection_Connect(&nc, o)) != NATS_OK && now_s() < end)
		usleep(100000);
	ck_assert_msg(s == NATS_OK, "cannot connect to the test servers: %s", natsStatus_GetText(s));
	natsOptions_Destroy(o);
	return nc;
}

/* A JetStream context whose API requests wait up to 5 s. */
static jsCtx *js_context(natsConnection *nc)
{
	jsCtx *js = NULL;
	jsOptions jo;
	jsOptions_Init(&jo);
	jo.Wait = 5000;
	ck_assert_int_eq(natsConnection_JetStream(&js, nc, &jo), NATS_OK);
	return js;
}

struct stream_state {
	uint64_t msgs, first, last;
};

/* The stream's message count and sequence range; retries for up to 30 s
 * while the cluster elects the stream's leader. */
static struct stream_state stream_state(jsCtx *js, const char *name)
{
	jsStreamInfo *si = NULL;
	natsStatus s = NATS_ERR;
	double end = now_s() + 30;
	while ((s = js_GetStreamInfo(&si, js, name, NULL, NULL)) != NATS_OK && now_s() < end)
		usleep(200000);
	ck_assert_msg(s == NATS_OK, "stream info %s: %s", name, natsStatus_GetText(s));
	struct stream_state st = {si->State.Msgs, si->State.FirstSeq, si->State.LastSeq};
	jsStreamInfo_Destroy(si);
	return st;
}

void nu_add_stream(natsConnection *nc, const char *name, const char *subject, int replicas)
{
	jsCtx *js = js_context(nc);
	jsStreamConfig sc;
	jsStreamConfig_Init(&sc);
	sc.Name = name;
	const char *subs[1] = {subject};
	sc.Subjects = subs;
	sc.SubjectsLen = 1;
	sc.Replicas = replicas;
	sc.Storage = js_FileStorage;
	sc.Duplicates = (int64_t)600 * 1000000000; /* ns */
	natsStatus s = NATS_ERR;
	jsErrCode jerr = 0;
	double end = now_s() + 60;
	for (;;) {
		jsStreamInfo *si = NULL;
		s = js_AddStream(&si, js, &sc, NULL, &jerr);
		jsStreamInfo_Destroy(si);
		if (s == NATS_OK || now_s() > end)
			break;
		usleep(250000);
	}
	ck_assert_msg(s == NATS_OK, "cannot add stream %s: %s (%d) %s", name, natsStatus_GetText(s), (int)jerr,
		      nats_GetLastError(NULL));
	jsCtx_Destroy(js);
}

uint64_t nu_stream_msgs(natsConnection *nc, const char *name)
{
	jsCtx *js = js_context(nc);
	uint64_t n = stream_state(js, name).msgs;
	jsCtx_Destroy(js);
	return n;
}

size_t nu_read_stream(natsConnection *nc, const char *stream, void (*fn)(void *arg, natsMsg *m), void *arg)
{
	jsCtx *js = js_context(nc);
	struct stream_state st = stream_state(js, stream);
	/* Message by message, by sequence, from the stream's leader: a
	 * consumer (even an ordered one) can stall or skip while it resets
	 * after a node restart, and a count from it would blame the agent
	 * for the reader's gap.  A sequence the stream no longer holds
	 * (10037, no message found) is skipped; a timeout while the cluster
	 * moves its leader is retried for up to 60 s in all. */
	size_t n = 0;
	double end = now_s() + 60;
	for (uint64_t seq = st.first; st.msgs > 0 && seq <= st.last; seq++) {
		natsMsg *m = NULL;
		jsErrCode jerr = 0;
		natsStatus s;
		while ((s = js_GetMsg(&m, js, stream, seq, NULL, &jerr)) != NATS_OK && jerr != JSNoMessageFoundErr &&
		       now_s() < end)
			usleep(100000);
		if (s != NATS_OK && jerr == JSNoMessageFoundErr)
			continue;
		ck_assert_msg(s == NATS_OK, "%s: message %llu: %s (JetStream error %d)", stream,
			      (unsigned long long)seq, natsStatus_GetText(s), (int)jerr);
		fn(arg, m);
		natsMsg_Destroy(m);
		n++;
	}
	jsCtx_Destroy(js);
	return n;
}

long nu_msg_number(const char *json, size_t len)
{
	json_t *j = json_loadb(json, len, 0, NULL);
	const char *m = j ? json_string_value(json_object_get(j, "message")) : NULL;
	long n = -1;
	if (m && strncmp(m, "msg ", 4) == 0)
		n = strtol(m + 4, NULL, 10);
	json_decref(j);
	return n;
}

pid_t nu_spawn(const char *const *argv, const char *log)
{
	pid_t parent = getpid();
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)
			_exit(1);
		int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0600);
		if (fd >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
		}
		execv(argv[0], (char *const *)argv);
		_exit(127);
	}
	return pid;
}

int nu_stop(pid_t pid, int sig, double timeout)
{
	kill(pid, sig);
	double end = now_s() + timeout;
	int st = 0;
	for (;;) {
		pid_t r = waitpid(pid, &st, WNOHANG);
		if (r == pid)
			return WIFEXITED(st) ? WEXITSTATUS(st) : -WTERMSIG(st);
		if (now_s() > end) {
			kill(pid, SIGKILL);
			waitpid(pid, &st, 0);
			return -1000;
		}
		usleep(10000);
	}
}
