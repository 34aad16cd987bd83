"""HA over IPv6 end to end: `sluice l4` announces an IPv6 VIP (and its
FullNAT local address) to a router over a BGP session on IPv6, with BFD on
IPv6, through the BIRD it starts; a client behind the router reaches the
service through the route the LB announced.

Topology (network namespaces this test creates and removes; the names
carry the test's pid, so two runs cannot clash):

    client fd12:c::2 --- fd12:c::1 router fd12:f::1 --+
                                   lb     fd12:f::5 --+-- bridge (switch namespace)
                                   reals  fd12:f::11, fd12:f::12

The router runs a BIRD of the test's own: one BGP session with the LB on
IPv6 (ipv6 channel only), BFD on it, its routes exported to the router's
kernel table. BFD is slow (300 ms x 10) for a busy test machine, as in
test_ha_announce.py. The VIP fd12:100::1 and the FullNAT local address
fd12:200::5 are off every subnet: only the routes the LB announces bring
them to it. `sluice l4` forwards with XDP on the LB's veth (DR, then
FullNAT); the reals' default route is the router (DR replies go straight to
the client through it; FullNAT replies go to the local address, which the
router sends to the LB by the announced route). `sluice proxy` announces
its IPv6 listener fd12:100::2 the same way and probes it through the
router (ha.probe).

Needs root, ip, curl and bird2; skips otherwise. Every wait is bounded;
every namespace, mount and process (the BIRDs included) is removed at
teardown.
"""
import json
import os
import re
import shutil
import signal
import subprocess
import sys

import pytest

from netns_tools import ETHTOOL_STXCSUM, ethtool_set, nsexec, pid_alive, pin_xdp_pass, sh, wait_for
from test_ha_announce import hello
from test_l4_netns import SERVER

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SLUICE_L4 = os.environ.get("SLUICE_L4_BIN", os.path.join(ROOT, "build", "sluice"))
SLUICE_ASAN = os.environ.get("SLUICE_BIN", os.path.join(ROOT, "build", "sluice-asan"))
BIRD = shutil.which("bird") or "/usr/sbin/bird"
BIRDC = shutil.which("birdc") or "/usr/sbin/birdc"

TAG = "s12v%d-" % (os.getpid() % 1000)
NS_SW, NS_RT, NS_LB, NS_C = TAG + "sw", TAG + "rt", TAG + "lb", TAG + "c"
REALS = [(TAG + "r1", "fd12:f::11", "r1"), (TAG + "r2", "fd12:f::12", "r2")]
ROUTER, LB, ROUTER_C, CLIENT = "fd12:f::1", "fd12:f::5", "fd12:c::1", "fd12:c::2"
VIP, LOCAL, PROXY_VIP = "fd12:100::1", "fd12:200::5", "fd12:100::2"
SYNC_PEER, STANDIN = "fd12:f::6", "fd12:200::6"   # a sync peer the test plays (from the router's namespace)
ADMIN = "127.0.0.1:9946"          # in the LB's own namespace
HA_IF = TAG + "ha"

ROUTER_BIRD = """\
router id 10.12.250.1;
log "{log}" all;
protocol device {{ }}
protocol kernel {{
    ipv6 {{ import none; export all; }};
}}
protocol bfd {{
    interface "*" {{ min rx interval 300 ms; min tx interval 300 ms; multiplier 10; }};
}}
protocol bgp lb {{
    local {router} as 65000;
    neighbor {lb} as 65010;
    connect retry time 1;
    error wait time 1, 5;
    bfd on;
    ipv6 {{ import all; export none; }};
}}
"""


def have_tools():
    if os.geteuid() != 0:
        return "needs root (network namespaces, XDP, tun)"
    for tool in ("ip", "curl", BIRD, BIRDC):
        if not shutil.which(tool):
            return "needs %s (Debian: iproute2, curl, bird2)" % tool
    for binary in (SLUICE_L4, SLUICE_ASAN):
        if not os.path.exists(binary):
            return "%s not built" % binary
    return None


class Lab:
    def __init__(self, tmp):
        self.tmp = tmp
        self.namespaces, self.procs, self.bird_pids = [], [], []
        self.bpffs = str(tmp / "bpffs")
        self.mounted = False

    def add_ns(self, ns):
        sh("ip", "netns", "add", ns)
        self.namespaces.append(ns)
        nsexec(ns, "ip", "link", "set", "lo", "up")
        # No duplicate address detection: a tentative address (the
        # link-local ones included) delays neighbour discovery and BGP's
        # first connect by a second or more.
        nsexec(ns, "sysctl", "-qw", "net.ipv6.conf.default.accept_dad=0")

    def add_port(self, ns, ifname, addr):
        """A veth from ns into the switch's bridge; the bridge-side name."""
        peer = ns + "p"
        sh("ip", "link", "add", ifname, "netns", ns, "type", "veth", "peer", "name", peer, "netns", NS_SW)
        nsexec(NS_SW, "ip", "link", "set", peer, "master", "br0", "up")
        nsexec(ns, "ip", "addr", "add", addr + "/64", "dev", ifname, "nodad")
        nsexec(ns, "ip", "link", "set", ifname, "up")
        return peer

    def build(self):
        self.add_ns(NS_SW)
        nsexec(NS_SW, "ip", "link", "add", "br0", "type", "bridge")
        nsexec(NS_SW, "ip", "link", "set", "br0", "up")
        self.add_ns(NS_RT)
        self.add_port(NS_RT, "eth0", ROUTER)
        nsexec(NS_RT, "sysctl", "-qw", "net.ipv6.conf.all.forwarding=1")
        # The client's own link to the router.
        self.add_ns(NS_C)
        sh("ip", "link", "add", "eth0", "netns", NS_C, "type", "veth", "peer", "name", "eth1", "netns", NS_RT)
        nsexec(NS_C, "ip", "addr", "add", CLIENT + "/64", "dev", "eth0", "nodad")
        nsexec(NS_RT, "ip", "addr", "add", ROUTER_C + "/64", "dev", "eth1", "nodad")
        nsexec(NS_C, "ip", "link", "set", "eth0", "up")
        nsexec(NS_RT, "ip", "link", "set", "eth1", "up")
        nsexec(NS_C, "ip", "-6", "route", "add", "default", "via", ROUTER_C)
        # XDP forwards the client's frames (through the router): checksum
        # them in software on the way (see test_l4_netns).
        ethtool_set(NS_C, "eth0", ETHTOOL_STXCSUM, 0)
        ethtool_set(NS_RT, "eth0", ETHTOOL_STXCSUM, 0)
        ethtool_set(NS_RT, "eth1", ETHTOOL_STXCSUM, 0)
        self.add_ns(NS_LB)
        lb_peer = self.add_port(NS_LB, "lb0", LB)
        # FullNAT replies leave the LB by XDP towards the client's next hop.
        nsexec(NS_LB, "ip", "-6", "route", "add", "default", "via", ROUTER)
        for ns, addr, _ in REALS:
            self.add_ns(ns)
            self.add_port(ns, "eth0", addr)
            nsexec(ns, "ip", "addr", "add", VIP + "/128", "dev", "lo")
            nsexec(ns, "ip", "-6", "route", "add", "default", "via", ROUTER)
            ethtool_set(ns, "eth0", ETHTOOL_STXCSUM, 0)   # FullNAT replies go through XDP too
        os.makedirs(self.bpffs, exist_ok=True)
        sh("mount", "-t", "bpf", "bpf", self.bpffs)
        self.mounted = True
        pin_xdp_pass(self.bpffs + "/xdp_pass")
        nsexec(NS_SW, "ip", "link", "set", "dev", lb_peer, "xdpdrv", "pinned", self.bpffs + "/xdp_pass")
        self.rt_sock = str(self.tmp / "rt-bird.ctl")
        conf = self.tmp / "rt-bird.conf"
        conf.write_text(ROUTER_BIRD.format(log=self.tmp / "rt-bird.log", router=ROUTER, lb=LB))
        pidfile = self.tmp / "rt-bird.pid"
        nsexec(NS_RT, BIRD, "-c", str(conf), "-s", self.rt_sock, "-P", str(pidfile))
        self.bird_pids.append(int(wait_for(lambda: pidfile.exists() and pidfile.read_text().strip(), 10)))

    def spawn(self, ns, *args, **kw):
        p = subprocess.Popen(["ip", "netns", "exec", ns] + list(args), **kw)
        self.procs.append(p)
        return p

    def start_reals(self, port=80):
        self.servers = [self.spawn(ns, sys.executable, "-c", SERVER, name, str(port)) for ns, _, name in REALS]

    # -- what the router sees --
    def route(self, prefix):
        return nsexec(NS_RT, "ip", "-6", "route", "show", prefix, check=False).stdout.strip()

    def lb_link_local(self):
        out = nsexec(NS_LB, "ip", "-6", "-o", "addr", "show", "dev", "lb0", "scope", "link").stdout
        m = re.search(r"inet6 (fe80::[0-9a-f:]+)/", out)
        return m.group(1) if m else None

    def announced(self, addr):
        """The router's kernel has a host route to addr from BIRD, via the
        LB (its global address, or its link-local one: BIRD prefers the
        link-local next hop of a directly connected IPv6 session)."""
        r = self.route(addr)
        return (r.startswith(addr + " ") and "proto bird" in r and
                ("via %s " % LB in r or "via %s " % self.lb_link_local() in r))

    def router_birdc(self, *cmd):
        return nsexec(NS_RT, BIRDC, "-s", self.rt_sock, *cmd, check=False).stdout

    def diagnose(self):
        lb_sock = str(self.tmp / "lb-bird.ctl")
        return "router:\n%s\n%s\nLB:\n%s\n%s\nLB addresses:\n%s" % (
            self.router_birdc("show", "protocols", "all"), self.router_birdc("show", "route", "all"),
            nsexec(NS_LB, BIRDC, "-s", lb_sock, "show", "protocols", "all", check=False).stdout,
            nsexec(NS_LB, BIRDC, "-s", lb_sock, "show", "route", "all", check=False).stdout,
            nsexec(NS_LB, "ip", "addr", check=False).stdout)

    def destroy(self):
        for p in self.procs:
            if p.poll() is None:
                p.kill()
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        lb_bird = self.tmp / "lb-bird.pid"
        if lb_bird.exists() and lb_bird.read_text().strip().isdigit():
            self.bird_pids.append(int(lb_bird.read_text().strip()))
        for pid in self.bird_pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if self.mounted and os.path.isdir(self.bpffs + "/sluice"):
            nsexec(NS_LB, SLUICE_L4, "l4", "detach", "--pin-dir", self.bpffs + "/sluice", "--remove-maps",
                   check=False)
        for ns in reversed(self.namespaces):
            sh("ip", "netns", "del", ns, check=False)
        if self.mounted:
            sh("umount", self.bpffs, check=False)


@pytest.fixture
def lab(tmp_path):
    why = have_tools()
    if why:
        pytest.skip(why)
    lab = Lab(tmp_path)
    try:
        lab.build()
        yield lab
    finally:
        lab.destroy()


def ha_section(tmp, probe="", announce=""):
    return """\
ha:{announce}
  node: lb-v6
  zone: a
  priority: 0
  asn: 65010
  router_id: 10.12.250.5
  neighbors:
    - {{ address: "{router}", asn: 65000 }}
  bfd: {{ interval: 300ms, multiplier: 10 }}
  interface: {ifname}
  bird:
    mode: managed
    control_socket: {tmp}/lb-bird.ctl
    config_file: {tmp}/lb-bird.conf
    pid_file: {tmp}/lb-bird.pid
    log_file: {tmp}/lb-bird.log
{probe}""".format(router=ROUTER, ifname=HA_IF, tmp=tmp, probe=probe,
                  announce="\n  announce: [%s]" % ", ".join('"%s"' % a for a in announce) if announce else "")


def l4_config(tmp, mode="dr", real_port=80, local=None, sync="", announce=""):
    return """\
admin:
  listen: {admin}
log:
  level: info
l4:
  interfaces: [lb0]
  xdp_mode: native
  services:
    - vip: "[{vip}]:80"
      protocol: tcp
      mode: {mode}
      scheduler: maglev
      health_check: {{ type: tcp, interval: 500ms, timeout: 400ms, rise: 1, fall: 2 }}
{local}      reals:
{reals}{sync}""".format(admin=ADMIN, vip=VIP, mode=mode, sync=sync,
                       local='      local_addresses: ["%s"]\n' % local if local else "",
                       reals="".join('        - {{ address: "[{}]:{}", weight: 1 }}\n'.format(a, real_port)
                                     for _, a, _ in REALS)) + ha_section(tmp, announce=announce)


def proxy_config(tmp, probe):
    return """\
admin:
  listen: {admin}
log:
  level: info
pools:
  - name: web
    backends: ["[::1]:8081"]
    health_check: {{ type: tcp, interval: 200ms, timeout: 150ms, rise: 1, fall: 1 }}
listeners:
  - {{ name: vip, listen: "[{vip}]:80", protocol: tcp, pool: web }}
""".format(admin=ADMIN, vip=PROXY_VIP) + ha_section(tmp, probe)


class Daemon:
    """`sluice l4` or `sluice proxy`, with its ha: section, in the LB
    namespace."""

    def __init__(self, lab, verb, config, binary):
        self.lab, self.verb, self.binary = lab, verb, binary
        self.conf = lab.tmp / ("%s.yaml" % verb)
        self.conf.write_text(config)
        self.log_path = lab.tmp / ("%s.log" % verb)
        self.proc = None

    def ready(self):
        log = self.new_log()
        return "ha: node lb-v6" in log and (self.verb != "l4" or "sluice l4 running" in log) and self.api_up()

    def start(self):
        self.offset = len(self.read_log())
        self.log = open(self.log_path, "ab")
        args = [self.binary, self.verb, "-c", str(self.conf)]
        if self.verb == "l4":
            args += ["--pin-dir", self.lab.bpffs + "/sluice"]
        self.proc = self.lab.spawn(NS_LB, *args, stdout=self.log, stderr=subprocess.STDOUT)
        ok = wait_for(lambda: self.proc.poll() is not None or self.ready(), 30)
        assert ok and self.proc.poll() is None, "did not start:\n%s" % self.read_log()
        pidfile = self.lab.tmp / "lb-bird.pid"
        pid = int(wait_for(lambda: pidfile.exists() and pidfile.read_text().strip(), 10))
        if pid not in self.lab.bird_pids:
            self.lab.bird_pids.append(pid)
        return self

    def api_up(self):
        try:
            self.ha()
            return True
        except (subprocess.CalledProcessError, ValueError):
            return False

    def read_log(self):
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def new_log(self):
        return self.read_log()[self.offset:]

    def ha(self):
        code = "import urllib.request;print(urllib.request.urlopen('http://%s/api/ha',timeout=5).read().decode())"
        return json.loads(nsexec(NS_LB, sys.executable, "-c", code % ADMIN).stdout)

    def metrics(self):
        code = "import urllib.request;print(urllib.request.urlopen('http://%s/metrics',timeout=5).read().decode())"
        return nsexec(NS_LB, sys.executable, "-c", code % ADMIN).stdout

    def ctl(self, *args):
        return nsexec(NS_LB, self.binary, "ha", *args, "-c", str(self.conf), check=False)

    def bird_pid(self):
        return int((self.lab.tmp / "lb-bird.pid").read_text().strip())


def L4(lab, **conf):
    return Daemon(lab, "l4", l4_config(lab.tmp, **conf), SLUICE_L4)


def curl_vip(vip=VIP):
    """One HTTP request from the client namespace, through the router; the
    body or "ERR ..."."""
    r = nsexec(NS_C, "curl", "-6", "-s", "-S", "-m", "3", "http://[%s]/" % vip, check=False)
    return r.stdout.strip() if r.returncode == 0 else "ERR %d %s" % (r.returncode, r.stderr.strip())


def sessions_up(d):
    s = d.ha()["sessions"]
    return bool(s) and s[0]["state"] == "Established" and s[0]["bfd"] == "Up"


def wait_announced(lab, d, addr, timeout=30):
    if not wait_for(lambda: lab.announced(addr), timeout):
        pytest.fail("%s not announced: %r\n%s\n%s\n%s" % (addr, lab.route(addr), json.dumps(d.ha()), d.read_log(),
                                                          lab.diagnose()))


def test_l4_dr_ipv6_vip_over_an_ipv6_session(lab):
    lab.start_reals()
    # ha.announce with an IPv6 address: BIRD takes the IPv6 prefix set of
    # the export filter (and the IPv4 branch that rejects everything).
    d = L4(lab, announce=[VIP]).start()
    wait_announced(lab, d, VIP)
    conf = (lab.tmp / "lb-bird.conf").read_text()
    assert "net !~ [ %s/128 ]" % VIP in conf, conf
    assert lab.route(VIP).startswith(VIP + " ")   # a host route: /128
    # BGP and BFD over IPv6, as BIRD and the LB report them.
    assert wait_for(lambda: sessions_up(d), 15), d.ha()
    session = d.ha()["sessions"][0]
    assert session["neighbor"] == ROUTER, session
    rt = lab.router_birdc("show", "bfd", "sessions")
    assert re.search(r"^%s\s+\S+\s+Up\b" % re.escape(LB), rt, re.M), rt
    # A client behind the router reaches the service.
    bodies = [curl_vip() for _ in range(6)]
    assert all(re.match(r"r[12] %s$" % re.escape(CLIENT), b) for b in bodies), bodies
    # What is announced, with the v6 session, in every view.
    st = d.ha()
    assert [a["address"] for a in st["announced"]] == [VIP], st
    assert st["announced"][0]["owners"][0]["owner"] == "tcp:[%s]:80" % VIP, st
    m = d.metrics()
    assert 'sluice_ha_announced{address="%s"} 1' % VIP in m, m
    assert 'sluice_ha_bgp_session_up{neighbor="%s"} 1' % ROUTER in m, m
    assert 'sluice_ha_bfd_session_up{neighbor="%s"} 1' % ROUTER in m, m
    status = d.ctl("status")
    assert status.returncode == 0, status
    assert re.search(r"%s.*Established" % re.escape(ROUTER), status.stdout), status.stdout
    assert VIP in status.stdout, status.stdout

    # Drain withdraws it, undrain brings it back.
    assert d.ctl("drain").returncode == 0
    assert wait_for(lambda: not lab.announced(VIP), 10), lab.route(VIP)
    assert d.ha()["withdrawn"][0]["reason"] == "drained"
    assert curl_vip().startswith("ERR"), "the router still reaches the VIP after the drain"
    assert d.ctl("undrain").returncode == 0
    wait_announced(lab, d, VIP, 10)
    assert wait_for(lambda: curl_vip().startswith("r"), 10)

    # kill -9: the tun device goes with the process, BIRD withdraws, BIRD
    # survives; a new daemon announces again through the same BIRD.
    bird = d.bird_pid()
    d.proc.kill()
    d.proc.wait(timeout=10)
    assert nsexec(NS_LB, "ip", "link", "show", HA_IF, check=False).returncode != 0
    assert wait_for(lambda: not lab.announced(VIP), 10), lab.route(VIP)
    assert pid_alive(bird)
    d.start()
    wait_announced(lab, d, VIP)
    assert d.bird_pid() == bird
    assert wait_for(lambda: curl_vip().startswith("r"), 10)


def test_l4_fullnat_ipv6_announces_vip_and_local_address(lab):
    """FullNAT over IPv6: the node's own local address is announced too
    (the reals' replies reach the LB only by that route), and an l4.sync
    peer's IPv6 local address as a stand-in, with the stand-in path."""
    key = os.urandom(32)
    (lab.tmp / "sync.key").write_bytes(key)
    os.chmod(lab.tmp / "sync.key", 0o600)
    nsexec(NS_RT, "ip", "addr", "add", SYNC_PEER + "/64", "dev", "eth0", "nodad")
    lab.start_reals(port=8080)
    sync = '  sync:\n    listen: "[%s]:7400"\n    peers: ["[%s]:7400"]\n    key_file: %s\n' % (
        LB, SYNC_PEER, lab.tmp / "sync.key")
    d = L4(lab, mode="fullnat", real_port=8080, local=LOCAL, sync=sync).start()
    wait_announced(lab, d, VIP)
    wait_announced(lab, d, LOCAL)
    st = {a["address"]: a for a in d.ha()["announced"]}
    assert set(st) == {VIP, LOCAL}, st
    assert not st[LOCAL]["standin"], st
    # The peer's hello lists its local address: announced as a stand-in,
    # 16 prepends more than the node's own routes.
    code = ("import socket,sys\ns=socket.socket(socket.AF_INET6,socket.SOCK_DGRAM)\ns.bind(('%s',7400))\n"
            "s.sendto(bytes.fromhex(sys.argv[1]),('%s',7400))\n" % (SYNC_PEER, LB))
    nsexec(NS_RT, sys.executable, "-c", code, hello(key, 1, [STANDIN]).hex())
    wait_announced(lab, d, STANDIN, 15)
    path = re.search(r"BGP.as_path: ([\d ]+)", lab.router_birdc("show", "route", "all", "for", STANDIN))
    assert path and path.group(1).split() == ["65010"] * 17, lab.router_birdc("show", "route", "all", "for", STANDIN)
    assert re.search(r"BGP.as_path: 65010\s*$", lab.router_birdc("show", "route", "all", "for", LOCAL), re.M)
    st = {a["address"]: a for a in d.ha()["announced"]}
    assert st[STANDIN]["standin"] and st[STANDIN]["owners"][0]["owner"] == "sync peer [%s]:7400" % SYNC_PEER, st
    bodies = [curl_vip() for _ in range(6)]
    assert all(re.match(r"r[12] %s$" % re.escape(LOCAL), b) for b in bodies), (bodies, d.read_log())
    # Drain: the VIP goes, the local address stays (the replies of the
    # flows the node still holds come back by it).
    assert d.ctl("drain").returncode == 0
    assert wait_for(lambda: not lab.announced(VIP), 10), lab.route(VIP)
    assert lab.announced(LOCAL), lab.route(LOCAL)
    assert d.ctl("undrain").returncode == 0
    wait_announced(lab, d, VIP, 10)
    # kill -9: all go.
    d.proc.kill()
    d.proc.wait(timeout=10)
    assert wait_for(lambda: not any(lab.announced(a) for a in (VIP, LOCAL, STANDIN)), 10), \
        (lab.route(VIP), lab.route(LOCAL), lab.route(STANDIN))


PROBE = """\
  probe:
    enabled: true
    interval: 1s
    timeout: 500ms
    fall: 2
    rise: 1
    hold: 3s
    source_ports: 61000-61999
    gateway: {router}
""".format(router=ROUTER)


def probe_sample(metrics, result, path):
    m = re.search(r'sluice_ha_probe_total\{address="%s",port="80",result="%s",path="%s"\} (\d+)'
                  % (re.escape(PROXY_VIP), result, path), metrics)
    return int(m.group(1)) if m else 0


def test_proxy_ipv6_listener_announced_and_probed(lab):
    """`sluice proxy` with an IPv6 listener: announced over the IPv6
    session, served through the router, probed through the router (the
    probe comes back to the node's own kernel: IPv6 needs no accept_local),
    withdrawn when the node stops taking the VIP's connections from the
    network while its backend's health checks pass, back when repaired;
    kill -9 withdraws it."""
    # The listener's address must be bindable: the LB holds it on lo too.
    nsexec(NS_LB, "ip", "addr", "add", PROXY_VIP + "/128", "dev", "lo")
    lab.spawn(NS_LB, sys.executable, "-c", SERVER, "p1", "8081")
    d = Daemon(lab, "proxy", proxy_config(lab.tmp, PROBE), SLUICE_ASAN).start()
    wait_announced(lab, d, PROXY_VIP)
    assert wait_for(lambda: sessions_up(d), 15), d.ha()
    assert wait_for(lambda: curl_vip(PROXY_VIP).startswith("p1 "), 10), curl_vip(PROXY_VIP)
    st = d.ha()
    assert [a["address"] for a in st["announced"]] == [PROXY_VIP], st
    assert st["announced"][0]["owners"][0]["owner"] == "listener vip", st
    if not wait_for(lambda: probe_sample(d.metrics(), "ok", "us") >= 2, 20):
        pytest.fail("no probe through the proxy succeeded:\n%s\n%s" % (json.dumps(d.ha()), d.read_log()))
    assert d.ha()["probe"] == {"enabled": True, "warning": None}, d.ha()
    status = d.ctl("status").stdout
    assert "probe :80 serving" in status and re.search(r"%s.*Established" % re.escape(ROUTER), status), status

    drop = ("add table inet %s\nadd chain inet %s in { type filter hook input priority 0; }\n"
            "add rule inet %s in iifname lb0 ip6 daddr %s tcp dport 80 drop\n") % (("s12v",) * 3 + (PROXY_VIP,))
    subprocess.run(["ip", "netns", "exec", NS_LB, "nft", "-f", "-"], input=drop, text=True, check=True)
    if not wait_for(lambda: not lab.announced(PROXY_VIP), 20):
        pytest.fail("not withdrawn:\n%s\n%s" % (json.dumps(d.ha()), d.read_log()))
    wd = {w["address"]: w for w in d.ha()["withdrawn"]}
    assert wd[PROXY_VIP]["reason"] == "probe failed", wd
    m = d.metrics()
    assert probe_sample(m, "timeout", "us") >= 2, m
    assert re.search(r'sluice_ha_withdrawals_total\{reason="probe"\} [1-9]', m), m
    nsexec(NS_LB, "nft", "delete", "table", "inet", "s12v")
    wait_announced(lab, d, PROXY_VIP, 20)
    assert wait_for(lambda: "probes through this node pass again" in d.read_log(), 15), d.read_log()
    assert wait_for(lambda: curl_vip(PROXY_VIP).startswith("p1 "), 10)

    d.proc.kill()
    d.proc.wait(timeout=10)
    assert wait_for(lambda: not lab.announced(PROXY_VIP), 10), lab.route(PROXY_VIP)
