// SPDX-License-Identifier: GPL-2.0
/* bench/l4.sh helper: pass everything. On the bridge-side peer of the LB's
 * veth it gives that peer NAPI, without which veth drops XDP_TX frames. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

SEC("xdp")
int pass(struct xdp_md *ctx)
{
    return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
