"""`sluice l4` TUN mode end to end, with `sluice l4 decap` on the reals.

The topology is test_l4_netns.py's (its helpers are imported): a client, the
LB and three reals on one bridge, each in its own network namespace; the
LB and the reals hold the VIP on their loopback, the reals with
arp_ignore=1 / arp_announce=2. The service is `mode: tun`: the LB wraps
each packet in an outer IPv4 or IPv6 header to the real's address (IPIP,
IP6IP6, 4in6 or 6in4, by the families of VIP and real). This kernel has no
ipip module, so each real runs `sluice l4 decap --interface eth0`, which
attaches the decap XDP program (native mode, link pinned on the test's
bpffs) that strips the outer header; the inner packet reaches the VIP on
lo and the real answers the client directly from the VIP. Each real's HTTP
server answers "NAME CLIENT-IP": requests spread over the three reals, and
each sees the client's own address.

The GUE cases run the same with `encapsulation: gue` (the IP packet inside
UDP to l4.gue_port: the default 6080, and 7777 set in the config) and
`sluice l4 decap --gue-port` on the reals.

Needs root, `ip`, native XDP on veth; skips otherwise. Every wait is bounded;
teardown removes every namespace and mount.
"""
import os
import re
import subprocess
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_l4_netns as dr  # noqa: E402  (topology helpers; its tests are collected from its own file)

TUN_SRC4 = "10.99.0.0/24"
TUN_SRC6 = "fd00:99::/96"

# (VIP family, real family, decap counter, GUE port or None): the four
# IP-in-IP encapsulations, and the four in GUE: 4in4 on the default port,
# the others on a port set in the config (over IPv6 with the UDP checksum
# IPv6 requires).
CASES = [
    (4, 4, "decap_ipip", None),
    (6, 6, "decap_ip6ip6", None),
    (4, 6, "decap_4in6", None),
    (6, 4, "decap_6in4", None),
    (4, 4, "decap_gue_4in4", 6080),
    (6, 6, "decap_gue_6in6", 7777),
    (4, 6, "decap_gue_4in6", 7777),
    (6, 4, "decap_gue_6in4", 7777),
]


def real_addr(addr4, fam):
    return addr4 if fam == 4 else "[fd00::%s]" % addr4.split(".")[-1]


class TunL4(dr.L4):
    """`sluice l4 -c` in the LB namespace, with one `mode: tun` service."""

    def __init__(self, topo, vip_fam, real_fam, gue_port=None):
        self.topo = topo
        self.conf = topo.tmp / "l4.yaml"
        self.log_path = topo.tmp / "l4.log"
        self.proc = None
        vip = dr.VIP if vip_fam == 4 else "[%s]" % dr.VIP6
        reals = "".join("        - { address: \"%s:80\", weight: 1 }\n" % real_addr(a, real_fam)
                        for _, a in dr.REALS)
        # GUE: the service says so; a port other than the default is set
        # in l4.gue_port (the default is left implicit).
        port = "  gue_port: %d\n" % gue_port if gue_port not in (None, 6080) else ""
        encap = "      encapsulation: gue\n" if gue_port else ""
        self.conf.write_text("""\
admin:
  listen: 127.0.0.1:%d
l4:
  interfaces: [lb0]
  xdp_mode: native
  seed: 0x5eed1a4b
  tun_source_prefix: %s
  tun_source_prefix6: %s
%s  services:
    - vip: "%s:80"
      protocol: tcp
      mode: tun
%s      scheduler: maglev
      health_check: { type: tcp, interval: 300ms, timeout: 200ms, rise: 2, fall: 2 }
      reals:
%s""" % (dr.ADMIN_PORT, TUN_SRC4, TUN_SRC6, port, vip, encap, reals))


def decap(topo, name, *args):
    """`sluice l4 decap` in real `name`'s namespace, pins on the test's
    bpffs (one directory per real: every real's interface is eth0)."""
    return dr.nsexec(dr.TAG + name, dr.SLUICE_BIN, "l4", "decap", "--interface", "eth0", "--pin-dir",
                     "%s/decap-%s" % (topo.bpffs, name), *args, check=False)


def counter(stats, name):
    m = re.search(r"^\s*%s\s+(\d+) pkts" % name, stats, re.M)
    return int(m.group(1)) if m else -1


# The same namespace topology as the DR tests (reals, switch, LB, client).
topo = dr.topo


@pytest.mark.parametrize("vip_fam,real_fam,kind,gue_port", CASES, ids=[c[2][len("decap_"):] for c in CASES])
def test_l4_tun_end_to_end(topo, vip_fam, real_fam, kind, gue_port):
    for name, _ in dr.REALS:
        out = decap(topo, name, *(["--gue-port", str(gue_port)] if gue_port else []))
        assert out.returncode == 0, out.stderr
        assert "attached to eth0 in native (driver) XDP mode" in out.stdout, out.stdout
        if gue_port:
            assert "IP-in-IP and GUE (UDP port %d)" % gue_port in out.stdout, out.stdout
    l4 = TunL4(topo, vip_fam, real_fam, gue_port).start()
    try:
        vip = dr.VIP if vip_fam == 4 else dr.VIP6
        client = "10.0.0.2" if vip_fam == 4 else "fd00::2"
        bodies = dr.get(30, vip=vip)
        assert len(bodies) == 30 and not any(b.startswith("ERR") for b in bodies), (bodies, l4.read_log())
        assert {dr.real_of(b) for b in bodies} == {"r1", "r2", "r3"}, bodies
        assert all(b.split()[1] == client for b in bodies), bodies
        assert "fwd_tun" in l4.list(), l4.list()
        # Each real decapsulated what it served, with the expected kind.
        for name, _ in dr.REALS:
            out = decap(topo, name, "--stats")
            assert out.returncode == 0, out.stderr
            assert counter(out.stdout, kind) > 0, out.stdout
            assert counter(out.stdout, "pass_malformed") == 0, out.stdout
        # Requests on long-lived connections all through a restart (once
        # per VIP family; the restart does not depend on the encapsulation).
        if kind in ("decap_ipip", "decap_ip6ip6"):
            dr.restart_under_traffic(topo, l4, vip=vip)
    finally:
        assert l4.stop() == 0
    # --detach takes the program off and removes the pins.
    out = decap(topo, "r1", "--detach")
    assert out.returncode == 0 and "detached from eth0" in out.stdout, (out.stdout, out.stderr)
    assert "xdp" not in dr.nsexec(dr.TAG + "r1", "ip", "link", "show", "eth0").stdout
    assert not os.path.exists("%s/decap-r1/eth0" % topo.bpffs)


def test_l4_decap_foreground_and_replace(topo):
    """--foreground holds the program while it runs and detaches on
    SIGTERM; a second persistent attach replaces the program in place."""
    ns = dr.TAG + "r1"
    p = topo.spawn(ns, dr.SLUICE_BIN, "l4", "decap", "-i", "eth0", "--foreground", "--address", "10.0.0.11",
                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    line = p.stdout.readline()   # bounded: the process prints or exits at once
    assert "attached to eth0 in native (driver) XDP mode" in line and "10.0.0.11" in line, line
    assert "sluice_decap" in dr.nsexec(ns, "ip", "link", "show", "eth0").stdout
    p.terminate()
    rest = p.communicate(timeout=10)[0]
    assert p.returncode == 0 and "detached from eth0" in rest, rest
    assert "xdp" not in dr.nsexec(ns, "ip", "link", "show", "eth0").stdout

    assert decap(topo, "r1").returncode == 0
    out = decap(topo, "r1")
    assert out.returncode == 0 and "replaced the program on eth0" in out.stdout, out.stdout
    assert "sluice_decap" in dr.nsexec(ns, "ip", "link", "show", "eth0").stdout
    assert decap(topo, "r1", "--detach").returncode == 0
    out = decap(topo, "r1", "--stats")
    assert out.returncode == 1 and "nothing pinned" in out.stderr, out.stderr


# ---- packet fixtures: the decap program alone, through BPF_PROG_TEST_RUN ----

import ctypes  # noqa: E402
import socket  # noqa: E402
import struct  # noqa: E402

DECAP_OBJ = os.path.join(dr.ROOT, "build", "l4", "decap.bpf.o")
REASONS = ["decap_ipip", "decap_6in4", "decap_ip6ip6", "decap_4in6", "pass_other", "pass_not_ours",
           "pass_unsupported", "pass_malformed", "drop_ecn",
           "decap_gue_4in4", "decap_gue_6in4", "decap_gue_6in6", "decap_gue_4in6"]
XDP_DROP, XDP_PASS = 1, 2
ME4, ME6, OTHER4 = "10.0.0.11", "fd00::11", "10.0.0.12"


class DecapProg:
    """decap.bpf.o loaded through libbpf (ctypes) in this process, run with
    the bpf(2) BPF_PROG_TEST_RUN command."""

    def __init__(self):
        self.lib = lib = ctypes.CDLL("libbpf.so.1", use_errno=True)
        P = ctypes.c_void_p
        for fn, res, args in (("bpf_object__open_file", P, [ctypes.c_char_p, P]),
                              ("bpf_object__load", ctypes.c_int, [P]),
                              ("bpf_object__close", None, [P]),
                              ("bpf_object__find_program_by_name", P, [P, ctypes.c_char_p]),
                              ("bpf_object__find_map_fd_by_name", ctypes.c_int, [P, ctypes.c_char_p]),
                              ("bpf_program__fd", ctypes.c_int, [P]),
                              ("bpf_map_update_elem", ctypes.c_int, [ctypes.c_int, P, P, ctypes.c_uint64]),
                              ("bpf_map_lookup_elem", ctypes.c_int, [ctypes.c_int, P, P]),
                              ("libbpf_num_possible_cpus", ctypes.c_int, [])):
            getattr(lib, fn).restype, getattr(lib, fn).argtypes = res, args
        self.obj = lib.bpf_object__open_file(DECAP_OBJ.encode(), None)
        assert self.obj, "cannot open " + DECAP_OBJ
        assert lib.bpf_object__load(self.obj) == 0, "load failed (errno %d)" % ctypes.get_errno()
        self.prog_fd = lib.bpf_program__fd(lib.bpf_object__find_program_by_name(self.obj, b"sluice_decap"))
        self.addrs_fd = lib.bpf_object__find_map_fd_by_name(self.obj, b"decap_addrs")
        self.stats_fd = lib.bpf_object__find_map_fd_by_name(self.obj, b"decap_stats")
        for a in (ME4, ME6):
            key = ctypes.create_string_buffer(key16(a), 16)
            one = ctypes.c_uint8(1)
            assert lib.bpf_map_update_elem(self.addrs_fd, key, ctypes.byref(one), 0) == 0

    def run(self, frame):
        libc = ctypes.CDLL(None, use_errno=True)
        NR_BPF, BPF_PROG_TEST_RUN = 321, 10
        din = ctypes.create_string_buffer(frame, len(frame))
        dout = ctypes.create_string_buffer(len(frame) + 256)
        attr = ctypes.create_string_buffer(struct.pack("<IIIIQQII", self.prog_fd, 0, len(frame), len(dout),
                                                       ctypes.addressof(din), ctypes.addressof(dout), 1, 0), 80)
        rc = libc.syscall(NR_BPF, BPF_PROG_TEST_RUN, attr, 80)
        assert rc == 0, "BPF_PROG_TEST_RUN: errno %d" % ctypes.get_errno()
        _, retval, _, size_out = struct.unpack_from("<IIII", attr.raw)
        return retval, dout.raw[:size_out]

    def stats(self):
        n = self.lib.libbpf_num_possible_cpus()
        out = {}
        for i, name in enumerate(REASONS):
            key = ctypes.c_uint32(i)
            buf = ctypes.create_string_buffer(16 * n)
            assert self.lib.bpf_map_lookup_elem(self.stats_fd, ctypes.byref(key), buf) == 0
            out[name] = sum(struct.unpack_from("<Q", buf.raw, 16 * c)[0] for c in range(n))
        return out

    def close(self):
        self.lib.bpf_object__close(self.obj)


def key16(addr):
    if ":" in addr:
        return socket.inet_pton(socket.AF_INET6, addr)
    return b"\0" * 10 + b"\xff\xff" + socket.inet_aton(addr)


def csum(b):
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while s >> 16:
        s = (s & 0xffff) + (s >> 16)
    return ~s & 0xffff


def ip4(src, dst, proto, payload, tos=0, frag=0x4000, ihl=5, tot=None, check=None):
    opts = b"\x01" * (4 * (ihl - 5))
    h = struct.pack("!BBHHHBBH4s4s", 0x40 | ihl, tos, tot if tot is not None else 4 * ihl + len(payload),
                    0, frag, 64, proto, 0, socket.inet_aton(src), socket.inet_aton(dst)) + opts
    c = csum(h) if check is None else check
    return h[:10] + struct.pack("!H", c) + h[12:] + payload


def ip6(src, dst, nh, payload, tc=0, plen=None):
    first = (6 << 28) | (tc << 20) | 0x12345
    return struct.pack("!IHBB16s16s", first, len(payload) if plen is None else plen, nh, 64,
                       socket.inet_pton(socket.AF_INET6, src), socket.inet_pton(socket.AF_INET6, dst)) + payload


def tcp(sport=40000, dport=80):
    return struct.pack("!HHIIBBHHH", sport, dport, 1, 0, 0x50, 0x02, 65535, 0x1234, 0) + b"GET"


MACS = b"\x02\0\0\0\0\x0b" + b"\x02\0\0\0\0\x05"


def eth(etype, l3, vlan=None):
    if vlan is not None:
        return MACS + struct.pack("!HHH", 0x8100, vlan, etype) + l3
    return MACS + struct.pack("!H", etype) + l3


INNER4 = ip4("10.0.0.2", "10.0.0.100", 6, tcp(), tos=0)
INNER6 = ip6("fd00::2", "fd00::100", 6, tcp())


def decap_cases():
    """(name, frame, verdict, expected output or None for 'unchanged', reason)."""
    outer4 = lambda inner, proto=4, dst=ME4, **kw: ip4("10.99.0.7", dst, proto, inner, **kw)  # noqa: E731
    outer6 = lambda inner, nh=41, dst=ME6, **kw: ip6("fd00:99::7", dst, nh, inner, **kw)  # noqa: E731
    ecn_inner = ip4("10.0.0.2", "10.0.0.100", 6, tcp(), tos=0x02)   # ECT(0)
    ecn_ce = bytearray(ecn_inner)
    ecn_ce[1] |= 3
    ecn_ce[10:12] = b"\0\0"
    ecn_ce[10:12] = struct.pack("!H", csum(bytes(ecn_ce[:20])))
    inner6_ect = ip6("fd00::2", "fd00::100", 6, tcp(), tc=0x01)     # ECT(1)
    inner6_ce = ip6("fd00::2", "fd00::100", 6, tcp(), tc=0x03)
    pad = b"\0" * 6
    return [
        ("ipip", eth(0x0800, outer4(INNER4)), XDP_PASS, eth(0x0800, INNER4), "decap_ipip"),
        ("6in4", eth(0x0800, outer4(INNER6, proto=41)), XDP_PASS, eth(0x86DD, INNER6), "decap_6in4"),
        ("ip6ip6", eth(0x86DD, outer6(INNER6)), XDP_PASS, eth(0x86DD, INNER6), "decap_ip6ip6"),
        ("4in6", eth(0x86DD, outer6(INNER4, nh=4)), XDP_PASS, eth(0x0800, INNER4), "decap_4in6"),
        ("ipip vlan", eth(0x0800, outer4(INNER4), vlan=7), XDP_PASS, eth(0x0800, INNER4, vlan=7), "decap_ipip"),
        ("ip6ip6 vlan", eth(0x86DD, outer6(INNER6), vlan=7), XDP_PASS, eth(0x86DD, INNER6, vlan=7),
         "decap_ip6ip6"),
        ("ipip ethernet padding", eth(0x0800, outer4(INNER4)) + pad, XDP_PASS, eth(0x0800, INNER4) + pad,
         "decap_ipip"),
        ("ipip outer CE, inner ECT(0)", eth(0x0800, outer4(ecn_inner, tos=3)), XDP_PASS,
         eth(0x0800, bytes(ecn_ce)), "decap_ipip"),
        ("ip6ip6 outer CE, inner ECT(1)", eth(0x86DD, outer6(inner6_ect, tc=3)), XDP_PASS, eth(0x86DD, inner6_ce),
         "decap_ip6ip6"),
        ("ipip outer CE, inner not-ECT", eth(0x0800, outer4(INNER4, tos=3)), XDP_DROP, b"", "drop_ecn"),
        ("ip6ip6 outer CE, inner not-ECT", eth(0x86DD, outer6(INNER6, tc=3)), XDP_DROP, b"", "drop_ecn"),
        ("plain tcp", eth(0x0800, INNER4), XDP_PASS, None, "pass_other"),
        # GUE is off unless --gue-port says otherwise (this program has no
        # port set): UDP carrying an IP packet to 6080 is left alone.
        ("gue, not enabled", eth(0x0800, outer4(struct.pack("!HHHH", 50000, 6080, 8 + len(INNER4), 0) + INNER4,
                                                proto=17)), XDP_PASS, None, "pass_other"),
        ("plain tcp6", eth(0x86DD, INNER6), XDP_PASS, None, "pass_other"),
        ("arp", eth(0x0806, b"\0" * 28), XDP_PASS, None, "pass_other"),
        # (BPF_PROG_TEST_RUN refuses frames shorter than an Ethernet header.)
        ("ethernet header only, IPv4", eth(0x0800, b""), XDP_PASS, None, "pass_malformed"),
        ("vlan tag cut short", MACS + b"\x81\x00\x00", XDP_PASS, None, "pass_other"),
        ("ipip to another host", eth(0x0800, outer4(INNER4, dst=OTHER4)), XDP_PASS, None, "pass_not_ours"),
        ("ip6ip6 to another host", eth(0x86DD, outer6(INNER6, dst="fd00::12")), XDP_PASS, None, "pass_not_ours"),
        ("ipip bad outer checksum", eth(0x0800, outer4(INNER4, check=0x1234)), XDP_PASS, None, "pass_malformed"),
        ("ipip outer length past the frame", eth(0x0800, outer4(INNER4, tot=20 + len(INNER4) + 1)), XDP_PASS, None,
         "pass_malformed"),
        ("ipip outer length below 20", eth(0x0800, outer4(INNER4, tot=19)), XDP_PASS, None, "pass_malformed"),
        ("ipip truncated outer header", eth(0x0800, outer4(INNER4)[:19]), XDP_PASS, None, "pass_malformed"),
        ("ipip inner cut short", eth(0x0800, outer4(INNER4[:12])), XDP_PASS, None, "pass_malformed"),
        ("ipip inner length past the outer", eth(0x0800, outer4(INNER4[:-1])), XDP_PASS, None, "pass_malformed"),
        ("ipip inner is IPv6", eth(0x0800, outer4(INNER6)), XDP_PASS, None, "pass_malformed"),
        ("6in4 inner is IPv4", eth(0x0800, outer4(INNER4, proto=41)), XDP_PASS, None, "pass_malformed"),
        ("ipip outer IHL 4", eth(0x0800, outer4(INNER4)[:0] + bytes([0x44]) + outer4(INNER4)[1:]), XDP_PASS, None,
         "pass_malformed"),
        ("ipip outer options", eth(0x0800, outer4(INNER4, ihl=6)), XDP_PASS, None, "pass_unsupported"),
        ("ipip outer fragment (MF)", eth(0x0800, outer4(INNER4, frag=0x2000)), XDP_PASS, None, "pass_unsupported"),
        ("ipip outer fragment (offset)", eth(0x0800, outer4(INNER4, frag=0x0010)), XDP_PASS, None,
         "pass_unsupported"),
        ("ipv6 hop-by-hop", eth(0x86DD, outer6(b"\x29\0" + b"\0" * 6 + INNER6, nh=0)), XDP_PASS, None,
         "pass_unsupported"),
        ("ip6ip6 payload length past the frame", eth(0x86DD, outer6(INNER6, plen=len(INNER6) + 1)), XDP_PASS, None,
         "pass_malformed"),
        ("ip6ip6 inner length past the outer", eth(0x86DD, outer6(INNER6[:-1])), XDP_PASS, None, "pass_malformed"),
        ("ip6ip6 inner is IPv4", eth(0x86DD, outer6(INNER4)), XDP_PASS, None, "pass_malformed"),
        ("ip6ip6 truncated outer header", eth(0x86DD, outer6(INNER6)[:39]), XDP_PASS, None, "pass_malformed"),
    ]


def test_decap_fixtures():
    if os.geteuid() != 0:
        pytest.skip("needs root (BPF_PROG_TEST_RUN)")
    if not os.path.exists(DECAP_OBJ):
        pytest.skip("%s not built" % DECAP_OBJ)
    prog = DecapProg()
    try:
        want = dict.fromkeys(REASONS, 0)
        failures = []
        for name, frame, verdict, expect, reason in decap_cases():
            before = prog.stats()
            rc, out = prog.run(frame)
            after = prog.stats()
            got = [r for r in REASONS if after[r] != before[r]]
            exp_out = frame if expect is None else expect
            if rc != verdict or (verdict == XDP_PASS and out != exp_out) or got != [reason]:
                failures.append("%s: verdict %d (want %d), reasons %s (want %s), out %s (want %s)"
                                % (name, rc, verdict, got, reason, out.hex(), exp_out.hex()))
            want[reason] += 1
        assert not failures, "\n".join(failures)
        assert prog.stats() == want
    finally:
        prog.close()


BIG_GET = r'''
import http.client, sys
c = http.client.HTTPConnection(sys.argv[1], 80, timeout=10)
c.request("GET", "/", headers={"X-Pad": "a" * 6000})
print(c.getresponse().read().decode().strip())
'''


def test_l4_tun_pmtu_kill_and_drain(topo):
    """IPIP with l4.tun_mtu set to the link's 1500: a request whose
    segments no longer fit once wrapped gets frag-needed back from the LB,
    the client's TCP lowers its segment size and the request goes through
    (path MTU discovery). Then the kill-a-real and drain checks of the
    other modes, in TUN mode."""
    for name, _ in dr.REALS:
        assert decap(topo, name).returncode == 0
    l4 = TunL4(topo, 4, 4)
    l4.conf.write_text(l4.conf.read_text().replace("  services:", "  tun_mtu: 1500\n  services:"))
    l4.start()
    try:
        out = dr.nsexec(dr.NS_C, sys.executable, "-c", BIG_GET, dr.VIP, check=False, timeout=30)
        assert out.returncode == 0 and out.stdout.split()[1:2] == ["10.0.0.2"], (out.stdout, out.stderr)
        listing = l4.list()
        m = re.search(r"icmp_ptb_sent +(\d+) pkts", listing)
        assert m and int(m.group(1)) >= 1, listing
        route = dr.nsexec(dr.NS_C, "ip", "route", "get", dr.VIP).stdout
        assert "mtu 1480" in route, route
        dr.kill_one_drain_another(topo, l4, "10.0.0.2", 80)
    finally:
        assert l4.stop() == 0
