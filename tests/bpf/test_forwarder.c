/* Packet fixtures for the L4 BPF programs (the XDP forwarder, and the real
 * server's decap and TOA programs), run through BPF_PROG_TEST_RUN.
 *
 * Each fixture builds an input frame in C, runs it once through the loaded
 * program, and checks the verdict, the output bytes (against a frame the
 * test builds on its own, not by replaying the program's logic), the
 * checksums (with tl_verify_csums(), which sums bytes differently from the
 * BPF code) and the counters: exactly one disposition reason per packet,
 * plus the events (connection-table hit/miss, SYN-guard skip) expected.
 *
 * This file is the runner: it loads the forwarder, sets up the world
 * (fixtures.c) and runs the suites, one per feature file (test_*.c), in
 * the order below, or only those named on the command line:
 *
 *   build/l4/test_forwarder [SUITE...]      e.g. build/l4/test_forwarder nat toa
 *
 * Needs root (CAP_BPF + CAP_NET_ADMIN); as non-root it says so and exits 0.
 * The last line is always "N passed, N failed".
 */
#include <stdarg.h>

#include "fixtures.h"

static int passed, failed;

void report(bool ok, const char *fmt, ...)
{
    va_list ap;

    printf("%s ", ok ? "ok  " : "FAIL");
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf("\n");
    if (ok)
        passed++;
    else
        failed++;
}

void run_fixtures(const struct fixture *fixtures, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        bool ok = fixtures[i].fn() == 0;

        report(ok, "%s", fixtures[i].name);
    }
}

static const struct {
    const char *name;
    void (*run)(void);
} suites[] = {
    { "dr_tun", suite_dr_tun },
    { "nat", suite_nat },
    { "toa", suite_toa },
    { "icmp", suite_icmp },
    { "gue", suite_gue },
    { "sched", suite_sched },
    { "conns", suite_conns },
    { "decap", suite_decap },
    { "malformed", suite_malformed },
    { "sync", suite_sync },
};
#define N_SUITES (sizeof(suites) / sizeof(suites[0]))

/* Which suites to run: all, or those named in argv. */
static int pick_suites(int argc, char **argv, bool run[N_SUITES])
{
    for (size_t s = 0; s < N_SUITES; s++)
        run[s] = argc < 2;
    for (int i = 1; i < argc; i++) {
        size_t s = 0;

        while (s < N_SUITES && strcmp(argv[i], suites[s].name) != 0)
            s++;
        if (s == N_SUITES) {
            fprintf(stderr, "unknown suite \"%s\"; the suites are:", argv[i]);
            for (s = 0; s < N_SUITES; s++)
                fprintf(stderr, " %s", suites[s].name);
            fprintf(stderr, "\n");
            return -1;
        }
        run[s] = true;
    }
    return 0;
}

int main(int argc, char **argv)
{
    bool run[N_SUITES];
    int err;

    setvbuf(stdout, NULL, _IOLBF, 0);
    if (pick_suites(argc, argv, run) < 0) {
        printf("0 passed, 1 failed\n");
        return 2;
    }
    if (geteuid() != 0) {
        printf("skip: BPF fixture tests need root (CAP_BPF and CAP_NET_ADMIN for BPF_PROG_TEST_RUN)\n");
        printf("0 passed, 0 failed\n");
        return 0;
    }
    if (tl_pin_cpu() < 0) {
        printf("error: cannot pin to a CPU: %s\n0 passed, 1 failed\n", strerror(errno));
        return 1;
    }
    err = tl_env_open(&env, L4_MAGLEV_DEFAULT_M, N_TABLES, L4_DEFAULT_FLOW_SEED);
    if (err == -EPERM) {
        printf("skip: loading BPF programs is not permitted here (%s)\n", strerror(-err));
        printf("0 passed, 0 failed\n");
        return 0;
    }
    if (err || (err = setup_world())) {
        printf("error: loading the forwarder or filling its maps: %s\n0 passed, 1 failed\n", strerror(-err));
        return 1;
    }
    tl_gue_port = L4_GUE_DEFAULT_PORT; /* checksums inside GUE are verified too */
    printf("forwarder loaded: M=%u, %u tables, seed %#x, CPU %d of %d\n", env.m, env.tables, env.seed, env.cpu,
           env.ncpus);

    for (size_t s = 0; s < N_SUITES; s++)
        if (run[s])
            suites[s].run();

    tl_env_close(&env);
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
