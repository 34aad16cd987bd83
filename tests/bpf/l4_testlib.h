/* Helpers shared by the L4 fixture tests and the L4 micro-benchmark:
 * loading the forwarder, filling its maps the way the control plane will,
 * building packets, and a checksum routine that owes nothing to the BPF
 * code (it sums big-endian byte pairs, the BPF side sums native words). */
#ifndef SLUICE_TESTS_BPF_L4_TESTLIB_H
#define SLUICE_TESTS_BPF_L4_TESTLIB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "l4/bpf/forwarder_abi.h"

#define PKT_MAX 2048
#define TL_MAX_REALS 32
#define TL_MAX_SVC 48
#define TL_SVC_MAX_REALS 16

struct forwarder; /* the generated skeleton */

/* ---- packets ---- */

struct pkt {
    uint8_t b[PKT_MAX];
    size_t len;
};

/* An address in the forwarder's 16-byte form plus its family. */
struct tl_addr {
    bool v6;
    uint8_t a[16]; /* v4-mapped when !v6 */
};

int tl_addr_parse(const char *s, struct tl_addr *out); /* 0 or -1 */
const uint8_t *tl_addr_v4(const struct tl_addr *a);   /* the 4 IPv4 bytes */

/* What to put on the wire. Zeroed fields take sane defaults: TTL 64,
 * DF clear, no VLAN, payload bytes 0..n-1 (mod 251). */
struct tl_frame {
    uint8_t dmac[6], smac[6];
    bool vlan;
    uint16_t vlan_tpid;      /* default 0x8100 */
    uint16_t vlan_tci;
    struct tl_addr src, dst;
    uint8_t proto;           /* 6, 17, 1, 58, or anything else */
    uint16_t sport, dport;   /* TCP/UDP */
    uint8_t tcp_flags;       /* default SYN */
    const uint8_t *tcp_opt;  /* TCP options after the 20-byte header ... */
    size_t tcp_opt_len;      /* ... a multiple of 4, at most 40 */
    uint8_t tos;
    uint8_t ttl;             /* default 64 */
    uint16_t ip_id;
    uint16_t frag_off;       /* IPv4 flags+offset, host order */
    uint8_t ip_opts;         /* IPv4 options bytes (multiple of 4, NOPs) */
    uint8_t icmp_type, icmp_code;
    uint16_t icmp_id, icmp_seq;
    size_t payload_len;
    const uint8_t *payload;  /* NULL: the default pattern */
    size_t pad_to;           /* pad the frame with zeros to this length */
};

/* Build the frame; L3 and L4 checksums are correct. Returns the length. */
size_t tl_build(struct pkt *p, const struct tl_frame *f);

/* Byte offsets in a frame built by tl_build (no IP options). */
size_t tl_l3_off(const struct tl_frame *f);

/* RFC 1071 over big-endian byte pairs, with an initial partial sum. */
uint32_t tl_sum(const uint8_t *b, size_t n, uint32_t sum);
uint16_t tl_fold(uint32_t sum);

/* Checksum verification of a frame at l3 (IPv4 header, then TCP/UDP/ICMP
 * or ICMPv6 over its IP payload). Returns 0 when every checksum is right;
 * recurses into IPIP / IP6IP6 / 4in6 / 6in4 payloads, and into GUE (UDP to
 * tl_gue_port whose payload starts with IP version 4 or 6). A UDP
 * checksum of 0 is right over IPv4 (none) and wrong over IPv6. */
int tl_verify_csums(const uint8_t *frame, size_t len, size_t l3);
extern uint16_t tl_gue_port; /* host order; 0: no GUE recursion */

/* The reverse: make every checksum tl_verify_csums() checks right, inner
 * packets (IPIP, GUE) first. Only what lies within the frame and the IP
 * lengths is touched; an IPv4 UDP checksum of 0 ("none") stays 0. Returns
 * 0, or -1 if the IP header at l3 does not hold together (nothing done). */
int tl_fix_csums(uint8_t *frame, size_t len, size_t l3);

/* The L3 offset of a frame (14, or 18 behind one 802.1Q / 802.1ad tag) and
 * its ethertype (0x0800 or 0x86dd); -1 if it is not IPv4 or IPv6. */
int tl_frame_l3(const uint8_t *frame, size_t len, size_t *l3);

void tl_hexdump(const char *title, const uint8_t *b, size_t n);

/* ---- environment: the forwarder loaded, maps filled ---- */

struct tl_real {
    bool used;
    char name[64];           /* its Maglev key: the address as text */
    struct l4_real r;
};

struct tl_svc {
    bool used;
    struct l4_vip_key key;
    struct l4_vip_meta meta;
    uint32_t reals[TL_SVC_MAX_REALS];  /* real indices */
    uint32_t weights[TL_SVC_MAX_REALS];
    size_t n;
    int32_t *table;          /* maglev_build() output: positions in reals[] */
};

struct tl_env {
    struct forwarder *skel;
    int prog_fd;
    int fd_vips, fd_reals, fd_maglev, fd_conn, fd_cfg, fd_flood;
    int fd_vip_stats, fd_real_stats, fd_reasons;
    int fd_nat, fd_pools;
    int fd_conn_shared, fd_rr;
    uint32_t m, tables, seed;
    int ncpus, cpu;          /* possible CPUs; the CPU we are pinned to */
    struct l4_cfg cfg;
    struct tl_real reals[TL_MAX_REALS];
    struct tl_svc svcs[TL_MAX_SVC];
};

/* Pin the process to one CPU (per-CPU maps are read on it). */
int tl_pin_cpu(void);

/* Open and load the forwarder with Maglev size m (prime), `tables` tables,
 * and flow hash seed. Returns 0 or a negative errno. */
int tl_env_open(struct tl_env *e, uint32_t m, uint32_t tables, uint32_t seed);
void tl_env_close(struct tl_env *e);

int tl_set_cfg(struct tl_env *e, const struct l4_cfg *cfg);
int tl_set_real(struct tl_env *e, uint32_t idx, const char *addr, const uint8_t mac[6], bool active);
/* NAT: the real's port (host order; 0 = the VIP's). */
int tl_set_real_port(struct tl_env *e, uint32_t idx, uint16_t port);
/* FullNAT: the local-address pool of service slot svc. */
int tl_set_pool(struct tl_env *e, uint32_t svc, const char *const *addrs, size_t n, uint16_t pmin, uint16_t pmax);

/* A service at slot `svc` with table id `table`: VIP key, meta, and a
 * Maglev table built by src/lib/maglev.c over reals[]/weights[]. */
int tl_add_service(struct tl_env *e, uint32_t svc, uint32_t table, const char *vip, uint16_t port,
                   uint8_t proto, uint8_t mode, uint16_t flags, const uint32_t *reals,
                   const uint32_t *weights, size_t n);
/* Rebuild a service's Maglev table into table id `table` (weights change,
 * reals leave) without touching its VIP entry. */
int tl_build_table(struct tl_env *e, uint32_t svc, uint32_t table, const uint32_t *reals,
                   const uint32_t *weights, size_t n);
int tl_set_vip_table(struct tl_env *e, uint32_t svc, uint32_t table);
int tl_add_icmp_vip(struct tl_env *e, const char *vip);

/* The flow key and hash user space predicts for a frame of a flow. */
void tl_flow_key(const struct tl_frame *f, struct l4_flow_key *k);
uint32_t tl_flow_hash(const struct tl_env *e, const struct tl_frame *f);
/* The real the Maglev table of svc picks for a flow (what maglev_lookup()
 * gives for the flow hash). */
uint32_t tl_maglev_real(const struct tl_env *e, uint32_t svc, const struct tl_frame *f);
/* The real the source-hash scheduler picks for a client: the Maglev slot
 * of l4_src_hash() of its address. */
uint32_t tl_src_hash_real(const struct tl_env *e, uint32_t svc, const struct tl_addr *client);

/* BPF_PROG_TEST_RUN, once. Returns 0 or -errno; *verdict, out filled. */
int tl_run(int prog_fd, const struct pkt *in, struct pkt *out, uint32_t *verdict);
/* Repeat mode: ns per run as the kernel measured it. */
int tl_run_repeat(int prog_fd, const struct pkt *in, uint32_t repeat, uint32_t *ns, uint32_t *verdict);

/* Counters summed over CPUs. */
int tl_reasons(struct tl_env *e, uint64_t pkts[L4_R__COUNT]);
int tl_counter(int fd, uint32_t idx, struct l4_counter *sum);
/* One CPU's value of a per-CPU counter. */
int tl_counter_cpu(int fd, uint32_t idx, int cpu, struct l4_counter *c);
/* Run the calling thread on `cpu` (BPF_PROG_TEST_RUN runs on the caller's
 * CPU, so this picks the CPU a test packet is processed on). */
int tl_run_on_cpu(int cpu);
/* Connection table: this CPU's value (real 0 if none), or -1 if no key. */
int tl_conn_get(struct tl_env *e, const struct l4_flow_key *k, struct l4_conn *v);
int tl_conn_set(struct tl_env *e, const struct l4_flow_key *k, const struct l4_conn *v);
int tl_conn_del(struct tl_env *e, const struct l4_flow_key *k);
int tl_conn_clear(struct tl_env *e);
int tl_flood_reset(struct tl_env *e);

const char *tl_verdict_name(uint32_t v);

#endif
