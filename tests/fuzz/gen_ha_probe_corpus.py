#!/usr/bin/env python3
"""Seeds for tests/fuzz/fuzz_ha_probe.c: answers to a probe (SYN-ACK, RST)
over IPv4 (with and without IP options) and IPv6, checksums right, a plain
ACK, and the probe's own SYNs. Byte 0 is the fuzz target's selector (bit 0: IPv6)."""
import os
import struct
import sys


def csum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while s >> 16:
        s = (s & 0xffff) + (s >> 16)
    return ~s & 0xffff


def tcp(src, dst, sport, dport, seq, ack, flags, v6):
    hdr = struct.pack("!HHIIBBHHH", sport, dport, seq, ack, 5 << 4, flags, 65535, 0, 0)
    pseudo = src + dst + (struct.pack("!IxxxB", len(hdr), 6) if v6 else struct.pack("!xBH", 6, len(hdr)))
    c = csum(pseudo + hdr)
    return hdr[:16] + struct.pack("!H", c) + hdr[18:]


def ipv4(src, dst, payload, options=b""):
    ihl = 5 + len(options) // 4
    h = struct.pack("!BBHHHBBH4s4s", 0x40 | ihl, 0, 4 * ihl + len(payload), 1, 0x4000, 64, 6, 0, src, dst) + options
    return h[:10] + struct.pack("!H", csum(h)) + h[12:] + payload


def ipv6(src, dst, payload):
    return struct.pack("!IHBB", 0x60000000, len(payload), 6, 64) + src + dst + payload


def main(out):
    os.makedirs(out, exist_ok=True)
    vip4, node4 = bytes([10, 12, 9, 100]), bytes([10, 12, 1, 2])
    vip6 = bytes.fromhex("fd120009000000000000000000000100")
    node6 = bytes.fromhex("fd120001000000000000000000000002")
    seeds = {
        "synack4": b"\0" + ipv4(vip4, node4, tcp(vip4, node4, 80, 61001, 7, 1001, 0x12, False)),
        "rst4": b"\0" + ipv4(vip4, node4, tcp(vip4, node4, 80, 61001, 0, 1001, 0x14, False)),
        "synack4_options": b"\0" + ipv4(vip4, node4, tcp(vip4, node4, 80, 61001, 7, 1001, 0x12, False), b"\1\1\1\1"),
        "ack4": b"\0" + ipv4(vip4, node4, tcp(vip4, node4, 80, 61001, 7, 1001, 0x10, False)),
        "synack6": b"\1" + ipv6(vip6, node6, tcp(vip6, node6, 443, 61999, 7, 1001, 0x12, True)),
        "own_syn4": b"\0" + ipv4(node4, vip4, tcp(node4, vip4, 61001, 80, 7, 0, 0x02, False)),
        "own_syn6": b"\1" + ipv6(node6, vip6, tcp(node6, vip6, 61999, 443, 7, 0, 0x02, True)),
        "rst6_unverified": b"\3" + ipv6(vip6, node6, tcp(vip6, node6, 443, 61999, 0, 1001, 0x14, True)),
    }
    for name, data in seeds.items():
        with open(os.path.join(out, name), "wb") as f:
            f.write(data)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "corpus", "ha_probe"))
