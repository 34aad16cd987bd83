"""l4.sync end to end: two LB nodes replicate their NAT and FullNAT
connection entries, and when one dies the other continues its flows.

Topology (network namespaces prefixed s12s-, removed at the end):

    client  10.0.0.2 (and 10.9.0.2, the client address the flows use) --+
    lb1     10.0.0.5   sluice l4, FullNAT local address 10.0.0.50     --+-- bridge
    lb2     10.0.0.6   sluice l4, FullNAT local address 10.0.0.60     --+
    r1, r2  10.0.0.11-12, HTTP on 8080                                --+

Both LBs run `sluice l4` with the same services (NAT 10.0.0.100:80 and
FullNAT 10.0.0.101:80, to the reals' port 8080) and l4.sync pointing at
each other. Routes stand in for the routers of a real deployment: the
client reaches the VIPs through lb1, the reals send NAT replies (their
default route) and replies to lb1's local address through lb1. When lb1
dies (kill -9, its XDP detached, its link down), the routes move to lb2,
as the routers do when lb1's BGP routes go (in production lb2 announces
lb1's local address as a stand-in all along, with a worse path).

Needs root, `ip` and native XDP on veth; skips otherwise.
"""
import hashlib
import hmac
import json
import os
import re
import signal
import struct
import subprocess
import sys

import pytest

import metrics_doc
from netns_tools import ETHTOOL_STXCSUM, NetnsLab, ethtool_set, hold_prefix, l4_detach, nsexec, sh
from test_l4_netns import RESTART_PROBE, SERVER, SLUICE_BIN, RestartProbe, have_tools, wait_for

PFX = "s12s-"
NS_SW, NS_C = PFX + "sw", PFX + "c"
LBS = [("lb1", "10.0.0.5", "10.0.0.50", 9941), ("lb2", "10.0.0.6", "10.0.0.60", 9942)]
REALS = [("r1", "10.0.0.11"), ("r2", "10.0.0.12")]
CLIENT_NET, CLIENT = "10.9.0.0/24", "10.9.0.2"
VIP_NAT, VIP_FNAT = "10.0.0.100", "10.0.0.101"
# The flows' addresses by family (the sync channel itself stays on IPv4).
FAM = {
    4: {"lb": {"lb1": "10.0.0.5", "lb2": "10.0.0.6"}, "local": {"lb1": "10.0.0.50", "lb2": "10.0.0.60"},
        "reals": ["10.0.0.11", "10.0.0.12"], "client": CLIENT, "client_net": CLIENT_NET, "client_gw": "10.0.0.2",
        "vip_nat": VIP_NAT, "vip_fnat": VIP_FNAT, "host": "/32", "ip": ("ip",)},
    6: {"lb": {"lb1": "fd00::5", "lb2": "fd00::6"}, "local": {"lb1": "fd00::50", "lb2": "fd00::60"},
        "reals": ["fd00::11", "fd00::12"], "client": "fd09::2", "client_net": "fd09::/64", "client_gw": "fd00::2",
        "vip_nat": "fd00::100", "vip_fnat": "fd00::101", "host": "/128", "ip": ("ip", "-6")},
}
FAKE_PEER = "10.0.0.2:7400"   # a peer only the test speaks as (from the client's namespace)
SYNC_PORT = 7400
KEY = b"k" * 48


class Lab(NetnsLab):
    def __init__(self, tmp):
        super().__init__(tmp)
        self.lbs = {}

    def add_host(self, ns, ifname, addr):
        """ns on the switch's bridge with addr/24 and fd00::<its last
        byte>/64 on ifname."""
        peer = super().add_host(ns, ifname, [addr + "/24", "fd00::%s/64" % addr.split(".")[-1]])
        # Senders checksum in software: XDP may rewrite what they send.
        ethtool_set(ns, ifname, ETHTOOL_STXCSUM, 0)
        return peer

    def build(self):
        self.add_switch(NS_SW)
        self.mount_bpffs()
        self.add_host(NS_C, "eth0", "10.0.0.2")
        nsexec(NS_C, "ip", "addr", "add", CLIENT + "/32", "dev", "eth0")
        nsexec(NS_C, "ip", "-6", "addr", "add", FAM[6]["client"] + "/128", "dev", "eth0", "nodad")
        for name, addr, _, _ in LBS:
            peer = self.add_host(PFX + name, "lb0", addr)
            self.xdp_pass_on(NS_SW, peer)
            self.client_routes(name)
        for name, addr in REALS:
            self.add_host(PFX + name, "eth0", addr)
        self.route_via("lb1")
        for name, _ in REALS:
            self.spawn(PFX + name, sys.executable, "-c", SERVER, name, "8080")
        (self.tmp / "sync.key").write_bytes(KEY)
        os.chmod(self.tmp / "sync.key", 0o600)

    def client_routes(self, name):
        """The way back to the clients (a router, in production): l4.sync
        resolves an imported entry's next hop by it."""
        for f in FAM.values():
            nsexec(PFX + name, *f["ip"], "route", "replace", f["client_net"], "via", f["client_gw"])

    def link_up(self, name):
        """The LB's link back up, with what the kernel deleted with it: the
        routes, and the IPv6 address (keep_addr_on_down is off)."""
        addr = {n: a for n, a, _, _ in LBS}[name]
        nsexec(PFX + name, "ip", "addr", "replace", "fd00::%s/64" % addr.split(".")[-1], "dev", "lb0", "nodad")
        nsexec(PFX + name, "ip", "link", "set", "lb0", "up")
        self.client_routes(name)

    def route_via(self, lb):
        """What the routers do, in both families: the VIPs, the NAT replies
        and lb1's FullNAT local address go to lb; lb2's local address always
        to lb2."""
        for f in FAM.values():
            via = f["lb"][lb]
            for vip in (f["vip_nat"], f["vip_fnat"]):
                nsexec(NS_C, *f["ip"], "route", "replace", vip + f["host"], "via", via, "src", f["client"])
            for name, _ in REALS:
                ns = PFX + name
                nsexec(ns, *f["ip"], "route", "replace", "default", "via", via)
                nsexec(ns, *f["ip"], "route", "replace", f["local"]["lb1"] + f["host"], "via", via)
                nsexec(ns, *f["ip"], "route", "replace", f["local"]["lb2"] + f["host"], "via", f["lb"]["lb2"])

    def config(self, name, extra_peers=(), family=4):
        f = FAM[family]
        lb = {n: (a, port) for n, a, _, port in LBS}
        addr, admin = lb[name]
        local = '"%s"' % f["local"][name]
        peers = [a + ":%d" % SYNC_PORT for n, a, _, _ in LBS if n != name] + list(extra_peers)
        host = (lambda a: "[%s]" % a) if family == 6 else (lambda a: a)
        reals = "".join('        - "%s:8080"\n' % host(a) for a in f["reals"])
        # Lenient checks: on a loaded machine a real taken out for a slow
        # check would have its flows re-picked (reset), which is not what
        # this test is about.
        hc = "      health_check: { type: tcp, interval: 1s, timeout: 1s, rise: 1, fall: 5 }\n"
        path = self.tmp / (name + ".yaml")
        path.write_text(
            "admin:\n  listen: 127.0.0.1:%d\n"
            "l4:\n  interfaces: [lb0]\n  xdp_mode: native\n"
            "  sync:\n    listen: %s:%d\n    peers: [%s]\n    key_file: %s\n    refresh: 2s\n"
            "  services:\n"
            "    - vip: \"%s:80\"\n      mode: nat\n%s      reals:\n%s"
            "    - vip: \"%s:80\"\n      mode: fullnat\n      local_addresses: [%s]\n%s      reals:\n%s"
            % (admin, addr, SYNC_PORT, ", ".join(peers), self.tmp / "sync.key", host(f["vip_nat"]), hc, reals,
               host(f["vip_fnat"]), local, hc, reals))
        return path

    def start_lb(self, name, extra_peers=(), family=4):
        conf = self.config(name, extra_peers, family)
        log_path = self.tmp / (name + ".log")
        log = open(log_path, "ab")
        offset = log_path.stat().st_size
        p = subprocess.Popen(["ip", "netns", "exec", PFX + name, SLUICE_BIN, "l4", "-c", str(conf), "--pin-dir",
                              "%s/%s" % (self.bpffs, name)], stdout=log, stderr=subprocess.STDOUT)
        self.procs.append(p)
        self.lbs[name] = p

        def ready():
            text = log_path.read_text(errors="replace")[offset:]
            assert p.poll() is None, "sluice l4 on %s exited:\n%s" % (name, text)
            return len(re.findall(r"weights (\S+=1 ?){2}$", text, re.M)) >= 2 and "sluice l4 running" in text
        assert wait_for(ready, 30), (self.tmp / (name + ".log")).read_text(errors="replace")
        return p

    def detach(self, name):
        l4_detach(PFX + name, SLUICE_BIN, "%s/%s" % (self.bpffs, name))

    def api(self, name, path):
        admin = {n: port for n, _, _, port in LBS}[name]
        out = nsexec(PFX + name, sys.executable, "-c",
                     "import urllib.request;print(urllib.request.urlopen('http://127.0.0.1:%d%s', timeout=5)"
                     ".read().decode())" % (admin, path))
        return out.stdout

    def sync(self, name):
        return json.loads(self.api(name, "/api/l4/sync"))

    def peer(self, name, addr):
        return next(p for p in self.sync(name)["peers"] if p["address"] == addr)

    def detach_xdp(self):
        for name, _, _, _ in LBS:
            self.detach(name)


class Probe(RestartProbe):
    """RESTART_PROBE's long-lived connections, from this lab's client."""

    def __init__(self, lab, vip, n=4, bound=90):
        self.p = subprocess.Popen(["ip", "netns", "exec", NS_C, sys.executable, "-c", RESTART_PROBE, vip, str(n),
                                   str(bound)], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        lab.procs.append(self.p)
        self.buf = b""
        self.rounds = 0
        line = self._line(15)
        assert line.startswith("READY "), line
        self.first = line[len("READY "):].split("|")


@pytest.fixture
def lab(tmp_path):
    why = have_tools()
    if why:
        pytest.skip(why)
    held = hold_prefix(PFX)   # another run of this test waits its turn
    leftover = [ns for ns in sh("ip", "netns", "list").stdout.split() if ns.startswith(PFX)]
    if leftover:
        held.close()
        pytest.fail("namespaces of an earlier run are still there: %s" % leftover)
    t = Lab(tmp_path)
    try:
        try:
            t.build()
        except subprocess.CalledProcessError as e:
            pytest.fail("cannot build the lab: %s %s" % (e.cmd, e.stderr))
        yield t
    finally:
        t.destroy()
        held.close()


def datagram(key, seq, entries=(), epoch=1765000000000000, node=99):
    """An entries datagram as sync_wire.h specifies it, signed with key."""
    body = b"".join(entries)
    hdr = b"SLSY" + bytes([1, 1]) + struct.pack(">HIQQ", len(entries), node, epoch, seq)
    return hdr + body + hmac.new(key, hdr + body, hashlib.sha256).digest()


def v4(addr):
    return bytes(10) + b"\xff\xff" + bytes(int(x) for x in addr.split("."))


def entry(client, cport, vip, vport, real, rport, mode=2, proto=6, age=1):
    return (v4(client) + struct.pack("!H", cport) + v4(vip) + struct.pack("!H", vport) + bytes([proto, mode, 0, 0])
            + v4(real) + struct.pack("!H", rport) + bytes(18) + struct.pack(">I", age))


def send_from_client(payloads, sport, to="10.0.0.6"):
    code = ("import socket,sys\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\ns.bind(('10.0.0.2',%d))\n"
            "for h in sys.argv[1:]:\n    s.sendto(bytes.fromhex(h),('%s',%d))\n" % (sport, to, SYNC_PORT))
    nsexec(NS_C, sys.executable, "-c", code, *[p.hex() for p in payloads])


def client_ports(vip):
    """The client's source ports of its established connections to vip:80."""
    out = nsexec(NS_C, "ss", "-Htn", "state", "established", "dst", "%s:80" % vip).stdout
    return sorted(int(line.split()[2].rsplit(":", 1)[1]) for line in out.splitlines() if line.strip())


def test_l4_sync_nat_fullnat_failover(lab):
    lab.start_lb("lb1", extra_peers=[FAKE_PEER])
    lab.start_lb("lb2", extra_peers=[FAKE_PEER])
    nat, fnat = Probe(lab, VIP_NAT), Probe(lab, VIP_FNAT)
    assert nat.wait_rounds(3) and fnat.wait_rounds(3), "no traffic through lb1"
    assert all(b.split()[1] == CLIENT for b in nat.first), nat.first
    assert all(b.split()[1] == "10.0.0.50" for b in fnat.first), fnat.first

    # lb2 learns lb1's 8 flows as they open (the ring events), and lb1's
    # FullNAT local address from its hellos.
    assert wait_for(lambda: lab.peer("lb2", "10.0.0.5:%d" % SYNC_PORT)["imported_entries"] >= 8, 10), \
        lab.sync("lb2")
    assert wait_for(lambda: lab.peer("lb2", "10.0.0.5:%d" % SYNC_PORT)["local_addresses"] == ["10.0.0.50"], 5)
    assert wait_for(lambda: lab.peer("lb1", "10.0.0.6:%d" % SYNC_PORT)["local_addresses"] == ["10.0.0.60"], 5)

    # Authentication: a datagram with another key is refused and counted;
    # a signed one with a real lb2 does not have is read but not imported,
    # and sent again it is a replay; from an address not in the peers,
    # refused unheard.
    other = datagram(b"x" * 48, 1, [entry(CLIENT, 5555, VIP_NAT, 80, "10.0.0.11", 8080)])
    good = datagram(KEY, 1, [entry(CLIENT, 5555, VIP_NAT, 80, "10.0.0.99", 8080)])
    send_from_client([other, good, good], 7400)
    send_from_client([good], 7401)

    def counted():
        p = lab.peer("lb2", FAKE_PEER)
        return (p["rejected_datagrams"]["bad_mac"] == 1 and p["rejected_entries"]["unknown_real"] == 1
                and p["rejected_datagrams"]["replay"] == 1 and lab.sync("lb2")["rejected_unknown_peer"] == 1)
    assert wait_for(counted, 5), lab.sync("lb2")
    metrics = lab.api("lb2", "/metrics")
    assert re.search(r'sluice_l4_sync_rejected_datagrams_total\{peer="%s",reason="bad_mac"\} 1' % FAKE_PEER,
                     metrics), metrics
    assert re.search(r'sluice_l4_sync_imported_entries_total\{peer="10.0.0.5:%d"\} ([89]|[1-9]\d+)' % SYNC_PORT,
                     metrics), metrics
    assert re.search(r'sluice_l4_packets_total\{reason="sync_event"\} ([1-9]\d*)', lab.api("lb1", "/metrics"))
    # The client reuses a source port: a peer's entry of an older, closed
    # flow on the same client tuple (30 s idle), through either real, must
    # not take the live flow's place on lb1 (its next request would go to
    # the other real, mid-flow, and be reset). Refused as older, counted.
    ports = client_ports(VIP_NAT)
    assert len(ports) == 4, ports
    stale = [entry(CLIENT, port, VIP_NAT, 80, real, 8080, age=30) for port in ports for real in ("10.0.0.11",
                                                                                                  "10.0.0.12")]
    send_from_client([datagram(KEY, 1, stale)], 7400, to="10.0.0.5")
    assert wait_for(lambda: lab.peer("lb1", FAKE_PEER)["rejected_entries"]["older"] == len(stale), 5), \
        lab.peer("lb1", FAKE_PEER)
    assert lab.peer("lb1", FAKE_PEER)["imported_entries"] == 0
    assert nat.wait_rounds(3)

    served = {n: t for n, (t, _) in metrics_doc.families(metrics).items() if n.startswith("sluice_l4_sync_")}
    documented = {n: t for n, t in metrics_doc.documented_families().items() if n.startswith("sluice_l4_sync_")}
    assert served == documented and len(served) == 11, (served, documented)

    # lb2 restarts with empty maps: the ring events of those flows are
    # gone, lb1's periodic refresh (every 2 s here) teaches lb2 them again.
    lab.lbs["lb2"].send_signal(signal.SIGTERM)
    lab.lbs["lb2"].wait(timeout=10)
    lab.detach("lb2")
    lab.start_lb("lb2", extra_peers=[FAKE_PEER])
    assert wait_for(lambda: lab.peer("lb2", "10.0.0.5:%d" % SYNC_PORT)["imported_entries"] >= 8, 10), \
        lab.sync("lb2")
    assert nat.wait_rounds(2) and fnat.wait_rounds(2)
    before_failover = lab.sync("lb2")

    # lb1 dies. The routers move its routes to lb2: the flows go on there,
    # on the same reals, through lb1's local address.
    lab.lbs["lb1"].kill()
    lab.lbs["lb1"].wait(timeout=10)
    lab.detach("lb1")
    nsexec(PFX + "lb1", "ip", "link", "set", "lb0", "down")
    lab.route_via("lb2")
    assert nat.wait_rounds(5, timeout=30) and fnat.wait_rounds(5, timeout=30), "no traffic through lb2"

    # lb1 comes back with empty maps (a power loss). lb2 hears a new epoch
    # and sends it the flows it holds of others: lb1 has its flows back
    # before the routes return to it, and they go on there.
    lab.link_up("lb1")
    lab.start_lb("lb1")
    assert wait_for(lambda: lab.peer("lb2", "10.0.0.5:%d" % SYNC_PORT)["returned_entries"] >= 8, 10), \
        lab.sync("lb2")
    assert wait_for(lambda: lab.peer("lb1", "10.0.0.6:%d" % SYNC_PORT)["imported_entries"] >= 8, 10), \
        lab.sync("lb1")
    lab.route_via("lb1")
    assert nat.wait_rounds(5, timeout=30) and fnat.wait_rounds(5, timeout=30), "no traffic through lb1 again"
    for probe in (nat, fnat):
        rounds, errors = probe.finish()
        assert not errors, (rounds, errors, before_failover, lab.sync("lb2"), lab.sync("lb1"),
                            (lab.tmp / "lb1.log").read_text(errors="replace"))
    assert re.search(r'sluice_l4_packets_total\{reason="fwd_nat_reply"\} [1-9]', lab.api("lb1", "/metrics"))
    assert re.search(r'sluice_l4_packets_total\{reason="fwd_nat_reply"\} [1-9]', lab.api("lb2", "/metrics"))
    assert lab.lbs["lb2"].poll() is None


def test_l4_sync_key_file_refused(tmp_path):
    """A key that group or others can read, or a short one, stops the start
    before anything is loaded, with the file and line of key_file."""
    if not os.path.exists(SLUICE_BIN):
        pytest.skip("%s not built" % SLUICE_BIN)
    key = tmp_path / "sync.key"
    conf = tmp_path / "l4.yaml"
    conf.write_text("l4:\n  interfaces: [s12s-none]\n  sync:\n    listen: 127.0.0.1:7400\n"
                    "    peers: [127.0.0.2:7400]\n    key_file: %s\n  services: []\n" % key)
    for content, mode, why in ((KEY, 0o644, "is accessible by group or others (mode 644): chmod 600 it"),
                               (b"short\n", 0o600, "holds 5 bytes: the key needs at least 32")):
        key.write_bytes(content)
        os.chmod(key, mode)
        p = subprocess.run([SLUICE_BIN, "l4", "-c", str(conf), "--pin-dir", str(tmp_path / "pins")],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=20)
        assert p.returncode == 1, (p.stdout, p.stderr)
        assert "%s:6: l4.sync.key_file: %s %s" % (conf, key, why) in p.stderr, p.stderr
        assert not (tmp_path / "pins").exists()


def test_l4_sync_failover_ipv6(lab):
    """The same failover with IPv6 flows (NAT and FullNAT; the sync
    channel on IPv4): lb2 imports lb1's flows and continues them."""
    f = FAM[6]
    lab.start_lb("lb1", family=6)
    lab.start_lb("lb2", family=6)
    nat, fnat = Probe(lab, f["vip_nat"]), Probe(lab, f["vip_fnat"])
    assert nat.wait_rounds(3) and fnat.wait_rounds(3), "no traffic through lb1"
    assert all(b.split()[1] == f["client"] for b in nat.first), nat.first
    assert all(b.split()[1] == f["local"]["lb1"] for b in fnat.first), fnat.first
    assert wait_for(lambda: lab.peer("lb2", "10.0.0.5:%d" % SYNC_PORT)["imported_entries"] >= 8, 10), \
        lab.sync("lb2")
    assert wait_for(lambda: lab.peer("lb2", "10.0.0.5:%d" % SYNC_PORT)["local_addresses"] == [f["local"]["lb1"]], 5)
    lab.lbs["lb1"].kill()
    lab.lbs["lb1"].wait(timeout=10)
    lab.detach("lb1")
    nsexec(PFX + "lb1", "ip", "link", "set", "lb0", "down")
    lab.route_via("lb2")
    assert nat.wait_rounds(5, timeout=30) and fnat.wait_rounds(5, timeout=30), "no traffic through lb2"
    for probe in (nat, fnat):
        rounds, errors = probe.finish()
        assert not errors, (rounds, errors, lab.sync("lb2"), (lab.tmp / "lb1.log").read_text(errors="replace"))
    assert lab.lbs["lb2"].poll() is None


def drops_no_flow(lab, name):
    m = re.search(r'sluice_l4_packets_total\{reason="drop_nat_no_flow"\} (\d+)', lab.api(name, "/metrics"))
    assert m, "drop_nat_no_flow is not in %s's metrics" % name
    return int(m.group(1))


def test_l4_sync_late_entry(lab):
    """The routers move live flows to a node whose copy of them has not
    arrived yet (a lost event, a node that just started). Their mid-flow
    packets are dropped there, not given new entries (FullNAT: a new local
    port, which the real resets); once the entries arrive (lb1's periodic
    refresh), the clients' retransmissions go on, through the same reals."""
    block = ("inet", "s12s_block")
    nsexec(PFX + "lb2", "nft", "add", "table", *block)
    nsexec(PFX + "lb2", "nft", "add", "chain", *block, "in", "{ type filter hook input priority 0; }")
    nsexec(PFX + "lb2", "nft", "add", "rule", *block, "in", "ip", "saddr", "10.0.0.5", "udp", "dport",
           str(SYNC_PORT), "drop")
    lab.start_lb("lb1")
    lab.start_lb("lb2")
    nat, fnat = Probe(lab, VIP_NAT), Probe(lab, VIP_FNAT)
    assert nat.wait_rounds(3) and fnat.wait_rounds(3), "no traffic through lb1"
    assert lab.peer("lb2", "10.0.0.5:%d" % SYNC_PORT)["imported_entries"] == 0, lab.sync("lb2")

    lab.route_via("lb2")
    assert wait_for(lambda: drops_no_flow(lab, "lb2") > 0, 10), lab.api("lb2", "/metrics")
    nsexec(PFX + "lb2", "nft", "delete", "table", *block)
    assert wait_for(lambda: lab.peer("lb2", "10.0.0.5:%d" % SYNC_PORT)["imported_entries"] >= 8, 10), \
        lab.sync("lb2")
    assert nat.wait_rounds(5, timeout=30) and fnat.wait_rounds(5, timeout=30), "no traffic through lb2"
    for probe in (nat, fnat):
        rounds, errors = probe.finish()
        assert not errors, (rounds, errors, lab.sync("lb2"), lab.api("lb2", "/metrics"))
    # None of lb1's entries was replaced by one lb2 made up.
    assert lab.peer("lb1", "10.0.0.6:%d" % SYNC_PORT)["imported_entries"] == 0, lab.sync("lb1")
