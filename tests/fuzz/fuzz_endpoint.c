/* fuzz_endpoint.c — the codec's spool_endpoint_normalise()
 * (libspool/codec/endpoint.h).
 *
 * The input, NUL-terminated, is the URL.  Aborts when the result breaks the
 * contract: 0 with a root that is not a prefix of the URL or that is itself
 * refused; -EINVAL without a message or with *root set; any other code but
 * -ENOMEM; NULL arguments not refused. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec/endpoint.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fail(const char *what, const char *url, const char *root)
{
	fprintf(stderr, "fuzz_endpoint: %s\nurl:  '%s'\nroot: '%s'\n", what, url, root ? root : "(null)");
	abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *url = malloc(size + 1);
	if (!url)
		return 0;
	memcpy(url, data, size);
	url[size] = '\0';

	char err[300] = "";
	char *root = (char *)1;
	int rc = spool_endpoint_normalise(url, &root, err, sizeof(err));
	if (rc == -EINVAL) {
		if (root)
			fail("-EINVAL with *root set", url, NULL);
		if (!err[0])
			fail("-EINVAL without a message", url, NULL);
	} else if (rc == 0) {
		if (!root)
			fail("0 without a root", url, NULL);
		size_t n = strlen(root);
		if (strncmp(root, url, n) != 0)
			fail("root is not a prefix of the URL", url, root);
		/* the root is itself a valid endpoint */
		char *again = NULL;
		char err2[300] = "";
		int rc2 = spool_endpoint_normalise(root, &again, err2, sizeof(err2));
		if (rc2 != 0 && rc2 != -ENOMEM)
			fail("the root itself is refused", url, root);
		free(again);
		/* NULL arguments the header allows */
		char *r2 = (char *)1;
		if (spool_endpoint_normalise(NULL, &r2, err2, sizeof(err2)) != -EINVAL || r2)
			fail("NULL url not refused", url, root);
		if (spool_endpoint_normalise(url, NULL, err2, sizeof(err2)) != -EINVAL)
			fail("NULL root not refused", url, root);
		free(root);
	} else if (rc != -ENOMEM) {
		fail("unexpected return code", url, NULL);
	}
	/* a zero-length error buffer must be left alone */
	char *r3 = NULL;
	rc = spool_endpoint_normalise(url, &r3, NULL, 0);
	free(r3);
	free(url);
	return 0;
}
