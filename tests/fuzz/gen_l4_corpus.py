#!/usr/bin/env python3
"""Seed corpora for the BPF fuzz targets (tests/fuzz/fuzz_l4_forwarder.c,
tests/fuzz/fuzz_l4_decap.c): one Ethernet frame a file, checksums right.

    python3 tests/fuzz/gen_l4_corpus.py     # rewrites corpus/l4_forwarder,
                                            # corpus/l4_decap

The addresses are the fuzz targets' (and the fixtures') world: VIPs in
192.0.2.0/24 and 2001:db8::/64, reals 10.1.0.x / fd00:1::x (DR, TUN),
10.2.0.x / fd00:2::x port 8080 (NAT), 10.3.0.x (FullNAT), clients
198.51.100.7 and 2001:db8:c::7, GUE port 6080, tun_mtu 1400.
"""
import ipaddress
import os
import shutil
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
LB_MAC = bytes.fromhex("020000000001")
GW_MAC = bytes.fromhex("0200000000fe")
C4, C6 = "198.51.100.7", "2001:db8:c::7"
GUE = 6080


def a(s):
    return ipaddress.ip_address(s).packed


def csum(b):
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def pseudo(src, dst, proto, n):
    if len(src) == 4:
        return src + dst + struct.pack("!BBH", 0, proto, n)
    return src + dst + struct.pack("!IxxxB", n, proto)


def l4(src, dst, proto, hdr, payload, off):
    """hdr with its checksum field at off zeroed; fills it in."""
    seg = bytearray(hdr + payload)
    ph = pseudo(a(src), a(dst), proto, len(seg)) if proto != 1 else b""
    c = csum(ph + bytes(seg))
    if proto == 17 and c == 0:
        c = 0xFFFF
    seg[off:off + 2] = struct.pack("!H", c)
    return bytes(seg)


def tcp(src, dst, sport, dport, flags=0x02, payload=b"", opts=b""):
    h = struct.pack("!HHIIBBHHH", sport, dport, 0x01020304, 0 if flags == 0x02 else 1,
                    (5 + len(opts) // 4) << 4, flags, 0xFFFF, 0, 0) + opts
    return 6, l4(src, dst, 6, h, payload, 16)


def udp(src, dst, sport, dport, payload=b"", zero=False):
    h = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0)
    if zero:
        return 17, h + payload
    return 17, l4(src, dst, 17, h, payload, 6)


def icmp(src, dst, typ, code, rest=b"\0\0\0\0", payload=b""):
    v6 = ":" in dst
    h = struct.pack("!BBH", typ, code, 0) + rest
    proto = 58 if v6 else 1
    return proto, l4(src, dst, proto, h, payload, 2)


def ip(src, dst, seg, tos=0, df=False, ttl=64, ident=0, frag=0, opts=b""):
    proto, body = seg
    if ":" in dst:
        w0 = (6 << 28) | (tos << 20)
        return struct.pack("!IHBB", w0, len(body), proto, ttl) + a(src) + a(dst) + body
    hl = 20 + len(opts)
    h = bytearray(struct.pack("!BBHHHBBH", 0x40 | hl // 4, tos, hl + len(body), ident,
                              (0x4000 if df else 0) | frag, ttl, proto, 0) + a(src) + a(dst) + opts)
    h[10:12] = struct.pack("!H", csum(bytes(h)))
    return bytes(h) + body


def eth(pkt, dst=LB_MAC, src=GW_MAC, vlan=None, tpid=0x8100, et=None, pad=0):
    if et is None:
        et = 0x86DD if pkt[0] >> 4 == 6 else 0x0800
    if vlan is not None:
        l2 = dst + src + struct.pack("!HHH", tpid, vlan, et)
    else:
        l2 = dst + src + struct.pack("!H", et)
    return l2 + pkt + b"\0" * pad


def ipip(outer_src, outer_dst, inner, tos=0):
    proto = 41 if inner[0] >> 4 == 6 else 4
    return ip(outer_src, outer_dst, (proto, inner), tos=tos, df=":" not in outer_dst)


def gue(outer_src, outer_dst, inner, zero=False, tos=0, port=GUE):
    return ip(outer_src, outer_dst, udp(outer_src, outer_dst, 0xC123, port, inner, zero=zero), tos=tos,
              df=":" not in outer_dst)


def data(n):
    return bytes(i % 251 for i in range(n))


def forwarder():
    f = {}
    # DR, TUN, GUE, schedulers: a TCP SYN and a UDP datagram per service.
    for name, vip, port, proto in [
        ("dr4_tcp", "192.0.2.10", 80, 6), ("dr4_udp", "192.0.2.10", 53, 17),
        ("dr6_tcp", "2001:db8::10", 80, 6), ("dr6_udp", "2001:db8::10", 53, 17),
        ("tun4_tcp", "192.0.2.20", 80, 6), ("tun4_udp", "192.0.2.20", 53, 17),
        ("tun6_tcp", "2001:db8::20", 80, 6), ("tun6_udp", "2001:db8::20", 53, 17),
        ("tun_4in6", "192.0.2.50", 443, 6), ("tun_6in4", "2001:db8::50", 443, 6),
        ("gue4_tcp", "192.0.2.100", 80, 6), ("gue4_udp", "192.0.2.100", 53, 17),
        ("gue6_tcp", "2001:db8::100", 80, 6), ("gue6_udp", "2001:db8::100", 53, 17),
        ("gue_4in6", "192.0.2.101", 443, 6), ("gue_6in4", "2001:db8::101", 443, 6),
        ("nat4_tcp_syn", "192.0.2.70", 80, 6), ("nat4_udp", "192.0.2.70", 53, 17),
        ("nat6_tcp_syn", "2001:db8::70", 80, 6), ("nat6_udp", "2001:db8::70", 53, 17),
        ("fnat4_tcp_syn", "192.0.2.80", 80, 6), ("fnat4_udp", "192.0.2.80", 53, 17),
        ("fnat6_tcp_syn", "2001:db8::80", 80, 6), ("fnat6_udp", "2001:db8::80", 53, 17),
        ("sh4_dr", "192.0.2.90", 80, 6), ("sh6_tun", "2001:db8::90", 80, 6),
        ("rr4_dr", "192.0.2.91", 80, 6), ("rr6_udp", "2001:db8::91", 53, 17),
        ("noct", "192.0.2.60", 80, 6), ("dead_real", "192.0.2.40", 80, 6),
        ("bad_mode", "192.0.2.30", 80, 6),
    ]:
        c = C6 if ":" in vip else C4
        seg = tcp(c, vip, 20000, port, payload=data(24)) if proto == 6 else udp(c, vip, 20000, port, data(32))
        f[name] = eth(ip(c, vip, seg, df=True))
    # Flags and shapes on the way in.
    f["dr4_tcp_ack_data"] = eth(ip(C4, "192.0.2.10", tcp(C4, "192.0.2.10", 20000, 80, 0x10, data(100)), df=True))
    f["dr4_tcp_fin"] = eth(ip(C4, "192.0.2.10", tcp(C4, "192.0.2.10", 20000, 80, 0x11)))
    f["dr4_tcp_vlan"] = eth(ip(C4, "192.0.2.10", tcp(C4, "192.0.2.10", 20001, 80)), vlan=42)
    f["dr6_udp_qinq_tpid"] = eth(ip(C6, "2001:db8::10", udp(C6, "2001:db8::10", 20001, 53, data(8))),
                                 vlan=7, tpid=0x88A8)
    f["tun4_tcp_padded"] = eth(ip(C4, "192.0.2.20", tcp(C4, "192.0.2.20", 20002, 80)), pad=6)
    f["gue6_udp_vlan"] = eth(ip(C6, "2001:db8::100", udp(C6, "2001:db8::100", 20002, 53, data(40))), vlan=9)
    f["fnat4_tcp_syn_opts"] = eth(ip(C4, "192.0.2.80", tcp(C4, "192.0.2.80", 20003, 80,
                                                           opts=bytes.fromhex("020405b4010303070402080a"
                                                                              "0000000100000000"))))
    f["fnat6_tcp_syn_full_opts"] = eth(ip(C6, "2001:db8::80", tcp(C6, "2001:db8::80", 20003, 80,
                                                                  opts=b"\x01" * 24)))
    f["nat4_udp_zero_csum"] = eth(ip(C4, "192.0.2.70", udp(C4, "192.0.2.70", 20004, 53, data(16), zero=True)))
    f["nat6_udp_zero_csum"] = eth(ip(C6, "2001:db8::70", udp(C6, "2001:db8::70", 20004, 53, data(16), zero=True)))
    # NAT replies: a real back to the client (matches once the flow exists;
    # Ethernet padding makes them larger, and libFuzzer runs seeds smallest
    # first, so the flows are there when the replies come).
    for r in ("10.2.0.1", "10.2.0.2", "10.2.0.3"):
        f["nat4_reply_" + r] = eth(ip(r, C4, tcp(r, C4, 8080, 20000, 0x12)), src=bytes.fromhex("020000000109"), pad=200)
    f["nat6_reply"] = eth(ip("fd00:2::1", C6, udp("fd00:2::1", C6, 8080, 20000, data(20))), pad=200)
    f["fnat4_reply"] = eth(ip("10.3.0.1", "10.9.0.1", tcp("10.3.0.1", "10.9.0.1", 80, 40000, 0x12)))
    f["fnat6_reply"] = eth(ip("fd00:2::1", "fd00:9::1", udp("fd00:2::1", "fd00:9::1", 53, 25000, data(20))))
    # ICMP: echo, and errors about a flow of a service.
    f["echo4"] = eth(ip(C4, "192.0.2.10", icmp(C4, "192.0.2.10", 8, 0, b"\x12\x34\x00\x01", data(32))))
    f["echo4_zero"] = eth(ip(C4, "192.0.2.70", icmp(C4, "192.0.2.70", 8, 0)))
    f["echo6"] = eth(ip(C6, "2001:db8::10", icmp(C6, "2001:db8::10", 128, 0, b"\x12\x34\x00\x01", data(32))))
    f["echo4_vlan"] = eth(ip(C4, "192.0.2.20", icmp(C4, "192.0.2.20", 8, 0, b"\0\1\0\1", data(8))), vlan=5)
    for name, vip, vport, proto in [("frag_needed_dr4", "192.0.2.10", 80, 6), ("frag_needed_tun4", "192.0.2.20", 80, 6),
                                    ("frag_needed_nat4", "192.0.2.70", 80, 6), ("frag_needed_fnat4", "192.0.2.80", 53, 17),
                                    ("frag_needed_gue4", "192.0.2.100", 80, 6)]:
        seg = tcp(vip, C4, vport, 20000, 0x12, data(40)) if proto == 6 else udp(vip, C4, vport, 20000, data(40))
        quote = ip(vip, C4, seg, df=True)[:28 + 20]
        f[name] = eth(ip("198.51.100.254", vip, icmp("198.51.100.254", vip, 3, 4, b"\0\0\x05\x00", quote)))
    for name, vip, vport in [("ptb6_dr6", "2001:db8::10", 80), ("ptb6_tun6", "2001:db8::20", 80),
                             ("ptb6_nat6", "2001:db8::70", 80), ("ptb6_fnat6", "2001:db8::80", 80)]:
        quote = ip(vip, C6, tcp(vip, C6, vport, 20000, 0x10, data(64)))
        f[name] = eth(ip("2001:db8:c::fe", vip, icmp("2001:db8:c::fe", vip, 2, 0, b"\0\0\x05\x00", quote)))
    # Too big for tun_mtu 1400: frag-needed / packet-too-big back; IPv4
    # without DF dropped.
    f["tun4_too_big_df"] = eth(ip(C4, "192.0.2.20", tcp(C4, "192.0.2.20", 20005, 80, 0x10, data(1360)), df=True))
    f["tun4_too_big_nodf"] = eth(ip(C4, "192.0.2.20", udp(C4, "192.0.2.20", 20005, 53, data(1380))))
    f["tun6_too_big"] = eth(ip(C6, "2001:db8::20", udp(C6, "2001:db8::20", 20005, 53, data(1400))))
    f["gue4_too_big"] = eth(ip(C4, "192.0.2.100", udp(C4, "192.0.2.100", 20005, 53, data(1360)), df=True))
    # The destination MAC's last byte sets tun_mtu in the fuzz target (n:
    # 300 + 5n; 0: no check), bit 0 of its fifth byte tx_ifindex: whole
    # quotes of odd lengths, no MTU check, XDP_REDIRECT.
    small = bytes.fromhex("020000000002")  # tun_mtu 310
    f["tun4_ptb_small_mtu_odd"] = eth(ip(C4, "192.0.2.20", udp(C4, "192.0.2.20", 20007, 53, data(301)), df=True),
                                      dst=small)
    f["tun6_ptb_small_mtu_odd"] = eth(ip(C6, "2001:db8::20", tcp(C6, "2001:db8::20", 20007, 80, 0x10, data(333))),
                                      dst=small)
    f["gue6_ptb_small_mtu"] = eth(ip(C6, "2001:db8::100", udp(C6, "2001:db8::100", 20007, 53, data(271))),
                                  dst=small)
    f["tun4_no_mtu_big"] = eth(ip(C4, "192.0.2.20", tcp(C4, "192.0.2.20", 20008, 80, 0x10, data(1400)), df=True),
                               dst=bytes.fromhex("020000000000"))
    f["dr4_redirect"] = eth(ip(C4, "192.0.2.10", tcp(C4, "192.0.2.10", 20009, 80)), dst=bytes.fromhex("020000000101"))
    f["nat6_redirect"] = eth(ip(C6, "2001:db8::70", tcp(C6, "2001:db8::70", 20009, 80)),
                             dst=bytes.fromhex("020000000101"))
    # Not ours, not understood, malformed.
    f["arp"] = eth(bytes.fromhex("0001080006040001") + LB_MAC + a("192.0.2.1") + bytes(6) + a("192.0.2.10"),
                   et=0x0806)
    f["ip4_options"] = eth(ip(C4, "192.0.2.10", tcp(C4, "192.0.2.10", 20006, 80), opts=b"\x01\x01\x01\x00"))
    f["ip4_frag_first"] = eth(ip(C4, "192.0.2.10", udp(C4, "192.0.2.10", 20006, 53, data(64)), frag=0x2000))
    f["ip6_hbh"] = eth(ip(C6, "2001:db8::10", (0, bytes([17, 0, 1, 4, 0, 0, 0, 0]) +
                                                 udp(C6, "2001:db8::10", 20006, 53, data(8))[1])))
    f["ip4_gre"] = eth(ip(C4, "192.0.2.10", (47, bytes(8))))
    f["not_vip4"] = eth(ip(C4, "192.0.2.99", tcp(C4, "192.0.2.99", 20006, 80)))
    f["not_vip_port"] = eth(ip(C4, "192.0.2.10", tcp(C4, "192.0.2.10", 20006, 81)))
    f["ip4_truncated"] = eth(ip(C4, "192.0.2.10", tcp(C4, "192.0.2.10", 20006, 80)))[:40]
    return f


def decap():
    f = {}
    lb4, lb6 = "172.16.3.4", "fd00:5::1:2"
    in4 = ip(C4, "192.0.2.20", tcp(C4, "192.0.2.20", 20000, 80, payload=data(24)), df=True)
    in6 = ip(C6, "2001:db8::20", udp(C6, "2001:db8::20", 20000, 53, data(24)))
    in4_ect = ip(C4, "192.0.2.20", udp(C4, "192.0.2.20", 20001, 53, data(16)), tos=0x02)
    in6_ect = ip(C6, "2001:db8::20", tcp(C6, "2001:db8::20", 20001, 80), tos=0x01)
    f["ipip"] = eth(ipip(lb4, "10.1.0.1", in4))
    f["6in4"] = eth(ipip(lb4, "10.1.0.2", in6))
    f["ip6ip6"] = eth(ipip(lb6, "fd00:1::1", in6))
    f["4in6"] = eth(ipip(lb6, "fd00:1::2", in4))
    f["ipip_vlan"] = eth(ipip(lb4, "10.1.0.3", in4), vlan=100)
    f["ip6ip6_vlan_8021ad"] = eth(ipip(lb6, "fd00:1::3", in6), vlan=100, tpid=0x88A8)
    f["ipip_padded"] = eth(ipip(lb4, "10.1.0.1", in4), pad=10)
    f["gue_4in4"] = eth(gue(lb4, "10.1.0.1", in4, zero=True))
    f["gue_4in4_csum"] = eth(gue(lb4, "10.1.0.1", in4))
    f["gue_6in4"] = eth(gue(lb4, "10.1.0.2", in6, zero=True))
    f["gue_6in6"] = eth(gue(lb6, "fd00:1::1", in6))
    f["gue_4in6"] = eth(gue(lb6, "fd00:1::2", in4))
    f["gue_6in6_vlan"] = eth(gue(lb6, "fd00:1::3", in6), vlan=3)
    # ECN (RFC 6040): CE onto ECT inner packets; CE onto not-ECT: dropped.
    f["ipip_ce_ect"] = eth(ipip(lb4, "10.1.0.1", in4_ect, tos=0x03))
    f["ip6ip6_ce_ect"] = eth(ipip(lb6, "fd00:1::1", in6_ect, tos=0x03))
    f["gue_4in6_ce_ect"] = eth(gue(lb6, "fd00:1::2", in4_ect, tos=0x03))
    f["ipip_ce_not_ect"] = eth(ipip(lb4, "10.1.0.1", in4, tos=0x03))
    f["gue_6in4_ce_not_ect"] = eth(gue(lb4, "10.1.0.2", in6, tos=0x03))
    # Passed untouched.
    f["ipip_not_ours"] = eth(ipip(lb4, "10.1.0.9", in4))
    f["gue_other_port"] = eth(gue(lb4, "10.1.0.1", in4, port=6081))
    f["gue_variant0"] = eth(gue(lb4, "10.1.0.1", b"\x00\x00\x00\x00" + in4, zero=True))
    f["gue6_zero_csum"] = eth(gue(lb6, "fd00:1::1", in6, zero=True))
    f["ipip_options"] = eth(ip(lb4, "10.1.0.1", (4, in4), opts=b"\x01\x01\x01\x00"))
    f["ipip_fragment"] = eth(ip(lb4, "10.1.0.1", (4, in4), frag=0x2000))
    f["ip6_hbh"] = eth(ip(lb6, "fd00:1::1", (0, bytes([41, 0, 1, 4, 0, 0, 0, 0]) + in6)))
    f["plain_tcp"] = eth(in4)
    f["arp"] = eth(bytes(28), et=0x0806)
    f["ipip_inner_wrong_version"] = eth(ip(lb4, "10.1.0.1", (4, in6)))
    f["ipip_truncated"] = eth(ipip(lb4, "10.1.0.1", in4))[:50]
    return f


def write(name, frames):
    d = os.path.join(HERE, "corpus", name)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    for k, v in sorted(frames.items()):
        with open(os.path.join(d, k), "wb") as fh:
            fh.write(v)
    print("%s: %d frames" % (d, len(frames)))


if __name__ == "__main__":
    write("l4_forwarder", forwarder())
    write("l4_decap", decap())
