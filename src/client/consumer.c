/* The consumer: subscriptions, the watcher thread, picks.
 *
 * One watcher thread per client keeps every subscribed service's list:
 *   - a blocking query on GET /api/registry/services?index=N&wait=W (the
 *     model index moves on any change at that node), then a GET of each
 *     subscribed service whose modify_index moved;
 *   - a full pull of every subscribed service every pull_interval_ms (it
 *     catches what a watch missed, and confirms empty lists: doc.h);
 *   - a new subscription is fetched at once (sluice_subscribe wakes it);
 *   - the failover switch, checked at most once a second (cache.c).
 * Indexes are per node: after an answer from another node than the last
 * one (or an index going back: the node restarted), every service is
 * fetched again. When no node answers, it waits, 250 ms doubling to 5 s
 * (woken early by a subscription or close): it never spins.
 *
 * Every answer goes through cl_judge() (doc.h) before it replaces a list;
 * an applied list is written to the cache and published as a new snapshot
 * (snap.h), unless a failover list stands in front of it. */
#include "client/client_priv.h"

#include <ctype.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "client/http.h"
#include "lib/errbuf.h"

#define FAILOVER_CHECK_MS 1000u
#define RETRY_MIN_MS 250u
#define RETRY_MAX_MS 5000u

/* ---- publishing ----------------------------------------------------------- */

int cl_service_publish(sluice_service *s)
{
    sluice_client *c = s->c;
    const struct cl_doc *doc = s->overlay ? s->overlay : s->base;
    int source = s->overlay ? SLUICE_SOURCE_FAILOVER : (int)s->base_source;
    struct cl_snap *snap = NULL;
    if (doc) {
        snap = cl_snap_build(doc, c->datacenter, c->region, source, s->version + 1, &s->slots);
        if (!snap) {
            cl_log(c, SLUICE_LOG_ERROR, "service %s: out of memory building its list; the old one stays", s->name);
            return -1;
        }
        s->version++;
    }
    struct cl_snap *old = atomic_exchange(&s->snap, snap);
    if (old) {
        cl_grace_wait(&c->grace);
        cl_snap_free(old);
    }
    pthread_mutex_lock(&s->mu);
    void (*cb)(void *, sluice_service *) = s->on_change;
    void *arg = s->on_change_arg;
    pthread_cond_broadcast(&s->ready_cond);
    pthread_mutex_unlock(&s->mu);
    if (cb)
        cb(arg, s);
    return 0;
}

/* ---- services ------------------------------------------------------------- */

static sluice_service *service_new(sluice_client *c, const char *name)
{
    sluice_service *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->c = c;
    cl_copy(s->name, sizeof s->name, name);
    pthread_mutex_init(&s->mu, NULL);
    pthread_mutex_init(&s->writer, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&s->ready_cond, &ca);
    pthread_condattr_destroy(&ca);
    s->base_source = SLUICE_SOURCE_NONE;
    s->fetch_now = true;
    return s;
}

void cl_service_free(sluice_service *s)
{
    cl_snap_free(atomic_load(&s->snap));
    cl_doc_free(s->base);
    cl_doc_free(s->overlay);
    cl_slots_free(&s->slots);
    pthread_cond_destroy(&s->ready_cond);
    pthread_mutex_destroy(&s->mu);
    pthread_mutex_destroy(&s->writer);
    free(s);
}

/* Service i of the client, NULL past the end (the array only grows, and
 * services live until close). */
static sluice_service *service_at(sluice_client *c, size_t i)
{
    pthread_mutex_lock(&c->lock);
    sluice_service *s = i < c->n_services ? c->services[i] : NULL;
    pthread_mutex_unlock(&c->lock);
    return s;
}

static bool failover_overlay(sluice_service *s);

sluice_service *sluice_subscribe(sluice_client *c, const char *service, char *err, size_t errlen)
{
    if (err && errlen)
        err[0] = '\0';
    if (!c || !cl_service_name_ok(service)) {
        errbuf_fail(err, errlen, "service: expected a name of letters, digits and '-' (one DNS label)");
        return NULL;
    }
    char name[64];
    size_t n = strlen(service);
    for (size_t i = 0; i <= n; i++)
        name[i] = (char)tolower((unsigned char)service[i]);
    pthread_mutex_lock(&c->lock);
    for (size_t i = 0; i < c->n_services; i++)
        if (strcmp(c->services[i]->name, name) == 0) {
            sluice_service *s = c->services[i];
            pthread_mutex_unlock(&c->lock);
            return s;
        }
    sluice_service *s = NULL;
    if (c->n_services == c->cap_services) {
        size_t cap = c->cap_services ? c->cap_services * 2 : 8;
        sluice_service **a = realloc(c->services, cap * sizeof *a);
        if (a) {
            c->services = a;
            c->cap_services = cap;
        }
    }
    if (c->n_services < c->cap_services)
        s = service_new(c, name);
    if (!s) {
        pthread_mutex_unlock(&c->lock);
        errbuf_fail(err, errlen, "out of memory");
        return NULL;
    }
    /* The cache's and the failover directory's lists at once, before any
     * registry answers. */
    pthread_mutex_lock(&s->writer);
    bool have = cl_cache_load(s) == 0;
    if (cl_failover_active(c))
        have |= failover_overlay(s);
    if (have)
        cl_service_publish(s);
    pthread_mutex_unlock(&s->writer);
    c->services[c->n_services++] = s;
    atomic_store(&c->wake, true);
    pthread_mutex_unlock(&c->lock);
    cl_watcher_wake(c);
    return s;
}

int sluice_wait_ready(sluice_service *s, uint32_t timeout_ms)
{
    if (!s)
        return -1;
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_sec += timeout_ms / 1000;
    until.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&s->mu);
    int rc = 0;
    while (!atomic_load(&s->snap) && rc == 0)
        rc = pthread_cond_timedwait(&s->ready_cond, &s->mu, &until);
    bool ready = atomic_load(&s->snap) != NULL;
    pthread_mutex_unlock(&s->mu);
    return ready ? 0 : -1;
}

void sluice_on_change(sluice_service *s, void (*cb)(void *arg, sluice_service *s), void *arg)
{
    if (!s)
        return;
    pthread_mutex_lock(&s->mu);
    s->on_change = cb;
    s->on_change_arg = cb ? arg : NULL;
    pthread_mutex_unlock(&s->mu);
}

/* ---- applying answers -------------------------------------------------------- */

void cl_service_apply(sluice_service *s, const char *node, long status, const char *body, size_t len)
{
    sluice_client *c = s->c;
    char err[256] = "";
    struct cl_doc *doc = NULL;
    if (status == 200) {
        doc = body ? cl_doc_parse(body, len, err, sizeof err) : NULL;
        if (!doc && !err[0])
            snprintf(err, sizeof err, "no body");
    } else if (status != 404) {
        snprintf(err, sizeof err, "HTTP status %ld", status);
    }
    if (doc && strcmp(doc->name, s->name) != 0)
        snprintf(err, sizeof err, "the answer is for service \"%s\"", doc->name);
    uint64_t now = cl_now_ms();
    pthread_mutex_lock(&s->writer);
    bool have = s->base && s->base->n > 0;
    enum cl_verdict v = cl_judge(&s->trust, s->name, node, status, doc, have, now, c->cfg.pull_interval_ms);
    cl_copy(s->known_node, sizeof s->known_node, node);
    s->known_index = doc ? doc->modify_index : 0;
    atomic_store(&s->not_found, v == CL_NOT_FOUND);
    switch (v) {
    case CL_APPLY: {
        bool changed = !cl_doc_equal(s->base, doc) || s->base_source != SLUICE_SOURCE_REGISTRY;
        atomic_store(&s->registry_ms, now);
        if (!changed)
            break;
        cl_doc_free(s->base);
        s->base = doc;
        doc = NULL;
        s->base_source = SLUICE_SOURCE_REGISTRY;
        atomic_fetch_add(&s->updates, 1);
        atomic_fetch_add(&c->st.updates, 1);
        cl_log(c, SLUICE_LOG_DEBUG, "service %s: %zu instances from %s (index %" PRIu64 ")", s->name, s->base->n,
               node, s->base->modify_index);
        cl_cache_write(s, node);
        if (!s->overlay)
            cl_service_publish(s);
        break;
    }
    case CL_IGNORE_EMPTY:
        atomic_fetch_add(&s->ignored_empty, 1);
        atomic_fetch_add(&c->st.updates_ignored_empty, 1);
        cl_log_limited(c, &s->warn_empty, SLUICE_LOG_WARN,
                       "service %s: registry %s answered %s; keeping the %zu instances we have until another "
                       "node or a later pull confirms it",
                       s->name, node, status == 404 ? "that it does not exist" : "an empty list", s->base->n);
        break;
    case CL_IGNORE_INVALID:
        atomic_fetch_add(&s->ignored_invalid, 1);
        atomic_fetch_add(&c->st.updates_ignored_invalid, 1);
        cl_log_limited(c, &s->warn_invalid, SLUICE_LOG_WARN, "service %s: ignoring the answer of registry %s: %s",
                       s->name, node, err);
        break;
    case CL_NOT_FOUND:
        cl_log(c, SLUICE_LOG_DEBUG, "service %s: registry %s does not know it", s->name, node);
        break;
    }
    pthread_mutex_unlock(&s->writer);
    cl_doc_free(doc);
}

/* ---- failover ----------------------------------------------------------------- */

/* While the switch exists: take FAILOVER_DIR/NAME.json if it changed.
 * Returns whether the service has an overlay. Under s->writer; does not
 * publish. */
static bool failover_overlay(sluice_service *s)
{
    bool missing;
    struct cl_doc *d = cl_failover_read(s, &missing);
    if (!d) {
        if (missing && s->overlay) {
            cl_doc_free(s->overlay);
            s->overlay = NULL;
        }
        return s->overlay != NULL;
    }
    if (cl_doc_equal(d, s->overlay)) {
        cl_doc_free(d);
        return true;
    }
    cl_doc_free(s->overlay);
    s->overlay = d;
    atomic_fetch_add(&s->c->st.failover_loads, 1);
    cl_log(s->c, SLUICE_LOG_WARN, "service %s: failover list in use (%zu instances)", s->name, d->n);
    return true;
}

static void failover_turn(sluice_client *c)
{
    if (!c->failover_dir)
        return;
    bool active = cl_failover_active(c);
    atomic_store(&c->st.failover_active, active);
    for (size_t i = 0;; i++) {
        sluice_service *s = service_at(c, i);
        if (!s)
            break;
        pthread_mutex_lock(&s->writer);
        struct cl_doc *before = s->overlay;
        bool was = before != NULL;
        if (active) {
            failover_overlay(s);
        } else if (s->overlay) {
            cl_doc_free(s->overlay);
            s->overlay = NULL;
            cl_log(c, SLUICE_LOG_WARN, "service %s: failover switch gone: the registry's list is back", s->name);
        }
        if (s->overlay != before || was != (s->overlay != NULL))
            cl_service_publish(s);
        pthread_mutex_unlock(&s->writer);
    }
}

/* ---- the watcher ---------------------------------------------------------------- */

struct watcher {
    sluice_client *c;
    struct cl_http *h;
    uint64_t model_index;
    char node[CL_NODE_NAME];      /* the node model_index belongs to */
    uint64_t next_pull_ms;
    uint64_t next_failover_ms;
    uint32_t retry_ms;
};

void cl_watcher_wake(sluice_client *c)
{
    pthread_mutex_lock(&c->lock);
    pthread_cond_broadcast(&c->cond);
    cl_http_wake(c->watch_http);
    pthread_mutex_unlock(&c->lock);
}

static void maybe_failover(struct watcher *w)
{
    uint64_t now = cl_now_ms();
    if (!w->c->failover_dir || now < w->next_failover_ms)
        return;
    w->next_failover_ms = now + FAILOVER_CHECK_MS;
    failover_turn(w->c);
}

/* While a request runs: the failover switch, and whether to give up the
 * request for something more urgent. */
static bool watch_check(void *arg)
{
    struct watcher *w = arg;
    maybe_failover(w);
    return atomic_load(&w->c->stop) || atomic_load(&w->c->wake) || cl_now_ms() >= w->next_pull_ms;
}

/* Wait up to ms (less when the failover directory needs checking), woken
 * by a subscription or close. */
static void idle(struct watcher *w, uint32_t ms)
{
    sluice_client *c = w->c;
    if (c->failover_dir && ms > FAILOVER_CHECK_MS)
        ms = FAILOVER_CHECK_MS;
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_sec += ms / 1000;
    until.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&c->lock);
    while (!atomic_load(&c->stop) && !atomic_load(&c->wake))
        if (pthread_cond_timedwait(&c->cond, &c->lock, &until) != 0)
            break;
    pthread_mutex_unlock(&c->lock);
}

/* A fetch gives way only to close. */
static bool stopping(void *arg)
{
    struct watcher *w = arg;
    return atomic_load(&w->c->stop);
}

/* GET the service's list and apply it. -1 when no node answered. */
static int fetch_service(struct watcher *w, sluice_service *s)
{
    char path[128];
    snprintf(path, sizeof path, "/api/registry/services/%s", s->name);
    struct cl_resp r;
    int rc = cl_http_request(w->h, "GET", path, NULL, 0, stopping, w, &r);
    if (rc == CL_HTTP_OK)
        cl_service_apply(s, r.node_name, r.status, r.body, r.len);
    cl_resp_free(&r);
    return rc == CL_HTTP_OK ? 0 : -1;
}

/* Fetch the services flagged (new), or every service (a pull). */
static int fetch_services(struct watcher *w, bool all)
{
    sluice_client *c = w->c;
    int rc = 0;
    for (size_t i = 0; !atomic_load(&c->stop); i++) {
        sluice_service *s = service_at(c, i);
        if (!s)
            break;
        pthread_mutex_lock(&s->writer);
        /* A service this node said does not exist is not pulled again: the
         * services list this watcher follows on the same node shows it when
         * it appears (on_services_list fetches it then). So names that do
         * not exist (a DNS agent follows whatever its clients ask) cost the
         * registry nothing after their first 404. */
        bool known_absent = atomic_load(&s->not_found) && w->model_index > 0 && strcmp(s->known_node, w->node) == 0;
        bool due = (all && !known_absent) || s->fetch_now;
        s->fetch_now = false;
        pthread_mutex_unlock(&s->writer);
        if (!due)
            continue;
        if (all)
            atomic_fetch_add(&c->st.pulls, 1);
        if (fetch_service(w, s) < 0) {
            /* fetched again at the next turn */
            pthread_mutex_lock(&s->writer);
            s->fetch_now = true;
            pthread_mutex_unlock(&s->writer);
            rc = -1;
            break;
        }
    }
    return rc;
}

/* The modify_index the services list gives the service (0: not listed). */
static uint64_t listed_index(json_t *services, const char *name)
{
    size_t i;
    json_t *e;
    json_array_foreach(services, i, e) {
        json_t *n = json_object_get(e, "name");
        if (json_is_string(n) && strcasecmp(json_string_value(n), name) == 0) {
            json_t *mi = json_object_get(e, "modify_index");
            return json_is_integer(mi) && json_integer_value(mi) > 0 ? (uint64_t)json_integer_value(mi) : 0;
        }
    }
    return 0;
}

/* A services list from node: indexes reset when the node is another or
 * went back; then each service whose modify_index moved is fetched. */
static int on_services_list(struct watcher *w, const char *node, const char *body, size_t len)
{
    sluice_client *c = w->c;
    json_t *root = json_loadb(body ? body : "", body ? len : 0, 0, NULL);
    json_t *idx = json_object_get(root, "index");
    json_t *services = json_object_get(root, "services");
    if (!json_is_integer(idx) || json_integer_value(idx) < 0 || !json_is_array(services)) {
        json_decref(root);
        atomic_fetch_add(&c->st.requests_failed, 1);
        cl_log(c, SLUICE_LOG_WARN, "registry %s: the services list did not parse", node);
        return -1;
    }
    cl_copy(w->node, sizeof w->node, node);
    w->model_index = (uint64_t)json_integer_value(idx);
    int rc = 0;
    for (size_t i = 0; rc == 0 && !atomic_load(&c->stop); i++) {
        sluice_service *s = service_at(c, i);
        if (!s)
            break;
        uint64_t mi = listed_index(services, s->name);
        pthread_mutex_lock(&s->writer);
        /* an index from another node means nothing here: fetch */
        bool moved = strcmp(s->known_node, node) != 0 || s->known_index != mi;
        pthread_mutex_unlock(&s->writer);
        if (moved)
            rc = fetch_service(w, s);
    }
    json_decref(root);
    return rc;
}

/* One blocking query. 0 answered (or gave way to something urgent), -1
 * no node answered. */
static int watch_once(struct watcher *w)
{
    sluice_client *c = w->c;
    /* Indexes are per node: a watch on another node than the last answer's
     * starts from 0 (an answer at once, then every service compared). */
    if (strcmp(c->nodes[atomic_load(&c->node_cur)].name, w->node) != 0)
        w->model_index = 0;
    char path[128];
    snprintf(path, sizeof path, "/api/registry/services?index=%" PRIu64 "&wait=%" PRIu32 "ms", w->model_index,
             c->cfg.watch_wait_ms);
    struct cl_resp r;
    int rc = cl_http_request(w->h, "GET", path, NULL, c->cfg.watch_wait_ms + c->cfg.request_timeout_ms, watch_check,
                             w, &r);
    if (rc == CL_HTTP_OK && r.status == 200) {
        atomic_fetch_add(&c->st.watches, 1);
        rc = on_services_list(w, r.node_name, r.body, r.len);
    } else if (rc == CL_HTTP_OK) {
        cl_log(c, SLUICE_LOG_WARN, "registry %s: the services list answered HTTP %ld", r.node_name, r.status);
        rc = -1;
    }
    cl_resp_free(&r);
    return rc == CL_HTTP_ABORTED ? 0 : rc;
}

static void watcher_turn(struct watcher *w)
{
    sluice_client *c = w->c;
    maybe_failover(w);
    if (c->n_nodes == 0) {
        idle(w, FAILOVER_CHECK_MS);
        atomic_store(&c->wake, false);
        return;
    }
    atomic_store(&c->wake, false);
    int rc = fetch_services(w, false);
    if (rc == 0 && cl_now_ms() >= w->next_pull_ms) {
        rc = fetch_services(w, true);
        if (rc == 0)
            w->next_pull_ms = cl_now_ms() + c->cfg.pull_interval_ms;
    }
    if (rc == 0)
        rc = watch_once(w);
    if (rc < 0) {
        w->retry_ms = w->retry_ms ? w->retry_ms * 2 : RETRY_MIN_MS;
        if (w->retry_ms > RETRY_MAX_MS)
            w->retry_ms = RETRY_MAX_MS;
        idle(w, w->retry_ms);
    } else {
        w->retry_ms = 0;
    }
}

void *cl_watcher_main(void *arg)
{
    sluice_client *c = arg;
    struct watcher w = {.c = c, .next_pull_ms = cl_now_ms() + c->cfg.pull_interval_ms};
    w.h = cl_http_new(c);
    if (!w.h) {
        cl_log(c, SLUICE_LOG_ERROR, "watcher: out of memory; no updates");
        return NULL;
    }
    pthread_mutex_lock(&c->lock);
    c->watch_http = w.h;
    pthread_mutex_unlock(&c->lock);
    while (!atomic_load(&c->stop))
        watcher_turn(&w);
    pthread_mutex_lock(&c->lock);
    c->watch_http = NULL;
    pthread_mutex_unlock(&c->lock);
    cl_http_free(w.h);
    return NULL;
}

/* ---- reading: picks, members, info ------------------------------------------------- */

static void member_out(struct sluice_member *m, const struct cl_snap_inst *si, bool avoided)
{
    memset(m, 0, sizeof *m);
    memcpy(&m->addr, &si->d.addr, si->d.addrlen);
    m->addrlen = si->d.addrlen;
    cl_copy(m->id, sizeof m->id, si->d.id);
    m->weight = si->d.weight;
    m->healthy = si->d.healthy;
    m->avoided = avoided;
}

int sluice_pick(sluice_service *s, unsigned flags, struct sluice_pick *out)
{
    if (!s || !out)
        return -1;
    sluice_client *c = s->c;
    unsigned tok = cl_grace_enter(&c->grace);
    const struct cl_snap *snap = atomic_load(&s->snap);
    int i = cl_snap_pick(snap, &s->slots, &c->pick, (flags & SLUICE_PICK_P2C) != 0, CL_NOW_LAZY);
    if (i < 0) {
        cl_grace_exit(&c->grace, tok);
        return -1;
    }
    const struct cl_member *m = &snap->members[i];
    const struct cl_snap_inst *si = &snap->inst[m->inst];
    memcpy(&out->addr, &si->d.addr, si->d.addrlen);
    out->addrlen = si->d.addrlen;
    cl_copy(out->host, sizeof out->host, si->d.host);
    out->port = si->d.port;
    cl_copy(out->id, sizeof out->id, si->d.id);
    out->slot_ = m->slot;
    out->version_ = snap->version;
    atomic_fetch_add_explicit(&cl_slot_at(&s->slots, m->slot)->outstanding, 1, memory_order_relaxed);
    cl_grace_exit(&c->grace, tok);
    return 0;
}

void sluice_done(sluice_service *s, const struct sluice_pick *p, enum sluice_result r)
{
    if (!s || !p || p->slot_ >= CL_SLOT_CHUNK * CL_SLOT_CHUNKS ||
        !atomic_load(&s->slots.chunk[p->slot_ / CL_SLOT_CHUNK]))
        return;
    uint64_t now = r == SLUICE_FAILED ? cl_now_ms() : 0;
    cl_slot_done(cl_slot_at(&s->slots, p->slot_), &s->c->pick, (int)r, now);
}

int sluice_members(sluice_service *s, struct sluice_member *out, size_t cap, uint64_t *version)
{
    if (!s)
        return -1;
    sluice_client *c = s->c;
    unsigned tok = cl_grace_enter(&c->grace);
    const struct cl_snap *snap = atomic_load(&s->snap);
    int n = snap ? (int)snap->n_members : 0;
    uint64_t now = cl_now_ms();
    for (size_t i = 0; snap && i < snap->n_members && i < cap; i++) {
        const struct cl_member *m = &snap->members[i];
        member_out(&out[i], &snap->inst[m->inst], cl_slot_avoided(&c->pick, cl_slot_at(&s->slots, m->slot), now));
    }
    if (version)
        *version = snap ? snap->version : 0;
    cl_grace_exit(&c->grace, tok);
    return n;
}

int sluice_instances(sluice_service *s, struct sluice_member *out, size_t cap, uint64_t *version)
{
    if (!s)
        return -1;
    sluice_client *c = s->c;
    unsigned tok = cl_grace_enter(&c->grace);
    const struct cl_snap *snap = atomic_load(&s->snap);
    int n = snap ? (int)snap->n_inst : 0;
    uint64_t now = cl_now_ms();
    for (size_t i = 0; snap && i < snap->n_inst && i < cap; i++) {
        const struct cl_snap_inst *si = &snap->inst[i];
        member_out(&out[i], si, cl_slot_avoided(&c->pick, cl_slot_at(&s->slots, si->slot), now));
    }
    if (version)
        *version = snap ? snap->version : 0;
    cl_grace_exit(&c->grace, tok);
    return n;
}

int sluice_service_info(sluice_service *s, struct sluice_service_info *out)
{
    if (!s || !out)
        return -1;
    sluice_client *c = s->c;
    memset(out, 0, sizeof *out);
    unsigned tok = cl_grace_enter(&c->grace);
    const struct cl_snap *snap = atomic_load(&s->snap);
    if (snap) {
        out->source = (enum sluice_source)snap->source;
        out->version = snap->version;
        out->members = snap->n_members;
        out->instances = snap->n_inst;
        out->healthy = snap->healthy;
        cl_copy(out->tier, sizeof out->tier, sl_tier_name(snap->tier));
        out->fail_open = snap->fail_open;
        out->dns_ttl = snap->dns_ttl;
        out->answer_count = snap->answer_count;
        out->registry_index = snap->registry_index;
    } else {
        out->source = SLUICE_SOURCE_NONE;
        cl_copy(out->tier, sizeof out->tier, "all");
    }
    cl_grace_exit(&c->grace, tok);
    out->updates = atomic_load(&s->updates);
    out->updates_ignored_empty = atomic_load(&s->ignored_empty);
    out->updates_ignored_invalid = atomic_load(&s->ignored_invalid);
    uint64_t at = atomic_load(&s->registry_ms);
    out->age_ms = at ? cl_now_ms() - at : 0;
    out->not_found = out->source == SLUICE_SOURCE_NONE && atomic_load(&s->not_found);
    return 0;
}
