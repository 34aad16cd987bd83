/* l4.sync: see sync.h. */
#include "l4/sync.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <stddef.h>
#include <sys/epoll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "core/log.h"
#include "core/metrics.h"
#include "l4/bpf/forwarder_abi.h"
#include "l4/nexthop.h"

#define HELLO_MS 1000
#define PENDING_MAX 65536        /* ring events waiting for the next batch */
#define RETRY_MAX 4096           /* entries waiting for their client's next hop */
#define RETRY_ROUNDS 40          /* batches an entry waits for it (2 s at 50 ms) */
#define NH_CACHE_SLOTS 4096      /* next hops towards clients, by address */
#define NH_CACHE_MS 5000
#define SYNC_RCVBUF (8 << 20)   /* bytes: see size_socket_buffers() */
#define SYNC_SNDBUF (4 << 20)
#define NH_WARN_MS 10000   /* at most one "no way to the client" warning in this */
#define MAX_LOCALS 64

/* Why an entry of an authenticated datagram was not imported. */
enum entry_skip {
    SKIP_UNKNOWN_SERVICE,  /* no service VIP:port:proto of that mode here */
    SKIP_UNKNOWN_REAL,     /* the service has no such real here */
    SKIP_NO_NEXTHOP,       /* no route or neighbour towards the client */
    SKIP_OLDER,            /* this node's entry is fresher */
    SKIP_BAD,              /* not a NAT/FullNAT TCP/UDP entry, mixed families */
    SKIP__COUNT,
};

static const char *const skip_names[SKIP__COUNT] = {
    "unknown_service", "unknown_real", "no_nexthop", "older", "malformed",
};

struct peer {
    struct sl_addr addr;
    uint32_t node_id;            /* from its datagrams; 0 until heard */
    uint64_t last_heard_ms;      /* ev_clock_ms() of its last accepted datagram */
    struct l4_sync_seq seq;
    uint64_t sent_datagrams, sent_entries, send_errors;
    uint64_t recv_datagrams, recv_entries, imported_entries;
    uint64_t returned_entries;   /* of others' flows, sent when it started again */
    uint64_t rejected_datagrams[L4_SYNC_R__COUNT];
    uint64_t rejected_entries[SKIP__COUNT];
    uint8_t locals[MAX_LOCALS][16];
    size_t n_locals;
    bool owed_return;            /* started again: send it the flows we hold of others */
    uint64_t tx_seq;             /* the sequence number of the last datagram sent to it */
};

struct retry {
    struct l4_sync_entry e;
    struct peer *from;
    uint32_t rounds;
    uint64_t received_ms;        /* its age grows while it waits */
};

struct nh_slot {
    uint8_t addr[16];
    bool valid;
    uint64_t expires_ms;
    int ifindex;
    uint8_t mac[6];
};

struct l4_sync {
    struct ev_loop *loop;
    struct l4_sync_maps maps;
    struct l4_sync_ops ops;
    struct sl_addr listen;
    uint32_t node_id, interval_ms, refresh_ms;
    uint8_t key[L4_SYNC_KEY_MAX];
    size_t keylen;
    uint64_t epoch, seq;
    uint64_t started_ms;         /* ev clock at start: l4_sync_warm */
    int fd;
    struct ev_io io;
    struct ev_timer batch, refresh, hello;
    struct ring_buffer *ring;
    struct peer *peers;
    size_t n_peers;
    struct l4_nat_key *pending;  /* [PENDING_MAX] */
    size_t n_pending;
    struct retry *retries;       /* [RETRY_MAX] */
    size_t n_retries;
    struct nh_slot *nh;          /* [NH_CACHE_SLOTS] */
    struct l4_sync_writer w;
    /* this node */
    uint64_t events, events_dropped, refresh_walks, refresh_entries;
    uint64_t rejected_unknown_peer;
    uint64_t nh_warned_ms;       /* last "no way to the client" warning */
};

/* ---- clocks ---- */

/* The data plane's clock: bpf_ktime_get_coarse_ns(). */
static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t wall_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000ull + (uint64_t)ts.tv_nsec / 1000;
}

/* ---- addresses ---- */

static bool is_v4_mapped(const uint8_t a[16])
{
    static const uint8_t pfx[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };
    return memcmp(a, pfx, 12) == 0;
}

static void sockaddr_of(const uint8_t a[16], struct sockaddr_storage *ss)
{
    memset(ss, 0, sizeof *ss);
    if (is_v4_mapped(a)) {
        struct sockaddr_in *v4 = (struct sockaddr_in *)ss;
        v4->sin_family = AF_INET;
        memcpy(&v4->sin_addr, a + 12, 4);
    } else {
        struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)ss;
        v6->sin6_family = AF_INET6;
        memcpy(&v6->sin6_addr, a, 16);
    }
}

static void text_of(const uint8_t a[16], char *buf, size_t cap)
{
    struct sockaddr_storage ss;
    sockaddr_of(a, &ss);
    if (ss.ss_family == AF_INET)
        inet_ntop(AF_INET, a + 12, buf, (socklen_t)cap);
    else
        inet_ntop(AF_INET6, a, buf, (socklen_t)cap);
}

static struct peer *peer_by_addr(struct l4_sync *s, const struct sockaddr_storage *from)
{
    for (size_t i = 0; i < s->n_peers; i++) {
        const struct sockaddr_storage *p = &s->peers[i].addr.ss;
        if (p->ss_family != from->ss_family)
            continue;
        if (p->ss_family == AF_INET) {
            const struct sockaddr_in *a = (const void *)p, *b = (const void *)from;
            if (a->sin_port == b->sin_port && a->sin_addr.s_addr == b->sin_addr.s_addr)
                return &s->peers[i];
        } else {
            const struct sockaddr_in6 *a = (const void *)p, *b = (const void *)from;
            if (a->sin6_port == b->sin6_port && memcmp(&a->sin6_addr, &b->sin6_addr, 16) == 0)
                return &s->peers[i];
        }
    }
    return NULL;
}

/* ---- the flow's entries, as the data plane makes them (nat.h) ---- */

/* The OUT (NAT) or LOCAL (FullNAT) key of a flow from its IN value:
 * nat_out_key() of the data plane. */
static void out_key_of(const struct l4_nat *in, uint8_t proto, struct l4_nat_key *ok)
{
    memset(ok, 0, sizeof *ok);
    if (in->mode == L4_MODE_FULLNAT) {
        ok->dir = L4_NAT_LOCAL;
    } else {
        memcpy(ok->src, in->daddr, 16);
        ok->sport = in->dport;
        ok->dir = L4_NAT_OUT;
    }
    memcpy(ok->dst, in->saddr, 16);
    ok->dport = in->sport;
    ok->proto = proto;
}

/* Does a reply-side entry still translate back to the flow whose IN key
 * is ik? (Its key may have been taken over by another flow since.) */
static bool out_is_flow(const struct l4_nat *out, const struct l4_nat_key *ik)
{
    return !memcmp(out->daddr, ik->src, 16) && !memcmp(out->saddr, ik->dst, 16) && out->dport == ik->sport &&
           out->sport == ik->dport;
}

static uint32_t timeout_s(const struct l4_cfg *cfg, uint8_t proto, uint8_t state)
{
    if (proto == IPPROTO_TCP && (state & L4_NAT_S_CLOSING))
        return cfg->nat_fin_timeout ? cfg->nat_fin_timeout : L4_NAT_FIN_TIMEOUT;
    if (proto == IPPROTO_TCP)
        return cfg->nat_tcp_timeout ? cfg->nat_tcp_timeout : L4_NAT_TCP_TIMEOUT;
    return cfg->nat_udp_timeout ? cfg->nat_udp_timeout : L4_NAT_UDP_TIMEOUT;
}

static void read_cfg(const struct l4_sync *s, struct l4_cfg *cfg)
{
    uint32_t zero = 0;
    if (bpf_map_lookup_elem(s->maps.cfg, &zero, cfg) < 0)
        memset(cfg, 0, sizeof *cfg);
}

/* The wire entry of the flow whose IN key is ik, read from `nat`. false
 * when the flow is gone, half there, idle past its timeout, or imported
 * (unless `imported`: a returning peer is sent those). */
static bool entry_of(const struct l4_sync *s, const struct l4_nat_key *ik, const struct l4_cfg *cfg, uint64_t now,
                     bool imported, struct l4_sync_entry *e)
{
    struct l4_nat in, out;
    struct l4_nat_key ok;
    if (ik->dir != L4_NAT_IN || bpf_map_lookup_elem(s->maps.nat, ik, &in) < 0)
        return false;
    if (!!(in.flags & L4_NAT_F_IMPORTED) != imported || (in.mode != L4_MODE_NAT && in.mode != L4_MODE_FULLNAT))
        return false;
    out_key_of(&in, ik->proto, &ok);
    if (bpf_map_lookup_elem(s->maps.nat, &ok, &out) < 0)
        return false;
    if (!out_is_flow(&out, ik))
        return false;
    uint64_t age = now > out.last_seen ? (now - out.last_seen) / 1000000000ull : 0;
    if (age > timeout_s(cfg, ik->proto, out.state))
        return false;
    memset(e, 0, sizeof *e);
    memcpy(e->client, ik->src, 16);
    e->cport = ik->sport;
    memcpy(e->vip, ik->dst, 16);
    e->vport = ik->dport;
    e->proto = ik->proto;
    e->mode = in.mode;
    e->state = out.state;
    memcpy(e->real, in.daddr, 16);
    e->rport = in.dport;
    if (in.mode == L4_MODE_FULLNAT) {
        memcpy(e->local, in.saddr, 16);
        e->lport = in.sport;
    }
    e->age = (uint32_t)(age > UINT32_MAX ? UINT32_MAX : age);
    return true;
}

/* ---- sending ---- */

/* The datagram being written, to one peer or (to == NULL) to all. Each
 * peer has its own sequence numbers (the header and its MAC are written
 * for each), so that a gap a peer sees is a datagram it lost, not one
 * meant for another (the returned flows go to one peer only). */
static void send_to(struct l4_sync *s, struct peer *to)
{
    if (s->w.count == 0 && s->w.type == L4_SYNC_T_ENTRIES)
        return;
    s->seq++;
    for (size_t i = 0; i < s->n_peers; i++) {
        struct peer *p = &s->peers[i];
        if (to && p != to)
            continue;
        size_t len = l4_sync_finish(&s->w, s->node_id, s->epoch, ++p->tx_seq, s->key, s->keylen);
        if (sendto(s->fd, s->w.buf, len, 0, (const struct sockaddr *)&p->addr.ss, p->addr.len) < 0) {
            p->send_errors++;
            continue;
        }
        p->sent_datagrams++;
        if (s->w.type == L4_SYNC_T_ENTRIES)
            p->sent_entries += s->w.count;
    }
    l4_sync_begin(&s->w, L4_SYNC_T_ENTRIES);
}

static void send_all(struct l4_sync *s)
{
    send_to(s, NULL);
}

static void queue_entry(struct l4_sync *s, const struct l4_sync_entry *e, struct peer *to)
{
    if (!l4_sync_add_entry(&s->w, e)) {
        send_to(s, to);
        l4_sync_add_entry(&s->w, e);
    }
}

static int on_event(void *ctx, void *data, size_t len)
{
    struct l4_sync *s = ctx;
    if (len < sizeof(struct l4_sync_event))
        return 0;
    s->events++;
    if (s->n_pending == PENDING_MAX) {
        s->events_dropped++;   /* the next refresh sends the flow */
        return 0;
    }
    memcpy(&s->pending[s->n_pending++], data, sizeof(struct l4_nat_key));
    return 0;
}

static void import_retries(struct l4_sync *s);

/* Every interval: the new flows since the last batch, then the entries
 * that waited for a next hop. */
static void on_batch(struct ev_loop *loop, struct ev_timer *t)
{
    struct l4_sync *s = t->data;
    ring_buffer__consume(s->ring);
    if (s->n_pending) {
        struct l4_cfg cfg;
        struct l4_sync_entry e;
        uint64_t now = mono_ns();
        read_cfg(s, &cfg);
        l4_sync_begin(&s->w, L4_SYNC_T_ENTRIES);
        for (size_t i = 0; i < s->n_pending; i++)
            if (entry_of(s, &s->pending[i], &cfg, now, false, &e))
                queue_entry(s, &e, NULL);
        send_all(s);
        s->n_pending = 0;
    }
    import_retries(s);
    ev_timer_start(loop, t, s->interval_ms);
}

/* Is this imported entry one that peer p needs back? A FullNAT flow only
 * if it goes through one of p's own local addresses (its hellos list
 * them): the others are their owners' to send, and a starting node must
 * not be flooded with every flow of the group. A NAT flow has no owner on
 * the wire: its replies follow the NAT VIP, which p may announce. */
static bool owed_to(const struct peer *p, const struct l4_sync_entry *e)
{
    if (e->mode != L4_MODE_FULLNAT)
        return true;
    for (size_t i = 0; i < p->n_locals; i++)
        if (!memcmp(p->locals[i], e->local, 16))
            return true;
    return false;
}

/* One walk of `nat`: the live flows this node made (imported: false), or
 * those it holds of others (true), to `to` or to every peer. Returns how
 * many were sent. */
static uint64_t walk_and_send(struct l4_sync *s, const struct l4_cfg *cfg, bool imported, struct peer *to)
{
    struct l4_nat_key k, next;
    struct l4_sync_entry e;
    uint64_t now = mono_ns(), n = 0;
    bool first = true;
    l4_sync_begin(&s->w, L4_SYNC_T_ENTRIES);
    while (bpf_map_get_next_key(s->maps.nat, first ? NULL : &k, &next) == 0) {
        first = false;
        k = next;
        if (k.dir == L4_NAT_IN && entry_of(s, &k, cfg, now, imported, &e) && (!imported || owed_to(to, &e))) {
            queue_entry(s, &e, to);
            n++;
        }
    }
    send_to(s, to);
    return n;
}

/* Every refresh: every live flow this node made, again. And to a peer
 * that started again (a new epoch), once, the flows of others this node
 * holds: after a power loss its maps are empty, yet the flows it made are
 * still going (their clients' packets here, their replies coming back to
 * its local address or NAT VIP again as soon as it announces); without
 * them it would reset every one. Its own fresher entries are never
 * overwritten (import keeps the fresher), and an imported entry is never
 * sent on otherwise, so nothing echoes. */
static void on_refresh(struct ev_loop *loop, struct ev_timer *t)
{
    struct l4_sync *s = t->data;
    struct l4_cfg cfg;
    read_cfg(s, &cfg);
    s->refresh_entries += walk_and_send(s, &cfg, false, NULL);
    for (size_t i = 0; i < s->n_peers; i++) {
        struct peer *p = &s->peers[i];
        if (p->owed_return) {
            p->owed_return = false;
            p->returned_entries += walk_and_send(s, &cfg, true, p);
        }
    }
    s->refresh_walks++;
    ev_timer_start(loop, t, s->refresh_ms);
}

static void on_hello(struct ev_loop *loop, struct ev_timer *t)
{
    struct l4_sync *s = t->data;
    uint8_t locals[MAX_LOCALS][16];
    size_t n = s->ops.local_addrs(s->ops.arg, locals, MAX_LOCALS);
    struct l4_sync_writer saved = s->w; /* (the entries' writer is empty between batches) */
    l4_sync_begin(&s->w, L4_SYNC_T_HELLO);
    for (size_t i = 0; i < n && i < MAX_LOCALS; i++)
        l4_sync_add_local(&s->w, locals[i]);
    send_all(s);
    s->w = saved;
    ev_timer_start(loop, t, HELLO_MS);
}

/* ---- receiving ---- */

/* The next hop towards a client from this node's own routes and
 * neighbours, cached per client address for NH_CACHE_MS. */
static enum nexthop_result client_nexthop(struct l4_sync *s, const uint8_t addr[16], int *ifindex, uint8_t mac[6],
                                          char *err, size_t errlen)
{
    uint32_t h = 2166136261u;
    for (int i = 0; i < 16; i++)
        h = (h ^ addr[i]) * 16777619u;
    struct nh_slot *c = &s->nh[h % NH_CACHE_SLOTS];
    uint64_t now = ev_clock_ms();
    if (c->valid && now < c->expires_ms && memcmp(c->addr, addr, 16) == 0) {
        *ifindex = c->ifindex;
        memcpy(mac, c->mac, 6);
        return NEXTHOP_FOUND;
    }
    struct sockaddr_storage ss;
    sockaddr_of(addr, &ss);
    enum nexthop_result r = nexthop_lookup((const struct sockaddr *)&ss, ifindex, mac, err, errlen);
    if (r == NEXTHOP_FOUND) {
        memcpy(c->addr, addr, 16);
        c->valid = true;
        c->expires_ms = now + NH_CACHE_MS;
        c->ifindex = *ifindex;
        memcpy(c->mac, mac, 6);
    }
    return r;
}

/* A peer's flows this node cannot continue, because it has no way to
 * their clients (typically a route lost with a link that went down and
 * came back): counted per peer, and said in the log at most every
 * NH_WARN_MS, since it silently turns every takeover into resets. */
static void warn_no_way_to_client(struct l4_sync *s, const uint8_t client[16], const char *why)
{
    uint64_t now = ev_clock_ms();
    if (s->nh_warned_ms && now - s->nh_warned_ms < NH_WARN_MS)
        return;
    s->nh_warned_ms = now;
    char text[INET6_ADDRSTRLEN] = "?";
    if (is_v4_mapped(client))
        inet_ntop(AF_INET, client + 12, text, sizeof text);
    else
        inet_ntop(AF_INET6, client, text, sizeof text);
    log_warn("l4.sync: a peer's flows from %s cannot be taken over here: %s (this node needs a route "
             "to its clients to send their replies; counted in rejected_entries.no_nexthop)", text, why);
}

/* Import one entry. Returns -1 and sets *why when skipped, 1 when it must
 * wait for its next hop, 0 when written. */
static int import_entry(struct l4_sync *s, const struct l4_sync_entry *e, uint32_t extra_age, enum entry_skip *why)
{
    bool full = e->mode == L4_MODE_FULLNAT;
    if ((e->mode != L4_MODE_NAT && !full) || (e->proto != IPPROTO_TCP && e->proto != IPPROTO_UDP) ||
        is_v4_mapped(e->client) != is_v4_mapped(e->vip) || is_v4_mapped(e->real) != is_v4_mapped(e->client) ||
        (full && is_v4_mapped(e->local) != is_v4_mapped(e->client))) {
        *why = SKIP_BAD;
        return -1;
    }
    struct l4_vip_key vk = { .port = e->vport, .proto = e->proto };
    struct l4_vip_meta vm;
    memcpy(vk.addr, e->vip, 16);
    if (bpf_map_lookup_elem(s->maps.vips, &vk, &vm) < 0 || vm.mode != e->mode) {
        *why = SKIP_UNKNOWN_SERVICE;
        return -1;
    }
    uint32_t real = s->ops.real_index(s->ops.arg, vm.svc, e->real, e->rport);
    if (!real) {
        *why = SKIP_UNKNOWN_REAL;
        return -1;
    }
    int ifindex = 0;
    uint8_t mac[6];
    char nherr[160] = "";
    enum nexthop_result nh = client_nexthop(s, e->client, &ifindex, mac, nherr, sizeof nherr);
    if (nh == NEXTHOP_PENDING)
        return 1;
    if (nh != NEXTHOP_FOUND) {
        warn_no_way_to_client(s, e->client, nherr);
        *why = SKIP_NO_NEXTHOP;
        return -1;
    }
    uint64_t now = mono_ns(), age_ns = ((uint64_t)e->age + extra_age) * 1000000000ull;
    uint64_t seen = now > age_ns ? now - age_ns : 0;

    struct l4_nat_key ik = { .sport = e->cport, .dport = e->vport, .proto = e->proto, .dir = L4_NAT_IN };
    memcpy(ik.src, e->client, 16);
    memcpy(ik.dst, e->vip, 16);
    struct l4_nat in = { .mode = e->mode, .real = real, .svc = vm.svc, .flags = L4_NAT_F_IMPORTED,
                         .last_seen = seen, .dport = e->rport };
    memcpy(in.daddr, e->real, 16);
    if (full) {
        memcpy(in.saddr, e->local, 16);
        in.sport = e->lport;
    } else {
        memcpy(in.saddr, e->client, 16);
        in.sport = e->cport;
    }
    struct l4_nat out = { .sport = e->vport, .dport = e->cport, .mode = e->mode, .state = e->state,
                          .real = real, .svc = vm.svc, .ifindex = (uint32_t)ifindex, .flags = L4_NAT_F_IMPORTED,
                          .last_seen = seen, .peer_port = e->rport };
    memcpy(out.saddr, e->vip, 16);
    memcpy(out.daddr, e->client, 16);
    memcpy(out.mac, mac, 6);
    memcpy(out.peer, e->real, 16);
    struct l4_nat_key ok;
    out_key_of(&in, e->proto, &ok);

    /* Never over a fresher entry of ours (the flow moved here and is
     * live, or the key is another live flow's). */
    struct l4_nat cur;
    if (bpf_map_lookup_elem(s->maps.nat, &ok, &cur) == 0 && cur.last_seen >= seen) {
        *why = SKIP_OLDER;
        return -1;
    }
    /* Nor over a fresher flow of the same client tuple translated another
     * way: the client reused its source port (a closed flow of the same
     * tuple, still within its FIN timeout, is in a peer's walk and would
     * otherwise take the live flow's IN entry: its packets would go out
     * with the dead flow's local port, and the real resets it). */
    struct l4_nat cur_in, cur_out;
    struct l4_nat_key cur_ok;
    if (bpf_map_lookup_elem(s->maps.nat, &ik, &cur_in) == 0 &&
        (memcmp(cur_in.saddr, in.saddr, 16) || cur_in.sport != in.sport || memcmp(cur_in.daddr, in.daddr, 16) ||
         cur_in.dport != in.dport)) {
        out_key_of(&cur_in, e->proto, &cur_ok);
        if (bpf_map_lookup_elem(s->maps.nat, &cur_ok, &cur_out) == 0 && out_is_flow(&cur_out, &ik) &&
            cur_out.last_seen >= seen) {
            *why = SKIP_OLDER;
            return -1;
        }
    }
    /* OUT first, as the data plane does: an IN entry without its OUT
     * entry would be taken for stale and re-picked. */
    if (bpf_map_update_elem(s->maps.nat, &ok, &out, BPF_ANY) < 0 ||
        bpf_map_update_elem(s->maps.nat, &ik, &in, BPF_ANY) < 0) {
        *why = SKIP_BAD;
        return -1;
    }
    return 0;
}

static void import_one(struct l4_sync *s, struct peer *p, const struct l4_sync_entry *e, uint32_t rounds,
                       uint64_t received_ms)
{
    enum entry_skip why = SKIP_BAD;
    uint32_t waited = (uint32_t)((ev_clock_ms() - received_ms) / 1000);
    int rc = import_entry(s, e, waited, &why);
    if (rc == 0) {
        p->imported_entries++;
    } else if (rc < 0) {
        p->rejected_entries[why]++;
    } else if (rounds >= RETRY_ROUNDS || s->n_retries == RETRY_MAX) {
        p->rejected_entries[SKIP_NO_NEXTHOP]++;
    } else {
        s->retries[s->n_retries++] = (struct retry){ .e = *e, .from = p, .rounds = rounds + 1,
                                                     .received_ms = received_ms };
    }
}

static void import_retries(struct l4_sync *s)
{
    size_t n = s->n_retries;
    if (!n)
        return;
    struct retry *tmp = malloc(n * sizeof *tmp);
    if (!tmp)
        return;
    memcpy(tmp, s->retries, n * sizeof *tmp);
    s->n_retries = 0;
    for (size_t i = 0; i < n; i++)
        import_one(s, tmp[i].from, &tmp[i].e, tmp[i].rounds, tmp[i].received_ms);
    free(tmp);
}

static void on_hello_from(struct peer *p, const uint8_t *buf, const struct l4_sync_hdr *h)
{
    p->n_locals = 0;
    for (size_t i = 0; i < h->count && p->n_locals < MAX_LOCALS; i++)
        l4_sync_local_at(buf, i, p->locals[p->n_locals++]);
}

static void on_datagram(struct l4_sync *s, const uint8_t *buf, size_t len, const struct sockaddr_storage *from)
{
    struct peer *p = peer_by_addr(s, from);
    if (!p) {
        s->rejected_unknown_peer++;
        return;
    }
    struct l4_sync_hdr h;
    uint64_t epoch_before = p->seq.epoch;
    enum l4_sync_reject r = l4_sync_open(buf, len, s->key, s->keylen, &h);
    if (r == L4_SYNC_OK)
        r = l4_sync_seq_check(&p->seq, h.epoch, h.seq);
    if (r != L4_SYNC_OK) {
        p->rejected_datagrams[r]++;
        return;
    }
    /* A peer heard for the first time, or started again (a new epoch):
     * it holds none of our flows made while it was away. Walk now rather
     * than at the next refresh, so that it has them well before it takes
     * flows (l4_sync_warm): at most one walk per epoch of each peer. */
    if (p->seq.epoch != epoch_before) {
        p->owed_return = true;
        ev_timer_start(s->loop, &s->refresh, 0);
    }
    p->recv_datagrams++;
    p->node_id = h.node_id;
    p->last_heard_ms = ev_clock_ms();
    if (h.type == L4_SYNC_T_HELLO) {
        on_hello_from(p, buf, &h);
        return;
    }
    p->recv_entries += h.count;
    for (size_t i = 0; i < h.count; i++) {
        struct l4_sync_entry e;
        l4_sync_entry_at(buf, i, &e);
        import_one(s, p, &e, 0, p->last_heard_ms);
    }
}

static void on_readable(struct ev_loop *loop, struct ev_io *io, uint32_t revents)
{
    struct l4_sync *s = io->data;
    uint8_t buf[L4_SYNC_MAX_DGRAM + 1];
    /* Bounded per wake-up, so a flood cannot starve the loop. */
    for (int i = 0; i < 256; i++) {
        struct sockaddr_storage from;
        socklen_t flen = sizeof from;
        ssize_t n = recvfrom(s->fd, buf, sizeof buf, MSG_DONTWAIT, (struct sockaddr *)&from, &flen);
        if (n < 0)
            return;
        on_datagram(s, buf, (size_t)n, &from);
    }
}

/* ---- life ---- */

/* A refresh is a burst: every live flow of a peer, back to back, and the
 * walks of three peers can arrive at once when a node starts. With the
 * default buffer (about 200 KB, some 90 datagrams) most of such a burst
 * was dropped at the receiving socket (hundreds of missed datagrams in
 * the lab), and a starting node took flows whose entries were lost: a
 * few MB hold a burst of tens of thousands of entries. FORCE (root, or
 * CAP_NET_ADMIN) goes past net.core.rmem_max; without it the kernel caps
 * the plain option there. */
static void size_socket_buffers(int fd)
{
    int rcv = SYNC_RCVBUF, snd = SYNC_SNDBUF;
    if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &rcv, sizeof rcv) < 0)
        (void)setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcv, sizeof rcv);
    if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &snd, sizeof snd) < 0)
        (void)setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &snd, sizeof snd);
}

struct l4_sync *l4_sync_start(struct ev_loop *loop, const struct cfg_l4_sync *conf, const uint8_t *key,
                              size_t keylen, const struct l4_sync_maps *maps, const struct l4_sync_ops *ops,
                              char *err, size_t errlen)
{
    struct l4_sync *s = calloc(1, sizeof *s);
    if (!s) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    s->fd = -1;
    s->loop = loop;
    s->maps = *maps;
    s->ops = *ops;
    s->listen = conf->listen;
    s->node_id = conf->node_id;
    s->interval_ms = conf->interval_ms;
    s->refresh_ms = conf->refresh_ms;
    s->epoch = wall_us();
    s->started_ms = ev_clock_ms();   /* not ev_now(): the loop has not turned while the forwarder loaded */
    l4_sync_set_key(s, key, keylen);
    s->peers = calloc(conf->n_peers ? conf->n_peers : 1, sizeof *s->peers);
    s->pending = calloc(PENDING_MAX, sizeof *s->pending);
    s->retries = calloc(RETRY_MAX, sizeof *s->retries);
    s->nh = calloc(NH_CACHE_SLOTS, sizeof *s->nh);
    if (!s->peers || !s->pending || !s->retries || !s->nh) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    s->n_peers = conf->n_peers;
    for (size_t i = 0; i < conf->n_peers; i++)
        s->peers[i].addr = conf->peers[i];
    s->fd = socket(conf->listen.ss.ss_family, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (s->fd < 0 || bind(s->fd, (const struct sockaddr *)&conf->listen.ss, conf->listen.len) < 0) {
        snprintf(err, errlen, "l4.sync.listen %s: %s", conf->listen.text, strerror(errno));
        goto fail;
    }
    size_socket_buffers(s->fd);
    s->ring = ring_buffer__new(maps->ring, on_event, s, NULL);
    if (!s->ring) {
        snprintf(err, errlen, "cannot open the sync_events ring: %s", strerror(errno));
        goto fail;
    }
    l4_sync_begin(&s->w, L4_SYNC_T_ENTRIES);
    ev_io_init(&s->io, s->fd, on_readable, s);
    ev_io_set(loop, &s->io, EPOLLIN);
    ev_timer_init(&s->batch, on_batch, s);
    ev_timer_init(&s->refresh, on_refresh, s);
    ev_timer_init(&s->hello, on_hello, s);
    ev_timer_start(loop, &s->batch, s->interval_ms);
    /* A first full send soon after start: a restarted node tells its
     * peers everything it still holds, and hears theirs at their next. */
    ev_timer_start(loop, &s->refresh, 200);
    ev_timer_start(loop, &s->hello, 0);
    return s;
fail:
    l4_sync_free(s);
    return NULL;
}

void l4_sync_free(struct l4_sync *s)
{
    if (!s)
        return;
    if (s->fd >= 0) {
        if (s->io.cb)
            ev_io_stop(s->loop, &s->io);
        close(s->fd);
    }
    if (s->batch.cb) {
        ev_timer_stop(s->loop, &s->batch);
        ev_timer_stop(s->loop, &s->refresh);
        ev_timer_stop(s->loop, &s->hello);
    }
    ring_buffer__free(s->ring);
    free(s->peers);
    free(s->pending);
    free(s->retries);
    free(s->nh);
    memset(s->key, 0, sizeof s->key);
    free(s);
}

void l4_sync_set_key(struct l4_sync *s, const uint8_t *key, size_t keylen)
{
    if (keylen > sizeof s->key)
        keylen = sizeof s->key;
    memset(s->key, 0, sizeof s->key);
    memcpy(s->key, key, keylen);
    s->keylen = keylen;
}

/* ---- what it shows ---- */

size_t l4_sync_standins(const struct l4_sync *s, struct l4_sync_standin *out, size_t max)
{
    size_t n = 0;
    for (size_t i = 0; s && i < s->n_peers; i++) {
        const struct peer *p = &s->peers[i];
        for (size_t j = 0; j < p->n_locals; j++, n++) {
            if (n >= max)
                continue;
            memcpy(out[n].addr, p->locals[j], 16);
            out[n].node_id = p->node_id;
            snprintf(out[n].peer, sizeof out[n].peer, "%s", p->addr.text);
        }
    }
    return n;
}

bool l4_sync_warm(const struct l4_sync *s, uint64_t now_ms)
{
    return !s || !s->n_peers || now_ms >= s->started_ms + s->refresh_ms + s->interval_ms;
}

static json_t *counts_json(const char *const *names, const uint64_t *v, size_t n, size_t from)
{
    json_t *o = json_object();
    for (size_t i = from; i < n; i++)
        json_object_set_new(o, names[i], json_integer((json_int_t)v[i]));
    return o;
}

json_t *l4_sync_json(const struct l4_sync *s)
{
    json_t *peers = json_array();
    uint64_t now = ev_clock_ms();
    const char *reject_names[L4_SYNC_R__COUNT];
    for (size_t r = 0; r < L4_SYNC_R__COUNT; r++)
        reject_names[r] = l4_sync_reject_name((enum l4_sync_reject)r);
    for (size_t i = 0; i < s->n_peers; i++) {
        const struct peer *p = &s->peers[i];
        json_t *locals = json_array();
        for (size_t j = 0; j < p->n_locals; j++) {
            char t[64];
            text_of(p->locals[j], t, sizeof t);
            json_array_append_new(locals, json_string(t));
        }
        json_t *o = json_pack("{s:s, s:I, s:o, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:o, s:o, s:o}",
                              "address", p->addr.text, "node_id", (json_int_t)p->node_id,
                              "last_heard_ms_ago", p->last_heard_ms ? json_integer((json_int_t)(now - p->last_heard_ms))
                                                                    : json_null(),
                              "sent_datagrams", (json_int_t)p->sent_datagrams,
                              "sent_entries", (json_int_t)p->sent_entries,
                              "send_errors", (json_int_t)p->send_errors,
                              "received_datagrams", (json_int_t)p->recv_datagrams,
                              "received_entries", (json_int_t)p->recv_entries,
                              "imported_entries", (json_int_t)p->imported_entries,
                              "returned_entries", (json_int_t)p->returned_entries,
                              "missed_datagrams", (json_int_t)p->seq.missed,
                              "restarts", (json_int_t)p->seq.restarts,
                              "epoch", (json_int_t)p->seq.epoch,
                              "rejected_datagrams", counts_json(reject_names, p->rejected_datagrams,
                                                                L4_SYNC_R__COUNT, 1),
                              "rejected_entries", counts_json(skip_names, p->rejected_entries, SKIP__COUNT, 0),
                              "local_addresses", locals);
        json_array_append_new(peers, o);
    }
    return json_pack("{s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:o}",
                     "listen", s->listen.text, "node_id", (json_int_t)s->node_id, "epoch", (json_int_t)s->epoch,
                     "sequence", (json_int_t)s->seq, "interval_ms", (json_int_t)s->interval_ms,
                     "refresh_ms", (json_int_t)s->refresh_ms, "events", (json_int_t)s->events,
                     "events_dropped", (json_int_t)s->events_dropped, "refresh_entries",
                     (json_int_t)s->refresh_entries, "rejected_unknown_peer", (json_int_t)s->rejected_unknown_peer,
                     "peers", peers);
}

/* The families, in the order /metrics shows them. Without l4.sync they
 * are listed (HELP and TYPE) with no samples, so that the set of families
 * `sluice l4` serves does not depend on its configuration. */
enum sync_family { F_SENT_DGRAMS, F_SENT_ENTRIES, F_RECV_DGRAMS, F_RECV_ENTRIES, F_IMPORTED, F_MISSED,
                   F_REJ_DGRAMS, F_REJ_ENTRIES, F_EVENTS, F_EVENTS_DROPPED, F_REFRESH, F__COUNT };

static const struct {
    const char *name, *help;
} sync_families[F__COUNT] = {
    [F_SENT_DGRAMS] = { "sluice_l4_sync_sent_datagrams_total", "Sync datagrams sent to the peer (entries and hellos)." },
    [F_SENT_ENTRIES] = { "sluice_l4_sync_sent_entries_total", "Connection entries sent to the peer." },
    [F_RECV_DGRAMS] = { "sluice_l4_sync_received_datagrams_total",
                        "Authenticated, in-sequence datagrams from the peer." },
    [F_RECV_ENTRIES] = { "sluice_l4_sync_received_entries_total", "Connection entries received from the peer." },
    [F_IMPORTED] = { "sluice_l4_sync_imported_entries_total",
                     "Entries from the peer written into this node's nat map." },
    [F_MISSED] = { "sluice_l4_sync_missed_datagrams_total",
                   "Datagrams of the peer never received (gaps in its sequence numbers)." },
    [F_REJ_DGRAMS] = { "sluice_l4_sync_rejected_datagrams_total",
                       "Datagrams refused, by reason (bad_mac, replay, ...; unknown_peer: from an address not in "
                       "l4.sync.peers)." },
    [F_REJ_ENTRIES] = { "sluice_l4_sync_rejected_entries_total",
                        "Entries of authenticated datagrams not imported, by reason." },
    [F_EVENTS] = { "sluice_l4_sync_events_total", "New-flow events read from the data plane's ring." },
    [F_EVENTS_DROPPED] = { "sluice_l4_sync_events_dropped_total",
                           "New-flow events dropped in user space (batch queue full; the refresh sends them)." },
    [F_REFRESH] = { "sluice_l4_sync_refresh_entries_total", "Entries sent by the periodic refresh walks." },
};

static void family(struct strbuf *out, enum sync_family f)
{
    metrics_family(out, sync_families[f].name, "counter", sync_families[f].help);
}

/* A counter with a "peer" label, a sample per peer. */
static void per_peer(const struct l4_sync *s, struct strbuf *out, enum sync_family f, size_t offset)
{
    family(out, f);
    for (size_t i = 0; i < s->n_peers; i++) {
        const struct peer *p = &s->peers[i];
        uint64_t v;
        memcpy(&v, (const char *)p + offset, sizeof v);
        struct metric_label l = { "peer", p->addr.text };
        metrics_sample(out, sync_families[f].name, &l, 1, v);
    }
}

static void node_counter(struct strbuf *out, enum sync_family f, uint64_t v)
{
    family(out, f);
    metrics_sample(out, sync_families[f].name, NULL, 0, v);
}

void l4_sync_metrics(const struct l4_sync *s, struct strbuf *out)
{
    if (!s) {
        for (int f = 0; f < F__COUNT; f++)
            family(out, (enum sync_family)f);
        return;
    }
    per_peer(s, out, F_SENT_DGRAMS, offsetof(struct peer, sent_datagrams));
    per_peer(s, out, F_SENT_ENTRIES, offsetof(struct peer, sent_entries));
    per_peer(s, out, F_RECV_DGRAMS, offsetof(struct peer, recv_datagrams));
    per_peer(s, out, F_RECV_ENTRIES, offsetof(struct peer, recv_entries));
    per_peer(s, out, F_IMPORTED, offsetof(struct peer, imported_entries));
    family(out, F_MISSED);
    for (size_t i = 0; i < s->n_peers; i++) {
        struct metric_label l = { "peer", s->peers[i].addr.text };
        metrics_sample(out, sync_families[F_MISSED].name, &l, 1, s->peers[i].seq.missed);
    }
    const char *rej = sync_families[F_REJ_DGRAMS].name;
    family(out, F_REJ_DGRAMS);
    for (size_t i = 0; i < s->n_peers; i++) {
        for (size_t r = 1; r < L4_SYNC_R__COUNT; r++) {
            if (r == L4_SYNC_R_UNKNOWN_PEER)
                continue;
            struct metric_label l[2] = { { "peer", s->peers[i].addr.text },
                                         { "reason", l4_sync_reject_name((enum l4_sync_reject)r) } };
            metrics_sample(out, rej, l, 2, s->peers[i].rejected_datagrams[r]);
        }
    }
    struct metric_label u[2] = { { "peer", "" }, { "reason", "unknown_peer" } };
    metrics_sample(out, rej, u, 2, s->rejected_unknown_peer);
    family(out, F_REJ_ENTRIES);
    for (size_t i = 0; i < s->n_peers; i++) {
        for (size_t r = 0; r < SKIP__COUNT; r++) {
            struct metric_label l[2] = { { "peer", s->peers[i].addr.text }, { "reason", skip_names[r] } };
            metrics_sample(out, sync_families[F_REJ_ENTRIES].name, l, 2, s->peers[i].rejected_entries[r]);
        }
    }
    node_counter(out, F_EVENTS, s->events);
    node_counter(out, F_EVENTS_DROPPED, s->events_dropped);
    node_counter(out, F_REFRESH, s->refresh_entries);
}
