/* See proxy_vips.h. */
#include "proxy/proxy_vips.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/evloop.h"
#include "core/sock_diag.h"
#include "core/log.h"
#include "proxy/slots.h"

/* Add pool p's backends to *healthy and *total. */
static void count_pool(const struct proxy_conf *pc, const struct shared_state *sh, size_t p, uint64_t now,
                       uint32_t *healthy, uint32_t *total)
{
    const struct cfg_pool *pool = &pc->pools[p];
    size_t first = sh->pool_first[p], n = cfg_pool_slots(pool);
    for (size_t i = 0; i < n; i++) {
        const struct shared_backend *sb = &sh->backends[first + i];
        uint32_t slot = atomic_load(&sb->slot_state);
        if (cfg_pool_slotted(pool) && slot == SLOT_EMPTY)
            continue;
        (*total)++;
        if (cfg_pool_slotted(pool) && slot == SLOT_DRAINING)
            continue;
        struct backend_ctl ctl;
        shared_backend_ctl(sb, &ctl);
        if (backend_effective_weight(&ctl, pool->slow_start_ms, now) > 0)
            (*healthy)++;
    }
}

/* The backends of every pool listener l sends to, each pool once. */
static void count_listener(const struct proxy_conf *pc, const struct shared_state *sh, const struct cfg_listener *l,
                           uint64_t now, uint32_t *healthy, uint32_t *total)
{
    bool *seen = calloc(pc->n_pools ? pc->n_pools : 1, sizeof *seen);
    if (!seen)
        return;
    if (l->has_default_pool && l->default_pool < pc->n_pools)
        seen[l->default_pool] = true;
    for (size_t r = 0; r < l->n_routes; r++)
        if (l->routes[r].answer.action == ROUTE_TO_POOL && l->routes[r].pool < pc->n_pools)
            seen[l->routes[r].pool] = true; /* a redirect: or return: route has no pool */
    for (size_t p = 0; p < pc->n_pools; p++)
        if (seen[p])
            count_pool(pc, sh, p, now, healthy, total);
    free(seen);
}

/* Its sockets are open and a running worker holds them. */
static bool listener_serving(const struct proxy_vips_view *v, size_t l)
{
    if (v->stopping)
        return false;
    for (uint32_t s = 0; s < v->n_workers; s++)
        if (v->pids[s] && v->fds[l * v->n_workers + s] >= 0)
            return true;
    return false;
}

/* "Did this node forward flow F?" (vip_board.h): a TCP socket for its
 * 4-tuple here (the probe's half-open one until its RST). A socket is
 * there now or not: since_ns does not matter. */
static int proxy_forwarded(void *arg, const struct vip_flow *f, uint64_t since_ns)
{
    (void)arg;
    (void)since_ns;
    if (f->proto != IPPROTO_TCP)
        return -1;
    struct sockaddr_storage local = { 0 }, remote = { 0 };
    if (f->dst.family == AF_INET) {
        struct sockaddr_in *l = (struct sockaddr_in *)&local, *r = (struct sockaddr_in *)&remote;
        l->sin_family = r->sin_family = AF_INET;
        l->sin_addr = f->dst.v4;
        r->sin_addr = f->src.v4;
        l->sin_port = htons(f->dport);
        r->sin_port = htons(f->sport);
    } else {
        struct sockaddr_in6 *l = (struct sockaddr_in6 *)&local, *r = (struct sockaddr_in6 *)&remote;
        l->sin6_family = r->sin6_family = AF_INET6;
        l->sin6_addr = f->dst.v6;
        r->sin6_addr = f->src.v6;
        l->sin6_port = htons(f->dport);
        r->sin6_port = htons(f->sport);
    }
    char err[128];
    int r = sock_diag_tcp_find((struct sockaddr *)&local, (struct sockaddr *)&remote, NULL, err, sizeof err);
    if (r < 0)
        log_warn("ha probe: sock_diag: %s", err);
    return r;
}

void proxy_publish_listeners(struct vip_board *b, const struct proxy_vips_view *v)
{
    if (vip_board_set_forwarded(b, proxy_forwarded, b) < 0)
        log_error("the VIP board has no room for the proxy's forwarded predicate");
    const struct proxy_conf *pc = v->pc;
    struct vip_entry *entries = calloc(pc->n_listeners ? pc->n_listeners : 1, sizeof *entries);
    if (!entries) {
        log_error("out of memory: the VIP board keeps its last state");
        return;
    }
    uint64_t now = ev_clock_ms();
    size_t n = 0;
    for (size_t i = 0; i < pc->n_listeners; i++) {
        const struct cfg_listener *l = &pc->listeners[i];
        struct vip_entry *e = &entries[n];
        if (vip_ip_from_sockaddr((const struct sockaddr *)&l->addr.ss, &e->addr) < 0 || vip_ip_is_any(&e->addr))
            continue;   /* a wildcard address cannot be announced */
        snprintf(e->owner, sizeof e->owner, "listener %s", l->name);
        e->kind = VIP_SERVICE;
        e->proto = l->proto == PROTO_UDP ? IPPROTO_UDP : IPPROTO_TCP;
        e->port = addr_port(&l->addr);
        count_listener(pc, v->sh, l, now, &e->healthy, &e->total);
        e->serving = listener_serving(v, i);
        n++;
    }
    if (vip_board_replace(b, "proxy", entries, n) < 0)
        log_error("out of memory: the VIP board keeps its last state");
    free(entries);
}
