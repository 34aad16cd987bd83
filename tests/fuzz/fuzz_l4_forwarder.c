/* libFuzzer target for the XDP forwarder (src/l4/bpf/forwarder.bpf.c): the
 * real BPF program, loaded into the kernel, run on each input through
 * BPF_PROG_TEST_RUN.
 *
 * Input: one Ethernet frame, as a NIC would hand it to XDP. Inputs shorter
 * than 14 bytes are skipped (the kernel refuses them for an XDP test run, and
 * no NIC delivers them); longer than FRAME_MAX bytes are cut to FRAME_MAX
 * (room for a 1500-byte IP packet behind a VLAN tag and then some, so the
 * TUN packet-too-big path is reachable with tun_mtu 1400). Each frame runs
 * once as given and, if its checksums were not all right, once more with
 * them fixed (tl_fix_csums()), so that the checksum invariant below is
 * exercised without the fuzzer having to guess checksums.
 *
 * The world (LLVMFuzzerInitialize): services in every mode the forwarder
 * has, DR, TUN (IPIP, IP6IP6, 4in6, 6in4, and GUE over both families),
 * NAT, FullNAT (TOA on SYNs), over IPv4 and IPv6, TCP and UDP, a source-hash
 * and an rr service, a stateless one, one whose only real is inactive, one
 * with an unknown mode, ICMP echo addresses, NAT reply lookups on, and a
 * SYN-guard cap. Two settings follow the input's destination MAC, which the
 * forwarder never reads (it runs on our interface) and overwrites or swaps
 * on whatever it sends: its last byte picks l4_config.tun_mtu (0x01, our
 * MAC's, as in the seeds: 1400; 0x00: 0, no check; n: 300 + 5n, so small
 * MTUs make packet-too-big errors quote whole packets of any length), and
 * bit 0 of its fifth byte sets tx_ifindex (XDP_REDIRECT instead of XDP_TX).
 * The addresses are the fixtures' ones
 * (tests/bpf/test_forwarder.c); tests/fuzz/gen_l4_corpus.py builds the
 * seeds from the same table. Connection and NAT state accumulate across
 * inputs, so NAT replies and conn-table hits are reachable.
 *
 * Invariants (a violation prints the frames and traps):
 *  - the test run succeeds; the verdict is XDP_PASS, DROP, TX or REDIRECT;
 *  - the packet counts in exactly one disposition reason, once, and the
 *    verdict is that reason's class (pass, drop, forwarded: TX, or REDIRECT
 *    with tx_ifindex set; a NAT reply: TX or REDIRECT, back by the client's
 *    interface; answered, echo or packet-too-big: always TX);
 *  - PASS: the output is byte-identical to the input (docs/l4-dataplane.md,
 *    Policies: "Not ours or not understood -> pass, untouched");
 *  - TX / REDIRECT: the output is Ethernet [+ the input's VLAN tag, kept],
 *    IPv4 (IHL 5) or IPv6 with lengths that fit the frame, no more trailing
 *    bytes than the input had, at most 48 bytes longer than the input;
 *  - checksums (tl_verify_csums(), which sums differently from the BPF
 *    code): the forwarder does not verify the client's checksums (Policies,
 *    "Not checked"), so a bad one may stay bad; hence: input right =>
 *    output right, for every disposition; and what the forwarder builds
 *    from scratch is right whatever the input: the outer IPv4 header and
 *    the GUE-over-IPv6 UDP checksum in TUN, the whole packet-too-big error;
 *  - per disposition: DR changes the MACs only; TUN puts 20/28/40/48 bytes
 *    of outer header in front of the unchanged IP packet, with the lengths,
 *    protocol, TTL, DF, GUE port and a real's address and MAC the docs
 *    give; NAT keeps the family and only grows by a TOA option on a FullNAT
 *    SYN; an echo reply keeps the length and swaps the MACs; a PTB error
 *    comes from the VIP to the client and fits in 576 / 1280 bytes.
 *
 * BPF needs root: without it (or where loading BPF is not permitted) the
 * target prints "skip: ..." and exits 0 from LLVMFuzzerInitialize;
 * tests/run.sh counts that as a skip.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "forwarder.skel.h"
#include "l4/bpf/forwarder_abi.h"
#include "l4_testlib.h"

#define FRAME_MAX 1600
#define TUN_MTU 1400 /* with our MAC as the destination; see above */
#define MAGLEV_M 251 /* prime; small, so that setup is quick */

static const uint8_t LB_MAC[6] = { 0x02, 0x00, 0x00, 0x00, 0x00, 0x01 };

enum {
    S_DR4_TCP, S_DR4_UDP, S_DR6_TCP, S_DR6_UDP,
    S_TUN4_TCP, S_TUN4_UDP, S_TUN6_TCP, S_TUN6_UDP, S_4IN6, S_6IN4,
    S_GUE4_TCP, S_GUE4_UDP, S_GUE6_TCP, S_GUE6_UDP, S_GUE_4IN6, S_GUE_6IN4,
    S_NAT4_TCP, S_NAT4_UDP, S_NAT6_TCP, S_NAT6_UDP,
    S_FNAT4_TCP, S_FNAT4_UDP, S_FNAT6_TCP, S_FNAT6_UDP,
    S_SH4, S_SH6, S_RR4, S_RR6, S_NOCT, S_DEAD, S_BADMODE,
    S__COUNT
};

static const char *const REAL_ADDRS[] = {
    NULL, "10.1.0.1", "10.1.0.2", "10.1.0.3", "fd00:1::1", "fd00:1::2", "fd00:1::3",
    "10.1.0.7", "10.1.0.8",
    /* 9..14: NAT reals on port 8080; 15..17: FullNAT reals on the VIP's port */
    "10.2.0.1", "10.2.0.2", "10.2.0.3", "fd00:2::1", "fd00:2::2", "fd00:2::3",
    "10.3.0.1", "10.3.0.2", "10.3.0.3",
};
#define N_REALS (sizeof(REAL_ADDRS) / sizeof(REAL_ADDRS[0]))
#define REAL_INACTIVE 7

/* Feedback from inside the kernel: libFuzzer sees only this file's coverage,
 * not the BPF program's, so each run also bumps an extra counter (a
 * libFuzzer feature, cleared before every run) for what the program did:
 * the disposition, with the set of events that fired and whether the frame
 * grew or shrank. A new combination counts as new coverage. */
#define N_FEATURES (L4_R__DISPOSITIONS * 128 * 3)
__attribute__((used, section("__libfuzzer_extra_counters"))) static uint8_t bpf_features[N_FEATURES];

static struct tl_env env;
static uint16_t cur_mtu = TUN_MTU;
static uint32_t cur_ifindex;
static bool ready, trace; /* FUZZ_L4_TRACE=1: one line per run on stderr */
static uint64_t last[L4_R__COUNT];
static struct tl_addr real_addr[N_REALS];

/* ---- reporting ---- */

#define FUZZ_NAME "fuzz_l4_forwarder"
#include "l4_fuzz_report.h"

static const char *reason_name(int reason)
{
    return reason >= 0 && reason < L4_R__COUNT ? l4_reason_names[reason] : "?";
}


/* ---- setup ---- */

static void real_mac(uint32_t idx, uint8_t mac[6])
{
    const uint8_t base[6] = { 0x02, 0x00, 0x00, 0x00, 0x01, 0x00 };

    memcpy(mac, base, 6);
    mac[5] = (uint8_t)idx;
}

static int setup(void)
{
    static const uint32_t R4[] = { 1, 2, 3 }, R6[] = { 4, 5, 6 }, NAT4[] = { 9, 10, 11 },
                          NAT6[] = { 12, 13, 14 }, FNAT4[] = { 15, 16, 17 };
    static const uint32_t EQ[] = { 1, 1, 1 }, WT[] = { 1, 2, 3 }, DEAD[] = { REAL_INACTIVE }, ONE[] = { 1 };
    static const char *const pool4[] = { "10.9.0.1", "10.9.0.2" }, *const pool6[] = { "fd00:9::1" };
    struct l4_cfg cfg = { 0 };
    uint8_t mac[6];
    int err;

    for (uint32_t i = 1; i < N_REALS; i++) {
        real_mac(i, mac);
        tl_addr_parse(REAL_ADDRS[i], &real_addr[i]);
        if ((err = tl_set_real(&env, i, REAL_ADDRS[i], mac, i != REAL_INACTIVE)))
            return err;
        if (i >= 9 && i <= 14 && (err = tl_set_real_port(&env, i, 8080)))
            return err;
    }
    memcpy(cfg.src_mac, LB_MAC, 6);
    cfg.tun_mtu = TUN_MTU;
    inet_pton(AF_INET, "172.16.0.0", &cfg.tun_src4);
    cfg.tun_src4_plen = 16;
    inet_pton(AF_INET6, "fd00:5::", cfg.tun_src6);
    cfg.tun_src6_plen = 64;
    cfg.flags = L4_CFG_F_NAT_REPLIES;
    /* SYN guard: reached under fuzzing (thousands of new flows a second),
     * not when one input is replayed on a fresh process. */
    cfg.new_flow_cap = 2000;
    cfg.maglev_m = MAGLEV_M;
    cfg.maglev_tables = S__COUNT;
    if ((err = tl_set_cfg(&env, &cfg)))
        return err;

#define SVC(id, vip, port, proto, mode, flags, reals, weights, n)                                  \
    if ((err = tl_add_service(&env, id, id, vip, port, proto, mode, flags, reals, weights, n)))     \
        return err;
    SVC(S_DR4_TCP, "192.0.2.10", 80, 6, L4_MODE_DR, 0, R4, EQ, 3);
    SVC(S_DR4_UDP, "192.0.2.10", 53, 17, L4_MODE_DR, 0, R4, WT, 3);
    SVC(S_DR6_TCP, "2001:db8::10", 80, 6, L4_MODE_DR, 0, R6, EQ, 3);
    SVC(S_DR6_UDP, "2001:db8::10", 53, 17, L4_MODE_DR, 0, R6, EQ, 3);
    SVC(S_TUN4_TCP, "192.0.2.20", 80, 6, L4_MODE_TUN, 0, R4, EQ, 3);
    SVC(S_TUN4_UDP, "192.0.2.20", 53, 17, L4_MODE_TUN, 0, R4, EQ, 3);
    SVC(S_TUN6_TCP, "2001:db8::20", 80, 6, L4_MODE_TUN, 0, R6, EQ, 3);
    SVC(S_TUN6_UDP, "2001:db8::20", 53, 17, L4_MODE_TUN, 0, R6, WT, 3);
    SVC(S_4IN6, "192.0.2.50", 443, 6, L4_MODE_TUN, 0, R6, EQ, 3);
    SVC(S_6IN4, "2001:db8::50", 443, 6, L4_MODE_TUN, 0, R4, EQ, 3);
    SVC(S_GUE4_TCP, "192.0.2.100", 80, 6, L4_MODE_TUN, L4_VIP_F_GUE, R4, EQ, 3);
    SVC(S_GUE4_UDP, "192.0.2.100", 53, 17, L4_MODE_TUN, L4_VIP_F_GUE, R4, WT, 3);
    SVC(S_GUE6_TCP, "2001:db8::100", 80, 6, L4_MODE_TUN, L4_VIP_F_GUE, R6, EQ, 3);
    SVC(S_GUE6_UDP, "2001:db8::100", 53, 17, L4_MODE_TUN, L4_VIP_F_GUE, R6, WT, 3);
    SVC(S_GUE_4IN6, "192.0.2.101", 443, 6, L4_MODE_TUN, L4_VIP_F_GUE, R6, EQ, 3);
    SVC(S_GUE_6IN4, "2001:db8::101", 443, 6, L4_MODE_TUN, L4_VIP_F_GUE, R4, EQ, 3);
    SVC(S_NAT4_TCP, "192.0.2.70", 80, 6, L4_MODE_NAT, 0, NAT4, EQ, 3);
    SVC(S_NAT4_UDP, "192.0.2.70", 53, 17, L4_MODE_NAT, 0, NAT4, WT, 3);
    SVC(S_NAT6_TCP, "2001:db8::70", 80, 6, L4_MODE_NAT, 0, NAT6, EQ, 3);
    SVC(S_NAT6_UDP, "2001:db8::70", 53, 17, L4_MODE_NAT, 0, NAT6, EQ, 3);
    SVC(S_FNAT4_TCP, "192.0.2.80", 80, 6, L4_MODE_FULLNAT, 0, FNAT4, EQ, 3);
    SVC(S_FNAT4_UDP, "192.0.2.80", 53, 17, L4_MODE_FULLNAT, 0, FNAT4, EQ, 3);
    SVC(S_FNAT6_TCP, "2001:db8::80", 80, 6, L4_MODE_FULLNAT, 0, NAT6, EQ, 3);
    SVC(S_FNAT6_UDP, "2001:db8::80", 53, 17, L4_MODE_FULLNAT, 0, NAT6, WT, 3);
    SVC(S_SH4, "192.0.2.90", 80, 6, L4_MODE_DR, L4_VIP_F_SRC_HASH, R4, EQ, 3);
    SVC(S_SH6, "2001:db8::90", 80, 6, L4_MODE_TUN, L4_VIP_F_SRC_HASH, R6, EQ, 3);
    SVC(S_RR4, "192.0.2.91", 80, 6, L4_MODE_DR, L4_VIP_F_RR, R4, WT, 3);
    SVC(S_RR6, "2001:db8::91", 53, 17, L4_MODE_DR, L4_VIP_F_RR, R6, EQ, 3);
    SVC(S_NOCT, "192.0.2.60", 80, 6, L4_MODE_DR, L4_VIP_F_NO_CT, R4, EQ, 3);
    SVC(S_DEAD, "192.0.2.40", 80, 6, L4_MODE_DR, 0, DEAD, ONE, 1);
    SVC(S_BADMODE, "192.0.2.30", 80, 6, 9, 0, R4, EQ, 3);
#undef SVC
    if ((err = tl_set_pool(&env, S_FNAT4_TCP, pool4, 2, 0, 0)) ||
        (err = tl_set_pool(&env, S_FNAT4_UDP, pool4, 2, 0, 0)) ||
        (err = tl_set_pool(&env, S_FNAT6_TCP, pool6, 1, 20000, 29999)) ||
        (err = tl_set_pool(&env, S_FNAT6_UDP, pool6, 1, 20000, 29999)))
        return err;
    if ((err = tl_add_icmp_vip(&env, "192.0.2.10")) || (err = tl_add_icmp_vip(&env, "2001:db8::10")) ||
        (err = tl_add_icmp_vip(&env, "192.0.2.20")) || (err = tl_add_icmp_vip(&env, "192.0.2.70")) ||
        (err = tl_add_icmp_vip(&env, "2001:db8::80")))
        return err;
    return 0;
}

/* The reason counters, summed over CPUs: one batch lookup. */
static void read_reasons(uint64_t out[L4_R__COUNT])
{
    static struct l4_counter *vals;
    static uint32_t keys[L4_R__COUNT];
    uint32_t count = L4_R__COUNT, out_batch = 0;
    int err;

    if (!vals) {
        vals = calloc((size_t)L4_R__COUNT * (size_t)env.ncpus, sizeof(*vals));
        if (!vals)
            abort();
    }
    LIBBPF_OPTS(bpf_map_batch_opts, o);
    err = bpf_map_lookup_batch(env.fd_reasons, NULL, &out_batch, keys, vals, &count, &o);
    if ((err && errno != ENOENT) || count != L4_R__COUNT) {
        fprintf(stderr, "fuzz_l4_forwarder: reading the reasons map: %s (%u)\n", strerror(errno), count);
        abort();
    }
    for (uint32_t i = 0; i < L4_R__COUNT; i++) {
        uint64_t s = 0;

        for (int c = 0; c < env.ncpus; c++)
            s += vals[(size_t)i * (size_t)env.ncpus + (size_t)c].packets;
        out[keys[i]] = s;
    }
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    int err;

    setvbuf(stdout, NULL, _IOLBF, 0);
    if (geteuid() != 0)
        skip("BPF_PROG_TEST_RUN needs root (CAP_BPF and CAP_NET_ADMIN); not root");
    libbpf_set_print(NULL);
    if (tl_pin_cpu() < 0)
        skip("cannot pin to a CPU");
    err = tl_env_open(&env, MAGLEV_M, S__COUNT, L4_DEFAULT_FLOW_SEED);
    if (err == -EPERM || err == -ENOSYS || err == -EOPNOTSUPP) {
        char why[128];

        snprintf(why, sizeof(why), "loading BPF programs is not permitted here (%s)", strerror(-err));
        skip(why);
    }
    if (err || (err = setup())) {
        fprintf(stderr, "fuzz_l4_forwarder: loading the forwarder or filling its maps: %s\n", strerror(-err));
        exit(1);
    }
    tl_gue_port = L4_GUE_DEFAULT_PORT; /* checksums inside GUE are verified too */
    read_reasons(last);
    trace = getenv("FUZZ_L4_TRACE") != NULL;
    ready = true;
    return 0;
}

/* ---- checks ---- */

static uint16_t get16(const uint8_t *p)
{
    return (uint16_t)(p[0] << 8 | p[1]);
}

/* The frame's IP packet: offset, family, IP length (header + payload). */
struct ipinfo {
    size_t l3;
    bool v6;
    size_t ip_len;
    uint8_t proto;
};

static bool ip_info(const uint8_t *b, size_t len, struct ipinfo *ii)
{
    int et = tl_frame_l3(b, len, &ii->l3);
    const uint8_t *ip;

    if (et < 0 || ii->l3 + 20 > len)
        return false;
    ip = b + ii->l3;
    ii->v6 = et == 0x86dd;
    if (!ii->v6) {
        ii->ip_len = get16(ip + 2);
        ii->proto = ip[9];
    } else {
        if (ii->l3 + 40 > len)
            return false;
        ii->ip_len = 40 + (size_t)get16(ip + 4);
        ii->proto = ip[6];
    }
    return ii->l3 + ii->ip_len <= len;
}

static bool is_real_mac(const uint8_t *m)
{
    uint8_t mac[6];

    real_mac(m[5], mac);
    return m[5] >= 1 && m[5] < N_REALS && m[5] != REAL_INACTIVE && memcmp(m, mac, 6) == 0;
}

/* An address (4 or 16 bytes) of an active real, of that family. */
static bool is_real_addr(const uint8_t *a, bool v6)
{
    for (uint32_t i = 1; i < N_REALS; i++) {
        if (i == REAL_INACTIVE || real_addr[i].v6 != v6)
            continue;
        if (memcmp(v6 ? real_addr[i].a : tl_addr_v4(&real_addr[i]), a, v6 ? 16 : 4) == 0)
            return true;
    }
    return false;
}

/* The frame's Ethernet and VLAN header against the input's: the tag (TPID
 * and TCI) is kept. */
static void check_l2(const uint8_t *in, const uint8_t *out, size_t l3)
{
    if (l3 == 18) {
        CHECK(get16(out + 12) == get16(in + 12));
        CHECK(get16(out + 14) == get16(in + 14));
    } else {
        CHECK(get16(out + 12) == 0x0800 || get16(out + 12) == 0x86dd);
    }
}

/* IPv6 UDP checksum of the outer header alone (GUE over IPv6). */
static bool udp6_ok(const uint8_t *ip, size_t ulen)
{
    uint8_t ph[40];

    memcpy(ph, ip + 8, 32);
    ph[32] = (uint8_t)(ulen >> 24);
    ph[33] = (uint8_t)(ulen >> 16);
    ph[34] = (uint8_t)(ulen >> 8);
    ph[35] = (uint8_t)ulen;
    ph[36] = ph[37] = ph[38] = 0;
    ph[39] = 17;
    return get16(ip + 40 + 6) != 0 && tl_fold(tl_sum(ip + 40, ulen, tl_sum(ph, 40, 0))) == 0;
}

static void check_tun(const struct pkt *in, const struct ipinfo *ii, const struct pkt *out, const struct ipinfo *oi)
{
    size_t hdr = out->len - in->len, l3 = ii->l3;
    const uint8_t *o = out->b + l3;
    bool gue = hdr == 28 || hdr == 48;
    uint8_t inner_proto = ii->v6 ? 41 : 4;

    CHECK(hdr == 20 || hdr == 28 || hdr == 40 || hdr == 48);
    CHECK(oi->l3 == l3);
    CHECK(oi->v6 == (hdr >= 40));
    CHECK(is_real_mac(out->b) && memcmp(out->b + 6, LB_MAC, 6) == 0);
    /* the client's IP packet and whatever followed it, unchanged */
    CHECK(memcmp(out->b + l3 + hdr, in->b + l3, in->len - l3) == 0);
    CHECK(oi->ip_len == ii->ip_len + hdr);
    if (!oi->v6) {
        CHECK(o[0] == 0x45);
        CHECK((get16(o + 6) & 0x4000) && !(get16(o + 6) & 0x3fff)); /* DF, not a fragment */
        CHECK(o[8] == L4_TUN_TTL);
        CHECK(o[9] == (gue ? 17 : inner_proto));
        CHECK(is_real_addr(o + 16, false));
        CHECK(tl_fold(tl_sum(o, 20, 0)) == 0); /* built here: right whatever the input */
    } else {
        CHECK(o[6] == (gue ? 17 : inner_proto));
        CHECK(o[7] == L4_TUN_TTL);
        CHECK(is_real_addr(o + 24, true));
    }
    if (gue) {
        const uint8_t *u = o + (oi->v6 ? 40 : 20);

        CHECK(get16(u + 2) == L4_GUE_DEFAULT_PORT);
        CHECK(get16(u) >= 0xc000);
        CHECK(get16(u + 4) == ii->ip_len + 8);
        if (oi->v6)
            CHECK(udp6_ok(o, ii->ip_len + 8));
        else
            CHECK(get16(u + 6) == 0);
    }
}

static void check_ptb(const struct pkt *in, const struct ipinfo *ii, const struct pkt *out, const struct ipinfo *oi)
{
    const uint8_t *o = out->b + oi->l3, *i = in->b + ii->l3;

    CHECK(oi->l3 == ii->l3 && oi->v6 == ii->v6);
    CHECK(oi->l3 + oi->ip_len == out->len); /* no padding left behind */
    CHECK(memcmp(out->b, in->b + 6, 6) == 0 && memcmp(out->b + 6, in->b, 6) == 0);
    CHECK(tl_verify_csums(out->b, out->len, oi->l3) == 0); /* built here: right whatever the input */
    if (!oi->v6) {
        CHECK(oi->ip_len <= 576);
        CHECK(o[9] == 1 && o[20] == 3 && o[21] == 4);
        CHECK(memcmp(o + 12, i + 16, 4) == 0 && memcmp(o + 16, i + 12, 4) == 0);
        CHECK(get16(o + 26) >= 68 && get16(o + 26) < cur_mtu);
        CHECK(get16(i + 6) & 0x4000); /* only with DF */
        /* the quote: the start of the client's packet */
        CHECK(memcmp(o + 28, i, oi->ip_len - 28) == 0);
    } else {
        CHECK(oi->ip_len <= 1280);
        CHECK(o[6] == 58 && o[40] == 2 && o[41] == 0);
        CHECK(memcmp(o + 8, i + 24, 16) == 0 && memcmp(o + 24, i + 8, 16) == 0);
        CHECK(memcmp(o + 48, i, oi->ip_len - 48) == 0);
    }
}

static void check_nat(enum l4_reason r, const struct pkt *in, const struct ipinfo *ii, const struct pkt *out,
                      const struct ipinfo *oi)
{
    size_t grow = out->len - in->len;

    CHECK(oi->l3 == ii->l3 && oi->v6 == ii->v6 && oi->proto == ii->proto);
    CHECK(memcmp(out->b + 6, LB_MAC, 6) == 0);
    if (r == L4_R_FWD_NAT)
        CHECK(is_real_mac(out->b));
    if (grow) {
        /* TOA: only on a FullNAT TCP SYN, 8 bytes (IPv4) or 20 (IPv6) */
        CHECK(r == L4_R_FWD_FULLNAT && ii->proto == 6);
        CHECK(grow == (ii->v6 ? 20u : 8u));
        CHECK(oi->ip_len == ii->ip_len + grow);
        CHECK((in->b[ii->l3 + (ii->v6 ? 40 : 20) + 13] & 0x12) == 0x02);
    }
}

/* tun_mtu and tx_ifindex from the destination MAC (see the top). */
static void set_knobs(const uint8_t *frame)
{
    uint16_t mtu = frame[5] == 0x01 ? TUN_MTU : frame[5] == 0 ? 0 : (uint16_t)(300 + 5 * frame[5]);
    uint32_t ifindex = frame[4] & 1;

    if (mtu == cur_mtu && ifindex == cur_ifindex)
        return;
    env.cfg.tun_mtu = mtu;
    env.cfg.tx_ifindex = ifindex;
    if (tl_set_cfg(&env, &env.cfg) != 0) {
        fprintf(stderr, "fuzz_l4_forwarder: l4_config: %s\n", strerror(errno));
        abort();
    }
    cur_mtu = mtu;
    cur_ifindex = ifindex;
}

static void check_one(const struct pkt *in)
{
    static struct pkt out;
    uint64_t now[L4_R__COUNT];
    struct ipinfo ii, oi;
    bool in_ok, fwd;
    uint32_t verdict = 0;
    int err, r = -1, n = 0;

    cur_in = in->b;
    cur_in_len = in->len;
    cur_out = NULL;
    cur_reason = -1;
    set_knobs(in->b);
    err = tl_run(env.prog_fd, in, &out, &verdict);
    cur_verdict = verdict;
    if (err) {
        fprintf(stderr, "test run: %s\n", strerror(-err));
        CHECK(err == 0);
    }
    cur_out = &out;
    read_reasons(now);
    for (int i = 0; i < L4_R__DISPOSITIONS; i++) {
        if (now[i] != last[i]) {
            n++;
            r = i;
            CHECK(now[i] == last[i] + 1);
        }
    }
    cur_reason = r;
    CHECK(n == 1);
    {
        unsigned ev = 0, size = out.len == in->len ? 0 : out.len > in->len ? 1 : 2;

        for (int i = L4_R__DISPOSITIONS; i < L4_R__COUNT && i - L4_R__DISPOSITIONS < 7; i++)
            if (now[i] != last[i])
                ev |= 1u << (i - L4_R__DISPOSITIONS);
        bpf_features[((unsigned)r * 128 + ev) * 3 + size] = 1;
    }
    memcpy(last, now, sizeof(last));
    if (trace)
        fprintf(stderr, "trace: %zu bytes -> %s %s, %zu bytes\n", in->len,
                tl_verdict_name(verdict), l4_reason_names[r], out.len);
    CHECK(verdict == XDP_PASS || verdict == XDP_DROP || verdict == XDP_TX || verdict == XDP_REDIRECT);

    if (r >= L4_R_PASS_NOT_IP && r <= L4_R_PASS_MODE) {
        CHECK(verdict == XDP_PASS);
        CHECK(out.len == in->len && memcmp(out.b, in->b, in->len) == 0);
        return;
    }
    if ((r >= L4_R_DROP_TRUNCATED && r <= L4_R_DROP_NO_ROOM) ||
        (r >= L4_R_DROP_NAT_NO_PORT && r <= L4_R_DROP_BAD_CSUM)) {
        CHECK(verdict == XDP_DROP);
        return;
    }
    fwd = r == L4_R_FWD_DR || r == L4_R_FWD_TUN || r == L4_R_FWD_NAT || r == L4_R_FWD_FULLNAT ||
          r == L4_R_FWD_NAT_REPLY;
    CHECK(fwd || r == L4_R_ICMP_ECHO_REPLY || r == L4_R_ICMP_PTB_SENT);
    if (r == L4_R_FWD_NAT_REPLY) /* out by the client's interface: TX, or a redirect to it */
        CHECK(verdict == XDP_TX || verdict == XDP_REDIRECT);
    else if (fwd)
        CHECK(verdict == (cur_ifindex ? XDP_REDIRECT : XDP_TX));
    else
        CHECK(verdict == XDP_TX);

    /* Sent: a well-formed frame. */
    CHECK(ip_info(in->b, in->len, &ii)); /* (it was parsed to get here) */
    CHECK(out.len <= in->len + 48);
    CHECK(ip_info(out.b, out.len, &oi));
    check_l2(in->b, out.b, oi.l3);
    CHECK(oi.l3 == ii.l3);
    if (!oi.v6) {
        CHECK(out.b[oi.l3] == 0x45 && oi.ip_len >= 20);
    } else {
        CHECK(out.b[oi.l3] >> 4 == 6);
    }
    CHECK(out.len - (oi.l3 + oi.ip_len) <= in->len - (ii.l3 + ii.ip_len)); /* padding never grows */
    in_ok = tl_verify_csums(in->b, in->len, ii.l3) == 0;
    if (in_ok)
        CHECK(tl_verify_csums(out.b, out.len, oi.l3) == 0);

    switch (r) {
    case L4_R_FWD_DR:
        CHECK(out.len == in->len && memcmp(out.b + 12, in->b + 12, in->len - 12) == 0);
        CHECK(is_real_mac(out.b) && memcmp(out.b + 6, LB_MAC, 6) == 0);
        break;
    case L4_R_FWD_TUN:
        check_tun(in, &ii, &out, &oi);
        break;
    case L4_R_FWD_NAT:
    case L4_R_FWD_FULLNAT:
    case L4_R_FWD_NAT_REPLY:
        check_nat((enum l4_reason)r, in, &ii, &out, &oi);
        break;
    case L4_R_ICMP_ECHO_REPLY:
        CHECK(out.len == in->len && oi.v6 == ii.v6);
        CHECK(memcmp(out.b, in->b + 6, 6) == 0 && memcmp(out.b + 6, in->b, 6) == 0);
        break;
    case L4_R_ICMP_PTB_SENT:
        check_ptb(in, &ii, &out, &oi);
        break;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct pkt in, fixed;
    size_t l3;

    if (!ready || size < 14)
        return 0;
    if (size > FRAME_MAX)
        size = FRAME_MAX;
    memset(&in, 0, sizeof(in));
    memcpy(in.b, data, size);
    in.len = size;
    check_one(&in);

    /* Again with every checksum right, if they were not. */
    if (tl_frame_l3(data, size, &l3) < 0)
        return 0;
    fixed = in;
    if (tl_fix_csums(fixed.b, fixed.len, l3) == 0 && memcmp(fixed.b, data, size) != 0)
        check_one(&fixed);
    return 0;
}
