/* Sluice TUN decapsulation: the real-server side of TUN mode.
 *
 * The forwarder sends a TUN service's packets to the real inside an outer
 * IPv4 header (protocol 4 for IPv4 inside, 41 for IPv6) or IPv6 header
 * (next header 41 or 4). A kernel with the ipip / ip6_tunnel modules
 * decapsulates them itself; on one without (`sluice l4 decap` is for those),
 * this XDP program does: an IP-in-IP packet whose outer destination is one
 * of the addresses in decap_addrs loses its outer header (the Ethernet
 * header, and a VLAN tag if there is one, is moved up and gets the inner
 * ethertype) and goes up the stack (XDP_PASS) as if the inner packet, to the
 * VIP the real holds on its loopback, had arrived plain.
 *
 * GUE variant 1 (draft-ietf-intarea-gue section 5: the IP packet directly
 * after a UDP header, its first nibble telling IPv4 from IPv6), which the
 * forwarder sends for services with `encapsulation: gue`, is taken off the
 * same way when decap_config names the UDP port (`--gue-port`): UDP to
 * that port and to one of our addresses loses its outer IP and UDP
 * headers. The UDP checksum is verified when there is one; 0 ("none") is
 * accepted over IPv4 (RFC 768) and refused over IPv6 (RFC 8200 8.1; the
 * forwarder always computes it there).
 *
 * Policy: the packet is only changed when the outer header and the inner
 * one's fixed part have been read and checked (outer IPv4: version, IHL 5,
 * not a fragment, lengths, header checksum; outer IPv6: no extension
 * headers, lengths; inner: the version the outer protocol announces, its
 * length within the outer payload; GUE: the UDP length and checksum).
 * Anything else goes to the stack
 * untouched and is counted: what is not IP-in-IP, IP-in-IP to another
 * address, outer IPv4 options or fragments or IPv6 extension headers
 * (unsupported), and malformed packets (the stack drops those, or answers
 * with an ICMP protocol-unreachable for a tunnel it cannot terminate).
 * ECN follows RFC 6040: an outer CE mark is copied to an ECN-capable inner
 * packet (IPv4 header checksum updated); a CE-marked packet whose inner
 * packet is not ECN-capable is dropped. TTL and hop limit of the inner
 * packet are kept (the packet is delivered here, not forwarded).
 */
#include "vmlinux.h"

#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "l4/bpf/consts.h"
#include "l4/bpf/csum.h"
#include "l4/bpf/decap_abi.h"

#define ECN_MASK     3
#define ECN_CE       3

char LICENSE[] SEC("license") = "Dual BSD/GPL";

struct decap_key {
    __u8 a[16];
};

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, DECAP_MAX_ADDRS);
    __type(key, struct decap_key);
    __type(value, __u8);
} decap_addrs SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, DECAP_N_REASONS);
    __type(key, __u32);
    __type(value, struct decap_count);
} decap_stats SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, struct decap_cfg);
} decap_config SEC(".maps");


static __always_inline int count(__u32 reason, __u64 bytes, int verdict)
{
    struct decap_count *c = bpf_map_lookup_elem(&decap_stats, &reason);

    if (c) {
        c->packets++;
        c->bytes += bytes;
    }
    return verdict;
}

static __always_inline bool is_ours(const struct decap_key *k)
{
    return bpf_map_lookup_elem(&decap_addrs, k) != NULL;
}

/* Check the inner packet at `in` (inner_len bytes available inside the
 * outer datagram) and apply the outer ECN mark. Returns 0 to go on, or a
 * reason to stop with (pass untouched, or DECAP_DROP_ECN). */
static __always_inline int inner_ok(void *in, void *data_end, __u32 avail, bool inner6, __u8 outer_ecn)
{
    if (inner6) {
        struct ipv6hdr *ip6 = in;
        __u8 *b = in;

        if ((void *)(ip6 + 1) > data_end || avail < sizeof(*ip6))
            return DECAP_PASS_BAD;
        if (ip6->version != 6 || sizeof(*ip6) + bpf_ntohs(ip6->payload_len) > avail)
            return DECAP_PASS_BAD;
        if (outer_ecn == ECN_CE) {
            /* Traffic class: low nibble of byte 0, high nibble of byte 1;
             * ECN is its low two bits, bits 4-5 of byte 1. */
            if (((b[1] >> 4) & ECN_MASK) == 0)
                return DECAP_DROP_ECN;
            b[1] |= ECN_CE << 4;
        }
        return 0;
    }

    struct iphdr *ip = in;

    if ((void *)(ip + 1) > data_end || avail < sizeof(*ip))
        return DECAP_PASS_BAD;
    if (ip->version != 4 || ip->ihl < 5 || bpf_ntohs(ip->tot_len) > avail ||
        bpf_ntohs(ip->tot_len) < ip->ihl * 4)
        return DECAP_PASS_BAD;
    if (outer_ecn == ECN_CE) {
        __u8 ecn = ip->tos & ECN_MASK;

        if (ecn == 0)
            return DECAP_DROP_ECN;
        if (ecn != ECN_CE) {
            /* The first word holds version/IHL and TOS: RFC 1624 update,
             * on the words' values (network order read by hand). */
            __u8 *b = in;
            __u8 tos = b[1] | ECN_CE;
            __u32 old = ((__u32)b[0] << 8) | b[1];
            __u32 neww = ((__u32)b[0] << 8) | tos;
            __u32 s = (__u16)~bpf_ntohs(ip->check) + (__u16)~old + neww;

            b[1] = tos;
            ip->check = bpf_htons(csum_fold(s));
        }
    }
    return 0;
}

/* GUE: the UDP header at `udp_off` (`avail` bytes of outer payload behind
 * it, `psum` the pseudo-header's sum without the length) to our port and
 * address. Check its length and checksum and read the inner version from
 * the first nibble after it. Returns 0 with *inner6 and *inner_avail set,
 * or a reason to pass with. */
static __always_inline int gue_check(struct xdp_md *ctx, __u32 udp_off, __u32 avail, __u64 psum, bool outer6,
                                     bool *inner6, __u32 *inner_avail)
{
    void *data = (void *)(long)ctx->data;
    void *data_end = (void *)(long)ctx->data_end;
    struct udphdr *uh;
    __u32 ulen;
    __u8 *first;
    int s;

    if (udp_off > 18 + 40)
        return DECAP_PASS_BAD;
    uh = data + udp_off;
    first = (__u8 *)(uh + 1);
    if ((void *)(first + 1) > data_end)
        return DECAP_PASS_BAD;
    /* The datagram must hold at least the inner packet's first byte and
     * lie within the IP payload; bytes of IP payload past it are ignored,
     * as the stack ignores them. */
    ulen = bpf_ntohs(uh->len);
    if (ulen < sizeof(*uh) + 1 || ulen > avail)
        return DECAP_PASS_BAD;
    switch (*first >> 4) {
    case 4:
        *inner6 = false;
        break;
    case 6:
        *inner6 = true;
        break;
    default:
        /* Variant 0 (first two bits 00) has a GUE header first: not
         * ours to parse. Anything else is not GUE. */
        return (*first >> 6) == 0 ? DECAP_PASS_UNSUPP : DECAP_PASS_BAD;
    }
    if (uh->check == 0) {
        if (outer6)
            return DECAP_PASS_BAD; /* no checksum: invalid over IPv6 */
    } else {
        /* Pseudo-header length (IPv4: in the word with the protocol,
         * which the caller left out; IPv6: a word of its own), then the
         * datagram, checksum field included: all of it sums to 0xffff. */
        if (outer6) {
            /* Two additions into 64 bits: the two words' own sum can
             * carry out of 32. */
            psum += bpf_htonl(ulen);
            psum += bpf_htonl(PROTO_UDP);
        } else {
            psum += bpf_htonl((PROTO_UDP << 16) | ulen);
        }
        s = l4_sum_bytes(ctx, udp_off, ulen);
        if (s < 0 || csum_fold(fold64(psum + (__u32)s)) != 0)
            return DECAP_PASS_BAD;
    }
    *inner_avail = ulen - sizeof(*uh);
    return 0;
}

SEC("xdp")
int sluice_decap(struct xdp_md *ctx)
{
    void *data = (void *)(long)ctx->data;
    void *data_end = (void *)(long)ctx->data_end;
    __u64 bytes = data_end - data;
    struct ethhdr *eth = data;
    struct ethhdr eth_copy;
    struct vlan_hdr vlan_copy = {};
    struct decap_key k = {};
    struct decap_cfg *cfg;
    __u32 l3 = sizeof(*eth), hdr, avail, zero = 0;
    __be16 proto, gue_port = 0;
    bool vlan = false, inner6 = false, gue;
    __u64 psum = 0;
    __u8 ecn;
    int rc;

    cfg = bpf_map_lookup_elem(&decap_config, &zero);
    if (cfg)
        gue_port = cfg->gue_port;
    if ((void *)(eth + 1) > data_end)
        return count(DECAP_PASS_OTHER, bytes, XDP_PASS);
    proto = eth->h_proto;
    if (proto == bpf_htons(ETH_P_8021Q) || proto == bpf_htons(ETH_P_8021AD)) {
        struct vlan_hdr *vh = (void *)(eth + 1);

        if ((void *)(vh + 1) > data_end)
            return count(DECAP_PASS_OTHER, bytes, XDP_PASS);
        vlan_copy = *vh;
        proto = vh->h_vlan_encapsulated_proto;
        l3 += sizeof(*vh);
        vlan = true;
    }

    if (proto == bpf_htons(ETH_P_IP)) {
        struct iphdr *ip = data + l3;
        __u32 tot;

        if ((void *)(ip + 1) > data_end)
            return count(DECAP_PASS_BAD, bytes, XDP_PASS);
        gue = gue_port && ip->protocol == PROTO_UDP;
        if (!gue && ip->protocol != PROTO_IPIP && ip->protocol != PROTO_IPV6)
            return count(DECAP_PASS_OTHER, bytes, XDP_PASS);
        if (ip->version != 4 || ip->ihl < 5)
            return count(DECAP_PASS_BAD, bytes, XDP_PASS);
        if (gue) {
            /* UDP is GUE only to the port: look at it where the header
             * says (after any options). A later fragment has no UDP
             * header to look at. */
            struct udphdr *uh = (void *)ip + ip->ihl * 4;

            if (ip->frag_off & bpf_htons(IP_OFFSET))
                return count(DECAP_PASS_OTHER, bytes, XDP_PASS);
            if ((void *)(uh + 1) > data_end)
                return count(DECAP_PASS_BAD, bytes, XDP_PASS);
            if (uh->dest != gue_port)
                return count(DECAP_PASS_OTHER, bytes, XDP_PASS);
        }
        if (ip->ihl != 5 || (ip->frag_off & bpf_htons(IP_MF | IP_OFFSET)))
            return count(DECAP_PASS_UNSUPP, bytes, XDP_PASS);
        k.a[10] = 0xff;
        k.a[11] = 0xff;
        __builtin_memcpy(&k.a[12], &ip->daddr, 4);
        if (!is_ours(&k))
            return count(DECAP_PASS_NOT_OURS, bytes, XDP_PASS);
        tot = bpf_ntohs(ip->tot_len);
        if (tot < sizeof(*ip) || (void *)ip + tot > data_end || ip4_hdr_csum(ip) != 0)
            return count(DECAP_PASS_BAD, bytes, XDP_PASS);
        hdr = sizeof(*ip);
        avail = tot - hdr;
        inner6 = ip->protocol == PROTO_IPV6;
        ecn = ip->tos & ECN_MASK;
        if (gue)
            psum = (__u64)ip->saddr + ip->daddr;
    } else if (proto == bpf_htons(ETH_P_IPV6)) {
        struct ipv6hdr *ip6 = data + l3;
        __u8 *b = (__u8 *)ip6;

        if ((void *)(ip6 + 1) > data_end)
            return count(DECAP_PASS_BAD, bytes, XDP_PASS);
        gue = gue_port && ip6->nexthdr == PROTO_UDP;
        if (!gue && ip6->nexthdr != PROTO_IPIP && ip6->nexthdr != PROTO_IPV6) {
            /* A hop-by-hop, routing, fragment or destination-options
             * header may lead to one: not handled here. */
            __u8 nh = ip6->nexthdr;

            if (nh == 0 || nh == 43 || nh == 44 || nh == 60)
                return count(DECAP_PASS_UNSUPP, bytes, XDP_PASS);
            return count(DECAP_PASS_OTHER, bytes, XDP_PASS);
        }
        if (ip6->version != 6)
            return count(DECAP_PASS_BAD, bytes, XDP_PASS);
        if (gue) {
            struct udphdr *uh = (void *)(ip6 + 1);

            if ((void *)(uh + 1) > data_end)
                return count(DECAP_PASS_BAD, bytes, XDP_PASS);
            if (uh->dest != gue_port)
                return count(DECAP_PASS_OTHER, bytes, XDP_PASS);
        }
        __builtin_memcpy(k.a, &ip6->daddr, 16);
        if (!is_ours(&k))
            return count(DECAP_PASS_NOT_OURS, bytes, XDP_PASS);
        avail = bpf_ntohs(ip6->payload_len);
        if ((void *)(ip6 + 1) + avail > data_end)
            return count(DECAP_PASS_BAD, bytes, XDP_PASS);
        hdr = sizeof(*ip6);
        inner6 = ip6->nexthdr == PROTO_IPV6;
        ecn = (b[1] >> 4) & ECN_MASK;
        if (gue) {
            const __u32 *a = (const __u32 *)&ip6->saddr; /* saddr, then daddr */

#pragma unroll
            for (int i = 0; i < 8; i++)
                psum += a[i];
        }
    } else {
        return count(DECAP_PASS_OTHER, bytes, XDP_PASS);
    }

    if (gue) {
        rc = gue_check(ctx, l3 + hdr, avail, psum, hdr == sizeof(struct ipv6hdr), &inner6, &avail);
        if (rc)
            return count(rc, bytes, XDP_PASS);
        /* (The packet pointers stay valid: the checksum changes no
         * packet data, and the verifier knows it of a global function.) */
        hdr += sizeof(struct udphdr);
    }
    if (l3 > 18 || hdr > 48)
        return count(DECAP_PASS_BAD, bytes, XDP_PASS); /* (bounds for the verifier) */

    rc = inner_ok(data + l3 + hdr, data_end, avail, inner6, ecn);
    if (rc == DECAP_DROP_ECN)
        return count(rc, bytes, XDP_DROP);
    if (rc)
        return count(rc, bytes, XDP_PASS);

    /* Move the L2 header up over the outer headers: keep a copy, move the
     * start of the frame by their size, write it back with the inner
     * ethertype. */
    __builtin_memcpy(&eth_copy, eth, sizeof(eth_copy));
    if (bpf_xdp_adjust_head(ctx, (int)hdr))
        return count(DECAP_PASS_BAD, bytes, XDP_PASS);
    data = (void *)(long)ctx->data;
    data_end = (void *)(long)ctx->data_end;
    eth = data;
    if ((void *)(eth + 1) > data_end)
        return XDP_DROP; /* cannot happen: the inner header was checked */
    proto = bpf_htons(inner6 ? ETH_P_IPV6 : ETH_P_IP);
    __builtin_memcpy(eth, &eth_copy, sizeof(*eth));
    if (vlan) {
        struct vlan_hdr *vh = (void *)(eth + 1);

        if ((void *)(vh + 1) > data_end)
            return XDP_DROP;
        vh->h_vlan_TCI = vlan_copy.h_vlan_TCI;
        vh->h_vlan_encapsulated_proto = proto;
    } else {
        eth->h_proto = proto;
    }
    if (gue) {
        if (hdr == sizeof(struct iphdr) + sizeof(struct udphdr))
            return count(inner6 ? DECAP_GUE_6IN4 : DECAP_GUE_4IN4, bytes, XDP_PASS);
        return count(inner6 ? DECAP_GUE_6IN6 : DECAP_GUE_4IN6, bytes, XDP_PASS);
    }
    if (hdr == sizeof(struct iphdr))
        return count(inner6 ? DECAP_6IN4 : DECAP_IPIP, bytes, XDP_PASS);
    return count(inner6 ? DECAP_IP6IP6 : DECAP_4IN6, bytes, XDP_PASS);
}
