/* The packets of a VIP probe: a TCP SYN and a RST built by hand, the
 * answer (SYN-ACK or RST) parsed, and the classic BPF filter that lets
 * only candidate answers reach the probe's packet socket.
 *
 * Pure code (no sockets, no globals). Every packet here is an L3 packet
 * (IPv4 or IPv6 header first, no link header): the probe engine sends and
 * receives through AF_PACKET SOCK_DGRAM sockets, which add and strip the
 * Ethernet header themselves, and whose socket filters see the packet from
 * its network header on.
 *
 * Addresses are in network order (4 bytes used for IPv4, 16 for IPv6);
 * ports and sequence numbers in host order.
 */
#ifndef SLUICE_HA_PROBE_PACKET_H
#define SLUICE_HA_PROBE_PACKET_H

#include <linux/filter.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* One probe flow, seen from the prober: src = the probe source address,
 * dst = the VIP. */
struct probe_tuple {
    int family; /* AF_INET or AF_INET6 */
    uint8_t src[16];
    uint8_t dst[16];
    uint16_t sport;
    uint16_t dport;
};

/* Room for the largest packet built here (IPv6 + TCP with the MSS option). */
#define PROBE_PACKET_MAX 64

/* Build the SYN that opens the probe (sequence number `seq`, an MSS
 * option, IPv4 with DF and identification `ip_id`). Returns the length, or
 * 0 if `cap` is too small or the family unknown. */
size_t probe_build_syn(uint8_t *buf, size_t cap, const struct probe_tuple *t, uint32_t seq, uint16_t ip_id);

/* Build the RST that ends a probe answered by a SYN-ACK: sequence number
 * `seq` (the SYN-ACK's acknowledgment number), so the server drops its
 * half-open connection at once. Same return as probe_build_syn(). */
size_t probe_build_rst(uint8_t *buf, size_t cap, const struct probe_tuple *t, uint32_t seq, uint16_t ip_id);

enum probe_reply_kind {
    PROBE_REPLY_SYNACK, /* the service accepts connections */
    PROBE_REPLY_RST,    /* refused: nothing listens (or a firewall resets) */
};

/* An answer, its tuple turned around to the probe's view (src = the
 * probe source, dst = the VIP). */
struct probe_reply {
    struct probe_tuple tuple;
    enum probe_reply_kind kind;
    uint32_t seq; /* the answer's sequence number */
    uint32_t ack; /* its acknowledgment number (0 when ACK is not set) */
};

/* Parse an L3 packet of `family` received on the probe socket. Returns 0
 * and fills *out for a TCP SYN-ACK or RST whose lengths (and TCP checksum,
 * when verify_csum) are right; -1 for anything else (other protocols,
 * fragments, IPv6 extension headers, bad lengths or checksums, other TCP
 * flags). Never reads outside pkt[0..len).
 *
 * verify_csum false is for a packet whose checksum the kernel vouches for
 * or has not filled in yet (PACKET_AUXDATA's TP_STATUS_CSUM_VALID, or
 * TP_STATUS_CSUMNOTREADY: a segment from a veth or a local sender with
 * checksum offload carries only the pseudo-header sum). */
int probe_parse_reply(const uint8_t *pkt, size_t len, int family, bool verify_csum, struct probe_reply *out);

/* The Internet checksum (RFC 1071) of the TCP segment seg[0..seg_len)
 * with the pseudo-header of the tuple's addresses: 0 when a received
 * segment's checksum is right. */
uint16_t probe_tcp_checksum(int family, const uint8_t *src, const uint8_t *dst, const uint8_t *seg, size_t seg_len);

/* Parse one of our own SYNs as it arrives back at this node (the routers
 * sent the probe to this node): a TCP segment with SYN alone. Fills *out
 * as sent (src = the probe source) and *seq. Same checks and return as
 * probe_parse_reply(). */
int probe_parse_own_syn(const uint8_t *pkt, size_t len, int family, bool verify_csum, struct probe_tuple *out,
                        uint32_t *seq);

/* The socket filter of a probe socket. It passes TCP segments of two
 * kinds, IPv4 not fragmented, IPv6 without extension headers:
 *  - answers: to `source` (the probe source address), to a destination
 *    port in [port_lo, port_hi], with RST or both SYN and ACK set;
 *  - our own SYNs: from `source`, from a source port in the range, SYN
 *    alone (the engine keeps those that arrive from outside: a probe the
 *    routers sent to this very node).
 * Writes at most `cap` instructions; returns their number, or 0 if `cap`
 * is too small. PROBE_FILTER_MAX is always enough. */
#define PROBE_FILTER_MAX 40
size_t probe_filter_build(struct sock_filter *prog, size_t cap, int family, const uint8_t *source, uint16_t port_lo,
                          uint16_t port_hi);

#endif
