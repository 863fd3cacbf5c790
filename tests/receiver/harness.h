/* harness.h - start the real mlog-receiver binary and talk HTTP to it over
 * loopback, for the receiver's Check suite. */
#ifndef MLOG_RECEIVER_TEST_HARNESS_H
#define MLOG_RECEIVER_TEST_HARNESS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include <curl/curl.h>
#include <jansson.h>

struct rx {
	pid_t pid;
	int port;
	bool ipv6;
	bool https;	      /* the port file said "N https" (--tls-cert) */
	const char *ca_file; /* with https: the only CA rx_request trusts */
	char dir[64];	  /* private temp dir */
	char out[96];	  /* the --out file (dir/out.jsonl) */
	char stdout_path[96];
};

struct resp {
	CURLcode rc;
	long status;
	char *body; /* NUL-terminated */
	size_t len;
	char retry_after[128];
	char allow[64];
	char content_type[64];
	double seconds;
};

/* Starts the receiver with --port 0, --port-file and --out dir/out.jsonl
 * followed by the NULL-terminated `args`.  Fails the test when it does not
 * come up within 5 s.  rx->https tells whether it serves TLS; requests
 * then trust only rx->ca_file, which the caller sets after the start. */
void rx_start(struct rx *rx, const char *const *args);
/* As rx_start, without adding --out. */
void rx_start_no_out(struct rx *rx, const char *const *args);
/* SIGTERM, wait, remove the temp dir; returns the wait status. */
int rx_stop(struct rx *rx);
/* Whether the child is still running. */
bool rx_alive(struct rx *rx);

/* One request.  `headers` is NULL or a NULL-terminated list of "Name: v".
 * timeout_ms 0 means 10 s. */
void rx_request(struct rx *rx, const char *method, const char *path,
		const void *body, size_t len, const char *const *headers,
		long timeout_ms, struct resp *out);
void rx_post(struct rx *rx, const char *path, const char *json,
	     struct resp *out);
void resp_free(struct resp *r);
/* Parses the body as JSON; fails the test when it is not. */
json_t *resp_json(const struct resp *r);

/* GET /stats as JSON, and one counter of it. */
json_t *rx_stats(struct rx *rx);
long long rx_stat(struct rx *rx, const char *name);

/* The lines of the --out file, parsed (a JSON array). */
json_t *rx_out_lines(struct rx *rx);

/* A valid ULID for `n` and a valid event with it. */
void test_ulid(unsigned long long n, char out[27]);
json_t *test_event(unsigned long long n, const char *message);
/* The compact JSON text of a value (malloc'd). */
char *test_dump(const json_t *v);
/* {"logs": [events n0 .. n0+count-1]} */
json_t *test_batch(unsigned long long n0, size_t count);

/* gzip-compresses `len` bytes into a malloc'd buffer. */
void *test_gzip(const void *data, size_t len, size_t *out_len);

/* Monotonic seconds. */
double test_now(void);

#endif
