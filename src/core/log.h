/* Structured logs: "TIME LEVEL [role pid] message key=value ...".
 * One line per event, written with a single write(2) so lines from several
 * processes sharing a file do not interleave. */
#ifndef SLUICE_CORE_LOG_H
#define SLUICE_CORE_LOG_H

#include <sys/types.h>

/* Levels in increasing severity. Not LOG_DEBUG and friends: those are
 * <syslog.h>'s macros. */
enum log_level { LOG_LEVEL_DEBUG, LOG_LEVEL_INFO, LOG_LEVEL_WARN, LOG_LEVEL_ERROR };

/* "debug", "info", "warn", "error", indexed by the enum, NULL-terminated
 * (what log.level spells). */
extern const char *const log_level_names[];
/* One of those, or "unknown". */
const char *log_level_name(enum log_level l);

void log_setup(enum log_level level, const char *file, const char *role);
void log_set_role(const char *role);
/* SIGUSR1: open log.file again by its name (logrotate moved the old one
 * away), and write there from now on. owner: when not (uid_t)-1, the file
 * is handed to that user if it has another owner (a worker that dropped
 * root must be able to reopen it too; nginx does the same). Returns 0, or
 * -1 (logged, the old file kept). Nothing when logging to stderr. */
int log_reopen(uid_t owner);
/* The ownership step of log_reopen for another file (access logs). */
void log_give_file(int fd, uid_t owner);
enum log_level log_get_level(void);
/* The descriptor logs go to (kept open in forked workers). */
int log_fd(void);
int log_parse_level(const char *s, enum log_level *out);

void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_debug(...) do { if (log_get_level() <= LOG_LEVEL_DEBUG) log_msg(LOG_LEVEL_DEBUG, __VA_ARGS__); } while (0)
#define log_info(...) log_msg(LOG_LEVEL_INFO, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_LEVEL_WARN, __VA_ARGS__)
#define log_error(...) log_msg(LOG_LEVEL_ERROR, __VA_ARGS__)

#endif
