/* Choosing the real for a DR or TUN flow: the connection tables (per-CPU
 * conn, then conn_shared), and on a miss the service's scheduler over its
 * live Maglev table: the flow hash (Maglev), the client's address hash
 * (source hash), or a per-CPU cursor (rr, wrr); the SYN guard that limits
 * new entries. NAT and FullNAT use the scheduler and the guard too.
 *
 * Assumes maps.h, counters.h, parse.h (struct pkt), consts.h and
 * l4_hash.h.
 */
#ifndef SLUICE_L4_BPF_SELECT_H
#define SLUICE_L4_BPF_SELECT_H

/* The SYN guard: may this CPU insert one more connection entry in the
 * current one-second window? Over the cap, flows are still forwarded (by
 * Maglev, which needs no state) but not remembered, so a flood of new
 * 5-tuples cannot push established flows out of the LRU. */
static __always_inline bool flood_allow(const struct l4_cfg *cfg)
{
    __u32 zero = 0;
    struct l4_flood *f;
    __u64 now;

    if (!cfg->new_flow_cap)
        return true;
    f = bpf_map_lookup_elem(&flood, &zero);
    if (!f)
        return true;
    /* The coarse clock (tick resolution) is plenty for a one-second
     * window and cheaper than reading the TSC on every miss. */
    now = bpf_ktime_get_coarse_ns();
    if (now - f->window_start >= NSEC_PER_SEC) {
        f->window_start = now;
        f->inserted = 0;
    }
    if (f->inserted >= cfg->new_flow_cap)
        return false;
    f->inserted++;
    return true;
}

static __always_inline struct l4_real *active_real(__u32 idx)
{
    struct l4_real *r;

    if (!idx)
        return NULL;
    r = bpf_map_lookup_elem(&reals, &idx);
    if (!r || !(r->flags & L4_REAL_F_ACTIVE))
        return NULL;
    return r;
}

/* Does this packet open a flow? A TCP SYN without ACK, or any UDP packet
 * (UDP has no handshake). A TCP packet that is not a SYN and has no entry
 * belongs to a flow whose entry is gone (evicted, or never made because
 * the SYN guard held it back): it is not a new flow. */
static __always_inline bool opens_flow(const struct pkt *p)
{
    return p->key.proto != PROTO_TCP || (p->tcp_flags & (TCP_SYN | TCP_ACK)) == TCP_SYN;
}

static __always_inline __u32 maglev_real_at(__u32 table, __u32 slot)
{
    __u32 k = table * maglev_m + slot, *m = bpf_map_lookup_elem(&maglev, &k);

    return m ? *m : 0;
}

/* rr / wrr: the next slot of the live table, from this CPU's cursor, whose
 * real is set and active; at most L4_RR_PROBES tries. The control plane
 * builds the table with the reals' weights (wrr) or equal weights (rr), so
 * in slot order every real appears in proportion to its weight. Returns the
 * real index, 0 for none. */
static __always_inline __u32 rr_next(const struct l4_vip_meta *vip)
{
    __u32 svc = vip->svc, m = maglev_m, cur, idx, i;
    struct l4_rr_cursor *c = bpf_map_lookup_elem(&rr_cursor, &svc);

    if (!c)
        return 0;
    if (!c->started) {
        __u32 n = nr_cpus ? nr_cpus : 1;

        c->next = (__u32)(((__u64)(bpf_get_smp_processor_id() % n) * m) / n);
        c->started = 1;
    }
    cur = c->next < m ? c->next : 0;
    for (i = 0; i < L4_RR_PROBES; i++) {
        idx = maglev_real_at(vip->table, cur);
        cur = cur + 1 < m ? cur + 1 : 0;
        if (active_real(idx)) {
            c->next = cur;
            return idx;
        }
    }
    c->next = cur;
    return 0;
}

/* The scheduler's choice for a flow without an entry (vip_meta.flags):
 *   L4_VIP_F_RR        the next slot from the cursor, for a packet that
 *                      opens a flow and will be remembered (`sched_rr`);
 *   L4_VIP_F_SRC_HASH  the slot of the client's address hash;
 *   neither            the slot of the flow hash `h` (Maglev).
 * An rr service's packet that cannot be remembered (SYN guard over the cap,
 * no connection table) or does not open a flow (an ICMP error, a TCP
 * segment whose entry is gone) falls back to the flow hash: stateless and
 * the same for every packet of the flow, where the cursor would pick a new
 * real each time. */
static __always_inline __u32 sched_pick(const struct pkt *p, const struct l4_vip_meta *vip, __u32 h,
                                        bool sched_rr)
{
    if ((vip->flags & L4_VIP_F_RR) && sched_rr && opens_flow(p))
        return rr_next(vip);
    if (vip->flags & L4_VIP_F_SRC_HASH)
        h = l4_src_hash(p->key.src, flow_seed);
    return maglev_real_at(vip->table, l4_maglev_slot(h, maglev_m));
}

/* Note a packet on a connection entry: its second and whether TCP is
 * closing, for the connection counts of `sluice l4 list`. Only what
 * changed is written, so a busy flow costs a clock read and two compares;
 * the per-CPU entry's line is this CPU's own anyway. */
static __always_inline void conn_touch(struct l4_conn *c, const struct pkt *p, __u32 now)
{
    __u8 fl = c->flags;

    if (p->key.proto == PROTO_TCP) {
        if (p->tcp_flags & (TCP_FIN | TCP_RST))
            fl |= L4_CONN_F_CLOSING;
        else if ((p->tcp_flags & (TCP_SYN | TCP_ACK)) == TCP_SYN)
            fl &= ~L4_CONN_F_CLOSING; /* the client reuses its tuple */
    }
    if (fl != c->flags)
        c->flags = fl;
    if (c->seen != now)
        c->seen = now;
}

static __always_inline __u32 now_secs(void)
{
    return (__u32)(bpf_ktime_get_coarse_ns() / NSEC_PER_SEC);
}

/* The real for a flow: the connection table first, then Maglev. `track`
 * is false for ICMP errors, which must not create state or count as flows.
 * An entry whose real has gone inactive is treated as a miss, so a removed
 * real's flows move to the Maglev choice. */
static __always_inline struct l4_real *pick_real(const struct pkt *p, const struct l4_vip_meta *vip,
                                                 const struct l4_cfg *cfg, bool track,
                                                 __u32 *real_idx, __u32 *hash)
{
    bool use_ct = !(vip->flags & L4_VIP_F_NO_CT), insert;
    struct l4_real *r;
    __u32 h, idx;

    if (use_ct) {
        struct l4_conn *c = bpf_map_lookup_elem(&conn, &p->key);

        if (c) {
            r = active_real(c->real);
            if (r) {
                if (track) {
                    count_in(&reasons, L4_R_CT_HIT, 0);
                    conn_touch(c, p, now_secs());
                }
                *real_idx = c->real;
                *hash = c->hash;
                return r;
            }
        }
        /* Not on this CPU: another CPU may have seen the flow first. */
        c = bpf_map_lookup_elem(&conn_shared, &p->key);
        if (c) {
            struct l4_conn v = *c;

            r = active_real(v.real);
            if (r) {
                if (track) {
                    count_in(&reasons, L4_R_CT_HIT, 0);
                    /* (A shared line, but this path is rare: a flow that
                     * changed CPU.) */
                    conn_touch(c, p, now_secs());
                    v = *c;
                    bpf_map_update_elem(&conn, &p->key, &v, BPF_ANY);
                }
                *real_idx = v.real;
                *hash = v.hash;
                return r;
            }
        }
        if (track)
            count_in(&reasons, L4_R_CT_MISS, 0);
    }

    /* The flow hash is cached in the entry whatever the scheduler: TUN
     * takes the outer source and flow label from it. */
    h = l4_flow_hash(&p->key, flow_seed);
    /* A table id past the configured count could make table * M wrap
     * around into another service's slots: refuse it. */
    if (vip->table >= maglev_tables)
        return NULL;
    /* Ask the SYN guard first: rr may only advance its cursor for a flow
     * that will be remembered. */
    insert = track && use_ct && flood_allow(cfg);
    idx = sched_pick(p, vip, h, insert);
    r = active_real(idx);
    if (!r)
        return NULL;

    if (track && use_ct) {
        if (insert) {
            struct l4_conn v = { .real = idx, .hash = h };

            conn_touch(&v, p, now_secs());
            bpf_map_update_elem(&conn, &p->key, &v, BPF_ANY);
            bpf_map_update_elem(&conn_shared, &p->key, &v, BPF_ANY);
        } else {
            count_in(&reasons, L4_R_CT_GUARD_SKIP, 0);
        }
    }
    *real_idx = idx;
    *hash = h;
    return r;
}

#endif
