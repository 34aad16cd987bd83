/* `sluice l4 decap`: load the TUN decapsulation program (bpf/decap.bpf.c)
 * on a real server's interface. See decap.h and docs/l4.md.
 *
 * Two ways to run it:
 *   - persistent (the default): attach through a BPF link, pin the link and
 *     the maps under PIN_DIR/IFNAME/ and exit; the program stays attached
 *     until `--detach` removes the pins (or bpffs goes away). Running it
 *     again replaces the program in place (bpf_link_update: no gap).
 *   - `--foreground`: attach, stay, and detach on SIGTERM / SIGINT.
 */
#include "l4/decap.h"
#include "l4/loader.h"

#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <ifaddrs.h>
#include <linux/if_link.h>
#include <net/if.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "decap.skel.h"

#define DECAP_PIN_DIR "/sys/fs/bpf/sluice-decap"
#define MAX_ADDR_ARGS 32

void l4_decap_usage(FILE *out)
{
    fputs("Usage: sluice l4 decap --interface IF [--gue-port N] [--generic] [--address ADDR]... [--pin-dir DIR]\n"
          "       sluice l4 decap --interface IF --foreground [--gue-port N] [--generic] [--address ADDR]...\n"
          "       sluice l4 decap --interface IF --detach|--stats [--pin-dir DIR]\n"
          "\n"
          "The real-server side of TUN services, for kernels without the ipip module:\n"
          "an XDP program on IF strips the outer IPv4/IPv6 header of IP-in-IP packets\n"
          "(IPIP, IP6IP6, 4in6, 6in4) addressed to this host and passes the inner\n"
          "packet up the stack. With --gue-port it also strips the outer IP and UDP\n"
          "headers of GUE packets (variant 1: the IP packet directly in UDP, as\n"
          "services with 'encapsulation: gue' send them) to UDP port N and this host.\n"
          "The real holds the VIP on lo, as in DR mode.\n"
          "\n"
          "By default the program is attached through a BPF link pinned in DIR/IF\n"
          "(default " DECAP_PIN_DIR ") and the command exits: it stays attached until\n"
          "--detach. Run again to replace it in place. With --foreground it stays\n"
          "attached while the command runs and detaches on SIGTERM or SIGINT.\n"
          "\n"
          "Options:\n"
          "  -i, --interface IF  the interface the tunnelled packets arrive on\n"
          "  -a, --address ADDR  decapsulate packets to ADDR (repeatable; default: the\n"
          "                      addresses IF has now)\n"
          "  -u, --gue-port N    also decapsulate GUE to UDP port N (1..65535; the LB's\n"
          "                      l4.gue_port, default there 6080); without it UDP is\n"
          "                      left alone\n"
          "  -g, --generic       generic (SKB) XDP mode; default native (driver) mode\n"
          "  -f, --foreground    stay attached until SIGTERM/SIGINT; pin nothing\n"
          "  -d, --detach        detach the pinned program from IF and remove its pins\n"
          "  -s, --stats         print the counters of the pinned program on IF\n"
          "  -P, --pin-dir DIR   bpffs directory for the pins\n"
          "  -h, --help          show this help\n"
          "Docs: docs/l4.md (TUN mode and sluice l4 decap)\n",
          out);
}

static const char *const reason_names[DECAP_N_REASONS] = {
    [DECAP_IPIP] = "decap_ipip",          [DECAP_6IN4] = "decap_6in4",
    [DECAP_IP6IP6] = "decap_ip6ip6",      [DECAP_4IN6] = "decap_4in6",
    [DECAP_PASS_OTHER] = "pass_other",    [DECAP_PASS_NOT_OURS] = "pass_not_ours",
    [DECAP_PASS_UNSUPP] = "pass_unsupported", [DECAP_PASS_BAD] = "pass_malformed",
    [DECAP_DROP_ECN] = "drop_ecn",        [DECAP_GUE_4IN4] = "decap_gue_4in4",
    [DECAP_GUE_6IN4] = "decap_gue_6in4",  [DECAP_GUE_6IN6] = "decap_gue_6in6",
    [DECAP_GUE_4IN6] = "decap_gue_4in6",
};

static void print_stats(int fd)
{
    int ncpu = libbpf_num_possible_cpus();
    if (ncpu <= 0)
        return;
    struct decap_count *v = calloc((size_t)ncpu, sizeof *v);
    if (!v)
        return;
    for (__u32 i = 0; i < DECAP_N_REASONS; i++) {
        if (bpf_map_lookup_elem(fd, &i, v) < 0)
            continue;
        unsigned long long p = 0, b = 0;
        for (int c = 0; c < ncpu; c++) {
            p += v[c].packets;
            b += v[c].bytes;
        }
        printf("  %-18s %12llu pkts %14llu bytes\n", reason_names[i], p, b);
    }
    free(v);
}

/* One decap_addrs key from text (IPv4 stored v4-mapped). */
static int parse_addr(const char *s, __u8 key[16])
{
    struct in_addr a4;
    memset(key, 0, 16);
    if (inet_pton(AF_INET, s, &a4) == 1) {
        key[10] = key[11] = 0xff;
        memcpy(key + 12, &a4, 4);
        return 0;
    }
    return inet_pton(AF_INET6, s, key) == 1 ? 0 : -1;
}

static void key_str(const __u8 key[16], char *buf, size_t len)
{
    static const __u8 mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };
    if (!memcmp(key, mapped, 12))
        inet_ntop(AF_INET, key + 12, buf, (socklen_t)len);
    else
        inet_ntop(AF_INET6, key, buf, (socklen_t)len);
}

/* Fill decap_addrs from the --address list, or from the interface's
 * current addresses. Appends the addresses to `names`. Returns the count. */
static int fill_addrs(int map_fd, const char *ifname, char **addrs, int n_addrs, char *names, size_t nlen)
{
    __u8 one = 1, key[16];
    char buf[INET6_ADDRSTRLEN];
    int n = 0;
    names[0] = '\0';
    if (n_addrs > 0) {
        for (int i = 0; i < n_addrs; i++) {
            if (parse_addr(addrs[i], key) < 0) {
                fprintf(stderr, "sluice l4 decap: --address %s: not an IPv4 or IPv6 address\n", addrs[i]);
                return -1;
            }
            if (bpf_map_update_elem(map_fd, key, &one, BPF_ANY) < 0)
                return -1;
            key_str(key, buf, sizeof buf);
            snprintf(names + strlen(names), nlen - strlen(names), "%s%s", n ? ", " : "", buf);
            n++;
        }
        return n;
    }
    struct ifaddrs *ifa0, *ifa;
    if (getifaddrs(&ifa0) < 0)
        return -1;
    for (ifa = ifa0; ifa; ifa = ifa->ifa_next) {
        if (!ifa->ifa_addr || strcmp(ifa->ifa_name, ifname) != 0)
            continue;
        memset(key, 0, sizeof key);
        if (ifa->ifa_addr->sa_family == AF_INET) {
            key[10] = key[11] = 0xff;
            memcpy(key + 12, &((struct sockaddr_in *)ifa->ifa_addr)->sin_addr, 4);
        } else if (ifa->ifa_addr->sa_family == AF_INET6) {
            memcpy(key, &((struct sockaddr_in6 *)ifa->ifa_addr)->sin6_addr, 16);
        } else {
            continue;
        }
        if (n >= DECAP_MAX_ADDRS || bpf_map_update_elem(map_fd, key, &one, BPF_ANY) < 0)
            continue;
        key_str(key, buf, sizeof buf);
        snprintf(names + strlen(names), nlen - strlen(names), "%s%s", n ? ", " : "", buf);
        n++;
    }
    freeifaddrs(ifa0);
    return n;
}

/* Create the XDP link in the asked mode; on a native failure, tell "only
 * generic would work" apart from other errors, as `sluice l4` does. */
static int attach_link(int prog_fd, int ifindex, const char *ifname, bool generic)
{
    LIBBPF_OPTS(bpf_link_create_opts, o, .flags = generic ? XDP_FLAGS_SKB_MODE : XDP_FLAGS_DRV_MODE);
    int fd = bpf_link_create(prog_fd, ifindex, BPF_XDP, &o);
    if (fd >= 0)
        return fd;
    int err = errno;
    if (err == EBUSY || err == EEXIST) {
        fprintf(stderr, "sluice l4 decap: %s already has an XDP program (see 'ip link show %s'); detach it first\n",
                ifname, ifname);
        return -1;
    }
    if (!generic) {
        LIBBPF_OPTS(bpf_link_create_opts, g, .flags = XDP_FLAGS_SKB_MODE);
        int gfd = bpf_link_create(prog_fd, ifindex, BPF_XDP, &g);
        if (gfd >= 0) {
            close(gfd);
            fprintf(stderr,
                    "sluice l4 decap: %s: native XDP is not possible (%s), only generic mode is; "
                    "use --generic to accept it (slower: runs after the kernel has built an skb)\n",
                    ifname, strerror(err));
            return -1;
        }
    }
    fprintf(stderr, "sluice l4 decap: %s: cannot attach XDP in %s mode: %s\n", ifname,
            generic ? "generic" : "native", strerror(err));
    return -1;
}

static int cmd_detach_or_stats(const char *dir, const char *ifname, bool detach)
{
    char path[600];
    snprintf(path, sizeof path, "%s/stats", dir);
    int sfd = bpf_obj_get(path);
    snprintf(path, sizeof path, "%s/link", dir);
    int lfd = bpf_obj_get(path);
    if (lfd < 0 && sfd < 0) {
        fprintf(stderr, "sluice l4 decap: nothing pinned in %s: %s (not attached by 'sluice l4 decap'?)\n", dir,
                strerror(errno));
        return 1;
    }
    if (sfd >= 0) {
        printf("sluice l4 decap on %s:\n", ifname);
        print_stats(sfd);
        close(sfd);
    }
    if (!detach) {
        if (lfd >= 0)
            close(lfd);
        return 0;
    }
    int rc = 0;
    if (lfd >= 0 && bpf_link_detach(lfd) < 0 && errno != ENOLINK) {
        fprintf(stderr, "sluice l4 decap: cannot detach from %s: %s\n", ifname, strerror(errno));
        rc = 1;
    }
    if (lfd >= 0)
        close(lfd);
    static const char *const pins[] = { "link", "stats", "addrs" };
    for (size_t i = 0; i < 3; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, pins[i]);
        unlink(path);
    }
    rmdir(dir);
    if (!rc)
        printf("sluice l4 decap: detached from %s, pins in %s removed\n", ifname, dir);
    return rc;
}

/* Replace a pin: unlink what is there, pin fd. */
static int repin(int fd, const char *dir, const char *name)
{
    char path[600];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    unlink(path);
    if (bpf_obj_pin(fd, path) < 0) {
        fprintf(stderr, "sluice l4 decap: cannot pin %s: %s\n", path, strerror(errno));
        return -1;
    }
    return 0;
}

int l4_decap_main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"interface", required_argument, NULL, 'i'}, {"address", required_argument, NULL, 'a'},
        {"generic", no_argument, NULL, 'g'},         {"foreground", no_argument, NULL, 'f'},
        {"detach", no_argument, NULL, 'd'},          {"stats", no_argument, NULL, 's'},
        {"pin-dir", required_argument, NULL, 'P'},   {"help", no_argument, NULL, 'h'},
        {"gue-port", required_argument, NULL, 'u'},
        {0, 0, 0, 0},
    };
    const char *ifname = NULL, *pin_root = DECAP_PIN_DIR;
    char *addrs[MAX_ADDR_ARGS];
    int n_addrs = 0, c;
    long gue_port = 0;
    bool generic = false, foreground = false, detach = false, stats = false;
    optind = 1;
    while ((c = getopt_long(argc, argv, "i:a:u:gfdsP:h", opts, NULL)) != -1) {
        switch (c) {
        case 'i': ifname = optarg; break;
        case 'a':
            if (n_addrs == MAX_ADDR_ARGS) {
                fprintf(stderr, "sluice l4 decap: at most %d --address options\n", MAX_ADDR_ARGS);
                return 2;
            }
            addrs[n_addrs++] = optarg;
            break;
        case 'u': {
            char *end;
            errno = 0;
            gue_port = strtol(optarg, &end, 10);
            if (errno || end == optarg || *end || gue_port < 1 || gue_port > 65535) {
                fprintf(stderr, "sluice l4 decap: --gue-port %s: expected a UDP port, 1 to 65535\n", optarg);
                return 2;
            }
            break;
        }
        case 'g': generic = true; break;
        case 'f': foreground = true; break;
        case 'd': detach = true; break;
        case 's': stats = true; break;
        case 'P': pin_root = optarg; break;
        case 'h': l4_decap_usage(stdout); return 0;
        default: l4_decap_usage(stderr); return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "sluice l4 decap: unexpected argument \"%s\"\n\n", argv[optind]);
        l4_decap_usage(stderr);
        return 2;
    }
    if (!ifname) {
        fprintf(stderr, "sluice l4 decap: --interface IF is required\n\n");
        l4_decap_usage(stderr);
        return 2;
    }
    if ((detach || stats) && (foreground || n_addrs || gue_port)) {
        fprintf(stderr, "sluice l4 decap: --detach and --stats take only --interface and --pin-dir\n");
        return 2;
    }
    libbpf_set_print(l4_libbpf_print);
    char dir[512];
    snprintf(dir, sizeof dir, "%s/%s", pin_root, ifname);
    if (!foreground && l4_ensure_bpffs(pin_root) < 0) {
        fprintf(stderr, "sluice l4 decap: no bpffs on /sys/fs/bpf and cannot mount one: %s\n", strerror(errno));
        return 1;
    }
    if (detach || stats)
        return cmd_detach_or_stats(dir, ifname, detach);

    int ifindex = (int)if_nametoindex(ifname);
    if (!ifindex) {
        fprintf(stderr, "sluice l4 decap: interface %s: %s\n", ifname, strerror(errno));
        return 1;
    }
    struct decap *skel = decap__open_and_load();
    if (!skel) {
        fprintf(stderr, "sluice l4 decap: cannot load the decap program (verifier error, see above): %s\n",
                strerror(errno));
        return 1;
    }
    int rc = 1, link_fd = -1;
    char names[1024];
    int n = fill_addrs(bpf_map__fd(skel->maps.decap_addrs), ifname, addrs, n_addrs, names, sizeof names);
    if (n < 0)
        goto out;
    if (n == 0) {
        fprintf(stderr, "sluice l4 decap: %s has no IP address; give the tunnel address with --address\n", ifname);
        goto out;
    }
    /* Before attaching: GUE to the port from the first packet on (0, the
     * map's initial value, leaves UDP alone). */
    struct decap_cfg dcfg = { .gue_port = htons((uint16_t)gue_port) };
    __u32 zero = 0;
    if (bpf_map_update_elem(bpf_map__fd(skel->maps.decap_config), &zero, &dcfg, BPF_ANY) < 0) {
        fprintf(stderr, "sluice l4 decap: cannot write the GUE port: %s\n", strerror(errno));
        goto out;
    }
    /* What the messages say it decapsulates. */
    char what[64] = "IP-in-IP";
    if (gue_port)
        snprintf(what, sizeof what, "IP-in-IP and GUE (UDP port %ld)", gue_port);
    int prog_fd = bpf_program__fd(skel->progs.sluice_decap);
    const char *mode = generic ? "generic (SKB)" : "native (driver)";

    if (foreground) {
        sigset_t set;
        sigemptyset(&set);
        sigaddset(&set, SIGTERM);
        sigaddset(&set, SIGINT);
        sigprocmask(SIG_BLOCK, &set, NULL);
        link_fd = attach_link(prog_fd, ifindex, ifname, generic);
        if (link_fd < 0)
            goto out;
        printf("sluice l4 decap: attached to %s in %s XDP mode, decapsulating %s to %s; "
               "SIGTERM or SIGINT detaches\n", ifname, mode, what, names);
        fflush(stdout);
        int sig = 0;
        sigwait(&set, &sig);
        close(link_fd); /* the last reference: the kernel detaches */
        link_fd = -1;
        printf("sluice l4 decap: %s, detached from %s\n", strsignal(sig), ifname);
        print_stats(bpf_map__fd(skel->maps.decap_stats));
        rc = 0;
        goto out;
    }

    if (l4_mkdir_p(dir) < 0) {
        fprintf(stderr, "sluice l4 decap: cannot create %s: %s\n", dir, strerror(errno));
        goto out;
    }
    char path[600];
    snprintf(path, sizeof path, "%s/link", dir);
    int old = bpf_obj_get(path);
    bool replaced = false;
    if (old >= 0) {
        /* Ours from an earlier run: swap the program in place. If the link
         * is dead (its interface went away), start over. */
        if (bpf_link_update(old, prog_fd, NULL) == 0) {
            link_fd = old;
            replaced = true;
        } else {
            close(old);
            unlink(path);
        }
    }
    if (link_fd < 0) {
        link_fd = attach_link(prog_fd, ifindex, ifname, generic);
        if (link_fd < 0)
            goto out;
        if (repin(link_fd, dir, "link") < 0) {
            close(link_fd); /* not pinned: detaches */
            link_fd = -1;
            goto out;
        }
    }
    if (repin(bpf_map__fd(skel->maps.decap_stats), dir, "stats") < 0 ||
        repin(bpf_map__fd(skel->maps.decap_addrs), dir, "addrs") < 0)
        goto out;
    if (replaced)
        printf("sluice l4 decap: replaced the program on %s (link %s/link, mode unchanged), decapsulating "
               "%s to %s\n", ifname, dir, what, names);
    else
        printf("sluice l4 decap: attached to %s in %s XDP mode, decapsulating %s to %s; link pinned at "
               "%s/link ('sluice l4 decap -i %s --detach' removes it)\n", ifname, mode, what, names, dir, ifname);
    rc = 0;
out:
    if (link_fd >= 0)
        close(link_fd); /* pinned: stays attached */
    decap__destroy(skel);
    return rc;
}
