/* The TLS transport: see transport.h for the contract and tls.h for the
 * choices. One struct tls_conn per connection in t->ctx.
 *
 * Directions: what OpenSSL waits for is not always what the caller waits
 * for (a read may need the socket writable to finish a handshake or
 * answer a key update). Each of the handshake, reading and writing
 * remembers the socket event its last attempt waited for; wanted_events()
 * turns the caller's wish into those, and ready_events() turns the
 * socket's readiness back into the caller's directions.
 */
#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>

#include "core/log.h"
#include "lib/addr.h"
#include "proxy/shared.h"
#include "proxy/tls.h"
#include "proxy/tls_session.h"

/* The most plaintext one SSL_write takes: one full record. */
#define RECORD_MAX 16384
/* At most one handshake failure per period reaches the info log; the rest
 * are counted (sluice_tls_handshake_failures_total) and logged at debug. */
#define FAIL_LOG_PERIOD_MS 60000

struct tls_conn {
    SSL *ssl;
    struct tls_server *srv;       /* NULL: nothing counted */
    uint32_t hs_want;             /* socket event the handshake waits for */
    uint32_t read_want;           /* ... SSL_read waits for (EPOLLIN, or EPOLLOUT) */
    uint32_t write_want;          /* ... SSL_write waits for (EPOLLOUT, or EPOLLIN) */
    uint32_t caller_want;         /* the caller's last wish (wanted_events) */
    bool handshake_done;
    int resumed;                  /* TLS_RESUMED_*, once the handshake is done */
    bool failed;                  /* fatal error: no close_notify, no more I/O */
    const char *fail_detail;      /* why the handshake failed (a static string), or NULL */
    bool shutdown_pending;        /* close_notify waits for room in the socket */
    /* The write OpenSSL holds after EAGAIN: its length and first bytes.
     * OpenSSL sends the record it already made whatever a retry offers;
     * a caller offering other bytes (an error answer in place of a
     * response) would get them mixed on the wire, so that fails instead. */
    size_t pending_len;
    unsigned char pending_head[32];
    char *client_subject;         /* the verified client certificate's subject (RFC 2253), made once */
};

static struct tls_conn *conn_of(const struct transport *t) { return t->ctx; }

/* A TLS transport that is still open and finished its handshake. */
static bool established(const struct transport *t)
{
    return transport_is_tls(t) && t->ctx && conn_of(t)->handshake_done;
}

/* ------------------------------------------------------------------------
 * Our socket BIO: OpenSSL's writes with write(2), which raises SIGPIPE on
 * a reset peer; the transport contract says it never does.
 */

static int bio_fd(BIO *b) { return (int)(intptr_t)BIO_get_data(b); }

static int bio_write(BIO *b, const char *data, int len)
{
    ssize_t n;
    BIO_clear_retry_flags(b);
    do
        n = send(bio_fd(b), data, (size_t)len, MSG_NOSIGNAL);
    while (n < 0 && errno == EINTR);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
        BIO_set_retry_write(b);
    return (int)n;
}

static int bio_read(BIO *b, char *data, int len)
{
    ssize_t n;
    BIO_clear_retry_flags(b);
    do
        n = recv(bio_fd(b), data, (size_t)len, 0);
    while (n < 0 && errno == EINTR);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
        BIO_set_retry_read(b);
    else if (n == 0)
        BIO_set_flags(b, BIO_FLAGS_IN_EOF); /* BIO_eof(): see bio_ctrl */
    return (int)n;
}

static long bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    switch (cmd) {
    case BIO_CTRL_FLUSH:
        return 1; /* nothing buffered here */
    case BIO_CTRL_EOF:
        /* OpenSSL asks this to tell a peer's FIN from an error: without
         * it SSL_OP_IGNORE_UNEXPECTED_EOF cannot take a FIN that came
         * without close_notify as the end of the stream. */
        return BIO_test_flags(b, BIO_FLAGS_IN_EOF) != 0;
    case BIO_C_GET_FD:
        if (ptr)
            *(int *)ptr = bio_fd(b);
        return bio_fd(b);
    default:
        return 0;
    }
}

static BIO *socket_bio(int fd)
{
    static BIO_METHOD *method; /* one per process, never freed */
    if (!method) {
        method = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK | BIO_TYPE_DESCRIPTOR, "sluice socket");
        if (!method || !BIO_meth_set_write(method, bio_write) || !BIO_meth_set_read(method, bio_read) ||
            !BIO_meth_set_ctrl(method, bio_ctrl)) {
            BIO_meth_free(method);
            method = NULL;
            return NULL;
        }
    }
    BIO *b = BIO_new(method);
    if (b) {
        BIO_set_data(b, (void *)(intptr_t)fd);
        BIO_set_init(b, 1);
    }
    return b;
}

/* ------------------------------------------------------------------------
 * Counting and logging handshakes
 */

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void peer_of(int fd, char *buf, size_t cap)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    snprintf(buf, cap, "?");
    if (getpeername(fd, (struct sockaddr *)&ss, &sl) == 0)
        addr_ip_string((struct sockaddr *)&ss, buf, cap);
}

/* How the session was set up. The listener's session store counts it
 * and tells a ticket from the shared cache; an SSL without a store (a
 * client role) has only OpenSSL's word that it resumed. */
static int resumption_of(SSL *ssl)
{
    int r = tls_sessions_handshake_done(ssl);
    if (r >= 0)
        return r;
    return SSL_session_reused(ssl) == 1 ? TLS_RESUMED_TICKET : TLS_RESUMED_NO;
}

static void count_success(struct tls_conn *tc)
{
    if (!tc->srv || !tc->srv->ctr)
        return;
    int v = SSL_version(tc->ssl) == TLS1_3_VERSION;
    int r = tc->resumed != TLS_RESUMED_NO;
    atomic_fetch_add_explicit(&tc->srv->ctr->handshakes[v][r], 1, memory_order_relaxed);
}

static const char *const fail_names[TLS_FAIL_COUNT] = {
    [TLS_FAIL_PROTOCOL] = "protocol error", [TLS_FAIL_CLOSED] = "closed by the peer", [TLS_FAIL_TIMEOUT] = "timeout",
    [TLS_FAIL_CLIENT_CERT] = "client certificate",
};

/* Count the failure; log it at debug, and at info at most once a period
 * so that a scanner or a flood of broken clients cannot fill the log. */
static void count_failure(struct transport *t, enum tls_fail_reason why, const char *detail)
{
    struct tls_conn *tc = conn_of(t);
    static uint64_t last_info_ms, suppressed;
    tc->failed = true;
    if (!tc->srv)
        return;
    if (tc->srv->ctr)
        atomic_fetch_add_explicit(&tc->srv->ctr->failures[why], 1, memory_order_relaxed);
    char peer[64];
    peer_of(t->fd, peer, sizeof peer);
    log_debug("tls %s: handshake with %s failed: %s%s%s", tc->srv->listener, peer, fail_names[why],
              detail ? ": " : "", detail ? detail : "");
    uint64_t now = mono_ms();
    if (last_info_ms && now - last_info_ms < FAIL_LOG_PERIOD_MS) {
        suppressed++;
        return;
    }
    log_info("tls %s: handshake with %s failed: %s%s%s (%llu more since the last such message; every failure is "
             "counted in sluice_tls_handshake_failures_total)",
             tc->srv->listener, peer, fail_names[why], detail ? ": " : "", detail ? detail : "",
             (unsigned long long)suppressed);
    last_info_ms = now;
    suppressed = 0;
}

/* ------------------------------------------------------------------------
 * The handshake
 */

/* client_certificates refused the client: it sent none while one is
 * required, or the one it sent did not verify (detail says why: "certificate
 * has expired", "unable to get local issuer certificate", ...). */
static bool client_cert_refused(SSL *ssl, unsigned long e, const char **detail)
{
    if (!SSL_is_server(ssl) || !e || ERR_GET_LIB(e) != ERR_LIB_SSL)
        return false;
    int reason = ERR_GET_REASON(e);
    if (reason == SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE)
        return true;
    if (reason != SSL_R_CERTIFICATE_VERIFY_FAILED)
        return false;
    long v = SSL_get_verify_result(ssl);
    if (v != X509_V_OK)
        *detail = X509_verify_cert_error_string(v);
    return true;
}

/* openssl.async (SSL_MODE_ASYNC): a provider is working on this
 * connection's private-key operation (WANT_ASYNC), or every async job
 * is busy (WANT_ASYNC_JOB). The call is made again on the next turn of
 * the loop: the transport asks for the socket's writability, which is
 * there at once, so the connection is resumed after the others' events
 * rather than blocking them. (A provider's own wait descriptors, from
 * SSL_get_all_async_fds, are not polled: no such hardware was at hand
 * to test it with; docs/tls.md says so.) */
static bool want_async(int ssl_error)
{
    return ssl_error == SSL_ERROR_WANT_ASYNC || ssl_error == SSL_ERROR_WANT_ASYNC_JOB;
}

/* After a failed SSL call: which kind of failure it was. */
static enum tls_fail_reason classify(SSL *ssl, int ssl_error, int sys_errno, const char **detail)
{
    unsigned long e = ERR_peek_last_error();
    *detail = e ? ERR_reason_error_string(e) : NULL;
    if (client_cert_refused(ssl, e, detail))
        return TLS_FAIL_CLIENT_CERT;
    if (ssl_error == SSL_ERROR_SYSCALL) {
        if (sys_errno)
            *detail = strerror(sys_errno);
        return TLS_FAIL_CLOSED;
    }
    if (ssl_error == SSL_ERROR_ZERO_RETURN ||
        (e && ERR_GET_LIB(e) == ERR_LIB_SSL && ERR_GET_REASON(e) == SSL_R_UNEXPECTED_EOF_WHILE_READING))
        return TLS_FAIL_CLOSED;
    return TLS_FAIL_PROTOCOL;
}

int transport_tls_handshake(struct transport *t)
{
    struct tls_conn *tc = conn_of(t);
    if (tc->handshake_done)
        return 1;
    if (tc->failed) {
        errno = EPROTO;
        return -1;
    }
    ERR_clear_error();
    int r = SSL_do_handshake(tc->ssl);
    int sys_errno = errno;
    if (r == 1) {
        tc->handshake_done = true;
        tc->hs_want = 0;
        tc->resumed = resumption_of(tc->ssl);
        count_success(tc);
        return 1;
    }
    int e = SSL_get_error(tc->ssl, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE || want_async(e)) {
        tc->hs_want = e == SSL_ERROR_WANT_READ ? EPOLLIN : EPOLLOUT;
        errno = EAGAIN;
        return 0;
    }
    const char *detail;
    enum tls_fail_reason why = classify(tc->ssl, e, sys_errno, &detail);
    /* A client (to a backend) that refused the server's certificate:
     * the verification error says which check failed. */
    long verify = SSL_is_server(tc->ssl) ? X509_V_OK : SSL_get_verify_result(tc->ssl);
    tc->fail_detail = verify != X509_V_OK ? X509_verify_cert_error_string(verify)
                      : detail                ? detail
                                              : fail_names[why];
    /* A connection closed before its first byte (a TCP health check, a
     * port scan) attempted no handshake: not counted, not logged. */
    if (why == TLS_FAIL_CLOSED && SSL_get_state(tc->ssl) == TLS_ST_BEFORE)
        tc->failed = true;
    else
        count_failure(t, why, detail);
    ERR_clear_error();
    errno = why == TLS_FAIL_CLOSED ? ECONNRESET : EPROTO;
    return -1;
}

void transport_tls_handshake_timed_out(struct transport *t)
{
    if (transport_is_tls(t) && t->ctx && !conn_of(t)->handshake_done && !conn_of(t)->failed)
        count_failure(t, TLS_FAIL_TIMEOUT, NULL);
}

/* ------------------------------------------------------------------------
 * close_notify
 */

/* Send the pending close_notify, then FIN: 0, or -1 with errno. Stays
 * pending while the socket has no room for it. */
static int flush_shutdown(struct transport *t)
{
    struct tls_conn *tc = conn_of(t);
    if (!tc->shutdown_pending)
        return 0;
    ERR_clear_error();
    int r = SSL_shutdown(tc->ssl);
    if (r < 0) {
        int e = SSL_get_error(tc->ssl, r);
        ERR_clear_error();
        if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ)
            return 0;
    }
    tc->shutdown_pending = false;
    return shutdown(t->fd, SHUT_WR);
}

/* ------------------------------------------------------------------------
 * The operations
 */

/* The error of a failed SSL_read or SSL_write as the contract wants it:
 * -1 with errno EAGAIN (*want set), or a fatal -1, or 0 for the end. */
static ssize_t io_error(struct tls_conn *tc, int r, int sys_errno, uint32_t *want)
{
    int e = SSL_get_error(tc->ssl, r);
    ERR_clear_error();
    switch (e) {
    case SSL_ERROR_WANT_READ:
        *want = EPOLLIN;
        errno = EAGAIN;
        return -1;
    case SSL_ERROR_WANT_WRITE:
    case SSL_ERROR_WANT_ASYNC:     /* see want_async() */
    case SSL_ERROR_WANT_ASYNC_JOB:
        *want = EPOLLOUT;
        errno = EAGAIN;
        return -1;
    case SSL_ERROR_ZERO_RETURN:
        return 0; /* close_notify, or EOF (SSL_OP_IGNORE_UNEXPECTED_EOF) */
    case SSL_ERROR_SYSCALL:
        tc->failed = true;
        errno = sys_errno ? sys_errno : ECONNRESET;
        return -1;
    default:
        tc->failed = true;
        errno = EPROTO;
        return -1;
    }
}

static ssize_t tls_recv(struct transport *t, void *buf, size_t len)
{
    struct tls_conn *tc = conn_of(t);
    if (flush_shutdown(t) < 0 || transport_tls_handshake(t) <= 0)
        return -1;
    if (tc->failed) {
        errno = EPROTO;
        return -1;
    }
    if (len == 0) {
        errno = EAGAIN;
        return -1;
    }
    ERR_clear_error();
    int n = SSL_read(tc->ssl, buf, len > INT_MAX ? INT_MAX : (int)len);
    int sys_errno = errno;
    if (n > 0) {
        tc->read_want = EPOLLIN;
        return n;
    }
    ssize_t rc = io_error(tc, n, sys_errno, &tc->read_want);
    if (rc == 0)
        tc->read_want = EPOLLIN;
    return rc;
}

/* The next bytes to write from iov, starting `skip` bytes in: always
 * min(bytes left, RECORD_MAX) of them, so that a write retried after
 * EAGAIN offers at least as many bytes as the one OpenSSL holds (its
 * rule). Straight from the caller's buffer when one iovec has them all,
 * else copied together into `stage` (one record instead of several small
 * ones: a response head and the start of its body). */
static const void *next_chunk(const struct iovec *iov, int iovcnt, size_t skip, unsigned char *stage, size_t *len)
{
    int i = 0;
    while (i < iovcnt && skip >= iov[i].iov_len)
        skip -= iov[i++].iov_len;
    size_t left = 0;
    for (int k = i; k < iovcnt; k++)
        left += iov[k].iov_len;
    left -= skip;
    *len = left < RECORD_MAX ? left : RECORD_MAX;
    if (!*len)
        return NULL;
    if (iov[i].iov_len - skip >= *len)
        return (const char *)iov[i].iov_base + skip;
    size_t n = 0;
    for (int k = i; k < iovcnt && n < *len; k++, skip = 0) {
        size_t take = iov[k].iov_len - skip;
        if (take > *len - n)
            take = *len - n;
        memcpy(stage + n, (const char *)iov[k].iov_base + skip, take);
        n += take;
    }
    return stage;
}

/* Whether a retry offers what the pending write held (see tls_conn). */
static bool retry_matches(struct tls_conn *tc, const void *p, size_t len)
{
    size_t n = tc->pending_len < sizeof tc->pending_head ? tc->pending_len : sizeof tc->pending_head;
    return len >= tc->pending_len && memcmp(p, tc->pending_head, n) == 0;
}

static void remember_pending(struct tls_conn *tc, const void *p, size_t len)
{
    tc->pending_len = len;
    memcpy(tc->pending_head, p, len < sizeof tc->pending_head ? len : sizeof tc->pending_head);
}

static ssize_t tls_send(struct transport *t, const struct iovec *iov, int iovcnt)
{
    /* Workers are single-threaded: one staging buffer per process; OpenSSL
     * has the bytes encrypted before SSL_write returns. */
    static unsigned char stage[RECORD_MAX];
    struct tls_conn *tc = conn_of(t);
    if (flush_shutdown(t) < 0 || transport_tls_handshake(t) <= 0)
        return -1;
    size_t total = 0, len;
    const void *p;
    while (!tc->failed && (p = next_chunk(iov, iovcnt, total, stage, &len)) != NULL) {
        if (tc->pending_len && !retry_matches(tc, p, len)) {
            tc->failed = true;
            break;
        }
        ERR_clear_error();
        int n = SSL_write(tc->ssl, p, (int)len);
        int sys_errno = errno;
        if (n > 0) {
            total += (size_t)n;
            tc->write_want = EPOLLOUT;
            tc->pending_len = 0;
            continue;
        }
        ssize_t rc = io_error(tc, n, sys_errno, &tc->write_want);
        if (rc < 0 && errno == EAGAIN)
            remember_pending(tc, p, len);
        if (total)
            return (ssize_t)total; /* the error shows again on the next call */
        if (rc == 0)
            errno = EPIPE; /* no write after the end (cannot happen: SSL_write has no EOF) */
        return -1;
    }
    if (total)
        return (ssize_t)total;
    if (tc->failed) {
        errno = EPROTO;
        return -1;
    }
    return 0; /* nothing was offered */
}

static int tls_shutdown(struct transport *t)
{
    struct tls_conn *tc = conn_of(t);
    if (!tc->handshake_done || tc->failed)
        return shutdown(t->fd, SHUT_WR);
    tc->shutdown_pending = true;
    return flush_shutdown(t);
}

static void tls_close(struct transport *t, bool abort)
{
    struct tls_conn *tc = conn_of(t);
    /* SSL_free() takes a session whose connection did not send (or mark)
     * close_notify out of the session cache (OpenSSL's "bad session"):
     * that is what an aborted or failed connection should get, but an
     * orderly close must keep the session resumable on every worker. */
    if (abort) {
        struct linger lg = {.l_onoff = 1, .l_linger = 0};
        setsockopt(t->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    } else if (tc->handshake_done && !tc->failed && !(SSL_get_shutdown(tc->ssl) & SSL_SENT_SHUTDOWN)) {
        /* An orderly close tells the client with close_notify, best effort:
         * a full socket just does without, and the flag keeps the session. */
        ERR_clear_error();
        SSL_shutdown(tc->ssl);
        ERR_clear_error();
        SSL_set_shutdown(tc->ssl, SSL_get_shutdown(tc->ssl) | SSL_SENT_SHUTDOWN);
    }
    SSL_free(tc->ssl);
    free(tc->client_subject);
    free(tc);
    close(t->fd);
    t->fd = -1;
    t->ctx = NULL;
}

/* Decrypted bytes not read yet, or a record already in OpenSSL's buffer:
 * epoll will not report them. */
static bool holds_bytes(const struct tls_conn *tc)
{
    return tc->handshake_done && (SSL_pending(tc->ssl) > 0 || SSL_has_pending(tc->ssl));
}

static uint32_t tls_wanted_events(const struct transport *t, uint32_t want)
{
    struct tls_conn *tc = conn_of(t);
    tc->caller_want = want;
    uint32_t ev = tc->shutdown_pending ? EPOLLOUT : 0;
    if (!want || tc->failed)
        return ev | want;
    if (!tc->handshake_done)
        return ev | (tc->hs_want ? tc->hs_want : EPOLLIN);
    if (want & EPOLLIN) {
        ev |= tc->read_want ? tc->read_want : EPOLLIN;
        /* Bytes held here would never wake a level-triggered loop: ask for
         * writability too, which a healthy socket has at once, and report
         * it as readable (tls_ready_events). */
        if (holds_bytes(tc))
            ev |= EPOLLOUT;
    }
    if (want & EPOLLOUT)
        ev |= tc->write_want ? tc->write_want : EPOLLOUT;
    return ev;
}

static uint32_t tls_ready_events(const struct transport *t, uint32_t ev)
{
    const struct tls_conn *tc = conn_of(t);
    uint32_t out = ev & (EPOLLERR | EPOLLHUP);
    uint32_t sock = ev & (EPOLLIN | EPOLLOUT);
    if (!tc->handshake_done) {
        /* Whatever the caller waits for goes through the handshake first. */
        if (sock)
            out |= tc->caller_want ? tc->caller_want : EPOLLIN;
        return out;
    }
    uint32_t rw = tc->read_want ? tc->read_want : EPOLLIN;
    uint32_t ww = tc->write_want ? tc->write_want : EPOLLOUT;
    if ((sock & rw) || holds_bytes(tc) || (tc->shutdown_pending && (sock & EPOLLOUT)))
        out |= EPOLLIN;
    if (sock & ww)
        out |= EPOLLOUT;
    return out;
}

const struct transport_ops transport_tls_ops = {
    .name = "tls",
    .recv = tls_recv,
    .send = tls_send,
    .shutdown = tls_shutdown,
    .close = tls_close,
    .wanted_events = tls_wanted_events,
    .ready_events = tls_ready_events,
    .can_splice = false,
};

/* ------------------------------------------------------------------------
 * Setting up
 */

int transport_tls_attach(struct transport *t, int fd, SSL *ssl, struct tls_server *srv)
{
    struct tls_conn *tc = calloc(1, sizeof *tc);
    BIO *bio = tc ? socket_bio(fd) : NULL;
    if (!bio) {
        free(tc);
        return -1;
    }
    SSL_set_bio(ssl, bio, bio);
    tc->ssl = ssl;
    tc->srv = srv;
    /* A client speaks first; a server waits for the ClientHello. */
    tc->hs_want = SSL_is_server(ssl) ? EPOLLIN : EPOLLOUT;
    t->ops = &transport_tls_ops;
    t->fd = fd;
    t->ctx = tc;
    return 0;
}

int transport_tls_server(struct transport *t, int fd, struct tls_server *srv)
{
    SSL *ssl = SSL_new(srv->ctx[0]);
    if (!ssl)
        return -1;
    SSL_set_accept_state(ssl);
    if (transport_tls_attach(t, fd, ssl, srv) < 0) {
        SSL_free(ssl);
        ERR_clear_error();
        return -1;
    }
    return 0;
}

const char *transport_tls_handshake_error(const struct transport *t)
{
    if (!transport_is_tls(t) || !t->ctx || conn_of(t)->handshake_done || !conn_of(t)->failed)
        return NULL;
    return conn_of(t)->fail_detail ? conn_of(t)->fail_detail : "protocol error";
}

bool transport_tls_alpn_is_h2(const struct transport *t)
{
    if (!established(t))
        return false;
    const unsigned char *p;
    unsigned int len;
    SSL_get0_alpn_selected(conn_of(t)->ssl, &p, &len);
    return len == 2 && memcmp(p, "h2", 2) == 0;
}

/* The subject of the client's certificate in RFC 2253 form
 * ("CN=alice,O=Example"), or NULL when it sent none. Only a verified one
 * gets here: client_certificates fails the handshake on any other, and
 * without client_certificates the server never asks for one. Non-ASCII
 * and control bytes come out escaped (\XX), so the string is safe in a
 * header and a log line. */
static const char *client_subject(struct tls_conn *tc)
{
    if (tc->client_subject)
        return tc->client_subject;
    X509 *peer = SSL_get0_peer_certificate(tc->ssl);
    if (!peer || SSL_get_verify_result(tc->ssl) != X509_V_OK)
        return NULL;
    BIO *b = BIO_new(BIO_s_mem());
    char *data;
    long len;
    if (b && X509_NAME_print_ex(b, X509_get_subject_name(peer), 0, XN_FLAG_RFC2253) >= 0 &&
        (len = BIO_get_mem_data(b, &data)) >= 0 && (tc->client_subject = malloc((size_t)len + 1)) != NULL) {
        memcpy(tc->client_subject, data, (size_t)len);
        tc->client_subject[len] = '\0';
        for (long i = 0; i < len; i++)
            if ((unsigned char)data[i] < 0x20 || (unsigned char)data[i] >= 0x7f)
                tc->client_subject[i] = '?'; /* never: the RFC 2253 flags escape them; a header must not carry them */
    }
    BIO_free(b);
    ERR_clear_error();
    return tc->client_subject;
}

bool transport_tls_info(const struct transport *t, struct tls_info *out)
{
    if (!established(t))
        return false;
    SSL *ssl = conn_of(t)->ssl;
    /* The access log wants a string, and the selected protocol is one of
     * the configured ones: point at that one, NUL-terminated. */
    const unsigned char *p;
    unsigned int len;
    SSL_get0_alpn_selected(ssl, &p, &len);
    const char *alpn = NULL;
    const struct tls_server *srv = conn_of(t)->srv;
    for (size_t i = 0; srv && len && i < srv->cfg->n_alpn && !alpn; i++)
        if (strlen(srv->cfg->alpn[i]) == len && memcmp(srv->cfg->alpn[i], p, len) == 0)
            alpn = srv->cfg->alpn[i];
    *out = (struct tls_info){
        .version = SSL_get_version(ssl),
        .cipher = SSL_get_cipher_name(ssl),
        .sni = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name),
        .alpn = alpn,
        .resumed = conn_of(t)->resumed,
        .client_subject = client_subject(conn_of(t)),
    };
    return true;
}
