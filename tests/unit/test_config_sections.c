/* Unit tests for the core's section table (src/core/config.c): a tier's
 * section gets its root keys in document order, checks once the whole root
 * is read (after the core's own keys), its data through
 * config_section_data(), and unknown keys are judged against every
 * registered section. Two made-up sections stand for tiers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/config.h"
#include "core/config_walk.h"

#include "config_expect.h"

/* ---- "widgets": two root keys, checked together ---- */

struct widgets {
    uint32_t count;              /* "widgets: N" */
    char *colour;                /* "paint: {colour: NAME}" */
    int count_line;
    char order[16];              /* the keys as they came, then "c" for check */
    bool admin_seen;             /* check saw the core's admin.listen */
};

static int widgets_freed;

static void *widgets_create(void)
{
    struct widgets *w = calloc(1, sizeof *w);
    if (w)
        w->count = 1;            /* the default */
    return w;
}

static void paint_field(struct config_ctx *c, int key, const struct ynode *v, void *obj)
{
    config_get_text(c, v, "a colour", &((struct widgets *)obj)->colour);
}

static void widgets_parse(struct config_ctx *c, void *data, int key, const struct ynode *v)
{
    static const char *const paint_keys[] = { "colour", NULL };
    struct widgets *w = data;
    strncat(w->order, key == 0 ? "w" : "p", sizeof w->order - strlen(w->order) - 1);
    if (key == 0) {
        if (config_get_uint(c, v, 1, 10, &w->count))
            w->count_line = v->line;
    } else {
        config_walk_map(c, v, paint_keys, paint_field, w);
    }
}

/* Many widgets need a colour; and the core's keys are known by now. */
static void widgets_check(struct config_ctx *c, void *data)
{
    struct widgets *w = data;
    strncat(w->order, "c", sizeof w->order - strlen(w->order) - 1);
    w->admin_seen = !config_ctx_config(c)->admin_enabled;
    if (w->count > 5 && !w->colour)
        config_err_in(c, w->count_line, "widgets", "more than 5 widgets need paint.colour");
}

static void widgets_free(void *data)
{
    struct widgets *w = data;
    widgets_freed++;
    free(w->colour);
    free(w);
}

static const char *const widgets_keys[] = { "widgets", "paint", NULL };
static const struct config_section widgets_section = {
    .name = "widgets",
    .keys = widgets_keys,
    .create = widgets_create,
    .parse = widgets_parse,
    .check = widgets_check,
    .free = widgets_free,
};

/* ---- "gadget": one key, no check ---- */

static void *gadget_create(void)
{
    return calloc(1, sizeof(bool));
}

static void gadget_parse(struct config_ctx *c, void *data, int key, const struct ynode *v)
{
    config_get_bool(c, v, data);
}

static const char *const gadget_keys[] = { "gadget", NULL };
static const struct config_section gadget_section = {
    .name = "gadget", .keys = gadget_keys, .create = gadget_create, .parse = gadget_parse, .free = free,
};

/* ------------------------------------------------------------------------ */

static void test_registration(void **state)
{
    /* registered in main(); again is a no-op */
    assert_int_equal(config_register_section(&widgets_section), 0);
    /* a key the core or another section owns is refused */
    static const char *const log_key[] = { "log", NULL }, *const paint_key[] = { "paint", NULL };
    struct config_section clash = gadget_section;
    clash.keys = log_key;
    assert_int_equal(config_register_section(&clash), -1);
    clash.keys = paint_key;
    assert_int_equal(config_register_section(&clash), -1);
    /* so is a section without its functions */
    struct config_section incomplete = { .name = "x", .keys = gadget_keys };
    assert_int_equal(config_register_section(&incomplete), -1);
}

static void test_data_and_order(void **state)
{
    int freed = widgets_freed;
    struct sl_config *cfg = load_ok("paint: {colour: red}\nlog: {level: warn}\nadmin: {listen: off}\n"
                                    "widgets: 7\ngadget: true\n");
    struct widgets *w = config_section_data(cfg, &widgets_section);
    bool *g = config_section_data(cfg, &gadget_section);
    assert_non_null(w);
    assert_non_null(g);
    assert_int_equal(w->count, 7);
    assert_string_equal(w->colour, "red");
    assert_string_equal(w->order, "pwc");   /* document order, then the check */
    assert_true(w->admin_seen);
    assert_true(*g);
    assert_int_equal(cfg->log_level, LOG_LEVEL_WARN);
    /* a section the file does not mention is at its defaults */
    config_free(cfg);
    assert_int_equal(widgets_freed, freed + 1);
    cfg = load_ok("log: {level: info}\n");
    w = config_section_data(cfg, &widgets_section);
    assert_int_equal(w->count, 1);
    assert_string_equal(w->order, "c");
    config_free(cfg);
    /* a section never registered has no data */
    static const struct config_section stranger = { .name = "stranger" };
    assert_null(config_section_data(cfg = load_ok("gadget: false\n"), &stranger));
    config_free(cfg);
}

static void test_errors_across_sections(void **state)
{
    int freed = widgets_freed;
    /* every problem, in document order, then the checks' */
    const char *const want[] = {
        "t.yaml:1: widgets: expected an integer from 1 to 10, got \"11\"",
        "t.yaml:2: gadget: expected true or false, got \"maybe\"",
        "t.yaml:3: paint.colour: expected a colour, got \"\"",
    };
    expect_errors("widgets: 11\ngadget: maybe\npaint: {colour: \"\"}\n", want, 3);
    expect_error("widgets: 6\n", "t.yaml:1: widgets: more than 5 widgets need paint.colour");
    /* unknown keys are judged against every section's keys ... */
    expect_error("gadgets: true\n", "t.yaml:1: gadgets: unknown key (did you mean \"gadget\"?)");
    expect_error("widget: 2\n", "t.yaml:1: widget: unknown key (did you mean \"widgets\"?)");
    expect_error("admn: {}\n", "t.yaml:1: admn: unknown key (did you mean \"admin\"?)");
    expect_error("colour: red\n", "t.yaml:1: colour: unknown key");
    /* ... and a key twice is a duplicate, whoever owns it */
    expect_error("gadget: true\ngadget: false\n", "t.yaml:2: gadget: duplicate key (first set on line 1)");
    /* a failed load frees every section's data */
    assert_int_equal(widgets_freed, freed + 7);
}

int main(void)
{
    if (config_register_section(&widgets_section) < 0 || config_register_section(&gadget_section) < 0)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_registration),
        cmocka_unit_test(test_data_and_order),
        cmocka_unit_test(test_errors_across_sections),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
