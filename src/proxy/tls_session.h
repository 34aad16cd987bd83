/* TLS session reuse for a listener: ticket keys every worker shares and a
 * session-ID cache every worker shares (issue 11, docs/tls.md "Session reuse").
 *
 * A store belongs to one TLS listener. The master creates it once, before
 * it forks any worker, and keeps it for the listener's life: a reload
 * reconfigures the same store instead of making a new one, so clients
 * resume across reloads. Its state lives in MAP_SHARED mappings of its own
 * (not the generation's shared region, which a reload rebuilds):
 *
 *   - the ticket keys, 1 to TLS_TICKET_MAX_KEYS of them, the first one
 *     encrypting new tickets and all of them decrypting. Only the master
 *     writes them (rotation, key file reloads), under a sequence lock;
 *     a worker copies the key it needs and retries if the sequence moved,
 *     so it never blocks;
 *   - the counters, which every worker adds to;
 *   - the session-ID cache (proxy/tls_session_cache.h), when cache_size > 0.
 *
 * Where the keys come from: ticket_key_file (nginx's 80-byte format, the
 * first key encrypts), re-read by tls_session_store_tick() when the file
 * changes and by every reconfigure; else the master makes a random key at
 * creation and a new one every ticket_rotate, keeping older ones as long as
 * tickets they made can still be valid (timeout), at least the previous.
 *
 * Who calls what:
 *   master:  tls_session_store_create()  at start, before forking
 *            tls_session_store_reconfigure() on reload, before forking
 *            tls_session_store_tick()    about once a second
 *            tls_session_store_destroy() when the listener goes away
 *   anyone:  tls_sessions_attach()       on each SSL_CTX of the listener
 *   worker:  tls_sessions_handshake_done() after each successful handshake
 */
#ifndef SLUICE_PROXY_TLS_SESSION_H
#define SLUICE_PROXY_TLS_SESSION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/ssl.h>

#include "lib/strbuf.h"
#include "proxy/tls_session_conf.h"

struct tls_session_store;

/* The store's counters, summed over every process that used it. */
struct tls_session_stats {
    uint64_t full;              /* handshakes that did not resume */
    uint64_t resumed_ticket;    /* resumed from a ticket */
    uint64_t resumed_cache;     /* resumed from the session-ID cache */
    uint64_t tickets_issued;    /* tickets encrypted */
    uint64_t tickets_renewed;   /* decrypted with an older key: a fresh ticket was sent */
    uint64_t tickets_unknown;   /* named a key the store does not have (too old, another file) */
    uint64_t cache_stored, cache_hits, cache_misses, cache_evictions, cache_too_big;
    uint64_t key_rotations;     /* generated keys */
    uint64_t key_file_reloads;  /* key file read again, after a change or on reload */
    uint64_t key_file_failures; /* a changed key file refused: the keys stayed */
    uint32_t keys;              /* ticket keys held now */
    uint32_t cache_capacity;    /* entries; 0 = no cache */
};

/* Master, before forking: map the store and load or make its keys. now_ms
 * is the monotonic clock of tick() (ev_clock_ms()). NULL with the reason
 * in err (an unreadable key file, out of memory). */
struct tls_session_store *tls_session_store_create(const struct cfg_tls_sessions *cfg, uint64_t now_ms, char *err,
                                                   size_t errlen);
/* Master, on reload (before forking the new generation): take the new
 * settings. The key file is read again whether it changed or not (SIGHUP
 * is the operator's "now"). Keys made by the master stay, so tickets keep
 * resuming; a new cache_size makes a new cache (old workers keep the old
 * one until they exit). 0, or -1 with the reason in err and the store as
 * it was. */
int tls_session_store_reconfigure(struct tls_session_store *st, const struct cfg_tls_sessions *cfg, uint64_t now_ms,
                                  char *err, size_t errlen);
/* Master, about once a second: rotate generated keys when ticket_rotate
 * has passed, drop keys no ticket can need, and read the key file again
 * when its inode, size, mtime or ctime changed (a broken one is logged and
 * counted; the keys in use stay). */
void tls_session_store_tick(struct tls_session_store *st, uint64_t now_ms);
/* Master. Workers forked earlier keep their mappings until they exit. */
void tls_session_store_destroy(struct tls_session_store *st);

/* Make ctx use the store: ticket key callback (or SSL_OP_NO_TICKET),
 * session-ID cache callbacks (SSL_SESS_CACHE_SERVER | NO_INTERNAL, so no
 * per-process cache hides another worker's sessions), the session timeout
 * (also the ticket lifetime hint) and a session ID context derived from
 * id_context (the listener's name: sessions do not cross listeners).
 * Call it for every SSL_CTX of the listener, the SNI ones too, with the
 * same store and id_context. 0, or -1 (OpenSSL refused; its error queue
 * says why). */
int tls_sessions_attach(SSL_CTX *ctx, struct tls_session_store *st, const char *id_context);

/* Worker, after SSL_do_handshake() succeeded: counts the handshake as full,
 * resumed by ticket or resumed from the cache. Returns which, for the
 * access log: 0 full, 1 ticket, 2 cache; -1 when ctx has no store. */
enum { TLS_RESUMED_NO = 0, TLS_RESUMED_TICKET = 1, TLS_RESUMED_CACHE = 2 };
int tls_sessions_handshake_done(SSL *ssl);

void tls_session_store_stats(const struct tls_session_store *st, struct tls_session_stats *out);
/* The name of the key that encrypts new tickets now (tests, logs). */
void tls_session_store_current_key(const struct tls_session_store *st, unsigned char name[TLS_TICKET_NAME_LEN]);
/* The cache, for tests (NULL without one). */
struct tls_session_cache *tls_session_store_cache(const struct tls_session_store *st);

/* Prometheus families for the stores of several listeners, one sample per
 * listener (labels listener="names[i]"). */
void tls_sessions_metrics(struct strbuf *out, const char *const *names, struct tls_session_store *const *stores,
                          size_t n);

/* ------------------------------------------------------------------------
 * The master's stores, one per TLS listener, by listener name
 *
 * A start or a reload is one pass: begin(), get() for each TLS listener of
 * the configuration (a store that exists is reconfigured, so its keys and
 * cache carry over; a new name gets a new store), then commit() once the
 * generation runs, which destroys the stores of listeners that are gone.
 * When a reload is aborted after some get()s, run a pass over the running
 * configuration's listeners instead: that puts their settings back and
 * drops stores made for the aborted one.
 */
struct tls_session_stores;

struct tls_session_stores *tls_session_stores_new(void);
void tls_session_stores_free(struct tls_session_stores *set);
void tls_session_stores_begin(struct tls_session_stores *set);
/* NULL with the reason in err (then the pass should be abandoned). */
struct tls_session_store *tls_session_stores_get(struct tls_session_stores *set, const char *listener,
                                                 const struct cfg_tls_sessions *cfg, uint64_t now_ms, char *err,
                                                 size_t errlen);
void tls_session_stores_commit(struct tls_session_stores *set);
/* tick() and the metrics of every store. */
void tls_session_stores_tick(struct tls_session_stores *set, uint64_t now_ms);
void tls_session_stores_metrics(const struct tls_session_stores *set, struct strbuf *out);
/* The same as a metrics_collect_fn (core/metrics.h), arg being the set:
 * metrics_register(&site->metrics, tls_session_stores_collect, set). */
void tls_session_stores_collect(void *set, struct strbuf *out);

#endif
