/* provider.c's pure helpers, for the unit tests. */
#ifndef SLUICE_CLIENT_PROVIDER_PRIV_H
#define SLUICE_CLIENT_PROVIDER_PRIV_H

#include <stdint.h>

/* A duration as the registry writes one in a service's settings ("300ms",
 * "5s", "1m", "1h"), in milliseconds; 0 when it is not one (or does not
 * fit in 32 bits). */
uint32_t cl_duration_ms(const char *s);

#endif
