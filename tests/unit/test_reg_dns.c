/* Unit tests for the registry's DNS server (src/registry/reg_dns.c): the
 * server runs on an event loop in this process, on 127.0.0.1 port 0, with
 * a model filled here, and real clients ask it: dig (bind9-dnsutils), a
 * dnspython script (python3-dnspython) for the statistical checks, and raw
 * UDP/TCP sockets for what those clients will not send (malformed
 * queries, pipelined TCP queries, garbage). The loop runs until the client
 * is done, bounded by a deadline.
 *
 * The zone sluice.test; subnets 127.0.0.0/8 and 192.0.2.0/24 in dc1/r1,
 * 198.51.100.0/24 in dc2/r1, 203.0.113.0/24 in dc3/r2. Service web:
 * 10.1.0.1 (w100) and 10.1.0.2 (w300) and 2001:db8::1 in dc1, 10.2.0.1 in
 * dc2, 10.3.0.1 in dc3, plus 10.1.0.98 (weight 0) and 10.1.0.99
 * (disabled) in dc1, which are never answered. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/evloop.h"
#include "core/metrics.h"
#include "lib/dns_wire.h"
#include "lib/strbuf.h"
#include "registry/reg_dns.h"
#include "registry/reg_model.h"
#include "registry/reg_select.h"
#include "registry/reg_subnet.h"

#include "reg_helpers.h"

struct fx {
    struct ev_loop *loop;
    struct reg_model *m;
    struct reg_subnets *subnets;
    struct reg_dns *dns;
    struct reg_dns_conf conf;
    char port[16];
    struct reg_service *web;
};

static struct fx F;

/* ---- the fixture ---------------------------------------------------------- */

static struct reg_service *service(const char *name, uint32_t answer_count, double protect, uint32_t min_healthy)
{
    struct reg_service_settings s;
    reg_service_settings_defaults(&s);
    s.answer_count = answer_count;
    s.protect_threshold = protect;
    s.locality.min_healthy = min_healthy;
    s.dns_ttl = 5;
    struct reg_service *svc = th_service(F.m, name, &s);
    reg_service_settings_free(&s);
    return svc;
}

static void subnet(const char *cidr, const char *dc, const char *region)
{
    char err[256];
    assert_int_equal(reg_subnets_add(F.subnets, cidr, th_loc(F.m, dc, region), err, sizeof err), 0);
}

static void start_server(void)
{
    char err[256] = "";
    F.dns = reg_dns_start(F.loop, &F.conf, F.m, F.subnets, err, sizeof err);
    if (!F.dns)
        fail_msg("reg_dns_start: %s", err);
    snprintf(F.port, sizeof F.port, "%u", addr_port(reg_dns_bound(F.dns, 0)));
}

static int setup(void **state)
{
    memset(&F, 0, sizeof F);
    F.loop = ev_loop_new();
    F.m = th_model(NULL);
    F.subnets = reg_subnets_new();
    subnet("127.0.0.0/8", "dc1", "r1");
    subnet("192.0.2.0/24", "dc1", "r1");
    subnet("198.51.100.0/24", "dc2", "r1");
    subnet("203.0.113.0/24", "dc3", "r2");
    char err[256];
    assert_int_equal(reg_subnets_build(F.subnets, err, sizeof err), 0);

    F.web = service("web", 2, 0, 1);
    th_put(F.m, F.web, "10.1.0.1:80", "dc1", "r1", 100);
    th_put(F.m, F.web, "10.1.0.2:80", "dc1", "r1", 300);
    th_put(F.m, F.web, "[2001:db8::1]:8080", "dc1", "r1", 100);
    th_put(F.m, F.web, "10.2.0.1:80", "dc2", "r1", 100);
    th_put(F.m, F.web, "10.3.0.1:80", "dc3", "r2", 100);
    th_put(F.m, F.web, "10.1.0.98:80", "dc1", "r1", 0);
    struct reg_instance_spec off = th_spec("10.1.0.99:80", "dc1", "r1", 100);
    off.enabled = false;
    th_put_spec(F.m, F.web, &off, 0);

    reg_dns_conf_defaults(&F.conf);
    const char *why;
    assert_int_equal(addr_parse("127.0.0.1:0", &F.conf.listen[0], &why), 0);
    F.conf.n_listen = 1;
    return 0;
}

static int teardown(void **state)
{
    reg_dns_stop(F.dns);
    ev_loop_free(F.loop);
    reg_subnets_free(F.subnets);
    reg_model_free(F.m);
    return 0;
}

/* ---- running a client against the loop ----------------------------------- */

struct child {
    struct strbuf out;
    bool eof, timed_out;
};

static void child_out_cb(struct ev_loop *loop, struct ev_io *io, uint32_t revents)
{
    struct child *c = io->data;
    char chunk[8192];
    ssize_t n = read(io->fd, chunk, sizeof chunk);
    if (n > 0) {
        strbuf_put(&c->out, chunk, (size_t)n);
        return;
    }
    if (n < 0 && errno == EAGAIN)
        return;
    c->eof = true;
    ev_io_stop(loop, io);
    ev_break(loop);
}

static void deadline_cb(struct ev_loop *loop, struct ev_timer *t)
{
    *(bool *)t->data = true;
    ev_break(loop);
}

/* Run argv (stdout and stderr captured) while the loop serves, until it
 * exits (at most 60 s). Returns its output, or NULL when the program is not
 * installed (exit 127). */
static char *run(const char *const *argv)
{
    int p[2];
    assert_int_equal(pipe2(p, O_CLOEXEC | O_NONBLOCK), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        dup2(p[1], 1);
        dup2(p[1], 2);
        int fl = fcntl(1, F_GETFL);
        fcntl(1, F_SETFL, fl & ~O_NONBLOCK);
        execvp(argv[0], (char *const *)argv);
        _exit(127);
    }
    close(p[1]);
    struct child c = {0};
    struct ev_io io;
    struct ev_timer deadline;
    ev_io_init(&io, p[0], child_out_cb, &c);
    ev_io_set(F.loop, &io, EPOLLIN);
    ev_timer_init(&deadline, deadline_cb, &c.timed_out);
    ev_timer_start(F.loop, &deadline, 60000);
    while (!c.eof && !c.timed_out)
        ev_run(F.loop);
    ev_timer_stop(F.loop, &deadline);
    ev_io_stop(F.loop, &io);
    close(p[0]);
    if (c.timed_out)
        kill(pid, SIGKILL);
    int status = 0;
    waitpid(pid, &status, 0);
    strbuf_put(&c.out, "", 1);
    char *out = strbuf_finish(&c.out, NULL);
    if (WIFEXITED(status) && WEXITSTATUS(status) == 127) {
        free(out);
        return NULL;
    }
    if (c.timed_out)
        fail_msg("%s did not finish within 60 s; output so far:\n%s", argv[0], out);
    return out;
}

/* dig @127.0.0.1 -p PORT +time=5 +tries=1 ARGS...; skips when dig is not installed. */
static char *dig(const char *const *args)
{
    const char *argv[64] = {"dig", "@127.0.0.1", "-p", F.port, "+time=5", "+tries=1"};
    int argc = 6;
    for (int i = 0; args[i] && argc < 63; i++)
        argv[argc++] = args[i];
    argv[argc] = NULL;
    return run(argv);
}

#define DIG(out, ...)                                                            \
    char *out = dig((const char *const[]){__VA_ARGS__, NULL});                 \
    if (!out) {                                                                  \
        fprintf(stderr, "dig is not installed (bind9-dnsutils): skipped\n");     \
        skip();                                                                  \
    }

static void expect(const char *output, const char *const *want)
{
    for (int i = 0; want[i]; i++)
        if (!strstr(output, want[i]))
            fail_msg("the output lacks \"%s\":\n%s", want[i], output);
}

static void expect_not(const char *output, const char *const *unwanted)
{
    for (int i = 0; unwanted[i]; i++)
        if (strstr(output, unwanted[i]))
            fail_msg("the output has \"%s\":\n%s", unwanted[i], output);
}

static unsigned count_of(const char *output, const char *needle)
{
    unsigned n = 0;
    for (const char *p = output; (p = strstr(p, needle)); p += strlen(needle))
        n++;
    return n;
}

/* ---- raw sockets -------------------------------------------------------- */

/* A query for name/qtype with id, optionally with an OPT record. */
static size_t make_query(uint8_t *buf, uint16_t id, const char *name, uint16_t qtype, bool edns)
{
    uint8_t hdr[12] = {(uint8_t)(id >> 8), (uint8_t)id, 0x01, 0, 0, 1, 0, 0, 0, 0, 0, edns ? 1 : 0};
    memcpy(buf, hdr, 12);
    int n = dns_name_from_text(name, buf + 12);
    assert_true(n > 0);
    size_t len = 12 + (size_t)n;
    buf[len++] = (uint8_t)(qtype >> 8);
    buf[len++] = (uint8_t)qtype;
    buf[len++] = 0;
    buf[len++] = 1;
    if (edns) {
        const uint8_t opt[11] = {0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 0};
        memcpy(buf + len, opt, sizeof opt);
        len += sizeof opt;
    }
    return len;
}

struct waiter {
    uint8_t *buf;
    size_t cap, len, want;   /* want: bytes to wait for (TCP), 0: one datagram */
    bool done, eof;
};

static void wait_cb(struct ev_loop *loop, struct ev_io *io, uint32_t revents)
{
    struct waiter *w = io->data;
    ssize_t n = read(io->fd, w->buf + w->len, w->cap - w->len);
    if (n > 0)
        w->len += (size_t)n;
    if (n == 0 || (n < 0 && errno != EAGAIN)) {
        w->eof = true;
        w->done = true;
    }
    if (n > 0 && (w->want == 0 || w->len >= w->want))
        w->done = true;
    if (w->done)
        ev_break(loop);
}

/* Serve until fd has `want` bytes (0: one datagram) or EOF, at most 10 s.
 * Returns the bytes read. */
static size_t serve_until(int fd, uint8_t *buf, size_t cap, size_t want, bool *eof)
{
    struct waiter w = {.buf = buf, .cap = cap, .want = want};
    bool late = false;
    struct ev_io io;
    struct ev_timer deadline;
    ev_io_init(&io, fd, wait_cb, &w);
    ev_io_set(F.loop, &io, EPOLLIN);
    ev_timer_init(&deadline, deadline_cb, &late);
    ev_timer_start(F.loop, &deadline, 10000);
    while (!w.done && !late)
        ev_run(F.loop);
    ev_timer_stop(F.loop, &deadline);
    ev_io_stop(F.loop, &io);
    if (eof)
        *eof = w.eof;
    return w.len;
}

static struct sockaddr_in server_sa(void)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(F.port))};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return sa;
}

static int udp_client(void)
{
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = server_sa();
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    return fd;
}

static int tcp_client(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = server_sa();
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    fcntl(fd, F_SETFL, O_NONBLOCK);
    return fd;
}

/* Send one datagram and serve until the answer comes; its length. */
static size_t udp_ask(const uint8_t *q, size_t qlen, uint8_t *resp, size_t cap)
{
    int fd = udp_client();
    assert_int_equal(send(fd, q, qlen, 0), (ssize_t)qlen);
    size_t n = serve_until(fd, resp, cap, 0, NULL);
    close(fd);
    return n;
}

static unsigned rcode_of(const uint8_t *r) { return r[3] & 15; }
static unsigned ancount_of(const uint8_t *r) { return (unsigned)r[6] << 8 | r[7]; }

static struct reg_dns_stats stats(void)
{
    struct reg_dns_stats s;
    reg_dns_stats(F.dns, &s);
    return s;
}

/* ---- tests ---------------------------------------------------------------- */

/* dnspython asks N times over UDP and prints how often each address came
 * first in the answer and how often it appeared at all. */
static const char SPREAD_PY[] =
    "import sys, collections, dns.message, dns.query, dns.edns\n"
    "port, name, n = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])\n"
    "first, seen = collections.Counter(), collections.Counter()\n"
    "for i in range(n):\n"
    "    r = dns.query.udp(dns.message.make_query(name, 'A'), '127.0.0.1', port=port, timeout=5)\n"
    "    addrs = [rd.address for rrset in r.answer for rd in rrset]\n"
    "    first[addrs[0]] += 1\n"
    "    for a in addrs: seen[a] += 1\n"
    "for a, c in sorted(first.items()): print('first', a, c)\n"
    "for a, c in sorted(seen.items()): print('seen', a, c)\n";

static unsigned counted(const char *out, const char *what, const char *addr)
{
    char key[64];
    snprintf(key, sizeof key, "%s %s ", what, addr);
    const char *p = strstr(out, key);
    return p ? (unsigned)strtoul(p + strlen(key), NULL, 10) : 0;
}

/* The first record of each answer follows the weights (1:3) over 2,000
 * queries, each query drawing anew; the disabled and weight-0 instances
 * never appear; the caller (127.0.0.1, dc1) gets dc1 only. */
static void test_weighted_spread(void **state)
{
    start_server();
    char *out = run((const char *const[]){"/usr/bin/python3", "-c", SPREAD_PY, F.port, "web.sluice.test", "2000", NULL});
    if (!out || strstr(out, "No module named 'dns'")) {
        fprintf(stderr, "python3-dnspython is not installed: skipped\n%s", out ? out : "");
        free(out);
        skip();
    }
    unsigned a1 = counted(out, "first", "10.1.0.1"), a2 = counted(out, "first", "10.1.0.2");
    if (a1 + a2 != 2000)
        fail_msg("expected 2000 answers from dc1:\n%s", out);
    /* expected 500 for 10.1.0.1 (sd about 19): the bounds are 7 sd away */
    if (a1 < 360 || a1 > 640)
        fail_msg("10.1.0.1 came first %u times of 2000, expected about 500:\n%s", a1, out);
    assert_int_equal(counted(out, "seen", "10.1.0.1"), 2000);   /* answer_count 2 of the two in dc1 */
    assert_int_equal(counted(out, "seen", "10.1.0.2"), 2000);
    expect_not(out, (const char *const[]){"10.1.0.98", "10.1.0.99", "10.2.0.1", "10.3.0.1", NULL});
    free(out);
    assert_true(stats().by_tier[REG_TIER_DC] >= 2000);
}

/* The Client Subnet option places the caller, and its scope comes back:
 * each subnet gets its own datacenter; an unmapped subnet gets every
 * instance (tier all); SOURCE 0 is not located and gets scope 0. */
static void test_locality_by_client_subnet(void **state)
{
    start_server();
    DIG(o1, "web.sluice.test", "A", "+subnet=198.51.100.0/24");
    expect(o1, (const char *const[]){"status: NOERROR", "flags: qr aa rd;", "ANSWER: 1,",
                                     "; CLIENT-SUBNET: 198.51.100.0/24/24", "web.sluice.test.\t5\tIN\tA\t10.2.0.1", NULL});
    free(o1);
    DIG(o2, "web.sluice.test", "A", "+subnet=203.0.113.7/32");
    expect(o2, (const char *const[]){"; CLIENT-SUBNET: 203.0.113.7/32/24", "web.sluice.test.\t5\tIN\tA\t10.3.0.1", NULL});
    free(o2);
    DIG(o3, "web.sluice.test", "A", "+subnet=192.0.2.0/24");
    expect(o3, (const char *const[]){"; CLIENT-SUBNET: 192.0.2.0/24/24", "ANSWER: 2,", "IN\tA\t10.1.0.1",
                                     "IN\tA\t10.1.0.2", NULL});
    free(o3);
    /* a /16 that holds no mapped /24: located nowhere, answered from all,
     * with the scope of the unmapped block around it */
    DIG(o4, "web.sluice.test", "A", "+subnet=100.64.0.0/16");
    expect(o4, (const char *const[]){"status: NOERROR", "ANSWER: 2,", "; CLIENT-SUBNET: 100.64.0.0/16/", NULL});
    expect_not(o4, (const char *const[]){"100.64.0.0/16/0", NULL});
    free(o4);
    /* an IPv4-mapped IPv6 subnet is placed as IPv4, its scope in IPv6 bits */
    DIG(o8, "web.sluice.test", "A", "+subnet=::ffff:198.51.100.0/120");
    expect(o8, (const char *const[]){"; CLIENT-SUBNET: ::ffff:198.51.100.0/120/120", "IN\tA\t10.2.0.1", NULL});
    free(o8);
    DIG(o5, "web.sluice.test", "A", "+subnet=0.0.0.0/0");
    expect(o5, (const char *const[]){"; CLIENT-SUBNET: 0.0.0.0/0/0", "ANSWER: 2,", NULL});
    free(o5);
    /* answers that do not depend on the caller carry scope 0 */
    DIG(o6, "nope.sluice.test", "A", "+subnet=198.51.100.0/24");
    expect(o6, (const char *const[]){"status: NXDOMAIN", "; CLIENT-SUBNET: 198.51.100.0/24/0", NULL});
    free(o6);
    /* without the option, the source address (127.0.0.1: dc1) places the caller */
    DIG(o7, "web.sluice.test", "AAAA");
    expect(o7, (const char *const[]){"ANSWER: 1,", "web.sluice.test.\t5\tIN\tAAAA\t2001:db8::1", NULL});
    expect_not(o7, (const char *const[]){"CLIENT-SUBNET", NULL});
    free(o7);
    assert_int_equal(stats().ecs, 7);
}

/* Locality minimum 2: dc1 has one healthy, so dc1's callers get their
 * region (dc1 + dc2); when the region has too few, everything. */
static void test_locality_fallback(void **state)
{
    struct reg_service *fb = service("fb", 10, 0, 2);
    th_put(F.m, fb, "10.1.1.1:80", "dc1", "r1", 100);
    struct reg_instance *down = th_put(F.m, fb, "10.1.1.2:80", "dc1", "r1", 100);
    struct reg_instance *d2 = th_put(F.m, fb, "10.2.1.1:80", "dc2", "r1", 100);
    th_put(F.m, fb, "10.3.1.1:80", "dc3", "r2", 100);
    th_put(F.m, fb, "10.3.1.2:80", "dc3", "r2", 100);
    reg_instance_set_health(F.m, down, REG_HEALTH_DOWN, "test", 0);
    start_server();
    DIG(o1, "fb.sluice.test", "A", "+subnet=192.0.2.0/24");
    expect(o1, (const char *const[]){"ANSWER: 2,", "IN\tA\t10.1.1.1", "IN\tA\t10.2.1.1", NULL});
    expect_not(o1, (const char *const[]){"10.1.1.2", "10.3.1.", NULL});
    free(o1);
    reg_instance_set_health(F.m, d2, REG_HEALTH_DOWN, "test", 0);
    DIG(o2, "fb.sluice.test", "A", "+subnet=192.0.2.0/24");
    expect(o2, (const char *const[]){"ANSWER: 3,", "IN\tA\t10.1.1.1", "IN\tA\t10.3.1.1", "IN\tA\t10.3.1.2", NULL});
    free(o2);
    struct reg_dns_stats s = stats();
    assert_int_equal(s.by_tier[REG_TIER_REGION], 1);
    assert_int_equal(s.by_tier[REG_TIER_ALL], 1);
}

/* Protect threshold 0.5 with 1 of 4 healthy: every enabled instance is
 * answered, the healthy one first; still never the disabled one. */
static void test_fail_open(void **state)
{
    struct reg_service *po = service("po", 10, 0.5, 1);
    th_put(F.m, po, "10.7.0.1:80", "", "", 100);
    for (int i = 2; i <= 4; i++) {
        char a[32];
        snprintf(a, sizeof a, "10.7.0.%d:80", i);
        reg_instance_set_health(F.m, th_put(F.m, po, a, "", "", 100), REG_HEALTH_DOWN, "test", 0);
    }
    struct reg_instance_spec off = th_spec("10.7.0.9:80", "", "", 100);
    off.enabled = false;
    th_put_spec(F.m, po, &off, 0);
    start_server();
    DIG(o, "po.sluice.test", "A", "+short");
    assert_int_equal(count_of(o, "10.7.0."), 4);
    assert_int_equal(strncmp(o, "10.7.0.1\n", 9), 0);   /* healthy first */
    expect_not(o, (const char *const[]){"10.7.0.9", NULL});
    free(o);
    assert_int_equal(stats().fail_open, 1);
    /* below the threshold without fail-open (0.2): only the healthy one */
    service("po", 10, 0.2, 1);
    DIG(o2, "po.sluice.test", "A", "+short");
    assert_string_equal(o2, "10.7.0.1\n");
    free(o2);
}

/* SRV: priority by tier for a dc1 caller (0 dc1, 1 dc2, 2 dc3), weights
 * scaled so the largest of a priority is 65535, targets ADDR.web.ZONE with
 * their addresses in the additional section, and the targets resolve. */
static void test_srv(void **state)
{
    start_server();
    DIG(o, "_web._tcp.sluice.test", "SRV", "+subnet=192.0.2.0/24");
    expect(o, (const char *const[]){
                  "status: NOERROR", "ANSWER: 5, AUTHORITY: 0, ADDITIONAL: 6", "; CLIENT-SUBNET: 192.0.2.0/24/24",
                  "_web._tcp.sluice.test.\t5\tIN\tSRV\t0 21845 80 10-1-0-1.web.sluice.test.",
                  "_web._tcp.sluice.test.\t5\tIN\tSRV\t0 65535 80 10-1-0-2.web.sluice.test.",
                  "_web._tcp.sluice.test.\t5\tIN\tSRV\t0 21845 8080 20010db8000000000000000000000001.web.sluice.test.",
                  "_web._tcp.sluice.test.\t5\tIN\tSRV\t1 65535 80 10-2-0-1.web.sluice.test.",
                  "_web._tcp.sluice.test.\t5\tIN\tSRV\t2 65535 80 10-3-0-1.web.sluice.test.",
                  "10-1-0-2.web.sluice.test. 5\tIN\tA\t10.1.0.2",
                  "20010db8000000000000000000000001.web.sluice.test. 5 IN AAAA 2001:db8::1", NULL});
    expect_not(o, (const char *const[]){"10-1-0-98", "10-1-0-99", NULL});
    free(o);
    DIG(o2, "10-2-0-1.WEB.sluice.test", "A");
    expect(o2, (const char *const[]){"status: NOERROR", "10-2-0-1.WEB.sluice.test. 5\tIN\tA\t10.2.0.1", NULL});
    free(o2);
    DIG(o3, "20010db8000000000000000000000001.web.sluice.test", "AAAA", "+short");
    assert_string_equal(o3, "2001:db8::1\n");
    free(o3);
    /* a disabled instance's name does not exist; A of an IPv6 target is NODATA */
    DIG(o4, "10-1-0-99.web.sluice.test", "A");
    expect(o4, (const char *const[]){"status: NXDOMAIN", NULL});
    free(o4);
    DIG(o5, "20010db8000000000000000000000001.web.sluice.test", "A");
    expect(o5, (const char *const[]){"status: NOERROR", "ANSWER: 0, AUTHORITY: 1", NULL});
    free(o5);
    /* one name per address: the label as written, not another spelling of it */
    DIG(o7, "010-2-0-1.web.sluice.test", "A");
    expect(o7, (const char *const[]){"status: NXDOMAIN", NULL});
    free(o7);
    /* SRV of a dc2 caller: dc2 first */
    DIG(o6, "_web._tcp.sluice.test", "SRV", "+subnet=198.51.100.0/24", "+short");
    assert_int_equal(strncmp(o6, "0 65535 80 10-2-0-1.web.sluice.test.\n", 37), 0);
    free(o6);
}

static void test_apex_soa_ns(void **state)
{
    start_server();
    char want[160];
    snprintf(want, sizeof want, "sluice.test.\t\t3600\tIN\tSOA\tns1.sluice.test. hostmaster.sluice.test. %u 3600 600 604800 30",
             (unsigned)reg_model_index(F.m));
    DIG(o1, "sluice.test", "SOA");
    expect(o1, (const char *const[]){"status: NOERROR", "flags: qr aa rd;", "ANSWER: 1,", want, NULL});
    free(o1);
    DIG(o2, "SLUICE.test", "NS");
    expect(o2, (const char *const[]){"ANSWER: 1,", "SLUICE.test.\t\t3600\tIN\tNS\tns1.SLUICE.test.", NULL});
    free(o2);
    /* the serial follows the model's changes */
    th_put(F.m, F.web, "10.1.0.3:80", "dc1", "r1", 100);
    DIG(o3, "sluice.test", "SOA", "+short");
    char serial[64];
    snprintf(serial, sizeof serial, "hostmaster.sluice.test. %u ", (unsigned)reg_model_index(F.m));
    expect(o3, (const char *const[]){serial, NULL});
    free(o3);
    /* the NS name exists (NODATA), other apex types are NODATA */
    DIG(o4, "ns1.sluice.test", "A");
    expect(o4, (const char *const[]){"status: NOERROR", "ANSWER: 0, AUTHORITY: 1", NULL});
    free(o4);
    DIG(o5, "sluice.test", "A");
    expect(o5, (const char *const[]){"status: NOERROR", "ANSWER: 0, AUTHORITY: 1", NULL});
    free(o5);
}

/* NXDOMAIN and NODATA carry the SOA (TTL: the SOA minimum); outside the
 * zone REFUSED, not authoritative; the empty non-terminal _tcp is NODATA. */
static void test_negative_answers(void **state)
{
    start_server();
    DIG(o1, "nope.sluice.test", "A");
    expect(o1, (const char *const[]){"status: NXDOMAIN", "flags: qr aa rd;", "ANSWER: 0, AUTHORITY: 1",
                                     "sluice.test.\t\t30\tIN\tSOA\tns1.sluice.test. hostmaster.sluice.test.", NULL});
    free(o1);
    DIG(o2, "web.sluice.test", "TXT");
    expect(o2, (const char *const[]){"status: NOERROR", "ANSWER: 0, AUTHORITY: 1", "IN\tSOA\tns1.sluice.test.", NULL});
    free(o2);
    DIG(o3, "www.example.com", "A");
    expect(o3, (const char *const[]){"status: REFUSED", "flags: qr rd;", "ANSWER: 0, AUTHORITY: 0", NULL});
    free(o3);
    DIG(o4, "_tcp.sluice.test", "SRV");
    expect(o4, (const char *const[]){"status: NOERROR", "ANSWER: 0, AUTHORITY: 1", NULL});
    free(o4);
    DIG(o5, "_nope._tcp.sluice.test", "SRV");
    expect(o5, (const char *const[]){"status: NXDOMAIN", NULL});
    free(o5);
    DIG(o6, "a.b.web.sluice.test", "A");
    expect(o6, (const char *const[]){"status: NXDOMAIN", NULL});
    free(o6);
    DIG(o7, "sluice.test", "AXFR");
    expect(o7, (const char *const[]){"Transfer failed.", NULL});
    free(o7);
    /* a service with no AAAA instance: NODATA */
    struct reg_service *v4 = service("v4only", 1, 0, 1);
    th_put(F.m, v4, "10.8.0.1:80", "", "", 100);
    DIG(o8, "v4only.sluice.test", "AAAA");
    expect(o8, (const char *const[]){"status: NOERROR", "ANSWER: 0, AUTHORITY: 1", NULL});
    free(o8);
    struct reg_dns_stats s = stats();
    assert_true(s.by_rcode[REG_DNS_R_NXDOMAIN] >= 3);
    assert_true(s.by_rcode[REG_DNS_R_REFUSED] >= 2);
    assert_true(s.nodata >= 3);
}

/* FORMERR for a malformed query (two questions), NOTIMP for another
 * opcode, BADVERS for EDNS version 1, nothing for a runt or a response;
 * REFUSED for class CH. */
static void test_error_answers(void **state)
{
    start_server();
    uint8_t q[512], r[4096];
    size_t ql = make_query(q, 0x1234, "web.sluice.test", DNS_TYPE_A, false);
    q[5] = 2;   /* QDCOUNT 2 */
    size_t n = udp_ask(q, ql, r, sizeof r);
    assert_true(n >= 12);
    assert_int_equal(r[0] << 8 | r[1], 0x1234);
    assert_int_equal(rcode_of(r), DNS_RCODE_FORMERR);

    ql = make_query(q, 7, "web.sluice.test", DNS_TYPE_A, false);
    q[ql - 1] = 3;   /* class CH */
    n = udp_ask(q, ql, r, sizeof r);
    assert_int_equal(rcode_of(r), DNS_RCODE_REFUSED);

    DIG(o1, "sluice.test", "SOA", "+opcode=status");
    expect(o1, (const char *const[]){"opcode: STATUS, status: NOTIMP", NULL});
    free(o1);
    DIG(o2, "web.sluice.test", "A", "+edns=1", "+noednsneg");
    expect(o2, (const char *const[]){"status: BADVERS", NULL});
    free(o2);
    struct reg_dns_stats s = stats();
    assert_int_equal(s.by_rcode[REG_DNS_R_FORMERR], 1);
    assert_int_equal(s.by_rcode[REG_DNS_R_NOTIMP], 1);
    assert_int_equal(s.by_rcode[REG_DNS_R_BADVERS], 1);
    assert_int_equal(s.by_qtype[REG_DNS_Q_NONE], 2);   /* QDCOUNT 2 and NOTIMP: no question read */
}

/* 3,000 instances, answer_count 256: over UDP TC, dig retries over TCP
 * and gets all 256; 1,000 SRV records likewise (priority 2: the instances
 * have no datacenter), with as many of their addresses as fit. */
static void test_truncation_then_tcp(void **state)
{
    struct reg_service *big = service("big", 256, 0, 1);
    for (int i = 0; i < 3000; i++) {
        char a[32];
        snprintf(a, sizeof a, "10.50.%d.%d:80", i / 250, i % 250 + 1);
        th_put(F.m, big, a, "", "", 100);
    }
    struct reg_service *bs = service("bigsrv", 1, 0, 1);
    for (int i = 0; i < 1000; i++) {
        char a[32];
        snprintf(a, sizeof a, "10.60.%d.%d:80", i / 250, i % 250 + 1);
        th_put(F.m, bs, a, "", "", 100);
    }
    start_server();
    DIG(o1, "big.sluice.test", "A");
    expect(o1, (const char *const[]){";; Truncated, retrying in TCP mode.", "status: NOERROR", "ANSWER: 256,", NULL});
    assert_int_equal(count_of(o1, "\tIN\tA\t10.50."), 256);
    free(o1);
    DIG(o2, "_bigsrv._tcp.sluice.test", "SRV");
    expect(o2, (const char *const[]){";; Truncated, retrying in TCP mode.", "status: NOERROR", "ANSWER: 1000,", NULL});
    expect_not(o2, (const char *const[]){"flags: qr tc", NULL});
    if (count_of(o2, "SRV\t2 65535 80 10-60-") != 1000)
        fail_msg("expected 1000 SRV records:\n%.3000s", o2);
    free(o2);
    struct reg_dns_stats s = stats();
    assert_int_equal(s.truncated, 2);
    assert_int_equal(s.queries_tcp, 2);
    /* a UDP answer to a 512-byte client without EDNS: TC too */
    DIG(o3, "big.sluice.test", "A", "+noedns", "+ignore");
    expect(o3, (const char *const[]){"flags: qr aa tc rd;", NULL});
    free(o3);
}

/* An SRV answer larger than a DNS message (2,000 instances, about 90 KB)
 * is cut at 65,535 bytes over TCP too, at a record boundary, with TC:
 * never a longer message (Consul #3850). */
static void test_srv_past_64k(void **state)
{
    struct reg_service *huge = service("huge", 1, 0, 1);
    for (int i = 0; i < 2000; i++) {
        char a[32];
        snprintf(a, sizeof a, "10.70.%d.%d:80", i / 250, i % 250 + 1);
        th_put(F.m, huge, a, "", "", 100);
    }
    start_server();
    int fd = tcp_client();
    uint8_t q[300];
    size_t ql = make_query(q + 2, 77, "_huge._tcp.sluice.test", DNS_TYPE_SRV, true);
    q[0] = (uint8_t)(ql >> 8);
    q[1] = (uint8_t)ql;
    assert_int_equal(write(fd, q, ql + 2), (ssize_t)(ql + 2));
    static uint8_t in[2 + DNS_MSG_MAX];
    size_t got = 0;
    bool eof = false;
    while (!eof && (got < 2 || got < 2 + (size_t)(in[0] << 8 | in[1])))
        got += serve_until(fd, in + got, sizeof in - got, sizeof in, &eof);
    close(fd);
    size_t mlen = (size_t)(in[0] << 8 | in[1]);
    assert_true(got >= 2 + mlen && mlen > 60000);
    const uint8_t *r = in + 2;
    assert_int_equal(r[0] << 8 | r[1], 77);
    assert_true(r[2] & 0x02);                       /* TC */
    assert_int_equal(rcode_of(r), DNS_RCODE_NOERROR);
    unsigned an = ancount_of(r);
    assert_true(an > 1000 && an < 2000);
    assert_int_equal(r[8] << 8 | r[9], 0);          /* no authority */
    assert_int_equal(r[10] << 8 | r[11], 1);        /* only the OPT */
}

/* Several queries on one TCP connection: dig +keepopen asks in turn;
 * raw pipelined queries written at once are answered in order. */
static void test_tcp_several_queries(void **state)
{
    start_server();
    DIG(o, "+tcp", "+keepopen", "web.sluice.test", "A", "sluice.test", "SOA", "nope.sluice.test", "A");
    expect(o, (const char *const[]){"status: NXDOMAIN", "IN\tSOA\tns1.sluice.test.", "IN\tA\t10.1.0.", NULL});
    free(o);
    struct reg_dns_stats s = stats();
    assert_int_equal(s.tcp_accepted, 1);
    assert_int_equal(s.queries_tcp, 3);

    int fd = tcp_client();
    uint8_t out[2048];
    size_t len = 0;
    const char *names[3] = {"web.sluice.test", "nope.sluice.test", "sluice.test"};
    const uint16_t types[3] = {DNS_TYPE_A, DNS_TYPE_A, DNS_TYPE_SOA};
    for (int i = 0; i < 3; i++) {
        size_t ql = make_query(out + len + 2, (uint16_t)(100 + i), names[i], types[i], i == 0);
        out[len] = (uint8_t)(ql >> 8);
        out[len + 1] = (uint8_t)ql;
        len += 2 + ql;
    }
    assert_int_equal(write(fd, out, len), (ssize_t)len);
    uint8_t in[8192];
    size_t got = 0;
    unsigned answers = 0;
    for (size_t off = 0; answers < 3;) {
        if (got - off < 2 || got - off < 2 + (size_t)(in[off] << 8 | in[off + 1])) {
            bool eof = false;
            size_t more = serve_until(fd, in + got, sizeof in - got, 1, &eof);
            assert_false(eof);
            got += more;
            continue;
        }
        size_t mlen = (size_t)(in[off] << 8 | in[off + 1]);
        const uint8_t *r = in + off + 2;
        assert_int_equal(r[0] << 8 | r[1], 100 + answers);   /* in order */
        assert_int_equal(rcode_of(r), answers == 1 ? DNS_RCODE_NXDOMAIN : DNS_RCODE_NOERROR);
        assert_int_equal(ancount_of(r), answers == 0 ? 2 : answers == 1 ? 0 : 1);
        off += 2 + mlen;
        answers++;
    }
    close(fd);
}

static void test_case_insensitive(void **state)
{
    start_server();
    DIG(o, "WeB.SlUiCe.TeSt", "A", "+subnet=198.51.100.0/24");
    expect(o, (const char *const[]){"status: NOERROR", "flags: qr aa rd;", "WeB.SlUiCe.TeSt.\t5\tIN\tA\t10.2.0.1", NULL});
    free(o);
    DIG(o2, "_WEB._TCP.SLUICE.TEST", "SRV", "+short");
    assert_int_equal(count_of(o2, " 80 10-"), 4);
    free(o2);
}

/* Connections past the cap are closed at once; idle ones after the idle
 * time; a partial message does not keep a connection. */
static void test_tcp_limits(void **state)
{
    F.conf.tcp_max_conns = 2;
    F.conf.tcp_idle_ms = 300;
    start_server();
    int a = tcp_client(), b = tcp_client();
    uint8_t buf[64];
    bool eof = false;
    /* let the server accept both: a query on each */
    for (int i = 0; i < 2; i++) {
        uint8_t q[300];
        size_t ql = make_query(q + 2, 1, "sluice.test", DNS_TYPE_SOA, false);
        q[0] = (uint8_t)(ql >> 8);
        q[1] = (uint8_t)ql;
        assert_int_equal(write(i ? b : a, q, ql + 2), (ssize_t)(ql + 2));
        assert_true(serve_until(i ? b : a, buf, sizeof buf, 2, &eof) >= 2);
    }
    int c = tcp_client();
    serve_until(c, buf, sizeof buf, 1, &eof);
    assert_true(eof);   /* closed at once */
    close(c);
    assert_int_equal(stats().dropped[REG_DNS_DROP_TCP_LIMIT], 1);
    assert_int_equal(stats().tcp_open, 2);
    /* a half-sent message, then silence: closed after 300 ms */
    assert_int_equal(write(a, "\x00\x20\x12", 3), 3);
    size_t n;
    do
        n = serve_until(a, buf, sizeof buf, sizeof buf, &eof);
    while (!eof && n < sizeof buf);
    assert_true(eof);
    do
        n = serve_until(b, buf, sizeof buf, sizeof buf, &eof);
    while (!eof && n < sizeof buf);
    assert_true(eof);
    close(a);
    close(b);
    assert_int_equal(stats().dropped[REG_DNS_DROP_TCP_IDLE], 2);
    assert_int_equal(stats().tcp_open, 0);
}

/* Garbage over UDP and TCP: no crash, answers keep coming. */
static void test_garbage(void **state)
{
    start_server();
    int u = udp_client();
    uint64_t x = 88172645463325252ull;
    uint8_t g[600];
    for (int i = 0; i < 3000; i++) {
        size_t len = (size_t)(i % 599) + 1;
        for (size_t j = 0; j < len; j++) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            g[j] = (uint8_t)x;
        }
        if (i % 3 == 0 && len > 12)
            memcpy(g + 12, "\x03web\x06sluice\x04test\x00", 17 < len - 12 ? 17 : len - 12);
        g[2] &= 0x7f;   /* mostly not responses, so most get an answer */
        send(u, g, len, 0);
        if (i % 50 == 49) {
            uint8_t r[4096];
            serve_until(u, r, sizeof r, 0, NULL);
            while (recv(u, r, sizeof r, 0) > 0)
                ;
        }
    }
    close(u);
    /* TCP: a length followed by garbage, then a good query on the same connection */
    int t = tcp_client();
    uint8_t msg[2 + 40 + 2 + 64];
    msg[0] = 0;
    msg[1] = 40;
    memset(msg + 2, 0xff, 40);
    size_t ql = make_query(msg + 44, 9, "web.sluice.test", DNS_TYPE_A, false);
    msg[42] = 0;
    msg[43] = (uint8_t)ql;
    assert_int_equal(write(t, msg, 44 + ql), (ssize_t)(44 + ql));
    uint8_t in[1024];
    size_t got = 0;
    bool eof = false;
    while (!eof && got < 2 + 12)
        got += serve_until(t, in + got, sizeof in - got, 1, &eof);
    close(t);
    /* the garbage got FORMERR or nothing (0xff has QR set: dropped); the query its answer */
    assert_true(got >= 14);
    assert_int_equal(in[2] << 8 | in[3], 9);
    assert_int_equal(rcode_of(in + 2), DNS_RCODE_NOERROR);
    DIG(o, "web.sluice.test", "A", "+short");
    assert_int_equal(count_of(o, "10.1.0."), 2);
    free(o);
    assert_true(stats().by_rcode[REG_DNS_R_FORMERR] > 100);
}

static void test_metrics(void **state)
{
    start_server();
    DIG(o, "web.sluice.test", "A", "+subnet=192.0.2.0/24");
    free(o);
    struct metrics_registry reg = {0};
    assert_int_equal(reg_dns_metrics(&reg, F.dns), 0);
    struct strbuf sb = {0};
    metrics_collect(&reg, &sb);
    char *text = strbuf_finish(&sb, NULL);
    expect(text, (const char *const[]){"# TYPE sluice_registry_dns_queries_total counter",
                                       "sluice_registry_dns_queries_total{transport=\"udp\"} 1",
                                       "sluice_registry_dns_queries_by_type_total{qtype=\"A\"} 1",
                                       "sluice_registry_dns_responses_total{rcode=\"NOERROR\"} 1",
                                       "sluice_registry_dns_client_subnet_total 1",
                                       "sluice_registry_dns_answers_by_tier_total{tier=\"datacenter\"} 1",
                                       "sluice_registry_dns_fail_open_total 0",
                                       "sluice_registry_dns_dropped_total{reason=\"tcp_limit\"} 0",
                                       "# TYPE sluice_registry_dns_tcp_connections gauge", NULL});
    free(text);
}

/* Bound to 0.0.0.0, a query sent to 127.0.0.2 is answered from 127.0.0.2
 * (IP_PKTINFO), not from the address the routing would pick (127.0.0.1),
 * which dig would reject as coming from an unexpected source. */
static void test_wildcard_listener(void **state)
{
    const char *why;
    assert_int_equal(addr_parse("0.0.0.0:0", &F.conf.listen[0], &why), 0);
    start_server();
    const char *argv[] = {"dig", "@127.0.0.2", "-p", F.port, "+time=2", "+tries=1", "web.sluice.test", "A", NULL};
    char *o = run(argv);
    if (!o)
        skip();
    expect(o, (const char *const[]){"status: NOERROR", "SERVER: 127.0.0.2#", NULL});
    expect_not(o, (const char *const[]){"unexpected source", NULL});
    free(o);
}

/* Two listen addresses, IPv4 and IPv6, each with UDP and TCP; an IPv6
 * client in no subnet gets the "all" tier. Skipped without ::1. */
static void test_two_listeners_v4_v6(void **state)
{
    int probe = socket(AF_INET6, SOCK_DGRAM, 0);
    struct sockaddr_in6 lo6 = {.sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT};
    bool have_v6 = probe >= 0 && bind(probe, (struct sockaddr *)&lo6, sizeof lo6) == 0;
    if (probe >= 0)
        close(probe);
    if (!have_v6) {
        fprintf(stderr, "no ::1 here: skipped\n");
        skip();
    }
    const char *why;
    assert_int_equal(addr_parse("[::1]:0", &F.conf.listen[1], &why), 0);
    F.conf.n_listen = 2;
    start_server();
    char port6[16];
    snprintf(port6, sizeof port6, "%u", addr_port(reg_dns_bound(F.dns, 1)));
    const char *udp[] = {"dig", "@::1", "-p", port6, "+time=5", "+tries=1", "web.sluice.test", "A", NULL};
    char *o1 = run(udp);
    if (!o1)
        skip();
    expect(o1, (const char *const[]){"status: NOERROR", "ANSWER: 2,", "SERVER: ::1#", NULL});
    free(o1);
    const char *tcp[] = {"dig", "@::1", "-p", port6, "+time=5", "+tries=1", "+tcp", "sluice.test", "SOA", NULL};
    char *o2 = run(tcp);
    expect(o2, (const char *const[]){"status: NOERROR", "IN\tSOA\tns1.sluice.test.", "(TCP)", NULL});
    free(o2);
    DIG(o3, "web.sluice.test", "A");
    expect(o3, (const char *const[]){"status: NOERROR", NULL});
    free(o3);
    struct reg_dns_stats s = stats();
    assert_int_equal(s.by_tier[REG_TIER_ALL], 1);   /* ::1 is in no subnet */
    assert_int_equal(s.by_tier[REG_TIER_DC], 1);    /* 127.0.0.1 is dc1 */
    assert_int_equal(s.queries_tcp, 1);
}

/* Bad configurations are refused with the field; a busy port says so. */
static void test_conf_errors(void **state)
{
    char err[256];
    struct reg_dns_conf c;
    reg_dns_conf_defaults(&c);
    snprintf(c.zone, sizeof c.zone, "bad..zone");
    assert_null(reg_dns_start(F.loop, &c, F.m, NULL, err, sizeof err));
    assert_non_null(strstr(err, "dns.zone"));
    reg_dns_conf_defaults(&c);
    c.udp_max = 100;
    assert_null(reg_dns_start(F.loop, &c, F.m, NULL, err, sizeof err));
    assert_non_null(strstr(err, "dns.udp_max"));
    start_server();
    reg_dns_conf_defaults(&c);
    c.listen[0] = *reg_dns_bound(F.dns, 0);
    c.n_listen = 1;
    assert_null(reg_dns_start(F.loop, &c, F.m, NULL, err, sizeof err));
    assert_non_null(strstr(err, "Address already in use"));
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_weighted_spread, setup, teardown),
        cmocka_unit_test_setup_teardown(test_locality_by_client_subnet, setup, teardown),
        cmocka_unit_test_setup_teardown(test_locality_fallback, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fail_open, setup, teardown),
        cmocka_unit_test_setup_teardown(test_srv, setup, teardown),
        cmocka_unit_test_setup_teardown(test_apex_soa_ns, setup, teardown),
        cmocka_unit_test_setup_teardown(test_negative_answers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_error_answers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_truncation_then_tcp, setup, teardown),
        cmocka_unit_test_setup_teardown(test_srv_past_64k, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tcp_several_queries, setup, teardown),
        cmocka_unit_test_setup_teardown(test_case_insensitive, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tcp_limits, setup, teardown),
        cmocka_unit_test_setup_teardown(test_garbage, setup, teardown),
        cmocka_unit_test_setup_teardown(test_metrics, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wildcard_listener, setup, teardown),
        cmocka_unit_test_setup_teardown(test_two_listeners_v4_v6, setup, teardown),
        cmocka_unit_test_setup_teardown(test_conf_errors, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
