/* Scheduler fixtures: source hash (each client on one real, the kernel's
 * choice equal to user space's) and rr / wrr (new flows take the live
 * table in slot order from a per-CPU cursor, inactive reals skipped). */
#include "fixtures.h"

/* Source hash: every connection of a client goes to the real of its
 * address's hash, whatever its ports; the kernel's choice equals the one
 * computed here with l4_src_hash() and maglev_lookup(). The TUN variant
 * shows the entry still caches the flow hash (outer source, flow label). */
static int src_hash_case(int svc)
{
    const struct tl_svc *s = &env.svcs[svc];
    bool tun = s->meta.mode == L4_MODE_TUN;
    uint32_t counts[TL_MAX_REALS] = { 0 }, used = 0;

    for (int i = 0; i < 40; i++) {
        struct tl_frame f = to_svc(svc, false);
        uint32_t real;

        f.src.a[15] = (uint8_t)(i * 11 + 1);
        f.src.a[14] = (uint8_t)i;
        real = tl_src_hash_real(&env, svc, &f.src);
        CHECK(real != 0, "no real for the client in the user-space table");
        for (int j = 0; j < 2; j++) {
            struct pkt in, exp;
            struct l4_flow_key k;
            struct l4_conn c;

            if (j)
                f.sport = next_port(); /* a second connection of the client */
            tl_build(&in, &f);
            if (tun)
                expect_tun(&exp, &in, 14, real, tl_flow_hash(&env, &f));
            else
                expect_dr(&exp, &f, real);
            if (run_expect(&in, XDP_TX, &exp, tun ? L4_R_FWD_TUN : L4_R_FWD_DR)) {
                fprintf(stderr, "    (client %d, connection %d)\n", i, j);
                return -1;
            }
            tl_flow_key(&f, &k);
            CHECK(tl_conn_get(&env, &k, &c) == 0 && c.real == real, "entry: real %u, want %u", c.real, real);
            CHECK(c.hash == tl_flow_hash(&env, &f), "entry caches %#x, not the flow hash", c.hash);
        }
        if (counts[real]++ == 0)
            used++;
    }
    CHECK(used > 1, "40 clients all went to one real");
    return 0;
}

static int t_src_hash4(void) { return src_hash_case(S_SH4); }
static int t_src_hash6(void) { return src_hash_case(S_SH6); }

static int rr_get(uint32_t svc, struct l4_rr_cursor *c)
{
    struct l4_rr_cursor *all = calloc((size_t)env.ncpus, sizeof(*all));
    int err;

    if (!all)
        return -1;
    err = bpf_map_lookup_elem(env.fd_rr, &svc, all);
    if (!err)
        *c = all[env.cpu];
    free(all);
    return err;
}

/* Set the cursor of every CPU. */
static int rr_set(uint32_t svc, uint32_t next)
{
    struct l4_rr_cursor *all = calloc((size_t)env.ncpus, sizeof(*all));
    int err;

    if (!all)
        return -1;
    for (int i = 0; i < env.ncpus; i++)
        all[i] = (struct l4_rr_cursor){ .next = next, .started = 1 };
    err = bpf_map_update_elem(env.fd_rr, &svc, all, BPF_ANY);
    free(all);
    return err;
}

/* The real at the next slot from *pos whose real is set and active, as the
 * data plane must take it; *pos moves past it. */
static uint32_t rr_expect(const struct tl_svc *s, uint32_t *pos)
{
    for (uint32_t i = 0; i < L4_RR_PROBES; i++) {
        int32_t at = s->table[*pos];
        uint32_t real = at < 0 ? 0 : s->reals[at];

        *pos = (*pos + 1) % env.m;
        if (real && (env.reals[real].r.flags & L4_REAL_F_ACTIVE))
            return real;
    }
    return 0;
}

/* n new flows through an rr service: each takes the next real of the live
 * table in slot order from *pos. */
static int rr_flows(int svc, int n, uint32_t *pos, uint32_t counts[TL_MAX_REALS])
{
    const struct tl_svc *s = &env.svcs[svc];
    struct l4_rr_cursor c;

    for (int i = 0; i < n; i++) {
        struct tl_frame f = to_svc(svc, false);
        uint32_t want = rr_expect(s, pos);
        struct pkt in, exp;

        CHECK(want != 0, "fixture: no active real within %d slots", L4_RR_PROBES);
        tl_build(&in, &f);
        expect_dr(&exp, &f, want);
        if (run_expect(&in, XDP_TX, &exp, L4_R_FWD_DR)) {
            fprintf(stderr, "    (flow %d: want real %u)\n", i, want);
            return -1;
        }
        CHECK(delta[L4_R_CT_MISS] == 1, "flow %d: not a miss", i);
        counts[want]++;
    }
    CHECK(rr_get((uint32_t)svc, &c) == 0, "cursor");
    CHECK(c.started && c.next == *pos, "cursor at %u, want %u", c.next, *pos);
    return 0;
}

/* rr / wrr: new flows take the table's reals in slot order, from a cursor
 * that starts at cpu * M / ncpus; a flow's next packet stays on its real
 * (the connection table); a TCP segment that opens nothing, with no entry,
 * takes the flow-hash slot and leaves the cursor alone. */
static int rr_case(int svc)
{
    const struct tl_svc *s = &env.svcs[svc];
    uint32_t counts[TL_MAX_REALS] = { 0 }, pos;
    struct l4_rr_cursor c;
    struct tl_frame f;
    struct pkt in, exp;

    CHECK(rr_get((uint32_t)svc, &c) == 0, "cursor");
    CHECK(!c.started, "cursor used before the test");
    pos = (uint32_t)((uint64_t)env.cpu * env.m / (uint64_t)env.ncpus);
    if (rr_flows(svc, 60, &pos, counts))
        return -1;
    for (size_t i = 0; i < s->n; i++)
        CHECK(counts[s->reals[i]] > 0, "real %u got none of 60 flows", s->reals[i]);

    /* An established flow: a hit, same real, cursor unmoved. */
    f = to_svc(svc, false);
    tl_build(&in, &f);
    {
        uint32_t p2 = pos, want = rr_expect(s, &p2);

        expect_dr(&exp, &f, want);
        if (run_expect(&in, XDP_TX, &exp, L4_R_FWD_DR))
            return -1;
        pos = p2;
        f.tcp_flags = 0x10; /* ACK */
        tl_build(&in, &f);
        expect_dr(&exp, &f, want);
        if (run_expect(&in, XDP_TX, &exp, L4_R_FWD_DR))
            return -1;
        CHECK(delta[L4_R_CT_HIT] == 1, "second packet not a hit");
    }
    if (f.proto == 6) {
        /* No entry, not a SYN: the flow hash decides. */
        f = to_svc(svc, false);
        f.tcp_flags = 0x10;
        tl_build(&in, &f);
        expect_dr(&exp, &f, tl_maglev_real(&env, svc, &f));
        if (run_expect(&in, XDP_TX, &exp, L4_R_FWD_DR))
            return -1;
    }
    CHECK(rr_get((uint32_t)svc, &c) == 0 && c.next == pos, "cursor moved: %u, want %u", c.next, pos);
    return 0;
}

static int t_rr4(void) { return rr_case(S_RR4); }
static int t_rr6(void) { return rr_case(S_RR6); }

/* rr skips slots of an inactive real (7); a table of inactive reals only
 * drops the flow after L4_RR_PROBES slots. */
static int t_rr_skips_inactive(void)
{
    const uint32_t mixed[3] = { 1, 7, 2 }, dead[1] = { 7 }, w[3] = { 1, 1, 1 };
    uint32_t counts[TL_MAX_REALS] = { 0 }, pos = 0;
    struct l4_rr_cursor c;
    struct tl_frame f;
    struct pkt in;
    int rc = -1;

    CHECK(tl_build_table(&env, S_RR4, T_SPARE, mixed, w, 3) == 0, "spare table");
    CHECK(tl_set_vip_table(&env, S_RR4, T_SPARE) == 0 && rr_set(S_RR4, 0) == 0, "flip");
    if (rr_flows(S_RR4, 40, &pos, counts))
        goto out;
    if (counts[7] != 0 || !counts[1] || !counts[2]) {
        fprintf(stderr, "    reals 1/7/2 got %u/%u/%u flows\n", counts[1], counts[7], counts[2]);
        goto out;
    }
    if (tl_build_table(&env, S_RR4, T_SPARE, dead, w, 1) != 0 || rr_set(S_RR4, 5) != 0)
        goto out;
    f = to_svc(S_RR4, false);
    tl_build(&in, &f);
    if (run_expect(&in, XDP_DROP, NULL, L4_R_DROP_NO_REAL))
        goto out;
    if (rr_get(S_RR4, &c) != 0 || c.next != 5 + L4_RR_PROBES) {
        fprintf(stderr, "    cursor at %u after a failed pick, want %u\n", c.next, 5 + L4_RR_PROBES);
        goto out;
    }
    rc = 0;
out:
    CHECK(tl_build_table(&env, S_RR4, S_RR4, REALS4, WEIGHTED, 3) == 0, "rebuild");
    CHECK(tl_set_vip_table(&env, S_RR4, S_RR4) == 0, "flip back");
    return rc;
}

static const struct fixture fixtures[] = {
    { "source hash: 40 IPv4 clients x 2 connections, each client on one real", t_src_hash4 },
    { "source hash: 40 IPv6 clients x 2 connections, TUN (entry keeps the flow hash)", t_src_hash6 },
    { "wrr IPv4 TCP (1:2:3): 60 new flows take the table in slot order", t_rr4 },
    { "rr IPv6 UDP: 60 new flows take the table in slot order", t_rr6 },
    { "rr skips an inactive real's slots; none active: dropped after the probes", t_rr_skips_inactive },
};

void suite_sched(void)
{
    RUN_FIXTURES(fixtures);
}
