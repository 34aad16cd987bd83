/* Unit tests for lib/dns_wire: the query parser (dig's own queries, and one
 * malformed query for every rule of dns_wire.h), the response writer
 * (byte-exact responses written out by hand here, truncation at each limit,
 * compression, the Client Subnet round trip), the name helpers, and dig
 * itself talking to a small server built on the codec, over UDP and TCP.
 *
 * Fixtures are hex strings (spaces ignored). The dig queries were captured
 * from dig 9.18 with a UDP socket (see tests/fuzz/gen_dns_corpus.py, which
 * puts the same bytes in the fuzz corpus). Responses are also read back by
 * the fuzz target's independent reader (tests/fuzz/dns_response_check.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "lib/dns_wire.h"

#include "../fuzz/dns_response_check.h"

/* ---- helpers ------------------------------------------------------------ */

static size_t unhex(const char *s, uint8_t *out, size_t cap)
{
    size_t n = 0;
    int hi = -1;
    for (; *s; s++) {
        if (*s == ' ' || *s == '\n')
            continue;
        int v = *s >= '0' && *s <= '9' ? *s - '0' : (*s | 0x20) - 'a' + 10;
        if (v < 0 || v > 15)
            fail_msg("bad hex digit '%c'", *s);
        if (hi < 0) {
            hi = v;
            continue;
        }
        if (n >= cap)
            fail_msg("hex fixture longer than %zu bytes", cap);
        out[n++] = (uint8_t)(hi << 4 | v);
        hi = -1;
    }
    if (hi >= 0)
        fail_msg("odd number of hex digits");
    return n;
}

static void print_hex(const char *what, const uint8_t *p, size_t n)
{
    fprintf(stderr, "%s (%zu):", what, n);
    for (size_t i = 0; i < n; i++)
        fprintf(stderr, "%s%02x", i % 16 ? " " : "\n  ", p[i]);
    fprintf(stderr, "\n");
}

static void assert_bytes(const uint8_t *got, size_t len, const char *want_hex)
{
    uint8_t want[4096];
    size_t wlen = unhex(want_hex, want, sizeof want);
    if (len != wlen || memcmp(got, want, len) != 0) {
        print_hex("got", got, len);
        print_hex("want", want, wlen);
        fail_msg("bytes differ");
    }
}

static struct dns_query q;   /* ~700 bytes: off the stack */

static enum dns_parse_result parse_hex(const char *hex)
{
    uint8_t m[2048];
    size_t n = unhex(hex, m, sizeof m);
    /* an exact-size copy, so ASan sees a read past the end */
    uint8_t *copy = malloc(n ? n : 1);
    memcpy(copy, m, n);
    enum dns_parse_result r = dns_parse_query(copy, n, &q);
    free(copy);
    return r;
}

static void name_of(const char *text, uint8_t out[DNS_NAME_MAX])
{
    assert_true(dns_name_from_text(text, out) > 0);
}

static struct dns_name zone_name(const char *text)
{
    uint8_t wire[DNS_NAME_MAX];
    struct dns_name n;
    name_of(text, wire);
    assert_int_equal(dns_name_set(&n, wire, sizeof wire), 0);
    return n;
}

/* Read a response with the independent reader; it must be well formed. */
static void read_back(const uint8_t *m, size_t len, struct dnsc_response *r)
{
    if (!dnsc_parse(m, len, r)) {
        print_hex("response", m, len);
        fail_msg("the response reader rejects it: %s", r->error);
    }
}

/* Query fragments. */
#define QNAME_SVC "03 737663 06 736c75696365 04 74657374 00"   /* svc.sluice.test */
#define Q_SVC_A QNAME_SVC " 0001 0001"
#define HDR(ar) "1234 0100 0001 0000 0000 " ar
#define OPT_HEAD "00 0029 04d0 00000000"

/* dig 9.18 queries (see the file comment) */
#define DIG_A_COOKIE                                                                                  \
    "d301 0120 0001 0000 0000 0001 0373766306736c756963650474657374000001000100002904d000000000000c" \
    "000a000869fccce075838ec5"
#define DIG_A_NOEDNS "3a6a 0120 0001 0000 0000 0000 0373766306736c7569636504746573740000010001"
#define DIG_SRV \
    "19b3 0120 0001 0000 0000 0001 045f737663045f74637006736c756963650474657374000021000100002904d0000000000000"
#define DIG_MIXED_CASE \
    "611d 0120 0001 0000 0000 0001 0353764306534c554943450454657374000001000100002904d0000000000000"
#define DIG_ECS_V4_24                                                                                 \
    "56b9 0120 0001 0000 0000 0001 0373766306736c756963650474657374000001000100002904d000000000000b" \
    "0008000700011800c00002"
#define DIG_ECS_V4_20                                                                                 \
    "13c4 0120 0001 0000 0000 0001 0373766306736c756963650474657374000001000100002904d000000000000b" \
    "0008000700011400c63360"
#define DIG_ECS_V6_40                                                                                 \
    "3514 0120 0001 0000 0000 0001 0373766306736c75696365047465737400001c000100002904d000000000000d" \
    "000800090002280020010db812"
#define DIG_ECS_ZERO \
    "00d3 0120 0001 0000 0000 0001 0373766306736c756963650474657374000001000100002904d00000000000080008000400010000"
#define DIG_DNSSEC "d981 0120 0001 0000 0000 0001 0373766306736c756963650474657374000001000100002904d0000080000000"
#define DIG_EDNS_V1 "7bdd 0120 0001 0000 0000 0001 0373766306736c756963650474657374000001000100002904d0000100000000"
#define DIG_OPCODE_STATUS "ae9c 1120 0001 0000 0000 0000 06736c7569636504746573740000060001"
#define DIG_ROOT_NS "3857 0120 0001 0000 0000 0000 00 0002 0001"

/* ---- the parser: dig's queries ------------------------------------------ */

static void test_parse_dig_a_with_cookie(void **state)
{
    assert_int_equal(parse_hex(DIG_A_COOKIE), DNS_PARSE_OK);
    assert_null(q.error);
    assert_int_equal(q.rcode, DNS_RCODE_NOERROR);
    assert_int_equal(q.id, 0xd301);
    assert_int_equal(q.flags, 0x0120);
    assert_int_equal(q.opcode, 0);
    assert_true(q.rd);
    assert_false(q.cd);
    assert_true(q.has_question);
    assert_int_equal(q.qtype, DNS_TYPE_A);
    assert_int_equal(q.qclass, DNS_CLASS_IN);
    assert_int_equal(q.qname.len, 17);
    assert_int_equal(q.qname.labels, 3);
    assert_memory_equal(q.qname.wire, "\3svc\6sluice\4test", 17);
    assert_int_equal(q.qname.label_off[0], 0);
    assert_int_equal(q.qname.label_off[1], 4);
    assert_int_equal(q.qname.label_off[2], 11);
    /* EDNS with dig's COOKIE option, which is skipped */
    assert_true(q.has_edns);
    assert_int_equal(q.udp_size, 1232);
    assert_int_equal(q.edns_version, 0);
    assert_false(q.dnssec_ok);
    assert_false(q.has_ecs);
}

static void test_parse_dig_variants(void **state)
{
    assert_int_equal(parse_hex(DIG_A_NOEDNS), DNS_PARSE_OK);
    assert_int_equal(q.id, 0x3a6a);
    assert_false(q.has_edns);
    assert_int_equal(q.udp_size, 0);

    assert_int_equal(parse_hex(DIG_DNSSEC), DNS_PARSE_OK);
    assert_true(q.has_edns && q.dnssec_ok);

    assert_int_equal(parse_hex(DIG_SRV), DNS_PARSE_OK);
    assert_int_equal(q.qtype, DNS_TYPE_SRV);
    assert_int_equal(q.qname.labels, 4);
    size_t len;
    const uint8_t *l0 = dns_name_label(&q.qname, 0, &len);
    assert_int_equal(len, 4);
    assert_memory_equal(l0, "_svc", 4);
    const uint8_t *l1 = dns_name_label(&q.qname, 1, &len);
    assert_int_equal(len, 4);
    assert_memory_equal(l1, "_tcp", 4);

    assert_int_equal(parse_hex(DIG_ROOT_NS), DNS_PARSE_OK);
    assert_int_equal(q.qname.len, 1);
    assert_int_equal(q.qname.labels, 0);
    assert_int_equal(q.qtype, DNS_TYPE_NS);
}

/* The question keeps its case for the echo; matching uses the folded copy. */
static void test_parse_mixed_case(void **state)
{
    assert_int_equal(parse_hex(DIG_MIXED_CASE), DNS_PARSE_OK);
    assert_memory_equal(q.qname.wire, "\3SvC\6SLUICE\4Test", 17);
    assert_memory_equal(q.qname.lower, "\3svc\6sluice\4test", 17);
    struct dns_name zone = zone_name("sluice.test");
    assert_int_equal(dns_name_in_zone(&q.qname, &zone), 1);
    size_t len;
    assert_memory_equal(dns_name_label(&q.qname, 0, &len), "svc", 3);
}

static void test_parse_client_subnet(void **state)
{
    assert_int_equal(parse_hex(DIG_ECS_V4_24), DNS_PARSE_OK);
    assert_true(q.has_ecs);
    assert_int_equal(q.ecs.family, DNS_ECS_FAMILY_IPV4);
    assert_int_equal(q.ecs.source_prefix, 24);
    assert_int_equal(q.ecs.scope_prefix, 0);
    assert_memory_equal(q.ecs.addr, "\xc0\x00\x02\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00", 16);

    assert_int_equal(parse_hex(DIG_ECS_V4_20), DNS_PARSE_OK);
    assert_int_equal(q.ecs.source_prefix, 20);
    assert_memory_equal(q.ecs.addr, "\xc6\x33\x60\x00", 4);

    assert_int_equal(parse_hex(DIG_ECS_V6_40), DNS_PARSE_OK);
    assert_int_equal(q.qtype, DNS_TYPE_AAAA);
    assert_int_equal(q.ecs.family, DNS_ECS_FAMILY_IPV6);
    assert_int_equal(q.ecs.source_prefix, 40);
    assert_memory_equal(q.ecs.addr, "\x20\x01\x0d\xb8\x12\x00\x00\x00", 8);

    /* /0: the client asks for no tailoring; still valid */
    assert_int_equal(parse_hex(DIG_ECS_ZERO), DNS_PARSE_OK);
    assert_true(q.has_ecs);
    assert_int_equal(q.ecs.source_prefix, 0);

    /* full-length prefixes, and a prefix that ends inside a byte */
    assert_int_equal(parse_hex(HDR("0001") Q_SVC_A OPT_HEAD "000c 0008 0008 0001 20 00 c0000207"), DNS_PARSE_OK);
    assert_int_equal(q.ecs.source_prefix, 32);
    assert_memory_equal(q.ecs.addr, "\xc0\x00\x02\x07", 4);
    assert_int_equal(parse_hex(HDR("0001") Q_SVC_A OPT_HEAD
                               "0018 0008 0014 0002 80 00 000102030405060708090a0b0c0d0e0f"),
                     DNS_PARSE_OK);
    assert_int_equal(q.ecs.source_prefix, 128);
    assert_int_equal(parse_hex(HDR("0001") Q_SVC_A OPT_HEAD "000b 0008 0007 0001 11 00 0a0180"), DNS_PARSE_OK);
    assert_int_equal(q.ecs.source_prefix, 17);
}

/* Other options are skipped whatever they hold; a payload size under 512
 * is kept as sent, and dns_response_limit raises it to 512. */
static void test_parse_unknown_options_and_small_payload(void **state)
{
    assert_int_equal(parse_hex(HDR("0001") Q_SVC_A OPT_HEAD
                               "0028 000a 0008 3132333435363738 fde9 0000 000c 0014 0000000000000000000000000000000000000000"),
                     DNS_PARSE_OK);
    assert_true(q.has_edns);
    assert_false(q.has_ecs);
    assert_int_equal(parse_hex(HDR("0001") Q_SVC_A "00 0029 0064 00000000 0000"), DNS_PARSE_OK);
    assert_int_equal(q.udp_size, 100);
    assert_int_equal(dns_response_limit(&q, false, 1232), 512);
}

/* What receivers ignore (RFC 1035, 6891): header bits AA TC RA Z AD, the
 * query's RCODE, the OPT's extended RCODE and flags other than DO. */
static void test_parse_ignores_what_receivers_ignore(void **state)
{
    assert_int_equal(parse_hex("1234 07ff 0001 0000 0000 0001" Q_SVC_A "00 0029 04d0 7f00ffff 0000"),
                     DNS_PARSE_OK);
    assert_true(q.rd && q.cd && q.dnssec_ok);
}

/* Non-ASCII and '.' inside a label are data; only A-Z fold. */
static void test_parse_eight_bit_labels(void **state)
{
    assert_int_equal(parse_hex(HDR("0000") "03 612e62 03 00ff20 03 C4E4 5A 00 0001 0001"), DNS_PARSE_OK);
    assert_memory_equal(q.qname.wire, "\3a.b\3\x00\xff\x20\3\xc4\xe4\x5a", 13);
    assert_memory_equal(q.qname.lower, "\3a.b\3\x00\xff\x20\3\xc4\xe4\x7a", 13);
    char text[DNS_NAME_TEXT_MAX];
    assert_int_equal(dns_name_to_text(q.qname.wire, q.qname.len, text, sizeof text), 28);
    assert_string_equal(text, "a\\.b.\\000\\255\\032.\\196\\228Z.");
}

/* A name of exactly 255 bytes is fine; 256 is not. */
static void test_parse_name_length_limit(void **state)
{
    char hex[2048];
    strcpy(hex, HDR("0000"));
    for (int i = 0; i < 3; i++) {
        strcat(hex, "3f");
        for (int k = 0; k < 63; k++)
            strcat(hex, "61");
    }
    strcat(hex, "3d");
    for (int k = 0; k < 61; k++)
        strcat(hex, "62");
    strcat(hex, "00 0001 0001");
    assert_int_equal(parse_hex(hex), DNS_PARSE_OK);
    assert_int_equal(q.qname.len, 255);
    assert_int_equal(q.qname.labels, 4);

    /* one more byte in the last label */
    char *last = strstr(hex, "3d");
    last[1] = 'e';
    char *end = strstr(hex, "00 0001 0001");
    memmove(end + 2, end, strlen(end) + 1);
    memcpy(end, "62", 2);
    assert_int_equal(parse_hex(hex), DNS_PARSE_FORMERR);
    assert_string_equal(q.error, "question name longer than 255 bytes");
}

/* ---- the parser: every rule ----------------------------------------------- */

struct rule_case {
    const char *hex;
    enum dns_parse_result result;
    const char *error;
    bool has_question, has_edns;
};

static const struct rule_case rule_cases[] = {
    /* no answer at all */
    { "1234 0100 0001 0000 0000 00", DNS_PARSE_DROP, "shorter than a DNS header", false, false },
    { "", DNS_PARSE_DROP, "shorter than a DNS header", false, false },
    { "1234 8100 0001 0000 0000 0000" Q_SVC_A, DNS_PARSE_DROP, "a response (QR set)", false, false },
    /* opcodes: NOTIMP, nothing after the header read (UPDATE's sections differ) */
    { "1234 2800 0001 0000 0000 0000" Q_SVC_A, DNS_PARSE_NOTIMP, "opcode other than QUERY", false, false },
    { "1234 2000 0000 0001 0002 0003", DNS_PARSE_NOTIMP, "opcode other than QUERY", false, false },
    /* the question */
    { "1234 0100 0000 0000 0000 0000", DNS_PARSE_FORMERR, "QDCOUNT is not 1", false, false },
    { "1234 0100 0002 0000 0000 0000" Q_SVC_A Q_SVC_A, DNS_PARSE_FORMERR, "QDCOUNT is not 1", false, false },
    { HDR("0000") "03 737663 06 736c75696365 04 7465", DNS_PARSE_FORMERR, "question name cut short", false, false },
    { HDR("0000") "03 737663 06 736c75696365 04 74657374", DNS_PARSE_FORMERR, "question name cut short", false, false },
    { HDR("0000") "03 737663 c00c 0001 0001", DNS_PARSE_FORMERR, "compression pointer in the question name", false, false },
    { HDR("0000") "c002 0001 0001", DNS_PARSE_FORMERR, "compression pointer in the question name", false, false },
    { HDR("0000") "03 737663 c016 0001 0001 06 736c75696365 04 74657374 00", DNS_PARSE_FORMERR,
      "compression pointer in the question name", false, false },
    { HDR("0000") "43 737663 00 0001 0001", DNS_PARSE_FORMERR, "unknown label type in the question name", false, false },
    { HDR("0000") "83 737663 00 0001 0001", DNS_PARSE_FORMERR, "unknown label type in the question name", false, false },
    { HDR("0000") QNAME_SVC "0001 00", DNS_PARSE_FORMERR, "QTYPE or QCLASS cut short", false, false },
    /* sections a query has no business filling (as NSD) */
    { "1234 0100 0001 0001 0000 0000" Q_SVC_A QNAME_SVC "0001 0001 00000000 0004 00000000", DNS_PARSE_FORMERR,
      "records in the answer section of a query", true, false },
    { "1234 0100 0001 0000 0001 0000" Q_SVC_A, DNS_PARSE_FORMERR, "records in the authority section of a query", true,
      false },
    /* the additional section: one OPT, nothing else */
    { HDR("0001") Q_SVC_A, DNS_PARSE_FORMERR, "record owner cut short", true, false },
    { HDR("0001") Q_SVC_A "00 0029 04d0 0000", DNS_PARSE_FORMERR, "additional record cut short", true, false },
    { HDR("0001") Q_SVC_A OPT_HEAD "000a 00000000", DNS_PARSE_FORMERR, "RDLENGTH past the end of the message", true,
      false },
    { HDR("0001") Q_SVC_A "03 6b6579 00 00fa 00ff 00000000 0000", DNS_PARSE_FORMERR,
      "a record other than OPT in the additional section", true, false },
    { HDR("0001") Q_SVC_A "c00c 0001 0001 00000000 0004 7f000001", DNS_PARSE_FORMERR,
      "a record other than OPT in the additional section", true, false },
    { HDR("0001") Q_SVC_A "c00c 0029 04d0 00000000 0000", DNS_PARSE_FORMERR, "OPT record owner is not the root", true,
      false },
    { HDR("0001") Q_SVC_A "01 61 00 0029 04d0 00000000 0000", DNS_PARSE_FORMERR, "OPT record owner is not the root",
      true, false },
    { HDR("0001") Q_SVC_A "41 00 0029 04d0 00000000 0000", DNS_PARSE_FORMERR, "unknown label type in a record owner",
      true, false },
    { HDR("0002") Q_SVC_A OPT_HEAD "0000" OPT_HEAD "0000", DNS_PARSE_FORMERR, "more than one OPT record", true, true },
    /* EDNS options */
    { HDR("0001") Q_SVC_A OPT_HEAD "0003 000800", DNS_PARSE_FORMERR, "EDNS option cut short", true, true },
    { HDR("0001") Q_SVC_A OPT_HEAD "000c 000a 0009 0000000000000000", DNS_PARSE_FORMERR,
      "EDNS option longer than the OPT record", true, true },
    /* the Client Subnet option (RFC 7871 §6, §7.2.1) */
    { HDR("0001") Q_SVC_A OPT_HEAD "0007 0008 0003 000118", DNS_PARSE_FORMERR,
      "Client Subnet option shorter than 4 bytes", true, true },
    { HDR("0001") Q_SVC_A OPT_HEAD "0009 0008 0005 0003 08 00 0a", DNS_PARSE_FORMERR,
      "Client Subnet FAMILY is neither IPv4 (1) nor IPv6 (2)", true, true },
    { HDR("0001") Q_SVC_A OPT_HEAD "0008 0008 0004 0000 00 00", DNS_PARSE_FORMERR,
      "Client Subnet FAMILY is neither IPv4 (1) nor IPv6 (2)", true, true },
    { HDR("0001") Q_SVC_A OPT_HEAD "000d 0008 0009 0001 21 00 0000000000", DNS_PARSE_FORMERR,
      "Client Subnet SOURCE PREFIX-LENGTH longer than the address", true, true },
    { HDR("0001") Q_SVC_A OPT_HEAD "0019 0008 0015 0002 81 00 00000000000000000000000000000000 00", DNS_PARSE_FORMERR,
      "Client Subnet SOURCE PREFIX-LENGTH longer than the address", true, true },
    { HDR("0001") Q_SVC_A OPT_HEAD "000b 0008 0007 0001 18 18 c00002", DNS_PARSE_FORMERR,
      "Client Subnet SCOPE PREFIX-LENGTH is not 0 in a query", true, true },
    { HDR("0001") Q_SVC_A OPT_HEAD "000c 0008 0008 0001 18 00 c0000200", DNS_PARSE_FORMERR,
      "Client Subnet ADDRESS is not ceil(SOURCE PREFIX-LENGTH / 8) bytes", true, true },
    { HDR("0001") Q_SVC_A OPT_HEAD "000f 0008 000b 0002 40 00 00000000000000", DNS_PARSE_FORMERR,
      "Client Subnet ADDRESS is not ceil(SOURCE PREFIX-LENGTH / 8) bytes", true, true },
    { HDR("0001") Q_SVC_A OPT_HEAD "0009 0008 0005 0001 00 00 00", DNS_PARSE_FORMERR,
      "Client Subnet ADDRESS is not ceil(SOURCE PREFIX-LENGTH / 8) bytes", true, true },
    { HDR("0001") Q_SVC_A OPT_HEAD "000b 0008 0007 0001 14 00 c63364", DNS_PARSE_FORMERR,
      "Client Subnet ADDRESS has bits set beyond SOURCE PREFIX-LENGTH", true, true },
    { HDR("0001") Q_SVC_A OPT_HEAD "000b 0008 0007 0001 11 00 0a01c0", DNS_PARSE_FORMERR,
      "Client Subnet ADDRESS has bits set beyond SOURCE PREFIX-LENGTH", true, true },
    { HDR("0001") Q_SVC_A OPT_HEAD "0012 0008 0005 0001 08 00 0a 0008 0005 0001 08 00 0a", DNS_PARSE_FORMERR,
      "more than one Client Subnet option", true, true },
    /* the end */
    { HDR("0001") Q_SVC_A OPT_HEAD "0000 00", DNS_PARSE_FORMERR, "bytes after the last record", true, true },
    { HDR("0000") Q_SVC_A "00", DNS_PARSE_FORMERR, "bytes after the last record", true, false },
    /* versions: BADVERS only for an otherwise well-formed message, options unread */
    { HDR("0001") Q_SVC_A "00 0029 04d0 00018000 0003 ffffff", DNS_PARSE_BADVERS, "EDNS version above 0", true, true },
    { HDR("0001") Q_SVC_A "00 0029 04d0 00ff0000 0000 00", DNS_PARSE_FORMERR, "bytes after the last record", true, true },
};

static void test_parse_rules(void **state)
{
    for (size_t i = 0; i < sizeof rule_cases / sizeof rule_cases[0]; i++) {
        const struct rule_case *c = &rule_cases[i];
        enum dns_parse_result r = parse_hex(c->hex);
        if (r != c->result || !q.error || strcmp(q.error, c->error) != 0 || q.has_question != c->has_question ||
            q.has_edns != c->has_edns)
            fail_msg("case %zu (%s): got result %d error \"%s\" question %d edns %d", i, c->error, r,
                     q.error ? q.error : "(none)", q.has_question, q.has_edns);
        assert_false(q.has_ecs);
        static const uint16_t rcode[] = { 0, 0, DNS_RCODE_FORMERR, DNS_RCODE_NOTIMP, DNS_RCODE_BADVERS };
        assert_int_equal(q.rcode, rcode[r]);
    }
}

/* A valid query cut anywhere is never OK: every count promises bytes. */
static void test_parse_every_prefix(void **state)
{
    uint8_t m[256];
    size_t n = unhex(DIG_ECS_V4_24, m, sizeof m);
    for (size_t k = 0; k < n; k++) {
        uint8_t *copy = malloc(k ? k : 1);
        memcpy(copy, m, k);
        enum dns_parse_result r = dns_parse_query(copy, k, &q);
        free(copy);
        assert_int_equal(r, k < DNS_HEADER_LEN ? DNS_PARSE_DROP : DNS_PARSE_FORMERR);
    }
    assert_int_equal(dns_parse_query(m, n, &q), DNS_PARSE_OK);
}

static void test_response_limit(void **state)
{
    assert_int_equal(parse_hex(DIG_A_NOEDNS), DNS_PARSE_OK);
    assert_int_equal(dns_response_limit(&q, false, 4096), 512);
    assert_int_equal(dns_response_limit(&q, true, 4096), 65535);
    assert_int_equal(parse_hex(DIG_A_COOKIE), DNS_PARSE_OK);   /* 1232 */
    assert_int_equal(dns_response_limit(&q, false, 4096), 1232);
    assert_int_equal(dns_response_limit(&q, false, 1000), 1000);
    assert_int_equal(dns_response_limit(&q, false, 100), 512);
    assert_int_equal(dns_response_limit(&q, true, 100), 65535);
}

/* ---- the writer: byte-exact responses ------------------------------------- */

static uint8_t out[DNS_MSG_MAX];
static const uint8_t addr1[4] = { 192, 0, 2, 1 }, addr2[4] = { 192, 0, 2, 2 };

static void begin(struct dns_writer *w, bool tcp)
{
    assert_int_equal(dns_response_begin(w, out, dns_response_limit(&q, tcp, 1232), &q, 1232), 0);
}

static size_t finish(struct dns_writer *w, unsigned rcode, bool aa, uint8_t scope)
{
    ssize_t n = dns_response_finish(w, rcode, aa, scope);
    assert_true(n > 0);
    return (size_t)n;
}

/* Two A records for the question, no EDNS: owners point at the question. */
static void test_write_a_answer(void **state)
{
    struct dns_writer w;
    assert_int_equal(parse_hex(DIG_A_NOEDNS), DNS_PARSE_OK);
    begin(&w, false);
    assert_int_equal(dns_put_a(&w, DNS_SECTION_ANSWER, q.qname.wire, 30, addr1), 0);
    assert_int_equal(dns_put_a(&w, DNS_SECTION_ANSWER, q.qname.wire, 30, addr2), 0);
    size_t n = finish(&w, DNS_RCODE_NOERROR, true, 0);
    /* QR AA RD; dig's AD bit is not copied */
    assert_bytes(out, n,
                 "3a6a 8500 0001 0002 0000 0000"
                 "03737663 06736c75696365 0474657374 00 0001 0001"
                 "c00c 0001 0001 0000001e 0004 c0000201"
                 "c00c 0001 0001 0000001e 0004 c0000202");
}

/* SRV answers with whole targets (RFC 2782), an NS in the authority section
 * compressed against the question, and an additional A whose owner points
 * at the first SRV target; the OPT comes last. */
static void test_write_srv_answer(void **state)
{
    struct dns_writer w;
    uint8_t a_target[DNS_NAME_MAX], b_target[DNS_NAME_MAX], zone[DNS_NAME_MAX], ns[DNS_NAME_MAX];
    name_of("a.svc.sluice.test", a_target);
    name_of("b.svc.sluice.test", b_target);
    name_of("sluice.test", zone);
    name_of("ns1.sluice.test", ns);
    const uint8_t a10[4] = { 10, 0, 0, 1 };
    assert_int_equal(parse_hex(DIG_SRV), DNS_PARSE_OK);
    begin(&w, false);
    assert_int_equal(w.ncomp, 4);   /* the question's suffixes */
    assert_int_equal(dns_put_srv(&w, DNS_SECTION_ANSWER, q.qname.wire, 60, 10, 100, 8080, a_target), 0);
    /* the target's new suffixes only (a.svc..., svc...): sluice.test is known */
    assert_int_equal(w.ncomp, 6);
    assert_int_equal(dns_put_srv(&w, DNS_SECTION_ANSWER, q.qname.wire, 60, 10, 100, 8081, b_target), 0);
    assert_int_equal(w.ncomp, 7);
    assert_int_equal(dns_put_ns(&w, DNS_SECTION_AUTHORITY, zone, 300, ns), 0);
    assert_int_equal(dns_put_a(&w, DNS_SECTION_ADDITIONAL, a_target, 60, a10), 0);
    size_t n = finish(&w, DNS_RCODE_NOERROR, true, 0);
    assert_bytes(out, n,
                 "19b3 8500 0001 0002 0001 0002"
                 /* 12: _svc._tcp.sluice.test (sluice.test at 22 = 0x16) */
                 "045f737663 045f746370 06736c75696365 0474657374 00 0021 0001"
                 /* 39: SRV; target at 57 = 0x39 */
                 "c00c 0021 0001 0000003c 0019 000a 0064 1f90 0161 03737663 06736c75696365 0474657374 00"
                 /* 76: SRV, target again whole */
                 "c00c 0021 0001 0000003c 0019 000a 0064 1f91 0162 03737663 06736c75696365 0474657374 00"
                 /* 113: NS */
                 "c016 0002 0001 0000012c 0006 036e7331 c016"
                 /* 131: A for the first target */
                 "c039 0001 0001 0000003c 0004 0a000001"
                 /* OPT */
                 "00 0029 04d0 00000000 0000");
    struct dnsc_response rr;
    read_back(out, n, &rr);
    dnsc_free(&rr);
}

/* NXDOMAIN with the zone's SOA in the authority section: the owner and
 * both names compressed against the question's suffix. */
static void test_write_nxdomain_soa(void **state)
{
    struct dns_writer w;
    uint8_t zone[DNS_NAME_MAX], ns[DNS_NAME_MAX], host[DNS_NAME_MAX];
    name_of("sluice.test.", zone);
    name_of("ns1.sluice.test", ns);
    name_of("hostmaster.sluice.test", host);
    struct dns_soa soa = { ns, host, 2024010101, 3600, 600, 86400, 30 };
    assert_int_equal(parse_hex("beef 0000 0001 0000 0000 0000 04 6e6f7065 06736c75696365 0474657374 00 0001 0001"),
                     DNS_PARSE_OK);
    begin(&w, false);
    assert_int_equal(dns_put_soa(&w, DNS_SECTION_AUTHORITY, zone, 30, &soa), 0);
    size_t n = finish(&w, DNS_RCODE_NXDOMAIN, true, 0);
    assert_bytes(out, n,
                 "beef 8403 0001 0000 0001 0000"
                 /* 12: nope.sluice.test (sluice.test at 17 = 0x11) */
                 "04 6e6f7065 06736c75696365 0474657374 00 0001 0001"
                 "c011 0006 0001 0000001e 0027"
                 "036e7331 c011"
                 "0a686f73746d6173746572 c011"
                 "78a3f175 00000e10 00000258 00015180 0000001e");
}

/* The Client Subnet option comes back with the query's family, prefix and
 * address, and the scope the server chose. */
static void test_write_client_subnet_echo(void **state)
{
    struct dns_writer w;
    assert_int_equal(parse_hex(DIG_ECS_V4_24), DNS_PARSE_OK);
    begin(&w, false);
    assert_int_equal(dns_put_a(&w, DNS_SECTION_ANSWER, q.qname.wire, 5, addr1), 0);
    size_t n = finish(&w, DNS_RCODE_NOERROR, true, 16);
    assert_bytes(out, n,
                 "56b9 8500 0001 0001 0000 0001"
                 "03737663 06736c75696365 0474657374 00 0001 0001"
                 "c00c 0001 0001 00000005 0004 c0000201"
                 "00 0029 04d0 00000000 000b 0008 0007 0001 18 10 c00002");

    /* IPv6 /40, and a scope longer than the source (RFC 7871 §7.2.1 allows it) */
    assert_int_equal(parse_hex(DIG_ECS_V6_40), DNS_PARSE_OK);
    begin(&w, false);
    n = finish(&w, DNS_RCODE_NOERROR, true, 48);
    assert_bytes(out, n,
                 "3514 8500 0001 0000 0000 0001"
                 "03737663 06736c75696365 0474657374 00 001c 0001"
                 "00 0029 04d0 00000000 000d 0008 0009 0002 28 30 20010db812");

    /* /0: echoed with no address */
    assert_int_equal(parse_hex(DIG_ECS_ZERO), DNS_PARSE_OK);
    begin(&w, false);
    n = finish(&w, DNS_RCODE_NOERROR, true, 0);
    assert_bytes(out + n - 19, 19, "00 0029 04d0 00000000 0008 0008 0004 0001 00 00");

    /* a scope past the family's width is refused */
    assert_int_equal(parse_hex(DIG_ECS_V4_24), DNS_PARSE_OK);
    begin(&w, false);
    assert_int_equal(dns_response_finish(&w, 0, true, 33), -EINVAL);
    assert_int_equal(finish(&w, 0, true, 32), 55);
}

/* The DO bit comes back; the OPT advertises this server's payload size. */
static void test_write_dnssec_ok_echo(void **state)
{
    struct dns_writer w;
    assert_int_equal(parse_hex(DIG_DNSSEC), DNS_PARSE_OK);
    assert_int_equal(dns_response_begin(&w, out, 1232, &q, 4096), 0);
    size_t n = finish(&w, DNS_RCODE_REFUSED, false, 0);
    assert_bytes(out, n,
                 "d981 8105 0001 0000 0000 0001"
                 "03737663 06736c75696365 0474657374 00 0001 0001"
                 "00 0029 1000 00008000 0000");
}

/* Error answers: BADVERS (extended RCODE in the OPT), NOTIMP (header only,
 * opcode echoed), FORMERR with the question when it was read, without it
 * when it was not, with an OPT but no Client Subnet. */
static void test_write_error_answers(void **state)
{
    struct dns_writer w;
    assert_int_equal(parse_hex(DIG_EDNS_V1), DNS_PARSE_BADVERS);
    begin(&w, false);
    size_t n = finish(&w, q.rcode, false, 0);
    assert_bytes(out, n,
                 "7bdd 8100 0001 0000 0000 0001"
                 "03737663 06736c75696365 0474657374 00 0001 0001"
                 "00 0029 04d0 01000000 0000");

    assert_int_equal(parse_hex(DIG_OPCODE_STATUS), DNS_PARSE_NOTIMP);
    begin(&w, false);
    n = finish(&w, q.rcode, false, 0);
    assert_bytes(out, n, "ae9c 9104 0000 0000 0000 0000");

    assert_int_equal(parse_hex(HDR("0001") Q_SVC_A OPT_HEAD "000b 0008 0007 0001 18 18 c00002"), DNS_PARSE_FORMERR);
    begin(&w, false);
    n = finish(&w, q.rcode, false, 0);
    assert_bytes(out, n,
                 "1234 8101 0001 0000 0000 0001"
                 "03737663 06736c75696365 0474657374 00 0001 0001"
                 "00 0029 04d0 00000000 0000");

    assert_int_equal(parse_hex(HDR("0000") "03 737663 c00c 0001 0001"), DNS_PARSE_FORMERR);
    begin(&w, false);
    n = finish(&w, q.rcode, false, 0);
    assert_bytes(out, n, "1234 8101 0000 0000 0000 0000");

    /* an extended RCODE needs an OPT to carry it */
    assert_int_equal(parse_hex(DIG_A_NOEDNS), DNS_PARSE_OK);
    begin(&w, false);
    assert_int_equal(dns_response_finish(&w, DNS_RCODE_BADVERS, false, 0), -EINVAL);
    assert_int_equal(dns_response_finish(&w, 4096, false, 0), -EINVAL);
}

/* The question is echoed in the case it came in; names written in another
 * case are compressed against it (and so read in its case). */
static void test_write_mixed_case(void **state)
{
    struct dns_writer w;
    uint8_t zone[DNS_NAME_MAX], ns[DNS_NAME_MAX], host[DNS_NAME_MAX], lower[DNS_NAME_MAX];
    name_of("sluice.test", zone);
    name_of("ns1.sluice.test", ns);
    name_of("hostmaster.sluice.test", host);
    name_of("svc.sluice.test", lower);
    struct dns_soa soa = { ns, host, 1, 2, 3, 4, 5 };
    assert_int_equal(parse_hex(DIG_MIXED_CASE), DNS_PARSE_OK);
    begin(&w, false);
    assert_int_equal(dns_put_a(&w, DNS_SECTION_ANSWER, lower, 30, addr1), 0);
    assert_int_equal(dns_put_soa(&w, DNS_SECTION_AUTHORITY, zone, 30, &soa), 0);
    size_t n = finish(&w, DNS_RCODE_NOERROR, true, 0);
    assert_bytes(out, n,
                 "611d 8500 0001 0001 0001 0001"
                 /* 12: SvC (SLUICE.Test at 16 = 0x10) */
                 "0353764306534c55494345 0454657374 00 0001 0001"
                 "c00c 0001 0001 0000001e 0004 c0000201"
                 "c010 0006 0001 0000001e 0027 036e7331 c010 0a686f73746d6173746572 c010"
                 "00000001 00000002 00000003 00000004 00000005"
                 "00 0029 04d0 00000000 0000");
}

/* ---- the writer: limits and truncation ------------------------------------ */

/* Fill the answer section with A records until one is refused; the
 * response ends at that record with TC set, keeps the question and the
 * OPT, and refuses every later record. Returns how many fitted. */
static unsigned fill_answers(struct dns_writer *w, unsigned max)
{
    unsigned fitted = 0;
    for (unsigned i = 0; i < max; i++) {
        uint8_t a[4] = { 10, (uint8_t)(i >> 16), (uint8_t)(i >> 8), (uint8_t)i };
        int rc = dns_put_a(w, DNS_SECTION_ANSWER, q.qname.wire, 30, a);
        if (rc == -ENOSPC)
            break;
        assert_int_equal(rc, 0);
        fitted++;
    }
    return fitted;
}

static void check_truncated(size_t n, size_t limit, unsigned fitted, bool has_opt)
{
    struct dnsc_response rr;
    assert_true(n <= limit);
    read_back(out, n, &rr);
    assert_true(rr.flags & 0x0200);   /* TC */
    assert_true(rr.has_question);
    assert_int_equal(rr.ancount, fitted);
    assert_int_equal(rr.nscount, 0);
    assert_int_equal(rr.has_opt, has_opt);
    assert_int_equal(rr.arcount, has_opt ? 1 : 0);
    dnsc_free(&rr);
}

static void test_truncate_udp_512(void **state)
{
    struct dns_writer w;
    uint8_t zone[DNS_NAME_MAX], ns[DNS_NAME_MAX];
    name_of("sluice.test", zone);
    name_of("ns1.sluice.test", ns);
    assert_int_equal(parse_hex(DIG_A_NOEDNS), DNS_PARSE_OK);
    begin(&w, false);
    /* 12 + 21 (question) + 16 per record: 29 fit in 512 */
    unsigned fitted = fill_answers(&w, 100);
    assert_int_equal(fitted, 29);
    assert_true(w.truncated);
    /* nothing more, in any section */
    assert_int_equal(dns_put_ns(&w, DNS_SECTION_AUTHORITY, zone, 30, ns), -ENOSPC);
    assert_int_equal(dns_put_a(&w, DNS_SECTION_ADDITIONAL, ns, 30, addr1), -ENOSPC);
    /* the section order holds after a truncation too */
    assert_int_equal(dns_put_a(&w, DNS_SECTION_ANSWER, q.qname.wire, 30, addr1), -EINVAL);
    size_t n = finish(&w, DNS_RCODE_NOERROR, true, 0);
    assert_int_equal(n, 12 + 21 + 29 * 16);
    check_truncated(n, 512, 29, false);
}

/* With EDNS the limit is the client's size (1232 here), and room stays for
 * the OPT and its Client Subnet option. */
static void test_truncate_edns_with_ecs(void **state)
{
    struct dns_writer w;
    assert_int_equal(parse_hex(DIG_ECS_V4_24), DNS_PARSE_OK);
    begin(&w, false);
    /* 1232 - 33 - OPT (11 + 4 + 7) = 1177: 73 records of 16 */
    unsigned fitted = fill_answers(&w, 1000);
    assert_int_equal(fitted, 73);
    size_t n = finish(&w, DNS_RCODE_NOERROR, true, 24);
    assert_int_equal(n, 33 + 73 * 16 + 22);
    check_truncated(n, 1232, 73, true);
    struct dnsc_response rr;
    read_back(out, n, &rr);
    assert_true(rr.has_ecs);
    assert_int_equal(rr.ecs_source, 24);
    assert_int_equal(rr.ecs_scope, 24);
    dnsc_free(&rr);
}

/* Over TCP the limit is 65535; records written past offset 16383 cannot be
 * pointed at, and names there still compress against earlier ones. */
static void test_truncate_tcp_65535(void **state)
{
    struct dns_writer w;
    assert_int_equal(parse_hex(DIG_A_COOKIE), DNS_PARSE_OK);
    begin(&w, true);
    unsigned fitted = fill_answers(&w, 10000);
    /* (65535 - 33 - 11) / 16 */
    assert_int_equal(fitted, 4093);
    size_t n = finish(&w, DNS_RCODE_NOERROR, true, 0);
    check_truncated(n, 65535, 4093, true);
}

/* A large TCP answer of distinct names: compression table full, offsets past
 * 16383; the reader checks every pointer, and the names read back equal the
 * names written. */
static void test_compression_table_limits(void **state)
{
    struct dns_writer w;
    struct dnsc_buf expect = { 0 };
    assert_int_equal(parse_hex(DIG_SRV), DNS_PARSE_OK);
    begin(&w, true);
    unsigned written = 0;
    for (unsigned i = 0; i < 2000; i++) {
        char text[64];
        uint8_t target[DNS_NAME_MAX];
        snprintf(text, sizeof text, "i%u.SVC.sluice.test", i % 1000);
        name_of(text, target);
        if (i < 1000) {
            if (dns_put_srv(&w, DNS_SECTION_ANSWER, q.qname.wire, 5, 1, 2, (uint16_t)i, target) != 0)
                break;
            dnsc_canon_srv(&expect, 0, q.qname.wire, 5, 1, 2, i, target);
        } else {
            uint8_t a[4] = { 10, 0, (uint8_t)(i >> 8), (uint8_t)i };
            if (dns_put_a(&w, DNS_SECTION_ADDITIONAL, target, 5, a) != 0)
                continue;
            dnsc_canon_addr(&expect, 2, target, 5, a, 4);
        }
        written++;
    }
    assert_int_equal(written, 2000);
    assert_int_equal(w.ncomp, DNS_COMPRESS_SLOTS);
    size_t n = finish(&w, DNS_RCODE_NOERROR, true, 0);
    assert_true(n > 16384);
    struct dnsc_response rr;
    read_back(out, n, &rr);
    assert_false(rr.flags & 0x0200);
    assert_int_equal(rr.canon.len, expect.len);
    assert_memory_equal(rr.canon.p, expect.p, expect.len);
    dnsc_free(&rr);
    free(expect.p);
}

/* A record that does not fit in the additional section is left out without
 * TC, and a smaller one may still follow. */
static void test_additional_dropped_without_tc(void **state)
{
    struct dns_writer w;
    uint8_t longname[DNS_NAME_MAX], ns[DNS_NAME_MAX];
    name_of("a-rather-long-label-for-an-additional-record.ns1.sluice.test", longname);
    name_of("ns1.sluice.test", ns);
    assert_int_equal(parse_hex(DIG_A_NOEDNS), DNS_PARSE_OK);
    begin(&w, false);
    /* 28 answers: 33 + 448 = 481, 31 bytes left */
    for (unsigned i = 0; i < 28; i++)
        assert_int_equal(dns_put_a(&w, DNS_SECTION_ANSWER, q.qname.wire, 30, addr1), 0);
    size_t before = w.len;
    assert_int_equal(dns_put_a(&w, DNS_SECTION_ADDITIONAL, longname, 30, addr2), -ENOSPC);
    assert_int_equal(w.len, before);
    assert_false(w.truncated);
    /* ns1 + pointer to sluice.test: 6 + 10 + 4 = 20 bytes fit */
    assert_int_equal(dns_put_a(&w, DNS_SECTION_ADDITIONAL, ns, 30, addr2), 0);
    size_t n = finish(&w, DNS_RCODE_NOERROR, true, 0);
    assert_int_equal(n, before + 20);
    struct dnsc_response rr;
    read_back(out, n, &rr);
    assert_false(rr.flags & 0x0200);
    assert_int_equal(rr.ancount, 28);
    assert_int_equal(rr.arcount, 1);
    dnsc_free(&rr);
}

/* A record refused mid-way leaves nothing of itself: not its bytes, and
 * not the compression entries of the names it had written (a later name
 * must not point into the cut bytes). */
static void test_refused_record_leaves_nothing(void **state)
{
    struct dns_writer w;
    uint8_t zone[DNS_NAME_MAX], mname[DNS_NAME_MAX], rname[DNS_NAME_MAX];
    name_of("sluice.test", zone);
    name_of("m.example", mname);
    name_of("a-new-name-that-is-not-yet-in-the-message.example", rname);
    struct dns_soa soa = { mname, rname, 1, 2, 3, 4, 5 };
    assert_int_equal(parse_hex(DIG_SRV), DNS_PARSE_OK);
    assert_int_equal(dns_response_begin(&w, out, 512, &q, 512), 0);
    /* fill until 40..55 bytes are left */
    const uint8_t a[4] = { 1, 2, 3, 4 };
    while (512 - w.opt_len - w.len >= 16 + 40)
        assert_int_equal(dns_put_a(&w, DNS_SECTION_ANSWER, q.qname.wire, 1, a), 0);
    size_t len = w.len;
    uint8_t ncomp = w.ncomp;
    uint16_t count = w.count[0];
    /* owner, fixed fields and MNAME fit (and MNAME's labels are remembered),
     * RNAME does not */
    assert_int_equal(dns_put_soa(&w, DNS_SECTION_ANSWER, zone, 1, &soa), -ENOSPC);
    assert_int_equal(w.len, len);
    assert_int_equal(w.ncomp, ncomp);
    assert_int_equal(w.count[0], count);
    assert_true(w.truncated);
    size_t n = finish(&w, 0, true, 0);
    struct dnsc_response rr;
    read_back(out, n, &rr);
    assert_int_equal(rr.ancount, count);
    assert_true(rr.flags & 0x0200);
    dnsc_free(&rr);
}

static void test_writer_misuse(void **state)
{
    struct dns_writer w;
    uint8_t bad[4] = { 0x40, 'a', 0, 0 };
    uint8_t ptr[3] = { 0xc0, 0x0c, 0 };
    uint8_t zone[DNS_NAME_MAX];
    name_of("sluice.test", zone);
    assert_int_equal(parse_hex(DIG_A_COOKIE), DNS_PARSE_OK);
    assert_int_equal(dns_response_begin(&w, out, 511, &q, 1232), -EINVAL);
    assert_int_equal(dns_response_begin(&w, out, 65536, &q, 1232), -EINVAL);
    begin(&w, false);
    size_t len = w.len;
    /* malformed names: nothing written */
    assert_int_equal(dns_put_a(&w, DNS_SECTION_ANSWER, bad, 1, addr1), -EINVAL);
    assert_int_equal(dns_put_a(&w, DNS_SECTION_ANSWER, ptr, 1, addr1), -EINVAL);
    assert_int_equal(dns_put_ns(&w, DNS_SECTION_ANSWER, zone, 1, bad), -EINVAL);
    assert_int_equal(dns_put_srv(&w, DNS_SECTION_ANSWER, zone, 1, 0, 0, 0, ptr), -EINVAL);
    struct dns_soa soa = { zone, bad, 0, 0, 0, 0, 0 };
    assert_int_equal(dns_put_soa(&w, DNS_SECTION_ANSWER, zone, 1, &soa), -EINVAL);
    assert_int_equal(w.len, len);
    /* sections in order */
    assert_int_equal(dns_put_a(&w, DNS_SECTION_AUTHORITY, zone, 1, addr1), 0);
    assert_int_equal(dns_put_a(&w, DNS_SECTION_ANSWER, zone, 1, addr1), -EINVAL);
    assert_int_equal(dns_put_a(&w, (enum dns_section)3, zone, 1, addr1), -EINVAL);
    /* once finished, finished */
    size_t n = finish(&w, 0, true, 0);
    assert_int_equal(dns_response_finish(&w, 0, true, 0), -EINVAL);
    assert_int_equal(dns_put_a(&w, DNS_SECTION_ADDITIONAL, zone, 1, addr1), -EINVAL);
    struct dnsc_response rr;
    read_back(out, n, &rr);
    assert_int_equal(rr.ancount, 0);
    assert_int_equal(rr.nscount, 1);
    dnsc_free(&rr);
}

/* The response may be written over the query it answers. */
static void test_write_in_place(void **state)
{
    uint8_t buf[512];
    size_t n = unhex(DIG_A_COOKIE, buf, sizeof buf);
    struct dns_writer w;
    assert_int_equal(dns_parse_query(buf, n, &q), DNS_PARSE_OK);
    assert_int_equal(dns_response_begin(&w, buf, sizeof buf, &q, 1232), 0);
    assert_int_equal(dns_put_a(&w, DNS_SECTION_ANSWER, q.qname.wire, 30, addr1), 0);
    ssize_t len = dns_response_finish(&w, 0, true, 0);
    assert_bytes(buf, (size_t)len,
                 "d301 8500 0001 0001 0000 0001"
                 "03737663 06736c75696365 0474657374 00 0001 0001"
                 "c00c 0001 0001 0000001e 0004 c0000201"
                 "00 0029 04d0 00000000 0000");
}

/* ---- names ------------------------------------------------------------------ */

/* SRV target labels: every IPv4 form round-trips, IPv6 as 32 hex digits;
 * only the form dns_addr_label writes is read back (one name per address). */
static void test_addr_label_round_trip(void **state)
{
    (void)state;
    char label[DNS_ADDR_LABEL_MAX];
    uint8_t got[16];
    sa_family_t af = 0;
    const uint8_t v4s[][4] = { { 0, 0, 0, 0 }, { 10, 1, 0, 7 }, { 255, 255, 255, 255 }, { 9, 99, 100, 199 } };
    const char *const texts[] = { "0-0-0-0", "10-1-0-7", "255-255-255-255", "9-99-100-199" };
    for (size_t i = 0; i < 4; i++) {
        size_t n = dns_addr_label(AF_INET, v4s[i], label);
        assert_int_equal(n, strlen(texts[i]));
        assert_string_equal(label, texts[i]);
        memset(got, 0xee, sizeof got);
        assert_true(dns_addr_label_parse((const uint8_t *)label, n, &af, got));
        assert_int_equal(af, AF_INET);
        assert_memory_equal(got, v4s[i], 4);
        for (int k = 4; k < 16; k++)
            assert_int_equal(got[k], 0);   /* compared as 16 bytes by the agent */
    }
    uint8_t v6[16];
    assert_int_equal(inet_pton(AF_INET6, "2001:db8::a:bc", v6), 1);
    assert_int_equal(dns_addr_label(AF_INET6, v6, label), 32);
    assert_string_equal(label, "20010db80000000000000000000a00bc");
    assert_true(dns_addr_label_parse((const uint8_t *)label, 32, &af, got));
    assert_int_equal(af, AF_INET6);
    assert_memory_equal(got, v6, 16);
}

static void test_addr_label_rejects(void **state)
{
    (void)state;
    const char *const bad[] = {
        "", "1-2-3", "1-2-3-4-5", "1-2-3-256", "1--2-3", "-1-2-3-4", "1-2-3-4-", "1-2-3-1000", "01-2-3-4",
        "1-2-3-00", "1.2.3.4", "a-b-c-d", "20010DB80000000000000000000A00BC", "20010db80000000000000000000a00b",
        "20010db80000000000000000000a00bg",
    };
    uint8_t got[16];
    sa_family_t af;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (dns_addr_label_parse((const uint8_t *)bad[i], strlen(bad[i]), &af, got))
            fail_msg("\"%s\" was read as an address label", bad[i]);
}

static void test_srv_target(void **state)
{
    (void)state;
    uint8_t zone[DNS_NAME_MAX], target[DNS_NAME_MAX];
    int zl = dns_name_from_text("sluice.test.", zone);
    assert_true(zl > 0);
    const uint8_t v4[4] = { 10, 1, 0, 7 };
    int n = dns_srv_target(AF_INET, v4, "web", 3, zone, (size_t)zl, target);
    const uint8_t want[] = "\x08" "10-1-0-7" "\x03" "web" "\x06" "sluice" "\x04" "test";   /* and the root 0 */
    assert_int_equal(n, (int)sizeof want);
    assert_memory_equal(target, want, sizeof want);
    /* 1 + 32 + 1 + 63 + zone: past 255 with a long zone */
    char text[300];
    memset(text, 0, sizeof text);
    for (int i = 0; i < 3; i++)
        memcpy(text + i * 53, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.", 53);
    zl = dns_name_from_text(text, zone);
    assert_int_equal(zl, 160);
    uint8_t v6[16] = { 0 };
    char svc[64];
    memset(svc, 's', 63);
    assert_int_equal(dns_srv_target(AF_INET6, v6, svc, 61, zone, (size_t)zl, target), 255);
    assert_int_equal(dns_srv_target(AF_INET6, v6, svc, 62, zone, (size_t)zl, target), -1);
    assert_int_equal(dns_srv_target(AF_INET, v4, svc, 64, zone, 1, target), -1);   /* no label */
}

static void test_name_from_text(void **state)
{
    uint8_t w[DNS_NAME_MAX];
    assert_int_equal(dns_name_from_text("svc.sluice.test", w), 17);
    assert_memory_equal(w, "\3svc\6sluice\4test", 17);
    assert_int_equal(dns_name_from_text("svc.sluice.test.", w), 17);
    assert_int_equal(dns_name_from_text(".", w), 1);
    assert_int_equal(w[0], 0);
    assert_int_equal(dns_name_from_text("_svc._tcp.Sluice.TEST", w), 23);
    assert_memory_equal(w, "\4_svc\4_tcp\6Sluice\4TEST", 23);
    assert_int_equal(dns_name_from_text("", w), -EINVAL);
    assert_int_equal(dns_name_from_text("a..b", w), -EINVAL);
    assert_int_equal(dns_name_from_text(".a", w), -EINVAL);
    assert_int_equal(dns_name_from_text("a\\.b", w), -EINVAL);
    char label[80];
    memset(label, 'x', 63);
    label[63] = '\0';
    assert_int_equal(dns_name_from_text(label, w), 65);
    label[63] = 'x';
    label[64] = '\0';
    assert_int_equal(dns_name_from_text(label, w), -EINVAL);
    /* 255 bytes exactly, then one more */
    char text[300];
    snprintf(text, sizeof text, "%.63s.%.63s.%.63s.%.61s", label, label, label, label);
    assert_int_equal(dns_name_from_text(text, w), 255);
    snprintf(text, sizeof text, "%.63s.%.63s.%.63s.%.62s", label, label, label, label);
    assert_int_equal(dns_name_from_text(text, w), -EINVAL);
}

static void test_name_wire_len_and_text(void **state)
{
    assert_int_equal(dns_name_wire_len((const uint8_t *)"\3svc\0", 5), 5);
    assert_int_equal(dns_name_wire_len((const uint8_t *)"\3svc\0", 4), -EINVAL);   /* cut */
    assert_int_equal(dns_name_wire_len((const uint8_t *)"\3sv", 3), -EINVAL);
    assert_int_equal(dns_name_wire_len((const uint8_t *)"\xc0\x0c", 2), -EINVAL);  /* a pointer */
    assert_int_equal(dns_name_wire_len((const uint8_t *)"\x40", 1), -EINVAL);
    assert_int_equal(dns_name_wire_len((const uint8_t *)"", 1), 1);
    assert_int_equal(dns_name_wire_len((const uint8_t *)"", 0), -EINVAL);

    char t[DNS_NAME_TEXT_MAX];
    assert_int_equal(dns_name_to_text((const uint8_t *)"", 1, t, sizeof t), 1);
    assert_string_equal(t, ".");
    assert_int_equal(dns_name_to_text((const uint8_t *)"\3svc\6sluice\4test", 17, t, sizeof t), 16);
    assert_string_equal(t, "svc.sluice.test.");
    assert_int_equal(dns_name_to_text((const uint8_t *)"\4a\\b\x7f", 6, t, sizeof t), 9);
    assert_string_equal(t, "a\\\\b\\127.");
    /* room: "svc." needs 5 bytes with the NUL */
    assert_int_equal(dns_name_to_text((const uint8_t *)"\3svc", 5, t, 5), 4);
    assert_int_equal(dns_name_to_text((const uint8_t *)"\3svc", 5, t, 4), -ENOSPC);
    assert_string_equal(t, "");
    /* the longest possible text (the most data bytes, each escaped) fits */
    uint8_t worst[DNS_NAME_MAX];
    size_t p = 0;
    while (p + 1 + 63 + 1 <= DNS_NAME_MAX) {
        worst[p] = 63;
        memset(worst + p + 1, 0x01, 63);
        p += 64;
    }
    worst[p] = (uint8_t)(DNS_NAME_MAX - p - 2);
    memset(worst + p + 1, 0x01, worst[p]);
    p += 1 + worst[p];
    worst[p++] = 0;
    assert_int_equal(p, DNS_NAME_MAX);
    int len = dns_name_to_text(worst, sizeof worst, t, sizeof t);
    assert_int_equal(len, 250 * 4 + 4);   /* every byte as \DDD, four dots */
    assert_true(len < DNS_NAME_TEXT_MAX);
}

static void test_name_in_zone(void **state)
{
    struct dns_name zone = zone_name("Sluice.Test"), root = zone_name("."), n;
    n = zone_name("sluice.test");
    assert_int_equal(dns_name_in_zone(&n, &zone), 0);
    n = zone_name("SVC.sluice.TEST.");
    assert_int_equal(dns_name_in_zone(&n, &zone), 1);
    n = zone_name("_svc._tcp.sluice.test");
    assert_int_equal(dns_name_in_zone(&n, &zone), 2);
    n = zone_name("xsluice.test");            /* not on a label boundary */
    assert_int_equal(dns_name_in_zone(&n, &zone), -1);
    n = zone_name("sluice.test.example");
    assert_int_equal(dns_name_in_zone(&n, &zone), -1);
    n = zone_name("test");
    assert_int_equal(dns_name_in_zone(&n, &zone), -1);
    n = zone_name("a.b.c");
    assert_int_equal(dns_name_in_zone(&n, &root), 3);
    assert_int_equal(dns_name_in_zone(&root, &root), 0);
    assert_int_equal(dns_name_in_zone(&root, &zone), -1);
    /* a label that holds a dot is one label */
    uint8_t odd[] = "\x08svc.test\x06sluice\x04test";
    assert_int_equal(dns_name_set(&n, odd, sizeof odd), 0);
    assert_int_equal(n.labels, 3);
    assert_int_equal(dns_name_in_zone(&n, &zone), 1);
    uint8_t dotted[] = "\x0bsluice.test";
    assert_int_equal(dns_name_set(&n, dotted, sizeof dotted), 0);
    assert_int_equal(dns_name_in_zone(&n, &zone), -1);
}

/* ---- dig against a small server built on the codec ----------------------- */

/* The zone sluice.test: svc has three A records, big has 200 (too many for
 * 1232 bytes: TC over UDP, then TCP), _svc._tcp has two SRV records with
 * their A records in the additional section; the apex has SOA and NS;
 * other names are NXDOMAIN, names outside are REFUSED. */
static size_t serve(const uint8_t *in, size_t len, uint8_t *resp, bool tcp)
{
    static struct dns_query sq;
    enum dns_parse_result r = dns_parse_query(in, len, &sq);
    if (r == DNS_PARSE_DROP)
        return 0;
    uint8_t zone_wire[DNS_NAME_MAX], ns[DNS_NAME_MAX], host[DNS_NAME_MAX], t1[DNS_NAME_MAX], t2[DNS_NAME_MAX];
    dns_name_from_text("sluice.test", zone_wire);
    dns_name_from_text("ns1.sluice.test", ns);
    dns_name_from_text("hostmaster.sluice.test", host);
    dns_name_from_text("i1.svc.sluice.test", t1);
    dns_name_from_text("i2.svc.sluice.test", t2);
    struct dns_name zone;
    dns_name_set(&zone, zone_wire, sizeof zone_wire);
    struct dns_soa soa = { ns, host, 7, 3600, 600, 86400, 30 };

    struct dns_writer w;
    if (dns_response_begin(&w, resp, dns_response_limit(&sq, tcp, 1232), &sq, 1232) != 0)
        return 0;
    unsigned rcode = sq.rcode;
    bool aa = false;
    uint8_t scope = 0;
    if (r == DNS_PARSE_OK) {
        int k = dns_name_in_zone(&sq.qname, &zone);
        size_t l0 = 0;
        const uint8_t *label = k > 0 ? dns_name_label(&sq.qname, 0, &l0) : NULL;
        aa = k >= 0;
        rcode = k < 0 ? DNS_RCODE_REFUSED : DNS_RCODE_NOERROR;
        if (k == 0 && sq.qtype == DNS_TYPE_SOA) {
            dns_put_soa(&w, DNS_SECTION_ANSWER, sq.qname.wire, 30, &soa);
        } else if (k == 0 && sq.qtype == DNS_TYPE_NS) {
            dns_put_ns(&w, DNS_SECTION_ANSWER, sq.qname.wire, 30, ns);
        } else if (k == 1 && l0 == 3 && memcmp(label, "svc", 3) == 0 && sq.qtype == DNS_TYPE_A) {
            for (uint8_t i = 1; i <= 3; i++)
                dns_put_a(&w, DNS_SECTION_ANSWER, sq.qname.wire, 30, (const uint8_t[4]){ 192, 0, 2, i });
            scope = sq.has_ecs ? 24 : 0;
        } else if (k == 1 && l0 == 3 && memcmp(label, "big", 3) == 0 && sq.qtype == DNS_TYPE_A) {
            for (unsigned i = 0; i < 200; i++)
                dns_put_a(&w, DNS_SECTION_ANSWER, sq.qname.wire, 30, (const uint8_t[4]){ 10, 9, 0, (uint8_t)i });
        } else if (k == 2 && l0 == 4 && memcmp(label, "_svc", 4) == 0 && sq.qtype == DNS_TYPE_SRV) {
            dns_put_srv(&w, DNS_SECTION_ANSWER, sq.qname.wire, 30, 0, 60, 8080, t1);
            dns_put_srv(&w, DNS_SECTION_ANSWER, sq.qname.wire, 30, 1, 40, 8081, t2);
            dns_put_a(&w, DNS_SECTION_ADDITIONAL, t1, 30, (const uint8_t[4]){ 10, 0, 0, 1 });
            dns_put_a(&w, DNS_SECTION_ADDITIONAL, t2, 30, (const uint8_t[4]){ 10, 0, 0, 2 });
        } else if (k >= 0) {
            rcode = k == 1 && l0 == 3 && memcmp(label, "svc", 3) == 0 ? DNS_RCODE_NOERROR : DNS_RCODE_NXDOMAIN;
            dns_put_soa(&w, DNS_SECTION_AUTHORITY, zone_wire, 30, &soa);
        }
    }
    ssize_t n = dns_response_finish(&w, rcode, aa, scope);
    return n > 0 ? (size_t)n : 0;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* A UDP socket and a TCP listener on one loopback port. */
static int open_server(int *udp, int *tcp)
{
    for (int attempt = 0; attempt < 20; attempt++) {
        struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        socklen_t alen = sizeof a;
        *udp = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (*udp < 0 || bind(*udp, (struct sockaddr *)&a, sizeof a) != 0 ||
            getsockname(*udp, (struct sockaddr *)&a, &alen) != 0)
            fail_msg("udp socket: %s", strerror(errno));
        *tcp = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        int one = 1;
        setsockopt(*tcp, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(*tcp, (struct sockaddr *)&a, sizeof a) == 0 && listen(*tcp, 4) == 0)
            return ntohs(a.sin_port);
        close(*udp);
        close(*tcp);
    }
    fail_msg("no loopback port free for both UDP and TCP");
    return -1;
}

/* One TCP connection: 2-byte length, message; answers every message. */
static bool serve_tcp(int c, uint8_t *buf, size_t *have)
{
    ssize_t got = read(c, buf + *have, 65537 - *have);
    if (got <= 0)
        return false;
    *have += (size_t)got;
    while (*have >= 2 && *have >= 2 + (size_t)(buf[0] << 8 | buf[1])) {
        size_t mlen = (size_t)(buf[0] << 8 | buf[1]);
        static uint8_t resp[2 + DNS_MSG_MAX];
        size_t n = serve(buf + 2, mlen, resp + 2, true);
        if (n > 0) {
            resp[0] = (uint8_t)(n >> 8);
            resp[1] = (uint8_t)n;
            size_t off = 0;
            while (off < n + 2) {
                ssize_t wr = write(c, resp + off, n + 2 - off);
                if (wr < 0 && errno == EAGAIN) {
                    poll(&(struct pollfd){ .fd = c, .events = POLLOUT }, 1, 1000);
                    continue;
                }
                if (wr <= 0)
                    return false;
                off += (size_t)wr;
            }
        }
        memmove(buf, buf + 2 + mlen, *have - 2 - mlen);
        *have -= 2 + mlen;
    }
    return true;
}

/* Run dig with args against the server, answering its queries until it
 * exits (bounded: 20 s at most, then it is killed). Returns its output
 * (malloc'd), or NULL when dig is not installed. */
static char *run_dig(const char *const *args)
{
    int udp, tcp;
    int port = open_server(&udp, &tcp);
    char portstr[16];
    snprintf(portstr, sizeof portstr, "%d", port);
    int pipefd[2];
    assert_int_equal(pipe2(pipefd, O_CLOEXEC), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        const char *argv[32] = { "dig", "@127.0.0.1", "-p", portstr, "+time=5", "+tries=1" };
        int argc = 6;
        for (int i = 0; args[i] && argc < 31; i++)
            argv[argc++] = args[i];
        argv[argc] = NULL;
        dup2(pipefd[1], 1);
        dup2(pipefd[1], 2);
        execvp("dig", (char *const *)argv);
        _exit(127);
    }
    close(pipefd[1]);
    struct dnsc_buf output = { 0 };
    static uint8_t tcpbuf[65537 + 2];
    size_t tcphave = 0;
    int conn = -1;
    bool eof = false;
    double deadline = now_s() + 20;
    while (!eof && now_s() < deadline) {
        struct pollfd fds[4] = { { udp, POLLIN, 0 }, { tcp, POLLIN, 0 }, { pipefd[0], POLLIN, 0 }, { conn, POLLIN, 0 } };
        if (poll(fds, conn >= 0 ? 4 : 3, 200) < 0)
            continue;
        if (fds[0].revents & POLLIN) {
            uint8_t in[65536];
            static uint8_t resp[DNS_MSG_MAX];
            struct sockaddr_in from;
            socklen_t flen = sizeof from;
            ssize_t n = recvfrom(udp, in, sizeof in, 0, (struct sockaddr *)&from, &flen);
            size_t rl = n > 0 ? serve(in, (size_t)n, resp, false) : 0;
            if (rl > 0)
                sendto(udp, resp, rl, 0, (struct sockaddr *)&from, flen);
        }
        if ((fds[1].revents & POLLIN) && conn < 0) {
            conn = accept4(tcp, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
            tcphave = 0;
        }
        if (conn >= 0 && (fds[3].revents & (POLLIN | POLLHUP))) {
            if (!serve_tcp(conn, tcpbuf, &tcphave)) {
                close(conn);
                conn = -1;
            }
        }
        if (fds[2].revents & (POLLIN | POLLHUP)) {
            char chunk[4096];
            ssize_t n = read(pipefd[0], chunk, sizeof chunk);
            if (n <= 0)
                eof = true;
            else
                dnsc_put(&output, chunk, (size_t)n);
        }
    }
    if (!eof)
        kill(pid, SIGKILL);
    int status = 0;
    waitpid(pid, &status, 0);
    close(pipefd[0]);
    close(udp);
    close(tcp);
    if (conn >= 0)
        close(conn);
    dnsc_put(&output, "", 1);
    if (WIFEXITED(status) && WEXITSTATUS(status) == 127) {
        free(output.p);
        return NULL;
    }
    if (!eof)
        fail_msg("dig did not finish within 20 s; output so far:\n%s", (char *)output.p);
    return (char *)output.p;
}

static void expect_lines(const char *output, const char *const *want)
{
    for (int i = 0; want[i]; i++)
        if (!strstr(output, want[i]))
            fail_msg("dig's output lacks \"%s\":\n%s", want[i], output);
}

#define DIG_OR_SKIP(out, ...)                                                   \
    char *out = run_dig((const char *const[]){ __VA_ARGS__, NULL });          \
    if (!out) {                                                                 \
        fprintf(stderr, "dig is not installed (bind9-dnsutils): skipped\n");    \
        skip();                                                                 \
    }

static void test_dig_a_with_client_subnet(void **state)
{
    DIG_OR_SKIP(o, "svc.sluice.test", "A", "+subnet=192.0.2.0/24");
    expect_lines(o, (const char *const[]){ "status: NOERROR", "flags: qr aa rd;", "ANSWER: 3, AUTHORITY: 0, ADDITIONAL: 1",
                                           "; CLIENT-SUBNET: 192.0.2.0/24/24", "svc.sluice.test.\t30\tIN\tA\t192.0.2.1",
                                           "svc.sluice.test.\t30\tIN\tA\t192.0.2.3", NULL });
    assert_null(strstr(o, "WARNING: Message has"));   /* dig's complaint about malformed messages */
    free(o);
}

static void test_dig_srv_and_case(void **state)
{
    DIG_OR_SKIP(o, "_SVC._tcp.Sluice.TEST", "SRV", "+nocookie");
    expect_lines(o, (const char *const[]){ "status: NOERROR", "ANSWER: 2, AUTHORITY: 0, ADDITIONAL: 3",
                                           "_SVC._tcp.Sluice.TEST.\t30\tIN\tSRV\t0 60 8080 i1.svc.sluice.test.",
                                           "_SVC._tcp.Sluice.TEST.\t30\tIN\tSRV\t1 40 8081 i2.svc.sluice.test.",
                                           "i1.svc.sluice.test.\t30\tIN\tA\t10.0.0.1",
                                           "i2.svc.sluice.test.\t30\tIN\tA\t10.0.0.2", NULL });
    free(o);
}

static void test_dig_nxdomain_nodata_refused(void **state)
{
    DIG_OR_SKIP(o1, "nope.sluice.test", "A");
    expect_lines(o1, (const char *const[]){ "status: NXDOMAIN", "AUTHORITY: 1",
                                            "sluice.test.\t\t30\tIN\tSOA\tns1.sluice.test. hostmaster.sluice.test. 7 3600 600 86400 30",
                                            NULL });
    free(o1);
    DIG_OR_SKIP(o2, "svc.sluice.test", "AAAA");
    expect_lines(o2, (const char *const[]){ "status: NOERROR", "ANSWER: 0, AUTHORITY: 1", NULL });
    free(o2);
    DIG_OR_SKIP(o3, "example.com", "A");
    expect_lines(o3, (const char *const[]){ "status: REFUSED", "flags: qr rd;", NULL });
    free(o3);
}

/* 200 A records do not fit in 1232 bytes: TC, dig retries over TCP and
 * gets them all. */
static void test_dig_truncation_then_tcp(void **state)
{
    DIG_OR_SKIP(o, "big.sluice.test", "A");
    expect_lines(o, (const char *const[]){ ";; Truncated, retrying in TCP mode.", "status: NOERROR",
                                           "ANSWER: 200,", "big.sluice.test.\t30\tIN\tA\t10.9.0.199", NULL });
    free(o);
}

static void test_dig_badvers_and_notimp(void **state)
{
    DIG_OR_SKIP(o1, "svc.sluice.test", "A", "+edns=1", "+noednsneg");
    expect_lines(o1, (const char *const[]){ "status: BADVERS", "; EDNS: version: 0", NULL });
    free(o1);
    DIG_OR_SKIP(o2, "sluice.test", "SOA", "+opcode=status");
    expect_lines(o2, (const char *const[]){ "opcode: STATUS, status: NOTIMP", NULL });
    free(o2);
}

/* dns_read_question: a forwarder's reading of an upstream's answer. A
 * response (QR set, records in every section) has its ID, flags and
 * question read; the question is compared without regard to case; what
 * is not a single plain question is refused, at every cut. */
static void test_read_question_of_a_response(void **state)
{
    uint8_t m[512];
    /* ID 0xbeef, QR RD RA, 1 question, 1 answer: Www.Example.COM A IN,
     * answer with a pointer to the question name, 10.0.0.1. */
    size_t n = unhex("beef 8180 0001 0001 0000 0000"
                     "03 577777 07 4578616d706c65 03 434f4d 00 0001 0001"
                     "c00c 0001 0001 0000003c 0004 0a000001", m, sizeof m);
    struct dns_question rq;
    assert_int_equal(dns_read_question(m, n, &rq), 0);
    assert_int_equal(rq.id, 0xbeef);
    assert_int_equal(rq.flags, 0x8180);
    assert_int_equal(rq.qtype, DNS_TYPE_A);
    assert_int_equal(rq.qclass, DNS_CLASS_IN);
    assert_int_equal(rq.end, 12 + 17 + 4);
    uint8_t wire[DNS_NAME_MAX];
    struct dns_name want;
    int wl = dns_name_from_text("www.example.com", wire);
    assert_true(wl > 0);
    assert_int_equal(dns_name_set(&want, wire, (size_t)wl), 0);
    assert_true(dns_name_equal(&rq.qname, &want));
    wl = dns_name_from_text("www.example.co", wire);
    assert_int_equal(dns_name_set(&want, wire, (size_t)wl), 0);
    assert_false(dns_name_equal(&rq.qname, &want));
    /* Every cut inside the header or the question is refused; past the
     * question, the rest is not read. */
    for (size_t cut = 0; cut < rq.end; cut++)
        assert_int_equal(dns_read_question(m, cut, &rq), -EINVAL);
    for (size_t cut = 12 + 17 + 4; cut <= n; cut++)
        assert_int_equal(dns_read_question(m, cut, &rq), 0);
    /* QDCOUNT 0 or 2, a pointer as the question name, a label type 0x40. */
    m[5] = 0;
    assert_int_equal(dns_read_question(m, n, &rq), -EINVAL);
    m[5] = 2;
    assert_int_equal(dns_read_question(m, n, &rq), -EINVAL);
    m[5] = 1;
    uint8_t ptr[] = { 0, 1, 0x81, 0x80, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 0x0c, 0, 1, 0, 1 };
    assert_int_equal(dns_read_question(ptr, sizeof ptr, &rq), -EINVAL);
    ptr[12] = 0x41;
    assert_int_equal(dns_read_question(ptr, sizeof ptr, &rq), -EINVAL);
    /* The root as the question: a valid name of no labels. */
    uint8_t root[] = { 0, 1, 0x81, 0x80, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 1 };
    assert_int_equal(dns_read_question(root, sizeof root, &rq), 0);
    assert_int_equal(rq.qname.labels, 0);
    assert_int_equal(rq.qtype, DNS_TYPE_NS);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_dig_a_with_cookie),
        cmocka_unit_test(test_addr_label_round_trip),
        cmocka_unit_test(test_addr_label_rejects),
        cmocka_unit_test(test_srv_target),
        cmocka_unit_test(test_read_question_of_a_response),
        cmocka_unit_test(test_parse_dig_variants),
        cmocka_unit_test(test_parse_mixed_case),
        cmocka_unit_test(test_parse_client_subnet),
        cmocka_unit_test(test_parse_unknown_options_and_small_payload),
        cmocka_unit_test(test_parse_ignores_what_receivers_ignore),
        cmocka_unit_test(test_parse_eight_bit_labels),
        cmocka_unit_test(test_parse_name_length_limit),
        cmocka_unit_test(test_parse_rules),
        cmocka_unit_test(test_parse_every_prefix),
        cmocka_unit_test(test_response_limit),
        cmocka_unit_test(test_write_a_answer),
        cmocka_unit_test(test_write_srv_answer),
        cmocka_unit_test(test_write_nxdomain_soa),
        cmocka_unit_test(test_write_client_subnet_echo),
        cmocka_unit_test(test_write_dnssec_ok_echo),
        cmocka_unit_test(test_write_error_answers),
        cmocka_unit_test(test_write_mixed_case),
        cmocka_unit_test(test_truncate_udp_512),
        cmocka_unit_test(test_truncate_edns_with_ecs),
        cmocka_unit_test(test_truncate_tcp_65535),
        cmocka_unit_test(test_compression_table_limits),
        cmocka_unit_test(test_additional_dropped_without_tc),
        cmocka_unit_test(test_refused_record_leaves_nothing),
        cmocka_unit_test(test_writer_misuse),
        cmocka_unit_test(test_write_in_place),
        cmocka_unit_test(test_name_from_text),
        cmocka_unit_test(test_name_wire_len_and_text),
        cmocka_unit_test(test_name_in_zone),
        cmocka_unit_test(test_dig_a_with_client_subnet),
        cmocka_unit_test(test_dig_srv_and_case),
        cmocka_unit_test(test_dig_nxdomain_nodata_refused),
        cmocka_unit_test(test_dig_truncation_then_tcp),
        cmocka_unit_test(test_dig_badvers_and_notimp),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
