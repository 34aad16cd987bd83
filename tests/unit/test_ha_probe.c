/* The HA probe's pure parts: the SYN/RST builder (checksums checked by an
 * independent reference computation), the answer parser, the socket
 * filter (run here by a small classic-BPF interpreter on built packets),
 * the configuration check and the withdraw/restore state machine. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

#include "ha/probe.h"
#include "ha/probe_packet.h"
#include "cbpf_run.h"

/* ---- helpers ---- */

static struct probe_tuple tuple4(void)
{
    struct probe_tuple t = { .family = AF_INET, .sport = 61001, .dport = 80 };
    inet_pton(AF_INET, "10.12.1.2", t.src);
    inet_pton(AF_INET, "10.12.9.100", t.dst);
    return t;
}

static struct probe_tuple tuple6(void)
{
    struct probe_tuple t = { .family = AF_INET6, .sport = 61999, .dport = 443 };
    inet_pton(AF_INET6, "fd12:1::2", t.src);
    inet_pton(AF_INET6, "fd12:9::100", t.dst);
    return t;
}

/* RFC 1071 the slow way, written apart from the code under test: a
 * byte-wise sum of the pseudo-header laid out in a buffer, then the
 * segment, with end-around carries as they come. */
static uint16_t reference_checksum(int family, const uint8_t *src, const uint8_t *dst, const uint8_t *seg,
                                   size_t len)
{
    uint8_t buf[256];
    size_t n = 0, alen = family == AF_INET ? 4 : 16;
    memcpy(buf + n, src, alen), n += alen;
    memcpy(buf + n, dst, alen), n += alen;
    if (family == AF_INET) {
        buf[n++] = 0;
        buf[n++] = IPPROTO_TCP;
        buf[n++] = (uint8_t)(len >> 8);
        buf[n++] = (uint8_t)len;
    } else {
        buf[n++] = 0, buf[n++] = 0;
        buf[n++] = (uint8_t)(len >> 8);
        buf[n++] = (uint8_t)len;
        buf[n++] = 0, buf[n++] = 0, buf[n++] = 0;
        buf[n++] = IPPROTO_TCP;
    }
    memcpy(buf + n, seg, len), n += len;
    if (n % 2)
        buf[n++] = 0;
    uint32_t sum = 0;
    for (size_t i = 0; i < n; i += 2) {
        sum += (uint32_t)buf[i] << 8 | buf[i + 1];
        if (sum > 0xffff)
            sum = (sum & 0xffff) + 1;
    }
    return (uint16_t)~sum;
}

static uint16_t be16(const uint8_t *p)
{
    return (uint16_t)(p[0] << 8 | p[1]);
}

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)be16(p) << 16 | be16(p + 2);
}

/* The segment of a built packet, its checksum field zeroed (for the reference). */
static size_t segment_of(const uint8_t *pkt, size_t len, int family, uint8_t *seg)
{
    size_t ip = family == AF_INET ? 20 : 40;
    memcpy(seg, pkt + ip, len - ip);
    seg[16] = seg[17] = 0;
    return len - ip;
}

/* An answer from the VIP to the probe: the probe's tuple turned around. */
static size_t build_answer(uint8_t *pkt, const struct probe_tuple *probe, uint8_t flags, uint32_t seq, uint32_t ack)
{
    struct probe_tuple back = *probe;
    memcpy(back.src, probe->dst, 16);
    memcpy(back.dst, probe->src, 16);
    back.sport = probe->dport;
    back.dport = probe->sport;
    size_t len = probe_build_rst(pkt, PROBE_PACKET_MAX, &back, seq, 7);
    size_t ip = probe->family == AF_INET ? 20 : 40;
    uint8_t *tcp = pkt + ip;
    tcp[13] = flags;
    tcp[8] = (uint8_t)(ack >> 24), tcp[9] = (uint8_t)(ack >> 16), tcp[10] = (uint8_t)(ack >> 8), tcp[11] = (uint8_t)ack;
    tcp[16] = tcp[17] = 0;
    uint16_t c = probe_tcp_checksum(back.family, back.src, back.dst, tcp, len - ip);
    tcp[16] = (uint8_t)(c >> 8), tcp[17] = (uint8_t)c;
    return len;
}

/* ---- builder ---- */

static void test_syn_ipv4_fields_and_checksums(void **state)
{
    struct probe_tuple t = tuple4();
    uint8_t pkt[PROBE_PACKET_MAX], seg[64];
    size_t len = probe_build_syn(pkt, sizeof pkt, &t, 0xdeadbeef, 0x1234);
    assert_int_equal(len, 20 + 24);
    assert_int_equal(pkt[0], 0x45);
    assert_int_equal(be16(pkt + 2), len);
    assert_int_equal(be16(pkt + 4), 0x1234);
    assert_int_equal(be16(pkt + 6), 0x4000); /* DF, not a fragment */
    assert_int_equal(pkt[9], IPPROTO_TCP);
    assert_memory_equal(pkt + 12, t.src, 4);
    assert_memory_equal(pkt + 16, t.dst, 4);
    /* The IPv4 header checksum: the header sums to 0xffff. */
    uint32_t sum = 0;
    for (int i = 0; i < 20; i += 2)
        sum += be16(pkt + i);
    while (sum >> 16)
        sum = (sum & 0xffff) + (sum >> 16);
    assert_int_equal(sum, 0xffff);
    const uint8_t *tcp = pkt + 20;
    assert_int_equal(be16(tcp), 61001);
    assert_int_equal(be16(tcp + 2), 80);
    assert_int_equal(be32(tcp + 4), 0xdeadbeef);
    assert_int_equal(be32(tcp + 8), 0);
    assert_int_equal(tcp[12] >> 4, 6); /* 24 bytes: the MSS option */
    assert_int_equal(tcp[13], 0x02);   /* SYN alone */
    assert_int_equal(tcp[20], 2);      /* MSS kind, length 4 */
    assert_int_equal(tcp[21], 4);
    size_t seg_len = segment_of(pkt, len, AF_INET, seg);
    assert_int_equal(be16(tcp + 16), reference_checksum(AF_INET, t.src, t.dst, seg, seg_len));
    /* And the receiver's view: the whole segment checks to 0. */
    assert_int_equal(probe_tcp_checksum(AF_INET, t.src, t.dst, tcp, seg_len), 0);
}

static void test_syn_and_rst_ipv6_checksums(void **state)
{
    struct probe_tuple t = tuple6();
    uint8_t pkt[PROBE_PACKET_MAX], seg[64];
    size_t len = probe_build_syn(pkt, sizeof pkt, &t, 1, 0);
    assert_int_equal(len, 40 + 24);
    assert_int_equal(pkt[0] >> 4, 6);
    assert_int_equal(be16(pkt + 4), 24);
    assert_int_equal(pkt[6], IPPROTO_TCP);
    size_t seg_len = segment_of(pkt, len, AF_INET6, seg);
    assert_int_equal(be16(pkt + 40 + 16), reference_checksum(AF_INET6, t.src, t.dst, seg, seg_len));

    len = probe_build_rst(pkt, sizeof pkt, &t, 0x80000001u, 0);
    assert_int_equal(len, 40 + 20);
    assert_int_equal(pkt[40 + 13], 0x04); /* RST alone */
    assert_int_equal(be32(pkt + 40 + 4), 0x80000001u);
    assert_int_equal(be16(pkt + 40 + 14), 0); /* no window */
    seg_len = segment_of(pkt, len, AF_INET6, seg);
    assert_int_equal(be16(pkt + 40 + 16), reference_checksum(AF_INET6, t.src, t.dst, seg, seg_len));
}

static void test_builder_refuses_small_buffers_and_unknown_families(void **state)
{
    struct probe_tuple t = tuple4();
    uint8_t pkt[PROBE_PACKET_MAX];
    assert_int_equal(probe_build_syn(pkt, 43, &t, 1, 0), 0);
    assert_int_equal(probe_build_syn(pkt, 44, &t, 1, 0), 44);
    t.family = AF_UNIX;
    assert_int_equal(probe_build_rst(pkt, sizeof pkt, &t, 1, 0), 0);
}

/* ---- parser ---- */

static void test_parse_synack_and_rst(void **state)
{
    struct probe_tuple probes[2] = { tuple4(), tuple6() };
    for (int i = 0; i < 2; i++) {
        const struct probe_tuple *t = &probes[i];
        uint8_t pkt[PROBE_PACKET_MAX];
        size_t len = build_answer(pkt, t, 0x12, 777, 1001);
        struct probe_reply r;
        assert_int_equal(probe_parse_reply(pkt, len, t->family, true, &r), 0);
        assert_int_equal(r.kind, PROBE_REPLY_SYNACK);
        assert_int_equal(r.seq, 777);
        assert_int_equal(r.ack, 1001);
        /* Turned around to the probe's view. */
        assert_int_equal(r.tuple.sport, t->sport);
        assert_int_equal(r.tuple.dport, t->dport);
        assert_memory_equal(r.tuple.src, t->src, t->family == AF_INET ? 4 : 16);
        assert_memory_equal(r.tuple.dst, t->dst, t->family == AF_INET ? 4 : 16);

        len = build_answer(pkt, t, 0x14, 0, 1001); /* RST+ACK */
        assert_int_equal(probe_parse_reply(pkt, len, t->family, true, &r), 0);
        assert_int_equal(r.kind, PROBE_REPLY_RST);
        assert_int_equal(r.ack, 1001);
    }
}

static void test_parse_rejects_what_is_not_an_answer(void **state)
{
    struct probe_tuple t = tuple4();
    uint8_t pkt[PROBE_PACKET_MAX];
    struct probe_reply r;
    size_t len = build_answer(pkt, &t, 0x12, 5, 6);

    /* Our own SYN (no ACK), a plain ACK, a SYN-ACK with FIN. */
    uint8_t syn[PROBE_PACKET_MAX];
    size_t syn_len = probe_build_syn(syn, sizeof syn, &t, 1, 0);
    assert_int_equal(probe_parse_reply(syn, syn_len, AF_INET, true, &r), -1);
    size_t n = build_answer(pkt, &t, 0x10, 5, 6);
    assert_int_equal(probe_parse_reply(pkt, n, AF_INET, true, &r), -1);
    n = build_answer(pkt, &t, 0x13, 5, 6);
    assert_int_equal(probe_parse_reply(pkt, n, AF_INET, true, &r), -1);

    /* A bad TCP checksum: refused, unless the kernel vouches for it. */
    len = build_answer(pkt, &t, 0x12, 5, 6);
    pkt[20 + 16] ^= 0x01;
    assert_int_equal(probe_parse_reply(pkt, len, AF_INET, true, &r), -1);
    assert_int_equal(probe_parse_reply(pkt, len, AF_INET, false, &r), 0);
    pkt[20 + 16] ^= 0x01;

    /* Every truncation. */
    for (size_t cut = 0; cut < len; cut++)
        assert_int_equal(probe_parse_reply(pkt, cut, AF_INET, true, &r), -1);
    /* A fragment (MF set; the IP checksum fixed so only MF differs). */
    pkt[6] |= 0x20;
    pkt[10] = pkt[11] = 0;
    uint32_t sum = 0;
    for (int i = 0; i < 20; i += 2)
        sum += be16(pkt + i);
    while (sum >> 16)
        sum = (sum & 0xffff) + (sum >> 16);
    pkt[10] = (uint8_t)(~sum >> 8), pkt[11] = (uint8_t)~sum;
    assert_int_equal(probe_parse_reply(pkt, len, AF_INET, true, &r), -1);
    /* The wrong family. */
    len = build_answer(pkt, &t, 0x12, 5, 6);
    assert_int_equal(probe_parse_reply(pkt, len, AF_INET6, true, &r), -1);
    /* A TCP data offset past the segment. */
    pkt[20 + 12] = 0xf0;
    assert_int_equal(probe_parse_reply(pkt, len, AF_INET, false, &r), -1);

    /* IPv6 with a next header other than TCP (an extension header). */
    struct probe_tuple t6 = tuple6();
    len = build_answer(pkt, &t6, 0x12, 5, 6);
    pkt[6] = 0; /* hop-by-hop */
    assert_int_equal(probe_parse_reply(pkt, len, AF_INET6, true, &r), -1);
    /* A payload length past the packet. */
    len = build_answer(pkt, &t6, 0x12, 5, 6);
    assert_int_equal(probe_parse_reply(pkt, len - 1, AF_INET6, true, &r), -1);
}

static void test_parse_own_syn(void **state)
{
    struct probe_tuple probes[2] = { tuple4(), tuple6() };
    for (int i = 0; i < 2; i++) {
        const struct probe_tuple *t = &probes[i];
        uint8_t pkt[PROBE_PACKET_MAX];
        size_t len = probe_build_syn(pkt, sizeof pkt, t, 0x01020304, 9);
        struct probe_tuple got;
        uint32_t seq;
        assert_int_equal(probe_parse_own_syn(pkt, len, t->family, true, &got, &seq), 0);
        assert_int_equal(seq, 0x01020304);
        assert_int_equal(got.sport, t->sport);
        assert_int_equal(got.dport, t->dport);
        assert_memory_equal(got.src, t->src, t->family == AF_INET ? 4 : 16);
        assert_memory_equal(got.dst, t->dst, t->family == AF_INET ? 4 : 16);
        /* An answer is not a SYN of ours, nor is a RST. */
        struct probe_reply r;
        assert_int_equal(probe_parse_reply(pkt, len, t->family, true, &r), -1);
        len = build_answer(pkt, t, 0x12, 1, 2);
        assert_int_equal(probe_parse_own_syn(pkt, len, t->family, true, &got, &seq), -1);
        len = probe_build_rst(pkt, sizeof pkt, t, 1, 0);
        assert_int_equal(probe_parse_own_syn(pkt, len, t->family, true, &got, &seq), -1);
        for (size_t cut = 0; cut < len; cut++)
            assert_int_equal(probe_parse_own_syn(pkt, cut, t->family, true, &got, &seq), -1);
    }
}

/* ---- the socket filter, run by a classic-BPF interpreter ---- */

static void test_filter_passes_answers_only(void **state)
{
    struct probe_tuple probes[2] = { tuple4(), tuple6() };
    for (int i = 0; i < 2; i++) {
        const struct probe_tuple *t = &probes[i];
        struct sock_filter prog[PROBE_FILTER_MAX];
        size_t n = probe_filter_build(prog, PROBE_FILTER_MAX, t->family, t->src, 61000, 61999);
        assert_true(n > 0);
        uint8_t pkt[PROBE_PACKET_MAX];
        size_t len = build_answer(pkt, t, 0x12, 1, 2);
        assert_true(run_filter(prog, n, pkt, len) > 0); /* SYN-ACK */
        len = build_answer(pkt, t, 0x14, 1, 2);
        assert_true(run_filter(prog, n, pkt, len) > 0); /* RST */
        len = build_answer(pkt, t, 0x10, 1, 2);
        assert_int_equal(run_filter(prog, n, pkt, len), 0); /* ACK */
        len = build_answer(pkt, t, 0x02, 1, 2);
        assert_int_equal(run_filter(prog, n, pkt, len), 0); /* SYN */
        /* Our own SYN passes (the engine keeps it when it arrives from
         * outside: the routers sent the probe to this node)... */
        len = probe_build_syn(pkt, sizeof pkt, t, 1, 0);
        assert_true(run_filter(prog, n, pkt, len) > 0);
        /* ...but not from a source port outside the range, nor with
         * other flags, nor from another address. */
        struct probe_tuple mine = *t;
        mine.sport = 60999;
        len = probe_build_syn(pkt, sizeof pkt, &mine, 1, 0);
        assert_int_equal(run_filter(prog, n, pkt, len), 0);
        len = probe_build_rst(pkt, sizeof pkt, t, 1, 0);
        assert_int_equal(run_filter(prog, n, pkt, len), 0);
        mine = *t;
        mine.src[0] ^= 0x80;
        len = probe_build_syn(pkt, sizeof pkt, &mine, 1, 0);
        assert_int_equal(run_filter(prog, n, pkt, len), 0);
        /* Another destination address. */
        struct probe_tuple other = *t;
        other.src[t->family == AF_INET ? 3 : 15] ^= 1;
        len = build_answer(pkt, &other, 0x12, 1, 2);
        assert_int_equal(run_filter(prog, n, pkt, len), 0);
        /* Destination ports at and outside the range's ends. */
        int ports[] = { 61000, 61999, 60999, 62000 };
        for (int p = 0; p < 4; p++) {
            other = *t;
            other.sport = (uint16_t)ports[p];
            len = build_answer(pkt, &other, 0x12, 1, 2);
            assert_int_equal(run_filter(prog, n, pkt, len) > 0, p < 2);
        }
        /* Not TCP. */
        len = build_answer(pkt, t, 0x12, 1, 2);
        pkt[t->family == AF_INET ? 9 : 6] = IPPROTO_UDP;
        assert_int_equal(run_filter(prog, n, pkt, len), 0);
    }
}

static void test_filter_ipv4_options_and_fragments(void **state)
{
    struct probe_tuple t = tuple4();
    struct sock_filter prog[PROBE_FILTER_MAX];
    size_t n = probe_filter_build(prog, PROBE_FILTER_MAX, AF_INET, t.src, 61000, 61999);
    uint8_t pkt[PROBE_PACKET_MAX], opt[PROBE_PACKET_MAX + 4];
    size_t len = build_answer(pkt, &t, 0x12, 1, 2);
    /* The same answer with 4 bytes of IP options (IHL 6): the filter finds
     * the TCP header behind them. */
    memcpy(opt, pkt, 20);
    memset(opt + 20, 1, 4); /* NOPs */
    memcpy(opt + 24, pkt + 20, len - 20);
    opt[0] = 0x46;
    assert_true(run_filter(prog, n, opt, len + 4) > 0);
    opt[24 + 13] = 0x10; /* a plain ACK behind the options */
    assert_int_equal(run_filter(prog, n, opt, len + 4), 0);
    /* A fragment. */
    pkt[7] = 8;
    assert_int_equal(run_filter(prog, n, pkt, len), 0);
}

static void test_filter_needs_room(void **state)
{
    struct probe_tuple t = tuple6();
    struct sock_filter prog[PROBE_FILTER_MAX];
    assert_int_equal(probe_filter_build(prog, 5, AF_INET6, t.src, 1, 2), 0);
    assert_int_equal(probe_filter_build(prog, PROBE_FILTER_MAX, AF_UNIX, t.src, 1, 2), 0);
}

/* ---- configuration ---- */

static void test_conf_defaults_and_checks(void **state)
{
    struct probe_conf c;
    probe_conf_defaults(&c);
    assert_int_equal(c.interval_ms, 1000);
    assert_int_equal(c.timeout_ms, 500);
    assert_int_equal(c.fall, 3);
    assert_int_equal(c.rise, 2);
    assert_int_equal(c.hold_ms, 30000);
    assert_int_equal(c.port_lo, 61000);
    assert_int_equal(c.port_hi, 61999);
    assert_null(probe_conf_check(&c));
    c.fall = 0;
    assert_string_equal(probe_conf_check(&c), "probe.fall: must be at least 1");
    probe_conf_defaults(&c);
    c.timeout_ms = c.interval_ms;
    assert_string_equal(probe_conf_check(&c), "probe.timeout: must be shorter than probe.interval");
    probe_conf_defaults(&c);
    c.port_hi = 100;
    assert_non_null(probe_conf_check(&c));
    probe_conf_defaults(&c);
    c.source4.ss_family = AF_INET6;
    assert_non_null(probe_conf_check(&c));
}

/* ---- the state machine ---- */

static void test_fsm_withdraws_after_fall_failures_through_us(void **state)
{
    struct probe_conf c;
    probe_conf_defaults(&c);
    struct probe_fsm f;
    probe_fsm_init(&f, 0);
    assert_int_equal(probe_fsm_result(&f, &c, false, true, true, 1), PROBE_VERDICT_NONE);
    assert_int_equal(probe_fsm_result(&f, &c, false, true, true, 2), PROBE_VERDICT_NONE);
    /* A success through us breaks the run. */
    assert_int_equal(probe_fsm_result(&f, &c, true, true, true, 3), PROBE_VERDICT_NONE);
    assert_int_equal(probe_fsm_result(&f, &c, false, true, true, 4), PROBE_VERDICT_NONE);
    assert_int_equal(probe_fsm_result(&f, &c, false, true, true, 5), PROBE_VERDICT_NONE);
    /* Results elsewhere change nothing, success or failure. */
    assert_int_equal(probe_fsm_result(&f, &c, true, false, true, 6), PROBE_VERDICT_NONE);
    assert_int_equal(probe_fsm_result(&f, &c, false, false, true, 6), PROBE_VERDICT_NONE);
    assert_int_equal(probe_fsm_result(&f, &c, false, true, true, 7), PROBE_VERDICT_WITHDRAW);
    assert_int_equal(f.state, PROBE_WITHDRAWN);
}

static void test_fsm_leaves_what_the_node_health_explains_to_it(void **state)
{
    struct probe_conf c;
    probe_conf_defaults(&c);
    struct probe_fsm f;
    probe_fsm_init(&f, 0);
    for (int i = 0; i < 10; i++)
        assert_int_equal(probe_fsm_result(&f, &c, false, true, false, (uint64_t)i), PROBE_VERDICT_NONE);
    assert_int_equal(f.state, PROBE_SERVING);
    /* And an unhealthy spell resets the count. */
    probe_fsm_result(&f, &c, false, true, true, 11);
    probe_fsm_result(&f, &c, false, true, true, 12);
    probe_fsm_result(&f, &c, false, true, false, 13);
    assert_int_equal(probe_fsm_result(&f, &c, false, true, true, 14), PROBE_VERDICT_NONE);
}

static void test_fsm_hold_then_recheck_then_restore(void **state)
{
    struct probe_conf c;
    probe_conf_defaults(&c);
    c.fall = 1;
    struct probe_fsm f;
    probe_fsm_init(&f, 0);
    assert_int_equal(probe_fsm_result(&f, &c, false, true, true, 1000), PROBE_VERDICT_WITHDRAW);
    /* While withdrawn, results are ignored and the hold runs. */
    assert_int_equal(probe_fsm_result(&f, &c, true, true, true, 2000), PROBE_VERDICT_NONE);
    assert_int_equal(f.state, PROBE_WITHDRAWN);
    assert_int_equal(probe_fsm_tick(&f, &c, 1000 + 29999), PROBE_VERDICT_NONE);
    assert_int_equal(probe_fsm_tick(&f, &c, 1000 + 30000), PROBE_VERDICT_REANNOUNCE);
    assert_int_equal(f.state, PROBE_RECHECKING);
    assert_int_equal(probe_fsm_tick(&f, &c, 99999), PROBE_VERDICT_NONE); /* only from WITHDRAWN */
    assert_int_equal(probe_fsm_result(&f, &c, true, true, true, 31001), PROBE_VERDICT_NONE);
    assert_int_equal(probe_fsm_result(&f, &c, true, false, true, 31002), PROBE_VERDICT_NONE);
    assert_int_equal(probe_fsm_result(&f, &c, true, true, true, 31003), PROBE_VERDICT_RESTORED);
    assert_int_equal(f.state, PROBE_SERVING);
}

static void test_fsm_recheck_failure_withdraws_again(void **state)
{
    struct probe_conf c;
    probe_conf_defaults(&c);
    c.fall = 5; /* a recheck failure withdraws at once, whatever `fall` */
    struct probe_fsm f;
    probe_fsm_init(&f, 0);
    for (int i = 0; i < 5; i++)
        probe_fsm_result(&f, &c, false, true, true, 10);
    assert_int_equal(f.state, PROBE_WITHDRAWN);
    assert_int_equal(probe_fsm_tick(&f, &c, 30010), PROBE_VERDICT_REANNOUNCE);
    assert_int_equal(probe_fsm_result(&f, &c, true, true, true, 30020), PROBE_VERDICT_NONE);
    /* Unhealthy node: not the probe's business, but the trial restarts. */
    assert_int_equal(probe_fsm_result(&f, &c, false, true, false, 30030), PROBE_VERDICT_NONE);
    assert_int_equal(f.state, PROBE_RECHECKING);
    assert_int_equal(probe_fsm_result(&f, &c, false, true, true, 30040), PROBE_VERDICT_WITHDRAW);
    /* A new hold from the second withdrawal. */
    assert_int_equal(probe_fsm_tick(&f, &c, 30040 + 29999), PROBE_VERDICT_NONE);
    assert_int_equal(probe_fsm_tick(&f, &c, 30040 + 30000), PROBE_VERDICT_REANNOUNCE);
}

static void test_names(void **state)
{
    assert_string_equal(probe_outcome_name(PROBE_OK), "ok");
    assert_string_equal(probe_outcome_name(PROBE_REFUSED), "refused");
    assert_string_equal(probe_outcome_name(PROBE_TIMEOUT), "timeout");
    assert_string_equal(probe_path_name(PROBE_PATH_US), "us");
    assert_string_equal(probe_path_name(PROBE_PATH_ELSEWHERE), "elsewhere");
    assert_string_equal(probe_verdict_name(PROBE_VERDICT_WITHDRAW), "withdraw");
    assert_string_equal(probe_fsm_state_name(PROBE_RECHECKING), "rechecking");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_syn_ipv4_fields_and_checksums),
        cmocka_unit_test(test_syn_and_rst_ipv6_checksums),
        cmocka_unit_test(test_builder_refuses_small_buffers_and_unknown_families),
        cmocka_unit_test(test_parse_synack_and_rst),
        cmocka_unit_test(test_parse_rejects_what_is_not_an_answer),
        cmocka_unit_test(test_parse_own_syn),
        cmocka_unit_test(test_filter_passes_answers_only),
        cmocka_unit_test(test_filter_ipv4_options_and_fragments),
        cmocka_unit_test(test_filter_needs_room),
        cmocka_unit_test(test_conf_defaults_and_checks),
        cmocka_unit_test(test_fsm_withdraws_after_fall_failures_through_us),
        cmocka_unit_test(test_fsm_leaves_what_the_node_health_explains_to_it),
        cmocka_unit_test(test_fsm_hold_then_recheck_then_restore),
        cmocka_unit_test(test_fsm_recheck_failure_withdraws_again),
        cmocka_unit_test(test_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
