/* The DNS wire codec of an authoritative server: a strict query parser and
 * a bounded response writer (RFC 1035, EDNS0 RFC 6891, Client Subnet
 * RFC 7871).
 *
 * Pure code: no globals, no logging, no allocation. A query is copied into
 * a struct dns_query (about 700 bytes; keep one per worker, not per call),
 * so the message buffer may be reused at once, even as the response buffer.
 *
 * The parser reads one query (a UDP datagram, or one TCP message without its
 * two-byte length) and decides its fate by the rules below; the writer puts
 * a header, the question, records and an OPT record into the caller's
 * buffer without ever passing the size limit it was given, truncating at a
 * record boundary with TC set when the answer does not fit.
 *
 * Query rules, in the order they are checked (the first that applies
 * decides; the reason is in dns_query.error):
 *
 *   DROP (send nothing)   shorter than the 12-byte header (no ID to answer
 *                         to); QR set (a response: answering it could start
 *                         a loop between two servers).
 *   NOTIMP                OPCODE other than QUERY (0). Nothing after the
 *                         header is read: other opcodes give the sections
 *                         other meanings; the answer has no question.
 *   FORMERR               the message is longer than 65535 bytes;
 *                         QDCOUNT is not 1;
 *                         the question name is cut short, has a label
 *                         type other than a plain length (0x40, 0x80), or a
 *                         compression pointer (it is the first name of the
 *                         message, so a pointer can only lead into the
 *                         header, to itself (a loop) or forward), or is
 *                         longer than 255 bytes;
 *                         QTYPE/QCLASS cut short;
 *                         ANCOUNT or NSCOUNT is not 0 (as NSD);
 *                         a record in the additional section that is not
 *                         OPT (TSIG and SIG(0) are not supported), an OPT
 *                         whose owner is not the root, a second OPT, a
 *                         record cut short or whose RDLENGTH passes the end;
 *                         EDNS options that do not tile the OPT's RDATA
 *                         exactly; a second Client Subnet option; a Client
 *                         Subnet option with a FAMILY other than 1 (IPv4) or
 *                         2 (IPv6), a SOURCE PREFIX-LENGTH over 32 or 128,
 *                         a SCOPE PREFIX-LENGTH other than 0, an ADDRESS
 *                         not exactly ceil(SOURCE/8) bytes long, or ADDRESS
 *                         bits set beyond SOURCE (RFC 7871 §6, §7.2.1);
 *                         bytes after the last record (libknot flags them too).
 *   BADVERS               a well-formed message whose OPT has a VERSION
 *                         above 0; its options are not read (their format
 *                         belongs to that version).
 *   OK                    anything else. QTYPE and QCLASS are not judged
 *                         here: which ones it serves is the server's choice.
 *
 * Tolerated and ignored, as RFC 1035 and 6891 ask of receivers: the AA, TC,
 * RA, Z and AD bits and the RCODE of a query; the EXTENDED-RCODE and the
 * flags other than DO of the OPT; EDNS options other than Client Subnet
 * (COOKIE, padding, keepalive...), which are skipped. A UDP payload size
 * below 512 counts as 512 (RFC 6891 §6.2.5).
 *
 * Names: labels are 8-bit clean; matching folds A-Z to a-z only (RFC 4343).
 * The question keeps the case it came with, and is echoed in it (resolvers
 * that randomise case check it); names compressed against it take its case.
 */
#ifndef SLUICE_LIB_DNS_WIRE_H
#define SLUICE_LIB_DNS_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

#define DNS_HEADER_LEN 12
#define DNS_NAME_MAX 255        /* wire length of a name, root byte included */
#define DNS_LABEL_MAX 63
#define DNS_LABELS_MAX 127      /* labels in a name of DNS_NAME_MAX bytes, root excluded */
#define DNS_NAME_TEXT_MAX 1024  /* enough for any name printed by dns_name_to_text, NUL included */
#define DNS_UDP_MIN 512         /* the limit without EDNS, and the floor with it */
#define DNS_MSG_MAX 65535       /* the limit over TCP */
#define DNS_COMPRESS_SLOTS 64   /* names a writer remembers for compression */

enum dns_type {
    DNS_TYPE_A = 1, DNS_TYPE_NS = 2, DNS_TYPE_CNAME = 5, DNS_TYPE_SOA = 6, DNS_TYPE_PTR = 12,
    DNS_TYPE_MX = 15, DNS_TYPE_TXT = 16, DNS_TYPE_AAAA = 28, DNS_TYPE_SRV = 33, DNS_TYPE_OPT = 41,
    DNS_TYPE_TSIG = 250, DNS_TYPE_IXFR = 251, DNS_TYPE_AXFR = 252, DNS_TYPE_ANY = 255,
};

enum dns_class { DNS_CLASS_IN = 1, DNS_CLASS_CH = 3, DNS_CLASS_ANY = 255 };

enum dns_rcode {
    DNS_RCODE_NOERROR = 0, DNS_RCODE_FORMERR = 1, DNS_RCODE_SERVFAIL = 2, DNS_RCODE_NXDOMAIN = 3,
    DNS_RCODE_NOTIMP = 4, DNS_RCODE_REFUSED = 5,
    DNS_RCODE_BADVERS = 16,   /* extended: needs an OPT record in the response */
};

#define DNS_OPCODE_QUERY 0
#define DNS_EDNS_OPT_ECS 8      /* Client Subnet option code */
#define DNS_ECS_FAMILY_IPV4 1
#define DNS_ECS_FAMILY_IPV6 2

enum dns_parse_result {
    DNS_PARSE_OK = 0,
    DNS_PARSE_DROP,      /* send nothing */
    DNS_PARSE_FORMERR,   /* answer with rcode FORMERR */
    DNS_PARSE_NOTIMP,    /* answer with rcode NOTIMP */
    DNS_PARSE_BADVERS,   /* answer with rcode BADVERS (16) and an OPT */
};

/* An uncompressed name: the question's, or one built by dns_name_from_text. */
struct dns_name {
    uint8_t wire[DNS_NAME_MAX];    /* as received: labels, then the root's 0 byte */
    uint8_t lower[DNS_NAME_MAX];   /* the same with A-Z folded to a-z: compare this */
    uint16_t len;                  /* bytes in wire, 1 (the root) to 255 */
    uint8_t labels;                /* labels before the root: 0 for the root */
    uint8_t label_off[DNS_LABELS_MAX];   /* offset of label i's length byte in wire/lower */
};

/* The Client Subnet option (RFC 7871 §6) as sent. */
struct dns_ecs {
    uint16_t family;          /* DNS_ECS_FAMILY_IPV4 or DNS_ECS_FAMILY_IPV6 */
    uint8_t source_prefix;    /* bits of addr that count: 0..32 or 0..128 */
    uint8_t scope_prefix;     /* 0 in a valid query */
    uint8_t addr[16];         /* network byte order (IPv4 in addr[0..3]); 0 beyond source_prefix */
};

struct dns_query {
    uint16_t id;
    uint16_t flags;          /* the header's second 16-bit word as received */
    uint8_t opcode;
    bool rd, cd;             /* copied into the response */
    bool has_question;       /* qname, qtype and qclass were read (the response echoes them) */
    struct dns_name qname;
    uint16_t qtype, qclass;
    bool has_edns;           /* one OPT record's fixed fields were read (the response has an OPT) */
    uint16_t udp_size;       /* the OPT's payload size as sent (see dns_response_limit) */
    uint8_t edns_version;
    bool dnssec_ok;          /* the DO bit (RFC 3225), copied into the response's OPT */
    bool has_ecs;            /* a valid Client Subnet option; only ever set with DNS_PARSE_OK */
    struct dns_ecs ecs;
    uint16_t rcode;          /* what to answer with: 0 on OK, else FORMERR, NOTIMP or BADVERS */
    const char *error;       /* short static English text; NULL on OK */
};

/* Parse the query in msg[0..len). Reads nothing past len, keeps no pointer
 * into msg. Fills q as far as the rules above let it read (has_question and
 * has_edns tell what the response may echo) and returns the verdict, which
 * is also in q->rcode and q->error. */
enum dns_parse_result dns_parse_query(const uint8_t *msg, size_t len, struct dns_query *q);

/* The header and the question of any message, a response too: what a
 * forwarder needs to match an upstream's answer to the query it sent. */
struct dns_question {
    uint16_t id, flags;
    struct dns_name qname;       /* plain labels only, as in a query */
    uint16_t qtype, qclass;
    size_t end;                  /* offset just past QCLASS */
};

/* Read msg[0..len)'s ID, flags and its one question. Returns 0, or -EINVAL
 * when the message is shorter than the header or longer than 65535 bytes,
 * QDCOUNT is not 1, or the question name is cut short, holds a pointer or
 * a label type other than a length, or passes 255 bytes, or QTYPE/QCLASS
 * are cut short. Reads nothing else (the other sections are the caller's
 * to pass on untouched). */
int dns_read_question(const uint8_t *msg, size_t len, struct dns_question *out);

/* True when two names are the same, ignoring case (RFC 4343). */
static inline bool dns_name_equal(const struct dns_name *a, const struct dns_name *b)
{
    if (a->len != b->len)
        return false;
    for (size_t i = 0; i < a->len; i++)
        if (a->lower[i] != b->lower[i])
            return false;
    return true;
}

/* The size limit for the response to q: DNS_MSG_MAX over TCP; over UDP the
 * client's EDNS payload size (at least 512) capped by the server's own
 * udp_max (at least 512), or 512 without EDNS. */
size_t dns_response_limit(const struct dns_query *q, bool tcp, uint16_t udp_max);

/* ---- the response writer --------------------------------------------- */

enum dns_section { DNS_SECTION_ANSWER = 0, DNS_SECTION_AUTHORITY = 1, DNS_SECTION_ADDITIONAL = 2 };

/* Lives on the caller's stack (about 330 bytes). A caller may read len
 * (bytes written so far) and truncated (TC will be set); the rest is the
 * codec's. */
struct dns_writer {
    uint8_t *buf;
    size_t limit;              /* never written past */
    size_t len;                /* bytes written so far */
    size_t opt_len;            /* kept free at the end for the OPT record */
    uint16_t count[3];         /* records per section */
    uint8_t section;           /* the section of the last put: sections only move on */
    bool truncated;            /* TC: an answer or authority record did not fit */
    bool finished;             /* dns_response_finish ran: nothing more is written */
    bool edns, dnssec_ok, ecs;
    uint16_t udp_size;
    struct dns_ecs ecs_data;
    uint16_t qname_len;        /* the question's name at offset 12, 0 when none */
    uint8_t ncomp;
    struct dns_comp_slot { uint16_t off; uint8_t len; uint8_t labels; } comp[DNS_COMPRESS_SLOTS];
};

/* Start the response to q in buf[0..limit) (buf may be the query's own
 * buffer). Writes the header (ID, OPCODE, RD and CD copied, QR set) and, when
 * q->has_question, the question as received; keeps room for an OPT record
 * when q->has_edns (with the Client Subnet option when q->has_ecs), which
 * advertises udp_size as this server's payload size. limit is normally
 * dns_response_limit(); it must be 512..65535. Returns 0, or -EINVAL for a
 * limit outside that range (nothing written). */
int dns_response_begin(struct dns_writer *w, uint8_t *buf, size_t limit, const struct dns_query *q,
                       uint16_t udp_size);

/* Add one record of class IN to a section. Sections go in order (answer,
 * authority, additional); a record for an earlier section than the last one
 * is refused with -EINVAL, as is a malformed name (not uncompressed wire
 * form: labels of 1..63 bytes, then 0, at most 255 bytes). Names are given
 * uncompressed; owners and NS/SOA names are compressed against the names
 * written before (the question, owners, RDATA names; the first
 * DNS_COMPRESS_SLOTS label positions below offset 16384), compared without
 * regard to case. An SRV target is written whole (RFC 2782), but later names
 * may point to it.
 *
 * Returns 0 when the record was written, or -ENOSPC when it does not fit
 * before the limit (minus the OPT's room). Then nothing of it stays; in the
 * answer and authority sections TC is set and every later record is refused
 * with -ENOSPC (a truncated response ends at a record boundary); in the
 * additional section the record is just left out (RFC 2181 §9: no TC for
 * additional data) and a smaller one may still fit. */
int dns_put_a(struct dns_writer *w, enum dns_section s, const uint8_t *owner, uint32_t ttl,
              const uint8_t addr[4]);
int dns_put_aaaa(struct dns_writer *w, enum dns_section s, const uint8_t *owner, uint32_t ttl,
                 const uint8_t addr[16]);
int dns_put_srv(struct dns_writer *w, enum dns_section s, const uint8_t *owner, uint32_t ttl,
                uint16_t priority, uint16_t weight, uint16_t port, const uint8_t *target);
int dns_put_ns(struct dns_writer *w, enum dns_section s, const uint8_t *owner, uint32_t ttl,
               const uint8_t *nsname);

struct dns_soa {
    const uint8_t *mname, *rname;   /* uncompressed wire names */
    uint32_t serial, refresh, retry, expire, minimum;
};
int dns_put_soa(struct dns_writer *w, enum dns_section s, const uint8_t *owner, uint32_t ttl,
                const struct dns_soa *soa);

/* Finish the response: set RCODE (0..4095; the bits above the low four go to
 * the OPT, so a value over 15 needs q->has_edns), AA when aa, TC when a record
 * did not fit, the section counts, and append the OPT record (the DO bit
 * copied; the Client Subnet option echoed with FAMILY, SOURCE PREFIX-LENGTH
 * and ADDRESS of the query and SCOPE PREFIX-LENGTH ecs_scope, which must not
 * exceed the family's width; RFC 7871 §7.2.1 wants 0 when the answer does not
 * depend on the client's address). Returns the response's length (at most
 * the limit), or -EINVAL (nothing changed) for a bad rcode or ecs_scope. */
ssize_t dns_response_finish(struct dns_writer *w, unsigned rcode, bool aa, uint8_t ecs_scope);

/* ---- names ------------------------------------------------------------ */

/* Length of the uncompressed wire name at the start of p[0..max), or -EINVAL
 * when it is not one (a label type other than a length, a cut, over 255). */
int dns_name_wire_len(const uint8_t *p, size_t max);

/* Text ("svc.sluice.test", a final dot optional, "." for the root) to an
 * uncompressed wire name in out (case kept). Returns its length, or -EINVAL
 * for an empty text or label, a label over 63 bytes, a name over 255 bytes,
 * or a backslash (escapes are not read). */
int dns_name_from_text(const char *text, uint8_t out[DNS_NAME_MAX]);

/* Fill a struct dns_name from an uncompressed wire name (the form the query
 * parser gives). Returns 0 or -EINVAL as dns_name_wire_len. */
int dns_name_set(struct dns_name *n, const uint8_t *wire, size_t max);

/* Presentation form of a wire name into out[0..cap): labels joined by dots,
 * a final dot, "." for the root; '.', '\\' and bytes outside 0x21..0x7e
 * escaped (\. \\ \DDD). Returns the length without the NUL, or -ENOSPC
 * (out holds an empty string when cap > 0). DNS_NAME_TEXT_MAX always fits. */
int dns_name_to_text(const uint8_t *wire, size_t max, char *out, size_t cap);

/* Is name at or below zone? Returns the number of labels of name before the
 * zone (0: the apex itself), or -1 when name is outside it. Compares the
 * lower-cased forms, on label boundaries ("xsluice.test" is not in
 * "sluice.test"). */
int dns_name_in_zone(const struct dns_name *name, const struct dns_name *zone);

/* ---- SRV targets: ADDR.SERVICE.ZONE ---- */

/* The label that names an instance's address in an SRV target, as the
 * registry and the agent both write it: "10-1-0-7" (IPv4), or the 16
 * bytes in 32 lower-case hex digits (IPv6). Room for the longest, a NUL. */
#define DNS_ADDR_LABEL_MAX 33

/* addr: 4 bytes (AF_INET) or 16 (AF_INET6). Returns the label's length
 * (a NUL follows it). */
size_t dns_addr_label(sa_family_t family, const uint8_t *addr, char out[DNS_ADDR_LABEL_MAX]);

/* The reverse, for a lower-cased label: true with the family and the bytes
 * (addr zeroed past the fourth for IPv4) when p[0..len) is a label
 * dns_addr_label writes. Only that form: no leading zeros, no upper-case
 * hex, so each address has one name. */
bool dns_addr_label_parse(const uint8_t *p, size_t len, sa_family_t *family, uint8_t addr[16]);

/* The wire name ADDR.SERVICE.ZONE into out (zone: an uncompressed wire
 * name with its root label). Returns its length, or -1 when it would pass
 * 255 bytes (or the service is no label: over 63 bytes). */
int dns_srv_target(sa_family_t family, const uint8_t *addr, const char *service, size_t service_len,
                   const uint8_t *zone, size_t zone_len, uint8_t out[DNS_NAME_MAX]);

/* Label i (0 = leftmost) of name, lower-cased: a pointer to its bytes and its
 * length in *len. i must be below name->labels. */
static inline const uint8_t *dns_name_label(const struct dns_name *name, unsigned i, size_t *len)
{
    const uint8_t *p = &name->lower[name->label_off[i]];
    *len = p[0];
    return p + 1;
}

#endif
