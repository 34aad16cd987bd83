/* Unit tests for core/health: real sockets on 127.0.0.1, served from the
 * test's own event loop, checked every 20 ms. Every wait is bounded (a few
 * seconds at most) and the assertions are about order, not timing: a
 * transition must happen, and never before `rise`/`fall` results. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/health.h"

#define WAIT_MS 5000
#define POLL_MS 2
#define RISE 2
#define FALL 3

/* ------------------------------------------------------------------ */
/* A tiny backend on the test's loop: accepts, and in http mode reads a
 * request head and answers with a canned status. */

struct peer {
    struct test_server *srv;
    struct ev_io io;
    char buf[2048];
    size_t len;
    bool used;
};

struct test_server {
    struct ev_loop *loop;
    int fd;
    uint16_t port;
    struct ev_io io;
    bool http;
    int status;                  /* what the http mode answers */
    char last_request[2048];
    struct peer peers[32];
};

static void peer_close(struct peer *p)
{
    ev_io_stop(p->srv->loop, &p->io);
    close(p->io.fd);
    p->used = false;
}

static void peer_cb(struct ev_loop *loop, struct ev_io *io, uint32_t revents)
{
    struct peer *p = io->data;
    ssize_t n = recv(io->fd, p->buf + p->len, sizeof p->buf - 1 - p->len, 0);
    if (n <= 0) {
        peer_close(p);
        return;
    }
    p->len += (size_t)n;
    p->buf[p->len] = '\0';
    if (!strstr(p->buf, "\r\n\r\n")) {
        if (p->len == sizeof p->buf - 1)
            peer_close(p);
        return;
    }
    snprintf(p->srv->last_request, sizeof p->srv->last_request, "%s", p->buf);
    char resp[128];
    int m = snprintf(resp, sizeof resp, "HTTP/1.1 %d Canned\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                     p->srv->status);
    ssize_t w = send(io->fd, resp, (size_t)m, MSG_NOSIGNAL);
    (void)w;
    peer_close(p);
}

static void server_accept(struct ev_loop *loop, struct ev_io *io, uint32_t revents)
{
    struct test_server *s = io->data;
    for (;;) {
        int fd = accept4(s->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0)
            return;
        struct peer *p = NULL;
        for (size_t i = 0; i < sizeof s->peers / sizeof *s->peers && !p; i++)
            if (!s->peers[i].used)
                p = &s->peers[i];
        if (!s->http || !p) {
            close(fd);     /* tcp mode: the connect was the check */
            continue;
        }
        memset(p, 0, sizeof *p);
        p->srv = s;
        p->used = true;
        ev_io_init(&p->io, fd, peer_cb, p);
        ev_io_set(loop, &p->io, EPOLLIN);
    }
}

/* Listen on 127.0.0.1:0; serve from the loop unless `serve` is false (then
 * connects still succeed through the backlog, but nothing is ever read). */
static void server_open(struct test_server *s, struct ev_loop *loop, bool http, bool serve)
{
    memset(s, 0, sizeof *s);
    s->loop = loop;
    s->http = http;
    s->status = 200;
    s->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    assert_true(s->fd >= 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(s->fd, (struct sockaddr *)&sin, sizeof sin), 0);
    assert_int_equal(listen(s->fd, 128), 0);
    socklen_t sl = sizeof sin;
    assert_int_equal(getsockname(s->fd, (struct sockaddr *)&sin, &sl), 0);
    s->port = ntohs(sin.sin_port);
    ev_io_init(&s->io, s->fd, server_accept, s);
    if (serve)
        ev_io_set(loop, &s->io, EPOLLIN);
}

static void server_close(struct test_server *s)
{
    for (size_t i = 0; i < sizeof s->peers / sizeof *s->peers; i++)
        if (s->peers[i].used)
            peer_close(&s->peers[i]);
    if (s->fd >= 0) {
        ev_io_stop(s->loop, &s->io);
        close(s->fd);
        s->fd = -1;
    }
}

/* ------------------------------------------------------------------ */
/* A one-pool, one-backend configuration built by hand. */

struct fixture {
    struct ev_loop *loop;
    struct cfg_backend backend;
    struct cfg_pool pool;
    struct sl_config cfg;
    struct shared_state *sh;
    struct test_server srv;
};

static void fixture_init(struct fixture *f, enum health_type type, uint16_t port)
{
    char addr[32];
    const char *why = NULL;
    snprintf(addr, sizeof addr, "127.0.0.1:%u", port);
    assert_int_equal(addr_parse(addr, &f->backend.addr, &why), 0);
    f->backend.weight = 1;
    f->pool.name = "app";
    f->pool.backends = &f->backend;
    f->pool.n_backends = 1;
    f->pool.health = (struct cfg_health){.type = type, .interval_ms = 20, .timeout_ms = 500, .rise = RISE,
                                         .fall = FALL, .http_path = "/healthz", .status_min = 200,
                                         .status_max = 399};
    f->cfg.pools = &f->pool;
    f->cfg.n_pools = 1;
    f->sh = shared_create(&f->cfg, 1);
    assert_non_null(f->sh);
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    f->loop = ev_loop_new();
    f->srv.fd = -1;
    *state = f;
    return f->loop ? 0 : -1;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    server_close(&f->srv);
    shared_destroy(f->sh);
    ev_loop_free(f->loop);
    free(f);
    return 0;
}

/* ------------------------------------------------------------------ */
/* Running the loop until the backend reaches a state. */

struct waiter {
    struct fixture *f;
    uint32_t want;               /* HEALTH_UP / HEALTH_DOWN */
    uint64_t deadline;
    bool reached, early;         /* early: flipped before rise/fall results */
    struct ev_timer poll;
};

static void poll_cb(struct ev_loop *loop, struct ev_timer *t)
{
    struct waiter *w = t->data;
    struct shared_backend *sb = &w->f->sh->backends[0];
    if (atomic_load(&sb->health) == w->want) {
        uint32_t streak = w->want == HEALTH_UP ? sb->check_rise : sb->check_fall;
        uint32_t need = w->want == HEALTH_UP ? RISE : FALL;
        w->early = streak < need;
        w->reached = true;
        ev_break(loop);
        return;
    }
    if (ev_now(loop) >= w->deadline) {
        ev_break(loop);
        return;
    }
    ev_timer_start(loop, t, POLL_MS);
}

/* Returns true when reached within WAIT_MS, asserting it was not early. */
static bool wait_for(struct fixture *f, uint32_t want)
{
    struct waiter w = {.f = f, .want = want};
    ev_now_update(f->loop);
    w.deadline = ev_now(f->loop) + WAIT_MS;
    ev_timer_init(&w.poll, poll_cb, &w);
    ev_timer_start(f->loop, &w.poll, 0);
    ev_run(f->loop);
    ev_timer_stop(f->loop, &w.poll);
    assert_false(w.early);
    return w.reached;
}

/* Run the loop for about ms, whatever happens. */
static void break_cb(struct ev_loop *loop, struct ev_timer *t) { ev_break(loop); }
static void run_for(struct ev_loop *loop, uint64_t ms)
{
    struct ev_timer t;
    ev_timer_init(&t, break_cb, NULL);
    ev_now_update(loop);
    ev_timer_start(loop, &t, ms);
    ev_run(loop);
    ev_timer_stop(loop, &t);
}

/* ------------------------------------------------------------------ */

static void test_tcp_up_then_down(void **state)
{
    struct fixture *f = *state;
    server_open(&f->srv, f->loop, false, true);
    fixture_init(f, HEALTH_TCP, f->srv.port);
    struct shared_backend *sb = &f->sh->backends[0];
    atomic_store(&sb->health, HEALTH_DOWN);
    uint64_t gen0 = atomic_load(&f->sh->generation);
    uint64_t before = ev_clock_ms();

    struct health_checker *hc = health_start(f->loop, &f->cfg, f->sh);
    assert_non_null(hc);
    assert_true(wait_for(f, HEALTH_UP));
    assert_true(sb->checks_ok >= RISE);
    assert_true(atomic_load(&sb->up_since_ms) >= before);
    assert_true(atomic_load(&f->sh->generation) > gen0);
    assert_non_null(strstr(sb->last_check, "ok"));

    /* Nothing listens any more: connection refused. */
    server_close(&f->srv);
    uint64_t gen1 = atomic_load(&f->sh->generation);
    assert_true(wait_for(f, HEALTH_DOWN));
    assert_true(sb->checks_failed >= FALL);
    assert_true(atomic_load(&f->sh->generation) > gen1);
    assert_non_null(strstr(sb->last_check, "connection refused"));
    health_stop(hc);
}

static void test_http_status_and_request(void **state)
{
    struct fixture *f = *state;
    server_open(&f->srv, f->loop, true, true);
    fixture_init(f, HEALTH_HTTP, f->srv.port);
    struct shared_backend *sb = &f->sh->backends[0];
    atomic_store(&sb->health, HEALTH_DOWN);

    struct health_checker *hc = health_start(f->loop, &f->cfg, f->sh);
    assert_non_null(hc);
    assert_true(wait_for(f, HEALTH_UP));
    char host[64];
    snprintf(host, sizeof host, "\r\nHost: 127.0.0.1:%u\r\n", f->srv.port);
    assert_true(strncmp(f->srv.last_request, "GET /healthz HTTP/1.1\r\n", 23) == 0);
    assert_non_null(strstr(f->srv.last_request, host));
    assert_non_null(strstr(f->srv.last_request, "\r\nUser-Agent: sluice-health/1\r\n"));
    assert_non_null(strstr(f->srv.last_request, "\r\nConnection: close\r\n"));

    /* A 503 is a failed check even though the connection works. */
    f->srv.status = 503;
    assert_true(wait_for(f, HEALTH_DOWN));
    assert_non_null(strstr(sb->last_check, "503"));

    f->srv.status = 204;
    uint64_t before = ev_clock_ms();
    assert_true(wait_for(f, HEALTH_UP));
    assert_true(atomic_load(&sb->up_since_ms) >= before);
    assert_non_null(strstr(sb->last_check, "HTTP 204"));
    health_stop(hc);
}

static void test_http_host_override(void **state)
{
    struct fixture *f = *state;
    server_open(&f->srv, f->loop, true, true);
    fixture_init(f, HEALTH_HTTP, f->srv.port);
    f->pool.health.http_host = "app.internal";
    struct shared_backend *sb = &f->sh->backends[0];

    struct health_checker *hc = health_start(f->loop, &f->cfg, f->sh);
    assert_non_null(hc);
    for (int i = 0; i < 100 && sb->checks_ok == 0; i++)
        run_for(f->loop, 20);
    assert_true(sb->checks_ok > 0);
    assert_non_null(strstr(f->srv.last_request, "\r\nHost: app.internal\r\n"));
    health_stop(hc);
}

/* Connects succeed (backlog) but no byte ever comes back: the timeout
 * fails the check; health_stop then cancels one in flight. */
static void test_http_timeout(void **state)
{
    struct fixture *f = *state;
    server_open(&f->srv, f->loop, true, false);
    fixture_init(f, HEALTH_HTTP, f->srv.port);
    f->pool.health.timeout_ms = 30;
    f->pool.health.interval_ms = 40;
    struct shared_backend *sb = &f->sh->backends[0];

    struct health_checker *hc = health_start(f->loop, &f->cfg, f->sh);
    assert_non_null(hc);
    assert_true(wait_for(f, HEALTH_DOWN));
    assert_non_null(strstr(sb->last_check, "timed out after 30 ms"));
    assert_int_equal(sb->checks_ok, 0);
    run_for(f->loop, 10);
    health_stop(hc);
    run_for(f->loop, 5);     /* nothing of the checker may run any more */
}

/* A pool without active checks must not keep a DOWN backend down. */
static void test_no_checks_marks_up(void **state)
{
    struct fixture *f = *state;
    fixture_init(f, HEALTH_NONE, 9);
    struct shared_backend *sb = &f->sh->backends[0];
    atomic_store(&sb->health, HEALTH_DOWN);
    uint64_t gen0 = atomic_load(&f->sh->generation);
    struct health_checker *hc = health_start(f->loop, &f->cfg, f->sh);
    assert_non_null(hc);
    assert_int_equal(atomic_load(&sb->health), HEALTH_UP);
    assert_true(atomic_load(&f->sh->generation) > gen0);
    run_for(f->loop, 30);
    assert_int_equal(sb->checks_ok + sb->checks_failed, 0);
    health_stop(hc);
}

/* Disabled backends are still checked. */
static void test_disabled_still_checked(void **state)
{
    struct fixture *f = *state;
    server_open(&f->srv, f->loop, false, true);
    fixture_init(f, HEALTH_TCP, f->srv.port);
    struct shared_backend *sb = &f->sh->backends[0];
    atomic_store(&sb->admin, BACKEND_DISABLED);
    atomic_store(&sb->health, HEALTH_DOWN);
    struct health_checker *hc = health_start(f->loop, &f->cfg, f->sh);
    assert_true(wait_for(f, HEALTH_UP));
    assert_int_equal(atomic_load(&sb->admin), BACKEND_DISABLED);
    health_stop(hc);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_tcp_up_then_down, setup, teardown),
        cmocka_unit_test_setup_teardown(test_http_status_and_request, setup, teardown),
        cmocka_unit_test_setup_teardown(test_http_host_override, setup, teardown),
        cmocka_unit_test_setup_teardown(test_http_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_checks_marks_up, setup, teardown),
        cmocka_unit_test_setup_teardown(test_disabled_still_checked, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
