#include "lib/addr.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void addr_format(struct sl_addr *a)
{
    char ip[INET6_ADDRSTRLEN];
    addr_ip_string((const struct sockaddr *)&a->ss, ip, sizeof ip);
    if (a->ss.ss_family == AF_INET6)
        snprintf(a->text, sizeof a->text, "[%s]:%u", ip, addr_port(a));
    else
        snprintf(a->text, sizeof a->text, "%s:%u", ip, addr_port(a));
}

static int parse_port(const char *p, uint16_t *port)
{
    if (!*p)
        return -1;
    unsigned long v = 0;
    for (; *p; p++) {
        if (*p < '0' || *p > '9')
            return -1;
        v = v * 10 + (unsigned long)(*p - '0');
        if (v > 65535)
            return -1;
    }
    *port = (uint16_t)v;
    return 0;
}

int addr_parse(const char *s, struct sl_addr *out, const char **why)
{
    char host[128];
    const char *port_str;
    memset(out, 0, sizeof *out);
    if (!s || !*s) {
        *why = "empty address";
        return -1;
    }
    if (s[0] == '[') {
        const char *end = strchr(s, ']');
        if (!end || end[1] != ':' || (size_t)(end - s - 1) >= sizeof host) {
            *why = "expected [IPv6]:PORT";
            return -1;
        }
        memcpy(host, s + 1, (size_t)(end - s - 1));
        host[end - s - 1] = '\0';
        port_str = end + 2;
    } else {
        const char *colon = strrchr(s, ':');
        if (!colon || (size_t)(colon - s) >= sizeof host || colon == s) {
            *why = "expected HOST:PORT";
            return -1;
        }
        memcpy(host, s, (size_t)(colon - s));
        host[colon - s] = '\0';
        port_str = colon + 1;
    }
    uint16_t port;
    if (parse_port(port_str, &port) < 0) {
        *why = "port must be a number from 0 to 65535";
        return -1;
    }
    if (strcmp(host, "localhost") == 0)
        strcpy(host, "127.0.0.1");
    struct sockaddr_in *v4 = (struct sockaddr_in *)&out->ss;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&out->ss;
    if (inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons(port);
        out->len = sizeof *v4;
    } else if (inet_pton(AF_INET6, host, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons(port);
        out->len = sizeof *v6;
    } else {
        *why = "not a numeric IPv4 or IPv6 address";
        return -1;
    }
    addr_format(out);
    return 0;
}

void addr_from_sockaddr(struct sl_addr *out, const struct sockaddr *sa, socklen_t len)
{
    memset(out, 0, sizeof *out);
    if (len > sizeof out->ss)
        len = sizeof out->ss;
    memcpy(&out->ss, sa, len);
    out->len = len;
    addr_format(out);
}

const char *addr_ip_string(const struct sockaddr *sa, char *buf, size_t cap)
{
    if (sa->sa_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, buf, (socklen_t)cap);
    else if (sa->sa_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, buf, (socklen_t)cap);
    else
        snprintf(buf, cap, "unix");
    return buf;
}

uint16_t addr_port(const struct sl_addr *a)
{
    if (a->ss.ss_family == AF_INET6)
        return ntohs(((const struct sockaddr_in6 *)&a->ss)->sin6_port);
    return ntohs(((const struct sockaddr_in *)&a->ss)->sin_port);
}

bool addr_equal(const struct sl_addr *a, const struct sl_addr *b)
{
    return a->len == b->len && strcmp(a->text, b->text) == 0;
}
