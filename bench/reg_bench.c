/* The registry's model and embedded store, measured (make bench-registry-model):
 *
 *   answers   A picks (1 and 3 records) and SRV answers per second from a
 *             service of 1,000 instances in 10 datacenters, the subnet
 *             lookup, and the cost of rebuilding a service's views
 *   store     registrations per second into the SQLite store with and
 *             without group commit (1, 10, 100, 1000 writes per commit),
 *             at synchronous=FULL (the default) and NORMAL
 *
 *   build/bench/reg_bench [DIR]     DIR: where the store bench writes
 *                                   (default build/bench/reg-store; it
 *                                   must be on the disk you care about)
 *
 * One thread, one process; numbers on this machine only mean something
 * beside each other. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "lib/hash.h"
#include "registry/reg_model.h"
#include "registry/reg_select.h"
#include "registry/reg_store.h"
#include "registry/reg_subnet.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what, const char *err)
{
    fprintf(stderr, "reg_bench: %s: %s\n", what, err);
    exit(1);
}

static struct reg_model *big_model(struct reg_service **svc_out, int n_instances)
{
    struct reg_model_conf c;
    reg_model_conf_defaults(&c);
    char err[256];
    struct reg_model *m = reg_model_create(&c, err, sizeof err);
    if (!m)
        die("model", err);
    struct reg_service *svc;
    if (reg_service_put(m, "web", NULL, &svc, err, sizeof err) < 0)
        die("service", err);
    for (int i = 0; i < n_instances; i++) {
        char addr[64], dc[16];
        snprintf(addr, sizeof addr, "10.%d.%d.%d:80", i / 65536, (i / 256) % 256, i % 256);
        snprintf(dc, sizeof dc, "dc%d", i % 10);
        struct reg_instance_spec spec = {.weight = 1 + (uint32_t)(i % 100), .datacenter = dc,
                                         .region = i % 10 < 5 ? "east" : "west", .enabled = true};
        const char *why;
        if (addr_parse(addr, &spec.addr, &why) < 0)
            die("address", why);
        if (reg_instance_put(m, svc, &spec, 0, NULL, err, sizeof err) < 0)
            die("instance", err);
    }
    *svc_out = svc;
    return m;
}

static void bench_answers(void)
{
    struct reg_service *svc;
    struct reg_model *m = big_model(&svc, 1000);
    char err[256];
    struct reg_loc caller;
    if (reg_model_loc(m, "dc3", "east", &caller, err, sizeof err) < 0)
        die("loc", err);
    struct reg_rand r;
    reg_rand_seed(&r, 1);
    const struct reg_instance *out[8];
    uint64_t sink = 0;
    const int N = 5000000;

    for (int answers = 1; answers <= 3; answers += 2) {
        reg_answer_pick(m, svc, caller, REG_FAMILY_V4, &r, out, (uint32_t)answers, NULL); /* build the views */
        double t0 = now_s();
        for (int i = 0; i < N; i++)
            sink += (uint64_t)reg_answer_pick(m, svc, caller, REG_FAMILY_V4, &r, out, (uint32_t)answers, NULL);
        double dt = now_s() - t0;
        printf("  A pick, %d record%s, 1000 instances: %8.0f k answers/s  %6.1f ns each\n", answers,
               answers > 1 ? "s" : " ", N / dt / 1e3, dt / N * 1e9);
    }

    struct reg_service *small;
    struct reg_model *m2 = big_model(&small, 100);
    struct reg_loc c2;
    reg_model_loc(m2, "dc3", "east", &c2, err, sizeof err);
    struct reg_srv srv[128];
    const int NS = 500000;
    double t0 = now_s();
    for (int i = 0; i < NS; i++)
        sink += (uint64_t)reg_answer_srv(m2, small, c2, srv, 128, NULL, NULL);
    double dt = now_s() - t0;
    printf("  SRV, all of 100 instances:          %8.0f k answers/s  %6.1f ns each\n", NS / dt / 1e3, dt / NS * 1e9);

    /* The rebuild after a change, 10,000 instances. */
    struct reg_service *huge;
    struct reg_model *m3 = big_model(&huge, 10000);
    struct reg_loc c3;
    reg_model_loc(m3, "dc3", "east", &c3, err, sizeof err);
    const int NR = 200;
    t0 = now_s();
    for (int i = 0; i < NR; i++) {
        reg_instance_set_weight(m3, huge->instances[0], 1 + (uint32_t)(i % 2)); /* a change: views dirty */
        sink += (uint64_t)reg_answer_pick(m3, huge, c3, REG_FAMILY_V4, &r, out, 1, NULL);
    }
    dt = now_s() - t0;
    printf("  first answer after a change, 10,000 instances: %6.2f ms (the views' rebuild)\n", dt / NR * 1e3);

    /* Subnet lookups: 1,000 /24s and /16s, addresses spread over them. */
    struct reg_subnets *t = reg_subnets_new();
    for (int i = 0; i < 1000; i++) {
        char cidr[32];
        if (i % 10 == 0)
            snprintf(cidr, sizeof cidr, "10.%d.0.0/16", i / 10);
        else
            snprintf(cidr, sizeof cidr, "10.%d.%d.0/24", i / 10, i % 10);
        if (reg_subnets_add(t, cidr, c3, err, sizeof err) < 0)
            die("subnet", err);
    }
    if (reg_subnets_build(t, err, sizeof err) < 0)
        die("subnets", err);
    const int NL = 10000000;
    t0 = now_s();
    for (int i = 0; i < NL; i++) {
        uint32_t a = 0x0a000000u | (uint32_t)(sl_mix64((uint64_t)i) & 0x00ffffffu);
        uint8_t b[4] = {(uint8_t)(a >> 24), (uint8_t)(a >> 16), (uint8_t)(a >> 8), (uint8_t)a};
        struct reg_loc loc;
        uint8_t scope;
        sink += reg_subnets_lookup4(t, b, &loc, &scope) + scope;
    }
    dt = now_s() - t0;
    printf("  subnet lookup, 1,000 prefixes, with the ECS scope: %6.1f ns each\n", dt / NL * 1e9);
    if (sink == 42)
        printf(" \n");
    reg_subnets_free(t);
    reg_model_free(m);
    reg_model_free(m2);
    reg_model_free(m3);
}

static uint64_t acked;

static void on_done(void *arg, bool ok, const char *reason)
{
    (void)arg;
    if (!ok)
        die("write", reason);
    acked++;
}

static void bench_store(const char *dir, enum reg_sqlite_sync sync, int batch)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        die("rm", dir);
    struct reg_sqlite_opts opts = {.sync = sync};
    char err[512];
    struct reg_store *st = reg_store_sqlite_open(dir, &opts, err, sizeof err);
    if (!st)
        die("open", err);
    acked = 0;
    /* At most 20,000 writes or about 3 seconds, whichever comes first. */
    double t0 = now_s(), dt = 0;
    uint32_t i = 0;
    while (i < 20000 && dt < 3.0) {
        for (int k = 0; k < batch; k++, i++) {
            char addr[32], id[32];
            snprintf(addr, sizeof addr, "10.%u.%u.%u:80", (i >> 16) & 255, (i >> 8) & 255, i & 255);
            snprintf(id, sizeof id, "i-%u", i);
            struct reg_instance_spec spec = {.id = id, .weight = 100, .enabled = true, .datacenter = "dc1",
                                             .region = "east"};
            const char *why;
            addr_parse(addr, &spec.addr, &why);
            reg_store_put_instance(st, "web", &spec, on_done, NULL);
        }
        reg_store_flush(st);
        dt = now_s() - t0;
    }
    struct reg_store_stats stats;
    reg_store_stats(st, &stats);
    reg_store_close(st);
    printf("  %-6s %4d writes/commit: %8.0f writes/s  %7.0f commits/s  (%llu writes)\n",
           sync == REG_SQLITE_SYNC_FULL ? "FULL" : "NORMAL", batch, (double)acked / dt, (double)stats.commits / dt,
           (unsigned long long)acked);
    if (system(cmd) != 0)
        die("rm", dir);
}

int main(int argc, char **argv)
{
    const char *dir = argc > 1 ? argv[1] : "build/bench/reg-store";
    printf("answers (one thread):\n");
    bench_answers();
    printf("embedded store, registrations acknowledged per second (%s):\n", dir);
    const int batches[] = {1, 10, 100, 1000};
    for (int s = 0; s < 2; s++)
        for (size_t b = 0; b < sizeof batches / sizeof batches[0]; b++)
            bench_store(dir, s ? REG_SQLITE_SYNC_NORMAL : REG_SQLITE_SYNC_FULL, batches[b]);
    return 0;
}
