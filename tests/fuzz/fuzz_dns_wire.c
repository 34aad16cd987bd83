/* libFuzzer target for lib/dns_wire.
 *
 * Input: one DNS query as it comes off the wire (the corpus holds real ones
 * from dig and malformed ones). The target parses it and checks what the
 * server relies on: the verdict matches the rules (DROP exactly for short
 * messages and responses, NOTIMP exactly for other opcodes), the question
 * is the bytes at offset 12 with its lower-cased copy and label offsets
 * consistent, a valid Client Subnet is within its family's bounds, parsing
 * is deterministic, and a message that parses OK stops parsing OK when its
 * last byte is cut or a byte is added.
 *
 * Then, for every query that gets an answer, it writes a response the way
 * the server would: a transport, payload limit, rcode, AA bit and ECS scope
 * taken from the query's ID, and for OK queries up to 255 records of every
 * type the codec writes, over every section, with names from the question
 * (in other cases too, to exercise case-insensitive compression). The
 * response is read back by the independent reader in dns_response_check.h,
 * which must find it well formed, within the limit, with the header, the
 * question, the OPT and Client Subnet echo it should have, TC exactly when a
 * record was refused, and the records written, in order, equal to the
 * records accepted. A record is only ever refused when even its
 * uncompressed size does not fit. */
#include "lib/dns_wire.h"

#include "dns_response_check.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(x)                                                                           \
    do {                                                                                   \
        if (!(x)) {                                                                        \
            fprintf(stderr, "fuzz_dns_wire: invariant failed at line %d: %s\n", __LINE__, #x); \
            abort();                                                                       \
        }                                                                                  \
    } while (0)

static uint8_t response[DNS_MSG_MAX];

static uint8_t fold(uint8_t c) { return c >= 'A' && c <= 'Z' ? (uint8_t)(c + 32) : c; }

static enum dns_parse_result parse_copy(const uint8_t *data, size_t len, struct dns_query *q)
{
    uint8_t *copy = malloc(len ? len : 1);
    CHECK(copy);
    memcpy(copy, data, len);
    enum dns_parse_result r = dns_parse_query(copy, len, q);
    free(copy);
    return r;
}

static void check_name_struct(const struct dns_name *n)
{
    CHECK(n->len >= 1 && n->len <= DNS_NAME_MAX);
    size_t p = 0;
    for (unsigned i = 0; i < n->labels; i++) {
        CHECK(n->label_off[i] == p);
        CHECK(n->wire[p] >= 1 && n->wire[p] <= DNS_LABEL_MAX);
        p += 1 + (size_t)n->wire[p];
    }
    CHECK(p == (size_t)n->len - 1 && n->wire[p] == 0);
    for (size_t i = 0; i < n->len; i++)
        CHECK(n->lower[i] == fold(n->wire[i]));
    CHECK(dns_name_wire_len(n->wire, n->len) == n->len);
}

static void check_query(const uint8_t *data, size_t len, enum dns_parse_result r, const struct dns_query *q)
{
    CHECK(r >= DNS_PARSE_OK && r <= DNS_PARSE_BADVERS);
    CHECK((r == DNS_PARSE_OK) == (q->error == NULL));
    CHECK(r != DNS_PARSE_OK || q->rcode == DNS_RCODE_NOERROR);
    CHECK(r != DNS_PARSE_FORMERR || q->rcode == DNS_RCODE_FORMERR);
    CHECK(r != DNS_PARSE_NOTIMP || q->rcode == DNS_RCODE_NOTIMP);
    CHECK(r != DNS_PARSE_BADVERS || (q->rcode == DNS_RCODE_BADVERS && q->has_edns && q->edns_version > 0));
    bool short_or_response = len < DNS_HEADER_LEN || (data[2] & 0x80);
    CHECK((r == DNS_PARSE_DROP) == short_or_response);
    if (r == DNS_PARSE_DROP)
        return;
    CHECK(q->id == (data[0] << 8 | data[1]));
    CHECK((r == DNS_PARSE_NOTIMP) == (((data[2] >> 3) & 0xF) != 0));
    CHECK(q->opcode == ((data[2] >> 3) & 0xF));
    CHECK(q->rd == ((data[2] & 1) != 0) && q->cd == ((data[3] & 0x10) != 0));
    CHECK(r != DNS_PARSE_OK || q->has_question);
    if (q->has_question) {
        check_name_struct(&q->qname);
        CHECK(len >= DNS_HEADER_LEN + q->qname.len + 4u);
        CHECK(memcmp(q->qname.wire, data + DNS_HEADER_LEN, q->qname.len) == 0);
    }
    CHECK(!q->has_ecs || (r == DNS_PARSE_OK && q->has_edns));
    if (q->has_ecs) {
        unsigned width = q->ecs.family == DNS_ECS_FAMILY_IPV4 ? 32 : 128;
        CHECK(q->ecs.family == DNS_ECS_FAMILY_IPV4 || q->ecs.family == DNS_ECS_FAMILY_IPV6);
        CHECK(q->ecs.source_prefix <= width && q->ecs.scope_prefix == 0);
        for (unsigned bit = q->ecs.source_prefix; bit < 128; bit++)
            CHECK(!(q->ecs.addr[bit / 8] & (0x80 >> (bit % 8))));
    }
    CHECK(!q->has_edns || r != DNS_PARSE_OK || q->edns_version == 0);
}

/* Labels, folding, zone matching and the text forms, on the question. */
static void check_name_helpers(const struct dns_query *q)
{
    const struct dns_name *n = &q->qname;
    for (unsigned k = 0; k <= n->labels; k++) {
        struct dns_name zone;
        size_t off = k < n->labels ? n->label_off[k] : (size_t)n->len - 1;
        CHECK(dns_name_set(&zone, n->wire + off, n->len - off) == 0);
        CHECK(dns_name_in_zone(n, &zone) == (int)k);
        if (k < n->labels) {
            size_t llen;
            const uint8_t *lab = dns_name_label(n, k, &llen);
            CHECK(llen == n->wire[n->label_off[k]] && lab == &n->lower[n->label_off[k] + 1]);
        }
    }
    /* one label more than the name has: never inside */
    if (n->len + 2 <= DNS_NAME_MAX) {
        uint8_t longer[DNS_NAME_MAX];
        struct dns_name zone;
        longer[0] = 1;
        longer[1] = 'z';
        memcpy(longer + 2, n->wire, n->len);
        CHECK(dns_name_set(&zone, longer, n->len + 2) == 0);
        CHECK(dns_name_in_zone(n, &zone) == -1);
    }
    char text[DNS_NAME_TEXT_MAX];
    int tl = dns_name_to_text(n->wire, n->len, text, sizeof text);
    CHECK(tl > 0 && (size_t)tl == strlen(text));
    if (!strchr(text, '\\')) {
        uint8_t back[DNS_NAME_MAX];
        CHECK(dns_name_from_text(text, back) == n->len);
        CHECK(memcmp(back, n->wire, n->len) == 0);
    }
    char tiny[4];
    int small = dns_name_to_text(n->wire, n->len, tiny, sizeof tiny);
    CHECK(small == (tl < (int)sizeof tiny ? tl : -ENOSPC));
}

/* ---- the response ---- */

struct names {
    uint8_t pool[5][DNS_NAME_MAX];
};

/* Names the records use: the question, its parent, a child of the parent
 * made for record i, the root, and the question in upper case. */
static const uint8_t *pick_name(struct names *nm, const struct dns_query *q, unsigned which, unsigned i)
{
    const struct dns_name *n = &q->qname;
    const uint8_t *parent = n->labels > 1 ? n->wire + n->label_off[1] : n->wire + n->len - 1;
    size_t parent_len = dns_name_wire_len(parent, DNS_NAME_MAX);
    switch (which % 5) {
    case 0:
        return n->wire;
    case 1:
        return parent;
    case 2: {
        uint8_t *out = nm->pool[2];
        int l = snprintf((char *)out + 1, 8, "x%u", i % 1000);
        out[0] = (uint8_t)l;
        if (1 + (size_t)l + parent_len > DNS_NAME_MAX)
            return parent;
        memcpy(out + 1 + l, parent, parent_len);
        return out;
    }
    case 3:
        nm->pool[3][0] = 0;
        return nm->pool[3];
    default:
        for (size_t k = 0; k < n->len; k++) {
            uint8_t c = n->wire[k];
            nm->pool[4][k] = c >= 'a' && c <= 'z' ? (uint8_t)(c - 32) : c;
        }
        /* length bytes are below 'a': the upper-casing left them alone */
        return nm->pool[4];
    }
}

static size_t name_len(const uint8_t *p) { return (size_t)dns_name_wire_len(p, DNS_NAME_MAX); }

struct outcome {
    struct dnsc_buf expect;
    bool truncated;
};

/* Add record i; record what it should look like when accepted. */
static void add_record(struct dns_writer *w, const struct dns_query *q, struct outcome *o, unsigned i, unsigned n)
{
    struct names nm;
    enum dns_section sec = (enum dns_section)(i * 3 / n);
    const uint8_t *owner = pick_name(&nm, q, i + (q->id >> 3), i);
    /* pick_name fills one slot per call: copy the owner out before the next */
    uint8_t owner_copy[DNS_NAME_MAX];
    memcpy(owner_copy, owner, name_len(owner));
    owner = owner_copy;
    const uint8_t *n1 = pick_name(&nm, q, i * 7 + 1, i + 1);
    uint8_t n1_copy[DNS_NAME_MAX];
    memcpy(n1_copy, n1, name_len(n1));
    n1 = n1_copy;
    const uint8_t *n2 = pick_name(&nm, q, i * 3 + 2, i + 2);
    uint32_t ttl = (uint32_t)i * 2654435761u;
    uint8_t addr[16];
    for (int k = 0; k < 16; k++)
        addr[k] = (uint8_t)(i * 31 + k);
    uint32_t timers[5] = { i, i + 1, i + 2, i + 3, i + 4 };

    size_t room = w->limit - w->opt_len - w->len;
    size_t bound = name_len(owner) + 10;
    int rc;
    struct dnsc_buf rec = { 0 };
    switch ((i + q->qtype) % 5) {
    case 0:
        bound += 4;
        rc = dns_put_a(w, sec, owner, ttl, addr);
        dnsc_canon_addr(&rec, sec, owner, ttl, addr, 4);
        break;
    case 1:
        bound += 16;
        rc = dns_put_aaaa(w, sec, owner, ttl, addr);
        dnsc_canon_addr(&rec, sec, owner, ttl, addr, 16);
        break;
    case 2:
        bound += 6 + name_len(n1);
        rc = dns_put_srv(w, sec, owner, ttl, (uint16_t)i, (uint16_t)(i * 3), (uint16_t)(i * 5), n1);
        dnsc_canon_srv(&rec, sec, owner, ttl, i & 0xFFFF, (i * 3) & 0xFFFF, (i * 5) & 0xFFFF, n1);
        break;
    case 3:
        bound += name_len(n1);
        rc = dns_put_ns(w, sec, owner, ttl, n1);
        dnsc_canon_ns(&rec, sec, owner, ttl, n1);
        break;
    default: {
        struct dns_soa soa = { n1, n2, timers[0], timers[1], timers[2], timers[3], timers[4] };
        bound += name_len(n1) + name_len(n2) + 20;
        rc = dns_put_soa(w, sec, owner, ttl, &soa);
        dnsc_canon_soa(&rec, sec, owner, ttl, n1, n2, timers);
        break;
    }
    }
    CHECK(rc == 0 || rc == -ENOSPC);
    if (o->truncated)
        CHECK(rc == -ENOSPC);       /* nothing after a truncation */
    else if (bound <= room)
        CHECK(rc == 0);             /* refused only when it cannot fit */
    if (rc == 0)
        dnsc_put(&o->expect, rec.p, rec.len);
    else if (sec != DNS_SECTION_ADDITIONAL)
        o->truncated = true;
    free(rec.p);
}

static void check_response(const struct dns_query *q, enum dns_parse_result r)
{
    bool tcp = q->id & 0x100;
    uint16_t udp_max = (uint16_t)(400 + ((q->id >> 9) & 7) * 600);
    size_t limit = dns_response_limit(q, tcp, udp_max);
    if (tcp)
        CHECK(limit == DNS_MSG_MAX);
    else if (!q->has_edns)
        CHECK(limit == DNS_UDP_MIN);
    else
        CHECK(limit >= DNS_UDP_MIN && (limit == DNS_UDP_MIN || (limit <= udp_max && limit <= q->udp_size)));

    struct dns_writer w;
    CHECK(dns_response_begin(&w, response, DNS_UDP_MIN - 1, q, udp_max) == -EINVAL);
    CHECK(dns_response_begin(&w, response, limit, q, udp_max) == 0);
    struct outcome o = { { 0 }, false };
    unsigned n = r == DNS_PARSE_OK ? (q->id & 0xFF) : 0;
    for (unsigned i = 0; i < n; i++)
        add_record(&w, q, &o, i, n);
    if (n >= 3) {
        uint8_t a[4] = { 1, 2, 3, 4 };
        CHECK(dns_put_a(&w, DNS_SECTION_ANSWER, q->qname.wire, 1, a) == -EINVAL);   /* out of order */
    }

    unsigned rcode = q->rcode;
    if (r == DNS_PARSE_OK)
        rcode = ((q->id >> 12) & 0xF) | (q->has_edns ? ((q->id >> 4) & 3u) << 4 : 0);
    bool aa = q->id & 0x0400;
    unsigned width = q->ecs.family == DNS_ECS_FAMILY_IPV4 ? 32 : 128;
    uint8_t scope = q->has_ecs ? (uint8_t)(q->id % (width + 1)) : 0;
    if (q->has_ecs)
        CHECK(dns_response_finish(&w, rcode, aa, (uint8_t)(width + 1)) == -EINVAL);
    if (!q->has_edns)
        CHECK(dns_response_finish(&w, 16, aa, scope) == -EINVAL);
    ssize_t len = dns_response_finish(&w, rcode, aa, scope);
    CHECK(len >= DNS_HEADER_LEN && (size_t)len <= limit);
    CHECK(dns_response_finish(&w, rcode, aa, scope) == -EINVAL);   /* only once */

    struct dnsc_response rr;
    bool ok = dnsc_parse(response, (size_t)len, &rr);
    if (!ok)
        fprintf(stderr, "response rejected: %s\n", rr.error);
    CHECK(ok);
    CHECK(rr.id == q->id);
    CHECK(((rr.flags >> 11) & 0xF) == q->opcode);
    CHECK(((rr.flags & 0x0400) != 0) == aa);
    CHECK(((rr.flags & 0x0200) != 0) == o.truncated);
    CHECK(((rr.flags & 0x0100) != 0) == q->rd);
    CHECK(((rr.flags & 0x0010) != 0) == q->cd);
    CHECK((rr.flags & 0x00A0) == 0);   /* RA, AD */
    CHECK((rr.flags & 0xF) == (rcode & 0xF));
    CHECK(rr.has_question == q->has_question);
    if (q->has_question) {
        CHECK(rr.qname_len == q->qname.len && memcmp(rr.qname, q->qname.wire, q->qname.len) == 0);
        CHECK(rr.qtype == q->qtype && rr.qclass == q->qclass);
    }
    CHECK(rr.has_opt == q->has_edns);
    if (rr.has_opt) {
        CHECK(rr.opt_udp_size == udp_max && rr.opt_version == 0 && rr.opt_zflags == 0);
        CHECK(rr.opt_ext_rcode == rcode >> 4 && rr.opt_do == q->dnssec_ok);
        CHECK(rr.has_ecs == q->has_ecs);
        if (rr.has_ecs) {
            CHECK(rr.ecs_family == q->ecs.family && rr.ecs_source == q->ecs.source_prefix);
            CHECK(rr.ecs_scope == scope && memcmp(rr.ecs_addr, q->ecs.addr, 16) == 0);
        }
    }
    CHECK(rr.canon.len == o.expect.len && (o.expect.len == 0 || memcmp(rr.canon.p, o.expect.p, o.expect.len) == 0));

    /* The query parser never takes a response for a query. */
    struct dns_query again;
    CHECK(dns_parse_query(response, (size_t)len, &again) == DNS_PARSE_DROP);
    dnsc_free(&rr);
    free(o.expect.p);
}

/* dns_read_question (a forwarder reading an upstream's answer) reads any
 * message whose question the query parser could read, and agrees with it;
 * what it reads is within the message. */
static void check_read_question(const uint8_t *data, size_t size, enum dns_parse_result r, const struct dns_query *q)
{
    static struct dns_question rq;
    int rc = dns_read_question(data, size, &rq);
    if (rc == 0) {
        CHECK(rq.end <= size && rq.end >= DNS_HEADER_LEN + 5);
        CHECK(rq.qname.len >= 1 && rq.qname.len <= DNS_NAME_MAX);
    }
    if (q->has_question) {
        CHECK(rc == 0);
        CHECK(rq.id == q->id && rq.flags == q->flags && rq.qtype == q->qtype && rq.qclass == q->qclass);
        CHECK(dns_name_equal(&rq.qname, &q->qname) && memcmp(rq.qname.wire, q->qname.wire, q->qname.len) == 0);
    }
    (void)r;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct dns_query q, q2;
    enum dns_parse_result r = dns_parse_query(data, size, &q);
    check_query(data, size, r, &q);

    /* deterministic */
    CHECK(parse_copy(data, size, &q2) == r && q2.rcode == q.rcode && q2.has_question == q.has_question &&
          q2.has_edns == q.has_edns && q2.has_ecs == q.has_ecs && q2.error == q.error);
    if (r == DNS_PARSE_OK) {
        /* counts promise every byte: one fewer or one more is malformed */
        CHECK(parse_copy(data, size - 1, &q2) == (size - 1 < DNS_HEADER_LEN ? DNS_PARSE_DROP : DNS_PARSE_FORMERR));
        uint8_t *longer = malloc(size + 1);
        CHECK(longer);
        memcpy(longer, data, size);
        longer[size] = 0;
        CHECK(dns_parse_query(longer, size + 1, &q2) == DNS_PARSE_FORMERR);
        free(longer);
        check_name_helpers(&q);
    }
    if (r != DNS_PARSE_DROP)
        check_response(&q, r);
    check_read_question(data, size, r, &q);
    return 0;
}
