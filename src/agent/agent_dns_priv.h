/* The agent's DNS server inside: shared by agent_dns.c (the answers and
 * the services followed) and agent_net.c (sockets, parked and forwarded
 * queries). Not for other files. */
#ifndef SLUICE_AGENT_AGENT_DNS_PRIV_H
#define SLUICE_AGENT_AGENT_DNS_PRIV_H

#include "agent/agent_dns.h"
#include "core/dns_server.h"
#include "core/evloop.h"

#define AGENT_MEMBERS_MAX 4096     /* instances of one service read per change */
#define AGENT_UDP_BATCH DNS_UDP_BATCH
#define AGENT_UDP_BUF 4096

/* One instance as the answers need it. */
struct svc_member {
    uint8_t addr[16];              /* IPv4 in the first 4 bytes */
    sa_family_t family;
    uint16_t port;
    uint16_t weight;               /* 1..10000 */
    bool healthy;
};

struct agent_svc {
    char name[DNS_LABEL_MAX + 1];
    uint8_t name_len;
    void *handle;                  /* the source's; NULL: could not be followed */
    struct agent_svc_info info;
    bool loaded;                   /* members below are info.version's */
    uint64_t loaded_version;
    struct svc_member *m;          /* the members picks draw from, then the other instances */
    uint32_t n_tier, n_all, cap;
    struct agent_svc *next;        /* hash chain */
};

/* What the last answer was, for the counters (the net layer counts what it sends). */
enum agent_kind { KIND_NONE, KIND_LOCAL, KIND_NXDOMAIN, KIND_SERVFAIL, KIND_ERROR, KIND_SERVICES_FULL };

struct udp_listener {
    struct agent_dns *d;
    struct ev_io io;
    bool pktinfo;
};

struct tcp_listener {
    struct agent_dns *d;
    struct ev_io io;
    struct ev_timer pause;             /* accept failed for lack of descriptors: wait a little */
};

struct tcp_conn;
struct pending;

struct agent_dns {
    struct ev_loop *loop;
    struct agent_dns_conf conf;
    const struct agent_source_ops *ops;
    void *ops_arg;

    uint8_t zone_wire[DNS_NAME_MAX];
    size_t zone_len;
    struct dns_name zone;
    uint8_t ns_wire[DNS_NAME_MAX], mbox_wire[DNS_NAME_MAX];

    uint64_t rng;
    struct dns_query q;
    enum agent_kind kind;
    struct sluice_member *scratch;     /* AGENT_MEMBERS_MAX */
    uint32_t *draw;                    /* AGENT_MEMBERS_MAX: indexes for weighted draws */

    struct agent_svc **buckets;
    size_t n_buckets;
    uint32_t n_svcs;

    /* sockets (agent_net.c) */
    size_t n_listen;
    struct udp_listener udp[AGENT_MAX_LISTEN];
    struct tcp_listener tcp[AGENT_MAX_LISTEN];
    struct sl_addr bound[AGENT_MAX_LISTEN];
    uint8_t *udp_bufs;                 /* 2 * AGENT_UDP_BATCH * AGENT_UDP_BUF: queries, then answers */
    uint8_t *out_buf;                  /* DNS_MSG_MAX + 2: one answer */
    struct dns_udp_batch batch;        /* over the first half of udp_bufs */
    struct pending *pending;           /* forwarded and parked queries */
    uint32_t n_pending;
    struct ev_timer park_timer;        /* runs while queries are parked */
    struct dns_tcp_conns conns;        /* of struct tcp_conn (agent_net.c) */
    size_t preferred;                  /* the upstream that answered last */

    struct agent_dns_stats stats;
};

/* agent_dns.c */
uint64_t agent_rand(struct agent_dns *d);
void agent_count_kind(struct agent_dns *d, enum agent_kind k);

/* agent_net.c */
int agent_net_start(struct agent_dns *d, char *err, size_t errlen);
void agent_net_stop(struct agent_dns *d);

#endif
