/* See health.h. */
#include "core/health.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "core/log.h"

enum hc_phase { HC_WAIT, HC_CONNECT, HC_HANDSHAKE, HC_SEND, HC_READ };

/* One target under check. The timer is the wait before the next check in
 * HC_WAIT and the check's deadline in the other phases. What the check is
 * was copied at hc_add, so the owner's configuration may come and go. */
struct hc_target {
    struct hc_set *set;
    struct hc_target *prev, *next;
    struct sl_addr addr;
    enum health_type type;
    uint32_t interval_ms, timeout_ms, rise, fall;
    uint16_t status_min, status_max;
    char *group;
    char *subject;                    /* what log lines call it */
    hc_result_fn *on_result;
    void *arg;
    SSL *(*tls_new)(void *tls_arg, const struct sl_addr *addr);
    void *tls_arg;
    SSL *ssl;                    /* during a TLS check */
    uint8_t preamble[HEALTH_PREAMBLE_MAX];
    size_t preamble_len;
    struct hc_status st;
    bool removed;                /* hc_remove ran (maybe from its own callback) */
    enum hc_phase phase;
    struct ev_io io;             /* fd -1 between checks */
    struct ev_timer timer;
    uint64_t started;
    char *req;                   /* http: the whole request, built once */
    size_t req_len, sent;
    size_t got;
    char buf[HEALTH_READ_MAX];
};

struct hc_set {
    struct ev_loop *loop;
    struct hc_target *head;
    size_t n;
    uint64_t seed;               /* spreads first checks */
};

static uint32_t at_least_1(uint32_t v) { return v ? v : 1; }

void hc_status_fresh(struct hc_status *st, uint64_t now_ms)
{
    memset(st, 0, sizeof *st);
    st->up = true;
    /* A fresh start is not a recovery: no slow start. */
    st->up_since_ms = now_ms > 86400000u ? now_ms - 86400000u : 0;
    snprintf(st->last_check, sizeof st->last_check, "not checked yet");
}

/* ------------------------------------------------------------------ */
/* Results */

static void tell(struct hc_target *t, bool changed)
{
    if (t->on_result)
        t->on_result(t->arg, &t->st, changed);
}

static void mark_up(struct hc_target *t)
{
    /* up_since_ms starts the slow-start ramp. */
    t->st.up_since_ms = ev_now(t->set->loop);
    t->st.up = true;
    log_info("%s is UP after %u passed checks", t->subject, t->st.rise);
}

static void mark_down(struct hc_target *t, const char *reason)
{
    t->st.up = false;
    log_warn("%s is DOWN after %u failed checks: %s", t->subject, t->st.fall, reason);
}

static void record(struct hc_target *t, bool ok, const char *reason)
{
    struct hc_status *st = &t->st;
    bool changed = false;
    snprintf(st->last_check, sizeof st->last_check, "%s: %s", ok ? "ok" : "failed", reason);
    if (ok) {
        st->checks_ok++;
        st->rise++;
        st->fall = 0;
        if (!st->up && st->rise >= at_least_1(t->rise)) {
            mark_up(t);
            changed = true;
        }
    } else {
        st->checks_failed++;
        st->fall++;
        st->rise = 0;
        log_debug("health check of %s failed: %s", t->subject, reason);
        if (st->up && st->fall >= at_least_1(t->fall)) {
            mark_down(t, reason);
            changed = true;
        }
    }
    tell(t, changed);
}

static void close_socket(struct hc_target *t)
{
    SSL_free(t->ssl); /* no close_notify: the connection is thrown away */
    t->ssl = NULL;
    if (t->io.fd < 0)
        return;
    ev_io_stop(t->set->loop, &t->io);
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
    struct ev_loop *loop = t->set->loop;
    close_socket(t);
    record(t, ok, reason);
    if (t->removed)          /* its owner let it go from the callback */
        return;
    uint64_t next = t->started + at_least_1(t->interval_ms);
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

static uint64_t elapsed(const struct hc_target *t) { return ev_now(t->set->loop) - t->started; }

/* ------------------------------------------------------------------ */
/* TLS */

/* What a failed SSL call means for the check: 1 to wait for the socket
 * event it wants (set), or 0 after finishing the check as failed. */
static int tls_wait_or_fail(struct hc_target *t, int ret, const char *what)
{
    int e = SSL_get_error(t->ssl, ret);
    /* WANT_ASYNC: a provider in async mode is busy with the key
     * operation; try again when the loop comes round (writable at once). */
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_ASYNC ||
        e == SSL_ERROR_WANT_ASYNC_JOB) {
        ev_io_set(t->set->loop, &t->io, e == SSL_ERROR_WANT_READ ? EPOLLIN : EPOLLOUT);
        return 1;
    }
    unsigned long code = ERR_peek_error();
    const char *reason = code ? ERR_reason_error_string(code) : NULL;
    long verify = SSL_get_verify_result(t->ssl);
    ERR_clear_error();
    if (verify != X509_V_OK)
        finish(t, false, "TLS %s failed: %s", what, X509_verify_cert_error_string(verify));
    else if (e == SSL_ERROR_SYSCALL && errno)
        fail_errno(t, errno);
    else if (e == SSL_ERROR_ZERO_RETURN || (e == SSL_ERROR_SYSCALL && !code))
        finish(t, false, "connection closed during the TLS %s", what);
    else
        finish(t, false, "TLS %s failed: %s", what, reason ? reason : "protocol error");
    return 0;
}

/* Bytes in (n > 0), 0 at the end, -1 after finishing the check, -2 to
 * wait for the socket (interest set). Plain or TLS alike. */
static ssize_t check_recv(struct hc_target *t, char *buf, size_t len)
{
    if (t->ssl) {
        int n = SSL_read(t->ssl, buf, (int)len);
        if (n > 0)
            return n;
        if (SSL_get_error(t->ssl, n) == SSL_ERROR_ZERO_RETURN)
            return 0;
        return tls_wait_or_fail(t, n, "read") ? -2 : -1;
    }
    for (;;) {
        ssize_t n = recv(t->io.fd, buf, len, 0);
        if (n >= 0)
            return n;
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return -2;
        fail_errno(t, errno);
        return -1;
    }
}

/* Bytes taken (> 0), -1 after finishing the check, -2 to wait (interest
 * set). */
static ssize_t check_send(struct hc_target *t, const char *buf, size_t len)
{
    if (t->ssl) {
        int n = SSL_write(t->ssl, buf, (int)len);
        if (n > 0)
            return n;
        return tls_wait_or_fail(t, n, "write") ? -2 : -1;
    }
    for (;;) {
        ssize_t n = send(t->io.fd, buf, len, MSG_NOSIGNAL);
        if (n > 0)
            return n;
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            ev_io_set(t->set->loop, &t->io, EPOLLOUT);
            return -2;
        }
        fail_errno(t, n < 0 ? errno : EPIPE);
        return -1;
    }
}

static void begin_http(struct hc_target *t);

static void tls_handshake(struct hc_target *t)
{
    int r = SSL_do_handshake(t->ssl);
    if (r != 1) {
        tls_wait_or_fail(t, r, "handshake");
        return;
    }
    if (t->type == HEALTH_TCP)
        finish(t, true, "TLS handshake in %llu ms", (unsigned long long)elapsed(t));
    else
        begin_http(t);
}

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
    int st = parse_status_line(t->buf, line_len);
    if (st < 0)
        finish(t, false, "invalid HTTP status line");
    else if (st >= t->status_min && st <= t->status_max)
        finish(t, true, "HTTP %d in %llu ms", st, (unsigned long long)elapsed(t));
    else
        finish(t, false, "HTTP status %d (expected %u-%u)", st, t->status_min, t->status_max);
}

static void http_read(struct hc_target *t)
{
    for (;;) {
        ssize_t n = check_recv(t, t->buf + t->got, sizeof t->buf - t->got);
        if (n < 0)
            return; /* finished, or waiting */
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
        ssize_t n = check_send(t, t->req + t->sent, t->req_len - t->sent);
        if (n < 0)
            return; /* finished, or waiting */
        t->sent += (size_t)n;
    }
    t->phase = HC_READ;
    ev_io_set(t->set->loop, &t->io, EPOLLIN);
}

static void begin_http(struct hc_target *t)
{
    t->phase = HC_SEND;
    t->sent = 0;
    t->got = 0;
    http_send(t);
}

/* ------------------------------------------------------------------ */
/* The check itself */

static void connected(struct hc_target *t)
{
    /* A fresh socket's send buffer takes these few bytes whole. */
    if (t->preamble_len && send(t->io.fd, t->preamble, t->preamble_len, MSG_NOSIGNAL) != (ssize_t)t->preamble_len) {
        finish(t, false, "cannot send the PROXY header");
        return;
    }
    if (t->tls_new) {
        t->ssl = t->tls_new(t->tls_arg, &t->addr);
        if (!t->ssl || !SSL_set_fd(t->ssl, t->io.fd)) {
            ERR_clear_error();
            finish(t, false, "cannot set up TLS");
            return;
        }
        t->phase = HC_HANDSHAKE;
        tls_handshake(t);
        return;
    }
    if (t->type == HEALTH_TCP) {
        finish(t, true, "TCP connect in %llu ms", (unsigned long long)elapsed(t));
        return;
    }
    begin_http(t);
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
    case HC_HANDSHAKE:
        tls_handshake(t);
        break;
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
    struct ev_loop *loop = t->set->loop;
    const struct sl_addr *a = &t->addr;
    t->started = ev_now(loop);
    ev_timer_start(loop, &t->timer, at_least_1(t->timeout_ms));
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
        finish(t, false, "timed out after %u ms", at_least_1(t->timeout_ms));
}

/* ------------------------------------------------------------------ */
/* The set */

static char *build_request(const struct cfg_health *h, const struct sl_addr *addr, size_t *len)
{
    const char *path = h->http_path && *h->http_path ? h->http_path : "/";
    const char *host = h->http_host && *h->http_host ? h->http_host : addr->text;
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

static uint64_t next_random(uint64_t *s)
{
    /* splitmix64: only used to spread start times */
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

struct hc_set *hc_set_new(struct ev_loop *loop)
{
    struct hc_set *set = calloc(1, sizeof *set);
    if (!set)
        return NULL;
    set->loop = loop;
    set->seed = ev_clock_ms() ^ ((uint64_t)getpid() << 32) ^ (uint64_t)(uintptr_t)set;
    return set;
}

static void target_free(void *p)
{
    struct hc_target *t = p;
    free(t->req);
    free(t->group);
    free(t->subject);
    free(t);
}

/* Without active checks nothing would bring a DOWN target (carried over
 * from a configuration that had checks) back: consider it up. */
static void release_unchecked(struct hc_target *t)
{
    struct hc_status *st = &t->st;
    bool was_down = !st->up;
    st->rise = st->fall = 0;
    snprintf(st->last_check, sizeof st->last_check, "no active health check");
    if (was_down) {
        st->up_since_ms = ev_now(t->set->loop);
        st->up = true;
        log_info("%s is UP: no active health check", t->subject);
    }
    tell(t, was_down);
}

struct hc_target *hc_add(struct hc_set *set, const struct hc_target_spec *spec)
{
    const struct cfg_health *h = spec->check;
    struct hc_target *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    t->set = set;
    t->addr = spec->addr;
    t->type = h->type;
    t->interval_ms = h->interval_ms;
    t->timeout_ms = h->timeout_ms;
    t->rise = h->rise;
    t->fall = h->fall;
    t->status_min = h->status_min;
    t->status_max = h->status_max;
    t->group = strdup(spec->group ? spec->group : "");
    if (spec->subject) {
        t->subject = strdup(spec->subject);
    } else if (asprintf(&t->subject, "backend %s in pool %s", t->addr.text, spec->group ? spec->group : "") < 0) {
        t->subject = NULL;
    }
    t->on_result = spec->on_result;
    t->arg = spec->arg;
    t->tls_new = spec->tls_new;
    t->tls_arg = spec->tls_arg;
    if (spec->preamble && spec->preamble_len <= sizeof t->preamble) {
        memcpy(t->preamble, spec->preamble, spec->preamble_len);
        t->preamble_len = spec->preamble_len;
    }
    t->st = spec->initial;
    t->io.fd = -1;
    if (!t->group || !t->subject || (t->type == HEALTH_HTTP && !(t->req = build_request(h, &t->addr, &t->req_len)))) {
        target_free(t);
        return NULL;
    }
    ev_timer_init(&t->timer, timer_cb, t);
    t->next = set->head;
    if (set->head)
        set->head->prev = t;
    set->head = t;
    set->n++;
    if (t->type == HEALTH_NONE)
        release_unchecked(t);
    else
        ev_timer_start(set->loop, &t->timer, next_random(&set->seed) % at_least_1(t->interval_ms));
    return t;
}

void hc_remove(struct hc_set *set, struct hc_target *t)
{
    if (!t || t->removed)
        return;
    t->removed = true;
    close_socket(t);
    ev_timer_stop(set->loop, &t->timer);
    if (t->prev)
        t->prev->next = t->next;
    else
        set->head = t->next;
    if (t->next)
        t->next->prev = t->prev;
    set->n--;
    /* An event for its socket may still be queued in this batch. */
    ev_defer_free(set->loop, t, target_free);
}

const struct hc_status *hc_target_status(const struct hc_target *t)
{
    return &t->st;
}

size_t hc_set_size(const struct hc_set *set)
{
    return set->n;
}

void hc_set_free(struct hc_set *set)
{
    if (!set)
        return;
    while (set->head)
        hc_remove(set, set->head);
    ev_defer_free(set->loop, set, free);
}
