/* transports.h — the transports built into spool-agent (and, for the
 * direct send, http_single into the client library). */
#ifndef SPOOL_PLUGIN_TRANSPORTS_H
#define SPOOL_PLUGIN_TRANSPORTS_H

#include <spool/transport.h>

extern const struct spool_transport spool_tx_http_batch;
extern const struct spool_transport spool_tx_http_single;
extern const struct spool_transport spool_tx_file;

#endif
