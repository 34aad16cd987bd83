/* Unit tests for core/health (target sets) and the proxy's use of it
 * (proxy/proxy_health.c, results mirrored into the shared region): real sockets on 127.0.0.1, served from the
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
#include "proxy/proxy_health.h"

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
    struct proxy_conf cfg;
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

    struct proxy_health *hc = proxy_health_start(f->loop, &f->cfg, f->sh);
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
    proxy_health_stop(hc);
}

static void test_http_status_and_request(void **state)
{
    struct fixture *f = *state;
    server_open(&f->srv, f->loop, true, true);
    fixture_init(f, HEALTH_HTTP, f->srv.port);
    struct shared_backend *sb = &f->sh->backends[0];
    atomic_store(&sb->health, HEALTH_DOWN);

    struct proxy_health *hc = proxy_health_start(f->loop, &f->cfg, f->sh);
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
    proxy_health_stop(hc);
}

static void test_http_host_override(void **state)
{
    struct fixture *f = *state;
    server_open(&f->srv, f->loop, true, true);
    fixture_init(f, HEALTH_HTTP, f->srv.port);
    f->pool.health.http_host = "app.internal";
    struct shared_backend *sb = &f->sh->backends[0];

    struct proxy_health *hc = proxy_health_start(f->loop, &f->cfg, f->sh);
    assert_non_null(hc);
    for (int i = 0; i < 100 && sb->checks_ok == 0; i++)
        run_for(f->loop, 20);
    assert_true(sb->checks_ok > 0);
    assert_non_null(strstr(f->srv.last_request, "\r\nHost: app.internal\r\n"));
    proxy_health_stop(hc);
}

/* Connects succeed (backlog) but no byte ever comes back: the timeout
 * fails the check; proxy_health_stop then cancels one in flight. */
static void test_http_timeout(void **state)
{
    struct fixture *f = *state;
    server_open(&f->srv, f->loop, true, false);
    fixture_init(f, HEALTH_HTTP, f->srv.port);
    f->pool.health.timeout_ms = 30;
    f->pool.health.interval_ms = 40;
    struct shared_backend *sb = &f->sh->backends[0];

    struct proxy_health *hc = proxy_health_start(f->loop, &f->cfg, f->sh);
    assert_non_null(hc);
    assert_true(wait_for(f, HEALTH_DOWN));
    assert_non_null(strstr(sb->last_check, "timed out after 30 ms"));
    assert_int_equal(sb->checks_ok, 0);
    run_for(f->loop, 10);
    proxy_health_stop(hc);
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
    struct proxy_health *hc = proxy_health_start(f->loop, &f->cfg, f->sh);
    assert_non_null(hc);
    assert_int_equal(atomic_load(&sb->health), HEALTH_UP);
    assert_true(atomic_load(&f->sh->generation) > gen0);
    run_for(f->loop, 30);
    assert_int_equal(sb->checks_ok + sb->checks_failed, 0);
    proxy_health_stop(hc);
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
    struct proxy_health *hc = proxy_health_start(f->loop, &f->cfg, f->sh);
    assert_true(wait_for(f, HEALTH_UP));
    assert_int_equal(atomic_load(&sb->admin), BACKEND_DISABLED);
    proxy_health_stop(hc);
}


/* ------------------------------------------------------------------ */
/* Target sets: added and removed one at a time while checks run. */

struct seen_results {
    struct hc_set *set;
    struct hc_target *t;
    bool gone;                   /* removed: no result may come any more */
    bool late;                   /* one came anyway */
    bool remove_on_first;        /* the callback removes its own target */
    unsigned results, changes;
    bool last_up;
};

static void count_result(void *arg, const struct hc_status *st, bool changed)
{
    struct seen_results *r = arg;
    if (r->gone)
        r->late = true;
    r->results++;
    r->changes += changed;
    r->last_up = st->up;
    if (r->remove_on_first) {
        r->gone = true;
        hc_remove(r->set, r->t);
    }
}

static void spec_for(struct hc_target_spec *spec, const struct cfg_health *h, uint16_t port, struct seen_results *r,
                     struct ev_loop *loop)
{
    char addr[32];
    const char *why = NULL;
    snprintf(addr, sizeof addr, "127.0.0.1:%u", port);
    memset(spec, 0, sizeof *spec);
    assert_int_equal(addr_parse(addr, &spec->addr, &why), 0);
    spec->check = h;
    spec->group = "churn";
    spec->on_result = count_result;
    spec->arg = r;
    hc_status_fresh(&spec->initial, ev_now(loop));
}

#define CHURN 64

/* Targets come and go while others are being checked: the ones that stay
 * keep getting results, the removed ones never report again (even with a
 * check in flight when they went), and the set's size follows. */
static void test_targets_added_and_removed_while_running(void **state)
{
    struct fixture *f = *state;
    struct test_server hang;
    server_open(&f->srv, f->loop, false, true);
    server_open(&hang, f->loop, true, false);   /* http checks hang until their timeout */
    struct cfg_health tcp = {.type = HEALTH_TCP, .interval_ms = 20, .timeout_ms = 20, .rise = 1, .fall = 1},
                      slow = {.type = HEALTH_HTTP, .interval_ms = 60, .timeout_ms = 50, .rise = 1, .fall = 1,
                              .http_path = "/", .status_min = 200, .status_max = 399};
    struct hc_set *set = hc_set_new(f->loop);
    assert_non_null(set);
    struct seen_results *r = calloc(CHURN, sizeof *r);
    assert_non_null(r);
    struct hc_target_spec spec;
    for (size_t i = 0; i < CHURN; i++) {
        r[i].set = set;
        spec_for(&spec, i % 2 ? &slow : &tcp, i % 2 ? hang.port : f->srv.port, &r[i], f->loop);
        r[i].t = hc_add(set, &spec);
        assert_non_null(r[i].t);
        assert_int_equal(hc_set_size(set), i + 1);
    }
    /* Let every tcp target report, and the http ones start their checks. */
    for (int round = 0; round < 200; round++) {
        bool all = true;
        for (size_t i = 0; i < CHURN; i += 2)
            all &= r[i].results >= 2;
        if (all)
            break;
        run_for(f->loop, 10);
    }
    for (size_t i = 0; i < CHURN; i += 2)
        assert_true(r[i].results >= 2 && r[i].last_up);
    /* Remove every other target of each kind, one at a time. */
    for (size_t i = 0; i < CHURN; i += 4) {
        hc_remove(set, r[i].t);
        r[i].gone = true;
        hc_remove(set, r[i + 1].t);
        r[i + 1].gone = true;
    }
    assert_int_equal(hc_set_size(set), CHURN / 2);
    unsigned before[CHURN];
    for (size_t i = 0; i < CHURN; i++)
        before[i] = r[i].results;
    /* Add some back while the rest keep running. */
    struct seen_results extra[4] = {{0}};
    for (size_t i = 0; i < 4; i++) {
        extra[i].set = set;
        spec_for(&spec, &tcp, f->srv.port, &extra[i], f->loop);
        extra[i].t = hc_add(set, &spec);
        assert_non_null(extra[i].t);
    }
    assert_int_equal(hc_set_size(set), CHURN / 2 + 4);
    for (int round = 0; round < 200; round++) {
        bool all = extra[0].results && extra[1].results && extra[2].results && extra[3].results;
        for (size_t i = 2; i < CHURN; i += 4)
            all &= r[i].results > before[i];
        for (size_t i = 3; i < CHURN; i += 4)
            all &= r[i].results > before[i];   /* the slow ones: their timeouts */
        if (all)
            break;
        run_for(f->loop, 10);
    }
    for (size_t i = 0; i < CHURN; i++) {
        assert_false(r[i].late);
        if (r[i].gone)
            assert_int_equal(r[i].results, before[i]);
        else
            assert_true(r[i].results > before[i]);
    }
    for (size_t i = 0; i < 4; i++)
        assert_true(extra[i].results > 0);
    /* The slow ones failed on their timeout: down, each change reported once. */
    assert_false(r[3].last_up);
    assert_int_equal(r[3].changes, 1);
    hc_set_free(set);
    run_for(f->loop, 5);
    server_close(&hang);
    free(r);
}

/* A target's owner may let it go from its own callback. */
static void test_remove_from_callback(void **state)
{
    struct fixture *f = *state;
    server_open(&f->srv, f->loop, false, true);
    struct cfg_health tcp = {.type = HEALTH_TCP, .interval_ms = 10, .timeout_ms = 10, .rise = 1, .fall = 1};
    struct hc_set *set = hc_set_new(f->loop);
    struct seen_results r = {.set = set, .remove_on_first = true};
    struct hc_target_spec spec;
    spec_for(&spec, &tcp, f->srv.port, &r, f->loop);
    r.t = hc_add(set, &spec);
    assert_non_null(r.t);
    for (int i = 0; i < 100 && !r.results; i++)
        run_for(f->loop, 10);
    run_for(f->loop, 50);
    assert_int_equal(r.results, 1);
    assert_false(r.late);
    assert_int_equal(hc_set_size(set), 0);
    hc_set_free(set);
    run_for(f->loop, 5);
}

/* Without checks a target is up at once (and says why); a target started
 * from an earlier one's results goes on from them. */
static void test_unchecked_and_carried_status(void **state)
{
    struct fixture *f = *state;
    server_open(&f->srv, f->loop, false, true);
    struct cfg_health none = {.type = HEALTH_NONE}, tcp = {.type = HEALTH_TCP, .interval_ms = 10,
                                                            .timeout_ms = 10, .rise = RISE, .fall = FALL};
    struct hc_set *set = hc_set_new(f->loop);
    struct seen_results a = {.set = set}, b = {.set = set};
    struct hc_target_spec spec;
    spec_for(&spec, &none, 9, &a, f->loop);
    spec.initial.up = false;
    struct hc_target *ta = hc_add(set, &spec);
    assert_non_null(ta);
    assert_true(hc_target_status(ta)->up);
    assert_string_equal(hc_target_status(ta)->last_check, "no active health check");
    assert_int_equal(a.results, 1);
    assert_int_equal(a.changes, 1);

    spec_for(&spec, &tcp, f->srv.port, &b, f->loop);
    spec.initial.up = false;
    spec.initial.rise = RISE - 1;
    spec.initial.checks_ok = 41;
    struct hc_target *tb = hc_add(set, &spec);
    assert_non_null(tb);
    for (int i = 0; i < 100 && !b.results; i++)
        run_for(f->loop, 10);
    /* one more pass completes the carried streak */
    assert_int_equal(b.changes, 1);
    assert_true(hc_target_status(tb)->up);
    assert_true(hc_target_status(tb)->checks_ok >= 42);
    run_for(f->loop, 30);
    assert_int_equal(a.results, 1);       /* no checks: nothing more */
    hc_set_free(set);
    run_for(f->loop, 5);
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
        cmocka_unit_test_setup_teardown(test_targets_added_and_removed_while_running, setup, teardown),
        cmocka_unit_test_setup_teardown(test_remove_from_callback, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unchecked_and_carried_status, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
