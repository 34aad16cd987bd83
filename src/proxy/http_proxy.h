/* The HTTP/1.1 reverse proxy of a worker. */
#ifndef SLUICE_PROXY_HTTP_PROXY_H
#define SLUICE_PROXY_HTTP_PROXY_H

#include <stddef.h>

#include "proxy/worker.h"

/* The listener socket is readable: accept what the limits allow. */
void http_accept(struct listener_rt *l);
/* Called on every worker tick (100 ms). */
void http_tick(struct worker *w);
/* SIGTERM: no new keep-alive; idle connections close; returns how many
 * client connections are still open. */
size_t http_drain(struct worker *w);
/* Close everything (drain deadline passed, or exit). */
void http_shutdown(struct worker *w);
/* Close the listener's oldest idle client connection, if any, to make
 * room for a new one. Returns 1 if one was closed. */
int http_evict_idle(struct listener_rt *l);

#endif
