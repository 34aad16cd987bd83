/* libFuzzer target for the HA probe's answer parser and socket filter
 * (src/ha/probe_packet.c).
 *
 * Input: byte 0 picks the family (bit 0: IPv6) and whether the parser
 * checks the TCP checksum (bit 1: it does not, as for a packet the kernel
 * vouches for); the rest is the L3 packet, as the probe's packet socket
 * receives it.
 *
 * Invariants (a violation traps):
 *  - the parser reads only inside the packet (ASan);
 *  - an accepted answer's ports and numbers are the packet's own bytes,
 *    and its kind matches the TCP flags (RST, or SYN+ACK without FIN);
 *  - the socket filter built for the answer's destination address and
 *    port lets the packet through: the kernel never drops what the parser
 *    would accept (the filter may pass more, the parser decides);
 *  - the same for probe_parse_own_syn() (one of our SYNs coming back):
 *    its ports and sequence number are the packet's bytes, and the filter
 *    built for its source address and port passes it;
 *  - no packet is both an answer and one of our SYNs.
 */
#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ha/probe_packet.h"
#include "../unit/cbpf_run.h"

static uint16_t be16(const uint8_t *p)
{
    return (uint16_t)(p[0] << 8 | p[1]);
}

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)be16(p) << 16 | be16(p + 2);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    int family = data[0] & 1 ? AF_INET6 : AF_INET;
    bool verify = !(data[0] & 2);
    const uint8_t *pkt = data + 1;
    size_t len = size - 1;
    struct probe_tuple own;
    uint32_t own_seq;
    bool is_own = probe_parse_own_syn(pkt, len, family, verify, &own, &own_seq) == 0;
    struct sock_filter prog[PROBE_FILTER_MAX];
    size_t n;
    if (is_own) {
        size_t off = family == AF_INET ? (size_t)(pkt[0] & 0x0f) * 4 : 40;
        if (own.sport != be16(pkt + off) || own.dport != be16(pkt + off + 2) || own_seq != be32(pkt + off + 4))
            abort();
        n = probe_filter_build(prog, PROBE_FILTER_MAX, family, own.src, own.sport, own.sport);
        if (n == 0 || run_filter(prog, n, pkt, len) <= 0)
            abort();
    }
    struct probe_reply r;
    if (probe_parse_reply(pkt, len, family, verify, &r) != 0)
        return 0;
    if (is_own)
        abort();
    size_t tcp_off = family == AF_INET ? (size_t)(pkt[0] & 0x0f) * 4 : 40;
    const uint8_t *tcp = pkt + tcp_off;
    if (r.tuple.sport != be16(tcp + 2) || r.tuple.dport != be16(tcp) || r.seq != be32(tcp + 4))
        abort();
    uint8_t flags = tcp[13];
    if (r.kind == PROBE_REPLY_RST ? !(flags & 0x04) : (flags & 0x17) != 0x12)
        abort();
    if (r.ack != (flags & 0x10 ? be32(tcp + 8) : 0))
        abort();
    n = probe_filter_build(prog, PROBE_FILTER_MAX, family, r.tuple.src, r.tuple.sport, r.tuple.sport);
    if (n == 0 || run_filter(prog, n, pkt, len) <= 0)
        abort();
    return 0;
}
