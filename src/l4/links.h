/* The forwarder's XDP attachments: one BPF link per interface, pinned at
 * PIN_DIR/links/IFNAME beside the pinned maps.
 *
 * A pinned link outlives the process that made it, so `sluice l4` exits
 * (SIGTERM, SIGINT, a crash) with its program still attached: packets to
 * the VIPs go on being forwarded from the pinned maps while no daemon
 * runs, instead of reaching the LB's own stack, which holds the VIPs and
 * would answer every segment of an established flow with a reset. The
 * next run swaps its program into the same link (bpf_link_update: one
 * pointer exchange in the kernel, no moment without a program). Only
 * `sluice l4 detach` takes the links off. See docs/l4.md, "Restarts".
 */
#ifndef SLUICE_L4_LINKS_H
#define SLUICE_L4_LINKS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define L4_LINKS_SUBDIR "links"
#define L4_PROG_NAME "sluice_l4_fwd"   /* the forwarder's program name, as the kernel shows it */

/* How an interface got the forwarder in this run. */
enum l4_attach_how {
    L4_ATTACH_NEW,       /* nothing was attached: a new link, pinned */
    L4_ATTACH_REPLACED,  /* our pinned link: the program swapped in place, no gap */
    L4_ATTACH_UPGRADED,  /* the forwarder attached without a link (a Sluice from
                            before links, killed before it could detach): taken off,
                            then a link made; a gap of two system calls */
    L4_ATTACH_FORCED,    /* another program was attached: taken off (--force), then
                            a link made */
    L4_ATTACH_REMODE,    /* our link in the other XDP mode (l4.xdp_mode changed):
                            detached, then attached in the new mode; the kernel
                            refuses both modes at once, so there is a gap */
};

struct l4_iface {
    char name[16];
    int ifindex;
    uint8_t mac[6];
    int link_fd;                /* -1 until attached */
    enum l4_attach_how how;
    uint32_t link_id;           /* the link's id (bpftool link show) */
    uint32_t old_prog_id;       /* REPLACED, UPGRADED, FORCED, REMODE: the program before */
    char old_prog_name[16];     /* UPGRADED, FORCED: its name */
};

/* Attach prog_fd to every interface of ifaces[0..n) (name and ifindex
 * set), as above: replace the program of the link pinned for it, or make
 * and pin a new link, in native mode or (generic) SKB mode. An interface
 * with another XDP program is refused, unless force (then that program is
 * taken off first); one with the forwarder attached without a link, or in
 * the other mode, is switched over. Then the links pinned for interfaces
 * that are no longer in the list are detached and unpinned, and on_gone
 * (may be NULL) told their names.
 *
 * On failure (-1, reason in err), the interfaces attached anew in this call
 * are detached again; replaced programs stay (the new one runs on the same
 * maps), and the links of other interfaces are left alone. */
int l4_links_attach(const char *pin_dir, int prog_fd, struct l4_iface *ifaces, size_t n, bool generic, bool force,
                    void (*on_gone)(const char *ifname), char *err, size_t errlen);

/* `sluice l4 detach`: detach and unpin every link pinned in
 * pin_dir/links; say() gets one line per interface. Returns the number of
 * links found (0: none), or -1 with a reason in err. */
int l4_links_detach_all(const char *pin_dir, void (*say)(const char *line), char *err, size_t errlen);

/* One line for `sluice l4 list`: the interfaces with a link pinned in
 * pin_dir/links ("lb0 (link 12, program 803, native)"), "" when none. */
void l4_links_describe(const char *pin_dir, char *buf, size_t len);

#endif
