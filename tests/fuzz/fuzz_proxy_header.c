/* libFuzzer target for lib/proxy_header.
 *
 * Input: byte 0 picks the versions accepted (% 3 + 1: v1, v2, any); the
 * rest is what a client sent first.
 *
 * Beyond "no crash", it checks what the listener relies on: a complete
 * header's length is within the input and the version's bounds; every
 * strict prefix of a complete header is "incomplete" (never an error,
 * never complete), so reading it in pieces gives the same answer; every
 * prefix of a refused input is incomplete or refused; a parsed header
 * written back (v1 and v2 writers) parses to the same addresses; slices
 * stay inside the input. Prefixes are parsed from exact-size copies so
 * ASan sees over-reads. */
#include "lib/proxy_header.h"

#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(x)                                                                               \
    do {                                                                                       \
        if (!(x)) {                                                                            \
            fprintf(stderr, "fuzz_proxy_header: invariant failed at line %d: %s\n", __LINE__, #x); \
            abort();                                                                           \
        }                                                                                      \
    } while (0)

static int parse_copy(const uint8_t *p, size_t len, unsigned accept, struct proxy_hdr *h)
{
    uint8_t *copy = malloc(len ? len : 1);
    memcpy(copy, p, len);
    const char *why = NULL;
    int r = proxy_hdr_parse(copy, len, accept, h, &why);
    if (r < 0)
        CHECK(why != NULL);
    free(copy);
    return r;
}

static void slice_inside(const struct proxy_hdr_slice *s, const uint8_t *p, size_t len)
{
    if (s->p)
        CHECK(s->p >= p && s->p + s->len <= p + len);
}

static bool same_addr(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
    if (a->ss_family != b->ss_family)
        return false;
    if (a->ss_family == AF_INET)
        return memcmp(a, b, sizeof(struct sockaddr_in)) == 0;
    const struct sockaddr_in6 *x = (const struct sockaddr_in6 *)a, *y = (const struct sockaddr_in6 *)b;
    return x->sin6_port == y->sin6_port && memcmp(&x->sin6_addr, &y->sin6_addr, 16) == 0;
}

static bool v4_mapped(const struct sockaddr_storage *ss)
{
    return ss->ss_family == AF_INET6 && IN6_IS_ADDR_V4MAPPED(&((const struct sockaddr_in6 *)ss)->sin6_addr);
}

/* The writers give back what was parsed (mapped IPv6 comes back as IPv4,
 * so those are left out of the comparison). */
static void round_trip(const struct proxy_hdr *h)
{
    if (h->local || v4_mapped(&h->src) || v4_mapped(&h->dst))
        return;
    char line[PROXY_HDR_V1_MAX + 1];
    size_t n = proxy_hdr_write_v1(line, sizeof line, (const struct sockaddr *)&h->src, (const struct sockaddr *)&h->dst);
    CHECK(n > 0 && n <= PROXY_HDR_V1_MAX);
    struct proxy_hdr back;
    CHECK(parse_copy((const uint8_t *)line, n, PROXY_HDR_ACCEPT_ANY, &back) == (int)n);
    CHECK(!back.local && same_addr(&back.src, &h->src) && same_addr(&back.dst, &h->dst));

    uint8_t bin[PROXY_HDR_V2_MAX];
    struct proxy_hdr_v2_out out = {.src = (const struct sockaddr *)&h->src, .dst = (const struct sockaddr *)&h->dst,
                                   .alpn = "h2", .authority = "example.com", .unique_id = "id-1", .ssl = true,
                                   .ssl_version = "TLSv1.3", .ssl_cipher = "TLS_AES_128_GCM_SHA256", .crc32c = true};
    n = proxy_hdr_write_v2(bin, sizeof bin, &out);
    CHECK(n > PROXY_HDR_V2_FIXED);
    CHECK(parse_copy(bin, n, PROXY_HDR_ACCEPT_V2, &back) == (int)n);
    CHECK(!back.local && back.crc_checked && back.ssl && same_addr(&back.src, &h->src) && same_addr(&back.dst, &h->dst));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    unsigned accept = data[0] % 3 + 1;
    const uint8_t *p = data + 1;
    size_t len = size - 1;
    struct proxy_hdr h;
    int r = parse_copy(p, len, accept, &h);
    /* Slices are checked against the caller's buffer: parse it in place too. */
    struct proxy_hdr inplace;
    const char *why;
    CHECK(proxy_hdr_parse(p, len, accept, &inplace, &why) == r);
    if (r > 0) {
        CHECK((size_t)r <= len);
        CHECK(h.version == 1 ? r <= PROXY_HDR_V1_MAX : r <= PROXY_HDR_V2_MAX);
        CHECK(h.version == 1 ? (accept & PROXY_HDR_ACCEPT_V1) : (accept & PROXY_HDR_ACCEPT_V2));
        slice_inside(&inplace.alpn, p, len);
        slice_inside(&inplace.authority, p, len);
        slice_inside(&inplace.unique_id, p, len);
        slice_inside(&inplace.ssl_version, p, len);
        slice_inside(&inplace.ssl_cipher, p, len);
        /* The same header with anything after it. */
        struct proxy_hdr again;
        CHECK(parse_copy(p, (size_t)r, accept, &again) == r);
        for (size_t k = 0; k < (size_t)r; k++)
            CHECK(parse_copy(p, k, accept, &again) == 0);
        round_trip(&h);
    } else {
        /* A prefix of what is incomplete or refused is never complete. */
        size_t step = len > 64 ? len / 64 : 1;
        for (size_t k = 0; k < len; k += step) {
            struct proxy_hdr again;
            CHECK(parse_copy(p, k, accept, &again) <= 0);
        }
    }
    return 0;
}
