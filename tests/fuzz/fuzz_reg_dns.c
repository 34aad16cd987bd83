/* libFuzzer target for the registry's DNS answers (src/registry/reg_dns.c,
 * reg_dns_answer: what the UDP and TCP paths call for every message): the
 * name dispatch (apex, SERVICE, _SERVICE._tcp, ADDR.SERVICE targets, NS
 * names), the address labels of SRV targets, the Client Subnet lookup and
 * the answers built from a small model.
 *
 * Input: one DNS message. It is answered as over UDP (client payload size,
 * capped at udp_max) and over TCP, from a fixed source address. Beyond "no
 * crash", every answer is read back by the independent strict reader
 * (tests/fuzz/dns_response_check.h): well formed, within the size limit,
 * the ID echoed; an answer is sent exactly when the codec's parser does not
 * say DROP; a query outside the zone is REFUSED without AA; an answer with
 * records is authoritative; the Client Subnet scope is 0 unless the answer
 * is a service's A/AAAA/ANY/SRV. */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/dns_wire.h"
#include "registry/reg_dns.h"
#include "registry/reg_model.h"
#include "registry/reg_subnet.h"

#include "dns_response_check.h"

#define CHECK(x)                                                                              \
    do {                                                                                      \
        if (!(x)) {                                                                           \
            fprintf(stderr, "fuzz_reg_dns: invariant failed at line %d: %s\n", __LINE__, #x); \
            abort();                                                                          \
        }                                                                                     \
    } while (0)

static struct reg_model *model;
static struct reg_subnets *subnets;
static struct reg_dns *dns;
static struct dns_name zone;
static uint8_t zone_wire[DNS_NAME_MAX];

static void put(struct reg_service *svc, const char *addr, const char *dc, const char *region, uint32_t w,
                bool enabled)
{
    struct reg_instance_spec spec = {.weight = w, .datacenter = dc, .region = region, .enabled = enabled};
    const char *why;
    char err[256];
    CHECK(addr_parse(addr, &spec.addr, &why) == 0);
    CHECK(reg_instance_put(model, svc, &spec, 0, NULL, err, sizeof err) == 0);
}

static struct reg_service *service(const char *name, uint32_t answer_count, double protect)
{
    struct reg_service_settings s;
    reg_service_settings_defaults(&s);
    s.answer_count = answer_count;
    s.protect_threshold = protect;
    struct reg_service *svc = NULL;
    char err[256];
    CHECK(reg_service_put(model, name, &s, &svc, err, sizeof err) == 0);
    reg_service_settings_free(&s);
    return svc;
}

static void build(void)
{
    struct reg_model_conf mc;
    reg_model_conf_defaults(&mc);
    mc.hash_seed = 1;
    char err[256];
    model = reg_model_create(&mc, err, sizeof err);
    CHECK(model);
    subnets = reg_subnets_new();
    struct reg_loc l1, l2;
    CHECK(reg_model_loc(model, "dc1", "r1", &l1, err, sizeof err) == 0);
    CHECK(reg_model_loc(model, "dc2", "r2", &l2, err, sizeof err) == 0);
    CHECK(reg_subnets_add(subnets, "192.0.2.0/24", l1, err, sizeof err) == 0);
    CHECK(reg_subnets_add(subnets, "198.51.96.0/20", l2, err, sizeof err) == 0);
    CHECK(reg_subnets_add(subnets, "2001:db8:1200::/40", l2, err, sizeof err) == 0);
    CHECK(reg_subnets_build(subnets, err, sizeof err) == 0);

    struct reg_service *svc = service("svc", 3, 0.5);
    put(svc, "10.0.0.1:80", "dc1", "r1", 100, true);
    put(svc, "10.0.0.2:80", "dc1", "r1", 300, true);
    put(svc, "10.0.0.3:80", "dc2", "r2", 100, true);
    put(svc, "10.0.0.4:80", "dc2", "r2", 0, true);
    put(svc, "10.0.0.5:80", "dc2", "r2", 100, false);
    put(svc, "[2001:db8::1]:8080", "dc1", "r1", 100, true);
    put(svc, "[2001:db8::2]:8080", "dc2", "r2", 100, true);
    struct reg_service *big = service("big", 256, 0);
    for (int i = 0; i < 600; i++) {
        char a[32];
        snprintf(a, sizeof a, "10.9.%d.%d:53", i / 200, i % 200 + 1);
        put(big, a, i % 2 ? "dc1" : "dc2", i % 2 ? "r1" : "r2", (uint32_t)(i % 7 + 1), true);
    }
    service("empty", 1, 0);

    struct reg_dns_conf c;
    reg_dns_conf_defaults(&c);   /* sluice.test., no listener: answers only */
    dns = reg_dns_start(NULL, &c, model, subnets, err, sizeof err);
    CHECK(dns);
    int n = dns_name_from_text(c.zone, zone_wire);
    CHECK(n > 0 && dns_name_set(&zone, zone_wire, (size_t)n) == 0);
}

static bool is_service_answer(const struct dns_query *q)
{
    int k = dns_name_in_zone(&q->qname, &zone);
    size_t l0, l1 = 0;
    if (k == 1) {
        const uint8_t *a = dns_name_label(&q->qname, 0, &l0);
        return ((l0 == 3 && (memcmp(a, "svc", 3) == 0 || memcmp(a, "big", 3) == 0))) &&
               (q->qtype == DNS_TYPE_A || q->qtype == DNS_TYPE_AAAA || q->qtype == DNS_TYPE_ANY);
    }
    if (k == 2) {
        const uint8_t *a = dns_name_label(&q->qname, 0, &l0), *b = dns_name_label(&q->qname, 1, &l1);
        return l1 == 4 && memcmp(b, "_tcp", 4) == 0 && l0 == 4 && (memcmp(a, "_svc", 4) == 0 || memcmp(a, "_big", 4) == 0) &&
               (q->qtype == DNS_TYPE_SRV || q->qtype == DNS_TYPE_ANY);
    }
    return false;
}

static void answer_and_check(const uint8_t *data, size_t size, bool tcp)
{
    static uint8_t resp[DNS_MSG_MAX];
    static struct dns_query q;
    struct sockaddr_in from = {.sin_family = AF_INET, .sin_port = htons(5353)};
    from.sin_addr.s_addr = htonl(0xc0000207);   /* 192.0.2.7: dc1 */
    enum dns_parse_result pr = dns_parse_query(data, size, &q);
    size_t cap = tcp ? DNS_MSG_MAX : 4096;
    size_t n = reg_dns_answer(dns, data, size, (const struct sockaddr *)&from, tcp, resp, cap);
    if (pr == DNS_PARSE_DROP) {
        CHECK(n == 0);
        return;
    }
    CHECK(n >= DNS_HEADER_LEN);
    CHECK(n <= dns_response_limit(&q, tcp, 1232));
    struct dnsc_response r;
    if (!dnsc_parse(resp, n, &r)) {
        fprintf(stderr, "fuzz_reg_dns: bad response: %s\n", r.error);
        abort();
    }
    CHECK(r.id == q.id);
    unsigned rcode = (r.flags & 15) | (unsigned)r.opt_ext_rcode << 4;
    bool aa = r.flags & 0x0400;
    if (pr == DNS_PARSE_OK) {
        bool in_class = q.qclass == DNS_CLASS_IN || q.qclass == DNS_CLASS_ANY;
        if (!in_class || dns_name_in_zone(&q.qname, &zone) < 0) {
            CHECK(rcode == DNS_RCODE_REFUSED && !aa && r.ancount == 0);
        } else if (r.ancount > 0) {
            CHECK(aa && rcode == DNS_RCODE_NOERROR);
        }
        if (rcode == DNS_RCODE_NXDOMAIN)
            CHECK(r.ancount == 0 && r.nscount == 1);
        if (r.has_ecs && r.ecs_scope != 0)
            CHECK(is_service_answer(&q) && r.ancount > 0);
    } else {
        CHECK(rcode == q.rcode && r.ancount == 0 && !r.has_ecs);
    }
    dnsc_free(&r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!dns)
        build();
    answer_and_check(data, size, false);
    answer_and_check(data, size, true);
    return 0;
}
