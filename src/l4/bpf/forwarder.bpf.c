/* Sluice L4 forwarder: the XDP data plane.
 *
 * Packet walk (docs/l4-dataplane.md has the long form):
 *   Ethernet [+ one 802.1Q/802.1ad tag] -> IPv4 (IHL 5, unfragmented) or
 *   IPv6 (no extension headers) -> TCP/UDP ports, or ICMP
 *   -> VIP lookup {dst, dport, proto}
 *   -> connection table (per-CPU LRU) -> on a miss, Maglev by flow hash
 *   -> DR (MAC rewrite) or TUN (IPIP / IP6IP6 encapsulation, or GUE: the
 *      IP packet in UDP), XDP_TX or bpf_redirect().
 * NAT and FullNAT services take their own branch after the VIP lookup: a
 * shared LRU table of translations (struct l4_nat), DNAT (+ SNAT to a local
 * address and port, + the TOA option on SYNs, in FullNAT) on the way in, and
 * the reverse for replies, which are looked up when a packet is not to a VIP.
 * ICMP echo requests to a VIP are answered here; ICMP frag-needed and ICMPv6
 * packet-too-big are sent to the real that owns the flow in their inner
 * header.
 *
 * Policy: a packet is only rewritten when every header it depends on has been
 * read and checked. What is not ours, or not understood (non-IP, IP options,
 * fragments, IPv6 extension headers, other protocols), goes to the kernel
 * stack untouched. What is broken (a header cut short by the frame, lengths
 * that contradict each other) is dropped: the stack would drop it as well,
 * so dropping here changes nothing but the cost. Every packet counts in
 * exactly one disposition reason (enum l4_reason).
 *
 * Loops: none. Every header has a fixed size once options are excluded, so
 * all offsets are one of a few constants and each access is preceded by an
 * explicit bounds check against data_end.
 */
#include "vmlinux.h"

#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "l4/bpf/l4_csum.h"
#include "l4/bpf/l4_hash.h"
#include "l4/bpf/forwarder_abi.h"
#include "l4/bpf/toa_abi.h"

/* Not in vmlinux.h (they are #defines in the uapi headers). */
#define ETH_P_IP      0x0800
#define ETH_P_IPV6    0x86DD
#define ETH_P_8021Q   0x8100
#define ETH_P_8021AD  0x88A8
#define IP_MF         0x2000
#define IP_DF         0x4000
#define IP_OFFSET     0x1FFF
#define PROTO_ICMP    1
#define PROTO_IPIP    4
#define PROTO_TCP     6
#define PROTO_UDP     17
#define PROTO_IPV6    41
#define PROTO_ICMPV6  58
#define ICMP_ECHOREPLY      0
#define ICMP_DEST_UNREACH   3
#define ICMP_FRAG_NEEDED    4
#define ICMP_ECHO           8
#define ICMPV6_PKT_TOOBIG   2
#define ICMPV6_ECHO_REQUEST 128
#define ICMPV6_ECHO_REPLY   129
#define NSEC_PER_SEC  1000000000ULL

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* ---- load-time settings (.rodata: fixed once loaded, so the verifier and
 * the JIT see them as constants) ---- */

const volatile __u32 maglev_m = L4_MAGLEV_DEFAULT_M;            /* prime */
const volatile __u32 maglev_tables = L4_MAGLEV_DEFAULT_TABLES;
const volatile __u32 flow_seed = L4_DEFAULT_FLOW_SEED;
/* Possible CPUs, for spreading the rr cursors' starting points. */
const volatile __u32 nr_cpus = 1;

/* ---- maps (struct layouts in forwarder_abi.h) ---- */

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, L4_MAX_VIPS);
    __type(key, struct l4_vip_key);
    __type(value, struct l4_vip_meta);
} vips SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, L4_MAX_REALS);
    __type(key, __u32);
    __type(value, struct l4_real);
} reals SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, L4_MAGLEV_DEFAULT_TABLES * L4_MAGLEV_DEFAULT_M);
    __type(key, __u32);
    __type(value, __u32);
} maglev SEC(".maps");

/* Per-CPU LRU with per-CPU LRU lists: no lock shared between CPUs on the
 * insert path. DR and TUN flows stay on the CPU RSS chose for them. */
struct {
    __uint(type, BPF_MAP_TYPE_LRU_PERCPU_HASH);
    __uint(map_flags, BPF_F_NO_COMMON_LRU);
    __uint(max_entries, L4_CONN_ENTRIES);
    __type(key, struct l4_flow_key);
    __type(value, struct l4_conn);
} conn SEC(".maps");

/* The same flows in one table shared by every CPU, consulted only when the
 * per-CPU table misses. A flow does not always stay on one CPU: RSS can be
 * re-programmed, and on veth XDP runs on the sending task's CPU, which the
 * scheduler moves. Without this, such a packet would fall back to Maglev,
 * and after a table change (a real removed, a weight changed) Maglev may
 * name another real for an established flow. */
struct {
    __uint(type, BPF_MAP_TYPE_LRU_HASH);
    __uint(max_entries, L4_CONN_ENTRIES);
    __type(key, struct l4_flow_key);
    __type(value, struct l4_conn);
} conn_shared SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, struct l4_cfg);
} l4_config SEC(".maps");

/* NAT state: a common (not per-CPU) LRU, because a flow's replies come in
 * on whatever CPU the NIC's RSS picks for the real's 5-tuple, which is not
 * the client's. Both directions live here (l4_nat_key.dir). */
struct {
    __uint(type, BPF_MAP_TYPE_LRU_HASH);
    __uint(max_entries, L4_NAT_ENTRIES);
    __type(key, struct l4_nat_key);
    __type(value, struct l4_nat);
} nat SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, L4_MAX_SERVICES);
    __type(key, __u32);
    __type(value, struct l4_nat_pool);
} nat_pools SEC(".maps");

/* Scratch space for NAT: two entries, two keys and the headers the TOA
 * insert moves do not fit on the 512-byte BPF stack beside the rest.
 * Per-CPU, and an XDP program runs to completion on its CPU, so nothing
 * else uses it meanwhile. */
#define TOA_HDR_MAX (18 + 40 + 60)
struct nat_scratch {
    struct l4_nat in, out;       /* the values being built */
    struct l4_nat_key ik, ok;    /* IN and OUT keys */
    __u8 buf[TOA_HDR_MAX + 2];   /* headers moved by the TOA insert */
};

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, struct nat_scratch);
} scratch SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, struct l4_flood);
} flood SEC(".maps");


/* rr and wrr: per-CPU, so taking the next slot needs no atomic and no
 * shared cache line; each CPU walks the table on its own. */
struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, L4_MAX_SERVICES);
    __type(key, __u32);
    __type(value, struct l4_rr_cursor);
} rr_cursor SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, L4_MAX_SERVICES);
    __type(key, __u32);
    __type(value, struct l4_counter);
} vip_stats SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, L4_MAX_REALS);
    __type(key, __u32);
    __type(value, struct l4_counter);
} real_stats SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, L4_R__COUNT);
    __type(key, __u32);
    __type(value, struct l4_counter);
} reasons SEC(".maps");

/* ---- counters ---- */

static __always_inline void count_in(void *map, __u32 idx, __u64 bytes)
{
    struct l4_counter *c = bpf_map_lookup_elem(map, &idx);

    if (c) {
        c->packets++;
        c->bytes += bytes;
    }
}

/* Count a pass or drop disposition and return its verdict. */
static __always_inline int finish(enum l4_reason r, __u64 bytes)
{
    count_in(&reasons, r, bytes);
    return r >= L4_R_DROP_TRUNCATED ? XDP_DROP : XDP_PASS;
}

/* ---- checksums (RFC 1071 sums over native 16-bit words; the one's
 * complement sum does not depend on byte order as long as every word is
 * read the same way) ---- */

static __always_inline __u16 csum_fold(__u32 s)
{
    s = (s & 0xffff) + (s >> 16);
    s = (s & 0xffff) + (s >> 16);
    return (__u16)~s;
}

/* RFC 1624 eqn. 3: HC' = ~(~HC + ~m + m'). Never produces the 0x0000 vs
 * 0xffff ambiguity of eqn. 2. */
static __always_inline void csum_replace16(__u16 *sum, __u16 old, __u16 new)
{
    __u32 s = (__u16)~*sum;

    s += (__u16)~old;
    s += new;
    *sum = csum_fold(s);
}

static __always_inline __u16 ip4_hdr_csum(const struct iphdr *ip)
{
    const __u16 *w = (const __u16 *)ip;
    __u32 s = 0;

#pragma unroll
    for (int i = 0; i < (int)(sizeof(*ip) / 2); i++)
        s += w[i];
    return csum_fold(s);
}

/* ---- parsing ---- */

struct pkt {
    __u32 l3_off;       /* 14, or 18 behind one VLAN tag */
    __u32 l4_off;       /* l3_off + 20 or + 40 (no options, no ext headers) */
    __u32 ip_len;       /* IP total length (header + payload) */
    __be16 vlan_tpid;   /* 0 when untagged */
    __be16 vlan_tci;
    __u8 v6;
    __u8 tos;           /* IPv4 TOS / IPv6 traffic class: copied outward */
    __u8 tcp_flags;     /* TCP only: the flags byte (NAT state, TOA) */
    __u8 tcp_doff;      /* TCP only: header length in bytes, 20..60 */
    struct l4_flow_key key;
};

/* Offsets read back from struct pkt can reach the verifier as unbounded
 * scalars (narrow stack slots are not always tracked), and a packet pointer
 * plus an unbounded scalar cannot be range-checked. These re-bound them to
 * what parse() can produce before any pointer arithmetic. */
#define L3_OFF_MAX (14 + 4)
#define L4_OFF_MAX (L3_OFF_MAX + 40)

/* Internal parse results beyond enum l4_reason. */
#define PARSE_L4   (L4_R__COUNT + 1)  /* TCP or UDP: key is filled */
#define PARSE_ICMP (L4_R__COUNT + 2)  /* ICMP / ICMPv6 header present */

static __always_inline void v4_mapped(__be32 out[4], __be32 a)
{
    out[0] = 0;
    out[1] = 0;
    out[2] = bpf_htonl(0xffff);
    out[3] = a;
}

static __always_inline bool is_v4_mapped(const __be32 a[4])
{
    return a[0] == 0 && a[1] == 0 && a[2] == bpf_htonl(0xffff);
}

static __always_inline int parse_ipv4(void *data, void *data_end, struct pkt *p)
{
    struct iphdr *ip = data + p->l3_off;
    __u64 frame = data_end - data;
    __u8 vihl;
    __u32 tot;

    if ((void *)(ip + 1) > data_end)
        return L4_R_DROP_TRUNCATED;
    vihl = *(__u8 *)ip;
    if ((vihl >> 4) != 4 || (vihl & 0xf) < 5)
        return L4_R_DROP_BAD_L3;
    tot = bpf_ntohs(ip->tot_len);
    if (tot < (__u32)(vihl & 0xf) * 4)
        return L4_R_DROP_BAD_L3;
    if (p->l3_off + tot > frame)
        return L4_R_DROP_TRUNCATED;
    /* Options change the L4 offset and may carry source routes: the stack
     * handles them (rare in practice; counted). */
    if ((vihl & 0xf) != 5)
        return L4_R_PASS_IP_OPTIONS;
    /* Every fragment, first or not: forwarding the first by its ports while
     * the rest (which have none) go elsewhere would split the datagram. */
    if (ip->frag_off & bpf_htons(IP_MF | IP_OFFSET))
        return L4_R_PASS_FRAGMENT;

    p->ip_len = tot;
    p->tos = ip->tos;
    p->l4_off = p->l3_off + sizeof(*ip);
    v4_mapped(p->key.src, ip->saddr);
    v4_mapped(p->key.dst, ip->daddr);
    p->key.proto = ip->protocol;
    if (ip->protocol == PROTO_ICMPV6)  /* ICMPv6 inside IPv4: not ours */
        return L4_R_PASS_OTHER_L4;
    return 0;
}

static __always_inline int parse_ipv6(void *data, void *data_end, struct pkt *p)
{
    struct ipv6hdr *ip6 = data + p->l3_off;
    __u64 frame = data_end - data;
    __u32 w0, plen;
    __u8 nh;

    if ((void *)(ip6 + 1) > data_end)
        return L4_R_DROP_TRUNCATED;
    w0 = bpf_ntohl(*(__be32 *)ip6);
    if ((w0 >> 28) != 6)
        return L4_R_DROP_BAD_L3;
    plen = bpf_ntohs(ip6->payload_len);
    if (p->l3_off + sizeof(*ip6) + plen > frame)
        return L4_R_DROP_TRUNCATED;

    nh = ip6->nexthdr;
    switch (nh) {
    case PROTO_TCP:
    case PROTO_UDP:
    case PROTO_ICMPV6:
        break;
    case 44: /* fragment header */
        return L4_R_PASS_FRAGMENT;
    case 0:   /* hop-by-hop (also jumbograms, payload_len 0) */
    case 43:  /* routing */
    case 50:  /* ESP */
    case 51:  /* AH */
    case 60:  /* destination options */
    case 135: /* mobility */
    case 139: /* HIP */
    case 140: /* shim6 */
    case 253: /* experimental */
    case 254:
        return L4_R_PASS_IPV6_EXT;
    default:
        return L4_R_PASS_OTHER_L4;
    }

    /* v4-mapped addresses have no business in IPv6 headers
     * (draft-itojun-v6ops-v4mapped-harmful). A v4-mapped destination would
     * alias our IPv4 VIP keys: it is not a VIP. A v4-mapped source is a
     * client the real could only answer over IPv4 (its socket maps the
     * address back), and Linux refuses TCP connections from one: drop. */
    if (is_v4_mapped(ip6->saddr.in6_u.u6_addr32))
        return L4_R_DROP_BAD_L3;
    if (is_v4_mapped(ip6->daddr.in6_u.u6_addr32))
        return L4_R_PASS_NOT_VIP;

    p->v6 = 1;
    p->ip_len = sizeof(*ip6) + plen;
    p->tos = (w0 >> 20) & 0xff;
    p->l4_off = p->l3_off + sizeof(*ip6);
    __builtin_memcpy(p->key.src, &ip6->saddr, 16);
    __builtin_memcpy(p->key.dst, &ip6->daddr, 16);
    p->key.proto = nh;
    return 0;
}

/* Ports (TCP/UDP) after checking the L4 header against both the frame and
 * the IP length. */
static __always_inline int parse_l4(void *data, void *data_end, struct pkt *p)
{
    __u32 ip_end = p->l3_off + p->ip_len;
    void *l4 = data + p->l4_off;

    switch (p->key.proto) {
    case PROTO_TCP: {
        struct tcphdr *th = l4;
        __u32 doff;

        if (p->l4_off + sizeof(*th) > ip_end)
            return L4_R_DROP_BAD_L4;
        if ((void *)(th + 1) > data_end)
            return L4_R_DROP_TRUNCATED;
        doff = (((__u8 *)th)[12] >> 4) * 4;
        if (doff < sizeof(*th) || p->l4_off + doff > ip_end)
            return L4_R_DROP_BAD_L4;
        p->key.sport = th->source;
        p->key.dport = th->dest;
        p->tcp_flags = ((__u8 *)th)[13];
        p->tcp_doff = doff;
        return PARSE_L4;
    }
    case PROTO_UDP: {
        struct udphdr *uh = l4;
        __u32 ulen;

        if (p->l4_off + sizeof(*uh) > ip_end)
            return L4_R_DROP_BAD_L4;
        if ((void *)(uh + 1) > data_end)
            return L4_R_DROP_TRUNCATED;
        ulen = bpf_ntohs(uh->len);
        if (ulen < sizeof(*uh) || p->l4_off + ulen > ip_end)
            return L4_R_DROP_BAD_L4;
        p->key.sport = uh->source;
        p->key.dport = uh->dest;
        return PARSE_L4;
    }
    case PROTO_ICMP:
    case PROTO_ICMPV6:
        /* 8 bytes: type, code, checksum and the 4-byte rest of header. */
        if (p->l4_off + 8 > ip_end)
            return L4_R_DROP_BAD_L4;
        if (l4 + 8 > data_end)
            return L4_R_DROP_TRUNCATED;
        return PARSE_ICMP;
    default:
        return L4_R_PASS_OTHER_L4;
    }
}

static __always_inline int parse(void *data, void *data_end, struct pkt *p)
{
    struct ethhdr *eth = data;
    __be16 proto;
    int rc;

    if ((void *)(eth + 1) > data_end)
        return L4_R_DROP_TRUNCATED;
    proto = eth->h_proto;
    p->l3_off = sizeof(*eth);
    if (proto == bpf_htons(ETH_P_8021Q) || proto == bpf_htons(ETH_P_8021AD)) {
        struct vlan_hdr *vh = data + sizeof(*eth);

        if ((void *)(vh + 1) > data_end)
            return L4_R_DROP_TRUNCATED;
        p->vlan_tpid = proto;
        p->vlan_tci = vh->h_vlan_TCI;
        proto = vh->h_vlan_encapsulated_proto;
        p->l3_off += sizeof(*vh);
    }

    /* A second tag (QinQ) lands here as "not IP": one tag is the limit. */
    if (proto == bpf_htons(ETH_P_IP))
        rc = parse_ipv4(data, data_end, p);
    else if (proto == bpf_htons(ETH_P_IPV6))
        rc = parse_ipv6(data, data_end, p);
    else
        return L4_R_PASS_NOT_IP;
    if (rc)
        return rc;
    return parse_l4(data, data_end, p);
}

/* ---- real selection ---- */

/* The SYN guard: may this CPU insert one more connection entry in the
 * current one-second window? Over the cap, flows are still forwarded (by
 * Maglev, which needs no state) but not remembered, so a flood of new
 * 5-tuples cannot push established flows out of the LRU. */
static __always_inline bool flood_allow(const struct l4_cfg *cfg)
{
    __u32 zero = 0;
    struct l4_flood *f;
    __u64 now;

    if (!cfg->new_flow_cap)
        return true;
    f = bpf_map_lookup_elem(&flood, &zero);
    if (!f)
        return true;
    /* The coarse clock (tick resolution) is plenty for a one-second
     * window and cheaper than reading the TSC on every miss. */
    now = bpf_ktime_get_coarse_ns();
    if (now - f->window_start >= NSEC_PER_SEC) {
        f->window_start = now;
        f->inserted = 0;
    }
    if (f->inserted >= cfg->new_flow_cap)
        return false;
    f->inserted++;
    return true;
}

static __always_inline struct l4_real *active_real(__u32 idx)
{
    struct l4_real *r;

    if (!idx)
        return NULL;
    r = bpf_map_lookup_elem(&reals, &idx);
    if (!r || !(r->flags & L4_REAL_F_ACTIVE))
        return NULL;
    return r;
}

#define TCP_FIN 0x01
#define TCP_SYN 0x02
#define TCP_RST 0x04
#define TCP_ACK 0x10

/* Does this packet open a flow? A TCP SYN without ACK, or any UDP packet
 * (UDP has no handshake). A TCP packet that is not a SYN and has no entry
 * belongs to a flow whose entry is gone (evicted, or never made because
 * the SYN guard held it back): it is not a new flow. */
static __always_inline bool opens_flow(const struct pkt *p)
{
    return p->key.proto != PROTO_TCP || (p->tcp_flags & (TCP_SYN | TCP_ACK)) == TCP_SYN;
}

static __always_inline __u32 maglev_real_at(__u32 table, __u32 slot)
{
    __u32 k = table * maglev_m + slot, *m = bpf_map_lookup_elem(&maglev, &k);

    return m ? *m : 0;
}

/* rr / wrr: the next slot of the live table, from this CPU's cursor, whose
 * real is set and active; at most L4_RR_PROBES tries. The control plane
 * builds the table with the reals' weights (wrr) or equal weights (rr), so
 * in slot order every real appears in proportion to its weight. Returns the
 * real index, 0 for none. */
static __always_inline __u32 rr_next(const struct l4_vip_meta *vip)
{
    __u32 svc = vip->svc, m = maglev_m, cur, idx, i;
    struct l4_rr_cursor *c = bpf_map_lookup_elem(&rr_cursor, &svc);

    if (!c)
        return 0;
    if (!c->started) {
        __u32 n = nr_cpus ? nr_cpus : 1;

        c->next = (__u32)(((__u64)(bpf_get_smp_processor_id() % n) * m) / n);
        c->started = 1;
    }
    cur = c->next < m ? c->next : 0;
    for (i = 0; i < L4_RR_PROBES; i++) {
        idx = maglev_real_at(vip->table, cur);
        cur = cur + 1 < m ? cur + 1 : 0;
        if (active_real(idx)) {
            c->next = cur;
            return idx;
        }
    }
    c->next = cur;
    return 0;
}

/* The scheduler's choice for a flow without an entry (vip_meta.flags):
 *   L4_VIP_F_RR        the next slot from the cursor, for a packet that
 *                      opens a flow and will be remembered (`sched_rr`);
 *   L4_VIP_F_SRC_HASH  the slot of the client's address hash;
 *   neither            the slot of the flow hash `h` (Maglev).
 * An rr service's packet that cannot be remembered (SYN guard over the cap,
 * no connection table) or does not open a flow (an ICMP error, a TCP
 * segment whose entry is gone) falls back to the flow hash: stateless and
 * the same for every packet of the flow, where the cursor would pick a new
 * real each time. */
static __always_inline __u32 sched_pick(const struct pkt *p, const struct l4_vip_meta *vip, __u32 h,
                                        bool sched_rr)
{
    if ((vip->flags & L4_VIP_F_RR) && sched_rr && opens_flow(p))
        return rr_next(vip);
    if (vip->flags & L4_VIP_F_SRC_HASH)
        h = l4_src_hash(p->key.src, flow_seed);
    return maglev_real_at(vip->table, l4_maglev_slot(h, maglev_m));
}

/* Note a packet on a connection entry: its second and whether TCP is
 * closing, for the connection counts of `sluice l4 list`. Only what
 * changed is written, so a busy flow costs a clock read and two compares;
 * the per-CPU entry's line is this CPU's own anyway. */
static __always_inline void conn_touch(struct l4_conn *c, const struct pkt *p, __u32 now)
{
    __u8 fl = c->flags;

    if (p->key.proto == PROTO_TCP) {
        if (p->tcp_flags & (TCP_FIN | TCP_RST))
            fl |= L4_CONN_F_CLOSING;
        else if ((p->tcp_flags & (TCP_SYN | TCP_ACK)) == TCP_SYN)
            fl &= ~L4_CONN_F_CLOSING; /* the client reuses its tuple */
    }
    if (fl != c->flags)
        c->flags = fl;
    if (c->seen != now)
        c->seen = now;
}

static __always_inline __u32 now_secs(void)
{
    return (__u32)(bpf_ktime_get_coarse_ns() / NSEC_PER_SEC);
}

/* The real for a flow: the connection table first, then Maglev. `track`
 * is false for ICMP errors, which must not create state or count as flows.
 * An entry whose real has gone inactive is treated as a miss, so a removed
 * real's flows move to the Maglev choice. */
static __always_inline struct l4_real *pick_real(const struct pkt *p, const struct l4_vip_meta *vip,
                                                 const struct l4_cfg *cfg, bool track,
                                                 __u32 *real_idx, __u32 *hash)
{
    bool use_ct = !(vip->flags & L4_VIP_F_NO_CT), insert;
    struct l4_real *r;
    __u32 h, idx;

    if (use_ct) {
        struct l4_conn *c = bpf_map_lookup_elem(&conn, &p->key);

        if (c) {
            r = active_real(c->real);
            if (r) {
                if (track) {
                    count_in(&reasons, L4_R_CT_HIT, 0);
                    conn_touch(c, p, now_secs());
                }
                *real_idx = c->real;
                *hash = c->hash;
                return r;
            }
        }
        /* Not on this CPU: another CPU may have seen the flow first. */
        c = bpf_map_lookup_elem(&conn_shared, &p->key);
        if (c) {
            struct l4_conn v = *c;

            r = active_real(v.real);
            if (r) {
                if (track) {
                    count_in(&reasons, L4_R_CT_HIT, 0);
                    /* (A shared line, but this path is rare: a flow that
                     * changed CPU.) */
                    conn_touch(c, p, now_secs());
                    v = *c;
                    bpf_map_update_elem(&conn, &p->key, &v, BPF_ANY);
                }
                *real_idx = v.real;
                *hash = v.hash;
                return r;
            }
        }
        if (track)
            count_in(&reasons, L4_R_CT_MISS, 0);
    }

    /* The flow hash is cached in the entry whatever the scheduler: TUN
     * takes the outer source and flow label from it. */
    h = l4_flow_hash(&p->key, flow_seed);
    /* A table id past the configured count could make table * M wrap
     * around into another service's slots: refuse it. */
    if (vip->table >= maglev_tables)
        return NULL;
    /* Ask the SYN guard first: rr may only advance its cursor for a flow
     * that will be remembered. */
    insert = track && use_ct && flood_allow(cfg);
    idx = sched_pick(p, vip, h, insert);
    r = active_real(idx);
    if (!r)
        return NULL;

    if (track && use_ct) {
        if (insert) {
            struct l4_conn v = { .real = idx, .hash = h };

            conn_touch(&v, p, now_secs());
            bpf_map_update_elem(&conn, &p->key, &v, BPF_ANY);
            bpf_map_update_elem(&conn_shared, &p->key, &v, BPF_ANY);
        } else {
            count_in(&reasons, L4_R_CT_GUARD_SKIP, 0);
        }
    }
    *real_idx = idx;
    *hash = h;
    return r;
}

/* ---- forwarding ---- */

static __always_inline int tx_verdict(const struct l4_cfg *cfg)
{
    if (cfg->tx_ifindex)
        return bpf_redirect(cfg->tx_ifindex, 0);
    return XDP_TX;
}

/* DR: the real holds the VIP on a loopback, so only the Ethernet header
 * changes; IP and L4 bytes (and their checksums) stay as the client sent
 * them. */
static __always_inline int fwd_dr(struct xdp_md *ctx, const struct l4_real *r, const struct l4_cfg *cfg)
{
    void *data = (void *)(long)ctx->data;
    void *data_end = (void *)(long)ctx->data_end;
    struct ethhdr *eth = data;

    if ((void *)(eth + 1) > data_end)
        return L4_R_DROP_TRUNCATED;
    __builtin_memcpy(eth->h_dest, r->mac, 6);
    __builtin_memcpy(eth->h_source, cfg->src_mac, 6);
    return L4_R_FWD_DR;
}

/* TUN outer IPv4 source: the configured prefix with its host bits taken
 * from the flow hash. A flow always gets the same source; different flows
 * get different ones, so the real's NIC spreads them over its queues by
 * RSS on the outer header. */
static __always_inline __be32 tun_src4(const struct l4_cfg *cfg, __u32 hash)
{
    __u32 plen = cfg->tun_src4_plen;
    __u32 host = plen >= 32 ? 0 : 0xffffffffu >> plen;

    return bpf_htonl((bpf_ntohl(cfg->tun_src4) & ~host) | (hash & host));
}

/* IPv6: the hash fills at most the last 32 host bits; the rest of the
 * address is the prefix as configured. */
static __always_inline void tun_src6(const struct l4_cfg *cfg, __u32 hash, struct in6_addr *out)
{
    __u32 plen = cfg->tun_src6_plen;
    __u32 host;

    if (plen >= 128)
        host = 0;
    else if (plen <= 96)
        host = 0xffffffffu;
    else
        host = 0xffffffffu >> (plen - 96);
    __builtin_memcpy(out, cfg->tun_src6, 16);
    out->in6_u.u6_addr32[3] = bpf_htonl((bpf_ntohl(cfg->tun_src6[3]) & ~host) | (hash & host));
}

/* GUE variant 1 (draft-ietf-intarea-gue, section 5): the IP packet directly
 * after a UDP header, no GUE header; the receiver tells IPv4 from IPv6 by the
 * first nibble of what follows the UDP header. The UDP source port carries
 * the flow hash, in the dynamic range 49152..65535 (as RFC 8086 asks of
 * GRE-in-UDP), so receivers that spread UDP by its ports (RSS, ECMP) keep
 * a flow together and spread the flows; the high half of the hash is folded
 * in, since the low bits already went into the outer source address. */
static __always_inline __be16 gue_sport(__u32 hash)
{
    return bpf_htons(0xc000 | ((hash ^ (hash >> 16)) & 0x3fff));
}

/* TUN: put an outer IPv4 (IPIP, or 6in4) or IPv6 (IP6IP6, or 4in6) header
 * between the L2 header and the packet, chosen by the real's family, and
 * with `gue` a UDP header after it (GUE variant 1). The L2 header is
 * rebuilt in front (the old one is partly overwritten), with the VLAN tag
 * kept and the ethertype of the outer family. */
static int tun_ptb(struct xdp_md *ctx, const struct pkt *p, const struct l4_cfg *cfg, __u32 overhead);

static __always_inline int fwd_tun(struct xdp_md *ctx, const struct pkt *p, const struct l4_real *r,
                                   __u32 hash, const struct l4_cfg *cfg, bool gue, bool icmp_err)
{
    bool outer6 = r->flags & L4_REAL_F_V6;
    int iphl = outer6 ? (int)sizeof(struct ipv6hdr) : (int)sizeof(struct iphdr);
    int hdr = iphl + (gue ? (int)sizeof(struct udphdr) : 0);
    __be16 eproto = bpf_htons(outer6 ? ETH_P_IPV6 : ETH_P_IP);
    __u8 next = gue ? PROTO_UDP : p->v6 ? PROTO_IPV6 : PROTO_IPIP;
    __u32 l3_off = p->l3_off, ip_len = p->ip_len;
    __be16 gue_port = cfg->gue_port ? cfg->gue_port : bpf_htons(L4_GUE_DEFAULT_PORT);
    void *data, *data_end;
    struct ethhdr *eth;
    struct udphdr *udp;
    __u64 sum = 0;
    int s;

    if (l3_off > L3_OFF_MAX)
        return L4_R_DROP_NO_ROOM;
    /* Too big once encapsulated (GUE: 8 more bytes): tell the client,
     * unless the packet is an ICMP error itself (never an error about an
     * error, RFC 1122 3.2.2). */
    if (cfg->tun_mtu && ip_len + hdr > cfg->tun_mtu)
        return icmp_err ? L4_R_DROP_TOO_BIG : tun_ptb(ctx, p, cfg, hdr);
    if (bpf_xdp_adjust_head(ctx, -hdr))
        return L4_R_DROP_NO_ROOM;
    data = (void *)(long)ctx->data;
    data_end = (void *)(long)ctx->data_end;

    eth = data;
    if ((void *)(eth + 1) > data_end)
        return L4_R_DROP_NO_ROOM;
    __builtin_memcpy(eth->h_dest, r->mac, 6);
    __builtin_memcpy(eth->h_source, cfg->src_mac, 6);
    if (p->vlan_tpid) {
        struct vlan_hdr *vh = (void *)(eth + 1);

        if ((void *)(vh + 1) > data_end)
            return L4_R_DROP_NO_ROOM;
        eth->h_proto = p->vlan_tpid;
        vh->h_vlan_TCI = p->vlan_tci;
        vh->h_vlan_encapsulated_proto = eproto;
    } else {
        eth->h_proto = eproto;
    }

    if (outer6) {
        struct ipv6hdr *o = data + l3_off;
        struct ipv6hdr h = {};

        if ((void *)(o + 1) > data_end)
            return L4_R_DROP_NO_ROOM;
        /* Flow label from the hash too: ECMP routers between us and the
         * real hash on it (RFC 6438). */
        *(__be32 *)&h = bpf_htonl((6u << 28) | ((__u32)p->tos << 20) | (hash & 0xfffff));
        h.payload_len = bpf_htons(ip_len + hdr - iphl);
        h.nexthdr = next;
        h.hop_limit = L4_TUN_TTL;
        tun_src6(cfg, hash, &h.saddr);
        __builtin_memcpy(&h.daddr, r->addr, 16);
        *o = h;
        if (gue) {
            /* The UDP checksum's pseudo-header (RFC 8200 8.1): both
             * addresses, the upper-layer length, the next header. */
#pragma unroll
            for (int i = 0; i < 4; i++)
                sum += (__u64)h.saddr.in6_u.u6_addr32[i] + r->addr[i];
            sum += bpf_htonl(ip_len + sizeof(*udp));
            sum += bpf_htonl(PROTO_UDP);
        }
    } else {
        struct iphdr *o = data + l3_off;
        struct iphdr h = {};

        if ((void *)(o + 1) > data_end)
            return L4_R_DROP_NO_ROOM;
        *(__u8 *)&h = 0x45;
        h.tos = p->tos;
        h.tot_len = bpf_htons(ip_len + hdr);
        /* DF: the LB never fragments; an oversized packet is a
         * configuration error that cfg.tun_mtu catches. With DF set the
         * IP ID carries no meaning (RFC 6864), so it stays 0. */
        h.frag_off = bpf_htons(IP_DF);
        h.ttl = L4_TUN_TTL;
        h.protocol = next;
        h.saddr = tun_src4(cfg, hash);
        h.daddr = r->addr[3];
        h.check = ip4_hdr_csum(&h);
        *o = h;
    }
    if (!gue)
        return L4_R_FWD_TUN;

    udp = data + l3_off + iphl;
    if ((void *)(udp + 1) > data_end)
        return L4_R_DROP_NO_ROOM;
    udp->source = gue_sport(hash);
    udp->dest = gue_port;
    udp->len = bpf_htons(ip_len + sizeof(*udp));
    udp->check = 0;
    /* Outer IPv4: no UDP checksum (0, RFC 768). The inner packet carries
     * its own checksums and the outer IPv4 header has one, so 0 loses
     * nothing, and it is what tunnels over UDP usually send (RFC 8086
     * 3.2.1). Outer IPv6: it must be computed (RFC 8200 8.1; the zero
     * checksum of RFC 6935/6936 needs the receiver's consent for the
     * port, which a plain Linux UDP socket and our decap do not give),
     * over the whole inner packet: one pass over the packet, paid only
     * by GUE over IPv6. */
    if (!outer6)
        return L4_R_FWD_TUN;
    s = l4_sum_bytes(ctx, l3_off + iphl, ip_len + sizeof(*udp));
    if (s < 0)
        return L4_R_DROP_NO_ROOM; /* (cannot happen: all of it is in the frame) */
    sum += (__u32)s;
    /* Packet pointers re-derived after the call: two loads, and no
     * reliance on the verifier keeping them across it. */
    data = (void *)(long)ctx->data;
    data_end = (void *)(long)ctx->data_end;
    udp = data + l3_off + sizeof(struct ipv6hdr);
    if ((void *)(udp + 1) > data_end)
        return L4_R_DROP_NO_ROOM;
    udp->check = csum_fold(fold64(sum));
    if (!udp->check)
        udp->check = 0xffff; /* a computed 0 is sent as 0xffff: 0 is "none" */
    return L4_R_FWD_TUN;
}

/* ---- packet too big (TUN) ---- */

/* How much of the offending packet an error quotes: IPv4, as much as keeps
 * the whole error within 576 bytes (RFC 1812 4.3.2.3; RFC 792's minimum is
 * the IP header + 8 bytes); IPv6, as much as keeps it within the minimum
 * MTU of 1280 (RFC 4443 2.4 (c)). */
#define PTB_QUOTE4 (576 - 20 - 8)
#define PTB_QUOTE6 (1280 - 40 - 8)
#define PTB_WORDS_MAX ((8 + PTB_QUOTE6) / 4)
#define IPV6_MIN_MTU 1280
#define IPV4_MIN_MTU 68

/* A TUN packet that would exceed l4_config.tun_mtu once encapsulated
 * (`overhead` bytes): answer the client so that it lowers its path MTU,
 * instead of dropping the packet in silence. The packet becomes the error
 * in place: the frame grows at the front by the new IP and ICMP headers,
 * the original IP packet stays where it is as the quote and is cut at the
 * back to the quote's length (Ethernet padding goes with it); MACs are
 * swapped and the VLAN tag kept. The error comes from the VIP. IPv4
 * without DF is still dropped: the sender allows fragmentation, which XDP
 * cannot do, and a frag-needed would be wrong. Returns L4_R_ICMP_PTB_SENT,
 * or a drop reason. A subprogram: the checksum loop stays out of the
 * forwarding path's code. */
static __noinline int tun_ptb(struct xdp_md *ctx, const struct pkt *p, const struct l4_cfg *cfg, __u32 overhead)
{
    void *data = (void *)(long)ctx->data;
    void *data_end = (void *)(long)ctx->data_end;
    __u32 l3_off = p->l3_off, iphl = p->v6 ? sizeof(struct ipv6hdr) : sizeof(struct iphdr);
    __u32 grow = iphl + 8, cap = p->v6 ? PTB_QUOTE6 : PTB_QUOTE4, quote, mtu, msg_len, icmp_off, off;
    __u32 frame_len, want, nw, i;
    __be16 eproto = bpf_htons(p->v6 ? ETH_P_IPV6 : ETH_P_IP);
    struct ethhdr *eth = data;
    __u8 smac[6], dmac[6], *ic;
    __u64 sum = 0;

    if (l3_off > L3_OFF_MAX)
        return L4_R_DROP_TRUNCATED;
    if ((void *)(eth + 1) > data_end)
        return L4_R_DROP_TRUNCATED;
    if (!p->v6) {
        struct iphdr *ip = data + l3_off;

        if ((void *)(ip + 1) > data_end)
            return L4_R_DROP_TRUNCATED;
        if (!(ip->frag_off & bpf_htons(IP_DF)))
            return L4_R_DROP_TOO_BIG;
        mtu = cfg->tun_mtu > overhead + IPV4_MIN_MTU ? cfg->tun_mtu - overhead : IPV4_MIN_MTU;
    } else {
        /* Below 1280 an IPv6 node need not go (RFC 8200 5); with a tunnel
         * MTU that small, packets of 1280 still do not fit. */
        mtu = cfg->tun_mtu > overhead + IPV6_MIN_MTU ? cfg->tun_mtu - overhead : IPV6_MIN_MTU;
    }
    __builtin_memcpy(dmac, eth->h_source, 6);
    __builtin_memcpy(smac, eth->h_dest, 6);
    quote = p->ip_len < cap ? p->ip_len : cap;
    msg_len = 8 + quote;
    /* The frame once grown, and what it must shrink to. */
    frame_len = (__u32)(data_end - data) + grow;
    want = l3_off + grow + quote;
    if (want > frame_len)
        return L4_R_DROP_TRUNCATED; /* (cannot happen: the quote is in the frame) */

    /* (One reload of data/data_end after both adjustments: reloading in
     * between lets clang merge the loads into a form the verifier
     * refuses.) */
    if (bpf_xdp_adjust_head(ctx, -(int)grow))
        return L4_R_DROP_NO_ROOM;
    if (bpf_xdp_adjust_tail(ctx, -(int)(frame_len - want)))
        return L4_R_DROP_NO_ROOM;
    data = (void *)(long)ctx->data;
    data_end = (void *)(long)ctx->data_end;

    eth = data;
    if ((void *)(eth + 1) > data_end)
        return L4_R_DROP_NO_ROOM;
    __builtin_memcpy(eth->h_dest, dmac, 6);
    __builtin_memcpy(eth->h_source, smac, 6);
    if (p->vlan_tpid) {
        struct vlan_hdr *vh = (void *)(eth + 1);

        if ((void *)(vh + 1) > data_end)
            return L4_R_DROP_NO_ROOM;
        eth->h_proto = p->vlan_tpid;
        vh->h_vlan_TCI = p->vlan_tci;
        vh->h_vlan_encapsulated_proto = eproto;
    } else {
        eth->h_proto = eproto;
    }

    icmp_off = l3_off + iphl;
    if (icmp_off > L3_OFF_MAX + 40)
        return L4_R_DROP_NO_ROOM;
    ic = data + icmp_off;
    if ((void *)(ic + 8) > data_end)
        return L4_R_DROP_NO_ROOM;
    if (!p->v6) {
        struct iphdr *ip = data + l3_off;
        struct iphdr h = {};

        if ((void *)(ip + 1) > data_end)
            return L4_R_DROP_NO_ROOM;
        *(__u8 *)&h = 0x45;
        h.tos = 0xc0; /* internetwork control, as RFC 1812 4.3.2.5 asks of errors */
        h.tot_len = bpf_htons(sizeof(h) + msg_len);
        h.frag_off = bpf_htons(IP_DF); /* ID 0: an atomic datagram (RFC 6864) */
        h.ttl = L4_ECHO_TTL;
        h.protocol = PROTO_ICMP;
        h.saddr = p->key.dst[3];
        h.daddr = p->key.src[3];
        h.check = ip4_hdr_csum(&h);
        *ip = h;
        ic[0] = ICMP_DEST_UNREACH;
        ic[1] = ICMP_FRAG_NEEDED;
        *(__u16 *)(ic + 2) = 0;
        *(__u16 *)(ic + 4) = 0;  /* unused */
        *(__be16 *)(ic + 6) = bpf_htons(mtu); /* next-hop MTU (RFC 1191) */
    } else {
        struct ipv6hdr *ip6 = data + l3_off;
        struct ipv6hdr h = {};

        if ((void *)(ip6 + 1) > data_end)
            return L4_R_DROP_NO_ROOM;
        *(__be32 *)&h = bpf_htonl(6u << 28);
        h.payload_len = bpf_htons(msg_len);
        h.nexthdr = PROTO_ICMPV6;
        h.hop_limit = L4_ECHO_TTL;
        __builtin_memcpy(&h.saddr, p->key.dst, 16);
        __builtin_memcpy(&h.daddr, p->key.src, 16);
        *ip6 = h;
        ic[0] = ICMPV6_PKT_TOOBIG;
        ic[1] = 0;
        *(__u16 *)(ic + 2) = 0;
        *(__be32 *)(ic + 4) = bpf_htonl(mtu);
        /* The pseudo-header: addresses, upper-layer length, next header. */
#pragma unroll
        for (i = 0; i < 4; i++)
            sum += (__u64)p->key.src[i] + p->key.dst[i];
        sum += bpf_htonl(msg_len);
        sum += bpf_htonl(PROTO_ICMPV6);
    }

    /* The message, from scratch: 32-bit native words summed into 64 bits
     * and folded (RFC 1071's deferred carries), then the 0..3 odd bytes. */
    nw = msg_len / 4;
    for (i = 0; i < PTB_WORDS_MAX; i++) {
        __u32 *w;

        if (i >= nw)
            break;
        w = data + icmp_off + i * 4;
        if ((void *)(w + 1) > data_end)
            return L4_R_DROP_NO_ROOM;
        sum += *w;
    }
    off = icmp_off + nw * 4;
    if (off > L3_OFF_MAX + 40 + 8 + PTB_QUOTE6)
        return L4_R_DROP_NO_ROOM;
    if (msg_len & 2) {
        __u16 *t = data + off;

        if ((void *)(t + 1) > data_end)
            return L4_R_DROP_NO_ROOM;
        sum += *t;
        off += 2;
    }
    if (msg_len & 1) {
        __u8 *t = data + off;
        __u16 last = 0;

        if ((void *)(t + 1) > data_end)
            return L4_R_DROP_NO_ROOM;
        *(__u8 *)&last = *t; /* the odd byte, padded with a zero byte */
        sum += last;
    }
    *(__u16 *)(ic + 2) = csum_fold(fold64(sum));
    return L4_R_ICMP_PTB_SENT;
}

/* Send a packet of a flow to its real in the service's mode; count it. */
static __always_inline int forward(struct xdp_md *ctx, const struct pkt *p, const struct l4_vip_meta *vip,
                                   const struct l4_real *r, __u32 real_idx, __u32 hash,
                                   const struct l4_cfg *cfg, bool icmp_err, __u64 bytes)
{
    int rc;

    if (vip->mode == L4_MODE_DR)
        rc = fwd_dr(ctx, r, cfg);
    else
        rc = fwd_tun(ctx, p, r, hash, cfg, vip->flags & L4_VIP_F_GUE, icmp_err);
    if (rc == L4_R_ICMP_PTB_SENT) {
        /* Back to the client the way it came, like an echo reply. */
        count_in(&reasons, rc, bytes);
        return XDP_TX;
    }
    if (rc != L4_R_FWD_DR && rc != L4_R_FWD_TUN)
        return finish(rc, bytes);

    count_in(&reasons, rc, bytes);
    if (icmp_err)
        count_in(&reasons, L4_R_ICMP_ERR_ROUTED, bytes);
    count_in(&vip_stats, vip->svc, bytes);
    count_in(&real_stats, real_idx, bytes);
    return tx_verdict(cfg);
}

static __always_inline bool mode_supported(__u8 mode)
{
    return mode == L4_MODE_DR || mode == L4_MODE_TUN;
}

/* ---- ICMP ---- */

static __always_inline bool is_vip_addr(const __be32 addr[4], __u8 proto)
{
    struct l4_vip_key k = {};

    __builtin_memcpy(k.addr, addr, 16);
    k.proto = proto;
    return bpf_map_lookup_elem(&vips, &k) != NULL;
}

static __always_inline void swap_macs(struct ethhdr *eth)
{
    __u8 tmp[6];

    __builtin_memcpy(tmp, eth->h_source, 6);
    __builtin_memcpy(eth->h_source, eth->h_dest, 6);
    __builtin_memcpy(eth->h_dest, tmp, 6);
}

/* Echo reply in place: swap MACs and addresses, set TTL, flip the type.
 * Swapping addresses changes neither the IPv4 header checksum nor the
 * ICMPv6 pseudo-header sum; the TTL and type changes are patched in
 * incrementally. The reply leaves by the interface it came in on. */
static __always_inline int echo_reply(void *data, void *data_end, const struct pkt *p, __u64 bytes)
{
    __u32 l3_off = p->l3_off, l4_off = p->l4_off;
    struct ethhdr *eth = data;
    __u16 old, *icmp;

    if (l3_off > L3_OFF_MAX || l4_off > L4_OFF_MAX)
        return finish(L4_R_DROP_TRUNCATED, bytes);
    icmp = data + l4_off;
    if ((void *)(eth + 1) > data_end || (void *)(icmp + 4) > data_end)
        return finish(L4_R_DROP_TRUNCATED, bytes);

    if (!p->v6) {
        struct iphdr *ip = data + l3_off;
        __be32 a;

        if ((void *)(ip + 1) > data_end)
            return finish(L4_R_DROP_TRUNCATED, bytes);
        a = ip->saddr;
        ip->saddr = ip->daddr;
        ip->daddr = a;
        old = *(__u16 *)&ip->ttl; /* TTL and protocol share a word */
        ip->ttl = L4_ECHO_TTL;
        csum_replace16(&ip->check, old, *(__u16 *)&ip->ttl);
        old = icmp[0];
        ((__u8 *)icmp)[0] = ICMP_ECHOREPLY;
    } else {
        struct ipv6hdr *ip6 = data + l3_off;
        struct in6_addr a;

        if ((void *)(ip6 + 1) > data_end)
            return finish(L4_R_DROP_TRUNCATED, bytes);
        a = ip6->saddr;
        ip6->saddr = ip6->daddr;
        ip6->daddr = a;
        ip6->hop_limit = L4_ECHO_TTL;
        old = icmp[0];
        ((__u8 *)icmp)[0] = ICMPV6_ECHO_REPLY;
    }
    csum_replace16(&icmp[1], old, icmp[0]);
    /* An ICMPv4 message has no pseudo-header, so a reply that is all zeros
     * (id 0, seq 0, no data) sums to +0, whose only valid checksum is
     * 0xffff; the incremental update yields 0x0000 there. 0xffff is valid
     * for every message whose correct checksum is 0x0000, so never emit
     * 0x0000. (ICMPv6 sums nonzero addresses: it cannot reach +0.) */
    if (!p->v6 && icmp[1] == 0)
        icmp[1] = 0xffff;
    swap_macs(eth);
    count_in(&reasons, L4_R_ICMP_ECHO_REPLY, bytes);
    return XDP_TX;
}

/* (No memcmp in BPF: clang leaves it as a call to an extern.) */
static __always_inline bool addr6_eq(const __be32 *a, const __be32 *b)
{
    return ((a[0] ^ b[0]) | (a[1] ^ b[1]) | (a[2] ^ b[2]) | (a[3] ^ b[3])) == 0;
}

/* Fill p->key with the flow an ICMP error is about. The error quotes the
 * packet the real sent to the client (src VIP:vport, dst client:cport), so
 * the flow as the client sends it is that one reversed. Returns 0, or a
 * pass reason when the quote is not something we can route by. */
static __always_inline int icmp_inner_flow(void *data, void *data_end, struct pkt *p)
{
    /* Quoted header + the first 4 bytes of its L4 (the ports), all inside
     * the outer IP length. */
    __u32 l4_off = p->l4_off, ip_end = p->l3_off + p->ip_len;
    void *inner;
    __be16 *ports;
    __u8 proto;

    if (l4_off > L4_OFF_MAX)
        return L4_R_PASS_ICMP;
    inner = data + l4_off + 8;

    if (!p->v6) {
        struct iphdr *ip = inner;

        if (l4_off + 8 + sizeof(*ip) + 4 > ip_end)
            return L4_R_PASS_ICMP;
        if ((void *)(ip + 1) + 4 > data_end)
            return L4_R_PASS_ICMP;
        if (*(__u8 *)ip != 0x45) /* IPv4, no options */
            return L4_R_PASS_ICMP;
        proto = ip->protocol;
        ports = (void *)(ip + 1);
        /* The error must be addressed to the quoted packet's source: a
         * router sends it there. Anything else is not about our flow. */
        if (ip->saddr != p->key.dst[3])
            return L4_R_PASS_ICMP;
        v4_mapped(p->key.src, ip->daddr);
        v4_mapped(p->key.dst, ip->saddr);
    } else {
        struct ipv6hdr *ip6 = inner;

        if (l4_off + 8 + sizeof(*ip6) + 4 > ip_end)
            return L4_R_PASS_ICMP;
        if ((void *)(ip6 + 1) + 4 > data_end)
            return L4_R_PASS_ICMP;
        if ((*(__u8 *)ip6 >> 4) != 6)
            return L4_R_PASS_ICMP;
        proto = ip6->nexthdr;
        ports = (void *)(ip6 + 1);
        if (!addr6_eq(ip6->saddr.in6_u.u6_addr32, p->key.dst))
            return L4_R_PASS_ICMP;
        __builtin_memcpy(p->key.src, &ip6->daddr, 16);
        __builtin_memcpy(p->key.dst, &ip6->saddr, 16);
    }
    if (proto != PROTO_TCP && proto != PROTO_UDP)
        return L4_R_PASS_ICMP;
    p->key.proto = proto;
    p->key.sport = ports[1];
    p->key.dport = ports[0];
    return 0;
}

static int nat_icmp_err(struct xdp_md *ctx, struct pkt *p, const struct l4_vip_meta *vip, const struct l4_cfg *cfg,
                        __u64 bytes);

static __always_inline int handle_icmp(struct xdp_md *ctx, struct pkt *p, const struct l4_cfg *cfg,
                                       __u64 bytes)
{
    void *data = (void *)(long)ctx->data;
    void *data_end = (void *)(long)ctx->data_end;
    __u32 l4_off = p->l4_off;
    struct l4_vip_key vk = {};
    struct l4_vip_meta *vip;
    struct l4_real *r;
    __u32 real_idx, hash;
    __u8 type, code, *icmp;
    int rc;

    if (l4_off > L4_OFF_MAX)
        return finish(L4_R_DROP_TRUNCATED, bytes);
    icmp = data + l4_off;
    if ((void *)(icmp + 8) > data_end)
        return finish(L4_R_DROP_TRUNCATED, bytes);
    type = icmp[0];
    code = icmp[1];

    if ((!p->v6 && type == ICMP_ECHO) || (p->v6 && type == ICMPV6_ECHO_REQUEST)) {
        if (code != 0)
            return finish(L4_R_PASS_ICMP, bytes);
        if (!is_vip_addr(p->key.dst, p->key.proto))
            return finish(L4_R_PASS_NOT_VIP, bytes);
        return echo_reply(data, data_end, p, bytes);
    }

    if (!((!p->v6 && type == ICMP_DEST_UNREACH && code == ICMP_FRAG_NEEDED) ||
          (p->v6 && type == ICMPV6_PKT_TOOBIG && code == 0)))
        return finish(L4_R_PASS_ICMP, bytes);

    rc = icmp_inner_flow(data, data_end, p);
    if (rc)
        return finish(rc, bytes);
    __builtin_memcpy(vk.addr, p->key.dst, 16);
    vk.port = p->key.dport;
    vk.proto = p->key.proto;
    vip = bpf_map_lookup_elem(&vips, &vk);
    if (!vip)
        return finish(L4_R_PASS_NOT_VIP, bytes);
    if (vip->mode == L4_MODE_NAT || vip->mode == L4_MODE_FULLNAT)
        return nat_icmp_err(ctx, p, vip, cfg, bytes);
    if (!mode_supported(vip->mode))
        return finish(L4_R_PASS_MODE, bytes);
    r = pick_real(p, vip, cfg, false, &real_idx, &hash);
    if (!r)
        return finish(L4_R_DROP_NO_REAL, bytes);
    return forward(ctx, p, vip, r, real_idx, hash, cfg, true, bytes);
}

/* ---- NAT and FullNAT ---- */

/* One's complement arithmetic for incremental updates: `acc` collects
 * ~old + new for every 16-bit word that changes (RFC 1624 eqn. 3), and
 * csum_apply() folds it into a checksum field. A u32 holds the sum of the
 * at most 22 words a translation touches without overflow. */
static __always_inline __u32 csum_acc16(__u32 acc, __u16 old, __u16 new)
{
    return acc + (__u16)~old + new;
}

static __always_inline __u32 csum_acc32(__u32 acc, __u32 old, __u32 new)
{
    acc = csum_acc16(acc, (__u16)old, (__u16)new);
    return csum_acc16(acc, (__u16)(old >> 16), (__u16)(new >> 16));
}

static __always_inline void csum_apply(__u16 *sum, __u32 acc)
{
    *sum = csum_fold((__u16)~*sum + acc);
}

static __always_inline __u32 nat_timeout(const struct l4_cfg *cfg, __u8 proto, __u8 state)
{
    __u32 t;

    if (proto == PROTO_TCP && (state & L4_NAT_S_CLOSING))
        t = cfg->nat_fin_timeout ? cfg->nat_fin_timeout : L4_NAT_FIN_TIMEOUT;
    else if (proto == PROTO_TCP)
        t = cfg->nat_tcp_timeout ? cfg->nat_tcp_timeout : L4_NAT_TCP_TIMEOUT;
    else
        t = cfg->nat_udp_timeout ? cfg->nat_udp_timeout : L4_NAT_UDP_TIMEOUT;
    return t;
}

/* Idle past its timeout. Another CPU may have stored a later time than our
 * `now`: that is fresh, not a wrap-around. */
static __always_inline bool nat_expired(const struct l4_nat *e, const struct l4_cfg *cfg, __u8 proto, __u64 now)
{
    return now > e->last_seen &&
           now - e->last_seen > (__u64)nat_timeout(cfg, proto, e->state) * NSEC_PER_SEC;
}

/* Note activity on an OUT entry: the flow's clock and its TCP state live
 * there (it is the entry that holds a FullNAT port). Writes are skipped
 * unless something changes or a second has passed, because the entry's
 * cache line is shared by the CPUs of both directions. */
static __always_inline void nat_touch(struct l4_nat *e, const struct pkt *p, __u64 now)
{
    __u8 st = e->state;

    if (p->key.proto == PROTO_TCP) {
        if (p->tcp_flags & (TCP_FIN | TCP_RST))
            st |= L4_NAT_S_CLOSING;
        else if ((p->tcp_flags & (TCP_SYN | TCP_ACK)) == TCP_SYN)
            st &= ~L4_NAT_S_CLOSING; /* the client reuses its tuple */
    }
    if (st != e->state)
        e->state = st;
    if (now > e->last_seen && now - e->last_seen >= NSEC_PER_SEC)
        e->last_seen = now;
}

/* The reply-side key of a flow from its IN value: NAT, the real's packet
 * as it comes back (the translated packet reversed); FullNAT, only its
 * destination, the local address and port, which that key claims. */
static __always_inline void nat_out_key(const struct l4_nat *in, __u8 proto, struct l4_nat_key *ok)
{
    if (in->mode == L4_MODE_FULLNAT) {
        __builtin_memset(ok->src, 0, 16);
        ok->sport = 0;
        ok->dir = L4_NAT_LOCAL;
    } else {
        __builtin_memcpy(ok->src, in->daddr, 16);
        ok->sport = in->dport;
        ok->dir = L4_NAT_OUT;
    }
    __builtin_memcpy(ok->dst, in->saddr, 16);
    ok->dport = in->sport;
    ok->proto = proto;
}

/* Does an OUT entry translate back to this client flow? */
static __always_inline bool nat_out_is(const struct l4_nat *o, const struct l4_flow_key *k)
{
    return addr6_eq(o->daddr, k->src) && addr6_eq(o->saddr, k->dst) && o->dport == k->sport &&
           o->sport == k->dport;
}

/* Rewrite the packet's addresses and ports to v's, with the IPv4 header
 * and TCP/UDP checksums patched incrementally (the L4 checksum covers the
 * addresses through the pseudo-header). An IPv4 UDP checksum of 0 means
 * "none" and stays 0; a computed 0 is sent as 0xffff, its equal. */
static __always_inline int nat_rewrite(void *data, void *data_end, const struct pkt *p, const struct l4_nat *v)
{
    __u32 l3_off = p->l3_off, l4_off = p->l4_off, acc = 0, i;
    bool tcp = p->key.proto == PROTO_TCP;
    struct tcphdr *th;
    struct udphdr *uh;
    __u16 *ports;

    /* Bounds first, so that nothing is written unless all of it can be:
     * the IP header lies before the L4 header, so once the L4 header is
     * inside the frame the checks further down cannot fail (parse() has
     * checked all of this; the verifier needs to see it here). */
    if (l3_off > L3_OFF_MAX || l4_off > L4_OFF_MAX)
        return L4_R_DROP_TRUNCATED;
    th = data + l4_off;
    uh = data + l4_off;
    if ((void *)(uh + 1) > data_end || (tcp && (void *)(th + 1) > data_end))
        return L4_R_DROP_TRUNCATED;
    ports = (__u16 *)uh;

    if (!p->v6) {
        struct iphdr *ip = data + l3_off;

        if ((void *)(ip + 1) > data_end)
            return L4_R_DROP_TRUNCATED;
        acc = csum_acc32(acc, ip->saddr, v->saddr[3]);
        acc = csum_acc32(acc, ip->daddr, v->daddr[3]);
        /* The IPv4 header sums the same two addresses. */
        csum_apply(&ip->check, acc);
        ip->saddr = v->saddr[3];
        ip->daddr = v->daddr[3];
    } else {
        struct ipv6hdr *ip6 = data + l3_off;

        if ((void *)(ip6 + 1) > data_end)
            return L4_R_DROP_TRUNCATED;
#pragma unroll
        for (i = 0; i < 4; i++) {
            acc = csum_acc32(acc, ip6->saddr.in6_u.u6_addr32[i], v->saddr[i]);
            acc = csum_acc32(acc, ip6->daddr.in6_u.u6_addr32[i], v->daddr[i]);
        }
        __builtin_memcpy(&ip6->saddr, v->saddr, 16);
        __builtin_memcpy(&ip6->daddr, v->daddr, 16);
    }
    acc = csum_acc16(acc, ports[0], v->sport);
    acc = csum_acc16(acc, ports[1], v->dport);
    ports[0] = v->sport;
    ports[1] = v->dport;

    if (tcp) {
        if ((void *)(th + 1) > data_end) /* (checked above; for the verifier) */
            return L4_R_DROP_TRUNCATED;
        csum_apply(&th->check, acc);
    } else if (uh->check) { /* IPv4 UDP without a checksum stays without */
        csum_apply(&uh->check, acc);
        if (!uh->check)
            uh->check = 0xffff;
    }
    return 0;
}

/* TOA: insert the client's address and port as a TCP option at the end of
 * the SYN's TCP header. The headers (L2 up to the end of the TCP options,
 * at most 18 + 40 + 60 bytes) are copied out, the frame grows at the front
 * by the option's length, the headers go back in at the new start and the
 * option fills the gap between them and the payload. Only header bytes
 * move, never the payload. Returns 0 (added or skipped: the event says
 * which) or a drop reason if the frame broke half-way (cannot happen with
 * the lengths checked here, but the verifier does not know). */
struct toa_opt {
    __u8 kind;
    __u8 len;
    __be16 port;
    __be32 addr[4];
};

static __always_inline int toa_insert(struct xdp_md *ctx, const struct pkt *p, struct nat_scratch *sc)
{
    __u32 l3_off = p->l3_off, l4_off = p->l4_off, doff = p->tcp_doff;
    __u32 olen = p->v6 ? L4_TOA_LEN_V6 : L4_TOA_LEN_V4, hdr, acc = 0, i;
    struct toa_opt opt = {};
    void *data, *data_end;
    __u16 *ow, *th, old;

    if (l3_off > L3_OFF_MAX || l4_off > L4_OFF_MAX || doff < 20 || doff > 60)
        return L4_R_DROP_TRUNCATED;
    /* TCP options are limited to 40 bytes (data offset 15). */
    if (doff + olen > 60) {
        count_in(&reasons, L4_R_TOA_NO_ROOM, 0);
        return 0;
    }
    hdr = l4_off + doff;
    if (hdr > TOA_HDR_MAX || hdr < 54)
        return L4_R_DROP_TRUNCATED;
    if (bpf_xdp_load_bytes(ctx, 0, sc->buf, hdr))
        return L4_R_DROP_TRUNCATED;
    if (bpf_xdp_adjust_head(ctx, -(int)olen)) {
        count_in(&reasons, L4_R_TOA_NO_ROOM, 0); /* no headroom: unchanged */
        return 0;
    }
    if (bpf_xdp_store_bytes(ctx, 0, sc->buf, hdr))
        return L4_R_DROP_NO_ROOM;

    opt.kind = L4_TOA_KIND;
    opt.len = olen;
    opt.port = p->key.sport;
    if (p->v6)
        __builtin_memcpy(opt.addr, p->key.src, 16);
    else
        opt.addr[0] = p->key.src[3];
    if (bpf_xdp_store_bytes(ctx, hdr, &opt, olen))
        return L4_R_DROP_NO_ROOM;

    /* The option's words enter the TCP checksum as new data. */
    ow = (__u16 *)&opt;
#pragma unroll
    for (i = 0; i < L4_TOA_LEN_V6 / 2; i++)
        if (i < olen / 2)
            acc += ow[i];

    data = (void *)(long)ctx->data;
    data_end = (void *)(long)ctx->data_end;
    th = data + l4_off;
    if ((void *)(th + 10) > data_end)
        return L4_R_DROP_NO_ROOM;
    /* Data offset shares a word with the flags. */
    old = th[6];
    ((__u8 *)th)[12] = (__u8)(((doff + olen) / 4) << 4) | (((__u8 *)th)[12] & 0x0f);
    acc = csum_acc16(acc, old, th[6]);
    /* The pseudo-header's TCP length grows by olen. */
    acc = csum_acc16(acc, bpf_htons(p->ip_len - (l4_off - l3_off)),
                     bpf_htons(p->ip_len - (l4_off - l3_off) + olen));
    if (!p->v6) {
        struct iphdr *ip = data + l3_off;

        if ((void *)(ip + 1) > data_end)
            return L4_R_DROP_NO_ROOM;
        old = ip->tot_len;
        ip->tot_len = bpf_htons(p->ip_len + olen);
        csum_replace16(&ip->check, old, ip->tot_len);
    } else {
        struct ipv6hdr *ip6 = data + l3_off;

        if ((void *)(ip6 + 1) > data_end)
            return L4_R_DROP_NO_ROOM;
        ip6->payload_len = bpf_htons(p->ip_len - sizeof(*ip6) + olen);
    }
    csum_apply(&th[8], acc);
    count_in(&reasons, L4_R_TOA_ADDED, 0);
    return 0;
}

static __always_inline int nat_tx(struct xdp_md *ctx, const __u8 *dmac, const struct l4_cfg *cfg)
{
    void *data = (void *)(long)ctx->data;
    void *data_end = (void *)(long)ctx->data_end;
    struct ethhdr *eth = data;

    if ((void *)(eth + 1) > data_end)
        return -1;
    __builtin_memcpy(eth->h_dest, dmac, 6);
    __builtin_memcpy(eth->h_source, cfg->src_mac, 6);
    return 0;
}

/* FullNAT: pick a free local address and port and claim it by inserting
 * the flow's OUT entry with BPF_NOEXIST, which is atomic against another
 * CPU claiming the same one. Candidates come from the flow hash (the same
 * flow asks for the same port first, so a retransmitted SYN whose entries
 * were lost asks again for the same one) and a hash-derived odd stride; an
 * OUT entry found idle past its timeout is deleted and its port taken.
 * Fills in->saddr/sport. Returns 0 or a drop reason. */
static __always_inline int nat_alloc(const struct pkt *p, const struct l4_vip_meta *vip, const struct l4_cfg *cfg,
                                     __u32 h, __u64 now, struct nat_scratch *sc)
{
    struct l4_nat *in = &sc->in, *out = &sc->out;
    struct l4_nat_key *ok = &sc->ok;
    __u32 svc = vip->svc, pmin, pmax, range, naddrs, n, stride, c, i;
    struct l4_nat_pool *pool = bpf_map_lookup_elem(&nat_pools, &svc);

    if (!pool || !pool->naddrs)
        return L4_R_DROP_NAT_NO_PORT;
    naddrs = pool->naddrs > L4_POOL_ADDRS ? L4_POOL_ADDRS : pool->naddrs;
    pmin = pool->port_min ? pool->port_min : 1024;
    pmax = pool->port_max ? pool->port_max : 65535;
    if (pmax < pmin)
        return L4_R_DROP_NAT_NO_PORT;
    range = pmax - pmin + 1;
    n = range * naddrs; /* <= 65536 * 8: no overflow */
    stride = (l4_hash_final(h) % n) | 1;

    for (i = 0; i < L4_NAT_PORT_TRIES; i++) {
        struct l4_nat *old;
        __u32 a;

        c = (h + i * stride) % n;
        a = c / range;
        if (a >= L4_POOL_ADDRS)
            break;
        /* The pool must be of the flow's family. */
        if (is_v4_mapped(pool->addr[a]) == (bool)p->v6)
            return L4_R_DROP_NAT_NO_PORT;
        __builtin_memcpy(in->saddr, pool->addr[a], 16);
        in->sport = bpf_htons(pmin + c % range);
        nat_out_key(in, p->key.proto, ok);
        if (!bpf_map_update_elem(&nat, ok, out, BPF_NOEXIST))
            return 0;
        old = bpf_map_lookup_elem(&nat, ok);
        if (old && nat_expired(old, cfg, p->key.proto, now)) {
            bpf_map_delete_elem(&nat, ok);
            if (!bpf_map_update_elem(&nat, ok, out, BPF_NOEXIST))
                return 0;
        }
    }
    return L4_R_DROP_NAT_NO_PORT;
}

/* Client -> VIP of a NAT or FullNAT service. A subprogram (not inlined):
 * its stack frame is separate from the DR/TUN path's. */
static __noinline int nat_in(struct xdp_md *ctx, struct pkt *p, const struct l4_vip_meta *vip,
                             const struct l4_cfg *cfg, __u64 bytes)
{
    void *data = (void *)(long)ctx->data;
    void *data_end = (void *)(long)ctx->data_end;
    struct l4_nat *e, *o, *in, *out;
    struct l4_nat_key *ik, *ok;
    struct nat_scratch *sc;
    struct l4_real *r = NULL;
    struct ethhdr *eth = data;
    __u64 now = bpf_ktime_get_coarse_ns();
    __u32 idx = 0, h, zero = 0;
    bool full = vip->mode == L4_MODE_FULLNAT;
    int rc;

    if ((void *)(eth + 1) > data_end)
        return finish(L4_R_DROP_TRUNCATED, bytes);
    if (p->v6 && p->key.proto == PROTO_UDP) {
        struct udphdr *uh;
        __u32 l4_off = p->l4_off;

        if (l4_off > L4_OFF_MAX)
            return finish(L4_R_DROP_TRUNCATED, bytes);
        uh = data + l4_off;
        if ((void *)(uh + 1) > data_end)
            return finish(L4_R_DROP_TRUNCATED, bytes);
        /* Invalid in IPv6 (RFC 8200 8.1), and there is nothing to
         * update incrementally. */
        if (!uh->check)
            return finish(L4_R_DROP_BAD_CSUM, bytes);
    }
    sc = bpf_map_lookup_elem(&scratch, &zero);
    if (!sc)
        return finish(L4_R_DROP_NO_ROOM, bytes);
    in = &sc->in;
    out = &sc->out;
    ik = &sc->ik;
    ok = &sc->ok;
    __builtin_memset(ik, 0, sizeof(*ik));
    __builtin_memset(ok, 0, sizeof(*ok));

    __builtin_memcpy(ik->src, p->key.src, 16);
    __builtin_memcpy(ik->dst, p->key.dst, 16);
    ik->sport = p->key.sport;
    ik->dport = p->key.dport;
    ik->proto = p->key.proto;
    ik->dir = L4_NAT_IN;

    e = bpf_map_lookup_elem(&nat, ik);
    if (e) {
        /* A hit is only good while its OUT entry still translates back to
         * this flow and is not idle past its timeout: the OUT entry may
         * have been evicted (its port handed to another flow since), and
         * it is the one that carries the flow's clock. */
        *in = *e;
        nat_out_key(in, p->key.proto, ok);
        o = bpf_map_lookup_elem(&nat, ok);
        r = active_real(in->real);
        if (o && nat_out_is(o, &p->key)) {
            if (r && !nat_expired(o, cfg, p->key.proto, now)) {
                nat_touch(o, p, now);
                count_in(&reasons, L4_R_CT_HIT, 0);
                idx = in->real;
                goto xlate;
            }
            /* Ours but dead: free its port now rather than at expiry. */
            bpf_map_delete_elem(&nat, ok);
        }
        count_in(&reasons, L4_R_NAT_STALE, 0);
    }
    count_in(&reasons, L4_R_CT_MISS, 0);

    h = l4_flow_hash(&p->key, flow_seed);
    if (vip->table >= maglev_tables)
        return finish(L4_R_DROP_NO_REAL, bytes);
    /* Without state no reply can be translated: over the cap, drop. (The
     * guard is asked before the scheduler, so a dropped flow does not move
     * an rr cursor.) */
    if (!flood_allow(cfg)) {
        count_in(&reasons, L4_R_CT_GUARD_SKIP, 0);
        return finish(L4_R_DROP_NAT_GUARD, bytes);
    }
    idx = sched_pick(p, vip, h, true);
    r = active_real(idx);
    /* No family translation: the real must be of the client's family. */
    if (!r || (bool)(r->flags & L4_REAL_F_V6) != (bool)p->v6)
        return finish(L4_R_DROP_NO_REAL, bytes);

    /* The IN value: what the client's packets become. */
    __builtin_memset(in, 0, sizeof(*in));
    __builtin_memset(out, 0, sizeof(*out));
    __builtin_memcpy(in->saddr, p->key.src, 16);
    in->sport = p->key.sport;
    __builtin_memcpy(in->daddr, r->addr, 16);
    in->dport = r->port ? r->port : p->key.dport;
    in->mode = vip->mode; /* before nat_out_key() */
    in->real = idx;
    in->svc = vip->svc;
    in->last_seen = now;
    /* The OUT value: what the real's replies become, and where they go:
     * back to the router the client's packet came from. */
    __builtin_memcpy(out->saddr, p->key.dst, 16);
    out->sport = p->key.dport;
    __builtin_memcpy(out->daddr, p->key.src, 16);
    out->dport = p->key.sport;
    __builtin_memcpy(out->mac, eth->h_source, 6);
    out->mode = vip->mode;
    out->real = idx;
    out->svc = vip->svc;
    out->ifindex = ctx->ingress_ifindex;
    out->last_seen = now;
    __builtin_memcpy(out->peer, in->daddr, 16);
    out->peer_port = in->dport;
    nat_touch(out, p, now);

    if (full) {
        rc = nat_alloc(p, vip, cfg, h, now, sc);
        if (rc)
            return finish(rc, bytes);
    } else {
        /* NAT: the OUT key is {real, client}; a second flow with the same
         * client tuple to the same real:port (only possible through two
         * VIPs) takes the key over, and the first one's next packet then
         * finds its entry stale. */
        nat_out_key(in, p->key.proto, ok);
        if (bpf_map_update_elem(&nat, ok, out, BPF_ANY))
            return finish(L4_R_DROP_NAT_NO_PORT, bytes);
    }
    bpf_map_update_elem(&nat, ik, in, BPF_ANY);

xlate:
    if (!r)
        return finish(L4_R_DROP_NO_REAL, bytes);
    rc = nat_rewrite(data, data_end, p, in);
    if (rc)
        return finish(rc, bytes);
    if (full && p->key.proto == PROTO_TCP && (p->tcp_flags & (TCP_SYN | TCP_ACK)) == TCP_SYN) {
        rc = toa_insert(ctx, p, sc);
        if (rc)
            return finish(rc, bytes);
    }
    if (nat_tx(ctx, r->mac, cfg))
        return finish(L4_R_DROP_NO_ROOM, bytes);
    count_in(&reasons, full ? L4_R_FWD_FULLNAT : L4_R_FWD_NAT, bytes);
    count_in(&vip_stats, vip->svc, bytes);
    count_in(&real_stats, idx, bytes);
    return tx_verdict(cfg);
}

/* Real -> client (NAT) or real -> local address (FullNAT): a packet that is
 * not to a VIP, looked up as a reply. Returns -1 when it is not one. */
static __noinline int nat_out(struct xdp_md *ctx, struct pkt *p, const struct l4_cfg *cfg, __u64 bytes)
{
    void *data = (void *)(long)ctx->data;
    void *data_end = (void *)(long)ctx->data_end;
    struct l4_nat_key ok = {};
    struct nat_scratch *sc;
    struct l4_nat *o, *v;
    __u32 zero = 0;
    __u64 now;
    int rc;

    __builtin_memcpy(ok.src, p->key.src, 16);
    __builtin_memcpy(ok.dst, p->key.dst, 16);
    ok.sport = p->key.sport;
    ok.dport = p->key.dport;
    ok.proto = p->key.proto;
    ok.dir = L4_NAT_OUT;
    o = bpf_map_lookup_elem(&nat, &ok);
    if (!o) {
        /* FullNAT: by the local address and port, from the right real. */
        __builtin_memset(ok.src, 0, 16);
        ok.sport = 0;
        ok.dir = L4_NAT_LOCAL;
        o = bpf_map_lookup_elem(&nat, &ok);
        if (!o || !addr6_eq(o->peer, p->key.src) || o->peer_port != p->key.sport)
            return -1;
    }
    if (p->v6 && p->key.proto == PROTO_UDP) {
        __u32 l4_off = p->l4_off;
        struct udphdr *uh;

        if (l4_off > L4_OFF_MAX)
            return finish(L4_R_DROP_TRUNCATED, bytes);
        uh = data + l4_off;
        if ((void *)(uh + 1) > data_end)
            return finish(L4_R_DROP_TRUNCATED, bytes);
        if (!uh->check)
            return finish(L4_R_DROP_BAD_CSUM, bytes);
    }
    /* An idle entry still translates correctly (nobody has taken its
     * key, or it would not be here); the reply revives it. */
    now = bpf_ktime_get_coarse_ns();
    nat_touch(o, p, now);
    /* A private copy: another CPU may rewrite the entry meanwhile. */
    sc = bpf_map_lookup_elem(&scratch, &zero);
    if (!sc)
        return finish(L4_R_DROP_NO_ROOM, bytes);
    v = &sc->out;
    *v = *o;
    rc = nat_rewrite(data, data_end, p, v);
    if (rc)
        return finish(rc, bytes);
    if (nat_tx(ctx, v->mac, cfg))
        return finish(L4_R_DROP_NO_ROOM, bytes);
    count_in(&reasons, L4_R_FWD_NAT_REPLY, bytes);
    count_in(&vip_stats, v->svc, bytes);
    count_in(&real_stats, v->real, bytes);
    /* Back out of the interface the client's packets came in on. */
    if (v->ifindex && v->ifindex != ctx->ingress_ifindex)
        return bpf_redirect(v->ifindex, 0);
    return XDP_TX;
}

/* ICMP frag-needed / packet-too-big from the client side about a NAT or
 * FullNAT flow: a router between us and the client could not take a reply
 * we sent (VIP:vport -> client:cport). It belongs to the real, which must
 * lower its PMTU, so it goes there looking as if it were about the packet
 * the real sent:
 *   inner  src VIP:vport     -> real:rport
 *          dst client:cport  -> NAT: unchanged; FullNAT: local:lport
 *   outer  dst VIP           -> the real
 *          src               -> NAT: unchanged (the router; the real routes
 *                               client-side addresses through us anyway);
 *                               FullNAT: the local address, since a FullNAT
 *                               real needs no route to client-side networks
 *                               and reverse-path filtering would drop it.
 * p->key holds the flow as the client sends it (icmp_inner_flow). The flow
 * is found as the client's packets find it (its IN entry) and must be
 * confirmed by its reply-side entry, as on the forward path; nothing is
 * created or refreshed. Checksums are patched incrementally: the quoted
 * IPv4 header's, the quoted TCP/UDP checksum when the quote holds it, the
 * ICMP checksum over every word changed in the message (and, for ICMPv6,
 * the pseudo-header's addresses), and the outer IPv4 header's. A subprogram
 * (own stack frame), like nat_in(). */
static __noinline int nat_icmp_err(struct xdp_md *ctx, struct pkt *p, const struct l4_vip_meta *vip,
                                   const struct l4_cfg *cfg, __u64 bytes)
{
    void *data = (void *)(long)ctx->data;
    void *data_end = (void *)(long)ctx->data_end;
    __u32 l3_off = p->l3_off, l4_off = p->l4_off, ip_end = p->l3_off + p->ip_len;
    __u32 il3_off, il4_off, sum_off, zero = 0, acc_l4 = 0, acc_icmp = 0, i;
    bool full = vip->mode == L4_MODE_FULLNAT, tcp = p->key.proto == PROTO_TCP, has_sum;
    struct nat_scratch *sc;
    struct l4_nat *e, *o, *in;
    struct l4_nat_key *ik, *ok;
    struct l4_real *r;
    __u16 *icmp, *ports, *l4sum, old;

    sc = bpf_map_lookup_elem(&scratch, &zero);
    if (!sc)
        return finish(L4_R_DROP_NO_ROOM, bytes);
    in = &sc->in;
    ik = &sc->ik;
    ok = &sc->ok;
    __builtin_memset(ik, 0, sizeof(*ik));
    __builtin_memset(ok, 0, sizeof(*ok));
    __builtin_memcpy(ik->src, p->key.src, 16);
    __builtin_memcpy(ik->dst, p->key.dst, 16);
    ik->sport = p->key.sport;
    ik->dport = p->key.dport;
    ik->proto = p->key.proto;
    ik->dir = L4_NAT_IN;
    e = bpf_map_lookup_elem(&nat, ik);
    if (!e)
        return finish(L4_R_PASS_ICMP, bytes); /* no state: cannot route it */
    *in = *e;
    nat_out_key(in, p->key.proto, ok);
    o = bpf_map_lookup_elem(&nat, ok);
    if (!o || !nat_out_is(o, &p->key))
        return finish(L4_R_PASS_ICMP, bytes); /* stale: not this flow's */
    r = active_real(in->real);
    if (!r)
        return finish(L4_R_DROP_NO_REAL, bytes);

    /* Bounds first: nothing is written unless all of it can be. */
    if (l3_off > L3_OFF_MAX || l4_off > L4_OFF_MAX)
        return finish(L4_R_DROP_TRUNCATED, bytes);
    il3_off = l4_off + 8;
    il4_off = il3_off + (p->v6 ? sizeof(struct ipv6hdr) : sizeof(struct iphdr));
    icmp = data + l4_off;
    ports = data + il4_off;
    if ((void *)(icmp + 4) > data_end || (void *)(ports + 2) > data_end)
        return finish(L4_R_DROP_TRUNCATED, bytes);
    /* The quoted L4 checksum only if the quote (inside the outer IP
     * length) reaches it: an IPv4 error may quote only 8 bytes of L4. */
    sum_off = il4_off + (tcp ? 16 : 6);
    has_sum = sum_off + 2 <= ip_end;

    if (!p->v6) {
        struct iphdr *oip = data + l3_off, *iip = data + il3_off;
        __u32 acc_ip = 0;

        if ((void *)(oip + 1) > data_end || (void *)(iip + 1) > data_end)
            return finish(L4_R_DROP_TRUNCATED, bytes);
        acc_ip = csum_acc32(acc_ip, iip->saddr, in->daddr[3]);
        acc_ip = csum_acc32(acc_ip, iip->daddr, in->saddr[3]);
        acc_l4 = acc_ip; /* the quoted L4 checksum's pseudo-header */
        acc_icmp = acc_ip;
        old = iip->check;
        csum_apply(&iip->check, acc_ip);
        acc_icmp = csum_acc16(acc_icmp, old, iip->check);
        iip->saddr = in->daddr[3];
        iip->daddr = in->saddr[3];

        acc_ip = csum_acc32(0, oip->daddr, in->daddr[3]);
        oip->daddr = in->daddr[3];
        if (full) {
            acc_ip = csum_acc32(acc_ip, oip->saddr, in->saddr[3]);
            oip->saddr = in->saddr[3];
        }
        csum_apply(&oip->check, acc_ip);
    } else {
        struct ipv6hdr *oip = data + l3_off, *iip = data + il3_off;

        if ((void *)(oip + 1) > data_end || (void *)(iip + 1) > data_end)
            return finish(L4_R_DROP_TRUNCATED, bytes);
#pragma unroll
        for (i = 0; i < 4; i++) {
            acc_l4 = csum_acc32(acc_l4, iip->saddr.in6_u.u6_addr32[i], in->daddr[i]);
            acc_l4 = csum_acc32(acc_l4, iip->daddr.in6_u.u6_addr32[i], in->saddr[i]);
            /* ICMPv6 sums the outer addresses in its pseudo-header. */
            acc_icmp = csum_acc32(acc_icmp, oip->daddr.in6_u.u6_addr32[i], in->daddr[i]);
            if (full)
                acc_icmp = csum_acc32(acc_icmp, oip->saddr.in6_u.u6_addr32[i], in->saddr[i]);
        }
        acc_icmp += acc_l4; /* the quoted addresses are ICMPv6 data too */
        __builtin_memcpy(&iip->saddr, in->daddr, 16);
        __builtin_memcpy(&iip->daddr, in->saddr, 16);
        __builtin_memcpy(&oip->daddr, in->daddr, 16);
        if (full)
            __builtin_memcpy(&oip->saddr, in->saddr, 16);
    }

    /* Quoted ports: the source was vport, the destination cport. */
    old = ports[0];
    ports[0] = in->dport;
    acc_l4 = csum_acc16(acc_l4, old, ports[0]);
    acc_icmp = csum_acc16(acc_icmp, old, ports[0]);
    old = ports[1];
    ports[1] = in->sport;
    acc_l4 = csum_acc16(acc_l4, old, ports[1]);
    acc_icmp = csum_acc16(acc_icmp, old, ports[1]);

    /* (The second test always holds; it bounds sum_off for the verifier:
     * ICMP header, quoted IPv6 header, TCP checksum offset.) */
    if (has_sum && sum_off <= L4_OFF_MAX + 8 + 40 + 16) {
        l4sum = data + sum_off;
        if ((void *)(l4sum + 1) > data_end)
            return finish(L4_R_DROP_TRUNCATED, bytes);
        old = *l4sum;
        /* IPv4 UDP without a checksum stays without; a computed 0 is sent
         * as 0xffff, as nat_rewrite() does. */
        if (tcp || old) {
            csum_apply(l4sum, acc_l4);
            if (!tcp && !*l4sum)
                *l4sum = 0xffff;
        }
        acc_icmp = csum_acc16(acc_icmp, old, *l4sum);
    }
    csum_apply(&icmp[1], acc_icmp);

    if (nat_tx(ctx, r->mac, cfg))
        return finish(L4_R_DROP_NO_ROOM, bytes);
    count_in(&reasons, full ? L4_R_FWD_FULLNAT : L4_R_FWD_NAT, bytes);
    count_in(&reasons, L4_R_ICMP_ERR_ROUTED, bytes);
    count_in(&vip_stats, vip->svc, bytes);
    count_in(&real_stats, in->real, bytes);
    return tx_verdict(cfg);
}

/* ---- entry point ---- */

SEC("xdp")
int sluice_l4_fwd(struct xdp_md *ctx)
{
    void *data = (void *)(long)ctx->data;
    void *data_end = (void *)(long)ctx->data_end;
    __u64 bytes = data_end - data;
    struct pkt p = {};
    struct l4_vip_key vk = {};
    struct l4_vip_meta *vip;
    struct l4_cfg *cfg;
    struct l4_real *r;
    __u32 zero = 0, real_idx, hash;
    int rc;

    cfg = bpf_map_lookup_elem(&l4_config, &zero);
    if (!cfg) /* cannot happen for an array; keeps the verifier content */
        return XDP_PASS;

    rc = parse(data, data_end, &p);
    if (rc == PARSE_ICMP)
        return handle_icmp(ctx, &p, cfg, bytes);
    if (rc != PARSE_L4)
        return finish(rc, bytes);

    __builtin_memcpy(vk.addr, p.key.dst, 16);
    vk.port = p.key.dport;
    vk.proto = p.key.proto;
    vip = bpf_map_lookup_elem(&vips, &vk);
    if (!vip) {
        /* Not to a VIP: a NAT reply, or not ours. */
        if (cfg->flags & L4_CFG_F_NAT_REPLIES) {
            rc = nat_out(ctx, &p, cfg, bytes);
            if (rc >= 0)
                return rc;
        }
        return finish(L4_R_PASS_NOT_VIP, bytes);
    }
    if (vip->mode == L4_MODE_NAT || vip->mode == L4_MODE_FULLNAT)
        return nat_in(ctx, &p, vip, cfg, bytes);
    if (!mode_supported(vip->mode))
        return finish(L4_R_PASS_MODE, bytes);

    r = pick_real(&p, vip, cfg, true, &real_idx, &hash);
    if (!r)
        return finish(L4_R_DROP_NO_REAL, bytes);
    return forward(ctx, &p, vip, r, real_idx, hash, cfg, false, bytes);
}
