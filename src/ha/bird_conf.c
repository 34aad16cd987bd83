/* BIRD's configuration for the ha: section: see bird_conf.h. Every string
 * that reaches the text was checked by ha_conf.c to be quotable in BIRD's
 * config (no '"', no control characters; interface names without
 * wildcards). */
#include "ha/bird_conf.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

void bird_conf_standin_ifname(const struct cfg_ha *h, char *buf, size_t cap)
{
    snprintf(buf, cap, "%s%s", h->interface, HA_STANDIN_SUFFIX);
}

/* prefix + the neighbor's address with '.' and ':' as '_'. */
static void neighbor_symbol(const char *prefix, const struct cfg_ha_neighbor *n, char *buf, size_t cap)
{
    size_t o = (size_t)snprintf(buf, cap, "%s", prefix);
    for (const char *p = n->address.text; *p && o + 1 < cap; p++)
        buf[o++] = (*p == '.' || *p == ':') ? '_' : *p;
    if (o < cap)
        buf[o] = '\0';
}

void bird_conf_bgp_name(const struct cfg_ha_neighbor *n, char *buf, size_t cap)
{
    neighbor_symbol(BIRD_BGP_PREFIX, n, buf, cap);
}

void bird_conf_export_name(const struct cfg_ha_neighbor *n, char *buf, size_t cap)
{
    neighbor_symbol(BIRD_FILTER_EXPORT_PREFIX, n, buf, cap);
}

static void write_header(const struct cfg_ha *h, const char *source, struct strbuf *out)
{
    /* The file name goes into a comment: keep it on one line. */
    strbuf_puts(out, "# BIRD configuration written by Sluice from the ha: section of ");
    for (const char *p = source ? source : "its configuration"; *p; p++)
        strbuf_put(out, (unsigned char)*p < 0x20 || *p == 0x7f ? "?" : p, 1);
    strbuf_puts(out, ".\n# Do not edit: Sluice rewrites it. `sluice ha config -c FILE` prints it.\n");
    if (h->bird.mode == HA_BIRD_EXTERNAL)
        strbuf_printf(out, "# Mode external: include it from your bird.conf: include \"%s\";\n"
                           "# Every name in it begins with sluice_.\n", h->bird.config_file);
    strbuf_puts(out, "\n");
}

/* Managed mode only: what a whole bird.conf has on its own. */
static void write_globals(const struct cfg_ha *h, struct in_addr router_id, struct strbuf *out)
{
    char rid[INET_ADDRSTRLEN];
    inet_ntop(AF_INET, &router_id, rid, sizeof rid);
    strbuf_printf(out, "router id %s;\n", rid);
    if (h->bird.log_file)
        strbuf_printf(out, "log \"%s\" all;\n", h->bird.log_file);
    else
        strbuf_puts(out, "log syslog all;\n");
    strbuf_puts(out, "\n");
}

/* BIRD takes one device protocol only: the operator's file has it in
 * mode external. */
static void write_device(const struct cfg_ha *h, struct strbuf *out)
{
    if (h->bird.mode == HA_BIRD_MANAGED)
        strbuf_printf(out,
                      "# Interfaces are learnt by the device protocol (the direct ones need it).\n"
                      "protocol device %s {\n"
                      "}\n\n",
                      BIRD_PROTO_DEVICE);
    else
        strbuf_puts(out, "# The direct protocols below need the device protocol of your bird.conf\n"
                         "# (BIRD allows one).\n\n");
}

static void write_direct(const struct cfg_ha *h, struct strbuf *out)
{
    char standin[32];
    bird_conf_standin_ifname(h, standin, sizeof standin);
    strbuf_printf(out,
                  "# The node's own addresses (service VIPs, its FullNAT local addresses):\n"
                  "# /32 and /128 addresses the Sluice daemon puts on its tun device.\n"
                  "protocol direct %s {\n"
                  "  ipv4;\n"
                  "  ipv6;\n"
                  "  interface \"%s\";\n"
                  "}\n\n"
                  "# Stand-in addresses (peers' FullNAT local addresses this node can take\n"
                  "# over) on a second tun device: their routes get a much longer AS path.\n"
                  "protocol direct %s {\n"
                  "  ipv4;\n"
                  "  ipv6;\n"
                  "  interface \"%s\";\n"
                  "}\n\n",
                  BIRD_PROTO_VIPS, h->interface, BIRD_PROTO_STANDIN, standin);
}

static void write_bfd(const struct cfg_ha *h, struct strbuf *out)
{
    if (!h->bfd)
        return;
    strbuf_printf(out,
                  "# BFD for every BGP session: a failure is seen in interval x multiplier\n"
                  "# (%u ms x %u = %u ms).\n"
                  "protocol bfd %s {\n"
                  "  interface \"*\" {\n"
                  "    interval %u ms;\n"
                  "    multiplier %u;\n"
                  "  };\n"
                  "  multihop {\n"
                  "    interval %u ms;\n"
                  "    multiplier %u;\n"
                  "  };\n"
                  "}\n\n",
                  h->bfd_interval_ms, h->bfd_multiplier, h->bfd_interval_ms * h->bfd_multiplier, BIRD_PROTO_BFD,
                  h->bfd_interval_ms, h->bfd_multiplier, h->bfd_interval_ms, h->bfd_multiplier);
}

static void write_prepends(const char *ind, uint32_t asn, uint32_t n, struct strbuf *out)
{
    for (uint32_t i = 0; i < n; i++)
        strbuf_printf(out, "%sbgp_path.prepend(%u);\n", ind, asn);
}

/* (asn, value): a standard community (RFC 1997) when the ASN fits its 16
 * bits, else the large community (asn, value, 0) (RFC 8092). */
static void write_community(const char *ind, uint32_t asn, uint32_t value, struct strbuf *out)
{
    if (asn <= 0xffff)
        strbuf_printf(out, "%sbgp_community.add((%u, %u));\n", ind, asn, value);
    else
        strbuf_printf(out, "%sbgp_large_community.add((%u, %u, 0));\n", ind, asn, value);
}

/* ha.announce as prefix sets, one per family (BIRD's sets hold one). */
static void write_announce_check(const struct cfg_ha *h, struct strbuf *out)
{
    if (!h->announce)
        return;
    static const int families[] = { AF_INET, AF_INET6 };
    for (size_t f = 0; f < 2; f++) {
        int fam = families[f];
        size_t n = 0;
        for (size_t i = 0; i < h->n_announce; i++)
            n += h->announce[i].family == fam;
        const char *type = fam == AF_INET ? "NET_IP4" : "NET_IP6";
        if (n == 0) {
            strbuf_printf(out, "    if net.type = %s then reject;   # ha.announce has none of this family\n", type);
            continue;
        }
        strbuf_printf(out, "    if net.type = %s && net !~ [ ", type);
        size_t k = 0;
        for (size_t i = 0; i < h->n_announce; i++) {
            if (h->announce[i].family != fam)
                continue;
            strbuf_printf(out, "%s%s/%d", k++ ? ", " : "", h->announce[i].text, fam == AF_INET ? 32 : 128);
        }
        strbuf_puts(out, " ] then reject;   # ha.announce\n");
    }
}

/* ha.preempt false: the VIPs of ov[0..n) that go to neighbor ni with
 * priority prio, as a prefix set ("10.0.0.1/32, 10.0.0.2/32"); false when
 * there are none. */
static bool write_priority_set(const struct cfg_ha *h, size_t ni, uint32_t prio, const struct bird_export_priority *ov,
                               size_t n, struct strbuf *out)
{
    int fam = h->neighbors[ni].address.family;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (ov[i].neighbor != ni || ov[i].priority != prio || ov[i].ip.family != fam)
            continue;
        strbuf_printf(out, "%s%s/%d", k++ ? ", " : "", ov[i].ip.text, fam == AF_INET ? 32 : 128);
    }
    return k > 0;
}

/* The node's own addresses: its priority, or (ha.preempt false, ni the
 * neighbor) the priorities ov gives some VIPs toward that neighbor. */
static void write_own_priorities(const struct cfg_ha *h, long ni, const struct bird_export_priority *ov, size_t n,
                                 struct strbuf *out)
{
    bool any = false;
    /* One branch per priority in use, worst first, then the node's own. */
    for (uint32_t prio = BIRD_STARTING_PRIORITY + 1; ni >= 0 && prio-- > 0;) {
        if (prio == h->priority)
            continue;
        struct strbuf set = { 0 };
        if (!write_priority_set(h, (size_t)ni, prio, ov, n, &set)) {
            strbuf_free(&set);
            continue;
        }
        strbuf_printf(out, "    %sif net ~ [ %s ] then {   # %s\n", any ? "} else " : "", set.p ? set.p : "",
                      prio == BIRD_STARTING_PRIORITY ? "the session is new" : "held behind a worse zone");
        strbuf_free(&set);
        write_prepends("      ", h->asn, prio, out);
        write_community("      ", h->asn, BIRD_COMMUNITY_VIP + prio, out);
        any = true;
    }
    if (any)
        strbuf_puts(out, "    } else {\n");
    write_prepends(any ? "      " : "    ", h->asn, h->priority, out);
    write_community(any ? "      " : "    ", h->asn, BIRD_COMMUNITY_VIP + h->priority, out);
    if (any)
        strbuf_puts(out, "    }\n");
    if (ni >= 0)
        write_community("    ", h->asn, BIRD_COMMUNITY_ZONE + h->priority, out);
}

/* The export filter: `name`; ni >= 0 for neighbor ni's filter with
 * ha.preempt false. */
static void write_filter(const struct cfg_ha *h, const char *name, long ni, const struct bird_export_priority *ov,
                         size_t n, struct strbuf *out)
{
    if (ni < 0)
        strbuf_printf(out,
                      "# Export: host routes of the two direct protocols, nothing else.\n"
                      "# Zone priority %u = the ASN prepended %u time%s (routers prefer the\n"
                      "# shortest AS path; equal paths within a zone stay ECMP).\n",
                      h->priority, h->priority, h->priority == 1 ? "" : "s");
    else
        strbuf_printf(out,
                      "# Export to %s (ha.preempt false): host routes of the two direct\n"
                      "# protocols; a service VIP gets the priority the Sluice daemon decided for\n"
                      "# this router (starting, held behind a worse zone, or the node's own), and\n"
                      "# the community (%u, %u) says this node's zone priority, %u, whatever it\n"
                      "# announces with.\n",
                      h->neighbors[ni].address.text, h->asn, BIRD_COMMUNITY_ZONE + h->priority, h->priority);
    strbuf_printf(out,
                  "filter %s {\n"
                  "  if !((net.type = NET_IP4 && net.len = 32) || (net.type = NET_IP6 && net.len = 128)) then reject;\n"
                  "  if proto = \"%s\" then {\n",
                  name, BIRD_PROTO_VIPS);
    write_announce_check(h, out);
    write_own_priorities(h, ni, ov, n, out);
    strbuf_printf(out,
                  "    accept;\n"
                  "  }\n"
                  "  if proto = \"%s\" then {\n",
                  BIRD_PROTO_STANDIN);
    write_prepends("    ", h->asn, h->priority + BIRD_STANDIN_PREPENDS, out);
    write_community("    ", h->asn, BIRD_COMMUNITY_STANDIN + h->priority, out);
    strbuf_puts(out,
                "    accept;\n"
                "  }\n"
                "  reject;\n"
                "}\n\n");
}

static void write_filters(const struct cfg_ha *h, const struct bird_export_priority *ov, size_t n,
                          struct strbuf *out)
{
    if (h->preempt) {
        write_filter(h, BIRD_FILTER_EXPORT, -1, NULL, 0, out);
        return;
    }
    for (size_t i = 0; i < h->n_neighbors; i++) {
        char name[BIRD_NAME_MAX];
        bird_conf_export_name(&h->neighbors[i], name, sizeof name);
        write_filter(h, name, (long)i, ov, n, out);
    }
}

/* One channel of a BGP protocol. Import: none. With ha.preempt false, an
 * import table keeps what the neighbor sends (its best route to each of
 * the group's VIPs, the companion reads it: birdc_show_import_routes)
 * without putting any of it in a routing table. */
static void write_channel(const struct cfg_ha *h, const struct cfg_ha_neighbor *n, struct strbuf *out)
{
    char filter[BIRD_NAME_MAX];
    if (h->preempt)
        snprintf(filter, sizeof filter, "%s", BIRD_FILTER_EXPORT);
    else
        bird_conf_export_name(n, filter, sizeof filter);
    strbuf_printf(out, "  %s {\n", n->address.family == AF_INET ? "ipv4" : "ipv6");
    if (!h->preempt)
        strbuf_puts(out, "    import table on;\n");
    strbuf_printf(out,
                  "    import none;\n"
                  "    export filter %s;\n"
                  "  };\n",
                  filter);
}

static void write_bgp(const struct cfg_ha *h, const struct cfg_ha_neighbor *n, struct strbuf *out)
{
    char name[BIRD_NAME_MAX];
    bird_conf_bgp_name(n, name, sizeof name);
    strbuf_printf(out, "protocol bgp %s {\n", name);
    strbuf_printf(out, "  description \"Sluice ha.neighbors: %s\";\n", n->address.text);
    if (n->has_source)
        strbuf_printf(out, "  local %s as %u;\n", n->source.text, h->asn);
    else
        strbuf_printf(out, "  local as %u;\n", h->asn);
    strbuf_printf(out, "  neighbor %s port %u as %u;\n", n->address.text, n->port, n->asn);
    if (n->password)
        strbuf_printf(out, "  password \"%s\";\n", n->password);
    if (n->multihop)
        strbuf_printf(out, "  multihop %u;\n", n->multihop);
    if (n->hold_time_s)
        strbuf_printf(out, "  hold time %u;\n", n->hold_time_s);
    /* Come back soon after a BFD flap or a router restart. BIRD's
     * defaults keep a session down far longer than an LB should stay
     * unannounced: after an error (BFD down included) it waits 60 s,
     * doubling up to 300 s for errors less than 300 s apart, then waits
     * the connect delay (5 s) before connecting, and retries a failed
     * connect every 120 s. Here: 1 s after a first error, then 2, 4, 8,
     * 10 s for a run of errors (a session that keeps flapping costs the
     * router one TCP connect and OPEN every 10 s at most); a run ends
     * after 60 s without an error, so a rare flap always recovers in
     * about 2 s (error wait + connect delay); a refused connect (router
     * down) is retried every 3 s. */
    strbuf_puts(out, "  connect delay time 1;\n"
                     "  connect retry time 3;\n"
                     "  error wait time 1, 10;\n"
                     "  error forget time 60;\n");
    if (h->bfd)
        strbuf_puts(out, "  bfd on;\n");
    /* ha.preempt false: the routes the router sends back carry the
     * group's own ASN (the router's best path to a VIP, from another node
     * of the group); BGP would drop them as loops. Nothing is imported
     * into a routing table (import none), so no loop can form. */
    if (!h->preempt)
        strbuf_puts(out, "  allow local as;\n");
    /* One channel, of the session's family: an IPv6 route sent over an
     * IPv4 session has no IPv6 next hop to carry ("Missing next hop
     * address"), so IPv6 VIPs need an IPv6 neighbor, as usual. */
    write_channel(h, n, out);
    strbuf_puts(out, "}\n\n");
}

void bird_conf_write(const struct cfg_ha *h, struct in_addr router_id, const char *source, struct strbuf *out)
{
    bird_conf_write_export(h, router_id, source, NULL, 0, out);
}

void bird_conf_write_export(const struct cfg_ha *h, struct in_addr router_id, const char *source,
                            const struct bird_export_priority *ov, size_t n_ov, struct strbuf *out)
{
    write_header(h, source, out);
    if (h->bird.mode == HA_BIRD_MANAGED)
        write_globals(h, router_id, out);
    write_device(h, out);
    write_direct(h, out);
    write_bfd(h, out);
    write_filters(h, ov, n_ov, out);
    for (size_t i = 0; i < h->n_neighbors; i++)
        write_bgp(h, &h->neighbors[i], out);
}
