/* Unit tests for the registry's embedded store (src/registry/reg_store*.c):
 * write, close, reopen and find everything back in the model; group commit
 * and completion order; acknowledged writes surviving kill -9 at a random
 * point; and a clear error for each way a data directory can be unusable
 * (not a directory, not a database, corrupt, another program's database,
 * a newer schema, in use, a bad row). Each test works in its own
 * directory under /tmp, removed afterwards. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "lib/hash.h"
#include "registry/reg_model.h"
#include "registry/reg_store.h"

#include "reg_helpers.h"

struct fixture {
    char dir[64];
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    snprintf(f->dir, sizeof f->dir, "/tmp/sluice-reg-test-XXXXXX");
    if (!mkdtemp(f->dir))
        return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    char cmd[256];
    snprintf(cmd, sizeof cmd, "chmod -R u+rwx '%s' 2>/dev/null; rm -rf '%s'", f->dir, f->dir);
    int rc = system(cmd);
    free(f);
    return rc == 0 ? 0 : -1;
}

static struct reg_store *open_ok(const char *dir)
{
    char err[512] = "";
    struct reg_store *st = reg_store_sqlite_open(dir, NULL, err, sizeof err);
    if (!st)
        fail_msg("open %s: %s", dir, err);
    return st;
}

/* A completion that records its call in a struct result. */
struct result {
    int calls;
    bool ok;
    char reason[200];
};

static void on_done(void *arg, bool ok, const char *reason)
{
    struct result *r = arg;
    r->calls++;
    r->ok = ok;
    snprintf(r->reason, sizeof r->reason, "%s", reason ? reason : "");
}

static void expect_ok(const struct result *r, const char *what)
{
    if (r->calls != 1 || !r->ok)
        fail_msg("%s: %d completions, ok %d, reason %s", what, r->calls, r->ok, r->reason);
}

static struct reg_model *load(struct reg_store *st, uint64_t now)
{
    struct reg_model *m = th_model(NULL);
    char err[512] = "";
    if (reg_store_load(st, m, now, err, sizeof err) < 0)
        fail_msg("load: %s", err);
    return m;
}

/* ---- round trip -------------------------------------------------------- */

static void test_write_close_reopen(void **state)
{
    struct fixture *f = *state;
    struct reg_store *st = open_ok(f->dir);
    struct result r[10] = {0};

    struct reg_service_settings web;
    reg_service_settings_defaults(&web);
    web.protect_threshold = 0.5;
    web.locality.min_healthy = 2;
    web.locality.min_healthy_ratio = 0.3;
    web.dns_ttl = 10;
    web.answer_count = 3;
    web.heartbeat_interval_ms = 2000;
    web.heartbeat_timeout_ms = 6000;
    web.expire_after_ms = 12000;
    web.health.type = HEALTH_HTTP;
    web.health.interval_ms = 1000;
    web.health.timeout_ms = 500;
    web.health.rise = 3;
    web.health.fall = 4;
    free(web.health.http_path);
    web.health.http_path = strdup("/healthz");
    web.health.http_host = strdup("example.com");
    web.health.status_min = 200;
    web.health.status_max = 299;
    reg_store_put_service(st, "web", &web, on_done, &r[0]);
    struct reg_service_settings plain;
    reg_service_settings_defaults(&plain);
    reg_store_put_service(st, "api", &plain, on_done, &r[1]);

    struct reg_label labels[] = {{"version", "1.2"}, {"zone", "a b"}};
    struct reg_instance_spec a = th_spec("10.0.0.1:8080", "dc1", "eu", 250);
    a.id = "web-1";
    a.labels = labels;
    a.n_labels = 2;
    a.owner = "node-a";
    reg_store_put_instance(st, "web", &a, on_done, &r[2]);
    struct reg_instance_spec b = th_spec("[2001:db8::7]:443", "dc2", "us", 0);
    b.enabled = false;
    b.down = true;
    b.health_reason = "connection refused";
    reg_store_put_instance(st, "web", &b, on_done, &r[3]);
    struct reg_instance_spec e = th_spec("10.0.0.3:80", "dc1", "eu", 100);
    e.ephemeral = true;
    reg_store_put_instance(st, "web", &e, on_done, &r[4]);
    struct reg_instance_spec gone = th_spec("10.0.0.4:80", "dc1", "eu", 100);
    reg_store_put_instance(st, "web", &gone, on_done, &r[5]);
    reg_store_delete_instance(st, "web", "10.0.0.4:80", on_done, &r[6]);
    /* A service deleted with its instances, and an instance whose service
     * was never stored. */
    reg_store_put_service(st, "old", &plain, on_done, &r[7]);
    struct reg_instance_spec o = th_spec("10.9.0.1:80", "", "", 1);
    reg_store_put_instance(st, "old", &o, on_done, &r[8]);
    reg_store_delete_service(st, "old", on_done, &r[9]);
    struct reg_instance_spec orphan = th_spec("10.8.0.1:80", "", "", 1);
    struct result r_orphan = {0};
    reg_store_put_instance(st, "orphan", &orphan, on_done, &r_orphan);

    assert_int_equal(r[0].calls, 0); /* nothing before the flush */
    assert_int_equal(reg_store_flush(st), 11);
    for (int i = 0; i < 10; i++)
        expect_ok(&r[i], "write");
    expect_ok(&r_orphan, "orphan");
    reg_store_close(st);
    reg_service_settings_free(&web);
    reg_service_settings_free(&plain);

    st = open_ok(f->dir);
    struct reg_model *m = load(st, 5000);
    assert_int_equal(reg_model_service_count(m), 3);
    struct reg_service *svc = reg_service_find(m, "web", 3);
    assert_non_null(svc);
    const struct reg_service_settings *s = &svc->settings;
    assert_true(s->protect_threshold == 0.5);
    assert_int_equal(s->locality.min_healthy, 2);
    assert_true(s->locality.min_healthy_ratio == 0.3);
    assert_int_equal(s->dns_ttl, 10);
    assert_int_equal(s->answer_count, 3);
    assert_int_equal(s->heartbeat_interval_ms, 2000);
    assert_int_equal(s->heartbeat_timeout_ms, 6000);
    assert_int_equal(s->expire_after_ms, 12000);
    assert_int_equal(s->health.type, HEALTH_HTTP);
    assert_int_equal(s->health.interval_ms, 1000);
    assert_int_equal(s->health.timeout_ms, 500);
    assert_int_equal(s->health.rise, 3);
    assert_int_equal(s->health.fall, 4);
    assert_string_equal(s->health.http_path, "/healthz");
    assert_string_equal(s->health.http_host, "example.com");
    assert_int_equal(s->health.status_min, 200);
    assert_int_equal(s->health.status_max, 299);

    assert_int_equal(svc->n_instances, 3);
    struct reg_instance *ia = reg_instance_find(svc, "web-1");
    assert_non_null(ia);
    assert_string_equal(ia->addr.text, "10.0.0.1:8080");
    assert_int_equal(ia->weight, 250);
    assert_string_equal(ia->datacenter, "dc1");
    assert_string_equal(ia->region, "eu");
    assert_int_equal(ia->n_labels, 2);
    assert_string_equal(ia->labels[0].key, "version");
    assert_string_equal(ia->labels[1].value, "a b");
    assert_string_equal(ia->owner, "node-a");
    assert_true(ia->enabled);
    assert_false(ia->ephemeral);
    assert_int_equal(ia->grace_until_ms, 0);
    struct reg_instance *ib = reg_instance_find(svc, "[2001:db8::7]:443");
    assert_non_null(ib);
    assert_false(ib->enabled);
    assert_int_equal(ib->weight, 0);
    assert_int_equal(ib->health, REG_HEALTH_DOWN);
    assert_string_equal(ib->health_reason, "connection refused");
    struct reg_instance *ie = reg_instance_find(svc, "10.0.0.3:80");
    assert_non_null(ie);
    assert_true(ie->ephemeral);
    assert_int_equal(ie->grace_until_ms, 5000 + 30000); /* the grace after a restart */
    assert_null(reg_instance_find(svc, "10.0.0.4:80"));
    assert_null(reg_service_find(m, "old", 3));
    struct reg_service *api = reg_service_find(m, "api", 3);
    assert_non_null(api);
    assert_int_equal(api->settings.dns_ttl, 5);
    struct reg_service *orph = reg_service_find(m, "orphan", 6);
    assert_non_null(orph);
    assert_int_equal(orph->n_instances, 1);
    reg_model_free(m);
    reg_store_close(st);
}

/* ---- group commit ------------------------------------------------------ */

struct chained {
    struct reg_store *st;
    struct result first, second;
    int order[4];
    int n;
};

static void first_done(void *arg, bool ok, const char *reason)
{
    struct chained *c = arg;
    on_done(&c->first, ok, reason);
    c->order[c->n++] = 1;
    /* A write from a completion goes into the next batch. */
    struct reg_instance_spec spec = th_spec("10.0.0.99:80", "", "", 1);
    reg_store_put_instance(c->st, "web", &spec, on_done, &c->second);
}

static void second_log(void *arg, bool ok, const char *reason)
{
    struct chained *c = arg;
    (void)ok;
    (void)reason;
    c->order[c->n++] = 2;
}

static void test_group_commit(void **state)
{
    struct fixture *f = *state;
    struct reg_store *st = open_ok(f->dir);
    enum { N = 50 };
    struct result r[N] = {0};
    char addr[32];
    for (int i = 0; i < N; i++) {
        snprintf(addr, sizeof addr, "10.0.1.%d:80", i + 1);
        struct reg_instance_spec spec = th_spec(addr, "dc1", "eu", 100);
        reg_store_put_instance(st, "web", &spec, on_done, &r[i]);
    }
    struct reg_store_stats stats;
    reg_store_stats(st, &stats);
    assert_int_equal(stats.pending, N);
    assert_int_equal(stats.commits, 0);
    assert_int_equal(r[0].calls + r[N - 1].calls, 0);
    assert_int_equal(reg_store_flush(st), N);
    reg_store_stats(st, &stats);
    assert_int_equal(stats.commits, 1); /* one transaction for the batch */
    assert_int_equal(stats.writes, N);
    assert_int_equal(stats.pending, 0);
    assert_true(stats.healthy);
    for (int i = 0; i < N; i++)
        expect_ok(&r[i], "batched write");
    assert_int_equal(reg_store_flush(st), 0);

    struct chained c = {.st = st};
    struct reg_instance_spec spec = th_spec("10.0.0.98:80", "", "", 1);
    reg_store_put_instance(st, "web", &spec, first_done, &c);
    reg_store_delete_instance(st, "web", "10.0.0.98:80", second_log, &c);
    assert_int_equal(reg_store_flush(st), 2);
    assert_int_equal(c.n, 2); /* in the order of the writes */
    assert_int_equal(c.order[0], 1);
    assert_int_equal(c.order[1], 2);
    assert_int_equal(c.second.calls, 0);
    reg_store_stats(st, &stats);
    assert_int_equal(stats.pending, 1);
    assert_int_equal(reg_store_flush(st), 1);
    expect_ok(&c.second, "write from a completion");
    reg_store_close(st);

    st = open_ok(f->dir);
    struct reg_model *m = load(st, 0);
    struct reg_service *svc = reg_service_find(m, "web", 3);
    assert_int_equal(svc->n_instances, N + 1); /* the 50, 10.0.0.99, not 10.0.0.98 */
    assert_null(reg_instance_find(svc, "10.0.0.98:80"));
    reg_model_free(m);
    reg_store_close(st);
}

/* ---- kill -9 ----------------------------------------------------------- */

#define SERVICE_ACK 0x80000000u

static int ack_fd = -1;

static void ack(void *arg, bool ok, const char *reason)
{
    uint32_t v = (uint32_t)(uintptr_t)arg;
    if (!ok) {
        fprintf(stderr, "child: write %u failed: %s\n", v, reason);
        _exit(3);
    }
    if (write(ack_fd, &v, sizeof v) != sizeof v)
        _exit(4);
}

/* Write registrations as fast as possible, flushing every 1..8 writes,
 * telling the parent each one acknowledged; never returns. */
static void writer(const char *dir, const char *service, uint64_t seed)
{
    char err[512];
    struct reg_store *st = reg_store_sqlite_open(dir, NULL, err, sizeof err);
    if (!st) {
        fprintf(stderr, "child: %s\n", err);
        _exit(2);
    }
    struct reg_service_settings s;
    reg_service_settings_defaults(&s);
    uint32_t until_flush = 1;
    for (uint32_t i = 0;; i++) {
        if (i % 20 == 0) {
            s.dns_ttl = i / 20;
            reg_store_put_service(st, service, &s, ack, (void *)(uintptr_t)(SERVICE_ACK | s.dns_ttl));
        }
        char addr[32], id[32];
        snprintf(addr, sizeof addr, "10.%u.%u.%u:80", (i >> 16) & 255, (i >> 8) & 255, i & 255);
        snprintf(id, sizeof id, "i-%u", i);
        struct reg_instance_spec spec = {.id = id, .weight = i % 10000, .enabled = true, .ephemeral = i % 3 == 0};
        const char *why;
        if (addr_parse(addr, &spec.addr, &why) < 0)
            _exit(5);
        reg_store_put_instance(st, service, &spec, ack, (void *)(uintptr_t)i);
        if (--until_flush == 0) {
            reg_store_flush(st);
            until_flush = 1 + (uint32_t)(sl_mix64(seed + i) % 8);
        }
    }
}

struct acks {
    uint32_t *inst;
    size_t n, cap;
    int64_t last_ttl;
};

/* Read acks until `stop_after` instance acks, kill the child, read the
 * rest (written before it died), reap it. */
static void run_and_kill(const char *dir, const char *service, uint64_t seed, size_t stop_after, struct acks *a)
{
    int p[2];
    assert_int_equal(pipe(p), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(p[0]);
        ack_fd = p[1];
        writer(dir, service, seed);
    }
    close(p[1]);
    bool killed = false;
    size_t got_here = 0;
    for (;;) {
        struct pollfd pfd = {.fd = p[0], .events = POLLIN};
        int rc = poll(&pfd, 1, 30000);
        if (rc <= 0) {
            kill(pid, SIGKILL);
            waitpid(pid, NULL, 0);
            close(p[0]);
            fail_msg("no ack from the writer in 30 s");
        }
        uint32_t v;
        ssize_t n = read(p[0], &v, sizeof v);
        if (n == 0)
            break; /* the child is gone and every ack it wrote is read */
        assert_int_equal(n, sizeof v);
        if (v & SERVICE_ACK) {
            a->last_ttl = v & ~SERVICE_ACK;
            continue;
        }
        if (a->n == a->cap) {
            a->cap = a->cap ? a->cap * 2 : 1024;
            a->inst = realloc(a->inst, a->cap * sizeof *a->inst);
            assert_non_null(a->inst);
        }
        a->inst[a->n++] = v;
        if (++got_here == stop_after && !killed) {
            kill(pid, SIGKILL);
            killed = true;
        }
    }
    close(p[0]);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGKILL)
        fail_msg("the writer ended by itself (status %d) instead of being killed", status);
}

static void test_acknowledged_writes_survive_kill9(void **state)
{
    struct fixture *f = *state;
    uint64_t seed = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 20);
    printf("kill -9 test seed %llu\n", (unsigned long long)seed);
    struct acks all[3] = {{0}};
    const char *services[3] = {"kill0", "kill1", "kill2"};
    for (int round = 0; round < 3; round++) {
        all[round].last_ttl = -1;
        size_t stop_after = 50 + (size_t)(sl_mix64(seed + (uint64_t)round) % 400);
        run_and_kill(f->dir, services[round], seed + (uint64_t)round * 1000003u, stop_after, &all[round]);
        assert_true(all[round].n >= stop_after);

        /* Every acknowledged write of every round so far is back. */
        struct reg_store *st = open_ok(f->dir);
        struct reg_model *m = load(st, 0);
        for (int k = 0; k <= round; k++) {
            struct reg_service *svc = reg_service_find(m, services[k], strlen(services[k]));
            assert_non_null(svc);
            for (size_t i = 0; i < all[k].n; i++) {
                char id[32];
                snprintf(id, sizeof id, "i-%u", all[k].inst[i]);
                struct reg_instance *inst = reg_instance_find(svc, id);
                if (!inst)
                    fail_msg("round %d: acknowledged %s of %s is missing (seed %llu)", round, id, services[k],
                             (unsigned long long)seed);
                assert_int_equal(inst->weight, all[k].inst[i] % 10000);
                assert_int_equal(inst->ephemeral, all[k].inst[i] % 3 == 0);
            }
            /* The settings are at least the last acknowledged ones. */
            assert_true((int64_t)svc->settings.dns_ttl >= all[k].last_ttl);
        }
        reg_model_free(m);
        reg_store_close(st);
    }
    for (int k = 0; k < 3; k++)
        free(all[k].inst);
}

/* ---- unusable data directories ----------------------------------------- */

static void expect_open_error(const char *dir, const char *want)
{
    char err[512] = "";
    struct reg_store *st = reg_store_sqlite_open(dir, NULL, err, sizeof err);
    if (st) {
        reg_store_close(st);
        fail_msg("%s: opened, expected an error with \"%s\"", dir, want);
    }
    if (getenv("SHOW_ERRORS"))
        printf("    error: %s\n", err);
    if (!strstr(err, want))
        fail_msg("%s: error \"%s\" lacks \"%s\"", dir, err, want);
}

static void write_file(const char *path, const void *data, size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, data, len), (ssize_t)len);
    close(fd);
}

static void db_path(const struct fixture *f, char *buf, size_t cap)
{
    snprintf(buf, cap, "%s/%s", f->dir, REG_SQLITE_FILE);
}

static void test_not_a_directory(void **state)
{
    struct fixture *f = *state;
    char path[128];
    snprintf(path, sizeof path, "%s/file", f->dir);
    write_file(path, "x", 1);
    expect_open_error(path, "not a directory");
    expect_open_error("", "no data directory");
    snprintf(path, sizeof path, "%s/file/sub", f->dir);
    expect_open_error(path, "Not a directory");
    /* A missing directory is created. */
    snprintf(path, sizeof path, "%s/new", f->dir);
    reg_store_close(open_ok(path));
}

static void test_not_a_database(void **state)
{
    struct fixture *f = *state;
    char path[128];
    db_path(f, path, sizeof path);
    char junk[8192];
    for (size_t i = 0; i < sizeof junk; i++)
        junk[i] = (char)(sl_mix64(i) & 0xff);
    write_file(path, junk, sizeof junk);
    expect_open_error(f->dir, "file is not a database");
    unlink(path);
    assert_int_equal(mkdir(path, 0755), 0);
    expect_open_error(f->dir, "not a regular file");
}

static void test_corrupt_database(void **state)
{
    struct fixture *f = *state;
    struct reg_store *st = open_ok(f->dir);
    struct result r = {0};
    char addr[32];
    for (int i = 0; i < 2000; i++) { /* several pages of rows */
        snprintf(addr, sizeof addr, "10.0.%d.%d:80", i / 250, i % 250 + 1);
        struct reg_instance_spec spec = th_spec(addr, "dc1", "eu", 100);
        reg_store_put_instance(st, "web", &spec, on_done, &r);
    }
    reg_store_flush(st);
    reg_store_close(st); /* the last connection: the log is folded into the file */
    char path[128];
    db_path(f, path, sizeof path);
    struct stat sb;
    assert_int_equal(stat(path, &sb), 0);
    assert_true(sb.st_size >= 4 * 4096);
    /* Scribble over the third page, keeping the header intact. */
    int fd = open(path, O_WRONLY);
    char junk[4096];
    memset(junk, 0x5a, sizeof junk);
    assert_int_equal(pwrite(fd, junk, sizeof junk, 2 * 4096), (ssize_t)sizeof junk);
    close(fd);
    expect_open_error(f->dir, "corrupt");
}

static void sql(const char *path, const char *stmt)
{
    sqlite3 *db;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    char *msg = NULL;
    if (sqlite3_exec(db, stmt, NULL, NULL, &msg) != SQLITE_OK)
        fail_msg("%s: %s", stmt, msg);
    sqlite3_close(db);
}

static void test_foreign_and_newer_databases(void **state)
{
    struct fixture *f = *state;
    char path[128];
    db_path(f, path, sizeof path);
    sql(path, "CREATE TABLE notes (t TEXT)");
    expect_open_error(f->dir, "not a Sluice registry database");
    unlink(path);
    sql(path, "PRAGMA application_id = 7; CREATE TABLE x (y)");
    expect_open_error(f->dir, "not a Sluice registry database (application_id 7)");
    unlink(path);
    reg_store_close(open_ok(f->dir));
    sql(path, "PRAGMA user_version = 99");
    expect_open_error(f->dir, "written by a newer Sluice (schema version 99; this one reads up to 1)");
    sql(path, "PRAGMA user_version = 1; DROP TABLE instances");
    expect_open_error(f->dir, "the schema is damaged: no such table: instances");
}

static void test_in_use(void **state)
{
    struct fixture *f = *state;
    struct reg_store *st = open_ok(f->dir);
    char want[64];
    snprintf(want, sizeof want, "in use by another process (pid %ld)", (long)getpid());
    expect_open_error(f->dir, want);
    reg_store_close(st);
    reg_store_close(open_ok(f->dir)); /* free again once closed */
}

static void test_unwritable_directory(void **state)
{
    struct fixture *f = *state;
    if (geteuid() == 0)
        skip(); /* root writes anyway; the check is for everyone else */
    assert_int_equal(chmod(f->dir, 0500), 0);
    expect_open_error(f->dir, "not readable and writable");
    chmod(f->dir, 0700);
}

static void test_bad_row_names_the_record(void **state)
{
    struct fixture *f = *state;
    reg_store_close(open_ok(f->dir));
    char path[128];
    db_path(f, path, sizeof path);
    sql(path, "INSERT INTO instances VALUES ('web', 'w1', '10.0.0.1:80', 20000, '', '', '[]', 1, 0, '', 0, '')");
    struct reg_store *st = open_ok(f->dir);
    struct reg_model *m = th_model(NULL);
    char err[512] = "";
    assert_int_equal(reg_store_load(st, m, 0, err, sizeof err), -1);
    assert_non_null(strstr(err, "instance w1 of service web: a stored field is out of range"));
    reg_model_free(m);
    reg_store_close(st);
    sql(path, "UPDATE instances SET weight = 1, labels = '{\"a\": 1}'");
    st = open_ok(f->dir);
    m = th_model(NULL);
    assert_int_equal(reg_store_load(st, m, 0, err, sizeof err), -1);
    assert_non_null(strstr(err, "labels are not a list"));
    reg_model_free(m);
    reg_store_close(st);
    sql(path, "UPDATE instances SET labels = '[]', address = 'nowhere'");
    st = open_ok(f->dir);
    m = th_model(NULL);
    assert_int_equal(reg_store_load(st, m, 0, err, sizeof err), -1);
    assert_non_null(strstr(err, "instance w1 of service web: address"));
    reg_model_free(m);
    reg_store_close(st);
    sql(path, "UPDATE instances SET address = '10.0.0.1:80', datacenter = 'no good'");
    st = open_ok(f->dir);
    m = th_model(NULL);
    assert_int_equal(reg_store_load(st, m, 0, err, sizeof err), -1);
    assert_non_null(strstr(err, "instance w1 of service web: datacenter"));
    reg_model_free(m);
    reg_store_close(st);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_write_close_reopen, setup, teardown),
        cmocka_unit_test_setup_teardown(test_group_commit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_acknowledged_writes_survive_kill9, setup, teardown),
        cmocka_unit_test_setup_teardown(test_not_a_directory, setup, teardown),
        cmocka_unit_test_setup_teardown(test_not_a_database, setup, teardown),
        cmocka_unit_test_setup_teardown(test_corrupt_database, setup, teardown),
        cmocka_unit_test_setup_teardown(test_foreign_and_newer_databases, setup, teardown),
        cmocka_unit_test_setup_teardown(test_in_use, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unwritable_directory, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_row_names_the_record, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
