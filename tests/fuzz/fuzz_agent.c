/* libFuzzer target for the DNS agent's query handling (src/agent/
 * agent_dns.c, agent_dns_answer: what its UDP and TCP paths call for every
 * message), with the lists of a fixed source instead of libsluice: "svc"
 * (IPv4 and IPv6 members in the tier, more instances outside it), "big"
 * (600 members), "empty" (a list with no instance), "slow" (no list yet:
 * the query waits), and every other name: the registry said 404. At most
 * 64 services are followed, so the table fills up too.
 *
 * Input: one DNS message, answered as over UDP and over TCP. Beyond "no
 * crash", every answer is read back by the independent strict reader
 * (tests/fuzz/dns_response_check.h): well formed, within the size limit,
 * the ID echoed, no Client Subnet scope; the action is DROP exactly when
 * the codec's parser says DROP, FORWARD exactly for a valid query outside
 * the zone, WAIT only for a name of "slow"; NXDOMAIN carries the SOA;
 * answers with records under the zone are authoritative, every TTL of
 * theirs at most the cap, and A/AAAA answers hold at most answer_count
 * records of the service; SERVFAIL for the query is well formed too.
 *
 * The same bytes are also given to the forwarder's answer check
 * (agent_fwd_accept) as an upstream's answer: accepted only when it is a
 * response with the ID and question expected, and then with the client's
 * ID written in; and a forwarded query, turned into a response, is
 * accepted for itself. */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/agent_dns.h"
#include "lib/dns_wire.h"

#include "dns_response_check.h"

#define CHECK(x)                                                                             \
    do {                                                                                     \
        if (!(x)) {                                                                          \
            fprintf(stderr, "fuzz_agent: invariant failed at line %d: %s\n", __LINE__, #x); \
            abort();                                                                         \
        }                                                                                    \
    } while (0)

#define TTL_CAP 5
#define SVC_ANSWER_COUNT 2
#define BIG_ANSWER_COUNT 256

struct fake {
    const char *name;
    enum agent_svc_state state;
    uint32_t ttl, answer_count;
    struct sluice_member *tier, *all;
    int n_tier, n_all;
};

static struct fake fakes[4];
static struct fake gone = { .name = "(404)", .state = AGENT_SVC_MISSING };
static struct agent_dns *dns;
static struct dns_name zone;
static uint8_t zone_wire[DNS_NAME_MAX];

static void member(struct sluice_member *m, const char *ip, uint16_t port, uint32_t weight, bool healthy)
{
    memset(m, 0, sizeof *m);
    if (strchr(ip, ':')) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&m->addr;
        a->sin6_family = AF_INET6;
        a->sin6_port = htons(port);
        CHECK(inet_pton(AF_INET6, ip, &a->sin6_addr) == 1);
        m->addrlen = sizeof *a;
    } else {
        struct sockaddr_in *a = (struct sockaddr_in *)&m->addr;
        a->sin_family = AF_INET;
        a->sin_port = htons(port);
        CHECK(inet_pton(AF_INET, ip, &a->sin_addr) == 1);
        m->addrlen = sizeof *a;
    }
    snprintf(m->id, sizeof m->id, "%s", ip);
    m->weight = weight;
    m->healthy = healthy;
}

static void *fake_subscribe(void *arg, const char *name)
{
    for (size_t i = 0; i < sizeof fakes / sizeof fakes[0]; i++)
        if (strcmp(fakes[i].name, name) == 0)
            return &fakes[i];
    return &gone;
}

static void fake_info(void *arg, void *h, struct agent_svc_info *out)
{
    const struct fake *f = h;
    *out = (struct agent_svc_info){ .state = f->state, .version = 1, .dns_ttl = f->ttl,
                                    .answer_count = f->answer_count };
}

static int fake_members(void *arg, void *h, bool all, struct sluice_member *out, size_t cap)
{
    const struct fake *f = h;
    int n = all ? f->n_all : f->n_tier;
    const struct sluice_member *src = all ? f->all : f->tier;
    for (int i = 0; i < n && (size_t)i < cap; i++)
        out[i] = src[i];
    return n;
}

static const struct agent_source_ops fake_ops = { fake_subscribe, fake_info, fake_members };

static void build(void)
{
    struct fake *svc = &fakes[0];
    *svc = (struct fake){ .name = "svc", .state = AGENT_SVC_READY, .ttl = 30, .answer_count = SVC_ANSWER_COUNT };
    svc->tier = calloc(3, sizeof *svc->tier);
    svc->all = calloc(5, sizeof *svc->all);
    member(&svc->tier[0], "10.0.0.1", 80, 100, true);
    member(&svc->tier[1], "10.0.0.2", 80, 300, true);
    member(&svc->tier[2], "2001:db8::1", 8080, 100, true);
    svc->n_tier = 3;
    for (int i = 0; i < 3; i++)
        svc->all[i] = svc->tier[i];
    member(&svc->all[3], "10.0.1.3", 80, 100, true);
    member(&svc->all[4], "10.0.1.4", 80, 100, false);
    svc->n_all = 5;
    struct fake *big = &fakes[1];
    *big = (struct fake){ .name = "big", .state = AGENT_SVC_READY, .ttl = 1, .answer_count = BIG_ANSWER_COUNT };
    big->tier = calloc(600, sizeof *big->tier);
    for (int i = 0; i < 600; i++) {
        char ip[32];
        snprintf(ip, sizeof ip, "10.9.%d.%d", i / 200, i % 200 + 1);
        member(&big->tier[i], ip, 53, (uint32_t)(i % 7 + 1), true);
    }
    big->n_tier = 600;
    big->all = big->tier;
    big->n_all = 600;
    fakes[2] = (struct fake){ .name = "empty", .state = AGENT_SVC_READY, .ttl = 3, .answer_count = 1 };
    fakes[3] = (struct fake){ .name = "slow", .state = AGENT_SVC_PENDING };

    struct agent_dns_conf c = { .ttl_cap_s = TTL_CAP, .negative_ttl_s = 5, .first_wait_ms = 1000,
                                .upstream_timeout_ms = 1000, .max_outstanding = 16, .max_services = 64,
                                .udp_max = 1232, .tcp_max_conns = 10, .tcp_idle_ms = 1000 };
    snprintf(c.zone, sizeof c.zone, "sluice.test.");
    char err[256];
    dns = agent_dns_start(NULL, &c, &fake_ops, NULL, err, sizeof err);
    CHECK(dns);
    int n = dns_name_from_text(c.zone, zone_wire);
    CHECK(n > 0 && dns_name_set(&zone, zone_wire, (size_t)n) == 0);
}

/* Does the name hold the label "slow" where a service name may stand? */
static bool names_slow(const struct dns_query *q)
{
    for (unsigned i = 0; i < q->qname.labels; i++) {
        size_t l;
        const uint8_t *p = dns_name_label(&q->qname, i, &l);
        if ((l == 4 && memcmp(p, "slow", 4) == 0) || (l == 5 && memcmp(p, "_slow", 5) == 0))
            return true;
    }
    return false;
}

/* Walk the canonical records: every TTL at most the cap (the SOA's is the
 * negative TTL, 5 too); count the answer records. */
static unsigned check_records(const struct dnsc_response *r)
{
    const uint8_t *p = r->canon.p;
    size_t len = r->canon.len, pos = 0;
    unsigned answers = 0;
    while (pos < len) {
        uint8_t section = p[pos++];
        while (p[pos])
            pos += 1 + (size_t)p[pos];
        pos++;
        pos += 4;   /* TYPE, CLASS */
        uint32_t ttl = (uint32_t)p[pos] << 24 | (uint32_t)p[pos + 1] << 16 | (uint32_t)p[pos + 2] << 8 | p[pos + 3];
        pos += 4;
        size_t rdlen = (size_t)p[pos] << 8 | p[pos + 1];
        pos += 2 + rdlen;
        CHECK(ttl <= TTL_CAP);
        if (section == 0)
            answers++;
    }
    CHECK(pos == len);
    return answers;
}

static void check_answer(const struct dns_query *q, enum dns_parse_result pr, const uint8_t *resp, size_t n,
                         bool tcp)
{
    CHECK(n >= DNS_HEADER_LEN);
    CHECK(n <= dns_response_limit(q, tcp, 1232));
    struct dnsc_response r;
    if (!dnsc_parse(resp, n, &r)) {
        fprintf(stderr, "fuzz_agent: bad response: %s\n", r.error);
        abort();
    }
    CHECK(r.id == q->id);
    CHECK(!r.has_ecs || r.ecs_scope == 0);
    unsigned rcode = (r.flags & 15) | (unsigned)r.opt_ext_rcode << 4;
    bool aa = r.flags & 0x0400;
    unsigned answers = check_records(&r);
    if (pr == DNS_PARSE_OK) {
        CHECK(dns_name_in_zone(&q->qname, &zone) >= 0);
        if (rcode == DNS_RCODE_NXDOMAIN)
            CHECK(aa && r.ancount == 0 && r.nscount == 1);
        if (r.ancount > 0)
            CHECK(aa && rcode == DNS_RCODE_NOERROR);
        if (rcode == DNS_RCODE_SERVFAIL || rcode == DNS_RCODE_REFUSED)
            CHECK(!aa && r.ancount == 0);
        if (q->qtype == DNS_TYPE_A || q->qtype == DNS_TYPE_AAAA) {
            size_t l0;
            const uint8_t *lab = q->qname.labels ? dns_name_label(&q->qname, 0, &l0) : NULL;
            if (lab && q->qname.labels == 3 && l0 == 3 && memcmp(lab, "svc", 3) == 0)
                CHECK(answers <= SVC_ANSWER_COUNT);
        }
    } else {
        CHECK(rcode == q->rcode && r.ancount == 0);
    }
    dnsc_free(&r);
}

static void answer_and_check(const uint8_t *data, size_t size, bool tcp)
{
    static uint8_t resp[DNS_MSG_MAX];
    static struct dns_query q;
    enum dns_parse_result pr = dns_parse_query(data, size, &q);
    size_t cap = tcp ? DNS_MSG_MAX : 4096, n = 0;
    enum agent_action act = agent_dns_answer(dns, data, size, tcp, resp, cap, &n);
    if (pr == DNS_PARSE_DROP) {
        CHECK(act == AGENT_ACT_DROP);
        CHECK(agent_dns_servfail(dns, data, size, tcp, resp, cap) == 0);
        return;
    }
    bool outside = pr == DNS_PARSE_OK && dns_name_in_zone(&q.qname, &zone) < 0;
    CHECK((act == AGENT_ACT_FORWARD) == outside);
    if (act == AGENT_ACT_WAIT)
        CHECK(pr == DNS_PARSE_OK && names_slow(&q));
    if (act == AGENT_ACT_ANSWER)
        check_answer(&q, pr, resp, n, tcp);
    /* What a parked or forwarded query gets when nothing comes. */
    size_t sn = agent_dns_servfail(dns, data, size, tcp, resp, cap);
    CHECK(sn >= DNS_HEADER_LEN);
    struct dnsc_response r;
    CHECK(dnsc_parse(resp, sn, &r));
    CHECK(r.id == q.id && (r.flags & 15) == DNS_RCODE_SERVFAIL && r.ancount == 0);
    dnsc_free(&r);
    if (act == AGENT_ACT_FORWARD) {
        /* The query itself, as the upstream's answer (QR set, our ID): accepted. */
        uint8_t *echo = malloc(size);
        CHECK(echo);
        memcpy(echo, data, size);
        echo[2] |= 0x80;
        struct agent_fwd_expect e = { .id = q.id, .qname = q.qname, .qtype = q.qtype, .qclass = q.qclass };
        CHECK(agent_fwd_accept(&e, echo, size, 0xabcd));
        CHECK(echo[0] == 0xab && echo[1] == 0xcd);
        /* Another ID, or the query without QR: ignored. */
        memcpy(echo, data, size);
        echo[2] |= 0x80;
        e.id = (uint16_t)(q.id + 1);
        CHECK(!agent_fwd_accept(&e, echo, size, 0xabcd));
        e.id = q.id;
        echo[2] &= 0x7f;
        CHECK(!agent_fwd_accept(&e, echo, size, 0xabcd));
        free(echo);
    }
}

/* The input as an upstream's answer to "www.example.com A IN" with ID 0x1234. */
static void accept_check(const uint8_t *data, size_t size)
{
    static struct agent_fwd_expect e;
    if (e.qname.len == 0) {
        uint8_t w[DNS_NAME_MAX];
        int n = dns_name_from_text("www.example.com", w);
        CHECK(n > 0 && dns_name_set(&e.qname, w, (size_t)n) == 0);
        e.id = 0x1234;
        e.qtype = DNS_TYPE_A;
        e.qclass = DNS_CLASS_IN;
    }
    uint8_t *copy = malloc(size ? size : 1);
    CHECK(copy);
    memcpy(copy, data, size);
    bool ok = agent_fwd_accept(&e, copy, size, 0x5678);
    if (ok) {
        struct dns_question rq;
        CHECK(dns_read_question(data, size, &rq) == 0);
        CHECK(rq.id == 0x1234 && (rq.flags & 0x8000) && rq.qtype == DNS_TYPE_A && rq.qclass == DNS_CLASS_IN);
        CHECK(dns_name_equal(&rq.qname, &e.qname));
        CHECK(copy[0] == 0x56 && copy[1] == 0x78 && memcmp(copy + 2, data + 2, size - 2) == 0);
    } else {
        CHECK(memcmp(copy, data, size) == 0);   /* nothing written into what is ignored */
    }
    free(copy);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!dns)
        build();
    answer_and_check(data, size, false);
    answer_and_check(data, size, true);
    accept_check(data, size);
    return 0;
}
