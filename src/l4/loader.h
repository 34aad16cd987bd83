/* Loading the XDP forwarder: open the generated skeleton, set its load-time
 * constants, reuse or create the maps pinned under a bpffs directory and
 * load. (Attaching is links.h.)
 *
 * Pinning is what lets `sluice l4` restart without breaking established
 * flows: the program stays attached through pinned links while no daemon
 * runs (links.h), and the connection table (and the counters) live in
 * pinned maps, so a new process picks them up where the old one left them.
 */
#ifndef SLUICE_L4_LOADER_H
#define SLUICE_L4_LOADER_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <bpf/libbpf.h>

#include "l4/links.h"

#define L4_PIN_DIR "/sys/fs/bpf/sluice"
#define L4_MAX_IFACES 16

struct forwarder;

struct l4_loader {
    struct forwarder *skel;
    uint32_t maglev_m, maglev_tables, seed;
    struct l4_iface ifaces[L4_MAX_IFACES];
    size_t n_ifaces;
    int prog_fd;
    /* map fds, owned by the skeleton */
    int fd_vips, fd_reals, fd_maglev, fd_conn, fd_cfg, fd_vip_stats, fd_real_stats, fd_reasons, fd_nat_pools;
    /* the state tables l4_count_conns() (conns.h) reads */
    int fd_conn_shared, fd_nat;
    int fd_sync_events;    /* l4.sync: the new-flow ring (sync.h) */
    size_t n_reused;       /* maps taken over from an earlier run */
    int lock_fd;           /* the pin directory, flock()ed while we run */
    bool mounted_bpffs;    /* l4_ensure_bpffs() mounted one (ip netns exec) */
};

/* Open, size and load the program with pinned maps in pin_dir (created if
 * needed), holding the pin directory's lock (l4_pin_dir_lock) until
 * l4_loader_close. A pinned map whose shape no longer fits (e.g. a larger
 * Maglev table) is replaced and named in `notes` (one line each, may be
 * NULL). Returns 0, or -1 with a reason in err. */
int l4_loader_open(struct l4_loader *ld, const char *pin_dir, uint32_t maglev_m, uint32_t maglev_tables,
                   uint32_t seed, void (*note)(const char *msg), char *err, size_t errlen);

/* Add interface `name` to ld->ifaces (its index and MAC; not attached
 * yet: l4_links_attach does that once the maps are filled). Returns 0, or
 * -1 with a reason in err. */
int l4_loader_add_iface(struct l4_loader *ld, const char *name, char *err, size_t errlen);

/* Close everything: the pinned links stay attached, the pinned maps stay;
 * the pin directory's lock is released. */
void l4_loader_close(struct l4_loader *ld);

/* Take the lock of a pin directory (flock on the directory, which bpffs
 * allows): one `sluice l4` per pin directory, and no `sluice l4 detach`
 * under a running one. Waits up to wait_ms for a stopping run to let go.
 * Returns the fd holding it, or -1 with a reason in err. */
int l4_pin_dir_lock(const char *pin_dir, int wait_ms, char *err, size_t errlen);

/* `sluice l4 detach --remove-maps`: unpin the forwarder's maps in pin_dir
 * (the names the program declares) and remove the directory if it is then
 * empty; say() gets one line. Returns the number of maps removed, or -1
 * with a reason in err. */
int l4_remove_pinned_maps(const char *pin_dir, void (*say)(const char *line), char *err, size_t errlen);

/* 1 if the BPF JIT is off (/proc/sys/net/core/bpf_jit_enable is 0), 0 if
 * on, -1 if unknown. */
int l4_jit_disabled(void);

/* Helpers shared by the forwarder's and the decap program's loaders. */
/* libbpf's print callback: its warnings (they explain verifier failures)
 * to stderr, its debug chatter nowhere. */
int l4_libbpf_print(enum libbpf_print_level level, const char *fmt, va_list ap);
/* mkdir -p with mode 0700. */
int l4_mkdir_p(const char *dir);
/* Mount a bpffs on /sys/fs/bpf if pin_dir is under it and none is there
 * (a fresh `ip netns exec` remounts /sys without one). Returns 1 if it
 * mounted one, 0 if there was one or pin_dir is elsewhere, -1 on error. */
int l4_ensure_bpffs(const char *pin_dir);

/* Open one pinned map of pin_dir by name (for `sluice l4 list`); -1 with
 * errno when it is not there. */
int l4_open_pinned(const char *pin_dir, const char *name);

#endif
