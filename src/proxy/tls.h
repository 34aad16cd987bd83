/* TLS for a listener: its SSL_CTXs, and the TLS transport (transport.h)
 * that runs a connection over them. See docs/tls.md.
 *
 * Certificates are grouped by the set of names they serve: one SSL_CTX
 * per group, so an ECDSA and an RSA certificate for the same names sit in
 * one SSL_CTX and OpenSSL picks between them by the client's signature
 * algorithms. The SNI (servername) callback moves a connection to the
 * group whose names match the requested host (exact first, then a
 * one-label wildcard); without SNI, or for a name no certificate has, the
 * connection keeps the first certificate's group, the default.
 *
 * A worker builds its listeners' servers at start (tls_server_new) from
 * the certificates and keys its configuration loaded and checked. Session
 * reuse (tickets, the session-ID cache, the session timeout and ID
 * context) is the listener's session store's (proxy/tls_session.h): the
 * master makes the store before it forks, and every SSL_CTX of the
 * listener is attached to it, so a session resumes on any worker.
 */
#ifndef SLUICE_PROXY_TLS_H
#define SLUICE_PROXY_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/ssl.h>

#include "proxy/tls_conf.h"
#include "proxy/transport.h"

struct tls_counters;
struct tls_session_store;

/* One name a group of certificates serves. */
struct tls_name {
    const char *name;              /* "example.com" or "*.example.com", lowercase (the config's) */
    size_t group;                  /* index into tls_server.ctx */
};

struct tls_server {
    const struct cfg_tls *cfg;
    const char *listener;          /* its name, for log lines */
    SSL_CTX **ctx;                 /* one per group of certificates; [0] is the default */
    size_t n_ctx;
    struct tls_name *names;        /* every group's names, in the order of the certificates */
    size_t n_names;
    unsigned char *alpn_wire;      /* the configured ALPN list in wire format (length-prefixed) */
    size_t alpn_len;
    struct tls_counters *ctr;      /* the listener's row for this worker (shared.h) */
};

/* Build the server of a listener; NULL with a reason in err. ctr may be
 * NULL (nothing is counted). sessions: the listener's session store, made
 * by the master before forking; NULL leaves OpenSSL's per-process
 * defaults (tests that build a server alone). */
struct tls_server *tls_server_new(const struct cfg_tls *cfg, const char *listener, struct tls_counters *ctr,
                                  struct tls_session_store *sessions, char *err, size_t errlen);
void tls_server_free(struct tls_server *s);

/* The group serving host (lowercase, no trailing dot): the first name
 * equal to it, else the first wildcard covering it; -1 if none. */
int tls_server_lookup(const struct tls_server *s, const char *host);

/* ------------------------------------------------------------------------
 * The TLS transport (transport_tls.c)
 *
 * recv and send drive the handshake (EAGAIN while it is in progress);
 * transport_tls_handshake() drives it alone, for callers that finish the
 * handshake before anything else (the TCP relay connects to a backend
 * only then; HTTP switches its timer from handshake_timeout to the
 * request's). send never raises SIGPIPE: the socket BIO is our own and
 * writes with MSG_NOSIGNAL. Renegotiation is refused. can_splice is
 * false.
 */

extern const struct transport_ops transport_tls_ops;

/* The server side of a TLS connection over fd (accepted, non-blocking):
 * 0, or -1 (out of memory; fd is left open). */
int transport_tls_server(struct transport *t, int fd, struct tls_server *srv);

/* Any role over fd with an SSL the caller configured (SSL_set_connect_state
 * for a client): the transport takes ownership of ssl. srv may be NULL.
 * 0, or -1 (fd and ssl are left to the caller). */
int transport_tls_attach(struct transport *t, int fd, SSL *ssl, struct tls_server *srv);

static inline bool transport_is_tls(const struct transport *t) { return t->ops == &transport_tls_ops; }

/* Drive the handshake: 1 done, 0 in progress (poll transport_events()),
 * -1 failed (counted and logged; close the transport). */
int transport_tls_handshake(struct transport *t);

/* The caller's handshake timer ran out: count and log it. */
void transport_tls_handshake_timed_out(struct transport *t);

/* Why the handshake of t failed (OpenSSL's reason, or the certificate
 * check that failed on a client), or NULL when t is not TLS, or its
 * handshake has not failed. */
const char *transport_tls_handshake_error(const struct transport *t);

/* Whether ALPN chose "h2" (false for a plain transport). */
bool transport_tls_alpn_is_h2(const struct transport *t);

/* What a finished handshake agreed, for the access log. Strings live as
 * long as the transport; sni is NULL when the client sent none. */
struct tls_info {
    const char *version;           /* "TLSv1.3" */
    const char *cipher;            /* "TLS_AES_128_GCM_SHA256" */
    const char *sni;
    const char *alpn;              /* NULL when none was agreed */
    int resumed;                   /* TLS_RESUMED_NO, _TICKET or _CACHE (tls_session.h) */
    const char *client_subject;    /* verified client certificate's subject (RFC 2253); NULL: none */
};

/* False (and *out untouched) for a plain transport or before the
 * handshake is done. */
bool transport_tls_info(const struct transport *t, struct tls_info *out);

#endif
