/* See tables.h: the values the forwarder's control maps hold, built from
 * the configuration. Nothing here touches a map (tables_maps.c does), so
 * this part is unit-tested without a kernel (tests/unit/test_l4_tables.c). */
#include "l4/tables.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/maglev.h"

void l4_addr16(__be32 out[4], const struct sockaddr *sa)
{
    memset(out, 0, 16);
    if (sa->sa_family == AF_INET) {
        out[2] = htonl(0xffff);
        memcpy(&out[3], &((const struct sockaddr_in *)sa)->sin_addr, 4);
    } else if (sa->sa_family == AF_INET6) {
        memcpy(out, &((const struct sockaddr_in6 *)sa)->sin6_addr, 16);
    }
}

const char *l4_addr16_string(const __be32 a[4], char *buf, size_t cap)
{
    if (a[0] == 0 && a[1] == 0 && a[2] == htonl(0xffff))
        return inet_ntop(AF_INET, &a[3], buf, (socklen_t)cap);
    return inet_ntop(AF_INET6, a, buf, (socklen_t)cap);
}

void l4_vip_key_of(struct l4_vip_key *k, const struct cfg_l4_service *s)
{
    memset(k, 0, sizeof *k);
    l4_addr16(k->addr, (const struct sockaddr *)&s->vip.ss);
    k->port = htons(addr_port(&s->vip));
    k->proto = s->proto == L4_PROTO_UDP ? IPPROTO_UDP : IPPROTO_TCP;
}

void l4_icmp_key_of(struct l4_vip_key *k, const struct cfg_l4_service *s)
{
    memset(k, 0, sizeof *k);
    l4_addr16(k->addr, (const struct sockaddr *)&s->vip.ss);
    k->proto = s->vip.ss.ss_family == AF_INET ? IPPROTO_ICMP : IPPROTO_ICMPV6;
}

void l4_config_of(struct l4_cfg *c, const struct cfg_l4 *l4, const uint8_t src_mac[6], uint32_t tx_ifindex,
                  uint32_t maglev_m, uint32_t maglev_tables)
{
    memset(c, 0, sizeof *c);
    memcpy(c->src_mac, src_mac, 6);
    /* Replies of NAT and FullNAT flows are looked up only while such a
     * service exists: plain traffic through the interface skips it. */
    for (size_t s = 0; s < l4->n_services; s++)
        if (l4->services[s].mode == L4_FWD_NAT || l4->services[s].mode == L4_FWD_FULLNAT)
            c->flags |= L4_CFG_F_NAT_REPLIES;
    /* l4.sync: new NAT/FullNAT flows are announced to user space. */
    if (l4->sync.enabled)
        c->flags |= L4_CFG_F_SYNC;
    c->new_flow_cap = l4->syn_cap;
    c->tun_mtu = (__u16)l4->tun_mtu;
    c->maglev_m = maglev_m;
    c->tx_ifindex = tx_ifindex;
    c->gue_port = htons((uint16_t)l4->gue_port);
    c->maglev_tables = maglev_tables;
    if (l4->tun_src4.family) {
        memcpy(&c->tun_src4, l4->tun_src4.addr, 4);
        c->tun_src4_plen = l4->tun_src4.plen;
    }
    if (l4->tun_src6.family) {
        memcpy(c->tun_src6, l4->tun_src6.addr, 16);
        c->tun_src6_plen = l4->tun_src6.plen;
    }
}

void l4_real_of(struct l4_real *r, const struct sockaddr *addr, const uint8_t mac[6], bool active, bool nat,
                uint16_t owner)
{
    memset(r, 0, sizeof *r);
    l4_addr16(r->addr, addr);
    /* NAT/FullNAT rewrite the destination port to the real's; DR and TUN
     * leave it alone (0). */
    if (nat)
        r->port = addr->sa_family == AF_INET6 ? ((const struct sockaddr_in6 *)addr)->sin6_port
                                              : ((const struct sockaddr_in *)addr)->sin_port;
    if (mac)
        memcpy(r->mac, mac, 6);
    r->flags = (__u16)((active ? L4_REAL_F_ACTIVE : 0) | (addr->sa_family == AF_INET6 ? L4_REAL_F_V6 : 0));
    r->owner = owner;
}

int l4_nat_pool_of(struct l4_nat_pool *p, const struct cfg_l4_service *s, char *err, size_t errlen)
{
    memset(p, 0, sizeof *p);
    if (s->mode == L4_FWD_FULLNAT) {
        if (s->n_local_addrs > L4_POOL_ADDRS) {
            snprintf(err, errlen, "service %s: %zu local addresses, the forwarder takes at most %d", s->vip.text,
                     s->n_local_addrs, L4_POOL_ADDRS);
            return -1;
        }
        for (size_t i = 0; i < s->n_local_addrs; i++)
            l4_addr16(p->addr[i], (const struct sockaddr *)&s->local_addrs[i].ss);
        p->naddrs = (__u32)s->n_local_addrs;
        /* port_min/max 0: the data plane's default, 1024..65535. */
    }
    /* Other modes: an empty pool (naddrs 0), so a stale one from an
     * earlier run with another service at this index is not used. */
    return 0;
}

uint16_t l4_service_flags(const struct cfg_l4_service *svc)
{
    uint16_t f = l4_scheduler_flags(svc->scheduler);
    if (svc->mode == L4_FWD_TUN && svc->gue)
        f |= L4_VIP_F_GUE;
    return f;
}

uint16_t l4_scheduler_flags(enum l4_scheduler s)
{
    switch (s) {
    case L4_SCHED_SOURCE_HASH: return L4_VIP_F_SRC_HASH;
    case L4_SCHED_WRR:
    case L4_SCHED_RR: return L4_VIP_F_RR;
    default: return 0;
    }
}

int l4_maglev_slots(__u32 *vals, uint32_t m, const struct cfg_l4_service *s, const uint32_t *weights,
                    const uint32_t *indexes, uint64_t seed, char *err, size_t errlen)
{
    int32_t *t = malloc((size_t)m * sizeof *t);
    const char **keys = calloc(s->n_reals ? s->n_reals : 1, sizeof *keys);
    int rc = -1;
    if (!t || !keys) {
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < s->n_reals; i++)
        keys[i] = s->reals[i].addr.text;
    if (maglev_build(t, m, keys, weights, s->n_reals, seed) < 0 && errno != ENOENT) {
        snprintf(err, errlen, "maglev build: %s", strerror(errno));
        goto out;
    }
    /* ENOENT (every weight 0) leaves -1 everywhere: slots of 0, so the
     * forwarder drops new flows (drop_no_real) rather than guess. */
    for (uint32_t i = 0; i < m; i++)
        vals[i] = t[i] < 0 ? 0 : indexes[t[i]];
    rc = 0;
out:
    free(t);
    free(keys);
    return rc;
}

void l4_vip_meta_of(struct l4_vip_meta *meta, uint32_t svc, uint32_t table, enum l4_fwd_mode mode, uint16_t flags)
{
    memset(meta, 0, sizeof *meta);
    meta->svc = svc;
    meta->table = table;
    /* enum l4_fwd_mode follows enum l4_mode's order (dr, tun, nat, fullnat). */
    meta->mode = (__u8)mode;
    meta->flags = flags;
}

bool l4_vip_key_kept(const struct l4_vip_key *keep, size_t n, const struct l4_vip_key *k)
{
    for (size_t i = 0; i < n; i++)
        if (memcmp(&keep[i], k, sizeof *k) == 0)
            return true;
    return false;
}
