/* libFuzzer target: config_load_string() on arbitrary bytes.
 *
 * Beyond "no crash, no leak" (ASan), check the loader's contract: it
 * returns a config with no errors, or NULL with at least one error, and
 * every error is a single "fuzz.yaml:LINE: path: reason" line. The value
 * parsers get the same bytes as a C string.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/config.h"

static void check_error_line(const char *line)
{
    static const char prefix[] = "fuzz.yaml:";
    if (strncmp(line, prefix, sizeof prefix - 1) != 0)
        abort();
    const char *p = line + sizeof prefix - 1;
    if (*p < '0' || *p > '9')
        abort();
    while (*p >= '0' && *p <= '9')
        p++;
    if (p[0] != ':' || p[1] != ' ' || !strstr(p + 2, ": "))
        abort();
    if (strchr(line, '\n') || strchr(line, '\r'))
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct config_errors errs = { 0 };
    struct sl_config *cfg = config_load_string("fuzz.yaml", (const char *)data, size, &errs);
    if (cfg ? errs.n != 0 : errs.n == 0)
        abort();
    for (size_t i = 0; i < errs.n; i++)
        check_error_line(errs.lines[i]);
    config_free(cfg);
    config_errors_free(&errs);

    char *s = malloc(size + 1);
    if (!s)
        return 0;
    memcpy(s, data, size);
    s[size] = '\0';
    uint32_t v;
    parse_duration_ms(s, &v);
    parse_size(s, &v);
    free(s);
    return 0;
}
