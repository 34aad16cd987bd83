/* Cluster mode's feed (see reg_cluster.h): etcd's content and changes
 * applied to the model, the live members and the duty over them, the
 * holds of a dead node's instances, the stale state, and the JSON values
 * of the keys. */
#include "lib/errbuf.h"
#include "registry/reg_etcd_store_priv.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/hash.h"

#define LOAD_RETRY_MS 1000
#define HOLD_TICK_MS 500
#define DUTY_SEED 0x5c1u /* fixed: every node must compute the same duty */

int es_key(const struct etcd_store *s, char *out, size_t cap, const char *kind, const char *a, const char *b)
{
    int n = b ? snprintf(out, cap, "%s%s%s/%s", s->conf.prefix, kind, a, b)
              : snprintf(out, cap, "%s%s%s", s->conf.prefix, kind, a);
    return n < 0 || (size_t)n >= cap ? -1 : 0;
}

/* ---- values ------------------------------------------------------------------------ */

char *reg_cluster_service_json(const struct reg_service_settings *v)
{
    const struct cfg_health *h = &v->health;
    const char *type = (unsigned)h->type <= HEALTH_HTTP ? hc_type_names[h->type] : "none";
    json_t *health = json_pack("{sssIsIsIsIsIsI}", "type", type, "interval_ms", (json_int_t)h->interval_ms,
                               "timeout_ms", (json_int_t)h->timeout_ms, "rise", (json_int_t)h->rise, "fall",
                               (json_int_t)h->fall, "status_min", (json_int_t)h->status_min, "status_max",
                               (json_int_t)h->status_max);
    if (health && h->http_path)
        json_object_set_new(health, "path", json_string(h->http_path));
    if (health && h->http_host)
        json_object_set_new(health, "host", json_string(h->http_host));
    json_t *o = health ? json_pack("{sfsIsfsIsIsIsIsIso}", "protect_threshold", v->protect_threshold, "min_healthy",
                                   (json_int_t)v->locality.min_healthy, "min_healthy_ratio",
                                   v->locality.min_healthy_ratio, "dns_ttl", (json_int_t)v->dns_ttl, "answer_count",
                                   (json_int_t)v->answer_count, "heartbeat_interval_ms",
                                   (json_int_t)v->heartbeat_interval_ms, "heartbeat_timeout_ms",
                                   (json_int_t)v->heartbeat_timeout_ms, "expire_after_ms",
                                   (json_int_t)v->expire_after_ms, "health", health)
                       : NULL;
    char *text = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    return text;
}

static int get_u32(const json_t *o, const char *name, uint32_t max, uint32_t *out, char *err, size_t errlen)
{
    const json_t *v = json_object_get(o, name);
    if (!v)
        return 0; /* keep the default */
    if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > (json_int_t)max)
        return errbuf_fail(err, errlen, "%s: not a number in 0..%u", name, max);
    *out = (uint32_t)json_integer_value(v);
    return 0;
}

static int get_ratio(const json_t *o, const char *name, double *out, char *err, size_t errlen)
{
    const json_t *v = json_object_get(o, name);
    if (!v)
        return 0;
    if (!json_is_number(v))
        return errbuf_fail(err, errlen, "%s: not a number", name);
    *out = json_number_value(v);
    return 0;
}

static int get_str(const json_t *o, const char *name, char **out, char *err, size_t errlen)
{
    const json_t *v = json_object_get(o, name);
    if (!v)
        return 0;
    if (!json_is_string(v))
        return errbuf_fail(err, errlen, "%s: not a string", name);
    free(*out);
    *out = strdup(json_string_value(v));
    return *out ? 0 : errbuf_fail(err, errlen, "out of memory");
}

static int parse_health(const json_t *h, struct cfg_health *out, char *err, size_t errlen)
{
    if (!h)
        return 0;
    if (!json_is_object(h))
        return errbuf_fail(err, errlen, "health: not an object");
    const json_t *type = json_object_get(h, "type");
    if (type) {
        int t = -1;
        for (int i = 0; json_is_string(type) && hc_type_names[i]; i++)
            if (strcmp(hc_type_names[i], json_string_value(type)) == 0)
                t = i;
        if (t < 0)
            return errbuf_fail(err, errlen, "health.type: not none, tcp or http");
        out->type = (enum health_type)t;
    }
    uint32_t smin = out->status_min, smax = out->status_max;
    if (get_u32(h, "interval_ms", UINT32_MAX, &out->interval_ms, err, errlen) < 0 ||
        get_u32(h, "timeout_ms", UINT32_MAX, &out->timeout_ms, err, errlen) < 0 ||
        get_u32(h, "rise", UINT32_MAX, &out->rise, err, errlen) < 0 ||
        get_u32(h, "fall", UINT32_MAX, &out->fall, err, errlen) < 0 ||
        get_u32(h, "status_min", 999, &smin, err, errlen) < 0 || get_u32(h, "status_max", 999, &smax, err, errlen) < 0 ||
        get_str(h, "path", &out->http_path, err, errlen) < 0 || get_str(h, "host", &out->http_host, err, errlen) < 0)
        return -1;
    out->status_min = (uint16_t)smin;
    out->status_max = (uint16_t)smax;
    return 0;
}

int reg_cluster_service_parse(const char *text, size_t len, struct reg_service_settings *out, char *err,
                              size_t errlen)
{
    reg_service_settings_defaults(out);
    json_error_t je;
    json_t *o = json_loadb(text, len, 0, &je);
    int rc = 0;
    if (!json_is_object(o))
        rc = errbuf_fail(err, errlen, "settings: not a JSON object%s%s", o ? "" : ": ", o ? "" : je.text);
    else if (get_ratio(o, "protect_threshold", &out->protect_threshold, err, errlen) < 0 ||
             get_u32(o, "min_healthy", UINT32_MAX, &out->locality.min_healthy, err, errlen) < 0 ||
             get_ratio(o, "min_healthy_ratio", &out->locality.min_healthy_ratio, err, errlen) < 0 ||
             get_u32(o, "dns_ttl", UINT32_MAX, &out->dns_ttl, err, errlen) < 0 ||
             get_u32(o, "answer_count", UINT32_MAX, &out->answer_count, err, errlen) < 0 ||
             get_u32(o, "heartbeat_interval_ms", UINT32_MAX, &out->heartbeat_interval_ms, err, errlen) < 0 ||
             get_u32(o, "heartbeat_timeout_ms", UINT32_MAX, &out->heartbeat_timeout_ms, err, errlen) < 0 ||
             get_u32(o, "expire_after_ms", UINT32_MAX, &out->expire_after_ms, err, errlen) < 0 ||
             parse_health(json_object_get(o, "health"), &out->health, err, errlen) < 0)
        rc = -1;
    else
        rc = reg_service_settings_check(out, err, errlen);
    json_decref(o);
    if (rc < 0)
        reg_service_settings_free(out);
    return rc;
}

char *es_instance_json(const char *owner, const struct reg_instance_spec *spec)
{
    json_t *labels = json_array();
    for (uint32_t i = 0; labels && i < spec->n_labels; i++)
        if (json_array_append_new(labels, json_pack("[ss]", spec->labels[i].key, spec->labels[i].value)) < 0) {
            json_decref(labels);
            labels = NULL;
        }
    json_t *o = labels ? json_pack("{sssIsssssosbsbsssbss}", "address", spec->addr.text, "weight",
                                   (json_int_t)spec->weight, "datacenter", spec->datacenter ? spec->datacenter : "",
                                   "region", spec->region ? spec->region : "", "labels", labels, "enabled",
                                   spec->enabled, "ephemeral", spec->ephemeral, "owner", owner ? owner : "", "down",
                                   spec->down, "health_reason", spec->health_reason ? spec->health_reason : "")
                       : NULL;
    char *text = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    return text;
}

static const char *str_or_empty(const json_t *o, const char *name)
{
    const json_t *v = json_object_get(o, name);
    return json_is_string(v) ? json_string_value(v) : "";
}

int es_instance_parse(const char *text, size_t len, struct reg_instance_spec *spec, struct reg_label *labels,
                      json_t **doc, char *err, size_t errlen)
{
    json_error_t je;
    *doc = json_loadb(text, len, 0, &je);
    const json_t *o = *doc;
    if (!json_is_object(o))
        return errbuf_fail(err, errlen, "registration: not a JSON object%s%s", o ? "" : ": ", o ? "" : je.text);
    *spec = (struct reg_instance_spec){
        .datacenter = str_or_empty(o, "datacenter"),
        .region = str_or_empty(o, "region"),
        .owner = str_or_empty(o, "owner"),
        .health_reason = str_or_empty(o, "health_reason"),
        .labels = labels,
        .enabled = json_is_true(json_object_get(o, "enabled")),
        .ephemeral = json_is_true(json_object_get(o, "ephemeral")),
        .down = json_is_true(json_object_get(o, "down")),
    };
    const char *why = NULL;
    if (addr_parse(str_or_empty(o, "address"), &spec->addr, &why) < 0)
        return errbuf_fail(err, errlen, "address: %s", why ? why : "not an address");
    if (get_u32(o, "weight", REG_WEIGHT_MAX, &spec->weight, err, errlen) < 0)
        return -1;
    const json_t *a = json_object_get(o, "labels");
    if (a && (!json_is_array(a) || json_array_size(a) > REG_LABELS_MAX))
        return errbuf_fail(err, errlen, "labels: not a list of at most %d [key, value]", REG_LABELS_MAX);
    size_t i;
    const json_t *pair;
    json_array_foreach(a, i, pair)
    {
        const json_t *k = json_array_get(pair, 0), *v = json_array_get(pair, 1);
        if (json_array_size(pair) != 2 || !json_is_string(k) || !json_is_string(v))
            return errbuf_fail(err, errlen, "labels[%zu]: not [key, value]", i);
        labels[spec->n_labels++] = (struct reg_label){.key = (char *)json_string_value(k),
                                                      .value = (char *)json_string_value(v)};
    }
    return reg_instance_spec_check(spec, err, errlen);
}

/* ---- stale --------------------------------------------------------------------------- */

void es_update_stale(struct etcd_store *s)
{
    bool stale;
    char reason[ES_REASON_MAX];
    if (!s->loaded) {
        stale = true;
        snprintf(reason, sizeof reason, "%s", s->stale_reason[0] ? s->stale_reason : "not loaded from etcd yet");
    } else if (s->watch_down_long) {
        stale = true;
        snprintf(reason, sizeof reason, "%s", s->stale_reason[0] ? s->stale_reason : "the etcd watch is down");
    } else {
        stale = false;
        reason[0] = '\0';
    }
    snprintf(s->stale_reason, sizeof s->stale_reason, "%s", reason);
    if (stale == s->stale)
        return;
    s->stale = stale;
    if (s->hooks.state_changed)
        s->hooks.state_changed(s->hooks.arg, stale, stale ? s->stale_reason : NULL);
}

static void set_stale_reason(struct etcd_store *s, const char *reason)
{
    snprintf(s->stale_reason, sizeof s->stale_reason, "%s", reason);
}

/* ---- members and duty ---------------------------------------------------------------- */

static int member_cmp(const void *a, const void *b)
{
    return strcmp(((const struct es_member *)a)->name, ((const struct es_member *)b)->name);
}

static struct es_member *member_find(struct etcd_store *s, const char *name)
{
    struct es_member key;
    snprintf(key.name, sizeof key.name, "%s", name);
    return s->n_members ? bsearch(&key, s->members, s->n_members, sizeof *s->members, member_cmp) : NULL;
}

/* Returns whether the set changed. */
static bool member_add(struct etcd_store *s, const char *name, int64_t lease)
{
    if (strlen(name) > REG_OWNER_MAX)
        return false;
    struct es_member *m = member_find(s, name);
    if (m) {
        m->lease = lease;
        return false;
    }
    if (s->n_members == s->cap_members) {
        size_t cap = s->cap_members ? s->cap_members * 2 : 8;
        struct es_member *v = realloc(s->members, cap * sizeof *v);
        if (!v)
            return false;
        s->members = v;
        s->cap_members = cap;
    }
    struct es_member *nm = &s->members[s->n_members++];
    snprintf(nm->name, sizeof nm->name, "%s", name);
    nm->lease = lease;
    qsort(s->members, s->n_members, sizeof *s->members, member_cmp);
    return true;
}

static bool member_remove(struct etcd_store *s, const char *name)
{
    struct es_member *m = member_find(s, name);
    if (!m)
        return false;
    size_t i = (size_t)(m - s->members);
    memmove(m, m + 1, (s->n_members - i - 1) * sizeof *m);
    s->n_members--;
    return true;
}

const char *reg_cluster_duty_of(const struct reg_store *st, const char *service, const char *id)
{
    const struct etcd_store *s = es_of(st);
    /* Rendezvous hashing: the member with the highest score for
     * "MEMBER\nSERVICE/ID" wins, so a member leaving moves only the
     * instances it had. Built with memcpy: the health checker asks this for
     * every persistent instance of a changed service. */
    char buf[REG_OWNER_MAX + REG_NAME_MAX + REG_ID_MAX + 4];
    size_t ls = strnlen(service, REG_NAME_MAX), li = strnlen(id, REG_ID_MAX);
    const char *best = "";
    uint64_t best_score = 0;
    for (size_t i = 0; i < s->n_members; i++) {
        size_t lm = strlen(s->members[i].name), n = 0;
        memcpy(buf, s->members[i].name, lm);
        n += lm;
        buf[n++] = '\n';
        memcpy(buf + n, service, ls);
        n += ls;
        buf[n++] = '/';
        memcpy(buf + n, id, li);
        n += li;
        uint64_t score = sl_hash64(buf, n, DUTY_SEED);
        if (!*best || score > best_score) {
            best = s->members[i].name;
            best_score = score;
        }
    }
    return best;
}

bool reg_cluster_has_duty(const struct reg_store *st, const char *service, const char *id)
{
    const char *who = reg_cluster_duty_of(st, service, id);
    /* No member known (etcd never reached): check everything rather than
     * nothing. */
    return !*who || strcmp(who, es_of(st)->conf.node) == 0;
}

size_t reg_cluster_member_count(const struct reg_store *st)
{
    return es_of(st)->n_members;
}

const char *reg_cluster_member_at(const struct reg_store *st, size_t i)
{
    const struct etcd_store *s = es_of(st);
    return i < s->n_members ? s->members[i].name : NULL;
}

/* ---- holds ------------------------------------------------------------------------------ */

static struct es_hold *hold_find(const struct etcd_store *s, const char *service, const char *id)
{
    for (size_t i = 0; i < s->n_holds; i++)
        if (strcmp(s->holds[i].service, service) == 0 && strcmp(s->holds[i].id, id) == 0)
            return &s->holds[i];
    return NULL;
}

static void hold_drop(struct etcd_store *s, struct es_hold *h)
{
    *h = s->holds[--s->n_holds];
}

bool reg_cluster_held(const struct reg_store *st, const char *service, const char *id)
{
    return hold_find(es_of(st), service, id) != NULL;
}

static void on_hold_timer(struct ev_loop *loop, struct ev_timer *t);

/* Keep inst in the model for the grace: its owner's lease expired. */
static void hold(struct etcd_store *s, struct reg_instance *inst)
{
    if (hold_find(s, inst->service->name, inst->id))
        return;
    if (s->n_holds == s->cap_holds) {
        size_t cap = s->cap_holds ? s->cap_holds * 2 : 16;
        struct es_hold *v = realloc(s->holds, cap * sizeof *v);
        if (!v) {
            reg_instance_delete(s->m, inst->service, inst->id);
            return;
        }
        s->holds = v;
        s->cap_holds = cap;
    }
    struct es_hold *h = &s->holds[s->n_holds++];
    snprintf(h->service, sizeof h->service, "%s", inst->service->name);
    snprintf(h->id, sizeof h->id, "%s", inst->id);
    snprintf(h->owner, sizeof h->owner, "%s", inst->owner);
    h->until_ms = ev_now(s->loop) + s->conf.reregister_grace_ms;
    s->cst.held++;
    if (!ev_timer_active(&s->hold_timer))
        ev_timer_start(s->loop, &s->hold_timer, HOLD_TICK_MS);
}

static void on_hold_timer(struct ev_loop *loop, struct ev_timer *t)
{
    struct etcd_store *s = t->data;
    uint64_t now = ev_now(loop);
    s->feeding = true;
    for (size_t i = s->n_holds; i > 0; i--) {
        struct es_hold *h = &s->holds[i - 1];
        if (now < h->until_ms)
            continue;
        struct reg_service *svc = reg_service_find(s->m, h->service, strlen(h->service));
        struct reg_instance *inst = svc ? reg_instance_find(svc, h->id) : NULL;
        if (inst && strcmp(inst->owner, h->owner) == 0) {
            reg_instance_delete(s->m, svc, h->id);
            s->cst.held_expired++;
        }
        hold_drop(s, h);
    }
    s->feeding = false;
    if (s->n_holds)
        ev_timer_start(loop, t, HOLD_TICK_MS);
}

/* ---- applying to the model --------------------------------------------------------------- */

enum key_kind { KEY_OTHER, KEY_SERVICE, KEY_INSTANCE, KEY_MEMBER };

struct parsed_key {
    enum key_kind kind;
    char service[REG_NAME_MAX + 1];
    char id[REG_ID_MAX + 1];   /* instance id, or member name */
};

static enum key_kind parse_key(const struct etcd_store *s, const struct reg_etcd_kv *kv, struct parsed_key *k)
{
    memset(k, 0, sizeof *k);
    if (kv->key_len <= s->prefix_len || memcmp(kv->key, s->conf.prefix, s->prefix_len) != 0 ||
        strlen(kv->key) != kv->key_len)
        return KEY_OTHER;
    const char *rest = kv->key + s->prefix_len;
    if (strncmp(rest, "services/", 9) == 0 && strlen(rest + 9) <= REG_NAME_MAX && !strchr(rest + 9, '/')) {
        snprintf(k->service, sizeof k->service, "%s", rest + 9);
        return k->kind = KEY_SERVICE;
    }
    if (strncmp(rest, "members/", 8) == 0 && strlen(rest + 8) <= REG_OWNER_MAX) {
        snprintf(k->id, sizeof k->id, "%s", rest + 8);
        return k->kind = KEY_MEMBER;
    }
    if (strncmp(rest, "instances/", 10) == 0) {
        const char *svc = rest + 10, *slash = strchr(svc, '/');
        if (!slash || slash == svc || (size_t)(slash - svc) > REG_NAME_MAX || strlen(slash + 1) > REG_ID_MAX ||
            !slash[1])
            return KEY_OTHER;
        snprintf(k->service, sizeof k->service, "%.*s", (int)(slash - svc), svc);
        snprintf(k->id, sizeof k->id, "%s", slash + 1);
        return k->kind = KEY_INSTANCE;
    }
    return KEY_OTHER;
}

static void note_bad(struct etcd_store *s, const char *key, const char *why)
{
    snprintf(s->st.last_error, sizeof s->st.last_error, "etcd %.60s: %.90s", key, why);
}

static void apply_service(struct etcd_store *s, const struct parsed_key *k, const struct reg_etcd_kv *kv)
{
    struct reg_service_settings v;
    char why[200];
    if (reg_cluster_service_parse(kv->value, kv->value_len, &v, why, sizeof why) < 0) {
        note_bad(s, kv->key, why);
        return;
    }
    if (reg_service_put(s->m, k->service, &v, NULL, why, sizeof why) < 0)
        note_bad(s, kv->key, why);
    reg_service_settings_free(&v);
}

/* Whether a registration changes more than weight, enabled and health
 * (the address, location, labels, kind or owner). */
static bool registration_differs(const struct reg_instance *inst, const struct reg_instance_spec *spec)
{
    if (!addr_equal(&inst->addr, &spec->addr) || inst->ephemeral != spec->ephemeral ||
        strcmp(inst->owner, spec->owner ? spec->owner : "") != 0 ||
        strcmp(inst->datacenter, spec->datacenter ? spec->datacenter : "") != 0 ||
        strcmp(inst->region, spec->region ? spec->region : "") != 0 || inst->n_labels != spec->n_labels)
        return true;
    for (uint32_t i = 0; i < spec->n_labels; i++)
        if (strcmp(inst->labels[i].key, spec->labels[i].key) != 0 ||
            strcmp(inst->labels[i].value, spec->labels[i].value) != 0)
            return true;
    return false;
}

/* An instance key was put. Ephemeral instances this node owns are its
 * own to judge: an echo of its own write (or of a weight or enabled
 * change) must not touch their health or heartbeat clock, and a
 * registration through this node (new, moved here, or changed) is a sign
 * of life. Every other instance takes what etcd says, health included. */
static void apply_instance(struct etcd_store *s, const struct parsed_key *k, const struct reg_etcd_kv *kv)
{
    struct reg_instance_spec spec;
    struct reg_label labels[REG_LABELS_MAX];
    json_t *doc = NULL;
    char why[200];
    if (es_instance_parse(kv->value, kv->value_len, &spec, labels, &doc, why, sizeof why) < 0) {
        note_bad(s, kv->key, why);
        json_decref(doc);
        return;
    }
    spec.id = k->id;
    uint64_t now = ev_now(s->loop);
    bool mine = spec.ephemeral && strcmp(spec.owner, s->conf.node) == 0;
    struct reg_service *svc = reg_service_find(s->m, k->service, strlen(k->service));
    struct reg_instance *inst = svc ? reg_instance_find(svc, k->id) : NULL;
    if (mine && inst && !registration_differs(inst, &spec)) {
        if (reg_instance_set_weight(s->m, inst, spec.weight) < 0)
            note_bad(s, kv->key, "weight out of range");
        reg_instance_set_enabled(s->m, inst, spec.enabled);
    } else if ((!svc && reg_service_put(s->m, k->service, NULL, &svc, why, sizeof why) < 0) ||
               reg_instance_put(s->m, svc, &spec, now, &inst, why, sizeof why) < 0) {
        note_bad(s, kv->key, why);
        json_decref(doc);
        return;
    } else if (mine) {
        if (inst->health != REG_HEALTH_UP)
            reg_instance_set_health(s->m, inst, REG_HEALTH_UP, "registered", now);
        if (spec.down) { /* it carried an old DOWN: the other nodes learn it is UP */
            struct reg_instance_spec up;
            reg_instance_spec_of(inst, &up);
            s->base.ops->put_instance(&s->base, svc->name, &up, NULL, NULL);
        }
    } else {
        enum reg_health want = spec.down ? REG_HEALTH_DOWN : REG_HEALTH_UP;
        if (inst->health != want)
            reg_instance_set_health(s->m, inst, want, spec.health_reason, now);
    }
    struct es_hold *h = hold_find(s, k->service, k->id);
    if (h) { /* registered again: the hold is over */
        hold_drop(s, h);
        s->cst.held_reclaimed++;
    }
    json_decref(doc);
}

/* An instance key went: deregistered, or its owner's lease expired
 * (lease_gone: then it is held). */
static void remove_instance(struct etcd_store *s, const char *service, const char *id, bool lease_gone)
{
    struct reg_service *svc = reg_service_find(s->m, service, strlen(service));
    struct reg_instance *inst = svc ? reg_instance_find(svc, id) : NULL;
    if (!inst)
        return;
    if (lease_gone && inst->ephemeral && s->conf.reregister_grace_ms)
        hold(s, inst);
    else
        reg_instance_delete(s->m, svc, id);
}

/* Leases whose member key was deleted, by revision, in one message. */
struct gone_lease {
    int64_t revision, lease;
};

static bool lease_went(const struct gone_lease *g, size_t n, int64_t revision, int64_t lease)
{
    for (size_t i = 0; i < n; i++)
        if (g[i].revision == revision && g[i].lease == lease && lease)
            return true;
    return false;
}

static void on_events(void *arg, const struct reg_etcd_event *ev, size_t n, int64_t revision)
{
    struct etcd_store *s = arg;
    /* First the member keys deleted: an instance key deleted in the same
     * revision with the same lease went with its node. */
    struct gone_lease gone[64];
    size_t n_gone = 0;
    for (size_t i = 0; i < n && n_gone < 64; i++) {
        struct parsed_key k;
        if (ev[i].is_delete && ev[i].has_prev && parse_key(s, &ev[i].kv, &k) == KEY_MEMBER)
            gone[n_gone++] = (struct gone_lease){ev[i].kv.mod_revision, ev[i].prev.lease};
    }
    bool members_changed = false;
    s->feeding = true;
    for (size_t i = 0; i < n; i++) {
        struct parsed_key k;
        const struct reg_etcd_event *e = &ev[i];
        switch (parse_key(s, &e->kv, &k)) {
        case KEY_SERVICE:
            if (e->is_delete)
                reg_service_delete(s->m, k.service);
            else
                apply_service(s, &k, &e->kv);
            break;
        case KEY_INSTANCE:
            if (e->is_delete)
                remove_instance(s, k.service, k.id,
                                e->has_prev && lease_went(gone, n_gone, e->kv.mod_revision, e->prev.lease));
            else
                apply_instance(s, &k, &e->kv);
            break;
        case KEY_MEMBER:
            members_changed |= e->is_delete ? member_remove(s, k.id) : member_add(s, k.id, e->kv.lease);
            break;
        case KEY_OTHER:
            break;
        }
        s->cst.events_applied++;
    }
    s->feeding = false;
    if (revision > s->cst.revision)
        s->cst.revision = revision;
    if (members_changed && s->hooks.members_changed)
        s->hooks.members_changed(s->hooks.arg);
    es_complete_waiting(s, s->cst.revision);
}

/* ---- loading and watching ------------------------------------------------------------------ */

static void load(struct etcd_store *s);

static void on_stale_timer(struct ev_loop *loop, struct ev_timer *t)
{
    struct etcd_store *s = t->data;
    s->watch_down_long = true;
    es_update_stale(s);
}

/* The watch broke: stale if it stays down (a reconnect to another member
 * usually takes a moment). */
static void watch_went_down(struct etcd_store *s, const char *reason)
{
    set_stale_reason(s, reason);
    s->cst.watch_restarts++;
    es_complete_waiting(s, -1); /* durable; the model catches up when the watch is back */
    if (!ev_timer_active(&s->stale_timer) && !s->watch_down_long)
        ev_timer_start(s->loop, &s->stale_timer, ES_STALE_AFTER_MS);
}

static void on_watch_state(void *arg, bool up, const char *reason)
{
    struct etcd_store *s = arg;
    if (!up) {
        watch_went_down(s, reason);
        return;
    }
    ev_timer_stop(s->loop, &s->stale_timer);
    s->watch_down_long = false;
    s->stale_reason[0] = '\0';
    es_update_stale(s);
}

static void on_compacted(void *arg, int64_t compact_revision)
{
    struct etcd_store *s = arg;
    s->watch = NULL; /* it stopped itself */
    watch_went_down(s, "the etcd watch fell behind a compaction; loading again");
    load(s);
}

static void start_watch(struct etcd_store *s, int64_t from)
{
    struct reg_etcd_watch_cbs cbs = {
        .events = on_events, .state = on_watch_state, .compacted = on_compacted, .arg = s};
    char why[160];
    s->watch = reg_etcd_watch_start(s->etcd, s->conf.prefix, s->prefix_len, true, from, &cbs, why, sizeof why);
    if (!s->watch)
        set_stale_reason(s, why);
}

/* kvs are sorted by key: whether key is among them. */
static bool in_range(const struct reg_etcd_reply *r, const char *key)
{
    size_t lo = 0, hi = r->n_kvs;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int c = strcmp(r->kvs[mid].key, key);
        if (c == 0)
            return true;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return false;
}

/* Remove from the model what the range does not hold. Instances whose
 * owner is no live member went with their node: held. */
static void reconcile(struct etcd_store *s, const struct reg_etcd_reply *r)
{
    char key[512];
    for (uint32_t i = reg_model_service_count(s->m); i > 0; i--) {
        struct reg_service *svc = reg_model_service_at(s->m, i - 1);
        for (uint32_t j = svc->n_instances; j > 0; j--) {
            struct reg_instance *inst = svc->instances[j - 1];
            if (es_key(s, key, sizeof key, "instances/", svc->name, inst->id) < 0 || in_range(r, key))
                continue;
            bool owner_gone = inst->ephemeral && inst->owner[0] && !member_find(s, inst->owner);
            remove_instance(s, svc->name, inst->id, owner_gone);
        }
        if (svc->n_instances == 0 && es_key(s, key, sizeof key, "services/", svc->name, NULL) == 0 &&
            !in_range(r, key))
            reg_service_delete(s->m, svc->name);
    }
}

static void on_load(void *arg, const struct reg_etcd_result *r)
{
    struct etcd_store *s = arg;
    s->loading = false;
    if (!r->ok) {
        set_stale_reason(s, r->reason);
        es_update_stale(s);
        ev_timer_start(s->loop, &s->load_timer, LOAD_RETRY_MS);
        return;
    }
    const struct reg_etcd_reply *rep = r->reply;
    /* Members first (the reconcile asks who is alive), then services,
     * then instances, then what is gone. */
    size_t before = s->n_members;
    char old[64][REG_OWNER_MAX + 1];
    size_t n_old = 0;
    for (size_t i = 0; i < s->n_members && n_old < 64; i++)
        snprintf(old[n_old++], sizeof old[0], "%s", s->members[i].name);
    s->n_members = 0;
    bool changed = false;
    for (size_t i = 0; i < rep->n_kvs; i++) {
        struct parsed_key k;
        if (parse_key(s, &rep->kvs[i], &k) == KEY_MEMBER)
            member_add(s, k.id, rep->kvs[i].lease);
    }
    changed = before != s->n_members;
    for (size_t i = 0; !changed && i < n_old; i++)
        changed = strcmp(old[i], s->members[i].name) != 0;
    s->feeding = true;
    for (int pass = 0; pass < 2; pass++)
        for (size_t i = 0; i < rep->n_kvs; i++) {
            struct parsed_key k;
            enum key_kind kind = parse_key(s, &rep->kvs[i], &k);
            if (pass == 0 && kind == KEY_SERVICE)
                apply_service(s, &k, &rep->kvs[i]);
            else if (pass == 1 && kind == KEY_INSTANCE)
                apply_instance(s, &k, &rep->kvs[i]);
        }
    reconcile(s, rep);
    s->feeding = false;
    s->cst.revision = rep->header.revision;
    s->cst.loads++;
    s->loaded = true;
    s->stale_reason[0] = '\0';
    if (changed && s->hooks.members_changed)
        s->hooks.members_changed(s->hooks.arg);
    start_watch(s, rep->header.revision + 1);
    if (!ev_timer_active(&s->stale_timer)) /* stopped when the watch is up */
        ev_timer_start(s->loop, &s->stale_timer, ES_STALE_AFTER_MS);
    es_update_stale(s);
}

static void load(struct etcd_store *s)
{
    if (s->loading)
        return;
    s->loading = true;
    if (reg_etcd_range(s->etcd, s->conf.prefix, s->prefix_len, true, 0, on_load, s) < 0) {
        s->loading = false;
        ev_timer_start(s->loop, &s->load_timer, LOAD_RETRY_MS);
    }
}

static void on_load_timer(struct ev_loop *loop, struct ev_timer *t)
{
    load(t->data);
}

int reg_cluster_attach(struct reg_store *st, struct reg_model *m, const struct reg_cluster_hooks *hooks, char *err,
                       size_t errlen)
{
    if (!reg_store_is_cluster(st))
        return errbuf_fail(err, errlen, "not the etcd store");
    struct etcd_store *s = es_of(st);
    if (s->m)
        return errbuf_fail(err, errlen, "the store feeds a model already");
    s->m = m;
    if (hooks)
        s->hooks = *hooks;
    reg_model_set_node(m, s->conf.node);
    ev_timer_init(&s->load_timer, on_load_timer, s);
    ev_timer_init(&s->hold_timer, on_hold_timer, s);
    ev_timer_init(&s->stale_timer, on_stale_timer, s);
    load(s);
    return 0;
}

void es_feed_free(struct etcd_store *s)
{
    if (s->m) {
        ev_timer_stop(s->loop, &s->load_timer);
        ev_timer_stop(s->loop, &s->hold_timer);
        ev_timer_stop(s->loop, &s->stale_timer);
    }
    reg_etcd_watch_stop(s->watch);
    s->watch = NULL;
    free(s->members);
    free(s->holds);
    s->members = NULL;
    s->holds = NULL;
}

/* ---- reading the state ------------------------------------------------------------------------ */

bool reg_cluster_feeding(const struct reg_store *st)
{
    return reg_store_is_cluster(st) && es_of(st)->feeding;
}

bool reg_cluster_stale(const struct reg_store *st, char *reason, size_t reasonlen)
{
    const struct etcd_store *s = es_of(st);
    if (reason && reasonlen)
        snprintf(reason, reasonlen, "%s", s->stale ? s->stale_reason : "");
    return s->stale;
}

bool reg_cluster_loaded(const struct reg_store *st)
{
    return es_of(st)->loaded;
}

void reg_cluster_stats(const struct reg_store *st, struct reg_cluster_stats *out)
{
    const struct etcd_store *s = es_of(st);
    *out = s->cst;
    out->stale = s->stale;
    out->loaded = s->loaded;
    out->has_lease = s->lease_id != 0;
    out->lease_id = s->lease_id;
    out->holding = s->n_holds;
    out->members = s->n_members;
    snprintf(out->endpoint, sizeof out->endpoint, "%s", reg_etcd_endpoint(s->etcd));
}
