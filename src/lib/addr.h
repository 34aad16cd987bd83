/* Socket addresses: parse "host:port" / "[v6]:port", format, compare. */
#ifndef SLUICE_LIB_ADDR_H
#define SLUICE_LIB_ADDR_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

struct sl_addr {
    struct sockaddr_storage ss;
    socklen_t len;
    char text[64]; /* canonical "1.2.3.4:80" or "[::1]:80" */
};

/* Parse "1.2.3.4:80", "[::1]:80" or "localhost:80" (numeric only, plus the
 * name "localhost" meaning 127.0.0.1). Returns 0, or -1 with *why set. */
int addr_parse(const char *s, struct sl_addr *out, const char **why);

/* Fill out from a kernel sockaddr. */
void addr_from_sockaddr(struct sl_addr *out, const struct sockaddr *sa, socklen_t len);

/* The IP part only, no port, into buf (INET6_ADDRSTRLEN is enough). */
const char *addr_ip_string(const struct sockaddr *sa, char *buf, size_t cap);

bool addr_equal(const struct sl_addr *a, const struct sl_addr *b);
uint16_t addr_port(const struct sl_addr *a);

#endif
