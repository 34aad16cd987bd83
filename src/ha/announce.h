/* Announcing = addresses on a tun device this process owns.
 *
 * The device is opened on /dev/net/tun without IFF_PERSIST (and with
 * O_CLOEXEC, so neither BIRD nor anything else this process starts keeps
 * it; the proxy master's workers close every descriptor they do not need
 * when forked): when the process dies, kill -9 included, the kernel
 * closes the descriptor, the device and its addresses vanish, and BIRD's
 * `protocol direct` on that interface withdraws their routes. No
 * announcement outlives the daemon, and no watchdog is needed.
 *
 * Each announced address is a /32 (IPv4) or /128 (IPv6) on the device,
 * added and removed over rtnetlink (RTM_NEWADDR / RTM_DELADDR), with
 * IFA_F_NOPREFIXROUTE (the host route BIRD exports is made by BIRD from
 * the address; the kernel needs no prefix route of its own) and, for
 * IPv6, IFA_F_NODAD (no duplicate detection delay: the same VIP is on
 * every node of the group on purpose).
 *
 * The HA companion keeps two: ha.interface for this node's own addresses,
 * and ha.interface + "-s" for stand-in addresses (bird_conf.h exports the
 * second class with a much worse path).
 */
#ifndef SLUICE_HA_ANNOUNCE_H
#define SLUICE_HA_ANNOUNCE_H

#include <net/if.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/vip_board.h"

struct ha_announcer {
    int tun_fd;                  /* -1: closed */
    int nl_fd;                   /* rtnetlink, for the device's state and addresses */
    uint32_t nl_seq;
    int ifindex;
    char name[IFNAMSIZ];
};

/* Create the tun device `name`, up, with no address. Returns 0, or -1
 * with a reason in err (no /dev/net/tun, not permitted, the name in use
 * by another device or process). */
int ha_announcer_open(struct ha_announcer *a, const char *name, char *err, size_t errlen);

/* Put ip on the device as a host address (/32, /128); an address already
 * there is not an error. Returns 0, or -1 with a reason in err. */
int ha_announcer_add(struct ha_announcer *a, const struct vip_ip *ip, char *err, size_t errlen);

/* Take ip off the device; one that is not there is not an error. */
int ha_announcer_del(struct ha_announcer *a, const struct vip_ip *ip, char *err, size_t errlen);

/* Close the device: it vanishes with every address on it. Safe on a
 * closed or never-opened announcer (set tun_fd and nl_fd to -1 first, or
 * use ha_announcer_init). */
void ha_announcer_close(struct ha_announcer *a);

void ha_announcer_init(struct ha_announcer *a);
static inline bool ha_announcer_is_open(const struct ha_announcer *a) { return a->tun_fd >= 0; }

#endif
