/* Wire constants the L4 BPF programs (forwarder, decap, toa) read and
 * write: ethertypes, IPv4 flags, protocol numbers, ICMP types, TCP flags.
 * The uapi headers have them as #defines, which vmlinux.h does not carry.
 * Needs nothing else; safe to include anywhere.
 */
#ifndef SLUICE_L4_BPF_CONSTS_H
#define SLUICE_L4_BPF_CONSTS_H

/* Ethertypes */
#define ETH_P_IP      0x0800
#define ETH_P_IPV6    0x86DD
#define ETH_P_8021Q   0x8100
#define ETH_P_8021AD  0x88A8

/* IPv4 frag_off (host order) */
#define IP_MF         0x2000
#define IP_DF         0x4000
#define IP_OFFSET     0x1FFF

/* IP protocol numbers (IPv4 protocol, IPv6 next header) */
#define PROTO_ICMP    1
#define PROTO_IPIP    4
#define PROTO_TCP     6
#define PROTO_UDP     17
#define PROTO_IPV6    41
#define PROTO_ICMPV6  58

/* ICMP and ICMPv6 types and codes */
#define ICMP_ECHOREPLY      0
#define ICMP_DEST_UNREACH   3
#define ICMP_FRAG_NEEDED    4
#define ICMP_ECHO           8
#define ICMPV6_PKT_TOOBIG   2
#define ICMPV6_ECHO_REQUEST 128
#define ICMPV6_ECHO_REPLY   129

/* TCP flags (byte 13 of the header) */
#define TCP_FIN       0x01
#define TCP_SYN       0x02
#define TCP_RST       0x04
#define TCP_ACK       0x10

#define NSEC_PER_SEC  1000000000ULL

#endif
