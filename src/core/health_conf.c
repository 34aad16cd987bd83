/* The health_check: section, the same wherever a tier puts it (a proxy
 * pool's, an l4 service's): see health_conf.h. */
#include "core/health_conf.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

const char *const hc_type_names[] = {
    [HEALTH_NONE] = "none", [HEALTH_TCP] = "tcp", [HEALTH_HTTP] = "http", NULL,
};

void hc_conf_defaults(struct cfg_health *h)
{
    *h = (struct cfg_health){
        .type = HEALTH_NONE,
        .interval_ms = 2 * CONFIG_SECOND,
        .timeout_ms = 1 * CONFIG_SECOND,
        .rise = 2,
        .fall = 3,
        .http_path = config_xstrdup("/"),
        .status_min = 200,
        .status_max = 399,
    };
}

void hc_conf_free(struct cfg_health *h)
{
    free(h->http_path);
    free(h->http_host);
    h->http_path = h->http_host = NULL;
}

int hc_conf_copy(struct cfg_health *dst, const struct cfg_health *src)
{
    *dst = *src;
    dst->http_path = src->http_path ? strdup(src->http_path) : NULL;
    dst->http_host = src->http_host ? strdup(src->http_host) : NULL;
    if ((src->http_path && !dst->http_path) || (src->http_host && !dst->http_host)) {
        hc_conf_free(dst);
        return -1;
    }
    return 0;
}

static bool same_text(const char *a, const char *b)
{
    return strcmp(a ? a : "", b ? b : "") == 0;
}

bool hc_conf_equal(const struct cfg_health *a, const struct cfg_health *b)
{
    return a->type == b->type && a->interval_ms == b->interval_ms && a->timeout_ms == b->timeout_ms &&
           a->rise == b->rise && a->fall == b->fall && a->status_min == b->status_min &&
           a->status_max == b->status_max && same_text(a->http_path, b->http_path) &&
           same_text(a->http_host, b->http_host);
}

/* ------------------------------------------------------------------------
 * Reading it.
 */

struct health_state {
    struct cfg_health *h;
    int interval_line, timeout_line;
    int http_only_line; /* first of path/host/expect_status */
    const char *http_only_key;
};

enum { HK_TYPE, HK_INTERVAL, HK_TIMEOUT, HK_RISE, HK_FALL, HK_PATH, HK_HOST, HK_EXPECT_STATUS };
static const char *const health_keys[] = {
    "type", "interval", "timeout", "rise", "fall", "path", "host", "expect_status", NULL,
};

/* "200" or "200-399", codes 100..599. */
static bool get_status_range(struct config_ctx *c, const struct ynode *v, uint16_t *lo, uint16_t *hi)
{
    const char *want = "a status code or range like \"200\" or \"200-399\" (codes 100 to 599)";
    const char *s = config_scalar(c, v, want);
    uint32_t a, b;
    if (!s)
        return false;
    const char *dash = strchr(s, '-');
    char first[16];
    size_t flen = dash ? (size_t)(dash - s) : strlen(s);
    bool ok = flen < sizeof first;
    if (ok) {
        memcpy(first, s, flen);
        first[flen] = '\0';
        ok = config_parse_u32(first, &a) == 0 && (dash ? config_parse_u32(dash + 1, &b) == 0 : (b = a, true));
    }
    if (!ok || a < 100 || a > 599 || b < 100 || b > 599) {
        config_err_at(c, v->line, "expected %s, got \"%s\"", want, config_shown_str(c, s));
        return false;
    }
    if (a > b) {
        config_err_at(c, v->line, "range start %" PRIu32 " is greater than its end %" PRIu32, a, b);
        return false;
    }
    *lo = (uint16_t)a;
    *hi = (uint16_t)b;
    return true;
}

static void note_http_only(struct health_state *st, int key, const struct ynode *v)
{
    if (!st->http_only_line) {
        st->http_only_line = v->line;
        st->http_only_key = health_keys[key];
    }
}

static void health_field(struct config_ctx *c, int key, const struct ynode *v, void *obj)
{
    struct health_state *st = obj;
    struct cfg_health *h = st->h;
    int type;
    switch (key) {
    case HK_TYPE:
        if (config_get_enum(c, v, hc_type_names, &type))
            h->type = (enum health_type)type;
        break;
    case HK_INTERVAL:
        if (config_get_duration(c, v, 10, 24 * CONFIG_HOUR, &h->interval_ms))
            st->interval_line = v->line;
        break;
    case HK_TIMEOUT:
        if (config_get_duration(c, v, 1, 24 * CONFIG_HOUR, &h->timeout_ms))
            st->timeout_line = v->line;
        break;
    case HK_RISE:
        config_get_uint(c, v, 1, 100, &h->rise);
        break;
    case HK_FALL:
        config_get_uint(c, v, 1, 100, &h->fall);
        break;
    case HK_PATH: {
        const char *s = config_scalar(c, v, "a URL path starting with \"/\"");
        note_http_only(st, key, v);
        if (s && (s[0] != '/' || !config_is_visible(s)))
            config_err_at(c, v->line, "expected a URL path starting with \"/\" and without spaces, got \"%s\"",
                          config_shown_str(c, s));
        else if (s)
            config_set_str(&h->http_path, s);
        break;
    }
    case HK_HOST: {
        const char *s = config_scalar(c, v, "a host name");
        note_http_only(st, key, v);
        if (s && (!*s || !config_is_visible(s)))
            config_err_at(c, v->line, "expected a host name without spaces, got \"%s\"", config_shown_str(c, s));
        else if (s)
            config_set_str(&h->http_host, s);
        break;
    }
    case HK_EXPECT_STATUS:
        note_http_only(st, key, v);
        get_status_range(c, v, &h->status_min, &h->status_max);
        break;
    }
}

void hc_conf_parse(struct config_ctx *c, const struct ynode *v, struct cfg_health *h)
{
    struct health_state st = { .h = h };
    char a[16], b[16];
    if (!config_walk_map(c, v, health_keys, health_field, &st))
        return;
    /* Settings for HTTP checks under another type would be silently
     * ignored; most likely "type: http" was forgotten. */
    if (h->type != HEALTH_HTTP && st.http_only_line)
        config_err_in(c, st.http_only_line, st.http_only_key, "only used with type: http (type is %s)",
                      hc_type_names[h->type]);
    if (h->timeout_ms > h->interval_ms) {
        if (st.timeout_line)
            config_err_in(c, st.timeout_line, "timeout", "must not be longer than interval (%s)",
                          config_fmt_ms(a, sizeof a, h->interval_ms));
        else
            config_err_in(c, st.interval_line, "interval", "must not be shorter than timeout (%s)",
                          config_fmt_ms(b, sizeof b, h->timeout_ms));
    }
}
