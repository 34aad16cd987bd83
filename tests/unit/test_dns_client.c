/* Unit tests for the DNS client codec (src/lib/dns_client.c): the query it
 * sends, the answers it takes (compressed owners, CNAME chains, TTLs,
 * duplicates) and those it drops (another ID, question or type, a cut
 * record, an A of the wrong size, a pointer forwards), and resolv.conf. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <string.h>

#include "lib/dns_client.h"

static struct dns_name qname(const char *text)
{
    uint8_t wire[DNS_NAME_MAX];
    int n = dns_name_from_text(text, wire);
    assert_true(n > 0);
    struct dns_name out;
    assert_int_equal(dns_name_set(&out, wire, (size_t)n), 0);
    return out;
}

/* A response to the query in q[0..qlen): the header turned into an answer
 * with rcode and ancount, then the records given. */
static size_t response(uint8_t *out, const uint8_t *q, size_t qlen, unsigned rcode, uint16_t ancount,
                       const uint8_t *records, size_t rlen)
{
    /* The question ends before the OPT (11 bytes) the query carries. */
    size_t head = qlen - 11;
    memcpy(out, q, head);
    out[2] = 0x81;             /* QR, RD */
    out[3] = (uint8_t)(0x80 | rcode);
    out[6] = (uint8_t)(ancount >> 8);
    out[7] = (uint8_t)ancount;
    out[10] = out[11] = 0;     /* ARCOUNT */
    if (rlen)
        memcpy(out + head, records, rlen);
    return head + rlen;
}

#define A_REC(ttl, a, b, c, d) 0xC0, 0x0C, 0, 1, 0, 1, 0, 0, (ttl) >> 8, (ttl) & 0xff, 0, 4, a, b, c, d

static void test_query_is_a_recursive_question_with_edns(void **state)
{
    struct dns_name n = qname("App.Test");
    uint8_t buf[600];
    int len = dns_build_query(buf, sizeof buf, 0x1234, n.wire, n.len, DNS_TYPE_AAAA);
    assert_int_equal(len, 12 + 10 + 4 + 11);
    struct dns_query q;
    assert_int_equal(dns_parse_query(buf, (size_t)len, &q), DNS_PARSE_OK);
    assert_int_equal(q.id, 0x1234);
    assert_true(q.rd);
    assert_int_equal(q.qtype, DNS_TYPE_AAAA);
    assert_int_equal(q.qclass, DNS_CLASS_IN);
    assert_true(q.has_edns);
    assert_int_equal(q.udp_size, DNS_CLIENT_UDP_SIZE);
    assert_true(dns_name_equal(&q.qname, &n));
    assert_int_equal(dns_build_query(buf, 20, 1, n.wire, n.len, DNS_TYPE_A), -1);
}

static void test_answer_addresses_and_smallest_ttl(void **state)
{
    struct dns_name n = qname("app.test");
    uint8_t q[600], r[1200];
    int qlen = dns_build_query(q, sizeof q, 77, n.wire, n.len, DNS_TYPE_A);
    /* A CNAME to x.test (ttl 30), then x.test's two A records, one twice. */
    const uint8_t recs[] = {
        0xC0, 0x0C, 0, 5, 0, 1, 0, 0, 0, 30, 0, 8, 1, 'x', 4, 't', 'e', 's', 't', 0,
        0xC0, 38, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 10, 0, 0, 1,
        0xC0, 38, 0, 1, 0, 1, 0, 0, 0, 20, 0, 4, 10, 0, 0, 2,
        0xC0, 38, 0, 1, 0, 1, 0, 0, 0, 90, 0, 4, 10, 0, 0, 1,
    };
    size_t rlen = response(r, q, (size_t)qlen, 0, 4, recs, sizeof recs);
    struct dns_answer a;
    assert_int_equal(dns_parse_answer(r, rlen, 77, &n, DNS_TYPE_A, &a), 0);
    assert_int_equal(a.rcode, 0);
    assert_int_equal(a.n_addrs, 2);
    assert_int_equal(a.ttl, 20);
    assert_int_equal(a.addrs[0].family, AF_INET);
    assert_memory_equal(a.addrs[0].addr, ((uint8_t[]){ 10, 0, 0, 1 }), 4);
    assert_memory_equal(a.addrs[1].addr, ((uint8_t[]){ 10, 0, 0, 2 }), 4);
}

static void test_errors_are_answers_with_their_rcode(void **state)
{
    struct dns_name n = qname("app.test");
    uint8_t q[600], r[1200];
    int qlen = dns_build_query(q, sizeof q, 5, n.wire, n.len, DNS_TYPE_A);
    size_t rlen = response(r, q, (size_t)qlen, DNS_RCODE_NXDOMAIN, 0, NULL, 0);
    struct dns_answer a;
    assert_int_equal(dns_parse_answer(r, rlen, 5, &n, DNS_TYPE_A, &a), 0);
    assert_int_equal(a.rcode, DNS_RCODE_NXDOMAIN);
    assert_int_equal(a.n_addrs, 0);
}

static void test_answers_to_something_else_are_dropped(void **state)
{
    struct dns_name n = qname("app.test"), other = qname("other.test");
    uint8_t q[600], r[1200];
    int qlen = dns_build_query(q, sizeof q, 9, n.wire, n.len, DNS_TYPE_A);
    const uint8_t recs[] = { A_REC(5, 10, 0, 0, 1) };
    size_t rlen = response(r, q, (size_t)qlen, 0, 1, recs, sizeof recs);
    struct dns_answer a;
    assert_int_equal(dns_parse_answer(r, rlen, 9, &n, DNS_TYPE_A, &a), 0);
    assert_int_equal(dns_parse_answer(r, rlen, 10, &n, DNS_TYPE_A, &a), -1);         /* another ID */
    assert_int_equal(dns_parse_answer(r, rlen, 9, &other, DNS_TYPE_A, &a), -1);      /* another name */
    assert_int_equal(dns_parse_answer(r, rlen, 9, &n, DNS_TYPE_AAAA, &a), -1);       /* another type */
    assert_int_equal(dns_parse_answer(r, rlen - 1, 9, &n, DNS_TYPE_A, &a), -1);      /* cut short */
    assert_int_equal(dns_parse_answer(q, (size_t)qlen, 9, &n, DNS_TYPE_A, &a), -1);  /* a query: QR clear */
    /* An A record with 5 bytes of RDATA. */
    const uint8_t bad[] = { 0xC0, 0x0C, 0, 1, 0, 1, 0, 0, 0, 5, 0, 5, 10, 0, 0, 1, 9 };
    rlen = response(r, q, (size_t)qlen, 0, 1, bad, sizeof bad);
    assert_int_equal(dns_parse_answer(r, rlen, 9, &n, DNS_TYPE_A, &a), -1);
    /* A pointer forwards (to itself): refused, no loop. */
    const uint8_t loop[] = { 0xC0, 26, 0, 1, 0, 1, 0, 0, 0, 5, 0, 4, 10, 0, 0, 1 };
    rlen = response(r, q, (size_t)qlen, 0, 1, loop, sizeof loop);
    assert_int_equal(dns_parse_answer(r, rlen, 9, &n, DNS_TYPE_A, &a), -1);
}

static void test_a_ttl_with_the_top_bit_counts_as_zero(void **state)
{
    struct dns_name n = qname("app.test");
    uint8_t q[600], r[1200];
    int qlen = dns_build_query(q, sizeof q, 3, n.wire, n.len, DNS_TYPE_A);
    const uint8_t recs[] = { 0xC0, 0x0C, 0, 1, 0, 1, 0x80, 0, 0, 5, 0, 4, 10, 0, 0, 1 };
    size_t rlen = response(r, q, (size_t)qlen, 0, 1, recs, sizeof recs);
    struct dns_answer a;
    assert_int_equal(dns_parse_answer(r, rlen, 3, &n, DNS_TYPE_A, &a), 0);
    assert_int_equal(a.ttl, 0);
}

static void test_resolv_conf(void **state)
{
    const char *text = "# comment\nsearch example.com\nnameserver 10.0.0.2\n  nameserver\t::1 # local\n"
                       "nameserver fe80::1%eth0\nnameserverx 1.1.1.1\nnameserver junk\nnameserver 9.9.9.9\n"
                       "nameserver 8.8.8.8\n";
    struct dns_answer_addr a[3];
    size_t n = dns_resolv_conf_parse(text, strlen(text), a, 3);
    assert_int_equal(n, 3);
    assert_int_equal(a[0].family, AF_INET);
    assert_memory_equal(a[0].addr, ((uint8_t[]){ 10, 0, 0, 2 }), 4);
    assert_int_equal(a[1].family, AF_INET6);
    assert_int_equal(a[1].addr[15], 1);
    assert_memory_equal(a[2].addr, ((uint8_t[]){ 9, 9, 9, 9 }), 4);
    assert_int_equal(dns_resolv_conf_parse("", 0, a, 3), 0);
    assert_int_equal(dns_resolv_conf_parse("nameserver 1.2.3.4", 18, a, 3), 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_query_is_a_recursive_question_with_edns),
        cmocka_unit_test(test_answer_addresses_and_smallest_ttl),
        cmocka_unit_test(test_errors_are_answers_with_their_rcode),
        cmocka_unit_test(test_answers_to_something_else_are_dropped),
        cmocka_unit_test(test_a_ttl_with_the_top_bit_counts_as_zero),
        cmocka_unit_test(test_resolv_conf),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
