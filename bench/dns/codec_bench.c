/* CPU cost of lib/dns_wire per query: parse a query and write its answer,
 * as the registry's DNS server will for every datagram (the socket calls
 * and the choice of instances are not in it).
 *
 *   make bench-dns-codec      (build/bench/dns_codec_bench [SECONDS_PER_CASE])
 *
 * For each case it runs parse + answer in a loop for the given time (0.5 s
 * by default) five times and prints the median CPU ns per query, measured
 * with CLOCK_PROCESS_CPUTIME_ID. The budget to compare with: NSD's whole
 * server costs 6.6 µs of CPU per query on this kind of machine
 * (../shared/ANCHORS.md). */
#include "lib/dns_wire.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct bench_case {
    const char *name;
    const char *query_hex;
    unsigned records;     /* A records, or SRV records plus one A each */
    bool srv, tcp;
};

/* Queries as dig 9.18 sends them (tests/fuzz/gen_dns_corpus.py). */
static const struct bench_case cases[] = {
    { "A, 3 answers, EDNS + COOKIE (dig default)",
      "d301012000010000000000010373766306736c756963650474657374000001000100002904d000000000000c000a000869fccce075838ec5",
      3, false, false },
    { "A, 3 answers, Client Subnet /24",
      "56b9012000010000000000010373766306736c756963650474657374000001000100002904d000000000000b0008000700011800c00002",
      3, false, false },
    { "A, 1 answer, no EDNS",
      "3a6a012000010000000000000373766306736c7569636504746573740000010001", 1, false, false },
    { "SRV, 8 answers + 8 additional A",
      "19b301200001000000000001045f737663045f74637006736c756963650474657374000021000100002904d0000000000000", 8, true,
      false },
    { "A, 1000 answers over TCP",
      "d301012000010000000000010373766306736c756963650474657374000001000100002904d0000000000000", 1000, false, true },
    { "FORMERR (bad Client Subnet)",
      "1234010000010000000000010373766306736c756963650474657374000001000100002904d000000000000b0008000700011818c00002",
      0, false, false },
};

static size_t unhex(const char *s, uint8_t *out)
{
    size_t n = 0;
    for (; s[0] && s[1]; s += 2) {
        unsigned v;
        sscanf(s, "%2x", &v);
        out[n++] = (uint8_t)v;
    }
    return n;
}

static double cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static uint8_t targets[8][DNS_NAME_MAX];
static uint8_t zone[DNS_NAME_MAX], ns[DNS_NAME_MAX], host[DNS_NAME_MAX];

/* One query: what the server's hot path does with the codec. */
static size_t answer(const struct bench_case *c, const uint8_t *in, size_t len, uint8_t *out, struct dns_query *q)
{
    enum dns_parse_result r = dns_parse_query(in, len, q);
    if (r == DNS_PARSE_DROP)
        return 0;
    struct dns_writer w;
    dns_response_begin(&w, out, dns_response_limit(q, c->tcp, 1232), q, 1232);
    if (r == DNS_PARSE_OK) {
        for (unsigned i = 0; i < c->records; i++) {
            uint8_t a[4] = { 10, 0, (uint8_t)(i >> 8), (uint8_t)i };
            if (c->srv)
                dns_put_srv(&w, DNS_SECTION_ANSWER, q->qname.wire, 30, 0, 100, 8080, targets[i % 8]);
            else
                dns_put_a(&w, DNS_SECTION_ANSWER, q->qname.wire, 30, a);
        }
        for (unsigned i = 0; c->srv && i < c->records; i++) {
            uint8_t a[4] = { 10, 0, 0, (uint8_t)i };
            dns_put_a(&w, DNS_SECTION_ADDITIONAL, targets[i % 8], 30, a);
        }
    }
    ssize_t n = dns_response_finish(&w, q->rcode, r == DNS_PARSE_OK, q->has_ecs ? 24 : 0);
    return n > 0 ? (size_t)n : 0;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    double seconds = argc > 1 ? atof(argv[1]) : 0.5;
    static uint8_t out[DNS_MSG_MAX];
    static struct dns_query q;
    dns_name_from_text("sluice.test", zone);
    dns_name_from_text("ns1.sluice.test", ns);
    dns_name_from_text("hostmaster.sluice.test", host);
    for (int i = 0; i < 8; i++) {
        char text[64];
        snprintf(text, sizeof text, "i-%d.svc.sluice.test", i);
        dns_name_from_text(text, targets[i]);
    }
    printf("%-44s %12s %10s\n", "case", "ns/query", "bytes");
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        const struct bench_case *c = &cases[k];
        uint8_t in[512];
        size_t len = unhex(c->query_hex, in);
        size_t bytes = answer(c, in, len, out, &q);
        double runs[5];
        for (int r = 0; r < 5; r++) {
            unsigned long n = 0;
            double start = cpu_now(), now;
            do {
                for (int i = 0; i < 1000; i++)
                    bytes = answer(c, in, len, out, &q);
                n += 1000;
                now = cpu_now();
            } while (now - start < seconds);
            runs[r] = (now - start) * 1e9 / (double)n;
        }
        qsort(runs, 5, sizeof runs[0], cmp_double);
        printf("%-44s %12.1f %10zu\n", c->name, runs[2], bytes);
    }
    return 0;
}
