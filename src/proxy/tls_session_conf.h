/* The `sessions:` block of a listener's `tls:` (session reuse): what the
 * TLS termination code parses with tls_sessions_parse() and hands to
 * tls_session_store_create() (proxy/tls_session.h).
 *
 *     sessions:
 *       tickets: true                 # session tickets (TLS 1.2 and 1.3)
 *       ticket_key_file: /etc/sluice/tickets.key   # optional, shared by nodes
 *       ticket_rotate: 1h             # generated keys only
 *       cache_size: 20000             # TLS 1.2 session-ID cache, 0 = off
 *       timeout: 5m                   # session lifetime, ticket lifetime hint
 *
 * The key file is read while the configuration is checked, so `sluice
 * check`, a start and a reload refuse a missing, unreadable or malformed
 * one with "FILE:LINE: key.path: reason".
 */
#ifndef SLUICE_PROXY_TLS_SESSION_CONF_H
#define SLUICE_PROXY_TLS_SESSION_CONF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/config_walk.h"

/* One ticket key as nginx's 80-byte ssl_session_ticket_key files hold it:
 * the name a ticket carries in the clear, the HMAC-SHA256 secret, the
 * AES-256-CBC key. A key file is one or more of these, concatenated. */
#define TLS_TICKET_NAME_LEN 16
#define TLS_TICKET_SECRET_LEN 32
#define TLS_TICKET_AES_LEN 32
#define TLS_TICKET_KEY_LEN (TLS_TICKET_NAME_LEN + TLS_TICKET_SECRET_LEN + TLS_TICKET_AES_LEN) /* 80 */
#define TLS_TICKET_MAX_KEYS 16   /* in a file, and generated keys kept at once */

struct tls_ticket_key {
    unsigned char name[TLS_TICKET_NAME_LEN];
    unsigned char hmac[TLS_TICKET_SECRET_LEN];
    unsigned char aes[TLS_TICKET_AES_LEN];
};

#define TLS_SESSIONS_CACHE_MAX 10000000u

struct cfg_tls_sessions {
    bool tickets;              /* default true */
    char *ticket_key_file;     /* NULL: the master generates and rotates keys */
    uint32_t ticket_rotate_ms; /* default 1h; generated keys only */
    uint32_t cache_size;       /* entries, default 20000; 0 = no session-ID cache */
    uint32_t timeout_ms;       /* default 5m: session lifetime and ticket lifetime hint */
    int line;                  /* of the sessions: key (0 when absent) */
    int key_file_line;
};

void tls_sessions_defaults(struct cfg_tls_sessions *s);
/* Parse the `sessions:` mapping v (the path already ends in ".sessions");
 * reports every problem through c and leaves defaults for bad values. The
 * key file is read and checked here. */
void tls_sessions_parse(struct config_ctx *c, const struct ynode *v, struct cfg_tls_sessions *out);
void tls_sessions_free(struct cfg_tls_sessions *s);
/* A deep copy (the store keeps one). Aborts when out of memory, as the
 * config code does. */
void tls_sessions_copy(struct cfg_tls_sessions *dst, const struct cfg_tls_sessions *src);

/* Read a key file: 0 and *n keys into keys[0..max), or -1 with the reason
 * in err ("cannot open: No such file or directory", "is 79 bytes, not a
 * multiple of 80", ...). Used by the parser and by the store's reloads. */
int tls_ticket_keys_read(const char *path, struct tls_ticket_key *keys, size_t max, size_t *n, char *err,
                         size_t errlen);

#endif
