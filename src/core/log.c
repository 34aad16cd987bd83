#include "core/log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "core/log_sink.h"

const char *const log_level_names[] = {
    [LOG_LEVEL_DEBUG] = "debug", [LOG_LEVEL_INFO] = "info", [LOG_LEVEL_WARN] = "warn", [LOG_LEVEL_ERROR] = "error",
    NULL,
};

const char *log_level_name(enum log_level l)
{
    return (unsigned)l <= LOG_LEVEL_ERROR ? log_level_names[l] : "unknown";
}

static enum log_level current_level = LOG_LEVEL_INFO;
static int log_fd_value = 2;
static char log_role[16] = "main";
/* log.file names syslog or journald: records go there, not to log_fd_value. */
static struct log_sink *log_sink_out;

/* Switch to the output spec names; false (and the log stays where it was)
 * if it cannot be used. */
static bool setup_sink(const char *spec)
{
    struct log_sink_spec sp;
    char err[256];
    if (log_sink_parse(spec, LOG_SINK_DAEMON, &sp, err, sizeof err) < 0) {
        /* config_load() refused such a value before. */
        log_msg(LOG_LEVEL_ERROR, "log.file %s: %s; the log stays where it was", spec, err);
        return false;
    }
    struct log_sink *s = log_sink_open(&sp);
    if (!s) {
        log_msg(LOG_LEVEL_ERROR, "log.file %s: cannot make a socket: %s; the log stays where it was", spec,
                strerror(errno));
        return false;
    }
    log_sink_close(log_sink_out);
    log_sink_out = s;
    if (log_fd_value > 2)
        close(log_fd_value);
    log_fd_value = 2;
    return true;
}
static char log_path[4096];      /* log.file as last set up; "" = stderr */

void log_setup(enum log_level level, const char *file, const char *role)
{
    current_level = level;
    if (role)
        log_set_role(role);
    if (file && log_sink_is_spec(file)) {
        if (setup_sink(file))
            log_path[0] = '\0'; /* nothing for SIGUSR1 to reopen */
        return;
    }
    if (log_sink_out) {
        /* From syslog or journald back to a file or stderr. */
        log_sink_close(log_sink_out);
        log_sink_out = NULL;
    }
    if (!file || !*file || strcmp(file, "stderr") == 0) {
        /* Back to stderr (a reload may drop log.file). */
        if (log_fd_value > 2)
            close(log_fd_value);
        log_fd_value = 2;
        log_path[0] = '\0';
    } else {
        snprintf(log_path, sizeof log_path, "%s", file);
        int fd = open(file, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        if (fd >= 0) {
            if (log_fd_value > 2)
                close(log_fd_value);
            log_fd_value = fd;
        } else {
            /* config_check_files() refused such a file before; this is a
             * race (the directory went away since). The log stays where
             * it was: stderr at start, the previous file on a reload. */
            log_msg(LOG_LEVEL_ERROR, "cannot open log file %s: %s; the log stays where it was", file, strerror(errno));
        }
    }
}

int log_reopen(uid_t owner)
{
    if (!log_path[0])
        return 0;
    int fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0) {
        int err = errno;
        log_msg(LOG_LEVEL_ERROR, "cannot reopen log file %s: %s; still writing to the old one", log_path,
                strerror(err));
        errno = err;
        return -1;
    }
    log_give_file(fd, owner);
    if (log_fd_value > 2)
        close(log_fd_value);
    log_fd_value = fd;
    return 0;
}

void log_give_file(int fd, uid_t owner)
{
    struct stat st;
    if (owner == (uid_t)-1 || fstat(fd, &st) < 0 || st.st_uid == owner)
        return;
    if (fchown(fd, owner, (gid_t)-1) < 0)
        log_msg(LOG_LEVEL_WARN, "cannot hand a reopened log file to uid %u: %s", (unsigned)owner, strerror(errno));
}

void log_set_role(const char *role)
{
    snprintf(log_role, sizeof log_role, "%s", role);
}

enum log_level log_get_level(void) { return current_level; }

int log_fd(void) { return log_sink_out ? log_sink_fd(log_sink_out) : log_fd_value; }

int log_parse_level(const char *s, enum log_level *out)
{
    for (int i = 0; log_level_names[i]; i++)
        if (strcmp(s, log_level_names[i]) == 0) {
            *out = (enum log_level)i;
            return 0;
        }
    return -1;
}

void log_msg(enum log_level level, const char *fmt, ...)
{
    if (level < current_level)
        return;
    char line[2048];
    if (log_sink_out) {
        /* The output has its own time, host and pid: the role and the text. */
        int n = snprintf(line, sizeof line, "[%s] ", log_role);
        va_list ap;
        va_start(ap, fmt);
        int m = vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
        va_end(ap);
        size_t total = (size_t)n + (m < 0 ? 0 : (size_t)m);
        if (total > sizeof line - 1)
            total = sizeof line - 1;
        struct log_field role = { "SLUICE_ROLE", log_role };
        log_sink_send(log_sink_out, log_sink_severity_of_level(level), line, total, &role, 1);
        return;
    }
    struct timeval tv;
    gettimeofday(&tv, NULL);
    struct tm tm;
    gmtime_r(&tv.tv_sec, &tm);
    int n = snprintf(line, sizeof line, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ %-5s [%s %d] ",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                     tm.tm_sec, (int)(tv.tv_usec / 1000), log_level_names[level], log_role, (int)getpid());
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(line + n, sizeof line - (size_t)n - 1, fmt, ap);
    va_end(ap);
    size_t total = (size_t)n + (m < 0 ? 0 : (size_t)m);
    if (total > sizeof line - 2)
        total = sizeof line - 2;
    line[total++] = '\n';
    ssize_t w = write(log_fd_value, line, total);
    (void)w;
}
