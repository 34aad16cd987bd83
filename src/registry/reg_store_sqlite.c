/* The embedded store: SQLite in WAL mode (see reg_store.h).
 *
 * Durability: every batch is one transaction; its COMMIT with
 * synchronous=FULL fsyncs the write-ahead log, so a completion that says
 * ok means the write is on disk. Group commit is what makes that cheap:
 * the writes of one event-loop turn share one transaction and one fsync
 * (bench/reg_bench.c measures it).
 *
 * Writes run their statements at once inside the open transaction (begun
 * by the first write of a batch), so each one's own error is known and the
 * records need no copying; reg_store_flush() commits and runs the
 * completions. A failed statement fails only its own write (SQLite rolls
 * back the statement, not the transaction), unless SQLite had to roll back
 * the whole transaction (disk full, I/O error): then every write of the
 * batch fails with that reason.
 *
 * One process per data directory: dir/registry.lock is held with flock()
 * (released by the kernel when the process dies, kill -9 included) and
 * holds the holder's pid for the error message.
 *
 * Schema version 1 (PRAGMA user_version; application_id "SLRG" marks the
 * file as ours):
 *   services   name and every setting as its own column
 *   instances  (service, id) and what a registration says; labels as a
 *              JSON array of [key, value] pairs, in order
 */
#include "lib/errbuf.h"
#include "registry/reg_store.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <limits.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#define APPLICATION_ID 0x534c5247 /* "SLRG" */
#define REASON_MAX 160

enum stmt_id {
    ST_PUT_SERVICE,
    ST_DEL_SERVICE_INSTANCES,
    ST_DEL_SERVICE,
    ST_PUT_INSTANCE,
    ST_DEL_INSTANCE,
    ST_COUNT,
};

static const char *const STMT_SQL[ST_COUNT] = {
    [ST_PUT_SERVICE] = "INSERT OR REPLACE INTO services (name, protect_threshold, min_healthy, min_healthy_ratio,"
                       " dns_ttl, answer_count, heartbeat_interval_ms, heartbeat_timeout_ms, expire_after_ms,"
                       " check_type, check_interval_ms, check_timeout_ms, check_rise, check_fall, check_path,"
                       " check_host, check_status_min, check_status_max)"
                       " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
    [ST_DEL_SERVICE_INSTANCES] = "DELETE FROM instances WHERE service = ?",
    [ST_DEL_SERVICE] = "DELETE FROM services WHERE name = ?",
    [ST_PUT_INSTANCE] = "INSERT OR REPLACE INTO instances (service, id, address, weight, datacenter, region,"
                        " labels, enabled, ephemeral, owner, down, health_reason)"
                        " VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
    [ST_DEL_INSTANCE] = "DELETE FROM instances WHERE service = ? AND id = ?",
};

static const char SCHEMA_V1[] =
    "CREATE TABLE services ("
    " name TEXT PRIMARY KEY,"
    " protect_threshold REAL NOT NULL,"
    " min_healthy INTEGER NOT NULL,"
    " min_healthy_ratio REAL NOT NULL,"
    " dns_ttl INTEGER NOT NULL,"
    " answer_count INTEGER NOT NULL,"
    " heartbeat_interval_ms INTEGER NOT NULL,"
    " heartbeat_timeout_ms INTEGER NOT NULL,"
    " expire_after_ms INTEGER NOT NULL,"
    " check_type TEXT NOT NULL,"
    " check_interval_ms INTEGER NOT NULL,"
    " check_timeout_ms INTEGER NOT NULL,"
    " check_rise INTEGER NOT NULL,"
    " check_fall INTEGER NOT NULL,"
    " check_path TEXT,"
    " check_host TEXT,"
    " check_status_min INTEGER NOT NULL,"
    " check_status_max INTEGER NOT NULL"
    ") WITHOUT ROWID;"
    "CREATE TABLE instances ("
    " service TEXT NOT NULL,"
    " id TEXT NOT NULL,"
    " address TEXT NOT NULL,"
    " weight INTEGER NOT NULL,"
    " datacenter TEXT NOT NULL,"
    " region TEXT NOT NULL,"
    " labels TEXT NOT NULL,"
    " enabled INTEGER NOT NULL,"
    " ephemeral INTEGER NOT NULL,"
    " owner TEXT NOT NULL,"
    " down INTEGER NOT NULL,"
    " health_reason TEXT NOT NULL,"
    " PRIMARY KEY (service, id)"
    ") WITHOUT ROWID;";

struct pending {
    reg_store_done_fn *done;
    void *arg;
    bool ok;
    char reason[REASON_MAX];
};

struct sqlite_store {
    struct reg_store base;
    sqlite3 *db;
    sqlite3_stmt *stmt[ST_COUNT];
    int lock_fd;
    char path[PATH_MAX];        /* dir/registry.db, for messages */
    bool in_txn;
    struct pending *pend;
    size_t n_pend, cap_pend;
    struct reg_store_stats st;
};

static struct sqlite_store *of(struct reg_store *base)
{
    return (struct sqlite_store *)base;
}

/* ---- writes ------------------------------------------------------------ */

static void fail_batch(struct sqlite_store *s, const char *reason)
{
    for (size_t i = 0; i < s->n_pend; i++) {
        if (s->pend[i].ok) {
            s->pend[i].ok = false;
            snprintf(s->pend[i].reason, REASON_MAX, "%s", reason);
        }
    }
}

/* Note a failure of the whole store (for stats and health). */
static void store_error(struct sqlite_store *s, const char *reason)
{
    s->st.healthy = false;
    snprintf(s->st.last_error, sizeof s->st.last_error, "%s", reason);
}

/* Run the bound statements stmts[0..n) as one write and queue its
 * completion. Each statement is reset (and its bindings cleared) after. */
static void run_write(struct sqlite_store *s, const enum stmt_id *ids, int n, reg_store_done_fn *done, void *arg,
                      bool bind_ok)
{
    struct pending p = {.done = done, .arg = arg, .ok = bind_ok};
    if (!bind_ok)
        snprintf(p.reason, REASON_MAX, "out of memory");
    if (p.ok && !s->in_txn) {
        if (sqlite3_exec(s->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) == SQLITE_OK) {
            s->in_txn = true;
        } else {
            p.ok = false;
            errbuf_fail(p.reason, REASON_MAX, "%s: %s", s->path, sqlite3_errmsg(s->db));
        }
    }
    for (int i = 0; i < n; i++) {
        sqlite3_stmt *st = s->stmt[ids[i]];
        if (p.ok && sqlite3_step(st) != SQLITE_DONE) {
            p.ok = false;
            errbuf_fail(p.reason, REASON_MAX, "%s: %s", s->path, sqlite3_errmsg(s->db));
        }
        sqlite3_reset(st);
        sqlite3_clear_bindings(st);
    }
    if (!p.ok && s->in_txn && sqlite3_get_autocommit(s->db)) {
        /* SQLite rolled the whole transaction back: the batch is lost. */
        s->in_txn = false;
        fail_batch(s, p.reason);
        store_error(s, p.reason);
    }
    s->st.writes++;
    if (s->n_pend == s->cap_pend) {
        size_t cap = s->cap_pend ? s->cap_pend * 2 : 64;
        struct pending *np = realloc(s->pend, cap * sizeof *np);
        if (!np) {
            /* Nowhere to queue it: the one case answered at once. */
            if (done)
                done(arg, false, "out of memory");
            s->st.failed++;
            return;
        }
        s->pend = np;
        s->cap_pend = cap;
    }
    s->pend[s->n_pend++] = p;
}

static bool bind_text(sqlite3_stmt *st, int i, const char *v)
{
    return sqlite3_bind_text(st, i, v ? v : "", -1, SQLITE_TRANSIENT) == SQLITE_OK;
}

static bool bind_opt_text(sqlite3_stmt *st, int i, const char *v)
{
    return (v ? sqlite3_bind_text(st, i, v, -1, SQLITE_TRANSIENT) : sqlite3_bind_null(st, i)) == SQLITE_OK;
}

static bool bind_int(sqlite3_stmt *st, int i, int64_t v)
{
    return sqlite3_bind_int64(st, i, v) == SQLITE_OK;
}

static void sq_put_service(struct reg_store *base, const char *name, const struct reg_service_settings *v,
                           reg_store_done_fn *done, void *arg)
{
    struct sqlite_store *s = of(base);
    sqlite3_stmt *st = s->stmt[ST_PUT_SERVICE];
    const struct cfg_health *h = &v->health;
    const char *type = (unsigned)h->type <= HEALTH_HTTP ? hc_type_names[h->type] : "none";
    bool ok = bind_text(st, 1, name) && sqlite3_bind_double(st, 2, v->protect_threshold) == SQLITE_OK &&
              bind_int(st, 3, v->locality.min_healthy) &&
              sqlite3_bind_double(st, 4, v->locality.min_healthy_ratio) == SQLITE_OK && bind_int(st, 5, v->dns_ttl) &&
              bind_int(st, 6, v->answer_count) && bind_int(st, 7, v->heartbeat_interval_ms) &&
              bind_int(st, 8, v->heartbeat_timeout_ms) && bind_int(st, 9, v->expire_after_ms) &&
              bind_text(st, 10, type) && bind_int(st, 11, h->interval_ms) && bind_int(st, 12, h->timeout_ms) &&
              bind_int(st, 13, h->rise) && bind_int(st, 14, h->fall) && bind_opt_text(st, 15, h->http_path) &&
              bind_opt_text(st, 16, h->http_host) && bind_int(st, 17, h->status_min) &&
              bind_int(st, 18, h->status_max);
    enum stmt_id ids[] = {ST_PUT_SERVICE};
    run_write(s, ids, 1, done, arg, ok);
}

static void sq_delete_service(struct reg_store *base, const char *name, reg_store_done_fn *done, void *arg)
{
    struct sqlite_store *s = of(base);
    bool ok = bind_text(s->stmt[ST_DEL_SERVICE_INSTANCES], 1, name) && bind_text(s->stmt[ST_DEL_SERVICE], 1, name);
    enum stmt_id ids[] = {ST_DEL_SERVICE_INSTANCES, ST_DEL_SERVICE};
    run_write(s, ids, 2, done, arg, ok);
}

/* The labels as a JSON array of [key, value] pairs (malloc'ed), or NULL. */
static char *labels_json(const struct reg_label *labels, uint32_t n)
{
    json_t *a = json_array();
    if (!a)
        return NULL;
    for (uint32_t i = 0; i < n; i++) {
        json_t *pair = json_pack("[ss]", labels[i].key, labels[i].value);
        if (!pair || json_array_append_new(a, pair) < 0) {
            json_decref(a);
            return NULL;
        }
    }
    char *text = json_dumps(a, JSON_COMPACT);
    json_decref(a);
    return text;
}

static void sq_put_instance(struct reg_store *base, const char *service, const struct reg_instance_spec *spec,
                            reg_store_done_fn *done, void *arg)
{
    struct sqlite_store *s = of(base);
    sqlite3_stmt *st = s->stmt[ST_PUT_INSTANCE];
    const char *id = spec->id && *spec->id ? spec->id : spec->addr.text;
    char *labels = labels_json(spec->labels, spec->n_labels);
    bool ok = labels && bind_text(st, 1, service) && bind_text(st, 2, id) && bind_text(st, 3, spec->addr.text) &&
              bind_int(st, 4, spec->weight) && bind_text(st, 5, spec->datacenter) && bind_text(st, 6, spec->region) &&
              bind_text(st, 7, labels) && bind_int(st, 8, spec->enabled) && bind_int(st, 9, spec->ephemeral) &&
              bind_text(st, 10, spec->owner) && bind_int(st, 11, spec->down) &&
              bind_text(st, 12, spec->health_reason);
    free(labels);
    enum stmt_id ids[] = {ST_PUT_INSTANCE};
    run_write(s, ids, 1, done, arg, ok);
}

static void sq_delete_instance(struct reg_store *base, const char *service, const char *id, reg_store_done_fn *done,
                               void *arg)
{
    struct sqlite_store *s = of(base);
    sqlite3_stmt *st = s->stmt[ST_DEL_INSTANCE];
    bool ok = bind_text(st, 1, service) && bind_text(st, 2, id);
    enum stmt_id ids[] = {ST_DEL_INSTANCE};
    run_write(s, ids, 1, done, arg, ok);
}

static size_t sq_flush(struct reg_store *base)
{
    struct sqlite_store *s = of(base);
    if (!s->n_pend)
        return 0;
    if (s->in_txn) {
        s->in_txn = false;
        if (sqlite3_exec(s->db, "COMMIT", NULL, NULL, NULL) == SQLITE_OK) {
            s->st.commits++;
            s->st.healthy = true;
        } else {
            char reason[REASON_MAX];
            errbuf_fail(reason, sizeof reason, "%s: commit failed: %s", s->path, sqlite3_errmsg(s->db));
            if (!sqlite3_get_autocommit(s->db))
                sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
            fail_batch(s, reason);
            store_error(s, reason);
        }
    }
    /* Take the batch, so completions that write start the next one. */
    struct pending *batch = s->pend;
    size_t n = s->n_pend, cap = s->cap_pend;
    s->pend = NULL;
    s->n_pend = s->cap_pend = 0;
    for (size_t i = 0; i < n; i++) {
        if (!batch[i].ok)
            s->st.failed++;
        if (batch[i].done)
            batch[i].done(batch[i].arg, batch[i].ok, batch[i].ok ? NULL : batch[i].reason);
    }
    if (!s->pend) {
        s->pend = batch; /* keep the capacity */
        s->cap_pend = cap;
    } else {
        free(batch);
    }
    return n;
}

static void sq_stats(const struct reg_store *base, struct reg_store_stats *out)
{
    const struct sqlite_store *s = (const struct sqlite_store *)base;
    *out = s->st;
    out->pending = s->n_pend;
}

/* ---- reading ----------------------------------------------------------- */

/* Column i as an integer in [0, max]; false when outside. */
static bool col_u32(sqlite3_stmt *st, int i, uint32_t max, uint32_t *out)
{
    if (sqlite3_column_type(st, i) != SQLITE_INTEGER)
        return false;
    int64_t v = sqlite3_column_int64(st, i);
    if (v < 0 || v > (int64_t)max)
        return false;
    *out = (uint32_t)v;
    return true;
}

static const char *col_text(sqlite3_stmt *st, int i)
{
    const unsigned char *t = sqlite3_column_text(st, i);
    return t ? (const char *)t : "";
}

static char *col_dup(sqlite3_stmt *st, int i)
{
    const unsigned char *t = sqlite3_column_text(st, i);
    return t ? strdup((const char *)t) : NULL;
}

static int read_service(sqlite3_stmt *st, struct reg_service_settings *v, char *err, size_t errlen)
{
    const char *name = col_text(st, 0);
    uint32_t status_min, status_max;
    struct cfg_health *h = &v->health;
    const char *type = col_text(st, 9);
    int t = -1;
    for (int i = 0; hc_type_names[i]; i++)
        if (strcmp(hc_type_names[i], type) == 0)
            t = i;
    v->protect_threshold = sqlite3_column_double(st, 1);
    v->locality.min_healthy_ratio = sqlite3_column_double(st, 3);
    if (t < 0 || !col_u32(st, 2, UINT32_MAX, &v->locality.min_healthy) || !col_u32(st, 4, UINT32_MAX, &v->dns_ttl) ||
        !col_u32(st, 5, UINT32_MAX, &v->answer_count) || !col_u32(st, 6, UINT32_MAX, &v->heartbeat_interval_ms) ||
        !col_u32(st, 7, UINT32_MAX, &v->heartbeat_timeout_ms) || !col_u32(st, 8, UINT32_MAX, &v->expire_after_ms) ||
        !col_u32(st, 10, UINT32_MAX, &h->interval_ms) || !col_u32(st, 11, UINT32_MAX, &h->timeout_ms) ||
        !col_u32(st, 12, UINT32_MAX, &h->rise) || !col_u32(st, 13, UINT32_MAX, &h->fall) ||
        !col_u32(st, 16, 999, &status_min) || !col_u32(st, 17, 999, &status_max))
        return errbuf_fail(err, errlen, "service %s: a stored setting is out of range", name);
    h->type = (enum health_type)t;
    h->status_min = (uint16_t)status_min;
    h->status_max = (uint16_t)status_max;
    free(h->http_path);
    free(h->http_host);
    h->http_path = col_dup(st, 14);
    h->http_host = col_dup(st, 15);
    return 0;
}

static int scan_services(struct sqlite_store *s, const struct reg_store_scan *cb, char *err, size_t errlen)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(s->db,
                           "SELECT name, protect_threshold, min_healthy, min_healthy_ratio, dns_ttl, answer_count,"
                           " heartbeat_interval_ms, heartbeat_timeout_ms, expire_after_ms, check_type,"
                           " check_interval_ms, check_timeout_ms, check_rise, check_fall, check_path, check_host,"
                           " check_status_min, check_status_max FROM services ORDER BY name",
                           -1, &st, NULL) != SQLITE_OK)
        return errbuf_fail(err, errlen, "%s: %s", s->path, sqlite3_errmsg(s->db));
    int rc, result = 0;
    while (result == 0 && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        struct reg_service_settings v;
        reg_service_settings_defaults(&v);
        char why[200];
        if (read_service(st, &v, why, sizeof why) < 0 ||
            cb->service(cb->arg, col_text(st, 0), &v, why, sizeof why) < 0)
            result = errbuf_fail(err, errlen, "%s: %s", s->path, why);
        reg_service_settings_free(&v);
    }
    if (result == 0 && rc != SQLITE_DONE)
        result = errbuf_fail(err, errlen, "%s: %s", s->path, sqlite3_errmsg(s->db));
    sqlite3_finalize(st);
    return result;
}

/* Labels from their JSON text into labels[] (pointing into *doc, which the
 * caller frees with json_decref). */
static bool parse_labels(const char *text, json_t **doc, struct reg_label *labels, uint32_t *n)
{
    *doc = json_loads(text, 0, NULL);
    if (!*doc || !json_is_array(*doc) || json_array_size(*doc) > REG_LABELS_MAX)
        return false;
    *n = 0;
    size_t i;
    json_t *pair;
    json_array_foreach(*doc, i, pair)
    {
        json_t *k = json_array_get(pair, 0), *v = json_array_get(pair, 1);
        if (!json_is_array(pair) || json_array_size(pair) != 2 || !json_is_string(k) || !json_is_string(v))
            return false;
        labels[(*n)++] = (struct reg_label){.key = (char *)json_string_value(k), .value = (char *)json_string_value(v)};
    }
    return true;
}

static int read_instance(sqlite3_stmt *st, struct reg_instance_spec *spec, struct reg_label *labels, json_t **doc,
                         char *err, size_t errlen)
{
    const char *service = col_text(st, 0), *id = col_text(st, 1);
    const char *why = NULL;
    uint32_t enabled, ephemeral, down;
    *spec = (struct reg_instance_spec){
        .id = id,
        .datacenter = col_text(st, 4),
        .region = col_text(st, 5),
        .owner = col_text(st, 9),
        .health_reason = col_text(st, 11),
        .labels = labels,
    };
    if (addr_parse(col_text(st, 2), &spec->addr, &why) < 0)
        return errbuf_fail(err, errlen, "instance %s of service %s: address: %s", id, service, why);
    if (!col_u32(st, 3, REG_WEIGHT_MAX, &spec->weight) || !col_u32(st, 7, 1, &enabled) ||
        !col_u32(st, 8, 1, &ephemeral) || !col_u32(st, 10, 1, &down))
        return errbuf_fail(err, errlen, "instance %s of service %s: a stored field is out of range", id, service);
    if (!parse_labels(col_text(st, 6), doc, labels, &spec->n_labels))
        return errbuf_fail(err, errlen, "instance %s of service %s: labels are not a list of [key, value]", id, service);
    spec->enabled = enabled;
    spec->ephemeral = ephemeral;
    spec->down = down;
    return 0;
}

static int scan_instances(struct sqlite_store *s, const struct reg_store_scan *cb, char *err, size_t errlen)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(s->db,
                           "SELECT service, id, address, weight, datacenter, region, labels, enabled, ephemeral,"
                           " owner, down, health_reason FROM instances ORDER BY service, id",
                           -1, &st, NULL) != SQLITE_OK)
        return errbuf_fail(err, errlen, "%s: %s", s->path, sqlite3_errmsg(s->db));
    int rc, result = 0;
    while (result == 0 && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        struct reg_instance_spec spec;
        struct reg_label labels[REG_LABELS_MAX];
        json_t *doc = NULL;
        char why[256];
        if (read_instance(st, &spec, labels, &doc, why, sizeof why) < 0 ||
            cb->instance(cb->arg, col_text(st, 0), &spec, why, sizeof why) < 0)
            result = errbuf_fail(err, errlen, "%s: %s", s->path, why);
        json_decref(doc);
    }
    if (result == 0 && rc != SQLITE_DONE)
        result = errbuf_fail(err, errlen, "%s: %s", s->path, sqlite3_errmsg(s->db));
    sqlite3_finalize(st);
    return result;
}

static int sq_scan(struct reg_store *base, const struct reg_store_scan *cb, char *err, size_t errlen)
{
    struct sqlite_store *s = of(base);
    if (scan_services(s, cb, err, errlen) < 0 || scan_instances(s, cb, err, errlen) < 0)
        return -1;
    return 0;
}

/* ---- opening and closing ----------------------------------------------- */

static void free_store(struct sqlite_store *s)
{
    for (int i = 0; i < ST_COUNT; i++)
        sqlite3_finalize(s->stmt[i]);
    if (s->db)
        sqlite3_close(s->db);
    if (s->lock_fd >= 0)
        close(s->lock_fd); /* releases the flock */
    free(s->pend);
    free(s);
}

static void sq_close(struct reg_store *base)
{
    struct sqlite_store *s = of(base);
    sq_flush(base);
    free_store(s);
}

static const struct reg_store_ops SQLITE_OPS = {
    .name = "sqlite",
    .scan = sq_scan,
    .put_service = sq_put_service,
    .delete_service = sq_delete_service,
    .put_instance = sq_put_instance,
    .delete_instance = sq_delete_instance,
    .flush = sq_flush,
    .stats = sq_stats,
    .close = sq_close,
};

static int open_dir(const char *dir, char *err, size_t errlen)
{
    struct stat sb;
    if (stat(dir, &sb) < 0) {
        if (errno != ENOENT)
            return errbuf_fail(err, errlen, "%s: %s", dir, strerror(errno));
        if (mkdir(dir, 0750) < 0)
            return errbuf_fail(err, errlen, "%s: cannot create the data directory: %s", dir, strerror(errno));
    } else if (!S_ISDIR(sb.st_mode)) {
        return errbuf_fail(err, errlen, "%s: not a directory (the data directory must be one)", dir);
    }
    if (access(dir, R_OK | W_OK | X_OK) < 0)
        return errbuf_fail(err, errlen, "%s: the data directory is not readable and writable: %s", dir, strerror(errno));
    return 0;
}

static int take_lock(struct sqlite_store *s, const char *dir, char *err, size_t errlen)
{
    char path[PATH_MAX];
    if ((size_t)snprintf(path, sizeof path, "%s/%s", dir, REG_SQLITE_LOCK) >= sizeof path)
        return errbuf_fail(err, errlen, "%s: path too long", dir);
    s->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0640);
    if (s->lock_fd < 0)
        return errbuf_fail(err, errlen, "%s: %s", path, strerror(errno));
    if (flock(s->lock_fd, LOCK_EX | LOCK_NB) < 0) {
        int e = errno;
        char holder[32] = "";
        ssize_t n = pread(s->lock_fd, holder, sizeof holder - 1, 0);
        holder[n > 0 ? n : 0] = '\0';
        holder[strcspn(holder, "\n")] = '\0';
        if (e == EWOULDBLOCK)
            return errbuf_fail(err, errlen, "%s: the data directory is in use by another process%s%s%s", dir,
                        *holder ? " (pid " : "", holder, *holder ? ")" : "");
        return errbuf_fail(err, errlen, "%s: cannot lock: %s", path, strerror(e));
    }
    char pid[32];
    int len = snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
    if (ftruncate(s->lock_fd, 0) < 0 || pwrite(s->lock_fd, pid, (size_t)len, 0) != len)
        return errbuf_fail(err, errlen, "%s: %s", path, strerror(errno));
    return 0;
}

/* The single value of a one-row PRAGMA, into buf. */
static int pragma_value(struct sqlite_store *s, const char *sql, char *buf, size_t cap, char *err, size_t errlen)
{
    sqlite3_stmt *st;
    int rc = sqlite3_prepare_v2(s->db, sql, -1, &st, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_step(st);
    if (rc != SQLITE_ROW) {
        errbuf_fail(err, errlen, "%s: %s", s->path, sqlite3_errmsg(s->db));
        sqlite3_finalize(st);
        return -1;
    }
    snprintf(buf, cap, "%s", col_text(st, 0));
    sqlite3_finalize(st);
    return 0;
}

static int check_integrity(struct sqlite_store *s, char *err, size_t errlen)
{
    char result[256];
    if (pragma_value(s, "PRAGMA quick_check", result, sizeof result, err, errlen) < 0)
        return -1;
    for (char *c = result; *c; c++) /* one line: the report has several */
        if (*c == '\n' || *c == '\r' || *c == '\t')
            *c = ' ';
    if (strcmp(result, "ok") != 0)
        return errbuf_fail(err, errlen,
                    "%s: the database is corrupt (integrity check: %s); restore it from a backup, or move it "
                    "away to start empty",
                    s->path, result);
    return 0;
}

static int exec(struct sqlite_store *s, const char *sql, char *err, size_t errlen)
{
    char *msg = NULL;
    if (sqlite3_exec(s->db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        errbuf_fail(err, errlen, "%s: %s", s->path, msg ? msg : sqlite3_errmsg(s->db));
        sqlite3_free(msg);
        return -1;
    }
    return 0;
}

static int check_schema(struct sqlite_store *s, char *err, size_t errlen)
{
    char version[32], app[32], tables[32];
    if (pragma_value(s, "PRAGMA user_version", version, sizeof version, err, errlen) < 0 ||
        pragma_value(s, "PRAGMA application_id", app, sizeof app, err, errlen) < 0 ||
        pragma_value(s, "SELECT count(*) FROM sqlite_master", tables, sizeof tables, err, errlen) < 0)
        return -1;
    long v = strtol(version, NULL, 10), id = strtol(app, NULL, 10), n = strtol(tables, NULL, 10);
    if (v == 0 && id == 0) {
        if (n != 0)
            return errbuf_fail(err, errlen, "%s: not a Sluice registry database (it holds tables of something else)",
                        s->path);
        char sql[2048];
        snprintf(sql, sizeof sql, "BEGIN; %s PRAGMA application_id = %d; PRAGMA user_version = %d; COMMIT;",
                 SCHEMA_V1, APPLICATION_ID, REG_SQLITE_SCHEMA);
        return exec(s, sql, err, errlen);
    }
    if (id != APPLICATION_ID)
        return errbuf_fail(err, errlen, "%s: not a Sluice registry database (application_id %ld)", s->path, id);
    if (v > REG_SQLITE_SCHEMA)
        return errbuf_fail(err, errlen,
                    "%s: written by a newer Sluice (schema version %ld; this one reads up to %d): run the newer "
                    "version, or restore a backup",
                    s->path, v, REG_SQLITE_SCHEMA);
    if (v < 1)
        return errbuf_fail(err, errlen, "%s: schema version %ld is unknown", s->path, v);
    return 0;
}

static int prepare_all(struct sqlite_store *s, char *err, size_t errlen)
{
    for (int i = 0; i < ST_COUNT; i++)
        if (sqlite3_prepare_v3(s->db, STMT_SQL[i], -1, SQLITE_PREPARE_PERSISTENT, &s->stmt[i], NULL) != SQLITE_OK)
            return errbuf_fail(err, errlen, "%s: the schema is damaged: %s", s->path, sqlite3_errmsg(s->db));
    return 0;
}

static int open_db(struct sqlite_store *s, const struct reg_sqlite_opts *opts, char *err, size_t errlen)
{
    struct stat sb;
    if (stat(s->path, &sb) == 0 && !S_ISREG(sb.st_mode))
        return errbuf_fail(err, errlen, "%s: not a regular file", s->path);
    if (sqlite3_open_v2(s->path, &s->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL) !=
        SQLITE_OK)
        return errbuf_fail(err, errlen, "%s: %s", s->path, s->db ? sqlite3_errmsg(s->db) : "out of memory");
    char mode[32];
    if (pragma_value(s, "PRAGMA journal_mode = WAL", mode, sizeof mode, err, errlen) < 0)
        return -1;
    if (strcmp(mode, "wal") != 0)
        return errbuf_fail(err, errlen, "%s: cannot use write-ahead logging (journal mode %s)", s->path, mode);
    const char *sync = opts && opts->sync == REG_SQLITE_SYNC_NORMAL ? "PRAGMA synchronous = NORMAL"
                                                                      : "PRAGMA synchronous = FULL";
    if (exec(s, sync, err, errlen) < 0 || check_integrity(s, err, errlen) < 0 || check_schema(s, err, errlen) < 0)
        return -1;
    return prepare_all(s, err, errlen);
}

struct reg_store *reg_store_sqlite_open(const char *dir, const struct reg_sqlite_opts *opts, char *err,
                                        size_t errlen)
{
    if (!dir || !*dir) {
        errbuf_fail(err, errlen, "no data directory given");
        return NULL;
    }
    if (open_dir(dir, err, errlen) < 0)
        return NULL;
    struct sqlite_store *s = calloc(1, sizeof *s);
    if (!s) {
        errbuf_fail(err, errlen, "out of memory");
        return NULL;
    }
    s->base.ops = &SQLITE_OPS;
    s->lock_fd = -1;
    s->st.healthy = true;
    if ((size_t)snprintf(s->path, sizeof s->path, "%s/%s", dir, REG_SQLITE_FILE) >= sizeof s->path) {
        errbuf_fail(err, errlen, "%s: path too long", dir);
        free_store(s);
        return NULL;
    }
    if (take_lock(s, dir, err, errlen) < 0 || open_db(s, opts, err, errlen) < 0) {
        free_store(s);
        return NULL;
    }
    return &s->base;
}
