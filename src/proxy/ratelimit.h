/* Rate and connection limits shared by all workers (listeners[].rate_limits,
 * listeners[].connection_limit; proxy/ratelimit_conf.h).
 *
 * Workers are processes, so the limits' state lives in one MAP_SHARED
 * region made with the generation's shared state (shared_create), before
 * the workers are forked. It holds one table per rate limit and one per
 * connection limit: a fixed-size open-addressing table of slots, each
 * slot a key (a 64-bit keyed hash of the client address or header value;
 * the key itself is not kept) and its state, behind a one-word spinlock of
 * its own. A lock is held for a few instructions (no call, no syscall), so
 * workers practically never wait on one another; a key is found by
 * probing at most RL_PROBE slots from its hash.
 *
 * A rate limit is a leaky bucket in its GCRA form: the slot keeps the
 * bucket's "theoretical arrival time" (tat): when it would be empty again.
 * A request at `now` is admitted when tat - now <= burst * interval, and
 * then moves tat one interval on: burst + 1 requests at once, then one per
 * interval, as nginx's limit_req with burst and nodelay. A slot whose
 * bucket has drained (tat <= now) is as good as free and is reused; when
 * all RL_PROBE slots are busy, the one closest to drained is evicted
 * (counted: sluice_ratelimit_evictions_total).
 *
 * A connection limit counts a key's open connections; a slot with open
 * connections is never evicted, so a full window refuses the connection
 * (as nginx's limit_conn does when its zone is full).
 */
#ifndef SLUICE_PROXY_RATELIMIT_H
#define SLUICE_PROXY_RATELIMIT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proxy/proxy_conf.h"

#define RL_PROBE 16

struct rl_slot {
    _Atomic uint32_t lock;
    uint32_t conns;           /* connection limits: open connections of the key */
    _Atomic uint64_t key;     /* 0 = never used; read without the lock while probing */
    uint64_t tat_ns;          /* rate limits: CLOCK_MONOTONIC ns when the bucket is empty */
} __attribute__((aligned(32))); /* two to a cache line, none across two */

/* The counters of one table, for /metrics: shared by the workers. */
struct rl_counters {
    _Atomic uint64_t passed;
    _Atomic uint64_t rejected;
    _Atomic uint64_t evicted;  /* rate limits: a live key made room for another */
};

struct rl_table {
    uint64_t seed;            /* of the keyed hash: random per table */
    uint32_t mask;            /* slots - 1 */
    uint64_t interval_ns;     /* rate limits: 1/rate */
    uint64_t tolerance_ns;    /* burst * interval */
    /* Written on every request by every worker: a cache line of their own,
     * away from the read-mostly fields above. */
    struct rl_counters ctr __attribute__((aligned(64)));
    struct rl_slot slots[] __attribute__((aligned(64)));
};

struct ratelimit_region;

/* Map a region for cfg's limits (NULL when it has none: nothing to map;
 * also NULL when mmap fails, *failed then set). */
struct ratelimit_region *ratelimit_create(const struct proxy_conf *cfg, bool *failed);
void ratelimit_destroy(struct ratelimit_region *r);
/* A reload: a table whose limit (listener and limit name, and the same
 * rate, burst, key and size) is in both configurations takes the old one's
 * buckets and counters; the counters of one whose settings changed carry
 * over, its buckets start empty. */
void ratelimit_carry_over(struct ratelimit_region *dst, const struct proxy_conf *dst_cfg,
                          const struct ratelimit_region *src, const struct proxy_conf *src_cfg);

/* Listener li's table for rate limit k, or (k == its n_rate_limits) for its
 * connection limit; NULL if it has none (or r is NULL). */
struct rl_table *ratelimit_table(const struct ratelimit_region *r, size_t li, size_t k);

/* The bucket arithmetic (GCRA), on one slot's tat: admit a request at now
 * (tat moves one interval on) or say how long until one would be
 * admitted (*wait_ns). */
bool ratelimit_gcra(uint64_t *tat_ns, uint64_t now_ns, uint64_t interval_ns, uint64_t tolerance_ns,
                    uint64_t *wait_ns);

/* A rate-limited request against table t for the key hash of `key`:
 * true if admitted (the bucket is charged), false with *wait_ns. A table
 * whose slot could not be had (a lock held too long: a worker died inside
 * it) admits. */
uint64_t ratelimit_hash(const struct rl_table *t, const void *key, size_t len);
bool ratelimit_take(struct rl_table *t, uint64_t hash, uint64_t now_ns, uint64_t *wait_ns);
/* Give back the request ratelimit_take() charged (a later limit refused
 * it: a refused request costs no limit anything). */
void ratelimit_refund(struct rl_table *t, uint64_t hash);

/* A connection held against a connection limit. */
struct rl_hold {
    struct rl_table *table;   /* NULL: none held */
    uint32_t slot;
};

/* Count a new connection of key hash: true (and *hold set) if it is within
 * max, false if the key has max open already or the table's window is
 * full of keys with open connections. */
bool ratelimit_conn_acquire(struct rl_table *t, uint64_t hash, uint32_t max, struct rl_hold *hold);
/* The connection closed (a hold with no table does nothing). */
void ratelimit_conn_release(struct rl_hold *hold);

/* CLOCK_MONOTONIC in ns. */
uint64_t ratelimit_now_ns(void);

#endif
