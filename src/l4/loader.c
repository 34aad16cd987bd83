/* See loader.h. */
#include "l4/loader.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
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
    return mount("bpf", "/sys/fs/bpf", "bpf", 0, "mode=0700") < 0 ? -1 : 1;
}

int l4_pin_dir_lock(const char *pin_dir, int wait_ms, char *err, size_t errlen)
{
    int fd = open(pin_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        snprintf(err, errlen, "cannot open %s: %s", pin_dir, strerror(errno));
        return -1;
    }
    for (int waited = 0;; waited += 100) {
        if (flock(fd, LOCK_EX | LOCK_NB) == 0)
            return fd;
        if (errno != EWOULDBLOCK || waited >= wait_ms)
            break;
        usleep(100 * 1000);
    }
    if (errno == EWOULDBLOCK)
        snprintf(err, errlen, "a sluice l4 is running with its pins in %s (it holds the directory's lock)%s", pin_dir,
                 wait_ms ? " and did not exit within the wait" : "");
    else
        snprintf(err, errlen, "cannot lock %s: %s", pin_dir, strerror(errno));
    close(fd);
    return -1;
}

int l4_loader_open(struct l4_loader *ld, const char *pin_dir, uint32_t maglev_m, uint32_t maglev_tables,
                   uint32_t seed, void (*note)(const char *msg), char *err, size_t errlen)
{
    memset(ld, 0, sizeof *ld);
    ld->prog_fd = -1;
    ld->lock_fd = -1;
    ld->maglev_m = maglev_m;
    ld->maglev_tables = maglev_tables;
    ld->seed = seed;
    libbpf_set_print(l4_libbpf_print);

    int mounted = l4_ensure_bpffs(pin_dir);
    if (mounted < 0) {
        snprintf(err, errlen, "no bpffs on /sys/fs/bpf and cannot mount one: %s", strerror(errno));
        return -1;
    }
    ld->mounted_bpffs = mounted == 1;
    if (l4_mkdir_p(pin_dir) < 0) {
        snprintf(err, errlen, "cannot create %s: %s (is bpffs mounted on /sys/fs/bpf?)", pin_dir, strerror(errno));
        return -1;
    }
    /* A restart that does not wait for the old run to exit gets 5 s. */
    ld->lock_fd = l4_pin_dir_lock(pin_dir, 5000, err, errlen);
    if (ld->lock_fd < 0)
        return -1;
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
    ld->fd_sync_events = bpf_map__fd(ld->skel->maps.sync_events);
    return 0;
fail:
    forwarder__destroy(ld->skel);
    ld->skel = NULL;
    close(ld->lock_fd);
    ld->lock_fd = -1;
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

int l4_loader_add_iface(struct l4_loader *ld, const char *name, char *err, size_t errlen)
{
    if (ld->n_ifaces == L4_MAX_IFACES) {
        snprintf(err, errlen, "%s: at most %d interfaces", name, L4_MAX_IFACES);
        return -1;
    }
    struct l4_iface *f = &ld->ifaces[ld->n_ifaces];
    memset(f, 0, sizeof *f);
    f->link_fd = -1;
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
    ld->n_ifaces++;
    return 0;
}

void l4_loader_close(struct l4_loader *ld)
{
    /* Closing a pinned link's fd leaves it attached: the pin holds it. */
    for (size_t i = 0; i < ld->n_ifaces; i++) {
        if (ld->ifaces[i].link_fd >= 0)
            close(ld->ifaces[i].link_fd);
        ld->ifaces[i].link_fd = -1;
    }
    ld->n_ifaces = 0;
    if (ld->skel)
        forwarder__destroy(ld->skel);
    ld->skel = NULL;
    if (ld->lock_fd >= 0)
        close(ld->lock_fd);
    ld->lock_fd = -1;
}

int l4_remove_pinned_maps(const char *pin_dir, void (*say)(const char *line), char *err, size_t errlen)
{
    /* The names come from the program itself (opened, not loaded), so
     * nothing else in the directory is touched. */
    struct forwarder *skel = forwarder__open();
    if (!skel) {
        snprintf(err, errlen, "cannot open the forwarder object: %s", strerror(errno));
        return -1;
    }
    int n = 0;
    struct bpf_map *map;
    bpf_object__for_each_map(map, skel->obj) {
        if (bpf_map__is_internal(map))
            continue;
        char path[512];
        snprintf(path, sizeof path, "%s/%s", pin_dir, bpf_map__name(map));
        if (unlink(path) == 0) {
            n++;
        } else if (errno != ENOENT) {
            snprintf(err, errlen, "cannot remove %s: %s", path, strerror(errno));
            forwarder__destroy(skel);
            return -1;
        }
    }
    forwarder__destroy(skel);
    char line[600];
    if (n == 0 && access(pin_dir, F_OK) < 0)
        snprintf(line, sizeof line, "no maps pinned in %s", pin_dir);
    else if (rmdir(pin_dir) == 0)
        snprintf(line, sizeof line, "removed %d pinned maps and %s", n, pin_dir);
    else
        snprintf(line, sizeof line, "removed %d pinned maps from %s (other entries stay)", n, pin_dir);
    say(line);
    return n;
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
