/* endpoint.h — the Master Log endpoint rules of PROTOCOL.md, shared by
 * spool-agent and the client library so both accept the same URLs. */
#ifndef SPOOL_ENDPOINT_H
#define SPOOL_ENDPOINT_H

#include <stddef.h>

#include <spool/spool.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Normalises a Master Log URL to ROOT: the scheme must be http or https and
 * the host parse (a name, IPv4, or [IPv6], then an optional :port); a
 * trailing '/' is stripped, then one trailing "/api/v1/logs/batch",
 * "/api/v1/logs" or "/api/v1".  Returns 0 with *root a malloc'd string the
 * caller frees; -EINVAL with a sentence in err naming the URL and the
 * problem (*root NULL); -ENOMEM. */
int spool_endpoint_normalise(const char *url, char **root, char *err, size_t errlen);

/* The URL as it may be shown in logs and errors: any user:password@ in it
 * becomes ***@ (libcurl still gets the URL as given).  Cut to fit len. */
void spool_endpoint_display(const char *url, char *buf, size_t len);

#ifdef __cplusplus
}
#endif
#endif
