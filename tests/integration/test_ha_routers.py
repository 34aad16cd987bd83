"""The router-side examples of docs/ha.md ("Router side: BIRD and FRR")
against real LB nodes: docs/examples/ha/router-bird.conf run by BIRD 2 and
docs/examples/ha/router-frr.conf loaded into FRR (zebra, bgpd, bfdd), each
as it is in the docs (BIRD's file is included after a `log` line; FRR's
goes through `vtysh -f`), so the docs cannot drift from what is tested.

Topology (network namespaces this test creates and removes, P = s12fNNN-,
NNN from the test's pid so that two runs cannot clash), the addresses the
examples name:

    router P-rt  10.12.0.1  AS 65000 --+
    LB P-a1      10.12.0.11 zone a, priority 0 --+-- bridge (P-sw)
    LB P-a2      10.12.0.12 zone a, priority 0 --+
    LB P-b1      10.12.0.21 zone b, priority 1 --+

Each LB node is a `sluice proxy` (cheaper than l4) with a listener on the
VIP 10.12.100.1 (held on its lo) and an `ha:` section (AS 65010, its own
managed BIRD), with a backend in its namespace that answers with the
node's name. a1 also listens on 10.12.77.1, outside the ranges the routers
accept. For each router: the VIP learnt from every node with BFD up, the
community mapped to local preference, a kernel route with two next hops
(a1, a2: zone a preferred by the AS path, ECMP within it), the outside
address refused, and kill -9 of a1 then a2 moving the VIP to a2 then b1;
a1 back moves it back.

BFD at the LB nodes is 300 ms x 10 (as in test_ha_announce.py: not about
detection time, and a busy machine must not flap it); the routers' side is
the examples' 100 ms x 3. Needs root, iproute2, bird2 and frr; skips
otherwise. Every wait is bounded; every namespace and process (BIRDs and
FRR daemons included) is removed at teardown.
"""
import json
import os
import re
import shutil
import signal
import subprocess
import sys

import pytest

from helpers import wait_for
from netns_tools import nsexec, sh
from test_l4_netns import SERVER

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SLUICE = os.environ.get("SLUICE_BIN", os.path.join(ROOT, "build", "sluice-asan"))
EXAMPLES = os.path.join(ROOT, "docs", "examples", "ha")
BIRD = shutil.which("bird") or "/usr/sbin/bird"
BIRDC = shutil.which("birdc") or "/usr/sbin/birdc"
VTYSH = shutil.which("vtysh") or "/usr/bin/vtysh"
FRR_DIR = "/usr/lib/frr"

P = "s12f%d-" % (os.getpid() % 1000)   # s12r1-, s12r2-, s12rx- are ha_regions.py's
ROUTER = "10.12.0.1"
NODES = {"a1": ("10.12.0.11", "a", 0), "a2": ("10.12.0.12", "a", 0), "b1": ("10.12.0.21", "b", 1)}
VIP = "10.12.100.1"
OUTSIDE = "10.12.77.1"            # a1 announces it; the routers' examples refuse it
ADMIN = "127.0.0.1:9942"          # in each LB's namespace
WAIT = 30


def missing_tools(router):
    if os.geteuid() != 0:
        return "needs root (network namespaces, tun)"
    if not os.path.exists(SLUICE):
        return "%s not built" % SLUICE
    tools = ["ip", "curl", BIRD, BIRDC]
    if router == "frr":
        tools += [VTYSH] + [os.path.join(FRR_DIR, d) for d in ("zebra", "bgpd", "bfdd")]
    for tool in tools:
        if not shutil.which(tool):
            return "needs %s (Debian: iproute2, curl, bird2, frr)" % tool
    return None


# ---------------------------------------------------------------- routers
class BirdRouter:
    """BIRD 2 running docs/examples/ha/router-bird.conf."""

    def __init__(self, tmp):
        self.dir = tmp / "rt-bird"
        self.dir.mkdir()
        self.sock = str(self.dir / "bird.ctl")
        self.pidfile = self.dir / "bird.pid"

    def start(self):
        conf = self.dir / "bird.conf"
        conf.write_text('log "%s" all;\ninclude "%s";\n' % (self.dir / "bird.log",
                                                            os.path.join(EXAMPLES, "router-bird.conf")))
        nsexec(P + "rt", BIRD, "-c", str(conf), "-s", self.sock, "-P", str(self.pidfile))
        assert wait_for(lambda: self.pidfile.exists() and self.pidfile.read_text().strip(), 10)

    def pids(self):
        return [self.pidfile]

    def birdc(self, *cmd):
        return nsexec(P + "rt", BIRDC, "-s", self.sock, *cmd, check=False).stdout

    def established(self):
        """Addresses of the LB nodes whose session is Established."""
        up = {"lb_" + n: addr for n, (addr, _, _) in NODES.items()}
        return {up[m.group(1)] for m in re.finditer(r"^(lb_\w+)\s+BGP\s+.*\bEstablished", self.birdc(
            "show", "protocols"), re.M) if m.group(1) in up}

    def bfd_up(self):
        return set(re.findall(r"^(\d+\.\d+\.\d+\.\d+)\s+\S+\s+Up\b", self.birdc("show", "bfd", "sessions"), re.M))

    def paths(self, addr):
        """{LB address: (AS path, local preference)} of the routes the
        router holds for addr/32 (the best and the others)."""
        text = self.birdc("show", "route", "all", "for", addr + "/32")
        out = {}
        for block in re.split(r"\n(?=\S|\s+unicast )", text):
            via = re.search(r"via (\S+) on", block)
            path = re.search(r"BGP\.as_path:([\d ]*)", block)
            pref = re.search(r"BGP\.local_pref: (\d+)", block)
            if via and path:
                out[via.group(1)] = (path.group(1).split(), int(pref.group(1)) if pref else None)
        return out

    def refused(self, addr, node):
        """Whether the session with node filtered (refused) at least one
        route: BIRD's import counters (received, rejected, filtered,
        ignored, accepted)."""
        text = self.birdc("show", "protocols", "all", "lb_" + node)
        m = re.search(r"Import updates:\s+(\d+)\s+(\d+)\s+(\d+)", text)
        return bool(m and int(m.group(3)) >= 1)

    def diagnose(self):
        return "%s\n%s\n%s" % (self.birdc("show", "protocols", "all"), self.birdc("show", "route", "all"),
                               self.birdc("show", "bfd", "sessions"))


class FrrRouter:
    """FRR's zebra, bgpd and bfdd with their sockets, pid files and logs in
    the test's directory, docs/examples/ha/router-frr.conf loaded by
    `vtysh -f` (as an operator would paste it)."""

    DAEMONS = ("zebra", "bfdd", "bgpd")

    def __init__(self, tmp):
        self.dir = tmp / "rt-frr"
        (self.dir / "vty").mkdir(parents=True)
        self.zserv = str(self.dir / "zserv.api")

    def start(self):
        empty = self.dir / "empty.conf"        # each daemon's own file: none (all comes from vtysh -f)
        empty.write_text("")
        for d in self.DAEMONS:
            # -u root -g frrvty: run as root; FRR insists that the user be
            # in its vty group, which getgrouplist(root, frrvty) is.
            # -P 0: no TCP vty. Everything else under the test's directory.
            args = [os.path.join(FRR_DIR, d), "-d", "-u", "root", "-g", "frrvty", "-P", "0",
                    "-f", str(empty), "-i", str(self.dir / (d + ".pid")), "-z", self.zserv,
                    "--vty_socket", str(self.dir / "vty"), "--log", "file:%s" % (self.dir / (d + ".log"))]
            if d == "bfdd":
                args += ["--bfdctl", str(self.dir / "bfdd.sock")]
            nsexec(P + "rt", *args)
            assert wait_for(lambda: os.path.exists(self.dir / "vty" / (d + ".vty")), 10), self.logs()
        # The BGP updates in bgpd's log: refused() reads them.
        self.vtysh("debug bgp updates in")
        load = nsexec(P + "rt", VTYSH, "--vty_socket", str(self.dir / "vty"), "-f",
                      os.path.join(EXAMPLES, "router-frr.conf"), check=False)
        assert load.returncode == 0, "vtysh -f router-frr.conf: %s%s" % (load.stdout, load.stderr)

    def pids(self):
        return [self.dir / (d + ".pid") for d in self.DAEMONS]

    def logs(self):
        return "\n".join(p.read_text(errors="replace") for p in sorted(self.dir.glob("*.log")))

    def vtysh(self, *cmds):
        args = [VTYSH, "--vty_socket", str(self.dir / "vty")]
        for c in cmds:
            args += ["-c", c]
        return nsexec(P + "rt", *args, check=False).stdout

    def json(self, cmd):
        try:
            return json.loads(self.vtysh(cmd) or "{}")
        except ValueError:
            return {}

    def established(self):
        peers = self.json("show bgp ipv4 unicast summary json").get("peers", {})
        return {addr for addr, p in peers.items() if p.get("state") == "Established"}

    def bfd_up(self):
        peers = self.json("show bfd peers json")
        return {p["peer"] for p in peers if isinstance(p, dict) and p.get("status") == "up"} \
            if isinstance(peers, list) else set()

    def paths(self, addr):
        out = {}
        for p in self.json("show bgp ipv4 unicast %s/32 json" % addr).get("paths", []):
            out[p["peer"]["peerId"]] = (p["aspath"]["string"].split(), p.get("locPrf"))
        return out

    def refused(self, addr, node):
        # bgpd logs "rcvd UPDATE about 10.12.77.1/32 IPv4 unicast -- DENIED due to: route-map"
        return re.search(r"%s.*rcvd UPDATE about %s/32 .*DENIED" % (re.escape(NODES[node][0]), re.escape(addr)),
                         (self.dir / "bgpd.log").read_text(errors="replace")) is not None

    def diagnose(self):
        return "%s\n%s" % (self.vtysh("show bgp ipv4 unicast summary", "show bgp ipv4 unicast",
                                      "show bfd peers brief", "show ip route"), self.logs()[-5000:])


# ---------------------------------------------------------------- LB nodes
LB_YAML = """\
admin:
  listen: {admin}
log:
  level: info
workers: 1
pools:
  - name: web
    backends: ["127.0.0.1:8081"]
    health_check: {{ type: tcp, interval: 200ms, timeout: 150ms, rise: 1, fall: 1 }}
listeners:
{listeners}ha:
  node: {node}
  zone: {zone}
  priority: {priority}
  asn: 65010
  router_id: {addr}
  neighbors:
    - {{ address: {router}, asn: 65000 }}
  bfd: {{ interval: 300ms, multiplier: 10 }}
  bird:
    mode: managed
    control_socket: {dir}/bird.ctl
    config_file: {dir}/bird.conf
    pid_file: {dir}/bird.pid
    log_file: {dir}/bird.log
"""


class LbNode:
    """One LB node: a namespace on the bridge, a backend, `sluice proxy`
    with a listener on the VIP and an ha: section."""

    def __init__(self, tmp, name):
        self.name, self.ns = name, P + name
        self.addr, self.zone, self.priority = NODES[name]
        self.dir = tmp / name
        self.dir.mkdir()
        addrs = [VIP] + ([OUTSIDE] if name == "a1" else [])
        listeners = "".join('  - {{ name: v{0}, listen: "{1}:80", protocol: tcp, pool: web }}\n'.format(i, a)
                            for i, a in enumerate(addrs))
        self.addrs = addrs
        self.conf = self.dir / "proxy.yaml"
        self.conf.write_text(LB_YAML.format(admin=ADMIN, listeners=listeners, node=name, zone=self.zone,
                                            priority=self.priority, addr=self.addr, router=ROUTER, dir=self.dir))
        self.proc = None

    def api_ha(self):
        out = nsexec(self.ns, "curl", "-sf", "--max-time", "3", "http://%s/api/ha" % ADMIN, check=False)
        try:
            return json.loads(out.stdout) if out.returncode == 0 else None
        except ValueError:
            return None

    def announced(self):
        st = self.api_ha()
        return {a["address"] for a in st["announced"]} if st else set()

    def start(self):
        log = open(self.dir / "proxy.log", "ab")
        self.proc = subprocess.Popen(["ip", "netns", "exec", self.ns, SLUICE, "proxy", "-c", str(self.conf)],
                                     stdout=log, stderr=subprocess.STDOUT)
        log.close()
        ok = wait_for(lambda: self.proc.poll() is not None or self.announced() == set(self.addrs), WAIT)
        assert ok and self.proc.poll() is None, "%s: not announcing: %s\n%s" % (
            self.name, self.api_ha(), (self.dir / "proxy.log").read_text(errors="replace"))

    def kill9(self):
        self.proc.kill()                       # `ip netns exec` execs: this is the master
        self.proc.wait(timeout=10)


# ---------------------------------------------------------------- the lab
class Topology:
    def __init__(self, tmp, router_cls):
        self.tmp = tmp
        self.namespaces = []
        self.router = router_cls(tmp)
        self.nodes = {}

    def add_ns(self, ns):
        sh("ip", "netns", "add", ns)
        self.namespaces.append(ns)
        nsexec(ns, "ip", "link", "set", "lo", "up")

    def add_port(self, ns, addr):
        sh("ip", "link", "add", "eth0", "netns", ns, "type", "veth", "peer", "name", ns + "p", "netns", P + "sw")
        nsexec(P + "sw", "ip", "link", "set", ns + "p", "master", "br0", "up")
        nsexec(ns, "ip", "addr", "add", addr + "/24", "dev", "eth0")
        nsexec(ns, "ip", "link", "set", "eth0", "up")

    def build(self):
        self.add_ns(P + "sw")
        nsexec(P + "sw", "ip", "link", "add", "br0", "type", "bridge")
        nsexec(P + "sw", "ip", "link", "set", "br0", "up")
        self.add_ns(P + "rt")
        self.add_port(P + "rt", ROUTER)
        for name in NODES:
            node = LbNode(self.tmp, name)
            self.add_ns(node.ns)
            self.add_port(node.ns, node.addr)
            for a in node.addrs:
                nsexec(node.ns, "ip", "addr", "add", a + "/32", "dev", "lo")
            server = subprocess.Popen(["ip", "netns", "exec", node.ns, sys.executable, "-c", SERVER, name, "8081"],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            self.nodes[name] = node
            node.server = server
        self.router.start()

    def destroy(self):
        # Every process in our namespaces is ours (proxies and their
        # workers, backends, the LBs' BIRDs, the router's daemons): by pid.
        pids = set()
        for ns in self.namespaces:
            pids |= {int(p) for p in sh("ip", "netns", "pids", ns, check=False).stdout.split()}
        for pidfile in self.router.pids() + [n.dir / "bird.pid" for n in self.nodes.values()]:
            if pidfile.exists() and pidfile.read_text().strip().isdigit():
                pids.add(int(pidfile.read_text().strip()))
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for n in self.nodes.values():
            for p in (n.proc, n.server):
                if p is not None:
                    try:
                        p.wait(timeout=5)
                    except subprocess.TimeoutExpired:
                        pass
        for ns in reversed(self.namespaces):
            sh("ip", "netns", "del", ns, check=False)

    # -- what the router's kernel and a client see --
    def kernel_nexthops(self, addr):
        """The gateways of the router's kernel route to addr ("proto" bird
        or bgp), a set; empty when there is none."""
        out = nsexec(P + "rt", "ip", "-j", "route", "show", addr, check=False).stdout
        routes = [r for r in json.loads(out or "[]") if r.get("protocol") in ("bird", "bgp")]
        if not routes:
            return set()
        r = routes[0]
        return {h["gateway"] for h in r.get("nexthops", [])} or {r["gateway"]}

    def get(self, addr):
        """One HTTP request from the router's namespace: the name of the
        node that answered ("" on failure)."""
        out = nsexec(P + "rt", "curl", "-s", "--max-time", "3", "http://%s/" % addr, check=False).stdout
        return out.split()[0] if out.strip() else ""


@pytest.fixture(params=["bird", "frr"])
def topo(request, tmp_path):
    why = missing_tools(request.param)
    if why:
        pytest.skip(why)
    t = Topology(tmp_path, BirdRouter if request.param == "bird" else FrrRouter)
    try:
        t.build()
        yield t
    finally:
        t.destroy()


def addr_of(*names):
    return {NODES[n][0] for n in names}


def test_router_example_learns_prefers_ecmps_and_fails_over(topo):
    rt, nodes = topo.router, topo.nodes
    for n in nodes.values():
        n.start()

    def fail(what):
        pytest.fail("%s\nrouter:\n%s\nkernel: %s" % (what, rt.diagnose(), nsexec(P + "rt", "ip", "route").stdout))

    # Sessions and BFD with every node.
    if not wait_for(lambda: rt.established() == addr_of(*NODES), WAIT):
        fail("sessions: %s" % rt.established())
    if not wait_for(lambda: rt.bfd_up() >= addr_of(*NODES), WAIT):
        fail("BFD: %s" % rt.bfd_up())

    # The VIP from all three: zone a with the node's AS once and the
    # priority-0 community's local preference, zone b prepended once more
    # with priority 1's.
    want = {NODES["a1"][0]: (["65010"], 200), NODES["a2"][0]: (["65010"], 200),
            NODES["b1"][0]: (["65010", "65010"], 190)}
    if not wait_for(lambda: rt.paths(VIP) == want, WAIT):
        fail("paths for %s: %s" % (VIP, rt.paths(VIP)))
    # In the kernel: one route, two next hops (zone a, ECMP).
    if not wait_for(lambda: topo.kernel_nexthops(VIP) == addr_of("a1", "a2"), WAIT):
        fail("kernel next hops: %s" % topo.kernel_nexthops(VIP))
    assert wait_for(lambda: topo.get(VIP) in ("a1", "a2"), 10), topo.get(VIP)

    # a1 announces an address outside the ranges the router accepts
    # (its own API says so): refused, never in the router's tables.
    assert OUTSIDE in nodes["a1"].announced()
    if not wait_for(lambda: rt.refused(OUTSIDE, "a1"), WAIT):
        fail("%s not seen refused" % OUTSIDE)
    assert rt.paths(OUTSIDE) == {} and topo.kernel_nexthops(OUTSIDE) == set()

    # kill -9 of a1: its routes go with its tun device; a2 alone.
    nodes["a1"].kill9()
    if not wait_for(lambda: topo.kernel_nexthops(VIP) == addr_of("a2"), WAIT):
        fail("after a1 killed: %s" % topo.kernel_nexthops(VIP))
    # (waits, here and below, only so that a BFD flap on a busy machine,
    # which takes a session down for about 2 s, cannot fail the test)
    assert wait_for(lambda: set(rt.paths(VIP)) == addr_of("a2", "b1"), WAIT), rt.paths(VIP)
    assert wait_for(lambda: topo.get(VIP) == "a2", 10), topo.get(VIP)
    # ... and of a2: zone a is gone, zone b (priority 1) takes the VIP.
    nodes["a2"].kill9()
    if not wait_for(lambda: topo.kernel_nexthops(VIP) == addr_of("b1"), WAIT):
        fail("after a2 killed: %s" % topo.kernel_nexthops(VIP))
    assert wait_for(lambda: rt.paths(VIP) == {NODES["b1"][0]: (["65010", "65010"], 190)}, WAIT), rt.paths(VIP)
    assert wait_for(lambda: topo.get(VIP) == "b1", 10), topo.get(VIP)
    # The sessions with a1 and a2 are up: their BIRDs outlive the daemons.
    assert wait_for(lambda: rt.established() == addr_of(*NODES), WAIT), rt.established()

    # a1 back (it adopts its BIRD): the VIP returns to zone a.
    nodes["a1"].start()
    if not wait_for(lambda: topo.kernel_nexthops(VIP) == addr_of("a1"), WAIT):
        fail("after a1 restarted: %s" % topo.kernel_nexthops(VIP))
    assert wait_for(lambda: topo.get(VIP) == "a1", 10), topo.get(VIP)


def test_docs_show_the_tested_files():
    """docs/ha.md shows each example file whole, as it is (no root
    needed): what the docs show is what the test above runs."""
    with open(os.path.join(ROOT, "docs", "ha.md")) as f:
        doc = f.read()
    for name in ("router-bird.conf", "router-frr.conf"):
        with open(os.path.join(EXAMPLES, name)) as f:
            text = f.read()
        assert "```\n" + text + "```\n" in doc, "docs/ha.md does not show %s as it is" % name
