/* What etcd's v3 JSON gateway sends and takes, as pure code (no sockets,
 * no clock): base64 for keys and values, the line framing of its streams
 * (/v3/watch, /v3/lease/keepalive) and the decoding of the replies the
 * registry reads (range, put, delete, txn, lease, watch messages).
 * reg_etcd.c does the transport; tests/fuzz/fuzz_reg_etcd_stream.c feeds
 * this file arbitrary bytes.
 *
 * The gateway (grpc-gateway in etcd 3.4) writes each message of a stream
 * as one JSON object followed by "\n"; Go's encoder never puts a raw
 * newline inside a JSON text, so a line is a message. Every 64-bit
 * number comes as a JSON string ("revision": "42"); absent fields are
 * zero (proto3), so a missing "count" or "TTL" means 0. Stream messages
 * are wrapped: {"result": {...}} or {"error": {...}}.
 *
 * Decoded keys and values live in one block owned by the struct they were
 * decoded into (freed by its _free function); each is NUL-terminated as
 * well as counted, so text keys can be used as C strings (a key holding a
 * NUL byte is still decoded whole; the length says where it ends).
 *
 * Errors: -1 with a reason in (err, errlen) naming what is wrong.
 */
#ifndef SLUICE_REGISTRY_REG_ETCD_MSG_H
#define SLUICE_REGISTRY_REG_ETCD_MSG_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- base64 (RFC 4648, with padding, as Go's encoding/json writes []byte) */

/* Bytes needed to encode n bytes, the NUL included. */
size_t reg_etcd_b64_encoded_len(size_t n);
/* Encode n bytes into out (reg_etcd_b64_encoded_len(n) bytes); returns the
 * text length. */
size_t reg_etcd_b64_encode(const void *in, size_t n, char *out);
/* Decode text of length n into out (at least n / 4 * 3 bytes); returns the
 * decoded length, or -1 when the text is not canonical padded base64. */
long reg_etcd_b64_decode(const char *in, size_t n, unsigned char *out);

/* ---- stream framing ------------------------------------------------------ */

#define REG_ETCD_MSG_MAX (16u << 20) /* the largest stream message taken */

struct reg_etcd_framer {
    char *buf;
    size_t len, cap;
    size_t start; /* where the next message begins */
};

void reg_etcd_framer_init(struct reg_etcd_framer *f);
void reg_etcd_framer_free(struct reg_etcd_framer *f);
/* Append received bytes; -1 (reason) when a message would pass
 * REG_ETCD_MSG_MAX or out of memory: the stream must then be dropped. */
int reg_etcd_framer_feed(struct reg_etcd_framer *f, const void *data, size_t n, char *err, size_t errlen);
/* The next complete message (without its "\n"; empty lines are skipped),
 * valid until the next feed; false when none is complete yet. */
bool reg_etcd_framer_next(struct reg_etcd_framer *f, const char **msg, size_t *len);

/* ---- decoded records --------------------------------------------------- */

struct reg_etcd_kv {
    const char *key, *value; /* NUL-terminated, into the owner's block */
    size_t key_len, value_len;
    int64_t create_revision, mod_revision, version, lease;
};

struct reg_etcd_event {
    bool is_delete;
    struct reg_etcd_kv kv;   /* a delete: the key and its mod_revision only */
    bool has_prev;
    struct reg_etcd_kv prev; /* with prev_kv requested */
};

/* The header every reply carries. */
struct reg_etcd_header {
    int64_t revision;
    uint64_t member_id;
    int64_t raft_term;
};

/* A unary reply (/v3/kv/..., /v3/lease/...), or one keepalive message. */
struct reg_etcd_reply {
    struct reg_etcd_header header;
    struct reg_etcd_kv *kvs;       /* range; prev_kvs of a delete */
    size_t n_kvs;
    int64_t count;                 /* range: keys matched; deleterange: keys deleted */
    bool more;                     /* range: cut by a limit */
    bool succeeded;                /* txn */
    int64_t lease_id, ttl;         /* lease grant and keepalive (ttl 0: the lease is gone) */
    /* private */
    char *block;
};

/* A watch stream message. */
enum reg_etcd_watch_kind {
    REG_ETCD_WATCH_CREATED,   /* the watch is in place */
    REG_ETCD_WATCH_EVENTS,    /* events (in revision order) */
    REG_ETCD_WATCH_PROGRESS,  /* no events: header.revision tells how far the watch has seen */
    REG_ETCD_WATCH_CANCELED,  /* the server ended the watch: compact_revision or reason says why */
};

struct reg_etcd_watch_msg {
    enum reg_etcd_watch_kind kind;
    struct reg_etcd_header header;
    struct reg_etcd_event *events;
    size_t n_events;
    int64_t watch_id;
    int64_t compact_revision;      /* canceled because start_revision was compacted */
    char reason[160];              /* canceled: the server's cancel_reason */
    /* private */
    char *block;
};

/* Decode a unary reply's JSON text (status 200). */
int reg_etcd_parse_reply(const char *text, size_t len, struct reg_etcd_reply *out, char *err, size_t errlen);
void reg_etcd_reply_free(struct reg_etcd_reply *r);

/* Decode one keepalive stream message ({"result": {...}}). */
int reg_etcd_parse_keepalive(const char *text, size_t len, struct reg_etcd_reply *out, char *err, size_t errlen);

/* Decode one watch stream message. An {"error": ...} message is -1 with
 * the server's message as the reason. */
int reg_etcd_parse_watch(const char *text, size_t len, struct reg_etcd_watch_msg *out, char *err, size_t errlen);
void reg_etcd_watch_msg_free(struct reg_etcd_watch_msg *m);

/* The reason of an error answer (status not 200): the gateway's
 * {"error": "...", "message": "...", "code": N} or a stream's
 * {"error": {"message": ..., "grpc_code": N}}; anything else is quoted
 * (cut, control characters replaced). *grpc_code gets the code, or -1. */
void reg_etcd_error_reason(const char *text, size_t len, int *grpc_code, char *out, size_t outlen);

/* ---- building requests --------------------------------------------------- */

/* The end of the range holding every key that starts with prefix (the
 * prefix with its last byte below 0xff incremented, the rest dropped);
 * "\0" (one NUL byte, len 1) for "every key" when none can be. Returns
 * the length written into out (at least n bytes). */
size_t reg_etcd_prefix_end(const char *prefix, size_t n, char *out);

/* Add "name": base64(data) to a JSON object; -1 out of memory. */
int reg_etcd_json_set_bytes(json_t *obj, const char *name, const void *data, size_t n);
/* Add "name": "N" (etcd's 64-bit numbers are strings). */
int reg_etcd_json_set_int(json_t *obj, const char *name, int64_t v);

#endif
