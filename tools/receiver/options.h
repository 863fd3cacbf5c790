/* options.h - mlog-receiver's command line: one table row per flag. */
#ifndef MLOG_RECEIVER_OPTIONS_H
#define MLOG_RECEIVER_OPTIONS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

struct rx_config {
	/* listening */
	const char *listen;
	long port;
	const char *port_file;
	long max_connections;
	long idle_timeout;
	/* TLS: both set or neither */
	const char *tls_cert;
	const char *tls_key;
	/* storing */
	const char *out;
	long dedup_max;
	/* limits */
	size_t max_body;
	size_t max_inflated; /* 0: same as max_body */
	long max_batch_events;
	size_t max_batch_bytes;
	/* auth */
	const char *api_key;
	long auth_status;
	/* faults */
	long fail_first;
	long fail_status;
	double fail_rate;
	long fail_rate_status; /* 0: 500 or 503 at random */
	long seed;
	long retry_after; /* -1: no Retry-After header */
	bool retry_after_date;
	const char *outage_file;
	long outage_status;
	long latency_ms;
	const char *reject_word;
	long reject_status;
	bool reject_whole_batch;
	const char *transient_word;
	long transient_status;
	bool no_batch;
	long no_batch_status;
	bool no_gzip;
	long drop_after_store;
	long drop_skip;
	double drop_rate;
	long slow_body_ms;
	long slow_body_chunk;
	bool bad_json_2xx;
	bool empty_2xx;
	/* misc */
	bool validate_with_jansson;
	bool verbose;
	bool any_json; /* --any-json: count any {"logs": [...]} batch (peers) */
};

enum opt_result {
	OPT_RUN = 0,  /* options parsed: run the server */
	OPT_EXIT = 1, /* --help or --version printed: exit 0 */
	OPT_USAGE = 2 /* error printed to stderr: exit 2 */
};

/* Fills *cfg with every default from the table, then applies argv. */
enum opt_result options_parse(int argc, char **argv, struct rx_config *cfg);

/* Prints the --help text generated from the table. */
void options_help(FILE *f, const char *prog);

#endif
