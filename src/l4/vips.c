/* What `sluice l4` serves, on the daemon's VIP board (core/vip_board.h),
 * for a companion such as the HA tier to announce:
 *
 *   - each service's VIP (kind service, owner "tcp:10.0.0.100:80"), with
 *     its reals: healthy = those that take new flows now (next hop known,
 *     health checks passing, enabled with a weight above 0), total = all
 *     of them;
 *   - each FullNAT service's local addresses (kind local, same owner):
 *     the replies of its flows come back to them.
 *
 *   - with l4.sync, the peers' FullNAT local addresses from their hellos
 *     (source "l4 sync", kind standin, owner "sync peer 10.0.0.2:7400"):
 *     this node holds their flows' entries. They are published all the
 *     time, while the peer lives too: the announcer gives them a path so
 *     much worse than the owner's that the routers use it only once the
 *     owner's route is gone, and publishing them in advance means nothing
 *     has to happen on this node when the owner dies (no detection, no
 *     delay). A peer's list is the one of its last hello (sync.h).
 *
 * Serving means the forwarder is attached to every interface of
 * l4.interfaces (its link alive: `sluice l4 detach` or an interface that
 * went away detaches it), the service's table is built and, with l4.sync,
 * the peers have had one refresh to send this node their flows since it
 * started (l4_sync_warm: a node that comes back must not take flows it
 * cannot continue) (stand-ins: the forwarder attached). Published after every model change and on every
 * tick (100 ms), so a real that fails, a link that goes or a hello that
 * lists other addresses is seen within a tick.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <bpf/bpf.h>

#include "core/log.h"
#include "core/vip_board.h"
#include "l4/daemon_priv.h"

/* The forwarder is attached to every interface it should be on. */
static bool forwarder_attached(const struct l4d *d)
{
    if (!d->ld.n_ifaces)
        return false;
    for (size_t i = 0; i < d->ld.n_ifaces; i++) {
        const struct l4_iface *f = &d->ld.ifaces[i];
        if (f->link_fd < 0)
            return false;
        struct bpf_link_info info;
        uint32_t len = sizeof info;
        memset(&info, 0, sizeof info);
        /* A detached XDP link still exists while we hold its fd, with no
         * interface. */
        if (bpf_obj_get_info_by_fd(f->link_fd, &info, &len) != 0 || info.xdp.ifindex == 0)
            return false;
    }
    return true;
}

/* Real g takes new flows now. */
static bool real_healthy(const struct l4d *d, size_t g, uint64_t now)
{
    struct backend_ctl ctl;
    l4d_real_ctl(d, g, &ctl);
    return d->rr[g].have_mac && ctl.up && backend_effective_weight(&ctl, 0, now) > 0;
}

static void add_entry(struct vip_entry *out, size_t *n, const char *owner, const struct sockaddr *sa,
                      enum vip_kind kind, uint32_t healthy, uint32_t total, bool serving)
{
    struct vip_entry *e = &out[*n];
    memset(e, 0, sizeof *e);
    if (vip_ip_from_sockaddr(sa, &e->addr) < 0)
        return;
    snprintf(e->owner, sizeof e->owner, "%s", owner);
    e->kind = kind;
    e->healthy = healthy;
    e->total = total;
    e->serving = serving;
    (*n)++;
}

/* The stand-in entries of l4.sync's peers (none when sync is off). */
static void publish_standins(struct l4d *d, bool attached)
{
    struct l4_sync_standin few[16], *list = few;
    size_t n = l4_sync_standins(d->sync, few, 16);
    if (n > 16) {
        list = calloc(n, sizeof *list);
        if (!list) {
            log_error("out of memory: the VIP board keeps its last stand-ins");
            return;
        }
        n = l4_sync_standins(d->sync, list, n);
    }
    struct vip_entry *entries = calloc(n ? n : 1, sizeof *entries);
    if (!entries) {
        log_error("out of memory: the VIP board keeps its last stand-ins");
        if (list != few)
            free(list);
        return;
    }
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        struct vip_entry *e = &entries[k];
        if (IN6_IS_ADDR_V4MAPPED((const struct in6_addr *)list[i].addr)) {
            e->addr.family = AF_INET;
            memcpy(&e->addr.v4, list[i].addr + 12, 4);
        } else {
            e->addr.family = AF_INET6;
            memcpy(&e->addr.v6, list[i].addr, 16);
        }
        snprintf(e->owner, sizeof e->owner, "sync peer %s", list[i].peer);
        e->kind = VIP_STANDIN;
        e->serving = attached;
        k++;
    }
    if (vip_board_replace(&d->dmn.vips, "l4 sync", entries, k) < 0)
        log_error("out of memory: the VIP board keeps its last stand-ins");
    free(entries);
    if (list != few)
        free(list);
}

void l4_publish_vips(struct l4d *d)
{
    const struct cfg_l4 *l4 = l4_conf(d->cfg);
    size_t cap = 0;
    for (size_t s = 0; s < l4->n_services; s++)
        cap += 1 + l4->services[s].n_local_addrs;
    struct vip_entry *entries = calloc(cap ? cap : 1, sizeof *entries);
    if (!entries) {
        log_error("out of memory: the VIP board keeps its last state");
        return;
    }
    bool attached = forwarder_attached(d);
    uint64_t now = ev_now(d->loop);
    bool warm = l4_sync_warm(d->sync, now);
    size_t n = 0;
    for (size_t s = 0; s < l4->n_services && s < d->n_svcs; s++) {
        const struct cfg_l4_service *svc = &l4->services[s];
        char owner[VIP_OWNER_MAX];
        l4_service_name(svc, owner, sizeof owner);
        uint32_t healthy = 0;
        for (size_t r = 0; r < svc->n_reals; r++)
            healthy += real_healthy(d, d->sr[s].first + r, now);
        bool serving = attached && d->sr[s].built && warm;
        add_entry(entries, &n, owner, (const struct sockaddr *)&svc->vip.ss, VIP_SERVICE, healthy,
                  (uint32_t)svc->n_reals, serving);
        for (size_t i = 0; i < svc->n_local_addrs; i++)
            add_entry(entries, &n, owner, (const struct sockaddr *)&svc->local_addrs[i].ss, VIP_LOCAL, 0, 0,
                      serving);
    }
    if (vip_board_replace(&d->dmn.vips, "l4", entries, n) < 0)
        log_error("out of memory: the VIP board keeps its last state");
    free(entries);
    publish_standins(d, attached);
}
