/* What the two BPF fuzz targets (fuzz_l4_forwarder.c, fuzz_l4_decap.c)
 * share: the run being checked, CHECK() and its report, and the skip when
 * BPF cannot be loaded. Include once, after l4_testlib.h, with FUZZ_NAME
 * defined and a `static const char *reason_name(int reason)` declared. */
#ifndef SLUICE_L4_FUZZ_REPORT_H
#define SLUICE_L4_FUZZ_REPORT_H

#include <stdio.h>
#include <stdlib.h>

static const char *reason_name(int reason);

/* The run being checked, for the report. */
static const uint8_t *cur_in;
static size_t cur_in_len;
static const struct pkt *cur_out;
static uint32_t cur_verdict;
static int cur_reason = -1;

#define CHECK(x)                                                                                   \
    do {                                                                                           \
        if (!(x))                                                                                  \
            fail(__LINE__, #x);                                                                    \
    } while (0)

static void fail(int line, const char *what)
{
    fprintf(stderr, "%s: invariant failed at line %d: %s\n", FUZZ_NAME, line, what);
    fprintf(stderr, "    verdict %s, reason %s\n", tl_verdict_name(cur_verdict), reason_name(cur_reason));
    if (cur_in)
        tl_hexdump("input", cur_in, cur_in_len);
    if (cur_out)
        tl_hexdump("output", cur_out->b, cur_out->len);
    __builtin_trap();
}

/* Not root, or no BPF: nothing to fuzz here; say so and pass. */
static void skip(const char *why)
{
    printf("skip: %s: %s\n", FUZZ_NAME, why);
    fflush(stdout);
    exit(0);
}

#endif
