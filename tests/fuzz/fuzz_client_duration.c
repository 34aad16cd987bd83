/* libFuzzer target for libsluice's reading of a service's heartbeat
 * interval (cl_duration_ms in src/client/provider.c): the registry writes
 * "300ms", "5s", "1m" or "1h"; anything else must give 0, never a crash or
 * a wrong number.
 *
 * Beyond "no crash", it checks the result against a naive reading: a
 * non-zero result only for digits followed by exactly one of the four
 * units, equal to the digits times the unit when that fits in 32 bits. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client/provider_priv.h"

#define CHECK(x)                                                                                    \
    do {                                                                                            \
        if (!(x)) {                                                                                 \
            fprintf(stderr, "fuzz_client_duration: invariant failed at line %d: %s\n", __LINE__, #x); \
            abort();                                                                                \
        }                                                                                           \
    } while (0)

/* The naive reading: the value in ms, or 0 when it is not a duration or
 * does not fit. */
static uint64_t naive(const char *s)
{
    size_t digits = strspn(s, "0123456789");
    if (digits == 0)
        return 0;
    const char *unit = s + digits;
    uint64_t mul;
    if (strcmp(unit, "ms") == 0)
        mul = 1;
    else if (strcmp(unit, "s") == 0)
        mul = 1000;
    else if (strcmp(unit, "m") == 0)
        mul = 60000;
    else if (strcmp(unit, "h") == 0)
        mul = 3600000;
    else
        return 0;
    uint64_t n = 0;
    for (size_t i = 0; i < digits; i++) {
        n = n * 10 + (uint64_t)(s[i] - '0');
        if (n > UINT32_MAX)
            return 0;
    }
    return n * mul > UINT32_MAX ? 0 : n * mul;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 64)
        return 0;
    char s[65];
    memcpy(s, data, size);
    s[size] = '\0';
    CHECK(cl_duration_ms(s) == naive(s));
    return 0;
}
