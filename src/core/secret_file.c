#include "core/secret_file.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static long fail_closed(int fd, void *buf, size_t cap)
{
    close(fd);
    explicit_bzero(buf, cap);
    return -1;
}

long secret_file_read(const char *path, void *buf, size_t cap, unsigned flags, char *err, size_t errlen)
{
    /* O_NONBLOCK: a FIFO put where the key should be must not hang us. */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0) {
        snprintf(err, errlen, "cannot open %s: %s", path, strerror(errno));
        return -1;
    }
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        snprintf(err, errlen, "%s is not a regular file", path);
        return fail_closed(fd, buf, 0);
    }
    /* Whoever can read a key can forge what it authenticates. */
    if ((flags & SECRET_FILE_PRIVATE) && (st.st_mode & 077)) {
        snprintf(err, errlen, "%s is accessible by group or others (mode %03o): chmod 600 it", path,
                 (unsigned)(st.st_mode & 0777));
        return fail_closed(fd, buf, 0);
    }
    unsigned char *p = buf;
    size_t got = 0;
    while (got < cap) {
        ssize_t r = read(fd, p + got, cap - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            snprintf(err, errlen, "cannot read %s: %s", path, strerror(errno));
            return fail_closed(fd, buf, cap);
        }
        if (r == 0)
            break;
        got += (size_t)r;
    }
    unsigned char more;
    if (got == cap && read(fd, &more, 1) == 1) {
        snprintf(err, errlen, "%s is larger than %zu bytes", path, cap);
        fail_closed(fd, buf, cap);
        return SECRET_FILE_TOO_BIG;
    }
    close(fd);
    return (long)got;
}

size_t secret_first_line(char *buf, size_t len)
{
    buf[len] = '\0';
    char *nl = strpbrk(buf, "\r\n");
    if (nl)
        len = (size_t)(nl - buf);
    while (len && isspace((unsigned char)buf[len - 1]))
        len--;
    buf[len] = '\0';
    return strlen(buf) == len ? len : 0;
}
