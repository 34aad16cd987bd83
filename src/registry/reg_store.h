/* Where the registry keeps what must survive a restart: services with
 * their settings, and every registration (persistent instances, and
 * ephemeral ones too, so that after a restart they get a grace period to
 * heartbeat again instead of vanishing). Heartbeats never write.
 *
 * An ops table, so stores plug in: the embedded SQLite store
 * (reg_store_sqlite_open, this file) and the etcd store (next).
 *
 * Contract:
 *   - Writes are asynchronous in shape: each takes a completion,
 *     done(arg, ok, reason), called exactly once when the write is durable
 *     (ok) or has failed (reason says why; only valid during the call). A
 *     registration is answered (the API's 200) from its completion, never
 *     before. done is not called from inside the write call itself, so a
 *     caller may register its state after calling (the one exception: out
 *     of memory with nowhere to queue the completion, then it is called at
 *     once with ok false); it may be NULL.
 *   - The records a write takes are read during the call only (the store
 *     copies or binds what it needs).
 *   - Group commit: writes are collected and made durable together by
 *     reg_store_flush(), which the daemon calls once per event-loop turn
 *     (an etcd store answers on its own later and its flush does little).
 *     Completions run in the order of the writes. A completion may issue
 *     new writes; they go into the next batch.
 *   - The order of writes is the order they take effect, so a deletion
 *     after a put in the same batch wins.
 *   - Suggested use: validate (reg_*_check), write to the store, and apply
 *     to the model in the completion, so the model only ever holds what is
 *     durable; the etcd store forces that order anyway (its watch feeds
 *     the model).
 *   - What is stored is a registration as reg_instance_spec says it,
 *     health included as it was at the write (the daemon decides whether
 *     health changes are worth a write; a restart restores what was
 *     written). An instance that expires (REG_EV_INSTANCE_EXPIRE) must be
 *     deleted from the store as well, or a restart brings it back for a
 *     grace period.
 *   - Errors: -1 with a reason in the caller's buffer, naming the file
 *     or the record.
 */
#ifndef SLUICE_REGISTRY_REG_STORE_H
#define SLUICE_REGISTRY_REG_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "registry/reg_model.h"

typedef void reg_store_done_fn(void *arg, bool ok, const char *reason);

/* What a scan hands over, record by record: every service first, then
 * every instance. Returning -1 (with a reason) stops the scan. */
struct reg_store_scan {
    int (*service)(void *arg, const char *name, const struct reg_service_settings *s, char *err, size_t errlen);
    int (*instance)(void *arg, const char *service, const struct reg_instance_spec *spec, char *err,
                    size_t errlen);
    void *arg;
};

struct reg_store_stats {
    uint64_t writes;          /* writes taken */
    uint64_t commits;         /* batches made durable */
    uint64_t failed;          /* writes whose completion said not ok */
    size_t pending;           /* writes waiting for the next flush */
    bool healthy;             /* the last commit worked */
    char last_error[160];     /* "" or the last failure */
};

struct reg_store;

struct reg_store_ops {
    const char *name; /* "sqlite", "etcd" */
    int (*scan)(struct reg_store *st, const struct reg_store_scan *cb, char *err, size_t errlen);
    void (*put_service)(struct reg_store *st, const char *name, const struct reg_service_settings *s,
                        reg_store_done_fn *done, void *arg);
    /* The service and all its instances. */
    void (*delete_service)(struct reg_store *st, const char *name, reg_store_done_fn *done, void *arg);
    void (*put_instance)(struct reg_store *st, const char *service, const struct reg_instance_spec *spec,
                         reg_store_done_fn *done, void *arg);
    void (*delete_instance)(struct reg_store *st, const char *service, const char *id, reg_store_done_fn *done,
                            void *arg);
    /* Make the pending writes durable and call their completions; returns
     * how many completions ran. */
    size_t (*flush)(struct reg_store *st);
    void (*stats)(const struct reg_store *st, struct reg_store_stats *out);
    /* Flush, then release everything. */
    void (*close)(struct reg_store *st);
};

/* Every store begins with this. */
struct reg_store {
    const struct reg_store_ops *ops;
};

static inline void reg_store_put_service(struct reg_store *st, const char *name, const struct reg_service_settings *s,
                                         reg_store_done_fn *done, void *arg)
{
    st->ops->put_service(st, name, s, done, arg);
}

static inline void reg_store_delete_service(struct reg_store *st, const char *name, reg_store_done_fn *done, void *arg)
{
    st->ops->delete_service(st, name, done, arg);
}

static inline void reg_store_put_instance(struct reg_store *st, const char *service,
                                          const struct reg_instance_spec *spec, reg_store_done_fn *done, void *arg)
{
    st->ops->put_instance(st, service, spec, done, arg);
}

static inline void reg_store_delete_instance(struct reg_store *st, const char *service, const char *id,
                                             reg_store_done_fn *done, void *arg)
{
    st->ops->delete_instance(st, service, id, done, arg);
}

static inline size_t reg_store_flush(struct reg_store *st)
{
    return st->ops->flush(st);
}

static inline void reg_store_stats(const struct reg_store *st, struct reg_store_stats *out)
{
    st->ops->stats(st, out);
}

static inline void reg_store_close(struct reg_store *st)
{
    if (st)
        st->ops->close(st);
}

/* Load every service and instance of the store into the model, at start
 * (reg_instance_load: ephemeral instances get the grace period). An
 * instance whose service is not stored gets one with the default settings.
 * A record the model refuses stops the load with a reason naming it. */
int reg_store_load(struct reg_store *st, struct reg_model *m, uint64_t now_ms, char *err, size_t errlen);

/* ---- the embedded store: SQLite ---------------------------------------- */

/* Durability of a commit:
 *   FULL    (default) the write-ahead log is fsynced at every commit: an
 *           acknowledged write survives a kill -9 and a power loss.
 *   NORMAL  the log is fsynced only at checkpoints: an acknowledged write
 *           survives a kill -9 (it is in the kernel's page cache) but the
 *           last commits may be lost on a power loss. */
enum reg_sqlite_sync { REG_SQLITE_SYNC_FULL, REG_SQLITE_SYNC_NORMAL };

struct reg_sqlite_opts {
    enum reg_sqlite_sync sync;
};

#define REG_SQLITE_FILE "registry.db"
#define REG_SQLITE_LOCK "registry.lock"
#define REG_SQLITE_SCHEMA 1

/* Open (creating if needed) the store in directory dir: dir/registry.db in
 * WAL mode, locked against a second process by dir/registry.lock. Checks
 * the file (a quick integrity check, the schema version) and says what is
 * wrong when it cannot be used: not a directory, not writable, in use by
 * another process, not a database, corrupt, not a Sluice registry, written
 * by a newer schema. opts may be NULL (FULL). Open it in the process that
 * uses it: an SQLite connection must not cross a fork(). */
struct reg_store *reg_store_sqlite_open(const char *dir, const struct reg_sqlite_opts *opts, char *err,
                                        size_t errlen);

#endif
