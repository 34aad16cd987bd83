/* Prometheus metrics: one emitter and a registry of collectors.
 *
 * The admin server's /metrics is the process families (core/admin.c) and
 * then whatever the registered collectors write, in the order they were
 * registered. A tier registers a collector for each set of families it
 * owns (the pools view: listeners and backends; `sluice l4`: its XDP
 * counters) when its daemon starts; the core knows none of them.
 *
 * Every family is written the same way, by the functions below: a HELP and
 * a TYPE line, then its samples, `name{label="value",...} VALUE`, label
 * values escaped as the text format wants (backslash, double quote,
 * newline). A family with no samples still gets its HELP and TYPE lines.
 */
#ifndef SLUICE_CORE_METRICS_H
#define SLUICE_CORE_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "lib/strbuf.h"

#define METRICS_MAX_COLLECTORS 16

struct metric_label {
    const char *name;
    const char *value;
};

/* "# HELP name help\n# TYPE name type\n"; type is "counter" or "gauge". */
void metrics_family(struct strbuf *out, const char *name, const char *type, const char *help);

/* One sample: `name value` without labels, else `name{a="x",b="y"} value`. */
void metrics_sample(struct strbuf *out, const char *name, const struct metric_label *labels, size_t n_labels,
                    uint64_t value);

/* A family of one sample without labels: HELP, TYPE, `name value`. */
void metrics_single(struct strbuf *out, const char *name, const char *type, const char *help, uint64_t value);

/* A family with one label: `name{label="values[i]"} counts[i]` for each i. */
void metrics_by_label(struct strbuf *out, const char *name, const char *type, const char *help, const char *label,
                      const char *const *values, const uint64_t *counts, size_t n);

/* The same with a value already formatted (e.g. "12.345" seconds). */
void metrics_sample_text(struct strbuf *out, const char *name, const struct metric_label *labels, size_t n_labels,
                         const char *value);

/* `name="value"` with value escaped; a comma before it unless first. For
 * row label writers (metrics_emit_rows). */
void metrics_label(struct strbuf *out, const char *name, const char *value, int first);

/* ---- families over rows ----
 *
 * Several families that share their rows (one row per backend, say) are
 * described by a table: each family reads its value at `off` in the row,
 * a uint64_t, or with `extra` one uint64_t per value of an extra label
 * (responses by status class). */

struct metric_label_values {
    const char *name;
    const char *values[8];
    size_t n;
};

struct metric_row_family {
    const char *name, *type, *help;
    size_t off;                               /* of the first uint64_t value in a row */
    const struct metric_label_values *extra;  /* NULL: one value per row */
};

/* Every family of fams, each followed by its samples over rows[0..n_rows)
 * (row_size bytes apart); labels() writes a row's own labels with
 * metrics_label(). */
void metrics_emit_rows(struct strbuf *out, const struct metric_row_family *fams, size_t n_fams, const void *rows,
                       size_t n_rows, size_t row_size, void (*labels)(struct strbuf *out, const void *row));

/* ---- the registry ---- */

/* Writes families into out; the arg given to metrics_register. */
typedef void metrics_collect_fn(void *arg, struct strbuf *out);

struct metrics_registry {
    struct {
        metrics_collect_fn *fn;
        void *arg;
    } collectors[METRICS_MAX_COLLECTORS];
    size_t n;
};

/* Add a collector after those registered before. Returns 0, or -1 when
 * the registry is full (METRICS_MAX_COLLECTORS: a programming error). */
int metrics_register(struct metrics_registry *reg, metrics_collect_fn *fn, void *arg);

/* Run every collector, in order, into out. */
void metrics_collect(const struct metrics_registry *reg, struct strbuf *out);

#endif
