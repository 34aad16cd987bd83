/* The cache and failover directories.
 *
 * File format (both directories; one file per service, NAME.json, where
 * NAME is the registry's service name): a JSON object, the registry's own
 * answer to GET /api/registry/services/NAME or a subset of it, so an
 * operator may copy a cache file, or save that answer with curl, into the
 * failover directory:
 *
 *   {
 *     "name": "web",                       required: the service's name
 *     "modify_index": 42,                  optional: the registry's index of that list
 *     "node": "10.0.0.11:9950",            optional: the registry node it came from
 *     "settings": {                        optional, each member optional:
 *       "protect_threshold": 0.5,            0..1, default 0 (off)
 *       "locality": {"min_healthy": 1,       default 1
 *                    "min_healthy_ratio": 0},  0..1, default 0
 *       "dns_ttl": 5, "answer_count": 1      defaults 5 and 1
 *     },
 *     "instances": [                       required (may be empty):
 *       {"id": "web-1",                      required, 1..128 characters, unique
 *        "address": "10.0.0.21",             required, an IPv4 or IPv6 literal
 *        "port": 8080,                       required, 1..65535
 *        "weight": 100,                      0..10000, default 100 (0: never picked)
 *        "enabled": true,                    default true (false: never picked)
 *        "health": "up",                     "up" or "down", default "up"
 *        "datacenter": "dc1", "region": "r1"}  default "" (no locality)
 *     ]
 *   }
 *
 * Other members (the registry's "index", "labels", "owner", ...) are
 * allowed and ignored. A file that does not parse, names another service
 * or holds a bad instance is not used (logged), and the list in use stays.
 *
 * Cache writes are atomic: a temporary file in the same directory, written
 * and fsync()ed, renamed over NAME.json, then the directory fsync()ed, so a
 * crash leaves the old file or the new one, never a torn one.
 *
 * Failover: while FAILOVER_DIR/switch exists (checked by the watcher at
 * most once a second), a service with FAILOVER_DIR/NAME.json takes that
 * list (source SLUICE_SOURCE_FAILOVER) and the registry's answers wait
 * behind it (still applied to the cache); when the switch goes, the
 * registry's list is back at the watcher's next turn. */
#include "client/client_priv.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CL_FILE_MAX (64u << 20)

/* The whole file, terminated; NULL (errno set) when missing or unreadable. */
static char *read_file(const char *path, size_t *len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return NULL;
    struct stat st;
    char *buf = NULL;
    if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size >= 0 && (uint64_t)st.st_size < CL_FILE_MAX)
        buf = malloc((size_t)st.st_size + 1);
    size_t n = 0;
    while (buf && n < (size_t)st.st_size) {
        ssize_t r = read(fd, buf + n, (size_t)st.st_size - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        n += (size_t)r;
    }
    close(fd);
    if (!buf) {
        errno = EINVAL;
        return NULL;
    }
    buf[n] = '\0';
    *len = n;
    return buf;
}

static int write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Write text to dir/name atomically (see the top). 0, or -1 with errno. */
static int write_atomic(const char *dir, const char *name, const char *text)
{
    char tmp[PATH_MAX], path[PATH_MAX];
    if (snprintf(tmp, sizeof tmp, "%s/.%s.XXXXXX", dir, name) >= (int)sizeof tmp ||
        snprintf(path, sizeof path, "%s/%s", dir, name) >= (int)sizeof path) {
        errno = ENAMETOOLONG;
        return -1;
    }
    int fd = mkstemp(tmp);
    if (fd < 0)
        return -1;
    int saved;
    if (fchmod(fd, 0644) < 0 || write_all(fd, text, strlen(text)) < 0 || fsync(fd) < 0)
        goto fail;
    if (close(fd) < 0) {
        fd = -1;
        goto fail;
    }
    fd = -1;
    if (rename(tmp, path) < 0)
        goto fail;
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0)
        return -1;
    int rc = fsync(dfd);
    close(dfd);
    return rc;
fail:
    saved = errno;
    if (fd >= 0)
        close(fd);
    unlink(tmp);
    errno = saved;
    return -1;
}

int cl_cache_write(sluice_service *s, const char *node)
{
    sluice_client *c = s->c;
    if (!c->cache_dir || !s->base)
        return 0;
    char name[80];
    snprintf(name, sizeof name, "%s.json", s->name);
    char *text = cl_doc_format(s->base, node);
    if (!text || write_atomic(c->cache_dir, name, text) < 0) {
        int e = text ? errno : ENOMEM;
        free(text);
        atomic_fetch_add(&c->st.cache_write_errors, 1);
        cl_log_limited(c, &s->warn_invalid, SLUICE_LOG_WARN, "service %s: writing the cache %s/%s: %s", s->name,
                       c->cache_dir, name, strerror(e));
        return -1;
    }
    free(text);
    atomic_fetch_add(&c->st.cache_writes, 1);
    return 0;
}

/* dir/NAME.json parsed and checked to be the service's; NULL when missing
 * (quietly) or invalid (logged as `what`). */
static struct cl_doc *read_doc(sluice_service *s, const char *dir, const char *what, struct cl_ratelimit *rl,
                               bool *missing)
{
    *missing = false;
    char path[PATH_MAX];
    if (snprintf(path, sizeof path, "%s/%s.json", dir, s->name) >= (int)sizeof path)
        return NULL;
    size_t len = 0;
    char *text = read_file(path, &len);
    if (!text) {
        *missing = errno == ENOENT;
        if (errno != ENOENT)
            cl_log_limited(s->c, rl, SLUICE_LOG_WARN, "service %s: %s file %s: %s", s->name, what, path,
                           strerror(errno));
        return NULL;
    }
    char err[256] = "";
    struct cl_doc *d = cl_doc_parse(text, len, err, sizeof err);
    free(text);
    if (d && strcasecmp(d->name, s->name) != 0) {
        snprintf(err, sizeof err, "name: \"%s\", not this service", d->name);
        cl_doc_free(d);
        d = NULL;
    }
    if (!d)
        cl_log_limited(s->c, rl, SLUICE_LOG_WARN, "service %s: %s file %s not used: %s", s->name, what, path, err);
    return d;
}

int cl_cache_load(sluice_service *s)
{
    sluice_client *c = s->c;
    if (!c->cache_dir)
        return -1;
    bool missing;
    struct cl_doc *d = read_doc(s, c->cache_dir, "cache", &s->warn_invalid, &missing);
    if (!d)
        return -1;
    cl_doc_free(s->base);
    s->base = d;
    s->base_source = SLUICE_SOURCE_CACHE;
    /* The node and index the list came from: an empty answer of that node
     * past that index is believed at once (doc.h, rule b). */
    if (d->node[0] && d->n > 0) {
        s->trust.have = true;
        cl_copy(s->trust.node, sizeof s->trust.node, d->node);
        s->trust.modify_index = d->modify_index;
    }
    atomic_fetch_add(&c->st.cache_loads, 1);
    cl_log(c, SLUICE_LOG_INFO, "service %s: %zu instances from the cache", s->name, d->n);
    return 0;
}

bool cl_failover_active(sluice_client *c)
{
    if (!c->failover_dir)
        return false;
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/switch", c->failover_dir);
    return access(path, F_OK) == 0;
}

struct cl_doc *cl_failover_read(sluice_service *s, bool *missing)
{
    return read_doc(s, s->c->failover_dir, "failover", &s->warn_failover, missing);
}
