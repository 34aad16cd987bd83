/* See proto.h. */
#include "proxy/proto.h"

const struct proxy_proto_ops *proxy_proto_of(enum listener_proto proto)
{
    switch (proto) {
    case PROTO_HTTP:
        return &http_proto_ops;
    case PROTO_TCP:
        return &tcp_proto_ops;
    case PROTO_UDP:
        return &udp_proto_ops;
    }
    return NULL;
}
