/* A libsluice consumer: subscribes to a service and sends requests to its
 * instances, each one to the instance sluice_pick() chose, reporting the
 * result with sluice_done() so an instance that keeps failing is avoided.
 *
 *   cc -o consumer consumer.c $(pkg-config --cflags --libs sluice)
 *   ./consumer --registries 127.0.0.1:9950 --service web --requests 1000
 *
 * A request is one TCP connection: "GET / HTTP/1.0", then the answer is read
 * to the end; it worked when the answer is an HTTP 200 whose body starts
 * with the picked instance's id as a word (examples/provider answers so),
 * failed otherwise (refused, timed out, another answer).
 *
 * Output, one line each, "key=value" separated by spaces so a script can
 * parse it:
 *   start ...    once the first list is there or --ready-ms passed (ready=0|1, source)
 *   window ...   every --report-ms (default 1000): the requests since the last line
 *   summary ...  at the end (after --requests, --duration, or SIGINT/SIGTERM)
 * with requests, ok, failed_requests, failed_picks (sluice_pick found no
 * instance), mismatched (answered by another instance than picked), the
 * list's source, members (how many picks draw from), the library's update
 * counters (updates, ignored_empty, ignored_invalid), the service's
 * registry_index, and the successful requests per instance as
 * instances=ID:N,ID:N (failed=ID:N for the failed ones).
 * Exit status 0 after a run, 1 when it could not start.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* accept4, SOCK_NONBLOCK */
#endif
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <sluice/sluice.h>

#define MAX_TRACKED 256

static volatile sig_atomic_t stop_requested;

static void on_stop_signal(int sig)
{
    (void)sig;
    stop_requested = 1;
}

struct options {
    struct sluice_config cfg;
    const char *service;
    unsigned long requests;       /* 0: no limit */
    double duration_s;            /* 0: no limit */
    unsigned interval_ms;         /* pause between requests */
    unsigned report_ms;           /* a window line this often; 0: none */
    unsigned timeout_ms;          /* connect, send and read of one request */
    unsigned ready_ms;            /* wait this long for a first list */
    unsigned flags;               /* sluice_pick flags */
};

/* Requests per instance id, in a small table (an example talks to few). */
struct per_instance {
    char id[129];
    unsigned long ok, failed;
};

struct counters {
    unsigned long requests, ok, failed_requests, failed_picks, mismatched;
    struct per_instance inst[MAX_TRACKED];
    size_t n_inst;
};

static void usage(FILE *to)
{
    fprintf(to,
            "usage: consumer --service NAME [--registries ADDRS] [options]\n"
            "  --registries ADDRS     registry nodes, comma separated (host:port)\n"
            "  --datacenter NAME, --region NAME   where this consumer runs\n"
            "  --cache-dir DIR        last-known-good lists (written and read)\n"
            "  --failover-dir DIR     hand-written lists, used while DIR/switch exists\n"
            "  --requests N           stop after N requests (default: no limit)\n"
            "  --duration SECONDS     stop after this long (default: no limit)\n"
            "  --interval-ms N        pause between requests (default 10)\n"
            "  --report-ms N          a \"window\" line this often (default 1000, 0: none)\n"
            "  --timeout-ms N         one request's connect/send/read (default 1000)\n"
            "  --ready-ms N           wait for a first list up to this long (default 5000)\n"
            "  --p2c                  power of two choices on outstanding requests\n"
            "  --watch-wait-ms N, --pull-interval-ms N, --request-timeout-ms N,\n"
            "  --avoid-after N, --avoid-ms N   the library's settings (struct sluice_config)\n");
}

static int parse_number(const char *name, const char *s, unsigned long *out)
{
    char *end = NULL;
    errno = 0;
    unsigned long n = strtoul(s, &end, 10);
    if (errno || end == s || *end || n > 0xffffffffUL) {
        fprintf(stderr, "consumer: --%s: not a number: %s\n", name, s);
        return -1;
    }
    *out = n;
    return 0;
}

static int parse_options(int argc, char **argv, struct options *o)
{
    static const struct option longopts[] = {
        { "registries", required_argument, NULL, 'r' },    { "service", required_argument, NULL, 's' },
        { "datacenter", required_argument, NULL, 'd' },    { "region", required_argument, NULL, 'g' },
        { "cache-dir", required_argument, NULL, 'c' },     { "failover-dir", required_argument, NULL, 'f' },
        { "requests", required_argument, NULL, 'n' },      { "duration", required_argument, NULL, 'D' },
        { "interval-ms", required_argument, NULL, 'i' },   { "report-ms", required_argument, NULL, 'R' },
        { "timeout-ms", required_argument, NULL, 'T' },    { "ready-ms", required_argument, NULL, 'y' },
        { "p2c", no_argument, NULL, 'P' },                 { "watch-wait-ms", required_argument, NULL, 'W' },
        { "pull-interval-ms", required_argument, NULL, 'U' }, { "request-timeout-ms", required_argument, NULL, 'Q' },
        { "avoid-after", required_argument, NULL, 'A' },   { "avoid-ms", required_argument, NULL, 'M' },
        { "help", no_argument, NULL, 'h' },                { NULL, 0, NULL, 0 },
    };
    sluice_config_init(&o->cfg);
    o->interval_ms = 10;
    o->report_ms = 1000;
    o->timeout_ms = 1000;
    o->ready_ms = 5000;
    int c, li = 0;
    while ((c = getopt_long(argc, argv, "h", longopts, &li)) != -1) {
        unsigned long n = 0;
        const char *name = longopts[li].name;
        if (strchr("niRTyWUQAM", c) && parse_number(name, optarg, &n) < 0)
            return -1;
        switch (c) {
        case 'r': o->cfg.registries = optarg; break;
        case 's': o->service = optarg; break;
        case 'd': o->cfg.datacenter = optarg; break;
        case 'g': o->cfg.region = optarg; break;
        case 'c': o->cfg.cache_dir = optarg; break;
        case 'f': o->cfg.failover_dir = optarg; break;
        case 'n': o->requests = n; break;
        case 'D': {
            char *end = NULL;
            o->duration_s = strtod(optarg, &end);
            if (end == optarg || *end || o->duration_s < 0) {
                fprintf(stderr, "consumer: --duration: not a number of seconds: %s\n", optarg);
                return -1;
            }
            break;
        }
        case 'i': o->interval_ms = (unsigned)n; break;
        case 'R': o->report_ms = (unsigned)n; break;
        case 'T': o->timeout_ms = (unsigned)n; break;
        case 'y': o->ready_ms = (unsigned)n; break;
        case 'P': o->flags |= SLUICE_PICK_P2C; break;
        case 'W': o->cfg.watch_wait_ms = (uint32_t)n; break;
        case 'U': o->cfg.pull_interval_ms = (uint32_t)n; break;
        case 'Q': o->cfg.request_timeout_ms = (uint32_t)n; break;
        case 'A': o->cfg.avoid_after_failures = (uint32_t)n; break;
        case 'M': o->cfg.avoid_ms = (uint32_t)n; break;
        case 'h': usage(stdout); exit(0);
        default: usage(stderr); return -1;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "consumer: unexpected argument: %s\n", argv[optind]);
        return -1;
    }
    if (!o->service) {
        fprintf(stderr, "consumer: --service is required\n");
        usage(stderr);
        return -1;
    }
    return 0;
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Waits for fd to be ready for events until the deadline: 0, or -1. */
static int wait_fd(int fd, short events, uint64_t deadline)
{
    for (;;) {
        uint64_t now = now_ms();
        if (now >= deadline)
            return -1;
        struct pollfd pfd = { .fd = fd, .events = events };
        int r = poll(&pfd, 1, (int)(deadline - now));
        if (r > 0)
            return 0;
        if (r < 0 && errno != EINTR)
            return -1;
    }
}

/* One request to the picked instance: true when it answered 200 with its
 * own id as the body. *mismatch says another id answered. */
static bool send_request(const struct sluice_pick *pk, unsigned timeout_ms, bool *mismatch)
{
    *mismatch = false;
    uint64_t deadline = now_ms() + timeout_ms;
    int fd = socket(pk->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return false;
    bool ok = false;
    if (connect(fd, (const struct sockaddr *)&pk->addr, pk->addrlen) < 0) {
        if (errno != EINPROGRESS || wait_fd(fd, POLLOUT, deadline) < 0)
            goto out;
        int soerr = 0;
        socklen_t len = sizeof soerr;
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len) < 0 || soerr)
            goto out;
    }
    static const char req[] = "GET / HTTP/1.0\r\nHost: sluice-example\r\n\r\n";
    if (send(fd, req, sizeof req - 1, MSG_NOSIGNAL) != (ssize_t)(sizeof req - 1))
        goto out;
    char resp[1024];
    size_t have = 0;
    for (;;) {
        if (wait_fd(fd, POLLIN, deadline) < 0)
            goto out;
        ssize_t n = recv(fd, resp + have, sizeof resp - 1 - have, 0);
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            continue;
        if (n < 0)
            goto out;
        if (n == 0 || (have += (size_t)n) == sizeof resp - 1)
            break;
    }
    resp[have] = '\0';
    const char *body = strstr(resp, "\r\n\r\n");
    if (strncmp(resp, "HTTP/1.0 200", 12) != 0 && strncmp(resp, "HTTP/1.1 200", 12) != 0)
        goto out;
    if (!body)
        goto out;
    body += 4;
    size_t idlen = strcspn(body, " \r\n");
    if (idlen == strlen(pk->id) && strncmp(body, pk->id, idlen) == 0)
        ok = true;
    else
        *mismatch = true;
out:
    close(fd);
    return ok;
}

static struct per_instance *tracked(struct counters *k, const char *id)
{
    for (size_t i = 0; i < k->n_inst; i++)
        if (strcmp(k->inst[i].id, id) == 0)
            return &k->inst[i];
    if (k->n_inst == MAX_TRACKED)
        return NULL;
    struct per_instance *pi = &k->inst[k->n_inst++];
    snprintf(pi->id, sizeof pi->id, "%s", id);
    pi->ok = pi->failed = 0;
    return pi;
}

static const char *source_name(enum sluice_source s)
{
    switch (s) {
    case SLUICE_SOURCE_REGISTRY: return "registry";
    case SLUICE_SOURCE_CACHE: return "cache";
    case SLUICE_SOURCE_FAILOVER: return "failover";
    default: return "none";
    }
}

static void print_counters(const char *what, const struct counters *k, sluice_service *s, uint64_t elapsed_ms)
{
    struct sluice_service_info info = { 0 };
    sluice_service_info(s, &info);
    printf("%s t_ms=%llu requests=%lu ok=%lu failed_requests=%lu failed_picks=%lu mismatched=%lu source=%s "
           "members=%u updates=%llu ignored_empty=%llu ignored_invalid=%llu registry_index=%llu instances=",
           what, (unsigned long long)elapsed_ms, k->requests, k->ok, k->failed_requests, k->failed_picks,
           k->mismatched, source_name(info.source), info.members, (unsigned long long)info.updates,
           (unsigned long long)info.updates_ignored_empty, (unsigned long long)info.updates_ignored_invalid,
           (unsigned long long)info.registry_index);
    const char *sep = "";
    for (size_t i = 0; i < k->n_inst; i++)
        if (k->inst[i].ok) {
            printf("%s%s:%lu", sep, k->inst[i].id, k->inst[i].ok);
            sep = ",";
        }
    printf(" failed=");
    sep = "";
    for (size_t i = 0; i < k->n_inst; i++)
        if (k->inst[i].failed) {
            printf("%s%s:%lu", sep, k->inst[i].id, k->inst[i].failed);
            sep = ",";
        }
    printf("\n");
    fflush(stdout);
}

static void one_request(sluice_service *s, const struct options *o, struct counters *total,
                        struct counters *window)
{
    struct sluice_pick pk;
    total->requests++;
    window->requests++;
    if (sluice_pick(s, o->flags, &pk) < 0) {
        total->failed_picks++;
        window->failed_picks++;
        return;
    }
    bool mismatch;
    bool ok = send_request(&pk, o->timeout_ms, &mismatch);
    sluice_done(s, &pk, ok ? SLUICE_OK : SLUICE_FAILED);
    struct counters *ks[2] = { total, window };
    for (int i = 0; i < 2; i++) {
        struct per_instance *pi = tracked(ks[i], pk.id);
        if (ok) {
            ks[i]->ok++;
        } else {
            ks[i]->failed_requests++;
            ks[i]->mismatched += mismatch;
        }
        if (pi)
            *(ok ? &pi->ok : &pi->failed) += 1;
    }
}

static void sleep_ms(unsigned ms)
{
    struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L };
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR && !stop_requested) {
    }
}

int main(int argc, char **argv)
{
    static struct counters total, window;  /* static: a few KiB each */
    struct options o = { 0 };
    if (parse_options(argc, argv, &o) < 0)
        return 1;
    struct sigaction sa = { .sa_handler = on_stop_signal };
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    char err[256];
    sluice_client *c = sluice_open(&o.cfg, err, sizeof err);
    if (!c) {
        fprintf(stderr, "consumer: %s\n", err);
        return 1;
    }
    sluice_service *s = sluice_subscribe(c, o.service, err, sizeof err);
    if (!s) {
        fprintf(stderr, "consumer: subscribe %s: %s\n", o.service, err);
        sluice_close(c);
        return 1;
    }
    uint64_t start = now_ms();
    bool ready = sluice_wait_ready(s, o.ready_ms) == 0;
    struct sluice_service_info info = { 0 };
    sluice_service_info(s, &info);
    printf("start ready=%d source=%s members=%u wait_ms=%llu\n", ready, source_name(info.source), info.members,
           (unsigned long long)(now_ms() - start));
    fflush(stdout);

    start = now_ms();
    uint64_t next_report = start + o.report_ms;
    while (!stop_requested) {
        uint64_t now = now_ms();
        if (o.requests && total.requests >= o.requests)
            break;
        if (o.duration_s > 0 && now - start >= (uint64_t)(o.duration_s * 1000))
            break;
        one_request(s, &o, &total, &window);
        if (o.report_ms && now_ms() >= next_report) {
            print_counters("window", &window, s, now_ms() - start);
            memset(&window, 0, sizeof window);
            next_report = now_ms() + o.report_ms;
        }
        if (o.interval_ms)
            sleep_ms(o.interval_ms);
    }
    if (o.report_ms && window.requests)
        print_counters("window", &window, s, now_ms() - start);
    print_counters("summary", &total, s, now_ms() - start);
    sluice_close(c);
    return 0;
}
