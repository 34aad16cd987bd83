/* The proxy's part of the configuration (its config section): workers:,
 * drain_timeout:, pools: and listeners:. See docs/configuration.md.
 *
 * Registered with the core's section table by the proxy module
 * (proxy_module.c); a loaded configuration's proxy part is proxy_conf(cfg).
 * The structs are plain data owned by the struct sl_config.
 */
#ifndef SLUICE_PROXY_PROXY_CONF_H
#define SLUICE_PROXY_PROXY_CONF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/addr.h"
#include "lib/balance.h"
#include "core/config.h"
#include "core/discovery_conf.h"
#include "core/health_conf.h"
#include "proxy/ratelimit_conf.h"
#include "proxy/http_vars_conf.h"
#include "proxy/pool_dyn_conf.h"
#include "proxy/tls_conf.h"
#include "proxy/tls_openssl.h"
#include "proxy/tls_upstream.h"

enum hash_key_kind {
    HASH_KEY_CLIENT_IP, /* "client_ip" */
    HASH_KEY_HEADER,    /* "header:NAME" */
    HASH_KEY_COOKIE,    /* "cookie:NAME" */
    HASH_KEY_URI,       /* "uri" */
};

enum listener_proto { PROTO_HTTP, PROTO_TCP, PROTO_UDP };

enum log_format { ACCESS_LOG_COMBINED, ACCESS_LOG_JSON, ACCESS_LOG_CUSTOM /* a name of log_formats: */ };

struct cfg_backend {
    struct sl_addr addr;   /* "address: 127.0.0.1:9001" (empty for a name) */
    char *host;            /* "address: app.internal:8080": the name, resolved at run time
                            * (proxy/pool_dyn.h); NULL for an address */
    uint16_t port;         /* with host */
    uint32_t weight;       /* default 1, 0..1000000; 0 means drained */
    int line;
};

/* An address block of trusted_proxies: "10.0.0.0/8", "192.0.2.7", "2001:db8::/32". */
struct cfg_cidr {
    int family;          /* AF_INET or AF_INET6 */
    uint8_t addr[16];    /* network byte order; 4 used for AF_INET */
    uint8_t prefix;      /* bits */
};

/* The client's address in and out (proxy/proxy_protocol_conf.c, docs/configuration.md). */
struct cfg_client_addr {
    unsigned proxy_protocol;     /* "proxy_protocol": 0 = off, else PROXY_HDR_ACCEPT_* (lib/proxy_header.h) */
    struct cfg_cidr *trusted;    /* "trusted_proxies" */
    size_t n_trusted;
    size_t n_trusted_items;      /* entries written, valid or not */
    bool x_real_ip;              /* http: add X-Real-IP */
    bool forwarded;              /* http: add RFC 7239 Forwarded */
    int proxy_protocol_line, x_real_ip_line, forwarded_line;
};

enum send_proxy { SEND_PROXY_OFF, SEND_PROXY_V1, SEND_PROXY_V2 };

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
    struct cfg_backend *backends;  /* NULL for a discovered pool */
    size_t n_backends;
    /* "discovery:": the backends come from a registry service instead
     * (core/discovery_conf.h); NULL for a pool with a fixed list. */
    struct cfg_discovery *discovery;
    struct cfg_pool_tls tls;       /* "tls:": TLS to the backends (proxy/tls_upstream.h) */
    enum send_proxy send_proxy;    /* "send_proxy": a PROXY header on every backend connection */
    /* "max_backends:": slots for backends that change at run time (names,
     * the API); 0 = a fixed list (proxy/pool_dyn_conf.h). */
    uint32_t max_backends;
    struct cfg_resolve resolve;    /* "resolve:" */
    int line;
};

/* Backend slots the pool has in the shared region: its fixed backends, or
 * for a discovered pool discovery.max_members slots that members come and
 * go in (proxy/slots.h). */
static inline size_t cfg_pool_slots(const struct cfg_pool *p)
{
    return p->discovery ? p->discovery->max_members : p->max_backends ? p->max_backends : p->n_backends;
}

/* Its backends sit in slots that the master fills (a discovered pool, or
 * a dynamic one: names, the API) rather than in the configured order. */
static inline bool cfg_pool_slotted(const struct cfg_pool *p)
{
    return p->discovery || p->max_backends;
}

struct cfg_route {
    char *host;          /* NULL = any host; "*.example.com" matches subdomains */
    char *path_prefix;   /* default "/" */
    size_t pool;         /* index into proxy_conf.pools (ROUTE_TO_POOL) */
    uint32_t rate_limits; /* "rate_limits: [NAME, ...]": bit k = the listener's rate_limits[k] */
    char *name;          /* "name:", for $route; default "HOST/PREFIX" or "/PREFIX" */
    struct cfg_route_answer answer;          /* redirect: or return: instead of a pool */
    struct cfg_header_rules request_headers, response_headers; /* the route's own rules */
    struct header_plan request_plan, response_plan; /* the listener's rules, then the route's */
    struct cfg_error_pages *error_pages; /* the route's own pages; NULL or no page for a status: the listener's */
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

/* "http2:" of an http listener: HTTP/2 to clients (proxy/http2_conf.c,
 * docs/http2.md). Flood limits are token buckets: at most max_X of that
 * frame kind in a burst, refilled at max_X per flood_window. */
struct cfg_http2 {
    uint32_t max_concurrent_streams; /* SETTINGS_MAX_CONCURRENT_STREAMS; default 128 */
    uint32_t initial_window_size;    /* per stream, request bodies; default 64k */
    uint32_t max_frame_size;         /* SETTINGS_MAX_FRAME_SIZE; default 16k */
    uint32_t max_header_list_size;   /* default 32k; past it: 431 */
    uint32_t max_continuations;      /* CONTINUATION frames after one HEADERS; default 8 */
    uint32_t flood_window_ms;        /* default 10s */
    uint32_t max_resets;             /* RST_STREAM from the client; default 1000 */
    uint32_t max_pings;              /* default 100 */
    uint32_t max_settings;           /* default 100 */
    uint32_t max_empty_frames;       /* DATA without payload nor END_STREAM; default 100 */
};

struct cfg_error_pages;

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
    const struct cfg_log_format *log_format; /* ACCESS_LOG_CUSTOM: the entry of proxy_conf.log_formats */
    struct cfg_header_rules request_headers, response_headers; /* http_vars_conf.h */
    struct header_plan request_plan, response_plan; /* for requests on the default pool (no route) */
    bool keep_request_head;      /* a log format or a response rule reads the request after its head
                                  * left the buffer: http_txn keeps a copy */
    bool keep_response_head;     /* the log format reads $sent_http_NAME: the same for the response */
    bool splice;                 /* tcp: use splice(2); default true */
    bool client_toa;             /* http: "client_address: toa" (FullNAT's TOA map) */
    char *toa_map;               /* pinned TOA map; NULL = /sys/fs/bpf/sluice_toa */
    bool allow_underscores;      /* http: "allow_underscores_in_headers"; default false: request
                                  * header fields whose name has '_' are dropped */
    struct cfg_tls *tls;         /* "tls:": http and tcp listeners; NULL = plain (proxy/tls_conf.h) */
    struct cfg_http2 http2;      /* http only */
    struct cfg_error_pages *error_pages; /* "error_pages:", http only; NULL = none (proxy/error_pages.h) */
    struct cfg_client_addr client_addr; /* proxy_protocol, trusted_proxies, x_real_ip, forwarded */
    struct cfg_rate_limit *rate_limits; /* "rate_limits:", http only (proxy/ratelimit_conf.h) */
    size_t n_rate_limits;
    struct cfg_conn_limit conn_limit;   /* "connection_limit:", http and tcp; max 0 = off */
    int line;
};

struct proxy_conf {
    uint32_t workers;            /* 0 = one per core */
    uint32_t drain_timeout_ms;   /* "drain_timeout": how long a draining worker
                                  * (SIGTERM, or the old configuration after a
                                  * reload) waits for open connections and
                                  * tunnels; default 30s */
    struct cfg_pool *pools;
    size_t n_pools;
    struct cfg_listener *listeners;
    size_t n_listeners;
    struct cfg_openssl openssl;  /* "openssl:": providers, async (proxy/tls_openssl.h) */
    struct cfg_log_format *log_formats; /* "log_formats:" (proxy/http_vars_conf.h) */
    size_t n_log_formats;
};

/* The section: root keys workers, pools, listeners, drain_timeout, openssl. */
extern const struct config_section proxy_conf_section;

/* The proxy's part of cfg (empty when the file has none of its keys);
 * NULL only if the section was never registered. */
struct proxy_conf *proxy_conf(const struct sl_config *cfg);

/* Index of the first pool called `name`, or -1. */
int proxy_conf_pool_index(const struct proxy_conf *pc, const char *name);

#endif
