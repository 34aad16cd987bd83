/* A service's list as picks see it: an immutable snapshot, swapped
 * atomically, freed after a grace period; and the per-instance pick state
 * that outlives snapshots.
 *
 * Grace periods (cl_grace), the scheme of userspace RCU's "two phases":
 *   - readers: e = epoch; readers[e & 1][stripe]++; p = load(pointer);
 *     use p; readers[e & 1][stripe]--. No lock, no allocation, no retry: a reader never
 *     waits for a writer.
 *   - a writer publishes the new pointer, then cl_grace_wait(): twice, it
 *     flips epoch (new readers count on the other side) and waits until
 *     the side it left has drained; then nothing can hold the old pointer,
 *     and it is freed.
 *   Why this is enough (every access is seq_cst): a reader that can hold
 *   the old pointer loaded it before the writer's store, so its increment
 *   (before its load) precedes both of the writer's drain checks in the
 *   single total order, whichever side it counted on; each side is
 *   checked once after the store, so the reader's side is seen non-zero
 *   until it decrements. Why two flips: one check per side is needed, and
 *   flipping before each keeps new readers off the side being drained, so
 *   the writer is never starved by a stream of readers. A reader that read
 *   the epoch long ago may count on a side being drained; it holds the
 *   writer only for its own short read.
 *   Writers are serialized by the grace's own mutex (several services
 *   share one client-wide grace).
 *
 * Pick state (cl_slots): an instance's outstanding count, failure streak
 * and avoidance, keyed by instance id, in slots that live as long as the
 * service handle (chunks that never move; an id keeps its slot across
 * snapshots, so sluice_done() of an older pick finds it). Only the writer
 * assigns slots. */
#ifndef SLUICE_CLIENT_SNAP_H
#define SLUICE_CLIENT_SNAP_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "client/doc.h"
#include "lib/locality.h"

/* ---- grace periods ------------------------------------------------------ */

/* Reader counts are striped: each thread counts on a stripe of its own
 * (threads beyond CL_GRACE_STRIPES share them), each on its own cache line,
 * so threads picking at once do not pass one counter's line between their
 * cores. A writer drains a side by waiting for each of its stripes in turn:
 * a reader's increment precedes the writer's checks (see above), so the
 * stripe it counted on reads non-zero until it has left. */
#define CL_GRACE_STRIPES 16

struct cl_grace {
    _Atomic uint64_t epoch;
    struct {
        _Alignas(64) _Atomic uint64_t n;
    } readers[2][CL_GRACE_STRIPES];
    pthread_mutex_t writers;
};

void cl_grace_init(struct cl_grace *g);
void cl_grace_destroy(struct cl_grace *g);
/* A read side: returns the token to pass to cl_grace_exit(). */
unsigned cl_grace_enter(struct cl_grace *g);
void cl_grace_exit(struct cl_grace *g, unsigned token);
/* Waits until every reader that may hold a pointer unpublished before this
 * call is gone. */
void cl_grace_wait(struct cl_grace *g);

/* ---- pick state --------------------------------------------------------- */

#define CL_SLOT_CHUNK 256u
#define CL_SLOT_CHUNKS 4096u   /* up to 1M distinct instance ids per service handle */
#define CL_NO_SLOT UINT32_MAX

struct cl_slot {
    _Atomic uint32_t outstanding;   /* picks not done yet */
    _Atomic uint32_t fails;         /* consecutive SLUICE_FAILED */
    _Atomic uint64_t avoid_until_ms;
};

struct cl_slots {
    _Atomic(struct cl_slot *) chunk[CL_SLOT_CHUNKS];
    /* the writer's: id -> slot (open addressing; ids[slot] owns the id) */
    uint32_t n;
    char **ids;
    uint32_t ids_cap;
    uint32_t *map;                  /* slot + 1, 0 empty */
    uint32_t map_cap;               /* a power of two */
};

void cl_slots_free(struct cl_slots *s);
/* The id's slot (assigned now if new), or CL_NO_SLOT when out of memory
 * or slots. Writer only. */
uint32_t cl_slots_get(struct cl_slots *s, const char *id);
/* Slot i (assigned earlier): any thread. */
struct cl_slot *cl_slot_at(struct cl_slots *s, uint32_t i);

/* ---- snapshots ---------------------------------------------------------- */

struct cl_member {
    uint32_t inst;       /* index in snap->inst */
    uint32_t slot;
    uint64_t cum;        /* weights of members 0..this one */
};

struct cl_snap_inst {
    struct cl_doc_inst d;
    uint32_t slot;
    bool answerable;     /* enabled and weight > 0 */
};

struct cl_snap {
    uint64_t version;
    int source;          /* enum sluice_source */
    uint32_t n_inst;
    struct cl_snap_inst *inst;
    uint32_t n_members;
    struct cl_member *members;   /* healthy first when failing open */
    uint64_t total_weight;
    uint32_t healthy;            /* healthy answerable, in all */
    uint32_t answerable;
    enum sl_tier tier;
    bool fail_open;
    uint32_t dns_ttl, answer_count;
    uint64_t registry_index;
};

/* A snapshot of doc for a caller in datacenter/region (NULL: unknown),
 * slots assigned in s. NULL when out of memory. */
struct cl_snap *cl_snap_build(const struct cl_doc *doc, const char *datacenter, const char *region, int source,
                              uint64_t version, struct cl_slots *s);
void cl_snap_free(struct cl_snap *snap);

/* ---- picks -------------------------------------------------------------- */

struct cl_pick_conf {
    uint32_t avoid_after_failures;  /* 0: never avoid */
    uint32_t avoid_ms;
};

/* Milliseconds on CLOCK_MONOTONIC: the client's one clock. */
uint64_t cl_now_ms(void);

/* Thread-local splitmix64, seeded once per thread. */
uint64_t cl_rand64(void);

/* now_ms for the pick path: "read the clock only if a slot has an
 * avoidance to compare with". Most picks meet no avoided slot, and the
 * clock read would be a fifth of a pick's cost. */
#define CL_NOW_LAZY UINT64_MAX

/* Whether slot is avoided at now_ms (or CL_NOW_LAZY). */
bool cl_slot_avoided(const struct cl_pick_conf *pc, struct cl_slot *slot, uint64_t now_ms);

/* Index in snap->members of one pick (weighted; skipping avoided members
 * unless all are; p2c: the fewer outstanding of two draws), or -1 when
 * there are no members. now_ms may be CL_NOW_LAZY. Allocates nothing. */
int cl_snap_pick(const struct cl_snap *snap, struct cl_slots *slots, const struct cl_pick_conf *pc, bool p2c,
                 uint64_t now_ms);

/* A pick's result for its slot (SLUICE_OK/FAILED/CANCELLED). */
void cl_slot_done(struct cl_slot *slot, const struct cl_pick_conf *pc, int result, uint64_t now_ms);

#endif
