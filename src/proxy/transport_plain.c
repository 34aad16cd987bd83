/* The plain transport (see transport.h): recv(2), send(2)/sendmsg(2),
 * shutdown(2) and close(2) on the socket, nothing added. */
#include "proxy/transport.h"

#include <errno.h>
#include <sys/socket.h>
#include <unistd.h>

static ssize_t plain_recv(struct transport *t, void *buf, size_t len)
{
    ssize_t n;
    do
        n = recv(t->fd, buf, len, 0);
    while (n < 0 && errno == EINTR);
    return n;
}

static ssize_t plain_send(struct transport *t, const struct iovec *iov, int iovcnt)
{
    ssize_t n;
    if (iovcnt == 1) {
        do
            n = send(t->fd, iov[0].iov_base, iov[0].iov_len, MSG_NOSIGNAL);
        while (n < 0 && errno == EINTR);
        return n;
    }
    struct msghdr mh = {.msg_iov = (struct iovec *)iov, .msg_iovlen = (size_t)iovcnt};
    do
        n = sendmsg(t->fd, &mh, MSG_NOSIGNAL);
    while (n < 0 && errno == EINTR);
    return n;
}

static int plain_shutdown(struct transport *t)
{
    return shutdown(t->fd, SHUT_WR);
}

static void plain_close(struct transport *t, bool abort)
{
    if (abort) {
        /* A reset instead of a FIN: the peer learns that its stream was
         * cut short. */
        struct linger lg = {.l_onoff = 1, .l_linger = 0};
        setsockopt(t->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    }
    close(t->fd);
    t->fd = -1;
}

const struct transport_ops transport_plain_ops = {
    .name = "plain",
    .recv = plain_recv,
    .send = plain_send,
    .shutdown = plain_shutdown,
    .close = plain_close,
    .can_splice = true,
};
