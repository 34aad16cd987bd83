/* See dns_client.h. */
#include "lib/dns_client.h"

#include <arpa/inet.h>
#include <string.h>

static void put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static uint16_t get16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

int dns_build_query(uint8_t *buf, size_t cap, uint16_t id, const uint8_t *qname, size_t qname_len, uint16_t qtype)
{
    size_t need = DNS_HEADER_LEN + qname_len + 4 + 11;
    if (qname_len == 0 || qname_len > DNS_NAME_MAX || cap < need)
        return -1;
    memset(buf, 0, DNS_HEADER_LEN);
    put16(buf, id);
    buf[2] = 0x01;                       /* RD */
    put16(buf + 4, 1);                   /* QDCOUNT */
    put16(buf + 10, 1);                  /* ARCOUNT: the OPT */
    uint8_t *p = buf + DNS_HEADER_LEN;
    memcpy(p, qname, qname_len);
    p += qname_len;
    put16(p, qtype);
    put16(p + 2, DNS_CLASS_IN);
    p += 4;
    /* OPT: root owner, type 41, class = payload size, TTL 0, no RDATA. */
    p[0] = 0;
    put16(p + 1, DNS_TYPE_OPT);
    put16(p + 3, DNS_CLIENT_UDP_SIZE);
    memset(p + 5, 0, 6);
    return (int)need;
}

/* Skip the (possibly compressed) name at msg[*pos]: past its last label,
 * or past the first pointer. Pointers must lead backwards, so a chain ends;
 * only the skipped span is checked here, which is all the answer needs. */
static int skip_name(const uint8_t *msg, size_t len, size_t *pos)
{
    size_t p = *pos, total = 0;
    for (;;) {
        if (p >= len)
            return -1;
        uint8_t l = msg[p];
        if ((l & 0xC0) == 0xC0) {
            if (p + 1 >= len)
                return -1;
            size_t target = (size_t)(l & 0x3F) << 8 | msg[p + 1];
            if (target >= p)
                return -1;
            *pos = p + 2;
            return 0;
        }
        if (l & 0xC0)
            return -1;                   /* 0x40 / 0x80 label types */
        total += (size_t)l + 1;
        if (total > DNS_NAME_MAX)
            return -1;
        p += (size_t)l + 1;
        if (l == 0) {
            *pos = p;
            return 0;
        }
    }
}

static void add_addr(struct dns_answer *out, sa_family_t family, const uint8_t *rdata, size_t n)
{
    for (size_t i = 0; i < out->n_addrs; i++)
        if (out->addrs[i].family == family && memcmp(out->addrs[i].addr, rdata, n) == 0)
            return;
    if (out->n_addrs == DNS_ANSWER_MAX_ADDRS) {
        out->dropped++;
        return;
    }
    struct dns_answer_addr *a = &out->addrs[out->n_addrs++];
    memset(a, 0, sizeof *a);
    a->family = family;
    memcpy(a->addr, rdata, n);
}

int dns_parse_answer(const uint8_t *msg, size_t len, uint16_t id, const struct dns_name *qname, uint16_t qtype,
                     struct dns_answer *out)
{
    memset(out, 0, sizeof *out);
    struct dns_question q;
    if (dns_read_question(msg, len, &q) < 0)
        return -1;
    if (q.id != id || !(q.flags & 0x8000) || ((q.flags >> 11) & 0xF) != DNS_OPCODE_QUERY ||
        !dns_name_equal(&q.qname, qname) || q.qtype != qtype || q.qclass != DNS_CLASS_IN)
        return -1;
    out->rcode = q.flags & 0xF;
    out->truncated = (q.flags & 0x0200) != 0;
    uint16_t ancount = get16(msg + 6);
    size_t pos = q.end;
    bool have_ttl = false;
    for (uint16_t i = 0; i < ancount; i++) {
        if (skip_name(msg, len, &pos) < 0 || len - pos < 10)
            return -1;
        uint16_t type = get16(msg + pos), klass = get16(msg + pos + 2);
        uint32_t ttl = get32(msg + pos + 4);
        uint16_t rdlen = get16(msg + pos + 8);
        pos += 10;
        if (len - pos < rdlen)
            return -1;
        const uint8_t *rdata = msg + pos;
        pos += rdlen;
        if (klass != DNS_CLASS_IN)
            continue;
        /* RFC 2181 §8: a TTL with the top bit set counts as 0. */
        if (ttl > 0x7fffffffu)
            ttl = 0;
        if (!have_ttl || ttl < out->ttl)
            out->ttl = ttl;
        have_ttl = true;
        if (type == DNS_TYPE_A && qtype == DNS_TYPE_A) {
            if (rdlen != 4)
                return -1;
            add_addr(out, AF_INET, rdata, 4);
        } else if (type == DNS_TYPE_AAAA && qtype == DNS_TYPE_AAAA) {
            if (rdlen != 16)
                return -1;
            add_addr(out, AF_INET6, rdata, 16);
        }
    }
    return 0;
}

static bool is_blank(char ch) { return ch == ' ' || ch == '\t'; }

size_t dns_resolv_conf_parse(const char *text, size_t len, struct dns_answer_addr *out, size_t cap)
{
    size_t n = 0, pos = 0;
    while (pos < len && n < cap) {
        size_t end = pos;
        while (end < len && text[end] != '\n')
            end++;
        size_t p = pos;
        pos = end + 1;
        while (p < end && is_blank(text[p]))
            p++;
        static const char kw[] = "nameserver";
        if (end - p <= sizeof kw - 1 || memcmp(text + p, kw, sizeof kw - 1) != 0 || !is_blank(text[p + sizeof kw - 1]))
            continue;
        p += sizeof kw - 1;
        while (p < end && is_blank(text[p]))
            p++;
        size_t a = p;
        while (p < end && !is_blank(text[p]) && text[p] != '\r' && text[p] != '#' && text[p] != ';')
            p++;
        char ip[64];
        if (p == a || p - a >= sizeof ip)
            continue;
        memcpy(ip, text + a, p - a);
        ip[p - a] = '\0';
        struct dns_answer_addr *o = &out[n];
        memset(o, 0, sizeof *o);
        if (inet_pton(AF_INET, ip, o->addr) == 1)
            o->family = AF_INET;
        else if (inet_pton(AF_INET6, ip, o->addr) == 1)
            o->family = AF_INET6;
        else
            continue;                    /* a scoped IPv6 (fe80::1%eth0) or junk */
        n++;
    }
    return n;
}
