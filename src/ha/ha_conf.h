/* The HA tier's part of the configuration: the ha: section (see docs/ha.md,
 * "Configuration reference", and docs/configuration.md, "ha").
 *
 * It says who this node is in its group (node, zone, priority), how it
 * speaks BGP to the routers (asn, router_id, neighbors, bfd), what it may
 * announce (min_healthy, announce), the tun device its announced addresses
 * live on (interface) and how BIRD is run (bird.mode managed|external).
 * Registered with the core's section table by the HA module; a loaded
 * configuration's part is ha_conf(cfg) (present is false when the file has
 * no ha: key).
 *
 * Values that depend on the host the daemon runs on (node: the host name;
 * router_id: the source address toward the first neighbor) are left unset
 * when the file does not give them and filled in at run time
 * (ha_conf_node, bird_proc_router_id): a file may be checked elsewhere.
 */
#ifndef SLUICE_HA_HA_CONF_H
#define SLUICE_HA_HA_CONF_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/addr.h"
#include "core/config.h"
#include "ha/probe.h"

#define HA_MAX_NEIGHBORS 16
#define HA_MAX_ANNOUNCE 256
#define HA_PRIORITY_MAX 15
/* The announce device's name plus HA_STANDIN_SUFFIX (the stand-in device,
 * bird_conf.h) must fit IFNAMSIZ - 1 = 15 characters. */
#define HA_STANDIN_SUFFIX "-s"
#define HA_IFNAME_MAX 13
#define HA_PASSWORD_MAX 80   /* TCP-MD5 keys are at most 80 bytes (RFC 2385, Linux TCP_MD5SIG_MAXKEYLEN) */

#define HA_DEFAULT_ZONE "default"
#define HA_DEFAULT_INTERFACE "sluice-ha"
#define HA_DEFAULT_BIRD_BINARY "/usr/sbin/bird"
#define HA_DEFAULT_BIRD_SOCKET "/run/sluice/bird.ctl"
#define HA_DEFAULT_BIRD_CONFIG "/run/sluice/bird.conf"
#define HA_DEFAULT_BIRD_PID "/run/sluice/bird.pid"
#define HA_DEFAULT_BGP_PORT 179
#define HA_DEFAULT_BFD_INTERVAL_MS 100
#define HA_DEFAULT_BFD_MULTIPLIER 3

enum ha_bird_mode {
    HA_BIRD_MANAGED,   /* Sluice writes the whole bird.conf and starts bird */
    HA_BIRD_EXTERNAL,  /* Sluice writes an include file; the operator runs bird */
};

/* An IP address without a port. */
struct ha_ip {
    int family;                        /* AF_INET or AF_INET6 */
    union {
        struct in_addr v4;
        struct in6_addr v6;
    } u;
    char text[INET6_ADDRSTRLEN];       /* canonical: "10.0.0.1", "2001:db8::1" */
};

struct cfg_ha_neighbor {
    struct ha_ip address;
    uint32_t asn;                      /* required */
    uint32_t port;                     /* default 179 */
    char *password;                    /* TCP-MD5; NULL: none */
    bool has_source;
    struct ha_ip source;               /* local address of the session; default: the kernel's choice */
    uint32_t multihop;                 /* 0: directly connected; else the TTL (hops) */
    uint32_t hold_time_s;              /* 0: BIRD's default (240 s) */
    int line;
};

struct cfg_ha_bird {
    enum ha_bird_mode mode;            /* default managed */
    char *binary;                      /* default /usr/sbin/bird */
    char *control_socket;              /* default /run/sluice/bird.ctl */
    char *config_file;                 /* default /run/sluice/bird.conf (external: the include file) */
    char *pid_file;                    /* default /run/sluice/bird.pid (managed only) */
    char *log_file;                    /* managed: BIRD's log file; NULL: syslog */
};

struct cfg_ha {
    bool present;                      /* the file has an ha: section */
    char *node;                        /* NULL: the host name, at run time (ha_conf_node) */
    char *zone;                        /* default "default" */
    uint32_t priority;                 /* 0..15; 0 = primary zone; AS-path prepends */
    bool preempt;                      /* default true */
    uint32_t asn;                      /* required */
    bool has_router_id;
    struct in_addr router_id;          /* unset: computed at run time */
    struct cfg_ha_neighbor neighbors[HA_MAX_NEIGHBORS];
    size_t n_neighbors;                /* at least one */
    bool bfd;                          /* default true; "bfd: false" turns it off */
    uint32_t bfd_interval_ms;          /* default 100 ms */
    uint32_t bfd_multiplier;           /* default 3 */
    uint32_t min_healthy;              /* default 1 */
    struct ha_ip *announce;            /* NULL: any address the serving tier publishes */
    size_t n_announce;
    char interface[HA_IFNAME_MAX + 1]; /* default "sluice-ha" */
    struct cfg_ha_bird bird;
    bool probe_enabled;                /* ha.probe.enabled; default false */
    struct probe_conf probe;           /* ha.probe (probe.h's defaults) */
    int line;
};

extern const struct config_section ha_conf_section;

/* The ha: section of a loaded configuration (never NULL). */
struct cfg_ha *ha_conf(const struct sl_config *cfg);

/* The node name: ha.node, or this host's name (into buf). */
const char *ha_conf_node(const struct cfg_ha *h, char *buf, size_t cap);

/* Whether ha.announce allows ip (true when announce is not given). */
bool ha_conf_may_announce(const struct cfg_ha *h, const struct ha_ip *ip);

/* Parse "10.0.0.1" or "2001:db8::1" (no port, no brackets). Returns 0 or -1. */
int ha_ip_parse(const char *s, struct ha_ip *out);
bool ha_ip_equal(const struct ha_ip *a, const struct ha_ip *b);

/* A Linux interface name: 1 to max characters, none of '/', ':', space or
 * control characters, not "." or "..". */
bool ha_ifname_ok(const char *s, size_t max);

#endif
