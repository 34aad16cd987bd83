/* etcd's v3 JSON gateway: base64, stream framing and reply decoding (see
 * reg_etcd_msg.h). JSON itself is read by jansson; the hand-written parts
 * are base64 and the line framing, both fuzzed. */
#include "lib/errbuf.h"
#include "registry/reg_etcd_msg.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- base64 ------------------------------------------------------------- */

static const char B64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

size_t reg_etcd_b64_encoded_len(size_t n)
{
    return (n + 2) / 3 * 4 + 1;
}

size_t reg_etcd_b64_encode(const void *in, size_t n, char *out)
{
    const unsigned char *p = in;
    size_t o = 0, i = 0;
    for (; i + 3 <= n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
        out[o++] = B64[v >> 18];
        out[o++] = B64[(v >> 12) & 63];
        out[o++] = B64[(v >> 6) & 63];
        out[o++] = B64[v & 63];
    }
    if (n - i == 1) {
        uint32_t v = (uint32_t)p[i] << 16;
        out[o++] = B64[v >> 18];
        out[o++] = B64[(v >> 12) & 63];
        out[o++] = '=';
        out[o++] = '=';
    } else if (n - i == 2) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8;
        out[o++] = B64[v >> 18];
        out[o++] = B64[(v >> 12) & 63];
        out[o++] = B64[(v >> 6) & 63];
        out[o++] = '=';
    }
    out[o] = '\0';
    return o;
}

static int b64_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

long reg_etcd_b64_decode(const char *in, size_t n, unsigned char *out)
{
    if (n % 4)
        return -1;
    size_t o = 0;
    for (size_t i = 0; i < n; i += 4) {
        bool last = i + 4 == n;
        int v[4];
        int pad = 0;
        for (int j = 0; j < 4; j++) {
            unsigned char c = (unsigned char)in[i + j];
            if (c == '=' && last && j >= 2) {
                v[j] = 0;
                pad++;
                continue;
            }
            if (pad) /* data after padding */
                return -1;
            v[j] = b64_value(c);
            if (v[j] < 0)
                return -1;
        }
        uint32_t w = (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 | (uint32_t)v[3];
        out[o++] = (unsigned char)(w >> 16);
        if (pad == 2) {
            if (w & 0xffff) /* non-canonical: bits left in the padding */
                return -1;
            break;
        }
        out[o++] = (unsigned char)(w >> 8);
        if (pad == 1) {
            if (w & 0xff)
                return -1;
            break;
        }
        out[o++] = (unsigned char)w;
    }
    return (long)o;
}

/* ---- framing -------------------------------------------------------------- */

void reg_etcd_framer_init(struct reg_etcd_framer *f)
{
    memset(f, 0, sizeof *f);
}

void reg_etcd_framer_free(struct reg_etcd_framer *f)
{
    free(f->buf);
    memset(f, 0, sizeof *f);
}

int reg_etcd_framer_feed(struct reg_etcd_framer *f, const void *data, size_t n, char *err, size_t errlen)
{
    if (f->start) { /* drop what was handed out */
        memmove(f->buf, f->buf + f->start, f->len - f->start);
        f->len -= f->start;
        f->start = 0;
    }
    /* The part without a newline yet (what is buffered, when the new
     * bytes hold none, plus the new bytes after their last one) must stay
     * under the limit: a peer cannot make us buffer without end. */
    const char *d = data;
    size_t open = f->len + n;
    for (size_t i = n; i > 0; i--) {
        if (d[i - 1] == '\n') {
            open = n - i;
            break;
        }
    }
    if (open > REG_ETCD_MSG_MAX)
        return errbuf_fail(err, errlen, "a stream message is larger than %u bytes", REG_ETCD_MSG_MAX);
    if (f->len + n > f->cap) {
        size_t cap = f->cap ? f->cap : 4096;
        while (cap < f->len + n)
            cap *= 2;
        char *nb = realloc(f->buf, cap);
        if (!nb)
            return errbuf_fail(err, errlen, "out of memory");
        f->buf = nb;
        f->cap = cap;
    }
    memcpy(f->buf + f->len, data, n);
    f->len += n;
    return 0;
}

bool reg_etcd_framer_next(struct reg_etcd_framer *f, const char **msg, size_t *len)
{
    while (f->start < f->len) {
        char *p = f->buf + f->start;
        char *nl = memchr(p, '\n', f->len - f->start);
        if (!nl)
            return false;
        size_t n = (size_t)(nl - p);
        f->start += n + 1;
        if (n && p[n - 1] == '\r')
            n--;
        if (n) {
            *msg = p;
            *len = n;
            return true;
        }
    }
    return false;
}

/* ---- decoding ----------------------------------------------------------- */

/* A 64-bit number as the gateway writes it: a string of digits (or, to be
 * lenient, a JSON integer). Absent: 0. */
static int get_int(const json_t *obj, const char *name, int64_t *out, char *err, size_t errlen)
{
    const json_t *v = json_object_get(obj, name);
    *out = 0;
    if (!v || json_is_null(v))
        return 0;
    if (json_is_integer(v)) {
        *out = json_integer_value(v);
        return 0;
    }
    if (!json_is_string(v))
        return errbuf_fail(err, errlen, "%s: not a number", name);
    const char *s = json_string_value(v);
    char *end;
    errno = 0;
    long long x = strtoll(s, &end, 10);
    if (!*s || *end || errno)
        return errbuf_fail(err, errlen, "%s: not a number: \"%.40s\"", name, s);
    *out = x;
    return 0;
}

static int get_bool(const json_t *obj, const char *name, bool *out, char *err, size_t errlen)
{
    const json_t *v = json_object_get(obj, name);
    *out = false;
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_boolean(v))
        return errbuf_fail(err, errlen, "%s: not true or false", name);
    *out = json_is_true(v);
    return 0;
}

static int parse_header(const json_t *obj, struct reg_etcd_header *h, char *err, size_t errlen)
{
    memset(h, 0, sizeof *h);
    const json_t *hd = json_object_get(obj, "header");
    if (!hd)
        return 0;
    if (!json_is_object(hd))
        return errbuf_fail(err, errlen, "header: not an object");
    int64_t member;
    if (get_int(hd, "revision", &h->revision, err, errlen) < 0 || get_int(hd, "raft_term", &h->raft_term, err, errlen) < 0)
        return -1;
    /* member_id is a uint64 and may not fit an int64: read it as text. */
    const json_t *m = json_object_get(hd, "member_id");
    if (json_is_string(m))
        h->member_id = strtoull(json_string_value(m), NULL, 10);
    else if (get_int(hd, "member_id", &member, NULL, 0) == 0)
        h->member_id = (uint64_t)member;
    return 0;
}

/* Decoding keys and values: first measure every base64 string of a reply
 * (so one block holds them all), then decode into the block. */
struct bytes_block {
    char *block;
    size_t cap, used;
};

static size_t b64_field_len(const json_t *kv, const char *name)
{
    const json_t *v = json_object_get(kv, name);
    return json_is_string(v) ? json_string_length(v) / 4 * 3 + 1 : 1;
}

static size_t kv_bytes(const json_t *kv)
{
    return json_is_object(kv) ? b64_field_len(kv, "key") + b64_field_len(kv, "value") : 0;
}

static int block_reserve(struct bytes_block *b, size_t need, char *err, size_t errlen)
{
    b->cap = need ? need : 1;
    b->block = malloc(b->cap);
    if (!b->block)
        return errbuf_fail(err, errlen, "out of memory");
    return 0;
}

static int decode_bytes(struct bytes_block *b, const json_t *kv, const char *name, const char **out, size_t *out_len,
                        char *err, size_t errlen)
{
    const json_t *v = json_object_get(kv, name);
    char *dst = b->block + b->used;
    *out = dst;
    *out_len = 0;
    if (v && !json_is_null(v)) {
        if (!json_is_string(v))
            return errbuf_fail(err, errlen, "%s: not a base64 string", name);
        size_t n = json_string_length(v);
        if (b->used + n / 4 * 3 + 1 > b->cap)
            return errbuf_fail(err, errlen, "%s: too long", name);
        long d = reg_etcd_b64_decode(json_string_value(v), n, (unsigned char *)dst);
        if (d < 0)
            return errbuf_fail(err, errlen, "%s: not base64", name);
        *out_len = (size_t)d;
    }
    dst[*out_len] = '\0';
    b->used += *out_len + 1;
    return 0;
}

static int parse_kv(struct bytes_block *b, const json_t *kv, struct reg_etcd_kv *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    if (!json_is_object(kv))
        return errbuf_fail(err, errlen, "a key-value is not an object");
    if (decode_bytes(b, kv, "key", &out->key, &out->key_len, err, errlen) < 0 ||
        decode_bytes(b, kv, "value", &out->value, &out->value_len, err, errlen) < 0 ||
        get_int(kv, "create_revision", &out->create_revision, err, errlen) < 0 ||
        get_int(kv, "mod_revision", &out->mod_revision, err, errlen) < 0 ||
        get_int(kv, "version", &out->version, err, errlen) < 0 || get_int(kv, "lease", &out->lease, err, errlen) < 0)
        return -1;
    return 0;
}

static json_t *load(const char *text, size_t len, char *err, size_t errlen)
{
    json_error_t je;
    json_t *doc = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
    if (!doc) {
        errbuf_fail(err, errlen, "not JSON: %s", je.text);
        return NULL;
    }
    if (!json_is_object(doc)) {
        json_decref(doc);
        errbuf_fail(err, errlen, "not a JSON object");
        return NULL;
    }
    return doc;
}

/* The kvs of a range, or prev_kvs of a delete. */
static int parse_kvs(const json_t *obj, const char *name, struct reg_etcd_reply *out, char *err, size_t errlen)
{
    const json_t *a = json_object_get(obj, name);
    if (!a || json_is_null(a))
        return 0;
    if (!json_is_array(a))
        return errbuf_fail(err, errlen, "%s: not a list", name);
    size_t n = json_array_size(a), need = 0, i;
    const json_t *kv;
    json_array_foreach(a, i, kv) need += kv_bytes(kv);
    struct bytes_block b = {0};
    if (block_reserve(&b, need, err, errlen) < 0)
        return -1;
    out->block = b.block;
    out->kvs = calloc(n ? n : 1, sizeof *out->kvs);
    if (!out->kvs)
        return errbuf_fail(err, errlen, "out of memory");
    json_array_foreach(a, i, kv)
    {
        char why[120];
        if (parse_kv(&b, kv, &out->kvs[i], why, sizeof why) < 0)
            return errbuf_fail(err, errlen, "%s[%zu]: %s", name, i, why);
        out->n_kvs++;
    }
    return 0;
}

static int parse_reply_obj(const json_t *doc, struct reg_etcd_reply *out, char *err, size_t errlen)
{
    if (parse_header(doc, &out->header, err, errlen) < 0 || get_bool(doc, "more", &out->more, err, errlen) < 0 ||
        get_bool(doc, "succeeded", &out->succeeded, err, errlen) < 0 ||
        get_int(doc, "ID", &out->lease_id, err, errlen) < 0 || get_int(doc, "TTL", &out->ttl, err, errlen) < 0)
        return -1;
    int64_t deleted = 0;
    if (get_int(doc, "count", &out->count, err, errlen) < 0 || get_int(doc, "deleted", &deleted, err, errlen) < 0)
        return -1;
    if (deleted)
        out->count = deleted;
    if (parse_kvs(doc, "kvs", out, err, errlen) < 0)
        return -1;
    if (!out->kvs && parse_kvs(doc, "prev_kvs", out, err, errlen) < 0)
        return -1;
    return 0;
}

int reg_etcd_parse_reply(const char *text, size_t len, struct reg_etcd_reply *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    json_t *doc = load(text, len, err, errlen);
    if (!doc)
        return -1;
    int rc = parse_reply_obj(doc, out, err, errlen);
    json_decref(doc);
    if (rc < 0)
        reg_etcd_reply_free(out);
    return rc;
}

void reg_etcd_reply_free(struct reg_etcd_reply *r)
{
    free(r->kvs);
    free(r->block);
    memset(r, 0, sizeof *r);
}

/* The stream wrapper: {"result": X} gives X; {"error": E} is -1 with E's
 * message. */
static const json_t *stream_result(const json_t *doc, char *err, size_t errlen)
{
    const json_t *res = json_object_get(doc, "result");
    if (json_is_object(res))
        return res;
    const json_t *e = json_object_get(doc, "error");
    if (e) {
        const json_t *msg = json_is_object(e) ? json_object_get(e, "message") : e;
        errbuf_fail(err, errlen, "etcd: %.150s", json_is_string(msg) ? json_string_value(msg) : "an error without a message");
        return NULL;
    }
    errbuf_fail(err, errlen, "a stream message without result or error");
    return NULL;
}

int reg_etcd_parse_keepalive(const char *text, size_t len, struct reg_etcd_reply *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    json_t *doc = load(text, len, err, errlen);
    if (!doc)
        return -1;
    const json_t *res = stream_result(doc, err, errlen);
    int rc = res ? parse_reply_obj(res, out, err, errlen) : -1;
    json_decref(doc);
    if (rc < 0)
        reg_etcd_reply_free(out);
    return rc;
}

static int parse_event(struct bytes_block *b, const json_t *ev, struct reg_etcd_event *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    if (!json_is_object(ev))
        return errbuf_fail(err, errlen, "not an object");
    const json_t *type = json_object_get(ev, "type");
    if (type && !json_is_null(type)) {
        const char *t = json_is_string(type) ? json_string_value(type) : "";
        if (strcmp(t, "DELETE") == 0)
            out->is_delete = true;
        else if (strcmp(t, "PUT") != 0)
            return errbuf_fail(err, errlen, "type: unknown (%.20s)", t);
    }
    if (parse_kv(b, json_object_get(ev, "kv"), &out->kv, err, errlen) < 0)
        return -1;
    const json_t *prev = json_object_get(ev, "prev_kv");
    if (prev && !json_is_null(prev)) {
        if (parse_kv(b, prev, &out->prev, err, errlen) < 0)
            return -1;
        out->has_prev = true;
    }
    return 0;
}

static int parse_events(const json_t *res, struct reg_etcd_watch_msg *out, char *err, size_t errlen)
{
    const json_t *a = json_object_get(res, "events");
    if (!a || json_is_null(a))
        return 0;
    if (!json_is_array(a))
        return errbuf_fail(err, errlen, "events: not a list");
    size_t n = json_array_size(a), need = 0, i;
    const json_t *ev;
    json_array_foreach(a, i, ev) need += json_is_object(ev) ? kv_bytes(json_object_get(ev, "kv")) +
                                                                  kv_bytes(json_object_get(ev, "prev_kv"))
                                                            : 0;
    struct bytes_block b = {0};
    if (block_reserve(&b, need, err, errlen) < 0)
        return -1;
    out->block = b.block;
    out->events = calloc(n ? n : 1, sizeof *out->events);
    if (!out->events)
        return errbuf_fail(err, errlen, "out of memory");
    json_array_foreach(a, i, ev)
    {
        char why[120];
        if (parse_event(&b, ev, &out->events[i], why, sizeof why) < 0)
            return errbuf_fail(err, errlen, "events[%zu]: %s", i, why);
        out->n_events++;
    }
    return 0;
}

static int parse_watch_obj(const json_t *res, struct reg_etcd_watch_msg *out, char *err, size_t errlen)
{
    bool created, canceled;
    if (parse_header(res, &out->header, err, errlen) < 0 || get_bool(res, "created", &created, err, errlen) < 0 ||
        get_bool(res, "canceled", &canceled, err, errlen) < 0 ||
        get_int(res, "watch_id", &out->watch_id, err, errlen) < 0 ||
        get_int(res, "compact_revision", &out->compact_revision, err, errlen) < 0 ||
        parse_events(res, out, err, errlen) < 0)
        return -1;
    const json_t *why = json_object_get(res, "cancel_reason");
    if (json_is_string(why))
        snprintf(out->reason, sizeof out->reason, "%s", json_string_value(why));
    if (canceled)
        out->kind = REG_ETCD_WATCH_CANCELED;
    else if (created)
        out->kind = REG_ETCD_WATCH_CREATED;
    else if (out->n_events)
        out->kind = REG_ETCD_WATCH_EVENTS;
    else
        out->kind = REG_ETCD_WATCH_PROGRESS;
    return 0;
}

int reg_etcd_parse_watch(const char *text, size_t len, struct reg_etcd_watch_msg *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    json_t *doc = load(text, len, err, errlen);
    if (!doc)
        return -1;
    const json_t *res = stream_result(doc, err, errlen);
    int rc = res ? parse_watch_obj(res, out, err, errlen) : -1;
    json_decref(doc);
    if (rc < 0)
        reg_etcd_watch_msg_free(out);
    return rc;
}

void reg_etcd_watch_msg_free(struct reg_etcd_watch_msg *m)
{
    free(m->events);
    free(m->block);
    memset(m, 0, sizeof *m);
}

/* Quote untrusted text into a reason: printable ASCII only, cut. */
static void quote(const char *text, size_t len, char *out, size_t outlen)
{
    size_t o = 0;
    for (size_t i = 0; i < len && o + 1 < outlen && i < 150; i++) {
        unsigned char c = (unsigned char)text[i];
        out[o++] = c >= 0x20 && c < 0x7f ? (char)c : ' ';
    }
    out[o] = '\0';
}

void reg_etcd_error_reason(const char *text, size_t len, int *grpc_code, char *out, size_t outlen)
{
    *grpc_code = -1;
    json_t *doc = json_loadb(text, len, 0, NULL);
    const json_t *e = json_is_object(doc) ? json_object_get(doc, "error") : NULL;
    const json_t *src = json_is_object(e) ? e : doc;
    const json_t *msg = json_is_object(src) ? json_object_get(src, "message") : NULL;
    if (!json_is_string(msg) && json_is_string(e))
        msg = e;
    const json_t *code = json_is_object(src) ? json_object_get(src, "code") : NULL;
    if (!code && json_is_object(src))
        code = json_object_get(src, "grpc_code");
    if (json_is_integer(code))
        *grpc_code = (int)json_integer_value(code);
    if (json_is_string(msg))
        quote(json_string_value(msg), json_string_length(msg), out, outlen);
    else if (len)
        quote(text, len, out, outlen);
    else
        snprintf(out, outlen, "an empty answer");
    json_decref(doc);
}

/* ---- building requests ----------------------------------------------------- */

size_t reg_etcd_prefix_end(const char *prefix, size_t n, char *out)
{
    memcpy(out, prefix, n);
    for (size_t i = n; i > 0; i--) {
        unsigned char c = (unsigned char)out[i - 1];
        if (c < 0xff) {
            out[i - 1] = (char)(c + 1);
            return i;
        }
    }
    out[0] = '\0';
    return 1;
}

int reg_etcd_json_set_bytes(json_t *obj, const char *name, const void *data, size_t n)
{
    size_t cap = reg_etcd_b64_encoded_len(n);
    char stackbuf[512];
    char *text = cap <= sizeof stackbuf ? stackbuf : malloc(cap);
    if (!text)
        return -1;
    size_t len = reg_etcd_b64_encode(data, n, text);
    int rc = json_object_set_new(obj, name, json_stringn(text, len));
    if (text != stackbuf)
        free(text);
    return rc;
}

int reg_etcd_json_set_int(json_t *obj, const char *name, int64_t v)
{
    char text[24];
    snprintf(text, sizeof text, "%" PRId64, v);
    return json_object_set_new(obj, name, json_string(text));
}
