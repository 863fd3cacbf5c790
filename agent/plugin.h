/* plugin.h — loading transports with dlopen (include/spool/transport.h). */
#ifndef AGENT_PLUGIN_H
#define AGENT_PLUGIN_H

#include <stddef.h>

#include <spool/transport.h>

struct plugin {
	void *dl;
	const struct spool_transport *tx;
	void *state; /* after plugin_create() */
	char path[4096];
};

/* Finds <name>.so in dirs[0..ndirs) (NULL entries skipped), or loads `name`
 * itself when it contains a '/'; checks the entry symbol and its ABI.  0, or
 * -1 with err naming the file and the problem. */
int plugin_load(const char *name, const char *const *dirs, size_t ndirs, struct plugin *p, char *err,
		size_t errlen);
int plugin_create(struct plugin *p, const struct spool_tx_config *cfg, char *err, size_t errlen);
/* Destroys the instance and unloads; NULL-safe, idempotent. */
void plugin_unload(struct plugin *p);

#endif
