/* The wire format of l4.sync (connection sync between LB nodes): encoding,
 * authentication and a strict decoder. Pure code: no sockets, no maps.
 *
 * One UDP datagram (at most L4_SYNC_MAX_DGRAM bytes, so it fits any
 * path's MTU with room for IPv6 and tunnel headers):
 *
 *   header (28 bytes, big-endian)
 *     magic    "SLSY"
 *     version  1
 *     type     1 = entries, 2 = hello
 *     count    entries (type 1) or local addresses (type 2)
 *     node_id  the sender's l4.sync.node_id
 *     epoch    the sender's start time (µs since 1970): a restarted
 *              sender has a larger epoch, so its sequence restarts at 1
 *              without looking like a replay
 *     seq      1, 2, 3, ... per datagram within an epoch
 *   body
 *     type 1: count × entry (80 bytes each, below)
 *     type 2: count × 16-byte address (this node's FullNAT local addresses,
 *             v4-mapped for IPv4)
 *   mac      HMAC-SHA256 over everything before it, with the shared key
 *
 * An entry names everything by address, never by a node's own indexes
 * (real indexes, service slots and the monotonic clock differ per node):
 *
 *   client   16 + 2   the client's address and port
 *   vip      16 + 2   the service: VIP, port and proto below
 *   proto, mode, state, flags (1 byte each): IPPROTO_TCP/UDP, 2 = nat,
 *            3 = fullnat (enum l4_mode), L4_NAT_S_*, 0
 *   real     16 + 2   where the flow goes
 *   local    16 + 2   FullNAT: the local address and port it uses (0 for NAT)
 *   age      4        seconds since the flow's last packet on the sender
 */
#ifndef SLUICE_L4_SYNC_WIRE_H
#define SLUICE_L4_SYNC_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define L4_SYNC_MAGIC "SLSY"
#define L4_SYNC_VERSION 1
#define L4_SYNC_HDR_LEN 28
#define L4_SYNC_ENTRY_LEN 80
#define L4_SYNC_MAC_LEN 32
#define L4_SYNC_MAX_DGRAM 1400
/* (1400 - 28 - 32) / 80 */
#define L4_SYNC_MAX_ENTRIES ((L4_SYNC_MAX_DGRAM - L4_SYNC_HDR_LEN - L4_SYNC_MAC_LEN) / L4_SYNC_ENTRY_LEN)
#define L4_SYNC_MAX_LOCALS ((L4_SYNC_MAX_DGRAM - L4_SYNC_HDR_LEN - L4_SYNC_MAC_LEN) / 16)

enum l4_sync_type { L4_SYNC_T_ENTRIES = 1, L4_SYNC_T_HELLO = 2 };

struct l4_sync_hdr {
    uint8_t type;
    uint16_t count;
    uint32_t node_id;
    uint64_t epoch;
    uint64_t seq;
};

/* Addresses are 16 bytes, v4-mapped for IPv4 (as in the maps); ports in
 * network order (as in the maps). */
struct l4_sync_entry {
    uint8_t client[16];
    uint16_t cport;
    uint8_t vip[16];
    uint16_t vport;
    uint8_t proto;
    uint8_t mode;
    uint8_t state;
    uint8_t flags;
    uint8_t real[16];
    uint16_t rport;
    uint8_t local[16];
    uint16_t lport;
    uint32_t age;
};

/* Why a datagram was refused (the reason label of the rejected counters). */
enum l4_sync_reject {
    L4_SYNC_OK = 0,
    L4_SYNC_R_SHORT,      /* shorter than a header and a MAC */
    L4_SYNC_R_MAGIC,      /* not ours */
    L4_SYNC_R_VERSION,    /* a version we do not speak */
    L4_SYNC_R_BAD_MAC,    /* wrong key, or altered */
    L4_SYNC_R_MALFORMED,  /* authenticated but inconsistent (length vs count, type) */
    L4_SYNC_R_REPLAY,     /* a sequence number already seen, or an older epoch */
    L4_SYNC_R_UNKNOWN_PEER, /* from an address that is not in l4.sync.peers */
    L4_SYNC_R__COUNT,
};

const char *l4_sync_reject_name(enum l4_sync_reject r);

/* Datagram building: begin, add entries (or addresses), finish. */
struct l4_sync_writer {
    uint8_t buf[L4_SYNC_MAX_DGRAM];
    size_t len;
    uint16_t count;
    uint8_t type;
};

void l4_sync_begin(struct l4_sync_writer *w, enum l4_sync_type type);
/* false when the datagram is full (finish and send it, then begin again). */
bool l4_sync_add_entry(struct l4_sync_writer *w, const struct l4_sync_entry *e);
bool l4_sync_add_local(struct l4_sync_writer *w, const uint8_t addr[16]);
/* Fill in the header and the MAC; returns the datagram's length. */
size_t l4_sync_finish(struct l4_sync_writer *w, uint32_t node_id, uint64_t epoch, uint64_t seq, const uint8_t *key,
                      size_t keylen);

/* Check a received datagram: length, magic, version, MAC (constant time),
 * then the body against the header. Fills *h. Sequence numbers are the
 * caller's (l4_sync_seq_check). */
enum l4_sync_reject l4_sync_open(const uint8_t *buf, size_t len, const uint8_t *key, size_t keylen,
                                 struct l4_sync_hdr *h);
/* Body item i of an opened datagram (i < h->count). */
void l4_sync_entry_at(const uint8_t *buf, size_t i, struct l4_sync_entry *e);
void l4_sync_local_at(const uint8_t *buf, size_t i, uint8_t addr[16]);

/* A peer's sequence as the receiver tracks it. */
struct l4_sync_seq {
    uint64_t epoch;       /* 0: nothing heard yet */
    uint64_t last;        /* highest seq accepted in epoch */
    uint64_t missed;      /* datagrams never received (gaps) */
    uint64_t restarts;    /* new epochs seen after the first */
};

/* Accept (update *s, count a gap as missed, a newer epoch as a restart)
 * or refuse (L4_SYNC_R_REPLAY: an older epoch, or seq <= last) the
 * header's epoch and seq. */
enum l4_sync_reject l4_sync_seq_check(struct l4_sync_seq *s, uint64_t epoch, uint64_t seq);

#endif
