#include "proxy/tls_session_conf.h"

#include "core/secret_file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define SESSIONS_DAY (24u * CONFIG_HOUR)
/* RFC 8446 4.6.1: a ticket lifetime is at most seven days. */
#define SESSIONS_MAX_TIMEOUT (7u * SESSIONS_DAY)

void tls_sessions_defaults(struct cfg_tls_sessions *s)
{
    *s = (struct cfg_tls_sessions){
        .tickets = true,
        .ticket_rotate_ms = CONFIG_HOUR,
        .cache_size = 20000,
        .timeout_ms = 5 * CONFIG_MINUTE,
    };
}

void tls_sessions_free(struct cfg_tls_sessions *s)
{
    free(s->ticket_key_file);
    s->ticket_key_file = NULL;
}

void tls_sessions_copy(struct cfg_tls_sessions *dst, const struct cfg_tls_sessions *src)
{
    *dst = *src;
    dst->ticket_key_file = src->ticket_key_file ? config_xstrdup(src->ticket_key_file) : NULL;
}

/* ------------------------------------------------------------------------
 * the key file
 */

int tls_ticket_keys_read(const char *path, struct tls_ticket_key *keys, size_t max, size_t *n, char *err,
                         size_t errlen)
{
    size_t cap = max * TLS_TICKET_KEY_LEN;
    unsigned char buf[TLS_TICKET_MAX_KEYS * TLS_TICKET_KEY_LEN];
    if (cap > sizeof buf)
        cap = sizeof buf;
    long r = secret_file_read(path, buf, cap, 0, err, errlen);
    size_t got = r < 0 ? 0 : (size_t)r;
    int rc = -1;
    if (r == SECRET_FILE_TOO_BIG)
        snprintf(err, errlen, "%s holds more than %zu keys (%zu bytes)", path, cap / TLS_TICKET_KEY_LEN, cap);
    else if (r < 0)
        ; /* err says why */
    else if (got == 0)
        snprintf(err, errlen, "%s is empty: it must hold one or more 80-byte keys (openssl rand 80)", path);
    else if (got % TLS_TICKET_KEY_LEN)
        snprintf(err, errlen, "%s is %zu bytes, not a multiple of %d (one or more 80-byte keys)", path, got,
                 TLS_TICKET_KEY_LEN);
    else {
        *n = got / TLS_TICKET_KEY_LEN;
        for (size_t i = 0; i < *n; i++) {
            const unsigned char *k = buf + i * TLS_TICKET_KEY_LEN;
            memcpy(keys[i].name, k, TLS_TICKET_NAME_LEN);
            memcpy(keys[i].hmac, k + TLS_TICKET_NAME_LEN, TLS_TICKET_SECRET_LEN);
            memcpy(keys[i].aes, k + TLS_TICKET_NAME_LEN + TLS_TICKET_SECRET_LEN, TLS_TICKET_AES_LEN);
        }
        rc = 0;
    }
    /* Secrets do not linger on the stack. */
    explicit_bzero(buf, sizeof buf);
    return rc;
}

/* ------------------------------------------------------------------------
 * the mapping
 */

struct sessions_state {
    struct cfg_tls_sessions *s;
    int rotate_line, timeout_line;
};

enum { SK_TICKETS, SK_KEY_FILE, SK_ROTATE, SK_CACHE_SIZE, SK_TIMEOUT };
static const char *const sessions_keys[] = {
    "tickets", "ticket_key_file", "ticket_rotate", "cache_size", "timeout", NULL,
};

static void parse_key_file(struct config_ctx *c, const struct ynode *v, struct cfg_tls_sessions *s)
{
    char *path = NULL;
    if (!config_get_text(c, v, "a file path", &path))
        return;
    struct tls_ticket_key keys[TLS_TICKET_MAX_KEYS];
    size_t n = 0;
    char why[512];
    if (tls_ticket_keys_read(path, keys, TLS_TICKET_MAX_KEYS, &n, why, sizeof why) < 0)
        config_err_at(c, v->line, "%s", why);
    explicit_bzero(keys, sizeof keys);
    free(s->ticket_key_file);
    s->ticket_key_file = path;
    s->key_file_line = v->line;
}

static void sessions_field(struct config_ctx *c, int key, const struct ynode *v, void *obj)
{
    struct sessions_state *st = obj;
    struct cfg_tls_sessions *s = st->s;
    switch (key) {
    case SK_TICKETS:
        config_get_bool(c, v, &s->tickets);
        break;
    case SK_KEY_FILE:
        parse_key_file(c, v, s);
        break;
    case SK_ROTATE:
        if (config_get_duration(c, v, CONFIG_SECOND, SESSIONS_MAX_TIMEOUT, &s->ticket_rotate_ms))
            st->rotate_line = v->line;
        break;
    case SK_CACHE_SIZE:
        config_get_uint(c, v, 0, TLS_SESSIONS_CACHE_MAX, &s->cache_size);
        break;
    case SK_TIMEOUT:
        if (config_get_duration(c, v, CONFIG_SECOND, SESSIONS_MAX_TIMEOUT, &s->timeout_ms))
            st->timeout_line = v->line;
        break;
    }
}

/* Generated keys: one encrypts, and each older one is kept until the last
 * ticket it made has expired (timeout after it was replaced), at least the
 * previous one. Right after a rotation that is the new key, the one it
 * replaced and ceil(timeout / ticket_rotate) older ones at most, and
 * TLS_TICKET_MAX_KEYS bounds them all. */
#define MAX_ROTATIONS_PER_TIMEOUT (TLS_TICKET_MAX_KEYS - 2)

static void check_rotation(struct config_ctx *c, const struct sessions_state *st)
{
    const struct cfg_tls_sessions *s = st->s;
    if (!s->tickets || s->ticket_key_file)
        return;
    uint64_t older = ((uint64_t)s->timeout_ms + s->ticket_rotate_ms - 1) / s->ticket_rotate_ms;
    if (older <= MAX_ROTATIONS_PER_TIMEOUT)
        return;
    char rot[16], tmo[16];
    config_fmt_ms(rot, sizeof rot, s->ticket_rotate_ms);
    config_fmt_ms(tmo, sizeof tmo, s->timeout_ms);
    if (st->rotate_line)
        config_err_in(c, st->rotate_line, "ticket_rotate",
                      "%s is too short for timeout %s: at most %d keys are kept, so it must be at least timeout/%d",
                      rot, tmo, TLS_TICKET_MAX_KEYS, MAX_ROTATIONS_PER_TIMEOUT);
    else
        config_err_in(c, st->timeout_line, "timeout",
                      "%s is too long for ticket_rotate %s: at most %d keys are kept, so it must be at most "
                      "%d times ticket_rotate",
                      tmo, rot, TLS_TICKET_MAX_KEYS, MAX_ROTATIONS_PER_TIMEOUT);
}

void tls_sessions_parse(struct config_ctx *c, const struct ynode *v, struct cfg_tls_sessions *out)
{
    struct sessions_state st = { .s = out };
    out->line = v->line;
    if (!config_walk_map(c, v, sessions_keys, sessions_field, &st))
        return;
    check_rotation(c, &st);
}
