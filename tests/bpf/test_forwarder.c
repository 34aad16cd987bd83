/* Packet fixtures for the XDP forwarder, run through BPF_PROG_TEST_RUN.
 *
 * Each fixture builds an input frame in C, runs it once through the loaded
 * program, and checks the verdict, the output bytes (against a frame the
 * test builds on its own, not by replaying the program's logic), the
 * checksums (with tl_verify_csums(), which sums bytes differently from the
 * BPF code) and the counters: exactly one disposition reason per packet,
 * plus the events (connection-table hit/miss, SYN-guard skip) expected.
 *
 * Needs root (CAP_BPF + CAP_NET_ADMIN); as non-root it says so and exits 0.
 * The last line is always "N passed, N failed".
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <netinet/in.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <linux/magic.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "core/maglev.h"
#include "l4/bpf/l4_hash.h"
#include "core/toa_lookup.h"
#include "toa.skel.h"
#include "decap.skel.h"
#include "l4/bpf/forwarder_abi.h"
#include "l4/bpf/toa_abi.h"
#include "l4/bpf/decap_abi.h"
#include "l4/conns.h"
#include "l4_testlib.h"

/* ---- the test world ---- */

static const uint8_t LB_MAC[6] = { 0x02, 0x00, 0x00, 0x00, 0x00, 0x01 };
static const uint8_t GW_MAC[6] = { 0x02, 0x00, 0x00, 0x00, 0x00, 0xfe };

#define CLIENT4 "198.51.100.7"
#define CLIENT6 "2001:db8:c::7"
#define ROUTER4 "198.51.100.254"
#define ROUTER6 "2001:db8:c::fe"
#define VIP_DR4 "192.0.2.10"
#define VIP_DR6 "2001:db8::10"
#define VIP_TUN4 "192.0.2.20"
#define VIP_TUN6 "2001:db8::20"
#define VIP_4IN6 "192.0.2.50"
#define VIP_6IN4 "2001:db8::50"
#define VIP_BADMODE "192.0.2.30"
#define VIP_NAT4 "192.0.2.70"
#define VIP_NAT6 "2001:db8::70"
#define VIP_FNAT4 "192.0.2.80"
#define VIP_FNAT6 "2001:db8::80"
#define VIP_FNAT_TINY "192.0.2.81"
#define VIP_FNAT_SMALL "192.0.2.82"
#define VIP_DEAD "192.0.2.40"
#define VIP_NOCT "192.0.2.60"
#define VIP_SH4 "192.0.2.90"
#define VIP_SH6 "2001:db8::90"
#define VIP_RR4 "192.0.2.91"
#define VIP_RR6 "2001:db8::91"
#define VIP_GUE4 "192.0.2.100"
#define VIP_GUE6 "2001:db8::100"
#define VIP_GUE_4IN6 "192.0.2.101"
#define VIP_GUE_6IN4 "2001:db8::101"

enum {
    S_DR4_TCP, S_DR4_UDP, S_DR6_TCP, S_DR6_UDP,
    S_TUN4_TCP, S_TUN4_UDP, S_TUN6_TCP, S_TUN6_UDP,
    S_4IN6, S_6IN4, S_BADMODE, S_DEAD, S_NOCT,
    S_NAT4_TCP, S_NAT4_UDP, S_NAT6_TCP, S_NAT6_UDP,
    S_FNAT4_TCP, S_FNAT4_UDP, S_FNAT6_TCP, S_FNAT6_UDP,
    S_FNAT_TINY, S_FNAT_SMALL,
    S_SH4, S_SH6, S_RR4, S_RR6,
    S_GUE4_TCP, S_GUE4_UDP, S_GUE6_TCP, S_GUE6_UDP, S_GUE_4IN6, S_GUE_6IN4,
    S__COUNT
};
#define N_TABLES 40 /* > S__COUNT: one table per service, plus a spare */
#define T_SPARE 39  /* a free Maglev table id for the swap test */
#define MODE_UNKNOWN 9

static const uint32_t REALS4[] = { 1, 2, 3 };
static const uint32_t REALS6[] = { 4, 5, 6 };
static const uint32_t EQUAL[] = { 1, 1, 1 };
static const uint32_t WEIGHTED[] = { 1, 2, 3 };
static const uint32_t NAT_REALS4[] = { 9, 10, 11 };
static const uint32_t NAT_REALS6[] = { 12, 13, 14 };
static const uint32_t FNAT_REALS4[] = { 15, 16, 17 };
#define NAT_RPORT 8080

static struct tl_env env;
static uint16_t port_seq = 20000;

static uint16_t next_port(void)
{
    return port_seq++;
}

static void real_mac(uint32_t idx, uint8_t mac[6])
{
    const uint8_t base[6] = { 0x02, 0x00, 0x00, 0x00, 0x01, 0x00 };

    memcpy(mac, base, 6);
    mac[5] = (uint8_t)idx;
}

/* ---- reporting ---- */

static char fail_msg[512];

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            snprintf(fail_msg, sizeof(fail_msg), __VA_ARGS__);                                     \
            fprintf(stderr, "    at %s:%d: %s\n", __FILE__, __LINE__, fail_msg);                   \
            return -1;                                                                             \
        }                                                                                          \
    } while (0)

/* ---- frames ---- */

static struct tl_frame frame(const char *src, const char *dst, uint8_t proto, uint16_t sport, uint16_t dport)
{
    struct tl_frame f;

    memset(&f, 0, sizeof(f));
    memcpy(f.dmac, LB_MAC, 6);
    memcpy(f.smac, GW_MAC, 6);
    if (tl_addr_parse(src, &f.src) || tl_addr_parse(dst, &f.dst)) {
        fprintf(stderr, "bad address in fixture: %s or %s\n", src, dst);
        exit(2);
    }
    f.proto = proto;
    f.sport = sport;
    f.dport = dport;
    f.tos = 0x28; /* a DSCP, so TUN's copy of it shows */
    f.payload_len = 32;
    return f;
}

/* The frame a client sends to a service. */
static struct tl_frame to_svc(int svc, bool vlan)
{
    const struct tl_svc *s = &env.svcs[svc];
    char vip[INET6_ADDRSTRLEN];
    bool v6 = !(s->key.addr[0] == 0 && s->key.addr[1] == 0 && s->key.addr[2] == htonl(0xffff));
    struct tl_frame f;

    if (v6)
        inet_ntop(AF_INET6, s->key.addr, vip, sizeof(vip));
    else
        inet_ntop(AF_INET, &s->key.addr[3], vip, sizeof(vip));
    f = frame(v6 ? CLIENT6 : CLIENT4, vip, s->key.proto, next_port(), ntohs(s->key.port));
    f.vlan = vlan;
    f.vlan_tci = vlan ? 100 : 0;
    return f;
}

/* What DR sends: the same frame, MACs rewritten. Built from the fixture's
 * description, not from the input bytes. */
static void expect_dr(struct pkt *exp, const struct tl_frame *f, uint32_t real)
{
    struct tl_frame g = *f;

    memcpy(g.dmac, env.reals[real].r.mac, 6);
    memcpy(g.smac, LB_MAC, 6);
    tl_build(exp, &g);
}

static void put16(uint8_t *p, uint16_t v)
{
    p[0] = v >> 8;
    p[1] = v & 0xff;
}

/* The GUE UDP source port for a flow hash: the spec (49152..65535, the
 * hash's two halves folded), written out again here. */
static uint16_t gue_sport(uint32_t hash)
{
    return (uint16_t)(0xc000 | ((hash ^ (hash >> 16)) & 0x3fff));
}

/* What TUN sends: Ethernet (+ the same VLAN tag) to the real's next hop,
 * an outer header built here field by field, then the input from its IP
 * header on (Ethernet padding included: it stays at the end). With a
 * gue_port (host order) the outer header is followed by a UDP header to
 * that port: GUE variant 1. Its checksum is 0 over IPv4 and computed here
 * over IPv6, with tl_sum() over the pseudo-header, the UDP header and the
 * inner packet (not the padding). */
static void expect_encap(struct pkt *exp, const struct pkt *in, size_t l3, uint32_t real, uint32_t hash,
                         uint16_t gue_port)
{
    const struct l4_real *r = &env.reals[real].r;
    const struct l4_cfg *cfg = &env.cfg;
    bool outer6 = r->flags & L4_REAL_F_V6, gue = gue_port != 0;
    const uint8_t *iip = in->b + l3;
    bool inner6 = (iip[0] >> 4) == 6;
    size_t inner_len = inner6 ? 40u + (size_t)(iip[4] << 8 | iip[5]) : (size_t)(iip[2] << 8 | iip[3]);
    uint8_t tos = inner6 ? (uint8_t)((iip[0] & 0xf) << 4 | iip[1] >> 4) : iip[1];
    size_t iphl = outer6 ? 40 : 20, ohl = iphl + (gue ? 8 : 0);
    uint8_t next = gue ? 17 : inner6 ? 41 : 4;
    uint8_t *b = exp->b, *o, *u;

    memset(exp, 0, sizeof(*exp));
    memcpy(b, r->mac, 6);
    memcpy(b + 6, LB_MAC, 6);
    if (l3 == 18) {
        memcpy(b + 12, in->b + 12, 4); /* TPID and TCI as received */
        put16(b + 16, outer6 ? 0x86dd : 0x0800);
    } else {
        put16(b + 12, outer6 ? 0x86dd : 0x0800);
    }
    o = b + l3;
    if (!outer6) {
        uint32_t plen = cfg->tun_src4_plen, host = plen >= 32 ? 0 : 0xffffffffu >> plen;
        uint32_t src = (ntohl(cfg->tun_src4) & ~host) | (hash & host);

        o[0] = 0x45;
        o[1] = tos;
        put16(o + 2, (uint16_t)(inner_len + ohl));
        put16(o + 6, 0x4000);
        o[8] = L4_TUN_TTL;
        o[9] = next;
        src = htonl(src);
        memcpy(o + 12, &src, 4);
        memcpy(o + 16, &r->addr[3], 4);
        put16(o + 10, tl_fold(tl_sum(o, 20, 0)));
    } else {
        uint32_t plen = cfg->tun_src6_plen;
        uint32_t host = plen >= 128 ? 0 : plen <= 96 ? 0xffffffffu : 0xffffffffu >> (plen - 96);
        uint32_t w0 = (6u << 28) | ((uint32_t)tos << 20) | (hash & 0xfffff), last;

        w0 = htonl(w0);
        memcpy(o, &w0, 4);
        put16(o + 4, (uint16_t)(inner_len + ohl - iphl));
        o[6] = next;
        o[7] = L4_TUN_TTL;
        memcpy(o + 8, cfg->tun_src6, 16);
        last = htonl((ntohl(cfg->tun_src6[3]) & ~host) | (hash & host));
        memcpy(o + 20, &last, 4);
        memcpy(o + 24, r->addr, 16);
    }
    memcpy(o + ohl, in->b + l3, in->len - l3);
    exp->len = in->len + ohl;
    if (!gue)
        return;

    u = o + iphl;
    put16(u, gue_sport(hash));
    put16(u + 2, gue_port);
    put16(u + 4, (uint16_t)(inner_len + 8));
    put16(u + 6, 0);
    if (outer6) {
        uint8_t ph[40] = { 0 };
        uint16_t c;

        memcpy(ph, o + 8, 32); /* source and destination */
        ph[34] = (uint8_t)((inner_len + 8) >> 8);
        ph[35] = (uint8_t)(inner_len + 8);
        ph[39] = 17;
        c = tl_fold(tl_sum(u, inner_len + 8, tl_sum(ph, sizeof(ph), 0)));
        put16(u + 6, c ? c : 0xffff);
    }
}

static void expect_tun(struct pkt *exp, const struct pkt *in, size_t l3, uint32_t real, uint32_t hash)
{
    expect_encap(exp, in, l3, real, hash, 0);
}

/* The GUE port the forwarder should use (host order). */
static uint16_t gue_port_now(void)
{
    return env.cfg.gue_port ? ntohs(env.cfg.gue_port) : L4_GUE_DEFAULT_PORT;
}

/* What a TUN service sends: GUE if the service says so, else IP-in-IP. */
static void expect_tun_svc(struct pkt *exp, const struct pkt *in, size_t l3, int svc, uint32_t real,
                           uint32_t hash)
{
    bool gue = env.svcs[svc].meta.flags & L4_VIP_F_GUE;

    expect_encap(exp, in, l3, real, hash, gue ? gue_port_now() : 0);
}

/* ---- running one packet ---- */

static uint64_t delta[L4_R__COUNT];
static struct pkt out;

static bool is_forward(uint32_t v)
{
    return v == XDP_TX || v == XDP_REDIRECT;
}

/* Run `in`; check the verdict, the output (if `want` is given; for PASS and
 * DROP the output must equal the input whatever `want` says), checksums of
 * anything sent, and that exactly `reason` counted as the disposition.
 * Leaves the counter deltas in delta[]. */
static int run_expect(const struct pkt *in, uint32_t verdict, const struct pkt *want, enum l4_reason reason)
{
    uint64_t before[L4_R__COUNT], after[L4_R__COUNT], disp = 0;
    uint32_t got;
    int err;

    CHECK(tl_reasons(&env, before) == 0, "reading counters");
    err = tl_run(env.prog_fd, in, &out, &got);
    CHECK(err == 0, "BPF_PROG_TEST_RUN: %s", strerror(-err));
    CHECK(tl_reasons(&env, after) == 0, "reading counters");
    for (int r = 0; r < L4_R__COUNT; r++) {
        delta[r] = after[r] - before[r];
        if (r < L4_R__DISPOSITIONS)
            disp += delta[r];
    }
    if (got != verdict) {
        tl_hexdump("input", in->b, in->len);
        tl_hexdump("output", out.b, out.len);
    }
    CHECK(got == verdict, "verdict %s, want %s", tl_verdict_name(got), tl_verdict_name(verdict));
    if (!is_forward(verdict))
        want = in; /* never rewritten */
    if (want && (out.len != want->len || memcmp(out.b, want->b, want->len) != 0)) {
        size_t i = 0;

        while (i < out.len && i < want->len && out.b[i] == want->b[i])
            i++;
        tl_hexdump("expected", want->b, want->len);
        tl_hexdump("got", out.b, out.len);
        CHECK(0, "output differs at byte %zu (len %zu, want %zu)", i, out.len, want->len);
    }
    if (is_forward(got)) {
        uint16_t et = (uint16_t)(out.b[12] << 8 | out.b[13]);
        size_t l3 = (et == 0x8100 || et == 0x88a8) ? 18 : 14;

        CHECK(tl_verify_csums(out.b, out.len, l3) == 0, "bad checksum in output");
    }
    CHECK(disp == 1, "%llu disposition counts for one packet", (unsigned long long)disp);
    CHECK(delta[reason] == 1, "disposition is not %s", l4_reason_names[reason]);
    return 0;
}

static int counter_delta(int fd, uint32_t idx, struct l4_counter *before, uint64_t pkts, uint64_t bytes)
{
    struct l4_counter now;

    CHECK(tl_counter(fd, idx, &now) == 0, "reading stats %u", idx);
    CHECK(now.packets - before->packets == pkts && now.bytes - before->bytes == bytes,
          "stats[%u]: +%llu packets +%llu bytes, want +%llu +%llu", idx,
          (unsigned long long)(now.packets - before->packets),
          (unsigned long long)(now.bytes - before->bytes), (unsigned long long)pkts,
          (unsigned long long)bytes);
    return 0;
}

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

/* ---- malformed, foreign and unsupported packets (table-driven) ---- */

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

/* Recompute an IPv4 header checksum after a deliberate edit, so that the
 * packet is wrong only in the way the fixture means. */
static void fix_ip4(struct pkt *p, size_t l3)
{
    size_t hl = (size_t)(p->b[l3] & 0xf) * 4;

    if (hl < 20)
        hl = 20;
    p->b[l3 + 10] = p->b[l3 + 11] = 0;
    put16(p->b + l3 + 10, tl_fold(tl_sum(p->b + l3, hl, 0)));
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

/* An ICMP error from a router about a packet the real sent from `vip`:`vport`
 * to `client`:`cport`, quoting `quote` bytes of it. */
static void icmp_err(struct pkt *p, bool v6, const char *vip, uint16_t vport, const char *client,
                     uint16_t cport, uint8_t proto, size_t quote)
{
    struct tl_frame inner = frame(vip, client, proto, vport, cport);
    struct tl_frame f;
    struct pkt q;

    inner.payload_len = 64;
    tl_build(&q, &inner);
    if (quote > q.len - 14)
        quote = q.len - 14;
    f = frame(v6 ? ROUTER6 : ROUTER4, vip, v6 ? 58 : 1, 0, 0);
    f.icmp_type = v6 ? 2 : 3;
    f.icmp_code = v6 ? 0 : 4;
    f.icmp_id = 0;
    f.icmp_seq = 1400; /* the next-hop MTU lives in the low 16 bits */
    f.payload = q.b + 14;
    f.payload_len = quote;
    f.tos = 0xc0;
    tl_build(p, &f);
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

/* ---- single fixtures ---- */

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

/* Every truncation of a valid packet passes or drops, untouched. */
static int sweep(const struct pkt *full, const char *what)
{
    for (size_t len = 0; len < full->len; len++) {
        struct pkt in = *full;
        uint64_t before[L4_R__COUNT], after[L4_R__COUNT], disp = 0;
        uint32_t v;
        int err;

        in.len = len;
        CHECK(tl_reasons(&env, before) == 0, "counters");
        err = tl_run(env.prog_fd, &in, &out, &v);
        if (err == -EINVAL && len < 14)
            continue; /* the kernel refuses frames shorter than Ethernet */
        CHECK(err == 0, "%s cut to %zu: test run: %s", what, len, strerror(-err));
        CHECK(v == XDP_PASS || v == XDP_DROP, "%s cut to %zu: %s", what, len, tl_verdict_name(v));
        CHECK(out.len == in.len && memcmp(out.b, in.b, in.len) == 0, "%s cut to %zu: rewritten", what, len);
        CHECK(tl_reasons(&env, after) == 0, "counters");
        for (int r = 0; r < L4_R__DISPOSITIONS; r++)
            disp += after[r] - before[r];
        CHECK(disp == 1, "%s cut to %zu: %llu dispositions", what, len, (unsigned long long)disp);
    }
    return 0;
}

static int sweep_frame(struct tl_frame f, const char *what)
{
    struct pkt p;

    tl_build(&p, &f);
    return sweep(&p, what);
}

static int t_trunc_dr4_tcp(void) { return sweep_frame(to_svc(S_DR4_TCP, false), "DR IPv4 TCP"); }
static int t_trunc_dr4_vlan(void) { return sweep_frame(to_svc(S_DR4_UDP, true), "DR IPv4 UDP VLAN"); }
static int t_trunc_dr6_udp(void) { return sweep_frame(to_svc(S_DR6_UDP, false), "DR IPv6 UDP"); }
static int t_trunc_tun4(void) { return sweep_frame(to_svc(S_TUN4_TCP, false), "TUN IPv4 TCP"); }
static int t_trunc_tun6(void) { return sweep_frame(to_svc(S_TUN6_UDP, true), "TUN IPv6 UDP VLAN"); }
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

/* ---- NAT and FullNAT ---- */

/* What a NAT translation did to a flow, read from the forwarded packet and
 * checked against the configuration (the real Maglev picks, a pool address
 * and port). */
struct nat_res {
    uint32_t real;
    struct tl_addr local;   /* FullNAT: the local address; NAT: the client */
    uint16_t lport;         /* FullNAT: the local port; NAT: the client port */
};

static bool svc_full(int svc)
{
    return env.svcs[svc].meta.mode == L4_MODE_FULLNAT;
}

static uint16_t real_port(uint32_t real, uint16_t vport)
{
    uint16_t p = ntohs(env.reals[real].r.port);

    return p ? p : vport;
}

static void real_addr(uint32_t real, struct tl_addr *a)
{
    memset(a, 0, sizeof(*a));
    memcpy(a->a, env.reals[real].r.addr, 16);
    a->v6 = env.reals[real].r.flags & L4_REAL_F_V6;
}

static int other_cpu(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);

    if (n < 2)
        return env.cpu;
    return env.cpu == 0 ? 1 : 0;
}

/* The pool of each FullNAT service, as setup() configured it. */
static bool in_pool(int svc, const struct tl_addr *a, uint16_t port)
{
    struct l4_nat_pool pool;
    uint32_t key = (uint32_t)svc;
    uint16_t lo, hi;

    if (bpf_map_lookup_elem(env.fd_pools, &key, &pool) != 0)
        return false;
    lo = pool.port_min ? pool.port_min : 1024;
    hi = pool.port_max ? pool.port_max : 65535;
    if (port < lo || port > hi)
        return false;
    for (uint32_t i = 0; i < pool.naddrs; i++)
        if (memcmp(pool.addr[i], a->a, 16) == 0)
            return true;
    return false;
}

static bool same(const struct pkt *a, const struct pkt *b)
{
    if (a->len == b->len && memcmp(a->b, b->b, a->len) == 0)
        return true;
    tl_hexdump("expected", b->b, b->len);
    tl_hexdump("got", a->b, a->len);
    return false;
}

/* The TOA option a FullNAT SYN must carry: kind 200, length 8 or 20, the
 * client's port and address. Built from the fixture's client. */
static size_t toa_bytes(const struct tl_frame *f, uint8_t opt[20])
{
    opt[0] = L4_TOA_KIND;
    put16(opt + 2, f->sport);
    if (f->src.v6) {
        opt[1] = L4_TOA_LEN_V6;
        memcpy(opt + 4, f->src.a, 16);
        return L4_TOA_LEN_V6;
    }
    opt[1] = L4_TOA_LEN_V4;
    memcpy(opt + 4, tl_addr_v4(&f->src), 4);
    return L4_TOA_LEN_V4;
}

/* A client packet of flow f to a NAT/FullNAT service: forwarded, and the
 * output equal to a frame built here from the flow, the real and the local
 * address and port (which are read from the output, then checked to be in
 * the pool). `toa`: the SYN must carry the TOA option (appended after the
 * client's own options, `keep_opts`). */
static int nat_forward(int svc, const struct tl_frame *f, bool toa, struct nat_res *res)
{
    bool full = svc_full(svc);
    size_t l3 = tl_l3_off(f);
    struct tl_frame g = *f;
    struct pkt in, exp;
    uint8_t opts[60], topt[20];
    size_t tl = 0;

    res->real = tl_maglev_real(&env, svc, f);
    CHECK(res->real != 0, "no real in the user-space table");
    tl_build(&in, f);
    if (run_expect(&in, XDP_TX, NULL, full ? L4_R_FWD_FULLNAT : L4_R_FWD_NAT))
        return -1;
    if (full) {
        const uint8_t *ip = out.b + l3;

        memset(&res->local, 0, sizeof(res->local));
        res->local.v6 = f->src.v6;
        if (f->src.v6) {
            memcpy(res->local.a, ip + 8, 16);
            res->lport = (uint16_t)(ip[40] << 8 | ip[41]);
        } else {
            res->local.a[10] = res->local.a[11] = 0xff;
            memcpy(res->local.a + 12, ip + 12, 4);
            res->lport = (uint16_t)(ip[20] << 8 | ip[21]);
        }
        CHECK(in_pool(svc, &res->local, res->lport), "local address/port %u not from the pool", res->lport);
    } else {
        res->local = f->src;
        res->lport = f->sport;
    }

    memcpy(g.dmac, env.reals[res->real].r.mac, 6);
    memcpy(g.smac, LB_MAC, 6);
    real_addr(res->real, &g.dst);
    g.dport = real_port(res->real, f->dport);
    g.src = res->local;
    g.sport = res->lport;
    if (toa) {
        tl = toa_bytes(f, topt);
        memcpy(opts, f->tcp_opt, f->tcp_opt_len);
        memcpy(opts + f->tcp_opt_len, topt, tl);
        g.tcp_opt = opts;
        g.tcp_opt_len = f->tcp_opt_len + tl;
    }
    tl_build(&exp, &g);
    CHECK(same(&out, &exp), "translated packet differs");
    CHECK(delta[L4_R_TOA_ADDED] == (toa ? 1u : 0u), "toa_added +%llu", (unsigned long long)delta[L4_R_TOA_ADDED]);
    return 0;
}

/* The real's reply to flow f, run on `cpu`: translated back to VIP ->
 * client, sent to the MAC the client's packets came from, and counted on
 * that CPU. */
static int nat_reply(int svc, const struct tl_frame *f, const struct nat_res *res, int cpu)
{
    struct tl_frame r, e;
    struct l4_counter before, after;
    struct pkt in, exp;
    int rc, err;

    memset(&r, 0, sizeof(r));
    memcpy(r.dmac, LB_MAC, 6);
    memcpy(r.smac, env.reals[res->real].r.mac, 6);
    r.vlan = f->vlan;
    r.vlan_tci = f->vlan_tci;
    real_addr(res->real, &r.src);
    r.dst = res->local;
    r.proto = f->proto;
    r.sport = real_port(res->real, f->dport);
    r.dport = res->lport;
    r.tcp_flags = 0x12; /* SYN+ACK */
    r.tos = 0x10;
    r.ttl = 63;
    r.payload_len = 40;
    tl_build(&in, &r);

    e = r;
    memcpy(e.dmac, f->smac, 6);
    memcpy(e.smac, LB_MAC, 6);
    e.src = f->dst;
    e.sport = f->dport;
    e.dst = f->src;
    e.dport = f->sport;
    tl_build(&exp, &e);

    CHECK(tl_counter_cpu(env.fd_reasons, L4_R_FWD_NAT_REPLY, cpu, &before) == 0, "per-CPU counter");
    err = tl_run_on_cpu(cpu);
    CHECK(err == 0, "cannot run on CPU %d: %s", cpu, strerror(-err));
    rc = run_expect(&in, XDP_TX, &exp, L4_R_FWD_NAT_REPLY);
    err = tl_run_on_cpu(env.cpu);
    CHECK(err == 0, "cannot return to CPU %d", env.cpu);
    if (rc)
        return rc;
    CHECK(tl_counter_cpu(env.fd_reasons, L4_R_FWD_NAT_REPLY, cpu, &after) == 0, "per-CPU counter");
    CHECK(after.packets == before.packets + 1, "reply not processed on CPU %d", cpu);
    return 0;
}

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

static uint64_t mono_coarse_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
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

/* TOA after the client's own options (MSS, SACK-permitted, timestamps,
 * window scale: 20 bytes), and exactly at the 40-byte limit in IPv6. */
static int t_toa_after_options(void)
{
    static const uint8_t syn_opts[20] = { 2, 4, 0x05, 0xb4, 4, 2, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0, 1, 3, 3, 7 };
    struct tl_frame f = to_svc(S_FNAT4_TCP, false);
    struct nat_res res;

    f.tcp_opt = syn_opts;
    f.tcp_opt_len = sizeof(syn_opts);
    if (nat_forward(S_FNAT4_TCP, &f, true, &res))
        return -1;
    f = to_svc(S_FNAT6_TCP, false); /* 20 + 20 = 40: fits exactly */
    f.tcp_opt = syn_opts;
    f.tcp_opt_len = sizeof(syn_opts);
    return nat_forward(S_FNAT6_TCP, &f, true, &res);
}

/* No room: 36 bytes of options in IPv4 (+8 > 40), 24 in IPv6 (+20 > 40).
 * The SYN is translated and sent without the option, and counted. */
static int t_toa_no_room(void)
{
    uint8_t nops[36];
    struct tl_frame f = to_svc(S_FNAT4_TCP, false);
    struct nat_res res;

    memset(nops, 1, sizeof(nops));
    f.tcp_opt = nops;
    f.tcp_opt_len = 36;
    if (nat_forward(S_FNAT4_TCP, &f, false, &res))
        return -1;
    CHECK(delta[L4_R_TOA_NO_ROOM] == 1, "toa_no_room not counted");
    f = to_svc(S_FNAT6_TCP, true);
    f.tcp_opt = nops;
    f.tcp_opt_len = 24;
    if (nat_forward(S_FNAT6_TCP, &f, false, &res))
        return -1;
    CHECK(delta[L4_R_TOA_NO_ROOM] == 1, "toa_no_room not counted");
    return 0;
}

/* Only a SYN without ACK gets the option: not a SYN+ACK, not data, not in
 * plain NAT. */
static int t_toa_only_syn(void)
{
    struct tl_frame f = to_svc(S_FNAT4_TCP, false);
    struct nat_res res;

    f.tcp_flags = 0x12;
    if (nat_forward(S_FNAT4_TCP, &f, false, &res))
        return -1;
    f = to_svc(S_FNAT4_TCP, false);
    f.tcp_flags = 0x18; /* PSH+ACK */
    if (nat_forward(S_FNAT4_TCP, &f, false, &res))
        return -1;
    f = to_svc(S_NAT4_TCP, false); /* a SYN, but NAT */
    return nat_forward(S_NAT4_TCP, &f, false, &res);
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

/* ---- the real-server side of TOA (toa.bpf.c, toa_lookup.c) ---- */

static struct toa *toa_skel;
static char toa_pin_dir[64], toa_pin[96];

static void toa_close(void)
{
    if (toa_skel)
        toa__destroy(toa_skel);
    toa_skel = NULL;
    if (toa_pin[0])
        unlink(toa_pin);
    if (toa_pin_dir[0])
        rmdir(toa_pin_dir);
    toa_pin[0] = toa_pin_dir[0] = 0;
}

/* A bpffs of the test's own on /sys/fs/bpf, in a mount namespace of the
 * test's own: the host may have no bpffs there (a freshly booted machine
 * has none) and must not get one from us. The namespace, and with it the
 * mount and every pin on it, dies with this process however it ends.
 * Returns 0 or -errno. */
static int private_bpffs(void)
{
    static int done;
    struct statfs st;

    if (done)
        return 0;
    if (unshare(CLONE_NEWNS) != 0)
        return -errno;
    /* Without this, a shared / would carry our mount back to the host. */
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0)
        return -errno;
    if (statfs("/sys/fs/bpf", &st) != 0 || st.f_type != BPF_FS_MAGIC) {
        if (mount("bpf", "/sys/fs/bpf", "bpf", 0, "mode=0700") != 0)
            return -errno;
    }
    done = 1;
    return 0;
}

/* Load toa.bpf.c with its map pinned in a private directory of bpffs, as
 * a real server would under /sys/fs/bpf. */
static int toa_open(void)
{
    LIBBPF_OPTS(bpf_object_open_opts, o);
    int err;

    if (toa_skel)
        return 0;
    err = private_bpffs();
    if (err)
        return err;
    snprintf(toa_pin_dir, sizeof(toa_pin_dir), "/sys/fs/bpf/sluice-test-%d", (int)getpid());
    snprintf(toa_pin, sizeof(toa_pin), "%s/sluice_toa", toa_pin_dir);
    if (mkdir(toa_pin_dir, 0700) != 0 && errno != EEXIST)
        return -errno;
    o.pin_root_path = toa_pin_dir;
    toa_skel = toa__open_opts(&o);
    if (!toa_skel)
        return -errno;
    err = toa__load(toa_skel);
    if (err) {
        toa_close();
        return err;
    }
    return 0;
}

static int toa_run(const struct pkt *in)
{
    uint32_t v;
    struct pkt o;

    CHECK(tl_run(bpf_program__fd(toa_skel->progs.sluice_toa_ingress), in, &o, &v) == 0, "toa test run");
    CHECK(v == 0, "toa program returned %u, not TC_ACT_OK", v);
    CHECK(o.len == in->len && memcmp(o.b, in->b, in->len) == 0, "toa program changed the packet");
    return 0;
}

static void to_sockaddr(const struct tl_addr *a, uint16_t port, struct sockaddr_storage *ss)
{
    memset(ss, 0, sizeof(*ss));
    if (a->v6) {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;

        s6->sin6_family = AF_INET6;
        memcpy(&s6->sin6_addr, a->a, 16);
        s6->sin6_port = htons(port);
    } else {
        struct sockaddr_in *s4 = (struct sockaddr_in *)ss;

        s4->sin_family = AF_INET;
        memcpy(&s4->sin_addr, tl_addr_v4(a), 4);
        s4->sin_port = htons(port);
    }
}

/* Compare what the lookup returned with the fixture's client. */
static int check_client(const struct sockaddr_storage *got, const struct tl_addr *want, uint16_t port)
{
    struct sockaddr_storage w;

    to_sockaddr(want, port, &w);
    CHECK(got->ss_family == w.ss_family, "client family %d, want %d", got->ss_family, w.ss_family);
    CHECK(memcmp(got, &w, got->ss_family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6)) == 0,
          "client address or port differs");
    return 0;
}

/* End to end at the packet level: a client's SYN through the FullNAT
 * forwarder, the output into the real server's TOA reader, then the lookup
 * helper asked as the real's accepting socket would ask (local = the real,
 * peer = the LB's local address and port). The following ACK adds nothing. */
static int toa_e2e(int svc)
{
    struct tl_frame f = to_svc(svc, false);
    struct sockaddr_storage local, peer, client;
    struct nat_res res;
    struct tl_addr raddr;
    struct pkt syn;
    int fd, err;

    CHECK((err = toa_open()) == 0, "loading toa.bpf.c: %s", strerror(-err));
    if (nat_forward(svc, &f, true, &res))
        return -1;
    syn = out;
    if (toa_run(&syn))
        return -1;
    fd = sluice_toa_open(toa_pin);
    CHECK(fd >= 0, "sluice_toa_open: %s", strerror(-fd));
    real_addr(res.real, &raddr);
    to_sockaddr(&raddr, real_port(res.real, f.dport), &local);
    to_sockaddr(&res.local, res.lport, &peer);
    err = sluice_toa_lookup(fd, (struct sockaddr *)&local, (struct sockaddr *)&peer, &client);
    if (err == 0)
        err = check_client(&client, &f.src, f.sport);
    else
        fprintf(stderr, "    lookup: %s\n", strerror(-err));
    /* another peer port: not found */
    if (!err) {
        to_sockaddr(&res.local, (uint16_t)(res.lport + 1), &peer);
        if (sluice_toa_lookup(fd, (struct sockaddr *)&local, (struct sockaddr *)&peer, &client) != -ENOENT) {
            fprintf(stderr, "    lookup of another connection found something\n");
            err = -1;
        }
    }
    close(fd);
    return err ? -1 : 0;
}

static int t_toa_e2e4(void) { return toa_e2e(S_FNAT4_TCP); }
static int t_toa_e2e6(void) { return toa_e2e(S_FNAT6_TCP); }

/* SYNs without the option, a SYN+ACK carrying one, a TOA of the wrong
 * length, an option list that runs past the header: nothing recorded,
 * counted, the packet never changed. */
static int t_toa_reader_ignores(void)
{
    static const uint8_t toa4[8] = { L4_TOA_KIND, 8, 0x12, 0x34, 203, 0, 113, 9 };
    static const uint8_t toa_bad_len[12] = { L4_TOA_KIND, 12, 0x12, 0x34, 203, 0, 113, 9, 0, 0, 0, 0 };
    static const uint8_t runaway[8] = { 1, 1, 2, 4, 5, 0xb4, 8, 10 }; /* TS option cut short */
    struct { const uint8_t *opt; size_t len; uint8_t flags; } cases[] = {
        { NULL, 0, 0x02 }, { toa4, 8, 0x12 }, { toa4, 8, 0x10 }, { toa_bad_len, 12, 0x02 }, { runaway, 8, 0x02 },
    };
    int fd, err;

    CHECK((err = toa_open()) == 0, "loading toa.bpf.c: %s", strerror(-err));
    fd = sluice_toa_open(toa_pin);
    CHECK(fd >= 0, "sluice_toa_open: %s", strerror(-fd));
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct tl_frame f = frame("10.9.5.5", "10.2.0.1", 6, (uint16_t)(30000 + i), 8080);
        struct sockaddr_storage local, peer, client;
        struct pkt p;

        f.tcp_opt = cases[i].opt;
        f.tcp_opt_len = cases[i].len;
        f.tcp_flags = cases[i].flags;
        tl_build(&p, &f);
        if (toa_run(&p)) {
            close(fd);
            return -1;
        }
        to_sockaddr(&f.dst, f.dport, &local);
        to_sockaddr(&f.src, f.sport, &peer);
        if (sluice_toa_lookup(fd, (struct sockaddr *)&local, (struct sockaddr *)&peer, &client) != -ENOENT) {
            close(fd);
            CHECK(0, "case %zu recorded a client", i);
        }
    }
    close(fd);
    return 0;
}

/* The helper on real sockets: a TCP connection over loopback, the SYN the
 * LB would have sent for it (same 4-tuple, TOA 203.0.113.9:4242) through
 * the reader, then sluice_toa_lookup_sock() on the accepted socket. */
static int t_toa_lookup_sock(void)
{
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    struct sockaddr_in cl, sv;
    socklen_t len = sizeof(a);
    static const uint8_t toa4[8] = { L4_TOA_KIND, 8, 0x10, 0x92, 203, 0, 113, 9 };
    struct sockaddr_storage client;
    struct tl_addr want;
    int ls = -1, cs = -1, as = -1, fd = -1, rc = -1, err;
    struct tl_frame f;
    struct pkt p;

    CHECK((err = toa_open()) == 0, "loading toa.bpf.c: %s", strerror(-err));
    ls = socket(AF_INET, SOCK_STREAM, 0);
    cs = socket(AF_INET, SOCK_STREAM, 0);
    if (ls < 0 || cs < 0 || bind(ls, (struct sockaddr *)&a, sizeof(a)) != 0 || listen(ls, 1) != 0 ||
        getsockname(ls, (struct sockaddr *)&a, &len) != 0 || connect(cs, (struct sockaddr *)&a, sizeof(a)) != 0)
        goto out;
    as = accept(ls, NULL, NULL);
    len = sizeof(cl);
    if (as < 0 || getsockname(cs, (struct sockaddr *)&cl, &len) != 0)
        goto out;
    len = sizeof(sv);
    if (getsockname(as, (struct sockaddr *)&sv, &len) != 0)
        goto out;
    f = frame("127.0.0.1", "127.0.0.1", 6, ntohs(cl.sin_port), ntohs(sv.sin_port));
    f.tcp_opt = toa4;
    f.tcp_opt_len = sizeof(toa4);
    tl_build(&p, &f);
    if (toa_run(&p))
        goto out;
    fd = sluice_toa_open(toa_pin);
    if (fd < 0) {
        fprintf(stderr, "    sluice_toa_open: %s\n", strerror(-fd));
        goto out;
    }
    err = sluice_toa_lookup_sock(fd, as, &client);
    if (err) {
        fprintf(stderr, "    sluice_toa_lookup_sock: %s\n", strerror(-err));
        goto out;
    }
    tl_addr_parse("203.0.113.9", &want);
    rc = check_client(&client, &want, 4242);
out:
    if (rc && errno)
        fprintf(stderr, "    socket setup: %s\n", strerror(errno));
    for (int *s = (int[]){ ls, cs, as, fd }, i = 0; i < 4; i++)
        if (s[i] >= 0)
            close(s[i]);
    return rc;
}

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

/* Counters: a disposition per packet, per-VIP and per-real bytes. Checked
 * in every fixture; this one checks the reason names are all set. */
static int t_reason_names(void)
{
    for (int r = 0; r < L4_R__COUNT; r++)
        CHECK(l4_reason_names[r] != NULL, "reason %d has no name", r);
    return 0;
}

/* ---- schedulers ---- */

/* Source hash: every connection of a client goes to the real of its
 * address's hash, whatever its ports; the kernel's choice equals the one
 * computed here with l4_src_hash() and maglev_lookup(). The TUN variant
 * shows the entry still caches the flow hash (outer source, flow label). */
static int src_hash_case(int svc)
{
    const struct tl_svc *s = &env.svcs[svc];
    bool tun = s->meta.mode == L4_MODE_TUN;
    uint32_t counts[TL_MAX_REALS] = { 0 }, used = 0;

    for (int i = 0; i < 40; i++) {
        struct tl_frame f = to_svc(svc, false);
        uint32_t real;

        f.src.a[15] = (uint8_t)(i * 11 + 1);
        f.src.a[14] = (uint8_t)i;
        real = tl_src_hash_real(&env, svc, &f.src);
        CHECK(real != 0, "no real for the client in the user-space table");
        for (int j = 0; j < 2; j++) {
            struct pkt in, exp;
            struct l4_flow_key k;
            struct l4_conn c;

            if (j)
                f.sport = next_port(); /* a second connection of the client */
            tl_build(&in, &f);
            if (tun)
                expect_tun(&exp, &in, 14, real, tl_flow_hash(&env, &f));
            else
                expect_dr(&exp, &f, real);
            if (run_expect(&in, XDP_TX, &exp, tun ? L4_R_FWD_TUN : L4_R_FWD_DR)) {
                fprintf(stderr, "    (client %d, connection %d)\n", i, j);
                return -1;
            }
            tl_flow_key(&f, &k);
            CHECK(tl_conn_get(&env, &k, &c) == 0 && c.real == real, "entry: real %u, want %u", c.real, real);
            CHECK(c.hash == tl_flow_hash(&env, &f), "entry caches %#x, not the flow hash", c.hash);
        }
        if (counts[real]++ == 0)
            used++;
    }
    CHECK(used > 1, "40 clients all went to one real");
    return 0;
}

static int t_src_hash4(void) { return src_hash_case(S_SH4); }
static int t_src_hash6(void) { return src_hash_case(S_SH6); }

static int rr_get(uint32_t svc, struct l4_rr_cursor *c)
{
    struct l4_rr_cursor *all = calloc((size_t)env.ncpus, sizeof(*all));
    int err;

    if (!all)
        return -1;
    err = bpf_map_lookup_elem(env.fd_rr, &svc, all);
    if (!err)
        *c = all[env.cpu];
    free(all);
    return err;
}

/* Set the cursor of every CPU. */
static int rr_set(uint32_t svc, uint32_t next)
{
    struct l4_rr_cursor *all = calloc((size_t)env.ncpus, sizeof(*all));
    int err;

    if (!all)
        return -1;
    for (int i = 0; i < env.ncpus; i++)
        all[i] = (struct l4_rr_cursor){ .next = next, .started = 1 };
    err = bpf_map_update_elem(env.fd_rr, &svc, all, BPF_ANY);
    free(all);
    return err;
}

/* The real at the next slot from *pos whose real is set and active, as the
 * data plane must take it; *pos moves past it. */
static uint32_t rr_expect(const struct tl_svc *s, uint32_t *pos)
{
    for (uint32_t i = 0; i < L4_RR_PROBES; i++) {
        int32_t at = s->table[*pos];
        uint32_t real = at < 0 ? 0 : s->reals[at];

        *pos = (*pos + 1) % env.m;
        if (real && (env.reals[real].r.flags & L4_REAL_F_ACTIVE))
            return real;
    }
    return 0;
}

/* n new flows through an rr service: each takes the next real of the live
 * table in slot order from *pos. */
static int rr_flows(int svc, int n, uint32_t *pos, uint32_t counts[TL_MAX_REALS])
{
    const struct tl_svc *s = &env.svcs[svc];
    struct l4_rr_cursor c;

    for (int i = 0; i < n; i++) {
        struct tl_frame f = to_svc(svc, false);
        uint32_t want = rr_expect(s, pos);
        struct pkt in, exp;

        CHECK(want != 0, "fixture: no active real within %d slots", L4_RR_PROBES);
        tl_build(&in, &f);
        expect_dr(&exp, &f, want);
        if (run_expect(&in, XDP_TX, &exp, L4_R_FWD_DR)) {
            fprintf(stderr, "    (flow %d: want real %u)\n", i, want);
            return -1;
        }
        CHECK(delta[L4_R_CT_MISS] == 1, "flow %d: not a miss", i);
        counts[want]++;
    }
    CHECK(rr_get((uint32_t)svc, &c) == 0, "cursor");
    CHECK(c.started && c.next == *pos, "cursor at %u, want %u", c.next, *pos);
    return 0;
}

/* rr / wrr: new flows take the table's reals in slot order, from a cursor
 * that starts at cpu * M / ncpus; a flow's next packet stays on its real
 * (the connection table); a TCP segment that opens nothing, with no entry,
 * takes the flow-hash slot and leaves the cursor alone. */
static int rr_case(int svc)
{
    const struct tl_svc *s = &env.svcs[svc];
    uint32_t counts[TL_MAX_REALS] = { 0 }, pos;
    struct l4_rr_cursor c;
    struct tl_frame f;
    struct pkt in, exp;

    CHECK(rr_get((uint32_t)svc, &c) == 0, "cursor");
    CHECK(!c.started, "cursor used before the test");
    pos = (uint32_t)((uint64_t)env.cpu * env.m / (uint64_t)env.ncpus);
    if (rr_flows(svc, 60, &pos, counts))
        return -1;
    for (size_t i = 0; i < s->n; i++)
        CHECK(counts[s->reals[i]] > 0, "real %u got none of 60 flows", s->reals[i]);

    /* An established flow: a hit, same real, cursor unmoved. */
    f = to_svc(svc, false);
    tl_build(&in, &f);
    {
        uint32_t p2 = pos, want = rr_expect(s, &p2);

        expect_dr(&exp, &f, want);
        if (run_expect(&in, XDP_TX, &exp, L4_R_FWD_DR))
            return -1;
        pos = p2;
        f.tcp_flags = 0x10; /* ACK */
        tl_build(&in, &f);
        expect_dr(&exp, &f, want);
        if (run_expect(&in, XDP_TX, &exp, L4_R_FWD_DR))
            return -1;
        CHECK(delta[L4_R_CT_HIT] == 1, "second packet not a hit");
    }
    if (f.proto == 6) {
        /* No entry, not a SYN: the flow hash decides. */
        f = to_svc(svc, false);
        f.tcp_flags = 0x10;
        tl_build(&in, &f);
        expect_dr(&exp, &f, tl_maglev_real(&env, svc, &f));
        if (run_expect(&in, XDP_TX, &exp, L4_R_FWD_DR))
            return -1;
    }
    CHECK(rr_get((uint32_t)svc, &c) == 0 && c.next == pos, "cursor moved: %u, want %u", c.next, pos);
    return 0;
}

static int t_rr4(void) { return rr_case(S_RR4); }
static int t_rr6(void) { return rr_case(S_RR6); }

/* rr skips slots of an inactive real (7); a table of inactive reals only
 * drops the flow after L4_RR_PROBES slots. */
static int t_rr_skips_inactive(void)
{
    const uint32_t mixed[3] = { 1, 7, 2 }, dead[1] = { 7 }, w[3] = { 1, 1, 1 };
    uint32_t counts[TL_MAX_REALS] = { 0 }, pos = 0;
    struct l4_rr_cursor c;
    struct tl_frame f;
    struct pkt in;
    int rc = -1;

    CHECK(tl_build_table(&env, S_RR4, T_SPARE, mixed, w, 3) == 0, "spare table");
    CHECK(tl_set_vip_table(&env, S_RR4, T_SPARE) == 0 && rr_set(S_RR4, 0) == 0, "flip");
    if (rr_flows(S_RR4, 40, &pos, counts))
        goto out;
    if (counts[7] != 0 || !counts[1] || !counts[2]) {
        fprintf(stderr, "    reals 1/7/2 got %u/%u/%u flows\n", counts[1], counts[7], counts[2]);
        goto out;
    }
    if (tl_build_table(&env, S_RR4, T_SPARE, dead, w, 1) != 0 || rr_set(S_RR4, 5) != 0)
        goto out;
    f = to_svc(S_RR4, false);
    tl_build(&in, &f);
    if (run_expect(&in, XDP_DROP, NULL, L4_R_DROP_NO_REAL))
        goto out;
    if (rr_get(S_RR4, &c) != 0 || c.next != 5 + L4_RR_PROBES) {
        fprintf(stderr, "    cursor at %u after a failed pick, want %u\n", c.next, 5 + L4_RR_PROBES);
        goto out;
    }
    rc = 0;
out:
    CHECK(tl_build_table(&env, S_RR4, S_RR4, REALS4, WEIGHTED, 3) == 0, "rebuild");
    CHECK(tl_set_vip_table(&env, S_RR4, S_RR4) == 0, "flip back");
    return rc;
}

/* ---- connection counts (src/l4/conns.c) ---- */

static int count_conns(struct l4_conn_count by[TL_MAX_REALS], bool dr, bool nat, uint64_t now)
{
    char err[256] = "";
    int rc = l4_count_conns(dr ? env.fd_conn : -1, dr ? env.fd_conn_shared : -1, nat ? env.fd_nat : -1, now, by,
                            TL_MAX_REALS, err, sizeof(err));

    CHECK(rc == 0, "l4_count_conns: %s", err);
    return 0;
}

static void count_totals(const struct l4_conn_count by[TL_MAX_REALS], uint64_t *active, uint64_t *inactive)
{
    *active = *inactive = 0;
    for (int i = 0; i < TL_MAX_REALS; i++) {
        *active += by[i].active;
        *inactive += by[i].inactive;
    }
}

/* The clock the aging steps count with: at least 1000 s. Entries carry
 * CLOCK_MONOTONIC seconds, which on a freshly booted machine are fewer than
 * the 400 s idle a fixture wants to show; counting "now" that early would
 * put the aged entry in the future, where it counts as just seen. Fixtures
 * that count with this clock age every flow they look at with age_conn(). */
static uint32_t aging_clock(void)
{
    uint32_t now = (uint32_t)(mono_coarse_ns() / 1000000000ull);

    return now < 1000 ? 1000 : now;
}

/* Make a DR/TUN flow look last seen `secs` before `now` (seconds of the
 * clock the count will use), in every copy. */
static int age_conn(const struct tl_frame *f, uint32_t now, uint32_t secs)
{
    struct l4_conn *all = calloc((size_t)env.ncpus, sizeof(*all)), one;
    uint32_t then = now - secs;
    struct l4_flow_key k;
    int rc = -1;

    tl_flow_key(f, &k);
    if (!all)
        return -1;
    if (bpf_map_lookup_elem(env.fd_conn, &k, all) == 0) {
        for (int i = 0; i < env.ncpus; i++)
            if (all[i].real)
                all[i].seen = then;
        if (bpf_map_update_elem(env.fd_conn, &k, all, BPF_EXIST) != 0)
            goto out;
    }
    if (bpf_map_lookup_elem(env.fd_conn_shared, &k, &one) == 0) {
        one.seen = then;
        if (bpf_map_update_elem(env.fd_conn_shared, &k, &one, BPF_EXIST) != 0)
            goto out;
    }
    rc = 0;
out:
    free(all);
    return rc;
}

/* A DR flow's packet on `cpu`. */
static int dr_packet_on(const struct tl_frame *f, int cpu)
{
    struct pkt in, exp;
    int rc, err;

    tl_build(&in, f);
    expect_dr(&exp, f, tl_maglev_real(&env, f->proto == 6 ? S_DR4_TCP : S_DR4_UDP, f));
    err = tl_run_on_cpu(cpu);
    CHECK(err == 0, "cannot run on CPU %d: %s", cpu, strerror(-err));
    rc = run_expect(&in, XDP_TX, &exp, L4_R_FWD_DR);
    err = tl_run_on_cpu(env.cpu);
    CHECK(err == 0, "cannot return to CPU %d", env.cpu);
    return rc;
}

/* Flows go in through BPF_PROG_TEST_RUN, l4_count_conns() reads them
 * back: one count per flow however many copies (per-CPU table on two CPUs,
 * shared table), closing after a FIN, active again after a new SYN on the
 * tuple, inactive when idle 100 s, gone at 400 s. */
static int t_conn_counts_dr(void)
{
    struct tl_frame a = to_svc(S_DR4_TCP, false), b = to_svc(S_DR4_UDP, false);
    uint32_t ra = tl_maglev_real(&env, S_DR4_TCP, &a), rb = tl_maglev_real(&env, S_DR4_UDP, &b);
    struct l4_conn_count by[TL_MAX_REALS], few[2] = { { 7, 7 }, { 7, 7 } };
    struct l4_conn *all = NULL;
    struct l4_flow_key k;
    uint64_t act, inact;
    char err[256];

    CHECK(tl_conn_clear(&env) == 0, "clearing the conn tables");
    if (count_conns(by, true, false, mono_coarse_ns()))
        return -1;
    count_totals(by, &act, &inact);
    CHECK(act == 0 && inact == 0, "empty tables: %llu/%llu", (unsigned long long)act, (unsigned long long)inact);

    if (dr_packet_on(&a, env.cpu) || count_conns(by, true, false, mono_coarse_ns()))
        return -1;
    count_totals(by, &act, &inact);
    CHECK(by[ra].active == 1 && act == 1 && inact == 0, "one SYN: real %u %llu/%llu, totals %llu/%llu", ra,
          (unsigned long long)by[ra].active, (unsigned long long)by[ra].inactive, (unsigned long long)act,
          (unsigned long long)inact);

    /* The same flow on the other CPU: copied into that CPU's table. */
    a.tcp_flags = 0x10;
    if (dr_packet_on(&a, other_cpu()))
        return -1;
    if (other_cpu() != env.cpu) {
        all = calloc((size_t)env.ncpus, sizeof(*all));
        tl_flow_key(&a, &k);
        CHECK(all && bpf_map_lookup_elem(env.fd_conn, &k, all) == 0, "conn lookup");
        bool both = all[env.cpu].real == ra && all[other_cpu()].real == ra;
        free(all);
        CHECK(both, "the flow is not in both CPUs' tables");
    }
    if (dr_packet_on(&b, env.cpu) || count_conns(by, true, false, mono_coarse_ns()))
        return -1;
    count_totals(by, &act, &inact);
    CHECK(act == 2 && inact == 0, "two flows, three copies: %llu/%llu", (unsigned long long)act,
          (unsigned long long)inact);
    CHECK(by[ra].active == (ra == rb ? 2u : 1u) && by[rb].active == (ra == rb ? 2u : 1u), "per real");

    a.tcp_flags = 0x11; /* FIN+ACK */
    if (dr_packet_on(&a, env.cpu) || count_conns(by, true, false, mono_coarse_ns()))
        return -1;
    count_totals(by, &act, &inact);
    CHECK(act == 1 && inact == 1 && by[ra].inactive == 1, "after a FIN: %llu/%llu, real %u inactive %llu",
          (unsigned long long)act, (unsigned long long)inact, ra, (unsigned long long)by[ra].inactive);

    /* a closed a moment ago; b idle for 100 s, then 400 s. */
    uint32_t clk = aging_clock();
    uint64_t clk_ns = (uint64_t)clk * 1000000000ull;

    if (age_conn(&a, clk, 1) || age_conn(&b, clk, 100) || count_conns(by, true, false, clk_ns))
        return -1;
    count_totals(by, &act, &inact);
    CHECK(act == 0 && inact == 2 && by[rb].inactive >= 1, "idle 100 s: %llu/%llu", (unsigned long long)act,
          (unsigned long long)inact);
    if (age_conn(&b, clk, 400) || count_conns(by, true, false, clk_ns))
        return -1;
    count_totals(by, &act, &inact);
    CHECK(act == 0 && inact == 1, "idle 400 s: %llu/%llu", (unsigned long long)act, (unsigned long long)inact);
    /* b is gone for good: its entries, aged on the aging clock, may lie in
     * the real clock's future, where the next counts would see them. */
    tl_flow_key(&b, &k);
    bpf_map_delete_elem(env.fd_conn, &k);
    bpf_map_delete_elem(env.fd_conn_shared, &k);

    a.tcp_flags = 0x02; /* the client reuses the tuple */
    if (dr_packet_on(&a, env.cpu) || count_conns(by, true, false, mono_coarse_ns()))
        return -1;
    count_totals(by, &act, &inact);
    CHECK(act == 1 && inact == 0 && by[ra].active == 1, "new SYN: %llu/%llu", (unsigned long long)act,
          (unsigned long long)inact);

    /* 3000 flows written from user space into the shared table, 1000 of
     * them also on this CPU: several batches of 1024, each flow once. */
    for (uint32_t i = 0; i < 3000; i++) {
        struct tl_frame g = to_svc(S_DR4_UDP, false);
        struct l4_conn v = { .real = 1 + i % 3, .seen = (uint32_t)(mono_coarse_ns() / 1000000000ull) };

        g.src.a[13] = (uint8_t)(i >> 8);
        g.src.a[14] = (uint8_t)i;
        tl_flow_key(&g, &k);
        CHECK(bpf_map_update_elem(env.fd_conn_shared, &k, &v, BPF_ANY) == 0, "shared insert");
        if (i % 3 == 0)
            CHECK(tl_conn_set(&env, &k, &v) == 0, "per-CPU insert");
    }
    if (count_conns(by, true, false, mono_coarse_ns()))
        return -1;
    count_totals(by, &act, &inact);
    CHECK(act == 3001 && inact == 0, "3000 more flows: %llu/%llu", (unsigned long long)act,
          (unsigned long long)inact);
    CHECK(by[1].active == 1000u + (ra == 1) && by[2].active == 1000u + (ra == 2), "3000 flows per real");
    CHECK(tl_conn_clear(&env) == 0, "clearing the conn tables");

    /* No maps: nothing; n_reals bounds what is written. */
    if (count_conns(by, false, false, mono_coarse_ns()))
        return -1;
    count_totals(by, &act, &inact);
    CHECK(act == 0 && inact == 0, "no maps counted something");
    CHECK(l4_count_conns(env.fd_conn, env.fd_conn_shared, -1, mono_coarse_ns(), few, 1, err, sizeof(err)) == 0,
          "l4_count_conns: %s", err);
    CHECK(few[0].active == 0 && few[1].active == 7 && few[1].inactive == 7, "wrote past n_reals");
    /* A map of another layout is refused. */
    CHECK(l4_count_conns(env.fd_vips, -1, -1, mono_coarse_ns(), by, TL_MAX_REALS, err, sizeof(err)) == -1,
          "the vips map was read as a conn table");
    return 0;
}

/* NAT and FullNAT: one count per flow (its OUT / LOCAL entry). Other
 * fixtures' flows are in the table too, so this compares counts taken
 * with the same `now` before and after. */
static int t_conn_counts_nat(void)
{
    struct tl_frame c = to_svc(S_NAT4_TCP, false), d = to_svc(S_FNAT4_UDP, false);
    uint32_t rc_ = tl_maglev_real(&env, S_NAT4_TCP, &c), rd = tl_maglev_real(&env, S_FNAT4_UDP, &d);
    struct l4_conn_count before[TL_MAX_REALS], after[TL_MAX_REALS];
    uint64_t now = mono_coarse_ns(), a0, i0, a1, i1;
    struct pkt in;

    if (count_conns(before, false, true, now))
        return -1;
    tl_build(&in, &c);
    if (run_expect(&in, XDP_TX, NULL, L4_R_FWD_NAT) || count_conns(after, false, true, now))
        return -1;
    count_totals(before, &a0, &i0);
    count_totals(after, &a1, &i1);
    CHECK(after[rc_].active == before[rc_].active + 1 && a1 == a0 + 1 && i1 == i0,
          "NAT SYN: real %u active %llu -> %llu, totals %llu/%llu -> %llu/%llu", rc_,
          (unsigned long long)before[rc_].active, (unsigned long long)after[rc_].active, (unsigned long long)a0,
          (unsigned long long)i0, (unsigned long long)a1, (unsigned long long)i1);

    c.tcp_flags = 0x11;
    tl_build(&in, &c);
    if (run_expect(&in, XDP_TX, NULL, L4_R_FWD_NAT) || count_conns(after, false, true, now))
        return -1;
    count_totals(after, &a1, &i1);
    CHECK(after[rc_].active == before[rc_].active && after[rc_].inactive == before[rc_].inactive + 1 && a1 == a0 &&
              i1 == i0 + 1,
          "NAT FIN: not closing");

    tl_build(&in, &d);
    if (run_expect(&in, XDP_TX, NULL, L4_R_FWD_FULLNAT) || count_conns(after, false, true, now))
        return -1;
    count_totals(after, &a1, &i1);
    /* (FullNAT reals 15..17 are not the NAT reals 9..11.) */
    CHECK(after[rd].active == before[rd].active + 1 && a1 == a0 + 1 && i1 == i0 + 1,
          "FullNAT UDP: totals %llu/%llu -> %llu/%llu", (unsigned long long)a0, (unsigned long long)i0,
          (unsigned long long)a1, (unsigned long long)i1);
    return 0;
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

/* ---- TUN with GUE (the IP packet in UDP) ---- */

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

/* PTB with GUE: overhead 28 (IPv4 + UDP) or 48 (IPv6 + UDP). */
static int t_ptb_gue4(void) { return ptb_case(df_frame(S_GUE4_TCP, false, 1433), S_GUE4_TCP, 1500, 1472); }
static int t_ptb_gue6(void) { return ptb_case(df_frame(S_GUE6_TCP, false, 1393), S_GUE6_TCP, 1500, 1452); }
static int t_ptb_gue_4in6(void) { return ptb_case(df_frame(S_GUE_4IN6, true, 1213), S_GUE_4IN6, 1300, 1252); }

static int t_trunc_gue4(void) { return sweep_frame(to_svc(S_GUE4_TCP, false), "GUE IPv4 TCP"); }
static int t_trunc_gue6(void) { return sweep_frame(to_svc(S_GUE6_UDP, true), "GUE IPv6 UDP VLAN"); }

/* ---- the decap program (decap.bpf.c), real-server side ---- */

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

/* ---- setup and main ---- */

static int setup(void)
{
    static const char *const addrs[] = {
        NULL, "10.1.0.1", "10.1.0.2", "10.1.0.3", "fd00:1::1", "fd00:1::2", "fd00:1::3",
        "10.1.0.7", "10.1.0.8",
        /* 9..14: NAT reals on port 8080; 15..17: FullNAT reals on the VIP's port */
        "10.2.0.1", "10.2.0.2", "10.2.0.3", "fd00:2::1", "fd00:2::2", "fd00:2::3",
        "10.3.0.1", "10.3.0.2", "10.3.0.3",
    };
    static const char *const pool4[] = { "10.9.0.1", "10.9.0.2" }, *const pool6[] = { "fd00:9::1" };
    static const char *const tiny[] = { "10.9.1.1" }, *const small[] = { "10.9.2.1" };
    struct l4_cfg cfg = { 0 };
    uint8_t mac[6];
    int err;

    for (uint32_t i = 1; i < sizeof(addrs) / sizeof(addrs[0]); i++) {
        real_mac(i, mac);
        if ((err = tl_set_real(&env, i, addrs[i], mac, i != 7)))
            return err;
        if (i >= 9 && i <= 14 && (err = tl_set_real_port(&env, i, NAT_RPORT)))
            return err;
    }
    memcpy(cfg.src_mac, LB_MAC, 6);
    inet_pton(AF_INET, "172.16.0.0", &cfg.tun_src4);
    cfg.tun_src4_plen = 16;
    inet_pton(AF_INET6, "fd00:5::", cfg.tun_src6);
    cfg.tun_src6_plen = 64;
    cfg.flags = L4_CFG_F_NAT_REPLIES;
    if ((err = tl_set_cfg(&env, &cfg)))
        return err;

#define SVC(id, vip, port, proto, mode, flags, reals, weights)                                     \
    if ((err = tl_add_service(&env, id, id, vip, port, proto, mode, flags, reals, weights, 3)))     \
        return err;
    SVC(S_DR4_TCP, VIP_DR4, 80, 6, L4_MODE_DR, 0, REALS4, EQUAL);
    SVC(S_DR4_UDP, VIP_DR4, 53, 17, L4_MODE_DR, 0, REALS4, WEIGHTED);
    SVC(S_DR6_TCP, VIP_DR6, 80, 6, L4_MODE_DR, 0, REALS6, EQUAL);
    SVC(S_DR6_UDP, VIP_DR6, 53, 17, L4_MODE_DR, 0, REALS6, EQUAL);
    SVC(S_TUN4_TCP, VIP_TUN4, 80, 6, L4_MODE_TUN, 0, REALS4, EQUAL);
    SVC(S_TUN4_UDP, VIP_TUN4, 53, 17, L4_MODE_TUN, 0, REALS4, EQUAL);
    SVC(S_TUN6_TCP, VIP_TUN6, 80, 6, L4_MODE_TUN, 0, REALS6, EQUAL);
    SVC(S_TUN6_UDP, VIP_TUN6, 53, 17, L4_MODE_TUN, 0, REALS6, WEIGHTED);
    SVC(S_4IN6, VIP_4IN6, 443, 6, L4_MODE_TUN, 0, REALS6, EQUAL);
    SVC(S_6IN4, VIP_6IN4, 443, 6, L4_MODE_TUN, 0, REALS4, EQUAL);
    SVC(S_BADMODE, VIP_BADMODE, 80, 6, MODE_UNKNOWN, 0, REALS4, EQUAL);
    SVC(S_NAT4_TCP, VIP_NAT4, 80, 6, L4_MODE_NAT, 0, NAT_REALS4, EQUAL);
    SVC(S_NAT4_UDP, VIP_NAT4, 53, 17, L4_MODE_NAT, 0, NAT_REALS4, WEIGHTED);
    SVC(S_NAT6_TCP, VIP_NAT6, 80, 6, L4_MODE_NAT, 0, NAT_REALS6, EQUAL);
    SVC(S_NAT6_UDP, VIP_NAT6, 53, 17, L4_MODE_NAT, 0, NAT_REALS6, EQUAL);
    SVC(S_FNAT4_TCP, VIP_FNAT4, 80, 6, L4_MODE_FULLNAT, 0, FNAT_REALS4, EQUAL);
    SVC(S_FNAT4_UDP, VIP_FNAT4, 53, 17, L4_MODE_FULLNAT, 0, FNAT_REALS4, EQUAL);
    SVC(S_FNAT6_TCP, VIP_FNAT6, 80, 6, L4_MODE_FULLNAT, 0, NAT_REALS6, EQUAL);
    SVC(S_FNAT6_UDP, VIP_FNAT6, 53, 17, L4_MODE_FULLNAT, 0, NAT_REALS6, WEIGHTED);
    SVC(S_FNAT_TINY, VIP_FNAT_TINY, 80, 6, L4_MODE_FULLNAT, 0, FNAT_REALS4, EQUAL);
    SVC(S_FNAT_SMALL, VIP_FNAT_SMALL, 80, 6, L4_MODE_FULLNAT, 0, FNAT_REALS4, EQUAL);
    SVC(S_NOCT, VIP_NOCT, 80, 6, L4_MODE_DR, L4_VIP_F_NO_CT, REALS4, EQUAL);
    SVC(S_SH4, VIP_SH4, 80, 6, L4_MODE_DR, L4_VIP_F_SRC_HASH, REALS4, EQUAL);
    SVC(S_SH6, VIP_SH6, 80, 6, L4_MODE_TUN, L4_VIP_F_SRC_HASH, REALS6, EQUAL);
    SVC(S_RR4, VIP_RR4, 80, 6, L4_MODE_DR, L4_VIP_F_RR, REALS4, WEIGHTED);
    SVC(S_RR6, VIP_RR6, 53, 17, L4_MODE_DR, L4_VIP_F_RR, REALS6, EQUAL);
    SVC(S_GUE4_TCP, VIP_GUE4, 80, 6, L4_MODE_TUN, L4_VIP_F_GUE, REALS4, EQUAL);
    SVC(S_GUE4_UDP, VIP_GUE4, 53, 17, L4_MODE_TUN, L4_VIP_F_GUE, REALS4, WEIGHTED);
    SVC(S_GUE6_TCP, VIP_GUE6, 80, 6, L4_MODE_TUN, L4_VIP_F_GUE, REALS6, EQUAL);
    SVC(S_GUE6_UDP, VIP_GUE6, 53, 17, L4_MODE_TUN, L4_VIP_F_GUE, REALS6, WEIGHTED);
    SVC(S_GUE_4IN6, VIP_GUE_4IN6, 443, 6, L4_MODE_TUN, L4_VIP_F_GUE, REALS6, EQUAL);
    SVC(S_GUE_6IN4, VIP_GUE_6IN4, 443, 6, L4_MODE_TUN, L4_VIP_F_GUE, REALS4, EQUAL);
#undef SVC
    {
        const uint32_t dead[1] = { 7 }, w[1] = { 1 };
        if ((err = tl_add_service(&env, S_DEAD, S_DEAD, VIP_DEAD, 80, 6, L4_MODE_DR, 0, dead, w, 1)))
            return err;
    }
    if ((err = tl_set_pool(&env, S_FNAT4_TCP, pool4, 2, 0, 0)) ||
        (err = tl_set_pool(&env, S_FNAT4_UDP, pool4, 2, 0, 0)) ||
        (err = tl_set_pool(&env, S_FNAT6_TCP, pool6, 1, 20000, 29999)) ||
        (err = tl_set_pool(&env, S_FNAT6_UDP, pool6, 1, 20000, 29999)) ||
        (err = tl_set_pool(&env, S_FNAT_TINY, tiny, 1, 40000, 40000)) ||
        (err = tl_set_pool(&env, S_FNAT_SMALL, small, 1, 50000, 50063)))
        return err;
    if ((err = tl_add_icmp_vip(&env, VIP_DR4)) || (err = tl_add_icmp_vip(&env, VIP_DR6)) ||
        (err = tl_add_icmp_vip(&env, VIP_TUN4)))
        return err;
    return 0;
}

struct test {
    const char *name;
    int (*fn)(void);
};

static const struct test tests[] = {
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
    { "Maglev consistency: DR IPv4, 400 flows", t_maglev_dr4 },
    { "Maglev consistency: DR IPv4 weighted 1:2:3, 400 flows", t_maglev_dr4_weighted },
    { "Maglev consistency: DR IPv6, 300 flows", t_maglev_dr6 },
    { "Maglev consistency: TUN IPv6, 300 flows", t_maglev_tun6 },
    { "Maglev consistency: M = 251 set at load time", t_small_m },
    { "source hash: 40 IPv4 clients x 2 connections, each client on one real", t_src_hash4 },
    { "source hash: 40 IPv6 clients x 2 connections, TUN (entry keeps the flow hash)", t_src_hash6 },
    { "wrr IPv4 TCP (1:2:3): 60 new flows take the table in slot order", t_rr4 },
    { "rr IPv6 UDP: 60 new flows take the table in slot order", t_rr6 },
    { "rr skips an inactive real's slots; none active: dropped after the probes", t_rr_skips_inactive },
    { "connection counts, DR: once per flow over CPUs and tables, FIN, idle, reuse", t_conn_counts_dr },
    { "frag-needed about a NAT TCP flow, 28-byte quote -> real", t_nat_icmp4_tcp_short },
    { "frag-needed about a NAT UDP flow, whole quote -> real", t_nat_icmp4_udp },
    { "frag-needed about a FullNAT TCP flow -> real, from the local address", t_fnat_icmp4_tcp },
    { "frag-needed about a FullNAT UDP flow, 28-byte quote", t_fnat_icmp4_udp_short },
    { "packet-too-big about a NAT TCP flow -> real", t_nat_icmp6_tcp },
    { "packet-too-big about a NAT UDP flow, 48-byte quote", t_nat_icmp6_udp_short },
    { "packet-too-big about a FullNAT TCP flow -> real", t_fnat_icmp6_tcp },
    { "packet-too-big about a FullNAT UDP flow -> real", t_fnat_icmp6_udp },
    { "frag-needed about a NAT flow without state: pass", t_nat_icmp_no_state },
    { "connection counts, NAT and FullNAT: one per flow, FIN closes", t_conn_counts_nat },
    { "conn table keeps a flow when the Maglev table moves it", t_ct_survives_table_change },
    { "conn table entry to an inactive real is re-picked", t_ct_inactive_real },
    { "Maglev table swap by table id", t_table_swap },
    { "table id past maglev_tables is refused", t_table_id_out_of_range },
    { "SYN guard: cap 3, 5 new flows", t_syn_guard },
    { "bpf_redirect when tx_ifindex is set", t_redirect },
    { "TUN: over tun_mtu without DF dropped, exactly at it sent", t_tun_too_big },
    { "TUN PTB: IPIP, DF, 1481 > 1500 - 20: frag-needed MTU 1480 to the client", t_ptb4 },
    { "TUN PTB: IPIP, VLAN, UDP, tunnel 200: whole odd-length datagram quoted", t_ptb4_small },
    { "TUN PTB: 4in6, tunnel 1300: frag-needed MTU 1260", t_ptb_4in6 },
    { "TUN PTB: IP6IP6, 1480 > 1500 - 40: packet-too-big MTU 1460", t_ptb6 },
    { "TUN PTB: IP6IP6, VLAN, tunnel 1300: MTU not below 1280", t_ptb6_min },
    { "TUN PTB: 6in4, tunnel 150: MTU 1280, whole packet quoted", t_ptb_6in4_small },
    { "TUN PTB: never about an ICMP error (dropped)", t_ptb_not_for_icmp },
    { "TUN: Ethernet padding stays behind the datagram", t_tun_padding },
    { "TUN: /32 and IPv6 /120 source prefixes", t_tun_prefixes },
    { "GUE 6in6 UDP: checksum of every datagram length 56..1600, and the largest frame", t_gue6_sizes },
    { "GUE 4in6 TCP: checksum of every datagram length 48..1600, and the largest frame", t_gue_4in6_sizes },
    { "GUE over IPv6: a checksum that comes out 0 is sent as 0xffff", t_gue6_csum_ffff },
    { "GUE: l4_config.gue_port 5555 for all six combinations", t_gue_port },
    { "GUE: 200 flows, source ports 49152..65535 from the flow hash", t_gue_sports },
    { "GUE: tun_mtu counts 8 more bytes (IPv4 over by 1 dropped, exact fits sent)", t_gue_mtu },
    { "GUE: Ethernet padding stays behind the datagram (4in6)", t_gue_padding },
    { "TUN PTB: GUE 4in4, DF, 1473 > 1500 - 28: frag-needed MTU 1472", t_ptb_gue4 },
    { "TUN PTB: GUE 6in6, 1453 > 1500 - 48: packet-too-big MTU 1452", t_ptb_gue6 },
    { "TUN PTB: GUE 4in6, VLAN, tunnel 1300: frag-needed MTU 1252", t_ptb_gue_4in6 },
    { "truncations: GUE IPv4 TCP", t_trunc_gue4 },
    { "truncations: GUE IPv6 UDP, VLAN", t_trunc_gue6 },
    { "decap: forwarder -> decap gives the client's packet (GUE x 6, IPIP, IP6IP6, sizes, 0..1500 over "
      "IPv6, padding)",
      t_decap_gue_roundtrip },
    { "decap: GUE over IPv4 with a UDP checksum verified, a wrong one passed", t_decap_gue4_csum },
    { "decap: GUE over IPv4: other port, off, not ours, truncations, lengths, versions, frags, options, CE",
      t_decap_gue4_bad },
    { "decap: GUE over IPv6: other port, off, not ours, truncations, lengths, versions, checksums",
      t_decap_gue6_bad },
    { "truncations: DR IPv4 TCP", t_trunc_dr4_tcp },
    { "truncations: DR IPv4 UDP, VLAN", t_trunc_dr4_vlan },
    { "truncations: DR IPv6 UDP", t_trunc_dr6_udp },
    { "truncations: TUN IPv4 TCP", t_trunc_tun4 },
    { "truncations: TUN IPv6 UDP, VLAN", t_trunc_tun6 },
    { "truncations: ICMP echo", t_trunc_echo },
    { "truncations: ICMPv6 echo", t_trunc_echo6 },
    { "truncations: frag-needed", t_trunc_frag_needed },
    { "truncations: packet-too-big", t_trunc_ptb6 },
    { "random corruption: 6000 mutated packets (L4_MUTATIONS=n for more)", t_mutations },
    { "every reason has a metrics name", t_reason_names },
    { "FullNAT: 3000 flows, no local address and port handed out twice", t_fnat_unique_ports },
    { "FullNAT: 64-port pool, 150 flows: exhaustion dropped and counted", t_fnat_exhaustion },
    { "FullNAT: a port comes back after the idle / FIN / RST timeouts", t_fnat_port_reuse },
    { "TOA after the client's options; exactly 40 bytes in IPv6", t_toa_after_options },
    { "TOA: no option space left, sent without it, counted", t_toa_no_room },
    { "TOA only on a FullNAT SYN (not SYN+ACK, data, or NAT)", t_toa_only_syn },
    { "NAT UDP checksum 0: kept in IPv4, dropped in IPv6", t_nat_udp_zero_csum },
    { "NAT replies: no entry, lookups off, FullNAT from the wrong real or port: pass", t_nat_reply_miss },
    { "NAT SYN guard: over the cap dropped, established flows go on", t_nat_guard },
    { "NAT flow to an inactive real is re-picked", t_nat_inactive_real },
    { "NAT checksums: 400 flows both ways vs from-scratch", t_nat_csum_sweep },
    { "truncations: NAT and FullNAT, forward and reply", t_trunc_nat },
    { "TOA reader: IPv4 FullNAT SYN -> toa.bpf.c -> sluice_toa_lookup()", t_toa_e2e4 },
    { "TOA reader: IPv6 FullNAT SYN -> toa.bpf.c -> sluice_toa_lookup()", t_toa_e2e6 },
    { "TOA reader: no option, SYN+ACK, ACK, bad length, runaway list: nothing", t_toa_reader_ignores },
    { "TOA reader: sluice_toa_lookup_sock() on an accepted loopback socket", t_toa_lookup_sock },
};

int main(void)
{
    int passed = 0, failed = 0, err;
    size_t i;

    setvbuf(stdout, NULL, _IOLBF, 0);
    if (geteuid() != 0) {
        printf("skip: BPF fixture tests need root (CAP_BPF and CAP_NET_ADMIN for BPF_PROG_TEST_RUN)\n");
        printf("0 passed, 0 failed\n");
        return 0;
    }
    if (tl_pin_cpu() < 0) {
        printf("error: cannot pin to a CPU: %s\n0 passed, 1 failed\n", strerror(errno));
        return 1;
    }
    err = tl_env_open(&env, L4_MAGLEV_DEFAULT_M, N_TABLES, L4_DEFAULT_FLOW_SEED);
    if (err == -EPERM) {
        printf("skip: loading BPF programs is not permitted here (%s)\n", strerror(-err));
        printf("0 passed, 0 failed\n");
        return 0;
    }
    if (err || (err = setup())) {
        printf("error: loading the forwarder or filling its maps: %s\n0 passed, 1 failed\n", strerror(-err));
        return 1;
    }
    tl_gue_port = L4_GUE_DEFAULT_PORT; /* checksums inside GUE are verified too */
    printf("forwarder loaded: M=%u, %u tables, seed %#x, CPU %d of %d\n", env.m, env.tables, env.seed, env.cpu,
           env.ncpus);

/* `cond` runs the fixture: evaluate it exactly once. */
#define REPORT(cond, ...)                                                                          \
    do {                                                                                           \
        bool ok_ = (cond);                                                                         \
        printf("%s ", ok_ ? "ok  " : "FAIL");                                                      \
        printf(__VA_ARGS__);                                                                       \
        printf("\n");                                                                              \
        if (ok_)                                                                                   \
            passed++;                                                                              \
        else                                                                                       \
            failed++;                                                                              \
    } while (0)

    for (i = 0; i < sizeof(fwd_cases) / sizeof(fwd_cases[0]); i++)
        REPORT(run_fwd_case(&fwd_cases[i]) == 0, "forward: %s", fwd_cases[i].name);
    for (i = 0; i < sizeof(nat_cases) / sizeof(nat_cases[0]); i++)
        REPORT(run_nat_case(&nat_cases[i]) == 0, "forward + reply on CPU %d and %d: %s", other_cpu(), env.cpu,
               nat_cases[i].name);
    for (i = 0; i < sizeof(bad_cases) / sizeof(bad_cases[0]); i++) {
        struct pkt in;

        bad_cases[i].make(&in);
        REPORT(run_expect(&in, bad_cases[i].verdict, NULL, bad_cases[i].reason) == 0, "%s: %s (%s)",
               bad_cases[i].verdict == XDP_PASS ? "pass" : "drop", bad_cases[i].name,
               l4_reason_names[bad_cases[i].reason]);
    }
    for (i = 0; i < sizeof(tests) / sizeof(tests[0]); i++)
        REPORT(tests[i].fn() == 0, "%s", tests[i].name);

    toa_close();
    decap_close();
    tl_env_close(&env);
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
