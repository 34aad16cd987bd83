/* The headers that tell a backend who the client is: X-Forwarded-For,
 * and optionally X-Real-IP (listeners[].x_real_ip) and RFC 7239 Forwarded
 * (listeners[].forwarded).
 *
 * The client's own values are believed only when the client (as Sluice
 * sees it, after a PROXY header) is in the listener's trusted_proxies:
 * then X-Forwarded-For and Forwarded are appended to, as a chain of
 * proxies expects. From anyone else they are replaced, so a client
 * cannot put a forged address in front of its own. X-Real-IP is always
 * the client's address. */
#ifndef SLUICE_PROXY_FORWARDED_HEADERS_H
#define SLUICE_PROXY_FORWARDED_HEADERS_H

#include <stdbool.h>
#include <stddef.h>

#include "lib/buffer.h"
#include "lib/http1.h"
#include "proxy/http_carrier.h"

/* A request header field the proxy writes itself (forwarded_headers_put):
 * the request head leaves the client's out. */
bool forwarded_header_is_ours(const struct cfg_listener *cfg, struct http1_slice name);

/* Write the fields, each ending in CRLF, to f. 0, or -1 when f is full. */
int forwarded_headers_put(struct buf *f, const struct http_carrier *cr, const struct http1_message *m);

#endif
