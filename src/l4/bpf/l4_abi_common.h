/* What every Sluice L4 map contract (forwarder_abi.h, toa_abi.h,
 * decap_abi.h) has in common: the integer types and the rules the structs
 * in them follow.
 *
 * Included by BPF code (types from vmlinux.h, which the .bpf.c includes
 * first) and by C in user space (types from <linux/types.h>).
 *
 * Layout: every struct in a contract is laid out by hand with explicit
 * padding fields. Map keys are hashed byte for byte, so a hole the
 * compiler inserted would make the kernel's and user space's keys differ.
 *
 * Addresses: one 16-byte form for both families. An IPv4 address is stored
 * v4-mapped (::ffff:a.b.c.d, RFC 4291 2.5.5.2), so a single map and a
 * single key serve IPv4 and IPv6 alike. Words are in network byte order,
 * as they sit in the packet.
 */
#ifndef SLUICE_L4_ABI_COMMON_H
#define SLUICE_L4_ABI_COMMON_H

#ifndef __bpf__
#include <linux/types.h>
#endif

#endif
