/* The agent's part of the configuration: the agent: section (see
 * docs/agent.md and docs/configuration.md, "agent").
 *
 * Registered with the core's section table by the agent module; a loaded
 * configuration's part is agent_conf(cfg) (present is false when the file
 * has no agent: key). Upstreams left out of the file are read from
 * resolv.conf when the daemon starts (agent_conf_upstreams), not when the
 * file is checked: the file may be checked on another host.
 */
#ifndef SLUICE_AGENT_AGENT_CONF_H
#define SLUICE_AGENT_AGENT_CONF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/addr.h"
#include "core/config.h"

#define AGENT_MAX_LISTEN 8
#define AGENT_MAX_UPSTREAMS 8
#define AGENT_MAX_REGISTRIES 16
#define AGENT_MAX_CONF_SERVICES 256
#define AGENT_ZONE_MAX 256
#define AGENT_DEFAULT_LISTEN "127.0.0.1:53"
#define AGENT_DEFAULT_RESOLV_CONF "/etc/resolv.conf"

struct cfg_agent {
    bool present;                           /* the file has an agent: section */
    struct sl_addr listen[AGENT_MAX_LISTEN];/* UDP and TCP on each; default 127.0.0.1:53 */
    size_t n_listen;
    char zone[AGENT_ZONE_MAX];              /* lower case, ends with '.' */
    char *registries[AGENT_MAX_REGISTRIES]; /* "host:port" or "http://host:port" */
    size_t n_registries;
    char *datacenter, *region;              /* this host's; NULL: unknown */
    char *cache_dir, *failover_dir, *token; /* NULL: none */
    char **services;                        /* subscribed at start (lower case) */
    size_t n_services;
    struct sl_addr upstreams[AGENT_MAX_UPSTREAMS];  /* none: resolv.conf's, read at start */
    size_t n_upstreams;
    char *resolv_conf;                      /* default /etc/resolv.conf */
    uint32_t ttl_cap_s;                     /* registered names' TTL cap; default 5 */
    uint32_t negative_ttl_s;                /* NXDOMAIN/NODATA SOA TTL; default 5 */
    uint32_t first_wait_ms;                 /* a name's first fetch is waited for; default 1 s */
    uint32_t upstream_timeout_ms;           /* one attempt at one upstream; default 1 s */
    uint32_t max_outstanding;               /* forwarded and waiting queries; default 4096 */
    uint32_t max_services;                  /* names tracked at once; default 1000 */
    uint32_t udp_max;                       /* largest UDP answer of our own; default 1232 */
    uint32_t tcp_max_conns, tcp_idle_ms;    /* default 1000, 10 s */
    int line;
};

extern const struct config_section agent_conf_section;

/* The agent: section of a loaded configuration (never NULL). */
struct cfg_agent *agent_conf(const struct sl_config *cfg);

/* The nameserver lines of a resolv.conf text, port 53 each, into out (at
 * most cap), leaving out any address the agent itself listens on (the
 * same IP and port, or a wildcard listener on port 53 of the same
 * family), so it never forwards to itself. Returns how many. Lines that
 * are not "nameserver IP" are ignored; an IPv6 zone ("fe80::1%eth0") is
 * left out (no scope to bind). */
size_t agent_conf_parse_resolv(const char *text, const struct sl_addr *listen, size_t n_listen,
                               struct sl_addr *out, size_t cap);

/* The upstreams to use: the file's, or resolv_conf's nameservers. Returns
 * how many (0 with a reason in err when there are none or the file cannot
 * be read). */
size_t agent_conf_upstreams(const struct cfg_agent *a, struct sl_addr *out, size_t cap, char *err, size_t errlen);

#endif
