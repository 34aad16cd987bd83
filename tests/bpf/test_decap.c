/* The decap program (decap.bpf.c), the real-server side of TUN: the
 * forwarder's output through it gives the client's packet back (GUE and
 * IP-in-IP, both families, many sizes); GUE checksums over IPv4; what it
 * must leave to the stack, counted for what it is. */
#include "fixtures.h"
#include "decap.skel.h"
#include "l4/bpf/decap_abi.h"

static struct decap *decap_skel;
static int dfd_prog = -1, dfd_stats = -1, dfd_cfg = -1;

static void decap_close(void)
{
    if (decap_skel)
        decap__destroy(decap_skel);
    decap_skel = NULL;
}

static int decap_set_port(uint16_t port)
{
    struct decap_cfg c = { .gue_port = htons(port) };
    uint32_t zero = 0;

    return bpf_map_update_elem(dfd_cfg, &zero, &c, BPF_ANY);
}

/* Load it, with every real's address as ours and GUE on port 6080, as
 * `sluice l4 decap --gue-port 6080` would. */
static int decap_open(void)
{
    uint8_t one = 1;
    int fd;

    if (decap_skel)
        return 0;
    decap_skel = decap__open_and_load();
    CHECK(decap_skel, "loading decap.bpf.o: %s", strerror(errno));
    dfd_prog = bpf_program__fd(decap_skel->progs.sluice_decap);
    dfd_stats = bpf_map__fd(decap_skel->maps.decap_stats);
    dfd_cfg = bpf_map__fd(decap_skel->maps.decap_config);
    fd = bpf_map__fd(decap_skel->maps.decap_addrs);
    for (uint32_t i = 1; i <= 6; i++)
        CHECK(bpf_map_update_elem(fd, env.reals[i].r.addr, &one, BPF_ANY) == 0, "decap address");
    CHECK(decap_set_port(L4_GUE_DEFAULT_PORT) == 0, "decap config");
    return 0;
}

static int decap_counts(uint64_t c[DECAP_N_REASONS])
{
    for (uint32_t r = 0; r < DECAP_N_REASONS; r++) {
        struct l4_counter sum; /* the same {packets, bytes} layout as decap_count */

        if (tl_counter(dfd_stats, r, &sum))
            return -1;
        c[r] = sum.packets;
    }
    return 0;
}

/* Run `in` through the decap program: the verdict, exactly one reason,
 * and the output (`want`; for a pass other than a decapsulation, and for
 * drops, the input untouched). */
static int decap_expect(const struct pkt *in, uint32_t verdict, const struct pkt *want, enum decap_reason reason)
{
    uint64_t before[DECAP_N_REASONS], after[DECAP_N_REASONS], n = 0;
    struct pkt o;
    uint32_t got;
    int err;

    CHECK(decap_counts(before) == 0, "decap counters");
    err = tl_run(dfd_prog, in, &o, &got);
    CHECK(err == 0, "decap test run: %s", strerror(-err));
    CHECK(decap_counts(after) == 0, "decap counters");
    for (int r = 0; r < DECAP_N_REASONS; r++)
        n += after[r] - before[r];
    CHECK(got == verdict, "decap verdict %s, want %s", tl_verdict_name(got), tl_verdict_name(verdict));
    CHECK(n == 1, "%llu decap reasons for one packet", (unsigned long long)n);
    for (int r = 0; r < DECAP_N_REASONS; r++)
        if (after[r] != before[r] && r != (int)reason)
            CHECK(0, "decap reason %d, want %d", r, (int)reason);
    if (!want)
        want = in;
    if (verdict == XDP_PASS && (o.len != want->len || memcmp(o.b, want->b, want->len) != 0)) {
        tl_hexdump("expected", want->b, want->len);
        tl_hexdump("got", o.b, o.len);
        CHECK(0, "decap output differs");
    }
    return 0;
}

/* The forwarder's output for a flow of svc (its real's MAC, our MAC). */
static int forwarded(const struct tl_frame *f, int svc, struct pkt *fwd, struct pkt *plain)
{
    struct pkt in;
    uint32_t real = tl_maglev_real(&env, svc, f);

    tl_build(&in, f);
    expect_tun_svc(fwd, &in, tl_l3_off(f), svc, real, tl_flow_hash(&env, f));
    if (run_expect(&in, XDP_TX, fwd, L4_R_FWD_TUN))
        return -1;
    /* What the real's stack should get: the client's frame as DR would
     * have delivered it (MACs of the tunnel's last hop, padding kept). */
    expect_dr(plain, f, real);
    return 0;
}

static enum decap_reason gue_kind(const struct tl_frame *f, int svc)
{
    bool outer6 = env.svcs[svc].reals[0] >= 4, inner6 = f->dst.v6;

    if (!(env.svcs[svc].meta.flags & L4_VIP_F_GUE))
        return outer6 ? (inner6 ? DECAP_IP6IP6 : DECAP_4IN6) : (inner6 ? DECAP_6IN4 : DECAP_IPIP);
    return outer6 ? (inner6 ? DECAP_GUE_6IN6 : DECAP_GUE_4IN6) : (inner6 ? DECAP_GUE_6IN4 : DECAP_GUE_4IN4);
}

/* Forwarder -> decap: what the real's stack gets is the client's packet,
 * byte for byte, for every GUE combination (and IPIP still), small and
 * large (several 512-byte checksum chunks), with and without a VLAN tag,
 * with Ethernet padding. */
static int t_decap_gue_roundtrip(void)
{
    static const int svcs[] = { S_GUE4_TCP, S_GUE4_UDP, S_GUE6_TCP, S_GUE6_UDP, S_GUE_4IN6, S_GUE_6IN4,
                                S_TUN4_TCP, S_TUN6_UDP };
    static const size_t sizes[] = { 0, 1, 32, 455, 1203, 1400 };
    struct pkt fwd, plain;
    struct tl_frame f;

    if (decap_open())
        return -1;
    for (size_t i = 0; i < sizeof(svcs) / sizeof(svcs[0]); i++) {
        for (size_t j = 0; j < sizeof(sizes) / sizeof(sizes[0]); j++) {
            f = to_svc(svcs[i], j % 2 == 1);
            f.payload_len = sizes[j];
            if (forwarded(&f, svcs[i], &fwd, &plain) ||
                decap_expect(&fwd, XDP_PASS, &plain, gue_kind(&f, svcs[i]))) {
                fprintf(stderr, "    service %d, payload %zu\n", svcs[i], sizes[j]);
                return -1;
            }
        }
    }
    /* Every length over IPv6, where the checksum is verified (whole
     * chunks, the copied rest, every low byte of the length). */
    for (size_t len = 0; len <= 1500; len++) {
        f = to_svc(len % 2 ? S_GUE6_UDP : S_GUE_4IN6, false);
        f.payload_len = len;
        if (forwarded(&f, len % 2 ? S_GUE6_UDP : S_GUE_4IN6, &fwd, &plain) ||
            decap_expect(&fwd, XDP_PASS, &plain, len % 2 ? DECAP_GUE_6IN6 : DECAP_GUE_4IN6)) {
            fprintf(stderr, "    payload %zu\n", len);
            return -1;
        }
    }
    f = to_svc(S_GUE_4IN6, false);
    f.payload_len = 1;
    f.pad_to = 60;
    if (forwarded(&f, S_GUE_4IN6, &fwd, &plain))
        return -1;
    return decap_expect(&fwd, XDP_PASS, &plain, DECAP_GUE_4IN6);
}

/* Outer IPv4 of a forwarded GUE frame at l3: fix its header checksum. */
static void fix_outer4(struct pkt *p, size_t l3)
{
    p->b[l3 + 10] = p->b[l3 + 11] = 0;
    put16(p->b + l3 + 10, tl_fold(tl_sum(p->b + l3, 20, 0)));
}

/* The UDP checksum of a GUE datagram at l3 (outer IPv4 or IPv6), from
 * scratch. */
static void set_udp_csum(struct pkt *p, size_t l3)
{
    bool v6 = (p->b[l3] >> 4) == 6;
    size_t iphl = v6 ? 40 : 20;
    uint8_t *u = p->b + l3 + iphl, ph[40] = { 0 };
    size_t ulen = (size_t)(u[4] << 8 | u[5]), n;
    uint16_t c;

    if (v6) {
        memcpy(ph, p->b + l3 + 8, 32);
        ph[34] = (uint8_t)(ulen >> 8);
        ph[35] = (uint8_t)ulen;
        ph[39] = 17;
        n = 40;
    } else {
        memcpy(ph, p->b + l3 + 12, 8);
        ph[9] = 17;
        ph[10] = (uint8_t)(ulen >> 8);
        ph[11] = (uint8_t)ulen;
        n = 12;
    }
    put16(u + 6, 0);
    c = tl_fold(tl_sum(u, ulen, tl_sum(ph, n, 0)));
    put16(u + 6, c ? c : 0xffff);
}

/* An IPv4 GUE packet with a UDP checksum (the forwarder sends 0, others
 * may not) is verified, in several chunks for a large one; a wrong one
 * is passed untouched. */
static int t_decap_gue4_csum(void)
{
    struct pkt fwd, plain;
    struct tl_frame f;

    if (decap_open())
        return -1;
    for (size_t len = 10; len < 1500; len += 301) {
        f = to_svc(S_GUE4_UDP, false);
        f.payload_len = len;
        if (forwarded(&f, S_GUE4_UDP, &fwd, &plain))
            return -1;
        set_udp_csum(&fwd, 14);
        if (decap_expect(&fwd, XDP_PASS, &plain, DECAP_GUE_4IN4))
            return -1;
        fwd.b[14 + 20 + 7] ^= 0x01;
        if (decap_expect(&fwd, XDP_PASS, NULL, DECAP_PASS_BAD))
            return -1;
    }
    return 0;
}

/* One forwarded GUE packet, changed so that it is not to be decapsulated:
 * each goes to the stack untouched, counted for what it is. */
static int decap_gue_bad(bool v6)
{
    int svc = v6 ? S_GUE6_TCP : S_GUE4_TCP;
    size_t l3 = 14, iphl = v6 ? 40 : 20, u = l3 + iphl;
    struct pkt good, plain, p;
    struct tl_frame f = to_svc(svc, false);

    if (decap_open() || forwarded(&f, svc, &good, &plain))
        return -1;
    if (decap_expect(&good, XDP_PASS, &plain, v6 ? DECAP_GUE_6IN6 : DECAP_GUE_4IN4))
        return -1;

    /* Another UDP port. */
    p = good;
    put16(p.b + u + 2, 6081);
    if (decap_expect(&p, XDP_PASS, NULL, DECAP_PASS_OTHER))
        return -1;
    /* GUE not asked for: UDP is left alone. */
    CHECK(decap_set_port(0) == 0, "config");
    int rc = decap_expect(&good, XDP_PASS, NULL, DECAP_PASS_OTHER);
    CHECK(decap_set_port(L4_GUE_DEFAULT_PORT) == 0, "config");
    if (rc)
        return rc;
    /* Not addressed to us. */
    p = good;
    p.b[l3 + (v6 ? 39 : 19)] = 99;
    if (!v6)
        fix_outer4(&p, l3);
    else
        set_udp_csum(&p, l3);
    if (decap_expect(&p, XDP_PASS, NULL, DECAP_PASS_NOT_OURS))
        return -1;
    /* Every truncation: the lengths no longer agree. */
    for (size_t len = 14; len < good.len; len++) {
        p = good;
        p.len = len;
        if (decap_expect(&p, XDP_PASS, NULL, DECAP_PASS_BAD)) {
            fprintf(stderr, "    cut to %zu of %zu\n", len, good.len);
            return -1;
        }
    }
    /* A UDP length past the IP payload, one with no inner byte, one that
     * cuts the inner packet short. */
    static const int ulens[] = { +1, -1000, -1 };
    for (size_t i = 0; i < 3; i++) {
        int ulen = (int)(good.b[u + 4] << 8 | good.b[u + 5]) + ulens[i];

        p = good;
        put16(p.b + u + 4, (uint16_t)(ulen < 8 ? 8 : ulen));
        if (v6)
            set_udp_csum(&p, l3);
        if (decap_expect(&p, XDP_PASS, NULL, DECAP_PASS_BAD)) {
            fprintf(stderr, "    UDP length %+d\n", ulens[i]);
            return -1;
        }
    }
    /* Not an IP packet after the UDP header: version 5; and GUE variant
     * 0 (a GUE header first, not handled). */
    p = good;
    p.b[u + 8] = 0x55;
    if (v6)
        set_udp_csum(&p, l3);
    if (decap_expect(&p, XDP_PASS, NULL, DECAP_PASS_BAD))
        return -1;
    p.b[u + 8] = 0x00;
    if (v6)
        set_udp_csum(&p, l3);
    if (decap_expect(&p, XDP_PASS, NULL, DECAP_PASS_UNSUPP))
        return -1;
    if (v6) {
        /* No checksum, or a wrong one: not accepted over IPv6. */
        p = good;
        put16(p.b + u + 6, 0);
        if (decap_expect(&p, XDP_PASS, NULL, DECAP_PASS_BAD))
            return -1;
        p = good;
        p.b[u + 7] ^= 0x10;
        if (decap_expect(&p, XDP_PASS, NULL, DECAP_PASS_BAD))
            return -1;
        /* A corrupted inner byte the checksum covers. */
        p = good;
        p.b[p.len - 1] ^= 0x01;
        return decap_expect(&p, XDP_PASS, NULL, DECAP_PASS_BAD);
    }
    /* IPv4: a first fragment to the port (unsupported), a later one (its
     * bytes are no UDP header: other), options before the UDP header. */
    p = good;
    p.b[l3 + 6] = 0x20; /* MF */
    fix_outer4(&p, l3);
    if (decap_expect(&p, XDP_PASS, NULL, DECAP_PASS_UNSUPP))
        return -1;
    p = good;
    p.b[l3 + 7] = 0x10; /* offset */
    fix_outer4(&p, l3);
    if (decap_expect(&p, XDP_PASS, NULL, DECAP_PASS_OTHER))
        return -1;
    p = good;
    memmove(p.b + u + 4, p.b + u, good.len - u);
    memset(p.b + u, 1, 4); /* four NOP options */
    p.len += 4;
    p.b[l3] = 0x46;
    put16(p.b + l3 + 2, (uint16_t)(good.len - l3 + 4));
    fix_outer4(&p, l3);
    if (decap_expect(&p, XDP_PASS, NULL, DECAP_PASS_UNSUPP))
        return -1;
    /* Outer CE on an inner packet that is not ECN-capable: dropped
     * (RFC 6040), as for IP-in-IP. */
    p = good;
    p.b[l3 + 1] |= 3;
    fix_outer4(&p, l3);
    return decap_expect(&p, XDP_DROP, NULL, DECAP_DROP_ECN);
}

static int t_decap_gue4_bad(void) { return decap_gue_bad(false); }
static int t_decap_gue6_bad(void) { return decap_gue_bad(true); }

static const struct fixture fixtures[] = {
    { "decap: forwarder -> decap gives the client's packet (GUE x 6, IPIP, IP6IP6, sizes, 0..1500 over "
      "IPv6, padding)",
      t_decap_gue_roundtrip },
    { "decap: GUE over IPv4 with a UDP checksum verified, a wrong one passed", t_decap_gue4_csum },
    { "decap: GUE over IPv4: other port, off, not ours, truncations, lengths, versions, frags, options, CE",
      t_decap_gue4_bad },
    { "decap: GUE over IPv6: other port, off, not ours, truncations, lengths, versions, checksums",
      t_decap_gue6_bad },
};

void suite_decap(void)
{
    RUN_FIXTURES(fixtures);
    decap_close();
}
