/* See stats.h: reading the forwarder's maps into a snapshot. The rows are
 * filled by the helpers in stats.c; this file only does the reading. */
#include "l4/stats.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "l4/conns.h"
#include "l4/tables.h"

int l4_percpu_sum(int fd, uint32_t key, struct l4_sum *out)
{
    int ncpu = libbpf_num_possible_cpus();
    memset(out, 0, sizeof *out);
    if (ncpu <= 0)
        return -1;
    struct l4_counter *v = calloc((size_t)ncpu, sizeof *v); /* 16 bytes: already 8-aligned per CPU */
    if (!v)
        return -1;
    int rc = bpf_map_lookup_elem(fd, &key, v);
    if (rc == 0) {
        for (int i = 0; i < ncpu; i++) {
            out->packets += v[i].packets;
            out->bytes += v[i].bytes;
        }
    }
    free(v);
    return rc;
}

/* Read slots [base, base + m) of the maglev array: in batches when the
 * kernel can (a batch continues after the key given as in_batch), else
 * one lookup per slot. */
static int read_table(int fd, uint32_t base, uint32_t m, __u32 *vals)
{
    __u32 *keys = malloc((size_t)m * sizeof *keys);
    if (!keys)
        return -1;
    uint32_t done = 0;
    while (done < m) {
        __u32 prev = base + done - 1, next;
        __u32 count = m - done;
        int rc = bpf_map_lookup_batch(fd, base + done ? &prev : NULL, &next, keys + done, vals + done, &count,
                                      NULL);
        if ((rc < 0 && errno != ENOENT) || count == 0)
            break;
        done += count;
    }
    int rc = 0;
    for (uint32_t i = done; i < m && rc == 0; i++) {
        keys[i] = base + i;
        rc = bpf_map_lookup_elem(fd, &keys[i], &vals[i]);
    }
    free(keys);
    return rc;
}

static uint32_t map_max_entries(int fd)
{
    struct bpf_map_info info = { 0 };
    __u32 len = sizeof info;
    return bpf_obj_get_info_by_fd(fd, &info, &len) == 0 ? info.max_entries : 0;
}

/* Services from the vips map alone (no config at hand). */
static int svcs_from_map(struct l4_snapshot *snap, const struct l4_fds *fds)
{
    struct l4_vip_key key, prev;
    const void *pp = NULL;
    while (bpf_map_get_next_key(fds->vips, pp, &key) == 0) {
        prev = key;
        pp = &prev;
        if (key.proto != IPPROTO_TCP && key.proto != IPPROTO_UDP)
            continue;
        struct l4_vip_meta meta;
        if (bpf_map_lookup_elem(fds->vips, &key, &meta) < 0)
            continue;
        if (l4_snapshot_add_vip(snap, &key, &meta) < 0)
            return -1;
    }
    l4_snapshot_sort(snap);
    return 0;
}

/* The model's services, and from the vips map whether each is loaded and
 * its live table. */
static int svcs_from_model(struct l4_snapshot *snap, const struct l4_model_svc *svcs, size_t n,
                           const struct l4_fds *fds)
{
    if (l4_snapshot_from_model(snap, svcs, n) < 0)
        return -1;
    for (size_t i = 0; i < n; i++) {
        struct l4_row_svc *s = &snap->svcs[i];
        struct l4_vip_key key;
        struct l4_vip_meta meta;
        l4_vip_key_of(&key, svcs[i].cs);
        if (bpf_map_lookup_elem(fds->vips, &key, &meta) == 0) {
            s->loaded = 1;
            s->table = meta.table;
        }
    }
    return 0;
}

/* Without a model: the reals a service owns (l4_real.owner), so drained
 * and down reals show too. */
static int reals_from_map(struct l4_snapshot *snap, const struct l4_fds *fds)
{
    for (uint32_t i = 1; i < L4_MAX_REALS; i++) {
        struct l4_real real;
        if (bpf_map_lookup_elem(fds->reals, &i, &real) < 0 || !real.owner)
            continue;
        for (size_t k = 0; k < snap->n_svcs; k++)
            if (snap->svcs[k].svc + 1 == real.owner && l4_row_add_real(&snap->svcs[k], i) < 0)
                return -1;
    }
    return 0;
}

static uint32_t m_from_config_map(const struct l4_fds *fds)
{
    struct l4_cfg c;
    __u32 key = 0;
    memset(&c, 0, sizeof c);
    if (fds->cfg >= 0 && bpf_map_lookup_elem(fds->cfg, &key, &c) == 0 && c.maglev_m)
        return c.maglev_m;
    /* Maps of an older run without the field: 2 tables x 8 services. */
    return map_max_entries(fds->maglev) / L4_MAGLEV_DEFAULT_TABLES;
}

int l4_snapshot_build(struct l4_snapshot *snap, const struct l4_model_svc *svcs, size_t n_svcs,
                      const struct l4_fds *fds, uint32_t m, char *err, size_t errlen)
{
    memset(snap, 0, sizeof *snap);
    int rc = svcs ? svcs_from_model(snap, svcs, n_svcs, fds) : svcs_from_map(snap, fds);
    if (rc == 0 && !svcs)
        rc = reals_from_map(snap, fds);
    if (rc < 0) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    if (!m)
        m = m_from_config_map(fds);
    snap->m = m;
    __u32 *slots = m ? malloc((size_t)m * sizeof *slots) : NULL;
    for (size_t i = 0; i < snap->n_svcs; i++) {
        struct l4_row_svc *s = &snap->svcs[i];
        l4_percpu_sum(fds->vip_stats, s->svc, &s->c);
        if (!s->loaded || !slots || read_table(fds->maglev, s->table * m, m, slots) < 0)
            continue;
        l4_row_count_slots(s, slots, m, svcs != NULL);
    }
    free(slots);
    for (size_t i = 0; i < snap->n_svcs; i++) {
        struct l4_row_svc *s = &snap->svcs[i];
        for (size_t r = 0; r < s->n_reals; r++) {
            struct l4_row_real *rr = &s->reals[r];
            struct l4_real real;
            memset(&real, 0, sizeof real);
            bpf_map_lookup_elem(fds->reals, &rr->index, &real);
            l4_row_real_describe(rr, s, &real);
            l4_percpu_sum(fds->real_stats, rr->index, &rr->c);
        }
    }
    for (uint32_t k = 0; k < L4_R__COUNT; k++)
        l4_percpu_sum(fds->reasons, k, &snap->reasons[k]);
    if (fds->conn >= 0 || fds->conn_shared >= 0 || fds->nat >= 0) {
        struct l4_conn_count *cc = calloc(L4_MAX_REALS, sizeof *cc);
        char cerr[160];
        if (cc && l4_count_conns(fds->conn, fds->conn_shared, fds->nat, l4_conns_now_ns(), cc, L4_MAX_REALS, cerr,
                                 sizeof cerr) == 0)
            l4_snapshot_set_conns(snap, cc, L4_MAX_REALS);
        free(cc);
    }
    return 0;
}
