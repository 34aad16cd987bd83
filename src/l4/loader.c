/* See loader.h. */
#include "l4/loader.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/if_link.h>
#include <net/if.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "forwarder.skel.h"

/* libbpf prints its own diagnostics to stderr by default; keep the
 * warnings (they explain verifier failures) and drop the debug chatter. */
int l4_libbpf_print(enum libbpf_print_level level, const char *fmt, va_list ap)
{
    if (level == LIBBPF_DEBUG || level == LIBBPF_INFO)
        return 0;
    return vfprintf(stderr, fmt, ap);
}

int l4_mkdir_p(const char *dir)
{
    char tmp[512];
    snprintf(tmp, sizeof tmp, "%s", dir);
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(tmp, 0700) < 0 && errno != EEXIST)
            return -1;
        *p = '/';
    }
    return mkdir(tmp, 0700) < 0 && errno != EEXIST ? -1 : 0;
}

/* Whether the map pinned at path has the shape `map` is about to be
 * created with; libbpf refuses to reuse it otherwise. */
static bool pin_fits(const char *path, const struct bpf_map *map)
{
    int fd = bpf_obj_get(path);
    if (fd < 0)
        return true; /* nothing pinned: libbpf creates and pins */
    struct bpf_map_info info = { 0 };
    __u32 len = sizeof info;
    bool ok = bpf_obj_get_info_by_fd(fd, &info, &len) == 0 && info.type == bpf_map__type(map) &&
              info.key_size == bpf_map__key_size(map) && info.value_size == bpf_map__value_size(map) &&
              info.max_entries == bpf_map__max_entries(map) && info.map_flags == bpf_map__map_flags(map);
    close(fd);
    return ok;
}

#ifndef BPF_FS_MAGIC
#define BPF_FS_MAGIC 0xcafe4a11
#endif

/* Pins need a bpffs. Most systems mount one on /sys/fs/bpf; a fresh
 * `ip netns exec` (which remounts /sys) does not, so mount it there when
 * the pin directory is under it. Such a mount lives and dies with the
 * mount namespace: use --pin-dir on a bpffs of your own to keep pins
 * across `ip netns exec` runs (docs/l4.md). */
int l4_ensure_bpffs(const char *pin_dir)
{
    struct statfs st;
    if (strncmp(pin_dir, "/sys/fs/bpf/", 12) != 0)
        return 0;
    if (statfs("/sys/fs/bpf", &st) == 0 && st.f_type == BPF_FS_MAGIC)
        return 0;
    return mount("bpf", "/sys/fs/bpf", "bpf", 0, "mode=0700");
}

int l4_loader_open(struct l4_loader *ld, const char *pin_dir, uint32_t maglev_m, uint32_t maglev_tables,
                   uint32_t seed, void (*note)(const char *msg), char *err, size_t errlen)
{
    memset(ld, 0, sizeof *ld);
    ld->prog_fd = -1;
    ld->maglev_m = maglev_m;
    ld->maglev_tables = maglev_tables;
    ld->seed = seed;
    libbpf_set_print(l4_libbpf_print);

    if (l4_ensure_bpffs(pin_dir) < 0) {
        snprintf(err, errlen, "no bpffs on /sys/fs/bpf and cannot mount one: %s", strerror(errno));
        return -1;
    }
    if (l4_mkdir_p(pin_dir) < 0) {
        snprintf(err, errlen, "cannot create %s: %s (is bpffs mounted on /sys/fs/bpf?)", pin_dir, strerror(errno));
        return -1;
    }
    ld->skel = forwarder__open();
    if (!ld->skel) {
        snprintf(err, errlen, "cannot open the forwarder object: %s", strerror(errno));
        return -1;
    }
    ld->skel->rodata->maglev_m = maglev_m;
    ld->skel->rodata->maglev_tables = maglev_tables;
    ld->skel->rodata->flow_seed = seed;
    /* Spreads the rr cursors' starting points over the table. */
    int ncpus = libbpf_num_possible_cpus();
    ld->skel->rodata->nr_cpus = ncpus > 0 ? (uint32_t)ncpus : 1;
    int rc = bpf_map__set_max_entries(ld->skel->maps.maglev, maglev_m * maglev_tables);
    if (rc) {
        snprintf(err, errlen, "cannot size the maglev map: %s", strerror(-rc));
        goto fail;
    }

    /* Pin every map the program declares (the NAT work adds maps; they
     * get pinned too without a change here). */
    struct bpf_map *map;
    bpf_object__for_each_map(map, ld->skel->obj) {
        if (bpf_map__is_internal(map))
            continue;
        char path[512];
        snprintf(path, sizeof path, "%s/%s", pin_dir, bpf_map__name(map));
        if (access(path, F_OK) == 0) {
            if (pin_fits(path, map)) {
                ld->n_reused++;
            } else {
                char msg[600];
                snprintf(msg, sizeof msg, "pinned map %s has another shape (changed config or program): replaced", path);
                if (note)
                    note(msg);
                unlink(path);
            }
        }
        rc = bpf_map__set_pin_path(map, path);
        if (rc) {
            snprintf(err, errlen, "cannot set the pin path of map %s: %s", bpf_map__name(map), strerror(-rc));
            goto fail;
        }
    }
    rc = forwarder__load(ld->skel);
    if (rc) {
        snprintf(err, errlen, "cannot load the forwarder (verifier or map error, see above): %s",
                 strerror(rc < 0 ? -rc : errno));
        goto fail;
    }
    ld->prog_fd = bpf_program__fd(ld->skel->progs.sluice_l4_fwd);
    ld->fd_vips = bpf_map__fd(ld->skel->maps.vips);
    ld->fd_reals = bpf_map__fd(ld->skel->maps.reals);
    ld->fd_maglev = bpf_map__fd(ld->skel->maps.maglev);
    ld->fd_conn = bpf_map__fd(ld->skel->maps.conn);
    ld->fd_cfg = bpf_map__fd(ld->skel->maps.l4_config);
    ld->fd_vip_stats = bpf_map__fd(ld->skel->maps.vip_stats);
    ld->fd_real_stats = bpf_map__fd(ld->skel->maps.real_stats);
    ld->fd_reasons = bpf_map__fd(ld->skel->maps.reasons);
    ld->fd_nat_pools = bpf_map__fd(ld->skel->maps.nat_pools);
    ld->fd_conn_shared = bpf_map__fd(ld->skel->maps.conn_shared);
    ld->fd_nat = bpf_map__fd(ld->skel->maps.nat);
    return 0;
fail:
    forwarder__destroy(ld->skel);
    ld->skel = NULL;
    return -1;
}

static int iface_mac(const char *name, uint8_t mac[6])
{
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (s < 0)
        return -1;
    struct ifreq ifr = { 0 };
    snprintf(ifr.ifr_name, sizeof ifr.ifr_name, "%s", name);
    int rc = ioctl(s, SIOCGIFHWADDR, &ifr);
    close(s);
    if (rc < 0)
        return -1;
    memcpy(mac, ifr.ifr_hwaddr.sa_data, 6);
    return 0;
}

int l4_loader_attach(struct l4_loader *ld, const char *name, bool generic, char *err, size_t errlen)
{
    if (ld->n_ifaces == L4_MAX_IFACES) {
        snprintf(err, errlen, "%s: at most %d interfaces", name, L4_MAX_IFACES);
        return -1;
    }
    struct l4_iface *f = &ld->ifaces[ld->n_ifaces];
    memset(f, 0, sizeof *f);
    snprintf(f->name, sizeof f->name, "%s", name);
    f->ifindex = (int)if_nametoindex(name);
    if (!f->ifindex) {
        snprintf(err, errlen, "interface %s: %s", name, strerror(errno));
        return -1;
    }
    if (iface_mac(name, f->mac) < 0) {
        snprintf(err, errlen, "interface %s: cannot read its MAC address: %s", name, strerror(errno));
        return -1;
    }
    /* No XDP_FLAGS_UPDATE_IF_NOEXIST: a program left by a run that died
     * without detaching is replaced in one step, with no gap. */
    uint32_t flags = generic ? XDP_FLAGS_SKB_MODE : XDP_FLAGS_DRV_MODE;
    int rc = bpf_xdp_attach(f->ifindex, ld->prog_fd, flags, NULL);
    if (rc < 0 && !generic) {
        /* Tell "this driver has no native XDP" apart from other failures
         * by trying generic mode and taking it straight off again. */
        bool generic_works = bpf_xdp_attach(f->ifindex, ld->prog_fd, XDP_FLAGS_SKB_MODE, NULL) == 0;
        if (generic_works)
            bpf_xdp_detach(f->ifindex, XDP_FLAGS_SKB_MODE, NULL);
        if (generic_works)
            snprintf(err, errlen,
                     "interface %s: native XDP is not possible (%s), only generic mode is; generic mode runs "
                     "after the kernel has built an skb and is much slower, so it is used only when asked "
                     "for (l4.xdp_mode: generic)",
                     name, strerror(-rc));
        else
            snprintf(err, errlen, "interface %s: cannot attach XDP: %s", name, strerror(-rc));
        return -1;
    }
    if (rc < 0) {
        snprintf(err, errlen, "interface %s: cannot attach XDP in generic mode: %s", name, strerror(-rc));
        return -1;
    }
    f->flags = flags;
    ld->n_ifaces++;
    return 0;
}

void l4_loader_close(struct l4_loader *ld)
{
    for (size_t i = 0; i < ld->n_ifaces; i++) {
        struct l4_iface *f = &ld->ifaces[i];
        if (!f->flags)
            continue;
        /* Replace-with-nothing only if ours is still attached: a newer
         * `sluice l4` may already have taken the interface over. */
        LIBBPF_OPTS(bpf_xdp_attach_opts, opts, .old_prog_fd = ld->prog_fd);
        bpf_xdp_detach(f->ifindex, f->flags | XDP_FLAGS_REPLACE, &opts);
        f->flags = 0;
    }
    ld->n_ifaces = 0;
    if (ld->skel)
        forwarder__destroy(ld->skel);
    ld->skel = NULL;
}

int l4_jit_disabled(void)
{
    FILE *f = fopen("/proc/sys/net/core/bpf_jit_enable", "r");
    int v = -1;
    if (!f)
        return -1;
    if (fscanf(f, "%d", &v) != 1)
        v = -1;
    fclose(f);
    return v < 0 ? -1 : v == 0;
}

int l4_open_pinned(const char *pin_dir, const char *name)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", pin_dir, name);
    return bpf_obj_get(path);
}
