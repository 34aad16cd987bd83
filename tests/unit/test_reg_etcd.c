/* Unit tests for the registry's etcd client (src/registry/reg_etcd*.c):
 * base64 and stream framing by themselves, then against a real 3-member
 * etcd cluster started for the test (tests/unit/etcd_cluster.h): put,
 * range, delete, txn, leases and their expiry, a watch with prev_kv, the
 * watched member killed mid-stream (failover, no event lost or repeated),
 * every member killed (clear reasons) and restarted (the watch resumes
 * from its revision). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "registry/reg_etcd.h"

#include "etcd_cluster.h"

/* ---- pure parts ------------------------------------------------------------- */

static void test_base64(void **state)
{
    const char *cases[][2] = {{"", ""}, {"f", "Zg=="}, {"fo", "Zm8="}, {"foo", "Zm9v"}, {"foob", "Zm9vYg=="},
                              {"/sluice/registry/", "L3NsdWljZS9yZWdpc3RyeS8="}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char enc[64];
        unsigned char dec[64];
        reg_etcd_b64_encode(cases[i][0], strlen(cases[i][0]), enc);
        assert_string_equal(enc, cases[i][1]);
        long n = reg_etcd_b64_decode(enc, strlen(enc), dec);
        assert_int_equal(n, (long)strlen(cases[i][0]));
        assert_memory_equal(dec, cases[i][0], (size_t)n);
    }
    unsigned char out[16];
    assert_int_equal(reg_etcd_b64_decode("Zg=", 3, out), -1);   /* not a multiple of 4 */
    assert_int_equal(reg_etcd_b64_decode("Zh==", 4, out), -1);  /* bits in the padding */
    assert_int_equal(reg_etcd_b64_decode("Z===", 4, out), -1);
    assert_int_equal(reg_etcd_b64_decode("Zg==Zg==", 8, out), -1); /* padding inside */
    assert_int_equal(reg_etcd_b64_decode("Zm9*", 4, out), -1);
}

static void test_prefix_end(void **state)
{
    char out[8];
    assert_int_equal(reg_etcd_prefix_end("/a/", 3, out), 3);
    assert_memory_equal(out, "/a0", 3);
    assert_int_equal(reg_etcd_prefix_end("a\xff", 2, out), 1);
    assert_memory_equal(out, "b", 1);
    assert_int_equal(reg_etcd_prefix_end("\xff\xff", 2, out), 1);
    assert_int_equal(out[0], 0);
}

static void test_framer(void **state)
{
    struct reg_etcd_framer f;
    reg_etcd_framer_init(&f);
    char err[128];
    const char *msg;
    size_t len;
    assert_int_equal(reg_etcd_framer_feed(&f, "{\"a\":1}\n{\"b\"", 12, err, sizeof err), 0);
    assert_true(reg_etcd_framer_next(&f, &msg, &len));
    assert_int_equal(len, 7);
    assert_memory_equal(msg, "{\"a\":1}", 7);
    assert_false(reg_etcd_framer_next(&f, &msg, &len));
    assert_int_equal(reg_etcd_framer_feed(&f, ":2}\r\n\n", 6, err, sizeof err), 0);
    assert_true(reg_etcd_framer_next(&f, &msg, &len));
    assert_int_equal(len, 7);
    assert_memory_equal(msg, "{\"b\":2}", 7);
    assert_false(reg_etcd_framer_next(&f, &msg, &len));
    /* A message without end is refused once it passes the limit. */
    char *big = malloc(1 << 20);
    memset(big, 'x', 1 << 20);
    int rc = 0;
    for (int i = 0; i < 17 && rc == 0; i++)
        rc = reg_etcd_framer_feed(&f, big, 1 << 20, err, sizeof err);
    assert_int_equal(rc, -1);
    assert_non_null(strstr(err, "larger than"));
    free(big);
    reg_etcd_framer_free(&f);
}

static void test_parse_watch(void **state)
{
    const char *text =
        "{\"result\":{\"header\":{\"revision\":\"3\"},\"events\":[{\"kv\":{\"key\":\"L2EveA==\",\"mod_revision\":\"2\","
        "\"value\":\"aGVsbG8=\",\"lease\":\"7\"}},{\"type\":\"DELETE\",\"kv\":{\"key\":\"L2EveA==\",\"mod_revision\":"
        "\"3\"},\"prev_kv\":{\"key\":\"L2EveA==\",\"value\":\"aGVsbG8=\",\"lease\":\"7\"}}]}}";
    struct reg_etcd_watch_msg m;
    char err[160];
    assert_int_equal(reg_etcd_parse_watch(text, strlen(text), &m, err, sizeof err), 0);
    assert_int_equal(m.kind, REG_ETCD_WATCH_EVENTS);
    assert_int_equal(m.n_events, 2);
    assert_string_equal(m.events[0].kv.key, "/a/x");
    assert_string_equal(m.events[0].kv.value, "hello");
    assert_int_equal(m.events[0].kv.lease, 7);
    assert_true(m.events[1].is_delete);
    assert_true(m.events[1].has_prev);
    assert_int_equal(m.events[1].prev.lease, 7);
    assert_int_equal(m.header.revision, 3);
    reg_etcd_watch_msg_free(&m);

    const char *compacted = "{\"result\":{\"header\":{},\"canceled\":true,\"compact_revision\":\"3\"}}";
    assert_int_equal(reg_etcd_parse_watch(compacted, strlen(compacted), &m, err, sizeof err), 0);
    assert_int_equal(m.kind, REG_ETCD_WATCH_CANCELED);
    assert_int_equal(m.compact_revision, 3);
    reg_etcd_watch_msg_free(&m);

    const char *error = "{\"error\":{\"grpc_code\":14,\"message\":\"etcdserver: no leader\"}}";
    assert_int_equal(reg_etcd_parse_watch(error, strlen(error), &m, err, sizeof err), -1);
    assert_string_equal(err, "etcd: etcdserver: no leader");
    const char *bad = "{\"result\":{\"events\":[{\"kv\":{\"key\":\"***\"}}]}}";
    assert_int_equal(reg_etcd_parse_watch(bad, strlen(bad), &m, err, sizeof err), -1);
    assert_string_equal(err, "events[0]: key: not base64");
}

/* ---- against etcd --------------------------------------------------------------- */

struct fx {
    struct etcd_cluster ec;
    struct ev_loop *loop;
    struct reg_etcd *e;
};

static int setup_cluster(void **state)
{
    struct fx *f = calloc(1, sizeof *f);
    if (ec_start(&f->ec) < 0) {
        free(f);
        return -1;
    }
    f->loop = ev_loop_new();
    struct reg_etcd_conf c;
    reg_etcd_conf_defaults(&c);
    for (int i = 0; i < EC_MEMBERS; i++)
        snprintf(c.endpoints[i], sizeof c.endpoints[i], "%s", f->ec.endpoint[i]);
    c.n_endpoints = EC_MEMBERS;
    c.request_timeout_ms = 3000;
    char err[256];
    f->e = reg_etcd_new(f->loop, &c, err, sizeof err);
    if (!f->e) {
        fprintf(stderr, "reg_etcd_new: %s\n", err);
        return -1;
    }
    *state = f;
    return 0;
}

static int teardown_cluster(void **state)
{
    struct fx *f = *state;
    reg_etcd_free(f->e);
    ev_loop_free(f->loop);
    ec_stop(&f->ec);
    free(f);
    return 0;
}

/* One request's outcome, copied out of the callback. */
struct res {
    int calls;
    bool ok;
    char reason[256];
    int64_t revision, count, lease, ttl;
    bool succeeded;
    char keys[8][64], values[8][64];
    size_t n;
};

static void on_res(void *arg, const struct reg_etcd_result *r)
{
    struct res *x = arg;
    x->calls++;
    x->ok = r->ok;
    snprintf(x->reason, sizeof x->reason, "%s", r->reason ? r->reason : "");
    x->revision = r->reply->header.revision;
    x->count = r->reply->count;
    x->lease = r->reply->lease_id;
    x->ttl = r->reply->ttl;
    x->succeeded = r->reply->succeeded;
    x->n = 0;
    for (size_t i = 0; i < r->reply->n_kvs && i < 8; i++, x->n++) {
        snprintf(x->keys[i], sizeof x->keys[i], "%s", r->reply->kvs[i].key);
        snprintf(x->values[i], sizeof x->values[i], "%s", r->reply->kvs[i].value);
    }
}

static bool res_done(void *arg)
{
    return ((struct res *)arg)->calls > 0;
}

static struct res wait_res(struct fx *f, struct res *r)
{
    assert_true(ec_run_until(f->loop, res_done, r, 8000));
    assert_int_equal(r->calls, 1);
    return *r;
}

static struct res do_put(struct fx *f, const char *k, const char *v, int64_t lease)
{
    struct res r = {0};
    assert_int_equal(reg_etcd_put(f->e, k, strlen(k), v, strlen(v), lease, on_res, &r), 0);
    assert_int_equal(r.calls, 0); /* never called back from inside the call */
    return wait_res(f, &r);
}

static struct res do_range(struct fx *f, const char *k, bool prefix)
{
    struct res r = {0};
    assert_int_equal(reg_etcd_range(f->e, k, strlen(k), prefix, 0, on_res, &r), 0);
    return wait_res(f, &r);
}

static void test_kv(void **state)
{
    struct fx *f = *state;
    struct res r = do_put(f, "/t/a", "1", 0);
    assert_true(r.ok);
    int64_t rev = r.revision;
    assert_true(do_put(f, "/t/b", "2", 0).ok);
    assert_true(do_put(f, "/tz", "outside", 0).ok);
    r = do_range(f, "/t/", true);
    assert_true(r.ok);
    assert_int_equal(r.n, 2);
    assert_string_equal(r.keys[0], "/t/a");
    assert_string_equal(r.values[1], "2");
    assert_int_equal(r.revision, rev + 2);

    /* txn: the compare fails (version of /t/a is 1), so the failure ops run. */
    struct reg_etcd_cmp cmp = {.key = "/t/a", .key_len = 4, .target = REG_ETCD_CMP_VERSION,
                               .result = REG_ETCD_CMP_EQUAL, .value = 0};
    struct reg_etcd_op ok_op = {.kind = REG_ETCD_OP_PUT, .key = "/t/c", .key_len = 4, .value = "new", .value_len = 3};
    struct reg_etcd_op fail_op = {.kind = REG_ETCD_OP_DELETE_PREFIX, .key = "/t/", .key_len = 3};
    struct reg_etcd_txn t = {.cmps = &cmp, .n_cmps = 1, .success = &ok_op, .n_success = 1, .failure = &fail_op,
                             .n_failure = 1};
    r = (struct res){0};
    assert_int_equal(reg_etcd_txn(f->e, &t, on_res, &r), 0);
    r = wait_res(f, &r);
    assert_true(r.ok);
    assert_false(r.succeeded);
    assert_int_equal(do_range(f, "/t/", true).n, 0);
    assert_int_equal(do_range(f, "/tz", false).n, 1);

    r = (struct res){0};
    assert_int_equal(reg_etcd_delete(f->e, "/tz", 3, false, on_res, &r), 0);
    r = wait_res(f, &r);
    assert_true(r.ok);
    assert_int_equal(r.count, 1);

    /* A bad request is refused with etcd's reason, without trying others. */
    r = (struct res){0};
    assert_int_equal(reg_etcd_put(f->e, "", 0, "x", 1, 0, on_res, &r), 0);
    r = wait_res(f, &r);
    assert_false(r.ok);
    assert_non_null(strstr(r.reason, "key is not provided"));
    struct reg_etcd_stats st;
    reg_etcd_stats(f->e, &st);
    assert_int_equal(st.retries, 0);
}

/* Watch events collected. */
struct seen {
    char keys[64][32];
    bool deletes[64];
    int64_t prev_lease[64];
    int64_t revs[64];
    size_t n;
    int ups, downs;
    char down_reason[256];
    int64_t compacted;
};

static void on_events(void *arg, const struct reg_etcd_event *ev, size_t n, int64_t revision)
{
    struct seen *s = arg;
    for (size_t i = 0; i < n && s->n < 64; i++, s->n++) {
        snprintf(s->keys[s->n], sizeof s->keys[s->n], "%s", ev[i].kv.key);
        s->deletes[s->n] = ev[i].is_delete;
        s->prev_lease[s->n] = ev[i].has_prev ? ev[i].prev.lease : -1;
        s->revs[s->n] = ev[i].kv.mod_revision;
    }
}

static void on_state(void *arg, bool up, const char *reason)
{
    struct seen *s = arg;
    if (up)
        s->ups++;
    else {
        s->downs++;
        snprintf(s->down_reason, sizeof s->down_reason, "%s", reason);
    }
}

static void on_compacted(void *arg, int64_t rev)
{
    ((struct seen *)arg)->compacted = rev;
}

struct want {
    struct seen *s;
    size_t n;
};

static bool seen_n(void *arg)
{
    struct want *w = arg;
    return w->s->n >= w->n;
}

static bool watch_is_up(void *arg)
{
    return reg_etcd_watch_up(arg);
}

static struct reg_etcd_watch *watch(struct fx *f, const char *prefix, int64_t from, struct seen *s)
{
    struct reg_etcd_watch_cbs cbs = {.events = on_events, .state = on_state, .compacted = on_compacted, .arg = s};
    char err[128];
    struct reg_etcd_watch *w = reg_etcd_watch_start(f->e, prefix, strlen(prefix), true, from, &cbs, err, sizeof err);
    assert_non_null(w);
    assert_true(ec_run_until(f->loop, watch_is_up, w, 8000));
    return w;
}

static void test_watch_and_lease(void **state)
{
    struct fx *f = *state;
    struct res r = do_put(f, "/w/before", "x", 0);
    int64_t rev = r.revision;
    struct seen s = {0};
    struct reg_etcd_watch *w = watch(f, "/w/", rev, &s); /* from the put on: it is seen */

    r = (struct res){0};
    assert_int_equal(reg_etcd_lease_grant(f->e, 2, on_res, &r), 0);
    r = wait_res(f, &r);
    assert_true(r.ok);
    int64_t lease = r.lease;
    assert_true(lease != 0);
    assert_int_equal(r.ttl, 2);
    assert_true(do_put(f, "/w/leased", "y", lease).ok);
    assert_true(do_put(f, "/other", "z", 0).ok); /* not under the prefix */

    r = (struct res){0};
    assert_int_equal(reg_etcd_lease_keepalive(f->e, lease, on_res, &r), 0);
    r = wait_res(f, &r);
    assert_true(r.ok);
    assert_int_equal(r.ttl, 2);

    /* Without keepalives the lease expires and its key is deleted: the
     * watch sees the delete, with the lease in prev_kv. */
    struct want want = {&s, 3};
    assert_true(ec_run_until(f->loop, seen_n, &want, 10000));
    assert_string_equal(s.keys[0], "/w/before");
    assert_string_equal(s.keys[1], "/w/leased");
    assert_false(s.deletes[1]);
    assert_string_equal(s.keys[2], "/w/leased");
    assert_true(s.deletes[2]);
    assert_int_equal(s.prev_lease[2], lease);
    assert_int_equal(reg_etcd_watch_revision(w), s.revs[2]);

    r = (struct res){0};
    assert_int_equal(reg_etcd_lease_keepalive(f->e, lease, on_res, &r), 0);
    r = wait_res(f, &r);
    assert_true(r.ok);
    assert_int_equal(r.ttl, 0); /* gone */
    reg_etcd_watch_stop(w);
}

/* The member a watch streams from is killed: the watch moves to another
 * and sees every event once, in order; requests fail over too. */
static void test_failover(void **state)
{
    struct fx *f = *state;
    struct res r = do_put(f, "/f/0", "0", 0);
    struct seen s = {0};
    struct reg_etcd_watch *w = watch(f, "/f/", r.revision, &s);
    struct want want = {&s, 1};
    assert_true(ec_run_until(f->loop, seen_n, &want, 5000));

    int victim = ec_member_of(&f->ec, reg_etcd_endpoint(f->e));
    assert_true(victim >= 0);
    ec_kill_member(&f->ec, victim);
    for (int i = 1; i <= 5; i++) {
        char k[16];
        snprintf(k, sizeof k, "/f/%d", i);
        r = do_put(f, k, "v", 0);
        if (!r.ok)
            fprintf(stderr, "put %s: %s\n", k, r.reason);
        assert_true(r.ok);
    }
    assert_true(ec_member_of(&f->ec, reg_etcd_endpoint(f->e)) != victim);
    want.n = 6;
    assert_true(ec_run_until(f->loop, seen_n, &want, 10000));
    assert_int_equal(s.n, 6);
    for (int i = 0; i < 6; i++) {
        char k[16];
        snprintf(k, sizeof k, "/f/%d", i);
        assert_string_equal(s.keys[i], k);
        if (i)
            assert_true(s.revs[i] > s.revs[i - 1]);
    }
    assert_true(s.downs >= 1);
    assert_non_null(strstr(s.down_reason, f->ec.endpoint[victim]));
    struct reg_etcd_stats st;
    reg_etcd_stats(f->e, &st);
    assert_true(st.watch_restarts >= 1);

    /* Every member down: requests fail with a reason naming the tries. */
    for (int i = 0; i < EC_MEMBERS; i++)
        ec_kill_member(&f->ec, i);
    r = (struct res){0};
    assert_int_equal(reg_etcd_put(f->e, "/f/x", 4, "x", 1, 0, on_res, &r), 0);
    r = wait_res(f, &r);
    assert_false(r.ok);
    assert_non_null(strstr(r.reason, "over 3 endpoints"));

    /* Back up: the watch resumes from where it was and sees new events. */
    for (int i = 0; i < EC_MEMBERS; i++)
        assert_int_equal(ec_restart_member(&f->ec, i), 0);
    for (int i = 0; i < EC_MEMBERS; i++)
        assert_int_equal(ec_wait_ready(&f->ec, i, 20000), 0);
    assert_true(ec_run_until(f->loop, watch_is_up, w, 10000));
    assert_true(do_put(f, "/f/6", "v", 0).ok);
    want.n = 7;
    assert_true(ec_run_until(f->loop, seen_n, &want, 10000));
    assert_int_equal(s.n, 7);
    assert_string_equal(s.keys[6], "/f/6");
    reg_etcd_watch_stop(w);
}

/* A watch from a compacted revision says so and stops. */
static void test_compacted(void **state)
{
    struct fx *f = *state;
    struct res r = do_put(f, "/c/a", "1", 0);
    int64_t old = r.revision;
    r = do_put(f, "/c/a", "2", 0);
    char cmd[256];
    snprintf(cmd, sizeof cmd, "curl -sf -XPOST %s/v3/kv/compaction -d '{\"revision\":\"%lld\"}' >/dev/null",
             f->ec.endpoint[0], (long long)r.revision);
    assert_int_equal(system(cmd), 0);
    struct seen s = {0};
    struct reg_etcd_watch_cbs cbs = {.events = on_events, .state = on_state, .compacted = on_compacted, .arg = &s};
    char err[128];
    struct reg_etcd_watch *w = reg_etcd_watch_start(f->e, "/c/", 3, true, old, &cbs, err, sizeof err);
    assert_non_null(w);
    for (int i = 0; i < 500 && !s.compacted; i++)
        ec_run_until(f->loop, seen_n, &(struct want){&s, 1}, 10);
    assert_int_equal(s.compacted, r.revision);
    /* stopped by itself: nothing to stop */
}

int main(void)
{
    const struct CMUnitTest pure[] = {
        cmocka_unit_test(test_base64),
        cmocka_unit_test(test_prefix_end),
        cmocka_unit_test(test_framer),
        cmocka_unit_test(test_parse_watch),
    };
    const struct CMUnitTest live[] = {
        cmocka_unit_test_setup_teardown(test_kv, setup_cluster, teardown_cluster),
        cmocka_unit_test_setup_teardown(test_watch_and_lease, setup_cluster, teardown_cluster),
        cmocka_unit_test_setup_teardown(test_compacted, setup_cluster, teardown_cluster),
        cmocka_unit_test_setup_teardown(test_failover, setup_cluster, teardown_cluster),
    };
    int failed = cmocka_run_group_tests_name("reg_etcd_pure", pure, NULL, NULL);
    return failed + cmocka_run_group_tests_name("reg_etcd_live", live, NULL, NULL);
}
