/* ha.preempt false: a node that comes back stays behind a worse zone that
 * carries its VIPs. See ha_daemon.h ("ha_preempt.c") and docs/ha.md,
 * "Preempt or not". */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/evloop.h"
#include "core/log.h"
#include "ha/ha_daemon.h"

bool ha_preempt_carrier(const struct birdc_route *r, uint32_t asn, uint32_t *priority, uint32_t *zone)
{
    uint32_t count = 0;
    for (size_t i = 0; i < r->as_path_len; i++)
        count += r->as_path[i] == asn;
    if (!count)
        return false;
    /* BGP adds the node's ASN once on export; the rest are prepends. A path
     * cut short (longer than BIRDC_MAX_AS_PATH) only undercounts a route
     * with dozens of prepends, a stand-in's or a starting node's. */
    *priority = count - 1;
    *zone = *priority;
    for (size_t i = 0; i < r->n_community; i++) {
        uint32_t v = r->community[i][1];
        if (r->community[i][0] == asn && v >= BIRD_COMMUNITY_ZONE && v <= BIRD_COMMUNITY_ZONE + HA_PRIORITY_MAX)
            *zone = v - BIRD_COMMUNITY_ZONE;
    }
    for (size_t i = 0; i < r->n_large_community; i++) {
        uint32_t v = r->large_community[i][1];
        if (r->large_community[i][0] == asn && r->large_community[i][2] == 0 && v >= BIRD_COMMUNITY_ZONE &&
            v <= BIRD_COMMUNITY_ZONE + HA_PRIORITY_MAX)
            *zone = v - BIRD_COMMUNITY_ZONE;
    }
    return true;
}

/* "10.0.0.1/32" -> 10.0.0.1; false for anything else. */
static bool host_of(const char *prefix, struct vip_ip *ip)
{
    char addr[INET6_ADDRSTRLEN];
    const char *slash = strchr(prefix, '/');
    size_t len = slash ? (size_t)(slash - prefix) : 0;
    if (!slash || len >= sizeof addr)
        return false;
    memcpy(addr, prefix, len);
    addr[len] = '\0';
    if (vip_ip_parse(addr, ip) < 0)
        return false;
    return !strcmp(slash + 1, ip->family == AF_INET ? "32" : "128");
}

static struct ha_hold *find_hold(const struct ha_session *s, const struct vip_ip *ip)
{
    for (size_t i = 0; i < s->n_holds; i++)
        if (vip_ip_equal(&s->holds[i].ip, ip))
            return &s->holds[i];
    return NULL;
}

static struct ha_hold *add_hold(struct ha_session *s)
{
    if (s->n_holds == s->cap_holds) {
        size_t cap = s->cap_holds ? 2 * s->cap_holds : 8;
        struct ha_hold *a = realloc(s->holds, cap * sizeof *a);
        if (!a)
            return NULL;
        s->holds = a;
        s->cap_holds = cap;
    }
    struct ha_hold *h = &s->holds[s->n_holds++];
    memset(h, 0, sizeof *h);
    return h;
}

void ha_preempt_clear(struct ha_session *s)
{
    free(s->holds);
    s->holds = NULL;
    s->n_holds = s->cap_holds = 0;
}

/* Which hold the route r asks for: false when none (not a group route, a
 * starting node's or a stand-in, or a zone no worse than this node's). */
static bool wants_hold(const struct ha_companion *h, const struct birdc_route *r, uint32_t *prio, uint32_t *zone,
                       uint32_t *carrier)
{
    if (!ha_preempt_carrier(r, h->ha->asn, carrier, zone))
        return false;
    if (*carrier > BIRD_HELD_PRIORITY_MAX || *zone <= h->ha->priority)
        return false;
    *prio = *carrier + 1 > BIRD_HELD_PRIORITY_MAX ? BIRD_HELD_PRIORITY_MAX : *carrier + 1;
    return true;
}

bool ha_preempt_observe(struct ha_companion *h, size_t ni, const struct birdc_route *r, size_t n, uint64_t now)
{
    struct ha_session *s = &h->sessions[ni];
    bool changed = false, forced = now < h->preempt_forced_until;
    for (size_t i = 0; i < s->n_holds; i++)
        s->holds[i].clear++;   /* a route below resets it */
    char ip[64];
    for (size_t i = 0; i < n; i++) {
        struct vip_ip addr;
        uint32_t prio, zone, carrier;
        if (!host_of(r[i].prefix, &addr) || !wants_hold(h, &r[i], &prio, &zone, &carrier))
            continue;
        vip_ip_string(&addr, ip, sizeof ip);
        struct ha_hold *hd = find_hold(s, &addr);
        if (!hd) {
            if (forced)
                continue;
            hd = add_hold(s);
            if (!hd) {
                log_error("ha: out of memory: %s is not held back", ip);
                continue;
            }
            hd->ip = addr;
            changed = true;
            log_info("ha: %s: the router %s uses zone priority %u's route (priority %u): this node (priority %u, "
                     "ha.preempt false) stays behind it with priority %u", ip, s->neighbor, zone, carrier,
                     h->ha->priority, prio);
        } else if (hd->priority != prio) {
            changed = true;
            log_info("ha: %s: the router %s now uses zone priority %u's route (priority %u): held with priority %u",
                     ip, s->neighbor, zone, carrier, prio);
        }
        hd->priority = prio;
        hd->zone = zone;
        hd->carrier = carrier;
        hd->clear = 0;
    }
    for (size_t i = 0; i < s->n_holds;) {
        struct ha_hold *hd = &s->holds[i];
        if (hd->clear < HA_PREEMPT_RELEASE_POLLS) {
            i++;
            continue;
        }
        vip_ip_string(&hd->ip, ip, sizeof ip);
        log_info("ha: %s: no worse zone carries it through %s any more: back to this node's priority %u", ip,
                 s->neighbor, h->ha->priority);
        s->holds[i] = s->holds[--s->n_holds];
        changed = true;
    }
    return changed;
}

/* Settle or unsettle session s from what the last poll said. Returns
 * true when its settled state changed. */
static bool settle(struct ha_companion *h, struct ha_session *s, uint64_t now)
{
    bool was = s->settled;
    if (!s->up) {
        if (s->polls_up || s->settled)
            log_info("ha: BGP session with %s is down: when it is back, VIPs go to it as a starting node's "
                     "(priority %u) until its routes are read (ha.preempt false)", s->neighbor,
                     BIRD_STARTING_PRIORITY);
        s->polls_up = 0;
        s->settled = false;
        s->up_since[0] = '\0';
        ha_preempt_clear(s);
        return was;
    }
    if (!s->polls_up || strcmp(s->since, s->up_since) != 0) {
        /* A new session: BIRD announced with what the filter says now. */
        if (s->settled)
            log_info("ha: BGP session with %s came back (since %s): starting again", s->neighbor, s->since);
        snprintf(s->up_since, sizeof s->up_since, "%s", s->since);
        s->polls_up = 0;
        s->settled = false;
        ha_preempt_clear(s);
    }
    s->polls_up++;
    if (!s->settled && (s->polls_up >= HA_PREEMPT_SETTLE_POLLS || now < h->preempt_forced_until)) {
        s->settled = true;
        log_info("ha: BGP session with %s: its routes are read (%zu VIP%s held behind a worse zone): VIPs go out "
                 "with their priority", s->neighbor, s->n_holds, s->n_holds == 1 ? "" : "s");
    }
    return was != s->settled;
}

void ha_preempt_poll(struct ha_companion *h)
{
    if (h->ha->preempt || h->stopped)
        return;
    uint64_t now = ev_clock_ms();
    bool changed = false;
    for (size_t i = 0; i < h->n_sessions; i++) {
        struct ha_session *s = &h->sessions[i];
        changed |= settle(h, s, now);
        if (!s->up || !h->bc_open)
            continue;
        struct birdc_route *r = NULL;
        size_t n = 0;
        char err[256];
        if (birdc_show_import_routes(&h->bc, s->protocol, h->ha->neighbors[i].address.family == AF_INET6,
                                     h->ha->asn, &r, &n, err, sizeof err) < 0) {
            if (strcmp(err, s->preempt_error) != 0)
                log_warn("ha: cannot read what %s sends: %s (its holds stay as they are)", s->neighbor, err);
            snprintf(s->preempt_error, sizeof s->preempt_error, "%s", err);
            if (h->bc.fd < 0)
                h->bc_open = false;   /* birdc_command closed it: the next poll opens it again */
            continue;
        }
        s->preempt_error[0] = '\0';
        changed |= ha_preempt_observe(h, i, r, n, now);
        free(r);
    }
    if (!changed)
        return;
    char err[512];
    if (ha_apply_bird(h, err, sizeof err) < 0)
        log_error("ha: BIRD: %s; the priorities go out at the next try", err);
}

uint32_t ha_preempt_priority(const struct ha_companion *h, size_t ni, const struct vip_ip *ip,
                             enum ha_preempt_state *state, const struct ha_hold **hold)
{
    const struct ha_session *s = &h->sessions[ni];
    const struct ha_hold *hd = h->ha->preempt ? NULL : find_hold(s, ip);
    if (hold)
        *hold = hd;
    if (!h->ha->preempt && !s->settled) {
        *state = HA_PRIO_STARTING;
        return BIRD_STARTING_PRIORITY;
    }
    if (hd) {
        *state = HA_PRIO_HELD;
        return hd->priority;
    }
    *state = HA_PRIO_OWN;
    return h->ha->priority;
}

int ha_preempt_overrides(const struct ha_companion *h, struct bird_export_priority **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    if (h->ha->preempt)
        return 0;
    struct vip_verdict *v;
    size_t nv;
    if (vip_board_verdicts(&h->d->vips, h->ha->min_healthy, &v, &nv) < 0)
        return -1;
    struct bird_export_priority *arr = NULL;
    size_t k = 0, cap = 0;
    for (size_t i = 0; i < nv; i++) {
        /* Service VIPs only: this node's FullNAT local addresses are its
         * own everywhere, and stand-ins have their own long path. */
        if (v[i].local_only || v[i].standin)
            continue;
        for (size_t ni = 0; ni < h->n_sessions && ni < h->ha->n_neighbors; ni++) {
            if (h->ha->neighbors[ni].address.family != v[i].addr.family)
                continue;
            enum ha_preempt_state st;
            uint32_t prio = ha_preempt_priority(h, ni, &v[i].addr, &st, NULL);
            if (prio == h->ha->priority)
                continue;
            if (k == cap) {
                size_t c = cap ? 2 * cap : 16;
                struct bird_export_priority *a = realloc(arr, c * sizeof *a);
                if (!a) {
                    free(arr);
                    free(v);
                    return -1;
                }
                arr = a;
                cap = c;
            }
            struct bird_export_priority *e = &arr[k++];
            memset(e, 0, sizeof *e);
            e->neighbor = ni;
            e->priority = prio;
            e->ip.family = v[i].addr.family;
            if (e->ip.family == AF_INET)
                e->ip.u.v4 = v[i].addr.v4;
            else
                e->ip.u.v6 = v[i].addr.v6;
            vip_ip_string(&v[i].addr, e->ip.text, sizeof e->ip.text);
        }
    }
    free(v);
    *out = arr;
    *n = k;
    return 0;
}

void ha_preempt_force(struct ha_companion *h)
{
    h->preempt_forced_until = ev_clock_ms() + HA_PREEMPT_FORCE_MS;
    size_t released = 0;
    for (size_t i = 0; i < h->n_sessions; i++) {
        struct ha_session *s = &h->sessions[i];
        released += s->n_holds;
        ha_preempt_clear(s);
        if (s->up) {
            s->settled = true;
            if (!s->up_since[0])
                snprintf(s->up_since, sizeof s->up_since, "%s", s->since);
            if (s->polls_up < HA_PREEMPT_SETTLE_POLLS)
                s->polls_up = HA_PREEMPT_SETTLE_POLLS;
        }
    }
    log_info("ha: preempt forced: %zu hold%s dropped, every VIP goes out with this node's priority %u (no new hold "
             "for %d ms)", released, released == 1 ? "" : "s", h->ha->priority, HA_PREEMPT_FORCE_MS);
    char err[512];
    if (ha_apply_bird(h, err, sizeof err) < 0)
        log_error("ha: BIRD: %s", err);
}
