/* An HTTP/2 request head, field by field, rendered as HTTP/1.1 text for
 * the transaction (http_txn.h), which then parses it with the same strict
 * parser as an HTTP/1 request (lib/http1.h): one set of rules for every
 * request that reaches a backend.
 *
 * nghttp2 has already checked what RFC 9113 8.2 and 8.3 ask of the
 * fields it hands over (names lowercase and valid, values without CR,
 * LF or NUL nor surrounding white space, no connection-specific fields,
 * te only "trailers", pseudo-header fields known, first, once, and
 * complete, content-length a number that the DATA will match). What is
 * left for us: the size of the field list (max_header_list_size, counted
 * as HPACK counts it: name + value + 32 per field), :authority against
 * host, the cookie crumbs joined again (RFC 9113 8.2.3), and the framing
 * of a body without content-length for an HTTP/1.1 backend (chunked).
 */
#ifndef SLUICE_PROXY_H2_REQUEST_H
#define SLUICE_PROXY_H2_REQUEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/buffer.h"

struct h2_slot {
    size_t off, len;   /* in h2_req.text */
    bool set;
};

struct h2_req {
    struct buf text;            /* pseudo-header values, then "name: value\r\n" lines */
    struct buf cookie;          /* cookie crumbs joined by "; " */
    struct h2_slot method, path, authority, scheme, host;
    size_t fields_off;          /* where the regular field lines start in text */
    bool regular_seen;
    bool has_content_length;
    size_t list_size;           /* as SETTINGS_MAX_HEADER_LIST_SIZE counts */
    size_t max_list;
    bool too_large;             /* past max_list: the rest is counted, not kept */
    bool failed;                /* out of memory */
};

void h2_req_init(struct h2_req *r, size_t max_header_list_size);
void h2_req_free(struct h2_req *r);

/* One field as nghttp2 delivered it. Returns 0, or -1 when out of memory. */
int h2_req_add(struct h2_req *r, const uint8_t *name, size_t nlen, const uint8_t *value, size_t vlen);

/* The bytes h2_req_render() writes at most. */
size_t h2_req_rendered_size(const struct h2_req *r);

/* Render the request as an HTTP/1.1 head into dst (with at least
 * h2_req_rendered_size() bytes of room). chunked: a body follows and has
 * no content-length, so it goes as Transfer-Encoding: chunked. Returns 0,
 * or an HTTP status (400, 431) with *reason. */
int h2_req_render(const struct h2_req *r, bool chunked, struct buf *dst, const char **reason);

#endif
