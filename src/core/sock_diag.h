/* "Is there a TCP socket for this 4-tuple here?", asked of the kernel
 * through NETLINK_SOCK_DIAG (an exact lookup, not a dump). The HA probe's
 * attribution predicate for a proxy node: a probe SYN that the routers
 * sent to this node left a socket here (a half-open request socket while
 * the SYN-ACK is out, until the probe's RST), one sent elsewhere did not.
 * Request sockets (SYN-RECV) are found too: the kernel's exact lookup
 * searches the established hash, where they live. A listener is not: the
 * kernel answers with the listener of `local` when no socket has the
 * 4-tuple, and that answer means "not found".
 *
 * `local` is the address and port of this node's end (the VIP:port the
 * listener serves), `remote` the peer's (the probe source). Both
 * sockaddr_in or both sockaddr_in6. Blocking, bounded to 1 s. */
#ifndef SLUICE_CORE_SOCK_DIAG_H
#define SLUICE_CORE_SOCK_DIAG_H

#include <stddef.h>
#include <sys/socket.h>

/* 1 found (*state = the kernel's TCP state number, TCP_SYN_RECV...), 0 not
 * found, -1 error (err says why). state may be NULL. */
int sock_diag_tcp_find(const struct sockaddr *local, const struct sockaddr *remote, int *state, char *err,
                       size_t errlen);

#endif
