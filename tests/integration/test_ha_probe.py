"""The HA probe engine (src/ha/probe.h) end to end, through a router.

Topology (network namespaces this test creates and removes):

    node 10.12.1.2 --- 10.12.1.1 router 10.12.2.1 --- 10.12.2.2 server
         fd12:1::2     fd12:1::1        fd12:2::1     fd12:2::2

The node holds the VIP (10.12.9.100, fd12:9::100) on its loopback, as an
LB node does: a connect() to it from the node would never leave the node.
The router routes the VIP to the server, which holds it on its loopback
too and listens on it; the node's default route is the router. So a probe
that gets an answer went node -> router -> server -> router -> node, as a
client's packets would, and its SYN-ACK (from an address that is local on
the node) was caught by the packet socket before the node's IP layer
dropped it as a martian.

The driver (tests/integration/ha_probe_driver.c, built by the Makefile as
build/tests-tools/ha_probe_driver) runs the real engine on a real event
loop in the node namespace and prints JSON. Checksum offload is left on:
the engine must cope with the server's offloaded checksums, as on a host.

Needs root and `ip`; skips otherwise. Every wait is bounded; the
namespaces and processes are removed at teardown.
"""
import json
import os
import subprocess
import sys
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DRIVER = os.path.join(ROOT, "build", "tests-tools", "ha_probe_driver")

TAG = "s12p%d" % (os.getpid() % 10000)
NS_NODE, NS_RTR, NS_SRV = TAG + "-node", TAG + "-rtr", TAG + "-srv"
VIP, VIP6 = "10.12.9.100", "fd12:9::100"
NODE, NODE6 = "10.12.1.2", "fd12:1::2"
PORT_OPEN, PORT_CLOSED = 80, 81

LISTENER = r'''
import socket, sys, time
fam = socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET
s = socket.socket(fam)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2])))
s.listen(64)
print("ready", flush=True)
time.sleep(600)   # never accepts: the probe must not need a server that cooperates
'''


def sh(*args, check=True, timeout=20):
    r = subprocess.run(list(args), capture_output=True, text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise AssertionError("%s: %s%s" % (" ".join(args), r.stdout, r.stderr))
    return r


def nsexec(ns, *args, **kw):
    return sh("ip", "netns", "exec", ns, *args, **kw)


def driver(*args, timeout=30):
    r = nsexec(NS_NODE, DRIVER, *[str(a) for a in args], timeout=timeout)
    return json.loads(r.stdout)


def start_listener(addr, port, ns=NS_SRV):
    p = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-c", LISTENER, addr, str(port)],
                         stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "ready"
    return p


def stop(p):
    p.kill()
    p.wait(timeout=10)


def build_topology():
    for ns in (NS_NODE, NS_RTR, NS_SRV):
        sh("ip", "netns", "add", ns)
        sh("ip", "-n", ns, "link", "set", "lo", "up")
        # No duplicate address detection on the links made next: a
        # tentative link-local address delays neighbour discovery by a
        # second, longer than a probe's timeout (a host's links are up long
        # before it probes anything).
        nsexec(ns, "sysctl", "-qw", "net.ipv6.conf.default.accept_dad=0")
    sh("ip", "link", "add", "s12p-n0", "netns", NS_NODE, "type", "veth", "peer", "name", "s12p-r0", "netns", NS_RTR)
    sh("ip", "link", "add", "s12p-s0", "netns", NS_SRV, "type", "veth", "peer", "name", "s12p-r1", "netns", NS_RTR)
    links = [(NS_NODE, "s12p-n0", NODE + "/24", NODE6 + "/64"),
             (NS_RTR, "s12p-r0", "10.12.1.1/24", "fd12:1::1/64"),
             (NS_RTR, "s12p-r1", "10.12.2.1/24", "fd12:2::1/64"),
             (NS_SRV, "s12p-s0", "10.12.2.2/24", "fd12:2::2/64")]
    for ns, dev, a4, a6 in links:
        sh("ip", "-n", ns, "addr", "add", a4, "dev", dev)
        sh("ip", "-n", ns, "addr", "add", a6, "dev", dev, "nodad")
        sh("ip", "-n", ns, "link", "set", dev, "up")
    nsexec(NS_RTR, "sysctl", "-qw", "net.ipv4.ip_forward=1")
    nsexec(NS_RTR, "sysctl", "-qw", "net.ipv6.conf.all.forwarding=1")
    for ns in (NS_NODE, NS_SRV):
        sh("ip", "-n", ns, "addr", "add", VIP + "/32", "dev", "lo")
        sh("ip", "-n", ns, "addr", "add", VIP6 + "/128", "dev", "lo")
    sh("ip", "-n", NS_NODE, "route", "add", "default", "via", "10.12.1.1")
    sh("ip", "-n", NS_NODE, "-6", "route", "add", "default", "via", "fd12:1::1")
    sh("ip", "-n", NS_SRV, "route", "add", "default", "via", "10.12.2.1")
    sh("ip", "-n", NS_SRV, "-6", "route", "add", "default", "via", "fd12:2::1")
    route_vip_to_server()
    wait_links_up()


ROUND_TRIP = r'''
import socket, sys, time
# A datagram to the discard port of an address that does not listen on
# it: its ICMP port unreachable, turned into ECONNREFUSED, proves the
# round trip through the router works.
fam = socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET
deadline = time.monotonic() + 10
while time.monotonic() < deadline:
    s = socket.socket(fam, socket.SOCK_DGRAM)
    s.settimeout(0.2)
    s.connect((sys.argv[1], 9))
    try:
        s.send(b"x")
        s.recv(1)
    except ConnectionRefusedError:
        sys.exit(0)
    except OSError:
        time.sleep(0.05)
sys.exit(1)
'''


def wait_links_up():
    """Bounded wait until the node reaches the server and back, both
    families: a neighbour solicitation sent while a fresh veth is still
    coming up is lost and retried only a second later, longer than a probe
    waits."""
    for addr in ("10.12.2.2", "fd12:2::2"):
        r = nsexec(NS_NODE, sys.executable, "-c", ROUND_TRIP, addr, check=False, timeout=20)
        assert r.returncode == 0, "no round trip from the node to %s" % addr


def route_vip_to_server():
    sh("ip", "-n", NS_RTR, "route", "replace", VIP + "/32", "via", "10.12.2.2")
    sh("ip", "-n", NS_RTR, "-6", "route", "replace", VIP6 + "/128", "via", "fd12:2::2")


@pytest.fixture(scope="module")
def topo():
    if os.geteuid() != 0:
        pytest.skip("needs root (network namespaces, packet sockets)")
    if not os.access(DRIVER, os.X_OK):
        r = subprocess.run(["make", "-C", ROOT, "--no-print-directory", "build/tests-tools/ha_probe_driver"],
                           capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    listeners = []
    try:
        build_topology()
        listeners = [start_listener(VIP, PORT_OPEN), start_listener(VIP6, PORT_OPEN)]
        yield
    finally:
        for p in listeners:
            stop(p)
        for ns in (NS_NODE, NS_RTR, NS_SRV):
            sh("ip", "netns", "del", ns, check=False)


def server_connections(port):
    """The server's TCP connections on the port other than the listener
    (SYN-RECV, ESTABLISHED...), as `ss` lists them."""
    out = nsexec(NS_SRV, "ss", "-Htan", "sport = :%d" % port).stdout
    return [l for l in out.splitlines() if l.strip() and not l.startswith("LISTEN")]


@pytest.mark.parametrize("vip,node", [(VIP, NODE), (VIP6, NODE6)], ids=["ipv4", "ipv6"])
def test_probe_ok_through_the_router_when_the_server_listens(topo, vip, node):
    r = driver("probe", vip, PORT_OPEN)
    assert r["outcome"] == "ok", r
    assert r["src"] == node          # the default source: the uplink's address
    assert 61000 <= r["sport"] <= 61999
    assert r["rtt_us"] > 0
    assert r["path"] == "unknown"    # no predicate given


@pytest.mark.parametrize("vip", [VIP, VIP6], ids=["ipv4", "ipv6"])
def test_probe_refused_when_nothing_listens(topo, vip):
    r = driver("probe", vip, PORT_CLOSED)
    assert r["outcome"] == "refused", r


def test_probe_leaves_no_half_open_connection_on_the_server(topo):
    # The probe's RST must remove the server's SYN-RECV entry at once:
    # without it the entry stays for the SYN-ACK retries (about a minute).
    for _ in range(3):
        r = driver("probe", VIP, PORT_OPEN)
        assert r["outcome"] == "ok", r
    # Bounded wait: the RST is sent before the driver exits, but let the
    # server process it.
    deadline = time.monotonic() + 5
    left = server_connections(PORT_OPEN)
    while left and time.monotonic() < deadline:
        time.sleep(0.1)
        left = server_connections(PORT_OPEN)
    assert left == [], left


def test_a_probe_that_times_out_leaves_no_half_open_connection(topo):
    # The router drops the server's answers: the server holds a SYN-RECV
    # entry the probe never hears of. The RST the engine sends when it
    # gives the probe up (sequence number ISN + 1, what the server waits
    # for) removes it; without it the entry stays for the server's minute
    # of SYN-ACK retries.
    rule = ["from", VIP, "iif", "s12p-r1", "blackhole"]
    sh("ip", "-n", NS_RTR, "rule", "add", *rule)
    try:
        r = driver("probe", VIP, PORT_OPEN, "--timeout", 300)
        assert r["outcome"] == "timeout", r
        deadline = time.monotonic() + 5
        left = [c for c in server_connections(PORT_OPEN) if ":%d" % r["sport"] in c]
        while left and time.monotonic() < deadline:
            time.sleep(0.1)
            left = [c for c in server_connections(PORT_OPEN) if ":%d" % r["sport"] in c]
        assert left == [], left
    finally:
        sh("ip", "-n", NS_RTR, "rule", "del", *rule)


@pytest.mark.parametrize("vip,prefix", [(VIP, "/32"), (VIP6, "/128")], ids=["ipv4", "ipv6"])
def test_probe_times_out_when_the_router_drops_the_vip(topo, vip, prefix):
    fam = "-6" if ":" in vip else "-4"
    sh("ip", "-n", NS_RTR, fam, "route", "replace", "blackhole", vip + prefix)
    try:
        r = driver("probe", vip, PORT_OPEN, "--timeout", 300)
        assert r["outcome"] == "timeout", r
    finally:
        route_vip_to_server()
    assert driver("probe", vip, PORT_OPEN)["outcome"] == "ok"


def test_probe_error_without_a_route(topo):
    sh("ip", "-n", NS_NODE, "route", "del", "default")
    try:
        r = driver("probe", VIP, PORT_OPEN)
        assert r["outcome"] == "error", r
        assert "no route to 10.12.9.100" in r["detail"]
    finally:
        sh("ip", "-n", NS_NODE, "route", "add", "default", "via", "10.12.1.1")


def test_predicate_decides_the_path(topo):
    assert driver("probe", VIP, PORT_OPEN, "--through", "always")["path"] == "us"
    assert driver("probe", VIP, PORT_OPEN, "--through", "never")["path"] == "elsewhere"
    r = driver("probe", VIP, PORT_OPEN, "--through", "ports:61005", "--sport", 61005)
    assert (r["path"], r["sport"]) == ("us", 61005)
    r = driver("probe", VIP, PORT_OPEN, "--through", "ports:61005", "--sport", 61006)
    assert (r["path"], r["sport"]) == ("elsewhere", 61006)


def test_failures_elsewhere_never_withdraw(topo):
    # Every probe is refused, but none went through this node: another
    # node's trouble is not ours to act on.
    r = driver("target", VIP, PORT_CLOSED, 6, "--interval", 100, "--timeout", 80, "--fall", 2, "--through", "never")
    assert r["sent"] > 0 and r["failed_elsewhere"] == r["sent"], r
    assert r["withdrawals"] == 0 and r["verdicts"] == [] and r["state"] == "serving", r
    assert r["learned"] == []


def test_failures_through_us_withdraw(topo):
    r = driver("target", VIP, PORT_CLOSED, 4, "--interval", 100, "--timeout", 80, "--fall", 3, "--hold", 60000,
               "--through", "always")
    assert r["verdicts"] == ["withdraw"] and r["state"] == "withdrawn", r
    assert r["failed_us"] >= 3


def test_failures_the_node_health_explains_do_not_withdraw(topo):
    r = driver("target", VIP, PORT_CLOSED, 6, "--interval", 100, "--timeout", 80, "--fall", 2, "--through", "always",
               "--unhealthy")
    assert r["failed_us"] >= 2 and r["verdicts"] == [] and r["state"] == "serving", r


def test_source_ports_that_land_here_are_learned(topo):
    # Of a range of 4 source ports, only 61001 and 61003 "land here" (the
    # predicate stands for the router's ECMP choice). The target learns
    # exactly those, counts the rest as elsewhere, and, once it knows as
    # many as it remembers (--learn 2), stops exploring: every later probe
    # goes through us. (Exploring picks random ports: the chance that 30
    # rounds do not find both is below 1 in 1000.)
    r = driver("target", VIP, PORT_CLOSED, 30, "--interval", 50, "--timeout", 40, "--ports", "61000-61003",
               "--through", "ports:61001,61003", "--fall", 1000, "--learn", 2)
    assert sorted(r["learned"]) == [61001, 61003], r
    # Every probe is counted once (the driver waits for the last ones).
    assert r["failed_us"] + r["failed_elsewhere"] + r["unknown"] == r["sent"], r
    assert r["failed_us"] > r["failed_elsewhere"], r
    assert r["verdicts"] == [], r


def test_withdrawn_vip_is_reannounced_and_restored_when_the_service_is_back(topo):
    # Port 82 refuses at first: withdraw. The listener comes up; after
    # `hold` the VIP is re-announced on trial and `rise` successes restore it.
    proc = subprocess.Popen(["ip", "netns", "exec", NS_NODE, DRIVER, "target", VIP, "82", "40",
                             "--interval", "200", "--timeout", "150", "--fall", "2", "--rise", "2", "--hold", "600",
                             "--through", "always", "--live"], stdout=subprocess.PIPE, text=True)
    listener = None
    try:
        first = json.loads(proc.stdout.readline())
        assert first == {"verdict": "withdraw"}, first
        listener = start_listener(VIP, 82)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if listener:
            stop(listener)
    out = out.strip().splitlines()[-1]
    r = json.loads(out)
    assert r["verdicts"][0] == "withdraw", r
    assert r["verdicts"][-1] == "restored" and r["state"] == "serving", r
    assert "reannounce" in r["verdicts"]
    assert server_connections(82) == []


@pytest.fixture
def vip_routed_to_node(topo):
    """The router sends the VIP to the node itself, as when the routers'
    ECMP picks this LB node for the probe's flow."""
    sh("ip", "-n", NS_RTR, "route", "replace", VIP + "/32", "via", NODE)
    sh("ip", "-n", NS_RTR, "-6", "route", "replace", VIP6 + "/128", "via", NODE6)
    try:
        yield
    finally:
        route_vip_to_server()


def test_probe_that_lands_on_this_node_is_ours_whatever_the_predicate(vip_routed_to_node):
    # The probe leaves through the router and comes back to the node,
    # whose own kernel serves the VIP (a socket tier, like the proxy). The
    # engine sees its SYN arrive and counts the flow as ours, even with a
    # predicate that says "never". IPv4 needs accept_local on the uplink
    # (the probe's source is the node's own address).
    listeners = [start_listener(VIP, 83, NS_NODE), start_listener(VIP6, 83, NS_NODE)]
    nsexec(NS_NODE, "sysctl", "-qw", "net.ipv4.conf.s12p-n0.accept_local=1")
    try:
        for vip in (VIP, VIP6):
            r = driver("probe", vip, 83, "--through", "never")
            assert (r["outcome"], r["path"]) == ("ok", "us"), r
            r = driver("probe", vip, 84, "--through", "never")
            assert (r["outcome"], r["path"]) == ("refused", "us"), r
    finally:
        nsexec(NS_NODE, "sysctl", "-qw", "net.ipv4.conf.s12p-n0.accept_local=0")
        for p in listeners:
            stop(p)


def test_probe_dropped_as_a_martian_on_this_node_is_not_held_against_it(vip_routed_to_node):
    # Without accept_local the node's kernel drops its own probe (a client
    # would have been served): the engine says why and does not call the
    # flow ours, so `fall` such timeouts cannot withdraw the VIP.
    listener = start_listener(VIP, 83, NS_NODE)
    try:
        r = driver("probe", VIP, 83, "--through", "always", "--timeout", 300)
        assert (r["outcome"], r["path"]) == ("timeout", "unknown"), r
        assert "net.ipv4.conf.s12p-n0.accept_local=1" in r["detail"], r
        r = driver("target", VIP, 83, 4, "--interval", 400, "--timeout", 300, "--fall", 1, "--through", "always")
        assert r["verdicts"] == [] and r["failed_us"] == 0 and r["unknown"] > 0, r
    finally:
        stop(listener)


def test_sock_diag_finds_a_local_tcp_socket(topo):
    # core/sock_diag.h, the proxy's attribution answer: an exact 4-tuple
    # lookup. A connection from the server namespace to its own listener
    # is found (ESTABLISHED = 1); the same tuple with another port is not.
    # Nor is a tuple to the listener's address and port that no
    # connection has: the kernel's lookup falls back to the listener, which
    # is no socket of that flow (a proxy would take every probe, even one
    # the routers never sent here, for its own).
    code = r'''
import socket, subprocess, sys
c = socket.create_connection((sys.argv[1], int(sys.argv[2])))
host, port = c.getsockname()[:2]
def ask(local, lport, remote, rport):
    return subprocess.run([sys.argv[3], "sockdiag", local, str(lport), remote, str(rport)],
                          capture_output=True, text=True).stdout.strip()
print(ask(host, port, sys.argv[1], sys.argv[2]))
print(ask(host, port + 1 if port < 65535 else port - 1, sys.argv[1], sys.argv[2]))
print(ask(sys.argv[1], sys.argv[2], host, port))
print(ask(sys.argv[1], sys.argv[2], host, port + 1 if port < 65535 else port - 1))
'''
    for vip in (VIP, VIP6):
        out = nsexec(NS_SRV, sys.executable, "-c", code, vip, str(PORT_OPEN), DRIVER).stdout.splitlines()
        found, absent, server_end, listener = [json.loads(line) for line in out]
        assert found["found"] is True and found["state"] == 1, (vip, found)
        assert absent["found"] is False and absent["error"] == "", (vip, absent)
        # the listener's end of the connection: SYN-RECV (never accepted) or ESTABLISHED
        assert server_end["found"] is True and server_end["state"] in (1, 3), (vip, server_end)
        assert listener["found"] is False and listener["error"] == "", (vip, listener)
