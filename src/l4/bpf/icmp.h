/* The ICMP the forwarder answers, writes or routes:
 *   - echo requests to a VIP address, answered in place (echo_reply());
 *   - frag-needed and ICMPv6 packet-too-big about a flow: the flow quoted
 *     in the error (icmp_inner_flow()), so that the error goes to the real
 *     that owns the flow; for NAT and FullNAT flows translated as the
 *     flow's packets are (nat_icmp_err());
 *   - the frag-needed / packet-too-big the forwarder itself sends a TUN
 *     client whose packet would not fit the tunnel (tun_ptb()).
 * The choice between them is handle_icmp()'s, in forwarder.bpf.c.
 *
 * Assumes maps.h, counters.h, parse.h, csum.h, select.h (active_real) and
 * nat.h (the NAT state helpers).
 */
#ifndef SLUICE_L4_BPF_ICMP_H
#define SLUICE_L4_BPF_ICMP_H

/* ---- echo, and the flow an error is about ---- */

static __always_inline bool is_vip_addr(const __be32 addr[4], __u8 proto)
{
    struct l4_vip_key k = {};

    __builtin_memcpy(k.addr, addr, 16);
    k.proto = proto;
    return bpf_map_lookup_elem(&vips, &k) != NULL;
}

static __always_inline void swap_macs(struct ethhdr *eth)
{
    __u8 tmp[6];

    __builtin_memcpy(tmp, eth->h_source, 6);
    __builtin_memcpy(eth->h_source, eth->h_dest, 6);
    __builtin_memcpy(eth->h_dest, tmp, 6);
}

/* Echo reply in place: swap MACs and addresses, set TTL, flip the type.
 * Swapping addresses changes neither the IPv4 header checksum nor the
 * ICMPv6 pseudo-header sum; the TTL and type changes are patched in
 * incrementally. The reply leaves by the interface it came in on. */
static __always_inline int echo_reply(void *data, void *data_end, const struct pkt *p, __u64 bytes)
{
    __u32 l3_off = p->l3_off, l4_off = p->l4_off;
    struct ethhdr *eth = data;
    __u16 old, *icmp;

    if (l3_off > L3_OFF_MAX || l4_off > L4_OFF_MAX)
        return finish(L4_R_DROP_TRUNCATED, bytes);
    icmp = data + l4_off;
    if ((void *)(eth + 1) > data_end || (void *)(icmp + 4) > data_end)
        return finish(L4_R_DROP_TRUNCATED, bytes);

    if (!p->v6) {
        struct iphdr *ip = data + l3_off;
        __be32 a;

        if ((void *)(ip + 1) > data_end)
            return finish(L4_R_DROP_TRUNCATED, bytes);
        a = ip->saddr;
        ip->saddr = ip->daddr;
        ip->daddr = a;
        old = *(__u16 *)&ip->ttl; /* TTL and protocol share a word */
        ip->ttl = L4_ECHO_TTL;
        csum_replace16(&ip->check, old, *(__u16 *)&ip->ttl);
        old = icmp[0];
        ((__u8 *)icmp)[0] = ICMP_ECHOREPLY;
    } else {
        struct ipv6hdr *ip6 = data + l3_off;
        struct in6_addr a;

        if ((void *)(ip6 + 1) > data_end)
            return finish(L4_R_DROP_TRUNCATED, bytes);
        a = ip6->saddr;
        ip6->saddr = ip6->daddr;
        ip6->daddr = a;
        ip6->hop_limit = L4_ECHO_TTL;
        old = icmp[0];
        ((__u8 *)icmp)[0] = ICMPV6_ECHO_REPLY;
    }
    csum_replace16(&icmp[1], old, icmp[0]);
    /* An ICMPv4 message has no pseudo-header, so a reply that is all zeros
     * (id 0, seq 0, no data) sums to +0, whose only valid checksum is
     * 0xffff; the incremental update yields 0x0000 there. 0xffff is valid
     * for every message whose correct checksum is 0x0000, so never emit
     * 0x0000. (ICMPv6 sums nonzero addresses: it cannot reach +0.) */
    if (!p->v6 && icmp[1] == 0)
        icmp[1] = 0xffff;
    swap_macs(eth);
    count_in(&reasons, L4_R_ICMP_ECHO_REPLY, bytes);
    return XDP_TX;
}

/* Fill p->key with the flow an ICMP error is about. The error quotes the
 * packet the real sent to the client (src VIP:vport, dst client:cport), so
 * the flow as the client sends it is that one reversed. Returns 0, or a
 * pass reason when the quote is not something we can route by. */
static __always_inline int icmp_inner_flow(void *data, void *data_end, struct pkt *p)
{
    /* Quoted header + the first 4 bytes of its L4 (the ports), all inside
     * the outer IP length. */
    __u32 l4_off = p->l4_off, ip_end = p->l3_off + p->ip_len;
    void *inner;
    __be16 *ports;
    __u8 proto;

    if (l4_off > L4_OFF_MAX)
        return L4_R_PASS_ICMP;
    inner = data + l4_off + 8;

    if (!p->v6) {
        struct iphdr *ip = inner;

        if (l4_off + 8 + sizeof(*ip) + 4 > ip_end)
            return L4_R_PASS_ICMP;
        if ((void *)(ip + 1) + 4 > data_end)
            return L4_R_PASS_ICMP;
        if (*(__u8 *)ip != 0x45) /* IPv4, no options */
            return L4_R_PASS_ICMP;
        proto = ip->protocol;
        ports = (void *)(ip + 1);
        /* The error must be addressed to the quoted packet's source: a
         * router sends it there. Anything else is not about our flow. */
        if (ip->saddr != p->key.dst[3])
            return L4_R_PASS_ICMP;
        v4_mapped(p->key.src, ip->daddr);
        v4_mapped(p->key.dst, ip->saddr);
    } else {
        struct ipv6hdr *ip6 = inner;

        if (l4_off + 8 + sizeof(*ip6) + 4 > ip_end)
            return L4_R_PASS_ICMP;
        if ((void *)(ip6 + 1) + 4 > data_end)
            return L4_R_PASS_ICMP;
        if ((*(__u8 *)ip6 >> 4) != 6)
            return L4_R_PASS_ICMP;
        proto = ip6->nexthdr;
        ports = (void *)(ip6 + 1);
        if (!addr6_eq(ip6->saddr.in6_u.u6_addr32, p->key.dst))
            return L4_R_PASS_ICMP;
        __builtin_memcpy(p->key.src, &ip6->daddr, 16);
        __builtin_memcpy(p->key.dst, &ip6->saddr, 16);
    }
    if (proto != PROTO_TCP && proto != PROTO_UDP)
        return L4_R_PASS_ICMP;
    p->key.proto = proto;
    p->key.sport = ports[1];
    p->key.dport = ports[0];
    return 0;
}

/* ---- packet too big (TUN): the error the forwarder writes ---- */

/* How much of the offending packet an error quotes: IPv4, as much as keeps
 * the whole error within 576 bytes (RFC 1812 4.3.2.3; RFC 792's minimum is
 * the IP header + 8 bytes); IPv6, as much as keeps it within the minimum
 * MTU of 1280 (RFC 4443 2.4 (c)). */
#define PTB_QUOTE4 (576 - 20 - 8)
#define PTB_QUOTE6 (1280 - 40 - 8)
#define PTB_WORDS_MAX ((8 + PTB_QUOTE6) / 4)
#define IPV6_MIN_MTU 1280
#define IPV4_MIN_MTU 68

/* A TUN packet that would exceed l4_config.tun_mtu once encapsulated
 * (`overhead` bytes): answer the client so that it lowers its path MTU,
 * instead of dropping the packet in silence. The packet becomes the error
 * in place: the frame grows at the front by the new IP and ICMP headers,
 * the original IP packet stays where it is as the quote and is cut at the
 * back to the quote's length (Ethernet padding goes with it); MACs are
 * swapped and the VLAN tag kept. The error comes from the VIP. IPv4
 * without DF is still dropped: the sender allows fragmentation, which XDP
 * cannot do, and a frag-needed would be wrong. Returns L4_R_ICMP_PTB_SENT,
 * or a drop reason. A subprogram: the checksum loop stays out of the
 * forwarding path's code. */
static __noinline int tun_ptb(struct xdp_md *ctx, const struct pkt *p, const struct l4_cfg *cfg, __u32 overhead)
{
    void *data = (void *)(long)ctx->data;
    void *data_end = (void *)(long)ctx->data_end;
    __u32 l3_off = p->l3_off, iphl = p->v6 ? sizeof(struct ipv6hdr) : sizeof(struct iphdr);
    __u32 grow = iphl + 8, cap = p->v6 ? PTB_QUOTE6 : PTB_QUOTE4, quote, mtu, msg_len, icmp_off, off;
    __u32 frame_len, want, nw, i;
    __be16 eproto = bpf_htons(p->v6 ? ETH_P_IPV6 : ETH_P_IP);
    struct ethhdr *eth = data;
    __u8 smac[6], dmac[6], *ic;
    __u64 sum = 0;

    if (l3_off > L3_OFF_MAX)
        return L4_R_DROP_TRUNCATED;
    if ((void *)(eth + 1) > data_end)
        return L4_R_DROP_TRUNCATED;
    if (!p->v6) {
        struct iphdr *ip = data + l3_off;

        if ((void *)(ip + 1) > data_end)
            return L4_R_DROP_TRUNCATED;
        if (!(ip->frag_off & bpf_htons(IP_DF)))
            return L4_R_DROP_TOO_BIG;
        mtu = cfg->tun_mtu > overhead + IPV4_MIN_MTU ? cfg->tun_mtu - overhead : IPV4_MIN_MTU;
    } else {
        /* Below 1280 an IPv6 node need not go (RFC 8200 5); with a tunnel
         * MTU that small, packets of 1280 still do not fit. */
        mtu = cfg->tun_mtu > overhead + IPV6_MIN_MTU ? cfg->tun_mtu - overhead : IPV6_MIN_MTU;
    }
    __builtin_memcpy(dmac, eth->h_source, 6);
    __builtin_memcpy(smac, eth->h_dest, 6);
    quote = p->ip_len < cap ? p->ip_len : cap;
    msg_len = 8 + quote;
    /* The frame once grown, and what it must shrink to. */
    frame_len = (__u32)(data_end - data) + grow;
    want = l3_off + grow + quote;
    if (want > frame_len)
        return L4_R_DROP_TRUNCATED; /* (cannot happen: the quote is in the frame) */

    /* (One reload of data/data_end after both adjustments: reloading in
     * between lets clang merge the loads into a form the verifier
     * refuses.) */
    if (bpf_xdp_adjust_head(ctx, -(int)grow))
        return L4_R_DROP_NO_ROOM;
    if (bpf_xdp_adjust_tail(ctx, -(int)(frame_len - want)))
        return L4_R_DROP_NO_ROOM;
    data = (void *)(long)ctx->data;
    data_end = (void *)(long)ctx->data_end;

    eth = data;
    if ((void *)(eth + 1) > data_end)
        return L4_R_DROP_NO_ROOM;
    __builtin_memcpy(eth->h_dest, dmac, 6);
    __builtin_memcpy(eth->h_source, smac, 6);
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

    icmp_off = l3_off + iphl;
    if (icmp_off > L3_OFF_MAX + 40)
        return L4_R_DROP_NO_ROOM;
    ic = data + icmp_off;
    if ((void *)(ic + 8) > data_end)
        return L4_R_DROP_NO_ROOM;
    if (!p->v6) {
        struct iphdr *ip = data + l3_off;
        struct iphdr h = {};

        if ((void *)(ip + 1) > data_end)
            return L4_R_DROP_NO_ROOM;
        *(__u8 *)&h = 0x45;
        h.tos = 0xc0; /* internetwork control, as RFC 1812 4.3.2.5 asks of errors */
        h.tot_len = bpf_htons(sizeof(h) + msg_len);
        h.frag_off = bpf_htons(IP_DF); /* ID 0: an atomic datagram (RFC 6864) */
        h.ttl = L4_ECHO_TTL;
        h.protocol = PROTO_ICMP;
        h.saddr = p->key.dst[3];
        h.daddr = p->key.src[3];
        h.check = ip4_hdr_csum(&h);
        *ip = h;
        ic[0] = ICMP_DEST_UNREACH;
        ic[1] = ICMP_FRAG_NEEDED;
        *(__u16 *)(ic + 2) = 0;
        *(__u16 *)(ic + 4) = 0;  /* unused */
        *(__be16 *)(ic + 6) = bpf_htons(mtu); /* next-hop MTU (RFC 1191) */
    } else {
        struct ipv6hdr *ip6 = data + l3_off;
        struct ipv6hdr h = {};

        if ((void *)(ip6 + 1) > data_end)
            return L4_R_DROP_NO_ROOM;
        *(__be32 *)&h = bpf_htonl(6u << 28);
        h.payload_len = bpf_htons(msg_len);
        h.nexthdr = PROTO_ICMPV6;
        h.hop_limit = L4_ECHO_TTL;
        __builtin_memcpy(&h.saddr, p->key.dst, 16);
        __builtin_memcpy(&h.daddr, p->key.src, 16);
        *ip6 = h;
        ic[0] = ICMPV6_PKT_TOOBIG;
        ic[1] = 0;
        *(__u16 *)(ic + 2) = 0;
        *(__be32 *)(ic + 4) = bpf_htonl(mtu);
        /* The pseudo-header: addresses, upper-layer length, next header. */
#pragma unroll
        for (i = 0; i < 4; i++)
            sum += (__u64)p->key.src[i] + p->key.dst[i];
        sum += bpf_htonl(msg_len);
        sum += bpf_htonl(PROTO_ICMPV6);
    }

    /* The message, from scratch: 32-bit native words summed into 64 bits
     * and folded (RFC 1071's deferred carries), then the 0..3 odd bytes. */
    nw = msg_len / 4;
    for (i = 0; i < PTB_WORDS_MAX; i++) {
        __u32 *w;

        if (i >= nw)
            break;
        w = data + icmp_off + i * 4;
        if ((void *)(w + 1) > data_end)
            return L4_R_DROP_NO_ROOM;
        sum += *w;
    }
    off = icmp_off + nw * 4;
    if (off > L3_OFF_MAX + 40 + 8 + PTB_QUOTE6)
        return L4_R_DROP_NO_ROOM;
    if (msg_len & 2) {
        __u16 *t = data + off;

        if ((void *)(t + 1) > data_end)
            return L4_R_DROP_NO_ROOM;
        sum += *t;
        off += 2;
    }
    if (msg_len & 1) {
        __u8 *t = data + off;
        __u16 last = 0;

        if ((void *)(t + 1) > data_end)
            return L4_R_DROP_NO_ROOM;
        *(__u8 *)&last = *t; /* the odd byte, padded with a zero byte */
        sum += last;
    }
    *(__u16 *)(ic + 2) = csum_fold(fold64(sum));
    return L4_R_ICMP_PTB_SENT;
}

/* ---- errors about NAT and FullNAT flows ---- */

/* ICMP frag-needed / packet-too-big from the client side about a NAT or
 * FullNAT flow: a router between us and the client could not take a reply
 * we sent (VIP:vport -> client:cport). It belongs to the real, which must
 * lower its PMTU, so it goes there looking as if it were about the packet
 * the real sent:
 *   inner  src VIP:vport     -> real:rport
 *          dst client:cport  -> NAT: unchanged; FullNAT: local:lport
 *   outer  dst VIP           -> the real
 *          src               -> NAT: unchanged (the router; the real routes
 *                               client-side addresses through us anyway);
 *                               FullNAT: the local address, since a FullNAT
 *                               real needs no route to client-side networks
 *                               and reverse-path filtering would drop it.
 * p->key holds the flow as the client sends it (icmp_inner_flow). The flow
 * is found as the client's packets find it (its IN entry) and must be
 * confirmed by its reply-side entry, as on the forward path; nothing is
 * created or refreshed. Checksums are patched incrementally: the quoted
 * IPv4 header's, the quoted TCP/UDP checksum when the quote holds it, the
 * ICMP checksum over every word changed in the message (and, for ICMPv6,
 * the pseudo-header's addresses), and the outer IPv4 header's. A subprogram
 * (own stack frame), like nat_in(). */
static __noinline int nat_icmp_err(struct xdp_md *ctx, struct pkt *p, const struct l4_vip_meta *vip,
                                   const struct l4_cfg *cfg, __u64 bytes)
{
    void *data = (void *)(long)ctx->data;
    void *data_end = (void *)(long)ctx->data_end;
    __u32 l3_off = p->l3_off, l4_off = p->l4_off, ip_end = p->l3_off + p->ip_len;
    __u32 il3_off, il4_off, sum_off, zero = 0, acc_l4 = 0, acc_icmp = 0, i;
    bool full = vip->mode == L4_MODE_FULLNAT, tcp = p->key.proto == PROTO_TCP, has_sum;
    struct nat_scratch *sc;
    struct l4_nat *e, *o, *in;
    struct l4_nat_key *ik, *ok;
    struct l4_real *r;
    __u16 *icmp, *ports, *l4sum, old;

    sc = bpf_map_lookup_elem(&scratch, &zero);
    if (!sc)
        return finish(L4_R_DROP_NO_ROOM, bytes);
    in = &sc->in;
    ik = &sc->ik;
    ok = &sc->ok;
    __builtin_memset(ik, 0, sizeof(*ik));
    __builtin_memset(ok, 0, sizeof(*ok));
    __builtin_memcpy(ik->src, p->key.src, 16);
    __builtin_memcpy(ik->dst, p->key.dst, 16);
    ik->sport = p->key.sport;
    ik->dport = p->key.dport;
    ik->proto = p->key.proto;
    ik->dir = L4_NAT_IN;
    e = bpf_map_lookup_elem(&nat, ik);
    if (!e)
        return finish(L4_R_PASS_ICMP, bytes); /* no state: cannot route it */
    *in = *e;
    nat_out_key(in, p->key.proto, ok);
    o = bpf_map_lookup_elem(&nat, ok);
    if (!o || !nat_out_is(o, &p->key))
        return finish(L4_R_PASS_ICMP, bytes); /* stale: not this flow's */
    r = active_real(in->real);
    if (!r)
        return finish(L4_R_DROP_NO_REAL, bytes);

    /* Bounds first: nothing is written unless all of it can be. */
    if (l3_off > L3_OFF_MAX || l4_off > L4_OFF_MAX)
        return finish(L4_R_DROP_TRUNCATED, bytes);
    il3_off = l4_off + 8;
    il4_off = il3_off + (p->v6 ? sizeof(struct ipv6hdr) : sizeof(struct iphdr));
    icmp = data + l4_off;
    ports = data + il4_off;
    if ((void *)(icmp + 4) > data_end || (void *)(ports + 2) > data_end)
        return finish(L4_R_DROP_TRUNCATED, bytes);
    /* The quoted L4 checksum only if the quote (inside the outer IP
     * length) reaches it: an IPv4 error may quote only 8 bytes of L4. */
    sum_off = il4_off + (tcp ? 16 : 6);
    has_sum = sum_off + 2 <= ip_end;

    if (!p->v6) {
        struct iphdr *oip = data + l3_off, *iip = data + il3_off;
        __u32 acc_ip = 0;

        if ((void *)(oip + 1) > data_end || (void *)(iip + 1) > data_end)
            return finish(L4_R_DROP_TRUNCATED, bytes);
        acc_ip = csum_acc32(acc_ip, iip->saddr, in->daddr[3]);
        acc_ip = csum_acc32(acc_ip, iip->daddr, in->saddr[3]);
        acc_l4 = acc_ip; /* the quoted L4 checksum's pseudo-header */
        acc_icmp = acc_ip;
        old = iip->check;
        csum_apply(&iip->check, acc_ip);
        acc_icmp = csum_acc16(acc_icmp, old, iip->check);
        iip->saddr = in->daddr[3];
        iip->daddr = in->saddr[3];

        acc_ip = csum_acc32(0, oip->daddr, in->daddr[3]);
        oip->daddr = in->daddr[3];
        if (full) {
            acc_ip = csum_acc32(acc_ip, oip->saddr, in->saddr[3]);
            oip->saddr = in->saddr[3];
        }
        csum_apply(&oip->check, acc_ip);
    } else {
        struct ipv6hdr *oip = data + l3_off, *iip = data + il3_off;

        if ((void *)(oip + 1) > data_end || (void *)(iip + 1) > data_end)
            return finish(L4_R_DROP_TRUNCATED, bytes);
#pragma unroll
        for (i = 0; i < 4; i++) {
            acc_l4 = csum_acc32(acc_l4, iip->saddr.in6_u.u6_addr32[i], in->daddr[i]);
            acc_l4 = csum_acc32(acc_l4, iip->daddr.in6_u.u6_addr32[i], in->saddr[i]);
            /* ICMPv6 sums the outer addresses in its pseudo-header. */
            acc_icmp = csum_acc32(acc_icmp, oip->daddr.in6_u.u6_addr32[i], in->daddr[i]);
            if (full)
                acc_icmp = csum_acc32(acc_icmp, oip->saddr.in6_u.u6_addr32[i], in->saddr[i]);
        }
        acc_icmp += acc_l4; /* the quoted addresses are ICMPv6 data too */
        __builtin_memcpy(&iip->saddr, in->daddr, 16);
        __builtin_memcpy(&iip->daddr, in->saddr, 16);
        __builtin_memcpy(&oip->daddr, in->daddr, 16);
        if (full)
            __builtin_memcpy(&oip->saddr, in->saddr, 16);
    }

    /* Quoted ports: the source was vport, the destination cport. */
    old = ports[0];
    ports[0] = in->dport;
    acc_l4 = csum_acc16(acc_l4, old, ports[0]);
    acc_icmp = csum_acc16(acc_icmp, old, ports[0]);
    old = ports[1];
    ports[1] = in->sport;
    acc_l4 = csum_acc16(acc_l4, old, ports[1]);
    acc_icmp = csum_acc16(acc_icmp, old, ports[1]);

    /* (The second test always holds; it bounds sum_off for the verifier:
     * ICMP header, quoted IPv6 header, TCP checksum offset.) */
    if (has_sum && sum_off <= L4_OFF_MAX + 8 + 40 + 16) {
        l4sum = data + sum_off;
        if ((void *)(l4sum + 1) > data_end)
            return finish(L4_R_DROP_TRUNCATED, bytes);
        old = *l4sum;
        /* IPv4 UDP without a checksum stays without; a computed 0 is sent
         * as 0xffff, as nat_rewrite() does. */
        if (tcp || old) {
            csum_apply(l4sum, acc_l4);
            if (!tcp && !*l4sum)
                *l4sum = 0xffff;
        }
        acc_icmp = csum_acc16(acc_icmp, old, *l4sum);
    }
    csum_apply(&icmp[1], acc_icmp);

    if (nat_tx(ctx, r->mac, cfg))
        return finish(L4_R_DROP_NO_ROOM, bytes);
    count_in(&reasons, full ? L4_R_FWD_FULLNAT : L4_R_FWD_NAT, bytes);
    count_in(&reasons, L4_R_ICMP_ERR_ROUTED, bytes);
    count_in(&vip_stats, vip->svc, bytes);
    count_in(&real_stats, in->real, bytes);
    return tx_verdict(cfg);
}

#endif
