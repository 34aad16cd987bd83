/* A client of BIRD's control socket: see birdc.h. */
#include "ha/birdc.h"

#include <ctype.h>
#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

static void set_err(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || !errlen)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* ---- the reply reader --------------------------------------------------- */

static int push_line(struct birdc_reply *r, int code, const char *text, size_t len, char *err, size_t errlen)
{
    if (r->bytes + len + 1 > BIRDC_MAX_REPLY_BYTES) {
        set_err(err, errlen, "BIRD's reply is longer than %u bytes", BIRDC_MAX_REPLY_BYTES);
        return -1;
    }
    if (r->n == r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 16;
        struct birdc_line *l = realloc(r->lines, cap * sizeof *l);
        if (!l) {
            set_err(err, errlen, "out of memory");
            return -1;
        }
        r->lines = l;
        r->cap = cap;
    }
    char *copy = malloc(len + 1);
    if (!copy) {
        set_err(err, errlen, "out of memory");
        return -1;
    }
    memcpy(copy, text, len);
    copy[len] = '\0';
    r->lines[r->n].code = code;
    r->lines[r->n].text = copy;
    r->n++;
    r->bytes += len + 1;
    return 0;
}

int birdc_reply_add_line(struct birdc_reply *r, const char *line, size_t len, char *err, size_t errlen)
{
    if (r->done) {
        set_err(err, errlen, "a line after the end of BIRD's reply");
        return -1;
    }
    if (!r->n)
        r->code = -1;
    if (memchr(line, '\0', len)) {
        set_err(err, errlen, "a NUL byte in BIRD's reply");
        return -1;
    }
    if (len > 0 && line[0] == '+')
        return 0;   /* spontaneous printout: not part of this reply */
    if (len > 0 && line[0] == ' ') {
        if (!r->n) {
            set_err(err, errlen, "BIRD's reply begins with a continuation line");
            return -1;
        }
        return push_line(r, r->lines[r->n - 1].code, line + 1, len - 1, err, errlen) < 0 ? -1 : 0;
    }
    bool digits = len >= 5 && isdigit((unsigned char)line[0]) && isdigit((unsigned char)line[1]) &&
                  isdigit((unsigned char)line[2]) && isdigit((unsigned char)line[3]);
    if (!digits || (line[4] != ' ' && line[4] != '-')) {
        set_err(err, errlen, "not a line of BIRD's control protocol (CODE-text, CODE text or ' text')");
        return -1;
    }
    int code = (line[0] - '0') * 1000 + (line[1] - '0') * 100 + (line[2] - '0') * 10 + (line[3] - '0');
    if (push_line(r, code, line + 5, len - 5, err, errlen) < 0)
        return -1;
    if (line[4] == '-')
        return 0;
    r->code = code;
    r->done = true;
    return 1;
}

void birdc_reply_free(struct birdc_reply *r)
{
    for (size_t i = 0; i < r->n; i++)
        free(r->lines[i].text);
    free(r->lines);
    memset(r, 0, sizeof *r);
}

bool birdc_reply_is_error(const struct birdc_reply *r)
{
    return r->code >= 8000;
}

const char *birdc_reply_message(const struct birdc_reply *r)
{
    return r->done && r->n ? r->lines[r->n - 1].text : "";
}

/* ---- parsing rows ------------------------------------------------------- */

/* Copy at most cap-1 bytes of [s, s+n). */
static void copy_field(char *dst, size_t cap, const char *s, size_t n)
{
    if (n >= cap)
        n = cap - 1;
    memcpy(dst, s, n);
    dst[n] = '\0';
}

/* The next space-separated word of *p (advanced past it); false at the end. */
static bool next_word(const char **p, char *dst, size_t cap)
{
    const char *s = *p;
    while (*s == ' ' || *s == '\t')
        s++;
    const char *e = s;
    while (*e && *e != ' ' && *e != '\t')
        e++;
    if (e == s)
        return false;
    copy_field(dst, cap, s, (size_t)(e - s));
    *p = e;
    return true;
}

static void trim_right(char *s)
{
    size_t n = strlen(s);
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r'))
        s[--n] = '\0';
}

static int reply_error(const struct birdc_reply *r, char *err, size_t errlen)
{
    if (!r->done) {
        set_err(err, errlen, "BIRD's reply is incomplete");
        return -1;
    }
    if (birdc_reply_is_error(r)) {
        set_err(err, errlen, "BIRD: %s (%04d)", birdc_reply_message(r), r->code);
        return -1;
    }
    return 0;
}

/* A growing array of fixed-size items. */
static void *grow(void *arr, size_t n, size_t *cap, size_t size)
{
    if (n < *cap)
        return arr;
    size_t c = *cap ? *cap * 2 : 8;
    void *p = realloc(arr, c * size);
    if (p)
        *cap = c;
    return p;
}

/* "sluice_n1  BGP        ---        up     16:15:38.483  Established   ":
 * BIRD prints "%-10s %-10s %-10s %-6s %-12s  %s" (name, protocol, table,
 * state, since, info). The since column may hold a space (a date and a
 * time, depending on `timeformat protocol`), so since ends at the first
 * run of two spaces, or at the end of the row. */
static bool parse_protocol_row(const char *text, struct birdc_protocol *p)
{
    memset(p, 0, sizeof *p);
    const char *s = text;
    if (!next_word(&s, p->name, sizeof p->name) || !next_word(&s, p->proto, sizeof p->proto) ||
        !next_word(&s, p->table, sizeof p->table) || !next_word(&s, p->state, sizeof p->state))
        return false;
    while (*s == ' ')
        s++;
    const char *gap = strstr(s, "  ");
    size_t since_len = gap ? (size_t)(gap - s) : strlen(s);
    copy_field(p->since, sizeof p->since, s, since_len);
    trim_right(p->since);
    if (gap) {
        s = gap;
        while (*s == ' ')
            s++;
        copy_field(p->info, sizeof p->info, s, strlen(s));
        trim_right(p->info);
        const char *rest = p->info;
        if (next_word(&rest, p->info_state, sizeof p->info_state)) {
            while (*rest == ' ')
                rest++;
            copy_field(p->info_reason, sizeof p->info_reason, rest, strlen(rest));
        }
    }
    return p->since[0] != '\0';
}

int birdc_parse_protocols(const struct birdc_reply *r, struct birdc_protocol **out, size_t *n, char *err,
                          size_t errlen)
{
    *out = NULL;
    *n = 0;
    if (reply_error(r, err, errlen) < 0)
        return -1;
    struct birdc_protocol *arr = NULL;
    size_t cap = 0, k = 0;
    for (size_t i = 0; i < r->n; i++) {
        if (r->lines[i].code != BIRDC_ROW_PROTOCOL)
            continue;
        struct birdc_protocol *g = grow(arr, k, &cap, sizeof *arr);
        if (!g) {
            free(arr);
            set_err(err, errlen, "out of memory");
            return -1;
        }
        arr = g;
        if (!parse_protocol_row(r->lines[i].text, &arr[k])) {
            free(arr);
            set_err(err, errlen, "cannot read a row of BIRD's protocol list: \"%.80s\"", r->lines[i].text);
            return -1;
        }
        k++;
    }
    *out = arr;
    *n = k;
    return 0;
}

/* "1.234" seconds -> 1234 ms (at most 3 decimals; more are cut). */
static bool parse_seconds_ms(const char *s, uint32_t *ms)
{
    uint64_t whole = 0, frac = 0;
    int digits = 0, fdigits = 0;
    for (; *s >= '0' && *s <= '9'; s++, digits++) {
        whole = whole * 10 + (uint64_t)(*s - '0');
        if (whole > 4000000)
            return false;
    }
    if (*s == '.') {
        for (s++; *s >= '0' && *s <= '9'; s++) {
            if (fdigits < 3) {
                frac = frac * 10 + (uint64_t)(*s - '0');
                fdigits++;
            }
        }
    }
    if (*s || digits == 0)
        return false;
    for (; fdigits < 3; fdigits++)
        frac *= 10;
    *ms = (uint32_t)(whole * 1000 + frac);
    return true;
}

/* " 10.120.0.1   s12b-v1    Up    16:15:34.859    0.100    0.300": IP
 * address, interface, state, since (maybe with a space), interval,
 * timeout. Read from both ends. */
static bool parse_bfd_row(const char *text, const char *proto, struct birdc_bfd_session *b)
{
    memset(b, 0, sizeof *b);
    snprintf(b->proto, sizeof b->proto, "%s", proto);
    const char *s = text;
    if (!next_word(&s, b->peer, sizeof b->peer) || !next_word(&s, b->ifname, sizeof b->ifname) ||
        !next_word(&s, b->state, sizeof b->state))
        return false;
    char rest[256];
    copy_field(rest, sizeof rest, s, strlen(s));
    trim_right(rest);
    char *last = strrchr(rest, ' ');
    if (!last || !parse_seconds_ms(last + 1, &b->timeout_ms))
        return false;
    *last = '\0';
    trim_right(rest);
    char *prev = strrchr(rest, ' ');
    if (!prev || !parse_seconds_ms(prev + 1, &b->interval_ms))
        return false;
    *prev = '\0';
    trim_right(rest);
    const char *since = rest;
    while (*since == ' ')
        since++;
    copy_field(b->since, sizeof b->since, since, strlen(since));
    return b->since[0] != '\0';
}

int birdc_parse_bfd_sessions(const struct birdc_reply *r, struct birdc_bfd_session **out, size_t *n, char *err,
                             size_t errlen)
{
    *out = NULL;
    *n = 0;
    if (reply_error(r, err, errlen) < 0)
        return -1;
    struct birdc_bfd_session *arr = NULL;
    size_t cap = 0, k = 0;
    char proto[64] = "";
    /* Per BFD protocol: "1020-NAME:", a heading "IP address ...", rows. */
    for (size_t i = 0; i < r->n; i++) {
        const struct birdc_line *l = &r->lines[i];
        if (l->code != BIRDC_ROW_BFD)
            continue;
        size_t len = strlen(l->text);
        if (len && l->text[0] != ' ' && l->text[len - 1] == ':') {
            copy_field(proto, sizeof proto, l->text, len - 1);
            continue;
        }
        if (!strncmp(l->text, "IP address", 10) || !*l->text)
            continue;
        struct birdc_bfd_session *g = grow(arr, k, &cap, sizeof *arr);
        if (!g) {
            free(arr);
            set_err(err, errlen, "out of memory");
            return -1;
        }
        arr = g;
        if (!parse_bfd_row(l->text, proto, &arr[k])) {
            free(arr);
            set_err(err, errlen, "cannot read a row of BIRD's BFD sessions: \"%.80s\"", l->text);
            return -1;
        }
        k++;
    }
    *out = arr;
    *n = k;
    return 0;
}

/* "X of Y routes for Z networks in table T" (a row) or "Total: X of Y
 * routes for Z networks in N tables" (the last line when there are
 * several tables): X, the routes that passed the filter. */
static bool count_line(const char *m, uint32_t *x_out)
{
    if (!strncmp(m, "Total: ", 7))
        m += 7;
    if (!isdigit((unsigned char)m[0]))
        return false;
    char *end;
    errno = 0;
    unsigned long x = strtoul(m, &end, 10);
    if (errno || x > UINT32_MAX || strncmp(end, " of ", 4) != 0 || !strstr(end, " routes for "))
        return false;
    *x_out = (uint32_t)x;
    return true;
}

int birdc_parse_route_count(const struct birdc_reply *r, uint32_t *count, char *err, size_t errlen)
{
    if (reply_error(r, err, errlen) < 0)
        return -1;
    /* Several tables: the total is the last line (0014). One table: its
     * row (1007), and the reply ends with 0000. */
    if (r->code == BIRDC_ROUTE_COUNT) {
        if (count_line(birdc_reply_message(r), count))
            return 0;
    } else {
        uint64_t sum = 0;
        size_t rows = 0;
        for (size_t i = 0; i < r->n; i++) {
            uint32_t x;
            if (r->lines[i].code != BIRDC_ROW_ROUTE)
                continue;
            if (!count_line(r->lines[i].text, &x))
                break;
            sum += x;
            rows++;
        }
        if (rows && sum <= UINT32_MAX) {
            *count = (uint32_t)sum;
            return 0;
        }
    }
    set_err(err, errlen, "not a route count from BIRD: \"%.80s\"", birdc_reply_message(r));
    return -1;
}

/* A route row begins with its network ("10.0.0.1/32   unicast [...]");
 * the rows of its other routes and its attributes begin with blanks, and
 * "Table master4:" names the table. */
static bool route_prefix(const char *text, char *dst, size_t cap)
{
    if (text[0] == ' ' || text[0] == '\t' || !strncmp(text, "Table ", 6))
        return false;
    const char *s = text;
    if (!next_word(&s, dst, cap))
        return false;
    if (!strchr(dst, '/'))
        return false;
    for (const char *p = dst; *p; p++)
        if (!isxdigit((unsigned char)*p) && *p != '.' && *p != ':' && *p != '/')
            return false;
    return true;
}

int birdc_parse_prefixes(const struct birdc_reply *r, struct birdc_prefix **out, size_t *n, char *err,
                         size_t errlen)
{
    *out = NULL;
    *n = 0;
    if (reply_error(r, err, errlen) < 0)
        return -1;
    struct birdc_prefix *arr = NULL;
    size_t cap = 0, k = 0;
    for (size_t i = 0; i < r->n; i++) {
        if (r->lines[i].code != BIRDC_ROW_ROUTE)
            continue;
        struct birdc_prefix p;
        if (!route_prefix(r->lines[i].text, p.text, sizeof p.text))
            continue;
        if (k && !strcmp(arr[k - 1].text, p.text))
            continue;
        struct birdc_prefix *g = grow(arr, k, &cap, sizeof *arr);
        if (!g) {
            free(arr);
            set_err(err, errlen, "out of memory");
            return -1;
        }
        arr = g;
        arr[k++] = p;
    }
    *out = arr;
    *n = k;
    return 0;
}

/* ---- routes with their attributes (show route ... all) ------------------ */

/* A decimal number of at most 32 bits at *p (advanced past it). */
static bool read_u32(const char **p, uint32_t *v)
{
    const char *s = *p;
    uint64_t x = 0;
    if (!isdigit((unsigned char)*s))
        return false;
    for (; isdigit((unsigned char)*s); s++) {
        x = x * 10 + (uint64_t)(*s - '0');
        if (x > UINT32_MAX)
            return false;
    }
    *v = (uint32_t)x;
    *p = s;
    return true;
}

/* "65000 {65001 65002} 65010": the ASNs, braces of AS sets dropped. */
static bool parse_as_path(const char *s, struct birdc_route *rt)
{
    rt->as_path_len = 0;
    rt->as_path_cut = false;
    for (;;) {
        while (*s == ' ' || *s == '{' || *s == '}' || *s == '\t' || *s == '\r')
            s++;
        if (!*s)
            return true;
        uint32_t asn;
        if (!read_u32(&s, &asn) || (*s && *s != ' ' && *s != '}' && *s != '{' && *s != '\r'))
            return false;
        if (rt->as_path_len < BIRDC_MAX_AS_PATH)
            rt->as_path[rt->as_path_len++] = asn;
        else
            rt->as_path_cut = true;
    }
}

/* "(65010,1001) (65010,3000)" (width 2) or "(4200000000, 1000, 0)" (width
 * 3): tuples of numbers into rows of `width` (at most max of them). */
static bool parse_tuples(const char *s, size_t width, uint32_t *rows, size_t max, size_t *n)
{
    *n = 0;
    for (;;) {
        while (*s == ' ' || *s == '\r')
            s++;
        if (!*s)
            return true;
        if (*s++ != '(')
            return false;
        uint32_t t[3];
        for (size_t i = 0; i < width; i++) {
            while (*s == ' ')
                s++;
            if (!read_u32(&s, &t[i]))
                return false;
            while (*s == ' ')
                s++;
            if (*s++ != (i + 1 < width ? ',' : ')'))
                return false;
        }
        if (*n < max)
            memcpy(rows + *n * width, t, width * sizeof *t);
        (*n)++;
        if (*n > max)
            *n = max;   /* more than we keep: the first ones are enough */
    }
}

/* The head of a route: "10.0.0.1/32   unicast [PROTO ...] ..." or, for
 * another route of the same network, "   unicast [PROTO ...]". */
static bool parse_route_head(const char *text, const char *prev_prefix, struct birdc_route *rt)
{
    char prev[sizeof rt->prefix];
    snprintf(prev, sizeof prev, "%s", prev_prefix);
    memset(rt, 0, sizeof *rt);
    if (text[0] == ' ') {
        if (!prev[0])
            return false;
        memcpy(rt->prefix, prev, sizeof prev);
    } else if (!route_prefix(text, rt->prefix, sizeof rt->prefix)) {
        return false;
    }
    const char *b = strchr(text, '[');
    if (!b)
        return false;
    b++;
    size_t len = strcspn(b, " ]");
    if (!len || len >= sizeof rt->proto)
        return false;
    copy_field(rt->proto, sizeof rt->proto, b, len);
    return true;
}

/* One "\tBGP.xxx: value" line of the route rt. */
static bool parse_route_attr(const char *text, struct birdc_route *rt)
{
    static const char as_path[] = "\tBGP.as_path:", community[] = "\tBGP.community:",
                      large[] = "\tBGP.large_community:";
    if (!strncmp(text, as_path, sizeof as_path - 1))
        return parse_as_path(text + sizeof as_path - 1, rt);
    if (!strncmp(text, community, sizeof community - 1))
        return parse_tuples(text + sizeof community - 1, 2, &rt->community[0][0], BIRDC_MAX_COMMUNITIES,
                            &rt->n_community);
    if (!strncmp(text, large, sizeof large - 1))
        return parse_tuples(text + sizeof large - 1, 3, &rt->large_community[0][0], BIRDC_MAX_COMMUNITIES,
                            &rt->n_large_community);
    return true;   /* an attribute not read here */
}

int birdc_parse_routes(const struct birdc_reply *r, struct birdc_route **out, size_t *n, char *err, size_t errlen)
{
    *out = NULL;
    *n = 0;
    if (reply_error(r, err, errlen) < 0)
        return -1;
    struct birdc_route *arr = NULL;
    size_t cap = 0, k = 0;
    for (size_t i = 0; i < r->n; i++) {
        const struct birdc_line *l = &r->lines[i];
        bool ok = true;
        if (l->code == BIRDC_ROW_ROUTE && l->text[0] != '\t' && strncmp(l->text, "Table ", 6) != 0 && l->text[0]) {
            struct birdc_route *g = grow(arr, k, &cap, sizeof *arr);
            if (!g) {
                free(arr);
                set_err(err, errlen, "out of memory");
                return -1;
            }
            arr = g;
            ok = parse_route_head(l->text, k ? arr[k - 1].prefix : "", &arr[k]);
            if (ok)
                k++;
        } else if (l->code == BIRDC_ROW_ROUTE_ATTR && k) {
            ok = parse_route_attr(l->text, &arr[k - 1]);
        }
        if (!ok) {
            free(arr);
            set_err(err, errlen, "cannot read a line of BIRD's route list: \"%.80s\"", l->text);
            return -1;
        }
    }
    *out = arr;
    *n = k;
    return 0;
}

/* ---- the connection ----------------------------------------------------- */

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Wait for `events` on the socket until the deadline. 0, or -1 (timeout/error). */
static int wait_fd(int fd, short events, int64_t deadline, char *err, size_t errlen)
{
    for (;;) {
        int64_t left = deadline - now_ms();
        if (left <= 0) {
            set_err(err, errlen, "BIRD did not answer in time");
            return -1;
        }
        struct pollfd p = { .fd = fd, .events = events };
        int rc = poll(&p, 1, (int)left);
        if (rc > 0)
            return 0;
        if (rc < 0 && errno != EINTR) {
            set_err(err, errlen, "poll: %s", strerror(errno));
            return -1;
        }
    }
}

/* Read lines into r until the reply ends. */
static int read_reply(struct birdc *b, struct birdc_reply *r, int64_t deadline, char *err, size_t errlen)
{
    for (;;) {
        char *nl;
        while ((nl = memchr(b->buf, '\n', b->len)) != NULL) {
            size_t line_len = (size_t)(nl - b->buf);
            int rc = birdc_reply_add_line(r, b->buf, line_len, err, errlen);
            memmove(b->buf, nl + 1, b->len - line_len - 1);
            b->len -= line_len + 1;
            if (rc != 0)
                return rc < 0 ? -1 : 0;
        }
        if (b->len == sizeof b->buf) {
            set_err(err, errlen, "a line of BIRD's reply is longer than %d bytes", BIRDC_MAX_LINE);
            return -1;
        }
        if (wait_fd(b->fd, POLLIN, deadline, err, errlen) < 0)
            return -1;
        ssize_t got = recv(b->fd, b->buf + b->len, sizeof b->buf - b->len, 0);
        if (got == 0) {
            set_err(err, errlen, "BIRD closed the control connection");
            return -1;
        }
        if (got < 0) {
            if (errno == EAGAIN || errno == EINTR)
                continue;
            set_err(err, errlen, "reading from BIRD: %s", strerror(errno));
            return -1;
        }
        b->len += (size_t)got;
    }
}

int birdc_open(struct birdc *b, const char *path, uint32_t timeout_ms, char *err, size_t errlen)
{
    memset(b, 0, sizeof *b);
    b->fd = -1;
    b->timeout_ms = timeout_ms ? timeout_ms : BIRDC_DEFAULT_TIMEOUT_MS;
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    if (strlen(path) >= sizeof sa.sun_path) {
        set_err(err, errlen, "control socket path %s is too long", path);
        return -1;
    }
    strcpy(sa.sun_path, path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        set_err(err, errlen, "socket: %s", strerror(errno));
        return -1;
    }
    int64_t deadline = now_ms() + b->timeout_ms;
    /* A UNIX connect completes at once or fails, except when the
     * listener's backlog is full (EAGAIN): then wait and try again. */
    while (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN && now_ms() < deadline) {
            struct timespec ts = { 0, 10 * 1000000 };
            nanosleep(&ts, NULL);
            continue;
        }
        set_err(err, errlen, "cannot connect to BIRD's control socket %s: %s", path, strerror(errno));
        close(fd);
        return -1;
    }
    b->fd = fd;
    struct birdc_reply hello = { 0 };
    char why[256] = "";
    if (read_reply(b, &hello, deadline, why, sizeof why) < 0 || hello.code != BIRDC_HELLO) {
        set_err(err, errlen, "no greeting from BIRD on %s: %s", path,
                why[0] ? why : birdc_reply_message(&hello));
        birdc_reply_free(&hello);
        birdc_close(b);
        return -1;
    }
    snprintf(b->version, sizeof b->version, "%s", birdc_reply_message(&hello));
    birdc_reply_free(&hello);
    return 0;
}

void birdc_close(struct birdc *b)
{
    if (b->fd >= 0)
        close(b->fd);
    b->fd = -1;
    b->len = 0;
}

int birdc_command(struct birdc *b, const char *cmd, struct birdc_reply *r, char *err, size_t errlen)
{
    memset(r, 0, sizeof *r);
    r->code = -1;
    if (b->fd < 0) {
        set_err(err, errlen, "not connected to BIRD");
        return -1;
    }
    size_t n = strlen(cmd);
    if (n == 0 || n + 1 >= BIRDC_MAX_LINE || strpbrk(cmd, "\r\n")) {
        set_err(err, errlen, "not a single-line command");
        return -1;
    }
    char line[BIRDC_MAX_LINE];
    memcpy(line, cmd, n);
    line[n] = '\n';
    int64_t deadline = now_ms() + b->timeout_ms;
    size_t sent = 0;
    while (sent < n + 1) {
        ssize_t w = send(b->fd, line + sent, n + 1 - sent, MSG_NOSIGNAL);
        if (w > 0) {
            sent += (size_t)w;
            continue;
        }
        if (w < 0 && (errno == EAGAIN || errno == EINTR)) {
            if (wait_fd(b->fd, POLLOUT, deadline, err, errlen) < 0)
                goto fail;
            continue;
        }
        set_err(err, errlen, "writing to BIRD: %s", w < 0 ? strerror(errno) : "nothing written");
        goto fail;
    }
    if (read_reply(b, r, deadline, err, errlen) < 0)
        goto fail;
    return 0;
fail:
    birdc_reply_free(r);
    r->code = -1;
    birdc_close(b);
    return -1;
}

/* Run cmd; 0 if its reply's code is one of ok[] (ending with -1), else
 * -1 with BIRD's message. */
static int command_expect(struct birdc *b, const char *cmd, const int *ok, char *err, size_t errlen)
{
    struct birdc_reply r;
    if (birdc_command(b, cmd, &r, err, errlen) < 0)
        return -1;
    int rc = -1;
    for (size_t i = 0; ok[i] >= 0; i++)
        if (r.code == ok[i])
            rc = 0;
    if (rc < 0)
        set_err(err, errlen, "%s: BIRD: %s (%04d)", cmd, birdc_reply_message(&r), r.code);
    birdc_reply_free(&r);
    return rc;
}

/* A file name as BIRD's command parser reads it: in double quotes,
 * without escapes. */
static bool quotable(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == '"')
            return false;
    return true;
}

int birdc_configure(struct birdc *b, const char *file, char *err, size_t errlen)
{
    static const int ok[] = { BIRDC_RECONFIGURED, BIRDC_RECONFIG_IN_PROGRESS, BIRDC_RECONFIG_QUEUED,
                              BIRDC_RECONFIG_QUEUE_REPLACED, -1 };
    char cmd[BIRDC_MAX_LINE];
    if (file && (!quotable(file) || strlen(file) > sizeof cmd - 16)) {
        set_err(err, errlen, "cannot name %s in a BIRD command", file);
        return -1;
    }
    if (file)
        snprintf(cmd, sizeof cmd, "configure \"%s\"", file);
    else
        snprintf(cmd, sizeof cmd, "configure");
    return command_expect(b, cmd, ok, err, errlen);
}

int birdc_configure_check(struct birdc *b, const char *file, char *err, size_t errlen)
{
    static const int ok[] = { BIRDC_CONFIG_OK, -1 };
    char cmd[BIRDC_MAX_LINE];
    if (!quotable(file) || strlen(file) > sizeof cmd - 24) {
        set_err(err, errlen, "cannot name %s in a BIRD command", file);
        return -1;
    }
    snprintf(cmd, sizeof cmd, "configure check \"%s\"", file);
    return command_expect(b, cmd, ok, err, errlen);
}

int birdc_show_protocols(struct birdc *b, struct birdc_protocol **out, size_t *n, char *err, size_t errlen)
{
    struct birdc_reply r;
    *out = NULL;
    *n = 0;
    if (birdc_command(b, "show protocols", &r, err, errlen) < 0)
        return -1;
    int rc = birdc_parse_protocols(&r, out, n, err, errlen);
    birdc_reply_free(&r);
    return rc;
}

int birdc_show_bfd_sessions(struct birdc *b, struct birdc_bfd_session **out, size_t *n, char *err, size_t errlen)
{
    struct birdc_reply r;
    *out = NULL;
    *n = 0;
    if (birdc_command(b, "show bfd sessions", &r, err, errlen) < 0)
        return -1;
    int rc = 0;
    /* No BFD protocol at all (bfd: false): BIRD 2.0.12 answers "9001 There
     * is no BFD protocol running"; no sessions, not an error. */
    if (!(r.code == 9001 && strstr(birdc_reply_message(&r), "no BFD protocol")))
        rc = birdc_parse_bfd_sessions(&r, out, n, err, errlen);
    birdc_reply_free(&r);
    return rc;
}

bool birdc_name_ok(const char *name)
{
    size_t n = strlen(name);
    if (n == 0 || n > 63 || !(isalpha((unsigned char)name[0]) || name[0] == '_'))
        return false;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)name[i]) && name[i] != '_')
            return false;
    return true;
}

static bool proto_command(const char *fmt, const char *proto, char *cmd, size_t cap, char *err, size_t errlen)
{
    if (!birdc_name_ok(proto)) {
        set_err(err, errlen, "\"%.64s\" is not a BIRD protocol name", proto);
        return false;
    }
    snprintf(cmd, cap, fmt, proto);
    return true;
}

/* A protocol whose channels are down has no table to list: BIRD 2.0.12
 * answers "9001 No valid tables". It exports nothing. */
static bool no_valid_tables(const struct birdc_reply *r)
{
    return r->code == 9001 && strstr(birdc_reply_message(r), "No valid tables") != NULL;
}

int birdc_exported_count(struct birdc *b, const char *proto, uint32_t *count, char *err, size_t errlen)
{
    char cmd[128];
    struct birdc_reply r;
    if (!proto_command("show route export %s count", proto, cmd, sizeof cmd, err, errlen) ||
        birdc_command(b, cmd, &r, err, errlen) < 0)
        return -1;
    int rc = 0;
    if (no_valid_tables(&r))
        *count = 0;
    else
        rc = birdc_parse_route_count(&r, count, err, errlen);
    birdc_reply_free(&r);
    return rc;
}

int birdc_show_exported(struct birdc *b, const char *proto, struct birdc_prefix **out, size_t *n, char *err,
                        size_t errlen)
{
    char cmd[128];
    struct birdc_reply r;
    *out = NULL;
    *n = 0;
    if (!proto_command("show route export %s", proto, cmd, sizeof cmd, err, errlen) ||
        birdc_command(b, cmd, &r, err, errlen) < 0)
        return -1;
    /* Nothing exported is a reply with no rows ("0000"). */
    int rc = no_valid_tables(&r) ? 0 : birdc_parse_prefixes(&r, out, n, err, errlen);
    birdc_reply_free(&r);
    return rc;
}

int birdc_show_import_routes(struct birdc *b, const char *proto, bool ipv6, uint32_t asn, struct birdc_route **out,
                             size_t *n, char *err, size_t errlen)
{
    char cmd[256];
    struct birdc_reply r;
    *out = NULL;
    *n = 0;
    if (!birdc_name_ok(proto)) {
        set_err(err, errlen, "\"%.64s\" is not a BIRD protocol name", proto);
        return -1;
    }
    snprintf(cmd, sizeof cmd, "show route import table %s.%s where net.len = %d && bgp_path ~ [= * %u * =] all", proto,
             ipv6 ? "ipv6" : "ipv4", ipv6 ? 128 : 32, asn);
    if (birdc_command(b, cmd, &r, err, errlen) < 0)
        return -1;
    /* A channel that is down has no import table: BIRD 2.0.12 answers
     * "9001 No import table in channel P.ipv4". */
    int rc = 0;
    if (!(r.code == 9001 && strstr(birdc_reply_message(&r), "No import table")))
        rc = birdc_parse_routes(&r, out, n, err, errlen);
    birdc_reply_free(&r);
    return rc;
}

int birdc_enable(struct birdc *b, const char *proto, char *err, size_t errlen)
{
    static const int ok[] = { BIRDC_ENABLED, BIRDC_ALREADY_ENABLED, BIRDC_OK, -1 };
    char cmd[128];
    if (!proto_command("enable %s", proto, cmd, sizeof cmd, err, errlen))
        return -1;
    return command_expect(b, cmd, ok, err, errlen);
}

int birdc_disable(struct birdc *b, const char *proto, char *err, size_t errlen)
{
    static const int ok[] = { BIRDC_DISABLED, BIRDC_ALREADY_DISABLED, BIRDC_OK, -1 };
    char cmd[128];
    if (!proto_command("disable %s", proto, cmd, sizeof cmd, err, errlen))
        return -1;
    return command_expect(b, cmd, ok, err, errlen);
}
