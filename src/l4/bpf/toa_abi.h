/* The TOA contract: the TCP option the forwarder (forwarder.bpf.c, FullNAT)
 * puts in a client's SYN, and the map the real-server side (toa.bpf.c)
 * records it in for user space (src/proxy/toa_lookup.c: "who is the real
 * client of this accepted socket").
 *
 * Layout and address rules: l4_abi_common.h.
 */
#ifndef SLUICE_L4_TOA_ABI_H
#define SLUICE_L4_TOA_ABI_H

#include "l4/bpf/l4_abi_common.h"

/* The option: the client's address in a TCP option of the SYN (FullNAT).
 * The classic LVS TOA kind 200, no magic: length 8 (kind, len, port, IPv4
 * address) or 20 (kind, len, port, IPv6 address); the length tells the
 * family. The option follows whatever options the client sent. */
#define L4_TOA_KIND    200
#define L4_TOA_LEN_V4  8
#define L4_TOA_LEN_V6  20

/* sluice_toa (BPF_MAP_TYPE_LRU_HASH, pinned by name: <pin root>/sluice_toa,
 * /sys/fs/bpf/sluice_toa by default), keyed by an accepted connection as
 * the real server's socket sees it (local = its own address, remote = the
 * LB's local address), v4-mapped for IPv4. */
#define L4_TOA_ENTRIES      65536  /* accepted flows remembered */

struct l4_toa_key {
    __be32 laddr[4];
    __be32 raddr[4];
    __be16 lport;
    __be16 rport;
};

struct l4_toa_val {
    __be32 addr[4];   /* the client, v4-mapped for IPv4 */
    __be16 port;
    __u16 pad;
    __u32 pad2;
    __u64 seen_ns;    /* bpf_ktime_get_ns() of the SYN */
};

/* toa_stats (BPF_MAP_TYPE_PERCPU_ARRAY of __u64, TOA_STATS entries):
 * per-CPU packet counts, indexed by enum toa_stat. */
enum toa_stat {
    TOA_RECORDED = 0,  /* SYN with a TOA option: entry written */
    TOA_SYN_WITHOUT,   /* SYN without one (not through a FullNAT LB) */
    TOA_BAD_OPTION,    /* option list malformed, or TOA of the wrong length */
    TOA_STATS,
};

#endif
