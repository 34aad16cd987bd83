/* libsluice's provider side: register an instance, keep it alive, deregister.
 *
 * sluice_register() registers on the caller's thread (with a curl handle of
 * its own for that one call) and returns once a node acknowledged it. From
 * then on one heartbeat thread per client (started by the first
 * registration) keeps every provider of the client alive, with a curl handle
 * of its own: the consumer's blocking watches, on the watcher thread's
 * handle, never delay a heartbeat.
 *
 * Heartbeats go at the service's heartbeat.interval, read from the
 * service's settings after each registration and every PV_SETTINGS_EVERY_MS
 * (5 s until a node said otherwise). Each reply carries the instance's weight
 * and enabled flag as the registry holds them (an operator may have changed
 * them with PATCH); the provider remembers them, and when it has to register
 * again it registers those, so an operator's change survives. It registers
 * again when
 *   - a heartbeat answers 404: the node does not know the instance (it was
 *     restarted blank, the instance expired or was deleted by hand, or in a
 *     cluster another node holds it);
 *   - the heartbeat was answered by another node than the one it registered
 *     on: the client switched nodes (the one it used failed), and a node of
 *     its own cluster may not know it, or in standalone mode surely does not;
 *   - the node's index went backwards: the node restarted (its index is its
 *     own, per node), so its store may hold an older registration.
 * After a failed heartbeat or registration it tries again within
 * PV_RETRY_MS (or the interval, if shorter), so a registry that comes back
 * sees the instance again at once.
 *
 * Locking: set->lock guards the provider list and every provider's state.
 * The heartbeat thread marks a provider busy while it talks to a node with
 * the lock released; sluice_deregister() waits until it is not busy, so a
 * heartbeat in flight never registers an instance again after its
 * deregistration. */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "client/client_priv.h"
#include "client/doc.h"
#include "client/http.h"
#include "client/provider_priv.h"
#include "lib/errbuf.h"

#define PV_DEFAULT_INTERVAL_MS 5000u
#define PV_MIN_INTERVAL_MS 50u
#define PV_SETTINGS_EVERY_MS 30000u
#define PV_RETRY_MS 1000u
#define PV_WEIGHT_MAX 10000u
#define PV_WEIGHT_DEFAULT 100u
#define PV_LABELS_MAX 32
#define PV_LABEL_KEY_MAX 63
#define PV_LABEL_VALUE_MAX 255

/* Every provider of one client, and the heartbeat thread (c->providers). */
struct pv_set {
    sluice_client *c;
    pthread_mutex_t lock;
    pthread_cond_t cond;             /* CLOCK_MONOTONIC: new work, stop, a provider no longer busy */
    sluice_provider **list;
    size_t n, cap;
    _Atomic bool stop;
    bool started;
    pthread_t thread;
    struct cl_http *http;            /* the heartbeat thread's */
};

struct sluice_provider {
    struct pv_set *set;
    /* What the caller gave, copied (never changes). */
    char service[64];
    char id[CL_ID_MAX + 1];
    char path[3 * CL_ID_MAX + 128];  /* /api/registry/services/NAME/instances/ID (ID percent-encoded) */
    char address[46];
    uint16_t port;
    char datacenter[CL_LOC_MAX + 1], region[CL_LOC_MAX + 1];
    json_t *labels;                  /* an object; read only after creation */

    /* Under set->lock. */
    uint32_t weight;                 /* as the registry last said (or as registered) */
    bool enabled;
    bool registered;
    bool need_register;              /* register again at the next turn */
    char why[64];                    /* why it registers again (for the log) */
    uint64_t heartbeats_ok, heartbeats_failed, registrations;
    size_t node;                     /* the node it registered on (index in c->nodes) */
    uint64_t node_index;             /* the highest index that node gave */
    uint32_t interval_ms;
    uint64_t due_ms;                 /* the next heartbeat or registration */
    uint64_t settings_due_ms;        /* the next read of the service's settings */
    bool busy;                       /* the heartbeat thread is talking to a node for it */
    bool removed;                    /* being deregistered: no more turns */
    struct cl_ratelimit warn;
};

/* ---- checking the caller's instance -------------------------------------------- */

static bool id_char_ok(char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           strchr("-._:[]@~+", ch) != NULL;
}

static bool loc_char_ok(char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '-' ||
           ch == '_' || ch == '.';
}

static int check_loc(const char *what, const char *s, char *err, size_t errlen)
{
    if (!s)
        return 0;
    if (strlen(s) > CL_LOC_MAX)
        return errbuf_fail(err, errlen, "%s: longer than %d characters", what, CL_LOC_MAX);
    for (const char *p = s; *p; p++)
        if (!loc_char_ok(*p))
            return errbuf_fail_name_char(err, errlen, what, s, (size_t)(p - s));
    return 0;
}

static bool label_key_char_ok(char ch)
{
    return loc_char_ok(ch) || ch == '/';
}

/* "key=value" labels into a JSON object; NULL after writing the reason. */
static json_t *labels_object(const struct sluice_instance *inst, char *err, size_t errlen)
{
    if (inst->n_labels > PV_LABELS_MAX) {
        errbuf_fail(err, errlen, "labels: more than %d", PV_LABELS_MAX);
        return NULL;
    }
    if (inst->n_labels && !inst->labels) {
        errbuf_fail(err, errlen, "labels: n_labels is %zu but labels is NULL", inst->n_labels);
        return NULL;
    }
    json_t *o = json_object();
    for (size_t i = 0; o && i < inst->n_labels; i++) {
        const char *kv = inst->labels[i];
        const char *eq = kv ? strchr(kv, '=') : NULL;
        size_t klen = eq ? (size_t)(eq - kv) : 0;
        char key[PV_LABEL_KEY_MAX + 1];
        if (!eq || klen == 0 || klen > PV_LABEL_KEY_MAX) {
            errbuf_fail(err, errlen, "labels[%zu]: expected \"key=value\" with a key of 1 to %d characters, got \"%s\"", i,
                 PV_LABEL_KEY_MAX, kv ? kv : "(null)");
            goto bad;
        }
        memcpy(key, kv, klen);
        key[klen] = '\0';
        for (const char *p = key; *p; p++)
            if (!label_key_char_ok(*p)) {
                errbuf_fail(err, errlen, "labels[%zu]: key \"%s\" may hold only letters, digits, '-', '_', '.' and '/'", i,
                     key);
                goto bad;
            }
        const char *val = eq + 1;
        if (strlen(val) > PV_LABEL_VALUE_MAX) {
            errbuf_fail(err, errlen, "labels.%s: a value must have at most %d characters", key, PV_LABEL_VALUE_MAX);
            goto bad;
        }
        for (const char *p = val; *p; p++)
            if ((unsigned char)*p < 0x20 || (unsigned char)*p > 0x7e) {
                errbuf_fail(err, errlen, "labels.%s: the value may hold only printable ASCII", key);
                goto bad;
            }
        if (json_object_get(o, key)) {
            errbuf_fail(err, errlen, "labels: key \"%s\" given twice", key);
            goto bad;
        }
        if (json_object_set_new(o, key, json_string(val)) < 0) {
            errbuf_fail(err, errlen, "out of memory");
            goto bad;
        }
    }
    if (!o)
        errbuf_fail(err, errlen, "out of memory");
    return o;
bad:
    json_decref(o);
    return NULL;
}

/* 0, or -1 with the reason: what the registry would refuse, said before
 * asking it. */
static int check_instance(const struct sluice_instance *inst, char *err, size_t errlen)
{
    if (!inst->service || !*inst->service)
        return errbuf_fail(err, errlen, "service: required");
    if (!cl_service_name_ok(inst->service))
        return errbuf_fail(err, errlen, "service: \"%s\" is not a service name (1 to 63 letters, digits or '-', not starting or ending with '-')",
                    inst->service);
    if (!inst->id || !*inst->id)
        return errbuf_fail(err, errlen, "id: required");
    if (strlen(inst->id) > CL_ID_MAX)
        return errbuf_fail(err, errlen, "id: longer than %d characters", CL_ID_MAX);
    for (const char *p = inst->id; *p; p++)
        if (!id_char_ok(*p))
            return errbuf_fail(err, errlen, "id: \"%s\" may hold only letters, digits and -._:[]@~+", inst->id);
    if (!inst->address || !*inst->address)
        return errbuf_fail(err, errlen, "address: required");
    unsigned char buf[16];
    if (inet_pton(AF_INET, inst->address, buf) != 1 && inet_pton(AF_INET6, inst->address, buf) != 1)
        return errbuf_fail(err, errlen, "address: \"%s\" is not an IPv4 or IPv6 address", inst->address);
    if (inst->port == 0)
        return errbuf_fail(err, errlen, "port: required (1 to 65535)");
    if (inst->weight > PV_WEIGHT_MAX)
        return errbuf_fail(err, errlen, "weight: %" PRIu32 " is above %u", inst->weight, PV_WEIGHT_MAX);
    if (check_loc("datacenter", inst->datacenter, err, errlen) < 0 ||
        check_loc("region", inst->region, err, errlen) < 0)
        return -1;
    return 0;
}

/* ---- talking to the registry ----------------------------------------------------- */

/* "/api/registry/services/NAME/instances/ID", the id percent-encoded
 * (ids may hold ':', '[', ']', '@' and '+'). */
static void instance_path(char *out, size_t cap, const char *service, const char *id)
{
    size_t n = (size_t)snprintf(out, cap, "/api/registry/services/%s/instances/", service);
    for (const char *p = id; *p && n + 4 < cap; p++) {
        unsigned char ch = (unsigned char)*p;
        if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
            strchr("-._~", ch))
            out[n++] = (char)ch;
        else
            n += (size_t)snprintf(out + n, cap - n, "%%%02X", ch);
    }
    out[n] = '\0';
}

/* The registry's reason in an error body ({"error": "..."}), or the body's
 * start. */
static void reply_reason(const struct cl_resp *r, char *out, size_t cap)
{
    json_t *doc = r->body ? json_loadb(r->body, r->len, 0, NULL) : NULL;
    const char *e = json_string_value(json_object_get(doc, "error"));
    if (e)
        snprintf(out, cap, "%s", e);
    else
        snprintf(out, cap, "%.120s", r->body ? r->body : "no body");
    json_decref(doc);
}

static bool stopping(void *arg)
{
    struct pv_set *set = arg;
    return atomic_load(&set->stop);
}

/* Why no node answered, for an error message. */
static void no_node_reason(sluice_client *c, const struct cl_resp *r, char *err, size_t errlen)
{
    char names[512] = "";
    size_t n = 0;
    for (size_t i = 0; i < c->n_nodes && n < sizeof names; i++)
        n += (size_t)snprintf(names + n, sizeof names - n, "%s%s", i ? ", " : "", c->nodes[i].name);
    if (r->status >= 500) {
        char why[200];
        reply_reason(r, why, sizeof why);
        errbuf_fail(err, errlen, "no registry node accepted it (tried %s; the last answered %ld: %s)", names, r->status,
             why);
    } else {
        errbuf_fail(err, errlen, "no registry node answered (tried %s)", names);
    }
}

/* The registration's body, from p's current weight and enabled flag. A new
 * string (free()), or NULL. Under set->lock (or before p is shared). */
static char *registration_body(const sluice_provider *p)
{
    json_t *o = json_pack("{s:s, s:i, s:I, s:b, s:b, s:s, s:s, s:O}", "address", p->address, "port", (int)p->port,
                          "weight", (json_int_t)p->weight, "enabled", p->enabled, "ephemeral", 1, "datacenter",
                          p->datacenter, "region", p->region, "labels", p->labels);
    char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    return s;
}

/* PUT the instance with h. 0 with *node set, or -1 with the reason. */
static int put_instance(sluice_client *c, struct cl_http *h, const char *path, const char *body,
                        bool (*check)(void *), void *arg, size_t *node, char *err, size_t errlen)
{
    struct cl_resp r;
    int rc = cl_http_request(h, "PUT", path, body, 0, check, arg, &r);
    if (rc == CL_HTTP_ABORTED) {
        errbuf_fail(err, errlen, "stopped");
    } else if (rc != CL_HTTP_OK) {
        no_node_reason(c, &r, err, errlen);
        rc = -1;
    } else if (r.status != 200) {
        char why[300];
        reply_reason(&r, why, sizeof why);
        errbuf_fail(err, errlen, "registry node %s answered %ld: %s", r.node_name, r.status, why);
        rc = -1;
    } else {
        *node = r.node;
    }
    cl_resp_free(&r);
    return rc == CL_HTTP_OK ? 0 : -1;
}

/* A duration as the registry writes one ("300ms", "5s", "1m", "1h"), in
 * ms; 0 when it is not one. */
uint32_t cl_duration_ms(const char *s)
{
    if (!s || *s < '0' || *s > '9')
        return 0;
    errno = 0;
    char *end;
    unsigned long long n = strtoull(s, &end, 10);
    unsigned long long unit;
    if (errno)
        return 0;
    if (strcmp(end, "ms") == 0)
        unit = 1;
    else if (strcmp(end, "s") == 0)
        unit = 1000;
    else if (strcmp(end, "m") == 0)
        unit = 60000;
    else if (strcmp(end, "h") == 0)
        unit = 3600000;
    else
        return 0;
    if (n > UINT32_MAX / unit)
        return 0;
    return (uint32_t)(n * unit);
}

/* The service's heartbeat interval in ms, or 0 when no node said. */
static uint32_t read_interval(struct cl_http *h, const char *service, bool (*check)(void *), void *arg)
{
    char path[160];
    snprintf(path, sizeof path, "/api/registry/services/%s", service);
    struct cl_resp r;
    uint32_t ms = 0;
    if (cl_http_request(h, "GET", path, NULL, 0, check, arg, &r) == CL_HTTP_OK && r.status == 200 && r.body) {
        json_t *doc = json_loadb(r.body, r.len, 0, NULL);
        json_t *hb = json_object_get(json_object_get(doc, "settings"), "heartbeat");
        ms = cl_duration_ms(json_string_value(json_object_get(hb, "interval")));
        json_decref(doc);
    }
    cl_resp_free(&r);
    return ms;
}

/* ---- the heartbeat thread ------------------------------------------------------------ */

static uint32_t retry_ms(const sluice_provider *p)
{
    return p->interval_ms < PV_RETRY_MS ? p->interval_ms : PV_RETRY_MS;
}

/* Registers p again (the heartbeat thread, p busy). */
static void register_again(struct pv_set *set, sluice_provider *p)
{
    sluice_client *c = set->c;
    pthread_mutex_lock(&set->lock);
    char *body = registration_body(p);
    char why[sizeof p->why];
    snprintf(why, sizeof why, "%s", p->why);
    uint32_t weight = p->weight;
    bool enabled = p->enabled;
    pthread_mutex_unlock(&set->lock);

    char err[512] = "out of memory";
    size_t node = 0;
    int rc = body ? put_instance(c, set->http, p->path, body, stopping, set, &node, err, sizeof err) : -1;
    free(body);
    uint32_t interval = 0;
    if (rc == 0)
        interval = read_interval(set->http, p->service, stopping, set);

    pthread_mutex_lock(&set->lock);
    uint64_t now = cl_now_ms();
    if (rc == 0) {
        p->registrations++;
        p->registered = true;
        p->need_register = false;
        p->node = node;
        p->node_index = 0;
        if (interval)
            p->interval_ms = interval < PV_MIN_INTERVAL_MS ? PV_MIN_INTERVAL_MS : interval;
        p->settings_due_ms = now + PV_SETTINGS_EVERY_MS;
        p->due_ms = now + p->interval_ms;
    } else {
        p->registered = false;
        p->due_ms = now + retry_ms(p);
    }
    pthread_mutex_unlock(&set->lock);
    if (rc == 0)
        cl_log(c, SLUICE_LOG_INFO, "provider %s/%s: registered again on node %s (%s), weight %" PRIu32 ", %s",
               p->service, p->id, c->nodes[node].name, why, weight, enabled ? "enabled" : "disabled");
    else if (!atomic_load(&set->stop))
        cl_log_limited(c, &p->warn, SLUICE_LOG_WARN, "provider %s/%s: registering again (%s): %s", p->service,
                       p->id, why, err);
}

/* What one heartbeat's answer tells (the heartbeat thread). */
struct beat {
    int rc;
    long status;
    size_t node;
    char node_name[CL_NODE_NAME];
    bool have_index, have_weight, have_enabled;
    uint64_t index;
    uint32_t weight;
    bool enabled;
    char reason[200];
};

static void send_heartbeat(struct pv_set *set, const sluice_provider *p, struct beat *b)
{
    char path[sizeof p->path + 16];
    snprintf(path, sizeof path, "%s/heartbeat", p->path);
    struct cl_resp r;
    memset(b, 0, sizeof *b);
    b->rc = cl_http_request(set->http, "POST", path, NULL, 0, stopping, set, &r);
    b->status = r.status;
    b->node = r.node;
    cl_copy(b->node_name, sizeof b->node_name, r.node_name);
    if (b->rc == CL_HTTP_OK && r.status == 200) {
        json_t *doc = r.body ? json_loadb(r.body, r.len, 0, NULL) : NULL;
        json_t *v;
        if ((v = json_object_get(doc, "index")) && json_is_integer(v) && json_integer_value(v) >= 0) {
            b->have_index = true;
            b->index = (uint64_t)json_integer_value(v);
        }
        v = json_object_get(doc, "weight");
        if (json_is_integer(v) && json_integer_value(v) >= 0 && json_integer_value(v) <= PV_WEIGHT_MAX) {
            b->have_weight = true;
            b->weight = (uint32_t)json_integer_value(v);
        }
        if ((v = json_object_get(doc, "enabled")) && json_is_boolean(v)) {
            b->have_enabled = true;
            b->enabled = json_is_true(v);
        }
        json_decref(doc);
    } else if (b->rc == CL_HTTP_OK || r.status) {
        reply_reason(&r, b->reason, sizeof b->reason);
    }
    cl_resp_free(&r);
}

/* One heartbeat of p and what follows from its answer (p busy). */
static void heartbeat(struct pv_set *set, sluice_provider *p)
{
    sluice_client *c = set->c;
    struct beat b;
    send_heartbeat(set, p, &b);
    if (b.rc == CL_HTTP_ABORTED)
        return;
    bool reread = false;
    pthread_mutex_lock(&set->lock);
    uint64_t now = cl_now_ms();
    if (b.rc == CL_HTTP_OK && b.status == 200) {
        p->heartbeats_ok++;
        p->registered = true;
        if (b.have_weight)
            p->weight = b.weight;
        if (b.have_enabled)
            p->enabled = b.enabled;
        if (b.node != p->node) {
            p->need_register = true;
            snprintf(p->why, sizeof p->why, "the client moved to this node");
        } else if (b.have_index && b.index < p->node_index) {
            p->need_register = true;
            snprintf(p->why, sizeof p->why, "the node restarted");
        }
        if (b.have_index && b.index > p->node_index)
            p->node_index = b.index;
        p->due_ms = p->need_register ? now : now + p->interval_ms;
        reread = !p->need_register && now >= p->settings_due_ms;
    } else if (b.rc == CL_HTTP_OK && b.status == 404) {
        p->heartbeats_failed++;
        p->registered = false;
        p->need_register = true;
        snprintf(p->why, sizeof p->why, "the node does not know it");
        p->due_ms = now;
    } else {
        p->heartbeats_failed++;
        p->registered = false;
        p->due_ms = now + retry_ms(p);
    }
    pthread_mutex_unlock(&set->lock);
    if (b.rc != CL_HTTP_OK)
        cl_log_limited(c, &p->warn, SLUICE_LOG_WARN, "provider %s/%s: heartbeat: no registry node answered",
                       p->service, p->id);
    else if (b.status != 200 && b.status != 404)
        cl_log_limited(c, &p->warn, SLUICE_LOG_WARN, "provider %s/%s: heartbeat: node %s answered %ld: %s",
                       p->service, p->id, b.node_name, b.status, b.reason);
    if (reread) {
        uint32_t ms = read_interval(set->http, p->service, stopping, set);
        pthread_mutex_lock(&set->lock);
        if (ms)
            p->interval_ms = ms < PV_MIN_INTERVAL_MS ? PV_MIN_INTERVAL_MS : ms;
        p->settings_due_ms = cl_now_ms() + PV_SETTINGS_EVERY_MS;
        pthread_mutex_unlock(&set->lock);
    }
}

/* The provider whose turn comes first (not busy, not removed), or NULL.
 * Under set->lock. */
static sluice_provider *next_due(struct pv_set *set)
{
    sluice_provider *best = NULL;
    for (size_t i = 0; i < set->n; i++) {
        sluice_provider *p = set->list[i];
        if (!p->busy && !p->removed && (!best || p->due_ms < best->due_ms))
            best = p;
    }
    return best;
}

static void wait_until_ms(struct pv_set *set, uint64_t when_ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    uint64_t now = cl_now_ms();
    uint64_t wait = when_ms > now ? when_ms - now : 0;
    ts.tv_sec += (time_t)(wait / 1000);
    ts.tv_nsec += (long)(wait % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    pthread_cond_timedwait(&set->cond, &set->lock, &ts);
}

static void *heartbeat_main(void *arg)
{
    struct pv_set *set = arg;
    pthread_mutex_lock(&set->lock);
    while (!atomic_load(&set->stop)) {
        sluice_provider *p = next_due(set);
        if (!p) {
            pthread_cond_wait(&set->cond, &set->lock);
            continue;
        }
        if (p->due_ms > cl_now_ms()) {
            wait_until_ms(set, p->due_ms);
            continue;
        }
        p->busy = true;
        bool again = p->need_register;
        pthread_mutex_unlock(&set->lock);
        if (again)
            register_again(set, p);
        else
            heartbeat(set, p);
        pthread_mutex_lock(&set->lock);
        p->busy = false;
        pthread_cond_broadcast(&set->cond);
    }
    pthread_mutex_unlock(&set->lock);
    return NULL;
}

/* ---- the set ------------------------------------------------------------------------- */

static void providers_close(sluice_client *c);

/* c's provider set, created (with its thread) by the first registration.
 * NULL with the reason. */
static struct pv_set *provider_set(sluice_client *c, char *err, size_t errlen)
{
    pthread_mutex_lock(&c->lock);
    struct pv_set *set = c->providers;
    if (set) {
        pthread_mutex_unlock(&c->lock);
        return set;
    }
    set = calloc(1, sizeof *set);
    if (!set || !(set->http = cl_http_new(c))) {
        free(set);
        pthread_mutex_unlock(&c->lock);
        errbuf_fail(err, errlen, "out of memory");
        return NULL;
    }
    set->c = c;
    pthread_mutex_init(&set->lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&set->cond, &ca);
    pthread_condattr_destroy(&ca);
    int rc = cl_thread_start(&set->thread, heartbeat_main, set);
    if (rc != 0) {
        cl_http_free(set->http);
        pthread_cond_destroy(&set->cond);
        pthread_mutex_destroy(&set->lock);
        free(set);
        pthread_mutex_unlock(&c->lock);
        errbuf_fail(err, errlen, "starting the heartbeat thread: %s", strerror(rc));
        return NULL;
    }
    set->started = true;
    c->providers = set;
    c->providers_close = providers_close;
    pthread_mutex_unlock(&c->lock);
    return set;
}

static int set_add(struct pv_set *set, sluice_provider *p)
{
    pthread_mutex_lock(&set->lock);
    if (set->n == set->cap) {
        size_t cap = set->cap ? set->cap * 2 : 8;
        sluice_provider **l = realloc(set->list, cap * sizeof *l);
        if (!l) {
            pthread_mutex_unlock(&set->lock);
            return -1;
        }
        set->list = l;
        set->cap = cap;
    }
    set->list[set->n++] = p;
    pthread_cond_broadcast(&set->cond);
    pthread_mutex_unlock(&set->lock);
    return 0;
}

/* Takes p out of the heartbeat thread's turns, waiting for a turn in
 * progress to end. */
static void set_remove(struct pv_set *set, sluice_provider *p)
{
    pthread_mutex_lock(&set->lock);
    p->removed = true;
    while (p->busy)
        pthread_cond_wait(&set->cond, &set->lock);
    for (size_t i = 0; i < set->n; i++)
        if (set->list[i] == p) {
            set->list[i] = set->list[--set->n];
            break;
        }
    pthread_mutex_unlock(&set->lock);
}

static void provider_free(sluice_provider *p)
{
    json_decref(p->labels);
    free(p);
}

/* DELETE the instance with h: 0 when a node acknowledged it (404: it
 * knows no such instance, which is as good), -1 otherwise. */
static int delete_instance(sluice_client *c, struct cl_http *h, const sluice_provider *p)
{
    struct cl_resp r;
    int rc = cl_http_request(h, "DELETE", p->path, NULL, 0, NULL, NULL, &r);
    int out = rc == CL_HTTP_OK && (r.status == 200 || r.status == 404) ? 0 : -1;
    if (out < 0) {
        char why[200] = "no node answered";
        if (rc == CL_HTTP_OK || r.status)
            reply_reason(&r, why, sizeof why);
        cl_log(c, SLUICE_LOG_WARN, "provider %s/%s: deregistration not acknowledged (%s): it will expire", p->service,
               p->id, why);
    }
    cl_resp_free(&r);
    return out;
}

/* sluice_close(): stop the heartbeat thread, then deregister every
 * provider left. */
static void providers_close(sluice_client *c)
{
    struct pv_set *set = c->providers;
    if (!set)
        return;
    atomic_store(&set->stop, true);
    pthread_mutex_lock(&set->lock);
    pthread_cond_broadcast(&set->cond);
    pthread_mutex_unlock(&set->lock);
    cl_http_wake(set->http);
    if (set->started)
        pthread_join(set->thread, NULL);
    cl_http_free(set->http);
    struct cl_http *h = set->n ? cl_http_new(c) : NULL;
    for (size_t i = 0; i < set->n; i++) {
        if (h)
            delete_instance(c, h, set->list[i]);
        provider_free(set->list[i]);
    }
    cl_http_free(h);
    free(set->list);
    pthread_cond_destroy(&set->cond);
    pthread_mutex_destroy(&set->lock);
    free(set);
    c->providers = NULL;
    c->providers_close = NULL;
}

/* ---- the API --------------------------------------------------------------------------- */

static sluice_provider *provider_new(sluice_client *c, const struct sluice_instance *inst, char *err, size_t errlen)
{
    sluice_provider *p = calloc(1, sizeof *p);
    if (!p) {
        errbuf_fail(err, errlen, "out of memory");
        return NULL;
    }
    p->labels = labels_object(inst, err, errlen);
    if (!p->labels) {
        free(p);
        return NULL;
    }
    cl_copy(p->service, sizeof p->service, inst->service);
    cl_copy(p->id, sizeof p->id, inst->id);
    instance_path(p->path, sizeof p->path, inst->service, inst->id);
    cl_copy(p->address, sizeof p->address, inst->address);
    p->port = inst->port;
    cl_copy(p->datacenter, sizeof p->datacenter, inst->datacenter ? inst->datacenter : c->datacenter);
    cl_copy(p->region, sizeof p->region, inst->region ? inst->region : c->region);
    p->weight = inst->weight ? inst->weight : PV_WEIGHT_DEFAULT;
    p->enabled = true;
    p->interval_ms = PV_DEFAULT_INTERVAL_MS;
    return p;
}

sluice_provider *sluice_register(sluice_client *c, const struct sluice_instance *inst, char *err, size_t errlen)
{
    if (err && errlen)
        err[0] = '\0';
    if (!c || !inst) {
        errbuf_fail(err, errlen, "no %s", c ? "instance" : "client");
        return NULL;
    }
    if (c->n_nodes == 0) {
        errbuf_fail(err, errlen, "registries: the client has no registry node to register with");
        return NULL;
    }
    if (check_instance(inst, err, errlen) < 0 || check_loc("datacenter", c->datacenter, err, errlen) < 0 ||
        check_loc("region", c->region, err, errlen) < 0)
        return NULL;
    sluice_provider *p = provider_new(c, inst, err, errlen);
    if (!p)
        return NULL;
    struct pv_set *set = provider_set(c, err, errlen);
    if (!set) {
        provider_free(p);
        return NULL;
    }
    p->set = set;
    /* Registered on the caller's thread, with a handle of its own. */
    struct cl_http *h = cl_http_new(c);
    char *body = registration_body(p);
    size_t node = 0;
    int rc = h && body ? put_instance(c, h, p->path, body, NULL, NULL, &node, err, errlen)
                       : errbuf_fail(err, errlen, "out of memory");
    free(body);
    uint32_t interval = rc == 0 ? read_interval(h, p->service, NULL, NULL) : 0;
    cl_http_free(h);
    if (rc < 0) {
        provider_free(p);
        return NULL;
    }
    uint64_t now = cl_now_ms();
    p->registrations = 1;
    p->registered = true;
    p->node = node;
    if (interval)
        p->interval_ms = interval < PV_MIN_INTERVAL_MS ? PV_MIN_INTERVAL_MS : interval;
    p->due_ms = now + p->interval_ms;
    p->settings_due_ms = now + PV_SETTINGS_EVERY_MS;
    if (set_add(set, p) < 0) {
        struct cl_http *d = cl_http_new(c);
        if (d)
            delete_instance(c, d, p);
        cl_http_free(d);
        provider_free(p);
        errbuf_fail(err, errlen, "out of memory");
        return NULL;
    }
    cl_log(c, SLUICE_LOG_INFO, "provider %s/%s: registered on node %s, heartbeat every %" PRIu32 " ms", p->service,
           p->id, c->nodes[node].name, p->interval_ms);
    return p;
}

int sluice_deregister(sluice_provider *p)
{
    if (!p)
        return -1;
    struct pv_set *set = p->set;
    set_remove(set, p);
    struct cl_http *h = cl_http_new(set->c);
    int rc = h ? delete_instance(set->c, h, p) : -1;
    cl_http_free(h);
    provider_free(p);
    return rc;
}

int sluice_provider_info(const sluice_provider *p, struct sluice_provider_info *out)
{
    if (!p || !out)
        return -1;
    struct pv_set *set = p->set;
    memset(out, 0, sizeof *out);
    pthread_mutex_lock(&set->lock);
    out->registered = p->registered;
    out->weight = p->weight;
    out->enabled = p->enabled;
    out->heartbeats_ok = p->heartbeats_ok;
    out->heartbeats_failed = p->heartbeats_failed;
    out->registrations = p->registrations;
    size_t node = p->node;
    pthread_mutex_unlock(&set->lock);
    cl_copy(out->node, sizeof out->node, set->c->nodes[node].name);
    return 0;
}
