/* See http.h. */
#include "client/http.h"

#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/errbuf.h"

struct cl_http {
    sluice_client *c;
    CURL *easy;
    CURLM *multi;
};

struct cl_http *cl_http_new(sluice_client *c)
{
    struct cl_http *h = calloc(1, sizeof *h);
    if (!h)
        return NULL;
    h->c = c;
    h->easy = curl_easy_init();
    h->multi = curl_multi_init();
    if (!h->easy || !h->multi) {
        cl_http_free(h);
        return NULL;
    }
    return h;
}

void cl_http_free(struct cl_http *h)
{
    if (!h)
        return;
    if (h->multi)
        curl_multi_cleanup(h->multi);
    if (h->easy)
        curl_easy_cleanup(h->easy);
    free(h);
}

void cl_http_wake(struct cl_http *h)
{
    if (h)
        curl_multi_wakeup(h->multi);
}

void cl_resp_free(struct cl_resp *r)
{
    free(r->body);
    r->body = NULL;
    r->len = 0;
}

/* ---- nodes ---------------------------------------------------------------- */

static int add_node(sluice_client *c, const char *item, size_t len, char *err, size_t errlen)
{
    const char *host = item;
    if (len > 7 && strncmp(item, "http://", 7) == 0) {
        host = item + 7;
        len -= 7;
    }
    while (len > 0 && host[len - 1] == '/')
        len--;
    if (len == 0 || len >= CL_NODE_NAME)
        return errbuf_fail(err, errlen, "registries: \"%.*s\": expected host:port", (int)len, host);
    for (size_t i = 0; i < len; i++)
        if (host[i] == '/' || host[i] == '?' || host[i] == '#' || host[i] == '@' || host[i] <= ' ')
            return errbuf_fail(err, errlen, "registries: \"%.*s\": expected host:port", (int)len, host);
    const char *colon = memrchr(host, ':', len);
    if (!colon || colon == host || colon == host + len - 1)
        return errbuf_fail(err, errlen, "registries: \"%.*s\": expected host:port", (int)len, host);
    for (const char *p = colon + 1; p < host + len; p++)
        if (*p < '0' || *p > '9')
            return errbuf_fail(err, errlen, "registries: \"%.*s\": the port is not a number", (int)len, host);
    long port = strtol(colon + 1, NULL, 10);
    if (port < 1 || port > 65535)
        return errbuf_fail(err, errlen, "registries: \"%.*s\": the port must be 1..65535", (int)len, host);
    struct cl_node *nodes = realloc(c->nodes, (c->n_nodes + 1) * sizeof *nodes);
    if (!nodes)
        return errbuf_fail(err, errlen, "out of memory");
    c->nodes = nodes;
    struct cl_node *n = &c->nodes[c->n_nodes++];
    memset(n, 0, sizeof *n);
    snprintf(n->name, sizeof n->name, "%.*s", (int)len, host);
    snprintf(n->url, sizeof n->url, "http://%.*s", (int)len, host);
    return 0;
}

int cl_nodes_parse(sluice_client *c, const char *list, char *err, size_t errlen)
{
    for (const char *p = list; *p;) {
        while (*p == ',' || *p == ' ')
            p++;
        if (!*p)
            break;
        size_t len = strcspn(p, ", ");
        if (add_node(c, p, len, err, errlen) < 0)
            return -1;
        p += len;
    }
    return 0;
}

/* ---- one request to one node ----------------------------------------------- */

struct body_buf {
    char *data;
    size_t len, cap;
};

#define CL_BODY_MAX (64u << 20)

static size_t on_body(char *ptr, size_t size, size_t nmemb, void *arg)
{
    struct body_buf *b = arg;
    size_t n = size * nmemb;
    if (b->len + n + 1 > CL_BODY_MAX)
        return 0;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *d = realloc(b->data, cap);
        if (!d)
            return 0;
        b->data = d;
        b->cap = cap;
    }
    memcpy(b->data + b->len, ptr, n);
    b->len += n;
    b->data[b->len] = '\0';
    return n;
}

/* Drive the transfer on the multi handle, calling check between waits.
 * CURLE_OK or the transfer's error; CURLE_ABORTED_BY_CALLBACK when check
 * said so. */
static CURLcode run(struct cl_http *h, bool (*check)(void *), void *arg)
{
    curl_multi_add_handle(h->multi, h->easy);
    CURLcode result = CURLE_OK;
    for (;;) {
        int running = 0;
        if (curl_multi_perform(h->multi, &running) != CURLM_OK) {
            result = CURLE_FAILED_INIT;
            break;
        }
        if (!running) {
            int left;
            CURLMsg *m = curl_multi_info_read(h->multi, &left);
            result = m && m->msg == CURLMSG_DONE ? m->data.result : CURLE_OK;
            break;
        }
        curl_multi_poll(h->multi, NULL, 0, 100, NULL);
        if (check && check(arg)) {
            result = CURLE_ABORTED_BY_CALLBACK;
            break;
        }
    }
    curl_multi_remove_handle(h->multi, h->easy);
    return result;
}

static CURLcode request_node(struct cl_http *h, const struct cl_node *node, const char *method, const char *path,
                             const char *body, uint32_t timeout_ms, bool (*check)(void *), void *arg,
                             struct body_buf *bb, long *status)
{
    sluice_client *c = h->c;
    char url[1024];
    snprintf(url, sizeof url, "%s%s", node->url, path);
    struct curl_slist *hdrs = curl_slist_append(NULL, "Accept: application/json");
    if (body)
        hdrs = curl_slist_append(hdrs, "Content-Type: application/json");
    if (c->token) {
        char tok[1100];
        snprintf(tok, sizeof tok, "X-Sluice-Token: %s", c->token);
        hdrs = curl_slist_append(hdrs, tok);
    }
    uint32_t connect_ms = c->cfg.request_timeout_ms < timeout_ms ? c->cfg.request_timeout_ms : timeout_ms;
    CURL *e = h->easy;
    curl_easy_reset(e);
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)timeout_ms);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)connect_ms);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, bb);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http");
    curl_easy_setopt(e, CURLOPT_PROXY, "");
    if (body) {
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
    } else if (strcmp(method, "GET") == 0) {
        curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
    }
    CURLcode rc = run(h, check, arg);
    *status = 0;
    if (rc == CURLE_OK)
        curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, status);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, NULL);
    curl_slist_free_all(hdrs);
    return rc;
}

/* ---- across nodes ------------------------------------------------------------ */

#define BACKOFF_MIN_MS 250u
#define BACKOFF_MAX_MS 10000u

static void node_failed(sluice_client *c, struct cl_node *n)
{
    uint32_t fails = atomic_fetch_add(&n->fails, 1) + 1;
    uint64_t backoff = BACKOFF_MIN_MS;
    for (uint32_t i = 1; i < fails && backoff < BACKOFF_MAX_MS; i++)
        backoff *= 2;
    if (backoff > BACKOFF_MAX_MS)
        backoff = BACKOFF_MAX_MS;
    atomic_store(&n->fail_until_ms, cl_now_ms() + backoff);
    atomic_fetch_add(&c->st.requests_failed, 1);
}

static void node_ok(sluice_client *c, size_t i)
{
    atomic_store(&c->nodes[i].fails, 0);
    atomic_store(&c->nodes[i].fail_until_ms, 0);
    size_t cur = atomic_load(&c->node_cur);
    if (cur != i && atomic_compare_exchange_strong(&c->node_cur, &cur, i)) {
        atomic_fetch_add(&c->st.node_switches, 1);
        cl_log(c, SLUICE_LOG_INFO, "registry: now using node %s", c->nodes[i].name);
    }
    atomic_store(&c->st.registry_reachable, true);
}

/* The order to try nodes in: from the one in use on, those not backed off
 * first. */
static size_t try_order(sluice_client *c, size_t *order)
{
    size_t n = c->n_nodes, k = 0, cur = atomic_load(&c->node_cur);
    uint64_t now = cl_now_ms();
    for (int pass = 0; pass < 2; pass++)
        for (size_t j = 0; j < n; j++) {
            size_t i = (cur + j) % n;
            bool backed_off = atomic_load(&c->nodes[i].fail_until_ms) > now;
            if (backed_off == (pass == 1))
                order[k++] = i;
        }
    return k;
}

int cl_http_request(struct cl_http *h, const char *method, const char *path, const char *body, uint32_t timeout_ms,
                    bool (*check)(void *arg), void *arg, struct cl_resp *out)
{
    sluice_client *c = h->c;
    memset(out, 0, sizeof *out);
    if (c->n_nodes == 0)
        return CL_HTTP_FAILED;
    if (!timeout_ms)
        timeout_ms = c->cfg.request_timeout_ms;
    size_t stack_order[16];
    size_t *order = c->n_nodes <= 16 ? stack_order : malloc(c->n_nodes * sizeof *order);
    if (!order)
        return CL_HTTP_FAILED;
    size_t n = try_order(c, order);
    int rc = CL_HTTP_FAILED;
    for (size_t k = 0; k < n; k++) {
        struct cl_node *node = &c->nodes[order[k]];
        struct body_buf bb = {0};
        long status = 0;
        CURLcode cr = request_node(h, node, method, path, body, timeout_ms, check, arg, &bb, &status);
        if (cr == CURLE_ABORTED_BY_CALLBACK) {
            free(bb.data);
            rc = CL_HTTP_ABORTED;
            break;
        }
        bool failed = cr != CURLE_OK || status >= 500;
        if (failed) {
            cl_log(c, SLUICE_LOG_DEBUG, "registry %s: %s %s: %s", node->name, method, path,
                   cr != CURLE_OK ? curl_easy_strerror(cr) : "server error");
            node_failed(c, node);
        }
        if (!failed || (cr == CURLE_OK && k + 1 == n)) {
            cl_resp_free(out);
            out->status = status;
            out->body = bb.data;
            out->len = bb.len;
            out->node = order[k];
            cl_copy(out->node_name, sizeof out->node_name, node->name);
            if (!failed)
                node_ok(c, order[k]);
            rc = failed ? CL_HTTP_FAILED : CL_HTTP_OK;
            break;
        }
        free(bb.data);
    }
    if (rc == CL_HTTP_FAILED)
        atomic_store(&c->st.registry_reachable, false);
    if (order != stack_order)
        free(order);
    return rc;
}
