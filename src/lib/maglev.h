/* Weighted Maglev consistent hashing (Eisenbud et al., NSDI 2016).
 *
 * A lookup table of M slots (M prime) maps a key hash to a backend index.
 * Each backend walks its own pseudo-random permutation of the slots, given by
 * an offset and a skip derived from a hash of its key; backends take turns
 * claiming their next preferred free slot until the table is full. Because
 * the permutations depend only on the backend keys, every node with the same
 * (keys, weights, seed) builds the same table, and removing a backend mostly
 * reassigns only that backend's slots.
 *
 * Weights: turns are handed out by stride scheduling (the backend whose
 * next turn number divided by its weight is smallest goes next), so a
 * backend's slot count is proportional to its weight. Backends are ordered
 * by key before the build, so the input order does not matter.
 *
 * This module is independent of balance.c: the L4 XDP control plane uses it
 * to fill a BPF map.
 */
#ifndef SLUICE_LIB_MAGLEV_H
#define SLUICE_LIB_MAGLEV_H

#include <stddef.h>
#include <stdint.h>

#define MAGLEV_DEFAULT_SEED 0x5eed5a1cefULL

/* 65537 when 100 * n_backends <= 65537, else the smallest prime >=
 * 100 * n_backends (at least 100 slots per backend keeps the weight error
 * and the disruption overhead near 1%). */
uint32_t maglev_table_size(size_t n_backends);

/* Fill table[0..m) with backend indices 0..n-1. keys[i] is backend i's stable
 * identity (e.g. "10.0.0.1:80"), weights[i] its weight, 0 meaning absent.
 * Keys should be distinct; backends with equal keys get equal permutations.
 * m must be prime (use maglev_table_size()).
 * Returns 0, or -1 with errno:
 *   ENOENT  all weights are 0 (table filled with -1),
 *   EINVAL  m is not a prime or n > INT32_MAX (table untouched),
 *   ENOMEM  no memory for the build scratch space (table untouched).
 * Cost: O(M log M + M log n) time (about 1.5 ms for M = 65537 and 100
 * equal-weight backends, 3.5 ms with unequal weights), O(n) scratch. */
int maglev_build(int32_t *table, uint32_t m, const char *const *keys, const uint32_t *weights,
                 size_t n, uint64_t seed);

/* The backend index for a key hash, or -1 if the table is empty. The hash
 * should be well mixed (e.g. from sl_hash64()); it is reduced modulo m. */
static inline int32_t maglev_lookup(const int32_t *table, uint32_t m, uint64_t key_hash)
{
    return table[key_hash % m];
}

#endif
