/* The forwarder's control maps (vips, reals, maglev, nat_pools, l4_config):
 * the values they hold, built from the configuration and the current
 * weights (tables.c, no map I/O: unit-tested without a kernel), and
 * writing them (tables_maps.c). Every function that can fail returns 0 or
 * -1 with a reason in err; none of them logs. */
#ifndef SLUICE_L4_TABLES_H
#define SLUICE_L4_TABLES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "l4/l4_conf.h"
#include "l4/bpf/forwarder_abi.h"

/* ---- values (tables.c) ---- */

/* Addresses in the maps' 16-byte form (IPv4 v4-mapped). */
void l4_addr16(__be32 out[4], const struct sockaddr *sa);
/* The reverse, into text without the port ("10.0.0.1", "2001:db8::1"). */
const char *l4_addr16_string(const __be32 a[4], char *buf, size_t cap);

void l4_vip_key_of(struct l4_vip_key *k, const struct cfg_l4_service *s);
/* The {VIP, 0, ICMP or ICMPv6} entry that makes the VIP answer pings. */
void l4_icmp_key_of(struct l4_vip_key *k, const struct cfg_l4_service *s);

/* l4_config: source MAC, egress interface (0: the ingress one), SYN cap,
 * TUN prefixes and MTU, GUE port, M and table count, and
 * L4_CFG_F_NAT_REPLIES while any service is NAT or FullNAT. */
void l4_config_of(struct l4_cfg *c, const struct cfg_l4 *l4, const uint8_t src_mac[6], uint32_t tx_ifindex,
                  uint32_t maglev_m, uint32_t maglev_tables);
/* reals[index] = {addr, mac, flags, port, owner}; active sets L4_REAL_F_ACTIVE;
 * nat (the real belongs to a NAT or FullNAT service) sets port to addr's;
 * mac NULL leaves it zero. */
void l4_real_of(struct l4_real *r, const struct sockaddr *addr, const uint8_t mac[6], bool active, bool nat,
                uint16_t owner);
/* nat_pools[svc] from a FullNAT service's local_addresses (ports: the data
 * plane's default range); an empty pool for other modes. -1 if there are
 * more addresses than a pool holds. */
int l4_nat_pool_of(struct l4_nat_pool *p, const struct cfg_l4_service *s, char *err, size_t errlen);
/* vip_meta of a service: its slot, live table id, mode and flags. */
void l4_vip_meta_of(struct l4_vip_meta *meta, uint32_t svc, uint32_t table, enum l4_fwd_mode mode, uint16_t flags);

/* Service s's weighted Maglev table (seed, keys = the reals' addresses)
 * from weights[], as m slots: slot i gets indexes[the real's position],
 * or 0 where no real has weight (every weight 0: all slots 0). */
int l4_maglev_slots(__u32 *vals, uint32_t m, const struct cfg_l4_service *s, const uint32_t *weights,
                    const uint32_t *indexes, uint64_t seed, char *err, size_t errlen);

/* vip_meta.flags for a scheduler (L4_VIP_F_SRC_HASH, L4_VIP_F_RR or 0). */
uint16_t l4_scheduler_flags(enum l4_scheduler s);
/* All of a service's vip_meta.flags: the scheduler's, and GUE for TUN. */
uint16_t l4_service_flags(const struct cfg_l4_service *svc);

/* Is k one of keep[0..n)? (l4_prune_vips() deletes the others.) */
bool l4_vip_key_kept(const struct l4_vip_key *keep, size_t n, const struct l4_vip_key *k);

/* ---- writing the maps (tables_maps.c) ---- */

/* The values above, written into their maps. */
int l4_write_config(int fd_cfg, const struct cfg_l4 *l4, const uint8_t src_mac[6], uint32_t tx_ifindex,
                    uint32_t maglev_m, uint32_t maglev_tables, char *err, size_t errlen);
int l4_write_real(int fd_reals, uint32_t index, const struct sockaddr *addr, const uint8_t mac[6], bool active,
                  bool nat, uint16_t owner, char *err, size_t errlen);
int l4_write_nat_pool(int fd_pools, uint32_t svc, const struct cfg_l4_service *s, char *err, size_t errlen);
int l4_read_real(int fd_reals, uint32_t index, struct l4_real *out);

/* Build service s's Maglev table (l4_maglev_slots()) and write it into
 * table id `table`: slots [table * m, (table + 1) * m). */
int l4_write_maglev(int fd_maglev, uint32_t m, uint32_t table, const struct cfg_l4_service *s,
                    const uint32_t *weights, const uint32_t *indexes, uint64_t seed, char *err, size_t errlen);

/* Point the VIP at its table (and create the entry): the atomic flip. */
int l4_write_vip(int fd_vips, const struct l4_vip_key *k, uint32_t svc, uint32_t table, enum l4_fwd_mode mode,
                 uint16_t flags, char *err, size_t errlen);

/* Delete every vips entry that is not one of keep[0..n). */
int l4_prune_vips(int fd_vips, const struct l4_vip_key *keep, size_t n, char *err, size_t errlen);

#endif
