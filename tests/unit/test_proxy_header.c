/* Unit tests for lib/proxy_header (the PROXY protocol codec) and the
 * trusted_proxies blocks of proxy/proxy_protocol_conf.c: what the
 * specification asks of v1 and v2, byte for byte, and what is refused. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

#include "lib/proxy_header.h"
#include "proxy/proxy_protocol_conf.h"

static const uint8_t SIG[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};

static int parse(const void *p, size_t len, unsigned accept, struct proxy_hdr *h, const char **why)
{
    *why = NULL;
    return proxy_hdr_parse(p, len, accept, h, why);
}

static void sin4(struct sockaddr_in *a, const char *ip, uint16_t port)
{
    memset(a, 0, sizeof *a);
    a->sin_family = AF_INET;
    a->sin_port = htons(port);
    inet_pton(AF_INET, ip, &a->sin_addr);
}

static void test_v1_tcp4_and_what_follows(void **state)
{
    const char *in = "PROXY TCP4 192.0.2.1 198.51.100.2 51234 443\r\nGET / HTTP/1.1\r\n";
    struct proxy_hdr h;
    const char *why;
    int n = parse(in, strlen(in), PROXY_HDR_ACCEPT_V1, &h, &why);
    assert_int_equal(n, strlen("PROXY TCP4 192.0.2.1 198.51.100.2 51234 443\r\n"));
    assert_int_equal(h.version, 1);
    assert_false(h.local);
    const struct sockaddr_in *s = (const struct sockaddr_in *)&h.src, *d = (const struct sockaddr_in *)&h.dst;
    assert_int_equal(s->sin_family, AF_INET);
    assert_int_equal(ntohs(s->sin_port), 51234);
    assert_int_equal(ntohs(d->sin_port), 443);
    assert_int_equal(ntohl(s->sin_addr.s_addr), 0xC0000201);
    /* Every prefix is incomplete, never refused. */
    for (int k = 0; k < n; k++)
        assert_int_equal(parse(in, (size_t)k, PROXY_HDR_ACCEPT_ANY, &h, &why), 0);
}

static void test_v1_refusals(void **state)
{
    static const char *const bad[] = {
        "PROXY TCP4 192.0.2.1 198.51.100.2 051234 443\r\n", /* leading zero */
        "PROXY TCP4 192.0.2.1 198.51.100.2 65536 443\r\n",  /* port range */
        "PROXY TCP4 2001:db8::1 198.51.100.2 1 2\r\n",      /* family */
        "PROXY TCP4  192.0.2.1 198.51.100.2 1 2\r\n",       /* double space */
        "PROXY TCP4 192.0.2.1 198.51.100.2 1 2 \r\n",       /* trailing field */
        "PROXY TCP4 192.0.2.1 198.51.100.2 1\r\n",          /* missing port */
        "PROXY UDP4 192.0.2.1 198.51.100.2 1 2\r\n",
        "PROXY TCP4 192.0.2.1 198.51.100.2 1 2\n",          /* LF alone */
        "PROXY TCP4 192.0.2.1 198.51.100.2 1 2\rX",
        "GET / HTTP/1.1\r\n",
    };
    struct proxy_hdr h;
    const char *why;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(parse(bad[i], strlen(bad[i]), PROXY_HDR_ACCEPT_ANY, &h, &why), -1);
        assert_non_null(why);
    }
    /* 107 bytes without CRLF: refused, 106: still incomplete. */
    char line[120];
    memset(line, '1', sizeof line);
    memcpy(line, "PROXY TCP4 ", 11);
    assert_int_equal(parse(line, 106, PROXY_HDR_ACCEPT_V1, &h, &why), 0);
    assert_int_equal(parse(line, 107, PROXY_HDR_ACCEPT_V1, &h, &why), -1);
    /* Only v2 accepted. */
    assert_int_equal(parse("PROXY ", 6, PROXY_HDR_ACCEPT_V2, &h, &why), -1);
}

static void test_v1_unknown_is_local(void **state)
{
    const char *in = "PROXY UNKNOWN whatever follows\r\n";
    struct proxy_hdr h;
    const char *why;
    assert_int_equal(parse(in, strlen(in), PROXY_HDR_ACCEPT_V1, &h, &why), (int)strlen(in));
    assert_true(h.local);
}

static void test_v1_writer(void **state)
{
    struct sockaddr_in s, d;
    sin4(&s, "203.0.113.9", 40000);
    sin4(&d, "198.51.100.1", 443);
    char out[PROXY_HDR_V1_MAX];
    size_t n = proxy_hdr_write_v1(out, sizeof out, (struct sockaddr *)&s, (struct sockaddr *)&d);
    assert_int_equal(n, strlen("PROXY TCP4 203.0.113.9 198.51.100.1 40000 443\r\n"));
    assert_memory_equal(out, "PROXY TCP4 203.0.113.9 198.51.100.1 40000 443\r\n", n);
    /* A v4-mapped destination with a v4 source: both written as IPv4. */
    struct sockaddr_in6 m;
    memset(&m, 0, sizeof m);
    m.sin6_family = AF_INET6;
    m.sin6_port = htons(80);
    inet_pton(AF_INET6, "::ffff:192.0.2.7", &m.sin6_addr);
    n = proxy_hdr_write_v1(out, sizeof out, (struct sockaddr *)&s, (struct sockaddr *)&m);
    assert_memory_equal(out, "PROXY TCP4 203.0.113.9 192.0.2.7 40000 80\r\n", n);
    n = proxy_hdr_write_v1(out, sizeof out, NULL, NULL);
    assert_memory_equal(out, "PROXY UNKNOWN\r\n", n);
}

static void test_v2_writer_and_parser_agree(void **state)
{
    struct sockaddr_in s, d;
    sin4(&s, "192.0.2.1", 1);
    sin4(&d, "192.0.2.2", 2);
    struct proxy_hdr_v2_out o = {.src = (struct sockaddr *)&s, .dst = (struct sockaddr *)&d, .alpn = "h2",
                                 .authority = "app.test", .unique_id = "id", .ssl = true, .ssl_version = "TLSv1.3",
                                 .ssl_cipher = "TLS_AES_256_GCM_SHA384", .crc32c = true};
    uint8_t buf[512];
    size_t n = proxy_hdr_write_v2(buf, sizeof buf, &o);
    assert_memory_equal(buf, SIG, 12);
    assert_int_equal(buf[12], 0x21);
    assert_int_equal(buf[13], 0x11);
    assert_int_equal((buf[14] << 8 | buf[15]) + 16, n);
    struct proxy_hdr h;
    const char *why;
    assert_int_equal(parse(buf, n, PROXY_HDR_ACCEPT_V2, &h, &why), (int)n);
    assert_true(h.crc_checked && h.ssl && !h.local);
    assert_int_equal(h.alpn.len, 2);
    assert_memory_equal(h.alpn.p, "h2", 2);
    assert_memory_equal(h.authority.p, "app.test", 8);
    assert_memory_equal(h.ssl_cipher.p, "TLS_AES_256_GCM_SHA384", h.ssl_cipher.len);
    for (size_t k = 0; k < n; k++)
        assert_int_equal(parse(buf, k, PROXY_HDR_ACCEPT_V2, &h, &why), 0);
    /* One bit off anywhere after the signature: the CRC (or a bound) says no. */
    buf[n - 6] ^= 1;
    assert_int_equal(parse(buf, n, PROXY_HDR_ACCEPT_V2, &h, &why), -1);
    /* LOCAL: no addresses. */
    struct proxy_hdr_v2_out local = {0};
    n = proxy_hdr_write_v2(buf, sizeof buf, &local);
    assert_int_equal(n, 16);
    assert_int_equal(buf[12], 0x20);
    assert_int_equal(parse(buf, n, PROXY_HDR_ACCEPT_ANY, &h, &why), 16);
    assert_true(h.local);
}

static void test_v2_bounds(void **state)
{
    uint8_t b[64];
    struct proxy_hdr h;
    const char *why;
    memcpy(b, SIG, 12);
    b[12] = 0x21;
    b[13] = 0x11;
    b[14] = 0;
    b[15] = 11; /* shorter than an INET block */
    memset(b + 16, 0, 11);
    assert_int_equal(parse(b, 27, PROXY_HDR_ACCEPT_V2, &h, &why), -1);
    b[15] = 12;
    assert_int_equal(parse(b, 28, PROXY_HDR_ACCEPT_V2, &h, &why), 28);
    b[12] = 0x31; /* version 3 */
    assert_int_equal(parse(b, 28, PROXY_HDR_ACCEPT_V2, &h, &why), -1);
    b[12] = 0x22; /* command 2 */
    assert_int_equal(parse(b, 28, PROXY_HDR_ACCEPT_V2, &h, &why), -1);
    b[12] = 0x21;
    b[13] = 0x10; /* INET without a transport protocol */
    assert_int_equal(parse(b, 28, PROXY_HDR_ACCEPT_V2, &h, &why), -1);
    b[12] = 0x20; /* ... is fine under LOCAL, whose block is discarded */
    assert_int_equal(parse(b, 28, PROXY_HDR_ACCEPT_V2, &h, &why), 28);
    assert_true(h.local);
    b[12] = 0x21;
    b[13] = 0x11;
    b[14] = 0x10; /* 4096 + 16: past PROXY_HDR_V2_MAX */
    b[15] = 0x00;
    assert_int_equal(parse(b, 28, PROXY_HDR_ACCEPT_V2, &h, &why), -1);
    /* A TLV that runs past the end. */
    b[14] = 0;
    b[15] = 12 + 4;
    uint8_t t[4] = {0x01, 0x00, 0x02, 'h'};
    memcpy(b + 28, t, 4);
    assert_int_equal(parse(b, 32, PROXY_HDR_ACCEPT_V2, &h, &why), -1);
}

static void test_trusted_blocks(void **state)
{
    struct cfg_cidr c[3];
    char err[128];
    assert_int_equal(pp_cidr_parse("10.0.0.0/8", &c[0], err, sizeof err), 0);
    assert_int_equal(pp_cidr_parse("2001:db8::/32", &c[1], err, sizeof err), 0);
    assert_int_equal(pp_cidr_parse("192.0.2.77", &c[2], err, sizeof err), 0);
    assert_int_equal(pp_cidr_parse("10.0.0.1/8", &c[0], err, sizeof err), -1);
    assert_int_equal(pp_cidr_parse("10.0.0.0/08", &c[0], err, sizeof err), -1);
    assert_int_equal(pp_cidr_parse("10.0.0.0/", &c[0], err, sizeof err), -1);
    assert_int_equal(pp_cidr_parse("::/129", &c[0], err, sizeof err), -1);
    assert_int_equal(pp_cidr_parse("example.com", &c[0], err, sizeof err), -1);
    assert_int_equal(pp_cidr_parse("10.0.0.0/8", &c[0], err, sizeof err), 0);
    struct sockaddr_in a;
    sin4(&a, "10.200.3.4", 1);
    assert_true(pp_cidr_match(c, 3, (struct sockaddr *)&a));
    sin4(&a, "11.0.0.1", 1);
    assert_false(pp_cidr_match(c, 3, (struct sockaddr *)&a));
    sin4(&a, "192.0.2.77", 1);
    assert_true(pp_cidr_match(c, 3, (struct sockaddr *)&a));
    sin4(&a, "192.0.2.78", 1);
    assert_false(pp_cidr_match(c, 3, (struct sockaddr *)&a));
    struct sockaddr_in6 b;
    memset(&b, 0, sizeof b);
    b.sin6_family = AF_INET6;
    inet_pton(AF_INET6, "2001:db8:ffff::1", &b.sin6_addr);
    assert_true(pp_cidr_match(c, 3, (struct sockaddr *)&b));
    inet_pton(AF_INET6, "2001:db9::1", &b.sin6_addr);
    assert_false(pp_cidr_match(c, 3, (struct sockaddr *)&b));
    inet_pton(AF_INET6, "::ffff:10.1.1.1", &b.sin6_addr); /* mapped IPv4 counts as IPv4 */
    assert_true(pp_cidr_match(c, 3, (struct sockaddr *)&b));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_v1_tcp4_and_what_follows),
        cmocka_unit_test(test_v1_refusals),
        cmocka_unit_test(test_v1_unknown_is_local),
        cmocka_unit_test(test_v1_writer),
        cmocka_unit_test(test_v2_writer_and_parser_agree),
        cmocka_unit_test(test_v2_bounds),
        cmocka_unit_test(test_trusted_blocks),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
