/* See sock_diag.h. One SOCK_DIAG_BY_FAMILY request without NLM_F_DUMP:
 * the kernel answers with the socket's inet_diag_msg (the listener's when
 * no socket has the 4-tuple), or with an error message carrying -ENOENT. */
#include "core/sock_diag.h"

#include <errno.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

static int fill_id(struct inet_diag_sockid *id, const struct sockaddr *local, const struct sockaddr *remote)
{
    if (local->sa_family == AF_INET && remote->sa_family == AF_INET) {
        const struct sockaddr_in *l = (const struct sockaddr_in *)local, *r = (const struct sockaddr_in *)remote;
        id->idiag_sport = l->sin_port;
        id->idiag_dport = r->sin_port;
        memcpy(id->idiag_src, &l->sin_addr, 4);
        memcpy(id->idiag_dst, &r->sin_addr, 4);
        return AF_INET;
    }
    if (local->sa_family == AF_INET6 && remote->sa_family == AF_INET6) {
        const struct sockaddr_in6 *l = (const struct sockaddr_in6 *)local, *r = (const struct sockaddr_in6 *)remote;
        id->idiag_sport = l->sin6_port;
        id->idiag_dport = r->sin6_port;
        memcpy(id->idiag_src, &l->sin6_addr, 16);
        memcpy(id->idiag_dst, &r->sin6_addr, 16);
        return AF_INET6;
    }
    return -1;
}

int sock_diag_tcp_find(const struct sockaddr *local, const struct sockaddr *remote, int *state, char *err,
                       size_t errlen)
{
    struct {
        struct nlmsghdr nh;
        struct inet_diag_req_v2 req;
    } msg;
    memset(&msg, 0, sizeof msg);
    int family = fill_id(&msg.req.id, local, remote);
    if (family < 0) {
        snprintf(err, errlen, "sock_diag: both addresses must be IPv4 or both IPv6");
        return -1;
    }
    msg.nh.nlmsg_len = sizeof msg;
    msg.nh.nlmsg_type = SOCK_DIAG_BY_FAMILY;
    msg.nh.nlmsg_flags = NLM_F_REQUEST;
    msg.nh.nlmsg_seq = 1;
    msg.req.sdiag_family = (uint8_t)family;
    msg.req.sdiag_protocol = IPPROTO_TCP;
    msg.req.idiag_states = ~0u;
    msg.req.id.idiag_cookie[0] = INET_DIAG_NOCOOKIE;
    msg.req.id.idiag_cookie[1] = INET_DIAG_NOCOOKIE;

    int fd = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
    if (fd < 0) {
        snprintf(err, errlen, "sock_diag socket: %s", strerror(errno));
        return -1;
    }
    struct timeval tv = { .tv_sec = 1 };
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    int rc = -1;
    char buf[8192];
    if (send(fd, &msg, sizeof msg, 0) < 0) {
        snprintf(err, errlen, "sock_diag send: %s", strerror(errno));
        goto out;
    }
    ssize_t n = recv(fd, buf, sizeof buf, 0);
    if (n < 0) {
        snprintf(err, errlen, "sock_diag recv: %s", strerror(errno));
        goto out;
    }
    struct nlmsghdr *h = (struct nlmsghdr *)buf;
    if (!NLMSG_OK(h, (size_t)n)) {
        snprintf(err, errlen, "sock_diag: short answer");
        goto out;
    }
    if (h->nlmsg_type == NLMSG_ERROR) {
        struct nlmsgerr *e = NLMSG_DATA(h);
        if (e->error == -ENOENT) {
            rc = 0;
        } else {
            snprintf(err, errlen, "sock_diag: %s", strerror(-e->error));
        }
        goto out;
    }
    if (h->nlmsg_type != SOCK_DIAG_BY_FAMILY || h->nlmsg_len < NLMSG_LENGTH(sizeof(struct inet_diag_msg))) {
        snprintf(err, errlen, "sock_diag: unexpected answer type %u", h->nlmsg_type);
        goto out;
    }
    const struct inet_diag_msg *m = NLMSG_DATA(h);
    /* The kernel's lookup (inet_lookup) falls back to the listener of the
     * local address and port when no socket has the 4-tuple: a listener
     * is no socket of this flow. */
    if (m->idiag_state == TCP_LISTEN) {
        rc = 0;
        goto out;
    }
    if (state)
        *state = m->idiag_state;
    rc = 1;
out:
    close(fd);
    return rc;
}
