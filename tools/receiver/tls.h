/* tls.h - the certificate and key of --tls-cert/--tls-key, read into memory
 * for libmicrohttpd's built-in TLS (GnuTLS on Debian). */
#ifndef MLOG_RECEIVER_TLS_H
#define MLOG_RECEIVER_TLS_H

#include <stddef.h>

#include "options.h"

struct tls_pem {
	char *cert; /* NUL-terminated PEM text; NULL: serve plain HTTP */
	char *key;  /* NUL-terminated PEM text; wiped by tls_pem_release() */
	size_t key_len;
};

/* Reads the files of --tls-cert and --tls-key into *out when they are set
 * (leaves *out empty otherwise).  Returns 0, or -1 with one sentence in
 * `err` naming the option and the file: missing, unreadable, not PEM, or
 * TLS missing from this libmicrohttpd.  The caller releases *out with
 * tls_pem_release() after the daemon stopped, since libmicrohttpd is handed
 * these pointers. */
int tls_pem_load(const struct rx_config *cfg, struct tls_pem *out, char *err, size_t errlen);

/* Wipes the key and frees both texts; NULL-safe, leaves *pem empty. */
void tls_pem_release(struct tls_pem *pem);

#endif
