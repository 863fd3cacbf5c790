/* endpoint.c — endpoint normalisation (PROTOCOL.md, "Endpoint
 * normalisation"). */
#include <ctype.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "codec/endpoint.h"

/* Checks h[0, hlen) as host[:port]: 0, or -1 with why set. */
static int host_check(const char *h, size_t hlen, char *why, size_t wl)
{
	size_t i = 0;
	if (hlen && h[0] == '[') {
		while (i < hlen && h[i] != ']')
			i++;
		if (i == hlen || i == 1)
			return snprintf(why, wl, "cannot parse the host (an IPv6 address goes in [brackets])"), -1;
		i++;
	} else {
		while (i < hlen && (isalnum((unsigned char)h[i]) || h[i] == '-' || h[i] == '.' || h[i] == '_'))
			i++;
		if (i == 0)
			return snprintf(why, wl, "no host"), -1;
	}
	if (i == hlen)
		return 0;
	if (h[i] != ':')
		return snprintf(why, wl, "cannot parse the host: '%c' after its name", h[i]), -1;
	if (i + 1 == hlen)
		return snprintf(why, wl, "no port after ':'"), -1;
	long port = 0;
	for (size_t k = i + 1; k < hlen; k++) {
		if (!isdigit((unsigned char)h[k]))
			return snprintf(why, wl, "the port is not a number"), -1;
		if (port <= 65535)
			port = port * 10 + (h[k] - '0');
	}
	if (port < 1 || port > 65535)
		return snprintf(why, wl, "port %.*s is out of range (1 to 65535)", (int)(hlen - i - 1), h + i + 1), -1;
	return 0;
}

void spool_endpoint_display(const char *url, char *buf, size_t len)
{
	if (!len)
		return;
	const char *sep = url ? strstr(url, "://") : NULL;
	const char *auth = sep ? sep + 3 : NULL;
	size_t alen = auth ? strcspn(auth, "/?#") : 0;
	const char *at = auth ? memrchr(auth, '@', alen) : NULL;
	if (!at) {
		snprintf(buf, len, "%s", url ? url : "");
		return;
	}
	snprintf(buf, len, "%.*s***@%s", (int)(auth - url), url, at + 1);
}

int spool_endpoint_normalise(const char *url, char **root, char *err, size_t errlen)
{
	if (!root)
		return -EINVAL;
	*root = NULL;
	if (!url) {
		snprintf(err, errlen, "no endpoint given");
		return -EINVAL;
	}
	char shown[300], why[120];
	spool_endpoint_display(url, shown, sizeof(shown));
	const char *sep = strstr(url, "://");
	size_t slen = sep ? (size_t)(sep - url) : 0;
	if (!sep || !((slen == 4 && strncasecmp(url, "http", 4) == 0) ||
	              (slen == 5 && strncasecmp(url, "https", 5) == 0))) {
		snprintf(err, errlen, "endpoint '%s': needs an http:// or https:// URL", shown);
		return -EINVAL;
	}
	const char *auth = sep + 3;
	size_t alen = strcspn(auth, "/?#");
	const char *at = memrchr(auth, '@', alen);
	const char *host = at ? at + 1 : auth;
	if (host_check(host, alen - (size_t)(host - auth), why, sizeof(why))) {
		snprintf(err, errlen, "endpoint '%s': %s", shown, why);
		return -EINVAL;
	}
	const char *path = auth + alen;
	if (strpbrk(path, "?#") || strpbrk(url, " \t\r\n")) {
		snprintf(err, errlen, "endpoint '%s': no query, fragment or spaces allowed", shown);
		return -EINVAL;
	}
	size_t start = (size_t)(path - url), n = strlen(url);
	while (n > start && url[n - 1] == '/')
		n--;
	static const char *const suffix[] = {"/api/v1/logs/batch", "/api/v1/logs", "/api/v1"};
	for (size_t k = 0; k < sizeof(suffix) / sizeof(suffix[0]); k++) {
		size_t sl = strlen(suffix[k]);
		if (n - start >= sl && strncmp(url + n - sl, suffix[k], sl) == 0) {
			n -= sl;
			break;
		}
	}
	*root = strndup(url, n);
	if (!*root) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	return 0;
}
