/* TOA fixtures: the option the forwarder adds to FullNAT SYNs (after the
 * client's options, when there is no room, only on SYNs), and the real
 * server's side: toa.bpf.c records it, sluice_toa_lookup() and
 * sluice_toa_lookup_sock() (src/proxy/toa_lookup.c) find it. */
#include <sched.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <linux/magic.h>

#include "proxy/toa_lookup.h"
#include "fixtures.h"
#include "toa.skel.h"

/* ---- the option on FullNAT SYNs (the forwarder's side) ---- */

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

static const struct fixture fixtures[] = {
    { "TOA after the client's options; exactly 40 bytes in IPv6", t_toa_after_options },
    { "TOA: no option space left, sent without it, counted", t_toa_no_room },
    { "TOA only on a FullNAT SYN (not SYN+ACK, data, or NAT)", t_toa_only_syn },
    { "TOA reader: IPv4 FullNAT SYN -> toa.bpf.c -> sluice_toa_lookup()", t_toa_e2e4 },
    { "TOA reader: IPv6 FullNAT SYN -> toa.bpf.c -> sluice_toa_lookup()", t_toa_e2e6 },
    { "TOA reader: no option, SYN+ACK, ACK, bad length, runaway list: nothing", t_toa_reader_ignores },
    { "TOA reader: sluice_toa_lookup_sock() on an accepted loopback socket", t_toa_lookup_sock },
};

void suite_toa(void)
{
    RUN_FIXTURES(fixtures);
    toa_close();
}
