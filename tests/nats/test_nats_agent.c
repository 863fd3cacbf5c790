/* test_nats_agent.c — the `nats` transport (nats.so) through the real
 * spool-agent, against real nats-server processes on 127.0.0.1 (issue 14):
 *
 *  - a three-node JetStream cluster with an R3 stream: 20,000 events from
 *    a spool reach the stream once each by Nats-Msg-Id while one node is
 *    SIGKILLed mid-drain and restarted and the agent is SIGKILLed 10 times
 *    at random; the spool ends empty, nothing is dead-lettered;
 *  - an event over the server's max_payload is dead-lettered (413, with
 *    the reason), the others reach the stream;
 *  - wrong credentials, a stream that does not exist, an unreachable
 *    cluster: a message naming the key or the server, every event still
 *    in the spool, nothing dead-lettered. */
#include <check.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../agent/harness.h"
#include "check_main.h"
#include "nats_util.h"

static void write_config(const struct th_dir *d, const struct nu_cluster *c, const char *servers_override,
			 const char *stream, const char *extra)
{
	FILE *f = fopen(d->config, "w");
	ck_assert_ptr_nonnull(f);
	fprintf(f,
		"spool: %s\n"
		"plugin_dir: %s\n"
		"transports: [nats]\n"
		"batch_size: 500\n"
		"max_batch_size: 500\n"
		"max_in_flight: 4\n"
		"retry:\n"
		"  initial_seconds: 0.05\n"
		"  max_seconds: 0.5\n"
		"  auth_seconds: 0.5\n"
		"log:\n"
		"  level: info\n"
		"nats:\n"
		"  subject: logs.{hostname}\n"
		"  stream: %s\n"
		"  ack_timeout_seconds: 2\n"
		"  connect_timeout_seconds: 1\n",
		d->spool, getenv("NATS_PLUGIN_DIR"), stream);
	if (servers_override) {
		fprintf(f, "  servers: [%s]\n", servers_override);
	} else {
		fprintf(f, "  servers: [");
		for (int i = 0; i < c->n; i++)
			fprintf(f, "%s%s", i ? ", " : "", c->urls[i]);
		fprintf(f, "]\n");
	}
	if (extra)
		fprintf(f, "%s", extra);
	fclose(f);
}

/* What the stream holds: each "msg N" once, with Nats-Msg-Id equal to its
 * client_event_id. */
struct seen {
	long n;
	unsigned char *count;
	size_t bad_id, out_of_range;
};

static void on_msg(void *arg, natsMsg *m)
{
	struct seen *s = arg;
	const char *data = natsMsg_GetData(m);
	int len = natsMsg_GetDataLength(m);
	long k = nu_msg_number(data, (size_t)len);
	if (k < 1 || k > s->n) {
		s->out_of_range++;
		return;
	}
	if (s->count[k] < 255)
		s->count[k]++;
	const char *id = NULL;
	json_t *j = json_loadb(data, (size_t)len, 0, NULL);
	const char *cid = j ? json_string_value(json_object_get(j, "client_event_id")) : NULL;
	if (natsMsgHeader_Get(m, "Nats-Msg-Id", &id) != NATS_OK || !cid || strcmp(id, cid) != 0)
		s->bad_id++;
	json_decref(j);
}

static void assert_stream_each_once(natsConnection *nc, const char *stream, long n)
{
	ck_assert_uint_eq(nu_stream_msgs(nc, stream), (uint64_t)n);
	struct seen s = {.n = n, .count = calloc((size_t)n + 1, 1)};
	size_t got = nu_read_stream(nc, stream, on_msg, &s);
	ck_assert_uint_eq(got, (size_t)n);
	ck_assert_uint_eq(s.out_of_range, 0);
	ck_assert_uint_eq(s.bad_id, 0);
	for (long k = 1; k <= n; k++)
		ck_assert_msg(s.count[k] == 1, "msg %ld is in the stream %u times", k, s.count[k]);
	free(s.count);
}

struct progress {
	const char *spool;
	uint64_t below;
};

static bool below(void *arg)
{
	struct progress *p = arg;
	return th_stats(p->spool).pending <= p->below;
}

static bool spool_empty(void *arg)
{
	return th_stats(arg).pending == 0;
}

START_TEST(cluster_drain_with_kills)
{
	enum { N = 20000 };
	struct th_dir d;
	th_dir_make(&d, "nats-cluster");
	struct nu_cluster c;
	nu_cluster_start(&c, d.root, 3, NULL);
	natsConnection *nc = nu_connect(&c, NULL, NULL);
	nu_add_stream(nc, "LOGS", "logs.>", 3);
	th_fill(d.spool, 1, N, 0);
	write_config(&d, &c, NULL, "LOGS", NULL);

	srand((unsigned)getpid());
	for (int round = 0; round < 10; round++) {
		pid_t a = th_agent_start(&d, NULL);
		/* SIGKILL at a random instant once the agent passed its share
		 * of the drain (rounds spread over the first 80%) */
		struct progress p = {.spool = d.spool, .below = (uint64_t)(N - (round + 1) * (N * 8 / 10) / 10)};
		ck_assert_msg(th_wait(below, &p, 60), "round %d: no progress (agent log %s)", round, d.log);
		usleep((useconds_t)(rand() % 30000));
		ck_assert_int_eq(th_agent_stop(a, SIGKILL, 10), -SIGKILL);
		if (round == 3)
			nu_node_kill(&c, 1); /* a node dies mid-drain ... */
		if (round == 6)
			nu_node_start(&c, 1); /* ... and comes back */
	}
	ck_assert_msg(th_stats(d.spool).pending > 0, "the agent was meant to be killed mid-drain");
	pid_t a = th_agent_start(&d, NULL);
	bool empty = th_wait(spool_empty, d.spool, 120);
	ck_assert_int_eq(th_agent_stop(a, SIGTERM, 30), 0);
	ck_assert_msg(empty, "spool still holds %llu events (agent log %s)",
		      (unsigned long long)th_stats(d.spool).pending, d.log);
	ck_assert_uint_eq(th_dead(d.spool, NULL, NULL, 0), 0);
	assert_stream_each_once(nc, "LOGS", N);

	natsConnection_Destroy(nc);
	nu_cluster_stop(&c);
	th_dir_remove(&d);
}
END_TEST

/* One event of 8 KiB against a server whose max_payload is 4 KiB. */
START_TEST(over_max_payload_is_dead_lettered)
{
	struct th_dir d;
	th_dir_make(&d, "nats-payload");
	struct nu_cluster c;
	nu_cluster_start(&c, d.root, 1, "max_payload: 4096");
	natsConnection *nc = nu_connect(&c, NULL, NULL);
	nu_add_stream(nc, "LOGS", "logs.>", 1);
	th_fill(d.spool, 1, 50, 0);
	char big[8200];
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	th_fill_text(d.spool, big);
	th_fill(d.spool, 51, 50, 0);
	write_config(&d, &c, NULL, "LOGS", NULL);
	ck_assert_int_eq(th_agent_run(&d, 60, "--once", NULL), 0);
	int status = 0;
	char reason[256] = "";
	ck_assert_uint_eq(th_dead(d.spool, &status, reason, sizeof(reason)), 1);
	ck_assert_int_eq(status, 413);
	ck_assert_msg(strstr(reason, "max_payload"), "reason: %s", reason);
	ck_assert_uint_eq(th_stats(d.spool).pending, 0);
	assert_stream_each_once(nc, "LOGS", 100);
	natsConnection_Destroy(nc);
	nu_cluster_stop(&c);
	th_dir_remove(&d);
}
END_TEST

/* Runs the agent for `seconds`, then SIGTERM; every event must still be
 * in the spool, none dead, and the log must hold `text`. */
static void run_and_keep(struct th_dir *d, long n, double seconds, const char *text)
{
	pid_t a = th_agent_start(d, NULL);
	usleep((useconds_t)(seconds * 1e6));
	int rc = th_agent_stop(a, SIGTERM, 30);
	ck_assert_msg(rc == 0, "agent exit %d (log %s)", rc, d->log);
	ck_assert_uint_eq(th_stats(d->spool).pending, (uint64_t)n);
	ck_assert_uint_eq(th_dead(d->spool, NULL, NULL, 0), 0);
	ck_assert_msg(th_file_has(d->log, text), "agent log %s lacks '%s'", d->log, text);
}

START_TEST(wrong_credentials)
{
	struct th_dir d;
	th_dir_make(&d, "nats-auth");
	struct nu_cluster c;
	nu_cluster_start(&c, d.root, 1, "authorization { user: spool, password: right-one }");
	natsConnection *nc = nu_connect(&c, "spool", "right-one");
	nu_add_stream(nc, "LOGS", "logs.>", 1);
	th_fill(d.spool, 1, 200, 0);
	char pw[400], extra[600];
	snprintf(pw, sizeof(pw), "%s/password", d.root);
	FILE *f = fopen(pw, "w");
	fputs("wrong-one\n", f);
	fclose(f);
	chmod(pw, 0600);
	snprintf(extra, sizeof(extra), "  user: spool\n  password_file: %s\n", pw);
	write_config(&d, &c, NULL, "LOGS", extra);
	run_and_keep(&d, 200, 2.0, "refused the credentials of nats.user and nats.password_file");
	ck_assert_uint_eq(nu_stream_msgs(nc, "LOGS"), 0);

	/* a password file others may read is refused at start, naming the key */
	chmod(pw, 0644);
	ck_assert_int_eq(th_agent_run(&d, 30, "--check-config", NULL), 2);
	ck_assert(th_file_has(d.log, "password_file"));
	ck_assert(th_file_has(d.log, "0600"));

	/* the right password: everything goes */
	f = fopen(pw, "w");
	fputs("right-one\n", f);
	fclose(f);
	chmod(pw, 0600);
	ck_assert_int_eq(th_agent_run(&d, 60, "--once", NULL), 0);
	assert_stream_each_once(nc, "LOGS", 200);
	natsConnection_Destroy(nc);
	nu_cluster_stop(&c);
	th_dir_remove(&d);
}
END_TEST

START_TEST(missing_stream)
{
	struct th_dir d;
	th_dir_make(&d, "nats-nostream");
	struct nu_cluster c;
	nu_cluster_start(&c, d.root, 1, NULL);
	natsConnection *nc = nu_connect(&c, NULL, NULL);
	nu_add_stream(nc, "OTHER", "other.>", 1);
	th_fill(d.spool, 1, 200, 0);
	write_config(&d, &c, NULL, "LOGS", NULL);
	run_and_keep(&d, 200, 2.0, "nats.stream: stream 'LOGS' does not exist");
	/* a stream that exists but does not take the subject */
	write_config(&d, &c, NULL, "OTHER", NULL);
	run_and_keep(&d, 200, 2.0, "nats.subject: stream 'OTHER' does not take subject");
	/* once the stream is there, everything goes */
	nu_add_stream(nc, "LOGS", "logs.>", 1);
	write_config(&d, &c, NULL, "LOGS", NULL);
	ck_assert_int_eq(th_agent_run(&d, 60, "--once", NULL), 0);
	assert_stream_each_once(nc, "LOGS", 200);
	natsConnection_Destroy(nc);
	nu_cluster_stop(&c);
	th_dir_remove(&d);
}
END_TEST

START_TEST(unreachable_cluster)
{
	struct th_dir d;
	th_dir_make(&d, "nats-down");
	th_fill(d.spool, 1, 200, 0);
	char servers[200];
	int p1 = nu_free_port(), p2 = nu_free_port();
	snprintf(servers, sizeof(servers), "nats://127.0.0.1:%d, nats://127.0.0.1:%d", p1, p2);
	write_config(&d, NULL, servers, "LOGS", NULL);
	char text[100];
	snprintf(text, sizeof(text), "cannot connect to nats.servers nats://127.0.0.1:%d (and 1 more)", p1);
	run_and_keep(&d, 200, 2.0, text);
	/* a URL of another scheme is a configuration error naming the key */
	write_config(&d, NULL, "http://127.0.0.1:4222", "LOGS", NULL);
	ck_assert_int_eq(th_agent_run(&d, 30, "--check-config", NULL), 2);
	ck_assert(th_file_has(d.log, "servers"));
	ck_assert(th_file_has(d.log, "not a nats:// or tls:// URL"));
	ck_assert_uint_eq(th_stats(d.spool).pending, 200);
	th_dir_remove(&d);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("nats-agent");
	TCase *tc = tcase_create("agent");
	tcase_set_timeout(tc, 240);
	tcase_add_test(tc, cluster_drain_with_kills);
	tcase_add_test(tc, over_max_payload_is_dead_lettered);
	tcase_add_test(tc, wrong_credentials);
	tcase_add_test(tc, missing_stream);
	tcase_add_test(tc, unreachable_cluster);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	if (!nu_server_prog()) {
		fprintf(stderr, "nats-server not found: skipped\n");
		return 77;
	}
	return tc_run(suite());
}
