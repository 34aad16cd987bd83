#!/usr/bin/env python3
"""Seeds for fuzz_h2 (tests/fuzz/corpus/h2): client byte streams after the
preface (byte 0 < 0x80) and HTTP/1 response heads with chunked bodies
(byte 0 >= 0x80). Needs python3-h2's hpack and hyperframe."""
import os
import sys

import hpack
from hyperframe.frame import (ContinuationFrame, DataFrame, HeadersFrame, PingFrame, RstStreamFrame, SettingsFrame,
                              WindowUpdateFrame)

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus", "h2")


def headers(enc, sid, fields, end_stream=True, end_headers=True):
    f = HeadersFrame(sid)
    f.data = enc.encode(fields)
    if end_stream:
        f.flags.add("END_STREAM")
    if end_headers:
        f.flags.add("END_HEADERS")
    return f


def data(sid, payload, end=False):
    f = DataFrame(sid)
    f.data = payload
    if end:
        f.flags.add("END_STREAM")
    return f


def req(path="/", method="GET", extra=()):
    return [(":method", method), (":scheme", "http"), (":path", path), (":authority", "t")] + list(extra)


def conn(*frames, mode=0, pause=0, split=0):
    return bytes([mode, pause, split]) + b"".join(f.serialize() for f in frames)


def seeds():
    e = hpack.Encoder
    yield "get", conn(SettingsFrame(0), headers(e(), 1, req())), 
    yield "post_cl", conn(SettingsFrame(0), headers(e(), 1, req("/p", "POST", [("content-length", "5")]), False),
                          data(1, b"hello", True), pause=0x55, split=20)
    yield "post_chunked", conn(SettingsFrame(0), headers(e(), 1, req("/p", "POST"), False), data(1, b"a" * 100),
                               data(1, b"b" * 10, True), pause=0x0f)
    yield "cookies_host", conn(headers(e(), 1, req("/c", extra=[("cookie", "a=1"), ("host", "t"), ("cookie", "b=2"),
                                                                  ("x-y", "z")])))
    yield "host_differs", conn(headers(e(), 1, req("/c", extra=[("host", "u")])))
    yield "connect", conn(headers(e(), 1, [(":method", "CONNECT"), (":authority", "h:443")]))
    yield "big_header", conn(headers(e(), 1, req(extra=[("x-big", "v" * 2000)])), mode=1)
    yield "uppercase", conn(headers(e(), 1, req(extra=[("X-Up", "1")])))
    yield "te", conn(headers(e(), 1, req(extra=[("te", "trailers"), ("connection", "close")])))
    enc = e()
    block = enc.encode(req(extra=[("x-%d" % i, "v" * 20) for i in range(10)]))
    h = HeadersFrame(1)
    h.data = block[:20]
    h.flags.add("END_STREAM")
    c1, c2 = ContinuationFrame(1), ContinuationFrame(1)
    c1.data, c2.data = block[20:60], block[60:]
    c2.flags.add("END_HEADERS")
    yield "continuation", conn(h, c1, c2, mode=1)
    yield "pings", conn(*[PingFrame(0, opaque_data=b"%08d" % i) for i in range(6)], mode=1)
    yield "settings", conn(*[SettingsFrame(0) for _ in range(6)], mode=1)
    yield "resets", conn(*sum(([headers(e(), 1 + 2 * i, req()), RstStreamFrame(1 + 2 * i, error_code=8)]
                               for i in range(5)), []), mode=1)
    yield "empty_data", conn(headers(e(), 1, req("/e", "POST"), False), *[data(1, b"") for _ in range(5)], mode=1)
    yield "window", conn(WindowUpdateFrame(0, window_increment=1000), headers(e(), 1, req()))
    yield "many_streams", conn(*[headers(e(), 1 + 2 * i, req("/s%d" % i)) for i in range(4)], mode=1)
    yield "resp_plain", bytes([0x80, 3, 0]) + b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc"
    yield "resp_chunked", bytes([0x80, 2, 0]) + (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-A: b\r\n\r\n"
                                                 b"5;ext=1\r\nhello\r\n1\r\n!\r\n0\r\nTrailer: x\r\n\r\n")
    yield "resp_interim", bytes([0x80, 5, 0]) + b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"


def main():
    os.makedirs(OUT, exist_ok=True)
    for name, blob in seeds():
        with open(os.path.join(OUT, name), "wb") as f:
            f.write(blob)
    print("wrote %s" % OUT, file=sys.stderr)


if __name__ == "__main__":
    main()
