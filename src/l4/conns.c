/* See conns.h. */
#include "l4/conns.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "l4/bpf/forwarder_abi.h"

#define NSEC_PER_SEC 1000000000ull
#define KEY_LEN 40

/* Both kinds of key go into the same kind of set. */
_Static_assert(sizeof(struct l4_flow_key) == KEY_LEN, "flow key size");
_Static_assert(sizeof(struct l4_nat_key) == KEY_LEN, "NAT key size");

/* ---- a set of connections, keyed by their map key ---- */

struct conn_rec {
    uint8_t key[KEY_LEN];
    uint32_t real;
    uint32_t seen;     /* CLOCK_MONOTONIC seconds */
    uint8_t proto;
    bool closing;
    bool used;
};

struct conn_set {
    struct conn_rec *slot;
    size_t cap, n;     /* cap: a power of two */
};

static uint64_t key_hash(const uint8_t *k)
{
    uint64_t h = 0x6a09e667f3bcc909ull;

    for (int i = 0; i < KEY_LEN / 8; i++) {
        uint64_t w;

        memcpy(&w, k + 8 * i, 8);
        h = (h ^ w) * 0x9e3779b97f4a7c15ull;
        h ^= h >> 31;
    }
    return h;
}

static struct conn_rec *set_find(struct conn_rec *slot, size_t cap, const uint8_t *key)
{
    size_t i = (size_t)key_hash(key) & (cap - 1);

    /* Linear probing; the set is kept at most half full, so this ends. */
    while (slot[i].used && memcmp(slot[i].key, key, KEY_LEN) != 0)
        i = (i + 1) & (cap - 1);
    return &slot[i];
}

static int set_grow(struct conn_set *s)
{
    size_t cap = s->cap ? s->cap * 2 : 4096;
    struct conn_rec *slot = calloc(cap, sizeof(*slot));

    if (!slot)
        return -1;
    for (size_t i = 0; i < s->cap; i++)
        if (s->slot[i].used)
            *set_find(slot, cap, s->slot[i].key) = s->slot[i];
    free(s->slot);
    s->slot = slot;
    s->cap = cap;
    return 0;
}

/* Add one copy of a connection. The freshest copy says where it goes and
 * whether it is closing; copies from the same second are merged, so a FIN
 * seen on one CPU is not undone by another CPU's copy from that second. */
static int set_add(struct conn_set *s, const void *key, uint8_t proto, uint32_t real, uint32_t seen, bool closing)
{
    struct conn_rec *r;

    if ((s->n + 1) * 2 > s->cap && set_grow(s) < 0)
        return -1;
    r = set_find(s->slot, s->cap, key);
    if (!r->used) {
        memcpy(r->key, key, KEY_LEN);
        r->used = true;
        r->proto = proto;
        r->real = real;
        r->seen = seen;
        r->closing = closing;
        s->n++;
    } else if (seen > r->seen) {
        r->real = real;
        r->seen = seen;
        r->closing = closing;
    } else if (seen == r->seen) {
        r->closing = r->closing || closing;
    }
    return 0;
}

static void set_tally(const struct conn_set *s, uint32_t now, struct l4_conn_count *by_real, size_t n_reals)
{
    for (size_t i = 0; i < s->cap; i++) {
        const struct conn_rec *r = &s->slot[i];
        /* A copy stamped later than `now` (the caller read its clock
         * first) is fresh. */
        uint32_t age = now > r->seen ? now - r->seen : 0;

        if (!r->used || r->real >= n_reals)
            continue;
        if (age < L4_CONN_ACTIVE_SECS && !(r->proto == IPPROTO_TCP && r->closing))
            by_real[r->real].active++;
        else if (age < L4_CONN_INACTIVE_SECS)
            by_real[r->real].inactive++;
    }
}

/* ---- walking a map ---- */

struct walk {
    int fd;
    const char *name;          /* for messages */
    bool percpu;
    int ncpus;
    size_t vstride;            /* bytes per element in a lookup's value buffer */
    size_t cpu_stride;         /* per-CPU maps: bytes per CPU within it */
    int (*entry)(struct walk *w, const void *key, const void *val);
    struct conn_set *set;
};

/* The DR/TUN tables: every CPU's copy that is set (real 0: this CPU never
 * wrote the flow). */
static int conn_entry(struct walk *w, const void *key, const void *val)
{
    const struct l4_flow_key *k = key;
    int n = w->percpu ? w->ncpus : 1;

    for (int i = 0; i < n; i++) {
        const struct l4_conn *c = (const void *)((const uint8_t *)val + (size_t)i * w->cpu_stride);

        if (c->real && set_add(w->set, key, k->proto, c->real, c->seen, c->flags & L4_CONN_F_CLOSING) < 0)
            return -1;
    }
    return 0;
}

/* NAT: the reply-side entry stands for the flow. */
static int nat_entry(struct walk *w, const void *key, const void *val)
{
    const struct l4_nat_key *k = key;
    const struct l4_nat *v = val;

    if (k->dir != L4_NAT_OUT && k->dir != L4_NAT_LOCAL)
        return 0;
    return set_add(w->set, key, k->proto, v->real, (uint32_t)(v->last_seen / NSEC_PER_SEC),
                   v->state & L4_NAT_S_CLOSING);
}

/* Key by key, for kernels without batch lookups on this map type. A key
 * deleted meanwhile makes get_next_key start over; the set absorbs the
 * repeats. */
static int walk_keys(struct walk *w, char *err, size_t errlen)
{
    uint8_t key[KEY_LEN], next[KEY_LEN];
    void *val = malloc(w->vstride);
    int rc;

    if (!val) {
        snprintf(err, errlen, "%s: out of memory", w->name);
        return -1;
    }
    rc = bpf_map_get_next_key(w->fd, NULL, next);
    while (rc == 0) {
        if (bpf_map_lookup_elem(w->fd, next, val) == 0 && w->entry(w, next, val) < 0) {
            snprintf(err, errlen, "%s: out of memory", w->name);
            free(val);
            return -1;
        }
        memcpy(key, next, KEY_LEN);
        rc = bpf_map_get_next_key(w->fd, key, next);
    }
    free(val);
    if (rc != -ENOENT) {
        snprintf(err, errlen, "%s: reading keys: %s", w->name, strerror(-rc));
        return -1;
    }
    return 0;
}

static int walk_map(struct walk *w, char *err, size_t errlen)
{
    uint32_t chunk = 1024, count;
    uint64_t in_tok[8], out_tok[8]; /* opaque position; a u32 for hash maps */
    bool first = true;
    uint8_t *keys = NULL, *vals = NULL;
    int rc = -1;

    for (;;) {
        LIBBPF_OPTS(bpf_map_batch_opts, opts);
        int e;

        if (!keys) {
            keys = malloc((size_t)chunk * KEY_LEN);
            vals = malloc((size_t)chunk * w->vstride);
            if (!keys || !vals) {
                snprintf(err, errlen, "%s: out of memory", w->name);
                goto out;
            }
        }
        count = chunk;
        e = bpf_map_lookup_batch(w->fd, first ? NULL : in_tok, out_tok, keys, vals, &count, &opts);
        e = e < 0 ? -e : 0;
        if (e && e != ENOENT) {
            if (e == ENOSPC && chunk < (1u << 20)) {
                /* One hash bucket holds more than a chunk: take more. */
                chunk *= 2;
                free(keys);
                free(vals);
                keys = vals = NULL;
                continue;
            }
            if (first && (e == EINVAL || e == ENOTSUP || e == 524 /* ENOTSUPP */)) {
                rc = walk_keys(w, err, errlen);
                goto out;
            }
            snprintf(err, errlen, "%s: batch lookup: %s", w->name, strerror(e));
            goto out;
        }
        for (uint32_t i = 0; i < count; i++) {
            if (w->entry(w, keys + (size_t)i * KEY_LEN, vals + (size_t)i * w->vstride) < 0) {
                snprintf(err, errlen, "%s: out of memory", w->name);
                goto out;
            }
        }
        if (e == ENOENT)
            break;
        memcpy(in_tok, out_tok, sizeof(in_tok));
        first = false;
    }
    rc = 0;
out:
    free(keys);
    free(vals);
    return rc;
}

/* Check that fd is a map of the layout this code reads, and set up w. */
static int walk_open(struct walk *w, int fd, const char *name, uint32_t val_size, char *err, size_t errlen)
{
    struct bpf_map_info info;
    uint32_t len = sizeof(info);

    memset(&info, 0, sizeof(info));
    memset(w, 0, sizeof(*w));
    w->fd = fd;
    w->name = name;
    if (bpf_obj_get_info_by_fd(fd, &info, &len) != 0) {
        snprintf(err, errlen, "%s: not a BPF map: %s", name, strerror(errno));
        return -1;
    }
    if (info.key_size != KEY_LEN || info.value_size != val_size) {
        snprintf(err, errlen, "%s: key/value of %u/%u bytes, this sluice reads %u/%u (a map of another version)",
                 name, info.key_size, info.value_size, KEY_LEN, val_size);
        return -1;
    }
    w->percpu = info.type == BPF_MAP_TYPE_PERCPU_HASH || info.type == BPF_MAP_TYPE_LRU_PERCPU_HASH;
    w->ncpus = 1;
    w->vstride = val_size;
    w->cpu_stride = val_size;
    if (w->percpu) {
        w->ncpus = libbpf_num_possible_cpus();
        if (w->ncpus <= 0) {
            snprintf(err, errlen, "cannot count the possible CPUs: %s", strerror(-w->ncpus));
            return -1;
        }
        /* Per-CPU values come out 8-byte aligned, one per possible CPU. */
        w->cpu_stride = ((size_t)val_size + 7) & ~(size_t)7;
        w->vstride = w->cpu_stride * (size_t)w->ncpus;
    }
    return 0;
}

int l4_count_conns(int fd_conn, int fd_conn_shared, int fd_nat, uint64_t now_ns, struct l4_conn_count *by_real,
                   size_t n_reals, char *err, size_t errlen)
{
    struct conn_set dr = { 0 }, nat = { 0 };
    uint32_t now = (uint32_t)(now_ns / NSEC_PER_SEC);
    const struct {
        int fd;
        const char *name;
        bool nat;
    } maps[] = {
        { fd_conn, "conn", false },
        { fd_conn_shared, "conn_shared", false },
        { fd_nat, "nat", true },
    };
    int rc = -1;

    if (n_reals)
        memset(by_real, 0, n_reals * sizeof(*by_real));
    for (size_t i = 0; i < sizeof(maps) / sizeof(maps[0]); i++) {
        struct walk w;

        if (maps[i].fd < 0)
            continue;
        if (walk_open(&w, maps[i].fd, maps[i].name, maps[i].nat ? sizeof(struct l4_nat) : sizeof(struct l4_conn),
                      err, errlen) < 0)
            goto out;
        w.entry = maps[i].nat ? nat_entry : conn_entry;
        w.set = maps[i].nat ? &nat : &dr;
        if (walk_map(&w, err, errlen) < 0)
            goto out;
    }
    set_tally(&dr, now, by_real, n_reals);
    set_tally(&nat, now, by_real, n_reals);
    rc = 0;
out:
    free(dr.slot);
    free(nat.slot);
    return rc;
}

uint64_t l4_conns_now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * NSEC_PER_SEC + (uint64_t)ts.tv_nsec;
}
