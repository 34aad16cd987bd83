/* Syslog and journald outputs: see log_sink.h. */
#include "core/log_sink.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/un.h>
#include <unistd.h>

#include "core/config_walk.h"
#include "core/log.h"
#include "core/metrics.h"
#include "lib/addr.h"

/* ---------- names ---------- */

static const char *const facility_names[] = {
    "kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron", "authpriv", "ftp",
    NULL, NULL, NULL, NULL, /* 12..15: ntp, security, console, clock have no common names */
    "local0", "local1", "local2", "local3", "local4", "local5", "local6", "local7",
};
#define N_FACILITIES (int)(sizeof facility_names / sizeof facility_names[0])

static const char *const severity_names[] = { "emerg", "alert", "crit", "err", "warning", "notice", "info", "debug" };
static const char *const kind_names[LOG_SINK_KINDS] = { "syslog", "journald" };
static const char *const use_names[LOG_SINK_USES] = { "daemon", "access" };

static int facility_by_name(const char *s)
{
    for (int i = 0; i < N_FACILITIES; i++)
        if (facility_names[i] && strcmp(s, facility_names[i]) == 0)
            return i;
    return -1;
}

static int severity_by_name(const char *s)
{
    if (strcmp(s, "error") == 0) /* the spellings of log.level too */
        return LOG_SINK_ERR;
    if (strcmp(s, "warn") == 0)
        return LOG_SINK_WARNING;
    for (int i = 0; i < 8; i++)
        if (strcmp(s, severity_names[i]) == 0)
            return i;
    return -1;
}

int log_sink_severity_of_level(int level)
{
    switch (level) {
    case LOG_LEVEL_DEBUG: return LOG_SINK_DEBUG;
    case LOG_LEVEL_INFO: return LOG_SINK_INFO;
    case LOG_LEVEL_WARN: return LOG_SINK_WARNING;
    default: return LOG_SINK_ERR;
    }
}

/* ---------- parsing ---------- */

static bool has_prefix(const char *s, const char *p, const char **rest)
{
    size_t n = strlen(p);
    if (strncmp(s, p, n) != 0 || (s[n] != '\0' && s[n] != ':'))
        return false;
    *rest = s[n] ? s + n + 1 : s + n;
    return true;
}

bool log_sink_is_spec(const char *s)
{
    const char *rest;
    return has_prefix(s, "syslog", &rest) || has_prefix(s, "journald", &rest);
}

static bool tag_valid(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > LOG_SINK_TAG_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!config_is_name_char(s[i]))
            return false;
    return true;
}

static int set_unix_path(struct log_sink_spec *sp, const char *path, char *err, size_t errlen)
{
    struct sockaddr_un *un = (struct sockaddr_un *)&sp->addr;
    size_t n = strlen(path);
    if (n == 0 || path[0] != '/' || n >= sizeof un->sun_path) {
        snprintf(err, errlen, "server=unix:PATH needs an absolute path shorter than %zu bytes",
                 sizeof un->sun_path);
        return -1;
    }
    memset(&sp->addr, 0, sizeof sp->addr);
    un->sun_family = AF_UNIX;
    memcpy(un->sun_path, path, n + 1);
    sp->addr_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + 1);
    sp->udp = false;
    snprintf(sp->where, sizeof sp->where, "%s", path);
    return 0;
}

static int set_server(struct log_sink_spec *sp, const char *v, char *err, size_t errlen)
{
    if (strncmp(v, "unix:", 5) == 0)
        return set_unix_path(sp, v + 5, err, errlen);
    /* IP, IP:PORT, [IPv6] or [IPv6]:PORT; the port defaults to 514. */
    char text[96];
    bool has_port = v[0] == '[' ? strstr(v, "]:") != NULL : strchr(v, ':') != NULL;
    if (snprintf(text, sizeof text, has_port ? "%s" : "%s:%d", v, LOG_SINK_SYSLOG_PORT) >= (int)sizeof text) {
        snprintf(err, errlen, "server is too long");
        return -1;
    }
    struct sl_addr a;
    const char *why = NULL;
    if (v[0] != '[' && has_port && strchr(strchr(v, ':') + 1, ':')) {
        snprintf(err, errlen, "server: an IPv6 address is written [ADDR]:PORT");
        return -1;
    }
    if (addr_parse(text, &a, &why) < 0) {
        snprintf(err, errlen, "server: %s (an IP address with an optional port, or unix:PATH)", why ? why : "invalid");
        return -1;
    }
    memcpy(&sp->addr, &a.ss, a.len);
    sp->addr_len = a.len;
    sp->udp = true;
    snprintf(sp->where, sizeof sp->where, "udp %s", a.text);
    return 0;
}

/* One OPT=VAL of the list. */
static int parse_option(struct log_sink_spec *sp, char *opt, char *err, size_t errlen)
{
    char *eq = strchr(opt, '=');
    if (!eq || eq == opt || !eq[1]) {
        snprintf(err, errlen, "expected OPTION=VALUE, got \"%s\"", opt);
        return -1;
    }
    *eq = '\0';
    const char *k = opt, *v = eq + 1;
    if (strcmp(k, "server") == 0 && sp->kind == LOG_SINK_SYSLOG)
        return set_server(sp, v, err, errlen);
    if (strcmp(k, "facility") == 0) {
        sp->facility = facility_by_name(v);
        if (sp->facility < 0) {
            snprintf(err, errlen, "unknown facility \"%s\" (kern, user, mail, daemon, auth, syslog, lpr, news, uucp, "
                     "cron, authpriv, ftp, local0 .. local7)", v);
            return -1;
        }
        return 0;
    }
    if (strcmp(k, "tag") == 0) {
        if (!tag_valid(v)) {
            snprintf(err, errlen, "tag must be 1 to %d of A-Z a-z 0-9 _ . -, got \"%s\"", LOG_SINK_TAG_MAX, v);
            return -1;
        }
        snprintf(sp->tag, sizeof sp->tag, "%s", v);
        return 0;
    }
    if (strcmp(k, "severity") == 0) {
        if (sp->use != LOG_SINK_ACCESS) {
            snprintf(err, errlen, "severity is for access logs; the daemon log's follows each message's level");
            return -1;
        }
        sp->severity = severity_by_name(v);
        if (sp->severity < 0) {
            snprintf(err, errlen, "unknown severity \"%s\" (emerg, alert, crit, err, warning, notice, info, debug)",
                     v);
            return -1;
        }
        return 0;
    }
    if (strcmp(k, "format") == 0 && sp->kind == LOG_SINK_SYSLOG) {
        if (strcmp(v, "rfc3164") == 0)
            sp->format = LOG_SINK_RFC3164;
        else if (strcmp(v, "rfc5424") == 0)
            sp->format = LOG_SINK_RFC5424;
        else {
            snprintf(err, errlen, "unknown format \"%s\" (rfc3164, rfc5424)", v);
            return -1;
        }
        return 0;
    }
    snprintf(err, errlen, "unknown option \"%s\" (%s)", k,
             sp->kind == LOG_SINK_SYSLOG ? "server, facility, tag, severity, format" : "facility, tag, severity");
    return -1;
}

int log_sink_parse(const char *s, enum log_sink_use use, struct log_sink_spec *out, char *err, size_t errlen)
{
    struct log_sink_spec sp = { .use = use, .severity = use == LOG_SINK_ACCESS ? LOG_SINK_INFO : -1 };
    const char *opts;
    char inner[256];
    if (has_prefix(s, "syslog", &opts)) {
        sp.kind = LOG_SINK_SYSLOG;
        set_unix_path(&sp, LOG_SINK_SYSLOG_PATH, inner, sizeof inner);
    } else if (has_prefix(s, "journald", &opts)) {
        sp.kind = LOG_SINK_JOURNALD;
        set_unix_path(&sp, LOG_SINK_JOURNAL_PATH, inner, sizeof inner);
    } else {
        snprintf(err, errlen, "not syslog or journald");
        return -1;
    }
    sp.facility = use == LOG_SINK_ACCESS ? 23 /* local7, nginx's */ : 3 /* daemon */;
    snprintf(sp.tag, sizeof sp.tag, "%s", use == LOG_SINK_ACCESS ? "sluice-access" : "sluice");
    char list[512];
    if (snprintf(list, sizeof list, "%s", opts) >= (int)sizeof list) {
        snprintf(err, errlen, "%s: the options are too long", kind_names[sp.kind]);
        return -1;
    }
    char *save = NULL;
    bool any = false;
    for (char *o = strtok_r(list, ",", &save); o; o = strtok_r(NULL, ",", &save)) {
        any = true;
        if (parse_option(&sp, o, inner, sizeof inner) < 0) {
            snprintf(err, errlen, "%s: %s", kind_names[sp.kind], inner);
            return -1;
        }
    }
    if (!any && *opts) {
        snprintf(err, errlen, "%s: expected OPTION=VALUE after ':'", kind_names[sp.kind]);
        return -1;
    }
    *out = sp;
    return 0;
}

/* ---------- records ---------- */

/* Append at most n bytes of s to out (len so far, cap). */
static size_t put(char *out, size_t len, size_t cap, const char *s, size_t n)
{
    if (len >= cap)
        return len;
    if (n > cap - len)
        n = cap - len;
    memcpy(out + len, s, n);
    return len + n;
}

static size_t puts_(char *out, size_t len, size_t cap, const char *s) { return put(out, len, cap, s, strlen(s)); }

/* One journal field: NAME=VALUE\n, or, when the value holds a newline,
 * NAME\n, its length as 64-bit little endian, the value and \n. */
static size_t put_field(char *out, size_t len, size_t cap, const char *name, const char *v, size_t n)
{
    len = puts_(out, len, cap, name);
    if (!memchr(v, '\n', n)) {
        len = put(out, len, cap, "=", 1);
    } else {
        unsigned char le[9] = { '\n' };
        for (int i = 0; i < 8; i++)
            le[1 + i] = (unsigned char)((uint64_t)n >> (8 * i));
        len = put(out, len, cap, (const char *)le, sizeof le);
    }
    len = put(out, len, cap, v, n);
    return put(out, len, cap, "\n", 1);
}

static size_t render_journal(const struct log_sink_spec *sp, int severity, const char *msg, size_t n,
                             const struct log_field *fields, size_t n_fields, char *out, size_t cap)
{
    char num[16];
    size_t len = put_field(out, 0, cap, "MESSAGE", msg, n);
    snprintf(num, sizeof num, "%d", severity);
    len = put_field(out, len, cap, "PRIORITY", num, strlen(num));
    snprintf(num, sizeof num, "%d", sp->facility);
    len = put_field(out, len, cap, "SYSLOG_FACILITY", num, strlen(num));
    len = put_field(out, len, cap, "SYSLOG_IDENTIFIER", sp->tag, strlen(sp->tag));
    for (size_t i = 0; i < n_fields; i++)
        if (fields[i].value)
            len = put_field(out, len, cap, fields[i].name, fields[i].value, strlen(fields[i].value));
    return len;
}

static size_t render_syslog(const struct log_sink_spec *sp, const char *host, pid_t pid, const struct timespec *now,
                            int severity, const char *msg, size_t n, char *out, size_t cap)
{
    static const char *const months[] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                          "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };
    char head[256];
    int pri = sp->facility * 8 + severity;
    struct tm tm;
    if (sp->format == LOG_SINK_RFC5424) {
        gmtime_r(&now->tv_sec, &tm);
        snprintf(head, sizeof head, "<%d>1 %04d-%02d-%02dT%02d:%02d:%02d.%06ldZ %s %s %d - - ", pri,
                 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                 now->tv_nsec / 1000, host && *host ? host : "-", sp->tag, (int)pid);
    } else {
        /* BSD syslog: local time, "Mmm dd hh:mm:ss"; the host name only
         * on the wire (a local daemon adds its own, as for glibc's syslog()). */
        localtime_r(&now->tv_sec, &tm);
        snprintf(head, sizeof head, "<%d>%s %2d %02d:%02d:%02d %s%s%s[%d]: ", pri, months[tm.tm_mon % 12],
                 tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, host && *host ? host : "", host && *host ? " " : "",
                 sp->tag, (int)pid);
    }
    size_t len = puts_(out, 0, cap, head);
    return put(out, len, cap, msg, n);
}

size_t log_sink_render(const struct log_sink_spec *spec, const char *host, pid_t pid, const struct timespec *now,
                       int severity, const char *msg, size_t len, const struct log_field *fields, size_t n_fields,
                       char *out, size_t cap)
{
    if (len && msg[len - 1] == '\n')
        len--;
    if (severity < 0 || severity > 7)
        severity = LOG_SINK_INFO;
    if (spec->kind == LOG_SINK_JOURNALD)
        return render_journal(spec, severity, msg, len, fields, n_fields, out, cap);
    return render_syslog(spec, host, pid, now, severity, msg, len, out, cap);
}

/* ---------- drop counters ---------- */

typedef _Atomic uint64_t drop_row[LOG_SINK_KINDS];
static drop_row local_drops[LOG_SINK_USES];
static drop_row *drops = local_drops;

void log_sink_share_counters(void)
{
    if (drops != local_drops)
        return;
    void *p = mmap(NULL, sizeof local_drops, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p != MAP_FAILED) {
        memcpy(p, (const void *)local_drops, sizeof local_drops); /* what this process counted so far */
        drops = p;
    }
}

uint64_t log_sink_dropped(enum log_sink_use use, enum log_sink_kind kind)
{
    return atomic_load_explicit(&drops[use][kind], memory_order_relaxed);
}

void log_sink_metrics(struct strbuf *out)
{
    metrics_family(out, "sluice_log_dropped_total", "counter",
                   "Log records a syslog or journald output could not send at once (receiver gone or behind), "
                   "by log and output.");
    for (int u = 0; u < LOG_SINK_USES; u++)
        for (int k = 0; k < LOG_SINK_KINDS; k++) {
            struct metric_label lb[2] = { { "log", use_names[u] }, { "output", kind_names[k] } };
            metrics_sample(out, "sluice_log_dropped_total", lb, 2, log_sink_dropped(u, k));
        }
}

/* ---------- sending ---------- */

struct log_sink {
    struct log_sink_spec spec;
    int fd;
    bool connected;
    bool told;                  /* the first drop was reported on stderr */
    struct timespec next_try;   /* no connect() before this after a failed one */
    char host[65];
    char buf[LOG_SINK_RECORD_MAX];
};

struct log_sink *log_sink_open(const struct log_sink_spec *spec)
{
    struct log_sink *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->spec = *spec;
    s->fd = socket(spec->addr.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (s->fd < 0) {
        free(s);
        return NULL;
    }
    /* RFC 3164 to a local daemon goes without a host name (the daemon
     * knows it); on the wire, and in RFC 5424, it is ours. */
    if (spec->udp || spec->format == LOG_SINK_RFC5424) {
        if (gethostname(s->host, sizeof s->host - 1) < 0)
            s->host[0] = '\0';
        for (char *c = s->host; *c; c++)
            if (*c <= ' ' || *c > '~')
                *c = '_';
    }
    return s;
}

void log_sink_close(struct log_sink *s)
{
    if (!s)
        return;
    close(s->fd);
    free(s);
}

int log_sink_fd(const struct log_sink *s) { return s->fd; }

const struct log_sink_spec *log_sink_spec_of(const struct log_sink *s) { return &s->spec; }

static bool time_before(const struct timespec *a, const struct timespec *b)
{
    return a->tv_sec < b->tv_sec || (a->tv_sec == b->tv_sec && a->tv_nsec < b->tv_nsec);
}

/* connect() the socket to its receiver, at most once a second while that
 * fails (a syslog daemon that is not running costs one syscall a
 * record, not two). */
static bool sink_connect(struct log_sink *s)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &now);
    if (time_before(&now, &s->next_try))
        return false;
    if (connect(s->fd, (const struct sockaddr *)&s->spec.addr, s->spec.addr_len) == 0) {
        s->connected = true;
        return true;
    }
    s->next_try = now;
    s->next_try.tv_sec += 1;
    return false;
}

static void count_drop(struct log_sink *s, int err)
{
    atomic_fetch_add_explicit(&drops[s->spec.use][s->spec.kind], 1, memory_order_relaxed);
    if (s->told)
        return;
    s->told = true;
    /* Not through log_msg: this output may be the daemon's log itself. */
    char line[320];
    int n = snprintf(line, sizeof line,
                     "sluice[%d]: %s log to %s %s: %s; records are dropped while it lasts (sluice_log_dropped_total)\n",
                     (int)getpid(), use_names[s->spec.use], kind_names[s->spec.kind], s->spec.where,
                     err ? strerror(err) : "not reachable");
    ssize_t w = write(2, line, n < (int)sizeof line ? (size_t)n : sizeof line - 1);
    (void)w;
}

static int send_datagram(struct log_sink *s, const char *buf, size_t len)
{
    int err = 0;
    /* Two tries: a receiver that restarted (a new socket at the same
     * path) or a refused datagram of before (UDP: the ICMP error comes
     * back on the next send) costs the first one only. */
    for (int attempt = 0; attempt < 2; attempt++) {
        if (!s->connected && !sink_connect(s)) {
            err = errno;
            break;
        }
        ssize_t n;
        do
            n = send(s->fd, buf, len, MSG_DONTWAIT | MSG_NOSIGNAL);
        while (n < 0 && errno == EINTR);
        if (n >= 0)
            return 0;
        err = errno;
        if (err != ECONNREFUSED && err != ENOTCONN && err != ECONNRESET && err != EDESTADDRREQ)
            break; /* EAGAIN (the receiver is behind), EMSGSIZE, ENOBUFS: dropped */
        if (!s->spec.udp)
            s->connected = false;
    }
    count_drop(s, err);
    return -1;
}

int log_sink_send(struct log_sink *s, int severity, const char *msg, size_t len, const struct log_field *fields,
                  size_t n_fields)
{
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    if (s->spec.severity >= 0)
        severity = s->spec.severity;
    size_t n = log_sink_render(&s->spec, s->host[0] ? s->host : NULL, getpid(), &now, severity, msg, len, fields,
                               n_fields, s->buf, sizeof s->buf);
    return send_datagram(s, s->buf, n);
}
