/* libFuzzer target for lib/dns_client: the answers the proxy's resolver
 * reads off its UDP socket (anyone can send it datagrams) and the
 * resolv.conf text it reads at each configuration.
 *
 * Input: a DNS message. The target reads it as the answer to its own
 * question (as sent, with its ID, name and type, so the interesting paths
 * are reached) for A and AAAA, and checks what the resolver relies on: at
 * most DNS_ANSWER_MAX_ADDRS addresses, each of the asked family, no
 * duplicates, the same result twice. It also reads the bytes as a
 * resolv.conf and checks the count and families. */
#include "lib/dns_client.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(x)                                                                               \
    do {                                                                                       \
        if (!(x)) {                                                                            \
            fprintf(stderr, "fuzz_dns_client: invariant failed at line %d: %s\n", __LINE__, #x); \
            abort();                                                                           \
        }                                                                                      \
    } while (0)

static void check_answer(const uint8_t *data, size_t size, uint16_t qtype)
{
    struct dns_question q;
    if (dns_read_question(data, size, &q) < 0)
        return;
    struct dns_answer a, b;
    int rc = dns_parse_answer(data, size, q.id, &q.qname, qtype, &a);
    CHECK(rc == dns_parse_answer(data, size, q.id, &q.qname, qtype, &b));
    if (rc < 0)
        return;
    CHECK(a.n_addrs <= DNS_ANSWER_MAX_ADDRS && a.n_addrs == b.n_addrs);
    CHECK(a.rcode <= 15 && a.ttl <= 0x7fffffffu);
    for (size_t i = 0; i < a.n_addrs; i++) {
        CHECK(a.addrs[i].family == (qtype == DNS_TYPE_A ? AF_INET : AF_INET6));
        for (size_t j = 0; j < i; j++)
            CHECK(memcmp(&a.addrs[i], &a.addrs[j], sizeof a.addrs[i]) != 0);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    check_answer(data, size, DNS_TYPE_A);
    check_answer(data, size, DNS_TYPE_AAAA);
    struct dns_answer_addr r[4];
    size_t n = dns_resolv_conf_parse((const char *)data, size, r, 4);
    CHECK(n <= 4);
    for (size_t i = 0; i < n; i++)
        CHECK(r[i].family == AF_INET || r[i].family == AF_INET6);
    return 0;
}
