/* metrics.h — the agent's Prometheus endpoint (metrics_listen): GET
 * /metrics serves prom.h's exposition of the spool and the requests, from a
 * thread of its own with a spool handle of its own. */
#ifndef SPOOL_AGENT_METRICS_H
#define SPOOL_AGENT_METRICS_H

#include <stddef.h>

#include "prom.h"

struct metrics_server;

/* Listens on `listen` (a loopback ADDR:PORT, config_parse_listen(); port 0
 * picks a free one) and serves the spool in `spool_dir` and the requests
 * counted in *req (which must outlive the server).  0, or -1 with a
 * sentence in err. */
int metrics_start(const char *listen, const char *spool_dir, const struct prom_requests *req,
		  struct metrics_server **out, char *err, size_t errlen);
/* The port bound. */
unsigned metrics_port(const struct metrics_server *m);
/* Stops serving and frees; NULL is allowed. */
void metrics_stop(struct metrics_server *m);

#endif
