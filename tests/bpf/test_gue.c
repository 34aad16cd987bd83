/* TUN with GUE (the IP packet in UDP): the UDP checksum over IPv6 for
 * every datagram length, the 0xffff corner, the configured port, source
 * ports from the flow hash, the tunnel MTU, Ethernet padding, truncations. */
#include "fixtures.h"

/* IPv6 outer headers carry a UDP checksum over the whole inner packet:
 * every datagram length from the smallest to 1600 bytes (across the
 * 512-byte chunks the forwarder sums in place and the 1..511 bytes it sums
 * from a copy, odd and even, every low byte of the length), each compared
 * byte for byte with the checksum computed here; then the largest frame
 * the fixtures hold. */
static int gue6_sizes(int svc)
{
    struct tl_frame f = to_svc(svc, false);
    size_t l3 = tl_l3_off(&f), hdrs = (f.dst.v6 ? 40u : 20u) + (f.proto == 6 ? 20u : 8u);
    struct pkt in, exp;

    for (size_t ulen = 8 + hdrs; ulen <= 1600; ulen++) {
        f = to_svc(svc, false);
        f.payload_len = ulen - 8 - hdrs;
        tl_build(&in, &f);
        CHECK(in.len == l3 + ulen - 8 || in.len == 60, "frame length");
        expect_tun_svc(&exp, &in, l3, svc, tl_maglev_real(&env, svc, &f), tl_flow_hash(&env, &f));
        if (run_expect(&in, XDP_TX, &exp, L4_R_FWD_TUN)) {
            fprintf(stderr, "    UDP datagram of %zu bytes\n", ulen);
            return -1;
        }
    }
    f = to_svc(svc, true);
    f.payload_len = PKT_MAX - 18 - 48 - hdrs;
    tl_build(&in, &f);
    expect_tun_svc(&exp, &in, 18, svc, tl_maglev_real(&env, svc, &f), tl_flow_hash(&env, &f));
    return run_expect(&in, XDP_TX, &exp, L4_R_FWD_TUN);
}

static int t_gue6_sizes(void) { return gue6_sizes(S_GUE6_UDP); }
static int t_gue_4in6_sizes(void) { return gue6_sizes(S_GUE_4IN6); }

/* A UDP checksum that comes out as 0 is sent as 0xffff. The last two
 * payload bytes are chosen so that the datagram sums to 0xffff (the inner
 * TCP checksum is left wrong for it: the forwarder does not read it, and
 * the inner checksums are not verified for this one). */
static int t_gue6_csum_ffff(void)
{
    struct tl_frame f = to_svc(S_GUE6_TCP, false);
    uint32_t real = tl_maglev_real(&env, S_GUE6_TCP, &f), hash = tl_flow_hash(&env, &f);
    struct pkt in, exp;
    uint8_t *u, *last;
    uint32_t sum, w;
    int rc;

    f.payload_len = 101;
    tl_build(&in, &f);
    expect_tun_svc(&exp, &in, 14, S_GUE6_TCP, real, hash);
    /* The datagram's sum as sent, checksum field included, is 0xffff;
     * without the field it is ~field. Move it to 0xffff with the last
     * whole payload word. */
    u = exp.b + 14 + 40;
    sum = (uint16_t)~(u[6] << 8 | u[7]);
    last = in.b + in.len - 3;
    w = (uint32_t)(last[0] << 8 | last[1]) + (0xffff - sum);
    w = (w & 0xffff) + (w >> 16);
    put16(last, (uint16_t)w);
    expect_tun_svc(&exp, &in, 14, S_GUE6_TCP, real, hash);
    u = exp.b + 14 + 40;
    CHECK(u[6] == 0xff && u[7] == 0xff, "the fixture did not reach a zero checksum (%02x%02x)", u[6], u[7]);
    tl_gue_port = 0;
    rc = run_expect(&in, XDP_TX, &exp, L4_R_FWD_TUN);
    tl_gue_port = L4_GUE_DEFAULT_PORT;
    return rc;
}

/* l4_config.gue_port picks the destination port (0: 6080). */
static int t_gue_port(void)
{
    struct l4_cfg saved = env.cfg, cfg = env.cfg;
    struct tl_frame f;
    struct pkt in, exp;
    int rc = 0;

    cfg.gue_port = htons(5555);
    CHECK(tl_set_cfg(&env, &cfg) == 0, "config");
    tl_gue_port = 5555;
    for (int svc = S_GUE4_TCP; svc <= S_GUE_6IN4 && !rc; svc++) {
        uint32_t real;
        size_t u;

        f = to_svc(svc, false);
        real = tl_maglev_real(&env, svc, &f);
        u = 14 + ((env.reals[real].r.flags & L4_REAL_F_V6) ? 40 : 20);
        tl_build(&in, &f);
        expect_tun_svc(&exp, &in, 14, svc, real, tl_flow_hash(&env, &f));
        rc = run_expect(&in, XDP_TX, &exp, L4_R_FWD_TUN);
        if (!rc && (out.b[u + 2] << 8 | out.b[u + 3]) != 5555) {
            fprintf(stderr, "    destination port is not 5555\n");
            rc = -1;
        }
    }
    tl_gue_port = L4_GUE_DEFAULT_PORT;
    CHECK(tl_set_cfg(&env, &saved) == 0, "config");
    return rc;
}

/* Different flows get different UDP source ports, all in 49152..65535, and
 * one flow always the same. */
static int t_gue_sports(void)
{
    static uint8_t seen[0x4000];
    struct tl_frame f;
    struct pkt in;
    uint32_t v;
    int distinct = 0;

    memset(seen, 0, sizeof(seen));
    for (int i = 0; i < 200; i++) {
        uint16_t sp;

        f = to_svc(S_GUE4_UDP, false);
        tl_build(&in, &f);
        CHECK(tl_run(env.prog_fd, &in, &out, &v) == 0 && v == XDP_TX, "flow %d not forwarded", i);
        sp = (uint16_t)(out.b[34] << 8 | out.b[35]);
        CHECK(sp >= 49152, "source port %u below 49152", sp);
        CHECK(sp == gue_sport(tl_flow_hash(&env, &f)), "source port %u is not the flow's", sp);
        if (!seen[sp - 49152]++)
            distinct++;
        CHECK(tl_run(env.prog_fd, &in, &out, &v) == 0 && v == XDP_TX, "flow %d again", i);
        CHECK((uint16_t)(out.b[34] << 8 | out.b[35]) == sp, "one flow, two source ports");
    }
    CHECK(distinct >= 190, "only %d source ports for 200 flows", distinct);
    return 0;
}

/* tun_mtu counts the 8 bytes of UDP: IPv4 without DF dropped one byte
 * over, sent exactly at it (IPv4 and IPv6 outer headers). */
static int t_gue_mtu(void)
{
    struct l4_cfg saved = env.cfg, cfg = env.cfg;
    struct tl_frame f;
    struct pkt in, exp;
    int rc;

    cfg.tun_mtu = 1500;
    CHECK(tl_set_cfg(&env, &cfg) == 0, "config");
    f = to_svc(S_GUE4_TCP, false);
    f.payload_len = 1433; /* 1473-byte datagram: 1501 with IPv4 + UDP */
    tl_build(&in, &f);
    rc = run_expect(&in, XDP_DROP, NULL, L4_R_DROP_TOO_BIG);
    if (!rc) {
        f = to_svc(S_GUE4_TCP, false);
        f.payload_len = 1432; /* exactly 1500 */
        tl_build(&in, &f);
        expect_tun_svc(&exp, &in, 14, S_GUE4_TCP, tl_maglev_real(&env, S_GUE4_TCP, &f), tl_flow_hash(&env, &f));
        rc = run_expect(&in, XDP_TX, &exp, L4_R_FWD_TUN);
    }
    if (!rc) {
        f = to_svc(S_GUE6_UDP, false);
        f.payload_len = 1404; /* 1452-byte packet: 1500 with IPv6 + UDP */
        tl_build(&in, &f);
        expect_tun_svc(&exp, &in, 14, S_GUE6_UDP, tl_maglev_real(&env, S_GUE6_UDP, &f), tl_flow_hash(&env, &f));
        rc = run_expect(&in, XDP_TX, &exp, L4_R_FWD_TUN);
    }
    CHECK(tl_set_cfg(&env, &saved) == 0, "config");
    return rc;
}

/* GUE with Ethernet padding (4in6: an IPv4 packet shorter than the
 * Ethernet minimum): the UDP length and checksum cover the datagram, not
 * the padding, which stays behind it. */
static int t_gue_padding(void)
{
    struct tl_frame f = to_svc(S_GUE_4IN6, false);
    struct pkt in, exp;

    f.proto = 6;
    f.payload_len = 1;
    f.pad_to = 60;
    tl_build(&in, &f);
    CHECK(in.len == 60, "no padding in the fixture");
    expect_tun_svc(&exp, &in, 14, S_GUE_4IN6, tl_maglev_real(&env, S_GUE_4IN6, &f), tl_flow_hash(&env, &f));
    return run_expect(&in, XDP_TX, &exp, L4_R_FWD_TUN);
}

static int t_trunc_gue4(void) { return sweep_frame(to_svc(S_GUE4_TCP, false), "GUE IPv4 TCP"); }
static int t_trunc_gue6(void) { return sweep_frame(to_svc(S_GUE6_UDP, true), "GUE IPv6 UDP VLAN"); }

static const struct fixture fixtures[] = {
    { "GUE 6in6 UDP: checksum of every datagram length 56..1600, and the largest frame", t_gue6_sizes },
    { "GUE 4in6 TCP: checksum of every datagram length 48..1600, and the largest frame", t_gue_4in6_sizes },
    { "GUE over IPv6: a checksum that comes out 0 is sent as 0xffff", t_gue6_csum_ffff },
    { "GUE: l4_config.gue_port 5555 for all six combinations", t_gue_port },
    { "GUE: 200 flows, source ports 49152..65535 from the flow hash", t_gue_sports },
    { "GUE: tun_mtu counts 8 more bytes (IPv4 over by 1 dropped, exact fits sent)", t_gue_mtu },
    { "GUE: Ethernet padding stays behind the datagram (4in6)", t_gue_padding },
    { "truncations: GUE IPv4 TCP", t_trunc_gue4 },
    { "truncations: GUE IPv6 UDP, VLAN", t_trunc_gue6 },
};

void suite_gue(void)
{
    RUN_FIXTURES(fixtures);
}
