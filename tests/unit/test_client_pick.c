/* Unit tests for libsluice's picks (src/client/snap.c, consumer.c): the
 * draw follows the weights, power of two choices prefers the instance with
 * fewer outstanding requests, failing instances are avoided for avoid_ms
 * and never make a pick fail, the pick state survives a new snapshot, and
 * several threads picking while the writer swaps snapshots never see a
 * torn or freed one (run under ASan here, and under TSan by
 * `make tsan-client`). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>

#include "client_helpers.h"

struct fixture {
    char dir[128];
    sluice_client *c;
    sluice_service *s;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    ch_tmpdir(f->dir, sizeof f->dir);
    f->c = ch_open(NULL, f->dir, "dc1", "r1", NULL); /* no cache: no fsync per update */
    f->s = sluice_subscribe(f->c, "web", NULL, 0);
    assert_non_null(f->s);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    sluice_close(f->c);
    ch_rmrf(f->dir);
    free(f);
    return 0;
}

/* n instances web-1..web-n at 10.0.0.i:80 in dc1 with the given weights. */
static void feed(sluice_service *s, unsigned long long mi, const uint32_t *weights, size_t n)
{
    char list[8192] = "";
    size_t used = 0;
    for (size_t i = 0; i < n; i++) {
        char one[512], id[32], ip[32];
        snprintf(id, sizeof id, "web-%zu", i + 1);
        snprintf(ip, sizeof ip, "10.0.0.%zu", i + 1);
        ch_inst(one, sizeof one, id, ip, 80, (int)weights[i], "dc1", "r1", true);
        used += (size_t)snprintf(list + used, sizeof list - used, "%s%s", i ? "," : "", one);
    }
    char *body = ch_body("web", mi, list);
    ch_apply(s, "A", 200, body);
    free(body);
}

static int index_of(const struct sluice_pick *p)
{
    int i = atoi(p->id + 4);
    assert_true(i >= 1);
    return i - 1;
}

static void test_pick_follows_weights(void **state)
{
    struct fixture *f = *state;
    const uint32_t w[4] = {100, 200, 700, 0};
    feed(f->s, 1, w, 4);
    enum { N = 200000 };
    unsigned count[4] = {0};
    for (int k = 0; k < N; k++) {
        struct sluice_pick p;
        assert_int_equal(sluice_pick(f->s, 0, &p), 0);
        int i = index_of(&p);
        count[i]++;
        /* the pick is ready for connect() and matches its id */
        char ip[32];
        snprintf(ip, sizeof ip, "10.0.0.%d", i + 1);
        assert_string_equal(p.host, ip);
        assert_int_equal(p.port, 80);
        assert_int_equal(p.addrlen, sizeof(struct sockaddr_in));
        assert_int_equal(ntohs(((struct sockaddr_in *)&p.addr)->sin_port), 80);
        sluice_done(f->s, &p, SLUICE_OK);
    }
    assert_int_equal(count[3], 0); /* weight 0: never */
    /* shares within 1% of 0.1, 0.2, 0.7 (over 20 standard deviations) */
    for (int i = 0; i < 3; i++) {
        double share = (double)count[i] / N, want = w[i] / 1000.0;
        if (share < want - 0.01 || share > want + 0.01)
            fail_msg("web-%d: %.4f of the picks, want %.2f", i + 1, share, want);
    }
}

static void test_p2c_prefers_fewer_outstanding(void **state)
{
    struct fixture *f = *state;
    const uint32_t w[2] = {100, 100};
    feed(f->s, 1, w, 2);
    /* five requests outstanding on web-1 */
    struct sluice_pick held[5];
    int n_held = 0;
    while (n_held < 5) {
        struct sluice_pick p;
        assert_int_equal(sluice_pick(f->s, 0, &p), 0);
        if (index_of(&p) == 0)
            held[n_held++] = p;
        else
            sluice_done(f->s, &p, SLUICE_CANCELLED);
    }
    enum { N = 20000 };
    unsigned first = 0, plain_first = 0;
    for (int k = 0; k < N; k++) {
        struct sluice_pick p;
        assert_int_equal(sluice_pick(f->s, SLUICE_PICK_P2C, &p), 0);
        first += index_of(&p) == 0;
        sluice_done(f->s, &p, SLUICE_OK);
        assert_int_equal(sluice_pick(f->s, 0, &p), 0);
        plain_first += index_of(&p) == 0;
        sluice_done(f->s, &p, SLUICE_OK);
    }
    /* p2c takes web-1 only when both draws are web-1: a quarter */
    double share = (double)first / N, plain = (double)plain_first / N;
    if (share < 0.22 || share > 0.28)
        fail_msg("p2c gave the busier instance %.3f of the picks, want 0.25", share);
    assert_true(plain > 0.47 && plain < 0.53);
    /* done() ends them: then p2c is even again */
    for (int i = 0; i < n_held; i++)
        sluice_done(f->s, &held[i], SLUICE_OK);
    first = 0;
    for (int k = 0; k < N; k++) {
        struct sluice_pick p;
        assert_int_equal(sluice_pick(f->s, SLUICE_PICK_P2C, &p), 0);
        first += index_of(&p) == 0;
        sluice_done(f->s, &p, SLUICE_OK);
    }
    share = (double)first / N;
    assert_true(share > 0.47 && share < 0.53);
}

static void fail_times(sluice_service *s, int target, int times)
{
    for (int n = 0; n < times;) {
        struct sluice_pick p;
        assert_int_equal(sluice_pick(s, 0, &p), 0);
        if (index_of(&p) == target) {
            sluice_done(s, &p, SLUICE_FAILED);
            n++;
        } else {
            sluice_done(s, &p, SLUICE_CANCELLED);
        }
    }
}

static bool avoided(sluice_service *s, int target)
{
    struct sluice_member m[8];
    int n = sluice_members(s, m, 8, NULL);
    for (int i = 0; i < n; i++)
        if (atoi(m[i].id + 4) - 1 == target)
            return m[i].avoided;
    fail_msg("web-%d not a member", target + 1);
    return false;
}

static void test_avoid_after_failures(void **state)
{
    struct fixture *f = *state;
    const uint32_t w[3] = {100, 100, 100};
    feed(f->s, 1, w, 3);
    fail_times(f->s, 0, 2);
    assert_false(avoided(f->s, 0)); /* two in a row: not yet (default 3) */
    fail_times(f->s, 0, 1);
    assert_true(avoided(f->s, 0));
    for (int k = 0; k < 3000; k++) {
        struct sluice_pick p;
        assert_int_equal(sluice_pick(f->s, k % 2 ? SLUICE_PICK_P2C : 0, &p), 0);
        assert_int_not_equal(index_of(&p), 0);
        sluice_done(f->s, &p, SLUICE_OK);
    }
    /* a new snapshot keeps the state (the same id) */
    const uint32_t w2[3] = {100, 100, 200};
    feed(f->s, 2, w2, 3);
    assert_int_equal(ch_info(f->s).version, 2);
    assert_true(avoided(f->s, 0));

    /* every member avoided: picks still work */
    fail_times(f->s, 1, 3);
    fail_times(f->s, 2, 3);
    assert_true(avoided(f->s, 1) && avoided(f->s, 2));
    unsigned seen[3] = {0};
    for (int k = 0; k < 3000; k++) {
        struct sluice_pick p;
        assert_int_equal(sluice_pick(f->s, 0, &p), 0);
        seen[index_of(&p)]++;
        sluice_done(f->s, &p, SLUICE_CANCELLED);
    }
    assert_true(seen[0] > 0 && seen[1] > 0 && seen[2] > 0);
}

/* Expiry, on the snapshot with the clock in hand. */
static void test_avoidance_expires(void **state)
{
    struct fixture *f = *state;
    const uint32_t w[2] = {100, 100};
    feed(f->s, 1, w, 2);
    struct cl_pick_conf pc = {.avoid_after_failures = 2, .avoid_ms = 5000};
    const struct cl_snap *snap = atomic_load(&f->s->snap);
    struct cl_slot *s0 = cl_slot_at(&f->s->slots, snap->members[0].slot);
    cl_slot_done(s0, &pc, SLUICE_FAILED, 1000);
    cl_slot_done(s0, &pc, SLUICE_OK, 1000); /* a success ends the streak */
    cl_slot_done(s0, &pc, SLUICE_FAILED, 1000);
    assert_false(cl_slot_avoided(&pc, s0, 1000));
    cl_slot_done(s0, &pc, SLUICE_FAILED, 1000);
    assert_true(cl_slot_avoided(&pc, s0, 1000));
    for (int k = 0; k < 1000; k++)
        assert_int_equal(cl_snap_pick(snap, &f->s->slots, &pc, false, 5999), 1);
    assert_false(cl_slot_avoided(&pc, s0, 6000));
    unsigned back = 0;
    for (int k = 0; k < 1000; k++)
        back += cl_snap_pick(snap, &f->s->slots, &pc, false, 6000) == 0;
    assert_true(back > 400 && back < 600);
}

static void test_no_list_no_pick(void **state)
{
    struct fixture *f = *state;
    struct sluice_pick p;
    assert_int_equal(sluice_pick(f->s, 0, &p), -1);
    assert_int_equal(sluice_wait_ready(f->s, 10), -1);
    struct sluice_member m[2];
    uint64_t v = 99;
    assert_int_equal(sluice_members(f->s, m, 2, &v), 0);
    assert_int_equal(v, 0);
}

/* ---- snapshot swaps under readers ----------------------------------------- */

struct stress {
    sluice_service *s;
    _Atomic bool stop;
    _Atomic unsigned long picks;
};

/* List A has web-1..4, list B web-3..8; every pick's address must be its id's. */
static void *picker(void *arg)
{
    struct stress *st = arg;
    unsigned long n = 0;
    while (!atomic_load(&st->stop)) {
        struct sluice_pick p;
        if (sluice_pick(st->s, n % 3 == 0 ? SLUICE_PICK_P2C : 0, &p) == 0) {
            char ip[32];
            snprintf(ip, sizeof ip, "10.0.0.%d", atoi(p.id + 4));
            if (strcmp(ip, p.host) != 0)
                abort();
            sluice_done(st->s, &p, n % 7 == 0 ? SLUICE_FAILED : SLUICE_OK);
        }
        if (n % 64 == 0) {
            struct sluice_member m[16];
            int k = sluice_members(st->s, m, 16, NULL);
            if (k < 0 || k > 8)
                abort();
            struct sluice_service_info si;
            sluice_service_info(st->s, &si);
        }
        n++;
    }
    atomic_fetch_add(&st->picks, n);
    return NULL;
}

static void test_swap_under_pickers(void **state)
{
    struct fixture *f = *state;
    const uint32_t wa[4] = {100, 200, 300, 400};
    feed(f->s, 1, wa, 4);
    struct stress st = {.s = f->s};
    pthread_t t[4];
    for (int i = 0; i < 4; i++)
        assert_int_equal(pthread_create(&t[i], NULL, picker, &st), 0);
    char list_a[4096] = "", list_b[4096] = "";
    for (int i = 1; i <= 8; i++) {
        char one[512], id[16], ip[32];
        snprintf(id, sizeof id, "web-%d", i);
        snprintf(ip, sizeof ip, "10.0.0.%d", i);
        ch_inst(one, sizeof one, id, ip, 80, 100 * i, "dc1", "r1", true);
        if (i <= 4)
            snprintf(list_a + strlen(list_a), sizeof list_a - strlen(list_a), "%s%s", i > 1 ? "," : "", one);
        if (i >= 3)
            snprintf(list_b + strlen(list_b), sizeof list_b - strlen(list_b), "%s%s", i > 3 ? "," : "", one);
    }
    enum { SWAPS = 600 };
    for (unsigned long long k = 0; k < SWAPS; k++) {
        char *body = ch_body("web", 2 + k, k % 2 ? list_a : list_b);
        ch_apply(f->s, "A", 200, body);
        free(body);
    }
    atomic_store(&st.stop, true);
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    assert_int_equal(ch_info(f->s).version, SWAPS + 1);
    assert_true(atomic_load(&st.picks) > 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_pick_follows_weights, setup, teardown),
        cmocka_unit_test_setup_teardown(test_p2c_prefers_fewer_outstanding, setup, teardown),
        cmocka_unit_test_setup_teardown(test_avoid_after_failures, setup, teardown),
        cmocka_unit_test_setup_teardown(test_avoidance_expires, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_list_no_pick, setup, teardown),
        cmocka_unit_test_setup_teardown(test_swap_under_pickers, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
