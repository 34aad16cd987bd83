/* Fast 64-bit keyed hashing for hash tables, consistent hashing and RNGs.
 *
 * sl_hash64() is a multiply-fold construction in the style of wyhash: each
 * 16-byte block is folded into the state by one 64x64->128 multiply whose
 * halves are xored together. The seed is expanded into per-lane secrets, so a
 * secret seed makes collisions hard to precompute (flooding resistance for
 * request-derived keys). It is not a cryptographic PRF; use SipHash or a MAC
 * where that matters. The output is stable across runs and machines for the
 * same (data, len, seed), which Maglev relies on.
 */
#ifndef SLUICE_LIB_HASH_H
#define SLUICE_LIB_HASH_H

#include <stddef.h>
#include <stdint.h>

uint64_t sl_hash64(const void *data, size_t len, uint64_t seed);

/* A bijective 64-bit finalizer (xorshift-multiply, splitmix64 constants):
 * every input bit affects every output bit. Good for mixing integers such as
 * addresses or counters into well-distributed hash values. */
uint64_t sl_mix64(uint64_t x);

#endif
