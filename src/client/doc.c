/* See doc.h. */
#include "client/doc.h"

#include <arpa/inet.h>
#include <jansson.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/errbuf.h"

#define CL_WEIGHT_MAX 10000
#define CL_INSTANCES_MAX 100000

bool cl_service_name_ok(const char *name)
{
    size_t n = name ? strlen(name) : 0;
    if (n == 0 || n > 63 || name[0] == '-' || name[n - 1] == '-')
        return false;
    for (size_t i = 0; i < n; i++) {
        char ch = name[i];
        bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '-';
        if (!ok)
            return false;
    }
    return true;
}

void cl_doc_free(struct cl_doc *d)
{
    if (!d)
        return;
    free(d->inst);
    free(d);
}

/* A string member into a fixed buffer: 0, or -1 when present but not a
 * string or too long. Absent: dst stays "" (and *present false). */
static int get_string(json_t *o, const char *key, char *dst, size_t cap, bool *present)
{
    json_t *v = json_object_get(o, key);
    *present = v != NULL && !json_is_null(v);
    dst[0] = '\0';
    if (!*present)
        return 0;
    if (!json_is_string(v) || json_string_length(v) >= cap || memchr(json_string_value(v), '\0', json_string_length(v)))
        return -1;
    memcpy(dst, json_string_value(v), json_string_length(v) + 1);
    return 0;
}

/* An integer member in [lo, hi]: 0 (absent: *out = dflt), or -1. */
static int get_uint(json_t *o, const char *key, uint64_t lo, uint64_t hi, uint64_t dflt, uint64_t *out)
{
    json_t *v = json_object_get(o, key);
    if (!v) {
        *out = dflt;
        return 0;
    }
    if (!json_is_integer(v) || json_integer_value(v) < 0)
        return -1;
    uint64_t x = (uint64_t)json_integer_value(v);
    if (x < lo || x > hi)
        return -1;
    *out = x;
    return 0;
}

static int get_ratio(json_t *o, const char *key, double *out)
{
    json_t *v = json_object_get(o, key);
    *out = 0;
    if (!v)
        return 0;
    if (!json_is_number(v))
        return -1;
    double x = json_number_value(v);
    if (!(x >= 0 && x <= 1))
        return -1;
    *out = x;
    return 0;
}

/* The address literal and port as a socket address, canonical text in host. */
static int parse_address(struct cl_doc_inst *in, const char *text, uint64_t port)
{
    memset(&in->addr, 0, sizeof in->addr);
    struct sockaddr_in *v4 = (struct sockaddr_in *)&in->addr;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&in->addr;
    if (inet_pton(AF_INET, text, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons((uint16_t)port);
        in->addrlen = sizeof *v4;
        inet_ntop(AF_INET, &v4->sin_addr, in->host, sizeof in->host);
    } else if (inet_pton(AF_INET6, text, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons((uint16_t)port);
        in->addrlen = sizeof *v6;
        inet_ntop(AF_INET6, &v6->sin6_addr, in->host, sizeof in->host);
    } else {
        return -1;
    }
    in->port = (uint16_t)port;
    return 0;
}

static int parse_instance(json_t *o, struct cl_doc_inst *in, size_t i, char *err, size_t errlen)
{
    if (!json_is_object(o))
        return errbuf_fail(err, errlen, "instances[%zu]: expected an object", i);
    bool present;
    if (get_string(o, "id", in->id, sizeof in->id, &present) < 0 || !present || !in->id[0])
        return errbuf_fail(err, errlen, "instances[%zu].id: expected a string of 1 to %d characters", i, CL_ID_MAX);
    char address[64];
    uint64_t port, weight;
    if (get_string(o, "address", address, sizeof address, &present) < 0 || !present)
        return errbuf_fail(err, errlen, "instances[%zu].address: expected an IP address", i);
    if (json_object_get(o, "port") == NULL || get_uint(o, "port", 1, 65535, 0, &port) < 0)
        return errbuf_fail(err, errlen, "instances[%zu].port: expected 1..65535", i);
    if (parse_address(in, address, port) < 0)
        return errbuf_fail(err, errlen, "instances[%zu].address: \"%s\" is not an IPv4 or IPv6 address", i, address);
    if (get_uint(o, "weight", 0, CL_WEIGHT_MAX, 100, &weight) < 0)
        return errbuf_fail(err, errlen, "instances[%zu].weight: expected 0..%d", i, CL_WEIGHT_MAX);
    in->weight = (uint32_t)weight;
    json_t *en = json_object_get(o, "enabled");
    if (en && !json_is_boolean(en))
        return errbuf_fail(err, errlen, "instances[%zu].enabled: expected true or false", i);
    in->enabled = en ? json_is_true(en) : true;
    char health[16];
    if (get_string(o, "health", health, sizeof health, &present) < 0 ||
        (present && strcmp(health, "up") != 0 && strcmp(health, "down") != 0))
        return errbuf_fail(err, errlen, "instances[%zu].health: expected \"up\" or \"down\"", i);
    in->healthy = !present || strcmp(health, "up") == 0;
    if (get_string(o, "datacenter", in->datacenter, sizeof in->datacenter, &present) < 0)
        return errbuf_fail(err, errlen, "instances[%zu].datacenter: expected a name", i);
    if (get_string(o, "region", in->region, sizeof in->region, &present) < 0)
        return errbuf_fail(err, errlen, "instances[%zu].region: expected a name", i);
    return 0;
}

static int parse_settings(json_t *root, struct cl_doc *d, char *err, size_t errlen)
{
    d->min_healthy = 1;
    d->dns_ttl = 5;
    d->answer_count = 1;
    json_t *s = json_object_get(root, "settings");
    if (!s)
        return 0;
    if (!json_is_object(s))
        return errbuf_fail(err, errlen, "settings: expected an object");
    uint64_t v;
    if (get_ratio(s, "protect_threshold", &d->protect_threshold) < 0)
        return errbuf_fail(err, errlen, "settings.protect_threshold: expected 0..1");
    json_t *loc = json_object_get(s, "locality");
    if (loc) {
        if (!json_is_object(loc))
            return errbuf_fail(err, errlen, "settings.locality: expected an object");
        if (get_uint(loc, "min_healthy", 0, 1000000, 1, &v) < 0)
            return errbuf_fail(err, errlen, "settings.locality.min_healthy: expected 0..1000000");
        d->min_healthy = (uint32_t)v;
        if (get_ratio(loc, "min_healthy_ratio", &d->min_healthy_ratio) < 0)
            return errbuf_fail(err, errlen, "settings.locality.min_healthy_ratio: expected 0..1");
    }
    if (get_uint(s, "dns_ttl", 0, 86400, 5, &v) < 0)
        return errbuf_fail(err, errlen, "settings.dns_ttl: expected 0..86400");
    d->dns_ttl = (uint32_t)v;
    if (get_uint(s, "answer_count", 1, 64, 1, &v) < 0)
        return errbuf_fail(err, errlen, "settings.answer_count: expected 1..64");
    d->answer_count = (uint32_t)v;
    return 0;
}

static int parse_root(json_t *root, struct cl_doc *d, char *err, size_t errlen)
{
    if (!json_is_object(root))
        return errbuf_fail(err, errlen, "expected a JSON object");
    bool present;
    if (get_string(root, "name", d->name, sizeof d->name, &present) < 0 || !present || !cl_service_name_ok(d->name))
        return errbuf_fail(err, errlen, "name: expected a service name");
    if (get_uint(root, "modify_index", 0, UINT64_MAX, 0, &d->modify_index) < 0)
        return errbuf_fail(err, errlen, "modify_index: expected a whole number");
    if (get_string(root, "node", d->node, sizeof d->node, &present) < 0)
        return errbuf_fail(err, errlen, "node: expected a string");
    if (parse_settings(root, d, err, errlen) < 0)
        return -1;
    json_t *list = json_object_get(root, "instances");
    if (!json_is_array(list))
        return errbuf_fail(err, errlen, "instances: expected an array");
    size_t n = json_array_size(list);
    if (n > CL_INSTANCES_MAX)
        return errbuf_fail(err, errlen, "instances: more than %d", CL_INSTANCES_MAX);
    d->inst = calloc(n ? n : 1, sizeof *d->inst);
    if (!d->inst)
        return errbuf_fail(err, errlen, "out of memory");
    for (size_t i = 0; i < n; i++) {
        if (parse_instance(json_array_get(list, i), &d->inst[i], i, err, errlen) < 0)
            return -1;
        for (size_t j = 0; j < i; j++)
            if (strcmp(d->inst[j].id, d->inst[i].id) == 0)
                return errbuf_fail(err, errlen, "instances[%zu].id: \"%s\" twice", i, d->inst[i].id);
        d->n = i + 1;
    }
    return 0;
}

struct cl_doc *cl_doc_parse(const char *buf, size_t len, char *err, size_t errlen)
{
    json_error_t je;
    json_t *root = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &je);
    if (!root) {
        errbuf_fail(err, errlen, "line %d: %s", je.line, je.text);
        return NULL;
    }
    struct cl_doc *d = calloc(1, sizeof *d);
    if (!d) {
        json_decref(root);
        errbuf_fail(err, errlen, "out of memory");
        return NULL;
    }
    int rc = parse_root(root, d, err, errlen);
    json_decref(root);
    if (rc < 0) {
        cl_doc_free(d);
        return NULL;
    }
    return d;
}

static json_t *instance_to_json(const struct cl_doc_inst *in)
{
    return json_pack("{s:s, s:s, s:i, s:i, s:b, s:s, s:s, s:s}", "id", in->id, "address", in->host, "port",
                     (json_int_t)in->port, "weight", (json_int_t)in->weight, "enabled", in->enabled, "health",
                     in->healthy ? "up" : "down", "datacenter", in->datacenter, "region", in->region);
}

char *cl_doc_format(const struct cl_doc *d, const char *node)
{
    json_t *list = json_array();
    if (!list)
        return NULL;
    for (size_t i = 0; i < d->n; i++)
        if (json_array_append_new(list, instance_to_json(&d->inst[i])) < 0) {
            json_decref(list);
            return NULL;
        }
    json_t *root = json_pack("{s:s, s:I, s:s, s:{s:f, s:{s:i, s:f}, s:i, s:i}, s:o}", "name", d->name,
                             "modify_index", (json_int_t)d->modify_index, "node", node ? node : "", "settings",
                             "protect_threshold", d->protect_threshold, "locality", "min_healthy",
                             (json_int_t)d->min_healthy, "min_healthy_ratio", d->min_healthy_ratio, "dns_ttl",
                             (json_int_t)d->dns_ttl, "answer_count", (json_int_t)d->answer_count, "instances", list);
    if (!root)
        return NULL;
    char *s = json_dumps(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    json_decref(root);
    return s;
}

static bool inst_equal(const struct cl_doc_inst *a, const struct cl_doc_inst *b)
{
    return strcmp(a->id, b->id) == 0 && strcmp(a->host, b->host) == 0 && a->port == b->port &&
           a->weight == b->weight && a->enabled == b->enabled && a->healthy == b->healthy &&
           strcmp(a->datacenter, b->datacenter) == 0 && strcmp(a->region, b->region) == 0;
}

bool cl_doc_equal(const struct cl_doc *a, const struct cl_doc *b)
{
    if (!a || !b)
        return a == b;
    if (a->n != b->n || a->protect_threshold != b->protect_threshold || a->min_healthy != b->min_healthy ||
        a->min_healthy_ratio != b->min_healthy_ratio || a->dns_ttl != b->dns_ttl ||
        a->answer_count != b->answer_count || strcmp(a->name, b->name) != 0)
        return false;
    for (size_t i = 0; i < a->n; i++)
        if (!inst_equal(&a->inst[i], &b->inst[i]))
            return false;
    return true;
}

/* ---- believing updates -------------------------------------------------- */

const char *cl_verdict_name(enum cl_verdict v)
{
    switch (v) {
    case CL_APPLY:
        return "apply";
    case CL_IGNORE_EMPTY:
        return "ignore-empty";
    case CL_IGNORE_INVALID:
        return "ignore-invalid";
    case CL_NOT_FOUND:
        break;
    }
    return "not-found";
}

static void trust_nonempty(struct cl_trust *t, const char *node, uint64_t modify_index)
{
    t->have = true;
    snprintf(t->node, sizeof t->node, "%s", node);
    t->modify_index = modify_index;
    t->pending = false;
}

/* An empty list from node: believed (a, b, c of doc.h) or remembered. */
static enum cl_verdict judge_empty(struct cl_trust *t, const char *node, uint64_t modify_index, bool have_instances,
                                   uint64_t now_ms, uint32_t pull_interval_ms)
{
    bool believed = !have_instances;
    if (t->have && strcmp(t->node, node) == 0 && modify_index > t->modify_index)
        believed = true;
    if (t->pending && (strcmp(t->pending_node, node) != 0 || now_ms - t->pending_since_ms >= pull_interval_ms))
        believed = true;
    if (believed) {
        t->have = false;
        t->pending = false;
        return CL_APPLY;
    }
    if (!t->pending) {
        t->pending = true;
        snprintf(t->pending_node, sizeof t->pending_node, "%s", node);
        t->pending_since_ms = now_ms;
    }
    return CL_IGNORE_EMPTY;
}

enum cl_verdict cl_judge(struct cl_trust *t, const char *name, const char *node, long status, const struct cl_doc *doc,
                         bool have_instances, uint64_t now_ms, uint32_t pull_interval_ms)
{
    if (status == 404)
        return have_instances ? CL_IGNORE_EMPTY : CL_NOT_FOUND;
    if (status != 200 || !doc || strcmp(doc->name, name) != 0)
        return CL_IGNORE_INVALID;
    if (doc->n > 0) {
        trust_nonempty(t, node, doc->modify_index);
        return CL_APPLY;
    }
    return judge_empty(t, node, doc->modify_index, have_instances, now_ms, pull_interval_ms);
}
