/* Writing the forwarder's control maps (vips, reals, maglev, l4_config)
 * from the configuration and the current weights. Every function returns
 * 0 or -1 with a reason in err; none of them logs. */
#ifndef SLUICE_L4_TABLES_H
#define SLUICE_L4_TABLES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "l4/l4_conf.h"
#include "l4/bpf/l4_maps.h"

/* Addresses in the maps' 16-byte form (IPv4 v4-mapped). */
void l4_addr16(__be32 out[4], const struct sockaddr *sa);
/* The reverse, into text without the port ("10.0.0.1", "2001:db8::1"). */
const char *l4_addr16_string(const __be32 a[4], char *buf, size_t cap);

void l4_vip_key_of(struct l4_vip_key *k, const struct cfg_l4_service *s);
/* The {VIP, 0, ICMP or ICMPv6} entry that makes the VIP answer pings. */
void l4_icmp_key_of(struct l4_vip_key *k, const struct cfg_l4_service *s);

/* l4_config: source MAC, egress interface (0: the ingress one), SYN cap,
 * TUN prefixes and MTU, M and table count, and L4_CFG_F_NAT_REPLIES
 * while any service is NAT or FullNAT. */
int l4_write_config(int fd_cfg, const struct cfg_l4 *l4, const uint8_t src_mac[6], uint32_t tx_ifindex,
                    uint32_t maglev_m, uint32_t maglev_tables, char *err, size_t errlen);

/* reals[index] = {addr, mac, flags, port, owner}; active sets L4_REAL_F_ACTIVE;
 * nat (the real belongs to a NAT or FullNAT service) sets port to addr's. */
int l4_write_real(int fd_reals, uint32_t index, const struct sockaddr *addr, const uint8_t mac[6], bool active,
                  bool nat, uint16_t owner, char *err, size_t errlen);
/* nat_pools[svc] from a FullNAT service's local_addresses and port range
 * (an empty pool for other modes). */
int l4_write_nat_pool(int fd_pools, uint32_t svc, const struct cfg_l4_service *s, char *err, size_t errlen);
int l4_read_real(int fd_reals, uint32_t index, struct l4_real *out);

/* Build service s's weighted Maglev table (seed, keys = the reals'
 * addresses) from weights[] and write it into table id `table`: slot i
 * gets indexes[the real's position], or 0 where no real has weight.
 * m is the table size. */
int l4_write_maglev(int fd_maglev, uint32_t m, uint32_t table, const struct cfg_l4_service *s,
                    const uint32_t *weights, const uint32_t *indexes, uint64_t seed, char *err, size_t errlen);

/* Point the VIP at its table (and create the entry): the atomic flip. */
int l4_write_vip(int fd_vips, const struct l4_vip_key *k, uint32_t svc, uint32_t table, enum l4_fwd_mode mode,
                 uint16_t flags, char *err, size_t errlen);
/* vip_meta.flags for a scheduler (L4_VIP_F_SRC_HASH, L4_VIP_F_RR or 0). */
uint16_t l4_scheduler_flags(enum l4_scheduler s);
/* All of a service's vip_meta.flags: the scheduler's, and GUE for TUN. */
uint16_t l4_service_flags(const struct cfg_l4_service *svc);

/* Delete every vips entry that is not one of keep[0..n). */
int l4_prune_vips(int fd_vips, const struct l4_vip_key *keep, size_t n, char *err, size_t errlen);

#endif
