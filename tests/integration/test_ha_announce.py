"""HA announcing end to end: `sluice l4` and `sluice proxy` announce their
VIPs to a router over BGP (with BFD) through a BIRD they start, from
addresses on a tun device they own.

Topology (network namespaces this test creates and removes, s12cN-*, N
from the test's pid so that two runs at once cannot clash):

    router s12cN-rt 10.12.0.1 --+
    lb     s12cN-lb 10.12.0.5 --+-- bridge (namespace s12cN-sw)
    reals  s12cN-r1, s12cN-r2 10.12.0.11-12

The router runs a BIRD of the test's own (BGP with the LB node, BFD, its
routes exported to the router's kernel table). BFD is slow here (300 ms x
10): this test is about what is announced when, not about detection time,
and a busy test machine must not flap the sessions (BFD down takes BGP
down, and BIRD waits before it connects again). The LB runs `sluice l4` in
DR mode (XDP on lb0) for the VIP 10.12.100.1, off every subnet: only the
route the LB announces brings it to the LB. The router's namespace is the
client. `sluice proxy` announces its listener 10.12.100.2 the same way.

Needs root, ip and bird2; skips otherwise. Every wait is bounded; every
namespace, mount and process (the BIRDs included) is removed at teardown.
"""
import hashlib
import hmac
import json
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import time

import pytest

import metrics_doc
from netns_tools import (BIRD, BIRDC, ETHTOOL_STXCSUM, Bird, HaDaemon, NetnsLab, ethtool_set, l4_detach, lab_fixture,
                         missing_tools, nsexec, pid_alive, proxy_web_yaml, sh, wait_for)
from test_l4_netns import SERVER

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SLUICE_L4 = os.environ.get("SLUICE_L4_BIN", os.path.join(ROOT, "build", "sluice"))
SLUICE_ASAN = os.environ.get("SLUICE_BIN", os.path.join(ROOT, "build", "sluice-asan"))

TAG = "s12c%d-" % (os.getpid() % 1000)
NS_SW, NS_RT, NS_LB = TAG + "sw", TAG + "rt", TAG + "lb"
REALS = [(TAG + "r1", "10.12.0.11", "r1"), (TAG + "r2", "10.12.0.12", "r2")]
ROUTER, LB = "10.12.0.1", "10.12.0.5"
VIP, PROXY_VIP = "10.12.100.1", "10.12.100.2"
ADMIN = "127.0.0.1:9941"
HA_IF = TAG + "ha"

# The router's BIRD (a template: test_ha_v6.py's is the same over IPv6).
ROUTER_BIRD = """\
router id {router_id};
log "{log}" all;
protocol device {{ }}
protocol kernel {{
    {family} {{ import none; export all; }};
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
    {family} {{ import all; export none; }};
}}
"""


class Lab(NetnsLab):
    def build(self):
        for ns in (NS_SW, NS_RT, NS_LB) + tuple(r[0] for r in REALS):
            sh("ip", "netns", "del", ns, check=False)   # a run killed half way
        self.add_switch(NS_SW)
        self.add_host(NS_RT, "eth0", [ROUTER + "/24"])
        ethtool_set(NS_RT, "eth0", ETHTOOL_STXCSUM, 0)   # XDP forwards its frames (see test_l4_netns)
        lb_peer = self.add_host(NS_LB, "lb0", [LB + "/24"])
        # The proxy's listener binds its VIP: the LB holds it on lo (the
        # router only learns it from BGP).
        nsexec(NS_LB, "ip", "addr", "add", PROXY_VIP + "/32", "dev", "lo")
        for ns, addr, _ in REALS:
            self.add_host(ns, "eth0", [addr + "/24"])
            nsexec(ns, "ip", "addr", "add", VIP + "/32", "dev", "lo")
            for key in ("all.arp_ignore=1", "eth0.arp_ignore=1", "all.arp_announce=2", "eth0.arp_announce=2"):
                nsexec(ns, "sysctl", "-q", "-w", "net.ipv4.conf." + key)
        self.mount_bpffs()
        self.xdp_pass_on(NS_SW, lb_peer)
        self.router = Bird(NS_RT, self.tmp, "rt-bird")
        self.daemon_pids.append(self.router.start(ROUTER_BIRD.format(log=self.router.log, router_id=ROUTER,
                                                                     router=ROUTER, lb=LB, family="ipv4")))
        self.lb_bird = Bird(NS_LB, self.tmp, "lb-bird")   # the daemons' managed BIRD

    def route_lb_through_router(self):
        """The LB's default route through the router, which routes the
        VIPs back to the LB (what the LB's probes take): forwarding on, no
        redirects (the router would tell the LB to reach the VIP through
        itself)."""
        for key in ("net.ipv4.ip_forward=1", "net.ipv4.conf.all.send_redirects=0",
                    "net.ipv4.conf.eth0.send_redirects=0"):
            nsexec(NS_RT, "sysctl", "-q", "-w", key)
        nsexec(NS_LB, "ip", "route", "add", "default", "via", ROUTER)

    def start_reals(self):
        self.servers = {name: self.spawn(ns, sys.executable, "-c", SERVER, name, "80")
                        for ns, _, name in REALS}

    def stop_reals(self):
        for p in self.servers.values():
            p.kill()
            p.wait(timeout=5)

    # -- what the router sees --
    def route(self, prefix):
        """The router's kernel route to prefix ("" when it has none)."""
        return nsexec(NS_RT, "ip", "route", "show", prefix, check=False).stdout.strip()

    def announced(self, prefix):
        return "proto bird" in self.route(prefix) and "via " + LB in self.route(prefix)

    def diagnose(self):
        """What both BIRDs say, for a failure's message."""
        return "router:\n%s\nLB:\n%s\n%s\nLB addresses:\n%s" % (
            self.router.birdc("show", "protocols", "all"), self.lb_bird.birdc("show", "protocols", "all"),
            self.lb_bird.birdc("show", "route", "all"), nsexec(NS_LB, "ip", "addr", check=False).stdout)

    def detach_xdp(self):
        l4_detach(NS_LB, SLUICE_L4, self.bpffs + "/sluice")


lab = lab_fixture(Lab, lambda: missing_tools("network namespaces, XDP, tun", ("ip", BIRD, BIRDC), "iproute2, bird2",
                                             (SLUICE_L4, SLUICE_ASAN)))


def ha_section(tmp, node="lb-a1", router_id=LB, router=ROUTER, ifname=HA_IF, priority=0, min_healthy=1, probe="",
               announce=()):
    """An LB node's ha: section (test_ha_v6.py's too): zone a, AS 65010,
    one neighbor (router, AS 65000) with BFD 300 ms x 10, a managed BIRD
    with its files in tmp as lb-bird.*; min_healthy None leaves it out."""
    return """\
ha:{announce}
  node: {node}
  zone: a
  priority: {priority}
  asn: 65010
  router_id: {router_id}
  neighbors:
    - {{ address: "{router}", asn: 65000 }}
  bfd: {{ interval: 300ms, multiplier: 10 }}
{min_healthy}  interface: {ifname}
  bird:
    mode: managed
    control_socket: {tmp}/lb-bird.ctl
    config_file: {tmp}/lb-bird.conf
    pid_file: {tmp}/lb-bird.pid
    log_file: {tmp}/lb-bird.log
{probe}""".format(tmp=tmp, node=node, router_id=router_id, router=router, ifname=ifname, priority=priority,
                  min_healthy="" if min_healthy is None else "  min_healthy: %d\n" % min_healthy, probe=probe,
                  announce="\n  announce: [%s]" % ", ".join('"%s"' % a for a in announce) if announce else "")


class Daemon(HaDaemon):
    """`sluice l4` or `sluice proxy` in the LB namespace; body is its config
    but for admin:, log: and ha: (write() rewrites it, with ha: as asked
    and the probe: given)."""

    def __init__(self, lab, verb, body, binary, probe=""):
        super().__init__(lab, NS_LB, verb, binary, lab.tmp / ("%s.yaml" % verb), lab.tmp / ("%s.log" % verb), ADMIN,
                         lab.lb_bird, ready_lines=["ha: node lb-a1"],
                         extra_args=["--pin-dir", lab.bpffs + "/sluice"] if verb == "l4" else [])
        self.body, self.probe = body, probe
        self.write()

    def write(self, **ha):
        self.conf.write_text("admin:\n  listen: %s\nlog:\n  level: info\n%s%s" % (
            ADMIN, self.body, ha_section(self.lab.tmp, probe=self.probe, **ha)))


def wait_announced(lab, d, addr, timeout=30):
    """The router has the route to addr from the LB (test_ha_v6.py's lab
    too), or the test fails with what the LB and both BIRDs say."""
    if not wait_for(lambda: lab.announced(addr), timeout):
        pytest.fail("%s not announced: %r\n%s\n%s\n%s" % (addr, lab.route(addr), json.dumps(d.ha()), d.read_log(),
                                                          lab.diagnose()))


def l4_body():
    return """\
l4:
  interfaces: [lb0]
  xdp_mode: native
  services:
    - vip: "{vip}:80"
      protocol: tcp
      mode: dr
      scheduler: maglev
      health_check: {{ type: tcp, interval: 500ms, timeout: 400ms, rise: 1, fall: 2 }}
      reals:
        - {{ address: "10.12.0.11:80", weight: 1 }}
        - {{ address: "10.12.0.12:80", weight: 1 }}
""".format(vip=VIP)


def get_vip(vip):
    """One HTTP request from the router's namespace; the body or "ERR ..."."""
    code = ("import http.client,sys\ntry:\n c=http.client.HTTPConnection(sys.argv[1],80,timeout=3)\n"
            " c.request('GET','/');print(c.getresponse().read().decode().strip())\n"
            "except Exception as e:\n print('ERR %r'%(e,))")
    return nsexec(NS_RT, sys.executable, "-c", code, vip).stdout.strip()


def sessions_up(d):
    s = d.ha()["sessions"]
    return s and s[0]["state"] == "Established" and s[0]["bfd"] == "Up"


def kill9_and_restart(lab, d, vip, ha_if):
    """kill -9 of the daemon d (test_ha_v6.py's too): the tun device ha_if
    goes with the process, BIRD withdraws vip at once and survives; a new
    daemon announces vip again through the same BIRD. Returns its pid."""
    bird = d.bird_pid()
    d.proc.kill()
    d.proc.wait(timeout=10)
    assert nsexec(d.ns, "ip", "link", "show", ha_if, check=False).returncode != 0
    assert wait_for(lambda: not lab.announced(vip), 10), lab.route(vip)
    assert pid_alive(bird)
    d.start()
    wait_announced(lab, d, vip)
    assert d.bird_pid() == bird
    return bird


def retried_on_trial_then_restored(lab, d, vip, repair):
    """ha.probe after vip was withdrawn for failed probes: after hold it is
    announced on trial and withdrawn again while the probes still fail;
    repair() mends the path: announced after hold, and it stays (no new
    withdrawal in 3 s)."""
    assert wait_for(lambda: "announcing %s again on trial" % vip in d.read_log(), 15), d.read_log()
    assert wait_for(lambda: d.read_log().count("ha: withdrew %s: probe" % vip) >= 2, 20), d.read_log()
    repair()
    assert wait_for(lambda: lab.announced(vip), 20), (d.ha(), d.read_log())
    assert wait_for(lambda: "probes through this node pass again" in d.read_log(), 15), d.read_log()
    withdrawals = d.read_log().count("ha: withdrew %s: probe" % vip)
    time.sleep(3)
    assert lab.announced(vip) and d.read_log().count("ha: withdrew %s: probe" % vip) == withdrawals


def test_l4_announces_withdraws_and_survives_restarts(lab):
    lab.start_reals()
    d = Daemon(lab, "l4", l4_body(), SLUICE_L4).start()
    # Announced while the reals are healthy: the router's kernel route and
    # its BIRD both have it, with the LB as next hop; traffic flows.
    wait_announced(lab, d, VIP)
    assert "10.12.100.1/32" in lab.router.birdc("show", "route", "for", VIP)
    assert re.match(r"r[12] ", wait_for(lambda: re.match(r"r[12] ", get_vip(VIP)) and get_vip(VIP), 10) or "")
    assert wait_for(lambda: sessions_up(d), 20), d.ha()
    st = d.ha()
    assert [a["address"] for a in st["announced"]] == [VIP]
    assert st["announced"][0]["priority"] == 0
    assert st["announced"][0]["owners"][0]["owner"] == "tcp:%s:80" % VIP
    assert st["bird"]["up"] and st["node"] == "lb-a1" and st["zone"] == "a"
    m = d.metrics()
    assert 'sluice_ha_announced{address="%s"} 1' % VIP in m
    # every sluice_ha_ family served is in docs/admin-api.md, and back
    served = {n: t for n, (t, _) in metrics_doc.families(m).items() if n.startswith("sluice_ha_")}
    assert served == {n: t for n, t in metrics_doc.documented_families().items() if n.startswith("sluice_ha_")}
    assert 'sluice_ha_bgp_session_up{neighbor="%s"} 1' % ROUTER in m
    assert 'sluice_ha_bfd_session_up{neighbor="%s"} 1' % ROUTER in m
    status = d.ctl("status")
    assert status.returncode == 0 and VIP in status.stdout and "Established" in status.stdout, status

    # Every real fails: withdrawn, with the reason; back when they return.
    lab.stop_reals()
    assert wait_for(lambda: not lab.announced(VIP), 15), lab.route(VIP)
    wd = d.ha()["withdrawn"]
    assert wd and wd[0]["address"] == VIP and wd[0]["reason"] == "too few healthy (0/2)", wd
    assert 'sluice_ha_withdrawals_total{reason="too_few_healthy"} 1' in d.metrics()
    lab.start_reals()
    assert wait_for(lambda: lab.announced(VIP), 15), (lab.route(VIP), d.ha())

    # A reload reaches the companion: more healthy reals asked for than
    # there are withdraws the VIP; a priority rewrites BIRD's file and the
    # router sees the prepends; back as it was.
    d.write(min_healthy=3)
    d.proc.send_signal(signal.SIGHUP)
    assert wait_for(lambda: not lab.announced(VIP), 10), lab.route(VIP)
    assert re.match(r"too few healthy \(\d/2\)$", d.ha()["withdrawn"][0]["reason"]), d.ha()
    d.write(priority=2)
    d.proc.send_signal(signal.SIGHUP)
    assert wait_for(lambda: lab.announced(VIP), 10), lab.route(VIP)
    path = lambda: re.search(r"BGP.as_path: ([\d ]+)", lab.router.birdc("show", "route", "all", "for", VIP))
    assert wait_for(lambda: path() and path().group(1).split() == ["65010"] * 3, 10), \
        lab.router.birdc("show", "route", "all", "for", VIP)
    assert d.ha()["announced"][0]["priority"] == 2
    d.write()
    d.proc.send_signal(signal.SIGHUP)
    assert wait_for(lambda: path() and path().group(1).split() == ["65010"], 10)

    # Drain and undrain.
    out = d.ctl("drain")
    assert out.returncode == 0 and "drained" in out.stdout, out
    assert wait_for(lambda: not lab.announced(VIP), 10), lab.route(VIP)
    st = d.ha()
    assert st["drained"] and st["withdrawn"][0]["reason"] == "drained", st
    assert d.ctl("drain").stdout.strip() == "drained (it already was)"
    assert d.ctl("undrain").returncode == 0
    assert wait_for(lambda: lab.announced(VIP), 10), lab.route(VIP)
    # A bad request gets a JSON 400 with the reason.
    bad = nsexec(NS_LB, "curl", "-s", "-o", "/dev/stdout", "-w", "\n%{http_code}", "-X", "POST",
                 "--data", "[1]", "http://%s/api/ha/drain" % ADMIN, check=False).stdout
    body, _, code = bad.rpartition("\n")
    assert code == "400" and "error" in json.loads(body), bad
    assert not d.ha()["drained"]

    # SIGTERM: the route is withdrawn before the process exits (the
    # companion hears "stopping" before the tier stops: the log says so
    # in that order), and BIRD stays.
    bird = d.bird_pid()
    d.proc.send_signal(signal.SIGTERM)
    assert d.proc.wait(timeout=15) == 0
    log = d.new_log()
    assert "ha: stopping: withdrew 1 address" in log, log
    assert log.index("ha: stopping: withdrew") < log.index("signal SIGTERM: stopping"), log
    assert wait_for(lambda: not lab.announced(VIP), 10), lab.route(VIP)
    assert pid_alive(bird)

    # A new daemon adopts the running BIRD (same process) and announces.
    d.start()
    assert wait_for(lambda: lab.announced(VIP), 30), (lab.route(VIP), d.ha())
    assert d.bird_pid() == bird and pid_alive(bird)

    assert kill9_and_restart(lab, d, VIP, HA_IF) == bird

    # BIRD itself dies (managed mode): its sessions close, the router
    # withdraws; the daemon finds it gone, starts it again on the same
    # file, and the VIP is announced again.
    os.kill(bird, signal.SIGKILL)
    assert wait_for(lambda: not lab.announced(VIP), 10), lab.route(VIP)
    def new_bird():
        try:
            return d.bird_pid() != bird and pid_alive(d.bird_pid())
        except (OSError, ValueError):
            return False
    assert wait_for(lambda: new_bird() and lab.announced(VIP), 60), \
        (lab.route(VIP), d.ha(), d.read_log()[-3000:])
    assert d.ha()["bird"]["restarts"] == 1 and d.ha()["bird"]["up"], d.ha()
    assert "ha: the BIRD this node manages is not running" in d.read_log()
    assert "(found dead and started again 1 time)" in d.ctl("status").stdout


SYNC_PEER = "10.12.0.6"           # a sync peer the test plays (from the router's namespace)
STANDINS = ("10.12.200.1", "10.12.200.2")


def hello(key, seq, locals_, node=6, epoch=1765000000000000):
    """An l4.sync hello (src/l4/sync_wire.h) listing the peer's FullNAT
    local addresses (IPv4 ones as v4-mapped IPv6), signed with key."""
    body = b"".join(socket.inet_pton(socket.AF_INET6, a) if ":" in a else
                    bytes(10) + b"\xff\xff" + socket.inet_pton(socket.AF_INET, a) for a in locals_)
    hdr = b"SLSY" + bytes([1, 2]) + struct.pack(">HIQQ", len(locals_), node, epoch, seq)
    return hdr + body + hmac.new(key, hdr + body, hashlib.sha256).digest()


def send_hellos(payloads):
    code = ("import socket,sys\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\ns.bind(('%s',7400))\n"
            "for h in sys.argv[1:]:\n    s.sendto(bytes.fromhex(h),('%s',7400))\n" % (SYNC_PEER, LB))
    nsexec(NS_RT, sys.executable, "-c", code, *[p.hex() for p in payloads])


def test_l4_announces_sync_peers_local_addresses_as_standins(lab):
    """l4.sync's peers' FullNAT local addresses (from their hellos) are
    announced as stand-ins, with the stand-in path, while the peer lives;
    a hello that lists other addresses moves the stand-ins."""
    key = os.urandom(32)
    (lab.tmp / "sync.key").write_bytes(key)
    os.chmod(lab.tmp / "sync.key", 0o600)
    nsexec(NS_RT, "ip", "addr", "add", SYNC_PEER + "/24", "dev", "eth0")
    lab.start_reals()
    body = l4_body() + "  sync:\n    listen: %s:7400\n    peers: [\"%s:7400\"]\n    key_file: %s\n" % (
        LB, SYNC_PEER, lab.tmp / "sync.key")
    d = Daemon(lab, "l4", body, SLUICE_L4).start()
    assert wait_for(lambda: lab.announced(VIP), 30), (lab.route(VIP), d.ha(), lab.diagnose())
    assert not lab.announced(STANDINS[0])
    send_hellos([hello(key, 1, [STANDINS[0]])])
    if not wait_for(lambda: lab.announced(STANDINS[0]), 15):
        pytest.fail("stand-in not announced: %s\n%s\n%s" % (json.dumps(d.ha()), d.read_log(), lab.diagnose()))
    # The router has it with the stand-in path: the ASN 1 + priority 0 + 16 times.
    show = lambda a: lab.router.birdc("show", "route", "all", "for", a)
    path = re.search(r"BGP.as_path: ([\d ]+)", show(STANDINS[0]))
    assert path and path.group(1).split() == ["65010"] * 17, show(STANDINS[0])
    assert "(65010,2000)" in show(STANDINS[0]), show(STANDINS[0])
    # ... while the VIP keeps the node's own path.
    assert re.search(r"BGP.as_path: 65010\s*$", show(VIP), re.M), show(VIP)
    st = {a["address"]: a for a in d.ha()["announced"]}
    assert st[STANDINS[0]]["standin"] and st[STANDINS[0]]["priority"] == 16, st
    assert st[STANDINS[0]]["owners"][0]["owner"] == "sync peer %s:7400" % SYNC_PEER, st
    assert not st[VIP]["standin"], st
    # The peer's next hello lists another address: the stand-ins follow.
    send_hellos([hello(key, 2, [STANDINS[1]])])
    assert wait_for(lambda: lab.announced(STANDINS[1]) and not lab.announced(STANDINS[0]), 15), \
        (d.ha(), lab.route(STANDINS[0]), lab.route(STANDINS[1]))
    # Drained: stand-ins go with the VIPs.
    assert d.ctl("drain").returncode == 0
    assert wait_for(lambda: not lab.announced(STANDINS[1]) and not lab.announced(VIP), 10), d.ha()
    assert d.ctl("undrain").returncode == 0
    assert wait_for(lambda: lab.announced(STANDINS[1]), 10), d.ha()


def probe_yaml(gateway):
    """ha.probe as the probe tests (test_ha_v6.py's too) run it: every
    second through gateway, from ports 61000-61999."""
    return """\
  probe:
    enabled: true
    interval: 1s
    timeout: 500ms
    fall: 2
    rise: 1
    hold: 3s
    source_ports: 61000-61999
    gateway: {gateway}
""".format(gateway=gateway)


PROBE = probe_yaml(ROUTER)


def probe_sample(metrics, result, path, address=VIP):
    m = re.search(r'sluice_ha_probe_total\{address="%s",port="80",result="%s",path="%s"\} (\d+)'
                  % (re.escape(address), result, path), metrics)
    return int(m.group(1)) if m else 0


def test_l4_withdraws_a_vip_whose_probes_fail_while_health_checks_pass(lab):
    """ha.probe: `sluice l4` probes its VIP through the router, as a
    client would (LB -> router -> LB's XDP -> real -> LB). The reals then
    drop SYNs from the probes' source ports (nftables in each real's
    namespace): the TCP health checks, from the LB's ephemeral ports, still
    pass, so only the probe can see that clients from such ports are not
    served. The VIP is withdrawn (reason probe), re-announced on trial
    after hold, withdrawn again while the drop stays, and announced for
    good once the reals answer again."""
    # The LB's probes leave through the router (its default route).
    lab.route_lb_through_router()
    lab.start_reals()
    d = Daemon(lab, "l4", l4_body(), SLUICE_L4, probe=PROBE).start()
    wait_announced(lab, d, VIP)
    # Probes through this node succeed.
    if not wait_for(lambda: probe_sample(d.metrics(), "ok", "us") >= 2, 20):
        pytest.fail("no probe through the LB succeeded:\n%s\n%s\n%s" % (
            json.dumps(d.ha()), "\n".join(l for l in d.metrics().splitlines() if "probe" in l), d.read_log()))
    st = {a["address"]: a for a in d.ha()["announced"]}
    probe = st[VIP]["probe"][0]
    assert probe["port"] == 80 and probe["state"] == "serving" and probe["through_us"]["ok"] >= 2, probe
    assert d.ha()["probe"] == {"enabled": True, "warning": None}, d.ha()
    assert "probe :80 serving" in d.ctl("status").stdout

    # The reals drop the probes' SYNs; health checks still pass.
    drop = "add table inet s12c\nadd chain inet s12c in { type filter hook input priority 0; }\n" \
           "add rule inet s12c in tcp dport 80 tcp sport 61000-61999 drop\n"
    for ns, _, _ in REALS:
        subprocess.run(["ip", "netns", "exec", ns, "nft", "-f", "-"], input=drop, text=True, check=True)
    if not wait_for(lambda: not lab.announced(VIP), 20):
        pytest.fail("not withdrawn:\n%s\n%s" % (json.dumps(d.ha()), d.read_log()))
    wd = {w["address"]: w for w in d.ha()["withdrawn"]}
    assert wd[VIP]["reason"] == "probe failed", wd
    assert wd[VIP]["probe"][0]["state"] in ("withdrawn", "rechecking"), wd
    m = d.metrics()
    assert probe_sample(m, "timeout", "us") >= 2, m
    assert re.search(r'sluice_ha_withdrawals_total\{reason="probe"\} [1-9]', m), m
    # the node's own health was fine all along
    assert all(o["healthy"] == 2 for o in wd[VIP]["owners"]), wd
    assert "ha: withdrew %s: probe" % VIP in d.read_log()
    # After hold it comes back on trial, and goes again while probes fail;
    # the reals answer again: re-announced after hold, and it stays.
    def repair():
        for ns, _, _ in REALS:
            nsexec(ns, "nft", "delete", "table", "inet", "s12c")
    retried_on_trial_then_restored(lab, d, VIP, repair)
    assert {a["address"]: a for a in d.ha()["announced"]}[VIP]["probe"][0]["state"] == "serving"
    assert re.match(r"r[12] ", get_vip(VIP) or ""), get_vip(VIP)


def proxy_body(vip=PROXY_VIP):
    return proxy_web_yaml(vip + ":80", "127.0.0.1:8081")


def test_proxy_announces_its_listener(lab):
    # A backend in the LB namespace; a TCP listener on the VIP, so that a
    # tunnel keeps the proxy draining after SIGTERM.
    lab.spawn(NS_LB, sys.executable, "-c", SERVER, "p1", "8081")
    body = ("drain_timeout: 20s\nworkers: 2\n" + proxy_body() +
            '  - { name: any, listen: "0.0.0.0:8082", protocol: tcp, pool: web }\n')
    d = Daemon(lab, "proxy", body, SLUICE_ASAN).start()
    wait_announced(lab, d, PROXY_VIP)
    assert wait_for(lambda: get_vip(PROXY_VIP).startswith("p1 "), 10)
    st = d.ha()
    assert [a["address"] for a in st["announced"]] == [PROXY_VIP]
    assert st["announced"][0]["owners"][0]["owner"] == "listener vip"
    # the wildcard listener is not on the board at all
    assert all(w["address"] != "0.0.0.0" for w in st["withdrawn"])
    # The workers do not hold the tun device: only the master does.
    status = d.api("GET", "/api/status")
    workers = [w["pid"] for w in status["workers"]]
    assert len(workers) == 2
    for pid in workers:
        links = [os.readlink("/proc/%d/fd/%s" % (pid, fd)) for fd in os.listdir("/proc/%d/fd" % pid)]
        assert "/dev/net/tun" not in links, (pid, links)
    master = d.proc.pid
    # (the master is the child of `ip netns exec`, which execs: same pid)
    links = [os.readlink("/proc/%d/fd/%s" % (master, fd)) for fd in os.listdir("/proc/%d/fd" % master)]
    assert links.count("/dev/net/tun") == 2, links

    # A tunnel through the VIP keeps the proxy draining after SIGTERM.
    tunnel = lab.spawn(NS_RT, sys.executable, "-c",
                       "import socket,sys,time\ns=socket.create_connection(('%s',80),timeout=5)\n"
                       "s.sendall(b'GET / HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n');print(s.recv(100)[:4].decode(),"
                       "flush=True)\ntime.sleep(60)" % PROXY_VIP, stdout=subprocess.PIPE, text=True)
    assert tunnel.stdout.readline().strip() == "HTTP"
    d.proc.send_signal(signal.SIGTERM)
    # Withdrawn while the proxy still drains (the process is alive).
    assert wait_for(lambda: not lab.announced(PROXY_VIP), 10), lab.route(PROXY_VIP)
    assert d.proc.poll() is None, "the proxy stopped before the test could see it draining"
    assert wait_for(lambda: "ha: stopping: withdrew 1 address" in d.new_log(), 5), d.new_log()
    tunnel.kill()
    assert d.proc.wait(timeout=30) == 0


def test_proxy_withdraws_a_vip_whose_probes_fail_while_health_checks_pass(lab):
    """ha.probe with `sluice proxy`: the proxy probes its listener's VIP
    through the router (LB -> router -> back to the LB's own kernel and
    listener); sock_diag, or the engine seeing its SYN come back, says the
    probe went through this node. A drop on the router of the VIP's
    traffic is not this node's to act on (nothing of the probe reached
    it): counted as elsewhere, the VIP stays. Then the node itself stops
    taking the VIP's connections from the network (nftables on the LB's
    uplink; its backend's health checks, over lo, still pass): the VIP is
    withdrawn (reason probe), counted, re-tried after hold, and announced
    for good once the path is repaired."""
    lab.route_lb_through_router()
    # The probe comes back to the LB with the LB's own address as source:
    # IPv4 takes it only with accept_local on the uplink (docs/ha.md).
    nsexec(NS_LB, "sysctl", "-q", "-w", "net.ipv4.conf.lb0.accept_local=1")
    lab.spawn(NS_LB, sys.executable, "-c", SERVER, "p1", "8081")
    d = Daemon(lab, "proxy", proxy_body(), SLUICE_ASAN, probe=PROBE).start()
    wait_announced(lab, d, PROXY_VIP)
    sample = lambda result, path: probe_sample(d.metrics(), result, path, PROXY_VIP)
    if not wait_for(lambda: sample("ok", "us") >= 2, 20):
        pytest.fail("no probe through the proxy succeeded:\n%s\n%s\n%s" % (
            json.dumps(d.ha()), "\n".join(l for l in d.metrics().splitlines() if "probe" in l), d.read_log()))
    st = d.ha()
    assert st["probe"] == {"enabled": True, "warning": None}, st
    probe = st["announced"][0]["probe"][0]
    assert probe["port"] == 80 and probe["state"] == "serving" and probe["through_us"]["ok"] >= 2, probe
    assert "probe :80 serving" in d.ctl("status").stdout
    assert get_vip(PROXY_VIP).startswith("p1 ")

    def nft(ns, rules):
        subprocess.run(["ip", "netns", "exec", ns, "nft", "-f", "-"], input=rules, text=True, check=True)

    # The router drops the probes on their way to the VIP: nothing reached
    # this node, so nothing is held against it.
    nft(NS_RT, "add table inet s12c\nadd chain inet s12c through { type filter hook forward priority 0; }\n"
               "add rule inet s12c through ip daddr %s tcp dport 80 drop\n" % PROXY_VIP)
    elsewhere = sample("timeout", "elsewhere")
    assert wait_for(lambda: sample("timeout", "elsewhere") >= elsewhere + 3, 15), d.metrics()
    assert lab.announced(PROXY_VIP) and "withdrew %s: probe" % PROXY_VIP not in d.read_log()
    nsexec(NS_RT, "nft", "delete", "table", "inet", "s12c")
    assert wait_for(lambda: sample("ok", "us") >= probe["through_us"]["ok"] + 2, 15), d.metrics()

    # The node drops the VIP's connections from the network; its health
    # checks pass.
    nft(NS_LB, "add table inet s12c\nadd chain inet s12c in { type filter hook input priority 0; }\n"
               "add rule inet s12c in iifname lb0 ip daddr %s tcp dport 80 drop\n" % PROXY_VIP)
    if not wait_for(lambda: not lab.announced(PROXY_VIP), 20):
        pytest.fail("not withdrawn:\n%s\n%s" % (json.dumps(d.ha()), d.read_log()))
    wd = {w["address"]: w for w in d.ha()["withdrawn"]}
    assert wd[PROXY_VIP]["reason"] == "probe failed", wd
    assert wd[PROXY_VIP]["owners"][0]["healthy"] == 1, wd   # the node's own health was fine
    m = d.metrics()
    assert probe_sample(m, "timeout", "us", PROXY_VIP) >= 2, m
    assert re.search(r'sluice_ha_withdrawals_total\{reason="probe"\} [1-9]', m), m
    assert 'sluice_ha_probe_state{address="%s",port="80",state="serving"} 0' % PROXY_VIP in m, m
    assert "ha: withdrew %s: probe" % PROXY_VIP in d.read_log()
    # After hold, back on trial, and withdrawn again while the drop stays;
    # repaired: announced after hold, restored, and it stays.
    retried_on_trial_then_restored(lab, d, PROXY_VIP, lambda: nsexec(NS_LB, "nft", "delete", "table", "inet", "s12c"))
    assert d.ha()["announced"][0]["probe"][0]["state"] == "serving"
    assert 'sluice_ha_probe_state{address="%s",port="80",state="serving"} 1' % PROXY_VIP in d.metrics()
    assert get_vip(PROXY_VIP).startswith("p1 ")
