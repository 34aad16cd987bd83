/* The rate and connection limits of a listener: "rate_limits:" (a list)
 * and "connection_limit:" (struct cfg_rate_limit, struct cfg_conn_limit,
 * both in struct cfg_listener), their defaults and their parsers. What they
 * do at run time is proxy/ratelimit.h; the keys are documented in
 * docs/configuration.md (Rate and connection limits).
 */
#ifndef SLUICE_PROXY_RATELIMIT_CONF_H
#define SLUICE_PROXY_RATELIMIT_CONF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/config_walk.h"

#define RL_MAX_LIMITS 8              /* rate_limits per listener */
#define RL_DEFAULT_MAX_KEYS 65536
#define RL_STATUS_CLOSE 0            /* "status: close": close the connection, no answer */

enum rl_key_kind {
    RL_KEY_CLIENT_IP, /* "client_ip": the client's address (after TOA / PROXY protocol) */
    RL_KEY_HEADER,    /* "header:NAME": the value of a request header field */
};

/* One entry of listeners[].rate_limits: a leaky bucket per key (GCRA),
 * drained at `rate`, holding `burst` requests beyond the one it admits. */
struct cfg_rate_limit {
    char *name;                /* the metric's limit label; default "limitN" (N = its index) */
    enum rl_key_kind key;
    char *header;              /* RL_KEY_HEADER: the field's name */
    uint32_t rate;             /* requests per `per_minute ? minute : second` */
    bool per_minute;
    uint64_t interval_ns;      /* 1/rate: the bucket leaks one request per interval */
    uint32_t burst;            /* requests allowed beyond the rate at once; default 0 */
    int status;                /* 400..599, or RL_STATUS_CLOSE; default 429 */
    uint32_t max_keys;         /* the shared table's slots (rounded up to a power of two) */
    bool route_scoped;         /* named by a route's rate_limits: only for the routes that name it */
    int line;
};

/* listeners[].connection_limit: concurrent connections per client address
 * (HAProxy's src_conn_cur, nginx's limit_conn). */
struct cfg_conn_limit {
    uint32_t max;              /* 0 = off */
    uint32_t max_keys;
    int line;
};

void conn_limit_defaults(struct cfg_conn_limit *cl);

/* Walk "rate_limits:" into *out / *n (allocated); problems are reported as
 * listeners[i].rate_limits[j].KEY. */
void parse_rate_limits(struct config_ctx *c, const struct ynode *v, struct cfg_rate_limit **out, size_t *n);
void parse_conn_limit(struct config_ctx *c, const struct ynode *v, struct cfg_conn_limit *cl);
void rate_limits_free(struct cfg_rate_limit *r, size_t n);
/* routes[].rate_limits: a list of names of the listener's rate limits (n
 * of them in `limits`) into the bit set *mask; each limit named is marked
 * route_scoped. */
void parse_route_rate_limits(struct config_ctx *c, const struct ynode *v, struct cfg_rate_limit *limits, size_t n,
                             uint32_t *mask);

/* "10r/s", "600r/m" (nginx's rate syntax; 1..1000000 requests) into
 * *rate and *per_minute. Returns 0, or -1 with *why set. */
int ratelimit_parse_rate(const char *s, uint32_t *rate, bool *per_minute, const char **why);

#endif
