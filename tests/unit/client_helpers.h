/* Helpers for libsluice's unit tests: a client with no registry (fed by
 * cl_service_apply, the cache or the failover directory), temporary
 * directories, and service bodies in the registry's format. */
#ifndef SLUICE_TESTS_CLIENT_HELPERS_H
#define SLUICE_TESTS_CLIENT_HELPERS_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "client/client_priv.h"

/* A fresh directory under /tmp (the caller removes it with ch_rmrf). */
static inline void ch_tmpdir(char *buf, size_t cap)
{
    snprintf(buf, cap, "/tmp/sluice-client-test-XXXXXX");
    assert_non_null(mkdtemp(buf));
}

static inline void ch_rmrf(const char *dir)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

static inline void ch_write(const char *dir, const char *name, const char *text)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

/* Messages the library logged, for tests that check what it said. */
struct ch_log {
    char last_warn[1024];
    int warns;
};

static inline void ch_log_cb(void *arg, enum sluice_log_level lvl, const char *msg)
{
    struct ch_log *l = arg;
    if (l && lvl == SLUICE_LOG_WARN) {
        snprintf(l->last_warn, sizeof l->last_warn, "%s", msg);
        l->warns++;
    }
}

/* A client with only a cache and/or failover directory (no registry). */
static inline sluice_client *ch_open(const char *cache_dir, const char *failover_dir, const char *dc,
                                     const char *region, struct ch_log *log)
{
    struct sluice_config cfg;
    sluice_config_init(&cfg);
    cfg.cache_dir = cache_dir;
    cfg.failover_dir = failover_dir;
    cfg.datacenter = dc;
    cfg.region = region;
    cfg.pull_interval_ms = 1000;
    cfg.log = ch_log_cb;
    cfg.log_arg = log;
    char err[256];
    sluice_client *c = sluice_open(&cfg, err, sizeof err);
    if (!c)
        fail_msg("sluice_open: %s", err);
    return c;
}

/* A registry answer for service `name` at modify_index with instances
 * given as JSON objects' text, comma separated ("" for none). */
static inline char *ch_body(const char *name, unsigned long long modify_index, const char *instances)
{
    size_t cap = strlen(instances) + 512;
    char *b = malloc(cap);
    assert_non_null(b);
    snprintf(b, cap,
             "{\"name\":\"%s\",\"index\":%llu,\"modify_index\":%llu,\"settings\":{\"protect_threshold\":0,"
             "\"locality\":{\"min_healthy\":1,\"min_healthy_ratio\":0},\"dns_ttl\":7,\"answer_count\":2},"
             "\"instances\":[%s]}",
             name, modify_index + 5, modify_index, instances);
    return b;
}

/* One instance's JSON text. */
static inline void ch_inst(char *buf, size_t cap, const char *id, const char *addr, int port, int weight,
                           const char *dc, const char *region, bool up)
{
    snprintf(buf, cap,
             "{\"id\":\"%s\",\"address\":\"%s\",\"port\":%d,\"weight\":%d,\"datacenter\":\"%s\",\"region\":\"%s\","
             "\"enabled\":true,\"health\":\"%s\",\"labels\":{}}",
             id, addr, port, weight, dc, region, up ? "up" : "down");
}

static inline void ch_apply(sluice_service *s, const char *node, long status, const char *body)
{
    cl_service_apply(s, node, status, body, body ? strlen(body) : 0);
}

static inline struct sluice_service_info ch_info(sluice_service *s)
{
    struct sluice_service_info si;
    assert_int_equal(sluice_service_info(s, &si), 0);
    return si;
}

#endif
