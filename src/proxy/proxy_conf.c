/* The proxy's config section: see proxy_conf.h. Pools are read where they
 * appear; listeners wait until every root key is read (their routes name
 * pools, and they must not take the admin API's address). */
#include "proxy/proxy_conf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/config_walk.h"
#include "core/log_sink.h"
#include "lib/http1.h"
#include "proxy/error_pages.h"
#include "proxy/http2_conf.h"
#include "proxy/proxy_protocol_conf.h"

#define TOKEN_MAX_LEN 256

/* The section's data: the proxy_conf first (proxy_conf() returns it), then
 * what the load needs until the section's check has run. */
struct proxy_conf_state {
    struct proxy_conf conf;
    const struct ynode *listeners;   /* walked last: it refers to pools */
    int listeners_line;
    struct config_name_ref *pool_refs; /* pools sorted by name, to resolve "pool:" */
    size_t n_pool_refs;
};

/* Index of the first pool called `name`, or -1. */
static int lookup_pool(const struct proxy_conf_state *ps, const char *name)
{
    size_t lo = 0, hi = ps->n_pool_refs;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (strcmp(ps->pool_refs[mid].name, name) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo < ps->n_pool_refs && strcmp(ps->pool_refs[lo].name, name) == 0)
        return (int)ps->pool_refs[lo].idx;
    return -1;
}

static bool resolve_pool(struct config_ctx *c, const struct proxy_conf_state *ps, const struct ynode *v,
                         size_t *out)
{
    const char *s = config_scalar(c, v, "a pool name");
    if (!s)
        return false;
    int idx = lookup_pool(ps, s);
    if (idx < 0) {
        config_err_at(c, v->line, "no pool named \"%s\"", config_shown_str(c, s));
        return false;
    }
    *out = (size_t)idx;
    return true;
}

/* ------------------------------------------------------------------------
 * Enum spellings, indexed by the enum values.
 */

static const char *const proto_names[] = {
    [PROTO_HTTP] = "http", [PROTO_TCP] = "tcp", [PROTO_UDP] = "udp", NULL,
};
static const char *const format_names[] = {
    [ACCESS_LOG_COMBINED] = "combined", [ACCESS_LOG_JSON] = "json", NULL,
};

/* ------------------------------------------------------------------------
 * Defaults.
 */

static void pool_defaults(struct cfg_pool *p)
{
    p->algorithm = LB_ROUND_ROBIN;
    p->hash_key = HASH_KEY_CLIENT_IP;
    p->retries = 2;
    p->keepalive = 32;
    p->slow_start_ms = 0;
    hc_conf_defaults(&p->health);
    pool_dyn_conf_defaults(p);
    p->passive = (struct cfg_passive){ .max_fails = 3, .eject_ms = 10 * CONFIG_SECOND,
                                       .max_eject_ms = 300 * CONFIG_SECOND };
}

static void listener_defaults(struct cfg_listener *l)
{
    l->proto = PROTO_HTTP;
    l->timeouts = (struct cfg_timeouts){
        .connect_ms = 3 * CONFIG_SECOND,
        .client_header_ms = 10 * CONFIG_SECOND,
        .idle_ms = 60 * CONFIG_SECOND,
        .upstream_response_ms = 30 * CONFIG_SECOND,
        .udp_session_ms = 30 * CONFIG_SECOND,
        .client_body_ms = 60 * CONFIG_SECOND,
    };
    l->limits = (struct cfg_limits){
        .max_request_line = 8 * CONFIG_KIB,
        .max_header_size = 32 * CONFIG_KIB,
        .max_headers = 100,
        .buffer_size = 16 * CONFIG_KIB,
        .max_connections = 10000,
        .min_body_rate = 1 * CONFIG_KIB,
    };
    l->access_log = NULL;
    l->access_log_format = ACCESS_LOG_COMBINED;
    l->splice = true;
    http2_conf_defaults(&l->http2);
    conn_limit_defaults(&l->conn_limit);
}

static void parse_workers(struct config_ctx *c, const struct ynode *v, struct proxy_conf *pc)
{
    const char *want = "\"auto\" or an integer from 1 to 256";
    const char *s = config_scalar(c, v, want);
    uint32_t n;
    if (!s)
        return;
    if (strcmp(s, "auto") == 0) {
        pc->workers = 0;
        return;
    }
    if (config_parse_u32(s, &n) < 0 || n < 1 || n > 256) {
        config_err_at(c, v->line, "expected %s, got \"%s\"", want, config_shown_str(c, s));
        return;
    }
    pc->workers = n;
}

/* ------------------------------------------------------------------------
 * pools[].passive
 */

struct passive_state {
    struct cfg_passive *p;
    int eject_line, max_eject_line;
};

enum { PK_MAX_FAILS, PK_EJECT_TIME, PK_MAX_EJECT_TIME };
static const char *const passive_keys[] = { "max_fails", "eject_time", "max_eject_time", NULL };

static void passive_field(struct config_ctx *c, int key, const struct ynode *v, void *obj)
{
    struct passive_state *st = obj;
    switch (key) {
    case PK_MAX_FAILS:
        config_get_uint(c, v, 0, 1000, &st->p->max_fails);
        break;
    case PK_EJECT_TIME:
        if (config_get_duration(c, v, 1, 24 * CONFIG_HOUR, &st->p->eject_ms))
            st->eject_line = v->line;
        break;
    case PK_MAX_EJECT_TIME:
        if (config_get_duration(c, v, 1, 24 * CONFIG_HOUR, &st->p->max_eject_ms))
            st->max_eject_line = v->line;
        break;
    }
}

static void parse_passive(struct config_ctx *c, const struct ynode *v, struct cfg_passive *p)
{
    struct passive_state st = { .p = p };
    char buf[16];
    if (!config_walk_map(c, v, passive_keys, passive_field, &st))
        return;
    if (p->max_eject_ms >= p->eject_ms)
        return;
    if (st.max_eject_line)
        config_err_in(c, st.max_eject_line, "max_eject_time", "must not be shorter than eject_time (%s)",
                      config_fmt_ms(buf, sizeof buf, p->eject_ms));
    else
        config_err_in(c, st.eject_line, "eject_time", "must not be longer than max_eject_time (%s)",
                      config_fmt_ms(buf, sizeof buf, p->max_eject_ms));
}

/* ------------------------------------------------------------------------
 * pools[].backends
 */

enum { BK_ADDRESS, BK_WEIGHT };
static const char *const backend_keys[] = { "address", "weight", NULL };

static void backend_address(struct config_ctx *c, const struct ynode *v, struct cfg_backend *b)
{
    struct sl_addr a;
    if (pool_dyn_conf_backend_name(c, v, b))
        return;
    if (!config_get_addr(c, v, &a))
        return;
    if (addr_port(&a) == 0) {
        config_err_at(c, v->line, "port must be a number from 1 to 65535 for a backend");
        return;
    }
    b->addr = a;
}

static void backend_field(struct config_ctx *c, int key, const struct ynode *v, void *obj)
{
    struct cfg_backend *b = obj;
    switch (key) {
    case BK_ADDRESS:
        backend_address(c, v, b);
        break;
    case BK_WEIGHT:
        config_get_uint(c, v, 0, 1000000, &b->weight);
        break;
    }
}

static void parse_backend(struct config_ctx *c, const struct ynode *v, struct cfg_backend *b)
{
    b->weight = 1;
    b->line = v->line;
    if (v->kind == YNODE_SCALAR && !ynode_is_null(v)) {
        /* Shorthand "- 127.0.0.1:9001": errors still name the address. */
        size_t mark = config_path_push(c, ".address");
        backend_address(c, v, b);
        config_path_pop(c, mark);
        return;
    }
    if (v->kind != YNODE_MAP) {
        config_type_error(c, v, "an address or a mapping with \"address\"");
        return;
    }
    config_walk_map(c, v, backend_keys, backend_field, b);
    if (!config_map_has_key(v, "address"))
        config_missing_key(c, v, "address");
}

static void check_duplicate_backends(struct config_ctx *c, const struct cfg_pool *p)
{
    const char **keys = config_xcalloc(p->n_backends, sizeof *keys);
    for (size_t i = 0; i < p->n_backends; i++)
        keys[i] = p->backends[i].addr.len ? p->backends[i].addr.text : NULL;
    size_t *first = config_first_same(keys, p->n_backends);
    for (size_t i = 0; i < p->n_backends; i++) {
        if (first[i] == i)
            continue;
        size_t mark = config_path_push(c, "[%zu]", i);
        config_err_at(c, p->backends[i].line, "duplicate backend %s (first listed on line %d)", keys[i],
                      p->backends[first[i]].line);
        config_path_pop(c, mark);
    }
    free(first);
    free(keys);
}

static void parse_backends(struct config_ctx *c, const struct ynode *v, struct cfg_pool *p)
{
    if (!config_expect_seq(c, v))
        return;
    if (v->n_items == 0) {
        config_err_at(c, v->line, "at least one backend is required");
        return;
    }
    p->backends = config_xcalloc(v->n_items, sizeof *p->backends);
    p->n_backends = v->n_items;
    for (size_t i = 0; i < v->n_items; i++) {
        size_t mark = config_path_push(c, "[%zu]", i);
        parse_backend(c, v->items[i], &p->backends[i]);
        config_path_pop(c, mark);
    }
    check_duplicate_backends(c, p);
}

/* ------------------------------------------------------------------------
 * pools[]
 */

struct pool_state {
    struct cfg_pool *p;
    int name_line;
    int discovery_line;
};

enum {
    POK_NAME, POK_ALGORITHM, POK_HASH_KEY, POK_STICKY_COOKIE, POK_RETRIES, POK_KEEPALIVE,
    POK_SLOW_START, POK_HEALTH_CHECK, POK_PASSIVE, POK_BACKENDS, POK_DISCOVERY, POK_TLS, POK_SEND_PROXY,
    POK_MAX_BACKENDS, POK_RESOLVE,
};
static const char *const pool_keys[] = {
    "name",      "algorithm",  "hash_key",     "sticky_cookie", "retries", "keepalive",
    "slow_start", "health_check", "passive",    "backends",      "discovery", "tls", "send_proxy",
    "max_backends", "resolve", NULL,
};

/* "client_ip" | "uri" | "header:NAME" | "cookie:NAME" */
static void parse_hash_key(struct config_ctx *c, const struct ynode *v, struct cfg_pool *p)
{
    const char *want = "client_ip, uri, header:NAME or cookie:NAME";
    const char *s = config_scalar(c, v, want);
    if (!s)
        return;
    if (strcmp(s, "client_ip") == 0) {
        p->hash_key = HASH_KEY_CLIENT_IP;
    } else if (strcmp(s, "uri") == 0) {
        p->hash_key = HASH_KEY_URI;
    } else if (strncmp(s, "header:", 7) == 0 && http1_is_token(s + 7, TOKEN_MAX_LEN)) {
        p->hash_key = HASH_KEY_HEADER;
        config_set_str(&p->hash_key_name, s + 7);
    } else if (strncmp(s, "cookie:", 7) == 0 && http1_is_token(s + 7, TOKEN_MAX_LEN)) {
        p->hash_key = HASH_KEY_COOKIE;
        config_set_str(&p->hash_key_name, s + 7);
    } else {
        config_err_at(c, v->line, "expected %s, got \"%s\"", want, config_shown_str(c, s));
    }
}

static void pool_field(struct config_ctx *c, int key, const struct ynode *v, void *obj)
{
    struct pool_state *st = obj;
    struct cfg_pool *p = st->p;
    int alg;
    switch (key) {
    case POK_NAME:
        if (config_get_name(c, v, &p->name))
            st->name_line = v->line;
        break;
    case POK_ALGORITHM:
        if (config_get_enum(c, v, lb_algorithm_names, &alg))
            p->algorithm = (enum lb_algorithm)alg;
        break;
    case POK_HASH_KEY:
        parse_hash_key(c, v, p);
        break;
    case POK_STICKY_COOKIE: {
        const char *s = config_scalar(c, v, "a cookie name");
        if (s && !http1_is_token(s, TOKEN_MAX_LEN))
            config_err_at(c, v->line, "expected a cookie name, got \"%s\"", config_shown_str(c, s));
        else if (s)
            config_set_str(&p->sticky_cookie, s);
        break;
    }
    case POK_RETRIES:
        config_get_uint(c, v, 0, 10, &p->retries);
        break;
    case POK_KEEPALIVE:
        config_get_uint(c, v, 0, 10000, &p->keepalive);
        break;
    case POK_SLOW_START:
        config_get_duration(c, v, 0, 24 * CONFIG_HOUR, &p->slow_start_ms);
        break;
    case POK_HEALTH_CHECK:
        hc_conf_parse(c, v, &p->health);
        break;
    case POK_PASSIVE:
        parse_passive(c, v, &p->passive);
        break;
    case POK_BACKENDS:
        parse_backends(c, v, p);
        break;
    case POK_DISCOVERY:
        st->discovery_line = config_key_line(c);
        if (!p->discovery) {
            p->discovery = config_xcalloc(1, sizeof *p->discovery);
            discovery_conf_defaults(p->discovery);
        }
        discovery_conf_parse(c, v, p->discovery);
        break;
    case POK_TLS:
        tls_upstream_parse(c, v, &p->tls);
        break;
    case POK_SEND_PROXY:
        pp_conf_send_proxy(c, v, &p->send_proxy);
        break;
    case POK_MAX_BACKENDS:
        pool_dyn_conf_max_backends(c, v, p);
        break;
    case POK_RESOLVE:
        pool_dyn_conf_resolve(c, v, p);
        break;
    }
}

/* Returns the line of the pool's name (0 if it has none). */
static int parse_pool(struct config_ctx *c, const struct ynode *v, struct cfg_pool *p)
{
    struct pool_state st = { .p = p };
    p->line = v->line;
    if (!config_walk_map(c, v, pool_keys, pool_field, &st))
        return 0;
    if (!config_map_has_key(v, "name"))
        config_missing_key(c, v, "name");
    /* One source of backends: the fixed list or the registry. */
    bool has_backends = config_map_has_key(v, "backends"), has_discovery = config_map_has_key(v, "discovery");
    if (has_backends && has_discovery)
        config_err_in(c, st.discovery_line, "discovery",
                      "a pool takes its backends from \"backends\" or from \"discovery\", not both");
    else if (!has_backends && !has_discovery)
        config_missing_key(c, v, "backends");
    pool_dyn_conf_check(c, v, p);
    return st.name_line;
}

static void check_duplicate_pools(struct config_ctx *c, const struct proxy_conf *cfg, const int *name_lines)
{
    const char **keys = config_xcalloc(cfg->n_pools, sizeof *keys);
    for (size_t i = 0; i < cfg->n_pools; i++)
        keys[i] = cfg->pools[i].name;
    size_t *first = config_first_same(keys, cfg->n_pools);
    for (size_t i = 0; i < cfg->n_pools; i++) {
        if (first[i] == i)
            continue;
        size_t mark = config_path_push(c, "[%zu].name", i);
        config_err_at(c, name_lines[i], "duplicate pool name \"%s\" (first defined on line %d)", keys[i],
                      cfg->pools[first[i]].line);
        config_path_pop(c, mark);
    }
    free(first);
    free(keys);
}

static void parse_pools(struct config_ctx *c, struct proxy_conf *cfg, const struct ynode *v)
{
    if (!config_expect_seq(c, v))
        return;
    cfg->pools = config_xcalloc(v->n_items, sizeof *cfg->pools);
    cfg->n_pools = v->n_items;
    int *name_lines = config_xcalloc(v->n_items, sizeof *name_lines);
    for (size_t i = 0; i < v->n_items; i++) {
        pool_defaults(&cfg->pools[i]);
        size_t mark = config_path_push(c, "[%zu]", i);
        name_lines[i] = parse_pool(c, v->items[i], &cfg->pools[i]);
        config_path_pop(c, mark);
    }
    check_duplicate_pools(c, cfg, name_lines);
    free(name_lines);
}

/* ------------------------------------------------------------------------
 * listeners[].routes
 */

enum { RTK_HOST, RTK_PATH_PREFIX, RTK_POOL, RTK_NAME, RTK_REDIRECT, RTK_RETURN, RTK_REQUEST_HEADERS,
       RTK_RESPONSE_HEADERS, RTK_RATE_LIMITS, RTK_ERROR_PAGES };
static const char *const route_keys[] = {
    "host", "path_prefix", "pool", "name", "redirect", "return", "request_headers", "response_headers", "rate_limits",
    "error_pages", NULL,
};

/* "api.example.com" or "*.example.com": DNS labels, no port. */
static bool valid_host_pattern(const char *s)
{
    bool label_start = true;
    if (strncmp(s, "*.", 2) == 0)
        s += 2;
    if (!*s || strlen(s) > 253)
        return false;
    for (; *s; s++) {
        char ch = *s;
        if (ch == '.') {
            if (label_start)
                return false;
            label_start = true;
            continue;
        }
        if (!config_is_name_char(ch))
            return false;
        label_start = false;
    }
    return !label_start;
}

static void route_host(struct config_ctx *c, const struct ynode *v, struct cfg_route *r)
{
    const char *s = config_scalar(c, v, "a host name");
    if (!s)
        return;
    if (!valid_host_pattern(s)) {
        config_err_at(c, v->line, "expected a host name like \"api.example.com\" or \"*.example.com\", got \"%s\"",
                      config_shown_str(c, s));
        return;
    }
    /* Host names are case-insensitive; store them lowercase so the
     * router can compare bytes. */
    config_set_str(&r->host, s);
    for (char *p = r->host; *p; p++)
        if (*p >= 'A' && *p <= 'Z')
            *p = (char)(*p - 'A' + 'a');
}

/* A route and the pools it may name. */
struct route_walk {
    struct cfg_route *r;
    const struct proxy_conf_state *ps;
    struct cfg_listener *l;     /* its rate_limits, which routes name */
};

static void route_field(struct config_ctx *c, int key, const struct ynode *v, void *obj)
{
    const struct route_walk *rw = obj;
    struct cfg_route *r = rw->r;
    switch (key) {
    case RTK_HOST:
        route_host(c, v, r);
        break;
    case RTK_PATH_PREFIX: {
        const char *s = config_scalar(c, v, "a path starting with \"/\"");
        if (s && (s[0] != '/' || !config_is_visible(s)))
            config_err_at(c, v->line, "expected a path starting with \"/\" and without spaces, got \"%s\"",
                          config_shown_str(c, s));
        else if (s)
            config_set_str(&r->path_prefix, s);
        break;
    }
    case RTK_POOL:
        resolve_pool(c, rw->ps, v, &r->pool);
        break;
    case RTK_RATE_LIMITS:
        parse_route_rate_limits(c, v, rw->l->rate_limits, rw->l->n_rate_limits, &r->rate_limits);
        break;
    case RTK_NAME:
        config_get_name(c, v, &r->name);
        break;
    case RTK_REDIRECT:
        route_redirect_parse(c, v, &r->answer);
        break;
    case RTK_RETURN:
        route_return_parse(c, v, &r->answer);
        break;
    case RTK_REQUEST_HEADERS:
        header_rules_parse(c, v, false, &r->request_headers);
        break;
    case RTK_RESPONSE_HEADERS:
        header_rules_parse(c, v, true, &r->response_headers);
        break;
    case RTK_ERROR_PAGES:
        error_pages_parse(c, v, &r->error_pages);
        break;
    }
}

/* A route goes to a pool, or answers with redirect: or return:, one of them. */
static void check_route_target(struct config_ctx *c, const struct ynode *item, struct cfg_route *r)
{
    int targets = config_map_has_key(item, "pool") + config_map_has_key(item, "redirect") +
                  config_map_has_key(item, "return");
    if (targets == 0)
        config_err_at(c, item->line, "missing required key \"pool\" (or \"redirect\" or \"return\")");
    else if (targets > 1)
        config_err_at(c, item->line, "a route has one of \"pool\", \"redirect\" and \"return\", not several");
    if (!r->name && asprintf(&r->name, "%s%s", r->host ? r->host : "", r->path_prefix) < 0)
        config_oom();
}

/* Two routes with the same host and prefix: the second could never match. */
static void check_duplicate_routes(struct config_ctx *c, const struct cfg_listener *l, const bool *valid)
{
    char **keys = config_xcalloc(l->n_routes, sizeof *keys);
    for (size_t i = 0; i < l->n_routes; i++) {
        const struct cfg_route *r = &l->routes[i];
        if (valid[i] && asprintf(&keys[i], "%s\n%s", r->host ? r->host : "", r->path_prefix) < 0)
            config_oom();
    }
    size_t *first = config_first_same((const char *const *)keys, l->n_routes);
    for (size_t i = 0; i < l->n_routes; i++) {
        if (first[i] == i)
            continue;
        size_t mark = config_path_push(c, "[%zu]", i);
        config_err_at(c, l->routes[i].line, "duplicate route: same host and path_prefix as routes[%zu] (line %d)",
                      first[i], l->routes[first[i]].line);
        config_path_pop(c, mark);
    }
    for (size_t i = 0; i < l->n_routes; i++)
        free(keys[i]);
    free(keys);
    free(first);
}

static void parse_routes(struct config_ctx *c, const struct proxy_conf_state *ps, const struct ynode *v,
                         struct cfg_listener *l)
{
    if (!config_expect_seq(c, v))
        return;
    l->routes = config_xcalloc(v->n_items, sizeof *l->routes);
    l->n_routes = v->n_items;
    /* A route with a bad value holds defaults in its place; comparing it
     * with the others would only add confusing duplicate errors. */
    bool *valid = config_xcalloc(v->n_items, sizeof *valid);
    for (size_t i = 0; i < v->n_items; i++) {
        const struct ynode *item = v->items[i];
        struct cfg_route *r = &l->routes[i];
        size_t mark = config_path_push(c, "[%zu]", i);
        size_t errors_before = config_error_count(c);
        r->line = item->line;
        r->path_prefix = config_xstrdup("/");
        struct route_walk rw = { r, ps, l };
        if (config_walk_map(c, item, route_keys, route_field, &rw))
            check_route_target(c, item, r);
        valid[i] = config_error_count(c) == errors_before;
        config_path_pop(c, mark);
    }
    check_duplicate_routes(c, l, valid);
    free(valid);
}

/* ------------------------------------------------------------------------
 * listeners[].timeouts and listeners[].limits
 */

static const char *const timeout_keys[] = {
    "connect", "client_header", "idle", "upstream_response", "udp_session", "client_body", NULL,
};

static void timeout_field(struct config_ctx *c, int key, const struct ynode *v, void *obj)
{
    struct cfg_timeouts *t = obj;
    uint32_t *fields[] = {
        &t->connect_ms, &t->client_header_ms, &t->idle_ms, &t->upstream_response_ms, &t->udp_session_ms,
        &t->client_body_ms,
    };
    config_get_duration(c, v, 1, 24 * CONFIG_HOUR, fields[key]);
}

struct limits_state {
    struct cfg_limits *lim;
    int request_line_line, header_size_line;
};

enum {
    LIM_MAX_REQUEST_LINE, LIM_MAX_HEADER_SIZE, LIM_MAX_HEADERS, LIM_BUFFER_SIZE, LIM_MAX_CONNECTIONS,
    LIM_MIN_BODY_RATE,
};
static const char *const limit_keys[] = {
    "max_request_line", "max_header_size", "max_headers", "buffer_size", "max_connections", "min_body_rate", NULL,
};

static void limit_field(struct config_ctx *c, int key, const struct ynode *v, void *obj)
{
    struct limits_state *st = obj;
    struct cfg_limits *lim = st->lim;
    switch (key) {
    case LIM_MAX_REQUEST_LINE:
        if (config_get_size(c, v, 256, 1 * CONFIG_MIB, &lim->max_request_line))
            st->request_line_line = v->line;
        break;
    case LIM_MAX_HEADER_SIZE:
        if (config_get_size(c, v, 1 * CONFIG_KIB, 16 * CONFIG_MIB, &lim->max_header_size))
            st->header_size_line = v->line;
        break;
    case LIM_MAX_HEADERS:
        config_get_uint(c, v, 1, 128, &lim->max_headers);
        break;
    case LIM_BUFFER_SIZE:
        config_get_size(c, v, 1 * CONFIG_KIB, 16 * CONFIG_MIB, &lim->buffer_size);
        break;
    case LIM_MAX_CONNECTIONS:
        config_get_uint(c, v, 1, 1000000, &lim->max_connections);
        break;
    case LIM_MIN_BODY_RATE:
        config_get_size(c, v, 0, 1024u * CONFIG_MIB, &lim->min_body_rate);
        break;
    }
}

static void parse_limits(struct config_ctx *c, const struct ynode *v, struct cfg_limits *lim)
{
    struct limits_state st = { .lim = lim };
    char buf[16];
    if (!config_walk_map(c, v, limit_keys, limit_field, &st) || lim->max_header_size >= lim->max_request_line)
        return;
    /* The request line is part of the head, so it can't be the bigger one. */
    if (st.header_size_line)
        config_err_in(c, st.header_size_line, "max_header_size", "must be at least max_request_line (%s)",
                      config_fmt_size(buf, sizeof buf, lim->max_request_line));
    else
        config_err_in(c, st.request_line_line, "max_request_line", "must not be larger than max_header_size (%s)",
                      config_fmt_size(buf, sizeof buf, lim->max_header_size));
}

/* ------------------------------------------------------------------------
 * listeners[]
 */

/* access_log_format: a preset, or a name of log_formats:. */
static void pick_log_format(struct config_ctx *c, const struct ynode *v, const struct proxy_conf *pc,
                            struct cfg_listener *l)
{
    const char *s = config_scalar(c, v, "combined, json or the name of an entry of log_formats");
    if (!s)
        return;
    for (int i = 0; format_names[i]; i++) {
        if (strcmp(s, format_names[i]) == 0) {
            l->access_log_format = (enum log_format)i;
            return;
        }
    }
    const struct cfg_log_format *lf = log_formats_find(pc->log_formats, pc->n_log_formats, s);
    if (!lf) {
        config_err_at(c, v->line, "expected combined, json or a name of log_formats, got \"%s\"",
                      config_shown_str(c, s));
        return;
    }
    l->access_log_format = ACCESS_LOG_CUSTOM;
    l->log_format = lf;
}

struct listener_state {
    const struct proxy_conf_state *ps;
    struct cfg_listener *l;
    int name_line, listen_line, routes_line, underscores_line, tls_line, http2_line, error_pages_line,
        rate_limits_line, conn_limit_line, rules_line, log_format_line;
    const struct ynode *routes; /* parsed once the protocol is known */
    const struct ynode *tls;    /* the same */
    const struct ynode *error_pages; /* the same */
};

enum {
    LK_NAME, LK_LISTEN, LK_PROTOCOL, LK_POOL, LK_ROUTES, LK_TIMEOUTS, LK_LIMITS, LK_ACCESS_LOG,
    LK_ACCESS_LOG_FORMAT, LK_SPLICE, LK_CLIENT_ADDRESS, LK_TOA_MAP, LK_ALLOW_UNDERSCORES, LK_TLS, LK_HTTP2, LK_ERROR_PAGES,
    LK_RATE_LIMITS, LK_CONN_LIMIT, LK_REQUEST_HEADERS, LK_RESPONSE_HEADERS, LK_CLIENT_ADDR_FIRST,
    LK_CLIENT_ADDR_LAST = LK_CLIENT_ADDR_FIRST + PPK_COUNT - 1, LK_COUNT,
};
static const char *const client_address_names[] = { "peer", "toa", NULL };
static const char *const listener_keys[LK_COUNT + 1] = {
    [LK_NAME] = "name",
    [LK_LISTEN] = "listen",
    [LK_PROTOCOL] = "protocol",
    [LK_POOL] = "pool",
    [LK_ROUTES] = "routes",
    [LK_TIMEOUTS] = "timeouts",
    [LK_LIMITS] = "limits",
    [LK_ACCESS_LOG] = "access_log",
    [LK_ACCESS_LOG_FORMAT] = "access_log_format",
    [LK_SPLICE] = "splice",
    [LK_CLIENT_ADDRESS] = "client_address",
    [LK_TOA_MAP] = "toa_map",
    [LK_ALLOW_UNDERSCORES] = "allow_underscores_in_headers",
    [LK_TLS] = "tls",
    [LK_HTTP2] = "http2",
    [LK_ERROR_PAGES] = "error_pages",
    [LK_CLIENT_ADDR_FIRST + PPK_PROXY_PROTOCOL] = "proxy_protocol",
    [LK_CLIENT_ADDR_FIRST + PPK_TRUSTED_PROXIES] = "trusted_proxies",
    [LK_CLIENT_ADDR_FIRST + PPK_X_REAL_IP] = "x_real_ip",
    [LK_CLIENT_ADDR_FIRST + PPK_FORWARDED] = "forwarded",
    [LK_RATE_LIMITS] = "rate_limits",
    [LK_CONN_LIMIT] = "connection_limit",
    [LK_REQUEST_HEADERS] = "request_headers",
    [LK_RESPONSE_HEADERS] = "response_headers",
};

/* access_log: syslog... or journald... (core/log_sink.h). */
static void check_access_log_sink(struct config_ctx *c, int line, const char *spec)
{
    struct log_sink_spec sp;
    char err[256];
    if (log_sink_parse(spec, LOG_SINK_ACCESS, &sp, err, sizeof err) < 0)
        config_err_at(c, line, "%s", err);
}

static void listener_field(struct config_ctx *c, int key, const struct ynode *v, void *obj)
{
    struct listener_state *st = obj;
    struct cfg_listener *l = st->l;
    int e;
    switch (key) {
    case LK_NAME:
        if (config_get_name(c, v, &l->name))
            st->name_line = v->line;
        break;
    case LK_LISTEN:
        if (config_get_addr(c, v, &l->addr))
            st->listen_line = v->line;
        break;
    case LK_PROTOCOL:
        if (config_get_enum(c, v, proto_names, &e))
            l->proto = (enum listener_proto)e;
        break;
    case LK_POOL:
        l->has_default_pool = resolve_pool(c, st->ps, v, &l->default_pool);
        break;
    case LK_ROUTES:
        st->routes = v;
        st->routes_line = config_key_line(c);
        break;
    case LK_TIMEOUTS:
        config_walk_map(c, v, timeout_keys, timeout_field, &l->timeouts);
        break;
    case LK_LIMITS:
        parse_limits(c, v, &l->limits);
        break;
    case LK_ACCESS_LOG:
        if (config_get_text(c, v, "a file path, \"stdout\", \"syslog\", \"journald\" or \"off\"", &l->access_log) &&
            strcmp(l->access_log, "off") == 0)
            config_set_str(&l->access_log, NULL);
        l->access_log_line = v->line;
        if (l->access_log && log_sink_is_spec(l->access_log))
            check_access_log_sink(c, v->line, l->access_log);
        break;
    case LK_ACCESS_LOG_FORMAT:
        st->log_format_line = v->line;
        pick_log_format(c, v, &st->ps->conf, l);
        break;
    case LK_SPLICE:
        config_get_bool(c, v, &l->splice);
        break;
    case LK_CLIENT_ADDRESS:
        if (config_get_enum(c, v, client_address_names, &e))
            l->client_toa = e == 1;
        break;
    case LK_TOA_MAP:
        config_get_text(c, v, "the path of the pinned TOA map", &l->toa_map);
        break;
    case LK_ALLOW_UNDERSCORES:
        if (config_get_bool(c, v, &l->allow_underscores))
            st->underscores_line = config_key_line(c);
        break;
    case LK_TLS:
        st->tls = v;
        st->tls_line = config_key_line(c);
        break;
    case LK_HTTP2:
        st->http2_line = config_key_line(c);
        parse_http2(c, v, &l->http2);
        break;
    case LK_ERROR_PAGES:
        st->error_pages = v;
        st->error_pages_line = config_key_line(c);
        break;
    case LK_RATE_LIMITS:
        st->rate_limits_line = config_key_line(c);
        parse_rate_limits(c, v, &l->rate_limits, &l->n_rate_limits);
        break;
    case LK_CONN_LIMIT:
        st->conn_limit_line = config_key_line(c);
        parse_conn_limit(c, v, &l->conn_limit);
        break;
    case LK_REQUEST_HEADERS:
    case LK_RESPONSE_HEADERS:
        st->rules_line = config_key_line(c);
        header_rules_parse(c, v, key == LK_RESPONSE_HEADERS,
                           key == LK_RESPONSE_HEADERS ? &l->response_headers : &l->request_headers);
        break;
    default: /* proxy_protocol, trusted_proxies, x_real_ip, forwarded */
        pp_conf_listener_field(c, key - LK_CLIENT_ADDR_FIRST, v, &l->client_addr);
        break;
    }
}

/* The listener's and each route's header plans, and whether the request
 * head must be kept for a log line or a response rule. */
static void build_header_plans(struct cfg_listener *l)
{
    header_plan_build(&l->request_headers, NULL, &l->request_plan);
    header_plan_build(&l->response_headers, NULL, &l->response_plan);
    bool keep = l->log_format && http_fmt_uses_request(&l->log_format->fmt);
    keep = keep || header_plan_uses_request(&l->response_plan);
    for (size_t i = 0; i < l->n_routes; i++) {
        struct cfg_route *r = &l->routes[i];
        header_plan_build(&l->request_headers, &r->request_headers, &r->request_plan);
        header_plan_build(&l->response_headers, &r->response_headers, &r->response_plan);
        keep = keep || header_plan_uses_request(&r->response_plan);
    }
    l->keep_request_head = keep;
    l->keep_response_head = l->log_format && l->log_format->fmt.uses_response_headers;
}

/* Rules that involve several keys of one listener. */
static void check_listener(struct config_ctx *c, const struct ynode *v, struct listener_state *st)
{
    struct cfg_listener *l = st->l;
    const struct sl_config *cfg = config_ctx_config(c);
    if (!config_map_has_key(v, "name"))
        config_missing_key(c, v, "name");
    if (!config_map_has_key(v, "listen"))
        config_missing_key(c, v, "listen");
    if (st->routes && l->proto != PROTO_HTTP) {
        config_err_in(c, st->routes_line, "routes", "routes are only allowed on http listeners (protocol is %s)",
                      proto_names[l->proto]);
    } else if (st->routes) {
        size_t mark = config_path_push(c, ".routes");
        parse_routes(c, st->ps, st->routes, l);
        config_path_pop(c, mark);
    }
    if (st->tls && l->proto == PROTO_UDP) {
        config_err_in(c, st->tls_line, "tls", "tls is only for http and tcp listeners (protocol is udp)");
    } else if (st->tls) {
        size_t mark = config_path_push(c, ".tls");
        tls_conf_parse(c, st->tls, l->proto == PROTO_HTTP, &l->tls);
        config_path_pop(c, mark);
    }
    if (st->error_pages && l->proto != PROTO_HTTP) {
        config_err_in(c, st->error_pages_line, "error_pages", "error_pages are only for http listeners (protocol is %s)",
                      proto_names[l->proto]);
    } else if (st->error_pages) {
        size_t mark = config_path_push(c, ".error_pages");
        error_pages_parse(c, st->error_pages, &l->error_pages);
        config_path_pop(c, mark);
    }
    if (l->proto != PROTO_HTTP && !config_map_has_key(v, "pool"))
        config_err_at(c, v->line, "missing required key \"pool\" (a %s listener forwards to one pool)",
                      proto_names[l->proto]);
    if (l->proto == PROTO_HTTP && !config_map_has_key(v, "pool") && l->n_routes == 0)
        config_err_at(c, v->line, "an http listener needs a pool or at least one route");
    if (l->client_toa && l->proto != PROTO_HTTP)
        config_err_at(c, v->line, "client_address: toa is only for http listeners (protocol is %s)",
                      proto_names[l->proto]);
    if (st->underscores_line && l->proto != PROTO_HTTP)
        config_err_in(c, st->underscores_line, "allow_underscores_in_headers",
                      "only for http listeners (protocol is %s)", proto_names[l->proto]);
    if (st->rules_line && l->proto != PROTO_HTTP)
        config_err_at(c, st->rules_line, "header rules are only for http listeners (protocol is %s)",
                      proto_names[l->proto]);
    if (l->proto == PROTO_HTTP)
        build_header_plans(l);
    if (l->log_format && l->proto != PROTO_HTTP)
        config_err_in(c, st->log_format_line, "access_log_format",
                      "a log_formats entry is only for http listeners (protocol is %s; use combined or json)",
                      proto_names[l->proto]);
    if (st->http2_line && l->proto != PROTO_HTTP)
        config_err_in(c, st->http2_line, "http2", "only for http listeners (protocol is %s)", proto_names[l->proto]);
    pp_conf_check_listener(c, v, l);
    if (st->rate_limits_line && l->proto != PROTO_HTTP)
        config_err_in(c, st->rate_limits_line, "rate_limits", "only for http listeners (protocol is %s)",
                      proto_names[l->proto]);
    if (st->conn_limit_line && l->proto == PROTO_UDP)
        config_err_in(c, st->conn_limit_line, "connection_limit", "only for http and tcp listeners (protocol is udp)");
    if (st->listen_line && cfg && cfg->admin_enabled && l->proto != PROTO_UDP && addr_equal(&l->addr, &cfg->admin_addr))
        config_err_in(c, st->listen_line, "listen", "address %s is already used by the admin API (admin.listen)",
                      l->addr.text);
}

static void parse_listener(struct config_ctx *c, const struct ynode *v, struct listener_state *st)
{
    struct cfg_listener *l = st->l;
    listener_defaults(l);
    l->line = v->line;
    if (config_walk_map(c, v, listener_keys, listener_field, st))
        check_listener(c, v, st);
}

/* Names must be unique; so must addresses among listeners that open the
 * same kind of socket (http and tcp both take a TCP port, udp does not). */
static void check_duplicate_listeners(struct config_ctx *c, const struct proxy_conf *cfg,
                                      const struct listener_state *states)
{
    size_t n = cfg->n_listeners;
    const char **names = config_xcalloc(n, sizeof *names);
    char **addrs = config_xcalloc(n, sizeof *addrs);
    for (size_t i = 0; i < n; i++) {
        const struct cfg_listener *l = &cfg->listeners[i];
        names[i] = l->name;
        if (states[i].listen_line &&
            asprintf(&addrs[i], "%s %s", l->proto == PROTO_UDP ? "udp" : "tcp", l->addr.text) < 0)
            config_oom();
    }
    size_t *first_name = config_first_same(names, n);
    size_t *first_addr = config_first_same((const char *const *)addrs, n);
    for (size_t i = 0; i < n; i++) {
        const struct cfg_listener *l = &cfg->listeners[i], *f = &cfg->listeners[first_name[i]];
        if (first_name[i] != i) {
            size_t mark = config_path_push(c, "[%zu].name", i);
            config_err_at(c, states[i].name_line, "duplicate listener name \"%s\" (first defined on line %d)", l->name,
                          f->line);
            config_path_pop(c, mark);
        }
        f = &cfg->listeners[first_addr[i]];
        if (first_addr[i] != i) {
            size_t mark = config_path_push(c, "[%zu].listen", i);
            config_err_at(c, states[i].listen_line, "address %s is already used by listener \"%s\" (line %d)",
                          l->addr.text, f->name ? f->name : "?", f->line);
            config_path_pop(c, mark);
        }
    }
    for (size_t i = 0; i < n; i++)
        free(addrs[i]);
    free(addrs);
    free(names);
    free(first_name);
    free(first_addr);
}

static void parse_listeners(struct config_ctx *c, struct proxy_conf_state *ps, const struct ynode *v)
{
    struct proxy_conf *cfg = &ps->conf;
    if (!config_expect_seq(c, v))
        return;
    cfg->listeners = config_xcalloc(v->n_items, sizeof *cfg->listeners);
    cfg->n_listeners = v->n_items;
    struct listener_state *states = config_xcalloc(v->n_items, sizeof *states);
    for (size_t i = 0; i < v->n_items; i++) {
        size_t mark = config_path_push(c, "[%zu]", i);
        states[i].ps = ps;
        states[i].l = &cfg->listeners[i];
        parse_listener(c, v->items[i], &states[i]);
        config_path_pop(c, mark);
    }
    check_duplicate_listeners(c, cfg, states);
    free(states);
}

/* ------------------------------------------------------------------------
 * The section.
 */

enum { ROOT_WORKERS, ROOT_POOLS, ROOT_LISTENERS, ROOT_DRAIN_TIMEOUT, ROOT_OPENSSL, ROOT_LOG_FORMATS };
static const char *const proxy_root_keys[] = {
    "workers", "pools", "listeners", "drain_timeout", "openssl", "log_formats", NULL,
};

static void *proxy_conf_create(void)
{
    struct proxy_conf_state *ps = config_xcalloc(1, sizeof *ps);
    ps->conf.workers = 0;
    ps->conf.drain_timeout_ms = 30 * CONFIG_SECOND;
    return ps;
}

static void proxy_conf_parse(struct config_ctx *c, void *data, int key, const struct ynode *v)
{
    struct proxy_conf_state *ps = data;
    switch (key) {
    case ROOT_WORKERS:
        parse_workers(c, v, &ps->conf);
        break;
    case ROOT_POOLS:
        parse_pools(c, &ps->conf, v);
        break;
    case ROOT_LISTENERS:
        ps->listeners = v;
        ps->listeners_line = config_key_line(c);
        break;
    case ROOT_DRAIN_TIMEOUT:
        config_get_duration(c, v, 0, 24 * CONFIG_HOUR, &ps->conf.drain_timeout_ms);
        break;
    case ROOT_OPENSSL:
        tls_openssl_parse(c, v, &ps->conf.openssl);
        break;
    case ROOT_LOG_FORMATS:
        log_formats_parse(c, v, &ps->conf.log_formats, &ps->conf.n_log_formats);
        break;
    }
}

static void build_pool_index(struct proxy_conf_state *ps)
{
    const struct proxy_conf *cfg = &ps->conf;
    const char **names = config_xcalloc(cfg->n_pools, sizeof *names);
    for (size_t i = 0; i < cfg->n_pools; i++)
        names[i] = cfg->pools[i].name;
    ps->pool_refs = config_sort_names(names, cfg->n_pools, &ps->n_pool_refs);
    free(names);
}

/* Listeners last, whatever the key order: their routes name pools. */
static void proxy_conf_check(struct config_ctx *c, void *data)
{
    struct proxy_conf_state *ps = data;
    if (!ps->listeners)
        return;
    build_pool_index(ps);
    size_t mark = config_path_push(c, "listeners");
    parse_listeners(c, ps, ps->listeners);
    config_path_pop(c, mark);
    if (ps->conf.n_listeners > 0 && ps->conf.n_pools == 0)
        config_err_in(c, ps->listeners_line, "pools", "at least one pool is required when listeners are defined");
    free(ps->pool_refs);
    ps->pool_refs = NULL;
    ps->n_pool_refs = 0;
    ps->listeners = NULL;
}

static void free_pool(struct cfg_pool *p)
{
    free(p->name);
    free(p->hash_key_name);
    free(p->sticky_cookie);
    hc_conf_free(&p->health);
    pool_dyn_conf_free(p);
    free(p->backends);
    if (p->discovery)
        discovery_conf_free(p->discovery);
    free(p->discovery);
    tls_upstream_conf_free(&p->tls);
}

static void free_listener(struct cfg_listener *l)
{
    free(l->name);
    for (size_t i = 0; i < l->n_routes; i++) {
        free(l->routes[i].host);
        free(l->routes[i].path_prefix);
        free(l->routes[i].name);
        route_answer_free(&l->routes[i].answer);
        header_rules_free(&l->routes[i].request_headers);
        header_rules_free(&l->routes[i].response_headers);
        error_pages_free(l->routes[i].error_pages);
        header_plan_free(&l->routes[i].request_plan);
        header_plan_free(&l->routes[i].response_plan);
    }
    header_rules_free(&l->request_headers);
    header_rules_free(&l->response_headers);
    header_plan_free(&l->request_plan);
    header_plan_free(&l->response_plan);
    free(l->routes);
    free(l->access_log);
    free(l->toa_map);
    tls_conf_free(l->tls);
    error_pages_free(l->error_pages);
    pp_conf_free(&l->client_addr);
    rate_limits_free(l->rate_limits, l->n_rate_limits);
}

static void proxy_conf_free(void *data)
{
    struct proxy_conf_state *ps = data;
    if (!ps)
        return;
    struct proxy_conf *cfg = &ps->conf;
    for (size_t i = 0; i < cfg->n_pools; i++)
        free_pool(&cfg->pools[i]);
    for (size_t i = 0; i < cfg->n_listeners; i++)
        free_listener(&cfg->listeners[i]);
    free(cfg->pools);
    free(cfg->listeners);
    tls_openssl_free(&cfg->openssl);
    log_formats_free(cfg->log_formats, cfg->n_log_formats);
    free(ps->pool_refs);
    free(ps);
}

/* Every listener's access_log, opened as the workers will open it. */
static void proxy_conf_check_files(const struct sl_config *cfg, const void *data, struct config_errors *errs)
{
    const struct proxy_conf *pc = data;
    for (size_t i = 0; i < pc->n_listeners; i++) {
        const struct cfg_listener *l = &pc->listeners[i];
        if (!l->access_log || strcmp(l->access_log, "stdout") == 0 || log_sink_is_spec(l->access_log))
            continue;
        int err = config_probe_append(l->access_log);
        if (err) {
            char key[48];
            snprintf(key, sizeof key, "listeners[%zu].access_log", i);
            config_file_error(errs, cfg, l->access_log_line, key, l->access_log, err);
        }
    }
}

const struct config_section proxy_conf_section = {
    .name = "proxy",
    .keys = proxy_root_keys,
    .create = proxy_conf_create,
    .parse = proxy_conf_parse,
    .check = proxy_conf_check,
    .free = proxy_conf_free,
    .check_files = proxy_conf_check_files,
};

struct proxy_conf *proxy_conf(const struct sl_config *cfg)
{
    struct proxy_conf_state *ps = config_section_data(cfg, &proxy_conf_section);
    return ps ? &ps->conf : NULL;
}

int proxy_conf_pool_index(const struct proxy_conf *pc, const char *name)
{
    for (size_t i = 0; i < pc->n_pools; i++)
        if (pc->pools[i].name && strcmp(pc->pools[i].name, name) == 0)
            return (int)i;
    return -1;
}
