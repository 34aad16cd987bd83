/* Where the limits of proxy/ratelimit.h meet the traffic: each request of
 * an http listener (HTTP/1, and each HTTP/2 stream) against its
 * rate_limits, each new connection of an http or tcp listener against its
 * connection_limit, and their counters in /metrics. */
#ifndef SLUICE_PROXY_RATELIMIT_HTTP_H
#define SLUICE_PROXY_RATELIMIT_HTTP_H

#include <stdbool.h>

#include "lib/http1.h"
#include "lib/strbuf.h"
#include "proxy/ratelimit.h"
#include "proxy/shared.h"
#include "proxy/worker.h"

struct http_txn;

/* The request's head m is complete: check it against the listener's rate
 * limits, in order. True if one refused it: the answer (the limit's status
 * with Retry-After, or a close) is under way and logged, and the
 * transaction is over. */
bool ratelimit_refuse_request(struct http_txn *t, const struct http1_message *m);

/* A connection from client_ip (text) was accepted on l: true if it may
 * stay (with *hold to release when it closes; nothing held without a
 * connection_limit), false if it is over the limit (counted and logged:
 * close it). */
bool ratelimit_conn_admit(struct listener_rt *l, const char *client_ip, struct rl_hold *hold);

/* sluice_ratelimit_* and sluice_connlimit_* of every listener. */
void ratelimit_metrics(struct strbuf *out, const struct proxy_conf *cfg, const struct shared_state *sh);

#endif
