/* Unit tests for cluster mode (src/registry/reg_store_etcd.c,
 * reg_cluster.c, and the model's remote instances): three registry nodes
 * (each a model fed by its own etcd store) over a real 3-member etcd
 * cluster started by the test. Nodes 1 and 2 live in this process on one
 * event loop; node 3 is a child process, so that it can die for real
 * (SIGKILL: its lease is not given back and expires).
 *
 * What they check: a write on one node is read back on the writer at its
 * completion and reaches the others; deletes too; duty over persistent
 * instances is one node each, agreed by all, and only the dead node's
 * share moves when it dies; a dead node's ephemeral instances are held
 * (still answered) for the grace, ended by a registration elsewhere, and
 * removed at the grace's end otherwise; one etcd member killed changes
 * nothing; all of etcd killed makes nodes stale (reads answer, writes are
 * refused with a reason) and a restart makes them fresh, the watch
 * resuming. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "registry/reg_cluster.h"
#include "registry/reg_select.h"

#include "etcd_cluster.h"
#include "reg_helpers.h"

#define LEASE_TTL_MS 2000
#define GRACE_MS 4000

/* ---- without etcd ------------------------------------------------------------------ */

/* In a cluster, another node's ephemeral instance is never marked down or
 * expired here, nor counted by self-preservation; this node's are. */
static void test_remote_instances_not_expired(void **state)
{
    struct reg_model_conf conf;
    reg_model_conf_defaults(&conf);
    conf.self_preservation = 0;
    struct reg_model *m = th_model(&conf);
    reg_model_set_node(m, "n1");
    struct reg_service *svc = th_service(m, "web", NULL);
    struct reg_instance_spec a = th_spec("10.0.0.1:80", "dc1", "r1", 100);
    a.ephemeral = true;
    a.owner = "n2";
    struct reg_instance_spec b = th_spec("10.0.0.2:80", "dc1", "r1", 100);
    b.ephemeral = true;
    b.owner = "n1";
    struct reg_instance *ra = th_put_spec(m, svc, &a, 1000);
    th_put_spec(m, svc, &b, 1000);
    assert_true(ra->remote);
    uint64_t later = 1000 + svc->settings.expire_after_ms + 1000;
    reg_model_tick(m, later, NULL);
    assert_non_null(reg_instance_find(svc, "10.0.0.1:80"));
    assert_null(reg_instance_find(svc, "10.0.0.2:80"));
    assert_int_equal(reg_instance_find(svc, "10.0.0.1:80")->health, REG_HEALTH_UP);
    /* The owner changes: now it is ours, and judged. */
    reg_model_set_node(m, "n2");
    assert_false(ra->remote);
    reg_model_free(m);
}

static void test_service_json(void **state)
{
    struct reg_service_settings s, back;
    reg_service_settings_defaults(&s);
    s.protect_threshold = 0.5;
    s.answer_count = 3;
    s.health.type = HEALTH_HTTP;
    s.health.rise = 4;
    free(s.health.http_path);
    s.health.http_path = strdup("/health");
    char *text = reg_cluster_service_json(&s);
    char err[200];
    assert_int_equal(reg_cluster_service_parse(text, strlen(text), &back, err, sizeof err), 0);
    assert_true(back.protect_threshold == 0.5);
    assert_int_equal(back.answer_count, 3);
    assert_int_equal(back.health.type, HEALTH_HTTP);
    assert_int_equal(back.health.rise, 4);
    assert_string_equal(back.health.http_path, "/health");
    reg_service_settings_free(&back);
    free(text);
    assert_int_equal(reg_cluster_service_parse("{\"answer_count\": 0}", 19, &back, err, sizeof err), -1);
    assert_non_null(strstr(err, "answer_count"));
    assert_int_equal(reg_cluster_service_parse("[1]", 3, &back, err, sizeof err), -1);
    reg_service_settings_free(&s);
}

static void test_conf_check(void **state)
{
    struct reg_etcd_store_conf c;
    reg_etcd_store_conf_defaults(&c);
    char err[256];
    assert_int_equal(reg_etcd_store_conf_check(&c, err, sizeof err), -1);
    assert_non_null(strstr(err, "endpoints"));
    snprintf(c.etcd.endpoints[0], sizeof c.etcd.endpoints[0], "127.0.0.1:2379");
    c.etcd.n_endpoints = 1;
    assert_int_equal(reg_etcd_store_conf_check(&c, err, sizeof err), -1);
    assert_non_null(strstr(err, "http://HOST:PORT"));
    snprintf(c.etcd.endpoints[0], sizeof c.etcd.endpoints[0], "http://127.0.0.1:2379");
    assert_int_equal(reg_etcd_store_conf_check(&c, err, sizeof err), -1);
    assert_non_null(strstr(err, "node"));
    snprintf(c.node, sizeof c.node, "n1");
    c.lease_ttl_ms = 1500;
    assert_int_equal(reg_etcd_store_conf_check(&c, err, sizeof err), -1);
    assert_non_null(strstr(err, "lease_ttl"));
    c.lease_ttl_ms = 10000;
    snprintf(c.prefix, sizeof c.prefix, "sluice");
    assert_int_equal(reg_etcd_store_conf_check(&c, err, sizeof err), -1);
    assert_non_null(strstr(err, "prefix"));
}

/* ---- nodes over etcd ---------------------------------------------------------------- */

struct node {
    char name[16];
    struct reg_model *m;
    struct reg_store *st;
    int members_changed, state_changes;
};

struct fx {
    struct etcd_cluster ec;
    struct ev_loop *loop;
    struct node n[2];          /* n1, n2 in this process */
    pid_t child;               /* n3 */
    char prefix[64];
};

static void conf_for(struct fx *f, struct reg_etcd_store_conf *c, const char *node)
{
    reg_etcd_store_conf_defaults(c);
    for (int i = 0; i < EC_MEMBERS; i++)
        snprintf(c->etcd.endpoints[i], sizeof c->etcd.endpoints[i], "%s", f->ec.endpoint[i]);
    c->etcd.n_endpoints = EC_MEMBERS;
    c->etcd.request_timeout_ms = 3000;
    snprintf(c->prefix, sizeof c->prefix, "%s", f->prefix);
    snprintf(c->node, sizeof c->node, "%s", node);
    c->lease_ttl_ms = LEASE_TTL_MS;
    c->reregister_grace_ms = GRACE_MS;
}

static void on_members(void *arg)
{
    ((struct node *)arg)->members_changed++;
}

static void on_state(void *arg, bool stale, const char *reason)
{
    ((struct node *)arg)->state_changes++;
}

static void node_open(struct fx *f, struct node *n, struct ev_loop *loop, const char *name)
{
    snprintf(n->name, sizeof n->name, "%s", name);
    n->m = th_model(NULL);
    struct reg_etcd_store_conf c;
    conf_for(f, &c, name);
    char err[256];
    n->st = reg_store_etcd_open(loop, &c, err, sizeof err);
    if (!n->st)
        fail_msg("open: %s", err);
    struct reg_cluster_hooks h = {.members_changed = on_members, .state_changed = on_state, .arg = n};
    assert_int_equal(reg_cluster_attach(n->st, n->m, &h, err, sizeof err), 0);
}

static void node_close(struct node *n)
{
    reg_store_close(n->st);
    reg_model_free(n->m);
    n->st = NULL;
    n->m = NULL;
}

static bool fresh_with_lease(void *arg)
{
    struct node *n = arg;
    struct reg_cluster_stats cs;
    reg_cluster_stats(n->st, &cs);
    return !cs.stale && cs.has_lease;
}

/* A completion recorded. */
struct res {
    int calls;
    bool ok;
    char reason[256];
};

static void on_done(void *arg, bool ok, const char *reason)
{
    struct res *r = arg;
    r->calls++;
    r->ok = ok;
    snprintf(r->reason, sizeof r->reason, "%s", reason ? reason : "");
}

static bool res_done(void *arg)
{
    return ((struct res *)arg)->calls > 0;
}

static void wait_done(struct fx *f, struct res *r)
{
    assert_int_equal(r->calls, 0); /* never called back from inside the write */
    assert_true(ec_run_until(f->loop, res_done, r, 10000));
    assert_int_equal(r->calls, 1);
}

static struct res put_instance(struct fx *f, struct node *n, const char *svc, const char *addr, bool ephemeral)
{
    struct reg_instance_spec spec = th_spec(addr, "dc1", "r1", 100);
    spec.ephemeral = ephemeral;
    struct res r = {0};
    reg_store_put_instance(n->st, svc, &spec, on_done, &r);
    wait_done(f, &r);
    return r;
}

struct find {
    struct node *n;
    const char *svc, *id;
    bool want;
};

static bool found_is(void *arg)
{
    struct find *x = arg;
    struct reg_service *svc = reg_service_find(x->n->m, x->svc, strlen(x->svc));
    return (svc && reg_instance_find(svc, x->id)) == x->want;
}

static bool has(struct node *n, const char *svc_name, const char *id)
{
    struct reg_service *svc = reg_service_find(n->m, svc_name, strlen(svc_name));
    return svc && reg_instance_find(svc, id);
}

static void wait_found(struct fx *f, struct node *n, const char *svc, const char *id, bool want, unsigned ms)
{
    struct find x = {n, svc, id, want};
    if (!ec_run_until(f->loop, found_is, &x, ms))
        fail_msg("%s: %s/%s is %s", n->name, svc, id, want ? "missing" : "still there");
}

/* Node 3, in a child process: open, attach, register `count` ephemeral
 * instances of "eph" and persistent ones of "web", then run until killed. */
static void child_node(struct fx *f, int count)
{
    struct ev_loop *loop = ev_loop_new();
    struct node n;
    node_open(f, &n, loop, "n3");
    ec_run_until(loop, fresh_with_lease, &n, 15000);
    for (int i = 0; i < count; i++) {
        char a[32];
        snprintf(a, sizeof a, "10.3.0.%d:80", i + 1);
        struct reg_instance_spec spec = th_spec(a, "dc1", "r1", 100);
        spec.ephemeral = true;
        reg_store_put_instance(n.st, "eph", &spec, NULL, NULL);
    }
    ev_run(loop);
    _exit(0);
}

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof *f);
    if (ec_start(&f->ec) < 0) {
        free(f);
        return -1;
    }
    snprintf(f->prefix, sizeof f->prefix, "/sluice-test/%d/", getpid());
    f->loop = ev_loop_new();
    node_open(f, &f->n[0], f->loop, "n1");
    node_open(f, &f->n[1], f->loop, "n2");
    for (int i = 0; i < 2; i++)
        if (!ec_run_until(f->loop, fresh_with_lease, &f->n[i], 15000))
            return -1;
    *state = f;
    return 0;
}

static void kill_child(struct fx *f)
{
    if (f->child > 0) {
        kill(f->child, SIGKILL);
        waitpid(f->child, NULL, 0);
        f->child = 0;
    }
}

static int teardown(void **state)
{
    struct fx *f = *state;
    kill_child(f);
    for (int i = 0; i < 2; i++)
        node_close(&f->n[i]);
    ev_loop_free(f->loop);
    ec_stop(&f->ec);
    free(f);
    return 0;
}

/* A write on node 1 is in node 1's model at its completion and reaches
 * node 2; ephemeral instances are owned by the writer (remote elsewhere);
 * a delete on node 2 removes it everywhere; a service delete takes its
 * instances. */
static void test_write_everywhere(void **state)
{
    struct fx *f = *state;
    struct node *n1 = &f->n[0], *n2 = &f->n[1];
    struct reg_service_settings s;
    reg_service_settings_defaults(&s);
    s.answer_count = 3;
    struct res r = {0};
    reg_store_put_service(n1->st, "web", &s, on_done, &r);
    wait_done(f, &r);
    reg_service_settings_free(&s);
    assert_true(r.ok);
    struct reg_service *svc = reg_service_find(n1->m, "web", 3);
    assert_non_null(svc);
    assert_int_equal(svc->settings.answer_count, 3);

    r = put_instance(f, n1, "web", "10.0.0.1:80", false);
    assert_true(r.ok);
    assert_true(has(n1, "web", "10.0.0.1:80")); /* read-your-writes */
    r = put_instance(f, n1, "web", "10.0.0.2:80", true);
    assert_true(r.ok);
    struct reg_instance *mine = reg_instance_find(reg_service_find(n1->m, "web", 3), "10.0.0.2:80");
    assert_non_null(mine);
    assert_string_equal(mine->owner, "n1");
    assert_false(mine->remote);
    wait_found(f, n2, "web", "10.0.0.2:80", true, 5000);
    struct reg_instance *theirs = reg_instance_find(reg_service_find(n2->m, "web", 3), "10.0.0.2:80");
    assert_true(theirs->remote);
    assert_string_equal(theirs->owner, "n1");
    assert_int_equal(reg_service_find(n2->m, "web", 3)->settings.answer_count, 3);

    r = (struct res){0};
    reg_store_delete_instance(n2->st, "web", "10.0.0.1:80", on_done, &r);
    wait_done(f, &r);
    assert_true(r.ok);
    assert_false(has(n2, "web", "10.0.0.1:80"));
    wait_found(f, n1, "web", "10.0.0.1:80", false, 5000);

    /* A health change written by its owner reaches the other node. */
    struct reg_instance_spec spec;
    reg_instance_spec_of(mine, &spec);
    spec.down = true;
    spec.health_reason = "no heartbeat for 15.0s";
    r = (struct res){0};
    reg_store_put_instance(n1->st, "web", &spec, on_done, &r);
    wait_done(f, &r);
    theirs = reg_instance_find(reg_service_find(n2->m, "web", 3), "10.0.0.2:80");
    for (int i = 0; i < 100 && theirs->health != REG_HEALTH_DOWN; i++)
        ec_run_until(f->loop, res_done, &(struct res){0}, 20);
    assert_int_equal(theirs->health, REG_HEALTH_DOWN);
    assert_string_equal(theirs->health_reason, "no heartbeat for 15.0s");

    r = (struct res){0};
    reg_store_delete_service(n2->st, "web", on_done, &r);
    wait_done(f, &r);
    assert_true(r.ok);
    assert_null(reg_service_find(n2->m, "web", 3));
    struct find gone = {n1, "web", "10.0.0.2:80", false};
    assert_true(ec_run_until(f->loop, found_is, &gone, 5000));
    assert_null(reg_service_find(n1->m, "web", 3));

    /* scan (a blocking range) sees what etcd holds */
    r = put_instance(f, n1, "api", "10.0.1.1:80", false);
    struct reg_model *fresh = th_model(NULL);
    char err[256];
    assert_int_equal(reg_store_load(n2->st, fresh, 0, err, sizeof err), 0);
    assert_non_null(reg_service_find(fresh, "api", 3));
    assert_non_null(reg_instance_find(reg_service_find(fresh, "api", 3), "10.0.1.1:80"));
    reg_model_free(fresh);
}

static bool members_are(void *arg)
{
    struct { struct fx *f; size_t n; } *x = arg;
    return reg_cluster_member_count(x->f->n[0].st) == x->n && reg_cluster_member_count(x->f->n[1].st) == x->n;
}

/* Duty: one node each, agreed; node 3 dies: only its share moves, and its
 * ephemeral instances are held, one reclaimed by a registration on node
 * 2, the other removed at the grace's end. */
static void test_node_death(void **state)
{
    struct fx *f = *state;
    struct node *n1 = &f->n[0], *n2 = &f->n[1];
    f->child = fork();
    assert_true(f->child >= 0);
    if (f->child == 0)
        child_node(f, 2);
    struct { struct fx *f; size_t n; } three = {f, 3}, two = {f, 2};
    assert_true(ec_run_until(f->loop, members_are, &three, 15000));
    wait_found(f, n1, "eph", "10.3.0.1:80", true, 10000);
    wait_found(f, n1, "eph", "10.3.0.2:80", true, 10000);
    wait_found(f, n2, "eph", "10.3.0.2:80", true, 10000);

    enum { N = 60 };
    char before[N][16];
    int per_node[3] = {0};
    for (int i = 0; i < N; i++) {
        char id[32];
        snprintf(id, sizeof id, "10.9.0.%d:80", i);
        const char *a = reg_cluster_duty_of(n1->st, "web", id), *b = reg_cluster_duty_of(n2->st, "web", id);
        assert_string_equal(a, b);
        assert_true(reg_cluster_has_duty(n1->st, "web", id) != reg_cluster_has_duty(n2->st, "web", id) ||
                    strcmp(a, "n3") == 0);
        snprintf(before[i], sizeof before[i], "%s", a);
        per_node[a[1] - '1']++;
    }
    for (int i = 0; i < 3; i++)
        assert_true(per_node[i] > 0); /* each node has a share */

    int changes_before = n1->members_changed;
    kill_child(f); /* its lease expires after the TTL */
    assert_true(ec_run_until(f->loop, members_are, &two, LEASE_TTL_MS + 8000));
    assert_true(n1->members_changed > changes_before);
    for (int i = 0; i < N; i++) {
        char id[32];
        snprintf(id, sizeof id, "10.9.0.%d:80", i);
        const char *now = reg_cluster_duty_of(n1->st, "web", id);
        if (strcmp(before[i], "n3") != 0)
            assert_string_equal(now, before[i]); /* only the dead node's share moved */
        else
            assert_true(strcmp(now, "n1") == 0 || strcmp(now, "n2") == 0);
    }

    /* Held, still answered (UP) on both nodes. */
    for (int i = 0; i < 2; i++) {
        assert_true(has(&f->n[i], "eph", "10.3.0.1:80"));
        assert_true(reg_cluster_held(f->n[i].st, "eph", "10.3.0.1:80"));
        struct reg_instance *inst = reg_instance_find(reg_service_find(f->n[i].m, "eph", 3), "10.3.0.1:80");
        assert_int_equal(inst->health, REG_HEALTH_UP);
    }
    struct reg_rand rnd;
    reg_rand_seed(&rnd, 1);
    const struct reg_instance *picked[4];
    int got = reg_answer_pick(n1->m, reg_service_find(n1->m, "eph", 3), (struct reg_loc){0}, REG_FAMILY_ANY, &rnd,
                              picked, 4, NULL);
    assert_int_equal(got, 2); /* both held instances are still answered */

    /* The client of 10.3.0.1 registers again on node 2: the hold ends. */
    struct res r = put_instance(f, n2, "eph", "10.3.0.1:80", true);
    assert_true(r.ok);
    assert_false(reg_cluster_held(n2->st, "eph", "10.3.0.1:80"));
    struct reg_instance *moved = reg_instance_find(reg_service_find(n2->m, "eph", 3), "10.3.0.1:80");
    assert_string_equal(moved->owner, "n2");
    /* 10.3.0.2 never comes back: removed at the grace's end. */
    wait_found(f, n1, "eph", "10.3.0.2:80", false, GRACE_MS + 3000);
    wait_found(f, n2, "eph", "10.3.0.2:80", false, 3000);
    assert_true(has(n1, "eph", "10.3.0.1:80"));
    struct reg_cluster_stats cs;
    reg_cluster_stats(n1->st, &cs);
    assert_int_equal(cs.held, 2);
    assert_int_equal(cs.held_reclaimed, 1);
    assert_int_equal(cs.held_expired, 1);
}

static bool both_stale(void *arg)
{
    struct fx *f = arg;
    return reg_cluster_stale(f->n[0].st, NULL, 0) && reg_cluster_stale(f->n[1].st, NULL, 0);
}

static bool both_fresh(void *arg)
{
    struct fx *f = arg;
    return !reg_cluster_stale(f->n[0].st, NULL, 0) && !reg_cluster_stale(f->n[1].st, NULL, 0);
}

/* One etcd member down: nothing changes for the nodes. All down: stale,
 * reads answer, writes refused with the reason. Back: fresh, the watch
 * resumes, writes work and reach the other node. */
static void test_etcd_outage(void **state)
{
    struct fx *f = *state;
    struct node *n1 = &f->n[0], *n2 = &f->n[1];
    struct res r = put_instance(f, n1, "db", "10.5.0.1:5432", false);
    assert_true(r.ok);
    wait_found(f, n2, "db", "10.5.0.1:5432", true, 5000);

    ec_kill_member(&f->ec, 0);
    r = put_instance(f, n2, "db", "10.5.0.2:5432", false);
    if (!r.ok)
        fail_msg("a write with one etcd member down: %s", r.reason);
    wait_found(f, n1, "db", "10.5.0.2:5432", true, 8000);
    assert_true(ec_run_until(f->loop, both_fresh, f, 8000));

    ec_kill_member(&f->ec, 1);
    ec_kill_member(&f->ec, 2);
    assert_true(ec_run_until(f->loop, both_stale, f, 15000));
    char why[256];
    assert_true(reg_cluster_stale(n1->st, why, sizeof why));
    assert_true(why[0] != '\0');
    /* reads answer from the last copy */
    assert_true(has(n1, "db", "10.5.0.1:5432"));
    assert_true(has(n2, "db", "10.5.0.2:5432"));
    r = put_instance(f, n1, "db", "10.5.0.3:5432", false);
    assert_false(r.ok);
    assert_non_null(strstr(r.reason, "etcd unreachable"));
    struct reg_store_stats ss;
    reg_store_stats(n1->st, &ss);
    assert_false(ss.healthy);

    for (int i = 0; i < EC_MEMBERS; i++)
        assert_int_equal(ec_restart_member(&f->ec, i), 0);
    for (int i = 0; i < EC_MEMBERS; i++)
        assert_int_equal(ec_wait_ready(&f->ec, i, 20000), 0);
    assert_true(ec_run_until(f->loop, both_fresh, f, 15000));
    r = put_instance(f, n1, "db", "10.5.0.3:5432", false);
    if (!r.ok)
        fail_msg("a write after the restart: %s", r.reason);
    wait_found(f, n2, "db", "10.5.0.3:5432", true, 8000);
    assert_true(fresh_with_lease(n1));
}

/* This node's lease is lost (revoked behind its back, as when it was cut
 * off for longer than the TTL): the other node holds its instance; it
 * takes a new lease and puts its member key and its ephemeral instance
 * again, which ends the hold. The instance never leaves node 2's model. */
struct lease_watch {
    struct fx *f;
    bool always_there;
    bool saw_hold;
};

static bool lease_recovered(void *arg)
{
    struct lease_watch *x = arg;
    struct node *n1 = &x->f->n[0], *n2 = &x->f->n[1];
    if (!has(n2, "eph", "10.1.0.1:80"))
        x->always_there = false;
    if (reg_cluster_held(n2->st, "eph", "10.1.0.1:80"))
        x->saw_hold = true;
    struct reg_cluster_stats c1, c2;
    reg_cluster_stats(n1->st, &c1);
    reg_cluster_stats(n2->st, &c2);
    return c1.lease_losses == 1 && c1.has_lease && c2.members == 2 && c2.holding == 0 && x->saw_hold;
}

static void test_lease_lost(void **state)
{
    struct fx *f = *state;
    struct node *n1 = &f->n[0], *n2 = &f->n[1];
    struct res r = put_instance(f, n1, "eph", "10.1.0.1:80", true);
    assert_true(r.ok);
    wait_found(f, n2, "eph", "10.1.0.1:80", true, 5000);
    struct { struct fx *f; size_t n; } two = {f, 2};
    assert_true(ec_run_until(f->loop, members_are, &two, 5000));

    struct reg_cluster_stats cs;
    reg_cluster_stats(n1->st, &cs);
    int64_t old_lease = cs.lease_id;
    char cmd[300];
    snprintf(cmd, sizeof cmd, "curl -sf -XPOST %s/v3/lease/revoke -d '{\"ID\":\"%lld\"}' >/dev/null",
             f->ec.endpoint[0], (long long)old_lease);
    assert_int_equal(system(cmd), 0);
    struct lease_watch x = {.f = f, .always_there = true};
    assert_true(ec_run_until(f->loop, lease_recovered, &x, 10000));
    assert_true(x.always_there);
    reg_cluster_stats(n1->st, &cs);
    assert_true(cs.lease_id != old_lease);
    struct reg_instance *inst = reg_instance_find(reg_service_find(n2->m, "eph", 3), "10.1.0.1:80");
    assert_string_equal(inst->owner, "n1");
    reg_cluster_stats(n2->st, &cs);
    assert_int_equal(cs.held_reclaimed, 1);
}

struct health_is {
    struct node *n;
    const char *id;
    enum reg_health want;
    const char *owner;
};

static bool instance_health_is(void *arg)
{
    struct health_is *x = arg;
    struct reg_service *svc = reg_service_find(x->n->m, "hb", 2);
    struct reg_instance *inst = svc ? reg_instance_find(svc, x->id) : NULL;
    return inst && inst->health == x->want && (!x->owner || strcmp(inst->owner, x->owner) == 0);
}

/* The owner of an ephemeral instance judges its health: its own DOWN
 * write, echoed by the watch, must not turn a heartbeat-revivable DOWN
 * into a sticky one; the other node follows what it wrote; a client that
 * registers again through the other node moves the instance there, UP
 * (a registration is a sign of life), whatever health it carried. */
static void test_owner_judges_health(void **state)
{
    struct fx *f = *state;
    struct node *n1 = &f->n[0], *n2 = &f->n[1];
    struct reg_service_settings st;
    reg_service_settings_defaults(&st);
    st.heartbeat_interval_ms = 100;
    st.heartbeat_timeout_ms = 300;
    st.expire_after_ms = 600000;
    struct res r = {0};
    reg_store_put_service(n1->st, "hb", &st, on_done, &r);
    wait_done(f, &r);
    reg_service_settings_free(&st);
    assert_true(put_instance(f, n1, "hb", "10.2.0.1:80", true).ok);
    wait_found(f, n2, "hb", "10.2.0.1:80", true, 5000);

    /* Silence on node 1: DOWN there, written (as the daemon does). */
    struct reg_instance *inst = reg_instance_find(reg_service_find(n1->m, "hb", 2), "10.2.0.1:80");
    uint64_t later = ev_now(f->loop) + 1000;
    reg_model_tick(n1->m, later, NULL);
    assert_int_equal(inst->health, REG_HEALTH_DOWN);
    struct reg_instance_spec spec;
    reg_instance_spec_of(inst, &spec);
    r = (struct res){0};
    reg_store_put_instance(n1->st, "hb", &spec, on_done, &r);
    wait_done(f, &r);
    assert_true(r.ok);
    struct health_is down2 = {n2, "10.2.0.1:80", REG_HEALTH_DOWN, NULL};
    assert_true(ec_run_until(f->loop, instance_health_is, &down2, 5000));
    /* The echo left node 1's judgement alone: a heartbeat brings it back. */
    assert_true(reg_instance_heartbeat(n1->m, inst, later + 10));
    assert_int_equal(inst->health, REG_HEALTH_UP);

    /* The client moves to node 2 and registers there, carrying DOWN. */
    struct reg_instance *theirs = reg_instance_find(reg_service_find(n2->m, "hb", 2), "10.2.0.1:80");
    reg_instance_spec_of(theirs, &spec);
    assert_true(spec.down);
    r = (struct res){0};
    reg_store_put_instance(n2->st, "hb", &spec, on_done, &r);
    wait_done(f, &r);
    assert_true(r.ok);
    theirs = reg_instance_find(reg_service_find(n2->m, "hb", 2), "10.2.0.1:80");
    assert_string_equal(theirs->owner, "n2");
    assert_false(theirs->remote);
    assert_int_equal(theirs->health, REG_HEALTH_UP);
    struct health_is moved = {n1, "10.2.0.1:80", REG_HEALTH_UP, "n2"};
    assert_true(ec_run_until(f->loop, instance_health_is, &moved, 5000));
    assert_true(reg_instance_find(reg_service_find(n1->m, "hb", 2), "10.2.0.1:80")->remote);
}

struct reload_done {
    struct node *n;
};

static bool reloaded(void *arg)
{
    struct node *n = ((struct reload_done *)arg)->n;
    struct reg_cluster_stats cs;
    reg_cluster_stats(n->st, &cs);
    return cs.loads >= 2 && !cs.stale && has(n, "web2", "10.8.0.3:80") && !has(n, "web2", "10.8.0.2:80");
}

static bool is_stale(void *arg)
{
    return reg_cluster_stale(((struct node *)arg)->st, NULL, 0);
}

/* A node whose watch falls behind a compaction (its only etcd member was
 * down meanwhile) loads again and reconciles: what was deleted goes,
 * what was added comes, what stayed stays. */
static void test_compaction_reload(void **state)
{
    struct fx *f = *state;
    struct node *n1 = &f->n[0], n9;
    snprintf(n9.name, sizeof n9.name, "n9");
    n9.m = th_model(NULL);
    struct reg_etcd_store_conf c;
    conf_for(f, &c, "n9");
    snprintf(c.etcd.endpoints[0], sizeof c.etcd.endpoints[0], "%s", f->ec.endpoint[2]);
    c.etcd.n_endpoints = 1;
    char err[256];
    n9.st = reg_store_etcd_open(f->loop, &c, err, sizeof err);
    assert_non_null(n9.st);
    assert_int_equal(reg_cluster_attach(n9.st, n9.m, NULL, err, sizeof err), 0);
    assert_true(ec_run_until(f->loop, fresh_with_lease, &n9, 15000));

    assert_true(put_instance(f, n1, "web2", "10.8.0.1:80", false).ok);
    assert_true(put_instance(f, n1, "web2", "10.8.0.2:80", false).ok);
    wait_found(f, &n9, "web2", "10.8.0.2:80", true, 5000);

    ec_kill_member(&f->ec, 2);
    assert_true(ec_run_until(f->loop, is_stale, &n9, 10000));
    struct res r = {0};
    reg_store_delete_instance(n1->st, "web2", "10.8.0.2:80", on_done, &r);
    wait_done(f, &r);
    assert_true(r.ok);
    r = put_instance(f, n1, "web2", "10.8.0.3:80", false);
    assert_true(r.ok);
    /* Compact etcd up to now, so the revision n9 must resume from is gone. */
    char cmd[400];
    snprintf(cmd, sizeof cmd,
             "rev=$(curl -sf -XPOST %s/v3/kv/range -d '{\"key\":\"AA==\"}' | sed 's/.*\"revision\":\"\\([0-9]*\\)\".*/\\1/')"
             " && curl -sf -XPOST %s/v3/kv/compaction -d \"{\\\"revision\\\":\\\"$rev\\\"}\" >/dev/null",
             f->ec.endpoint[0], f->ec.endpoint[0]);
    assert_int_equal(system(cmd), 0);
    assert_true(has(&n9, "web2", "10.8.0.2:80")); /* the stale copy still answers */

    assert_int_equal(ec_restart_member(&f->ec, 2), 0);
    assert_int_equal(ec_wait_ready(&f->ec, 2, 20000), 0);
    struct reload_done x = {&n9};
    assert_true(ec_run_until(f->loop, reloaded, &x, 15000));
    assert_true(has(&n9, "web2", "10.8.0.1:80"));
    node_close(&n9);
}

int main(void)
{
    const struct CMUnitTest pure[] = {
        cmocka_unit_test(test_remote_instances_not_expired),
        cmocka_unit_test(test_service_json),
        cmocka_unit_test(test_conf_check),
    };
    const struct CMUnitTest live[] = {
        cmocka_unit_test_setup_teardown(test_write_everywhere, setup, teardown),
        cmocka_unit_test_setup_teardown(test_node_death, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lease_lost, setup, teardown),
        cmocka_unit_test_setup_teardown(test_owner_judges_health, setup, teardown),
        cmocka_unit_test_setup_teardown(test_compaction_reload, setup, teardown),
        cmocka_unit_test_setup_teardown(test_etcd_outage, setup, teardown),
    };
    int failed = cmocka_run_group_tests_name("reg_cluster_pure", pure, NULL, NULL);
    return failed + cmocka_run_group_tests_name("reg_cluster_live", live, NULL, NULL);
}
