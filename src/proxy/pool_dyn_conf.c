/* See pool_dyn_conf.h. */
#include "proxy/pool_dyn_conf.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/proxy_conf.h"

void pool_dyn_conf_defaults(struct cfg_pool *p)
{
    p->max_backends = 0;
    p->resolve = (struct cfg_resolve){ .min_ttl_ms = CONFIG_SECOND, .max_ttl_ms = 5 * CONFIG_MINUTE,
                                       .timeout_ms = 2 * CONFIG_SECOND };
}

void pool_dyn_conf_max_backends(struct config_ctx *c, const struct ynode *v, struct cfg_pool *p)
{
    config_get_uint(c, v, 1, POOL_DYN_MAX_SLOTS, &p->max_backends);
}

enum { RK_RESOLVERS, RK_MIN_TTL, RK_MAX_TTL, RK_TIMEOUT };
static const char *const resolve_keys[] = { "resolvers", "min_ttl", "max_ttl", "timeout", NULL };

static void one_resolver(struct config_ctx *c, const struct ynode *item, void *obj)
{
    struct cfg_resolve *r = obj;
    struct sl_addr a;
    if (!config_get_addr(c, item, &a))
        return;
    if (addr_port(&a) == 0) {
        config_err_at(c, item->line, "a resolver needs a port (53 for DNS)");
        return;
    }
    r->resolvers[r->n_resolvers++] = a;
}

static void resolve_field(struct config_ctx *c, int key, const struct ynode *v, void *obj)
{
    struct cfg_resolve *r = obj;
    switch (key) {
    case RK_RESOLVERS:
        r->n_resolvers = 0;
        config_each_item(c, v, POOL_DYN_MAX_RESOLVERS, "resolvers", one_resolver, r);
        break;
    case RK_MIN_TTL: config_get_duration(c, v, 0, 24 * CONFIG_HOUR, &r->min_ttl_ms); break;
    case RK_MAX_TTL: config_get_duration(c, v, CONFIG_SECOND, 24 * CONFIG_HOUR, &r->max_ttl_ms); break;
    case RK_TIMEOUT: config_get_duration(c, v, 100, 30 * CONFIG_SECOND, &r->timeout_ms); break;
    }
}

void pool_dyn_conf_resolve(struct config_ctx *c, const struct ynode *v, struct cfg_pool *p)
{
    p->resolve.line = v->line;
    if (config_walk_map(c, v, resolve_keys, resolve_field, &p->resolve) &&
        p->resolve.min_ttl_ms > p->resolve.max_ttl_ms)
        config_err_in(c, v->line, "min_ttl", "min_ttl is above max_ttl");
}

/* RFC 1123 host names: labels of letters, digits and '-' (not at either
 * end; '_' tolerated, as service names use it), 1..63 bytes, 253 in all,
 * a final dot allowed. At least one label has a letter, or it would be an
 * address. */
static bool host_name_ok(const char *s, size_t len)
{
    if (len == 0 || len > 254 || (len == 254 && s[253] != '.'))
        return false;
    if (s[len - 1] == '.')
        len--;
    size_t label = 0;
    bool letter = false;
    for (size_t i = 0; i <= len; i++) {
        if (i == len || s[i] == '.') {
            if (label == 0 || label > 63 || s[i - 1] == '-')
                return false;
            label = 0;
            continue;
        }
        unsigned char ch = (unsigned char)s[i];
        if (!isalnum(ch) && ch != '-' && ch != '_')
            return false;
        if (label == 0 && ch == '-')
            return false;
        letter |= isalpha(ch) != 0;
        label++;
    }
    return letter;
}

bool pool_dyn_conf_backend_name(struct config_ctx *c, const struct ynode *v, struct cfg_backend *b)
{
    if (v->kind != YNODE_SCALAR || ynode_is_null(v) || !v->text || v->text[0] == '[')
        return false;
    const char *s = v->text, *colon = strrchr(s, ':');
    if (!colon || colon == s || memchr(s, ':', (size_t)(colon - s)))
        return false;                    /* no port, or an IPv6 address: not a name */
    size_t hlen = (size_t)(colon - s);
    char host[256];
    if (hlen >= sizeof host)
        return false;
    memcpy(host, s, hlen);
    host[hlen] = '\0';
    uint8_t tmp[16];
    if (!strcmp(host, "localhost") || inet_pton(AF_INET, host, tmp) == 1)
        return false;
    if (!host_name_ok(host, hlen)) {
        /* Not an address either: say what a name must be. */
        if (strspn(host, "0123456789.") != hlen)
            config_err_at(c, v->line,
                          "\"%s\" is neither an IP address nor a host name (letters, digits, '-' and dots)",
                          config_shown_str(c, host));
        return strspn(host, "0123456789.") != hlen;
    }
    uint32_t port;
    if (config_parse_u32(colon + 1, &port) < 0 || port == 0 || port > 65535) {
        config_err_at(c, v->line, "port must be a number from 1 to 65535 for a backend");
        return true;
    }
    free(b->host);
    b->host = config_xstrdup(host);
    b->port = (uint16_t)port;
    return true;
}

bool pool_dyn_has_names(const struct cfg_pool *p)
{
    for (size_t i = 0; i < p->n_backends; i++)
        if (p->backends[i].host)
            return true;
    return false;
}

void pool_dyn_conf_check(struct config_ctx *c, const struct ynode *v, struct cfg_pool *p)
{
    bool names = pool_dyn_has_names(p);
    if (p->discovery && (config_map_has_key(v, "max_backends") || p->resolve.line)) {
        config_err_in(c, v->line, config_map_has_key(v, "max_backends") ? "max_backends" : "resolve",
                      "a discovered pool's room is discovery.max_members, and its members come as addresses");
        return;
    }
    if (names && !p->max_backends)
        p->max_backends = POOL_DYN_DEFAULT_SLOTS;
    if (p->max_backends && p->n_backends > p->max_backends)
        config_err_in(c, v->line, "max_backends", "%zu backends are listed, more than max_backends (%u)",
                      p->n_backends, p->max_backends);
}

void pool_dyn_conf_free(struct cfg_pool *p)
{
    for (size_t i = 0; i < p->n_backends; i++) {
        free(p->backends[i].host);
        p->backends[i].host = NULL;
    }
}
