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

/* Whether h[0, hlen) parses as host[:port]. */
static bool host_ok(const char *h, size_t hlen)
{
	size_t i = 0;
	if (hlen && h[0] == '[') {
		while (i < hlen && h[i] != ']')
			i++;
		if (i == hlen || i == 1)
			return false;
		i++;
	} else {
		while (i < hlen &&
		       (isalnum((unsigned char)h[i]) || h[i] == '-' || h[i] == '.' || h[i] == '_'))
			i++;
		if (i == 0)
			return false;
	}
	if (i == hlen)
		return true;
	if (h[i] != ':' || i + 1 == hlen)
		return false;
	long port = 0;
	for (size_t k = i + 1; k < hlen; k++) {
		if (!isdigit((unsigned char)h[k]) || port > 65535)
			return false;
		port = port * 10 + (h[k] - '0');
	}
	return port >= 1 && port <= 65535;
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
	const char *sep = strstr(url, "://");
	size_t slen = sep ? (size_t)(sep - url) : 0;
	if (!sep || !((slen == 4 && strncasecmp(url, "http", 4) == 0) ||
	              (slen == 5 && strncasecmp(url, "https", 5) == 0))) {
		snprintf(err, errlen, "endpoint '%s': needs an http:// or https:// URL", url);
		return -EINVAL;
	}
	const char *auth = sep + 3;
	size_t alen = strcspn(auth, "/?#");
	const char *at = memchr(auth, '@', alen);
	const char *host = at ? at + 1 : auth;
	if (!host_ok(host, alen - (size_t)(host - auth))) {
		snprintf(err, errlen, "endpoint '%s': cannot parse the host", url);
		return -EINVAL;
	}
	const char *path = auth + alen;
	if (strpbrk(path, "?#") || strpbrk(url, " \t\r\n")) {
		snprintf(err, errlen, "endpoint '%s': no query, fragment or spaces allowed", url);
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
