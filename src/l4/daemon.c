/* `sluice l4 -c FILE`: one process, one event loop.
 *
 * Each real is a target of a health-check set (core/health.h) and has an
 * admin weight and state that the admin API changes (pools.c shows each
 * service as a pool, api.c has the /api/l4/ routes). The checker flips a
 * real's health, the API changes its weight or drains it, and a 100 ms
 * tick turns whatever changed into map updates:
 *
 *   - a real is ACTIVE in the reals map while its next-hop MAC is known and
 *     its health check passes (a real that is down has its existing flows
 *     re-picked: they are dead anyway, and a reset beats a timeout);
 *   - a service's Maglev table is rebuilt when the effective weight of one
 *     of its reals changes (health, weight, drain). It is written into the
 *     service's idle table and the VIP is then pointed at it in one map
 *     update. Maglev moves only the changed real's share of the slots, and
 *     established flows keep their connection-table entries (drain: weight
 *     0 keeps the real ACTIVE, so its flows stay).
 *
 * Services and reals can be added and removed while it runs (the admin
 * API, src/l4/api.c) and the file reloaded (SIGHUP). Both go through one
 * path: prepare() builds the next model beside the running one (slots and
 * indexes kept for what stays, see daemon_priv.h), commit() switches to it
 * and brings the maps in line in an order that never lets a VIP point at a
 * table that names a real not yet written, nor a real be cleared while a
 * live table still names it.
 *
 * NAT and FullNAT need three things more: the real's port in each of their
 * reals, the FullNAT local addresses in nat_pools, and L4_CFG_F_NAT_REPLIES
 * in l4_config while such a service exists (the forwarder then takes the
 * replies; their next hop is recorded per flow by the data plane, see
 * docs/l4-dataplane.md).
 *
 * Start-up fills the maps first and attaches last (links.h): during a
 * restart the earlier run's program goes on forwarding from the same
 * pinned maps until the new one is swapped into its links. On exit the
 * program stays attached; `sluice l4 detach` takes it off.
 */
#include "l4/daemon.h"

#include <errno.h>
#include <inttypes.h>
#include <net/if.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "core/version.h"
#include "core/admin.h"
#include "l4/l4_conf.h"
#include "core/evloop.h"
#include "core/health.h"
#include "core/log.h"
#include "lib/maglev.h"
#include "l4/daemon_priv.h"
#include "l4/l4_discovery.h"
#include "l4/l4_module.h"
#include "l4/loader.h"
#include "l4/nexthop.h"
#include "l4/stats.h"
#include "l4/tables.h"

#define TICK_MS 100
#define NEXTHOP_REFRESH_MS 5000   /* re-read a known MAC (it may change) */
#define NEXTHOP_RETRY_MS 200      /* while ARP/ND is in progress */
#define NEXTHOP_ERROR_MS 2000     /* no route */
/* At start, how long a discovered service's first list is waited for (a
 * registry node that does not answer costs the client library its 2 s
 * request timeout before it asks the next). */
#define DISCOVERY_FIRST_LIST_WAIT_MS 3000

static const struct cfg_l4_service *svc_of(const struct l4d *d, size_t s) { return &l4_conf(d->cfg)->services[s]; }

/* ---- the model ---- */

void l4_service_name(const struct cfg_l4_service *s, char *buf, size_t cap)
{
    snprintf(buf, cap, "%s:%s", l4_proto_name(s->proto), s->vip.text);
}

void l4d_real_ctl(const struct l4d *d, size_t g, struct backend_ctl *out)
{
    const struct real_rt *r = &d->rr[g];
    const struct hc_status *h = l4d_real_health(d, g);
    *out = (struct backend_ctl){ .weight = r->weight, .admin = r->admin, .up = h ? h->up : !r->start_down,
                                 .up_since_ms = h ? h->up_since_ms : 0 };
}

const struct hc_status *l4d_real_health(const struct l4d *d, size_t g)
{
    return d->rr[g].target ? hc_target_status(d->rr[g].target) : NULL;
}

void l4d_real_change(struct l4d *d, size_t g, const struct backend_patch *pt)
{
    struct real_rt *r = &d->rr[g];
    if (pt->has_weight)
        r->weight = pt->weight;
    if (pt->has_admin)
        r->admin = pt->admin;
}

/* ---- map updates ---- */

static const char *fmt_mac(const uint8_t m[6], char *buf, size_t cap)
{
    snprintf(buf, cap, "%02x:%02x:%02x:%02x:%02x:%02x", m[0], m[1], m[2], m[3], m[4], m[5]);
    return buf;
}

/* The service of real g. */
static size_t real_service(const struct l4d *d, size_t g)
{
    size_t s = 0, n = l4_conf(d->cfg)->n_services;
    while (s + 1 < n && g >= d->sr[s + 1].first)
        s++;
    return s;
}

static const struct sl_addr *real_addr(const struct l4d *d, size_t g)
{
    size_t s = real_service(d, g);
    return &svc_of(d, s)->reals[g - d->sr[s].first].addr;
}

/* l4.tx_interface (two-arm LB), among the interfaces attached at start;
 * NULL: packets leave where they came in. */
static const struct l4_iface *tx_iface(const struct l4d *d)
{
    const char *name = l4_conf(d->cfg)->tx_interface;
    for (size_t i = 0; name && i < d->ld.n_ifaces; i++)
        if (strcmp(d->ld.ifaces[i].name, name) == 0)
            return &d->ld.ifaces[i];
    return NULL;
}

static bool mode_nat(enum l4_fwd_mode m)
{
    return m == L4_FWD_NAT || m == L4_FWD_FULLNAT;
}

static int write_real(struct l4d *d, size_t g, bool active, char *err, size_t errlen)
{
    size_t p = real_service(d, g);
    return l4_write_real(d->fds.reals, d->rr[g].index, (const struct sockaddr *)&real_addr(d, g)->ss, d->rr[g].mac,
                         active, mode_nat(svc_of(d, p)->mode), (uint16_t)(d->sr[p].slot + 1), err, errlen);
}

static void refresh_nexthop(struct l4d *d, size_t g, uint64_t now)
{
    struct real_rt *r = &d->rr[g];
    if (now < r->next_lookup_ms)
        return;
    const struct sl_addr *a = real_addr(d, g);
    char err[160], mac[32], ifname[IF_NAMESIZE] = "?";
    uint8_t m[6];
    int ifindex = 0;
    enum nexthop_result res = nexthop_lookup((const struct sockaddr *)&a->ss, &ifindex, m, err, sizeof err);
    if (res == NEXTHOP_FOUND) {
        r->next_lookup_ms = now + NEXTHOP_REFRESH_MS;
        /* ifindex 0: MAC adopted from the pinned map, interface unknown. */
        if (!r->have_mac || memcmp(r->mac, m, 6) != 0 || (r->ifindex && r->ifindex != ifindex)) {
            if_indextoname((unsigned)ifindex, ifname);
            log_info("real %s: next hop %s on %s", a->text, fmt_mac(m, mac, sizeof mac), ifname);
            const struct l4_iface *tx = tx_iface(d);
            bool known = false;
            for (size_t i = 0; i < d->ld.n_ifaces; i++)
                known |= d->ld.ifaces[i].ifindex == ifindex;
            if (tx && tx->ifindex != ifindex)
                log_warn("real %s: its route leaves through %s, not l4.tx_interface %s, where XDP sends it",
                         a->text, ifname, tx->name);
            else if (!tx && !known)
                log_warn("real %s: its route leaves through %s, where the forwarder is not attached; "
                         "XDP sends it out of the interface the packet came in on (see l4.tx_interface)",
                         a->text, ifname);
            memcpy(r->mac, m, 6);
            r->ifindex = ifindex;
            r->have_mac = true;
            /* A real in use gets the new MAC at once. */
            if (r->active_written)
                write_real(d, g, true, err, sizeof err);
        }
    } else if (res == NEXTHOP_PENDING) {
        r->next_lookup_ms = now + NEXTHOP_RETRY_MS;
        if (r->last_result != res)
            log_info("real %s: resolving its next hop (ARP/ND)", a->text);
    } else {
        r->next_lookup_ms = now + NEXTHOP_ERROR_MS;
        if (r->last_result != res)
            log_warn("real %s: %s; it takes no traffic until this is fixed", a->text, err);
    }
    r->last_result = res;
}

static bool real_usable(const struct l4d *d, size_t g)
{
    struct backend_ctl ctl;
    l4d_real_ctl(d, g, &ctl);
    return d->rr[g].have_mac && ctl.up;
}

static void write_active(struct l4d *d, size_t g, bool active)
{
    char err[160];
    if (write_real(d, g, active, err, sizeof err) < 0) {
        log_error("real %s: %s", real_addr(d, g)->text, err);
        return;
    }
    d->rr[g].active_written = active;
    log_info("real %s: %s", real_addr(d, g)->text,
             active ? "active" : "inactive (health check failing or no next hop)");
}

static int write_vip_for(struct l4d *d, size_t s, uint32_t table, char *err, size_t errlen)
{
    struct l4_vip_key k;
    const struct cfg_l4_service *svc = svc_of(d, s);
    l4_vip_key_of(&k, svc);
    return l4_write_vip(d->fds.vips, &k, d->sr[s].slot, table, svc->mode, l4_service_flags(svc), err,
                        errlen);
}

static void rebuild_service(struct l4d *d, size_t s, const uint32_t *w)
{
    const struct cfg_l4_service *svc = svc_of(d, s);
    struct svc_rt *sr = &d->sr[s];
    uint32_t idle = sr->live_table ^ 1;   /* the pair is {2*slot, 2*slot + 1} */
    size_t n = svc->n_reals;
    uint32_t idx[n ? n : 1], tw[n ? n : 1];
    for (size_t r = 0; r < n; r++) {
        idx[r] = d->rr[d->sr[s].first + r].index;
        /* rr: every real that takes flows holds an equal share of the
         * table the data plane walks; wrr and the hashes: by weight. */
        tw[r] = svc->scheduler == L4_SCHED_RR && w[r] ? 1 : w[r];
    }
    char err[160];
    if (l4_write_maglev(d->fds.maglev, d->ld.maglev_m, idle, svc, tw, idx, d->seed, err, sizeof err) < 0 ||
        write_vip_for(d, s, idle, err, sizeof err) < 0) {
        log_error("service %s: %s", svc->vip.text, err);
        return;
    }
    sr->live_table = idle;
    memcpy(sr->weights, w, n * sizeof *w);
    sr->built = true;
    char list[512];
    size_t o = 0;
    list[0] = '\0';
    for (size_t r = 0; r < n && o < sizeof list; r++) {
        int k = snprintf(list + o, sizeof list - o, "%s%s=%" PRIu32, r ? " " : "", svc->reals[r].addr.text, w[r]);
        if (k < 0)
            break;
        o += (size_t)k;
    }
    log_info("service %s/%s: Maglev table %" PRIu32 " live, weights %s", svc->vip.text,
             svc->proto == L4_PROTO_UDP ? "udp" : "tcp", idle, list);
}

/* Bring the maps in line with the model: the periodic work of the tick,
 * and the second half of every change. */
static void sync_maps(struct l4d *d)
{
    uint64_t now = ev_now(d->loop);
    size_t n = d->n_reals;
    for (size_t g = 0; g < n; g++)
        refresh_nexthop(d, g, now);
    /* Make reals usable before a table points at them ... */
    for (size_t g = 0; g < n; g++)
        if (real_usable(d, g) && !d->rr[g].active_written)
            write_active(d, g, true);
    for (size_t s = 0; s < l4_conf(d->cfg)->n_services; s++) {
        const struct cfg_l4_service *svc = svc_of(d, s);
        uint32_t w[svc->n_reals ? svc->n_reals : 1];
        bool changed = !d->sr[s].built;
        for (size_t r = 0; r < svc->n_reals; r++) {
            size_t g = d->sr[s].first + r;
            struct backend_ctl ctl;
            l4d_real_ctl(d, g, &ctl);
            w[r] = real_usable(d, g) ? backend_effective_weight(&ctl, 0, now) : 0;
            changed |= w[r] != d->sr[s].weights[r];
        }
        if (changed)
            rebuild_service(d, s, w);
    }
    /* ... and unusable only once no table points at them. */
    for (size_t g = 0; g < n; g++)
        if (!real_usable(d, g) && d->rr[g].active_written)
            write_active(d, g, false);
    l4_publish_vips(d);
}

static void tick(struct ev_loop *loop, struct ev_timer *t)
{
    sync_maps(t->data);
    ev_timer_start(loop, t, TICK_MS);
}

/* The ICMP entries (ping the VIP) and the removal of services that are no
 * longer in the model. */
static int write_vip_addresses(struct l4d *d, char *err, size_t errlen)
{
    size_t n = l4_conf(d->cfg)->n_services;
    struct l4_vip_key *keep = calloc(2 * n + 1, sizeof *keep);
    size_t k = 0;
    if (!keep) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    int rc = 0;
    for (size_t s = 0; s < n && rc == 0; s++) {
        l4_vip_key_of(&keep[k++], svc_of(d, s));
        struct l4_vip_key icmp;
        l4_icmp_key_of(&icmp, svc_of(d, s));
        bool seen = false;
        for (size_t i = 0; i < k && !seen; i++)
            seen = memcmp(&keep[i], &icmp, sizeof icmp) == 0;
        if (seen)
            continue;
        keep[k++] = icmp;
        rc = l4_write_vip(d->fds.vips, &icmp, d->sr[s].slot, d->sr[s].live_table, svc_of(d, s)->mode, 0, err,
                          errlen);
    }
    if (rc == 0)
        rc = l4_prune_vips(d->fds.vips, keep, k, err, errlen);
    free(keep);
    return rc;
}

/* Zero one entry of a per-CPU counter array (a slot or index that starts a
 * new life must not show its predecessor's counts). */
static void zero_percpu(int fd, uint32_t key)
{
    int ncpu = libbpf_num_possible_cpus();
    if (ncpu <= 0)
        return;
    struct l4_counter *z = calloc((size_t)ncpu, sizeof *z);
    if (z)
        bpf_map_update_elem(fd, &key, z, BPF_ANY);
    free(z);
}

/* ---- changing the model: prepare, then commit ---- */

struct plan {
    struct real_rt *rr;
    size_t n_reals;
    struct svc_rt *sr;
    size_t n_svcs;
    bool *old_kept;          /* [the running model's n_reals]: stays, with its target */
    uint32_t *new_slots;     /* slots that start a new life (counters zeroed) */
    size_t n_new_slots;
    uint32_t *new_indexes;   /* likewise for real indexes */
    size_t n_new_indexes;
};

static void plan_free(struct plan *p)
{
    for (size_t s = 0; p->sr && s < p->n_svcs; s++)
        free(p->sr[s].weights);
    free(p->sr);
    free(p->rr);
    free(p->old_kept);
    free(p->new_slots);
    free(p->new_indexes);
    memset(p, 0, sizeof *p);
}

static bool same_service(const struct cfg_l4_service *a, const struct cfg_l4_service *b)
{
    return a->proto == b->proto && addr_equal(&a->vip, &b->vip);
}

static int find_service(const struct cfg_l4 *l4, const struct cfg_l4_service *s)
{
    for (size_t i = 0; l4 && i < l4->n_services; i++)
        if (same_service(&l4->services[i], s))
            return (int)i;
    return -1;
}

static int check_limits(const struct cfg_l4 *l4, uint32_t n_slots, char *err, size_t errlen)
{
    size_t reals = 0;
    for (size_t s = 0; s < l4->n_services; s++) {
        reals += l4->services[s].n_reals;
        if (l4->services[s].n_local_addrs > L4_POOL_ADDRS) {
            snprintf(err, errlen, "service %s: %zu local_addresses, the forwarder takes at most %d",
                     l4->services[s].vip.text, l4->services[s].n_local_addrs, L4_POOL_ADDRS);
            return 400;
        }
    }
    if (l4->n_services > n_slots) {
        snprintf(err, errlen, "%zu services: the maps have room for %" PRIu32 " (l4.max_services; raise it and "
                 "restart sluice l4)", l4->n_services, n_slots);
        return 507;
    }
    if (reals >= L4_MAX_REALS) {
        snprintf(err, errlen, "%zu reals: the forwarder takes at most %d", reals, L4_MAX_REALS - 1);
        return 507;
    }
    return 0;
}

static bool real_matches(const struct l4_real *pinned, const struct sl_addr *a, bool nat)
{
    __be32 want[4];
    l4_addr16(want, (const struct sockaddr *)&a->ss);
    if (memcmp(pinned->addr, want, sizeof want) != 0)
        return false;
    return !nat || pinned->port == htons(addr_port(a));
}

static int push_u32(uint32_t **v, size_t *n, uint32_t x)
{
    uint32_t *g = realloc(*v, (*n + 1) * sizeof *g);
    if (!g)
        return -1;
    g[(*n)++] = x;
    *v = g;
    return 0;
}

/* Build the next model for nl4 beside the running one. What stays keeps
 * its slot, indexes, tables, MACs, health and API changes; what is new
 * takes its slot and indexes back from the pinned maps when an earlier run
 * left them there (a restart), else free ones. Touches no map. */
static int prepare(struct l4d *d, const struct cfg_l4 *nl4, struct plan *p, char *err, size_t errlen)
{
    memset(p, 0, sizeof *p);
    int rc = check_limits(nl4, d->n_slots, err, errlen);
    if (rc)
        return rc;
    for (size_t s = 0; s < nl4->n_services; s++)
        if (nl4->services[s].n_reals * 100 > d->ld.maglev_m)
            log_warn("service %s: %zu reals; the Maglev table size %" PRIu32 " is below 100 x reals, so shares "
                     "are less even (restart sluice l4 to resize)", nl4->services[s].vip.text,
                     nl4->services[s].n_reals, d->ld.maglev_m);
    const struct cfg_l4 *ol4 = d->sr ? l4_conf(d->cfg) : NULL;  /* NULL: first start */
    bool *slot_used = calloc(d->n_slots + 1, sizeof *slot_used);
    bool *index_used = calloc(L4_MAX_REALS, sizeof *index_used);
    struct l4_real *pinned = calloc(L4_MAX_REALS, sizeof *pinned);
    p->n_svcs = nl4->n_services;
    for (size_t s = 0; s < p->n_svcs; s++)
        p->n_reals += nl4->services[s].n_reals;
    p->sr = calloc(p->n_svcs + 1, sizeof *p->sr);
    p->rr = calloc(p->n_reals + 1, sizeof *p->rr);
    p->old_kept = calloc(d->n_reals + 1, sizeof *p->old_kept);
    rc = 500;
    snprintf(err, errlen, "out of memory");
    if (!slot_used || !index_used || !pinned || !p->sr || !p->rr || !p->old_kept)
        goto out;
    size_t first = 0;
    for (size_t s = 0; s < p->n_svcs; s++) {
        const struct cfg_l4_service *ns = &nl4->services[s];
        p->sr[s].weights = calloc(ns->n_reals + 1, sizeof *p->sr[s].weights);
        if (!p->sr[s].weights)
            goto out;
        p->sr[s].first = first;
        l4_service_name(ns, p->sr[s].name, sizeof p->sr[s].name);
        /* A real is new until found below: the file's weight, enabled. */
        for (size_t r = 0; r < ns->n_reals; r++)
            p->rr[first + r] = (struct real_rt){ .weight = ns->reals[r].weight, .admin = BACKEND_ENABLED };
        first += ns->n_reals;
    }
    /* Nothing of the running model is handed out again in this change: a
     * slot or index it frees keeps its meaning until commit() is done. */
    for (size_t s = 0; ol4 && s < ol4->n_services; s++)
        slot_used[d->sr[s].slot] = true;
    for (size_t g = 0; ol4 && g < d->n_reals; g++)
        index_used[d->rr[g].index] = true;
    index_used[0] = true;
    for (uint32_t i = 1; i < L4_MAX_REALS; i++)
        if (bpf_map_lookup_elem(d->fds.reals, &i, &pinned[i]) < 0)
            memset(&pinned[i], 0, sizeof pinned[i]);

    /* Services and reals that stay. */
    for (size_t s = 0; s < p->n_svcs; s++) {
        const struct cfg_l4_service *ns = &nl4->services[s];
        int os = ol4 ? find_service(ol4, ns) : -1;
        if (os < 0)
            continue;
        const struct cfg_l4_service *olds = &ol4->services[os];
        struct svc_rt *sr = &p->sr[s];
        sr->slot = d->sr[os].slot;
        sr->live_table = d->sr[os].live_table;
        bool same = ns->mode == olds->mode && ns->scheduler == olds->scheduler && ns->gue == olds->gue &&
                    ns->n_reals == olds->n_reals;
        for (size_t r = 0; same && r < ns->n_reals; r++)
            same = addr_equal(&ns->reals[r].addr, &olds->reals[r].addr);
        if (same && d->sr[os].built) {
            memcpy(sr->weights, d->sr[os].weights, ns->n_reals * sizeof *sr->weights);
            sr->built = true;
        }
        for (size_t r = 0; r < ns->n_reals; r++) {
            for (size_t k = 0; k < olds->n_reals; k++) {
                if (!addr_equal(&ns->reals[r].addr, &olds->reals[k].addr))
                    continue;
                size_t og = d->sr[os].first + k;
                struct real_rt *nr = &p->rr[p->sr[s].first + r];
                /* It keeps its index, MAC, health target and admin state;
                 * an API weight survives only while the file still says
                 * what it said before (a new value in the file wins). */
                *nr = d->rr[og];
                if (ns->reals[r].weight != olds->reals[k].weight)
                    nr->weight = ns->reals[r].weight;
                nr->recheck = !hc_conf_equal(&ns->health, &olds->health);
                p->old_kept[og] = true;
                /* A mode change (port or not) rewrites the entry. */
                if (ns->mode != olds->mode)
                    nr->active_written = false;
                break;
            }
        }
    }
    /* New services: the slot an earlier run gave them, else a free one. */
    for (size_t s = 0; s < p->n_svcs; s++) {
        const struct cfg_l4_service *ns = &nl4->services[s];
        if (ol4 && find_service(ol4, ns) >= 0)
            continue;
        struct l4_vip_key k;
        struct l4_vip_meta meta;
        uint32_t slot = UINT32_MAX;
        l4_vip_key_of(&k, ns);
        if (bpf_map_lookup_elem(d->fds.vips, &k, &meta) < 0)
            memset(&meta, 0xff, sizeof meta);  /* svc and table: none */
        if (meta.svc < d->n_slots && !slot_used[meta.svc])
            slot = meta.svc;
        for (uint32_t i = 0; slot == UINT32_MAX && i < d->n_slots; i++)
            if (!slot_used[i])
                slot = i;
        slot_used[slot] = true;  /* check_limits() made sure there is one */
        p->sr[s].slot = slot;
        p->sr[s].live_table = 2 * slot + 1; /* the first build goes to 2*slot */
        if (slot == meta.svc && (meta.table == 2 * slot || meta.table == 2 * slot + 1))
            p->sr[s].live_table = meta.table;
        else if (push_u32(&p->new_slots, &p->n_new_slots, slot) < 0)
            goto out;
    }
    /* New reals: the index an earlier run gave them, else a free one. */
    for (size_t s = 0; s < p->n_svcs; s++) {
        const struct cfg_l4_service *ns = &nl4->services[s];
        bool nat = mode_nat(ns->mode);
        for (size_t r = 0; r < ns->n_reals; r++) {
            size_t g = p->sr[s].first + r;
            struct real_rt *nr = &p->rr[g];
            if (nr->index)
                continue;
            const struct sl_addr *a = &ns->reals[r].addr;
            uint32_t idx = 0;
            for (uint32_t i = 1; i < L4_MAX_REALS && !idx; i++)
                if (!index_used[i] && pinned[i].owner == p->sr[s].slot + 1 && real_matches(&pinned[i], a, nat))
                    idx = i;
            /* Maps of a run before l4_real.owner: index = position + 1. */
            if (!idx && !ol4 && g + 1 < L4_MAX_REALS && !index_used[g + 1] && !pinned[g + 1].owner &&
                real_matches(&pinned[g + 1], a, nat))
                idx = (uint32_t)g + 1;
            if (idx) {
                if (pinned[idx].flags & L4_REAL_F_ACTIVE) {
                    memcpy(nr->mac, pinned[idx].mac, 6);
                    nr->have_mac = true;
                    nr->active_written = true;
                } else if (ns->health.type != HEALTH_NONE) {
                    /* The earlier run had taken it out: keep it out until
                     * its checks pass `rise` times, rather than send it new
                     * flows for `fall` intervals. */
                    nr->start_down = true;
                }
            } else {
                /* Round the index space rather than take the lowest free:
                 * an index freed a moment ago may still be named by
                 * connection-table entries, which age out meanwhile. */
                for (uint32_t tries = 0; tries < L4_MAX_REALS && !idx; tries++) {
                    uint32_t i = 1 + (d->next_index + tries) % (L4_MAX_REALS - 1);
                    if (!index_used[i] && !pinned[i].owner && !(pinned[i].flags & L4_REAL_F_ACTIVE))
                        idx = i;
                }
                for (uint32_t tries = 0; tries < L4_MAX_REALS && !idx; tries++) {
                    uint32_t i = 1 + (d->next_index + tries) % (L4_MAX_REALS - 1);
                    if (!index_used[i])
                        idx = i;
                }
                if (!idx || push_u32(&p->new_indexes, &p->n_new_indexes, idx) < 0)
                    goto out;
                d->next_index = idx;  /* the next search starts after it */
            }
            index_used[idx] = true;
            nr->index = idx;
        }
    }
    rc = 0;
    err[0] = '\0';
out:
    if (rc)
        plan_free(p);
    free(slot_used);
    free(index_used);
    free(pinned);
    return rc;
}

/* Give every real without one a health-check target (a new real, one whose
 * service's health_check changed: with what its old target found), once
 * the loop runs: during start-up checks would only be late. */
static void start_targets(struct l4d *d)
{
    if (!d->loop_running)
        return;
    for (size_t s = 0; s < d->n_svcs; s++) {
        const struct cfg_l4_service *svc = svc_of(d, s);
        for (size_t r = 0; r < svc->n_reals; r++) {
            struct real_rt *rt = &d->rr[d->sr[s].first + r];
            struct hc_target_spec spec = { .addr = svc->reals[r].addr, .check = &svc->health,
                                           .group = d->sr[s].name };
            if (rt->target && !rt->recheck)
                continue;
            if (rt->target) {
                spec.initial = *hc_target_status(rt->target);
                hc_remove(d->hc, rt->target);
            } else {
                hc_status_fresh(&spec.initial, ev_clock_ms());
                spec.initial.up = !rt->start_down;
            }
            rt->recheck = false;
            rt->target = hc_add(d->hc, &spec);
            if (!rt->target) {
                log_error("real %s: its health checks cannot start: out of memory", svc->reals[r].addr.text);
                rt->start_down = !spec.initial.up;
            }
        }
    }
}

/* Switch to the model p built for the services now in d->cfg and bring the
 * maps in line: config and pools first, then reals and tables (sync_maps,
 * which writes a real before a table names it), then the VIP list (new ICMP
 * entries, removed services), and last the reals nothing names any more. */
static void commit(struct l4d *d, struct plan *p)
{
    struct plan old = { .rr = d->rr, .n_reals = d->n_reals, .sr = d->sr, .n_svcs = d->n_svcs };
    /* Reals that leave stop being checked; the others keep their targets. */
    for (size_t g = 0; g < old.n_reals; g++)
        if (old.rr[g].target && !p->old_kept[g])
            hc_remove(d->hc, old.rr[g].target);
    d->rr = p->rr;
    d->n_reals = p->n_reals;
    d->sr = p->sr;
    d->n_svcs = p->n_svcs;
    start_targets(d);

    char err[256];
    const struct cfg_l4 *l4 = l4_conf(d->cfg);
    const struct l4_iface *tx = tx_iface(d);
    if (l4_write_config(d->ld.fd_cfg, l4, tx ? tx->mac : d->ld.ifaces[0].mac, tx ? (uint32_t)tx->ifindex : 0,
                        d->ld.maglev_m, d->ld.maglev_tables, err, sizeof err) < 0)
        log_error("%s", err);
    for (size_t i = 0; i < p->n_new_slots; i++)
        zero_percpu(d->fds.vip_stats, p->new_slots[i]);
    for (size_t i = 0; i < p->n_new_indexes; i++)
        zero_percpu(d->fds.real_stats, p->new_indexes[i]);
    for (size_t s = 0; s < l4->n_services; s++)
        if (l4_write_nat_pool(d->ld.fd_nat_pools, d->sr[s].slot, &l4->services[s], err, sizeof err) < 0)
            log_error("%s", err);
    /* Every real's entry names its owner from the start (a restart finds
     * it by that), also while it waits for its next hop. */
    for (size_t g = 0; g < d->n_reals; g++)
        if (!d->rr[g].active_written && write_real(d, g, false, err, sizeof err) < 0)
            log_error("real %s: %s", real_addr(d, g)->text, err);
    sync_maps(d);
    if (write_vip_addresses(d, err, sizeof err) < 0)
        log_error("%s", err);
    bool *used = calloc(L4_MAX_REALS, sizeof *used);
    for (size_t g = 0; used && g < d->n_reals; g++)
        used[d->rr[g].index] = true;
    for (uint32_t i = 1; used && i < L4_MAX_REALS; i++) {
        struct l4_real r;
        if (used[i] || l4_read_real(d->fds.reals, i, &r) < 0 || (!r.flags && !r.owner))
            continue;
        struct sockaddr_in6 none = { .sin6_family = AF_INET6 };
        l4_write_real(d->fds.reals, i, (const struct sockaddr *)&none, NULL, false, false, 0, err, sizeof err);
    }
    free(used);
    free(p->new_slots);
    free(p->new_indexes);
    plan_free(&old);
}

int l4d_replace_services(struct l4d *d, struct cfg_l4_service *svcs, size_t n, char *err, size_t errlen)
{
    struct cfg_l4 next = *l4_conf(d->cfg);
    next.services = svcs;
    next.n_services = n;
    struct plan p;
    int rc = prepare(d, &next, &p, err, errlen);
    if (rc) {
        for (size_t i = 0; i < n; i++)
            l4_conf_service_free(&svcs[i]);
        free(svcs);
        return rc;
    }
    struct cfg_l4_service *old = l4_conf(d->cfg)->services;
    size_t old_n = l4_conf(d->cfg)->n_services;
    l4_conf(d->cfg)->services = svcs;
    l4_conf(d->cfg)->n_services = n;
    commit(d, &p);
    for (size_t i = 0; i < old_n; i++)
        l4_conf_service_free(&old[i]);
    free(old);
    return 0;
}

/* ---- reload ---- */

static bool same_strings(char **a, size_t na, char **b, size_t nb)
{
    if (na != nb)
        return false;
    for (size_t i = 0; i < na; i++)
        if (strcmp(a[i], b[i]) != 0)
            return false;
    return true;
}

/* ---- l4.sync (sync.h) ---- */

static void v4_mapped_of(const struct sockaddr_storage *ss, uint8_t out[16])
{
    memset(out, 0, 16);
    if (ss->ss_family == AF_INET) {
        out[10] = out[11] = 0xff;
        memcpy(out + 12, &((const struct sockaddr_in *)ss)->sin_addr, 4);
    } else {
        memcpy(out, &((const struct sockaddr_in6 *)ss)->sin6_addr, 16);
    }
}

/* The reals map index of a real of the service in slot svc, by address. */
static uint32_t sync_real_index(void *arg, uint32_t svc, const uint8_t addr[16], uint16_t port_be)
{
    struct l4d *d = arg;
    for (size_t s = 0; s < d->n_svcs; s++) {
        if (d->sr[s].slot != svc)
            continue;
        const struct cfg_l4_service *cs = svc_of(d, s);
        for (size_t r = 0; r < cs->n_reals; r++) {
            uint8_t a[16];
            v4_mapped_of(&cs->reals[r].addr.ss, a);
            if (memcmp(a, addr, 16) == 0 && htons(addr_port(&cs->reals[r].addr)) == port_be)
                return d->rr[d->sr[s].first + r].index;
        }
    }
    return 0;
}

/* This node's FullNAT local addresses: those of every fullnat service,
 * each once. */
static size_t sync_local_addrs(void *arg, uint8_t (*out)[16], size_t max)
{
    struct l4d *d = arg;
    const struct cfg_l4 *l4 = l4_conf(d->cfg);
    size_t n = 0;
    for (size_t s = 0; s < l4->n_services; s++) {
        const struct cfg_l4_service *cs = &l4->services[s];
        for (size_t i = 0; cs->mode == L4_FWD_FULLNAT && i < cs->n_local_addrs; i++) {
            uint8_t a[16];
            v4_mapped_of(&cs->local_addrs[i].ss, a);
            bool seen = false;
            for (size_t j = 0; j < n && !seen; j++)
                seen = memcmp(out[j], a, 16) == 0;
            if (!seen && n < max)
                memcpy(out[n++], a, 16);
        }
    }
    return n;
}

/* The key of l4.sync.key_file; -1 with "FILE:LINE: l4.sync.key_file: why". */
static int sync_key(const struct l4d *d, const struct cfg_l4_sync *y, uint8_t *key, size_t cap, char *err,
                    size_t errlen)
{
    char why[400];
    int n = l4_sync_read_key(y->key_file, key, cap, why, sizeof why);
    if (n < 0)
        snprintf(err, errlen, "%s:%d: l4.sync.key_file: %s", d->config_path, y->key_file_line, why);
    return n;
}

static int start_sync(struct l4d *d, char *err, size_t errlen)
{
    const struct cfg_l4_sync *y = &l4_conf(d->cfg)->sync;
    if (!y->enabled)
        return 0;
    uint8_t key[L4_SYNC_KEY_MAX];
    int n = sync_key(d, y, key, sizeof key, err, errlen);
    if (n < 0)
        return -1;
    const struct l4_sync_maps maps = { .nat = d->ld.fd_nat, .vips = d->ld.fd_vips, .cfg = d->ld.fd_cfg,
                                       .ring = d->ld.fd_sync_events };
    const struct l4_sync_ops ops = { .real_index = sync_real_index, .local_addrs = sync_local_addrs, .arg = d };
    d->sync = l4_sync_start(d->loop, y, key, (size_t)n, &maps, &ops, err, errlen);
    memset(key, 0, sizeof key);
    if (!d->sync)
        return -1;
    log_info("l4.sync: node %" PRIu32 " on %s, %zu peer%s, batches every %" PRIu32 " ms, full refresh every %" PRIu32
             " ms", y->node_id, y->listen.text, y->n_peers, y->n_peers == 1 ? "" : "s", y->interval_ms,
             y->refresh_ms);
    if (y->n_peers)
        log_info("l4.sync: the local addresses are published as serving in %" PRIu32 " ms, once the peers' "
                 "next refresh has brought their flows, the VIPs %d ms later", y->refresh_ms + y->interval_ms,
                 L4_VIPS_AFTER_LOCALS_MS);
    return 0;
}

static bool same_sync(const struct cfg_l4_sync *a, const struct cfg_l4_sync *b)
{
    if (a->enabled != b->enabled || !addr_equal(&a->listen, &b->listen) || a->n_peers != b->n_peers ||
        a->interval_ms != b->interval_ms || a->refresh_ms != b->refresh_ms || a->node_id != b->node_id)
        return false;
    for (size_t i = 0; i < a->n_peers; i++)
        if (!addr_equal(&a->peers[i], &b->peers[i]))
            return false;
    return true;
}

/* A reload re-reads the key; the other l4.sync settings need a restart. */
static void reload_sync(struct l4d *d, struct cfg_l4 *nl4, const struct cfg_l4 *ol4)
{
    if (!same_sync(&nl4->sync, &ol4->sync))
        log_warn("reload: l4.sync changes other than the key take effect at the next restart");
    char *path = nl4->sync.key_file;
    int line = nl4->sync.key_file_line;
    nl4->sync = ol4->sync;
    nl4->sync.key_file = path;
    nl4->sync.key_file_line = line;
    if (!d->sync || !path)
        return;
    uint8_t key[L4_SYNC_KEY_MAX];
    char err[512];
    int n = sync_key(d, &nl4->sync, key, sizeof key, err, sizeof err);
    if (n < 0)
        log_error("reload: %s; keeping the previous key", err);
    else
        l4_sync_set_key(d->sync, key, (size_t)n);
    memset(key, 0, sizeof key);
}

/* SIGHUP: read the file again and apply it like an API change. The
 * services become the file's (API changes to the list are dropped; weight
 * and drain changes stay where the file says what it said before, as in
 * the proxy). What the loaded program fixes needs a restart. */
static void reload(struct l4d *d)
{
    struct config_errors errs = { 0 };
    struct sl_config *cfg = config_load(d->config_path, &errs);
    if (!cfg) {
        for (size_t i = 0; i < errs.n; i++)
            log_error("%s", errs.lines[i]);
        config_errors_free(&errs);
        log_error("reload: %s has errors; still running the previous configuration", d->config_path);
        return;
    }
    struct cfg_l4 *nl4 = l4_conf(cfg), *ol4 = l4_conf(d->cfg);
    if (!nl4->present) {
        log_error("reload: %s has no l4: section; still running the previous configuration", d->config_path);
        config_free(cfg);
        return;
    }
    if (!same_strings(nl4->interfaces, nl4->n_interfaces, ol4->interfaces, ol4->n_interfaces) ||
        nl4->xdp_generic != ol4->xdp_generic)
        log_warn("reload: l4.interfaces and l4.xdp_mode take effect at the next restart");
    bool tx_known = !nl4->tx_interface;
    for (size_t i = 0; nl4->tx_interface && i < d->ld.n_ifaces; i++)
        tx_known |= strcmp(d->ld.ifaces[i].name, nl4->tx_interface) == 0;
    if (!tx_known) {
        log_error("reload: l4.tx_interface %s is not attached (a new interface needs a restart); still running "
                  "the previous configuration", nl4->tx_interface);
        config_free(cfg);
        return;
    }
    if (nl4->seed != d->seed) {
        log_warn("reload: l4.seed takes effect at the next restart (it is compiled into the loaded program); "
                 "keeping 0x%08" PRIx32, d->seed);
        nl4->seed = d->seed;
    }
    reload_sync(d, nl4, ol4);
    if (nl4->max_services != ol4->max_services)
        log_warn("reload: l4.max_services takes effect at the next restart (room now: %" PRIu32 ")", d->n_slots);
    if (!addr_equal(&cfg->admin_addr, &d->cfg->admin_addr) || cfg->admin_enabled != d->cfg->admin_enabled)
        log_warn("reload: admin.listen takes effect at the next restart");
    cfg->admin_addr = d->cfg->admin_addr;
    cfg->admin_enabled = d->cfg->admin_enabled;
    admin_auth_set(&d->dmn.site.auth, cfg); /* token and read-only apply at once */
    /* The file lists no reals for a discovered service: it keeps the ones
     * its registry service gave it (and their flows). */
    if (l4_discovery_carry_reals(d, nl4->services, nl4->n_services) < 0) {
        log_error("reload: out of memory; still running the previous configuration");
        config_free(cfg);
        return;
    }
    struct plan p;
    char err[512];
    if (prepare(d, nl4, &p, err, sizeof err)) {
        log_error("reload: %s; still running the previous configuration", err);
        config_free(cfg);
        return;
    }
    struct sl_config *old = d->cfg;
    d->cfg = cfg;
    commit(d, &p);
    config_free(old);
    d->dmn.site.status.reloads++;
    log_info("reloaded %s: %zu service%s, %zu real%s", d->config_path, nl4->n_services,
             nl4->n_services == 1 ? "" : "s", d->n_reals, d->n_reals == 1 ? "" : "s");
    l4_discovery_sync(d);
    daemon_reloaded(&d->dmn, d->cfg);   /* companions (HA) follow the file too */
}

/* ---- start-up ---- */

/* Give ARP/ND up to a second before the first tables, so that a fresh
 * start does not begin with empty tables (and drop new flows) while the
 * neighbours resolve. Bounded: an unreachable real is not waited for. */
static void wait_nexthops(struct l4d *d)
{
    uint64_t start = ev_clock_ms();
    for (;;) {
        bool all = true;
        for (size_t g = 0; g < d->n_reals; g++) {
            d->rr[g].next_lookup_ms = 0;
            refresh_nexthop(d, g, ev_clock_ms());
            all &= d->rr[g].have_mac || d->rr[g].last_result == NEXTHOP_ERROR;
        }
        if (all || ev_clock_ms() - start > 1000)
            return;
        usleep(20 * 1000);
    }
}

/* "registry service web (registry, version 12, 3 of 4 members, failing
 * open)": a discovered service's line in `sluice l4 list`. */
static void describe_discovery(const struct l4_disc_status *st, char *buf, size_t cap)
{
    snprintf(buf, cap, "registry service %s (%s, version %" PRIu64 ", %zu of %zu members%s%s%s)",
             st->conf->service, st->now.source_name, st->applied_version, st->used, st->members,
             st->now.fail_open ? ", failing open" : "", st->now.source == SLUICE_SOURCE_REGISTRY &&
             !st->now.registry_reachable ? ", registry unreachable: last list kept" : "",
             st->last_error[0] ? ", last change refused" : "");
}

int l4d_snapshot(struct l4d *d, struct l4_snapshot *snap, char *err, size_t errlen)
{
    size_t n = l4_conf(d->cfg)->n_services;
    struct l4_model_svc *m = calloc(n ? n : 1, sizeof *m);
    struct l4_model_real *mr = calloc(d->n_reals + 1, sizeof *mr);
    int rc = -1;
    if (!m || !mr) {
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    uint64_t now = ev_clock_ms();
    char (*source)[160] = calloc(n ? n : 1, sizeof *source);
    if (!source) {
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    for (size_t s = 0; s < n; s++) {
        m[s].cs = svc_of(d, s);
        m[s].slot = d->sr[s].slot;
        m[s].reals = &mr[d->sr[s].first];
        const struct l4_disc_status *st = l4_discovery_status(d, s);
        if (st) {
            describe_discovery(st, source[s], sizeof source[s]);
            m[s].source = source[s];
        }
    }
    for (size_t g = 0; g < d->n_reals; g++) {
        struct backend_ctl ctl;
        l4d_real_ctl(d, g, &ctl);
        mr[g].index = d->rr[g].index;
        mr[g].weight = ctl.weight;
        mr[g].state = d->rr[g].have_mac ? backend_state_name(&ctl, 0, now) : "no-nexthop";
    }
    rc = l4_snapshot_build(snap, m, n, &d->fds, d->ld.maglev_m, err, errlen);
    free(source);
out:
    free(m);
    free(mr);
    return rc;
}

/* The sluice_l4_* families of /metrics; none when the maps cannot be read. */
static void l4_metrics(void *arg, struct strbuf *out)
{
    struct l4d *d = arg;
    struct l4_snapshot snap;
    char err[160];
    if (l4d_snapshot(d, &snap, err, sizeof err) < 0)
        return;
    l4_snapshot_metrics(&snap, out);
    l4_snapshot_free(&snap);
    l4_sync_metrics(d->sync, out);
}

int l4_daemon_admin(struct admin_site *site, void *arg)
{
    struct l4d *d = arg;
    d->pool_view = (struct pool_view){ &l4_pool_view_ops, d };
    if (pool_view_mount(site, &d->pool_view) < 0 || metrics_register(&site->metrics, l4_metrics, d) < 0)
        return -1;
    return admin_mount(site, NULL, "/api/l4", l4_api_handle, d);
}

/* The daemon skeleton's signals: SIGHUP reloads, SIGTERM and SIGINT stop
 * at once (the forwarder stays attached). */
static void on_reload(void *arg)
{
    struct l4d *d = arg;
    log_info("SIGHUP: reloading %s", d->config_path);
    reload(d);
}

static const struct daemon_ops l4_daemon_ops = { .reload = on_reload }; /* stop: the core logs it and stops at once */

/* The most reals a service may have: its list, or for a discovered
 * service the most members it takes (discovery.max_members), which sizes
 * the Maglev tables once for the run. */
static uint32_t max_reals(const struct cfg_l4 *l4)
{
    size_t m = 1;
    for (size_t s = 0; s < l4->n_services; s++) {
        const struct cfg_l4_service *svc = &l4->services[s];
        size_t n = svc->discovered && svc->discovery.max_members > svc->n_reals ? svc->discovery.max_members
                                                                                : svc->n_reals;
        if (n > m)
            m = n;
    }
    return (uint32_t)m;
}

static void note(const char *msg)
{
    log_warn("%s", msg);
}

static void gone_iface(const char *ifname)
{
    log_info("detached from %s: it is no longer in l4.interfaces (its link is removed)", ifname);
}

/* How an interface got the forwarder in this run (links.h). */
static void log_attached(const struct l4d *d, const struct l4_iface *f)
{
    const char *mode = l4_conf(d->cfg)->xdp_generic ? "generic (skb; as l4.xdp_mode asks)" : "native (driver)";
    switch (f->how) {
    case L4_ATTACH_NEW:
        log_info("attached to %s in %s XDP mode (link %" PRIu32 ", pinned in %s/" L4_LINKS_SUBDIR ")", f->name,
                 mode, f->link_id, d->pin_dir);
        break;
    case L4_ATTACH_REPLACED:
        log_info("attached to %s in %s XDP mode: swapped into the pinned link %" PRIu32 " in place (program %" PRIu32
                 " replaced, no moment without a forwarder)", f->name, mode, f->link_id, f->old_prog_id);
        break;
    case L4_ATTACH_UPGRADED:
        log_warn("attached to %s in %s XDP mode (link %" PRIu32 "): took off the forwarder an earlier Sluice had "
                 "attached without a link (program %" PRIu32 ") first, a moment without a forwarder; from now on "
                 "restarts swap the program in place", f->name, mode, f->link_id, f->old_prog_id);
        break;
    case L4_ATTACH_FORCED:
        log_warn("attached to %s in %s XDP mode (link %" PRIu32 "): --force took XDP program %s (id %" PRIu32
                 ") off first", f->name, mode, f->link_id, f->old_prog_name, f->old_prog_id);
        break;
    case L4_ATTACH_REMODE:
        log_warn("attached to %s in %s XDP mode (link %" PRIu32 "): l4.xdp_mode changed, so the earlier link "
                 "(program %" PRIu32 ") was detached first, a moment without a forwarder (the kernel allows one "
                 "mode at a time)", f->name, mode, f->link_id, f->old_prog_id);
        break;
    }
}

/* On exit: what stays attached (and how to take it off). */
static void log_staying(const struct l4d *d)
{
    char names[L4_MAX_IFACES * 18] = "";
    size_t used = 0;
    for (size_t i = 0; i < d->ld.n_ifaces; i++) {
        if (d->ld.ifaces[i].link_fd < 0)
            continue;
        int w = snprintf(names + used, sizeof names - used, "%s%s", used ? ", " : "", d->ld.ifaces[i].name);
        if (w > 0 && (size_t)w < sizeof names - used)
            used += (size_t)w;
    }
    if (!used)
        return;
    if (d->ld.mounted_bpffs)
        log_info("stopped; the forwarder detaches from %s as this process's bpffs goes away", names);
    else
        log_info("stopped; the forwarder stays attached to %s (links pinned in %s/" L4_LINKS_SUBDIR ") and forwards "
                 "from the pinned maps, without health checks, until the next sluice l4 takes over; "
                 "'sluice l4 detach --pin-dir %s' takes it off", names, d->pin_dir, d->pin_dir);
}

int l4_daemon_run(const struct l4_run_options *o)
{
    struct config_errors errs = { 0 };
    struct l4d d = { .pin_dir = o->pin_dir ? o->pin_dir : L4_PIN_DIR, .config_path = o->config_path };
    char err[512];
    int rc = 1;

    /* sluice l4 writes log.file (listeners and their access logs are the proxy's). */
    d.cfg = daemon_load_config(o->config_path, CONFIG_FILES_LOG, &errs);
    if (!d.cfg) {
        for (size_t i = 0; i < errs.n; i++)
            fprintf(stderr, "%s\n", errs.lines[i]);
        config_errors_free(&errs);
        return 1;
    }
    const struct cfg_l4 *l4 = l4_conf(d.cfg);
    if (!l4->present) {
        fprintf(stderr, "sluice l4: %s has no l4: section (see docs/l4.md)\n", o->config_path);
        config_free(d.cfg);
        return 1;
    }
    if (l4->sync.enabled) {
        /* The key first: a key file refused stops the start before
         * anything is loaded. */
        uint8_t key[L4_SYNC_KEY_MAX];
        int n = sync_key(&d, &l4->sync, key, sizeof key, err, sizeof err);
        memset(key, 0, sizeof key);
        if (n < 0) {
            fprintf(stderr, "%s\n", err);
            config_free(d.cfg);
            return 1;
        }
    }
    const struct daemon_spec spec = { .role = "l4", .module = &l4_module, .ops = &l4_daemon_ops, .arg = &d };
    if (daemon_init(&d.dmn, &spec, d.cfg, err, sizeof err) < 0) {
        log_error("%s", err);
        goto out;
    }
    d.loop = d.dmn.loop;
    d.seed = l4->seed;
    int jit = l4_jit_disabled();
    if (jit == 1)
        log_warn("the BPF JIT is off (/proc/sys/net/core/bpf_jit_enable is 0): the forwarder runs interpreted, "
                 "several times slower; enable it with sysctl net.core.bpf_jit_enable=1");
    d.hc = hc_set_new(d.loop);
    if (!d.hc) {
        log_error("out of memory");
        goto out;
    }
    /* Discovered services: their first lists become their reals before
     * anything is built, as if the file had listed them. */
    l4_discovery_start(&d, DISCOVERY_FIRST_LIST_WAIT_MS);

    uint32_t m = maglev_table_size(max_reals(l4));
    uint32_t tables = l4_table_count(l4->max_services);
    if (l4_loader_open(&d.ld, d.pin_dir, m, tables, l4->seed, note, err, sizeof err) < 0) {
        log_error("%s", err);
        goto out;
    }
    l4_register_forwarded(&d);
    d.n_slots = d.ld.maglev_tables / 2;
    if (d.n_slots > L4_MAX_SERVICES)
        d.n_slots = L4_MAX_SERVICES;
    d.fds = (struct l4_fds){ d.ld.fd_vips, d.ld.fd_reals, d.ld.fd_maglev, d.ld.fd_vip_stats, d.ld.fd_real_stats,
                             d.ld.fd_reasons, d.ld.fd_cfg, d.ld.fd_conn, d.ld.fd_conn_shared, d.ld.fd_nat };
    if (d.ld.mounted_bpffs)
        log_warn("no bpffs was mounted on /sys/fs/bpf (a fresh 'ip netns exec'?): mounted one that lives only as "
                 "long as this process, so the forwarder detaches when it exits and the next run starts afresh; "
                 "give --pin-dir a bpffs that outlives it to keep flows across restarts");
    if (d.ld.n_reused)
        log_info("reusing %zu maps pinned in %s by an earlier run (connection table kept)", d.ld.n_reused, d.pin_dir);
    else
        log_info("maps pinned in %s", d.pin_dir);
    log_info("forwarder loaded: Maglev table size %" PRIu32 ", room for %" PRIu32 " services, seed 0x%08" PRIx32,
             m, d.n_slots, l4->seed);

    /* The interfaces are attached last, once the maps are filled: until
     * then the program of the earlier run (if any) goes on forwarding. */
    for (size_t i = 0; i < l4->n_interfaces; i++) {
        if (l4_loader_add_iface(&d.ld, l4->interfaces[i], err, sizeof err) < 0) {
            log_error("%s", err);
            goto out;
        }
    }
    struct plan p;
    int prc = prepare(&d, l4, &p, err, sizeof err);
    if (prc) {
        log_error("%s", err);
        goto out;
    }
    /* The first model: no tables yet, and health checks start with the
     * loop below; give ARP/ND a moment first. */
    d.rr = p.rr;
    d.n_reals = p.n_reals;
    d.sr = p.sr;
    d.n_svcs = p.n_svcs;
    wait_nexthops(&d);
    d.rr = NULL;
    d.n_reals = 0;
    d.sr = NULL;
    d.n_svcs = 0;
    commit(&d, &p);
    for (size_t s = 0; s < l4->n_services; s++)
        if (l4->services[s].mode == L4_FWD_FULLNAT)
            log_info("service %s: FullNAT through %zu local address%s, ports 1024-65535",
                     l4->services[s].vip.text, l4->services[s].n_local_addrs,
                     l4->services[s].n_local_addrs == 1 ? "" : "es");

    /* Signals from now on: a stop before this leaves nothing half done. */
    if (daemon_catch_signals(&d.dmn, err, sizeof err) < 0) {
        log_error("%s", err);
        goto out;
    }
    d.dmn.site.status = (struct admin_status){ .version = SLUICE_VERSION, .config_path = d.config_path,
                                               .started_ms = ev_clock_ms() };
    if (daemon_admin_start(&d.dmn, d.cfg, err, sizeof err) < 0) {
        log_error("admin API: %s", err);
        goto out;
    }
    if (d.dmn.admin)
        log_info("admin API on %s (services are pools named PROTO:VIP; changes under /api/l4/)",
                 d.cfg->admin_addr.text);
    /* Before the attach: a sync that cannot start (its address taken)
     * stops a first start before it touches the interfaces. */
    if (start_sync(&d, err, sizeof err) < 0) {
        log_error("%s", err);
        goto out;
    }
    if (l4_links_attach(d.pin_dir, d.ld.prog_fd, d.ld.ifaces, d.ld.n_ifaces, l4->xdp_generic, o->force,
                        gone_iface, err, sizeof err) < 0) {
        log_error("%s", err);
        goto out;
    }
    for (size_t i = 0; i < d.ld.n_ifaces; i++)
        log_attached(&d, &d.ld.ifaces[i]);
    if (tx_iface(&d))
        log_info("forwarded packets leave through %s (l4.tx_interface)", tx_iface(&d)->name);
    d.loop_running = true;
    start_targets(&d);
    ev_timer_init(&d.tick, tick, &d);
    ev_timer_start(d.loop, &d.tick, TICK_MS);
    log_info("sluice l4 running: %zu service%s, %zu real%s", l4->n_services, l4->n_services == 1 ? "" : "s",
             d.n_reals, d.n_reals == 1 ? "" : "s");
    rc = daemon_run(&d.dmn) < 0 ? 1 : 0;

out:
    l4_sync_free(d.sync);
    l4_discovery_free(&d);
    hc_set_free(d.hc);
    admin_stop(d.dmn.admin);
    d.dmn.admin = NULL;
    log_staying(&d);
    l4_loader_close(&d.ld);
    if (d.loop)
        ev_timer_stop(d.loop, &d.tick);
    daemon_fini(&d.dmn);
    struct plan last = { .rr = d.rr, .n_reals = d.n_reals, .sr = d.sr, .n_svcs = d.n_svcs };
    plan_free(&last);
    config_free(d.cfg);
    return rc;
}
