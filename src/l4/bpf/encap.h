/* What DR and TUN send to the real. DR: the frame with its Ethernet
 * addresses rewritten. TUN: the IP packet inside an outer IPv4 (IPIP,
 * 6in4) or IPv6 (IP6IP6, 4in6) header, or with GUE inside an outer IP and
 * UDP header (GUE variant 1), from a source address and port derived from
 * the flow hash; a packet that would exceed the tunnel MTU is answered
 * with frag-needed / packet-too-big instead (tun_ptb(), icmp.h).
 *
 * Each returns an enum l4_reason (FWD_DR, FWD_TUN, ICMP_PTB_SENT, or a
 * drop); the caller counts it. Assumes parse.h, csum.h, icmp.h,
 * consts.h and forwarder_abi.h.
 */
#ifndef SLUICE_L4_BPF_ENCAP_H
#define SLUICE_L4_BPF_ENCAP_H

/* DR: the real holds the VIP on a loopback, so only the Ethernet header
 * changes; IP and L4 bytes (and their checksums) stay as the client sent
 * them. */
static __always_inline int fwd_dr(struct xdp_md *ctx, const struct l4_real *r, const struct l4_cfg *cfg)
{
    void *data = (void *)(long)ctx->data;
    void *data_end = (void *)(long)ctx->data_end;
    struct ethhdr *eth = data;

    if ((void *)(eth + 1) > data_end)
        return L4_R_DROP_TRUNCATED;
    __builtin_memcpy(eth->h_dest, r->mac, 6);
    __builtin_memcpy(eth->h_source, cfg->src_mac, 6);
    return L4_R_FWD_DR;
}

/* TUN outer IPv4 source: the configured prefix with its host bits taken
 * from the flow hash. A flow always gets the same source; different flows
 * get different ones, so the real's NIC spreads them over its queues by
 * RSS on the outer header. */
static __always_inline __be32 tun_src4(const struct l4_cfg *cfg, __u32 hash)
{
    __u32 plen = cfg->tun_src4_plen;
    __u32 host = plen >= 32 ? 0 : 0xffffffffu >> plen;

    return bpf_htonl((bpf_ntohl(cfg->tun_src4) & ~host) | (hash & host));
}

/* IPv6: the hash fills at most the last 32 host bits; the rest of the
 * address is the prefix as configured. */
static __always_inline void tun_src6(const struct l4_cfg *cfg, __u32 hash, struct in6_addr *out)
{
    __u32 plen = cfg->tun_src6_plen;
    __u32 host;

    if (plen >= 128)
        host = 0;
    else if (plen <= 96)
        host = 0xffffffffu;
    else
        host = 0xffffffffu >> (plen - 96);
    __builtin_memcpy(out, cfg->tun_src6, 16);
    out->in6_u.u6_addr32[3] = bpf_htonl((bpf_ntohl(cfg->tun_src6[3]) & ~host) | (hash & host));
}

/* GUE variant 1 (draft-ietf-intarea-gue, section 5): the IP packet directly
 * after a UDP header, no GUE header; the receiver tells IPv4 from IPv6 by the
 * first nibble of what follows the UDP header. The UDP source port carries
 * the flow hash, in the dynamic range 49152..65535 (as RFC 8086 asks of
 * GRE-in-UDP), so receivers that spread UDP by its ports (RSS, ECMP) keep
 * a flow together and spread the flows; the high half of the hash is folded
 * in, since the low bits already went into the outer source address. */
static __always_inline __be16 gue_sport(__u32 hash)
{
    return bpf_htons(0xc000 | ((hash ^ (hash >> 16)) & 0x3fff));
}

/* TUN: put an outer IPv4 (IPIP, or 6in4) or IPv6 (IP6IP6, or 4in6) header
 * between the L2 header and the packet, chosen by the real's family, and
 * with `gue` a UDP header after it (GUE variant 1). The L2 header is
 * rebuilt in front (the old one is partly overwritten), with the VLAN tag
 * kept and the ethertype of the outer family. */
static __always_inline int fwd_tun(struct xdp_md *ctx, const struct pkt *p, const struct l4_real *r,
                                   __u32 hash, const struct l4_cfg *cfg, bool gue, bool icmp_err)
{
    bool outer6 = r->flags & L4_REAL_F_V6;
    int iphl = outer6 ? (int)sizeof(struct ipv6hdr) : (int)sizeof(struct iphdr);
    int hdr = iphl + (gue ? (int)sizeof(struct udphdr) : 0);
    __be16 eproto = bpf_htons(outer6 ? ETH_P_IPV6 : ETH_P_IP);
    __u8 next = gue ? PROTO_UDP : p->v6 ? PROTO_IPV6 : PROTO_IPIP;
    __u32 l3_off = p->l3_off, ip_len = p->ip_len;
    __be16 gue_port = cfg->gue_port ? cfg->gue_port : bpf_htons(L4_GUE_DEFAULT_PORT);
    void *data, *data_end;
    struct ethhdr *eth;
    struct udphdr *udp;
    __u64 sum = 0;
    int s;

    if (l3_off > L3_OFF_MAX)
        return L4_R_DROP_NO_ROOM;
    /* Too big once encapsulated (GUE: 8 more bytes): tell the client,
     * unless the packet is an ICMP error itself (never an error about an
     * error, RFC 1122 3.2.2). */
    if (cfg->tun_mtu && ip_len + hdr > cfg->tun_mtu)
        return icmp_err ? L4_R_DROP_TOO_BIG : tun_ptb(ctx, p, cfg, hdr);
    if (bpf_xdp_adjust_head(ctx, -hdr))
        return L4_R_DROP_NO_ROOM;
    data = (void *)(long)ctx->data;
    data_end = (void *)(long)ctx->data_end;

    eth = data;
    if ((void *)(eth + 1) > data_end)
        return L4_R_DROP_NO_ROOM;
    __builtin_memcpy(eth->h_dest, r->mac, 6);
    __builtin_memcpy(eth->h_source, cfg->src_mac, 6);
    if (p->vlan_tpid) {
        struct vlan_hdr *vh = (void *)(eth + 1);

        if ((void *)(vh + 1) > data_end)
            return L4_R_DROP_NO_ROOM;
        eth->h_proto = p->vlan_tpid;
        vh->h_vlan_TCI = p->vlan_tci;
        vh->h_vlan_encapsulated_proto = eproto;
    } else {
        eth->h_proto = eproto;
    }

    if (outer6) {
        struct ipv6hdr *o = data + l3_off;
        struct ipv6hdr h = {};

        if ((void *)(o + 1) > data_end)
            return L4_R_DROP_NO_ROOM;
        /* Flow label from the hash too: ECMP routers between us and the
         * real hash on it (RFC 6438). */
        *(__be32 *)&h = bpf_htonl((6u << 28) | ((__u32)p->tos << 20) | (hash & 0xfffff));
        h.payload_len = bpf_htons(ip_len + hdr - iphl);
        h.nexthdr = next;
        h.hop_limit = L4_TUN_TTL;
        tun_src6(cfg, hash, &h.saddr);
        __builtin_memcpy(&h.daddr, r->addr, 16);
        *o = h;
        if (gue) {
            /* The UDP checksum's pseudo-header (RFC 8200 8.1): both
             * addresses, the upper-layer length, the next header. */
#pragma unroll
            for (int i = 0; i < 4; i++)
                sum += (__u64)h.saddr.in6_u.u6_addr32[i] + r->addr[i];
            sum += bpf_htonl(ip_len + sizeof(*udp));
            sum += bpf_htonl(PROTO_UDP);
        }
    } else {
        struct iphdr *o = data + l3_off;
        struct iphdr h = {};

        if ((void *)(o + 1) > data_end)
            return L4_R_DROP_NO_ROOM;
        *(__u8 *)&h = 0x45;
        h.tos = p->tos;
        h.tot_len = bpf_htons(ip_len + hdr);
        /* DF: the LB never fragments; an oversized packet is a
         * configuration error that cfg.tun_mtu catches. With DF set the
         * IP ID carries no meaning (RFC 6864), so it stays 0. */
        h.frag_off = bpf_htons(IP_DF);
        h.ttl = L4_TUN_TTL;
        h.protocol = next;
        h.saddr = tun_src4(cfg, hash);
        h.daddr = r->addr[3];
        h.check = ip4_hdr_csum(&h);
        *o = h;
    }
    if (!gue)
        return L4_R_FWD_TUN;

    udp = data + l3_off + iphl;
    if ((void *)(udp + 1) > data_end)
        return L4_R_DROP_NO_ROOM;
    udp->source = gue_sport(hash);
    udp->dest = gue_port;
    udp->len = bpf_htons(ip_len + sizeof(*udp));
    udp->check = 0;
    /* Outer IPv4: no UDP checksum (0, RFC 768). The inner packet carries
     * its own checksums and the outer IPv4 header has one, so 0 loses
     * nothing, and it is what tunnels over UDP usually send (RFC 8086
     * 3.2.1). Outer IPv6: it must be computed (RFC 8200 8.1; the zero
     * checksum of RFC 6935/6936 needs the receiver's consent for the
     * port, which a plain Linux UDP socket and our decap do not give),
     * over the whole inner packet: one pass over the packet, paid only
     * by GUE over IPv6. */
    if (!outer6)
        return L4_R_FWD_TUN;
    s = l4_sum_bytes(ctx, l3_off + iphl, ip_len + sizeof(*udp));
    if (s < 0)
        return L4_R_DROP_NO_ROOM; /* (cannot happen: all of it is in the frame) */
    sum += (__u32)s;
    /* Packet pointers re-derived after the call: two loads, and no
     * reliance on the verifier keeping them across it. */
    data = (void *)(long)ctx->data;
    data_end = (void *)(long)ctx->data_end;
    udp = data + l3_off + sizeof(struct ipv6hdr);
    if ((void *)(udp + 1) > data_end)
        return L4_R_DROP_NO_ROOM;
    udp->check = csum_fold(fold64(sum));
    if (!udp->check)
        udp->check = 0xffff; /* a computed 0 is sent as 0xffff: 0 is "none" */
    return L4_R_FWD_TUN;
}

#endif
