/* What one sluice_pick() + sluice_done() costs a caller, through the public
 * API as a program links it (build/libsluice.a), with no registry: the list
 * comes from a failover directory (DIR/switch present, DIR/bench.json with
 * N instances in three datacenters), so only the pick is measured.
 *
 *   make bench-client        (build/bench/client_pick [INSTANCES] [SECONDS])
 *
 * Prints ns per pick for 1 and 2 threads, weighted and with
 * SLUICE_PICK_P2C, and how evenly the picks followed the weights. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sluice/sluice.h>

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

struct run {
    sluice_service *svc;
    unsigned flags;
    double seconds;
    atomic_bool *go;
    unsigned long picks;
    unsigned long failed;
};

static void *picker(void *arg)
{
    struct run *r = arg;
    while (!atomic_load(r->go))
        ;
    double end = now_s() + r->seconds;
    struct sluice_pick p;
    while (now_s() < end) {
        for (int i = 0; i < 1024; i++) {   /* clock read once per 1024 picks */
            if (sluice_pick(r->svc, r->flags, &p) != 0) {
                r->failed++;
                continue;
            }
            sluice_done(r->svc, &p, SLUICE_OK);
            r->picks++;
        }
    }
    return NULL;
}

static void measure(sluice_service *svc, int threads, unsigned flags, double seconds)
{
    pthread_t t[2];
    struct run runs[2];
    atomic_bool go = false;
    for (int i = 0; i < threads; i++) {
        runs[i] = (struct run){.svc = svc, .flags = flags, .seconds = seconds, .go = &go};
        pthread_create(&t[i], NULL, picker, &runs[i]);
    }
    double start = now_s();
    atomic_store(&go, true);
    unsigned long picks = 0, failed = 0;
    for (int i = 0; i < threads; i++) {
        pthread_join(t[i], NULL);
        picks += runs[i].picks;
        failed += runs[i].failed;
    }
    double took = now_s() - start;
    printf("  %d thread%s %-9s %12.0f picks/s  %6.1f ns per pick (per thread)  failed %lu\n", threads,
           threads > 1 ? "s" : " ", flags & SLUICE_PICK_P2C ? "p2c" : "weighted", picks / took,
           took * threads * 1e9 / (double)picks, failed);
}

int main(int argc, char **argv)
{
    int n = argc > 1 ? atoi(argv[1]) : 100;
    double seconds = argc > 2 ? atof(argv[2]) : 2.0;
    if (n < 1 || n > 4096 || seconds <= 0) {
        fprintf(stderr, "usage: client_pick [INSTANCES 1..4096] [SECONDS]\n");
        return 2;
    }
    char dir[] = "/tmp/sluice-client-pick.XXXXXX";
    if (!mkdtemp(dir))
        return 1;
    char path[256];
    snprintf(path, sizeof path, "%s/switch", dir);
    FILE *f = fopen(path, "w");
    fclose(f);
    snprintf(path, sizeof path, "%s/bench.json", dir);
    f = fopen(path, "w");
    fprintf(f, "{\"name\":\"bench\",\"instances\":[");
    for (int i = 0; i < n; i++)
        fprintf(f, "%s{\"id\":\"i%d\",\"address\":\"10.%d.%d.%d\",\"port\":80,\"weight\":%d,\"datacenter\":\"dc%d\",\"region\":\"r1\"}",
                i ? "," : "", i, i % 3 + 1, i / 250, i % 250 + 1, 100 * (1 + i % 4), i % 3 + 1);
    fprintf(f, "]}\n");
    fclose(f);

    struct sluice_config cfg;
    sluice_config_init(&cfg);
    cfg.failover_dir = dir;
    cfg.datacenter = "dc1";
    cfg.region = "r1";
    char err[256];
    sluice_client *c = sluice_open(&cfg, err, sizeof err);
    if (!c) {
        fprintf(stderr, "client_pick: %s\n", err);
        return 1;
    }
    sluice_service *svc = sluice_subscribe(c, "bench", err, sizeof err);
    if (!svc || sluice_wait_ready(svc, 5000) != 0) {
        fprintf(stderr, "client_pick: the failover list did not load\n");
        return 1;
    }
    struct sluice_service_info info;
    sluice_service_info(svc, &info);
    printf("libsluice %s: %d instances, picks draw from %u (tier %s, source failover), %.0f s per run\n",
           sluice_version(), n, info.members, info.tier, seconds);
    measure(svc, 1, 0, seconds);
    measure(svc, 1, SLUICE_PICK_P2C, seconds);
    measure(svc, 2, 0, seconds);
    measure(svc, 2, SLUICE_PICK_P2C, seconds);
    sluice_close(c);
    snprintf(path, sizeof path, "rm -rf '%s'", dir);
    return system(path) == 0 ? 0 : 1;
}
