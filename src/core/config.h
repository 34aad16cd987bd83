/* Sluice configuration: the parsed, validated form of the YAML file.
 *
 * config_load() reads a YAML file with libyaml and checks it against the
 * schema below. Every problem is reported as "FILE:LINE: key.path: reason",
 * and all problems are collected, not just the first, so `sluice check`
 * can show them in one go. The structs are plain data, owned by a
 * struct sl_config and freed with config_free().
 */
#ifndef SLUICE_CORE_CONFIG_H
#define SLUICE_CORE_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/addr.h"
#include "lib/balance.h"

enum hash_key_kind {
    HASH_KEY_CLIENT_IP, /* "client_ip" */
    HASH_KEY_HEADER,    /* "header:NAME" */
    HASH_KEY_COOKIE,    /* "cookie:NAME" */
    HASH_KEY_URI,       /* "uri" */
};

enum health_type { HEALTH_NONE, HEALTH_TCP, HEALTH_HTTP };

enum listener_proto { PROTO_HTTP, PROTO_TCP, PROTO_UDP };

enum log_format { ACCESS_LOG_COMBINED, ACCESS_LOG_JSON };

enum log_level { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR };

struct cfg_backend {
    struct sl_addr addr;   /* "address: 127.0.0.1:9001" */
    uint32_t weight;       /* default 1, 0..1000000; 0 means drained */
    int line;
};

struct cfg_health {
    enum health_type type; /* "type: tcp|http|none", default none */
    uint32_t interval_ms;  /* default 2000 */
    uint32_t timeout_ms;   /* default 1000 */
    uint32_t rise;         /* default 2 */
    uint32_t fall;         /* default 3 */
    char *http_path;       /* "path", default "/" */
    char *http_host;       /* "host", default: backend address */
    uint16_t status_min;   /* "expect_status: 200-399" (default) or "200" */
    uint16_t status_max;
};

struct cfg_passive {
    uint32_t max_fails;    /* consecutive connect failures or 5xx; default 3, 0 = off */
    uint32_t eject_ms;     /* first ejection, doubled on each repeat; default 10s */
    uint32_t max_eject_ms; /* back-off ceiling; default 300s */
};

struct cfg_pool {
    char *name;
    enum lb_algorithm algorithm; /* default round_robin */
    enum hash_key_kind hash_key; /* for LB_HASH; default client_ip */
    char *hash_key_name;         /* header or cookie name for header:/cookie: keys */
    char *sticky_cookie;         /* "sticky_cookie: NAME": cookie session stickiness, NULL = off */
    uint32_t retries;            /* default 2 */
    uint32_t keepalive;          /* idle upstream connections kept per backend per worker; default 32 */
    uint32_t slow_start_ms;      /* weight ramp after a backend comes back; default 0 = off */
    struct cfg_health health;
    struct cfg_passive passive;
    struct cfg_backend *backends;
    size_t n_backends;
    int line;
};

struct cfg_route {
    char *host;          /* NULL = any host; "*.example.com" matches subdomains */
    char *path_prefix;   /* default "/" */
    size_t pool;         /* index into sl_config.pools */
    int line;
};

struct cfg_timeouts {
    uint32_t connect_ms;           /* default 3s */
    uint32_t client_header_ms;     /* default 10s: whole request head must arrive */
    uint32_t idle_ms;              /* default 60s: keep-alive idle and stream/tcp idle */
    uint32_t upstream_response_ms; /* default 30s: between request sent and response head / body reads */
    uint32_t udp_session_ms;       /* default 30s: UDP session idle */
    uint32_t client_body_ms;       /* default 60s: the request body must arrive within this (see
                                    * cfg_limits.min_body_rate), counted from the end of the head */
};

struct cfg_limits {
    uint32_t max_request_line;   /* default 8192, 414 past it */
    uint32_t max_header_size;    /* default 32768 (whole head), 431 past it */
    uint32_t max_headers;        /* default 100, 431 past it */
    uint32_t buffer_size;        /* per direction per connection; default 16384 */
    uint32_t max_connections;    /* per worker; default 10000 */
    uint32_t min_body_rate;      /* bytes/s: each one received extends timeouts.client_body by
                                  * 1/rate s; default 1024, 0 = no extension */
};

struct cfg_listener {
    char *name;
    struct sl_addr addr;
    enum listener_proto proto;   /* default http */
    struct cfg_route *routes;    /* http only */
    size_t n_routes;
    bool has_default_pool;
    size_t default_pool;         /* "pool:" — tcp/udp target, http fallback route */
    struct cfg_timeouts timeouts;
    struct cfg_limits limits;
    char *access_log;            /* path, "stdout", or NULL (= off) */
    int access_log_line;
    enum log_format access_log_format;
    bool splice;                 /* tcp: use splice(2); default true */
    bool client_toa;             /* http: "client_address: toa" (FullNAT's TOA map) */
    char *toa_map;               /* pinned TOA map; NULL = /sys/fs/bpf/sluice_toa */
    bool allow_underscores;      /* http: "allow_underscores_in_headers"; default false: request
                                  * header fields whose name has '_' are dropped */
    int line;
};

/* ---- the `l4:` section: the XDP forwarder's control plane (sluice l4) ---- */

enum l4_fwd_mode { L4_FWD_DR, L4_FWD_TUN, L4_FWD_NAT, L4_FWD_FULLNAT };

/* Every scheduler builds a weighted Maglev table (the data plane has one
 * lookup); the names exist so configs written for IPVS read naturally. */
enum l4_scheduler { L4_SCHED_MAGLEV, L4_SCHED_SOURCE_HASH, L4_SCHED_WRR, L4_SCHED_RR };

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
    enum listener_proto proto;   /* PROTO_TCP (default) or PROTO_UDP */
    enum l4_fwd_mode mode;       /* default dr */
    enum l4_scheduler scheduler; /* default maglev */
    struct cfg_health health;    /* same keys and defaults as a pool's */
    bool gue;                    /* tun: "encapsulation: gue" (default ipip) */
    struct sl_addr *local_addrs; /* fullnat only: IPs (port 0) */
    size_t n_local_addrs;
    struct cfg_l4_real *reals;
    size_t n_reals;
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
    int line;
};

struct sl_config {
    char *path;
    uint32_t workers;            /* 0 = one per core */
    enum log_level log_level;    /* default info */
    char *log_file;              /* NULL = stderr */
    int log_file_line;
    struct sl_addr admin_addr;   /* default 127.0.0.1:9900 */
    bool admin_enabled;
    uint32_t drain_timeout_ms;   /* "drain_timeout": how long a draining worker
                                  * (SIGTERM, or the old configuration after a
                                  * reload) waits for open connections and
                                  * tunnels; default 30s */
    struct cfg_pool *pools;
    size_t n_pools;
    struct cfg_listener *listeners;
    size_t n_listeners;
    struct cfg_l4 l4;
};

/* One error line, "FILE:LINE: key.path: reason". */
struct config_errors {
    char **lines;
    size_t n;
};

/* Load and validate. Returns NULL and fills errs (at least one line) on
 * failure. On success errs is empty. */
struct sl_config *config_load(const char *path, struct config_errors *errs);

/* Same, from a string in memory; `name` is used as FILE in errors. */
struct sl_config *config_load_string(const char *name, const char *text, size_t len,
                                     struct config_errors *errs);

void config_free(struct sl_config *cfg);

/* Deep copy and release of one l4 service (sluice l4 edits its list of
 * services at run time). copy returns 0 or -1 (out of memory, dst left
 * empty). */
int config_l4_service_copy(struct cfg_l4_service *dst, const struct cfg_l4_service *src);
void config_l4_service_free(struct cfg_l4_service *s);
void config_errors_free(struct config_errors *errs);

/* The files a valid configuration makes the daemon write: log.file and,
 * for `sluice proxy`, every listener's access_log. */
enum config_files {
    CONFIG_FILES_LOG = 1,
    CONFIG_FILES_ACCESS_LOGS = 2,
    CONFIG_FILES_ALL = CONFIG_FILES_LOG | CONFIG_FILES_ACCESS_LOGS,
};

/* Open each of those files the way the daemon will (write, append, create
 * if missing; never truncate), so that one it could not open is an error
 * "FILE:LINE: key.path: cannot open PATH: reason" appended to errs, found
 * before anything starts. A file this had to create is removed again:
 * `sluice check` leaves nothing behind, and neither does a start or reload
 * that is refused for another file (the daemon creates its files itself
 * once it goes ahead). Returns the number of errors added.
 * src/core/config_files.c */
size_t config_check_files(const struct sl_config *cfg, unsigned which, struct config_errors *errs);

/* Lookups used after loading. */
int config_pool_index(const struct sl_config *cfg, const char *name);

const char *log_level_name(enum log_level l);
const char *l4_fwd_mode_name(enum l4_fwd_mode m);
const char *l4_scheduler_name(enum l4_scheduler s);

/* Value parsers shared with the admin API: "10s", "500ms", "2m", "1h" or a
 * bare number of milliseconds; "16k", "1m", "512" bytes. Return 0 on success. */
int parse_duration_ms(const char *s, uint32_t *out);
int parse_size(const char *s, uint32_t *out);

#endif
