/* See probe.h. */
#include "ha/probe.h"

#include <arpa/inet.h>
#include <errno.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "ha/probe_route.h"

/* ---- configuration -------------------------------------------------- */

void probe_conf_defaults(struct probe_conf *c)
{
    memset(c, 0, sizeof *c);
    c->interval_ms = 1000;
    c->timeout_ms = 500;
    c->fall = 3;
    c->rise = 2;
    c->hold_ms = 30000;
    c->learn_ports = 4;
    c->port_lo = 61000;
    c->port_hi = 61999;
}


const char *probe_conf_check(const struct probe_conf *c)
{
    if (c->interval_ms == 0)
        return "probe.interval: must be more than 0";
    if (c->timeout_ms == 0)
        return "probe.timeout: must be more than 0";
    /* A remembered source port is reused every round: its previous probe
     * must have ended, or the two would share a 4-tuple. */
    if (c->timeout_ms >= c->interval_ms)
        return "probe.timeout: must be shorter than probe.interval";
    if (c->fall == 0)
        return "probe.fall: must be at least 1";
    if (c->rise == 0)
        return "probe.rise: must be at least 1";
    if (c->learn_ports > PROBE_LEARN_MAX)
        return "probe.learn_ports: at most 16";
    if (c->port_lo == 0 || c->port_hi < c->port_lo)
        return "probe.source_ports: need 1 <= low <= high";
    if (c->source4.ss_family && c->source4.ss_family != AF_INET)
        return "probe.source: the IPv4 source must be an IPv4 address";
    if (c->source6.ss_family && c->source6.ss_family != AF_INET6)
        return "probe.source: the IPv6 source must be an IPv6 address";
    if (c->gateway4.ss_family && c->gateway4.ss_family != AF_INET)
        return "probe.gateway: the IPv4 gateway must be an IPv4 address";
    if (c->gateway6.ss_family && c->gateway6.ss_family != AF_INET6)
        return "probe.gateway: the IPv6 gateway must be an IPv6 address";
    return NULL;
}

/* ---- 1. the decision rule -------------------------------------------- */

void probe_fsm_init(struct probe_fsm *f, uint64_t now_ms)
{
    *f = (struct probe_fsm){ .state = PROBE_SERVING, .since_ms = now_ms };
}

static enum probe_verdict withdraw(struct probe_fsm *f, uint64_t now_ms)
{
    f->state = PROBE_WITHDRAWN;
    f->since_ms = now_ms;
    f->fails = f->oks = 0;
    return PROBE_VERDICT_WITHDRAW;
}

enum probe_verdict probe_fsm_result(struct probe_fsm *f, const struct probe_conf *c, bool ok, bool through_us,
                                    bool node_healthy, uint64_t now_ms)
{
    if (!through_us || f->state == PROBE_WITHDRAWN)
        return PROBE_VERDICT_NONE;
    if (f->state == PROBE_SERVING) {
        if (ok || !node_healthy) {
            f->fails = 0;
            return PROBE_VERDICT_NONE;
        }
        if (++f->fails >= c->fall)
            return withdraw(f, now_ms);
        return PROBE_VERDICT_NONE;
    }
    /* RECHECKING */
    if (ok) {
        if (++f->oks >= c->rise) {
            f->state = PROBE_SERVING;
            f->since_ms = now_ms;
            f->oks = f->fails = 0;
            return PROBE_VERDICT_RESTORED;
        }
        return PROBE_VERDICT_NONE;
    }
    if (!node_healthy) {
        f->oks = 0;
        return PROBE_VERDICT_NONE;
    }
    return withdraw(f, now_ms);
}

enum probe_verdict probe_fsm_tick(struct probe_fsm *f, const struct probe_conf *c, uint64_t now_ms)
{
    if (f->state != PROBE_WITHDRAWN || now_ms - f->since_ms < c->hold_ms)
        return PROBE_VERDICT_NONE;
    f->state = PROBE_RECHECKING;
    f->since_ms = now_ms;
    f->oks = f->fails = 0;
    return PROBE_VERDICT_REANNOUNCE;
}

const char *probe_fsm_state_name(enum probe_fsm_state s)
{
    switch (s) {
    case PROBE_SERVING: return "serving";
    case PROBE_WITHDRAWN: return "withdrawn";
    case PROBE_RECHECKING: return "rechecking";
    }
    return "?";
}

const char *probe_verdict_name(enum probe_verdict v)
{
    switch (v) {
    case PROBE_VERDICT_NONE: return "none";
    case PROBE_VERDICT_WITHDRAW: return "withdraw";
    case PROBE_VERDICT_REANNOUNCE: return "reannounce";
    case PROBE_VERDICT_RESTORED: return "restored";
    }
    return "?";
}

const char *probe_outcome_name(enum probe_outcome o)
{
    switch (o) {
    case PROBE_OK: return "ok";
    case PROBE_REFUSED: return "refused";
    case PROBE_TIMEOUT: return "timeout";
    case PROBE_ERROR: return "error";
    }
    return "?";
}

const char *probe_path_name(enum probe_path p)
{
    switch (p) {
    case PROBE_PATH_US: return "us";
    case PROBE_PATH_ELSEWHERE: return "elsewhere";
    case PROBE_PATH_UNKNOWN: return "unknown";
    }
    return "?";
}

/* ---- 2. one probe ----------------------------------------------------- */

/* How often a probe whose next hop is being resolved looks again. */
#define RESOLVE_RETRY_MS 20
/* Packet sockets: one per (family, source address), their filter names it. */
#define PROBE_SOCKS 4

struct probe_sock {
    struct probe_engine *engine;
    int family;
    uint8_t source[16];
    int fd; /* -1 = slot free */
    struct ev_io io;
};

struct probe {
    struct probe *prev, *next;
    struct probe_engine *engine;
    uint64_t id;
    struct probe_flow flow;
    bool sport_given;
    bool sent;
    uint32_t seq;
    uint64_t deadline_ms; /* of next-hop resolution, then of the answer */
    uint64_t sent_us;
    int came_back_ifindex; /* our SYN arrived back on this interface (0 = not seen) */
    struct probe_nexthop nh;
    struct probe_sock *sock;
    struct ev_timer timer;
    probe_done_fn cb;
    void *arg;
};

struct probe_engine {
    struct ev_loop *loop;
    struct probe_conf conf;
    probe_through_fn through;
    void *through_ctx;
    struct probe_sock socks[PROBE_SOCKS];
    struct probe *inflight;
    uint64_t next_id;
    uint64_t rng;
};

static uint64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* xorshift64*: sequence numbers and ports need to be unpredictable to
 * nobody in particular, only spread; seeded from getrandom(). */
static uint64_t rnd(struct probe_engine *e)
{
    e->rng ^= e->rng >> 12;
    e->rng ^= e->rng << 25;
    e->rng ^= e->rng >> 27;
    return e->rng * 0x2545F4914F6CDD1DULL;
}

static size_t alen_of(int family)
{
    return family == AF_INET ? 4 : 16;
}

struct probe_engine *probe_engine_new(struct ev_loop *loop, const struct probe_conf *conf, probe_through_fn through,
                                      void *through_ctx)
{
    struct probe_engine *e = calloc(1, sizeof *e);
    if (!e)
        return NULL;
    e->loop = loop;
    e->conf = *conf;
    e->through = through;
    e->through_ctx = through_ctx;
    for (int i = 0; i < PROBE_SOCKS; i++)
        e->socks[i].fd = -1;
    if (getrandom(&e->rng, sizeof e->rng, 0) != sizeof e->rng || e->rng == 0)
        e->rng = now_us() | 1;
    e->next_id = 1;
    return e;
}

static void probe_unlink(struct probe *p)
{
    struct probe_engine *e = p->engine;
    if (p->prev)
        p->prev->next = p->next;
    else
        e->inflight = p->next;
    if (p->next)
        p->next->prev = p->prev;
    ev_timer_stop(e->loop, &p->timer);
}

static void reset_unanswered(struct probe *p);

void probe_engine_free(struct probe_engine *e)
{
    if (!e)
        return;
    while (e->inflight) {
        struct probe *p = e->inflight;
        reset_unanswered(p);
        probe_unlink(p);
        free(p);
    }
    for (int i = 0; i < PROBE_SOCKS; i++)
        if (e->socks[i].fd >= 0) {
            ev_io_stop(e->loop, &e->socks[i].io);
            close(e->socks[i].fd);
        }
    free(e);
}

/* Ask the owner whether the flow went through this node. */
static enum probe_path ask_path(struct probe_engine *e, const struct probe_flow *flow)
{
    if (!e->through)
        return PROBE_PATH_UNKNOWN;
    int r = e->through(e->through_ctx, flow);
    return r > 0 ? PROBE_PATH_US : r == 0 ? PROBE_PATH_ELSEWHERE : PROBE_PATH_UNKNOWN;
}

int probe_accept_local(int ifindex, char ifname[IF_NAMESIZE])
{
    if (!if_indextoname((unsigned)ifindex, ifname))
        return -1;
    int on = 0;
    const char *names[2] = { "all", ifname };
    for (int i = 0; i < 2; i++) {
        char path[128];
        snprintf(path, sizeof path, "/proc/sys/net/ipv4/conf/%s/accept_local", names[i]);
        FILE *f = fopen(path, "r");
        int v = 0;
        if (!f)
            return -1;
        if (fscanf(f, "%d", &v) != 1)
            v = 0;
        fclose(f);
        on |= v != 0;
    }
    return on;
}

/* The path of a probe that ended: a SYN of ours that arrived back from
 * the routers says "us" by itself (the data path of a socket tier is
 * this kernel; an XDP forwarder takes its packets before packet sockets
 * see them, so for it the predicate answers). A timeout after such a SYN
 * arrived on an IPv4 interface without accept_local says nothing about
 * the service: the kernel dropped the probe as a martian (its source is
 * ours), where a client's SYN would have been served. */
static enum probe_path path_of(struct probe_engine *e, const struct probe *p, enum probe_outcome outcome,
                               char *detail, size_t detail_len)
{
    if (outcome == PROBE_ERROR)
        return PROBE_PATH_UNKNOWN;
    if (!p->came_back_ifindex)
        return ask_path(e, &p->flow);
    char ifname[IF_NAMESIZE] = "?";
    if (outcome == PROBE_TIMEOUT && p->flow.tuple.family == AF_INET && probe_accept_local(p->came_back_ifindex, ifname) == 0) {
        snprintf(detail, detail_len, "came back on %s, dropped as a martian: set net.ipv4.conf.%s.accept_local=1",
                 ifname, ifname);
        return PROBE_PATH_UNKNOWN;
    }
    return PROBE_PATH_US;
}

static void finish(struct probe *p, enum probe_outcome outcome, uint64_t rtt_us, const char *detail)
{
    struct probe_engine *e = p->engine;
    struct probe_result r = { .id = p->id, .outcome = outcome, .flow = p->flow, .rtt_us = (uint32_t)rtt_us };
    if (detail)
        snprintf(r.detail, sizeof r.detail, "%s", detail);
    r.path = path_of(e, p, outcome, r.detail, sizeof r.detail);
    probe_unlink(p);
    probe_done_fn cb = p->cb;
    void *arg = p->arg;
    free(p);
    cb(arg, &r);
}

static int send_packet(struct probe *p, const uint8_t *pkt, size_t len)
{
    struct sockaddr_ll to = {
        .sll_family = AF_PACKET,
        .sll_protocol = htons(p->flow.tuple.family == AF_INET ? ETH_P_IP : ETH_P_IPV6),
        .sll_ifindex = p->nh.ifindex,
        .sll_halen = 6,
    };
    memcpy(to.sll_addr, p->nh.mac, 6);
    ssize_t n = sendto(p->sock->fd, pkt, len, 0, (struct sockaddr *)&to, sizeof to);
    return n == (ssize_t)len ? 0 : -1;
}

static void sock_readable(struct ev_loop *loop, struct ev_io *io, uint32_t revents);

/* The packet socket for (family, source): opened with protocol 0 (it
 * receives nothing), given its filter, then bound to the protocol on
 * every interface, so no unfiltered packet is ever queued on it. */
static struct probe_sock *sock_for(struct probe_engine *e, int family, const uint8_t *source, char *err,
                                   size_t errlen)
{
    size_t alen = alen_of(family);
    struct probe_sock *free_slot = NULL;
    for (int i = 0; i < PROBE_SOCKS; i++) {
        struct probe_sock *s = &e->socks[i];
        if (s->fd >= 0 && s->family == family && memcmp(s->source, source, alen) == 0)
            return s;
        if (s->fd < 0 && !free_slot)
            free_slot = s;
    }
    if (!free_slot) {
        snprintf(err, errlen, "too many probe source addresses (at most %d)", PROBE_SOCKS);
        return NULL;
    }
    int fd = socket(AF_PACKET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(err, errlen, "packet socket: %s", strerror(errno));
        return NULL;
    }
    struct sock_filter prog[PROBE_FILTER_MAX];
    size_t n = probe_filter_build(prog, PROBE_FILTER_MAX, family, source, e->conf.port_lo, e->conf.port_hi);
    struct sock_fprog fprog = { .len = (unsigned short)n, .filter = prog };
    uint16_t proto = htons(family == AF_INET ? ETH_P_IP : ETH_P_IPV6);
    struct sockaddr_ll bind_to = { .sll_family = AF_PACKET, .sll_protocol = proto };
    int on = 1;
    if (n == 0 || setsockopt(fd, SOL_SOCKET, SO_ATTACH_FILTER, &fprog, sizeof fprog) < 0 ||
        setsockopt(fd, SOL_PACKET, PACKET_AUXDATA, &on, sizeof on) < 0 ||
        bind(fd, (struct sockaddr *)&bind_to, sizeof bind_to) < 0) {
        snprintf(err, errlen, "packet socket setup: %s", strerror(errno));
        close(fd);
        return NULL;
    }
    struct probe_sock *s = free_slot;
    s->engine = e;
    s->family = family;
    memcpy(s->source, source, alen);
    s->fd = fd;
    ev_io_init(&s->io, fd, sock_readable, s);
    ev_io_set(e->loop, &s->io, EPOLLIN);
    return s;
}

static const uint8_t *source_conf(const struct probe_engine *e, int family)
{
    const struct sockaddr_storage *ss = family == AF_INET ? &e->conf.source4 : &e->conf.source6;
    if (ss->ss_family == AF_INET)
        return (const uint8_t *)&((const struct sockaddr_in *)ss)->sin_addr;
    if (ss->ss_family == AF_INET6)
        return (const uint8_t *)&((const struct sockaddr_in6 *)ss)->sin6_addr;
    return NULL;
}

static const uint8_t *gateway_conf(const struct probe_engine *e, int family)
{
    const struct sockaddr_storage *ss = family == AF_INET ? &e->conf.gateway4 : &e->conf.gateway6;
    if (ss->ss_family == AF_INET)
        return (const uint8_t *)&((const struct sockaddr_in *)ss)->sin_addr;
    if (ss->ss_family == AF_INET6)
        return (const uint8_t *)&((const struct sockaddr_in6 *)ss)->sin6_addr;
    return NULL;
}

static bool port_busy(const struct probe_engine *e, const struct probe *self)
{
    size_t alen = alen_of(self->flow.tuple.family);
    for (const struct probe *p = e->inflight; p; p = p->next)
        if (p != self && p->flow.tuple.family == self->flow.tuple.family && p->flow.tuple.sport == self->flow.tuple.sport &&
            p->flow.tuple.dport == self->flow.tuple.dport && memcmp(p->flow.tuple.dst, self->flow.tuple.dst, alen) == 0)
            return true;
    return false;
}

static void pick_port(struct probe_engine *e, struct probe *p)
{
    uint32_t span = (uint32_t)e->conf.port_hi - e->conf.port_lo + 1;
    for (int tries = 0; tries < 16; tries++) {
        p->flow.tuple.sport = (uint16_t)(e->conf.port_lo + rnd(e) % span);
        if (!port_busy(e, p))
            return;
    }
}

static void probe_timer(struct ev_loop *loop, struct ev_timer *t);

/* Resolve the next hop and send the SYN; re-armed while the gateway's MAC
 * is being resolved. */
static void try_send(struct probe *p)
{
    struct probe_engine *e = p->engine;
    int family = p->flow.tuple.family;
    char err[128];
    enum probe_route_rc rc = probe_route_resolve(family, p->flow.tuple.dst, gateway_conf(e, family), &p->nh, err,
                                                 sizeof err);
    if (rc == PROBE_ROUTE_PENDING && ev_now(e->loop) < p->deadline_ms) {
        ev_timer_start(e->loop, &p->timer, RESOLVE_RETRY_MS);
        return;
    }
    if (rc != PROBE_ROUTE_FOUND) {
        finish(p, PROBE_ERROR, 0, err);
        return;
    }
    const uint8_t *source = source_conf(e, family);
    if (!source && !p->nh.has_source) {
        finish(p, PROBE_ERROR, 0, "no probe source address: the uplink has none; set the probe source");
        return;
    }
    memcpy(p->flow.tuple.src, source ? source : p->nh.source, alen_of(family));
    p->sock = sock_for(e, family, p->flow.tuple.src, err, sizeof err);
    if (!p->sock) {
        finish(p, PROBE_ERROR, 0, err);
        return;
    }
    if (!p->sport_given)
        pick_port(e, p);
    p->seq = (uint32_t)rnd(e);
    uint8_t pkt[PROBE_PACKET_MAX];
    size_t len = probe_build_syn(pkt, sizeof pkt, &p->flow.tuple, p->seq, (uint16_t)rnd(e));
    p->sent_us = now_us();
    p->flow.sent_ms = ev_now(e->loop);
    if (send_packet(p, pkt, len) < 0) {
        snprintf(err, sizeof err, "sending the SYN: %s", strerror(errno));
        finish(p, PROBE_ERROR, 0, err);
        return;
    }
    p->sent = true;
    ev_timer_start(e->loop, &p->timer, e->conf.timeout_ms);
}

/* A probe given up (timed out, cancelled, its engine freed) may have
 * left a half-open connection on the server, whose SYN-ACK is lost or
 * still to come: a RST with the sequence number that SYN-ACK would
 * acknowledge (our ISN + 1, the server's rcv_nxt) removes it. Where the
 * SYN never arrived the server ignores it. Best effort. */
static void reset_unanswered(struct probe *p)
{
    if (!p->sent)
        return;
    uint8_t pkt[PROBE_PACKET_MAX];
    size_t len = probe_build_rst(pkt, sizeof pkt, &p->flow.tuple, p->seq + 1, (uint16_t)rnd(p->engine));
    (void)send_packet(p, pkt, len);
}

static void probe_timer(struct ev_loop *loop, struct ev_timer *t)
{
    struct probe *p = t->data;
    if (p->sent) {
        reset_unanswered(p);
        finish(p, PROBE_TIMEOUT, 0, NULL);
    } else {
        try_send(p);
    }
}

uint64_t probe_start(struct probe_engine *e, const struct sockaddr *vip, uint16_t sport, probe_done_fn cb, void *arg)
{
    if (!e || !vip || !cb)
        return 0;
    struct probe *p = calloc(1, sizeof *p);
    if (!p)
        return 0;
    struct probe_tuple *t = &p->flow.tuple;
    if (vip->sa_family == AF_INET) {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)vip;
        t->family = AF_INET;
        memcpy(t->dst, &sin->sin_addr, 4);
        t->dport = ntohs(sin->sin_port);
    } else if (vip->sa_family == AF_INET6) {
        const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)vip;
        t->family = AF_INET6;
        memcpy(t->dst, &sin6->sin6_addr, 16);
        t->dport = ntohs(sin6->sin6_port);
    }
    if (!t->family || t->dport == 0 || (sport && (sport < e->conf.port_lo || sport > e->conf.port_hi))) {
        free(p); /* a source port outside the range would not pass the filter */
        return 0;
    }
    t->sport = sport;
    p->sport_given = sport != 0;
    p->engine = e;
    p->id = e->next_id++;
    p->cb = cb;
    p->arg = arg;
    p->deadline_ms = ev_now(e->loop) + e->conf.timeout_ms;
    ev_timer_init(&p->timer, probe_timer, p);
    p->next = e->inflight;
    if (e->inflight)
        e->inflight->prev = p;
    e->inflight = p;
    /* From the loop, never from here: the callback must not run inside
     * probe_start(). */
    ev_timer_start(e->loop, &p->timer, 0);
    return p->id;
}

void probe_cancel(struct probe_engine *e, uint64_t id)
{
    for (struct probe *p = e->inflight; p; p = p->next)
        if (p->id == id) {
            reset_unanswered(p);
            probe_unlink(p);
            free(p);
            return;
        }
}

/* The probe an answer belongs to: same tuple, sent, and the answer
 * acknowledges its SYN (a stray segment of an older flow on a reused
 * tuple does not end a newer probe). */
static struct probe *match(struct probe_engine *e, const struct probe_reply *r)
{
    size_t alen = alen_of(r->tuple.family);
    for (struct probe *p = e->inflight; p; p = p->next) {
        const struct probe_tuple *t = &p->flow.tuple;
        if (!p->sent || t->family != r->tuple.family || t->sport != r->tuple.sport || t->dport != r->tuple.dport ||
            memcmp(t->src, r->tuple.src, alen) != 0 || memcmp(t->dst, r->tuple.dst, alen) != 0)
            continue;
        if (r->ack == p->seq + 1)
            return p;
    }
    return NULL;
}

static void handle_reply(struct probe_engine *e, const struct probe_reply *r)
{
    struct probe *p = match(e, r);
    if (!p)
        return;
    uint64_t rtt = now_us() - p->sent_us;
    if (r->kind == PROBE_REPLY_RST) {
        finish(p, PROBE_REFUSED, rtt, NULL);
        return;
    }
    /* Ask the path before the RST: a proxy's half-open socket is what
     * sock_diag finds, and the RST removes it. */
    struct probe_result res = { .id = p->id, .outcome = PROBE_OK, .flow = p->flow, .rtt_us = (uint32_t)rtt };
    res.path = path_of(e, p, PROBE_OK, res.detail, sizeof res.detail);
    uint8_t pkt[PROBE_PACKET_MAX];
    size_t len = probe_build_rst(pkt, sizeof pkt, &p->flow.tuple, r->ack, (uint16_t)rnd(e));
    if (send_packet(p, pkt, len) < 0)
        snprintf(res.detail, sizeof res.detail, "sending the RST: %s", strerror(errno));
    probe_unlink(p);
    probe_done_fn cb = p->cb;
    void *arg = p->arg;
    free(p);
    cb(arg, &res);
}

/* Read one packet with where it came from and its PACKET_AUXDATA;
 * returns its length or -1. *verify_csum is false when the kernel
 * vouches for the checksum or has not computed it (TP_STATUS_CSUMNOTREADY:
 * a local or veth sender's offloaded checksum holds only the
 * pseudo-header sum). */
static ssize_t recv_packet(int fd, uint8_t *buf, size_t cap, struct sockaddr_ll *from, bool *verify_csum)
{
    union {
        struct cmsghdr align;
        char space[CMSG_SPACE(sizeof(struct tpacket_auxdata))];
    } ctl;
    struct iovec iov = { .iov_base = buf, .iov_len = cap };
    struct msghdr mh = { .msg_name = from, .msg_namelen = sizeof *from, .msg_iov = &iov, .msg_iovlen = 1,
                         .msg_control = ctl.space, .msg_controllen = sizeof ctl.space };
    ssize_t n = recvmsg(fd, &mh, 0);
    if (n < 0)
        return -1;
    *verify_csum = true;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c))
        if (c->cmsg_level == SOL_PACKET && c->cmsg_type == PACKET_AUXDATA) {
            struct tpacket_auxdata aux;
            memcpy(&aux, CMSG_DATA(c), sizeof aux);
            if (aux.tp_status & (TP_STATUS_CSUMNOTREADY | TP_STATUS_CSUM_VALID))
                *verify_csum = false;
        }
    return n;
}

/* One of our SYNs arrived at this node from outside: note where, on
 * the probe it belongs to (same tuple and sequence number). */
static void handle_own_syn(struct probe_engine *e, const struct probe_tuple *t, uint32_t seq, int ifindex)
{
    size_t alen = alen_of(t->family);
    for (struct probe *p = e->inflight; p; p = p->next) {
        const struct probe_tuple *mine = &p->flow.tuple;
        if (p->sent && p->seq == seq && mine->family == t->family && mine->sport == t->sport &&
            mine->dport == t->dport && memcmp(mine->src, t->src, alen) == 0 && memcmp(mine->dst, t->dst, alen) == 0) {
            p->came_back_ifindex = ifindex;
            return;
        }
    }
}

static void sock_readable(struct ev_loop *loop, struct ev_io *io, uint32_t revents)
{
    struct probe_sock *s = io->data;
    struct probe_engine *e = s->engine;
    uint8_t buf[2048];
    /* Bounded: a flood of matching frames must not keep the loop here. */
    for (int i = 0; i < 64; i++) {
        bool verify_csum;
        struct sockaddr_ll from;
        ssize_t n = recv_packet(s->fd, buf, sizeof buf, &from, &verify_csum);
        if (n < 0)
            return;
        struct probe_reply r;
        struct probe_tuple own;
        uint32_t seq;
        if (probe_parse_reply(buf, (size_t)n, s->family, verify_csum, &r) == 0)
            handle_reply(e, &r);
        else if (from.sll_pkttype == PACKET_HOST &&
                 probe_parse_own_syn(buf, (size_t)n, s->family, verify_csum, &own, &seq) == 0)
            handle_own_syn(e, &own, seq, from.sll_ifindex); /* arrived, not leaving (PACKET_OUTGOING) */
    }
}

/* ---- 3. a VIP probed every interval ---------------------------------- */

struct probe_target {
    struct probe_engine *engine;
    struct sockaddr_storage vip;
    uint16_t *ports;
    size_t n_ports;
    probe_healthy_fn healthy;
    probe_verdict_fn verdict;
    void *arg;
    struct probe_fsm fsm;
    struct probe_stats stats;
    uint16_t learned[PROBE_LEARN_MAX];
    size_t n_learned;
    size_t next_learned; /* rotation */
    size_t next_explore; /* which VIP port the exploring probe uses */
    uint64_t *inflight;  /* probe ids, up to n_ports + 1 per round */
    size_t n_inflight, cap_inflight;
    struct ev_timer round;
    bool stopped;
};

static void target_round(struct ev_loop *loop, struct ev_timer *timer);

struct probe_target *probe_target_new(struct probe_engine *e, const struct sockaddr *vip, const uint16_t *ports,
                                      size_t n_ports, probe_healthy_fn healthy, probe_verdict_fn verdict, void *arg)
{
    if (!e || !vip || (vip->sa_family != AF_INET && vip->sa_family != AF_INET6) || n_ports == 0)
        return NULL;
    struct probe_target *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    t->ports = malloc(n_ports * sizeof *ports);
    if (!t->ports) {
        free(t);
        return NULL;
    }
    memcpy(t->ports, ports, n_ports * sizeof *ports);
    t->n_ports = n_ports;
    memcpy(&t->vip, vip, vip->sa_family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6));
    t->engine = e;
    t->healthy = healthy;
    t->verdict = verdict;
    t->arg = arg;
    t->stats.last_outcome = PROBE_ERROR;
    t->stats.last_path = PROBE_PATH_UNKNOWN;
    probe_fsm_init(&t->fsm, ev_now(e->loop));
    ev_timer_init(&t->round, target_round, t);
    ev_timer_start(e->loop, &t->round, 0);
    return t;
}

void probe_target_free(struct probe_target *t)
{
    if (!t)
        return;
    for (size_t i = 0; i < t->n_inflight; i++)
        probe_cancel(t->engine, t->inflight[i]);
    ev_timer_stop(t->engine->loop, &t->round);
    free(t->inflight);
    free(t->ports);
    free(t);
}

void probe_target_stop(struct probe_target *t)
{
    t->stopped = true;
    ev_timer_stop(t->engine->loop, &t->round);
}

size_t probe_target_inflight(const struct probe_target *t)
{
    return t->n_inflight;
}

const struct probe_stats *probe_target_stats(const struct probe_target *t)
{
    return &t->stats;
}

enum probe_fsm_state probe_target_state(const struct probe_target *t)
{
    return t->fsm.state;
}

size_t probe_target_learned(const struct probe_target *t, uint16_t *out, size_t cap)
{
    size_t n = t->n_learned < cap ? t->n_learned : cap;
    memcpy(out, t->learned, n * sizeof *out);
    return n;
}

static void target_done(void *arg, const struct probe_result *r);

static void target_launch(struct probe_target *t, uint16_t port, uint16_t sport)
{
    if (t->n_inflight == t->cap_inflight) {
        size_t cap = t->cap_inflight ? 2 * t->cap_inflight : t->n_ports + 2;
        uint64_t *grown = realloc(t->inflight, cap * sizeof *grown);
        if (!grown)
            return;
        t->inflight = grown;
        t->cap_inflight = cap;
    }
    struct sockaddr_storage to = t->vip;
    if (to.ss_family == AF_INET)
        ((struct sockaddr_in *)&to)->sin_port = htons(port);
    else
        ((struct sockaddr_in6 *)&to)->sin6_port = htons(port);
    uint64_t id = probe_start(t->engine, (struct sockaddr *)&to, sport, target_done, t);
    if (id == 0)
        return;
    t->inflight[t->n_inflight++] = id;
    t->stats.sent++;
}

static void target_round(struct ev_loop *loop, struct ev_timer *timer)
{
    struct probe_target *t = timer->data;
    const struct probe_conf *c = &t->engine->conf;
    if (t->stopped)
        return;
    ev_timer_start(loop, &t->round, c->interval_ms);
    if (t->fsm.state == PROBE_WITHDRAWN) {
        enum probe_verdict v = probe_fsm_tick(&t->fsm, c, ev_now(loop));
        if (v != PROBE_VERDICT_NONE && t->verdict)
            t->verdict(t->arg, v); /* last: the callback may free t */
        return;
    }
    for (size_t i = 0; i < t->n_ports; i++) {
        uint16_t sport = 0;
        if (t->n_learned)
            sport = t->learned[t->next_learned++ % t->n_learned];
        target_launch(t, t->ports[i], sport);
    }
    if (t->n_learned < c->learn_ports)
        target_launch(t, t->ports[t->next_explore++ % t->n_ports], 0);
}

static void learn(struct probe_target *t, const struct probe_result *r)
{
    uint16_t sport = r->flow.tuple.sport;
    size_t at = t->n_learned;
    for (size_t i = 0; i < t->n_learned; i++)
        if (t->learned[i] == sport)
            at = i;
    bool known = at < t->n_learned;
    if (r->path == PROBE_PATH_US && !known && t->n_learned < t->engine->conf.learn_ports)
        t->learned[t->n_learned++] = sport;
    else if (r->path == PROBE_PATH_ELSEWHERE && known) {
        t->learned[at] = t->learned[--t->n_learned];
    }
}

static void target_done(void *arg, const struct probe_result *r)
{
    struct probe_target *t = arg;
    for (size_t i = 0; i < t->n_inflight; i++)
        if (t->inflight[i] == r->id) {
            t->inflight[i] = t->inflight[--t->n_inflight];
            break;
        }
    struct probe_stats *s = &t->stats;
    bool ok = r->outcome == PROBE_OK;
    s->last_outcome = r->outcome;
    s->last_path = r->path;
    s->ended[r->outcome][r->path]++;
    if (ok && r->path == PROBE_PATH_US)
        s->last_rtt_us = r->rtt_us;
    if (r->outcome == PROBE_ERROR)
        return;
    learn(t, r);
    bool through_us = r->path == PROBE_PATH_US;
    bool node_healthy = !t->healthy || t->healthy(t->arg);
    enum probe_verdict v =
        probe_fsm_result(&t->fsm, &t->engine->conf, ok, through_us, node_healthy, ev_now(t->engine->loop));
    if (v == PROBE_VERDICT_WITHDRAW)
        s->withdrawals++;
    if (v != PROBE_VERDICT_NONE && t->verdict)
        t->verdict(t->arg, v); /* last: the callback may free t */
}
