#include "core/health.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/log.h"

enum hc_phase { HC_WAIT, HC_CONNECT, HC_SEND, HC_READ };

/* One backend under check. The timer is the wait before the next check in
 * HC_WAIT and the check's deadline in the other phases. */
struct hc_target {
    struct health_checker *hc;
    const struct cfg_pool *pool;
    const struct cfg_backend *be;
    struct shared_backend *sb;
    enum hc_phase phase;
    struct ev_io io;             /* fd -1 between checks */
    struct ev_timer timer;
    uint64_t started;
    char *req;                   /* http: the whole request, built once */
    size_t req_len, sent;
    size_t got;
    char buf[HEALTH_READ_MAX];
};

struct health_checker {
    struct ev_loop *loop;
    struct shared_state *sh;
    struct hc_target *t;
    size_t n;
};

static uint32_t at_least_1(uint32_t v) { return v ? v : 1; }

/* ------------------------------------------------------------------ */
/* Results */

static void mark_up(struct hc_target *t)
{
    /* up_since_ms starts the slow-start ramp in the workers. */
    atomic_store(&t->sb->up_since_ms, ev_now(t->hc->loop));
    atomic_store(&t->sb->health, HEALTH_UP);
    atomic_fetch_add(&t->hc->sh->generation, 1);
    log_info("backend %s in pool %s is UP after %u passed checks", t->be->addr.text, t->pool->name,
             t->sb->check_rise);
}

static void mark_down(struct hc_target *t, const char *reason)
{
    atomic_store(&t->sb->health, HEALTH_DOWN);
    atomic_fetch_add(&t->hc->sh->generation, 1);
    log_warn("backend %s in pool %s is DOWN after %u failed checks: %s", t->be->addr.text, t->pool->name,
             t->sb->check_fall, reason);
}

static void record(struct hc_target *t, bool ok, const char *reason)
{
    struct shared_backend *sb = t->sb;
    const struct cfg_health *h = &t->pool->health;
    snprintf(sb->last_check, sizeof sb->last_check, "%s: %s", ok ? "ok" : "failed", reason);
    if (ok) {
        sb->checks_ok++;
        sb->check_rise++;
        sb->check_fall = 0;
        if (atomic_load(&sb->health) != HEALTH_UP && sb->check_rise >= at_least_1(h->rise))
            mark_up(t);
    } else {
        sb->checks_failed++;
        sb->check_fall++;
        sb->check_rise = 0;
        log_debug("health check of %s in pool %s failed: %s", t->be->addr.text, t->pool->name, reason);
        if (atomic_load(&sb->health) == HEALTH_UP && sb->check_fall >= at_least_1(h->fall))
            mark_down(t, reason);
    }
}

static void close_socket(struct hc_target *t)
{
    if (t->io.fd < 0)
        return;
    ev_io_stop(t->hc->loop, &t->io);
    close(t->io.fd);
    t->io.fd = -1;
}

/* End the current check and schedule the next one interval_ms after this
 * one started, so the initial spread is kept. */
__attribute__((format(printf, 3, 4))) static void finish(struct hc_target *t, bool ok, const char *fmt, ...)
{
    char reason[80];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(reason, sizeof reason, fmt, ap);
    va_end(ap);
    struct ev_loop *loop = t->hc->loop;
    close_socket(t);
    record(t, ok, reason);
    uint64_t next = t->started + at_least_1(t->pool->health.interval_ms);
    uint64_t now = ev_now(loop);
    t->phase = HC_WAIT;
    ev_timer_start(loop, &t->timer, next > now ? next - now : 1);
}

/* strerror, lower-cased for log lines ("connection refused"). */
static void fail_errno(struct hc_target *t, int err)
{
    char msg[64];
    snprintf(msg, sizeof msg, "%s", strerror(err));
    msg[0] = (char)tolower((unsigned char)msg[0]);
    finish(t, false, "%s", msg);
}

static uint64_t elapsed(const struct hc_target *t) { return ev_now(t->hc->loop) - t->started; }

/* ------------------------------------------------------------------ */
/* HTTP */

/* "HTTP/1.x NNN" followed by SP or the end of the line. -1 if malformed. */
static int parse_status_line(const char *p, size_t n)
{
    if (n < 12 || memcmp(p, "HTTP/1.", 7) != 0 || !isdigit((unsigned char)p[7]) || p[8] != ' ')
        return -1;
    for (int i = 9; i < 12; i++)
        if (!isdigit((unsigned char)p[i]))
            return -1;
    if (n > 12 && p[12] != ' ' && p[12] != '\r' && p[12] != '\n')
        return -1;
    return (p[9] - '0') * 100 + (p[10] - '0') * 10 + (p[11] - '0');
}

static void judge_status_line(struct hc_target *t, size_t line_len)
{
    const struct cfg_health *h = &t->pool->health;
    int st = parse_status_line(t->buf, line_len);
    if (st < 0)
        finish(t, false, "invalid HTTP status line");
    else if (st >= h->status_min && st <= h->status_max)
        finish(t, true, "HTTP %d in %llu ms", st, (unsigned long long)elapsed(t));
    else
        finish(t, false, "HTTP status %d (expected %u-%u)", st, h->status_min, h->status_max);
}

static void http_read(struct hc_target *t)
{
    for (;;) {
        ssize_t n = recv(t->io.fd, t->buf + t->got, sizeof t->buf - t->got, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        if (n < 0) {
            fail_errno(t, errno);
            return;
        }
        if (n == 0) {
            finish(t, false, "connection closed before the status line");
            return;
        }
        size_t scan_from = t->got;
        t->got += (size_t)n;
        const char *nl = memchr(t->buf + scan_from, '\n', t->got - scan_from);
        if (nl) {
            judge_status_line(t, (size_t)(nl - t->buf) + 1);
            return;
        }
        if (t->got == sizeof t->buf) {
            finish(t, false, "no status line in the first %d bytes", HEALTH_READ_MAX);
            return;
        }
    }
}

static void http_send(struct hc_target *t)
{
    while (t->sent < t->req_len) {
        ssize_t n = send(t->io.fd, t->req + t->sent, t->req_len - t->sent, MSG_NOSIGNAL);
        if (n > 0) {
            t->sent += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            ev_io_set(t->hc->loop, &t->io, EPOLLOUT);
            return;
        }
        fail_errno(t, n < 0 ? errno : EPIPE);
        return;
    }
    t->phase = HC_READ;
    ev_io_set(t->hc->loop, &t->io, EPOLLIN);
}

/* ------------------------------------------------------------------ */
/* The check itself */

static void connected(struct hc_target *t)
{
    if (t->pool->health.type == HEALTH_TCP) {
        finish(t, true, "TCP connect in %llu ms", (unsigned long long)elapsed(t));
        return;
    }
    t->phase = HC_SEND;
    t->sent = 0;
    t->got = 0;
    http_send(t);
}

static void io_cb(struct ev_loop *loop, struct ev_io *io, uint32_t revents)
{
    struct hc_target *t = io->data;
    switch (t->phase) {
    case HC_CONNECT: {
        int err = 0;
        socklen_t len = sizeof err;
        if (getsockopt(io->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
            err = errno;
        if (err)
            fail_errno(t, err);
        else if (revents & (EPOLLOUT | EPOLLHUP | EPOLLERR))
            connected(t);
        break;
    }
    case HC_SEND:
        http_send(t);
        break;
    case HC_READ:
        http_read(t);
        break;
    case HC_WAIT:
        break;
    }
}

static void start_check(struct hc_target *t)
{
    struct ev_loop *loop = t->hc->loop;
    const struct sl_addr *a = &t->be->addr;
    t->started = ev_now(loop);
    ev_timer_start(loop, &t->timer, at_least_1(t->pool->health.timeout_ms));
    int fd = socket(a->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        fail_errno(t, errno);
        return;
    }
    ev_io_init(&t->io, fd, io_cb, t);
    if (connect(fd, (const struct sockaddr *)&a->ss, a->len) == 0) {
        connected(t);
    } else if (errno == EINPROGRESS) {
        t->phase = HC_CONNECT;
        ev_io_set(loop, &t->io, EPOLLOUT);
    } else {
        fail_errno(t, errno);
    }
}

static void timer_cb(struct ev_loop *loop, struct ev_timer *timer)
{
    struct hc_target *t = timer->data;
    if (t->phase == HC_WAIT)
        start_check(t);
    else
        finish(t, false, "timed out after %u ms", at_least_1(t->pool->health.timeout_ms));
}

/* ------------------------------------------------------------------ */
/* Setup */

static char *build_request(const struct cfg_pool *pool, const struct cfg_backend *be, size_t *len)
{
    const struct cfg_health *h = &pool->health;
    const char *path = h->http_path && *h->http_path ? h->http_path : "/";
    const char *host = h->http_host && *h->http_host ? h->http_host : be->addr.text;
    static const char fmt[] = "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: sluice-health/1\r\nConnection: close\r\n\r\n";
    int n = snprintf(NULL, 0, fmt, path, host);
    if (n < 0)
        return NULL;
    char *req = malloc((size_t)n + 1);
    if (req)
        snprintf(req, (size_t)n + 1, fmt, path, host);
    *len = (size_t)n;
    return req;
}

/* Without active checks nothing would bring a DOWN backend (carried over
 * from a configuration that had checks) back: consider it up. */
static void release_unchecked(struct health_checker *hc, const struct sl_config *cfg, size_t p, uint64_t now)
{
    const struct cfg_pool *pool = &cfg->pools[p];
    for (size_t b = 0; b < pool->n_backends; b++) {
        struct shared_backend *sb = &hc->sh->backends[shared_backend_index(hc->sh, p, b)];
        sb->check_rise = sb->check_fall = 0;
        snprintf(sb->last_check, sizeof sb->last_check, "no active health check");
        if (atomic_load(&sb->health) != HEALTH_UP) {
            atomic_store(&sb->up_since_ms, now);
            atomic_store(&sb->health, HEALTH_UP);
            atomic_fetch_add(&hc->sh->generation, 1);
            log_info("backend %s in pool %s is UP: pool has no active health check", pool->backends[b].addr.text,
                     pool->name);
        }
    }
}

static uint64_t next_random(uint64_t *s)
{
    /* splitmix64: only used to spread start times */
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static void checker_free(void *p)
{
    struct health_checker *hc = p;
    for (size_t i = 0; i < hc->n; i++)
        free(hc->t[i].req);
    free(hc->t);
    free(hc);
}

struct health_checker *health_start(struct ev_loop *loop, const struct sl_config *cfg, struct shared_state *sh)
{
    struct health_checker *hc = calloc(1, sizeof *hc);
    if (!hc)
        return NULL;
    hc->loop = loop;
    hc->sh = sh;
    size_t n = 0;
    for (size_t p = 0; p < cfg->n_pools; p++)
        if (cfg->pools[p].health.type != HEALTH_NONE)
            n += cfg->pools[p].n_backends;
    hc->t = calloc(n ? n : 1, sizeof *hc->t);
    if (!hc->t) {
        free(hc);
        return NULL;
    }
    uint64_t now = ev_now(loop);
    uint64_t seed = ev_clock_ms() ^ ((uint64_t)getpid() << 32) ^ (uint64_t)(uintptr_t)hc;
    for (size_t p = 0; p < cfg->n_pools; p++) {
        const struct cfg_pool *pool = &cfg->pools[p];
        if (pool->health.type == HEALTH_NONE) {
            release_unchecked(hc, cfg, p, now);
            continue;
        }
        for (size_t b = 0; b < pool->n_backends; b++) {
            struct hc_target *t = &hc->t[hc->n];
            t->hc = hc;
            t->pool = pool;
            t->be = &pool->backends[b];
            t->sb = &sh->backends[shared_backend_index(sh, p, b)];
            t->io.fd = -1;
            if (pool->health.type == HEALTH_HTTP && !(t->req = build_request(pool, t->be, &t->req_len))) {
                checker_free(hc);
                return NULL;
            }
            ev_timer_init(&t->timer, timer_cb, t);
            hc->n++;
        }
    }
    /* Armed only once nothing can fail any more. */
    for (size_t i = 0; i < hc->n; i++)
        ev_timer_start(loop, &hc->t[i].timer, next_random(&seed) % at_least_1(hc->t[i].pool->health.interval_ms));
    return hc;
}

void health_stop(struct health_checker *hc)
{
    if (!hc)
        return;
    for (size_t i = 0; i < hc->n; i++) {
        close_socket(&hc->t[i]);
        ev_timer_stop(hc->loop, &hc->t[i].timer);
    }
    /* An event for one of these sockets may still be queued in this batch. */
    ev_defer_free(hc->loop, hc, checker_free);
}
