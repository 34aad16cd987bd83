/* See announce.h. */
#include "ha/announce.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/if_addr.h>
#include <linux/if_tun.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

void ha_announcer_init(struct ha_announcer *a)
{
    memset(a, 0, sizeof *a);
    a->tun_fd = a->nl_fd = -1;
}

/* One rtnetlink request, answered by its ACK. Returns 0 or -errno. */
static int nl_talk(struct ha_announcer *a, struct nlmsghdr *req)
{
    req->nlmsg_seq = ++a->nl_seq;
    req->nlmsg_flags |= NLM_F_REQUEST | NLM_F_ACK;
    struct sockaddr_nl kernel = { .nl_family = AF_NETLINK };
    if (sendto(a->nl_fd, req, req->nlmsg_len, 0, (struct sockaddr *)&kernel, sizeof kernel) < 0)
        return -errno;
    for (;;) {
        char buf[4096];
        ssize_t n = recv(a->nl_fd, buf, sizeof buf, 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        for (struct nlmsghdr *h = (struct nlmsghdr *)buf; NLMSG_OK(h, (size_t)n); h = NLMSG_NEXT(h, n)) {
            if (h->nlmsg_seq != a->nl_seq || h->nlmsg_type != NLMSG_ERROR)
                continue;   /* an older request's late answer */
            const struct nlmsgerr *e = NLMSG_DATA(h);
            return e->error;   /* 0: the ACK; else -errno */
        }
    }
}

static void add_attr(struct nlmsghdr *h, size_t cap, unsigned short type, const void *data, size_t len)
{
    struct rtattr *rta = (struct rtattr *)((char *)h + NLMSG_ALIGN(h->nlmsg_len));
    size_t need = RTA_SPACE(len);
    if (NLMSG_ALIGN(h->nlmsg_len) + need > cap)
        return;   /* not reached: the buffers below are sized for their attributes */
    rta->rta_type = type;
    rta->rta_len = (unsigned short)RTA_LENGTH(len);
    memcpy(RTA_DATA(rta), data, len);
    h->nlmsg_len = (uint32_t)(NLMSG_ALIGN(h->nlmsg_len) + need);
}

static int set_up(struct ha_announcer *a)
{
    struct {
        struct nlmsghdr h;
        struct ifinfomsg ifi;
    } req = { .h = { .nlmsg_len = NLMSG_LENGTH(sizeof(struct ifinfomsg)), .nlmsg_type = RTM_NEWLINK },
              .ifi = { .ifi_family = AF_UNSPEC, .ifi_index = a->ifindex, .ifi_flags = IFF_UP,
                       .ifi_change = IFF_UP } };
    return nl_talk(a, &req.h);
}

int ha_announcer_open(struct ha_announcer *a, const char *name, char *err, size_t errlen)
{
    ha_announcer_init(a);
    if (strlen(name) >= IFNAMSIZ) {
        snprintf(err, errlen, "interface name %s is longer than %d characters", name, IFNAMSIZ - 1);
        return -1;
    }
    snprintf(a->name, sizeof a->name, "%s", name);
    a->tun_fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC | O_NONBLOCK);
    if (a->tun_fd < 0) {
        snprintf(err, errlen, "/dev/net/tun: %s", strerror(errno));
        return -1;
    }
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    ifr.ifr_flags = IFF_TUN | IFF_NO_PI;   /* no IFF_PERSIST: the device dies with us */
    snprintf(ifr.ifr_name, sizeof ifr.ifr_name, "%s", name);
    if (ioctl(a->tun_fd, TUNSETIFF, &ifr) < 0) {
        int e = errno;
        snprintf(err, errlen, "cannot create tun device %s: %s%s", name, strerror(e),
                 e == EBUSY || e == EINVAL ? " (a device of that name exists: another sluice, or not a tun "
                                             "device?)" : "");
        ha_announcer_close(a);
        return -1;
    }
    a->ifindex = (int)if_nametoindex(name);
    a->nl_fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
    if (a->ifindex == 0 || a->nl_fd < 0) {
        snprintf(err, errlen, "tun device %s: %s", name, strerror(errno));
        ha_announcer_close(a);
        return -1;
    }
    int rc = set_up(a);
    if (rc < 0) {
        snprintf(err, errlen, "cannot set %s up: %s", name, strerror(-rc));
        ha_announcer_close(a);
        return -1;
    }
    return 0;
}

static int change_addr(struct ha_announcer *a, int type, const struct vip_ip *ip)
{
    struct {
        struct nlmsghdr h;
        struct ifaddrmsg ifa;
        char attrs[128];
    } req;
    memset(&req, 0, sizeof req);
    req.h.nlmsg_len = NLMSG_LENGTH(sizeof(struct ifaddrmsg));
    req.h.nlmsg_type = (uint16_t)type;
    if (type == RTM_NEWADDR)
        req.h.nlmsg_flags = NLM_F_CREATE | NLM_F_REPLACE;
    bool v4 = ip->family == AF_INET;
    req.ifa.ifa_family = (uint8_t)ip->family;
    req.ifa.ifa_prefixlen = v4 ? 32 : 128;
    req.ifa.ifa_scope = RT_SCOPE_UNIVERSE;
    req.ifa.ifa_index = (uint32_t)a->ifindex;
    const void *raw = v4 ? (const void *)&ip->v4 : (const void *)&ip->v6;
    size_t len = v4 ? sizeof ip->v4 : sizeof ip->v6;
    add_attr(&req.h, sizeof req, IFA_LOCAL, raw, len);
    add_attr(&req.h, sizeof req, IFA_ADDRESS, raw, len);
    if (type == RTM_NEWADDR) {
        uint32_t flags = IFA_F_NOPREFIXROUTE | (v4 ? 0 : IFA_F_NODAD);
        req.ifa.ifa_flags = (uint8_t)flags;
        add_attr(&req.h, sizeof req, IFA_FLAGS, &flags, sizeof flags);
    }
    return nl_talk(a, &req.h);
}

int ha_announcer_add(struct ha_announcer *a, const struct vip_ip *ip, char *err, size_t errlen)
{
    char text[64];
    if (a->tun_fd < 0) {
        snprintf(err, errlen, "%s is closed", a->name);
        return -1;
    }
    int rc = change_addr(a, RTM_NEWADDR, ip);
    if (rc < 0 && rc != -EEXIST) {
        snprintf(err, errlen, "cannot add %s to %s: %s", vip_ip_string(ip, text, sizeof text), a->name,
                 strerror(-rc));
        return -1;
    }
    return 0;
}

int ha_announcer_del(struct ha_announcer *a, const struct vip_ip *ip, char *err, size_t errlen)
{
    char text[64];
    if (a->tun_fd < 0)
        return 0;   /* closed: nothing is on it */
    int rc = change_addr(a, RTM_DELADDR, ip);
    if (rc < 0 && rc != -EADDRNOTAVAIL && rc != -ENOENT && rc != -ESRCH) {
        snprintf(err, errlen, "cannot remove %s from %s: %s", vip_ip_string(ip, text, sizeof text), a->name,
                 strerror(-rc));
        return -1;
    }
    return 0;
}

void ha_announcer_close(struct ha_announcer *a)
{
    if (a->tun_fd >= 0)
        close(a->tun_fd);
    if (a->nl_fd >= 0)
        close(a->nl_fd);
    a->tun_fd = a->nl_fd = -1;
}
