/* Members of a registry service into the reals of an L4 service, and the
 * merge into its current reals: see l4_discovery.h. Pure code. */
#include "l4/l4_discovery.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

static uint16_t member_port(const struct l4_disc_member *m)
{
    if (m->addr.ss_family == AF_INET)
        return ntohs(((const struct sockaddr_in *)&m->addr)->sin_port);
    if (m->addr.ss_family == AF_INET6)
        return ntohs(((const struct sockaddr_in6 *)&m->addr)->sin6_port);
    return 0;
}

static bool member_valid(const struct l4_disc_member *m)
{
    if (m->addr.ss_family == AF_INET)
        return m->addrlen >= sizeof(struct sockaddr_in) && member_port(m);
    if (m->addr.ss_family == AF_INET6)
        return m->addrlen >= sizeof(struct sockaddr_in6) && member_port(m);
    return false;
}

/* Can the service's mode reach a real of this family? DR rewrites only the
 * MAC and NAT/FullNAT translate within one family; TUN wraps the packet in
 * an outer header of the real's family, whose source comes from the
 * matching l4.tun_source_prefix. */
static bool family_fits(const struct cfg_l4 *l4, const struct cfg_l4_service *svc, int family)
{
    if (svc->mode != L4_FWD_TUN)
        return family == svc->vip.ss.ss_family;
    return family == AF_INET ? l4->tun_src4.family != 0 : l4->tun_src6.family != 0;
}

/* The member as a real: its address and port, its text as addr_parse
 * writes it ("10.0.0.11:80", "[fd00::11]:80"). */
static void real_of_member(const struct l4_disc_member *m, uint16_t port, struct cfg_l4_real *out)
{
    memset(out, 0, sizeof *out);
    struct sl_addr *a = &out->addr;
    char ip[INET6_ADDRSTRLEN];
    if (m->addr.ss_family == AF_INET) {
        struct sockaddr_in *v4 = (struct sockaddr_in *)&a->ss;
        *v4 = *(const struct sockaddr_in *)&m->addr;
        v4->sin_port = htons(port);
        a->len = sizeof *v4;
        inet_ntop(AF_INET, &v4->sin_addr, ip, sizeof ip);
        snprintf(a->text, sizeof a->text, "%s:%u", ip, port);
    } else {
        struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&a->ss;
        *v6 = *(const struct sockaddr_in6 *)&m->addr;
        v6->sin6_port = htons(port);
        v6->sin6_flowinfo = 0;
        a->len = sizeof *v6;
        inet_ntop(AF_INET6, &v6->sin6_addr, ip, sizeof ip);
        snprintf(a->text, sizeof a->text, "[%s]:%u", ip, port);
    }
    out->weight = m->weight;
}

size_t l4_disc_reals_of(const struct cfg_l4 *l4, const struct cfg_l4_service *svc, const struct l4_disc_member *m,
                        size_t n, struct cfg_l4_real *out, struct l4_disc_skips *skips)
{
    struct l4_disc_skips none;
    if (!skips)
        skips = &none;
    memset(skips, 0, sizeof *skips);
    uint16_t vip_port = addr_port(&svc->vip);
    bool same_port = svc->mode == L4_FWD_DR || svc->mode == L4_FWD_TUN;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (!member_valid(&m[i])) {
            skips->invalid++;
            continue;
        }
        if (!family_fits(l4, svc, m[i].addr.ss_family)) {
            skips->family++;
            continue;
        }
        if (same_port && member_port(&m[i]) != vip_port) {
            skips->port++;
            continue;
        }
        struct cfg_l4_real r;
        real_of_member(&m[i], member_port(&m[i]), &r);
        bool dup = false;
        for (size_t j = 0; j < k && !dup; j++)
            dup = addr_equal(&out[j].addr, &r.addr);
        if (dup) {
            skips->duplicate++;
            continue;
        }
        out[k++] = r;
    }
    return k;
}

static int find_addr(const struct cfg_l4_real *v, size_t n, const struct sl_addr *a)
{
    for (size_t i = 0; i < n; i++)
        if (addr_equal(&v[i].addr, a))
            return (int)i;
    return -1;
}

size_t l4_disc_merge(const struct cfg_l4_real *cur, size_t n_cur, const struct cfg_l4_real *want, size_t n_want,
                     struct cfg_l4_real *next, struct l4_disc_change *ch)
{
    memset(ch, 0, sizeof *ch);
    size_t k = 0;
    /* Reals that stay, in their current order: the list (and what the
     * admin API shows) moves only where something changed. */
    for (size_t i = 0; i < n_cur; i++) {
        int w = find_addr(want, n_want, &cur[i].addr);
        if (w < 0) {
            ch->removed++;
            continue;
        }
        next[k] = cur[i];
        if (next[k].weight != want[w].weight) {
            next[k].weight = want[w].weight;
            ch->reweighted++;
        }
        k++;
    }
    for (size_t i = 0; i < n_want; i++) {
        if (find_addr(cur, n_cur, &want[i].addr) >= 0)
            continue;
        next[k++] = want[i];
        ch->added++;
    }
    return k;
}
