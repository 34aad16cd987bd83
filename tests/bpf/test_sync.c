/* l4.sync's data-plane part: while L4_CFG_F_SYNC is set, each new NAT or
 * FullNAT flow puts its IN key into the sync_events ring (once: not for
 * later packets of the flow), and a full ring is counted (sync_lost)
 * without costing the packet. Off, nothing is written. */
#include "fixtures.h"

#include <bpf/libbpf.h>

#include "forwarder.skel.h"

struct ring_seen {
    size_t n;
    struct l4_sync_event last;
};

static int on_event(void *ctx, void *data, size_t len)
{
    struct ring_seen *s = ctx;

    if (len == sizeof(s->last))
        memcpy(&s->last, data, len);
    s->n++;
    return 0;
}

/* Drain the ring; the events read go to *seen. */
static int drain(struct ring_seen *seen)
{
    struct ring_buffer *rb = ring_buffer__new(bpf_map__fd(env.skel->maps.sync_events), on_event, seen, NULL);

    CHECK(rb != NULL, "ring_buffer__new: %s", strerror(errno));
    int rc = ring_buffer__consume(rb);
    ring_buffer__free(rb);
    CHECK(rc >= 0, "ring_buffer__consume: %d", rc);
    return 0;
}

static int set_sync(bool on)
{
    struct l4_cfg cfg = env.cfg;

    if (on)
        cfg.flags |= L4_CFG_F_SYNC;
    else
        cfg.flags &= ~L4_CFG_F_SYNC;
    CHECK(tl_set_cfg(&env, &cfg) == 0, "config");
    return 0;
}

/* The IN key of flow f as the data plane writes it. */
static void in_key_of(const struct tl_frame *f, struct l4_nat_key *k)
{
    memset(k, 0, sizeof(*k));
    memcpy(k->src, f->src.a, 16);
    memcpy(k->dst, f->dst.a, 16);
    k->sport = htons(f->sport);
    k->dport = htons(f->dport);
    k->proto = f->proto;
    k->dir = L4_NAT_IN;
}

/* One new flow of svc with sync on: one event, its IN key, present in the
 * map; the flow's next packet: none. */
/* A client address no other suite uses (ports wrap around over the whole
 * run, so a reused tuple could hit an entry an earlier suite made). */
static void own_client(struct tl_frame *f, uint8_t first, uint32_t n)
{
    f->src.a[12] = first;
    f->src.a[13] = (uint8_t)(n >> 16);
    f->src.a[14] = (uint8_t)(n >> 8);
    f->src.a[15] = (uint8_t)n;
}

static int one_flow(int svc)
{
    static uint32_t n;
    struct tl_frame f = to_svc(svc, false);
    struct ring_seen seen = { 0 };
    struct l4_nat_key k;
    struct l4_nat v;
    struct nat_res res;

    own_client(&f, 12, n++);
    if (drain(&seen) || set_sync(true))
        return -1;
    seen.n = 0;
    if (nat_forward(svc, &f, svc_full(svc) && f.proto == 6, &res))
        return -1;
    CHECK(delta[L4_R_CT_MISS] == 1, "not a new flow");
    CHECK(delta[L4_R_SYNC_EVENT] == 1 && delta[L4_R_SYNC_LOST] == 0, "sync_event +%llu, sync_lost +%llu",
          (unsigned long long)delta[L4_R_SYNC_EVENT], (unsigned long long)delta[L4_R_SYNC_LOST]);
    if (drain(&seen))
        return -1;
    in_key_of(&f, &k);
    CHECK(seen.n == 1, "%zu events for one new flow", seen.n);
    CHECK(memcmp(&seen.last.in, &k, sizeof(k)) == 0, "the event is not the flow's IN key");
    CHECK(bpf_map_lookup_elem(env.fd_nat, &k, &v) == 0 && v.real == res.real && v.flags == 0,
          "the IN entry the event names is not in the map");
    f.tcp_flags = 0x10;
    if (nat_forward(svc, &f, false, &res))
        return -1;
    seen.n = 0;
    if (drain(&seen))
        return -1;
    CHECK(seen.n == 0 && delta[L4_R_SYNC_EVENT] == 0, "an established flow's packet made an event");
    return set_sync(false);
}

static int t_nat4(void) { return one_flow(S_NAT4_TCP); }
static int t_fnat6(void) { return one_flow(S_FNAT6_UDP); }
static int t_fnat4(void) { return one_flow(S_FNAT4_TCP); }

static int t_off(void)
{
    struct tl_frame f = to_svc(S_NAT4_UDP, false);
    struct ring_seen seen = { 0 };
    struct nat_res res;

    own_client(&f, 13, 1);
    if (set_sync(false) || drain(&seen))
        return -1;
    seen.n = 0;
    if (nat_forward(S_NAT4_UDP, &f, false, &res))
        return -1;
    if (drain(&seen))
        return -1;
    CHECK(seen.n == 0 && delta[L4_R_SYNC_EVENT] == 0 && delta[L4_R_SYNC_LOST] == 0,
          "sync off, yet %zu events", seen.n);
    return 0;
}

/* Nobody drains: once the ring is full, new flows are still forwarded and
 * each lost event is counted; draining makes room again. */
static int t_ring_full(void)
{
    struct ring_seen seen = { 0 };
    uint64_t events = 0, lost = 0;
    size_t max = L4_SYNC_RING_BYTES / (sizeof(struct l4_sync_event) + 8) + 16;

    if (drain(&seen) || set_sync(true))
        return -1;
    for (size_t i = 0; i < max && lost == 0; i++) {
        struct tl_frame f = to_svc(S_NAT4_UDP, false);
        struct nat_res res;

        own_client(&f, 11, (uint32_t)i);
        if (nat_forward(S_NAT4_UDP, &f, false, &res))
            return -1;
        events += delta[L4_R_SYNC_EVENT];
        lost += delta[L4_R_SYNC_LOST];
    }
    CHECK(lost == 1, "the ring never filled (%llu events)", (unsigned long long)events);
    seen.n = 0;
    if (drain(&seen))
        return -1;
    CHECK(seen.n == events, "%zu events read, %llu counted", seen.n, (unsigned long long)events);
    if (one_flow(S_NAT4_TCP))
        return -1;
    return set_sync(false);
}

/* In a sync group, a mid-flow TCP packet with no entry belongs to a flow
 * another node holds: dropped (drop_nat_no_flow), no entry, no event, so
 * the client's retransmission can meet the entry sync brings. A SYN opens a
 * flow as ever, UDP has no "mid-flow", and with sync off the node makes a
 * new entry (its real resets the flow: the client learns at once). */
static int t_no_flow(void)
{
    static const int svcs[] = { S_NAT4_TCP, S_FNAT4_TCP, S_NAT6_TCP, S_FNAT6_TCP };
    static const uint8_t mid_flow[] = { 0x10, 0x18, 0x11, 0x04, 0x14, 0x12 }; /* ACK, PSH|ACK, FIN|ACK, RST, RST|ACK, SYN|ACK */
    struct ring_seen seen = { 0 };
    uint32_t n = 0;

    if (drain(&seen) || set_sync(true))
        return -1;
    for (size_t i = 0; i < sizeof(svcs) / sizeof(svcs[0]); i++) {
        for (size_t j = 0; j < sizeof(mid_flow); j++) {
            struct tl_frame f = to_svc(svcs[i], false);
            struct l4_nat_key k;
            struct l4_nat v;
            struct pkt in;

            own_client(&f, 14, n++);
            f.tcp_flags = mid_flow[j];
            tl_build(&in, &f);
            if (run_expect(&in, XDP_DROP, NULL, L4_R_DROP_NAT_NO_FLOW))
                return -1;
            CHECK(delta[L4_R_SYNC_EVENT] == 0, "flags 0x%02x: a dropped packet made an event", mid_flow[j]);
            in_key_of(&f, &k);
            CHECK(bpf_map_lookup_elem(env.fd_nat, &k, &v) != 0, "flags 0x%02x: an entry was made", mid_flow[j]);
        }
        /* The flow's SYN still opens it, and its ACK then hits. */
        struct tl_frame f = to_svc(svcs[i], false);
        struct nat_res res;

        own_client(&f, 14, n++);
        if (nat_forward(svcs[i], &f, svc_full(svcs[i]), &res))
            return -1;
        f.tcp_flags = 0x10;
        if (nat_forward(svcs[i], &f, false, &res))
            return -1;
        CHECK(delta[L4_R_CT_HIT] == 1, "the flow's ACK after its SYN is not a hit");
    }
    /* UDP: any datagram opens a flow. */
    struct tl_frame u = to_svc(S_NAT4_UDP, false);
    struct nat_res res;

    own_client(&u, 14, n++);
    if (nat_forward(S_NAT4_UDP, &u, false, &res))
        return -1;
    /* Sync off: the mid-flow packet makes an entry, as before. */
    if (set_sync(false))
        return -1;
    struct tl_frame f = to_svc(S_NAT4_TCP, false);

    own_client(&f, 14, n++);
    f.tcp_flags = 0x10;
    if (nat_forward(S_NAT4_TCP, &f, false, &res))
        return -1;
    CHECK(delta[L4_R_CT_MISS] == 1, "sync off: the mid-flow packet was not forwarded as a new flow");
    return 0;
}

static const struct fixture fixtures[] = {
    { "sync off: a new NAT flow writes no event", t_off },
    { "sync on: NAT IPv4 TCP, one event (the IN key) per new flow, none after", t_nat4 },
    { "sync on: FullNAT IPv4 TCP, one event per new flow", t_fnat4 },
    { "sync on: FullNAT IPv6 UDP, one event per new flow", t_fnat6 },
    { "sync on: a full ring loses events (counted), never packets", t_ring_full },
    { "sync on: a mid-flow TCP packet without an entry is dropped, a SYN or UDP opens a flow", t_no_flow },
};

void suite_sync(void)
{
    RUN_FIXTURES(fixtures);
}
