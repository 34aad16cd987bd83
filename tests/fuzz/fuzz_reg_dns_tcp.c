/* libFuzzer target for the registry's DNS over TCP (src/registry/reg_dns.c):
 * the two-byte length framing, pipelined messages, the growing input
 * buffer, partial messages at the end, answers gathered into batches.
 *
 * Input: the bytes a client writes on one connection, then it closes its
 * side. The server runs on an event loop in this process, on 127.0.0.1;
 * the target connects, writes the input, shuts down writing and serves
 * until the server closes the connection (bounded: 5 s, then abort).
 *
 * Checks: the server closes the connection once the client has (it does
 * not hang on a partial message); the answers are exactly one per
 * complete message the codec does not drop, in order (their IDs), each
 * with its two-byte length and read back by the independent strict
 * reader (tests/fuzz/dns_response_check.h); nothing follows the last. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/evloop.h"
#include "lib/dns_wire.h"
#include "registry/reg_dns.h"
#include "registry/reg_model.h"

#include "dns_response_check.h"

#define CHECK(x)                                                                                  \
    do {                                                                                          \
        if (!(x)) {                                                                               \
            fprintf(stderr, "fuzz_reg_dns_tcp: invariant failed at line %d: %s\n", __LINE__, #x); \
            abort();                                                                              \
        }                                                                                         \
    } while (0)

static struct ev_loop *loop;
static struct reg_model *model;
static struct reg_dns *dns;
static struct sockaddr_in server;

static void build(void)
{
    signal(SIGPIPE, SIG_IGN);
    struct reg_model_conf mc;
    reg_model_conf_defaults(&mc);
    mc.hash_seed = 1;
    char err[256];
    model = reg_model_create(&mc, err, sizeof err);
    CHECK(model);
    struct reg_service_settings s;
    reg_service_settings_defaults(&s);
    s.answer_count = 200;   /* big answers: batches fill and split across writes */
    struct reg_service *svc;
    CHECK(reg_service_put(model, "svc", &s, &svc, err, sizeof err) == 0);
    reg_service_settings_free(&s);
    for (int i = 0; i < 300; i++) {
        char a[32];
        snprintf(a, sizeof a, "10.0.%d.%d:80", i / 200, i % 200 + 1);
        struct reg_instance_spec spec = {.weight = 100, .enabled = true};
        const char *why;
        CHECK(addr_parse(a, &spec.addr, &why) == 0);
        CHECK(reg_instance_put(model, svc, &spec, 0, NULL, err, sizeof err) == 0);
    }
    loop = ev_loop_new();
    CHECK(loop);
    struct reg_dns_conf c;
    reg_dns_conf_defaults(&c);
    const char *why;
    CHECK(addr_parse("127.0.0.1:0", &c.listen[0], &why) == 0);
    c.n_listen = 1;
    dns = reg_dns_start(loop, &c, model, NULL, err, sizeof err);
    if (!dns)
        fprintf(stderr, "fuzz_reg_dns_tcp: %s\n", err);
    CHECK(dns);
    server = (struct sockaddr_in){.sin_family = AF_INET, .sin_port = htons(addr_port(reg_dns_bound(dns, 0)))};
    server.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
}

struct client {
    const uint8_t *in;
    size_t in_len, in_off;
    bool shut;
    struct dnsc_buf got;
    bool eof, late;
};

static void client_cb(struct ev_loop *l, struct ev_io *io, uint32_t revents)
{
    struct client *c = io->data;
    if ((revents & EPOLLOUT) && !c->shut) {
        ssize_t n = c->in_off < c->in_len ? write(io->fd, c->in + c->in_off, c->in_len - c->in_off) : 0;
        if (n > 0)
            c->in_off += (size_t)n;
        if (c->in_off == c->in_len || (n < 0 && errno != EAGAIN)) {
            shutdown(io->fd, SHUT_WR);
            c->shut = true;
            ev_io_set(l, io, EPOLLIN);
        }
    }
    if (revents & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
        uint8_t buf[65536];
        ssize_t n = read(io->fd, buf, sizeof buf);
        if (n > 0) {
            dnsc_put(&c->got, buf, (size_t)n);
        } else if (n == 0 || errno != EAGAIN) {
            c->eof = true;
            ev_break(l);
        }
    }
}

static void late_cb(struct ev_loop *l, struct ev_timer *t)
{
    ((struct client *)t->data)->late = true;
    ev_break(l);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!dns)
        build();
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    CHECK(fd >= 0);
    CHECK(connect(fd, (struct sockaddr *)&server, sizeof server) == 0);
    fcntl(fd, F_SETFL, O_NONBLOCK);
    struct client c = {.in = data, .in_len = size};
    struct ev_io io;
    struct ev_timer late;
    ev_io_init(&io, fd, client_cb, &c);
    ev_io_set(loop, &io, EPOLLOUT | EPOLLIN);
    ev_timer_init(&late, late_cb, &c);
    ev_timer_start(loop, &late, 5000);
    while (!c.eof && !c.late)
        ev_run(loop);
    ev_timer_stop(loop, &late);
    ev_io_stop(loop, &io);
    close(fd);
    CHECK(!c.late);   /* the server closed the connection after the client did */

    /* The answers: one per complete message the codec does not drop. */
    size_t pos = 0, at = 0;
    static struct dns_query q;
    while (size - pos >= 2 && size - pos >= 2 + (size_t)(data[pos] << 8 | data[pos + 1])) {
        size_t mlen = (size_t)(data[pos] << 8 | data[pos + 1]);
        enum dns_parse_result r = dns_parse_query(data + pos + 2, mlen, &q);
        pos += 2 + mlen;
        if (r == DNS_PARSE_DROP)
            continue;
        CHECK(c.got.len - at >= 2);
        size_t alen = (size_t)(c.got.p[at] << 8 | c.got.p[at + 1]);
        CHECK(alen >= DNS_HEADER_LEN && c.got.len - at - 2 >= alen);
        struct dnsc_response resp;
        if (!dnsc_parse(c.got.p + at + 2, alen, &resp)) {
            fprintf(stderr, "fuzz_reg_dns_tcp: bad answer: %s\n", resp.error);
            abort();
        }
        CHECK(resp.id == q.id);
        dnsc_free(&resp);
        at += 2 + alen;
    }
    CHECK(at == c.got.len);   /* nothing more than the answers due */
    free(c.got.p);
    return 0;
}
