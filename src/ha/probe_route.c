/* See probe_route.h. */
#include "ha/probe_route.h"

#include <arpa/inet.h>
#include <errno.h>
#include <linux/if_addr.h>
#include <linux/neighbour.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#define NL_BUF 32768
/* The kernel gives lo this index in every namespace. */
#define LOOPBACK_IFINDEX 1

static size_t alen_of(int family)
{
    return family == AF_INET ? 4 : 16;
}

static int nl_open(void)
{
    int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
    if (fd < 0)
        return -1;
    struct timeval tv = { .tv_sec = 1 }; /* an answer that never comes must not hang the daemon */
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    return fd;
}

/* Send a dump request of `type` whose family header is `hdr`. */
static int dump_request(int fd, uint16_t type, const void *hdr, size_t hdr_len)
{
    char req[NLMSG_SPACE(sizeof(struct rtmsg) + 16)];
    memset(req, 0, sizeof req);
    struct nlmsghdr *nh = (struct nlmsghdr *)req;
    nh->nlmsg_len = (uint32_t)NLMSG_LENGTH(hdr_len);
    nh->nlmsg_type = type;
    nh->nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
    nh->nlmsg_seq = 1;
    memcpy(NLMSG_DATA(nh), hdr, hdr_len);
    return send(fd, req, nh->nlmsg_len, 0) < 0 ? -1 : 0;
}

/* Run `each` on every message of a dump answer until NLMSG_DONE. */
static int dump_walk(int fd, void (*each)(struct nlmsghdr *h, void *arg), void *arg)
{
    static char buf[NL_BUF];
    for (;;) {
        ssize_t n = recv(fd, buf, sizeof buf, 0);
        if (n < 0)
            return -1;
        for (struct nlmsghdr *h = (struct nlmsghdr *)buf; NLMSG_OK(h, (size_t)n); h = NLMSG_NEXT(h, n)) {
            if (h->nlmsg_type == NLMSG_DONE)
                return 0;
            if (h->nlmsg_type == NLMSG_ERROR) {
                struct nlmsgerr *e = NLMSG_DATA(h);
                errno = e->error ? -e->error : EIO;
                return -1;
            }
            each(h, arg);
        }
    }
}

/* ---- routes: longest prefix in the main table ---- */

struct route_search {
    int family;
    uint8_t dst[16];
    bool found;
    int best_len;
    uint32_t best_metric;
    int oif;
    bool has_gw, has_src;
    uint8_t gw[16], src[16];
};

static bool prefix_match(const uint8_t *a, const uint8_t *b, int bits)
{
    int bytes = bits / 8, rest = bits % 8;
    if (memcmp(a, b, (size_t)bytes) != 0)
        return false;
    if (!rest)
        return true;
    uint8_t mask = (uint8_t)(0xff << (8 - rest));
    return (a[bytes] & mask) == (b[bytes] & mask);
}

static void route_each(struct nlmsghdr *h, void *arg)
{
    struct route_search *s = arg;
    if (h->nlmsg_type != RTM_NEWROUTE)
        return;
    struct rtmsg *rt = NLMSG_DATA(h);
    if (rt->rtm_family != s->family || rt->rtm_type != RTN_UNICAST)
        return;
    uint32_t table = rt->rtm_table, metric = 0;
    int oif = 0;
    const uint8_t *dst = NULL, *gw = NULL, *src = NULL;
    size_t alen = alen_of(s->family);
    int len = (int)RTM_PAYLOAD(h);
    for (struct rtattr *a = RTM_RTA(rt); RTA_OK(a, len); a = RTA_NEXT(a, len)) {
        size_t pl = RTA_PAYLOAD(a);
        if (a->rta_type == RTA_TABLE && pl == 4)
            memcpy(&table, RTA_DATA(a), 4);
        else if (a->rta_type == RTA_DST && pl == alen)
            dst = RTA_DATA(a);
        else if (a->rta_type == RTA_GATEWAY && pl == alen)
            gw = RTA_DATA(a);
        else if (a->rta_type == RTA_PREFSRC && pl == alen)
            src = RTA_DATA(a);
        else if (a->rta_type == RTA_OIF && pl == 4)
            memcpy(&oif, RTA_DATA(a), 4);
        else if (a->rta_type == RTA_PRIORITY && pl == 4)
            memcpy(&metric, RTA_DATA(a), 4);
        else if (a->rta_type == RTA_MULTIPATH && pl >= sizeof(struct rtnexthop)) {
            /* ECMP: the first next hop (any of them leads to the routers). */
            struct rtnexthop *nh = RTA_DATA(a);
            if (nh->rtnh_len < sizeof *nh || nh->rtnh_len > pl)
                continue;
            oif = nh->rtnh_ifindex;
            int nlen = nh->rtnh_len - (int)sizeof *nh;
            for (struct rtattr *na = RTNH_DATA(nh); RTA_OK(na, nlen); na = RTA_NEXT(na, nlen))
                if (na->rta_type == RTA_GATEWAY && RTA_PAYLOAD(na) == alen)
                    gw = RTA_DATA(na);
        }
    }
    if (table != RT_TABLE_MAIN || oif == 0 || oif == LOOPBACK_IFINDEX)
        return;
    int plen = rt->rtm_dst_len;
    /* The kernel's route for a local IPv6 address's own prefix (a /128 on
     * lo or on the HA tun device lands in main too): the VIP itself, not a
     * way out. */
    if (rt->rtm_protocol == RTPROT_KERNEL && (size_t)plen == alen * 8)
        return;
    if (plen > 0 && (!dst || !prefix_match(dst, s->dst, plen)))
        return;
    if (s->found && (plen < s->best_len || (plen == s->best_len && metric >= s->best_metric)))
        return;
    s->found = true;
    s->best_len = plen;
    s->best_metric = metric;
    s->oif = oif;
    s->has_gw = gw != NULL;
    if (gw)
        memcpy(s->gw, gw, alen);
    s->has_src = src != NULL;
    if (src)
        memcpy(s->src, src, alen);
}

static int route_lookup(int fd, struct route_search *s)
{
    struct rtmsg rt = { .rtm_family = (unsigned char)s->family };
    if (dump_request(fd, RTM_GETROUTE, &rt, sizeof rt) < 0)
        return -1;
    return dump_walk(fd, route_each, s);
}

/* ---- neighbours ---- */

struct neigh_search {
    int family, ifindex;
    uint8_t addr[16];
    bool found;
    uint8_t mac[6];
};

static void neigh_each(struct nlmsghdr *h, void *arg)
{
    struct neigh_search *s = arg;
    if (h->nlmsg_type != RTM_NEWNEIGH || s->found)
        return;
    struct ndmsg *nd = NLMSG_DATA(h);
    const uint16_t usable = NUD_REACHABLE | NUD_STALE | NUD_DELAY | NUD_PROBE | NUD_PERMANENT | NUD_NOARP;
    if (nd->ndm_ifindex != s->ifindex || !(nd->ndm_state & usable))
        return;
    size_t alen = alen_of(s->family);
    int len = (int)(h->nlmsg_len - NLMSG_LENGTH(sizeof *nd));
    const uint8_t *dst = NULL, *ll = NULL;
    for (struct rtattr *a = (struct rtattr *)((char *)nd + NLMSG_ALIGN(sizeof *nd)); RTA_OK(a, len);
         a = RTA_NEXT(a, len)) {
        if (a->rta_type == NDA_DST && RTA_PAYLOAD(a) == alen)
            dst = RTA_DATA(a);
        else if (a->rta_type == NDA_LLADDR && RTA_PAYLOAD(a) == 6)
            ll = RTA_DATA(a);
    }
    if (dst && ll && memcmp(dst, s->addr, alen) == 0) {
        memcpy(s->mac, ll, 6);
        s->found = true;
    }
}

/* ---- the uplink's own address ---- */

struct addr_search {
    int family, ifindex;
    bool found;
    uint8_t addr[16];
};

static void addr_each(struct nlmsghdr *h, void *arg)
{
    struct addr_search *s = arg;
    if (h->nlmsg_type != RTM_NEWADDR || s->found)
        return;
    struct ifaddrmsg *ifa = NLMSG_DATA(h);
    if ((int)ifa->ifa_index != s->ifindex || ifa->ifa_scope != RT_SCOPE_UNIVERSE)
        return;
    if (ifa->ifa_flags & (IFA_F_TENTATIVE | IFA_F_DADFAILED))
        return;
    size_t alen = alen_of(s->family);
    int len = (int)IFA_PAYLOAD(h);
    for (struct rtattr *a = IFA_RTA(ifa); RTA_OK(a, len); a = RTA_NEXT(a, len))
        if (a->rta_type == IFA_ADDRESS && RTA_PAYLOAD(a) == alen) {
            memcpy(s->addr, RTA_DATA(a), alen);
            s->found = true;
            return;
        }
}

/* Make the kernel resolve the gateway's MAC: a datagram to it (port 9,
 * discard) needs the neighbour entry. */
static void provoke_resolution(int family, const uint8_t *gw, int ifindex)
{
    struct sockaddr_storage ss;
    socklen_t len;
    memset(&ss, 0, sizeof ss);
    if (family == AF_INET) {
        struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
        sin->sin_family = AF_INET;
        sin->sin_port = htons(9);
        memcpy(&sin->sin_addr, gw, 4);
        len = sizeof *sin;
    } else {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons(9);
        memcpy(&sin6->sin6_addr, gw, 16);
        sin6->sin6_scope_id = (uint32_t)ifindex; /* for a link-local gateway */
        len = sizeof *sin6;
    }
    int s = socket(family, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (s < 0)
        return;
    if (connect(s, (struct sockaddr *)&ss, len) == 0)
        (void)send(s, "", 1, MSG_DONTWAIT);
    close(s);
}

static enum probe_route_rc fail(char *err, size_t errlen, const char *what)
{
    snprintf(err, errlen, "%s: %s", what, strerror(errno ? errno : EIO));
    return PROBE_ROUTE_ERROR;
}

enum probe_route_rc probe_route_resolve(int family, const uint8_t *dst, const uint8_t *gateway,
                                        struct probe_nexthop *out, char *err, size_t errlen)
{
    if (family != AF_INET && family != AF_INET6) {
        snprintf(err, errlen, "unsupported address family %d", family);
        return PROBE_ROUTE_ERROR;
    }
    size_t alen = alen_of(family);
    int fd = nl_open();
    if (fd < 0)
        return fail(err, errlen, "netlink");
    enum probe_route_rc rc = PROBE_ROUTE_ERROR;
    char text[INET6_ADDRSTRLEN];
    /* With a gateway given, the route that matters is the one to it. */
    struct route_search rs = { .family = family };
    memcpy(rs.dst, gateway ? gateway : dst, alen);
    errno = 0;
    if (route_lookup(fd, &rs) < 0) {
        rc = fail(err, errlen, "netlink route dump");
        goto out;
    }
    inet_ntop(family, rs.dst, text, sizeof text);
    if (!rs.found) {
        snprintf(err, errlen, "no route to %s in the main table", text);
        goto out;
    }
    memset(out, 0, sizeof *out);
    out->ifindex = rs.oif;
    if (gateway)
        memcpy(out->gateway, gateway, alen);
    else if (rs.has_gw)
        memcpy(out->gateway, rs.gw, alen);
    else {
        snprintf(err, errlen, "the route to %s is on-link (no gateway): set the probe gateway", text);
        goto out;
    }
    if (rs.has_src) {
        memcpy(out->source, rs.src, alen);
        out->has_source = 1;
    } else {
        struct addr_search as = { .family = family, .ifindex = rs.oif };
        struct ifaddrmsg ifa = { .ifa_family = (unsigned char)family };
        if (dump_request(fd, RTM_GETADDR, &ifa, sizeof ifa) < 0 || dump_walk(fd, addr_each, &as) < 0) {
            rc = fail(err, errlen, "netlink address dump");
            goto out;
        }
        if (as.found) {
            memcpy(out->source, as.addr, alen);
            out->has_source = 1;
        }
    }
    struct neigh_search ns = { .family = family, .ifindex = rs.oif };
    memcpy(ns.addr, out->gateway, alen);
    struct ndmsg nd = { .ndm_family = (unsigned char)family, .ndm_ifindex = rs.oif };
    if (dump_request(fd, RTM_GETNEIGH, &nd, sizeof nd) < 0 || dump_walk(fd, neigh_each, &ns) < 0) {
        rc = fail(err, errlen, "netlink neighbour dump");
        goto out;
    }
    if (ns.found) {
        memcpy(out->mac, ns.mac, 6);
        rc = PROBE_ROUTE_FOUND;
    } else {
        provoke_resolution(family, out->gateway, rs.oif);
        inet_ntop(family, out->gateway, text, sizeof text);
        snprintf(err, errlen, "next hop %s not resolved yet", text);
        rc = PROBE_ROUTE_PENDING;
    }
out:
    close(fd);
    return rc;
}
