/* See tables.h: writing the forwarder's control maps. The values come from
 * the builders in tables.c; this file only moves them into the maps. */
#include "l4/tables.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <bpf/bpf.h>

int l4_write_config(int fd_cfg, const struct cfg_l4 *l4, const uint8_t src_mac[6], uint32_t tx_ifindex,
                    uint32_t maglev_m, uint32_t maglev_tables, char *err, size_t errlen)
{
    struct l4_cfg c;
    l4_config_of(&c, l4, src_mac, tx_ifindex, maglev_m, maglev_tables);
    __u32 key = 0;
    if (bpf_map_update_elem(fd_cfg, &key, &c, BPF_ANY) < 0) {
        snprintf(err, errlen, "l4_config map: %s", strerror(errno));
        return -1;
    }
    return 0;
}

int l4_write_real(int fd_reals, uint32_t index, const struct sockaddr *addr, const uint8_t mac[6], bool active,
                  bool nat, uint16_t owner, char *err, size_t errlen)
{
    struct l4_real r;
    l4_real_of(&r, addr, mac, active, nat, owner);
    if (bpf_map_update_elem(fd_reals, &index, &r, BPF_ANY) < 0) {
        snprintf(err, errlen, "reals map, index %u: %s", index, strerror(errno));
        return -1;
    }
    return 0;
}

int l4_write_nat_pool(int fd_pools, uint32_t svc, const struct cfg_l4_service *s, char *err, size_t errlen)
{
    struct l4_nat_pool p;
    if (l4_nat_pool_of(&p, s, err, errlen) < 0)
        return -1;
    if (bpf_map_update_elem(fd_pools, &svc, &p, BPF_ANY) < 0) {
        snprintf(err, errlen, "nat_pools map, service %u: %s", svc, strerror(errno));
        return -1;
    }
    return 0;
}

int l4_read_real(int fd_reals, uint32_t index, struct l4_real *out)
{
    return bpf_map_lookup_elem(fd_reals, &index, out);
}

/* Batch update when the kernel has it (one syscall per chunk instead of
 * one per slot: 65537 slots take ~1 ms instead of ~30). */
static int write_slots(int fd, uint32_t base, const __u32 *vals, uint32_t n)
{
    __u32 *keys = malloc((size_t)n * sizeof *keys);
    if (!keys)
        return -ENOMEM;
    for (uint32_t i = 0; i < n; i++)
        keys[i] = base + i;
    __u32 count = n;
    int rc = bpf_map_update_batch(fd, keys, vals, &count, NULL);
    if (rc < 0) {
        rc = 0;
        for (uint32_t i = 0; i < n && rc == 0; i++)
            rc = bpf_map_update_elem(fd, &keys[i], &vals[i], BPF_ANY) < 0 ? -errno : 0;
    }
    free(keys);
    return rc;
}

int l4_write_maglev(int fd_maglev, uint32_t m, uint32_t table, const struct cfg_l4_service *s,
                    const uint32_t *weights, const uint32_t *indexes, uint64_t seed, char *err, size_t errlen)
{
    __u32 *vals = malloc((size_t)m * sizeof *vals);
    int rc = -1;
    if (!vals) {
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    if (l4_maglev_slots(vals, m, s, weights, indexes, seed, err, errlen) < 0)
        goto out;
    int e = write_slots(fd_maglev, table * m, vals, m);
    if (e < 0) {
        snprintf(err, errlen, "maglev map, table %u: %s", table, strerror(-e));
        goto out;
    }
    rc = 0;
out:
    free(vals);
    return rc;
}

int l4_write_vip(int fd_vips, const struct l4_vip_key *k, uint32_t svc, uint32_t table, enum l4_fwd_mode mode,
                 uint16_t flags, char *err, size_t errlen)
{
    struct l4_vip_meta meta;
    l4_vip_meta_of(&meta, svc, table, mode, flags);
    if (bpf_map_update_elem(fd_vips, k, &meta, BPF_ANY) < 0) {
        snprintf(err, errlen, "vips map: %s", strerror(errno));
        return -1;
    }
    return 0;
}

int l4_prune_vips(int fd_vips, const struct l4_vip_key *keep, size_t n, char *err, size_t errlen)
{
    struct l4_vip_key cur, next;
    struct l4_vip_key *stale = NULL;
    size_t n_stale = 0;
    const void *prev = NULL;
    while (bpf_map_get_next_key(fd_vips, prev, &next) == 0) {
        if (!l4_vip_key_kept(keep, n, &next)) {
            struct l4_vip_key *grown = realloc(stale, (n_stale + 1) * sizeof *stale);
            if (!grown) {
                free(stale);
                snprintf(err, errlen, "out of memory");
                return -1;
            }
            stale = grown;
            stale[n_stale++] = next;
        }
        cur = next;
        prev = &cur;
    }
    /* Deleted after the walk: deleting while walking a hash map can
     * restart the walk. */
    for (size_t i = 0; i < n_stale; i++)
        bpf_map_delete_elem(fd_vips, &stale[i]);
    free(stale);
    return 0;
}
