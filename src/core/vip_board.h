/* The VIP board: which addresses this daemon serves, and how well.
 *
 * One per daemon (struct daemon's `vips`), tier-agnostic. The serving
 * tier publishes an entry per (owner, address): `sluice l4` one per
 * service VIP ("tcp:10.0.0.100:80") and one per FullNAT local address,
 * `sluice proxy`'s master one per listener ("listener web"); l4's sync
 * publishes its peers' local addresses as stand-ins. A companion (the HA
 * tier) subscribes and turns the board into announcements; the board
 * itself knows nothing of BGP.
 *
 * The verdict for an address (vip_board_verdicts) is:
 *
 *   announce   at least one entry for it is serving and, for a service
 *              entry, has at least min_healthy healthy reals: one service
 *              without reals must not take the other ports of the same
 *              VIP off the network;
 *   standin    announced only through stand-in entries (a peer's FullNAT
 *              local address): the announcer gives it a much worse path;
 *   otherwise  withdrawn, with the reason: nothing serving it, or too few
 *              healthy reals (the best service's n of m).
 *
 * Changes are coalesced: subscribers are called once, from the event
 * loop, after any number of publications in one turn, and only when
 * something changed.
 */
#ifndef SLUICE_CORE_VIP_BOARD_H
#define SLUICE_CORE_VIP_BOARD_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/evloop.h"

#define VIP_OWNER_MAX 96
#define VIP_SOURCE_MAX 24
#define VIP_MAX_SUBSCRIBERS 4

enum vip_kind {
    VIP_SERVICE,   /* a VIP (or listener address) clients connect to */
    VIP_LOCAL,     /* this node's FullNAT local address: replies come back to it */
    VIP_STANDIN,   /* a peer's local address this node can serve (synced flows) */
};

/* An IPv4 or IPv6 address, no port. */
struct vip_ip {
    int family;                /* AF_INET or AF_INET6 */
    union {
        struct in_addr v4;
        struct in6_addr v6;
    };
};

struct vip_entry {
    char source[VIP_SOURCE_MAX]; /* the publisher: "l4", "proxy", "l4 sync" */
    char owner[VIP_OWNER_MAX];   /* "tcp:10.0.0.100:80", "listener web" */
    struct vip_ip addr;
    enum vip_kind kind;
    uint32_t healthy, total;     /* reals (backends): healthy and in all */
    bool serving;                /* the data path serves it now */
    uint8_t proto;               /* a service's IPPROTO_TCP or IPPROTO_UDP; 0 for local and stand-in entries */
    uint16_t port;               /* a service's port (host order); 0 for local and stand-in entries */
};

enum vip_reason {
    VIP_ANNOUNCE,
    VIP_NOT_SERVING,         /* no entry for it is serving */
    VIP_TOO_FEW_HEALTHY,     /* serving, but no service has min_healthy healthy reals */
};

struct vip_verdict {
    struct vip_ip addr;
    enum vip_reason reason;
    bool standin;            /* announced only as a stand-in (or, withdrawn: only stand-in entries) */
    bool local_only;         /* announced through this node's local entries and no service entry */
    uint32_t healthy, total; /* the best serving service entry's (for "too few healthy (n/m)") */
    char owners[256];        /* its owners, ", "-separated (cut with "..." when long) */
};

struct vip_board;
typedef void (*vip_board_cb)(struct vip_board *b, void *arg);

/* A flow as a client sent it: src = the client, dst = the VIP. Ports in
 * host order. */
struct vip_flow {
    struct vip_ip src, dst;
    uint16_t sport, dport;
    uint8_t proto;               /* IPPROTO_TCP, IPPROTO_UDP */
};

/* "Did this node forward flow f, with a packet since since_ns
 * (CLOCK_MONOTONIC ns)?": 1 yes, 0 no, -1 cannot tell (a map or netlink
 * error). A publisher registers one (the l4 tier answers from its
 * connection tables, the proxy from sock_diag) so that a companion can
 * tell which of its VIP probes went through this node without knowing the
 * tier. Called from the loop; it may block briefly (a netlink query). */
typedef int (*vip_forwarded_fn)(void *arg, const struct vip_flow *f, uint64_t since_ns);

struct vip_board {
    struct vip_entry *entries;
    size_t n, cap;
    uint64_t version;        /* bumped by every change */
    struct ev_loop *loop;    /* NULL: subscribers are called at once */
    struct ev_timer notify;  /* a zero timer: one call per loop turn */
    struct {
        vip_board_cb cb;
        void *arg;
    } subs[VIP_MAX_SUBSCRIBERS];
    struct {
        vip_forwarded_fn fn;
        void *arg;
    } forwarded[VIP_MAX_SUBSCRIBERS];
};

/* An empty board whose subscribers are called from loop (NULL in tests
 * that want them called synchronously). */
void vip_board_init(struct vip_board *b, struct ev_loop *loop);
void vip_board_fini(struct vip_board *b);

/* Add or update the entry of (e->owner, e->addr). Returns 0, or -1 out of
 * memory (nothing changed). */
int vip_board_publish(struct vip_board *b, const struct vip_entry *e);
/* Remove every entry of owner. */
void vip_board_remove(struct vip_board *b, const char *owner);
/* Make source's entries exactly entries[0..n) (their source is set to
 * it): the way a tier publishes its whole model after each change.
 * Returns 0, or -1 out of memory (nothing changed). */
int vip_board_replace(struct vip_board *b, const char *source, const struct vip_entry *entries, size_t n);

/* Call cb(b, arg) after changes. Returns 0, or -1 when all slots are taken. */
int vip_board_subscribe(struct vip_board *b, vip_board_cb cb, void *arg);
void vip_board_unsubscribe(struct vip_board *b, vip_board_cb cb, void *arg);

/* Register (fn != NULL) or remove (fn == NULL) a publisher's forwarded
 * predicate, identified by arg. Returns 0, or -1 when all slots are taken. */
int vip_board_set_forwarded(struct vip_board *b, vip_forwarded_fn fn, void *arg);
/* Ask every registered predicate: 1 if one says yes, else 0 if one says
 * no, else -1 (none registered, or none could tell). */
int vip_board_forwarded(const struct vip_board *b, const struct vip_flow *f, uint64_t since_ns);
/* Whether any predicate is registered. */
bool vip_board_has_forwarded(const struct vip_board *b);

/* One verdict per distinct address on the board, in the order addresses
 * were first published. *out is malloc'ed (free it); NULL with *n == 0
 * when the board is empty. Returns 0, or -1 out of memory. */
int vip_board_verdicts(const struct vip_board *b, uint32_t min_healthy, struct vip_verdict **out, size_t *n);

/* "10.0.0.100", "2001:db8::1". */
const char *vip_ip_string(const struct vip_ip *ip, char *buf, size_t cap);
/* Parse an address without a port. Returns 0 or -1. */
int vip_ip_parse(const char *s, struct vip_ip *out);
/* From a socket address (its port is dropped). Returns 0, or -1 for
 * other families. */
int vip_ip_from_sockaddr(const struct sockaddr *sa, struct vip_ip *out);
bool vip_ip_equal(const struct vip_ip *a, const struct vip_ip *b);
/* 0.0.0.0 or :: : a wildcard listener, which cannot be announced. */
bool vip_ip_is_any(const struct vip_ip *ip);

const char *vip_kind_name(enum vip_kind k);   /* "service", "local", "standin" */

#endif
