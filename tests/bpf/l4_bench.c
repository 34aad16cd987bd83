/* L4 micro-benchmark: ns per packet through BPF_PROG_TEST_RUN for the
 * forwarder (connection-table hit, miss, stateless) beside the floor, a
 * trivial MAC-swap XDP_TX program, measured in the same run on the same CPU.
 * No thresholds: it prints figures and ratios.
 *
 *   build/l4/l4_bench [-n REPEAT] [-k SINGLE_RUNS]
 *
 * Two kinds of figures:
 *  - repeat mode: one BPF_PROG_TEST_RUN call runs the program REPEAT times
 *    on the same frame; the kernel reports the mean. The frame is not reset
 *    between runs, so this only works for programs whose output parses the
 *    same as their input (the floor, DR). The miss figure keeps missing
 *    because the SYN guard (cap 1, used up beforehand) stops the insert;
 *    it is the cost of lookup + hash + Maglev without the insert.
 *  - single runs: K calls with repeat 1, each on a fresh frame; mean of the
 *    kernel's per-call figure. That figure includes the kernel's timer
 *    reads around one run, so compare it with the floor measured the same
 *    way. This is how a miss with insert (K distinct flows) and TUN
 *    (which grows the frame) are measured.
 * Each figure is the median of 3 measurements.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include <netinet/in.h>
#include <sys/socket.h>
#include <time.h>

#include "forwarder.skel.h"
#include "l4/bpf/forwarder_abi.h"
#include "l4/sync_wire.h"
#include "l4_testlib.h"
#include "xdp_floor.skel.h"

static const uint8_t LB_MAC[6] = { 0x02, 0x00, 0x00, 0x00, 0x00, 0x01 };
static const uint8_t GW_MAC[6] = { 0x02, 0x00, 0x00, 0x00, 0x00, 0xfe };

static struct tl_env env;

enum { S_DR, S_NOCT, S_TUN, S_NAT, S_FNAT };

/* A 64-byte IPv4/TCP frame (14 + 20 + 20 + 10) from a client to a VIP. */
static void frame64f(struct pkt *p, const char *vip, uint32_t client, uint16_t sport, uint8_t tcp_flags)
{
    struct tl_frame f;
    char src[INET_ADDRSTRLEN];
    uint32_t a = htonl(client);

    memset(&f, 0, sizeof(f));
    memcpy(f.dmac, LB_MAC, 6);
    memcpy(f.smac, GW_MAC, 6);
    inet_ntop(AF_INET, &a, src, sizeof(src));
    tl_addr_parse(src, &f.src);
    tl_addr_parse(vip, &f.dst);
    f.proto = 6;
    f.sport = sport;
    f.dport = 80;
    f.payload_len = 10;
    f.tcp_flags = tcp_flags;
    tl_build(p, &f);
}

static void frame64(struct pkt *p, const char *vip, uint32_t client, uint16_t sport)
{
    frame64f(p, vip, client, sport, 0); /* a SYN */
}

/* The real's answer to a translated packet: MACs, addresses and ports
 * swapped (which keeps every checksum right). */
static void reply_of(struct pkt *r, const struct pkt *fwd)
{
    uint8_t t[6];

    *r = *fwd;
    memcpy(t, r->b, 6);
    memcpy(r->b, r->b + 6, 6);
    memcpy(r->b + 6, t, 6);
    memcpy(t, r->b + 26, 4);
    memcpy(r->b + 26, r->b + 30, 4);
    memcpy(r->b + 30, t, 4);
    memcpy(t, r->b + 34, 2);
    memcpy(r->b + 34, r->b + 36, 2);
    memcpy(r->b + 36, t, 2);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return (x > y) - (x < y);
}

static double median3(double v[3])
{
    qsort(v, 3, sizeof(v[0]), cmp_double);
    return v[1];
}

static int die(const char *what, int err)
{
    fprintf(stderr, "l4_bench: %s: %s\n", what, strerror(err < 0 ? -err : err));
    return 1;
}

/* Repeat mode on one frame; returns ns/packet, or -1. */
static double repeat_ns(int prog_fd, const struct pkt *p, uint32_t repeat, uint32_t want)
{
    uint32_t ns, verdict;
    int err = tl_run_repeat(prog_fd, p, repeat, &ns, &verdict);

    if (err || verdict != want) {
        fprintf(stderr, "l4_bench: repeat run: err %d, verdict %s\n", err, tl_verdict_name(verdict));
        return -1;
    }
    return ns;
}

/* k single runs cycling over frames[0..n); the mean of the kernel's
 * per-call figures. */
static double single_ns(int prog_fd, const struct pkt *frames, size_t n, size_t k, uint32_t want)
{
    uint64_t total = 0;

    for (size_t i = 0; i < k; i++) {
        uint32_t ns, verdict;

        if (tl_run_repeat(prog_fd, &frames[i % n], 1, &ns, &verdict) || verdict != want) {
            fprintf(stderr, "l4_bench: single run %zu: verdict %s\n", i, tl_verdict_name(verdict));
            return -1;
        }
        total += ns;
    }
    return (double)total / (double)k;
}

/* ---- l4.sync ---- */

#define SYNC_FLOWS 16000 /* fewer than the ring holds (1 MiB / 48 B), so none is lost */

static int drain_event(void *ctx, void *data, size_t len)
{
    (*(size_t *)ctx)++;
    return 0;
}

/* The ring's events so far are read and thrown away; returns how many. */
static size_t drain_ring(void)
{
    size_t n = 0;
    struct ring_buffer *rb = ring_buffer__new(bpf_map__fd(env.skel->maps.sync_events), drain_event, &n, NULL);

    if (rb) {
        ring_buffer__consume(rb);
        ring_buffer__free(rb);
    }
    return n;
}

/* New NAT flows (SYNs of distinct clients), ns/packet in single runs, with
 * l4.sync's events on or off. */
static double nat_new_flows(const struct l4_cfg *base, bool sync, uint32_t first_client, size_t *events)
{
    static struct pkt f[SYNC_FLOWS];
    struct l4_cfg c = *base;
    double ns;

    if (sync)
        c.flags |= L4_CFG_F_SYNC;
    if (tl_set_cfg(&env, &c))
        return -1;
    for (uint32_t i = 0; i < SYNC_FLOWS; i++)
        frame64f(&f[i], "192.0.2.30", first_client + i, (uint16_t)(1024 + i % 50000), 0x02);
    drain_ring();
    ns = single_ns(env.prog_fd, f, SYNC_FLOWS, SYNC_FLOWS, XDP_TX);
    *events = drain_ring();
    tl_set_cfg(&env, base);
    return ns;
}

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

/* User space, per entry: what the sender does for each new flow (read
 * the IN and OUT entries, encode; sign and send a full datagram per 16),
 * and what a receiver does (check the MAC per datagram; per entry the
 * vips lookup, the freshness lookup and the two writes). The
 * NAT entries of the flows just made are the material. Prints the
 * figures. */
static int sync_user_space(void)
{
    static const uint8_t key[32] = "bench-key-bench-key-bench-key-0";
    struct l4_nat_key k, next, ks[SYNC_FLOWS];
    struct l4_sync_writer w;
    struct l4_sync_hdr h;
    size_t n = 0, dgrams = 0, bytes = 0;
    bool first = true;
    int fd = socket(AF_INET, SOCK_DGRAM, 0), rfd = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t sl = sizeof(sa);
    uint8_t dg[L4_SYNC_MAX_DGRAM];
    double t0, t_send, t_recv;

    int rcvbuf = 64 << 20;

    /* Room for every datagram: they are sent first, read afterwards. */
    setsockopt(rfd, SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof(rcvbuf));
    if (fd < 0 || rfd < 0 || bind(rfd, (struct sockaddr *)&sa, sizeof(sa)) || getsockname(rfd, (struct sockaddr *)&sa, &sl))
        return die("socket", errno);
    while (n < SYNC_FLOWS && bpf_map_get_next_key(env.fd_nat, first ? NULL : &k, &next) == 0) {
        first = false;
        k = next;
        struct l4_nat v;

        if (k.dir == L4_NAT_IN && bpf_map_lookup_elem(env.fd_nat, &k, &v) == 0 && v.mode == L4_MODE_NAT)
            ks[n++] = k;
    }
    if (!n)
        return die("no NAT flows to send", ENOENT);

    t0 = now_ns();
    l4_sync_begin(&w, L4_SYNC_T_ENTRIES);
    for (size_t i = 0; i < n; i++) {
        struct l4_nat in, out;
        struct l4_nat_key ok = { .proto = ks[i].proto, .dir = L4_NAT_OUT };
        struct l4_sync_entry e = { .proto = ks[i].proto, .cport = ks[i].sport, .vport = ks[i].dport };

        if (bpf_map_lookup_elem(env.fd_nat, &ks[i], &in))
            return die("IN entry", errno);
        memcpy(ok.src, in.daddr, 16);
        ok.sport = in.dport;
        memcpy(ok.dst, in.saddr, 16);
        ok.dport = in.sport;
        if (bpf_map_lookup_elem(env.fd_nat, &ok, &out))
            return die("OUT entry", errno);
        memcpy(e.client, ks[i].src, 16);
        memcpy(e.vip, ks[i].dst, 16);
        memcpy(e.real, in.daddr, 16);
        e.rport = in.dport;
        e.mode = in.mode;
        e.state = out.state;
        if (!l4_sync_add_entry(&w, &e) || i + 1 == n) {
            size_t len;
            bool full = w.count == L4_SYNC_MAX_ENTRIES || i + 1 == n;

            if (!full) /* (cannot happen: 16 fit) */
                return die("encoding", EIO);
            len = l4_sync_finish(&w, 1, 1, dgrams + 1, key, sizeof(key));
            if (sendto(fd, w.buf, len, 0, (struct sockaddr *)&sa, sizeof(sa)) < 0)
                return die("sendto", errno);
            dgrams++;
            bytes += len;
            l4_sync_begin(&w, L4_SYNC_T_ENTRIES);
            if (w.count == 0 && i + 1 < n && !l4_sync_add_entry(&w, &e))
                return die("encoding", EIO);
        }
    }
    t_send = now_ns() - t0;

    /* Receive them and write them back (as an import would: vips lookup,
     * freshness lookup, OUT then IN written). */
    t0 = now_ns();
    for (size_t d = 0; d < dgrams; d++) {
        ssize_t len = recv(rfd, dg, sizeof(dg), MSG_DONTWAIT);

        if (len < 0 || l4_sync_open(dg, (size_t)len, key, sizeof(key), &h) != L4_SYNC_OK)
            return die("receiving", EIO);
        for (size_t i = 0; i < h.count; i++) {
            struct l4_sync_entry e;
            struct l4_vip_key vk = { .proto = 6 };
            struct l4_vip_meta vm;
            struct l4_nat_key ik = { .proto = 6, .dir = L4_NAT_IN }, ok = { .proto = 6, .dir = L4_NAT_OUT };
            struct l4_nat in, out;

            l4_sync_entry_at(dg, i, &e);
            memcpy(vk.addr, e.vip, 16);
            vk.port = e.vport;
            if (bpf_map_lookup_elem(env.fd_vips, &vk, &vm))
                return die("vips", errno);
            memcpy(ik.src, e.client, 16);
            memcpy(ik.dst, e.vip, 16);
            ik.sport = e.cport;
            ik.dport = e.vport;
            if (bpf_map_lookup_elem(env.fd_nat, &ik, &in))
                return die("IN entry", errno);
            memcpy(ok.src, in.daddr, 16);
            ok.sport = in.dport;
            memcpy(ok.dst, in.saddr, 16);
            ok.dport = in.sport;
            if (bpf_map_lookup_elem(env.fd_nat, &ok, &out) || bpf_map_update_elem(env.fd_nat, &ok, &out, BPF_ANY) ||
                bpf_map_update_elem(env.fd_nat, &ik, &in, BPF_ANY))
                return die("writing", errno);
        }
    }
    t_recv = now_ns() - t0;
    close(fd);
    close(rfd);
    printf("l4.sync, user space (%zu NAT flows, %zu datagrams, %.1f entries per datagram):\n", n, dgrams,
           (double)n / (double)dgrams);
    printf("  %-46s %7.1f bytes (UDP payload; + 28 IPv4/UDP)\n", "wire bytes per flow, full datagrams",
           (double)bytes / (double)n);
    printf("  %-46s %7.1f ns/flow\n", "send: 2 map reads, encode, HMAC, sendto/16", t_send / (double)n);
    printf("  %-46s %7.1f ns/flow\n", "receive: recv/16, HMAC check, 4 map ops", t_recv / (double)n);
    return 0;
}

int main(int argc, char **argv)
{
    uint32_t repeat = 1000000, k = 100000;
    const uint32_t reals[3] = { 1, 2, 3 }, w[3] = { 1, 1, 1 };
    struct xdp_floor *floor_skel;
    struct pkt hit, miss, prime, noct, *flows;
    struct l4_cfg cfg = { 0 };
    double floor_r[3], hit_r[3], miss_r[3], noct_r[3];
    double floor_s[3], hot_s[3], tunhot_s[3], hit_s[3], ins_s[3];
    double nat_s[3], natrep_s[3], fnat_s[3], fsyn_s[3];
    struct pkt tun1, nat1, fnat1, fsyn1, nrep1, o;
    static const char *const pool[1] = { "10.9.0.1" };
    uint32_t v;
    int floor_fd, opt, err, cpu;
    uint8_t mac[6] = { 0x02, 0, 0, 0, 0x01, 0 };

    while ((opt = getopt(argc, argv, "n:k:")) != -1) {
        if (opt == 'n')
            repeat = (uint32_t)strtoul(optarg, NULL, 10);
        else if (opt == 'k')
            k = (uint32_t)strtoul(optarg, NULL, 10);
        else {
            fprintf(stderr, "usage: %s [-n REPEAT] [-k SINGLE_RUNS]\n", argv[0]);
            return 2;
        }
    }
    if (repeat == 0 || k == 0)
        return die("-n and -k must be positive", EINVAL);
    if (geteuid() != 0) {
        printf("skip: the L4 benchmark needs root (BPF_PROG_TEST_RUN)\n");
        return 0;
    }
    cpu = tl_pin_cpu();
    if (cpu < 0)
        return die("pinning to a CPU", errno);

    /* The forwarder: three IPv4 reals, a DR service, a stateless DR
     * service and a TUN service, default Maglev size. */
    err = tl_env_open(&env, L4_MAGLEV_DEFAULT_M, 8, L4_DEFAULT_FLOW_SEED);
    if (err)
        return die("loading the forwarder", err);
    for (uint32_t i = 1; i <= 3; i++) {
        char addr[32];

        mac[5] = (uint8_t)i;
        snprintf(addr, sizeof(addr), "10.1.0.%u", i);
        if ((err = tl_set_real(&env, i, addr, mac, true)))
            return die("reals", err);
    }
    memcpy(cfg.src_mac, LB_MAC, 6);
    inet_pton(AF_INET, "172.16.0.0", &cfg.tun_src4);
    cfg.tun_src4_plen = 16;
    cfg.flags = L4_CFG_F_NAT_REPLIES;
    if ((err = tl_set_cfg(&env, &cfg)) ||
        (err = tl_add_service(&env, S_NAT, S_NAT, "192.0.2.30", 80, 6, L4_MODE_NAT, 0, reals, w, 3)) ||
        (err = tl_add_service(&env, S_FNAT, S_FNAT, "192.0.2.40", 80, 6, L4_MODE_FULLNAT, 0, reals, w, 3)) ||
        (err = tl_set_pool(&env, S_FNAT, pool, 1, 0, 0)) ||
        (err = tl_add_service(&env, S_DR, S_DR, "192.0.2.10", 80, 6, L4_MODE_DR, 0, reals, w, 3)) ||
        (err = tl_add_service(&env, S_NOCT, S_NOCT, "192.0.2.60", 80, 6, L4_MODE_DR, L4_VIP_F_NO_CT, reals,
                              w, 3)) ||
        (err = tl_add_service(&env, S_TUN, S_TUN, "192.0.2.20", 80, 6, L4_MODE_TUN, 0, reals, w, 3)))
        return die("services", err);

    floor_skel = xdp_floor__open_and_load();
    if (!floor_skel)
        return die("loading the floor program", errno);
    floor_fd = bpf_program__fd(floor_skel->progs.xdp_floor);

    frame64(&hit, "192.0.2.10", 0xc6336401, 1000);
    frame64(&miss, "192.0.2.10", 0xc6336402, 1000);
    frame64(&prime, "192.0.2.10", 0xc6336403, 1000);
    frame64(&noct, "192.0.2.60", 0xc6336404, 1000);
    frame64(&tun1, "192.0.2.20", 0xc6336405, 1000);
    /* NAT: established flows (ACKs), their entries made by a first run;
     * a FullNAT SYN (TOA added each time); a NAT reply. NAT rewrites the
     * frame in place, so these are measured in single runs. */
    frame64f(&nat1, "192.0.2.30", 0xc6336406, 1000, 0x10);
    frame64f(&fnat1, "192.0.2.40", 0xc6336407, 1000, 0x10);
    frame64f(&fsyn1, "192.0.2.40", 0xc6336408, 1000, 0x02);
    if (tl_run(env.prog_fd, &fnat1, &o, &v) || v != XDP_TX || tl_run(env.prog_fd, &fsyn1, &o, &v) ||
        v != XDP_TX || tl_run(env.prog_fd, &nat1, &o, &v) || v != XDP_TX)
        return die("NAT flows", EIO);
    reply_of(&nrep1, &o);
    flows = calloc((size_t)k, sizeof(*flows));
    if (!flows)
        return die("memory", ENOMEM);

    /* Warm up: the hit flow goes into the table. */
    if (repeat_ns(env.prog_fd, &hit, 1000, XDP_TX) < 0)
        return 1;

    for (int round = 0; round < 3; round++) {
        struct l4_cfg guarded = cfg;

        if ((floor_r[round] = repeat_ns(floor_fd, &hit, repeat, XDP_TX)) < 0 ||
            (hit_r[round] = repeat_ns(env.prog_fd, &hit, repeat, XDP_TX)) < 0 ||
            (noct_r[round] = repeat_ns(env.prog_fd, &noct, repeat, XDP_TX)) < 0)
            return 1;

        /* Miss without insert: cap 1, spent by `prime`, then `miss` can
         * never enter the table while the one-second window lasts. */
        guarded.new_flow_cap = 1;
        if ((err = tl_set_cfg(&env, &guarded)) || (err = tl_flood_reset(&env)))
            return die("config", err);
        if (repeat_ns(env.prog_fd, &prime, 1, XDP_TX) < 0 ||
            (miss_r[round] = repeat_ns(env.prog_fd, &miss, repeat, XDP_TX)) < 0)
            return 1;
        if ((err = tl_set_cfg(&env, &cfg)))
            return die("config", err);

        /* Single runs: one hot flow (floor, DR, TUN; TUN's frame grows, so
         * it can only be measured this way), then k distinct new flows
         * (miss + insert) and the same flows again (hits). */
        if ((floor_s[round] = single_ns(floor_fd, &hit, 1, k, XDP_TX)) < 0 ||
            (hot_s[round] = single_ns(env.prog_fd, &hit, 1, k, XDP_TX)) < 0 ||
            single_ns(env.prog_fd, &tun1, 1, 1, XDP_TX) < 0 ||
            (tunhot_s[round] = single_ns(env.prog_fd, &tun1, 1, k, XDP_TX)) < 0 ||
            (nat_s[round] = single_ns(env.prog_fd, &nat1, 1, k, XDP_TX)) < 0 ||
            (natrep_s[round] = single_ns(env.prog_fd, &nrep1, 1, k, XDP_TX)) < 0 ||
            (fnat_s[round] = single_ns(env.prog_fd, &fnat1, 1, k, XDP_TX)) < 0 ||
            (fsyn_s[round] = single_ns(env.prog_fd, &fsyn1, 1, k, XDP_TX)) < 0)
            return 1;
        for (uint32_t i = 0; i < k; i++)
            frame64(&flows[i], "192.0.2.10", 0x0a800000u + (uint32_t)round * k + i, (uint16_t)(1024 + i % 60000));
        {
            uint64_t before[L4_R__COUNT], mid[L4_R__COUNT], after[L4_R__COUNT];

            if ((err = tl_conn_clear(&env)) || (err = tl_reasons(&env, before)))
                return die("conn table", err);
            if ((ins_s[round] = single_ns(env.prog_fd, flows, k, k, XDP_TX)) < 0 ||
                tl_reasons(&env, mid) ||
                (hit_s[round] = single_ns(env.prog_fd, flows, k, k, XDP_TX)) < 0 ||
                tl_reasons(&env, after))
                return 1;
            /* Say so if the LRU did not keep them all: the "hit" figure
             * would then hide misses. */
            if (mid[L4_R_CT_MISS] - before[L4_R_CT_MISS] != k || after[L4_R_CT_HIT] - mid[L4_R_CT_HIT] != k)
                fprintf(stderr, "l4_bench: note: %llu misses then %llu hits for %u flows\n",
                        (unsigned long long)(mid[L4_R_CT_MISS] - before[L4_R_CT_MISS]),
                        (unsigned long long)(after[L4_R_CT_HIT] - mid[L4_R_CT_HIT]), k);
        }
    }

    {
        double fr = median3(floor_r);
        double h = median3(hit_r), m = median3(miss_r), n = median3(noct_r);
        double fs1 = median3(floor_s), hot = median3(hot_s), tun = median3(tunhot_s);
        double hs = median3(hit_s), is = median3(ins_s);
        double nat = median3(nat_s), nrep = median3(natrep_s), fnat = median3(fnat_s), fsyn = median3(fsyn_s);

        printf("L4 forwarder, BPF_PROG_TEST_RUN, 64-byte IPv4/TCP frames, CPU %d, median of 3\n", cpu);
        printf("repeat mode (%u runs per call, caches hot):\n", repeat);
        printf("  %-46s %7.1f ns/packet\n", "floor: MAC swap + XDP_TX", fr);
        printf("  %-46s %7.1f ns/packet  %5.1fx floor\n", "DR, conn-table hit", h, h / fr);
        printf("  %-46s %7.1f ns/packet  %5.1fx floor\n", "DR, miss: Maglev, insert held by SYN guard", m, m / fr);
        printf("  %-46s %7.1f ns/packet  %5.1fx floor\n", "DR, stateless VIP: Maglev only", n, n / fr);
        printf("single runs (repeat 1 per call, mean of %u; includes the per-call\n"
               "timer and the caches the syscall disturbed):\n", k);
        printf("  %-46s %7.1f ns/packet\n", "floor: MAC swap + XDP_TX", fs1);
        printf("  %-46s %7.1f ns/packet  %5.1fx floor\n", "DR, conn-table hit, one flow", hot, hot / fs1);
        printf("  %-46s %7.1f ns/packet  %5.1fx floor\n", "TUN (IPIP), conn-table hit, one flow", tun, tun / fs1);
        printf("  %-46s %7.1f ns/packet  %5.1fx floor\n", "NAT, table hit, one flow", nat, nat / fs1);
        printf("  %-46s %7.1f ns/packet  %5.1fx floor\n", "NAT reply, one flow", nrep, nrep / fs1);
        printf("  %-46s %7.1f ns/packet  %5.1fx floor\n", "FullNAT, table hit, one flow", fnat, fnat / fs1);
        printf("  %-46s %7.1f ns/packet  %5.1fx floor\n", "FullNAT SYN + TOA option, one flow", fsyn, fsyn / fs1);
        printf("  %-46s %7.1f ns/packet  %5.1fx floor\n", "DR, miss + insert, each of k new flows", is, is / fs1);
        printf("  %-46s %7.1f ns/packet  %5.1fx floor\n", "DR, conn-table hit, the same k flows", hs, hs / fs1);
    }

    {
        double off[3], on[3];
        size_t ev_off = 0, ev_on = 0;

        for (int round = 0; round < 3; round++) {
            if ((off[round] = nat_new_flows(&cfg, false, 0x0b000000u + (uint32_t)round * 0x100000u, &ev_off)) < 0 ||
                (on[round] = nat_new_flows(&cfg, true, 0x0c000000u + (uint32_t)round * 0x100000u, &ev_on)) < 0)
                return 1;
        }
        printf("l4.sync, data plane (single runs, %d new NAT flows each):\n", SYNC_FLOWS);
        printf("  %-46s %7.1f ns/packet  (%zu events)\n", "NAT SYN, new flow, l4.sync off", median3(off), ev_off);
        printf("  %-46s %7.1f ns/packet  (%zu events)\n", "NAT SYN, new flow, l4.sync on (ring event)", median3(on),
               ev_on);
        if (sync_user_space())
            return 1;
    }

    free(flows);
    xdp_floor__destroy(floor_skel);
    tl_env_close(&env);
    return 0;
}
