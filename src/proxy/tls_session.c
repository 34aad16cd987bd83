#include "proxy/tls_session.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "core/log.h"
#include "core/metrics.h"
#include "proxy/tls_session_cache.h"

/* How often tick() looks at the key file's identity. */
#define KEY_FILE_CHECK_MS 1000u

struct store_counters {
    _Atomic uint64_t full, resumed_ticket, resumed_cache;
    _Atomic uint64_t tickets_issued, tickets_renewed, tickets_unknown;
    _Atomic uint64_t cache_stored, cache_hits, cache_misses, cache_evictions, cache_too_big;
    _Atomic uint64_t key_rotations, key_file_reloads, key_file_failures;
};

/* The part every process sees: one mapping per store, made once. */
struct store_shared {
    /* Sequence lock over n_keys and keys: odd while the master writes. */
    _Atomic uint32_t key_seq;
    uint32_t n_keys;
    struct tls_ticket_key keys[TLS_TICKET_MAX_KEYS];
    struct store_counters ctr;
};

/* Which version of the key file the keys came from: any change of these
 * means the file was replaced or rewritten. */
struct file_id {
    dev_t dev;
    ino_t ino;
    off_t size;
    struct timespec mtime, ctime;
};

struct tls_session_store {
    struct store_shared *sh;            /* MAP_SHARED */
    struct tls_session_cache *cache;    /* MAP_SHARED; NULL when cache_size is 0 */
    struct cfg_tls_sessions cfg;        /* the master's copy; workers' copies are as of their fork */
    /* Master only, for generated keys: when keys[0] became current, and
     * when each older key keys[i] stopped being (retired_ms[i]). */
    bool keys_from_file;
    uint64_t current_since_ms;
    uint64_t retired_ms[TLS_TICKET_MAX_KEYS];
    struct file_id file;                /* of the last key file read or refused */
    bool file_known;
    uint64_t next_file_check_ms;
};

/* ------------------------------------------------------------------------
 * keys in shared memory
 */

/* Master: replace the keys. A reader that overlaps sees the sequence move
 * and reads again. */
static void publish_keys(struct store_shared *sh, const struct tls_ticket_key *keys, size_t n)
{
    uint32_t seq = atomic_load_explicit(&sh->key_seq, memory_order_relaxed);
    atomic_store_explicit(&sh->key_seq, seq + 1, memory_order_relaxed);
    atomic_thread_fence(memory_order_release);
    memmove(sh->keys, keys, n * sizeof *keys);
    explicit_bzero(sh->keys + n, (TLS_TICKET_MAX_KEYS - n) * sizeof *keys);
    sh->n_keys = (uint32_t)n;
    atomic_store_explicit(&sh->key_seq, seq + 2, memory_order_release);
}

/* Tries before a reader gives up on a sequence that stays odd: only a
 * master that died in the middle of a write (a few hundred nanoseconds)
 * leaves it so, and a handshake without a ticket beats a worker spinning
 * for ever. */
#define KEY_READ_TRIES 1000000

/* Worker: a consistent copy of key `index`, or of the key called `name`
 * when name is not NULL (*index says which it was). False when there is
 * no such key. */
static bool read_key(const struct store_shared *sh, const unsigned char *name, struct tls_ticket_key *out,
                     size_t *index)
{
    for (int tries = 0; tries < KEY_READ_TRIES; tries++) {
        uint32_t before = atomic_load_explicit(&sh->key_seq, memory_order_acquire);
        if (before & 1)
            continue; /* the master is replacing the keys: a memcpy of 1.3 KB at most */
        bool found = false;
        uint32_t n = ((const volatile struct store_shared *)sh)->n_keys;
        for (size_t i = 0; i < n && i < TLS_TICKET_MAX_KEYS; i++) {
            if (name && memcmp((const void *)sh->keys[i].name, name, TLS_TICKET_NAME_LEN) != 0)
                continue;
            if (!name && i != *index)
                continue;
            memcpy(out, (const void *)&sh->keys[i], sizeof *out);
            *index = i;
            found = true;
            break;
        }
        atomic_thread_fence(memory_order_acquire);
        if (atomic_load_explicit(&sh->key_seq, memory_order_relaxed) == before)
            return found;
    }
    return false;
}

/* A copy of the keys for the master (it is the only writer: no retry). */
static size_t master_keys(const struct store_shared *sh, struct tls_ticket_key *out)
{
    memcpy(out, sh->keys, sh->n_keys * sizeof *out);
    return sh->n_keys;
}

static int random_key(struct tls_ticket_key *k)
{
    return RAND_bytes((unsigned char *)k, sizeof *k) == 1 ? 0 : -1;
}

/* ------------------------------------------------------------------------
 * the key file
 */

static bool stat_file(const char *path, struct file_id *id)
{
    struct stat st;
    if (stat(path, &st) < 0)
        return false;
    *id = (struct file_id){ .dev = st.st_dev, .ino = st.st_ino, .size = st.st_size, .mtime = st.st_mtim,
                            .ctime = st.st_ctim };
    return true;
}

static bool same_file(const struct file_id *a, const struct file_id *b)
{
    return a->dev == b->dev && a->ino == b->ino && a->size == b->size && a->mtime.tv_sec == b->mtime.tv_sec &&
           a->mtime.tv_nsec == b->mtime.tv_nsec && a->ctime.tv_sec == b->ctime.tv_sec &&
           a->ctime.tv_nsec == b->ctime.tv_nsec;
}

/* Read path and, when it is good, make its keys the store's. The identity
 * is taken before the read, so a write racing with it is seen as one more
 * change at the next check. */
static int load_key_file(struct tls_session_store *st, const char *path, char *err, size_t errlen)
{
    struct file_id id = { 0 };
    bool known = stat_file(path, &id);
    struct tls_ticket_key keys[TLS_TICKET_MAX_KEYS];
    size_t n = 0;
    int rc = tls_ticket_keys_read(path, keys, TLS_TICKET_MAX_KEYS, &n, err, errlen);
    st->file = id;
    st->file_known = known;
    if (rc == 0) {
        publish_keys(st->sh, keys, n);
        st->keys_from_file = true;
    }
    explicit_bzero(keys, sizeof keys);
    return rc;
}

static void watch_key_file(struct tls_session_store *st, uint64_t now_ms)
{
    if (now_ms < st->next_file_check_ms)
        return;
    st->next_file_check_ms = now_ms + KEY_FILE_CHECK_MS;
    struct file_id id;
    bool known = stat_file(st->cfg.ticket_key_file, &id);
    if (known == st->file_known && (!known || same_file(&id, &st->file)))
        return;
    char err[512];
    if (load_key_file(st, st->cfg.ticket_key_file, err, sizeof err) == 0) {
        atomic_fetch_add(&st->sh->ctr.key_file_reloads, 1);
        log_info("tls: ticket keys read again from %s: %u key(s)", st->cfg.ticket_key_file, st->sh->n_keys);
    } else {
        atomic_fetch_add(&st->sh->ctr.key_file_failures, 1);
        log_error("tls: ticket key file refused, keeping the %u key(s) in use: %s", st->sh->n_keys, err);
    }
}

/* ------------------------------------------------------------------------
 * generated keys
 */

/* Start over with one fresh key (creation, or leaving a key file). */
static int fresh_keys(struct tls_session_store *st, uint64_t now_ms, char *err, size_t errlen)
{
    struct tls_ticket_key k;
    if (random_key(&k) < 0) {
        snprintf(err, errlen, "cannot make a ticket key: the random generator failed");
        return -1;
    }
    publish_keys(st->sh, &k, 1);
    explicit_bzero(&k, sizeof k);
    st->keys_from_file = false;
    st->current_since_ms = now_ms;
    memset(st->retired_ms, 0, sizeof st->retired_ms);
    return 0;
}

/* A new key in front; the others move down, the oldest falls off if the
 * ring is full (the configuration check keeps that from mattering). */
static void rotate(struct tls_session_store *st, uint64_t now_ms)
{
    struct tls_ticket_key old[TLS_TICKET_MAX_KEYS], keys[TLS_TICKET_MAX_KEYS];
    size_t n = master_keys(st->sh, old);
    if (n > TLS_TICKET_MAX_KEYS - 1)
        n = TLS_TICKET_MAX_KEYS - 1;
    memcpy(keys + 1, old, n * sizeof *keys);
    explicit_bzero(old, sizeof old);
    if (random_key(&keys[0]) < 0) {
        log_error("tls: ticket key rotation skipped: the random generator failed");
        explicit_bzero(keys, sizeof keys);
        return;
    }
    memmove(st->retired_ms + 1, st->retired_ms, n * sizeof st->retired_ms[0]);
    st->retired_ms[1] = now_ms;
    st->retired_ms[0] = 0;
    publish_keys(st->sh, keys, n + 1);
    explicit_bzero(keys, sizeof keys);
    st->current_since_ms = now_ms;
    atomic_fetch_add(&st->sh->ctr.key_rotations, 1);
}

/* Drop keys retired longer than timeout ago: every ticket they made has
 * expired. The previous key always stays. */
static void drop_old_keys(struct tls_session_store *st, uint64_t now_ms)
{
    size_t n = st->sh->n_keys, keep = n;
    while (keep > 2 && now_ms >= st->retired_ms[keep - 1] + st->cfg.timeout_ms)
        keep--;
    if (keep == n)
        return;
    struct tls_ticket_key keys[TLS_TICKET_MAX_KEYS];
    master_keys(st->sh, keys);
    publish_keys(st->sh, keys, keep);
    explicit_bzero(keys, sizeof keys);
}

static void rotate_generated(struct tls_session_store *st, uint64_t now_ms)
{
    if (!st->cfg.tickets)
        return;
    if (now_ms >= st->current_since_ms + st->cfg.ticket_rotate_ms)
        rotate(st, now_ms);
    drop_old_keys(st, now_ms);
}

/* ------------------------------------------------------------------------
 * the store
 */

struct tls_session_store *tls_session_store_create(const struct cfg_tls_sessions *cfg, uint64_t now_ms, char *err,
                                                   size_t errlen)
{
    struct tls_session_store *st = calloc(1, sizeof *st);
    if (!st) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    st->sh = mmap(NULL, sizeof *st->sh, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (st->sh == MAP_FAILED) {
        snprintf(err, errlen, "cannot map the session store: %s", strerror(errno));
        free(st);
        return NULL;
    }
    /* The keys stay out of core dumps (best effort: not a reason to fail). */
    madvise(st->sh, sizeof *st->sh, MADV_DONTDUMP);
    tls_sessions_copy(&st->cfg, cfg);
    int rc = cfg->ticket_key_file ? load_key_file(st, cfg->ticket_key_file, err, errlen)
                                  : fresh_keys(st, now_ms, err, errlen);
    if (rc == 0 && cfg->cache_size && !(st->cache = tsc_create(cfg->cache_size))) {
        snprintf(err, errlen, "cannot map a session cache of %u entries: %s", cfg->cache_size, strerror(errno));
        rc = -1;
    }
    if (rc < 0) {
        tls_session_store_destroy(st);
        return NULL;
    }
    st->next_file_check_ms = now_ms + KEY_FILE_CHECK_MS;
    return st;
}

int tls_session_store_reconfigure(struct tls_session_store *st, const struct cfg_tls_sessions *cfg, uint64_t now_ms,
                                  char *err, size_t errlen)
{
    /* What can fail comes first, so a failure leaves the store as it was. */
    struct tls_session_cache *cache = st->cache;
    bool new_cache = cfg->cache_size != st->cfg.cache_size;
    if (new_cache && cfg->cache_size && !(cache = tsc_create(cfg->cache_size))) {
        snprintf(err, errlen, "cannot map a session cache of %u entries: %s", cfg->cache_size, strerror(errno));
        return -1;
    }
    if (new_cache && !cfg->cache_size)
        cache = NULL;
    if (cfg->ticket_key_file) {
        if (load_key_file(st, cfg->ticket_key_file, err, errlen) < 0) {
            if (new_cache)
                tsc_destroy(cache);
            return -1;
        }
        atomic_fetch_add(&st->sh->ctr.key_file_reloads, 1);
    } else if (st->keys_from_file && fresh_keys(st, now_ms, err, errlen) < 0) {
        if (new_cache)
            tsc_destroy(cache);
        return -1;
    }
    if (new_cache) {
        tsc_destroy(st->cache);
        st->cache = cache;
    }
    tls_sessions_free(&st->cfg);
    tls_sessions_copy(&st->cfg, cfg);
    st->next_file_check_ms = now_ms + KEY_FILE_CHECK_MS;
    return 0;
}

void tls_session_store_tick(struct tls_session_store *st, uint64_t now_ms)
{
    if (st->cfg.ticket_key_file)
        watch_key_file(st, now_ms);
    else
        rotate_generated(st, now_ms);
}

void tls_session_store_destroy(struct tls_session_store *st)
{
    if (!st)
        return;
    tsc_destroy(st->cache);
    if (st->sh && st->sh != MAP_FAILED) {
        explicit_bzero(st->sh->keys, sizeof st->sh->keys);
        munmap(st->sh, sizeof *st->sh);
    }
    tls_sessions_free(&st->cfg);
    free(st);
}

void tls_session_store_current_key(const struct tls_session_store *st, unsigned char name[TLS_TICKET_NAME_LEN])
{
    struct tls_ticket_key k;
    size_t index = 0;
    if (read_key(st->sh, NULL, &k, &index))
        memcpy(name, k.name, TLS_TICKET_NAME_LEN);
    else
        memset(name, 0, TLS_TICKET_NAME_LEN);
    explicit_bzero(&k, sizeof k);
}

struct tls_session_cache *tls_session_store_cache(const struct tls_session_store *st) { return st->cache; }

void tls_session_store_stats(const struct tls_session_store *st, struct tls_session_stats *out)
{
    const struct store_counters *c = &st->sh->ctr;
    *out = (struct tls_session_stats){
        .full = atomic_load(&c->full),
        .resumed_ticket = atomic_load(&c->resumed_ticket),
        .resumed_cache = atomic_load(&c->resumed_cache),
        .tickets_issued = atomic_load(&c->tickets_issued),
        .tickets_renewed = atomic_load(&c->tickets_renewed),
        .tickets_unknown = atomic_load(&c->tickets_unknown),
        .cache_stored = atomic_load(&c->cache_stored),
        .cache_hits = atomic_load(&c->cache_hits),
        .cache_misses = atomic_load(&c->cache_misses),
        .cache_evictions = atomic_load(&c->cache_evictions),
        .cache_too_big = atomic_load(&c->cache_too_big),
        .key_rotations = atomic_load(&c->key_rotations),
        .key_file_reloads = atomic_load(&c->key_file_reloads),
        .key_file_failures = atomic_load(&c->key_file_failures),
        .keys = ((const volatile struct store_shared *)st->sh)->n_keys,
        .cache_capacity = st->cache ? tsc_capacity(st->cache) : 0,
    };
}

/* ------------------------------------------------------------------------
 * OpenSSL callbacks
 */

/* Ex-data slots: the store of an SSL_CTX, and "resumed from the cache" on
 * an SSL. Taken once, in whichever process attaches first (the master,
 * normally), so forked workers inherit the same indexes. */
static int ctx_store_index = -1;
static int ssl_cache_hit_index = -1;
static char cache_hit_marker;

static bool ensure_indexes(void)
{
    if (ctx_store_index < 0)
        ctx_store_index = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, NULL);
    if (ssl_cache_hit_index < 0)
        ssl_cache_hit_index = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
    return ctx_store_index >= 0 && ssl_cache_hit_index >= 0;
}

static struct tls_session_store *store_of_ctx(const SSL_CTX *ctx)
{
    return ctx_store_index < 0 ? NULL : SSL_CTX_get_ex_data(ctx, ctx_store_index);
}

static struct tls_session_store *store_of(const SSL *ssl) { return store_of_ctx(SSL_get_SSL_CTX(ssl)); }

static bool set_ticket_key(EVP_CIPHER_CTX *cctx, EVP_MAC_CTX *hctx, struct tls_ticket_key *k,
                           const unsigned char *iv, int enc)
{
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY, k->hmac, sizeof k->hmac),
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0),
        OSSL_PARAM_construct_end(),
    };
    bool ok = EVP_MAC_CTX_set_params(hctx, params) == 1 &&
              EVP_CipherInit_ex(cctx, EVP_aes_256_cbc(), NULL, k->aes, iv, enc) == 1;
    explicit_bzero(k, sizeof *k);
    return ok;
}

/* SSL_CTX_set_tlsext_ticket_key_evp_cb: TLS 1.2 and 1.3 tickets alike.
 * Encrypting: with the first key. Decrypting: with the key the ticket
 * names; 2 (use it, and send a fresh ticket) when that is not the first
 * one or the connection is TLS 1.3, 0 (a full handshake) when the store
 * does not have it. */
static int ticket_key_cb(SSL *ssl, unsigned char key_name[TLS_TICKET_NAME_LEN], unsigned char *iv,
                         EVP_CIPHER_CTX *cctx, EVP_MAC_CTX *hctx, int enc)
{
    struct tls_session_store *st = store_of(ssl);
    if (!st)
        return 0;
    struct store_counters *ctr = &st->sh->ctr;
    struct tls_ticket_key k;
    size_t index = 0;
    if (enc) {
        if (!read_key(st->sh, NULL, &k, &index))
            return 0;
        if (RAND_bytes(iv, EVP_CIPHER_get_iv_length(EVP_aes_256_cbc())) != 1) {
            explicit_bzero(&k, sizeof k);
            return -1;
        }
        memcpy(key_name, k.name, TLS_TICKET_NAME_LEN);
        if (!set_ticket_key(cctx, hctx, &k, iv, 1))
            return -1;
        atomic_fetch_add_explicit(&ctr->tickets_issued, 1, memory_order_relaxed);
        return 1;
    }
    if (!read_key(st->sh, key_name, &k, &index)) {
        atomic_fetch_add_explicit(&ctr->tickets_unknown, 1, memory_order_relaxed);
        return 0;
    }
    if (!set_ticket_key(cctx, hctx, &k, iv, 0))
        return -1;
    if (index != 0) {
        atomic_fetch_add_explicit(&ctr->tickets_renewed, 1, memory_order_relaxed);
        return 2;
    }
    /* TLS 1.3 clients use a ticket once (RFC 8446, appendix C.4), and
     * OpenSSL sends a resumed TLS 1.3 client a new one only when asked
     * to renew: without it, the next connection would be a full
     * handshake. TLS 1.2 clients keep the ticket they have. */
    return SSL_version(ssl) == TLS1_3_VERSION ? 2 : 1;
}

/* A TLS 1.3 session with tickets on lives in its ticket; OpenSSL still
 * reports it to new_session_cb, but nobody will look it up by ID. */
static bool worth_caching(SSL *ssl)
{
    return SSL_version(ssl) != TLS1_3_VERSION || (SSL_get_options(ssl) & SSL_OP_NO_TICKET);
}

static int cache_new_cb(SSL *ssl, SSL_SESSION *sess)
{
    struct tls_session_store *st = store_of(ssl);
    if (!st || !st->cache || !worth_caching(ssl))
        return 0;
    struct store_counters *ctr = &st->sh->ctr;
    unsigned int id_len = 0;
    const unsigned char *id = SSL_SESSION_get_id(sess, &id_len);
    int len = i2d_SSL_SESSION(sess, NULL);
    if (len <= 0 || len > TSC_MAX_DER) {
        atomic_fetch_add_explicit(&ctr->cache_too_big, 1, memory_order_relaxed);
        return 0;
    }
    unsigned char der[TSC_MAX_DER];
    unsigned char *p = der;
    if (i2d_SSL_SESSION(sess, &p) != len)
        return 0;
    int64_t expires = (int64_t)SSL_SESSION_get_time(sess) + SSL_SESSION_get_timeout(sess);
    switch (tsc_put(st->cache, id, id_len, der, (size_t)len, expires, (int64_t)time(NULL))) {
    case TSC_EVICTED:
        atomic_fetch_add_explicit(&ctr->cache_evictions, 1, memory_order_relaxed);
        /* fall through */
    case TSC_STORED:
        atomic_fetch_add_explicit(&ctr->cache_stored, 1, memory_order_relaxed);
        break;
    case TSC_TOO_BIG:
        atomic_fetch_add_explicit(&ctr->cache_too_big, 1, memory_order_relaxed);
        break;
    }
    explicit_bzero(der, (size_t)len);
    return 0; /* no reference kept: the DER copy is the cache's */
}

static SSL_SESSION *cache_get_cb(SSL *ssl, const unsigned char *id, int id_len, int *copy)
{
    *copy = 0; /* the session returned is OpenSSL's to free */
    struct tls_session_store *st = store_of(ssl);
    if (!st || !st->cache || id_len <= 0)
        return NULL;
    struct store_counters *ctr = &st->sh->ctr;
    unsigned char der[TSC_MAX_DER];
    size_t n = tsc_get(st->cache, id, (size_t)id_len, der, sizeof der, (int64_t)time(NULL));
    const unsigned char *p = der;
    SSL_SESSION *sess = n ? d2i_SSL_SESSION(NULL, &p, (long)n) : NULL;
    explicit_bzero(der, n);
    if (!sess) {
        atomic_fetch_add_explicit(&ctr->cache_misses, 1, memory_order_relaxed);
        return NULL;
    }
    atomic_fetch_add_explicit(&ctr->cache_hits, 1, memory_order_relaxed);
    SSL_set_ex_data(ssl, ssl_cache_hit_index, &cache_hit_marker);
    return sess;
}

static void cache_remove_cb(SSL_CTX *ctx, SSL_SESSION *sess)
{
    struct tls_session_store *st = store_of_ctx(ctx);
    if (!st || !st->cache)
        return;
    unsigned int id_len = 0;
    const unsigned char *id = SSL_SESSION_get_id(sess, &id_len);
    tsc_remove(st->cache, id, id_len);
}

int tls_sessions_attach(SSL_CTX *ctx, struct tls_session_store *st, const char *id_context)
{
    if (!ensure_indexes() || SSL_CTX_set_ex_data(ctx, ctx_store_index, st) != 1)
        return -1;
    /* The ID context ties sessions to the listener; a digest because
     * OpenSSL takes at most 32 bytes and names may be longer. */
    unsigned char sid_ctx[32];
    unsigned int sid_len = 0;
    if (EVP_Digest(id_context, strlen(id_context), sid_ctx, &sid_len, EVP_sha256(), NULL) != 1 ||
        SSL_CTX_set_session_id_context(ctx, sid_ctx, sid_len) != 1)
        return -1;
    SSL_CTX_set_timeout(ctx, (long)(st->cfg.timeout_ms / 1000));
    if (st->cfg.tickets) {
        SSL_CTX_clear_options(ctx, SSL_OP_NO_TICKET);
        if (SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx, ticket_key_cb) != 1)
            return -1;
    } else {
        SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
    }
    if (st->cache) {
        SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER | SSL_SESS_CACHE_NO_INTERNAL);
        SSL_CTX_sess_set_new_cb(ctx, cache_new_cb);
        SSL_CTX_sess_set_get_cb(ctx, cache_get_cb);
        SSL_CTX_sess_set_remove_cb(ctx, cache_remove_cb);
    } else {
        /* No session IDs handed out that nothing could find again. */
        SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    }
    return 0;
}

int tls_sessions_handshake_done(SSL *ssl)
{
    struct tls_session_store *st = store_of(ssl);
    if (!st)
        return -1;
    struct store_counters *ctr = &st->sh->ctr;
    if (!SSL_session_reused(ssl)) {
        atomic_fetch_add_explicit(&ctr->full, 1, memory_order_relaxed);
        return TLS_RESUMED_NO;
    }
    if (SSL_get_ex_data(ssl, ssl_cache_hit_index) == &cache_hit_marker) {
        atomic_fetch_add_explicit(&ctr->resumed_cache, 1, memory_order_relaxed);
        return TLS_RESUMED_CACHE;
    }
    atomic_fetch_add_explicit(&ctr->resumed_ticket, 1, memory_order_relaxed);
    return TLS_RESUMED_TICKET;
}

/* ------------------------------------------------------------------------
 * metrics
 */

struct labelled_family {
    const char *name, *type, *help, *label;
    size_t n;
    const char *values[5];
    size_t offs[5];           /* of uint64_t fields in struct tls_session_stats */
};

#define STAT(f) offsetof(struct tls_session_stats, f)

static const struct labelled_family families[] = {
    { "sluice_tls_session_handshakes_total", "counter",
      "TLS handshakes by how the session was set up: full, resumed from a ticket, resumed from the cache",
      "resumed", 3, { "no", "ticket", "cache" }, { STAT(full), STAT(resumed_ticket), STAT(resumed_cache) } },
    { "sluice_tls_tickets_total", "counter",
      "Session tickets issued, renewed (decrypted with an older key) and refused for an unknown key", "event", 3,
      { "issued", "renewed", "unknown_key" },
      { STAT(tickets_issued), STAT(tickets_renewed), STAT(tickets_unknown) } },
    { "sluice_tls_session_cache_total", "counter",
      "Shared session-ID cache: sessions stored, lookups hit and missed, live entries evicted, sessions too big "
      "for an entry",
      "event", 5, { "stored", "hit", "miss", "evicted", "too_big" },
      { STAT(cache_stored), STAT(cache_hits), STAT(cache_misses), STAT(cache_evictions), STAT(cache_too_big) } },
    { "sluice_tls_ticket_key_events_total", "counter",
      "Ticket keys rotated by the master, key file read again, changed key file refused", "event", 3,
      { "rotated", "file_reloaded", "file_refused" },
      { STAT(key_rotations), STAT(key_file_reloads), STAT(key_file_failures) } },
};

void tls_sessions_metrics(struct strbuf *out, const char *const *names, struct tls_session_store *const *stores,
                          size_t n)
{
    struct tls_session_stats *stats = calloc(n ? n : 1, sizeof *stats);
    if (!stats)
        return;
    for (size_t i = 0; i < n; i++)
        tls_session_store_stats(stores[i], &stats[i]);
    for (size_t f = 0; f < sizeof families / sizeof families[0]; f++) {
        const struct labelled_family *fam = &families[f];
        metrics_family(out, fam->name, fam->type, fam->help);
        for (size_t i = 0; i < n; i++)
            for (size_t v = 0; v < fam->n; v++) {
                struct metric_label labels[] = { { "listener", names[i] }, { fam->label, fam->values[v] } };
                uint64_t value;
                memcpy(&value, (const char *)&stats[i] + fam->offs[v], sizeof value);
                metrics_sample(out, fam->name, labels, 2, value);
            }
    }
    metrics_family(out, "sluice_tls_ticket_keys", "gauge", "Ticket keys held: the first encrypts, all decrypt");
    for (size_t i = 0; i < n; i++)
        metrics_sample(out, "sluice_tls_ticket_keys", (struct metric_label[]){ { "listener", names[i] } }, 1,
                       stats[i].keys);
    metrics_family(out, "sluice_tls_session_cache_capacity", "gauge", "Entries of the shared session-ID cache");
    for (size_t i = 0; i < n; i++)
        metrics_sample(out, "sluice_tls_session_cache_capacity", (struct metric_label[]){ { "listener", names[i] } },
                       1, stats[i].cache_capacity);
    free(stats);
}

/* ------------------------------------------------------------------------
 * the master's stores by listener
 */

struct named_store {
    char *name;
    struct tls_session_store *st;
    bool seen; /* got in the current pass */
};

struct tls_session_stores {
    struct named_store *v;
    size_t n, cap;
};

struct tls_session_stores *tls_session_stores_new(void) { return calloc(1, sizeof(struct tls_session_stores)); }

void tls_session_stores_free(struct tls_session_stores *set)
{
    if (!set)
        return;
    for (size_t i = 0; i < set->n; i++) {
        tls_session_store_destroy(set->v[i].st);
        free(set->v[i].name);
    }
    free(set->v);
    free(set);
}

void tls_session_stores_begin(struct tls_session_stores *set)
{
    for (size_t i = 0; i < set->n; i++)
        set->v[i].seen = false;
}

static struct tls_session_store *add_store(struct tls_session_stores *set, const char *listener,
                                           const struct cfg_tls_sessions *cfg, uint64_t now_ms, char *err,
                                           size_t errlen)
{
    if (set->n == set->cap) {
        size_t cap = set->cap ? 2 * set->cap : 4;
        struct named_store *v = realloc(set->v, cap * sizeof *v);
        if (!v) {
            snprintf(err, errlen, "out of memory");
            return NULL;
        }
        set->v = v;
        set->cap = cap;
    }
    char *name = strdup(listener);
    struct tls_session_store *st = name ? tls_session_store_create(cfg, now_ms, err, errlen) : NULL;
    if (!st) {
        if (!name)
            snprintf(err, errlen, "out of memory");
        free(name);
        return NULL;
    }
    set->v[set->n++] = (struct named_store){ .name = name, .st = st, .seen = true };
    return st;
}

struct tls_session_store *tls_session_stores_get(struct tls_session_stores *set, const char *listener,
                                                 const struct cfg_tls_sessions *cfg, uint64_t now_ms, char *err,
                                                 size_t errlen)
{
    for (size_t i = 0; i < set->n; i++) {
        struct named_store *ns = &set->v[i];
        if (strcmp(ns->name, listener) != 0)
            continue;
        if (tls_session_store_reconfigure(ns->st, cfg, now_ms, err, errlen) < 0)
            return NULL;
        ns->seen = true;
        return ns->st;
    }
    return add_store(set, listener, cfg, now_ms, err, errlen);
}

void tls_session_stores_commit(struct tls_session_stores *set)
{
    size_t kept = 0;
    for (size_t i = 0; i < set->n; i++) {
        if (set->v[i].seen) {
            set->v[kept++] = set->v[i];
            continue;
        }
        tls_session_store_destroy(set->v[i].st);
        free(set->v[i].name);
    }
    set->n = kept;
}

void tls_session_stores_tick(struct tls_session_stores *set, uint64_t now_ms)
{
    for (size_t i = 0; i < set->n; i++)
        tls_session_store_tick(set->v[i].st, now_ms);
}

void tls_session_stores_metrics(const struct tls_session_stores *set, struct strbuf *out)
{
    const char **names = calloc(set->n ? set->n : 1, sizeof *names);
    struct tls_session_store **stores = calloc(set->n ? set->n : 1, sizeof *stores);
    if (names && stores) {
        for (size_t i = 0; i < set->n; i++) {
            names[i] = set->v[i].name;
            stores[i] = set->v[i].st;
        }
        tls_sessions_metrics(out, names, stores, set->n);
    }
    free(names);
    free(stores);
}

void tls_session_stores_collect(void *set, struct strbuf *out) { tls_session_stores_metrics(set, out); }
