"""`sluice l4` end to end: real TCP through the XDP forwarder in DR mode.

Topology (all in network namespaces this test creates and removes):

    client 10.0.0.2 --+
    lb     10.0.0.5 --+-- bridge (in its own "switch" namespace)
    r1..r3 10.0.0.11-13

The LB holds the VIP 10.0.0.100 on its loopback (so its kernel answers ARP
for it); each real holds the VIP on its loopback too, with arp_ignore=1 and
arp_announce=2 so that only the LB answers ARP for it. `sluice l4` runs in
the LB namespace with XDP in native mode on the LB's veth. Each real runs a
small HTTP/1.1 server that answers "NAME CLIENT-IP". DR keeps the client's
address, and replies go from the real straight to the client.

Needs root, `ip`, and a kernel with native XDP on veth; skips otherwise.
Every wait is bounded; every namespace and mount is removed at teardown.
"""
import glob
import json
import os
import re
import select
import signal
import subprocess
import sys
import time

import pytest

import metrics_doc
from netns_tools import ETHTOOL_STXCSUM, NetnsLab, ethtool_set, l4_detach, missing_tools, nsexec, sh  # noqa: F401

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# XDP needs root and the release binary is what operators run; ASan would
# also work but is slow to start.
SLUICE_BIN = os.environ.get("SLUICE_L4_BIN", os.path.join(ROOT, "build", "sluice"))

TAG = "sl4t%d" % (os.getpid() % 10000)   # unique per run: parallel runs do not collide
NS_SW, NS_C, NS_LB = TAG + "sw", TAG + "c", TAG + "lb"
REALS = [("r1", "10.0.0.11"), ("r2", "10.0.0.12"), ("r3", "10.0.0.13")]
VIP = "10.0.0.100"
VIP6 = "fd00::100"
NAT_CLIENT = "10.9.0.2"      # the client's address in the NAT test (off the reals' subnet)
LOCAL_ADDR = "10.0.0.50"     # the LB's FullNAT local address
NAT_CLIENT6, LOCAL_ADDR6 = "fd09::2", "fd00::50"
ADMIN_PORT = 9931

SERVER = r'''
import http.server, socket, socketserver, sys
name = sys.argv[1]
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        client = self.client_address[0]
        client = client[7:] if client.startswith("::ffff:") else client
        xff = self.headers.get("X-Forwarded-For")
        body = ("%s %s%s\n" % (name, client, " " + xff if xff else "")).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
class S(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    address_family = socket.AF_INET6
    def server_bind(self):
        self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)   # IPv4 too
        super().server_bind()
S(("::", int(sys.argv[2]) if len(sys.argv) > 2 else 80), H).serve_forever()
'''

# A keep-alive client: one TCP connection to the VIP; each line "go" on
# stdin sends one GET on it and prints the body (or "ERR ...").
KEEPALIVE_CLIENT = r'''
import http.client, sys
c = http.client.HTTPConnection(sys.argv[1], 80, timeout=5)
for line in sys.stdin:
    try:
        c.request("GET", "/")
        print(c.getresponse().read().decode().strip(), flush=True)
    except Exception as e:
        print("ERR %r" % (e,), flush=True)
'''


# Long-lived connections for a restart under traffic: argv VIP, N, BOUND.
# Opens N keep-alive connections to VIP:80, asks once on each and prints
# "READY body|body|...". Then sends one request on every connection per
# round ("ROUND r" after each), until a line "stop" on stdin or BOUND
# seconds, and prints "DONE rounds=R" and one "ERR ..." line per failure: a
# request not answered, or answered by another real than the first time. A
# connection that failed is not used again and never reopened (a reset
# must show).
RESTART_PROBE = r'''
import re, select, socket, sys, time
vip, n, bound = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
def ask(s):
    s.sendall(b"GET / HTTP/1.1\r\nHost: vip\r\n\r\n")
    buf = b""
    while b"\r\n\r\n" not in buf or len(buf.partition(b"\r\n\r\n")[2]) < int(
            re.search(rb"Content-Length: (\d+)", buf).group(1)):
        chunk = s.recv(4096)
        if not chunk:
            raise EOFError("connection closed by the peer")
        buf += chunk
    return buf.partition(b"\r\n\r\n")[2].decode().strip()
conns = [socket.create_connection((vip, 80), timeout=5) for _ in range(n)]
first = [ask(s) for s in conns]
print("READY " + "|".join(first), flush=True)
errors, alive, rounds, end = [], set(range(n)), 0, time.time() + bound
while time.time() < end and not select.select([sys.stdin], [], [], 0.02)[0]:
    for i in sorted(alive):
        try:
            body = ask(conns[i])
            if body != first[i]:
                errors.append("connection %d, round %d: answered %r, first %r" % (i, rounds, body, first[i]))
        except Exception as e:
            errors.append("connection %d, round %d: %r" % (i, rounds, e))
            alive.discard(i)
    rounds += 1
    print("ROUND %d" % rounds, flush=True)
print("DONE rounds=%d" % rounds, flush=True)
for e in errors:
    print("ERR " + e, flush=True)
'''


TOA_LOADER = r'''
import ctypes, sys
obj_path, map_pin, prog_pin = (a.encode() for a in sys.argv[1:4])
lib = ctypes.CDLL("libbpf.so.1", use_errno=True)
P = ctypes.c_void_p
for fn, res, args in (("bpf_object__open_file", P, [ctypes.c_char_p, P]),
                      ("bpf_object__find_map_by_name", P, [P, ctypes.c_char_p]),
                      ("bpf_map__set_pin_path", ctypes.c_int, [P, ctypes.c_char_p]),
                      ("bpf_object__load", ctypes.c_int, [P]),
                      ("bpf_object__find_program_by_name", P, [P, ctypes.c_char_p]),
                      ("bpf_program__fd", ctypes.c_int, [P]),
                      ("bpf_obj_pin", ctypes.c_int, [ctypes.c_int, ctypes.c_char_p])):
    getattr(lib, fn).restype, getattr(lib, fn).argtypes = res, args
obj = lib.bpf_object__open_file(obj_path, None)
assert obj, "open " + obj_path.decode()
assert lib.bpf_map__set_pin_path(lib.bpf_object__find_map_by_name(obj, b"sluice_toa"), map_pin) == 0
rc = lib.bpf_object__load(obj)
assert rc == 0, "load: %d" % rc
fd = lib.bpf_program__fd(lib.bpf_object__find_program_by_name(obj, b"sluice_toa_ingress"))
assert fd >= 0 and lib.bpf_obj_pin(fd, prog_pin) == 0, "pin"
'''


def load_toa(topo, reals):
    """The real-server side of TOA: toa.bpf.c loaded once (through libbpf,
    its map pinned on the test's bpffs), attached with tc on the ingress of
    each real's veth."""
    obj = os.path.join(ROOT, "build", "l4", "toa.bpf.o")
    map_pin, prog_pin = topo.bpffs + "/sluice_toa", topo.bpffs + "/toa_ingress"
    sh(sys.executable, "-c", TOA_LOADER, obj, map_pin, prog_pin)
    for name in reals:
        nsexec(TAG + name, "tc", "qdisc", "add", "dev", "eth0", "clsact")
        nsexec(TAG + name, "tc", "filter", "add", "dev", "eth0", "ingress", "bpf", "direct-action",
               "object-pinned", prog_pin)
    return map_pin


def have_tools():
    return missing_tools("network namespaces, XDP", ("ip",), "iproute2", (SLUICE_BIN,))


class Topology(NetnsLab):
    # -- building --
    def add_host(self, ns, ifname, addr):
        """ns on the switch's bridge, with addr/24 and its IPv6 alike,
        fd00::<last byte of addr>/64, on ifname (two queues each way);
        returns the bridge-side name."""
        return super().add_host(ns, ifname, [addr + "/24", "fd00::%s/64" % addr.split(".")[-1]],
                                link_opts=("numtxqueues", "2", "numrxqueues", "2"))

    def build(self):
        self.add_switch(NS_SW)
        self.add_host(NS_C, "eth0", "10.0.0.2")
        # veth leaves TCP checksums to "hardware" (CHECKSUM_PARTIAL); a frame
        # that XDP sends on loses that note and would reach the real with
        # a partial checksum. A real NIC has no such state: checksum here.
        ethtool_set(NS_C, "eth0", ETHTOOL_STXCSUM, 0)
        lb_peer = self.add_host(NS_LB, "lb0", "10.0.0.5")
        self.lb_peer = lb_peer
        nsexec(NS_LB, "ip", "addr", "add", VIP + "/32", "dev", "lo")
        # IPv6 neighbour discovery answers only for addresses of the
        # receiving interface: the LB holds VIP6 on its veth, the reals on
        # their loopback (so they never answer for it; no sysctl needed).
        # Deprecated (preferred_lft 0), so the LB never picks it as the
        # source of its own packets: a health check from the VIP would be
        # answered by the real to itself.
        nsexec(NS_LB, "ip", "addr", "add", VIP6 + "/128", "dev", "lb0", "nodad", "preferred_lft", "0")
        for name, addr in REALS:
            ns = TAG + name
            self.add_host(ns, "eth0", addr)
            nsexec(ns, "ip", "addr", "add", VIP + "/32", "dev", "lo")
            nsexec(ns, "ip", "addr", "add", VIP6 + "/128", "dev", "lo")
            for key, val in (("all/arp_ignore", "1"), ("eth0/arp_ignore", "1"),
                             ("all/arp_announce", "2"), ("eth0/arp_announce", "2")):
                nsexec(ns, "sysctl", "-q", "-w", "net.ipv4.conf.%s=%s" % (key.replace("/", "."), val))
        # Pins on a bpffs of our own; the XDP_PASS program on the LB's peer
        # (see NetnsLab).
        self.mount_bpffs()
        self.xdp_pass_on(NS_SW, self.lb_peer)

    def start_servers(self, port=80):
        self.servers = {}
        for name, _ in REALS:
            self.servers[name] = self.spawn(TAG + name, sys.executable, "-c", SERVER, name, str(port))

    def nat_routes(self):
        """NAT: the client gets an address off the reals' subnet (10.9.0.2,
        routed to the VIP through the LB), the reals a default route via the
        LB, so their replies cross the LB to be translated back. The reals'
        veths checksum in software, as the client's do: the LB rewrites
        their replies with XDP."""
        nsexec(NS_C, "ip", "addr", "add", NAT_CLIENT + "/32", "dev", "eth0")
        nsexec(NS_C, "ip", "route", "add", VIP + "/32", "dev", "eth0", "src", NAT_CLIENT)
        for name, _ in REALS:
            nsexec(TAG + name, "ip", "route", "add", "default", "via", "10.0.0.5")
            ethtool_set(TAG + name, "eth0", ETHTOOL_STXCSUM, 0)

    def nat_routes6(self):
        """The same for IPv6; the LB needs a route to the client's prefix
        to answer its neighbour solicitations for the VIP."""
        nsexec(NS_C, "ip", "-6", "addr", "add", NAT_CLIENT6 + "/128", "dev", "eth0", "nodad")
        nsexec(NS_C, "ip", "-6", "route", "add", VIP6 + "/128", "dev", "eth0", "src", NAT_CLIENT6)
        nsexec(NS_LB, "ip", "-6", "route", "add", "fd09::/64", "dev", "lb0")
        for name, _ in REALS:
            nsexec(TAG + name, "ip", "-6", "route", "add", "default", "via", "fd00::5")
            ethtool_set(TAG + name, "eth0", ETHTOOL_STXCSUM, 0)

    def fullnat_routes(self):
        """FullNAT: the LB answers ARP for its local address (on its
        loopback); replies to it come back to the LB by plain routing."""
        nsexec(NS_LB, "ip", "addr", "add", LOCAL_ADDR + "/32", "dev", "lo")
        for name, _ in REALS:
            ethtool_set(TAG + name, "eth0", ETHTOOL_STXCSUM, 0)

    # -- teardown --
    def detach_xdp(self):
        """The forwarder's and the decap program's links outlive the
        processes that made them: take them off, and their pins, as an
        operator would."""
        l4_detach(NS_LB, SLUICE_BIN, self.bpffs + "/sluice")
        for path in sorted(glob.glob(self.bpffs + "/decap-*/*")):
            real, ifname = path.split("/")[-2][len("decap-"):], path.split("/")[-1]
            nsexec(TAG + real, SLUICE_BIN, "l4", "decap", "--interface", ifname, "--pin-dir",
                   os.path.dirname(path), "--detach", check=False)


class L4:
    """`sluice l4 -c` in the LB namespace."""

    def __init__(self, topo, v6=False, mode="dr", real_port=80, local=None):
        self.topo = topo
        self.conf = topo.tmp / "l4.yaml"
        vip = "[%s]" % VIP6 if v6 else VIP
        reals = ["[fd00::%s]" % a.split(".")[-1] for _, a in REALS] if v6 else [a for _, a in REALS]
        self.log_path = topo.tmp / "l4.log"
        self.conf.write_text("""\
admin:
  listen: 127.0.0.1:%d
l4:
  interfaces: [lb0]
  xdp_mode: native
  seed: 0x5eed1a4b
  services:
    - vip: "%s:80"
      protocol: tcp
      mode: %s
      scheduler: maglev
      health_check: { type: tcp, interval: 300ms, timeout: 200ms, rise: 2, fall: 2 }
%s      reals:
%s""" % (ADMIN_PORT, vip, mode, "      local_addresses: [%s]\n" % ", ".join('"%s"' % a for a in local) if local else "",
         "".join("        - { address: \"%s:%d\", weight: 1 }\n" % (a, real_port) for a in reals)))
        self.proc = None

    def start(self, ready=r"weights (\S+=1 ?){3}$", args=()):
        """Start and wait until a Maglev table line matches `ready` (by
        default: all three reals in the table)."""
        self.offset = len(self.read_log())
        self.log = open(self.log_path, "ab")
        self.proc = self.topo.spawn(NS_LB, SLUICE_BIN, "l4", "-c", str(self.conf), "--pin-dir",
                                    self.topo.bpffs + "/sluice", *args, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + 15
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("sluice l4 exited %s:\n%s" % (self.proc.returncode, self.read_log()))
            # Ready: the tables as asked, and attached ("running" comes
            # after the attach, which comes after the tables).
            log = self.new_log()
            if re.search(ready, log, re.M) and "sluice l4 running" in log:
                return self
            time.sleep(0.1)
        raise RuntimeError("sluice l4 did not become ready:\n" + self.read_log())

    def start_fails(self, args=()):
        """A start that must fail: (exit code, its log)."""
        self.offset = len(self.read_log())
        with open(self.log_path, "ab") as log:
            p = self.topo.spawn(NS_LB, SLUICE_BIN, "l4", "-c", str(self.conf), "--pin-dir", self.pin_dir, *args,
                                stdout=log, stderr=subprocess.STDOUT)
            try:
                rc = p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.send_signal(signal.SIGTERM)
                rc = "still running after 20 s"
        return rc, self.new_log()

    def detach(self, *args):
        return nsexec(NS_LB, SLUICE_BIN, "l4", "detach", "--pin-dir", self.pin_dir, *args, check=False)

    def new_log(self):
        """The log of this run only (restarts append to the same file)."""
        return self.read_log()[self.offset:]

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=10)
        self.log.close()
        return self.proc.returncode

    def read_log(self):
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    @property
    def pin_dir(self):
        return self.topo.bpffs + "/sluice"

    def link_info(self, ifname="lb0"):
        """The pinned XDP link of ifname ({"id", "prog_id", "ifindex"}), or
        None when there is none."""
        out = sh("bpftool", "-j", "link", "show", "pinned", "%s/links/%s" % (self.pin_dir, ifname), check=False)
        return json.loads(out.stdout) if out.returncode == 0 else None

    def xdp_prog_id(self, ifname="lb0", ns=None):
        """The id of the XDP program attached to ifname, or None."""
        out = nsexec(ns or NS_LB, "ip", "-j", "link", "show", "dev", ifname).stdout
        return json.loads(out)[0].get("xdp", {}).get("prog", {}).get("id")

    def list(self):
        return nsexec(NS_LB, SLUICE_BIN, "l4", "list", "-c", str(self.conf), "--pin-dir",
                      self.topo.bpffs + "/sluice").stdout

    def metrics(self):
        return nsexec(NS_LB, sys.executable, "-c",
                      "import urllib.request;print(urllib.request.urlopen("
                      "'http://127.0.0.1:%d/metrics', timeout=5).read().decode())" % ADMIN_PORT).stdout


def get(n, timeout=3, vip=VIP):
    """n HTTP requests from the client namespace, each on a new connection;
    returns the bodies ("NAME CLIENT")."""
    code = r'''
import http.client, sys
for i in range(int(sys.argv[2])):
    try:
        c = http.client.HTTPConnection(sys.argv[1], 80, timeout=%d)
        c.request("GET", "/")
        print(c.getresponse().read().decode().strip(), flush=True)
        c.close()
    except Exception as e:
        print("ERR %%r" %% (e,), flush=True)
''' % timeout
    out = nsexec(NS_C, sys.executable, "-c", code, vip, str(n), timeout=n * (timeout + 1) + 10).stdout
    return [line for line in out.splitlines() if line]


class KeepAlive:
    """One long-lived TCP connection from the client to the VIP."""

    def __init__(self, topo):
        self.p = topo.spawn(NS_C, sys.executable, "-c", KEEPALIVE_CLIENT, VIP, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, bufsize=1)

    def ask(self, timeout=8):
        self.p.stdin.write("go\n")
        self.p.stdin.flush()
        r, _, _ = select.select([self.p.stdout], [], [], timeout)
        if not r:
            return "ERR timeout"
        return self.p.stdout.readline().strip()


class RestartProbe:
    """Keep-alive connections to the VIP with requests on every one of
    them in a loop (RESTART_PROBE), to run across a restart of sluice l4."""

    def __init__(self, topo, vip=VIP, n=4, bound=60):
        self.p = topo.spawn(NS_C, sys.executable, "-c", RESTART_PROBE, vip, str(n), str(bound),
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.buf = b""
        self.rounds = 0
        line = self._line(15)
        assert line.startswith("READY "), line
        self.first = line[len("READY "):].split("|")

    def _line(self, timeout):
        """The next line of output (read unbuffered, so select() tells)."""
        deadline = time.time() + timeout
        while b"\n" not in self.buf:
            r, _, _ = select.select([self.p.stdout], [], [], max(0, deadline - time.time()))
            chunk = os.read(self.p.stdout.fileno(), 4096) if r else b""
            if not chunk:
                return "(no output)"
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\n")
        return line.decode().strip()

    def wait_rounds(self, k, timeout=15):
        """Until k more rounds (a request on every connection) are done."""
        want, deadline = self.rounds + k, time.time() + timeout
        while self.rounds < want and time.time() < deadline:
            m = re.match(r"ROUND (\d+)$", self._line(deadline - time.time()))
            if not m:
                break
            self.rounds = int(m.group(1))
        return self.rounds >= want

    def finish(self):
        """Stop the loop: (rounds, [error lines])."""
        out, _ = self.p.communicate(b"stop\n", timeout=30)
        out = (self.buf + out).decode(errors="replace")
        m = re.search(r"^DONE rounds=(\d+)$", out, re.M)
        assert m, out
        return int(m.group(1)), [ln for ln in out.splitlines() if ln.startswith("ERR ")]


def restart_under_traffic(topo, l4, vip=VIP, ready=r"weights (\S+=1 ?){3}$"):
    """Item 7 of the L4 review: SIGTERM sluice l4 and start it again while
    requests flow on long-lived connections. No request may go unanswered
    or be reset: the forwarder stays attached while no daemon runs, and the
    next run swaps its program into the same pinned link (same link id,
    new program id), never detaching."""
    probe = RestartProbe(topo, vip)
    before = l4.link_info()
    assert probe.wait_rounds(3), "no traffic before the restart"
    assert l4.stop() == 0
    attached = l4.xdp_prog_id()
    # While no daemon runs, every connection is asked a few times ...
    down = probe.wait_rounds(5)
    # ... and the loop goes on through the next run's start.
    l4.start(ready=ready)
    assert probe.wait_rounds(5), "no traffic after the restart"
    rounds, errors = probe.finish()
    assert down and not errors, (rounds, errors, l4.read_log())
    after = l4.link_info()
    assert before and after, (before, after)
    assert attached == before["prog_id"], "the forwarder did not stay attached while no daemon ran"
    assert after["id"] == before["id"] and after["prog_id"] != before["prog_id"], (before, after)
    assert l4.xdp_prog_id() == after["prog_id"]
    return probe.first


@pytest.fixture
def topo(tmp_path):
    why = have_tools()
    if why:
        pytest.skip(why)
    t = Topology(tmp_path)
    try:
        try:
            t.build()
        except subprocess.CalledProcessError as e:
            # As root with the tools at hand, a topology that cannot be built
            # is a failure, not a reason to skip.
            pytest.fail("cannot build the namespace topology: %s %s" % (e.cmd, e.stderr))
        t.start_servers()
        yield t
    finally:
        t.destroy()


def real_of(body):
    return body.split()[0]


def wait_for(pred, timeout, step=0.1):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if pred():
            return True
        time.sleep(step)
    return False


def kill_one_drain_another(topo, l4, seen_as, real_port):
    """Item 14 of the L4 issue for any mode: with long-lived connections on
    the reals, a real killed mid-test stops getting new flows while the
    others keep theirs; a drained real keeps its established connections
    while new flows go elsewhere. seen_as: the client address the reals
    see in this mode."""
    conns = [KeepAlive(topo) for _ in range(9)]
    by_real = {}
    for c in conns:
        b = c.ask()
        assert b.split()[1:2] == [seen_as], b
        by_real.setdefault(real_of(b), []).append(c)
    topo.servers["r2"].kill()
    topo.servers["r2"].wait(timeout=5)
    assert wait_for(lambda: "real 10.0.0.12:%d: inactive" % real_port in l4.new_log(), 10), l4.new_log()
    bodies = get(20)
    assert bodies and {real_of(b) for b in bodies} <= {"r1", "r3"}, bodies
    for name in ("r1", "r3"):
        for c in by_real.get(name, []):
            assert c.ask() == "%s %s" % (name, seen_as)
    out = nsexec(NS_LB, SLUICE_BIN, "backend", "-c", str(l4.conf), "tcp:%s:80" % VIP, "10.0.0.13:%d" % real_port,
                 "drain")
    assert out.returncode == 0, out
    assert wait_for(lambda: re.search(r"10.0.0.13:%d=0$" % real_port, l4.new_log(), re.M), 5), l4.new_log()
    bodies = get(10)
    assert bodies and all(real_of(b) == "r1" for b in bodies), bodies
    for name in ("r1", "r3"):
        for c in by_real.get(name, []):
            assert c.ask() == "%s %s" % (name, seen_as)
    for c in conns:
        c.p.kill()


# Families only `sluice proxy` serves: its request pipeline fills them
# (test_observability, test_ratelimit, test_backends_runtime).
PROXY_ONLY = ("sluice_backend_name_", "sluice_connlimit_", "sluice_ratelimit_", "sluice_listener_request_duration_",
              "sluice_listener_connection_duration_", "sluice_pool_upstream_")


def test_l4_dr_end_to_end(topo):
    l4 = L4(topo).start()
    log = l4.read_log()
    assert "attached to lb0 in native (driver) XDP mode" in log, log

    # Spread, and the real sees the client's own address (DR keeps it).
    bodies = get(30)
    assert len(bodies) == 30 and not any(b.startswith("ERR") for b in bodies), bodies
    seen = {real_of(b) for b in bodies}
    assert seen == {"r1", "r2", "r3"}, bodies
    assert all(b.split()[1] == "10.0.0.2" for b in bodies), bodies

    # The counters: per real in `list`, and on /metrics.
    listing = l4.list()
    assert "TCP  10.0.0.100:80" in listing and listing.count(" up ") == 3, listing
    metrics = l4.metrics()
    assert re.search(r'sluice_l4_vip_packets_total\{vip="10.0.0.100:80",proto="tcp",mode="dr"\} [1-9]',
                     metrics), metrics
    assert 'sluice_l4_packets_total{reason="fwd_dr"}' in metrics
    # Every family `sluice l4` serves is in docs/admin-api.md, and every
    # documented one but the registry's, the proxy's TLS ones and HA's is
    # served (the proxy's side: test_metrics.py; the registry's:
    # test_registry_api.py; HA's, served with an ha: section:
    # test_ha_announce.py).
    served = {name: t for name, (t, _) in metrics_doc.families(metrics).items()}
    documented = {n: t for n, t in metrics_doc.documented_families().items()
                  if not n.startswith(("sluice_registry_", "sluice_tls_", "sluice_ha_") + PROXY_ONLY)}
    assert served == documented

    # Long-lived flows, one per real if the hash allows: open a few.
    conns = [KeepAlive(topo) for _ in range(9)]
    first = [c.ask() for c in conns]
    assert not any(b.startswith("ERR") for b in first), first
    by_real = {}
    for c, b in zip(conns, first):
        by_real.setdefault(real_of(b), []).append(c)

    # Kill one real: the health check takes it out, new flows avoid it,
    # flows on the others keep working on their connections.
    victim = "r2"
    topo.servers[victim].kill()
    topo.servers[victim].wait(timeout=5)
    assert wait_for(lambda: "real 10.0.0.12:80: inactive" in l4.read_log(), 10), l4.read_log()
    bodies = get(20)
    assert bodies and all(real_of(b) in ("r1", "r3") for b in bodies), bodies
    for name, cs in by_real.items():
        if name == victim:
            continue
        for c in cs:
            assert c.ask() == "%s 10.0.0.2" % name

    # Restart sluice l4 with requests flowing: established flows survive
    # (the forwarder stays attached, pinned connection table, same Maglev
    # tables), idle ones too. The new run keeps the dead real out from the
    # start.
    survivors = [(name, c) for name, cs in by_real.items() if name != victim for c in cs]
    assert survivors
    restart_under_traffic(topo, l4, ready=r"weights 10.0.0.11:80=1 10.0.0.12:80=0 10.0.0.13:80=1$")
    assert "stays attached to lb0" in l4.read_log(), l4.read_log()
    assert "reusing" in l4.new_log(), l4.new_log()
    for name, c in survivors:
        assert c.ask() == "%s 10.0.0.2" % name

    # Drain r3 through the admin API: new flows go to r1 only, while r3's
    # established connections keep working (it stays active, weight 0).
    if "r3" in by_real:
        out = nsexec(NS_LB, SLUICE_BIN, "backend", "-c", str(l4.conf), "tcp:%s:80" % VIP, "10.0.0.13:80",
                     "drain")
        assert out.returncode == 0
        assert wait_for(lambda: re.search(r"weights 10.0.0.11:80=1 10.0.0.12:80=0 10.0.0.13:80=0$",
                                          l4.new_log(), re.M), 5), l4.new_log()
        bodies = get(10)
        assert bodies and all(real_of(b) == "r1" for b in bodies), bodies
        for c in by_real["r3"]:
            assert c.ask() == "r3 10.0.0.2"
    assert l4.stop() == 0


def test_l4_dr_ipv6(topo):
    """The same over IPv6: VIP [fd00::100]:80, reals fd00::11-13, next hops
    from the IPv6 neighbour table (ND)."""
    l4 = L4(topo, v6=True).start(ready=r"weights (\S+=1 ?){3}$")
    bodies = get(30, vip=VIP6)
    assert len(bodies) == 30 and not any(b.startswith("ERR") for b in bodies), bodies
    assert {real_of(b) for b in bodies} == {"r1", "r2", "r3"}, bodies
    assert all(b.split()[1] == "fd00::2" for b in bodies), bodies
    listing = l4.list()
    assert "TCP  [fd00::100]:80" in listing and listing.count(" up ") == 3, listing
    restart_under_traffic(topo, l4, vip=VIP6)
    assert l4.stop() == 0


def test_l4_stays_attached_detach_and_other_programs(topo):
    """Item 7 of the L4 review, the operator's side. After SIGTERM the
    forwarder stays attached and forwards, new flows too, from the pinned
    maps. `sluice l4 detach` is refused while sluice l4 runs; once it
    stopped it takes the forwarder off (the maps stay, unless
    --remove-maps). Another XDP program on the interface is refused unless
    --force; the forwarder attached without a link (as Sluice did before
    links) is taken over; a change of l4.xdp_mode re-attaches in that mode."""
    l4 = L4(topo).start()
    assert l4.stop() == 0
    assert "stays attached to lb0" in l4.read_log(), l4.read_log()
    link = l4.link_info()
    assert link and l4.xdp_prog_id() == link["prog_id"], link
    # Without the forwarder these would reach the LB's own stack, which
    # holds the VIP and refuses port 80.
    bodies = get(6)
    assert len(bodies) == 6 and all(real_of(b) in ("r1", "r2", "r3") for b in bodies), bodies
    listing = l4.list()
    assert "Attached to lb0 (link %d, program %d, native)" % (link["id"], link["prog_id"]) in listing, listing

    l4.start()
    out = l4.detach()
    assert out.returncode == 1 and "sluice l4 is running" in out.stderr, (out.stdout, out.stderr)
    assert l4.xdp_prog_id() is not None
    assert l4.stop() == 0
    out = l4.detach()
    assert out.returncode == 0 and "detached from lb0" in out.stdout, (out.stdout, out.stderr)
    assert "maps stay pinned" in out.stdout, out.stdout
    assert l4.xdp_prog_id() is None and l4.link_info() is None
    assert os.path.exists(l4.pin_dir + "/vips") and not os.path.exists(l4.pin_dir + "/links")
    bodies = get(2, timeout=2)
    assert len(bodies) == 2 and all(b.startswith("ERR") for b in bodies), bodies
    out = l4.detach()
    assert out.returncode == 0 and "not attached" in out.stdout, (out.stdout, out.stderr)

    # A program that is not the forwarder: refused, and left alone ...
    nsexec(NS_LB, "ip", "link", "set", "dev", "lb0", "xdpdrv", "pinned", topo.bpffs + "/xdp_pass")
    other = l4.xdp_prog_id()
    rc, log = l4.start_fails()
    assert rc == 1 and "lb0 already has an XDP program that is not the Sluice forwarder" in log, log
    assert l4.xdp_prog_id() == other
    # ... unless --force.
    l4.start(args=["--force"])
    assert "--force took XDP program (no name) (id %d) off first" % other in l4.new_log(), l4.new_log()
    assert l4.xdp_prog_id() == l4.link_info()["prog_id"]
    assert l4.stop() == 0
    assert l4.detach().returncode == 0

    # The forwarder attached without a link, as by a Sluice before links
    # that was killed before it could detach: taken over.
    sh("bpftool", "prog", "load", os.path.join(ROOT, "build", "l4", "forwarder.bpf.o"), topo.bpffs + "/old_fwd",
       "type", "xdp")
    nsexec(NS_LB, "ip", "link", "set", "dev", "lb0", "xdpdrv", "pinned", topo.bpffs + "/old_fwd")
    old = l4.xdp_prog_id()
    l4.start()
    assert "took off the forwarder an earlier Sluice had attached without a link (program %d)" % old \
        in l4.new_log(), l4.new_log()
    link = l4.link_info()
    assert link and l4.xdp_prog_id() == link["prog_id"] != old
    assert l4.stop() == 0

    # l4.xdp_mode changed: the next run detaches and attaches in the new mode.
    l4.conf.write_text(l4.conf.read_text().replace("xdp_mode: native", "xdp_mode: generic"))
    l4.start()
    assert "l4.xdp_mode changed, so the earlier link" in l4.new_log(), l4.new_log()
    assert "xdpgeneric" in nsexec(NS_LB, "ip", "-d", "link", "show", "dev", "lb0").stdout
    assert l4.link_info()["id"] != link["id"]
    assert l4.stop() == 0
    out = l4.detach("--remove-maps")
    assert out.returncode == 0 and "removed" in out.stdout and not os.path.exists(l4.pin_dir), out.stdout


def test_l4_nat_end_to_end(topo):
    """NAT: DNAT to the reals' port 8080 on the way in; the reals route
    their replies through the LB (default route), which turns them back
    into VIP:80. The real sees the client's own address."""
    topo.nat_routes()
    for p in topo.servers.values():
        p.kill()
    topo.start_servers(port=8080)
    l4 = L4(topo, mode="nat", real_port=8080).start()
    bodies = get(30)
    assert len(bodies) == 30 and not any(b.startswith("ERR") for b in bodies), (bodies, l4.read_log())
    assert {real_of(b) for b in bodies} == {"r1", "r2", "r3"}, bodies
    assert all(b.split()[1] == NAT_CLIENT for b in bodies), bodies
    metrics = l4.metrics()
    assert re.search(r'sluice_l4_packets_total\{reason="fwd_nat"\} [1-9]', metrics), metrics
    assert re.search(r'sluice_l4_packets_total\{reason="fwd_nat_reply"\} [1-9]', metrics), metrics
    # Keep-alive connections keep their real through a restart, busy or
    # idle (the forwarder stays attached; the shared NAT table is pinned).
    c = KeepAlive(topo)
    first = c.ask()
    assert not first.startswith("ERR"), first
    seen = restart_under_traffic(topo, l4)
    assert all(b.split()[1:] == [NAT_CLIENT] for b in seen), seen
    assert c.ask() == first
    kill_one_drain_another(topo, l4, NAT_CLIENT, 8080)
    assert l4.stop() == 0


PROXY_CONF = """\
workers: 1
admin:
  listen: 127.0.0.1:9932
pools:
  - name: app
    backends: [127.0.0.1:8080]
listeners:
  - name: web
    listen: 0.0.0.0:80
    protocol: http
    pool: app
    client_address: toa
    toa_map: %s
    access_log: stdout
"""


def test_l4_fullnat_end_to_end(topo):
    """FullNAT: the reals see the LB's local address as the peer (and
    reply to it by plain routing). Then, with the TOA reader on each real
    and `sluice proxy` (client_address: toa) in front of each real's
    server, the server sees the client's real address in X-Forwarded-For."""
    topo.fullnat_routes()
    l4 = L4(topo, mode="fullnat", local=[LOCAL_ADDR]).start()
    bodies = get(30)
    assert len(bodies) == 30 and not any(b.startswith("ERR") for b in bodies), (bodies, l4.read_log())
    assert {real_of(b) for b in bodies} == {"r1", "r2", "r3"}, bodies
    assert all(b.split()[1] == LOCAL_ADDR for b in bodies), bodies
    metrics = l4.metrics()
    assert re.search(r'sluice_l4_packets_total\{reason="fwd_fullnat"\} [1-9]', metrics), metrics
    assert re.search(r'sluice_l4_packets_total\{reason="fwd_nat_reply"\} [1-9]', metrics), metrics
    # An established FullNAT flow survives a restart (its local port and
    # both NAT entries are in the pinned map).
    c = KeepAlive(topo)
    first = c.ask()
    assert first == "%s %s" % (real_of(first), LOCAL_ADDR), first
    seen = restart_under_traffic(topo, l4)
    assert all(b.split()[1:] == [LOCAL_ADDR] for b in seen), seen
    assert c.ask() == first
    c.p.kill()
    kill_one_drain_another(topo, l4, LOCAL_ADDR, 80)
    assert l4.stop() == 0
    topo.servers["r2"] = topo.spawn(TAG + "r2", sys.executable, "-c", SERVER, "r2", "80")

    # The reals' servers move to 8080, behind `sluice proxy` on 80.
    map_pin = load_toa(topo, [name for name, _ in REALS])
    for p in topo.servers.values():
        p.kill()
        p.wait(timeout=5)
    topo.start_servers(port=8080)
    conf = topo.tmp / "proxy.yaml"
    conf.write_text(PROXY_CONF % map_pin)
    proxies = []
    for name, _ in REALS:
        log = open(topo.tmp / ("proxy-%s.log" % name), "wb")
        proxies.append(topo.spawn(TAG + name, SLUICE_BIN, "proxy", "-c", str(conf), stdout=log,
                                  stderr=subprocess.STDOUT))
    try:
        l4.start()   # ready once all three reals pass their checks on port 80
        bodies = get(30)
        logs = "".join((topo.tmp / ("proxy-%s.log" % n)).read_text(errors="replace") for n, _ in REALS)
        assert len(bodies) == 30 and not any(b.startswith("ERR") for b in bodies), (bodies, logs)
        assert {real_of(b) for b in bodies} == {"r1", "r2", "r3"}, bodies
        # "NAME PEER X-FORWARDED-FOR": the proxy's peer is the local
        # address; TOA gives it the client's.
        assert all(b.split()[1] == "127.0.0.1" and b.split()[2] == "10.0.0.2" for b in bodies), (bodies, logs)
        # The access log names the client too (written per request, read
        # back within a bounded wait).
        def logged():
            text = "".join((topo.tmp / ("proxy-%s.log" % n)).read_text(errors="replace") for n, _ in REALS)
            lines = [ln for ln in text.splitlines() if '"GET / HTTP/1.1"' in ln]
            return len(lines) >= 30 and all(ln.startswith("10.0.0.2 ") for ln in lines)
        assert wait_for(logged, 5), logs
        assert l4.stop() == 0
    finally:
        for p in proxies:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in proxies:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()


def test_l4_nat_and_fullnat_ipv6(topo):
    """NAT, then FullNAT (a restart with the mode changed), over IPv6:
    VIP [fd00::100]:80 to the reals' port 8080."""
    topo.nat_routes6()
    for p in topo.servers.values():
        p.kill()
        p.wait(timeout=5)
    topo.start_servers(port=8080)
    l4 = L4(topo, v6=True, mode="nat", real_port=8080).start()
    bodies = get(30, vip=VIP6)
    assert len(bodies) == 30 and not any(b.startswith("ERR") for b in bodies), (bodies, l4.read_log())
    assert {real_of(b) for b in bodies} == {"r1", "r2", "r3"}, bodies
    assert all(b.split()[1] == NAT_CLIENT6 for b in bodies), bodies
    restart_under_traffic(topo, l4, vip=VIP6)
    assert l4.stop() == 0

    # FullNAT: the LB holds its local address on the veth (deprecated,
    # like VIP6), so it answers the reals' solicitations for it.
    nsexec(NS_LB, "ip", "-6", "addr", "add", LOCAL_ADDR6 + "/128", "dev", "lb0", "nodad", "preferred_lft", "0")
    l4 = L4(topo, v6=True, mode="fullnat", real_port=8080, local=[LOCAL_ADDR6]).start()
    bodies = get(30, vip=VIP6)
    assert len(bodies) == 30 and not any(b.startswith("ERR") for b in bodies), (bodies, l4.read_log())
    assert {real_of(b) for b in bodies} == {"r1", "r2", "r3"}, bodies
    assert all(b.split()[1] == LOCAL_ADDR6 for b in bodies), bodies
    restart_under_traffic(topo, l4, vip=VIP6)
    assert l4.stop() == 0
