/* The master's sources of a dynamic pool's backends (proxy/pool_dyn_conf.h):
 * host names resolved and re-resolved by their TTL, and backends added or
 * removed through the admin API. Outlives configuration generations (like
 * core/discovery.h's set): a reload keeps the last resolved addresses and,
 * for a pool whose backends the file did not change, the API's changes.
 *
 * The members of a dynamic pool at any moment are: each listed address;
 * every address of each listed name (each with the entry's weight and
 * port); the addresses added through the API; minus those removed through
 * the API. proxy_discovery.c seats them in the pool's slots, where workers
 * pick them up within a tick, exactly as a discovered pool's members: an
 * address that stays keeps its slot and its connections; one that leaves
 * drains.
 *
 * Resolving: A and AAAA queries over UDP from the master's event loop
 * (lib/dns_client.h; each try from a socket of its own, connected to the
 * resolver), to the pool's resolve.resolvers or the nameservers
 * of /etc/resolv.conf (read at each configuration), one after the other on
 * timeouts and errors. A name is asked again after its answer's TTL,
 * bounded by resolve.min_ttl and max_ttl. Only an answer with at least one
 * address replaces a name's set: a timeout, SERVFAIL, NXDOMAIN or an empty
 * answer keeps the last good set (logged once per failure streak, counted,
 * asked again after max(min_ttl, 1s)). Names are used as written (no
 * search domains).
 */
#ifndef SLUICE_PROXY_POOL_DYN_H
#define SLUICE_PROXY_POOL_DYN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "core/evloop.h"
#include "lib/addr.h"
#include "lib/strbuf.h"
#include "proxy/proxy_conf.h"
#include "proxy/slots.h"

struct pool_dyn;

struct pool_dyn *pool_dyn_new(struct ev_loop *loop);
void pool_dyn_free(struct pool_dyn *d);

/* Called on the loop after a name's addresses changed. */
void pool_dyn_set_notify(struct pool_dyn *d, void (*fn)(void *arg), void *arg);

/* A configuration about to run: follow its names (queries go out at once
 * for new ones), and drop the API's changes of pools whose backends the
 * file changed (logged). What pc no longer names stays until
 * pool_dyn_retain. */
void pool_dyn_configure(struct pool_dyn *d, const struct proxy_conf *pc);
/* pc is the configuration that runs now: forget names and pools it does not have. */
void pool_dyn_retain(struct pool_dyn *d, const struct proxy_conf *pc);

/* Bumps at every change of any pool's members. */
uint64_t pool_dyn_version(const struct pool_dyn *d);

/* Pool cp's members now (see above), at most cap into out; returns how
 * many there are (may exceed cap). */
size_t pool_dyn_members(const struct pool_dyn *d, const struct cfg_pool *cp, struct slot_member *out, size_t cap);

/* The admin API's changes. 0, or an HTTP status with the reason in err:
 * 409 for a pool with a fixed list, a full pool, an address already a
 * backend; 404 for one that is not (remove). */
int pool_dyn_add(struct pool_dyn *d, const struct cfg_pool *cp, const struct sl_addr *a, uint32_t weight, char *err,
                 size_t errlen);
int pool_dyn_remove(struct pool_dyn *d, const struct cfg_pool *cp, const struct sl_addr *a, char *err,
                    size_t errlen);

/* sluice_backend_name_* families (/metrics). */
void pool_dyn_collect(void *arg, struct strbuf *out);

/* The names and their addresses, for /api/status ("backend_names"). */
json_t *pool_dyn_status(const struct pool_dyn *d);

#endif
