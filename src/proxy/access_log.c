#include "proxy/access_log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/log.h"

#define ACCESS_LOG_BUFFER 32768
#define ACCESS_LOG_LINE 4096

struct access_log {
    int fd;
    bool owns_fd;
    enum log_format format;
    size_t len;
    char buf[ACCESS_LOG_BUFFER];
};

struct access_log *access_log_open(const char *path, enum log_format format)
{
    struct access_log *al = calloc(1, sizeof *al);
    if (!al)
        return NULL;
    al->format = format;
    if (strcmp(path, "stdout") == 0) {
        al->fd = 1;
    } else {
        al->fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        if (al->fd < 0) {
            log_error("cannot open access log %s: %s", path, strerror(errno));
            free(al);
            return NULL;
        }
        al->owns_fd = true;
    }
    return al;
}

void access_log_flush(struct access_log *al)
{
    size_t off = 0;
    while (off < al->len) {
        ssize_t n = write(al->fd, al->buf + off, al->len - off);
        if (n <= 0) {
            if (n < 0 && errno == EINTR)
                continue;
            break; /* a full disk must not stop the proxy; the lines are lost */
        }
        off += (size_t)n;
    }
    al->len = 0;
}

void access_log_close(struct access_log *al)
{
    if (!al)
        return;
    access_log_flush(al);
    if (al->owns_fd)
        close(al->fd);
    free(al);
}

/* Quote for the combined format: escape '"', '\\' and non-printable bytes
 * the way nginx does (\xHH) so a hostile User-Agent cannot forge lines. */
static size_t put_escaped(char *out, size_t cap, const char *s, bool json)
{
    size_t n = 0;
    if (!s || !*s) {
        if (!json && cap > 1)
            out[n++] = '-';
        out[n] = '\0';
        return n;
    }
    for (; *s && n + 7 < cap; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\') {
            out[n++] = '\\';
            out[n++] = (char)ch;
        } else if (ch < 0x20 || ch >= 0x7f) {
            n += (size_t)snprintf(out + n, cap - n, json ? "\\u%04x" : "\\x%02X", ch);
        } else {
            out[n++] = (char)ch;
        }
    }
    out[n] = '\0';
    return n;
}

size_t access_log_format(enum log_format format, const struct access_entry *e, time_t now,
                         char *out, size_t cap)
{
    char req[1024], ref[512], ua[512], host[256];
    bool json = format == ACCESS_LOG_JSON;
    put_escaped(req, sizeof req, e->request_line, json);
    put_escaped(ref, sizeof ref, e->referer, json);
    put_escaped(ua, sizeof ua, e->user_agent, json);
    put_escaped(host, sizeof host, e->host, json);
    struct tm tm;
    gmtime_r(&now, &tm);
    int n;
    if (!json) {
        char ts[64];
        strftime(ts, sizeof ts, "%d/%b/%Y:%H:%M:%S +0000", &tm);
        n = snprintf(out, cap, "%s - - [%s] \"%s\" %d %llu \"%s\" \"%s\"\n", e->client_ip, ts, req,
                     e->status, (unsigned long long)e->bytes_sent, ref, ua);
    } else {
        char ts[64];
        strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%SZ", &tm);
        n = snprintf(out, cap,
                     "{\"time\":\"%s\",\"client\":\"%s\",\"listener\":\"%s\",\"host\":\"%s\","
                     "\"request\":\"%s\",\"status\":%d,\"bytes_sent\":%llu,\"referer\":\"%s\","
                     "\"user_agent\":\"%s\",\"upstream\":\"%s\",\"duration_us\":%llu}\n",
                     ts, e->client_ip, e->listener ? e->listener : "", host, req, e->status,
                     (unsigned long long)e->bytes_sent, ref, ua, e->upstream ? e->upstream : "",
                     (unsigned long long)e->duration_us);
    }
    if (n < 0)
        n = 0;
    if ((size_t)n >= cap) {
        n = (int)cap - 1;
        out[n - 1] = '\n';
    }
    return (size_t)n;
}

void access_log_write(struct access_log *al, const struct access_entry *e)
{
    if (ACCESS_LOG_BUFFER - al->len < ACCESS_LOG_LINE)
        access_log_flush(al);
    al->len += access_log_format(al->format, e, time(NULL), al->buf + al->len, ACCESS_LOG_LINE);
}
