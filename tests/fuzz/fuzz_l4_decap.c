/* libFuzzer target for the TUN decapsulation program (src/l4/bpf/decap.bpf.c,
 * `sluice l4 decap`): the real BPF program, loaded into the kernel, run on
 * each input through BPF_PROG_TEST_RUN.
 *
 * Input: one Ethernet frame. Shorter than 14 bytes: skipped (the kernel
 * refuses them for an XDP test run); longer than FRAME_MAX: cut. Each frame
 * runs once as given and, if its checksums were not all right, once more
 * with them fixed (tl_fix_csums(), inner packets and GUE included), so that
 * the fuzzer reaches the decapsulation paths without guessing checksums.
 *
 * The world: decap_addrs holds the forwarder fixtures' real addresses
 * (10.1.0.1-3, fd00:1::1-3; tests/fuzz/gen_l4_corpus.py uses them), GUE
 * enabled on port 6080 (decap_config).
 *
 * Invariants (a violation prints the frames and traps):
 *  - the test run succeeds; the packet counts in exactly one reason, once;
 *  - a pass reason: XDP_PASS and the frame untouched (the program's policy,
 *    decap.bpf.c's header comment);
 *  - DECAP_DROP_ECN: XDP_DROP; the outer ECN is CE and the inner packet is
 *    not ECN-capable;
 *  - a decapsulation: XDP_PASS; the frame is shorter by exactly the outer
 *    headers the reason names (20, 40, 28 or 48); MACs and the VLAN tag
 *    kept, ethertype of the inner family; what follows is the input's inner
 *    packet byte for byte but for the ECN bits (CE copied from the outer
 *    header, RFC 6040) and the IPv4 checksum that covers them; and the
 *    outer header was one the program may take apart, checked here on the
 *    input independently: to one of our addresses, IPv4 version 4, IHL 5,
 *    not a fragment, lengths within the frame, header checksum right; IPv6
 *    lengths within the frame; GUE to the port, a UDP length within the IP
 *    payload, a right UDP checksum (0 allowed over IPv4 only); the inner
 *    packet of the announced version, within the outer payload;
 *  - the decapsulated frame is well-formed (its IP lengths fit) and, if the
 *    inner packet's checksums were right in the input, they are right in
 *    the output (tl_verify_csums()).
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

#include "decap.skel.h"
#include "l4/bpf/decap_abi.h"
#include "l4_testlib.h"

#define FRAME_MAX 1600
#define GUE_PORT 6080

static const char *const OURS[] = { "10.1.0.1", "10.1.0.2", "10.1.0.3", "fd00:1::1", "fd00:1::2", "fd00:1::3" };
#define N_OURS (sizeof(OURS) / sizeof(OURS[0]))

/* Feedback from inside the kernel (libFuzzer sees only this file's
 * coverage): an extra counter per reason, VLAN tag or not, and frame
 * length class, bumped on every run. */
#define N_FEATURES (DECAP_N_REASONS * 2 * 8)
__attribute__((used, section("__libfuzzer_extra_counters"))) static uint8_t bpf_features[N_FEATURES];

static struct decap *skel;
static int prog_fd, stats_fd, ncpus;
static bool ready, trace; /* FUZZ_L4_TRACE=1: one line per run on stderr */
static uint64_t last[DECAP_N_REASONS];
static struct tl_addr ours[N_OURS];

/* ---- reporting ---- */

#define FUZZ_NAME "fuzz_l4_decap"
#include "l4_fuzz_report.h"

/* The decap reasons by number (enum decap_reason in src/l4/bpf/decap_abi.h). */
static const char *reason_name(int reason)
{
    static char buf[16];

    snprintf(buf, sizeof buf, "%d", reason);
    return buf;
}


static void read_reasons(uint64_t out[DECAP_N_REASONS])
{
    static struct decap_count *vals;
    static uint32_t keys[DECAP_N_REASONS];
    uint32_t count = DECAP_N_REASONS, out_batch = 0;
    int err;

    if (!vals) {
        vals = calloc((size_t)DECAP_N_REASONS * (size_t)ncpus, sizeof(*vals));
        if (!vals)
            abort();
    }
    LIBBPF_OPTS(bpf_map_batch_opts, o);
    err = bpf_map_lookup_batch(stats_fd, NULL, &out_batch, keys, vals, &count, &o);
    if ((err && errno != ENOENT) || count != DECAP_N_REASONS) {
        fprintf(stderr, "fuzz_l4_decap: reading decap_stats: %s (%u)\n", strerror(errno), count);
        abort();
    }
    for (uint32_t i = 0; i < DECAP_N_REASONS; i++) {
        uint64_t s = 0;

        for (int c = 0; c < ncpus; c++)
            s += vals[(size_t)i * (size_t)ncpus + (size_t)c].packets;
        out[keys[i]] = s;
    }
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    struct decap_cfg c = { .gue_port = htons(GUE_PORT) };
    uint32_t zero = 0;
    uint8_t one = 1;
    int err, fd;

    setvbuf(stdout, NULL, _IOLBF, 0);
    if (geteuid() != 0)
        skip("BPF_PROG_TEST_RUN needs root (CAP_BPF and CAP_NET_ADMIN); not root");
    libbpf_set_print(NULL);
    ncpus = libbpf_num_possible_cpus();
    skel = decap__open_and_load();
    if (!skel) {
        err = errno;
        if (err == EPERM || err == ENOSYS || err == EOPNOTSUPP) {
            char why[128];

            snprintf(why, sizeof(why), "loading BPF programs is not permitted here (%s)", strerror(err));
            skip(why);
        }
        fprintf(stderr, "fuzz_l4_decap: loading decap.bpf.o: %s\n", strerror(err));
        exit(1);
    }
    prog_fd = bpf_program__fd(skel->progs.sluice_decap);
    stats_fd = bpf_map__fd(skel->maps.decap_stats);
    fd = bpf_map__fd(skel->maps.decap_addrs);
    for (size_t i = 0; i < N_OURS; i++) {
        tl_addr_parse(OURS[i], &ours[i]);
        if (bpf_map_update_elem(fd, ours[i].a, &one, BPF_ANY) != 0) {
            fprintf(stderr, "fuzz_l4_decap: decap_addrs: %s\n", strerror(errno));
            exit(1);
        }
    }
    if (bpf_map_update_elem(bpf_map__fd(skel->maps.decap_config), &zero, &c, BPF_ANY) != 0) {
        fprintf(stderr, "fuzz_l4_decap: decap_config: %s\n", strerror(errno));
        exit(1);
    }
    tl_gue_port = GUE_PORT;
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

static bool is_ours(const uint8_t *a, bool v6)
{
    for (size_t i = 0; i < N_OURS; i++)
        if (ours[i].v6 == v6 && memcmp(v6 ? ours[i].a : tl_addr_v4(&ours[i]), a, v6 ? 16 : 4) == 0)
            return true;
    return false;
}

/* The UDP checksum of `ulen` bytes at u (GUE), with the outer pseudo-header. */
static bool udp_ok(const uint8_t *ip, bool v6, const uint8_t *u, size_t ulen)
{
    uint8_t ph[40];
    uint32_t s;

    if (!v6) {
        memcpy(ph, ip + 12, 8);
        ph[8] = 0;
        ph[9] = 17;
        ph[10] = (uint8_t)(ulen >> 8);
        ph[11] = (uint8_t)ulen;
        s = tl_sum(ph, 12, 0);
    } else {
        memcpy(ph, ip + 8, 32);
        ph[32] = ph[33] = 0;
        ph[34] = (uint8_t)(ulen >> 8);
        ph[35] = (uint8_t)ulen;
        ph[36] = ph[37] = ph[38] = 0;
        ph[39] = 17;
        s = tl_sum(ph, 40, 0);
    }
    return tl_fold(tl_sum(u, ulen, s)) == 0;
}

/* The outer headers of a frame decap took apart, checked on the input:
 * returns their length, the inner packet's offset avail bytes. */
static size_t check_outer(const uint8_t *in, size_t len, size_t l3, int reason, bool *inner6, size_t *avail,
                          uint8_t *outer_ecn)
{
    const uint8_t *ip = in + l3;
    bool gue = reason >= DECAP_GUE_4IN4;
    bool outer6 = reason == DECAP_IP6IP6 || reason == DECAP_4IN6 || reason == DECAP_GUE_6IN6 ||
                  reason == DECAP_GUE_4IN6;
    size_t hdr, payload;
    uint8_t proto;

    *inner6 = reason == DECAP_6IN4 || reason == DECAP_IP6IP6 || reason == DECAP_GUE_6IN4 ||
              reason == DECAP_GUE_6IN6;
    CHECK(get16(in + l3 - 2) == (outer6 ? 0x86dd : 0x0800));
    if (!outer6) {
        CHECK(l3 + 20 <= len);
        CHECK(ip[0] == 0x45);
        CHECK((get16(ip + 6) & 0x3fff) == 0); /* no MF, no offset */
        CHECK(get16(ip + 2) >= 20 && l3 + get16(ip + 2) <= len);
        CHECK(tl_fold(tl_sum(ip, 20, 0)) == 0);
        CHECK(is_ours(ip + 16, false));
        proto = ip[9];
        payload = get16(ip + 2) - 20u;
        hdr = 20;
        *outer_ecn = ip[1] & 3;
    } else {
        CHECK(l3 + 40 <= len);
        CHECK(ip[0] >> 4 == 6);
        CHECK(l3 + 40 + get16(ip + 4) <= len);
        CHECK(is_ours(ip + 24, true));
        proto = ip[6];
        payload = get16(ip + 4);
        hdr = 40;
        *outer_ecn = (ip[1] >> 4) & 3;
    }
    if (gue) {
        const uint8_t *u = ip + hdr;
        size_t ulen;

        CHECK(proto == 17);
        CHECK(payload >= 8);
        CHECK(get16(u + 2) == GUE_PORT);
        ulen = get16(u + 4);
        CHECK(ulen >= 9 && ulen <= payload);
        if (get16(u + 6) == 0)
            CHECK(!outer6);
        else
            CHECK(udp_ok(ip, outer6, u, ulen));
        CHECK(u[8] >> 4 == (*inner6 ? 6 : 4));
        *avail = ulen - 8;
        hdr += 8;
    } else {
        CHECK(proto == (*inner6 ? 41 : 4));
        *avail = payload;
    }
    /* the inner packet: the announced version, within the outer payload */
    {
        const uint8_t *i = ip + hdr;

        if (*inner6) {
            CHECK(*avail >= 40 && l3 + hdr + 40 <= len);
            CHECK(i[0] >> 4 == 6);
            CHECK(40u + get16(i + 4) <= *avail);
        } else {
            CHECK(*avail >= 20 && l3 + hdr + 20 <= len);
            CHECK(i[0] >> 4 == 4 && (i[0] & 0xf) >= 5);
            CHECK(get16(i + 2) <= *avail && get16(i + 2) >= (i[0] & 0xf) * 4u);
        }
    }
    return hdr;
}

/* The decapsulation a frame asks for, read from its outer headers (for a
 * frame decap dropped for ECN, which names none). */
static int kind_of(const uint8_t *in, size_t len, size_t l3)
{
    const uint8_t *ip = in + l3;
    bool outer6 = get16(in + l3 - 2) == 0x86dd;
    size_t hl = outer6 ? 40 : 20;
    uint8_t proto;

    CHECK(l3 + hl <= len);
    proto = outer6 ? ip[6] : ip[9];
    if (proto == 17) {
        CHECK(l3 + hl + 9 <= len);
        if (ip[hl + 8] >> 4 == 6)
            return outer6 ? DECAP_GUE_6IN6 : DECAP_GUE_6IN4;
        return outer6 ? DECAP_GUE_4IN6 : DECAP_GUE_4IN4;
    }
    if (proto == 41)
        return outer6 ? DECAP_IP6IP6 : DECAP_6IN4;
    return outer6 ? DECAP_4IN6 : DECAP_IPIP;
}

static void check_one(const struct pkt *in)
{
    static struct pkt out;
    uint64_t now[DECAP_N_REASONS];
    uint32_t verdict = 0;
    int err, r = -1, n = 0;
    size_t l3 = 14, hdr, avail, inner_len;
    const uint8_t *ii, *oi;
    bool inner6, in_ok;
    uint8_t outer_ecn, ecn_in, ecn_out;

    cur_in = in->b;
    cur_in_len = in->len;
    cur_out = NULL;
    cur_reason = -1;
    err = tl_run(prog_fd, in, &out, &verdict);
    cur_verdict = verdict;
    if (err) {
        fprintf(stderr, "test run: %s\n", strerror(-err));
        CHECK(err == 0);
    }
    cur_out = &out;
    read_reasons(now);
    for (int i = 0; i < DECAP_N_REASONS; i++) {
        if (now[i] != last[i]) {
            n++;
            r = i;
            CHECK(now[i] == last[i] + 1);
        }
    }
    memcpy(last, now, sizeof(last));
    cur_reason = r;
    CHECK(n == 1);
    {
        unsigned vl = in->len >= 14 && (in->b[12] == 0x81 || in->b[12] == 0x88), lc = 0;

        while (lc < 7 && (64u << lc) < in->len)
            lc++;
        bpf_features[((unsigned)r * 2 + vl) * 8 + lc] = 1;
    }
    if (trace)
        fprintf(stderr, "trace: %zu bytes -> %s reason %d, %zu bytes\n", in->len, tl_verdict_name(verdict),
                r, out.len);
    CHECK(verdict == XDP_PASS || verdict == XDP_DROP);

    if (r >= DECAP_PASS_OTHER && r <= DECAP_PASS_BAD) {
        CHECK(verdict == XDP_PASS);
        CHECK(out.len == in->len && memcmp(out.b, in->b, in->len) == 0);
        return;
    }
    CHECK(tl_frame_l3(in->b, in->len, &l3) >= 0);
    hdr = check_outer(in->b, in->len, l3, r == DECAP_DROP_ECN ? kind_of(in->b, in->len, l3) : r, &inner6, &avail,
                      &outer_ecn);
    ii = in->b + l3 + hdr;
    ecn_in = inner6 ? (ii[1] >> 4) & 3 : ii[1] & 3;
    if (r == DECAP_DROP_ECN) {
        CHECK(verdict == XDP_DROP);
        CHECK(outer_ecn == 3 && ecn_in == 0);
        return;
    }

    /* Decapsulated: the same L2 header with the inner ethertype, then the
     * inner packet and whatever followed it. */
    CHECK(verdict == XDP_PASS);
    CHECK(out.len == in->len - hdr);
    CHECK(memcmp(out.b, in->b, l3 - 2) == 0);
    CHECK(get16(out.b + l3 - 2) == (inner6 ? 0x86dd : 0x0800));
    oi = out.b + l3;
    ecn_out = inner6 ? (oi[1] >> 4) & 3 : oi[1] & 3;
    CHECK(ecn_out == (outer_ecn == 3 ? 3 : ecn_in));
    CHECK(oi[0] == ii[0] && (oi[1] & (inner6 ? 0xcf : 0xfc)) == (ii[1] & (inner6 ? 0xcf : 0xfc)));
    if (inner6) {
        CHECK(memcmp(oi + 2, ii + 2, out.len - l3 - 2) == 0);
        inner_len = 40 + (size_t)get16(ii + 4);
    } else {
        CHECK(memcmp(oi + 2, ii + 2, 8) == 0);
        CHECK(memcmp(oi + 12, ii + 12, out.len - l3 - 12) == 0);
        inner_len = get16(ii + 2);
    }
    CHECK(inner_len <= avail && l3 + inner_len <= out.len);
    in_ok = tl_verify_csums(in->b, l3 + hdr + inner_len, l3 + hdr) == 0;
    if (in_ok)
        CHECK(tl_verify_csums(out.b, out.len, l3) == 0);
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

    if (tl_frame_l3(data, size, &l3) < 0)
        return 0;
    fixed = in;
    if (tl_fix_csums(fixed.b, fixed.len, l3) == 0 && memcmp(fixed.b, data, size) != 0)
        check_one(&fixed);
    return 0;
}
