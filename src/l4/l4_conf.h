/* sluice l4's part of the configuration: the l4: section. See docs/l4.md.
 *
 * Registered with the core's section table by the l4 module; a loaded
 * configuration's l4 part is l4_conf(cfg) (present is false when the file
 * has no l4: key). The admin API reads the services and reals it is sent
 * with the same parser (l4_conf_parse_service, l4_conf_parse_real), so it
 * cannot accept what the file would refuse.
 */
#ifndef SLUICE_L4_L4_CONF_H
#define SLUICE_L4_L4_CONF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/addr.h"
#include "core/config.h"
#include "core/discovery_conf.h"
#include "core/health_conf.h"

enum l4_fwd_mode { L4_FWD_DR, L4_FWD_TUN, L4_FWD_NAT, L4_FWD_FULLNAT };

/* Every scheduler builds a weighted Maglev table (the data plane has one
 * lookup); the names exist so configs written for IPVS read naturally. */
enum l4_scheduler { L4_SCHED_MAGLEV, L4_SCHED_SOURCE_HASH, L4_SCHED_WRR, L4_SCHED_RR };

enum l4_proto { L4_PROTO_TCP, L4_PROTO_UDP };

/* An IP prefix; addr holds AF_INET's 4 or AF_INET6's 16 bytes. */
struct cfg_prefix {
    int family;            /* 0 = unset */
    uint8_t addr[16];
    uint8_t plen;
};

struct cfg_l4_real {
    struct sl_addr addr;   /* "10.0.0.11:80"; port defaults to the VIP's */
    uint32_t weight;       /* default 1, 0..1000000; 0 means drained */
    int line;
};

struct cfg_l4_service {
    struct sl_addr vip;    /* "10.0.0.100:80" or "[2001:db8::1]:80" */
    enum l4_proto proto;         /* default tcp */
    enum l4_fwd_mode mode;       /* default dr */
    enum l4_scheduler scheduler; /* default maglev */
    struct cfg_health health;    /* same keys and defaults as a pool's */
    bool gue;                    /* tun: "encapsulation: gue" (default ipip) */
    struct sl_addr *local_addrs; /* fullnat only: IPs (port 0) */
    size_t n_local_addrs;
    /* The reals: the file's reals: list, or, with discovery: (instead of
     * reals:), the registry service's members as sluice l4 last applied
     * them (none in a freshly loaded file; l4_discovery.h). */
    struct cfg_l4_real *reals;
    size_t n_reals;
    bool discovered;             /* the service has a discovery: block */
    struct cfg_discovery discovery;
    int line;
};

/* l4.sync: replication of NAT/FullNAT connection entries between the LB
 * nodes of a group (src/l4/sync.h, docs/l4.md "Connection sync"). */
#define L4_SYNC_MAX_PEERS 32
#define L4_SYNC_KEY_MIN 32     /* bytes of shared secret, at least */
#define L4_SYNC_KEY_MAX 1024

struct cfg_l4_sync {
    bool enabled;          /* the section has l4.sync */
    struct sl_addr listen; /* UDP address:port of this node */
    struct sl_addr peers[L4_SYNC_MAX_PEERS];
    size_t n_peers;
    char *key_file;        /* the shared secret: read at start and reload */
    int key_file_line;
    uint32_t interval_ms;  /* batch interval of new-flow events (50 ms) */
    uint32_t refresh_ms;   /* full re-send of live entries (10 s) */
    uint32_t node_id;      /* default: derived from listen's address */
    bool node_id_set;
    int line;
};

struct cfg_l4 {
    bool present;          /* the file has an l4: section */
    char **interfaces;     /* XDP attach points, at least one */
    size_t n_interfaces;
    bool xdp_generic;      /* "xdp_mode: generic"; default native */
    uint32_t seed;         /* default L4_DEFAULT_FLOW_SEED (0x5eed1a4b) */
    uint32_t syn_cap;      /* new conn entries per CPU per second; 0 = no cap */
    struct cfg_prefix tun_src4, tun_src6;
    uint32_t tun_mtu;      /* TUN: max outer packet; bigger ones get an ICMP
                            * frag-needed / packet-too-big; 0 = no check */
    char *tx_interface;    /* two-arm LB: forwarded packets leave here
                            * (bpf_redirect) instead of where they came in;
                            * one of interfaces; NULL = same interface */
    int tx_interface_line;
    uint32_t gue_port;     /* TUN with GUE: outer UDP destination port (6080) */
    uint32_t max_services; /* room in the maps for services added at run
                            * time; default 16, raised to the file's count */
    struct cfg_l4_service *services;
    size_t n_services;
    struct cfg_l4_sync sync;
    int line;
};

/* The secret of l4.sync.key_file: at least L4_SYNC_KEY_MIN bytes (the
 * file's bytes as they are; a trailing newline is dropped), and the file
 * must give no access to group or others (refused, as ssh refuses such a
 * private key). Returns the length, or -1 with a reason in err. */
int l4_sync_read_key(const char *path, uint8_t *key, size_t cap, char *err, size_t errlen);

/* The section: root key l4. */
extern const struct config_section l4_conf_section;

/* The l4 part of cfg; NULL only if the section was never registered. */
struct cfg_l4 *l4_conf(const struct sl_config *cfg);

const char *l4_fwd_mode_name(enum l4_fwd_mode m);
const char *l4_scheduler_name(enum l4_scheduler s);
/* "tcp" or "udp" */
const char *l4_proto_name(enum l4_proto p);

/* Deep copy and release of one service (sluice l4 edits its list of
 * services at run time). copy returns 0 or -1 (out of memory, dst left
 * empty). */
int l4_conf_service_copy(struct cfg_l4_service *dst, const struct cfg_l4_service *src);
void l4_conf_service_free(struct cfg_l4_service *s);

/* A service as the admin API receives it (JSON text, an object with the
 * keys of one l4.services entry), read with the file's parser in the
 * context of the running l4 settings (TUN needs their source prefixes).
 * Returns 0 with *out filled (free it with l4_conf_service_free), or -1
 * with the first problem in err as "path: reason", the path inside the
 * body ("reals[0].weight: expected ..."). */
int l4_conf_parse_service(const struct cfg_l4 *running, const char *text, size_t len, struct cfg_l4_service *out,
                          char *err, size_t errlen);

/* A real for service svc, as the admin API receives it (JSON text: an
 * object with address and weight, or an address string), checked as the
 * file checks a real of that service (port, address family, TUN prefix).
 * Errors as above, at "reals[0]...". */
int l4_conf_parse_real(const struct cfg_l4 *running, const struct cfg_l4_service *svc, const char *text, size_t len,
                       struct cfg_l4_real *out, char *err, size_t errlen);

#endif
