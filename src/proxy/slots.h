/* The member slots of a discovered pool: which registry member sits in
 * which backend slot of the shared region. Pure bookkeeping, run by the
 * master; the master then copies each changed slot into the shared region
 * (shared_slot_write) where workers pick it up on their tick.
 *
 * Why slots: a pool's backends live in the shared region, which is sized
 * once per configuration generation and read by forked workers without
 * locks. A discovered pool reserves max_members slots there instead of a
 * fixed list, and members move in and out of slots without a reload:
 *
 *   - a member that stays keeps its slot, so everything the workers keep
 *     per backend (keep-alive connections, counters, in-flight requests,
 *     passive health) is untouched by changes to other members;
 *   - a member that leaves gets SLOT_DRAINING: no new requests, its idle
 *     pooled connections are closed, in-flight ones finish; the slot is
 *     reused only once it is quiet (nothing active or idle in any worker,
 *     and draining for at least the workers' pick-up time), so a new
 *     member never inherits the old one's connections or counters;
 *   - a member that comes back while its slot drains takes it back.
 * A member that finds no free slot waits (logged) until one is reclaimed.
 */
#ifndef SLUICE_PROXY_SLOTS_H
#define SLUICE_PROXY_SLOTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/addr.h"

enum slot_state { SLOT_EMPTY = 0, SLOT_ACTIVE = 1, SLOT_DRAINING = 2 };

struct slot {
    enum slot_state state;
    struct sl_addr addr;        /* valid unless EMPTY */
    uint32_t weight;            /* the registry's weight */
    uint64_t drain_since_ms;    /* when it started draining */
    /* Set by slots_apply / slots_reclaim for what changed (the caller
     * clears them once it has copied the slot out). */
    bool addr_changed;          /* a new member took it (or it emptied) */
    bool weight_changed;
    bool state_changed;
};

struct slot_member {
    struct sl_addr addr;
    uint32_t weight;
};

struct slots_result {
    size_t kept, added, removed;
    size_t waiting;             /* members without a free slot */
};

/* Put the members (the new complete list) into the slots: same address,
 * same slot; new ones into empty slots (lowest index first); slots whose
 * member is gone start draining at now_ms. Duplicate addresses in the list
 * count once (the first one's weight). */
void slots_apply(struct slot *s, size_t n, const struct slot_member *m, size_t n_m, uint64_t now_ms,
                 struct slots_result *res);

/* Empty the draining slots that have drained for at least min_drain_ms and
 * that busy(arg, i) says are quiet. Returns how many were emptied. */
size_t slots_reclaim(struct slot *s, size_t n, uint64_t now_ms, uint64_t min_drain_ms,
                     bool (*busy)(void *arg, size_t i), void *arg);

/* Slots that hold a member (active or draining). */
size_t slots_used(const struct slot *s, size_t n);

#endif
