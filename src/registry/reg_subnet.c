/* See reg_subnet.h. Both families use 128-bit keys (IPv4 in the low 32
 * bits, with a width of 32), so one sweep and one search serve both.
 *
 * The build sorts the prefixes by start address, shorter (enclosing) ones
 * first. CIDR prefixes either nest or do not touch, so a stack of the
 * prefixes open at the current address is enough: each prefix closes the
 * stretch of its enclosing prefix before it, and when a prefix ends the
 * stretch up to its end belongs to it; the result is disjoint ranges, each
 * with the most specific prefix covering it.
 */
#include "lib/errbuf.h"
#include "registry/reg_subnet.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef unsigned __int128 u128;

struct prefix {
    u128 start, end;    /* inclusive */
    uint8_t len;
    struct reg_loc loc;
};

struct range {
    u128 start, end;    /* inclusive */
    struct reg_loc loc;
};

struct family_table {
    unsigned width;     /* 32 or 128 */
    struct prefix *pfx;
    uint32_t n_pfx, cap_pfx;
    struct range *rng;  /* the compiled ranges, sorted */
    uint32_t n_rng;
};

struct reg_subnets {
    struct family_table v4, v6;
};

struct reg_subnets *reg_subnets_new(void)
{
    struct reg_subnets *t = calloc(1, sizeof *t);
    if (t) {
        t->v4.width = 32;
        t->v6.width = 128;
    }
    return t;
}

void reg_subnets_free(struct reg_subnets *t)
{
    if (!t)
        return;
    free(t->v4.pfx);
    free(t->v4.rng);
    free(t->v6.pfx);
    free(t->v6.rng);
    free(t);
}

size_t reg_subnets_count(const struct reg_subnets *t)
{
    return (size_t)t->v4.n_pfx + t->v6.n_pfx;
}

/* ---- keys -------------------------------------------------------------- */

static u128 key_of(const uint8_t *bytes, unsigned n)
{
    u128 k = 0;
    for (unsigned i = 0; i < n; i++)
        k = (k << 8) | bytes[i];
    return k;
}

/* The low `bits` bits set (bits 0..128). */
static u128 low_mask(unsigned bits)
{
    return bits >= 128 ? ~(u128)0 : (((u128)1 << bits) - 1);
}

static void format_key(u128 k, unsigned width, char *buf, size_t cap)
{
    uint8_t b[16];
    unsigned n = width / 8;
    for (unsigned i = 0; i < n; i++)
        b[n - 1 - i] = (uint8_t)(k >> (8 * i));
    inet_ntop(width == 32 ? AF_INET : AF_INET6, b, buf, (socklen_t)cap);
}

/* ---- adding ------------------------------------------------------------ */

/* The input as quoted in an error: one line (a control byte becomes '?'),
 * at most 64 bytes, so a message built from it stays one line however
 * the value was written. */
static const char *shown_cidr(const char *cidr, char buf[68])
{
    size_t n = 0;
    for (; cidr[n] && n < 64; n++)
        buf[n] = ((unsigned char)cidr[n] < 0x20 || cidr[n] == 0x7f) ? '?' : cidr[n];
    if (cidr[n])
        buf[n++] = '.', buf[n++] = '.', buf[n++] = '.';
    buf[n] = '\0';
    return buf;
}

int reg_subnets_add(struct reg_subnets *t, const char *raw, struct reg_loc loc, char *err, size_t errlen)
{
    char cidr_buf[68];
    const char *cidr = raw;
    /* Parsed from raw; quoted in errors as shown_cidr() has it. */
    const char *q = shown_cidr(raw, cidr_buf);
    char host[INET6_ADDRSTRLEN + 1];
    const char *slash = strchr(cidr, '/');
    size_t hlen = slash ? (size_t)(slash - cidr) : strlen(cidr);
    if (hlen == 0 || hlen >= sizeof host)
        return errbuf_fail(err, errlen, "\"%s\": expected ADDRESS/LENGTH, like 10.1.0.0/16 or 2001:db8::/32", q);
    memcpy(host, cidr, hlen);
    host[hlen] = '\0';

    uint8_t bytes[16];
    struct family_table *ft;
    if (inet_pton(AF_INET, host, bytes) == 1)
        ft = &t->v4;
    else if (inet_pton(AF_INET6, host, bytes) == 1)
        ft = &t->v6;
    else
        return errbuf_fail(err, errlen, "\"%s\": not an IPv4 or IPv6 address", q);

    unsigned len = ft->width;
    if (slash) {
        const char *p = slash + 1;
        char *end;
        errno = 0;
        unsigned long v = strtoul(p, &end, 10);
        if (!*p || *end || errno || *p == '-' || *p == '+' || v > ft->width)
            return errbuf_fail(err, errlen, "\"%s\": the prefix length must be a number from 0 to %u", q, ft->width);
        len = (unsigned)v;
    }
    u128 start = key_of(bytes, ft->width / 8);
    u128 host_bits = low_mask(ft->width - len);
    if (start & host_bits) {
        char fixed[INET6_ADDRSTRLEN];
        format_key(start & ~host_bits, ft->width, fixed, sizeof fixed);
        return errbuf_fail(err, errlen, "\"%s\": host bits are set (did you mean %s/%u?)", q, fixed, len);
    }
    if (ft->n_pfx == ft->cap_pfx) {
        uint32_t cap = ft->cap_pfx ? ft->cap_pfx * 2 : 16;
        struct prefix *p = realloc(ft->pfx, (size_t)cap * sizeof *p);
        if (!p)
            return errbuf_fail(err, errlen, "out of memory");
        ft->pfx = p;
        ft->cap_pfx = cap;
    }
    ft->pfx[ft->n_pfx++] = (struct prefix){.start = start, .end = start | host_bits, .len = (uint8_t)len, .loc = loc};
    return 0;
}

/* ---- building ---------------------------------------------------------- */

static int by_start_then_len(const void *a, const void *b)
{
    const struct prefix *x = a, *y = b;
    if (x->start != y->start)
        return x->start < y->start ? -1 : 1;
    return (int)x->len - (int)y->len;
}

struct sweep {
    struct range *out;
    uint32_t n;
    u128 cursor;        /* the first address not yet given to a range */
    bool exhausted;     /* the cursor went past the last address */
};

/* Give [cursor, end] to loc and move the cursor past it. */
static void emit_to(struct sweep *s, u128 end, struct reg_loc loc)
{
    if (s->exhausted || s->cursor > end)
        return;
    struct range *prev = s->n ? &s->out[s->n - 1] : NULL;
    if (prev && prev->end + 1 == s->cursor && prev->loc.dc == loc.dc && prev->loc.region == loc.region)
        prev->end = end; /* the same answer on both sides: one range, so scopes stay short */
    else
        s->out[s->n++] = (struct range){.start = s->cursor, .end = end, .loc = loc};
    if (end == ~(u128)0)
        s->exhausted = true;
    else
        s->cursor = end + 1;
}

static int build_family(struct family_table *ft, const char *cidr_kind, char *err, size_t errlen)
{
    if (ft->n_pfx > 1)
        qsort(ft->pfx, ft->n_pfx, sizeof *ft->pfx, by_start_then_len);
    for (uint32_t i = 1; i < ft->n_pfx; i++) {
        if (ft->pfx[i].start == ft->pfx[i - 1].start && ft->pfx[i].len == ft->pfx[i - 1].len) {
            char a[INET6_ADDRSTRLEN];
            format_key(ft->pfx[i].start, ft->width, a, sizeof a);
            return errbuf_fail(err, errlen, "%s subnet %s/%u: given twice", cidr_kind, a, ft->pfx[i].len);
        }
    }
    /* Each prefix opens at most one range before its first child and one
     * after each child: at most 2n ranges. */
    struct range *out = malloc(((size_t)ft->n_pfx * 2 + 1) * sizeof *out);
    uint32_t *stack = malloc(((size_t)ft->n_pfx + 1) * sizeof *stack);
    if (!out || !stack) {
        free(out);
        free(stack);
        return errbuf_fail(err, errlen, "out of memory");
    }
    struct sweep s = {.out = out};
    uint32_t depth = 0;
    for (uint32_t i = 0; i < ft->n_pfx; i++) {
        const struct prefix *p = &ft->pfx[i];
        while (depth && ft->pfx[stack[depth - 1]].end < p->start) {
            const struct prefix *top = &ft->pfx[stack[--depth]];
            emit_to(&s, top->end, top->loc);
        }
        if (depth && p->start > 0)
            emit_to(&s, p->start - 1, ft->pfx[stack[depth - 1]].loc);
        if (!s.exhausted && s.cursor < p->start)
            s.cursor = p->start;
        stack[depth++] = i;
    }
    while (depth) {
        const struct prefix *top = &ft->pfx[stack[--depth]];
        emit_to(&s, top->end, top->loc);
    }
    free(stack);
    free(ft->rng);
    ft->rng = out;
    ft->n_rng = s.n;
    return 0;
}

int reg_subnets_build(struct reg_subnets *t, char *err, size_t errlen)
{
    if (build_family(&t->v4, "IPv4", err, errlen) < 0 || build_family(&t->v6, "IPv6", err, errlen) < 0)
        return -1;
    return 0;
}

/* ---- looking up -------------------------------------------------------- */

/* floor(log2(x)) for x > 0. */
static unsigned log2_floor(u128 x)
{
    uint64_t hi = (uint64_t)(x >> 64), lo = (uint64_t)x;
    return hi ? 127u - (unsigned)__builtin_clzll(hi) : 63u - (unsigned)__builtin_clzll(lo);
}

/* The shortest prefix length whose block around k lies within [lo, hi]
 * (which holds k). No block is larger than the range, so the search
 * starts at the range's size and usually ends there. */
static uint8_t scope_within(u128 k, u128 lo, u128 hi, unsigned width)
{
    u128 span = hi - lo; /* size - 1 */
    unsigned host = span == low_mask(width) ? width : log2_floor(span + 1);
    for (;; host--) {
        u128 mask = low_mask(host);
        u128 first = k & ~mask, last = first | mask;
        if ((first >= lo && last <= hi) || host == 0)
            return (uint8_t)(width - host);
    }
}

static bool lookup(const struct family_table *ft, u128 k, struct reg_loc *loc, uint8_t *scope)
{
    /* The last range starting at or before k. */
    uint32_t lo = 0, hi = ft->n_rng;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (ft->rng[mid].start <= k)
            lo = mid + 1;
        else
            hi = mid;
    }
    const struct range *before = lo ? &ft->rng[lo - 1] : NULL;
    if (before && k <= before->end) {
        *loc = before->loc;
        if (scope)
            *scope = scope_within(k, before->start, before->end, ft->width);
        return true;
    }
    *loc = (struct reg_loc){0};
    if (scope) {
        u128 gap_lo = before ? before->end + 1 : 0;
        u128 gap_hi = lo < ft->n_rng ? ft->rng[lo].start - 1 : low_mask(ft->width);
        *scope = scope_within(k, gap_lo, gap_hi, ft->width);
    }
    return false;
}

bool reg_subnets_lookup4(const struct reg_subnets *t, const uint8_t addr[4], struct reg_loc *loc, uint8_t *scope)
{
    return lookup(&t->v4, key_of(addr, 4), loc, scope);
}

static const uint8_t v4_mapped_prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

bool reg_subnets_lookup6(const struct reg_subnets *t, const uint8_t addr[16], struct reg_loc *loc, uint8_t *scope)
{
    if (memcmp(addr, v4_mapped_prefix, sizeof v4_mapped_prefix) == 0)
        return reg_subnets_lookup4(t, addr + 12, loc, scope);
    return lookup(&t->v6, key_of(addr, 16), loc, scope);
}

bool reg_subnets_lookup_sa(const struct reg_subnets *t, const struct sockaddr *sa, struct reg_loc *loc,
                           uint8_t *scope)
{
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        return reg_subnets_lookup4(t, (const uint8_t *)&in->sin_addr, loc, scope);
    }
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        return reg_subnets_lookup6(t, in6->sin6_addr.s6_addr, loc, scope);
    }
    *loc = (struct reg_loc){0};
    if (scope)
        *scope = 0;
    return false;
}
