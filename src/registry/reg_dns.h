/* The registry's authoritative DNS server: UDP and TCP on each listen
 * address, on the registry's event loop, answering from the model.
 *
 * Names served (ZONE is the configured zone; matching ignores case, and
 * answers echo the question's case):
 *
 *   ZONE                    SOA, NS (the configured names); other types:
 *                           NODATA. The SOA's serial is the model's change
 *                           index (low 32 bits), so it moves with the data.
 *   SERVICE.ZONE            A, AAAA: up to the service's answer_count
 *                           instances of that family, drawn by weight anew
 *                           for each query, from the caller's locality tier
 *                           (reg_select.h); ANY: both. Other types, or no
 *                           answerable instance of the family: NODATA.
 *   _SERVICE._tcp.ZONE      SRV: every healthy instance, priority by
 *                           locality tier (0 datacenter, 1 region, 2 the
 *                           rest), weights scaled per priority; each target
 *                           is ADDR.SERVICE.ZONE (below) and its A or AAAA
 *                           goes in the additional section while it fits.
 *   ADDR.SERVICE.ZONE       the SRV targets: ADDR is an IPv4 address with
 *                           dashes (10-1-0-7) or an IPv6 address as 32 hex
 *                           digits; A or AAAA of that address when an
 *                           enabled instance of weight > 0 of the service
 *                           has it.
 *   a configured NS name    inside the zone and not a service: NODATA (the
 *                           name exists; its address is not the registry's
 *                           to know).
 *   anything else in ZONE   NXDOMAIN. NXDOMAIN and NODATA carry the SOA in
 *                           the authority section, with the SOA minimum
 *                           as its TTL (RFC 2308).
 *   outside ZONE            REFUSED (not authoritative, no recursion).
 *
 * Other outcomes: malformed queries FORMERR, opcodes other than QUERY
 * NOTIMP, EDNS versions above 0 BADVERS, responses and runts dropped (the
 * rules of lib/dns_wire.h); class other than IN (or ANY): REFUSED; AXFR,
 * IXFR: REFUSED (the zone is the live model; there is nothing to transfer).
 * _tcp.ZONE, the empty non-terminal above the SRV names: NODATA.
 *
 * The caller's location (datacenter, region) comes from the subnet table:
 * the address of the EDNS Client Subnet option when the query has one
 * (RFC 7871), else the source address. Answers that depend on it (A,
 * AAAA, ANY and SRV of a service) echo the option with the lookup's scope
 * (the prefix length over which the answer holds); every other answer,
 * and every answer when there is no subnet table, echoes scope 0. A
 * SOURCE PREFIX-LENGTH of 0 means the client asked not to be located: the
 * location is unknown (tier "all") and the scope 0.
 *
 * Sizes: over UDP the answer is cut at the client's EDNS payload size
 * (512 without EDNS) capped by udp_max, with TC set when an answer record
 * does not fit (the client retries over TCP); additional records that do
 * not fit are left out without TC. Over TCP the limit is 65,535 bytes: an
 * A/AAAA answer (at most 256 records) always fits whole; an SRV answer of
 * more records than fit (about 1,400 with a short zone name) keeps the
 * first ones by priority and sets TC.
 *
 * TCP: several queries per connection, answered in order (pipelined
 * queries too), each message with its two-byte length. Bounded: at most
 * tcp_max_conns connections (more are closed at once and counted as
 * dropped), a connection idle for tcp_idle_ms is closed, a connection
 * holds at most one message being read (up to 65,537 bytes) and the
 * answers the socket would not take yet (up to about 80 KiB), and reads
 * no more queries until those are sent.
 *
 * Threading: the server runs on one event loop, the thread that owns the
 * model; nothing locks.
 */
#ifndef SLUICE_REGISTRY_REG_DNS_H
#define SLUICE_REGISTRY_REG_DNS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/addr.h"
#include "registry/reg_model.h"
#include "registry/reg_subnet.h"

struct ev_loop;
struct metrics_registry;

#define REG_DNS_MAX_LISTEN 8
#define REG_DNS_MAX_NS 8

struct reg_dns_conf {
    struct sl_addr listen[REG_DNS_MAX_LISTEN]; /* UDP and TCP on each; port 0: any free port */
    size_t n_listen;
    char zone[256];                 /* text, "sluice.test." (final dot optional) */
    char ns[REG_DNS_MAX_NS][256];   /* NS names at the apex; none: ns1.ZONE */
    size_t n_ns;
    char soa_mbox[256];             /* the SOA's RNAME; "": hostmaster.ZONE */
    uint32_t soa_refresh, soa_retry, soa_expire, soa_minimum;  /* seconds */
    uint32_t apex_ttl;              /* TTL of the SOA and NS answers (default 3600 s) */
    uint16_t udp_max;               /* the largest UDP answer (512..65535, default 1232) */
    uint32_t tcp_max_conns;         /* default 1000 */
    uint32_t tcp_idle_ms;           /* default 10 s */
};

/* zone "sluice.test.", refresh 1 h, retry 10 min, expire 1 week, minimum
 * 30 s, apex TTL 1 h, udp_max 1232, 1000 TCP connections idle 10 s, no
 * listen address. */
void reg_dns_conf_defaults(struct reg_dns_conf *c);

/* -1 with a reason naming the field ("dns.zone: ...") when a value is out
 * of range or a name is not a valid DNS name. */
int reg_dns_conf_check(const struct reg_dns_conf *c, char *err, size_t errlen);

struct reg_dns;

/* Bind every listen address (UDP and TCP) and answer from m, callers
 * placed by subnets (may be NULL: every location unknown). The model and
 * the subnet table must outlive the server (or be replaced first, see
 * reg_dns_set_subnets). NULL with a reason ("dns listener 127.0.0.1:53:
 * Address already in use") when a socket cannot be bound or the conf is
 * bad; nothing is left open then. */
struct reg_dns *reg_dns_start(struct ev_loop *loop, const struct reg_dns_conf *c, struct reg_model *m,
                              const struct reg_subnets *subnets, char *err, size_t errlen);

/* A reload: later queries are placed by this table (may be NULL). The old
 * one may be freed as soon as this returns. */
void reg_dns_set_subnets(struct reg_dns *d, const struct reg_subnets *subnets);

/* Close every socket and connection and free the server (NULL: nothing). */
void reg_dns_stop(struct reg_dns *d);

/* The address listener i (in conf order) is bound to, with the port the
 * kernel chose for port 0 (UDP and TCP share it). NULL past the end. */
const struct sl_addr *reg_dns_bound(const struct reg_dns *d, size_t i);

enum reg_dns_qtype_slot {
    REG_DNS_Q_A, REG_DNS_Q_AAAA, REG_DNS_Q_SRV, REG_DNS_Q_SOA, REG_DNS_Q_NS, REG_DNS_Q_ANY, REG_DNS_Q_OTHER,
    REG_DNS_Q_NONE,               /* no question was read (malformed, other opcodes) */
    REG_DNS_QTYPES
};

enum reg_dns_rcode_slot {
    REG_DNS_R_NOERROR, REG_DNS_R_FORMERR, REG_DNS_R_SERVFAIL, REG_DNS_R_NXDOMAIN, REG_DNS_R_NOTIMP,
    REG_DNS_R_REFUSED, REG_DNS_R_BADVERS, REG_DNS_RCODES
};

enum reg_dns_drop_reason {
    REG_DNS_DROP_MALFORMED,       /* no answer is due: a runt or a response (QR set) */
    REG_DNS_DROP_UDP_SEND,        /* the UDP socket would not take the answer */
    REG_DNS_DROP_TCP_LIMIT,       /* a TCP connection past tcp_max_conns */
    REG_DNS_DROP_TCP_IDLE,        /* a TCP connection closed for idleness */
    REG_DNS_DROP_TCP_ERROR,       /* a TCP connection closed on a read/write error */
    REG_DNS_DROP_ERROR,           /* an answer could not be written (out of memory) */
    REG_DNS_DROPS
};

struct reg_dns_stats {
    uint64_t queries_udp, queries_tcp;     /* messages received (dropped ones too) */
    uint64_t by_qtype[REG_DNS_QTYPES];     /* answered queries by question type */
    uint64_t by_rcode[REG_DNS_RCODES];     /* answers by rcode */
    uint64_t nodata;                       /* NOERROR answers with no answer record */
    uint64_t truncated;                    /* answers sent with TC */
    uint64_t ecs;                          /* queries with a valid Client Subnet option */
    uint64_t by_tier[3];                   /* service answers by locality tier (enum reg_tier) */
    uint64_t fail_open;                    /* service answers that failed open (protect threshold) */
    uint64_t dropped[REG_DNS_DROPS];
    uint64_t tcp_accepted;
    uint32_t tcp_open;                     /* connections open now */
};

void reg_dns_stats(const struct reg_dns *d, struct reg_dns_stats *out);

/* Names used in metrics labels: "A", "NOERROR", "udp_send"... */
const char *reg_dns_qtype_name(enum reg_dns_qtype_slot s);
const char *reg_dns_rcode_name(enum reg_dns_rcode_slot s);
const char *reg_dns_drop_name(enum reg_dns_drop_reason r);

/* Register the sluice_registry_dns_* families on a metrics registry
 * (0, or -1 when it is full). d must outlive the registry's use. */
int reg_dns_metrics(struct metrics_registry *reg, struct reg_dns *d);

/* Answer one query message (no TCP length prefix) as the server would,
 * into resp[0..cap) (cap at least 512): what the UDP and TCP paths call,
 * exposed for the fuzz target. from is the client's address (for the
 * location when there is no Client Subnet option). Returns the answer's
 * length, or 0 when nothing is to be sent. */
size_t reg_dns_answer(struct reg_dns *d, const uint8_t *msg, size_t len, const struct sockaddr *from, bool tcp,
                      uint8_t *resp, size_t cap);

#endif
