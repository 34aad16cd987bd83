/* OCSP stapling: see tls_ocsp.h. */
#include "proxy/tls_ocsp.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/ocsp.h>
#include <openssl/x509v3.h>

#include "proxy/tls_openssl.h"

#define OCSP_FILE_MAX (64 * 1024) /* responses are a few KiB; larger is not one */
#define OCSP_CLOCK_SKEW_S 300     /* leeway for thisUpdate in the future */

/* The staples of one context, for the certificates it holds. */
struct staple {
    X509 *leaf;                   /* referenced */
    struct tls_ocsp ocsp;
    struct staple *next;
};

static int staples_index = -1;    /* SSL_CTX ex_data: struct staple list */

static int read_file(const char *path, unsigned char **out, size_t *len, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errlen, "cannot read %s: %s", path, strerror(errno));
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

/* Who signed the response: the issuer itself, or a responder it
 * delegated to (RFC 6960 4.2.2.2: issued by the issuer, with the
 * id-kp-OCSPSigning extended key usage, current). Nothing else: another
 * certificate of the file (a root placed in the chain) is not the
 * authority on this leaf. The signature is checked with the signer's key.
 * Returns 0, or -1 with a reason in err. */
static int check_signer(OCSP_BASICRESP *basic, X509 *issuer, char *err, size_t errlen)
{
    char why[96];
    STACK_OF(X509) *issuer_only = sk_X509_new_null();
    X509 *signer = NULL;
    int rc = -1;
    if (!issuer_only || !sk_X509_push(issuer_only, issuer)) {
        snprintf(err, errlen, "out of memory");
    } else if (!OCSP_resp_get0_signer(basic, &signer, issuer_only)) {
        snprintf(err, errlen, "it is signed by neither the certificate's issuer nor a responder certificate it "
                              "carries");
    } else if (X509_cmp(signer, issuer) != 0 && X509_check_issued(issuer, signer) != X509_V_OK) {
        snprintf(err, errlen, "its signer is not the certificate's issuer nor a responder the issuer certified");
    } else if (X509_cmp(signer, issuer) != 0 && !(X509_get_extended_key_usage(signer) & XKU_OCSP_SIGN)) {
        snprintf(err, errlen, "its responder certificate lacks the OCSPSigning extended key usage");
    } else if (X509_cmp(signer, issuer) != 0 &&
               (X509_verify(signer, X509_get0_pubkey(issuer)) != 1 ||
                X509_cmp_current_time(X509_get0_notBefore(signer)) > 0 ||
                X509_cmp_current_time(X509_get0_notAfter(signer)) < 0)) {
        snprintf(err, errlen, "its responder certificate is not validly signed by the issuer or not current");
    } else if (OCSP_basic_verify(basic, issuer_only, NULL, OCSP_NOVERIFY) <= 0) {
        /* NOVERIFY: the signer was vetted above; this checks the
         * response's signature with the signer's key. */
        snprintf(err, errlen, "its signature does not verify: %s", tls_openssl_error(why, sizeof why));
    } else {
        rc = 0;
    }
    ERR_clear_error();
    sk_X509_free(issuer_only);
    return rc;
}

/* The single response about leaf, whatever digest its certificate ID
 * uses (OCSP_cert_to_id alone would only match SHA-1 IDs). */
static OCSP_SINGLERESP *find_single(OCSP_BASICRESP *basic, X509 *leaf, X509 *issuer)
{
    for (int i = 0; i < OCSP_resp_count(basic); i++) {
        OCSP_SINGLERESP *single = OCSP_resp_get0(basic, i);
        ASN1_OBJECT *md_obj = NULL;
        OCSP_id_get0_info(NULL, &md_obj, NULL, NULL, (OCSP_CERTID *)OCSP_SINGLERESP_get0_id(single));
        const EVP_MD *md = md_obj ? EVP_get_digestbyobj(md_obj) : NULL;
        OCSP_CERTID *id = md ? OCSP_cert_to_id(md, leaf, issuer) : NULL;
        bool same = id && OCSP_id_cmp(id, OCSP_SINGLERESP_get0_id(single)) == 0;
        OCSP_CERTID_free(id);
        if (same)
            return single;
    }
    ERR_clear_error();
    return NULL;
}

/* The answer about leaf inside a parsed response: its status, with the
 * signature and times checked. Returns 0 or -1 (err set). */
static int check_response(OCSP_RESPONSE *resp, X509 *leaf, X509 *issuer, struct tls_ocsp *out, char *err,
                          size_t errlen)
{
    char why[128];
    int rs = OCSP_response_status(resp);
    if (rs != OCSP_RESPONSE_STATUS_SUCCESSFUL) {
        snprintf(err, errlen, "the responder answered \"%s\"", OCSP_response_status_str(rs));
        return -1;
    }
    OCSP_BASICRESP *basic = OCSP_response_get1_basic(resp);
    OCSP_SINGLERESP *single = NULL;
    int rc = -1;
    int status = -1, reason = 0;
    ASN1_GENERALIZEDTIME *this_upd = NULL, *next_upd = NULL, *rev = NULL;
    if (!basic) {
        snprintf(err, errlen, "cannot read the response: %s", tls_openssl_error(why, sizeof why));
    } else if (check_signer(basic, issuer, why, sizeof why) < 0) {
        snprintf(err, errlen, "%s", why);
    } else if (!(single = find_single(basic, leaf, issuer))) {
        snprintf(err, errlen, "it is not about this certificate");
    } else if ((status = OCSP_single_get0_status(single, &reason, &rev, &this_upd, &next_upd)) < 0) {
        snprintf(err, errlen, "cannot read the certificate's status");
    } else if (!OCSP_check_validity(this_upd, next_upd, OCSP_CLOCK_SKEW_S, -1)) {
        snprintf(err, errlen, "it is not current (outside thisUpdate..nextUpdate)");
    } else if (status == V_OCSP_CERTSTATUS_REVOKED) {
        snprintf(err, errlen, "it says the certificate is revoked");
    } else if (status != V_OCSP_CERTSTATUS_GOOD) {
        /* "unknown": the responder does not know the certificate (the
         * wrong responder, or a certificate it never issued). Browsers
         * fail a handshake that staples it. */
        snprintf(err, errlen, "it says the certificate's status is unknown to the responder");
    } else {
        snprintf(out->status, sizeof out->status, "%s", OCSP_cert_status_str(status));
        out->next_update = asn1_to_time(next_upd);
        rc = 0;
    }
    ERR_clear_error();
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
    int rc = check_response(resp, leaf, issuer, out, why, sizeof why);
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
