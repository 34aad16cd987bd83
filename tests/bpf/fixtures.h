/* The world the BPF packet fixtures share (tests/bpf/test_*.c, run by
 * test_forwarder.c): the forwarder loaded once with a fixed set of reals,
 * services and pools (setup_world()), the frames a client sends to them,
 * the frames the forwarder must send back, built here on their own (not by
 * replaying the program's logic), and run_expect(), which runs one packet
 * and checks the verdict, the output, its checksums and the counters.
 *
 * Each feature file holds a suite: a function that runs its fixtures and
 * reports each with report(). Fixtures run in the order the suites list
 * them, on one loaded forwarder; a fixture that changes shared state
 * (l4_config, a table, a real) puts it back before it returns.
 *
 * Built on tests/bpf/l4_testlib.[ch] (loading, map filling, packet
 * building, checksums), which the micro-benchmark and the fuzzers use too.
 */
#ifndef SLUICE_TESTS_BPF_FIXTURES_H
#define SLUICE_TESTS_BPF_FIXTURES_H

#include <arpa/inet.h>
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <netinet/in.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "l4/bpf/forwarder_abi.h"
#include "l4/bpf/toa_abi.h"
#include "l4_testlib.h"

/* ---- the test world ---- */

static const uint8_t LB_MAC[6] = { 0x02, 0x00, 0x00, 0x00, 0x00, 0x01 };
static const uint8_t GW_MAC[6] = { 0x02, 0x00, 0x00, 0x00, 0x00, 0xfe };

#define CLIENT4 "198.51.100.7"
#define CLIENT6 "2001:db8:c::7"
#define ROUTER4 "198.51.100.254"
#define ROUTER6 "2001:db8:c::fe"
#define VIP_DR4 "192.0.2.10"
#define VIP_DR6 "2001:db8::10"
#define VIP_TUN4 "192.0.2.20"
#define VIP_TUN6 "2001:db8::20"
#define VIP_4IN6 "192.0.2.50"
#define VIP_6IN4 "2001:db8::50"
#define VIP_BADMODE "192.0.2.30"
#define VIP_NAT4 "192.0.2.70"
#define VIP_NAT6 "2001:db8::70"
#define VIP_FNAT4 "192.0.2.80"
#define VIP_FNAT6 "2001:db8::80"
#define VIP_FNAT_TINY "192.0.2.81"
#define VIP_FNAT_SMALL "192.0.2.82"
#define VIP_DEAD "192.0.2.40"
#define VIP_NOCT "192.0.2.60"
#define VIP_SH4 "192.0.2.90"
#define VIP_SH6 "2001:db8::90"
#define VIP_RR4 "192.0.2.91"
#define VIP_RR6 "2001:db8::91"
#define VIP_GUE4 "192.0.2.100"
#define VIP_GUE6 "2001:db8::100"
#define VIP_GUE_4IN6 "192.0.2.101"
#define VIP_GUE_6IN4 "2001:db8::101"

enum {
    S_DR4_TCP, S_DR4_UDP, S_DR6_TCP, S_DR6_UDP,
    S_TUN4_TCP, S_TUN4_UDP, S_TUN6_TCP, S_TUN6_UDP,
    S_4IN6, S_6IN4, S_BADMODE, S_DEAD, S_NOCT,
    S_NAT4_TCP, S_NAT4_UDP, S_NAT6_TCP, S_NAT6_UDP,
    S_FNAT4_TCP, S_FNAT4_UDP, S_FNAT6_TCP, S_FNAT6_UDP,
    S_FNAT_TINY, S_FNAT_SMALL,
    S_SH4, S_SH6, S_RR4, S_RR6,
    S_GUE4_TCP, S_GUE4_UDP, S_GUE6_TCP, S_GUE6_UDP, S_GUE_4IN6, S_GUE_6IN4,
    S__COUNT
};
#define N_TABLES 40 /* > S__COUNT: one table per service, plus a spare */
#define T_SPARE 39  /* a free Maglev table id for the swap test */
#define MODE_UNKNOWN 9

static const uint32_t REALS4[] = { 1, 2, 3 };
static const uint32_t REALS6[] = { 4, 5, 6 };
static const uint32_t EQUAL[] = { 1, 1, 1 };
static const uint32_t WEIGHTED[] = { 1, 2, 3 };
static const uint32_t NAT_REALS4[] = { 9, 10, 11 };
static const uint32_t NAT_REALS6[] = { 12, 13, 14 };
static const uint32_t FNAT_REALS4[] = { 15, 16, 17 };
#define NAT_RPORT 8080

extern struct tl_env env;

uint16_t next_port(void);                      /* a fresh client port */
void real_mac(uint32_t idx, uint8_t mac[6]);   /* the MAC of real idx */

/* Load-time setup: reals, l4_config, the services above, pools, ICMP
 * addresses. 0 or a negative errno. */
int setup_world(void);

/* ---- checks ---- */

extern char fail_msg[512];

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            snprintf(fail_msg, sizeof(fail_msg), __VA_ARGS__);                                     \
            fprintf(stderr, "    at %s:%d: %s\n", __FILE__, __LINE__, fail_msg);                   \
            return -1;                                                                             \
        }                                                                                          \
    } while (0)

/* ---- reporting (test_forwarder.c) ---- */

/* One fixture, one line: "ok   NAME" or "FAIL NAME"; counted for the
 * final "N passed, N failed". */
__attribute__((format(printf, 2, 3))) void report(bool ok, const char *fmt, ...);

struct fixture {
    const char *name;
    int (*fn)(void); /* 0: passed */
};

/* Run and report each of fixtures[0..n). */
void run_fixtures(const struct fixture *fixtures, size_t n);
#define RUN_FIXTURES(table) run_fixtures(table, sizeof(table) / sizeof((table)[0]))

/* The suites, one per feature file, in the order test_forwarder.c runs them. */
void suite_dr_tun(void);    /* test_dr_tun.c */
void suite_nat(void);       /* test_nat.c */
void suite_toa(void);       /* test_toa.c */
void suite_icmp(void);      /* test_icmp.c */
void suite_gue(void);       /* test_gue.c */
void suite_sched(void);     /* test_sched.c */
void suite_conns(void);     /* test_conns.c */
void suite_decap(void);     /* test_decap.c */
void suite_malformed(void); /* test_malformed.c */
void suite_sync(void);      /* test_sync.c */

/* ---- frames ---- */

struct tl_frame frame(const char *src, const char *dst, uint8_t proto, uint16_t sport, uint16_t dport);
/* The frame a client sends to a service. */
struct tl_frame to_svc(int svc, bool vlan);
/* What DR sends: the same frame, MACs rewritten. */
void expect_dr(struct pkt *exp, const struct tl_frame *f, uint32_t real);
void put16(uint8_t *p, uint16_t v);
/* The GUE UDP source port for a flow hash. */
uint16_t gue_sport(uint32_t hash);
/* What TUN sends for `in` (IP header at l3) to real: IP-in-IP, or GUE
 * to gue_port (host order) if it is not 0. */
void expect_encap(struct pkt *exp, const struct pkt *in, size_t l3, uint32_t real, uint32_t hash,
                  uint16_t gue_port);
void expect_tun(struct pkt *exp, const struct pkt *in, size_t l3, uint32_t real, uint32_t hash);
/* The GUE port the forwarder should use (host order). */
uint16_t gue_port_now(void);
/* What a TUN service sends: GUE if the service says so, else IP-in-IP. */
void expect_tun_svc(struct pkt *exp, const struct pkt *in, size_t l3, int svc, uint32_t real,
                    uint32_t hash);
/* Recompute an IPv4 header checksum after a deliberate edit. */
void fix_ip4(struct pkt *p, size_t l3);
/* An ICMP error from a router about a packet the real sent from `vip`:`vport`
 * to `client`:`cport`, quoting `quote` bytes of it. */
void icmp_err(struct pkt *p, bool v6, const char *vip, uint16_t vport, const char *client,
              uint16_t cport, uint8_t proto, size_t quote);

/* ---- running one packet ---- */

extern uint64_t delta[L4_R__COUNT]; /* counter deltas of the last run_expect() */
extern struct pkt out;              /* the output of the last run */

/* Run `in`; check the verdict, the output (if `want` is given; for PASS and
 * DROP the output must equal the input whatever `want` says), checksums of
 * anything sent, and that exactly `reason` counted as the disposition.
 * Leaves the counter deltas in delta[]. 0 or -1. */
int run_expect(const struct pkt *in, uint32_t verdict, const struct pkt *want, enum l4_reason reason);
/* The counter at idx of map fd grew by pkts and bytes since *before. */
int counter_delta(int fd, uint32_t idx, struct l4_counter *before, uint64_t pkts, uint64_t bytes);
/* Every truncation of a valid packet passes or drops, untouched. */
int sweep(const struct pkt *full, const char *what);
int sweep_frame(struct tl_frame f, const char *what);
/* CLOCK_MONOTONIC_COARSE, the clock of bpf_ktime_get_coarse_ns(). */
uint64_t mono_coarse_ns(void);

/* ---- NAT and FullNAT ---- */


/* What a NAT translation did to a flow, read from the forwarded packet and
 * checked against the configuration (the real Maglev picks, a pool address
 * and port). */
struct nat_res {
    uint32_t real;
    struct tl_addr local;   /* FullNAT: the local address; NAT: the client */
    uint16_t lport;         /* FullNAT: the local port; NAT: the client port */
};

bool svc_full(int svc);                              /* a FullNAT service */
uint16_t real_port(uint32_t real, uint16_t vport);   /* NAT: the port a real listens on */
void real_addr(uint32_t real, struct tl_addr *a);
int other_cpu(void);                                 /* a CPU other than env.cpu, if any */
bool in_pool(int svc, const struct tl_addr *a, uint16_t port);
bool same(const struct pkt *a, const struct pkt *b); /* equal, or hexdumps of both */
/* The TOA option a FullNAT SYN must carry; returns its length. */
size_t toa_bytes(const struct tl_frame *f, uint8_t opt[20]);
/* A client packet of flow f to a NAT/FullNAT service: forwarded, and the
 * output equal to a frame built here (with the TOA option if `toa`). */
int nat_forward(int svc, const struct tl_frame *f, bool toa, struct nat_res *res);
/* The real's reply to flow f, run on `cpu`: translated back to VIP -> client. */
int nat_reply(int svc, const struct tl_frame *f, const struct nat_res *res, int cpu);

#endif
