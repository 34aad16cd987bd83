#!/usr/bin/env bash
# `make demo-l4` (root): sluice l4 forwarding real HTTP in DR mode between
# network namespaces: a client, the LB and three real servers on one
# bridge (the topology of tests/integration/test_l4_netns.py, reused from
# there). Shows the spread, `sluice l4 list`, a real failing its health
# check, a drain through the admin API, and a restart that keeps an
# established connection. Removes everything it created, also on Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" -ne 0 ]; then
  echo "demo-l4: needs root (network namespaces, XDP)" >&2
  exit 1
fi
exec /usr/bin/python3 - <<'PY'
import collections, pathlib, re, shutil, sys, tempfile, time
sys.path.insert(0, "tests/integration")
import test_l4_netns as t

def say(msg):
    print("\n\033[1m== %s\033[0m" % msg, flush=True)

def spread(n):
    bodies = t.get(n)
    c = collections.Counter(t.real_of(b) for b in bodies)
    print("  %d requests to %s:80 -> %s; the reals saw client %s" % (
        n, t.VIP, ", ".join("%s: %d" % kv for kv in sorted(c.items())),
        sorted({b.split()[1] for b in bodies if not b.startswith("ERR")})))

tmp = pathlib.Path(tempfile.mkdtemp(prefix="sluice-demo-l4-"))
topo = t.Topology(tmp)
try:
    say("topology: client 10.0.0.2, LB 10.0.0.5 (VIP %s), reals 10.0.0.11-13, one bridge" % t.VIP)
    topo.build()
    topo.start_servers()
    say("sluice l4 -c %s  (XDP native on the LB's veth)" % (tmp / "l4.yaml"))
    l4 = t.L4(topo).start()
    print("".join("  " + l for l in l4.read_log().splitlines(True) if "attached" in l or "Maglev" in l))
    say("HTTP through the VIP (DR: replies go straight from the real to the client)")
    spread(30)
    keep = t.KeepAlive(topo)
    print("  a keep-alive connection is on:", keep.ask())
    say("sluice l4 list")
    print(l4.list())
    say("kill r2's server: the health check takes it out (fall 2 x 300ms)")
    topo.servers["r2"].kill()
    t.wait_for(lambda: "10.0.0.12:80: inactive" in l4.read_log(), 10)
    spread(30)
    say("drain r3 through the admin API: sluice backend -c FILE tcp:%s:80 10.0.0.13:80 drain" % t.VIP)
    t.nsexec(t.NS_LB, t.SLUICE_BIN, "backend", "-c", str(l4.conf), "tcp:%s:80" % t.VIP, "10.0.0.13:80", "drain")
    t.wait_for(lambda: re.search(r"10.0.0.13:80=0$", l4.read_log(), re.M), 5)
    spread(20)
    print("  the keep-alive connection still works:", keep.ask())
    say("restart sluice l4: pinned maps keep the connection table")
    l4.stop()
    l4.start(ready=r"weights .*$")
    print("  after the restart the keep-alive connection says:", keep.ask())
    say("/metrics (excerpt)")
    print("\n".join("  " + l for l in l4.metrics().splitlines()
                    if l.startswith(("sluice_l4_vip", "sluice_l4_real_packets", 'sluice_l4_packets_total{reason="fwd'))))
    l4.stop()
finally:
    say("cleaning up")
    topo.destroy()
    shutil.rmtree(tmp, ignore_errors=True)
    print("  done: namespaces and mounts removed")
PY
