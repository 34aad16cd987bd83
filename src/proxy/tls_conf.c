/* listeners[].tls: see tls_conf.h and docs/tls.md. */
#include "proxy/tls_conf.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#define ALPN_NAME_MAX 255

/* ------------------------------------------------------------------------
 * Names
 */

bool tls_name_matches(const char *pattern, const char *host)
{
    if (strncmp(pattern, "*.", 2) != 0)
        return strcasecmp(pattern, host) == 0;
    /* "*.example.com" stands for one label: "a.example.com", not
     * "example.com" nor "a.b.example.com". */
    const char *dot = strchr(host, '.');
    return dot && dot != host && strcasecmp(pattern + 1, dot) == 0;
}

static char *lowercase_dup(const char *s, size_t len)
{
    char *out = config_xcalloc(len + 1, 1);
    for (size_t i = 0; i < len; i++)
        out[i] = (s[i] >= 'A' && s[i] <= 'Z') ? (char)(s[i] - 'A' + 'a') : s[i];
    return out;
}

static void add_name(struct cfg_tls_cert *ct, const unsigned char *s, int len)
{
    if (len <= 0 || ct->n_names >= TLS_MAX_NAMES || memchr(s, '\0', (size_t)len))
        return; /* an embedded NUL is an attack on name matching, not a name */
    if (!ct->names)
        ct->names = config_xcalloc(TLS_MAX_NAMES, sizeof *ct->names);
    ct->names[ct->n_names++] = lowercase_dup((const char *)s, (size_t)len);
}

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The DNS names of the subjectAltName; the subject's CN only when there
 * is no DNS name there (what browsers do, RFC 6125 §6.4.4). */
static void collect_names(struct cfg_tls_cert *ct)
{
    GENERAL_NAMES *san = X509_get_ext_d2i(ct->leaf, NID_subject_alt_name, NULL, NULL);
    for (int i = 0; san && i < sk_GENERAL_NAME_num(san); i++) {
        const GENERAL_NAME *gn = sk_GENERAL_NAME_value(san, i);
        if (gn->type == GEN_DNS)
            add_name(ct, ASN1_STRING_get0_data(gn->d.dNSName), ASN1_STRING_length(gn->d.dNSName));
    }
    GENERAL_NAMES_free(san);
    if (ct->n_names) {
        /* Sorted, so certificates for the same names compare equal
         * whatever order their SANs are in (tls.c groups them). */
        qsort(ct->names, ct->n_names, sizeof *ct->names, cmp_names);
        return;
    }
    const X509_NAME *subject = X509_get_subject_name(ct->leaf);
    int idx = X509_NAME_get_index_by_NID(subject, NID_commonName, -1);
    if (idx < 0)
        return;
    const ASN1_STRING *cn = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subject, idx));
    add_name(ct, ASN1_STRING_get0_data(cn), ASN1_STRING_length(cn));
}

/* ------------------------------------------------------------------------
 * Certificate and key files
 */

/* Encrypted keys are refused rather than prompted for on a terminal. */
static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
    return -1;
}

static const char *ssl_reason(void)
{
    unsigned long e = ERR_peek_last_error();
    const char *r = e ? ERR_reason_error_string(e) : NULL;
    return r ? r : "unknown error";
}

/* The leaf, then every further certificate of the file as the chain. */
static bool load_cert_file(struct config_ctx *c, int line, struct cfg_tls_cert *ct)
{
    FILE *f = fopen(ct->cert_file, "r");
    if (!f) {
        config_err_at(c, line, "cannot read %s: %s", ct->cert_file, strerror(errno));
        return false;
    }
    ERR_clear_error();
    ct->leaf = PEM_read_X509(f, NULL, no_passphrase, NULL);
    if (!ct->leaf) {
        config_err_at(c, line, "%s: not a PEM certificate", ct->cert_file);
        fclose(f);
        return false;
    }
    ct->chain = sk_X509_new_null();
    X509 *x;
    while (ct->chain && (x = PEM_read_X509(f, NULL, no_passphrase, NULL)) != NULL)
        if (!sk_X509_push(ct->chain, x))
            X509_free(x);
    /* The loop ends at the end of the file (PEM_R_NO_START_LINE) or at a
     * broken block, which must not pass for a shorter chain. */
    unsigned long e = ERR_peek_last_error();
    bool ok = !e || (ERR_GET_LIB(e) == ERR_LIB_PEM && ERR_GET_REASON(e) == PEM_R_NO_START_LINE);
    if (!ok)
        config_err_at(c, line, "%s: certificate %d of the chain is not valid PEM: %s", ct->cert_file,
                      sk_X509_num(ct->chain) + 2, ssl_reason());
    ERR_clear_error();
    fclose(f);
    return ok;
}

static bool load_key_file(struct config_ctx *c, int line, struct cfg_tls_cert *ct)
{
    FILE *f = fopen(ct->key_file, "r");
    if (!f) {
        config_err_at(c, line, "cannot read %s: %s", ct->key_file, strerror(errno));
        return false;
    }
    ERR_clear_error();
    ct->key = PEM_read_PrivateKey(f, NULL, no_passphrase, NULL);
    fclose(f);
    if (!ct->key) {
        config_err_at(c, line, "%s: not a PEM private key (encrypted keys are not supported): %s", ct->key_file,
                      ssl_reason());
        ERR_clear_error();
        return false;
    }
    ct->key_type = EVP_PKEY_get_base_id(ct->key);
    return true;
}

/* Expired is an error: every verifying client would fail the handshake.
 * A reload with an expired file is refused and the old one stays. */
static void check_validity(struct config_ctx *c, int line, const struct cfg_tls_cert *ct)
{
    const ASN1_TIME *not_after = X509_get0_notAfter(ct->leaf);
    if (X509_cmp_current_time(not_after) >= 0)
        return;
    struct tm tm;
    char when[32] = "?";
    if (ASN1_TIME_to_tm(not_after, &tm))
        strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S UTC", &tm);
    config_err_at(c, line, "%s: certificate expired on %s", ct->cert_file, when);
}

/* ------------------------------------------------------------------------
 * certificates[]
 */

struct cert_state {
    struct cfg_tls_cert *ct;
    int cert_line, key_line, ocsp_line;
};

enum { CK_CERT, CK_KEY, CK_OCSP };
static const char *const cert_keys[] = { "cert", "key", "ocsp", NULL };

static void cert_field(struct config_ctx *c, int key, const struct ynode *v, void *obj)
{
    struct cert_state *st = obj;
    if (key == CK_CERT && config_get_text(c, v, "a certificate file path", &st->ct->cert_file))
        st->cert_line = v->line;
    if (key == CK_KEY && config_get_text(c, v, "a private key file path", &st->ct->key_file))
        st->key_line = v->line;
    if (key == CK_OCSP && config_get_text(c, v, "an OCSP response file path (DER)", &st->ct->ocsp_file))
        st->ocsp_line = v->line;
}

/* `ocsp:` the response must be about this leaf, from its issuer (the
 * next certificate of the cert file), current and not "revoked". */
static void load_ocsp(struct config_ctx *c, const struct cert_state *st)
{
    struct cfg_tls_cert *ct = st->ct;
    char err[512];
    size_t mark = config_path_push(c, ".ocsp");
    if (tls_ocsp_load(ct->ocsp_file, ct->leaf, ct->chain, &ct->ocsp, err, sizeof err) < 0)
        config_err_at(c, st->ocsp_line, "%s", err);
    config_path_pop(c, mark);
}

static void load_cert(struct config_ctx *c, const struct cert_state *st)
{
    struct cfg_tls_cert *ct = st->ct;
    size_t mark = config_path_push(c, ".cert");
    bool cert_ok = load_cert_file(c, st->cert_line, ct);
    if (cert_ok) {
        check_validity(c, st->cert_line, ct);
        collect_names(ct);
        if (!ct->n_names)
            config_err_at(c, st->cert_line, "%s: the certificate names no host (no DNS subjectAltName, no CN)",
                          ct->cert_file);
    }
    config_path_pop(c, mark);
    if (cert_ok && st->ocsp_line)
        load_ocsp(c, st);
    mark = config_path_push(c, ".key");
    if (load_key_file(c, st->key_line, ct) && cert_ok && X509_check_private_key(ct->leaf, ct->key) != 1)
        config_err_at(c, st->key_line, "%s does not match the certificate in %s", ct->key_file, ct->cert_file);
    ERR_clear_error();
    config_path_pop(c, mark);
}

static void parse_cert(struct config_ctx *c, const struct ynode *v, struct cfg_tls_cert *ct)
{
    struct cert_state st = { .ct = ct };
    ct->line = v->line;
    if (!config_walk_map(c, v, cert_keys, cert_field, &st))
        return;
    bool has_cert = config_map_has_key(v, "cert"), has_key = config_map_has_key(v, "key");
    if (!has_cert)
        config_missing_key(c, v, "cert");
    if (!has_key)
        config_missing_key(c, v, "key");
    if (st.cert_line && st.key_line)
        load_cert(c, &st);
}

bool tls_cert_same_names(const struct cfg_tls_cert *a, const struct cfg_tls_cert *b)
{
    if (a->n_names != b->n_names)
        return false;
    for (size_t i = 0; i < a->n_names; i++)
        if (strcmp(a->names[i], b->names[i]) != 0)
            return false;
    return true;
}

/* Two certificates of one key type for the same names: OpenSSL would keep
 * only the last one, so the first could never be served. */
static void check_duplicate_certs(struct config_ctx *c, const struct cfg_tls *t)
{
    for (size_t i = 1; i < t->n_certs; i++) {
        const struct cfg_tls_cert *b = &t->certs[i];
        for (size_t j = 0; b->key && b->n_names && j < i; j++) {
            const struct cfg_tls_cert *a = &t->certs[j];
            if (!a->key || a->key_type != b->key_type || !tls_cert_same_names(a, b))
                continue;
            size_t mark = config_path_push(c, "[%zu]", i);
            config_err_at(c, b->line, "same names and key type as certificates[%zu] (line %d): one of them could "
                          "never be served", j, a->line);
            config_path_pop(c, mark);
            break;
        }
    }
}

static void parse_certs(struct config_ctx *c, const struct ynode *v, struct cfg_tls *t)
{
    if (!config_expect_seq(c, v))
        return;
    if (v->n_items == 0 || v->n_items > TLS_MAX_CERTIFICATES) {
        config_err_at(c, v->line, "expected 1 to %d certificates, got %zu", TLS_MAX_CERTIFICATES, v->n_items);
        return;
    }
    t->certs = config_xcalloc(v->n_items, sizeof *t->certs);
    t->n_certs = v->n_items;
    for (size_t i = 0; i < v->n_items; i++) {
        size_t mark = config_path_push(c, "[%zu]", i);
        parse_cert(c, v->items[i], &t->certs[i]);
        config_path_pop(c, mark);
    }
    check_duplicate_certs(c, t);
}

/* ------------------------------------------------------------------------
 * protocols, ciphers, ciphersuites, alpn
 */

static void protocol_one(struct config_ctx *c, const struct ynode *v, void *obj)
{
    uint32_t *versions = obj;
    const char *s = config_scalar(c, v, "TLSv1.2 or TLSv1.3");
    if (!s)
        return;
    if (strcmp(s, "TLSv1.2") == 0)
        *versions |= TLS_V12;
    else if (strcmp(s, "TLSv1.3") == 0)
        *versions |= TLS_V13;
    else if (!strcmp(s, "SSLv2") || !strcmp(s, "SSLv3") || !strcmp(s, "TLSv1") || !strcmp(s, "TLSv1.0") ||
             !strcmp(s, "TLSv1.1"))
        config_err_at(c, v->line, "%s is not supported (it is broken or deprecated): use TLSv1.2 and/or TLSv1.3", s);
    else
        config_err_at(c, v->line, "unknown protocol \"%s\" (expected TLSv1.2 or TLSv1.3)", config_shown_str(c, s));
}

static void parse_protocols(struct config_ctx *c, const struct ynode *v, struct cfg_tls *t)
{
    uint32_t versions = 0;
    size_t before = config_error_count(c);
    config_each_item(c, v, 2, "protocols", protocol_one, &versions);
    if (config_error_count(c) != before)
        return;
    if (!versions) {
        config_err_at(c, v->line, "at least one protocol is required (TLSv1.2, TLSv1.3)");
        return;
    }
    t->versions = versions;
}

/* One element of an OpenSSL cipher string that names ciphers (not "!x",
 * "-x", "+x" or "@STRENGTH"): alone it must select something, or it is a
 * typo that OpenSSL would silently skip. */
static bool cipher_element_known(SSL_CTX *scratch, const char *elem)
{
    if (strchr("!-+@", elem[0]))
        return true;
    return SSL_CTX_set_cipher_list(scratch, elem) == 1;
}

static void parse_ciphers(struct config_ctx *c, const struct ynode *v, struct cfg_tls *t)
{
    const char *s = config_scalar(c, v, "an OpenSSL cipher string");
    if (!s)
        return;
    SSL_CTX *scratch = SSL_CTX_new(TLS_server_method());
    char *copy = config_xstrdup(s), *save = NULL;
    bool ok = scratch != NULL;
    for (char *e = strtok_r(copy, ":, ", &save); ok && e; e = strtok_r(NULL, ":, ", &save)) {
        if (!cipher_element_known(scratch, e)) {
            config_err_at(c, v->line, "unknown cipher \"%s\" in \"%s\"", config_shown_str(c, e), config_shown_str(c, s));
            ok = false;
        }
    }
    if (ok && SSL_CTX_set_cipher_list(scratch, s) != 1) {
        config_err_at(c, v->line, "\"%s\" selects no cipher", config_shown_str(c, s));
        ok = false;
    }
    if (ok)
        config_set_str(&t->ciphers, s);
    ERR_clear_error();
    free(copy);
    SSL_CTX_free(scratch);
}

/* RFC 8446 B.4: every TLS 1.3 suite there is. OpenSSL 3.0 skips names it
 * does not know, so a typo would pass unseen. */
static const char *const tls13_suites[] = {
    "TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256",
    "TLS_AES_128_CCM_SHA256", "TLS_AES_128_CCM_8_SHA256", NULL,
};

static bool suite_known(const char *name)
{
    for (size_t i = 0; tls13_suites[i]; i++)
        if (strcmp(tls13_suites[i], name) == 0)
            return true;
    return false;
}

static void parse_ciphersuites(struct config_ctx *c, const struct ynode *v, struct cfg_tls *t)
{
    const char *s = config_scalar(c, v, "TLS 1.3 ciphersuites separated by ':'");
    if (!s)
        return;
    char *copy = config_xstrdup(s), *save = NULL;
    bool ok = true;
    size_t n = 0;
    for (char *e = strtok_r(copy, ":", &save); ok && e; e = strtok_r(NULL, ":", &save), n++) {
        if (!suite_known(e)) {
            config_err_at(c, v->line, "unknown TLS 1.3 ciphersuite \"%s\" (known: TLS_AES_128_GCM_SHA256, "
                          "TLS_AES_256_GCM_SHA384, TLS_CHACHA20_POLY1305_SHA256, TLS_AES_128_CCM_SHA256, "
                          "TLS_AES_128_CCM_8_SHA256)", config_shown_str(c, e));
            ok = false;
        }
    }
    if (ok && n == 0) {
        config_err_at(c, v->line, "at least one ciphersuite is required");
        ok = false;
    }
    if (ok)
        config_set_str(&t->ciphersuites, s);
    free(copy);
}

struct alpn_walk {
    struct cfg_tls *t;
    bool is_http;
};

static bool alpn_name_ok(const char *s)
{
    size_t len = strlen(s);
    if (len == 0 || len > ALPN_NAME_MAX)
        return false;
    for (; *s; s++)
        if ((unsigned char)*s <= 0x20 || (unsigned char)*s >= 0x7f)
            return false;
    return true;
}

/* http listeners: what the proxy can speak. tcp listeners relay bytes
 * they do not interpret, so any registered-looking name is accepted. */
static void alpn_one(struct config_ctx *c, const struct ynode *v, void *obj)
{
    struct alpn_walk *aw = obj;
    const char *s = config_scalar(c, v, "a protocol name");
    if (!s)
        return;
    if (aw->is_http && strcmp(s, "http/1.1") != 0 && strcmp(s, "h2") != 0) {
        config_err_at(c, v->line, "unknown ALPN protocol \"%s\" for an http listener (expected h2 or http/1.1)",
                      config_shown_str(c, s));
        return;
    }
    if (!alpn_name_ok(s)) {
        config_err_at(c, v->line, "expected an ALPN protocol name of 1 to %d visible ASCII characters, got \"%s\"",
                      ALPN_NAME_MAX, config_shown_str(c, s));
        return;
    }
    for (size_t i = 0; i < aw->t->n_alpn; i++) {
        if (strcmp(aw->t->alpn[i], s) == 0) {
            config_err_at(c, v->line, "\"%s\" is listed twice", config_shown_str(c, s));
            return;
        }
    }
    aw->t->alpn[aw->t->n_alpn++] = config_xstrdup(s);
}

static void free_alpn(struct cfg_tls *t)
{
    for (size_t i = 0; i < t->n_alpn; i++)
        free(t->alpn[i]);
    free(t->alpn);
    t->alpn = NULL;
    t->n_alpn = 0;
}

static void parse_alpn(struct config_ctx *c, const struct ynode *v, struct cfg_tls *t, bool is_http)
{
    free_alpn(t); /* the default */
    t->alpn = config_xcalloc(TLS_MAX_ALPN, sizeof *t->alpn);
    struct alpn_walk aw = { t, is_http };
    config_each_item(c, v, TLS_MAX_ALPN, "ALPN protocols", alpn_one, &aw);
}

/* ------------------------------------------------------------------------
 * client_certificates (mTLS)
 */

struct clients_state {
    struct cfg_tls_clients *cl;
    bool is_http;
    int ca_line, header_line;
};

enum { CC_CA, CC_VERIFY, CC_SUBJECT_HEADER };
static const char *const clients_keys[] = { "ca", "verify", "subject_header", NULL };
static const char *const verify_names[] = { "required", "optional", NULL }; /* TLS_CLIENT_ - 1 */

/* An HTTP field name (RFC 9110 token) that is ours to set. */
static bool header_name_ok(const char *s)
{
    if (!*s || strlen(s) > 64)
        return false;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') || *s == '-'))
            return false;
    return true;
}

static void clients_field(struct config_ctx *c, int key, const struct ynode *v, void *obj)
{
    struct clients_state *st = obj;
    int verify;
    switch (key) {
    case CC_CA:
        if (config_get_text(c, v, "a PEM file of CA certificates", &st->cl->ca_file))
            st->ca_line = v->line;
        break;
    case CC_VERIFY:
        if (config_get_enum(c, v, verify_names, &verify))
            st->cl->verify = (enum tls_client_verify)(verify + 1);
        break;
    case CC_SUBJECT_HEADER: {
        const char *s = config_scalar(c, v, "an HTTP header name");
        if (!s)
            break;
        if (!st->is_http)
            config_err_at(c, v->line, "only http listeners pass the subject in a header");
        else if (!header_name_ok(s))
            config_err_at(c, v->line, "expected an HTTP header name of letters, digits and '-', got \"%s\"",
                          config_shown_str(c, s));
        else
            config_set_str(&st->cl->subject_header, s);
        st->header_line = v->line;
        break;
    }
    }
}

/* Every certificate of the CA file; each must be a CA (a leaf there
 * would trust nothing and is a sign of the wrong file). */
static void load_client_ca(struct config_ctx *c, int line, struct cfg_tls_clients *cl)
{
    FILE *f = fopen(cl->ca_file, "r");
    if (!f) {
        config_err_at(c, line, "cannot read %s: %s", cl->ca_file, strerror(errno));
        return;
    }
    ERR_clear_error();
    cl->ca = sk_X509_new_null();
    X509 *x;
    while (cl->ca && (x = PEM_read_X509(f, NULL, no_passphrase, NULL)) != NULL) {
        if (X509_check_ca(x) == 0) {
            config_err_at(c, line, "%s: certificate %d is not a CA certificate", cl->ca_file, sk_X509_num(cl->ca) + 1);
            X509_free(x);
            break;
        }
        if (!sk_X509_push(cl->ca, x))
            X509_free(x);
    }
    unsigned long e = ERR_peek_last_error();
    bool clean_end = !e || (ERR_GET_LIB(e) == ERR_LIB_PEM && ERR_GET_REASON(e) == PEM_R_NO_START_LINE);
    if (!clean_end)
        config_err_at(c, line, "%s: certificate %d is not valid PEM: %s", cl->ca_file,
                      cl->ca ? sk_X509_num(cl->ca) + 1 : 1, ssl_reason());
    else if (!cl->ca || sk_X509_num(cl->ca) == 0)
        config_err_at(c, line, "%s: no PEM certificate in it", cl->ca_file);
    ERR_clear_error();
    fclose(f);
}

static void parse_clients(struct config_ctx *c, const struct ynode *v, struct cfg_tls *t, bool is_http)
{
    struct cfg_tls_clients *cl = &t->clients;
    struct clients_state st = { .cl = cl, .is_http = is_http };
    cl->verify = TLS_CLIENT_REQUIRED;
    if (!config_walk_map(c, v, clients_keys, clients_field, &st))
        return;
    if (!config_map_has_key(v, "ca")) {
        config_missing_key(c, v, "ca");
    } else if (st.ca_line) {
        size_t mark = config_path_push(c, ".ca");
        load_client_ca(c, st.ca_line, cl);
        config_path_pop(c, mark);
    }
    if (is_http && !st.header_line)
        config_set_str(&cl->subject_header, TLS_DEFAULT_SUBJECT_HEADER);
}

/* ------------------------------------------------------------------------
 * The block
 */

struct tls_state {
    struct cfg_tls *t;
    bool is_http;
};

enum { TK_CERTIFICATES, TK_PROTOCOLS, TK_CIPHERS, TK_CIPHERSUITES, TK_ALPN, TK_HANDSHAKE_TIMEOUT, TK_SESSIONS,
       TK_CLIENTS };
static const char *const tls_keys[] = {
    "certificates", "protocols", "ciphers", "ciphersuites", "alpn", "handshake_timeout", "sessions",
    "client_certificates", NULL,
};

static void tls_field(struct config_ctx *c, int key, const struct ynode *v, void *obj)
{
    struct tls_state *st = obj;
    switch (key) {
    case TK_CERTIFICATES:
        parse_certs(c, v, st->t);
        break;
    case TK_PROTOCOLS:
        parse_protocols(c, v, st->t);
        break;
    case TK_CIPHERS:
        parse_ciphers(c, v, st->t);
        break;
    case TK_CIPHERSUITES:
        parse_ciphersuites(c, v, st->t);
        break;
    case TK_ALPN:
        parse_alpn(c, v, st->t, st->is_http);
        break;
    case TK_HANDSHAKE_TIMEOUT:
        config_get_duration(c, v, 100, 10 * CONFIG_MINUTE, &st->t->handshake_timeout_ms);
        break;
    case TK_SESSIONS:
        tls_sessions_parse(c, v, &st->t->sessions);
        break;
    case TK_CLIENTS:
        parse_clients(c, v, st->t, st->is_http);
        break;
    }
}

static void tls_defaults(struct cfg_tls *t, bool is_http)
{
    t->versions = TLS_V12 | TLS_V13;
    t->handshake_timeout_ms = 10 * CONFIG_SECOND;
    tls_sessions_defaults(&t->sessions);
    if (!is_http)
        return; /* tcp: no ALPN unless configured */
    t->alpn = config_xcalloc(TLS_MAX_ALPN, sizeof *t->alpn);
    t->alpn[t->n_alpn++] = config_xstrdup("h2");
    t->alpn[t->n_alpn++] = config_xstrdup("http/1.1");
}

void tls_conf_parse(struct config_ctx *c, const struct ynode *v, bool is_http, struct cfg_tls **out)
{
    struct cfg_tls *t = config_xcalloc(1, sizeof *t);
    tls_defaults(t, is_http);
    t->line = v->line;
    struct tls_state st = { t, is_http };
    if (config_walk_map(c, v, tls_keys, tls_field, &st) && !config_map_has_key(v, "certificates"))
        config_missing_key(c, v, "certificates");
    *out = t;
}

void tls_conf_free(struct cfg_tls *t)
{
    if (!t)
        return;
    for (size_t i = 0; i < t->n_certs; i++) {
        struct cfg_tls_cert *ct = &t->certs[i];
        free(ct->cert_file);
        free(ct->key_file);
        X509_free(ct->leaf);
        sk_X509_pop_free(ct->chain, X509_free);
        EVP_PKEY_free(ct->key);
        for (size_t k = 0; k < ct->n_names; k++)
            free(ct->names[k]);
        free(ct->names);
        free(ct->ocsp_file);
        tls_ocsp_free(&ct->ocsp);
    }
    free(t->clients.ca_file);
    sk_X509_pop_free(t->clients.ca, X509_free);
    free(t->clients.subject_header);
    free(t->certs);
    free(t->ciphers);
    free(t->ciphersuites);
    free_alpn(t);
    tls_sessions_free(&t->sessions);
    free(t);
}
