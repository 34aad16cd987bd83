/* TLS from the proxy to a pool's backends: the pool's `tls:` block and
 * the client-side OpenSSL context built from it.
 *
 *     pools:
 *       - name: secure
 *         tls:
 *           ca: /etc/sluice/backend-ca.pem   # verify backends against it
 *           sni: api.internal                 # sent, and the name checked
 *           cert: /etc/sluice/client.pem      # optional: mTLS to backends
 *           key: /etc/sluice/client.key
 *
 * Verification is on unless `verify: false` says otherwise in so many
 * words; the name checked is `verify_name`, else `sni`, else the
 * backend's IP address (an IP SAN), so a certificate is never accepted
 * for just any name. Each worker keeps the last session a backend gave
 * it and offers it on the next new connection to that backend, so a
 * reconnect costs a resumption, not a full handshake; connections are
 * also kept alive and reused by the pool as plain ones are.
 */
#ifndef SLUICE_PROXY_TLS_UPSTREAM_H
#define SLUICE_PROXY_TLS_UPSTREAM_H

#include <stdbool.h>
#include <stddef.h>

#include <openssl/ssl.h>

#include "lib/addr.h"

struct config_ctx;
struct ynode;

struct cfg_pool_tls {
    bool enabled;          /* the pool has a tls: block */
    char *ca_file;         /* "ca" */
    bool verify;           /* default true */
    char *sni;             /* server name sent; NULL = none */
    char *verify_name;     /* name the certificate must carry; NULL = sni, else the address */
    char *cert_file;       /* client certificate chain (mTLS to backends) */
    char *key_file;
    char *ciphers;         /* TLS <= 1.2 cipher string; NULL = the default */
    bool session_reuse;    /* default true */
    int line;
    int ca_line, cert_line, key_line, ciphers_line, verify_line;
};

/* Parse the pool's `tls:` mapping (out zeroed before), checking the
 * files load as the workers will load them. */
void tls_upstream_parse(struct config_ctx *c, const struct ynode *v, struct cfg_pool_tls *out);
void tls_upstream_conf_free(struct cfg_pool_tls *t);

/* The client context for a pool. NULL with a reason in err. */
SSL_CTX *tls_upstream_ctx_new(const struct cfg_pool_tls *t, char *err, size_t errlen);

/* Where a backend's resumable session is kept (one per backend per
 * worker): the context's new-session callback fills it. */
struct tls_upstream_session {
    SSL_SESSION *sess;
};

/* A client SSL for one new connection to addr, with SNI, the name to
 * verify, and the saved session offered. NULL with a reason in err. */
SSL *tls_upstream_ssl_new(SSL_CTX *ctx, const struct cfg_pool_tls *t, const struct sl_addr *addr,
                          struct tls_upstream_session *slot, char *err, size_t errlen);

/* Forget a backend's session (the backend changed, or its worker ends).
 * Connections still open keep theirs. A slot must outlive the
 * connections made with it (it sits in the backend's runtime, which a
 * worker frees only after closing its connections). */
void tls_upstream_session_drop(struct tls_upstream_session *slot);

#endif
