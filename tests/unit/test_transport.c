/* The transport seam (proxy/transport.h) and its plain implementation
 * (proxy/transport_plain.c), on real TCP sockets over loopback: the
 * contract every transport keeps (non-blocking recv/send with EAGAIN, an
 * iovec sent in order, shutdown as an end of stream, an aborting close
 * seen by the peer as a reset), and the protocol tables (proxy/proto.h)
 * the worker picks from. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "proxy/proto.h"
#include "proxy/transport.h"

/* A connected pair of loopback TCP sockets: *a non-blocking (the side a
 * transport is set on, as the proxy's sockets are), *b blocking (a peer). */
static void tcp_pair(int *a, int *b)
{
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(lfd >= 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(lfd, (struct sockaddr *)&sin, sizeof sin), 0);
    assert_int_equal(listen(lfd, 1), 0);
    socklen_t len = sizeof sin;
    assert_int_equal(getsockname(lfd, (struct sockaddr *)&sin, &len), 0);
    *b = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(*b >= 0);
    assert_int_equal(connect(*b, (struct sockaddr *)&sin, sizeof sin), 0);
    *a = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    assert_true(*a >= 0);
    close(lfd);
}

/* Wait (bounded) until fd is readable. */
static void wait_readable(int fd)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    assert_int_equal(poll(&p, 1, 5000), 1);
}

static void test_plain_recv_send(void **state)
{
    (void)state;
    int fd, peer;
    tcp_pair(&fd, &peer);
    struct transport t;
    transport_plain(&t, fd);
    assert_true(transport_open(&t));
    assert_true(transport_can_splice(&t));

    /* Nothing to read yet: EAGAIN, not a block and not an end. */
    char buf[64];
    errno = 0;
    assert_int_equal(transport_recv(&t, buf, sizeof buf), -1);
    assert_int_equal(errno, EAGAIN);

    assert_int_equal(write(peer, "hello", 5), 5);
    wait_readable(fd);
    assert_int_equal(transport_recv(&t, buf, sizeof buf), 5);
    assert_memory_equal(buf, "hello", 5);

    /* An iovec leaves in order, as one stream. */
    struct iovec iov[2] = {{"GET / HTTP/1.1\r\n", 16}, {"body", 4}};
    assert_int_equal(transport_send(&t, iov, 2), 20);
    assert_int_equal(transport_send1(&t, "!", 1), 1);
    char got[32] = {0};
    size_t have = 0;
    while (have < 21) {
        ssize_t n = read(peer, got + have, sizeof got - have);
        assert_true(n > 0);
        have += (size_t)n;
    }
    assert_memory_equal(got, "GET / HTTP/1.1\r\nbody!", 21);

    transport_close(&t, false);
    assert_false(transport_open(&t));
    assert_int_equal(t.fd, -1);
    transport_close(&t, false); /* closing a closed transport does nothing */
    /* An orderly close: the peer reads the end of the stream. */
    assert_int_equal(read(peer, got, sizeof got), 0);
    close(peer);
}

static void test_plain_events_unchanged(void **state)
{
    (void)state;
    struct transport t;
    transport_plain(&t, -1);
    /* The plain transport polls exactly what its caller wants and passes
     * readiness on as it came. */
    assert_int_equal(transport_events(&t, 0), 0);
    assert_int_equal(transport_events(&t, EPOLLIN), EPOLLIN);
    assert_int_equal(transport_events(&t, EPOLLIN | EPOLLOUT), EPOLLIN | EPOLLOUT);
    assert_int_equal(transport_ready(&t, EPOLLOUT | EPOLLHUP), EPOLLOUT | EPOLLHUP);
}

static void test_plain_shutdown_is_end_of_stream(void **state)
{
    (void)state;
    int fd, peer;
    tcp_pair(&fd, &peer);
    struct transport t;
    transport_plain(&t, fd);
    assert_int_equal(transport_send1(&t, "last", 4), 4);
    assert_int_equal(transport_shutdown(&t), 0);
    char buf[16];
    assert_int_equal(read(peer, buf, sizeof buf), 4);
    assert_int_equal(read(peer, buf, sizeof buf), 0);
    /* Reading goes on after a shutdown. */
    assert_int_equal(write(peer, "more", 4), 4);
    wait_readable(fd);
    assert_int_equal(transport_recv(&t, buf, sizeof buf), 4);
    transport_close(&t, false);
    close(peer);
}

static void test_plain_abort_resets(void **state)
{
    (void)state;
    int fd, peer;
    tcp_pair(&fd, &peer);
    struct transport t;
    transport_plain(&t, fd);
    transport_close(&t, true);
    assert_int_equal(t.fd, -1);
    /* The peer learns that the stream was cut short: a reset, not an end. */
    wait_readable(peer);
    char buf[8];
    errno = 0;
    assert_int_equal(read(peer, buf, sizeof buf), -1);
    assert_int_equal(errno, ECONNRESET);
    close(peer);
}

static void test_plain_send_to_closed_peer(void **state)
{
    (void)state;
    int fd, peer;
    tcp_pair(&fd, &peer);
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    setsockopt(peer, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    close(peer); /* a reset */
    struct transport t;
    transport_plain(&t, fd);
    wait_readable(fd);
    /* The reset is reported (ECONNRESET), then every send fails with
     * EPIPE, and no SIGPIPE is raised (it would end this test). */
    int err = 0;
    for (int i = 0; i < 5 && err != EPIPE; i++) {
        assert_int_equal(transport_send1(&t, "x", 1), -1);
        err = errno;
        assert_true(err == ECONNRESET || err == EPIPE);
    }
    assert_int_equal(err, EPIPE);
    transport_close(&t, false);
}

static void test_proto_tables(void **state)
{
    (void)state;
    assert_ptr_equal(proxy_proto_of(PROTO_HTTP), &http_proto_ops);
    assert_ptr_equal(proxy_proto_of(PROTO_TCP), &tcp_proto_ops);
    assert_ptr_equal(proxy_proto_of(PROTO_UDP), &udp_proto_ops);
    /* Connection protocols accept; UDP reads its socket itself. */
    assert_non_null(http_proto_ops.accept);
    assert_non_null(tcp_proto_ops.accept);
    assert_null(udp_proto_ops.accept);
    /* Only HTTP can make room at the limit (an idle keep-alive client). */
    assert_non_null(http_proto_ops.can_make_room);
    assert_null(tcp_proto_ops.can_make_room);
    assert_string_equal(http_proto_ops.name, "http");
    assert_string_equal(tcp_proto_ops.name, "tcp");
    assert_string_equal(udp_proto_ops.name, "udp");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plain_recv_send),
        cmocka_unit_test(test_plain_events_unchanged),
        cmocka_unit_test(test_plain_shutdown_is_end_of_stream),
        cmocka_unit_test(test_plain_abort_resets),
        cmocka_unit_test(test_plain_send_to_closed_peer),
        cmocka_unit_test(test_proto_tables),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
