/* The configuration of a DNS listener, as sluice registry (registry.dns)
 * and sluice agent (agent) both take it: the listen addresses and the tcp:
 * block. One parser, so the two accept the same values with the same
 * errors. The sections keep their own keys around these (zone, udp_max...). */
#ifndef SLUICE_CORE_DNS_CONF_H
#define SLUICE_CORE_DNS_CONF_H

#include <stddef.h>
#include <stdint.h>

#include "core/config_walk.h"

#define DNS_CONF_TCP_MAX_CONNS 1000        /* tcp.max_conns by default */
#define DNS_CONF_TCP_IDLE_MS 10000         /* tcp.idle by default */

/* listen: an address or a list of at most max, each with a port (1 to
 * 65535). Replaces what *n held; a wrong item is reported and left out. */
void dns_conf_listen(struct config_ctx *c, const struct ynode *v, struct sl_addr *listen, size_t max, size_t *n);

/* tcp: { max_conns: 1..1000000, idle: 100ms..1h }. */
void dns_conf_tcp(struct config_ctx *c, const struct ynode *v, uint32_t *max_conns, uint32_t *idle_ms);

#endif
