/* plugin.c — the transport loader. */
#include <dlfcn.h>
#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "plugin.h"
#include "transports.h"

const struct spool_transport *const plugin_builtin[] = {
	&spool_tx_http_batch,
	&spool_tx_http_single,
	&spool_tx_file,
};
const size_t plugin_nbuiltin = sizeof(plugin_builtin) / sizeof(plugin_builtin[0]);

int plugin_load(const char *name, const char *const *dirs, size_t ndirs, struct plugin *p, char *err,
		size_t errlen)
{
	memset(p, 0, sizeof(*p));
	for (size_t i = 0; i < plugin_nbuiltin; i++)
		if (strcmp(plugin_builtin[i]->name, name) == 0) {
			p->tx = plugin_builtin[i];
			snprintf(p->path, sizeof(p->path), "(built in)");
			return 0;
		}
	if (strchr(name, '/')) {
		snprintf(p->path, sizeof(p->path), "%s", name);
	} else {
		char searched[1024] = "";
		for (size_t i = 0; i < ndirs; i++) {
			if (!dirs[i] || !*dirs[i])
				continue;
			snprintf(p->path, sizeof(p->path), "%s/%s.so", dirs[i], name);
			if (access(p->path, F_OK) == 0)
				goto found;
			size_t l = strlen(searched);
			snprintf(searched + l, sizeof(searched) - l, "%s%s", l ? ", " : "", dirs[i]);
		}
		snprintf(err, errlen, "transport '%s': no %s.so in %s", name, name, searched[0] ? searched : "(no folder)");
		p->path[0] = '\0';
		return -1;
	}
found:
	p->dl = dlopen(p->path, RTLD_NOW | RTLD_LOCAL);
	if (!p->dl) {
		snprintf(err, errlen, "transport '%s': cannot load %s: %s", name, p->path, dlerror());
		return -1;
	}
	const struct spool_transport *tx = dlsym(p->dl, SPOOL_TRANSPORT_ENTRY);
	if (!tx) {
		snprintf(err, errlen, "transport '%s': %s has no symbol %s: not a spool transport", name, p->path,
			 SPOOL_TRANSPORT_ENTRY);
		goto fail;
	}
	if (tx->abi_version != SPOOL_TRANSPORT_ABI) {
		snprintf(err, errlen, "transport '%s': %s has ABI version %u, this agent needs %u", name, p->path,
			 (unsigned)tx->abi_version, (unsigned)SPOOL_TRANSPORT_ABI);
		goto fail;
	}
	/* the fields up to flags are ABI 2's; later ones are read only when
	 * struct_size covers them */
	bool async = tx->submit && tx->poll;
	if (tx->struct_size < offsetof(struct spool_transport, flags) + sizeof(tx->flags) || !tx->name ||
	    (!tx->send && !async) || (tx->noptions && !tx->options)) {
		snprintf(err, errlen,
			 "transport '%s': %s: incomplete entry (it needs a name, and send or submit and poll)",
			 name, p->path);
		goto fail;
	}
	p->tx = tx;
	return 0;
fail:
	dlclose(p->dl);
	p->dl = NULL;
	return -1;
}

void plugin_unload(struct plugin *p)
{
	if (!p)
		return;
	p->tx = NULL;
	if (p->dl)
		dlclose(p->dl);
	p->dl = NULL;
}
