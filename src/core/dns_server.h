/* The DNS transport the DNS tiers share (sluice registry's authoritative
 * server and sluice agent): listener sockets, the UDP batch and the TCP
 * two-byte length framing. What a query is answered with, when it is
 * answered (at once, later) and what is counted stay with the tier; these
 * are the parts where the two servers must behave the same on the wire.
 *
 * UDP: a batch of up to DNS_UDP_BATCH datagrams is read with one
 * recvmmsg() and the answers queued with dns_udp_batch_reply() leave in one
 * sendmmsg(). A socket bound to a wildcard address keeps each datagram's
 * destination (IP_PKTINFO / IPV6_RECVPKTINFO) and hands it back when
 * sending, so an answer leaves from the address the query was sent to (a
 * client ignores an answer from another address).
 *
 * TCP: a connection's input buffer grows to the message being read (at
 * most 2 + 65,535 bytes); dns_tcp_message() finds the complete messages in
 * it; output that the socket did not take waits in a buffer of its own.
 * Accepting, the connection list, the idle timer and closing are here too;
 * when a connection answers and what it waits for next stay the tier's
 * (the registry answers at once, in batches; the agent may answer later,
 * out of order, and frees a closed connection when its last query ends).
 */
#ifndef SLUICE_CORE_DNS_SERVER_H
#define SLUICE_CORE_DNS_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "core/evloop.h"
#include "lib/addr.h"

#define DNS_UDP_BATCH 32          /* datagrams per recvmmsg */
#define DNS_CMSG_ROOM 64          /* IP_PKTINFO / IPV6_PKTINFO */

/* ---- listeners ------------------------------------------------------------ */

/* 0.0.0.0 or ::: such a socket must say which address each datagram came to. */
bool dns_addr_is_wildcard(const struct sl_addr *a);

/* UDP and TCP sockets on one address, bound, non-blocking, TCP listening.
 * With port 0 the UDP socket picks the port and TCP takes the same one
 * (tried a few times: another process may hold it for TCP); bound gets
 * the address with its port. 0, or -1 with "WHO listener ADDR (udp|tcp):
 * reason" in err (who: "dns", "agent"). */
int dns_listen_open(const char *who, const struct sl_addr *want, int *udp_fd, int *tcp_fd, struct sl_addr *bound,
                    char *err, size_t errlen);

/* ---- UDP ------------------------------------------------------------------ */

/* One batch: a receive buffer, name and control block per slot, and the
 * answers queued for sendmmsg. The tier owns the buffers (bufs holds
 * DNS_UDP_BATCH slots of buf_size bytes) and may answer in place. */
struct dns_udp_batch {
    uint8_t *bufs;
    size_t buf_size;
    unsigned n_out;                    /* answers queued */
    struct mmsghdr rmsg[DNS_UDP_BATCH], smsg[DNS_UDP_BATCH];
    struct iovec riov[DNS_UDP_BATCH], siov[DNS_UDP_BATCH];
    struct sockaddr_storage from[DNS_UDP_BATCH];
    uint8_t cmsg[DNS_UDP_BATCH][DNS_CMSG_ROOM];
};

void dns_udp_batch_init(struct dns_udp_batch *b, uint8_t *bufs, size_t buf_size);

/* recvmmsg into the batch (with the destination when pktinfo); the number
 * of datagrams read, 0 when none are waiting (or on an error). Slot i's
 * message is b->bufs + i * buf_size, b->rmsg[i].msg_len bytes; its header
 * b->rmsg[i].msg_hdr (MSG_TRUNC in msg_flags: it was larger than a slot). */
unsigned dns_udp_batch_recv(struct dns_udp_batch *b, int fd, bool pktinfo);

/* Queue an answer of n bytes at resp (kept until sent) to slot i's client. */
void dns_udp_batch_reply(struct dns_udp_batch *b, unsigned i, uint8_t *resp, size_t n, bool pktinfo);

/* Send the queued answers; the number lost (the socket's buffer was full,
 * or the client unreachable): waiting for the socket to drain would only
 * delay every later query, and the client retries. */
unsigned dns_udp_batch_send(struct dns_udp_batch *b, int fd);

/* One answer sent on its own (a late one), from the address in cmsg when
 * cmsg_len > 0. 0, or -1 when it could not be sent. */
int dns_udp_send_one(int fd, const struct sockaddr_storage *to, socklen_t to_len, const uint8_t *cmsg,
                     size_t cmsg_len, const uint8_t *buf, size_t n);

/* ---- TCP ------------------------------------------------------------------ */

enum dns_tcp_read_result { DNS_TCP_ERROR = -1, DNS_TCP_NOTHING = 0, DNS_TCP_DATA = 1, DNS_TCP_EOF = 2 };

/* Read what the socket has into *buf (len bytes used, cap allocated),
 * growing it to the message at its start. DNS_TCP_NOTHING also when the
 * buffer is full of complete messages waiting for their answers to go. */
enum dns_tcp_read_result dns_tcp_read(int fd, uint8_t **buf, size_t *len, size_t *cap);

/* The message at pos of the len bytes in buf, when it is complete: true
 * with its length in *mlen (it starts at pos + 2). */
bool dns_tcp_message(const uint8_t *buf, size_t len, size_t pos, size_t *mlen);

/* Drop the first pos bytes (the messages answered). */
void dns_tcp_consume(uint8_t *buf, size_t *len, size_t pos);

/* Append n bytes to the output buffer (*off bytes of *len already sent),
 * after a two-byte length when framed. -1 when out of memory. */
int dns_tcp_queue(uint8_t **buf, size_t *off, size_t *len, size_t *cap, const uint8_t *p, size_t n, bool framed);

/* Write the output buffer from *off: 1 all sent (off and len reset), 0
 * some left (the socket is full), -1 error. *wrote is set when any byte
 * left (a sign of life for an idle timer). */
int dns_tcp_flush(int fd, const uint8_t *buf, size_t *off, size_t *len, bool *wrote);

/* ---- TCP connections ------------------------------------------------------ */

/* A client's connection as both servers keep it. A tier puts it first in
 * its own connection struct (with what only it needs: the agent counts
 * the queries still waiting) and passes that struct as the events' data. */
struct dns_tcp_conn {
    struct ev_io io;
    struct ev_timer idle;
    struct sockaddr_storage peer;
    uint8_t *in;                       /* what the client sent, not yet answered */
    size_t in_len, in_cap;
    uint8_t *out;                      /* answers the socket has not taken yet */
    size_t out_off, out_len, out_cap;
    bool eof;                          /* the client sent FIN: answer what is complete, then close */
    bool closed;
    struct dns_tcp_conn *prev, *next;
};

/* A server's open connections. */
struct dns_tcp_conns {
    struct dns_tcp_conn *head;
    uint32_t n;
};

/* Start serving fd on c (zeroed by the caller): an input buffer,
 * TCP_NODELAY (answers are small and must not wait for Nagle), io_cb on
 * readable, idle_cb after idle_ms, both with data; c joins the list. 0,
 * or -1 out of memory (fd closed). */
int dns_tcp_conn_open(struct ev_loop *loop, struct dns_tcp_conns *list, struct dns_tcp_conn *c, int fd,
                      const struct sockaddr_storage *peer, ev_io_cb io_cb, ev_timer_cb idle_cb, void *data,
                      uint32_t idle_ms);

/* Stop its events, close its socket, leave the list; its memory is the
 * tier's to free (after the current batch of events: one may still name
 * it), with dns_tcp_conn_release for the buffers. false when it was
 * closed already. */
bool dns_tcp_conn_close(struct ev_loop *loop, struct dns_tcp_conns *list, struct dns_tcp_conn *c);

/* dns_tcp_read on the connection: data restarts the idle timer (idle_ms),
 * EOF sets c->eof. 1 data or EOF, 0 nothing now, -1 error. */
int dns_tcp_conn_read(struct ev_loop *loop, struct dns_tcp_conn *c, uint32_t idle_ms);
void dns_tcp_conn_release(struct dns_tcp_conn *c);

/* Accept what waits on a listener (a bounded batch, for fairness with the
 * other sockets), each handed to accepted(). When descriptors run out the
 * listener stops being read for a moment (pause, whose callback must call
 * dns_tcp_accept_resume): level-triggered epoll would otherwise wake us
 * for it again at once, in a loop. who names the server in the warning. */
typedef void dns_tcp_accepted_fn(void *arg, int fd, const struct sockaddr_storage *peer);
void dns_tcp_accept(struct ev_loop *loop, struct ev_io *listener, struct ev_timer *pause, const char *who,
                    dns_tcp_accepted_fn *accepted, void *arg);
void dns_tcp_accept_resume(struct ev_loop *loop, struct ev_io *listener);

#endif
