/* ha.probe in the HA companion: see ha_daemon.h ("ha_probes.c") and
 * docs/ha.md, "Probing VIPs". */
#include <arpa/inet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/metrics.h"
#include "ha/ha_daemon.h"
#include "ha/probe_route.h"

struct ha_probe_vip {
    struct ha_companion *h;
    struct vip_ip ip;
    uint16_t port;
    bool proxy;                 /* published by the proxy (a socket tier) */
    struct probe_target *t;
};

/* ---- the engine's questions ---- */

static void ip_from_bytes(int family, const uint8_t *b, struct vip_ip *out)
{
    memset(out, 0, sizeof *out);
    out->family = family;
    if (family == AF_INET)
        memcpy(&out->v4, b, 4);
    else
        memcpy(&out->v6, b, 16);
}

/* "Did this node forward the probe's flow?": the serving tier's answer,
 * through the board. */
static int through_us(void *ctx, const struct probe_flow *flow)
{
    struct ha_companion *h = ctx;
    struct vip_flow f = { .sport = flow->tuple.sport, .dport = flow->tuple.dport, .proto = IPPROTO_TCP };
    ip_from_bytes(flow->tuple.family, flow->tuple.src, &f.src);
    ip_from_bytes(flow->tuple.family, flow->tuple.dst, &f.dst);
    int r = vip_board_forwarded(&h->d->vips, &f, flow->sent_ms * 1000000ull);
    /* (The tier registers its predicate once its data path is up, after
     * the companion attached: ask, do not judge at start.) */
    if (r < 0 && !vip_board_has_forwarded(&h->d->vips) && !h->probe_warning[0]) {
        snprintf(h->probe_warning, sizeof h->probe_warning, "the serving tier cannot tell which flows went "
                 "through this node: probes are counted (path unknown) but never withdraw a VIP");
        log_warn("ha: probe: %s", h->probe_warning);
    }
    return r;
}

/* The node's own view: a serving service of the address with enough
 * healthy reals (the board's announce rule for service entries). */
static bool node_healthy(void *arg)
{
    const struct ha_probe_vip *p = arg;
    const struct vip_board *b = &p->h->d->vips;
    for (size_t i = 0; i < b->n; i++) {
        const struct vip_entry *e = &b->entries[i];
        if (e->kind == VIP_SERVICE && e->serving && e->healthy >= p->h->ha->min_healthy &&
            vip_ip_equal(&e->addr, &p->ip))
            return true;
    }
    return false;
}

static void on_verdict(void *arg, enum probe_verdict v)
{
    struct ha_probe_vip *p = arg;
    struct ha_companion *h = p->h;
    char ip[64];
    vip_ip_string(&p->ip, ip, sizeof ip);
    const struct probe_conf *c = &h->ha->probe;
    switch (v) {
    case PROBE_VERDICT_WITHDRAW:
        log_warn("ha: probe: %s port %u failed through this node (%u in a row) while its health checks pass: "
                 "withdrawing %s for %u ms", ip, p->port, c->fall, ip, c->hold_ms);
        break;
    case PROBE_VERDICT_REANNOUNCE:
        log_info("ha: probe: %s port %u: hold over, announcing %s again on trial (%u successes through this "
                 "node restore it)", ip, p->port, ip, c->rise);
        break;
    case PROBE_VERDICT_RESTORED:
        log_info("ha: probe: %s port %u: probes through this node pass again", ip, p->port);
        return;
    case PROBE_VERDICT_NONE:
        return;
    }
    ha_reconcile(h);   /* may free other targets; p stays (its address is still eligible) */
}

/* ---- accept_local on a proxy's uplink ---- */

/* A socket tier's own probe, sent back to this node by the routers,
 * reaches its kernel with a local source address: IPv4 drops it as a
 * martian unless accept_local is set on the interface it arrives on (the
 * uplink, the way the probe leaves). Warn, do not change it. */
static void check_accept_local(struct ha_companion *h, const struct vip_ip *ip)
{
    if (ip->family != AF_INET || h->probe_warning[0])
        return;
    const struct probe_conf *c = &h->ha->probe;
    const uint8_t *gw = c->gateway4.ss_family ? (const uint8_t *)&((const struct sockaddr_in *)&c->gateway4)->sin_addr
                                              : NULL;
    struct probe_nexthop nh;
    char err[128], ifname[IF_NAMESIZE] = "";
    if (probe_route_resolve(AF_INET, (const uint8_t *)&ip->v4, gw, &nh, err, sizeof err) == PROBE_ROUTE_ERROR ||
        probe_accept_local(nh.ifindex, ifname) != 0)
        return;   /* on, or not known: nothing to warn about */
    snprintf(h->probe_warning, sizeof h->probe_warning,
             "net.ipv4.conf.%s.accept_local is 0: a probe the routers send back to this node is dropped as a "
             "martian (not held against the node, but it tells nothing); set it to 1 on the uplink", ifname);
    log_warn("ha: probe: %s", h->probe_warning);
}

/* ---- targets ---- */

int ha_probes_start(struct ha_companion *h)
{
    h->probe_warning[0] = '\0';
    if (!h->ha->probe_enabled)
        return 0;
    h->probe_engine = probe_engine_new(h->d->loop, &h->ha->probe, through_us, h);
    if (!h->probe_engine)
        return -1;
    log_info("ha: probing the announced VIPs every %u ms (timeout %u ms, fall %u, rise %u, hold %u ms)",
             h->ha->probe.interval_ms, h->ha->probe.timeout_ms, h->ha->probe.fall, h->ha->probe.rise,
             h->ha->probe.hold_ms);
    return 0;
}

static void free_probe(struct ha_probe_vip *p)
{
    probe_target_free(p->t);
    free(p);
}

void ha_probes_stop(struct ha_companion *h)
{
    for (size_t i = 0; i < h->n_probes; i++)
        free_probe(h->probes[i]);
    free(h->probes);
    h->probes = NULL;
    h->n_probes = 0;
    probe_engine_free(h->probe_engine);
    h->probe_engine = NULL;
}

bool ha_probe_withdrawn(const struct ha_companion *h, const struct vip_ip *ip)
{
    for (size_t i = 0; i < h->n_probes; i++)
        if (vip_ip_equal(&h->probes[i]->ip, ip) && probe_target_state(h->probes[i]->t) == PROBE_WITHDRAWN)
            return true;
    return false;
}

/* Address v may be probed: announced as this node's own service address,
 * or withdrawn by the probe itself. */
static bool probe_eligible(const struct ha_companion *h, const struct vip_verdict *v)
{
    if (v->reason != VIP_ANNOUNCE || v->standin || v->local_only)
        return false;
    enum ha_withdraw_reason why = ha_verdict_reason(h, v);
    return why == HA_WD_COUNT || why == HA_WD_PROBE;
}

static const struct vip_verdict *verdict_of(const struct vip_verdict *v, size_t n, const struct vip_ip *ip)
{
    for (size_t i = 0; i < n; i++)
        if (vip_ip_equal(&v[i].addr, ip))
            return &v[i];
    return NULL;
}

/* Board entry e is a TCP service of an eligible address: a (VIP, port)
 * to probe. */
static bool wanted(const struct ha_companion *h, const struct vip_entry *e, const struct vip_verdict *v, size_t n)
{
    if (e->kind != VIP_SERVICE || e->proto != IPPROTO_TCP || !e->port)
        return false;
    const struct vip_verdict *mine = verdict_of(v, n, &e->addr);
    return mine && probe_eligible(h, mine);
}

static struct ha_probe_vip *find_probe(const struct ha_companion *h, const struct vip_ip *ip, uint16_t port)
{
    for (size_t i = 0; i < h->n_probes; i++)
        if (h->probes[i]->port == port && vip_ip_equal(&h->probes[i]->ip, ip))
            return h->probes[i];
    return NULL;
}

static void to_sockaddr(const struct vip_ip *ip, struct sockaddr_storage *ss)
{
    memset(ss, 0, sizeof *ss);
    if (ip->family == AF_INET) {
        struct sockaddr_in *a = (struct sockaddr_in *)ss;
        a->sin_family = AF_INET;
        a->sin_addr = ip->v4;
    } else {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)ss;
        a->sin6_family = AF_INET6;
        a->sin6_addr = ip->v6;
    }
}

static void add_probe(struct ha_companion *h, const struct vip_entry *e)
{
    struct ha_probe_vip **grown = realloc(h->probes, (h->n_probes + 1) * sizeof *grown);
    struct ha_probe_vip *p = calloc(1, sizeof *p);
    if (grown)
        h->probes = grown;
    if (!grown || !p) {
        free(p);
        log_error("ha: probe: out of memory: not probing a VIP");
        return;
    }
    p->h = h;
    p->ip = e->addr;
    p->port = e->port;
    p->proxy = !strcmp(e->source, "proxy");
    struct sockaddr_storage ss;
    to_sockaddr(&e->addr, &ss);
    p->t = probe_target_new(h->probe_engine, (struct sockaddr *)&ss, &p->port, 1, node_healthy, on_verdict, p);
    if (!p->t) {
        free(p);
        log_error("ha: probe: out of memory: not probing a VIP");
        return;
    }
    h->probes[h->n_probes++] = p;
    char ip[64];
    log_info("ha: probe: probing %s port %u", vip_ip_string(&p->ip, ip, sizeof ip), p->port);
    if (p->proxy)
        check_accept_local(h, &p->ip);
}

void ha_probes_sync(struct ha_companion *h, const struct vip_verdict *v, size_t n)
{
    if (!h->probe_engine)
        return;
    /* Drop the targets of addresses and ports no longer eligible. */
    const struct vip_board *b = &h->d->vips;
    for (size_t i = 0; i < h->n_probes;) {
        struct ha_probe_vip *p = h->probes[i];
        bool keep = false;
        for (size_t k = 0; k < b->n && !keep; k++)
            keep = b->entries[k].port == p->port && vip_ip_equal(&b->entries[k].addr, &p->ip) &&
                   wanted(h, &b->entries[k], v, n);
        if (keep) {
            i++;
            continue;
        }
        char ip[64];
        log_info("ha: probe: no longer probing %s port %u", vip_ip_string(&p->ip, ip, sizeof ip), p->port);
        h->probes[i] = h->probes[--h->n_probes];
        free_probe(p);
    }
    for (size_t k = 0; k < b->n; k++)
        if (wanted(h, &b->entries[k], v, n) && !find_probe(h, &b->entries[k].addr, b->entries[k].port))
            add_probe(h, &b->entries[k]);
}

/* ---- status and metrics ---- */

static json_t *probe_json(const struct ha_probe_vip *p)
{
    const struct probe_stats *s = probe_target_stats(p->t);
    json_t *counts = json_object();
    for (int o = 0; o < PROBE_OUTCOMES; o++) {
        json_t *by_path = json_object();
        for (int q = 0; q < PROBE_PATHS; q++)
            json_object_set_new(by_path, probe_path_name((enum probe_path)q), json_integer((json_int_t)s->ended[o][q]));
        json_object_set_new(counts, probe_outcome_name((enum probe_outcome)o), by_path);
    }
    uint16_t learned[PROBE_LEARN_MAX];
    size_t nl = probe_target_learned(p->t, learned, PROBE_LEARN_MAX);
    json_t *ports = json_array();
    for (size_t i = 0; i < nl; i++)
        json_array_append_new(ports, json_integer(learned[i]));
    bool any = s->sent > probe_target_inflight(p->t);
    return json_pack("{s:i, s:s, s:o, s:o, s:i, s:{s:I, s:I}, s:I, s:I, s:o, s:o}", "port", (int)p->port, "state",
                     probe_fsm_state_name(probe_target_state(p->t)), "last_result",
                     any ? json_string(probe_outcome_name(s->last_outcome)) : json_null(), "last_path",
                     any ? json_string(probe_path_name(s->last_path)) : json_null(), "last_rtt_us",
                     (int)s->last_rtt_us, "through_us", "ok", (json_int_t)s->ended[PROBE_OK][PROBE_PATH_US],
                     "failed",
                     (json_int_t)(s->ended[PROBE_REFUSED][PROBE_PATH_US] + s->ended[PROBE_TIMEOUT][PROBE_PATH_US]),
                     "sent", (json_int_t)s->sent, "withdrawals", (json_int_t)s->withdrawals, "results", counts,
                     "learned_ports", ports);
}

json_t *ha_probes_json(const struct ha_companion *h, const struct vip_ip *ip)
{
    json_t *a = NULL;
    for (size_t i = 0; i < h->n_probes; i++) {
        if (!vip_ip_equal(&h->probes[i]->ip, ip))
            continue;
        if (!a)
            a = json_array();
        json_array_append_new(a, probe_json(h->probes[i]));
    }
    return a;
}

void ha_probes_metrics(const struct ha_companion *h, struct strbuf *out)
{
    metrics_family(out, "sluice_ha_probe_total", "counter",
                   "VIP probes ended, by result (ok, refused, timeout, error) and path (us: through this node, "
                   "elsewhere, unknown)");
    for (size_t i = 0; i < h->n_probes; i++) {
        const struct ha_probe_vip *p = h->probes[i];
        const struct probe_stats *s = probe_target_stats(p->t);
        char ip[64], port[8];
        vip_ip_string(&p->ip, ip, sizeof ip);
        snprintf(port, sizeof port, "%u", p->port);
        for (int o = 0; o < PROBE_OUTCOMES; o++)
            for (int q = 0; q < PROBE_PATHS; q++) {
                if (o == PROBE_ERROR && q != PROBE_PATH_UNKNOWN)
                    continue;   /* an error is always of path unknown */
                const struct metric_label l[4] = { { "address", ip }, { "port", port },
                                                   { "result", probe_outcome_name((enum probe_outcome)o) },
                                                   { "path", probe_path_name((enum probe_path)q) } };
                metrics_sample(out, "sluice_ha_probe_total", l, 4, s->ended[o][q]);
            }
    }
    metrics_family(out, "sluice_ha_probe_state", "gauge",
                   "1 for the probe's current state of the VIP port (serving, withdrawn, rechecking), 0 for the "
                   "others");
    for (size_t i = 0; i < h->n_probes; i++) {
        const struct ha_probe_vip *p = h->probes[i];
        char ip[64], port[8];
        vip_ip_string(&p->ip, ip, sizeof ip);
        snprintf(port, sizeof port, "%u", p->port);
        enum probe_fsm_state now = probe_target_state(p->t);
        for (int st = PROBE_SERVING; st <= PROBE_RECHECKING; st++) {
            const struct metric_label l[3] = { { "address", ip }, { "port", port },
                                               { "state", probe_fsm_state_name((enum probe_fsm_state)st) } };
            metrics_sample(out, "sluice_ha_probe_state", l, 3, (int)now == st);
        }
    }
}
