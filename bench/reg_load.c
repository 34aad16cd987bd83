/* A load generator for the registry's HTTP API (and, for the floor, etcd's
 * v3 JSON gateway), used by bench/registry.sh.
 *
 *   reg_load --target HOST:PORT --mode MODE [options]
 *
 * Modes:
 *   register   every connection registers persistent instances, one request
 *              in flight per connection (a registration is answered once
 *              durable, so concurrency is what lets the store group commits)
 *   heartbeat  registers --instances ephemeral instances (not timed), then
 *              every connection heartbeats them round-robin
 *   etcd-put   every connection puts keys through etcd's /v3/kv/put: the
 *              floor under the registry's writes on an etcd cluster
 *   watch      --watchers connections wait on one service with blocking
 *              queries (?index=N&wait=60s); a control connection changes an
 *              instance's weight --changes times; each watcher's latency is
 *              the time from sending the change to receiving its wake-up
 *
 * Output: one line of "key=value" pairs (rate=..., p50_ms=..., p99_ms=...,
 * errors=...) that bench/registry.sh reads. One thread, epoll, keep-alive;
 * every run is bounded by --duration (or, for watch, by --changes and a
 * time limit).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define RESP_MAX 65536

enum mode { MODE_REGISTER, MODE_HEARTBEAT, MODE_ETCD_PUT, MODE_WATCH };

struct opts {
    struct sockaddr_in target;
    char host[64];
    enum mode mode;
    int conns;
    double duration_s;
    int instances;
    int watchers;
    int changes;
    const char *token;
    const char *service;
};

struct conn {
    int fd;
    char out[2048];
    size_t out_len, out_off;
    char in[RESP_MAX];
    size_t in_len;
    double sent_at;        /* when the request in flight was sent */
    bool busy;             /* a request is in flight */
    uint64_t seq;          /* this connection's next item */
    uint64_t index;        /* watch: the index waited on */
    bool is_control;
};

static struct opts O;
static int ep;
static uint64_t n_ok, n_err;
static double *lat;        /* watch latencies, ms */
static size_t n_lat, cap_lat;
static double change_sent_at;
static int changes_done;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *fmt, const char *arg)
{
    fprintf(stderr, "reg_load: ");
    fprintf(stderr, fmt, arg);
    fputc('\n', stderr);
    exit(1);
}

static void b64(const char *in, char *out, size_t cap)
{
    static const char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t n = strlen(in), o = 0;
    for (size_t i = 0; i < n && o + 5 < cap; i += 3) {
        uint32_t v = (uint32_t)(unsigned char)in[i] << 16;
        if (i + 1 < n)
            v |= (uint32_t)(unsigned char)in[i + 1] << 8;
        if (i + 2 < n)
            v |= (unsigned char)in[i + 2];
        out[o++] = tbl[(v >> 18) & 63];
        out[o++] = tbl[(v >> 12) & 63];
        out[o++] = i + 1 < n ? tbl[(v >> 6) & 63] : '=';
        out[o++] = i + 2 < n ? tbl[v & 63] : '=';
    }
    out[o] = 0;
}

static void put_request(struct conn *c, const char *method, const char *path, const char *body)
{
    char auth[300] = "";
    if (O.token)
        snprintf(auth, sizeof auth, "X-Sluice-Token: %s\r\n", O.token);
    size_t blen = body ? strlen(body) : 0;
    int n = snprintf(c->out, sizeof c->out,
                     "%s %s HTTP/1.1\r\nHost: %s\r\n%sContent-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s",
                     method, path, O.host, auth, blen, body ? body : "");
    if (n < 0 || (size_t)n >= sizeof c->out)
        die("request too long: %s", path);
    c->out_len = (size_t)n;
    c->out_off = 0;
    c->busy = true;
    c->sent_at = now_s();
}

/* Connection conn_no's next item: unique over the whole run. */
static uint64_t next_item(struct conn *c, int conn_no)
{
    return c->seq++ * (uint64_t)O.conns + (uint64_t)conn_no;
}

/* Register instance k (of service PREFIX<k % 16>). */
static void register_request(struct conn *c, uint64_t k, bool ephemeral)
{
    char path[256], body[256];
    snprintf(path, sizeof path, "/api/registry/services/%s%u/instances/i%llu", O.service, (unsigned)(k % 16),
             (unsigned long long)k);
    snprintf(body, sizeof body,
             "{\"address\":\"10.%u.%u.%u\",\"port\":%u,\"weight\":100,\"datacenter\":\"dc%u\",\"region\":\"r1\","
             "\"ephemeral\":%s}",
             (unsigned)(k >> 16) & 255, (unsigned)(k >> 8) & 255, (unsigned)k & 255, 1000 + (unsigned)(k % 50000),
             (unsigned)(k % 4), ephemeral ? "true" : "false");
    put_request(c, "PUT", path, body);
}

static void heartbeat_request(struct conn *c, int conn_no)
{
    uint64_t k = next_item(c, conn_no) % (uint64_t)O.instances;
    char path[256];
    snprintf(path, sizeof path, "/api/registry/services/%s%u/instances/i%llu/heartbeat", O.service,
             (unsigned)(k % 16), (unsigned long long)k);
    put_request(c, "POST", path, NULL);
}

static void etcd_put_request(struct conn *c, int conn_no)
{
    uint64_t k = next_item(c, conn_no);
    char key[128], val[256], kb[200], vb[400], body[700];
    snprintf(key, sizeof key, "/bench/instances/%s%u/i%llu", O.service, (unsigned)(k % 16), (unsigned long long)k);
    snprintf(val, sizeof val,
             "{\"address\":\"10.%u.%u.%u\",\"port\":%u,\"weight\":100,\"datacenter\":\"dc%u\",\"region\":\"r1\"}",
             (unsigned)(k >> 16) & 255, (unsigned)(k >> 8) & 255, (unsigned)k & 255, 1000 + (unsigned)(k % 50000),
             (unsigned)(k % 4));
    b64(key, kb, sizeof kb);
    b64(val, vb, sizeof vb);
    snprintf(body, sizeof body, "{\"key\":\"%s\",\"value\":\"%s\"}", kb, vb);
    put_request(c, "POST", "/v3/kv/put", body);
}

static void watch_request(struct conn *c)
{
    char path[256];
    snprintf(path, sizeof path, "/api/registry/services/%s?index=%llu&wait=60s", O.service,
             (unsigned long long)c->index);
    put_request(c, "GET", path, NULL);
}

static void change_request(struct conn *c)
{
    char path[256], body[64];
    snprintf(path, sizeof path, "/api/registry/services/%s/instances/w0", O.service);
    snprintf(body, sizeof body, "{\"weight\":%d}", 100 + changes_done + 1);
    put_request(c, "PATCH", path, body);
    change_sent_at = c->sent_at;
}

static int connect_one(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        die("socket: %s", strerror(errno));
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(fd, (struct sockaddr *)&O.target, sizeof O.target) < 0 && errno != EINPROGRESS)
        die("connect: %s", strerror(errno));
    return fd;
}

/* Blocking exchange on a fresh connection: for setup steps. Returns the
 * status; the body (NUL-terminated) goes to body when given. */
static int exchange(const char *method, const char *path, const char *req_body, char *body, size_t cap)
{
    struct conn c = {0};
    c.fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (c.fd < 0 || connect(c.fd, (struct sockaddr *)&O.target, sizeof O.target) < 0)
        die("cannot connect for setup: %s", strerror(errno));
    put_request(&c, method, path, req_body);
    if (write(c.fd, c.out, c.out_len) != (ssize_t)c.out_len)
        die("setup write: %s", strerror(errno));
    size_t len = 0;
    int status = -1;
    for (;;) {
        ssize_t r = read(c.fd, c.in + len, sizeof c.in - 1 - len);
        if (r <= 0)
            break;
        len += (size_t)r;
        c.in[len] = 0;
        char *end = strstr(c.in, "\r\n\r\n");
        if (!end)
            continue;
        char *cl = strcasestr(c.in, "\r\ncontent-length:");
        size_t want = cl && cl < end ? strtoul(cl + 17, NULL, 10) : 0;
        if (len >= (size_t)(end + 4 - c.in) + want) {
            sscanf(c.in, "HTTP/1.%*d %d", &status);
            if (body)
                snprintf(body, cap, "%.*s", (int)want, end + 4);
            break;
        }
    }
    close(c.fd);
    return status;
}

static uint64_t body_index(const char *body)
{
    const char *p = strstr(body, "\"index\"");
    if (!p)
        return 0;
    p = strchr(p, ':');
    return p ? strtoull(p + 1, NULL, 10) : 0;
}

static void next_request(struct conn *c, int conn_no)
{
    switch (O.mode) {
    case MODE_REGISTER: register_request(c, next_item(c, conn_no), false); break;
    case MODE_HEARTBEAT: heartbeat_request(c, conn_no); break;
    case MODE_ETCD_PUT: etcd_put_request(c, conn_no); break;
    case MODE_WATCH: watch_request(c); break;
    }
}

static void arm(struct conn *c, int conn_no, uint32_t events)
{
    struct epoll_event ev = {.events = events, .data.u32 = (uint32_t)conn_no};
    if (epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev) < 0 && epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev) < 0)
        die("epoll_ctl: %s", strerror(errno));
}

/* One whole response in c->in? Returns its total length, 0 if not yet. */
static size_t response_complete(struct conn *c, int *status)
{
    c->in[c->in_len] = 0;
    char *end = strstr(c->in, "\r\n\r\n");
    if (!end)
        return 0;
    char *cl = strcasestr(c->in, "\r\ncontent-length:");
    size_t want = cl && cl < end ? strtoul(cl + 17, NULL, 10) : 0;
    size_t total = (size_t)(end + 4 - c->in) + want;
    if (c->in_len < total)
        return 0;
    if (sscanf(c->in, "HTTP/1.%*d %d", status) != 1)
        *status = -1;
    return total;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double pct(double p)
{
    if (!n_lat)
        return 0;
    size_t i = (size_t)(p * (double)(n_lat - 1) + 0.5);
    return lat[i];
}

static void usage(void)
{
    fputs("usage: reg_load --target HOST:PORT --mode register|heartbeat|etcd-put|watch\n"
          "                [--conns N] [--duration S] [--instances N] [--watchers N] [--changes N]\n"
          "                [--token T] [--service PREFIX]\n",
          stderr);
    exit(2);
}

static void parse_args(int argc, char **argv)
{
    static const struct option lo[] = {
        {"target", 1, 0, 't'}, {"mode", 1, 0, 'm'},      {"conns", 1, 0, 'c'},   {"duration", 1, 0, 'd'},
        {"instances", 1, 0, 'i'}, {"watchers", 1, 0, 'w'}, {"changes", 1, 0, 'n'}, {"token", 1, 0, 'T'},
        {"service", 1, 0, 's'}, {0, 0, 0, 0},
    };
    O.conns = 16;
    O.duration_s = 5;
    O.instances = 1000;
    O.watchers = 1000;
    O.changes = 50;
    O.service = "bench";
    const char *target = NULL, *mode = NULL;
    int ch;
    while ((ch = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (ch) {
        case 't': target = optarg; break;
        case 'm': mode = optarg; break;
        case 'c': O.conns = atoi(optarg); break;
        case 'd': O.duration_s = atof(optarg); break;
        case 'i': O.instances = atoi(optarg); break;
        case 'w': O.watchers = atoi(optarg); break;
        case 'n': O.changes = atoi(optarg); break;
        case 'T': O.token = optarg; break;
        case 's': O.service = optarg; break;
        default: usage();
        }
    }
    if (!target || !mode || O.conns < 1 || O.duration_s <= 0 || O.instances < 1 || O.watchers < 1 || O.changes < 1)
        usage();
    const char *colon = strrchr(target, ':');
    if (!colon || (size_t)(colon - target) >= sizeof O.host)
        usage();
    snprintf(O.host, sizeof O.host, "%.*s", (int)(colon - target), target);
    O.target.sin_family = AF_INET;
    O.target.sin_port = htons((uint16_t)atoi(colon + 1));
    if (inet_pton(AF_INET, O.host, &O.target.sin_addr) != 1)
        die("not an IPv4 address: %s", O.host);
    if (!strcmp(mode, "register"))
        O.mode = MODE_REGISTER;
    else if (!strcmp(mode, "heartbeat"))
        O.mode = MODE_HEARTBEAT;
    else if (!strcmp(mode, "etcd-put"))
        O.mode = MODE_ETCD_PUT;
    else if (!strcmp(mode, "watch"))
        O.mode = MODE_WATCH;
    else
        usage();
}

/* heartbeat: the ephemeral instances it beats, registered untimed.
 * watch: the instance whose weight changes, and the index to wait on. */
static uint64_t setup(void)
{
    char body[RESP_MAX];
    if (O.mode == MODE_HEARTBEAT) {
        struct conn c = {0};
        for (int k = 0; k < O.instances; k++) {
            register_request(&c, (uint64_t)k, true);
            char path[256], *sp = strchr(c.out, ' ');
            char *ep2 = sp ? strchr(sp + 1, ' ') : NULL;
            if (!ep2)
                die("%s", "bad request");
            snprintf(path, sizeof path, "%.*s", (int)(ep2 - sp - 1), sp + 1);
            const char *b = strstr(c.out, "\r\n\r\n") + 4;
            int st = exchange("PUT", path, b, body, sizeof body);
            if (st != 200)
                die("setup registration failed: %s", body);
        }
        return 0;
    }
    if (O.mode == MODE_WATCH) {
        char path[256];
        snprintf(path, sizeof path, "/api/registry/services/%s/instances/w0", O.service);
        int st = exchange("PUT", path, "{\"address\":\"10.9.9.9\",\"port\":80,\"weight\":100}", body, sizeof body);
        if (st != 200)
            die("setup registration failed: %s", body);
        snprintf(path, sizeof path, "/api/registry/services/%s", O.service);
        st = exchange("GET", path, NULL, body, sizeof body);
        if (st != 200)
            die("cannot read the service: %s", body);
        return body_index(body);
    }
    return 0;
}

int main(int argc, char **argv)
{
    parse_args(argc, argv);
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    uint64_t index0 = setup();
    int n = O.mode == MODE_WATCH ? O.watchers + 1 : O.conns;
    struct conn *conns = calloc((size_t)n, sizeof *conns);
    if (!conns)
        die("%s", "out of memory");
    ep = epoll_create1(EPOLL_CLOEXEC);
    for (int i = 0; i < n; i++) {
        conns[i].fd = connect_one();
        conns[i].index = index0;
        conns[i].is_control = O.mode == MODE_WATCH && i == O.watchers;
        if (!conns[i].is_control)
            next_request(&conns[i], i);
        arm(&conns[i], i, EPOLLOUT | EPOLLIN);
    }
    double start = now_s();
    double stop_at = start + O.duration_s;
    int watchers_waiting_since_change = 0;
    double next_change_at = start + 1.0; /* give the watchers a second to park */
    struct epoll_event evs[256];
    while (now_s() < stop_at) {
        if (O.mode == MODE_WATCH) {
            struct conn *ctl = &conns[O.watchers];
            if (!ctl->busy && changes_done < O.changes && now_s() >= next_change_at &&
                watchers_waiting_since_change == 0) {
                change_request(ctl);
                watchers_waiting_since_change = O.watchers;
                arm(ctl, O.watchers, EPOLLOUT | EPOLLIN);
            }
            if (changes_done >= O.changes && watchers_waiting_since_change == 0)
                break;
        }
        int k = epoll_wait(ep, evs, 256, 50);
        for (int e = 0; e < k; e++) {
            int i = (int)evs[e].data.u32;
            struct conn *c = &conns[i];
            if (c->out_off < c->out_len) {
                ssize_t w = write(c->fd, c->out + c->out_off, c->out_len - c->out_off);
                if (w < 0 && errno != EAGAIN)
                    die("write: %s", strerror(errno));
                if (w > 0)
                    c->out_off += (size_t)w;
                if (c->out_off == c->out_len)
                    arm(c, i, EPOLLIN);
            }
            if (!(evs[e].events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
                continue;
            ssize_t r = read(c->fd, c->in + c->in_len, sizeof c->in - 1 - c->in_len);
            if (r == 0 || (r < 0 && errno != EAGAIN))
                die("the server closed a connection: %s", r == 0 ? "EOF" : strerror(errno));
            if (r < 0)
                continue;
            c->in_len += (size_t)r;
            int status;
            size_t total = response_complete(c, &status);
            if (!total)
                continue;
            double t = now_s();
            if (status == 200)
                n_ok++;
            else {
                n_err++;
                if (n_err <= 3)
                    fprintf(stderr, "reg_load: HTTP %d: %.*s\n", status, (int)(c->in_len > 300 ? 300 : c->in_len),
                            c->in);
            }
            if (O.mode == MODE_WATCH && !c->is_control) {
                char *b = strstr(c->in, "\r\n\r\n");
                uint64_t idx = b ? body_index(b + 4) : 0;
                if (idx > c->index) {
                    if (n_lat == cap_lat) {
                        cap_lat = cap_lat ? cap_lat * 2 : 4096;
                        lat = realloc(lat, cap_lat * sizeof *lat);
                    }
                    lat[n_lat++] = (t - change_sent_at) * 1000.0;
                    c->index = idx;
                    watchers_waiting_since_change--;
                }
            } else if (c->is_control) {
                changes_done++;
                next_change_at = t + 0.05;
            }
            memmove(c->in, c->in + total, c->in_len - total);
            c->in_len -= total;
            c->busy = false;
            if (!c->is_control) {
                next_request(c, i);
                arm(c, i, EPOLLOUT | EPOLLIN);
            }
        }
    }
    double elapsed = now_s() - start;
    if (O.mode == MODE_WATCH) {
        qsort(lat, n_lat, sizeof *lat, cmp_double);
        printf("watchers=%d changes=%d wakeups=%zu missed=%d p50_ms=%.3f p99_ms=%.3f max_ms=%.3f errors=%llu\n",
               O.watchers, changes_done, n_lat, watchers_waiting_since_change, pct(0.5), pct(0.99),
               n_lat ? lat[n_lat - 1] : 0.0, (unsigned long long)n_err);
    } else {
        printf("ok=%llu errors=%llu seconds=%.2f rate=%.0f\n", (unsigned long long)n_ok, (unsigned long long)n_err,
               elapsed, (double)n_ok / elapsed);
    }
    for (int i = 0; i < n; i++)
        close(conns[i].fd);
    free(conns);
    free(lat);
    return n_err ? 1 : 0;
}
