/* Unit tests for src/l4/stats.c: the rows of a `sluice l4 list` / metrics
 * snapshot filled from what the maps hold (vips entries, live Maglev slots,
 * reals, connection counts), and their two renderings. The snapshots are
 * built here from values, as stats_maps.c builds them from the maps: no
 * kernel, no root, no libbpf. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/config.h"
#include "l4/l4_conf.h"
#include "proxy/proxy_conf.h"
#include "l4/stats.h"
#include "l4/tables.h"

static struct sl_config *load(const char *yaml)
{
    struct config_errors errs = { 0 };
    struct sl_config *cfg = config_load_string("t.yaml", yaml, strlen(yaml), &errs);

    for (size_t i = 0; i < errs.n; i++)
        fprintf(stderr, "%s\n", errs.lines[i]);
    config_errors_free(&errs);
    assert_non_null(cfg);
    return cfg;
}

static void vip_key(struct l4_vip_key *k, const char *addr, uint16_t port, uint8_t proto)
{
    memset(k, 0, sizeof *k);
    if (strchr(addr, ':')) {
        inet_pton(AF_INET6, addr, k->addr);
    } else {
        k->addr[2] = htonl(0xffff);
        inet_pton(AF_INET, addr, &k->addr[3]);
    }
    k->port = htons(port);
    k->proto = proto;
}

static void real_at(struct l4_real *r, const char *addr, bool active)
{
    memset(r, 0, sizeof *r);
    if (strchr(addr, ':')) {
        inet_pton(AF_INET6, addr, r->addr);
        r->flags = L4_REAL_F_V6;
    } else {
        r->addr[2] = htonl(0xffff);
        inet_pton(AF_INET, addr, &r->addr[3]);
    }
    if (active)
        r->flags |= L4_REAL_F_ACTIVE;
}

static void test_table_count(void **state)
{
    (void)state;
    /* Two tables per service (the live one and the one being filled), at
     * least the map's default. */
    assert_int_equal(l4_table_count(0), L4_MAGLEV_DEFAULT_TABLES);
    assert_int_equal(l4_table_count(8), 16);
    assert_int_equal(l4_table_count(9), 18);
    assert_int_equal(l4_table_count(1000), 2000);
}

/* Without a config: one row per TCP/UDP vips entry, sorted by slot. */
static void test_rows_from_vips(void **state)
{
    (void)state;
    struct l4_snapshot snap;
    struct l4_vip_key k;
    struct l4_vip_meta m = { 0 };

    memset(&snap, 0, sizeof snap);
    vip_key(&k, "2001:db8::100", 53, IPPROTO_UDP);
    m.svc = 4;
    m.table = 9;
    m.mode = L4_MODE_TUN;
    assert_int_equal(l4_snapshot_add_vip(&snap, &k, &m), 0);
    vip_key(&k, "10.0.0.100", 80, IPPROTO_TCP);
    m.svc = 1;
    m.table = 2;
    m.mode = L4_MODE_FULLNAT;
    assert_int_equal(l4_snapshot_add_vip(&snap, &k, &m), 0);
    vip_key(&k, "10.0.0.100", 81, IPPROTO_TCP);
    m.svc = 2;
    m.mode = 9; /* a mode this build does not know */
    assert_int_equal(l4_snapshot_add_vip(&snap, &k, &m), 0);
    l4_snapshot_sort(&snap);

    assert_int_equal(snap.n_svcs, 3);
    assert_string_equal(snap.svcs[0].vip, "10.0.0.100:80");
    assert_string_equal(snap.svcs[0].proto, "TCP");
    assert_string_equal(snap.svcs[0].mode, "fullnat");
    assert_string_equal(snap.svcs[0].scheduler, "maglev");
    assert_int_equal(snap.svcs[0].svc, 1);
    assert_int_equal(snap.svcs[0].table, 2);
    assert_int_equal(snap.svcs[0].vip_port, 80);
    assert_int_equal(snap.svcs[0].loaded, 1);
    assert_int_equal(snap.svcs[0].n_reals, 0);
    assert_string_equal(snap.svcs[1].mode, "?");
    assert_string_equal(snap.svcs[2].vip, "[2001:db8::100]:53");
    assert_string_equal(snap.svcs[2].proto, "UDP");
    assert_string_equal(snap.svcs[2].mode, "tun");
    assert_int_equal(snap.svcs[2].table, 9);
    l4_snapshot_free(&snap);
    assert_int_equal(snap.n_svcs, 0);
    assert_null(snap.svcs);
}

/* The live table's slots counted per real: in a row without a model every
 * real in the table shows (added in the order first seen); with a model's
 * reals, a slot of any other real is stale and skipped. */
static void test_count_slots(void **state)
{
    (void)state;
    const __u32 slots[] = { 0, 5, 5, 7, 0, 5, 9, 7 };
    struct l4_row_svc s;

    memset(&s, 0, sizeof s);
    l4_row_count_slots(&s, slots, 8, false);
    assert_int_equal(s.n_reals, 3);
    assert_int_equal(s.reals[0].index, 5);
    assert_int_equal(s.reals[0].slots, 3);
    assert_int_equal(s.reals[0].weight, -1);
    assert_int_equal(s.reals[1].index, 7);
    assert_int_equal(s.reals[1].slots, 2);
    assert_int_equal(s.reals[2].index, 9);
    assert_int_equal(s.reals[2].slots, 1);
    free(s.reals);

    memset(&s, 0, sizeof s);
    assert_int_equal(l4_row_add_real(&s, 7), 0);
    assert_int_equal(l4_row_add_real(&s, 3), 0);
    l4_row_count_slots(&s, slots, 8, true);
    assert_int_equal(s.n_reals, 2);
    assert_int_equal(s.reals[0].slots, 2);
    assert_int_equal(s.reals[1].slots, 0);
    free(s.reals);
}

/* Address and state of a real the reals map describes. */
static void test_real_describe(void **state)
{
    (void)state;
    struct l4_row_svc dr = { .mode = "dr", .vip_port = 80 }, nat = { .mode = "nat", .vip_port = 443 };
    struct l4_row_real rr;
    struct l4_real r;

    /* No address from a config: DR and TUN show the VIP's port... */
    memset(&rr, 0, sizeof rr);
    rr.weight = -1;
    rr.slots = 10;
    real_at(&r, "10.0.0.11", true);
    l4_row_real_describe(&rr, &dr, &r);
    assert_string_equal(rr.addr, "10.0.0.11:80");
    assert_string_equal(rr.state, "up");

    memset(&rr, 0, sizeof rr);
    rr.weight = -1;
    real_at(&r, "2001:db8::11", true);
    l4_row_real_describe(&rr, &dr, &r);
    assert_string_equal(rr.addr, "[2001:db8::11]:80");
    assert_string_equal(rr.state, "down"); /* active, no slots, weight unknown */

    /* ... NAT and FullNAT translate the port: the bare address. */
    memset(&rr, 0, sizeof rr);
    real_at(&r, "10.0.0.31", true);
    l4_row_real_describe(&rr, &nat, &r);
    assert_string_equal(rr.addr, "10.0.0.31");
    assert_string_equal(rr.state, "drained"); /* weight 0, no slots */

    memset(&rr, 0, sizeof rr);
    rr.slots = 3;
    real_at(&r, "10.0.0.32", false);
    l4_row_real_describe(&rr, &nat, &r);
    assert_string_equal(rr.state, "down"); /* inactive, whatever its slots */

    /* What a model gave stays. */
    memset(&rr, 0, sizeof rr);
    snprintf(rr.addr, sizeof rr.addr, "10.0.0.11:8080");
    rr.state = "draining";
    real_at(&r, "10.0.0.99", true);
    l4_row_real_describe(&rr, &dr, &r);
    assert_string_equal(rr.addr, "10.0.0.11:8080");
    assert_string_equal(rr.state, "draining");
}

static const char model_yaml[] =
    "l4:\n"
    "  interfaces: [lb0]\n"
    "  services:\n"
    "    - vip: 10.0.0.100:80\n"
    "      scheduler: wrr\n"
    "      reals: [{ address: 10.0.0.11:80, weight: 3 }, 10.0.0.12]\n"
    "    - vip: \"[2001:db8::100]:443\"\n"
    "      protocol: udp\n"
    "      mode: fullnat\n"
    "      local_addresses: [\"2001:db8::10\"]\n"
    "      reals: [\"[2001:db8::21]:8443\"]\n";

/* A snapshot as the daemon's model and the maps would make it: rows from
 * the model, loaded, slots, counters and connection counts filled in. */
static struct sl_config *model_snapshot(struct l4_snapshot *snap)
{
    static const struct l4_model_real reals0[] = { { 1, 3, "up" }, { 2, 0, "drained" } };
    static const struct l4_model_real reals1[] = { { 3, 1, "up" } };
    struct sl_config *cfg = load(model_yaml);
    const struct l4_model_svc model[] = {
        { &l4_conf(cfg)->services[0], 0, reals0, NULL },
        /* As a discovered service shows where its reals come from. */
        { &l4_conf(cfg)->services[1], 5, reals1, "registry service dns (registry, version 3, 1 of 1 members)" },
    };
    const __u32 slots[] = { 1, 1, 1, 2, 0, 1, 1, 1, 1, 1, 1, 1, 0 };
    struct l4_conn_count by[4] = { { 0, 0 }, { 7, 2 }, { 1, 0 }, { 0, 4 } };
    struct l4_real r;

    memset(snap, 0, sizeof *snap);
    assert_int_equal(l4_snapshot_from_model(snap, model, 2), 0);
    snap->m = 13;
    snap->svcs[0].loaded = 1;
    snap->svcs[0].c = (struct l4_sum){ 120, 96000 };
    l4_row_count_slots(&snap->svcs[0], slots, 13, true);
    for (size_t i = 0; i < snap->n_svcs; i++) {
        for (size_t k = 0; k < snap->svcs[i].n_reals; k++) {
            real_at(&r, "10.0.0.99", true);
            l4_row_real_describe(&snap->svcs[i].reals[k], &snap->svcs[i], &r);
        }
    }
    snap->svcs[0].reals[0].c = (struct l4_sum){ 100, 80000 };
    snap->svcs[0].reals[1].c = (struct l4_sum){ 20, 16000 };
    l4_snapshot_set_conns(snap, by, 4);
    snap->reasons[L4_R_FWD_DR] = (struct l4_sum){ 120, 96000 };
    snap->reasons[L4_R_PASS_NOT_VIP] = (struct l4_sum){ 3, 180 };
    snap->reasons[L4_R_CT_HIT] = (struct l4_sum){ 110, 0 };
    return cfg;
}

static void test_rows_from_model(void **state)
{
    (void)state;
    struct l4_snapshot snap;
    struct sl_config *cfg = model_snapshot(&snap);
    const struct l4_row_svc *s = snap.svcs;

    assert_int_equal(snap.n_svcs, 2);
    assert_string_equal(s[0].vip, "10.0.0.100:80");
    assert_string_equal(s[0].proto, "TCP");
    assert_string_equal(s[0].mode, "dr");
    assert_string_equal(s[0].scheduler, "wrr");
    assert_int_equal(s[0].svc, 0);
    assert_int_equal(s[0].n_reals, 2);
    assert_string_equal(s[0].reals[0].addr, "10.0.0.11:80");
    assert_int_equal(s[0].reals[0].weight, 3);
    assert_string_equal(s[0].reals[0].state, "up");
    assert_int_equal(s[0].reals[0].slots, 10);
    assert_string_equal(s[0].reals[1].addr, "10.0.0.12:80");
    assert_int_equal(s[0].reals[1].slots, 1);
    assert_string_equal(s[0].reals[1].state, "drained");
    /* Connection counts by reals map index. */
    assert_int_equal(s[0].reals[0].active, 7);
    assert_int_equal(s[0].reals[0].inactive, 2);
    assert_int_equal(s[0].reals[1].active, 1);
    assert_string_equal(s[1].vip, "[2001:db8::100]:443");
    assert_string_equal(s[1].proto, "UDP");
    assert_string_equal(s[1].mode, "fullnat");
    assert_string_equal(s[1].scheduler, "maglev");
    assert_int_equal(s[1].svc, 5);
    assert_int_equal(s[1].loaded, 0);
    assert_string_equal(s[1].reals[0].addr, "[2001:db8::21]:8443");
    assert_int_equal(s[1].reals[0].inactive, 4);

    /* An index past the counts is left alone. */
    {
        struct l4_conn_count few[2] = { { 9, 9 }, { 9, 9 } };
        l4_snapshot_set_conns(&snap, few, 2);
        assert_int_equal(s[0].reals[0].active, 9);
        assert_int_equal(s[0].reals[1].active, 1);
        assert_int_equal(s[1].reals[0].inactive, 4);
    }
    l4_snapshot_free(&snap);
    config_free(cfg);
}

static void test_render_list(void **state)
{
    (void)state;
    struct l4_snapshot snap;
    struct sl_config *cfg = model_snapshot(&snap);
    char *text = l4_snapshot_render_list(&snap, "/sys/fs/bpf/sluice");
    const char *want =
        "Sluice L4 (XDP) forwarder: maps in /sys/fs/bpf/sluice, Maglev table size 13\n"
        "Prot LocalAddress:Port                  Scheduler    Mode                    ActConn InActConn      "
        " InPkts        InBytes\n"
        "  -> RemoteAddress:Port                State                 Weight  Share  ActConn InActConn      "
        " InPkts        InBytes\n"
        "TCP  10.0.0.100:80                      wrr          dr                            8         2      "
        "    120          96000\n"
        "  -> 10.0.0.11:80                      up                         3    77%        7         2       "
        "   100          80000\n"
        "  -> 10.0.0.12:80                      drained                    0     8%        1         0       "
        "    20          16000\n"
        "UDP  [2001:db8::100]:443                maglev       fullnat                       0         4      "
        "      0              0  (not loaded)\n"
        "  reals from registry service dns (registry, version 3, 1 of 1 members)\n"
        "  -> [2001:db8::21]:8443               up                         1     0%        0         4       "
        "     0              0\n"
        "\n"
        "Packets by disposition and event (non-zero):\n"
        "  fwd_dr                        120 pkts          96000 bytes\n"
        "  pass_not_vip                    3 pkts            180 bytes\n"
        "  ct_hit                        110 pkts              0 bytes\n";

    assert_non_null(text);
    assert_string_equal(text, want);
    free(text);
    l4_snapshot_free(&snap);
    config_free(cfg);
}

/* The line of a metric with these labels, or NULL. */
static const char *metric_line(const char *text, const char *prefix)
{
    const char *p = text;

    while ((p = strstr(p, prefix)) != NULL) {
        if (p == text || p[-1] == '\n')
            return p;
        p++;
    }
    return NULL;
}

static void expect_metric(const char *text, const char *line)
{
    if (!metric_line(text, line)) {
        fprintf(stderr, "missing: %s\n", line);
        fail();
    }
}

static size_t count_of(const char *text, const char *s)
{
    size_t n = 0;

    for (const char *p = text; (p = strstr(p, s)) != NULL; p += strlen(s))
        n++;
    return n;
}

static void test_render_metrics(void **state)
{
    (void)state;
    struct l4_snapshot snap;
    struct sl_config *cfg = model_snapshot(&snap);
    size_t len = 0;
    struct strbuf out = { 0 };
    l4_snapshot_metrics(&snap, &out);
    char *text = strbuf_finish(&out, &len), line[160];

    assert_non_null(text);
    assert_int_equal(len, strlen(text));
    expect_metric(text, "sluice_l4_vip_packets_total{vip=\"10.0.0.100:80\",proto=\"tcp\",mode=\"dr\"} 120\n");
    expect_metric(text, "sluice_l4_vip_bytes_total{vip=\"10.0.0.100:80\",proto=\"tcp\",mode=\"dr\"} 96000\n");
    expect_metric(text, "sluice_l4_vip_packets_total{vip=\"[2001:db8::100]:443\",proto=\"udp\",mode=\"fullnat\"} 0\n");
    expect_metric(text,
                  "sluice_l4_real_packets_total{vip=\"10.0.0.100:80\",proto=\"tcp\",real=\"10.0.0.11:80\"} 100\n");
    expect_metric(text,
                  "sluice_l4_real_bytes_total{vip=\"10.0.0.100:80\",proto=\"tcp\",real=\"10.0.0.12:80\"} 16000\n");
    expect_metric(text, "sluice_l4_real_up{vip=\"10.0.0.100:80\",proto=\"tcp\",real=\"10.0.0.11:80\"} 1\n");
    expect_metric(text,
                  "sluice_l4_real_up{vip=\"[2001:db8::100]:443\",proto=\"udp\",real=\"[2001:db8::21]:8443\"} 0\n");
    expect_metric(text, "sluice_l4_real_maglev_slots{vip=\"10.0.0.100:80\",proto=\"tcp\",real=\"10.0.0.11:80\"} 10\n");
    expect_metric(text,
                  "sluice_l4_real_active_connections{vip=\"10.0.0.100:80\",proto=\"tcp\",real=\"10.0.0.11:80\"} 7\n");
    expect_metric(text, "sluice_l4_real_inactive_connections{vip=\"[2001:db8::100]:443\",proto=\"udp\","
                        "real=\"[2001:db8::21]:8443\"} 4\n");
    expect_metric(text, "sluice_l4_packets_total{reason=\"fwd_dr\"} 120\n");
    expect_metric(text, "sluice_l4_bytes_total{reason=\"pass_not_vip\"} 180\n");
    /* Every reason, zero or not, in both families. */
    for (int r = 0; r < L4_R__COUNT; r++) {
        snprintf(line, sizeof line, "sluice_l4_packets_total{reason=\"%s\"} ", l4_reason_names[r]);
        expect_metric(text, line);
        snprintf(line, sizeof line, "sluice_l4_bytes_total{reason=\"%s\"} ", l4_reason_names[r]);
        expect_metric(text, line);
    }
    /* One HELP and one TYPE per family (10 families). */
    assert_int_equal(count_of(text, "# HELP "), 10);
    assert_int_equal(count_of(text, "# TYPE "), 10);
    expect_metric(text, "# TYPE sluice_l4_real_up gauge\n");
    expect_metric(text, "# TYPE sluice_l4_vip_packets_total counter\n");
    /* Text ends with a newline, no empty lines. */
    assert_int_equal(text[len - 1], '\n');
    assert_null(strstr(text, "\n\n"));
    free(text);
    l4_snapshot_free(&snap);
    config_free(cfg);
}

/* An empty snapshot still renders the headers and every reason. */
static void test_render_empty(void **state)
{
    (void)state;
    struct l4_snapshot snap;
    size_t len;
    char *list, *metrics;

    memset(&snap, 0, sizeof snap);
    list = l4_snapshot_render_list(&snap, "/x");
    assert_non_null(list);
    assert_non_null(strstr(list, "Maglev table size 0\n"));
    assert_non_null(strstr(list, "Packets by disposition and event (non-zero):\n"));
    free(list);
    struct strbuf out = { 0 };
    l4_snapshot_metrics(&snap, &out);
    metrics = strbuf_finish(&out, &len);
    assert_non_null(metrics);
    assert_int_equal(count_of(metrics, "sluice_l4_packets_total{reason="), L4_R__COUNT);
    free(metrics);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table_count),
        cmocka_unit_test(test_rows_from_vips),
        cmocka_unit_test(test_count_slots),
        cmocka_unit_test(test_real_describe),
        cmocka_unit_test(test_rows_from_model),
        cmocka_unit_test(test_render_list),
        cmocka_unit_test(test_render_metrics),
        cmocka_unit_test(test_render_empty),
    };
    config_register_section(&proxy_conf_section);
    config_register_section(&l4_conf_section);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
