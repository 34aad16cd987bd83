/* The HA companion on the daemon's admin site:
 *
 *   GET  /api/ha           node, zone, priority, BIRD, sessions, what is
 *                          announced and what is withdrawn (and why), drained
 *   POST /api/ha/drain     withdraw this node's VIPs and stand-ins
 *   POST /api/ha/undrain   announce them again
 *   POST /api/ha/preempt   ha.preempt false: drop every hold, announce with
 *                          this node's own priority now (ha_preempt_force)
 *
 * and the families sluice_ha_announced{address},
 * sluice_ha_priority{address,neighbor,state}, sluice_ha_bgp_session_up
 * {neighbor}, sluice_ha_bfd_session_up{neighbor} and
 * sluice_ha_withdrawals_total{reason}, and ha.probe's
 * sluice_ha_probe_total{address,port,result,path} and
 * sluice_ha_probe_state{address,port,state} (ha_probes.c). docs/admin-api.md
 * has them all.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/admin.h"
#include "core/log.h"
#include "core/metrics.h"
#include "ha/ha_daemon.h"

/* "too few healthy (0/2)", "not serving", ...: the reason in words. */
static void reason_text(const struct ha_companion *h, enum ha_withdraw_reason why, const struct vip_verdict *v,
                        char *buf, size_t cap)
{
    switch (why) {
    case HA_WD_TOO_FEW_HEALTHY:
        snprintf(buf, cap, "too few healthy (%u/%u)", v->healthy, v->total);
        break;
    case HA_WD_NOT_SERVING: snprintf(buf, cap, "not serving"); break;
    case HA_WD_NOT_LISTED: snprintf(buf, cap, "not in ha.announce"); break;
    case HA_WD_STOPPING: snprintf(buf, cap, "stopping"); break;
    case HA_WD_PROBE: snprintf(buf, cap, "probe failed"); break;
    default: snprintf(buf, cap, "drained"); break;
    }
}

/* The board's owners of address ip, as a JSON array. */
static json_t *owners_of(const struct ha_companion *h, const struct vip_ip *ip)
{
    json_t *a = json_array();
    const struct vip_board *b = &h->d->vips;
    for (size_t i = 0; a && i < b->n; i++)
        if (vip_ip_equal(&b->entries[i].addr, ip))
            json_array_append_new(a, json_pack("{s:s, s:s, s:i, s:i, s:b}", "owner", b->entries[i].owner, "kind",
                                               vip_kind_name(b->entries[i].kind), "healthy",
                                               (int)b->entries[i].healthy, "total", (int)b->entries[i].total,
                                               "serving", b->entries[i].serving));
    return a;
}

static bool is_announced(const struct ha_companion *h, const struct vip_ip *ip, bool *standin)
{
    for (size_t i = 0; i < h->n_ann; i++) {
        if (vip_ip_equal(&h->ann[i].ip, ip)) {
            *standin = h->ann[i].standin;
            return true;
        }
    }
    return false;
}

static const char *prio_state_name(enum ha_preempt_state st)
{
    switch (st) {
    case HA_PRIO_STARTING: return "starting";
    case HA_PRIO_HELD: return "held";
    case HA_PRIO_STANDIN: return "standin";
    case HA_PRIO_OWN: break;
    }
    return "own";
}

/* The priority address ip goes to neighbor ni with (ni of its family). */
static uint32_t priority_toward(const struct ha_companion *h, size_t ni, const struct vip_ip *ip, bool standin,
                                bool local_only, enum ha_preempt_state *st, const struct ha_hold **hold)
{
    *hold = NULL;
    if (standin) {
        *st = HA_PRIO_STANDIN;
        return h->ha->priority + BIRD_STANDIN_PREPENDS;
    }
    if (local_only) {
        *st = HA_PRIO_OWN;
        return h->ha->priority;
    }
    return ha_preempt_priority(h, ni, ip, st, hold);
}

/* ha.preempt false: per neighbor, the priority and why; *worst the
 * highest of them (the node's own when no neighbor has its family). */
static json_t *routers_json(const struct ha_companion *h, const struct vip_verdict *v, bool standin, uint32_t *worst)
{
    json_t *a = json_array();
    *worst = standin ? h->ha->priority + BIRD_STANDIN_PREPENDS : h->ha->priority;
    bool first = true;
    for (size_t ni = 0; a && ni < h->n_sessions && ni < h->ha->n_neighbors; ni++) {
        if (h->ha->neighbors[ni].address.family != v->addr.family)
            continue;
        enum ha_preempt_state st;
        const struct ha_hold *hd;
        uint32_t prio = priority_toward(h, ni, &v->addr, standin, v->local_only, &st, &hd);
        if (first || prio > *worst)
            *worst = prio;
        first = false;
        char why[160];
        switch (st) {
        case HA_PRIO_STARTING:
            snprintf(why, sizeof why, "starting: the session is new, its routes are not read yet");
            break;
        case HA_PRIO_HELD:
            snprintf(why, sizeof why, "held behind zone priority %u (the router's route has priority %u)", hd->zone,
                     hd->carrier);
            break;
        case HA_PRIO_STANDIN: snprintf(why, sizeof why, "stand-in"); break;
        default:
            snprintf(why, sizeof why, v->local_only ? "own (a local address always goes with its own priority)"
                                                    : "own");
            break;
        }
        json_array_append_new(a, json_pack("{s:s, s:i, s:s, s:s}", "neighbor", h->sessions[ni].neighbor,
                                           "priority", (int)prio, "state", prio_state_name(st), "why", why));
    }
    return a;
}

static json_t *sessions_json(const struct ha_companion *h)
{
    json_t *a = json_array();
    for (size_t i = 0; a && i < h->n_sessions; i++) {
        const struct ha_session *s = &h->sessions[i];
        json_array_append_new(a, json_pack("{s:s, s:s, s:s, s:s, s:b, s:o}", "neighbor", s->neighbor, "protocol",
                                           s->protocol, "state", s->state, "since", s->since, "up", s->up, "bfd",
                                           s->has_bfd ? json_string(s->bfd_state) : json_null()));
    }
    return a;
}

static json_t *status_json(struct ha_companion *h)
{
    const struct cfg_ha *ha = h->ha;
    json_t *announced = json_array(), *withdrawn = json_array();
    struct vip_verdict *v = NULL;
    size_t n = 0;
    if (!announced || !withdrawn || vip_board_verdicts(&h->d->vips, ha->min_healthy, &v, &n) < 0) {
        json_decref(announced);
        json_decref(withdrawn);
        return NULL;
    }
    char ip[64], why[96];
    for (size_t i = 0; i < n; i++) {
        vip_ip_string(&v[i].addr, ip, sizeof ip);
        bool standin = false;
        if (is_announced(h, &v[i].addr, &standin)) {
            /* The prepends BIRD's export filter gives it (bird_conf.h);
             * with ha.preempt false, per router, "priority" the worst. */
            uint32_t prio;
            json_t *routers = routers_json(h, &v[i], standin, &prio);
            json_t *a = json_pack("{s:s, s:o, s:i, s:b}", "address", ip, "owners", owners_of(h, &v[i].addr),
                                  "priority", (int)prio, "standin", standin);
            if (a && !ha->preempt)
                json_object_set_new(a, "routers", routers);
            else
                json_decref(routers);
            json_t *probe = ha_probes_json(h, &v[i].addr);
            if (probe)
                json_object_set_new(a, "probe", probe);
            json_array_append_new(announced, a);
            continue;
        }
        enum ha_withdraw_reason r = ha_verdict_reason(h, &v[i]);
        if (r == HA_WD_COUNT)
            snprintf(why, sizeof why, "not yet on %s (see the log)", ha->interface);
        else
            reason_text(h, r, &v[i], why, sizeof why);
        json_t *w = json_pack("{s:s, s:s, s:o}", "address", ip, "reason", why, "owners", owners_of(h, &v[i].addr));
        json_t *probe = ha_probes_json(h, &v[i].addr);
        if (probe)
            json_object_set_new(w, "probe", probe);
        json_array_append_new(withdrawn, w);
    }
    free(v);
    json_t *doc = json_pack("{s:s, s:s, s:i, s:s, s:i, s:{s:s, s:s, s:b, s:s, s:s, s:I}, s:o, s:o, s:o, s:b, s:b}",
                     "node", h->node, "zone", ha->zone, "priority", (int)ha->priority, "interface", ha->interface,
                     "min_healthy", (int)ha->min_healthy, "bird", "mode",
                     ha->bird.mode == HA_BIRD_MANAGED ? "managed" : "external", "socket", ha->bird.control_socket,
                     "up", h->bird_up, "version", h->bird_version, "error", h->bird_error, "restarts",
                     (json_int_t)h->bird_restarts, "sessions",
                     sessions_json(h), "announced", announced, "withdrawn", withdrawn, "drained", h->drained,
                     "stopping", h->stopped);
    if (doc)
        json_object_set_new(doc, "preempt", json_boolean(ha->preempt));
    if (doc)
        json_object_set_new(doc, "probe", json_pack("{s:b, s:o}", "enabled", ha->probe_enabled, "warning",
                                                    h->probe_warning[0] ? json_string(h->probe_warning)
                                                                        : json_null()));
    return doc;
}

/* A drain or undrain takes no body, or a JSON object (nothing in it is
 * read yet): anything else is refused, so a typo is not taken silently. */
static bool body_ok(const struct admin_request *rq, struct admin_reply *r)
{
    size_t i = 0;
    while (i < rq->body_len && (rq->body[i] == ' ' || rq->body[i] == '\n' || rq->body[i] == '\r' ||
                                rq->body[i] == '\t'))
        i++;
    if (i == rq->body_len)
        return true;
    json_error_t jerr;
    json_t *j = json_loadb(rq->body, rq->body_len, 0, &jerr);
    bool ok = j && json_is_object(j) && json_object_size(j) == 0;
    if (!j)
        admin_reply_error(r, 400, "the body is not JSON: %s (send none, or {})", jerr.text);
    else if (!ok)
        admin_reply_error(r, 400, "the body must be empty or {}: drain, undrain and preempt take no parameters");
    json_decref(j);
    return ok;
}

static void handle(void *arg, const struct admin_request *rq, struct admin_reply *r)
{
    struct ha_companion *h = arg;
    if (rq->n_seg == 0) {
        if (!admin_is_get(rq)) {
            admin_reply_method_not_allowed(r, "GET, HEAD");
            return;
        }
        json_t *doc = status_json(h);
        if (!doc)
            admin_reply_error(r, 500, "out of memory");
        else
            admin_reply_json(r, 200, doc);
        return;
    }
    bool drain = rq->n_seg == 1 && !strcmp(rq->seg[0], "drain");
    bool undrain = rq->n_seg == 1 && !strcmp(rq->seg[0], "undrain");
    bool preempt = rq->n_seg == 1 && !strcmp(rq->seg[0], "preempt");
    if (!drain && !undrain && !preempt) {
        admin_reply_error(r, 404, "no such path (see docs/admin-api.md: /api/ha, /api/ha/drain, /api/ha/undrain, "
                                  "/api/ha/preempt)");
        return;
    }
    if (strcmp(rq->method, "POST") != 0) {
        admin_reply_method_not_allowed(r, "POST");
        return;
    }
    if (!body_ok(rq, r))
        return;
    if (h->stopped) {
        admin_reply_error(r, 409, "stopping: nothing is announced any more");
        return;
    }
    if (preempt) {
        if (h->ha->preempt) {
            admin_reply_error(r, 409, "ha.preempt is true: this node always announces with its own priority");
            return;
        }
        size_t held = 0;
        for (size_t i = 0; i < h->n_sessions; i++)
            held += h->sessions[i].n_holds;
        log_info("admin API: ha preempt");
        ha_preempt_force(h);
        admin_reply_json(r, 200, json_pack("{s:i, s:i, s:i}", "released", (int)held, "priority",
                                           (int)h->ha->priority, "no_hold_ms", HA_PREEMPT_FORCE_MS));
        return;
    }
    bool was = h->drained;
    log_info("admin API: ha %s", drain ? "drain" : "undrain");
    ha_set_drained(h, drain);
    admin_reply_json(r, 200, json_pack("{s:b, s:b}", "drained", h->drained, "changed", was != h->drained));
}

/* ---- metrics ---- */

static void collect(void *arg, struct strbuf *out)
{
    struct ha_companion *h = arg;
    struct vip_verdict *v = NULL;
    size_t n = 0;
    if (vip_board_verdicts(&h->d->vips, h->ha->min_healthy, &v, &n) < 0)
        return;
    metrics_family(out, "sluice_ha_announced", "gauge",
                   "1 while the address is announced (on the HA device), 0 while it is withdrawn");
    char ip[64];
    for (size_t i = 0; i < n; i++) {
        bool standin;
        vip_ip_string(&v[i].addr, ip, sizeof ip);
        const struct metric_label l = { "address", ip };
        metrics_sample(out, "sluice_ha_announced", &l, 1, is_announced(h, &v[i].addr, &standin));
    }
    metrics_family(out, "sluice_ha_priority", "gauge",
                   "The priority (AS-path prepends) an announced address goes to the neighbor with; state own, "
                   "standin, or with ha.preempt false starting or held");
    for (size_t i = 0; i < n; i++) {
        bool standin;
        if (!is_announced(h, &v[i].addr, &standin))
            continue;
        vip_ip_string(&v[i].addr, ip, sizeof ip);
        for (size_t ni = 0; ni < h->n_sessions && ni < h->ha->n_neighbors; ni++) {
            if (h->ha->neighbors[ni].address.family != v[i].addr.family)
                continue;
            enum ha_preempt_state st;
            const struct ha_hold *hd;
            uint32_t prio = priority_toward(h, ni, &v[i].addr, standin, v[i].local_only, &st, &hd);
            const struct metric_label l[3] = {
                { "address", ip }, { "neighbor", h->sessions[ni].neighbor }, { "state", prio_state_name(st) }
            };
            metrics_sample(out, "sluice_ha_priority", l, 3, prio);
        }
    }
    free(v);
    metrics_family(out, "sluice_ha_bgp_session_up", "gauge", "1 while the BGP session with the neighbor is established");
    for (size_t i = 0; i < h->n_sessions; i++) {
        const struct metric_label l = { "neighbor", h->sessions[i].neighbor };
        metrics_sample(out, "sluice_ha_bgp_session_up", &l, 1, h->sessions[i].up);
    }
    if (h->ha->bfd) {
        metrics_family(out, "sluice_ha_bfd_session_up", "gauge", "1 while the BFD session with the neighbor is up");
        for (size_t i = 0; i < h->n_sessions; i++) {
            const struct metric_label l = { "neighbor", h->sessions[i].neighbor };
            metrics_sample(out, "sluice_ha_bfd_session_up", &l, 1, h->sessions[i].bfd_up);
        }
    }
    const char *reasons[HA_WD_COUNT];
    for (int r = 0; r < HA_WD_COUNT; r++)
        reasons[r] = ha_withdraw_reason_label((enum ha_withdraw_reason)r);
    metrics_by_label(out, "sluice_ha_withdrawals_total", "counter", "Addresses withdrawn, by reason", "reason",
                     reasons, h->withdrawals, HA_WD_COUNT);
    ha_probes_metrics(h, out);
}

int ha_admin_mount(struct ha_companion *h)
{
    if (admin_mount(&h->d->site, NULL, "/api/ha", handle, h) < 0)
        return -1;
    return metrics_register(&h->d->site.metrics, collect, h);
}
