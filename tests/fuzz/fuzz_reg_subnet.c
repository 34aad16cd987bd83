/* libFuzzer target for the registry's client subnet table
 * (src/registry/reg_subnet.c): its CIDR parser and its longest-prefix
 * match.
 *
 * Input: lines, each a prefix to add ("10.1.0.0/16", "2001:db8::/32", or
 * anything); at most 64 are used. Each prefix that is accepted maps to its
 * line number. A build that fails must only be for a prefix given twice.
 *
 * Beyond "no crash", it checks the lookups against a naive longest-prefix
 * search over the accepted prefixes: at the first and last address of
 * every prefix, one past each end, and at addresses made from the input's
 * bytes; and that the scope a lookup returns covers a block whose first
 * and last addresses get the same answer. An accepted prefix has no host
 * bits set; a rejected line has a reason. */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "registry/reg_subnet.h"

#define CHECK(x)                                                                               \
    do {                                                                                       \
        if (!(x)) {                                                                            \
            fprintf(stderr, "fuzz_reg_subnet: invariant failed at line %d: %s\n", __LINE__, #x); \
            abort();                                                                           \
        }                                                                                      \
    } while (0)

#define MAX_PREFIXES 64

struct naive {
    int family;       /* AF_INET or AF_INET6 */
    uint8_t addr[16];
    unsigned len;
    uint32_t id;
};

static struct naive pfx[MAX_PREFIXES];
static int n_pfx;

static bool in_prefix(const struct naive *p, const uint8_t *a)
{
    unsigned full = p->len / 8, rest = p->len % 8;
    if (memcmp(p->addr, a, full) != 0)
        return false;
    if (rest) {
        uint8_t mask = (uint8_t)(0xff << (8 - rest));
        if ((p->addr[full] & mask) != (a[full] & mask))
            return false;
    }
    return true;
}

/* The naive answer: the id of the longest prefix holding a, 0 if none. */
static uint32_t naive_lookup(int family, const uint8_t *a)
{
    int best = -1;
    for (int i = 0; i < n_pfx; i++)
        if (pfx[i].family == family && in_prefix(&pfx[i], a) && (best < 0 || pfx[i].len > pfx[best].len))
            best = i;
    return best < 0 ? 0 : pfx[best].id;
}

static void set_bits(uint8_t *a, unsigned width, unsigned from, bool one)
{
    for (unsigned b = from; b < width; b++) {
        uint8_t bit = (uint8_t)(0x80 >> (b % 8));
        if (one)
            a[b / 8] |= bit;
        else
            a[b / 8] &= (uint8_t)~bit;
    }
}

static void check_address(const struct reg_subnets *t, int family, const uint8_t *a)
{
    unsigned width = family == AF_INET ? 32 : 128;
    struct reg_loc loc;
    uint8_t scope;
    bool found = family == AF_INET ? reg_subnets_lookup4(t, a, &loc, &scope) : reg_subnets_lookup6(t, a, &loc, &scope);
    /* An IPv4-mapped IPv6 address is looked up as IPv4 (not checked here). */
    static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (family == AF_INET6 && memcmp(a, mapped, 12) == 0)
        return;
    uint32_t want = naive_lookup(family, a);
    CHECK(found == (want != 0));
    CHECK(loc.dc == want);
    CHECK(scope <= width);
    uint8_t first[16], last[16];
    memcpy(first, a, width / 8);
    memcpy(last, a, width / 8);
    set_bits(first, width, scope, false);
    set_bits(last, width, scope, true);
    CHECK(naive_lookup(family, first) == want);
    CHECK(naive_lookup(family, last) == want);
}

/* a +/- 1 in place (wrapping). */
static void step(uint8_t *a, unsigned bytes, int dir)
{
    for (int i = (int)bytes - 1; i >= 0; i--) {
        a[i] = (uint8_t)(a[i] + dir);
        if ((dir > 0 && a[i] != 0) || (dir < 0 && a[i] != 0xff))
            break;
    }
}

static void add_line(struct reg_subnets *t, const char *line)
{
    char err[256] = "";
    struct reg_loc loc = {.dc = (uint32_t)n_pfx + 1, .region = 1};
    int rc = reg_subnets_add(t, line, loc, err, sizeof err);
    if (rc < 0) {
        CHECK(err[0] != '\0');
        return;
    }
    /* Accepted: parse it again naively. */
    struct naive *p = &pfx[n_pfx];
    char host[64];
    const char *slash = strchr(line, '/');
    size_t hlen = slash ? (size_t)(slash - line) : strlen(line);
    CHECK(hlen < sizeof host);
    memcpy(host, line, hlen);
    host[hlen] = '\0';
    memset(p->addr, 0, sizeof p->addr);
    if (inet_pton(AF_INET, host, p->addr) == 1) {
        p->family = AF_INET;
    } else {
        CHECK(inet_pton(AF_INET6, host, p->addr) == 1);
        p->family = AF_INET6;
    }
    unsigned width = p->family == AF_INET ? 32 : 128;
    p->len = slash ? (unsigned)strtoul(slash + 1, NULL, 10) : width;
    CHECK(p->len <= width);
    uint8_t copy[16];
    memcpy(copy, p->addr, 16);
    set_bits(copy, width, p->len, false);
    CHECK(memcmp(copy, p->addr, width / 8) == 0); /* no host bits */
    p->id = loc.dc;
    n_pfx++;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct reg_subnets *t = reg_subnets_new();
    CHECK(t);
    n_pfx = 0;
    char line[128];
    size_t i = 0;
    while (i < size && n_pfx < MAX_PREFIXES) {
        size_t j = i;
        while (j < size && data[j] != '\n')
            j++;
        size_t n = j - i < sizeof line - 1 ? j - i : sizeof line - 1;
        memcpy(line, data + i, n);
        line[n] = '\0';
        if (strlen(line) == n) /* no NUL inside */
            add_line(t, line);
        i = j + 1;
    }
    char err[256] = "";
    if (reg_subnets_build(t, err, sizeof err) < 0) {
        CHECK(strstr(err, "given twice"));
        reg_subnets_free(t);
        return 0;
    }
    /* No duplicates, then (the build would have said so). */
    for (int a = 0; a < n_pfx; a++)
        for (int b = 0; b < a; b++)
            CHECK(!(pfx[a].family == pfx[b].family && pfx[a].len == pfx[b].len &&
                    memcmp(pfx[a].addr, pfx[b].addr, 16) == 0));
    CHECK(reg_subnets_count(t) == (size_t)n_pfx);

    for (int k = 0; k < n_pfx; k++) {
        const struct naive *p = &pfx[k];
        unsigned width = p->family == AF_INET ? 32 : 128;
        uint8_t a[16];
        memcpy(a, p->addr, 16);
        check_address(t, p->family, a);
        step(a, width / 8, -1);
        check_address(t, p->family, a);
        memcpy(a, p->addr, 16);
        set_bits(a, width, p->len, true);
        check_address(t, p->family, a);
        step(a, width / 8, +1);
        check_address(t, p->family, a);
    }
    /* Addresses from the input's bytes. */
    for (size_t off = 0; off + 16 <= size; off += 16) {
        check_address(t, AF_INET, data + off);
        check_address(t, AF_INET6, data + off);
    }
    reg_subnets_free(t);
    return 0;
}
