/* Unit tests for core/metrics: the emitter's text format (HELP, TYPE,
 * samples, label escaping), families over rows, and the registry's
 * collectors in order. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "core/metrics.h"

static char *take(struct strbuf *s)
{
    char *text = strbuf_finish(s, NULL);
    assert_non_null(text);
    return text;
}

static void test_family_and_samples(void **state)
{
    struct strbuf s = { 0 };
    metrics_family(&s, "x_total", "counter", "Things.");
    metrics_sample(&s, "x_total", NULL, 0, 7);
    const struct metric_label two[] = { { "a", "1" }, { "b", "q\"u\\o\nte" } };
    metrics_sample(&s, "x_total", two, 2, UINT64_MAX);
    metrics_sample_text(&s, "x_seconds", NULL, 0, "1.250");
    char *text = take(&s);
    assert_string_equal(text, "# HELP x_total Things.\n# TYPE x_total counter\n"
                              "x_total 7\n"
                              "x_total{a=\"1\",b=\"q\\\"u\\\\o\\nte\"} 18446744073709551615\n"
                              "x_seconds 1.250\n");
    free(text);
}

/* The shorthands write what family + sample(s) write. */
static void test_single_and_by_label(void **state)
{
    struct strbuf s = { 0 };
    metrics_single(&s, "open", "gauge", "Open now.", 3);
    static const char *const ways[] = { "udp", "tcp" };
    metrics_by_label(&s, "msgs_total", "counter", "By transport.", "transport", ways, (const uint64_t[]){ 5, 0 }, 2);
    metrics_by_label(&s, "none_total", "counter", "No samples.", "x", NULL, NULL, 0);
    char *text = take(&s);
    assert_string_equal(text, "# HELP open Open now.\n# TYPE open gauge\nopen 3\n"
                              "# HELP msgs_total By transport.\n# TYPE msgs_total counter\n"
                              "msgs_total{transport=\"udp\"} 5\nmsgs_total{transport=\"tcp\"} 0\n"
                              "# HELP none_total No samples.\n# TYPE none_total counter\n");
    free(text);
}

struct row {
    const char *name;
    uint64_t hits, codes[2];
};

static void row_labels(struct strbuf *out, const void *p)
{
    const struct row *r = p;
    metrics_label(out, "name", r->name, 1);
}

static void test_rows(void **state)
{
    static const struct metric_label_values code = { "code", { "ok", "bad" }, 2 };
    static const struct metric_row_family fams[] = {
        { "hits_total", "counter", "Hits.", offsetof(struct row, hits), NULL },
        { "codes_total", "counter", "Codes.", offsetof(struct row, codes), &code },
    };
    const struct row rows[] = { { "a", 1, { 2, 3 } }, { "b", 4, { 5, 6 } } };
    struct strbuf s = { 0 };
    metrics_emit_rows(&s, fams, 2, rows, 2, sizeof *rows, row_labels);
    char *text = take(&s);
    assert_string_equal(text, "# HELP hits_total Hits.\n# TYPE hits_total counter\n"
                              "hits_total{name=\"a\"} 1\nhits_total{name=\"b\"} 4\n"
                              "# HELP codes_total Codes.\n# TYPE codes_total counter\n"
                              "codes_total{name=\"a\",code=\"ok\"} 2\ncodes_total{name=\"a\",code=\"bad\"} 3\n"
                              "codes_total{name=\"b\",code=\"ok\"} 5\ncodes_total{name=\"b\",code=\"bad\"} 6\n");
    free(text);
    /* A family without rows still declares itself. */
    metrics_emit_rows(&s, fams, 1, rows, 0, sizeof *rows, row_labels);
    text = take(&s);
    assert_string_equal(text, "# HELP hits_total Hits.\n# TYPE hits_total counter\n");
    free(text);
}

static void collect_named(void *arg, struct strbuf *out)
{
    metrics_family(out, arg, "gauge", "A family.");
    metrics_sample(out, arg, NULL, 0, 1);
}

static void test_registry_order_and_limit(void **state)
{
    struct metrics_registry reg = { 0 };
    assert_int_equal(metrics_register(&reg, collect_named, "second_one"), 0);
    assert_int_equal(metrics_register(&reg, collect_named, "first_one"), 0);
    struct strbuf s = { 0 };
    metrics_collect(&reg, &s);
    char *text = take(&s);
    char *second = strstr(text, "# HELP second_one "), *first = strstr(text, "# HELP first_one ");
    assert_non_null(second);
    assert_non_null(first);
    assert_true(second < first); /* registration order, not names */
    free(text);
    for (size_t i = reg.n; i < METRICS_MAX_COLLECTORS; i++)
        assert_int_equal(metrics_register(&reg, collect_named, "more"), 0);
    assert_int_equal(metrics_register(&reg, collect_named, "one_too_many"), -1);
    assert_int_equal(reg.n, METRICS_MAX_COLLECTORS);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_family_and_samples),
        cmocka_unit_test(test_single_and_by_label),
        cmocka_unit_test(test_rows),
        cmocka_unit_test(test_registry_order_and_limit),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
