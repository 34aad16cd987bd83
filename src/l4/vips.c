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
 * Serving means the forwarder is attached to every interface of
 * l4.interfaces (its link alive: `sluice l4 detach` or an interface that
 * went away detaches it) and the service's table is built. Published
 * after every model change and on every tick (100 ms), so a real that
 * fails or a link that goes is seen within a tick.
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
    size_t n = 0;
    for (size_t s = 0; s < l4->n_services && s < d->n_svcs; s++) {
        const struct cfg_l4_service *svc = &l4->services[s];
        char owner[VIP_OWNER_MAX];
        l4_service_name(svc, owner, sizeof owner);
        uint32_t healthy = 0;
        for (size_t r = 0; r < svc->n_reals; r++)
            healthy += real_healthy(d, d->sr[s].first + r, now);
        bool serving = attached && d->sr[s].built;
        add_entry(entries, &n, owner, (const struct sockaddr *)&svc->vip.ss, VIP_SERVICE, healthy,
                  (uint32_t)svc->n_reals, serving);
        for (size_t i = 0; i < svc->n_local_addrs; i++)
            add_entry(entries, &n, owner, (const struct sockaddr *)&svc->local_addrs[i].ss, VIP_LOCAL, 0, 0,
                      serving);
    }
    if (vip_board_replace(&d->dmn.vips, "l4", entries, n) < 0)
        log_error("out of memory: the VIP board keeps its last state");
    free(entries);
}
