/* `sluice l4 -c FILE`: one process, one event loop.
 *
 * The reals are modelled as the backends of one pool per service in a
 * shared region (src/core/shared.h), which lets the L7 proxy's health
 * checker and admin API work on them unchanged: the checker flips a real's
 * health, the API changes its weight or drains it, and a 100 ms tick turns
 * whatever changed into map updates:
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
 * NAT and FullNAT need three things more, written at start: the real's
 * port in each of their reals, the FullNAT local addresses in nat_pools,
 * and L4_CFG_F_NAT_REPLIES in l4_config while such a service exists (the
 * forwarder then takes the replies; their next hop is recorded per flow by
 * the data plane, see docs/l4-dataplane.md).
 *
 * Real index numbering is stable for a given config: 1, 2, ... in config
 * order, so a restart with the same file finds the connection table's
 * entries pointing at the same reals.
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
#include <sys/signalfd.h>
#include <unistd.h>

#include <bpf/bpf.h>

#include "cmd/master.h"
#include "core/admin.h"
#include "core/config.h"
#include "core/evloop.h"
#include "core/health.h"
#include "core/log.h"
#include "core/maglev.h"
#include "core/shared.h"
#include "l4/loader.h"
#include "l4/nexthop.h"
#include "l4/stats.h"
#include "l4/tables.h"

#define TICK_MS 100
#define NEXTHOP_REFRESH_MS 5000   /* re-read a known MAC (it may change) */
#define NEXTHOP_RETRY_MS 200      /* while ARP/ND is in progress */
#define NEXTHOP_ERROR_MS 2000     /* no route */

struct real_rt {
    bool have_mac;
    uint8_t mac[6];
    int ifindex;
    bool active_written;     /* what the reals map says */
    uint64_t next_lookup_ms;
    int last_result;         /* enum nexthop_result, to log changes only */
};

struct svc_rt {
    uint32_t live_table;     /* 2s or 2s + 1 */
    uint32_t *weights;       /* effective weights the live table was built from */
    bool built;
};

struct l4d {
    struct sl_config *cfg;   /* the file */
    struct sl_config *pcfg;  /* one pool per service, for health and admin */
    struct shared_state *sh;
    struct l4_loader ld;
    const char *pin_dir;
    struct ev_loop *loop;
    struct ev_timer tick;
    struct ev_io sig_io;
    int sig_fd;
    struct health_checker *hc;
    struct admin_server *admin;
    struct admin_view view;
    struct real_rt *rr;      /* [sh->n_backends], global order */
    struct svc_rt *sr;       /* [n_services] */
    struct l4_fds fds;
    uint64_t seed;
};

static const struct cfg_l4_service *svc_of(const struct l4d *d, size_t s) { return &d->cfg->l4.services[s]; }

/* ---- the pools that stand for the services ---- */

static char *xstrdup_or_null(const char *s)
{
    return s ? strdup(s) : NULL;
}

static struct sl_config *pools_from_services(const struct sl_config *cfg)
{
    const struct cfg_l4 *l4 = &cfg->l4;
    struct sl_config *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    p->path = strdup(cfg->path ? cfg->path : "");
    p->admin_addr = cfg->admin_addr;
    p->admin_enabled = cfg->admin_enabled;
    p->log_level = cfg->log_level;
    p->workers = 1;
    p->pools = calloc(l4->n_services ? l4->n_services : 1, sizeof *p->pools);
    if (!p->pools) {
        config_free(p);
        return NULL;
    }
    p->n_pools = l4->n_services;
    for (size_t i = 0; i < l4->n_services; i++) {
        const struct cfg_l4_service *s = &l4->services[i];
        struct cfg_pool *pool = &p->pools[i];
        char name[96];
        /* "tcp:10.0.0.100:80": the admin API's pool name. */
        snprintf(name, sizeof name, "%s:%s", s->proto == PROTO_UDP ? "udp" : "tcp", s->vip.text);
        pool->name = strdup(name);
        pool->algorithm = LB_HASH;
        pool->health = s->health;
        pool->health.http_path = xstrdup_or_null(s->health.http_path);
        pool->health.http_host = xstrdup_or_null(s->health.http_host);
        pool->passive.max_fails = 0; /* XDP sees no connect failures */
        pool->passive.eject_ms = 10000;
        pool->passive.max_eject_ms = 300000;
        pool->line = s->line;
        pool->backends = calloc(s->n_reals ? s->n_reals : 1, sizeof *pool->backends);
        if (!pool->name || !pool->backends) {
            config_free(p);
            return NULL;
        }
        pool->n_backends = s->n_reals;
        for (size_t r = 0; r < s->n_reals; r++) {
            pool->backends[r].addr = s->reals[r].addr;
            pool->backends[r].weight = s->reals[r].weight;
            pool->backends[r].line = s->reals[r].line;
        }
    }
    return p;
}

/* ---- map updates ---- */

static const char *fmt_mac(const uint8_t m[6], char *buf, size_t cap)
{
    snprintf(buf, cap, "%02x:%02x:%02x:%02x:%02x:%02x", m[0], m[1], m[2], m[3], m[4], m[5]);
    return buf;
}

static size_t real_pool(const struct l4d *d, size_t g)
{
    size_t p = 0;
    while (p + 1 < d->pcfg->n_pools && g >= d->sh->pool_first[p + 1])
        p++;
    return p;
}

static const struct sl_addr *real_addr(const struct l4d *d, size_t g)
{
    /* Pool backends mirror the service's reals, in the same order. */
    for (size_t p = 0; p < d->pcfg->n_pools; p++)
        if (g < d->sh->pool_first[p + 1])
            return &d->pcfg->pools[p].backends[g - d->sh->pool_first[p]].addr;
    return NULL;
}

static bool real_nat(const struct l4d *d, size_t g)
{
    enum l4_fwd_mode m = svc_of(d, real_pool(d, g))->mode;
    return m == L4_FWD_NAT || m == L4_FWD_FULLNAT;
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
            bool known = false;
            for (size_t i = 0; i < d->ld.n_ifaces; i++)
                known |= d->ld.ifaces[i].ifindex == ifindex;
            if (!known)
                log_warn("real %s: its route leaves through %s, where the forwarder is not attached; "
                         "XDP sends it out of the interface the packet came in on",
                         a->text, ifname);
            memcpy(r->mac, m, 6);
            r->ifindex = ifindex;
            r->have_mac = true;
            /* A real in use gets the new MAC at once. */
            if (r->active_written)
                l4_write_real(d->fds.reals, (uint32_t)g + 1, (const struct sockaddr *)&a->ss, r->mac, true,
                              real_nat(d, g), err, sizeof err);
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
    return d->rr[g].have_mac && atomic_load(&d->sh->backends[g].health) == HEALTH_UP;
}

static void write_active(struct l4d *d, size_t g, bool active)
{
    const struct sl_addr *a = real_addr(d, g);
    char err[160];
    if (l4_write_real(d->fds.reals, (uint32_t)g + 1, (const struct sockaddr *)&a->ss, d->rr[g].mac, active,
                      real_nat(d, g), err, sizeof err) < 0) {
        log_error("real %s: %s", a->text, err);
        return;
    }
    d->rr[g].active_written = active;
    log_info("real %s: %s", a->text, active ? "active" : "inactive (health check failing or no next hop)");
}

static int l4_write_vip_for(struct l4d *d, size_t s, uint32_t table, char *err, size_t errlen)
{
    struct l4_vip_key k;
    l4_vip_key_of(&k, svc_of(d, s));
    return l4_write_vip(d->fds.vips, &k, (uint32_t)s, table, svc_of(d, s)->mode, err, errlen);
}

static void rebuild_service(struct l4d *d, size_t s, const uint32_t *w)
{
    const struct cfg_l4_service *svc = svc_of(d, s);
    struct svc_rt *sr = &d->sr[s];
    uint32_t idle = sr->live_table ^ 1;   /* the pair is {2s, 2s + 1} */
    uint32_t first = (uint32_t)d->sh->pool_first[s] + 1;
    char err[160];
    if (l4_write_maglev(d->fds.maglev, d->ld.maglev_m, idle, svc, w, first, d->seed, err, sizeof err) < 0 ||
        l4_write_vip_for(d, s, idle, err, sizeof err) < 0) {
        log_error("service %s: %s", svc->vip.text, err);
        return;
    }
    sr->live_table = idle;
    memcpy(sr->weights, w, svc->n_reals * sizeof *w);
    sr->built = true;
    char list[512];
    size_t o = 0;
    list[0] = '\0';
    for (size_t r = 0; r < svc->n_reals && o < sizeof list; r++) {
        int n = snprintf(list + o, sizeof list - o, "%s%s=%" PRIu32, r ? " " : "", svc->reals[r].addr.text, w[r]);
        if (n < 0)
            break;
        o += (size_t)n;
    }
    log_info("service %s/%s: Maglev table %" PRIu32 " live, weights %s", svc->vip.text,
             svc->proto == PROTO_UDP ? "udp" : "tcp", idle, list);
}

static void tick(struct ev_loop *loop, struct ev_timer *t)
{
    struct l4d *d = t->data;
    uint64_t now = ev_now(loop);
    size_t n = d->sh->n_backends;
    for (size_t g = 0; g < n; g++)
        refresh_nexthop(d, g, now);
    /* Make reals usable before a table points at them ... */
    for (size_t g = 0; g < n; g++)
        if (real_usable(d, g) && !d->rr[g].active_written)
            write_active(d, g, true);
    for (size_t s = 0; s < d->cfg->l4.n_services; s++) {
        const struct cfg_l4_service *svc = svc_of(d, s);
        uint32_t w[svc->n_reals ? svc->n_reals : 1];
        bool changed = !d->sr[s].built;
        for (size_t r = 0; r < svc->n_reals; r++) {
            size_t g = d->sh->pool_first[s] + r;
            w[r] = real_usable(d, g) ? shared_effective_weight(&d->sh->backends[g], 0, now) : 0;
            changed |= w[r] != d->sr[s].weights[r];
        }
        if (changed)
            rebuild_service(d, s, w);
    }
    /* ... and unusable only once no table points at them. */
    for (size_t g = 0; g < n; g++)
        if (!real_usable(d, g) && d->rr[g].active_written)
            write_active(d, g, false);
    ev_timer_start(loop, t, TICK_MS);
}

/* ---- start-up ---- */

/* Take over what an earlier run left in the pinned maps: MACs of reals
 * that are still the same address (so established flows keep flowing
 * while the first lookups run), and which table of each pair is live (so
 * the first rebuild writes the idle one). Stale reals past ours are
 * cleared. */
static void adopt_pinned_state(struct l4d *d)
{
    size_t n = d->sh->n_backends;
    for (size_t g = 0; g < n; g++) {
        struct l4_real old;
        __be32 want[4];
        const struct sl_addr *a = real_addr(d, g);
        l4_addr16(want, (const struct sockaddr *)&a->ss);
        if (l4_read_real(d->fds.reals, (uint32_t)g + 1, &old) < 0 || memcmp(old.addr, want, sizeof want) != 0)
            continue;
        if (old.flags & L4_REAL_F_ACTIVE) {
            memcpy(d->rr[g].mac, old.mac, 6);
            d->rr[g].have_mac = true;
            d->rr[g].active_written = true;
        } else if (d->pcfg->pools[real_pool(d, g)].health.type != HEALTH_NONE) {
            /* The earlier run had taken it out: keep it out until its
             * checks pass `rise` times, rather than send it new flows
             * for `fall` intervals. */
            atomic_store(&d->sh->backends[g].health, HEALTH_DOWN);
        }
    }
    char err[160];
    for (uint32_t i = (uint32_t)n + 1; i < L4_MAX_REALS; i++) {
        struct l4_real old;
        if (l4_read_real(d->fds.reals, i, &old) == 0 && old.flags) {
            struct sockaddr_in6 none = { .sin6_family = AF_INET6 };
            l4_write_real(d->fds.reals, i, (const struct sockaddr *)&none, NULL, false, false, err, sizeof err);
        }
    }
    for (size_t s = 0; s < d->cfg->l4.n_services; s++) {
        struct l4_vip_key k;
        struct l4_vip_meta meta;
        uint32_t base = 2 * (uint32_t)s;
        l4_vip_key_of(&k, svc_of(d, s));
        d->sr[s].live_table = base + 1; /* first build goes to 2s */
        if (bpf_map_lookup_elem(d->fds.vips, &k, &meta) == 0 && (meta.table == base || meta.table == base + 1))
            d->sr[s].live_table = meta.table;
    }
}

/* The ICMP entries (ping the VIP) and the removal of services an earlier
 * run had that this config has not. */
static int write_vip_addresses(struct l4d *d, char *err, size_t errlen)
{
    size_t n = d->cfg->l4.n_services;
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
        rc = l4_write_vip(d->fds.vips, &icmp, (uint32_t)s, d->sr[s].live_table, svc_of(d, s)->mode, err, errlen);
    }
    if (rc == 0)
        rc = l4_prune_vips(d->fds.vips, keep, k, err, errlen);
    free(keep);
    return rc;
}

/* Give ARP/ND up to a second before the first tables, so that a fresh
 * start does not begin with empty tables (and drop new flows) while the
 * neighbours resolve. Bounded: an unreachable real is not waited for. */
static void wait_nexthops(struct l4d *d)
{
    uint64_t start = ev_clock_ms();
    for (;;) {
        bool all = true;
        for (size_t g = 0; g < d->sh->n_backends; g++) {
            d->rr[g].next_lookup_ms = 0;
            refresh_nexthop(d, g, ev_clock_ms());
            all &= d->rr[g].have_mac || d->rr[g].last_result == NEXTHOP_ERROR;
        }
        if (all || ev_clock_ms() - start > 1000)
            return;
        usleep(20 * 1000);
    }
}

static char *l4_metrics(void *arg, size_t *len)
{
    struct l4d *d = arg;
    struct l4_snapshot snap;
    char err[160];
    if (l4_snapshot_build(&snap, &d->cfg->l4, &d->fds, d->ld.maglev_m, err, sizeof err) < 0)
        return NULL;
    char *text = l4_snapshot_render_metrics(&snap, len);
    l4_snapshot_free(&snap);
    return text;
}

static void on_signal(struct ev_loop *loop, struct ev_io *io, uint32_t revents)
{
    struct l4d *d = io->data;
    struct signalfd_siginfo si;
    while (read(d->sig_fd, &si, sizeof si) == (ssize_t)sizeof si) {
        if (si.ssi_signo == SIGHUP) {
            log_warn("SIGHUP: reloading is not supported by sluice l4 yet; restart it (flows survive a restart)");
            continue;
        }
        log_info("signal %s: stopping", si.ssi_signo == SIGINT ? "SIGINT" : "SIGTERM");
        ev_break(loop);
    }
}

static uint32_t max_reals(const struct cfg_l4 *l4)
{
    size_t m = 1;
    for (size_t s = 0; s < l4->n_services; s++)
        if (l4->services[s].n_reals > m)
            m = l4->services[s].n_reals;
    return (uint32_t)m;
}

static void note(const char *msg)
{
    log_warn("%s", msg);
}

static int check_limits(const struct cfg_l4 *l4, char *err, size_t errlen)
{
    size_t reals = 0;
    for (size_t s = 0; s < l4->n_services; s++) {
        reals += l4->services[s].n_reals;
        if (l4->services[s].n_local_addrs > L4_POOL_ADDRS) {
            snprintf(err, errlen, "service %s: %zu local_addresses, the forwarder takes at most %d",
                     l4->services[s].vip.text, l4->services[s].n_local_addrs, L4_POOL_ADDRS);
            return -1;
        }
    }
    if (reals >= L4_MAX_REALS || l4->n_services > L4_MAX_SERVICES || 2 * l4->n_services > L4_MAX_VIPS) {
        snprintf(err, errlen, "too many services or reals for the forwarder's maps (%zu services, %zu reals; "
                 "at most %d services and %d reals)", l4->n_services, reals, L4_MAX_SERVICES, L4_MAX_REALS - 1);
        return -1;
    }
    return 0;
}

int l4_daemon_run(const struct l4_run_options *o)
{
    struct config_errors errs = { 0 };
    struct l4d d = { .pin_dir = o->pin_dir ? o->pin_dir : L4_PIN_DIR, .sig_fd = -1 };
    char err[512];
    int rc = 1;

    d.cfg = config_load(o->config_path, &errs);
    if (!d.cfg) {
        for (size_t i = 0; i < errs.n; i++)
            fprintf(stderr, "%s\n", errs.lines[i]);
        config_errors_free(&errs);
        return 1;
    }
    const struct cfg_l4 *l4 = &d.cfg->l4;
    if (!l4->present) {
        fprintf(stderr, "sluice l4: %s has no l4: section (see docs/l4.md)\n", o->config_path);
        config_free(d.cfg);
        return 1;
    }
    log_setup(d.cfg->log_level, d.cfg->log_file, "l4");
    if (check_limits(l4, err, sizeof err) < 0) {
        log_error("%s", err);
        config_free(d.cfg);
        return 1;
    }
    d.seed = l4->seed;
    int jit = l4_jit_disabled();
    if (jit == 1)
        log_warn("the BPF JIT is off (/proc/sys/net/core/bpf_jit_enable is 0): the forwarder runs interpreted, "
                 "several times slower; enable it with sysctl net.core.bpf_jit_enable=1");

    d.pcfg = pools_from_services(d.cfg);
    d.sh = d.pcfg ? shared_create(d.pcfg, 1) : NULL;
    d.loop = ev_loop_new();
    d.rr = calloc(d.sh ? d.sh->n_backends + 1 : 1, sizeof *d.rr);
    d.sr = calloc(l4->n_services + 1, sizeof *d.sr);
    if (!d.pcfg || !d.sh || !d.loop || !d.rr || !d.sr) {
        log_error("out of memory");
        goto out;
    }
    for (size_t s = 0; s < l4->n_services; s++) {
        d.sr[s].weights = calloc(l4->services[s].n_reals + 1, sizeof *d.sr[s].weights);
        if (!d.sr[s].weights) {
            log_error("out of memory");
            goto out;
        }
    }

    uint32_t m = maglev_table_size(max_reals(l4));
    if (l4_loader_open(&d.ld, d.pin_dir, m, l4_table_count(l4->max_services), l4->seed, note, err, sizeof err) < 0) {
        log_error("%s", err);
        goto out;
    }
    d.fds = (struct l4_fds){ d.ld.fd_vips, d.ld.fd_reals, d.ld.fd_maglev, d.ld.fd_vip_stats, d.ld.fd_real_stats,
                             d.ld.fd_reasons };
    if (d.ld.n_reused)
        log_info("reusing %zu maps pinned in %s by an earlier run (connection table kept)", d.ld.n_reused, d.pin_dir);
    else
        log_info("maps pinned in %s", d.pin_dir);
    log_info("forwarder loaded: Maglev table size %" PRIu32 ", %" PRIu32 " tables, seed 0x%08" PRIx32, m,
             d.ld.maglev_tables, l4->seed);

    for (size_t i = 0; i < l4->n_interfaces; i++) {
        if (l4_loader_attach(&d.ld, l4->interfaces[i], l4->xdp_generic, err, sizeof err) < 0) {
            log_error("%s", err);
            goto out;
        }
        log_info("attached to %s in %s XDP mode", l4->interfaces[i],
                 l4->xdp_generic ? "generic (skb; as l4.xdp_mode asks)" : "native (driver)");
    }
    if (l4_write_config(d.ld.fd_cfg, l4, d.ld.ifaces[0].mac, d.ld.maglev_m, d.ld.maglev_tables, err, sizeof err) < 0) {
        log_error("%s", err);
        goto out;
    }
    for (size_t s = 0; s < l4->n_services; s++) {
        if (l4_write_nat_pool(d.ld.fd_nat_pools, (uint32_t)s, &l4->services[s], err, sizeof err) < 0) {
            log_error("%s", err);
            goto out;
        }
        if (l4->services[s].mode == L4_FWD_FULLNAT)
            log_info("service %s: FullNAT through %zu local address%s, ports 1024-65535",
                     l4->services[s].vip.text, l4->services[s].n_local_addrs,
                     l4->services[s].n_local_addrs == 1 ? "" : "es");
    }
    adopt_pinned_state(&d);
    if (write_vip_addresses(&d, err, sizeof err) < 0) {
        log_error("%s", err);
        goto out;
    }

    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    sigprocmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);
    d.sig_fd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    if (d.sig_fd < 0) {
        log_error("signalfd: %s", strerror(errno));
        goto out;
    }
    ev_io_init(&d.sig_io, d.sig_fd, on_signal, &d);
    ev_io_set(d.loop, &d.sig_io, EPOLLIN);

    d.view = (struct admin_view){ .cfg = d.pcfg, .sh = d.sh, .started_ms = ev_clock_ms(), .n_workers = 0,
                                  .version = SLUICE_VERSION, .extra_metrics = l4_metrics, .extra_arg = &d };
    if (d.cfg->admin_enabled) {
        d.admin = admin_start(d.loop, &d.cfg->admin_addr, &d.view, err, sizeof err);
        if (!d.admin) {
            log_error("admin API: %s", err);
            goto out;
        }
        log_info("admin API on %s (services are pools named PROTO:VIP)", d.cfg->admin_addr.text);
    }
    d.hc = health_start(d.loop, d.pcfg, d.sh);
    wait_nexthops(&d);
    ev_timer_init(&d.tick, tick, &d);
    tick(d.loop, &d.tick); /* first tables now, not in 100 ms */
    log_info("sluice l4 running: %zu service%s, %zu real%s", l4->n_services, l4->n_services == 1 ? "" : "s",
             d.sh->n_backends, d.sh->n_backends == 1 ? "" : "s");
    rc = ev_run(d.loop) < 0 ? 1 : 0;

out:
    if (d.hc)
        health_stop(d.hc);
    if (d.admin)
        admin_stop(d.admin);
    if (d.ld.n_ifaces) {
        for (size_t i = 0; i < d.ld.n_ifaces; i++)
            log_info("detached from %s; maps stay pinned in %s", d.ld.ifaces[i].name, d.pin_dir);
    }
    l4_loader_close(&d.ld);
    if (d.loop) {
        ev_timer_stop(d.loop, &d.tick);
        if (d.sig_fd >= 0)
            ev_io_stop(d.loop, &d.sig_io);
        ev_loop_free(d.loop);
    }
    if (d.sig_fd >= 0)
        close(d.sig_fd);
    for (size_t s = 0; d.sr && s < l4->n_services; s++)
        free(d.sr[s].weights);
    free(d.sr);
    free(d.rr);
    if (d.sh)
        shared_destroy(d.sh);
    config_free(d.pcfg);
    config_free(d.cfg);
    return rc;
}
