/* The contract between the XDP forwarder (forwarder.bpf.c) and user space:
 * map keys and values, modes, flags, counters and default sizes.
 *
 * Included by BPF code (types from vmlinux.h) and by C in user space (types
 * from <linux/types.h>). Every struct here is laid out by hand with explicit
 * padding fields: map keys are hashed byte for byte, so a compiler-inserted
 * hole would make the kernel's and user space's keys differ.
 *
 * Addresses: one 16-byte form for both families. An IPv4 address is stored
 * v4-mapped (::ffff:a.b.c.d, RFC 4291 2.5.5.2), so a single VIP map and a
 * single flow key serve IPv4 and IPv6 alike. Words are in network byte
 * order, as they sit in the packet.
 */
#ifndef SLUICE_L4_MAPS_H
#define SLUICE_L4_MAPS_H

#ifndef __bpf__
#include <linux/types.h>
#endif

/* ---- sizes (map max_entries; user space may raise them before load) ---- */

#define L4_MAX_VIPS         1024   /* entries in the vips hash */
#define L4_MAX_SERVICES     1024   /* vip_stats slots (vip_meta.svc) */
#define L4_MAX_REALS        4096   /* reals array; index 0 is never used */
#define L4_CONN_ENTRIES     262144 /* connection table (per-CPU LRU) */

/* Maglev: M must be prime. 65537 is the paper's and Katran's size; the
 * control plane picks a larger prime when 100 x reals exceeds it
 * (maglev_table_size() in src/core/maglev.h) and sets maglev_m in .rodata
 * and the maglev map's size to maglev_tables * M before loading. */
#define L4_MAGLEV_DEFAULT_M      65537u
/* Two tables per service: the control plane fills the idle one and then
 * flips vip_meta.table, so a table change is one atomic map update. */
#define L4_MAGLEV_DEFAULT_TABLES 16u

/* Seed of the flow hash. Every LB node must use the same seed (and the same
 * Maglev tables) so that ECMP can move a flow between nodes without moving
 * it between reals. */
#define L4_DEFAULT_FLOW_SEED 0x5eed1a4bu

/* ---- modes and flags ---- */

enum l4_mode {
    L4_MODE_DR = 0,      /* rewrite the destination MAC (direct routing) */
    L4_MODE_TUN = 1,     /* IPIP / IP6IP6 (or 4in6, 6in4) encapsulation */
    L4_MODE_NAT = 2,     /* not in the data plane yet: passed to the stack */
    L4_MODE_FULLNAT = 3, /* not in the data plane yet: passed to the stack */
};

/* vip_meta.flags */
#define L4_VIP_F_NO_CT   0x0001 /* stateless: always Maglev, never touch the
                                 * connection table (hashing is consistent,
                                 * so flows only move when the table does) */

/* real.flags */
#define L4_REAL_F_ACTIVE 0x0001 /* address and next-hop MAC are valid */
#define L4_REAL_F_V6     0x0002 /* addr is IPv6: TUN uses an IPv6 outer header */

/* ---- maps ---- */

/* vips (BPF_MAP_TYPE_HASH): what the LB answers for.
 * A service is {VIP, port, TCP|UDP}. The control plane also adds one entry
 * {VIP, 0, ICMP or ICMPv6} per VIP address: it makes the forwarder answer
 * echo requests to that address. */
struct l4_vip_key {
    __be32 addr[4];   /* v4-mapped for IPv4 */
    __be16 port;      /* network order; 0 for the ICMP address entry */
    __u8 proto;       /* IPPROTO_TCP, IPPROTO_UDP, IPPROTO_ICMP(V6) */
    __u8 pad;         /* always 0 */
};

struct l4_vip_meta {
    __u32 svc;        /* service index: vip_stats slot, < L4_MAX_SERVICES */
    __u32 table;      /* Maglev table id: slots [table*M, (table+1)*M) */
    __u8 mode;        /* enum l4_mode */
    __u8 pad;
    __u16 flags;      /* L4_VIP_F_* */
    __u32 reserved;   /* room for NAT: the translated port, pool id */
};

/* reals (BPF_MAP_TYPE_ARRAY): index -> real server. Index 0 means "none"
 * everywhere (an empty Maglev slot, an unset per-CPU connection value). */
struct l4_real {
    __be32 addr[4];   /* v4-mapped unless L4_REAL_F_V6; TUN's outer dst */
    __u8 mac[6];      /* next hop: the real itself in DR, a router in TUN */
    __u16 flags;      /* L4_REAL_F_* */
};

/* maglev (BPF_MAP_TYPE_ARRAY of __u32): maglev_tables * M slots, each a
 * real index (0 = empty). */

/* conn (BPF_MAP_TYPE_LRU_PERCPU_HASH): the connection table for DR and TUN.
 * Keyed by the flow as the client sent it. Per-CPU values: the NIC's RSS
 * keeps a flow on one CPU, and no two CPUs ever write the same value. */
struct l4_flow_key {
    __be32 src[4];    /* client */
    __be32 dst[4];    /* VIP */
    __be16 sport;
    __be16 dport;
    __u8 proto;
    __u8 pad[3];      /* always 0 */
};

struct l4_conn {
    __u32 real;       /* real index; 0 = no entry on this CPU */
    __u32 hash;       /* the flow hash, cached: TUN needs it per packet */
};

/* l4_config (BPF_MAP_TYPE_ARRAY, one entry): run-time settings the control
 * plane may change at any moment. */
struct l4_cfg {
    __u8 src_mac[6];     /* our interface's MAC: source of what we send */
    __u16 tun_mtu;       /* max outer IP length in TUN mode; 0 = no check */
    __u32 tx_ifindex;    /* 0: XDP_TX back out of the ingress interface;
                          * else bpf_redirect() to this interface */
    __u32 new_flow_cap;  /* SYN guard: new conn entries per CPU per second;
                          * 0 = unlimited */
    __be32 tun_src4;     /* TUN outer IPv4 source prefix ... */
    __u8 tun_src4_plen;  /* ... and its length (0..32) */
    __u8 tun_src6_plen;  /* TUN outer IPv6 source prefix length (0..128) */
    __u8 pad[2];
    __be32 tun_src6[4];  /* TUN outer IPv6 source prefix */
};

/* flood (BPF_MAP_TYPE_PERCPU_ARRAY, one entry): the SYN guard's window. */
struct l4_flood {
    __u64 window_start;  /* bpf_ktime_get_coarse_ns() when this 1 s window
                          * began */
    __u64 inserted;      /* connection entries inserted in the window */
};

/* vip_stats, real_stats, reasons (BPF_MAP_TYPE_PERCPU_ARRAY). */
struct l4_counter {
    __u64 packets;
    __u64 bytes;        /* frame length as received */
};

/* Reasons. The first group is the disposition: every packet counts in
 * exactly one of them. The second group counts events on the way; a packet
 * may count in none or several. */
enum l4_reason {
    /* forwarded or answered */
    L4_R_FWD_DR = 0,
    L4_R_FWD_TUN,
    L4_R_ICMP_ECHO_REPLY,
    /* passed to the kernel stack, untouched */
    L4_R_PASS_NOT_IP,        /* not IPv4/IPv6 (ARP, LLDP, a second VLAN tag) */
    L4_R_PASS_NOT_VIP,       /* no service for {dst, dport, proto} */
    L4_R_PASS_IP_OPTIONS,    /* IPv4 IHL > 5 */
    L4_R_PASS_FRAGMENT,      /* IPv4 MF or offset, IPv6 fragment header */
    L4_R_PASS_IPV6_EXT,      /* IPv6 extension header before L4 */
    L4_R_PASS_OTHER_L4,      /* not TCP, UDP or ICMP */
    L4_R_PASS_ICMP,          /* ICMP we do not handle (other types, inner
                              * header we cannot route by) */
    L4_R_PASS_MODE,          /* service mode not in the data plane yet */
    /* dropped */
    L4_R_DROP_TRUNCATED,     /* a header or the IP length runs past the frame */
    L4_R_DROP_BAD_L3,        /* IP version, IHL < 5, total length < header */
    L4_R_DROP_BAD_L4,        /* TCP data offset, UDP length inconsistent */
    L4_R_DROP_NO_REAL,       /* empty Maglev slot or inactive real */
    L4_R_DROP_TOO_BIG,       /* TUN: would exceed cfg.tun_mtu */
    L4_R_DROP_NO_ROOM,       /* bpf_xdp_adjust_head() refused */
    L4_R__DISPOSITIONS,      /* marker: count of disposition reasons */
    /* events */
    L4_R_CT_HIT = L4_R__DISPOSITIONS,
    L4_R_CT_MISS,
    L4_R_CT_GUARD_SKIP,      /* SYN guard: over the cap, not inserted */
    L4_R_ICMP_ERR_ROUTED,    /* frag-needed / packet-too-big sent to a real */
    L4_R__COUNT,
};

#ifndef __bpf__
/* Names for metrics and `sluice l4 list`, indexed by enum l4_reason. */
static const char *const l4_reason_names[L4_R__COUNT] = {
    [L4_R_FWD_DR] = "fwd_dr",
    [L4_R_FWD_TUN] = "fwd_tun",
    [L4_R_ICMP_ECHO_REPLY] = "icmp_echo_reply",
    [L4_R_PASS_NOT_IP] = "pass_not_ip",
    [L4_R_PASS_NOT_VIP] = "pass_not_vip",
    [L4_R_PASS_IP_OPTIONS] = "pass_ip_options",
    [L4_R_PASS_FRAGMENT] = "pass_fragment",
    [L4_R_PASS_IPV6_EXT] = "pass_ipv6_ext",
    [L4_R_PASS_OTHER_L4] = "pass_other_l4",
    [L4_R_PASS_ICMP] = "pass_icmp",
    [L4_R_PASS_MODE] = "pass_mode",
    [L4_R_DROP_TRUNCATED] = "drop_truncated",
    [L4_R_DROP_BAD_L3] = "drop_bad_l3",
    [L4_R_DROP_BAD_L4] = "drop_bad_l4",
    [L4_R_DROP_NO_REAL] = "drop_no_real",
    [L4_R_DROP_TOO_BIG] = "drop_too_big",
    [L4_R_DROP_NO_ROOM] = "drop_no_room",
    [L4_R_CT_HIT] = "ct_hit",
    [L4_R_CT_MISS] = "ct_miss",
    [L4_R_CT_GUARD_SKIP] = "ct_guard_skip",
    [L4_R_ICMP_ERR_ROUTED] = "icmp_err_routed",
};
#endif

/* Fixed values the forwarder writes into headers it builds. */
#define L4_TUN_TTL   64  /* outer TTL / hop limit */
#define L4_ECHO_TTL  64  /* TTL / hop limit of echo replies */

#endif
