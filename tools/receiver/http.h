/* http.h - the libmicrohttpd side: routing, bodies, faults, answers. */
#ifndef MLOG_RECEIVER_HTTP_H
#define MLOG_RECEIVER_HTTP_H

#include <stdbool.h>

#include "options.h"
#include "store.h"
#include "tls.h"

struct MHD_Daemon;

/* Serves on the bound, listening socket `fd` (closed by http_stop) with one
 * thread per connection; HTTPS when tls->cert is set (`tls` must stay valid
 * until http_stop).  Returns NULL when libmicrohttpd refuses; what it said
 * is then on stderr, even without --verbose. */
struct MHD_Daemon *http_start(const struct rx_config *cfg,
			      struct store *store, int fd, bool ipv6,
			      const struct tls_pem *tls);

/* Stops accepting, waits for the connection threads, closes `fd`. */
void http_stop(struct MHD_Daemon *d);

#endif
