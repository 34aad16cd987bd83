/* The part of the store interface every store shares: loading what a store
 * holds into the model at start (see reg_store.h). */
#include "registry/reg_store.h"

#include <stdio.h>
#include <string.h>

struct load_ctx {
    struct reg_model *m;
    uint64_t now_ms;
    uint32_t services, instances;
};

static int load_service(void *arg, const char *name, const struct reg_service_settings *s, char *err, size_t errlen)
{
    struct load_ctx *c = arg;
    char why[200];
    if (reg_service_put(c->m, name, s, NULL, why, sizeof why) < 0) {
        snprintf(err, errlen, "service %s: %s", name, why);
        return -1;
    }
    c->services++;
    return 0;
}

static int load_instance(void *arg, const char *service, const struct reg_instance_spec *spec, char *err,
                         size_t errlen)
{
    struct load_ctx *c = arg;
    char why[200];
    const char *id = spec->id && *spec->id ? spec->id : spec->addr.text;
    struct reg_service *svc = reg_service_find(c->m, service, strlen(service));
    if (!svc && reg_service_put(c->m, service, NULL, &svc, why, sizeof why) < 0) {
        snprintf(err, errlen, "instance %s of service %s: %s", id, service, why);
        return -1;
    }
    if (reg_instance_load(c->m, svc, spec, c->now_ms, NULL, why, sizeof why) < 0) {
        snprintf(err, errlen, "instance %s of service %s: %s", id, service, why);
        return -1;
    }
    c->instances++;
    return 0;
}

int reg_store_load(struct reg_store *st, struct reg_model *m, uint64_t now_ms, char *err, size_t errlen)
{
    struct load_ctx c = {.m = m, .now_ms = now_ms};
    struct reg_store_scan cb = {.service = load_service, .instance = load_instance, .arg = &c};
    return st->ops->scan(st, &cb, err, errlen);
}
