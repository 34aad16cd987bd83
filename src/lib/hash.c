/* See hash.h. Little-endian reads are used on every host so the hash value of
 * a given byte string is the same everywhere (Maglev tables must agree
 * between nodes). */
#include "lib/hash.h"

#include <string.h>

/* Nothing-up-my-sleeve constants: fractional parts of sqrt(2), sqrt(3),
 * sqrt(5) and sqrt(7). They only need to have well-spread bits. */
#define K_SQRT2 0x6a09e667f3bcc908ULL
#define K_SQRT3 0xbb67ae8584caa73bULL
#define K_SQRT5 0x3c6ef372fe94f82bULL
#define K_SQRT7 0xa54ff53a5f1d36f1ULL

uint64_t sl_mix64(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    x ^= x >> 31;
    return x;
}

/* Multiply and fold: both halves of the 128-bit product, so high input bits
 * reach low output bits and vice versa. */
static inline uint64_t fold_mul(uint64_t a, uint64_t b)
{
    unsigned __int128 r = (unsigned __int128)a * b;
    return (uint64_t)r ^ (uint64_t)(r >> 64);
}

static inline uint64_t rotl64(uint64_t x, unsigned r)
{
    return (x << r) | (x >> (64 - r));
}

static inline uint64_t load64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, sizeof v);
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    v = __builtin_bswap64(v);
#endif
    return v;
}

static inline uint64_t load32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, sizeof v);
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    v = __builtin_bswap32(v);
#endif
    return v;
}

/* The last 0..16 bytes as two words. Short inputs are read with overlapping
 * loads (first and last word) instead of a byte loop; the length is mixed
 * into the state separately, so overlaps cannot make "ab" equal "abab". */
static void read_tail(const uint8_t *p, size_t n, uint64_t *a, uint64_t *b)
{
    if (n >= 8) {
        *a = load64(p);
        *b = load64(p + n - 8);
    } else if (n >= 4) {
        *a = load32(p);
        *b = load32(p + n - 4);
    } else if (n > 0) {
        *a = ((uint64_t)p[0] << 16) | ((uint64_t)p[n / 2] << 8) | p[n - 1];
        *b = 0;
    } else {
        *a = *b = 0;
    }
}

uint64_t sl_hash64(const void *data, size_t len, uint64_t seed)
{
    const uint8_t *p = data;
    size_t n = len;
    /* Lane secrets derived from the seed: without the seed an attacker cannot
     * choose a block that zeroes a multiplicand. */
    uint64_t s0 = sl_mix64(seed ^ K_SQRT2);
    uint64_t s1 = sl_mix64(seed + K_SQRT3);
    uint64_t h = s0 ^ fold_mul((uint64_t)len ^ K_SQRT5, s1 | 1);
    uint64_t a, b;

    while (n > 16) {
        /* The rotated old state is fed forward so that an unlucky product
         * cannot erase the history of earlier blocks. */
        h = fold_mul(load64(p) ^ s0, load64(p + 8) ^ h) ^ rotl64(h, 29);
        p += 16;
        n -= 16;
    }
    if (len > 16) {
        /* Re-read the final 16 bytes (overlapping the last full block) rather
         * than padding: branch-free and still covers every byte. */
        a = load64(p + n - 16);
        b = load64(p + n - 8);
    } else {
        read_tail(p, n, &a, &b);
    }
    h = fold_mul(a ^ s1, b ^ h) ^ rotl64(h, 29);
    return fold_mul(h ^ K_SQRT7, s0 ^ s1 ^ len) ^ h;
}
