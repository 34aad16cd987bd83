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

#include "core/discovery.h"
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

/* A discovered service's state, for the admin API and `sluice l4 list`. */
struct l4_disc_status {
    const struct cfg_discovery *conf;  /* the block it follows */
    struct discovery_status now;       /* the list's source, version, protection (core/discovery.h) */
    uint64_t applied_version;          /* the version its reals were last made from (0: none yet) */
    uint64_t changes;                  /* changes applied to its reals */
    size_t members;                    /* in the list last read */
    size_t used;                       /* of them, its reals */
    struct l4_disc_skips skipped;      /* the others, by reason */
    char last_error[600];              /* the last list that could not be applied ("" if none) */
};

/* Follow the registry service of every service that has discovery (one
 * subscription per service; one kept while its service and discovery
 * block stay, the others dropped) and apply the lists that changed.
 * Called after every change of the list of services: the API's, a
 * reload's. Never fails: a subscription that cannot start is logged and
 * shown in the service's status (last_error), and retried at the next
 * call. */
void l4_discovery_sync(struct l4d *d);

/* At start, before the first tables: follow every discovered service,
 * wait up to wait_ms for their lists (the registry's, or the cache's at
 * once), and make them the reals of d's services, so that the first
 * tables hold them (and a restart finds their indexes again in the
 * pinned maps). Needs the event loop (d->loop) for later changes. */
void l4_discovery_start(struct l4d *d, uint32_t wait_ms);

/* For a reload, which replaces the services with the file's (which lists
 * no reals for a discovered service): every service of next[0..n) that
 * follows the same registry service as the running service of the same
 * PROTO:VIP gets that service's reals, so they and their flows stay.
 * 0, or -1 (out of memory). */
int l4_discovery_carry_reals(const struct l4d *d, struct cfg_l4_service *next, size_t n);

/* The state of d's service s, or NULL when it has no discovery. */
const struct l4_disc_status *l4_discovery_status(struct l4d *d, size_t s);

/* Stop following (the clients' threads stop). At exit. */
void l4_discovery_free(struct l4d *d);

#endif
