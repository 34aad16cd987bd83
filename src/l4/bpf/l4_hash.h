/* The flow hash: one function compiled into the XDP forwarder and into user
 * space, so the control plane and tests can predict which Maglev slot (and
 * which TUN outer source) a flow gets.
 *
 * It hashes the ten 32-bit words of a struct l4_flow_key: source (4),
 * destination (4), both ports (1) and the protocol (1). Each word is merged by
 * a multiply (spreads a word's low bits upward), a rotate (brings the state's
 * high bits back down) and a multiply-add; a 32-bit avalanche finalizer
 * (xorshift-multiply, constants from Chris Wellons' hash-prospector search,
 * public domain) then makes every input bit affect every output bit, which
 * matters because Maglev reduces the hash modulo a prime and TUN takes its
 * low bits as a source address.
 *
 * The value depends on the host's byte order (words are read as they lie in
 * memory); LB nodes that share Maglev tables must share an architecture, as
 * they do in practice (x86-64). It is not a keyed PRF: the seed only makes
 * the slot assignment differ between deployments.
 */
#ifndef SLUICE_L4_HASH_H
#define SLUICE_L4_HASH_H

#include "l4/bpf/forwarder_abi.h"

#ifdef __bpf__
#define L4_INLINE static __always_inline
#else
#define L4_INLINE static inline
#endif

#define L4_HASH_K1 0x9e3779b1u /* odd, 2^32 / golden ratio */
#define L4_HASH_K2 0xc2b2ae3du /* odd, well-spread bits */
#define L4_HASH_K3 0x27d4eb2fu

L4_INLINE __u32 l4_hash_merge(__u32 h, __u32 w)
{
    h ^= w * L4_HASH_K1;
    h = (h << 13) | (h >> 19);
    return h * L4_HASH_K2 + L4_HASH_K3;
}

L4_INLINE __u32 l4_hash_final(__u32 h)
{
    h ^= h >> 16;
    h *= 0x7feb352du;
    h ^= h >> 15;
    h *= 0x846ca68bu;
    h ^= h >> 16;
    return h;
}

/* Written out word by word (no loop): the verifier and the optimiser both
 * see ten straight-line merges. */
L4_INLINE __u32 l4_flow_hash(const struct l4_flow_key *k, __u32 seed)
{
    __u32 h = seed ^ 40u; /* 40: the key length, a domain separator */

    h = l4_hash_merge(h, k->src[0]);
    h = l4_hash_merge(h, k->src[1]);
    h = l4_hash_merge(h, k->src[2]);
    h = l4_hash_merge(h, k->src[3]);
    h = l4_hash_merge(h, k->dst[0]);
    h = l4_hash_merge(h, k->dst[1]);
    h = l4_hash_merge(h, k->dst[2]);
    h = l4_hash_merge(h, k->dst[3]);
    h = l4_hash_merge(h, (__u32)k->sport | ((__u32)k->dport << 16));
    h = l4_hash_merge(h, k->proto);
    return l4_hash_final(h);
}

/* The source-hash scheduler's hash: the client's address alone, so every
 * connection of one client (any port, any protocol) lands on one Maglev
 * slot. Same seed and merge steps as l4_flow_hash(); the domain separator
 * (16, the address length) keeps it from equalling a flow hash. */
L4_INLINE __u32 l4_src_hash(const __be32 src[4], __u32 seed)
{
    __u32 h = seed ^ 16u;

    h = l4_hash_merge(h, src[0]);
    h = l4_hash_merge(h, src[1]);
    h = l4_hash_merge(h, src[2]);
    h = l4_hash_merge(h, src[3]);
    return l4_hash_final(h);
}

/* The Maglev slot of a hash within one table of m slots. User space gets
 * the same answer from maglev_lookup(table, m, hash) in src/lib/maglev.h. */
L4_INLINE __u32 l4_maglev_slot(__u32 hash, __u32 m)
{
    return hash % m;
}

#endif
