"""ha.preempt: whether traffic goes back to a recovered primary zone.

Topology (network namespaces this test creates and removes, named
s12pNNN-* after the test's pid so that two runs cannot clash):

    router  rt 10.121.0.1 --+
    node    a  10.121.0.5 --+-- bridge (namespace sw)   zone a, priority 0
    node    b  10.121.0.6 --+                           zone b, priority 1

The router runs a BIRD of the test's own: BGP with both nodes (AS 65010,
the same for both), their routes into its kernel table, and the host routes
of AS 65010 sent back to the nodes (what a node with ha.preempt false reads
to see which zone carries a VIP). Each node runs `sluice proxy` with a
listener on the VIP 10.121.100.1:80 (held on its lo) and an ha: section;
the daemon starts the node's BIRD, which outlives it (a stopped daemon's
VIP is withdrawn with its tun device; the session stays up). No BFD: this
test is about which zone the router uses, not about detection time.

ha.preempt false: a stopped primary's VIP goes to the backup zone; the
primary back announces it again but stays behind (the router keeps the
backup's route, checked for HOLD_CHECK_S), until the backup withdraws
(drain): then the primary carries it and returns to its own priority, and
the backup back does not take it. `sluice ha preempt` takes it back at
once. ha.preempt true: the primary back takes it back.

Needs root, ip and bird2; skips otherwise. Every wait is bounded; every
namespace and process (the BIRDs included) is removed at teardown.
"""
import os
import re
import signal
import sys
import time

import pytest

from netns_tools import (BIRD, BIRDC, Bird, HaDaemon, NetnsLab, lab_fixture, missing_tools, nsexec, proxy_web_yaml,
                         wait_for)
from test_l4_netns import SERVER

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SLUICE = os.environ.get("SLUICE_BIN", os.path.join(ROOT, "build", "sluice-asan"))

TAG = "s12p%d-" % (os.getpid() % 1000)
NS_SW, NS_RT = TAG + "sw", TAG + "rt"
ROUTER = "10.121.0.1"
NODES = {"a": ("10.121.0.5", 0), "b": ("10.121.0.6", 1)}   # name: (address, zone priority)
VIP = "10.121.100.1"
ADMIN = "127.0.0.1:9951"
HOLD_CHECK_S = 5

ROUTER_BIRD = """\
router id {router};
log "{log}" all;
protocol device {{ }}
protocol kernel {{
    ipv4 {{ import none; export all; }};
}}
template bgp lbs {{
    local {router} as 65000;
    connect retry time 1;
    error wait time 1, 5;
    # The nodes' host routes, and back to them (ha.preempt false reads
    # which zone the router uses).
    ipv4 {{ import all; export where net.len = 32 && bgp_path ~ [= * 65010 * =]; }};
}}
protocol bgp a from lbs {{ neighbor {a} as 65010; }}
protocol bgp b from lbs {{ neighbor {b} as 65010; }}
"""


class Node(HaDaemon):
    """One LB node: its namespace, its `sluice proxy` and the BIRD it starts."""

    def __init__(self, lab, name):
        self.name = name
        self.addr, self.priority = NODES[name]
        self.dir = lab.tmp / name
        self.dir.mkdir()
        ns = TAG + name
        super().__init__(lab, ns, "proxy", SLUICE, self.dir / "proxy.yaml", self.dir / "proxy.log", ADMIN,
                         Bird(ns, self.dir, "bird"), ready_lines=["ha: node %s" % name])

    def write(self, preempt):
        d = self.dir
        self.conf.write_text("""\
admin:
  listen: {admin}
log:
  level: info
workers: 1
drain_timeout: 1s
""".format(admin=ADMIN) + proxy_web_yaml(VIP + ":80", "127.0.0.1:8081") + """\
ha:
  node: {name}
  zone: {name}
  priority: {priority}
  preempt: {preempt}
  asn: 65010
  router_id: {addr}
  neighbors:
    - {{ address: {router}, asn: 65000 }}
  bfd: false
  interface: {tag}ha
  bird:
    control_socket: {d}/bird.ctl
    config_file: {d}/bird.conf
    pid_file: {d}/bird.pid
    log_file: {d}/bird.log
""".format(name=self.name, priority=self.priority, preempt="true" if preempt else "false",
           addr=self.addr, router=ROUTER, tag=TAG, d=d))

    def start(self, preempt=False):
        self.write(preempt)
        return super().start()

    def route_to_router(self):
        """This node's announced VIP toward the router: (priority, state) or None."""
        st = self.ha()
        for a in st["announced"]:
            if a["address"] == VIP:
                r = a.get("routers") or [{"priority": a["priority"], "state": "own"}]
                return r[0]["priority"], r[0]["state"]
        return None


class Lab(NetnsLab):
    def build(self):
        self.add_switch(NS_SW)
        self.add_host(NS_RT, "eth0", [ROUTER + "/24"])
        self.nodes = {}
        for name, (addr, _) in NODES.items():
            node = Node(self, name)
            self.add_host(node.ns, "eth0", [addr + "/24"])
            nsexec(node.ns, "ip", "addr", "add", VIP + "/32", "dev", "lo")   # the listener binds it
            self.spawn(node.ns, sys.executable, "-c", SERVER, name, "8081")
            self.nodes[name] = node
        self.router = Bird(NS_RT, self.tmp, "rt-bird")
        self.daemon_pids.append(self.router.start(ROUTER_BIRD.format(router=ROUTER, log=self.router.log,
                                                                     a=NODES["a"][0], b=NODES["b"][0])))

    def carrier(self):
        """The node the router sends the VIP to ("a", "b"), or None."""
        route = nsexec(NS_RT, "ip", "route", "show", VIP, check=False).stdout
        for name, (addr, _) in NODES.items():
            if "via %s " % addr in route:
                return name
        return None

    def router_paths(self):
        """The AS paths of the router's routes to the VIP, by node."""
        out = self.router.birdc("show", "route", "for", VIP, "all")
        paths = {}
        for proto, path in re.findall(r"\[(\w+) [^\]]*\].*?BGP\.as_path: ([\d ]*)", out, re.S):
            paths[proto] = path.split()
        return paths

    def diagnose(self):
        out = ["router: %s" % self.router.birdc("show", "route", "all")]
        for node in getattr(self, "nodes", {}).values():
            out.append("%s: %s\n%s" % (node.name, node.ha(check=False), node.new_log()[-3000:]))
        return "\n".join(out)


lab = lab_fixture(Lab, lambda: missing_tools("network namespaces, tun", ("ip", BIRD, BIRDC), "iproute2, bird2",
                                             (SLUICE,)))


def carried_by(lab, name, timeout=30):
    if not wait_for(lambda: lab.carrier() == name, timeout):
        pytest.fail("the router does not send the VIP to %s (it uses %s)\n%s" % (name, lab.carrier(),
                                                                               lab.diagnose()))


def stays_with(lab, name, seconds):
    """The router sends the VIP to `name` all along `seconds` (sampled)."""
    deadline = time.time() + seconds
    while time.time() < deadline:
        seen = lab.carrier()
        assert seen == name, "the VIP moved to %s while %s should keep it\n%s" % (seen, name, lab.diagnose())
        time.sleep(0.2)


def test_preempt_false_keeps_traffic_on_the_backup_zone(lab):
    a, b = lab.nodes["a"], lab.nodes["b"]
    # The primary first: nobody carries the VIP, it takes it.
    a.start()
    carried_by(lab, "a")
    assert wait_for(lambda: a.route_to_router() == (0, "own"), 10), lab.diagnose()
    # The backup: the router sends it a's route (zone 0, better): its own
    # priority, and the router keeps a.
    b.start()
    assert wait_for(lambda: b.route_to_router() == (1, "own"), 15), lab.diagnose()
    assert wait_for(lambda: lab.router_paths().get("b") == ["65010", "65010"], 10), lab.router_paths()
    stays_with(lab, "a", 2)

    # The primary stops: the backup zone carries the VIP.
    a.stop()
    carried_by(lab, "b", 15)
    # The primary is back: it announces the VIP, held one behind zone b
    # (priority 2), and the router keeps the backup's route.
    # From the moment the router has a's route (a starting node's first,
    # then held), it keeps sending the VIP to b.
    a.start()
    assert wait_for(lambda: "a" in lab.router_paths(), 20), lab.diagnose()
    stays_with(lab, "b", HOLD_CHECK_S)
    if not wait_for(lambda: a.route_to_router() == (2, "held"), 10):
        pytest.fail("a is not held behind b: %r\n%s" % (a.route_to_router(), lab.diagnose()))
    assert wait_for(lambda: lab.router_paths().get("a") == ["65010"] * 3, 10), lab.router_paths()
    stays_with(lab, "b", 1)
    st = a.ha()
    assert st["preempt"] is False
    rt = st["announced"][0]["routers"][0]
    assert rt["neighbor"] == ROUTER and "held behind zone priority 1" in rt["why"], rt
    assert st["announced"][0]["priority"] == 2
    assert 'sluice_ha_priority{address="%s",neighbor="%s",state="held"} 2' % (VIP, ROUTER) in a.metrics()
    status = a.ctl("status")
    assert "preempt false" in status.stdout and "held behind zone priority 1" in status.stdout, status.stdout

    # The backup zone withdraws: the primary carries it, then goes back to
    # its own priority.
    assert b.ctl("drain").returncode == 0
    carried_by(lab, "a", 15)
    assert wait_for(lambda: a.route_to_router() == (0, "own"), 10), lab.diagnose()
    assert "no worse zone carries it" in a.new_log()
    assert b.ctl("undrain").returncode == 0

    # Forced: stop a, b carries, a back held; `sluice ha preempt` takes it.
    a.stop()
    carried_by(lab, "b", 15)
    a.start()
    assert wait_for(lambda: a.route_to_router() == (2, "held"), 20), lab.diagnose()
    out = a.ctl("preempt")
    assert out.returncode == 0 and "announcing with priority 0" in out.stdout, out
    carried_by(lab, "a", 10)
    assert a.route_to_router() == (0, "own")
    stays_with(lab, "a", 2)

    # A reload to ha.preempt true while held: a takes the VIP back.
    a.stop()
    carried_by(lab, "b", 15)
    a.start()
    assert wait_for(lambda: a.route_to_router() == (2, "held"), 20), lab.diagnose()
    a.write(preempt=True)
    a.proc.send_signal(signal.SIGHUP)
    carried_by(lab, "a", 20)
    assert wait_for(lambda: a.ha()["preempt"] is True, 5)
    a.stop()
    b.stop()


def test_preempt_true_takes_traffic_back(lab):
    a, b = lab.nodes["a"], lab.nodes["b"]
    b.start(preempt=True)
    a.start(preempt=True)
    carried_by(lab, "a")
    st = a.ha()
    assert st["preempt"] is True and "routers" not in st["announced"][0]
    a.stop()
    carried_by(lab, "b", 15)
    a.start(preempt=True)
    carried_by(lab, "a", 20)
    assert lab.router_paths().get("a") == ["65010"]
    # A forced preempt is refused: there is nothing to force.
    out = a.ctl("preempt")
    assert out.returncode != 0 and "ha.preempt is true" in (out.stdout + out.stderr), out
    a.stop()
    b.stop()
