/* log.h — spool-agent's logger: stderr, the journal's stderr or syslog, at
 * a chosen level. */
#ifndef AGENT_LOG_H
#define AGENT_LOG_H

#include <stdbool.h>

struct agent_log {
	int level;    /* syslog level: messages above it are dropped */
	bool syslog;  /* else stderr */
	bool journal; /* stderr is read by the journal: "<3>message" lines */
	char *secret; /* the API key: replaced wherever a message holds it */
	const char *ident; /* the program named in lines and syslog; NULL: spool-agent */
};

/* target: "syslog"; "journal" (stderr, each line prefixed with its syslog
 * priority, "<3>", which the journal reads as the line's level, and no time
 * stamp: the journal has it); or "stderr", which is "journal" when the
 * process runs under systemd with stderr connected to the journal
 * ($JOURNAL_STREAM names stderr's device and inode), else plain lines with
 * a time stamp and the level. */
void agent_log_open(struct agent_log *l, int level, const char *target);
void agent_log_close(struct agent_log *l);
/* Keeps a copy of the API key (NULL: none); any message that holds it (a
 * server echoing the key in an error, say) is written with "[api key]"
 * instead.  Keys shorter than 8 characters are not searched for. */
void agent_log_set_secret(struct agent_log *l, const char *key);
/* Matches spool_tx_config.log: ctx is a struct agent_log. */
void agent_log(void *ctx, int level, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#endif
