/* The keys of the client's address in and out (struct cfg_client_addr and
 * cfg_pool.send_proxy in proxy_conf.h): listeners[].proxy_protocol,
 * trusted_proxies, x_real_ip, forwarded, and pools[].send_proxy. See
 * docs/configuration.md ("Client address: PROXY protocol and forwarding
 * headers"). */
#ifndef SLUICE_PROXY_PROXY_PROTOCOL_CONF_H
#define SLUICE_PROXY_PROXY_PROTOCOL_CONF_H

#include <sys/socket.h>

#include "core/config_walk.h"
#include "proxy/proxy_conf.h"

/* The listener keys this file owns, in the order of pp_listener_keys. */
enum { PPK_PROXY_PROTOCOL, PPK_TRUSTED_PROXIES, PPK_X_REAL_IP, PPK_FORWARDED, PPK_COUNT };
extern const char *const pp_listener_keys[PPK_COUNT];

/* One of the listener keys above (key: PPK_*). */
void pp_conf_listener_field(struct config_ctx *c, int key, const struct ynode *v, struct cfg_client_addr *ca);
/* Rules between them and the listener's protocol, once all keys are read. */
void pp_conf_check_listener(struct config_ctx *c, const struct ynode *v, const struct cfg_listener *l);
void pp_conf_free(struct cfg_client_addr *ca);

/* "send_proxy: off | v1 | v2" of a pool. */
void pp_conf_send_proxy(struct config_ctx *c, const struct ynode *v, enum send_proxy *out);

/* "10.0.0.0/8", "2001:db8::/32" or one address. 0, or -1 with a reason. */
int pp_cidr_parse(const char *s, struct cfg_cidr *out, char *err, size_t errlen);
/* Whether sa (IPv4-mapped IPv6 counts as IPv4) is in one of the blocks. */
bool pp_cidr_match(const struct cfg_cidr *list, size_t n, const struct sockaddr *sa);

#endif
