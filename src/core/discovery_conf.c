/* The discovery: block, the same wherever a tier puts it: see
 * discovery_conf.h. */
#include "core/discovery_conf.h"

#include <stdlib.h>
#include <string.h>

#include "lib/addr.h"

void discovery_conf_defaults(struct cfg_discovery *d)
{
    *d = (struct cfg_discovery){ .max_members = DISCOVERY_MAX_MEMBERS_DEFAULT };
}

void discovery_conf_free(struct cfg_discovery *d)
{
    free(d->service);
    free(d->registries);
    free(d->datacenter);
    free(d->region);
    free(d->cache_dir);
    free(d->failover_dir);
    discovery_conf_defaults(d);
}

static bool copy_str(char **dst, const char *src)
{
    *dst = src ? strdup(src) : NULL;
    return !src || *dst;
}

int discovery_conf_copy(struct cfg_discovery *dst, const struct cfg_discovery *src)
{
    *dst = *src;
    bool ok = copy_str(&dst->service, src->service);
    ok &= copy_str(&dst->registries, src->registries);
    ok &= copy_str(&dst->datacenter, src->datacenter);
    ok &= copy_str(&dst->region, src->region);
    ok &= copy_str(&dst->cache_dir, src->cache_dir);
    ok &= copy_str(&dst->failover_dir, src->failover_dir);
    if (!ok) {
        discovery_conf_free(dst);
        return -1;
    }
    return 0;
}

static bool same_text(const char *a, const char *b)
{
    return strcmp(a ? a : "", b ? b : "") == 0;
}

bool discovery_conf_same_client(const struct cfg_discovery *a, const struct cfg_discovery *b)
{
    return same_text(a->registries, b->registries) && same_text(a->datacenter, b->datacenter) &&
           same_text(a->region, b->region) && same_text(a->cache_dir, b->cache_dir) &&
           same_text(a->failover_dir, b->failover_dir);
}

bool discovery_conf_equal(const struct cfg_discovery *a, const struct cfg_discovery *b)
{
    return discovery_conf_same_client(a, b) && same_text(a->service, b->service) &&
           a->max_members == b->max_members;
}

/* ------------------------------------------------------------------------
 * Reading it.
 */

enum { DK_SERVICE, DK_REGISTRIES, DK_DATACENTER, DK_REGION, DK_CACHE_DIR, DK_FAILOVER_DIR, DK_MAX_MEMBERS };
static const char *const discovery_keys[] = {
    "service", "registries", "datacenter", "region", "cache_dir", "failover_dir", "max_members", NULL,
};

/* A DNS host name: labels of letters, digits and '-', dot separated. */
static bool is_host_name(const char *s, size_t len)
{
    if (len == 0 || len > 253)
        return false;
    for (size_t i = 0; i < len; i++) {
        char ch = s[i];
        bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '-' ||
                  (ch == '.' && i > 0 && s[i - 1] != '.');
        if (!ok)
            return false;
    }
    return true;
}

/* "HOST:PORT" or "http://HOST:PORT", HOST an IP literal ("[::1]" for v6)
 * or a host name, PORT 1..65535. */
static bool valid_registry(const char *s)
{
    const char *hp = strncmp(s, "http://", 7) == 0 ? s + 7 : s;
    struct sl_addr a;
    const char *why;
    if (addr_parse(hp, &a, &why) == 0)
        return addr_port(&a) != 0;
    const char *colon = strrchr(hp, ':');
    if (!colon || !is_host_name(hp, (size_t)(colon - hp)))
        return false;
    uint32_t port;
    return config_parse_u32(colon + 1, &port) == 0 && port >= 1 && port <= 65535;
}

static void registry_item(struct config_ctx *c, const struct ynode *v, struct cfg_discovery *d)
{
    const char *want = "a registry address HOST:PORT or http://HOST:PORT";
    const char *s = config_scalar(c, v, want);
    if (!s)
        return;
    if (!valid_registry(s)) {
        config_err_at(c, v->line, "expected %s, got \"%s\"", want, config_shown_str(c, s));
        return;
    }
    size_t old = d->registries ? strlen(d->registries) : 0;
    char *joined = config_xcalloc(old + strlen(s) + 2, 1);
    if (old)
        memcpy(joined, d->registries, old), joined[old++] = ',';
    strcpy(joined + old, s);
    free(d->registries);
    d->registries = joined;
    d->n_registries++;
}

/* A list of addresses, or one address alone. */
static void parse_registries(struct config_ctx *c, const struct ynode *v, struct cfg_discovery *d)
{
    free(d->registries);
    d->registries = NULL;
    d->n_registries = 0;
    if (v->kind == YNODE_SCALAR && !ynode_is_null(v)) {
        registry_item(c, v, d);
        return;
    }
    if (!config_expect_seq(c, v))
        return;
    if (v->n_items == 0) {
        config_err_at(c, v->line, "at least one registry address is required");
        return;
    }
    if (v->n_items > DISCOVERY_MAX_REGISTRIES) {
        config_err_at(c, v->line, "at most %u registry addresses", DISCOVERY_MAX_REGISTRIES);
        return;
    }
    for (size_t i = 0; i < v->n_items; i++) {
        size_t mark = config_path_push(c, "[%zu]", i);
        registry_item(c, v->items[i], d);
        config_path_pop(c, mark);
    }
}

static void discovery_field(struct config_ctx *c, int key, const struct ynode *v, void *obj)
{
    struct cfg_discovery *d = obj;
    switch (key) {
    case DK_SERVICE:
        config_get_name(c, v, &d->service);
        break;
    case DK_REGISTRIES:
        parse_registries(c, v, d);
        break;
    case DK_DATACENTER:
        config_get_name(c, v, &d->datacenter);
        break;
    case DK_REGION:
        config_get_name(c, v, &d->region);
        break;
    case DK_CACHE_DIR:
        config_get_text(c, v, "a directory path", &d->cache_dir);
        break;
    case DK_FAILOVER_DIR:
        config_get_text(c, v, "a directory path", &d->failover_dir);
        break;
    case DK_MAX_MEMBERS:
        config_get_uint(c, v, 1, DISCOVERY_MAX_MEMBERS_LIMIT, &d->max_members);
        break;
    }
}

void discovery_conf_parse(struct config_ctx *c, const struct ynode *v, struct cfg_discovery *d)
{
    d->line = v->line;
    if (!config_walk_map(c, v, discovery_keys, discovery_field, d))
        return;
    if (!config_map_has_key(v, "service"))
        config_missing_key(c, v, "service");
    /* Without a registry, only a failover directory can feed the list
     * (a cache alone would never change). */
    if (!config_map_has_key(v, "registries") && !config_map_has_key(v, "failover_dir"))
        config_err_at(c, v->line, "missing required key \"registries\" (or a failover_dir to take the list from)");
}
