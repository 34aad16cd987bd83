/* See ha_daemon.h. */
#include "ha/ha_daemon.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "ha/bird_proc.h"

const char *ha_withdraw_reason_label(enum ha_withdraw_reason r)
{
    switch (r) {
    case HA_WD_DRAINED: return "drained";
    case HA_WD_NOT_SERVING: return "not_serving";
    case HA_WD_TOO_FEW_HEALTHY: return "too_few_healthy";
    case HA_WD_NOT_LISTED: return "not_listed";
    case HA_WD_STOPPING: return "stopping";
    case HA_WD_PROBE: return "probe";
    case HA_WD_COUNT: break;
    }
    return "?";
}

static bool listed(const struct cfg_ha *ha, const struct vip_ip *ip)
{
    struct ha_ip hip = { .family = ip->family };
    if (ip->family == AF_INET)
        hip.u.v4 = ip->v4;
    else
        hip.u.v6 = ip->v6;
    return ha_conf_may_announce(ha, &hip);
}

enum ha_withdraw_reason ha_verdict_reason(const struct ha_companion *h, const struct vip_verdict *v)
{
    if (h->stopped)
        return HA_WD_STOPPING;
    if (v->reason == VIP_NOT_SERVING)
        return HA_WD_NOT_SERVING;
    if (v->reason == VIP_TOO_FEW_HEALTHY)
        return HA_WD_TOO_FEW_HEALTHY;
    if (!listed(h->ha, &v->addr))
        return HA_WD_NOT_LISTED;
    /* A drain takes the node out of new traffic: its VIPs and the peers'
     * addresses it stands in for. Its own FullNAT local addresses stay:
     * the replies of the flows it still holds come back to it. */
    if (h->drained && !v->local_only)
        return HA_WD_DRAINED;
    if (!v->standin && ha_probe_withdrawn(h, &v->addr))
        return HA_WD_PROBE;
    return HA_WD_COUNT;
}

/* ---- the announced set ---- */

static struct ha_announced *find_announced(struct ha_companion *h, const struct vip_ip *ip)
{
    for (size_t i = 0; i < h->n_ann; i++)
        if (vip_ip_equal(&h->ann[i].ip, ip))
            return &h->ann[i];
    return NULL;
}

static struct ha_announcer *device_of(struct ha_companion *h, bool standin)
{
    return standin ? &h->standin : &h->own;
}

/* Take address i off its device, counted under why (HA_WD_COUNT: not
 * counted, it is announced again at once from the other device). */
static void withdraw_one(struct ha_companion *h, size_t i, enum ha_withdraw_reason why, const char *detail)
{
    char ip[64], err[256];
    struct ha_announced a = h->ann[i];
    vip_ip_string(&a.ip, ip, sizeof ip);
    if (ha_announcer_del(device_of(h, a.standin), &a.ip, err, sizeof err) < 0) {
        log_error("ha: %s", err);
        return;   /* still on the device: it stays in the set */
    }
    h->ann[i] = h->ann[--h->n_ann];
    if (why == HA_WD_COUNT) {   /* not a withdrawal: it moves to the other device */
        log_info("ha: moving %s to %s%s", ip, a.standin ? h->own.name : h->standin.name, detail);
        return;
    }
    h->withdrawals[why]++;
    log_info("ha: withdrew %s%s: %s%s", ip, a.standin ? " (stand-in)" : "", ha_withdraw_reason_label(why), detail);
}

static void announce_one(struct ha_companion *h, const struct vip_verdict *v)
{
    char ip[64], err[256];
    vip_ip_string(&v->addr, ip, sizeof ip);
    if (h->n_ann == h->cap_ann) {
        size_t cap = h->cap_ann ? 2 * h->cap_ann : 8;
        struct ha_announced *a = realloc(h->ann, cap * sizeof *a);
        if (!a) {
            log_error("ha: out of memory: %s not announced", ip);
            return;
        }
        h->ann = a;
        h->cap_ann = cap;
    }
    if (ha_announcer_add(device_of(h, v->standin), &v->addr, err, sizeof err) < 0) {
        log_error("ha: %s", err);
        return;
    }
    h->ann[h->n_ann++] = (struct ha_announced){ v->addr, v->standin };
    log_info("ha: announcing %s%s (%s)", ip, v->standin ? " as a stand-in" : "", v->owners);
}

void ha_reconcile(struct ha_companion *h)
{
    if (h->stopped)
        return;
    struct vip_verdict *v;
    size_t n;
    if (vip_board_verdicts(&h->d->vips, h->ha->min_healthy, &v, &n) < 0) {
        log_error("ha: out of memory: the announced addresses stay as they are");
        return;
    }
    /* Withdraw first what must go (or changes device). */
    for (size_t i = 0; i < h->n_ann;) {
        const struct vip_verdict *mine = NULL;
        for (size_t k = 0; k < n && !mine; k++)
            if (vip_ip_equal(&v[k].addr, &h->ann[i].ip))
                mine = &v[k];
        enum ha_withdraw_reason why = mine ? ha_verdict_reason(h, mine) : HA_WD_NOT_SERVING;
        size_t before = h->n_ann;
        if (why != HA_WD_COUNT) {
            char detail[64] = "";
            if (why == HA_WD_TOO_FEW_HEALTHY)
                snprintf(detail, sizeof detail, " (%u/%u healthy, ha.min_healthy %u)", mine->healthy, mine->total,
                         h->ha->min_healthy);
            else if (!mine)
                snprintf(detail, sizeof detail, " (no longer served)");
            else if (why == HA_WD_PROBE)
                snprintf(detail, sizeof detail, " (probe failed; back on trial after ha.probe.hold)");
            withdraw_one(h, i, why, detail);
        } else if (mine->standin != h->ann[i].standin) {
            withdraw_one(h, i, HA_WD_COUNT, mine->standin ? " (now only a stand-in)" : " (now this node's own)");
        }
        if (h->n_ann == before)
            i++;
    }
    /* ha.preempt false: BIRD's export filters list every service VIP with
     * its priority (a new one goes out as a starting node's, or held)
     * before it is on the device, or BIRD would send it with the node's
     * own priority first. */
    if (!h->ha->preempt) {
        char err[512];
        if (ha_apply_bird(h, err, sizeof err) < 0)
            log_error("ha: BIRD: %s", err);
    }
    for (size_t k = 0; k < n; k++)
        if (ha_verdict_reason(h, &v[k]) == HA_WD_COUNT && !find_announced(h, &v[k].addr))
            announce_one(h, &v[k]);
    ha_probes_sync(h, v, n);
    free(v);
}

static void on_board(struct vip_board *b, void *arg)
{
    ha_reconcile(arg);
}

void ha_set_drained(struct ha_companion *h, bool drained)
{
    if (h->drained == drained)
        return;
    h->drained = drained;
    log_info("ha: %s", drained ? "drained: withdrawing this node's VIPs and stand-ins (its own FullNAT local "
                                 "addresses stay)" : "undrained: announcing again");
    ha_reconcile(h);
}

/* ---- BIRD ---- */

/* Write BIRD's configuration and make BIRD run it (start it, adopt the
 * running one, or reconfigure the operator's). */
int ha_apply_bird(struct ha_companion *h, char *err, size_t errlen)
{
    struct bird_export_priority *ov = NULL;
    size_t n_ov = 0;
    if (ha_preempt_overrides(h, &ov, &n_ov) < 0) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    char *text = bird_proc_render_export(h->ha, h->cfg->path, ov, n_ov, err, errlen);
    free(ov);
    if (!text)
        return -1;
    if (h->bird_text && !strcmp(text, h->bird_text)) {
        free(text);
        return 0;   /* nothing changed for BIRD */
    }
    if (bird_proc_apply_text(h->ha, text, err, errlen) < 0) {
        free(text);
        return -1;
    }
    free(h->bird_text);
    h->bird_text = text;
    return 0;
}

static struct ha_session *session_of(struct ha_companion *h, const char *protocol)
{
    for (size_t i = 0; i < h->n_sessions; i++)
        if (!strcmp(h->sessions[i].protocol, protocol))
            return &h->sessions[i];
    return NULL;
}

/* The sessions BIRD should have: one per neighbor, unknown until asked
 * (a neighbor still configured keeps what was known of it, its
 * ha.preempt holds included). */
static void reset_sessions(struct ha_companion *h)
{
    struct ha_session old[HA_MAX_NEIGHBORS];
    bool kept[HA_MAX_NEIGHBORS] = { false };
    size_t n_old = h->n_sessions;
    memcpy(old, h->sessions, n_old * sizeof *old);
    h->n_sessions = 0;
    for (size_t i = 0; i < h->ha->n_neighbors; i++) {
        struct ha_session *s = &h->sessions[h->n_sessions++];
        memset(s, 0, sizeof *s);
        snprintf(s->neighbor, sizeof s->neighbor, "%s", h->ha->neighbors[i].address.text);
        bird_conf_bgp_name(&h->ha->neighbors[i], s->protocol, sizeof s->protocol);
        snprintf(s->state, sizeof s->state, "unknown");
        for (size_t k = 0; k < n_old; k++) {
            if (!kept[k] && !strcmp(old[k].protocol, s->protocol)) {
                *s = old[k];
                kept[k] = true;
                break;
            }
        }
    }
    for (size_t k = 0; k < n_old; k++)
        if (!kept[k])
            ha_preempt_clear(&old[k]);
}

static void close_bird(struct ha_companion *h)
{
    if (h->bc_open)
        birdc_close(&h->bc);
    h->bc_open = false;
}

static void bird_down(struct ha_companion *h, const char *why)
{
    close_bird(h);
    if (h->bird_up || !h->bird_error[0])
        log_warn("ha: BIRD does not answer on %s: %s", h->ha->bird.control_socket, why);
    h->bird_up = false;
    snprintf(h->bird_error, sizeof h->bird_error, "%s", why);
    for (size_t i = 0; i < h->n_sessions; i++) {
        snprintf(h->sessions[i].state, sizeof h->sessions[i].state, "unknown");
        h->sessions[i].up = h->sessions[i].bfd_up = false;
    }
}

static void update_bgp(struct ha_companion *h, const struct birdc_protocol *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        struct ha_session *s = session_of(h, p[i].name);
        if (!s)
            continue;
        /* BIRD's info column: the BGP state ("Established", "Active"),
         * then its last error, if any. */
        char state[32];
        snprintf(state, sizeof state, "%s", p[i].info_state[0] ? p[i].info_state : p[i].state);
        bool up = !strcmp(p[i].state, "up");
        if (strcmp(state, s->state) != 0)
            log_info("ha: BGP session with %s: %s%s%s%s%s", s->neighbor, state, up ? "" : " (not established",
                     up || !p[i].info_reason[0] ? "" : ": ", up ? "" : p[i].info_reason, up ? "" : ")");
        snprintf(s->state, sizeof s->state, "%s", state);
        snprintf(s->since, sizeof s->since, "%s", p[i].since);
        s->up = up;
    }
}

static void update_bfd(struct ha_companion *h, const struct birdc_bfd_session *b, size_t n)
{
    for (size_t i = 0; i < h->n_sessions; i++) {
        struct ha_session *s = &h->sessions[i];
        const struct birdc_bfd_session *found = NULL;
        for (size_t k = 0; k < n && !found; k++)
            if (!strcmp(b[k].peer, s->neighbor))
                found = &b[k];
        const char *state = found ? found->state : "";
        if (strcmp(state, s->bfd_state) != 0)
            log_info("ha: BFD session with %s: %s", s->neighbor, found ? state : "none");
        s->has_bfd = found != NULL;
        snprintf(s->bfd_state, sizeof s->bfd_state, "%s", state);
        s->bfd_up = found && !strcmp(state, "Up");
    }
}

/* Managed mode: BIRD is ours to keep running. One that is gone (killed,
 * crashed, OOM) took every BGP session with it and the routers withdrew
 * all of this node's routes: start it again (at most every
 * BIRD_RESTART_GAP_MS), on the file as last written. One that is alive
 * but does not answer is left alone (see bird_proc_alive). External mode:
 * the operator's BIRD, the operator's to restart. */
static void restart_bird_if_dead(struct ha_companion *h)
{
    uint64_t now = ev_clock_ms();
    if (h->ha->bird.mode != HA_BIRD_MANAGED || h->stopped || bird_proc_alive(h->ha) ||
        (h->bird_restart_tried_ms && now - h->bird_restart_tried_ms < BIRD_RESTART_GAP_MS))
        return;
    h->bird_restart_tried_ms = now;
    char err[512];
    log_warn("ha: the BIRD this node manages is not running (%s): starting it again", h->ha->bird.pid_file);
    int rc = h->bird_text ? bird_proc_apply_text(h->ha, h->bird_text, err, sizeof err)
                          : bird_proc_apply(h->ha, h->cfg->path, err, sizeof err);
    if (rc < 0) {
        log_error("ha: cannot start BIRD again: %s (next try in %d s)", err, BIRD_RESTART_GAP_MS / 1000);
        return;
    }
    h->bird_restarts++;
}

/* Ask BIRD for its protocols and BFD sessions. */
static void poll_bird(struct ha_companion *h)
{
    char err[256];
    if (!h->bc_open) {
        if (birdc_open(&h->bc, h->ha->bird.control_socket, BIRDC_DEFAULT_TIMEOUT_MS, err, sizeof err) < 0) {
            bird_down(h, err);
            restart_bird_if_dead(h);
            return;
        }
        h->bc_open = true;
        snprintf(h->bird_version, sizeof h->bird_version, "%s", h->bc.version);
    }
    struct birdc_protocol *p = NULL;
    size_t np = 0;
    if (birdc_show_protocols(&h->bc, &p, &np, err, sizeof err) < 0) {
        bird_down(h, err);
        return;
    }
    update_bgp(h, p, np);
    free(p);
    if (h->ha->bfd) {
        struct birdc_bfd_session *b = NULL;
        size_t nb = 0;
        if (birdc_show_bfd_sessions(&h->bc, &b, &nb, err, sizeof err) < 0) {
            bird_down(h, err);
            return;
        }
        update_bfd(h, b, nb);
        free(b);
    }
    if (!h->bird_up)
        log_info("ha: BIRD answers on %s (%s)", h->ha->bird.control_socket, h->bird_version);
    h->bird_up = true;
    h->bird_error[0] = '\0';
    ha_preempt_poll(h);
}

static void on_poll(struct ev_loop *loop, struct ev_timer *t)
{
    struct ha_companion *h = t->data;
    if (h->stopped)
        return;
    poll_bird(h);
    ev_timer_start(loop, t, HA_POLL_MS);
}

/* ---- the devices ---- */

static int open_devices(struct ha_companion *h, char *err, size_t errlen)
{
    char standin[IFNAMSIZ];
    bird_conf_standin_ifname(h->ha, standin, sizeof standin);
    if (ha_announcer_open(&h->own, h->ha->interface, err, errlen) < 0)
        return -1;
    if (ha_announcer_open(&h->standin, standin, err, errlen) < 0) {
        ha_announcer_close(&h->own);
        return -1;
    }
    return 0;
}

/* Close both devices: everything on them is withdrawn at once. */
static size_t close_devices(struct ha_companion *h, enum ha_withdraw_reason why)
{
    size_t n = h->n_ann;
    h->withdrawals[why] += n;
    h->n_ann = 0;
    ha_announcer_close(&h->own);
    ha_announcer_close(&h->standin);
    return n;
}

/* ---- the companion's life ---- */

static void ha_stopping(void *arg)
{
    struct ha_companion *h = arg;
    if (h->stopped)
        return;
    h->stopped = true;
    ev_timer_stop(h->d->loop, &h->poll);
    ha_probes_stop(h);
    size_t n = close_devices(h, HA_WD_STOPPING);
    log_info("ha: stopping: withdrew %zu address%s (closed %s and %s%s) before the stop begins", n,
             n == 1 ? "" : "es", h->ha->interface, h->ha->interface, HA_STANDIN_SUFFIX);
}

static void ha_reloaded(void *arg, const struct sl_config *cfg)
{
    struct ha_companion *h = arg;
    const struct cfg_ha *next = ha_conf(cfg);
    if (h->stopped)
        return;
    if (!next->present) {
        log_warn("ha: the ha: section is gone from %s: withdrawing everything; HA stays off until the next "
                 "restart", cfg->path);
        ha_stopping(h);
        return;
    }
    bool new_devices = strcmp(next->interface, h->ha->interface) != 0;
    /* ha.preempt changed: BIRD restarts the sessions (the import table
     * comes or goes); what was read of the routers is forgotten. */
    if (next->preempt != h->ha->preempt) {
        log_info("ha: ha.preempt is %s now: the BGP sessions restart", next->preempt ? "true" : "false");
        for (size_t i = 0; i < h->n_sessions; i++) {
            ha_preempt_clear(&h->sessions[i]);
            h->sessions[i].settled = false;
            h->sessions[i].polls_up = 0;
        }
    }
    /* The probe targets point into the old configuration's probe
     * settings: they start again with the new ones. */
    ha_probes_stop(h);
    h->cfg = cfg;
    h->ha = next;
    if (ha_probes_start(h) < 0)
        log_error("ha: out of memory: VIP probing is off until the next reload");
    reset_sessions(h);
    if (new_devices) {
        close_devices(h, HA_WD_NOT_SERVING);
        char err[256];
        if (open_devices(h, err, sizeof err) < 0) {
            log_error("ha: %s: nothing is announced until it is fixed", err);
        } else {
            log_info("ha: announcing on %s now (ha.interface changed)", h->ha->interface);
        }
    }
    char err[512];
    if (ha_apply_bird(h, err, sizeof err) < 0)
        log_error("ha: BIRD: %s; BIRD keeps its previous configuration", err);
    ha_reconcile(h);
}

static void ha_fini(void *arg)
{
    struct ha_companion *h = arg;
    vip_board_unsubscribe(&h->d->vips, on_board, h);
    if (h->d->loop)
        ev_timer_stop(h->d->loop, &h->poll);
    close_bird(h);
    ha_probes_stop(h);
    close_devices(h, HA_WD_STOPPING);
    for (size_t i = 0; i < h->n_sessions; i++)
        ha_preempt_clear(&h->sessions[i]);
    free(h->ann);
    free(h->bird_text);
    free(h);
}

static const struct daemon_companion_ops ha_companion_ops = {
    .name = "ha", .reloaded = ha_reloaded, .stopping = ha_stopping, .fini = ha_fini,
};

/* Without an ha: section: nothing to do but say, on a reload that adds
 * one, that it needs a restart. */
static void idle_reloaded(void *arg, const struct sl_config *cfg)
{
    static bool said;
    if (ha_conf(cfg)->present && !said) {
        log_warn("ha: %s now has an ha: section: HA starts at the next restart", cfg->path);
        said = true;
    }
}

static const struct daemon_companion_ops idle_ops = { .name = "ha", .reloaded = idle_reloaded };

int ha_attach(struct daemon *d, const struct sl_config *cfg, char *err, size_t errlen)
{
    const struct cfg_ha *ha = ha_conf(cfg);
    if (!ha->present)
        return daemon_add_companion(d, &idle_ops, NULL) < 0 ? (snprintf(err, errlen, "too many companions"), -1)
                                                             : 0;
    struct ha_companion *h = calloc(1, sizeof *h);
    if (!h) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    h->d = d;
    h->cfg = cfg;
    h->ha = ha;
    ha_announcer_init(&h->own);
    ha_announcer_init(&h->standin);
    ev_timer_init(&h->poll, on_poll, h);
    char host[256];
    snprintf(h->node, sizeof h->node, "%s", ha_conf_node(ha, host, sizeof host));
    reset_sessions(h);
    if (daemon_add_companion(d, &ha_companion_ops, h) < 0) {
        snprintf(err, errlen, "too many companions");
        free(h);
        return -1;
    }
    /* From here on daemon_fini frees h, whatever fails. The devices exist
     * before BIRD starts, so its direct protocols find them at once. */
    if (open_devices(h, err, errlen) < 0)
        return -1;
    char why[512];
    if (ha_apply_bird(h, why, sizeof why) < 0) {
        snprintf(err, errlen, "BIRD: %s", why);
        return -1;
    }
    if (vip_board_subscribe(&d->vips, on_board, h) < 0 || ha_admin_mount(h) < 0) {
        snprintf(err, errlen, "cannot mount the HA routes");
        return -1;
    }
    if (ha_probes_start(h) < 0) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    ev_timer_start(d->loop, &h->poll, 0);
    log_info("ha: node %s, zone %s, priority %u%s: announcing on %s (stand-ins on %s%s), BIRD %s on %s", h->node,
             ha->zone, ha->priority, ha->preempt ? "" : " (ha.preempt false: stays behind a worse zone that "
             "carries a VIP)", ha->interface, ha->interface, HA_STANDIN_SUFFIX,
             ha->bird.mode == HA_BIRD_MANAGED ? "managed" : "external", ha->bird.control_socket);
    return 0;
}
