/* Unit tests for core/dns_server, the DNS transport sluice registry and
 * sluice agent share: listener sockets (port 0 gives UDP and TCP the same
 * port; the error names the listener), the UDP batch over real loopback
 * sockets (answers reach the client, with their queries' lengths), and
 * the TCP framing helpers (complete messages only, the two-byte length on
 * output, a read that grows to the message, flush over a socketpair). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/dns_server.h"

static struct sl_addr parse(const char *text)
{
    struct sl_addr a;
    const char *why = NULL;
    assert_int_equal(addr_parse(text, &a, &why), 0);
    return a;
}

static void wait_readable(int fd)
{
    struct pollfd p = { .fd = fd, .events = POLLIN };
    assert_int_equal(poll(&p, 1, 5000), 1);
}

static void test_wildcard(void **state)
{
    (void)state;
    struct sl_addr a = parse("0.0.0.0:53"), b = parse("[::]:53"), c = parse("127.0.0.1:53"), e = parse("[::1]:53");
    assert_true(dns_addr_is_wildcard(&a));
    assert_true(dns_addr_is_wildcard(&b));
    assert_false(dns_addr_is_wildcard(&c));
    assert_false(dns_addr_is_wildcard(&e));
}

static void test_listen_port_zero_same_port(void **state)
{
    (void)state;
    struct sl_addr want = parse("127.0.0.1:0"), bound;
    int ufd = -1, tfd = -1;
    char err[256] = "";
    assert_int_equal(dns_listen_open("dns", &want, &ufd, &tfd, &bound, err, sizeof err), 0);
    assert_int_not_equal(addr_port(&bound), 0);
    struct sockaddr_in sin;
    socklen_t sl = sizeof sin;
    assert_int_equal(getsockname(tfd, (struct sockaddr *)&sin, &sl), 0);
    assert_int_equal(ntohs(sin.sin_port), addr_port(&bound));
    int type = 0;
    sl = sizeof type;
    assert_int_equal(getsockopt(ufd, SOL_SOCKET, SO_TYPE, &type, &sl), 0);
    assert_int_equal(type, SOCK_DGRAM);

    /* The same address again: taken, and the error says whose listener. */
    int u2 = -1, t2 = -1;
    assert_int_equal(dns_listen_open("agent", &bound, &u2, &t2, &want, err, sizeof err), -1);
    assert_non_null(strstr(err, "agent listener 127.0.0.1:"));
    assert_non_null(strstr(err, "(udp)"));
    close(ufd);
    close(tfd);
}

/* A query from a client socket comes back answered (here: echoed with a
 * byte changed), through the batch. */
static void test_udp_batch_round_trip(void **state)
{
    (void)state;
    struct sl_addr want = parse("127.0.0.1:0"), bound;
    int ufd, tfd;
    char err[256];
    assert_int_equal(dns_listen_open("dns", &want, &ufd, &tfd, &bound, err, sizeof err), 0);
    int cli = socket(AF_INET, SOCK_DGRAM, 0);
    assert_true(cli >= 0);
    const uint8_t q1[] = { 1, 2, 3 }, q2[] = { 4, 5, 6, 7, 8 };
    assert_int_equal(sendto(cli, q1, sizeof q1, 0, (struct sockaddr *)&bound.ss, bound.len), sizeof q1);
    assert_int_equal(sendto(cli, q2, sizeof q2, 0, (struct sockaddr *)&bound.ss, bound.len), sizeof q2);

    static uint8_t bufs[DNS_UDP_BATCH * 512];
    static struct dns_udp_batch b;
    dns_udp_batch_init(&b, bufs, 512);
    wait_readable(ufd);
    unsigned got = 0;
    for (int tries = 0; tries < 100 && got < 2; tries++) {
        unsigned n = dns_udp_batch_recv(&b, ufd, false);
        for (unsigned i = 0; i < n; i++) {
            uint8_t *m = bufs + (size_t)(i) * 512;
            m[0] ^= 0x80;   /* the "answer" */
            dns_udp_batch_reply(&b, i, m, b.rmsg[i].msg_len, false);
        }
        assert_int_equal(dns_udp_batch_send(&b, ufd), 0);
        got += n;
        if (got < 2)
            wait_readable(ufd);
    }
    assert_int_equal(got, 2);
    uint8_t in[64];
    wait_readable(cli);
    assert_int_equal(recv(cli, in, sizeof in, 0), sizeof q1);
    assert_int_equal(in[0], 0x81);
    assert_memory_equal(in + 1, q1 + 1, 2);
    wait_readable(cli);
    assert_int_equal(recv(cli, in, sizeof in, 0), sizeof q2);
    assert_int_equal(in[0], 0x84);

    /* One answer on its own. */
    struct sockaddr_storage to;
    socklen_t tl = sizeof to;
    assert_int_equal(getsockname(cli, (struct sockaddr *)&to, &tl), 0);
    assert_int_equal(dns_udp_send_one(ufd, &to, tl, NULL, 0, q2, sizeof q2), 0);
    wait_readable(cli);
    assert_int_equal(recv(cli, in, sizeof in, 0), sizeof q2);
    assert_memory_equal(in, q2, sizeof q2);
    close(cli);
    close(ufd);
    close(tfd);
}

static void test_tcp_message_framing(void **state)
{
    (void)state;
    /* two messages (3 and 1 bytes), then half of a third */
    const uint8_t in[] = { 0, 3, 'a', 'b', 'c', 0, 1, 'd', 0, 5, 'e' };
    size_t m = 99;
    assert_true(dns_tcp_message(in, sizeof in, 0, &m));
    assert_int_equal(m, 3);
    assert_true(dns_tcp_message(in, sizeof in, 5, &m));
    assert_int_equal(m, 1);
    assert_false(dns_tcp_message(in, sizeof in, 8, &m));    /* incomplete */
    assert_false(dns_tcp_message(in, sizeof in, 10, &m));   /* not even the length */
    assert_false(dns_tcp_message(in, sizeof in, 11, &m));
    assert_false(dns_tcp_message(in, 1, 0, &m));

    uint8_t buf[sizeof in];
    memcpy(buf, in, sizeof in);
    size_t len = sizeof in;
    dns_tcp_consume(buf, &len, 8);
    assert_int_equal(len, 3);
    assert_memory_equal(buf, in + 8, 3);
    dns_tcp_consume(buf, &len, 0);
    assert_int_equal(len, 3);
}

static void test_tcp_queue_and_flush(void **state)
{
    (void)state;
    uint8_t *out = NULL;
    size_t off = 0, len = 0, cap = 0;
    const uint8_t a[] = { 'x', 'y' };
    assert_int_equal(dns_tcp_queue(&out, &off, &len, &cap, a, sizeof a, true), 0);
    assert_int_equal(dns_tcp_queue(&out, &off, &len, &cap, a, 1, false), 0);
    const uint8_t want[] = { 0, 2, 'x', 'y', 'x' };
    assert_int_equal(len, sizeof want);
    assert_memory_equal(out, want, sizeof want);

    /* 10,000 answers of 300 bytes: grows, keeps them all in order. */
    uint8_t big[300];
    for (int i = 0; i < 10000; i++) {
        memset(big, (uint8_t)i, sizeof big);
        assert_int_equal(dns_tcp_queue(&out, &off, &len, &cap, big, sizeof big, true), 0);
    }
    assert_int_equal(len, sizeof want + 10000 * 302);
    assert_int_equal(out[sizeof want + 9999 * 302 + 2], (uint8_t)9999);

    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
    bool wrote = false;
    size_t total = len, seen = 0;
    uint8_t rbuf[65536];
    int rc;
    /* The socket takes part of it: 0 with some written, then read it out and go on. */
    while ((rc = dns_tcp_flush(sv[0], out, &off, &len, &wrote)) == 0) {
        assert_true(off > 0 && off < len);
        ssize_t n;
        while ((n = read(sv[1], rbuf, sizeof rbuf)) > 0)
            seen += (size_t)n;
    }
    assert_int_equal(rc, 1);
    assert_true(wrote);
    assert_int_equal(off, 0);
    assert_int_equal(len, 0);
    ssize_t n;
    while ((n = read(sv[1], rbuf, sizeof rbuf)) > 0)
        seen += (size_t)n;
    assert_int_equal(seen, total);

    /* The peer gone: -1. */
    assert_int_equal(dns_tcp_queue(&out, &off, &len, &cap, a, sizeof a, true), 0);
    close(sv[1]);
    wrote = false;
    assert_int_equal(dns_tcp_flush(sv[0], out, &off, &len, &wrote), -1);
    close(sv[0]);
    free(out);
}

/* A read grows the buffer to the message at its start (2 + 3000 bytes
 * here, beyond the initial 16), EOF and "nothing now" are told apart. */
static void test_tcp_read_grows(void **state)
{
    (void)state;
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
    size_t cap = 16, len = 0;
    uint8_t *in = malloc(cap);
    assert_int_equal(dns_tcp_read(sv[0], &in, &len, &cap), DNS_TCP_NOTHING);
    static uint8_t msg[2 + 3000];
    msg[0] = 3000 >> 8;
    msg[1] = 3000 & 0xff;
    memset(msg + 2, 'q', 3000);
    assert_int_equal(write(sv[1], msg, sizeof msg), sizeof msg);
    size_t mlen = 0;
    for (int i = 0; i < 100 && !dns_tcp_message(in, len, 0, &mlen); i++)
        assert_int_equal(dns_tcp_read(sv[0], &in, &len, &cap), DNS_TCP_DATA);
    assert_int_equal(mlen, 3000);
    assert_int_equal(cap, sizeof msg);
    assert_memory_equal(in, msg, sizeof msg);
    /* Full of a complete message: nothing read until it is consumed. */
    assert_int_equal(dns_tcp_read(sv[0], &in, &len, &cap), DNS_TCP_NOTHING);
    dns_tcp_consume(in, &len, 2 + mlen);
    close(sv[1]);
    assert_int_equal(dns_tcp_read(sv[0], &in, &len, &cap), DNS_TCP_EOF);
    close(sv[0]);
    free(in);
}

/* ---- connections: accept, serve, idle close, on a real loop ---- */

struct srv {
    struct ev_loop *loop;
    struct dns_tcp_conns conns;
    struct ev_io listener;
    struct ev_timer pause;
    unsigned accepted, idled;
    bool peer_is_loopback;
};

struct conn {
    struct dns_tcp_conn t;
    struct srv *s;
};

static void conn_gone(struct conn *c)
{
    if (dns_tcp_conn_close(c->s->loop, &c->s->conns, &c->t)) {
        dns_tcp_conn_release(&c->t);
        free(c);
    }
}

/* Echo each complete message back, framed. */
static void conn_io(struct ev_loop *loop, struct ev_io *io, uint32_t revents)
{
    struct conn *c = io->data;
    enum dns_tcp_read_result r = dns_tcp_read(c->t.io.fd, &c->t.in, &c->t.in_len, &c->t.in_cap);
    size_t pos = 0, mlen;
    while (dns_tcp_message(c->t.in, c->t.in_len, pos, &mlen)) {
        assert_int_equal(dns_tcp_queue(&c->t.out, &c->t.out_off, &c->t.out_len, &c->t.out_cap, c->t.in + pos + 2,
                                       mlen, true), 0);
        pos += 2 + mlen;
    }
    dns_tcp_consume(c->t.in, &c->t.in_len, pos);
    bool wrote = false;
    assert_int_equal(dns_tcp_flush(c->t.io.fd, c->t.out, &c->t.out_off, &c->t.out_len, &wrote), 1);
    if (r == DNS_TCP_EOF || r == DNS_TCP_ERROR)
        conn_gone(c);
}

static void conn_idle(struct ev_loop *loop, struct ev_timer *t)
{
    struct conn *c = t->data;
    struct srv *s = c->s;
    s->idled++;
    conn_gone(c);
    if (s->conns.n == 0)
        ev_break(loop);
}

static void srv_accepted(void *arg, int fd, const struct sockaddr_storage *peer)
{
    struct srv *s = arg;
    struct conn *c = calloc(1, sizeof *c);
    assert_non_null(c);
    c->s = s;
    s->accepted++;
    s->peer_is_loopback = peer->ss_family == AF_INET &&
                          ((const struct sockaddr_in *)peer)->sin_addr.s_addr == htonl(INADDR_LOOPBACK);
    assert_int_equal(dns_tcp_conn_open(s->loop, &s->conns, &c->t, fd, peer, conn_io, conn_idle, c, 200), 0);
}

static void srv_accept(struct ev_loop *loop, struct ev_io *io, uint32_t revents)
{
    struct srv *s = io->data;
    dns_tcp_accept(loop, io, &s->pause, "test", srv_accepted, s);
}

static void test_tcp_connections(void **state)
{
    (void)state;
    struct sl_addr want = parse("127.0.0.1:0"), bound;
    int ufd, tfd;
    char err[256];
    assert_int_equal(dns_listen_open("dns", &want, &ufd, &tfd, &bound, err, sizeof err), 0);
    struct srv s = { .loop = ev_loop_new() };
    assert_non_null(s.loop);
    ev_io_init(&s.listener, tfd, srv_accept, &s);
    ev_timer_init(&s.pause, NULL, &s);
    ev_io_set(s.loop, &s.listener, EPOLLIN);

    int a = socket(AF_INET, SOCK_STREAM, 0), b = socket(AF_INET, SOCK_STREAM, 0);
    assert_int_equal(connect(a, (struct sockaddr *)&bound.ss, bound.len), 0);
    assert_int_equal(connect(b, (struct sockaddr *)&bound.ss, bound.len), 0);
    const uint8_t q[] = { 0, 3, 'a', 'b', 'c', 0, 1, 'z' };
    assert_int_equal(write(a, q, sizeof q), sizeof q);
    /* a: echoed, then idle; b: says nothing, idle. Both closed by the idle timer. */
    assert_int_equal(ev_run(s.loop), 0);
    assert_int_equal(s.accepted, 2);
    assert_int_equal(s.idled, 2);
    assert_true(s.peer_is_loopback);
    assert_null(s.conns.head);
    uint8_t in[64];
    size_t got = 0;
    ssize_t n;
    while ((n = read(a, in + got, sizeof in - got)) > 0)
        got += (size_t)n;
    assert_int_equal(got, sizeof q);
    assert_memory_equal(in, q, sizeof q);
    assert_int_equal(read(b, in, sizeof in), 0);   /* closed by the server */
    close(a);
    close(b);
    ev_io_stop(s.loop, &s.listener);
    close(tfd);
    close(ufd);
    ev_loop_free(s.loop);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);   /* as the daemons: a write to a closed peer is EPIPE */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_wildcard),
        cmocka_unit_test(test_listen_port_zero_same_port),
        cmocka_unit_test(test_udp_batch_round_trip),
        cmocka_unit_test(test_tcp_message_framing),
        cmocka_unit_test(test_tcp_queue_and_flush),
        cmocka_unit_test(test_tcp_read_grows),
        cmocka_unit_test(test_tcp_connections),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
