/* See reg_model.h. Services live in a dense array indexed by a hash table
 * of their names; each service keeps its instances the same way, indexed
 * by id. Deletions swap the last element into the hole, so every array
 * stays dense and every lookup stays O(1). */
#include "lib/errbuf.h"
#include "registry/reg_model.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "lib/hash.h"
#include "registry/reg_model_priv.h"

/* p grown to hold at least need elements of size sz (the same p when it
 * already does); NULL when out of memory (p is then still valid). */
static void *reserve(void *p, uint32_t *cap, uint32_t need, size_t sz)
{
    if (need <= *cap)
        return p;
    uint64_t n = *cap ? (uint64_t)*cap * 2 : 8;
    while (n < need)
        n *= 2;
    if (n > UINT32_MAX)
        return NULL;
    void *q = realloc(p, (size_t)n * sz);
    if (q)
        *cap = (uint32_t)n;
    return q;
}

/* ---- the model --------------------------------------------------------- */

void reg_model_conf_defaults(struct reg_model_conf *c)
{
    *c = (struct reg_model_conf){
        .eviction_cap = 0.25,
        .eviction_interval_ms = 60000,
        .self_preservation = 0.85,
        .rate_window_ms = 60000,
        .self_preservation_min = 10,
        .grace_ms = 30000,
    };
}

int reg_model_conf_check(const struct reg_model_conf *c, char *err, size_t errlen)
{
    if (!(c->eviction_cap > 0 && c->eviction_cap <= 1))
        return errbuf_fail(err, errlen, "eviction_cap: must be more than 0 and at most 1");
    if (c->eviction_interval_ms < 100)
        return errbuf_fail(err, errlen, "eviction_interval: must be at least 100ms");
    if (!(c->self_preservation >= 0 && c->self_preservation <= 1))
        return errbuf_fail(err, errlen, "self_preservation: must be between 0 (off) and 1");
    if (c->rate_window_ms < 1000)
        return errbuf_fail(err, errlen, "rate_window: must be at least 1s");
    return 0;
}

static uint64_t random_seed(void)
{
    uint64_t s = 0;
    if (getrandom(&s, sizeof s, GRND_NONBLOCK) != (ssize_t)sizeof s)
        s = sl_mix64((uint64_t)(uintptr_t)&s); /* no entropy yet: at least not a constant */
    return s ? s : 1;
}

struct reg_model *reg_model_create(const struct reg_model_conf *conf, char *err, size_t errlen)
{
    if (reg_model_conf_check(conf, err, errlen) < 0)
        return NULL;
    struct reg_model *m = calloc(1, sizeof *m);
    if (!m) {
        errbuf_fail(err, errlen, "out of memory");
        return NULL;
    }
    m->conf = *conf;
    m->index = 1;
    uint64_t seed = conf->hash_seed ? conf->hash_seed : random_seed();
    reg_table_init(&m->by_name, seed);
    reg_table_init(&m->loc_by_name, sl_mix64(seed));
    return m;
}

static void free_instance(struct reg_instance *inst)
{
    for (uint32_t i = 0; i < inst->n_labels; i++) {
        free(inst->labels[i].key);
        free(inst->labels[i].value);
    }
    free(inst->labels);
    free(inst);
}

static void free_service(struct reg_service *svc)
{
    for (uint32_t i = 0; i < svc->n_instances; i++)
        free_instance(svc->instances[i]);
    free(svc->instances);
    reg_table_free(&svc->by_id);
    reg_service_settings_free(&svc->settings);
    reg_view_free(svc->view);
    free(svc);
}

void reg_model_free(struct reg_model *m)
{
    if (!m)
        return;
    for (uint32_t i = 0; i < m->n_services; i++)
        free_service(m->services[i]);
    free(m->services);
    reg_table_free(&m->by_name);
    for (uint32_t i = 0; i < m->n_locs; i++)
        free(m->loc_names[i]);
    free(m->loc_names);
    reg_table_free(&m->loc_by_name);
    free(m->scratch);
    free(m);
}

void reg_model_on_change(struct reg_model *m, reg_change_fn *fn, void *arg)
{
    m->on_change = fn;
    m->on_change_arg = arg;
}

uint64_t reg_model_index(const struct reg_model *m)
{
    return m->index;
}

void reg_model_stats(const struct reg_model *m, struct reg_model_stats *out)
{
    *out = m->st;
    out->services = m->n_services;
    out->instances = out->ephemeral = 0;
    for (uint32_t i = 0; i < m->n_services; i++) {
        out->instances += m->services[i]->n_instances;
        out->ephemeral += m->services[i]->n_ephemeral;
    }
}

void reg_model_changed(struct reg_model *m, struct reg_service *svc, struct reg_instance *inst,
                       enum reg_event_kind kind)
{
    uint64_t idx = ++m->index;
    if (svc) {
        svc->modify_index = idx;
        svc->view_dirty = true;
    }
    if (inst)
        inst->modify_index = idx;
    if (m->on_change) {
        struct reg_event ev = {.kind = kind, .service = svc, .instance = inst, .index = idx};
        m->on_change(m->on_change_arg, &ev);
    }
}

/* ---- names ------------------------------------------------------------- */

static bool loc_char_ok(char c)
{
    return isalnum((unsigned char)c) || c == '-' || c == '_' || c == '.';
}

/* A datacenter, region or owner name: [A-Za-z0-9._-], at most 63. */
static int loc_name_check(const char *what, const char *s, char *err, size_t errlen)
{
    size_t n = strlen(s);
    if (n > REG_LOC_NAME_MAX)
        return errbuf_fail(err, errlen, "%s: longer than %d characters", what, REG_LOC_NAME_MAX);
    for (size_t i = 0; i < n; i++)
        if (!loc_char_ok(s[i]))
            return errbuf_fail_name_char(err, errlen, what, s, i);
    return 0;
}

static int intern(struct reg_model *m, const char *name, uint32_t *id)
{
    size_t len = strlen(name);
    if (!len) {
        *id = 0;
        return 0;
    }
    uintptr_t found = (uintptr_t)reg_table_get(&m->loc_by_name, name, len);
    if (found) {
        *id = (uint32_t)found;
        return 0;
    }
    char **names = reserve(m->loc_names, &m->locs_cap, m->n_locs + 1, sizeof *m->loc_names);
    if (!names)
        return -ENOMEM;
    m->loc_names = names;
    char *copy = strdup(name);
    if (!copy)
        return -ENOMEM;
    uint32_t new_id = m->n_locs + 1;
    if (reg_table_put(&m->loc_by_name, copy, len, (void *)(uintptr_t)new_id) < 0) {
        free(copy);
        return -ENOMEM;
    }
    m->loc_names[m->n_locs++] = copy;
    *id = new_id;
    return 0;
}

int reg_model_loc(struct reg_model *m, const char *dc, const char *region, struct reg_loc *out,
                  char *err, size_t errlen)
{
    dc = dc ? dc : "";
    region = region ? region : "";
    if (loc_name_check("datacenter", dc, err, errlen) < 0 || loc_name_check("region", region, err, errlen) < 0)
        return -1;
    if (intern(m, dc, &out->dc) < 0 || intern(m, region, &out->region) < 0)
        return errbuf_fail(err, errlen, "out of memory");
    return 0;
}

const char *reg_model_loc_name(const struct reg_model *m, uint32_t id)
{
    return id >= 1 && id <= m->n_locs ? m->loc_names[id - 1] : "";
}

/* ---- services ---------------------------------------------------------- */

void reg_service_settings_defaults(struct reg_service_settings *s)
{
    *s = (struct reg_service_settings){
        .protect_threshold = 0,
        .locality = {.min_healthy = 1, .min_healthy_ratio = 0},
        .dns_ttl = 5,
        .answer_count = 1,
        .heartbeat_interval_ms = 5000,
        .heartbeat_timeout_ms = 15000,
        .expire_after_ms = 30000,
    };
    hc_conf_defaults(&s->health);
}

void reg_service_settings_free(struct reg_service_settings *s)
{
    hc_conf_free(&s->health);
}

static bool ratio_ok(double r)
{
    return r >= 0 && r <= 1; /* false for NaN too */
}

/* Printable ASCII without spaces: what goes into a check's request line
 * and Host header must not be able to add lines to it. */
static bool visible(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s <= 0x20 || (unsigned char)*s >= 0x7f)
            return false;
    return true;
}

/* The ranges of core/health_conf.h, for settings that come from the API
 * or the store rather than the config file. */
static int health_check_check(const struct cfg_health *h, char *err, size_t errlen)
{
    if ((unsigned)h->type > HEALTH_HTTP)
        return errbuf_fail(err, errlen, "health_check.type: must be none, tcp or http");
    if (h->interval_ms < 10 || h->interval_ms > 24 * 3600000u)
        return errbuf_fail(err, errlen, "health_check.interval: must be between 10ms and 24h");
    if (h->timeout_ms < 1 || h->timeout_ms > h->interval_ms)
        return errbuf_fail(err, errlen, "health_check.timeout: must be at least 1ms and not longer than interval");
    if (h->rise < 1 || h->rise > 100 || h->fall < 1 || h->fall > 100)
        return errbuf_fail(err, errlen, "health_check.%s: must be between 1 and 100",
                    h->rise < 1 || h->rise > 100 ? "rise" : "fall");
    if (h->status_min < 100 || h->status_max > 599 || h->status_min > h->status_max)
        return errbuf_fail(err, errlen, "health_check.expect_status: must be a range within 100-599");
    if (h->http_path && (h->http_path[0] != '/' || !visible(h->http_path) || strlen(h->http_path) > 1024))
        return errbuf_fail(err, errlen, "health_check.path: must start with \"/\", without spaces, at most 1024 bytes");
    if (h->http_host && (!*h->http_host || !visible(h->http_host) || strlen(h->http_host) > 255))
        return errbuf_fail(err, errlen, "health_check.host: must be a host name without spaces, at most 255 bytes");
    return 0;
}

int reg_service_settings_check(const struct reg_service_settings *s, char *err, size_t errlen)
{
    if (!ratio_ok(s->protect_threshold))
        return errbuf_fail(err, errlen, "protect_threshold: must be between 0 (off) and 1");
    if (!ratio_ok(s->locality.min_healthy_ratio))
        return errbuf_fail(err, errlen, "locality.min_healthy_ratio: must be between 0 and 1");
    if (s->locality.min_healthy > 1000000)
        return errbuf_fail(err, errlen, "locality.min_healthy: must be at most 1000000");
    if (s->dns_ttl > REG_TTL_MAX)
        return errbuf_fail(err, errlen, "dns_ttl: must be at most %d seconds", REG_TTL_MAX);
    if (s->answer_count < 1 || s->answer_count > REG_ANSWER_MAX)
        return errbuf_fail(err, errlen, "answer_count: must be between 1 and %d", REG_ANSWER_MAX);
    if (s->heartbeat_interval_ms < 100 || s->heartbeat_interval_ms > 3600000)
        return errbuf_fail(err, errlen, "heartbeat_interval: must be between 100ms and 1h");
    if (s->heartbeat_timeout_ms < s->heartbeat_interval_ms)
        return errbuf_fail(err, errlen, "heartbeat_timeout: must be at least heartbeat_interval");
    if (s->expire_after_ms < s->heartbeat_timeout_ms)
        return errbuf_fail(err, errlen, "expire_after: must be at least heartbeat_timeout");
    return health_check_check(&s->health, err, errlen);
}

static bool settings_equal(const struct reg_service_settings *a, const struct reg_service_settings *b)
{
    return a->protect_threshold == b->protect_threshold && hc_conf_equal(&a->health, &b->health) &&
           a->locality.min_healthy == b->locality.min_healthy &&
           a->locality.min_healthy_ratio == b->locality.min_healthy_ratio && a->dns_ttl == b->dns_ttl &&
           a->answer_count == b->answer_count && a->heartbeat_interval_ms == b->heartbeat_interval_ms &&
           a->heartbeat_timeout_ms == b->heartbeat_timeout_ms && a->expire_after_ms == b->expire_after_ms;
}

int reg_service_name_check(const char *name, char *err, size_t errlen)
{
    size_t n = strlen(name);
    if (n == 0)
        return errbuf_fail(err, errlen, "service name: empty");
    if (n > REG_NAME_MAX)
        return errbuf_fail(err, errlen, "service name: longer than %d characters (one DNS label)", REG_NAME_MAX);
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        if (!isalnum((unsigned char)c) && c != '-')
            return errbuf_fail(err, errlen, "service name: \"%s\" may hold only letters, digits and '-' (one DNS label)",
                        name);
    }
    if (name[0] == '-' || name[n - 1] == '-')
        return errbuf_fail(err, errlen, "service name: \"%s\" may not begin or end with '-'", name);
    return 0;
}

/* Lower-case a name of at most REG_NAME_MAX bytes into buf; false if longer. */
static bool fold_name(const char *name, size_t len, char buf[REG_NAME_MAX + 1])
{
    if (len > REG_NAME_MAX)
        return false;
    for (size_t i = 0; i < len; i++)
        buf[i] = (char)tolower((unsigned char)name[i]);
    buf[len] = '\0';
    return true;
}

struct reg_service *reg_service_find(const struct reg_model *m, const char *name, size_t len)
{
    char key[REG_NAME_MAX + 1];
    if (!fold_name(name, len, key))
        return NULL;
    return reg_table_get(&m->by_name, key, len);
}

static void set_ratios(struct reg_service *svc)
{
    svc->protect_ppm = (uint32_t)llround(svc->settings.protect_threshold * 1e6);
    svc->min_ratio_ppm = (uint32_t)llround(svc->settings.locality.min_healthy_ratio * 1e6);
}

static struct reg_service *new_service(struct reg_model *m, const char *key, char *err, size_t errlen)
{
    struct reg_service **arr = reserve(m->services, &m->services_cap, m->n_services + 1, sizeof *m->services);
    if (!arr) {
        errbuf_fail(err, errlen, "out of memory");
        return NULL;
    }
    m->services = arr;
    struct reg_service *svc = calloc(1, sizeof *svc);
    if (!svc) {
        errbuf_fail(err, errlen, "out of memory");
        return NULL;
    }
    snprintf(svc->name, sizeof svc->name, "%s", key);
    reg_service_settings_defaults(&svc->settings);
    reg_table_init(&svc->by_id, sl_mix64(m->by_name.seed ^ (uint64_t)(uintptr_t)svc));
    if (reg_table_put(&m->by_name, svc->name, strlen(svc->name), svc) < 0) {
        free_service(svc);
        errbuf_fail(err, errlen, "out of memory");
        return NULL;
    }
    set_ratios(svc);
    svc->slot = m->n_services;
    m->services[m->n_services++] = svc;
    svc->view_dirty = true;
    return svc;
}

/* Take a service out of the index and the array and free it. */
static void drop_service(struct reg_model *m, struct reg_service *svc)
{
    reg_table_del(&m->by_name, svc->name, strlen(svc->name));
    struct reg_service *last = m->services[--m->n_services];
    m->services[svc->slot] = last;
    last->slot = svc->slot;
    free_service(svc);
}

int reg_service_put(struct reg_model *m, const char *name, const struct reg_service_settings *s,
                    struct reg_service **out, char *err, size_t errlen)
{
    if (reg_service_name_check(name, err, errlen) < 0)
        return -1;
    if (s && reg_service_settings_check(s, err, errlen) < 0)
        return -1;
    char key[REG_NAME_MAX + 1];
    fold_name(name, strlen(name), key);
    struct reg_service *svc = reg_table_get(&m->by_name, key, strlen(key));
    bool created = false;
    if (!svc) {
        svc = new_service(m, key, err, errlen);
        if (!svc)
            return -1;
        created = true;
    }
    bool changed = created;
    if (s && !settings_equal(&svc->settings, s)) {
        struct reg_service_settings copy = *s;
        if (hc_conf_copy(&copy.health, &s->health) < 0) {
            if (created)
                drop_service(m, svc);
            return errbuf_fail(err, errlen, "out of memory");
        }
        reg_service_settings_free(&svc->settings);
        svc->settings = copy;
        set_ratios(svc);
        changed = true;
    }
    if (changed) {
        if (created)
            svc->create_index = m->index + 1;
        reg_model_changed(m, svc, NULL, REG_EV_SERVICE_PUT);
    }
    if (out)
        *out = svc;
    return 0;
}

int reg_service_delete(struct reg_model *m, const char *name)
{
    char key[REG_NAME_MAX + 1];
    if (!fold_name(name, strlen(name), key))
        return -1;
    struct reg_service *svc = reg_table_get(&m->by_name, key, strlen(key));
    if (!svc)
        return -1;
    m->st.deregistrations += svc->n_instances;
    reg_model_changed(m, svc, NULL, REG_EV_SERVICE_DELETE);
    drop_service(m, svc);
    return 0;
}

uint32_t reg_model_service_count(const struct reg_model *m)
{
    return m->n_services;
}

struct reg_service *reg_model_service_at(const struct reg_model *m, uint32_t i)
{
    return i < m->n_services ? m->services[i] : NULL;
}

/* ---- instances --------------------------------------------------------- */

static bool id_char_ok(char c)
{
    return isalnum((unsigned char)c) || strchr("-._:[]@~+", c) != NULL;
}

static bool label_key_char_ok(char c)
{
    return isalnum((unsigned char)c) || c == '-' || c == '_' || c == '.' || c == '/';
}

static int labels_check(const struct reg_label *labels, uint32_t n, char *err, size_t errlen)
{
    if (n > REG_LABELS_MAX)
        return errbuf_fail(err, errlen, "labels: more than %d", REG_LABELS_MAX);
    if (n && !labels)
        return errbuf_fail(err, errlen, "labels: missing");
    for (uint32_t i = 0; i < n; i++) {
        const char *k = labels[i].key, *v = labels[i].value;
        if (!k || !*k || strlen(k) > REG_LABEL_KEY_MAX)
            return errbuf_fail(err, errlen, "labels: a key must have 1 to %d characters", REG_LABEL_KEY_MAX);
        for (const char *p = k; *p; p++)
            if (!label_key_char_ok(*p))
                return errbuf_fail(err, errlen, "labels: key \"%s\" may hold only letters, digits, '-', '_', '.' and '/'", k);
        if (!v || strlen(v) > REG_LABEL_VALUE_MAX)
            return errbuf_fail(err, errlen, "labels.%s: a value must have at most %d characters", k, REG_LABEL_VALUE_MAX);
        for (const char *p = v; *p; p++)
            if ((unsigned char)*p < 0x20 || (unsigned char)*p > 0x7e)
                return errbuf_fail(err, errlen, "labels.%s: the value may hold only printable ASCII", k);
        for (uint32_t j = 0; j < i; j++)
            if (strcmp(labels[j].key, k) == 0)
                return errbuf_fail(err, errlen, "labels: key \"%s\" given twice", k);
    }
    return 0;
}

int reg_instance_spec_check(const struct reg_instance_spec *spec, char *err, size_t errlen)
{
    const char *id = spec->id && *spec->id ? spec->id : spec->addr.text;
    size_t n = strlen(id);
    if (n == 0)
        return errbuf_fail(err, errlen, "id: empty (and no address to default to)");
    if (n > REG_ID_MAX)
        return errbuf_fail(err, errlen, "id: longer than %d characters", REG_ID_MAX);
    for (size_t i = 0; i < n; i++)
        if (!id_char_ok(id[i]))
            return errbuf_fail(err, errlen, "id: \"%s\" may hold only letters, digits and -._:[]@~+", id);
    sa_family_t fam = spec->addr.ss.ss_family;
    if (fam != AF_INET && fam != AF_INET6)
        return errbuf_fail(err, errlen, "address: missing or not IPv4/IPv6");
    if (addr_port(&spec->addr) == 0)
        return errbuf_fail(err, errlen, "address: port 0");
    if (spec->weight > REG_WEIGHT_MAX)
        return errbuf_fail(err, errlen, "weight: must be between 0 and %d", REG_WEIGHT_MAX);
    if (loc_name_check("datacenter", spec->datacenter ? spec->datacenter : "", err, errlen) < 0 ||
        loc_name_check("region", spec->region ? spec->region : "", err, errlen) < 0 ||
        loc_name_check("owner", spec->owner ? spec->owner : "", err, errlen) < 0)
        return -1;
    return labels_check(spec->labels, spec->n_labels, err, errlen);
}

struct reg_instance *reg_instance_find(const struct reg_service *svc, const char *id)
{
    return reg_table_get(&svc->by_id, id, strlen(id));
}

void reg_model_apply_health(struct reg_instance *inst, enum reg_health h, const char *reason, uint64_t now_ms)
{
    inst->health = h;
    inst->health_changed_ms = now_ms;
    snprintf(inst->health_reason, sizeof inst->health_reason, "%s", reason ? reason : "");
    for (char *p = inst->health_reason; *p; p++)
        if ((unsigned char)*p < 0x20 || (unsigned char)*p == 0x7f)
            *p = '?';
}

static int copy_labels(struct reg_instance *inst, const struct reg_label *labels, uint32_t n)
{
    struct reg_label *copy = n ? calloc(n, sizeof *copy) : NULL;
    if (n && !copy)
        return -ENOMEM;
    for (uint32_t i = 0; i < n; i++) {
        copy[i].key = strdup(labels[i].key);
        copy[i].value = strdup(labels[i].value);
        if (!copy[i].key || !copy[i].value) {
            for (uint32_t j = 0; j <= i; j++) {
                free(copy[j].key);
                free(copy[j].value);
            }
            free(copy);
            return -ENOMEM;
        }
    }
    for (uint32_t i = 0; i < inst->n_labels; i++) {
        free(inst->labels[i].key);
        free(inst->labels[i].value);
    }
    free(inst->labels);
    inst->labels = copy;
    inst->n_labels = n;
    return 0;
}

static bool labels_equal(const struct reg_instance *inst, const struct reg_label *labels, uint32_t n)
{
    if (inst->n_labels != n)
        return false;
    for (uint32_t i = 0; i < n; i++)
        if (strcmp(inst->labels[i].key, labels[i].key) || strcmp(inst->labels[i].value, labels[i].value))
            return false;
    return true;
}

/* Whether a registration would change anything but health and times. */
static bool spec_differs(const struct reg_instance *inst, const struct reg_instance_spec *spec, struct reg_loc loc)
{
    return !addr_equal(&inst->addr, &spec->addr) || inst->weight != spec->weight || inst->loc.dc != loc.dc ||
           inst->loc.region != loc.region || inst->enabled != spec->enabled ||
           inst->ephemeral != spec->ephemeral || strcmp(inst->owner, spec->owner ? spec->owner : "") != 0 ||
           !labels_equal(inst, spec->labels, spec->n_labels);
}

static bool is_remote(const struct reg_model *m, const struct reg_instance *inst)
{
    return m->node[0] && inst->ephemeral && strcmp(inst->owner, m->node) != 0;
}

void reg_model_set_node(struct reg_model *m, const char *node)
{
    snprintf(m->node, sizeof m->node, "%s", node ? node : "");
    for (uint32_t s = 0; s < m->n_services; s++)
        for (uint32_t i = 0; i < m->services[s]->n_instances; i++)
            m->services[s]->instances[i]->remote = is_remote(m, m->services[s]->instances[i]);
}

/* Set what a registration says; health and times are the caller's. The
 * service's ephemeral count follows an instance already in it. */
static int assign_spec(struct reg_model *m, struct reg_instance *inst, const struct reg_instance_spec *spec,
                       struct reg_loc loc)
{
    if (!labels_equal(inst, spec->labels, spec->n_labels) && copy_labels(inst, spec->labels, spec->n_labels) < 0)
        return -ENOMEM;
    struct reg_service *svc = inst->service;
    if (inst->ephemeral != spec->ephemeral && inst->slot != UINT32_MAX) {
        if (spec->ephemeral)
            svc->n_ephemeral++;
        else
            svc->n_ephemeral--;
    }
    inst->addr = spec->addr;
    inst->weight = spec->weight;
    inst->loc = loc;
    inst->datacenter = reg_model_loc_name(m, loc.dc);
    inst->region = reg_model_loc_name(m, loc.region);
    inst->enabled = spec->enabled;
    inst->ephemeral = spec->ephemeral;
    snprintf(inst->owner, sizeof inst->owner, "%s", spec->owner ? spec->owner : "");
    inst->remote = is_remote(m, inst);
    return 0;
}

static void initial_health(struct reg_instance *inst, const struct reg_instance_spec *spec, uint64_t now_ms)
{
    const char *reason = spec->health_reason ? spec->health_reason : "registered, not checked yet";
    reg_model_apply_health(inst, spec->down ? REG_HEALTH_DOWN : REG_HEALTH_UP, reason, now_ms);
    inst->down_by_silence = false;
}

static int add_instance(struct reg_model *m, struct reg_service *svc, const struct reg_instance_spec *spec,
                        const char *id, struct reg_loc loc, uint64_t now_ms, struct reg_instance **out)
{
    struct reg_instance **arr = reserve(svc->instances, &svc->n_cap, svc->n_instances + 1, sizeof *svc->instances);
    if (!arr)
        return -ENOMEM;
    svc->instances = arr;
    struct reg_instance *inst = calloc(1, sizeof *inst);
    if (!inst)
        return -ENOMEM;
    snprintf(inst->id, sizeof inst->id, "%s", id);
    inst->service = svc;
    inst->slot = UINT32_MAX; /* not counted yet */
    if (assign_spec(m, inst, spec, loc) < 0 ||
        reg_table_put(&svc->by_id, inst->id, strlen(inst->id), inst) < 0) {
        free_instance(inst);
        return -ENOMEM;
    }
    inst->slot = svc->n_instances;
    svc->instances[svc->n_instances++] = inst;
    if (inst->ephemeral)
        svc->n_ephemeral++;
    initial_health(inst, spec, now_ms);
    inst->registered_ms = inst->last_heartbeat_ms = now_ms;
    inst->create_index = m->index + 1;
    *out = inst;
    return 0;
}

static void count_heartbeat(struct reg_model *m, uint64_t now_ms);

static int put_instance(struct reg_model *m, struct reg_service *svc, const struct reg_instance_spec *spec,
                        uint64_t now_ms, bool loading, struct reg_instance **out, char *err, size_t errlen)
{
    if (reg_instance_spec_check(spec, err, errlen) < 0)
        return -1;
    struct reg_loc loc;
    if (reg_model_loc(m, spec->datacenter, spec->region, &loc, err, errlen) < 0)
        return -1;
    const char *id = spec->id && *spec->id ? spec->id : spec->addr.text;
    struct reg_instance *inst = reg_instance_find(svc, id);
    bool changed = true;
    if (!inst) {
        if (add_instance(m, svc, spec, id, loc, now_ms, &inst) < 0)
            return errbuf_fail(err, errlen, "out of memory");
        m->st.registrations++;
    } else {
        bool moved = !addr_equal(&inst->addr, &spec->addr);
        changed = spec_differs(inst, spec, loc);
        if (changed && assign_spec(m, inst, spec, loc) < 0)
            return errbuf_fail(err, errlen, "out of memory");
        if (moved || loading) {
            initial_health(inst, spec, now_ms);
            changed = true;
        } else if (inst->ephemeral && inst->health == REG_HEALTH_DOWN && inst->down_by_silence) {
            reg_model_apply_health(inst, REG_HEALTH_UP, "registered again", now_ms);
            inst->down_by_silence = false;
            changed = true;
        }
        inst->last_heartbeat_ms = now_ms;
    }
    if (loading) {
        inst->registered_ms = inst->last_heartbeat_ms = now_ms;
        inst->grace_until_ms = inst->ephemeral ? now_ms + m->conf.grace_ms : 0;
    } else if (inst->ephemeral && !inst->remote) {
        count_heartbeat(m, now_ms); /* a registration is a sign of life, as a heartbeat is */
    }
    if (changed)
        reg_model_changed(m, svc, inst, REG_EV_INSTANCE_PUT);
    if (out)
        *out = inst;
    return 0;
}

int reg_instance_put(struct reg_model *m, struct reg_service *svc, const struct reg_instance_spec *spec,
                     uint64_t now_ms, struct reg_instance **out, char *err, size_t errlen)
{
    return put_instance(m, svc, spec, now_ms, false, out, err, errlen);
}

int reg_instance_load(struct reg_model *m, struct reg_service *svc, const struct reg_instance_spec *spec,
                      uint64_t now_ms, struct reg_instance **out, char *err, size_t errlen)
{
    return put_instance(m, svc, spec, now_ms, true, out, err, errlen);
}

void reg_model_remove_instance(struct reg_model *m, struct reg_instance *inst, enum reg_event_kind kind)
{
    struct reg_service *svc = inst->service;
    reg_model_changed(m, svc, inst, kind);
    reg_table_del(&svc->by_id, inst->id, strlen(inst->id));
    struct reg_instance *last = svc->instances[--svc->n_instances];
    svc->instances[inst->slot] = last;
    last->slot = inst->slot;
    if (inst->ephemeral)
        svc->n_ephemeral--;
    free_instance(inst);
}

int reg_instance_delete(struct reg_model *m, struct reg_service *svc, const char *id)
{
    struct reg_instance *inst = reg_instance_find(svc, id);
    if (!inst)
        return -1;
    m->st.deregistrations++;
    reg_model_remove_instance(m, inst, REG_EV_INSTANCE_DELETE);
    return 0;
}

/* Signs of life (heartbeats and registrations of ephemeral instances) are
 * counted in the bucket of now, for self-preservation (reg_expiry.c). */
static void count_heartbeat(struct reg_model *m, uint64_t now_ms)
{
    uint64_t bucket_ms = m->conf.rate_window_ms / REG_RATE_BUCKETS;
    uint64_t no = now_ms / bucket_ms;
    unsigned slot = (unsigned)(no % REG_RATE_BUCKETS);
    if (m->hb_bucket_no[slot] != no) {
        m->hb_bucket_no[slot] = no;
        m->hb_count[slot] = 0;
    }
    m->hb_count[slot]++;
}

bool reg_instance_heartbeat(struct reg_model *m, struct reg_instance *inst, uint64_t now_ms)
{
    m->st.heartbeats++;
    if (!inst->ephemeral)
        return false;
    count_heartbeat(m, now_ms);
    if (now_ms > inst->last_heartbeat_ms)
        inst->last_heartbeat_ms = now_ms;
    if (inst->health == REG_HEALTH_DOWN && inst->down_by_silence) {
        reg_model_apply_health(inst, REG_HEALTH_UP, "heartbeat resumed", now_ms);
        inst->down_by_silence = false;
        reg_model_changed(m, inst->service, inst, REG_EV_INSTANCE_CHANGE);
        return true;
    }
    return false;
}

int reg_instance_set_weight(struct reg_model *m, struct reg_instance *inst, uint32_t weight)
{
    if (weight > REG_WEIGHT_MAX)
        return -1;
    if (inst->weight != weight) {
        inst->weight = weight;
        reg_model_changed(m, inst->service, inst, REG_EV_INSTANCE_CHANGE);
    }
    return 0;
}

void reg_instance_set_enabled(struct reg_model *m, struct reg_instance *inst, bool enabled)
{
    if (inst->enabled != enabled) {
        inst->enabled = enabled;
        reg_model_changed(m, inst->service, inst, REG_EV_INSTANCE_CHANGE);
    }
}

void reg_instance_set_health(struct reg_model *m, struct reg_instance *inst, enum reg_health h,
                             const char *reason, uint64_t now_ms)
{
    inst->down_by_silence = false; /* whoever set it now owns it */
    if (inst->health == h)
        return;
    reg_model_apply_health(inst, h, reason, now_ms);
    reg_model_changed(m, inst->service, inst, REG_EV_INSTANCE_CHANGE);
}

void reg_instance_spec_of(const struct reg_instance *inst, struct reg_instance_spec *out)
{
    *out = (struct reg_instance_spec){
        .id = inst->id,
        .addr = inst->addr,
        .weight = inst->weight,
        .datacenter = inst->datacenter,
        .region = inst->region,
        .labels = inst->labels,
        .n_labels = inst->n_labels,
        .enabled = inst->enabled,
        .ephemeral = inst->ephemeral,
        .owner = inst->owner,
        .down = inst->health == REG_HEALTH_DOWN,
        .health_reason = inst->health_reason,
    };
}

const char *reg_health_name(enum reg_health h)
{
    return h == REG_HEALTH_UP ? "up" : "down";
}
