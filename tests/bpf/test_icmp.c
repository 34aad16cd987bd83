/* ICMP fixtures: echo replies, frag-needed and packet-too-big routed to
 * the real that owns the quoted flow (DR, TUN, GUE, and translated for NAT
 * and FullNAT flows), the frag-needed / packet-too-big the forwarder writes
 * itself when a TUN packet would not fit the tunnel, truncations. */
#include "fixtures.h"

/* ---- echo, and errors routed by the flow they quote ---- */

/* Echo replies, built from scratch: addresses swapped, TTL 64, type 0/129,
 * checksums computed over the whole reply. The forwarder patches them
 * incrementally; both must agree byte for byte. */
static int t_echo(bool v6, bool vlan)
{
    struct tl_frame f = frame(v6 ? CLIENT6 : CLIENT4, v6 ? VIP_DR6 : VIP_DR4, v6 ? 58 : 1, 0, 0);
    struct tl_frame r;
    struct pkt in, exp;

    f.icmp_type = v6 ? 128 : 8;
    f.icmp_id = 0x1234;
    f.icmp_seq = 7;
    f.ttl = 57;
    f.ip_id = 0xbeef;
    f.payload_len = 56;
    f.vlan = vlan;
    f.vlan_tci = 5;
    tl_build(&in, &f);
    r = f;
    memcpy(r.dmac, GW_MAC, 6);
    memcpy(r.smac, LB_MAC, 6);
    r.src = f.dst;
    r.dst = f.src;
    r.ttl = L4_ECHO_TTL;
    r.icmp_type = v6 ? 129 : 0;
    tl_build(&exp, &r);
    return run_expect(&in, XDP_TX, &exp, L4_R_ICMP_ECHO_REPLY);
}

static int t_echo4(void) { return t_echo(false, false); }
static int t_echo6(void) { return t_echo(true, false); }
static int t_echo4_vlan(void) { return t_echo(false, true); }

/* Odd-length echo payloads and many ids: incremental update must match a
 * from-scratch checksum for every one (the 0x0000/0xffff corner included). */
static int t_echo_sweep(void)
{
    for (uint32_t i = 0; i < 600; i++) {
        struct tl_frame f = frame(CLIENT4, VIP_DR4, 1, 0, 0), r;
        struct pkt in, exp;

        f.icmp_type = 8;
        f.icmp_id = (uint16_t)(i * 977);
        f.icmp_seq = (uint16_t)i;
        f.payload_len = i % 67;
        f.ttl = (uint8_t)(1 + i % 255);
        tl_build(&in, &f);
        r = f;
        memcpy(r.dmac, GW_MAC, 6);
        memcpy(r.smac, LB_MAC, 6);
        r.src = f.dst;
        r.dst = f.src;
        r.ttl = L4_ECHO_TTL;
        r.icmp_type = 0;
        tl_build(&exp, &r);
        /* The full computation gives 0x0000 where the data sums to -0; the
         * forwarder writes the equally valid 0xffff there (see echo_reply;
         * with all-zero data 0xffff is the only valid value). */
        if (exp.b[36] == 0 && exp.b[37] == 0)
            exp.b[36] = exp.b[37] = 0xff;
        if (run_expect(&in, XDP_TX, &exp, L4_R_ICMP_ECHO_REPLY)) {
            fprintf(stderr, "    (echo %u)\n", i);
            return -1;
        }
    }
    return 0;
}

/* ICMP errors: the packet goes unchanged (DR) or encapsulated (TUN) to the
 * real that owns the quoted flow, taken from the connection table when the
 * flow is in it. */
static int icmp_err_case(bool v6, int svc, bool via_ct)
{
    const struct tl_svc *s = &env.svcs[svc];
    struct tl_frame fl = to_svc(svc, false);
    char vip[INET6_ADDRSTRLEN], client[INET6_ADDRSTRLEN];
    struct l4_flow_key k;
    struct pkt in, exp, flow;
    uint32_t real = tl_maglev_real(&env, svc, &fl), hash = tl_flow_hash(&env, &fl);
    bool tun = s->meta.mode == L4_MODE_TUN;

    if (v6) {
        inet_ntop(AF_INET6, fl.dst.a, vip, sizeof(vip));
        inet_ntop(AF_INET6, fl.src.a, client, sizeof(client));
    } else {
        inet_ntop(AF_INET, tl_addr_v4(&fl.dst), vip, sizeof(vip));
        inet_ntop(AF_INET, tl_addr_v4(&fl.src), client, sizeof(client));
    }
    if (via_ct) {
        /* Establish the flow, then point its entry at another real: the
         * error must follow the table, not Maglev. */
        tl_build(&flow, &fl);
        if (run_expect(&flow, XDP_TX, NULL, tun ? L4_R_FWD_TUN : L4_R_FWD_DR))
            return -1;
        tl_flow_key(&fl, &k);
        real = s->reals[(real == s->reals[0]) ? 1 : 0];
        CHECK(tl_conn_set(&env, &k, &(struct l4_conn){ .real = real, .hash = hash }) == 0, "conn set");
    }
    icmp_err(&in, v6, vip, fl.dport, client, fl.sport, fl.proto, v6 ? 48 + 20 : 20 + 20);
    if (tun) {
        expect_tun_svc(&exp, &in, 14, svc, real, hash);
    } else {
        exp = in;
        memcpy(exp.b, env.reals[real].r.mac, 6);
        memcpy(exp.b + 6, LB_MAC, 6);
    }
    if (run_expect(&in, XDP_TX, &exp, tun ? L4_R_FWD_TUN : L4_R_FWD_DR))
        return -1;
    CHECK(delta[L4_R_ICMP_ERR_ROUTED] == 1, "icmp_err_routed not counted");
    CHECK(delta[L4_R_CT_MISS] == 0 && delta[L4_R_CT_HIT] == 0, "ICMP error counted as a flow");
    if (!via_ct) {
        tl_flow_key(&fl, &k);
        struct l4_conn c;
        CHECK(tl_conn_get(&env, &k, &c) != 0 || c.real == 0, "ICMP error created a conn entry");
    }
    return 0;
}

static int t_frag_needed_maglev(void) { return icmp_err_case(false, S_DR4_TCP, false); }
static int t_frag_needed_ct(void) { return icmp_err_case(false, S_DR4_TCP, true); }
static int t_frag_needed_udp(void) { return icmp_err_case(false, S_DR4_UDP, false); }
static int t_frag_needed_tun(void) { return icmp_err_case(false, S_TUN4_TCP, true); }
static int t_ptb6_maglev(void) { return icmp_err_case(true, S_DR6_UDP, false); }
static int t_ptb6_ct(void) { return icmp_err_case(true, S_DR6_TCP, true); }
static int t_ptb6_tun(void) { return icmp_err_case(true, S_TUN6_TCP, false); }
static int t_frag_needed_gue(void) { return icmp_err_case(false, S_GUE4_TCP, true); }
static int t_ptb6_gue(void) { return icmp_err_case(true, S_GUE6_TCP, false); }

static int t_trunc_echo(void)
{
    struct tl_frame f = frame(CLIENT4, VIP_DR4, 1, 0, 0);

    f.icmp_type = 8;
    return sweep_frame(f, "ICMP echo");
}
static int t_trunc_echo6(void)
{
    struct tl_frame f = frame(CLIENT6, VIP_DR6, 58, 0, 0);

    f.icmp_type = 128;
    return sweep_frame(f, "ICMPv6 echo");
}
static int t_trunc_frag_needed(void)
{
    struct pkt p;

    icmp_err(&p, false, VIP_DR4, 80, CLIENT4, 40000, 6, 48);
    return sweep(&p, "frag-needed");
}
static int t_trunc_ptb6(void)
{
    struct pkt p;

    icmp_err(&p, true, VIP_DR6, 53, CLIENT6, 40000, 17, 80);
    return sweep(&p, "packet-too-big");
}

/* ---- ICMP errors about NAT and FullNAT flows ---- */

static void addr_text(const struct tl_addr *a, char *buf, size_t len)
{
    if (a->v6)
        inet_ntop(AF_INET6, a->a, buf, (socklen_t)len);
    else
        inet_ntop(AF_INET, tl_addr_v4(a), buf, (socklen_t)len);
}

/* A router on the client side sends frag-needed / packet-too-big to the
 * VIP about a reply of an established NAT/FullNAT flow, quoting `quote`
 * bytes of it. The real must get it as if it were about the packet it sent
 * itself: built here from scratch, the quote from the real's own packet
 * (src real:rport, dst client:cport or local:lport, same payload), the
 * outer destination the real, the outer source the router (NAT) or the
 * local address (FullNAT), every checksum computed over the whole. */
static int nat_icmp_case(int svc, size_t quote)
{
    struct tl_frame f = to_svc(svc, false), inner, outer;
    bool full = svc_full(svc), v6 = f.src.v6;
    char vip[INET6_ADDRSTRLEN], client[INET6_ADDRSTRLEN];
    struct l4_counter rs;
    struct nat_res res;
    struct pkt in, exp, q;

    if (nat_forward(svc, &f, full && f.proto == 6, &res))
        return -1;
    addr_text(&f.dst, vip, sizeof(vip));
    addr_text(&f.src, client, sizeof(client));
    icmp_err(&in, v6, vip, f.dport, client, f.sport, f.proto, quote);

    inner = frame(vip, client, f.proto, f.dport, f.sport);
    real_addr(res.real, &inner.src);
    inner.sport = real_port(res.real, f.dport);
    inner.dst = res.local;
    inner.dport = res.lport;
    inner.payload_len = 64;
    tl_build(&q, &inner);
    if (quote > q.len - 14)
        quote = q.len - 14;
    outer = frame(v6 ? ROUTER6 : ROUTER4, vip, v6 ? 58 : 1, 0, 0);
    outer.icmp_type = v6 ? 2 : 3;
    outer.icmp_code = v6 ? 0 : 4;
    outer.icmp_seq = 1400;
    outer.payload = q.b + 14;
    outer.payload_len = quote;
    outer.tos = 0xc0;
    real_addr(res.real, &outer.dst);
    if (full)
        outer.src = res.local;
    memcpy(outer.dmac, env.reals[res.real].r.mac, 6);
    memcpy(outer.smac, LB_MAC, 6);
    tl_build(&exp, &outer);

    CHECK(tl_counter(env.fd_real_stats, res.real, &rs) == 0, "real stats");
    if (run_expect(&in, XDP_TX, &exp, full ? L4_R_FWD_FULLNAT : L4_R_FWD_NAT))
        return -1;
    CHECK(delta[L4_R_ICMP_ERR_ROUTED] == 1, "icmp_err_routed not counted");
    CHECK(delta[L4_R_CT_HIT] == 0 && delta[L4_R_CT_MISS] == 0, "ICMP error counted as a flow");
    return counter_delta(env.fd_real_stats, res.real, &rs, 1, in.len);
}

/* IPv4 quotes of 28 bytes hold the UDP checksum but not TCP's. */
static int t_nat_icmp4_tcp_short(void) { return nat_icmp_case(S_NAT4_TCP, 28); }
static int t_nat_icmp4_udp(void) { return nat_icmp_case(S_NAT4_UDP, 548); }
static int t_fnat_icmp4_tcp(void) { return nat_icmp_case(S_FNAT4_TCP, 548); }
static int t_fnat_icmp4_udp_short(void) { return nat_icmp_case(S_FNAT4_UDP, 28); }
static int t_nat_icmp6_tcp(void) { return nat_icmp_case(S_NAT6_TCP, 1232); }
static int t_nat_icmp6_udp_short(void) { return nat_icmp_case(S_NAT6_UDP, 48); }
static int t_fnat_icmp6_tcp(void) { return nat_icmp_case(S_FNAT6_TCP, 1232); }
static int t_fnat_icmp6_udp(void) { return nat_icmp_case(S_FNAT6_UDP, 1232); }

/* An error about a NAT flow we hold no state for cannot be routed. */
static int t_nat_icmp_no_state(void)
{
    struct tl_frame f = to_svc(S_FNAT4_TCP, false);
    char vip[INET6_ADDRSTRLEN], client[INET6_ADDRSTRLEN];
    struct pkt in;

    addr_text(&f.dst, vip, sizeof(vip));
    addr_text(&f.src, client, sizeof(client));
    icmp_err(&in, false, vip, f.dport, client, f.sport, f.proto, 548);
    return run_expect(&in, XDP_PASS, NULL, L4_R_PASS_ICMP);
}

/* ---- TUN: packet too big -> frag-needed / packet-too-big ---- */

/* Flow f is too big for the tunnel at tun_mtu: the client gets an error
 * from the VIP, built here from scratch: MACs swapped, the VLAN tag kept,
 * IPv4 TOS 0xc0 / DF / TTL 64 or IPv6 hop limit 64, type 3 code 4 with
 * the next-hop MTU or type 2 with the MTU, and the original IP packet
 * quoted up to 548 (IPv4) or 1232 (IPv6) bytes; checksums by tl_build. */
static int ptb_case(struct tl_frame f, int svc, uint16_t tun_mtu, uint32_t want_mtu)
{
    struct l4_cfg saved = env.cfg, cfg = env.cfg;
    size_t l3 = tl_l3_off(&f), ip_len, quote, cap;
    bool v6 = f.dst.v6;
    struct l4_counter rs;
    struct tl_frame e;
    struct pkt in, exp;
    uint32_t real = tl_maglev_real(&env, svc, &f);
    int rc;

    tl_build(&in, &f);
    ip_len = v6 ? 40u + (size_t)(in.b[l3 + 4] << 8 | in.b[l3 + 5]) : (size_t)(in.b[l3 + 2] << 8 | in.b[l3 + 3]);
    cap = v6 ? 1280 - 48 : 576 - 28;
    quote = ip_len < cap ? ip_len : cap;
    memset(&e, 0, sizeof(e));
    memcpy(e.dmac, f.smac, 6);
    memcpy(e.smac, f.dmac, 6);
    e.vlan = f.vlan;
    e.vlan_tpid = f.vlan_tpid;
    e.vlan_tci = f.vlan_tci;
    e.src = f.dst;
    e.dst = f.src;
    e.proto = v6 ? 58 : 1;
    e.icmp_type = v6 ? 2 : 3;
    e.icmp_code = v6 ? 0 : 4;
    e.icmp_id = (uint16_t)(want_mtu >> 16); /* IPv4: unused, 0 */
    e.icmp_seq = (uint16_t)want_mtu;
    e.tos = v6 ? 0 : 0xc0;
    e.ttl = 64;
    e.frag_off = v6 ? 0 : 0x4000;
    e.payload = in.b + l3;
    e.payload_len = quote;
    tl_build(&exp, &e);

    cfg.tun_mtu = tun_mtu;
    CHECK(tl_set_cfg(&env, &cfg) == 0, "config");
    CHECK(tl_counter(env.fd_real_stats, real, &rs) == 0, "real stats");
    rc = run_expect(&in, XDP_TX, &exp, L4_R_ICMP_PTB_SENT);
    CHECK(tl_set_cfg(&env, &saved) == 0, "config");
    if (rc)
        return rc;
    return counter_delta(env.fd_real_stats, real, &rs, 0, 0);
}

static struct tl_frame df_frame(int svc, bool vlan, size_t payload)
{
    struct tl_frame f = to_svc(svc, vlan);

    f.payload_len = payload;
    if (!f.dst.v6)
        f.frag_off = 0x4000;
    return f;
}

/* IPIP, 1481-byte datagram, tunnel 1500: MTU 1480, 548 bytes quoted. */
static int t_ptb4(void) { return ptb_case(df_frame(S_TUN4_TCP, false, 1441), S_TUN4_TCP, 1500, 1480); }
/* A small tunnel MTU: the whole 251-byte datagram quoted (odd length). */
static int t_ptb4_small(void) { return ptb_case(df_frame(S_TUN4_UDP, true, 223), S_TUN4_UDP, 200, 180); }
/* 4in6: 40 bytes of overhead, an IPv4 error. */
static int t_ptb_4in6(void) { return ptb_case(df_frame(S_4IN6, false, 1300), S_4IN6, 1300, 1260); }
/* IP6IP6, 1480-byte packet, tunnel 1500: MTU 1460, 1232 bytes quoted. */
static int t_ptb6(void) { return ptb_case(df_frame(S_TUN6_TCP, false, 1420), S_TUN6_TCP, 1500, 1460); }
/* 1300 - 40 is below IPv6's minimum: 1280 is reported. */
static int t_ptb6_min(void) { return ptb_case(df_frame(S_TUN6_UDP, true, 1253), S_TUN6_UDP, 1300, 1280); }
/* 6in4 with a tiny tunnel: 1280, the whole 161-byte packet quoted. */
static int t_ptb_6in4_small(void) { return ptb_case(df_frame(S_6IN4, false, 101), S_6IN4, 150, 1280); }

/* No error about an ICMP error: a frag-needed routed to a TUN real that
 * does not fit is dropped, DF or not. */
static int t_ptb_not_for_icmp(void)
{
    struct l4_cfg saved = env.cfg, cfg = env.cfg;
    struct pkt in;
    int rc;

    icmp_err(&in, false, VIP_TUN4, 80, CLIENT4, next_port(), 6, 548);
    in.b[14 + 6] = 0x40; /* DF */
    fix_ip4(&in, 14);
    cfg.tun_mtu = 100;
    CHECK(tl_set_cfg(&env, &cfg) == 0, "config");
    rc = run_expect(&in, XDP_DROP, NULL, L4_R_DROP_TOO_BIG);
    CHECK(tl_set_cfg(&env, &saved) == 0, "config");
    return rc;
}

/* PTB with GUE: overhead 28 (IPv4 + UDP) or 48 (IPv6 + UDP). */
static int t_ptb_gue4(void) { return ptb_case(df_frame(S_GUE4_TCP, false, 1433), S_GUE4_TCP, 1500, 1472); }
static int t_ptb_gue6(void) { return ptb_case(df_frame(S_GUE6_TCP, false, 1393), S_GUE6_TCP, 1500, 1452); }
static int t_ptb_gue_4in6(void) { return ptb_case(df_frame(S_GUE_4IN6, true, 1213), S_GUE_4IN6, 1300, 1252); }

static const struct fixture fixtures[] = {
    { "ICMP echo IPv4", t_echo4 },
    { "ICMP echo IPv4, VLAN tag", t_echo4_vlan },
    { "ICMPv6 echo", t_echo6 },
    { "ICMP echo: 600 payloads/ids/TTLs, incremental = full checksum", t_echo_sweep },
    { "frag-needed routed by inner flow (Maglev)", t_frag_needed_maglev },
    { "frag-needed routed by inner flow (conn table)", t_frag_needed_ct },
    { "frag-needed about a UDP flow", t_frag_needed_udp },
    { "frag-needed to a TUN service (encapsulated)", t_frag_needed_tun },
    { "ICMPv6 packet-too-big routed by inner flow (Maglev)", t_ptb6_maglev },
    { "ICMPv6 packet-too-big routed by inner flow (conn table)", t_ptb6_ct },
    { "ICMPv6 packet-too-big to a TUN service", t_ptb6_tun },
    { "frag-needed to a GUE service (in UDP, conn table)", t_frag_needed_gue },
    { "ICMPv6 packet-too-big to a GUE service (in UDP)", t_ptb6_gue },
    { "frag-needed about a NAT TCP flow, 28-byte quote -> real", t_nat_icmp4_tcp_short },
    { "frag-needed about a NAT UDP flow, whole quote -> real", t_nat_icmp4_udp },
    { "frag-needed about a FullNAT TCP flow -> real, from the local address", t_fnat_icmp4_tcp },
    { "frag-needed about a FullNAT UDP flow, 28-byte quote", t_fnat_icmp4_udp_short },
    { "packet-too-big about a NAT TCP flow -> real", t_nat_icmp6_tcp },
    { "packet-too-big about a NAT UDP flow, 48-byte quote", t_nat_icmp6_udp_short },
    { "packet-too-big about a FullNAT TCP flow -> real", t_fnat_icmp6_tcp },
    { "packet-too-big about a FullNAT UDP flow -> real", t_fnat_icmp6_udp },
    { "frag-needed about a NAT flow without state: pass", t_nat_icmp_no_state },
    { "TUN PTB: IPIP, DF, 1481 > 1500 - 20: frag-needed MTU 1480 to the client", t_ptb4 },
    { "TUN PTB: IPIP, VLAN, UDP, tunnel 200: whole odd-length datagram quoted", t_ptb4_small },
    { "TUN PTB: 4in6, tunnel 1300: frag-needed MTU 1260", t_ptb_4in6 },
    { "TUN PTB: IP6IP6, 1480 > 1500 - 40: packet-too-big MTU 1460", t_ptb6 },
    { "TUN PTB: IP6IP6, VLAN, tunnel 1300: MTU not below 1280", t_ptb6_min },
    { "TUN PTB: 6in4, tunnel 150: MTU 1280, whole packet quoted", t_ptb_6in4_small },
    { "TUN PTB: never about an ICMP error (dropped)", t_ptb_not_for_icmp },
    { "TUN PTB: GUE 4in4, DF, 1473 > 1500 - 28: frag-needed MTU 1472", t_ptb_gue4 },
    { "TUN PTB: GUE 6in6, 1453 > 1500 - 48: packet-too-big MTU 1452", t_ptb_gue6 },
    { "TUN PTB: GUE 4in6, VLAN, tunnel 1300: frag-needed MTU 1252", t_ptb_gue_4in6 },
    { "truncations: ICMP echo", t_trunc_echo },
    { "truncations: ICMPv6 echo", t_trunc_echo6 },
    { "truncations: frag-needed", t_trunc_frag_needed },
    { "truncations: packet-too-big", t_trunc_ptb6 },
};

void suite_icmp(void)
{
    RUN_FIXTURES(fixtures);
}
