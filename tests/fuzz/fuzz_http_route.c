/* libFuzzer target: routing and request keys on any request the parser
 * accepts (the cookie walker and host matching are hand-written too). */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "proxy/http_route.h"

static struct cfg_route routes[] = {
    {.host = "api.example.com", .path_prefix = "/", .pool = 1},
    {.host = "*.example.com", .path_prefix = "/static", .pool = 2},
    {.host = NULL, .path_prefix = "/v1", .pool = 3},
};
static struct cfg_listener listener = {.routes = routes, .n_routes = 3, .has_default_pool = true};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct http1_message m;
    if (http1_parse_request((const char *)data, size, NULL, &m) != HTTP1_DONE)
        return 0;
    int pool = http_route(&listener, &m);
    if (pool < 0 || pool > 3)
        __builtin_trap();
    struct http1_slice v;
    static const char *names[] = {"uid", "a", "SLUICE", ""};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        if (http_find_cookie(&m, names[i], &v)) {
            /* the value lies inside the input */
            if (v.p < (const char *)data || v.p + v.len > (const char *)data + size)
                __builtin_trap();
        }
    }
    struct cfg_pool pc = {.hash_key = HASH_KEY_COOKIE, .hash_key_name = "uid"};
    uint64_t a = http_key_hash(&pc, &m, "10.0.0.1");
    if (a != http_key_hash(&pc, &m, "10.0.0.1"))
        __builtin_trap();
    pc.hash_key = HASH_KEY_HEADER;
    pc.hash_key_name = "X-User";
    (void)http_key_hash(&pc, &m, "10.0.0.1");
    struct http1_slice host = http_request_host(&m), path = http_request_path(&m);
    (void)http_host_matches("*.example.com", host);
    if (path.len > m.target.len)
        __builtin_trap();
    return 0;
}
