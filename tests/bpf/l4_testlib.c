/* See l4_testlib.h. */
#include "l4_testlib.h"

#include <arpa/inet.h>
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "lib/maglev.h"
#include "forwarder.skel.h"
#include "l4/bpf/l4_hash.h"

/* ---- addresses ---- */

int tl_addr_parse(const char *s, struct tl_addr *out)
{
    uint8_t v4[4];

    memset(out, 0, sizeof(*out));
    if (inet_pton(AF_INET, s, v4) == 1) {
        out->a[10] = 0xff;
        out->a[11] = 0xff;
        memcpy(out->a + 12, v4, 4);
        return 0;
    }
    if (inet_pton(AF_INET6, s, out->a) == 1) {
        out->v6 = true;
        return 0;
    }
    return -1;
}

const uint8_t *tl_addr_v4(const struct tl_addr *a)
{
    return a->a + 12;
}

/* ---- checksums: big-endian byte pairs, deliberately unlike the BPF side */

uint32_t tl_sum(const uint8_t *b, size_t n, uint32_t sum)
{
    size_t i;

    for (i = 0; i + 1 < n; i += 2)
        sum += ((uint32_t)b[i] << 8) | b[i + 1];
    if (n & 1)
        sum += (uint32_t)b[n - 1] << 8;
    while (sum >> 16)
        sum = (sum & 0xffff) + (sum >> 16);
    return sum;
}

uint16_t tl_fold(uint32_t sum)
{
    while (sum >> 16)
        sum = (sum & 0xffff) + (sum >> 16);
    return (uint16_t)~sum;
}

static void put16(uint8_t *p, uint16_t v)
{
    p[0] = v >> 8;
    p[1] = v & 0xff;
}

static uint16_t get16(const uint8_t *p)
{
    return (uint16_t)(p[0] << 8 | p[1]);
}

static uint32_t pseudo_sum(bool v6, const uint8_t *src, const uint8_t *dst, uint8_t proto, uint32_t len)
{
    uint8_t ph[40];

    if (!v6) {
        memcpy(ph, src, 4);
        memcpy(ph + 4, dst, 4);
        ph[8] = 0;
        ph[9] = proto;
        put16(ph + 10, (uint16_t)len);
        return tl_sum(ph, 12, 0);
    }
    memcpy(ph, src, 16);
    memcpy(ph + 16, dst, 16);
    ph[32] = len >> 24;
    ph[33] = len >> 16;
    ph[34] = len >> 8;
    ph[35] = len;
    ph[36] = ph[37] = ph[38] = 0;
    ph[39] = proto;
    return tl_sum(ph, 40, 0);
}

/* ---- frames ---- */

size_t tl_l3_off(const struct tl_frame *f)
{
    return f->vlan ? 18 : 14;
}

static size_t l4_hdr_len(const struct tl_frame *f)
{
    switch (f->proto) {
    case 6:
        return 20 + f->tcp_opt_len;
    case 17:
        return 8;
    case 1:
    case 58:
        return 8;
    default:
        return 0;
    }
}

size_t tl_build(struct pkt *p, const struct tl_frame *f)
{
    uint8_t *b = p->b;
    size_t l3 = tl_l3_off(f), l4, hl, l4len, i;
    bool v6 = f->dst.v6;
    uint8_t *l4p;

    memset(p, 0, sizeof(*p));
    memcpy(b, f->dmac, 6);
    memcpy(b + 6, f->smac, 6);
    if (f->vlan) {
        put16(b + 12, f->vlan_tpid ? f->vlan_tpid : 0x8100);
        put16(b + 14, f->vlan_tci);
        put16(b + 16, v6 ? 0x86dd : 0x0800);
    } else {
        put16(b + 12, v6 ? 0x86dd : 0x0800);
    }

    l4len = l4_hdr_len(f) + f->payload_len;
    if (!v6) {
        hl = 20 + f->ip_opts;
        b[l3] = 0x40 | (uint8_t)(hl / 4);
        b[l3 + 1] = f->tos;
        put16(b + l3 + 2, (uint16_t)(hl + l4len));
        put16(b + l3 + 4, f->ip_id);
        put16(b + l3 + 6, f->frag_off);
        b[l3 + 8] = f->ttl ? f->ttl : 64;
        b[l3 + 9] = f->proto;
        memcpy(b + l3 + 12, tl_addr_v4(&f->src), 4);
        memcpy(b + l3 + 16, tl_addr_v4(&f->dst), 4);
        memset(b + l3 + 20, 1, f->ip_opts); /* NOP options */
        put16(b + l3 + 10, tl_fold(tl_sum(b + l3, hl, 0)));
    } else {
        hl = 40;
        b[l3] = 0x60 | (f->tos >> 4);
        b[l3 + 1] = (uint8_t)(f->tos << 4);
        put16(b + l3 + 4, (uint16_t)l4len);
        b[l3 + 6] = f->proto;
        b[l3 + 7] = f->ttl ? f->ttl : 64;
        memcpy(b + l3 + 8, f->src.a, 16);
        memcpy(b + l3 + 24, f->dst.a, 16);
    }

    l4 = l3 + hl;
    l4p = b + l4;
    switch (f->proto) {
    case 6:
        put16(l4p, f->sport);
        put16(l4p + 2, f->dport);
        put16(l4p + 4, 0x0102); /* seq */
        put16(l4p + 6, 0x0304);
        l4p[12] = (uint8_t)((5 + f->tcp_opt_len / 4) << 4);
        memcpy(l4p + 20, f->tcp_opt, f->tcp_opt_len);
        l4p[13] = f->tcp_flags ? f->tcp_flags : 0x02;
        put16(l4p + 14, 0xffff); /* window */
        break;
    case 17:
        put16(l4p, f->sport);
        put16(l4p + 2, f->dport);
        put16(l4p + 4, (uint16_t)l4len);
        break;
    case 1:
    case 58:
        l4p[0] = f->icmp_type;
        l4p[1] = f->icmp_code;
        put16(l4p + 4, f->icmp_id);
        put16(l4p + 6, f->icmp_seq);
        break;
    }
    for (i = 0; i < f->payload_len; i++)
        b[l4 + l4_hdr_len(f) + i] = f->payload ? f->payload[i] : (uint8_t)(i % 251);

    if (f->proto == 6 || f->proto == 17 || f->proto == 58 || f->proto == 1) {
        uint32_t s = 0;
        size_t csum_off = f->proto == 6 ? 16 : f->proto == 17 ? 6 : 2;
        uint16_t c;

        if (f->proto != 1)
            s = pseudo_sum(v6, v6 ? f->src.a : tl_addr_v4(&f->src), v6 ? f->dst.a : tl_addr_v4(&f->dst),
                           f->proto, (uint32_t)l4len);
        c = tl_fold(tl_sum(l4p, l4len, s));
        if (f->proto == 17 && c == 0)
            c = 0xffff;
        put16(l4p + csum_off, c);
    }

    p->len = l4 + l4len;
    if (f->pad_to > p->len)
        p->len = f->pad_to;
    return p->len;
}

uint16_t tl_gue_port;

/* The IP header at frame + l3: IPv6 when its version says 6, else read as
 * IPv4. Fills the header length, the total length and the next protocol;
 * -1 when they do not fit in the frame. */
static int ip_bounds(const uint8_t *frame, size_t len, size_t l3, bool *v6, size_t *hl, size_t *tot,
                     uint8_t *proto)
{
    const uint8_t *ip = frame + l3;

    if (l3 + 20 > len)
        return -1;
    *v6 = (ip[0] >> 4) == 6;
    if (!*v6) {
        *hl = (size_t)(ip[0] & 0xf) * 4;
        *tot = get16(ip + 2);
        *proto = ip[9];
        return *hl < 20 || *tot < *hl || l3 + *tot > len ? -1 : 0;
    }
    if (l3 + 40 > len)
        return -1;
    *hl = 40;
    *tot = 40 + get16(ip + 4);
    *proto = ip[6];
    return l3 + *tot > len ? -1 : 0;
}

int tl_verify_csums(const uint8_t *frame, size_t len, size_t l3)
{
    const uint8_t *ip = frame + l3;
    size_t hl, tot, l4len;
    uint8_t proto;
    bool v6;

    if (ip_bounds(frame, len, l3, &v6, &hl, &tot, &proto) < 0)
        return -1;
    if (!v6 && tl_fold(tl_sum(ip, hl, 0)) != 0)
        return -2;
    l4len = tot - hl;
    switch (proto) {
    case 4:
    case 41:
        return tl_verify_csums(frame, l3 + tot, l3 + hl);
    case 1:
        return tl_fold(tl_sum(ip + hl, l4len, 0)) == 0 ? 0 : -3;
    case 17:
        if (l4len < 8)
            return -1;
        if (get16(ip + hl + 6) == 0)
            return v6 ? -3 : 0; /* none: allowed over IPv4 only */
        if (tl_gue_port && get16(ip + hl + 2) == tl_gue_port && l4len > 8 &&
            ((ip[hl + 8] >> 4) == 4 || (ip[hl + 8] >> 4) == 6)) {
            int r = tl_verify_csums(frame, l3 + hl + l4len, l3 + hl + 8);

            if (r)
                return r;
        }
        /* then the outer UDP checksum, as for TCP */
        /* fall through */
    case 6:
    case 58:
        if (tl_fold(tl_sum(ip + hl, l4len,
                           pseudo_sum(v6, v6 ? ip + 8 : ip + 12, v6 ? ip + 24 : ip + 16, proto,
                                      (uint32_t)l4len))) != 0)
            return -3;
        return 0;
    default:
        return 0;
    }
}

int tl_fix_csums(uint8_t *frame, size_t len, size_t l3)
{
    uint8_t *ip = frame + l3, *l4p;
    size_t hl, tot, l4len, off;
    uint8_t proto;
    uint16_t c;
    bool v6;

    if (ip_bounds(frame, len, l3, &v6, &hl, &tot, &proto) < 0 || (!v6 && (ip[0] >> 4) != 4))
        return -1;
    l4len = tot - hl;
    l4p = ip + hl;
    off = 0;
    switch (proto) {
    case 4:
    case 41:
        tl_fix_csums(frame, l3 + tot, l3 + hl);
        break;
    case 17:
        if (l4len < 8 || (!v6 && get16(l4p + 6) == 0))
            break;
        if (tl_gue_port && get16(l4p + 2) == tl_gue_port && l4len > 8 && ((l4p[8] >> 4) == 4 || (l4p[8] >> 4) == 6))
            tl_fix_csums(frame, l3 + tot, l3 + hl + 8);
        off = 6;
        break;
    case 6:
        off = l4len >= 20 ? 16 : 0;
        break;
    case 1:
    case 58:
        off = l4len >= 4 ? 2 : 0;
        break;
    }
    if (off) {
        uint32_t s = proto == 1 ? 0
                                : pseudo_sum(v6, v6 ? ip + 8 : ip + 12, v6 ? ip + 24 : ip + 16, proto,
                                             (uint32_t)l4len);

        put16(l4p + off, 0);
        c = tl_fold(tl_sum(l4p, l4len, s));
        if (proto == 17 && c == 0)
            c = 0xffff;
        put16(l4p + off, c);
    }
    if (!v6) {
        put16(ip + 10, 0);
        put16(ip + 10, tl_fold(tl_sum(ip, hl, 0)));
    }
    return 0;
}

int tl_frame_l3(const uint8_t *frame, size_t len, size_t *l3)
{
    uint16_t et;

    if (len < 14)
        return -1;
    *l3 = 14;
    et = get16(frame + 12);
    if (et == 0x8100 || et == 0x88a8) {
        if (len < 18)
            return -1;
        *l3 = 18;
        et = get16(frame + 16);
    }
    return et == 0x0800 || et == 0x86dd ? et : -1;
}

void tl_hexdump(const char *title, const uint8_t *b, size_t n)
{
    size_t i;

    fprintf(stderr, "    %s (%zu bytes):", title, n);
    for (i = 0; i < n; i++) {
        if (i % 16 == 0)
            fprintf(stderr, "\n      %04zx ", i);
        fprintf(stderr, " %02x", b[i]);
    }
    fprintf(stderr, "\n");
}

/* ---- environment ---- */

int tl_pin_cpu(void)
{
    cpu_set_t set;
    int cpu = sched_getcpu();

    if (cpu < 0)
        cpu = 0;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    if (sched_setaffinity(0, sizeof(set), &set) != 0)
        return -1;
    return sched_getcpu();
}

int tl_env_open(struct tl_env *e, uint32_t m, uint32_t tables, uint32_t seed)
{
    int err;

    memset(e, 0, sizeof(*e));
    e->m = m;
    e->tables = tables;
    e->seed = seed;
    e->ncpus = libbpf_num_possible_cpus();
    e->cpu = sched_getcpu();
    if (e->ncpus <= 0 || e->cpu < 0)
        return -EINVAL;

    e->skel = forwarder__open();
    if (!e->skel)
        return -errno;
    e->skel->rodata->maglev_m = m;
    e->skel->rodata->maglev_tables = tables;
    e->skel->rodata->flow_seed = seed;
    e->skel->rodata->nr_cpus = (uint32_t)e->ncpus;
    err = bpf_map__set_max_entries(e->skel->maps.maglev, m * tables);
    if (err)
        goto fail;
    err = forwarder__load(e->skel);
    if (err)
        goto fail;

    e->prog_fd = bpf_program__fd(e->skel->progs.sluice_l4_fwd);
    e->fd_vips = bpf_map__fd(e->skel->maps.vips);
    e->fd_reals = bpf_map__fd(e->skel->maps.reals);
    e->fd_maglev = bpf_map__fd(e->skel->maps.maglev);
    e->fd_conn = bpf_map__fd(e->skel->maps.conn);
    e->fd_cfg = bpf_map__fd(e->skel->maps.l4_config);
    e->fd_flood = bpf_map__fd(e->skel->maps.flood);
    e->fd_vip_stats = bpf_map__fd(e->skel->maps.vip_stats);
    e->fd_real_stats = bpf_map__fd(e->skel->maps.real_stats);
    e->fd_reasons = bpf_map__fd(e->skel->maps.reasons);
    e->fd_nat = bpf_map__fd(e->skel->maps.nat);
    e->fd_pools = bpf_map__fd(e->skel->maps.nat_pools);
    e->fd_conn_shared = bpf_map__fd(e->skel->maps.conn_shared);
    e->fd_rr = bpf_map__fd(e->skel->maps.rr_cursor);
    return 0;
fail:
    forwarder__destroy(e->skel);
    e->skel = NULL;
    return err < 0 ? err : -EINVAL;
}

void tl_env_close(struct tl_env *e)
{
    for (int i = 0; i < TL_MAX_SVC; i++)
        free(e->svcs[i].table);
    if (e->skel)
        forwarder__destroy(e->skel);
    memset(e, 0, sizeof(*e));
}

int tl_set_cfg(struct tl_env *e, const struct l4_cfg *cfg)
{
    uint32_t zero = 0;

    e->cfg = *cfg;
    return bpf_map_update_elem(e->fd_cfg, &zero, cfg, BPF_ANY);
}

int tl_set_real(struct tl_env *e, uint32_t idx, const char *addr, const uint8_t mac[6], bool active)
{
    struct tl_addr a;
    struct tl_real *tr;
    char name[sizeof(tr->name)];

    if (idx == 0 || idx >= TL_MAX_REALS || tl_addr_parse(addr, &a) != 0)
        return -EINVAL;
    snprintf(name, sizeof(name), "%s", addr); /* addr may be tr->name itself */
    tr = &e->reals[idx];
    memset(tr, 0, sizeof(*tr));
    tr->used = true;
    memcpy(tr->name, name, sizeof(name));
    memcpy(tr->r.addr, a.a, 16);
    memcpy(tr->r.mac, mac, 6);
    tr->r.flags = (uint16_t)((active ? L4_REAL_F_ACTIVE : 0) | (a.v6 ? L4_REAL_F_V6 : 0));
    return bpf_map_update_elem(e->fd_reals, &idx, &tr->r, BPF_ANY);
}

int tl_set_real_port(struct tl_env *e, uint32_t idx, uint16_t port)
{
    if (idx == 0 || idx >= TL_MAX_REALS || !e->reals[idx].used)
        return -EINVAL;
    e->reals[idx].r.port = htons(port);
    return bpf_map_update_elem(e->fd_reals, &idx, &e->reals[idx].r, BPF_ANY);
}

int tl_set_pool(struct tl_env *e, uint32_t svc, const char *const *addrs, size_t n, uint16_t pmin, uint16_t pmax)
{
    struct l4_nat_pool pool;
    struct tl_addr a;

    if (n > L4_POOL_ADDRS)
        return -EINVAL;
    memset(&pool, 0, sizeof(pool));
    for (size_t i = 0; i < n; i++) {
        if (tl_addr_parse(addrs[i], &a) != 0)
            return -EINVAL;
        memcpy(pool.addr[i], a.a, 16);
    }
    pool.naddrs = (uint32_t)n;
    pool.port_min = pmin;
    pool.port_max = pmax;
    return bpf_map_update_elem(e->fd_pools, &svc, &pool, BPF_ANY);
}

int tl_build_table(struct tl_env *e, uint32_t svc, uint32_t table, const uint32_t *reals,
                   const uint32_t *weights, size_t n)
{
    struct tl_svc *s = &e->svcs[svc];
    const char *keys[TL_SVC_MAX_REALS];
    uint32_t *keys_idx = NULL, *vals = NULL, count;
    int err = 0;

    if (svc >= TL_MAX_SVC || n > TL_SVC_MAX_REALS || table >= e->tables)
        return -EINVAL;
    for (size_t i = 0; i < n; i++) {
        if (reals[i] >= TL_MAX_REALS || !e->reals[reals[i]].used)
            return -EINVAL;
        keys[i] = e->reals[reals[i]].name;
        s->reals[i] = reals[i];
        s->weights[i] = weights[i];
    }
    s->n = n;
    free(s->table);
    s->table = calloc(e->m, sizeof(*s->table));
    keys_idx = calloc(e->m, sizeof(*keys_idx));
    vals = calloc(e->m, sizeof(*vals));
    if (!s->table || !keys_idx || !vals) {
        err = -ENOMEM;
        goto out;
    }
    if (maglev_build(s->table, e->m, keys, weights, n, MAGLEV_DEFAULT_SEED) != 0 && errno != ENOENT) {
        err = -errno;
        goto out;
    }
    /* The control plane's translation: a position in the service's list of
     * reals becomes a global real index; -1 (no real) becomes 0. */
    for (uint32_t i = 0; i < e->m; i++) {
        keys_idx[i] = table * e->m + i;
        vals[i] = s->table[i] < 0 ? 0 : s->reals[s->table[i]];
    }
    count = e->m;
    err = bpf_map_update_batch(e->fd_maglev, keys_idx, vals, &count, NULL);
    if (!err && count != e->m)
        err = -EIO;
out:
    free(keys_idx);
    free(vals);
    return err;
}

int tl_add_service(struct tl_env *e, uint32_t svc, uint32_t table, const char *vip, uint16_t port,
                   uint8_t proto, uint8_t mode, uint16_t flags, const uint32_t *reals,
                   const uint32_t *weights, size_t n)
{
    struct tl_svc *s;
    struct tl_addr a;
    int err;

    if (svc >= TL_MAX_SVC || tl_addr_parse(vip, &a) != 0)
        return -EINVAL;
    s = &e->svcs[svc];
    err = tl_build_table(e, svc, table, reals, weights, n);
    if (err)
        return err;
    s->used = true;
    memset(&s->key, 0, sizeof(s->key));
    memcpy(s->key.addr, a.a, 16);
    s->key.port = htons(port);
    s->key.proto = proto;
    memset(&s->meta, 0, sizeof(s->meta));
    s->meta.svc = svc;
    s->meta.table = table;
    s->meta.mode = mode;
    s->meta.flags = flags;
    return bpf_map_update_elem(e->fd_vips, &s->key, &s->meta, BPF_ANY);
}

int tl_set_vip_table(struct tl_env *e, uint32_t svc, uint32_t table)
{
    struct tl_svc *s = &e->svcs[svc];

    s->meta.table = table;
    return bpf_map_update_elem(e->fd_vips, &s->key, &s->meta, BPF_ANY);
}

int tl_add_icmp_vip(struct tl_env *e, const char *vip)
{
    struct l4_vip_key k;
    struct l4_vip_meta meta;
    struct tl_addr a;

    if (tl_addr_parse(vip, &a) != 0)
        return -EINVAL;
    memset(&k, 0, sizeof(k));
    memset(&meta, 0, sizeof(meta));
    memcpy(k.addr, a.a, 16);
    k.proto = a.v6 ? 58 : 1;
    return bpf_map_update_elem(e->fd_vips, &k, &meta, BPF_ANY);
}

void tl_flow_key(const struct tl_frame *f, struct l4_flow_key *k)
{
    memset(k, 0, sizeof(*k));
    memcpy(k->src, f->src.a, 16);
    memcpy(k->dst, f->dst.a, 16);
    k->sport = htons(f->sport);
    k->dport = htons(f->dport);
    k->proto = f->proto;
}

uint32_t tl_flow_hash(const struct tl_env *e, const struct tl_frame *f)
{
    struct l4_flow_key k;

    tl_flow_key(f, &k);
    return l4_flow_hash(&k, e->seed);
}

uint32_t tl_maglev_real(const struct tl_env *e, uint32_t svc, const struct tl_frame *f)
{
    const struct tl_svc *s = &e->svcs[svc];
    int32_t pos = maglev_lookup(s->table, e->m, tl_flow_hash(e, f));

    return pos < 0 ? 0 : s->reals[pos];
}

uint32_t tl_src_hash_real(const struct tl_env *e, uint32_t svc, const struct tl_addr *client)
{
    const struct tl_svc *s = &e->svcs[svc];
    __be32 src[4];
    int32_t pos;

    memcpy(src, client->a, 16);
    pos = maglev_lookup(s->table, e->m, l4_src_hash(src, e->seed));
    return pos < 0 ? 0 : s->reals[pos];
}

/* ---- running ---- */

int tl_run(int prog_fd, const struct pkt *in, struct pkt *out, uint32_t *verdict)
{
    LIBBPF_OPTS(bpf_test_run_opts, o, .data_in = in->b, .data_size_in = (uint32_t)in->len,
                .data_out = out->b, .data_size_out = sizeof(out->b), .repeat = 1);
    int err;

    memset(out->b, 0, sizeof(out->b));
    err = bpf_prog_test_run_opts(prog_fd, &o);
    if (err)
        return err < 0 ? err : -errno;
    out->len = o.data_size_out;
    *verdict = o.retval;
    return 0;
}

int tl_run_repeat(int prog_fd, const struct pkt *in, uint32_t repeat, uint32_t *ns, uint32_t *verdict)
{
    static uint8_t sink[PKT_MAX];
    LIBBPF_OPTS(bpf_test_run_opts, o, .data_in = in->b, .data_size_in = (uint32_t)in->len,
                .data_out = sink, .data_size_out = sizeof(sink), .repeat = repeat);
    int err = bpf_prog_test_run_opts(prog_fd, &o);

    if (err)
        return err < 0 ? err : -errno;
    *ns = o.duration;
    *verdict = o.retval;
    return 0;
}

int tl_counter(int fd, uint32_t idx, struct l4_counter *sum)
{
    int n = libbpf_num_possible_cpus();
    struct l4_counter *v = calloc((size_t)n, sizeof(*v));
    int err;

    if (!v)
        return -ENOMEM;
    memset(sum, 0, sizeof(*sum));
    err = bpf_map_lookup_elem(fd, &idx, v);
    if (!err) {
        for (int i = 0; i < n; i++) {
            sum->packets += v[i].packets;
            sum->bytes += v[i].bytes;
        }
    }
    free(v);
    return err;
}

int tl_counter_cpu(int fd, uint32_t idx, int cpu, struct l4_counter *c)
{
    int n = libbpf_num_possible_cpus();
    struct l4_counter *v;
    int err;

    if (cpu < 0 || cpu >= n)
        return -EINVAL;
    v = calloc((size_t)n, sizeof(*v));
    if (!v)
        return -ENOMEM;
    err = bpf_map_lookup_elem(fd, &idx, v);
    if (!err)
        *c = v[cpu];
    free(v);
    return err;
}

int tl_run_on_cpu(int cpu)
{
    cpu_set_t set;

    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    if (sched_setaffinity(0, sizeof(set), &set) != 0)
        return -errno;
    return sched_getcpu() == cpu ? 0 : -EAGAIN;
}

int tl_reasons(struct tl_env *e, uint64_t pkts[L4_R__COUNT])
{
    for (uint32_t r = 0; r < L4_R__COUNT; r++) {
        struct l4_counter c;
        int err = tl_counter(e->fd_reasons, r, &c);

        if (err)
            return err;
        pkts[r] = c.packets;
    }
    return 0;
}

int tl_conn_get(struct tl_env *e, const struct l4_flow_key *k, struct l4_conn *v)
{
    struct l4_conn *all = calloc((size_t)e->ncpus, sizeof(*all));
    int err;

    if (!all)
        return -ENOMEM;
    err = bpf_map_lookup_elem(e->fd_conn, k, all);
    if (!err)
        *v = all[e->cpu];
    free(all);
    return err ? -1 : 0;
}

int tl_conn_set(struct tl_env *e, const struct l4_flow_key *k, const struct l4_conn *v)
{
    struct l4_conn *all = calloc((size_t)e->ncpus, sizeof(*all));
    int err;

    if (!all)
        return -ENOMEM;
    bpf_map_lookup_elem(e->fd_conn, k, all); /* keep other CPUs' values */
    all[e->cpu] = *v;
    err = bpf_map_update_elem(e->fd_conn, k, all, BPF_ANY);
    free(all);
    return err;
}

/* Forget a flow: in the per-CPU table and in the shared fallback one. */
int tl_conn_del(struct tl_env *e, const struct l4_flow_key *k)
{
    int rc = bpf_map_delete_elem(e->fd_conn, k);
    int shared = bpf_map__fd(e->skel->maps.conn_shared);
    if (bpf_map_delete_elem(shared, k) != 0 && errno != ENOENT)
        return -1;
    return rc;
}

int tl_conn_clear(struct tl_env *e)
{
    struct l4_flow_key k;

    /* Deleting the key just read, then asking for the first key again,
     * never skips one (unlike walking with a key that is gone). */
    while (bpf_map_get_next_key(e->fd_conn, NULL, &k) == 0)
        if (bpf_map_delete_elem(e->fd_conn, &k) != 0)
            return -errno;
    int shared = bpf_map__fd(e->skel->maps.conn_shared);
    while (bpf_map_get_next_key(shared, NULL, &k) == 0)
        if (bpf_map_delete_elem(shared, &k) != 0)
            return -errno;
    return 0;
}

int tl_flood_reset(struct tl_env *e)
{
    struct l4_flood *all = calloc((size_t)e->ncpus, sizeof(*all));
    uint32_t zero = 0;
    int err;

    if (!all)
        return -ENOMEM;
    err = bpf_map_update_elem(e->fd_flood, &zero, all, BPF_ANY);
    free(all);
    return err;
}

const char *tl_verdict_name(uint32_t v)
{
    static const char *const names[] = { "XDP_ABORTED", "XDP_DROP", "XDP_PASS", "XDP_TX", "XDP_REDIRECT" };

    return v < 5 ? names[v] : "XDP_?";
}
