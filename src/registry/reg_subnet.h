/* Where a caller is: a table of client subnets (IPv4 and IPv6 prefixes) to
 * a datacenter and region (struct reg_loc), looked up by longest-prefix
 * match for every DNS query (its source address, or the address of its
 * EDNS Client Subnet option) and for API requests.
 *
 * Prefixes are added, then compiled by reg_subnets_build() into sorted,
 * disjoint address ranges, each carrying the most specific prefix that
 * covers it; a lookup is one binary search over those ranges and never
 * allocates. Lookups see the table as of the last build, so a reload can
 * build a new table and swap the pointer.
 *
 * The scope a lookup returns is for RFC 7871: the shortest prefix length
 * of the looked-up address over which the answer is the same (the
 * matching prefix's length, or longer when a more specific prefix sits
 * inside it; for an address no prefix covers, the block of uncovered
 * space around it). A DNS answer that depends on the location carries it
 * as its SCOPE PREFIX-LENGTH.
 */
#ifndef SLUICE_REGISTRY_REG_SUBNET_H
#define SLUICE_REGISTRY_REG_SUBNET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "registry/reg_model.h"

struct reg_subnets;

/* An empty table; NULL when out of memory. */
struct reg_subnets *reg_subnets_new(void);
void reg_subnets_free(struct reg_subnets *t);

/* Add "10.1.0.0/16", "2001:db8::/32" or a single address ("10.1.2.3" is
 * /32, "::1" /128) mapped to loc. The host bits must be zero. Returns 0,
 * or -1 with a reason (syntax, host bits, out of memory). A prefix given
 * twice is reported by reg_subnets_build(). */
int reg_subnets_add(struct reg_subnets *t, const char *cidr, struct reg_loc loc, char *err, size_t errlen);

/* Compile what was added for lookups. 0, or -1 with a reason (a prefix
 * given twice, out of memory; the previous build then stays in use). */
int reg_subnets_build(struct reg_subnets *t, char *err, size_t errlen);

/* Prefixes added (IPv4 and IPv6). */
size_t reg_subnets_count(const struct reg_subnets *t);

/* Longest-prefix match. true with *loc when a prefix covers the address;
 * false with *loc zeroed (unknown location) when none does. *scope (may be
 * NULL) gets the RFC 7871 scope described above. An IPv4-mapped IPv6
 * address (::ffff:a.b.c.d) is looked up as IPv4, with an IPv4 scope. */
bool reg_subnets_lookup4(const struct reg_subnets *t, const uint8_t addr[4], struct reg_loc *loc, uint8_t *scope);
bool reg_subnets_lookup6(const struct reg_subnets *t, const uint8_t addr[16], struct reg_loc *loc, uint8_t *scope);
/* The same for an AF_INET or AF_INET6 socket address (any other family:
 * not found, scope 0). */
bool reg_subnets_lookup_sa(const struct reg_subnets *t, const struct sockaddr *sa, struct reg_loc *loc,
                           uint8_t *scope);

#endif
