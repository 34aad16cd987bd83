#include "core/admin_client.h"

#include "core/config.h"

#include <errno.h>
#include <stdbool.h>
#include <jansson.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define REPLY_MAX (8u << 20)
#define ANSWER_WAIT_MS 10000

static int send_all(int fd, const char *p, size_t n)
{
    while (n) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Reads until the peer closes (Connection: close), REPLY_MAX, or
 * ANSWER_WAIT_MS of silence. Returns the bytes (NUL-terminated) or NULL. */
static char *read_reply(int fd, int wait_ms, size_t *out_len)
{
    size_t cap = 65536, len = 0;
    char *buf = malloc(cap + 1);

    for (;;) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        if (!buf || poll(&pfd, 1, wait_ms) <= 0) {
            free(buf);
            return NULL;
        }
        if (len == cap) {
            if (cap >= REPLY_MAX)
                break;
            cap *= 2;
            char *nb = realloc(buf, cap + 1);
            if (!nb)
                break;
            buf = nb;
        }
        ssize_t got = recv(fd, buf + len, cap - len, 0);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0)
            break;
        len += (size_t)got;
    }
    buf[len] = '\0';
    *out_len = len;
    return buf;
}

/* "X-Sluice-Token: T\r\n", or "" without a token; -1 when the token
 * could break the head (a CR, LF or NUL cannot be sent). */
static int token_header(const char *token, char *buf, size_t cap)
{
    buf[0] = '\0';
    if (!token)
        return 0;
    if (strpbrk(token, "\r\n"))
        return -1;
    int n = snprintf(buf, cap, "X-Sluice-Token: %s\r\n", token);
    return n < 0 || (size_t)n >= cap ? -1 : 0;
}

/* The admin API's own token (admin.token_file), sent as a bearer with
 * every request of this process. */
static char *admin_token;

void admin_client_set_token(const char *token)
{
    free(admin_token);
    admin_token = token ? strdup(token) : NULL;
}

void admin_client_use_config(const struct sl_config *cfg)
{
    if (cfg && cfg->admin_token)
        admin_client_set_token(cfg->admin_token);
}

struct sl_config *admin_client_load_config(const char *path)
{
    struct config_errors errs = {0};
    struct sl_config *cfg = config_load(path, &errs);
    if (!cfg) {
        for (size_t i = 0; i < errs.n; i++)
            fprintf(stderr, "%s\n", errs.lines[i]);
        config_errors_free(&errs);
        return NULL;
    }
    admin_client_use_config(cfg);
    return cfg;
}

int admin_client_token_file(const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "re");
    if (!f) {
        snprintf(err, errlen, "%s: cannot read: %s", path, strerror(errno));
        return -1;
    }
    char line[ADMIN_CLIENT_TOKEN_MAX + 2];
    bool got = fgets(line, sizeof line, f) != NULL;
    fclose(f);
    size_t len = got ? strcspn(line, "\r\n") : 0;
    while (len && (line[len - 1] == ' ' || line[len - 1] == '\t'))
        len--;
    if (!len) {
        snprintf(err, errlen, "%s holds no token (its first line is empty)", path);
        return -1;
    }
    line[len] = '\0';
    admin_client_set_token(line);
    return 0;
}

/* "Authorization: Bearer T\r\n" for the admin token, "" without one. */
static int bearer_header(char *buf, size_t cap)
{
    buf[0] = '\0';
    if (!admin_token)
        return 0;
    if (strpbrk(admin_token, "\r\n"))
        return -1;
    int n = snprintf(buf, cap, "Authorization: Bearer %s\r\n", admin_token);
    return n < 0 || (size_t)n >= cap ? -1 : 0;
}

int admin_client_request(const struct sl_addr *admin, const char *method, const char *path, const char *body,
                         struct admin_reply *r, char *err, size_t errlen)
{
    return admin_client_request_with(admin, method, path, body, NULL, r, err, errlen);
}

int admin_client_request_with(const struct sl_addr *admin, const char *method, const char *path, const char *body,
                              const struct admin_client_opts *opts, struct admin_reply *r, char *err, size_t errlen)
{
    char auth[600], bearer[ADMIN_CLIENT_TOKEN_MAX + 64];
    if (token_header(opts ? opts->token : NULL, auth, sizeof auth) < 0) {
        snprintf(err, errlen, "the API token holds a line break or is longer than 512 bytes");
        return ADMIN_CLIENT_FAILED;
    }
    if (bearer_header(bearer, sizeof bearer) < 0) {
        snprintf(err, errlen, "the admin token holds a line break or is too long");
        return ADMIN_CLIENT_FAILED;
    }
    int wait_ms = opts && opts->answer_wait_ms > 0 ? opts->answer_wait_ms : ANSWER_WAIT_MS;
    int fd = socket(admin->ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect(fd, (const struct sockaddr *)&admin->ss, admin->len) < 0) {
        snprintf(err, errlen, "cannot reach the admin API at %s: %s", admin->text, strerror(errno));
        if (fd >= 0)
            close(fd);
        return ADMIN_CLIENT_UNREACHABLE;
    }
    char head[2048 + sizeof bearer];
    size_t blen = body ? strlen(body) : 0;
    int n = snprintf(head, sizeof head,
                     "%s %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: sluice-cli\r\nConnection: close\r\n%s%s"
                     "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n",
                     method, path, admin->text, auth, bearer, blen);
    if (n < 0 || (size_t)n >= sizeof head || send_all(fd, head, (size_t)n) < 0 ||
        (blen && send_all(fd, body, blen) < 0)) {
        snprintf(err, errlen, "sending to %s failed", admin->text);
        close(fd);
        return ADMIN_CLIENT_FAILED;
    }
    size_t len = 0;
    char *buf = read_reply(fd, wait_ms, &len);
    close(fd);
    if (!buf) {
        snprintf(err, errlen, "no answer from %s", admin->text);
        return ADMIN_CLIENT_FAILED;
    }
    char *sep = strstr(buf, "\r\n\r\n");
    if (!sep || sscanf(buf, "HTTP/1.%*d %d", &r->status) != 1) {
        snprintf(err, errlen, "unreadable answer from %s", admin->text);
        free(buf);
        return ADMIN_CLIENT_FAILED;
    }
    /* Keep only the body, in place. */
    size_t off = (size_t)(sep + 4 - buf);
    memmove(buf, buf + off, len - off + 1);
    r->body = buf;
    r->len = len - off;
    return 0;
}

json_t *admin_client_json(const struct sl_addr *admin, const char *method, const char *path, const char *body,
                          int *status, char *err, size_t errlen)
{
    struct admin_reply r = { 0 };
    if (status)
        *status = 0;
    if (admin_client_request(admin, method, path, body, &r, err, errlen) < 0)
        return NULL;
    if (status)
        *status = r.status;
    json_error_t jerr;
    json_t *j = json_loadb(r.body, r.len, 0, &jerr);
    if (!j) {
        snprintf(err, errlen, "the admin API answered %d with something that is not JSON", r.status);
    } else if (r.status >= 400) {
        const char *msg = json_string_value(json_object_get(j, "error"));
        snprintf(err, errlen, "%s (HTTP %d)", msg ? msg : "request failed", r.status);
        json_decref(j);
        j = NULL;
    }
    free(r.body);
    return j;
}
