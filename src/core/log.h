/* Structured logs: "TIME LEVEL [role pid] message key=value ...".
 * One line per event, written with a single write(2) so lines from several
 * processes sharing a file do not interleave. */
#ifndef SLUICE_CORE_LOG_H
#define SLUICE_CORE_LOG_H

#include "core/config.h"

void log_setup(enum log_level level, const char *file, const char *role);
void log_set_role(const char *role);
enum log_level log_get_level(void);
/* The descriptor logs go to (kept open in forked workers). */
int log_fd(void);
int log_parse_level(const char *s, enum log_level *out);

void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_debug(...) do { if (log_get_level() <= LOG_DEBUG) log_msg(LOG_DEBUG, __VA_ARGS__); } while (0)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARN, __VA_ARGS__)
#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)

#endif
