/* NAT and FullNAT: translation state in the shared LRU `nat` (struct
 * l4_nat, two entries a flow), DNAT (+ SNAT to a local address and port
 * from the service's pool, FullNAT) on the way in (nat_in()), the reverse
 * for replies (nat_out()), with the IPv4 header and TCP/UDP checksums
 * patched incrementally; and the TOA option with the client's address
 * added to FullNAT SYNs (toa_insert()). The ICMP errors about NAT flows
 * are in icmp.h.
 *
 * nat_in() and nat_out() end the packet (count it, return its verdict).
 * Assumes maps.h, counters.h, parse.h, csum.h, select.h, consts.h,
 * forwarder_abi.h and toa_abi.h (the option's format).
 */
#ifndef SLUICE_L4_BPF_NAT_H
#define SLUICE_L4_BPF_NAT_H

/* ---- state ---- */

static __always_inline __u32 nat_timeout(const struct l4_cfg *cfg, __u8 proto, __u8 state)
{
    __u32 t;

    if (proto == PROTO_TCP && (state & L4_NAT_S_CLOSING))
        t = cfg->nat_fin_timeout ? cfg->nat_fin_timeout : L4_NAT_FIN_TIMEOUT;
    else if (proto == PROTO_TCP)
        t = cfg->nat_tcp_timeout ? cfg->nat_tcp_timeout : L4_NAT_TCP_TIMEOUT;
    else
        t = cfg->nat_udp_timeout ? cfg->nat_udp_timeout : L4_NAT_UDP_TIMEOUT;
    return t;
}

/* Idle past its timeout. Another CPU may have stored a later time than our
 * `now`: that is fresh, not a wrap-around. */
static __always_inline bool nat_expired(const struct l4_nat *e, const struct l4_cfg *cfg, __u8 proto, __u64 now)
{
    return now > e->last_seen &&
           now - e->last_seen > (__u64)nat_timeout(cfg, proto, e->state) * NSEC_PER_SEC;
}

/* Note activity on an OUT entry: the flow's clock and its TCP state live
 * there (it is the entry that holds a FullNAT port). Writes are skipped
 * unless something changes or a second has passed, because the entry's
 * cache line is shared by the CPUs of both directions. */
static __always_inline void nat_touch(struct l4_nat *e, const struct pkt *p, __u64 now)
{
    __u8 st = e->state;

    if (p->key.proto == PROTO_TCP) {
        if (p->tcp_flags & (TCP_FIN | TCP_RST))
            st |= L4_NAT_S_CLOSING;
        else if ((p->tcp_flags & (TCP_SYN | TCP_ACK)) == TCP_SYN)
            st &= ~L4_NAT_S_CLOSING; /* the client reuses its tuple */
    }
    if (st != e->state)
        e->state = st;
    if (now > e->last_seen && now - e->last_seen >= NSEC_PER_SEC)
        e->last_seen = now;
}

/* The reply-side key of a flow from its IN value: NAT, the real's packet
 * as it comes back (the translated packet reversed); FullNAT, only its
 * destination, the local address and port, which that key claims. */
static __always_inline void nat_out_key(const struct l4_nat *in, __u8 proto, struct l4_nat_key *ok)
{
    if (in->mode == L4_MODE_FULLNAT) {
        __builtin_memset(ok->src, 0, 16);
        ok->sport = 0;
        ok->dir = L4_NAT_LOCAL;
    } else {
        __builtin_memcpy(ok->src, in->daddr, 16);
        ok->sport = in->dport;
        ok->dir = L4_NAT_OUT;
    }
    __builtin_memcpy(ok->dst, in->saddr, 16);
    ok->dport = in->sport;
    ok->proto = proto;
}

/* Does an OUT entry translate back to this client flow? */
static __always_inline bool nat_out_is(const struct l4_nat *o, const struct l4_flow_key *k)
{
    return addr6_eq(o->daddr, k->src) && addr6_eq(o->saddr, k->dst) && o->dport == k->sport &&
           o->sport == k->dport;
}

/* l4.sync: tell user space about a new flow (its IN key; forwarder_abi.h).
 * No wake-up: user space drains the ring on a timer. */
static __always_inline void sync_announce(const struct l4_nat_key *ik)
{
    if (bpf_ringbuf_output(&sync_events, (void *)ik, sizeof(struct l4_sync_event), BPF_RB_NO_WAKEUP))
        count_in(&reasons, L4_R_SYNC_LOST, 0);
    else
        count_in(&reasons, L4_R_SYNC_EVENT, 0);
}

/* ---- rewriting ---- */

/* Rewrite the packet's addresses and ports to v's, with the IPv4 header
 * and TCP/UDP checksums patched incrementally (the L4 checksum covers the
 * addresses through the pseudo-header). An IPv4 UDP checksum of 0 means
 * "none" and stays 0; a computed 0 is sent as 0xffff, its equal. */
static __always_inline int nat_rewrite(void *data, void *data_end, const struct pkt *p, const struct l4_nat *v)
{
    __u32 l3_off = p->l3_off, l4_off = p->l4_off, acc = 0, i;
    bool tcp = p->key.proto == PROTO_TCP;
    struct tcphdr *th;
    struct udphdr *uh;
    __u16 *ports;

    /* Bounds first, so that nothing is written unless all of it can be:
     * the IP header lies before the L4 header, so once the L4 header is
     * inside the frame the checks further down cannot fail (parse() has
     * checked all of this; the verifier needs to see it here). */
    if (l3_off > L3_OFF_MAX || l4_off > L4_OFF_MAX)
        return L4_R_DROP_TRUNCATED;
    th = data + l4_off;
    uh = data + l4_off;
    if ((void *)(uh + 1) > data_end || (tcp && (void *)(th + 1) > data_end))
        return L4_R_DROP_TRUNCATED;
    ports = (__u16 *)uh;

    if (!p->v6) {
        struct iphdr *ip = data + l3_off;

        if ((void *)(ip + 1) > data_end)
            return L4_R_DROP_TRUNCATED;
        acc = csum_acc32(acc, ip->saddr, v->saddr[3]);
        acc = csum_acc32(acc, ip->daddr, v->daddr[3]);
        /* The IPv4 header sums the same two addresses. */
        csum_apply(&ip->check, acc);
        ip->saddr = v->saddr[3];
        ip->daddr = v->daddr[3];
    } else {
        struct ipv6hdr *ip6 = data + l3_off;

        if ((void *)(ip6 + 1) > data_end)
            return L4_R_DROP_TRUNCATED;
#pragma unroll
        for (i = 0; i < 4; i++) {
            acc = csum_acc32(acc, ip6->saddr.in6_u.u6_addr32[i], v->saddr[i]);
            acc = csum_acc32(acc, ip6->daddr.in6_u.u6_addr32[i], v->daddr[i]);
        }
        __builtin_memcpy(&ip6->saddr, v->saddr, 16);
        __builtin_memcpy(&ip6->daddr, v->daddr, 16);
    }
    acc = csum_acc16(acc, ports[0], v->sport);
    acc = csum_acc16(acc, ports[1], v->dport);
    ports[0] = v->sport;
    ports[1] = v->dport;

    if (tcp) {
        if ((void *)(th + 1) > data_end) /* (checked above; for the verifier) */
            return L4_R_DROP_TRUNCATED;
        csum_apply(&th->check, acc);
    } else if (uh->check) { /* IPv4 UDP without a checksum stays without */
        csum_apply(&uh->check, acc);
        if (!uh->check)
            uh->check = 0xffff;
    }
    return 0;
}

/* A translated packet's Ethernet header: to `dmac` (the real, or the next
 * hop towards the client), from our MAC. 0, or -1 if the frame is short. */
static __always_inline int nat_tx(struct xdp_md *ctx, const __u8 *dmac, const struct l4_cfg *cfg)
{
    void *data = (void *)(long)ctx->data;
    void *data_end = (void *)(long)ctx->data_end;
    struct ethhdr *eth = data;

    if ((void *)(eth + 1) > data_end)
        return -1;
    __builtin_memcpy(eth->h_dest, dmac, 6);
    __builtin_memcpy(eth->h_source, cfg->src_mac, 6);
    return 0;
}

/* ---- the TOA option (FullNAT SYNs; format in toa_abi.h) ---- */

/* TOA: insert the client's address and port as a TCP option at the end of
 * the SYN's TCP header. The headers (L2 up to the end of the TCP options,
 * at most 18 + 40 + 60 bytes) are copied out, the frame grows at the front
 * by the option's length, the headers go back in at the new start and the
 * option fills the gap between them and the payload. Only header bytes
 * move, never the payload. Returns 0 (added or skipped: the event says
 * which) or a drop reason if the frame broke half-way (cannot happen with
 * the lengths checked here, but the verifier does not know). */
struct toa_opt {
    __u8 kind;
    __u8 len;
    __be16 port;
    __be32 addr[4];
};

static __always_inline int toa_insert(struct xdp_md *ctx, const struct pkt *p, struct nat_scratch *sc)
{
    __u32 l3_off = p->l3_off, l4_off = p->l4_off, doff = p->tcp_doff;
    __u32 olen = p->v6 ? L4_TOA_LEN_V6 : L4_TOA_LEN_V4, hdr, acc = 0, i;
    struct toa_opt opt = {};
    void *data, *data_end;
    __u16 *ow, *th, old;

    if (l3_off > L3_OFF_MAX || l4_off > L4_OFF_MAX || doff < 20 || doff > 60)
        return L4_R_DROP_TRUNCATED;
    /* TCP options are limited to 40 bytes (data offset 15). */
    if (doff + olen > 60) {
        count_in(&reasons, L4_R_TOA_NO_ROOM, 0);
        return 0;
    }
    hdr = l4_off + doff;
    if (hdr > TOA_HDR_MAX || hdr < 54)
        return L4_R_DROP_TRUNCATED;
    if (bpf_xdp_load_bytes(ctx, 0, sc->buf, hdr))
        return L4_R_DROP_TRUNCATED;
    if (bpf_xdp_adjust_head(ctx, -(int)olen)) {
        count_in(&reasons, L4_R_TOA_NO_ROOM, 0); /* no headroom: unchanged */
        return 0;
    }
    if (bpf_xdp_store_bytes(ctx, 0, sc->buf, hdr))
        return L4_R_DROP_NO_ROOM;

    opt.kind = L4_TOA_KIND;
    opt.len = olen;
    opt.port = p->key.sport;
    if (p->v6)
        __builtin_memcpy(opt.addr, p->key.src, 16);
    else
        opt.addr[0] = p->key.src[3];
    if (bpf_xdp_store_bytes(ctx, hdr, &opt, olen))
        return L4_R_DROP_NO_ROOM;

    /* The option's words enter the TCP checksum as new data. */
    ow = (__u16 *)&opt;
#pragma unroll
    for (i = 0; i < L4_TOA_LEN_V6 / 2; i++)
        if (i < olen / 2)
            acc += ow[i];

    data = (void *)(long)ctx->data;
    data_end = (void *)(long)ctx->data_end;
    th = data + l4_off;
    if ((void *)(th + 10) > data_end)
        return L4_R_DROP_NO_ROOM;
    /* Data offset shares a word with the flags. */
    old = th[6];
    ((__u8 *)th)[12] = (__u8)(((doff + olen) / 4) << 4) | (((__u8 *)th)[12] & 0x0f);
    acc = csum_acc16(acc, old, th[6]);
    /* The pseudo-header's TCP length grows by olen. */
    acc = csum_acc16(acc, bpf_htons(p->ip_len - (l4_off - l3_off)),
                     bpf_htons(p->ip_len - (l4_off - l3_off) + olen));
    if (!p->v6) {
        struct iphdr *ip = data + l3_off;

        if ((void *)(ip + 1) > data_end)
            return L4_R_DROP_NO_ROOM;
        old = ip->tot_len;
        ip->tot_len = bpf_htons(p->ip_len + olen);
        csum_replace16(&ip->check, old, ip->tot_len);
    } else {
        struct ipv6hdr *ip6 = data + l3_off;

        if ((void *)(ip6 + 1) > data_end)
            return L4_R_DROP_NO_ROOM;
        ip6->payload_len = bpf_htons(p->ip_len - sizeof(*ip6) + olen);
    }
    csum_apply(&th[8], acc);
    count_in(&reasons, L4_R_TOA_ADDED, 0);
    return 0;
}

/* ---- both directions ---- */

/* FullNAT: pick a free local address and port and claim it by inserting
 * the flow's OUT entry with BPF_NOEXIST, which is atomic against another
 * CPU claiming the same one. Candidates come from the flow hash (the same
 * flow asks for the same port first, so a retransmitted SYN whose entries
 * were lost asks again for the same one) and a hash-derived odd stride; an
 * OUT entry found idle past its timeout is deleted and its port taken.
 * Fills in->saddr/sport. Returns 0 or a drop reason. */
static __always_inline int nat_alloc(const struct pkt *p, const struct l4_vip_meta *vip, const struct l4_cfg *cfg,
                                     __u32 h, __u64 now, struct nat_scratch *sc)
{
    struct l4_nat *in = &sc->in, *out = &sc->out;
    struct l4_nat_key *ok = &sc->ok;
    __u32 svc = vip->svc, pmin, pmax, range, naddrs, n, stride, c, i;
    struct l4_nat_pool *pool = bpf_map_lookup_elem(&nat_pools, &svc);

    if (!pool || !pool->naddrs)
        return L4_R_DROP_NAT_NO_PORT;
    naddrs = pool->naddrs > L4_POOL_ADDRS ? L4_POOL_ADDRS : pool->naddrs;
    pmin = pool->port_min ? pool->port_min : 1024;
    pmax = pool->port_max ? pool->port_max : 65535;
    if (pmax < pmin)
        return L4_R_DROP_NAT_NO_PORT;
    range = pmax - pmin + 1;
    n = range * naddrs; /* <= 65536 * 8: no overflow */
    stride = (l4_hash_final(h) % n) | 1;

    for (i = 0; i < L4_NAT_PORT_TRIES; i++) {
        struct l4_nat *old;
        __u32 a;

        c = (h + i * stride) % n;
        a = c / range;
        if (a >= L4_POOL_ADDRS)
            break;
        /* The pool must be of the flow's family. */
        if (is_v4_mapped(pool->addr[a]) == (bool)p->v6)
            return L4_R_DROP_NAT_NO_PORT;
        __builtin_memcpy(in->saddr, pool->addr[a], 16);
        in->sport = bpf_htons(pmin + c % range);
        nat_out_key(in, p->key.proto, ok);
        if (!bpf_map_update_elem(&nat, ok, out, BPF_NOEXIST))
            return 0;
        old = bpf_map_lookup_elem(&nat, ok);
        if (old && nat_expired(old, cfg, p->key.proto, now)) {
            bpf_map_delete_elem(&nat, ok);
            if (!bpf_map_update_elem(&nat, ok, out, BPF_NOEXIST))
                return 0;
        }
    }
    return L4_R_DROP_NAT_NO_PORT;
}

/* Client -> VIP of a NAT or FullNAT service. A subprogram (not inlined):
 * its stack frame is separate from the DR/TUN path's. */
static __noinline int nat_in(struct xdp_md *ctx, struct pkt *p, const struct l4_vip_meta *vip,
                             const struct l4_cfg *cfg, __u64 bytes)
{
    void *data = (void *)(long)ctx->data;
    void *data_end = (void *)(long)ctx->data_end;
    struct l4_nat *e, *o, *in, *out;
    struct l4_nat_key *ik, *ok;
    struct nat_scratch *sc;
    struct l4_real *r = NULL;
    struct ethhdr *eth = data;
    __u64 now = bpf_ktime_get_coarse_ns();
    __u32 idx = 0, h, zero = 0;
    bool full = vip->mode == L4_MODE_FULLNAT;
    int rc;

    if ((void *)(eth + 1) > data_end)
        return finish(L4_R_DROP_TRUNCATED, bytes);
    if (p->v6 && p->key.proto == PROTO_UDP) {
        struct udphdr *uh;
        __u32 l4_off = p->l4_off;

        if (l4_off > L4_OFF_MAX)
            return finish(L4_R_DROP_TRUNCATED, bytes);
        uh = data + l4_off;
        if ((void *)(uh + 1) > data_end)
            return finish(L4_R_DROP_TRUNCATED, bytes);
        /* Invalid in IPv6 (RFC 8200 8.1), and there is nothing to
         * update incrementally. */
        if (!uh->check)
            return finish(L4_R_DROP_BAD_CSUM, bytes);
    }
    sc = bpf_map_lookup_elem(&scratch, &zero);
    if (!sc)
        return finish(L4_R_DROP_NO_ROOM, bytes);
    in = &sc->in;
    out = &sc->out;
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
    if (e) {
        /* A hit is only good while its OUT entry still translates back to
         * this flow and is not idle past its timeout: the OUT entry may
         * have been evicted (its port handed to another flow since), and
         * it is the one that carries the flow's clock. */
        *in = *e;
        nat_out_key(in, p->key.proto, ok);
        o = bpf_map_lookup_elem(&nat, ok);
        r = active_real(in->real);
        if (o && nat_out_is(o, &p->key)) {
            if (r && !nat_expired(o, cfg, p->key.proto, now)) {
                nat_touch(o, p, now);
                count_in(&reasons, L4_R_CT_HIT, 0);
                idx = in->real;
                goto xlate;
            }
            /* Ours but dead: free its port now rather than at expiry. */
            bpf_map_delete_elem(&nat, ok);
        }
        count_in(&reasons, L4_R_NAT_STALE, 0);
    }
    count_in(&reasons, L4_R_CT_MISS, 0);
    /* In a sync group, a mid-flow packet with no entry at all is a flow
     * another node holds whose entry has not reached us yet (routers moved
     * it here first). A new entry would pick a real (FullNAT: a new local
     * port) that resets the flow, and its sync event would then overwrite
     * the live entry on every node. Dropped, the client retransmits, and by
     * then the entry is usually here. A stale entry (above) is different:
     * that flow is over, and a new one lets the real answer it at once. */
    if (!e && (cfg->flags & L4_CFG_F_SYNC) && p->key.proto == PROTO_TCP &&
        (p->tcp_flags & (TCP_SYN | TCP_ACK)) != TCP_SYN)
        return finish(L4_R_DROP_NAT_NO_FLOW, bytes);

    h = l4_flow_hash(&p->key, flow_seed);
    if (vip->table >= maglev_tables)
        return finish(L4_R_DROP_NO_REAL, bytes);
    /* Without state no reply can be translated: over the cap, drop. (The
     * guard is asked before the scheduler, so a dropped flow does not move
     * an rr cursor.) */
    if (!flood_allow(cfg)) {
        count_in(&reasons, L4_R_CT_GUARD_SKIP, 0);
        return finish(L4_R_DROP_NAT_GUARD, bytes);
    }
    idx = sched_pick(p, vip, h, true);
    r = active_real(idx);
    /* No family translation: the real must be of the client's family. */
    if (!r || (bool)(r->flags & L4_REAL_F_V6) != (bool)p->v6)
        return finish(L4_R_DROP_NO_REAL, bytes);

    /* The IN value: what the client's packets become. */
    __builtin_memset(in, 0, sizeof(*in));
    __builtin_memset(out, 0, sizeof(*out));
    __builtin_memcpy(in->saddr, p->key.src, 16);
    in->sport = p->key.sport;
    __builtin_memcpy(in->daddr, r->addr, 16);
    in->dport = r->port ? r->port : p->key.dport;
    in->mode = vip->mode; /* before nat_out_key() */
    in->real = idx;
    in->svc = vip->svc;
    in->last_seen = now;
    /* The OUT value: what the real's replies become, and where they go:
     * back to the router the client's packet came from. */
    __builtin_memcpy(out->saddr, p->key.dst, 16);
    out->sport = p->key.dport;
    __builtin_memcpy(out->daddr, p->key.src, 16);
    out->dport = p->key.sport;
    __builtin_memcpy(out->mac, eth->h_source, 6);
    out->mode = vip->mode;
    out->real = idx;
    out->svc = vip->svc;
    out->ifindex = ctx->ingress_ifindex;
    out->last_seen = now;
    __builtin_memcpy(out->peer, in->daddr, 16);
    out->peer_port = in->dport;
    nat_touch(out, p, now);

    if (full) {
        rc = nat_alloc(p, vip, cfg, h, now, sc);
        if (rc)
            return finish(rc, bytes);
    } else {
        /* NAT: the OUT key is {real, client}; a second flow with the same
         * client tuple to the same real:port (only possible through two
         * VIPs) takes the key over, and the first one's next packet then
         * finds its entry stale. */
        nat_out_key(in, p->key.proto, ok);
        if (bpf_map_update_elem(&nat, ok, out, BPF_ANY))
            return finish(L4_R_DROP_NAT_NO_PORT, bytes);
    }
    bpf_map_update_elem(&nat, ik, in, BPF_ANY);
    if (cfg->flags & L4_CFG_F_SYNC)
        sync_announce(ik);

xlate:
    if (!r)
        return finish(L4_R_DROP_NO_REAL, bytes);
    rc = nat_rewrite(data, data_end, p, in);
    if (rc)
        return finish(rc, bytes);
    if (full && p->key.proto == PROTO_TCP && (p->tcp_flags & (TCP_SYN | TCP_ACK)) == TCP_SYN) {
        rc = toa_insert(ctx, p, sc);
        if (rc)
            return finish(rc, bytes);
    }
    if (nat_tx(ctx, r->mac, cfg))
        return finish(L4_R_DROP_NO_ROOM, bytes);
    count_in(&reasons, full ? L4_R_FWD_FULLNAT : L4_R_FWD_NAT, bytes);
    count_in(&vip_stats, vip->svc, bytes);
    count_in(&real_stats, idx, bytes);
    return tx_verdict(cfg);
}

/* Real -> client (NAT) or real -> local address (FullNAT): a packet that is
 * not to a VIP, looked up as a reply. Returns -1 when it is not one. */
static __noinline int nat_out(struct xdp_md *ctx, struct pkt *p, const struct l4_cfg *cfg, __u64 bytes)
{
    void *data = (void *)(long)ctx->data;
    void *data_end = (void *)(long)ctx->data_end;
    struct l4_nat_key ok = {};
    struct nat_scratch *sc;
    struct l4_nat *o, *v;
    __u32 zero = 0;
    __u64 now;
    int rc;

    __builtin_memcpy(ok.src, p->key.src, 16);
    __builtin_memcpy(ok.dst, p->key.dst, 16);
    ok.sport = p->key.sport;
    ok.dport = p->key.dport;
    ok.proto = p->key.proto;
    ok.dir = L4_NAT_OUT;
    o = bpf_map_lookup_elem(&nat, &ok);
    if (!o) {
        /* FullNAT: by the local address and port, from the right real. */
        __builtin_memset(ok.src, 0, 16);
        ok.sport = 0;
        ok.dir = L4_NAT_LOCAL;
        o = bpf_map_lookup_elem(&nat, &ok);
        if (!o || !addr6_eq(o->peer, p->key.src) || o->peer_port != p->key.sport)
            return -1;
    }
    if (p->v6 && p->key.proto == PROTO_UDP) {
        __u32 l4_off = p->l4_off;
        struct udphdr *uh;

        if (l4_off > L4_OFF_MAX)
            return finish(L4_R_DROP_TRUNCATED, bytes);
        uh = data + l4_off;
        if ((void *)(uh + 1) > data_end)
            return finish(L4_R_DROP_TRUNCATED, bytes);
        if (!uh->check)
            return finish(L4_R_DROP_BAD_CSUM, bytes);
    }
    /* An idle entry still translates correctly (nobody has taken its
     * key, or it would not be here); the reply revives it. */
    now = bpf_ktime_get_coarse_ns();
    nat_touch(o, p, now);
    /* A private copy: another CPU may rewrite the entry meanwhile. */
    sc = bpf_map_lookup_elem(&scratch, &zero);
    if (!sc)
        return finish(L4_R_DROP_NO_ROOM, bytes);
    v = &sc->out;
    *v = *o;
    rc = nat_rewrite(data, data_end, p, v);
    if (rc)
        return finish(rc, bytes);
    if (nat_tx(ctx, v->mac, cfg))
        return finish(L4_R_DROP_NO_ROOM, bytes);
    count_in(&reasons, L4_R_FWD_NAT_REPLY, bytes);
    count_in(&vip_stats, v->svc, bytes);
    count_in(&real_stats, v->real, bytes);
    /* Back out of the interface the client's packets came in on. */
    if (v->ifindex && v->ifindex != ctx->ingress_ifindex)
        return bpf_redirect(v->ifindex, 0);
    return XDP_TX;
}

#endif
