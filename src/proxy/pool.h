/* Pools of a worker: backend selection and passive health, shared by
 * every protocol (HTTP, TCP, UDP).
 *
 * The runtime types (struct pool_rt, struct backend_rt) are in worker.h,
 * which the worker fills from the configuration; this file is what a
 * protocol calls to choose a backend and to report how it went. None of
 * these functions allocates on the pick path.
 */
#ifndef SLUICE_PROXY_POOL_H
#define SLUICE_PROXY_POOL_H

#include <stdbool.h>
#include <stdint.h>

#include "lib/addr.h"
#include "proxy/worker.h"

/* Recompute effective weights from the shared region (cheap if unchanged). */
void pool_refresh(struct worker *w, struct pool_rt *p);
/* Pick a backend: -1 when none is available. */
int pool_pick(struct worker *w, struct pool_rt *p, uint64_t key_hash, const uint8_t *exclude);
/* Passive health: a connect failure / 5xx (ok=false) or a good answer (ok=true). */
void backend_report(struct worker *w, struct pool_rt *p, struct backend_rt *b, bool ok);
/* Non-blocking socket + connect to addr. Returns fd (connect may be in
 * progress) or -1 with errno set. */
int upstream_socket_connect(const struct sl_addr *addr, int type);

#endif
