/* Unit tests for core/sock_diag: the exact 4-tuple lookup against real
 * sockets on the loopback (no privilege needed: a process may ask about
 * the sockets of its own network namespace). Each side of a connection is
 * found; a tuple to the listener's address and port that no connection
 * has is not, though the kernel answers it with the listener. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/sock_diag.h"

struct pair {
    int listener, client, server;
    struct sockaddr_storage listen_addr, client_addr;
};

/* A listener on the loopback of family, a client connected to it and the
 * accepted socket. Returns -1 when the family has no loopback here. */
static int make_pair(int family, struct pair *p)
{
    memset(p, 0, sizeof *p);
    socklen_t len = family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6);
    p->listen_addr.ss_family = (sa_family_t)family;
    if (family == AF_INET)
        ((struct sockaddr_in *)&p->listen_addr)->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    else
        ((struct sockaddr_in6 *)&p->listen_addr)->sin6_addr = in6addr_loopback;
    p->listener = socket(family, SOCK_STREAM, 0);
    if (p->listener < 0 || bind(p->listener, (struct sockaddr *)&p->listen_addr, len) < 0) {
        if (p->listener >= 0)
            close(p->listener);
        return -1;
    }
    assert_int_equal(listen(p->listener, 4), 0);
    assert_int_equal(getsockname(p->listener, (struct sockaddr *)&p->listen_addr, &len), 0);
    p->client = socket(family, SOCK_STREAM, 0);
    assert_true(p->client >= 0);
    assert_int_equal(connect(p->client, (struct sockaddr *)&p->listen_addr, len), 0);
    assert_int_equal(getsockname(p->client, (struct sockaddr *)&p->client_addr, &len), 0);
    p->server = accept(p->listener, NULL, NULL);
    assert_true(p->server >= 0);
    return 0;
}

static void close_pair(struct pair *p)
{
    close(p->server);
    close(p->client);
    close(p->listener);
}

static void shift_port(struct sockaddr_storage *ss)
{
    if (ss->ss_family == AF_INET) {
        struct sockaddr_in *a = (struct sockaddr_in *)ss;
        a->sin_port = htons((uint16_t)(ntohs(a->sin_port) == 65535 ? 65534 : ntohs(a->sin_port) + 1));
    } else {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)ss;
        a->sin6_port = htons((uint16_t)(ntohs(a->sin6_port) == 65535 ? 65534 : ntohs(a->sin6_port) + 1));
    }
}

static void check_family(int family)
{
    struct pair p;
    if (make_pair(family, &p) < 0) {
        skip();
        return;
    }
    char err[128] = "";
    int state = -1;
    struct sockaddr *listen_addr = (struct sockaddr *)&p.listen_addr, *client = (struct sockaddr *)&p.client_addr;
    /* the server's end and the client's end */
    assert_int_equal(sock_diag_tcp_find(listen_addr, client, &state, err, sizeof err), 1);
    assert_int_equal(state, TCP_ESTABLISHED);
    assert_int_equal(sock_diag_tcp_find(client, listen_addr, &state, err, sizeof err), 1);
    assert_int_equal(state, TCP_ESTABLISHED);
    /* No connection from another port: the kernel's answer is the
     * listener, which is "not found". */
    struct sockaddr_storage other = p.client_addr;
    shift_port(&other);
    state = -1;
    assert_int_equal(sock_diag_tcp_find(listen_addr, (struct sockaddr *)&other, &state, err, sizeof err), 0);
    assert_int_equal(state, -1);
    assert_string_equal(err, "");
    close_pair(&p);
}

static void test_ipv4(void **unused)
{
    (void)unused;
    check_family(AF_INET);
}

static void test_ipv6(void **unused)
{
    (void)unused;
    check_family(AF_INET6);
}

static void test_mixed_families_are_an_error(void **unused)
{
    (void)unused;
    struct sockaddr_in a = { .sin_family = AF_INET };
    struct sockaddr_in6 b = { .sin6_family = AF_INET6 };
    char err[128] = "";
    assert_int_equal(sock_diag_tcp_find((struct sockaddr *)&a, (struct sockaddr *)&b, NULL, err, sizeof err), -1);
    assert_non_null(strstr(err, "both addresses must be IPv4 or both IPv6"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ipv4),
        cmocka_unit_test(test_ipv6),
        cmocka_unit_test(test_mixed_families_are_an_error),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
