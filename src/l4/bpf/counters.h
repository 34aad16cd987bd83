/* How the forwarder's handling of a packet ends: its counts (reasons,
 * vip_stats, real_stats: per-CPU {packets, bytes}) and its XDP verdict.
 * Every packet counts in exactly one disposition reason (enum l4_reason);
 * finish() counts a pass or drop and returns its verdict, tx_verdict() is
 * the verdict of a packet sent on.
 *
 * Assumes maps.h (the counter maps).
 */
#ifndef SLUICE_L4_BPF_COUNTERS_H
#define SLUICE_L4_BPF_COUNTERS_H

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

/* The verdict of a packet sent on: out of the ingress interface, or of the
 * one l4_config names. */
static __always_inline int tx_verdict(const struct l4_cfg *cfg)
{
    if (cfg->tx_ifindex)
        return bpf_redirect(cfg->tx_ifindex, 0);
    return XDP_TX;
}

#endif
