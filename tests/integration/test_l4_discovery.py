"""`sluice l4` services whose reals come from a registry service
(`discovery:` instead of `reals:`, docs/l4.md "Discovery"): real TCP through
the XDP forwarder in DR mode (the topology of test_l4_netns.py) while a real
`sluice registry` changes the list.

The registry runs in the LB's namespace on its loopback, where `sluice l4`
reaches it; the test talks to both through `ip netns exec`. Reals follow
registrations, deregistrations, weights and the registry's health with no
reload; long-lived connections on reals that stay keep their real; the
service's protection (fail-open) applies; a registry outage keeps the last
list.

Needs root, `ip`, native XDP on veth (skips otherwise), build/sluice and
build/sluice-asan (the registry)."""
import json
import os
import re
import signal
import subprocess
import sys
import time

from registry_node import TOKEN, config_text
from test_l4_netns import (ADMIN_PORT, NS_C, NS_LB, REALS, SERVER, SLUICE_BIN, TAG, VIP, VIP6, KeepAlive, L4, get,
                           nsexec, real_of, topo, wait_for)  # noqa: F401 (topo is a fixture)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
REGISTRY_BIN = os.environ.get("SLUICE_BIN", os.path.join(ROOT, "build", "sluice-asan"))
REG_PORT = 9950          # on the LB namespace's loopback
SVC = "tcp:%s:80" % VIP
REG = "/api/registry/services"

HTTP_CLIENT = r'''
import json, sys, urllib.error, urllib.request
method, url, body, token = sys.argv[1:5]
h = {"X-Sluice-Token": token} if token and method != "GET" else {}
req = urllib.request.Request(url, method=method, data=body.encode() if body else None, headers=h)
try:
    with urllib.request.urlopen(req, timeout=5) as r:
        print(r.status); print(r.read().decode())
except urllib.error.HTTPError as e:
    print(e.code); print(e.read().decode())
except OSError as e:
    print(0); print(json.dumps({"error": repr(e)}))
'''

# Heartbeats for the ephemeral instances named on the command line, every
# 200 ms, until killed.
HEARTBEATER = r'''
import sys, time, urllib.request
port, token, service = sys.argv[1:4]
while True:
    for iid in sys.argv[4:]:
        req = urllib.request.Request("http://127.0.0.1:%s/api/registry/services/%s/instances/%s/heartbeat"
                                     % (port, service, iid), method="POST", headers={"X-Sluice-Token": token})
        try:
            urllib.request.urlopen(req, timeout=2).read()
        except OSError:
            pass
    time.sleep(0.2)
'''


def http(method, port, path, body=None, token=None):
    """(status, JSON or text) of one request from inside the LB namespace
    (status 0: nothing answered)."""
    out = nsexec(NS_LB, sys.executable, "-c", HTTP_CLIENT, method, "http://127.0.0.1:%d%s" % (port, path),
                 json.dumps(body) if body is not None else "", token or "").stdout
    status, _, text = out.partition("\n")
    try:
        return int(status), json.loads(text)
    except ValueError:
        return int(status), text


def api(method, path, body=None):
    return http(method, ADMIN_PORT, path, body)


def reg_ok(method, path, body=None):
    status, doc = http(method, REG_PORT, path, body, TOKEN)
    assert status == 200, (method, path, body, status, doc)
    return doc


def register(name, weight=100, ephemeral=False):
    addr = dict(REALS)[name]
    reg_ok("PUT", REG + "/web/instances/" + name, {"address": addr, "port": 80, "weight": weight,
                                                   "ephemeral": ephemeral})


class NsRegistry:
    """`sluice registry` in the LB namespace, on 127.0.0.1:REG_PORT."""

    def __init__(self, topo):
        self.topo = topo
        self.conf = topo.tmp / "registry.yaml"
        self.log_path = topo.tmp / "registry.log"
        self.conf.write_text(config_text(REG_PORT, str(topo.tmp / "registry-data")))
        self.proc = None

    def start(self):
        env = dict(os.environ, ASAN_OPTIONS="detect_leaks=1:abort_on_error=0")
        with open(self.log_path, "ab") as log:
            self.proc = self.topo.spawn(NS_LB, REGISTRY_BIN, "registry", "-c", str(self.conf), stdout=log,
                                        stderr=subprocess.STDOUT, env=env)
        assert wait_for(lambda: http("GET", REG_PORT, REG)[0] == 200, 15), self.log_path.read_text()
        return self

    def kill9(self):
        self.proc.kill()
        self.proc.wait(timeout=10)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=20)
        text = self.log_path.read_text(errors="replace")
        for bad in ("ERROR: AddressSanitizer", "runtime error:", "ERROR: LeakSanitizer"):
            assert bad not in text, text[-4000:]


def l4_config(health=True):
    check = "{ type: tcp, interval: 300ms, timeout: 200ms, rise: 2, fall: 2 }" if health else "{ type: none }"
    return """\
admin:
  listen: 127.0.0.1:%d
l4:
  interfaces: [lb0]
  xdp_mode: native
  seed: 0x5eed1a4b
  services:
    - vip: "%s:80"
      protocol: tcp
      mode: dr
      scheduler: maglev
      health_check: %s
      discovery:
        service: web
        registries: ["127.0.0.1:%d"]
""" % (ADMIN_PORT, VIP, check, REG_PORT)


def start_l4(topo, want, health=True):
    """sluice l4 with the discovered service, ready once its first table
    holds exactly the reals in `want` (names)."""
    l4 = L4(topo)
    l4.conf.write_text(l4_config(health))
    return l4.start(ready=table_of(want))


def table_of(names, weight=r"[1-9]\d*"):
    """A Maglev table log line with exactly these reals (any order)."""
    addrs = sorted(dict(REALS)[n] for n in names)
    return r"weights " + "".join(r"(?=.*%s:80=%s\b)" % (re.escape(a), weight) for a in addrs) + \
        r"(\S+=\d+ ?){%d}$" % len(addrs)


def reals_of_service():
    """{address: real} of the discovered service, as the admin API shows it."""
    status, doc = api("GET", "/api/l4/services/" + SVC)
    assert status == 200, doc
    return {r["address"]: r for r in doc["reals"]}


def service_doc():
    status, doc = api("GET", "/api/l4/services/" + SVC)
    assert status == 200, doc
    return doc


def addrs(*names):
    return {"%s:80" % dict(REALS)[n] for n in names}


def open_conns(topo, n):
    """n long-lived connections through the VIP, by the real they landed on."""
    by_real = {}
    for _ in range(n):
        c = KeepAlive(topo)
        b = c.ask()
        assert not b.startswith("ERR"), b
        by_real.setdefault(real_of(b), []).append(c)
    return by_real


def assert_conns_kept(by_real, names):
    for name in names:
        for c in by_real.get(name, []):
            assert c.ask() == "%s 10.0.0.2" % name


def test_l4_reals_follow_the_registry(topo):
    registry = NsRegistry(topo).start()
    reg_ok("PUT", REG + "/web", {"health": {"type": "tcp", "interval": "200ms", "timeout": "200ms", "rise": 1,
                                            "fall": 1}})
    register("r1")
    register("r2")
    l4 = start_l4(topo, ["r1", "r2"])
    doc = service_doc()
    assert doc["reals_from"] == "discovery", doc
    disc = doc["discovery"]
    assert disc["service"] == "web" and disc["registries"] == ["127.0.0.1:%d" % REG_PORT], disc
    assert disc["source"] == "registry" and disc["used"] == 2 and disc["last_error"] == "", disc
    assert set(reals_of_service()) == addrs("r1", "r2")
    assert all(r["source"] == "discovery" and r["weight"] == 100 for r in reals_of_service().values())
    bodies = get(20)
    assert {real_of(b) for b in bodies} == {"r1", "r2"}, bodies
    by_real = open_conns(topo, 8)

    # A registration: r3 takes flows, with no reload; the others keep theirs.
    register("r3")
    assert wait_for(lambda: set(reals_of_service()) == addrs("r1", "r2", "r3"), 5), l4.new_log()
    assert wait_for(lambda: re.search(table_of(["r1", "r2", "r3"]), l4.new_log(), re.M), 5), l4.new_log()
    bodies = get(30)
    assert {real_of(b) for b in bodies} == {"r1", "r2", "r3"}, bodies
    assert_conns_kept(by_real, ["r1", "r2"])
    assert "reloaded" not in l4.new_log()

    # A deregistration: r2 leaves and gets no new flows; flows on r1 stay.
    reg_ok("DELETE", REG + "/web/instances/r2")
    assert wait_for(lambda: set(reals_of_service()) == addrs("r1", "r3"), 5), l4.new_log()
    bodies = get(30)
    assert bodies and {real_of(b) for b in bodies} == {"r1", "r3"}, bodies
    assert_conns_kept(by_real, ["r1"])

    # A weight set at the registry becomes the real's weight.
    reg_ok("PATCH", REG + "/web/instances/r3", {"weight": 300})
    assert wait_for(lambda: reals_of_service().get("10.0.0.13:80", {}).get("weight") == 300, 5), l4.new_log()
    assert wait_for(lambda: re.search(r"10\.0\.0\.13:80=300\b", l4.new_log()), 5), l4.new_log()

    # The registry's health: r3's server stops, its check fails there, and
    # r3 leaves the service (not only its Maglev share: the list itself).
    topo.servers["r3"].kill()
    topo.servers["r3"].wait(timeout=5)
    assert wait_for(lambda: set(reals_of_service()) == addrs("r1"), 10), l4.new_log()
    bodies = get(10)
    assert bodies and {real_of(b) for b in bodies} == {"r1"}, bodies
    assert_conns_kept(by_real, ["r1"])

    # Hand changes to the list are refused (the next list would undo them);
    # a weight or drain through PATCH works as on any real.
    status, doc = api("POST", "/api/l4/services/%s/reals" % SVC, {"address": "10.0.0.12:80"})
    assert status == 409 and "registry service web" in doc["error"], doc
    status, doc = api("DELETE", "/api/l4/services/%s/reals/10.0.0.11:80" % SVC)
    assert status == 409 and "registry service web" in doc["error"], doc
    out = nsexec(NS_LB, SLUICE_BIN, "l4", "remove-real", "-c", str(l4.conf), SVC, "10.0.0.11:80", check=False)
    assert out.returncode != 0 and "registry service web" in out.stdout + out.stderr, out
    status, doc = api("PATCH", "/api/l4/services/%s/reals/10.0.0.11:80" % SVC, {"weight": 7})
    assert status == 200 and doc["weight"] == 7 and doc["source"] == "discovery", doc

    # The service as a pool (/api/pools, sluice pools) shows it too.
    status, doc = api("GET", "/api/pools/" + SVC)
    assert status == 200 and doc["discovery"]["service"] == "web", doc
    assert doc["discovery"]["source"] == "registry" and doc["discovery"]["members"] == 1, doc
    listing = l4.list()
    assert re.search(r"^  reals from registry service web \(registry, version \d+, 1 of 1 members\)$", listing,
                     re.M), listing
    assert l4.stop() == 0
    registry.stop()


def test_l4_registry_outage_keeps_the_last_list(topo):
    registry = NsRegistry(topo).start()
    register("r1")
    register("r2")
    l4 = start_l4(topo, ["r1", "r2"])
    by_real = open_conns(topo, 6)

    # Every registry node gone: the reals stay as they were and take flows.
    registry.kill9()
    assert wait_for(lambda: service_doc()["discovery"]["registry_reachable"] is False, 10), service_doc()
    assert set(reals_of_service()) == addrs("r1", "r2")
    bodies = get(20)
    assert {real_of(b) for b in bodies} == {"r1", "r2"}, bodies
    assert_conns_kept(by_real, ["r1", "r2"])
    listing = l4.list()
    assert "registry unreachable: last list kept" in listing, listing

    # The registry back (its store kept the instances): changes flow again.
    registry.start()
    register("r3")
    assert wait_for(lambda: set(reals_of_service()) == addrs("r1", "r2", "r3"), 10), l4.new_log()
    assert wait_for(lambda: re.search(table_of(["r1", "r2", "r3"]), l4.new_log(), re.M), 5), l4.new_log()
    bodies = get(30)
    assert {real_of(b) for b in bodies} == {"r1", "r2", "r3"}, bodies
    assert_conns_kept(by_real, ["r1", "r2"])
    assert l4.stop() == 0
    registry.stop()


def test_l4_discovery_protection_fails_open(topo):
    """Two of three instances stop heartbeating (their servers still run):
    below the service's protect_threshold the registry fails open, and the
    l4 service keeps every instance; without the threshold it keeps only
    the healthy one."""
    registry = NsRegistry(topo).start()
    beat = {"interval": "200ms", "timeout": "600ms", "expire_after": "10m"}
    reg_ok("PUT", REG + "/web", {"protect_threshold": 0.5, "heartbeat": beat})
    for name in ("r1", "r2", "r3"):
        register(name, ephemeral=True)
    hb = topo.spawn(NS_LB, sys.executable, "-c", HEARTBEATER, str(REG_PORT), TOKEN, "web", "r1")
    l4 = start_l4(topo, ["r1", "r2", "r3"], health=False)
    # r2 and r3 go DOWN at the registry (no heartbeat): 1 of 3 healthy.
    assert wait_for(lambda: reg_ok("GET", REG + "/web")["healthy"] == 1, 10)
    assert wait_for(lambda: service_doc()["discovery"]["fail_open"] is True, 5), service_doc()
    assert set(reals_of_service()) == addrs("r1", "r2", "r3")
    bodies = get(30)
    assert {real_of(b) for b in bodies} == {"r1", "r2", "r3"}, bodies
    # No protection: only the healthy instance.
    reg_ok("PUT", REG + "/web", {"protect_threshold": 0, "heartbeat": beat})
    assert wait_for(lambda: set(reals_of_service()) == addrs("r1"), 5), l4.new_log()
    assert service_doc()["discovery"]["fail_open"] is False
    bodies = get(10)
    assert {real_of(b) for b in bodies} == {"r1"}, bodies
    hb.kill()
    assert l4.stop() == 0
    registry.stop()


def test_l4_discovery_reload_and_api_services(topo):
    """A reload keeps a discovered service's reals (the file lists none) and
    their flows; a discovered service added through the API follows its
    registry service too."""
    registry = NsRegistry(topo).start()
    register("r1")
    register("r2")
    l4 = start_l4(topo, ["r1", "r2"])
    by_real = open_conns(topo, 6)
    l4.proc.send_signal(signal.SIGHUP)
    assert wait_for(lambda: "reloaded" in l4.new_log(), 5), l4.new_log()
    assert set(reals_of_service()) == addrs("r1", "r2")
    assert_conns_kept(by_real, ["r1", "r2"])
    bodies = get(20)
    assert {real_of(b) for b in bodies} == {"r1", "r2"}, bodies

    # A second, discovered service on port 8080, through the API.
    for name, _ in REALS:
        topo.spawn(TAG + name, sys.executable, "-c", SERVER, name, "8080")
    reg_ok("PUT", REG + "/alt/instances/a1", {"address": "10.0.0.13", "port": 8080})
    new = {"vip": "%s:8080" % VIP, "mode": "dr",
           "discovery": {"service": "alt", "registries": ["127.0.0.1:%d" % REG_PORT]}}
    status, doc = api("POST", "/api/l4/services", new)
    assert status == 201 and doc["reals_from"] == "discovery", doc
    assert wait_for(lambda: [r["address"] for r in api("GET", "/api/l4/services/tcp:%s:8080" % VIP)[1]["reals"]]
                    == ["10.0.0.13:8080"], 5), l4.new_log()
    status, doc = api("POST", "/api/l4/services", dict(new, reals=["10.0.0.11"]))
    assert status == 400 and "not both" in doc["error"], doc
    status, doc = api("DELETE", "/api/l4/services/tcp:%s:8080" % VIP)
    assert status == 200, doc
    assert wait_for(lambda: "no longer follows registry service alt" in l4.new_log(), 5), l4.new_log()
    assert l4.stop() == 0
    registry.stop()


def test_l4_discovery_restart_without_registry(topo):
    """The last list survives a restart of sluice l4 while no registry
    answers (discovery.cache_dir): the reals come back from the cache with
    their indexes, so established flows keep their real; without a cache
    and without a registry a service starts empty and fills up once a
    registry answers."""
    registry = NsRegistry(topo).start()
    register("r1")
    register("r2")
    l4 = L4(topo)
    cache = topo.tmp / "discovery-cache"
    l4.conf.write_text(l4_config() + "        cache_dir: %s\n" % cache)
    l4.start(ready=table_of(["r1", "r2"]))
    by_real = open_conns(topo, 6)
    before = {a: r["index"] for a, r in reals_of_service().items()}
    assert l4.stop() == 0
    registry.kill9()

    l4.start(ready=table_of(["r1", "r2"]))
    assert service_doc()["discovery"]["source"] == "cache", service_doc()
    assert {a: r["index"] for a, r in reals_of_service().items()} == before
    assert_conns_kept(by_real, ["r1", "r2"])
    bodies = get(20)
    assert {real_of(b) for b in bodies} == {"r1", "r2"}, bodies
    assert l4.stop() == 0

    # No cache, no registry: no reals, until the registry is back.
    l4.conf.write_text(l4_config())
    l4.start(ready=r"weights $")
    assert "no list of registry service web yet" in l4.new_log(), l4.new_log()
    assert reals_of_service() == {} and service_doc()["discovery"]["source"] == "none"
    registry.start()
    assert wait_for(lambda: set(reals_of_service()) == addrs("r1", "r2"), 10), l4.new_log()
    assert wait_for(lambda: service_doc()["discovery"]["source"] == "registry", 5), service_doc()
    assert l4.stop() == 0
    registry.stop()


def test_l4_discovery_ipv6_and_the_mode_rules(topo):
    """An IPv6 DR service takes only the members it can reach: of the VIP's
    family and on the VIP's port; the others are counted as skipped."""
    registry = NsRegistry(topo).start()
    for name, addr in REALS[:2]:
        reg_ok("PUT", REG + "/web/instances/%s-v6" % name, {"address": "fd00::%s" % addr.split(".")[-1], "port": 80})
    register("r3")                                                          # IPv4: another family
    reg_ok("PUT", REG + "/web/instances/r3-v6", {"address": "fd00::13", "port": 8080})   # another port
    l4 = L4(topo)
    l4.conf.write_text(l4_config().replace('"%s:80"' % VIP, '"[%s]:80"' % VIP6))
    l4.start(ready=r"weights (?=.*\[fd00::11\]:80=[1-9])(?=.*\[fd00::12\]:80=[1-9])(\S+=\d+ ?){2}$")
    status, doc = api("GET", "/api/l4/services/tcp:[%s]:80" % VIP6)
    assert status == 200, doc
    assert sorted(r["address"] for r in doc["reals"]) == ["[fd00::11]:80", "[fd00::12]:80"], doc
    assert doc["discovery"]["skipped"] == {"family": 1, "port": 1, "duplicate": 0, "invalid": 0}, doc
    assert "1 member of another address family left out" in l4.new_log(), l4.new_log()
    assert "1 member on another port than the VIP's left out" in l4.new_log(), l4.new_log()
    bodies = get(20, vip=VIP6)
    assert {real_of(b) for b in bodies} == {"r1", "r2"}, bodies
    assert l4.stop() == 0
    registry.stop()
