/* The contract between the XDP forwarder (forwarder.bpf.c) and user space
 * (the control plane in src/l4, `sluice l4 list`, the fixtures): map keys
 * and values, modes, flags, reasons, default sizes and the defaults the
 * data plane applies to a zero field.
 *
 * Layout and address rules: l4_abi_common.h. The TOA option the forwarder
 * writes into FullNAT SYNs is specified in toa_abi.h, with its reader.
 */
#ifndef SLUICE_L4_FORWARDER_ABI_H
#define SLUICE_L4_FORWARDER_ABI_H

#include "l4/bpf/l4_abi_common.h"

/* ---- sizes (map max_entries; user space may raise them before load) ---- */

#define L4_MAX_VIPS         1024   /* entries in the vips hash */
#define L4_MAX_SERVICES     1024   /* vip_stats slots (vip_meta.svc) */
#define L4_MAX_REALS        4096   /* reals array; index 0 is never used */
#define L4_CONN_ENTRIES     262144 /* connection table (per-CPU LRU) */
#define L4_NAT_ENTRIES      524288 /* NAT state (shared LRU): two entries a flow */

/* Maglev: M must be prime. 65537 is the paper's and Katran's size; the
 * control plane picks a larger prime when 100 x reals exceeds it
 * (maglev_table_size() in src/lib/maglev.h) and sets maglev_m in .rodata
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
    L4_MODE_TUN = 1,     /* IPIP / IP6IP6 (or 4in6, 6in4) encapsulation,
                          * or GUE with L4_VIP_F_GUE */
    L4_MODE_NAT = 2,     /* DNAT to the real; replies come back through us */
    L4_MODE_FULLNAT = 3, /* DNAT + SNAT to a local address and port; TOA */
};

/* vip_meta.flags */
#define L4_VIP_F_NO_CT   0x0001 /* stateless: always Maglev, never touch the
                                 * connection table (hashing is consistent,
                                 * so flows only move when the table does) */
#define L4_VIP_F_SRC_HASH 0x0002 /* scheduler source-hash: the Maglev slot is
                                  * picked by a hash of the client's address
                                  * alone (every port of a client goes to one
                                  * real) */
#define L4_VIP_F_GUE     0x0008 /* TUN: encapsulate in GUE variant 1 (the
                                 * IP packet directly in UDP, to
                                 * l4_cfg.gue_port) instead of IPIP/IP6IP6 */
#define L4_VIP_F_RR      0x0004 /* schedulers rr and wrr: a new flow takes the
                                 * next non-empty slot of the live table from
                                 * a per-CPU cursor (wrr: the table holds
                                 * each real in proportion to its weight; rr:
                                 * built with equal weights) */

/* (vip_meta.reserved is still unused: NAT needed no per-service field but
 * the local-address pool, which is keyed by vip_meta.svc in nat_pools.) */

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
    /* Added for NAT (the fields above are unchanged): */
    __be16 port;      /* NAT/FullNAT: the real's port; 0 = the VIP's port */
    __u16 owner;      /* control plane only: the owning service's
                       * vip_meta.svc + 1 (0 = free slot); a restart uses it
                       * to give every real back its index. The data plane
                       * ignores it. */
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
    /* Appended for connection counts (`sluice l4 list`, src/l4/conns.h);
     * 8 -> 16 bytes, so a pinned table of the old shape is replaced. */
    __u32 seen;       /* bpf_ktime_get_coarse_ns() / 1e9 (CLOCK_MONOTONIC
                       * seconds) of the flow's last packet through this
                       * copy; written only when the second changes */
    __u8 flags;       /* L4_CONN_F_* */
    __u8 pad[3];      /* always 0 */
};

/* l4_conn.flags */
#define L4_CONN_F_CLOSING 0x01 /* TCP FIN or RST seen (a SYN without ACK on
                                * the same tuple clears it) */

/* l4_config (BPF_MAP_TYPE_ARRAY, one entry): run-time settings the control
 * plane may change at any moment. The NAT fields were appended after
 * tun_src6; a zeroed tail keeps the old behaviour (no reply lookups). */
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
    /* NAT and FullNAT (appended; see struct l4_nat) */
    __u32 flags;         /* L4_CFG_F_* */
    __u32 nat_tcp_timeout;  /* s: idle TCP flow; 0 = L4_NAT_TCP_TIMEOUT */
    __u32 nat_fin_timeout;  /* s: TCP flow after FIN or RST; 0 = default */
    __u32 nat_udp_timeout;  /* s: idle UDP flow; 0 = L4_NAT_UDP_TIMEOUT */
    /* Written by the control plane for readers of the pinned maps
     * (`sluice l4 list`); the data plane reads maglev_m from .rodata. */
    __u32 maglev_m;      /* Maglev table size M */
    __u32 maglev_tables; /* tables in the maglev map */
    __be16 gue_port;     /* TUN with L4_VIP_F_GUE: outer UDP destination
                          * port; 0 = L4_GUE_DEFAULT_PORT */
    __u16 pad3;
};

#define L4_GUE_DEFAULT_PORT 6080

/* l4_cfg.flags */
#define L4_CFG_F_NAT_REPLIES 0x0001 /* look up packets that are not to a VIP
                                     * as NAT/FullNAT replies; set it while
                                     * any NAT or FullNAT service exists, so
                                     * plain traffic skips the lookup
                                     * otherwise */
#define L4_CFG_F_SYNC        0x0002 /* l4.sync is on: every new NAT/FullNAT
                                     * flow is announced in sync_events */

#define L4_NAT_TCP_TIMEOUT 900 /* s, as LVS */
#define L4_NAT_FIN_TIMEOUT 10  /* s */
#define L4_NAT_UDP_TIMEOUT 300 /* s */

/* nat (BPF_MAP_TYPE_LRU_HASH, common LRU, shared by all CPUs): NAT and
 * FullNAT state, two entries a flow, inserted together on its first packet:
 *
 *   IN    {client, VIP, cport, vport, proto}  -> rewrite to
 *         {src: client (NAT) or local (FullNAT), dst: real, sport, dport}
 *   OUT   {real, client, rport, cport, proto} (NAT)        -> rewrite to
 *   LOCAL {0, local, 0, lport, proto}         (FullNAT)    -> rewrite to
 *         {src: VIP, dst: client, sport: vport, dport: cport}
 *
 * The keys hold nothing a CPU owns, so whichever CPU RSS hands a reply to
 * finds the entry. A value says what the packet becomes. A FullNAT reply is
 * looked up by its destination (local address and port) alone, and checked
 * against the value's peer (the real's address and port): so the LOCAL
 * entry is the claim on a local address and port, at most one live flow
 * per (local address, port, protocol) whatever real it goes to. The data
 * plane only hands out a (local, lport) whose LOCAL key is absent or idle
 * past its timeout, so a port is free again once its entry is evicted or
 * expires. The OUT/LOCAL entry carries the flow's clock and TCP state. */
struct l4_nat_key {
    __be32 src[4];
    __be32 dst[4];
    __be16 sport;
    __be16 dport;
    __u8 proto;
    __u8 dir;         /* L4_NAT_IN or L4_NAT_OUT */
    __u8 pad[2];      /* always 0 */
};

#define L4_NAT_IN    1
#define L4_NAT_OUT   2  /* NAT reply */
#define L4_NAT_LOCAL 3  /* FullNAT reply (and the local port's claim) */

struct l4_nat {
    __be32 saddr[4];  /* the packet's new source */
    __be32 daddr[4];  /* the packet's new destination */
    __be16 sport;
    __be16 dport;
    __u8 mac[6];      /* OUT/LOCAL: next hop towards the client (the source MAC
                       * of the client's first packet); IN: unused, the
                       * real's MAC is read from reals on every packet */
    __u8 mode;        /* L4_MODE_NAT or L4_MODE_FULLNAT */
    __u8 state;       /* L4_NAT_S_* (OUT/LOCAL) */
    __u32 real;       /* real index */
    __u32 svc;        /* vip_meta.svc, for vip_stats */
    __u32 ifindex;    /* OUT/LOCAL: interface the client's packets came in on */
    __u32 flags;      /* L4_NAT_F_* (was padding: 0 on entries the data
                       * plane makes) */
    __u64 last_seen;  /* OUT/LOCAL: bpf_ktime_get_coarse_ns() of the flow's
                       * last packet either way, rewritten at most once a
                       * second (the line is shared between CPUs); IN: when
                       * it was made (an IN entry is judged by its OUT or
                       * LOCAL entry) */
    __be32 peer[4];   /* LOCAL: the real's address ... */
    __be16 peer_port; /* ... and port: a reply must come from them */
    __u16 pad2;
    __u32 pad3;
};

#define L4_NAT_S_CLOSING 0x01 /* FIN or RST seen: the short timeout applies */

/* l4_nat.flags */
#define L4_NAT_F_IMPORTED 0x01 /* written by l4.sync from a peer's entry (on
                                * both of the flow's entries): not sent on
                                * to the peers again */

/* nat_pools (BPF_MAP_TYPE_ARRAY, L4_MAX_SERVICES): FullNAT local addresses
 * of a service, indexed by vip_meta.svc. Addresses are of the service's
 * family (v4-mapped for IPv4). Ports [port_min, port_max], host order. */
#define L4_POOL_ADDRS 8
#define L4_NAT_PORT_TRIES 16  /* probes for a free local port per new flow */

struct l4_nat_pool {
    __be32 addr[L4_POOL_ADDRS][4];
    __u32 naddrs;     /* 0: no pool, FullNAT flows are dropped */
    __u16 port_min;   /* host order; 0 = 1024 */
    __u16 port_max;   /* host order; 0 = 65535 */
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
    L4_R_PASS_MODE,          /* mode not handled: an unknown mode */
    /* dropped */
    L4_R_DROP_TRUNCATED,     /* a header or the IP length runs past the frame */
    L4_R_DROP_BAD_L3,        /* IP version, IHL < 5, total length < header */
    L4_R_DROP_BAD_L4,        /* TCP data offset, UDP length inconsistent */
    L4_R_DROP_NO_REAL,       /* empty Maglev slot or inactive real */
    L4_R_DROP_TOO_BIG,       /* TUN: would exceed cfg.tun_mtu */
    L4_R_DROP_NO_ROOM,       /* bpf_xdp_adjust_head() refused */
    /* Added with NAT. (Appending here renumbers the events below: user
     * space must index by the enum, never by a stored number.) */
    L4_R_FWD_NAT,            /* client -> real, DNAT */
    L4_R_FWD_FULLNAT,        /* client -> real, DNAT + SNAT */
    L4_R_FWD_NAT_REPLY,      /* real -> client, translated back (both modes) */
    L4_R_DROP_NAT_NO_PORT,   /* FullNAT: no free local port in
                              * L4_NAT_PORT_TRIES probes (or no pool) */
    L4_R_DROP_NAT_GUARD,     /* NAT: SYN guard over the cap (NAT cannot
                              * forward without state) */
    L4_R_DROP_BAD_CSUM,      /* NAT: IPv6 UDP with checksum 0 (invalid) */
    /* Added with PTB generation (renumbers the events, as above). */
    L4_R_ICMP_PTB_SENT,      /* TUN: too big for cfg.tun_mtu; answered with
                              * frag-needed (IPv4 with DF) or ICMPv6
                              * packet-too-big, XDP_TX back to the client */
    /* Added with l4.sync's mid-flow rule (renumbers the events, as above). */
    L4_R_DROP_NAT_NO_FLOW,   /* l4.sync on: a TCP packet other than a SYN
                              * for a NAT/FullNAT flow this node holds no
                              * entry for (the entry may still arrive by
                              * sync; a new one would get the flow reset) */
    L4_R__DISPOSITIONS,      /* marker: count of disposition reasons */
    /* events */
    L4_R_CT_HIT = L4_R__DISPOSITIONS,
    L4_R_CT_MISS,
    L4_R_CT_GUARD_SKIP,      /* SYN guard: over the cap, not inserted */
    L4_R_ICMP_ERR_ROUTED,    /* frag-needed / packet-too-big sent to a real */
    L4_R_NAT_STALE,          /* NAT entry expired, inconsistent or to an
                              * inactive real: replaced */
    L4_R_TOA_ADDED,          /* FullNAT SYN got the client-address option */
    L4_R_TOA_NO_ROOM,        /* ... or had no option space left for it */
    /* Added with l4.sync (appended: renumbers nothing). */
    L4_R_SYNC_EVENT,         /* a new NAT/FullNAT flow announced in sync_events */
    L4_R_SYNC_LOST,          /* ... or not: the ring was full (the next
                              * refresh sends the flow anyway) */
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
    [L4_R_FWD_NAT] = "fwd_nat",
    [L4_R_FWD_FULLNAT] = "fwd_fullnat",
    [L4_R_FWD_NAT_REPLY] = "fwd_nat_reply",
    [L4_R_DROP_NAT_NO_PORT] = "drop_nat_no_port",
    [L4_R_DROP_NAT_GUARD] = "drop_nat_guard",
    [L4_R_DROP_BAD_CSUM] = "drop_bad_csum",
    [L4_R_ICMP_PTB_SENT] = "icmp_ptb_sent",
    [L4_R_DROP_NAT_NO_FLOW] = "drop_nat_no_flow",
    [L4_R_CT_HIT] = "ct_hit",
    [L4_R_CT_MISS] = "ct_miss",
    [L4_R_CT_GUARD_SKIP] = "ct_guard_skip",
    [L4_R_ICMP_ERR_ROUTED] = "icmp_err_routed",
    [L4_R_NAT_STALE] = "nat_stale",
    [L4_R_TOA_ADDED] = "toa_added",
    [L4_R_TOA_NO_ROOM] = "toa_no_room",
    [L4_R_SYNC_EVENT] = "sync_event",
    [L4_R_SYNC_LOST] = "sync_lost",
};
#endif

/* Fixed values the forwarder writes into headers it builds. */
#define L4_TUN_TTL   64  /* outer TTL / hop limit */
#define L4_ECHO_TTL  64  /* TTL / hop limit of echo replies */

/* ---- schedulers (appended) ---- */

/* rr_cursor (BPF_MAP_TYPE_PERCPU_ARRAY, L4_MAX_SERVICES): for services with
 * L4_VIP_F_RR, each CPU's position in the service's live Maglev table,
 * indexed by vip_meta.svc. A new flow takes the first slot from `next` on
 * whose real is set and active, at most L4_RR_PROBES slots, and `next` moves
 * past it. On a CPU's first use `next` starts at cpu * M / nr_cpus, so the
 * CPUs do not all begin with the same real. */
struct l4_rr_cursor {
    __u32 next;       /* slot within the table, 0..M-1 */
    __u32 started;    /* 0 until this CPU first used the cursor */
};

#define L4_RR_PROBES 8  /* slots tried per new flow before drop_no_real */

/* ---- connection sync (appended; l4.sync, src/l4/sync.c) ---- */

/* sync_events (BPF_MAP_TYPE_RINGBUF, L4_SYNC_RING_BYTES): while
 * L4_CFG_F_SYNC is set, nat_in() writes one record per new NAT/FullNAT
 * flow, after both of its entries are in `nat`: the IN key. User space
 * reads the two entries from `nat` itself (they may have changed since,
 * which is what it should send). Written without a wake-up
 * (BPF_RB_NO_WAKEUP): user space drains the ring on its batch timer, so
 * a new flow costs no interrupt work. A full ring counts
 * L4_R_SYNC_LOST. */
#define L4_SYNC_RING_BYTES (1u << 20)

struct l4_sync_event {
    struct l4_nat_key in;   /* the flow's IN key */
};

#endif
