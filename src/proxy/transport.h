/* The transport under a connection: how its bytes cross its socket.
 *
 * The HTTP/1 client connection, the upstream connection and the TCP relay
 * do all their socket I/O through a struct transport, never with read(2)
 * or write(2) on the descriptor, so that a TLS transport can take the
 * place of the plain one (transport_plain.c) without the protocol code
 * knowing: the same split as HAProxy's raw_sock.c and ssl_sock.c under
 * its muxes.
 *
 * The contract every transport keeps:
 * - recv and send are non-blocking and retry EINTR themselves; they
 *   return -1 with errno EAGAIN when nothing can move now, and the caller
 *   polls the events that wanted_events() names before trying again.
 * - send never raises SIGPIPE.
 * - What the caller polls for and what a transport needs may differ: a
 *   TLS transport in a handshake wants the socket writable while the
 *   caller wants to read, and the other way round. Callers pass their
 *   wish through transport_events() when they set their interest, and
 *   read an event through transport_ready() before acting on it. The
 *   plain transport leaves both unchanged and costs no call for them.
 * - A transport that holds bytes of its own (TLS records decrypted but
 *   not yet read) must report them through transport_ready() when the
 *   caller is woken for any reason; level-triggered epoll will not.
 * - can_splice: the transport adds nothing to the byte stream, so bytes
 *   may move between sockets with splice(2), bypassing recv and send.
 *   Only the plain transport can; the TCP relay splices only when both
 *   of its transports say so.
 *
 * Connection establishment (connect, accept) stays with the socket's
 * owner; a transport is set on a descriptor that is already connected or
 * connecting, and owns it from then on: transport_close() closes it.
 */
#ifndef SLUICE_PROXY_TRANSPORT_H
#define SLUICE_PROXY_TRANSPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

struct transport;

struct transport_ops {
    const char *name;   /* "plain", "tls": for log messages */

    /* Read up to len bytes: the number read (> 0), 0 at the end of the
     * stream, or -1 with errno (EAGAIN: nothing to read now). */
    ssize_t (*recv)(struct transport *t, void *buf, size_t len);

    /* Write from iov[0..iovcnt) in order: the number of bytes taken
     * (which may be fewer than offered), or -1 with errno (EAGAIN: no
     * room now). */
    ssize_t (*send)(struct transport *t, const struct iovec *iov, int iovcnt);

    /* Nothing more will be sent: the peer sees the end of the stream after
     * the bytes already sent (TCP FIN; TLS sends close_notify first).
     * Reading goes on. Returns 0, or -1 with errno. */
    int (*shutdown)(struct transport *t);

    /* Release the transport's state and close the socket. abort: the peer
     * must see an error (TCP reset), not an orderly end. */
    void (*close)(struct transport *t, bool abort);

    /* Optional (NULL: exactly want). The socket events (EPOLLIN, EPOLLOUT)
     * to poll so that the caller's wish can progress. */
    uint32_t (*wanted_events)(const struct transport *t, uint32_t want);

    /* Optional (NULL: exactly ev). Which of the caller's directions the
     * socket's readiness ev (and bytes the transport holds) unblock:
     * EPOLLIN means "recv may return bytes or the end", EPOLLOUT "send may
     * take bytes"; EPOLLERR and EPOLLHUP pass through. */
    uint32_t (*ready_events)(const struct transport *t, uint32_t ev);

    /* See the header comment. */
    bool can_splice;
};

struct transport {
    const struct transport_ops *ops;
    int fd;        /* -1 once closed */
    void *ctx;     /* the transport's own state (a TLS session); NULL for plain */
};

/* The plain transport: the socket's bytes as they are. */
extern const struct transport_ops transport_plain_ops;

/* Set t to the plain transport over fd (connected or connecting). */
static inline void transport_plain(struct transport *t, int fd)
{
    t->ops = &transport_plain_ops;
    t->fd = fd;
    t->ctx = NULL;
}

static inline bool transport_open(const struct transport *t) { return t->fd >= 0; }

static inline ssize_t transport_recv(struct transport *t, void *buf, size_t len)
{
    return t->ops->recv(t, buf, len);
}

static inline ssize_t transport_send(struct transport *t, const struct iovec *iov, int iovcnt)
{
    return t->ops->send(t, iov, iovcnt);
}

/* One buffer: transport_send() of a single iovec. */
static inline ssize_t transport_send1(struct transport *t, const void *p, size_t len)
{
    struct iovec iov = {(void *)p, len};
    return t->ops->send(t, &iov, 1);
}

static inline int transport_shutdown(struct transport *t) { return t->ops->shutdown(t); }

/* Close (see transport_ops.close); t->fd is -1 afterwards. Closing a
 * closed transport does nothing. */
static inline void transport_close(struct transport *t, bool abort)
{
    if (t->fd >= 0)
        t->ops->close(t, abort);
}

static inline uint32_t transport_events(const struct transport *t, uint32_t want)
{
    return t->ops->wanted_events ? t->ops->wanted_events(t, want) : want;
}

static inline uint32_t transport_ready(const struct transport *t, uint32_t ev)
{
    return t->ops->ready_events ? t->ops->ready_events(t, ev) : ev;
}

static inline bool transport_can_splice(const struct transport *t) { return t->ops->can_splice; }

#endif
