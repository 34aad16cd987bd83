/* See service_notify.h. libsystemd's sd_notify() does the talking: it
 * reads NOTIFY_SOCKET on each call and does nothing when it is unset. */
#include "core/service_notify.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <systemd/sd-daemon.h>
#include <time.h>
#include <unistd.h>

#include "core/log.h"

static pid_t main_pid;

void service_notify_init(void)
{
    main_pid = getpid();
}

/* Only the main process speaks, and a failure to speak is worth a line
 * in the log (systemd would kill a Type=notify unit that never says
 * READY), not a reason to stop serving. */
static void say(const char *msg)
{
    if (main_pid == 0 || getpid() != main_pid)
        return;
    int rc = sd_notify(0, msg);
    if (rc < 0)
        log_warn("cannot notify the service manager (NOTIFY_SOCKET): %s", strerror(-rc));
}

/* STATUS=text on one line: the protocol's messages are newline-separated. */
static void append_status(char *msg, size_t size, const char *text)
{
    size_t len = strlen(msg);
    int n = snprintf(msg + len, size - len, "STATUS=%s", text);
    if (n < 0)
        return;
    for (char *p = msg + len; *p; p++)
        if (*p == '\n' || *p == '\r')
            *p = ' ';
}

void service_notify_ready(const char *status)
{
    char msg[512] = "READY=1\n";
    if (status)
        append_status(msg, sizeof msg, status);
    say(msg);
}

void service_notify_reloading(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    char msg[96];
    snprintf(msg, sizeof msg, "RELOADING=1\nMONOTONIC_USEC=%llu",
             (unsigned long long)ts.tv_sec * 1000000ULL + (unsigned long long)ts.tv_nsec / 1000ULL);
    say(msg);
}

void service_notify_stopping(void)
{
    say("STOPPING=1");
}

void service_notify_status(const char *fmt, ...)
{
    char text[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    char msg[512] = "";
    append_status(msg, sizeof msg, text);
    say(msg);
}
