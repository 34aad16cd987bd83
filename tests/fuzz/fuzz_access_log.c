/* libFuzzer target for proxy/access_log: the UTF-8 sanitizer and the JSON
 * and combined line writers.
 *
 * Input: up to nine NUL-separated strings, used as the entry's text fields
 * (request line, user agent, referer, host, client, listener, upstream,
 * reason, and the TLS SNI); byte 0 gives the status, and its low bit
 * whether the entry is a TLS listener's (with version, cipher, SNI; bit 3:
 * with the SNI's text as a client certificate subject too). Checks that every JSON line is one
 * line of ASCII without control bytes that jansson parses, that each text field reads back as itself
 * when it is valid UTF-8 within every field's budget (jansson's own UTF-8
 * check is the oracle), and as something else holding U+FFFD when it is
 * not; and that a combined line is one line of printable ASCII. */
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/access_log.h"

#define CHECK(x)                                                                             \
    do {                                                                                     \
        if (!(x)) {                                                                          \
            fprintf(stderr, "fuzz_access_log: invariant failed at line %d: %s\n", __LINE__, #x); \
            abort();                                                                         \
        }                                                                                    \
    } while (0)

#define SMALLEST_BUDGET 128   /* every text field keeps at least this many bytes */

static const char *const keys[9] = { "request", "user_agent", "referer", "host", "client", "listener", "upstream",
                                     "reason", "sni" };

static char line[ACCESS_LOG_LINE];

/* One line of ASCII without control bytes; DEL (which jansson does not
 * escape, and which is harmless) only where del_ok. */
static void check_line_shape(size_t n, bool del_ok)
{
    CHECK(n > 0 && n < sizeof line && strlen(line) == n && line[n - 1] == '\n');
    for (size_t i = 0; i + 1 < n; i++) {
        unsigned char c = (unsigned char)line[i];
        CHECK(c >= 0x20 && (c < 0x7f || (c == 0x7f && del_ok)));
    }
}

static void check_field(json_t *doc, const char *key, const char *in)
{
    const char *out = json_string_value(json_object_get(doc, key));
    CHECK(out != NULL);
    size_t len = strlen(in);
    json_t *as_json = json_stringn(in, len); /* NULL: not valid UTF-8 */
    /* (A longer field is cut to its budget: no exact expectation.) */
    if (len <= SMALLEST_BUDGET && as_json)
        CHECK(strcmp(out, in) == 0);
    if (len <= SMALLEST_BUDGET && !as_json)
        CHECK(strcmp(out, in) != 0 && strstr(out, "\xef\xbf\xbd") != NULL);
    json_decref(as_json);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    char *text = malloc(size);
    CHECK(text != NULL);
    memcpy(text, data + 1, size - 1);
    text[size - 1] = '\0';
    const char *f[9] = { "", "", "", "", "", "", "", "", "" };
    char *p = text, *end = text + size - 1;
    for (int k = 0; k < 9 && p <= end; k++) {
        f[k] = p;
        p += strlen(p) + 1;
    }
    struct access_entry e = {
        .request_line = f[0], .user_agent = f[1], .referer = f[2], .host = f[3], .client_ip = f[4],
        .listener = f[5], .upstream = f[6], .reason = f[7], .status = data[0] * 3, .bytes_sent = size,
        .duration_us = (uint64_t)data[0] << 56,
    };
    bool tls = data[0] & 1;
    if (tls) {
        e.tls_version = "TLSv1.3";
        e.tls_cipher = "TLS_AES_128_GCM_SHA256";
        e.sni = f[8];
        e.tls_resumed = (data[0] >> 1) % 3; /* TLS_RESUMED_NO, _TICKET, _CACHE */
        if (data[0] & 8)
            e.client_subject = f[8]; /* bit 3: a verified client certificate's subject (the same text) */
    }

    size_t n = access_log_format(ACCESS_LOG_JSON, &e, 0, line, sizeof line);
    check_line_shape(n, true);
    json_error_t err;
    json_t *doc = json_loadb(line, n, 0, &err);
    CHECK(json_is_object(doc));
    for (int k = 0; k < (tls ? 9 : 8); k++)
        check_field(doc, keys[k], f[k]);
    CHECK(tls == (json_object_get(doc, "tls_resumed") != NULL));
    if (e.client_subject)
        check_field(doc, "tls_client_subject", e.client_subject);
    CHECK((e.client_subject != NULL) == (json_object_get(doc, "tls_client_subject") != NULL));
    CHECK(json_integer_value(json_object_get(doc, "status")) == e.status);
    json_decref(doc);

    e.client_ip = "192.0.2.1"; /* the combined format writes it as is: always ours */
    n = access_log_format(ACCESS_LOG_COMBINED, &e, 0, line, sizeof line);
    check_line_shape(n, false);
    free(text);
    return 0;
}
