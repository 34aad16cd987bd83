/* libFuzzer target for what the registry reads from etcd's JSON gateway
 * (src/registry/reg_etcd_msg.c): the line framing of its streams, the
 * watch and keepalive messages, unary replies and base64.
 *
 * Input: the first byte picks the chunk size (1..64) the rest is fed to
 * the framer in, as a socket would deliver it; every message that comes
 * out is decoded as a watch message, a keepalive message and a reply.
 *
 * Checks beyond "no crash": the messages the framer hands out are exactly
 * the non-empty lines of the input (without "\r\n" / "\n"), in order,
 * whatever the chunking; decoded keys and values are NUL-terminated at
 * their length; base64 of the input decodes back to it; a failed decode
 * always has a reason. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "registry/reg_etcd_msg.h"

#define CHECK(x)                                                                                    \
    do {                                                                                            \
        if (!(x)) {                                                                                 \
            fprintf(stderr, "fuzz_reg_etcd_stream: invariant failed at line %d: %s\n", __LINE__, #x); \
            abort();                                                                                \
        }                                                                                           \
    } while (0)

static void check_kv(const struct reg_etcd_kv *kv)
{
    CHECK(kv->key && kv->key[kv->key_len] == '\0');
    CHECK(kv->value && kv->value[kv->value_len] == '\0');
}

static void decode_all(const char *msg, size_t len)
{
    char err[200];
    struct reg_etcd_watch_msg w;
    err[0] = '\0';
    if (reg_etcd_parse_watch(msg, len, &w, err, sizeof err) == 0) {
        for (size_t i = 0; i < w.n_events; i++) {
            check_kv(&w.events[i].kv);
            if (w.events[i].has_prev)
                check_kv(&w.events[i].prev);
        }
        CHECK(w.kind != REG_ETCD_WATCH_EVENTS || w.n_events > 0);
        reg_etcd_watch_msg_free(&w);
    } else {
        CHECK(err[0]);
    }
    struct reg_etcd_reply r;
    err[0] = '\0';
    if (reg_etcd_parse_keepalive(msg, len, &r, err, sizeof err) == 0)
        reg_etcd_reply_free(&r);
    else
        CHECK(err[0]);
    err[0] = '\0';
    if (reg_etcd_parse_reply(msg, len, &r, err, sizeof err) == 0) {
        for (size_t i = 0; i < r.n_kvs; i++)
            check_kv(&r.kvs[i]);
        reg_etcd_reply_free(&r);
    } else {
        CHECK(err[0]);
    }
    int code;
    char reason[160];
    reg_etcd_error_reason(msg, len, &code, reason, sizeof reason);
    CHECK(strlen(reason) < sizeof reason);
}

/* The next non-empty line of data[*pos..n), as the framer should give it. */
static bool expected_line(const char *data, size_t n, size_t *pos, const char **line, size_t *len)
{
    while (*pos < n) {
        const char *p = data + *pos;
        const char *nl = memchr(p, '\n', n - *pos);
        if (!nl)
            return false;
        size_t l = (size_t)(nl - p);
        *pos += l + 1;
        if (l && p[l - 1] == '\r')
            l--;
        if (l) {
            *line = p;
            *len = l;
            return true;
        }
    }
    return false;
}

static void check_base64(const uint8_t *data, size_t size)
{
    char *enc = malloc(reg_etcd_b64_encoded_len(size));
    unsigned char *dec = malloc(size + 3);
    CHECK(enc && dec);
    size_t n = reg_etcd_b64_encode(data, size, enc);
    CHECK(strlen(enc) == n);
    long d = reg_etcd_b64_decode(enc, n, dec);
    CHECK(d == (long)size);
    CHECK(size == 0 || memcmp(dec, data, size) == 0);
    /* The input as base64 text: never more out than in. */
    unsigned char *raw = malloc(size / 4 * 3 + 3);
    CHECK(raw);
    d = reg_etcd_b64_decode((const char *)data, size, raw);
    CHECK(d <= (long)(size / 4 * 3));
    free(raw);
    free(enc);
    free(dec);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    size_t chunk = (size_t)(data[0] % 64) + 1;
    const char *in = (const char *)data + 1;
    size_t n = size - 1;
    check_base64(data + 1, n);

    struct reg_etcd_framer f;
    reg_etcd_framer_init(&f);
    size_t expect_pos = 0;
    char err[128];
    for (size_t off = 0; off < n; off += chunk) {
        size_t c = n - off < chunk ? n - off : chunk;
        CHECK(reg_etcd_framer_feed(&f, in + off, c, err, sizeof err) == 0); /* inputs are below the limit */
        const char *msg;
        size_t len;
        while (reg_etcd_framer_next(&f, &msg, &len)) {
            const char *want;
            size_t want_len;
            CHECK(expected_line(in, n, &expect_pos, &want, &want_len));
            CHECK(len == want_len && memcmp(msg, want, len) == 0);
            decode_all(msg, len);
        }
    }
    const char *want;
    size_t want_len;
    CHECK(!expected_line(in, n, &expect_pos, &want, &want_len)); /* nothing complete was held back */
    reg_etcd_framer_free(&f);
    return 0;
}
