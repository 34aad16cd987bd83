/* Active health checks, run by the master on its event loop.
 *
 * For every pool whose health.type is tcp or http, each backend is checked
 * every interval_ms (first checks spread over one interval with random
 * jitter, so a large pool is not probed in lock-step), each check bounded
 * by timeout_ms. Nothing blocks: connects are non-blocking and every socket
 * is an ev_io of the loop.
 *
 *   tcp   the connect succeeds
 *   http  connect, send "GET <path>" with Host and Connection: close, read
 *         the status line (at most 4 KiB), pass if the status is within
 *         [status_min, status_max]
 *
 * `rise` consecutive passes turn a DOWN backend UP (up_since_ms = now, for
 * slow start), `fall` consecutive failures turn an UP backend DOWN; both
 * transitions are logged and bump sh->generation. Streaks and totals go to
 * the backend's shared_backend (check_rise, check_fall, checks_ok,
 * checks_failed, last_check). Disabled and draining backends are checked
 * too, so their state is known when they are enabled again.
 *
 * Pools without active checks get their backends marked UP at start: after
 * a reload that turned checks off, nothing else would ever bring a DOWN
 * backend back.
 */
#ifndef SLUICE_CORE_HEALTH_H
#define SLUICE_CORE_HEALTH_H

#include "core/config.h"
#include "core/evloop.h"
#include "core/shared.h"

#define HEALTH_READ_MAX 4096

struct health_checker;

/* Start checking every backend of cfg. cfg and sh must outlive the
 * checker (on reload: health_stop the old one, health_start a new one with
 * the new cfg and region). NULL on out of memory. */
struct health_checker *health_start(struct ev_loop *loop, const struct sl_config *cfg, struct shared_state *sh);

/* Cancel in-flight checks, close their sockets and free the checker. Safe
 * to call from any callback of the same loop; the memory is released once
 * the current batch of events is done (or by ev_loop_free). */
void health_stop(struct health_checker *hc);

#endif
