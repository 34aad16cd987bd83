/* See toa_lookup.h. */
#include "proxy/toa_lookup.h"

#include <errno.h>
#include <linux/bpf.h>
#include <netinet/in.h>
#include <stdint.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "l4/bpf/toa_abi.h"

static long sys_bpf(int cmd, union bpf_attr *attr)
{
    return syscall(__NR_bpf, cmd, attr, sizeof(*attr));
}

int sluice_toa_open(const char *pin_path)
{
    union bpf_attr attr;
    long fd;

    memset(&attr, 0, sizeof(attr));
    attr.pathname = (uint64_t)(uintptr_t)(pin_path ? pin_path : SLUICE_TOA_PIN_DEFAULT);
    attr.file_flags = BPF_F_RDONLY;
    fd = sys_bpf(BPF_OBJ_GET, &attr);
    return fd < 0 ? -errno : (int)fd;
}

/* The map's 16-byte address form: IPv4 v4-mapped (::ffff:a.b.c.d), as an
 * AF_INET6 socket shows an IPv4 peer anyway. */
static int to_key_addr(const struct sockaddr *sa, __be32 addr[4], __be16 *port)
{
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;

        addr[0] = 0;
        addr[1] = 0;
        addr[2] = htonl(0xffff);
        addr[3] = in->sin_addr.s_addr;
        *port = in->sin_port;
        return 0;
    }
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;

        memcpy(addr, &in6->sin6_addr, 16);
        *port = in6->sin6_port;
        return 0;
    }
    return -EINVAL;
}

int sluice_toa_lookup(int map_fd, const struct sockaddr *local, const struct sockaddr *peer,
                      struct sockaddr_storage *client)
{
    struct l4_toa_key k;
    struct l4_toa_val v;
    union bpf_attr attr;

    memset(&k, 0, sizeof(k));
    if (to_key_addr(local, k.laddr, &k.lport) || to_key_addr(peer, k.raddr, &k.rport))
        return -EINVAL;
    memset(&attr, 0, sizeof(attr));
    attr.map_fd = (uint32_t)map_fd;
    attr.key = (uint64_t)(uintptr_t)&k;
    attr.value = (uint64_t)(uintptr_t)&v;
    if (sys_bpf(BPF_MAP_LOOKUP_ELEM, &attr) != 0)
        return -errno;

    memset(client, 0, sizeof(*client));
    if (v.addr[0] == 0 && v.addr[1] == 0 && v.addr[2] == htonl(0xffff)) {
        struct sockaddr_in *in = (struct sockaddr_in *)client;

        in->sin_family = AF_INET;
        in->sin_addr.s_addr = v.addr[3];
        in->sin_port = v.port;
    } else {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)client;

        in6->sin6_family = AF_INET6;
        memcpy(&in6->sin6_addr, v.addr, 16);
        in6->sin6_port = v.port;
    }
    return 0;
}

int sluice_toa_lookup_sock(int map_fd, int sock, struct sockaddr_storage *client)
{
    struct sockaddr_storage local, peer;
    socklen_t ll = sizeof(local), pl = sizeof(peer);

    if (getsockname(sock, (struct sockaddr *)&local, &ll) != 0 ||
        getpeername(sock, (struct sockaddr *)&peer, &pl) != 0)
        return -errno;
    return sluice_toa_lookup(map_fd, (struct sockaddr *)&local, (struct sockaddr *)&peer, client);
}
