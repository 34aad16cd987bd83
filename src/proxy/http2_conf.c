/* The "http2:" block of an http listener: see http2_conf.h. */
#include "proxy/http2_conf.h"

/* RFC 9113 6.5.2: SETTINGS_INITIAL_WINDOW_SIZE at most 2^31-1,
 * SETTINGS_MAX_FRAME_SIZE from 2^14 to 2^24-1. Windows larger than 16 MiB
 * would only let one stream buffer more than any other limit of ours. */
#define H2_MIN_FRAME (16u * CONFIG_KIB)
#define H2_MAX_FRAME (16u * CONFIG_MIB - 1)

void http2_conf_defaults(struct cfg_http2 *h)
{
    *h = (struct cfg_http2){
        .max_concurrent_streams = 128,
        .initial_window_size = 64 * CONFIG_KIB,
        .max_frame_size = 16 * CONFIG_KIB,
        .max_header_list_size = 32 * CONFIG_KIB,
        .max_continuations = 8,
        .flood_window_ms = 10 * CONFIG_SECOND,
        .max_resets = 1000,
        .max_pings = 100,
        .max_settings = 100,
        .max_empty_frames = 100,
    };
}

enum {
    H2K_MAX_CONCURRENT_STREAMS, H2K_INITIAL_WINDOW_SIZE, H2K_MAX_FRAME_SIZE, H2K_MAX_HEADER_LIST_SIZE,
    H2K_MAX_CONTINUATIONS, H2K_FLOOD_WINDOW, H2K_MAX_RESETS, H2K_MAX_PINGS, H2K_MAX_SETTINGS,
    H2K_MAX_EMPTY_FRAMES,
};
static const char *const http2_keys[] = {
    "max_concurrent_streams", "initial_window_size", "max_frame_size", "max_header_list_size",
    "max_continuations", "flood_window", "max_resets", "max_pings", "max_settings", "max_empty_frames", NULL,
};

static void http2_field(struct config_ctx *c, int key, const struct ynode *v, void *obj)
{
    struct cfg_http2 *h = obj;
    switch (key) {
    case H2K_MAX_CONCURRENT_STREAMS:
        config_get_uint(c, v, 1, 10000, &h->max_concurrent_streams);
        break;
    case H2K_INITIAL_WINDOW_SIZE:
        config_get_size(c, v, 1 * CONFIG_KIB, 16 * CONFIG_MIB, &h->initial_window_size);
        break;
    case H2K_MAX_FRAME_SIZE:
        config_get_size(c, v, H2_MIN_FRAME, H2_MAX_FRAME, &h->max_frame_size);
        break;
    case H2K_MAX_HEADER_LIST_SIZE:
        config_get_size(c, v, 1 * CONFIG_KIB, 16 * CONFIG_MIB, &h->max_header_list_size);
        break;
    case H2K_MAX_CONTINUATIONS:
        config_get_uint(c, v, 0, 1000, &h->max_continuations);
        break;
    case H2K_FLOOD_WINDOW:
        config_get_duration(c, v, 100, 1 * CONFIG_HOUR, &h->flood_window_ms);
        break;
    case H2K_MAX_RESETS:
        config_get_uint(c, v, 1, 1000000, &h->max_resets);
        break;
    case H2K_MAX_PINGS:
        config_get_uint(c, v, 1, 1000000, &h->max_pings);
        break;
    case H2K_MAX_SETTINGS:
        config_get_uint(c, v, 1, 1000000, &h->max_settings);
        break;
    case H2K_MAX_EMPTY_FRAMES:
        config_get_uint(c, v, 1, 1000000, &h->max_empty_frames);
        break;
    }
}

void parse_http2(struct config_ctx *c, const struct ynode *v, struct cfg_http2 *h)
{
    config_walk_map(c, v, http2_keys, http2_field, h);
}
