/* Active health checks of persistent instances: see reg_health.h. */
#include "registry/reg_health.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/health.h"
#include "core/log.h"
#include "registry/reg_table.h"

struct hsvc;

/* One checked instance. */
struct hentry {
    struct reg_checker *h;
    struct hsvc *svc;
    char id[REG_ID_MAX + 1];
    struct sl_addr addr;
    struct cfg_health check;          /* what the target runs, to notice a change */
    struct hc_target *target;
    uint32_t slot;                    /* index in svc->entries */
    bool seen;
};

/* The targets of one service. */
struct hsvc {
    char name[REG_NAME_MAX + 1];
    struct reg_table by_id;
    struct hentry **entries;
    uint32_t n, cap;
};

struct reg_checker {
    struct ev_loop *loop;
    struct reg_model *m;
    struct hc_set *set;
    struct reg_table by_name;         /* struct hsvc */
    size_t n_targets;
    reg_health_changed_fn *changed;
    void *arg;
    reg_health_duty_fn *duty;         /* cluster mode: which instances are ours to check */
    void *duty_arg;
};

void reg_health_set_duty(struct reg_checker *h, reg_health_duty_fn *duty, void *arg)
{
    h->duty = duty;
    h->duty_arg = arg;
}

struct reg_checker *reg_health_new(struct ev_loop *loop, struct reg_model *m, reg_health_changed_fn *changed,
                                  void *arg)
{
    struct reg_checker *h = calloc(1, sizeof *h);
    if (!h)
        return NULL;
    h->set = hc_set_new(loop);
    if (!h->set) {
        free(h);
        return NULL;
    }
    h->loop = loop;
    h->m = m;
    h->changed = changed;
    h->arg = arg;
    reg_table_init(&h->by_name, 0x5eedULL ^ (uint64_t)(uintptr_t)h);
    return h;
}

static void entry_free(struct hentry *e)
{
    hc_conf_free(&e->check);
    free(e);
}

static void hsvc_free(struct hsvc *s)
{
    for (uint32_t i = 0; i < s->n; i++)
        entry_free(s->entries[i]);
    free(s->entries);
    reg_table_free(&s->by_id);
    free(s);
}

void reg_health_free(struct reg_checker *h)
{
    if (!h)
        return;
    hc_set_free(h->set);   /* every target with it: no callback runs again */
    for (uint32_t i = 0; i < h->by_name.cap; i++)
        if (h->by_name.slots[i].key)
            hsvc_free(h->by_name.slots[i].item);
    reg_table_free(&h->by_name);
    free(h);
}

size_t reg_health_targets(const struct reg_checker *h)
{
    return h ? h->n_targets : 0;
}

/* A result: applied when it disagrees with the instance's health. */
static void on_result(void *arg, const struct hc_status *st, bool changed)
{
    struct hentry *e = arg;
    struct reg_checker *h = e->h;
    struct reg_service *svc = reg_service_find(h->m, e->svc->name, strlen(e->svc->name));
    struct reg_instance *inst = svc ? reg_instance_find(svc, e->id) : NULL;
    if (!inst || inst->ephemeral || !addr_equal(&inst->addr, &e->addr))
        return;   /* gone or changed since: the next sync replaces this target */
    enum reg_health want = st->up ? REG_HEALTH_UP : REG_HEALTH_DOWN;
    if (inst->health == want)
        return;
    char reason[REG_REASON_MAX + 1];
    if (e->check.type == HEALTH_NONE)
        snprintf(reason, sizeof reason, "%s", st->last_check);
    else
        snprintf(reason, sizeof reason, "%s check %s (%s %u in a row)", hc_type_names[e->check.type],
                 st->last_check, st->up ? "passed" : "failed", st->up ? st->rise : st->fall);
    reg_instance_set_health(h->m, inst, want, reason, ev_clock_ms());
    if (h->changed)
        h->changed(h->arg, inst);
}

static void remove_entry(struct reg_checker *h, struct hentry *e)
{
    struct hsvc *s = e->svc;
    hc_remove(h->set, e->target);
    h->n_targets--;
    reg_table_del(&s->by_id, e->id, strlen(e->id));
    s->entries[e->slot] = s->entries[--s->n];
    s->entries[e->slot]->slot = e->slot;
    entry_free(e);
}

static struct hentry *add_entry(struct reg_checker *h, struct hsvc *s, const struct reg_instance *inst,
                                const struct cfg_health *check)
{
    if (s->n == s->cap) {
        uint32_t cap = s->cap ? s->cap * 2 : 8;
        struct hentry **n = realloc(s->entries, cap * sizeof *n);
        if (!n)
            return NULL;
        s->entries = n;
        s->cap = cap;
    }
    struct hentry *e = calloc(1, sizeof *e);
    if (!e || hc_conf_copy(&e->check, check) < 0) {
        free(e);
        return NULL;
    }
    e->h = h;
    e->svc = s;
    snprintf(e->id, sizeof e->id, "%s", inst->id);
    e->addr = inst->addr;
    if (reg_table_put(&s->by_id, e->id, strlen(e->id), e) < 0) {
        entry_free(e);
        return NULL;
    }
    /* The checks start from what the model holds: a DOWN instance (its
     * health restored from the store after a restart, say) needs `rise`
     * passes to come back. */
    struct hc_target_spec spec = { .addr = inst->addr, .check = check, .group = s->name, .on_result = on_result,
                                   .arg = e };
    hc_status_fresh(&spec.initial, ev_clock_ms());
    spec.initial.up = inst->health == REG_HEALTH_UP;
    e->target = hc_add(h->set, &spec);
    if (!e->target) {
        reg_table_del(&s->by_id, e->id, strlen(e->id));
        entry_free(e);
        return NULL;
    }
    e->slot = s->n;
    s->entries[s->n++] = e;
    h->n_targets++;
    return e;
}

void reg_health_sync(struct reg_checker *h, const char *name)
{
    size_t len = strlen(name);
    struct reg_service *svc = reg_service_find(h->m, name, len);
    struct hsvc *s = reg_table_get(&h->by_name, name, len);
    if (!s && !svc)
        return;
    if (!s) {
        s = calloc(1, sizeof *s);
        if (!s)
            goto oom;
        snprintf(s->name, sizeof s->name, "%s", svc->name);
        reg_table_init(&s->by_id, 0x1d5eedULL ^ (uint64_t)(uintptr_t)s);
        if (reg_table_put(&h->by_name, s->name, strlen(s->name), s) < 0) {
            hsvc_free(s);
            goto oom;
        }
    }
    for (uint32_t i = 0; i < s->n; i++)
        s->entries[i]->seen = false;
    for (uint32_t i = 0; svc && i < svc->n_instances; i++) {
        const struct reg_instance *inst = svc->instances[i];
        if (inst->ephemeral || (h->duty && !h->duty(h->duty_arg, svc->name, inst->id)))
            continue;
        struct hentry *e = reg_table_get(&s->by_id, inst->id, strlen(inst->id));
        if (e && (!addr_equal(&e->addr, &inst->addr) || !hc_conf_equal(&e->check, &svc->settings.health))) {
            remove_entry(h, e);
            e = NULL;
        }
        if (!e)
            e = add_entry(h, s, inst, &svc->settings.health);
        if (!e)
            goto oom;
        e->seen = true;
    }
    for (uint32_t i = s->n; i-- > 0;)
        if (!s->entries[i]->seen)
            remove_entry(h, s->entries[i]);
    if (!svc) {
        reg_table_del(&h->by_name, s->name, strlen(s->name));
        hsvc_free(s);
    }
    return;
oom:
    log_error("registry: out of memory while starting the health checks of service %s", name);
}
