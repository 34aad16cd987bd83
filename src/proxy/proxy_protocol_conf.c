/* listeners[].proxy_protocol, trusted_proxies, x_real_ip, forwarded and
 * pools[].send_proxy: see proxy_protocol_conf.h. */
#include "proxy/proxy_protocol_conf.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/proxy_header.h"

#define MAX_TRUSTED 256

const char *const pp_listener_keys[PPK_COUNT] = {
    [PPK_PROXY_PROTOCOL] = "proxy_protocol",
    [PPK_TRUSTED_PROXIES] = "trusted_proxies",
    [PPK_X_REAL_IP] = "x_real_ip",
    [PPK_FORWARDED] = "forwarded",
};

static const char *const accept_names[] = {"off", "v1", "v2", "any", NULL};
static const char *const send_names[] = {"off", "v1", "v2", NULL};

int pp_cidr_parse(const char *s, struct cfg_cidr *out, char *err, size_t errlen)
{
    char text[INET6_ADDRSTRLEN + 8];
    if (strlen(s) >= sizeof text) {
        snprintf(err, errlen, "expected an address or ADDRESS/PREFIX");
        return -1;
    }
    strcpy(text, s);
    char *slash = strchr(text, '/');
    if (slash)
        *slash = '\0';
    memset(out, 0, sizeof *out);
    if (inet_pton(AF_INET, text, out->addr) == 1) {
        out->family = AF_INET;
    } else if (inet_pton(AF_INET6, text, out->addr) == 1) {
        out->family = AF_INET6;
    } else {
        snprintf(err, errlen, "expected an IPv4 or IPv6 address or ADDRESS/PREFIX");
        return -1;
    }
    unsigned max = out->family == AF_INET ? 32 : 128, prefix = max;
    if (slash) {
        const char *d = slash + 1;
        char *end;
        unsigned long v = strtoul(d, &end, 10);
        if (!*d || *end || d[0] == '+' || d[0] == '-' || (d[0] == '0' && d[1]) || v > max) {
            snprintf(err, errlen, "the prefix length must be a number from 0 to %u", max);
            return -1;
        }
        prefix = (unsigned)v;
    }
    out->prefix = (uint8_t)prefix;
    /* Bits past the prefix set: a typo as often as not ("10.1.2.3/8"). */
    for (unsigned bit = prefix; bit < max; bit++) {
        if (out->addr[bit / 8] & (0x80 >> (bit % 8))) {
            snprintf(err, errlen, "address bits past the /%u prefix are set", prefix);
            return -1;
        }
    }
    return 0;
}

bool pp_cidr_match(const struct cfg_cidr *list, size_t n, const struct sockaddr *sa)
{
    uint8_t a[16];
    int family;
    if (sa->sa_family == AF_INET) {
        family = AF_INET;
        memcpy(a, &((const struct sockaddr_in *)sa)->sin_addr, 4);
    } else if (sa->sa_family == AF_INET6) {
        const struct in6_addr *a6 = &((const struct sockaddr_in6 *)sa)->sin6_addr;
        if (IN6_IS_ADDR_V4MAPPED(a6)) {
            family = AF_INET;
            memcpy(a, &a6->s6_addr[12], 4);
        } else {
            family = AF_INET6;
            memcpy(a, a6, 16);
        }
    } else {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        const struct cfg_cidr *c = &list[i];
        if (c->family != family)
            continue;
        unsigned full = c->prefix / 8, rest = c->prefix % 8;
        if (memcmp(a, c->addr, full) != 0)
            continue;
        if (rest && ((a[full] ^ c->addr[full]) & (uint8_t)(0xff << (8 - rest))))
            continue;
        return true;
    }
    return false;
}

static void trusted_one(struct config_ctx *c, const struct ynode *item, void *obj)
{
    struct cfg_client_addr *ca = obj;
    ca->n_trusted_items++;
    const char *s = config_scalar(c, item, "an address or ADDRESS/PREFIX");
    if (!s)
        return;
    struct cfg_cidr cidr;
    char err[128];
    if (pp_cidr_parse(s, &cidr, err, sizeof err) < 0) {
        config_err_at(c, item->line, "%s, got \"%s\"", err, config_shown_str(c, s));
        return;
    }
    ca->trusted = realloc(ca->trusted, (ca->n_trusted + 1) * sizeof *ca->trusted);
    if (!ca->trusted)
        abort();
    ca->trusted[ca->n_trusted++] = cidr;
}

void pp_conf_listener_field(struct config_ctx *c, int key, const struct ynode *v, struct cfg_client_addr *ca)
{
    int e;
    switch (key) {
    case PPK_PROXY_PROTOCOL:
        ca->proxy_protocol_line = config_key_line(c);
        if (config_get_enum(c, v, accept_names, &e))
            ca->proxy_protocol = e == 0 ? 0 : e == 1 ? PROXY_HDR_ACCEPT_V1 : e == 2 ? PROXY_HDR_ACCEPT_V2
                                                                                   : PROXY_HDR_ACCEPT_ANY;
        break;
    case PPK_TRUSTED_PROXIES:
        config_each_item(c, v, MAX_TRUSTED, "trusted proxies", trusted_one, ca);
        break;
    case PPK_X_REAL_IP:
        ca->x_real_ip_line = config_key_line(c);
        config_get_bool(c, v, &ca->x_real_ip);
        break;
    case PPK_FORWARDED:
        ca->forwarded_line = config_key_line(c);
        config_get_bool(c, v, &ca->forwarded);
        break;
    }
}

void pp_conf_check_listener(struct config_ctx *c, const struct ynode *v, const struct cfg_listener *l)
{
    const struct cfg_client_addr *ca = &l->client_addr;
    if (ca->proxy_protocol && l->proto == PROTO_UDP)
        config_err_in(c, ca->proxy_protocol_line, "proxy_protocol", "only for http and tcp listeners (protocol is udp)");
    else if (ca->proxy_protocol && !ca->n_trusted_items) /* absent or empty; a bad entry is reported already */
        config_err_in(c, ca->proxy_protocol_line, "proxy_protocol",
                      "needs trusted_proxies: the addresses allowed to send the header (anyone else could "
                      "claim any client address)");
    if (ca->x_real_ip && l->proto != PROTO_HTTP)
        config_err_in(c, ca->x_real_ip_line, "x_real_ip", "only for http listeners");
    if (ca->forwarded && l->proto != PROTO_HTTP)
        config_err_in(c, ca->forwarded_line, "forwarded", "only for http listeners");
}

void pp_conf_free(struct cfg_client_addr *ca)
{
    free(ca->trusted);
    ca->trusted = NULL;
    ca->n_trusted = 0;
}

void pp_conf_send_proxy(struct config_ctx *c, const struct ynode *v, enum send_proxy *out)
{
    int e;
    if (config_get_enum(c, v, send_names, &e))
        *out = (enum send_proxy)e;
}
