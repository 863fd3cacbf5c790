/* nats_util.h — nats-server processes for the nats suite: one node or a
 * three-node JetStream cluster on 127.0.0.1 with free ports, each in a
 * folder of the test's temporary directory, killed with the test (they
 * get SIGKILL when the process that started them dies: PR_SET_PDEATHSIG),
 * and reading a stream back.  Helpers ck_assert on failure. */
#ifndef TESTS_NATS_UTIL_H
#define TESTS_NATS_UTIL_H

#include <nats/nats.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#define NU_MAX_NODES 3

struct nu_node {
	pid_t pid;
	int port, cport;
	char dir[320];
	char conf[340];
	char log[340];
};

struct nu_cluster {
	int n;
	struct nu_node node[NU_MAX_NODES];
	char urls[NU_MAX_NODES][64];
	const char *url_list[NU_MAX_NODES];
	char extra[512]; /* more lines for each node's configuration */
};

/* The nats-server program (NATS_SERVER, else /usr/sbin, /usr/bin or /usr/local/bin), or NULL. */
const char *nu_server_prog(void);
/* Starts n nodes (1, or 3 in a cluster) under root; extra: more lines of
 * server configuration (NULL: none). */
void nu_cluster_start(struct nu_cluster *c, const char *root, int n, const char *extra);
void nu_node_kill(struct nu_cluster *c, int i);
void nu_node_start(struct nu_cluster *c, int i);
/* SIGKILLs every node still running. */
void nu_cluster_stop(struct nu_cluster *c);

/* A connection to the cluster (user/password may be NULL). */
natsConnection *nu_connect(const struct nu_cluster *c, const char *user, const char *password);
/* Adds stream `name` taking `subjects` (one pattern) with `replicas`, file
 * storage and a 10-minute de-duplication window; retries while the
 * cluster elects its leaders (up to 60 s). */
void nu_add_stream(natsConnection *nc, const char *name, const char *subject, int replicas);
/* Messages in the stream now. */
uint64_t nu_stream_msgs(natsConnection *nc, const char *name);
/* Reads every message the stream holds, one by one by sequence (each
 * a get from the stream's leader, not a consumer): calls fn for each;
 * returns how many. */
size_t nu_read_stream(natsConnection *nc, const char *stream, void (*fn)(void *arg, natsMsg *m), void *arg);

/* Starts argv[0] with stdout and stderr appended to log; it gets SIGKILL
 * when the test process dies. */
pid_t nu_spawn(const char *const *argv, const char *log);
/* Sends sig and waits up to timeout seconds (then SIGKILL); returns the
 * exit status, or -signal. */
int nu_stop(pid_t pid, int sig, double timeout);

/* The "msg N" number of an event's JSON, or -1. */
long nu_msg_number(const char *json, size_t len);
/* A free TCP port on 127.0.0.1 (bound then closed). */
int nu_free_port(void);

#endif
