/* listeners[].rate_limits and listeners[].connection_limit: see
 * ratelimit_conf.h. */
#include "proxy/ratelimit_conf.h"

#include <stdlib.h>
#include <string.h>

#define RL_MAX_RATE 1000000u
#define RL_MAX_BURST 1000000u
#define RL_MIN_KEYS 16u
#define RL_MAX_KEYS (16u * 1024 * 1024)

int ratelimit_parse_rate(const char *s, uint32_t *rate, bool *per_minute, const char **why)
{
    uint64_t n = 0;
    size_t i = 0;
    while (s[i] >= '0' && s[i] <= '9') {
        n = n * 10 + (uint64_t)(s[i] - '0');
        if (n > RL_MAX_RATE) {
            *why = "the rate must be 1 to 1000000 requests";
            return -1;
        }
        i++;
    }
    if (i == 0 || (s[i] != 'r' || s[i + 1] != '/') || (s[i + 2] != 's' && s[i + 2] != 'm') || s[i + 3] != '\0') {
        *why = "expected a rate such as 10r/s or 600r/m";
        return -1;
    }
    if (n == 0) {
        *why = "the rate must be 1 to 1000000 requests";
        return -1;
    }
    *rate = (uint32_t)n;
    *per_minute = s[i + 2] == 'm';
    return 0;
}

void conn_limit_defaults(struct cfg_conn_limit *cl)
{
    *cl = (struct cfg_conn_limit){ .max = 0, .max_keys = RL_DEFAULT_MAX_KEYS };
}

/* ---- one rate limit ---- */

enum { RLK_NAME, RLK_KEY, RLK_RATE, RLK_BURST, RLK_STATUS, RLK_MAX_KEYS };
static const char *const rate_limit_keys[] = { "name", "key", "rate", "burst", "status", "max_keys", NULL };

static void parse_key(struct config_ctx *c, const struct ynode *v, enum rl_key_kind *kind, char **header)
{
    const char *s = config_scalar(c, v, "client_ip or header:NAME");
    if (!s)
        return;
    if (strcmp(s, "client_ip") == 0) {
        *kind = RL_KEY_CLIENT_IP;
        return;
    }
    if (strncmp(s, "header:", 7) == 0 && s[7]) {
        for (const char *p = s + 7; *p; p++) {
            /* A field name is a token (RFC 9110 5.1); names are compared
             * case-insensitively, so any spelling will do. */
            if (!config_is_name_char(*p)) {
                config_err_at(c, v->line, "header name \"%s\" is not a valid field name", config_shown_str(c, s + 7));
                return;
            }
        }
        *kind = RL_KEY_HEADER;
        config_set_str(header, s + 7);
        return;
    }
    config_err_at(c, v->line, "expected client_ip or header:NAME, got \"%s\"", config_shown_str(c, s));
}

static void parse_status(struct config_ctx *c, const struct ynode *v, int *status)
{
    const char *s = config_scalar(c, v, "an HTTP status (400-599) or close");
    if (!s)
        return;
    uint32_t n;
    if (strcmp(s, "close") == 0)
        *status = RL_STATUS_CLOSE;
    else if (config_parse_u32(s, &n) == 0 && n >= 400 && n <= 599)
        *status = (int)n;
    else
        config_err_at(c, v->line, "expected an HTTP status (400-599) or close, got \"%s\"", config_shown_str(c, s));
}

static void rate_limit_field(struct config_ctx *c, int key, const struct ynode *v, void *obj)
{
    struct cfg_rate_limit *r = obj;
    const char *s, *why;
    switch (key) {
    case RLK_NAME:
        config_get_name(c, v, &r->name);
        break;
    case RLK_KEY:
        parse_key(c, v, &r->key, &r->header);
        break;
    case RLK_RATE:
        s = config_scalar(c, v, "a rate such as 10r/s or 600r/m");
        if (s && ratelimit_parse_rate(s, &r->rate, &r->per_minute, &why) < 0)
            config_err_at(c, v->line, "%s, got \"%s\"", why, config_shown_str(c, s));
        break;
    case RLK_BURST:
        config_get_uint(c, v, 0, RL_MAX_BURST, &r->burst);
        break;
    case RLK_STATUS:
        parse_status(c, v, &r->status);
        break;
    case RLK_MAX_KEYS:
        config_get_uint(c, v, RL_MIN_KEYS, RL_MAX_KEYS, &r->max_keys);
        break;
    }
}

static void parse_rate_limit(struct config_ctx *c, const struct ynode *v, struct cfg_rate_limit *r)
{
    *r = (struct cfg_rate_limit){ .status = 429, .max_keys = RL_DEFAULT_MAX_KEYS, .line = v->line };
    if (!config_walk_map(c, v, rate_limit_keys, rate_limit_field, r))
        return;
    if (!config_map_has_key(v, "name"))
        config_missing_key(c, v, "name");
    if (!config_map_has_key(v, "rate"))
        config_missing_key(c, v, "rate");
    if (r->rate)
        r->interval_ns = (r->per_minute ? 60000000000ull : 1000000000ull) / r->rate;
}

void parse_rate_limits(struct config_ctx *c, const struct ynode *v, struct cfg_rate_limit **out, size_t *n)
{
    if (!config_expect_seq(c, v))
        return;
    if (v->n_items > RL_MAX_LIMITS) {
        config_err_at(c, v->line, "at most %d rate limits per listener", RL_MAX_LIMITS);
        return;
    }
    struct cfg_rate_limit *r = config_xcalloc(v->n_items + 1, sizeof *r);
    for (size_t i = 0; i < v->n_items; i++) {
        size_t mark = config_path_push(c, "[%zu]", i);
        parse_rate_limit(c, v->items[i], &r[i]);
        for (size_t k = 0; k < i && r[i].name; k++) {
            if (r[k].name && strcmp(r[k].name, r[i].name) == 0) {
                config_err_in(c, r[i].line, "name", "duplicate rate limit name \"%s\" (first defined on line %d)",
                              r[i].name, r[k].line);
                break;
            }
        }
        config_path_pop(c, mark);
    }
    *out = r;
    *n = v->n_items;
}

void rate_limits_free(struct cfg_rate_limit *r, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(r[i].name);
        free(r[i].header);
    }
    free(r);
}

/* ---- routes[].rate_limits ---- */

struct route_limits_walk {
    struct cfg_rate_limit *limits;
    size_t n;
    uint32_t *mask;
};

static void route_limit_name(struct config_ctx *c, const struct ynode *item, void *obj)
{
    struct route_limits_walk *w = obj;
    const char *s = config_scalar(c, item, "the name of one of the listener's rate_limits");
    if (!s)
        return;
    for (size_t k = 0; k < w->n; k++) {
        if (w->limits[k].name && strcmp(w->limits[k].name, s) == 0) {
            *w->mask |= 1u << k;
            w->limits[k].route_scoped = true;
            return;
        }
    }
    config_err_at(c, item->line, "no rate limit named \"%s\" in the listener's rate_limits", config_shown_str(c, s));
}

void parse_route_rate_limits(struct config_ctx *c, const struct ynode *v, struct cfg_rate_limit *limits, size_t n,
                             uint32_t *mask)
{
    struct route_limits_walk w = { limits, n, mask };
    config_each_item(c, v, RL_MAX_LIMITS, "rate limits", route_limit_name, &w);
}

/* ---- connection_limit ---- */

enum { CLK_KEY, CLK_MAX, CLK_MAX_KEYS };
static const char *const conn_limit_keys[] = { "key", "max", "max_keys", NULL };

static void conn_limit_field(struct config_ctx *c, int key, const struct ynode *v, void *obj)
{
    struct cfg_conn_limit *cl = obj;
    const char *s;
    switch (key) {
    case CLK_KEY:
        /* Only the address: a connection has no request header yet. */
        s = config_scalar(c, v, "client_ip");
        if (s && strcmp(s, "client_ip") != 0)
            config_err_at(c, v->line, "expected client_ip (connections are counted per client address), got \"%s\"",
                          config_shown_str(c, s));
        break;
    case CLK_MAX:
        config_get_uint(c, v, 1, 1000000, &cl->max);
        break;
    case CLK_MAX_KEYS:
        config_get_uint(c, v, RL_MIN_KEYS, RL_MAX_KEYS, &cl->max_keys);
        break;
    }
}

void parse_conn_limit(struct config_ctx *c, const struct ynode *v, struct cfg_conn_limit *cl)
{
    cl->line = v->line;
    if (config_walk_map(c, v, conn_limit_keys, conn_limit_field, cl) && !config_map_has_key(v, "max"))
        config_missing_key(c, v, "max");
}
