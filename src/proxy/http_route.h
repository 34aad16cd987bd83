/* Where an HTTP request goes: routing by host and path prefix, and the
 * keys that consistent hashing and stickiness read from a request.
 * Pure functions of the parsed request and the configuration. */
#ifndef SLUICE_PROXY_HTTP_ROUTE_H
#define SLUICE_PROXY_HTTP_ROUTE_H

#include <stdbool.h>
#include <stdint.h>

#include "proxy/proxy_conf.h"
#include "lib/http1.h"

/* The host a request is for: the authority of an absolute-form target
 * wins over the Host header (RFC 9112 §3.2.2), as it does at the backend,
 * so that routing and the backend never disagree about it. */
struct http1_slice http_request_host(const struct http1_message *m);

/* The origin-form part of the target: the path and query of an
 * absolute-form target (possibly empty), else the target itself. */
struct http1_slice http_request_path(const struct http1_message *m);

/* The pool for a request: among matching routes the most specific host
 * (exact, then *.wildcard, then any), then the longest path prefix, then
 * config order; else the listener's pool; -1 when nothing matches. */
int http_route(const struct cfg_listener *l, const struct http1_message *m);
/* The same choice as an index into l->routes: -1 when no route matches
 * (the listener's pool, if any, takes the request). */
int http_route_index(const struct cfg_listener *l, const struct http1_message *m);

/* Does a "*.example.com" or "example.com" pattern match this Host value
 * (compared without its port, case-insensitively)? */
bool http_host_matches(const char *pattern, struct http1_slice host);

/* The value of cookie `name` in the request's Cookie headers. */
bool http_find_cookie(const struct http1_message *m, const char *name, struct http1_slice *out);

/* The consistent-hash key of a request for this pool (client IP, URI,
 * header or cookie; the client IP when the header or cookie is absent). */
uint64_t http_key_hash(const struct cfg_pool *pc, const struct http1_message *m, const char *client_ip);

#endif
