/* The registry's HTTP API: see reg_api.h and docs/admin-api.md. */
#include "registry/reg_api.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/config_walk.h"
#include "core/health_conf.h"
#include "core/log.h"
#include "registry/reg_cluster.h"
#include "registry/reg_health.h"

/* ---- documents ----------------------------------------------------------- */

static json_t *duration_json(uint32_t ms)
{
    char buf[32];
    return json_string(config_fmt_ms(buf, sizeof buf, ms));
}

static json_t *settings_json(const struct reg_service_settings *s)
{
    const struct cfg_health *h = &s->health;
    json_t *health = json_pack("{s:s, s:o, s:o, s:i, s:i}", "type", hc_type_names[h->type], "interval",
                               duration_json(h->interval_ms), "timeout", duration_json(h->timeout_ms), "rise",
                               (json_int_t)h->rise, "fall", (json_int_t)h->fall);
    if (h->type == HEALTH_HTTP) {
        char status[16];
        if (h->status_min == h->status_max)
            snprintf(status, sizeof status, "%u", (unsigned)h->status_min);
        else
            snprintf(status, sizeof status, "%u-%u", (unsigned)h->status_min, (unsigned)h->status_max);
        json_object_set_new(health, "path", json_string(h->http_path ? h->http_path : "/"));
        if (h->http_host)
            json_object_set_new(health, "host", json_string(h->http_host));
        json_object_set_new(health, "expect_status", json_string(status));
    }
    return json_pack("{s:f, s:{s:i, s:f}, s:i, s:i, s:{s:o, s:o, s:o}, s:o}", "protect_threshold",
                     s->protect_threshold, "locality", "min_healthy", (json_int_t)s->locality.min_healthy,
                     "min_healthy_ratio", s->locality.min_healthy_ratio, "dns_ttl", (json_int_t)s->dns_ttl,
                     "answer_count", (json_int_t)s->answer_count, "heartbeat", "interval",
                     duration_json(s->heartbeat_interval_ms), "timeout", duration_json(s->heartbeat_timeout_ms),
                     "expire_after", duration_json(s->expire_after_ms), "health", health);
}

static json_t *instance_json(const struct reg_instance *inst, uint64_t now)
{
    char ip[64];
    addr_ip_string((const struct sockaddr *)&inst->addr.ss, ip, sizeof ip);
    json_t *labels = json_object();
    for (uint32_t i = 0; i < inst->n_labels; i++)
        json_object_set_new(labels, inst->labels[i].key, json_string(inst->labels[i].value));
    json_t *o = json_pack("{s:s, s:s, s:i, s:i, s:s, s:s, s:o, s:b, s:b, s:s, s:s, s:I, s:s, s:I}", "id", inst->id,
                          "address", ip, "port", (json_int_t)addr_port(&inst->addr), "weight",
                          (json_int_t)inst->weight, "datacenter", inst->datacenter, "region", inst->region,
                          "labels", labels, "enabled", inst->enabled, "ephemeral", inst->ephemeral, "health",
                          reg_health_name(inst->health), "health_reason", inst->health_reason,
                          "health_changed_ms_ago", (json_int_t)(now - inst->health_changed_ms), "owner",
                          inst->owner, "modify_index", (json_int_t)inst->modify_index);
    json_object_set_new(o, "last_heartbeat_ms_ago",
                        inst->ephemeral ? json_integer((json_int_t)(now - inst->last_heartbeat_ms)) : json_null());
    return o;
}

static int by_id(const void *a, const void *b)
{
    const struct reg_instance *x = *(const struct reg_instance *const *)a;
    const struct reg_instance *y = *(const struct reg_instance *const *)b;
    return strcmp(x->id, y->id);
}

static json_t *service_json(struct reg_daemon *d, struct reg_service *svc)
{
    struct reg_service_summary sum;
    reg_service_summarize(svc, &sum);
    uint64_t now = ev_clock_ms();
    json_t *list = json_array();
    const struct reg_instance **sorted = malloc((svc->n_instances + 1) * sizeof *sorted);
    if (sorted) {
        if (svc->n_instances)
            memcpy(sorted, svc->instances, svc->n_instances * sizeof *sorted);
        qsort(sorted, svc->n_instances, sizeof *sorted, by_id);
        for (uint32_t i = 0; i < svc->n_instances; i++)
            json_array_append_new(list, instance_json(sorted[i], now));
        free(sorted);
    }
    return json_pack("{s:s, s:I, s:I, s:o, s:b, s:b, s:i, s:i, s:o}", "name", svc->name, "index",
                     (json_int_t)reg_model_index(d->model), "modify_index", (json_int_t)svc->modify_index,
                     "settings", settings_json(&svc->settings), "fail_open", sum.protect_active, "eviction_capped",
                     svc->eviction_capped, "healthy", (json_int_t)sum.healthy, "total", (json_int_t)sum.answerable,
                     "instances", list);
}

static json_t *spread_json(struct reg_daemon *d, struct reg_service *svc)
{
    json_t *a = json_array();
    struct reg_spread sp[64];
    int n = reg_service_spread(d->model, svc, sp, 64);
    for (int i = 0; i < n && i < 64; i++)
        json_array_append_new(a, json_pack("{s:s, s:s, s:i, s:i}", "datacenter",
                                           reg_model_loc_name(d->model, sp[i].dc), "region",
                                           reg_model_loc_name(d->model, sp[i].region), "healthy",
                                           (json_int_t)sp[i].healthy, "total", (json_int_t)sp[i].total));
    return a;
}

static int by_name(const void *a, const void *b)
{
    const struct reg_service *x = *(const struct reg_service *const *)a;
    const struct reg_service *y = *(const struct reg_service *const *)b;
    return strcmp(x->name, y->name);
}

/* Cluster mode: answering from a copy etcd may have moved past. */
static bool api_stale(const struct reg_daemon *d)
{
    return reg_store_is_cluster(d->store) && reg_cluster_stale(d->store, NULL, 0);
}

static json_t *list_json(struct reg_daemon *d)
{
    struct reg_model_stats ms;
    reg_model_stats(d->model, &ms);
    uint32_t n = reg_model_service_count(d->model);
    json_t *list = json_array();
    struct reg_service **sorted = malloc((n + 1) * sizeof *sorted);
    if (sorted) {
        for (uint32_t i = 0; i < n; i++)
            sorted[i] = reg_model_service_at(d->model, i);
        qsort(sorted, n, sizeof *sorted, by_name);
        for (uint32_t i = 0; i < n; i++) {
            struct reg_service *svc = sorted[i];
            struct reg_service_summary sum;
            reg_service_summarize(svc, &sum);
            json_array_append_new(list, json_pack("{s:s, s:i, s:i, s:i, s:b, s:b, s:o, s:I}", "name", svc->name,
                                                  "instances", (json_int_t)sum.instances, "healthy",
                                                  (json_int_t)sum.healthy, "enabled", (json_int_t)sum.enabled,
                                                  "fail_open", sum.protect_active, "eviction_capped",
                                                  sum.eviction_capped, "spread", spread_json(d, svc),
                                                  "modify_index", (json_int_t)svc->modify_index));
        }
        free(sorted);
    }
    return json_pack("{s:I, s:o, s:b, s:b}", "index", (json_int_t)reg_model_index(d->model), "services", list,
                     "self_preservation", ms.self_preservation, "stale", api_stale(d));
}

static void reply_doc(struct admin_reply *r, json_t *doc)
{
    if (doc)
        admin_reply_json(r, 200, doc);
    else
        admin_reply_error(r, 500, "out of memory");
}

/* ---- watches -------------------------------------------------------------- */

struct reg_watch {
    struct reg_watch *prev, *next;
    struct reg_daemon *d;
    struct admin_deferred h;
    bool one;                        /* one service (name), else the list */
    char name[REG_NAME_MAX + 1];
    uint64_t index;
    struct ev_timer timer;           /* the wait's end */
};

static void watch_unlink(struct reg_watch *w)
{
    struct reg_daemon *d = w->d;
    if (w->prev)
        w->prev->next = w->next;
    else
        d->watchers = w->next;
    if (w->next)
        w->next->prev = w->prev;
    d->n_watchers--;
    ev_timer_stop(d->loop, &w->timer);
    free(w);
}

/* The current answer of a watch: the list, the service, or a 404. */
static void watch_reply(struct reg_daemon *d, const struct reg_watch *w, struct admin_reply *r)
{
    if (w->one) {
        struct reg_service *svc = reg_service_find(d->model, w->name, strlen(w->name));
        if (svc)
            reply_doc(r, service_json(d, svc));
        else
            admin_reply_error(r, 404, "no service %s", w->name);
    } else {
        reply_doc(r, list_json(d));
    }
}

/* Answer the watcher with the current state and forget it. */
static void watch_answer(struct reg_watch *w)
{
    struct admin_reply r = { 0 };
    watch_reply(w->d, w, &r);
    admin_complete(w->h, &r);
    watch_unlink(w);
}

/* One wake-up renders each answer once, however many watchers share it
 * (a thousand watchers of the list get copies of one document). */
struct wake_cache {
    struct reg_table by_name;        /* service name ("" = the list) -> struct cached */
    struct cached **items;
    size_t n, cap;
};

struct cached {
    char name[REG_NAME_MAX + 1];
    struct admin_reply reply;
};

static const struct admin_reply *cached_reply(struct reg_daemon *d, struct wake_cache *wc, const struct reg_watch *w)
{
    const char *key = w->one ? w->name : "";
    struct cached *c = reg_table_get(&wc->by_name, key, strlen(key));
    if (c)
        return &c->reply;
    if (wc->n == wc->cap) {
        size_t cap = wc->cap ? wc->cap * 2 : 8;
        struct cached **items = realloc(wc->items, cap * sizeof *items);
        if (!items)
            return NULL;
        wc->items = items;
        wc->cap = cap;
    }
    c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    snprintf(c->name, sizeof c->name, "%s", key);
    if (reg_table_put(&wc->by_name, c->name, strlen(c->name), c) < 0) {
        free(c);
        return NULL;
    }
    watch_reply(d, w, &c->reply);
    wc->items[wc->n++] = c;
    return &c->reply;
}

/* Answer w with a copy of the shared answer (or its own when memory is short). */
static void watch_answer_cached(struct reg_daemon *d, struct wake_cache *wc, struct reg_watch *w)
{
    const struct admin_reply *shared = cached_reply(d, wc, w);
    char *body = shared ? malloc(shared->body_len + 1) : NULL;
    if (!body) {
        watch_answer(w);
        return;
    }
    memcpy(body, shared->body, shared->body_len);
    body[shared->body_len] = '\0';
    struct admin_reply r = *shared;
    r.body = body;
    admin_complete(w->h, &r);
    watch_unlink(w);
}

static void watch_timeout(struct ev_loop *loop, struct ev_timer *t)
{
    struct reg_watch *w = t->data;
    w->d->counters.watch_timeouts++;
    watch_answer(w);
}

static void watch_cancel(void *arg)
{
    watch_unlink(arg);
}

static bool watch_passed(struct reg_daemon *d, const struct reg_watch *w)
{
    if (!w->one)
        return reg_model_index(d->model) > w->index;
    struct reg_service *svc = reg_service_find(d->model, w->name, strlen(w->name));
    return !svc || svc->modify_index > w->index;
}

void reg_api_wake(struct reg_daemon *d)
{
    struct wake_cache wc = { 0 };
    reg_table_init(&wc.by_name, 0);
    struct reg_watch *next;
    for (struct reg_watch *w = d->watchers; w; w = next) {
        next = w->next;
        if (watch_passed(d, w)) {
            d->counters.watch_wakeups++;
            watch_answer_cached(d, &wc, w);
        }
    }
    for (size_t i = 0; i < wc.n; i++) {
        free(wc.items[i]->reply.body);
        free(wc.items[i]);
    }
    free(wc.items);
    reg_table_free(&wc.by_name);
}

void reg_api_drop_watchers(struct reg_daemon *d)
{
    while (d->watchers)
        watch_unlink(d->watchers);
}

/* ?index=N&wait=30s: 1 with *index and *wait_ms when the request blocks,
 * 0 when it does not, -1 after a 400. */
static int watch_params(struct reg_daemon *d, const struct admin_request *rq, uint64_t *index, uint32_t *wait_ms,
                        struct admin_reply *r)
{
    const char *is = admin_query_get(rq, "index");
    const char *ws = admin_query_get(rq, "wait");
    if (!is) {
        if (ws) {
            admin_reply_error(r, 400, "wait: only with index (a blocking query waits for a change after index)");
            return -1;
        }
        return 0;
    }
    char *end = NULL;
    errno = 0;
    unsigned long long v = *is >= '0' && *is <= '9' ? strtoull(is, &end, 10) : 0;
    if (!end || *end || errno) {
        admin_reply_error(r, 400, "index: expected a whole number (the index of an earlier answer), got \"%s\"", is);
        return -1;
    }
    *index = v;
    *wait_ms = d->rc->api.max_wait_ms;
    if (ws) {
        uint32_t ms;
        if (config_parse_duration_ms(ws, &ms) < 0) {
            admin_reply_error(r, 400, "wait: expected a duration like \"30s\" or \"5m\", got \"%s\"", ws);
            return -1;
        }
        if (ms < *wait_ms)
            *wait_ms = ms;
    }
    return 1;
}

/* Block the request until the watched index passes, or answer it now. */
static void watch_or_answer(struct reg_daemon *d, const struct admin_request *rq, struct reg_service *svc,
                            struct admin_reply *r)
{
    uint64_t index;
    uint32_t wait_ms;
    int blocking = watch_params(d, rq, &index, &wait_ms, r);
    if (blocking < 0)
        return;
    uint64_t current = svc ? svc->modify_index : reg_model_index(d->model);
    if (!blocking || current > index || wait_ms == 0) {
        reply_doc(r, svc ? service_json(d, svc) : list_json(d));
        return;
    }
    if (d->n_watchers >= d->rc->api.max_watchers) {
        d->counters.watch_refused++;
        admin_reply_error(r, 503, "too many watchers (registry.api.max_watchers is %" PRIu32 ")",
                          d->rc->api.max_watchers);
        return;
    }
    struct reg_watch *w = calloc(1, sizeof *w);
    if (!w) {
        admin_reply_error(r, 503, "out of memory");
        return;
    }
    w->h = admin_defer(rq, watch_cancel, w);
    if (admin_deferred_is_null(w->h)) {
        free(w);
        reply_doc(r, svc ? service_json(d, svc) : list_json(d));
        return;
    }
    w->d = d;
    w->one = svc != NULL;
    if (svc)
        snprintf(w->name, sizeof w->name, "%s", svc->name);
    w->index = index;
    w->next = d->watchers;
    if (d->watchers)
        d->watchers->prev = w;
    d->watchers = w;
    d->n_watchers++;
    ev_timer_init(&w->timer, watch_timeout, w);
    ev_timer_start(d->loop, &w->timer, wait_ms);
}

/* ---- writes --------------------------------------------------------------- */

enum write_op { W_SVC_PUT, W_SVC_DEL, W_INST_PUT, W_INST_DEL, W_INST_PATCH };

/* A write on its way to the store; applied to the model and answered in
 * its completion. */
struct reg_write {
    struct reg_daemon *d;
    enum write_op op;
    struct admin_deferred reply;
    char service[REG_NAME_MAX + 1];
    char id[REG_ID_MAX + 1];
    struct reg_service_settings settings;      /* W_SVC_PUT */
    struct cfg_reg_instance inst;              /* W_INST_PUT */
    bool down;                                 /* W_INST_PUT: the health carried over */
    char reason[REG_REASON_MAX + 1];
    bool has_weight, has_enabled, enabled;     /* W_INST_PATCH */
    uint32_t weight;
};

static void write_free(struct reg_write *w)
{
    if (w->op == W_SVC_PUT)
        reg_service_settings_free(&w->settings);
    reg_conf_instance_free(&w->inst);
    free(w);
}

static void reply_index(struct reg_write *w, const char *id)
{
    struct admin_reply r = { 0 };
    json_t *doc = json_pack("{s:I}", "index", (json_int_t)reg_model_index(w->d->model));
    if (doc && id)
        json_object_set_new(doc, "id", json_string(id));
    reply_doc(&r, doc);
    admin_complete(w->reply, &r);
}

static void reply_error(struct reg_write *w, int status, const char *fmt, const char *arg)
{
    struct admin_reply r = { 0 };
    admin_reply_error(&r, status, fmt, arg);
    admin_complete(w->reply, &r);
}

static void apply_instance_put(struct reg_write *w)
{
    struct reg_daemon *d = w->d;
    char why[256];
    struct reg_service *svc = reg_service_find(d->model, w->service, strlen(w->service));
    if (!svc && reg_service_put(d->model, w->service, NULL, &svc, why, sizeof why) < 0) {
        log_error("registry: service %s: %s (written to the store, not applied)", w->service, why);
        reply_error(w, 500, "%s", why);
        return;
    }
    struct reg_instance_spec spec;
    reg_conf_instance_spec(&w->inst, &spec);
    spec.id = w->id;
    spec.owner = spec.ephemeral ? d->rc->node : NULL;
    spec.down = w->down;
    spec.health_reason = w->down ? w->reason : NULL;
    struct reg_instance *inst;
    if (reg_instance_put(d->model, svc, &spec, ev_clock_ms(), &inst, why, sizeof why) < 0) {
        log_error("registry: instance %s of %s: %s (written to the store, not applied)", w->id, w->service, why);
        reply_error(w, 500, "%s", why);
        return;
    }
    reply_index(w, inst->id);
}

static void apply_patch(struct reg_write *w)
{
    struct reg_daemon *d = w->d;
    struct reg_service *svc = reg_service_find(d->model, w->service, strlen(w->service));
    struct reg_instance *inst = svc ? reg_instance_find(svc, w->id) : NULL;
    if (!inst) {
        /* Deregistered while the change was being written: the store took
         * the change after the deletion, so delete it there again. */
        reg_daemon_delete_instance(d, w->service, w->id, NULL, NULL);
        reply_error(w, 404, "instance %s was deregistered meanwhile", w->id);
        return;
    }
    if (w->has_weight)
        reg_instance_set_weight(d->model, inst, w->weight);
    if (w->has_enabled)
        reg_instance_set_enabled(d->model, inst, w->enabled);
    reply_index(w, inst->id);
}

static void write_done(void *arg, bool ok, const char *reason)
{
    struct reg_write *w = arg;
    struct reg_daemon *d = w->d;
    char why[256];
    if (!ok) {
        d->counters.store_write_failures++;
        reply_error(w, 503, "the store refused the write: %s", reason ? reason : "unknown reason");
        write_free(w);
        return;
    }
    if (reg_store_feeds_model(d->store)) {
        /* Cluster mode: etcd's watch has applied it already (reg_cluster.h);
         * a registration of an ephemeral instance here is a heartbeat too. */
        struct reg_service *svc = reg_service_find(d->model, w->service, strlen(w->service));
        struct reg_instance *inst = svc && w->op == W_INST_PUT ? reg_instance_find(svc, w->id) : NULL;
        if (inst && inst->ephemeral && !inst->remote)
            reg_instance_heartbeat(d->model, inst, ev_clock_ms());
        reply_index(w, w->op == W_INST_PUT ? w->id : NULL);
        write_free(w);
        return;
    }
    switch (w->op) {
    case W_SVC_PUT:
        if (reg_service_put(d->model, w->service, &w->settings, NULL, why, sizeof why) < 0)
            reply_error(w, 500, "%s", why);
        else
            reply_index(w, NULL);
        break;
    case W_SVC_DEL:
        reg_service_delete(d->model, w->service);
        reply_index(w, NULL);
        break;
    case W_INST_PUT:
        apply_instance_put(w);
        break;
    case W_INST_DEL: {
        struct reg_service *svc = reg_service_find(d->model, w->service, strlen(w->service));
        if (svc)
            reg_instance_delete(d->model, svc, w->id);
        reply_index(w, NULL);
        break;
    }
    case W_INST_PATCH:
        apply_patch(w);
        break;
    }
    write_free(w);
}

/* A write struct whose answer waits for the store; NULL after answering r. */
static struct reg_write *write_begin(struct reg_daemon *d, const struct admin_request *rq, enum write_op op,
                                     const char *service, struct admin_reply *r)
{
    struct reg_write *w = calloc(1, sizeof *w);
    if (!w) {
        admin_reply_error(r, 503, "out of memory");
        return NULL;
    }
    w->reply = admin_defer(rq, NULL, NULL);
    if (admin_deferred_is_null(w->reply)) {
        free(w);
        admin_reply_error(r, 503, "this request cannot wait for the store");
        return NULL;
    }
    w->d = d;
    w->op = op;
    snprintf(w->service, sizeof w->service, "%s", service);
    return w;
}

/* ---- routes --------------------------------------------------------------- */

static bool service_name_ok(const char *name, struct admin_reply *r)
{
    char why[200];
    if (reg_service_name_check(name, why, sizeof why) == 0)
        return true;
    admin_reply_error(r, 400, "%s", why);
    return false;
}

static struct reg_service *find_service(struct reg_daemon *d, const char *name, struct admin_reply *r)
{
    if (!service_name_ok(name, r))
        return NULL;
    struct reg_service *svc = reg_service_find(d->model, name, strlen(name));
    if (!svc)
        admin_reply_error(r, 404, "no service %s", name);
    return svc;
}

static void put_service(struct reg_daemon *d, const struct admin_request *rq, const char *name,
                        struct admin_reply *r)
{
    if (!service_name_ok(name, r))
        return;
    struct reg_service_settings s;
    char why[300];
    if (reg_conf_parse_settings_body(rq->body, rq->body_len, &s, why, sizeof why) < 0) {
        admin_reply_error(r, 400, "%s", why);
        return;
    }
    struct reg_write *w = write_begin(d, rq, W_SVC_PUT, name, r);
    if (!w) {
        reg_service_settings_free(&s);
        return;
    }
    for (char *p = w->service; *p; p++)
        *p = (char)(*p >= 'A' && *p <= 'Z' ? *p - 'A' + 'a' : *p);
    w->settings = s;
    reg_daemon_put_service(d, w->service, &w->settings, write_done, w);
}

static void delete_service(struct reg_daemon *d, const struct admin_request *rq, const char *name,
                           struct admin_reply *r)
{
    struct reg_service *svc = find_service(d, name, r);
    if (!svc)
        return;
    struct reg_write *w = write_begin(d, rq, W_SVC_DEL, svc->name, r);
    if (w)
        reg_daemon_delete_service(d, w->service, write_done, w);
}

static void put_instance(struct reg_daemon *d, const struct admin_request *rq, const char *name, const char *id,
                         struct admin_reply *r)
{
    if (!service_name_ok(name, r))
        return;
    struct cfg_reg_instance inst;
    char why[300];
    if (reg_conf_parse_instance_body(rq->body, rq->body_len, &inst, why, sizeof why) < 0) {
        admin_reply_error(r, 400, "%s", why);
        return;
    }
    /* The id is the path's; "-" (or the body's id) lets the address name it. */
    const char *final_id = id && strcmp(id, "-") != 0 ? id : inst.id ? inst.id : inst.addr.text;
    if (id && strcmp(id, "-") != 0 && inst.id && strcmp(inst.id, id) != 0) {
        admin_reply_error(r, 400, "id: the body's id \"%s\" differs from the path's", inst.id);
        reg_conf_instance_free(&inst);
        return;
    }
    struct reg_instance_spec spec;
    reg_conf_instance_spec(&inst, &spec);
    spec.id = final_id;
    if (reg_instance_spec_check(&spec, why, sizeof why) < 0) {
        admin_reply_error(r, 400, "%s", why);
        reg_conf_instance_free(&inst);
        return;
    }
    struct reg_write *w = write_begin(d, rq, W_INST_PUT, name, r);
    if (!w) {
        reg_conf_instance_free(&inst);
        return;
    }
    for (char *p = w->service; *p; p++)
        *p = (char)(*p >= 'A' && *p <= 'Z' ? *p - 'A' + 'a' : *p);
    snprintf(w->id, sizeof w->id, "%s", final_id);
    w->inst = inst;
    /* A re-registration at the same address keeps its health, in the store too. */
    struct reg_service *svc = reg_service_find(d->model, name, strlen(name));
    if (!svc) {
        /* The service this creates, with its default settings, is as
         * durable as the instance: it stays when the instance goes. */
        struct reg_service_settings defaults;
        reg_service_settings_defaults(&defaults);
        reg_daemon_put_service(d, w->service, &defaults, NULL, NULL);
        reg_service_settings_free(&defaults);
    }
    struct reg_instance *old = svc ? reg_instance_find(svc, w->id) : NULL;
    if (old && addr_equal(&old->addr, &inst.addr) && old->health == REG_HEALTH_DOWN) {
        w->down = true;
        snprintf(w->reason, sizeof w->reason, "%s", old->health_reason);
    }
    reg_conf_instance_spec(&w->inst, &spec);
    spec.id = w->id;
    spec.owner = spec.ephemeral ? d->rc->node : NULL;
    spec.down = w->down;
    spec.health_reason = w->down ? w->reason : NULL;
    reg_daemon_put_instance(d, w->service, &spec, write_done, w);
}

static struct reg_instance *find_instance(struct reg_daemon *d, const char *name, const char *id,
                                          struct admin_reply *r)
{
    struct reg_service *svc = find_service(d, name, r);
    if (!svc)
        return NULL;
    struct reg_instance *inst = reg_instance_find(svc, id);
    if (!inst)
        admin_reply_error(r, 404, "service %s has no instance %s", svc->name, id);
    return inst;
}

static void patch_instance(struct reg_daemon *d, const struct admin_request *rq, const char *name, const char *id,
                           struct admin_reply *r)
{
    bool has_weight, has_enabled, enabled;
    uint32_t weight;
    char why[300];
    if (reg_conf_parse_patch_body(rq->body, rq->body_len, &has_weight, &weight, &has_enabled, &enabled, why,
                                  sizeof why) < 0) {
        admin_reply_error(r, 400, "%s", why);
        return;
    }
    struct reg_instance *inst = find_instance(d, name, id, r);
    if (!inst)
        return;
    struct reg_write *w = write_begin(d, rq, W_INST_PATCH, inst->service->name, r);
    if (!w)
        return;
    snprintf(w->id, sizeof w->id, "%s", inst->id);
    w->has_weight = has_weight;
    w->weight = weight;
    w->has_enabled = has_enabled;
    w->enabled = enabled;
    struct reg_instance_spec spec;
    reg_instance_spec_of(inst, &spec);
    if (has_weight)
        spec.weight = weight;
    if (has_enabled)
        spec.enabled = enabled;
    reg_daemon_put_instance(d, w->service, &spec, write_done, w);
}

static void delete_instance(struct reg_daemon *d, const struct admin_request *rq, const char *name, const char *id,
                            struct admin_reply *r)
{
    struct reg_instance *inst = find_instance(d, name, id, r);
    if (!inst)
        return;
    struct reg_write *w = write_begin(d, rq, W_INST_DEL, inst->service->name, r);
    if (!w)
        return;
    snprintf(w->id, sizeof w->id, "%s", inst->id);
    reg_daemon_delete_instance(d, w->service, w->id, write_done, w);
}

static void heartbeat(struct reg_daemon *d, const char *name, const char *id, struct admin_reply *r)
{
    struct reg_instance *inst = find_instance(d, name, id, r);
    if (!inst)
        return;
    if (inst->remote) {
        /* Cluster mode: another node holds it (or held it, and died): the
         * client registers again here, which moves it. */
        admin_reply_error(r, 404, "instance %s is held by node %s: register it on this node", inst->id, inst->owner);
        return;
    }
    reg_instance_heartbeat(d->model, inst, ev_clock_ms());
    /* The weight and enabled flag as an operator may have set them: a
     * provider that registers again (after a restart of this node, or on
     * another node) registers them, not its own first ones. */
    reply_doc(r, json_pack("{s:I, s:s, s:I, s:b}", "index", (json_int_t)reg_model_index(d->model), "health",
                           reg_health_name(inst->health), "weight", (json_int_t)inst->weight, "enabled",
                           inst->enabled));
}

/* ---- /answer ---------------------------------------------------------------- */

static json_t *record_json(const struct reg_daemon *d, const struct reg_instance *inst)
{
    char ip[64];
    addr_ip_string((const struct sockaddr *)&inst->addr.ss, ip, sizeof ip);
    return json_pack("{s:s, s:s, s:i, s:i, s:s, s:s, s:s}", "id", inst->id, "address", ip, "port",
                     (json_int_t)addr_port(&inst->addr), "weight", (json_int_t)inst->weight, "datacenter",
                     inst->datacenter, "region", inst->region, "health", reg_health_name(inst->health));
}

static json_t *tier_json(const struct reg_daemon *d, const struct reg_tier_stat *t)
{
    return json_pack("{s:s, s:i, s:i, s:b}", "name", reg_model_loc_name(d->model, t->id), "healthy",
                     (json_int_t)t->healthy, "total", (json_int_t)t->total, "qualified", t->qualified);
}

/* Where the caller is: ?client=IP through the subnet map, else
 * ?datacenter=&region= by name. 0, or -1 after a 400. */
static int caller_location(struct reg_daemon *d, const struct admin_request *rq, struct reg_loc *loc,
                           struct admin_reply *r)
{
    const char *client = admin_query_get(rq, "client");
    *loc = (struct reg_loc){ 0 };
    if (client) {
        uint8_t a[16];
        if (inet_pton(AF_INET, client, a) == 1)
            reg_subnets_lookup4(d->subnets, a, loc, NULL);
        else if (inet_pton(AF_INET6, client, a) == 1)
            reg_subnets_lookup6(d->subnets, a, loc, NULL);
        else {
            admin_reply_error(r, 400, "client: expected an IPv4 or IPv6 address, got \"%s\"", client);
            return -1;
        }
        return 0;
    }
    *loc = reg_daemon_locate_names(d, admin_query_get(rq, "datacenter"), admin_query_get(rq, "region"));
    return 0;
}

static void answer(struct reg_daemon *d, const struct admin_request *rq, const char *name, struct admin_reply *r)
{
    struct reg_service *svc = find_service(d, name, r);
    if (!svc)
        return;
    const char *fam = admin_query_get(rq, "family");
    fam = fam ? fam : "a";
    bool srv = strcmp(fam, "srv") == 0;
    enum reg_family family = strcmp(fam, "a") == 0 ? REG_FAMILY_V4 : strcmp(fam, "aaaa") == 0 ? REG_FAMILY_V6 : REG_FAMILY_ANY;
    if (!srv && family == REG_FAMILY_ANY) {
        admin_reply_error(r, 400, "family: expected a, aaaa or srv, got \"%s\"", fam);
        return;
    }
    struct reg_loc caller;
    if (caller_location(d, rq, &caller, r) < 0)
        return;
    struct reg_explain ex;
    json_t *records = json_array();
    int n;
    if (srv) {
        uint32_t cap = svc->n_instances ? svc->n_instances : 1;
        struct reg_srv *out = calloc(cap, sizeof *out);
        n = out ? reg_answer_srv(d->model, svc, caller, out, cap, NULL, &ex) : -ENOMEM;
        for (int i = 0; i < n; i++) {
            json_t *rec = record_json(d, out[i].inst);
            json_object_set_new(rec, "priority", json_integer(out[i].priority));
            json_object_set_new(rec, "srv_weight", json_integer(out[i].weight));
            json_array_append_new(records, rec);
        }
        free(out);
    } else {
        const struct reg_instance *out[REG_ANSWER_MAX];
        n = reg_answer_pick(d->model, svc, caller, family, &d->rnd, out, svc->settings.answer_count, &ex);
        for (int i = 0; i < n; i++)
            json_array_append_new(records, record_json(d, out[i]));
    }
    if (n < 0) {
        json_decref(records);
        admin_reply_error(r, 500, "out of memory");
        return;
    }
    char words[512];
    reg_explain_format(d->model, &ex, words, sizeof words);
    json_t *doc = json_pack("{s:s, s:I, s:s, s:b, s:o, s:s, s:{s:s, s:s}, s:{s:o, s:o, s:o}, s:i}", "name",
                            svc->name, "index", (json_int_t)reg_model_index(d->model), "tier", reg_tier_name(ex.tier),
                            "fail_open", ex.protect_active, "records", records, "explain", words, "caller",
                            "datacenter", reg_model_loc_name(d->model, caller.dc), "region",
                            reg_model_loc_name(d->model, caller.region), "tiers", "datacenter", tier_json(d, &ex.dc),
                            "region", tier_json(d, &ex.region), "all", tier_json(d, &ex.all), "ttl",
                            (json_int_t)svc->settings.dns_ttl);
    reply_doc(r, doc);
}

/* ---- dispatch --------------------------------------------------------------- */

static bool is_write(const char *method)
{
    return strcmp(method, "PUT") == 0 || strcmp(method, "PATCH") == 0 || strcmp(method, "POST") == 0 ||
           strcmp(method, "DELETE") == 0;
}

static bool method_is(const struct admin_request *rq, const char *m)
{
    return strcmp(rq->method, m) == 0;
}

void reg_api_handle(void *arg, const struct admin_request *rq, struct admin_reply *r)
{
    struct reg_daemon *d = arg;
    const char *const *s = rq->seg;
    size_t n = rq->n_seg;
    if (is_write(rq->method) && d->rc->token && !admin_token_ok(rq, d->rc->token)) {
        d->counters.api_unauthorized++;
        admin_reply_error(r, 401, "this registry needs its API token for writes (X-Sluice-Token: T or "
                                  "Authorization: Bearer T)");
        return;
    }
    if (n == 0 || strcmp(s[0], "services") != 0) {
        admin_reply_error(r, 404, "no such path (see /api/registry/services)");
        return;
    }
    bool get = admin_is_get(rq);
    if (n == 1) {
        if (get)
            watch_or_answer(d, rq, NULL, r);
        else
            admin_reply_method_not_allowed(r, "GET, HEAD");
        return;
    }
    const char *name = s[1];
    if (n == 2) {
        if (get) {
            struct reg_service *svc = find_service(d, name, r);
            if (svc)
                watch_or_answer(d, rq, svc, r);
        } else if (method_is(rq, "PUT")) {
            put_service(d, rq, name, r);
        } else if (method_is(rq, "DELETE")) {
            delete_service(d, rq, name, r);
        } else {
            admin_reply_method_not_allowed(r, "GET, HEAD, PUT, DELETE");
        }
        return;
    }
    if (n == 3 && strcmp(s[2], "answer") == 0) {
        if (get)
            answer(d, rq, name, r);
        else
            admin_reply_method_not_allowed(r, "GET, HEAD");
        return;
    }
    if (strcmp(s[2], "instances") != 0 || n > 5 || n == 3) {
        admin_reply_error(r, 404, "no such path");
        return;
    }
    const char *id = s[3];
    if (n == 5) {
        if (strcmp(s[4], "heartbeat") != 0)
            admin_reply_error(r, 404, "no such path");
        else if (method_is(rq, "POST") || method_is(rq, "PUT"))
            heartbeat(d, name, id, r);
        else
            admin_reply_method_not_allowed(r, "POST, PUT");
        return;
    }
    if (get) {
        struct reg_instance *inst = find_instance(d, name, id, r);
        if (inst)
            reply_doc(r, instance_json(inst, ev_clock_ms()));
    } else if (method_is(rq, "PUT")) {
        put_instance(d, rq, name, id, r);
    } else if (method_is(rq, "PATCH")) {
        patch_instance(d, rq, name, id, r);
    } else if (method_is(rq, "DELETE")) {
        delete_instance(d, rq, name, id, r);
    } else {
        admin_reply_method_not_allowed(r, "GET, HEAD, PUT, PATCH, DELETE");
    }
}

/* ---- /api/status ---------------------------------------------------------------- */

void reg_api_status(void *arg, json_t *status)
{
    struct reg_daemon *d = arg;
    struct reg_model_stats ms;
    reg_model_stats(d->model, &ms);
    struct reg_store_stats ss = { 0 };
    if (d->store)
        reg_store_stats(d->store, &ss);
    json_object_set_new(status, "registry",
                        json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:b, s:b, s:i, s:i, s:i, s:i, s:i}", "node",
                                  d->rc->node, "datacenter", d->rc->datacenter ? d->rc->datacenter : "", "region",
                                  d->rc->region ? d->rc->region : "", "store", reg_store_kind_name(d->rc->store),
                                  "store_state", ss.healthy ? "ok" : "failing", "store_error", ss.last_error,
                                  "stale", api_stale(d), "self_preservation", ms.self_preservation, "services",
                                  (json_int_t)ms.services, "instances", (json_int_t)ms.instances, "ephemeral",
                                  (json_int_t)ms.ephemeral, "watchers", (json_int_t)d->n_watchers,
                                  "health_checks", (json_int_t)reg_health_targets(d->health)));
}
