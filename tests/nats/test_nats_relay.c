/* test_nats_relay.c — mlog-relay against real processes (issue 14): a
 * three-node JetStream cluster with an R3 stream filled by the real
 * spool-agent through nats.so, two mlog-relay processes on one durable
 * consumer feeding the real mlog-receiver over HTTP, one of them SIGKILLed
 * mid-way.  The receiver stores all 20,000 once each (it drops by
 * client_event_id what a killed relay had sent but not acknowledged); a
 * poison event the receiver rejects (422) lands on the dead-letter
 * subject with its status and reason; the consumer ends with nothing
 * pending.  Then: a relay facing a Master Log that answers 503 keeps
 * every message (nothing dead-lettered), and its configuration errors
 * name the key. */
#include <check.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../agent/harness.h"
#include "check_main.h"
#include "nats_util.h"

static void agent_config(const struct th_dir *d, const struct nu_cluster *c)
{
	FILE *f = fopen(d->config, "w");
	ck_assert_ptr_nonnull(f);
	fprintf(f,
		"spool: %s\nplugin_dir: %s\ntransports: [nats]\nbatch_size: 1000\nmax_batch_size: 1000\n"
		"max_in_flight: 4\nretry:\n  initial_seconds: 0.05\n  max_seconds: 0.5\n"
		"nats:\n  subject: logs.{hostname}\n  stream: LOGS\n  servers: [%s, %s, %s]\n",
		d->spool, getenv("NATS_PLUGIN_DIR"), c->urls[0], c->urls[1], c->urls[2]);
	fclose(f);
}

static void relay_config(const char *path, const struct nu_cluster *c, const char *endpoint, const char *extra)
{
	FILE *f = fopen(path, "w");
	ck_assert_ptr_nonnull(f);
	fprintf(f,
		"http:\n  endpoint: %s\n  timeouts:\n    request_seconds: 3\n"
		"batch_size: 200\nmax_batch_size: 200\nmax_in_flight: 2\n"
		"retry:\n  initial_seconds: 0.05\n  max_seconds: 0.5\n  auth_seconds: 1\n"
		"log:\n  level: info\n"
		"nats:\n  stream: LOGS\n  servers: [",
		endpoint);
	for (int i = 0; i < c->n; i++)
		fprintf(f, "%s%s", i ? ", " : "", c->urls[i]);
	/* a short AckWait: what the killed relay held comes back within the
	 * test's time */
	fprintf(f, "]\nrelay:\n  consumer: RELAY\n  dead_letter_subject: mlog.dead\n  ack_wait_seconds: 5\n%s",
		extra ? extra : "");
	fclose(f);
}

static pid_t relay_start(const char *config, const char *log)
{
	const char *argv[] = {getenv("MLOG_RELAY"), "-c", config, NULL};
	return nu_spawn(argv, log);
}

struct stat_at_least {
	const struct th_rx *rx;
	const char *name;
	long n;
};

static bool stat_reached(void *arg)
{
	struct stat_at_least *s = arg;
	return th_rx_stat(s->rx, s->name) >= s->n;
}

/* mlog-relay status --json: the consumer's figures. */
static json_t *relay_status(const char *config)
{
	char cmd[700];
	snprintf(cmd, sizeof(cmd), "'%s' -c '%s' status --json", getenv("MLOG_RELAY"), config);
	FILE *p = popen(cmd, "r");
	ck_assert_ptr_nonnull(p);
	json_t *j = json_loadf(p, 0, NULL);
	ck_assert_int_eq(pclose(p), 0);
	ck_assert_ptr_nonnull(j);
	return j;
}

struct dead_seen {
	char status[16];
	char reason[256];
	bool poison;
};

static void on_dead(void *arg, natsMsg *m)
{
	struct dead_seen *d = arg;
	const char *st = NULL, *why = NULL;
	if (natsMsgHeader_Get(m, "Mlog-Status", &st) == NATS_OK)
		snprintf(d->status, sizeof(d->status), "%s", st);
	if (natsMsgHeader_Get(m, "Mlog-Reason", &why) == NATS_OK)
		snprintf(d->reason, sizeof(d->reason), "%s", why);
	d->poison = memmem(natsMsg_GetData(m), (size_t)natsMsg_GetDataLength(m), "a POISON event", 14) != NULL;
}

static bool consumer_settled(void *cfg)
{
	json_t *s = relay_status(cfg);
	bool ok = json_integer_value(json_object_get(s, "num_pending")) == 0 &&
		  json_integer_value(json_object_get(s, "num_ack_pending")) == 0;
	json_decref(s);
	if (!ok)
		usleep(300000);
	return ok;
}

START_TEST(two_relays_one_killed)
{
	enum { N = 20000 };
	struct th_dir d;
	th_dir_make(&d, "nats-relay");
	struct nu_cluster c;
	nu_cluster_start(&c, d.root, 3, NULL);
	natsConnection *nc = nu_connect(&c, NULL, NULL);
	nu_add_stream(nc, "LOGS", "logs.>", 3);
	th_fill(d.spool, 1, N / 2, 0);
	th_fill_text(d.spool, "a POISON event");
	th_fill(d.spool, N / 2 + 1, N / 2, 0);
	agent_config(&d, &c);
	ck_assert_int_eq(th_agent_run(&d, 120, "--once", NULL), 0);
	ck_assert_uint_eq(nu_stream_msgs(nc, "LOGS"), N + 1);

	nu_add_stream(nc, "DEAD", "mlog.dead", 3);

	struct th_rx rx;
	th_rx_start(&rx, d.out, "--reject-word", "POISON", NULL);
	char cfg[400], log1[400], log2[400];
	snprintf(cfg, sizeof(cfg), "%s/relay.yaml", d.root);
	snprintf(log1, sizeof(log1), "%s/relay1.log", d.root);
	snprintf(log2, sizeof(log2), "%s/relay2.log", d.root);
	relay_config(cfg, &c, rx.url, NULL);
	pid_t r1 = relay_start(cfg, log1);
	pid_t r2 = relay_start(cfg, log2);
	struct stat_at_least third = {&rx, "unique_ids", N / 3};
	ck_assert_msg(th_wait(stat_reached, &third, 120), "relays made no progress (%s, %s)", log1, log2);
	ck_assert_int_eq(nu_stop(r1, SIGKILL, 10), -SIGKILL);
	struct stat_at_least all = {&rx, "unique_ids", N};
	bool done = th_wait(stat_reached, &all, 180);
	/* what the killed relay held comes back after AckWait (5 s) to the
	 * other, which sends it again (the receiver drops what it had) */
	bool settled = th_wait(consumer_settled, cfg, 60);
	int rc2 = nu_stop(r2, SIGTERM, 60);
	ck_assert_msg(settled, "the consumer still has messages pending (relay log %s)", log2);
	ck_assert_msg(done, "receiver holds %ld of %d (relay logs %s, %s)", th_rx_stat(&rx, "unique_ids"), N, log1,
		      log2);
	ck_assert_int_eq(rc2, 0);
	th_rx_stop(&rx);
	/* each once; the poison one never stored */
	ck_assert_uint_eq(th_assert_out_each_once(d.out, N, 0), (size_t)N);
	ck_assert(th_file_has(log2, "stopped: "));

	/* the poison event: on the dead-letter subject (its stream) with
	 * status and reason, alone */
	ck_assert_uint_eq(nu_stream_msgs(nc, "DEAD"), 1);
	struct dead_seen ds = {0};
	ck_assert_uint_eq(nu_read_stream(nc, "DEAD", on_dead, &ds), 1);
	ck_assert_str_eq(ds.status, "422");
	ck_assert_msg(ds.reason[0], "no Mlog-Reason");
	ck_assert(ds.poison);

	json_t *s = relay_status(cfg);
	ck_assert_int_eq(json_integer_value(json_object_get(s, "num_pending")), 0);
	ck_assert_int_eq(json_integer_value(json_object_get(s, "num_ack_pending")), 0);
	json_decref(s);

	natsConnection_Destroy(nc);
	nu_cluster_stop(&c);
	th_dir_remove(&d);
}
END_TEST

/* Master Log down (503 with Retry-After): every message stays in the
 * consumer, nothing is dead-lettered; once it is back, all go. */
START_TEST(server_down_keeps_everything)
{
	struct th_dir d;
	th_dir_make(&d, "nats-relay-down");
	struct nu_cluster c;
	nu_cluster_start(&c, d.root, 1, NULL);
	natsConnection *nc = nu_connect(&c, NULL, NULL);
	nu_add_stream(nc, "LOGS", "logs.>", 1);
	nu_add_stream(nc, "DEAD", "mlog.dead", 1);
	FILE *f = fopen(d.config, "w");
	fprintf(f,
		"spool: %s\nplugin_dir: %s\ntransports: [nats]\n"
		"nats:\n  subject: logs.{hostname}\n  stream: LOGS\n  servers: [%s]\n",
		d.spool, getenv("NATS_PLUGIN_DIR"), c.urls[0]);
	fclose(f);
	th_fill(d.spool, 1, 500, 0);
	ck_assert_int_eq(th_agent_run(&d, 60, "--once", NULL), 0);

	char outage[400], cfg[400], log[400];
	snprintf(outage, sizeof(outage), "%s/outage", d.root);
	fclose(fopen(outage, "w"));
	struct th_rx rx;
	th_rx_start(&rx, d.out, "--outage-file", outage, "--retry-after", "1", NULL);
	snprintf(cfg, sizeof(cfg), "%s/relay.yaml", d.root);
	snprintf(log, sizeof(log), "%s/relay.log", d.root);
	relay_config(cfg, &c, rx.url, NULL);
	pid_t r = relay_start(cfg, log);
	struct stat_at_least faults = {&rx, "faults", 3};
	ck_assert_msg(th_wait(stat_reached, &faults, 60), "relay log %s", log);
	ck_assert_int_eq(th_rx_stat(&rx, "unique_ids"), 0);
	ck_assert_uint_eq(nu_stream_msgs(nc, "DEAD"), 0);
	json_t *s = relay_status(cfg);
	ck_assert_int_eq(json_integer_value(json_object_get(s, "num_pending")) +
				 json_integer_value(json_object_get(s, "num_ack_pending")),
			 500);
	json_decref(s);
	unlink(outage);
	struct stat_at_least all = {&rx, "unique_ids", 500};
	bool done = th_wait(stat_reached, &all, 60);
	ck_assert_int_eq(nu_stop(r, SIGTERM, 30), 0);
	ck_assert_msg(done, "relay log %s", log);
	th_rx_stop(&rx);
	ck_assert_uint_eq(th_assert_out_each_once(d.out, 500, 0), 500);
	ck_assert_uint_eq(nu_stream_msgs(nc, "DEAD"), 0);
	ck_assert(th_file_has(log, "503"));

	/* configuration errors name the key */
	relay_config(cfg, &c, rx.url, "  consumer: has.dots\n");
	const char *argv[] = {getenv("MLOG_RELAY"), "-c", cfg, "--check-config", NULL};
	snprintf(log, sizeof(log), "%s/check.log", d.root);
	ck_assert_int_eq(nu_stop(nu_spawn(argv, log), 0, 30), 2);
	ck_assert(th_file_has(log, "relay.consumer"));
	relay_config(cfg, &c, "ftp://nowhere", NULL);
	ck_assert_int_eq(nu_stop(nu_spawn(argv, log), 0, 30), 2);
	ck_assert(th_file_has(log, "http.endpoint"));

	natsConnection_Destroy(nc);
	nu_cluster_stop(&c);
	th_dir_remove(&d);
}
END_TEST

/* A relay started against a stream that does not exist, then against a
 * cluster nobody answers: an error line naming the key or the server, it
 * keeps trying, SIGTERM ends it with 0; the stream's messages untouched. */
START_TEST(missing_stream_and_unreachable)
{
	struct th_dir d;
	th_dir_make(&d, "nats-relay-bad");
	struct nu_cluster c;
	nu_cluster_start(&c, d.root, 1, NULL);
	natsConnection *nc = nu_connect(&c, NULL, NULL);
	nu_add_stream(nc, "LOGS", "logs.>", 1);
	struct th_rx rx;
	th_rx_start(&rx, d.out, NULL);
	char cfg[400], log[400];
	snprintf(cfg, sizeof(cfg), "%s/relay.yaml", d.root);
	snprintf(log, sizeof(log), "%s/relay.log", d.root);
	int dead_port = nu_free_port();
	for (int round = 0; round < 2; round++) {
		FILE *f = fopen(cfg, "w");
		ck_assert_ptr_nonnull(f);
		fprintf(f,
			"http:\n  endpoint: %s\nretry:\n  auth_seconds: 0.5\nlog:\n  level: info\n"
			"nats:\n  stream: %s\n  connect_timeout_seconds: 1\n  servers: [nats://127.0.0.1:%d]\n",
			rx.url, round == 0 ? "NOPE" : "LOGS", round == 0 ? c.node[0].port : dead_port);
		fclose(f);
		pid_t r = relay_start(cfg, log);
		usleep(2000000);
		ck_assert_int_eq(nu_stop(r, SIGTERM, 30), 0);
	}
	ck_assert_msg(th_file_has(log, "nats.stream: stream 'NOPE' does not exist"), "relay log %s", log);
	char text[120];
	snprintf(text, sizeof(text), "cannot connect to nats.servers nats://127.0.0.1:%d", dead_port);
	ck_assert_msg(th_file_has(log, text), "relay log %s", log);
	ck_assert_int_eq(th_rx_stat(&rx, "requests"), 0);
	th_rx_stop(&rx);
	natsConnection_Destroy(nc);
	nu_cluster_stop(&c);
	th_dir_remove(&d);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("nats-relay");
	TCase *tc = tcase_create("relay");
	tcase_set_timeout(tc, 300);
	tcase_add_test(tc, two_relays_one_killed);
	tcase_add_test(tc, server_down_keeps_everything);
	tcase_add_test(tc, missing_stream_and_unreachable);
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
