/* See http1.h.
 *
 * How the head parsers stay consistent when fed a growing buffer: they only
 * ever look at the first min(len, max_head) bytes (the "view"), read them in
 * order, and decide everything from bytes already read. Whenever they need a
 * byte the view does not have, the answer is HTTP1_INCOMPLETE, or 431 when
 * the view is already max_head bytes long (no further input can complete a
 * head that fits). The request-line limit (414) is likewise a decision about
 * a byte position, taken before reading that position. So a prefix of the
 * input can only give HTTP1_INCOMPLETE or the final answer. */
#include "lib/http1.h"

#include <limits.h>
#include <string.h>

/* Internal steps return HTTP1_DONE to mean "this part is fine, go on". */
#define STEP_OK HTTP1_DONE

const struct http1_limits http1_default_limits = {
    .max_request_line = 8192,
    .max_head = 65536,
    .max_headers = 100,
};

/* ---- character classes ------------------------------------------------ */

/* tchar (RFC 9110 §5.6.2): header names, methods, transfer codings. */
static const bool tchar[256] = {
    ['!'] = 1, ['#'] = 1, ['$'] = 1, ['%'] = 1, ['&'] = 1, ['\''] = 1, ['*'] = 1, ['+'] = 1,
    ['-'] = 1, ['.'] = 1, ['^'] = 1, ['_'] = 1, ['`'] = 1, ['|'] = 1, ['~'] = 1,
    ['0' ... '9'] = 1, ['A' ... 'Z'] = 1, ['a' ... 'z'] = 1,
};

/* field-content bytes: HTAB, SP, VCHAR, obs-text. Also what a quoted-pair may escape. */
static const bool value_byte[256] = {
    ['\t'] = 1, [' ' ... '~'] = 1, [0x80 ... 0xff] = 1,
};

/* request-target bytes: visible ASCII except '#' (a fragment is never part of a
 * request-target, and servers disagree about what follows one). */
static const bool target_byte[256] = {
    ['!' ... '"'] = 1, ['$' ... '~'] = 1,
};

/* qdtext (RFC 9110 §5.6.4): inside a quoted-string, apart from '\' escapes. */
static const bool qdtext[256] = {
    ['\t'] = 1, [' ' ... '!'] = 1, ['#' ... '['] = 1, [']' ... '~'] = 1, [0x80 ... 0xff] = 1,
};

/* reg-name bytes (RFC 3986 unreserved / sub-delims); '%' is checked separately. */
static const bool host_byte[256] = {
    ['-' ... '.'] = 1, ['_'] = 1, ['~'] = 1, ['!'] = 1, ['$'] = 1, ['&' ... ','] = 1, [';'] = 1, ['='] = 1,
    ['0' ... '9'] = 1, ['A' ... 'Z'] = 1, ['a' ... 'z'] = 1,
};

static inline bool is_ws(unsigned char c) { return c == ' ' || c == '\t'; }
static inline bool is_digit(unsigned char c) { return c >= '0' && c <= '9'; }
static inline bool is_visible(unsigned char c) { return c > 0x20 && c < 0x7f; }

static inline int hex_value(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c |= 0x20;
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* Case-insensitive (ASCII) compare of two byte strings of length n. */
static bool iequal(const char *a, const char *b, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char x = (unsigned char)a[i], y = (unsigned char)b[i];
        if (x >= 'A' && x <= 'Z')
            x |= 0x20;
        if (y >= 'A' && y <= 'Z')
            y |= 0x20;
        if (x != y)
            return false;
    }
    return true;
}

static inline __attribute__((always_inline)) bool slice_ieq(struct http1_slice s, const char *lower)
{
    size_t n = strlen(lower);
    return s.len == n && iequal(s.p, lower, n);
}

/* ---- word-at-a-time scanning --------------------------------------------
 * Header values (cookies, user agents) and targets are the bulk of a head.
 * Testing 8 bytes per step for "any byte that ends the run" is exact as a
 * yes/no answer; the byte loop then finds which byte it was. */

#define ONES 0x0101010101010101ULL
#define HIGHS 0x8080808080808080ULL

static inline uint64_t any_below(uint64_t x, unsigned n) { return (x - ONES * n) & ~x & HIGHS; }   /* n <= 128 */
static inline uint64_t any_equal(uint64_t x, unsigned char c) { return any_below(x ^ (ONES * c), 1); }

static inline bool value_word_ok(uint64_t x) { return !(any_below(x, 0x20) | any_equal(x, 0x7f)); }

static inline bool target_word_ok(uint64_t x)
{
    return !(any_below(x, 0x21) | (x & HIGHS) | any_equal(x, 0x7f) | any_equal(x, '#'));
}

/* Index of the first byte in b[i..end) outside `cls`, or end. */
static inline size_t scan_run(const char *b, size_t i, size_t end, const bool *cls, bool (*word_ok)(uint64_t))
{
    for (;;) {
        uint64_t x;
        while (end - i >= 8 && (memcpy(&x, b + i, 8), word_ok(x)))
            i += 8;
        size_t stop = end - i >= 8 ? i + 8 : end;
        while (i < stop && cls[(unsigned char)b[i]])
            i++;
        if (i < stop || i == end)
            return i;
    }
}

static size_t scan_value(const char *b, size_t i, size_t end) { return scan_run(b, i, end, value_byte, value_word_ok); }
static size_t scan_target(const char *b, size_t i, size_t end) { return scan_run(b, i, end, target_byte, target_word_ok); }

/* ---- small grammar pieces (shared by head parsing and validation) ------ */

/* "HTTP/1.0" -> 0, "HTTP/1.1" -> 1, other "HTTP/d.d" -> -2 (unsupported), anything else -> -1. */
static int version_of(const char *s, size_t n)
{
    if (n != 8 || memcmp(s, "HTTP/", 5) != 0 || !is_digit(s[5]) || s[6] != '.' || !is_digit(s[7]))
        return -1;
    if (s[5] == '1' && (s[7] == '0' || s[7] == '1'))
        return s[7] - '0';
    return -2;
}

static enum http1_method method_of(const char *s, size_t n)
{
    static const struct { const char *name; size_t len; enum http1_method m; } known[] = {
        { "GET", 3, HTTP1_M_GET },         { "HEAD", 4, HTTP1_M_HEAD },       { "POST", 4, HTTP1_M_POST },
        { "PUT", 3, HTTP1_M_PUT },         { "DELETE", 6, HTTP1_M_DELETE },   { "OPTIONS", 7, HTTP1_M_OPTIONS },
        { "TRACE", 5, HTTP1_M_TRACE },     { "CONNECT", 7, HTTP1_M_CONNECT }, { "PATCH", 5, HTTP1_M_PATCH },
    };
    /* Methods are case-sensitive (RFC 9110 §9.1): "get" is some other method. */
    for (size_t k = 0; k < sizeof known / sizeof known[0]; k++)
        if (known[k].len == n && memcmp(known[k].name, s, n) == 0)
            return known[k].m;
    return HTTP1_M_OTHER;
}

/* port = 1*5DIGIT, at most 65535. (RFC 3986 allows an empty port; nothing sends one.) */
static bool valid_port(const char *s, size_t n)
{
    unsigned v = 0;
    if (n == 0 || n > 5)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (!is_digit(s[i]))
            return false;
        v = v * 10 + (unsigned)(s[i] - '0');
    }
    return v <= 65535;
}

/* uri-host [ ":" port ] (RFC 3986): a bracketed IPv6 literal or a reg-name /
 * IPv4 address. No userinfo: "user@host" is refused. */
static bool valid_authority(const char *s, size_t n, bool port_required)
{
    size_t i = 0;

    if (n == 0)
        return false;
    if (s[0] == '[') {
        unsigned colons = 0;
        for (i = 1; i < n && s[i] != ']'; i++) {
            if (s[i] == ':')
                colons++;
            else if (hex_value((unsigned char)s[i]) < 0 && s[i] != '.')
                return false;
        }
        if (i == n || colons < 2)
            return false;
        i++;
    } else {
        while (i < n && s[i] != ':') {
            if (s[i] == '%') {
                if (n - i < 3 || hex_value((unsigned char)s[i + 1]) < 0 || hex_value((unsigned char)s[i + 2]) < 0)
                    return false;
                i += 3;
            } else if (host_byte[(unsigned char)s[i]]) {
                i++;
            } else {
                return false;
            }
        }
        if (i == 0)
            return false;
    }
    if (i == n)
        return !port_required;
    return s[i] == ':' && valid_port(s + i + 1, n - i - 1);
}

/* Next non-empty element of a comma-separated list, OWS trimmed. Empty
 * elements are skipped as RFC 9110 §5.6.1 asks of recipients. */
static bool next_element(struct http1_slice v, size_t *pos, struct http1_slice *out)
{
    size_t i = *pos;
    while (i < v.len && (is_ws(v.p[i]) || v.p[i] == ','))
        i++;
    if (i == v.len) {
        *pos = i;
        return false;
    }
    size_t start = i;
    while (i < v.len && v.p[i] != ',')
        i++;
    size_t end = i;
    while (end > start && is_ws(v.p[end - 1]))
        end--;
    *out = (struct http1_slice){ v.p + start, end - start };
    *pos = i;
    return true;
}

static bool has_token_n(struct http1_slice v, const char *tok, size_t n)
{
    struct http1_slice e;
    size_t pos = 0;
    while (next_element(v, &pos, &e))
        if (e.len == n && iequal(e.p, tok, n))
            return true;
    return false;
}

/* quoted-string starting at s[k] == '"'. Returns the index after the closing
 * quote, or 0 when it is unterminated or holds a byte it may not. */
static size_t skip_quoted(const char *s, size_t n, size_t k)
{
    for (k++; k < n; k++) {
        unsigned char c = (unsigned char)s[k];
        if (c == '"')
            return k + 1;
        if (c == '\\') {
            if (++k == n || !value_byte[(unsigned char)s[k]])
                return 0;
        } else if (!qdtext[c]) {
            return 0;
        }
    }
    return 0;
}

static size_t skip_ws(const char *s, size_t n, size_t k)
{
    while (k < n && is_ws(s[k]))
        k++;
    return k;
}

/* token BWS "=" BWS ( token / quoted-string ) at s[*pos]. */
static bool skip_parameter(const char *s, size_t n, size_t *pos)
{
    size_t k = *pos, start = k;
    while (k < n && tchar[(unsigned char)s[k]])
        k++;
    if (k == start)
        return false;
    k = skip_ws(s, n, k);
    if (k == n || s[k] != '=')
        return false;
    k = skip_ws(s, n, k + 1);
    if (k < n && s[k] == '"') {
        k = skip_quoted(s, n, k);
        if (k == 0)
            return false;
    } else {
        start = k;
        while (k < n && tchar[(unsigned char)s[k]])
            k++;
        if (k == start)
            return false;
    }
    *pos = k;
    return true;
}

/* 1*DIGIT, or a list of identical values ("5, 5"), which RFC 9110 §8.6 lets a
 * recipient collapse to one. No signs, no empty elements, no overflow. */
static bool parse_content_length(struct http1_slice v, uint64_t *out)
{
    size_t i = 0;
    bool seen = false;
    uint64_t first = 0;

    for (;;) {
        size_t start = i;
        uint64_t n = 0;
        while (i < v.len && is_digit(v.p[i])) {
            unsigned d = (unsigned)(v.p[i] - '0');
            if (n > (UINT64_MAX - d) / 10)
                return false;
            n = n * 10 + d;
            i++;
        }
        if (i == start || (seen && n != first))
            return false;
        first = n;
        seen = true;
        i = skip_ws(v.p, v.len, i);
        if (i == v.len)
            break;
        if (v.p[i] != ',')
            return false;
        i = skip_ws(v.p, v.len, i + 1);
    }
    *out = first;
    return true;
}

/* ---- head parser ------------------------------------------------------- */

struct parser {
    const char *b;
    size_t avail;          /* bytes we may look at: min(len, max_head) */
    bool capped;           /* avail == max_head: more input cannot help */
    size_t max_line;
    size_t max_headers;
    bool request;
    struct http1_message *m;
    /* framing facts gathered from header fields, judged at the end of the head */
    unsigned hosts;
    bool have_cl, have_te;
    bool te_bad, te_unknown, te_last_chunked;
    unsigned te_chunked;
    bool conn_close, conn_keep_alive, conn_upgrade, have_upgrade;
};

static enum http1_result fail(struct parser *p, int status, const char *reason)
{
    p->m->error_status = p->request ? status : 502;
    p->m->error_reason = reason;
    return HTTP1_ERROR;
}

/* An unexpected byte at b[i]; name the common line-ending mistake. */
static enum http1_result bad_byte(struct parser *p, size_t i, const char *reason)
{
    return fail(p, 400, p->b[i] == '\n' ? "bare LF" : reason);
}

static enum http1_result need_more(struct parser *p)
{
    return p->capped ? fail(p, 431, "header section too large") : HTTP1_INCOMPLETE;
}

/* The first line may be examined up to index max_line: a byte there that is
 * not the CR proves the line too long. */
static size_t line_window(const struct parser *p)
{
    return p->avail > p->max_line ? p->max_line + 1 : p->avail;
}

/* A scan of the first line ran into the end of its window. */
static enum http1_result line_short(struct parser *p, size_t end)
{
    if (end > p->max_line)
        return fail(p, 414, p->request ? "request line too long" : "status line too long");
    return need_more(p);
}

/* b[i] ended a scan and must start CRLF. */
static enum http1_result expect_crlf(struct parser *p, size_t i, const char *reason)
{
    if (p->b[i] != '\r')
        return bad_byte(p, i, reason);
    if (i + 1 >= p->avail)
        return need_more(p);
    if (p->b[i + 1] != '\n')
        return fail(p, 400, "bare CR");
    return STEP_OK;
}

/* Which request-target forms a method may use (RFC 9112 §3.2). */
static enum http1_result check_target(struct parser *p)
{
    struct http1_message *m = p->m;
    struct http1_slice t = m->target;

    if (m->method == HTTP1_M_CONNECT) {
        if (!valid_authority(t.p, t.len, true))
            return fail(p, 400, "CONNECT target must be host:port");
        m->authority = t;
        return STEP_OK;
    }
    if (t.p[0] == '/')
        return STEP_OK;
    if (t.len == 1 && t.p[0] == '*')
        return m->method == HTTP1_M_OPTIONS ? STEP_OK : fail(p, 400, "asterisk target without OPTIONS");

    size_t a;
    if (t.len > 7 && iequal(t.p, "http://", 7))
        a = 7;
    else if (t.len > 8 && iequal(t.p, "https://", 8))
        a = 8;
    else
        return fail(p, 400, "invalid request target");
    size_t e = a;
    while (e < t.len && t.p[e] != '/' && t.p[e] != '?')
        e++;
    if (!valid_authority(t.p + a, e - a, false))
        return fail(p, 400, "invalid authority in request target");
    m->authority = (struct http1_slice){ t.p + a, e - a };
    return STEP_OK;
}

/* method SP request-target SP HTTP-version CRLF, one SP each. Leading empty
 * lines are not skipped (RFC 9112 §2.2 says SHOULD, strictness wins). */
static enum http1_result parse_request_line(struct parser *p, size_t *next)
{
    struct http1_message *m = p->m;
    const char *b = p->b;
    size_t end = line_window(p), i = 0;

    while (i < end && tchar[(unsigned char)b[i]])
        i++;
    if (i == end)
        return line_short(p, end);
    if (b[i] != ' ' || i == 0)
        return bad_byte(p, i, "malformed request line");
    m->method_str = (struct http1_slice){ b, i };
    m->method = method_of(b, i);

    size_t t = ++i;
    i = scan_target(b, i, end);
    if (i == end)
        return line_short(p, end);
    if (b[i] != ' ' || i == t) {
        if (b[i] == '\r')
            return fail(p, 400, "missing HTTP version");
        return bad_byte(p, i, i == t ? "malformed request line" : "invalid byte in request target");
    }
    m->target = (struct http1_slice){ b + t, i - t };

    size_t v = ++i;
    while (i < end && is_visible(b[i]))
        i++;
    if (i == end)
        return line_short(p, end);
    enum http1_result r = expect_crlf(p, i, "malformed HTTP version");
    if (r != STEP_OK)
        return r;
    int minor = version_of(b + v, i - v);
    if (minor == -1)
        return fail(p, 400, "malformed HTTP version");
    if (minor == -2)
        return fail(p, 505, "unsupported HTTP version");
    m->version_minor = minor;
    *next = i + 2;
    return check_target(p);
}

/* HTTP-version SP 3DIGIT [ SP reason ] CRLF. The SP before an empty reason is
 * required by RFC 9112 but often missing in practice, so it is optional. */
static enum http1_result parse_status_line(struct parser *p, size_t *next)
{
    struct http1_message *m = p->m;
    const char *b = p->b;
    size_t end = line_window(p), i = 0;

    while (i < end && is_visible(b[i]))
        i++;
    if (i == end)
        return line_short(p, end);
    int minor = version_of(b, i);
    if (minor < 0)
        return fail(p, 502, "unsupported or malformed HTTP version");
    if (b[i] != ' ')
        return bad_byte(p, i, "malformed status line");

    size_t d = ++i;
    while (i < end && is_digit(b[i]))
        i++;
    if (i == end)
        return line_short(p, end);
    if (i - d != 3)
        return bad_byte(p, i, "malformed status code");
    int status = (b[d] - '0') * 100 + (b[d + 1] - '0') * 10 + (b[d + 2] - '0');
    if (status < 100 || status > 599)
        return fail(p, 502, "status code out of range");

    size_t r0 = i;
    if (b[i] == ' ') {
        r0 = ++i;
        i = scan_value(b, i, end);
        if (i == end)
            return line_short(p, end);
    }
    enum http1_result r = expect_crlf(p, i, "invalid byte in status line");
    if (r != STEP_OK)
        return r;
    m->version_minor = minor;
    m->status = status;
    m->reason = (struct http1_slice){ b + r0, i - r0 };
    *next = i + 2;
    return STEP_OK;
}

static enum http1_result note_host(struct parser *p, struct http1_slice v)
{
    if (!p->request)
        return STEP_OK;
    if (++p->hosts > 1)
        return fail(p, 400, "multiple Host headers");
    /* An empty Host is what RFC 9112 §3.2 asks for when the URI has no authority. */
    if (v.len > 0 && !valid_authority(v.p, v.len, false))
        return fail(p, 400, "invalid Host header");
    p->m->host = v;
    return STEP_OK;
}

static enum http1_result note_content_length(struct parser *p, struct http1_slice v)
{
    uint64_t n;
    if (!parse_content_length(v, &n))
        return fail(p, 400, "invalid Content-Length");
    if (p->have_cl && n != p->m->content_length)
        return fail(p, 400, "conflicting Content-Length values");
    p->have_cl = true;
    p->m->content_length = n;
    return STEP_OK;
}

static bool known_coding(struct http1_slice c)
{
    return slice_ieq(c, "gzip") || slice_ieq(c, "deflate") || slice_ieq(c, "compress") ||
           slice_ieq(c, "x-gzip") || slice_ieq(c, "x-compress");
}

/* One transfer-coding of the (possibly multi-line) Transfer-Encoding list. */
static void note_coding(struct parser *p, struct http1_slice name, bool has_params)
{
    bool chunked = slice_ieq(name, "chunked");
    if (chunked) {
        p->te_chunked++;
        if (has_params)   /* chunked defines no parameters */
            p->te_bad = true;
    } else if (!known_coding(name)) {
        p->te_unknown = true;
    }
    p->te_last_chunked = chunked && !has_params;
}

/* transfer-coding *( OWS "," OWS transfer-coding ), each token *( OWS ";" OWS param ).
 * Unlike other lists, empty elements are refused: this header decides framing. */
static bool scan_codings(struct parser *p, struct http1_slice v)
{
    const char *s = v.p;
    size_t n = v.len, i = 0;

    for (;;) {
        size_t start = i;
        while (i < n && tchar[(unsigned char)s[i]])
            i++;
        if (i == start)
            return false;
        struct http1_slice name = { s + start, i - start };
        bool params = false;
        i = skip_ws(s, n, i);
        while (i < n && s[i] == ';') {
            params = true;
            i = skip_ws(s, n, i + 1);
            if (!skip_parameter(s, n, &i))
                return false;
            i = skip_ws(s, n, i);
        }
        note_coding(p, name, params);
        if (i == n)
            return true;
        if (s[i] != ',')
            return false;
        i = skip_ws(s, n, i + 1);
    }
}

static enum http1_result note_transfer_encoding(struct parser *p, struct http1_slice v)
{
    /* RFC 9112 §6.1: an HTTP/1.0 message with Transfer-Encoding has faulty framing. */
    if (p->m->version_minor == 0)
        return fail(p, 400, "Transfer-Encoding in an HTTP/1.0 message");
    p->have_te = true;
    if (!scan_codings(p, v))
        p->te_bad = true;
    return STEP_OK;
}

static void note_connection(struct parser *p, struct http1_slice v)
{
    struct http1_slice tok;
    size_t pos = 0;
    while (next_element(v, &pos, &tok)) {
        if (slice_ieq(tok, "close"))
            p->conn_close = true;
        else if (slice_ieq(tok, "keep-alive"))
            p->conn_keep_alive = true;
        else if (slice_ieq(tok, "upgrade"))
            p->conn_upgrade = true;
    }
}

/* Record what a header field means for framing and connection handling.
 * Dispatch on length first: most fields are none of these. */
static enum http1_result note_field(struct parser *p, const struct http1_header *h)
{
    struct http1_slice n = h->name, v = h->value;

    switch (n.len) {
    case 4:
        if (iequal(n.p, "host", 4))
            return note_host(p, v);
        break;
    case 6:
        /* RFC 9110 §10.1.1: ignore 100-continue from HTTP/1.0 clients. */
        if (iequal(n.p, "expect", 6) && p->request && p->m->version_minor == 1 && slice_ieq(v, "100-continue"))
            p->m->expect_continue = true;
        break;
    case 7:
        if (iequal(n.p, "upgrade", 7))
            p->have_upgrade = true;
        break;
    case 10:
        if (iequal(n.p, "connection", 10))
            note_connection(p, v);
        break;
    case 14:
        if (iequal(n.p, "content-length", 14))
            return note_content_length(p, v);
        break;
    case 17:
        if (iequal(n.p, "transfer-encoding", 17))
            return note_transfer_encoding(p, v);
        break;
    }
    return STEP_OK;
}

/* field-name ":" OWS field-value OWS CRLF, starting at b[*pos]. */
static enum http1_result parse_field(struct parser *p, size_t *pos)
{
    struct http1_message *m = p->m;
    const char *b = p->b;
    size_t start = *pos, i = start;

    while (i < p->avail && tchar[(unsigned char)b[i]])
        i++;
    if (i == p->avail)
        return need_more(p);
    if (b[i] != ':' || i == start)
        return bad_byte(p, i, i > start && is_ws(b[i]) ? "whitespace before colon" : "invalid header field name");
    size_t name_end = i;

    i = skip_ws(b, p->avail, i + 1);
    size_t v0 = i;
    i = scan_value(b, i, p->avail);
    if (i == p->avail)
        return need_more(p);
    enum http1_result r = expect_crlf(p, i, "invalid byte in header field value");
    if (r != STEP_OK)
        return r;
    size_t v1 = i;
    while (v1 > v0 && is_ws(b[v1 - 1]))
        v1--;

    struct http1_header *h = &m->headers[m->n_headers++];
    h->name = (struct http1_slice){ b + start, name_end - start };
    h->value = (struct http1_slice){ b + v0, v1 - v0 };
    *pos = i + 2;
    return note_field(p, h);
}

/* Header fields up to and including the empty line. */
static enum http1_result parse_fields(struct parser *p, size_t i)
{
    for (;;) {
        if (i >= p->avail)
            return need_more(p);
        unsigned char c = (unsigned char)p->b[i];
        if (c == '\r') {
            enum http1_result r = expect_crlf(p, i, NULL);
            if (r != STEP_OK)
                return r;
            p->m->head_len = i + 2;
            return STEP_OK;
        }
        /* obs-fold, or whitespace between the start line and the first field
         * (RFC 9112 §2.2): both are refused rather than unfolded. */
        if (is_ws(c))
            return fail(p, 400, "obs-fold or whitespace before a header field");
        if (p->m->n_headers == p->max_headers)
            return fail(p, 431, "too many header fields");
        enum http1_result r = parse_field(p, &i);
        if (r != STEP_OK)
            return r;
    }
}

/* Transfer-Encoding we can frame: one bare "chunked", last (RFC 9112 §6.1). */
static enum http1_result check_transfer_encoding(struct parser *p)
{
    if (p->have_cl)
        return fail(p, 400, "Transfer-Encoding with Content-Length");
    if (p->te_bad)
        return fail(p, 400, "malformed Transfer-Encoding");
    if (p->te_unknown)
        return fail(p, 501, "unknown transfer coding");
    if (p->te_chunked > 1)
        return fail(p, 400, "chunked applied more than once");
    if (!p->te_last_chunked)
        return fail(p, 400, "final transfer coding is not chunked");
    return STEP_OK;
}

static void set_connection(struct parser *p)
{
    struct http1_message *m = p->m;
    if (m->version_minor == 1)
        m->keep_alive = !p->conn_close;
    else
        m->keep_alive = p->conn_keep_alive && !p->conn_close;
    m->upgrade = p->conn_upgrade && p->have_upgrade;
}

static enum http1_result finish_request(struct parser *p)
{
    struct http1_message *m = p->m;

    if (m->version_minor == 1 && p->hosts == 0)
        return fail(p, 400, "missing Host header");
    if (p->have_te) {
        enum http1_result r = check_transfer_encoding(p);
        if (r != STEP_OK)
            return r;
        m->body = HTTP1_BODY_CHUNKED;
    } else if (p->have_cl) {
        m->body = HTTP1_BODY_LENGTH;
    } else {
        m->body = HTTP1_BODY_NONE;
    }
    set_connection(p);
    return HTTP1_DONE;
}

/* RFC 9112 §6.3, except that an unframeable Transfer-Encoding is an error
 * rather than read-until-close. */
static enum http1_result finish_response(struct parser *p, enum http1_method req)
{
    struct http1_message *m = p->m;
    int s = m->status;

    if (p->have_te) {
        enum http1_result r = check_transfer_encoding(p);
        if (r != STEP_OK)
            return r;
    }
    set_connection(p);
    if (req == HTTP1_M_HEAD || s < 200 || s == 204 || s == 304 || (req == HTTP1_M_CONNECT && s < 300)) {
        m->body = HTTP1_BODY_NONE;
    } else if (p->have_te) {
        m->body = HTTP1_BODY_CHUNKED;
    } else if (p->have_cl) {
        m->body = HTTP1_BODY_LENGTH;
    } else {
        m->body = HTTP1_BODY_UNTIL_CLOSE;
        m->keep_alive = false;
    }
    return HTTP1_DONE;
}

static void begin(struct parser *p, const char *buf, size_t len, const struct http1_limits *lim, bool request,
                  struct http1_message *m)
{
    struct http1_slice empty = { buf, 0 };

    if (!lim)
        lim = &http1_default_limits;
    memset(p, 0, sizeof *p);
    p->b = buf;
    p->capped = len >= lim->max_head;
    p->avail = p->capped ? lim->max_head : len;
    p->max_line = lim->max_request_line;
    p->max_headers = lim->max_headers < HTTP1_MAX_HEADERS_CAP ? lim->max_headers : HTTP1_MAX_HEADERS_CAP;
    p->request = request;
    p->m = m;

    /* Not the 4 KiB header array: n_headers says how much of it is valid. */
    m->method = HTTP1_M_OTHER;
    m->method_str = m->target = m->authority = m->reason = m->host = empty;
    m->status = 0;
    m->version_minor = 0;
    m->n_headers = 0;
    m->head_len = 0;
    m->body = HTTP1_BODY_NONE;
    m->content_length = 0;
    m->keep_alive = m->upgrade = m->expect_continue = false;
    m->error_status = 0;
    m->error_reason = NULL;
}

enum http1_result http1_parse_request(const char *buf, size_t len, const struct http1_limits *lim,
                                      struct http1_message *msg)
{
    struct parser p;
    size_t pos = 0;

    begin(&p, buf, len, lim, true, msg);
    enum http1_result r = parse_request_line(&p, &pos);
    if (r == STEP_OK)
        r = parse_fields(&p, pos);
    if (r == STEP_OK)
        r = finish_request(&p);
    return r;
}

enum http1_result http1_parse_response(const char *buf, size_t len, const struct http1_limits *lim,
                                       enum http1_method request_method, struct http1_message *msg)
{
    struct parser p;
    size_t pos = 0;

    begin(&p, buf, len, lim, false, msg);
    enum http1_result r = parse_status_line(&p, &pos);
    if (r == STEP_OK)
        r = parse_fields(&p, pos);
    if (r == STEP_OK)
        r = finish_response(&p, request_method);
    return r;
}

bool http1_head_ready(const char *buf, size_t len, size_t prev_len, const struct http1_limits *lim)
{
    if (!lim)
        lim = &http1_default_limits;
    if (len <= prev_len)
        return false;
    if (len >= lim->max_head || (prev_len <= lim->max_request_line && len > lim->max_request_line))
        return true;
    size_t from = prev_len > 3 ? prev_len - 3 : 0;
    const char *lf = memchr(buf + from, '\n', len - from);
    while (lf) {
        size_t j = (size_t)(lf - buf);
        if (j == 0 || buf[j - 1] != '\r')
            return true;   /* bare LF: the parser will say so */
        if (j >= 3 && buf[j - 2] == '\n' && buf[j - 3] == '\r')
            return true;   /* CRLFCRLF */
        lf = memchr(lf + 1, '\n', len - j - 1);
    }
    return false;
}

/* ---- header helpers ---------------------------------------------------- */

const struct http1_header *http1_find_header(const struct http1_message *msg, const char *name)
{
    size_t n = strlen(name);
    for (size_t i = 0; i < msg->n_headers; i++) {
        const struct http1_header *h = &msg->headers[i];
        if (h->name.len == n && iequal(h->name.p, name, n))
            return h;
    }
    return NULL;
}

bool http1_is_token(const char *s, size_t max)
{
    size_t len = strlen(s);
    if (len == 0 || len > max)
        return false;
    for (; *s; s++)
        if (!tchar[(unsigned char)*s])
            return false;
    return true;
}

bool http1_has_token(struct http1_slice value, const char *token)
{
    return has_token_n(value, token, strlen(token));
}

/* The hop-by-hop fields every proxy drops, found by length first: this runs
 * once per header of every proxied message. */
static bool fixed_hop_by_hop(struct http1_slice n)
{
    switch (n.len) {
    case 2: return slice_ieq(n, "te");
    case 7: return slice_ieq(n, "trailer") || slice_ieq(n, "upgrade");
    case 10: return slice_ieq(n, "connection") || slice_ieq(n, "keep-alive");
    case 16: return slice_ieq(n, "proxy-connection");
    case 17: return slice_ieq(n, "transfer-encoding");
    default: return false;
    }
}

static bool named_by_connection(const struct http1_message *msg, struct http1_slice name)
{
    for (size_t i = 0; i < msg->n_headers; i++) {
        const struct http1_header *h = &msg->headers[i];
        if (h->name.len == 10 && slice_ieq(h->name, "connection") && has_token_n(h->value, name.p, name.len))
            return true;
    }
    return false;
}

bool http1_is_hop_by_hop(const struct http1_message *msg, struct http1_slice name)
{
    return fixed_hop_by_hop(name) || named_by_connection(msg, name);
}

void http1_mark_hop_by_hop(const struct http1_message *msg, uint8_t *skip)
{
    for (size_t i = 0; i < msg->n_headers; i++)
        skip[i] = fixed_hop_by_hop(msg->headers[i].name);
    /* Then the fields a Connection header names. Its usual tokens (close,
     * keep-alive, upgrade) name fields dropped already, so the common
     * message costs one pass and no name comparisons beyond it. */
    for (size_t c = 0; c < msg->n_headers; c++) {
        const struct http1_header *conn = &msg->headers[c];
        if (conn->name.len != 10 || !slice_ieq(conn->name, "connection"))
            continue;
        struct http1_slice tok;
        size_t pos = 0;
        while (next_element(conn->value, &pos, &tok)) {
            if (fixed_hop_by_hop(tok) || (tok.len == 5 && iequal(tok.p, "close", 5)))
                continue;
            for (size_t i = 0; i < msg->n_headers; i++)
                if (!skip[i] && msg->headers[i].name.len == tok.len &&
                    iequal(msg->headers[i].name.p, tok.p, tok.len))
                    skip[i] = 1;
        }
    }
}

bool http1_name_has_underscore(struct http1_slice name)
{
    return name.len && memchr(name.p, '_', name.len) != NULL;
}

/* name equals lower (lower case, with '-'), case-insensitively and with '_' matching '-'. */
static bool equal_folding_underscore(struct http1_slice name, const char *lower)
{
    size_t n = strlen(lower);
    if (name.len != n)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char x = (unsigned char)name.p[i];
        if (x >= 'A' && x <= 'Z')
            x |= 0x20;
        if (x != (unsigned char)lower[i] && !(x == '_' && lower[i] == '-'))
            return false;
    }
    return true;
}

bool http1_is_framing_lookalike(struct http1_slice name)
{
    /* Only names with a '-' have a '_' twin: TE, Trailer, Upgrade and
     * Connection have none. */
    static const char *const framing[] = { "content-length", "transfer-encoding", "keep-alive", "proxy-connection" };
    if (!http1_name_has_underscore(name))
        return false;
    for (size_t i = 0; i < sizeof framing / sizeof framing[0]; i++)
        if (equal_folding_underscore(name, framing[i]))
            return true;
    return false;
}

bool http1_method_idempotent(enum http1_method m)
{
    switch (m) {
    case HTTP1_M_GET:
    case HTTP1_M_HEAD:
    case HTTP1_M_PUT:
    case HTTP1_M_DELETE:
    case HTTP1_M_OPTIONS:
    case HTTP1_M_TRACE:
        return true;
    default:
        return false;
    }
}

/* ---- chunked framing (RFC 9112 §7.1) ------------------------------------
 * A byte-at-a-time state machine for the lines, and a bulk skip for chunk
 * data, so pieces of any size give the same answer. */

enum chunk_state {
    CS_SIZE_FIRST,      /* start of a chunk-size line: a HEXDIG must come */
    CS_SIZE,            /* more HEXDIG, or BWS / ';' / CR */
    CS_SIZE_WS,         /* BWS after the size: only ';' may follow */
    CS_EXT_NAME_FIRST,  /* after ';' (and BWS): first tchar of a name */
    CS_EXT_NAME,
    CS_EXT_NAME_WS,     /* BWS after a name: '=' or ';' */
    CS_EXT_VALUE_FIRST, /* after '=' (and BWS): token or quoted-string */
    CS_EXT_TOKEN,
    CS_EXT_QUOTED,
    CS_EXT_QUOTED_ESC,
    CS_EXT_QUOTED_END,  /* right after the closing quote */
    CS_EXT_VALUE_WS,    /* BWS after a value: only ';' may follow */
    CS_SIZE_LF,
    CS_DATA,
    CS_DATA_CR,
    CS_DATA_LF,
    CS_TRAILER_FIRST,   /* start of a trailer line, or the final CRLF */
    CS_TRAILER_NAME,
    CS_TRAILER_VALUE,
    CS_TRAILER_LF,
    CS_FINAL_LF,
    CS_DONE,
    CS_ERROR,
};

void http1_chunked_init(struct http1_chunked *c)
{
    c->state = CS_SIZE_FIRST;
    c->remaining = 0;
    c->line_len = 0;
    c->trailer_len = 0;
    c->done = false;
    c->error_reason = NULL;
}

static bool chunk_fail(struct http1_chunked *c, const char *reason)
{
    c->state = CS_ERROR;
    c->error_reason = reason;
    return false;
}

/* The end of a chunk-size line: data follows, or trailers after the last chunk. */
static void chunk_size_line_done(struct http1_chunked *c)
{
    c->line_len = 0;
    c->state = c->remaining ? CS_DATA : CS_TRAILER_FIRST;
}

/* After ';' and after a complete extension value the same three bytes matter. */
static bool chunk_after_ext(struct http1_chunked *c, unsigned char ch, int ws_state, const char *reason)
{
    if (ch == ';')
        c->state = CS_EXT_NAME_FIRST;
    else if (is_ws(ch) && ws_state >= 0)
        c->state = ws_state;
    else if (ch == '\r' && ws_state >= 0)
        c->state = CS_SIZE_LF;
    else
        return chunk_fail(c, reason);
    return true;
}

/* One byte of a chunk-size line: 1*HEXDIG *( BWS ";" BWS name [ BWS "=" BWS value ] ) CRLF. */
static bool chunk_size_byte(struct http1_chunked *c, unsigned char ch)
{
    int h = hex_value(ch);

    switch (c->state) {
    case CS_SIZE_FIRST:
        if (h < 0)
            return chunk_fail(c, "missing chunk size");
        c->remaining = (uint64_t)h;
        c->state = CS_SIZE;
        return true;
    case CS_SIZE:
        if (h >= 0) {
            /* line_len counts the digits so far; 16 fit in 64 bits, so no overflow check is needed. */
            if (c->line_len > 16)
                return chunk_fail(c, "chunk size too long");
            c->remaining = c->remaining << 4 | (uint64_t)h;
            return true;
        }
        return chunk_after_ext(c, ch, CS_SIZE_WS, "invalid chunk size");
    case CS_SIZE_WS:
    case CS_EXT_VALUE_WS:
        if (is_ws(ch))
            return true;
        return chunk_after_ext(c, ch, -1, "invalid chunk extension");
    case CS_EXT_NAME_FIRST:
        if (is_ws(ch))
            return true;
        if (!tchar[ch])
            return chunk_fail(c, "invalid chunk extension name");
        c->state = CS_EXT_NAME;
        return true;
    case CS_EXT_NAME:
        if (tchar[ch])
            return true;
        if (ch == '=') {
            c->state = CS_EXT_VALUE_FIRST;
            return true;
        }
        return chunk_after_ext(c, ch, CS_EXT_NAME_WS, "invalid chunk extension name");
    case CS_EXT_NAME_WS:
        if (is_ws(ch))
            return true;
        if (ch == '=') {
            c->state = CS_EXT_VALUE_FIRST;
            return true;
        }
        return chunk_after_ext(c, ch, -1, "invalid chunk extension");
    case CS_EXT_VALUE_FIRST:
        if (is_ws(ch))
            return true;
        if (ch == '"')
            c->state = CS_EXT_QUOTED;
        else if (tchar[ch])
            c->state = CS_EXT_TOKEN;
        else
            return chunk_fail(c, "invalid chunk extension value");
        return true;
    case CS_EXT_TOKEN:
        if (tchar[ch])
            return true;
        return chunk_after_ext(c, ch, CS_EXT_VALUE_WS, "invalid chunk extension value");
    case CS_EXT_QUOTED:
        if (ch == '"')
            c->state = CS_EXT_QUOTED_END;
        else if (ch == '\\')
            c->state = CS_EXT_QUOTED_ESC;
        else if (!qdtext[ch])
            return chunk_fail(c, "invalid byte in quoted chunk extension");
        return true;
    case CS_EXT_QUOTED_ESC:
        if (!value_byte[ch])
            return chunk_fail(c, "invalid byte in quoted chunk extension");
        c->state = CS_EXT_QUOTED;
        return true;
    case CS_EXT_QUOTED_END:
        return chunk_after_ext(c, ch, CS_EXT_VALUE_WS, "invalid chunk extension");
    case CS_SIZE_LF:
        if (ch != '\n')
            return chunk_fail(c, "bare CR in chunk size line");
        chunk_size_line_done(c);
        return true;
    default:
        return chunk_fail(c, "internal chunk state");
    }
}

/* One byte outside chunk data: the CRLF after data, a trailer line, the final
 * CRLF, or (delegated) a chunk-size line. */
static bool chunk_line_byte(struct http1_chunked *c, unsigned char ch)
{
    switch (c->state) {
    case CS_DATA_CR:
    case CS_DATA_LF:
        if (ch != (c->state == CS_DATA_CR ? '\r' : '\n'))
            return chunk_fail(c, "missing CRLF after chunk data");
        c->state = c->state == CS_DATA_CR ? CS_DATA_LF : CS_SIZE_FIRST;
        c->line_len = 0;
        return true;
    case CS_TRAILER_FIRST:
        if (ch == '\r')
            c->state = CS_FINAL_LF;
        else if (is_ws(ch))
            return chunk_fail(c, "obs-fold in trailer section");
        else if (tchar[ch])
            c->state = CS_TRAILER_NAME;
        else
            return chunk_fail(c, "invalid trailer field name");
        return true;
    case CS_TRAILER_NAME:
        if (ch == ':')
            c->state = CS_TRAILER_VALUE;
        else if (!tchar[ch])
            return chunk_fail(c, "invalid trailer field name");
        return true;
    case CS_TRAILER_VALUE:
        if (ch == '\r')
            c->state = CS_TRAILER_LF;
        else if (!value_byte[ch])
            return chunk_fail(c, "invalid byte in trailer field");
        return true;
    case CS_TRAILER_LF:
    case CS_FINAL_LF:
        if (ch != '\n')
            return chunk_fail(c, "bare CR in trailer section");
        c->line_len = 0;
        if (c->state == CS_FINAL_LF) {
            c->state = CS_DONE;
            c->done = true;
        } else {
            c->state = CS_TRAILER_FIRST;
        }
        return true;
    default:
        return chunk_size_byte(c, ch);
    }
}

ssize_t http1_chunked_feed(struct http1_chunked *c, const char *buf, size_t len)
{
    size_t i = 0;

    if (c->state == CS_ERROR)
        return -1;
    if (len > SSIZE_MAX)
        len = SSIZE_MAX;
    while (i < len && c->state != CS_DONE) {
        if (c->state == CS_DATA) {
            size_t take = len - i;
            if (c->remaining < take)
                take = (size_t)c->remaining;
            i += take;
            c->remaining -= take;
            if (c->remaining == 0)
                c->state = CS_DATA_CR;
            continue;
        }
        unsigned char ch = (unsigned char)buf[i++];
        /* Bound every line (CRLF excluded) so a peer cannot stream an endless
         * extension or trailer through us. */
        if (ch != '\r' && ch != '\n' && ++c->line_len > HTTP1_CHUNK_LINE_MAX) {
            chunk_fail(c, "chunk line too long");
            return -1;
        }
        /* ...and the trailer section as a whole: many short lines are as
         * unbounded as one long one. */
        if (c->state >= CS_TRAILER_FIRST && c->state <= CS_TRAILER_LF && ch != '\r' && ch != '\n' &&
            ++c->trailer_len > HTTP1_TRAILERS_MAX) {
            chunk_fail(c, "trailer section too long");
            return -1;
        }
        if (!chunk_line_byte(c, ch))
            return -1;
    }
    return (ssize_t)i;
}
