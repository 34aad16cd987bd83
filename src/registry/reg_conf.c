/* The registry: section and the API bodies read with the same walker:
 * see reg_conf.h. */
#include "registry/reg_conf.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/config_walk.h"
#include "core/dns_conf.h"
#include "core/health_conf.h"
#include "core/secret_file.h"
#include "registry/reg_dns.h"
#include "registry/reg_subnet.h"

#define TOKEN_FILE_MAX 4096
#define DEFAULT_DATA_DIR "/var/lib/sluice/registry"

static const char *const store_names[] = { "embedded", "etcd", NULL };

const char *reg_store_kind_name(enum reg_store_kind k)
{
    return k == REG_STORE_ETCD ? "etcd" : "embedded";
}

/* ---- values ------------------------------------------------------------ */

/* A number from lo to hi ("0.5", "1", "0"), for ratios. */
static bool get_ratio(struct config_ctx *c, const struct ynode *v, double lo, double hi, double *out)
{
    char want[64];
    snprintf(want, sizeof want, "a number from %g to %g", lo, hi);
    const char *s = config_scalar(c, v, want);
    if (!s)
        return false;
    char *end = NULL;
    errno = 0;
    double d = *s && !isspace((unsigned char)*s) ? strtod(s, &end) : NAN;
    if (!end || *end || errno || !isfinite(d) || d < lo || d > hi) {
        config_err_at(c, v->line, "expected %s, got \"%s\"", want, config_shown_str(c, s));
        return false;
    }
    *out = d;
    return true;
}

/* A bare IP address into an sl_addr with port 0. */
static bool get_ip(struct config_ctx *c, const struct ynode *v, struct sl_addr *out)
{
    const char *s = config_scalar(c, v, "an IP address");
    if (!s)
        return false;
    struct sl_addr a = { 0 };
    struct sockaddr_in *v4 = (struct sockaddr_in *)&a.ss;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&a.ss;
    if (inet_pton(AF_INET, s, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        a.len = sizeof *v4;
    } else if (inet_pton(AF_INET6, s, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        a.len = sizeof *v6;
    } else {
        config_err_at(c, v->line, "expected an IPv4 or IPv6 address without a port, got \"%s\"",
                      config_shown_str(c, s));
        return false;
    }
    *out = a;
    return true;
}

/* The address's port, and its canonical text ("10.0.0.1:80", "[::1]:80"). */
static void addr_set_port(struct sl_addr *a, uint16_t port)
{
    char ip[INET6_ADDRSTRLEN];
    addr_ip_string((const struct sockaddr *)&a->ss, ip, sizeof ip);
    if (a->ss.ss_family == AF_INET6) {
        ((struct sockaddr_in6 *)&a->ss)->sin6_port = htons(port);
        snprintf(a->text, sizeof a->text, "[%s]:%u", ip, (unsigned)port);
    } else {
        ((struct sockaddr_in *)&a->ss)->sin_port = htons(port);
        snprintf(a->text, sizeof a->text, "%s:%u", ip, (unsigned)port);
    }
}

/* A string copied into *dst (any printable text; the model checks names). */
static bool get_string(struct config_ctx *c, const struct ynode *v, const char *want, char **dst)
{
    const char *s = config_scalar(c, v, want);
    if (!s)
        return false;
    config_set_str(dst, s);
    return true;
}

/* SOA timers in seconds: "1h", "10m", "30s", "1d", "1w". */
static bool get_seconds(struct config_ctx *c, const struct ynode *v, uint32_t *out)
{
    const char *s = config_scalar(c, v, "a duration");
    if (!s)
        return false;
    size_t n = strlen(s);
    uint32_t num, ms;
    char digits[16];
    if (n > 1 && n < sizeof digits && (s[n - 1] == 'd' || s[n - 1] == 'w')) {
        memcpy(digits, s, n - 1);
        digits[n - 1] = '\0';
        uint32_t unit = s[n - 1] == 'd' ? 86400u : 604800u;
        if (config_parse_u32(digits, &num) == 0 && num <= UINT32_MAX / unit) {
            *out = num * unit;
            return true;
        }
    } else if (config_parse_duration_ms(s, &ms) == 0 && ms >= 1000 && ms % 1000 == 0) {
        *out = ms / 1000;
        return true;
    }
    config_err_at(c, v->line, "expected a whole number of seconds as \"30s\", \"10m\", \"1h\", \"1d\" or \"1w\", "
                              "got \"%s\"", config_shown_str(c, s));
    return false;
}

/* A domain name, lower-cased, with its final dot: "sluice.test." */
static bool get_domain(struct config_ctx *c, const struct ynode *v, char *dst, size_t cap)
{
    const char *s = config_scalar(c, v, "a domain name");
    if (!s)
        return false;
    size_t n = strlen(s);
    char buf[REG_CONF_DNS_NAME_MAX + 2];
    bool ok = n > 0 && n < sizeof buf - 1 && n + 2 <= cap && s[0] != '.';
    size_t label = 0;
    for (size_t i = 0; ok && i < n; i++) {
        char ch = (char)tolower((unsigned char)s[i]);
        buf[i] = ch;
        if (ch == '.') {
            ok = label > 0;
            label = 0;
        } else {
            ok = (isalnum((unsigned char)ch) || ch == '-' || ch == '_') && ++label <= 63;
        }
    }
    if (ok && buf[n - 1] != '.')
        buf[n++] = '.';
    if (!ok || n > 254) {
        config_err_at(c, v->line, "expected a domain name like sluice.test. (labels of 1 to 63 letters, digits, "
                                  "'-' or '_'), got \"%s\"", config_shown_str(c, s));
        return false;
    }
    buf[n] = '\0';
    memcpy(dst, buf, n + 1);
    return true;
}

/* ---- instances --------------------------------------------------------- */

enum { IK_ID, IK_ADDRESS, IK_PORT, IK_WEIGHT, IK_DATACENTER, IK_REGION, IK_LABELS, IK_ENABLED, IK_EPHEMERAL };
static const char *const instance_keys[] = { "id",     "address", "port",    "weight",    "datacenter",
                                             "region", "labels",  "enabled", "ephemeral", NULL };

struct instance_state {
    struct cfg_reg_instance *inst;
    bool from_api;
    bool has_address, has_port;
    uint32_t port;
};

static void parse_labels(struct config_ctx *c, const struct ynode *v, struct cfg_reg_instance *inst)
{
    if (!config_expect_map(c, v) || v->kind != YNODE_MAP)
        return;
    if (v->n_pairs > REG_LABELS_MAX) {
        config_err_at(c, v->line, "at most %d labels", REG_LABELS_MAX);
        return;
    }
    inst->labels = config_xcalloc(v->n_pairs ? v->n_pairs : 1, sizeof *inst->labels);
    for (size_t i = 0; i < v->n_pairs; i++) {
        const struct ynode *k = v->pairs[i].key, *val = v->pairs[i].value;
        const char *ks = config_scalar(c, k, "a label name");
        if (!ks)
            continue;
        size_t mark = config_path_push(c, ".%s", config_shown_str(c, ks));
        char *vs = NULL;
        if (get_string(c, val, "a label value (a string)", &vs)) {
            inst->labels[inst->n_labels].key = config_xstrdup(ks);
            inst->labels[inst->n_labels].value = vs;
            inst->n_labels++;
        }
        config_path_pop(c, mark);
    }
}

static void instance_field(struct config_ctx *c, int key, const struct ynode *v, void *obj)
{
    struct instance_state *st = obj;
    struct cfg_reg_instance *inst = st->inst;
    switch (key) {
    case IK_ID:
        get_string(c, v, "an instance id (a string)", &inst->id);
        break;
    case IK_ADDRESS:
        st->has_address = get_ip(c, v, &inst->addr);
        break;
    case IK_PORT:
        st->has_port = config_get_uint(c, v, 1, 65535, &st->port);
        break;
    case IK_WEIGHT:
        config_get_uint(c, v, 0, REG_WEIGHT_MAX, &inst->weight);
        break;
    case IK_DATACENTER:
        get_string(c, v, "a datacenter name", &inst->datacenter);
        break;
    case IK_REGION:
        get_string(c, v, "a region name", &inst->region);
        break;
    case IK_LABELS:
        parse_labels(c, v, inst);
        break;
    case IK_ENABLED:
        config_get_bool(c, v, &inst->enabled);
        break;
    case IK_EPHEMERAL:
        if (!st->from_api) {
            config_err_at(c, v->line, "instances of the file are persistent; ephemeral instances register "
                                      "themselves through the API");
            break;
        }
        config_get_bool(c, v, &inst->ephemeral);
        break;
    }
}

void reg_conf_instance_spec(const struct cfg_reg_instance *inst, struct reg_instance_spec *out)
{
    *out = (struct reg_instance_spec){
        .id = inst->id, .addr = inst->addr, .weight = inst->weight, .datacenter = inst->datacenter,
        .region = inst->region, .labels = inst->labels, .n_labels = inst->n_labels, .enabled = inst->enabled,
        .ephemeral = inst->ephemeral,
    };
}

void reg_conf_instance_free(struct cfg_reg_instance *inst)
{
    free(inst->id);
    free(inst->datacenter);
    free(inst->region);
    for (uint32_t i = 0; i < inst->n_labels; i++) {
        free(inst->labels[i].key);
        free(inst->labels[i].value);
    }
    free(inst->labels);
    memset(inst, 0, sizeof *inst);
}

static void parse_instance(struct config_ctx *c, const struct ynode *v, struct cfg_reg_instance *inst, bool from_api)
{
    *inst = (struct cfg_reg_instance){ .weight = REG_WEIGHT_DEFAULT, .enabled = true, .line = v->line };
    struct instance_state st = { .inst = inst, .from_api = from_api };
    if (!config_walk_map(c, v, instance_keys, instance_field, &st))
        return;
    if (!st.has_address && !config_map_has_key(v, "address"))
        config_missing_key(c, v, "address");
    if (!st.has_port && !config_map_has_key(v, "port"))
        config_missing_key(c, v, "port");
    if (!st.has_address || !st.has_port)
        return;
    addr_set_port(&inst->addr, (uint16_t)st.port);
    struct reg_instance_spec spec;
    reg_conf_instance_spec(inst, &spec);
    char why[256];
    if (reg_instance_spec_check(&spec, why, sizeof why) < 0)
        config_err_at(c, v->line, "%s", why);
}

/* ---- service settings -------------------------------------------------- */

enum { SK_NAME, SK_PROTECT, SK_LOCALITY, SK_TTL, SK_ANSWER_COUNT, SK_HEARTBEAT, SK_HEALTH, SK_INSTANCES };
static const char *const service_keys[] = { "name",         "protect_threshold", "locality", "dns_ttl",
                                            "answer_count", "heartbeat",         "health",   "instances",
                                            NULL };
/* An API body: the same without name and instances. */
static const char *const settings_keys[] = { "protect_threshold", "locality", "dns_ttl", "answer_count",
                                             "heartbeat",         "health",   NULL };
static const int settings_key_ids[] = { SK_PROTECT, SK_LOCALITY, SK_TTL, SK_ANSWER_COUNT, SK_HEARTBEAT, SK_HEALTH };

enum { LK_MIN_HEALTHY, LK_MIN_RATIO };
static const char *const locality_keys[] = { "min_healthy", "min_healthy_ratio", NULL };
enum { HK_INTERVAL, HK_TIMEOUT, HK_EXPIRE };
static const char *const heartbeat_keys[] = { "interval", "timeout", "expire_after", NULL };

static void locality_field(struct config_ctx *c, int key, const struct ynode *v, void *obj)
{
    struct reg_locality *l = obj;
    if (key == LK_MIN_HEALTHY)
        config_get_uint(c, v, 0, 1000000, &l->min_healthy);
    else
        get_ratio(c, v, 0, 1, &l->min_healthy_ratio);
}

static void heartbeat_field(struct config_ctx *c, int key, const struct ynode *v, void *obj)
{
    struct reg_service_settings *s = obj;
    uint32_t *dst = key == HK_INTERVAL ? &s->heartbeat_interval_ms
                  : key == HK_TIMEOUT  ? &s->heartbeat_timeout_ms
                                       : &s->expire_after_ms;
    config_get_duration(c, v, 100, 24 * CONFIG_HOUR, dst);
}

struct service_state {
    struct cfg_reg_service *svc;
    struct reg_service_settings *settings;
};

static void parse_instances(struct config_ctx *c, const struct ynode *v, struct cfg_reg_service *svc)
{
    if (!config_expect_seq(c, v) || v->kind != YNODE_SEQ)
        return;
    svc->instances = config_xcalloc(v->n_items ? v->n_items : 1, sizeof *svc->instances);
    svc->n_instances = v->n_items;
    for (size_t i = 0; i < v->n_items; i++) {
        size_t mark = config_path_push(c, "[%zu]", i);
        parse_instance(c, v->items[i], &svc->instances[i], false);
        config_path_pop(c, mark);
    }
}

static void service_field(struct config_ctx *c, int key, const struct ynode *v, void *obj)
{
    struct service_state *st = obj;
    struct reg_service_settings *s = st->settings;
    switch (key) {
    case SK_NAME: {
        const char *name = config_scalar(c, v, "a service name (one DNS label)");
        char why[200];
        if (!name)
            break;
        if (reg_service_name_check(name, why, sizeof why) < 0) {
            config_err_at(c, v->line, "%s", why);
            break;
        }
        config_set_str(&st->svc->name, name);
        for (char *p = st->svc->name; *p; p++)
            *p = (char)tolower((unsigned char)*p);
        break;
    }
    case SK_PROTECT:
        get_ratio(c, v, 0, 1, &s->protect_threshold);
        break;
    case SK_LOCALITY:
        config_walk_map(c, v, locality_keys, locality_field, &s->locality);
        break;
    case SK_TTL:
        config_get_uint(c, v, 0, REG_TTL_MAX, &s->dns_ttl);
        break;
    case SK_ANSWER_COUNT:
        config_get_uint(c, v, 1, REG_ANSWER_MAX, &s->answer_count);
        break;
    case SK_HEARTBEAT:
        config_walk_map(c, v, heartbeat_keys, heartbeat_field, s);
        break;
    case SK_HEALTH:
        hc_conf_parse(c, v, &s->health);
        break;
    case SK_INSTANCES:
        parse_instances(c, v, st->svc);
        break;
    }
}

static void settings_field(struct config_ctx *c, int key, const struct ynode *v, void *obj)
{
    service_field(c, settings_key_ids[key], v, obj);
}

/* The rules across a service's settings, reported at the mapping. */
static void check_settings(struct config_ctx *c, int line, const struct reg_service_settings *s)
{
    char why[256];
    if (reg_service_settings_check(s, why, sizeof why) < 0)
        config_err_at(c, line, "%s", why);
}

static void parse_service(struct config_ctx *c, const struct ynode *v, struct cfg_reg_service *svc)
{
    svc->line = v->line;
    reg_service_settings_defaults(&svc->settings);
    struct service_state st = { .svc = svc, .settings = &svc->settings };
    if (!config_walk_map(c, v, service_keys, service_field, &st))
        return;
    if (!svc->name && !config_map_has_key(v, "name"))
        config_missing_key(c, v, "name");
    check_settings(c, v->line, &svc->settings);
    /* Instance ids are unique within the service. */
    const char **ids = config_xcalloc(svc->n_instances + 1, sizeof *ids);
    for (size_t i = 0; i < svc->n_instances; i++)
        ids[i] = svc->instances[i].id ? svc->instances[i].id
               : svc->instances[i].addr.len ? svc->instances[i].addr.text
                                            : NULL;
    size_t *first = config_first_same(ids, svc->n_instances);
    for (size_t i = 0; i < svc->n_instances; i++) {
        if (ids[i] && first[i] != i) {
            size_t mark = config_path_push(c, ".instances[%zu]", i);
            config_err_at(c, svc->instances[i].line, "instance \"%s\" is listed twice (first at instances[%zu]); "
                                                     "give each an id",
                          config_shown_str(c, ids[i]), first[i]);
            config_path_pop(c, mark);
        }
    }
    free(first);
    free(ids);
}

static void free_service(struct cfg_reg_service *svc)
{
    free(svc->name);
    reg_service_settings_free(&svc->settings);
    for (size_t i = 0; i < svc->n_instances; i++)
        reg_conf_instance_free(&svc->instances[i]);
    free(svc->instances);
}

/* ---- registry.dns ------------------------------------------------------- */

enum { DK_LISTEN, DK_ZONE, DK_NS, DK_SOA, DK_UDP_MAX, DK_TCP };
static const char *const dns_keys[] = { "listen", "zone", "ns", "soa", "udp_max", "tcp", NULL };
enum { OK_MBOX, OK_REFRESH, OK_RETRY, OK_EXPIRE, OK_MINIMUM };
static const char *const soa_keys[] = { "mbox", "refresh", "retry", "expire", "minimum", NULL };

static void soa_field(struct config_ctx *c, int key, const struct ynode *v, void *obj)
{
    struct cfg_reg_dns *d = obj;
    switch (key) {
    case OK_MBOX: get_domain(c, v, d->soa_mbox, sizeof d->soa_mbox); break;
    case OK_REFRESH: get_seconds(c, v, &d->soa_refresh); break;
    case OK_RETRY: get_seconds(c, v, &d->soa_retry); break;
    case OK_EXPIRE: get_seconds(c, v, &d->soa_expire); break;
    case OK_MINIMUM: get_seconds(c, v, &d->soa_minimum); break;
    }
}

static void dns_ns_one(struct config_ctx *c, const struct ynode *item, void *obj)
{
    struct cfg_reg_dns *d = obj;
    if (get_domain(c, item, d->ns[d->n_ns], sizeof d->ns[d->n_ns]))
        d->n_ns++;
}

static void dns_field(struct config_ctx *c, int key, const struct ynode *v, void *obj)
{
    struct cfg_reg_dns *d = obj;
    switch (key) {
    case DK_LISTEN:
        dns_conf_listen(c, v, d->listen, REG_CONF_MAX_LISTEN, &d->n_listen);
        break;
    case DK_ZONE: get_domain(c, v, d->zone, sizeof d->zone); break;
    case DK_NS:
        d->n_ns = 0;
        config_each_item(c, v, REG_CONF_MAX_NS, "name servers", dns_ns_one, d);
        break;
    case DK_SOA: config_walk_map(c, v, soa_keys, soa_field, d); break;
    case DK_UDP_MAX: config_get_uint(c, v, 512, 65535, &d->udp_max); break;
    case DK_TCP: dns_conf_tcp(c, v, &d->tcp_max_conns, &d->tcp_idle_ms); break;
    }
}

static void dns_defaults(struct cfg_reg_dns *d)
{
    *d = (struct cfg_reg_dns){ .soa_refresh = 3600, .soa_retry = 600, .soa_expire = 604800, .soa_minimum = 30,
                               .udp_max = 1232, .tcp_max_conns = DNS_CONF_TCP_MAX_CONNS,
                               .tcp_idle_ms = DNS_CONF_TCP_IDLE_MS };
}

void reg_conf_dns(const struct cfg_reg_dns *c, struct reg_dns_conf *out)
{
    reg_dns_conf_defaults(out);
    out->n_listen = c->n_listen < REG_DNS_MAX_LISTEN ? c->n_listen : REG_DNS_MAX_LISTEN;
    for (size_t i = 0; i < out->n_listen; i++)
        out->listen[i] = c->listen[i];
    snprintf(out->zone, sizeof out->zone, "%s", c->zone);
    out->n_ns = c->n_ns < REG_DNS_MAX_NS ? c->n_ns : REG_DNS_MAX_NS;
    for (size_t i = 0; i < out->n_ns; i++)
        snprintf(out->ns[i], sizeof out->ns[i], "%s", c->ns[i]);
    snprintf(out->soa_mbox, sizeof out->soa_mbox, "%s", c->soa_mbox);
    out->soa_refresh = c->soa_refresh;
    out->soa_retry = c->soa_retry;
    out->soa_expire = c->soa_expire;
    out->soa_minimum = c->soa_minimum;
    out->udp_max = (uint16_t)c->udp_max;
    out->tcp_max_conns = c->tcp_max_conns;
    out->tcp_idle_ms = c->tcp_idle_ms;
}

static void parse_dns(struct config_ctx *c, const struct ynode *v, struct cfg_reg_dns *d)
{
    d->present = true;
    d->line = v->line;
    if (!config_walk_map(c, v, dns_keys, dns_field, d))
        return;
    if (!d->zone[0] && !config_map_has_key(v, "zone"))
        config_missing_key(c, v, "zone");
    if (d->n_listen == 0 && !config_map_has_key(v, "listen"))
        config_missing_key(c, v, "listen");
    if (config_error_count(c) > 0)
        return;
    /* What the server itself would refuse ("dns.soa.minimum: at most 86400 s"). */
    struct reg_dns_conf dc;
    char why[256];
    reg_conf_dns(d, &dc);
    if (reg_dns_conf_check(&dc, why, sizeof why) < 0)
        config_err_at(c, v->line, "%s", strncmp(why, "dns.", 4) == 0 ? why + 4 : why);
}

/* ---- the rest of registry: ---------------------------------------------- */

enum { RK_NODE, RK_DATACENTER, RK_REGION, RK_DATA_DIR, RK_STORE, RK_ETCD, RK_TOKEN, RK_TOKEN_FILE, RK_API, RK_DNS,
       RK_SUBNETS, RK_EXPIRY, RK_SERVICES };
static const char *const registry_keys[] = { "node",       "datacenter", "region", "data_dir", "store",
                                             "etcd",       "token",      "token_file", "api",  "dns",
                                             "subnets",    "expiry",     "services",   NULL };
enum { EK_ENDPOINTS, EK_PREFIX, EK_LEASE_TTL };
static const char *const etcd_keys[] = { "endpoints", "prefix", "lease_ttl", NULL };
enum { AK_MAX_WATCHERS, AK_MERGE_WINDOW, AK_MAX_WAIT };
static const char *const api_keys[] = { "max_watchers", "merge_window", "max_wait", NULL };
enum { XK_CAP, XK_INTERVAL, XK_PRESERVATION, XK_RATE_WINDOW, XK_GRACE };
static const char *const expiry_keys[] = { "eviction_cap", "eviction_interval", "self_preservation", "rate_window",
                                           "grace", NULL };
enum { NK_CIDR, NK_DATACENTER, NK_REGION };
static const char *const subnet_keys[] = { "cidr", "datacenter", "region", NULL };

static void etcd_endpoint_one(struct config_ctx *c, const struct ynode *item, void *obj)
{
    struct cfg_registry *r = obj;
    const char *s = config_scalar(c, item, "an etcd endpoint URL like http://127.0.0.1:2379");
    if (!s)
        return;
    if (strncmp(s, "http://", 7) != 0 && strncmp(s, "https://", 8) != 0) {
        config_err_at(c, item->line, "expected an etcd endpoint URL like http://127.0.0.1:2379, got \"%s\"",
                      config_shown_str(c, s));
        return;
    }
    r->etcd.endpoints[r->etcd.n_endpoints++] = config_xstrdup(s);
}

static void etcd_field(struct config_ctx *c, int key, const struct ynode *v, void *obj)
{
    struct cfg_registry *r = obj;
    switch (key) {
    case EK_ENDPOINTS:
        if (!r->etcd.endpoints)
            r->etcd.endpoints = config_xcalloc(16, sizeof *r->etcd.endpoints);
        for (size_t i = 0; i < r->etcd.n_endpoints; i++)
            free(r->etcd.endpoints[i]);
        r->etcd.n_endpoints = 0;
        config_each_item(c, v, 16, "endpoints", etcd_endpoint_one, r);
        break;
    case EK_PREFIX:
        if (get_string(c, v, "a key prefix like /sluice/registry/", &r->etcd.prefix) && r->etcd.prefix[0] != '/')
            config_err_at(c, v->line, "must begin with '/'");
        break;
    case EK_LEASE_TTL: config_get_duration(c, v, 2000, CONFIG_HOUR, &r->etcd.lease_ttl_ms); break;
    }
}

static void api_field(struct config_ctx *c, int key, const struct ynode *v, void *obj)
{
    struct cfg_registry *r = obj;
    switch (key) {
    case AK_MAX_WATCHERS: config_get_uint(c, v, 1, 100000, &r->api.max_watchers); break;
    case AK_MERGE_WINDOW: config_get_duration(c, v, 0, 10 * CONFIG_SECOND, &r->api.merge_window_ms); break;
    case AK_MAX_WAIT: config_get_duration(c, v, CONFIG_SECOND, CONFIG_HOUR, &r->api.max_wait_ms); break;
    }
}

static void expiry_field(struct config_ctx *c, int key, const struct ynode *v, void *obj)
{
    struct reg_model_conf *x = obj;
    switch (key) {
    case XK_CAP: {
        double cap;
        if (!get_ratio(c, v, 0, 1, &cap))
            break;
        if (cap <= 0)
            config_err_at(c, v->line, "must be above 0 (at most this share of a service's instances expire per "
                                      "eviction_interval)");
        else
            x->eviction_cap = cap;
        break;
    }
    case XK_INTERVAL: config_get_duration(c, v, 100, 24 * CONFIG_HOUR, &x->eviction_interval_ms); break;
    case XK_PRESERVATION: get_ratio(c, v, 0, 1, &x->self_preservation); break;
    case XK_RATE_WINDOW: config_get_duration(c, v, CONFIG_SECOND, 24 * CONFIG_HOUR, &x->rate_window_ms); break;
    case XK_GRACE: config_get_duration(c, v, 0, 24 * CONFIG_HOUR, &x->grace_ms); break;
    }
}

static void subnet_field(struct config_ctx *c, int key, const struct ynode *v, void *obj)
{
    struct cfg_reg_subnet *s = obj;
    switch (key) {
    case NK_CIDR: get_string(c, v, "a prefix like 10.1.0.0/16", &s->cidr); break;
    case NK_DATACENTER: get_string(c, v, "a datacenter name", &s->datacenter); break;
    case NK_REGION: get_string(c, v, "a region name", &s->region); break;
    }
}

static void parse_subnets(struct config_ctx *c, const struct ynode *v, struct cfg_registry *r)
{
    if (!config_expect_seq(c, v) || v->kind != YNODE_SEQ)
        return;
    r->subnets = config_xcalloc(v->n_items ? v->n_items : 1, sizeof *r->subnets);
    r->n_subnets = v->n_items;
    for (size_t i = 0; i < v->n_items; i++) {
        size_t mark = config_path_push(c, "[%zu]", i);
        struct cfg_reg_subnet *s = &r->subnets[i];
        s->line = v->items[i]->line;
        if (config_walk_map(c, v->items[i], subnet_keys, subnet_field, s) && !s->cidr &&
            !config_map_has_key(v->items[i], "cidr"))
            config_missing_key(c, v->items[i], "cidr");
        config_path_pop(c, mark);
    }
}

static void parse_services(struct config_ctx *c, const struct ynode *v, struct cfg_registry *r)
{
    if (!config_expect_seq(c, v) || v->kind != YNODE_SEQ)
        return;
    r->services = config_xcalloc(v->n_items ? v->n_items : 1, sizeof *r->services);
    r->n_services = v->n_items;
    for (size_t i = 0; i < v->n_items; i++) {
        size_t mark = config_path_push(c, "[%zu]", i);
        parse_service(c, v->items[i], &r->services[i]);
        config_path_pop(c, mark);
    }
}

/* The token file's first line, trimmed; an error at the key when it cannot be read. */
static void read_token_file(struct config_ctx *c, const struct ynode *v, struct cfg_registry *r)
{
    const char *path = config_scalar(c, v, "a file path");
    if (!path)
        return;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        config_err_at(c, v->line, "cannot read %s: %s", config_shown_str(c, path), strerror(errno));
        return;
    }
    char buf[TOKEN_FILE_MAX + 1];
    ssize_t n = read(fd, buf, sizeof buf);
    close(fd);
    if (n < 0 || n > TOKEN_FILE_MAX) {
        config_err_at(c, v->line, "cannot read %s: %s", config_shown_str(c, path),
                      n < 0 ? strerror(errno) : "larger than 4 KiB");
        return;
    }
    if (!secret_first_line(buf, (size_t)n)) {
        config_err_at(c, v->line, "%s holds no token (its first line is empty)", config_shown_str(c, path));
        return;
    }
    config_set_str(&r->token, buf);
}

static void registry_field(struct config_ctx *c, int key, const struct ynode *v, void *obj)
{
    struct cfg_registry *r = obj;
    int e;
    switch (key) {
    case RK_NODE: config_get_name(c, v, &r->node); break;
    case RK_DATACENTER: get_string(c, v, "a datacenter name", &r->datacenter); break;
    case RK_REGION: get_string(c, v, "a region name", &r->region); break;
    case RK_DATA_DIR: config_get_text(c, v, "a directory path", &r->data_dir); break;
    case RK_STORE:
        r->store_line = v->line;
        if (config_get_enum(c, v, store_names, &e))
            r->store = (enum reg_store_kind)e;
        break;
    case RK_ETCD: config_walk_map(c, v, etcd_keys, etcd_field, r); break;
    case RK_TOKEN: {
        const char *s = config_scalar(c, v, "a token (a string)");
        if (s && (!*s || !config_is_visible(s)))
            config_err_at(c, v->line, "a token is printable ASCII without spaces, at least one character");
        else if (s)
            config_set_str(&r->token, s);
        break;
    }
    case RK_TOKEN_FILE: read_token_file(c, v, r); break;
    case RK_API: config_walk_map(c, v, api_keys, api_field, r); break;
    case RK_DNS: parse_dns(c, v, &r->dns); break;
    case RK_SUBNETS: parse_subnets(c, v, r); break;
    case RK_EXPIRY: config_walk_map(c, v, expiry_keys, expiry_field, &r->expiry); break;
    case RK_SERVICES: parse_services(c, v, r); break;
    }
}

/* Rules across keys, once the whole section is read. */
static void check_registry(struct config_ctx *c, const struct ynode *v, struct cfg_registry *r)
{
    char why[256];
    if (config_map_has_key(v, "token") && config_map_has_key(v, "token_file"))
        config_err_at(c, v->line, "token and token_file: give one of them");
    if (r->store == REG_STORE_ETCD && r->etcd.n_endpoints == 0)
        config_err_in(c, r->store_line ? r->store_line : v->line, "etcd.endpoints",
                      "store: etcd needs at least one endpoint");
    if (reg_model_conf_check(&r->expiry, why, sizeof why) < 0)
        config_err_in(c, v->line, "expiry", "%s", why);
    /* Location names as the model will intern them. */
    struct reg_model_conf mc;
    reg_model_conf_defaults(&mc);
    struct reg_model *m = reg_model_create(&mc, why, sizeof why);
    struct reg_subnets *t = reg_subnets_new();
    if (!m || !t)
        config_oom();
    struct reg_loc loc;
    if (reg_model_loc(m, r->datacenter, r->region, &loc, why, sizeof why) < 0)
        config_err_at(c, v->line, "%s", why);
    for (size_t i = 0; i < r->n_subnets; i++) {
        struct cfg_reg_subnet *s = &r->subnets[i];
        size_t mark = config_path_push(c, ".subnets[%zu]", i);
        if (reg_model_loc(m, s->datacenter, s->region, &loc, why, sizeof why) < 0)
            config_err_at(c, s->line, "%s", why);
        else if (s->cidr && reg_subnets_add(t, s->cidr, loc, why, sizeof why) < 0)
            config_err_in(c, s->line, "cidr", "%s", why);
        config_path_pop(c, mark);
    }
    if (config_error_count(c) == 0 && reg_subnets_build(t, why, sizeof why) < 0)
        config_err_in(c, v->line, "subnets", "%s", why);
    reg_subnets_free(t);
    reg_model_free(m);
    /* Service names are unique. */
    const char **names = config_xcalloc(r->n_services + 1, sizeof *names);
    for (size_t i = 0; i < r->n_services; i++)
        names[i] = r->services[i].name;
    size_t *first = config_first_same(names, r->n_services);
    for (size_t i = 0; i < r->n_services; i++) {
        if (names[i] && first[i] != i) {
            size_t mark = config_path_push(c, ".services[%zu]", i);
            config_err_in(c, r->services[i].line, "name", "service %s is listed twice (first at services[%zu])",
                          names[i], first[i]);
            config_path_pop(c, mark);
        }
    }
    free(first);
    free(names);
}

static void parse_registry(struct config_ctx *c, struct cfg_registry *r, const struct ynode *v)
{
    r->present = true;
    r->line = v->line;
    if (config_walk_map(c, v, registry_keys, registry_field, r))
        check_registry(c, v, r);
}

/* ---- the section -------------------------------------------------------- */

static const char *const reg_root_keys[] = { "registry", NULL };

static void *reg_conf_create(void)
{
    struct cfg_registry *r = config_xcalloc(1, sizeof *r);
    char host[256] = "";
    if (gethostname(host, sizeof host - 1) < 0 || !host[0])
        snprintf(host, sizeof host, "registry");
    /* A node name is a config name ([A-Za-z0-9_.-], at most 64). */
    host[CONFIG_NAME_MAX] = '\0';
    for (char *p = host; *p; p++)
        if (!config_is_name_char(*p))
            *p = '-';
    r->node = config_xstrdup(host);
    r->data_dir = config_xstrdup(DEFAULT_DATA_DIR);
    r->etcd.prefix = config_xstrdup("/sluice/registry/");
    r->etcd.lease_ttl_ms = 10000;
    r->api.max_watchers = 2000;
    r->api.merge_window_ms = 50;
    r->api.max_wait_ms = 5 * CONFIG_MINUTE;
    dns_defaults(&r->dns);
    reg_model_conf_defaults(&r->expiry);
    return r;
}

static void reg_conf_parse(struct config_ctx *c, void *data, int key, const struct ynode *v)
{
    parse_registry(c, data, v);
}

static void reg_conf_free(void *data)
{
    struct cfg_registry *r = data;
    if (!r)
        return;
    free(r->node);
    free(r->datacenter);
    free(r->region);
    free(r->data_dir);
    for (size_t i = 0; i < r->etcd.n_endpoints; i++)
        free(r->etcd.endpoints[i]);
    free(r->etcd.endpoints);
    free(r->etcd.prefix);
    free(r->token);
    for (size_t i = 0; i < r->n_subnets; i++) {
        free(r->subnets[i].cidr);
        free(r->subnets[i].datacenter);
        free(r->subnets[i].region);
    }
    free(r->subnets);
    for (size_t i = 0; i < r->n_services; i++)
        free_service(&r->services[i]);
    free(r->services);
    free(r);
}

const struct config_section reg_conf_section = {
    .name = "registry",
    .keys = reg_root_keys,
    .create = reg_conf_create,
    .parse = reg_conf_parse,
    .free = reg_conf_free,
};

struct cfg_registry *reg_conf(const struct sl_config *cfg)
{
    return config_section_data(cfg, &reg_conf_section);
}

/* ---- API bodies ---------------------------------------------------------- */

/* Walk a body that must be a JSON object with fn (config_walk_body). */
struct object_body {
    void (*fn)(struct config_ctx *c, const struct ynode *root, void *obj);
    void *obj;
};

static void object_body(struct config_ctx *c, const struct ynode *root, void *arg)
{
    const struct object_body *b = arg;
    if (root->kind != YNODE_MAP)
        config_type_error(c, root, "a JSON object");
    else
        b->fn(c, root, b->obj);
}

/* 0, or -1 with the first error in err. */
static int walk_body(const char *text, size_t len, void (*fn)(struct config_ctx *c, const struct ynode *root, void *obj),
                     void *obj, char *err, size_t errlen)
{
    struct object_body b = { fn, obj };
    return config_walk_body(text, len, object_body, &b, err, errlen);
}

static void settings_body(struct config_ctx *c, const struct ynode *root, void *obj)
{
    struct service_state *st = obj;
    if (config_walk_map(c, root, settings_keys, settings_field, st))
        check_settings(c, root->line, st->settings);
}

int reg_conf_parse_settings_body(const char *text, size_t len, struct reg_service_settings *out, char *err,
                                 size_t errlen)
{
    struct reg_service_settings s;
    reg_service_settings_defaults(&s);
    struct cfg_reg_service dummy = { 0 };
    struct service_state st = { .svc = &dummy, .settings = &s };
    if (walk_body(text, len, settings_body, &st, err, errlen) < 0) {
        reg_service_settings_free(&s);
        return -1;
    }
    *out = s;
    return 0;
}

static void instance_body(struct config_ctx *c, const struct ynode *root, void *obj)
{
    parse_instance(c, root, obj, true);
}

int reg_conf_parse_instance_body(const char *text, size_t len, struct cfg_reg_instance *out, char *err,
                                 size_t errlen)
{
    struct cfg_reg_instance inst = { 0 };
    if (walk_body(text, len, instance_body, &inst, err, errlen) < 0) {
        reg_conf_instance_free(&inst);
        return -1;
    }
    *out = inst;
    return 0;
}

enum { PK_WEIGHT, PK_ENABLED };
static const char *const patch_keys[] = { "weight", "enabled", NULL };

struct patch_state {
    bool has_weight, has_enabled;
    uint32_t weight;
    bool enabled;
};

static void patch_field(struct config_ctx *c, int key, const struct ynode *v, void *obj)
{
    struct patch_state *p = obj;
    if (key == PK_WEIGHT)
        p->has_weight = config_get_uint(c, v, 0, REG_WEIGHT_MAX, &p->weight);
    else
        p->has_enabled = config_get_bool(c, v, &p->enabled);
}

static void patch_body(struct config_ctx *c, const struct ynode *root, void *obj)
{
    struct patch_state *p = obj;
    if (config_walk_map(c, root, patch_keys, patch_field, p) && !config_map_has_key(root, "weight") &&
        !config_map_has_key(root, "enabled"))
        config_err_at(c, root->line, "give weight, enabled or both");
}

int reg_conf_parse_patch_body(const char *text, size_t len, bool *has_weight, uint32_t *weight, bool *has_enabled,
                              bool *enabled, char *err, size_t errlen)
{
    struct patch_state p = { 0 };
    if (walk_body(text, len, patch_body, &p, err, errlen) < 0)
        return -1;
    *has_weight = p.has_weight;
    *weight = p.weight;
    *has_enabled = p.has_enabled;
    *enabled = p.enabled;
    return 0;
}
