/* libFuzzer target for the log output strings (log_sink_parse in
 * src/core/log_sink.c): "syslog:server=...,facility=...", "journald:...".
 * The first byte picks the log (daemon or access), the rest is the
 * string. Beyond "no crash": a string that parses has a facility of 0..23,
 * a tag of 1..32 name characters, a severity that is -1 only for the
 * daemon log, an address of its kind; a refused one says why. A parsed
 * spec then renders a record within the room it is given. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>
#include <time.h>

#include "core/log_sink.h"

#define CHECK(x)                                                                                \
    do {                                                                                        \
        if (!(x)) {                                                                             \
            fprintf(stderr, "fuzz_log_sink: invariant failed at line %d: %s\n", __LINE__, #x); \
            abort();                                                                            \
        }                                                                                       \
    } while (0)

static char record[LOG_SINK_RECORD_MAX];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > 1024)
        return 0;
    enum log_sink_use use = data[0] & 1 ? LOG_SINK_ACCESS : LOG_SINK_DAEMON;
    char s[1024];
    memcpy(s, data + 1, size - 1);
    s[size - 1] = '\0';
    struct log_sink_spec sp;
    char err[256] = "";
    if (log_sink_parse(s, use, &sp, err, sizeof err) < 0) {
        CHECK(err[0] != '\0');
        CHECK(strlen(err) < sizeof err);
        return 0;
    }
    CHECK(log_sink_is_spec(s));
    CHECK(sp.facility >= 0 && sp.facility <= 23);
    size_t tl = strlen(sp.tag);
    CHECK(tl >= 1 && tl <= LOG_SINK_TAG_MAX);
    CHECK(use == LOG_SINK_DAEMON ? sp.severity == -1 : sp.severity >= 0 && sp.severity <= 7);
    if (sp.udp)
        CHECK(sp.addr.ss_family == AF_INET || sp.addr.ss_family == AF_INET6);
    else
        CHECK(sp.addr.ss_family == AF_UNIX && ((struct sockaddr_un *)&sp.addr)->sun_path[0] == '/');
    struct timespec now = { 0, 0 };
    struct log_field f = { "SLUICE_X", s };
    size_t cap = 64 + (size_t)data[0];
    size_t n = log_sink_render(&sp, "host", 1, &now, 6, s, strlen(s), &f, 1, record, cap);
    CHECK(n <= cap);
    return 0;
}
