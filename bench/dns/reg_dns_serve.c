/* The registry's DNS server on a model filled with a fixed set of names,
 * for bench/dns.sh (dnsperf against it, NSD and Knot). A release build of
 * src/registry/reg_dns.c on one event loop, one thread: what `sluice
 * registry` runs, without the API and the store.
 *
 *   build/bench/reg_dns_serve serve ADDR:PORT [SERVICES [INSTANCES]]
 *   build/bench/reg_dns_serve zone [SERVICES [INSTANCES]]
 *   build/bench/reg_dns_serve config ADDR:PORT DATA_DIR [SERVICES [INSTANCES]]
 *
 * The model: services svc0..svc(SERVICES-1) (default 100) in the zone
 * bench.test., each with INSTANCES (default 3) IPv4 instances
 * 10.H.L.i (H.L the service number) of weights 100, 200, 300, ...,
 * answer_count INSTANCES, TTL 5; no datacenters, so every caller gets
 * every instance (A: all of them, in a weighted order drawn per query;
 * SRV: all at priority 2 with their A records as additional data).
 *
 * "zone" prints the static zone that gives answers of the same names and
 * record counts (what NSD and Knot serve): SOA and NS at the apex, the A
 * records of each service, its SRV records (weights scaled as the
 * registry scales them) and the A records of the SRV targets. "serve"
 * prints "ready PORT" once it answers, then runs until killed. "config"
 * prints a `sluice registry` configuration with the same services (DNS on
 * ADDR:PORT, no health checks, no API listener), for bench/dns.sh
 * REGISTRY=daemon. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/evloop.h"
#include "registry/reg_dns.h"
#include "registry/reg_model.h"
#include "registry/reg_select.h"

#define ZONE "bench.test."

static void die(const char *what, const char *err)
{
    fprintf(stderr, "reg_dns_serve: %s: %s\n", what, err);
    exit(1);
}

static void addr_of(unsigned s, unsigned i, char *out, size_t cap)
{
    snprintf(out, cap, "10.%u.%u.%u", s / 256, s % 256, i + 1);
}

static struct reg_model *fill(unsigned services, unsigned instances)
{
    char err[256];
    struct reg_model_conf mc;
    reg_model_conf_defaults(&mc);
    struct reg_model *m = reg_model_create(&mc, err, sizeof err);
    if (!m)
        die("model", err);
    for (unsigned s = 0; s < services; s++) {
        char name[32];
        snprintf(name, sizeof name, "svc%u", s);
        struct reg_service_settings set;
        reg_service_settings_defaults(&set);
        set.answer_count = instances;
        set.dns_ttl = 5;
        struct reg_service *svc;
        if (reg_service_put(m, name, &set, &svc, err, sizeof err) < 0)
            die(name, err);
        reg_service_settings_free(&set);
        for (unsigned i = 0; i < instances; i++) {
            char a[64];
            addr_of(s, i, a, sizeof a);
            strcat(a, ":80");
            struct reg_instance_spec spec = {.weight = 100 * (i + 1), .enabled = true};
            const char *why;
            if (addr_parse(a, &spec.addr, &why) < 0)
                die(a, why);
            if (reg_instance_put(m, svc, &spec, 0, NULL, err, sizeof err) < 0)
                die(a, err);
        }
    }
    return m;
}

static void print_zone(unsigned services, unsigned instances)
{
    printf("$ORIGIN " ZONE "\n$TTL 5\n");
    printf("@ 3600 IN SOA ns1." ZONE " hostmaster." ZONE " 1 3600 600 604800 30\n");
    printf("@ 3600 IN NS ns1." ZONE "\n");
    for (unsigned s = 0; s < services; s++) {
        for (unsigned i = 0; i < instances; i++) {
            char a[64];
            addr_of(s, i, a, sizeof a);
            printf("svc%u IN A %s\n", s, a);
        }
        unsigned max = 100 * instances;
        for (unsigned i = 0; i < instances; i++) {
            char a[64], label[64];
            addr_of(s, i, a, sizeof a);
            snprintf(label, sizeof label, "%s", a);
            for (char *p = label; *p; p++)
                if (*p == '.')
                    *p = '-';
            unsigned long w = ((unsigned long)100 * (i + 1) * 65535 + max / 2) / max;
            printf("_svc%u._tcp IN SRV 2 %lu 80 %s.svc%u\n", s, w, label, s);
            printf("%s.svc%u IN A %s\n", label, s, a);
        }
    }
}

static void print_config(const char *listen, const char *data_dir, unsigned services, unsigned instances)
{
    printf("log: { level: warn }\n"
           "registry:\n"
           "  node: bench\n"
           "  data_dir: %s\n"
           "  dns:\n"
           "    listen: [%s]\n"
           "    zone: " ZONE "\n"
           "  services:\n",
           data_dir, listen);
    for (unsigned s = 0; s < services; s++) {
        printf("    - name: svc%u\n      dns_ttl: 5\n      answer_count: %u\n      instances:\n", s, instances);
        for (unsigned i = 0; i < instances; i++) {
            char a[64];
            addr_of(s, i, a, sizeof a);
            printf("        - { address: %s, port: 80, weight: %u }\n", a, 100 * (i + 1));
        }
    }
}

int main(int argc, char **argv)
{
    static const char usage[] = "usage: reg_dns_serve serve ADDR:PORT [SERVICES [INSTANCES]]\n"
                                "       reg_dns_serve zone [SERVICES [INSTANCES]]\n"
                                "       reg_dns_serve config ADDR:PORT DATA_DIR [SERVICES [INSTANCES]]\n";
    if (argc < 2 || (strcmp(argv[1], "serve") != 0 && strcmp(argv[1], "zone") != 0 &&
                     strcmp(argv[1], "config") != 0)) {
        fputs(usage, stderr);
        return 2;
    }
    bool serve = strcmp(argv[1], "serve") == 0, config = strcmp(argv[1], "config") == 0;
    int base = serve ? 3 : config ? 4 : 2;
    if (argc < base) {
        fputs(usage, stderr);
        return 2;
    }
    unsigned services = argc > base ? (unsigned)strtoul(argv[base], NULL, 10) : 100;
    unsigned instances = argc > base + 1 ? (unsigned)strtoul(argv[base + 1], NULL, 10) : 3;
    if (services < 1 || services > 65536 || instances < 1 || instances > 250) {
        fprintf(stderr, "reg_dns_serve: SERVICES 1..65536, INSTANCES 1..250\n");
        return 2;
    }
    if (config) {
        print_config(argv[2], argv[3], services, instances);
        return 0;
    }
    if (!serve) {
        print_zone(services, instances);
        return 0;
    }
    struct reg_model *m = fill(services, instances);
    struct reg_dns_conf c;
    reg_dns_conf_defaults(&c);
    snprintf(c.zone, sizeof c.zone, ZONE);
    const char *why;
    if (addr_parse(argv[2], &c.listen[0], &why) < 0)
        die(argv[2], why);
    c.n_listen = 1;
    struct ev_loop *loop = ev_loop_new();
    char err[256];
    struct reg_dns *d = reg_dns_start(loop, &c, m, NULL, err, sizeof err);
    if (!d)
        die("start", err);
    for (unsigned s = 0; s < reg_model_service_count(m); s++)
        reg_answer_prepare(reg_model_service_at(m, s));
    printf("ready %u\n", addr_port(reg_dns_bound(d, 0)));
    fflush(stdout);
    signal(SIGPIPE, SIG_IGN);
    return ev_run(loop) == 0 ? 0 : 1;
}
