/* The BIRD process: see bird_proc.h. */
#include "ha/bird_proc.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "lib/strbuf.h"
#include "ha/bird_conf.h"
#include "ha/birdc.h"

static void set_err(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(long ms)
{
    struct timespec ts = { ms / 1000, (ms % 1000) * 1000000 };
    nanosleep(&ts, NULL);
}

int bird_proc_router_id(const struct cfg_ha *h, struct in_addr *out, char *err, size_t errlen)
{
    if (h->has_router_id) {
        *out = h->router_id;
        return 0;
    }
    for (size_t i = 0; i < h->n_neighbors; i++) {
        const struct cfg_ha_neighbor *n = &h->neighbors[i];
        if (n->address.family != AF_INET)
            continue;
        if (n->has_source) {
            *out = n->source.u.v4;
            return 0;
        }
        /* connect() on UDP only picks the route and the source address. */
        struct sockaddr_in to = { .sin_family = AF_INET, .sin_port = htons((uint16_t)n->port),
                                  .sin_addr = n->address.u.v4 };
        struct sockaddr_in me;
        socklen_t len = sizeof me;
        int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        int rc = fd < 0 ? -1 : connect(fd, (struct sockaddr *)&to, sizeof to);
        if (rc == 0)
            rc = getsockname(fd, (struct sockaddr *)&me, &len);
        int e = errno;
        if (fd >= 0)
            close(fd);
        if (rc < 0 || me.sin_addr.s_addr == 0) {
            set_err(err, errlen, "ha.router_id: not given, and this host has no route to the neighbor %s (%s): "
                                 "set ha.router_id", n->address.text, rc < 0 ? strerror(e) : "no source address");
            return -1;
        }
        *out = me.sin_addr;
        return 0;
    }
    set_err(err, errlen, "ha.router_id: not given, and no neighbor is an IPv4 address to find it from: "
                         "set ha.router_id");
    return -1;
}

char *bird_proc_render(const struct cfg_ha *h, const char *source, char *err, size_t errlen)
{
    return bird_proc_render_export(h, source, NULL, 0, err, errlen);
}

char *bird_proc_render_export(const struct cfg_ha *h, const char *source, const struct bird_export_priority *ov,
                              size_t n_ov, char *err, size_t errlen)
{
    struct in_addr rid = { 0 };
    if (h->bird.mode == HA_BIRD_MANAGED && bird_proc_router_id(h, &rid, err, errlen) < 0)
        return NULL;
    struct strbuf out = { 0 };
    bird_conf_write_export(h, rid, source, ov, n_ov, &out);
    char *text = strbuf_finish(&out, NULL);
    if (!text)
        set_err(err, errlen, "out of memory");
    return text;
}

/* Create the directory of path when it is missing (one level: /run/sluice). */
static int make_parent(const char *path, char *err, size_t errlen)
{
    char *copy = strdup(path);
    if (!copy) {
        set_err(err, errlen, "out of memory");
        return -1;
    }
    const char *dir = dirname(copy);
    int rc = 0;
    if (mkdir(dir, 0755) < 0 && errno != EEXIST) {
        set_err(err, errlen, "cannot create the directory %s: %s", dir, strerror(errno));
        rc = -1;
    }
    free(copy);
    return rc;
}

int bird_proc_write_file(const char *path, const char *text, size_t len, char *err, size_t errlen)
{
    if (make_parent(path, err, errlen) < 0)
        return -1;
    char tmp[4096];
    if (snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid()) >= (int)sizeof tmp) {
        set_err(err, errlen, "%s: path too long", path);
        return -1;
    }
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        set_err(err, errlen, "cannot write %s: %s", tmp, strerror(errno));
        return -1;
    }
    size_t done = 0;
    while (done < len) {
        ssize_t w = write(fd, text + done, len - done);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            set_err(err, errlen, "cannot write %s: %s", tmp, w < 0 ? strerror(errno) : "short write");
            close(fd);
            unlink(tmp);
            return -1;
        }
        done += (size_t)w;
    }
    if (fsync(fd) < 0 || close(fd) < 0) {
        set_err(err, errlen, "cannot write %s: %s", tmp, strerror(errno));
        unlink(tmp);
        return -1;
    }
    if (rename(tmp, path) < 0) {
        set_err(err, errlen, "cannot rename %s to %s: %s", tmp, path, strerror(errno));
        unlink(tmp);
        return -1;
    }
    return 0;
}

/* In the child, before exec: default signal handling and mask (both are
 * inherited across exec), stdin/stdout on /dev/null, stderr on the pipe,
 * and no other descriptor (the tun device's above all). The daemon may
 * have threads: only async-signal-safe calls between fork and exec. */
static void child_exec(const struct cfg_ha *h, int err_fd, long max_fd)
{
    sigset_t all;
    sigemptyset(&all);
    sigprocmask(SIG_SETMASK, &all, NULL);
    for (int s = 1; s < NSIG; s++)
        signal(s, SIG_DFL);
    int null = open("/dev/null", O_RDWR);
    if (null < 0 || dup2(null, 0) < 0 || dup2(null, 1) < 0 || dup2(err_fd, 2) < 0)
        _exit(127);
    if (syscall(SYS_close_range, 3u, ~0u, 0u) < 0)
        for (long fd = 3; fd < max_fd; fd++)
            close((int)fd);
    char *const argv[] = { h->bird.binary, "-c", h->bird.config_file, "-s", h->bird.control_socket, "-P",
                           h->bird.pid_file, NULL };
    execv(h->bird.binary, argv);
    static const char msg[] = "exec failed\n";
    ssize_t ignored = write(2, msg, sizeof msg - 1);
    (void)ignored;
    _exit(127);
}

/* What BIRD wrote on stderr (its reason for refusing to start), one line. */
static void read_stderr(int fd, char *buf, size_t cap)
{
    size_t len = 0;
    ssize_t got;
    fcntl(fd, F_SETFL, O_NONBLOCK);
    while (len + 1 < cap && (got = read(fd, buf + len, cap - 1 - len)) > 0)
        len += (size_t)got;
    buf[len] = '\0';
    for (char *p = buf; *p; p++)
        if (*p == '\n' || *p == '\r')
            *p = (p[1] ? ' ' : '\0');
}

bool bird_proc_alive(const struct cfg_ha *h)
{
    FILE *f = fopen(h->bird.pid_file, "r");
    if (!f)
        return false;
    long pid = 0;
    int got = fscanf(f, "%ld", &pid);
    fclose(f);
    if (got != 1 || pid <= 0)
        return false;
    return kill((pid_t)pid, 0) == 0 || errno == EPERM;
}

int bird_proc_start(const struct cfg_ha *h, uint32_t timeout_ms, char *err, size_t errlen)
{
    if (access(h->bird.binary, X_OK) < 0) {
        set_err(err, errlen, "cannot run BIRD: %s: %s (install the Debian package %s, or set ha.bird.binary)",
                h->bird.binary, strerror(errno), BIRD_PROC_DEBIAN_PACKAGE);
        return -1;
    }
    if (make_parent(h->bird.control_socket, err, errlen) < 0 || make_parent(h->bird.pid_file, err, errlen) < 0)
        return -1;
    int pipefd[2];
    if (pipe2(pipefd, O_CLOEXEC) < 0) {
        set_err(err, errlen, "pipe: %s", strerror(errno));
        return -1;
    }
    long max_fd = sysconf(_SC_OPEN_MAX);
    if (max_fd < 0 || max_fd > 65536)
        max_fd = 65536;
    pid_t pid = fork();
    if (pid < 0) {
        set_err(err, errlen, "fork: %s", strerror(errno));
        close(pipefd[0]);
        close(pipefd[1]);
        return -1;
    }
    if (pid == 0) {
        close(pipefd[0]);
        child_exec(h, pipefd[1], max_fd);
    }
    close(pipefd[1]);
    int64_t deadline = now_ms() + (timeout_ms ? timeout_ms : BIRD_PROC_START_TIMEOUT_MS);
    /* The process we started exits once BIRD has read the file and forked
     * its daemon (0), or at once when it refused the file (1). */
    int status = 0;
    pid_t w;
    while ((w = waitpid(pid, &status, WNOHANG)) == 0 && now_ms() < deadline)
        sleep_ms(10);
    char msg[1024];
    if (w == 0) {
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
        read_stderr(pipefd[0], msg, sizeof msg);
        close(pipefd[0]);
        set_err(err, errlen, "%s did not finish starting in time%s%s", h->bird.binary, msg[0] ? ": " : "", msg);
        return -1;
    }
    read_stderr(pipefd[0], msg, sizeof msg);
    close(pipefd[0]);
    if (w < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        set_err(err, errlen, "BIRD refused to start (%s %s): %s", h->bird.binary,
                w < 0 ? "could not be waited for"
                      : WIFEXITED(status) ? "exited with an error" : "was killed by a signal",
                msg[0] ? msg : "no message");
        return -1;
    }
    /* The daemon opens its control socket right after forking. */
    char why[256] = "";
    for (;;) {
        struct birdc b;
        if (birdc_open(&b, h->bird.control_socket, 1000, why, sizeof why) == 0) {
            birdc_close(&b);
            return 0;
        }
        if (now_ms() >= deadline)
            break;
        sleep_ms(20);
    }
    set_err(err, errlen, "BIRD started but its control socket does not answer: %s", why);
    return -1;
}

int bird_proc_apply(const struct cfg_ha *h, const char *source, char *err, size_t errlen)
{
    char *text = bird_proc_render(h, source, err, errlen);
    if (!text)
        return -1;
    int rc = bird_proc_apply_text(h, text, err, errlen);
    free(text);
    return rc;
}

int bird_proc_apply_text(const struct cfg_ha *h, const char *text, char *err, size_t errlen)
{
    int rc = bird_proc_write_file(h->bird.config_file, text, strlen(text), err, errlen);
    if (rc < 0)
        return -1;
    struct birdc b;
    char why[512];
    if (birdc_open(&b, h->bird.control_socket, BIRDC_DEFAULT_TIMEOUT_MS, why, sizeof why) == 0) {
        /* Managed: the file BIRD runs is ours; external: the operator's,
         * which includes ours. */
        rc = birdc_configure(&b, h->bird.mode == HA_BIRD_MANAGED ? h->bird.config_file : NULL, err, errlen);
        birdc_close(&b);
        return rc;
    }
    if (h->bird.mode == HA_BIRD_EXTERNAL) {
        set_err(err, errlen, "ha.bird.mode external: %s (is the operator's BIRD running, with this socket?)", why);
        return -1;
    }
    return bird_proc_start(h, BIRD_PROC_START_TIMEOUT_MS, err, errlen);
}
