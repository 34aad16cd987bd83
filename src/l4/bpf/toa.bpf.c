/* Sluice TOA reader: the real-server side of FullNAT.
 *
 * In FullNAT the real server sees connections from the LB's local address,
 * not from the client. The forwarder puts the client's address and port in
 * a TCP option of the SYN (kind 200, length 8 for IPv4 or 20 for IPv6; see
 * toa_abi.h). This program runs on the real server's ingress (tc / tcx),
 * finds that option on SYNs and records
 *
 *   {local addr, remote addr, local port, remote port} -> client
 *
 * in the pinned LRU hash `sluice_toa`, keyed the way the accepting socket
 * sees its connection (getsockname / getpeername), so user space can ask
 * "who is the real client of this accepted socket" (src/proxy/toa_lookup.h).
 *
 * Why tc ingress and not sockops: the option is only on the SYN, and a
 * sockops program only sees a SYN's options when the listener saves SYNs
 * (TCP_SAVE_SYN, set per listener, costing memory per connection until
 * read) and only for listeners that existed after it was attached. A tc
 * program sees every SYN on the interface whatever the listener, needs no
 * cgroup, and can be tested with BPF_PROG_TEST_RUN. The price: a SYN that
 * never becomes a connection (or is dropped by the stack) leaves an entry,
 * which the LRU ages out; a connection always finds the entry of its own
 * SYN because the 4-tuple cannot be reused until it is closed.
 *
 * The packet is never changed (TC_ACT_OK always): Linux ignores TCP options
 * it does not know. Options are read from a copy (bpf_skb_load_bytes) and
 * walked with bpf_loop().
 */
#include "vmlinux.h"

#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "l4/bpf/consts.h"
#include "l4/bpf/toa_abi.h"

#define TC_ACT_OK    0

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Pinned by name: libbpf pins it as <pin root>/sluice_toa (default
 * /sys/fs/bpf/sluice_toa) and reuses a pinned map on the next load, so
 * entries survive a reload of the program. */
struct {
    __uint(type, BPF_MAP_TYPE_LRU_HASH);
    __uint(max_entries, L4_TOA_ENTRIES);
    __type(key, struct l4_toa_key);
    __type(value, struct l4_toa_val);
    __uint(pinning, LIBBPF_PIN_BY_NAME);
} sluice_toa SEC(".maps");

/* toa_stats[enum toa_stat]: per-CPU packet counts (toa_abi.h). */
struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, TOA_STATS);
    __type(key, __u32);
    __type(value, __u64);
} toa_stats SEC(".maps");

static __always_inline void stat(__u32 i)
{
    __u64 *c = bpf_map_lookup_elem(&toa_stats, &i);

    if (c)
        (*c)++;
}

static __always_inline void v4_mapped(__be32 out[4], __be32 a)
{
    out[0] = 0;
    out[1] = 0;
    out[2] = bpf_htonl(0xffff);
    out[3] = a;
}

/* TCP options are at most 40 bytes; the buffer has room past any index
 * masked with 63 plus the 20 bytes of an IPv6 TOA, which is what lets the
 * verifier accept the reads below. */
#define OPT_BUF 96

/* The walk over the TCP options (a copy of them), one option per
 * bpf_loop() step: the verifier checks the step once, with the position
 * unknown, instead of every path through up to 40 options. */
struct opt_walk {
    __u8 opt[OPT_BUF];
    __u32 len;   /* bytes of options */
    __u32 want;  /* TOA length for the packet's family */
    __u32 i;     /* position of the next option */
    int found;   /* offset of the TOA option; -1 none; -2 malformed */
};

static long opt_step(__u64 n, void *arg)
{
    struct opt_walk *w = arg;
    __u32 i = w->i, j = i & 63;
    __u8 kind, olen;

    if (i >= w->len)
        return 1;
    kind = w->opt[j];
    if (kind == 0) /* end of option list */
        return 1;
    if (kind == 1) { /* NOP */
        w->i = i + 1;
        return 0;
    }
    olen = w->opt[(j + 1) & 63];
    if (i + 1 >= w->len || olen < 2 || i + olen > w->len) {
        w->found = -2;
        return 1;
    }
    if (kind == L4_TOA_KIND) {
        w->found = olen == w->want ? (int)i : -2;
        return 1;
    }
    w->i = i + olen;
    return 0;
}

SEC("tc")
int sluice_toa_ingress(struct __sk_buff *skb)
{
    void *data = (void *)(long)skb->data;
    void *data_end = (void *)(long)skb->data_end;
    struct ethhdr *eth = data;
    struct l4_toa_key k = {};
    struct l4_toa_val v = {};
    struct opt_walk w = {};
    __u32 l3 = sizeof(*eth), l4, doff, want;
    __be16 proto;
    bool v6;
    int at;

    if ((void *)(eth + 1) > data_end)
        return TC_ACT_OK;
    proto = eth->h_proto;
    if (proto == bpf_htons(ETH_P_8021Q) || proto == bpf_htons(ETH_P_8021AD)) {
        struct vlan_hdr *vh = (void *)(eth + 1);

        if ((void *)(vh + 1) > data_end)
            return TC_ACT_OK;
        proto = vh->h_vlan_encapsulated_proto;
        l3 += sizeof(*vh);
    }

    if (proto == bpf_htons(ETH_P_IP)) {
        struct iphdr *ip = data + l3;
        __u32 ihl;

        if ((void *)(ip + 1) > data_end || ip->protocol != PROTO_TCP)
            return TC_ACT_OK;
        if (ip->frag_off & bpf_htons(IP_MF | IP_OFFSET))
            return TC_ACT_OK;
        ihl = (ip->ihl) * 4;
        if (ihl < sizeof(*ip))
            return TC_ACT_OK;
        v4_mapped(k.laddr, ip->daddr);
        v4_mapped(k.raddr, ip->saddr);
        l4 = l3 + ihl;
        v6 = false;
    } else if (proto == bpf_htons(ETH_P_IPV6)) {
        struct ipv6hdr *ip6 = data + l3;

        /* The forwarder sends no extension headers; neither do we read them. */
        if ((void *)(ip6 + 1) > data_end || ip6->nexthdr != PROTO_TCP)
            return TC_ACT_OK;
        __builtin_memcpy(k.laddr, &ip6->daddr, 16);
        __builtin_memcpy(k.raddr, &ip6->saddr, 16);
        l4 = l3 + sizeof(*ip6);
        v6 = true;
    } else {
        return TC_ACT_OK;
    }

    {
        struct tcphdr th;

        if (bpf_skb_load_bytes(skb, l4, &th, sizeof(th)))
            return TC_ACT_OK;
        /* The client's SYN only: not a SYN+ACK, not data. */
        if ((((__u8 *)&th)[13] & (TCP_SYN | TCP_ACK)) != TCP_SYN)
            return TC_ACT_OK;
        doff = (((__u8 *)&th)[12] >> 4) * 4;
        k.lport = th.dest;
        k.rport = th.source;
    }
    if (doff <= sizeof(struct tcphdr) || doff > 60) {
        stat(TOA_SYN_WITHOUT);
        return TC_ACT_OK;
    }
    doff -= sizeof(struct tcphdr);
    if (bpf_skb_load_bytes(skb, l4 + sizeof(struct tcphdr), w.opt, doff)) {
        stat(TOA_BAD_OPTION);
        return TC_ACT_OK;
    }
    want = v6 ? L4_TOA_LEN_V6 : L4_TOA_LEN_V4;
    w.len = doff;
    w.want = want;
    w.found = -1;
    bpf_loop(40, opt_step, &w, 0); /* each step moves at least one byte */
    at = w.found;
    if (at == -1) {
        stat(TOA_SYN_WITHOUT);
        return TC_ACT_OK;
    }
    /* opt_step() checked the option lies within the options. */
    if (at < 0 || at > 40 - (int)want) {
        stat(TOA_BAD_OPTION);
        return TC_ACT_OK;
    }
    barrier_var(at);
    at &= 63;
    __builtin_memcpy(&v.port, &w.opt[at + 2], 2);
    if (v6) {
        __builtin_memcpy(v.addr, &w.opt[at + 4], 16);
    } else {
        __be32 a;

        __builtin_memcpy(&a, &w.opt[at + 4], 4);
        v4_mapped(v.addr, a);
    }
    v.seen_ns = bpf_ktime_get_ns();
    bpf_map_update_elem(&sluice_toa, &k, &v, BPF_ANY);
    stat(TOA_RECORDED);
    return TC_ACT_OK;
}
