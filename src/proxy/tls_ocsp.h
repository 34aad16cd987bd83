/* OCSP stapling from a response file, as nginx's ssl_stapling_file and
 * HAProxy's .ocsp files do it: the operator (or a cron job running
 * `openssl ocsp ... -respout`) fetches the response; Sluice checks it and
 * sends it in every handshake that asks for it (status_request).
 *
 * A response is taken only if it is a successful, signed answer about
 * exactly this certificate, signed by its issuer (or a responder the
 * issuer delegated to), and current. It is stapled only while it is
 * current: an expired staple makes strict clients fail the handshake,
 * which is worse than none, so past its nextUpdate the handshake goes
 * without one (and the log said when it would). A refreshed file is
 * picked up by a reload (SIGHUP or POST /api/reload).
 */
#ifndef SLUICE_PROXY_TLS_OCSP_H
#define SLUICE_PROXY_TLS_OCSP_H

#include <stddef.h>
#include <time.h>

#include <openssl/ssl.h>
#include <openssl/x509.h>

/* A checked response, ready to staple. */
struct tls_ocsp {
    unsigned char *der;
    size_t len;
    time_t next_update;   /* 0: the responder gave none (stapled always) */
    char status[16];      /* "good", "revoked", "unknown" */
};

/* Read and check the DER response in path for leaf, whose issuer is in
 * chain (the rest of the certificate file). Returns 0, or -1 with a
 * reason in err. A "revoked" answer is an error: serving a revoked
 * certificate is a mistake to stop at, not to staple. */
int tls_ocsp_load(const char *path, X509 *leaf, STACK_OF(X509) *chain, struct tls_ocsp *out, char *err,
                  size_t errlen);

void tls_ocsp_free(struct tls_ocsp *o);

/* Staple o (owned by the context from now on) in handshakes of ctx that
 * serve leaf. A context may hold several (its ECDSA and RSA
 * certificates); each handshake staples the one for the certificate it
 * chose. Returns 0, or -1 when out of memory (o then still the caller's). */
int tls_ocsp_attach(SSL_CTX *ctx, X509 *leaf, struct tls_ocsp *o);

#endif
