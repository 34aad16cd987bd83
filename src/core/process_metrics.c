/* See process_metrics.h. */
#include "core/process_metrics.h"

#include <dirent.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/metrics.h"

/* Seconds since the epoch at which the machine booted (/proc/stat btime). */
static double boot_time(void)
{
    FILE *f = fopen("/proc/stat", "r");
    if (!f)
        return 0;
    char line[256];
    double btime = 0;
    while (fgets(line, sizeof line, f)) {
        unsigned long long v;
        if (sscanf(line, "btime %llu", &v) == 1) {
            btime = (double)v;
            break;
        }
    }
    fclose(f);
    return btime;
}

/* /proc/PID/stat: the fields after the command name, which is in
 * parentheses and may hold spaces and ')' itself: the last ')' ends it. */
static int read_stat(pid_t pid, struct process_sample *out)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *p = strrchr(buf, ')');
    if (!p)
        return -1;
    /* Fields 3.. of proc(5): state ppid pgrp session tty_nr tpgid flags
     * minflt cminflt majflt cmajflt utime(14) stime(15) cutime cstime
     * priority nice num_threads itrealvalue starttime(22) vsize(23) rss(24) */
    unsigned long long utime, stime, start, vsize;
    long long cutime, cstime, rss;
    if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu %lld %lld %*d %*d %*d %*d %llu %llu %lld",
               &utime, &stime, &cutime, &cstime, &start, &vsize, &rss) != 7)
        return -1;
    double hz = (double)sysconf(_SC_CLK_TCK);
    long page = sysconf(_SC_PAGESIZE);
    out->cpu_seconds = (double)(utime + stime) / hz;
    out->children_cpu_seconds = (double)(cutime + cstime) / hz;
    out->start_unix = boot_time() + (double)start / hz;
    out->vsize_bytes = vsize;
    out->rss_bytes = rss > 0 ? (uint64_t)rss * (uint64_t)page : 0;
    return 0;
}

static uint64_t count_fds(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/fd", (int)pid);
    DIR *d = opendir(path);
    if (!d)
        return 0;
    uint64_t n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    /* Our own look at ourselves holds one more: the directory. */
    return pid == getpid() && n ? n - 1 : n;
}

/* The soft "Max open files" of /proc/PID/limits. */
static uint64_t max_fds(pid_t pid)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/limits", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    uint64_t v = 0;
    while (fgets(line, sizeof line, f)) {
        unsigned long long soft;
        if (strncmp(line, "Max open files", 14) == 0 && sscanf(line + 14, "%llu", &soft) == 1) {
            v = soft;
            break;
        }
    }
    fclose(f);
    return v;
}

int process_sample_read(pid_t pid, struct process_sample *out)
{
    memset(out, 0, sizeof *out);
    if (read_stat(pid, out) < 0)
        return -1;
    out->open_fds = count_fds(pid);
    out->max_fds = max_fds(pid);
    return 0;
}

static void sample_seconds(struct strbuf *out, const char *name, const char *type, const char *help, double v)
{
    char text[48];
    snprintf(text, sizeof text, "%.3f", v);
    metrics_family(out, name, type, help);
    metrics_sample_text(out, name, NULL, 0, text);
}

void process_metrics_emit(struct strbuf *out, const pid_t *pids, size_t n)
{
    struct process_sample sum = { 0 }, first = { 0 };
    for (size_t i = 0; i < n; i++) {
        struct process_sample one;
        if (process_sample_read(pids[i], &one) < 0)
            continue;
        if (i == 0) {
            first = one;
            /* Workers that exited and were reaped: their time moved into
             * the master's children's time, so the sum does not go down
             * when a reload retires them. */
            sum.cpu_seconds += one.children_cpu_seconds;
        }
        sum.cpu_seconds += one.cpu_seconds;
        sum.rss_bytes += one.rss_bytes;
        sum.vsize_bytes += one.vsize_bytes;
        sum.open_fds += one.open_fds;
    }
    sample_seconds(out, "process_cpu_seconds_total", "counter",
                   "User and system CPU time spent in seconds (the master and its workers).", sum.cpu_seconds);
    metrics_single(out, "process_resident_memory_bytes", "gauge",
                   "Resident memory size in bytes (the master and its workers).", sum.rss_bytes);
    metrics_single(out, "process_virtual_memory_bytes", "gauge",
                   "Virtual memory size in bytes (the master and its workers).", sum.vsize_bytes);
    metrics_single(out, "process_open_fds", "gauge", "Open file descriptors (the master and its workers).",
                   sum.open_fds);
    metrics_single(out, "process_max_fds", "gauge", "Maximum number of open file descriptors (per process).",
                   first.max_fds);
    sample_seconds(out, "process_start_time_seconds", "gauge",
                   "Start time of the process since the Unix epoch in seconds.", first.start_unix);
}
