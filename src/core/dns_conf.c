/* See dns_conf.h. */
#include "core/dns_conf.h"

struct listen_list {
    struct sl_addr *addrs;
    size_t *n;
};

static void listen_one(struct config_ctx *c, const struct ynode *item, void *obj)
{
    struct listen_list *l = obj;
    struct sl_addr a;
    if (!config_get_addr(c, item, &a))
        return;
    /* A resolver is told an address with a port: 0 ("any") would leave
     * the clients not knowing where to ask. */
    if (addr_port(&a) == 0) {
        config_err_at(c, item->line, "port must be a number from 1 to 65535");
        return;
    }
    l->addrs[(*l->n)++] = a;
}

void dns_conf_listen(struct config_ctx *c, const struct ynode *v, struct sl_addr *listen, size_t max, size_t *n)
{
    struct listen_list l = { .addrs = listen, .n = n };
    *n = 0;
    config_each_item(c, v, max, "listen addresses", listen_one, &l);
}

struct dns_conf_tcp {
    uint32_t *max_conns;
    uint32_t *idle_ms;
};

enum { TK_MAX_CONNS, TK_IDLE };
static const char *const tcp_keys[] = { "max_conns", "idle", NULL };

static void tcp_field(struct config_ctx *c, int key, const struct ynode *v, void *obj)
{
    struct dns_conf_tcp *t = obj;
    if (key == TK_MAX_CONNS)
        config_get_uint(c, v, 1, 1000000, t->max_conns);
    else
        config_get_duration(c, v, 100, CONFIG_HOUR, t->idle_ms);
}

void dns_conf_tcp(struct config_ctx *c, const struct ynode *v, uint32_t *max_conns, uint32_t *idle_ms)
{
    struct dns_conf_tcp t = { .max_conns = max_conns, .idle_ms = idle_ms };
    config_walk_map(c, v, tcp_keys, tcp_field, &t);
}
