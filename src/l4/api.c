/* The /api/l4/ routes of `sluice l4`'s admin API: look at the services,
 * add and remove services and reals while the forwarder runs.
 *
 *   GET    /api/l4/services                       every service with its reals
 *   POST   /api/l4/services                       add one (body: a service, as in l4.services)
 *   GET    /api/l4/services/{name}                one service ({name} = tcp:VIP:PORT)
 *   DELETE /api/l4/services/{name}                remove it
 *   POST   /api/l4/services/{name}/reals          add a real (body: a real, as in reals:)
 *   GET    /api/l4/services/{name}/reals/{addr}   one real
 *   PATCH  /api/l4/services/{name}/reals/{addr}   {"weight": N} and/or {"admin": ...}
 *   DELETE /api/l4/services/{name}/reals/{addr}   remove it
 *   GET    /api/l4/list                           the `sluice l4 list` table, as text
 *   GET    /api/l4/sync                           l4.sync: this node and its peers (sync.h)
 *
 * A service with discovery: takes its reals from a registry service
 * (l4_discovery.h): adding or removing one of its reals by hand is refused
 * (409: the next list would undo it; change the registry instead), while
 * PATCH (weight, drain) works as on any real and lasts until the registry
 * changes that real's weight or the real leaves.
 *
 * A body is read by the l4 section's own parser (l4_conf_parse_service,
 * l4_conf_parse_real: the same keys, defaults and errors as the file), so
 * the API cannot accept what the file would refuse. Every change goes through l4d_replace_services(): one
 * model switch, tables swapped atomically, flows on reals that stay keep
 * their real.
 */
#include <arpa/inet.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "core/admin.h"
#include "l4/l4_conf.h"
#include "core/log.h"
#include "l4/daemon_priv.h"
#include "l4/l4_discovery.h"
#include "l4/stats.h"

static const char *proto_name(const struct cfg_l4_service *s)
{
    return l4_proto_name(s->proto);
}

static int find_by_name(const struct l4d *d, const char *name)
{
    for (size_t s = 0; s < l4_conf(d->cfg)->n_services; s++) {
        const struct cfg_l4_service *svc = &l4_conf(d->cfg)->services[s];
        char n[96];
        l4_service_name(svc, n, sizeof n);
        if (strcmp(n, name) == 0)
            return (int)s;
    }
    return -1;
}

static int find_real(const struct cfg_l4_service *s, const char *addr)
{
    for (size_t r = 0; r < s->n_reals; r++)
        if (strcmp(s->reals[r].addr.text, addr) == 0)
            return (int)r;
    return -1;
}

/* ---- JSON out ---- */

static json_t *real_json(struct l4d *d, size_t s, size_t r, const struct l4_row_real *row, uint32_t m)
{
    size_t g = d->sr[s].first + r;
    uint64_t now = ev_clock_ms();
    struct backend_ctl ctl;
    l4d_real_ctl(d, g, &ctl);
    const struct hc_status *h = l4d_real_health(d, g);
    const struct cfg_l4_service *svc = &l4_conf(d->cfg)->services[s];
    return json_pack("{s:s, s:s, s:I, s:I, s:s, s:s, s:{s:s, s:s, s:I, s:I}, s:I, s:I, s:f, s:I, s:I, s:I, s:I}",
                     "address", svc->reals[r].addr.text,
                     "source", svc->discovered ? "discovery" : "static",
                     "weight", (json_int_t)ctl.weight,
                     "effective_weight", (json_int_t)backend_effective_weight(&ctl, 0, now),
                     "admin", backend_admin_name(ctl.admin),
                     "state", row ? row->state : "?",
                     "health", "status", ctl.up ? "up" : "down",
                     "last_check", h ? h->last_check : "not checked yet",
                     "checks_ok", (json_int_t)(h ? h->checks_ok : 0),
                     "checks_failed", (json_int_t)(h ? h->checks_failed : 0),
                     "index", (json_int_t)d->rr[g].index,
                     "maglev_slots", (json_int_t)(row ? row->slots : 0),
                     "share", row && m ? (double)row->slots / m : 0.0,
                     "active_conns", (json_int_t)(row ? row->active : 0),
                     "inactive_conns", (json_int_t)(row ? row->inactive : 0),
                     "packets", (json_int_t)(row ? row->c.packets : 0),
                     "bytes", (json_int_t)(row ? row->c.bytes : 0));
}

/* Where a discovered service's reals come from, and how that goes. */
static json_t *discovery_json(const struct l4_disc_status *st, const struct cfg_discovery *conf)
{
    json_t *regs = json_array();
    for (const char *p = conf->registries; p && *p;) {
        size_t len = strcspn(p, ",");
        json_array_append_new(regs, json_stringn(p, len));
        p += len + (p[len] == ',');
    }
    json_t *doc = json_pack("{s:s, s:o, s:s?, s:s?, s:I}", "service", conf->service, "registries", regs,
                            "datacenter", conf->datacenter, "region", conf->region,
                            "max_members", (json_int_t)conf->max_members);
    if (!doc || !st)
        return doc ? doc : json_object();
    const struct discovery_status *now = &st->now;
    json_t *skipped = json_pack("{s:I, s:I, s:I, s:I}", "family", (json_int_t)st->skipped.family, "port",
                                (json_int_t)st->skipped.port, "duplicate", (json_int_t)st->skipped.duplicate,
                                "invalid", (json_int_t)st->skipped.invalid);
    json_t *more = json_pack("{s:s, s:I, s:I, s:I, s:I, s:o, s:I, s:I, s:b, s:s, s:I, s:I, s:b, s:s, s:s}",
                             "source", now->source_name ? now->source_name : "none",
                             "version", (json_int_t)now->version,
                             "applied_version", (json_int_t)st->applied_version,
                             "members", (json_int_t)st->members, "used", (json_int_t)st->used,
                             "skipped", skipped, "changes", (json_int_t)st->changes,
                             "age_ms", (json_int_t)now->age_ms, "fail_open", now->fail_open, "tier", now->tier,
                             "instances", (json_int_t)now->instances, "healthy", (json_int_t)now->healthy,
                             "registry_reachable", now->registry_reachable, "node", now->node,
                             "last_error", st->last_error);
    json_object_update(doc, more);
    json_decref(more);
    return doc;
}

static json_t *service_json(struct l4d *d, size_t s, const struct l4_snapshot *snap)
{
    const struct cfg_l4_service *svc = &l4_conf(d->cfg)->services[s];
    const struct l4_row_svc *row = snap && s < snap->n_svcs ? &snap->svcs[s] : NULL;
    char name[96];
    l4_service_name(svc, name, sizeof name);
    json_t *locals = json_array(), *reals = json_array();
    for (size_t i = 0; i < svc->n_local_addrs; i++)
        json_array_append_new(locals, json_string(svc->local_addrs[i].text));
    for (size_t r = 0; r < svc->n_reals; r++)
        json_array_append_new(reals, real_json(d, s, r, row && r < row->n_reals ? &row->reals[r] : NULL,
                                               snap ? snap->m : 0));
    json_t *doc = json_pack("{s:s, s:s, s:s, s:s, s:s, s:I, s:b, s:I, s:I, s:o, s:o}", "name", name, "vip",
                            svc->vip.text, "protocol", proto_name(svc), "mode", l4_fwd_mode_name(svc->mode),
                            "scheduler", l4_scheduler_name(svc->scheduler), "slot", (json_int_t)d->sr[s].slot,
                            "loaded", row ? row->loaded : 0, "packets", (json_int_t)(row ? row->c.packets : 0),
                            "bytes", (json_int_t)(row ? row->c.bytes : 0), "local_addresses", locals, "reals",
                            reals);
    if (doc && svc->mode == L4_FWD_TUN)
        json_object_set_new(doc, "encapsulation", json_string(svc->gue ? "gue" : "ipip"));
    if (doc)
        json_object_set_new(doc, "reals_from", json_string(svc->discovered ? "discovery" : "static"));
    if (doc && svc->discovered)
        json_object_set_new(doc, "discovery", discovery_json(l4_discovery_status(d, s), &svc->discovery));
    return doc;
}

static bool take_snapshot(struct l4d *d, struct l4_snapshot *snap, struct admin_reply *r)
{
    char err[160];
    if (l4d_snapshot(d, snap, err, sizeof err) < 0) {
        admin_reply_error(r, 500, "%s", err);
        return false;
    }
    return true;
}

static void reply_service(struct l4d *d, int status, size_t s, struct admin_reply *r)
{
    struct l4_snapshot snap;
    if (!take_snapshot(d, &snap, r))
        return;
    admin_reply_json(r, status, service_json(d, s, &snap));
    l4_snapshot_free(&snap);
}

static void reply_services(struct l4d *d, struct admin_reply *r)
{
    struct l4_snapshot snap;
    if (!take_snapshot(d, &snap, r))
        return;
    json_t *arr = json_array();
    for (size_t s = 0; s < l4_conf(d->cfg)->n_services; s++)
        json_array_append_new(arr, service_json(d, s, &snap));
    l4_snapshot_free(&snap);
    admin_reply_json(r, 200, json_pack("{s:o}", "services", arr));
}

/* ---- bodies in: through the l4 section's own parser ---- */

/* A JSON body as one well-formed JSON text, whatever was sent (jansson
 * re-serialises it), which the section's parser then reads: JSON is YAML. */
static char *body_text(json_t *j, char *err, size_t errlen)
{
    char *text = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);
    json_decref(j);
    if (!text)
        snprintf(err, errlen, "out of memory");
    return text;
}

/* Parse `body` (a JSON object) as one service, in the context of the
 * running l4 settings (TUN prefixes). */
static int parse_service(const struct l4d *d, const char *body, size_t len, struct cfg_l4_service *out, char *err,
                         size_t errlen)
{
    json_error_t jerr;
    json_t *j = json_loadb(body, len, 0, &jerr);
    if (!j || !json_is_object(j)) {
        snprintf(err, errlen, j ? "the body must be a JSON object" : "the body is not JSON: %s", jerr.text);
        json_decref(j);
        return -1;
    }
    char *text = body_text(j, err, errlen);
    if (!text)
        return -1;
    int rc = l4_conf_parse_service(l4_conf(d->cfg), text, strlen(text), out, err, errlen);
    free(text);
    return rc;
}

/* A real of service svc: checked as the file checks a real of that
 * service (address family, default port, weight range, TUN prefix). */
static int parse_real(const struct l4d *d, const struct cfg_l4_service *svc, const char *body, size_t len,
                      struct cfg_l4_real *out, char *err, size_t errlen)
{
    json_error_t jerr;
    json_t *j = json_loadb(body, len, JSON_DECODE_ANY, &jerr);
    if (!j || !(json_is_object(j) || json_is_string(j))) {
        snprintf(err, errlen, j ? "the body must be a JSON object ({\"address\": ..., \"weight\": ...})"
                                : "the body is not JSON: %s", jerr.text);
        json_decref(j);
        return -1;
    }
    char *text = body_text(j, err, errlen);
    if (!text)
        return -1;
    int rc = l4_conf_parse_real(l4_conf(d->cfg), svc, text, strlen(text), out, err, errlen);
    free(text);
    return rc;
}

/* ---- changes ---- */

/* A copy of the running list of services, for an edit. */
static struct cfg_l4_service *copy_services(const struct l4d *d, size_t extra)
{
    size_t n = l4_conf(d->cfg)->n_services;
    struct cfg_l4_service *v = calloc(n + extra + 1, sizeof *v);
    for (size_t i = 0; v && i < n; i++) {
        if (l4_conf_service_copy(&v[i], &l4_conf(d->cfg)->services[i]) < 0) {
            for (size_t k = 0; k < i; k++)
                l4_conf_service_free(&v[k]);
            free(v);
            return NULL;
        }
    }
    return v;
}

static bool apply(struct l4d *d, struct cfg_l4_service *v, size_t n, struct admin_reply *r)
{
    char err[512];
    int rc = l4d_replace_services(d, v, n, err, sizeof err);
    if (rc) {
        admin_reply_error(r, rc, "%s", err);
        return false;
    }
    return true;
}

static void add_service(struct l4d *d, const char *body, size_t len, struct admin_reply *r)
{
    char err[512];
    struct cfg_l4_service svc;
    if (parse_service(d, body, len, &svc, err, sizeof err) < 0) {
        admin_reply_error(r, 400, "%s", err);
        return;
    }
    char name[96];
    l4_service_name(&svc, name, sizeof name);
    for (size_t s = 0; s < l4_conf(d->cfg)->n_services; s++) {
        const struct cfg_l4_service *o = &l4_conf(d->cfg)->services[s];
        if (o->proto == svc.proto && addr_equal(&o->vip, &svc.vip)) {
            admin_reply_error(r, 409, "service %s exists; remove it first, or change its reals", name);
            l4_conf_service_free(&svc);
            return;
        }
    }
    size_t n = l4_conf(d->cfg)->n_services;
    struct cfg_l4_service *v = copy_services(d, 1);
    if (!v) {
        l4_conf_service_free(&svc);
        admin_reply_error(r, 500, "out of memory");
        return;
    }
    v[n] = svc;
    if (!apply(d, v, n + 1, r))
        return;
    log_info("admin API: service %s added (%s, %s, %zu real%s)", name, l4_fwd_mode_name(svc.mode),
             l4_scheduler_name(svc.scheduler), svc.n_reals, svc.n_reals == 1 ? "" : "s");
    l4_discovery_sync(d);   /* a discovered service: follow it, and take its list if there is one */
    int s = find_by_name(d, name);
    if (s >= 0)
        reply_service(d, 201, (size_t)s, r);
}

static void remove_service(struct l4d *d, size_t s, struct admin_reply *r)
{
    char name[96];
    const struct cfg_l4_service *svc = &l4_conf(d->cfg)->services[s];
    l4_service_name(svc, name, sizeof name);
    size_t n = l4_conf(d->cfg)->n_services;
    struct cfg_l4_service *v = copy_services(d, 0);
    if (!v) {
        admin_reply_error(r, 500, "out of memory");
        return;
    }
    l4_conf_service_free(&v[s]);
    memmove(&v[s], &v[s + 1], (n - s - 1) * sizeof *v);
    if (!apply(d, v, n - 1, r))
        return;
    log_info("admin API: service %s removed", name);
    l4_discovery_sync(d);
    admin_reply_json(r, 200, json_pack("{s:s}", "removed", name));
}

/* The reals of a discovered service are its registry service's members:
 * a real added or removed here would be undone by the next list. */
static bool refuse_discovered(const struct l4d *d, size_t s, const char *what, struct admin_reply *r)
{
    const struct cfg_l4_service *svc = &l4_conf(d->cfg)->services[s];
    if (!svc->discovered)
        return false;
    char name[96];
    l4_service_name(svc, name, sizeof name);
    admin_reply_error(r, 409, "service %s takes its reals from registry service %s (discovery): %s there "
                      "instead; PATCH a real to change its weight or drain it here", name, svc->discovery.service,
                      what);
    return true;
}

static void add_real(struct l4d *d, size_t s, const char *body, size_t len, struct admin_reply *r)
{
    char err[512];
    struct cfg_l4_real real;
    const struct cfg_l4_service *svc = &l4_conf(d->cfg)->services[s];
    if (refuse_discovered(d, s, "register the instance", r))
        return;
    if (parse_real(d, svc, body, len, &real, err, sizeof err) < 0) {
        admin_reply_error(r, 400, "%s", err);
        return;
    }
    for (size_t k = 0; k < svc->n_reals; k++) {
        if (addr_equal(&svc->reals[k].addr, &real.addr)) {
            admin_reply_error(r, 409, "service %s already has real %s; PATCH it to change its weight",
                              svc->vip.text, real.addr.text);
            return;
        }
    }
    size_t n = l4_conf(d->cfg)->n_services;
    struct cfg_l4_service *v = copy_services(d, 0);
    struct cfg_l4_real *grown = v ? realloc(v[s].reals, (v[s].n_reals + 1) * sizeof *grown) : NULL;
    if (!grown) {
        for (size_t i = 0; v && i < n; i++)
            l4_conf_service_free(&v[i]);
        free(v);
        admin_reply_error(r, 500, "out of memory");
        return;
    }
    v[s].reals = grown;
    grown[v[s].n_reals++] = real;
    char name[96];
    l4_service_name(svc, name, sizeof name);
    if (!apply(d, v, n, r))
        return;
    log_info("admin API: service %s: real %s added, weight %" PRIu32, name, real.addr.text, real.weight);
    int si = find_by_name(d, name);
    if (si >= 0)
        reply_service(d, 201, (size_t)si, r);
}

static void remove_real(struct l4d *d, size_t s, size_t ri, struct admin_reply *r)
{
    if (refuse_discovered(d, s, "deregister the instance", r))
        return;
    size_t n = l4_conf(d->cfg)->n_services;
    const struct cfg_l4_service *svc = &l4_conf(d->cfg)->services[s];
    char name[96], addr[72];
    l4_service_name(svc, name, sizeof name);
    snprintf(addr, sizeof addr, "%s", svc->reals[ri].addr.text);
    struct cfg_l4_service *v = copy_services(d, 0);
    if (!v) {
        admin_reply_error(r, 500, "out of memory");
        return;
    }
    memmove(&v[s].reals[ri], &v[s].reals[ri + 1], (v[s].n_reals - ri - 1) * sizeof *v[s].reals);
    v[s].n_reals--;
    if (!apply(d, v, n, r))
        return;
    log_info("admin API: service %s: real %s removed", name, addr);
    admin_reply_json(r, 200, json_pack("{s:s, s:s}", "service", name, "removed", addr));
}

static void real_route(struct l4d *d, size_t s, const char *method, const char *addr, const char *body,
                       size_t len, struct admin_reply *r)
{
    const struct cfg_l4_service *svc = &l4_conf(d->cfg)->services[s];
    int ri = find_real(svc, addr);
    if (ri < 0) {
        admin_reply_error(r, 404, "service %s:%s has no real \"%s\"", proto_name(svc), svc->vip.text, addr);
        return;
    }
    if (!strcmp(method, "DELETE")) {
        remove_real(d, s, (size_t)ri, r);
        return;
    }
    if (!strcmp(method, "PATCH")) {
        char err[512];
        size_t g = d->sr[s].first + (size_t)ri;
        struct backend_patch pt;
        if (backend_patch_parse(body, len, false, &pt, err, sizeof err) < 0) {
            admin_reply_error(r, 400, "%s", err);
            return;
        }
        l4d_real_change(d, g, &pt);
        log_info("admin API: service %s:%s real %s: weight %" PRIu32 ", admin %s", proto_name(svc), svc->vip.text,
                 addr, d->rr[g].weight, backend_admin_name(d->rr[g].admin));
    } else if (strcmp(method, "GET") && strcmp(method, "HEAD")) {
        admin_reply_method_not_allowed(r, "GET, HEAD, PATCH, DELETE");
        return;
    }
    struct l4_snapshot snap;
    if (!take_snapshot(d, &snap, r))
        return;
    const struct l4_row_real *row = s < snap.n_svcs && (size_t)ri < snap.svcs[s].n_reals ? &snap.svcs[s].reals[ri]
                                                                                          : NULL;
    admin_reply_json(r, 200, real_json(d, s, (size_t)ri, row, snap.m));
    l4_snapshot_free(&snap);
}

void l4_api_handle(void *arg, const struct admin_request *rq, struct admin_reply *r)
{
    struct l4d *d = arg;
    const char *method = rq->method, *body = rq->body;
    const char *const *seg = rq->seg;
    size_t n = rq->n_seg, len = rq->body_len;
    bool get = !strcmp(method, "GET") || !strcmp(method, "HEAD");
    if (n == 1 && !strcmp(seg[0], "list")) {
        if (!get) {
            admin_reply_method_not_allowed(r, "GET, HEAD");
            return;
        }
        struct l4_snapshot snap;
        if (!take_snapshot(d, &snap, r))
            return;
        char *text = l4_snapshot_render_list(&snap, d->pin_dir);
        l4_snapshot_free(&snap);
        if (text)
            admin_reply_text(r, 200, text, strlen(text));
        else
            admin_reply_error(r, 500, "out of memory");
        return;
    }
    if (n == 1 && !strcmp(seg[0], "sync")) {
        if (!get)
            admin_reply_method_not_allowed(r, "GET, HEAD");
        else if (!d->sync)
            admin_reply_error(r, 404, "l4.sync is not configured");
        else
            admin_reply_json(r, 200, l4_sync_json(d->sync));
        return;
    }
    if (n == 0 || strcmp(seg[0], "services") != 0) {
        admin_reply_error(r, 404, "no such path (see docs/l4.md: /api/l4/services, /api/l4/list)");
        return;
    }
    if (n == 1) {
        if (get)
            reply_services(d, r);
        else if (!strcmp(method, "POST"))
            add_service(d, body, len, r);
        else
            admin_reply_method_not_allowed(r, "GET, HEAD, POST");
        return;
    }
    int s = find_by_name(d, seg[1]);
    if (s < 0) {
        admin_reply_error(r, 404, "no service named \"%s\" (names are PROTO:VIP:PORT, e.g. tcp:10.0.0.100:80)",
                          seg[1]);
        return;
    }
    if (n == 2) {
        if (get)
            reply_service(d, 200, (size_t)s, r);
        else if (!strcmp(method, "DELETE"))
            remove_service(d, (size_t)s, r);
        else
            admin_reply_method_not_allowed(r, "GET, HEAD, DELETE");
        return;
    }
    if (strcmp(seg[2], "reals") != 0 || n > 4) {
        admin_reply_error(r, 404, "no such path");
        return;
    }
    if (n == 3) {
        if (get)
            reply_service(d, 200, (size_t)s, r);
        else if (!strcmp(method, "POST"))
            add_real(d, (size_t)s, body, len, r);
        else
            admin_reply_method_not_allowed(r, "GET, HEAD, POST");
        return;
    }
    real_route(d, (size_t)s, method, seg[3], body, len, r);
}
