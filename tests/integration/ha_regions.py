"""Two regions in one lab, failed over by the registry's DNS (issue 12,
item 5): two HA labs (ha_lab.Lab, built whole through its public API),
a WAN between them, a client, and a `sluice registry` answering the
GSLB name global.sluice.test with the client's region VIP.

              client (ns PREFIX+x-client)         registry (ns PREFIX+x-dns)
              100.64.1.10/24                      100.64.2.53/24: sluice registry,
                     |                            DNS on :53, API 127.0.0.1:9950
                     |                                   |
              +------+-----------------------------------+------+
              |  wan (ns PREFIX+x-wan): a router                 |
              |  10.12.100.1/32 via region 1, 10.12.100.2/32 via region 2
              +------+-----------------------------------+------+
          100.65.1.1 |                                   | 100.65.2.1
          100.65.1.2 |                                   | 100.65.2.2
       region 1: PREFIX+1-c (the lab's client      region 2: PREFIX+2-c
       namespace is the region's edge) ---          --- r1, r2 (BIRD, ECMP, BFD)
       r1, r2 (BIRD, ECMP, BFD) --- a1 a2 b1 b2     --- a1 a2 b1 b2 --- s1 s2
       --- s1 s2: a whole ha_lab                    a whole ha_lab

Each region is a complete ha_lab (four LB nodes running `sluice l4` in two
zones, two BIRD routers, reals) with the same addressing inside, which the
namespaces keep apart. What the outside sees of each is one VIP, the only
address the WAN routes to it: region 1's DR VIP 10.12.100.1 (VIP1) and
region 2's TUN VIP 10.12.100.2 (VIP2). (Each lab builds both; the other
one is unreachable from the WAN, so a region's VIP is served by its region
alone.) The lab's client namespace forwards between the WAN and its two
routers (the client side of ha_lab: an ECMP route over both), and the
routers get a route back to the WAN's 100.64.0.0/16 through it.

The registry (build/sluice-asan, embedded store) has the service `global`
with two persistent instances, VIP1:80 (datacenter and region r1) and
VIP2:80 (r2), an HTTP health check of each VIP made from the registry's
namespace through the WAN and the region's routers, as any client's
request, `dns_ttl` 5 s, and a subnet map that puts the client's
100.64.1.0/24 in r1 and 100.64.9.0/24 in r2 (queried with EDNS Client
Subnet, for "a region-2 caller").

What the client sees is measured by a poller run in the client's
namespace (`python3 ha_regions.py --poll ...`): dig every 100 ms (the
registry's answer as it is), a client that honours the TTL (it takes a
new answer only when its copy has expired, and sends an HTTP request to
the address it holds every 100 ms), and an HTTP probe of each VIP every
100 ms. JSON lines, read by run_failover().

Usage (root, Debian's python3):

    with ha_regions.Regions(prefix="s12r") as world:
        world.build()
        figures = ha_regions.run_failover(world)
        print(ha_regions.summary(figures))

    python3 tests/integration/ha_regions.py [--event crash|power-loss|cut] [--interval 1s --timeout 500ms
        --fall 2 --rise 2 --ttl 5] [--repeat N]
      (one JSON line of figures per failover and return; --help)

Namespaces: PREFIX+"1-", PREFIX+"2-" (the labs) and PREFIX+"x-" (WAN,
client, registry); close() removes them all, also when a test failed.
"""
import argparse
import atexit
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ha_lab  # noqa: E402
from netns_tools import ETHTOOL_STXCSUM, ethtool_set, nsexec, sh  # noqa: E402

ROOT = ha_lab.ROOT
REGISTRY_BIN = os.environ.get("SLUICE_BIN", os.path.join(ROOT, "build", "sluice-asan"))

VIP1, VIP2 = ha_lab.VIP_DR, ha_lab.VIP_TUN     # region 1's service VIP, region 2's
REGION_VIPS = {1: VIP1, 2: VIP2}
WAN_NET = "100.64.0.0/16"
CLIENT_ADDR, CLIENT_GW = "100.64.1.10", "100.64.1.1"
REGISTRY_ADDR, REGISTRY_GW = "100.64.2.53", "100.64.2.1"
REGION2_CALLERS = "100.64.9.0/24"               # mapped to r2: asked with EDNS Client Subnet
EDGE = {1: ("100.65.1.1", "100.65.1.2"), 2: ("100.65.2.1", "100.65.2.2")}   # (wan side, region side)
ZONE = "sluice.test."
NAME = "global." + ZONE
DNS_PORT = 53
API_PORT = 9950


_LIVE = []   # Regions not closed yet, for the atexit safety net


@atexit.register
def _close_live():
    for world in list(_LIVE):
        world.close()


def have_tools():
    """None when the regions can be built here, else why not."""
    why = ha_lab.have_tools()
    if why:
        return why
    if not shutil.which("dig"):
        return "needs dig (bind9-dnsutils)"
    if not os.path.exists(REGISTRY_BIN):
        return "%s not built" % REGISTRY_BIN
    return None


def ms_text(seconds):
    """A duration for the config ("1s", "500ms")."""
    ms = int(round(seconds * 1000))
    return "%ds" % (ms // 1000) if ms % 1000 == 0 else "%dms" % ms


class Regions:
    """Two ha_lab regions, the WAN, the client and the registry.
    build() makes them; close() (or leaving the `with` block) removes
    everything."""

    def __init__(self, prefix="s12r", workdir=None, ttl=5, interval=1.0, timeout=0.5, fall=2, rise=2,
                 reals=2, bfd=(100, 3), log=None):
        self.prefix = prefix
        self.ttl, self.interval, self.timeout, self.fall, self.rise = ttl, interval, timeout, fall, rise
        self.log = log or (lambda msg: print("[ha_regions] " + msg, flush=True))
        self.own_workdir = workdir is None
        self.dir = workdir or tempfile.mkdtemp(prefix=prefix + "x-", dir="/tmp")
        os.makedirs(self.dir, exist_ok=True)
        # Each lab keeps its own directory (/tmp/PREFIXi-...), where its
        # leftover check finds a mount a killed run left.
        self.labs = {i: ha_lab.Lab(prefix="%s%d-" % (prefix, i), reals=reals, bfd=bfd,
                                   log=lambda m, i=i: self.log("region %d: %s" % (i, m)))
                     for i in (1, 2)}
        self.namespaces = []
        self.registry = None
        self.registry_log = None
        _LIVE.append(self)

    # ---------------------------------------------------------------- naming
    def ns(self, name):
        """One of the namespaces outside the regions: wan, client, dns."""
        return self.prefix + "x-" + name

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -------------------------------------------------------------- building
    def build(self):
        self.remove_leftovers()
        for i, lab in self.labs.items():
            t0 = time.time()
            lab.build()
            self.log("region %d built in %.1f s" % (i, time.time() - t0))
        self._wan()
        self.start_registry()
        self.wait_answers_settled()
        return self

    def remove_leftovers(self):
        # Held for the process's life: a live run's namespaces are never
        # taken for leftovers (netns_tools.hold_prefix).
        if getattr(self, "prefix_lock", None) is None:
            self.prefix_lock = ha_lab.hold_prefix(self.prefix + "x-", log=self.log)
        for name in sh("ip", "netns", "list").stdout.split():
            if name.startswith(self.prefix + "x-"):
                self.log("removing leftover namespace " + name)
                for pid in sh("ip", "netns", "pids", name, check=False).stdout.split():
                    try:
                        os.kill(int(pid), signal.SIGKILL)
                    except (ProcessLookupError, ValueError):
                        pass
                sh("ip", "netns", "del", name, check=False)

    def _add_ns(self, name):
        ns = self.ns(name)
        sh("ip", "netns", "add", ns)
        self.namespaces.append(ns)
        nsexec(ns, "ip", "link", "set", "lo", "up")
        return ns

    def _link(self, ns_a, if_a, addr_a, ns_b, if_b, addr_b):
        """A veth between two namespaces, addressed and up; TX checksums in
        software on both ends (a frame an LB's XDP forwards loses its
        "checksum pending" note: see ha_lab)."""
        sh("ip", "link", "add", if_a, "netns", ns_a, "type", "veth", "peer", "name", if_b, "netns", ns_b)
        for ns, ifname, addr in ((ns_a, if_a, addr_a), (ns_b, if_b, addr_b)):
            nsexec(ns, "ip", "addr", "add", addr, "dev", ifname)
            nsexec(ns, "ip", "link", "set", ifname, "up")
            ethtool_set(ns, ifname, ETHTOOL_STXCSUM, 0)

    def _forwarding(self, ns):
        nsexec(ns, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1", "net.ipv4.conf.all.rp_filter=0",
               "net.ipv4.conf.default.rp_filter=0")

    def _wan(self):
        wan = self._add_ns("wan")
        client = self._add_ns("client")
        dns = self._add_ns("dns")
        self._forwarding(wan)
        self._link(wan, "to-client", CLIENT_GW + "/24", client, "wan0", CLIENT_ADDR + "/24")
        nsexec(client, "ip", "route", "add", "default", "via", CLIENT_GW)
        self._link(wan, "to-dns", REGISTRY_GW + "/24", dns, "wan0", REGISTRY_ADDR + "/24")
        nsexec(dns, "ip", "route", "add", "default", "via", REGISTRY_GW)
        for i, lab in self.labs.items():
            wan_side, region_side = EDGE[i]
            edge = lab.ns("c")          # the lab's client namespace: the region's edge
            self._link(wan, "to-region%d" % i, wan_side + "/30", edge, "wan0", region_side + "/30")
            self._forwarding(edge)
            nsexec(edge, "ip", "route", "add", WAN_NET, "via", wan_side)
            # The region's one service VIP, and nothing else of it, is reachable from the WAN.
            nsexec(wan, "ip", "route", "add", REGION_VIPS[i] + "/32", "via", region_side)
            for r, info in ha_lab.ROUTERS.items():
                nsexec(lab.ns(r), "ip", "route", "add", WAN_NET, "via", info["client_side"][1])

    # -------------------------------------------------------------- registry
    def registry_config(self):
        health = ("{ type: http, path: /, interval: %s, timeout: %s, rise: %d, fall: %d }"
                  % (ms_text(self.interval), ms_text(self.timeout), self.rise, self.fall))
        return ("log:\n  level: info\nadmin:\n  listen: 127.0.0.1:%d\n"
                "registry:\n  node: gslb1\n  datacenter: r1\n  region: r1\n  data_dir: %s\n"
                "  api: { merge_window: 20ms }\n"
                "  dns:\n    listen: [%s:%d]\n    zone: %s\n"
                "  subnets:\n"
                "    - { cidr: 100.64.1.0/24, datacenter: r1, region: r1 }\n"
                "    - { cidr: %s, datacenter: r2, region: r2 }\n"
                "  services:\n"
                "    - name: global\n"
                "      dns_ttl: %d\n"
                "      health: %s\n"
                "      instances:\n"
                "        - { id: r1, address: %s, port: %d, datacenter: r1, region: r1 }\n"
                "        - { id: r2, address: %s, port: %d, datacenter: r2, region: r2 }\n"
                % (API_PORT, os.path.join(self.dir, "registry-data"), REGISTRY_ADDR, DNS_PORT, ZONE,
                   REGION2_CALLERS, self.ttl, health, VIP1, ha_lab.HTTP_PORT, VIP2, ha_lab.HTTP_PORT))

    def start_registry(self):
        conf = os.path.join(self.dir, "registry.yaml")
        with open(conf, "w") as f:
            f.write(self.registry_config())
        env = dict(os.environ)
        env.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0")
        env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1")
        self.registry_log = os.path.join(self.dir, "registry.log")
        out = open(self.registry_log, "ab")
        self.registry = subprocess.Popen(["ip", "netns", "exec", self.ns("dns"), REGISTRY_BIN, "registry",
                                          "-c", conf], stdout=out, stderr=subprocess.STDOUT, env=env)
        out.close()
        if not ha_lab.wait_for(lambda: self.registry.poll() is not None or self.api("/api/status"), 20) \
                or self.registry.poll() is not None:
            raise RuntimeError("the registry did not start:\n" + self.read_registry_log()[-3000:])

    def read_registry_log(self):
        try:
            with open(self.registry_log, errors="replace") as f:
                return f.read()
        except (FileNotFoundError, TypeError):
            return ""

    def api(self, path):
        """GET on the registry's API (in its namespace): the JSON, or None."""
        out = nsexec(self.ns("dns"), "curl", "-s", "-m", "3", "http://127.0.0.1:%d%s" % (API_PORT, path),
                     check=False)
        try:
            return json.loads(out.stdout) if out.returncode == 0 else None
        except ValueError:
            return None

    def instances(self):
        """{id: instance} of the GSLB service, as the registry's API shows them."""
        doc = self.api("/api/registry/services/global") or {}
        return {inst["id"]: inst for inst in doc.get("instances", [])}

    def wait_answers_settled(self, timeout=30):
        """Both region VIPs pass their checks and each region's callers get
        their own region's VIP."""
        def settled():
            inst = self.instances()
            return (all(inst.get(i, {}).get("health") == "up" for i in ("r1", "r2"))
                    and self.dig() == [VIP1] and self.dig(subnet=REGION2_CALLERS) == [VIP2])
        if not ha_lab.wait_for(settled, timeout, step=0.2):
            raise RuntimeError("the registry's answers did not settle: %s, %s / %s\n%s"
                               % (self.instances(), self.dig(), self.dig(subnet=REGION2_CALLERS),
                                  self.read_registry_log()[-3000:]))

    # ---------------------------------------------------------------- client
    def dig(self, subnet=None, ttl=False):
        """The addresses (or [(ttl, address)]) the registry answers the
        client (or, with subnet, a caller in that subnet by ECS)."""
        answer = dig_a(REGISTRY_ADDR, DNS_PORT, NAME, subnet=subnet,
                       run=lambda args: nsexec(self.ns("client"), *args, check=False))
        if answer is None:
            return None
        return answer if ttl else [addr for _, addr in answer]

    def http(self, address, ns="client"):
        """The body of GET http://ADDRESS/ from the client (or the named
        namespace), or None."""
        out = nsexec(self.ns(ns), "curl", "-s", "-m", "2", "http://%s/" % address, check=False)
        return out.stdout.strip() if out.returncode == 0 else None

    # ---------------------------------------------------------------- events
    EVENTS = ("crash", "power-loss", "cut")

    def lose_region(self, i, event="crash"):
        """The whole region is lost. "crash": every LB node of it crashes
        (kill -9 of sluice l4 and its BIRD, the forwarder taken off; zone b
        first, zone a last), the routers withdraw the VIP and answer
        "unreachable"; "power-loss": the same, each node's link going down
        first (BFD tells the routers); "cut": the region's link to the WAN
        goes down at its edge, everything inside lives on, and what is sent
        to it is lost without an answer (checks time out). Returns (first,
        last): when the first step took effect and when the last did (from
        then on nothing serves the region's VIP)."""
        lab = self.labs[i]
        if event == "cut":
            nsexec(lab.ns("c"), "ip", "link", "set", "wan0", "down")
            t = time.time()
            return t, t
        if event not in self.EVENTS:
            raise ValueError("unknown event %r" % event)
        times = []
        for node in sorted(ha_lab.NODES, key=lambda n: ha_lab.NODES[n][0], reverse=True):
            lab.crash_node(node, silent=event == "power-loss")
            times.append(lab.event_at)
        return times[0], times[-1]

    def restore_region(self, i, event="crash"):
        """The region back after lose_region(i, event): the link up again,
        or every LB node back (sluice l4 again, its BIRD once every real is
        up) until both routers route the VIPs to zone a. Returns when the
        region's VIP was reachable again: the link up, or the first time
        one of its routers routed it (watched every 20 ms while the nodes
        come back; the client and the registry spread their connections
        over both routers, so from then on some of them get through)."""
        lab, vip = self.labs[i], REGION_VIPS[i]
        if event == "cut":
            edge = lab.ns("c")
            nsexec(edge, "ip", "link", "set", "wan0", "up")
            t_back = time.time()
            # The link's routes went with it.
            wan_side, region_side = EDGE[i]
            ha_lab.wait_for(lambda: nsexec(edge, "ip", "route", "replace", WAN_NET, "via", wan_side,
                                           check=False).returncode == 0, 5)
            nsexec(self.ns("wan"), "ip", "route", "replace", vip + "/32", "via", region_side)
            return t_back
        back, done = [], threading.Event()

        def watch():
            while not done.is_set():
                if any(lab.kernel_nexthops(r, vip) for r in ha_lab.ROUTERS):
                    back.append(time.time())
                    return
                done.wait(0.02)
        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        try:
            lab.heal(timeout=60)
        finally:
            done.set()
            watcher.join(timeout=5)
        return back[0] if back else time.time()

    # -------------------------------------------------------------- teardown
    def close(self):
        """Everything goes: the registry, the poller's and the WAN's
        namespaces, both labs, the directory."""
        if self not in _LIVE:
            return
        _LIVE.remove(self)
        if self.registry is not None:
            if self.registry.poll() is None:
                self.registry.send_signal(signal.SIGTERM)
                try:
                    self.registry.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    self.registry.kill()
                    self.registry.wait(timeout=5)
            self.registry = None
        for ns in reversed(self.namespaces):
            for pid in sh("ip", "netns", "pids", ns, check=False).stdout.split():
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except (ProcessLookupError, ValueError):
                    pass
            sh("ip", "netns", "del", ns, check=False)
        self.namespaces = []
        for lab in self.labs.values():
            lab.close()
        if self.own_workdir:
            shutil.rmtree(self.dir, ignore_errors=True)

    def logs_tail(self, n=40):
        out = ["== registry.log\n" + "\n".join(self.read_registry_log().splitlines()[-n:])]
        for i, lab in self.labs.items():
            out.append("==== region %d\n%s" % (i, lab.logs_tail(n)))
        return "\n".join(out)


def dig_a(server, port, name, subnet=None, run=None, wait=1):
    """[(ttl, address)] of the A records dig gets for name, [] for an
    answer without any, None when there is no answer. run: how to run the
    command (default: here)."""
    args = ["dig", "@" + server, "-p", str(port), name, "A", "+noall", "+answer", "+tries=1", "+time=%d" % wait]
    if subnet:
        args.append("+subnet=" + subnet)
    out = run(args) if run else subprocess.run(args, capture_output=True, text=True, timeout=wait + 5)
    if out.returncode != 0:
        return None
    records = []
    for line in out.stdout.splitlines():
        f = line.split()
        if len(f) == 5 and f[3] == "A":
            records.append((int(f[1]), f[4]))
    return records


# ----------------------------------------------------------------- the poller
def http_get(address, port=80, timeout=0.5):
    """(True, body) for a 200 to GET / on address:port, else (False, why).
    The lab's reals keep the connection open: read Content-Length bytes."""
    try:
        with socket.create_connection((address, port), timeout=timeout) as s:
            s.settimeout(timeout)
            s.sendall(b"GET / HTTP/1.1\r\nHost: global.sluice.test\r\n\r\n")
            buf = b""
            while b"\r\n\r\n" not in buf:
                chunk = s.recv(4096)
                if not chunk:
                    return False, "closed before the headers"
                buf += chunk
            head, _, body = buf.partition(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n")[1:]:
                key, _, value = line.partition(b":")
                if key.strip().lower() == b"content-length":
                    length = int(value)
            while len(body) < length:
                chunk = s.recv(4096)
                if not chunk:
                    break
                body += chunk
            status = head.split(b" ", 2)[1] if b" " in head else b"?"
            if status != b"200":
                return False, "HTTP " + status.decode(errors="replace")
            return True, body[:length].decode(errors="replace").strip()
    except (OSError, ValueError) as e:
        return False, str(e)


def poll_main(args):
    """The client's view, in the client's namespace, until "stop" on stdin
    or --duration: JSON lines on stdout.

    {"k": "dns", "t", "at", "answer": [[ttl, addr]...] | null}   every --step s
    {"k": "cache", "at", "addr", "ttl"}   the TTL-honouring client took a new answer
    {"k": "http", "t", "vip", "ok", "why"}   a probe of each VIP, every --step s
    {"k": "use", "t", "addr", "ok", "why"}   that client's request to the address it holds

    t: when the query or request started, at: when its answer came
    (epoch seconds)."""
    lock = threading.Lock()
    stop = threading.Event()
    cache = {"addr": None, "until": 0.0}

    def emit(rec):
        with lock:
            sys.stdout.write(json.dumps(rec) + "\n")
            sys.stdout.flush()

    def every(step, fn):
        nxt = time.time()
        while not stop.is_set():
            fn()
            nxt += step
            delay = nxt - time.time()
            if delay > 0:
                stop.wait(delay)
            else:
                nxt = time.time()     # late (a busy machine): no burst to catch up

    def ask():
        t = time.time()
        answer = dig_a(args.server, args.port, args.name, wait=1)
        at = time.time()
        emit({"k": "dns", "t": t, "at": at, "answer": answer})
        # A client that honours the TTL asks only once its copy expired.
        if answer and at >= cache["until"]:
            ttl, addr = answer[0]
            with lock:
                cache["addr"], cache["until"] = addr, at + ttl
            emit({"k": "cache", "at": at, "addr": addr, "ttl": ttl})

    def probe(vip):
        t = time.time()
        ok, why = http_get(vip, args.http_port, timeout=args.http_timeout)
        emit({"k": "http", "t": t, "vip": vip, "ok": ok, "why": why})

    def use():
        addr = cache["addr"]
        if addr:
            t = time.time()
            ok, why = http_get(addr, args.http_port, timeout=args.http_timeout)
            emit({"k": "use", "t": t, "addr": addr, "ok": ok, "why": why})

    threads = [threading.Thread(target=every, args=(args.step, ask), daemon=True),
               threading.Thread(target=every, args=(args.step, use), daemon=True)]
    threads += [threading.Thread(target=every, args=(args.step, lambda v=v: probe(v)), daemon=True)
                for v in args.vips.split(",")]
    for th in threads:
        th.start()
    emit({"k": "start", "t": time.time()})
    reader = threading.Thread(target=lambda: (sys.stdin.readline(), stop.set()), daemon=True)
    reader.start()
    stop.wait(args.duration)
    stop.set()
    for th in threads:
        th.join(timeout=3)
    emit({"k": "end", "t": time.time()})


class Poller:
    """poll_main run in the client's namespace; records() reads what it has
    written so far."""

    def __init__(self, world, step=0.1, duration=300):
        self.path = os.path.join(world.dir, "poll-%d.jsonl" % int(time.time() * 1000))
        out = open(self.path, "w")
        self.proc = subprocess.Popen(["ip", "netns", "exec", world.ns("client"), sys.executable,
                                      os.path.abspath(__file__), "--poll", "--server", REGISTRY_ADDR,
                                      "--port", str(DNS_PORT), "--name", NAME, "--vips", "%s,%s" % (VIP1, VIP2),
                                      "--step", str(step), "--duration", str(duration)],
                                     stdin=subprocess.PIPE, stdout=out, stderr=subprocess.STDOUT, text=True)
        out.close()

    def records(self):
        recs = []
        with open(self.path) as f:
            for line in f:
                if line.endswith("\n"):
                    try:
                        recs.append(json.loads(line))
                    except ValueError:
                        raise RuntimeError("the poller wrote: " + line)
        return recs

    def wait(self, pred, timeout, what):
        """The first true pred(records) within timeout, else RuntimeError."""
        got = ha_lab.wait_for(lambda: self.proc.poll() is None and pred(self.records()), timeout, step=0.1)
        if not got:
            raise RuntimeError("timed out waiting for %s (poller %s)" % (what, "running" if self.proc.poll()
                                                                        is None else "ended"))
        return got

    def stop(self):
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write("stop\n")
                self.proc.stdin.flush()
            except OSError:
                pass
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        return self.records()


# ------------------------------------------------------------------ analysis
def first(recs, kind, after, pred):
    """The first record of kind at or after `after` (by its answer time
    for DNS and cache records, by its start otherwise) for which pred holds."""
    for r in recs:
        if r["k"] == kind and r.get("at", r.get("t")) >= after and pred(r):
            return r
    return None


def answered(r, addr):
    return bool(r.get("answer")) and r["answer"][0][1] == addr


def after_ms(rec, t0):
    return None if rec is None else round((rec.get("at", rec.get("t")) - t0) * 1000, 1)


def loss_figures(recs, t_loss, t_end, world, health_down_at, vips=(VIP1, VIP2)):
    """What the client saw after the region was lost at t_loss (until
    t_end, when its restore began). vips: (the lost region's, the other's)."""
    vip1, vip2 = vips
    dns_vip2 = first(recs, "dns", t_loss, lambda r: answered(r, vip2))
    cache_vip2 = first(recs, "cache", t_loss, lambda r: r["addr"] == vip2)
    vip1_down = first(recs, "http", t_loss, lambda r: r["vip"] == vip1 and not r["ok"])
    end = cache_vip2["at"] if cache_vip2 else float("inf")
    held = [r for r in recs if r["k"] == "cache" and r["at"] < t_loss]
    used = [r for r in recs if r["k"] == "use" and t_loss <= r["t"] < min(end, t_end)]
    failed = [r for r in used if not r["ok"]]
    after = [r for r in recs if r["k"] == "use" and end <= r["t"] < t_end]
    return {
        "registry_down_ms": None if health_down_at is None else round((health_down_at - t_loss) * 1000, 1),
        "answer_vip2_ms": after_ms(dns_vip2, t_loss),
        "ttl_client_vip2_ms": after_ms(cache_vip2, t_loss),
        # How long the TTL client's copy of the answer still had to live at the loss.
        "ttl_client_cache_left_ms": (round((held[-1]["at"] + held[-1]["ttl"] - t_loss) * 1000, 1)
                                     if held else None),
        "detection_bound_ms": round(world.fall * world.interval * 1000),
        "bound_ms": round((world.fall * world.interval + world.ttl) * 1000),
        "vip1_first_failure_ms": after_ms(vip1_down, t_loss),
        "ttl_client_requests_failed": len(failed),
        "ttl_client_requests": len(used),
        "ttl_client_failed_window_ms": (round((failed[-1]["t"] - failed[0]["t"]) * 1000, 1) if failed else 0),
        "vip1_answers_after_switch": sum(1 for r in recs if r["k"] == "dns" and dns_vip2
                                         and dns_vip2["at"] < r["at"] and r["t"] < t_end and answered(r, vip1)),
        "vip2_requests_after_switch": len(after),
        "vip2_requests_failed_after_switch": sum(1 for r in after if not r["ok"]),
    }


def restore_figures(recs, t_back, world, health_up_at, vips=(VIP1, VIP2)):
    """After the lost region's VIP was reachable again at t_back (its link
    up, or its routers routing it again): when the registry marked it up,
    answered it again, and the TTL-honouring client took it; when the
    client's own probe of it succeeded again."""
    vip1 = vips[0]
    vip1_up = first(recs, "http", t_back, lambda r: r["vip"] == vip1 and r["ok"])
    dns_vip1 = first(recs, "dns", t_back, lambda r: answered(r, vip1))
    cache_vip1 = first(recs, "cache", t_back, lambda r: r["addr"] == vip1)
    return {
        "registry_up_ms": None if health_up_at is None else round((health_up_at - t_back) * 1000, 1),
        "answer_vip1_ms": after_ms(dns_vip1, t_back),
        "ttl_client_vip1_ms": after_ms(cache_vip1, t_back),
        "rise_bound_ms": round(world.rise * world.interval * 1000),
        "bound_ms": round((world.rise * world.interval + world.ttl) * 1000),
        "client_probe_ok_ms": after_ms(vip1_up, t_back),
    }


def health_changed_at(world, iid, state):
    """When the registry says the instance's health last changed (epoch
    seconds), if it is now `state`."""
    t = time.time()
    inst = world.instances().get(iid)
    if not inst or inst.get("health") != state or inst.get("health_changed_ms_ago") is None:
        return None
    return t - inst["health_changed_ms_ago"] / 1000.0


def run_failover(world, event="crash", settle=1.0):
    """Region 1 lost (Regions.lose_region's event) under the poller, then
    restored. Returns
    {"settings", "before", "loss", "restore"}; raises when the client never
    gets VIP2 (or VIP1 back)."""
    poller = Poller(world)
    before = {}
    try:
        # Before: the client's region, its VIP serving, the TTL client on it.
        poller.wait(lambda recs: first(recs, "cache", 0, lambda r: r["addr"] == VIP1)
                    and first(recs, "use", 0, lambda r: r["addr"] == VIP1 and r["ok"]), 15,
                    "the client on VIP1")
        # A caller's cached answer is as old as chance makes it when its
        # region goes: the loss comes at a random point of the TTL.
        time.sleep(settle + random.uniform(0, world.ttl))
        recs = poller.records()
        before = {"answer": next(r["answer"] for r in reversed(recs) if r["k"] == "dns" and r["answer"]),
                  "served_by": next(r["why"] for r in reversed(recs) if r["k"] == "use" and r["ok"]),
                  "region2_callers": world.dig(subnet=REGION2_CALLERS)}
        first_crash, t_loss = world.lose_region(1, event)
        world.log("region 1 lost: %s (%.0f ms from the first step to the last)"
                  % (event, (t_loss - first_crash) * 1000))
        bound = world.fall * (world.interval + world.timeout) + world.ttl + 20
        poller.wait(lambda recs: first(recs, "cache", t_loss, lambda r: r["addr"] == VIP2)
                    and first(recs, "use", t_loss, lambda r: r["addr"] == VIP2 and r["ok"]), bound,
                    "the TTL-honouring client on VIP2")
        time.sleep(settle)
        down_at = health_changed_at(world, "r1", "down")
        region2_during = world.dig(subnet=REGION2_CALLERS)
        t_restore = time.time()
        t_back = world.restore_region(1, event)
        world.log("region 1 restored: VIP1 reachable after %.1f s, all done after %.1f s"
                  % (t_back - t_restore, time.time() - t_restore))
        bound = world.rise * (world.interval + world.timeout) + world.ttl + 20
        poller.wait(lambda recs: first(recs, "cache", t_back, lambda r: r["addr"] == VIP1), bound,
                    "the TTL-honouring client back on VIP1")
        up_at = health_changed_at(world, "r1", "up")
        time.sleep(settle)
    finally:
        recs = poller.stop()
    return {"settings": {"ttl_s": world.ttl, "interval_ms": round(world.interval * 1000),
                         "timeout_ms": round(world.timeout * 1000), "fall": world.fall, "rise": world.rise,
                         "step_ms": 100, "event": event},
            "before": before,
            "loss": dict(loss_figures(recs, t_loss, t_restore, world, down_at), region2_callers=region2_during),
            "restore": dict(restore_figures(recs, t_back, world, up_at),
                            reachable_after_ms=round((t_back - t_restore) * 1000, 1)),
            "records": len(recs)}


def summary(fig):
    s, lo, back = fig["settings"], fig["loss"], fig["restore"]
    return ("region 1 lost (%s); fall %d x interval %d ms + TTL %d s = %d ms: the registry marked it down at "
            "%s ms, answered VIP2 at %s ms, a TTL-honouring client (its copy had %s ms to live) took VIP2 at "
            "%s ms (%d of its %d requests failed meanwhile); restored: from VIP1 reachable again, rise %d x "
            "interval = %d ms (+ TTL = %d ms): the registry marked it up at %s ms, answered VIP1 at %s ms, the "
            "TTL client took it at %s ms"
            % (s["event"], s["fall"], s["interval_ms"], s["ttl_s"], lo["bound_ms"], lo["registry_down_ms"],
               lo["answer_vip2_ms"], lo["ttl_client_cache_left_ms"], lo["ttl_client_vip2_ms"],
               lo["ttl_client_requests_failed"], lo["ttl_client_requests"], s["rise"], back["rise_bound_ms"],
               back["bound_ms"], back["registry_up_ms"], back["answer_vip1_ms"], back["ttl_client_vip1_ms"]))


def parse_duration(text):
    text = text.strip()
    if text.endswith("ms"):
        return int(text[:-2]) / 1000.0
    if text.endswith("s"):
        return float(text[:-1])
    return float(text)


def main():
    ap = argparse.ArgumentParser(description="Two HA labs as two regions behind the registry's GSLB DNS: "
                                 "lose region 1, restore it, print what the client saw (one JSON line a run).")
    ap.add_argument("--poll", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--server", help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, default=DNS_PORT, help=argparse.SUPPRESS)
    ap.add_argument("--name", default=NAME, help=argparse.SUPPRESS)
    ap.add_argument("--vips", default="%s,%s" % (VIP1, VIP2), help=argparse.SUPPRESS)
    ap.add_argument("--step", type=float, default=0.1, help=argparse.SUPPRESS)
    ap.add_argument("--duration", type=float, default=300, help=argparse.SUPPRESS)
    ap.add_argument("--http-timeout", type=float, default=0.5, help=argparse.SUPPRESS)
    ap.add_argument("--http-port", type=int, default=ha_lab.HTTP_PORT, help=argparse.SUPPRESS)
    ap.add_argument("--prefix", default="s12r", help="namespace prefix (default s12r)")
    ap.add_argument("--ttl", type=int, default=5, help="dns_ttl of the GSLB name, seconds (default 5)")
    ap.add_argument("--interval", default="1s", help="the registry's health check interval (default 1s)")
    ap.add_argument("--timeout", default="500ms", help="the health check's timeout (default 500ms)")
    ap.add_argument("--fall", type=int, default=2, help="failed checks to mark a VIP down (default 2)")
    ap.add_argument("--rise", type=int, default=2, help="passed checks to mark it up again (default 2)")
    ap.add_argument("--event", choices=Regions.EVENTS, default="crash",
                    help="how region 1 is lost (default crash; see Regions.lose_region)")
    ap.add_argument("--repeat", type=int, default=1, help="failovers to run (default 1)")
    ap.add_argument("--hold", type=float, default=0, help="seconds to keep everything up at the end")
    args = ap.parse_args()
    if args.poll:
        return poll_main(args)
    why = have_tools()
    if why:
        sys.exit("ha_regions: " + why)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("ha_regions: terminated"))
    with Regions(prefix=args.prefix, ttl=args.ttl, interval=parse_duration(args.interval),
                 timeout=parse_duration(args.timeout), fall=args.fall, rise=args.rise,
                 log=lambda m: print("# " + m, file=sys.stderr)) as world:
        try:
            t0 = time.time()
            world.build()
            print("# built in %.1f s in %s" % (time.time() - t0, world.dir), file=sys.stderr)
            for _ in range(args.repeat):
                fig = run_failover(world, args.event)
                print("# " + summary(fig), file=sys.stderr)
                print(json.dumps(fig), flush=True)
            if args.hold:
                time.sleep(args.hold)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
