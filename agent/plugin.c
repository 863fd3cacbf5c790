/* plugin.c — the transport loader. */
#include <dlfcn.h>
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "plugin.h"

int plugin_load(const char *name, const char *const *dirs, size_t ndirs, struct plugin *p, char *err,
		size_t errlen)
{
	memset(p, 0, sizeof(*p));
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
	/* ABI 1 starts with the fields up to send; later fields are read only
	 * when struct_size covers them */
	if (tx->struct_size < offsetof(struct spool_transport, send) + sizeof(tx->send) || !tx->name ||
	    !tx->send) {
		snprintf(err, errlen, "transport '%s': %s: incomplete entry (no name or send callback)", name,
			 p->path);
		goto fail;
	}
	p->tx = tx;
	return 0;
fail:
	dlclose(p->dl);
	p->dl = NULL;
	return -1;
}

int plugin_create(struct plugin *p, const struct spool_tx_config *cfg, char *err, size_t errlen)
{
	p->state = NULL;
	if (!p->tx->create)
		return 0;
	char e[512] = "";
	int rc = p->tx->create(cfg, &p->state, e, sizeof(e));
	if (rc) {
		snprintf(err, errlen, "transport '%s' (%s): %s", p->tx->name, p->path, e[0] ? e : strerror(-rc));
		p->state = NULL;
		return -1;
	}
	return 0;
}

void plugin_unload(struct plugin *p)
{
	if (!p)
		return;
	if (p->tx && p->tx->destroy && p->state)
		p->tx->destroy(p->state);
	p->state = NULL;
	p->tx = NULL;
	if (p->dl)
		dlclose(p->dl);
	p->dl = NULL;
}
