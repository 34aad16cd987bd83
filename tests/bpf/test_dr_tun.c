/* DR and TUN forwarding fixtures: the forwarding matrix (both families,
 * VLAN tags, IPIP / IP6IP6 / 4in6 / 6in4, GUE, a stateless VIP), Maglev
 * consistency with the user-space builder, the connection table across
 * table changes and inactive reals, table swaps, the SYN guard, redirect,
 * the tunnel MTU and source prefixes, truncations. */
#include "fixtures.h"

/* ---- forwarding matrix (table-driven) ---- */

static const struct fwd_case {
    const char *name;
    int svc;
    bool vlan;
} fwd_cases[] = {
    { "DR  IPv4 TCP", S_DR4_TCP, false },
    { "DR  IPv4 UDP (weighted)", S_DR4_UDP, false },
    { "DR  IPv6 TCP", S_DR6_TCP, false },
    { "DR  IPv6 UDP", S_DR6_UDP, false },
    { "DR  IPv4 TCP, VLAN tag", S_DR4_TCP, true },
    { "DR  IPv6 UDP, VLAN tag", S_DR6_UDP, true },
    { "TUN IPIP    TCP", S_TUN4_TCP, false },
    { "TUN IPIP    UDP", S_TUN4_UDP, false },
    { "TUN IP6IP6  TCP", S_TUN6_TCP, false },
    { "TUN IP6IP6  UDP", S_TUN6_UDP, false },
    { "TUN IPIP    TCP, VLAN tag", S_TUN4_TCP, true },
    { "TUN IP6IP6  UDP, VLAN tag", S_TUN6_UDP, true },
    { "TUN 4in6    TCP (IPv4 VIP, IPv6 real)", S_4IN6, false },
    { "TUN 6in4    TCP (IPv6 VIP, IPv4 real)", S_6IN4, false },
    { "DR  stateless VIP (no conn table)", S_NOCT, false },
    { "TUN GUE 4in4 TCP", S_GUE4_TCP, false },
    { "TUN GUE 4in4 UDP", S_GUE4_UDP, false },
    { "TUN GUE 6in6 TCP", S_GUE6_TCP, false },
    { "TUN GUE 6in6 UDP", S_GUE6_UDP, false },
    { "TUN GUE 4in4 TCP, VLAN tag", S_GUE4_TCP, true },
    { "TUN GUE 6in6 UDP, VLAN tag", S_GUE6_UDP, true },
    { "TUN GUE 4in6 TCP (IPv4 VIP, IPv6 real)", S_GUE_4IN6, false },
    { "TUN GUE 6in4 TCP (IPv6 VIP, IPv4 real)", S_GUE_6IN4, false },
};

static int run_fwd_case(const struct fwd_case *c)
{
    struct tl_frame f = to_svc(c->svc, c->vlan);
    const struct tl_svc *s = &env.svcs[c->svc];
    struct l4_counter vs, rs;
    struct l4_flow_key k;
    struct l4_conn conn;
    struct pkt in, exp;
    uint32_t real = tl_maglev_real(&env, c->svc, &f), hash = tl_flow_hash(&env, &f);
    bool tun = s->meta.mode == L4_MODE_TUN, noct = s->meta.flags & L4_VIP_F_NO_CT;

    CHECK(real != 0, "no real in the user-space table");
    tl_build(&in, &f);
    if (tun)
        expect_tun_svc(&exp, &in, tl_l3_off(&f), c->svc, real, hash);
    else
        expect_dr(&exp, &f, real);
    CHECK(tl_counter(env.fd_vip_stats, s->meta.svc, &vs) == 0, "vip stats");
    CHECK(tl_counter(env.fd_real_stats, real, &rs) == 0, "real stats");

    if (run_expect(&in, XDP_TX, &exp, tun ? L4_R_FWD_TUN : L4_R_FWD_DR))
        return -1;
    CHECK(delta[L4_R_CT_MISS] == (noct ? 0u : 1u), "ct_miss +%llu", (unsigned long long)delta[L4_R_CT_MISS]);
    CHECK(delta[L4_R_CT_HIT] == 0, "ct_hit on a new flow");
    if (counter_delta(env.fd_vip_stats, s->meta.svc, &vs, 1, in.len) ||
        counter_delta(env.fd_real_stats, real, &rs, 1, in.len))
        return -1;
    tl_flow_key(&f, &k);
    if (noct) {
        CHECK(tl_conn_get(&env, &k, &conn) != 0, "stateless VIP created a conn entry");
    } else {
        CHECK(tl_conn_get(&env, &k, &conn) == 0, "no conn entry after a miss");
        CHECK(conn.real == real, "conn entry says real %u, want %u", conn.real, real);
        CHECK(conn.hash == hash, "BPF flow hash %#x, user space %#x", conn.hash, hash);
    }

    /* The same flow again: a hit (or Maglev again), byte-identical output. */
    if (run_expect(&in, XDP_TX, &exp, tun ? L4_R_FWD_TUN : L4_R_FWD_DR))
        return -1;
    CHECK(delta[L4_R_CT_HIT] == (noct ? 0u : 1u), "second packet: ct_hit +%llu",
          (unsigned long long)delta[L4_R_CT_HIT]);
    return 0;
}

/* ---- Maglev ---- */

/* Maglev consistency: for many flows, the real the kernel picks is the one
 * maglev_lookup() gives for the flow hash computed in user space. */
static int maglev_consistency(int svc, int n)
{
    const struct tl_svc *s = &env.svcs[svc];
    uint32_t counts[TL_MAX_REALS] = { 0 };

    for (int i = 0; i < n; i++) {
        struct tl_frame f = to_svc(svc, false);
        struct pkt in, exp;
        uint32_t real;

        /* vary the client address too, not just the port */
        f.src.a[15] = (uint8_t)(i * 7);
        f.src.a[14] = (uint8_t)(i >> 3);
        real = tl_maglev_real(&env, svc, &f);
        tl_build(&in, &f);
        if (s->meta.mode == L4_MODE_TUN)
            expect_tun(&exp, &in, 14, real, tl_flow_hash(&env, &f));
        else
            expect_dr(&exp, &f, real);
        if (run_expect(&in, XDP_TX, &exp, s->meta.mode == L4_MODE_TUN ? L4_R_FWD_TUN : L4_R_FWD_DR)) {
            fprintf(stderr, "    (flow %d)\n", i);
            return -1;
        }
        counts[real]++;
    }
    /* Every real got some flows (3 reals, weights >= 1, n >= 300). */
    for (size_t i = 0; i < s->n; i++)
        CHECK(counts[s->reals[i]] > 0, "real %u got no flows out of %d", s->reals[i], n);
    return 0;
}

static int t_maglev_dr4(void) { return maglev_consistency(S_DR4_TCP, 400); }
static int t_maglev_dr4_weighted(void) { return maglev_consistency(S_DR4_UDP, 400); }
static int t_maglev_dr6(void) { return maglev_consistency(S_DR6_TCP, 300); }
static int t_maglev_tun6(void) { return maglev_consistency(S_TUN6_UDP, 300); }

/* A second load with a small prime M (configurable at load time): the
 * kernel's slot is still the user space's. */
static int t_small_m(void)
{
    struct tl_env saved = env;
    const uint32_t w[3] = { 5, 1, 1 };
    uint8_t mac[6];
    int rc = -1, err;

    err = tl_env_open(&env, 251, 2, 0x12345678);
    if (err) {
        env = saved;
        CHECK(0, "second load: %s", strerror(-err));
    }
    for (uint32_t i = 1; i <= 3; i++) {
        real_mac(i, mac);
        if (tl_set_real(&env, i, saved.reals[i].name, mac, true))
            goto out;
    }
    if (tl_set_cfg(&env, &saved.cfg) ||
        tl_add_service(&env, 0, 1, VIP_DR4, 80, 6, L4_MODE_DR, 0, REALS4, w, 3))
        goto out;
    rc = maglev_consistency(0, 300);
out:
    tl_env_close(&env);
    env = saved;
    return rc;
}

/* ---- the connection table, table changes, l4_config ---- */

/* The connection table holds a flow on its real when the Maglev table moves
 * it; deleting the entry lets the new table decide. */
static int t_ct_survives_table_change(void)
{
    struct tl_frame f = to_svc(S_DR4_TCP, false);
    struct pkt in, exp;
    uint32_t first = tl_maglev_real(&env, S_DR4_TCP, &f), other[2], n = 0, w[2] = { 1, 1 };
    struct l4_flow_key k;
    int rc = -1;

    tl_build(&in, &f);
    expect_dr(&exp, &f, first);
    if (run_expect(&in, XDP_TX, &exp, L4_R_FWD_DR))
        return -1;
    for (int i = 0; i < 3; i++)
        if (REALS4[i] != first)
            other[n++] = REALS4[i];
    /* the first real leaves the table (e.g. drained to weight 0) */
    CHECK(tl_build_table(&env, S_DR4_TCP, S_DR4_TCP, other, w, 2) == 0, "table rebuild");
    if (run_expect(&in, XDP_TX, &exp, L4_R_FWD_DR))
        goto out;
    if (delta[L4_R_CT_HIT] != 1) {
        fprintf(stderr, "    established flow did not hit the table\n");
        goto out;
    }
    tl_flow_key(&f, &k);
    if (tl_conn_del(&env, &k) != 0) {
        fprintf(stderr, "    conn delete failed\n");
        goto out;
    }
    expect_dr(&exp, &f, tl_maglev_real(&env, S_DR4_TCP, &f));
    if (exp.b[5] == (uint8_t)first) {
        fprintf(stderr, "    new table still picks the old real\n");
        goto out;
    }
    if (run_expect(&in, XDP_TX, &exp, L4_R_FWD_DR))
        goto out;
    rc = 0;
out:
    CHECK(tl_build_table(&env, S_DR4_TCP, S_DR4_TCP, REALS4, EQUAL, 3) == 0, "table restore");
    return rc;
}

/* A real that goes inactive loses its flows at once: the entry is treated
 * as a miss and rewritten with Maglev's choice. */
static int t_ct_inactive_real(void)
{
    struct tl_frame f = to_svc(S_DR4_TCP, false);
    struct pkt in, exp;
    uint32_t first = tl_maglev_real(&env, S_DR4_TCP, &f), other[2], n = 0, w[2] = { 1, 1 }, now;
    struct l4_flow_key k;
    struct l4_conn c;
    uint8_t mac[6];
    int rc = -1;

    tl_build(&in, &f);
    expect_dr(&exp, &f, first);
    if (run_expect(&in, XDP_TX, &exp, L4_R_FWD_DR))
        return -1;
    for (int i = 0; i < 3; i++)
        if (REALS4[i] != first)
            other[n++] = REALS4[i];
    real_mac(first, mac);
    CHECK(tl_set_real(&env, first, env.reals[first].name, mac, false) == 0, "deactivate");
    CHECK(tl_build_table(&env, S_DR4_TCP, S_DR4_TCP, other, w, 2) == 0, "table rebuild");
    now = tl_maglev_real(&env, S_DR4_TCP, &f);
    expect_dr(&exp, &f, now);
    if (run_expect(&in, XDP_TX, &exp, L4_R_FWD_DR))
        goto out;
    if (delta[L4_R_CT_MISS] != 1) {
        fprintf(stderr, "    entry to an inactive real was not a miss\n");
        goto out;
    }
    tl_flow_key(&f, &k);
    if (tl_conn_get(&env, &k, &c) != 0 || c.real != now) {
        fprintf(stderr, "    entry not rewritten to the new real\n");
        goto out;
    }
    rc = 0;
out:
    CHECK(tl_set_real(&env, first, env.reals[first].name, mac, true) == 0, "reactivate");
    CHECK(tl_build_table(&env, S_DR4_TCP, S_DR4_TCP, REALS4, EQUAL, 3) == 0, "table restore");
    return rc;
}

/* Atomic swap: a service's table id flips to a table prepared beside it. */
static int t_table_swap(void)
{
    const uint32_t only[1] = { 8 }, w[1] = { 1 };
    struct tl_frame f = to_svc(S_DR4_UDP, false);
    struct pkt in, exp;
    int rc;

    CHECK(tl_build_table(&env, S_DR4_UDP, T_SPARE, only, w, 1) == 0, "spare table");
    CHECK(tl_set_vip_table(&env, S_DR4_UDP, T_SPARE) == 0, "flip");
    tl_build(&in, &f);
    expect_dr(&exp, &f, 8);
    rc = run_expect(&in, XDP_TX, &exp, L4_R_FWD_DR);
    CHECK(tl_build_table(&env, S_DR4_UDP, S_DR4_UDP, REALS4, WEIGHTED, 3) == 0, "rebuild");
    CHECK(tl_set_vip_table(&env, S_DR4_UDP, S_DR4_UDP) == 0, "flip back");
    return rc;
}

/* A table id past maglev_tables must not index someone else's slots. */
static int t_table_id_out_of_range(void)
{
    struct tl_frame f = to_svc(S_DR4_UDP, false);
    struct pkt in;
    int rc;

    CHECK(tl_set_vip_table(&env, S_DR4_UDP, env.tables) == 0, "flip");
    tl_build(&in, &f);
    rc = run_expect(&in, XDP_DROP, NULL, L4_R_DROP_NO_REAL);
    CHECK(tl_set_vip_table(&env, S_DR4_UDP, S_DR4_UDP) == 0, "flip back");
    return rc;
}

/* SYN guard: with a cap of 3 new entries per second, 5 new flows are all
 * forwarded to their Maglev real, only the first 3 are remembered. */
static int t_syn_guard(void)
{
    struct l4_cfg saved = env.cfg, cfg = env.cfg;
    struct tl_frame f[5];
    struct pkt in, exp;
    int rc = -1, i;

    cfg.new_flow_cap = 3;
    CHECK(tl_set_cfg(&env, &cfg) == 0 && tl_flood_reset(&env) == 0, "config");
    for (i = 0; i < 5; i++) {
        struct l4_flow_key k;
        struct l4_conn c;

        f[i] = to_svc(S_DR4_TCP, false);
        tl_build(&in, &f[i]);
        expect_dr(&exp, &f[i], tl_maglev_real(&env, S_DR4_TCP, &f[i]));
        if (run_expect(&in, XDP_TX, &exp, L4_R_FWD_DR))
            goto out;
        if (delta[L4_R_CT_GUARD_SKIP] != (i < 3 ? 0u : 1u)) {
            fprintf(stderr, "    flow %d: guard skip +%llu\n", i, (unsigned long long)delta[L4_R_CT_GUARD_SKIP]);
            goto out;
        }
        tl_flow_key(&f[i], &k);
        if ((tl_conn_get(&env, &k, &c) == 0 && c.real != 0) != (i < 3)) {
            fprintf(stderr, "    flow %d: entry %s\n", i, i < 3 ? "missing" : "inserted over the cap");
            goto out;
        }
    }
    /* Flows over the cap keep working, statelessly: misses, same real. */
    tl_build(&in, &f[4]);
    expect_dr(&exp, &f[4], tl_maglev_real(&env, S_DR4_TCP, &f[4]));
    if (run_expect(&in, XDP_TX, &exp, L4_R_FWD_DR))
        goto out;
    if (delta[L4_R_CT_MISS] != 1 || delta[L4_R_CT_GUARD_SKIP] != 1) {
        fprintf(stderr, "    flow over the cap was not a guarded miss\n");
        goto out;
    }
    rc = 0;
out:
    CHECK(tl_set_cfg(&env, &saved) == 0, "config");
    return rc;
}

/* Two-arm setups: bpf_redirect() to the configured interface instead of
 * XDP_TX; the bytes are the same. */
static int t_redirect(void)
{
    struct l4_cfg saved = env.cfg, cfg = env.cfg;
    struct tl_frame f = to_svc(S_DR6_TCP, false);
    struct pkt in, exp;
    int rc;

    cfg.tx_ifindex = 1;
    CHECK(tl_set_cfg(&env, &cfg) == 0, "config");
    tl_build(&in, &f);
    expect_dr(&exp, &f, tl_maglev_real(&env, S_DR6_TCP, &f));
    rc = run_expect(&in, XDP_REDIRECT, &exp, L4_R_FWD_DR);
    CHECK(tl_set_cfg(&env, &saved) == 0, "config");
    return rc;
}

/* TUN MTU: a packet that would not fit and may be fragmented (IPv4
 * without DF) is dropped before any change (XDP cannot fragment). */
static int t_tun_too_big(void)
{
    struct l4_cfg saved = env.cfg, cfg = env.cfg;
    struct tl_frame f = to_svc(S_TUN4_TCP, false);
    struct pkt in, exp;
    int rc;

    f.payload_len = 1441; /* 1481-byte datagram: 1501 with the outer header */
    cfg.tun_mtu = 1500;
    CHECK(tl_set_cfg(&env, &cfg) == 0, "config");
    tl_build(&in, &f);
    rc = run_expect(&in, XDP_DROP, NULL, L4_R_DROP_TOO_BIG);
    if (!rc) {
        f = to_svc(S_TUN4_TCP, false);
        f.payload_len = 1440; /* exactly 1500 outer: fits */
        tl_build(&in, &f);
        expect_tun(&exp, &in, 14, tl_maglev_real(&env, S_TUN4_TCP, &f), tl_flow_hash(&env, &f));
        rc = run_expect(&in, XDP_TX, &exp, L4_R_FWD_TUN);
    }
    CHECK(tl_set_cfg(&env, &saved) == 0, "config");
    return rc;
}

/* TUN with Ethernet padding: the outer length comes from the IP header, not
 * the frame, and the padding stays behind the datagram. */
static int t_tun_padding(void)
{
    struct tl_frame f = to_svc(S_TUN4_UDP, false);
    struct pkt in, exp;

    f.payload_len = 2;
    f.pad_to = 60;
    tl_build(&in, &f);
    expect_tun(&exp, &in, 14, tl_maglev_real(&env, S_TUN4_UDP, &f), tl_flow_hash(&env, &f));
    return run_expect(&in, XDP_TX, &exp, L4_R_FWD_TUN);
}

/* Other tunnel source prefixes: a /32 (one fixed source) and an IPv6 /120
 * (only the last 8 bits vary). */
static int t_tun_prefixes(void)
{
    struct l4_cfg saved = env.cfg, cfg = env.cfg;
    struct tl_frame f;
    struct pkt in, exp;
    int rc;

    cfg.tun_src4_plen = 32;
    cfg.tun_src6_plen = 120;
    CHECK(tl_set_cfg(&env, &cfg) == 0, "config");
    f = to_svc(S_TUN4_TCP, false);
    tl_build(&in, &f);
    expect_tun(&exp, &in, 14, tl_maglev_real(&env, S_TUN4_TCP, &f), tl_flow_hash(&env, &f));
    rc = run_expect(&in, XDP_TX, &exp, L4_R_FWD_TUN);
    if (!rc && memcmp(out.b + 14 + 12, &cfg.tun_src4, 4) != 0) {
        fprintf(stderr, "    /32 prefix: source is not the prefix itself\n");
        rc = -1;
    }
    if (!rc) {
        f = to_svc(S_TUN6_TCP, false);
        tl_build(&in, &f);
        expect_tun(&exp, &in, 14, tl_maglev_real(&env, S_TUN6_TCP, &f), tl_flow_hash(&env, &f));
        rc = run_expect(&in, XDP_TX, &exp, L4_R_FWD_TUN);
    }
    CHECK(tl_set_cfg(&env, &saved) == 0, "config");
    return rc;
}

/* ---- truncations (sweep(): every length of a valid packet) ---- */

static int t_trunc_dr4_tcp(void) { return sweep_frame(to_svc(S_DR4_TCP, false), "DR IPv4 TCP"); }
static int t_trunc_dr4_vlan(void) { return sweep_frame(to_svc(S_DR4_UDP, true), "DR IPv4 UDP VLAN"); }
static int t_trunc_dr6_udp(void) { return sweep_frame(to_svc(S_DR6_UDP, false), "DR IPv6 UDP"); }
static int t_trunc_tun4(void) { return sweep_frame(to_svc(S_TUN4_TCP, false), "TUN IPv4 TCP"); }
static int t_trunc_tun6(void) { return sweep_frame(to_svc(S_TUN6_UDP, true), "TUN IPv6 UDP VLAN"); }

static const struct fixture fixtures[] = {
    { "Maglev consistency: DR IPv4, 400 flows", t_maglev_dr4 },
    { "Maglev consistency: DR IPv4 weighted 1:2:3, 400 flows", t_maglev_dr4_weighted },
    { "Maglev consistency: DR IPv6, 300 flows", t_maglev_dr6 },
    { "Maglev consistency: TUN IPv6, 300 flows", t_maglev_tun6 },
    { "Maglev consistency: M = 251 set at load time", t_small_m },
    { "conn table keeps a flow when the Maglev table moves it", t_ct_survives_table_change },
    { "conn table entry to an inactive real is re-picked", t_ct_inactive_real },
    { "Maglev table swap by table id", t_table_swap },
    { "table id past maglev_tables is refused", t_table_id_out_of_range },
    { "SYN guard: cap 3, 5 new flows", t_syn_guard },
    { "bpf_redirect when tx_ifindex is set", t_redirect },
    { "TUN: over tun_mtu without DF dropped, exactly at it sent", t_tun_too_big },
    { "TUN: Ethernet padding stays behind the datagram", t_tun_padding },
    { "TUN: /32 and IPv6 /120 source prefixes", t_tun_prefixes },
    { "truncations: DR IPv4 TCP", t_trunc_dr4_tcp },
    { "truncations: DR IPv4 UDP, VLAN", t_trunc_dr4_vlan },
    { "truncations: DR IPv6 UDP", t_trunc_dr6_udp },
    { "truncations: TUN IPv4 TCP", t_trunc_tun4 },
    { "truncations: TUN IPv6 UDP, VLAN", t_trunc_tun6 },
};

void suite_dr_tun(void)
{
    for (size_t i = 0; i < sizeof(fwd_cases) / sizeof(fwd_cases[0]); i++) {
        bool ok = run_fwd_case(&fwd_cases[i]) == 0;

        report(ok, "forward: %s", fwd_cases[i].name);
    }
    RUN_FIXTURES(fixtures);
}
