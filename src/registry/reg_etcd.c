/* The etcd v3 client on the event loop (see reg_etcd.h).
 *
 * How curl meets the loop: curl tells us which sockets to watch for what
 * (socket_cb) and when to call it back (timer_cb); we turn that into
 * ev_io and one ev_timer, and hand events back with
 * curl_multi_socket_action(). Finished transfers are collected after each
 * such call (process()). curl forbids calling into the multi handle from
 * its own callbacks, so a callback of ours never runs inside curl: a
 * watch's bytes are only buffered by the write callback and delivered
 * from process(), where a user callback may start or stop requests
 * freely.
 */
#include "lib/errbuf.h"
#include "registry/reg_etcd.h"

#include <curl/curl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RESPONSE_MAX (64u << 20) /* the largest unary answer taken (a range of a big registry) */
#define WATCH_BACKOFF_MIN_MS 100
#define WATCH_BACKOFF_MAX_MS 2000
#define REASON_MAX 256
#define SPARE_EASY 32
#define TRY_MIN_MS 500           /* the least time one try of a request gets */
#define ROUND_PAUSE_MS 200       /* between two rounds over every endpoint */

enum req_kind { REQ_UNARY, REQ_KEEPALIVE, REQ_WATCH };

struct request {
    struct reg_etcd *e;
    enum req_kind kind;
    CURL *easy;
    const char *path;            /* "/v3/kv/put" */
    char *body;                  /* the JSON request */
    reg_etcd_cb *cb;
    void *arg;
    size_t first_endpoint, tries;
    size_t endpoint;             /* of this try */
    uint64_t deadline_ms;        /* 0: none (a watch) */
    char *resp;                  /* the answer (unary) */
    size_t resp_len, resp_cap;
    bool too_large;
    struct reg_etcd_watch *watch;
    char curl_err[CURL_ERROR_SIZE];
    struct ev_timer pause;       /* between rounds over the endpoints */
    bool paused;
    struct request *prev, *next;
};

struct sock {
    struct ev_io io;
    struct reg_etcd *e;
    curl_socket_t fd;
    struct sock *prev, *next;     /* every socket curl has us watch */
};

struct reg_etcd_watch {
    struct reg_etcd *e;
    char *key, *range_end;
    size_t key_len, range_end_len;
    struct reg_etcd_watch_cbs cbs;
    int64_t next_rev;             /* resume from here */
    size_t endpoint;
    struct request *req;          /* the stream, or NULL while waiting to reconnect */
    struct reg_etcd_framer framer;
    bool has_data;                /* bytes waiting in the framer */
    bool up, stopped;
    bool failed;                  /* the stream must be dropped (bad message, too large) */
    char fail_reason[REASON_MAX];
    uint32_t backoff_ms;
    struct ev_timer retry;
    struct reg_etcd_watch *prev, *next;
};

struct reg_etcd {
    struct ev_loop *loop;
    struct reg_etcd_conf conf;
    CURLM *multi;
    struct ev_timer timer;
    struct curl_slist *headers;
    size_t current;               /* the endpoint to try first */
    struct request *requests;     /* in flight */
    struct reg_etcd_watch *watches;
    struct sock *socks;
    struct reg_etcd_stats st;
    bool in_process;
    /* Easy handles of finished requests, reset and used again: a new one
     * costs a dozen allocations, and a registration is one request. */
    CURL *spare[SPARE_EASY];
    size_t n_spare;
};

/* ---- configuration --------------------------------------------------------- */

void reg_etcd_conf_defaults(struct reg_etcd_conf *c)
{
    memset(c, 0, sizeof *c);
    c->connect_timeout_ms = 1000;
    c->request_timeout_ms = 5000;
}

int reg_etcd_conf_check(const struct reg_etcd_conf *c, char *err, size_t errlen)
{
    if (!c->n_endpoints)
        return errbuf_fail(err, errlen, "endpoints: at least one is needed");
    if (c->n_endpoints > REG_ETCD_MAX_ENDPOINTS)
        return errbuf_fail(err, errlen, "endpoints: at most %d", REG_ETCD_MAX_ENDPOINTS);
    for (size_t i = 0; i < c->n_endpoints; i++) {
        const char *u = c->endpoints[i];
        const char *rest = strncmp(u, "http://", 7) == 0 ? u + 7 : strncmp(u, "https://", 8) == 0 ? u + 8 : NULL;
        if (!rest || !*rest || strchr(rest, '/') || strpbrk(u, " \t\r\n"))
            return errbuf_fail(err, errlen, "endpoints[%zu]: \"%s\" is not http://HOST:PORT or https://HOST:PORT", i, u);
    }
    if (!c->connect_timeout_ms || !c->request_timeout_ms)
        return errbuf_fail(err, errlen, "timeouts must be above 0");
    return 0;
}

const char *reg_etcd_endpoint(const struct reg_etcd *e)
{
    return e->conf.endpoints[e->current];
}

void reg_etcd_stats(const struct reg_etcd *e, struct reg_etcd_stats *out)
{
    *out = e->st;
    out->in_flight = 0;
    for (const struct request *r = e->requests; r; r = r->next)
        out->in_flight++;
}

/* ---- curl on the loop -------------------------------------------------------- */

static void process(struct reg_etcd *e);

static void on_io(struct ev_loop *loop, struct ev_io *io, uint32_t revents)
{
    struct sock *s = io->data;
    struct reg_etcd *e = s->e;
    int flags = 0;
    if (revents & EPOLLIN)
        flags |= CURL_CSELECT_IN;
    if (revents & EPOLLOUT)
        flags |= CURL_CSELECT_OUT;
    if (revents & (EPOLLERR | EPOLLHUP))
        flags |= CURL_CSELECT_ERR;
    int running;
    curl_multi_socket_action(e->multi, s->fd, flags, &running);
    process(e);
}

static void sock_unlink(struct reg_etcd *e, struct sock *s)
{
    if (s->prev)
        s->prev->next = s->next;
    else if (e->socks == s)
        e->socks = s->next;
    if (s->next)
        s->next->prev = s->prev;
    s->prev = s->next = NULL;
}

static int socket_cb(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
    struct reg_etcd *e = userp;
    struct sock *s = socketp;
    if (what == CURL_POLL_REMOVE) {
        if (s) {
            ev_io_stop(e->loop, &s->io);
            curl_multi_assign(e->multi, fd, NULL);
            sock_unlink(e, s);
            ev_defer_free(e->loop, s, free);
        }
        return 0;
    }
    if (!s) {
        s = calloc(1, sizeof *s);
        if (!s)
            return -1; /* curl fails the transfer */
        s->e = e;
        s->fd = fd;
        ev_io_init(&s->io, fd, on_io, s);
        curl_multi_assign(e->multi, fd, s);
        s->next = e->socks;
        if (e->socks)
            e->socks->prev = s;
        e->socks = s;
    }
    uint32_t ev = 0;
    if (what == CURL_POLL_IN || what == CURL_POLL_INOUT)
        ev |= EPOLLIN;
    if (what == CURL_POLL_OUT || what == CURL_POLL_INOUT)
        ev |= EPOLLOUT;
    ev_io_set(e->loop, &s->io, ev);
    return 0;
}

static void on_timer(struct ev_loop *loop, struct ev_timer *t)
{
    struct reg_etcd *e = t->data;
    int running;
    curl_multi_socket_action(e->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    process(e);
}

static int timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
    struct reg_etcd *e = userp;
    ev_timer_stop(e->loop, &e->timer);
    if (timeout_ms >= 0)
        ev_timer_start(e->loop, &e->timer, (uint64_t)timeout_ms);
    return 0;
}

/* ---- requests -------------------------------------------------------------------- */

static size_t on_body(char *data, size_t size, size_t nmemb, void *userp)
{
    struct request *r = userp;
    size_t n = size * nmemb;
    if (r->kind == REQ_WATCH) {
        struct reg_etcd_watch *w = r->watch;
        if (!w || w->stopped || w->failed)
            return 0; /* ends the transfer */
        char why[128];
        if (reg_etcd_framer_feed(&w->framer, data, n, why, sizeof why) < 0) {
            w->failed = true;
            snprintf(w->fail_reason, sizeof w->fail_reason, "%s", why);
            return 0;
        }
        w->has_data = true;
        return n;
    }
    if (r->resp_len + n > RESPONSE_MAX) {
        r->too_large = true;
        return 0;
    }
    if (r->resp_len + n + 1 > r->resp_cap) {
        size_t cap = r->resp_cap ? r->resp_cap : 1024;
        while (cap < r->resp_len + n + 1)
            cap *= 2;
        char *nb = realloc(r->resp, cap);
        if (!nb)
            return 0;
        r->resp = nb;
        r->resp_cap = cap;
    }
    memcpy(r->resp + r->resp_len, data, n);
    r->resp_len += n;
    r->resp[r->resp_len] = '\0';
    return n;
}

static void request_free(struct request *r)
{
    struct reg_etcd *e = r->e;
    ev_timer_stop(e->loop, &r->pause);
    if (r->easy && e->n_spare < SPARE_EASY) {
        curl_multi_remove_handle(e->multi, r->easy); /* a no-op when it was */
        e->spare[e->n_spare++] = r->easy;
    } else if (r->easy) {
        curl_easy_cleanup(r->easy);
    }
    free(r->body);
    free(r->resp);
    free(r);
}

static void unlink_request(struct reg_etcd *e, struct request *r)
{
    if (r->prev)
        r->prev->next = r->next;
    else if (e->requests == r)
        e->requests = r->next;
    if (r->next)
        r->next->prev = r->prev;
    r->prev = r->next = NULL;
}

/* Start one try of r on endpoint (first_endpoint + tries). */
static int send_try(struct reg_etcd *e, struct request *r)
{
    char url[REG_ETCD_ENDPOINT_MAX + 64];
    r->endpoint = (r->first_endpoint + r->tries) % e->conf.n_endpoints;
    snprintf(url, sizeof url, "%s%s", e->conf.endpoints[r->endpoint], r->path);
    if (!r->easy && e->n_spare)
        r->easy = e->spare[--e->n_spare];
    if (!r->easy)
        r->easy = curl_easy_init();
    else
        curl_easy_reset(r->easy);
    if (!r->easy)
        return -1;
    r->resp_len = 0;
    r->too_large = false;
    r->curl_err[0] = '\0';
    CURL *c = r->easy;
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, r->body);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, e->headers);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(c, CURLOPT_PRIVATE, r);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, r->curl_err);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, (long)e->conf.connect_timeout_ms);
    curl_easy_setopt(c, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(c, CURLOPT_TCP_KEEPIDLE, 5L);
    curl_easy_setopt(c, CURLOPT_TCP_KEEPINTVL, 2L);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    if (r->deadline_ms) {
        /* One try gets its share of the time, so a member that holds a
         * request (a follower whose leader just died) costs one share
         * and the others still get theirs. */
        uint64_t now = ev_clock_ms();
        uint64_t left = r->deadline_ms > now ? r->deadline_ms - now : 1;
        uint64_t share = e->conf.request_timeout_ms / e->conf.n_endpoints;
        if (share < TRY_MIN_MS)
            share = TRY_MIN_MS;
        curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)(left < share ? left : share));
    }
    if (curl_multi_add_handle(e->multi, c) != CURLM_OK)
        return -1;
    return 0;
}

static void on_pause(struct ev_loop *loop, struct ev_timer *t);

static struct request *request_new(struct reg_etcd *e, enum req_kind kind, const char *path, json_t *body,
                                   reg_etcd_cb *cb, void *arg)
{
    struct request *r = calloc(1, sizeof *r);
    if (!r) {
        json_decref(body);
        return NULL;
    }
    r->e = e;
    r->kind = kind;
    r->path = path;
    r->cb = cb;
    r->arg = arg;
    r->body = body ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    if (!r->body) {
        free(r);
        return NULL;
    }
    r->first_endpoint = e->current;
    ev_timer_init(&r->pause, on_pause, r);
    if (kind != REQ_WATCH)
        r->deadline_ms = ev_clock_ms() + e->conf.request_timeout_ms;
    return r;
}

/* Queue a unary request; -1 (nothing queued, no callback) out of memory. */
static int submit(struct reg_etcd *e, enum req_kind kind, const char *path, json_t *body, reg_etcd_cb *cb,
                  void *arg)
{
    if (!body)
        return -1;
    struct request *r = request_new(e, kind, path, body, cb, arg);
    if (!r)
        return -1;
    if (send_try(e, r) < 0) {
        request_free(r);
        return -1;
    }
    r->next = e->requests;
    if (e->requests)
        e->requests->prev = r;
    e->requests = r;
    e->st.requests++;
    return 0;
}

/* Worth another endpoint: it could not be reached, or said it cannot
 * serve now (HTTP 5xx, gRPC Unavailable = 14). */
static bool retriable(CURLcode rc, long status, int grpc_code)
{
    if (rc != CURLE_OK)
        return rc != CURLE_WRITE_ERROR && rc != CURLE_OUT_OF_MEMORY;
    return status >= 500 || grpc_code == 14;
}

static void call_back(struct request *r, bool ok, const char *reason, const struct reg_etcd_reply *reply)
{
    static const struct reg_etcd_reply none;
    struct reg_etcd_result res = {
        .ok = ok,
        .reason = ok ? NULL : reason,
        .endpoint = r->e->conf.endpoints[r->endpoint],
        .reply = reply ? reply : &none,
    };
    if (r->cb)
        r->cb(r->arg, &res);
}

/* Decode a 200 answer and call back. */
static void answer(struct reg_etcd *e, struct request *r)
{
    struct reg_etcd_reply reply;
    char why[200], reason[REASON_MAX];
    int rc;
    const char *text = r->resp ? r->resp : "";
    size_t len = r->resp_len;
    if (r->kind == REQ_KEEPALIVE) {
        /* A stream of one message: take the first line. */
        const char *nl = memchr(text, '\n', len);
        rc = reg_etcd_parse_keepalive(text, nl ? (size_t)(nl - text) : len, &reply, why, sizeof why);
    } else {
        rc = reg_etcd_parse_reply(text, len, &reply, why, sizeof why);
    }
    e->current = r->endpoint;
    if (rc < 0) {
        snprintf(reason, sizeof reason, "etcd %s%s: a bad answer: %s", e->conf.endpoints[r->endpoint], r->path, why);
        e->st.failed++;
        call_back(r, false, reason, NULL);
        return;
    }
    call_back(r, true, NULL, &reply);
    reg_etcd_reply_free(&reply);
}

static void watch_stream_ended(struct reg_etcd_watch *w, CURLcode rc, long status, struct request *r);
static void fail_request(struct reg_etcd *e, struct request *r, const char *why);

static void finish(struct reg_etcd *e, struct request *r, CURLcode rc)
{
    long status = 0;
    curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &status);
    if (r->kind == REQ_WATCH) {
        watch_stream_ended(r->watch, rc, status, r);
        return;
    }
    if (rc == CURLE_OK && status == 200) {
        unlink_request(e, r);
        answer(e, r);
        request_free(r);
        return;
    }
    char why[200];
    int grpc = -1;
    if (rc != CURLE_OK)
        snprintf(why, sizeof why, "%.150s", r->too_large ? "the answer is too large" : *r->curl_err ? r->curl_err
                                                                                             : curl_easy_strerror(rc));
    else {
        char msg[160];
        reg_etcd_error_reason(r->resp, r->resp_len, &grpc, msg, sizeof msg);
        snprintf(why, sizeof why, "HTTP %ld: %s", status, msg);
    }
    bool retry = retriable(rc, status, grpc);
    if (retry && e->current == r->endpoint) /* new requests start elsewhere */
        e->current = (r->endpoint + 1) % e->conf.n_endpoints;
    uint64_t now = ev_clock_ms();
    if (retry && now + 1 < r->deadline_ms) {
        /* Another try while time is left: at once on an endpoint not yet
         * tried in this round, after a pause when a round is over. */
        r->tries++;
        e->st.retries++;
        if (r->tries % e->conf.n_endpoints) {
            if (send_try(e, r) == 0)
                return;
            snprintf(why, sizeof why, "out of memory");
        } else {
            uint64_t left = r->deadline_ms - now;
            r->paused = true;
            ev_timer_start(e->loop, &r->pause, left < ROUND_PAUSE_MS ? left : ROUND_PAUSE_MS);
            return;
        }
    }
    fail_request(e, r, why);
}

/* Give up on r: call back with why (of the last try) and free it. */
static void fail_request(struct reg_etcd *e, struct request *r, const char *why)
{
    char reason[REASON_MAX];
    if (r->tries)
        snprintf(reason, sizeof reason, "etcd: no endpoint answered (%zu tries over %zu endpoints); the last, %s: %.150s",
                 r->tries + 1, e->conf.n_endpoints, e->conf.endpoints[r->endpoint], why);
    else
        snprintf(reason, sizeof reason, "etcd %s: %.150s", e->conf.endpoints[r->endpoint], why);
    unlink_request(e, r);
    e->st.failed++;
    call_back(r, false, reason, NULL);
    request_free(r);
}

/* The pause between rounds is over: the next try. */
static void on_pause(struct ev_loop *loop, struct ev_timer *t)
{
    struct request *r = t->data;
    r->paused = false;
    if (send_try(r->e, r) < 0)
        fail_request(r->e, r, "out of memory");
}

static void drain_watches(struct reg_etcd *e);

static void process(struct reg_etcd *e)
{
    if (e->in_process)
        return;
    e->in_process = true;
    drain_watches(e); /* what came before a stream ended */
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(e->multi, &left))) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        struct request *r = NULL;
        CURLcode rc = msg->data.result;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&r);
        curl_multi_remove_handle(e->multi, msg->easy_handle);
        if (r)
            finish(e, r, rc);
    }
    drain_watches(e);
    e->in_process = false;
}

/* ---- key-value ---------------------------------------------------------------------- */

/* key and, for a prefix, range_end into obj. */
static int set_range(json_t *obj, const void *key, size_t key_len, bool prefix)
{
    if (reg_etcd_json_set_bytes(obj, "key", key, key_len) < 0)
        return -1;
    if (!prefix)
        return 0;
    char stackbuf[512];
    char *end = key_len <= sizeof stackbuf ? stackbuf : malloc(key_len ? key_len : 1);
    if (!end)
        return -1;
    size_t n = reg_etcd_prefix_end(key, key_len, end);
    int rc = reg_etcd_json_set_bytes(obj, "range_end", end, n);
    if (end != stackbuf)
        free(end);
    return rc;
}

static json_t *put_obj(const void *key, size_t key_len, const void *value, size_t value_len, int64_t lease)
{
    json_t *o = json_object();
    if (!o || reg_etcd_json_set_bytes(o, "key", key, key_len) < 0 ||
        reg_etcd_json_set_bytes(o, "value", value, value_len) < 0 ||
        (lease && reg_etcd_json_set_int(o, "lease", lease) < 0)) {
        json_decref(o);
        return NULL;
    }
    return o;
}

static json_t *delete_obj(const void *key, size_t key_len, bool prefix)
{
    json_t *o = json_object();
    if (!o || set_range(o, key, key_len, prefix) < 0) {
        json_decref(o);
        return NULL;
    }
    return o;
}

int reg_etcd_put(struct reg_etcd *e, const void *key, size_t key_len, const void *value, size_t value_len,
                 int64_t lease, reg_etcd_cb *cb, void *arg)
{
    return submit(e, REQ_UNARY, "/v3/kv/put", put_obj(key, key_len, value, value_len, lease), cb, arg);
}

int reg_etcd_delete(struct reg_etcd *e, const void *key, size_t key_len, bool prefix, reg_etcd_cb *cb, void *arg)
{
    return submit(e, REQ_UNARY, "/v3/kv/deleterange", delete_obj(key, key_len, prefix), cb, arg);
}

int reg_etcd_range(struct reg_etcd *e, const void *key, size_t key_len, bool prefix, int64_t revision,
                   reg_etcd_cb *cb, void *arg)
{
    json_t *o = json_object();
    if (!o || set_range(o, key, key_len, prefix) < 0 ||
        (revision && reg_etcd_json_set_int(o, "revision", revision) < 0)) {
        json_decref(o);
        return -1;
    }
    return submit(e, REQ_UNARY, "/v3/kv/range", o, cb, arg);
}

static json_t *txn_ops(const struct reg_etcd_op *ops, size_t n)
{
    json_t *a = json_array();
    for (size_t i = 0; a && i < n; i++) {
        const struct reg_etcd_op *op = &ops[i];
        json_t *inner = op->kind == REG_ETCD_OP_PUT
                            ? put_obj(op->key, op->key_len, op->value, op->value_len, op->lease)
                            : delete_obj(op->key, op->key_len, op->kind == REG_ETCD_OP_DELETE_PREFIX);
        json_t *wrap = inner ? json_pack("{so}", op->kind == REG_ETCD_OP_PUT ? "request_put" : "request_delete_range",
                                         inner)
                             : NULL;
        if (!wrap || json_array_append_new(a, wrap) < 0) {
            json_decref(a);
            return NULL;
        }
    }
    return a;
}

static json_t *txn_cmp(const struct reg_etcd_cmp *c)
{
    static const char *const targets[] = {"VERSION", "CREATE", "MOD", "LEASE"};
    static const char *const fields[] = {"version", "create_revision", "mod_revision", "lease"};
    static const char *const results[] = {"EQUAL", "NOT_EQUAL", "GREATER", "LESS"};
    json_t *o = json_pack("{ssss}", "target", targets[c->target], "result", results[c->result]);
    if (!o || reg_etcd_json_set_bytes(o, "key", c->key, c->key_len) < 0 ||
        reg_etcd_json_set_int(o, fields[c->target], c->value) < 0) {
        json_decref(o);
        return NULL;
    }
    return o;
}

int reg_etcd_txn(struct reg_etcd *e, const struct reg_etcd_txn *t, reg_etcd_cb *cb, void *arg)
{
    json_t *cmps = json_array();
    for (size_t i = 0; cmps && i < t->n_cmps; i++) {
        json_t *c = txn_cmp(&t->cmps[i]);
        if (!c || json_array_append_new(cmps, c) < 0) {
            json_decref(cmps);
            cmps = NULL;
        }
    }
    json_t *succ = txn_ops(t->success, t->n_success), *failure = txn_ops(t->failure, t->n_failure);
    if (!cmps || !succ || !failure) {
        json_decref(cmps);
        json_decref(succ);
        json_decref(failure);
        return -1;
    }
    return submit(e, REQ_UNARY, "/v3/kv/txn", json_pack("{sososo}", "compare", cmps, "success", succ, "failure", failure),
                  cb, arg);
}

/* ---- leases -------------------------------------------------------------------------- */

static json_t *lease_obj(const char *name, int64_t v)
{
    json_t *o = json_object();
    if (!o || reg_etcd_json_set_int(o, name, v) < 0) {
        json_decref(o);
        return NULL;
    }
    return o;
}

int reg_etcd_lease_grant(struct reg_etcd *e, uint32_t ttl_s, reg_etcd_cb *cb, void *arg)
{
    return submit(e, REQ_UNARY, "/v3/lease/grant", lease_obj("TTL", ttl_s), cb, arg);
}

int reg_etcd_lease_keepalive(struct reg_etcd *e, int64_t lease, reg_etcd_cb *cb, void *arg)
{
    return submit(e, REQ_KEEPALIVE, "/v3/lease/keepalive", lease_obj("ID", lease), cb, arg);
}

int reg_etcd_lease_revoke(struct reg_etcd *e, int64_t lease, reg_etcd_cb *cb, void *arg)
{
    return submit(e, REQ_UNARY, "/v3/lease/revoke", lease_obj("ID", lease), cb, arg);
}

/* ---- watches ------------------------------------------------------------------------- */

static int watch_connect(struct reg_etcd_watch *w);

static void watch_set_state(struct reg_etcd_watch *w, bool up, const char *reason)
{
    if (w->up == up && up)
        return;
    w->up = up;
    if (w->cbs.state)
        w->cbs.state(w->cbs.arg, up, reason);
}

static void watch_retry_timer(struct ev_loop *loop, struct ev_timer *t)
{
    struct reg_etcd_watch *w = t->data;
    if (watch_connect(w) < 0) {
        watch_set_state(w, false, "out of memory");
        ev_timer_start(loop, &w->retry, w->backoff_ms);
    }
}

/* The stream is gone: say so and try again on the next endpoint after the
 * backoff. */
static void watch_schedule_reconnect(struct reg_etcd_watch *w, const char *reason)
{
    struct reg_etcd *e = w->e;
    reg_etcd_framer_free(&w->framer);
    w->has_data = false;
    w->failed = false;
    w->endpoint = (w->endpoint + 1) % e->conf.n_endpoints;
    e->st.watch_restarts++;
    ev_timer_start(e->loop, &w->retry, w->backoff_ms);
    w->backoff_ms = w->backoff_ms * 2 > WATCH_BACKOFF_MAX_MS ? WATCH_BACKOFF_MAX_MS : w->backoff_ms * 2;
    w->up = true; /* so the next call reports the change */
    watch_set_state(w, false, reason);
}

static void watch_stream_ended(struct reg_etcd_watch *w, CURLcode rc, long status, struct request *r)
{
    struct reg_etcd *e = r->e;
    char reason[REASON_MAX], why[200];
    if (w->failed)
        snprintf(why, sizeof why, "%.150s", w->fail_reason);
    else if (rc != CURLE_OK)
        snprintf(why, sizeof why, "%.150s", *r->curl_err ? r->curl_err : curl_easy_strerror(rc));
    else if (status != 200)
        snprintf(why, sizeof why, "HTTP %ld", status);
    else
        snprintf(why, sizeof why, "the stream ended");
    snprintf(reason, sizeof reason, "etcd %s watch: %s", e->conf.endpoints[r->endpoint], why);
    unlink_request(e, r);
    request_free(r);
    w->req = NULL;
    if (w->stopped)
        return; /* freed by drain_watches */
    watch_schedule_reconnect(w, reason);
}

static void watch_free(struct reg_etcd_watch *w)
{
    struct reg_etcd *e = w->e;
    ev_timer_stop(e->loop, &w->retry);
    if (w->req) {
        curl_multi_remove_handle(e->multi, w->req->easy);
        unlink_request(e, w->req);
        request_free(w->req);
    }
    if (w->prev)
        w->prev->next = w->next;
    else if (e->watches == w)
        e->watches = w->next;
    if (w->next)
        w->next->prev = w->prev;
    reg_etcd_framer_free(&w->framer);
    free(w->key);
    free(w->range_end);
    free(w);
}

/* End the stream from our side (a bad message): it reconnects. */
static void watch_drop_stream(struct reg_etcd_watch *w, const char *why)
{
    char reason[REASON_MAX];
    snprintf(reason, sizeof reason, "etcd %s watch: %s", w->e->conf.endpoints[w->endpoint], why);
    if (w->req) {
        curl_multi_remove_handle(w->e->multi, w->req->easy);
        unlink_request(w->e, w->req);
        request_free(w->req);
        w->req = NULL;
    }
    watch_schedule_reconnect(w, reason);
}

/* Handle one message; false when the stream was dropped or stopped. */
static bool watch_message(struct reg_etcd_watch *w, const char *text, size_t len)
{
    struct reg_etcd_watch_msg m;
    char why[200];
    if (reg_etcd_parse_watch(text, len, &m, why, sizeof why) < 0) {
        watch_drop_stream(w, why);
        return false;
    }
    switch (m.kind) {
    case REG_ETCD_WATCH_CREATED:
        w->backoff_ms = WATCH_BACKOFF_MIN_MS;
        w->e->current = w->endpoint;
        watch_set_state(w, true, NULL);
        break;
    case REG_ETCD_WATCH_EVENTS: {
        int64_t last = m.events[m.n_events - 1].kv.mod_revision;
        if (last >= w->next_rev)
            w->next_rev = last + 1;
        if (w->cbs.events)
            w->cbs.events(w->cbs.arg, m.events, m.n_events, last);
        break;
    }
    case REG_ETCD_WATCH_PROGRESS:
        if (m.header.revision >= w->next_rev)
            w->next_rev = m.header.revision + 1;
        break;
    case REG_ETCD_WATCH_CANCELED:
        if (m.compact_revision > 0) {
            w->stopped = true;
            if (w->cbs.compacted)
                w->cbs.compacted(w->cbs.arg, m.compact_revision);
            reg_etcd_watch_msg_free(&m);
            return false;
        }
        snprintf(why, sizeof why, "canceled by the server%s%s", *m.reason ? ": " : "", m.reason);
        reg_etcd_watch_msg_free(&m);
        watch_drop_stream(w, why);
        return false;
    }
    reg_etcd_watch_msg_free(&m);
    return !w->stopped;
}

static void drain_watches(struct reg_etcd *e)
{
    struct reg_etcd_watch *w = e->watches, *next;
    for (; w; w = next) {
        next = w->next;
        const char *msg;
        size_t len;
        while (!w->stopped && w->has_data && reg_etcd_framer_next(&w->framer, &msg, &len))
            if (!watch_message(w, msg, len))
                break;
        w->has_data = false;
        if (w->stopped) {
            /* next may have been freed by a callback: start over. */
            watch_free(w);
            next = e->watches;
        }
    }
}

static int watch_connect(struct reg_etcd_watch *w)
{
    struct reg_etcd *e = w->e;
    json_t *create = json_object();
    if (!create || reg_etcd_json_set_bytes(create, "key", w->key, w->key_len) < 0 ||
        (w->range_end && reg_etcd_json_set_bytes(create, "range_end", w->range_end, w->range_end_len) < 0) ||
        (w->next_rev > 0 && reg_etcd_json_set_int(create, "start_revision", w->next_rev) < 0) ||
        json_object_set_new(create, "prev_kv", json_true()) < 0) {
        json_decref(create);
        return -1;
    }
    struct request *r = request_new(e, REQ_WATCH, "/v3/watch", json_pack("{so}", "create_request", create), NULL, NULL);
    if (!r)
        return -1;
    r->watch = w;
    r->first_endpoint = w->endpoint;
    reg_etcd_framer_init(&w->framer);
    if (send_try(e, r) < 0) {
        request_free(r);
        return -1;
    }
    r->next = e->requests;
    if (e->requests)
        e->requests->prev = r;
    e->requests = r;
    w->req = r;
    return 0;
}

struct reg_etcd_watch *reg_etcd_watch_start(struct reg_etcd *e, const void *key, size_t key_len, bool prefix,
                                            int64_t start_revision, const struct reg_etcd_watch_cbs *cbs,
                                            char *err, size_t errlen)
{
    struct reg_etcd_watch *w = calloc(1, sizeof *w);
    if (!w || !(w->key = malloc(key_len ? key_len : 1)) ||
        (prefix && !(w->range_end = malloc(key_len ? key_len : 1)))) {
        if (w)
            free(w->key);
        free(w);
        errbuf_fail(err, errlen, "out of memory");
        return NULL;
    }
    memcpy(w->key, key, key_len);
    w->key_len = key_len;
    if (prefix)
        w->range_end_len = reg_etcd_prefix_end(key, key_len, w->range_end);
    w->e = e;
    w->cbs = *cbs;
    w->next_rev = start_revision;
    w->endpoint = e->current;
    w->backoff_ms = WATCH_BACKOFF_MIN_MS;
    ev_timer_init(&w->retry, watch_retry_timer, w);
    w->next = e->watches;
    if (e->watches)
        e->watches->prev = w;
    e->watches = w;
    if (watch_connect(w) < 0) {
        w->stopped = true;
        watch_free(w);
        errbuf_fail(err, errlen, "out of memory");
        return NULL;
    }
    return w;
}

int64_t reg_etcd_watch_revision(const struct reg_etcd_watch *w)
{
    return w->next_rev - 1;
}

bool reg_etcd_watch_up(const struct reg_etcd_watch *w)
{
    return w->up;
}

void reg_etcd_watch_stop(struct reg_etcd_watch *w)
{
    if (!w)
        return;
    w->stopped = true;
    if (!w->e->in_process)
        watch_free(w);
    /* else drain_watches frees it once the current callback returns */
}

/* ---- the client ------------------------------------------------------------------------ */

struct reg_etcd *reg_etcd_new(struct ev_loop *loop, const struct reg_etcd_conf *c, char *err, size_t errlen)
{
    if (reg_etcd_conf_check(c, err, errlen) < 0)
        return NULL;
    static bool curl_ready;
    if (!curl_ready) {
        if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
            errbuf_fail(err, errlen, "libcurl: cannot initialise");
            return NULL;
        }
        curl_ready = true;
    }
    struct reg_etcd *e = calloc(1, sizeof *e);
    if (!e) {
        errbuf_fail(err, errlen, "out of memory");
        return NULL;
    }
    e->loop = loop;
    e->conf = *c;
    e->multi = curl_multi_init();
    struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
    if (h)
        e->headers = h;
    /* No "Expect: 100-continue" round trip for large bodies; ask for a
     * member that has a leader (gRPC metadata through the gateway). */
    if (h && (h = curl_slist_append(e->headers, "Expect:")))
        h = curl_slist_append(e->headers, "Grpc-Metadata-hasleader: true");
    if (!e->multi || !h) {
        reg_etcd_free(e);
        errbuf_fail(err, errlen, "out of memory");
        return NULL;
    }
    ev_timer_init(&e->timer, on_timer, e);
    curl_multi_setopt(e->multi, CURLMOPT_SOCKETFUNCTION, socket_cb);
    curl_multi_setopt(e->multi, CURLMOPT_SOCKETDATA, e);
    curl_multi_setopt(e->multi, CURLMOPT_TIMERFUNCTION, timer_cb);
    curl_multi_setopt(e->multi, CURLMOPT_TIMERDATA, e);
    return e;
}

void reg_etcd_free(struct reg_etcd *e)
{
    if (!e)
        return;
    while (e->watches) {
        e->watches->stopped = true;
        watch_free(e->watches);
    }
    while (e->requests) {
        struct request *r = e->requests;
        curl_multi_remove_handle(e->multi, r->easy);
        unlink_request(e, r);
        request_free(r);
    }
    ev_timer_stop(e->loop, &e->timer);
    if (e->multi)
        curl_multi_cleanup(e->multi);
    while (e->n_spare)
        curl_easy_cleanup(e->spare[--e->n_spare]);
    while (e->socks) { /* any curl did not hand back */
        struct sock *s = e->socks;
        ev_io_stop(e->loop, &s->io);
        sock_unlink(e, s);
        free(s);
    }
    curl_slist_free_all(e->headers);
    free(e);
}
