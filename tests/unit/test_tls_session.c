/* TLS session reuse (proxy/tls_session.h): real handshakes in memory (BIO
 * pairs) and across fork() (socketpairs), between one client SSL_CTX and
 * server SSL_CTXs attached to session stores, as the proxy's TLS listeners
 * attach theirs. A forked child plays another worker: it inherits the
 * stores' shared mappings from its parent, the master.
 *
 * Covered: TLS 1.3 and 1.2 tickets resuming on another context and in
 * another process; TLS 1.2 session IDs (and TLS 1.3 stateful tickets)
 * through the shared cache; two stores reading one key file (two nodes);
 * rotation with renewal and ageing out; the key file watched, a broken one
 * refused; reconfigure (a reload) keeping keys; cache eviction and expiry;
 * the sessions: config block and its errors; the metrics text. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "core/config.h"
#include "core/config_walk.h"
#include "core/metrics.h"
#include "core/yaml_tree.h"
#include "lib/strbuf.h"
#include "proxy/tls_session.h"
#include "proxy/tls_session_cache.h"

/* ------------------------------------------------------------------------
 * certificates, contexts, handshakes
 */

static EVP_PKEY *server_key;
static X509 *server_cert;
static char tmp_dir[64];

/* A throwaway self-signed P-256 certificate: the client does not verify
 * it, resumption is what is tested. */
static void make_cert(void)
{
    server_key = EVP_EC_gen("P-256");
    assert_non_null(server_key);
    server_cert = X509_new();
    assert_non_null(server_cert);
    ASN1_INTEGER_set(X509_get_serialNumber(server_cert), 1);
    X509_gmtime_adj(X509_getm_notBefore(server_cert), -60);
    X509_gmtime_adj(X509_getm_notAfter(server_cert), 3600);
    X509_NAME *name = X509_get_subject_name(server_cert);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"sluice.test", -1, -1, 0);
    X509_set_issuer_name(server_cert, name);
    X509_set_pubkey(server_cert, server_key);
    assert_true(X509_sign(server_cert, server_key, EVP_sha256()) > 0);
}

static int setup(void **state)
{
    (void)state;
    /* A peer may close first (as the daemons do, writes to a closed
     * socket are errors, not signals). */
    signal(SIGPIPE, SIG_IGN);
    make_cert();
    strcpy(tmp_dir, "/tmp/sluice-tlssess-XXXXXX");
    assert_non_null(mkdtemp(tmp_dir));
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    X509_free(server_cert);
    EVP_PKEY_free(server_key);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp_dir);
    assert_int_equal(system(cmd), 0);
    return 0;
}

static struct cfg_tls_sessions conf(bool tickets, const char *key_file, uint32_t cache_size)
{
    struct cfg_tls_sessions c;
    tls_sessions_defaults(&c);
    c.tickets = tickets;
    c.ticket_key_file = (char *)key_file; /* the store copies it; never freed here */
    c.cache_size = cache_size;
    return c;
}

static struct tls_session_store *store_new(bool tickets, const char *key_file, uint32_t cache_size, uint64_t now)
{
    struct cfg_tls_sessions c = conf(tickets, key_file, cache_size);
    char err[256] = "";
    struct tls_session_store *st = tls_session_store_create(&c, now, err, sizeof err);
    if (!st)
        print_message("create: %s\n", err);
    assert_non_null(st);
    return st;
}

/* A server context as a TLS listener makes one: TLS 1.2 and 1.3. */
static SSL_CTX *server_ctx(struct tls_session_store *st)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    assert_non_null(ctx);
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    assert_int_equal(SSL_CTX_use_certificate(ctx, server_cert), 1);
    assert_int_equal(SSL_CTX_use_PrivateKey(ctx, server_key), 1);
    assert_int_equal(tls_sessions_attach(ctx, st, "web"), 0);
    return ctx;
}

/* A client of one TLS version; no_ticket: offer no ticket extension, so a
 * TLS 1.2 server falls back to session IDs. */
static SSL_CTX *client_ctx(int version, bool no_ticket)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    assert_non_null(ctx);
    SSL_CTX_set_min_proto_version(ctx, version);
    SSL_CTX_set_max_proto_version(ctx, version);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    if (no_ticket)
        SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
    return ctx;
}

/* The client's side after its handshake: read the server's one byte (which
 * makes a TLS 1.3 client take the tickets sent before it), keep the
 * session. */
static SSL_SESSION *client_finish(SSL *c)
{
    char byte;
    if (SSL_read(c, &byte, 1) != 1 || byte != 'x')
        return NULL;
    return SSL_get1_session(c);
}

/* One handshake in this process over a BIO pair, offering `resume` if not
 * NULL. Returns what the server's store made of it (TLS_RESUMED_*); the
 * client's session after it goes to *out when out is not NULL. */
static int handshake(SSL_CTX *cctx, SSL_CTX *sctx, SSL_SESSION *resume, SSL_SESSION **out)
{
    SSL *c = SSL_new(cctx), *s = SSL_new(sctx);
    assert_non_null(c);
    assert_non_null(s);
    BIO *cb = NULL, *sb = NULL;
    assert_int_equal(BIO_new_bio_pair(&cb, 0, &sb, 0), 1);
    SSL_set_bio(c, cb, cb);
    SSL_set_bio(s, sb, sb);
    SSL_set_connect_state(c);
    SSL_set_accept_state(s);
    if (resume)
        assert_int_equal(SSL_set_session(c, resume), 1);
    bool c_done = false, s_done = false;
    for (int round = 0; round < 50 && !(c_done && s_done); round++) {
        int r;
        if (!c_done && (r = SSL_do_handshake(c)) != 1) {
            int e = SSL_get_error(c, r);
            assert_true(e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE);
        } else {
            c_done = true;
        }
        if (!s_done && (r = SSL_do_handshake(s)) != 1) {
            int e = SSL_get_error(s, r);
            assert_true(e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE);
        } else {
            s_done = true;
        }
    }
    assert_true(c_done && s_done);
    int resumed = tls_sessions_handshake_done(s);
    assert_int_equal(SSL_write(s, "x", 1), 1);
    SSL_SESSION *sess = client_finish(c);
    assert_non_null(sess);
    if (out)
        *out = sess;
    else
        SSL_SESSION_free(sess);
    /* A clean close: an SSL freed without one counts its session as bad
     * and OpenSSL removes it (from the client's session and, through
     * remove_cb, from the store's cache). */
    SSL_shutdown(c);
    SSL_shutdown(s);
    SSL_free(c);
    SSL_free(s);
    return resumed;
}

static void socket_timeouts(int fd)
{
    struct timeval tv = { .tv_sec = 5 };
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

/* Serve one TLS connection on fd (a blocking socket) with ctx, as a
 * worker does: returns TLS_RESUMED_*, or -1 when the handshake failed. */
static int serve_one(SSL_CTX *ctx, int fd)
{
    SSL *s = SSL_new(ctx);
    char byte;
    int resumed = -1;
    if (s && SSL_set_fd(s, fd) == 1 && SSL_accept(s) == 1) {
        resumed = tls_sessions_handshake_done(s);
        if (SSL_write(s, "x", 1) == 1)
            SSL_read(s, &byte, 1); /* until the client has gone */
        else
            resumed = -1;
        SSL_shutdown(s);
    }
    SSL_free(s);
    return resumed;
}

/* The client of serve_one on fd: the session after it, or NULL. */
static SSL_SESSION *client_over_fd(SSL_CTX *cctx, int fd, SSL_SESSION *resume)
{
    SSL *c = SSL_new(cctx);
    assert_non_null(c);
    assert_int_equal(SSL_set_fd(c, fd), 1);
    if (resume)
        assert_int_equal(SSL_set_session(c, resume), 1);
    SSL_SESSION *sess = SSL_connect(c) == 1 ? client_finish(c) : NULL;
    SSL_shutdown(c);
    SSL_free(c);
    close(fd);
    return sess;
}

static void socket_pair(int sv[2])
{
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    socket_timeouts(sv[0]);
    socket_timeouts(sv[1]);
}

/* The exit status of child pid, which must have exited normally. */
static int child_status(pid_t pid)
{
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    return WEXITSTATUS(status);
}

/* The server side in a forked child: another worker. make_ctx (if not
 * NULL) makes the child's own context after the fork, from the store it
 * inherited, as a worker may; else sctx, made before the fork, is used. */
static int handshake_in_child(SSL_CTX *cctx, SSL_CTX *sctx, struct tls_session_store *make_ctx, SSL_SESSION *resume,
                              SSL_SESSION **out)
{
    int sv[2];
    socket_pair(sv);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(sv[0]);
        int resumed = serve_one(make_ctx ? server_ctx(make_ctx) : sctx, sv[1]);
        _exit(resumed < 0 ? 1 : 10 + resumed);
    }
    close(sv[1]);
    SSL_SESSION *sess = client_over_fd(cctx, sv[0], resume);
    int status = child_status(pid);
    assert_non_null(sess);
    if (out)
        *out = sess;
    else
        SSL_SESSION_free(sess);
    assert_true(status >= 10);
    return status - 10;
}

/* A worker forked before the master changes the keys: it serves one
 * connection, waits for the parent's word (the change made), serves a
 * second. Its exit status: 10 + 3 * first result + second result. */
struct worker {
    pid_t pid;
    int conn[2];   /* the client ends */
    int go;        /* write a byte to let the second connection be served */
};

static void worker_start(struct worker *w, SSL_CTX *sctx)
{
    int c1[2], c2[2], go[2];
    socket_pair(c1);
    socket_pair(c2);
    assert_int_equal(pipe2(go, O_CLOEXEC), 0);
    w->pid = fork();
    assert_true(w->pid >= 0);
    if (w->pid == 0) {
        close(c1[0]);
        close(c2[0]);
        close(go[1]);
        int first = serve_one(sctx, c1[1]);
        char byte;
        struct pollfd p = { .fd = go[0], .events = POLLIN };
        if (poll(&p, 1, 10000) != 1 || read(go[0], &byte, 1) != 1)
            _exit(2);
        int second = serve_one(sctx, c2[1]);
        _exit(first < 0 || second < 0 ? 1 : 10 + 3 * first + second);
    }
    close(c1[1]);
    close(c2[1]);
    close(go[0]);
    w->conn[0] = c1[0];
    w->conn[1] = c2[0];
    w->go = go[1];
}

static struct tls_session_stats stats_of(struct tls_session_store *st)
{
    struct tls_session_stats s;
    tls_session_store_stats(st, &s);
    return s;
}

/* The name of the key a client's ticket was made with (its first bytes). */
static void ticket_key_name(SSL_SESSION *sess, unsigned char name[TLS_TICKET_NAME_LEN])
{
    const unsigned char *tick = NULL;
    size_t len = 0;
    SSL_SESSION_get0_ticket(sess, &tick, &len);
    assert_true(len > TLS_TICKET_NAME_LEN);
    memcpy(name, tick, TLS_TICKET_NAME_LEN);
}

static void write_file(const char *path, const void *data, size_t len)
{
    char tmp[128];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
    assert_int_equal(rename(tmp, path), 0); /* as the rotation recipe does: mv */
}

/* n random 80-byte keys into path; the keys themselves into keys. */
static void write_keys(const char *path, struct tls_ticket_key *keys, size_t n)
{
    assert_int_equal(RAND_bytes((unsigned char *)keys, (int)(n * sizeof *keys)), 1);
    write_file(path, keys, n * sizeof *keys);
}

static void path_in_tmp(char *buf, size_t cap, const char *name)
{
    snprintf(buf, cap, "%s/%s", tmp_dir, name);
}

/* ------------------------------------------------------------------------
 * (1) TLS 1.3 tickets: another context, another process
 */

static void test_tls13_ticket_resumes_on_other_context_and_worker(void **state)
{
    (void)state;
    struct tls_session_store *st = store_new(true, NULL, 0, 1000);
    SSL_CTX *a = server_ctx(st), *b = server_ctx(st), *cctx = client_ctx(TLS1_3_VERSION, false);
    SSL_SESSION *sess = NULL, *again = NULL;
    assert_int_equal(handshake(cctx, a, NULL, &sess), TLS_RESUMED_NO);
    assert_int_equal(SSL_SESSION_get_protocol_version(sess), TLS1_3_VERSION);
    /* The ticket made by context A resumes on context B... */
    assert_int_equal(handshake(cctx, b, sess, &again), TLS_RESUMED_TICKET);
    /* TLS 1.3: the resumed client got a fresh ticket to use next time. */
    assert_ptr_not_equal(again, sess);
    SSL_SESSION_free(again);
    /* ...and in another process: with B as inherited, and with a context
     * the child makes itself from the store it inherited. */
    assert_int_equal(handshake_in_child(cctx, b, NULL, sess, NULL), TLS_RESUMED_TICKET);
    assert_int_equal(handshake_in_child(cctx, NULL, st, sess, NULL), TLS_RESUMED_TICKET);
    /* The children's counts are in the shared counters. */
    struct tls_session_stats s = stats_of(st);
    assert_int_equal(s.full, 1);
    assert_int_equal(s.resumed_ticket, 3);
    assert_int_equal(s.tickets_issued, 2 + 3); /* two after the full handshake, one per resumption */
    assert_int_equal(s.tickets_renewed, 0);

    /* A context on another store (other keys) cannot read the ticket. */
    struct tls_session_store *other = store_new(true, NULL, 0, 1000);
    SSL_CTX *c = server_ctx(other);
    assert_int_equal(handshake(cctx, c, sess, NULL), TLS_RESUMED_NO);
    assert_int_equal(stats_of(other).tickets_unknown, 1);

    SSL_SESSION_free(sess);
    SSL_CTX_free(a);
    SSL_CTX_free(b);
    SSL_CTX_free(c);
    SSL_CTX_free(cctx);
    tls_session_store_destroy(st);
    tls_session_store_destroy(other);
}

/* ------------------------------------------------------------------------
 * (2) TLS 1.2: tickets, and session IDs through the shared cache
 */

static void test_tls12_ticket_across_workers(void **state)
{
    (void)state;
    struct tls_session_store *st = store_new(true, NULL, 0, 1000);
    SSL_CTX *a = server_ctx(st), *cctx = client_ctx(TLS1_2_VERSION, false);
    SSL_SESSION *sess = NULL;
    /* Issued in one worker, resumed in this one and in a third. */
    assert_int_equal(handshake_in_child(cctx, a, NULL, NULL, &sess), TLS_RESUMED_NO);
    assert_int_equal(SSL_SESSION_get_protocol_version(sess), TLS1_2_VERSION);
    assert_true(SSL_SESSION_has_ticket(sess));
    assert_int_equal(handshake(cctx, a, sess, NULL), TLS_RESUMED_TICKET);
    assert_int_equal(handshake_in_child(cctx, NULL, st, sess, NULL), TLS_RESUMED_TICKET);
    assert_int_equal(stats_of(st).resumed_ticket, 2);
    SSL_SESSION_free(sess);
    SSL_CTX_free(a);
    SSL_CTX_free(cctx);
    tls_session_store_destroy(st);
}

/* Keys live in shared memory: a worker forked before a rotation (or a key
 * file change) sees the master's new keys. With keys copied at fork it
 * would go on issuing tickets under the old key and never renew them. */
static void check_worker_sees_new_keys(const char *key_file)
{
    struct tls_ticket_key file_keys[2];
    if (key_file)
        write_keys(key_file, file_keys, 1);
    const uint64_t t0 = 5000;
    struct tls_session_store *st = store_new(true, key_file, 0, t0);
    SSL_CTX *sctx = server_ctx(st), *cctx = client_ctx(TLS1_2_VERSION, false);
    unsigned char k1[TLS_TICKET_NAME_LEN], k2[TLS_TICKET_NAME_LEN], name[TLS_TICKET_NAME_LEN];
    tls_session_store_current_key(st, k1);
    struct worker w;
    worker_start(&w, sctx);
    SSL_SESSION *first = client_over_fd(cctx, w.conn[0], NULL);
    assert_non_null(first);
    ticket_key_name(first, name);
    assert_memory_equal(name, k1, sizeof name);

    if (key_file) {
        /* The operator's rotation: a new key in front of the old one. */
        file_keys[1] = file_keys[0];
        assert_int_equal(RAND_bytes((unsigned char *)&file_keys[0], sizeof file_keys[0]), 1);
        write_file(key_file, file_keys, sizeof file_keys);
        tls_session_store_tick(st, t0 + 2000);
        assert_int_equal(stats_of(st).key_file_reloads, 1);
    } else {
        tls_session_store_tick(st, t0 + CONFIG_HOUR);
        assert_int_equal(stats_of(st).key_rotations, 1);
    }
    tls_session_store_current_key(st, k2);
    assert_memory_not_equal(k1, k2, sizeof k1);
    assert_int_equal(write(w.go, "g", 1), 1);
    SSL_SESSION *second = client_over_fd(cctx, w.conn[1], first);
    close(w.go);
    assert_int_equal(child_status(w.pid), 10 + 3 * TLS_RESUMED_NO + TLS_RESUMED_TICKET);
    assert_non_null(second);
    /* The worker renewed the ticket under the key the master made. */
    ticket_key_name(second, name);
    assert_memory_equal(name, k2, sizeof name);
    assert_int_equal(stats_of(st).tickets_renewed, 1);
    SSL_SESSION_free(first);
    SSL_SESSION_free(second);
    SSL_CTX_free(sctx);
    SSL_CTX_free(cctx);
    tls_session_store_destroy(st);
}

static void test_running_worker_sees_rotation(void **state)
{
    (void)state;
    check_worker_sees_new_keys(NULL);
}

static void test_running_worker_sees_key_file_change(void **state)
{
    (void)state;
    char path[128];
    path_in_tmp(path, sizeof path, "worker.key");
    check_worker_sees_new_keys(path);
}

/* Tickets off: a session ID stored by one worker resumes on another. */
static void check_cache_resumption(int version)
{
    struct tls_session_store *st = store_new(false, NULL, 100, 1000);
    SSL_CTX *a = server_ctx(st), *b = server_ctx(st), *cctx = client_ctx(version, true);
    assert_true(SSL_CTX_get_options(a) & SSL_OP_NO_TICKET);
    SSL_SESSION *sess = NULL, *again = NULL;
    assert_int_equal(handshake_in_child(cctx, a, NULL, NULL, &sess), TLS_RESUMED_NO);
    if (version == TLS1_2_VERSION)
        assert_false(SSL_SESSION_has_ticket(sess));
    /* TLS 1.3: OpenSSL sends two tickets, each a cache entry. */
    assert_int_equal(stats_of(st).cache_stored, version == TLS1_3_VERSION ? 2 : 1);
    assert_int_equal(handshake(cctx, b, sess, &again), TLS_RESUMED_CACHE);
    assert_int_equal(handshake_in_child(cctx, NULL, st, version == TLS1_3_VERSION ? again : sess, NULL),
                     TLS_RESUMED_CACHE);
    struct tls_session_stats s = stats_of(st);
    assert_int_equal(s.resumed_cache, 2);
    assert_int_equal(s.cache_hits, 2);
    assert_int_equal(s.tickets_issued, 0);
    SSL_SESSION_free(sess);
    SSL_SESSION_free(again);

    /* Without a cache (cache_size 0) and without tickets nothing resumes. */
    struct tls_session_store *none = store_new(false, NULL, 0, 1000);
    SSL_CTX *c = server_ctx(none);
    assert_int_equal(handshake(cctx, c, NULL, &sess), TLS_RESUMED_NO);
    assert_int_equal(handshake(cctx, c, sess, NULL), TLS_RESUMED_NO);
    SSL_SESSION_free(sess);
    SSL_CTX_free(c);
    tls_session_store_destroy(none);

    SSL_CTX_free(a);
    SSL_CTX_free(b);
    SSL_CTX_free(cctx);
    tls_session_store_destroy(st);
}

static void test_tls12_session_id_cache_across_workers(void **state)
{
    (void)state;
    check_cache_resumption(TLS1_2_VERSION);
}

/* TLS 1.3 with tickets off: OpenSSL's stateful tickets, which are looked
 * up in the same cache (and used once). */
static void test_tls13_stateful_tickets_through_cache(void **state)
{
    (void)state;
    check_cache_resumption(TLS1_3_VERSION);
}

/* ------------------------------------------------------------------------
 * (3) two nodes sharing a key file
 */

static void test_two_nodes_share_key_file(void **state)
{
    (void)state;
    char path[128];
    path_in_tmp(path, sizeof path, "nodes.key");
    struct tls_ticket_key keys[2];
    write_keys(path, keys, 2);
    struct tls_session_store *n1 = store_new(true, path, 0, 1000), *n2 = store_new(true, path, 0, 5000);
    unsigned char name[TLS_TICKET_NAME_LEN];
    tls_session_store_current_key(n2, name);
    assert_memory_equal(name, keys[0].name, TLS_TICKET_NAME_LEN); /* the first key encrypts */
    assert_int_equal(stats_of(n1).keys, 2);
    SSL_CTX *s1 = server_ctx(n1), *s2 = server_ctx(n2);
    for (int version = TLS1_2_VERSION; version <= TLS1_3_VERSION; version++) {
        SSL_CTX *cctx = client_ctx(version, false);
        SSL_SESSION *sess = NULL, *back = NULL;
        assert_int_equal(handshake(cctx, s1, NULL, &sess), TLS_RESUMED_NO);
        assert_int_equal(handshake(cctx, s2, sess, &back), TLS_RESUMED_TICKET);
        assert_int_equal(handshake(cctx, s1, back, NULL), TLS_RESUMED_TICKET);
        SSL_SESSION_free(sess);
        SSL_SESSION_free(back);
        SSL_CTX_free(cctx);
    }
    SSL_CTX_free(s1);
    SSL_CTX_free(s2);
    tls_session_store_destroy(n1);
    tls_session_store_destroy(n2);
}

/* ------------------------------------------------------------------------
 * (4) rotation: an old ticket is renewed, then ages out
 */

static void test_rotation_renews_then_ages_out(void **state)
{
    (void)state;
    const uint64_t t0 = 1000000;
    struct tls_session_store *st = store_new(true, NULL, 0, t0); /* rotate 1h, timeout 5m */
    SSL_CTX *sctx = server_ctx(st), *cctx = client_ctx(TLS1_2_VERSION, false);
    unsigned char k1[TLS_TICKET_NAME_LEN], k2[TLS_TICKET_NAME_LEN], name[TLS_TICKET_NAME_LEN];
    tls_session_store_current_key(st, k1);
    SSL_SESSION *old = NULL, *renewed = NULL;
    assert_int_equal(handshake(cctx, sctx, NULL, &old), TLS_RESUMED_NO);
    ticket_key_name(old, name);
    assert_memory_equal(name, k1, sizeof name);

    /* Not yet time: nothing changes. */
    tls_session_store_tick(st, t0 + CONFIG_HOUR - 1);
    assert_int_equal(stats_of(st).key_rotations, 0);
    tls_session_store_tick(st, t0 + CONFIG_HOUR);
    assert_int_equal(stats_of(st).key_rotations, 1);
    assert_int_equal(stats_of(st).keys, 2);
    tls_session_store_current_key(st, k2);
    assert_memory_not_equal(k1, k2, sizeof k1);

    /* The old ticket still resumes, and the client gets one under k2. */
    assert_int_equal(handshake(cctx, sctx, old, &renewed), TLS_RESUMED_TICKET);
    assert_int_equal(stats_of(st).tickets_renewed, 1);
    ticket_key_name(renewed, name);
    assert_memory_equal(name, k2, sizeof name);

    /* The previous key stays until the next rotation even past timeout... */
    tls_session_store_tick(st, t0 + CONFIG_HOUR + 10 * CONFIG_MINUTE);
    assert_int_equal(stats_of(st).keys, 2);
    assert_int_equal(handshake(cctx, sctx, old, NULL), TLS_RESUMED_TICKET);
    /* ...then k1, retired more than timeout ago, goes; k2 stays. */
    tls_session_store_tick(st, t0 + 2 * CONFIG_HOUR);
    assert_int_equal(stats_of(st).key_rotations, 2);
    assert_int_equal(stats_of(st).keys, 2);
    uint64_t unknown = stats_of(st).tickets_unknown;
    assert_int_equal(handshake(cctx, sctx, old, NULL), TLS_RESUMED_NO);
    assert_int_equal(stats_of(st).tickets_unknown, unknown + 1);
    assert_int_equal(handshake(cctx, sctx, renewed, NULL), TLS_RESUMED_TICKET);

    /* With a timeout of 2h (two rotations), a retired key is kept for two. */
    struct cfg_tls_sessions c = conf(true, NULL, 0);
    c.timeout_ms = 2 * CONFIG_HOUR;
    char err[128];
    assert_int_equal(tls_session_store_reconfigure(st, &c, t0 + 2 * CONFIG_HOUR, err, sizeof err), 0);
    tls_session_store_tick(st, t0 + 3 * CONFIG_HOUR);
    tls_session_store_tick(st, t0 + 4 * CONFIG_HOUR);
    assert_int_equal(stats_of(st).keys, 3);
    tls_session_store_tick(st, t0 + 5 * CONFIG_HOUR);
    assert_int_equal(stats_of(st).keys, 3);

    /* The longest timeout the configuration allows (14 rotations): the
     * ring fills to the current key and the 14 whose tickets can still be
     * valid, and stays there. */
    c.timeout_ms = 14 * CONFIG_HOUR;
    assert_int_equal(tls_session_store_reconfigure(st, &c, t0 + 5 * CONFIG_HOUR, err, sizeof err), 0);
    for (uint64_t h = 6; h < 60; h++) {
        tls_session_store_tick(st, t0 + h * CONFIG_HOUR);
        assert_true(stats_of(st).keys <= TLS_TICKET_MAX_KEYS);
    }
    assert_int_equal(stats_of(st).keys, 15);

    SSL_SESSION_free(old);
    SSL_SESSION_free(renewed);
    SSL_CTX_free(sctx);
    SSL_CTX_free(cctx);
    tls_session_store_destroy(st);
}

/* A reload (reconfigure) keeps the generated keys: a ticket from before
 * resumes on a context made after, in a new worker. */
static void test_reload_keeps_keys(void **state)
{
    (void)state;
    struct tls_session_store *st = store_new(true, NULL, 100, 1000);
    SSL_CTX *before = server_ctx(st), *cctx = client_ctx(TLS1_3_VERSION, false);
    SSL_SESSION *sess = NULL;
    assert_int_equal(handshake(cctx, before, NULL, &sess), TLS_RESUMED_NO);
    unsigned char k1[TLS_TICKET_NAME_LEN], k2[TLS_TICKET_NAME_LEN];
    tls_session_store_current_key(st, k1);

    struct cfg_tls_sessions c = conf(true, NULL, 300);
    char err[128];
    assert_int_equal(tls_session_store_reconfigure(st, &c, 2000, err, sizeof err), 0);
    tls_session_store_current_key(st, k2);
    assert_memory_equal(k1, k2, sizeof k1);
    assert_int_equal(stats_of(st).cache_capacity, 304); /* a new cache, rounded up to sets of 8 */
    assert_int_equal(handshake_in_child(cctx, NULL, st, sess, NULL), TLS_RESUMED_TICKET);

    /* A reconfigure that cannot be applied leaves the store as it was. */
    c.ticket_key_file = "/nonexistent/tickets.key";
    assert_int_equal(tls_session_store_reconfigure(st, &c, 3000, err, sizeof err), -1);
    assert_non_null(strstr(err, "cannot open /nonexistent/tickets.key"));
    tls_session_store_current_key(st, k2);
    assert_memory_equal(k1, k2, sizeof k1);
    assert_int_equal(handshake(cctx, before, sess, NULL), TLS_RESUMED_TICKET);

    SSL_SESSION_free(sess);
    SSL_CTX_free(before);
    SSL_CTX_free(cctx);
    tls_session_store_destroy(st);
}

/* ------------------------------------------------------------------------
 * (5) the key file: a change is picked up, a broken file is refused
 */

static void test_key_file_change_and_broken_file(void **state)
{
    (void)state;
    char path[128];
    path_in_tmp(path, sizeof path, "watch.key");
    struct tls_ticket_key a[1], b[1];
    write_keys(path, a, 1);
    const uint64_t t0 = 1000;
    struct tls_session_store *st = store_new(true, path, 0, t0);
    SSL_CTX *sctx = server_ctx(st), *cctx = client_ctx(TLS1_3_VERSION, false);
    SSL_SESSION *under_a = NULL, *under_b = NULL;
    assert_int_equal(handshake(cctx, sctx, NULL, &under_a), TLS_RESUMED_NO);

    /* An unchanged file is not read again. */
    tls_session_store_tick(st, t0 + 5000);
    assert_int_equal(stats_of(st).key_file_reloads, 0);

    /* Replaced by a file with key b only: a's tickets stop resuming. */
    write_keys(path, b, 1);
    tls_session_store_tick(st, t0 + 10000);
    assert_int_equal(stats_of(st).key_file_reloads, 1);
    unsigned char name[TLS_TICKET_NAME_LEN];
    tls_session_store_current_key(st, name);
    assert_memory_equal(name, b[0].name, sizeof name);
    assert_int_equal(handshake(cctx, sctx, under_a, &under_b), TLS_RESUMED_NO);

    /* A broken file (79 bytes) is refused once, and b stays. */
    write_file(path, b, sizeof b[0] - 1);
    tls_session_store_tick(st, t0 + 15000);
    tls_session_store_tick(st, t0 + 20000);
    assert_int_equal(stats_of(st).key_file_failures, 1);
    assert_int_equal(stats_of(st).key_file_reloads, 1);
    tls_session_store_current_key(st, name);
    assert_memory_equal(name, b[0].name, sizeof name);
    assert_int_equal(handshake(cctx, sctx, under_b, NULL), TLS_RESUMED_TICKET);

    /* So is a file that disappeared. */
    assert_int_equal(unlink(path), 0);
    tls_session_store_tick(st, t0 + 25000);
    assert_int_equal(stats_of(st).key_file_failures, 2);
    assert_int_equal(handshake(cctx, sctx, under_b, NULL), TLS_RESUMED_TICKET);

    /* The rotation recipe: a new key in front of the old ones. Tickets
     * under b still resume (renewed), new ones are made with the new key. */
    struct tls_ticket_key rotated[2];
    assert_int_equal(RAND_bytes((unsigned char *)&rotated[0], sizeof rotated[0]), 1);
    rotated[1] = b[0];
    write_file(path, rotated, sizeof rotated);
    tls_session_store_tick(st, t0 + 30000);
    assert_int_equal(stats_of(st).key_file_reloads, 2);
    assert_int_equal(handshake(cctx, sctx, under_b, NULL), TLS_RESUMED_TICKET);
    assert_int_equal(stats_of(st).tickets_renewed, 1);
    tls_session_store_current_key(st, name);
    assert_memory_equal(name, rotated[0].name, sizeof name);

    /* A reload (SIGHUP) reads the file at once, without waiting for the
     * next check. */
    write_keys(path, a, 1);
    struct cfg_tls_sessions c = conf(true, path, 0);
    char err[256];
    assert_int_equal(tls_session_store_reconfigure(st, &c, t0 + 30001, err, sizeof err), 0);
    assert_int_equal(stats_of(st).key_file_reloads, 3);
    tls_session_store_current_key(st, name);
    assert_memory_equal(name, a[0].name, sizeof name);

    SSL_SESSION_free(under_a);
    SSL_SESSION_free(under_b);
    SSL_CTX_free(sctx);
    SSL_CTX_free(cctx);
    tls_session_store_destroy(st);
}

static void test_create_refuses_broken_key_file(void **state)
{
    (void)state;
    char path[128];
    path_in_tmp(path, sizeof path, "short.key");
    write_file(path, "0123456789", 10);
    struct cfg_tls_sessions c = conf(true, path, 0);
    char err[256];
    assert_null(tls_session_store_create(&c, 0, err, sizeof err));
    assert_non_null(strstr(err, "is 10 bytes, not a multiple of 80"));
}

/* ------------------------------------------------------------------------
 * (6) the cache: eviction, expiry, size
 */

static void id_of(unsigned char id[32], int i)
{
    memset(id, 0, 32);
    memcpy(id, &i, sizeof i);
}

static void test_cache_eviction_lru(void **state)
{
    (void)state;
    struct tls_session_cache *c = tsc_create(TSC_WAYS); /* one set: every ID meets */
    assert_int_equal(tsc_capacity(c), TSC_WAYS);
    unsigned char id[32], der[TSC_MAX_DER], out[TSC_MAX_DER];
    for (int i = 0; i < TSC_WAYS; i++) {
        id_of(id, i);
        memset(der, 'a' + i, 100);
        assert_int_equal(tsc_put(c, id, 32, der, 100, 1000, 10), TSC_STORED);
    }
    assert_int_equal(tsc_live(c, 10), TSC_WAYS);
    /* Use session 0, so 1 is the least recently used. */
    id_of(id, 0);
    assert_int_equal(tsc_get(c, id, 32, out, sizeof out, 11), 100);
    assert_int_equal(out[0], 'a');
    id_of(id, 99);
    assert_int_equal(tsc_put(c, id, 32, der, 50, 1000, 12), TSC_EVICTED);
    id_of(id, 1);
    assert_int_equal(tsc_get(c, id, 32, out, sizeof out, 13), 0);
    id_of(id, 0);
    assert_int_equal(tsc_get(c, id, 32, out, sizeof out, 13), 100);
    id_of(id, 99);
    assert_int_equal(tsc_get(c, id, 32, out, sizeof out, 13), 50);
    /* The same ID again replaces its own entry. */
    assert_int_equal(tsc_put(c, id, 32, der, 60, 1000, 14), TSC_STORED);
    assert_int_equal(tsc_get(c, id, 32, out, sizeof out, 15), 60);
    /* Removed, it is gone, and its entry is free for the next. */
    tsc_remove(c, id, 32);
    assert_int_equal(tsc_get(c, id, 32, out, sizeof out, 16), 0);
    id_of(id, 100);
    assert_int_equal(tsc_put(c, id, 32, der, 60, 1000, 17), TSC_STORED);
    tsc_destroy(c);

    /* Sizes round up to whole sets; no cache at all for 0. */
    c = tsc_create(9);
    assert_int_equal(tsc_capacity(c), 16);
    tsc_destroy(c);
    assert_null(tsc_create(0));
}

static void test_cache_expiry_and_limits(void **state)
{
    (void)state;
    struct tls_session_cache *c = tsc_create(TSC_WAYS);
    unsigned char id[32], der[TSC_MAX_DER + 1], out[TSC_MAX_DER];
    memset(der, 'z', sizeof der);
    id_of(id, 1);
    assert_int_equal(tsc_put(c, id, 32, der, 10, 100, 90), TSC_STORED);
    assert_int_equal(tsc_get(c, id, 32, out, sizeof out, 99), 10);
    assert_int_equal(tsc_get(c, id, 32, out, sizeof out, 100), 0); /* expired */
    assert_int_equal(tsc_live(c, 100), 0);
    /* Expired entries are reused before any live one is evicted. */
    for (int i = 0; i < TSC_WAYS; i++) {
        id_of(id, 10 + i);
        assert_int_equal(tsc_put(c, id, 32, der, 10, i < 4 ? 200 : 1000, 150), TSC_STORED);
    }
    for (int i = 0; i < 4; i++) {
        id_of(id, 50 + i);
        assert_int_equal(tsc_put(c, id, 32, der, 10, 1000, 300), TSC_STORED);
    }
    id_of(id, 60);
    assert_int_equal(tsc_put(c, id, 32, der, 10, 1000, 300), TSC_EVICTED);
    /* Too big, a bad ID, an already expired session: not stored. */
    id_of(id, 2);
    assert_int_equal(tsc_put(c, id, 32, der, TSC_MAX_DER + 1, 1000, 300), TSC_TOO_BIG);
    assert_int_equal(tsc_put(c, id, 32, der, TSC_MAX_DER, 1000, 300), TSC_EVICTED);
    assert_int_equal(tsc_put(c, id, 0, der, 10, 1000, 300), TSC_TOO_BIG);
    assert_int_equal(tsc_put(c, id, 33, der, 10, 1000, 300), TSC_TOO_BIG);
    assert_int_equal(tsc_put(c, id, 32, der, 10, 300, 300), TSC_TOO_BIG);
    assert_int_equal(tsc_get(c, id, 33, out, sizeof out, 300), 0);
    tsc_destroy(c);
}

/* A worker that dies holding the cache's lock does not stop the others:
 * the next one to lock it gets it (robust mutex), finds the cache emptied
 * (what the dead one was writing may be torn) and goes on. */
static void test_cache_survives_worker_dying_with_lock(void **state)
{
    (void)state;
    struct tls_session_cache *c = tsc_create(64);
    unsigned char id[32], der[100], out[TSC_MAX_DER];
    memset(der, 'q', sizeof der);
    id_of(id, 7);
    assert_int_equal(tsc_put(c, id, 32, der, sizeof der, 1000, 1), TSC_STORED);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        tsc_hold_lock_for_test(c);
        _exit(0); /* dies with the lock held */
    }
    assert_int_equal(child_status(pid), 0);
    assert_int_equal(tsc_get(c, id, 32, out, sizeof out, 2), 0); /* emptied, not stuck */
    assert_int_equal(tsc_put(c, id, 32, der, sizeof der, 1000, 3), TSC_STORED);
    assert_int_equal(tsc_get(c, id, 32, out, sizeof out, 4), sizeof der);
    tsc_destroy(c);
}

/* Through OpenSSL: a cache of one set, nine sessions; the first is
 * evicted (counted) and no longer resumes, the last does. */
static void test_cache_eviction_in_handshakes(void **state)
{
    (void)state;
    struct tls_session_store *st = store_new(false, NULL, TSC_WAYS, 1000);
    SSL_CTX *sctx = server_ctx(st), *cctx = client_ctx(TLS1_2_VERSION, true);
    SSL_SESSION *sess[TSC_WAYS + 1];
    for (int i = 0; i <= TSC_WAYS; i++)
        assert_int_equal(handshake(cctx, sctx, NULL, &sess[i]), TLS_RESUMED_NO);
    struct tls_session_stats s = stats_of(st);
    assert_int_equal(s.cache_stored, TSC_WAYS + 1);
    assert_int_equal(s.cache_evictions, 1);
    assert_int_equal(handshake(cctx, sctx, sess[0], NULL), TLS_RESUMED_NO);
    assert_int_equal(stats_of(st).cache_misses, 1);
    assert_int_equal(handshake(cctx, sctx, sess[TSC_WAYS], NULL), TLS_RESUMED_CACHE);
    for (int i = 0; i <= TSC_WAYS; i++)
        SSL_SESSION_free(sess[i]);
    SSL_CTX_free(sctx);
    SSL_CTX_free(cctx);
    tls_session_store_destroy(st);
}

/* ------------------------------------------------------------------------
 * (7) the sessions: block
 */

/* Parse `yaml` (a mapping with a sessions: key) as a listener's tls
 * block would; errors into errs. */
static void parse_sessions(const char *yaml, struct cfg_tls_sessions *out, struct config_errors *errs)
{
    struct ynode *root = NULL;
    struct ytree_error yerr;
    assert_int_equal(ytree_parse(yaml, strlen(yaml), &root, &yerr), 0);
    assert_non_null(root);
    assert_int_equal(root->kind, YNODE_MAP);
    struct config_ctx *c = config_ctx_new("t.yaml", errs, NULL);
    assert_non_null(c);
    config_path_push(c, "listeners[0].tls.sessions");
    tls_sessions_defaults(out);
    tls_sessions_parse(c, root->pairs[0].value, out);
    config_ctx_free(c);
    ytree_free(root);
}

static void expect_sessions_errors(const char *yaml, const char *const *want, size_t n)
{
    struct cfg_tls_sessions s;
    struct config_errors errs = { 0 };
    parse_sessions(yaml, &s, &errs);
    bool same = errs.n == n;
    for (size_t i = 0; same && i < n; i++)
        same = strcmp(errs.lines[i], want[i]) == 0;
    if (!same)
        for (size_t i = 0; i < errs.n; i++)
            print_message("  error: %s\n", errs.lines[i]);
    assert_int_equal(errs.n, n);
    for (size_t i = 0; i < n; i++)
        assert_string_equal(errs.lines[i], want[i]);
    config_errors_free(&errs);
    tls_sessions_free(&s);
}

static void test_config_values_and_defaults(void **state)
{
    (void)state;
    char path[128], yaml[512];
    path_in_tmp(path, sizeof path, "conf.key");
    struct tls_ticket_key keys[3];
    write_keys(path, keys, 3);
    struct cfg_tls_sessions s;
    struct config_errors errs = { 0 };
    parse_sessions("sessions:\n", &s, &errs);
    assert_int_equal(errs.n, 0);
    assert_true(s.tickets);
    assert_null(s.ticket_key_file);
    assert_int_equal(s.ticket_rotate_ms, CONFIG_HOUR);
    assert_int_equal(s.cache_size, 20000);
    assert_int_equal(s.timeout_ms, 5 * CONFIG_MINUTE);
    snprintf(yaml, sizeof yaml,
             "sessions:\n  tickets: false\n  ticket_key_file: %s\n  ticket_rotate: 10m\n  cache_size: 0\n"
             "  timeout: 1h\n",
             path);
    parse_sessions(yaml, &s, &errs);
    assert_int_equal(errs.n, 0);
    assert_false(s.tickets);
    assert_string_equal(s.ticket_key_file, path);
    assert_int_equal(s.ticket_rotate_ms, 10 * CONFIG_MINUTE);
    assert_int_equal(s.cache_size, 0);
    assert_int_equal(s.timeout_ms, CONFIG_HOUR);
    tls_sessions_free(&s);
    /* The longest timeout generated keys allow: 14 rotations. */
    parse_sessions("sessions:\n  timeout: 14h\n", &s, &errs);
    assert_int_equal(errs.n, 0);
    /* A long timeout is fine with a key file: the operator rotates. */
    snprintf(yaml, sizeof yaml, "sessions:\n  ticket_key_file: %s\n  ticket_rotate: 1s\n  timeout: 24h\n", path);
    parse_sessions(yaml, &s, &errs);
    assert_int_equal(errs.n, 0);
    tls_sessions_free(&s);
}

static void test_config_errors(void **state)
{
    (void)state;
    char path[128], yaml[512], want[512];
    expect_sessions_errors("sessions:\n  ticket: true\n",
                           (const char *const[]){ "t.yaml:2: listeners[0].tls.sessions.ticket: unknown key "
                                                  "(did you mean \"tickets\"?)" },
                           1);
    expect_sessions_errors(
        "sessions:\n  tickets: maybe\n  cache_size: -1\n  timeout: 0s\n  ticket_rotate: soon\n",
        (const char *const[]){
            "t.yaml:2: listeners[0].tls.sessions.tickets: expected true or false, got \"maybe\"",
            "t.yaml:3: listeners[0].tls.sessions.cache_size: expected an integer from 0 to 10000000, got \"-1\"",
            "t.yaml:4: listeners[0].tls.sessions.timeout: must be from 1s to 168h, got \"0s\"",
            "t.yaml:5: listeners[0].tls.sessions.ticket_rotate: expected a duration like \"500ms\", \"10s\", "
            "\"2m\" or \"1h\", got \"soon\"",
        },
        4);
    expect_sessions_errors("sessions:\n  ticket_rotate: 1m\n  timeout: 1h\n",
                           (const char *const[]){ "t.yaml:2: listeners[0].tls.sessions.ticket_rotate: 1m is too "
                                                  "short for timeout 1h: at most 16 keys are kept, so it must be "
                                                  "at least timeout/14" },
                           1);
    expect_sessions_errors("sessions:\n  timeout: 16h\n",
                           (const char *const[]){ "t.yaml:2: listeners[0].tls.sessions.timeout: 16h is too long "
                                                  "for ticket_rotate 1h: at most 16 keys are kept, so it must be "
                                                  "at most 14 times ticket_rotate" },
                           1);
    expect_sessions_errors("sessions:\n  ticket_key_file: /nonexistent/t.key\n",
                           (const char *const[]){ "t.yaml:2: listeners[0].tls.sessions.ticket_key_file: cannot "
                                                  "open /nonexistent/t.key: No such file or directory" },
                           1);
    /* Wrong sizes: empty, not a multiple of 80, more than 16 keys; a directory. */
    struct {
        const char *name;
        size_t len;
        const char *reason;
    } files[] = {
        { "empty.key", 0, "is empty: it must hold one or more 80-byte keys (openssl rand 80)" },
        { "odd.key", 81, "is 81 bytes, not a multiple of 80 (one or more 80-byte keys)" },
        { "many.key", 17 * 80, "holds more than 16 keys (1280 bytes)" },
    };
    static unsigned char junk[17 * 80];
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        path_in_tmp(path, sizeof path, files[i].name);
        write_file(path, junk, files[i].len);
        snprintf(yaml, sizeof yaml, "sessions:\n  ticket_key_file: %s\n", path);
        snprintf(want, sizeof want, "t.yaml:2: listeners[0].tls.sessions.ticket_key_file: %s %s", path,
                 files[i].reason);
        expect_sessions_errors(yaml, (const char *const[]){ want }, 1);
    }
    snprintf(yaml, sizeof yaml, "sessions:\n  ticket_key_file: %s\n", tmp_dir);
    snprintf(want, sizeof want, "t.yaml:2: listeners[0].tls.sessions.ticket_key_file: %s is not a regular file",
             tmp_dir);
    expect_sessions_errors(yaml, (const char *const[]){ want }, 1);
    /* Unreadable (only meaningful when not root, who reads anything). */
    if (geteuid() != 0) {
        path_in_tmp(path, sizeof path, "secret.key");
        write_file(path, junk, 80);
        chmod(path, 0);
        snprintf(yaml, sizeof yaml, "sessions:\n  ticket_key_file: %s\n", path);
        snprintf(want, sizeof want, "t.yaml:2: listeners[0].tls.sessions.ticket_key_file: cannot open %s: %s",
                 path, strerror(EACCES));
        expect_sessions_errors(yaml, (const char *const[]){ want }, 1);
    }
    expect_sessions_errors("sessions: [1]\n",
                           (const char *const[]){ "t.yaml:1: listeners[0].tls.sessions: expected a mapping, got a "
                                                  "list" },
                           1);
}

/* ------------------------------------------------------------------------
 * metrics
 */

static void test_metrics_text(void **state)
{
    (void)state;
    struct tls_session_store *st = store_new(true, NULL, 64, 1000);
    SSL_CTX *sctx = server_ctx(st), *cctx = client_ctx(TLS1_3_VERSION, false);
    SSL_SESSION *sess = NULL;
    assert_int_equal(handshake(cctx, sctx, NULL, &sess), TLS_RESUMED_NO);
    assert_int_equal(handshake(cctx, sctx, sess, NULL), TLS_RESUMED_TICKET);
    struct strbuf out = { 0 };
    const char *names[] = { "web" };
    tls_sessions_metrics(&out, names, &st, 1);
    char *text = strbuf_finish(&out, NULL);
    assert_non_null(text);
    assert_non_null(strstr(text, "# TYPE sluice_tls_session_handshakes_total counter\n"));
    assert_non_null(strstr(text, "sluice_tls_session_handshakes_total{listener=\"web\",resumed=\"no\"} 1\n"));
    assert_non_null(strstr(text, "sluice_tls_session_handshakes_total{listener=\"web\",resumed=\"ticket\"} 1\n"));
    assert_non_null(strstr(text, "sluice_tls_session_handshakes_total{listener=\"web\",resumed=\"cache\"} 0\n"));
    assert_non_null(strstr(text, "sluice_tls_ticket_keys{listener=\"web\"} 1\n"));
    assert_non_null(strstr(text, "sluice_tls_session_cache_capacity{listener=\"web\"} 64\n"));
    assert_non_null(strstr(text, "sluice_tls_ticket_key_events_total{listener=\"web\",event=\"rotated\"} 0\n"));
    free(text);
    SSL_SESSION_free(sess);
    SSL_CTX_free(sctx);
    SSL_CTX_free(cctx);
    tls_session_store_destroy(st);
}

/* ------------------------------------------------------------------------
 * the master's stores by listener, across reloads
 */

static void test_stores_by_listener_across_reloads(void **state)
{
    (void)state;
    struct tls_session_stores *set = tls_session_stores_new();
    assert_non_null(set);
    struct cfg_tls_sessions c = conf(true, NULL, 16);
    char err[256];
    /* Start: two TLS listeners. */
    tls_session_stores_begin(set);
    struct tls_session_store *web = tls_session_stores_get(set, "web", &c, 1000, err, sizeof err);
    struct tls_session_store *api = tls_session_stores_get(set, "api", &c, 1000, err, sizeof err);
    assert_non_null(web);
    assert_non_null(api);
    assert_ptr_not_equal(web, api);
    tls_session_stores_commit(set);
    SSL_CTX *before = server_ctx(web), *cctx = client_ctx(TLS1_3_VERSION, false);
    SSL_SESSION *sess = NULL;
    assert_int_equal(handshake(cctx, before, NULL, &sess), TLS_RESUMED_NO);

    /* Reload: "api" is gone, "web" keeps its store (and keys). */
    c.cache_size = 32;
    tls_session_stores_begin(set);
    assert_ptr_equal(tls_session_stores_get(set, "web", &c, 2000, err, sizeof err), web);
    tls_session_stores_commit(set);
    assert_int_equal(stats_of(web).cache_capacity, 32);
    SSL_CTX *after = server_ctx(web);
    assert_int_equal(handshake(cctx, after, sess, NULL), TLS_RESUMED_TICKET);

    /* A reload that fails half way: a pass over the running listeners
     * puts things back. */
    struct cfg_tls_sessions bad = conf(true, "/nonexistent/t.key", 16);
    tls_session_stores_begin(set);
    assert_non_null(tls_session_stores_get(set, "new", &c, 3000, err, sizeof err));
    assert_null(tls_session_stores_get(set, "web", &bad, 3000, err, sizeof err));
    assert_non_null(strstr(err, "cannot open /nonexistent/t.key"));
    tls_session_stores_begin(set);
    assert_ptr_equal(tls_session_stores_get(set, "web", &c, 3000, err, sizeof err), web);
    tls_session_stores_commit(set);

    /* Rotation for every store, and metrics for the listeners there are. */
    tls_session_stores_tick(set, 1000 + CONFIG_HOUR);
    assert_int_equal(stats_of(web).key_rotations, 1);
    struct metrics_registry reg = { 0 };
    assert_int_equal(metrics_register(&reg, tls_session_stores_collect, set), 0);
    struct strbuf out = { 0 };
    metrics_collect(&reg, &out);
    char *text = strbuf_finish(&out, NULL);
    assert_non_null(strstr(text, "sluice_tls_ticket_keys{listener=\"web\"} 2\n"));
    assert_null(strstr(text, "listener=\"api\""));
    assert_null(strstr(text, "listener=\"new\""));
    free(text);

    SSL_SESSION_free(sess);
    SSL_CTX_free(before);
    SSL_CTX_free(after);
    SSL_CTX_free(cctx);
    tls_session_stores_free(set);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tls13_ticket_resumes_on_other_context_and_worker),
        cmocka_unit_test(test_tls12_ticket_across_workers),
        cmocka_unit_test(test_running_worker_sees_rotation),
        cmocka_unit_test(test_running_worker_sees_key_file_change),
        cmocka_unit_test(test_tls12_session_id_cache_across_workers),
        cmocka_unit_test(test_tls13_stateful_tickets_through_cache),
        cmocka_unit_test(test_two_nodes_share_key_file),
        cmocka_unit_test(test_rotation_renews_then_ages_out),
        cmocka_unit_test(test_reload_keeps_keys),
        cmocka_unit_test(test_key_file_change_and_broken_file),
        cmocka_unit_test(test_create_refuses_broken_key_file),
        cmocka_unit_test(test_cache_eviction_lru),
        cmocka_unit_test(test_cache_expiry_and_limits),
        cmocka_unit_test(test_cache_survives_worker_dying_with_lock),
        cmocka_unit_test(test_cache_eviction_in_handshakes),
        cmocka_unit_test(test_config_values_and_defaults),
        cmocka_unit_test(test_config_errors),
        cmocka_unit_test(test_metrics_text),
        cmocka_unit_test(test_stores_by_listener_across_reloads),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
