/* See fixtures.h. */
#include "fixtures.h"

#include <time.h>

struct tl_env env;
static uint16_t port_seq = 20000;

uint16_t next_port(void)
{
    return port_seq++;
}

void real_mac(uint32_t idx, uint8_t mac[6])
{
    const uint8_t base[6] = { 0x02, 0x00, 0x00, 0x00, 0x01, 0x00 };

    memcpy(mac, base, 6);
    mac[5] = (uint8_t)idx;
}

char fail_msg[512];

struct tl_frame frame(const char *src, const char *dst, uint8_t proto, uint16_t sport, uint16_t dport)
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
struct tl_frame to_svc(int svc, bool vlan)
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
void expect_dr(struct pkt *exp, const struct tl_frame *f, uint32_t real)
{
    struct tl_frame g = *f;

    memcpy(g.dmac, env.reals[real].r.mac, 6);
    memcpy(g.smac, LB_MAC, 6);
    tl_build(exp, &g);
}

void put16(uint8_t *p, uint16_t v)
{
    p[0] = v >> 8;
    p[1] = v & 0xff;
}

/* The GUE UDP source port for a flow hash: the spec (49152..65535, the
 * hash's two halves folded), written out again here. */
uint16_t gue_sport(uint32_t hash)
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
void expect_encap(struct pkt *exp, const struct pkt *in, size_t l3, uint32_t real, uint32_t hash,
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

void expect_tun(struct pkt *exp, const struct pkt *in, size_t l3, uint32_t real, uint32_t hash)
{
    expect_encap(exp, in, l3, real, hash, 0);
}

/* The GUE port the forwarder should use (host order). */
uint16_t gue_port_now(void)
{
    return env.cfg.gue_port ? ntohs(env.cfg.gue_port) : L4_GUE_DEFAULT_PORT;
}

/* What a TUN service sends: GUE if the service says so, else IP-in-IP. */
void expect_tun_svc(struct pkt *exp, const struct pkt *in, size_t l3, int svc, uint32_t real,
                    uint32_t hash)
{
    bool gue = env.svcs[svc].meta.flags & L4_VIP_F_GUE;

    expect_encap(exp, in, l3, real, hash, gue ? gue_port_now() : 0);
}

/* ---- running one packet ---- */

uint64_t delta[L4_R__COUNT];
struct pkt out;

static bool is_forward(uint32_t v)
{
    return v == XDP_TX || v == XDP_REDIRECT;
}

/* Run `in`; check the verdict, the output (if `want` is given; for PASS and
 * DROP the output must equal the input whatever `want` says), checksums of
 * anything sent, and that exactly `reason` counted as the disposition.
 * Leaves the counter deltas in delta[]. */
int run_expect(const struct pkt *in, uint32_t verdict, const struct pkt *want, enum l4_reason reason)
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

int counter_delta(int fd, uint32_t idx, struct l4_counter *before, uint64_t pkts, uint64_t bytes)
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

/* Recompute an IPv4 header checksum after a deliberate edit, so that the
 * packet is wrong only in the way the fixture means. */
void fix_ip4(struct pkt *p, size_t l3)
{
    size_t hl = (size_t)(p->b[l3] & 0xf) * 4;

    if (hl < 20)
        hl = 20;
    p->b[l3 + 10] = p->b[l3 + 11] = 0;
    put16(p->b + l3 + 10, tl_fold(tl_sum(p->b + l3, hl, 0)));
}

/* An ICMP error from a router about a packet the real sent from `vip`:`vport`
 * to `client`:`cport`, quoting `quote` bytes of it. */
void icmp_err(struct pkt *p, bool v6, const char *vip, uint16_t vport, const char *client,
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

/* Every truncation of a valid packet passes or drops, untouched. */
int sweep(const struct pkt *full, const char *what)
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

int sweep_frame(struct tl_frame f, const char *what)
{
    struct pkt p;

    tl_build(&p, &f);
    return sweep(&p, what);
}

/* ---- NAT and FullNAT ---- */
bool svc_full(int svc)
{
    return env.svcs[svc].meta.mode == L4_MODE_FULLNAT;
}

uint16_t real_port(uint32_t real, uint16_t vport)
{
    uint16_t p = ntohs(env.reals[real].r.port);

    return p ? p : vport;
}

void real_addr(uint32_t real, struct tl_addr *a)
{
    memset(a, 0, sizeof(*a));
    memcpy(a->a, env.reals[real].r.addr, 16);
    a->v6 = env.reals[real].r.flags & L4_REAL_F_V6;
}

int other_cpu(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);

    if (n < 2)
        return env.cpu;
    return env.cpu == 0 ? 1 : 0;
}

/* The pool of each FullNAT service, as setup_world() configured it. */
bool in_pool(int svc, const struct tl_addr *a, uint16_t port)
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

bool same(const struct pkt *a, const struct pkt *b)
{
    if (a->len == b->len && memcmp(a->b, b->b, a->len) == 0)
        return true;
    tl_hexdump("expected", b->b, b->len);
    tl_hexdump("got", a->b, a->len);
    return false;
}

/* The TOA option a FullNAT SYN must carry: kind 200, length 8 or 20, the
 * client's port and address. Built from the fixture's client. */
size_t toa_bytes(const struct tl_frame *f, uint8_t opt[20])
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
int nat_forward(int svc, const struct tl_frame *f, bool toa, struct nat_res *res)
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
int nat_reply(int svc, const struct tl_frame *f, const struct nat_res *res, int cpu)
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

uint64_t mono_coarse_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* ---- the world: reals, services, pools ---- */

int setup_world(void)
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
