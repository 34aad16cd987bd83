/* A TLS load generator for bench/tls.sh: handshakes, resumption, HTTPS
 * keep-alive and a latency probe, with OpenSSL, one thread, epoll.
 *
 *   tls_load MODE [options] HOST:PORT
 *
 * Modes:
 *   full       every connection is a new TCP connection with a full
 *              handshake (the client never offers a session), then
 *              close_notify and close; -r adds one small HTTP request
 *   resume     one priming connection (full handshake plus a request, so a
 *              TLS 1.3 ticket arrives) saves the session; every timed
 *              connection then offers that session. Whether the server
 *              really resumed is read from SSL_session_reused() and
 *              counted: "resumed" against "handshakes"
 *   keepalive  -c persistent connections, each sends HTTP/1.1 requests back
 *              to back (one in flight per connection)
 *   probe      -c persistent connections (a few), each sends one request,
 *              waits for the answer, pauses -i ms, again: the latency of
 *              light traffic, run while another tls_load floods the server
 *
 * Options:
 *   -c N        connections (default 16)
 *   -d SECONDS  duration of the timed part (default 5; fractions allowed)
 *   -t VERSION  1.2 or 1.3 (default: both offered, 1.3 preferred)
 *   -s SIGALGS  signature algorithms offered (SSL_CTX_set1_sigalgs_list):
 *               how the client makes a server with an ECDSA and an RSA
 *               certificate pick one, e.g. ecdsa_secp256r1_sha256 or
 *               rsa_pss_rsae_sha256:rsa_pkcs1_sha256
 *   -C CIPHERS  TLS 1.2 cipher list    -X SUITES  TLS 1.3 cipher suites
 *   -g GROUPS   key exchange groups (default OpenSSL's: X25519 first)
 *   -S NAME     SNI and Host header (default: none, Host is HOST)
 *   -a ALPN     comma-separated ALPN list, "none" for no ALPN
 *               (default http/1.1)
 *   -p PATH     request path (default /)
 *   -r          full and resume modes: one request per connection
 *   -T id       resume mode, TLS 1.2: resume by session ID (the server's
 *               session cache) instead of a ticket
 *   -i MS       probe mode: pause between a response and the next request
 *               (default 10)
 *   -l LABEL    copied into the output line
 *
 * Output: one JSON object on one line on stdout: counts, rates, latency
 * percentiles in microseconds, and what was negotiated on the first timed
 * handshake (version, cipher, server key type and size, signature). Exit
 * status 0 when at least one handshake (and, where the mode makes
 * requests, one request) completed in the timed part, 1 when nothing did,
 * 2 on a usage error or when resume mode's priming connection fails.
 *
 * The certificate is not verified (a callback replaces OpenSSL's chain
 * check): a benchmark measures the server, and the check would only add
 * client CPU. Responses are read with the proxy's HTTP/1 parser
 * (src/lib/http1.c, fuzzed there).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "lib/http1.h"

#define RESP_MAX 16384
#define MAX_EVENTS 256

enum mode { MODE_FULL, MODE_RESUME, MODE_KEEPALIVE, MODE_PROBE };
static const char *const mode_names[] = {"full", "resume", "keepalive", "probe"};

struct opts {
    enum mode mode;
    char target[300];
    struct sockaddr_storage addr;
    socklen_t addrlen;
    int conns;
    double duration_s;
    int tls_version; /* 0: 1.2 and 1.3; else TLS1_2_VERSION or TLS1_3_VERSION */
    const char *sigalgs, *ciphers, *suites, *groups, *sni, *alpn, *path, *label;
    bool request_per_conn;
    bool session_ids;
    double interval_ms;
};

enum conn_state { ST_CONNECTING, ST_HANDSHAKE, ST_SEND, ST_RECV, ST_PAUSE };

struct conn {
    int fd;
    SSL *ssl;
    bool tls_attached; /* ssl belongs to the current socket */
    enum conn_state state;
    uint32_t events; /* current epoll interest */
    uint64_t t_conn; /* when the TCP connect started */
    uint64_t t_req;  /* when the current request started */
    uint64_t due;    /* probe: when the next request goes out */
    int connect_errno; /* connect() failed at once: the next event retries */
    size_t sent;
    size_t len;
    char buf[RESP_MAX];
};

/* A growing array of latencies in nanoseconds. */
struct samples {
    uint64_t *v;
    size_t n, cap;
};

struct stats {
    uint64_t handshakes, resumed, requests, non_2xx, server_closed;
    uint64_t err_connect, err_tls, err_http;
    struct samples hs_ns, req_ns;
    bool have_info;
    char version[16], cipher[64], peer_key[32], peer_sig[48], alpn[32];
    char first_error[200];
};

static struct opts O;
static struct stats S;
static SSL_CTX *ctx;
static SSL_SESSION *saved_session;
static int epfd;
static char request[1024];
static size_t request_len;
static uint64_t t_end;
static unsigned char alpn_wire[256];
static unsigned alpn_wire_len;

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void die(const char *fmt, const char *arg)
{
    fprintf(stderr, "tls_load: ");
    fprintf(stderr, fmt, arg);
    fputc('\n', stderr);
    exit(2);
}

static void samples_add(struct samples *s, uint64_t ns)
{
    if (s->n == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 4096;
        s->v = realloc(s->v, s->cap * sizeof *s->v);
        if (!s->v)
            die("%s", "out of memory");
    }
    s->v[s->n++] = ns;
}

/* The first error of a kind is kept so that a run that fails says why. */
static void note_error(uint64_t *counter, const char *what)
{
    (*counter)++;
    if (S.first_error[0])
        return;
    unsigned long e = ERR_peek_error();
    if (e) {
        char ssl_err[160];
        ERR_error_string_n(e, ssl_err, sizeof ssl_err);
        snprintf(S.first_error, sizeof S.first_error, "%s: %s", what, ssl_err);
    } else {
        snprintf(S.first_error, sizeof S.first_error, "%s", what);
    }
}

/* ---------------------------------------------------------------- HTTP --- */

/* Is the response in buf complete? 1 yes (its status and whether the server
 * closes the connection are set), 0 not yet, -1 malformed, not framed by
 * Content-Length or chunked encoding, or followed by extra bytes. The
 * proxy's own strict parser (src/lib/http1.c) reads it. A tool for small
 * responses: the whole response must fit in the buffer. */
static int response_complete(const char *buf, size_t len, int *status, bool *closes)
{
    struct http1_message msg;
    enum http1_result r = http1_parse_response(buf, len, NULL, HTTP1_M_GET, &msg);
    if (r == HTTP1_INCOMPLETE)
        return len >= RESP_MAX ? -1 : 0;
    if (r == HTTP1_ERROR)
        return -1;
    *status = msg.status;
    *closes = !msg.keep_alive;
    const char *body = buf + msg.head_len;
    size_t have = len - msg.head_len;
    switch (msg.body) {
    case HTTP1_BODY_NONE:
        return have == 0 ? 1 : -1;
    case HTTP1_BODY_LENGTH:
        if (msg.content_length > RESP_MAX - msg.head_len)
            return -1;
        return have < msg.content_length ? 0 : (have == msg.content_length ? 1 : -1);
    case HTTP1_BODY_CHUNKED: {
        struct http1_chunked chunked;
        http1_chunked_init(&chunked);
        ssize_t used = http1_chunked_feed(&chunked, body, have);
        if (used < 0)
            return -1;
        if (!chunked.done)
            return len >= RESP_MAX ? -1 : 0;
        return (size_t)used == have ? 1 : -1;
    }
    case HTTP1_BODY_UNTIL_CLOSE:
        break;
    }
    return -1;
}

/* ----------------------------------------------------------------- TLS --- */

static void build_alpn(void)
{
    if (!O.alpn || strcmp(O.alpn, "none") == 0)
        return;
    char copy[200];
    snprintf(copy, sizeof copy, "%s", O.alpn);
    for (char *save = NULL, *p = strtok_r(copy, ",", &save); p; p = strtok_r(NULL, ",", &save)) {
        size_t n = strlen(p);
        if (n == 0 || n > 255 || alpn_wire_len + 1 + n > sizeof alpn_wire)
            die("bad ALPN list '%s'", O.alpn);
        alpn_wire[alpn_wire_len++] = (unsigned char)n;
        memcpy(alpn_wire + alpn_wire_len, p, n);
        alpn_wire_len += (unsigned)n;
    }
}

/* Replaces OpenSSL's chain verification, which runs (and its result is
 * ignored) even with SSL_VERIFY_NONE: client CPU the server does not need. */
static int accept_any_chain(X509_STORE_CTX *store, void *arg)
{
    (void)store;
    (void)arg;
    return 1;
}

static void setup_ctx(void)
{
    ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx)
        die("%s", "SSL_CTX_new failed");
    int min = O.tls_version ? O.tls_version : TLS1_2_VERSION;
    int max = O.tls_version ? O.tls_version : TLS1_3_VERSION;
    SSL_CTX_set_min_proto_version(ctx, min);
    SSL_CTX_set_max_proto_version(ctx, max);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    SSL_CTX_set_cert_verify_callback(ctx, accept_any_chain, NULL);
    /* The client keeps sessions itself (saved_session); OpenSSL's client
     * cache stays off so that "full" never resumes by accident. */
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    if (O.session_ids)
        SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
    if (O.sigalgs && !SSL_CTX_set1_sigalgs_list(ctx, O.sigalgs))
        die("signature algorithms '%s' not understood", O.sigalgs);
    if (O.ciphers && !SSL_CTX_set_cipher_list(ctx, O.ciphers))
        die("cipher list '%s' not understood", O.ciphers);
    if (O.suites && !SSL_CTX_set_ciphersuites(ctx, O.suites))
        die("TLS 1.3 cipher suites '%s' not understood", O.suites);
    if (O.groups && !SSL_CTX_set1_groups_list(ctx, O.groups))
        die("groups '%s' not understood", O.groups);
    build_alpn();
    if (alpn_wire_len && SSL_CTX_set_alpn_protos(ctx, alpn_wire, alpn_wire_len) != 0)
        die("%s", "SSL_CTX_set_alpn_protos failed");
}

/* The client's SSL object for a new socket. A connection slot keeps its
 * SSL object and resets it with SSL_clear(): OpenSSL 3's SSL_new() costs
 * client CPU, and on two cores the client's CPU is what limits a full
 * handshake flood. */
static SSL *attach_ssl(SSL *ssl, int fd)
{
    if (!ssl)
        ssl = SSL_new(ctx);
    else if (!SSL_clear(ssl))
        die("%s", "SSL_clear failed");
    if (!ssl)
        die("%s", "SSL_new failed");
    /* SSL_clear() keeps the last session, and a client offers the session
     * it holds: a full handshake must hold none. */
    if (!SSL_set_session(ssl, O.mode == MODE_RESUME ? saved_session : NULL) || !SSL_set_fd(ssl, fd))
        die("%s", "SSL_set_session or SSL_set_fd failed");
    if (O.sni)
        SSL_set_tlsext_host_name(ssl, O.sni);
    return ssl;
}

/* What the first timed handshake negotiated: the output says which
 * certificate (key type and size) the server chose and with what. */
static void record_info(SSL *ssl)
{
    if (S.have_info)
        return;
    S.have_info = true;
    snprintf(S.version, sizeof S.version, "%s", SSL_get_version(ssl));
    snprintf(S.cipher, sizeof S.cipher, "%s", SSL_get_cipher_name(ssl));
    X509 *cert = SSL_get0_peer_certificate(ssl);
    EVP_PKEY *key = cert ? X509_get0_pubkey(cert) : NULL;
    if (key) {
        int id = EVP_PKEY_get_base_id(key);
        snprintf(S.peer_key, sizeof S.peer_key, "%s-%d",
                 id == EVP_PKEY_EC ? "EC" : id == EVP_PKEY_RSA ? "RSA" : OBJ_nid2sn(id),
                 EVP_PKEY_get_bits(key));
    }
    int nid = NID_undef;
    if (SSL_get_peer_signature_type_nid(ssl, &nid) && nid != NID_undef) {
        int hash = NID_undef;
        SSL_get_peer_signature_nid(ssl, &hash);
        snprintf(S.peer_sig, sizeof S.peer_sig, "%s+%s", OBJ_nid2sn(nid),
                 hash != NID_undef ? OBJ_nid2sn(hash) : "?");
    } else {
        snprintf(S.peer_sig, sizeof S.peer_sig, "none");
    }
    const unsigned char *proto = NULL;
    unsigned proto_len = 0;
    SSL_get0_alpn_selected(ssl, &proto, &proto_len);
    snprintf(S.alpn, sizeof S.alpn, "%.*s", (int)proto_len, proto ? (const char *)proto : "");
}

/* --------------------------------------------------------- connections --- */

static bool makes_requests(void)
{
    return O.mode == MODE_KEEPALIVE || O.mode == MODE_PROBE || O.request_per_conn;
}

static bool reconnects_each_time(void)
{
    return O.mode == MODE_FULL || O.mode == MODE_RESUME;
}

static void set_interest(struct conn *c, uint32_t events)
{
    if (c->events == events)
        return;
    struct epoll_event ev = {.events = events, .data.ptr = c};
    if (epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev) != 0)
        die("epoll_ctl: %s", strerror(errno));
    c->events = events;
}

static void conn_close(struct conn *c)
{
    if (c->ssl && c->tls_attached) {
        /* One close_notify, no wait for the server's: as a browser does. */
        if (SSL_is_init_finished(c->ssl))
            SSL_shutdown(c->ssl);
        c->tls_attached = false; /* the object stays for the next socket */
    }
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    ERR_clear_error();
}

static void conn_open(struct conn *c)
{
    c->fd = socket(O.addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0)
        die("socket: %s", strerror(errno));
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    c->t_conn = now_ns();
    c->len = c->sent = 0;
    c->state = ST_CONNECTING;
    c->events = EPOLLOUT;
    struct epoll_event ev = {.events = EPOLLOUT, .data.ptr = c};
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, c->fd, &ev) != 0)
        die("epoll_ctl: %s", strerror(errno));
    c->connect_errno = 0;
    if (connect(c->fd, (struct sockaddr *)&O.addr, O.addrlen) != 0 && errno != EINPROGRESS)
        c->connect_errno = errno;
}

/* Close and, while the run lasts, open a new connection in the same slot. */
static void conn_restart(struct conn *c)
{
    conn_close(c);
    if (now_ns() < t_end)
        conn_open(c);
}

static void start_request(struct conn *c)
{
    c->state = ST_SEND;
    c->sent = 0;
    c->len = 0;
    c->t_req = now_ns();
}

/* The step functions below run one step of a connection's state machine
 * and return true when the connection can go on at once, false when it
 * waits for epoll (interest set) or was closed and reopened (the new
 * socket reports through epoll). */

/* The TLS handshake is done: count it, then a request or the close. */
static bool handshake_done(struct conn *c)
{
    uint64_t t = now_ns();
    S.handshakes++;
    if (SSL_session_reused(c->ssl))
        S.resumed++;
    samples_add(&S.hs_ns, t - c->t_conn);
    record_info(c->ssl);
    if (!makes_requests()) {
        conn_restart(c);
        return false;
    }
    start_request(c);
    return true;
}

static bool response_done(struct conn *c, int status, bool closes)
{
    uint64_t t = now_ns();
    S.requests++;
    samples_add(&S.req_ns, t - c->t_req);
    if (status < 200 || status > 299)
        S.non_2xx++;
    if (closes && !reconnects_each_time())
        S.server_closed++;
    if (closes || reconnects_each_time()) {
        conn_restart(c);
        return false;
    }
    if (O.mode == MODE_PROBE) {
        c->state = ST_PAUSE;
        c->due = t + (uint64_t)(O.interval_ms * 1e6);
        set_interest(c, EPOLLIN); /* a close from the server is seen */
        return false;
    }
    start_request(c);
    return true;
}

/* SSL_get_error() after a call that returned r <= 0: true when the call
 * only has to wait (epoll interest updated), false on a real error. */
static bool ssl_wait(struct conn *c, int r)
{
    switch (SSL_get_error(c->ssl, r)) {
    case SSL_ERROR_WANT_READ:
        set_interest(c, EPOLLIN);
        return true;
    case SSL_ERROR_WANT_WRITE:
        set_interest(c, EPOLLOUT);
        return true;
    default:
        return false;
    }
}

static bool step_connecting(struct conn *c, uint32_t events)
{
    /* An event left over from the socket this slot had before (same
     * epoll batch) must not be taken for the end of the connect. */
    if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
        return false;
    int err = c->connect_errno;
    socklen_t len = sizeof err;
    if (!err)
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err) {
        note_error(&S.err_connect, strerror(err));
        conn_restart(c);
        return false;
    }
    c->ssl = attach_ssl(c->ssl, c->fd);
    c->tls_attached = true;
    c->state = ST_HANDSHAKE;
    return true;
}

static bool step_handshake(struct conn *c)
{
    int r = SSL_connect(c->ssl);
    if (r == 1)
        return handshake_done(c);
    if (ssl_wait(c, r))
        return false;
    note_error(&S.err_tls, "handshake failed");
    conn_restart(c);
    return false;
}

static bool step_send(struct conn *c)
{
    int r = SSL_write(c->ssl, request + c->sent, (int)(request_len - c->sent));
    if (r > 0) {
        c->sent += (size_t)r;
        if (c->sent == request_len)
            c->state = ST_RECV;
        return true;
    }
    if (ssl_wait(c, r))
        return false;
    note_error(&S.err_http, "write failed");
    conn_restart(c);
    return false;
}

static bool step_recv(struct conn *c)
{
    int r = SSL_read(c->ssl, c->buf + c->len, (int)(sizeof c->buf - c->len));
    if (r > 0) {
        c->len += (size_t)r;
        int status = 0;
        bool closes = false;
        int done = response_complete(c->buf, c->len, &status, &closes);
        if (done > 0)
            return response_done(c, status, closes);
        if (done == 0)
            return true;
        note_error(&S.err_http, "malformed or unframed response");
        conn_restart(c);
        return false;
    }
    if (ssl_wait(c, r))
        return false;
    /* A keep-alive connection the server closed between requests
     * (nothing of the response yet) is counted apart from a response cut
     * short. */
    if (c->len == 0 && !reconnects_each_time() && SSL_get_error(c->ssl, r) == SSL_ERROR_ZERO_RETURN)
        S.server_closed++;
    else
        note_error(&S.err_http, "connection closed before the response ended");
    conn_restart(c);
    return false;
}

/* Probe connection waiting for its next turn: anything readable now is the
 * server closing it (or a late TLS 1.3 ticket, which SSL_read swallows). */
static bool step_pause(struct conn *c)
{
    char b[256];
    int r = SSL_read(c->ssl, b, sizeof b);
    if (r > 0) {
        note_error(&S.err_http, "data from the server between requests");
        conn_restart(c);
    } else if (!ssl_wait(c, r)) {
        S.server_closed++;
        conn_restart(c);
    }
    return false;
}

/* Run one connection's state machine until it has to wait. */
static void drive(struct conn *c, uint32_t events)
{
    bool more = true;
    while (more && c->fd >= 0) {
        switch (c->state) {
        case ST_CONNECTING: more = step_connecting(c, events); break;
        case ST_HANDSHAKE:  more = step_handshake(c); break;
        case ST_SEND:       more = step_send(c); break;
        case ST_RECV:       more = step_recv(c); break;
        case ST_PAUSE:      more = step_pause(c); break;
        }
    }
}

/* ------------------------------------------------------------- priming --- */

/* Resume mode: one blocking connection with a request, so that a TLS 1.3
 * server's NewSessionTicket has arrived, then keep its session. */
static void prime_session(void)
{
    int fd = socket(O.addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct timeval tv = {.tv_sec = 5};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    if (connect(fd, (struct sockaddr *)&O.addr, O.addrlen) != 0)
        die("priming connection: connect: %s", strerror(errno));
    SSL *ssl = attach_ssl(NULL, fd);
    if (SSL_connect(ssl) != 1) {
        ERR_print_errors_fp(stderr);
        die("%s", "priming connection: handshake failed");
    }
    if (SSL_write(ssl, request, (int)request_len) != (int)request_len)
        die("%s", "priming connection: write failed");
    char buf[RESP_MAX];
    size_t len = 0;
    int status = 0, done = 0;
    bool closes;
    while (done == 0) {
        int r = SSL_read(ssl, buf + len, (int)(sizeof buf - len));
        if (r <= 0)
            die("%s", "priming connection: no complete response");
        len += (size_t)r;
        done = response_complete(buf, len, &status, &closes);
    }
    if (done < 0)
        die("%s", "priming connection: malformed response");
    saved_session = SSL_get1_session(ssl);
    if (!saved_session || !SSL_SESSION_is_resumable(saved_session))
        die("%s", "priming connection: the server gave no resumable session (no ticket, no session ID)");
    SSL_shutdown(ssl);
    SSL_free(ssl);
    close(fd);
}

/* -------------------------------------------------------------- output --- */

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static double percentile_us(const struct samples *s, double p)
{
    if (s->n == 0)
        return 0;
    size_t i = (size_t)(p * (double)(s->n - 1) + 0.5);
    return (double)s->v[i] / 1000.0;
}

static void print_latency(const char *name, struct samples *s)
{
    qsort(s->v, s->n, sizeof *s->v, cmp_u64);
    printf(",\"%s\":{\"n\":%zu,\"p50\":%.1f,\"p90\":%.1f,\"p99\":%.1f,\"p999\":%.1f,\"max\":%.1f}", name,
           s->n, percentile_us(s, 0.5), percentile_us(s, 0.9), percentile_us(s, 0.99),
           percentile_us(s, 0.999), s->n ? (double)s->v[s->n - 1] / 1000.0 : 0.0);
}

/* A JSON string from text we made or the user gave: escape what JSON needs. */
static void print_str(const char *key, const char *v)
{
    printf(",\"%s\":\"", key);
    for (const char *p = v ? v : ""; *p; p++) {
        if (*p == '"' || *p == '\\')
            printf("\\%c", *p);
        else if ((unsigned char)*p < 0x20)
            printf("\\u%04x", *p);
        else
            putchar(*p);
    }
    putchar('"');
}

static void print_result(double elapsed_s)
{
    printf("{\"mode\":\"%s\"", mode_names[O.mode]);
    print_str("label", O.label);
    print_str("target", O.target);
    printf(",\"connections\":%d,\"duration_s\":%.3f", O.conns, elapsed_s);
    printf(",\"handshakes\":%llu,\"resumed\":%llu,\"handshakes_per_s\":%.1f",
           (unsigned long long)S.handshakes, (unsigned long long)S.resumed,
           (double)S.handshakes / elapsed_s);
    printf(",\"requests\":%llu,\"requests_per_s\":%.1f,\"non_2xx\":%llu,\"server_closed\":%llu",
           (unsigned long long)S.requests, (double)S.requests / elapsed_s,
           (unsigned long long)S.non_2xx, (unsigned long long)S.server_closed);
    printf(",\"errors\":{\"connect\":%llu,\"tls\":%llu,\"http\":%llu}", (unsigned long long)S.err_connect,
           (unsigned long long)S.err_tls, (unsigned long long)S.err_http);
    print_str("first_error", S.first_error);
    print_str("version", S.version);
    print_str("cipher", S.cipher);
    print_str("server_key", S.peer_key);
    print_str("signature", S.peer_sig);
    print_str("alpn", S.alpn);
    print_latency("handshake_us", &S.hs_ns);
    print_latency("request_us", &S.req_ns);
    printf("}\n");
    fflush(stdout);
}

/* ----------------------------------------------------------------- main --- */

static void usage(void)
{
    fprintf(stderr,
            "usage: tls_load full|resume|keepalive|probe [-c N] [-d SECONDS] [-t 1.2|1.3] [-s SIGALGS]\n"
            "                [-C CIPHERS] [-X SUITES] [-g GROUPS] [-S SNI] [-a ALPN|none] [-p PATH]\n"
            "                [-r] [-T id] [-i MS] [-l LABEL] HOST:PORT\n"
            "(the comment at the top of bench/tls_load.c explains each)\n");
    exit(2);
}

static void parse_target(const char *arg)
{
    snprintf(O.target, sizeof O.target, "%s", arg);
    char *colon = strrchr(O.target, ':');
    if (!colon || colon == O.target)
        die("target '%s' is not HOST:PORT", arg);
    char host[256];
    snprintf(host, sizeof host, "%.*s", (int)(colon - O.target), O.target);
    if (host[0] == '[' && host[strlen(host) - 1] == ']') { /* [::1]:443 */
        memmove(host, host + 1, strlen(host));
        host[strlen(host) - 1] = '\0';
    }
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res;
    if (getaddrinfo(host, colon + 1, &hints, &res) != 0)
        die("cannot resolve '%s'", arg);
    memcpy(&O.addr, res->ai_addr, res->ai_addrlen);
    O.addrlen = res->ai_addrlen;
    freeaddrinfo(res);
}

static void parse_args(int argc, char **argv)
{
    if (argc < 2)
        usage();
    const char *m = argv[1];
    if (strcmp(m, "full") == 0)
        O.mode = MODE_FULL;
    else if (strcmp(m, "resume") == 0)
        O.mode = MODE_RESUME;
    else if (strcmp(m, "keepalive") == 0)
        O.mode = MODE_KEEPALIVE;
    else if (strcmp(m, "probe") == 0)
        O.mode = MODE_PROBE;
    else
        usage();
    O.conns = 16;
    O.duration_s = 5;
    O.alpn = "http/1.1";
    O.path = "/";
    O.label = "";
    O.interval_ms = 10;
    int opt;
    optind = 2;
    while ((opt = getopt(argc, argv, "c:d:t:s:C:X:g:S:a:p:rT:i:l:")) != -1) {
        switch (opt) {
        case 'c': O.conns = atoi(optarg); break;
        case 'd': O.duration_s = atof(optarg); break;
        case 't':
            if (strcmp(optarg, "1.2") == 0)
                O.tls_version = TLS1_2_VERSION;
            else if (strcmp(optarg, "1.3") == 0)
                O.tls_version = TLS1_3_VERSION;
            else
                die("-t takes 1.2 or 1.3, not '%s'", optarg);
            break;
        case 's': O.sigalgs = optarg; break;
        case 'C': O.ciphers = optarg; break;
        case 'X': O.suites = optarg; break;
        case 'g': O.groups = optarg; break;
        case 'S': O.sni = optarg; break;
        case 'a': O.alpn = optarg; break;
        case 'p': O.path = optarg; break;
        case 'r': O.request_per_conn = true; break;
        case 'T':
            if (strcmp(optarg, "id") != 0)
                die("-T takes 'id' (resume by session ID), not '%s'", optarg);
            O.session_ids = true;
            break;
        case 'i': O.interval_ms = atof(optarg); break;
        case 'l': O.label = optarg; break;
        default: usage();
        }
    }
    if (optind != argc - 1)
        usage();
    parse_target(argv[optind]);
    if (O.conns < 1 || O.conns > 10000)
        die("%s", "-c must be 1..10000");
    if (!(O.duration_s > 0 && O.duration_s <= 3600))
        die("%s", "-d must be more than 0 and at most 3600 seconds");
    if (O.interval_ms < 0)
        die("%s", "-i must not be negative");
    if (O.session_ids && (O.mode != MODE_RESUME || O.tls_version != TLS1_2_VERSION))
        die("%s", "-T id is for resume mode with -t 1.2 (TLS 1.3 resumes by ticket only)");
}

int main(int argc, char **argv)
{
    parse_args(argc, argv);
    signal(SIGPIPE, SIG_IGN);
    setup_ctx();
    char host[300];
    snprintf(host, sizeof host, "%s", O.target);
    *strrchr(host, ':') = '\0';
    int n = snprintf(request, sizeof request, "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: tls_load\r\n\r\n",
                     O.path, O.sni ? O.sni : host);
    if (n < 0 || (size_t)n >= sizeof request)
        die("%s", "request path too long");
    request_len = (size_t)n;

    if (O.mode == MODE_RESUME)
        prime_session();

    epfd = epoll_create1(EPOLL_CLOEXEC);
    struct conn *conns = calloc((size_t)O.conns, sizeof *conns);
    if (!conns)
        die("%s", "out of memory");
    uint64_t t_start = now_ns();
    t_end = t_start + (uint64_t)(O.duration_s * 1e9);
    for (int i = 0; i < O.conns; i++)
        conn_open(&conns[i]);

    struct epoll_event evs[MAX_EVENTS];
    for (;;) {
        uint64_t t = now_ns();
        if (t >= t_end)
            break;
        uint64_t wake = t_end;
        if (O.mode == MODE_PROBE) {
            for (int i = 0; i < O.conns; i++) {
                struct conn *c = &conns[i];
                if (c->fd >= 0 && c->state == ST_PAUSE) {
                    if (c->due <= t) {
                        start_request(c);
                        drive(c, 0);
                    } else if (c->due < wake) {
                        wake = c->due;
                    }
                }
            }
            t = now_ns();
        }
        int timeout_ms = wake > t ? (int)((wake - t + 999999) / 1000000) : 0;
        int k = epoll_wait(epfd, evs, MAX_EVENTS, timeout_ms);
        if (k < 0 && errno != EINTR)
            die("epoll_wait: %s", strerror(errno));
        for (int i = 0; i < k; i++)
            drive(evs[i].data.ptr, evs[i].events);
    }
    double elapsed = (double)(now_ns() - t_start) / 1e9;
    for (int i = 0; i < O.conns; i++) {
        conn_close(&conns[i]);
        SSL_free(conns[i].ssl);
    }
    print_result(elapsed);

    bool ok = S.handshakes > 0 && (!makes_requests() || S.requests > 0);
    if (!ok)
        fprintf(stderr, "tls_load: nothing completed against %s%s%s\n", O.target,
                S.first_error[0] ? "; first error: " : "", S.first_error);
    return ok ? 0 : 1;
}
