/* Sluice L4 forwarder: the XDP data plane. This file holds the entry point
 * and the flow of decisions; each step is in a header of its own.
 *
 * Packet walk (docs/l4-dataplane.md has the long form):
 *   Ethernet [+ one 802.1Q/802.1ad tag] -> IPv4 (IHL 5, unfragmented) or
 *   IPv6 (no extension headers) -> TCP/UDP ports, or ICMP      (parse.h)
 *   -> VIP lookup {dst, dport, proto}                          (here)
 *   -> connection table (per-CPU LRU) -> on a miss, Maglev by flow hash,
 *      or the service's scheduler                              (select.h)
 *   -> DR (MAC rewrite) or TUN (IPIP / IP6IP6 encapsulation, or GUE: the
 *      IP packet in UDP), XDP_TX or bpf_redirect()             (encap.h)
 * NAT and FullNAT services take their own branch after the VIP lookup: a
 * shared LRU table of translations (struct l4_nat), DNAT (+ SNAT to a local
 * address and port, + the TOA option on SYNs, in FullNAT) on the way in, and
 * the reverse for replies, which are looked up when a packet is not to a VIP
 * (nat.h). ICMP echo requests to a VIP are answered here; ICMP frag-needed
 * and ICMPv6 packet-too-big are sent to the real that owns the flow in
 * their inner header (icmp.h).
 *
 * Policy: a packet is only rewritten when every header it depends on has been
 * read and checked. What is not ours, or not understood (non-IP, IP options,
 * fragments, IPv6 extension headers, other protocols), goes to the kernel
 * stack untouched. What is broken (a header cut short by the frame, lengths
 * that contradict each other) is dropped: the stack would drop it as well,
 * so dropping here changes nothing but the cost. Every packet counts in
 * exactly one disposition reason (enum l4_reason, counters.h).
 *
 * Loops: none on the forwarding path. Every header has a fixed size once
 * options are excluded, so all offsets are one of a few constants and each
 * access is preceded by an explicit bounds check against data_end.
 *
 * Helpers are static __always_inline. Four steps are BPF subprograms
 * (static __noinline) so that their stack frames and verifier states stay
 * out of the common path: nat_in(), nat_out(), nat_icmp_err() and tun_ptb();
 * l4_sum_bytes() (csum.h) is a global function, verified once.
 *
 * The map contract with user space: forwarder_abi.h (toa_abi.h for the TOA
 * option). The headers below are included in dependency order.
 */
#include "vmlinux.h"

#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "l4/bpf/csum.h"
#include "l4/bpf/l4_hash.h"
#include "l4/bpf/forwarder_abi.h"
#include "l4/bpf/toa_abi.h"
#include "l4/bpf/consts.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#include "l4/bpf/maps.h"      /* .rodata settings, maps */
#include "l4/bpf/counters.h"  /* count_in(), finish(), tx_verdict() */
#include "l4/bpf/parse.h"     /* struct pkt, parse() */
#include "l4/bpf/select.h"    /* pick_real(), sched_pick(), flood_allow() */
#include "l4/bpf/nat.h"       /* nat_in(), nat_out(), toa_insert() */
#include "l4/bpf/icmp.h"      /* echo_reply(), icmp_inner_flow(), tun_ptb(), nat_icmp_err() */
#include "l4/bpf/encap.h"     /* fwd_dr(), fwd_tun() */

/* ---- forwarding ---- */

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

/* An ICMP or ICMPv6 message: an echo request to a VIP address is answered;
 * a frag-needed / packet-too-big is routed by the flow it quotes, to that
 * flow's real, as the flow's own packets are (NAT and FullNAT: translated);
 * anything else goes to the stack. */
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
