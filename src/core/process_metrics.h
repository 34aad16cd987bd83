/* The process_* families every Prometheus client library writes
 * (process_cpu_seconds_total, process_resident_memory_bytes,
 * process_virtual_memory_bytes, process_open_fds, process_max_fds,
 * process_start_time_seconds), read from /proc.
 *
 * A daemon of several processes (`sluice proxy`: the master and its
 * workers) is one target to Prometheus, so the families are for all of
 * them: CPU, memory and open descriptors are the sums over the processes
 * given (CPU also counts the first one's reaped children: the workers that
 * exited, so that the counter never goes down); process_max_fds and process_start_time_seconds are the first
 * one's (the master's: the workers inherit its limit, and the start is the
 * daemon's). A process that went away meanwhile counts as nothing.
 */
#ifndef SLUICE_CORE_PROCESS_METRICS_H
#define SLUICE_CORE_PROCESS_METRICS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "lib/strbuf.h"

#define PROCESS_METRICS_MAX_WORKERS 256

struct process_sample {
    double cpu_seconds;      /* user + system */
    double children_cpu_seconds; /* of its reaped children (cutime + cstime) */
    uint64_t rss_bytes;
    uint64_t vsize_bytes;
    uint64_t open_fds;
    uint64_t max_fds;        /* the soft RLIMIT_NOFILE; 0 unknown */
    double start_unix;       /* seconds since the epoch */
};

/* One process from /proc/PID. Returns 0, or -1 when it cannot be read
 * (gone, or not ours to read). */
int process_sample_read(pid_t pid, struct process_sample *out);

/* The six families for pids[0..n) (pids[0] first: see above). */
void process_metrics_emit(struct strbuf *out, const pid_t *pids, size_t n);

#endif
