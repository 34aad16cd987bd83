/* "Is this address already served by another process?", asked before a
 * daemon binds a listener with SO_REUSEPORT.
 *
 * With SO_REUSEPORT (which every proxy worker's socket has) a second
 * instance of Sluice run by the same user binds the same address without
 * an error, and the kernel then splits new connections between the two:
 * half the clients reach a stale or different configuration, silently.
 * So once the daemon's own first socket for a new listener is bound (a
 * bind that fails says so itself: the other socket has no SO_REUSEPORT,
 * or belongs to another user), a probe socket without SO_REUSEPORT is
 * bound to the address (TCP with SO_REUSEADDR, so that connections in
 * TIME_WAIT do not count; UDP without, so that any bound socket does). If
 * that fails with EADDRINUSE, the listening sockets whose address clashes
 * (the same, or a wildcard on either side; same family and port) are
 * looked up in /proc/net and their owners in /proc/PID/fd. Sockets held by
 * this process or by its children (a proxy's draining workers after a
 * reload) do not count.
 */
#ifndef SLUICE_CORE_LISTEN_GUARD_H
#define SLUICE_CORE_LISTEN_GUARD_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "lib/addr.h"

/* 1: someone else serves addr (their pid in *owner, 0 when it could not
 * be found, e.g. another user's process), said in err ("127.0.0.1:80 is
 * already served by pid 1234 (sluice)"); 0: free, or only ours; -1: the
 * probe failed for another reason (err; the caller's own bind will say
 * more). udp: the listener is UDP, else TCP. */
int listen_guard_check(const struct sl_addr *addr, bool udp, pid_t *owner, char *err, size_t errlen);

/* Whether a socket bound to `local` (a local_address of /proc/net/tcp:
 * "0100007F:1F90", or 32 hex digits and the port for tcp6) shares addr's
 * port and clashes with its address: the same one, or a wildcard on
 * either side. Exposed for tests. */
bool listen_guard_clashes(const char *local, const struct sl_addr *addr);

#endif
