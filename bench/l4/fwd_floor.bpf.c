// SPDX-License-Identifier: GPL-2.0
/* bench/l4.sh helper: the end-to-end forwarding floor. The benchmark's
 * frames (IPv4 UDP to port 80) get the sink's MAC as destination and the
 * LB's as source and are sent on, like DR without any lookup; everything
 * else passes. The MACs come from -DSINK_MAC=... -DLB_MAC=... (comma-
 * separated bytes) when bench/l4.sh compiles it; LB_MAC is the MAC of the
 * interface the frame leaves by. Without TX_IFINDEX the frame goes back
 * out where it came in (XDP_TX: the one-arm bridge topology); with
 * -DTX_IFINDEX=N it leaves through interface N (bpf_redirect: the two-arm
 * topology, as `sluice l4` with l4.tx_interface). */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/udp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

SEC("xdp")
int fwd_floor(struct xdp_md *ctx)
{
    static const unsigned char sink[ETH_ALEN] = { SINK_MAC }, lb[ETH_ALEN] = { LB_MAC };
    void *data = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;
    struct ethhdr *eth = data;
    struct iphdr *ip = (void *)(eth + 1);
    struct udphdr *udp = (void *)(ip + 1);
    if ((void *)(udp + 1) > end || eth->h_proto != bpf_htons(ETH_P_IP) ||
        ip->ihl != 5 || ip->protocol != IPPROTO_UDP || udp->dest != bpf_htons(80))
        return XDP_PASS;
    __builtin_memcpy(eth->h_dest, sink, ETH_ALEN);
    __builtin_memcpy(eth->h_source, lb, ETH_ALEN);
#ifdef TX_IFINDEX
    return bpf_redirect(TX_IFINDEX, 0);
#else
    return XDP_TX;
#endif
}

char LICENSE[] SEC("license") = "GPL";
