/* A strict, zero-copy HTTP/1.x message-head parser and a chunked-body
 * framing validator.
 *
 * Strict on purpose: a proxy that accepts framing its upstream reads
 * differently is a request-smuggling proxy. Anything ambiguous (bare LF,
 * obs-fold, Transfer-Encoding with Content-Length, duplicate lengths...) is
 * an error rather than a guess.
 *
 * Zero-copy: every slice in struct http1_message points into the caller's
 * buffer, so the buffer must stay in place while the message is used.
 *
 * Stateless: the head parsers re-read the buffer from the start on every
 * call. The result for a prefix of the input is either HTTP1_INCOMPLETE or
 * the same as the result for the whole input, so a caller may simply call
 * again whenever more bytes arrive; http1_head_ready() tells when that is
 * worth doing so slow senders do not cost quadratic time. */
#ifndef SLUICE_LIB_HTTP1_H
#define SLUICE_LIB_HTTP1_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define HTTP1_MAX_HEADERS_CAP 128   /* array capacity; the configured limit may be lower */
#define HTTP1_CHUNK_LINE_MAX 4096   /* longest chunk-size/extension or trailer line, CRLF excluded */
#define HTTP1_TRAILERS_MAX 16384    /* whole trailer section, CRLFs excluded */

enum http1_result { HTTP1_DONE = 0, HTTP1_INCOMPLETE = 1, HTTP1_ERROR = 2 };

enum http1_body { HTTP1_BODY_NONE, HTTP1_BODY_LENGTH, HTTP1_BODY_CHUNKED, HTTP1_BODY_UNTIL_CLOSE };

enum http1_method { HTTP1_M_OTHER, HTTP1_M_GET, HTTP1_M_HEAD, HTTP1_M_POST, HTTP1_M_PUT, HTTP1_M_DELETE,
                    HTTP1_M_OPTIONS, HTTP1_M_TRACE, HTTP1_M_CONNECT, HTTP1_M_PATCH };

struct http1_slice { const char *p; size_t len; };
struct http1_header { struct http1_slice name, value; };   /* value has leading/trailing OWS trimmed */

struct http1_limits {
    size_t max_request_line;   /* request line (or status line) without CRLF; over it: 414 (requests) */
    size_t max_head;           /* whole head incl. request line and final CRLFCRLF; over it: 431 */
    size_t max_headers;        /* number of header fields, <= HTTP1_MAX_HEADERS_CAP; over it: 431 */
};

/* Used when a parser is given lim == NULL: 8 KiB line, 64 KiB head, 100 fields. */
extern const struct http1_limits http1_default_limits;

struct http1_message {
    /* request fields */
    enum http1_method method;
    struct http1_slice method_str, target;
    struct http1_slice authority;   /* host[:port] of an absolute-form or CONNECT target, else empty */
    /* response fields */
    int status;                 /* 100..599 */
    struct http1_slice reason;
    /* both */
    int version_minor;          /* 0 or 1 (HTTP/1.0, HTTP/1.1); anything else is an error */
    struct http1_header headers[HTTP1_MAX_HEADERS_CAP];
    size_t n_headers;
    size_t head_len;            /* bytes of the head including the blank line */
    enum http1_body body;
    uint64_t content_length;    /* when body == HTTP1_BODY_LENGTH (may be 0) */
    bool keep_alive;            /* per version default and Connection: close / keep-alive tokens */
    bool upgrade;               /* Connection contains the "upgrade" token AND an Upgrade header exists */
    bool expect_continue;       /* request: Expect: 100-continue (HTTP/1.1 only, RFC 9110 §10.1.1) */
    struct http1_slice host;    /* request: Host header value (empty if absent) */
    /* on HTTP1_ERROR */
    int error_status;           /* requests: 400, 414, 431, 501 or 505; responses: 502 */
    const char *error_reason;   /* short static English text, e.g. "Transfer-Encoding with Content-Length" */
};

/* Parse a request head at the start of buf[0..len). Returns HTTP1_DONE with msg filled when the whole
 * head (through the empty line) is present, HTTP1_INCOMPLETE when more bytes are needed (but it
 * already returns HTTP1_ERROR with 414/431 as soon as the bytes seen prove a limit is exceeded, even if
 * incomplete, so the caller never buffers without bound), HTTP1_ERROR otherwise. Never reads past len.
 * lim may be NULL for http1_default_limits. Requests have body NONE, LENGTH or CHUNKED. */
enum http1_result http1_parse_request(const char *buf, size_t len, const struct http1_limits *lim,
                                      struct http1_message *msg);

/* Parse a response head. `request_method` decides the body: HEAD and 2xx-to-CONNECT responses, 1xx,
 * 204 and 304 have no body; otherwise chunked / Content-Length / until-close (HTTP/1.0-style) as
 * RFC 9112 §6.3 (until-close also clears keep_alive). Errors use error_status 502. */
enum http1_result http1_parse_response(const char *buf, size_t len, const struct http1_limits *lim,
                                       enum http1_method request_method, struct http1_message *msg);

/* Cheap check for callers that read a head in many small pieces: given that the buffer held prev_len
 * bytes at the previous (unfinished) parse and now holds len, is re-parsing worthwhile? True when the
 * new bytes end a head (CRLFCRLF), contain a bare LF (an error), or cross a limit. Looks only at the
 * new bytes (and the 3 before them). Calling the parser anyway is always correct, just slower. */
bool http1_head_ready(const char *buf, size_t len, size_t prev_len, const struct http1_limits *lim);

/* Find a header by case-insensitive name; returns NULL if absent. First match wins. */
const struct http1_header *http1_find_header(const struct http1_message *msg, const char *name);

/* Is s (NUL-terminated) an RFC 9110 token of 1..max characters: a field
 * or cookie name, as the parser accepts one? */
bool http1_is_token(const char *s, size_t max);

/* Does a comma-separated header value list contain token (case-insensitive)? */
bool http1_has_token(struct http1_slice value, const char *token);

/* Is this a hop-by-hop header a proxy must not forward (Connection, Keep-Alive, Proxy-Connection,
 * TE, Trailer, Transfer-Encoding, Upgrade) or named in the message's Connection header? */
bool http1_is_hop_by_hop(const struct http1_message *msg, struct http1_slice name);

/* The same for every header of msg at once, in one pass for the common
 * message: skip[i] (msg->n_headers entries) is set to 1 for each header a
 * proxy must not forward, 0 otherwise. */
void http1_mark_hop_by_hop(const struct http1_message *msg, uint8_t *skip);

/* Does a field name contain '_'? '_' is a valid name character, but gateways that turn header
 * names into variables (CGI, WSGI, PHP, Rack: "HTTP_" + upper case, '-' -> '_') make
 * "Transfer_Encoding" and "Transfer-Encoding" the same variable, so a field the proxy passes as
 * opaque can reach the application as one the proxy never saw, e.g. a framing header. */
bool http1_name_has_underscore(struct http1_slice name);

/* Is name, read with '_' as '-', one of the framing and connection fields a proxy rewrites
 * (Content-Length, Transfer-Encoding, Keep-Alive, Proxy-Connection), while not being it? Such a
 * field has no legitimate use; a peer that folds '_' into '-' would frame the message by it. */
bool http1_is_framing_lookalike(struct http1_slice name);

bool http1_method_idempotent(enum http1_method m);   /* GET HEAD PUT DELETE OPTIONS TRACE */

/* Chunked transfer-coding framing validator. The proxy forwards chunked bodies byte-for-byte; this
 * only tells how many of the bytes offered belong to the body and whether they are valid. */
struct http1_chunked {
    int state;             /* private */
    uint64_t remaining;    /* private: bytes left in the current chunk's data */
    size_t line_len;       /* private: guards chunk-size/extension/trailer line length */
    size_t trailer_len;    /* private: guards the trailer section's total length */
    bool done;             /* set once the last-chunk, trailers and final CRLF are consumed */
    const char *error_reason;
};
void http1_chunked_init(struct http1_chunked *c);
/* Consume up to len bytes. Returns the number of bytes consumed (stops right after the final CRLF
 * of the message, leaving anything after it unconsumed, e.g. a pipelined request), or -1 on invalid
 * framing with error_reason set. Can be fed in pieces of any size, including 1 byte at a time.
 * After done it consumes nothing (returns 0); after an error it keeps returning -1. */
ssize_t http1_chunked_feed(struct http1_chunked *c, const char *buf, size_t len);

#endif
