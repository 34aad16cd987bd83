/* What `sluice proxy` serves, on the master's VIP board
 * (core/vip_board.h), for a companion such as the HA tier to announce.
 *
 * One entry per listener (owner "listener NAME", kind service): its
 * address without the port; healthy and total are the backends of every
 * pool it sends to (its pool:, and for HTTP each route's pool; a pool
 * counted once), as the master knows them from the shared region: active
 * health checks, passive ejection and admin state, so healthy = backends
 * that take new requests now. Serving = the listener's sockets are open
 * and at least one worker of the running configuration holds them; the
 * master closes its copies when a stop begins.
 *
 * A wildcard listener (0.0.0.0, ::) is not published: it names no address
 * a router could be sent to. docs/ha.md says so.
 */
#ifndef SLUICE_PROXY_PROXY_VIPS_H
#define SLUICE_PROXY_PROXY_VIPS_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "core/vip_board.h"
#include "proxy/proxy_conf.h"
#include "proxy/shared.h"

struct proxy_vips_view {
    const struct proxy_conf *pc;
    const struct shared_state *sh;
    const int *fds;          /* [listener * n_workers + slot], -1 = closed */
    const pid_t *pids;       /* [slot], 0 = not running */
    uint32_t n_workers;
    bool stopping;
};

/* Replace the board's "proxy" entries with the view's listeners. */
void proxy_publish_listeners(struct vip_board *b, const struct proxy_vips_view *v);

#endif
