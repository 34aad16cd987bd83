/* Services whose reals come from a registry service (`discovery:` instead
 * of `reals:`; docs/l4.md, "Discovery").
 *
 * Two halves:
 *   - l4_discovery_reals.c, pure (no I/O, unit-tested): which of the
 *     registry's members a service can use as reals (its mode's rules,
 *     the ones l4_conf applies to the file's reals), and the merge of that
 *     list into the service's current reals;
 *   - l4_discovery.c: one subscription per discovered service (the core's
 *     libsluice glue, core/discovery.h), woken on the event loop when the
 *     list changes, and every change applied through
 *     l4d_replace_services(), the admin API's own path, so the maps, the
 *     Maglev tables and the health-check targets stay consistent and flows
 *     on reals that stay keep their real.
 */
#ifndef SLUICE_L4_L4_DISCOVERY_H
#define SLUICE_L4_L4_DISCOVERY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "l4/l4_conf.h"

/* ---- pure: members into reals (l4_discovery_reals.c) ---- */

/* A member of the registry's list: address, port and weight (1..10000). */
struct l4_disc_member {
    struct sockaddr_storage addr;
    socklen_t addrlen;
    uint32_t weight;
};

/* Why members were left out. */
struct l4_disc_skips {
    size_t family;     /* not of a family the mode can reach (see below) */
    size_t port;       /* DR, TUN: another port than the VIP's */
    size_t duplicate;  /* the same address and port as an earlier member */
    size_t invalid;    /* no IPv4/IPv6 address, or port 0 */
};

/* The reals service svc takes from members m[0..n), in member order, into
 * out (room for n). The rules are the file's (l4_conf.c):
 *   - DR, NAT, FullNAT: only members of the VIP's address family; TUN:
 *     either family, if l4 has the tun source prefix of the member's;
 *   - DR and TUN do not rewrite the port: a member must be on the VIP's
 *     port (others are skipped); NAT and FullNAT send to the member's port;
 *   - the weight is the member's; a second member at the same address and
 *     port is skipped.
 * Each real's text is its canonical "IP:PORT"; line 0. Returns how many
 * were written; skips (may be NULL) counts the others. */
size_t l4_disc_reals_of(const struct cfg_l4 *l4, const struct cfg_l4_service *svc, const struct l4_disc_member *m,
                        size_t n, struct cfg_l4_real *out, struct l4_disc_skips *skips);

struct l4_disc_change {
    size_t added, removed, reweighted;
};

/* The service's next reals from its current ones cur[0..n_cur) and the
 * wanted ones want[0..n_want), into next (room for n_want): a current real
 * that is wanted keeps its place (with the wanted weight), the others go,
 * and wanted reals that are new follow in wanted order. Returns the count
 * (n_want); ch says what changed (all zero: next equals cur). */
size_t l4_disc_merge(const struct cfg_l4_real *cur, size_t n_cur, const struct cfg_l4_real *want, size_t n_want,
                     struct cfg_l4_real *next, struct l4_disc_change *ch);

/* ---- the subscriptions (l4_discovery.c) ---- */

struct l4d;
struct l4_discovery;

/* A service's discovery status for the API and `sluice l4 list`. */
struct l4_disc_status {
    const char *registry_service;  /* discovery.service */
    const char *source;            /* none, registry, cache, failover */
    uint64_t version;              /* of the list last applied */
    uint64_t registry_index;       /* the service's modify_index at the registry */
    uint32_t members;              /* in the list last read */
    uint32_t used;                 /* of them, reals of this service */
    bool fail_open;                /* the registry's protection: failing open */
    uint64_t updates;              /* changes applied to the reals */
    uint64_t age_ms;               /* since the list last came from a registry (0: never) */
    char last_error[160];          /* the last change that could not be applied, "" */
};

/* Bring the subscriptions in line with d's services (a subscription per
 * service with discovery, one kept while its service and discovery block
 * stay) and apply the lists they have. Called after every change of the
 * list of services (start, API, reload). 0, or -1 with err (out of
 * memory, or a discovery block the client library refuses). */
int l4_discovery_sync(struct l4d *d, char *err, size_t errlen);

/* For a reload or an API change that replaces the services: the reals of
 * every service in next[0..n) that has discovery become the reals the
 * running service of the same PROTO:VIP has now (the file lists none),
 * so the change keeps them and their flows. 0, or -1 (out of memory). */
int l4_discovery_carry_reals(const struct l4d *d, struct cfg_l4_service *next, size_t n);

/* The status of service s (index into d's services), or NULL when it has
 * no discovery. Valid until the next change. */
const struct l4_disc_status *l4_discovery_status(const struct l4d *d, size_t s);

/* Stop every subscription (exit). */
void l4_discovery_free(struct l4d *d);

#endif
