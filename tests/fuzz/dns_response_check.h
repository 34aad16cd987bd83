/* An independent reader of DNS responses, for the tests of lib/dns_wire
 * (tests/fuzz/fuzz_dns_wire.c and tests/unit/test_dns_wire.c).
 *
 * Written apart from the codec, from RFC 1035, 2782, 6891 and 7871, and
 * strict: it accepts only a well-formed response of the kinds the codec
 * writes (A, AAAA, NS, SOA, SRV and one OPT), with every compression pointer
 * pointing back before the name fragment that holds it (so no loop and no
 * forward pointer), SRV targets uncompressed, RDATA exactly as long as its
 * fields, section counts matching the records, and nothing after them.
 *
 * Besides the header, question and OPT fields, it gives the records in a
 * canonical form, one after the other: section (1 byte), owner (wire form,
 * lower-cased, uncompressed), TYPE, CLASS, TTL, then the RDATA with its
 * names uncompressed and lower-cased behind a 2-byte length. A test builds
 * the form of the records it expects with dnsc_canon_* and compares bytes.
 * Header-only and test-only: it allocates and aborts on out-of-memory. */
#ifndef SLUICE_TESTS_DNS_RESPONSE_CHECK_H
#define SLUICE_TESTS_DNS_RESPONSE_CHECK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct dnsc_buf {
    uint8_t *p;
    size_t len, cap;
};

struct dnsc_response {
    uint16_t id, flags, qdcount, ancount, nscount, arcount;
    /* the question as it stands in the message (case kept) */
    bool has_question;
    uint8_t qname[255];
    size_t qname_len;
    uint16_t qtype, qclass;
    /* the OPT record */
    bool has_opt;
    uint16_t opt_udp_size;
    uint8_t opt_ext_rcode, opt_version;
    bool opt_do;
    uint16_t opt_zflags;          /* the flags other than DO */
    bool has_ecs;
    uint16_t ecs_family;
    uint8_t ecs_source, ecs_scope, ecs_addr[16];
    /* every other record, canonical (see above) */
    struct dnsc_buf canon;
    const char *error;            /* why the response was rejected */
};

static inline void dnsc_put(struct dnsc_buf *b, const void *p, size_t n)
{
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 1024;
        while (cap < b->len + n)
            cap *= 2;
        b->p = (uint8_t *)realloc(b->p, cap);
        if (!b->p)
            abort();
        b->cap = cap;
    }
    memcpy(b->p + b->len, p, n);
    b->len += n;
}

static inline void dnsc_put16(struct dnsc_buf *b, unsigned v)
{
    uint8_t x[2] = { (uint8_t)(v >> 8), (uint8_t)v };
    dnsc_put(b, x, 2);
}

static inline void dnsc_put32(struct dnsc_buf *b, uint32_t v)
{
    uint8_t x[4] = { (uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v };
    dnsc_put(b, x, 4);
}

static inline void dnsc_free(struct dnsc_response *r)
{
    free(r->canon.p);
    memset(&r->canon, 0, sizeof r->canon);
}

static inline uint8_t dnsc_lower(uint8_t c) { return c >= 'A' && c <= 'Z' ? (uint8_t)(c + 32) : c; }
static inline unsigned dnsc_get16(const uint8_t *p) { return (unsigned)p[0] << 8 | p[1]; }

/* Read the name at m[*pos] into out (uncompressed; lower-cased unless
 * keep_case), moving *pos past it where it stands. Pointers only when
 * allow_ptr, and each must point before the fragment being read and past
 * the header. */
static inline bool dnsc_name(const uint8_t *m, size_t len, size_t *pos, uint8_t out[255], size_t *out_len,
                      bool allow_ptr, bool keep_case)
{
    size_t p = *pos, fragment = *pos, o = 0, end = 0;
    bool jumped = false;
    for (;;) {
        if (p >= len)
            return false;
        uint8_t l = m[p];
        if ((l & 0xC0) == 0xC0) {
            if (!allow_ptr || len - p < 2)
                return false;
            size_t target = (size_t)(l & 0x3F) << 8 | m[p + 1];
            if (target >= fragment || target < 12)
                return false;
            if (!jumped)
                end = p + 2;
            jumped = true;
            fragment = p = target;
            continue;
        }
        if (l & 0xC0)
            return false;
        if (l == 0) {
            if (o + 1 > 255)
                return false;
            out[o++] = 0;
            if (!jumped)
                end = p + 1;
            break;
        }
        if (len - p < 1 + (size_t)l || o + 1 + l + 1 > 255)
            return false;
        out[o] = l;
        for (size_t k = 1; k <= l; k++)
            out[o + k] = keep_case ? m[p + k] : dnsc_lower(m[p + k]);
        o += 1 + (size_t)l;
        p += 1 + (size_t)l;
    }
    *pos = end;
    *out_len = o;
    return true;
}

static inline bool dnsc_fail(struct dnsc_response *r, const char *why)
{
    r->error = why;
    return false;
}

/* The OPT record's RDATA: options tiling it, at most one Client Subnet. */
static inline bool dnsc_opt_options(struct dnsc_response *r, const uint8_t *d, size_t n)
{
    size_t p = 0;
    while (p < n) {
        if (n - p < 4)
            return dnsc_fail(r, "EDNS option cut short");
        unsigned code = dnsc_get16(d + p), olen = dnsc_get16(d + p + 2);
        p += 4;
        if (olen > n - p)
            return dnsc_fail(r, "EDNS option past the OPT RDATA");
        if (code == 8) {
            if (r->has_ecs)
                return dnsc_fail(r, "two Client Subnet options");
            if (olen < 4)
                return dnsc_fail(r, "Client Subnet option too short");
            unsigned family = dnsc_get16(d + p), source = d[p + 2], scope = d[p + 3];
            unsigned width = family == 1 ? 32 : family == 2 ? 128 : 0;
            if (width == 0 || source > width || scope > width)
                return dnsc_fail(r, "Client Subnet family or prefix lengths out of range");
            size_t bytes = (source + 7) / 8;
            if (olen - 4 != bytes)
                return dnsc_fail(r, "Client Subnet ADDRESS length does not match SOURCE");
            if (source % 8 && (d[p + 4 + bytes - 1] & (0xFF >> (source % 8))))
                return dnsc_fail(r, "Client Subnet ADDRESS bits beyond SOURCE");
            r->has_ecs = true;
            r->ecs_family = (uint16_t)family;
            r->ecs_source = (uint8_t)source;
            r->ecs_scope = (uint8_t)scope;
            memset(r->ecs_addr, 0, sizeof r->ecs_addr);
            memcpy(r->ecs_addr, d + p + 4, bytes);
        }
        p += olen;
    }
    return true;
}

/* One record; its canonical form goes to r->canon (OPT to the fields). */
static inline bool dnsc_record(struct dnsc_response *r, const uint8_t *m, size_t len, size_t *pos, int section)
{
    uint8_t owner[255], n1[255], n2[255];
    size_t owner_len, l1, l2;
    size_t owner_at = *pos;
    if (!dnsc_name(m, len, pos, owner, &owner_len, true, false))
        return dnsc_fail(r, "bad record owner");
    if (len - *pos < 10)
        return dnsc_fail(r, "record fields cut short");
    const uint8_t *f = m + *pos;
    unsigned type = dnsc_get16(f), rrclass = dnsc_get16(f + 2), rdlen = dnsc_get16(f + 8);
    uint32_t ttl = (uint32_t)f[4] << 24 | (uint32_t)f[5] << 16 | (uint32_t)f[6] << 8 | f[7];
    *pos += 10;
    if (rdlen > len - *pos)
        return dnsc_fail(r, "RDATA past the end");
    size_t rd = *pos, rd_end = rd + rdlen;
    *pos = rd_end;

    if (type == 41) {
        if (section != 2)
            return dnsc_fail(r, "OPT outside the additional section");
        if (r->has_opt)
            return dnsc_fail(r, "two OPT records");
        if (m[owner_at] != 0)
            return dnsc_fail(r, "OPT owner is not the root");
        r->has_opt = true;
        r->opt_udp_size = (uint16_t)rrclass;
        r->opt_ext_rcode = (uint8_t)(ttl >> 24);
        r->opt_version = (uint8_t)(ttl >> 16);
        r->opt_do = (ttl & 0x8000) != 0;
        r->opt_zflags = (uint16_t)(ttl & 0x7FFF);
        return dnsc_opt_options(r, m + rd, rdlen);
    }
    if (rrclass != 1)
        return dnsc_fail(r, "record class is not IN");

    struct dnsc_buf data = { 0 };
    size_t p = rd;
    bool ok = true;
    switch (type) {
    case 1:
    case 28:
        ok = rdlen == (type == 1 ? 4u : 16u);
        if (ok)
            dnsc_put(&data, m + rd, rdlen);
        p = rd_end;
        break;
    case 2:
        ok = dnsc_name(m, rd_end, &p, n1, &l1, true, false);
        if (ok)
            dnsc_put(&data, n1, l1);
        break;
    case 6:
        ok = dnsc_name(m, rd_end, &p, n1, &l1, true, false) && dnsc_name(m, rd_end, &p, n2, &l2, true, false) &&
             rd_end - p == 20;
        if (ok) {
            dnsc_put(&data, n1, l1);
            dnsc_put(&data, n2, l2);
            dnsc_put(&data, m + p, 20);
            p += 20;
        }
        break;
    case 33:
        /* RFC 2782: the target is not compressed. */
        ok = rdlen > 6;
        if (ok) {
            p = rd + 6;
            ok = dnsc_name(m, rd_end, &p, n1, &l1, false, false);
        }
        if (ok) {
            dnsc_put(&data, m + rd, 6);
            dnsc_put(&data, n1, l1);
        }
        break;
    default:
        free(data.p);
        return dnsc_fail(r, "record type the codec does not write");
    }
    if (!ok || p != rd_end) {
        free(data.p);
        return dnsc_fail(r, "RDATA malformed or not filled exactly");
    }
    uint8_t sec = (uint8_t)section;
    dnsc_put(&r->canon, &sec, 1);
    dnsc_put(&r->canon, owner, owner_len);
    dnsc_put16(&r->canon, type);
    dnsc_put16(&r->canon, rrclass);
    dnsc_put32(&r->canon, ttl);
    dnsc_put16(&r->canon, (unsigned)data.len);
    dnsc_put(&r->canon, data.p, data.len);
    free(data.p);
    return true;
}

/* Read a whole response. Returns true when it is well formed; r->error says
 * why not otherwise. Free r with dnsc_free either way. */
static inline bool dnsc_parse(const uint8_t *m, size_t len, struct dnsc_response *r)
{
    memset(r, 0, sizeof *r);
    if (len < 12)
        return dnsc_fail(r, "shorter than a header");
    r->id = (uint16_t)dnsc_get16(m);
    r->flags = (uint16_t)dnsc_get16(m + 2);
    r->qdcount = (uint16_t)dnsc_get16(m + 4);
    r->ancount = (uint16_t)dnsc_get16(m + 6);
    r->nscount = (uint16_t)dnsc_get16(m + 8);
    r->arcount = (uint16_t)dnsc_get16(m + 10);
    if (!(r->flags & 0x8000))
        return dnsc_fail(r, "QR not set");
    if (r->flags & 0x0040)
        return dnsc_fail(r, "Z bit set");
    if (r->qdcount > 1)
        return dnsc_fail(r, "more than one question");
    size_t pos = 12;
    if (r->qdcount == 1) {
        if (!dnsc_name(m, len, &pos, r->qname, &r->qname_len, false, true))
            return dnsc_fail(r, "bad question name");
        if (len - pos < 4)
            return dnsc_fail(r, "question cut short");
        r->qtype = (uint16_t)dnsc_get16(m + pos);
        r->qclass = (uint16_t)dnsc_get16(m + pos + 2);
        pos += 4;
        r->has_question = true;
    }
    unsigned counts[3] = { r->ancount, r->nscount, r->arcount };
    for (int s = 0; s < 3; s++)
        for (unsigned i = 0; i < counts[s]; i++)
            if (!dnsc_record(r, m, len, &pos, s))
                return false;
    if (pos != len)
        return dnsc_fail(r, "bytes after the last record");
    return true;
}

/* ---- the expected side ---- */

static inline size_t dnsc_wire_len(const uint8_t *name)
{
    size_t p = 0;
    while (name[p])
        p += 1 + (size_t)name[p];
    return p + 1;
}

static inline void dnsc_put_lower_name(struct dnsc_buf *b, const uint8_t *name)
{
    size_t n = dnsc_wire_len(name);
    for (size_t i = 0; i < n; i++) {
        uint8_t c = dnsc_lower(name[i]);
        dnsc_put(b, &c, 1);
    }
}

/* Append the canonical form of a record with the given (uncompressed)
 * RDATA pieces: names are lower-cased here. */
static inline void dnsc_canon_head(struct dnsc_buf *b, int section, const uint8_t *owner, unsigned type, uint32_t ttl)
{
    uint8_t sec = (uint8_t)section;
    dnsc_put(b, &sec, 1);
    dnsc_put_lower_name(b, owner);
    dnsc_put16(b, type);
    dnsc_put16(b, 1);
    dnsc_put32(b, ttl);
}

static inline void dnsc_canon_addr(struct dnsc_buf *b, int section, const uint8_t *owner, uint32_t ttl,
                            const uint8_t *addr, size_t n)
{
    dnsc_canon_head(b, section, owner, n == 4 ? 1 : 28, ttl);
    dnsc_put16(b, (unsigned)n);
    dnsc_put(b, addr, n);
}

static inline void dnsc_canon_ns(struct dnsc_buf *b, int section, const uint8_t *owner, uint32_t ttl, const uint8_t *ns)
{
    dnsc_canon_head(b, section, owner, 2, ttl);
    dnsc_put16(b, (unsigned)dnsc_wire_len(ns));
    dnsc_put_lower_name(b, ns);
}

static inline void dnsc_canon_srv(struct dnsc_buf *b, int section, const uint8_t *owner, uint32_t ttl, unsigned prio,
                           unsigned weight, unsigned port, const uint8_t *target)
{
    dnsc_canon_head(b, section, owner, 33, ttl);
    dnsc_put16(b, 6 + (unsigned)dnsc_wire_len(target));
    dnsc_put16(b, prio);
    dnsc_put16(b, weight);
    dnsc_put16(b, port);
    dnsc_put_lower_name(b, target);
}

static inline void dnsc_canon_soa(struct dnsc_buf *b, int section, const uint8_t *owner, uint32_t ttl,
                           const uint8_t *mname, const uint8_t *rname, const uint32_t timers[5])
{
    dnsc_canon_head(b, section, owner, 6, ttl);
    dnsc_put16(b, (unsigned)(dnsc_wire_len(mname) + dnsc_wire_len(rname) + 20));
    dnsc_put_lower_name(b, mname);
    dnsc_put_lower_name(b, rname);
    for (int i = 0; i < 5; i++)
        dnsc_put32(b, timers[i]);
}

#endif
