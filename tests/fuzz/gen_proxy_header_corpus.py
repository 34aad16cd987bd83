#!/usr/bin/env python3
"""Seeds for fuzz_proxy_header (tests/fuzz/corpus/proxy_header).

Each file: one byte choosing the versions accepted (0: v1, 1: v2, 2: any),
then the bytes a client sends first. Run from the repository root."""
import os
import socket
import struct

SIG = b"\r\n\r\n\x00\r\nQUIT\n"
OUT = "tests/fuzz/corpus/proxy_header"


def crc32c(data):
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def tlv(t, v):
    return struct.pack("!BH", t, len(v)) + v


def v2(cmd=1, fam=0x11, addrs=b"", tlvs=b"", crc=False):
    body = addrs + tlvs
    if crc:
        body += tlv(0x03, b"\0\0\0\0")
    hdr = SIG + bytes([0x20 | cmd, fam]) + struct.pack("!H", len(body)) + body
    if crc:
        c = crc32c(hdr)
        hdr = hdr[:-4] + struct.pack("!I", c)
    return hdr


def inet4(src, dst, sp, dp):
    return socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!HH", sp, dp)


def inet6(src, dst, sp, dp):
    return socket.inet_pton(socket.AF_INET6, src) + socket.inet_pton(socket.AF_INET6, dst) + struct.pack("!HH", sp, dp)


ssl = tlv(0x20, b"\x01\0\0\0\0" + tlv(0x21, b"TLSv1.3") + tlv(0x23, b"TLS_AES_128_GCM_SHA256"))
seeds = {
    "v1_tcp4": (0, b"PROXY TCP4 192.0.2.1 198.51.100.2 51234 443\r\nGET / HTTP/1.1\r\n\r\n"),
    "v1_tcp6": (2, b"PROXY TCP6 2001:db8::1 2001:db8::2 1 65535\r\n"),
    "v1_unknown": (0, b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n"),
    "v1_longest": (2, b"PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n"),
    "v1_bad_port": (0, b"PROXY TCP4 192.0.2.1 198.51.100.2 051234 443\r\n"),
    "v1_no_crlf": (0, b"PROXY TCP4 192.0.2.1 198.51.100.2 51234 443\n"),
    "v2_inet": (1, v2(addrs=inet4("192.0.2.1", "198.51.100.2", 51234, 443))),
    "v2_inet6_tlvs": (2, v2(fam=0x21, addrs=inet6("2001:db8::1", "2001:db8::2", 1, 2),
                            tlvs=tlv(1, b"h2") + tlv(2, b"example.com") + tlv(5, b"req-1") + ssl + tlv(4, b"pad"))),
    "v2_crc": (1, v2(addrs=inet4("10.0.0.1", "10.0.0.2", 3, 4), tlvs=tlv(1, b"http/1.1"), crc=True)),
    "v2_local": (1, v2(cmd=0, fam=0)),
    "v2_unix": (2, v2(fam=0x31, addrs=b"/tmp/a".ljust(108, b"\0") + b"/tmp/b".ljust(108, b"\0"))),
    "v2_truncated_tlv": (1, v2(addrs=inet4("10.0.0.1", "10.0.0.2", 3, 4), tlvs=b"\x01\x00\x09ab")),
    "http_request": (2, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"),
    "tls_client_hello": (2, bytes.fromhex("160301002a010000260303") + bytes(32)),
}
os.makedirs(OUT, exist_ok=True)
for name, (accept, data) in seeds.items():
    with open(os.path.join(OUT, name), "wb") as f:
        f.write(bytes([accept]) + data)
