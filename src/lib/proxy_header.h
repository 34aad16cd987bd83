/* The PROXY protocol header, versions 1 and 2: a strict, incremental
 * parser and a writer (the specification: haproxy.org, doc/proxy-protocol.txt).
 *
 * A proxy in front of another one puts this header before the first byte
 * of a TCP connection to say who the client really was: version 1 is one
 * text line ("PROXY TCP4 192.0.2.1 198.51.100.2 51234 443\r\n"), version 2
 * a binary block (a 12-byte signature, version and command, family, length,
 * the addresses, then type-length-value extensions).
 *
 * Pure code: no sockets, no allocation. The proxy tier reads bytes into a
 * buffer and calls proxy_hdr_parse() until it says the header is complete
 * (proxy/proxy_protocol.c); it writes the header to a backend with
 * proxy_hdr_write_v1() or proxy_hdr_write_v2().
 */
#ifndef SLUICE_LIB_PROXY_HEADER_H
#define SLUICE_LIB_PROXY_HEADER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define PROXY_HDR_V1_MAX 107    /* the longest v1 line, CRLF included (spec 2.1) */
#define PROXY_HDR_V2_FIXED 16   /* signature, ver/cmd, family, length */
/* The longest v2 header accepted: the spec allows 16 + 65535 bytes, but
 * addresses and every TLV HAProxy or a cloud balancer sends fit in far less,
 * and the header waits in memory per connection until it is complete. */
#define PROXY_HDR_V2_MAX 4096

/* Versions a listener takes (bit mask). */
enum { PROXY_HDR_ACCEPT_V1 = 1, PROXY_HDR_ACCEPT_V2 = 2, PROXY_HDR_ACCEPT_ANY = 3 };

/* v2 TLV types (spec 2.2.x). */
enum {
    PP2_TYPE_ALPN = 0x01,
    PP2_TYPE_AUTHORITY = 0x02,
    PP2_TYPE_CRC32C = 0x03,
    PP2_TYPE_NOOP = 0x04,
    PP2_TYPE_UNIQUE_ID = 0x05,
    PP2_TYPE_SSL = 0x20,
    PP2_SUBTYPE_SSL_VERSION = 0x21,
    PP2_SUBTYPE_SSL_CN = 0x22,
    PP2_SUBTYPE_SSL_CIPHER = 0x23,
    PP2_SUBTYPE_SSL_SIG_ALG = 0x24,
    PP2_SUBTYPE_SSL_KEY_ALG = 0x25,
    PP2_TYPE_NETNS = 0x30,
};
enum { PP2_CLIENT_SSL = 0x01, PP2_CLIENT_CERT_CONN = 0x02, PP2_CLIENT_CERT_SESS = 0x04 };

#define PROXY_HDR_UNIQUE_ID_MAX 128 /* spec 2.2.5 */

/* A value inside the parsed bytes (not a copy): valid while they are. */
struct proxy_hdr_slice {
    const uint8_t *p;
    size_t len;
};

/* What a header said. */
struct proxy_hdr {
    int version;                  /* 1 or 2 */
    /* No address to use: v2 LOCAL (a health check from the proxy itself),
     * v1 "UNKNOWN", v2 family UNSPEC or UNIX. The connection's own peer
     * stays the client. */
    bool local;
    struct sockaddr_storage src;  /* the client, when !local */
    struct sockaddr_storage dst;  /* the address it connected to, when !local */
    /* v2 TLVs seen (len 0 = absent). */
    struct proxy_hdr_slice alpn, authority, unique_id, ssl_version, ssl_cipher;
    bool ssl;                     /* PP2_TYPE_SSL with PP2_CLIENT_SSL: the client spoke TLS */
    bool crc_checked;             /* a PP2_TYPE_CRC32C was present and matched */
};

/* Parse the header at the start of p[0..len). Returns its length (> 0)
 * when complete, with *out filled; 0 when the bytes so far are a valid
 * beginning and more must come; -1 when they cannot be a header of the
 * versions in accept (PROXY_HDR_ACCEPT_*), with *why a reason. Every
 * byte before a complete header belongs to it, so a caller may consume
 * all of an incomplete one. */
int proxy_hdr_parse(const uint8_t *p, size_t len, unsigned accept, struct proxy_hdr *out, const char **why);

/* Version 1 line for src -> dst (families AF_INET or AF_INET6, IPv4-mapped
 * IPv6 addresses written as IPv4; anything else: "PROXY UNKNOWN\r\n").
 * Returns its length, or 0 if cap is too small (PROXY_HDR_V1_MAX is enough). */
size_t proxy_hdr_write_v1(char *out, size_t cap, const struct sockaddr *src, const struct sockaddr *dst);

/* What to put in a version 2 header (NULL / 0 = leave it out). */
struct proxy_hdr_v2_out {
    const struct sockaddr *src, *dst; /* NULL src: command LOCAL, no addresses */
    const char *alpn;
    const char *authority;            /* the TLS SNI */
    const char *unique_id;            /* at most PROXY_HDR_UNIQUE_ID_MAX bytes are sent */
    bool ssl;                         /* add PP2_TYPE_SSL (the client spoke TLS) */
    bool cert_in_session;             /* ... and presented a verified certificate in its TLS session */
    bool cert_on_connection;          /* ... on this connection (not a resumed session) */
    const char *ssl_version, *ssl_cipher;
    bool crc32c;                      /* add a PP2_TYPE_CRC32C of the whole header */
};

/* Returns the header's length, or 0 if cap is too small. */
size_t proxy_hdr_write_v2(uint8_t *out, size_t cap, const struct proxy_hdr_v2_out *h);

/* CRC32c (Castagnoli), as PP2_TYPE_CRC32C uses it. */
uint32_t proxy_hdr_crc32c(uint32_t crc, const uint8_t *p, size_t len);

#endif
