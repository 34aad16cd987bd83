"""The HA lab (issue 12, item 4): a routed fabric in network namespaces where
LB nodes running `sluice l4` announce VIPs to two routers over BGP with
BFD through their own HA tier (the `ha:` section, src/ha: a BIRD managed
by sluice on each node), so that tests, `make demo-ha` and bench/ha.sh can
crash nodes, cut links, drain, lose a zone, and measure what the clients
see, in the four forwarding modes at once (DR, TUN, NAT, FullNAT).

                         client  (ns PREFIX+c)
           198.18.0.1-8 on lo: the client addresses flows start from
           ECMP route to the VIPs over both routers (L4 hash)
              172.31.1.2 |                        | 172.31.2.2
              172.31.1.1 |                        | 172.31.2.1
               +---------+---------+    +---------+---------+
               | router r1 (BIRD)  |    | router r2 (BIRD)  |  AS 65000, BGP passive,
               | ECMP merge paths  |    | ECMP merge paths  |  BFD, L4 multipath hash,
               | rule from REALNET |    | rule from REALNET |  NAT replies: table 112
               +---------+---------+    +---------+---------+
               10.12.0.1 |10.12.1.1     10.12.0.2 |10.12.1.2
     ==================== fabric bridge br0 (ns PREFIX+fab) =====================
       |          |           |           |            |         |         |
      a1 .11     a2 .12      b1 .21      b2 .22       s1        s2        s3
      zone a, priority 0     zone b, priority 1      10.12.1.101 .102     .103
      each: sluice l4 (XDP on fab0, own pin dir      reals: VIPs on lo (arp_ignore),
      and admin port, same services and seed,        HTTP :80 and who-echo :7000,
      l4.sync to the three others) with an `ha:`     `sluice l4 decap` (TUN),
      section: its BIRD (AS 65101; zone b one        default route: both routers
      AS-path prepend), its files in the lab dir
      fabric 10.12.0.x/24, REALNET 10.12.1.x/24, FullNAT local address 10.12.2.x

VIPs, each with port 80 (HTTP, "NAME CLIENT") and port 7000 (a line
protocol: "X" -> "NAME X", for long-lived flows):

  10.12.100.1  DR       announced by every node
  10.12.100.2  TUN      (IPIP) announced by every node
  10.12.100.3  DR       moved by keepalived VRRP between a1 and a2 when keepalived
                        runs (not in ha.announce; the routers reach it on-link, by ARP)
  10.12.100.4  NAT      announced by a1 and b1 only (see "NAT" below)
  10.12.100.5  FullNAT  announced by every node; each node SNATs to its own
                        local address 10.12.2.x (a1 .11, a2 .12, b1 .21, b2 .22)

Every LB node has the same `l4:` services (same seed, same reals in the
same order), so a flow that ECMP moves to another node goes to the same
real: DR and TUN flows survive the loss of a node with no state at all.
NAT and FullNAT flows need the node's connection entries: `l4.sync`
replicates them between the four nodes (UDP on the fabric, a shared key
file of mode 0600 in the lab's directory, refresh every second).

The routers prefer zone a (shorter AS path; equal paths are merged into an
ECMP kernel route), and use zone b only when no zone-a node announces.
Reals' replies in DR and TUN come from the VIP, straight to a router and
the client.

**FullNAT**: a real answers the local address the flow was SNATed to; its
default route takes the reply to a router, which routes it by the host
route the owner of that address announces (a VIP_LOCAL entry of sluice
l4). Every other node announces the same address as a stand-in (l4.sync
learns it from the owner's hellos) with 16 more AS-path prepends; when the
owner's route goes (crash, cut, drain), the routers send the replies to
the best stand-in (same zone first), which holds the synced entries.

**NAT**: a reply leaves the real from REALNET to the client. The routers
look such packets up in table 112 (`ip rule from REALNET lookup 112`),
where their BIRD keeps one route, `CLIENT_NET recursive VIP_NAT`: the
replies go wherever the NAT VIP itself is routed, so forward and return
follow the same announcements, with nothing more for the LB nodes to
announce. The NAT VIP is announced by one node per zone (a1; b1 in zone
b): a NAT reply must reach the node that holds the flow's entry, and for
a new flow the sync cannot be faster than the real's SYN-ACK; with two
nodes of a zone announcing it, the routers' ECMP would hash the forward
(client -> VIP) and the return (real -> client) independently, and about
half the new connections would lose their SYN-ACK at the node that has
not heard of them yet. (FullNAT has no such limit: each node's replies
come back to its own address. docs/ha.md, "NAT and FullNAT".)

The routers send no ICMP redirects and the reals accept none: a real that
cached "client via a1" (the router forwards NAT and FullNAT replies back
out of the interface they came in on) would keep sending to a1 after its
routes moved away.

Veth and XDP: every LB's bridge-side veth peer runs an XDP_PASS program
(a veth delivers XDP_TX frames only to a peer that runs NAPI), and the
senders (client, routers, reals) checksum in software (a frame XDP forwards
loses its "checksum pending" note). Everything lives in namespaces named
PREFIX+name, processes (sluice's BIRD daemons included) are killed, the
lab's bpffs is unmounted and its directory removed at close(), also when
a test failed (context manager, pytest fixture, atexit).

Usage (root, Debian's python3):

    with ha_lab.Lab(prefix="s12d-") as lab:
        lab.build()
        figures = ha_lab.run_event(lab, "crash", "a1", ha_lab.VIP_DR)
        print(ha_traffic.summary(figures["traffic"]))
        # every mode at once: run_event(lab, "crash", "a1", list(ha_lab.MODES.values()))
        #   -> figures["traffic"] = {vip: figures}
        # or by hand: t = ha_traffic.Traffic(lab, ha_lab.VIP_DR).start();
        # lab.cut_link("a2"); ...; t.stop() -> the figures

    python3 tests/integration/ha_lab.py --event cut --node a2 --repeat 5 --bfd 100x3
    python3 tests/integration/ha_lab.py --event crash --vip all
    python3 tests/integration/ha_lab.py --vrrp 1 --event crash --repeat 3
      (JSON lines: see run_event, run_vrrp_crash; --help for the rest)

Why the client spreads over both routers (ECMP with the L4 hash) rather
than using one: both routers' BIRD, ECMP and BFD are then on the path
of some flows, as with a real pair of edge routers, and a node's failure
must be handled by both.
"""
import atexit
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from netns_tools import ETHTOOL_STXCSUM, ethtool_set, hold_prefix, nsexec, pin_xdp_pass, sh  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SLUICE_BIN = os.environ.get("SLUICE_L4_BIN", os.path.join(ROOT, "build", "sluice"))

ROUTER_AS, LB_AS = 65000, 65101
NATRET_TABLE = 112
FABRIC, REALNET, LOCALNET = "10.12.0.0/24", "10.12.1.0/24", "10.12.2.0/24"
CLIENT_NET = "198.18.0.0/24"
CLIENTS = ["198.18.0.%d" % i for i in range(1, 9)]
ROUTERS = {"r1": {"fabric": "10.12.0.1", "realnet": "10.12.1.1", "client_side": ("172.31.1.1", "172.31.1.2")},
           "r2": {"fabric": "10.12.0.2", "realnet": "10.12.1.2", "client_side": ("172.31.2.1", "172.31.2.2")}}
# LB nodes: zone, priority (AS-path prepends), fabric address, REALNET
# address, admin port, FullNAT local address.
NODES = {"a1": ("a", 0, "10.12.0.11", "10.12.1.11", 9941, "10.12.2.11"),
         "a2": ("a", 0, "10.12.0.12", "10.12.1.12", 9942, "10.12.2.12"),
         "b1": ("b", 1, "10.12.0.21", "10.12.1.21", 9943, "10.12.2.21"),
         "b2": ("b", 1, "10.12.0.22", "10.12.1.22", 9944, "10.12.2.22")}
VIP_DR, VIP_TUN, VIP_VRRP, VIP_NAT, VIP_FNAT = "10.12.100.1", "10.12.100.2", "10.12.100.3", "10.12.100.4", \
    "10.12.100.5"
MODES = {"dr": VIP_DR, "tun": VIP_TUN, "nat": VIP_NAT, "fullnat": VIP_FNAT}   # the BGP-announced VIPs
BGP_VIPS = list(MODES.values())
NAT_NODES = ("a1", "b1")   # the NAT VIP's announcers: one per zone (see "NAT" above)
HTTP_PORT, ECHO_PORT = 80, 7000
SYNC_PORT = 7400
TUN_SOURCE = "10.12.99.0/24"
SEED = "0x5eed1a4b"


def mode_of(vip):
    return {v: m for m, v in MODES.items()}.get(vip, "dr")


def announcers(vip):
    """The nodes whose ha.announce lists vip."""
    return list(NAT_NODES) if vip == VIP_NAT else list(NODES)


def local_address(node):
    return NODES[node][5]


# A real: HTTP/1.1 on 80 ("NAME CLIENT-IP", keep-alive) and a line
# protocol on 7000 ("X\n" -> "NAME X\n") for long-lived flows. asyncio, so
# hundreds of connections cost no threads.
REAL_SERVER = r'''
import asyncio, sys
name = sys.argv[1]
async def http(reader, writer):
    peer = writer.get_extra_info("peername")[0]
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            body = ("%s %s\n" % (name, peer)).encode()
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
            await writer.drain()
    except Exception:
        pass
    writer.close()
async def echo(reader, writer):
    try:
        while True:
            line = await reader.readline()
            if not line:
                break
            writer.write(name.encode() + b" " + line)
            await writer.drain()
    except Exception:
        pass
    writer.close()
async def main():
    a = await asyncio.start_server(http, "0.0.0.0", int(sys.argv[2]), backlog=1024, reuse_address=True)
    b = await asyncio.start_server(echo, "0.0.0.0", int(sys.argv[3]), backlog=1024, reuse_address=True)
    print("serving", flush=True)
    await asyncio.gather(a.serve_forever(), b.serve_forever())
asyncio.run(main())
'''

_LIVE = []   # labs not closed yet, for the atexit safety net


@atexit.register
def _close_live_labs():
    for lab in list(_LIVE):
        lab.close()


def have_tools():
    """None when the lab can run here, else why not (for pytest.skip)."""
    if os.geteuid() != 0:
        return "needs root (network namespaces, XDP, BIRD)"
    for tool in ("ip", "bird", "birdc", "bpftool"):
        if not shutil.which(tool):
            return "needs %s" % tool
    if not os.path.exists(SLUICE_BIN):
        return "%s not built" % SLUICE_BIN
    return None


def wait_for(pred, timeout, step=0.05):
    """pred()'s first true value within timeout seconds, else its last one."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(step)
    return pred()


class Lab:
    """The lab. build() creates it; close() (or leaving the `with` block)
    removes everything it made."""

    def __init__(self, prefix="s12l-", workdir=None, bfd=(100, 3), reals=3,
                 sluice_bin=SLUICE_BIN, log=None, sync=True):
        # The LB nodes announce through sluice's own HA tier (the `ha:`
        # section of each node's sluice l4, which runs its BIRD).
        self.prefix = prefix
        self.prefix_lock = None      # hold_prefix(), from build() to close()
        self.sync = sync         # False: no l4.sync (to see what it buys: NAT/FullNAT flows then break)
        self.bfd_interval_ms, self.bfd_multiplier = bfd
        self.sluice_bin = sluice_bin
        self.reals = {"s%d" % i: "10.12.1.%d" % (100 + i) for i in range(1, reals + 1)}
        self.own_workdir = workdir is None
        self.dir = workdir or tempfile.mkdtemp(prefix=prefix, dir="/tmp")
        os.makedirs(self.dir, exist_ok=True)
        self.bpffs = os.path.join(self.dir, "bpffs")
        self.namespaces = []
        self.procs = {}          # key ("bird", node) / ("l4", node) / ... -> Popen
        self.mounted = False
        self.keepalived_nodes = []
        self.event_at = None     # when the last event method took effect (time.time())
        self.log = log or (lambda msg: print("[ha_lab] " + msg, flush=True))
        _LIVE.append(self)

    # ---------------------------------------------------------------- naming
    def ns(self, name):
        return self.prefix + name

    def node_dir(self, name):
        path = os.path.join(self.dir, name)
        os.makedirs(path, exist_ok=True)
        return path

    def pin_dir(self, node):
        return os.path.join(self.bpffs, node)

    # --------------------------------------------------------------- context
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -------------------------------------------------------------- building
    def build(self):
        """The whole lab, up to ECMP routes at both routers for every BGP VIP."""
        if self.prefix_lock is None:
            self.prefix_lock = hold_prefix(self.prefix, log=self.log)
        self.remove_leftovers()
        self._namespaces_and_links()
        self._addresses_and_routes()
        self.start_reals()
        for r in ROUTERS:
            self.start_router_bird(r)
        self.write_sync_key()
        for node in NODES:
            self.write_l4_config(node)
            self.start_l4(node)
        for node in NODES:
            self.wait_l4_ready(node)
        self.wait_routes(self.expected_routes(), timeout=30)
        return self

    def remove_leftovers(self):
        """Namespaces with this prefix left by a run that could not clean
        up (a SIGKILLed pytest): their processes, links and pins go. (A
        live run's cannot be here: build() holds the prefix first.)"""
        names = sh("ip", "netns", "list").stdout.split()
        stale = [n for n in names if n.startswith(self.prefix)]
        for ns in stale:
            self.log("removing leftover namespace " + ns)
            self._kill_ns_pids(ns)
            sh("ip", "netns", "del", ns, check=False)
        for line in open("/proc/mounts").read().splitlines():
            mnt = line.split()[1]
            if re.match(r"/tmp/%s[^/]*/bpffs$" % re.escape(self.prefix), mnt) and mnt != self.bpffs:
                self.log("unmounting leftover " + mnt)
                if sh("umount", mnt, check=False).returncode == 0:
                    shutil.rmtree(os.path.dirname(mnt), ignore_errors=True)

    def _add_ns(self, name):
        ns = self.ns(name)
        sh("ip", "netns", "add", ns)
        self.namespaces.append(ns)
        nsexec(ns, "ip", "link", "set", "lo", "up")
        return ns

    def _veth(self, ns_a, if_a, ns_b, if_b):
        sh("ip", "link", "add", if_a, "netns", ns_a, "numtxqueues", "2", "numrxqueues", "2", "type", "veth",
           "peer", "name", if_b, "netns", ns_b, "numtxqueues", "2", "numrxqueues", "2")

    def _namespaces_and_links(self):
        os.makedirs(self.bpffs, exist_ok=True)
        sh("mount", "-t", "bpf", "bpf", self.bpffs)
        self.mounted = True
        pin_xdp_pass(self.bpffs + "/xdp_pass")
        fab = self._add_ns("fab")
        nsexec(fab, "ip", "link", "add", "br0", "type", "bridge")
        nsexec(fab, "ip", "link", "set", "br0", "up")
        client = self._add_ns("c")
        for name in list(ROUTERS) + list(NODES) + list(self.reals):
            ns = self._add_ns(name)
            self._veth(ns, "fab0", fab, "p-" + name)
            nsexec(fab, "ip", "link", "set", "p-" + name, "master", "br0", "up")
            nsexec(ns, "ip", "link", "set", "fab0", "up")
            if name in NODES:
                # The LB's forwarder sends with XDP_TX: its veth peer must run NAPI.
                nsexec(fab, "ip", "link", "set", "dev", "p-" + name, "xdpdrv", "pinned",
                       self.bpffs + "/xdp_pass")
                # XDP on a veth sees every frame the bridge sends it, whatever
                # its destination MAC (a NIC would filter them): with unknown
                # unicast flooded, a node would forward the frames of a node
                # whose link is cut and hide the cut. So LB ports get no
                # flooded unicast, and the bridge knows each LB's MAC for
                # good (as a switch does; frames for a dead port are lost).
                mac = json.loads(nsexec(ns, "ip", "-j", "link", "show", "dev", "fab0").stdout)[0]["address"]
                nsexec(fab, "bridge", "fdb", "replace", mac, "dev", "p-" + name, "master", "static")
                nsexec(fab, "bridge", "link", "set", "dev", "p-" + name, "flood", "off")
            else:
                ethtool_set(ns, "fab0", ETHTOOL_STXCSUM, 0)
        for r in ROUTERS:
            self._veth(client, "to-" + r, self.ns(r), "to-c")
            nsexec(client, "ip", "link", "set", "to-" + r, "up")
            nsexec(self.ns(r), "ip", "link", "set", "to-c", "up")
            ethtool_set(client, "to-" + r, ETHTOOL_STXCSUM, 0)
            ethtool_set(self.ns(r), "to-c", ETHTOOL_STXCSUM, 0)

    def _sysctl(self, ns, *settings):
        nsexec(ns, "sysctl", "-q", "-w", *settings)

    def _addresses_and_routes(self):
        client = self.ns("c")
        for addr in CLIENTS:
            nsexec(client, "ip", "addr", "add", addr + "/32", "dev", "lo")
        # The client spreads flows over both routers by their L4 hash.
        self._sysctl(client, "net.ipv4.fib_multipath_hash_policy=1")
        hops = []
        for r, info in ROUTERS.items():
            rtr, cli = info["client_side"]
            nsexec(client, "ip", "addr", "add", cli + "/24", "dev", "to-" + r)
            hops += ["nexthop", "via", rtr, "dev", "to-" + r]
        nsexec(client, "ip", "route", "add", "10.12.100.0/24", "src", CLIENTS[0], *hops)
        for r, info in ROUTERS.items():
            ns = self.ns(r)
            rtr, cli = info["client_side"]
            nsexec(ns, "ip", "addr", "add", rtr + "/24", "dev", "to-c")
            nsexec(ns, "ip", "addr", "add", info["fabric"] + "/24", "dev", "fab0")
            nsexec(ns, "ip", "addr", "add", info["realnet"] + "/24", "dev", "fab0")
            nsexec(ns, "ip", "route", "add", CLIENT_NET, "via", cli)
            self._sysctl(ns, "net.ipv4.ip_forward=1", "net.ipv4.fib_multipath_hash_policy=1",
                         "net.ipv4.conf.all.rp_filter=0", "net.ipv4.conf.default.rp_filter=0",
                         # NAT and FullNAT replies leave by the interface
                         # they came in on: no redirect (a real would
                         # cache "via a1" past a1's death).
                         "net.ipv4.conf.all.send_redirects=0", "net.ipv4.conf.fab0.send_redirects=0")
            # NAT replies come from the reals' subnet: they go where the LB
            # nodes' NAT-return route says (BIRD fills the table).
            nsexec(ns, "ip", "rule", "add", "from", REALNET, "lookup", str(NATRET_TABLE), "priority", "100")
            # The VRRP VIP is on the fabric (the keepalived master answers ARP).
            nsexec(ns, "ip", "route", "add", VIP_VRRP + "/32", "dev", "fab0")
        for node, (_, _, fabric, realnet, _, _) in NODES.items():
            ns = self.ns(node)
            nsexec(ns, "ip", "addr", "add", fabric + "/24", "dev", "fab0")
            nsexec(ns, "ip", "addr", "add", realnet + "/24", "dev", "fab0")
            self.client_route(node)
            # The HA tier puts the VIPs and local addresses on its tun
            # devices, so they are this host's addresses: answer ARP only
            # for the fabric's own (keepalived's VIP is on fab0).
            self._sysctl(ns, "net.ipv4.conf.all.arp_ignore=1", "net.ipv4.conf.fab0.arp_ignore=1",
                         "net.ipv4.conf.all.arp_announce=2", "net.ipv4.conf.fab0.arp_announce=2")
        for real, addr in self.reals.items():
            ns = self.ns(real)
            nsexec(ns, "ip", "addr", "add", addr + "/24", "dev", "fab0")
            for vip in (VIP_DR, VIP_TUN, VIP_VRRP):
                nsexec(ns, "ip", "addr", "add", vip + "/32", "dev", "lo")
            self._sysctl(ns, "net.ipv4.conf.all.arp_ignore=1", "net.ipv4.conf.fab0.arp_ignore=1",
                         "net.ipv4.conf.all.arp_announce=2", "net.ipv4.conf.fab0.arp_announce=2",
                         "net.ipv4.conf.all.accept_redirects=0", "net.ipv4.conf.fab0.accept_redirects=0")
            nsexec(ns, "ip", "route", "add", "default", "nexthop", "via", ROUTERS["r1"]["realnet"],
                   "nexthop", "via", ROUTERS["r2"]["realnet"])

    # ------------------------------------------------------------- processes
    def spawn(self, key, ns, args, log_name=None, **kw):
        """A process in namespace ns (`ip netns exec` execs it: the Popen's
        pid is the process itself), its output in the node's directory."""
        if log_name:
            out = open(os.path.join(self.node_dir(key[1]), log_name), "ab")
            kw.setdefault("stdout", out)
            kw.setdefault("stderr", subprocess.STDOUT)
        p = subprocess.Popen(["ip", "netns", "exec", ns] + list(args), **kw)
        self.procs[key] = p
        return p

    def stop_proc(self, key, sig=signal.SIGTERM, timeout=10):
        p = self.procs.pop(key, None)
        if p is None or p.poll() is not None:
            return None if p is None else p.returncode
        p.send_signal(sig)
        try:
            p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(timeout=5)
        return p.returncode

    def start_reals(self):
        for real in self.reals:
            self.spawn(("srv", real), self.ns(real), [sys.executable, "-c", REAL_SERVER, real,
                                                       str(HTTP_PORT), str(ECHO_PORT)], "server.log")
            out = nsexec(self.ns(real), self.sluice_bin, "l4", "decap", "--interface", "fab0", "--pin-dir",
                         "%s/decap-%s" % (self.bpffs, real), check=False)
            if out.returncode != 0:
                raise RuntimeError("sluice l4 decap on %s: %s" % (real, out.stderr))
        for real in self.reals:
            if not wait_for(lambda: "serving" in self.read(real, "server.log"), 10):
                raise RuntimeError("real %s did not start: %s" % (real, self.read(real, "server.log")))

    def read(self, node, name):
        try:
            with open(os.path.join(self.dir, node, name), errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    # ------------------------------------------------------------------ BIRD
    def bfd_block(self):
        return ('protocol bfd {\n  interface "fab0" {\n    min rx interval %d ms;\n    min tx interval %d ms;\n'
                '    idle tx interval 300 ms;\n    multiplier %d;\n  };\n}\n'
                % (self.bfd_interval_ms, self.bfd_interval_ms, self.bfd_multiplier))

    # Session timers for a lab that breaks things on purpose: reconnect
    # within a second or two after an error instead of BIRD's 60 s.
    BGP_TIMERS = ("  hold time 9;\n  keepalive time 3;\n  connect delay time 1;\n  connect retry time 2;\n"
                  "  error wait time 1, 5;\n  bfd on;\n")

    def router_bird_config(self, router):
        info = ROUTERS[router]
        conf = [
            'log "%s/bird.log" all;\n' % self.node_dir(router),
            "router id %s;\n" % info["fabric"],
            # Session state changes in the log: session_flaps() counts them.
            "debug protocols { states };\n",
            "protocol device { scan time 10; }\n",
            # The VIP and local-address routes into the main table, equal
            # paths merged (ECMP).
            "protocol kernel kmain {\n  ipv4 { import none; export all; };\n  merge paths on;\n}\n",
            # NAT replies (ip rule from REALNET lookup 112) go where the NAT
            # VIP goes: a recursive route resolved through the LB nodes'
            # announcement of VIP_NAT, so it follows it (withdrawn, moved to
            # zone b) with no other announcement.
            "ipv4 table natret;\n",
            "protocol static natret_route {\n  ipv4 { table natret; };\n  igp table master4;\n"
            "  route %s recursive %s;\n}\n" % (CLIENT_NET, VIP_NAT),
            "protocol kernel knatret {\n  ipv4 { table natret; import none; export all; };\n"
            "  kernel table %d;\n  merge paths on;\n}\n" % NATRET_TABLE,
            self.bfd_block(),
            "template bgp lbnode {\n  local %s as %d;\n  passive on;\n%s  ipv4 { import all; export none; };\n}\n"
            % (info["fabric"], ROUTER_AS, self.BGP_TIMERS),
        ]
        for node, v in NODES.items():
            conf.append("protocol bgp lb_%s from lbnode { neighbor %s as %d; }\n" % (node, v[2], LB_AS))
        return "".join(conf)

    def bird_socket(self, node):
        return os.path.join(self.node_dir(node), "bird.ctl")

    def start_bird(self, node, config_text):
        d = self.node_dir(node)
        conf = os.path.join(d, "bird.conf")
        with open(conf, "w") as f:
            f.write(config_text)
        p = self.spawn(("bird", node), self.ns(node), ["bird", "-f", "-c", conf, "-s", self.bird_socket(node),
                                                       "-P", os.path.join(d, "bird.pid")], "bird.out")
        if not wait_for(lambda: p.poll() is not None or os.path.exists(self.bird_socket(node))
                        and self.birdc(node, "show status").returncode == 0, 10) or p.poll() is not None:
            raise RuntimeError("bird on %s did not start: %s %s" % (node, self.read(node, "bird.out"),
                                                                    self.read(node, "bird.log")))
        return p

    def start_router_bird(self, router):
        return self.start_bird(router, self.router_bird_config(router))

    def birdc(self, node, *cmd):
        return nsexec(self.ns(node), "birdc", "-s", self.bird_socket(node), *cmd, check=False)

    def bgp_states(self, node):
        """{protocol name: state} of the BGP sessions of a BIRD."""
        out = self.birdc(node, "show", "protocols").stdout
        return {m.group(1): m.group(2) for m in re.finditer(r"^(\S+)\s+BGP\s+\S+\s+\S+\s+\S+\s+(\S+)", out, re.M)}

    def session_flaps(self, since=None):
        """How many times a router's BGP session to an LB node went down,
        from both routers' logs (since: an earlier return value's "marks",
        to count only what came after)."""
        marks, count = {}, 0
        for r in ROUTERS:
            text = self.read(r, "bird.log")
            start = (since or {}).get(r, 0)
            count += len(re.findall(r"lb_\w+: State changed to stop", text[start:]))
            marks[r] = len(text)
        return count, marks

    def session_down_at(self, node, marks):
        """{router: epoch seconds} when each router's log says its session
        to node stopped, after marks (from session_flaps)."""
        out = {}
        for r in ROUTERS:
            text = self.read(r, "bird.log")[marks.get(r, 0):]
            m = re.search(r"^(\S+ \S+) <TRACE> lb_%s: State changed to stop" % node, text, re.M)
            if m:
                stamp, _, ms = m.group(1).partition(".")
                out[r] = time.mktime(time.strptime(stamp, "%Y-%m-%d %H:%M:%S")) + int(ms or 0) / 1000.0
        return out

    # ------------------------------------------------------------- announcing
    def withdraw(self, node):
        """Withdraw the node's VIPs, sessions kept (the first step of a
        drain): `sluice ha drain` (its own FullNAT local address stays
        announced until it stops)."""
        out = nsexec(self.ns(node), self.sluice_bin, "ha", "drain", "-c", self.l4_config_path(node), check=False)
        if out.returncode != 0:
            raise RuntimeError("sluice ha drain on %s: %s %s" % (node, out.stdout, out.stderr))

    def undrain(self, node):
        return nsexec(self.ns(node), self.sluice_bin, "ha", "undrain", "-c", self.l4_config_path(node), check=False)

    def ha_status(self, node):
        """`sluice ha status --json` of the node (None when it does not answer)."""
        out = nsexec(self.ns(node), self.sluice_bin, "ha", "status", "--json", "-c", self.l4_config_path(node),
                     check=False)
        try:
            return json.loads(out.stdout) if out.returncode == 0 else None
        except ValueError:
            return None

    # ------------------------------------------------------------- sluice l4
    def l4_config_path(self, node):
        return os.path.join(self.node_dir(node), "l4.yaml")

    def sync_key_path(self):
        return os.path.join(self.dir, "sync.key")

    def write_sync_key(self):
        """The group's l4.sync key: 32 random bytes, hex, mode 0600 (sluice
        refuses a key others can read)."""
        fd = os.open(self.sync_key_path(), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(os.urandom(32).hex() + "\n")
        os.chmod(self.sync_key_path(), 0o600)

    def announce_list(self, node):
        """What the node may announce (ha.announce): the BGP VIPs it serves
        (the NAT VIP on NAT_NODES only; keepalived's VIP never) and every
        node's FullNAT local address (its own, the others' as stand-ins)."""
        vips = [v for v in BGP_VIPS if node in announcers(v)]
        return vips + [local_address(n) for n in NODES]

    def ha_section(self, node):
        """The node's `ha:` section: BGP with BFD to both routers, zone b one
        AS-path prepend behind, BIRD managed by sluice with its files
        (control socket, configuration, pid, log) in the node's directory.
        min_healthy is every real: a node that comes back announces only
        once its health checks agree with the others', so its Maglev table
        sends each flow to the same real as theirs."""
        zone, priority, fabric, _, _, _ = NODES[node]
        d = self.node_dir(node)
        neighbors = "".join("    - { address: %s, asn: %d, hold_time: 9s }\n" % (info["fabric"], ROUTER_AS)
                            for info in ROUTERS.values())
        return ("ha:\n  node: %s\n  zone: %s\n  priority: %d\n  asn: %d\n  router_id: %s\n  neighbors:\n%s"
                "  bfd: { interval: %dms, multiplier: %d }\n  min_healthy: %d\n  announce: [%s]\n"
                "  bird:\n    mode: managed\n    control_socket: %s\n    config_file: %s\n    pid_file: %s\n"
                "    log_file: %s\n"
                % (node, zone, priority, LB_AS, fabric, neighbors, self.bfd_interval_ms, self.bfd_multiplier,
                   len(self.reals), ", ".join(self.announce_list(node)), self.bird_socket(node),
                   os.path.join(d, "bird.conf"), os.path.join(d, "bird.pid"), os.path.join(d, "bird.log")))

    def sync_section(self, node):
        """l4.sync to the three other nodes over the fabric, with the shared
        key; a refresh every second (the lab restores nodes quickly)."""
        if not self.sync:
            return ""
        peers = ", ".join("%s:%d" % (v[2], SYNC_PORT) for n, v in NODES.items() if n != node)
        return ("  sync:\n    listen: %s:%d\n    peers: [%s]\n    key_file: %s\n    refresh: 1s\n"
                % (NODES[node][2], SYNC_PORT, peers, self.sync_key_path()))

    def services(self, node):
        reals = "".join('        - "%s:%%d"\n' % a for a in self.reals.values())
        out = []
        for vip, mode in ((VIP_DR, "dr"), (VIP_TUN, "tun"), (VIP_VRRP, "dr"), (VIP_NAT, "nat"),
                          (VIP_FNAT, "fullnat")):
            local = "      local_addresses: [%s]\n" % local_address(node) if mode == "fullnat" else ""
            for port in (HTTP_PORT, ECHO_PORT):
                # A real is taken out after 3 failed checks of 1 s: on a
                # busy machine one slow answer must not move flows.
                out.append('    - vip: "%s:%d"\n      protocol: tcp\n      mode: %s\n      scheduler: maglev\n%s'
                           '      health_check: { type: tcp, interval: 1s, timeout: 1s, rise: 2, fall: 3 }\n'
                           '      reals:\n%s' % (vip, port, mode, local, reals.replace("%d", str(port))))
        return "".join(out)

    def write_l4_config(self, node):
        text = ("admin:\n  listen: 127.0.0.1:%d\nl4:\n  interfaces: [fab0]\n  xdp_mode: native\n  seed: %s\n"
                "  tun_source_prefix: %s\n%s  services:\n%s%s"
                % (NODES[node][4], SEED, TUN_SOURCE, self.sync_section(node), self.services(node),
                   self.ha_section(node)))
        with open(self.l4_config_path(node), "w") as f:
            f.write(text)

    def start_l4(self, node):
        self.log_offset = getattr(self, "log_offset", {})
        self.log_offset[node] = len(self.read(node, "l4.log"))
        return self.spawn(("l4", node), self.ns(node), [self.sluice_bin, "l4", "-c", self.l4_config_path(node),
                                                        "--pin-dir", self.pin_dir(node)], "l4.log")

    def l4_log(self, node):
        """The log of the node's current sluice l4 run."""
        return self.read(node, "l4.log")[self.log_offset.get(node, 0):]

    def pools(self, node):
        out = nsexec(self.ns(node), sys.executable, "-c",
                     "import urllib.request;print(urllib.request.urlopen("
                     "'http://127.0.0.1:%d/api/pools', timeout=2).read().decode())" % NODES[node][4], check=False)
        if out.returncode != 0:
            return None
        doc = json.loads(out.stdout)
        return doc.get("pools", doc) if isinstance(doc, dict) else doc

    def l4_ready(self, node):
        """sluice l4 runs, is attached, and has every real of every service up."""
        p = self.procs.get(("l4", node))
        if p is None or p.poll() is not None or "sluice l4 running" not in self.l4_log(node):
            return False
        pools = self.pools(node)
        return bool(pools) and all(b.get("state") == "up" for pool in pools for b in pool.get("backends", []))

    def wait_l4_ready(self, node, timeout=20):
        if not wait_for(lambda: self.l4_ready(node) or self.procs[("l4", node)].poll() is not None, timeout) \
                or not self.l4_ready(node):
            raise RuntimeError("sluice l4 on %s not ready:\n%s" % (node, self.l4_log(node)[-3000:]))

    # ----------------------------------------------------------------- routes
    def primary_nodes(self):
        return [n for n, v in NODES.items() if v[1] == 0]

    def zone_nodes(self, zone):
        return [n for n, v in NODES.items() if v[0] == zone]

    def expected_routes(self, gone=()):
        """{address: [nodes]}: where both routers should route each BGP VIP
        and each node's FullNAT local address while the nodes in gone
        announce nothing: a VIP over its announcers of the best zone left
        (ECMP); a local address to its owner, else (stand-ins) to the
        other nodes of the best zone left."""
        live = [n for n in NODES if n not in gone]

        def best(nodes):
            if not nodes:
                return []
            top = min(NODES[n][1] for n in nodes)
            return sorted(n for n in nodes if NODES[n][1] == top)
        want = {vip: best([n for n in announcers(vip) if n in live]) for vip in BGP_VIPS}
        for node in NODES:
            want[local_address(node)] = [node] if node in live else best(live)
        return want

    def natret_nexthops(self, router):
        """The LB nodes the router sends NAT replies to (table 112)."""
        return self.kernel_nexthops(router, CLIENT_NET, table=NATRET_TABLE)

    def kernel_nexthops(self, router, vip, table=None):
        """The LB nodes the router's kernel sends vip to (sorted names)."""
        prefix = vip if "/" in vip else vip + "/32"
        out = nsexec(self.ns(router), "ip", "-j", "route", "show", prefix,
                     *(("table", str(table)) if table else ())).stdout
        by_addr = {v[2]: n for n, v in NODES.items()}
        hops = []
        for route in json.loads(out or "[]"):
            if "nexthops" in route:
                hops += [h.get("gateway") for h in route["nexthops"]]
            elif route.get("gateway"):
                hops.append(route["gateway"])
        return sorted(by_addr.get(h, h) for h in hops)

    def routes_are(self, want):
        """want: {address: [nodes]}; true when both routers' kernels say so
        (and their NAT replies follow the NAT VIP, when want has it)."""
        return all(self.kernel_nexthops(r, vip) == sorted(nodes) for r in ROUTERS for vip, nodes in want.items()) \
            and all(self.natret_nexthops(r) == sorted(want[VIP_NAT]) for r in ROUTERS if VIP_NAT in want)

    def wait_routes(self, want, timeout=15):
        """Wait until both routers route each VIP over exactly these nodes;
        returns the seconds it took."""
        t0 = time.time()
        if not wait_for(lambda: self.routes_are(want), timeout, step=0.02):
            got = {r: dict({vip: self.kernel_nexthops(r, vip) for vip in want}, natret=self.natret_nexthops(r))
                   for r in ROUTERS}
            raise RuntimeError("routes not as wanted %s: %s; BGP: %s" % (want, got,
                                                                         {r: self.bgp_states(r) for r in ROUTERS}))
        return time.time() - t0

    def bird_routes(self, router, vip):
        """BIRD's view at a router: [(node, AS path, best?)] for vip."""
        out = self.birdc(router, "show", "route", "for", vip + "/32", "all").stdout
        by_addr = {v[2]: n for n, v in NODES.items()}
        routes = []
        for block in re.split(r"\n(?=\S|\s+unicast)", out):
            m = re.search(r"\[lb_(\w+) [^\]]*\]\s*(\*)?", block)
            path = re.search(r"BGP\.as_path: ([\d ]*)", block)
            hop = re.search(r"BGP\.next_hop: (\S+)", block)
            if m and path:
                routes.append((by_addr.get(hop.group(1) if hop else "", m.group(1)), path.group(1).split(),
                               bool(m.group(2))))
        return routes

    # ----------------------------------------------------------------- events
    def _kill(self, key):
        p = self.procs.get(key)
        if p is not None and p.poll() is None:
            p.kill()
            p.wait(timeout=5)

    def detach(self, node, remove_maps=False):
        """Take the node's forwarder off (maps stay pinned for a restart,
        unless remove_maps: a power loss takes them too)."""
        return nsexec(self.ns(node), self.sluice_bin, "l4", "detach", "--pin-dir", self.pin_dir(node),
                      *(["--remove-maps"] if remove_maps else []), check=False)

    def bird_pid(self, node):
        """The pid of the BIRD sluice started on an LB node (its pid file), or None."""
        try:
            with open(os.path.join(self.node_dir(node), "bird.pid")) as f:
                pid = int(f.read().split()[0])
            os.kill(pid, 0)
            return pid
        except (FileNotFoundError, IndexError, ValueError, ProcessLookupError):
            return None

    def client_route(self, node):
        """The way to the clients, for the NAT and FullNAT entries a node
        imports from its peers (l4.sync resolves their next hop by the
        node's routes). The kernel deletes it when fab0 goes down, so every
        link-up puts it back, as an operator's network config would."""
        nsexec(self.ns(node), "ip", "route", "replace", CLIENT_NET, "nexthop", "via", ROUTERS["r1"]["fabric"],
               "nexthop", "via", ROUTERS["r2"]["fabric"])

    def link_up(self, node):
        nsexec(self.ns(node), "ip", "link", "set", "fab0", "up")
        self.client_route(node)

    def crash_node(self, node, silent=False):
        """The node's sluice l4 dies (kill -9), then its data path is taken
        away (the pinned forwarder would otherwise go on forwarding, as a
        crashed process's XDP program does). The kernel closes the dead
        process's tun devices: their addresses vanish and the node's BIRD
        (sluice's, which outlives it, as in production) withdraws its
        routes at once, sessions kept. keepalived, when it runs there,
        is killed too. silent=True: a power loss: the fabric link goes
        down first, so nothing enters or leaves the node from that instant
        and only BFD (or VRRP's timer) can tell; its BIRD dies too, and
        its pinned maps go (it comes back with empty ones)."""
        if silent:
            nsexec(self.ns(node), "ip", "link", "set", "fab0", "down")
        self.event_at = time.time()   # the link is down, or the kills below take effect at once
        self._kill(("l4", node))
        if silent:
            self._kill_pid_file(os.path.join(self.node_dir(node), "bird.pid"))
        if node in self.keepalived_nodes:
            self.stop_keepalived(node, sig=signal.SIGKILL)
            nsexec(self.ns(node), "ip", "addr", "del", VIP_VRRP + "/32", "dev", "fab0", check=False)
        out = self.detach(node, remove_maps=silent)
        if out.returncode != 0:
            raise RuntimeError("detach on %s: %s" % (node, out.stderr))

    def cut_link(self, node):
        """The node's fabric link goes down (ip link set down on its veth):
        its processes live on; the routers notice only by BFD."""
        nsexec(self.ns(node), "ip", "link", "set", "fab0", "down")
        self.event_at = time.time()

    def restore_link(self, node, timeout=20):
        """The link comes back. The HA tier announces again by itself once
        the forwarder serves (the link is up) and every real is up again
        (ha.min_healthy; its checks failed while cut), over BGP sessions
        that BIRD re-establishes."""
        self.link_up(node)
        self.wait_l4_ready(node, timeout=timeout)

    def drain(self, node, settle=1.0):
        """Graceful: `sluice ha drain` withdraws the node's VIPs (its own
        FullNAT local address stays, for the replies of the flows it still
        holds), the lab waits until both routers moved them, then stops
        sluice l4 (SIGTERM: the HA tier closes its devices first, the local
        address goes to a stand-in; the forwarder stays attached, serving
        stragglers) and takes the data path off."""
        self.withdraw(node)
        self.event_at = time.time()
        others = [n for n in NODES if n != node and self.procs.get(("l4", n)) and self.procs[("l4", n)].poll() is None]
        if others:
            want = self.expected_routes(gone=[n for n in NODES if n not in others])
            want[local_address(node)] = [node]
            self.wait_routes(want)
        time.sleep(settle)
        self.stop_proc(("l4", node))
        self.detach(node)

    def restore_node(self, node, timeout=20):
        """After a crash or a drain: sluice l4 again. It takes over its
        pinned maps and attaches, finds its BIRD by the control socket (or
        starts one after a power loss) and announces once every real is up."""
        if self.procs.get(("l4", node)) is None or self.procs[("l4", node)].poll() is not None:
            self.link_up(node)
            self.start_l4(node)
            self.wait_l4_ready(node, timeout=timeout)

    def lose_zone(self, zone, silent=False):
        first = None
        for node in self.zone_nodes(zone):
            self.crash_node(node, silent=silent)
            first = first or self.event_at
        self.event_at = first

    def restore_zone(self, zone):
        """Every node of the zone back, started together (as after a power
        cut of the zone); event_at is when the first one starts."""
        nodes = [n for n in self.zone_nodes(zone)
                 if self.procs.get(("l4", n)) is None or self.procs[("l4", n)].poll() is not None]
        self.event_at = time.time()
        for node in nodes:
            self.link_up(node)
            self.start_l4(node)
        for node in nodes:
            self.wait_l4_ready(node)

    def heal(self, timeout=30):
        """Back to the built state after whatever a test did: every link up,
        every node's sluice l4 running and undrained, keepalived stopped,
        the routers on the primary zone."""
        for node in list(self.keepalived_nodes):
            self.stop_keepalived(node)
        for node in NODES:
            nsexec(self.ns(node), "ip", "addr", "del", VIP_VRRP + "/32", "dev", "fab0", check=False)
            link = nsexec(self.ns(node), "ip", "-j", "link", "show", "dev", "fab0").stdout
            l4 = self.procs.get(("l4", node))
            if (l4 is not None and l4.poll() is None) and "UP" not in json.loads(link)[0].get("flags", []):
                self.restore_link(node)
            self.restore_node(node)
            self.undrain(node)
        self.wait_routes(self.expected_routes(), timeout=timeout)

    def sessions_established(self):
        """Every BGP session of both routers is up."""
        return all(self.bgp_states(r) and all(s == "Established" for s in self.bgp_states(r).values())
                   for r in ROUTERS)

    # ------------------------------------------------------------ keepalived
    def keepalived_config(self, node, advert_int, priority):
        # Adverts under a second need VRRPv3 (v2 counts whole seconds).
        version = "  vrrp_version 3\n" if float(advert_int) < 1 else ""
        return ("global_defs {\n  router_id %s\n  vrrp_garp_master_repeat 3\n  vrrp_garp_master_delay 1\n"
                "  script_user root\n%s}\n"
                "vrrp_instance lab {\n  state BACKUP\n  interface fab0\n  virtual_router_id 112\n"
                "  priority %d\n  advert_int %s\n  virtual_ipaddress {\n    %s/32 dev fab0\n  }\n}\n"
                % (node, version, priority, advert_int, VIP_VRRP))

    def start_keepalived(self, nodes=("a1", "a2"), advert_int=1):
        """keepalived VRRP moving VIP_VRRP between nodes (the first has the
        higher priority), in the foreground with its own files."""
        for i, node in enumerate(nodes):
            d = self.node_dir(node)
            conf = os.path.join(d, "keepalived.conf")
            with open(conf, "w") as f:
                f.write(self.keepalived_config(node, advert_int, 150 - 50 * i))
            self.spawn(("keepalived", node), self.ns(node),
                       ["keepalived", "-n", "-l", "-D", "-G", "-P", "-f", conf, "-p", os.path.join(d, "ka.pid"),
                        "-r", os.path.join(d, "ka-vrrp.pid"), "-c", os.path.join(d, "ka-check.pid"),
                        "-b", os.path.join(d, "ka-bfd.pid")], "keepalived.log")
            self.keepalived_nodes.append(node)

    def vrrp_master(self):
        """The node holding VIP_VRRP on its fabric interface, or None."""
        for node in self.keepalived_nodes:
            out = nsexec(self.ns(node), "ip", "-4", "addr", "show", "dev", "fab0", check=False).stdout
            if " %s/32 " % VIP_VRRP in out:
                return node
        return None

    def stop_keepalived(self, node, sig=signal.SIGTERM):
        """The parent and its VRRP child (with SIGKILL, the child is killed
        first, by its pid file)."""
        child = None
        try:
            with open(os.path.join(self.node_dir(node), "ka-vrrp.pid")) as f:
                child = int(f.read().strip() or 0)
        except (FileNotFoundError, ValueError):
            pass
        if sig == signal.SIGKILL:
            # The child first: it would take its parent's death as a stop
            # and send a priority-0 advert, which a crashed node never does.
            if child:
                try:
                    os.kill(child, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            self._kill(("keepalived", node))
        else:
            self.stop_proc(("keepalived", node), sig)
        if node in self.keepalived_nodes:
            self.keepalived_nodes.remove(node)

    # -------------------------------------------------------------- teardown
    def _kill_pid_file(self, path):
        try:
            with open(path) as f:
                os.kill(int(f.read().split()[0]), signal.SIGKILL)
        except (FileNotFoundError, IndexError, ValueError, ProcessLookupError):
            pass

    def _kill_ns_pids(self, ns):
        out = sh("ip", "netns", "pids", ns, check=False).stdout.split()
        for pid in out:
            try:
                os.kill(int(pid), signal.SIGKILL)
            except (ProcessLookupError, ValueError):
                pass

    def close(self):
        """Everything this lab made goes: processes, forwarders, namespaces
        (their links with them), the bpffs mount, the directory."""
        if self not in _LIVE:
            return
        _LIVE.remove(self)
        for node in list(self.keepalived_nodes):
            self.stop_keepalived(node, sig=signal.SIGKILL)
        for key in list(self.procs):
            self._kill(key)
        self.procs.clear()
        if self.mounted:
            for node in NODES:
                if os.path.isdir(self.pin_dir(node)) and self.ns(node) in self.namespaces:
                    nsexec(self.ns(node), self.sluice_bin, "l4", "detach", "--pin-dir", self.pin_dir(node),
                           "--remove-maps", check=False)
            for real in self.reals:
                if os.path.isdir("%s/decap-%s" % (self.bpffs, real)):
                    nsexec(self.ns(real), self.sluice_bin, "l4", "decap", "--interface", "fab0", "--pin-dir",
                           "%s/decap-%s" % (self.bpffs, real), "--detach", check=False)
        for ns in reversed(self.namespaces):
            self._kill_ns_pids(ns)
            sh("ip", "netns", "del", ns, check=False)
        self.namespaces = []
        if self.mounted:
            sh("umount", self.bpffs, check=False)
            self.mounted = False
        if self.own_workdir:
            shutil.rmtree(self.dir, ignore_errors=True)
        if self.prefix_lock is not None:
            self.prefix_lock.close()
            self.prefix_lock = None

    def logs_tail(self, n=40):
        """The last lines of every log of the lab (for a failing test)."""
        out = []
        for node in sorted(os.listdir(self.dir)):
            d = os.path.join(self.dir, node)
            if not os.path.isdir(d) or node == "bpffs":
                continue
            for name in sorted(os.listdir(d)):
                if name.endswith((".log", ".out")):
                    lines = self.read(node, name).splitlines()[-n:]
                    out.append("== %s/%s\n%s" % (node, name, "\n".join(lines)))
        return "\n".join(out)


EVENTS = ("crash", "power-loss", "cut", "drain", "zone", "zone-restore", "power-cycle")


def event_gone(event, node):
    """The nodes that announce nothing once event (on node) took effect."""
    if event == "zone":
        return [n for n, v in NODES.items() if v[0] == NODES[node][0]]
    if event in ("zone-restore", "power-cycle"):
        return []
    return [node]


def run_event(lab, event, node, vip, settle=1.0, after=1.5, timeout=5.0, check=None, heal=True, conns=16,
              probe_ms=3, interval_ms=(10, 20)):
    """One event under traffic (ha_traffic) on node (for "zone" and
    "zone-restore": node's zone). vip: one VIP, or a list of them (each
    gets its own long-lived connections and probes, at the same time).
    Returns {"event", "node", "bfd_ms", "bfd_multiplier", "routes_ms"
    (until the lab saw both routers' kernel routes, for every VIP, every
    FullNAT local address and the NAT replies, as expected after the
    event, by polling), "session_down_ms" ({router: when its BIRD logged
    the session to node down}; none for a process crash, a drain or a
    restore: the sessions stay up), "traffic"} where traffic is
    ha_traffic's figures for one vip, or {vip: figures} for a list.
    check(): called just before the event (a test's precondition). The
    lab is healed afterwards unless heal=False."""
    import ha_traffic
    vips = [vip] if isinstance(vip, str) else list(vip)
    zone = NODES[node][0]
    expect = lab.expected_routes(gone=event_gone(event, node))
    traffic = []
    try:
        for v in vips:
            traffic.append(ha_traffic.Traffic(lab, v, duration=60, timeout=timeout, conns=conns,
                                              probe_ms=probe_ms, interval_ms=interval_ms).start())
        time.sleep(settle)
        if check:
            check()
        _, marks = lab.session_flaps()
        t0 = lab.event_at = time.time()
        if event == "crash":
            lab.crash_node(node)
        elif event == "power-loss":
            lab.crash_node(node, silent=True)
        elif event == "cut":
            lab.cut_link(node)
        elif event == "drain":
            lab.drain(node, settle=0)
        elif event == "zone":
            lab.lose_zone(zone)
        elif event == "zone-restore":
            lab.restore_zone(zone)
        elif event == "power-cycle":
            # A power loss, the others carry the node's flows, then it
            # comes back with empty maps and takes them back (l4.sync
            # returns them) under the same traffic.
            lab.crash_node(node, silent=True)
            lost_at = lab.event_at
            lab.wait_routes(lab.expected_routes(gone=[node]))
            time.sleep(after)
            lab.restore_node(node)
            lab.event_at = lost_at
        else:
            raise ValueError("unknown event %r" % event)
        # From the moment the event took effect (a process start can take
        # a while on a busy machine), when the lab's method says.
        t0 = lab.event_at
        lab.wait_routes(expect)
        routes_ms = (time.time() - t0) * 1000
        time.sleep(after)
    finally:
        results = {}
        for v, t in zip(vips, traffic):
            results[v] = t.stop()
    down = lab.session_down_at(node, marks)
    if heal:
        lab.heal()
    return {"event": event, "node": node, "bfd_ms": lab.bfd_interval_ms, "bfd_multiplier": lab.bfd_multiplier,
            "routes_ms": round(routes_ms, 1),
            "session_down_ms": {r: round((at - t0) * 1000, 1) for r, at in down.items()},
            "traffic": results[vips[0]] if isinstance(vip, str) else results}


def vrrp_transitions(lab):
    """How many times keepalived on a1 and a2 became master or backup
    (their logs; each start counts one)."""
    return sum(len(re.findall(r"Entering (MASTER|BACKUP) STATE", lab.read(n, "keepalived.log"))) for n in ("a1", "a2"))


def run_vrrp_crash(lab, advert, settle=1.0, after=8.0, check=None):
    """keepalived VRRP on a1 (master) and a2 moving VIP_VRRP; a1 dies
    under traffic (power loss: compare with run_event's "power-loss"). {"event": "vrrp-crash", "advert_int", "takeover_ms"
    (until a2 holds the VIP, by polling), "master_after", "traffic"}. The timeout for a
    long-lived connection is 20 s here: TCP's retransmission backoff
    after a 3.6 s outage may wait ~6 s for its next try. check(): called
    just before the crash (a test's precondition)."""
    import ha_traffic
    lab.start_keepalived(("a1", "a2"), advert_int=advert)
    if not wait_for(lambda: lab.vrrp_master() == "a1", 15):
        raise RuntimeError("no VRRP master a1: " + lab.read("a1", "keepalived.log")[-2000:])
    # Setup, not the event: a router keeps a neighbour entry for a second
    # (locktime) against later ARP, so when a1 preempted a2 right after a2
    # took the VIP the routers may still send to a2. Forget it: only the
    # master answers the next ARP.
    for r in ROUTERS:
        nsexec(lab.ns(r), "ip", "neigh", "flush", "to", VIP_VRRP, check=False)
    t = ha_traffic.Traffic(lab, VIP_VRRP, duration=60, timeout=20).start()
    try:
        time.sleep(settle)
        if check:
            check()
        # A power loss: a keepalived killed on a live node would leave the
        # VIP on its interface (and the forwarder forwarding): no failover.
        lab.crash_node("a1", silent=True)
        t0 = lab.event_at
        wait_for(lambda: lab.vrrp_master() == "a2", 15, step=0.01)
        takeover_ms = (time.time() - t0) * 1000
        time.sleep(after)
    finally:
        result = t.stop()
    master = lab.vrrp_master()
    lab.heal()
    return {"event": "vrrp-crash", "advert_int": advert, "takeover_ms": round(takeover_ms, 1),
            "master_after": master, "traffic": result}


def busy_loops(n):
    """n processes spinning on the CPU (nice 0), to make the machine busy."""
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]


def main():
    """`python3 tests/integration/ha_lab.py [options]`: build the lab, run
    events under traffic and print their figures as JSON lines, or hold
    the lab for a look (Ctrl-C ends); the lab is removed at the end."""
    import argparse
    import ha_traffic
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--prefix", default="s12l-", help="namespace prefix (default s12l-)")
    ap.add_argument("--bfd", default="100x3", help="BFD interval (ms) x multiplier (default 100x3)")
    ap.add_argument("--event", choices=EVENTS, help="an event to run under traffic")
    ap.add_argument("--node", default="a1")
    ap.add_argument("--vip", choices=tuple(MODES) + ("all",), default="dr",
                    help="the mode whose VIP gets the traffic, or all four at once (default dr)")
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--busy", type=int, default=0, help="CPU-spinning processes while events/stability run")
    ap.add_argument("--stability", type=float, default=0,
                    help="seconds of traffic without events, counting BGP sessions the routers lost")
    ap.add_argument("--vrrp", metavar="ADVERT", help="keepalived VRRP on a1, a2 with this advert_int: "
                    "--stability counts its state changes, --event crash crashes its master")
    ap.add_argument("--hold", type=float, default=0, help="seconds to keep the lab up at the end")
    args = ap.parse_args()
    why = have_tools()
    if why:
        sys.exit("ha_lab: " + why)
    interval, mult = (int(x) for x in args.bfd.split("x"))
    # SIGTERM (timeout(1), a CI runner) ends like Ctrl-C: the lab is removed.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("ha_lab: terminated"))
    vip = BGP_VIPS if args.vip == "all" else MODES[args.vip]
    burners = []
    with Lab(prefix=args.prefix, bfd=(interval, mult), log=lambda m: print("# " + m, file=sys.stderr)) as lab:
        try:
            t0 = time.time()
            lab.build()
            wait_for(lab.sessions_established, 20)
            print("# lab built in %.1f s in %s" % (time.time() - t0, lab.dir), file=sys.stderr)
            burners = busy_loops(args.busy)
            if args.vrrp:
                if args.stability:
                    lab.start_keepalived(("a1", "a2"), advert_int=args.vrrp)
                    wait_for(lambda: lab.vrrp_master() == "a1", 15)
                    before = vrrp_transitions(lab)
                    t = ha_traffic.Traffic(lab, VIP_VRRP, duration=args.stability + 30).start()
                    time.sleep(args.stability)
                    result = t.stop()
                    print(json.dumps({"stability_s": args.stability, "advert_int": args.vrrp, "busy": args.busy,
                                      "vrrp_transitions": vrrp_transitions(lab) - before, "traffic": result}),
                          flush=True)
                    lab.heal()
                for _ in range(args.repeat if args.event else 0):
                    print(json.dumps(dict(run_vrrp_crash(lab, args.vrrp), busy=args.busy)), flush=True)
                args.event = args.stability = None
            if args.stability:
                flaps, marks = lab.session_flaps()
                t = ha_traffic.Traffic(lab, BGP_VIPS[0] if args.vip == "all" else vip,
                                       duration=args.stability + 30).start()
                time.sleep(args.stability)
                result = t.stop()
                print(json.dumps({"stability_s": args.stability, "bfd_ms": interval, "bfd_multiplier": mult,
                                  "busy": args.busy, "session_flaps": lab.session_flaps(marks)[0],
                                  "traffic": result}), flush=True)
            for _ in range(args.repeat if args.event else 0):
                print(json.dumps(dict(run_event(lab, args.event, args.node, vip), busy=args.busy)), flush=True)
            if args.hold:
                for r in ROUTERS:
                    for v in BGP_VIPS + [local_address(n) for n in NODES]:
                        print("# %s: %s via %s" % (r, v, lab.kernel_nexthops(r, v)), file=sys.stderr)
                    print("# %s: NAT replies via %s" % (r, lab.natret_nexthops(r)), file=sys.stderr)
                time.sleep(args.hold)
        except KeyboardInterrupt:
            pass
        finally:
            for b in burners:
                b.kill()
                b.wait()


if __name__ == "__main__":
    main()
