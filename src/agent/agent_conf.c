/* The agent: section: see agent_conf.h. */
#include "agent/agent_conf.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/config_walk.h"
#include "core/dns_conf.h"
#include "core/dns_server.h"
#include "lib/dns_wire.h"

#define RESOLV_CONF_MAX (64 * 1024)

enum {
    AK_LISTEN, AK_ZONE, AK_REGISTRIES, AK_DATACENTER, AK_REGION, AK_CACHE_DIR, AK_FAILOVER_DIR, AK_TOKEN,
    AK_SERVICES, AK_UPSTREAMS, AK_RESOLV_CONF, AK_TTL_CAP, AK_NEGATIVE_TTL, AK_FIRST_WAIT, AK_UPSTREAM_TIMEOUT,
    AK_MAX_OUTSTANDING, AK_MAX_SERVICES, AK_UDP_MAX, AK_TCP,
};
static const char *const agent_keys[] = {
    "listen",    "zone",         "registries",  "datacenter", "region",       "cache_dir",
    "failover_dir", "token",     "services",    "upstreams",  "resolv_conf",  "ttl_cap",
    "negative_ttl", "first_wait", "upstream_timeout", "max_outstanding", "max_services", "udp_max",
    "tcp",       NULL,
};

/* ---- values ------------------------------------------------------------- */

/* A scalar or a list of scalars, each handed to one(); at most max. */
/* A text without spaces or control characters (names, addresses, tokens). */
static bool get_word(struct config_ctx *c, const struct ynode *v, const char *want, char **dst)
{
    const char *s = config_scalar(c, v, want);
    if (!s)
        return false;
    if (!*s || !config_is_visible(s)) {
        config_err_at(c, v->line, "expected %s (printable, no spaces), got \"%s\"", want, config_shown_str(c, s));
        return false;
    }
    config_set_str(dst, s);
    return true;
}

/* The zone, lower-cased, with its final dot: "sluice.test." */
static void get_zone(struct config_ctx *c, const struct ynode *v, struct cfg_agent *a)
{
    const char *s = config_scalar(c, v, "a domain name");
    if (!s)
        return;
    uint8_t wire[DNS_NAME_MAX];
    size_t n = strlen(s);
    bool ok = n > 0 && n + 2 <= sizeof a->zone && strcmp(s, ".") != 0 && dns_name_from_text(s, wire) > 0;
    for (size_t i = 0; ok && i < n; i++)
        ok = isalnum((unsigned char)s[i]) || s[i] == '-' || s[i] == '_' || s[i] == '.';
    if (!ok) {
        config_err_at(c, v->line, "expected a domain name like sluice.test. (labels of 1 to 63 letters, digits, "
                                  "'-' or '_'), got \"%s\"", config_shown_str(c, s));
        return;
    }
    for (size_t i = 0; i < n; i++)
        a->zone[i] = (char)tolower((unsigned char)s[i]);
    a->zone[n] = '\0';
    if (a->zone[n - 1] != '.')
        strcat(a->zone, ".");
}

/* Seconds from a duration ("5s", "1m"), a whole number of them. */
static bool get_seconds(struct config_ctx *c, const struct ynode *v, uint32_t max_s, uint32_t *out)
{
    uint32_t ms;
    if (!config_get_duration(c, v, 0, max_s * CONFIG_SECOND, &ms))
        return false;
    if (ms % CONFIG_SECOND) {
        config_err_at(c, v->line, "a DNS TTL is a whole number of seconds (\"5s\", \"1m\")");
        return false;
    }
    *out = ms / CONFIG_SECOND;
    return true;
}

static void registry_one(struct config_ctx *c, const struct ynode *item, void *obj)
{
    struct cfg_agent *a = obj;
    char *s = NULL;
    if (!get_word(c, item, "a registry API address like 127.0.0.1:9950", &s))
        return;
    if (strchr(s, ',')) {
        config_err_at(c, item->line, "one address per item (no commas), got \"%s\"", config_shown_str(c, s));
        free(s);
        return;
    }
    a->registries[a->n_registries++] = s;
}

static void upstream_one(struct config_ctx *c, const struct ynode *item, void *obj)
{
    struct cfg_agent *a = obj;
    const char *s = config_scalar(c, item, "a resolver address like 192.0.2.53 or 192.0.2.53:5353");
    if (!s)
        return;
    /* A bare IP means port 53: try it with ":53" (IPv6 in brackets). */
    char buf[128];
    const char *why = NULL;
    struct sl_addr addr;
    struct in6_addr tmp6;
    struct in_addr tmp4;
    if (inet_pton(AF_INET, s, &tmp4) == 1)
        snprintf(buf, sizeof buf, "%s:53", s);
    else if (inet_pton(AF_INET6, s, &tmp6) == 1)
        snprintf(buf, sizeof buf, "[%s]:53", s);
    else
        snprintf(buf, sizeof buf, "%s", s);
    if (addr_parse(buf, &addr, &why) < 0 || addr_port(&addr) == 0) {
        config_err_at(c, item->line, "expected a resolver address like 192.0.2.53 or [2001:db8::53]:5353, got "
                                     "\"%s\"%s%s", config_shown_str(c, s), why ? ": " : "", why ? why : "");
        return;
    }
    a->upstreams[a->n_upstreams++] = addr;
}

/* Service names as the registry takes them: one DNS label of letters,
 * digits and '-', not beginning or ending with '-'. */
static bool service_name_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > DNS_LABEL_MAX || s[0] == '-' || s[n - 1] == '-')
        return false;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)s[i]) && s[i] != '-')
            return false;
    return true;
}

static void service_one(struct config_ctx *c, const struct ynode *item, void *obj)
{
    struct cfg_agent *a = obj;
    const char *s = config_scalar(c, item, "a service name");
    if (!s)
        return;
    if (!service_name_ok(s)) {
        config_err_at(c, item->line, "a service name is one DNS label (letters, digits and '-', 1 to 63, not "
                                     "beginning or ending with '-'), got \"%s\"", config_shown_str(c, s));
        return;
    }
    char *copy = config_xstrdup(s);
    for (char *p = copy; *p; p++)
        *p = (char)tolower((unsigned char)*p);
    a->services[a->n_services++] = copy;
}

static void free_strings(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i]);
}

static void agent_field(struct config_ctx *c, int key, const struct ynode *v, void *obj)
{
    struct cfg_agent *a = obj;
    switch (key) {
    case AK_LISTEN:
        dns_conf_listen(c, v, a->listen, AGENT_MAX_LISTEN, &a->n_listen);
        break;
    case AK_ZONE: get_zone(c, v, a); break;
    case AK_REGISTRIES:
        free_strings(a->registries, a->n_registries);
        a->n_registries = 0;
        config_each_item(c, v, AGENT_MAX_REGISTRIES, "registry addresses", registry_one, a);
        break;
    case AK_DATACENTER: get_word(c, v, "a datacenter name", &a->datacenter); break;
    case AK_REGION: get_word(c, v, "a region name", &a->region); break;
    case AK_CACHE_DIR: config_get_text(c, v, "a directory path", &a->cache_dir); break;
    case AK_FAILOVER_DIR: config_get_text(c, v, "a directory path", &a->failover_dir); break;
    case AK_TOKEN: get_word(c, v, "a token", &a->token); break;
    case AK_SERVICES:
        free_strings(a->services, a->n_services);
        a->n_services = 0;
        if (!a->services)
            a->services = config_xcalloc(AGENT_MAX_CONF_SERVICES, sizeof *a->services);
        config_each_item(c, v, AGENT_MAX_CONF_SERVICES, "services", service_one, a);
        break;
    case AK_UPSTREAMS:
        a->n_upstreams = 0;
        config_each_item(c, v, AGENT_MAX_UPSTREAMS, "upstreams", upstream_one, a);
        break;
    case AK_RESOLV_CONF: config_get_text(c, v, "a file path", &a->resolv_conf); break;
    case AK_TTL_CAP: get_seconds(c, v, 86400, &a->ttl_cap_s); break;
    case AK_NEGATIVE_TTL: get_seconds(c, v, 86400, &a->negative_ttl_s); break;
    case AK_FIRST_WAIT: config_get_duration(c, v, 0, 30 * CONFIG_SECOND, &a->first_wait_ms); break;
    case AK_UPSTREAM_TIMEOUT: config_get_duration(c, v, 10, 30 * CONFIG_SECOND, &a->upstream_timeout_ms); break;
    case AK_MAX_OUTSTANDING: config_get_uint(c, v, 1, 1000000, &a->max_outstanding); break;
    case AK_MAX_SERVICES: config_get_uint(c, v, 1, 100000, &a->max_services); break;
    case AK_UDP_MAX: config_get_uint(c, v, DNS_UDP_MIN, 65535, &a->udp_max); break;
    case AK_TCP: dns_conf_tcp(c, v, &a->tcp_max_conns, &a->tcp_idle_ms); break;
    }
}

/* Rules across keys, once the section is read. */
static void check_agent(struct config_ctx *c, const struct ynode *v, struct cfg_agent *a)
{
    if (!a->zone[0] && !config_map_has_key(v, "zone"))
        config_missing_key(c, v, "zone");
    if (a->n_registries == 0 && !a->cache_dir && !a->failover_dir && !config_map_has_key(v, "registries"))
        config_err_at(c, v->line, "registries: give the registry's API addresses (or at least a cache_dir or "
                                  "failover_dir to answer from)");
    if (config_map_has_key(v, "listen") && a->n_listen == 0 && config_error_count(c) == 0)
        config_err_in(c, v->line, "listen", "give at least one address");
    for (size_t i = 0; i < a->n_upstreams; i++)
        for (size_t j = 0; j < a->n_listen; j++)
            if (addr_equal(&a->upstreams[i], &a->listen[j]))
                config_err_in(c, v->line, "upstreams", "%s is the agent's own listen address: it would forward "
                                                      "to itself", a->upstreams[i].text);
}

/* ---- the section -------------------------------------------------------- */

static const char *const agent_root_keys[] = { "agent", NULL };

static void *agent_conf_create(void)
{
    struct cfg_agent *a = config_xcalloc(1, sizeof *a);
    const char *why;
    if (addr_parse(AGENT_DEFAULT_LISTEN, &a->listen[0], &why) == 0)
        a->n_listen = 1;
    a->resolv_conf = config_xstrdup(AGENT_DEFAULT_RESOLV_CONF);
    a->ttl_cap_s = 5;
    a->negative_ttl_s = 5;
    a->first_wait_ms = 1000;
    a->upstream_timeout_ms = 1000;
    a->max_outstanding = 4096;
    a->max_services = 1000;
    a->udp_max = 1232;
    a->tcp_max_conns = DNS_CONF_TCP_MAX_CONNS;
    a->tcp_idle_ms = DNS_CONF_TCP_IDLE_MS;
    return a;
}

static void agent_conf_parse(struct config_ctx *c, void *data, int key, const struct ynode *v)
{
    struct cfg_agent *a = data;
    a->present = true;
    a->line = v->line;
    if (config_walk_map(c, v, agent_keys, agent_field, a))
        check_agent(c, v, a);
}

static void agent_conf_free(void *data)
{
    struct cfg_agent *a = data;
    if (!a)
        return;
    free_strings(a->registries, a->n_registries);
    free(a->datacenter);
    free(a->region);
    free(a->cache_dir);
    free(a->failover_dir);
    free(a->token);
    free_strings(a->services, a->n_services);
    free(a->services);
    free(a->resolv_conf);
    free(a);
}

const struct config_section agent_conf_section = {
    .name = "agent",
    .keys = agent_root_keys,
    .create = agent_conf_create,
    .parse = agent_conf_parse,
    .free = agent_conf_free,
};

struct cfg_agent *agent_conf(const struct sl_config *cfg)
{
    return config_section_data(cfg, &agent_conf_section);
}

/* ---- upstreams from resolv.conf ----------------------------------------- */

static bool is_loopback(const struct sl_addr *a)
{
    if (a->ss.ss_family == AF_INET)
        return (ntohl(((const struct sockaddr_in *)&a->ss)->sin_addr.s_addr) >> 24) == 127;
    return IN6_IS_ADDR_LOOPBACK(&((const struct sockaddr_in6 *)&a->ss)->sin6_addr);
}

/* Would a query sent to `ns` come back to one of our listeners? */
static bool is_self(const struct sl_addr *ns, const struct sl_addr *listen, size_t n_listen)
{
    for (size_t i = 0; i < n_listen; i++) {
        const struct sl_addr *l = &listen[i];
        if (addr_equal(ns, l))
            return true;
        if (l->ss.ss_family == ns->ss.ss_family && addr_port(l) == addr_port(ns) && dns_addr_is_wildcard(l) &&
            (is_loopback(ns) || dns_addr_is_wildcard(ns)))
            return true;
    }
    return false;
}

size_t agent_conf_parse_resolv(const char *text, const struct sl_addr *listen, size_t n_listen,
                               struct sl_addr *out, size_t cap)
{
    size_t n = 0;
    const char *p = text;
    while (*p && n < cap) {
        const char *eol = strchr(p, '\n');
        size_t len = eol ? (size_t)(eol - p) : strlen(p);
        char line[256];
        if (len < sizeof line) {
            memcpy(line, p, len);
            line[len] = '\0';
            char *save = NULL;
            char *key = strtok_r(line, " \t\r", &save);
            char *val = key ? strtok_r(NULL, " \t\r", &save) : NULL;
            if (key && val && strcmp(key, "nameserver") == 0 && !strchr(val, '%')) {
                char buf[80];
                struct in6_addr tmp6;
                if (strchr(val, ':') && inet_pton(AF_INET6, val, &tmp6) == 1)
                    snprintf(buf, sizeof buf, "[%s]:53", val);
                else
                    snprintf(buf, sizeof buf, "%s:53", val);
                struct sl_addr a;
                const char *why;
                if (addr_parse(buf, &a, &why) == 0 && !is_self(&a, listen, n_listen))
                    out[n++] = a;
            }
        }
        p += len;
        if (*p == '\n')
            p++;
    }
    return n;
}

size_t agent_conf_upstreams(const struct cfg_agent *a, struct sl_addr *out, size_t cap, char *err, size_t errlen)
{
    if (a->n_upstreams) {
        size_t n = a->n_upstreams < cap ? a->n_upstreams : cap;
        memcpy(out, a->upstreams, n * sizeof *out);
        return n;
    }
    FILE *f = fopen(a->resolv_conf, "re");
    if (!f) {
        snprintf(err, errlen, "agent.upstreams: none given, and %s cannot be read: %s", a->resolv_conf,
                 strerror(errno));
        return 0;
    }
    char *text = malloc(RESOLV_CONF_MAX + 1);
    size_t len = text ? fread(text, 1, RESOLV_CONF_MAX, f) : 0;
    fclose(f);
    if (!text) {
        snprintf(err, errlen, "out of memory");
        return 0;
    }
    text[len] = '\0';
    size_t n = agent_conf_parse_resolv(text, a->listen, a->n_listen, out, cap);
    free(text);
    if (n == 0)
        snprintf(err, errlen, "agent.upstreams: none given, and %s names no nameserver other than the agent itself",
                 a->resolv_conf);
    return n;
}
