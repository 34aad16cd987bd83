/* Access logs to syslog or journald (listeners[].access_log: syslog...,
 * journald...; core/log_sink.h). The line is the one the format makes
 * for a file, without its newline; journald records also carry the
 * entry's fields, for journalctl's field matches:
 *
 *   SLUICE_LISTENER, SLUICE_CLIENT, SLUICE_STATUS, SLUICE_REQUEST,
 *   SLUICE_HOST, SLUICE_UPSTREAM, SLUICE_BYTES_SENT, SLUICE_DURATION_US,
 *   SLUICE_REASON (an answer of Sluice's own), SLUICE_TLS_VERSION, SLUICE_SNI
 *
 * (each only when the entry has it). */
#ifndef SLUICE_PROXY_ACCESS_LOG_SINK_H
#define SLUICE_PROXY_ACCESS_LOG_SINK_H

#include <stddef.h>

#include "core/log_sink.h"

struct access_entry;

/* The output for an access_log value that log_sink_is_spec(), or NULL
 * (reported in the log). */
struct log_sink *access_log_sink_open(const char *spec);

/* Send one entry's line (len bytes, a trailing newline is dropped). */
void access_log_sink_send(struct log_sink *s, const struct access_entry *e, const char *line, size_t len);

/* The journald fields of e into fields (room for ACCESS_LOG_SINK_FIELDS),
 * numbers written in nums; returns how many. Exposed for tests. */
#define ACCESS_LOG_SINK_FIELDS 12
size_t access_log_sink_fields(const struct access_entry *e, struct log_field *fields, char nums[3][24]);

#endif
