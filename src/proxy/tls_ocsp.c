/* OCSP stapling: see tls_ocsp.h. */
#include "proxy/tls_ocsp.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/ocsp.h>

#define OCSP_FILE_MAX (64 * 1024) /* responses are a few KiB; larger is not one */
#define OCSP_CLOCK_SKEW_S 300     /* leeway for thisUpdate in the future */

/* The staples of one context, for the certificates it holds. */
struct staple {
    X509 *leaf;                   /* referenced */
    struct tls_ocsp ocsp;
    struct staple *next;
};

static int staples_index = -1;    /* SSL_CTX ex_data: struct staple list */

static const char *ssl_reason(char *buf, size_t cap)
{
    unsigned long e = ERR_peek_last_error();
    const char *r = e ? ERR_reason_error_string(e) : NULL;
    snprintf(buf, cap, "%s", r ? r : "unknown error");
    ERR_clear_error();
    return buf;
}

static int read_file(const char *path, unsigned char **out, size_t *len, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errlen, "cannot open %s: %s", path, strerror(errno));
        return -1;
    }
    unsigned char *buf = malloc(OCSP_FILE_MAX + 1);
    size_t n = buf ? fread(buf, 1, OCSP_FILE_MAX + 1, f) : 0;
    int rerr = ferror(f);
    fclose(f);
    if (!buf || rerr || n == 0 || n > OCSP_FILE_MAX) {
        snprintf(err, errlen, "%s: %s", path,
                 !buf ? "out of memory" : rerr ? "read error" : n == 0 ? "empty file" : "larger than 64 KiB");
        free(buf);
        return -1;
    }
    *out = buf;
    *len = n;
    return 0;
}

/* The issuer of leaf among chain (the certificate file's other
 * certificates). NULL if the file does not carry it. */
static X509 *find_issuer(X509 *leaf, STACK_OF(X509) *chain)
{
    for (int i = 0; chain && i < sk_X509_num(chain); i++) {
        X509 *c = sk_X509_value(chain, i);
        if (X509_check_issued(c, leaf) == X509_V_OK)
            return c;
    }
    return NULL;
}

static time_t asn1_to_time(const ASN1_GENERALIZEDTIME *t)
{
    struct tm tm;
    if (!t || !ASN1_TIME_to_tm(t, &tm))
        return 0;
    return timegm(&tm);
}

/* The answer about leaf inside a parsed response: its status, with the
 * signature and times checked. Returns 0 or -1 (err set). */
static int check_response(OCSP_RESPONSE *resp, X509 *leaf, X509 *issuer, STACK_OF(X509) *chain,
                          struct tls_ocsp *out, char *err, size_t errlen)
{
    char why[96];
    int rs = OCSP_response_status(resp);
    if (rs != OCSP_RESPONSE_STATUS_SUCCESSFUL) {
        snprintf(err, errlen, "the responder answered \"%s\"", OCSP_response_status_str(rs));
        return -1;
    }
    OCSP_BASICRESP *basic = OCSP_response_get1_basic(resp);
    OCSP_CERTID *id = OCSP_cert_to_id(NULL, leaf, issuer);
    X509_STORE *store = X509_STORE_new();
    int rc = -1;
    int status = -1, reason = 0;
    ASN1_GENERALIZEDTIME *this_upd = NULL, *next_upd = NULL, *rev = NULL;
    if (!basic || !id || !store || !X509_STORE_add_cert(store, issuer)) {
        snprintf(err, errlen, "cannot read the response: %s", ssl_reason(why, sizeof why));
    } else if (OCSP_basic_verify(basic, chain, store, OCSP_TRUSTOTHER) <= 0) {
        /* TRUSTOTHER: the issuer itself, or a responder certificate
         * it issued, may sign; nothing else. */
        snprintf(err, errlen, "its signature does not verify against the certificate's issuer: %s",
                 ssl_reason(why, sizeof why));
    } else if (!OCSP_resp_find_status(basic, id, &status, &reason, &rev, &this_upd, &next_upd)) {
        snprintf(err, errlen, "it is not about this certificate");
    } else if (!OCSP_check_validity(this_upd, next_upd, OCSP_CLOCK_SKEW_S, -1)) {
        ERR_clear_error();
        snprintf(err, errlen, "it is not current (outside thisUpdate..nextUpdate)");
    } else if (status == V_OCSP_CERTSTATUS_REVOKED) {
        snprintf(err, errlen, "it says the certificate is revoked");
    } else {
        snprintf(out->status, sizeof out->status, "%s", OCSP_cert_status_str(status));
        out->next_update = asn1_to_time(next_upd);
        rc = 0;
    }
    X509_STORE_free(store);
    OCSP_CERTID_free(id);
    OCSP_BASICRESP_free(basic);
    return rc;
}

int tls_ocsp_load(const char *path, X509 *leaf, STACK_OF(X509) *chain, struct tls_ocsp *out, char *err,
                  size_t errlen)
{
    memset(out, 0, sizeof *out);
    X509 *issuer = find_issuer(leaf, chain);
    if (!issuer) {
        snprintf(err, errlen, "%s: the certificate file has no issuer certificate to check the response with",
                 path);
        return -1;
    }
    unsigned char *der;
    size_t len;
    if (read_file(path, &der, &len, err, errlen) < 0)
        return -1;
    const unsigned char *p = der;
    OCSP_RESPONSE *resp = d2i_OCSP_RESPONSE(NULL, &p, (long)len);
    char why[256];
    if (!resp || p != der + len) {
        snprintf(err, errlen, "%s: not a DER OCSP response", path);
        ERR_clear_error();
        OCSP_RESPONSE_free(resp);
        free(der);
        return -1;
    }
    int rc = check_response(resp, leaf, issuer, chain, out, why, sizeof why);
    OCSP_RESPONSE_free(resp);
    if (rc < 0) {
        snprintf(err, errlen, "%s: %s", path, why);
        free(der);
        return -1;
    }
    out->der = der;
    out->len = len;
    return 0;
}

void tls_ocsp_free(struct tls_ocsp *o)
{
    free(o->der);
    o->der = NULL;
    o->len = 0;
}

static void free_staples(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl, void *argp)
{
    for (struct staple *s = ptr, *next; s; s = next) {
        next = s->next;
        X509_free(s->leaf);
        tls_ocsp_free(&s->ocsp);
        free(s);
    }
}

/* status_request from a client: the staple of the certificate this
 * handshake serves, if it is still current. */
static int status_cb(SSL *ssl, void *arg)
{
    X509 *cert = SSL_get_certificate(ssl);
    const struct staple *s = SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), staples_index);
    for (; s; s = s->next) {
        if (s->leaf != cert)
            continue;
        if (s->ocsp.next_update && time(NULL) > s->ocsp.next_update)
            return SSL_TLSEXT_ERR_NOACK;
        /* OpenSSL frees what it is given once sent. */
        unsigned char *copy = OPENSSL_memdup(s->ocsp.der, s->ocsp.len);
        if (!copy || !SSL_set_tlsext_status_ocsp_resp(ssl, copy, (long)s->ocsp.len)) {
            OPENSSL_free(copy);
            return SSL_TLSEXT_ERR_NOACK;
        }
        return SSL_TLSEXT_ERR_OK;
    }
    return SSL_TLSEXT_ERR_NOACK;
}

int tls_ocsp_attach(SSL_CTX *ctx, X509 *leaf, struct tls_ocsp *o)
{
    if (staples_index < 0)
        staples_index = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, free_staples);
    struct staple *s = calloc(1, sizeof *s);
    if (staples_index < 0 || !s || !X509_up_ref(leaf)) {
        free(s);
        return -1;
    }
    s->leaf = leaf;
    s->ocsp = *o;
    memset(o, 0, sizeof *o);
    s->next = SSL_CTX_get_ex_data(ctx, staples_index);
    SSL_CTX_set_ex_data(ctx, staples_index, s);
    SSL_CTX_set_tlsext_status_cb(ctx, status_cb);
    return 0;
}
