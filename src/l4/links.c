/* See links.h. */
#include "l4/links.h"

#include <dirent.h>
#include <errno.h>
#include <linux/if_link.h>
#include <net/if.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "l4/loader.h"

#define MAX_PINNED 64
#define PATH_LEN 1024   /* a links directory (< 600) + "/" + a pin name (< 256) */

/* dir/name into out[PATH_LEN]. */
static const char *pin_path(char *out, const char *dir, const char *name)
{
    if (snprintf(out, PATH_LEN, "%s/%s", dir, name) >= PATH_LEN)
        out[0] = '\0'; /* cannot happen with the sizes above */
    return out;
}

/* A link found pinned in the links directory. */
struct pinned_link {
    char pin[256];       /* its file name there (the interface's name when pinned) */
    int fd;
    uint32_t id, prog_id;
    int ifindex;
    bool claimed;        /* a configured interface took it over */
};

/* The id, program and interface of an XDP link; -1 if fd is not one. An
 * XDP link whose interface was deleted reports ifindex 0: the kernel
 * detached it then. */
static int xdp_link_info(int fd, uint32_t *id, uint32_t *prog_id, int *ifindex)
{
    struct bpf_link_info info;
    __u32 len = sizeof info;
    memset(&info, 0, sizeof info);
    if (bpf_obj_get_info_by_fd(fd, &info, &len) < 0)
        return -1;
    if (info.type != BPF_LINK_TYPE_XDP) {
        errno = EINVAL;
        return -1;
    }
    *id = info.id;
    *prog_id = info.prog_id;
    *ifindex = (int)info.xdp.ifindex;
    return 0;
}

/* The links pinned in dir. A pin that is not an XDP link, or whose
 * interface is gone, is stale: left out, and removed if prune. */
static size_t scan_links(const char *dir, struct pinned_link *out, size_t cap, bool prune)
{
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    size_t n = 0;
    struct dirent *e;
    while (n < cap && (e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        struct pinned_link *p = &out[n];
        memset(p, 0, sizeof *p);
        snprintf(p->pin, sizeof p->pin, "%s", e->d_name);
        char path[PATH_LEN];
        pin_path(path, dir, e->d_name);
        p->fd = bpf_obj_get(path);
        if (p->fd < 0)
            continue;
        if (xdp_link_info(p->fd, &p->id, &p->prog_id, &p->ifindex) < 0 || p->ifindex == 0) {
            close(p->fd);
            if (prune)
                unlink(path);
            continue;
        }
        n++;
    }
    closedir(d);
    return n;
}

/* Pin fd at dir/name; a pin already there (stale) is replaced. */
static int pin_at(int fd, const char *dir, const char *name, char *err, size_t errlen)
{
    char path[PATH_LEN];
    pin_path(path, dir, name);
    if (bpf_obj_pin(fd, path) == 0)
        return 0;
    if (errno == EEXIST && unlink(path) == 0 && bpf_obj_pin(fd, path) == 0)
        return 0;
    snprintf(err, errlen, "cannot pin the XDP link at %s: %s", path, strerror(errno));
    return -1;
}

static const char *mode_name(bool generic)
{
    return generic ? "generic" : "native";
}

/* Whether prog_id runs on ifindex in the wanted mode (the kernel reports
 * the program of each mode). Unknown counts as yes. */
static bool runs_in_mode(int ifindex, uint32_t prog_id, bool generic)
{
    LIBBPF_OPTS(bpf_xdp_query_opts, q);
    if (bpf_xdp_query(ifindex, 0, &q) < 0)
        return true;
    return (generic ? q.skb_prog_id : q.drv_prog_id) == prog_id;
}

/* The XDP program on an interface that has no link of ours. */
struct occupant {
    uint32_t prog_id;    /* 0: none */
    bool generic;
    char name[16];
    uint32_t link_id;    /* attached through this link; 0: through netlink */
};

static int find_occupant(int ifindex, struct occupant *o)
{
    memset(o, 0, sizeof *o);
    LIBBPF_OPTS(bpf_xdp_query_opts, q);
    if (bpf_xdp_query(ifindex, 0, &q) < 0)
        return -1;
    o->prog_id = q.drv_prog_id ? q.drv_prog_id : q.skb_prog_id;
    o->generic = !q.drv_prog_id;
    if (!o->prog_id)
        return 0;
    int pfd = bpf_prog_get_fd_by_id(o->prog_id);
    if (pfd >= 0) {
        struct bpf_prog_info pi;
        __u32 len = sizeof pi;
        memset(&pi, 0, sizeof pi);
        if (bpf_obj_get_info_by_fd(pfd, &pi, &len) == 0)
            snprintf(o->name, sizeof o->name, "%s", pi.name);
        close(pfd);
    }
    if (!o->name[0])
        snprintf(o->name, sizeof o->name, "(no name)");
    /* Through a link? The kernel does not say; look for an XDP link on
     * this interface that runs this program. */
    __u32 id = 0;
    while (bpf_link_get_next_id(id, &id) == 0) {
        int lfd = bpf_link_get_fd_by_id(id);
        if (lfd < 0)
            continue;
        uint32_t lid, lprog;
        int lif;
        bool match = xdp_link_info(lfd, &lid, &lprog, &lif) == 0 && lif == ifindex && lprog == o->prog_id;
        close(lfd);
        if (match) {
            o->link_id = lid;
            break;
        }
    }
    return 0;
}

static int take_off(int ifindex, const struct occupant *o)
{
    if (o->link_id) {
        int lfd = bpf_link_get_fd_by_id(o->link_id);
        if (lfd < 0)
            return -1;
        int rc = bpf_link_detach(lfd);
        close(lfd);
        return rc < 0 ? -1 : 0;
    }
    /* Only if it is still the one attached (XDP_FLAGS_REPLACE). */
    int pfd = bpf_prog_get_fd_by_id(o->prog_id);
    LIBBPF_OPTS(bpf_xdp_attach_opts, a, .old_prog_fd = pfd);
    uint32_t flags = (o->generic ? XDP_FLAGS_SKB_MODE : XDP_FLAGS_DRV_MODE) | (pfd >= 0 ? XDP_FLAGS_REPLACE : 0);
    int rc = bpf_xdp_detach(ifindex, flags, pfd >= 0 ? &a : NULL);
    if (pfd >= 0)
        close(pfd);
    if (rc < 0)
        errno = -rc;
    return rc < 0 ? -1 : 0;
}

/* A new link in the asked mode. On a native failure, tell "only generic
 * would work" apart from other errors by trying generic mode and taking
 * it straight off again. */
static int create_link(int prog_fd, const struct l4_iface *f, bool generic, char *err, size_t errlen)
{
    LIBBPF_OPTS(bpf_link_create_opts, o, .flags = generic ? XDP_FLAGS_SKB_MODE : XDP_FLAGS_DRV_MODE);
    int fd = bpf_link_create(prog_fd, f->ifindex, BPF_XDP, &o);
    if (fd >= 0)
        return fd;
    int e = errno;
    if (!generic && e != EBUSY && e != EEXIST) {
        LIBBPF_OPTS(bpf_link_create_opts, g, .flags = XDP_FLAGS_SKB_MODE);
        int gfd = bpf_link_create(prog_fd, f->ifindex, BPF_XDP, &g);
        if (gfd >= 0) {
            close(gfd); /* not pinned: the kernel detaches it */
            snprintf(err, errlen,
                     "interface %s: native XDP is not possible (%s), only generic mode is; generic mode runs "
                     "after the kernel has built an skb and is much slower, so it is used only when asked "
                     "for (l4.xdp_mode: generic)",
                     f->name, strerror(e));
            return -1;
        }
    }
    snprintf(err, errlen, "interface %s: cannot attach XDP in %s mode: %s", f->name, mode_name(generic), strerror(e));
    return -1;
}

/* Our pinned link for f: swap the program in (same mode), or, when
 * l4.xdp_mode changed, detach it (the caller makes a new one). */
static int take_over_pinned(const char *dir, int prog_fd, struct l4_iface *f, struct pinned_link *mine, bool generic,
                            char *err, size_t errlen)
{
    mine->claimed = true;
    f->old_prog_id = mine->prog_id;
    f->link_id = mine->id;
    if (!runs_in_mode(f->ifindex, mine->prog_id, generic)) {
        f->how = L4_ATTACH_REMODE;
        bpf_link_detach(mine->fd);
        close(mine->fd);
        mine->fd = -1;
        char path[PATH_LEN];
        pin_path(path, dir, mine->pin);
        unlink(path);
        return 0;
    }
    if (bpf_link_update(mine->fd, prog_fd, NULL) < 0) {
        snprintf(err, errlen, "interface %s: cannot swap the program of link %u (pinned in %s): %s; the earlier "
                 "program stays attached", f->name, mine->id, dir, strerror(errno));
        return -1;
    }
    f->how = L4_ATTACH_REPLACED;
    f->link_fd = mine->fd;
    mine->fd = -1;
    if (strcmp(mine->pin, f->name) != 0) {
        /* The interface was renamed: the pin follows (new name first, so
         * the link is never without a pin). */
        if (pin_at(f->link_fd, dir, f->name, err, errlen) < 0)
            return -1;
        char path[PATH_LEN];
        pin_path(path, dir, mine->pin);
        unlink(path);
    }
    return 0;
}

/* An interface without a link of ours: whatever XDP program is there
 * decides. Sets f->how; takes the program off when that is the decision. */
static int clear_interface(const char *pin_dir, struct l4_iface *f, bool force, char *err, size_t errlen)
{
    struct occupant o;
    f->how = L4_ATTACH_NEW;
    if (find_occupant(f->ifindex, &o) < 0) {
        snprintf(err, errlen, "interface %s: cannot ask for its XDP program: %s", f->name, strerror(errno));
        return -1;
    }
    if (!o.prog_id)
        return 0;
    bool ours = strcmp(o.name, L4_PROG_NAME) == 0;
    if (ours && !o.link_id) {
        f->how = L4_ATTACH_UPGRADED;
    } else if (force) {
        f->how = L4_ATTACH_FORCED;
    } else if (ours) {
        snprintf(err, errlen, "interface %s: the Sluice forwarder is attached there through link %u, which is not "
                 "pinned in %s/" L4_LINKS_SUBDIR " (another sluice l4 with another --pin-dir?); stop that one "
                 "and run 'sluice l4 detach' with its --pin-dir, or start this one with --force to take the "
                 "interface over", f->name, o.link_id, pin_dir);
        return -1;
    } else {
        char how[96];
        if (o.link_id)
            snprintf(how, sizeof how, "link %u: bpftool link detach id %u", o.link_id, o.link_id);
        else
            snprintf(how, sizeof how, "ip link set dev %s %s off", f->name, o.generic ? "xdpgeneric" : "xdpdrv");
        snprintf(err, errlen, "interface %s already has an XDP program that is not the Sluice forwarder: %s "
                 "(id %u, %s mode); take it off (%s) or start with --force to replace it", f->name, o.name,
                 o.prog_id, mode_name(o.generic), how);
        return -1;
    }
    f->old_prog_id = o.prog_id;
    snprintf(f->old_prog_name, sizeof f->old_prog_name, "%s", o.name);
    if (take_off(f->ifindex, &o) < 0) {
        snprintf(err, errlen, "interface %s: cannot take XDP program %s (id %u) off: %s", f->name, o.name,
                 o.prog_id, strerror(errno));
        return -1;
    }
    return 0;
}

static int attach_one(const char *pin_dir, const char *dir, int prog_fd, struct l4_iface *f, struct pinned_link *pinned,
                      size_t np, bool generic, bool force, char *err, size_t errlen)
{
    f->link_fd = -1;
    struct pinned_link *mine = NULL;
    for (size_t k = 0; k < np && !mine; k++)
        if (!pinned[k].claimed && pinned[k].ifindex == f->ifindex)
            mine = &pinned[k];
    int rc = mine ? take_over_pinned(dir, prog_fd, f, mine, generic, err, errlen)
                  : clear_interface(pin_dir, f, force, err, errlen);
    if (rc < 0 || f->link_fd >= 0)
        return rc;
    int fd = create_link(prog_fd, f, generic, err, errlen);
    if (fd < 0) {
        if (f->how != L4_ATTACH_NEW) {
            size_t used = strlen(err);
            snprintf(err + used, errlen - used, " (the program that was there is off: nothing is attached to %s "
                     "now)", f->name);
        }
        return -1;
    }
    if (pin_at(fd, dir, f->name, err, errlen) < 0) {
        close(fd); /* not pinned: the kernel detaches it */
        return -1;
    }
    uint32_t prog_id;
    int ifindex;
    xdp_link_info(fd, &f->link_id, &prog_id, &ifindex);
    f->link_fd = fd;
    return 0;
}

int l4_links_attach(const char *pin_dir, int prog_fd, struct l4_iface *ifaces, size_t n, bool generic, bool force,
                    void (*on_gone)(const char *ifname), char *err, size_t errlen)
{
    char dir[600];
    snprintf(dir, sizeof dir, "%s/" L4_LINKS_SUBDIR, pin_dir);
    if (l4_mkdir_p(dir) < 0) {
        snprintf(err, errlen, "cannot create %s: %s", dir, strerror(errno));
        return -1;
    }
    struct pinned_link pinned[MAX_PINNED];
    size_t np = scan_links(dir, pinned, MAX_PINNED, true);
    int rc = 0;
    size_t i;
    for (i = 0; i < n; i++)
        ifaces[i].link_fd = -1;
    for (i = 0; i < n && rc == 0; i++)
        rc = attach_one(pin_dir, dir, prog_fd, &ifaces[i], pinned, np, generic, force, err, errlen);
    if (rc < 0) {
        /* Back to how it was where that is possible: a new link comes off. */
        for (size_t k = 0; k < n; k++) {
            struct l4_iface *f = &ifaces[k];
            if (f->link_fd < 0 || f->how != L4_ATTACH_NEW)
                continue;
            char path[PATH_LEN];
            pin_path(path, dir, f->name);
            bpf_link_detach(f->link_fd);
            unlink(path);
            close(f->link_fd);
            f->link_fd = -1;
        }
    }
    for (size_t k = 0; k < np; k++) {
        struct pinned_link *p = &pinned[k];
        if (rc == 0 && !p->claimed) {
            /* An interface that left l4.interfaces. */
            char path[PATH_LEN], ifname[IF_NAMESIZE];
            pin_path(path, dir, p->pin);
            bpf_link_detach(p->fd);
            unlink(path);
            if (on_gone)
                on_gone(if_indextoname((unsigned)p->ifindex, ifname) ? ifname : p->pin);
        }
        if (p->fd >= 0)
            close(p->fd);
    }
    return rc;
}

int l4_links_detach_all(const char *pin_dir, void (*say)(const char *line), char *err, size_t errlen)
{
    char dir[600];
    snprintf(dir, sizeof dir, "%s/" L4_LINKS_SUBDIR, pin_dir);
    DIR *d = opendir(dir);
    if (!d) {
        if (errno == ENOENT)
            return 0;
        snprintf(err, errlen, "cannot read %s: %s", dir, strerror(errno));
        return -1;
    }
    int n = 0, rc = 0;
    struct dirent *e;
    while (rc == 0 && (e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        char path[PATH_LEN], line[PATH_LEN + 128], ifname[IF_NAMESIZE];
        pin_path(path, dir, e->d_name);
        int fd = bpf_obj_get(path);
        uint32_t id, prog_id;
        int ifindex;
        if (fd >= 0 && xdp_link_info(fd, &id, &prog_id, &ifindex) == 0 && ifindex) {
            if (bpf_link_detach(fd) < 0 && errno != ENOLINK) {
                snprintf(err, errlen, "cannot detach link %u (%s): %s", id, path, strerror(errno));
                rc = -1;
            }
            snprintf(line, sizeof line, "detached from %s (link %u, program %u)",
                     if_indextoname((unsigned)ifindex, ifname) ? ifname : e->d_name, id, prog_id);
        } else {
            snprintf(line, sizeof line, "removed %s (its interface is gone)", path);
        }
        if (fd >= 0)
            close(fd);
        if (rc == 0 && unlink(path) < 0) {
            snprintf(err, errlen, "cannot remove %s: %s", path, strerror(errno));
            rc = -1;
        }
        if (rc == 0) {
            say(line);
            n++;
        }
    }
    closedir(d);
    if (rc == 0)
        rmdir(dir);
    return rc < 0 ? -1 : n;
}

void l4_links_describe(const char *pin_dir, char *buf, size_t len)
{
    char dir[600];
    snprintf(dir, sizeof dir, "%s/" L4_LINKS_SUBDIR, pin_dir);
    buf[0] = '\0';
    struct pinned_link pinned[MAX_PINNED];
    size_t np = scan_links(dir, pinned, MAX_PINNED, false), used = 0;
    for (size_t k = 0; k < np; k++) {
        char ifname[IF_NAMESIZE];
        const char *name = if_indextoname((unsigned)pinned[k].ifindex, ifname) ? ifname : pinned[k].pin;
        int w = snprintf(buf + used, len - used, "%s%s (link %u, program %u, %s)", k ? ", " : "", name,
                         pinned[k].id, pinned[k].prog_id,
                         mode_name(!runs_in_mode(pinned[k].ifindex, pinned[k].prog_id, false)));
        if (w > 0 && (size_t)w < len - used)
            used += (size_t)w;
        close(pinned[k].fd);
    }
}
