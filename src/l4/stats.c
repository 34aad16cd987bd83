/* See stats.h: the snapshot's rows, filled from what was read, and the two
 * renderings (`sluice l4 list`, /metrics). Nothing here reads a map
 * (stats_maps.c does), so this part is unit-tested without a kernel
 * (tests/unit/test_l4_stats.c). */
#include "l4/stats.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/metrics.h"
#include "lib/strbuf.h"
#include "l4/conns.h"
#include "l4/tables.h"

uint32_t l4_table_count(size_t n_services)
{
    size_t t = 2 * n_services;
    return t < L4_MAGLEV_DEFAULT_TABLES ? L4_MAGLEV_DEFAULT_TABLES : (uint32_t)t;
}

static const char *mode_name(unsigned m)
{
    static const char *const names[] = { "dr", "tun", "nat", "fullnat" };
    return m < 4 ? names[m] : "?";
}

static void fmt_vip(char *buf, size_t cap, const __be32 addr[4], __be16 port)
{
    char ip[64];
    l4_addr16_string(addr, ip, sizeof ip);
    bool v6 = !(addr[0] == 0 && addr[1] == 0 && addr[2] == htonl(0xffff));
    snprintf(buf, cap, v6 ? "[%s]:%u" : "%s:%u", ip, ntohs(port));
}

static const char *real_state(const struct l4_real *r, uint32_t slots, int64_t weight)
{
    if (!(r->flags & L4_REAL_F_ACTIVE))
        return "down";
    if (slots)
        return "up";
    return weight == 0 ? "drained" : "down";
}

int l4_row_add_real(struct l4_row_svc *s, uint32_t index)
{
    struct l4_row_real *grown = realloc(s->reals, (s->n_reals + 1) * sizeof *grown);
    if (!grown)
        return -1;
    s->reals = grown;
    memset(&s->reals[s->n_reals], 0, sizeof *grown);
    s->reals[s->n_reals].index = index;
    s->reals[s->n_reals].weight = -1;
    s->n_reals++;
    return 0;
}

static int cmp_svc(const void *a, const void *b)
{
    const struct l4_row_svc *x = a, *y = b;
    return x->svc < y->svc ? -1 : x->svc > y->svc;
}

int l4_snapshot_add_vip(struct l4_snapshot *snap, const struct l4_vip_key *key, const struct l4_vip_meta *meta)
{
    struct l4_row_svc *grown = realloc(snap->svcs, (snap->n_svcs + 1) * sizeof *grown);
    if (!grown)
        return -1;
    snap->svcs = grown;
    struct l4_row_svc *s = &snap->svcs[snap->n_svcs++];
    memset(s, 0, sizeof *s);
    fmt_vip(s->vip, sizeof s->vip, key->addr, key->port);
    s->proto = key->proto == IPPROTO_TCP ? "TCP" : "UDP";
    s->mode = mode_name(meta->mode);
    s->scheduler = "maglev";
    s->svc = meta->svc;
    s->table = meta->table;
    s->vip_port = ntohs(key->port);
    s->loaded = 1;
    return 0;
}

void l4_snapshot_sort(struct l4_snapshot *snap)
{
    qsort(snap->svcs, snap->n_svcs, sizeof *snap->svcs, cmp_svc);
}

int l4_snapshot_from_model(struct l4_snapshot *snap, const struct l4_model_svc *svcs, size_t n)
{
    snap->svcs = calloc(n ? n : 1, sizeof *snap->svcs);
    if (!snap->svcs)
        return -1;
    snap->n_svcs = n;
    for (size_t i = 0; i < n; i++) {
        const struct cfg_l4_service *cs = svcs[i].cs;
        struct l4_row_svc *s = &snap->svcs[i];
        snprintf(s->vip, sizeof s->vip, "%s", cs->vip.text);
        s->proto = cs->proto == L4_PROTO_UDP ? "UDP" : "TCP";
        s->mode = l4_fwd_mode_name(cs->mode);
        s->scheduler = l4_scheduler_name(cs->scheduler);
        s->svc = svcs[i].slot;
        snprintf(s->source, sizeof s->source, "%s", svcs[i].source ? svcs[i].source : "");
        for (size_t r = 0; r < cs->n_reals; r++) {
            if (l4_row_add_real(s, svcs[i].reals[r].index) < 0)
                return -1;
            snprintf(s->reals[r].addr, sizeof s->reals[r].addr, "%s", cs->reals[r].addr.text);
            s->reals[r].weight = svcs[i].reals[r].weight;
            s->reals[r].state = svcs[i].reals[r].state;
        }
    }
    return 0;
}

void l4_row_count_slots(struct l4_row_svc *s, const __u32 *slots, uint32_t m, bool known_reals)
{
    for (uint32_t k = 0; k < m; k++) {
        if (!slots[k])
            continue;
        size_t r = 0;
        while (r < s->n_reals && s->reals[r].index != slots[k])
            r++;
        if (r == s->n_reals) {
            if (known_reals) /* a slot that is not this service's: stale, skip */
                continue;
            if (l4_row_add_real(s, slots[k]) < 0)
                break;
        }
        s->reals[r].slots++;
    }
}

void l4_row_real_describe(struct l4_row_real *rr, const struct l4_row_svc *s, const struct l4_real *real)
{
    if (!rr->addr[0]) {
        /* No config: DR and TUN keep the VIP's port, so show it. */
        char ip[64];
        l4_addr16_string(real->addr, ip, sizeof ip);
        bool v6 = real->flags & L4_REAL_F_V6;
        if (s->vip_port && (!strcmp(s->mode, "dr") || !strcmp(s->mode, "tun")))
            snprintf(rr->addr, sizeof rr->addr, v6 ? "[%s]:%u" : "%s:%u", ip, s->vip_port);
        else
            snprintf(rr->addr, sizeof rr->addr, "%s", ip);
    }
    if (!rr->state)
        rr->state = real_state(real, rr->slots, rr->weight);
}

void l4_snapshot_set_conns(struct l4_snapshot *snap, const struct l4_conn_count *by_real, size_t n_reals)
{
    for (size_t i = 0; i < snap->n_svcs; i++) {
        for (size_t r = 0; r < snap->svcs[i].n_reals; r++) {
            struct l4_row_real *rr = &snap->svcs[i].reals[r];
            if (rr->index < n_reals) {
                rr->active = by_real[rr->index].active;
                rr->inactive = by_real[rr->index].inactive;
            }
        }
    }
}

void l4_snapshot_free(struct l4_snapshot *snap)
{
    for (size_t i = 0; i < snap->n_svcs; i++)
        free(snap->svcs[i].reals);
    free(snap->svcs);
    memset(snap, 0, sizeof *snap);
}

char *l4_snapshot_render_list(const struct l4_snapshot *snap, const char *pin_dir)
{
    struct strbuf t = { 0 };
    strbuf_printf(&t, "Sluice L4 (XDP) forwarder: maps in %s, Maglev table size %" PRIu32 "\n", pin_dir, snap->m);
    strbuf_printf(&t, "%-5s%-34s %-12s %-8s %6s %6s %8s %9s %12s %14s\n", "Prot", "LocalAddress:Port", "Scheduler",
              "Mode", "", "", "ActConn", "InActConn", "InPkts", "InBytes");
    strbuf_printf(&t, "  -> %-33s %-12s %-8s %6s %6s %8s %9s %12s %14s\n", "RemoteAddress:Port", "State", "", "Weight",
              "Share", "ActConn", "InActConn", "InPkts", "InBytes");
    for (size_t i = 0; i < snap->n_svcs; i++) {
        const struct l4_row_svc *s = &snap->svcs[i];
        uint64_t act = 0, inact = 0;
        for (size_t r = 0; r < s->n_reals; r++) {
            act += s->reals[r].active;
            inact += s->reals[r].inactive;
        }
        strbuf_printf(&t, "%-5s%-34s %-12s %-8s %6s %6s %8" PRIu64 " %9" PRIu64 " %12" PRIu64 " %14" PRIu64 "%s\n",
                  s->proto, s->vip, s->scheduler, s->mode, "", "", act, inact, s->c.packets, s->c.bytes,
                  s->loaded ? "" : "  (not loaded)");
        if (s->source[0])
            strbuf_printf(&t, "  reals from %s\n", s->source);
        for (size_t r = 0; r < s->n_reals; r++) {
            const struct l4_row_real *rr = &s->reals[r];
            char w[24], share[16];
            if (rr->weight >= 0)
                snprintf(w, sizeof w, "%" PRId64, rr->weight);
            else
                snprintf(w, sizeof w, "-");
            snprintf(share, sizeof share, "%.0f%%", snap->m ? 100.0 * rr->slots / snap->m : 0.0);
            strbuf_printf(&t, "  -> %-33s %-12s %-8s %6s %6s %8" PRIu64 " %9" PRIu64 " %12" PRIu64 " %14" PRIu64 "\n",
                      rr->addr, rr->state, "", w, share, rr->active, rr->inactive, rr->c.packets, rr->c.bytes);
        }
    }
    strbuf_printf(&t, "\nPackets by disposition and event (non-zero):\n");
    for (uint32_t k = 0; k < L4_R__COUNT; k++) {
        if (snap->reasons[k].packets)
            strbuf_printf(&t, "  %-20s %12" PRIu64 " pkts %14" PRIu64 " bytes\n", l4_reason_names[k],
                      snap->reasons[k].packets, snap->reasons[k].bytes);
    }
    return strbuf_finish(&t, NULL);
}

void l4_snapshot_metrics(const struct l4_snapshot *snap, struct strbuf *out)
{
    static const struct { const char *name, *help; int bytes; } vip_fams[] = {
        { "sluice_l4_vip_packets_total",
          "Packets of the service forwarded by XDP: client to real (NAT, FullNAT: and the replies back).", 0 },
        { "sluice_l4_vip_bytes_total",
          "Bytes (frames as received) of the service forwarded by XDP: client to real (NAT, FullNAT: and the "
          "replies back).", 1 },
    };
    for (size_t f = 0; f < 2; f++) {
        metrics_family(out, vip_fams[f].name, "counter", vip_fams[f].help);
        for (size_t i = 0; i < snap->n_svcs; i++) {
            const struct l4_row_svc *s = &snap->svcs[i];
            const struct metric_label labels[] = {
                { "vip", s->vip }, { "proto", s->proto[0] == 'T' ? "tcp" : "udp" }, { "mode", s->mode },
            };
            metrics_sample(out, vip_fams[f].name, labels, 3, vip_fams[f].bytes ? s->c.bytes : s->c.packets);
        }
    }
    static const struct { const char *name, *type, *help; int what; } real_fams[] = {
        { "sluice_l4_real_packets_total", "counter",
          "Packets forwarded to the real server (NAT, FullNAT: and its replies forwarded to clients).", 0 },
        { "sluice_l4_real_bytes_total", "counter",
          "Bytes (frames as received) forwarded to the real server (NAT, FullNAT: and its replies forwarded "
          "to clients).", 1 },
        { "sluice_l4_real_up", "gauge", "1 when the real takes new flows (in the Maglev table).", 2 },
        { "sluice_l4_real_maglev_slots", "gauge", "Slots of the service's live Maglev table held by the real.", 3 },
        { "sluice_l4_real_active_connections", "gauge",
          "Flows of the real seen in the last 60 s and not closing (ipvsadm ActiveConn).", 4 },
        { "sluice_l4_real_inactive_connections", "gauge",
          "Flows of the real idle or closing, seen in the last 300 s (ipvsadm InActConn).", 5 },
    };
    for (size_t f = 0; f < sizeof real_fams / sizeof *real_fams; f++) {
        metrics_family(out, real_fams[f].name, real_fams[f].type, real_fams[f].help);
        for (size_t i = 0; i < snap->n_svcs; i++) {
            const struct l4_row_svc *s = &snap->svcs[i];
            for (size_t r = 0; r < s->n_reals; r++) {
                const struct l4_row_real *rr = &s->reals[r];
                uint64_t v = real_fams[f].what == 0 ? rr->c.packets
                           : real_fams[f].what == 1 ? rr->c.bytes
                           : real_fams[f].what == 2 ? (uint64_t)(rr->slots > 0)
                           : real_fams[f].what == 3 ? rr->slots
                           : real_fams[f].what == 4 ? rr->active
                                                    : rr->inactive;
                const struct metric_label labels[] = {
                    { "vip", s->vip }, { "proto", s->proto[0] == 'T' ? "tcp" : "udp" }, { "real", rr->addr },
                };
                metrics_sample(out, real_fams[f].name, labels, 3, v);
            }
        }
    }
    metrics_family(out, "sluice_l4_packets_total", "counter",
                   "Packets seen by the XDP forwarder by reason: fwd_*, pass_*, drop_*, icmp_echo_reply and "
                   "icmp_ptb_sent are dispositions (each packet in exactly one); ct_*, icmp_err_routed, nat_stale "
                   "and toa_* are events.");
    for (uint32_t k = 0; k < L4_R__COUNT; k++)
        metrics_sample(out, "sluice_l4_packets_total", &(struct metric_label){ "reason", l4_reason_names[k] }, 1,
                       snap->reasons[k].packets);
    metrics_family(out, "sluice_l4_bytes_total", "counter",
                   "Bytes (frames as received) seen by the XDP forwarder by reason; events other than "
                   "icmp_err_routed count no bytes.");
    for (uint32_t k = 0; k < L4_R__COUNT; k++)
        metrics_sample(out, "sluice_l4_bytes_total", &(struct metric_label){ "reason", l4_reason_names[k] }, 1,
                       snap->reasons[k].bytes);
}
