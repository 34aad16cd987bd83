/* Connection counts per real, for `sluice l4 list` (ipvsadm's ActiveConn
 * and InActConn columns), read from the forwarder's pinned state maps.
 *
 * Definition. A connection is one flow entry still in a table:
 *   - DR/TUN: a key of `conn` (per-CPU LRU) or `conn_shared` (its shared
 *     fallback). A flow present in both, or on several CPUs, is one
 *     connection; its freshest copy (largest `seen`) gives its real and
 *     state, and copies with the same second are merged (closing if any
 *     says so).
 *   - NAT/FullNAT: an OUT (NAT) or LOCAL (FullNAT) entry of `nat`: the one
 *     that carries the flow's clock and TCP state, and the real. IN entries
 *     are not counted (each flow has exactly one of each kind).
 * Its age is now - last seen, in whole seconds. Then
 *   active:   age < L4_CONN_ACTIVE_SECS (60), and for TCP not closing
 *             (no FIN or RST seen);
 *   inactive: any other connection with age < L4_CONN_INACTIVE_SECS (300):
 *             idle ones, and TCP ones that are closing.
 * Older entries are not counted at all (the LRU keeps stale entries until
 * it needs the room; they are not connections any more). Services marked
 * stateless (L4_VIP_F_NO_CT) keep no entries and count nothing; neither
 * does a flow the SYN guard kept out of the table.
 *
 * Cost: one pass over each map (batch lookups where the kernel has them,
 * else key by key) and a hash set of the DR/TUN flows in user space for
 * the duplicates: some tens of MB and well under a second for full tables.
 */
#ifndef SLUICE_L4_CONNS_H
#define SLUICE_L4_CONNS_H

#include <stddef.h>
#include <stdint.h>

#define L4_CONN_ACTIVE_SECS   60
#define L4_CONN_INACTIVE_SECS 300

struct l4_conn_count {
    uint64_t active, inactive;
};

/* Count the connections of every real index below n_reals into
 * by_real[real] (zeroed first; entries of larger indices are skipped).
 * fd_conn, fd_conn_shared: the DR/TUN tables (pinned as "conn" and
 * "conn_shared"); fd_nat: the NAT state (pinned as "nat"); any of them may
 * be -1 to leave that map out. now_ns: CLOCK_MONOTONIC in ns (the clock of
 * bpf_ktime_get_coarse_ns(); l4_conns_now_ns() reads it). Returns 0, or -1
 * with a reason in err (a map of another layout, a failed lookup, no
 * memory). */
int l4_count_conns(int fd_conn, int fd_conn_shared, int fd_nat, uint64_t now_ns, struct l4_conn_count *by_real,
                   size_t n_reals, char *err, size_t errlen);

/* CLOCK_MONOTONIC now, in ns. */
uint64_t l4_conns_now_ns(void);

#endif
