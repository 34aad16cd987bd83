/* The agent's DNS server: a local stub resolver on each caller host (the
 * DNS-F idea), UDP and TCP on each listen address, on the agent's event
 * loop.
 *
 * Names under the zone ("registered names", as the registry's own DNS
 * names them, docs/registry-dns.md) are answered here, from the lists the
 * source keeps (libsluice in the daemon: the chosen locality tier of this
 * host, protection applied), authoritative (AA), with a short TTL:
 *
 *   ZONE                 SOA (a synthetic one: ns1.ZONE, hostmaster.ZONE,
 *                        minimum negative_ttl); other types NODATA.
 *   SERVICE.ZONE         A, AAAA: up to the service's answer_count members
 *                        of that family, drawn by weight without
 *                        replacement for each query; ANY: both. No member
 *                        of the family, or another type: NODATA.
 *   _SERVICE._tcp.ZONE   SRV: the members picks draw from at priority 0,
 *                        the service's other healthy instances at priority
 *                        1, each target ADDR.SERVICE.ZONE with its address
 *                        in the additional section while it fits.
 *   ADDR.SERVICE.ZONE    the SRV targets (10-1-0-7, or 32 hex digits):
 *                        A or AAAA when an instance has that address.
 *   anything else        NXDOMAIN, with the SOA.
 *
 * TTL: min(the service's dns_ttl, ttl_cap). A service is followed from the
 * first query that names it (or from the start, for the file's services),
 * at most max_services of them (past that: SERVFAIL, counted). Until its
 * first list arrives a query is parked, without blocking the loop, for up
 * to first_wait, then answered SERVFAIL; once the registry has said the
 * service does not exist, NXDOMAIN. When the registry is unreachable the
 * source's last list (or its cache directory's) keeps being answered.
 *
 * Every other name (any class, any type) is forwarded: the client's query
 * byte for byte with a new random ID, from a new socket (a random source
 * port) connected to the upstream, over UDP for a UDP client and over TCP
 * for a TCP client. An answer counts only when it comes from that upstream
 * to that socket with our ID, QR set and the same question (name without
 * regard to case, type, class); anything else is ignored and counted. The
 * answer goes back byte for byte with the client's ID restored (a UDP
 * answer with TC set goes back as it is: the client retries over TCP).
 * An attempt that times out (upstream_timeout) or fails (ICMP refused, a
 * closed connection) moves to the next upstream; the next queries start
 * at the upstream that last answered. When every upstream has failed:
 * SERVFAIL. Forwarded and parked queries together are at most
 * max_outstanding; past that a query is answered SERVFAIL at once.
 *
 * Malformed queries FORMERR, other opcodes NOTIMP, EDNS versions above 0
 * BADVERS, runts and responses dropped (lib/dns_wire.h), for every name;
 * under the zone a class other than IN or ANY, AXFR and IXFR: REFUSED.
 */
#ifndef SLUICE_AGENT_AGENT_DNS_H
#define SLUICE_AGENT_AGENT_DNS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include <sluice/sluice.h>

#include "lib/addr.h"
#include "lib/dns_wire.h"
#include "agent/agent_conf.h"

struct ev_loop;
struct metrics_registry;

struct agent_dns_conf {
    struct sl_addr listen[AGENT_MAX_LISTEN];   /* port 0: any free port (tests) */
    size_t n_listen;
    char zone[AGENT_ZONE_MAX];
    struct sl_addr upstreams[AGENT_MAX_UPSTREAMS];
    size_t n_upstreams;
    uint32_t ttl_cap_s, negative_ttl_s;
    uint32_t first_wait_ms, upstream_timeout_ms;
    uint32_t max_outstanding, max_services;
    uint16_t udp_max;
    uint32_t tcp_max_conns, tcp_idle_ms;
};

/* The conf from the file's agent: section and the upstreams to use. */
void agent_dns_conf_from(const struct cfg_agent *a, const struct sl_addr *upstreams, size_t n_upstreams,
                         struct agent_dns_conf *out);

enum agent_svc_state {
    AGENT_SVC_PENDING,   /* no list yet and the registry has not said it does not exist */
    AGENT_SVC_MISSING,   /* the registry said the service does not exist */
    AGENT_SVC_READY,     /* a list, from any source (it may be empty) */
};

struct agent_svc_info {
    enum agent_svc_state state;
    uint64_t version;        /* moves with every change of the lists */
    uint32_t dns_ttl;        /* the service's TTL, seconds */
    uint32_t answer_count;   /* A/AAAA records per answer (at least 1) */
};

/* Where the registered names' lists come from: libsluice in the daemon
 * (agent_daemon.c), fixed lists in the fuzz target. Called on the loop. */
struct agent_source_ops {
    /* Start following service `name` (lower case, one label); a handle, or
     * NULL when it cannot be followed. */
    void *(*subscribe)(void *arg, const char *name);
    void (*info)(void *arg, void *handle, struct agent_svc_info *out);
    /* The members picks draw from (all false) or every instance (all true),
     * into out (at most cap); returns how many there are (sluice_members). */
    int (*members)(void *arg, void *handle, bool all, struct sluice_member *out, size_t cap);
};

struct agent_dns;

/* Bind every listen address (UDP and TCP; loop may be NULL with no listen
 * address: the fuzz target answers through agent_dns_answer). NULL with a
 * reason when a socket cannot be bound or the zone is not a name. */
struct agent_dns *agent_dns_start(struct ev_loop *loop, const struct agent_dns_conf *c,
                                  const struct agent_source_ops *ops, void *ops_arg, char *err, size_t errlen);
void agent_dns_stop(struct agent_dns *d);

/* Follow a service from now on (the file's services), as a query would. */
void agent_dns_follow(struct agent_dns *d, const char *name);

/* The address listener i is bound to (port 0 resolved); NULL past the end. */
const struct sl_addr *agent_dns_bound(const struct agent_dns *d, size_t i);

/* ---- one query, as the UDP and TCP paths handle it (the fuzz target's
 * entry) ------------------------------------------------------------------ */

enum agent_action {
    AGENT_ACT_ANSWER,    /* the answer is in resp */
    AGENT_ACT_DROP,      /* nothing is to be sent */
    AGENT_ACT_WAIT,      /* a registered name whose first list is not here yet */
    AGENT_ACT_FORWARD,   /* not ours: to the upstreams */
};

/* Handle the query msg[0..len) into resp[0..cap) (cap at least 512);
 * *resp_len is the answer's length for AGENT_ACT_ANSWER. */
enum agent_action agent_dns_answer(struct agent_dns *d, const uint8_t *msg, size_t len, bool tcp, uint8_t *resp,
                                   size_t cap, size_t *resp_len);

/* SERVFAIL for a query that could not be answered (waited too long, every
 * upstream failed); 0 when nothing can be sent (a runt). */
size_t agent_dns_servfail(struct agent_dns *d, const uint8_t *msg, size_t len, bool tcp, uint8_t *resp, size_t cap);

/* What a forwarded query expects of an upstream's answer. */
struct agent_fwd_expect {
    uint16_t id;               /* the ID we sent */
    struct dns_name qname;
    uint16_t qtype, qclass;
};

/* Whether resp[0..len) is the upstream's answer to the query we sent
 * (a response, our ID, the same question); when it is, the client's ID is
 * written into it. */
bool agent_fwd_accept(const struct agent_fwd_expect *e, uint8_t *resp, size_t len, uint16_t client_id);

/* ---- stats --------------------------------------------------------------- */

struct agent_dns_stats {
    uint64_t queries_udp, queries_tcp;   /* messages received */
    uint64_t local;                      /* answered from the lists (records, NODATA) */
    uint64_t nxdomain;                   /* names under the zone the registry does not know */
    uint64_t servfail;                   /* SERVFAIL sent (no list in time, every upstream failed, full) */
    uint64_t forwarded;                  /* answered by an upstream */
    uint64_t errors;                     /* FORMERR, NOTIMP, BADVERS, REFUSED */
    uint64_t dropped;                    /* runts and responses; answers the socket would not take */
    uint64_t parked;                     /* queries that waited for a first list */
    uint64_t upstream_failures[AGENT_MAX_UPSTREAMS];  /* attempts that timed out or failed */
    uint64_t upstream_ignored;           /* datagrams from an upstream that did not match the query */
    uint64_t outstanding_full;           /* queries answered SERVFAIL: max_outstanding reached */
    uint64_t services_full;              /* queries answered SERVFAIL: max_services reached */
    uint64_t tcp_accepted;
    uint32_t tcp_open;
    uint32_t outstanding;                /* forwarded and parked queries now */
    uint32_t services;                   /* services followed */
};

void agent_dns_stats(const struct agent_dns *d, struct agent_dns_stats *out);
const struct sl_addr *agent_dns_upstream(const struct agent_dns *d, size_t i);

/* Register the sluice_agent_dns_* families (0, or -1 when full). */
int agent_dns_metrics(struct metrics_registry *reg, struct agent_dns *d);

#endif
