/* See agent_dns.h. This file: the services followed and the answers built
 * from their lists; agent_net.c: the sockets, parked and forwarded queries.
 *
 * A service's instances are copied from the source only when its version
 * moves (one info call per query otherwise), into a compact array: the
 * members picks draw from first, then the other instances. Answers are
 * written by lib/dns_wire; nothing on the answer path allocates except
 * the first query for a service. */
#include "agent/agent_dns_priv.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "core/metrics.h"
#include "lib/hash.h"

#define SOA_SERIAL 1

/* ---- configuration ------------------------------------------------------- */

void agent_dns_conf_from(const struct cfg_agent *a, const struct sl_addr *upstreams, size_t n_upstreams,
                         struct agent_dns_conf *out)
{
    *out = (struct agent_dns_conf){
        .n_listen = a->n_listen,
        .ttl_cap_s = a->ttl_cap_s,
        .negative_ttl_s = a->negative_ttl_s,
        .first_wait_ms = a->first_wait_ms,
        .upstream_timeout_ms = a->upstream_timeout_ms,
        .max_outstanding = a->max_outstanding,
        .max_services = a->max_services,
        .udp_max = (uint16_t)a->udp_max,
        .tcp_max_conns = a->tcp_max_conns,
        .tcp_idle_ms = a->tcp_idle_ms,
    };
    memcpy(out->listen, a->listen, a->n_listen * sizeof a->listen[0]);
    snprintf(out->zone, sizeof out->zone, "%s", a->zone);
    out->n_upstreams = n_upstreams < AGENT_MAX_UPSTREAMS ? n_upstreams : AGENT_MAX_UPSTREAMS;
    memcpy(out->upstreams, upstreams, out->n_upstreams * sizeof upstreams[0]);
}

/* ---- randomness ---------------------------------------------------------- */

uint64_t agent_rand(struct agent_dns *d)
{
    /* xorshift64*: weighted draws and forwarded IDs need speed, not secrecy;
     * source ports come from the kernel. The seed is from getrandom. */
    uint64_t x = d->rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    d->rng = x;
    return x * 0x2545F4914F6CDD1DULL;
}

static uint64_t random_seed(void)
{
    uint64_t s = 0;
    if (getrandom(&s, sizeof s, GRND_NONBLOCK) != (ssize_t)sizeof s)
        s = ev_clock_ms() ^ (uint64_t)getpid() << 32;
    return s ? s : 0x9E3779B97F4A7C15ULL;
}

/* ---- the services followed ---------------------------------------------- */

static size_t bucket_of(const struct agent_dns *d, const char *name, size_t len)
{
    return (size_t)(sl_hash64(name, len, 0x5eed) & (d->n_buckets - 1));
}

static struct agent_svc *svc_find(struct agent_dns *d, const char *name, size_t len)
{
    for (struct agent_svc *s = d->buckets[bucket_of(d, name, len)]; s; s = s->next)
        if (s->name_len == len && memcmp(s->name, name, len) == 0)
            return s;
    return NULL;
}

/* A label that can be a registry service name (reg_service_name_check):
 * letters, digits and '-', not beginning or ending with '-' (lower case:
 * the query's folded form). Other labels are never asked of the registry. */
static bool service_label_ok(const uint8_t *p, size_t len)
{
    if (len == 0 || len > DNS_LABEL_MAX || p[0] == '-' || p[len - 1] == '-')
        return false;
    for (size_t i = 0; i < len; i++) {
        uint8_t c = p[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-'))
            return false;
    }
    return true;
}

/* The service named by a label, followed from now on when it was not;
 * NULL when the table is full (d->kind says so) or the label cannot be a
 * service name. */
static struct agent_svc *svc_get(struct agent_dns *d, const uint8_t *label, size_t len)
{
    if (!service_label_ok(label, len))
        return NULL;
    struct agent_svc *s = svc_find(d, (const char *)label, len);
    if (s)
        return s;
    if (d->n_svcs >= d->conf.max_services) {
        d->kind = KIND_SERVICES_FULL;
        return NULL;
    }
    s = calloc(1, sizeof *s);
    if (!s) {
        d->kind = KIND_SERVICES_FULL;
        return NULL;
    }
    memcpy(s->name, label, len);
    s->name[len] = '\0';
    s->name_len = (uint8_t)len;
    s->handle = d->ops->subscribe(d->ops_arg, s->name);
    s->info.state = AGENT_SVC_PENDING;
    size_t b = bucket_of(d, s->name, len);
    s->next = d->buckets[b];
    d->buckets[b] = s;
    d->n_svcs++;
    return s;
}

void agent_dns_follow(struct agent_dns *d, const char *name)
{
    svc_get(d, (const uint8_t *)name, strlen(name));
}

static void member_from(struct svc_member *m, const struct sluice_member *sm)
{
    memset(m, 0, sizeof *m);
    m->family = sm->addr.ss_family;
    if (m->family == AF_INET) {
        const struct sockaddr_in *v4 = (const struct sockaddr_in *)&sm->addr;
        memcpy(m->addr, &v4->sin_addr, 4);
        m->port = ntohs(v4->sin_port);
    } else if (m->family == AF_INET6) {
        const struct sockaddr_in6 *v6 = (const struct sockaddr_in6 *)&sm->addr;
        memcpy(m->addr, &v6->sin6_addr, 16);
        m->port = ntohs(v6->sin6_port);
    }
    m->weight = (uint16_t)(sm->weight > 10000 ? 10000 : sm->weight);
    m->healthy = sm->healthy;
}

static bool same_member(const struct svc_member *a, const struct svc_member *b)
{
    return a->family == b->family && a->port == b->port && memcmp(a->addr, b->addr, 16) == 0;
}

static int svc_reserve(struct agent_svc *s, uint32_t n)
{
    if (n <= s->cap)
        return 0;
    struct svc_member *m = realloc(s->m, n * sizeof *m);
    if (!m)
        return -1;
    s->m = m;
    s->cap = n;
    return 0;
}

/* Copy the lists of the version the source has now: the members picks
 * draw from, then the other instances (not among them). -1 out of memory. */
static int svc_load(struct agent_dns *d, struct agent_svc *s)
{
    int nt = d->ops->members(d->ops_arg, s->handle, false, d->scratch, AGENT_MEMBERS_MAX);
    if (nt < 0)
        nt = 0;
    if (nt > AGENT_MEMBERS_MAX)
        nt = AGENT_MEMBERS_MAX;
    if (svc_reserve(s, (uint32_t)nt + 1) < 0)
        return -1;
    uint32_t n = 0;
    for (int i = 0; i < nt; i++) {
        if (d->scratch[i].weight == 0 ||
            (d->scratch[i].addr.ss_family != AF_INET && d->scratch[i].addr.ss_family != AF_INET6))
            continue;
        member_from(&s->m[n++], &d->scratch[i]);
    }
    s->n_tier = n;
    int na = d->ops->members(d->ops_arg, s->handle, true, d->scratch, AGENT_MEMBERS_MAX);
    if (na > AGENT_MEMBERS_MAX)
        na = AGENT_MEMBERS_MAX;
    if (na > 0 && svc_reserve(s, n + (uint32_t)na) < 0)
        return -1;
    for (int i = 0; i < na; i++) {
        if (d->scratch[i].weight == 0 || !d->scratch[i].healthy ||
            (d->scratch[i].addr.ss_family != AF_INET && d->scratch[i].addr.ss_family != AF_INET6))
            continue;
        struct svc_member m;
        member_from(&m, &d->scratch[i]);
        bool dup = false;
        for (uint32_t j = 0; j < s->n_tier && !dup; j++)
            dup = same_member(&s->m[j], &m);
        if (!dup)
            s->m[n++] = m;
    }
    s->n_all = n;
    return 0;
}

/* The service's state now, its lists reloaded when they changed. */
static void svc_refresh(struct agent_dns *d, struct agent_svc *s)
{
    if (!s->handle) {
        s->info.state = AGENT_SVC_PENDING;
        return;
    }
    d->ops->info(d->ops_arg, s->handle, &s->info);
    if (s->info.answer_count == 0)
        s->info.answer_count = 1;
    if (s->info.state == AGENT_SVC_READY && (!s->loaded || s->loaded_version != s->info.version)) {
        if (svc_load(d, s) < 0) {
            s->loaded = false;
            return;
        }
        s->loaded = true;
        s->loaded_version = s->info.version;
    }
}

static void svc_free_all(struct agent_dns *d)
{
    for (size_t b = 0; b < d->n_buckets; b++) {
        struct agent_svc *s = d->buckets[b];
        while (s) {
            struct agent_svc *next = s->next;
            free(s->m);
            free(s);
            s = next;
        }
    }
    free(d->buckets);
    d->buckets = NULL;
    d->n_svcs = 0;
}

/* ---- answers -------------------------------------------------------------- */

struct answer {
    struct agent_dns *d;
    const struct dns_query *q;
    struct dns_writer w;
    unsigned rcode;
    bool aa;
};

static uint32_t ttl_of(const struct agent_dns *d, const struct agent_svc *s)
{
    return s->info.dns_ttl < d->conf.ttl_cap_s ? s->info.dns_ttl : d->conf.ttl_cap_s;
}

static void put_soa(struct answer *a, enum dns_section s)
{
    struct agent_dns *d = a->d;
    struct dns_soa soa = {
        .mname = d->ns_wire,
        .rname = d->mbox_wire,
        .serial = SOA_SERIAL,
        .refresh = 3600,
        .retry = 600,
        .expire = 86400,
        .minimum = d->conf.negative_ttl_s,
    };
    dns_put_soa(&a->w, s, d->zone_wire, d->conf.negative_ttl_s, &soa);
}

/* NXDOMAIN or NODATA, with the SOA (RFC 2308). */
static void negative(struct answer *a, unsigned rcode)
{
    a->rcode = rcode;
    a->d->kind = rcode == DNS_RCODE_NXDOMAIN ? KIND_NXDOMAIN : KIND_LOCAL;
    put_soa(a, DNS_SECTION_AUTHORITY);
}

static void servfail(struct answer *a)
{
    a->rcode = DNS_RCODE_SERVFAIL;
    a->aa = false;
    if (a->d->kind != KIND_SERVICES_FULL)
        a->d->kind = KIND_SERVFAIL;
}

static int put_addr(struct dns_writer *w, enum dns_section sec, const uint8_t *owner, uint32_t ttl,
                    const struct svc_member *m)
{
    return m->family == AF_INET ? dns_put_a(w, sec, owner, ttl, m->addr) : dns_put_aaaa(w, sec, owner, ttl, m->addr);
}

/* Up to answer_count members of one family, drawn by weight without
 * replacement. Returns how many there were to draw from. */
static uint32_t put_draws(struct answer *a, const struct agent_svc *s, sa_family_t fam)
{
    struct agent_dns *d = a->d;
    uint32_t n = 0;
    uint64_t total = 0;
    for (uint32_t i = 0; i < s->n_tier; i++) {
        if (s->m[i].family != fam)
            continue;
        d->draw[n++] = i;
        total += s->m[i].weight;
    }
    uint32_t want = s->info.answer_count < n ? s->info.answer_count : n;
    uint32_t ttl = ttl_of(d, s);
    uint32_t left = n;
    for (uint32_t k = 0; k < want && total > 0; k++) {
        uint64_t r = agent_rand(d) % total;
        uint32_t j = 0;
        while (j + 1 < left && r >= s->m[d->draw[j]].weight) {
            r -= s->m[d->draw[j]].weight;
            j++;
        }
        const struct svc_member *m = &s->m[d->draw[j]];
        if (put_addr(&a->w, DNS_SECTION_ANSWER, a->q->qname.wire, ttl, m) < 0)
            break;   /* TC is set: the client asks again over TCP */
        total -= m->weight;
        d->draw[j] = d->draw[--left];
    }
    return n;
}

static void answer_service(struct answer *a, const struct agent_svc *s)
{
    uint16_t t = a->q->qtype;
    uint32_t n = 0;
    if (t == DNS_TYPE_A || t == DNS_TYPE_ANY)
        n += put_draws(a, s, AF_INET);
    if ((t == DNS_TYPE_AAAA || t == DNS_TYPE_ANY) && !a->w.truncated)
        n += put_draws(a, s, AF_INET6);
    if (n == 0 || a->w.count[DNS_SECTION_ANSWER] + a->w.truncated == 0)
        negative(a, DNS_RCODE_NOERROR);
    else
        a->d->kind = KIND_LOCAL;
}

/* ADDR.SERVICE.ZONE in wire form; its length, or -1 past 255 bytes. */
static int srv_target(const struct agent_dns *d, const struct agent_svc *s, const struct svc_member *m, uint8_t *out)
{
    return dns_srv_target(m->family, m->addr, s->name, s->name_len, d->zone_wire, d->zone_len, out);
}

/* _SERVICE._tcp.ZONE: the tier's members at priority 0, the other healthy
 * instances at priority 1; then the targets' addresses while they fit. */
static void answer_srv(struct answer *a, const struct agent_svc *s)
{
    uint16_t t = a->q->qtype;
    if ((t != DNS_TYPE_SRV && t != DNS_TYPE_ANY) || s->n_all == 0) {
        negative(a, DNS_RCODE_NOERROR);
        return;
    }
    uint32_t ttl = ttl_of(a->d, s);
    uint8_t target[DNS_NAME_MAX];
    uint32_t written = 0;
    for (uint32_t i = 0; i < s->n_all; i++) {
        if (srv_target(a->d, s, &s->m[i], target) < 0)
            continue;
        if (dns_put_srv(&a->w, DNS_SECTION_ANSWER, a->q->qname.wire, ttl, i < s->n_tier ? 0 : 1, s->m[i].weight,
                        s->m[i].port, target) < 0)
            break;
        written = i + 1;
    }
    for (uint32_t i = 0; i < written && !a->w.truncated; i++) {
        if (srv_target(a->d, s, &s->m[i], target) < 0)
            continue;
        if (put_addr(&a->w, DNS_SECTION_ADDITIONAL, target, ttl, &s->m[i]) == -ENOSPC)
            break;
    }
    a->d->kind = KIND_LOCAL;
}

/* Only a name whose first label is an address can be an SRV target: any
 * other name two labels down is NXDOMAIN without following its service. */
static bool is_addr_label(const uint8_t *p, size_t len)
{
    sa_family_t af;
    uint8_t addr[16];
    return dns_addr_label_parse(p, len, &af, addr);
}

/* ADDR.SERVICE.ZONE: an SRV target. */
static void answer_target(struct answer *a, const struct agent_svc *s, const uint8_t *label, size_t len)
{
    struct svc_member want = { 0 };
    const struct svc_member *found = NULL;
    if (dns_addr_label_parse(label, len, &want.family, want.addr))
        for (uint32_t i = 0; i < s->n_all && !found; i++)
            if (s->m[i].family == want.family && memcmp(s->m[i].addr, want.addr, 16) == 0)
                found = &s->m[i];
    if (!found) {
        negative(a, DNS_RCODE_NXDOMAIN);
        return;
    }
    uint16_t t = a->q->qtype;
    bool v4 = found->family == AF_INET;
    if (t == DNS_TYPE_ANY || t == (v4 ? DNS_TYPE_A : DNS_TYPE_AAAA)) {
        put_addr(&a->w, DNS_SECTION_ANSWER, a->q->qname.wire, ttl_of(a->d, s), found);
        a->d->kind = KIND_LOCAL;
    } else {
        negative(a, DNS_RCODE_NOERROR);
    }
}

/* The service of a name: ready (answer from it), or the query waits, or
 * the answer is decided here (NXDOMAIN, SERVFAIL). NULL unless ready. */
static struct agent_svc *ready_service(struct answer *a, const uint8_t *label, size_t len, bool *wait)
{
    struct agent_svc *s = svc_get(a->d, label, len);
    if (!s) {
        if (a->d->kind == KIND_SERVICES_FULL)
            servfail(a);
        else
            negative(a, DNS_RCODE_NXDOMAIN);   /* cannot be a service name */
        return NULL;
    }
    svc_refresh(a->d, s);
    if (s->info.state == AGENT_SVC_MISSING) {
        negative(a, DNS_RCODE_NXDOMAIN);
        return NULL;
    }
    if (s->info.state == AGENT_SVC_PENDING || !s->loaded) {
        *wait = true;
        return NULL;
    }
    return s;
}

/* A name k labels below the apex (k >= 1). Returns true when the query
 * must wait for a service's first list. */
static bool answer_below(struct answer *a, int k)
{
    const struct dns_name *qn = &a->q->qname;
    size_t l0, l1 = 0;
    const uint8_t *lab0 = dns_name_label(qn, 0, &l0);
    const uint8_t *lab1 = k >= 2 ? dns_name_label(qn, 1, &l1) : NULL;
    bool wait = false;
    struct agent_svc *s;
    if (k == 1 && l0 == 4 && memcmp(lab0, "_tcp", 4) == 0) {
        negative(a, DNS_RCODE_NOERROR);   /* the empty non-terminal above _SERVICE._tcp */
    } else if (k == 1) {
        if ((s = ready_service(a, lab0, l0, &wait)))
            answer_service(a, s);
    } else if (k == 2 && l1 == 4 && memcmp(lab1, "_tcp", 4) == 0 && l0 > 1 && lab0[0] == '_') {
        if ((s = ready_service(a, lab0 + 1, l0 - 1, &wait)))
            answer_srv(a, s);
    } else if (k == 2 && service_label_ok(lab1, l1) && is_addr_label(lab0, l0)) {
        if ((s = ready_service(a, lab1, l1, &wait)))
            answer_target(a, s, lab0, l0);
    } else {
        negative(a, DNS_RCODE_NXDOMAIN);
    }
    return wait;
}

static void answer_apex(struct answer *a)
{
    uint16_t t = a->q->qtype;
    if (t == DNS_TYPE_SOA || t == DNS_TYPE_ANY) {
        put_soa(a, DNS_SECTION_ANSWER);
        a->d->kind = KIND_LOCAL;
    } else {
        negative(a, DNS_RCODE_NOERROR);
    }
}

enum agent_action agent_dns_answer(struct agent_dns *d, const uint8_t *msg, size_t len, bool tcp, uint8_t *resp,
                                   size_t cap, size_t *resp_len)
{
    struct dns_query *q = &d->q;
    d->kind = KIND_NONE;
    enum dns_parse_result r = dns_parse_query(msg, len, q);
    if (r == DNS_PARSE_DROP)
        return AGENT_ACT_DROP;
    int k = r == DNS_PARSE_OK ? dns_name_in_zone(&q->qname, &d->zone) : -1;
    if (r == DNS_PARSE_OK && k < 0)
        return AGENT_ACT_FORWARD;
    size_t limit = dns_response_limit(q, tcp, d->conf.udp_max);
    if (limit > cap)
        limit = cap;
    struct answer a = { .d = d, .q = q, .rcode = q->rcode };
    if (dns_response_begin(&a.w, resp, limit, q, d->conf.udp_max) != 0)
        return AGENT_ACT_DROP;
    d->kind = KIND_ERROR;
    if (r == DNS_PARSE_OK) {
        if (q->qclass != DNS_CLASS_IN && q->qclass != DNS_CLASS_ANY) {
            a.rcode = DNS_RCODE_REFUSED;
        } else if (q->qtype == DNS_TYPE_AXFR || q->qtype == DNS_TYPE_IXFR) {
            a.rcode = DNS_RCODE_REFUSED;   /* the zone is the registry's live lists: nothing to transfer */
        } else {
            a.aa = true;
            a.rcode = DNS_RCODE_NOERROR;
            if (k == 0)
                answer_apex(&a);
            else if (answer_below(&a, k))
                return AGENT_ACT_WAIT;
        }
    }
    ssize_t n = dns_response_finish(&a.w, a.rcode, a.aa, 0);
    if (n <= 0)
        return AGENT_ACT_DROP;
    *resp_len = (size_t)n;
    return AGENT_ACT_ANSWER;
}

size_t agent_dns_servfail(struct agent_dns *d, const uint8_t *msg, size_t len, bool tcp, uint8_t *resp, size_t cap)
{
    struct dns_query *q = &d->q;
    if (dns_parse_query(msg, len, q) == DNS_PARSE_DROP)
        return 0;
    size_t limit = dns_response_limit(q, tcp, d->conf.udp_max);
    if (limit > cap)
        limit = cap;
    struct dns_writer w;
    if (dns_response_begin(&w, resp, limit, q, d->conf.udp_max) != 0)
        return 0;
    ssize_t n = dns_response_finish(&w, DNS_RCODE_SERVFAIL, false, 0);
    return n > 0 ? (size_t)n : 0;
}

bool agent_fwd_accept(const struct agent_fwd_expect *e, uint8_t *resp, size_t len, uint16_t client_id)
{
    struct dns_question rq;
    if (dns_read_question(resp, len, &rq) < 0)
        return false;
    if (!(rq.flags & 0x8000) || rq.id != e->id || rq.qtype != e->qtype || rq.qclass != e->qclass ||
        !dns_name_equal(&rq.qname, &e->qname))
        return false;
    resp[0] = (uint8_t)(client_id >> 8);
    resp[1] = (uint8_t)client_id;
    return true;
}

void agent_count_kind(struct agent_dns *d, enum agent_kind k)
{
    switch (k) {
    case KIND_LOCAL: d->stats.local++; break;
    case KIND_NXDOMAIN: d->stats.nxdomain++; break;
    case KIND_SERVFAIL: d->stats.servfail++; break;
    case KIND_SERVICES_FULL:
        d->stats.servfail++;
        d->stats.services_full++;
        break;
    case KIND_ERROR: d->stats.errors++; break;
    case KIND_NONE: break;
    }
}

/* ---- start and stop ---------------------------------------------------------- */

/* "LABEL.ZONE" in wire form. */
static int name_under_zone(const char *label, const struct agent_dns *d, uint8_t *out)
{
    size_t llen = strlen(label);
    if (1 + llen + d->zone_len > DNS_NAME_MAX)
        return -1;
    out[0] = (uint8_t)llen;
    memcpy(out + 1, label, llen);
    memcpy(out + 1 + llen, d->zone_wire, d->zone_len);
    return 0;
}

static void agent_free(void *p)
{
    struct agent_dns *d = p;
    svc_free_all(d);
    free(d->scratch);
    free(d->draw);
    free(d->udp_bufs);
    free(d->out_buf);
    free(d);
}

struct agent_dns *agent_dns_start(struct ev_loop *loop, const struct agent_dns_conf *c,
                                  const struct agent_source_ops *ops, void *ops_arg, char *err, size_t errlen)
{
    struct agent_dns *d = calloc(1, sizeof *d);
    if (!d) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    d->loop = loop;
    d->conf = *c;
    d->ops = ops;
    d->ops_arg = ops_arg;
    d->rng = random_seed();
    int n = dns_name_from_text(c->zone, d->zone_wire);
    if (n <= 1 || dns_name_set(&d->zone, d->zone_wire, (size_t)n) < 0) {
        snprintf(err, errlen, "agent.zone: \"%s\" is not a DNS name", c->zone);
        free(d);
        return NULL;
    }
    d->zone_len = (size_t)n;
    if (name_under_zone("ns1", d, d->ns_wire) < 0 || name_under_zone("hostmaster", d, d->mbox_wire) < 0) {
        snprintf(err, errlen, "agent.zone: too long to hold hostmaster.ZONE");
        free(d);
        return NULL;
    }
    d->n_buckets = 1;
    while (d->n_buckets < 2 * (size_t)c->max_services && d->n_buckets < (1u << 20))
        d->n_buckets <<= 1;
    d->buckets = calloc(d->n_buckets, sizeof *d->buckets);
    d->scratch = malloc(AGENT_MEMBERS_MAX * sizeof *d->scratch);
    d->draw = malloc(AGENT_MEMBERS_MAX * sizeof *d->draw);
    d->udp_bufs = malloc(2 * AGENT_UDP_BATCH * AGENT_UDP_BUF);
    d->out_buf = malloc(DNS_MSG_MAX + 2);
    if (!d->buckets || !d->scratch || !d->draw || !d->udp_bufs || !d->out_buf) {
        snprintf(err, errlen, "out of memory");
        agent_free(d);
        return NULL;
    }
    if (agent_net_start(d, err, errlen) < 0) {
        agent_net_stop(d);
        agent_free(d);
        return NULL;
    }
    return d;
}

void agent_dns_stop(struct agent_dns *d)
{
    if (!d)
        return;
    agent_net_stop(d);
    if (d->loop)
        ev_defer_free(d->loop, d, agent_free);
    else
        agent_free(d);
}

const struct sl_addr *agent_dns_bound(const struct agent_dns *d, size_t i)
{
    return i < d->n_listen ? &d->bound[i] : NULL;
}

const struct sl_addr *agent_dns_upstream(const struct agent_dns *d, size_t i)
{
    return i < d->conf.n_upstreams ? &d->conf.upstreams[i] : NULL;
}

void agent_dns_stats(const struct agent_dns *d, struct agent_dns_stats *out)
{
    *out = d->stats;
    out->tcp_open = d->conns.n;
    out->outstanding = d->n_pending;
    out->services = d->n_svcs;
}

/* ---- metrics ------------------------------------------------------------------ */

static void collect(void *arg, struct strbuf *out)
{
    struct agent_dns *d = arg;
    struct agent_dns_stats s;
    agent_dns_stats(d, &s);
    static const char *const transports[] = { "udp", "tcp" };
    static const char *const kinds[] = { "local", "forwarded", "nxdomain", "servfail", "error" };
    static const char *const limits[] = { "max_outstanding", "max_services" };
    metrics_by_label(out, "sluice_agent_dns_messages_total", "counter",
                     "DNS messages received by the agent, by transport.", "transport", transports,
                     (const uint64_t[]){ s.queries_udp, s.queries_tcp }, 2);
    metrics_by_label(out, "sluice_agent_dns_queries_total", "counter",
                     "Queries answered by the agent, by kind: local (a registered name, from the registry's lists), "
                     "forwarded (an upstream's answer), nxdomain (a name under the zone the registry does not know), "
                     "servfail, error (FORMERR, NOTIMP, BADVERS, REFUSED).",
                     "kind", kinds, (const uint64_t[]){ s.local, s.forwarded, s.nxdomain, s.servfail, s.errors }, 5);
    metrics_single(out, "sluice_agent_dns_dropped_total", "counter",
                   "DNS messages dropped without an answer (runts, responses, answers the socket would not take).",
                   s.dropped);
    metrics_single(out, "sluice_agent_dns_parked_total", "counter",
                   "Queries for a registered name that waited for the service's first list.", s.parked);
    const char *upstreams[AGENT_MAX_UPSTREAMS];
    for (size_t i = 0; i < d->conf.n_upstreams; i++)
        upstreams[i] = d->conf.upstreams[i].text;
    metrics_by_label(out, "sluice_agent_upstream_failures_total", "counter",
                     "Forwarding attempts that timed out or failed, by upstream.", "upstream", upstreams,
                     s.upstream_failures, d->conf.n_upstreams);
    metrics_single(out, "sluice_agent_upstream_ignored_total", "counter",
                   "Datagrams from an upstream ignored: not an answer to the query sent (ID or question).",
                   s.upstream_ignored);
    metrics_by_label(out, "sluice_agent_dns_refused_full_total", "counter",
                     "Queries answered SERVFAIL at once because a limit was reached, by limit.", "limit", limits,
                     (const uint64_t[]){ s.outstanding_full, s.services_full }, 2);
    metrics_single(out, "sluice_agent_dns_outstanding", "gauge", "Forwarded and parked queries now.", s.outstanding);
    metrics_single(out, "sluice_agent_services", "gauge", "Services the agent follows.", s.services);
    metrics_single(out, "sluice_agent_dns_tcp_connections_total", "counter", "DNS TCP connections accepted.",
                   s.tcp_accepted);
    metrics_single(out, "sluice_agent_dns_tcp_connections", "gauge", "DNS TCP connections open now.", s.tcp_open);
}

int agent_dns_metrics(struct metrics_registry *reg, struct agent_dns *d)
{
    return metrics_register(reg, collect, d);
}
