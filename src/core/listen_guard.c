/* See listen_guard.h. */
#include "core/listen_guard.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_INODES 64

/* Bind a socket without SO_REUSEPORT: 0 free, 1 EADDRINUSE, -1 other. */
static int probe_bind(const struct sl_addr *addr, bool udp, char *err, size_t errlen)
{
    int fd = socket(addr->ss.ss_family, (udp ? SOCK_DGRAM : SOCK_STREAM) | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(err, errlen, "socket: %s", strerror(errno));
        return -1;
    }
    int one = 1;
    if (!udp)
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (addr->ss.ss_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    int rc = bind(fd, (const struct sockaddr *)&addr->ss, addr->len);
    int e = errno;
    close(fd);
    if (rc == 0)
        return 0;
    if (e == EADDRINUSE)
        return 1;
    snprintf(err, errlen, "cannot bind %s: %s", addr->text, strerror(e));
    return -1;
}

bool listen_guard_clashes(const char *local, const struct sl_addr *addr)
{
    const char *colon = strrchr(local, ':');
    if (!colon || strtoul(colon + 1, NULL, 16) != addr_port(addr))
        return false;
    unsigned char bound[16], want[16], any[16] = { 0 };
    size_t n = addr->ss.ss_family == AF_INET6 ? 16 : 4;
    if ((size_t)(colon - local) != 2 * n)
        return false;
    /* Each 32-bit word is printed as the host-order number it holds. */
    for (size_t w = 0; w < n / 4; w++) {
        char word[9];
        memcpy(word, local + 8 * w, 8);
        word[8] = '\0';
        uint32_t v = (uint32_t)strtoul(word, NULL, 16);
        memcpy(bound + 4 * w, &v, 4);
    }
    if (n == 16)
        memcpy(want, &((const struct sockaddr_in6 *)&addr->ss)->sin6_addr, 16);
    else
        memcpy(want, &((const struct sockaddr_in *)&addr->ss)->sin_addr, 4);
    return !memcmp(bound, want, n) || !memcmp(bound, any, n) || !memcmp(want, any, n);
}

/* The inodes of the sockets in /proc/net/FILE that clash with addr (TCP:
 * listening ones only). */
static size_t clashing_inodes(const char *file, const struct sl_addr *addr, bool tcp, unsigned long *inodes,
                              size_t cap)
{
    char path[64], line[512];
    size_t n = 0;
    snprintf(path, sizeof path, "/proc/net/%s", file);
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    if (!fgets(line, sizeof line, f)) { /* the header */
        fclose(f);
        return 0;
    }
    while (n < cap && fgets(line, sizeof line, f)) {
        char local[64];
        unsigned st;
        unsigned long inode;
        /* sl local rem st tx:rx tr:when retrnsmt uid timeout inode */
        if (sscanf(line, " %*d: %63s %*s %x %*s %*s %*s %*u %*u %lu", local, &st, &inode) != 3)
            continue;
        if (inode == 0 || (tcp && st != 0x0A) || !listen_guard_clashes(local, addr))   /* 0x0A: TCP_LISTEN */
            continue;
        inodes[n++] = inode;
    }
    fclose(f);
    return n;
}

static pid_t parent_of(pid_t pid)
{
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *p = strrchr(buf, ')');
    int ppid = 0;
    if (p)
        sscanf(p + 2, "%*c %d", &ppid);
    return ppid;
}

/* Whether pid holds one of the socket inodes. */
static bool holds_inode(pid_t pid, const unsigned long *inodes, size_t n)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/fd", (int)pid);
    DIR *d = opendir(path);
    if (!d)
        return false;
    bool found = false;
    struct dirent *e;
    while (!found && (e = readdir(d))) {
        char target[64];
        if (e->d_name[0] == '.')
            continue;
        ssize_t len = readlinkat(dirfd(d), e->d_name, target, sizeof target - 1);
        if (len <= 0)
            continue;
        target[len] = '\0';
        unsigned long inode;
        if (sscanf(target, "socket:[%lu]", &inode) != 1)
            continue;
        for (size_t i = 0; i < n && !found; i++)
            found = inodes[i] == inode;
    }
    closedir(d);
    return found;
}

/* The first process other than us and our children holding one of the
 * inodes; 0 when none is found (and *ours set when we or a child do). */
static pid_t find_owner(const unsigned long *inodes, size_t n, bool *ours)
{
    pid_t self = getpid(), owner = 0;
    *ours = false;
    DIR *proc = opendir("/proc");
    if (!proc)
        return 0;
    struct dirent *e;
    while ((e = readdir(proc))) {
        char *end;
        long pid = strtol(e->d_name, &end, 10);
        if (*end || pid <= 0 || !holds_inode((pid_t)pid, inodes, n))
            continue;
        if (pid == self || parent_of((pid_t)pid) == self) {
            *ours = true;
            continue;
        }
        owner = (pid_t)pid;
        break;
    }
    closedir(proc);
    return owner;
}

static void process_name(pid_t pid, char *out, size_t cap)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/comm", (int)pid);
    FILE *f = fopen(path, "r");
    out[0] = '\0';
    if (f) {
        if (fgets(out, (int)cap, f))
            out[strcspn(out, "\n")] = '\0';
        fclose(f);
    }
}

int listen_guard_check(const struct sl_addr *addr, bool udp, pid_t *owner, char *err, size_t errlen)
{
    *owner = 0;
    int rc = probe_bind(addr, udp, err, errlen);
    if (rc <= 0)
        return rc;
    unsigned long inodes[MAX_INODES];
    bool v6 = addr->ss.ss_family == AF_INET6;
    size_t n = clashing_inodes(udp ? (v6 ? "udp6" : "udp") : (v6 ? "tcp6" : "tcp"), addr, !udp, inodes, MAX_INODES);
    if (n == 0)
        return 0;   /* no listener holds it (a connection's port): the bind itself will tell */
    bool ours;
    *owner = find_owner(inodes, n, &ours);
    if (!*owner && ours)
        return 0;   /* our own sockets (a reload, draining workers) */
    if (*owner) {
        char name[32];
        process_name(*owner, name, sizeof name);
        snprintf(err, errlen, "%s is already served by pid %d (%s)", addr->text, (int)*owner,
                 name[0] ? name : "?");
    } else {
        snprintf(err, errlen, "%s is already in use by another process", addr->text);
    }
    return 1;
}
