/* TLS to backends: see tls_upstream.h. */
#include "proxy/tls_upstream.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/x509v3.h>

#include "core/config_walk.h"
#include "proxy/tls_openssl.h"

enum { UK_CA, UK_VERIFY, UK_SNI, UK_VERIFY_NAME, UK_CERT, UK_KEY, UK_CIPHERS, UK_SESSION_REUSE };
static const char *const upstream_tls_keys[] = { "ca",  "verify",  "sni",           "verify_name",
                                                 "cert", "key",    "ciphers",       "session_reuse", NULL };

/* Default TLS <= 1.2 ciphers: forward secrecy and AEAD only. */
#define UPSTREAM_CIPHERS "ECDHE+AESGCM:ECDHE+CHACHA20"

static int session_slot_index = -1; /* SSL ex_data: the struct tls_upstream_session to fill */

/* A DNS name as SNI allows it: letters, digits, '-' and '.', no empty
 * label, at most 253 characters (RFC 6066 3: no IP literals). */
static bool valid_server_name(const char *s)
{
    size_t len = strlen(s), label = 0;
    if (len == 0 || len > 253)
        return false;
    for (const char *p = s; *p; p++) {
        if (*p == '.') {
            if (label == 0)
                return false;
            label = 0;
            continue;
        }
        if (!(*p == '-' || (*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z')))
            return false;
        if (++label > 63)
            return false;
    }
    return label > 0;
}

static void get_server_name(struct config_ctx *c, const struct ynode *v, char **dst)
{
    const char *s = config_scalar(c, v, "a DNS name");
    if (!s)
        return;
    if (!valid_server_name(s)) {
        config_err_at(c, v->line, "expected a DNS name, got \"%s\"", config_shown_str(c, s));
        return;
    }
    config_set_str(dst, s);
}

static void upstream_tls_field(struct config_ctx *c, int key, const struct ynode *v, void *obj)
{
    struct cfg_pool_tls *t = obj;
    switch (key) {
    case UK_CA:
        t->ca_line = v->line;
        config_get_text(c, v, "a file of CA certificates", &t->ca_file);
        break;
    case UK_VERIFY:
        t->verify_line = v->line;
        config_get_bool(c, v, &t->verify);
        break;
    case UK_SNI:
        get_server_name(c, v, &t->sni);
        break;
    case UK_VERIFY_NAME:
        get_server_name(c, v, &t->verify_name);
        break;
    case UK_CERT:
        t->cert_line = v->line;
        config_get_text(c, v, "a certificate chain file", &t->cert_file);
        break;
    case UK_KEY:
        t->key_line = v->line;
        config_get_text(c, v, "a private key file", &t->key_file);
        break;
    case UK_CIPHERS:
        t->ciphers_line = v->line;
        config_get_text(c, v, "an OpenSSL cipher string", &t->ciphers);
        break;
    case UK_SESSION_REUSE:
        config_get_bool(c, v, &t->session_reuse);
        break;
    }
}

/* Load into a context what the block names, reporting each failure at
 * the line of its key: the same loading the workers do. */
static void check_loads(struct config_ctx *c, struct cfg_pool_tls *t)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx)
        config_oom();
    char why[160];
    if (t->ca_file && !SSL_CTX_load_verify_locations(ctx, t->ca_file, NULL))
        config_err_in(c, t->ca_line, "ca", "cannot load CA certificates from %s: %s",
                      config_shown_str(c, t->ca_file), tls_openssl_error(why, sizeof why));
    if (t->cert_file && !SSL_CTX_use_certificate_chain_file(ctx, t->cert_file))
        config_err_in(c, t->cert_line, "cert", "cannot load a certificate chain from %s: %s",
                      config_shown_str(c, t->cert_file), tls_openssl_error(why, sizeof why));
    else if (t->key_file && !SSL_CTX_use_PrivateKey_file(ctx, t->key_file, SSL_FILETYPE_PEM)) {
        /* OpenSSL compares the key with the certificate as it loads it. */
        if (ERR_GET_REASON(ERR_peek_last_error()) == X509_R_KEY_VALUES_MISMATCH)
            config_err_in(c, t->key_line, "key", "%s is not the key of the certificate in %s",
                          config_shown_str(c, t->key_file), config_shown_str(c, t->cert_file));
        else
            config_err_in(c, t->key_line, "key", "cannot load a private key from %s: %s",
                          config_shown_str(c, t->key_file), tls_openssl_error(why, sizeof why));
    }
    if (t->ciphers && !SSL_CTX_set_cipher_list(ctx, t->ciphers))
        config_err_in(c, t->ciphers_line, "ciphers", "no cipher matches \"%s\"", config_shown_str(c, t->ciphers));
    ERR_clear_error();
    SSL_CTX_free(ctx);
}

void tls_upstream_parse(struct config_ctx *c, const struct ynode *v, struct cfg_pool_tls *out)
{
    out->enabled = true;
    out->verify = true;
    out->session_reuse = true;
    out->line = v->line;
    size_t before = config_error_count(c);
    if (!config_walk_map(c, v, upstream_tls_keys, upstream_tls_field, out))
        return;
    if (out->verify && !out->ca_file)
        config_err_at(c, v->line, "\"ca\" is required to verify backends (or say \"verify: false\")");
    if (!out->verify && out->ca_file)
        config_err_in(c, out->verify_line, "verify", "\"ca\" is given but \"verify\" is false");
    if (!out->cert_file != !out->key_file)
        config_err_at(c, v->line, "\"cert\" and \"key\" go together");
    if (config_error_count(c) == before)
        check_loads(c, out);
}

void tls_upstream_conf_free(struct cfg_pool_tls *t)
{
    free(t->ca_file);
    free(t->sni);
    free(t->verify_name);
    free(t->cert_file);
    free(t->key_file);
    free(t->ciphers);
    memset(t, 0, sizeof *t);
}

/* A session the backend gave us (TLS 1.3: after the handshake, in a
 * ticket message): keep the newest for the next connection. */
static int on_new_session(SSL *ssl, SSL_SESSION *sess)
{
    struct tls_upstream_session *slot = SSL_get_ex_data(ssl, session_slot_index);
    if (!slot)
        return 0;
    SSL_SESSION_free(slot->sess);
    slot->sess = sess;
    return 1; /* we keep the reference */
}

SSL_CTX *tls_upstream_ctx_new(const struct cfg_pool_tls *t, char *err, size_t errlen)
{
    char why[160];
    if (session_slot_index < 0)
        session_slot_index = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx || session_slot_index < 0) {
        snprintf(err, errlen, "cannot create a TLS context: %s", tls_openssl_error(why, sizeof why));
        SSL_CTX_free(ctx);
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    /* A backend that closes without close_notify (many do) ends the
     * stream as a FIN would; HTTP bodies are framed by their length or
     * chunks anyway, so a cut one is still noticed. */
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION | SSL_OP_IGNORE_UNEXPECTED_EOF);
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER | SSL_MODE_RELEASE_BUFFERS);
    tls_openssl_set_async(ctx);
    const char *what = NULL, *file = NULL;
    if (!SSL_CTX_set_cipher_list(ctx, t->ciphers ? t->ciphers : UPSTREAM_CIPHERS))
        what = "ciphers", file = t->ciphers;
    else if (t->verify && !SSL_CTX_load_verify_locations(ctx, t->ca_file, NULL))
        what = "ca", file = t->ca_file;
    else if (t->cert_file && !SSL_CTX_use_certificate_chain_file(ctx, t->cert_file))
        what = "cert", file = t->cert_file;
    else if (t->key_file && (!SSL_CTX_use_PrivateKey_file(ctx, t->key_file, SSL_FILETYPE_PEM) ||
                             !SSL_CTX_check_private_key(ctx)))
        what = "key", file = t->key_file;
    if (what) {
        snprintf(err, errlen, "tls.%s: %s: %s", what, file ? file : "", tls_openssl_error(why, sizeof why));
        SSL_CTX_free(ctx);
        return NULL;
    }
    SSL_CTX_set_verify(ctx, t->verify ? SSL_VERIFY_PEER : SSL_VERIFY_NONE, NULL);
    if (t->session_reuse) {
        /* Client sessions are kept per backend by us, not by OpenSSL's
         * internal cache (which has no notion of our backends). */
        SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
        SSL_CTX_sess_set_new_cb(ctx, on_new_session);
    } else {
        SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
        SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
    }
    return ctx;
}

SSL *tls_upstream_ssl_new(SSL_CTX *ctx, const struct cfg_pool_tls *t, const struct sl_addr *addr,
                          struct tls_upstream_session *slot, char *err, size_t errlen)
{
    char why[160];
    SSL *ssl = SSL_new(ctx);
    if (!ssl) {
        snprintf(err, errlen, "cannot create a TLS session: %s", tls_openssl_error(why, sizeof why));
        return NULL;
    }
    SSL_set_connect_state(ssl);
    bool ok = true;
    if (t->sni)
        ok = SSL_set_tlsext_host_name(ssl, t->sni);
    if (ok && t->verify) {
        const char *name = t->verify_name ? t->verify_name : t->sni;
        if (name) {
            SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
            ok = SSL_set1_host(ssl, name);
        } else {
            char ip[64];
            ok = addr_ip_string((const struct sockaddr *)&addr->ss, ip, sizeof ip) &&
                 X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), ip);
        }
    }
    if (ok && t->session_reuse && slot) {
        SSL_set_ex_data(ssl, session_slot_index, slot);
        if (slot->sess)
            SSL_set_session(ssl, slot->sess);
    }
    if (!ok) {
        snprintf(err, errlen, "cannot set the server name: %s", tls_openssl_error(why, sizeof why));
        SSL_free(ssl);
        return NULL;
    }
    return ssl;
}

void tls_upstream_session_drop(struct tls_upstream_session *slot)
{
    SSL_SESSION_free(slot->sess);
    slot->sess = NULL;
}
