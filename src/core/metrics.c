/* See metrics.h. */
#include "core/metrics.h"

#include <inttypes.h>
#include <stdio.h>

void metrics_family(struct strbuf *out, const char *name, const char *type, const char *help)
{
    strbuf_printf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* Prometheus label values escape exactly backslash, double quote and
 * newline; everything else is taken verbatim. */
static void label_value(struct strbuf *out, const char *v)
{
    for (; *v; v++) {
        if (*v == '\\')
            strbuf_puts(out, "\\\\");
        else if (*v == '"')
            strbuf_puts(out, "\\\"");
        else if (*v == '\n')
            strbuf_puts(out, "\\n");
        else
            strbuf_put(out, v, 1);
    }
}

void metrics_label(struct strbuf *out, const char *name, const char *value, int first)
{
    if (!first)
        strbuf_puts(out, ",");
    strbuf_puts(out, name);
    strbuf_puts(out, "=\"");
    label_value(out, value ? value : "");
    strbuf_puts(out, "\"");
}

void metrics_sample_text(struct strbuf *out, const char *name, const struct metric_label *labels, size_t n_labels,
                         const char *value)
{
    strbuf_puts(out, name);
    if (n_labels) {
        strbuf_puts(out, "{");
        for (size_t i = 0; i < n_labels; i++)
            metrics_label(out, labels[i].name, labels[i].value, i == 0);
        strbuf_puts(out, "}");
    }
    strbuf_printf(out, " %s\n", value);
}

void metrics_sample(struct strbuf *out, const char *name, const struct metric_label *labels, size_t n_labels,
                    uint64_t value)
{
    char text[24];
    snprintf(text, sizeof text, "%" PRIu64, value);
    metrics_sample_text(out, name, labels, n_labels, text);
}

void metrics_single(struct strbuf *out, const char *name, const char *type, const char *help, uint64_t value)
{
    metrics_family(out, name, type, help);
    metrics_sample(out, name, NULL, 0, value);
}

void metrics_by_label(struct strbuf *out, const char *name, const char *type, const char *help, const char *label,
                      const char *const *values, const uint64_t *counts, size_t n)
{
    metrics_family(out, name, type, help);
    for (size_t i = 0; i < n; i++)
        metrics_sample(out, name, &(struct metric_label){ label, values[i] }, 1, counts[i]);
}

/* The samples of one family for one row: one line, or one per value of
 * the family's extra label. */
static void row_samples(struct strbuf *out, const struct metric_row_family *f, const void *row,
                        void (*labels)(struct strbuf *, const void *))
{
    const uint64_t *vals = (const uint64_t *)((const char *)row + f->off);
    size_t n = f->extra ? f->extra->n : 1;
    for (size_t k = 0; k < n; k++) {
        strbuf_puts(out, f->name);
        strbuf_puts(out, "{");
        labels(out, row);
        if (f->extra)
            metrics_label(out, f->extra->name, f->extra->values[k], 0);
        strbuf_printf(out, "} %" PRIu64 "\n", vals[k]);
    }
}

void metrics_emit_rows(struct strbuf *out, const struct metric_row_family *fams, size_t n_fams, const void *rows,
                       size_t n_rows, size_t row_size, void (*labels)(struct strbuf *out, const void *row))
{
    for (size_t f = 0; f < n_fams; f++) {
        metrics_family(out, fams[f].name, fams[f].type, fams[f].help);
        for (size_t r = 0; r < n_rows; r++)
            row_samples(out, &fams[f], (const char *)rows + r * row_size, labels);
    }
}

int metrics_register(struct metrics_registry *reg, metrics_collect_fn *fn, void *arg)
{
    if (reg->n == METRICS_MAX_COLLECTORS)
        return -1;
    reg->collectors[reg->n].fn = fn;
    reg->collectors[reg->n].arg = arg;
    reg->n++;
    return 0;
}

void metrics_collect(const struct metrics_registry *reg, struct strbuf *out)
{
    for (size_t i = 0; i < reg->n; i++)
        reg->collectors[i].fn(reg->collectors[i].arg, out);
}
