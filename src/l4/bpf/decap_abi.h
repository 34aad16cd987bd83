/* The contract between the TUN decapsulation program (decap.bpf.c, the
 * real-server side of TUN mode) and user space (`sluice l4 decap`,
 * src/l4/decap.c): its maps' keys, values and counters.
 *
 * Layout and address rules: l4_abi_common.h.
 */
#ifndef SLUICE_L4_DECAP_ABI_H
#define SLUICE_L4_DECAP_ABI_H

#include "l4/bpf/l4_abi_common.h"

/* Tunnel endpoint addresses the program decapsulates for (the keys of the
 * decap_addrs hash): 16 bytes, IPv4 v4-mapped (::ffff:a.b.c.d), network
 * byte order. */
#define DECAP_MAX_ADDRS 256

/* decap_stats[reason]: per-CPU {packets, bytes}; every packet the program
 * sees counts in exactly one. (For UDP that is not to the GUE port, the
 * "not IP-in-IP" of DECAP_PASS_OTHER; the other pass reasons count GUE
 * packets as they count IP-in-IP.) */
enum decap_reason {
    DECAP_IPIP = 0,     /* IPv4 in IPv4: outer header removed */
    DECAP_6IN4,         /* IPv6 in IPv4 */
    DECAP_IP6IP6,       /* IPv6 in IPv6 */
    DECAP_4IN6,         /* IPv4 in IPv6 */
    DECAP_PASS_OTHER,   /* not IP-in-IP (or not IP): untouched */
    DECAP_PASS_NOT_OURS,/* IP-in-IP to an address not in decap_addrs */
    DECAP_PASS_UNSUPP,  /* IPv4 options or fragment, IPv6 extension headers */
    DECAP_PASS_BAD,     /* malformed: truncated, bad lengths, bad outer
                           checksum, inner version not the announced one */
    DECAP_DROP_ECN,     /* outer CE, inner not ECN-capable (RFC 6040) */
    /* GUE variant 1 (the IP packet directly in UDP to decap_config's
     * port; appended, so the numbers above stay): outer UDP header and
     * outer IP header removed. */
    DECAP_GUE_4IN4,     /* IPv4 in UDP in IPv4 */
    DECAP_GUE_6IN4,     /* IPv6 in UDP in IPv4 */
    DECAP_GUE_6IN6,     /* IPv6 in UDP in IPv6 */
    DECAP_GUE_4IN6,     /* IPv4 in UDP in IPv6 */
    DECAP_N_REASONS,
};

/* decap_config (BPF_MAP_TYPE_ARRAY, one entry), written before attaching. */
struct decap_cfg {
    __be16 gue_port;    /* GUE: UDP destination port, network order;
                           0 = GUE is not decapsulated (the default) */
    __u16 pad;
};

struct decap_count {
    __u64 packets;
    __u64 bytes;
};

#endif
