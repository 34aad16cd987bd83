/* The floor for L4 benchmarks: the least an XDP forwarder can do to send a
 * packet back out (swap the MACs, XDP_TX). bench-l4-floor reports the
 * forwarder's ns/packet beside this program's, measured in the same run. */
#include "vmlinux.h"

#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

SEC("xdp")
int xdp_floor(struct xdp_md *ctx)
{
    void *data = (void *)(long)ctx->data;
    void *data_end = (void *)(long)ctx->data_end;
    struct ethhdr *eth = data;
    __u8 tmp[6];

    if ((void *)(eth + 1) > data_end)
        return XDP_DROP;
    __builtin_memcpy(tmp, eth->h_source, 6);
    __builtin_memcpy(eth->h_source, eth->h_dest, 6);
    __builtin_memcpy(eth->h_dest, tmp, 6);
    return XDP_TX;
}
