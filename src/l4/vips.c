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
 * cannot continue; its local addresses then, its VIPs a second later)
 * (stand-ins: the forwarder attached). Published after every model change and on every
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
    /* With sync, the local addresses come back first and the VIPs a
     * L4_VIPS_AFTER_LOCALS_MS later: by the time a new flow is made here,
     * both routers route this node's local address to it again, so its
     * replies do not go to a stand-in that has not had the flow yet (and
     * the replies of its old flows, which the peers returned, come here). */
    bool warm_locals = l4_sync_warm(d->sync, now);
    bool warm = l4_sync_warm(d->sync, now > L4_VIPS_AFTER_LOCALS_MS ? now - L4_VIPS_AFTER_LOCALS_MS : 0);
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
        if (n && entries[n - 1].kind == VIP_SERVICE) {
            entries[n - 1].proto = svc->proto == L4_PROTO_UDP ? IPPROTO_UDP : IPPROTO_TCP;
            entries[n - 1].port = addr_port(&svc->vip);
        }
        for (size_t i = 0; i < svc->n_local_addrs; i++)
            add_entry(entries, &n, owner, (const struct sockaddr *)&svc->local_addrs[i].ss, VIP_LOCAL, 0, 0,
                      attached && d->sr[s].built && warm_locals);
    }
    if (vip_board_replace(&d->dmn.vips, "l4", entries, n) < 0)
        log_error("out of memory: the VIP board keeps its last state");
    free(entries);
    publish_standins(d, attached);
}

/* ---- "did this node forward flow F?" (vip_board.h, for the HA probe) ----
 *
 * DR and TUN: the flow's entry in `conn` (every CPU's copy) or
 * `conn_shared`. NAT and FullNAT: its IN entry in `nat`, made by this
 * node (an entry l4.sync imported from a peer says the peer forwarded
 * it), and the reply entry it points to, which carries the flow's clock.
 *
 * Only an entry touched since `since_ns` counts: a probe's source port is
 * reused while it keeps landing here, so the entry of an earlier probe on
 * the same tuple must not answer for this one. The data plane keeps whole
 * seconds (l4_conn.seen, on the coarse clock) for DR and TUN, so "since"
 * is the probe's second; an earlier probe's entry of that same second is
 * told apart by its closing flag (the probe's RST, or the SYN-ACK's RST,
 * marks it; a new SYN on the tuple clears it). NAT's reply entry keeps
 * nanoseconds but rewrites them at most once a second, so it is judged
 * the same way: touched within a second of the probe, and not closing. */

#define COARSE_SLACK_NS 20000000ull   /* the coarse clock lags by up to a tick */

static void flow_addr(const struct vip_ip *ip, __be32 out[4])
{
    memset(out, 0, 16);
    if (ip->family == AF_INET) {
        out[2] = htonl(0xffff);
        out[3] = ip->v4.s_addr;
    } else {
        memcpy(out, &ip->v6, 16);
    }
}

static bool conn_fresh(const struct l4_conn *c, uint32_t since_s)
{
    return c->real && c->seen >= since_s && !(c->flags & L4_CONN_F_CLOSING);
}

static int conn_forwarded(const struct l4d *d, const struct l4_flow_key *k, uint32_t since_s)
{
    struct l4_conn shared;
    if (d->ld.fd_conn_shared >= 0 && bpf_map_lookup_elem(d->ld.fd_conn_shared, k, &shared) == 0 &&
        conn_fresh(&shared, since_s))
        return 1;
    if (d->ld.fd_conn < 0)
        return 0;
    int ncpus = libbpf_num_possible_cpus();
    if (ncpus <= 0)
        return -1;
    struct l4_conn *per_cpu = calloc((size_t)ncpus, sizeof *per_cpu);
    if (!per_cpu)
        return -1;
    int found = 0;
    if (bpf_map_lookup_elem(d->ld.fd_conn, k, per_cpu) == 0)
        for (int i = 0; i < ncpus && !found; i++)
            found = conn_fresh(&per_cpu[i], since_s);
    free(per_cpu);
    return found;
}

static int nat_forwarded(const struct l4d *d, const struct l4_flow_key *k, uint64_t since_ns)
{
    if (d->ld.fd_nat < 0)
        return 0;
    struct l4_nat_key in_key = { .sport = k->sport, .dport = k->dport, .proto = k->proto, .dir = L4_NAT_IN };
    memcpy(in_key.src, k->src, 16);
    memcpy(in_key.dst, k->dst, 16);
    struct l4_nat in;
    if (bpf_map_lookup_elem(d->ld.fd_nat, &in_key, &in) != 0 || (in.flags & L4_NAT_F_IMPORTED))
        return 0;
    /* The reply entry: from the real to the IN entry's new source. */
    struct l4_nat_key out_key = { .sport = in.dport, .dport = in.sport, .proto = k->proto,
                                  .dir = in.mode == L4_MODE_FULLNAT ? L4_NAT_LOCAL : L4_NAT_OUT };
    memcpy(out_key.src, in.daddr, 16);
    memcpy(out_key.dst, in.saddr, 16);
    struct l4_nat out;
    if (bpf_map_lookup_elem(d->ld.fd_nat, &out_key, &out) != 0)
        return 0;
    /* last_seen is rewritten at most once a second: a packet of this
     * second may have left it up to a second old. */
    return out.last_seen + 1000000000ull + COARSE_SLACK_NS >= since_ns && !(out.state & L4_NAT_S_CLOSING);
}

static int l4_forwarded(void *arg, const struct vip_flow *f, uint64_t since_ns)
{
    const struct l4d *d = arg;
    struct l4_flow_key k = { .sport = htons(f->sport), .dport = htons(f->dport), .proto = f->proto };
    flow_addr(&f->src, k.src);
    flow_addr(&f->dst, k.dst);
    uint64_t from = since_ns > COARSE_SLACK_NS ? since_ns - COARSE_SLACK_NS : 0;
    int r = conn_forwarded(d, &k, (uint32_t)(from / 1000000000ull));
    if (r != 0)
        return r;
    return nat_forwarded(d, &k, since_ns);
}

void l4_register_forwarded(struct l4d *d)
{
    if (vip_board_set_forwarded(&d->dmn.vips, l4_forwarded, d) < 0)
        log_error("the VIP board has no room for l4's forwarded predicate: VIP probes cannot be attributed");
}
