#include "proxy/tls_session_cache.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <string.h>
#include <sys/mman.h>

#include "lib/hash.h"

struct tsc_entry {
    int64_t expires;            /* wall-clock seconds; 0 = empty */
    uint64_t last_used;         /* the cache's use clock at the last put or hit */
    uint16_t der_len;
    uint8_t id_len;
    uint8_t id[TSC_ID_MAX];
    unsigned char der[TSC_MAX_DER];
};
_Static_assert(sizeof(struct tsc_entry) <= TSC_ENTRY_SIZE, "an entry must fit in TSC_ENTRY_SIZE");

struct tls_session_cache {
    size_t map_size;
    uint32_t n_sets;
    pthread_mutex_t lock;       /* PTHREAD_PROCESS_SHARED, PTHREAD_MUTEX_ROBUST */
    uint64_t use_clock;         /* under lock */
    struct tsc_entry *entries;  /* [n_sets * TSC_WAYS], in the same mapping */
};

/* Any fixed seed: the IDs put in are the server's own random ones, so
 * nobody outside can aim them at one set. */
#define TSC_HASH_SEED 0x5e55104e5ca7c4e1ull

static size_t header_size(void) { return (sizeof(struct tls_session_cache) + 63) & ~(size_t)63; }

struct tls_session_cache *tsc_create(uint32_t entries)
{
    if (entries == 0)
        return NULL;
    uint32_t n_sets = (entries + TSC_WAYS - 1) / TSC_WAYS;
    size_t size = header_size() + (size_t)n_sets * TSC_WAYS * sizeof(struct tsc_entry);
    /* Anonymous memory comes zeroed (every entry empty), and pages are
     * only backed once an entry in them is used. */
    void *base = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (base == MAP_FAILED)
        return NULL;
    struct tls_session_cache *c = base;
    c->map_size = size;
    c->n_sets = n_sets;
    c->entries = (struct tsc_entry *)((char *)base + header_size());
    pthread_mutexattr_t attr;
    if (pthread_mutexattr_init(&attr) != 0)
        goto fail;
    int rc = pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED);
    if (rc == 0)
        rc = pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST);
    if (rc == 0)
        rc = pthread_mutex_init(&c->lock, &attr);
    pthread_mutexattr_destroy(&attr);
    if (rc != 0)
        goto fail;
    return c;
fail:
    munmap(base, size);
    return NULL;
}

void tsc_destroy(struct tls_session_cache *c)
{
    /* No pthread_mutex_destroy: workers forked earlier may still use it
     * through their own mapping, which outlives this one. */
    if (c)
        munmap(c, c->map_size);
}

uint32_t tsc_capacity(const struct tls_session_cache *c) { return c->n_sets * TSC_WAYS; }

static void lock(struct tls_session_cache *c)
{
    if (pthread_mutex_lock(&c->lock) == EOWNERDEAD) {
        /* A worker died inside; whatever it was writing may be half
         * written. Empty everything: a miss is always safe. */
        for (size_t i = 0; i < (size_t)c->n_sets * TSC_WAYS; i++)
            c->entries[i].expires = 0;
        pthread_mutex_consistent(&c->lock);
    }
}

static void unlock(struct tls_session_cache *c) { pthread_mutex_unlock(&c->lock); }

static struct tsc_entry *set_of(struct tls_session_cache *c, const unsigned char *id, size_t id_len)
{
    uint64_t h = sl_hash64(id, id_len, TSC_HASH_SEED);
    return &c->entries[(size_t)(h % c->n_sets) * TSC_WAYS];
}

static bool holds(const struct tsc_entry *e, const unsigned char *id, size_t id_len)
{
    return e->expires != 0 && e->id_len == id_len && memcmp(e->id, id, id_len) == 0;
}

/* The entry of the set a new session goes into: the same ID, else an
 * empty or expired one, else the least recently used (*evict set). */
static struct tsc_entry *victim(struct tsc_entry *set, const unsigned char *id, size_t id_len, int64_t now,
                                bool *evict)
{
    struct tsc_entry *free_one = NULL, *oldest = &set[0];
    for (int w = 0; w < TSC_WAYS; w++) {
        struct tsc_entry *e = &set[w];
        if (holds(e, id, id_len))
            return e;
        if (!free_one && (e->expires == 0 || e->expires <= now))
            free_one = e;
        if (e->last_used < oldest->last_used)
            oldest = e;
    }
    if (free_one)
        return free_one;
    *evict = true;
    return oldest;
}

enum tsc_put_result tsc_put(struct tls_session_cache *c, const unsigned char *id, size_t id_len,
                            const unsigned char *der, size_t der_len, int64_t expires, int64_t now)
{
    if (id_len == 0 || id_len > TSC_ID_MAX || der_len == 0 || der_len > TSC_MAX_DER || expires <= now)
        return TSC_TOO_BIG;
    bool evict = false;
    lock(c);
    struct tsc_entry *e = victim(set_of(c, id, id_len), id, id_len, now, &evict);
    e->expires = expires;
    e->last_used = ++c->use_clock;
    e->der_len = (uint16_t)der_len;
    e->id_len = (uint8_t)id_len;
    memcpy(e->id, id, id_len);
    memcpy(e->der, der, der_len);
    unlock(c);
    return evict ? TSC_EVICTED : TSC_STORED;
}

size_t tsc_get(struct tls_session_cache *c, const unsigned char *id, size_t id_len, unsigned char *out,
               size_t cap, int64_t now)
{
    if (id_len == 0 || id_len > TSC_ID_MAX)
        return 0;
    size_t n = 0;
    lock(c);
    struct tsc_entry *set = set_of(c, id, id_len);
    for (int w = 0; w < TSC_WAYS; w++) {
        struct tsc_entry *e = &set[w];
        if (!holds(e, id, id_len))
            continue;
        if (e->expires <= now) {
            e->expires = 0; /* free it now rather than at the next put */
        } else if (e->der_len <= cap) {
            memcpy(out, e->der, e->der_len);
            n = e->der_len;
            e->last_used = ++c->use_clock;
        }
        break;
    }
    unlock(c);
    return n;
}

void tsc_remove(struct tls_session_cache *c, const unsigned char *id, size_t id_len)
{
    if (id_len == 0 || id_len > TSC_ID_MAX)
        return;
    lock(c);
    struct tsc_entry *set = set_of(c, id, id_len);
    for (int w = 0; w < TSC_WAYS; w++)
        if (holds(&set[w], id, id_len))
            set[w].expires = 0;
    unlock(c);
}

uint32_t tsc_live(struct tls_session_cache *c, int64_t now)
{
    uint32_t n = 0;
    lock(c);
    for (size_t i = 0; i < (size_t)c->n_sets * TSC_WAYS; i++)
        n += c->entries[i].expires > now;
    unlock(c);
    return n;
}

void tsc_hold_lock_for_test(struct tls_session_cache *c) { lock(c); }
