/* The DNS wire codec's client side: a query for a host name's addresses,
 * the A or AAAA records of the answer, and the resolvers of
 * /etc/resolv.conf. Used by the proxy to resolve backends given by name
 * (proxy/pool_dyn.h) without blocking its event loop.
 *
 * Pure code: no globals, no logging, no allocation, nothing read past the
 * lengths given. Answers are judged strictly enough that a stray or forged
 * datagram is dropped: the ID, the question (name, type, class) and QR
 * must match what was sent; names in the answer section may be compressed
 * (pointers only backwards, at most DNS_NAME_MAX bytes followed); a record
 * cut short, an RDLENGTH past the end, an A whose RDATA is not 4 bytes or
 * an AAAA not 16 fail the whole answer. Records other than A/AAAA (CNAME
 * chains a recursive resolver sends first) count for the TTL only.
 */
#ifndef SLUICE_LIB_DNS_CLIENT_H
#define SLUICE_LIB_DNS_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "lib/dns_wire.h"

#define DNS_ANSWER_MAX_ADDRS 64   /* addresses kept from one answer; the rest are dropped */
#define DNS_CLIENT_UDP_SIZE 1232  /* the EDNS payload size a query advertises */

struct dns_answer_addr {
    sa_family_t family;           /* AF_INET or AF_INET6 */
    uint8_t addr[16];             /* network order; IPv4 in addr[0..3] */
};

struct dns_answer {
    unsigned rcode;               /* the header's RCODE (0..15) */
    bool truncated;               /* TC: the records here may be only part of the set */
    uint32_t ttl;                 /* the smallest TTL of the answer section (0 when it is empty) */
    size_t n_addrs;               /* A or AAAA records of the asked type, duplicates once */
    size_t dropped;               /* addresses past DNS_ANSWER_MAX_ADDRS */
    struct dns_answer_addr addrs[DNS_ANSWER_MAX_ADDRS];
};

/* A recursive query (RD set) for qname (uncompressed wire form,
 * dns_name_from_text) of type qtype, class IN, with an EDNS OPT record
 * advertising DNS_CLIENT_UDP_SIZE. Returns its length, or -1 when buf is
 * too small (DNS_HEADER_LEN + DNS_NAME_MAX + 4 + 11 always fits). */
int dns_build_query(uint8_t *buf, size_t cap, uint16_t id, const uint8_t *qname, size_t qname_len, uint16_t qtype);

/* Read the response msg[0..len) to the query (id, qname, qtype). Returns 0
 * with *out filled, or -1 when it is not a well-formed answer to that
 * query (see above). */
int dns_parse_answer(const uint8_t *msg, size_t len, uint16_t id, const struct dns_name *qname, uint16_t qtype,
                     struct dns_answer *out);

/* The "nameserver ADDR" lines of a resolv.conf text, in order, as
 * addresses on port 53 (IPv6 with a %scope is skipped): at most cap of
 * them into out (family and bytes, as dns_answer_addr). Comments (# ;) and
 * other keywords are ignored. Returns how many were written. */
size_t dns_resolv_conf_parse(const char *text, size_t len, struct dns_answer_addr *out, size_t cap);

#endif
