/* Connection counts (src/l4/conns.c) over the tables the forwarder fills:
 * one per flow however many copies, closing, idle, gone, reuse; NAT and
 * FullNAT flows by their reply-side entry. Counted on a clock of the
 * fixtures' own (aging_clock()). */
#include "fixtures.h"
#include "l4/conns.h"

static int count_conns(struct l4_conn_count by[TL_MAX_REALS], bool dr, bool nat, uint64_t now)
{
    char err[256] = "";
    int rc = l4_count_conns(dr ? env.fd_conn : -1, dr ? env.fd_conn_shared : -1, nat ? env.fd_nat : -1, now, by,
                            TL_MAX_REALS, err, sizeof(err));

    CHECK(rc == 0, "l4_count_conns: %s", err);
    return 0;
}

static void count_totals(const struct l4_conn_count by[TL_MAX_REALS], uint64_t *active, uint64_t *inactive)
{
    *active = *inactive = 0;
    for (int i = 0; i < TL_MAX_REALS; i++) {
        *active += by[i].active;
        *inactive += by[i].inactive;
    }
}

/* The clock the aging steps count with: at least 1000 s. Entries carry
 * CLOCK_MONOTONIC seconds, which on a freshly booted machine are fewer than
 * the 400 s idle a fixture wants to show; counting "now" that early would
 * put the aged entry in the future, where it counts as just seen. Fixtures
 * that count with this clock age every flow they look at with age_conn(). */
static uint32_t aging_clock(void)
{
    uint32_t now = (uint32_t)(mono_coarse_ns() / 1000000000ull);

    return now < 1000 ? 1000 : now;
}

/* Make a DR/TUN flow look last seen `secs` before `now` (seconds of the
 * clock the count will use), in every copy. */
static int age_conn(const struct tl_frame *f, uint32_t now, uint32_t secs)
{
    struct l4_conn *all = calloc((size_t)env.ncpus, sizeof(*all)), one;
    uint32_t then = now - secs;
    struct l4_flow_key k;
    int rc = -1;

    tl_flow_key(f, &k);
    if (!all)
        return -1;
    if (bpf_map_lookup_elem(env.fd_conn, &k, all) == 0) {
        for (int i = 0; i < env.ncpus; i++)
            if (all[i].real)
                all[i].seen = then;
        if (bpf_map_update_elem(env.fd_conn, &k, all, BPF_EXIST) != 0)
            goto out;
    }
    if (bpf_map_lookup_elem(env.fd_conn_shared, &k, &one) == 0) {
        one.seen = then;
        if (bpf_map_update_elem(env.fd_conn_shared, &k, &one, BPF_EXIST) != 0)
            goto out;
    }
    rc = 0;
out:
    free(all);
    return rc;
}

/* A DR flow's packet on `cpu`. */
static int dr_packet_on(const struct tl_frame *f, int cpu)
{
    struct pkt in, exp;
    int rc, err;

    tl_build(&in, f);
    expect_dr(&exp, f, tl_maglev_real(&env, f->proto == 6 ? S_DR4_TCP : S_DR4_UDP, f));
    err = tl_run_on_cpu(cpu);
    CHECK(err == 0, "cannot run on CPU %d: %s", cpu, strerror(-err));
    rc = run_expect(&in, XDP_TX, &exp, L4_R_FWD_DR);
    err = tl_run_on_cpu(env.cpu);
    CHECK(err == 0, "cannot return to CPU %d", env.cpu);
    return rc;
}

/* Flows go in through BPF_PROG_TEST_RUN, l4_count_conns() reads them
 * back: one count per flow however many copies (per-CPU table on two CPUs,
 * shared table), closing after a FIN, active again after a new SYN on the
 * tuple, inactive when idle 100 s, gone at 400 s. */
static int t_conn_counts_dr(void)
{
    struct tl_frame a = to_svc(S_DR4_TCP, false), b = to_svc(S_DR4_UDP, false);
    uint32_t ra = tl_maglev_real(&env, S_DR4_TCP, &a), rb = tl_maglev_real(&env, S_DR4_UDP, &b);
    struct l4_conn_count by[TL_MAX_REALS], few[2] = { { 7, 7 }, { 7, 7 } };
    struct l4_conn *all = NULL;
    struct l4_flow_key k;
    uint64_t act, inact;
    char err[256];

    CHECK(tl_conn_clear(&env) == 0, "clearing the conn tables");
    if (count_conns(by, true, false, mono_coarse_ns()))
        return -1;
    count_totals(by, &act, &inact);
    CHECK(act == 0 && inact == 0, "empty tables: %llu/%llu", (unsigned long long)act, (unsigned long long)inact);

    if (dr_packet_on(&a, env.cpu) || count_conns(by, true, false, mono_coarse_ns()))
        return -1;
    count_totals(by, &act, &inact);
    CHECK(by[ra].active == 1 && act == 1 && inact == 0, "one SYN: real %u %llu/%llu, totals %llu/%llu", ra,
          (unsigned long long)by[ra].active, (unsigned long long)by[ra].inactive, (unsigned long long)act,
          (unsigned long long)inact);

    /* The same flow on the other CPU: copied into that CPU's table. */
    a.tcp_flags = 0x10;
    if (dr_packet_on(&a, other_cpu()))
        return -1;
    if (other_cpu() != env.cpu) {
        all = calloc((size_t)env.ncpus, sizeof(*all));
        tl_flow_key(&a, &k);
        CHECK(all && bpf_map_lookup_elem(env.fd_conn, &k, all) == 0, "conn lookup");
        bool both = all[env.cpu].real == ra && all[other_cpu()].real == ra;
        free(all);
        CHECK(both, "the flow is not in both CPUs' tables");
    }
    if (dr_packet_on(&b, env.cpu) || count_conns(by, true, false, mono_coarse_ns()))
        return -1;
    count_totals(by, &act, &inact);
    CHECK(act == 2 && inact == 0, "two flows, three copies: %llu/%llu", (unsigned long long)act,
          (unsigned long long)inact);
    CHECK(by[ra].active == (ra == rb ? 2u : 1u) && by[rb].active == (ra == rb ? 2u : 1u), "per real");

    a.tcp_flags = 0x11; /* FIN+ACK */
    if (dr_packet_on(&a, env.cpu) || count_conns(by, true, false, mono_coarse_ns()))
        return -1;
    count_totals(by, &act, &inact);
    CHECK(act == 1 && inact == 1 && by[ra].inactive == 1, "after a FIN: %llu/%llu, real %u inactive %llu",
          (unsigned long long)act, (unsigned long long)inact, ra, (unsigned long long)by[ra].inactive);

    /* a closed a moment ago; b idle for 100 s, then 400 s. */
    uint32_t clk = aging_clock();
    uint64_t clk_ns = (uint64_t)clk * 1000000000ull;

    if (age_conn(&a, clk, 1) || age_conn(&b, clk, 100) || count_conns(by, true, false, clk_ns))
        return -1;
    count_totals(by, &act, &inact);
    CHECK(act == 0 && inact == 2 && by[rb].inactive >= 1, "idle 100 s: %llu/%llu", (unsigned long long)act,
          (unsigned long long)inact);
    if (age_conn(&b, clk, 400) || count_conns(by, true, false, clk_ns))
        return -1;
    count_totals(by, &act, &inact);
    CHECK(act == 0 && inact == 1, "idle 400 s: %llu/%llu", (unsigned long long)act, (unsigned long long)inact);
    /* b is gone for good: its entries, aged on the aging clock, may lie in
     * the real clock's future, where the next counts would see them. */
    tl_flow_key(&b, &k);
    bpf_map_delete_elem(env.fd_conn, &k);
    bpf_map_delete_elem(env.fd_conn_shared, &k);

    a.tcp_flags = 0x02; /* the client reuses the tuple */
    if (dr_packet_on(&a, env.cpu) || count_conns(by, true, false, mono_coarse_ns()))
        return -1;
    count_totals(by, &act, &inact);
    CHECK(act == 1 && inact == 0 && by[ra].active == 1, "new SYN: %llu/%llu", (unsigned long long)act,
          (unsigned long long)inact);

    /* 3000 flows written from user space into the shared table, 1000 of
     * them also on this CPU: several batches of 1024, each flow once. */
    for (uint32_t i = 0; i < 3000; i++) {
        struct tl_frame g = to_svc(S_DR4_UDP, false);
        struct l4_conn v = { .real = 1 + i % 3, .seen = (uint32_t)(mono_coarse_ns() / 1000000000ull) };

        g.src.a[13] = (uint8_t)(i >> 8);
        g.src.a[14] = (uint8_t)i;
        tl_flow_key(&g, &k);
        CHECK(bpf_map_update_elem(env.fd_conn_shared, &k, &v, BPF_ANY) == 0, "shared insert");
        if (i % 3 == 0)
            CHECK(tl_conn_set(&env, &k, &v) == 0, "per-CPU insert");
    }
    if (count_conns(by, true, false, mono_coarse_ns()))
        return -1;
    count_totals(by, &act, &inact);
    CHECK(act == 3001 && inact == 0, "3000 more flows: %llu/%llu", (unsigned long long)act,
          (unsigned long long)inact);
    CHECK(by[1].active == 1000u + (ra == 1) && by[2].active == 1000u + (ra == 2), "3000 flows per real");
    CHECK(tl_conn_clear(&env) == 0, "clearing the conn tables");

    /* No maps: nothing; n_reals bounds what is written. */
    if (count_conns(by, false, false, mono_coarse_ns()))
        return -1;
    count_totals(by, &act, &inact);
    CHECK(act == 0 && inact == 0, "no maps counted something");
    CHECK(l4_count_conns(env.fd_conn, env.fd_conn_shared, -1, mono_coarse_ns(), few, 1, err, sizeof(err)) == 0,
          "l4_count_conns: %s", err);
    CHECK(few[0].active == 0 && few[1].active == 7 && few[1].inactive == 7, "wrote past n_reals");
    /* A map of another layout is refused. */
    CHECK(l4_count_conns(env.fd_vips, -1, -1, mono_coarse_ns(), by, TL_MAX_REALS, err, sizeof(err)) == -1,
          "the vips map was read as a conn table");
    return 0;
}

/* NAT and FullNAT: one count per flow (its OUT / LOCAL entry). Other
 * fixtures' flows are in the table too, so this compares counts taken
 * with the same `now` before and after. */
static int t_conn_counts_nat(void)
{
    struct tl_frame c = to_svc(S_NAT4_TCP, false), d = to_svc(S_FNAT4_UDP, false);
    uint32_t rc_ = tl_maglev_real(&env, S_NAT4_TCP, &c), rd = tl_maglev_real(&env, S_FNAT4_UDP, &d);
    struct l4_conn_count before[TL_MAX_REALS], after[TL_MAX_REALS];
    uint64_t now = mono_coarse_ns(), a0, i0, a1, i1;
    struct pkt in;

    if (count_conns(before, false, true, now))
        return -1;
    tl_build(&in, &c);
    if (run_expect(&in, XDP_TX, NULL, L4_R_FWD_NAT) || count_conns(after, false, true, now))
        return -1;
    count_totals(before, &a0, &i0);
    count_totals(after, &a1, &i1);
    CHECK(after[rc_].active == before[rc_].active + 1 && a1 == a0 + 1 && i1 == i0,
          "NAT SYN: real %u active %llu -> %llu, totals %llu/%llu -> %llu/%llu", rc_,
          (unsigned long long)before[rc_].active, (unsigned long long)after[rc_].active, (unsigned long long)a0,
          (unsigned long long)i0, (unsigned long long)a1, (unsigned long long)i1);

    c.tcp_flags = 0x11;
    tl_build(&in, &c);
    if (run_expect(&in, XDP_TX, NULL, L4_R_FWD_NAT) || count_conns(after, false, true, now))
        return -1;
    count_totals(after, &a1, &i1);
    CHECK(after[rc_].active == before[rc_].active && after[rc_].inactive == before[rc_].inactive + 1 && a1 == a0 &&
              i1 == i0 + 1,
          "NAT FIN: not closing");

    tl_build(&in, &d);
    if (run_expect(&in, XDP_TX, NULL, L4_R_FWD_FULLNAT) || count_conns(after, false, true, now))
        return -1;
    count_totals(after, &a1, &i1);
    /* (FullNAT reals 15..17 are not the NAT reals 9..11.) */
    CHECK(after[rd].active == before[rd].active + 1 && a1 == a0 + 1 && i1 == i0 + 1,
          "FullNAT UDP: totals %llu/%llu -> %llu/%llu", (unsigned long long)a0, (unsigned long long)i0,
          (unsigned long long)a1, (unsigned long long)i1);
    return 0;
}

static const struct fixture fixtures[] = {
    { "connection counts, DR: once per flow over CPUs and tables, FIN, idle, reuse", t_conn_counts_dr },
    { "connection counts, NAT and FullNAT: one per flow, FIN closes", t_conn_counts_nat },
};

void suite_conns(void)
{
    RUN_FIXTURES(fixtures);
}
