/* Unit tests for ha/announce: the tun device the HA companion puts its
 * announced addresses on. Needs root (CAP_NET_ADMIN): the test moves
 * itself into a network namespace of its own (unshare), so nothing it
 * does is seen outside it, and the namespace goes when the test exits.
 * Without root it skips. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "ha/announce.h"

static bool in_own_netns;

static int own_netns(void **state)
{
    in_own_netns = geteuid() == 0 && unshare(CLONE_NEWNET) == 0;
    return 0;
}

/* ip is on interface ifname (getifaddrs). */
static bool has_addr(const char *ifname, const char *ip)
{
    struct ifaddrs *all, *i;
    bool found = false;
    assert_int_equal(getifaddrs(&all), 0);
    for (i = all; i && !found; i = i->ifa_next) {
        if (!i->ifa_addr || strcmp(i->ifa_name, ifname) != 0)
            continue;
        struct vip_ip got;
        char text[64];
        if (vip_ip_from_sockaddr(i->ifa_addr, &got) == 0)
            found = !strcmp(vip_ip_string(&got, text, sizeof text), ip);
    }
    freeifaddrs(all);
    return found;
}

static bool is_up(const char *ifname)
{
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct ifreq ifr = { 0 };
    snprintf(ifr.ifr_name, sizeof ifr.ifr_name, "%s", ifname);
    bool up = ioctl(fd, SIOCGIFFLAGS, &ifr) == 0 && (ifr.ifr_flags & IFF_UP);
    close(fd);
    return up;
}

static void test_addresses_live_and_die_with_the_device(void **state)
{
    if (!in_own_netns)
        skip();
    struct ha_announcer a;
    char err[256];
    struct vip_ip v4, v6;
    assert_int_equal(vip_ip_parse("10.0.0.100", &v4), 0);
    assert_int_equal(vip_ip_parse("2001:db8::100", &v6), 0);
    if (ha_announcer_open(&a, "t-ha", err, sizeof err) < 0)
        fail_msg("open: %s", err);
    assert_true(if_nametoindex("t-ha") > 0);
    assert_true(is_up("t-ha"));
    /* close-on-exec: nothing this process starts keeps it */
    assert_true(fcntl(a.tun_fd, F_GETFD) & FD_CLOEXEC);
    assert_int_equal(ha_announcer_add(&a, &v4, err, sizeof err), 0);
    assert_int_equal(ha_announcer_add(&a, &v6, err, sizeof err), 0);
    assert_int_equal(ha_announcer_add(&a, &v4, err, sizeof err), 0);   /* again: no error */
    assert_true(has_addr("t-ha", "10.0.0.100"));
    assert_true(has_addr("t-ha", "2001:db8::100"));
    assert_int_equal(ha_announcer_del(&a, &v4, err, sizeof err), 0);
    assert_false(has_addr("t-ha", "10.0.0.100"));
    assert_int_equal(ha_announcer_del(&a, &v4, err, sizeof err), 0);   /* not there: no error */
    assert_true(has_addr("t-ha", "2001:db8::100"));
    /* the same name again while it is ours: refused, with the reason */
    struct ha_announcer b;
    assert_int_equal(ha_announcer_open(&b, "t-ha", err, sizeof err), -1);
    assert_non_null(strstr(err, "t-ha"));
    ha_announcer_close(&b);
    ha_announcer_close(&a);
    /* closing the descriptor is the withdrawal: device and addresses gone */
    assert_int_equal(if_nametoindex("t-ha"), 0);
    assert_false(has_addr("t-ha", "2001:db8::100"));
    assert_int_equal(ha_announcer_add(&a, &v4, err, sizeof err), -1);
    assert_int_equal(ha_announcer_del(&a, &v4, err, sizeof err), 0);
    ha_announcer_close(&a);                                           /* twice: fine */
    /* and the name can be had again */
    assert_int_equal(ha_announcer_open(&a, "t-ha", err, sizeof err), 0);
    ha_announcer_close(&a);
}

static void test_bad_names(void **state)
{
    if (!in_own_netns)
        skip();
    struct ha_announcer a;
    char err[256];
    assert_int_equal(ha_announcer_open(&a, "a-name-far-too-long", err, sizeof err), -1);
    assert_non_null(strstr(err, "longer than 15"));
    ha_announcer_close(&a);
    /* lo exists and is not a tun device */
    assert_int_equal(ha_announcer_open(&a, "lo", err, sizeof err), -1);
    assert_non_null(strstr(err, "cannot create tun device lo"));
    ha_announcer_close(&a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_addresses_live_and_die_with_the_device),
        cmocka_unit_test(test_bad_names),
    };
    return cmocka_run_group_tests(tests, own_netns, NULL);
}
