// SPDX-License-Identifier: GPL-2.0
/* bench/l4.sh helper: count IPv4 UDP packets to port 80 (the benchmark's
 * traffic) in a per-CPU counter and drop them; pass everything else (ARP,
 * the forwarder's neighbour probes). Used at the sink (what got through)
 * and, for the drop-only baseline, on the LB's interface. */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/udp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, __u64);
} pkts SEC(".maps");

SEC("xdp")
int count_drop(struct xdp_md *ctx)
{
    void *data = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;
    struct ethhdr *eth = data;
    struct iphdr *ip = (void *)(eth + 1);
    struct udphdr *udp = (void *)(ip + 1);       /* the generator sends no IP options */
    if ((void *)(udp + 1) > end || eth->h_proto != bpf_htons(ETH_P_IP) ||
        ip->ihl != 5 || ip->protocol != IPPROTO_UDP || udp->dest != bpf_htons(80))
        return XDP_PASS;
    __u32 k = 0;
    __u64 *n = bpf_map_lookup_elem(&pkts, &k);
    if (n)
        *n += 1;
    return XDP_DROP;
}

char LICENSE[] SEC("license") = "GPL";
