/* See nexthop.h. Plain rtnetlink: one RTM_GETROUTE request for the route,
 * one RTM_GETNEIGH dump for the neighbour. */
#include "l4/nexthop.h"

#include <errno.h>
#include <linux/neighbour.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

#define NL_BUF 32768

struct nh_target {
    int family;
    uint8_t addr[16];
    size_t alen;
};

static int nl_open(void)
{
    int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
    if (fd < 0)
        return -1;
    /* Bounded: a netlink answer that never comes must not hang the loop. */
    struct timeval tv = { .tv_sec = 1 };
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    return fd;
}

/* RTM_GETROUTE for the target: fills *oif and, if the route has a gateway,
 * replaces the target by it. */
static int route_get(int fd, struct nh_target *t, int *oif)
{
    struct {
        struct nlmsghdr nh;
        struct rtmsg rt;
        char attrs[64];
    } req;
    memset(&req, 0, sizeof req);
    req.nh.nlmsg_type = RTM_GETROUTE;
    req.nh.nlmsg_flags = NLM_F_REQUEST;
    req.nh.nlmsg_seq = 1;
    req.rt.rtm_family = (unsigned char)t->family;
    req.rt.rtm_dst_len = (unsigned char)(t->alen * 8);
    struct rtattr *rta = (struct rtattr *)((char *)&req + NLMSG_ALIGN(sizeof req.nh + sizeof req.rt));
    rta->rta_type = RTA_DST;
    rta->rta_len = (unsigned short)RTA_LENGTH(t->alen);
    memcpy(RTA_DATA(rta), t->addr, t->alen);
    req.nh.nlmsg_len = NLMSG_ALIGN(sizeof req.nh + sizeof req.rt) + RTA_ALIGN(rta->rta_len);
    if (send(fd, &req, req.nh.nlmsg_len, 0) < 0)
        return -1;

    static char buf[NL_BUF];
    ssize_t n = recv(fd, buf, sizeof buf, 0);
    if (n < 0)
        return -1;
    for (struct nlmsghdr *h = (struct nlmsghdr *)buf; NLMSG_OK(h, (size_t)n); h = NLMSG_NEXT(h, n)) {
        if (h->nlmsg_type == NLMSG_ERROR) {
            struct nlmsgerr *e = NLMSG_DATA(h);
            errno = e->error ? -e->error : EHOSTUNREACH;
            return -1;
        }
        if (h->nlmsg_type != RTM_NEWROUTE)
            continue;
        struct rtmsg *rt = NLMSG_DATA(h);
        int len = (int)RTM_PAYLOAD(h);
        for (struct rtattr *a = RTM_RTA(rt); RTA_OK(a, len); a = RTA_NEXT(a, len)) {
            if (a->rta_type == RTA_OIF)
                memcpy(oif, RTA_DATA(a), sizeof *oif);
            else if (a->rta_type == RTA_GATEWAY && RTA_PAYLOAD(a) == t->alen)
                memcpy(t->addr, RTA_DATA(a), t->alen);
        }
        return 0;
    }
    errno = EHOSTUNREACH;
    return -1;
}

/* States in which the kernel's MAC for a neighbour can be used. */
static bool usable_state(uint16_t s)
{
    return s & (NUD_REACHABLE | NUD_STALE | NUD_DELAY | NUD_PROBE | NUD_PERMANENT | NUD_NOARP);
}

/* Dump the neighbour table of the family; 1 when the target was found on
 * ifindex with a usable MAC. */
static int neigh_find(int fd, const struct nh_target *t, int ifindex, uint8_t mac[6])
{
    struct {
        struct nlmsghdr nh;
        struct ndmsg nd;
    } req;
    memset(&req, 0, sizeof req);
    req.nh.nlmsg_len = sizeof req;
    req.nh.nlmsg_type = RTM_GETNEIGH;
    req.nh.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
    req.nh.nlmsg_seq = 2;
    req.nd.ndm_family = (unsigned char)t->family;
    req.nd.ndm_ifindex = ifindex;
    if (send(fd, &req, sizeof req, 0) < 0)
        return -1;
    static char buf[NL_BUF];
    int found = 0;
    for (;;) {
        ssize_t n = recv(fd, buf, sizeof buf, 0);
        if (n < 0)
            return -1;
        for (struct nlmsghdr *h = (struct nlmsghdr *)buf; NLMSG_OK(h, (size_t)n); h = NLMSG_NEXT(h, n)) {
            if (h->nlmsg_type == NLMSG_DONE)
                return found;
            if (h->nlmsg_type == NLMSG_ERROR) {
                struct nlmsgerr *e = NLMSG_DATA(h);
                errno = -e->error;
                return -1;
            }
            if (h->nlmsg_type != RTM_NEWNEIGH || found)
                continue;
            struct ndmsg *nd = NLMSG_DATA(h);
            if (nd->ndm_ifindex != ifindex || !usable_state(nd->ndm_state))
                continue;
            int len = (int)(h->nlmsg_len - NLMSG_LENGTH(sizeof *nd));
            const void *dst = NULL, *ll = NULL;
            size_t ll_len = 0;
            for (struct rtattr *a = (struct rtattr *)((char *)nd + NLMSG_ALIGN(sizeof *nd)); RTA_OK(a, len);
                 a = RTA_NEXT(a, len)) {
                if (a->rta_type == NDA_DST && RTA_PAYLOAD(a) == t->alen)
                    dst = RTA_DATA(a);
                else if (a->rta_type == NDA_LLADDR) {
                    ll = RTA_DATA(a);
                    ll_len = RTA_PAYLOAD(a);
                }
            }
            if (dst && ll && ll_len == 6 && memcmp(dst, t->addr, t->alen) == 0) {
                memcpy(mac, ll, 6);
                found = 1;
            }
        }
    }
}

/* Make the kernel resolve the next hop: connect() picks the route and a
 * send() needs the neighbour. Port 9 is "discard"; the real answers with
 * an ICMP port unreachable at worst. */
static void provoke_resolution(const struct sockaddr *dst)
{
    struct sockaddr_storage ss;
    socklen_t len = dst->sa_family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6);
    memcpy(&ss, dst, len);
    if (ss.ss_family == AF_INET)
        ((struct sockaddr_in *)&ss)->sin_port = htons(9);
    else
        ((struct sockaddr_in6 *)&ss)->sin6_port = htons(9);
    int s = socket(ss.ss_family, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (s < 0)
        return;
    if (connect(s, (struct sockaddr *)&ss, len) == 0)
        (void)send(s, "", 1, MSG_DONTWAIT);
    close(s);
}

enum nexthop_result nexthop_lookup(const struct sockaddr *dst, int *ifindex, uint8_t mac[6], char *err,
                                   size_t errlen)
{
    struct nh_target t = { .family = dst->sa_family };
    if (t.family == AF_INET) {
        t.alen = 4;
        memcpy(t.addr, &((const struct sockaddr_in *)dst)->sin_addr, 4);
    } else if (t.family == AF_INET6) {
        t.alen = 16;
        memcpy(t.addr, &((const struct sockaddr_in6 *)dst)->sin6_addr, 16);
    } else {
        snprintf(err, errlen, "unsupported address family %d", t.family);
        return NEXTHOP_ERROR;
    }
    int fd = nl_open();
    if (fd < 0) {
        snprintf(err, errlen, "netlink: %s", strerror(errno));
        return NEXTHOP_ERROR;
    }
    int oif = 0;
    if (route_get(fd, &t, &oif) < 0 || oif == 0) {
        snprintf(err, errlen, "no route: %s", strerror(errno ? errno : EHOSTUNREACH));
        close(fd);
        return NEXTHOP_ERROR;
    }
    int rc = neigh_find(fd, &t, oif, mac);
    int saved = errno;
    close(fd);
    if (rc < 0) {
        snprintf(err, errlen, "netlink neighbour dump: %s", strerror(saved));
        return NEXTHOP_ERROR;
    }
    *ifindex = oif;
    if (rc == 1)
        return NEXTHOP_FOUND;
    provoke_resolution(dst);
    snprintf(err, errlen, "next hop not resolved yet");
    return NEXTHOP_PENDING;
}
