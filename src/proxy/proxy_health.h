/* The proxy's active health checks: every backend of every pool of a
 * generation is a target of a core/health.h set, and every result is
 * mirrored into the generation's shared region, where the workers read the
 * health (and up_since_ms, for slow start) and the admin API the streaks,
 * totals and last result. A transition bumps sh->generation, which the
 * workers poll.
 *
 * The master runs one per generation: on reload it stops the old one and
 * starts one for the new configuration, whose region already carries the
 * old results over (shared_carry_over), so no backend starts from scratch.
 */
#ifndef SLUICE_PROXY_PROXY_HEALTH_H
#define SLUICE_PROXY_PROXY_HEALTH_H

#include "core/evloop.h"
#include "proxy/shared.h"

struct proxy_health;

/* Start checking every backend of cfg. cfg and sh must outlive it. NULL
 * on out of memory. */
struct proxy_health *proxy_health_start(struct ev_loop *loop, const struct proxy_conf *cfg, struct shared_state *sh);

/* Cancel in-flight checks, close their sockets and free it. Safe from any
 * callback of the same loop (the memory goes after the current batch). */
void proxy_health_stop(struct proxy_health *ph);

/* A discovered pool's slot g got another member (or emptied): its checks
 * restart against the address the slot holds now (none when empty). */
void proxy_health_slot_changed(struct proxy_health *ph, size_t pool, size_t g);

#endif
