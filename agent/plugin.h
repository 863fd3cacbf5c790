/* plugin.h — finding transports (include/spool/transport.h): the built-in
 * ones by name, any other as a shared object loaded with dlopen. */
#ifndef AGENT_PLUGIN_H
#define AGENT_PLUGIN_H

#include <stddef.h>

#include <spool/transport.h>

struct plugin {
	void *dl; /* NULL for a built-in transport */
	const struct spool_transport *tx;
	char path[4096]; /* the shared object's path, or "(built in)" */
};

/* The built-in transports, in the order --help-config lists them. */
extern const struct spool_transport *const plugin_builtin[];
extern const size_t plugin_nbuiltin;

/* A built-in transport by name; otherwise <name>.so in dirs[0..ndirs)
 * (NULL entries skipped), or `name` itself when it contains a '/'; checks
 * the entry symbol and its ABI.  0, or -1 with err naming the file and the
 * problem. */
int plugin_load(const char *name, const char *const *dirs, size_t ndirs, struct plugin *p, char *err,
		size_t errlen);
/* Unloads; NULL-safe, idempotent. */
void plugin_unload(struct plugin *p);

#endif
