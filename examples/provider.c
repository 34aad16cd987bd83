/* A libsluice provider: registers itself as an instance of a service, serves
 * a tiny HTTP responder on its port (every answer names the instance, so a
 * consumer can tell who answered), and deregisters on SIGINT or SIGTERM.
 *
 *   cc -o provider provider.c $(pkg-config --cflags --libs sluice)
 *   ./provider --registries 127.0.0.1:9950 --token s3cret \
 *              --service web --id web-1 --address 127.0.0.1 --port 8081
 *
 * It prints "registered ..." once a registry node has acknowledged the
 * registration, a status line on SIGUSR1, and "provider stopped ..." with the
 * final counters at the end. Exit status: 0 after a clean run, 1 when it
 * could not start (bad options, no registry answered, port in use), 2 when
 * the deregistration at the end was not acknowledged.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* accept4, SOCK_NONBLOCK */
#endif
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <sluice/sluice.h>

#define MAX_LABELS 16

static volatile sig_atomic_t stop_requested;
static volatile sig_atomic_t status_requested;

static void on_stop_signal(int sig)
{
    (void)sig;
    stop_requested = 1;
}

static void on_status_signal(int sig)
{
    (void)sig;
    status_requested = 1;
}

struct options {
    struct sluice_config cfg;
    struct sluice_instance inst;
    const char *labels[MAX_LABELS];
    const char *listen_address;  /* where to bind: --listen, else --address */
    const char *subscribe;       /* --subscribe: a service this provider also consumes */
};

static void usage(FILE *to)
{
    fprintf(to,
            "usage: provider --registries ADDRS --service NAME --id ID --address IP --port N [options]\n"
            "  --registries ADDRS   registry nodes, comma separated (host:port)\n"
            "  --token TOKEN        the registry's write token (X-Sluice-Token)\n"
            "  --service NAME       the service to register in\n"
            "  --id ID              this instance's id (unique in the service)\n"
            "  --address IP         the address consumers connect to\n"
            "  --port N             the port to serve and register\n"
            "  --listen IP          the address to bind (default: --address)\n"
            "  --weight N           1..10000 (default: the registry's, 100)\n"
            "  --datacenter NAME, --region NAME   this instance's location\n"
            "  --label KEY=VALUE    (repeatable)\n"
            "  --timeout-ms N       a request to a registry node (default 2000)\n"
            "  --subscribe NAME     also consume a service (as a provider that calls others does);\n"
            "                       the status line then shows its members\n");
}

/* 0, or -1 after printing why. */
static int parse_options(int argc, char **argv, struct options *o)
{
    static const struct option longopts[] = {
        { "registries", required_argument, NULL, 'r' }, { "token", required_argument, NULL, 't' },
        { "service", required_argument, NULL, 's' },    { "id", required_argument, NULL, 'i' },
        { "address", required_argument, NULL, 'a' },    { "port", required_argument, NULL, 'p' },
        { "listen", required_argument, NULL, 'l' },     { "weight", required_argument, NULL, 'w' },
        { "datacenter", required_argument, NULL, 'd' }, { "region", required_argument, NULL, 'g' },
        { "label", required_argument, NULL, 'L' },      { "timeout-ms", required_argument, NULL, 'T' },
        { "subscribe", required_argument, NULL, 'S' },
        { "help", no_argument, NULL, 'h' },             { NULL, 0, NULL, 0 },
    };
    sluice_config_init(&o->cfg);
    o->inst.labels = o->labels;
    int c;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        char *end = NULL;
        unsigned long n = 0;
        if (c == 'p' || c == 'w' || c == 'T') {
            errno = 0;
            n = strtoul(optarg, &end, 10);
            if (errno || end == optarg || *end || n > 0xffffffffUL) {
                fprintf(stderr, "provider: --%s: not a number: %s\n", c == 'p' ? "port" : c == 'w' ? "weight" : "timeout-ms",
                        optarg);
                return -1;
            }
        }
        switch (c) {
        case 'r': o->cfg.registries = optarg; break;
        case 't': o->cfg.token = optarg; break;
        case 's': o->inst.service = optarg; break;
        case 'i': o->inst.id = optarg; break;
        case 'a': o->inst.address = optarg; break;
        case 'l': o->listen_address = optarg; break;
        case 'S': o->subscribe = optarg; break;
        case 'd': o->cfg.datacenter = optarg; break;
        case 'g': o->cfg.region = optarg; break;
        case 'T': o->cfg.request_timeout_ms = (uint32_t)n; break;
        case 'w': o->inst.weight = (uint32_t)n; break;
        case 'p':
            /* The library checks 1..65535; a value that does not fit is
             * passed as 0 so its error names it. */
            o->inst.port = n <= 65535 ? (uint16_t)n : 0;
            break;
        case 'L':
            if (o->inst.n_labels == MAX_LABELS) {
                fprintf(stderr, "provider: at most %d labels\n", MAX_LABELS);
                return -1;
            }
            o->labels[o->inst.n_labels++] = optarg;
            break;
        case 'h': usage(stdout); exit(0);
        default: usage(stderr); return -1;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "provider: unexpected argument: %s\n", argv[optind]);
        return -1;
    }
    if (!o->listen_address)
        o->listen_address = o->inst.address;
    return 0;
}

/* A listening TCP socket on ip:port, or -1 after printing why. */
static int listen_on(const char *ip, uint16_t port)
{
    struct sockaddr_storage ss = { 0 };
    socklen_t len;
    struct sockaddr_in *v4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&ss;
    if (ip && inet_pton(AF_INET, ip, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons(port);
        len = sizeof *v4;
    } else if (ip && inet_pton(AF_INET6, ip, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons(port);
        len = sizeof *v6;
    } else {
        fprintf(stderr, "provider: --listen/--address: not an IPv4 or IPv6 address: %s\n", ip ? ip : "(none)");
        return -1;
    }
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
        bind(fd, (struct sockaddr *)&ss, len) < 0 || listen(fd, 128) < 0) {
        fprintf(stderr, "provider: listen on %s port %u: %s\n", ip, port, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    return fd;
}

/* Answers one connection: reads what the client sent (one request, at most
 * a buffer's worth; the answer does not depend on it) and writes a short
 * HTTP response that names this instance, then closes. */
static void answer(int fd, const char *id)
{
    struct timeval tv = { .tv_sec = 2 };
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    char req[2048];
    ssize_t n = recv(fd, req, sizeof req, 0);
    if (n > 0) {
        char body[192], resp[512];
        int blen = snprintf(body, sizeof body, "%s\n", id);
        int rlen = snprintf(resp, sizeof resp,
                            "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n"
                            "Connection: close\r\n\r\n%s",
                            blen, body);
        if (send(fd, resp, (size_t)rlen, MSG_NOSIGNAL) < 0) {
            /* The client went away: nothing to do. */
        }
    }
    close(fd);
}

static void print_status(const char *what, const sluice_provider *p, sluice_service *sub)
{
    struct sluice_provider_info info;
    if (sluice_provider_info(p, &info) < 0)
        return;
    printf("%s registered=%d weight=%u enabled=%d registrations=%llu heartbeats_ok=%llu heartbeats_failed=%llu "
           "node=%s",
           what, info.registered, info.weight, info.enabled, (unsigned long long)info.registrations,
           (unsigned long long)info.heartbeats_ok, (unsigned long long)info.heartbeats_failed, info.node);
    struct sluice_service_info si;
    if (sub && sluice_service_info(sub, &si) == 0)
        printf(" subscribed_members=%u", si.members);
    printf("\n");
    fflush(stdout);
}

static void serve(int lfd, const struct options *o, const sluice_provider *p, sluice_service *sub)
{
    while (!stop_requested) {
        if (status_requested) {
            status_requested = 0;
            print_status("status", p, sub);
        }
        struct pollfd pfd = { .fd = lfd, .events = POLLIN };
        int r = poll(&pfd, 1, 500);
        if (r < 0 && errno != EINTR) {
            fprintf(stderr, "provider: poll: %s\n", strerror(errno));
            return;
        }
        if (r <= 0)
            continue;
        int cfd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
        if (cfd >= 0)
            answer(cfd, o->inst.id);
    }
}

int main(int argc, char **argv)
{
    struct options o = { 0 };
    if (parse_options(argc, argv, &o) < 0)
        return 1;
    /* Listen first: a registered instance must already answer. */
    int lfd = listen_on(o.listen_address, o.inst.port);
    if (lfd < 0)
        return 1;
    struct sigaction sa = { .sa_handler = on_stop_signal };
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sa.sa_handler = on_status_signal;
    sigaction(SIGUSR1, &sa, NULL);

    char err[256];
    sluice_client *c = sluice_open(&o.cfg, err, sizeof err);
    if (!c) {
        fprintf(stderr, "provider: %s\n", err);
        close(lfd);
        return 1;
    }
    sluice_provider *p = sluice_register(c, &o.inst, err, sizeof err);
    if (!p) {
        fprintf(stderr, "provider: register %s/%s: %s\n", o.inst.service ? o.inst.service : "",
                o.inst.id ? o.inst.id : "", err);
        sluice_close(c);
        close(lfd);
        return 1;
    }
    printf("registered service=%s id=%s address=%s port=%u\n", o.inst.service, o.inst.id, o.inst.address,
           o.inst.port);
    sluice_service *sub = NULL;
    if (o.subscribe && !(sub = sluice_subscribe(c, o.subscribe, err, sizeof err)))
        fprintf(stderr, "provider: subscribe %s: %s\n", o.subscribe, err);
    print_status("status", p, sub);

    serve(lfd, &o, p, sub);
    close(lfd);

    print_status("provider stopped", p, sub);
    int rc = sluice_deregister(p) == 0 ? 0 : 2;
    if (rc)
        fprintf(stderr, "provider: no registry node acknowledged the deregistration (it will expire)\n");
    else
        printf("deregistered id=%s\n", o.inst.id);
    sluice_close(c);
    return rc;
}
