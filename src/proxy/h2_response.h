/* The transaction's HTTP/1-shaped response, made HTTP/2: its heads (in
 * the carrier's `out`, as http_txn.c wrote them) become header lists for
 * HEADERS frames, and a chunked body loses its framing on the way into
 * DATA frames (HTTP/2 frames bodies itself).
 */
#ifndef SLUICE_PROXY_H2_RESPONSE_H
#define SLUICE_PROXY_H2_RESPONSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <nghttp2/nghttp2.h>

#include "lib/http1.h"

/* One response head as a header list: ":status" first, then the fields
 * with lowercase names, minus the connection-specific ones (RFC 9113
 * 8.2.2: connection, keep-alive, proxy-connection, transfer-encoding,
 * upgrade, te). Names and values live in `text`. */
struct h2_head {
    nghttp2_nv nv[HTTP1_MAX_HEADERS_CAP + 1];
    size_t n;
    int status;
    char status_text[4];
    char *text;                 /* lowercased names, owned */
};

/* Convert the head at the start of p[0..len) (an HTTP/1.1 status line and
 * fields ending with an empty line). Returns the bytes it took, 0 when no
 * complete head is there, -1 when it is not a valid head or out of memory.
 * Free with h2_head_free(). */
ssize_t h2_head_from_http1(const char *p, size_t len, struct h2_head *h);
void h2_head_free(struct h2_head *h);

/* Strip the chunked framing of a body that was already validated
 * (http1_chunked_feed) but may arrive in any pieces. */
struct h2_dechunk {
    int state;
    uint64_t left;             /* payload bytes left in the current chunk */
    bool done;                 /* the last chunk and its trailer section are through */
};

void h2_dechunk_init(struct h2_dechunk *d);
/* Take framed bytes from in[0..inlen), write payload bytes to out (at most
 * outcap). Returns the framed bytes taken; *outn is the payload written.
 * Stops at the end of the message (d->done). Returns -1 on bytes that are
 * not chunked framing. */
ssize_t h2_dechunk_feed(struct h2_dechunk *d, const char *in, size_t inlen, char *out, size_t outcap, size_t *outn);

#endif
