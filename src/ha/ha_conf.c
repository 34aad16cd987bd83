/* The ha: section: see ha_conf.h and docs/ha.md, "Configuration reference". */
#include "ha/ha_conf.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/config_walk.h"

enum {
    HK_NODE, HK_ZONE, HK_PRIORITY, HK_PREEMPT, HK_ASN, HK_ROUTER_ID, HK_NEIGHBORS, HK_BFD, HK_MIN_HEALTHY,
    HK_ANNOUNCE, HK_INTERFACE, HK_BIRD, HK_PROBE,
};
static const char *const ha_keys[] = {
    "node", "zone", "priority", "preempt", "asn", "router_id", "neighbors", "bfd", "min_healthy",
    "announce", "interface", "bird", "probe", NULL,
};

enum { PK_ENABLED, PK_INTERVAL, PK_TIMEOUT, PK_FALL, PK_RISE, PK_HOLD, PK_LEARN_PORTS, PK_SOURCE_PORTS, PK_SOURCE,
       PK_GATEWAY };
static const char *const probe_keys[] = {
    "enabled", "interval", "timeout", "fall", "rise", "hold", "learn_ports", "source_ports", "source", "gateway",
    NULL,
};

enum { NK_ADDRESS, NK_ASN, NK_PORT, NK_PASSWORD, NK_SOURCE, NK_MULTIHOP, NK_HOLD_TIME };
static const char *const neighbor_keys[] = {
    "address", "asn", "port", "password", "source", "multihop", "hold_time", NULL,
};

enum { BK_INTERVAL, BK_MULTIPLIER };
static const char *const bfd_keys[] = { "interval", "multiplier", NULL };

enum { RK_MODE, RK_BINARY, RK_CONTROL_SOCKET, RK_CONFIG_FILE, RK_PID_FILE, RK_LOG_FILE };
static const char *const bird_keys[] = {
    "mode", "binary", "control_socket", "config_file", "pid_file", "log_file", NULL,
};
static const char *const bird_modes[] = { "managed", "external", NULL };

/* 4-byte ASNs (RFC 6793); 0 and 65535/4294967295 are reserved (RFC 7300). */
#define ASN_MIN 1u
#define ASN_MAX 4294967294u
#define BFD_INTERVAL_MIN_MS 10u
#define BFD_INTERVAL_MAX_MS (10u * CONFIG_SECOND)

/* ---- values ------------------------------------------------------------- */

int ha_ip_parse(const char *s, struct ha_ip *out)
{
    struct ha_ip ip = { 0 };
    if (inet_pton(AF_INET, s, &ip.u.v4) == 1)
        ip.family = AF_INET;
    else if (inet_pton(AF_INET6, s, &ip.u.v6) == 1)
        ip.family = AF_INET6;
    else
        return -1;
    if (!inet_ntop(ip.family, &ip.u, ip.text, sizeof ip.text))
        return -1;
    *out = ip;
    return 0;
}

bool ha_ip_equal(const struct ha_ip *a, const struct ha_ip *b)
{
    if (a->family != b->family)
        return false;
    return a->family == AF_INET ? a->u.v4.s_addr == b->u.v4.s_addr
                                : memcmp(&a->u.v6, &b->u.v6, sizeof a->u.v6) == 0;
}

/* Letters, digits, '_', '.', '-': a name the kernel takes and that BIRD's
 * interface patterns read literally (no '*' or '?' wildcards, no quote). */
bool ha_ifname_ok(const char *s, size_t max)
{
    size_t n = strlen(s);
    if (n == 0 || n > max || !strcmp(s, ".") || !strcmp(s, ".."))
        return false;
    for (size_t i = 0; i < n; i++)
        if (!config_is_name_char(s[i]))
            return false;
    return true;
}

static bool get_ip(struct config_ctx *c, const struct ynode *v, const char *want, struct ha_ip *out)
{
    const char *s = config_scalar(c, v, want);
    if (!s)
        return false;
    if (ha_ip_parse(s, out) < 0) {
        config_err_at(c, v->line, "expected %s, got \"%s\"", want, config_shown_str(c, s));
        return false;
    }
    return true;
}

static bool get_asn(struct config_ctx *c, const struct ynode *v, uint32_t *out)
{
    const char *s = config_scalar(c, v, "an AS number");
    uint32_t n;
    if (!s)
        return false;
    if (config_parse_u32(s, &n) < 0 || n < ASN_MIN || n > ASN_MAX || n == 65535) {
        config_err_at(c, v->line, "expected an AS number from 1 to 4294967294 (not 65535), got \"%s\"",
                      config_shown_str(c, s));
        return false;
    }
    *out = n;
    return true;
}

/* A TCP-MD5 key as BIRD's config reads it: a string in double quotes,
 * which has no escapes, so no '"', '\' or control characters. */
static void get_password(struct config_ctx *c, const struct ynode *v, char **dst)
{
    const char *s = config_scalar(c, v, "a password");
    if (!s)
        return;
    size_t n = strlen(s);
    bool ok = n > 0 && n <= HA_PASSWORD_MAX;
    for (size_t i = 0; ok && i < n; i++)
        ok = (unsigned char)s[i] >= 0x20 && s[i] != 0x7f && s[i] != '"' && s[i] != '\\';
    if (!ok) {
        config_err_at(c, v->line, "expected 1 to %d printable characters without '\"' or '\\' (BIRD's config "
                                  "strings have no escapes)", HA_PASSWORD_MAX);
        return;
    }
    config_set_str(dst, s);
}

/* A path BIRD's config can quote (no '"' or control characters). */
static void get_path(struct config_ctx *c, const struct ynode *v, char **dst)
{
    char *s = NULL;
    if (!config_get_text(c, v, "a file path", &s))
        return;
    bool ok = s[0] == '/';
    for (const char *p = s; ok && *p; p++)
        ok = (unsigned char)*p >= 0x20 && *p != 0x7f && *p != '"';
    if (!ok)
        config_err_at(c, v->line, "expected an absolute path without '\"' or control characters, got \"%s\"",
                      config_shown_str(c, s));
    else
        config_set_str(dst, s);
    free(s);
}

/* ---- neighbors ---------------------------------------------------------- */

static void neighbor_field(struct config_ctx *c, int key, const struct ynode *v, void *obj)
{
    struct cfg_ha_neighbor *n = obj;
    switch (key) {
    case NK_ADDRESS:
        get_ip(c, v, "an IP address like 192.0.2.1 (no port: see port)", &n->address);
        break;
    case NK_ASN: get_asn(c, v, &n->asn); break;
    case NK_PORT: config_get_uint(c, v, 1, 65535, &n->port); break;
    case NK_PASSWORD: get_password(c, v, &n->password); break;
    case NK_SOURCE:
        if (get_ip(c, v, "this node's IP address for the session", &n->source))
            n->has_source = true;
        break;
    case NK_MULTIHOP: config_get_uint(c, v, 1, 255, &n->multihop); break;
    case NK_HOLD_TIME: {
        uint32_t ms;
        /* RFC 4271: 0 or at least 3 s; 0 (no keepalives) is not offered. */
        if (!config_get_duration(c, v, 3 * CONFIG_SECOND, 65535 * CONFIG_SECOND, &ms))
            break;
        if (ms % CONFIG_SECOND)
            config_err_at(c, v->line, "a BGP hold time is a whole number of seconds");
        else
            n->hold_time_s = ms / CONFIG_SECOND;
        break;
    }
    }
}

static void neighbor_one(struct config_ctx *c, const struct ynode *item, void *obj)
{
    struct cfg_ha *h = obj;
    struct cfg_ha_neighbor *n = &h->neighbors[h->n_neighbors];
    memset(n, 0, sizeof *n);
    n->port = HA_DEFAULT_BGP_PORT;
    n->line = item->line;
    size_t errors = config_error_count(c);
    if (!config_walk_map(c, item, neighbor_keys, neighbor_field, n))
        return;
    if (!config_map_has_key(item, "address"))
        config_missing_key(c, item, "address");
    if (!config_map_has_key(item, "asn"))
        config_missing_key(c, item, "asn");
    if (n->has_source && n->address.family && n->source.family != n->address.family)
        config_err_in(c, item->line, "source", "%s and the neighbor's address %s are not of the same family",
                      n->source.text, n->address.text);
    if (config_error_count(c) > errors) {
        free(n->password);
        return;
    }
    h->n_neighbors++;
}

/* A list of neighbors: at most HA_MAX_NEIGHBORS. */
static void get_neighbors(struct config_ctx *c, const struct ynode *v, struct cfg_ha *h)
{
    if (!config_expect_seq(c, v))
        return;
    if (v->n_items > HA_MAX_NEIGHBORS) {
        config_err_at(c, v->line, "at most %d neighbors", HA_MAX_NEIGHBORS);
        return;
    }
    for (size_t i = 0; i < v->n_items; i++) {
        size_t mark = config_path_push(c, "[%zu]", i);
        neighbor_one(c, v->items[i], h);
        config_path_pop(c, mark);
    }
}

/* ---- bfd, announce, bird ------------------------------------------------ */

static void bfd_field(struct config_ctx *c, int key, const struct ynode *v, void *obj)
{
    struct cfg_ha *h = obj;
    if (key == BK_INTERVAL)
        config_get_duration(c, v, BFD_INTERVAL_MIN_MS, BFD_INTERVAL_MAX_MS, &h->bfd_interval_ms);
    else
        config_get_uint(c, v, 1, 255, &h->bfd_multiplier);
}

/* bfd: false | true | { interval, multiplier } */
static void get_bfd(struct config_ctx *c, const struct ynode *v, struct cfg_ha *h)
{
    if (v->kind == YNODE_SCALAR && !ynode_is_null(v)) {
        config_get_bool(c, v, &h->bfd);
        return;
    }
    h->bfd = true;
    config_walk_map(c, v, bfd_keys, bfd_field, h);
}

static void announce_one(struct config_ctx *c, const struct ynode *item, void *obj)
{
    struct cfg_ha *h = obj;
    struct ha_ip ip;
    if (!get_ip(c, item, "an IP address like 192.0.2.10", &ip))
        return;
    for (size_t i = 0; i < h->n_announce; i++) {
        if (ha_ip_equal(&h->announce[i], &ip)) {
            config_err_at(c, item->line, "%s is listed twice", ip.text);
            return;
        }
    }
    h->announce[h->n_announce++] = ip;
}

static void get_interface(struct config_ctx *c, const struct ynode *v, struct cfg_ha *h)
{
    const char *s = config_scalar(c, v, "an interface name");
    if (!s)
        return;
    if (!ha_ifname_ok(s, HA_IFNAME_MAX)) {
        config_err_at(c, v->line, "expected an interface name of 1 to %d letters, digits, '_', '.' or '-' (the "
                                  "stand-in device adds \"%s\" within Linux's 15), got \"%s\"", HA_IFNAME_MAX,
                      HA_STANDIN_SUFFIX, config_shown_str(c, s));
        return;
    }
    snprintf(h->interface, sizeof h->interface, "%s", s);
}

static void bird_field(struct config_ctx *c, int key, const struct ynode *v, void *obj)
{
    struct cfg_ha_bird *b = obj;
    int mode;
    switch (key) {
    case RK_MODE:
        if (config_get_enum(c, v, bird_modes, &mode))
            b->mode = (enum ha_bird_mode)mode;
        break;
    case RK_BINARY: get_path(c, v, &b->binary); break;
    case RK_CONTROL_SOCKET: get_path(c, v, &b->control_socket); break;
    case RK_CONFIG_FILE: get_path(c, v, &b->config_file); break;
    case RK_PID_FILE: get_path(c, v, &b->pid_file); break;
    case RK_LOG_FILE: get_path(c, v, &b->log_file); break;
    }
}

static void get_bird(struct config_ctx *c, const struct ynode *v, struct cfg_ha *h)
{
    if (!config_walk_map(c, v, bird_keys, bird_field, &h->bird))
        return;
    if (h->bird.mode != HA_BIRD_EXTERNAL)
        return;
    /* External mode: the operator runs BIRD, with their own pid and log. */
    if (config_map_has_key(v, "pid_file"))
        config_err_in(c, v->line, "pid_file", "only for mode managed (the operator runs BIRD in mode external)");
    if (config_map_has_key(v, "log_file"))
        config_err_in(c, v->line, "log_file", "only for mode managed (the operator's bird.conf says where BIRD "
                                              "logs in mode external)");
    if (config_map_has_key(v, "binary"))
        config_err_in(c, v->line, "binary", "only for mode managed (Sluice does not start BIRD in mode external)");
}

/* ---- probe ------------------------------------------------------------- */

/* "61000-61999" */
static void get_port_range(struct config_ctx *c, const struct ynode *v, struct probe_conf *p)
{
    const char *s = config_scalar(c, v, "a port range like 61000-61999");
    if (!s)
        return;
    unsigned lo, hi;
    int used = 0;
    if (sscanf(s, "%5u-%5u%n", &lo, &hi, &used) != 2 || (size_t)used != strlen(s) || lo == 0 || hi > 65535 ||
        lo > hi) {
        config_err_at(c, v->line, "expected a port range LOW-HIGH with 1 <= LOW <= HIGH <= 65535, got \"%s\"",
                      config_shown_str(c, s));
        return;
    }
    p->port_lo = (uint16_t)lo;
    p->port_hi = (uint16_t)hi;
}

static void set_family_addr(struct config_ctx *c, const struct ynode *item, struct sockaddr_storage *v4,
                            struct sockaddr_storage *v6)
{
    struct ha_ip ip;
    if (!get_ip(c, item, "an IP address (no port)", &ip))
        return;
    struct sockaddr_storage *dst = ip.family == AF_INET ? v4 : v6;
    if (dst->ss_family) {
        config_err_at(c, item->line, "one address per family: %s is the second %s address", ip.text,
                      ip.family == AF_INET ? "IPv4" : "IPv6");
        return;
    }
    memset(dst, 0, sizeof *dst);
    if (ip.family == AF_INET) {
        struct sockaddr_in *a = (struct sockaddr_in *)dst;
        a->sin_family = AF_INET;
        a->sin_addr = ip.u.v4;
    } else {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)dst;
        a->sin6_family = AF_INET6;
        a->sin6_addr = ip.u.v6;
    }
}

/* An address, or a list of at most one address per family. */
static void get_family_addrs(struct config_ctx *c, const struct ynode *v, struct sockaddr_storage *v4,
                             struct sockaddr_storage *v6)
{
    memset(v4, 0, sizeof *v4);
    memset(v6, 0, sizeof *v6);
    if (v->kind != YNODE_SEQ) {
        set_family_addr(c, v, v4, v6);
        return;
    }
    if (v->n_items > 2) {
        config_err_at(c, v->line, "at most two addresses (one IPv4, one IPv6)");
        return;
    }
    for (size_t i = 0; i < v->n_items; i++) {
        size_t mark = config_path_push(c, "[%zu]", i);
        set_family_addr(c, v->items[i], v4, v6);
        config_path_pop(c, mark);
    }
}

static void probe_field(struct config_ctx *c, int key, const struct ynode *v, void *obj)
{
    struct cfg_ha *h = obj;
    struct probe_conf *p = &h->probe;
    switch (key) {
    case PK_ENABLED: config_get_bool(c, v, &h->probe_enabled); break;
    case PK_INTERVAL: config_get_duration(c, v, 100, 3600 * CONFIG_SECOND, &p->interval_ms); break;
    case PK_TIMEOUT: config_get_duration(c, v, 10, 3600 * CONFIG_SECOND, &p->timeout_ms); break;
    case PK_FALL: config_get_uint(c, v, 1, 1000, &p->fall); break;
    case PK_RISE: config_get_uint(c, v, 1, 1000, &p->rise); break;
    case PK_HOLD: config_get_duration(c, v, CONFIG_SECOND, 24 * 3600 * CONFIG_SECOND, &p->hold_ms); break;
    case PK_LEARN_PORTS: config_get_uint(c, v, 0, PROBE_LEARN_MAX, &p->learn_ports); break;
    case PK_SOURCE_PORTS: get_port_range(c, v, p); break;
    case PK_SOURCE: get_family_addrs(c, v, &p->source4, &p->source6); break;
    case PK_GATEWAY: get_family_addrs(c, v, &p->gateway4, &p->gateway6); break;
    }
}

/* The line of key in map (the map's own line when it is not there). */
static int key_line(const struct ynode *map, const char *key)
{
    for (size_t i = 0; map->kind == YNODE_MAP && i < map->n_pairs; i++)
        if (map->pairs[i].key->text && !strcmp(map->pairs[i].key->text, key))
            return map->pairs[i].key->line;
    return map->line;
}

static void get_probe(struct config_ctx *c, const struct ynode *v, struct cfg_ha *h)
{
    size_t errors = config_error_count(c);
    if (!config_walk_map(c, v, probe_keys, probe_field, h) || config_error_count(c) > errors)
        return;
    /* The engine's own rules across keys: its reason is
     * "probe.KEY: why", reported as ha.probe.KEY at KEY's line. */
    const char *why = probe_conf_check(&h->probe);
    if (!why)
        return;
    const char *sep = strstr(why, ": ");
    char key[32] = "";
    if (!strncmp(why, "probe.", 6) && sep && (size_t)(sep - why - 6) < sizeof key) {
        memcpy(key, why + 6, (size_t)(sep - why - 6));
        config_err_in(c, key_line(v, key), key, "%s", sep + 2);
    } else {
        config_err_at(c, v->line, "%s", why);
    }
}

/* The UNIX socket path must fit sun_path. */
#define SUN_PATH_MAX 107

static void ha_field(struct config_ctx *c, int key, const struct ynode *v, void *obj)
{
    struct cfg_ha *h = obj;
    struct ha_ip ip;
    switch (key) {
    case HK_NODE: config_get_name(c, v, &h->node); break;
    case HK_ZONE: config_get_name(c, v, &h->zone); break;
    case HK_PRIORITY: config_get_uint(c, v, 0, HA_PRIORITY_MAX, &h->priority); break;
    case HK_PREEMPT: config_get_bool(c, v, &h->preempt); break;
    case HK_ASN: get_asn(c, v, &h->asn); break;
    case HK_ROUTER_ID:
        if (!get_ip(c, v, "an IPv4 address like 192.0.2.1 (BGP router IDs are 32 bits)", &ip))
            break;
        if (ip.family != AF_INET || ip.u.v4.s_addr == 0)
            config_err_at(c, v->line, "expected an IPv4 address other than 0.0.0.0 (BGP router IDs are 32 bits), "
                                      "got \"%s\"", ip.text);
        else {
            h->router_id = ip.u.v4;
            h->has_router_id = true;
        }
        break;
    case HK_NEIGHBORS: get_neighbors(c, v, h); break;
    case HK_BFD: get_bfd(c, v, h); break;
    case HK_MIN_HEALTHY: config_get_uint(c, v, 1, 1000000, &h->min_healthy); break;
    case HK_ANNOUNCE:
        h->n_announce = 0;
        if (!h->announce)
            h->announce = config_xcalloc(HA_MAX_ANNOUNCE, sizeof *h->announce);
        config_each_item(c, v, HA_MAX_ANNOUNCE, "addresses", announce_one, h);
        break;
    case HK_INTERFACE: get_interface(c, v, h); break;
    case HK_BIRD: get_bird(c, v, h); break;
    case HK_PROBE: get_probe(c, v, h); break;
    }
}

/* Rules across keys, once the section is read. */
static void check_ha(struct config_ctx *c, const struct ynode *v, struct cfg_ha *h)
{
    if (!config_map_has_key(v, "asn"))
        config_missing_key(c, v, "asn");
    if (!config_map_has_key(v, "neighbors"))
        config_missing_key(c, v, "neighbors");
    else if (h->n_neighbors == 0 && config_error_count(c) == 0)
        config_err_in(c, v->line, "neighbors", "give at least one BGP neighbor (a router)");
    for (size_t i = 0; i < h->n_neighbors; i++) {
        for (size_t j = 0; j < i; j++) {
            if (ha_ip_equal(&h->neighbors[i].address, &h->neighbors[j].address)) {
                config_err_in(c, h->neighbors[i].line, "neighbors", "%s is listed twice (items %zu and %zu)",
                              h->neighbors[i].address.text, j, i);
                break;
            }
        }
    }
    /* BIRD: "Multihop BGP with BFD requires specified local address". */
    for (size_t i = 0; h->bfd && i < h->n_neighbors; i++)
        if (h->neighbors[i].multihop && !h->neighbors[i].has_source)
            config_err_in(c, h->neighbors[i].line, "neighbors", "%s: multihop with BFD needs the session's local "
                          "address: give source (or bfd: false)", h->neighbors[i].address.text);
    if (h->announce && h->n_announce == 0 && config_error_count(c) == 0)
        config_err_in(c, v->line, "announce", "give at least one address, or leave announce out to announce "
                                              "every address the serving tier publishes");
    if (strlen(h->bird.control_socket) > SUN_PATH_MAX)
        config_err_in(c, v->line, "bird.control_socket", "at most %d characters (a UNIX socket path)",
                      SUN_PATH_MAX);
    if (!strcmp(h->bird.config_file, h->bird.control_socket) || !strcmp(h->bird.config_file, h->bird.pid_file))
        config_err_in(c, v->line, "bird.config_file", "must differ from bird.control_socket and bird.pid_file");
}

/* ---- the section -------------------------------------------------------- */

static const char *const ha_root_keys[] = { "ha", NULL };

static void *ha_conf_create(void)
{
    struct cfg_ha *h = config_xcalloc(1, sizeof *h);
    h->zone = config_xstrdup(HA_DEFAULT_ZONE);
    h->preempt = true;
    h->bfd = true;
    h->bfd_interval_ms = HA_DEFAULT_BFD_INTERVAL_MS;
    h->bfd_multiplier = HA_DEFAULT_BFD_MULTIPLIER;
    h->min_healthy = 1;
    snprintf(h->interface, sizeof h->interface, "%s", HA_DEFAULT_INTERFACE);
    h->bird.mode = HA_BIRD_MANAGED;
    h->bird.binary = config_xstrdup(HA_DEFAULT_BIRD_BINARY);
    h->bird.control_socket = config_xstrdup(HA_DEFAULT_BIRD_SOCKET);
    h->bird.config_file = config_xstrdup(HA_DEFAULT_BIRD_CONFIG);
    h->bird.pid_file = config_xstrdup(HA_DEFAULT_BIRD_PID);
    probe_conf_defaults(&h->probe);
    return h;
}

static void ha_conf_parse(struct config_ctx *c, void *data, int key, const struct ynode *v)
{
    struct cfg_ha *h = data;
    h->present = true;
    h->line = v->line;
    if (config_walk_map(c, v, ha_keys, ha_field, h))
        check_ha(c, v, h);
}

static void ha_conf_free(void *data)
{
    struct cfg_ha *h = data;
    if (!h)
        return;
    free(h->node);
    free(h->zone);
    for (size_t i = 0; i < h->n_neighbors; i++)
        free(h->neighbors[i].password);
    free(h->announce);
    free(h->bird.binary);
    free(h->bird.control_socket);
    free(h->bird.config_file);
    free(h->bird.pid_file);
    free(h->bird.log_file);
    free(h);
}

const struct config_section ha_conf_section = {
    .name = "ha",
    .keys = ha_root_keys,
    .create = ha_conf_create,
    .parse = ha_conf_parse,
    .free = ha_conf_free,
};

struct cfg_ha *ha_conf(const struct sl_config *cfg)
{
    return config_section_data(cfg, &ha_conf_section);
}

const char *ha_conf_node(const struct cfg_ha *h, char *buf, size_t cap)
{
    if (h->node)
        return h->node;
    if (gethostname(buf, cap) < 0 || !buf[0])
        snprintf(buf, cap, "localhost");
    buf[cap - 1] = '\0';
    return buf;
}

bool ha_conf_may_announce(const struct cfg_ha *h, const struct ha_ip *ip)
{
    if (!h->announce)
        return true;
    for (size_t i = 0; i < h->n_announce; i++)
        if (ha_ip_equal(&h->announce[i], ip))
            return true;
    return false;
}
