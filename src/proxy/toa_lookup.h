/* Who is the real client of an accepted socket? The real-server side of
 * FullNAT's TOA (docs/l4-dataplane.md): src/l4/bpf/toa.bpf.c records, for
 * every SYN carrying the client's address in a TOA option, the connection's
 * 4-tuple in the pinned map `sluice_toa`. These functions look a socket up
 * there. They use the bpf(2) system call directly (no libbpf), so the L7
 * proxy can use them for X-Forwarded-For and its access log without linking
 * libbpf. Reading the map needs CAP_BPF (or root), or a pin whose mode and
 * the kernel's unprivileged-BPF setting allow it.
 */
#ifndef SLUICE_PROXY_TOA_LOOKUP_H
#define SLUICE_PROXY_TOA_LOOKUP_H

#include <sys/socket.h>

/* Where toa.bpf.c's map is pinned when loaded with libbpf's default pin
 * root (LIBBPF_PIN_BY_NAME). */
#define SLUICE_TOA_PIN_DEFAULT "/sys/fs/bpf/sluice_toa"

/* Open the pinned map (NULL: the default path). Returns a file descriptor
 * or -errno. */
int sluice_toa_open(const char *pin_path);

/* Look up a connection by its addresses as the accepting socket sees them
 * (local = getsockname(), peer = getpeername(); AF_INET, or AF_INET6
 * including v4-mapped). On success fills *client with the client's
 * address and port (AF_INET for an IPv4 client) and returns 0; -ENOENT if
 * the connection's SYN carried no TOA option; -EINVAL for other families;
 * or another -errno. */
int sluice_toa_lookup(int map_fd, const struct sockaddr *local, const struct sockaddr *peer,
                      struct sockaddr_storage *client);

/* The same for an accepted socket. */
int sluice_toa_lookup_sock(int map_fd, int sock, struct sockaddr_storage *client);

#endif
