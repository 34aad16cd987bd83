/* A listener's `tls:` block (docs/tls.md): certificates, protocol
 * versions, cipher lists, ALPN, the handshake timeout, session reuse
 * (`sessions:`, proxy/tls_session_conf.h).
 *
 * Certificates and keys are loaded and checked while the configuration
 * is read (so `sluice check` and a reload refuse a broken file with its
 * line), and the loaded objects stay in the configuration: the workers
 * build their SSL_CTXs from exactly what was checked (proxy/tls.h),
 * without reading the files again.
 */
#ifndef SLUICE_PROXY_TLS_CONF_H
#define SLUICE_PROXY_TLS_CONF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/types.h>

#include "core/config_walk.h"
#include "proxy/tls_ocsp.h"
#include "proxy/tls_session_conf.h"

#define TLS_MAX_CERTIFICATES 64
#define TLS_MAX_ALPN 16
#define TLS_MAX_NAMES 256          /* names one certificate may serve */

enum tls_version_bit { TLS_V12 = 1, TLS_V13 = 2 };

struct cfg_tls_cert {
    char *cert_file;               /* PEM: leaf first, then intermediates */
    char *key_file;                /* PEM private key */
    int line;
    X509 *leaf;
    STACK_OF(X509) *chain;         /* the intermediates, in file order */
    EVP_PKEY *key;
    int key_type;                  /* EVP_PKEY_EC, EVP_PKEY_RSA, ... (EVP_PKEY_get_base_id) */
    char **names;                  /* DNS names it serves, lowercase: SAN dNSName, else the CN */
    size_t n_names;
    char *ocsp_file;               /* `ocsp:` DER response to staple, or NULL */
    struct tls_ocsp ocsp;          /* loaded and checked from ocsp_file (der NULL without one) */
};

/* client_certificates.verify (nginx ssl_verify_client, HAProxy verify). */
enum tls_client_verify { TLS_CLIENT_NONE, TLS_CLIENT_REQUIRED, TLS_CLIENT_OPTIONAL };

#define TLS_DEFAULT_SUBJECT_HEADER "X-Client-Subject"

/* `client_certificates:` (mTLS): verify clients against the CA file. */
struct cfg_tls_clients {
    enum tls_client_verify verify; /* TLS_CLIENT_NONE: the block is absent */
    char *ca_file;
    STACK_OF(X509) *ca;            /* the CA file's certificates, loaded at config time */
    char *subject_header;          /* http listeners: the verified subject goes here; NULL on tcp */
};

struct cfg_tls {
    struct cfg_tls_cert *certs;    /* first = the default */
    size_t n_certs;
    uint32_t versions;             /* TLS_V12 | TLS_V13; default both */
    char *ciphers;                 /* TLS 1.2 cipher string; NULL = TLS_DEFAULT_CIPHERS */
    char *ciphersuites;            /* TLS 1.3 suites; NULL = OpenSSL's default */
    char **alpn;                   /* in preference order */
    size_t n_alpn;
    uint32_t handshake_timeout_ms; /* default 10s */
    struct cfg_tls_sessions sessions; /* `sessions:`, parsed by tls_session_conf.c */
    struct cfg_tls_clients clients;
    int line;
};

/* ECDHE key exchange with AEAD ciphers only, ECDSA first (cheaper). */
#define TLS_DEFAULT_CIPHERS                                                                              \
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"          \
    "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"

/* Parse listeners[i].tls (v) into a new struct, *out. is_http: the
 * listener's protocol is http (its ALPN default and allowed values);
 * the caller refuses tls on udp listeners before calling. */
void tls_conf_parse(struct config_ctx *c, const struct ynode *v, bool is_http, struct cfg_tls **out);

void tls_conf_free(struct cfg_tls *t);

/* Whether two certificates serve the same names (they then share one
 * SSL_CTX: tls.c's groups). */
bool tls_cert_same_names(const struct cfg_tls_cert *a, const struct cfg_tls_cert *b);

/* Whether a certificate name pattern ("example.com", "*.example.com")
 * covers host (lowercase, no trailing dot): exact, or a wildcard standing
 * for exactly one leftmost label. */
bool tls_name_matches(const char *pattern, const char *host);

#endif
