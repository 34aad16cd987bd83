/* Unit tests for libsluice's updates (src/client/doc.c, consumer.c): the
 * list's JSON parser, the rules for believing an empty list or a 404, and
 * invalid answers ignored, driven through cl_service_apply() (the
 * watcher's own path) with bodies as a registry would send them. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "client/doc.h"
#include "client_helpers.h"

static char *two_instances(unsigned long long mi)
{
    char a[512], b[512], both[1100];
    ch_inst(a, sizeof a, "web-1", "10.1.0.1", 80, 100, "dc1", "r1", true);
    ch_inst(b, sizeof b, "web-2", "2001:db8::2", 8080, 300, "dc2", "r1", false);
    snprintf(both, sizeof both, "%s,%s", a, b);
    return ch_body("web", mi, both);
}

/* ---- the parser -------------------------------------------------------- */

static void test_parse_registry_answer(void **state)
{
    char *body = two_instances(42);
    char err[256];
    struct cl_doc *d = cl_doc_parse(body, strlen(body), err, sizeof err);
    assert_non_null(d);
    assert_string_equal(d->name, "web");
    assert_int_equal(d->modify_index, 42);
    assert_int_equal(d->n, 2);
    assert_int_equal(d->dns_ttl, 7);
    assert_int_equal(d->answer_count, 2);
    assert_string_equal(d->inst[0].host, "10.1.0.1");
    assert_int_equal(d->inst[0].port, 80);
    assert_true(d->inst[0].healthy);
    assert_string_equal(d->inst[1].host, "2001:db8::2");
    assert_int_equal(d->inst[1].addr.ss_family, AF_INET6);
    assert_int_equal(d->inst[1].weight, 300);
    assert_false(d->inst[1].healthy);
    assert_string_equal(d->inst[1].datacenter, "dc2");
    cl_doc_free(d);
    free(body);
}

static void test_parse_rejects_bad_instances(void **state)
{
    const char *bad[] = {
        "{\"name\":\"web\",\"instances\":[{\"id\":\"a\",\"address\":\"10.0.0.300\",\"port\":80}]}",
        "{\"name\":\"web\",\"instances\":[{\"id\":\"a\",\"address\":\"web.example\",\"port\":80}]}",
        "{\"name\":\"web\",\"instances\":[{\"id\":\"a\",\"address\":\"10.0.0.1\",\"port\":0}]}",
        "{\"name\":\"web\",\"instances\":[{\"id\":\"a\",\"address\":\"10.0.0.1\",\"port\":70000}]}",
        "{\"name\":\"web\",\"instances\":[{\"id\":\"a\",\"address\":\"10.0.0.1\"}]}",
        "{\"name\":\"web\",\"instances\":[{\"address\":\"10.0.0.1\",\"port\":1}]}",
        "{\"name\":\"web\",\"instances\":[{\"id\":\"a\",\"address\":\"10.0.0.1\",\"port\":1,\"weight\":10001}]}",
        "{\"name\":\"web\",\"instances\":[{\"id\":\"a\",\"address\":\"10.0.0.1\",\"port\":1,\"health\":\"maybe\"}]}",
        "{\"name\":\"web\",\"instances\":[{\"id\":\"a\",\"address\":\"10.0.0.1\",\"port\":1},"
        "{\"id\":\"a\",\"address\":\"10.0.0.2\",\"port\":1}]}",
        "{\"name\":\"web\",\"instances\":{}}",
        "{\"name\":\"web\"}",
        "{\"instances\":[]}",
        "{\"name\":\"web\",\"settings\":{\"protect_threshold\":2},\"instances\":[]}",
        "[1,2]",
        "{\"name\":\"web\",\"instances\":[",
        "",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char err[256] = "";
        struct cl_doc *d = cl_doc_parse(bad[i], strlen(bad[i]), err, sizeof err);
        if (d)
            fail_msg("accepted: %s", bad[i]);
        assert_true(err[0] != '\0');
    }
}

static void test_format_round_trip(void **state)
{
    char *body = two_instances(9);
    struct cl_doc *d = cl_doc_parse(body, strlen(body), NULL, 0);
    assert_non_null(d);
    char *text = cl_doc_format(d, "10.0.0.1:9950");
    assert_non_null(text);
    struct cl_doc *e = cl_doc_parse(text, strlen(text), NULL, 0);
    assert_non_null(e);
    assert_true(cl_doc_equal(d, e));
    assert_string_equal(e->node, "10.0.0.1:9950");
    assert_int_equal(e->modify_index, 9);
    cl_doc_free(d);
    cl_doc_free(e);
    free(text);
    free(body);
}

/* ---- the rules, pure ---------------------------------------------------- */

static struct cl_doc *doc_of(char *body)
{
    struct cl_doc *d = cl_doc_parse(body, strlen(body), NULL, 0);
    free(body);
    assert_non_null(d);
    return d;
}

static void test_judge_empty_rules(void **state)
{
    struct cl_doc *full = doc_of(two_instances(10));
    struct cl_doc *empty_later = doc_of(ch_body("web", 11, ""));
    struct cl_doc *empty_lower = doc_of(ch_body("web", 3, ""));
    const uint32_t pull = 30000;

    /* b: the same node, a later index: believed at once */
    struct cl_trust t = {0};
    assert_int_equal(cl_judge(&t, "web", "A", 200, full, false, 0, pull), CL_APPLY);
    assert_int_equal(cl_judge(&t, "web", "A", 200, empty_later, true, 1, pull), CL_APPLY);

    /* a restarted node (lower index), or another node: not believed... */
    t = (struct cl_trust){0};
    assert_int_equal(cl_judge(&t, "web", "A", 200, full, false, 0, pull), CL_APPLY);
    assert_int_equal(cl_judge(&t, "web", "A", 200, empty_lower, true, 1000, pull), CL_IGNORE_EMPTY);
    /* ...again from the same node before pull_interval passed... */
    assert_int_equal(cl_judge(&t, "web", "A", 200, empty_lower, true, 1000 + pull - 1, pull), CL_IGNORE_EMPTY);
    /* ...until a later pull agrees */
    assert_int_equal(cl_judge(&t, "web", "A", 200, empty_lower, true, 1000 + pull, pull), CL_APPLY);

    /* c: a second node agrees */
    t = (struct cl_trust){0};
    assert_int_equal(cl_judge(&t, "web", "A", 200, full, false, 0, pull), CL_APPLY);
    assert_int_equal(cl_judge(&t, "web", "B", 200, empty_later, true, 5, pull), CL_IGNORE_EMPTY);
    assert_int_equal(cl_judge(&t, "web", "C", 200, empty_later, true, 6, pull), CL_APPLY);

    /* a list with instances clears a pending empty answer */
    t = (struct cl_trust){0};
    assert_int_equal(cl_judge(&t, "web", "A", 200, full, false, 0, pull), CL_APPLY);
    assert_int_equal(cl_judge(&t, "web", "B", 200, empty_later, true, 5, pull), CL_IGNORE_EMPTY);
    assert_int_equal(cl_judge(&t, "web", "A", 200, full, true, 6, pull), CL_APPLY);
    assert_int_equal(cl_judge(&t, "web", "B", 200, empty_later, true, 7 + pull, pull), CL_IGNORE_EMPTY);

    /* a: nothing to lose */
    t = (struct cl_trust){0};
    assert_int_equal(cl_judge(&t, "web", "B", 200, empty_lower, false, 0, pull), CL_APPLY);

    /* 404 and bad answers */
    t = (struct cl_trust){0};
    assert_int_equal(cl_judge(&t, "web", "A", 404, NULL, true, 0, pull), CL_IGNORE_EMPTY);
    assert_int_equal(cl_judge(&t, "web", "A", 404, NULL, false, 0, pull), CL_NOT_FOUND);
    assert_int_equal(cl_judge(&t, "web", "A", 200, NULL, true, 0, pull), CL_IGNORE_INVALID);
    assert_int_equal(cl_judge(&t, "web", "A", 403, full, true, 0, pull), CL_IGNORE_INVALID);
    assert_int_equal(cl_judge(&t, "api", "A", 200, full, true, 0, pull), CL_IGNORE_INVALID);
    cl_doc_free(full);
    cl_doc_free(empty_later);
    cl_doc_free(empty_lower);
}

/* ---- through the client ---------------------------------------------------- */

struct fixture {
    char dir[128];
    struct ch_log log;
    sluice_client *c;
    sluice_service *s;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    ch_tmpdir(f->dir, sizeof f->dir);
    f->c = ch_open(f->dir, NULL, "dc1", "r1", &f->log);
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

static int members(sluice_service *s)
{
    struct sluice_member m[8];
    return sluice_members(s, m, 8, NULL);
}

static void test_apply_then_invalid_ignored(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(ch_info(f->s).source, SLUICE_SOURCE_NONE);
    char *body = two_instances(10);
    ch_apply(f->s, "A", 200, body);
    free(body);
    struct sluice_service_info si = ch_info(f->s);
    assert_int_equal(si.source, SLUICE_SOURCE_REGISTRY);
    assert_int_equal(si.instances, 2);
    assert_int_equal(si.updates, 1);
    assert_int_equal(si.registry_index, 10);
    assert_int_equal(si.dns_ttl, 7);
    assert_int_equal(sluice_wait_ready(f->s, 0), 0);

    const char *invalid[] = {
        "not json",
        "{\"name\":\"web\",\"modify_index\":11,\"instances\":[{\"id\":\"x\",\"address\":\"10.0.0.999\",\"port\":80}]}",
        "{\"name\":\"web\",\"modify_index\":11,\"instances\":[{\"id\":\"x\",\"address\":\"10.0.0.9\",\"port\":0}]}",
        "{\"name\":\"api\",\"modify_index\":11,\"instances\":[]}",
    };
    for (size_t i = 0; i < 4; i++)
        ch_apply(f->s, "A", 200, invalid[i]);
    ch_apply(f->s, "A", 403, "{\"error\":\"no\"}");
    si = ch_info(f->s);
    assert_int_equal(si.updates_ignored_invalid, 5);
    assert_int_equal(si.instances, 2);
    assert_int_equal(si.version, 1);
    assert_non_null(strstr(f->log.last_warn, "ignoring the answer of registry A"));
    /* rate-limited: one message for the five */
    assert_int_equal(f->log.warns, 1);
    struct sluice_stats st;
    sluice_stats(f->c, &st);
    assert_int_equal(st.updates_ignored_invalid, 5);
}

static void test_empty_from_blank_node_ignored(void **state)
{
    struct fixture *f = *state;
    char *body = two_instances(10);
    ch_apply(f->s, "A", 200, body);
    free(body);
    /* the node restarted blank: 404, then an empty list at a lower index */
    ch_apply(f->s, "A", 404, "{\"error\":\"no such service\"}");
    body = ch_body("web", 2, "");
    ch_apply(f->s, "A", 200, body);
    struct sluice_service_info si = ch_info(f->s);
    assert_int_equal(si.updates_ignored_empty, 2);
    assert_int_equal(si.instances, 2);
    assert_int_equal(members(f->s), 1);
    assert_non_null(strstr(f->log.last_warn, "keeping the 2 instances"));
    /* a second node says the same: believed */
    ch_apply(f->s, "B", 200, body);
    free(body);
    si = ch_info(f->s);
    assert_int_equal(si.instances, 0);
    assert_int_equal(members(f->s), 0);
    struct sluice_pick p;
    assert_int_equal(sluice_pick(f->s, 0, &p), -1);
}

static void test_empty_after_operator_emptied(void **state)
{
    struct fixture *f = *state;
    char *body = two_instances(10);
    ch_apply(f->s, "A", 200, body);
    free(body);
    body = ch_body("web", 12, "");
    ch_apply(f->s, "A", 200, body);
    free(body);
    struct sluice_service_info si = ch_info(f->s);
    assert_int_equal(si.updates_ignored_empty, 0);
    assert_int_equal(si.instances, 0);
    assert_int_equal(si.updates, 2);
}

static void count_change(void *arg, sluice_service *s)
{
    (*(int *)arg)++;
    assert_non_null(s);
}

static void test_on_change_and_instances(void **state)
{
    struct fixture *f = *state;
    int changes = 0;
    sluice_on_change(f->s, count_change, &changes);
    char *body = two_instances(10);
    ch_apply(f->s, "A", 200, body);
    ch_apply(f->s, "A", 200, body); /* the same list: no change */
    free(body);
    assert_int_equal(changes, 1);
    struct sluice_member all[4];
    uint64_t version = 0;
    assert_int_equal(sluice_instances(f->s, all, 4, &version), 2);
    assert_int_equal(version, 1);
    assert_string_equal(all[1].id, "web-2");
    assert_false(all[1].healthy);
    assert_int_equal(all[1].weight, 300);
    assert_int_equal(all[1].addr.ss_family, AF_INET6);
    assert_int_equal(sluice_instances(f->s, all, 1, NULL), 2); /* more than cap: the count */
    sluice_on_change(f->s, NULL, NULL);
    body = ch_body("web", 12, "");
    ch_apply(f->s, "A", 200, body);
    free(body);
    assert_int_equal(changes, 1);
}

/* Every node refusing: the watcher backs off (250 ms doubling to 5 s)
 * instead of spinning; a spinning loop makes thousands of attempts in the
 * time this one makes a handful. */
static void test_dead_nodes_backed_off(void **state)
{
    struct sluice_config cfg;
    sluice_config_init(&cfg);
    cfg.registries = "127.0.0.1:1,127.0.0.1:2";
    char err[256];
    sluice_client *c = sluice_open(&cfg, err, sizeof err);
    assert_non_null(c);
    sluice_service *s = sluice_subscribe(c, "web", err, sizeof err);
    assert_non_null(s);
    assert_int_equal(sluice_wait_ready(s, 2000), -1);
    struct sluice_stats st;
    sluice_stats(c, &st);
    assert_true(st.requests_failed >= 2);
    if (st.requests_failed > 30)
        fail_msg("%llu failed requests in 2 s: the watcher is not backing off",
                 (unsigned long long)st.requests_failed);
    assert_false(st.registry_reachable);
    sluice_close(c);
}

static void test_open_checks_config(void **state)
{
    struct sluice_config cfg;
    sluice_config_init(&cfg);
    char err[256];
    assert_null(sluice_open(&cfg, err, sizeof err));
    assert_non_null(strstr(err, "registries: required"));
    cfg.registries = "10.0.0.1:99999";
    assert_null(sluice_open(&cfg, err, sizeof err));
    assert_non_null(strstr(err, "registries"));
    cfg.registries = "10.0.0.1";
    assert_null(sluice_open(&cfg, err, sizeof err));
    assert_non_null(strstr(err, "host:port"));
    cfg.registries = "http://10.0.0.1:9950/, 10.0.0.2:9950";
    sluice_client *c = sluice_open(&cfg, err, sizeof err);
    assert_non_null(c);
    assert_int_equal(c->n_nodes, 2);
    assert_string_equal(c->nodes[0].url, "http://10.0.0.1:9950");
    assert_null(sluice_subscribe(c, "bad_name", err, sizeof err));
    assert_non_null(strstr(err, "service"));
    assert_true(sluice_subscribe(c, "Web", NULL, 0) == sluice_subscribe(c, "web", NULL, 0));
    sluice_close(c);
    assert_string_equal(sluice_version(), "0.1.0");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_registry_answer),
        cmocka_unit_test(test_parse_rejects_bad_instances),
        cmocka_unit_test(test_format_round_trip),
        cmocka_unit_test(test_judge_empty_rules),
        cmocka_unit_test_setup_teardown(test_apply_then_invalid_ignored, setup, teardown),
        cmocka_unit_test_setup_teardown(test_empty_from_blank_node_ignored, setup, teardown),
        cmocka_unit_test_setup_teardown(test_empty_after_operator_emptied, setup, teardown),
        cmocka_unit_test_setup_teardown(test_on_change_and_instances, setup, teardown),
        cmocka_unit_test(test_dead_nodes_backed_off),
        cmocka_unit_test(test_open_checks_config),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
