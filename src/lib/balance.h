/* Backend selection for a pool: round-robin, least-connections, power of two
 * choices and consistent hashing, all weighted.
 *
 * A struct lb_state belongs to one worker and one pool: no locks, and
 * lb_pick() never allocates. Backends are indices 0..n-1 into the pool's
 * backend array. The caller owns health, draining and ejection and expresses
 * them as effective weights through lb_set_weights() (0 = unavailable).
 */
#ifndef SLUICE_LIB_BALANCE_H
#define SLUICE_LIB_BALANCE_H

#include <stddef.h>
#include <stdint.h>

enum lb_algorithm {
    LB_ROUND_ROBIN,   /* smooth weighted round-robin ("round_robin") */
    LB_LEAST_CONN,    /* least active connections, weighted ("least_conn") */
    LB_P2C,           /* power of two random choices on outstanding requests ("p2c") */
    LB_HASH,          /* consistent hash on a key, weighted Maglev ("hash") */
};

/* The names above, indexed by the enum, NULL-terminated (what a config
 * file spells). */
extern const char *const lb_algorithm_names[];

/* "round_robin" .. "hash", or "unknown". */
const char *lb_algorithm_name(enum lb_algorithm a);

struct lb_state;

/* A new state for n_backends backends, all with weight 0 (lb_pick() returns
 * -1 until lb_set_weights() is called). The p2c random generator is seeded
 * from the clock and the state's address, so workers do not move in step.
 * Returns NULL with errno ENOMEM, or EINVAL for an unknown algorithm or
 * n_backends > INT32_MAX. */
struct lb_state *lb_create(enum lb_algorithm alg, size_t n_backends);
void lb_free(struct lb_state *lb);

/* Set each backend's effective weight (0 = unavailable: down, drained,
 * disabled or ejected). keys[i] is backend i's stable identity ("ip:port");
 * LB_HASH needs it to build the Maglev table (the table depends only on
 * keys and weights, not on order); other algorithms accept keys == NULL.
 * Cheap when nothing changed: weights and key pointers are compared (and a
 * key whose pointer changed is compared by hash) and the call returns.
 * Otherwise the round-robin state is reset and the p2c prefix sums or the
 * Maglev table are rebuilt. Returns 0, or -1 with errno ENOMEM (state left
 * as it was) or EINVAL (LB_HASH without keys). */
int lb_set_weights(struct lb_state *lb, const uint32_t *weights, const char *const *keys);

/* Pick a backend; returns its index, or -1 when none is available.
 *   load[i]   active connections (least_conn) or outstanding requests (p2c)
 *             of backend i; may be NULL (treated as all zero), and is not
 *             read by round_robin and hash.
 *   key_hash  the request's key hash, LB_HASH only (e.g. sl_hash64()).
 *   exclude   NULL, or exclude[i] != 0 means "do not pick i" (a retry on
 *             another backend). Weights are still honoured among the rest;
 *             for LB_HASH the key is re-probed at other table slots (a
 *             fixed sequence derived from key_hash) until one is owned by a
 *             non-excluded backend, so a retried key is still sticky. */
int lb_pick(struct lb_state *lb, const uint32_t *load, uint64_t key_hash, const uint8_t *exclude);

/* Reseed the p2c random generator (tests, reproducible benchmarks). */
void lb_seed(struct lb_state *lb, uint64_t seed);

#endif
