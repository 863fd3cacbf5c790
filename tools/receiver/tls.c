/* tls.c - read --tls-cert and --tls-key into memory and check that they are
 * PEM, so a mistake gets a message naming the option and the file before
 * anything listens.  Whether the key matches the certificate is left to
 * GnuTLS, when libmicrohttpd starts. */
#include "tls.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <microhttpd.h>

/* Far more than any certificate chain or key the tests use. */
#define PEM_MAX (1024 * 1024)

/* Reads the whole regular file `path` into a NUL-terminated buffer.
 * Returns 0, or -1 with the reason in `err`. */
static int read_text(const char *option, const char *path, char **out, size_t *len, char *err,
                     size_t errlen)
{
	struct stat st;
	char *text = NULL;
	size_t got = 0;

	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		snprintf(err, errlen, "--%s %s: %s", option, path, strerror(errno));
		return -1;
	}
	if (fstat(fd, &st) != 0) {
		snprintf(err, errlen, "--%s %s: %s", option, path, strerror(errno));
		goto fail;
	}
	if (!S_ISREG(st.st_mode)) {
		snprintf(err, errlen, "--%s %s: not a regular file", option, path);
		goto fail;
	}
	if (st.st_size > PEM_MAX) {
		snprintf(err, errlen, "--%s %s: %lld bytes, too large for a PEM file", option, path,
		         (long long)st.st_size);
		goto fail;
	}
	text = malloc((size_t)st.st_size + 1);
	if (!text) {
		snprintf(err, errlen, "--%s %s: out of memory", option, path);
		goto fail;
	}
	while (got < (size_t)st.st_size) {
		ssize_t n = read(fd, text + got, (size_t)st.st_size - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			snprintf(err, errlen, "--%s %s: %s", option, path, strerror(errno));
			goto fail;
		}
		if (n == 0)
			break; /* shrank while reading: check what there is */
		got += (size_t)n;
	}
	close(fd);
	text[got] = '\0';
	*out = text;
	*len = got;
	return 0;
fail:
	if (text) {
		explicit_bzero(text, got);
		free(text);
	}
	close(fd);
	return -1;
}

/* Whether `text` holds a PEM block whose label satisfies `want`. */
static bool has_block(const char *text, bool (*want)(const char *label, size_t len))
{
	static const char begin[] = "-----BEGIN ";
	for (const char *p = strstr(text, begin); p; p = strstr(p + 1, begin)) {
		const char *label = p + sizeof(begin) - 1;
		const char *end = strstr(label, "-----");
		if (end && memchr(label, '\n', (size_t)(end - label)) == NULL &&
		    want(label, (size_t)(end - label)))
			return true;
	}
	return false;
}

static bool is_certificate(const char *label, size_t len)
{
	return len == 11 && memcmp(label, "CERTIFICATE", 11) == 0;
}

/* "PRIVATE KEY", "EC PRIVATE KEY", "RSA PRIVATE KEY", ... */
static bool is_private_key(const char *label, size_t len)
{
	return len >= 11 && memcmp(label + len - 11, "PRIVATE KEY", 11) == 0;
}

static bool is_encrypted_key(const char *label, size_t len)
{
	return len == 21 && memcmp(label, "ENCRYPTED PRIVATE KEY", 21) == 0;
}

int tls_pem_load(const struct rx_config *cfg, struct tls_pem *out, char *err, size_t errlen)
{
	size_t cert_len;

	memset(out, 0, sizeof(*out));
	if (!cfg->tls_cert)
		return 0;
	if (MHD_is_feature_supported(MHD_FEATURE_TLS) != MHD_YES) {
		snprintf(err, errlen,
		         "--tls-cert: this libmicrohttpd was built without TLS support "
		         "(MHD_FEATURE_TLS is off), so the receiver cannot serve HTTPS");
		return -1;
	}
	if (read_text("tls-cert", cfg->tls_cert, &out->cert, &cert_len, err, errlen))
		goto fail;
	if (strlen(out->cert) != cert_len || !has_block(out->cert, is_certificate)) {
		snprintf(err, errlen,
		         "--tls-cert %s: not a PEM certificate "
		         "(no \"-----BEGIN CERTIFICATE-----\" line)",
		         cfg->tls_cert);
		goto fail;
	}
	if (read_text("tls-key", cfg->tls_key, &out->key, &out->key_len, err, errlen))
		goto fail;
	if (strlen(out->key) != out->key_len || !has_block(out->key, is_private_key)) {
		snprintf(err, errlen,
		         "--tls-key %s: not a PEM private key "
		         "(no \"-----BEGIN ... PRIVATE KEY-----\" line)",
		         cfg->tls_key);
		goto fail;
	}
	if (has_block(out->key, is_encrypted_key) || strstr(out->key, "Proc-Type: 4,ENCRYPTED")) {
		snprintf(err, errlen,
		         "--tls-key %s: the key is encrypted; give an unencrypted "
		         "one (mode 0600)",
		         cfg->tls_key);
		goto fail;
	}
	return 0;
fail:
	tls_pem_release(out);
	return -1;
}

void tls_pem_release(struct tls_pem *pem)
{
	if (!pem)
		return;
	if (pem->key) {
		explicit_bzero(pem->key, pem->key_len);
		free(pem->key);
	}
	free(pem->cert);
	memset(pem, 0, sizeof(*pem));
}
