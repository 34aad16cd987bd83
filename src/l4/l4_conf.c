/* The l4: section: see l4_conf.h. */
#include "l4/l4_conf.h"

#include "core/secret_file.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/config_walk.h"
#include "l4/bpf/forwarder_abi.h" /* the data plane's defaults: flow seed, GUE port */

/* ------------------------------------------------------------------------
 * l4: the XDP forwarder (sluice l4)
 */

static const char *const l4_mode_names[] = { "dr", "tun", "nat", "fullnat", NULL };
static const char *const l4_sched_names[] = { "maglev", "source-hash", "wrr", "rr", NULL };
static const char *const xdp_mode_names[] = { "native", "generic", NULL };
static const char *const l4_proto_names[] = { "tcp", "udp", NULL };

const char *l4_fwd_mode_name(enum l4_fwd_mode m)
{
    return (unsigned)m <= L4_FWD_FULLNAT ? l4_mode_names[m] : "unknown";
}

const char *l4_scheduler_name(enum l4_scheduler s)
{
    return (unsigned)s <= L4_SCHED_RR ? l4_sched_names[s] : "unknown";
}

/* A bare IP (no port), IPv4 or IPv6, into an sl_addr with port 0. */
static bool get_ip(struct config_ctx *c, const struct ynode *v, struct sl_addr *out)
{
    const char *s = config_scalar(c, v, "an IP address");
    if (!s)
        return false;
    struct sl_addr a = { 0 };
    struct sockaddr_in *v4 = (struct sockaddr_in *)&a.ss;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&a.ss;
    if (inet_pton(AF_INET, s, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        a.len = sizeof *v4;
        snprintf(a.text, sizeof a.text, "%s", s);
    } else if (inet_pton(AF_INET6, s, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        a.len = sizeof *v6;
        addr_ip_string((const struct sockaddr *)&a.ss, a.text, sizeof a.text);
    } else {
        config_err_at(c, v->line, "expected an IPv4 or IPv6 address without a port, got \"%s\"",
                      config_shown_str(c, s));
        return false;
    }
    *out = a;
    return true;
}

/* "10.99.0.0/24" (family 4) or "fd00:99::/96" (family 6). */
static bool get_prefix(struct config_ctx *c, const struct ynode *v, int family, struct cfg_prefix *out)
{
    const char *want = family == AF_INET ? "an IPv4 prefix like 10.99.0.0/24" : "an IPv6 prefix like fd00:99::/96";
    const char *s = config_scalar(c, v, want);
    if (!s)
        return false;
    const char *slash = strchr(s, '/');
    char host[INET6_ADDRSTRLEN + 1];
    uint32_t plen;
    unsigned max = family == AF_INET ? 32 : 128;
    size_t hlen = slash ? (size_t)(slash - s) : 0;
    struct cfg_prefix p = { .family = family };
    if (!slash || hlen == 0 || hlen >= sizeof host || config_parse_u32(slash + 1, &plen) < 0 || plen > max) {
        config_err_at(c, v->line, "expected %s (length 0 to %u), got \"%s\"", want, max, config_shown_str(c, s));
        return false;
    }
    memcpy(host, s, hlen);
    host[hlen] = '\0';
    if (inet_pton(family, host, p.addr) != 1) {
        config_err_at(c, v->line, "expected %s, got \"%s\"", want, config_shown_str(c, s));
        return false;
    }
    p.plen = (uint8_t)plen;
    *out = p;
    return true;
}

static int sl_family(const struct sl_addr *a)
{
    return a->ss.ss_family;
}

/* l4.services[].reals[] */

enum { RK_ADDRESS, RK_WEIGHT };
static const char *const l4_real_keys[] = { "address", "weight", NULL };

static void l4_real_address(struct config_ctx *c, const struct ynode *v, struct cfg_l4_real *r)
{
    /* "10.0.0.11:80", "[2001:db8::11]:80", or a bare IP (port = VIP's,
     * filled in by the service once its VIP is known). */
    const char *s = config_scalar(c, v, "an address like 10.0.0.11:80");
    const char *why = NULL;
    if (!s)
        return;
    struct sl_addr a;
    if (addr_parse(s, &a, &why) == 0) {
        r->addr = a;
        return;
    }
    struct in6_addr tmp;
    if (inet_pton(AF_INET, s, &tmp) == 1 || inet_pton(AF_INET6, s, &tmp) == 1) {
        get_ip(c, v, &r->addr);
        return;
    }
    config_err_at(c, v->line, "%s", why ? why : "invalid address");
}

static void l4_real_field(struct config_ctx *c, int key, const struct ynode *v, void *obj)
{
    struct cfg_l4_real *r = obj;
    switch (key) {
    case RK_ADDRESS:
        l4_real_address(c, v, r);
        break;
    case RK_WEIGHT:
        config_get_uint(c, v, 0, 1000000, &r->weight);
        break;
    }
}

static void parse_l4_real(struct config_ctx *c, const struct ynode *v, struct cfg_l4_real *r)
{
    r->weight = 1;
    r->line = v->line;
    if (v->kind == YNODE_SCALAR && !ynode_is_null(v)) {
        size_t mark = config_path_push(c, ".address");
        l4_real_address(c, v, r);
        config_path_pop(c, mark);
        return;
    }
    if (v->kind != YNODE_MAP) {
        config_type_error(c, v, "an address or a mapping with \"address\"");
        return;
    }
    config_walk_map(c, v, l4_real_keys, l4_real_field, r);
    if (!config_map_has_key(v, "address"))
        config_missing_key(c, v, "address");
}

/* l4.services[] */

struct l4_service_state {
    struct cfg_l4_service *s;
    int mode_line, local_line, reals_line, encap_line, discovery_line;
    size_t local_items;  /* as written, valid or not */
};

enum { SK_VIP, SK_PROTOCOL, SK_MODE, SK_SCHEDULER, SK_HEALTH_CHECK, SK_LOCAL_ADDRESSES, SK_REALS, SK_ENCAP,
       SK_DISCOVERY };
static const char *const l4_service_keys[] = {
    "vip", "protocol", "mode", "scheduler", "health_check", "local_addresses", "reals", "encapsulation",
    "discovery", NULL,
};
static const char *const l4_encap_names[] = { "ipip", "gue", NULL };

static void parse_l4_local_addrs(struct config_ctx *c, const struct ynode *v, struct cfg_l4_service *s)
{
    if (!config_expect_seq(c, v))
        return;
    s->local_addrs = config_xcalloc(v->n_items ? v->n_items : 1, sizeof *s->local_addrs);
    for (size_t i = 0; i < v->n_items; i++) {
        size_t mark = config_path_push(c, "[%zu]", i);
        if (get_ip(c, v->items[i], &s->local_addrs[s->n_local_addrs]))
            s->n_local_addrs++;
        config_path_pop(c, mark);
    }
}

static void parse_l4_reals(struct config_ctx *c, const struct ynode *v, struct cfg_l4_service *s)
{
    if (!config_expect_seq(c, v))
        return;
    if (v->n_items == 0) {
        config_err_at(c, v->line, "at least one real server is required");
        return;
    }
    s->reals = config_xcalloc(v->n_items, sizeof *s->reals);
    s->n_reals = v->n_items;
    for (size_t i = 0; i < v->n_items; i++) {
        size_t mark = config_path_push(c, "[%zu]", i);
        parse_l4_real(c, v->items[i], &s->reals[i]);
        config_path_pop(c, mark);
    }
}

static void l4_service_field(struct config_ctx *c, int key, const struct ynode *v, void *obj)
{
    struct l4_service_state *st = obj;
    struct cfg_l4_service *s = st->s;
    int e;
    switch (key) {
    case SK_VIP:
        if (config_get_addr(c, v, &s->vip) && addr_port(&s->vip) == 0) {
            config_err_at(c, v->line, "port must be a number from 1 to 65535 for a VIP");
            s->vip.len = 0;
        }
        break;
    case SK_PROTOCOL:
        if (config_get_enum(c, v, l4_proto_names, &e))
            s->proto = e == 0 ? L4_PROTO_TCP : L4_PROTO_UDP;
        break;
    case SK_MODE:
        if (config_get_enum(c, v, l4_mode_names, &e))
            s->mode = (enum l4_fwd_mode)e;
        st->mode_line = v->line;
        break;
    case SK_SCHEDULER:
        if (config_get_enum(c, v, l4_sched_names, &e))
            s->scheduler = (enum l4_scheduler)e;
        break;
    case SK_HEALTH_CHECK:
        hc_conf_parse(c, v, &s->health);
        break;
    case SK_LOCAL_ADDRESSES:
        st->local_line = config_key_line(c);
        st->local_items = v->kind == YNODE_SEQ ? v->n_items : 1;
        parse_l4_local_addrs(c, v, s);
        break;
    case SK_REALS:
        st->reals_line = config_key_line(c);
        parse_l4_reals(c, v, s);
        break;
    case SK_ENCAP:
        if (config_get_enum(c, v, l4_encap_names, &e))
            s->gue = e == 1;
        st->encap_line = config_key_line(c);
        break;
    case SK_DISCOVERY:
        st->discovery_line = config_key_line(c);
        s->discovered = true;
        discovery_conf_parse(c, v, &s->discovery);
        break;
    }
}

/* Cross-field rules once a service's keys are all read. */
static void check_l4_service(struct config_ctx *c, const struct l4_service_state *st)
{
    const struct cfg_l4_service *s = st->s;
    bool have_vip = s->vip.len != 0;
    if (s->mode == L4_FWD_FULLNAT && s->n_local_addrs == 0 && !st->local_line)
        config_err_at(c, st->mode_line, "mode fullnat needs local_addresses (the SNAT pool)");
    if (s->mode != L4_FWD_FULLNAT && st->local_line)
        config_err_in(c, st->local_line, "local_addresses", "only used with mode: fullnat (mode is %s)",
                      l4_mode_names[s->mode]);
    if (st->encap_line && s->mode != L4_FWD_TUN)
        config_err_in(c, st->encap_line, "encapsulation", "only used with mode: tun (mode is %s)",
                      l4_mode_names[s->mode]);
    if (st->local_line && s->mode == L4_FWD_FULLNAT && st->local_items == 0)
        config_err_in(c, st->local_line, "local_addresses", "at least one address is required");
    for (size_t i = 0; i < s->n_reals; i++) {
        const struct cfg_l4_real *r = &s->reals[i];
        if (!r->addr.len || !have_vip)
            continue;
        size_t mark = config_path_push(c, ".reals[%zu].address", i);
        /* DR only rewrites the MAC and TUN only wraps the packet: the
         * real receives the VIP's own port and, in DR, its family. */
        if ((s->mode == L4_FWD_DR || s->mode == L4_FWD_TUN) && addr_port(&r->addr) &&
            addr_port(&r->addr) != addr_port(&s->vip))
            config_err_at(c, r->line, "mode %s cannot change the port: use the VIP's port %u or none",
                          l4_mode_names[s->mode], addr_port(&s->vip));
        else if (s->mode != L4_FWD_TUN && sl_family(&r->addr) != sl_family(&s->vip))
            config_err_at(c, r->line, "mode %s needs a real of the VIP's address family (%s)", l4_mode_names[s->mode],
                          sl_family(&s->vip) == AF_INET ? "IPv4" : "IPv6");
        config_path_pop(c, mark);
    }
    for (size_t i = 0; i < s->n_local_addrs; i++) {
        if (have_vip && sl_family(&s->local_addrs[i]) != sl_family(&s->vip)) {
            size_t mark = config_path_push(c, ".local_addresses[%zu]", i);
            config_err_at(c, st->local_line, "a local address must be of the VIP's address family");
            config_path_pop(c, mark);
        }
    }
}

/* A real given without a port, or with port 0, takes the VIP's; the real's
 * text then names the full address, as everywhere else. */
static void fill_real_ports(struct cfg_l4_service *s)
{
    for (size_t i = 0; i < s->n_reals; i++) {
        struct sl_addr *a = &s->reals[i].addr;
        if (!a->len || addr_port(a) || !s->vip.len)
            continue;
        char ip[INET6_ADDRSTRLEN];
        uint16_t port = addr_port(&s->vip);
        if (a->ss.ss_family == AF_INET)
            ((struct sockaddr_in *)&a->ss)->sin_port = htons(port);
        else
            ((struct sockaddr_in6 *)&a->ss)->sin6_port = htons(port);
        addr_ip_string((const struct sockaddr *)&a->ss, ip, sizeof ip);
        if (a->ss.ss_family == AF_INET6)
            snprintf(a->text, sizeof a->text, "[%s]:%u", ip, port);
        else
            snprintf(a->text, sizeof a->text, "%s:%u", ip, port);
    }
}

static void check_duplicate_reals(struct config_ctx *c, const struct cfg_l4_service *s)
{
    const char **keys = config_xcalloc(s->n_reals ? s->n_reals : 1, sizeof *keys);
    for (size_t i = 0; i < s->n_reals; i++)
        keys[i] = s->reals[i].addr.len ? s->reals[i].addr.text : NULL;
    size_t *first = config_first_same(keys, s->n_reals);
    for (size_t i = 0; i < s->n_reals; i++) {
        if (first[i] == i)
            continue;
        size_t mark = config_path_push(c, ".reals[%zu]", i);
        config_err_at(c, s->reals[i].line, "duplicate real %s (first listed on line %d)", keys[i],
                      s->reals[first[i]].line);
        config_path_pop(c, mark);
    }
    free(first);
    free(keys);
}

static void parse_l4_service(struct config_ctx *c, const struct ynode *v, struct cfg_l4_service *s)
{
    struct l4_service_state st = { .s = s };
    hc_conf_defaults(&s->health);
    s->proto = L4_PROTO_TCP;
    s->mode = L4_FWD_DR;
    s->scheduler = L4_SCHED_MAGLEV;
    s->line = v->line;
    st.mode_line = v->line;
    discovery_conf_defaults(&s->discovery);
    if (!config_walk_map(c, v, l4_service_keys, l4_service_field, &st))
        return;
    if (!config_map_has_key(v, "vip"))
        config_missing_key(c, v, "vip");
    /* The reals are listed, or come from a registry service: one or the
     * other, so that nobody wonders which list wins. */
    if (st.reals_line && st.discovery_line)
        config_err_in(c, st.reals_line, "reals", "a service takes its reals from reals: or from discovery: "
                      "(line %d), not both", st.discovery_line);
    else if (!st.reals_line && !st.discovery_line)
        config_err_at(c, v->line, "missing required key \"reals\" (or \"discovery\", to take them from a "
                      "registry service)");
    fill_real_ports(s);
    check_l4_service(c, &st);
    check_duplicate_reals(c, s);
}

/* Two services on the same {VIP, port, protocol} would fight over one
 * vips map entry. */
static void check_duplicate_services(struct config_ctx *c, const struct cfg_l4 *l4)
{
    const char **keys = config_xcalloc(l4->n_services ? l4->n_services : 1, sizeof *keys);
    char (*text)[80] = config_xcalloc(l4->n_services ? l4->n_services : 1, sizeof *text);
    for (size_t i = 0; i < l4->n_services; i++) {
        const struct cfg_l4_service *s = &l4->services[i];
        if (!s->vip.len)
            continue;
        snprintf(text[i], sizeof text[i], "%s/%s", s->vip.text, s->proto == L4_PROTO_UDP ? "udp" : "tcp");
        keys[i] = text[i];
    }
    size_t *first = config_first_same(keys, l4->n_services);
    for (size_t i = 0; i < l4->n_services; i++) {
        if (first[i] == i)
            continue;
        size_t mark = config_path_push(c, "[%zu]", i);
        config_err_at(c, l4->services[i].line, "duplicate service %s (first listed on line %d)", keys[i],
                      l4->services[first[i]].line);
        config_path_pop(c, mark);
    }
    free(first);
    free(text);
    free(keys);
}

static void parse_l4_services(struct config_ctx *c, const struct ynode *v, struct cfg_l4 *l4)
{
    if (!config_expect_seq(c, v))
        return;
    l4->services = config_xcalloc(v->n_items ? v->n_items : 1, sizeof *l4->services);
    l4->n_services = v->n_items;
    for (size_t i = 0; i < v->n_items; i++) {
        size_t mark = config_path_push(c, "[%zu]", i);
        parse_l4_service(c, v->items[i], &l4->services[i]);
        config_path_pop(c, mark);
    }
    check_duplicate_services(c, l4);
}

/* A Linux interface name: 1..15 bytes, no '/', no whitespace. */
static void parse_l4_interfaces(struct config_ctx *c, const struct ynode *v, struct cfg_l4 *l4)
{
    if (!config_expect_seq(c, v))
        return;
    if (v->n_items == 0) {
        config_err_at(c, v->line, "at least one interface is required");
        return;
    }
    l4->interfaces = config_xcalloc(v->n_items, sizeof *l4->interfaces);
    for (size_t i = 0; i < v->n_items; i++) {
        size_t mark = config_path_push(c, "[%zu]", i);
        const char *s = config_scalar(c, v->items[i], "an interface name");
        bool ok = s && *s && strlen(s) < 16 && config_is_visible(s) && !strchr(s, '/');
        if (s && !ok)
            config_err_at(c, v->items[i]->line,
                          "expected an interface name (1 to 15 characters, no \"/\" or spaces), got \"%s\"",
                          config_shown_str(c, s));
        for (size_t j = 0; ok && j < l4->n_interfaces; j++) {
            if (strcmp(l4->interfaces[j], s) == 0) {
                config_err_at(c, v->items[i]->line, "duplicate interface \"%s\"", config_shown_str(c, s));
                ok = false;
            }
        }
        if (ok)
            l4->interfaces[l4->n_interfaces++] = config_xstrdup(s);
        config_path_pop(c, mark);
    }
}

/* "0x5eed1a4b" or a decimal number, 32 bits. */
static void parse_l4_seed(struct config_ctx *c, const struct ynode *v, uint32_t *out)
{
    const char *want = "a 32-bit number like 0x5eed1a4b";
    const char *s = config_scalar(c, v, want);
    if (!s)
        return;
    char *end = NULL;
    errno = 0;
    unsigned long long n = 0;
    bool ok = *s && *s != '-' && *s != '+' && *s != ' ';
    if (ok) {
        n = strtoull(s, &end, 0);
        ok = errno == 0 && end && *end == '\0' && n <= UINT32_MAX;
    }
    if (!ok) {
        config_err_at(c, v->line, "expected %s, got \"%s\"", want, config_shown_str(c, s));
        return;
    }
    *out = (uint32_t)n;
}

/* l4.sync */

enum { SYK_LISTEN, SYK_PEERS, SYK_KEY_FILE, SYK_INTERVAL, SYK_REFRESH, SYK_NODE_ID };
static const char *const l4_sync_keys[] = { "listen", "peers", "key_file", "interval", "refresh", "node_id", NULL };

static void sync_peer(struct config_ctx *c, const struct ynode *item, void *obj)
{
    struct cfg_l4_sync *y = obj;
    struct sl_addr a;
    if (!config_get_addr(c, item, &a))
        return;
    if (addr_port(&a) == 0) {
        config_err_at(c, item->line, "a peer needs a port (address:port), got \"%s\"", a.text);
        return;
    }
    for (size_t i = 0; i < y->n_peers; i++) {
        if (addr_equal(&y->peers[i], &a)) {
            config_err_at(c, item->line, "duplicate peer %s", a.text);
            return;
        }
    }
    y->peers[y->n_peers++] = a;
}

static void l4_sync_field(struct config_ctx *c, int key, const struct ynode *v, void *obj)
{
    struct cfg_l4_sync *y = obj;
    switch (key) {
    case SYK_LISTEN:
        if (config_get_addr(c, v, &y->listen) && addr_port(&y->listen) == 0) {
            config_err_at(c, v->line, "port must be a number from 1 to 65535");
            y->listen.len = 0;
        }
        break;
    case SYK_PEERS:
        config_each_item(c, v, L4_SYNC_MAX_PEERS, "peers", sync_peer, y);
        break;
    case SYK_KEY_FILE:
        if (config_get_text(c, v, "a file name", &y->key_file))
            y->key_file_line = v->line;
        break;
    case SYK_INTERVAL:
        config_get_duration(c, v, 1, 10000, &y->interval_ms);
        break;
    case SYK_REFRESH:
        config_get_duration(c, v, 1000, 3600 * 1000, &y->refresh_ms);
        break;
    case SYK_NODE_ID:
        if (config_get_uint(c, v, 1, UINT32_MAX, &y->node_id))
            y->node_id_set = true;
        break;
    }
}

/* The default node id: the listen address's last four bytes (unique
 * within a group whose nodes listen on distinct addresses of one subnet). */
static uint32_t sync_default_node_id(const struct sl_addr *a)
{
    const uint8_t *b;
    if (a->ss.ss_family == AF_INET)
        b = (const uint8_t *)&((const struct sockaddr_in *)&a->ss)->sin_addr;
    else
        b = (const uint8_t *)&((const struct sockaddr_in6 *)&a->ss)->sin6_addr + 12;
    uint32_t id = (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
    return id ? id : 1;
}

static void parse_l4_sync(struct config_ctx *c, const struct ynode *v, struct cfg_l4_sync *y)
{
    y->line = config_key_line(c);
    y->interval_ms = 50;
    y->refresh_ms = 10000;
    if (!config_walk_map(c, v, l4_sync_keys, l4_sync_field, y))
        return;
    y->enabled = true;
    if (!config_map_has_key(v, "listen"))
        config_missing_key(c, v, "listen");
    if (!config_map_has_key(v, "peers"))
        config_missing_key(c, v, "peers");
    if (!config_map_has_key(v, "key_file"))
        config_missing_key(c, v, "key_file");
    for (size_t i = 0; y->listen.len && i < y->n_peers; i++) {
        if (addr_equal(&y->peers[i], &y->listen)) {
            size_t mark = config_path_push(c, ".peers[%zu]", i);
            config_err_at(c, v->line, "%s is this node's own listen address", y->listen.text);
            config_path_pop(c, mark);
        }
    }
    if (y->listen.len && !y->node_id_set)
        y->node_id = sync_default_node_id(&y->listen);
}

int l4_sync_read_key(const char *path, uint8_t *key, size_t cap, char *err, size_t errlen)
{
    long got = secret_file_read(path, key, cap, SECRET_FILE_PRIVATE, err, errlen);
    if (got < 0)
        return -1;
    if (got && key[got - 1] == '\n')
        got--;
    if (got < L4_SYNC_KEY_MIN) {
        snprintf(err, errlen, "%s holds %ld bytes: the key needs at least %d (e.g. openssl rand -hex 32)", path,
                 got, L4_SYNC_KEY_MIN);
        return -1;
    }
    return (int)got;
}

enum { L4K_INTERFACES, L4K_XDP_MODE, L4K_SEED, L4K_SYN_CAP, L4K_TUN_SRC4, L4K_TUN_SRC6, L4K_TUN_MTU,
       L4K_MAX_SERVICES, L4K_TX_INTERFACE, L4K_GUE_PORT, L4K_SERVICES, L4K_SYNC };
static const char *const l4_keys[] = {
    "interfaces", "xdp_mode", "seed", "syn_cap", "tun_source_prefix", "tun_source_prefix6", "tun_mtu",
    "max_services", "tx_interface", "gue_port", "services", "sync", NULL,
};

static void l4_field(struct config_ctx *c, int key, const struct ynode *v, void *obj)
{
    struct cfg_l4 *l4 = obj;
    int e;
    switch (key) {
    case L4K_INTERFACES:
        parse_l4_interfaces(c, v, l4);
        break;
    case L4K_XDP_MODE:
        if (config_get_enum(c, v, xdp_mode_names, &e))
            l4->xdp_generic = e == 1;
        break;
    case L4K_SEED:
        parse_l4_seed(c, v, &l4->seed);
        break;
    case L4K_SYN_CAP:
        config_get_uint(c, v, 0, 100000000, &l4->syn_cap);
        break;
    case L4K_TUN_SRC4:
        get_prefix(c, v, AF_INET, &l4->tun_src4);
        break;
    case L4K_TUN_SRC6:
        get_prefix(c, v, AF_INET6, &l4->tun_src6);
        break;
    case L4K_TUN_MTU:
        /* 0 = no check; otherwise at least IPv6's minimum link MTU. */
        config_get_uint(c, v, 0, 65535, &l4->tun_mtu);
        if (l4->tun_mtu && l4->tun_mtu < 1280)
            config_err_at(c, v->line, "must be 0 (no check) or 1280..65535, got %u", l4->tun_mtu);
        break;
    case L4K_MAX_SERVICES:
        config_get_uint(c, v, 1, 1024, &l4->max_services);
        break;
    case L4K_GUE_PORT:
        config_get_uint(c, v, 1, 65535, &l4->gue_port);
        break;
    case L4K_TX_INTERFACE: {
        const char *s = config_scalar(c, v, "an interface name");
        if (s) {
            config_set_str(&l4->tx_interface, s);
            l4->tx_interface_line = v->line;
        }
        break;
    }
    case L4K_SERVICES:
        parse_l4_services(c, v, l4);
        break;
    case L4K_SYNC:
        parse_l4_sync(c, v, &l4->sync);
        break;
    }
}

/* TUN's outer source comes from these prefixes; without one the
 * forwarder would send from 0.0.0.0. Reported at the current path. */
static void check_tun_prefixes(struct config_ctx *c, int line, const struct cfg_l4_service *svcs, size_t n,
                               const struct cfg_prefix *src4, const struct cfg_prefix *src6)
{
    bool tun4 = false, tun6 = false;
    for (size_t i = 0; i < n; i++) {
        const struct cfg_l4_service *s = &svcs[i];
        for (size_t j = 0; s->mode == L4_FWD_TUN && j < s->n_reals; j++) {
            tun4 |= s->reals[j].addr.len && s->reals[j].addr.ss.ss_family == AF_INET;
            tun6 |= s->reals[j].addr.len && s->reals[j].addr.ss.ss_family == AF_INET6;
        }
        /* Discovered reals are not known yet: at least the VIP's family
         * (members of a family without its prefix are left out). */
        if (s->mode == L4_FWD_TUN && s->discovered) {
            tun4 |= s->vip.len && s->vip.ss.ss_family == AF_INET;
            tun6 |= s->vip.len && s->vip.ss.ss_family == AF_INET6;
        }
    }
    if (tun4 && !src4->family)
        config_err_at(c, line, "a tun service with IPv4 reals needs l4.tun_source_prefix");
    if (tun6 && !src6->family)
        config_err_at(c, line, "a tun service with IPv6 reals needs l4.tun_source_prefix6");
}

static void parse_l4(struct config_ctx *c, struct cfg_l4 *l4, const struct ynode *v)
{
    l4->present = true;
    l4->line = config_key_line(c);
    l4->seed = L4_DEFAULT_FLOW_SEED;
    l4->syn_cap = 100000;
    l4->max_services = 16;
    l4->gue_port = L4_GUE_DEFAULT_PORT;
    if (!config_walk_map(c, v, l4_keys, l4_field, l4))
        return;
    if (!config_map_has_key(v, "interfaces"))
        config_missing_key(c, v, "interfaces");
    if (l4->max_services < l4->n_services)
        l4->max_services = (uint32_t)l4->n_services;
    if (l4->tx_interface) {
        bool listed = false;
        for (size_t i = 0; i < l4->n_interfaces; i++)
            listed |= strcmp(l4->interfaces[i], l4->tx_interface) == 0;
        /* Drivers transmit XDP frames only on a device that has an XDP
         * program of its own (they set up their XDP send rings then). */
        if (!listed) {
            size_t mark = config_path_push(c, ".tx_interface");
            config_err_at(c, l4->tx_interface_line,
                          "\"%s\" must be one of l4.interfaces (the forwarder must be attached "
                          "to the interface it sends on)", config_shown_str(c, l4->tx_interface));
            config_path_pop(c, mark);
        }
    }
    check_tun_prefixes(c, l4->line, l4->services, l4->n_services, &l4->tun_src4, &l4->tun_src6);
}

const char *l4_proto_name(enum l4_proto p)
{
    return p == L4_PROTO_UDP ? "udp" : "tcp";
}

/* ------------------------------------------------------------------------
 * The section.
 */

static const char *const l4_root_keys[] = { "l4", NULL };

static void *l4_conf_create(void)
{
    return config_xcalloc(1, sizeof(struct cfg_l4));
}

static void l4_conf_parse(struct config_ctx *c, void *data, int key, const struct ynode *v)
{
    parse_l4(c, data, v);
}

void l4_conf_service_free(struct cfg_l4_service *s)
{
    discovery_conf_free(&s->discovery);
    hc_conf_free(&s->health);
    free(s->local_addrs);
    free(s->reals);
    memset(s, 0, sizeof *s);
}

int l4_conf_service_copy(struct cfg_l4_service *dst, const struct cfg_l4_service *src)
{
    *dst = *src;
    dst->local_addrs = malloc((src->n_local_addrs ? src->n_local_addrs : 1) * sizeof *dst->local_addrs);
    dst->reals = malloc((src->n_reals ? src->n_reals : 1) * sizeof *dst->reals);
    int health = hc_conf_copy(&dst->health, &src->health);
    int disc = discovery_conf_copy(&dst->discovery, &src->discovery);
    if (health < 0 || disc < 0 || !dst->local_addrs || !dst->reals) {
        if (health < 0)
            memset(&dst->health, 0, sizeof dst->health);
        l4_conf_service_free(dst);
        return -1;
    }
    if (src->n_local_addrs)
        memcpy(dst->local_addrs, src->local_addrs, src->n_local_addrs * sizeof *dst->local_addrs);
    if (src->n_reals)
        memcpy(dst->reals, src->reals, src->n_reals * sizeof *dst->reals);
    return 0;
}

static void l4_conf_free(void *data)
{
    struct cfg_l4 *l4 = data;
    if (!l4)
        return;
    for (size_t i = 0; i < l4->n_interfaces; i++)
        free(l4->interfaces[i]);
    free(l4->interfaces);
    free(l4->tx_interface);
    free(l4->sync.key_file);
    for (size_t i = 0; i < l4->n_services; i++)
        l4_conf_service_free(&l4->services[i]);
    free(l4->services);
    free(l4);
}

const struct config_section l4_conf_section = {
    .name = "l4",
    .keys = l4_root_keys,
    .create = l4_conf_create,
    .parse = l4_conf_parse,
    .free = l4_conf_free,
};

struct cfg_l4 *l4_conf(const struct sl_config *cfg)
{
    return config_section_data(cfg, &l4_conf_section);
}

/* ------------------------------------------------------------------------
 * Bodies of the admin API: a service, a real.
 */

/* A service body (config_walk_body), checked as the file's are. */
struct service_body {
    const struct cfg_l4 *running;
    struct cfg_l4_service s;
};

static void service_body(struct config_ctx *c, const struct ynode *root, void *arg)
{
    struct service_body *b = arg;
    parse_l4_service(c, root, &b->s);
    check_tun_prefixes(c, b->s.line, &b->s, 1, &b->running->tun_src4, &b->running->tun_src6);
}

int l4_conf_parse_service(const struct cfg_l4 *running, const char *text, size_t len, struct cfg_l4_service *out,
                          char *err, size_t errlen)
{
    struct service_body b = { .running = running };
    if (config_walk_body(text, len, service_body, &b, err, errlen) < 0) {
        l4_conf_service_free(&b.s);
        return -1;
    }
    *out = b.s;
    return 0;
}

/* A real body, for a running service. */
struct real_body {
    const struct cfg_l4 *running;
    const struct cfg_l4_service *svc;
    struct cfg_l4_real real;
};

static void real_body(struct config_ctx *c, const struct ynode *root, void *arg)
{
    struct real_body *b = arg;
    const struct cfg_l4_service *svc = b->svc;
    /* The real joins a copy of the service's head (VIP, protocol, mode,
     * local addresses), which is then checked as the file's services are:
     * the real's port and address family against the mode, the TUN
     * prefix its family needs. */
    size_t mark = config_path_push(c, "reals[0]");
    parse_l4_real(c, root, &b->real);
    config_path_pop(c, mark);
    struct cfg_l4_service s = { .vip = svc->vip, .proto = svc->proto, .mode = svc->mode,
                                .local_addrs = svc->local_addrs, .n_local_addrs = svc->n_local_addrs,
                                .reals = &b->real, .n_reals = 1, .line = root->line };
    struct l4_service_state st = { .s = &s, .mode_line = root->line, .reals_line = root->line,
                                   .local_line = svc->n_local_addrs ? root->line : 0,
                                   .local_items = svc->n_local_addrs };
    fill_real_ports(&s);
    check_l4_service(c, &st);
    check_tun_prefixes(c, root->line, &s, 1, &b->running->tun_src4, &b->running->tun_src6);
}

int l4_conf_parse_real(const struct cfg_l4 *running, const struct cfg_l4_service *svc, const char *text, size_t len,
                       struct cfg_l4_real *out, char *err, size_t errlen)
{
    struct real_body b = { .running = running, .svc = svc };
    if (config_walk_body(text, len, real_body, &b, err, errlen) < 0)
        return -1;
    *out = b.real;
    return 0;
}
