#!/usr/bin/env python3
"""Seed corpora for tests/fuzz/fuzz_dns_wire.c and fuzz_reg_dns.c: one DNS
query a file.

    python3 tests/fuzz/gen_dns_corpus.py     # rewrites corpus/dns_wire, reg_dns and reg_dns_tcp

The dig_* files are queries as dig 9.18 (bind9-dnsutils) sent them to a
UDP socket (dig @127.0.0.1 -p PORT NAME TYPE OPTIONS, captured with
recvfrom). The others are built here: valid ones with options dig does not
send, and malformed ones, one per rule of src/lib/dns_wire.h.
"""
import os
import shutil
import struct

HERE = os.path.dirname(os.path.abspath(__file__))

# dig's queries (hex of the datagram; the comment gives the dig options).
DIG = {
    # svc.sluice.test A (dig's defaults: AD, EDNS 1232, a COOKIE option)
    "dig_a_cookie": "d301012000010000000000010373766306736c756963650474657374000001000100002904d000000000000c000a000869fccce075838ec5",
    # +noedns
    "dig_a_noedns": "3a6a012000010000000000000373766306736c7569636504746573740000010001",
    # AAAA +nocookie
    "dig_aaaa": "a9eb012000010000000000010373766306736c75696365047465737400001c000100002904d0000000000000",
    # _svc._tcp.sluice.test SRV +nocookie
    "dig_srv": "19b301200001000000000001045f737663045f74637006736c756963650474657374000021000100002904d0000000000000",
    # SvC.SLUICE.Test A +nocookie
    "dig_mixed_case": "611d012000010000000000010353764306534c554943450454657374000001000100002904d0000000000000",
    # +subnet=192.0.2.0/24
    "dig_ecs_v4_24": "56b9012000010000000000010373766306736c756963650474657374000001000100002904d000000000000b0008000700011800c00002",
    # +subnet=198.51.96.0/20
    "dig_ecs_v4_20": "13c4012000010000000000010373766306736c756963650474657374000001000100002904d000000000000b0008000700011400c63360",
    # AAAA +subnet=2001:db8:1200::/40
    "dig_ecs_v6_40": "3514012000010000000000010373766306736c75696365047465737400001c000100002904d000000000000d000800090002280020010db812",
    # +subnet=0/0
    "dig_ecs_zero": "00d3012000010000000000010373766306736c756963650474657374000001000100002904d00000000000080008000400010000",
    # +dnssec
    "dig_dnssec": "d981012000010000000000010373766306736c756963650474657374000001000100002904d0000080000000",
    # +edns=1 +noednsneg (BADVERS)
    "dig_edns_v1": "7bdd012000010000000000010373766306736c756963650474657374000001000100002904d0000100000000",
    # sluice.test SOA
    "dig_soa": "18640120000100000000000106736c756963650474657374000006000100002904d0000000000000",
    # sluice.test NS +norecurse
    "dig_ns_norec": "eb630020000100000000000106736c756963650474657374000002000100002904d0000000000000",
    # +opcode=status +noedns (NOTIMP)
    "dig_opcode_status": "ae9c1120000100000000000006736c7569636504746573740000060001",
    # example.com A (outside the zone)
    "dig_outside": "db6f01200001000000000001076578616d706c6503636f6d000001000100002904d0000000000000",
    # . NS +noedns
    "dig_root_ns": "3857012000010000000000000000020001",
}


def name(text):
    out = b""
    for label in text.rstrip(".").split("."):
        if label:
            out += bytes([len(label)]) + label.encode()
    return out + b"\0"


def header(id_=0x1234, flags=0x0100, qd=1, an=0, ns=0, ar=0):
    return struct.pack("!6H", id_, flags, qd, an, ns, ar)


def question(qname="svc.sluice.test", qtype=1, qclass=1):
    return name(qname) + struct.pack("!HH", qtype, qclass)


def opt(udp=1232, ttl=0, options=b""):
    return b"\0" + struct.pack("!HHIH", 41, udp, ttl, len(options)) + options


def option(code, data):
    return struct.pack("!HH", code, len(data)) + data


def ecs(family, source, scope, addr):
    return option(8, struct.pack("!HBB", family, source, scope) + addr)


def query(ids=0x1234, ar=b"", arcount=None, **q):
    return header(ids, ar=(1 if ar else 0) if arcount is None else arcount) + question(**q) + ar


BUILT = {
    # valid
    "ok_a_4096_ecs_v4_32": query(0x21ff, opt(4096, options=ecs(1, 32, 0, bytes([192, 0, 2, 7])))),
    "ok_srv_tcp_many": query(0x31ff, opt(65535), qname="_svc._tcp.sluice.test", qtype=33),
    "ok_ecs_v6_128": query(0x0440, opt(1232, options=ecs(2, 128, 0, bytes(range(16))))),
    "ok_ecs_v4_17": query(0x0450, opt(1232, options=ecs(1, 17, 0, bytes([10, 1, 128])))),
    "ok_unknown_options": query(0x0460, opt(1232, options=option(10, b"12345678") + option(65001, b"") + option(12, bytes(20)))),
    "ok_small_payload": query(0x0470, opt(100)),
    "ok_long_name": query(0x0480, qname=".".join(["a" * 63] * 3 + ["b" * 61])),
    "ok_8bit_label": header(0x0490) + b"\x03a.b\x03\x00\xff\x20\x06sluice\x04test\x00" + struct.pack("!HH", 1, 1),
    "ok_any_class": query(0x04a0, qtype=255, qclass=255),
    # malformed: one rule each
    "bad_short_header": header()[:11],
    "bad_qr_set": header(flags=0x8100) + question(),
    "bad_qdcount_0": header(qd=0),
    "bad_qdcount_2": header(qd=2) + question() + question(),
    "bad_name_cut": header() + b"\x03svc\x06sluice\x04te",
    "bad_name_pointer_self": header() + b"\x03svc\xc0\x0c" + struct.pack("!HH", 1, 1),
    "bad_name_pointer_header": header() + b"\xc0\x02" + struct.pack("!HH", 1, 1),
    "bad_name_pointer_forward": header() + b"\x03svc\xc0\x16" + struct.pack("!HH", 1, 1) + name("sluice.test"),
    "bad_label_type_40": header() + b"\x43svc\x00" + struct.pack("!HH", 1, 1),
    "bad_name_too_long": header() + b"".join(bytes([63]) + b"x" * 63 for _ in range(4)) + b"\0" + struct.pack("!HH", 1, 1),
    "bad_qtype_cut": header() + name("svc.sluice.test") + b"\x00\x01\x00",
    "bad_answer_count": header(an=1) + question() + name("svc.sluice.test") + struct.pack("!HHIH", 1, 1, 0, 4) + bytes(4),
    "bad_authority_count": header(ns=1) + question(),
    "bad_two_opt": query(ar=opt() + opt(), arcount=2),
    "bad_opt_owner": header(ar=1) + question() + b"\xc0\x0c" + struct.pack("!HHIH", 41, 1232, 0, 0),
    "bad_tsig": header(ar=1) + question() + name("key.") + struct.pack("!HHIH", 250, 255, 0, 0),
    "bad_opt_rdlen": header(ar=1) + question() + b"\0" + struct.pack("!HHIH", 41, 1232, 0, 10) + bytes(4),
    "bad_option_cut": query(ar=opt(options=b"\x00\x08\x00")),
    "bad_option_long": query(ar=opt(options=b"\x00\x0a\x00\x09" + bytes(8))),
    "bad_ecs_family": query(ar=opt(options=ecs(3, 8, 0, b"\x0a"))),
    "bad_ecs_source": query(ar=opt(options=ecs(1, 33, 0, bytes(5)))),
    "bad_ecs_scope": query(ar=opt(options=ecs(1, 24, 24, bytes([192, 0, 2])))),
    "bad_ecs_addr_long": query(ar=opt(options=ecs(1, 24, 0, bytes([192, 0, 2, 0])))),
    "bad_ecs_addr_short": query(ar=opt(options=ecs(2, 64, 0, bytes(7)))),
    "bad_ecs_bits": query(ar=opt(options=ecs(1, 20, 0, bytes([198, 51, 100])))),
    "bad_two_ecs": query(ar=opt(options=ecs(1, 8, 0, b"\x0a") + ecs(1, 8, 0, b"\x0a"))),
    "bad_trailing": query(ar=opt()) + b"\x00",
    "notimp_update": header(flags=0x2800) + question(),
    "badvers_2": query(ar=opt(ttl=0x00028000)),
}


# The registry's names (fuzz_reg_dns.c's model: services svc, big, empty in
# sluice.test; subnets 192.0.2.0/24, 198.51.96.0/20, 2001:db8:1200::/40).
REG = {
    "reg_srv_ecs_v4": query(0x5001, opt(1232, options=ecs(1, 20, 0, bytes([198, 51, 96]))), qname="_svc._tcp.sluice.test", qtype=33),
    "reg_srv_big_tcp": query(0x5002, opt(65535), qname="_big._tcp.sluice.test", qtype=33),
    "reg_any_svc": query(0x5003, opt(1232), qname="svc.sluice.test", qtype=255),
    "reg_big_a": query(0x5004, opt(4096), qname="big.sluice.test"),
    "reg_target_v4": query(0x5005, qname="10-0-0-1.svc.sluice.test"),
    "reg_target_v4_disabled": query(0x5006, qname="10-0-0-5.svc.sluice.test"),
    "reg_target_v6": query(0x5007, qname="20010db8000000000000000000000001.SVC.sluice.test", qtype=28),
    "reg_target_bad": query(0x5008, qname="10-0-0-256.svc.sluice.test"),
    "reg_target_dashes": query(0x5009, qname="10--0-1.svc.sluice.test"),
    "reg_ns_name": query(0x500a, qname="ns1.sluice.test"),
    "reg_tcp_ent": query(0x500b, qname="_tcp.sluice.test", qtype=33),
    "reg_empty_aaaa": query(0x500c, opt(1232, options=ecs(2, 40, 0, bytes.fromhex("20010db812"))), qname="empty.sluice.test", qtype=28),
    "reg_svc_txt": query(0x500d, qname="svc.sluice.test", qtype=16),
    "reg_axfr": query(0x500e, qname="sluice.test", qtype=252),
    "reg_class_ch": query(0x500f, qname="version.bind", qtype=16, qclass=3),
    "reg_apex_any": query(0x5010, opt(1232), qname="sluice.test", qtype=255),
}


def write(out, files):
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    for name_, data in files.items():
        with open(os.path.join(out, name_), "wb") as f:
            f.write(data)
    print(f"{len(files)} files in {out}")


def main():
    codec = {n: bytes.fromhex(h) for n, h in DIG.items()}
    codec.update(BUILT)
    write(os.path.join(HERE, "corpus", "dns_wire"), codec)
    write(os.path.join(HERE, "corpus", "reg_dns"), {**codec, **REG})
    write(os.path.join(HERE, "corpus", "reg_dns_tcp"), tcp_streams(codec))


def framed(msg):
    return struct.pack("!H", len(msg)) + msg


def tcp_streams(codec):
    """fuzz_reg_dns_tcp: what a client writes on one connection."""
    big = query(0x6001, opt(65535), qname="svc.sluice.test")
    out = {"one_" + n: framed(m) for n, m in codec.items() if n.startswith("dig_")}
    out.update({
        "pipelined_3": framed(big) + framed(codec["dig_soa"]) + framed(codec["dig_outside"]),
        "pipelined_big_x8": b"".join(framed(query(0x6100 + i, opt(65535), qname="svc.sluice.test")) for i in range(8)),
        "partial_last": framed(codec["dig_soa"]) + framed(big)[:-3],
        "length_only": b"\x00\x20",
        "zero_length_then_query": b"\x00\x00" + framed(codec["dig_soa"]),
        "runt_then_query": framed(b"\x12\x34\x01") + framed(codec["dig_soa"]),
        "response_then_query": framed(codec["bad_qr_set"]) + framed(codec["dig_soa"]),
        "formerr_then_query": framed(codec["bad_qdcount_2"]) + framed(codec["dig_aaaa"]),
        "long_declared": b"\xff\xff" + bytes(100),
    })
    return out


if __name__ == "__main__":
    main()
