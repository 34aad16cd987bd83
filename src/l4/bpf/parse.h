/* Reading a frame: Ethernet [+ one 802.1Q/802.1ad tag] -> IPv4 (IHL 5,
 * unfragmented) or IPv6 (no extension headers) -> TCP/UDP ports, or an
 * ICMP header. parse() fills struct pkt, the offsets and the flow key every
 * later step works from, and says what the packet is: PARSE_L4,
 * PARSE_ICMP, or the pass or drop reason that ends it (non-IP, options,
 * fragments, other protocols pass; truncated or inconsistent headers are
 * dropped). Also the 16-byte address helpers (v4-mapped IPv4).
 *
 * Every header is bounds-checked against data_end before it is read; no
 * loops. Assumes vmlinux.h, bpf_endian.h, consts.h and forwarder_abi.h.
 */
#ifndef SLUICE_L4_BPF_PARSE_H
#define SLUICE_L4_BPF_PARSE_H

struct pkt {
    __u32 l3_off;       /* 14, or 18 behind one VLAN tag */
    __u32 l4_off;       /* l3_off + 20 or + 40 (no options, no ext headers) */
    __u32 ip_len;       /* IP total length (header + payload) */
    __be16 vlan_tpid;   /* 0 when untagged */
    __be16 vlan_tci;
    __u8 v6;
    __u8 tos;           /* IPv4 TOS / IPv6 traffic class: copied outward */
    __u8 tcp_flags;     /* TCP only: the flags byte (NAT state, TOA) */
    __u8 tcp_doff;      /* TCP only: header length in bytes, 20..60 */
    struct l4_flow_key key;
};

/* Offsets read back from struct pkt can reach the verifier as unbounded
 * scalars (narrow stack slots are not always tracked), and a packet pointer
 * plus an unbounded scalar cannot be range-checked. These re-bound them to
 * what parse() can produce before any pointer arithmetic. */
#define L3_OFF_MAX (14 + 4)
#define L4_OFF_MAX (L3_OFF_MAX + 40)

/* Internal parse results beyond enum l4_reason. */
#define PARSE_L4   (L4_R__COUNT + 1)  /* TCP or UDP: key is filled */
#define PARSE_ICMP (L4_R__COUNT + 2)  /* ICMP / ICMPv6 header present */

/* ---- addresses (16 bytes, IPv4 v4-mapped: forwarder_abi.h) ---- */

static __always_inline void v4_mapped(__be32 out[4], __be32 a)
{
    out[0] = 0;
    out[1] = 0;
    out[2] = bpf_htonl(0xffff);
    out[3] = a;
}

static __always_inline bool is_v4_mapped(const __be32 a[4])
{
    return a[0] == 0 && a[1] == 0 && a[2] == bpf_htonl(0xffff);
}

/* (No memcmp in BPF: clang leaves it as a call to an extern.) */
static __always_inline bool addr6_eq(const __be32 *a, const __be32 *b)
{
    return ((a[0] ^ b[0]) | (a[1] ^ b[1]) | (a[2] ^ b[2]) | (a[3] ^ b[3])) == 0;
}

/* ---- headers ---- */

static __always_inline int parse_ipv4(void *data, void *data_end, struct pkt *p)
{
    struct iphdr *ip = data + p->l3_off;
    __u64 frame = data_end - data;
    __u8 vihl;
    __u32 tot;

    if ((void *)(ip + 1) > data_end)
        return L4_R_DROP_TRUNCATED;
    vihl = *(__u8 *)ip;
    if ((vihl >> 4) != 4 || (vihl & 0xf) < 5)
        return L4_R_DROP_BAD_L3;
    tot = bpf_ntohs(ip->tot_len);
    if (tot < (__u32)(vihl & 0xf) * 4)
        return L4_R_DROP_BAD_L3;
    if (p->l3_off + tot > frame)
        return L4_R_DROP_TRUNCATED;
    /* Options change the L4 offset and may carry source routes: the stack
     * handles them (rare in practice; counted). */
    if ((vihl & 0xf) != 5)
        return L4_R_PASS_IP_OPTIONS;
    /* Every fragment, first or not: forwarding the first by its ports while
     * the rest (which have none) go elsewhere would split the datagram. */
    if (ip->frag_off & bpf_htons(IP_MF | IP_OFFSET))
        return L4_R_PASS_FRAGMENT;

    p->ip_len = tot;
    p->tos = ip->tos;
    p->l4_off = p->l3_off + sizeof(*ip);
    v4_mapped(p->key.src, ip->saddr);
    v4_mapped(p->key.dst, ip->daddr);
    p->key.proto = ip->protocol;
    if (ip->protocol == PROTO_ICMPV6)  /* ICMPv6 inside IPv4: not ours */
        return L4_R_PASS_OTHER_L4;
    return 0;
}

static __always_inline int parse_ipv6(void *data, void *data_end, struct pkt *p)
{
    struct ipv6hdr *ip6 = data + p->l3_off;
    __u64 frame = data_end - data;
    __u32 w0, plen;
    __u8 nh;

    if ((void *)(ip6 + 1) > data_end)
        return L4_R_DROP_TRUNCATED;
    w0 = bpf_ntohl(*(__be32 *)ip6);
    if ((w0 >> 28) != 6)
        return L4_R_DROP_BAD_L3;
    plen = bpf_ntohs(ip6->payload_len);
    if (p->l3_off + sizeof(*ip6) + plen > frame)
        return L4_R_DROP_TRUNCATED;

    nh = ip6->nexthdr;
    switch (nh) {
    case PROTO_TCP:
    case PROTO_UDP:
    case PROTO_ICMPV6:
        break;
    case 44: /* fragment header */
        return L4_R_PASS_FRAGMENT;
    case 0:   /* hop-by-hop (also jumbograms, payload_len 0) */
    case 43:  /* routing */
    case 50:  /* ESP */
    case 51:  /* AH */
    case 60:  /* destination options */
    case 135: /* mobility */
    case 139: /* HIP */
    case 140: /* shim6 */
    case 253: /* experimental */
    case 254:
        return L4_R_PASS_IPV6_EXT;
    default:
        return L4_R_PASS_OTHER_L4;
    }

    /* v4-mapped addresses have no business in IPv6 headers
     * (draft-itojun-v6ops-v4mapped-harmful). A v4-mapped destination would
     * alias our IPv4 VIP keys: it is not a VIP. A v4-mapped source is a
     * client the real could only answer over IPv4 (its socket maps the
     * address back), and Linux refuses TCP connections from one: drop. */
    if (is_v4_mapped(ip6->saddr.in6_u.u6_addr32))
        return L4_R_DROP_BAD_L3;
    if (is_v4_mapped(ip6->daddr.in6_u.u6_addr32))
        return L4_R_PASS_NOT_VIP;

    p->v6 = 1;
    p->ip_len = sizeof(*ip6) + plen;
    p->tos = (w0 >> 20) & 0xff;
    p->l4_off = p->l3_off + sizeof(*ip6);
    __builtin_memcpy(p->key.src, &ip6->saddr, 16);
    __builtin_memcpy(p->key.dst, &ip6->daddr, 16);
    p->key.proto = nh;
    return 0;
}

/* Ports (TCP/UDP) after checking the L4 header against both the frame and
 * the IP length. */
static __always_inline int parse_l4(void *data, void *data_end, struct pkt *p)
{
    __u32 ip_end = p->l3_off + p->ip_len;
    void *l4 = data + p->l4_off;

    switch (p->key.proto) {
    case PROTO_TCP: {
        struct tcphdr *th = l4;
        __u32 doff;

        if (p->l4_off + sizeof(*th) > ip_end)
            return L4_R_DROP_BAD_L4;
        if ((void *)(th + 1) > data_end)
            return L4_R_DROP_TRUNCATED;
        doff = (((__u8 *)th)[12] >> 4) * 4;
        if (doff < sizeof(*th) || p->l4_off + doff > ip_end)
            return L4_R_DROP_BAD_L4;
        p->key.sport = th->source;
        p->key.dport = th->dest;
        p->tcp_flags = ((__u8 *)th)[13];
        p->tcp_doff = doff;
        return PARSE_L4;
    }
    case PROTO_UDP: {
        struct udphdr *uh = l4;
        __u32 ulen;

        if (p->l4_off + sizeof(*uh) > ip_end)
            return L4_R_DROP_BAD_L4;
        if ((void *)(uh + 1) > data_end)
            return L4_R_DROP_TRUNCATED;
        ulen = bpf_ntohs(uh->len);
        if (ulen < sizeof(*uh) || p->l4_off + ulen > ip_end)
            return L4_R_DROP_BAD_L4;
        p->key.sport = uh->source;
        p->key.dport = uh->dest;
        return PARSE_L4;
    }
    case PROTO_ICMP:
    case PROTO_ICMPV6:
        /* 8 bytes: type, code, checksum and the 4-byte rest of header. */
        if (p->l4_off + 8 > ip_end)
            return L4_R_DROP_BAD_L4;
        if (l4 + 8 > data_end)
            return L4_R_DROP_TRUNCATED;
        return PARSE_ICMP;
    default:
        return L4_R_PASS_OTHER_L4;
    }
}

static __always_inline int parse(void *data, void *data_end, struct pkt *p)
{
    struct ethhdr *eth = data;
    __be16 proto;
    int rc;

    if ((void *)(eth + 1) > data_end)
        return L4_R_DROP_TRUNCATED;
    proto = eth->h_proto;
    p->l3_off = sizeof(*eth);
    if (proto == bpf_htons(ETH_P_8021Q) || proto == bpf_htons(ETH_P_8021AD)) {
        struct vlan_hdr *vh = data + sizeof(*eth);

        if ((void *)(vh + 1) > data_end)
            return L4_R_DROP_TRUNCATED;
        p->vlan_tpid = proto;
        p->vlan_tci = vh->h_vlan_TCI;
        proto = vh->h_vlan_encapsulated_proto;
        p->l3_off += sizeof(*vh);
    }

    /* A second tag (QinQ) lands here as "not IP": one tag is the limit. */
    if (proto == bpf_htons(ETH_P_IP))
        rc = parse_ipv4(data, data_end, p);
    else if (proto == bpf_htons(ETH_P_IPV6))
        rc = parse_ipv6(data, data_end, p);
    else
        return L4_R_PASS_NOT_IP;
    if (rc)
        return rc;
    return parse_l4(data, data_end, p);
}

#endif
