/* log.h — spool-agent's logger: stderr or syslog, at a chosen level. */
#ifndef AGENT_LOG_H
#define AGENT_LOG_H

#include <stdbool.h>

struct agent_log {
	int level;   /* syslog level: messages above it are dropped */
	bool syslog; /* else stderr */
};

void agent_log_open(struct agent_log *l, int level, bool use_syslog);
void agent_log_close(struct agent_log *l);
/* Matches spool_tx_config.log: ctx is a struct agent_log. */
void agent_log(void *ctx, int level, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#endif
