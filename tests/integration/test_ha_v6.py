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
import subprocess
import sys

import pytest

from netns_tools import (BIRD, BIRDC, ETHTOOL_STXCSUM, Bird, HaDaemon, NetnsLab, ethtool_set, l4_detach, lab_fixture,
                         missing_tools, nsexec, proxy_web_yaml, sh, wait_for)
from test_ha_announce import ROUTER_BIRD, hello, kill9_and_restart, probe_yaml, wait_announced
from test_ha_announce import ha_section as announce_ha_section, probe_sample as announce_probe_sample
from test_l4_netns import SERVER

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SLUICE_L4 = os.environ.get("SLUICE_L4_BIN", os.path.join(ROOT, "build", "sluice"))
SLUICE_ASAN = os.environ.get("SLUICE_BIN", os.path.join(ROOT, "build", "sluice-asan"))

TAG = "s12v%d-" % (os.getpid() % 1000)
NS_SW, NS_RT, NS_LB, NS_C = TAG + "sw", TAG + "rt", TAG + "lb", TAG + "c"
REALS = [(TAG + "r1", "fd12:f::11", "r1"), (TAG + "r2", "fd12:f::12", "r2")]
ROUTER, LB, ROUTER_C, CLIENT = "fd12:f::1", "fd12:f::5", "fd12:c::1", "fd12:c::2"
VIP, LOCAL, PROXY_VIP = "fd12:100::1", "fd12:200::5", "fd12:100::2"
SYNC_PEER, STANDIN = "fd12:f::6", "fd12:200::6"   # a sync peer the test plays (from the router's namespace)
ADMIN = "127.0.0.1:9946"          # in the LB's own namespace
HA_IF = TAG + "ha"

class Lab(NetnsLab):
    def add_ns(self, ns):
        super().add_ns(ns)
        # No duplicate address detection: a tentative address (the
        # link-local ones included) delays neighbour discovery and BGP's
        # first connect by a second or more.
        nsexec(ns, "sysctl", "-qw", "net.ipv6.conf.default.accept_dad=0")

    def build(self):
        self.add_switch(NS_SW)
        self.add_host(NS_RT, "eth0", [ROUTER + "/64"])
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
        lb_peer = self.add_host(NS_LB, "lb0", [LB + "/64"])
        # FullNAT replies leave the LB by XDP towards the client's next hop.
        nsexec(NS_LB, "ip", "-6", "route", "add", "default", "via", ROUTER)
        for ns, addr, _ in REALS:
            self.add_host(ns, "eth0", [addr + "/64"])
            nsexec(ns, "ip", "addr", "add", VIP + "/128", "dev", "lo")
            nsexec(ns, "ip", "-6", "route", "add", "default", "via", ROUTER)
            ethtool_set(ns, "eth0", ETHTOOL_STXCSUM, 0)   # FullNAT replies go through XDP too
        self.mount_bpffs()
        self.xdp_pass_on(NS_SW, lb_peer)
        self.router = Bird(NS_RT, self.tmp, "rt-bird")
        self.daemon_pids.append(self.router.start(ROUTER_BIRD.format(log=self.router.log, router_id="10.12.250.1",
                                                                     router=ROUTER, lb=LB, family="ipv6")))
        self.lb_bird = Bird(NS_LB, self.tmp, "lb-bird")   # the daemons' managed BIRD

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

    def diagnose(self):
        return "router:\n%s\n%s\nLB:\n%s\n%s\nLB addresses:\n%s" % (
            self.router.birdc("show", "protocols", "all"), self.router.birdc("show", "route", "all"),
            self.lb_bird.birdc("show", "protocols", "all"), self.lb_bird.birdc("show", "route", "all"),
            nsexec(NS_LB, "ip", "addr", check=False).stdout)

    def detach_xdp(self):
        l4_detach(NS_LB, SLUICE_L4, self.bpffs + "/sluice")


lab = lab_fixture(Lab, lambda: missing_tools("network namespaces, XDP, tun", ("ip", "curl", BIRD, BIRDC),
                                             "iproute2, curl, bird2", (SLUICE_L4, SLUICE_ASAN)))


def ha_section(tmp, probe="", announce=""):
    return announce_ha_section(tmp, node="lb-v6", router_id="10.12.250.5", router=ROUTER, ifname=HA_IF, min_healthy=None,
                               probe=probe, announce=announce)


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
    return "admin:\n  listen: %s\nlog:\n  level: info\n%s%s" % (
        ADMIN, proxy_web_yaml("[%s]:80" % PROXY_VIP, "[::1]:8081"), ha_section(tmp, probe))


class Daemon(HaDaemon):
    """`sluice l4` or `sluice proxy`, with its ha: section, in the LB
    namespace."""

    def __init__(self, lab, verb, config, binary):
        super().__init__(lab, NS_LB, verb, binary, lab.tmp / ("%s.yaml" % verb), lab.tmp / ("%s.log" % verb), ADMIN,
                         lab.lb_bird, ready_lines=["ha: node lb-v6"] + (["sluice l4 running"] if verb == "l4" else []),
                         extra_args=["--pin-dir", lab.bpffs + "/sluice"] if verb == "l4" else [])
        self.conf.write_text(config)


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
    rt = lab.router.birdc("show", "bfd", "sessions")
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
    kill9_and_restart(lab, d, VIP, HA_IF)
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
    path = re.search(r"BGP.as_path: ([\d ]+)", lab.router.birdc("show", "route", "all", "for", STANDIN))
    assert path and path.group(1).split() == ["65010"] * 17, lab.router.birdc("show", "route", "all", "for", STANDIN)
    assert re.search(r"BGP.as_path: 65010\s*$", lab.router.birdc("show", "route", "all", "for", LOCAL), re.M)
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


PROBE = probe_yaml(ROUTER)


def probe_sample(metrics, result, path):
    return announce_probe_sample(metrics, result, path, PROXY_VIP)


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
