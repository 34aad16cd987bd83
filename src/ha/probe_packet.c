/* See probe_packet.h. Headers are written and read byte by byte (no
 * casts of the buffer to kernel structs), so alignment never matters. */
#include "ha/probe_packet.h"

#include "lib/be_bytes.h"

#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>

#define IPV4_HDR 20
#define IPV6_HDR 40
#define TCP_HDR 20
#define TCP_MSS_OPT 4
#define PROBE_MSS 1460

#define TCP_FIN 0x01
#define TCP_SYN 0x02
#define TCP_RST 0x04
#define TCP_ACK 0x10

static size_t addr_len(int family)
{
    return family == AF_INET ? 4 : family == AF_INET6 ? 16 : 0;
}

/* One's-complement sum of 16-bit big-endian words, carries not folded. */
static uint32_t sum16(uint32_t acc, const uint8_t *p, size_t n)
{
    for (; n >= 2; p += 2, n -= 2)
        acc += be_get16(p);
    if (n)
        acc += (uint32_t)p[0] << 8;
    return acc;
}

static uint16_t fold(uint32_t acc)
{
    while (acc >> 16)
        acc = (acc & 0xffff) + (acc >> 16);
    return (uint16_t)~acc;
}

uint16_t probe_tcp_checksum(int family, const uint8_t *src, const uint8_t *dst, const uint8_t *seg, size_t seg_len)
{
    size_t alen = addr_len(family);
    uint32_t acc = sum16(0, src, alen);
    acc = sum16(acc, dst, alen);
    /* Pseudo-header: the protocol and the segment length (as a 32-bit
     * value for IPv6, RFC 8200 8.1; its high half is 0 here). */
    acc += IPPROTO_TCP;
    acc += (uint32_t)(seg_len & 0xffff) + (uint32_t)(seg_len >> 16);
    acc = sum16(acc, seg, seg_len);
    return fold(acc);
}

/* The IP header for a TCP payload of tcp_len bytes; returns its length. */
static size_t put_ip_header(uint8_t *buf, const struct probe_tuple *t, size_t tcp_len, uint16_t ip_id)
{
    if (t->family == AF_INET) {
        memset(buf, 0, IPV4_HDR);
        buf[0] = 0x45; /* version 4, 5 words */
        be_put16(buf + 2, (uint16_t)(IPV4_HDR + tcp_len));
        be_put16(buf + 4, ip_id);
        be_put16(buf + 6, 0x4000); /* DF */
        buf[8] = 64;            /* TTL */
        buf[9] = IPPROTO_TCP;
        memcpy(buf + 12, t->src, 4);
        memcpy(buf + 16, t->dst, 4);
        be_put16(buf + 10, fold(sum16(0, buf, IPV4_HDR)));
        return IPV4_HDR;
    }
    memset(buf, 0, IPV6_HDR);
    buf[0] = 0x60;
    be_put16(buf + 4, (uint16_t)tcp_len);
    buf[6] = IPPROTO_TCP;
    buf[7] = 64; /* hop limit */
    memcpy(buf + 8, t->src, 16);
    memcpy(buf + 24, t->dst, 16);
    return IPV6_HDR;
}

static size_t build(uint8_t *buf, size_t cap, const struct probe_tuple *t, uint32_t seq, uint8_t flags,
                    uint16_t ip_id)
{
    size_t alen = addr_len(t->family);
    if (!alen)
        return 0;
    size_t ip_len = t->family == AF_INET ? IPV4_HDR : IPV6_HDR;
    size_t tcp_len = TCP_HDR + (flags & TCP_SYN ? TCP_MSS_OPT : 0);
    if (cap < ip_len + tcp_len)
        return 0;
    put_ip_header(buf, t, tcp_len, ip_id);
    uint8_t *tcp = buf + ip_len;
    memset(tcp, 0, tcp_len);
    be_put16(tcp, t->sport);
    be_put16(tcp + 2, t->dport);
    be_put32(tcp + 4, seq);
    tcp[12] = (uint8_t)((tcp_len / 4) << 4);
    tcp[13] = flags;
    /* A SYN offers a window (a zero window would look odd to middle
     * boxes); a RST carries none. */
    be_put16(tcp + 14, flags & TCP_SYN ? 64240 : 0);
    if (flags & TCP_SYN) {
        tcp[20] = 2; /* MSS */
        tcp[21] = 4;
        be_put16(tcp + 22, PROBE_MSS);
    }
    be_put16(tcp + 16, probe_tcp_checksum(t->family, t->src, t->dst, tcp, tcp_len));
    return ip_len + tcp_len;
}

size_t probe_build_syn(uint8_t *buf, size_t cap, const struct probe_tuple *t, uint32_t seq, uint16_t ip_id)
{
    return build(buf, cap, t, seq, TCP_SYN, ip_id);
}

size_t probe_build_rst(uint8_t *buf, size_t cap, const struct probe_tuple *t, uint32_t seq, uint16_t ip_id)
{
    return build(buf, cap, t, seq, TCP_RST, ip_id);
}

/* Locate the TCP segment of an L3 packet: 0 with *tcp / *tcp_len set. */
static int locate_tcp(const uint8_t *pkt, size_t len, int family, const uint8_t **src, const uint8_t **dst,
                      const uint8_t **tcp, size_t *tcp_len)
{
    if (family == AF_INET) {
        if (len < IPV4_HDR || pkt[0] >> 4 != 4)
            return -1;
        size_t ihl = (size_t)(pkt[0] & 0x0f) * 4;
        size_t total = be_get16(pkt + 2);
        if (ihl < IPV4_HDR || total < ihl || total > len)
            return -1;
        if (be_get16(pkt + 6) & 0x3fff) /* MF or an offset: a fragment */
            return -1;
        if (pkt[9] != IPPROTO_TCP)
            return -1;
        if (fold(sum16(0, pkt, ihl)) != 0)
            return -1;
        *src = pkt + 12;
        *dst = pkt + 16;
        *tcp = pkt + ihl;
        *tcp_len = total - ihl;
        return 0;
    }
    if (family == AF_INET6) {
        if (len < IPV6_HDR || pkt[0] >> 4 != 6)
            return -1;
        size_t payload = be_get16(pkt + 4);
        if (pkt[6] != IPPROTO_TCP || payload > len - IPV6_HDR)
            return -1;
        *src = pkt + 8;
        *dst = pkt + 24;
        *tcp = pkt + IPV6_HDR;
        *tcp_len = payload;
        return 0;
    }
    return -1;
}

int probe_parse_reply(const uint8_t *pkt, size_t len, int family, bool verify_csum, struct probe_reply *out)
{
    const uint8_t *src, *dst, *tcp;
    size_t tcp_len;
    if (locate_tcp(pkt, len, family, &src, &dst, &tcp, &tcp_len) < 0)
        return -1;
    if (tcp_len < TCP_HDR)
        return -1;
    size_t doff = (size_t)(tcp[12] >> 4) * 4;
    if (doff < TCP_HDR || doff > tcp_len)
        return -1;
    if (verify_csum && probe_tcp_checksum(family, src, dst, tcp, tcp_len) != 0)
        return -1;
    uint8_t flags = tcp[13];
    enum probe_reply_kind kind;
    if (flags & TCP_RST)
        kind = PROBE_REPLY_RST;
    else if ((flags & (TCP_SYN | TCP_ACK | TCP_FIN)) == (TCP_SYN | TCP_ACK))
        kind = PROBE_REPLY_SYNACK;
    else
        return -1;
    size_t alen = addr_len(family);
    memset(out, 0, sizeof *out);
    out->tuple.family = family;
    memcpy(out->tuple.src, dst, alen); /* turned around: the probe's view */
    memcpy(out->tuple.dst, src, alen);
    out->tuple.sport = be_get16(tcp + 2);
    out->tuple.dport = be_get16(tcp);
    out->kind = kind;
    out->seq = be_get32(tcp + 4);
    out->ack = flags & TCP_ACK ? be_get32(tcp + 8) : 0;
    return 0;
}

int probe_parse_own_syn(const uint8_t *pkt, size_t len, int family, bool verify_csum, struct probe_tuple *out,
                        uint32_t *seq)
{
    const uint8_t *src, *dst, *tcp;
    size_t tcp_len;
    if (locate_tcp(pkt, len, family, &src, &dst, &tcp, &tcp_len) < 0 || tcp_len < TCP_HDR)
        return -1;
    size_t doff = (size_t)(tcp[12] >> 4) * 4;
    if (doff < TCP_HDR || doff > tcp_len)
        return -1;
    if (verify_csum && probe_tcp_checksum(family, src, dst, tcp, tcp_len) != 0)
        return -1;
    if ((tcp[13] & (TCP_SYN | TCP_ACK | TCP_RST | TCP_FIN)) != TCP_SYN)
        return -1;
    size_t alen = addr_len(family);
    memset(out, 0, sizeof *out);
    out->family = family;
    memcpy(out->src, src, alen);
    memcpy(out->dst, dst, alen);
    out->sport = be_get16(tcp);
    out->dport = be_get16(tcp + 2);
    *seq = be_get32(tcp + 4);
    return 0;
}

/* Filter building: a small assembler that records forward jumps to
 * three labels ("accept", "drop", and "own": the check for our own SYNs)
 * and patches them at the end. */
struct asm_prog {
    struct sock_filter *prog;
    size_t cap, n;
    size_t own; /* where the own-SYN checks begin */
    bool overflow;
};

enum { TO_NEXT = 0, TO_ACCEPT = 1, TO_DROP = 2, TO_OWN = 3 };

static void emit(struct asm_prog *a, uint16_t code, uint8_t jt, uint8_t jf, uint32_t k)
{
    if (a->n >= a->cap) {
        a->overflow = true;
        return;
    }
    /* jt/jf hold TO_* markers until patched. */
    a->prog[a->n++] = (struct sock_filter){ code, jt, jf, k };
}

static void stmt(struct asm_prog *a, uint16_t code, uint32_t k)
{
    emit(a, code, 0, 0, k);
}

/* Compare the address at abs offset `off` (4 or 16 bytes) with `want`;
 * on a mismatch go to `otherwise`. */
static void expect_addr(struct asm_prog *a, uint32_t off, const uint8_t *want, size_t alen, uint8_t otherwise)
{
    for (size_t i = 0; i < alen; i += 4) {
        stmt(a, BPF_LD | BPF_W | BPF_ABS, off + (uint32_t)i);
        emit(a, BPF_JMP | BPF_JEQ | BPF_K, TO_NEXT, otherwise, be_get32(want + i));
    }
}

/* The port at X + port_off within [lo, hi], else go to `otherwise`. X
 * holds the offset of the TCP header from the IP start. */
static void expect_port(struct asm_prog *a, uint32_t port_off, uint16_t lo, uint16_t hi, uint8_t otherwise)
{
    stmt(a, BPF_LD | BPF_H | BPF_IND, port_off);
    emit(a, BPF_JMP | BPF_JGE | BPF_K, TO_NEXT, otherwise, lo);
    emit(a, BPF_JMP | BPF_JGT | BPF_K, otherwise, TO_NEXT, hi);
}

/* An answer: to a probe source port, RST or SYN+ACK. What is not one
 * may still be our own SYN (a packet from the source to itself is both
 * "to" and "from" it): on to those checks. */
static void answer_checks(struct asm_prog *a, uint16_t port_lo, uint16_t port_hi)
{
    expect_port(a, 2, port_lo, port_hi, TO_OWN);
    stmt(a, BPF_LD | BPF_B | BPF_IND, 13); /* flags */
    emit(a, BPF_JMP | BPF_JSET | BPF_K, TO_ACCEPT, TO_NEXT, TCP_RST);
    stmt(a, BPF_ALU | BPF_AND | BPF_K, TCP_SYN | TCP_ACK);
    emit(a, BPF_JMP | BPF_JEQ | BPF_K, TO_ACCEPT, TO_OWN, TCP_SYN | TCP_ACK);
}

/* Our own SYN: from a probe source port, SYN alone. */
static void own_syn_checks(struct asm_prog *a, uint16_t port_lo, uint16_t port_hi)
{
    expect_port(a, 0, port_lo, port_hi, TO_DROP);
    stmt(a, BPF_LD | BPF_B | BPF_IND, 13);
    stmt(a, BPF_ALU | BPF_AND | BPF_K, TCP_SYN | TCP_ACK | TCP_RST | TCP_FIN);
    emit(a, BPF_JMP | BPF_JEQ | BPF_K, TO_ACCEPT, TO_DROP, TCP_SYN);
}

/* Turn the markers into relative offsets: accept at n, drop at n + 1,
 * own at a->own. */
static bool patch(struct asm_prog *a)
{
    size_t accept = a->n, drop = a->n + 1;
    for (size_t i = 0; i < a->n; i++) {
        struct sock_filter *f = &a->prog[i];
        if (BPF_CLASS(f->code) != BPF_JMP)
            continue;
        uint8_t *targets[2] = { &f->jt, &f->jf };
        for (int j = 0; j < 2; j++) {
            size_t to = *targets[j] == TO_ACCEPT ? accept
                        : *targets[j] == TO_DROP ? drop
                        : *targets[j] == TO_OWN  ? a->own
                                                 : i + 1;
            if (to <= i || to - (i + 1) > 255)
                return false;
            *targets[j] = (uint8_t)(to - (i + 1));
        }
    }
    return true;
}

size_t probe_filter_build(struct sock_filter *prog, size_t cap, int family, const uint8_t *source, uint16_t port_lo,
                          uint16_t port_hi)
{
    struct asm_prog a = { .prog = prog, .cap = cap };
    uint32_t src_off, dst_off;
    size_t alen = addr_len(family);
    if (family == AF_INET) {
        stmt(&a, BPF_LD | BPF_B | BPF_ABS, 9); /* protocol */
        emit(&a, BPF_JMP | BPF_JEQ | BPF_K, TO_NEXT, TO_DROP, IPPROTO_TCP);
        stmt(&a, BPF_LD | BPF_H | BPF_ABS, 6);
        emit(&a, BPF_JMP | BPF_JSET | BPF_K, TO_DROP, TO_NEXT, 0x3fff); /* fragments */
        stmt(&a, BPF_LDX | BPF_B | BPF_MSH, 0);                         /* X = 4 * IHL */
        src_off = 12, dst_off = 16;
    } else if (family == AF_INET6) {
        stmt(&a, BPF_LD | BPF_B | BPF_ABS, 6); /* next header */
        emit(&a, BPF_JMP | BPF_JEQ | BPF_K, TO_NEXT, TO_DROP, IPPROTO_TCP);
        stmt(&a, BPF_LDX | BPF_W | BPF_IMM, IPV6_HDR);
        src_off = 8, dst_off = 24;
    } else {
        return 0;
    }
    expect_addr(&a, dst_off, source, alen, TO_OWN);
    answer_checks(&a, port_lo, port_hi);
    a.own = a.n;
    expect_addr(&a, src_off, source, alen, TO_DROP);
    own_syn_checks(&a, port_lo, port_hi);
    if (a.overflow || a.n + 2 > cap || !patch(&a))
        return 0;
    prog[a.n++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, 0xffff); /* accept */
    prog[a.n++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, 0);      /* drop */
    return a.n;
}
