/* Malformed, foreign and unsupported packets: each passes or drops
 * untouched, counted in the reason that says why (table-driven); random
 * corruption of valid packets; every reason has a metrics name. */
#include "fixtures.h"

/* ---- table-driven ---- */

struct bad_case {
    const char *name;
    void (*make)(struct pkt *p);
    uint32_t verdict;
    enum l4_reason reason;
};

static struct tl_frame base4(void)
{
    return frame(CLIENT4, VIP_DR4, 6, next_port(), 80);
}

static struct tl_frame base6(void)
{
    return frame(CLIENT6, VIP_DR6, 17, next_port(), 53);
}

static void mk_bad_version4(struct pkt *p)
{
    struct tl_frame f = base4();
    tl_build(p, &f);
    p->b[14] = 0x65;
    fix_ip4(p, 14);
}
static void mk_ihl4(struct pkt *p)
{
    struct tl_frame f = base4();
    tl_build(p, &f);
    p->b[14] = 0x44;
    fix_ip4(p, 14);
}
static void mk_ihl15_short(struct pkt *p)
{
    struct tl_frame f = base4();
    tl_build(p, &f);
    p->b[14] = 0x4f; /* claims 60 bytes of header... */
    put16(p->b + 16, 40); /* ...in a 40-byte datagram */
    fix_ip4(p, 14);
}
static void mk_ip_options(struct pkt *p)
{
    struct tl_frame f = base4();
    f.ip_opts = 4;
    tl_build(p, &f);
}
static void mk_ip_options_max(struct pkt *p)
{
    struct tl_frame f = base4();
    f.ip_opts = 40;
    tl_build(p, &f);
}
static void mk_totlen_long(struct pkt *p)
{
    struct tl_frame f = base4();
    tl_build(p, &f);
    put16(p->b + 16, (uint16_t)(p->len - 14 + 1));
    fix_ip4(p, 14);
}
static void mk_totlen_max(struct pkt *p)
{
    struct tl_frame f = base4();
    tl_build(p, &f);
    put16(p->b + 16, 0xffff);
    fix_ip4(p, 14);
}
static void mk_totlen_tiny(struct pkt *p)
{
    struct tl_frame f = base4();
    tl_build(p, &f);
    put16(p->b + 16, 19);
    fix_ip4(p, 14);
}
static void mk_tcp_past_iplen(struct pkt *p)
{
    struct tl_frame f = base4();
    f.pad_to = 100;
    tl_build(p, &f);
    put16(p->b + 16, 20 + 10); /* TCP header needs 20; 10 left */
    fix_ip4(p, 14);
}
static void mk_tcp_doff4(struct pkt *p)
{
    struct tl_frame f = base4();
    tl_build(p, &f);
    p->b[34 + 12] = 4 << 4;
}
static void mk_tcp_doff15(struct pkt *p)
{
    struct tl_frame f = base4();
    f.payload_len = 20; /* 40 bytes of TCP, doff says 60 */
    tl_build(p, &f);
    p->b[34 + 12] = 15 << 4;
}
static void mk_udp_len7(struct pkt *p)
{
    struct tl_frame f = base6();
    tl_build(p, &f);
    put16(p->b + 54 + 4, 7);
}
static void mk_udp_len_long(struct pkt *p)
{
    struct tl_frame f = base6();
    tl_build(p, &f);
    put16(p->b + 54 + 4, (uint16_t)(8 + f.payload_len + 1));
}
static void mk_frag_first(struct pkt *p)
{
    struct tl_frame f = base4();
    f.frag_off = 0x2000; /* MF */
    tl_build(p, &f);
}
static void mk_frag_later(struct pkt *p)
{
    struct tl_frame f = base4();
    f.frag_off = 185; /* offset 1480 */
    tl_build(p, &f);
}
static void mk_frag_last(struct pkt *p)
{
    struct tl_frame f = base4();
    f.frag_off = 0x4000 | 1; /* DF with an offset: still a fragment */
    tl_build(p, &f);
}
static void mk_frag6(struct pkt *p)
{
    struct tl_frame f = base6();
    tl_build(p, &f);
    p->b[14 + 6] = 44;
}
static void mk_hbh6(struct pkt *p)
{
    struct tl_frame f = base6();
    tl_build(p, &f);
    p->b[14 + 6] = 0;
}
static void mk_v6_plen_long(struct pkt *p)
{
    struct tl_frame f = base6();
    tl_build(p, &f);
    put16(p->b + 14 + 4, (uint16_t)(p->len - 54 + 1));
}
static void mk_v6_bad_version(struct pkt *p)
{
    struct tl_frame f = base6();
    tl_build(p, &f);
    p->b[14] = (uint8_t)(0x40 | (p->b[14] & 0x0f));
}
static void mk_v6_mapped_src(struct pkt *p)
{
    struct tl_frame f = base6();
    tl_build(p, &f);
    memset(p->b + 22, 0, 10);
    p->b[32] = p->b[33] = 0xff; /* source ::ffff:... */
}
static void mk_v6_mapped_dst(struct pkt *p)
{
    /* an IPv6 header whose destination aliases the IPv4 VIP 192.0.2.10 */
    struct tl_frame f = frame(CLIENT6, "::ffff:192.0.2.10", 6, next_port(), 80);
    f.dst.v6 = true;
    tl_build(p, &f);
}
static void mk_gre4(struct pkt *p)
{
    struct tl_frame f = frame(CLIENT4, VIP_DR4, 47, 0, 0);
    tl_build(p, &f);
}
static void mk_sctp6(struct pkt *p)
{
    struct tl_frame f = frame(CLIENT6, VIP_DR6, 132, 0, 0);
    tl_build(p, &f);
}
static void mk_icmp6_in_v4(struct pkt *p)
{
    struct tl_frame f = frame(CLIENT4, VIP_DR4, 58, 0, 0);
    f.icmp_type = 128;
    tl_build(p, &f);
}
static void mk_arp(struct pkt *p)
{
    memset(p, 0, sizeof(*p));
    memset(p->b, 0xff, 6);
    memcpy(p->b + 6, GW_MAC, 6);
    put16(p->b + 12, 0x0806);
    put16(p->b + 14, 1);
    put16(p->b + 16, 0x0800);
    p->b[18] = 6;
    p->b[19] = 4;
    put16(p->b + 20, 1);
    p->len = 42;
}
static void mk_qinq(struct pkt *p)
{
    struct tl_frame f = base4();
    struct pkt q;

    f.vlan = true;
    f.vlan_tpid = 0x88a8;
    f.vlan_tci = 10;
    tl_build(&q, &f);
    /* insert a second (inner) tag after the outer one */
    memset(p, 0, sizeof(*p));
    memcpy(p->b, q.b, 16);
    put16(p->b + 16, 0x8100);
    put16(p->b + 18, 20);
    memcpy(p->b + 20, q.b + 16, q.len - 16);
    p->len = q.len + 4;
}
static void mk_vlan_short(struct pkt *p)
{
    struct tl_frame f = base4();
    f.vlan = true;
    tl_build(p, &f);
    p->len = 16; /* the tag is cut in half */
}
static void mk_not_vip_addr(struct pkt *p)
{
    struct tl_frame f = frame(CLIENT4, "192.0.2.99", 6, next_port(), 80);
    tl_build(p, &f);
}
static void mk_not_vip_port(struct pkt *p)
{
    struct tl_frame f = frame(CLIENT4, VIP_DR4, 6, next_port(), 81);
    tl_build(p, &f);
}
static void mk_not_vip_proto(struct pkt *p)
{
    struct tl_frame f = frame(CLIENT4, VIP_DR4, 17, next_port(), 80);
    tl_build(p, &f);
}
static void mk_not_vip6(struct pkt *p)
{
    struct tl_frame f = frame(CLIENT6, "2001:db8::99", 6, next_port(), 80);
    tl_build(p, &f);
}
static void mk_bad_mode(struct pkt *p)
{
    struct tl_frame f = frame(CLIENT4, VIP_BADMODE, 6, next_port(), 80);
    tl_build(p, &f);
}
static void mk_nat_doff15(struct pkt *p)
{
    struct tl_frame f = frame(CLIENT4, VIP_NAT4, 6, next_port(), 80);
    f.payload_len = 20;
    tl_build(p, &f);
    p->b[34 + 12] = 15 << 4;
}
static void mk_fnat_udp_long(struct pkt *p)
{
    struct tl_frame f = frame(CLIENT6, VIP_FNAT6, 17, next_port(), 53);
    tl_build(p, &f);
    put16(p->b + 54 + 4, (uint16_t)(8 + f.payload_len + 2));
}
static void mk_fnat_ip_options(struct pkt *p)
{
    struct tl_frame f = frame(CLIENT4, VIP_FNAT4, 6, next_port(), 80);
    f.ip_opts = 8;
    tl_build(p, &f);
}
static void mk_nat_frag(struct pkt *p)
{
    struct tl_frame f = frame(CLIENT4, VIP_NAT4, 17, next_port(), 53);
    f.frag_off = 0x2000;
    tl_build(p, &f);
}
static void mk_dead_real(struct pkt *p)
{
    struct tl_frame f = frame(CLIENT4, VIP_DEAD, 6, next_port(), 80);
    tl_build(p, &f);
}
static void mk_icmp_timestamp(struct pkt *p)
{
    struct tl_frame f = frame(CLIENT4, VIP_DR4, 1, 0, 0);
    f.icmp_type = 13;
    tl_build(p, &f);
}
static void mk_icmp_echo_code1(struct pkt *p)
{
    struct tl_frame f = frame(CLIENT4, VIP_DR4, 1, 0, 0);
    f.icmp_type = 8;
    f.icmp_code = 1;
    tl_build(p, &f);
}
static void mk_icmp_echo_not_vip(struct pkt *p)
{
    struct tl_frame f = frame(CLIENT4, "192.0.2.99", 1, 0, 0);
    f.icmp_type = 8;
    tl_build(p, &f);
}
static void mk_icmp_echo_other_vip(struct pkt *p)
{
    /* 192.0.2.40 serves TCP but has no ICMP address entry */
    struct tl_frame f = frame(CLIENT4, VIP_DEAD, 1, 0, 0);
    f.icmp_type = 8;
    tl_build(p, &f);
}
static void mk_icmp_short(struct pkt *p)
{
    struct tl_frame f = frame(CLIENT4, VIP_DR4, 1, 0, 0);
    f.icmp_type = 8;
    f.payload_len = 0;
    tl_build(p, &f);
    put16(p->b + 16, 20 + 4); /* 4 bytes of ICMP */
    fix_ip4(p, 14);
}

static void mk_frag_needed_not_vip(struct pkt *p)
{
    icmp_err(p, false, VIP_DR4, 81, CLIENT4, 40000, 6, 28);
}
static void mk_frag_needed_short_quote(struct pkt *p)
{
    icmp_err(p, false, VIP_DR4, 80, CLIENT4, 40000, 6, 22); /* no room for both ports */
}
static void mk_frag_needed_inner_opts(struct pkt *p)
{
    icmp_err(p, false, VIP_DR4, 80, CLIENT4, 40000, 6, 28);
    p->b[14 + 20 + 8] = 0x46; /* quoted header claims options */
    /* ICMP checksum no longer matters: this must not be forwarded at all */
}
static void mk_frag_needed_wrong_dst(struct pkt *p)
{
    /* addressed to one VIP, quoting a packet from another */
    icmp_err(p, false, VIP_DR4, 80, CLIENT4, 40000, 6, 28);
    memcpy(p->b + 14 + 16, (uint8_t[]){ 192, 0, 2, 20 }, 4);
    fix_ip4(p, 14);
}
static void mk_frag_needed_icmp_inner(struct pkt *p)
{
    icmp_err(p, false, VIP_DR4, 0, CLIENT4, 0, 1, 28); /* quoted packet is ICMP */
}
static void mk_ptb_other_code(struct pkt *p)
{
    icmp_err(p, true, VIP_DR6, 53, CLIENT6, 40000, 17, 48);
    p->b[54 + 1] = 1;
}

static const struct bad_case bad_cases[] = {
    { "IPv4 version 6 in an IPv4 frame", mk_bad_version4, XDP_DROP, L4_R_DROP_BAD_L3 },
    { "IPv4 IHL 4", mk_ihl4, XDP_DROP, L4_R_DROP_BAD_L3 },
    { "IPv4 IHL 15, total length 40", mk_ihl15_short, XDP_DROP, L4_R_DROP_BAD_L3 },
    { "IPv4 total length 19", mk_totlen_tiny, XDP_DROP, L4_R_DROP_BAD_L3 },
    { "IPv4 total length past the frame by 1", mk_totlen_long, XDP_DROP, L4_R_DROP_TRUNCATED },
    { "IPv4 total length 65535", mk_totlen_max, XDP_DROP, L4_R_DROP_TRUNCATED },
    { "IPv4 options (IHL 6) to a VIP", mk_ip_options, XDP_PASS, L4_R_PASS_IP_OPTIONS },
    { "IPv4 options (IHL 15) to a VIP", mk_ip_options_max, XDP_PASS, L4_R_PASS_IP_OPTIONS },
    { "IPv4 first fragment (MF)", mk_frag_first, XDP_PASS, L4_R_PASS_FRAGMENT },
    { "IPv4 middle fragment (offset)", mk_frag_later, XDP_PASS, L4_R_PASS_FRAGMENT },
    { "IPv4 last fragment (DF + offset)", mk_frag_last, XDP_PASS, L4_R_PASS_FRAGMENT },
    { "TCP header past the IP length", mk_tcp_past_iplen, XDP_DROP, L4_R_DROP_BAD_L4 },
    { "TCP data offset 4", mk_tcp_doff4, XDP_DROP, L4_R_DROP_BAD_L4 },
    { "TCP data offset 15 past the datagram", mk_tcp_doff15, XDP_DROP, L4_R_DROP_BAD_L4 },
    { "UDP length 7", mk_udp_len7, XDP_DROP, L4_R_DROP_BAD_L4 },
    { "UDP length past the datagram", mk_udp_len_long, XDP_DROP, L4_R_DROP_BAD_L4 },
    { "IPv6 version 4 in an IPv6 frame", mk_v6_bad_version, XDP_DROP, L4_R_DROP_BAD_L3 },
    { "IPv6 payload length past the frame", mk_v6_plen_long, XDP_DROP, L4_R_DROP_TRUNCATED },
    { "IPv6 with a v4-mapped source", mk_v6_mapped_src, XDP_DROP, L4_R_DROP_BAD_L3 },
    { "IPv6 to a v4-mapped VIP address", mk_v6_mapped_dst, XDP_PASS, L4_R_PASS_NOT_VIP },
    { "IPv6 fragment header", mk_frag6, XDP_PASS, L4_R_PASS_FRAGMENT },
    { "IPv6 hop-by-hop header", mk_hbh6, XDP_PASS, L4_R_PASS_IPV6_EXT },
    { "GRE to an IPv4 VIP", mk_gre4, XDP_PASS, L4_R_PASS_OTHER_L4 },
    { "SCTP to an IPv6 VIP", mk_sctp6, XDP_PASS, L4_R_PASS_OTHER_L4 },
    { "ICMPv6 inside IPv4", mk_icmp6_in_v4, XDP_PASS, L4_R_PASS_OTHER_L4 },
    { "ARP", mk_arp, XDP_PASS, L4_R_PASS_NOT_IP },
    { "QinQ (two tags)", mk_qinq, XDP_PASS, L4_R_PASS_NOT_IP },
    { "VLAN tag cut short", mk_vlan_short, XDP_DROP, L4_R_DROP_TRUNCATED },
    { "non-VIP address", mk_not_vip_addr, XDP_PASS, L4_R_PASS_NOT_VIP },
    { "VIP address, other port", mk_not_vip_port, XDP_PASS, L4_R_PASS_NOT_VIP },
    { "VIP address and port, other protocol", mk_not_vip_proto, XDP_PASS, L4_R_PASS_NOT_VIP },
    { "non-VIP IPv6 address", mk_not_vip6, XDP_PASS, L4_R_PASS_NOT_VIP },
    { "service with an unknown mode", mk_bad_mode, XDP_PASS, L4_R_PASS_MODE },
    { "NAT: TCP data offset past the datagram", mk_nat_doff15, XDP_DROP, L4_R_DROP_BAD_L4 },
    { "FullNAT: UDP length past the datagram", mk_fnat_udp_long, XDP_DROP, L4_R_DROP_BAD_L4 },
    { "FullNAT: IPv4 options", mk_fnat_ip_options, XDP_PASS, L4_R_PASS_IP_OPTIONS },
    { "NAT: first fragment", mk_nat_frag, XDP_PASS, L4_R_PASS_FRAGMENT },
    { "service whose only real is inactive", mk_dead_real, XDP_DROP, L4_R_DROP_NO_REAL },
    { "ICMP timestamp to a VIP", mk_icmp_timestamp, XDP_PASS, L4_R_PASS_ICMP },
    { "ICMP echo with code 1", mk_icmp_echo_code1, XDP_PASS, L4_R_PASS_ICMP },
    { "ICMP echo to a non-VIP", mk_icmp_echo_not_vip, XDP_PASS, L4_R_PASS_NOT_VIP },
    { "ICMP echo to a VIP without ICMP entry", mk_icmp_echo_other_vip, XDP_PASS, L4_R_PASS_NOT_VIP },
    { "ICMP of 4 bytes", mk_icmp_short, XDP_DROP, L4_R_DROP_BAD_L4 },
    { "frag-needed about a non-service port", mk_frag_needed_not_vip, XDP_PASS, L4_R_PASS_NOT_VIP },
    { "frag-needed quoting 22 bytes", mk_frag_needed_short_quote, XDP_PASS, L4_R_PASS_ICMP },
    { "frag-needed quoting a header with options", mk_frag_needed_inner_opts, XDP_PASS, L4_R_PASS_ICMP },
    { "frag-needed sent to another VIP", mk_frag_needed_wrong_dst, XDP_PASS, L4_R_PASS_ICMP },
    { "frag-needed quoting ICMP", mk_frag_needed_icmp_inner, XDP_PASS, L4_R_PASS_ICMP },
    { "ICMPv6 packet-too-big with code 1", mk_ptb_other_code, XDP_PASS, L4_R_PASS_ICMP },
};

/* Random corruption of valid packets: whatever comes out of PASS or DROP is
 * the input; whatever is forwarded has the input's L3 bytes intact behind a
 * rewritten L2 header (DR) or a new outer header (TUN). */
static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;

static uint32_t rng(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)rng_state;
}

static int t_mutations(void)
{
    struct pkt bases[9];
    int nb = 0, forwarded = 0, iterations = 6000;
    const char *env_n = getenv("L4_MUTATIONS"); /* longer runs by hand */

    if (env_n && atoi(env_n) > 0)
        iterations = atoi(env_n);

    {
        struct tl_frame f = to_svc(S_DR4_TCP, false);
        tl_build(&bases[nb++], &f);
        f = to_svc(S_DR6_UDP, true);
        tl_build(&bases[nb++], &f);
        f = to_svc(S_TUN4_UDP, false);
        tl_build(&bases[nb++], &f);
        f = to_svc(S_TUN6_TCP, false);
        tl_build(&bases[nb++], &f);
        icmp_err(&bases[nb++], false, VIP_DR4, 80, CLIENT4, 40000, 6, 48);
        f = frame(CLIENT6, VIP_DR6, 58, 0, 0);
        f.icmp_type = 128;
        tl_build(&bases[nb++], &f);
        /* NAT: a FullNAT SYN (TOA), a NAT IPv6 UDP packet, a NAT reply */
        f = to_svc(S_FNAT4_TCP, false);
        tl_build(&bases[nb++], &f);
        f = to_svc(S_NAT6_UDP, false);
        tl_build(&bases[nb++], &f);
        f = to_svc(S_NAT4_UDP, false);
        f.src.a[15] = 250;
        f.sport = 777;
        {
            struct nat_res res;
            struct tl_frame r = f;

            if (nat_forward(S_NAT4_UDP, &f, false, &res))
                return -1;
            real_addr(res.real, &r.src);
            r.sport = NAT_RPORT;
            r.dst = f.src;
            r.dport = f.sport;
            tl_build(&bases[nb++], &r);
        }
    }
    for (int it = 0; it < iterations; it++) {
        struct pkt in = bases[it % nb];
        uint64_t before[L4_R__COUNT], after[L4_R__COUNT], disp = 0;
        int flips = 1 + (int)(rng() % 3);
        uint32_t v;

        for (int j = 0; j < flips; j++) {
            /* bias toward the headers, where the parser looks */
            size_t pos = (rng() & 1) ? rng() % 60 : rng() % in.len;
            if (pos < in.len)
                in.b[pos] = (uint8_t)rng();
        }
        if (rng() % 8 == 0)
            in.len = 14 + rng() % (in.len - 14);
        CHECK(tl_reasons(&env, before) == 0, "counters");
        CHECK(tl_run(env.prog_fd, &in, &out, &v) == 0, "test run");
        CHECK(tl_reasons(&env, after) == 0, "counters");
        for (int r = 0; r < L4_R__DISPOSITIONS; r++)
            disp += after[r] - before[r];
        CHECK(disp == 1, "mutation %d: %llu dispositions", it, (unsigned long long)disp);
        if (v == XDP_PASS || v == XDP_DROP) {
            CHECK(out.len == in.len && memcmp(out.b, in.b, in.len) == 0, "mutation %d: %s but rewritten", it,
                  tl_verdict_name(v));
            continue;
        }
        CHECK(v == XDP_TX, "mutation %d: verdict %s", it, tl_verdict_name(v));
        forwarded++;
        if (after[L4_R_FWD_DR] != before[L4_R_FWD_DR]) {
            CHECK(out.len == in.len && memcmp(out.b + 12, in.b + 12, in.len - 12) == 0,
                  "mutation %d: DR changed more than MACs", it);
        } else if (after[L4_R_FWD_TUN] != before[L4_R_FWD_TUN]) {
            uint16_t et = (uint16_t)(in.b[12] << 8 | in.b[13]);
            size_t l3 = (et == 0x8100 || et == 0x88a8) ? 18 : 14;
            size_t ohl = out.len - in.len;

            CHECK(ohl == 20 || ohl == 40, "mutation %d: TUN added %zu bytes", it, ohl);
            CHECK(memcmp(out.b + l3 + ohl, in.b + l3, in.len - l3) == 0, "mutation %d: TUN changed the inner packet", it);
            if (ohl == 20)
                CHECK(tl_fold(tl_sum(out.b + l3, 20, 0)) == 0, "mutation %d: outer checksum", it);
        } else if (after[L4_R_FWD_NAT] != before[L4_R_FWD_NAT] ||
                   after[L4_R_FWD_FULLNAT] != before[L4_R_FWD_FULLNAT] ||
                   after[L4_R_FWD_NAT_REPLY] != before[L4_R_FWD_NAT_REPLY]) {
            uint16_t et = (uint16_t)(in.b[12] << 8 | in.b[13]);
            size_t l3 = (et == 0x8100 || et == 0x88a8) ? 18 : 14, grow = out.len - in.len;

            CHECK(grow == 0 || grow == L4_TOA_LEN_V4 || grow == L4_TOA_LEN_V6, "mutation %d: NAT grew %zu", it,
                  grow);
            /* The translation keeps a right checksum right (and cannot
             * make a wrong one right, which the receiver will catch). */
            if (tl_verify_csums(in.b, in.len, l3) == 0)
                CHECK(tl_verify_csums(out.b, out.len, l3) == 0, "mutation %d: NAT broke a checksum", it);
        } else {
            CHECK(after[L4_R_ICMP_ECHO_REPLY] != before[L4_R_ICMP_ECHO_REPLY], "mutation %d: TX for what?", it);
            CHECK(out.len == in.len, "mutation %d: echo reply length", it);
        }
    }
    CHECK(forwarded > 100, "only %d of the mutated packets were still forwardable", forwarded);
    return 0;
}

/* Counters: a disposition per packet, per-VIP and per-real bytes. Checked
 * in every fixture; this one checks the reason names are all set. */
static int t_reason_names(void)
{
    for (int r = 0; r < L4_R__COUNT; r++)
        CHECK(l4_reason_names[r] != NULL, "reason %d has no name", r);
    return 0;
}

static const struct fixture fixtures[] = {
    { "random corruption: 6000 mutated packets (L4_MUTATIONS=n for more)", t_mutations },
    { "every reason has a metrics name", t_reason_names },
};

void suite_malformed(void)
{
    for (size_t i = 0; i < sizeof(bad_cases) / sizeof(bad_cases[0]); i++) {
        struct pkt in;
        bool ok;

        bad_cases[i].make(&in);
        ok = run_expect(&in, bad_cases[i].verdict, NULL, bad_cases[i].reason) == 0;
        report(ok, "%s: %s (%s)", bad_cases[i].verdict == XDP_PASS ? "pass" : "drop", bad_cases[i].name,
               l4_reason_names[bad_cases[i].reason]);
    }
    RUN_FIXTURES(fixtures);
}
