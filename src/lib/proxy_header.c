/* The PROXY protocol header: see proxy_header.h. */
#include "lib/proxy_header.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

static const uint8_t v2_sig[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};
static const char v1_prefix[] = "PROXY ";
#define V1_PREFIX_LEN 6

/* ---------- CRC32c ---------- */

uint32_t proxy_hdr_crc32c(uint32_t crc, const uint8_t *p, size_t len)
{
    /* Bit at a time: headers are short and checked once per connection. */
    crc = ~crc;
    for (size_t i = 0; i < len; i++) {
        crc ^= p[i];
        for (int k = 0; k < 8; k++)
            crc = (crc >> 1) ^ (0x82F63B78u & (0u - (crc & 1u)));
    }
    return ~crc;
}

static uint16_t get16(const uint8_t *p) { return (uint16_t)((p[0] << 8) | p[1]); }

static int fail(const char **why, const char *reason)
{
    *why = reason;
    return -1;
}

/* ---------- version 1 ---------- */

/* Decimal port, 0..65535, no sign, no leading zero. */
static bool v1_port(const char *s, size_t n, uint16_t *out)
{
    if (!n || n > 5 || (n > 1 && s[0] == '0'))
        return false;
    uint32_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (uint32_t)(s[i] - '0');
    }
    if (v > 65535)
        return false;
    *out = (uint16_t)v;
    return true;
}

static bool v1_addr(int family, const char *s, size_t n, uint16_t port, struct sockaddr_storage *out)
{
    char text[INET6_ADDRSTRLEN];
    if (!n || n >= sizeof text)
        return false;
    memcpy(text, s, n);
    text[n] = '\0';
    memset(out, 0, sizeof *out);
    if (family == AF_INET) {
        struct sockaddr_in *a = (struct sockaddr_in *)out;
        a->sin_family = AF_INET;
        a->sin_port = htons(port);
        return inet_pton(AF_INET, text, &a->sin_addr) == 1;
    }
    struct sockaddr_in6 *a = (struct sockaddr_in6 *)out;
    a->sin6_family = AF_INET6;
    a->sin6_port = htons(port);
    return inet_pton(AF_INET6, text, &a->sin6_addr) == 1;
}

/* The line without its CRLF, split on single spaces. */
static int v1_parse_line(const char *line, size_t n, struct proxy_hdr *out, const char **why)
{
    const char *field[6];
    size_t flen[6];
    size_t nf = 0, start = 0;
    for (size_t i = 0; i <= n; i++) {
        if (i < n && line[i] != ' ')
            continue;
        if (nf == 6)
            return fail(why, "v1: too many fields");
        field[nf] = line + start;
        flen[nf++] = i - start;
        start = i + 1;
        /* UNKNOWN: whatever follows is to be ignored (spec 2.1). */
        if (nf == 2 && flen[1] == 7 && memcmp(field[1], "UNKNOWN", 7) == 0)
            break;
    }
    if (nf < 2)
        return fail(why, "v1: no protocol");
    if (flen[1] == 7 && memcmp(field[1], "UNKNOWN", 7) == 0) {
        out->local = true;
        return 0;
    }
    int family;
    if (flen[1] == 4 && memcmp(field[1], "TCP4", 4) == 0)
        family = AF_INET;
    else if (flen[1] == 4 && memcmp(field[1], "TCP6", 4) == 0)
        family = AF_INET6;
    else
        return fail(why, "v1: protocol is not TCP4, TCP6 or UNKNOWN");
    if (nf != 6)
        return fail(why, "v1: expected source and destination addresses and ports");
    uint16_t sport, dport;
    if (!v1_port(field[4], flen[4], &sport) || !v1_port(field[5], flen[5], &dport))
        return fail(why, "v1: invalid port");
    if (!v1_addr(family, field[2], flen[2], sport, &out->src) || !v1_addr(family, field[3], flen[3], dport, &out->dst))
        return fail(why, "v1: invalid address for the protocol");
    return 0;
}

static int v1_parse(const uint8_t *p, size_t len, struct proxy_hdr *out, const char **why)
{
    size_t scan = len < PROXY_HDR_V1_MAX ? len : PROXY_HDR_V1_MAX;
    for (size_t i = V1_PREFIX_LEN; i < scan; i++) {
        if (p[i] == '\n')
            return fail(why, "v1: line feed without carriage return");
        if (p[i] == '\r') {
            if (i + 1 == len)
                return 0; /* the LF is on its way */
            if (p[i + 1] != '\n')
                return fail(why, "v1: carriage return without line feed");
            memset(out, 0, sizeof *out);
            out->version = 1;
            if (v1_parse_line((const char *)p, i, out, why) < 0)
                return -1;
            return (int)(i + 2);
        }
        if (p[i] < 0x20 || p[i] > 0x7e)
            return fail(why, "v1: a byte that is not printable ASCII");
    }
    if (len >= PROXY_HDR_V1_MAX)
        return fail(why, "v1: no CRLF within 107 bytes");
    return 0;
}

/* ---------- version 2 ---------- */

/* Walk TLVs in p[0..len): each one in bounds, known ones well-formed. */
static int v2_tlvs(const uint8_t *base, size_t off, size_t end, struct proxy_hdr *out, const char **why,
                   size_t *crc_off, bool nested);

static int v2_ssl(const uint8_t *base, size_t off, size_t len, struct proxy_hdr *out, const char **why)
{
    if (len < 5)
        return fail(why, "v2: PP2_TYPE_SSL shorter than its client and verify fields");
    out->ssl = (base[off] & PP2_CLIENT_SSL) != 0;
    return v2_tlvs(base, off + 5, off + len, out, why, NULL, true);
}

static int keep_once(struct proxy_hdr_slice *s, const uint8_t *p, size_t len, const char **why, const char *dup)
{
    if (s->p)
        return fail(why, dup);
    s->p = p;
    s->len = len;
    return 0;
}

static int v2_tlvs(const uint8_t *base, size_t off, size_t end, struct proxy_hdr *out, const char **why,
                   size_t *crc_off, bool nested)
{
    while (off < end) {
        if (end - off < 3)
            return fail(why, "v2: truncated TLV header");
        uint8_t type = base[off];
        size_t len = get16(base + off + 1);
        size_t v = off + 3;
        if (len > end - v)
            return fail(why, "v2: TLV longer than the header");
        const uint8_t *val = base + v;
        int rc = 0;
        if (nested) {
            if (type == PP2_SUBTYPE_SSL_VERSION)
                rc = keep_once(&out->ssl_version, val, len, why, "v2: repeated SSL version");
            else if (type == PP2_SUBTYPE_SSL_CIPHER)
                rc = keep_once(&out->ssl_cipher, val, len, why, "v2: repeated SSL cipher");
        } else {
            switch (type) {
            case PP2_TYPE_ALPN:
                rc = keep_once(&out->alpn, val, len, why, "v2: repeated ALPN");
                break;
            case PP2_TYPE_AUTHORITY:
                rc = keep_once(&out->authority, val, len, why, "v2: repeated AUTHORITY");
                break;
            case PP2_TYPE_UNIQUE_ID:
                if (len > PROXY_HDR_UNIQUE_ID_MAX)
                    return fail(why, "v2: UNIQUE_ID longer than 128 bytes");
                rc = keep_once(&out->unique_id, val, len, why, "v2: repeated UNIQUE_ID");
                break;
            case PP2_TYPE_CRC32C:
                if (len != 4)
                    return fail(why, "v2: CRC32C is not 4 bytes");
                if (*crc_off)
                    return fail(why, "v2: repeated CRC32C");
                *crc_off = v;
                break;
            case PP2_TYPE_SSL:
                rc = v2_ssl(base, v, len, out, why);
                break;
            default:
                break; /* NOOP, NETNS, custom and unknown types: ignored (spec 2.2) */
            }
        }
        if (rc < 0)
            return -1;
        off = v + len;
    }
    return 0;
}

static bool v2_crc_ok(const uint8_t *p, size_t total, size_t crc_off)
{
    static const uint8_t zero[4];
    uint32_t crc = proxy_hdr_crc32c(0, p, crc_off);
    crc = proxy_hdr_crc32c(crc, zero, 4);
    crc = proxy_hdr_crc32c(crc, p + crc_off + 4, total - crc_off - 4);
    uint32_t want = (uint32_t)p[crc_off] << 24 | (uint32_t)p[crc_off + 1] << 16 | (uint32_t)p[crc_off + 2] << 8 |
                    p[crc_off + 3];
    return crc == want;
}

/* Addresses of an INET or INET6 block (its length checked by the caller). */
static void v2_addrs(int family, const uint8_t *a, struct proxy_hdr *out)
{
    memset(&out->src, 0, sizeof out->src);
    memset(&out->dst, 0, sizeof out->dst);
    if (family == AF_INET) {
        struct sockaddr_in *s = (struct sockaddr_in *)&out->src, *d = (struct sockaddr_in *)&out->dst;
        s->sin_family = d->sin_family = AF_INET;
        memcpy(&s->sin_addr, a, 4);
        memcpy(&d->sin_addr, a + 4, 4);
        memcpy(&s->sin_port, a + 8, 2);
        memcpy(&d->sin_port, a + 10, 2);
        return;
    }
    struct sockaddr_in6 *s = (struct sockaddr_in6 *)&out->src, *d = (struct sockaddr_in6 *)&out->dst;
    s->sin6_family = d->sin6_family = AF_INET6;
    memcpy(&s->sin6_addr, a, 16);
    memcpy(&d->sin6_addr, a + 16, 16);
    memcpy(&s->sin6_port, a + 32, 2);
    memcpy(&d->sin6_port, a + 34, 2);
}

static int v2_parse(const uint8_t *p, size_t len, struct proxy_hdr *out, const char **why)
{
    if (len < PROXY_HDR_V2_FIXED)
        return 0;
    uint8_t ver = p[12] >> 4, cmd = p[12] & 0x0f, fam = p[13] >> 4, proto = p[13] & 0x0f;
    if (ver != 2)
        return fail(why, "v2: version is not 2");
    if (cmd > 1)
        return fail(why, "v2: command is neither LOCAL nor PROXY");
    /* UNSPEC, or a family with STREAM or DGRAM: the other values "must be
     * rejected as invalid" (spec 2.2), except under LOCAL, whose whole
     * block the receiver discards. */
    bool known = (fam == 0 && proto == 0) || (fam >= 1 && fam <= 3 && proto >= 1 && proto <= 2);
    if (!known && cmd == 1)
        return fail(why, "v2: unknown address family or transport protocol");
    size_t total = PROXY_HDR_V2_FIXED + get16(p + 14);
    if (total > PROXY_HDR_V2_MAX)
        return fail(why, "v2: header longer than 4096 bytes");
    if (len < total)
        return 0;
    memset(out, 0, sizeof *out);
    out->version = 2;
    /* LOCAL: the proxy speaking for itself; UNSPEC and UNIX: no address
     * this proxy could use. The peer stays the client in all three. */
    out->local = cmd == 0 || fam == 0 || fam == 3;
    if (!known)
        return (int)total; /* LOCAL with a family of its own: all of it discarded */
    static const size_t addr_len[4] = {0, 12, 36, 216}; /* UNSPEC, INET, INET6, UNIX */
    if (total - PROXY_HDR_V2_FIXED < addr_len[fam])
        return fail(why, "v2: length too short for the address family");
    if (!out->local)
        v2_addrs(fam == 1 ? AF_INET : AF_INET6, p + PROXY_HDR_V2_FIXED, out);
    size_t crc_off = 0;
    if (v2_tlvs(p, PROXY_HDR_V2_FIXED + addr_len[fam], total, out, why, &crc_off, false) < 0)
        return -1;
    if (crc_off) {
        if (!v2_crc_ok(p, total, crc_off))
            return fail(why, "v2: CRC32C mismatch");
        out->crc_checked = true;
    }
    return (int)total;
}

/* ---------- either ---------- */

int proxy_hdr_parse(const uint8_t *p, size_t len, unsigned accept, struct proxy_hdr *out, const char **why)
{
    if (!len)
        return 0;
    size_t n1 = len < V1_PREFIX_LEN ? len : V1_PREFIX_LEN;
    size_t n2 = len < sizeof v2_sig ? len : sizeof v2_sig;
    bool maybe_v1 = memcmp(p, v1_prefix, n1) == 0, maybe_v2 = memcmp(p, v2_sig, n2) == 0;
    if (maybe_v1 && !(accept & PROXY_HDR_ACCEPT_V1))
        return fail(why, "a v1 header where only v2 is accepted");
    if (maybe_v2 && !(accept & PROXY_HDR_ACCEPT_V2))
        return fail(why, "a v2 header where only v1 is accepted");
    if (maybe_v1)
        return len < V1_PREFIX_LEN ? 0 : v1_parse(p, len, out, why);
    if (maybe_v2)
        return len < sizeof v2_sig ? 0 : v2_parse(p, len, out, why);
    return fail(why, "no PROXY protocol signature");
}

/* ---------- writers ---------- */

/* An IPv4-mapped IPv6 address as IPv4; anything else as it is. */
static void unmap(const struct sockaddr *sa, struct sockaddr_storage *out)
{
    memset(out, 0, sizeof *out);
    if (sa->sa_family == AF_INET) {
        memcpy(out, sa, sizeof(struct sockaddr_in));
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *a6 = (const struct sockaddr_in6 *)sa;
        if (IN6_IS_ADDR_V4MAPPED(&a6->sin6_addr)) {
            struct sockaddr_in *a4 = (struct sockaddr_in *)out;
            a4->sin_family = AF_INET;
            a4->sin_port = a6->sin6_port;
            memcpy(&a4->sin_addr, &a6->sin6_addr.s6_addr[12], 4);
        } else {
            memcpy(out, sa, sizeof(struct sockaddr_in6));
        }
    } else {
        out->ss_family = AF_UNSPEC;
    }
}

/* IPv4 as IPv4-mapped IPv6, for a pair whose families differ. */
static void map6(struct sockaddr_storage *ss)
{
    if (ss->ss_family != AF_INET)
        return;
    struct sockaddr_in a4 = *(struct sockaddr_in *)ss;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)ss;
    memset(ss, 0, sizeof *ss);
    a6->sin6_family = AF_INET6;
    a6->sin6_port = a4.sin_port;
    a6->sin6_addr.s6_addr[10] = a6->sin6_addr.s6_addr[11] = 0xff;
    memcpy(&a6->sin6_addr.s6_addr[12], &a4.sin_addr, 4);
}

/* Both addresses in one family (AF_INET or AF_INET6), or false. */
static bool same_family(const struct sockaddr *src, const struct sockaddr *dst, struct sockaddr_storage *s,
                        struct sockaddr_storage *d)
{
    if (!src || !dst)
        return false;
    unmap(src, s);
    unmap(dst, d);
    if (s->ss_family == AF_UNSPEC || d->ss_family == AF_UNSPEC)
        return false;
    if (s->ss_family != d->ss_family) {
        map6(s);
        map6(d);
    }
    return true;
}

static uint16_t port_of(const struct sockaddr_storage *ss)
{
    return ntohs(ss->ss_family == AF_INET ? ((const struct sockaddr_in *)ss)->sin_port
                                          : ((const struct sockaddr_in6 *)ss)->sin6_port);
}

static const void *ip_of(const struct sockaddr_storage *ss)
{
    return ss->ss_family == AF_INET ? (const void *)&((const struct sockaddr_in *)ss)->sin_addr
                                    : (const void *)&((const struct sockaddr_in6 *)ss)->sin6_addr;
}

size_t proxy_hdr_write_v1(char *out, size_t cap, const struct sockaddr *src, const struct sockaddr *dst)
{
    struct sockaddr_storage s, d;
    int n;
    if (!same_family(src, dst, &s, &d)) {
        n = snprintf(out, cap, "PROXY UNKNOWN\r\n");
    } else {
        char sip[INET6_ADDRSTRLEN], dip[INET6_ADDRSTRLEN];
        inet_ntop(s.ss_family, ip_of(&s), sip, sizeof sip);
        inet_ntop(d.ss_family, ip_of(&d), dip, sizeof dip);
        n = snprintf(out, cap, "PROXY %s %s %s %u %u\r\n", s.ss_family == AF_INET ? "TCP4" : "TCP6", sip, dip,
                     port_of(&s), port_of(&d));
    }
    return n > 0 && (size_t)n < cap ? (size_t)n : 0;
}

struct wbuf {
    uint8_t *p;
    size_t cap, len;
    bool overflow;
};

static void put(struct wbuf *b, const void *p, size_t n)
{
    if (b->overflow || n > b->cap - b->len) {
        b->overflow = true;
        return;
    }
    memcpy(b->p + b->len, p, n);
    b->len += n;
}

static void put8(struct wbuf *b, uint8_t v) { put(b, &v, 1); }

static void put16(struct wbuf *b, size_t v)
{
    uint8_t x[2] = {(uint8_t)(v >> 8), (uint8_t)v};
    put(b, x, 2);
}

static void put_tlv(struct wbuf *b, uint8_t type, const char *value, size_t max)
{
    if (!value || !*value)
        return;
    size_t n = strlen(value);
    if (n > max)
        n = max;
    put8(b, type);
    put16(b, n);
    put(b, value, n);
}

static void put_ssl(struct wbuf *b, const struct proxy_hdr_v2_out *h)
{
    size_t vlen = h->ssl_version ? strlen(h->ssl_version) : 0, clen = h->ssl_cipher ? strlen(h->ssl_cipher) : 0;
    if (vlen > 255)
        vlen = 255;
    if (clen > 255)
        clen = 255;
    size_t len = 5 + (vlen ? 3 + vlen : 0) + (clen ? 3 + clen : 0);
    put8(b, PP2_TYPE_SSL);
    put16(b, len);
    put8(b, PP2_CLIENT_SSL | (h->cert_on_connection ? PP2_CLIENT_CERT_CONN : 0) |
                (h->cert_in_session ? PP2_CLIENT_CERT_SESS : 0));
    put(b, "\0\0\0\0", 4); /* verify: 0 = the client certificate, if any, was verified */
    if (vlen) {
        put8(b, PP2_SUBTYPE_SSL_VERSION);
        put16(b, vlen);
        put(b, h->ssl_version, vlen);
    }
    if (clen) {
        put8(b, PP2_SUBTYPE_SSL_CIPHER);
        put16(b, clen);
        put(b, h->ssl_cipher, clen);
    }
}

size_t proxy_hdr_write_v2(uint8_t *out, size_t cap, const struct proxy_hdr_v2_out *h)
{
    struct wbuf b = {out, cap, 0, false};
    struct sockaddr_storage s, d;
    bool addrs = same_family(h->src, h->dst, &s, &d);
    put(&b, v2_sig, sizeof v2_sig);
    put8(&b, h->src ? 0x21 : 0x20); /* version 2, PROXY or LOCAL */
    put8(&b, !addrs ? 0x00 : s.ss_family == AF_INET ? 0x11 : 0x21); /* family, STREAM */
    put16(&b, 0); /* the length, filled below */
    if (addrs && s.ss_family == AF_INET) {
        put(&b, ip_of(&s), 4);
        put(&b, ip_of(&d), 4);
    } else if (addrs) {
        put(&b, ip_of(&s), 16);
        put(&b, ip_of(&d), 16);
    }
    if (addrs) {
        put16(&b, port_of(&s));
        put16(&b, port_of(&d));
    }
    put_tlv(&b, PP2_TYPE_ALPN, h->alpn, 255);
    put_tlv(&b, PP2_TYPE_AUTHORITY, h->authority, 255);
    put_tlv(&b, PP2_TYPE_UNIQUE_ID, h->unique_id, PROXY_HDR_UNIQUE_ID_MAX);
    if (h->ssl)
        put_ssl(&b, h);
    size_t crc_at = 0;
    if (h->crc32c) {
        put8(&b, PP2_TYPE_CRC32C);
        put16(&b, 4);
        crc_at = b.len;
        put(&b, "\0\0\0\0", 4);
    }
    if (b.overflow || b.len > PROXY_HDR_V2_MAX)
        return 0;
    out[14] = (uint8_t)((b.len - PROXY_HDR_V2_FIXED) >> 8);
    out[15] = (uint8_t)(b.len - PROXY_HDR_V2_FIXED);
    if (crc_at) {
        uint32_t crc = proxy_hdr_crc32c(0, out, b.len);
        out[crc_at] = (uint8_t)(crc >> 24);
        out[crc_at + 1] = (uint8_t)(crc >> 16);
        out[crc_at + 2] = (uint8_t)(crc >> 8);
        out[crc_at + 3] = (uint8_t)crc;
    }
    return b.len;
}
