/* See dns_wire.h.
 *
 * The parser reads the query once, front to back, with every read checked
 * against the length first; nothing is ever followed backwards (the only
 * names it reads in full, the question's, may not hold pointers), so its
 * work is bounded by the message length. The writer checks each piece
 * against the limit minus the OPT record's room before writing it and,
 * when a record does not fit, rewinds to the start of that record (the
 * length and the compression table both), so what it leaves is always a
 * well-formed message. */
#include "lib/dns_wire.h"

#include "lib/be_bytes.h"

#include <errno.h>
#include <string.h>

#define FLAG_QR 0x8000u
#define FLAG_AA 0x0400u
#define FLAG_TC 0x0200u
#define FLAG_RD 0x0100u
#define FLAG_CD 0x0010u
#define OPCODE_SHIFT 11
#define RCODE_MASK 0x000Fu
#define EDNS_FLAG_DO 0x8000u

#define RR_FIXED_LEN 10        /* TYPE, CLASS, TTL, RDLENGTH after the owner */
#define OPT_RR_LEN 11          /* root owner + RR_FIXED_LEN, empty RDATA */
#define EDNS_OPTION_HEAD 4     /* OPTION-CODE, OPTION-LENGTH */
#define ECS_FIXED_LEN 4        /* FAMILY, SOURCE, SCOPE */
#define COMP_PTR 0xC000u
#define COMP_MAX_OFFSET 0x3FFFu


/* RFC 4343: only ASCII letters have case in DNS names. */
static inline uint8_t fold(uint8_t c) { return (uint8_t)(c - 'A') < 26 ? (uint8_t)(c | 0x20) : c; }

static unsigned ecs_family_bits(uint16_t family)
{
    return family == DNS_ECS_FAMILY_IPV4 ? 32 : family == DNS_ECS_FAMILY_IPV6 ? 128 : 0;
}

static inline unsigned ecs_addr_bytes(unsigned source_prefix) { return (source_prefix + 7) / 8; }

/* ---- the query parser ---------------------------------------------------- */

static enum dns_parse_result verdict(struct dns_query *q, enum dns_parse_result r, const char *why)
{
    static const uint16_t rcode_of[] = {
        [DNS_PARSE_OK] = DNS_RCODE_NOERROR, [DNS_PARSE_DROP] = DNS_RCODE_NOERROR,
        [DNS_PARSE_FORMERR] = DNS_RCODE_FORMERR, [DNS_PARSE_NOTIMP] = DNS_RCODE_NOTIMP,
        [DNS_PARSE_BADVERS] = DNS_RCODE_BADVERS,
    };
    q->rcode = rcode_of[r];
    q->error = why;
    if (r != DNS_PARSE_OK)
        q->has_ecs = false;   /* an error answer is the same for every client subnet */
    return r;
}

/* The question name at m[*pos]: plain labels only, copied as received and
 * folded. Returns NULL, or why it is malformed. */
static const char *read_qname(const uint8_t *m, size_t len, size_t *pos, struct dns_name *n)
{
    size_t p = *pos, out = 0;
    unsigned labels = 0;
    for (;;) {
        if (p >= len)
            return "question name cut short";
        uint8_t l = m[p];
        if (l == 0)
            break;
        if ((l & 0xC0) == 0xC0)
            return "compression pointer in the question name";
        if (l > DNS_LABEL_MAX)
            return "unknown label type in the question name";
        if (out + 1 + l + 1 > DNS_NAME_MAX)
            return "question name longer than 255 bytes";
        if (l >= len - p)
            return "question name cut short";
        n->label_off[labels++] = (uint8_t)out;
        memcpy(&n->wire[out], &m[p], 1 + (size_t)l);
        n->lower[out] = l;
        for (unsigned i = 1; i <= l; i++)
            n->lower[out + i] = fold(m[p + i]);
        out += 1 + (size_t)l;
        p += 1 + (size_t)l;
    }
    n->wire[out] = n->lower[out] = 0;
    n->len = (uint16_t)(out + 1);
    n->labels = (uint8_t)labels;
    *pos = p + 1;
    return NULL;
}

/* Step over a record owner without reading it (the only owner the parser
 * accepts is the root): labels up to the root or a pointer. */
static const char *skip_name(const uint8_t *m, size_t len, size_t *pos)
{
    size_t p = *pos;
    for (;;) {
        if (p >= len)
            return "record owner cut short";
        uint8_t l = m[p];
        if (l == 0) {
            p += 1;
            break;
        }
        if ((l & 0xC0) == 0xC0) {
            if (len - p < 2)
                return "record owner cut short";
            p += 2;
            break;
        }
        if (l > DNS_LABEL_MAX)
            return "unknown label type in a record owner";
        p += 1 + (size_t)l;
    }
    *pos = p;
    return NULL;
}

/* RFC 7871 §6 and §7.2.1: a wrongly formatted option is a FORMERR. */
static const char *read_ecs(const uint8_t *d, size_t n, struct dns_ecs *e)
{
    if (n < ECS_FIXED_LEN)
        return "Client Subnet option shorter than 4 bytes";
    uint16_t family = be_get16(d);
    unsigned source = d[2], scope = d[3];
    unsigned bits = ecs_family_bits(family);
    if (bits == 0)
        return "Client Subnet FAMILY is neither IPv4 (1) nor IPv6 (2)";
    if (source > bits)
        return "Client Subnet SOURCE PREFIX-LENGTH longer than the address";
    if (scope != 0)
        return "Client Subnet SCOPE PREFIX-LENGTH is not 0 in a query";
    unsigned bytes = ecs_addr_bytes(source);
    if (n - ECS_FIXED_LEN != bytes)
        return "Client Subnet ADDRESS is not ceil(SOURCE PREFIX-LENGTH / 8) bytes";
    if (source % 8 != 0 && (d[ECS_FIXED_LEN + bytes - 1] & (0xFFu >> (source % 8))) != 0)
        return "Client Subnet ADDRESS has bits set beyond SOURCE PREFIX-LENGTH";
    e->family = family;
    e->source_prefix = (uint8_t)source;
    e->scope_prefix = 0;
    memset(e->addr, 0, sizeof e->addr);
    memcpy(e->addr, d + ECS_FIXED_LEN, bytes);
    return NULL;
}

/* The options of a version-0 OPT record: they must tile its RDATA. */
static const char *read_edns_options(const uint8_t *d, size_t n, struct dns_query *q)
{
    size_t p = 0;
    while (p < n) {
        if (n - p < EDNS_OPTION_HEAD)
            return "EDNS option cut short";
        uint16_t code = be_get16(d + p), olen = be_get16(d + p + 2);
        p += EDNS_OPTION_HEAD;
        if (olen > n - p)
            return "EDNS option longer than the OPT record";
        if (code == DNS_EDNS_OPT_ECS) {
            if (q->has_ecs)
                return "more than one Client Subnet option";
            const char *why = read_ecs(d + p, olen, &q->ecs);
            if (why)
                return why;
            q->has_ecs = true;
        }
        p += olen;
    }
    return NULL;
}

enum dns_parse_result dns_parse_query(const uint8_t *m, size_t len, struct dns_query *q)
{
    q->id = q->flags = 0;
    q->opcode = 0;
    q->rd = q->cd = q->has_question = q->has_edns = q->dnssec_ok = q->has_ecs = false;
    q->qname.len = 0;
    q->qname.labels = 0;
    q->qtype = q->qclass = q->udp_size = 0;
    q->edns_version = 0;

    if (len < DNS_HEADER_LEN)
        return verdict(q, DNS_PARSE_DROP, "shorter than a DNS header");
    q->id = be_get16(m);
    q->flags = be_get16(m + 2);
    q->opcode = (uint8_t)((q->flags >> OPCODE_SHIFT) & 0xF);
    q->rd = q->flags & FLAG_RD;
    q->cd = q->flags & FLAG_CD;
    if (q->flags & FLAG_QR)
        return verdict(q, DNS_PARSE_DROP, "a response (QR set)");
    if (q->opcode != DNS_OPCODE_QUERY)
        return verdict(q, DNS_PARSE_NOTIMP, "opcode other than QUERY");
    if (len > DNS_MSG_MAX)
        return verdict(q, DNS_PARSE_FORMERR, "longer than 65535 bytes");
    if (be_get16(m + 4) != 1)
        return verdict(q, DNS_PARSE_FORMERR, "QDCOUNT is not 1");

    size_t pos = DNS_HEADER_LEN;
    const char *why = read_qname(m, len, &pos, &q->qname);
    if (why)
        return verdict(q, DNS_PARSE_FORMERR, why);
    if (len - pos < 4)
        return verdict(q, DNS_PARSE_FORMERR, "QTYPE or QCLASS cut short");
    q->qtype = be_get16(m + pos);
    q->qclass = be_get16(m + pos + 2);
    pos += 4;
    q->has_question = true;

    if (be_get16(m + 6) != 0)
        return verdict(q, DNS_PARSE_FORMERR, "records in the answer section of a query");
    if (be_get16(m + 8) != 0)
        return verdict(q, DNS_PARSE_FORMERR, "records in the authority section of a query");

    bool badvers = false;
    for (unsigned i = 0, n = be_get16(m + 10); i < n; i++) {
        size_t owner = pos;
        if ((why = skip_name(m, len, &pos)) != NULL)
            return verdict(q, DNS_PARSE_FORMERR, why);
        if (len - pos < RR_FIXED_LEN)
            return verdict(q, DNS_PARSE_FORMERR, "additional record cut short");
        uint16_t type = be_get16(m + pos), rrclass = be_get16(m + pos + 2);
        uint32_t ttl = be_get32(m + pos + 4);
        uint16_t rdlen = be_get16(m + pos + 8);
        pos += RR_FIXED_LEN;
        if (rdlen > len - pos)
            return verdict(q, DNS_PARSE_FORMERR, "RDLENGTH past the end of the message");
        if (type != DNS_TYPE_OPT)
            return verdict(q, DNS_PARSE_FORMERR, "a record other than OPT in the additional section");
        if (pos - owner != 1 + RR_FIXED_LEN)
            return verdict(q, DNS_PARSE_FORMERR, "OPT record owner is not the root");
        if (q->has_edns)
            return verdict(q, DNS_PARSE_FORMERR, "more than one OPT record");
        q->has_edns = true;
        q->udp_size = rrclass;
        q->edns_version = (uint8_t)(ttl >> 16);
        q->dnssec_ok = ttl & EDNS_FLAG_DO;
        if (q->edns_version != 0)
            badvers = true;
        else if ((why = read_edns_options(m + pos, rdlen, q)) != NULL)
            return verdict(q, DNS_PARSE_FORMERR, why);
        pos += rdlen;
    }
    if (pos != len)
        return verdict(q, DNS_PARSE_FORMERR, "bytes after the last record");
    if (badvers)
        return verdict(q, DNS_PARSE_BADVERS, "EDNS version above 0");
    return verdict(q, DNS_PARSE_OK, NULL);
}

int dns_read_question(const uint8_t *m, size_t len, struct dns_question *out)
{
    if (len < DNS_HEADER_LEN || len > DNS_MSG_MAX || be_get16(m + 4) != 1)
        return -EINVAL;
    size_t pos = DNS_HEADER_LEN;
    if (read_qname(m, len, &pos, &out->qname) != NULL || len - pos < 4)
        return -EINVAL;
    out->id = be_get16(m);
    out->flags = be_get16(m + 2);
    out->qtype = be_get16(m + pos);
    out->qclass = be_get16(m + pos + 2);
    out->end = pos + 4;
    return 0;
}

size_t dns_response_limit(const struct dns_query *q, bool tcp, uint16_t udp_max)
{
    if (tcp)
        return DNS_MSG_MAX;
    if (!q->has_edns)
        return DNS_UDP_MIN;
    size_t client = q->udp_size < DNS_UDP_MIN ? DNS_UDP_MIN : q->udp_size;
    size_t server = udp_max < DNS_UDP_MIN ? DNS_UDP_MIN : udp_max;
    return client < server ? client : server;
}

/* ---- names -------------------------------------------------------------- */

/* An uncompressed name given to the writer, with its label offsets. */
struct wire_name {
    const uint8_t *p;
    unsigned len, labels;
    uint8_t off[DNS_LABELS_MAX];
};

static int scan_name(const uint8_t *p, size_t max, struct wire_name *n)
{
    size_t pos = 0;
    unsigned labels = 0;
    if (max > DNS_NAME_MAX)
        max = DNS_NAME_MAX;
    for (;;) {
        if (pos >= max)
            return -EINVAL;
        uint8_t l = p[pos];
        if (l == 0)
            break;
        if (l > DNS_LABEL_MAX || pos + 1 + l >= max)
            return -EINVAL;
        if (n)
            n->off[labels] = (uint8_t)pos;
        labels++;
        pos += 1 + (size_t)l;
    }
    if (n) {
        n->p = p;
        n->len = (unsigned)pos + 1;
        n->labels = labels;
    }
    return (int)pos + 1;
}

int dns_name_wire_len(const uint8_t *p, size_t max) { return scan_name(p, max, NULL); }

int dns_name_set(struct dns_name *n, const uint8_t *wire, size_t max)
{
    struct wire_name wn;
    int len = scan_name(wire, max, &wn);
    if (len < 0)
        return len;
    memcpy(n->wire, wire, (size_t)len);
    for (int i = 0; i < len; i++)
        n->lower[i] = fold(wire[i]);   /* length bytes are 0..63: fold leaves them */
    memcpy(n->label_off, wn.off, wn.labels);
    n->len = (uint16_t)len;
    n->labels = (uint8_t)wn.labels;
    return 0;
}

int dns_name_from_text(const char *text, uint8_t out[DNS_NAME_MAX])
{
    if (text[0] == '\0')
        return -EINVAL;
    if (strcmp(text, ".") == 0) {
        out[0] = 0;
        return 1;
    }
    size_t pos = 0;
    const char *s = text;
    while (*s) {
        const char *dot = strchr(s, '.');
        size_t l = dot ? (size_t)(dot - s) : strlen(s);
        if (l == 0 || l > DNS_LABEL_MAX || pos + 1 + l + 1 > DNS_NAME_MAX || memchr(s, '\\', l))
            return -EINVAL;
        out[pos] = (uint8_t)l;
        memcpy(&out[pos + 1], s, l);
        pos += 1 + l;
        s += l;
        if (*s == '.')
            s++;
    }
    out[pos] = 0;
    return (int)pos + 1;
}

int dns_name_to_text(const uint8_t *wire, size_t max, char *out, size_t cap)
{
    struct wire_name n;
    size_t o = 0;
    if (cap > 0)
        out[0] = '\0';
    if (scan_name(wire, max, &n) < 0)
        return -EINVAL;
    if (n.labels == 0) {
        if (cap < 2)
            return -ENOSPC;
        out[0] = '.';
        out[1] = '\0';
        return 1;
    }
    for (unsigned i = 0; i < n.labels; i++) {
        const uint8_t *lab = wire + n.off[i];
        for (unsigned k = 1; k <= lab[0]; k++) {
            uint8_t c = lab[k];
            char esc[5];
            size_t elen;
            if (c == '.' || c == '\\') {
                esc[0] = '\\';
                esc[1] = (char)c;
                elen = 2;
            } else if (c < 0x21 || c > 0x7e) {
                esc[0] = '\\';
                esc[1] = (char)('0' + c / 100);
                esc[2] = (char)('0' + c / 10 % 10);
                esc[3] = (char)('0' + c % 10);
                elen = 4;
            } else {
                esc[0] = (char)c;
                elen = 1;
            }
            if (o + elen + 1 >= cap)   /* room for the dot and the NUL after it */
                goto nospace;
            memcpy(out + o, esc, elen);
            o += elen;
        }
        if (o + 2 > cap)
            goto nospace;
        out[o++] = '.';
    }
    out[o] = '\0';
    return (int)o;
nospace:
    if (cap > 0)
        out[0] = '\0';
    return -ENOSPC;
}

int dns_name_in_zone(const struct dns_name *name, const struct dns_name *zone)
{
    if (zone->labels > name->labels || zone->len > name->len)
        return -1;
    unsigned k = (unsigned)name->labels - zone->labels;
    size_t off = k < name->labels ? name->label_off[k] : (size_t)name->len - 1;
    if (name->len - off != zone->len || memcmp(name->lower + off, zone->lower, zone->len) != 0)
        return -1;
    return (int)k;
}

/* ---- the response writer -------------------------------------------------- */

static void comp_remember(struct dns_writer *w, size_t off, unsigned len, unsigned labels)
{
    if (w->ncomp < DNS_COMPRESS_SLOTS && off <= COMP_MAX_OFFSET)
        w->comp[w->ncomp++] = (struct dns_comp_slot){ (uint16_t)off, (uint8_t)len, (uint8_t)labels };
}

/* Is the name written at buf[off] (possibly ending in a pointer) the same
 * as the uncompressed s, without regard to case? Each step consumes a label
 * of s, so it ends; our pointers always lead to a label we wrote. */
static bool same_name_at(const uint8_t *buf, size_t off, const uint8_t *s)
{
    for (;;) {
        uint8_t l = buf[off];
        if ((l & 0xC0) == 0xC0) {
            off = be_get16(buf + off) & COMP_MAX_OFFSET;
            l = buf[off];
        }
        if (l != s[0])
            return false;
        if (l == 0)
            return true;
        for (unsigned k = 1; k <= l; k++) {
            uint8_t x = buf[off + k], y = s[k];
            if (x != y && fold(x) != fold(y))   /* folding only when the bytes differ: names mostly match exactly */
                return false;
        }
        off += 1 + (size_t)l;
        s += 1 + (size_t)l;
    }
}

static size_t write_end(const struct dns_writer *w) { return w->limit - w->opt_len; }

static bool put_bytes(struct dns_writer *w, const void *p, size_t n)
{
    if (n > write_end(w) - w->len)
        return false;
    memcpy(w->buf + w->len, p, n);
    w->len += n;
    return true;
}

/* The first label of n from which on the name is already in the table (a
 * suffix written before), n->labels when none is, and where that suffix is. */
static unsigned comp_lookup(const struct dns_writer *w, const struct wire_name *n, size_t *at)
{
    /* Most names a server writes are the question's own (every answer's
     * owner): one memcmp when written in the same case. */
    if (n->len == w->qname_len && n->labels > 0 && memcmp(w->buf + DNS_HEADER_LEN, n->p, n->len) == 0) {
        *at = DNS_HEADER_LEN;
        return 0;
    }
    for (unsigned k = 0; k < n->labels; k++) {
        unsigned slen = n->len - n->off[k], slabels = n->labels - k;
        for (unsigned e = 0; e < w->ncomp; e++) {
            const struct dns_comp_slot *c = &w->comp[e];
            if (c->len == slen && c->labels == slabels && same_name_at(w->buf, c->off, n->p + n->off[k])) {
                *at = c->off;
                return k;
            }
        }
    }
    return n->labels;
}

/* Write a name, ending in a pointer to the longest suffix already written
 * when compress is set, and remember where its new suffixes are (a suffix
 * the table knows is not remembered twice, even when written whole). */
static bool put_name(struct dns_writer *w, const struct wire_name *n, bool compress)
{
    size_t target = 0;
    unsigned known = comp_lookup(w, n, &target);
    bool pointer = compress && known < n->labels;
    size_t raw = pointer ? n->off[known] : n->len;
    size_t start = w->len;
    if (raw + (pointer ? 2 : 0) > write_end(w) - start)
        return false;
    memcpy(w->buf + start, n->p, raw);
    w->len += raw;
    if (pointer) {
        be_put16(w->buf + w->len, COMP_PTR | (unsigned)target);
        w->len += 2;
    }
    for (unsigned k = 0; k < known; k++)
        comp_remember(w, start + n->off[k], n->len - n->off[k], n->labels - k);
    return true;
}

struct rr_mark {
    size_t len;
    uint8_t ncomp;
    size_t rdlen_at;
};

/* Checks shared by every put: the section order, a writer still open, the
 * owner's form. A call for a later section moves the writer on to it, even
 * when the record is then refused. */
static int rr_check(struct dns_writer *w, enum dns_section s, const uint8_t *owner, struct wire_name *on)
{
    if (w->finished || (unsigned)s > DNS_SECTION_ADDITIONAL || (unsigned)s < w->section)
        return -EINVAL;
    if (scan_name(owner, DNS_NAME_MAX, on) < 0)
        return -EINVAL;
    w->section = (uint8_t)s;
    return w->truncated ? -ENOSPC : 0;
}

/* Owner, TYPE, CLASS IN, TTL and a RDLENGTH to fill in by rr_done. */
static bool rr_head(struct dns_writer *w, struct rr_mark *m, const struct wire_name *owner, uint16_t type,
                    uint32_t ttl)
{
    m->len = w->len;
    m->ncomp = w->ncomp;
    if (!put_name(w, owner, true))
        return false;
    uint8_t fixed[RR_FIXED_LEN];
    be_put16(fixed, type);
    be_put16(fixed + 2, DNS_CLASS_IN);
    be_put32(fixed + 4, ttl);
    be_put16(fixed + 8, 0);
    m->rdlen_at = w->len + 8;
    return put_bytes(w, fixed, sizeof fixed);
}

static int rr_done(struct dns_writer *w, enum dns_section s, const struct rr_mark *m)
{
    be_put16(w->buf + m->rdlen_at, (unsigned)(w->len - m->rdlen_at - 2));
    w->count[s]++;
    return 0;
}

static int rr_undo(struct dns_writer *w, enum dns_section s, const struct rr_mark *m)
{
    w->len = m->len;
    w->ncomp = m->ncomp;
    if (s != DNS_SECTION_ADDITIONAL)
        w->truncated = true;
    return -ENOSPC;
}

int dns_put_a(struct dns_writer *w, enum dns_section s, const uint8_t *owner, uint32_t ttl,
              const uint8_t addr[4])
{
    struct wire_name on;
    struct rr_mark m;
    int rc = rr_check(w, s, owner, &on);
    if (rc)
        return rc;
    if (!rr_head(w, &m, &on, DNS_TYPE_A, ttl) || !put_bytes(w, addr, 4))
        return rr_undo(w, s, &m);
    return rr_done(w, s, &m);
}

int dns_put_aaaa(struct dns_writer *w, enum dns_section s, const uint8_t *owner, uint32_t ttl,
                 const uint8_t addr[16])
{
    struct wire_name on;
    struct rr_mark m;
    int rc = rr_check(w, s, owner, &on);
    if (rc)
        return rc;
    if (!rr_head(w, &m, &on, DNS_TYPE_AAAA, ttl) || !put_bytes(w, addr, 16))
        return rr_undo(w, s, &m);
    return rr_done(w, s, &m);
}

int dns_put_srv(struct dns_writer *w, enum dns_section s, const uint8_t *owner, uint32_t ttl,
                uint16_t priority, uint16_t weight, uint16_t port, const uint8_t *target)
{
    struct wire_name on, tn;
    struct rr_mark m;
    int rc = rr_check(w, s, owner, &on);
    if (rc)
        return rc;
    if (scan_name(target, DNS_NAME_MAX, &tn) < 0)
        return -EINVAL;
    uint8_t fixed[6];
    be_put16(fixed, priority);
    be_put16(fixed + 2, weight);
    be_put16(fixed + 4, port);
    /* RFC 2782: the target is never compressed. */
    if (!rr_head(w, &m, &on, DNS_TYPE_SRV, ttl) || !put_bytes(w, fixed, sizeof fixed) || !put_name(w, &tn, false))
        return rr_undo(w, s, &m);
    return rr_done(w, s, &m);
}

int dns_put_ns(struct dns_writer *w, enum dns_section s, const uint8_t *owner, uint32_t ttl,
               const uint8_t *nsname)
{
    struct wire_name on, nn;
    struct rr_mark m;
    int rc = rr_check(w, s, owner, &on);
    if (rc)
        return rc;
    if (scan_name(nsname, DNS_NAME_MAX, &nn) < 0)
        return -EINVAL;
    if (!rr_head(w, &m, &on, DNS_TYPE_NS, ttl) || !put_name(w, &nn, true))
        return rr_undo(w, s, &m);
    return rr_done(w, s, &m);
}

int dns_put_soa(struct dns_writer *w, enum dns_section s, const uint8_t *owner, uint32_t ttl,
                const struct dns_soa *soa)
{
    struct wire_name on, mn, rn;
    struct rr_mark m;
    int rc = rr_check(w, s, owner, &on);
    if (rc)
        return rc;
    if (scan_name(soa->mname, DNS_NAME_MAX, &mn) < 0 || scan_name(soa->rname, DNS_NAME_MAX, &rn) < 0)
        return -EINVAL;
    uint8_t timers[20];
    be_put32(timers, soa->serial);
    be_put32(timers + 4, soa->refresh);
    be_put32(timers + 8, soa->retry);
    be_put32(timers + 12, soa->expire);
    be_put32(timers + 16, soa->minimum);
    if (!rr_head(w, &m, &on, DNS_TYPE_SOA, ttl) || !put_name(w, &mn, true) || !put_name(w, &rn, true) ||
        !put_bytes(w, timers, sizeof timers))
        return rr_undo(w, s, &m);
    return rr_done(w, s, &m);
}

int dns_response_begin(struct dns_writer *w, uint8_t *buf, size_t limit, const struct dns_query *q,
                       uint16_t udp_size)
{
    if (limit < DNS_UDP_MIN || limit > DNS_MSG_MAX)
        return -EINVAL;
    if (q->has_question && (q->qname.len < 1 || q->qname.len > DNS_NAME_MAX))
        return -EINVAL;
    bool ecs = q->has_edns && q->has_ecs;
    if (ecs && q->ecs.source_prefix > ecs_family_bits(q->ecs.family))
        return -EINVAL;

    w->buf = buf;
    w->limit = limit;
    w->count[0] = w->count[1] = w->count[2] = 0;
    w->section = DNS_SECTION_ANSWER;
    w->truncated = w->finished = false;
    w->edns = q->has_edns;
    w->dnssec_ok = q->has_edns && q->dnssec_ok;
    w->ecs = ecs;
    w->udp_size = udp_size;
    if (ecs)
        w->ecs_data = q->ecs;
    w->opt_len = !w->edns ? 0
                 : OPT_RR_LEN + (ecs ? EDNS_OPTION_HEAD + ECS_FIXED_LEN + ecs_addr_bytes(q->ecs.source_prefix) : 0);
    w->ncomp = 0;
    w->qname_len = q->has_question ? q->qname.len : 0;

    /* Header + the largest question + the largest OPT is 306 bytes: it
     * always fits in 512. */
    unsigned flags = FLAG_QR | (unsigned)(q->opcode & 0xF) << OPCODE_SHIFT | (q->rd ? FLAG_RD : 0) |
                     (q->cd ? FLAG_CD : 0);
    be_put16(buf, q->id);
    be_put16(buf + 2, flags);
    be_put16(buf + 4, q->has_question ? 1 : 0);
    memset(buf + 6, 0, 6);
    w->len = DNS_HEADER_LEN;
    if (q->has_question) {
        const struct dns_name *n = &q->qname;
        memcpy(buf + w->len, n->wire, n->len);
        for (unsigned i = 0; i < n->labels; i++)
            comp_remember(w, w->len + n->label_off[i], n->len - n->label_off[i], n->labels - i);
        w->len += n->len;
        be_put16(buf + w->len, q->qtype);
        be_put16(buf + w->len + 2, q->qclass);
        w->len += 4;
    }
    return 0;
}

ssize_t dns_response_finish(struct dns_writer *w, unsigned rcode, bool aa, uint8_t ecs_scope)
{
    if (w->finished || rcode > 0xFFF || (rcode > RCODE_MASK && !w->edns))
        return -EINVAL;
    if (w->ecs && ecs_scope > ecs_family_bits(w->ecs_data.family))
        return -EINVAL;
    uint8_t *b = w->buf;
    unsigned flags = be_get16(b + 2) & ~(FLAG_AA | FLAG_TC | RCODE_MASK);
    flags |= (aa ? FLAG_AA : 0) | (w->truncated ? FLAG_TC : 0) | (rcode & RCODE_MASK);
    be_put16(b + 2, flags);
    be_put16(b + 6, w->count[DNS_SECTION_ANSWER]);
    be_put16(b + 8, w->count[DNS_SECTION_AUTHORITY]);
    be_put16(b + 10, w->count[DNS_SECTION_ADDITIONAL] + (w->edns ? 1 : 0));
    if (w->edns) {
        /* The room was kept by dns_response_begin: this always fits. */
        uint8_t *p = b + w->len;
        unsigned rdlen = (unsigned)w->opt_len - OPT_RR_LEN;
        p[0] = 0;   /* the root */
        be_put16(p + 1, DNS_TYPE_OPT);
        be_put16(p + 3, w->udp_size);
        be_put32(p + 5, (uint32_t)(rcode >> 4) << 24 | (w->dnssec_ok ? EDNS_FLAG_DO : 0));   /* VERSION 0 */
        be_put16(p + 9, rdlen);
        if (w->ecs) {
            unsigned bytes = ecs_addr_bytes(w->ecs_data.source_prefix);
            be_put16(p + 11, DNS_EDNS_OPT_ECS);
            be_put16(p + 13, ECS_FIXED_LEN + bytes);
            be_put16(p + 15, w->ecs_data.family);
            p[17] = w->ecs_data.source_prefix;
            p[18] = ecs_scope;
            memcpy(p + 19, w->ecs_data.addr, bytes);
        }
        w->len += w->opt_len;
    }
    w->finished = true;
    return (ssize_t)w->len;
}

/* ---- SRV targets ---------------------------------------------------------- */

size_t dns_addr_label(sa_family_t family, const uint8_t *addr, char out[DNS_ADDR_LABEL_MAX])
{
    static const char hex[] = "0123456789abcdef";
    size_t n = 0;
    if (family == AF_INET) {
        /* by hand: snprintf was a tenth of the CPU of an SRV answer */
        for (int i = 0; i < 4; i++) {
            unsigned v = addr[i];
            if (i)
                out[n++] = '-';
            if (v >= 100)
                out[n++] = (char)('0' + v / 100);
            if (v >= 10)
                out[n++] = (char)('0' + v / 10 % 10);
            out[n++] = (char)('0' + v % 10);
        }
    } else {
        for (int i = 0; i < 16; i++) {
            out[n++] = hex[addr[i] >> 4];
            out[n++] = hex[addr[i] & 15];
        }
    }
    out[n] = '\0';
    return n;
}

static int hex_digit(uint8_t c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

bool dns_addr_label_parse(const uint8_t *p, size_t len, sa_family_t *family, uint8_t addr[16])
{
    memset(addr, 0, 16);
    if (len == 32) {
        for (size_t i = 0; i < 32; i++) {
            int v = hex_digit(p[i]);
            if (v < 0)
                return false;
            addr[i / 2] = (uint8_t)(i % 2 ? addr[i / 2] | v : v << 4);
        }
        *family = AF_INET6;
        return true;
    }
    unsigned part = 0, val = 0, digits = 0;
    for (size_t i = 0; i <= len; i++) {
        if (i == len || p[i] == '-') {
            if (digits == 0 || part > 3)
                return false;
            addr[part++] = (uint8_t)val;
            val = digits = 0;
        } else if (p[i] >= '0' && p[i] <= '9' && digits < 3 && !(digits > 0 && val == 0)) {
            val = val * 10 + (unsigned)(p[i] - '0');
            digits++;
            if (val > 255)
                return false;
        } else {
            return false;   /* not a digit, a fourth digit, or a leading zero */
        }
    }
    if (part != 4)
        return false;
    *family = AF_INET;
    return true;
}

int dns_srv_target(sa_family_t family, const uint8_t *addr, const char *service, size_t service_len,
                   const uint8_t *zone, size_t zone_len, uint8_t out[DNS_NAME_MAX])
{
    char label[DNS_ADDR_LABEL_MAX];
    size_t llen = dns_addr_label(family, addr, label);
    if (service_len > DNS_LABEL_MAX || 1 + llen + 1 + service_len + zone_len > DNS_NAME_MAX)
        return -1;
    out[0] = (uint8_t)llen;
    memcpy(out + 1, label, llen);
    out[1 + llen] = (uint8_t)service_len;
    memcpy(out + 2 + llen, service, service_len);
    memcpy(out + 2 + llen + service_len, zone, zone_len);
    return (int)(2 + llen + service_len + zone_len);
}
