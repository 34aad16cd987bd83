/* The TLS 1.2 session-ID cache the workers share: a fixed number of
 * entries in a MAP_SHARED mapping made by the master before it forks, so a
 * session one worker stored resumes on any other.
 *
 * Entries are grouped in sets of TSC_WAYS; a session ID hashes to one set,
 * and a new session replaces an empty or expired entry of its set, else the
 * one used least recently (an eviction). Each entry holds one serialized
 * session (i2d_SSL_SESSION) of at most TSC_MAX_DER bytes; a bigger one is
 * not stored (tsc_put says so and the caller counts it).
 *
 * The lock is a process-shared, robust pthread mutex, not a spinlock: the
 * critical sections are short (a scan of TSC_WAYS headers and one copy of
 * at most TSC_MAX_DER bytes), but a worker can die holding it (a crash, a
 * SIGKILL), and a robust mutex hands the next locker EOWNERDEAD instead of
 * leaving every other worker spinning forever. The entry the dead worker
 * was writing may be torn, so the cache is emptied then: sessions fall back
 * to full handshakes, nothing wrong is ever resumed. A mutex also sleeps
 * under contention instead of burning the CPU a worker needs for the
 * handshakes that contend.
 *
 * Times are in seconds of the wall clock (what SSL_SESSION_get_time uses),
 * passed in by the caller, so the tests can move them.
 */
#ifndef SLUICE_PROXY_TLS_SESSION_CACHE_H
#define SLUICE_PROXY_TLS_SESSION_CACHE_H

#include <stddef.h>
#include <stdint.h>

#define TSC_WAYS 8
#define TSC_ENTRY_SIZE 1024                      /* bytes of shared memory per entry */
#define TSC_ID_MAX 32                            /* SSL_MAX_SSL_SESSION_ID_LENGTH */
#define TSC_MAX_DER (TSC_ENTRY_SIZE - 64)        /* a session's DER must fit in this */

struct tls_session_cache;

enum tsc_put_result {
    TSC_STORED,      /* into a free or expired entry, or over the same ID */
    TSC_EVICTED,     /* after pushing out a live entry */
    TSC_TOO_BIG,     /* der_len > TSC_MAX_DER, or a bad ID: not stored */
};

/* A cache of at least `entries` (rounded up to a multiple of TSC_WAYS).
 * NULL when entries is 0 or the mapping cannot be made. */
struct tls_session_cache *tsc_create(uint32_t entries);
void tsc_destroy(struct tls_session_cache *c);
/* Entries it has room for. */
uint32_t tsc_capacity(const struct tls_session_cache *c);

enum tsc_put_result tsc_put(struct tls_session_cache *c, const unsigned char *id, size_t id_len,
                            const unsigned char *der, size_t der_len, int64_t expires, int64_t now);
/* Copies the session's DER into out (cap bytes, at least TSC_MAX_DER) and
 * returns its length, or 0 when there is none or it has expired. */
size_t tsc_get(struct tls_session_cache *c, const unsigned char *id, size_t id_len, unsigned char *out,
               size_t cap, int64_t now);
void tsc_remove(struct tls_session_cache *c, const unsigned char *id, size_t id_len);
/* Entries holding a session that has not expired (a scan: for tests and
 * the admin side, not the handshake path). */
uint32_t tsc_live(struct tls_session_cache *c, int64_t now);

/* Tests only: take the lock and keep it, so that a child process that
 * then exits plays a worker that died holding it. */
void tsc_hold_lock_for_test(struct tls_session_cache *c);

#endif
