/* Access logs: one line per request in the combined format (the default,
 * what nginx and Apache write) or as one JSON object per line. On a TLS
 * listener both say the version, cipher, SNI and whether the session was
 * resumed and how (combined: ` tls=V cipher=C sni="S" resumed=no|ticket|cache`
 * after the user agent; JSON: tls_version, tls_cipher, sni, tls_resumed
 * (a boolean) and tls_resumption ("no", "ticket", "cache")). Lines are
 * gathered in a buffer and written when it fills or on the worker's tick,
 * so logging costs a memcpy per request, not a syscall.
 *
 * JSON lines are written by jansson, ASCII only (JSON_ENSURE_ASCII), and
 * always parse. Text from the wire is read as UTF-8: valid characters
 * round-trip ("é" is written \u00e9 and reads back as é), and each
 * maximal ill-formed subsequence (Unicode's "substitution of maximal
 * subparts") becomes U+FFFD. */
#ifndef SLUICE_PROXY_ACCESS_LOG_H
#define SLUICE_PROXY_ACCESS_LOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proxy/http_vars.h"
#include "proxy/proxy_conf.h"

struct access_log;

#define ACCESS_LOG_LINE 20480   /* room for one line, whatever its fields hold */

struct access_entry {
    const char *client_ip;
    const char *request_line;   /* "GET /x HTTP/1.1"; may be NULL */
    const char *referer;        /* may be NULL */
    const char *user_agent;     /* may be NULL */
    const char *host;           /* may be NULL */
    const char *upstream;       /* backend "ip:port" or NULL */
    const char *listener;
    const char *reason;         /* why Sluice answered itself (an error it produced), or NULL */
    int status;
    uint64_t bytes_sent;        /* response body bytes sent to the client */
    uint64_t duration_us;       /* from the first byte of the request to the end of the response */
    /* TLS listeners: what the handshake agreed; tls_version NULL on a
     * plain listener (the fields are then left out of the line). */
    const char *tls_version;    /* "TLSv1.3" */
    const char *tls_cipher;     /* "TLS_AES_128_GCM_SHA256" */
    const char *sni;            /* the name the client asked for; may be NULL */
    int tls_resumed;            /* TLS_RESUMED_NO, _TICKET or _CACHE (tls_session.h): the
                                 * abbreviated handshake's ticket or session-ID cache */
    const char *client_subject; /* verified client certificate's subject (RFC 2253), or NULL */
    /* JSON only (the combined line keeps its classic shape): */
    uint64_t bytes_received;    /* the request head and body as received */
    int64_t upstream_connect_us, upstream_header_us, upstream_response_us; /* -1: not reached (null) */
    uint32_t upstream_tries;    /* backends tried */
    const char *route, *pool;   /* NULL: none (null) */
};

struct access_log *access_log_open(const char *path, enum log_format format);
void access_log_close(struct access_log *al);
void access_log_write(struct access_log *al, const struct access_entry *e);
void access_log_flush(struct access_log *al);
/* SIGUSR1: flush to the old file, then open path again (logrotate moved
 * the old one away). Returns 0, or -1 (logged; the old file is kept).
 * Nothing for stdout. */
int access_log_reopen(struct access_log *al, const char *path);

/* A line of a log_formats: entry, rendered straight into the buffer. */
void access_log_write_fmt(struct access_log *al, const struct http_fmt *f, enum http_escape esc,
                          const struct http_vars *v);

/* Render one entry into out (always NUL-terminated, ends with '\n');
 * returns its length. cap must be at least ACCESS_LOG_LINE. Exposed for
 * tests. */
size_t access_log_format(enum log_format format, const struct access_entry *e, time_t now,
                         char *out, size_t cap);

#endif
