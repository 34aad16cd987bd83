/* Shared by the registry unit tests (tests/unit/test_reg_*.c): a model
 * with known settings and short ways to register instances. Header-only;
 * include after <cmocka.h>. */
#ifndef SLUICE_TESTS_REG_HELPERS_H
#define SLUICE_TESTS_REG_HELPERS_H

#include <stdio.h>
#include <string.h>

#include "registry/reg_model.h"

/* A model with the defaults and a fixed hash seed. */
static inline struct reg_model *th_model(const struct reg_model_conf *conf)
{
    struct reg_model_conf c;
    if (conf)
        c = *conf;
    else
        reg_model_conf_defaults(&c);
    if (!c.hash_seed)
        c.hash_seed = 0x5eed;
    char err[256] = "";
    struct reg_model *m = reg_model_create(&c, err, sizeof err);
    if (!m)
        fprintf(stderr, "reg_model_create: %s\n", err);
    assert_non_null(m);
    return m;
}

static inline struct reg_service *th_service(struct reg_model *m, const char *name,
                                             const struct reg_service_settings *s)
{
    struct reg_service *svc = NULL;
    char err[256] = "";
    int rc = reg_service_put(m, name, s, &svc, err, sizeof err);
    if (rc)
        fprintf(stderr, "reg_service_put %s: %s\n", name, err);
    assert_int_equal(rc, 0);
    return svc;
}

/* A spec for address addr ("10.0.0.1:80") in dc/region with weight w. */
static inline struct reg_instance_spec th_spec(const char *addr, const char *dc, const char *region, uint32_t w)
{
    struct reg_instance_spec spec = {.weight = w, .datacenter = dc, .region = region, .enabled = true};
    const char *why = NULL;
    if (addr_parse(addr, &spec.addr, &why) < 0)
        fprintf(stderr, "addr_parse %s: %s\n", addr, why);
    assert_int_equal(spec.addr.ss.ss_family != 0, 1);
    return spec;
}

static inline struct reg_instance *th_put_spec(struct reg_model *m, struct reg_service *svc,
                                               const struct reg_instance_spec *spec, uint64_t now)
{
    struct reg_instance *inst = NULL;
    char err[256] = "";
    int rc = reg_instance_put(m, svc, spec, now, &inst, err, sizeof err);
    if (rc)
        fprintf(stderr, "reg_instance_put %s: %s\n", spec->addr.text, err);
    assert_int_equal(rc, 0);
    return inst;
}

static inline struct reg_instance *th_put(struct reg_model *m, struct reg_service *svc, const char *addr,
                                          const char *dc, const char *region, uint32_t w)
{
    struct reg_instance_spec spec = th_spec(addr, dc, region, w);
    return th_put_spec(m, svc, &spec, 0);
}

static inline struct reg_instance *th_put_ephemeral(struct reg_model *m, struct reg_service *svc, const char *addr,
                                                    uint64_t now)
{
    struct reg_instance_spec spec = th_spec(addr, "dc1", "r1", 100);
    spec.ephemeral = true;
    return th_put_spec(m, svc, &spec, now);
}

static inline struct reg_loc th_loc(struct reg_model *m, const char *dc, const char *region)
{
    struct reg_loc loc;
    char err[256];
    assert_int_equal(reg_model_loc(m, dc, region, &loc, err, sizeof err), 0);
    return loc;
}

#endif
