/* Request variables, in the manner of nginx's: a format string such as
 * "$remote_addr \"$request\" $status ${request_time}s" is compiled once,
 * when the configuration is read (an unknown variable is a config error),
 * and rendered per request into a caller's bounded buffer without any
 * allocation. Used by access-log formats (log_formats:), header rules
 * (request_headers:, response_headers:) and redirects (redirect.to).
 *
 * Syntax: "$name" (the longest run of [A-Za-z0-9_]), "${name}" (to glue a
 * variable to letters that follow), "$$" for a literal '$'. A '$' followed
 * by anything else is an error, so a typo never turns into text silently.
 *
 * The variables are listed in http_var_names (and documented in
 * docs/configuration.md#variables). Two families take a suffix:
 * http_NAME (a request header field) and sent_http_NAME (a response
 * field), NAME lowercase with '_' standing for '-' ("$http_user_agent" is
 * User-Agent), as in nginx; several fields of one name are joined by ", ".
 * A variable without a value renders as "-" in a log line and as "" in a
 * header value or a redirect.
 *
 * Escaping (enum http_escape) makes a rendered value safe where it goes:
 * in a log line, '"', '\\' and bytes outside printable ASCII become
 * "\\xHH" as nginx writes them (escape=json: JSON string escapes), so a
 * line can never be split or forged; in a header value, a value holding a
 * control byte (CR, LF, NUL, ...) is refused as a whole (see
 * http_fmt_render), so no rule can make a malformed message. Literal text
 * of the format is the operator's and is copied as is (a header rule's
 * literals are checked at config time).
 */
#ifndef SLUICE_PROXY_HTTP_VARS_H
#define SLUICE_PROXY_HTTP_VARS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "lib/http1.h"

enum http_var {
    HV_REMOTE_ADDR,
    HV_REMOTE_PORT,
    HV_HOST,
    HV_REQUEST,
    HV_REQUEST_METHOD,
    HV_REQUEST_URI,
    HV_URI,
    HV_ARGS,
    HV_QUERY_STRING,
    HV_SCHEME,
    HV_SERVER_PROTOCOL,
    HV_STATUS,
    HV_BODY_BYTES_SENT,
    HV_BYTES_SENT,
    HV_REQUEST_LENGTH,
    HV_UPSTREAM_ADDR,
    HV_UPSTREAM_CONNECT_TIME,
    HV_UPSTREAM_HEADER_TIME,
    HV_UPSTREAM_RESPONSE_TIME,
    HV_UPSTREAM_TRIES,
    HV_REQUEST_TIME,
    HV_LISTENER,
    HV_ROUTE,
    HV_POOL,
    HV_TIME_ISO8601,
    HV_TIME_LOCAL,
    HV_MSEC,
    HV_REQUEST_ID,
    HV_SSL_PROTOCOL,
    HV_SSL_CIPHER,
    HV_SSL_SERVER_NAME,
    HV_SSL_SESSION_REUSED,
    HV_SSL_CLIENT_S_DN,
    HV_REASON,
    HV_COUNT,
    HV_HTTP_HEADER = HV_COUNT,  /* $http_NAME */
    HV_SENT_HTTP_HEADER,        /* $sent_http_NAME */
};

/* The plain variables' names, indexed by enum http_var, NULL-terminated. */
extern const char *const http_var_names[HV_COUNT + 1];

enum http_escape {
    HTTP_ESC_LOG,     /* nginx's default log escaping: \xHH */
    HTTP_ESC_JSON,    /* nginx's escape=json */
    HTTP_ESC_NONE,    /* log lines too, but nothing escaped: only for trusted formats (not offered) */
    HTTP_ESC_HEADER,  /* a header value or Location: control bytes refuse the whole value */
};

struct http_fmt_part {
    bool literal;
    uint16_t var;            /* enum http_var when !literal */
    uint32_t off, len;       /* literal text, or a header NAME (with '-' for '_'), in http_fmt.text */
};

struct http_fmt {
    char *text;              /* the literals and header names, back to back */
    struct http_fmt_part *parts;
    size_t n_parts;
    uint64_t uses;           /* bit (1 << var) for each plain variable used */
    bool uses_request_headers;
    bool uses_response_headers;
};

/* Compile src. Returns 0, or -1 with a reason in err ("unknown variable
 * \"$stauts\" (did you mean \"$status\"?)"). out is zeroed first; free
 * it with http_fmt_free either way. */
int http_fmt_compile(const char *src, struct http_fmt *out, char *err, size_t errlen);
void http_fmt_free(struct http_fmt *f);
/* Deep copy (for a configuration that shares a named format). */
int http_fmt_copy(struct http_fmt *dst, const struct http_fmt *src);

/* Does the format use any variable (false: a constant text)? */
static inline bool http_fmt_has_vars(const struct http_fmt *f)
{
    for (size_t i = 0; i < f->n_parts; i++)
        if (!f->parts[i].literal)
            return true;
    return false;
}

/* Where the values come from: filled by the caller (http_txn.c) from
 * what it has at the time. Anything NULL or unset renders as "no
 * value". Times are microseconds; -1 = not reached. */
struct http_vars {
    const struct http1_message *req;   /* the request head (slices valid now), or NULL */
    const struct http1_message *resp;  /* the response head being sent, or NULL */
    const char *request_line;          /* $request when req is NULL (a request refused unparsed) */
    bool http2;                        /* the request came over HTTP/2 */
    const char *remote_addr;
    int remote_port;                   /* 0 = unknown */
    const char *scheme;                /* "http" or "https" */
    const char *listener, *route, *pool;
    const char *upstream_addr;
    const char *reason;                /* why Sluice answered itself, or NULL */
    int status;
    uint64_t body_bytes_sent, bytes_sent, request_length;
    int64_t upstream_connect_us, upstream_header_us, upstream_response_us;
    int64_t request_time_us;
    uint32_t upstream_tries;
    struct timespec now;               /* CLOCK_REALTIME */
    const char *request_id;            /* 32 hex digits */
    /* TLS listeners, after the handshake; ssl_protocol NULL on a plain one */
    const char *ssl_protocol, *ssl_cipher, *ssl_server_name, *ssl_client_s_dn;
    bool ssl_session_reused;
};

/* Render f with v into out[0..cap): always NUL-terminated, returns the
 * length (what did not fit is cut). With HTTP_ESC_HEADER, a value that
 * would hold a control byte other than HTAB (CR, LF, NUL, DEL...) is
 * refused: returns 0 and sets *refused (leading and trailing blanks are
 * trimmed, as a field value may not have them). refused may be NULL for
 * the other escapes. */
size_t http_fmt_render(const struct http_fmt *f, const struct http_vars *v, enum http_escape esc, char *out,
                       size_t cap, bool *refused);

/* A copy of a message head whose slices point into the copy, for
 * variables read after the original bytes are gone. */
struct http_head_copy {
    char *raw;
    size_t cap;
    struct http1_message m;
};

/* Copy m (whose slices point into raw[0..m->head_len)) into c, growing
 * c->raw if needed; -1 on out of memory. */
int http_head_copy_take(struct http_head_copy *c, const char *raw, const struct http1_message *m);

/* 32 lowercase hex digits (128 random bits) and a NUL into out[33]. */
void http_vars_new_request_id(char out[33]);

#endif
