/* log.h — spool-agent's logger: stderr or syslog, at a chosen level. */
#ifndef AGENT_LOG_H
#define AGENT_LOG_H

#include <stdbool.h>

struct agent_log {
	int level;    /* syslog level: messages above it are dropped */
	bool syslog;  /* else stderr */
	char *secret; /* the API key: replaced wherever a message holds it */
};

void agent_log_open(struct agent_log *l, int level, bool use_syslog);
void agent_log_close(struct agent_log *l);
/* Keeps a copy of the API key (NULL: none); any message that holds it (a
 * server echoing the key in an error, say) is written with "[api key]"
 * instead.  Keys shorter than 8 characters are not searched for. */
void agent_log_set_secret(struct agent_log *l, const char *key);
/* Matches spool_tx_config.log: ctx is a struct agent_log. */
void agent_log(void *ctx, int level, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#endif
