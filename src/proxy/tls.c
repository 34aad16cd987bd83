/* A listener's SSL_CTXs: see tls.h. */
#include "proxy/tls.h"
#include "proxy/tls_openssl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/evp.h>

#include "proxy/tls_session.h"

/* ------------------------------------------------------------------------
 * Groups: certificates that serve the same names share one SSL_CTX.
 */

/* group[i]: the group of certificate i, numbered in order of first
 * appearance, so the first certificate's group is 0, the default. */
static size_t assign_groups(const struct cfg_tls *cfg, size_t *group)
{
    size_t n = 0;
    for (size_t i = 0; i < cfg->n_certs; i++) {
        group[i] = n;
        for (size_t j = 0; j < i; j++) {
            if (tls_cert_same_names(&cfg->certs[j], &cfg->certs[i])) {
                group[i] = group[j];
                break;
            }
        }
        if (group[i] == n)
            n++;
    }
    return n;
}

int tls_server_lookup(const struct tls_server *s, const char *host)
{
    for (size_t i = 0; i < s->n_names; i++)
        if (s->names[i].name[0] != '*' && tls_name_matches(s->names[i].name, host))
            return (int)s->names[i].group;
    for (size_t i = 0; i < s->n_names; i++)
        if (s->names[i].name[0] == '*' && tls_name_matches(s->names[i].name, host))
            return (int)s->names[i].group;
    return -1;
}

/* ------------------------------------------------------------------------
 * Callbacks
 */

/* SNI: switch to the group that serves the name; an unknown name (or
 * none) keeps the default rather than failing, as nginx and HAProxy do:
 * the client then judges the certificate itself. */
static int servername_cb(SSL *ssl, int *alert, void *arg)
{
    const struct tls_server *s = arg;
    const char *name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
    if (!name || s->n_ctx < 2)
        return SSL_TLSEXT_ERR_OK;
    char host[256];
    size_t len = strnlen(name, sizeof host);
    if (len == sizeof host)
        return SSL_TLSEXT_ERR_OK;
    for (size_t i = 0; i <= len; i++)
        host[i] = (name[i] >= 'A' && name[i] <= 'Z') ? (char)(name[i] - 'A' + 'a') : name[i];
    if (len && host[len - 1] == '.')
        host[len - 1] = '\0';
    int g = tls_server_lookup(s, host);
    if (g >= 0 && SSL_get_SSL_CTX(ssl) != s->ctx[g])
        SSL_set_SSL_CTX(ssl, s->ctx[g]);
    return SSL_TLSEXT_ERR_OK;
}

/* ALPN: the first protocol of ours the client also offers (our
 * preference). No overlap means no ALPN rather than a failed handshake
 * (RFC 7301 allows either): a client that offers only, say, "spdy/3"
 * still gets HTTP/1.1, which it can always speak. */
static int alpn_select_cb(SSL *ssl, const unsigned char **out, unsigned char *outlen, const unsigned char *in,
                          unsigned int inlen, void *arg)
{
    const struct tls_server *s = arg;
    unsigned char *chosen = NULL;
    if (!s->alpn_len)
        return SSL_TLSEXT_ERR_NOACK;
    if (SSL_select_next_proto(&chosen, outlen, s->alpn_wire, (unsigned int)s->alpn_len, in, inlen) !=
        OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_NOACK;
    *out = chosen;
    return SSL_TLSEXT_ERR_OK;
}

/* ------------------------------------------------------------------------
 * Building
 */

static void ssl_err(char *err, size_t errlen, const char *what)
{
    unsigned long e = ERR_peek_last_error();
    const char *r = e ? ERR_reason_error_string(e) : NULL;
    snprintf(err, errlen, "%s: %s", what, r ? r : "unknown error");
    ERR_clear_error();
}

static bool set_versions(SSL_CTX *ctx, uint32_t versions)
{
    int min = (versions & TLS_V12) ? TLS1_2_VERSION : TLS1_3_VERSION;
    int max = (versions & TLS_V13) ? TLS1_3_VERSION : TLS1_2_VERSION;
    return SSL_CTX_set_min_proto_version(ctx, min) && SSL_CTX_set_max_proto_version(ctx, max);
}

/* What every group's SSL_CTX shares: versions, ciphers, options, the
 * callbacks, and the listener's session store (tickets, the shared
 * session-ID cache, the session timeout and ID context), on every context
 * since SNI may move a connection to any of them. */
static SSL_CTX *new_ctx(struct tls_server *s, struct tls_session_store *sessions, char *err, size_t errlen)
{
    const struct cfg_tls *cfg = s->cfg;
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx) {
        ssl_err(err, errlen, "SSL_CTX_new");
        return NULL;
    }
    /* No renegotiation (a CPU sink and an old attack surface); no TLS
     * compression (CRIME); an EOF without close_notify reads as the end,
     * as it does for nginx: HTTP frames its own messages. */
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION | SSL_OP_IGNORE_UNEXPECTED_EOF);
    /* The listener's cipher order wins (so a configured list that keeps a
     * weaker cipher for old clients does not let a client choose it over a
     * stronger one), except that a client that puts ChaCha20 first, a
     * phone without AES instructions, gets ChaCha20. */
    SSL_CTX_set_options(ctx, SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_PRIORITIZE_CHACHA);
    /* Partial writes: send() may take fewer bytes than offered, as the
     * transport contract allows. Moving buffer: a retried write may come
     * from another address (the staging buffer, or the caller's after it
     * moved its bytes). Release buffers: an idle keep-alive connection
     * does not hold 34 KB of record buffers. */
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                              SSL_MODE_RELEASE_BUFFERS);
    tls_openssl_set_async(ctx);
    const char *ciphers = cfg->ciphers ? cfg->ciphers : TLS_DEFAULT_CIPHERS;
    if (!set_versions(ctx, cfg->versions) || SSL_CTX_set_cipher_list(ctx, ciphers) != 1 ||
        (cfg->ciphersuites && SSL_CTX_set_ciphersuites(ctx, cfg->ciphersuites) != 1)) {
        ssl_err(err, errlen, "protocols or ciphers");
        SSL_CTX_free(ctx);
        return NULL;
    }
    /* The store ties sessions to the listener (the session ID context is
     * derived from its name) and owns tickets and the cache. Without one
     * (tests), still: sessions of one listener do not resume on another. */
    if (sessions && tls_sessions_attach(ctx, sessions, s->listener) < 0) {
        ssl_err(err, errlen, "session reuse");
        SSL_CTX_free(ctx);
        return NULL;
    }
    if (!sessions)
        SSL_CTX_set_session_id_context(ctx, (const unsigned char *)s->listener,
                                       (unsigned int)strnlen(s->listener, SSL_MAX_SID_CTX_LENGTH));
    SSL_CTX_set_tlsext_servername_callback(ctx, servername_cb);
    SSL_CTX_set_tlsext_servername_arg(ctx, s);
    SSL_CTX_set_alpn_select_cb(ctx, alpn_select_cb, s);
    return ctx;
}

static bool add_cert(SSL_CTX *ctx, const struct cfg_tls_cert *ct, char *err, size_t errlen)
{
    if (SSL_CTX_use_cert_and_key(ctx, ct->leaf, ct->key, ct->chain, 1) != 1) {
        char what[300];
        snprintf(what, sizeof what, "certificate %s", ct->cert_file);
        ssl_err(err, errlen, what);
        return false;
    }
    return true;
}

/* The certificate's OCSP response, stapled in the handshakes that choose
 * it: each SSL_CTX keeps its own copy (tls_ocsp_attach owns it), the
 * configuration's stays for the next worker. */
static bool add_staple(SSL_CTX *ctx, const struct cfg_tls_cert *ct, char *err, size_t errlen)
{
    if (!ct->ocsp.der)
        return true;
    struct tls_ocsp copy = ct->ocsp;
    copy.der = malloc(ct->ocsp.len);
    if (copy.der)
        memcpy(copy.der, ct->ocsp.der, ct->ocsp.len);
    if (!copy.der || tls_ocsp_attach(ctx, ct->leaf, &copy) < 0) {
        tls_ocsp_free(&copy);
        snprintf(err, errlen, "out of memory (OCSP response of %s)", ct->cert_file);
        return false;
    }
    return true;
}

/* client_certificates: every context of the listener asks the same way,
 * since SNI may move a connection to any of them (the verify mode stays
 * the first context's, the CA store and names come from the current). */
/* A session (ID or ticket) made under one client-certificate policy must
 * not resume under another: a resumed handshake skips the client's
 * certificate, so a session from before `verify: required` (or from a
 * node sharing the ticket key file without it, or from a CA since
 * removed) would get in without one. The session ID context, which
 * OpenSSL compares before resuming, becomes a digest of the listener's
 * name, the verify mode and the CA certificates. */
static bool bind_sessions_to_client_policy(SSL_CTX *ctx, const char *listener, const struct cfg_tls_clients *cl)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int md_len = 0;
    EVP_MD_CTX *h = EVP_MD_CTX_new();
    unsigned char mode = (unsigned char)cl->verify;
    bool ok = h && EVP_DigestInit_ex(h, EVP_sha256(), NULL) &&
              EVP_DigestUpdate(h, listener, strlen(listener) + 1) && EVP_DigestUpdate(h, &mode, 1);
    for (int i = 0; ok && i < sk_X509_num(cl->ca); i++) {
        unsigned char *der = NULL;
        int len = i2d_X509(sk_X509_value(cl->ca, i), &der);
        ok = len > 0 && EVP_DigestUpdate(h, der, (size_t)len);
        OPENSSL_free(der);
    }
    ok = ok && EVP_DigestFinal_ex(h, md, &md_len) &&
         SSL_CTX_set_session_id_context(ctx, md, md_len < SSL_MAX_SID_CTX_LENGTH ? md_len : SSL_MAX_SID_CTX_LENGTH);
    EVP_MD_CTX_free(h);
    return ok;
}

static bool setup_client_verify(SSL_CTX *ctx, const char *listener, const struct cfg_tls_clients *cl, char *err,
                                size_t errlen)
{
    if (cl->verify == TLS_CLIENT_NONE)
        return true;
    X509_STORE *store = SSL_CTX_get_cert_store(ctx);
    STACK_OF(X509_NAME) *names = sk_X509_NAME_new_null();
    bool ok = store && names;
    for (int i = 0; ok && i < sk_X509_num(cl->ca); i++) {
        X509 *ca = sk_X509_value(cl->ca, i);
        X509_NAME *name = X509_NAME_dup(X509_get_subject_name(ca));
        ok = X509_STORE_add_cert(store, ca) == 1 && name && sk_X509_NAME_push(names, name);
        if (!ok)
            X509_NAME_free(name);
    }
    if (!ok) {
        sk_X509_NAME_pop_free(names, X509_NAME_free);
        ssl_err(err, errlen, "client_certificates.ca");
        return false;
    }
    SSL_CTX_set_client_CA_list(ctx, names); /* sent in CertificateRequest; owned by ctx */
    if (!bind_sessions_to_client_policy(ctx, listener, cl)) {
        ssl_err(err, errlen, "client_certificates: session id context");
        return false;
    }
    int mode = SSL_VERIFY_PEER;
    if (cl->verify == TLS_CLIENT_REQUIRED)
        mode |= SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
    SSL_CTX_set_verify(ctx, mode, NULL);
    return true;
}

static bool build_names(struct tls_server *s, const size_t *group)
{
    const struct cfg_tls *cfg = s->cfg;
    size_t total = 0;
    for (size_t i = 0; i < cfg->n_certs; i++)
        total += cfg->certs[i].n_names;
    s->names = calloc(total ? total : 1, sizeof *s->names);
    if (!s->names)
        return false;
    for (size_t i = 0; i < cfg->n_certs; i++) {
        bool listed = false; /* the group's names, by an earlier certificate of it */
        for (size_t j = 0; j < i && !listed; j++)
            listed = group[j] == group[i];
        if (listed)
            continue;
        for (size_t k = 0; k < cfg->certs[i].n_names; k++)
            s->names[s->n_names++] = (struct tls_name){ cfg->certs[i].names[k], group[i] };
    }
    return true;
}

/* "h2", "http/1.1" -> "\x02h2\x08http/1.1" */
static bool build_alpn(struct tls_server *s)
{
    const struct cfg_tls *cfg = s->cfg;
    size_t len = 0;
    for (size_t i = 0; i < cfg->n_alpn; i++)
        len += 1 + strlen(cfg->alpn[i]);
    if (!len)
        return true;
    s->alpn_wire = malloc(len);
    if (!s->alpn_wire)
        return false;
    for (size_t i = 0; i < cfg->n_alpn; i++) {
        size_t n = strlen(cfg->alpn[i]); /* at most 255: tls_conf.c */
        s->alpn_wire[s->alpn_len++] = (unsigned char)n;
        memcpy(s->alpn_wire + s->alpn_len, cfg->alpn[i], n);
        s->alpn_len += n;
    }
    return true;
}

static bool build_contexts(struct tls_server *s, const size_t *group, size_t n_groups,
                           struct tls_session_store *sessions, char *err, size_t errlen)
{
    s->ctx = calloc(n_groups, sizeof *s->ctx);
    if (!s->ctx)
        return false;
    s->n_ctx = n_groups;
    for (size_t g = 0; g < n_groups; g++) {
        s->ctx[g] = new_ctx(s, sessions, err, errlen);
        if (!s->ctx[g] || !setup_client_verify(s->ctx[g], s->listener, &s->cfg->clients, err, errlen))
            return false;
    }
    for (size_t i = 0; i < s->cfg->n_certs; i++)
        if (!add_cert(s->ctx[group[i]], &s->cfg->certs[i], err, errlen) ||
            !add_staple(s->ctx[group[i]], &s->cfg->certs[i], err, errlen))
            return false;
    return true;
}

struct tls_server *tls_server_new(const struct cfg_tls *cfg, const char *listener, struct tls_counters *ctr,
                                  struct tls_session_store *sessions, char *err, size_t errlen)
{
    struct tls_server *s = calloc(1, sizeof *s);
    size_t *group = calloc(cfg->n_certs ? cfg->n_certs : 1, sizeof *group);
    snprintf(err, errlen, "out of memory");
    if (!s || !group || !cfg->n_certs) {
        if (s && group && !cfg->n_certs)
            snprintf(err, errlen, "no certificate");
        free(group);
        free(s);
        return NULL;
    }
    s->cfg = cfg;
    s->listener = listener;
    s->ctr = ctr;
    size_t n_groups = assign_groups(cfg, group);
    bool ok = build_names(s, group) && build_alpn(s) && build_contexts(s, group, n_groups, sessions, err, errlen);
    free(group);
    if (!ok) {
        tls_server_free(s);
        return NULL;
    }
    return s;
}

void tls_server_free(struct tls_server *s)
{
    if (!s)
        return;
    for (size_t g = 0; g < s->n_ctx; g++)
        SSL_CTX_free(s->ctx[g]);
    free(s->ctx);
    free(s->names);
    free(s->alpn_wire);
    free(s);
}
