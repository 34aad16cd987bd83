/* What pool_dyn.c (configuration, members, the API's changes) and
 * pool_resolve.c (the DNS queries and answers) share: the state of a
 * struct pool_dyn. Only those two files include this. */
#ifndef SLUICE_PROXY_POOL_DYN_PRIV_H
#define SLUICE_PROXY_POOL_DYN_PRIV_H

#include "lib/dns_client.h"
#include "proxy/pool_dyn.h"

#define TICK_MS 100
#define MAX_SYS_RESOLVERS 3
#define RESOLV_CONF "/etc/resolv.conf"

enum { Q_A, Q_AAAA, Q_N };   /* the two queries of a resolution */

/* One name of one pool, and its resolution. */
struct dyn_name {
    char *pool, *host;
    struct cfg_resolve conf;          /* the pool's resolve: block */
    struct dns_name qname;
    struct dns_answer_addr addrs[DNS_ANSWER_MAX_ADDRS];
    size_t n_addrs;
    bool resolved;                    /* it had a good answer once */
    uint32_t ttl_ms;                  /* of the last good answer, bounded */
    uint64_t next_ms;                 /* when to ask again (idle) */
    uint64_t last_ok_ms;
    /* the query in flight */
    bool busy;
    int fd;                           /* this try's socket, -1 when idle */
    struct ev_io io;
    struct pool_dyn *owner;
    unsigned try_no;
    uint64_t deadline_ms;
    struct sl_addr server;
    uint16_t id[Q_N];
    bool answered[Q_N];
    struct dns_answer ans[Q_N];
    /* counts */
    uint64_t ok_total, failed_total;
    bool failing;                     /* in a failure streak (said once) */
    char last_error[96];
    bool used;                        /* pool_dyn_retain's mark */
};

/* The API's changes to one pool. */
struct dyn_pool {
    char *name;
    char *fingerprint;                /* the file's backends of the pool when the changes were made */
    struct slot_member *added;
    size_t n_added;
    struct sl_addr *removed;
    size_t n_removed;
    bool used;
};

struct pool_dyn {
    struct ev_loop *loop;
    struct ev_timer timer;
    struct dyn_name **names;
    size_t n_names;
    struct dyn_pool **pools;
    size_t n_pools;
    struct sl_addr sys[MAX_SYS_RESOLVERS];
    size_t n_sys;
    uint64_t version;
    void (*notify)(void *arg);
    void *notify_arg;
};

/* pool_resolve.c */

/* The resolver's timer (every TICK_MS, and once at each configuration):
 * ask the names that are due, give up on tries past their deadline. */
void pool_resolve_tick(struct ev_loop *loop, struct ev_timer *t);
/* d->sys from /etc/resolv.conf's nameserver lines. */
void pool_resolve_read_conf(struct pool_dyn *d);
/* Close the query sockets (every name's; one name's). */
void pool_resolve_close(struct pool_dyn *d);
void pool_resolve_forget(struct pool_dyn *d, struct dyn_name *n);
/* An answer's address with a port, as a backend address. */
void pool_dyn_addr_from_answer(struct sl_addr *out, const struct dns_answer_addr *a, uint16_t port);

#endif
