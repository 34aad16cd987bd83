/* The HTTP/2 protocol of a client connection: see h2_session.h. */
#include "proxy/h2_session.h"

#include <stdlib.h>
#include <string.h>

#include "core/log.h"

const char *const h2_flood_names[H2_FLOOD_KINDS] = {
    [H2_FLOOD_RESET] = "reset",
    [H2_FLOOD_PING] = "ping",
    [H2_FLOOD_SETTINGS] = "settings",
    [H2_FLOOD_EMPTY_FRAMES] = "empty_frames",
    [H2_FLOOD_CONTINUATION] = "continuation",
    [H2_FLOOD_ACK_QUEUE] = "ack_queue",
};

static uint32_t bucket_size(const struct h2_session *s, int kind)
{
    switch (kind) {
    case H2_FLOOD_RESET: return s->cfg->max_resets;
    case H2_FLOOD_PING: return s->cfg->max_pings;
    case H2_FLOOD_SETTINGS: return s->cfg->max_settings;
    default: return s->cfg->max_empty_frames;
    }
}

/* One more frame of a rate-limited kind: false when its bucket is empty
 * (the bucket refills at its size per flood_window). */
static bool bucket_take(struct h2_session *s, int kind)
{
    struct h2_bucket *b = &s->buckets[kind];
    double size = bucket_size(s, kind);
    if (s->now_ms > b->at_ms) {
        b->tokens += size * (double)(s->now_ms - b->at_ms) / s->cfg->flood_window_ms;
        if (b->tokens > size)
            b->tokens = size;
        b->at_ms = s->now_ms;
    }
    if (b->tokens < 1)
        return false;
    b->tokens -= 1;
    return true;
}

/* End the connection for a flood: GOAWAY ENHANCE_YOUR_CALM goes out with
 * whatever nghttp2 still sends, and the feed stops here. */
static int flooded(struct h2_session *s, enum h2_flood kind)
{
    if (s->flood < 0)
        s->flood = (int)kind;
    nghttp2_session_terminate_session(s->ng, NGHTTP2_ENHANCE_YOUR_CALM);
    return NGHTTP2_ERR_CALLBACK_FAILURE;
}

static struct h2_req *req_of(struct h2_session *s, int32_t id)
{
    return nghttp2_session_get_stream_user_data(s->ng, id);
}

static int on_begin_headers(nghttp2_session *ng, const nghttp2_frame *frame, void *user)
{
    struct h2_session *s = user;
    if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST)
        return 0; /* trailers: see on_header */
    struct h2_req *r = s->hooks->stream_open(s->owner, frame->hd.stream_id);
    if (!r) {
        nghttp2_submit_rst_stream(ng, NGHTTP2_FLAG_NONE, frame->hd.stream_id, NGHTTP2_REFUSED_STREAM);
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    }
    nghttp2_session_set_stream_user_data(ng, frame->hd.stream_id, r);
    return 0;
}

static int on_header(nghttp2_session *ng, const nghttp2_frame *frame, const uint8_t *name, size_t nlen,
                     const uint8_t *value, size_t vlen, uint8_t flags, void *user)
{
    struct h2_session *s = user;
    if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST)
        return 0; /* request trailers are not forwarded (docs/http2.md) */
    struct h2_req *r = req_of(s, frame->hd.stream_id);
    if (!r)
        return 0;
    if (h2_req_add(r, name, nlen, value, vlen) < 0)
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE; /* out of memory: reset the stream */
    return 0;
}

static int on_frame_recv(nghttp2_session *ng, const nghttp2_frame *frame, void *user)
{
    struct h2_session *s = user;
    bool end_stream = frame->hd.flags & NGHTTP2_FLAG_END_STREAM;
    struct h2_req *r;
    switch (frame->hd.type) {
    case NGHTTP2_HEADERS:
        r = req_of(s, frame->hd.stream_id);
        if (!r)
            return 0;
        if (frame->headers.cat == NGHTTP2_HCAT_REQUEST)
            s->hooks->request(s->owner, r, end_stream);
        else if (end_stream)
            s->hooks->end_stream(s->owner, r);
        return 0;
    case NGHTTP2_DATA:
        if (frame->hd.length == 0 && !end_stream && !bucket_take(s, H2_FLOOD_EMPTY_FRAMES))
            return flooded(s, H2_FLOOD_EMPTY_FRAMES);
        r = req_of(s, frame->hd.stream_id);
        if (r && end_stream)
            s->hooks->end_stream(s->owner, r);
        return 0;
    case NGHTTP2_RST_STREAM:
        return bucket_take(s, H2_FLOOD_RESET) ? 0 : flooded(s, H2_FLOOD_RESET);
    case NGHTTP2_PING:
        if (frame->hd.flags & NGHTTP2_FLAG_ACK)
            return 0;
        return bucket_take(s, H2_FLOOD_PING) ? 0 : flooded(s, H2_FLOOD_PING);
    case NGHTTP2_SETTINGS:
        if (frame->hd.flags & NGHTTP2_FLAG_ACK)
            return 0;
        return bucket_take(s, H2_FLOOD_SETTINGS) ? 0 : flooded(s, H2_FLOOD_SETTINGS);
    default:
        return 0;
    }
}

static int on_data_chunk(nghttp2_session *ng, uint8_t flags, int32_t id, const uint8_t *data, size_t len,
                         void *user)
{
    struct h2_session *s = user;
    struct h2_req *r = req_of(s, id);
    if (!r) {
        /* A stream we refused or no longer follow: give its window back. */
        nghttp2_session_consume(ng, id, len);
        return 0;
    }
    if (s->hooks->data(s->owner, r, data, len) == 0)
        return 0;
    s->pending.p = malloc(len);
    if (!s->pending.p)
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    memcpy(s->pending.p, data, len);
    s->pending.n = len;
    s->pending.r = r;
    s->pending.id = id;
    return NGHTTP2_ERR_PAUSE;
}

static void pending_drop(struct h2_session *s)
{
    free(s->pending.p);
    memset(&s->pending, 0, sizeof s->pending);
}

static int on_stream_close(nghttp2_session *ng, int32_t id, uint32_t error_code, void *user)
{
    struct h2_session *s = user;
    struct h2_req *r = req_of(s, id);
    if (!r)
        return 0;
    if (s->pending.r == r)
        pending_drop(s);
    nghttp2_session_set_stream_user_data(ng, id, NULL);
    s->hooks->stream_closed(s->owner, r, error_code);
    return 0;
}

/* A response that ended before the request did (an error of ours, or a
 * backend that answered early): the rest of the body is not wanted, so
 * stop the client with RST_STREAM NO_ERROR once the END_STREAM is out
 * (RFC 9113 8.1), not before, or the response tail would be lost. */
static int on_frame_send(nghttp2_session *ng, const nghttp2_frame *frame, void *user)
{
    if ((frame->hd.type == NGHTTP2_DATA || frame->hd.type == NGHTTP2_HEADERS) &&
        (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) && nghttp2_session_get_stream_remote_close(ng, frame->hd.stream_id) == 0)
        nghttp2_submit_rst_stream(ng, NGHTTP2_FLAG_NONE, frame->hd.stream_id, NGHTTP2_NO_ERROR);
    return 0;
}

static int on_error(nghttp2_session *ng, int code, const char *msg, size_t len, void *user)
{
    log_debug("http2: %.*s", (int)len, msg);
    return 0;
}

int h2_session_init(struct h2_session *s, const struct cfg_http2 *cfg, const struct h2_session_hooks *hooks,
                    void *owner, uint64_t now_ms)
{
    memset(s, 0, sizeof *s);
    s->cfg = cfg;
    s->hooks = hooks;
    s->owner = owner;
    s->now_ms = now_ms;
    s->flood = -1;
    for (int k = 0; k < H2_BUCKETS; k++)
        s->buckets[k] = (struct h2_bucket){bucket_size(s, k), now_ms};

    nghttp2_session_callbacks *cb;
    if (nghttp2_session_callbacks_new(&cb))
        return -1;
    nghttp2_session_callbacks_set_on_begin_headers_callback(cb, on_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(cb, on_header);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cb, on_frame_recv);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, on_data_chunk);
    nghttp2_session_callbacks_set_on_stream_close_callback(cb, on_stream_close);
    nghttp2_session_callbacks_set_on_frame_send_callback(cb, on_frame_send);
    nghttp2_session_callbacks_set_error_callback2(cb, on_error);
    nghttp2_option *opt;
    if (nghttp2_option_new(&opt)) {
        nghttp2_session_callbacks_del(cb);
        return -1;
    }
    /* Windows open as the backend takes the body (h2_conn.c). */
    nghttp2_option_set_no_auto_window_update(opt, 1);
    nghttp2_option_set_max_continuations(opt, cfg->max_continuations);
    /* Our own token bucket counts resets (H2_FLOOD_RESET) so that the
     * close shows in the metrics; nghttp2's (Debian's backport of the
     * CVE-2023-44487 fix, 1000 then 33/s) would end the connection
     * without telling us, so it is set out of reach. */
    nghttp2_option_set_stream_reset_rate_limit(opt, 1ull << 40, 1ull << 40);
    int rc = nghttp2_session_server_new2(&s->ng, cb, s, opt);
    nghttp2_option_del(opt);
    nghttp2_session_callbacks_del(cb);
    if (rc)
        return -1;
    nghttp2_settings_entry iv[] = {
        {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, cfg->max_concurrent_streams},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, cfg->initial_window_size},
        {NGHTTP2_SETTINGS_MAX_FRAME_SIZE, cfg->max_frame_size},
        {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, cfg->max_header_list_size},
        /* Closed streams need not be kept for a priority tree. */
        {NGHTTP2_SETTINGS_NO_RFC7540_PRIORITIES, 1},
    };
    if (nghttp2_submit_settings(s->ng, NGHTTP2_FLAG_NONE, iv, sizeof iv / sizeof iv[0]) ||
        nghttp2_session_set_local_window_size(s->ng, NGHTTP2_FLAG_NONE, 0, H2_CONNECTION_WINDOW)) {
        nghttp2_session_del(s->ng);
        s->ng = NULL;
        return -1;
    }
    return 0;
}

void h2_session_fini(struct h2_session *s)
{
    pending_drop(s);
    if (s->ng)
        nghttp2_session_del(s->ng);
    s->ng = NULL;
}

static int classify(struct h2_session *s, ssize_t rv)
{
    if (s->flood < 0 && rv == NGHTTP2_ERR_FLOODED)
        s->flood = H2_FLOOD_ACK_QUEUE;
    if (s->flood < 0 && rv == NGHTTP2_ERR_TOO_MANY_CONTINUATIONS)
        s->flood = H2_FLOOD_CONTINUATION;
    if (s->flood >= 0)
        nghttp2_session_terminate_session(s->ng, NGHTTP2_ENHANCE_YOUR_CALM);
    else if (rv != NGHTTP2_ERR_CALLBACK_FAILURE)
        nghttp2_session_terminate_session(s->ng, NGHTTP2_PROTOCOL_ERROR);
    log_debug("http2: connection ends: %s", nghttp2_strerror((int)rv));
    return -1;
}

ssize_t h2_session_feed(struct h2_session *s, const uint8_t *p, size_t n)
{
    if (s->pending.n) {
        if (s->hooks->data(s->owner, s->pending.r, s->pending.p, s->pending.n) != 0)
            return 0;
        pending_drop(s);
    }
    if (!n)
        return 0;
    ssize_t rv = nghttp2_session_mem_recv(s->ng, p, n);
    if (rv < 0)
        return classify(s, rv);
    return rv;
}
