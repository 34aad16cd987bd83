/* NAT and FullNAT fixtures: both directions for both families (the reply on
 * another CPU), local address and port allocation, exhaustion and reuse
 * after the timeouts, UDP checksum 0, replies that are not, the SYN guard,
 * inactive reals, checksums against a from-scratch computation,
 * truncations. (TOA: test_toa.c; ICMP errors about NAT flows: test_icmp.c.) */
#include "fixtures.h"

static const struct nat_case {
    const char *name;
    int svc;
    bool vlan;
} nat_cases[] = {
    { "NAT     IPv4 TCP", S_NAT4_TCP, false },
    { "NAT     IPv4 UDP", S_NAT4_UDP, false },
    { "NAT     IPv6 TCP", S_NAT6_TCP, false },
    { "NAT     IPv6 UDP", S_NAT6_UDP, false },
    { "FullNAT IPv4 TCP (TOA on the SYN)", S_FNAT4_TCP, false },
    { "FullNAT IPv4 UDP", S_FNAT4_UDP, false },
    { "FullNAT IPv6 TCP (TOA on the SYN)", S_FNAT6_TCP, false },
    { "FullNAT IPv6 UDP", S_FNAT6_UDP, false },
    { "NAT     IPv4 TCP, VLAN tag", S_NAT4_TCP, true },
    { "FullNAT IPv6 TCP, VLAN tag", S_FNAT6_TCP, true },
};

/* First packet (a miss: Maglev, entries inserted, TOA on a FullNAT SYN),
 * the reply on the other CPU, then the client's next packet (a hit on the
 * same translation, no TOA) and a second reply on this CPU. */
static int run_nat_case(const struct nat_case *c)
{
    struct tl_frame f = to_svc(c->svc, c->vlan);
    bool tcp = f.proto == 6, full = svc_full(c->svc);
    struct nat_res res, res2;
    struct l4_counter vs, rs;

    if (nat_forward(c->svc, &f, full && tcp, &res))
        return -1;
    CHECK(delta[L4_R_CT_MISS] == 1 && delta[L4_R_CT_HIT] == 0, "first packet is not a miss");
    if (nat_reply(c->svc, &f, &res, other_cpu()))
        return -1;
    CHECK(tl_counter(env.fd_vip_stats, env.svcs[c->svc].meta.svc, &vs) == 0, "vip stats");
    CHECK(tl_counter(env.fd_real_stats, res.real, &rs) == 0, "real stats");
    f.tcp_flags = 0x10; /* ACK */
    if (nat_forward(c->svc, &f, false, &res2))
        return -1;
    CHECK(delta[L4_R_CT_HIT] == 1 && delta[L4_R_CT_MISS] == 0, "second packet is not a hit");
    CHECK(res2.real == res.real && res2.lport == res.lport && memcmp(res2.local.a, res.local.a, 16) == 0,
          "second packet translated differently");
    if (counter_delta(env.fd_vip_stats, env.svcs[c->svc].meta.svc, &vs, 1, out.len) ||
        counter_delta(env.fd_real_stats, res.real, &rs, 1, out.len))
        return -1;
    return nat_reply(c->svc, &f, &res, env.cpu);
}

/* Many FullNAT flows, over three reals: every one gets its own local
 * address and port (per protocol, as sockets have them). */
static int t_fnat_unique_ports(void)
{
    enum { N = 3000 };
    static uint8_t used[2][2][65536];
    int per_addr[2] = { 0, 0 };

    memset(used, 0, sizeof(used));
    for (int i = 0; i < N; i++) {
        struct tl_frame f = to_svc(i % 2 ? S_FNAT4_UDP : S_FNAT4_TCP, false);
        struct nat_res res;
        int a;

        f.src.a[15] = (uint8_t)(i * 13);
        f.src.a[14] = (uint8_t)(i >> 4);
        f.sport = (uint16_t)(1024 + i * 7);
        if (nat_forward(i % 2 ? S_FNAT4_UDP : S_FNAT4_TCP, &f, i % 2 == 0, &res)) {
            fprintf(stderr, "    (flow %d)\n", i);
            return -1;
        }
        a = res.local.a[15] == 1 ? 0 : 1;
        CHECK(!used[i % 2][a][res.lport], "flow %d: local port %u on address %d handed out twice", i, res.lport, a);
        used[i % 2][a][res.lport] = 1;
        per_addr[a]++;
    }
    CHECK(per_addr[0] > N / 4 && per_addr[1] > N / 4, "local addresses used unevenly: %d / %d", per_addr[0],
          per_addr[1]);
    return 0;
}

/* A pool of 64 ports and 150 new flows: every flow that gets through has
 * a port of its own, the rest are dropped and counted, and nothing else
 * happens to them. */
static int t_fnat_exhaustion(void)
{
    uint8_t used[64] = { 0 };
    int ok = 0, dropped = 0;

    for (int i = 0; i < 150; i++) {
        struct tl_frame f = to_svc(S_FNAT_SMALL, false);
        struct nat_res res;
        struct pkt in;
        uint32_t v;

        f.src.a[15] = (uint8_t)(100 + i);
        tl_build(&in, &f);
        CHECK(tl_run(env.prog_fd, &in, &out, &v) == 0, "test run");
        if (v == XDP_DROP) {
            CHECK(out.len == in.len && memcmp(out.b, in.b, in.len) == 0, "dropped packet rewritten");
            dropped++;
            continue;
        }
        CHECK(v == XDP_TX, "flow %d: %s", i, tl_verdict_name(v));
        res.lport = (uint16_t)(out.b[34] << 8 | out.b[35]);
        CHECK(res.lport >= 50000 && res.lport <= 50063, "port %u outside the pool", res.lport);
        CHECK(!used[res.lport - 50000], "port %u handed out twice", res.lport);
        used[res.lport - 50000] = 1;
        CHECK(tl_verify_csums(out.b, out.len, 14) == 0, "bad checksum");
        ok++;
    }
    CHECK(ok <= 64 && ok >= 48, "%d flows got a port out of 64", ok);
    {
        struct l4_counter c;
        static uint64_t seen;
        CHECK(tl_counter(env.fd_reasons, L4_R_DROP_NAT_NO_PORT, &c) == 0, "counter");
        CHECK(c.packets - seen == (uint64_t)dropped, "drop_nat_no_port +%llu, %d dropped",
              (unsigned long long)(c.packets - seen), dropped);
        seen = c.packets;
    }
    return 0;
}

/* The LOCAL entry of a FullNAT flow: its claim on the local address and
 * port, looked up by replies. */
static void out_key(const struct tl_frame *f, const struct nat_res *res, struct l4_nat_key *k)
{
    memset(k, 0, sizeof(*k));
    memcpy(k->dst, res->local.a, 16);
    k->dport = htons(res->lport);
    k->proto = f->proto;
    k->dir = L4_NAT_LOCAL;
}

/* Make a flow look idle for `secs` seconds. */
static int age_out_entry(const struct tl_frame *f, const struct nat_res *res, uint64_t secs, uint8_t *state)
{
    struct l4_nat_key k;
    struct l4_nat v;

    out_key(f, res, &k);
    CHECK(bpf_map_lookup_elem(env.fd_nat, &k, &v) == 0, "no OUT entry for the flow");
    if (state)
        *state = v.state;
    v.last_seen = mono_coarse_ns() - secs * 1000000000ull;
    CHECK(bpf_map_update_elem(env.fd_nat, &k, &v, BPF_EXIST) == 0, "OUT entry update");
    return 0;
}

/* A pool of one port: a second flow has to wait until the first one's
 * entry expires: 900 s idle for TCP, 10 s after a FIN. Then the port is
 * the second flow's, and the first flow's entry is stale. */
static int t_fnat_port_reuse(void)
{
    struct tl_frame a = to_svc(S_FNAT_TINY, false), b = to_svc(S_FNAT_TINY, false);
    struct nat_res ra, rb;
    struct pkt in;
    uint8_t st;

    b.src.a[15] = 99;
    if (nat_forward(S_FNAT_TINY, &a, true, &ra))
        return -1;
    CHECK(ra.lport == 40000, "port %u", ra.lport);
    tl_build(&in, &b);
    if (run_expect(&in, XDP_DROP, NULL, L4_R_DROP_NAT_NO_PORT))
        return -1;
    /* idle 11 s: still alive (TCP timeout 900 s) */
    if (age_out_entry(&a, &ra, 11, &st))
        return -1;
    CHECK(!(st & L4_NAT_S_CLOSING), "closing before any FIN");
    if (run_expect(&in, XDP_DROP, NULL, L4_R_DROP_NAT_NO_PORT))
        return -1;
    /* the client closes: FIN refreshes the entry and marks it closing */
    a.tcp_flags = 0x11;
    if (nat_forward(S_FNAT_TINY, &a, false, &ra))
        return -1;
    if (age_out_entry(&a, &ra, 9, &st))
        return -1;
    CHECK(st & L4_NAT_S_CLOSING, "FIN did not mark the entry closing");
    if (run_expect(&in, XDP_DROP, NULL, L4_R_DROP_NAT_NO_PORT))
        return -1;
    if (age_out_entry(&a, &ra, 11, NULL))
        return -1;
    /* 11 s after the FIN: the port is free for b */
    if (nat_forward(S_FNAT_TINY, &b, true, &rb))
        return -1;
    CHECK(rb.lport == 40000, "port %u", rb.lport);
    /* a's next packet finds its entry taken over: stale, no port left */
    a.tcp_flags = 0x10;
    tl_build(&in, &a);
    if (run_expect(&in, XDP_DROP, NULL, L4_R_DROP_NAT_NO_PORT))
        return -1;
    CHECK(delta[L4_R_NAT_STALE] == 1, "stale entry not counted");
    /* b's replies still go to b */
    if (nat_reply(S_FNAT_TINY, &b, &rb, other_cpu()))
        return -1;
    /* b ends with a RST and 11 s pass: the port is a's again */
    b.tcp_flags = 0x04;
    if (nat_forward(S_FNAT_TINY, &b, false, &rb) || age_out_entry(&b, &rb, 11, NULL))
        return -1;
    a.tcp_flags = 0x02;
    if (nat_forward(S_FNAT_TINY, &a, true, &ra))
        return -1;
    return age_out_entry(&a, &ra, 3600, NULL); /* leave the port free */
}

/* UDP checksum 0: "none" in IPv4, kept 0 through the translation both
 * ways; invalid in IPv6, dropped. */
static int t_nat_udp_zero_csum(void)
{
    struct tl_frame f = to_svc(S_FNAT4_UDP, false), g;
    struct nat_res res;
    struct pkt in, exp;

    uint32_t v;

    tl_build(&in, &f);
    in.b[40] = in.b[41] = 0;
    /* (not run_expect(): its checksum check would call 0 wrong) */
    CHECK(tl_run(env.prog_fd, &in, &out, &v) == 0 && v == XDP_TX, "not forwarded");
    res.real = tl_maglev_real(&env, S_FNAT4_UDP, &f);
    g = f;
    memcpy(g.dmac, env.reals[res.real].r.mac, 6);
    memcpy(g.smac, LB_MAC, 6);
    real_addr(res.real, &g.dst);
    g.dport = real_port(res.real, f.dport);
    memset(&g.src, 0, sizeof(g.src));
    g.src.a[10] = g.src.a[11] = 0xff;
    memcpy(g.src.a + 12, out.b + 26, 4);
    g.sport = (uint16_t)(out.b[34] << 8 | out.b[35]);
    tl_build(&exp, &g);
    exp.b[40] = exp.b[41] = 0;
    CHECK(same(&out, &exp), "zero checksum not kept");

    f = to_svc(S_NAT6_UDP, false);
    tl_build(&in, &f);
    in.b[60] = in.b[61] = 0;
    return run_expect(&in, XDP_DROP, NULL, L4_R_DROP_BAD_CSUM);
}

/* Packets that are not to a VIP and match no entry pass untouched; with
 * reply lookups off, even a matching reply passes. */
static int t_nat_reply_miss(void)
{
    struct l4_cfg saved = env.cfg, cfg = env.cfg;
    struct tl_frame f = to_svc(S_NAT4_TCP, false), r;
    struct nat_res res;
    struct pkt in;
    int rc;

    if (nat_forward(S_NAT4_TCP, &f, false, &res))
        return -1;
    r = frame("10.2.0.1", CLIENT4, 6, NAT_RPORT, (uint16_t)(f.sport + 1)); /* wrong port */
    tl_build(&in, &r);
    if (run_expect(&in, XDP_PASS, NULL, L4_R_PASS_NOT_VIP))
        return -1;
    real_addr(res.real, &r.src);
    r.dport = f.sport; /* the right one, but lookups are off */
    cfg.flags = 0;
    CHECK(tl_set_cfg(&env, &cfg) == 0, "config");
    tl_build(&in, &r);
    rc = run_expect(&in, XDP_PASS, NULL, L4_R_PASS_NOT_VIP);
    CHECK(tl_set_cfg(&env, &saved) == 0, "config");
    if (rc)
        return rc;

    /* FullNAT: to the flow's local address and port, but from another
     * real, or from the right real's other port: not the flow's reply. */
    f = to_svc(S_FNAT4_UDP, false);
    if (nat_forward(S_FNAT4_UDP, &f, false, &res))
        return -1;
    for (int i = 0; i < 2; i++) {
        memset(&r, 0, sizeof(r));
        memcpy(r.dmac, LB_MAC, 6);
        real_addr(i == 0 ? (res.real == 15 ? 16 : 15) : res.real, &r.src);
        r.dst = res.local;
        r.proto = 17;
        r.sport = (uint16_t)(i == 0 ? f.dport : f.dport + 1);
        r.dport = res.lport;
        r.payload_len = 8;
        tl_build(&in, &r);
        if (run_expect(&in, XDP_PASS, NULL, L4_R_PASS_NOT_VIP))
            return -1;
    }
    return nat_reply(S_FNAT4_UDP, &f, &res, env.cpu);
}

/* NAT cannot forward without state: over the SYN guard's cap, new flows
 * are dropped, established ones keep going. */
static int t_nat_guard(void)
{
    struct l4_cfg saved = env.cfg, cfg = env.cfg;
    struct tl_frame f = to_svc(S_NAT6_TCP, false), g = to_svc(S_NAT6_TCP, false);
    struct nat_res res;
    struct pkt in;
    int rc = -1;

    cfg.new_flow_cap = 1;
    CHECK(tl_set_cfg(&env, &cfg) == 0 && tl_flood_reset(&env) == 0, "config");
    if (nat_forward(S_NAT6_TCP, &f, false, &res))
        goto out;
    tl_build(&in, &g);
    if (run_expect(&in, XDP_DROP, NULL, L4_R_DROP_NAT_GUARD) || delta[L4_R_CT_GUARD_SKIP] != 1)
        goto out;
    f.tcp_flags = 0x10;
    rc = nat_forward(S_NAT6_TCP, &f, false, &res);
out:
    CHECK(tl_set_cfg(&env, &saved) == 0, "config");
    return rc;
}

/* A NAT flow whose real goes inactive is moved (as DR/TUN flows are): the
 * entry is stale and Maglev picks again. */
static int t_nat_inactive_real(void)
{
    struct tl_frame f = to_svc(S_NAT4_TCP, false);
    struct nat_res res, res2;
    uint32_t other[2], n = 0, w[2] = { 1, 1 };
    uint8_t mac[6];
    int rc = -1;

    if (nat_forward(S_NAT4_TCP, &f, false, &res))
        return -1;
    for (int i = 0; i < 3; i++)
        if (NAT_REALS4[i] != res.real)
            other[n++] = NAT_REALS4[i];
    real_mac(res.real, mac);
    CHECK(tl_set_real(&env, res.real, env.reals[res.real].name, mac, false) == 0 &&
              tl_set_real_port(&env, res.real, NAT_RPORT) == 0,
          "deactivate");
    CHECK(tl_build_table(&env, S_NAT4_TCP, S_NAT4_TCP, other, w, 2) == 0, "table rebuild");
    f.tcp_flags = 0x10;
    if (nat_forward(S_NAT4_TCP, &f, false, &res2))
        goto out;
    if (res2.real == res.real || delta[L4_R_NAT_STALE] != 1) {
        fprintf(stderr, "    flow stayed on the inactive real\n");
        goto out;
    }
    rc = 0;
out:
    CHECK(tl_set_real(&env, res.real, env.reals[res.real].name, mac, true) == 0 &&
              tl_set_real_port(&env, res.real, NAT_RPORT) == 0,
          "reactivate");
    CHECK(tl_build_table(&env, S_NAT4_TCP, S_NAT4_TCP, NAT_REALS4, EQUAL, 3) == 0, "table restore");
    return rc;
}

/* Truncations of NAT packets (forward, SYN with TOA, and replies whose
 * entries exist): never sent, never rewritten. */
static int t_trunc_nat(void)
{
    struct tl_frame f = to_svc(S_NAT4_TCP, false), r;
    struct nat_res res;
    struct pkt p;

    if (sweep_frame(to_svc(S_FNAT4_TCP, false), "FullNAT IPv4 SYN") ||
        sweep_frame(to_svc(S_FNAT6_UDP, true), "FullNAT IPv6 UDP VLAN") ||
        sweep_frame(to_svc(S_NAT6_TCP, false), "NAT IPv6 TCP"))
        return -1;
    if (nat_forward(S_NAT4_TCP, &f, false, &res))
        return -1;
    memset(&r, 0, sizeof(r));
    memcpy(r.dmac, LB_MAC, 6);
    real_addr(res.real, &r.src);
    r.dst = f.src;
    r.proto = 6;
    r.sport = NAT_RPORT;
    r.dport = f.sport;
    r.payload_len = 20;
    tl_build(&p, &r);
    return sweep(&p, "NAT IPv4 reply");
}

/* The forwarder's checksums match a from-scratch computation for many
 * addresses and ports, both ways (the 0x0000/0xffff corner included). */
static int t_nat_csum_sweep(void)
{
    for (int i = 0; i < 400; i++) {
        int svc = (int[]){ S_NAT4_UDP, S_FNAT4_UDP, S_NAT6_UDP, S_FNAT6_TCP }[i % 4];
        struct tl_frame f = to_svc(svc, false);
        struct nat_res res;

        f.src.a[15] = (uint8_t)(i * 31);
        f.src.a[13] = (uint8_t)(i * 7);
        f.sport = (uint16_t)(i * 2654435761u >> 16);
        f.payload_len = (size_t)(i % 37);
        f.tcp_flags = 0x10;
        if (nat_forward(svc, &f, false, &res) || nat_reply(svc, &f, &res, env.cpu)) {
            fprintf(stderr, "    (flow %d)\n", i);
            return -1;
        }
    }
    return 0;
}

static const struct fixture fixtures[] = {
    { "FullNAT: 3000 flows, no local address and port handed out twice", t_fnat_unique_ports },
    { "FullNAT: 64-port pool, 150 flows: exhaustion dropped and counted", t_fnat_exhaustion },
    { "FullNAT: a port comes back after the idle / FIN / RST timeouts", t_fnat_port_reuse },
    { "NAT UDP checksum 0: kept in IPv4, dropped in IPv6", t_nat_udp_zero_csum },
    { "NAT replies: no entry, lookups off, FullNAT from the wrong real or port: pass", t_nat_reply_miss },
    { "NAT SYN guard: over the cap dropped, established flows go on", t_nat_guard },
    { "NAT flow to an inactive real is re-picked", t_nat_inactive_real },
    { "NAT checksums: 400 flows both ways vs from-scratch", t_nat_csum_sweep },
    { "truncations: NAT and FullNAT, forward and reply", t_trunc_nat },
};

void suite_nat(void)
{
    for (size_t i = 0; i < sizeof(nat_cases) / sizeof(nat_cases[0]); i++) {
        bool ok = run_nat_case(&nat_cases[i]) == 0;

        report(ok, "forward + reply on CPU %d and %d: %s", other_cpu(), env.cpu, nat_cases[i].name);
    }
    RUN_FIXTURES(fixtures);
}
