/* The etcd store: the reg_store ops on etcd, this node's lease and its
 * member key (see reg_cluster.h; the feed is in reg_cluster.c).
 *
 * A write is one etcd request (a put, a delete, or a transaction for a
 * service with its instances); its completion is called when etcd has
 * answered and the feed has applied the write's revision (or at once when
 * the watch is down), so the node that wrote reads its write back. While
 * the store is stale every write is refused on the next loop turn, with
 * the reason, without trying etcd: an API client gets its 503 at once
 * instead of after the request timeout.
 */
#include "lib/errbuf.h"
#include "registry/reg_etcd_store_priv.h"

#include <inttypes.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LEASE_RETRY_MS 1000
#define REVOKE_TIMEOUT_MS 1000

static const struct reg_store_ops ETCD_OPS;

bool reg_store_is_cluster(const struct reg_store *st)
{
    return st && st->ops == &ETCD_OPS;
}

/* ---- configuration ----------------------------------------------------------- */

void reg_etcd_store_conf_defaults(struct reg_etcd_store_conf *c)
{
    memset(c, 0, sizeof *c);
    reg_etcd_conf_defaults(&c->etcd);
    snprintf(c->prefix, sizeof c->prefix, "%s", REG_CLUSTER_DEFAULT_PREFIX);
    c->lease_ttl_ms = 10000;
    c->reregister_grace_ms = 30000;
}

int reg_etcd_store_conf_check(const struct reg_etcd_store_conf *c, char *err, size_t errlen)
{
    char why[200];
    if (reg_etcd_conf_check(&c->etcd, why, sizeof why) < 0)
        return errbuf_fail(err, errlen, "%s", why);
    size_t n = strlen(c->prefix);
    if (n < 2 || c->prefix[0] != '/' || c->prefix[n - 1] != '/')
        return errbuf_fail(err, errlen, "prefix: \"%s\" must start and end with '/' (e.g. %s)", c->prefix,
                    REG_CLUSTER_DEFAULT_PREFIX);
    if (c->lease_ttl_ms < 2000 || c->lease_ttl_ms % 1000)
        return errbuf_fail(err, errlen, "lease_ttl: must be whole seconds, at least 2s (etcd counts leases in seconds)");
    if (!c->node[0])
        return errbuf_fail(err, errlen, "node: a name is needed in cluster mode");
    for (const char *p = c->node; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '-' ||
              *p == '_' || *p == '.'))
            return errbuf_fail_name_char(err, errlen, "node", c->node, (size_t)(p - c->node));
    return 0;
}

/* ---- completions ---------------------------------------------------------------- */

void es_done_push(struct etcd_store *s, struct es_done_list *l, reg_store_done_fn *done, void *arg, int64_t rev,
                  bool ok, const char *reason)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 16;
        struct es_done *v = realloc(l->v, cap * sizeof *v);
        if (!v) {
            /* Nowhere to queue it: answered at once (reg_store.h allows this). */
            if (done)
                done(arg, false, "out of memory");
            return;
        }
        l->v = v;
        l->cap = cap;
    }
    struct es_done *d = &l->v[l->n++];
    *d = (struct es_done){.done = done, .arg = arg, .revision = rev, .ok = ok};
    snprintf(d->reason, sizeof d->reason, "%s", reason ? reason : "");
}

/* Take the list's entries matching keep() == false out and call them, in
 * order. Completions may write: new entries go to a fresh list. */
static void run_list(struct es_done_list *l, int64_t upto)
{
    struct es_done_list taken = *l;
    *l = (struct es_done_list){0};
    for (size_t i = 0; i < taken.n; i++) {
        struct es_done *d = &taken.v[i];
        if (upto >= 0 && d->revision > upto) {
            /* still waiting: back on the list */
            if (l->n == l->cap) {
                size_t cap = l->cap ? l->cap * 2 : 16;
                struct es_done *v = realloc(l->v, cap * sizeof *v);
                if (!v) {
                    if (d->done)
                        d->done(d->arg, true, NULL); /* durable anyway */
                    continue;
                }
                l->v = v;
                l->cap = cap;
            }
            l->v[l->n++] = *d;
            continue;
        }
        if (d->done)
            d->done(d->arg, d->ok, d->ok ? NULL : d->reason);
    }
    free(taken.v);
}

void es_complete_waiting(struct etcd_store *s, int64_t rev)
{
    if (s->waiting.n)
        run_list(&s->waiting, rev);
}

static void on_refuse_timer(struct ev_loop *loop, struct ev_timer *t)
{
    struct etcd_store *s = t->data;
    run_list(&s->refused, -1);
}

static void refuse(struct etcd_store *s, reg_store_done_fn *done, void *arg, const char *reason)
{
    s->st.failed++;
    es_done_push(s, &s->refused, done, arg, 0, false, reason);
    if (!ev_timer_active(&s->refuse_timer))
        ev_timer_start(s->loop, &s->refuse_timer, 0);
}

/* ---- writes ---------------------------------------------------------------------- */

static void write_unlink(struct etcd_store *s, struct es_write *w)
{
    if (w->prev)
        w->prev->next = w->next;
    else if (s->writes == w)
        s->writes = w->next;
    if (w->next)
        w->next->prev = w->prev;
}

static void on_write(void *arg, const struct reg_etcd_result *r)
{
    struct es_write *w = arg;
    struct etcd_store *s = w->s;
    write_unlink(s, w);
    if (!r->ok) {
        s->st.failed++;
        s->st.healthy = false;
        snprintf(s->st.last_error, sizeof s->st.last_error, "%s", r->reason);
        if (w->done)
            w->done(w->arg, false, r->reason);
    } else {
        s->st.commits++;
        s->st.healthy = true;
        int64_t rev = r->reply->header.revision;
        /* Read-your-writes: wait for the feed to apply it, unless the
         * watch is down (then the write is durable and that is all). */
        if (s->watch && reg_etcd_watch_up(s->watch) && s->cst.revision < rev)
            es_done_push(s, &s->waiting, w->done, w->arg, rev, true, NULL);
        else if (w->done)
            w->done(w->arg, true, NULL);
    }
    free(w);
}

/* A new write, or NULL when it was refused (stale, out of memory). */
static struct es_write *write_begin(struct etcd_store *s, reg_store_done_fn *done, void *arg)
{
    s->st.writes++;
    char reason[ES_REASON_MAX + 40];
    if (s->stale && s->m) {
        snprintf(reason, sizeof reason, "etcd unreachable: %s", s->stale_reason);
        refuse(s, done, arg, reason);
        return NULL;
    }
    struct es_write *w = calloc(1, sizeof *w);
    if (!w) {
        refuse(s, done, arg, "out of memory");
        return NULL;
    }
    *w = (struct es_write){.s = s, .done = done, .arg = arg, .next = s->writes};
    if (s->writes)
        s->writes->prev = w;
    s->writes = w;
    return w;
}

/* The request could not even be queued. */
static void write_failed(struct etcd_store *s, struct es_write *w, const char *reason)
{
    write_unlink(s, w);
    refuse(s, w->done, w->arg, reason);
    free(w);
}

static void es_put_service(struct reg_store *base, const char *name, const struct reg_service_settings *v,
                           reg_store_done_fn *done, void *arg)
{
    struct etcd_store *s = es_of(base);
    struct es_write *w = write_begin(s, done, arg);
    if (!w)
        return;
    char key[512];
    char *value = reg_cluster_service_json(v);
    if (!value || es_key(s, key, sizeof key, "services/", name, NULL) < 0 ||
        reg_etcd_put(s->etcd, key, strlen(key), value, strlen(value), 0, on_write, w) < 0)
        write_failed(s, w, value ? "the key is too long" : "out of memory");
    free(value);
}

static void es_delete_service(struct reg_store *base, const char *name, reg_store_done_fn *done, void *arg)
{
    struct etcd_store *s = es_of(base);
    struct es_write *w = write_begin(s, done, arg);
    if (!w)
        return;
    char key[512], inst[512];
    if (es_key(s, key, sizeof key, "services/", name, NULL) < 0 ||
        es_key(s, inst, sizeof inst, "instances/", name, "") < 0) {
        write_failed(s, w, "the key is too long");
        return;
    }
    struct reg_etcd_op ops[] = {
        {.kind = REG_ETCD_OP_DELETE, .key = key, .key_len = strlen(key)},
        {.kind = REG_ETCD_OP_DELETE_PREFIX, .key = inst, .key_len = strlen(inst)},
    };
    struct reg_etcd_txn t = {.success = ops, .n_success = 2};
    if (reg_etcd_txn(s->etcd, &t, on_write, w) < 0)
        write_failed(s, w, "out of memory");
}

static void es_put_instance(struct reg_store *base, const char *service, const struct reg_instance_spec *spec,
                            reg_store_done_fn *done, void *arg)
{
    struct etcd_store *s = es_of(base);
    if (spec->ephemeral && !s->lease_id) {
        s->st.writes++;
        refuse(s, done, arg, "etcd: this node has no lease yet, so it cannot hold ephemeral instances");
        return;
    }
    struct es_write *w = write_begin(s, done, arg);
    if (!w)
        return;
    const char *id = spec->id && *spec->id ? spec->id : spec->addr.text;
    char key[512];
    /* An ephemeral instance lives with this node's lease: it is ours. */
    char *value = es_instance_json(spec->ephemeral ? s->conf.node : spec->owner, spec);
    if (!value || es_key(s, key, sizeof key, "instances/", service, id) < 0 ||
        reg_etcd_put(s->etcd, key, strlen(key), value, strlen(value), spec->ephemeral ? s->lease_id : 0, on_write,
                     w) < 0)
        write_failed(s, w, value ? "the key is too long" : "out of memory");
    free(value);
}

static void es_delete_instance(struct reg_store *base, const char *service, const char *id, reg_store_done_fn *done,
                               void *arg)
{
    struct etcd_store *s = es_of(base);
    struct es_write *w = write_begin(s, done, arg);
    if (!w)
        return;
    char key[512];
    if (es_key(s, key, sizeof key, "instances/", service, id) < 0 ||
        reg_etcd_delete(s->etcd, key, strlen(key), false, on_write, w) < 0)
        write_failed(s, w, "the key is too long");
}

static size_t es_flush(struct reg_store *base)
{
    return 0; /* etcd answers each write by itself */
}

static void es_stats(const struct reg_store *base, struct reg_store_stats *out)
{
    const struct etcd_store *s = es_of(base);
    *out = s->st;
    out->pending = s->waiting.n + s->refused.n;
    for (const struct es_write *w = s->writes; w; w = w->next)
        out->pending++;
    out->healthy = !s->stale;
    if (s->stale)
        snprintf(out->last_error, sizeof out->last_error, "etcd unreachable: %.120s", s->stale_reason);
}

/* ---- the lease and the member key --------------------------------------------------- */

static void lease_grant(struct etcd_store *s);

static void on_member_put(void *arg, const struct reg_etcd_result *r)
{
    struct etcd_store *s = arg;
    s->member_written = r->ok;
}

static void put_member(struct etcd_store *s)
{
    char key[512];
    json_t *v = json_pack("{ssssss}", "node", s->conf.node, "datacenter", s->conf.datacenter, "region",
                          s->conf.region);
    char *text = v ? json_dumps(v, JSON_COMPACT) : NULL;
    json_decref(v);
    if (text && es_key(s, key, sizeof key, "members/", s->conf.node, NULL) == 0)
        reg_etcd_put(s->etcd, key, strlen(key), text, strlen(text), s->lease_id, on_member_put, s);
    free(text);
}

static uint32_t keepalive_ms(const struct etcd_store *s)
{
    return s->conf.lease_ttl_ms / 3;
}

static void on_keepalive(void *arg, const struct reg_etcd_result *r)
{
    struct etcd_store *s = arg;
    if (r->ok && r->reply->ttl <= 0) {
        /* etcd says the lease is gone: its keys were deleted. Take a new
         * one and put everything it held again. */
        s->lease_id = 0;
        s->member_written = false;
        s->cst.lease_losses++;
        lease_grant(s);
        return;
    }
    if (r->ok && !s->member_written)
        put_member(s);
    ev_timer_start(s->loop, &s->lease_timer, keepalive_ms(s));
}

static void on_grant(void *arg, const struct reg_etcd_result *r)
{
    struct etcd_store *s = arg;
    s->lease_granting = false;
    if (!r->ok || !r->reply->lease_id) {
        ev_timer_start(s->loop, &s->lease_timer, LEASE_RETRY_MS);
        return;
    }
    bool again = s->cst.lease_losses > 0;
    s->lease_id = r->reply->lease_id;
    put_member(s);
    if (again)
        es_reput_own(s);
    ev_timer_start(s->loop, &s->lease_timer, keepalive_ms(s));
}

static void lease_grant(struct etcd_store *s)
{
    if (s->lease_granting)
        return;
    s->lease_granting = true;
    if (reg_etcd_lease_grant(s->etcd, s->conf.lease_ttl_ms / 1000, on_grant, s) < 0) {
        s->lease_granting = false;
        ev_timer_start(s->loop, &s->lease_timer, LEASE_RETRY_MS);
    }
}

static void on_lease_timer(struct ev_loop *loop, struct ev_timer *t)
{
    struct etcd_store *s = t->data;
    if (!s->lease_id) {
        lease_grant(s);
        return;
    }
    if (reg_etcd_lease_keepalive(s->etcd, s->lease_id, on_keepalive, s) < 0)
        ev_timer_start(loop, t, keepalive_ms(s));
}

static void on_reput(void *arg, bool ok, const char *reason)
{
    (void)arg;
    (void)ok;
    (void)reason; /* a failure is seen again at the next lease loss or by the client's next registration */
}

void es_reput_own(struct etcd_store *s)
{
    if (!s->m)
        return;
    for (uint32_t i = 0; i < reg_model_service_count(s->m); i++) {
        struct reg_service *svc = reg_model_service_at(s->m, i);
        for (uint32_t j = 0; j < svc->n_instances; j++) {
            struct reg_instance *inst = svc->instances[j];
            if (!inst->ephemeral || strcmp(inst->owner, s->conf.node) != 0)
                continue;
            struct reg_instance_spec spec;
            reg_instance_spec_of(inst, &spec);
            es_put_instance(&s->base, svc->name, &spec, on_reput, NULL);
        }
    }
}

/* ---- scan: a blocking range, for tools and tests ------------------------------------ */

struct scan_ctx {
    bool done, ok;
    char reason[ES_REASON_MAX];
    struct reg_etcd_reply reply;
};

static void on_scan(void *arg, const struct reg_etcd_result *r)
{
    struct scan_ctx *c = arg;
    c->done = true;
    c->ok = r->ok;
    snprintf(c->reason, sizeof c->reason, "%s", r->ok ? "" : r->reason);
    if (r->ok) { /* keep the reply: take over its memory */
        c->reply = *r->reply;
        ((struct reg_etcd_reply *)r->reply)->kvs = NULL;
        ((struct reg_etcd_reply *)r->reply)->block = NULL;
    }
}

static void scan_check(struct ev_loop *loop, struct ev_timer *t)
{
    struct scan_ctx *c = t->data;
    if (c->done)
        ev_break(loop);
    else
        ev_timer_start(loop, t, 5);
}

/* Hand every service, then every instance, of a range to the scan. */
static int scan_reply(struct etcd_store *s, const struct reg_etcd_reply *rep, const struct reg_store_scan *cb,
                      char *err, size_t errlen)
{
    for (int pass = 0; pass < 2; pass++) {
        const char *kind = pass == 0 ? "services/" : "instances/";
        for (size_t i = 0; i < rep->n_kvs; i++) {
            const struct reg_etcd_kv *kv = &rep->kvs[i];
            if (kv->key_len < s->prefix_len || strncmp(kv->key + s->prefix_len, kind, strlen(kind)) != 0)
                continue;
            const char *rest = kv->key + s->prefix_len + strlen(kind);
            char why[256];
            if (pass == 0) {
                struct reg_service_settings v;
                int rc = reg_cluster_service_parse(kv->value, kv->value_len, &v, why, sizeof why);
                if (rc == 0)
                    rc = cb->service(cb->arg, rest, &v, why, sizeof why);
                if (rc == 0)
                    reg_service_settings_free(&v);
                if (rc < 0)
                    return errbuf_fail(err, errlen, "etcd %s: %s", kv->key, why);
                continue;
            }
            const char *slash = strchr(rest, '/');
            char service[REG_NAME_MAX + 1];
            if (!slash || (size_t)(slash - rest) > REG_NAME_MAX)
                return errbuf_fail(err, errlen, "etcd %s: not PREFIX/instances/SERVICE/ID", kv->key);
            snprintf(service, sizeof service, "%.*s", (int)(slash - rest), rest);
            struct reg_instance_spec spec;
            struct reg_label labels[REG_LABELS_MAX];
            json_t *doc = NULL;
            int rc = es_instance_parse(kv->value, kv->value_len, &spec, labels, &doc, why, sizeof why);
            if (rc == 0) {
                spec.id = slash + 1;
                rc = cb->instance(cb->arg, service, &spec, why, sizeof why);
            }
            json_decref(doc);
            if (rc < 0)
                return errbuf_fail(err, errlen, "etcd %s: %s", kv->key, why);
        }
    }
    return 0;
}

static int es_scan(struct reg_store *base, const struct reg_store_scan *cb, char *err, size_t errlen)
{
    struct etcd_store *s = es_of(base);
    struct ev_loop *loop = ev_loop_new();
    struct reg_etcd *e = loop ? reg_etcd_new(loop, &s->conf.etcd, err, errlen) : NULL;
    struct scan_ctx c = {0};
    int rc = -1;
    if (!e) {
        if (!loop)
            errbuf_fail(err, errlen, "out of memory");
    } else if (reg_etcd_range(e, s->conf.prefix, s->prefix_len, true, 0, on_scan, &c) < 0) {
        errbuf_fail(err, errlen, "out of memory");
    } else {
        struct ev_timer t;
        ev_timer_init(&t, scan_check, &c);
        ev_timer_start(loop, &t, 5);
        ev_run(loop);
        ev_timer_stop(loop, &t);
        if (!c.ok)
            errbuf_fail(err, errlen, "%s", c.reason);
        else
            rc = scan_reply(s, &c.reply, cb, err, errlen);
        reg_etcd_reply_free(&c.reply);
    }
    reg_etcd_free(e);
    ev_loop_free(loop);
    return rc;
}

/* ---- open and close ----------------------------------------------------------------- */

static void on_revoked(void *arg, const struct reg_etcd_result *r)
{
    *(bool *)arg = true;
}

static void revoke_check(struct ev_loop *loop, struct ev_timer *t)
{
    if (*(bool *)t->data)
        ev_break(loop);
    else
        ev_timer_start(loop, t, 5);
}

/* A clean stop gives the lease back, so the other nodes see this one go
 * now (and hold its instances for their clients to move) rather than
 * after the TTL. Bounded by REVOKE_TIMEOUT_MS; a failure is harmless (the
 * lease expires). */
static void revoke_lease(struct etcd_store *s)
{
    struct reg_etcd_conf quick = s->conf.etcd;
    quick.request_timeout_ms = REVOKE_TIMEOUT_MS; /* a stop should not wait on a dead etcd */
    struct ev_loop *loop = ev_loop_new();
    struct reg_etcd *e = loop ? reg_etcd_new(loop, &quick, NULL, 0) : NULL;
    bool done = false;
    if (e && reg_etcd_lease_revoke(e, s->lease_id, on_revoked, &done) == 0) {
        struct ev_timer t;
        ev_timer_init(&t, revoke_check, &done);
        ev_timer_start(loop, &t, 5);
        ev_run(loop);
        ev_timer_stop(loop, &t);
    }
    reg_etcd_free(e);
    ev_loop_free(loop);
}

static void es_close(struct reg_store *base)
{
    struct etcd_store *s = es_of(base);
    es_feed_free(s);
    ev_timer_stop(s->loop, &s->lease_timer);
    ev_timer_stop(s->loop, &s->refuse_timer);
    reg_etcd_free(s->etcd); /* drops the callbacks of what is in flight */
    if (s->lease_id)
        revoke_lease(s);
    while (s->writes) {
        struct es_write *w = s->writes;
        write_unlink(s, w);
        if (w->done)
            w->done(w->arg, false, "the store was closed before etcd answered");
        free(w);
    }
    es_complete_waiting(s, -1);
    run_list(&s->refused, -1);
    free(s->waiting.v);
    free(s->refused.v);
    free(s);
}

static const struct reg_store_ops ETCD_OPS = {
    .name = "etcd",
    .scan = es_scan,
    .put_service = es_put_service,
    .delete_service = es_delete_service,
    .put_instance = es_put_instance,
    .delete_instance = es_delete_instance,
    .flush = es_flush,
    .stats = es_stats,
    .close = es_close,
};

struct reg_store *reg_store_etcd_open(struct ev_loop *loop, const struct reg_etcd_store_conf *c, char *err,
                                      size_t errlen)
{
    if (reg_etcd_store_conf_check(c, err, errlen) < 0)
        return NULL;
    struct etcd_store *s = calloc(1, sizeof *s);
    if (!s) {
        errbuf_fail(err, errlen, "out of memory");
        return NULL;
    }
    s->base.ops = &ETCD_OPS;
    s->loop = loop;
    s->conf = *c;
    s->prefix_len = strlen(c->prefix);
    s->stale = true;
    snprintf(s->stale_reason, sizeof s->stale_reason, "not loaded from etcd yet");
    s->st.healthy = false;
    s->etcd = reg_etcd_new(loop, &c->etcd, err, errlen);
    if (!s->etcd) {
        free(s);
        return NULL;
    }
    ev_timer_init(&s->lease_timer, on_lease_timer, s);
    ev_timer_init(&s->refuse_timer, on_refuse_timer, s);
    lease_grant(s);
    return &s->base;
}
