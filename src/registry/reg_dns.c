/* See reg_dns.h.
 *
 * One server object holds everything the hot path touches: the parsed
 * query (struct dns_query is about 700 bytes, so one per server rather than
 * one per call), the random source for weighted draws, the UDP batch
 * buffers and the TCP scratch buffer. Answers are written by lib/dns_wire
 * straight into the datagram's own buffer (UDP) or the scratch buffer
 * (TCP); nothing on the query path allocates.
 *
 * The sockets, the UDP batch and the TCP framing are core/dns_server's
 * (shared with sluice agent). UDP: recvmmsg() takes up to DNS_UDP_BATCH
 * datagrams per call, each is answered in place and the answers leave in
 * one sendmmsg(), from the address the query came to. Answers the socket
 * will not take (its buffer is full) are dropped and counted.
 *
 * TCP: each connection reads into a buffer that grows to the message being
 * read (at most 2 + 65,535 bytes), answers every complete message in it into
 * the shared scratch buffer (a batch of up to TCP_BATCH bytes of answers,
 * so pipelined queries leave in one write), and writes the batch. What the
 * socket does not take is copied into the connection's output buffer, and
 * the connection reads nothing more until that is sent: per connection,
 * memory stays below one message in and one batch plus one answer out.
 */
#include "registry/reg_dns.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/dns_server.h"
#include "core/evloop.h"
#include "core/metrics.h"
#include "lib/dns_wire.h"
#include "registry/reg_select.h"

#define UDP_ROUNDS 8              /* recvmmsg calls per readiness event, for fairness */
#define UDP_BUF_MIN 4096          /* room for any sane query (and the answer, in place) */
#define TCP_MSG_MAX (2 + DNS_MSG_MAX)
#define TCP_BATCH 16384           /* answers gathered before a write */
#define TCP_SCRATCH (TCP_BATCH + TCP_MSG_MAX)
#define SRV_CAP 4096              /* more SRV records than ever fit in 65,535 bytes */

struct reg_dns;

struct udp_sock {
    struct reg_dns *d;
    struct ev_io io;
    bool pktinfo;                 /* bound to a wildcard address: keep each datagram's destination */
};

struct tcp_listener {
    struct reg_dns *d;
    struct ev_io io;
    struct ev_timer pause;        /* accept failed for lack of descriptors: wait a little */
};

struct tcp_conn {
    struct dns_tcp_conn t;        /* first: the list holds these */
    struct reg_dns *d;
};

struct reg_dns {
    struct ev_loop *loop;
    struct reg_model *model;
    const struct reg_subnets *subnets;
    struct reg_dns_conf conf;

    /* The names, in wire form, built once. */
    uint8_t zone_wire[DNS_NAME_MAX];
    size_t zone_len;
    struct dns_name zone;
    uint8_t ns_wire[REG_DNS_MAX_NS][DNS_NAME_MAX];
    struct dns_name ns_name[REG_DNS_MAX_NS];
    size_t n_ns;
    uint8_t mbox_wire[DNS_NAME_MAX];

    struct reg_rand rnd;
    struct dns_query q;
    struct reg_srv srv[SRV_CAP];

    size_t n_listen;
    struct udp_sock udp[REG_DNS_MAX_LISTEN];
    struct tcp_listener tcp[REG_DNS_MAX_LISTEN];
    struct sl_addr bound[REG_DNS_MAX_LISTEN];

    /* UDP batch: answers are written in place, over their query. */
    size_t udp_buf_size;
    uint8_t *udp_bufs;
    struct dns_udp_batch batch;

    uint8_t *tcp_scratch;
    struct dns_tcp_conns conns;

    struct reg_dns_stats stats;
};

/* ---- configuration ----------------------------------------------------- */

void reg_dns_conf_defaults(struct reg_dns_conf *c)
{
    *c = (struct reg_dns_conf){
        .soa_refresh = 3600,
        .soa_retry = 600,
        .soa_expire = 7 * 86400,
        .soa_minimum = 30,
        .apex_ttl = 3600,
        .udp_max = 1232,
        .tcp_max_conns = 1000,
        .tcp_idle_ms = 10000,
    };
    snprintf(c->zone, sizeof c->zone, "sluice.test.");
}

static int check_name(const char *what, const char *text, char *err, size_t errlen)
{
    uint8_t wire[DNS_NAME_MAX];
    if (dns_name_from_text(text, wire) < 0) {
        snprintf(err, errlen, "%s: \"%s\" is not a DNS name (labels of 1..63 bytes, at most 255 in all, no escapes)",
                 what, text);
        return -1;
    }
    return 0;
}

int reg_dns_conf_check(const struct reg_dns_conf *c, char *err, size_t errlen)
{
    if (c->n_listen > REG_DNS_MAX_LISTEN) {
        snprintf(err, errlen, "dns.listen: at most %d addresses", REG_DNS_MAX_LISTEN);
        return -1;
    }
    if (c->n_ns > REG_DNS_MAX_NS) {
        snprintf(err, errlen, "dns.ns: at most %d names", REG_DNS_MAX_NS);
        return -1;
    }
    if (check_name("dns.zone", c->zone, err, errlen) < 0)
        return -1;
    for (size_t i = 0; i < c->n_ns; i++)
        if (check_name("dns.ns", c->ns[i], err, errlen) < 0)
            return -1;
    if (c->soa_mbox[0] && check_name("dns.soa.mbox", c->soa_mbox, err, errlen) < 0)
        return -1;
    if (c->udp_max < DNS_UDP_MIN) {
        snprintf(err, errlen, "dns.udp_max: must be between %d and %d", DNS_UDP_MIN, DNS_MSG_MAX);
        return -1;
    }
    if (c->tcp_max_conns < 1) {
        snprintf(err, errlen, "dns.tcp.max_conns: must be at least 1");
        return -1;
    }
    if (c->tcp_idle_ms < 1) {
        snprintf(err, errlen, "dns.tcp.idle: must be at least 1 ms");
        return -1;
    }
    if (c->apex_ttl > REG_TTL_MAX || c->soa_minimum > REG_TTL_MAX) {
        snprintf(err, errlen, "dns.%s: at most %d s", c->apex_ttl > REG_TTL_MAX ? "apex_ttl" : "soa.minimum",
                 REG_TTL_MAX);
        return -1;
    }
    return 0;
}

/* "LABEL.ZONE" in wire form into out; -1 when it would pass 255 bytes. */
static int name_under_zone(const char *label, size_t llen, const uint8_t *zone, size_t zlen, uint8_t *out)
{
    if (llen == 0 || llen > DNS_LABEL_MAX || 1 + llen + zlen > DNS_NAME_MAX)
        return -1;
    out[0] = (uint8_t)llen;
    memcpy(out + 1, label, llen);
    memcpy(out + 1 + llen, zone, zlen);
    return (int)(1 + llen + zlen);
}

/* The conf's names in wire form: the zone, the NS names (default ns1.ZONE)
 * and the SOA mailbox (default hostmaster.ZONE). */
static int build_names(struct reg_dns *d, char *err, size_t errlen)
{
    int n = dns_name_from_text(d->conf.zone, d->zone_wire);
    if (n < 0 || dns_name_set(&d->zone, d->zone_wire, (size_t)n) < 0) {
        snprintf(err, errlen, "dns.zone: \"%s\" is not a DNS name", d->conf.zone);
        return -1;
    }
    d->zone_len = (size_t)n;
    d->n_ns = d->conf.n_ns;
    for (size_t i = 0; i < d->n_ns; i++) {
        n = dns_name_from_text(d->conf.ns[i], d->ns_wire[i]);
        if (n < 0 || dns_name_set(&d->ns_name[i], d->ns_wire[i], (size_t)n) < 0) {
            snprintf(err, errlen, "dns.ns: \"%s\" is not a DNS name", d->conf.ns[i]);
            return -1;
        }
    }
    if (d->n_ns == 0) {
        if (name_under_zone("ns1", 3, d->zone_wire, d->zone_len, d->ns_wire[0]) < 0 ||
            dns_name_set(&d->ns_name[0], d->ns_wire[0], DNS_NAME_MAX) < 0) {
            snprintf(err, errlen, "dns.zone: too long to hold ns1.ZONE");
            return -1;
        }
        d->n_ns = 1;
    }
    if (d->conf.soa_mbox[0]) {
        if (dns_name_from_text(d->conf.soa_mbox, d->mbox_wire) < 0) {
            snprintf(err, errlen, "dns.soa.mbox: \"%s\" is not a DNS name", d->conf.soa_mbox);
            return -1;
        }
    } else if (name_under_zone("hostmaster", 10, d->zone_wire, d->zone_len, d->mbox_wire) < 0) {
        snprintf(err, errlen, "dns.zone: too long to hold hostmaster.ZONE");
        return -1;
    }
    return 0;
}

/* ---- names of slots (metrics labels) ------------------------------------ */

static const char *const qtype_names[REG_DNS_QTYPES] = {"A", "AAAA", "SRV", "SOA", "NS", "ANY", "other", "none"};
static const char *const rcode_names[REG_DNS_RCODES] = {"NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN",
                                                        "NOTIMP",  "REFUSED", "BADVERS"};
static const char *const drop_names[REG_DNS_DROPS] = {"malformed", "udp_send",  "tcp_limit",
                                                      "tcp_idle",  "tcp_error", "error"};

const char *reg_dns_qtype_name(enum reg_dns_qtype_slot s)
{
    return (unsigned)s < REG_DNS_QTYPES ? qtype_names[s] : "?";
}

const char *reg_dns_rcode_name(enum reg_dns_rcode_slot s)
{
    return (unsigned)s < REG_DNS_RCODES ? rcode_names[s] : "?";
}

const char *reg_dns_drop_name(enum reg_dns_drop_reason r)
{
    return (unsigned)r < REG_DNS_DROPS ? drop_names[r] : "?";
}

static enum reg_dns_qtype_slot qtype_slot(const struct dns_query *q)
{
    if (!q->has_question)
        return REG_DNS_Q_NONE;
    switch (q->qtype) {
    case DNS_TYPE_A: return REG_DNS_Q_A;
    case DNS_TYPE_AAAA: return REG_DNS_Q_AAAA;
    case DNS_TYPE_SRV: return REG_DNS_Q_SRV;
    case DNS_TYPE_SOA: return REG_DNS_Q_SOA;
    case DNS_TYPE_NS: return REG_DNS_Q_NS;
    case DNS_TYPE_ANY: return REG_DNS_Q_ANY;
    default: return REG_DNS_Q_OTHER;
    }
}

static enum reg_dns_rcode_slot rcode_slot(unsigned rcode)
{
    switch (rcode) {
    case DNS_RCODE_NOERROR: return REG_DNS_R_NOERROR;
    case DNS_RCODE_FORMERR: return REG_DNS_R_FORMERR;
    case DNS_RCODE_NXDOMAIN: return REG_DNS_R_NXDOMAIN;
    case DNS_RCODE_NOTIMP: return REG_DNS_R_NOTIMP;
    case DNS_RCODE_REFUSED: return REG_DNS_R_REFUSED;
    case DNS_RCODE_BADVERS: return REG_DNS_R_BADVERS;
    default: return REG_DNS_R_SERVFAIL;
    }
}

/* ---- answering ---------------------------------------------------------- */

/* What one query's answer is being built with. */
struct answer {
    struct reg_dns *d;
    const struct dns_query *q;
    const struct sockaddr *from;
    struct dns_writer w;
    unsigned rcode;
    bool aa;
    uint8_t scope;                /* the Client Subnet scope to echo */
};

/* The caller's location: from the Client Subnet option when there is one
 * (and with it the scope to echo), else from the source address. */
static struct reg_loc locate(struct answer *a)
{
    struct reg_loc loc = {0, 0};
    const struct reg_subnets *t = a->d->subnets;
    const struct dns_query *q = a->q;
    if (!t)
        return loc;
    if (q->has_ecs) {
        uint8_t scope = 0;
        if (q->ecs.source_prefix == 0)
            return loc;   /* the client asked not to be located (RFC 7871 §7.1.2) */
        if (q->ecs.family == DNS_ECS_FAMILY_IPV4) {
            reg_subnets_lookup4(t, q->ecs.addr, &loc, &scope);
        } else {
            reg_subnets_lookup6(t, q->ecs.addr, &loc, &scope);
            /* an IPv4-mapped address is looked up as IPv4, with an IPv4
             * scope; the option speaks of the IPv6 address */
            static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
            if (memcmp(q->ecs.addr, mapped, sizeof mapped) == 0)
                scope = (uint8_t)(scope + 96);
        }
        a->scope = scope;
        return loc;
    }
    if (a->from)
        reg_subnets_lookup_sa(t, a->from, &loc, NULL);
    return loc;
}

static void put_soa(struct answer *a, enum dns_section s, uint32_t ttl)
{
    struct reg_dns *d = a->d;
    struct dns_soa soa = {
        .mname = d->ns_wire[0],
        .rname = d->mbox_wire,
        .serial = (uint32_t)reg_model_index(d->model),
        .refresh = d->conf.soa_refresh,
        .retry = d->conf.soa_retry,
        .expire = d->conf.soa_expire,
        .minimum = d->conf.soa_minimum,
    };
    dns_put_soa(&a->w, s, d->zone_wire, ttl, &soa);
}

/* NXDOMAIN or NODATA: the SOA in the authority section, its TTL the
 * negative-caching time (RFC 2308 §3). Any scope set by a lookup goes:
 * a negative answer is the same for every client. */
static void negative(struct answer *a, unsigned rcode)
{
    a->rcode = rcode;
    a->scope = 0;
    uint32_t ttl = a->d->conf.soa_minimum;
    put_soa(a, DNS_SECTION_AUTHORITY, ttl);
}

static void answer_apex(struct answer *a)
{
    struct reg_dns *d = a->d;
    uint16_t t = a->q->qtype;
    bool any = t == DNS_TYPE_ANY;
    if (t == DNS_TYPE_SOA || any)
        put_soa(a, DNS_SECTION_ANSWER, d->conf.apex_ttl);
    if (t == DNS_TYPE_NS || any)
        for (size_t i = 0; i < d->n_ns; i++)
            if (dns_put_ns(&a->w, DNS_SECTION_ANSWER, a->q->qname.wire, d->conf.apex_ttl, d->ns_wire[i]) < 0)
                break;
    if (t != DNS_TYPE_SOA && t != DNS_TYPE_NS && !any)
        negative(a, DNS_RCODE_NOERROR);
}

static void count_choice(struct reg_dns *d, const struct reg_explain *ex)
{
    d->stats.by_tier[ex->tier]++;
    if (ex->protect_active)
        d->stats.fail_open++;
}

/* A or AAAA records of one family for the service; returns how many. */
static int put_picks(struct answer *a, struct reg_service *svc, struct reg_loc loc, enum reg_family fam,
                     bool *counted)
{
    const struct reg_instance *picked[REG_ANSWER_MAX];
    struct reg_explain ex;
    int n = reg_answer_pick(a->d->model, svc, loc, fam, &a->d->rnd, picked, svc->settings.answer_count, &ex);
    if (n < 0)
        return n;
    if (n > 0 && !*counted) {
        count_choice(a->d, &ex);
        *counted = true;
    }
    uint32_t ttl = svc->settings.dns_ttl;
    const uint8_t *owner = a->q->qname.wire;
    for (int i = 0; i < n; i++) {
        const struct sockaddr_storage *ss = &picked[i]->addr.ss;
        int rc = fam == REG_FAMILY_V4
                     ? dns_put_a(&a->w, DNS_SECTION_ANSWER, owner, ttl,
                                 (const uint8_t *)&((const struct sockaddr_in *)ss)->sin_addr)
                     : dns_put_aaaa(&a->w, DNS_SECTION_ANSWER, owner, ttl,
                                    (const uint8_t *)&((const struct sockaddr_in6 *)ss)->sin6_addr);
        if (rc < 0)
            break;   /* TC is set: the client asks again over TCP */
    }
    return n;
}

static void answer_service(struct answer *a, struct reg_service *svc)
{
    uint16_t t = a->q->qtype;
    if (t != DNS_TYPE_A && t != DNS_TYPE_AAAA && t != DNS_TYPE_ANY) {
        negative(a, DNS_RCODE_NOERROR);
        return;
    }
    struct reg_loc loc = locate(a);
    bool counted = false;
    int n4 = 0, n6 = 0;
    if (t == DNS_TYPE_A || t == DNS_TYPE_ANY)
        n4 = put_picks(a, svc, loc, REG_FAMILY_V4, &counted);
    if ((t == DNS_TYPE_AAAA || t == DNS_TYPE_ANY) && n4 >= 0 && !a->w.truncated)
        n6 = put_picks(a, svc, loc, REG_FAMILY_V6, &counted);
    if (n4 < 0 || n6 < 0) {
        a->rcode = DNS_RCODE_SERVFAIL;
        a->scope = 0;
        a->d->stats.dropped[REG_DNS_DROP_ERROR]++;
    } else if (n4 + n6 == 0) {
        negative(a, DNS_RCODE_NOERROR);
    }
}

/* The bytes of an address, for lib/dns_wire. */
static const uint8_t *addr_bytes(const struct sockaddr_storage *ss)
{
    if (ss->ss_family == AF_INET)
        return (const uint8_t *)&((const struct sockaddr_in *)ss)->sin_addr;
    return (const uint8_t *)&((const struct sockaddr_in6 *)ss)->sin6_addr;
}

static bool same_addr(const struct sockaddr_storage *ss, sa_family_t af, const uint8_t *addr)
{
    return ss->ss_family == af && memcmp(addr_bytes(ss), addr, af == AF_INET ? 4 : 16) == 0;
}

/* ADDR.SERVICE.ZONE (k == 2 and label 1 is a service): the SRV targets. */
static void answer_target(struct answer *a, struct reg_service *svc, const uint8_t *label, size_t len)
{
    sa_family_t af;
    uint8_t addr[16];
    const struct reg_instance *found = NULL;
    if (dns_addr_label_parse(label, len, &af, addr)) {
        for (uint32_t i = 0; i < svc->n_instances && !found; i++) {
            const struct reg_instance *inst = svc->instances[i];
            if (inst->enabled && inst->weight > 0 && same_addr(&inst->addr.ss, af, addr))
                found = inst;
        }
    }
    if (!found) {
        negative(a, DNS_RCODE_NXDOMAIN);
        return;
    }
    uint16_t t = a->q->qtype;
    uint32_t ttl = svc->settings.dns_ttl;
    if (af == AF_INET && (t == DNS_TYPE_A || t == DNS_TYPE_ANY))
        dns_put_a(&a->w, DNS_SECTION_ANSWER, a->q->qname.wire, ttl, addr);
    else if (af == AF_INET6 && (t == DNS_TYPE_AAAA || t == DNS_TYPE_ANY))
        dns_put_aaaa(&a->w, DNS_SECTION_ANSWER, a->q->qname.wire, ttl, addr);
    else
        negative(a, DNS_RCODE_NOERROR);
}

/* The target name ADDR.SERVICE.ZONE of an instance; its length or -1. */
static int srv_target(const struct reg_dns *d, const struct reg_instance *inst, uint8_t *out)
{
    const char *svc = inst->service->name;
    return dns_srv_target(inst->addr.ss.ss_family, addr_bytes(&inst->addr.ss), svc, strlen(svc), d->zone_wire,
                          d->zone_len, out);
}

static void put_addr(struct dns_writer *w, enum dns_section s, const uint8_t *owner, uint32_t ttl,
                     const struct sockaddr_storage *ss, int *rc)
{
    if (ss->ss_family == AF_INET)
        *rc = dns_put_a(w, s, owner, ttl, (const uint8_t *)&((const struct sockaddr_in *)ss)->sin_addr);
    else
        *rc = dns_put_aaaa(w, s, owner, ttl, (const uint8_t *)&((const struct sockaddr_in6 *)ss)->sin6_addr);
}

/* _SERVICE._tcp.ZONE: SRV records by priority, then the targets' addresses
 * in the additional section while they fit. */
static void answer_srv(struct answer *a, struct reg_service *svc)
{
    uint16_t t = a->q->qtype;
    if (t != DNS_TYPE_SRV && t != DNS_TYPE_ANY) {
        negative(a, DNS_RCODE_NOERROR);
        return;
    }
    struct reg_dns *d = a->d;
    struct reg_loc loc = locate(a);
    struct reg_explain ex;
    uint32_t total = 0;
    int n = reg_answer_srv(d->model, svc, loc, d->srv, SRV_CAP, &total, &ex);
    if (n < 0) {
        a->rcode = DNS_RCODE_SERVFAIL;
        a->scope = 0;
        d->stats.dropped[REG_DNS_DROP_ERROR]++;
        return;
    }
    if (n == 0) {
        negative(a, DNS_RCODE_NOERROR);
        return;
    }
    count_choice(d, &ex);
    uint32_t ttl = svc->settings.dns_ttl;
    uint8_t target[DNS_NAME_MAX];
    int written = 0;
    for (int i = 0; i < n; i++) {
        if (srv_target(d, d->srv[i].inst, target) < 0)
            continue;   /* the name would pass 255 bytes: a long zone and service name */
        if (dns_put_srv(&a->w, DNS_SECTION_ANSWER, a->q->qname.wire, ttl, d->srv[i].priority, d->srv[i].weight,
                        addr_port(&d->srv[i].inst->addr), target) < 0)
            break;
        written = i + 1;
    }
    if ((uint32_t)n < total)
        a->w.truncated = true;   /* more than SRV_CAP (never fits anyway): say the answer is cut */
    for (int i = 0; i < written && !a->w.truncated; i++) {
        int rc;
        if (srv_target(d, d->srv[i].inst, target) < 0)
            continue;
        put_addr(&a->w, DNS_SECTION_ADDITIONAL, target, ttl, &d->srv[i].inst->addr.ss, &rc);
        if (rc == -ENOSPC)
            break;   /* the rest are the same size or larger: left out, without TC */
    }
}

static bool is_ns_name(const struct reg_dns *d, const struct dns_name *n)
{
    for (size_t i = 0; i < d->n_ns; i++)
        if (d->ns_name[i].len == n->len && memcmp(d->ns_name[i].lower, n->lower, n->len) == 0)
            return true;
    return false;
}

/* A name k labels below the apex (k >= 1). */
static void answer_below(struct answer *a, int k)
{
    struct reg_dns *d = a->d;
    const struct dns_name *qn = &a->q->qname;
    size_t l0, l1 = 0;
    const uint8_t *lab0 = dns_name_label(qn, 0, &l0);
    const uint8_t *lab1 = k >= 2 ? dns_name_label(qn, 1, &l1) : NULL;
    struct reg_service *svc;
    if (k == 1 && (svc = reg_service_find(d->model, (const char *)lab0, l0))) {
        answer_service(a, svc);
        return;
    }
    if (k == 1 && l0 == 4 && memcmp(lab0, "_tcp", 4) == 0) {
        negative(a, DNS_RCODE_NOERROR);   /* the empty non-terminal above _SERVICE._tcp */
        return;
    }
    if (k == 2 && l1 == 4 && memcmp(lab1, "_tcp", 4) == 0 && l0 > 1 && lab0[0] == '_' &&
        (svc = reg_service_find(d->model, (const char *)lab0 + 1, l0 - 1))) {
        answer_srv(a, svc);
        return;
    }
    if (k == 2 && (svc = reg_service_find(d->model, (const char *)lab1, l1))) {
        answer_target(a, svc, lab0, l0);
        return;
    }
    negative(a, is_ns_name(d, qn) ? DNS_RCODE_NOERROR : DNS_RCODE_NXDOMAIN);
}

static void resolve(struct answer *a)
{
    const struct dns_query *q = a->q;
    if (q->qclass != DNS_CLASS_IN && q->qclass != DNS_CLASS_ANY) {
        a->rcode = DNS_RCODE_REFUSED;
        return;
    }
    int k = dns_name_in_zone(&q->qname, &a->d->zone);
    if (k < 0) {
        a->rcode = DNS_RCODE_REFUSED;
        return;
    }
    if (q->qtype == DNS_TYPE_AXFR || q->qtype == DNS_TYPE_IXFR) {
        a->rcode = DNS_RCODE_REFUSED;   /* no zone transfers: the zone is the live model */
        return;
    }
    a->aa = true;
    a->rcode = DNS_RCODE_NOERROR;
    if (k == 0)
        answer_apex(a);
    else
        answer_below(a, k);
}

size_t reg_dns_answer(struct reg_dns *d, const uint8_t *msg, size_t len, const struct sockaddr *from, bool tcp,
                      uint8_t *resp, size_t cap)
{
    struct dns_query *q = &d->q;
    enum dns_parse_result r = dns_parse_query(msg, len, q);
    if (r == DNS_PARSE_DROP) {
        d->stats.dropped[REG_DNS_DROP_MALFORMED]++;
        return 0;
    }
    size_t limit = dns_response_limit(q, tcp, d->conf.udp_max);
    if (limit > cap)
        limit = cap;
    struct answer a = {.d = d, .q = q, .from = from, .rcode = q->rcode};
    if (dns_response_begin(&a.w, resp, limit, q, d->conf.udp_max) != 0) {
        d->stats.dropped[REG_DNS_DROP_ERROR]++;
        return 0;
    }
    if (q->has_ecs)
        d->stats.ecs++;
    if (r == DNS_PARSE_OK)
        resolve(&a);
    ssize_t n = dns_response_finish(&a.w, a.rcode, a.aa, a.scope);
    if (n <= 0) {
        d->stats.dropped[REG_DNS_DROP_ERROR]++;
        return 0;
    }
    d->stats.by_qtype[qtype_slot(q)]++;
    d->stats.by_rcode[rcode_slot(a.rcode)]++;
    if (a.rcode == DNS_RCODE_NOERROR && a.w.count[DNS_SECTION_ANSWER] == 0 && !a.w.truncated)
        d->stats.nodata++;
    if (a.w.truncated)
        d->stats.truncated++;
    return (size_t)n;
}

/* ---- UDP ---------------------------------------------------------------- */

static void udp_cb(struct ev_loop *loop, struct ev_io *io, uint32_t revents)
{
    (void)loop;
    (void)revents;
    struct udp_sock *u = io->data;
    struct reg_dns *d = u->d;
    struct dns_udp_batch *b = &d->batch;
    for (int round = 0; round < UDP_ROUNDS; round++) {
        unsigned got = dns_udp_batch_recv(b, io->fd, u->pktinfo);
        if (got == 0)
            return;
        for (unsigned i = 0; i < got; i++) {
            const struct msghdr *h = &b->rmsg[i].msg_hdr;
            d->stats.queries_udp++;
            uint8_t *buf = d->udp_bufs + (size_t)i * d->udp_buf_size;
            size_t n = 0;
            if (!(h->msg_flags & MSG_TRUNC))
                n = reg_dns_answer(d, buf, b->rmsg[i].msg_len, (const struct sockaddr *)&b->from[i], false, buf,
                                   d->udp_buf_size);
            else
                d->stats.dropped[REG_DNS_DROP_MALFORMED]++;   /* larger than any query we read */
            if (n)
                dns_udp_batch_reply(b, i, buf, n, u->pktinfo);
        }
        d->stats.dropped[REG_DNS_DROP_UDP_SEND] += dns_udp_batch_send(b, io->fd);
        /* Read again rather than return to epoll_wait even after a short
         * batch: under load more queries have come in meanwhile, and one
         * recvmmsg that finds them is cheaper than epoll_wait and then
         * recvmmsg; when none have, it costs one EAGAIN. */
    }
}

/* ---- TCP ---------------------------------------------------------------- */

static void conn_free(void *p)
{
    struct tcp_conn *c = p;
    dns_tcp_conn_release(&c->t);
    free(c);
}

static void conn_close(struct tcp_conn *c)
{
    if (dns_tcp_conn_close(c->d->loop, &c->d->conns, &c->t))
        ev_defer_free(c->d->loop, c, conn_free);
}

static void conn_fail(struct tcp_conn *c, enum reg_dns_drop_reason why)
{
    c->d->stats.dropped[why]++;
    conn_close(c);
}

static void idle_cb(struct ev_loop *loop, struct ev_timer *t)
{
    (void)loop;
    conn_fail(t->data, REG_DNS_DROP_TCP_IDLE);
}

/* Keep what the socket did not take; the connection reads nothing more
 * until it is sent. -1 when out of memory. */
static int conn_keep(struct tcp_conn *c, const uint8_t *p, size_t n)
{
    return dns_tcp_queue(&c->t.out, &c->t.out_off, &c->t.out_len, &c->t.out_cap, p, n, false);
}

/* Write what is pending. 1 all sent, 0 some left, -1 error. */
static int conn_flush(struct tcp_conn *c)
{
    bool wrote = false;
    int rc = dns_tcp_flush(c->t.io.fd, c->t.out, &c->t.out_off, &c->t.out_len, &wrote);
    if (wrote)
        ev_timer_start(c->d->loop, &c->t.idle, c->d->conf.tcp_idle_ms);
    return rc;
}

/* Answer the complete messages in the input buffer, a batch at a time,
 * while the socket takes the answers. -1 on a write error. */
static int conn_answer(struct tcp_conn *c)
{
    struct reg_dns *d = c->d;
    size_t pos = 0;
    int rc = 0;
    while (c->t.out_len == 0) {
        size_t used = 0;
        size_t mlen;
        while (used < TCP_BATCH && dns_tcp_message(c->t.in, c->t.in_len, pos, &mlen)) {
            d->stats.queries_tcp++;
            size_t n = reg_dns_answer(d, c->t.in + pos + 2, mlen, (const struct sockaddr *)&c->t.peer, true,
                                      d->tcp_scratch + used + 2, DNS_MSG_MAX);
            pos += 2 + mlen;
            if (n == 0)
                continue;
            d->tcp_scratch[used] = (uint8_t)(n >> 8);
            d->tcp_scratch[used + 1] = (uint8_t)n;
            used += 2 + n;
        }
        if (used == 0)
            break;
        ssize_t w = 0;
        do
            w = write(c->t.io.fd, d->tcp_scratch, used);
        while (w < 0 && errno == EINTR);
        if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
            rc = -1;
            break;
        }
        if (w > 0)
            ev_timer_start(d->loop, &c->t.idle, d->conf.tcp_idle_ms);
        size_t done = w > 0 ? (size_t)w : 0;
        if (done < used && conn_keep(c, d->tcp_scratch + done, used - done) < 0) {
            rc = -1;
            break;
        }
    }
    dns_tcp_consume(c->t.in, &c->t.in_len, pos);
    return rc;
}

/* After any event: what the connection waits for next. */
static void conn_rearm(struct tcp_conn *c)
{
    if (c->t.out_len > c->t.out_off) {
        ev_io_set(c->d->loop, &c->t.io, EPOLLOUT);
        return;
    }
    if (c->t.eof) {
        conn_close(c);   /* everything complete is answered; a partial message is dropped */
        return;
    }
    ev_io_set(c->d->loop, &c->t.io, EPOLLIN);
}

static void conn_cb(struct ev_loop *loop, struct ev_io *io, uint32_t revents)
{
    (void)loop;
    struct tcp_conn *c = io->data;
    if (c->t.closed)
        return;
    if (c->t.out_len > c->t.out_off) {
        int f = conn_flush(c);
        if (f < 0) {
            conn_fail(c, REG_DNS_DROP_TCP_ERROR);
            return;
        }
        if (f == 0) {
            conn_rearm(c);
            return;
        }
    } else if (revents & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
        int r = dns_tcp_conn_read(c->d->loop, &c->t, c->d->conf.tcp_idle_ms);
        if (r < 0) {
            conn_fail(c, REG_DNS_DROP_TCP_ERROR);
            return;
        }
    }
    /* Answers sent (or none pending): answer what has arrived. */
    if (conn_answer(c) < 0) {
        conn_fail(c, REG_DNS_DROP_TCP_ERROR);
        return;
    }
    conn_rearm(c);
}

static void conn_new(struct reg_dns *d, int fd, const struct sockaddr_storage *peer)
{
    struct tcp_conn *c = calloc(1, sizeof *c);
    if (!c) {
        close(fd);
        d->stats.dropped[REG_DNS_DROP_ERROR]++;
        return;
    }
    c->d = d;
    if (dns_tcp_conn_open(d->loop, &d->conns, &c->t, fd, peer, conn_cb, idle_cb, c, d->conf.tcp_idle_ms) < 0) {
        free(c);
        d->stats.dropped[REG_DNS_DROP_ERROR]++;
        return;
    }
    d->stats.tcp_accepted++;
}

static void accept_resume(struct ev_loop *loop, struct ev_timer *t)
{
    struct tcp_listener *l = t->data;
    dns_tcp_accept_resume(loop, &l->io);
}

static void accepted(void *arg, int fd, const struct sockaddr_storage *peer)
{
    struct reg_dns *d = arg;
    if (d->conns.n >= d->conf.tcp_max_conns) {
        close(fd);
        d->stats.dropped[REG_DNS_DROP_TCP_LIMIT]++;
        return;
    }
    conn_new(d, fd, peer);
}

static void accept_cb(struct ev_loop *loop, struct ev_io *io, uint32_t revents)
{
    (void)revents;
    struct tcp_listener *l = io->data;
    dns_tcp_accept(loop, io, &l->pause, "registry dns", accepted, l->d);
}

/* ---- sockets ------------------------------------------------------------ */

static void close_listeners(struct reg_dns *d)
{
    for (size_t i = 0; i < d->n_listen; i++) {
        ev_io_stop(d->loop, &d->udp[i].io);
        close(d->udp[i].io.fd);
        ev_io_stop(d->loop, &d->tcp[i].io);
        ev_timer_stop(d->loop, &d->tcp[i].pause);
        close(d->tcp[i].io.fd);
    }
    d->n_listen = 0;
}

static uint64_t random_seed(void)
{
    uint64_t s = 0;
    if (getrandom(&s, sizeof s, GRND_NONBLOCK) != (ssize_t)sizeof s)
        s = ev_clock_ms() ^ (uint64_t)getpid() << 32;
    return s;
}

struct reg_dns *reg_dns_start(struct ev_loop *loop, const struct reg_dns_conf *c, struct reg_model *m,
                              const struct reg_subnets *subnets, char *err, size_t errlen)
{
    if (reg_dns_conf_check(c, err, errlen) < 0)
        return NULL;
    struct reg_dns *d = calloc(1, sizeof *d);
    if (!d) {
        snprintf(err, errlen, "dns: out of memory");
        return NULL;
    }
    d->loop = loop;
    d->model = m;
    d->subnets = subnets;
    d->conf = *c;
    reg_rand_seed(&d->rnd, random_seed());
    if (build_names(d, err, errlen) < 0) {
        free(d);
        return NULL;
    }
    d->udp_buf_size = c->udp_max > UDP_BUF_MIN ? c->udp_max : UDP_BUF_MIN;
    d->udp_bufs = malloc(DNS_UDP_BATCH * d->udp_buf_size);
    d->tcp_scratch = malloc(TCP_SCRATCH);
    if (!d->udp_bufs || !d->tcp_scratch) {
        snprintf(err, errlen, "dns: out of memory");
        reg_dns_stop(d);
        return NULL;
    }
    dns_udp_batch_init(&d->batch, d->udp_bufs, d->udp_buf_size);
    for (size_t i = 0; i < c->n_listen; i++) {
        int ufd, tfd;
        if (dns_listen_open("dns", &c->listen[i], &ufd, &tfd, &d->bound[i], err, errlen) < 0) {
            reg_dns_stop(d);
            return NULL;
        }
        d->udp[i] = (struct udp_sock){.d = d, .pktinfo = dns_addr_is_wildcard(&d->bound[i])};
        ev_io_init(&d->udp[i].io, ufd, udp_cb, &d->udp[i]);
        ev_io_set(loop, &d->udp[i].io, EPOLLIN);
        d->tcp[i] = (struct tcp_listener){.d = d};
        ev_io_init(&d->tcp[i].io, tfd, accept_cb, &d->tcp[i]);
        ev_timer_init(&d->tcp[i].pause, accept_resume, &d->tcp[i]);
        ev_io_set(loop, &d->tcp[i].io, EPOLLIN);
        d->n_listen = i + 1;
    }
    return d;
}

void reg_dns_set_subnets(struct reg_dns *d, const struct reg_subnets *subnets)
{
    d->subnets = subnets;
}

static void server_free(void *p)
{
    struct reg_dns *d = p;
    free(d->udp_bufs);
    free(d->tcp_scratch);
    free(d);
}

void reg_dns_stop(struct reg_dns *d)
{
    if (!d)
        return;
    while (d->conns.head)
        conn_close((struct tcp_conn *)d->conns.head);   /* t is its first member */
    close_listeners(d);
    /* An event of the current batch may still point into the server (its
     * listeners): free it after the batch, as the connections. */
    if (d->loop)
        ev_defer_free(d->loop, d, server_free);
    else
        server_free(d);
}

const struct sl_addr *reg_dns_bound(const struct reg_dns *d, size_t i)
{
    return i < d->n_listen ? &d->bound[i] : NULL;
}

void reg_dns_stats(const struct reg_dns *d, struct reg_dns_stats *out)
{
    *out = d->stats;
    out->tcp_open = d->conns.n;
}

/* ---- metrics ------------------------------------------------------------ */

static void collect(void *arg, struct strbuf *out)
{
    struct reg_dns_stats s;
    reg_dns_stats(arg, &s);
    static const char *const transports[] = {"udp", "tcp"};
    const char *const tiers[] = {reg_tier_name(0), reg_tier_name(1), reg_tier_name(2)};
    metrics_by_label(out, "sluice_registry_dns_queries_total", "counter",
                     "DNS messages received by the registry, by transport.", "transport", transports,
                     (const uint64_t[]){s.queries_udp, s.queries_tcp}, 2);
    metrics_by_label(out, "sluice_registry_dns_queries_by_type_total", "counter",
                     "DNS queries answered by the registry, by question type (none: no question was read).", "qtype",
                     qtype_names, s.by_qtype, REG_DNS_QTYPES);
    metrics_by_label(out, "sluice_registry_dns_responses_total", "counter",
                     "DNS answers sent by the registry, by response code.", "rcode", rcode_names, s.by_rcode,
                     REG_DNS_RCODES);
    metrics_single(out, "sluice_registry_dns_nodata_total", "counter",
                   "NOERROR answers with no record in the answer section (NODATA).", s.nodata);
    metrics_single(out, "sluice_registry_dns_truncated_total", "counter",
                   "DNS answers sent with TC set (did not fit; the client retries over TCP).", s.truncated);
    metrics_single(out, "sluice_registry_dns_client_subnet_total", "counter",
                   "DNS queries that carried an EDNS Client Subnet option.", s.ecs);
    metrics_by_label(out, "sluice_registry_dns_answers_by_tier_total", "counter",
                     "Service answers (A, AAAA, SRV) by the locality tier they were drawn from.", "tier", tiers,
                     s.by_tier, 3);
    metrics_single(out, "sluice_registry_dns_fail_open_total", "counter",
                   "Service answers that failed open: the chosen tier's healthy share was below the protect "
                   "threshold.",
                   s.fail_open);
    metrics_by_label(out, "sluice_registry_dns_dropped_total", "counter",
                     "DNS messages or TCP connections dropped without an answer, by reason.", "reason", drop_names,
                     s.dropped, REG_DNS_DROPS);
    metrics_single(out, "sluice_registry_dns_tcp_connections_total", "counter", "DNS TCP connections accepted.",
                   s.tcp_accepted);
    metrics_single(out, "sluice_registry_dns_tcp_connections", "gauge", "DNS TCP connections open now.", s.tcp_open);
}

int reg_dns_metrics(struct metrics_registry *reg, struct reg_dns *d)
{
    return metrics_register(reg, collect, d);
}
