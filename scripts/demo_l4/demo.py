"""`make demo-l4` (root): sluice l4 in each of its modes, DR, TUN, NAT and
FullNAT, between network namespaces. Run through scripts/demo-l4.sh.

The topology, the HTTP servers, the `sluice l4` runner and the clients are
tests/integration/test_l4_netns.py's (TUN's decap helper is test_l4_tun.py's),
imported, not copied; only the namespace prefix is this demo's own
(`sl4demo`, the tests use `sl4t<pid>`), and the pins live on a bpffs mounted
in this run's temporary directory. Everything is removed at the end, also on
an error, Ctrl-C, SIGTERM or SIGHUP; the namespaces (with their processes)
and the mount left by an earlier demo run that was killed outright are
removed at the start.
"""
import collections
import os
import pathlib
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "integration"))
import test_l4_netns as t   # noqa: E402
import test_l4_tun as tun   # noqa: E402

# The demo's own namespace names (the helpers read these module globals at
# call time): sl4demosw, sl4democ, sl4demolb, sl4demor1..r3.
t.TAG = "sl4demo"
t.NS_SW, t.NS_C, t.NS_LB = t.TAG + "sw", t.TAG + "c", t.TAG + "lb"
TMP_PREFIX = "sluice-demo-l4-"
CLIENT = "10.0.0.2"
REALS = [name for name, _ in t.REALS]


class Topology(t.Topology):
    """The tests' topology, but every process it starts (servers, sluice l4,
    clients, proxies) in a session of its own: a Ctrl-C at the terminal
    then reaches only the demo, which removes them all, instead of each
    child printing its own traceback."""

    def spawn(self, ns, *args, **kw):
        kw.setdefault("start_new_session", True)
        return super().spawn(ns, *args, **kw)


class DemoError(Exception):
    pass


def say(msg):
    print("\n\033[1m== %s\033[0m" % msg, flush=True)


def mode_header(title, lines):
    print("\n\033[1;7m %s \033[0m" % title)
    for line in lines:
        print("  " + line)
    sys.stdout.flush()


def check(cond, msg):
    if not cond:
        raise DemoError(msg)


def spread(n, seen_as):
    """n requests to the VIP, each on a new connection. Prints how many each
    real served and the client address the servers saw; checks that every
    request was answered and the servers saw `seen_as`."""
    bodies = t.get(n)
    errs = [b for b in bodies if b.startswith("ERR")]
    ok = [b for b in bodies if not b.startswith("ERR")]
    c = collections.Counter(t.real_of(b) for b in ok)
    seen = sorted({" ".join(b.split()[1:]) for b in ok})
    print("  %d requests to %s:80 -> %s%s" % (n, t.VIP, ", ".join("%s: %d" % kv for kv in sorted(c.items())),
                                             "; %d failed: %s" % (len(errs), errs[0]) if errs else ""))
    print("  the servers saw the client as: %s" % ", ".join(seen))
    check(not errs and len(bodies) == n, "requests failed: %s" % errs[:3])
    check(seen == [seen_as], "expected the servers to see %r, got %s" % (seen_as, seen))
    return c


def show_list(l4):
    """`sluice l4 list`, without its pass_* lines (traffic not for a VIP)."""
    print("  $ sluice l4 list -c l4.yaml --pin-dir %s/sluice" % l4.topo.bpffs)
    out = l4.list()
    lines = [ln for ln in out.splitlines() if ln.strip() and not ln.strip().startswith("pass_")]
    print("\n".join("  " + ln for ln in lines))
    print("  (pass_* lines left out)")
    return out


def log_lines(l4, *words):
    print("".join("  " + ln for ln in l4.new_log().splitlines(True) if any(w in ln for w in words)), end="")


def restart_servers(topo, port):
    for p in topo.servers.values():
        if p.poll() is None:
            p.kill()
        p.wait(timeout=5)
    topo.start_servers(port=port)


def stop_l4(topo, l4):
    """Stop sluice l4, which leaves the forwarder attached, then take it
    off and remove its pinned maps: each mode starts afresh."""
    if l4 and l4.proc and l4.proc.poll() is None:
        l4.stop()
    out = l4.detach("--remove-maps")
    print("  $ sluice l4 detach --pin-dir %s --remove-maps" % l4.pin_dir)
    print("".join("  " + ln for ln in out.stdout.splitlines(True)), end="")
    check(out.returncode == 0, "sluice l4 detach failed: %s" % out.stderr)


# ---------------------------------------------------------------- modes ----

def demo_dr(topo):
    mode_header("1/4  DR (direct routing)", [
        "client -> LB: the forwarder rewrites only the destination MAC (to the real's) and sends the",
        "frame back out (XDP_TX); the real holds the VIP on lo (arp_ignore=1, arp_announce=2) and",
        "answers the client directly from the VIP. The real sees the client's own address.",
    ])
    l4 = t.L4(topo, mode="dr").start()
    log_lines(l4, "attached", "Maglev table")
    say("HTTP through the VIP")
    spread(30, CLIENT)
    # A long-lived connection, on r3 if one of a few lands there: r3 is the
    # one drained below, and its established flow must carry on.
    keeps = [t.KeepAlive(topo) for _ in range(6)]
    answers = [k.ask() for k in keeps]
    i = next((i for want in ("r3 ", "r1 ") for i, a in enumerate(answers) if a.startswith(want)), 0)
    keep = keeps[i]
    for k in keeps:
        if k is not keep:
            k.p.kill()
    print("  a keep-alive connection is open on:", answers[i])
    check(not answers[i].startswith("ERR"), "keep-alive connection failed: %s" % answers[i])
    say("sluice l4 list")
    show_list(l4)
    say("kill r2's server: the health check takes it out (fall 2 x 300ms)")
    topo.servers["r2"].kill()
    check(t.wait_for(lambda: "10.0.0.12:80: inactive" in l4.new_log(), 10), "r2 was not taken out")
    log_lines(l4, "10.0.0.12:80: inactive")
    c = spread(30, CLIENT)
    check("r2" not in c, "r2 still got new flows")
    say("drain r3 through the admin API: sluice backend -c l4.yaml tcp:%s:80 10.0.0.13:80 drain" % t.VIP)
    t.nsexec(t.NS_LB, t.SLUICE_BIN, "backend", "-c", str(l4.conf), "tcp:%s:80" % t.VIP, "10.0.0.13:80", "drain")
    check(t.wait_for(lambda: re.search(r"10.0.0.13:80=0$", l4.new_log(), re.M), 5), "the drain did not apply")
    c = spread(20, CLIENT)
    check(set(c) == {"r1"}, "new flows still reach %s" % sorted(set(c) - {"r1"}))
    answer = keep.ask()
    print("  the established connection still answers:", answer)
    check(answer == answers[i], "the established connection broke: %s" % answer)
    say("restart sluice l4: the forwarder stays attached while it is down, the pinned maps keep the flows")
    l4.stop()
    log_lines(l4, "stays attached")
    answer = keep.ask()
    print("  while no sluice l4 runs, the established connection says:", answer)
    check(answer == answers[i], "the connection broke while sluice l4 was down: %s" % answer)
    spread(10, CLIENT)
    l4.start(ready=r"weights .*$")
    log_lines(l4, "reusing", "swapped")
    answer = keep.ask()
    print("  after the restart the established connection says:", answer)
    check(answer == answers[i], "the connection did not survive the restart: %s" % answer)
    say("/metrics (excerpt)")
    print("\n".join("  " + ln for ln in l4.metrics().splitlines()
                    if ln.startswith(("sluice_l4_vip", "sluice_l4_real_packets", 'sluice_l4_packets_total{reason="fwd_dr'))))
    keep.p.kill()
    say("change it while it runs (admin API): sluice l4 remove-real, then add-real with weight 2")
    svc = "tcp:%s:80" % t.VIP
    out = t.nsexec(t.NS_LB, t.SLUICE_BIN, "l4", "remove-real", "-c", str(l4.conf), svc, "10.0.0.12:80")
    print("  $ sluice l4 remove-real -c l4.yaml %s 10.0.0.12:80\n  %s" % (svc, out.stdout.strip()))
    check(out.returncode == 0, "remove-real failed: %s" % out.stderr)
    restart_servers(topo, 80)   # r2's server back
    out = t.nsexec(t.NS_LB, t.SLUICE_BIN, "l4", "add-real", "-c", str(l4.conf), svc, "10.0.0.12:80", "2")
    print("  $ sluice l4 add-real -c l4.yaml %s 10.0.0.12:80 2\n  %s" % (svc, out.stdout.strip()))
    check(out.returncode == 0, "add-real failed: %s" % out.stderr)
    check(t.wait_for(lambda: re.search(r"10.0.0.12:80=2$", l4.new_log(), re.M), 10), "r2 did not come back")
    c = spread(40, CLIENT)
    check(set(c) == {"r1", "r2", "r3"}, "not every real takes flows: %s" % sorted(c))
    show_list(l4)
    stop_l4(topo, l4)


def demo_tun(topo):
    mode_header("2/4  TUN (IP-in-IP)", [
        "the forwarder wraps each packet in an outer IPv4 header to the real (source from",
        "tun_source_prefix %s), so the real need not be on the LB's LAN. This kernel has no ipip" % tun.TUN_SRC4,
        "module: each real runs `sluice l4 decap --interface eth0`, an XDP program that strips the",
        "outer header; the inner packet reaches the VIP on lo and the real answers the client directly.",
    ])
    say("sluice l4 decap on each real")
    for name in REALS:
        out = tun.decap(topo, name)
        check(out.returncode == 0, "sluice l4 decap failed on %s: %s" % (name, out.stderr))
        print("  %s: %s" % (name, out.stdout.strip().split("; link pinned")[0]))
    try:
        l4 = tun.TunL4(topo, 4, 4)
        l4.start()
        log_lines(l4, "Maglev table")
        say("HTTP through the VIP")
        spread(30, CLIENT)
        say("sluice l4 list")
        show_list(l4)
        say("each real's decap counters: sluice l4 decap --interface eth0 --stats")
        for name in REALS:
            stats = tun.decap(topo, name, "--stats").stdout
            n = tun.counter(stats, "decap_ipip")
            print("  %s: decap_ipip %d pkts, pass_other %d pkts" % (name, n, tun.counter(stats, "pass_other")))
            check(n > 0, "%s decapsulated nothing:\n%s" % (name, stats))
        stop_l4(topo, l4)
    finally:
        for name in REALS:
            tun.decap(topo, name, "--detach")
    print("  (decap detached from the reals)")


def demo_nat(topo):
    mode_header("3/4  NAT", [
        "the forwarder rewrites the destination to the real's address and port (VIP:80 ->",
        "real:8080) and sends the replies back as VIP:80. The replies must cross the LB: the reals",
        "get a default route via the LB (10.0.0.5), and the client an address off the reals'",
        "subnet (%s), so it is not answered directly. The real sees the client's own address." % t.NAT_CLIENT,
    ])
    topo.nat_routes()
    restart_servers(topo, 8080)
    l4 = t.L4(topo, mode="nat", real_port=8080)
    l4.start()
    log_lines(l4, "Maglev table")
    say("HTTP through the VIP (the client sends from %s)" % t.NAT_CLIENT)
    spread(30, t.NAT_CLIENT)
    say("sluice l4 list (fwd_nat in, fwd_nat_reply back)")
    out = show_list(l4)
    check(re.search(r"fwd_nat_reply\s+[1-9]", out), "no fwd_nat_reply packets")
    stop_l4(topo, l4)
    # Undo NAT's routing; FullNAT needs none of it.
    t.nsexec(t.NS_C, "ip", "route", "del", t.VIP + "/32")
    t.nsexec(t.NS_C, "ip", "addr", "del", t.NAT_CLIENT + "/32", "dev", "eth0")
    for name in REALS:
        t.nsexec(t.TAG + name, "ip", "route", "del", "default")


def demo_fullnat(topo):
    mode_header("4/4  FullNAT", [
        "the forwarder rewrites both ends: the real sees a local address of the LB (%s, on the" % t.LOCAL_ADDR,
        "LB's lo) and a port from its pool as the peer, and replies to it by plain routing; the LB",
        "turns the replies back into VIP:80 -> client. The client's address travels in a TCP option",
        "(TOA) on the SYN: a tc program on each real records it, and `sluice proxy` with",
        "client_address: toa puts it in X-Forwarded-For.",
    ])
    topo.fullnat_routes()
    l4 = t.L4(topo, mode="fullnat", real_port=8080, local=[t.LOCAL_ADDR])
    l4.start()
    log_lines(l4, "Maglev table")
    say("HTTP through the VIP, straight to the servers on :8080")
    spread(30, t.LOCAL_ADDR)
    stop_l4(topo, l4)

    say("with TOA: toa.bpf.o on each real's eth0 ingress, sluice proxy :80 -> 127.0.0.1:8080 on each real")
    map_pin = t.load_toa(topo, REALS)
    conf = topo.tmp / "proxy.yaml"
    conf.write_text(t.PROXY_CONF % map_pin)
    proxies = {}
    for name in REALS:
        log = open(topo.tmp / ("proxy-%s.log" % name), "wb")
        proxies[name] = topo.spawn(t.TAG + name, t.SLUICE_BIN, "proxy", "-c", str(conf), stdout=log,
                                   stderr=subprocess.STDOUT)
    try:
        l4 = t.L4(topo, mode="fullnat", real_port=80, local=[t.LOCAL_ADDR])
        l4.start()   # ready once the three proxies pass their health checks
        print("  (the servers answer \"NAME PEER X-FORWARDED-FOR\"; their peer is now the proxy)")
        spread(30, "127.0.0.1 " + CLIENT)

        def access_lines():
            return [(n, ln) for n in REALS
                    for ln in (topo.tmp / ("proxy-%s.log" % n)).read_text(errors="replace").splitlines()
                    if '"GET / HTTP/1.1"' in ln]
        t.wait_for(lambda: len(access_lines()) >= 30, 5)
        print("  the proxies' access logs (one line of each):")
        for name in REALS:
            line = next((ln for n, ln in access_lines() if n == name), "(none)")
            print("    %s: %s" % (name, line[:110]))
        check(all(ln.startswith(CLIENT + " ") for _, ln in access_lines()), "an access log line lacks the client")
        say("sluice l4 list")
        show_list(l4)
        stop_l4(topo, l4)
    finally:
        for p in proxies.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in proxies.values():
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()


# ------------------------------------------------------------- cleanup ----

def remove_leftovers():
    """Namespaces (and the processes in them) and bpffs mounts of an
    earlier demo run that could not clean up (SIGKILL); ours only, by
    prefix."""
    names = [ln.split()[0] for ln in t.sh("ip", "netns", "list").stdout.splitlines() if ln.strip()]
    stale = [n for n in names if n.startswith(t.TAG)]
    mounts = [ln.split()[1] for ln in open("/proc/mounts")
              if ln.split()[2] == "bpf" and re.match(r"/tmp/%s[^/]+/bpffs$" % TMP_PREFIX, ln.split()[1])]
    if stale or mounts:
        print("demo-l4: removing what an earlier run left: %s" % " ".join(stale + mounts))
    for n in stale:
        for pid in t.sh("ip", "netns", "pids", n, check=False).stdout.split():
            try:
                os.kill(int(pid), signal.SIGKILL)
            except (ProcessLookupError, ValueError):
                pass
        t.sh("ip", "netns", "del", n, check=False)
    for m in mounts:
        t.sh("umount", m, check=False)
        shutil.rmtree(os.path.dirname(m), ignore_errors=True)


def on_signal(signum, frame):
    raise KeyboardInterrupt("signal %d" % signum)


def main():
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    why = t.have_tools()
    if why:
        print("demo-l4: " + why, file=sys.stderr)
        return 1
    remove_leftovers()
    started = time.time()
    tmp = pathlib.Path(tempfile.mkdtemp(prefix=TMP_PREFIX))
    topo = Topology(tmp)
    rc = 0
    try:
        say("topology (network namespaces %s*, removed at the end)" % t.TAG)
        for line in (
                "client  %s          --+" % CLIENT,
                "LB      10.0.0.5 (VIP %s on lo, sluice l4 with XDP native on lb0) --+-- bridge br0" % t.VIP,
                "r1..r3  10.0.0.11-13 (each an HTTP server answering \"NAME CLIENT-IP\") --+",
                "pins on a bpffs of its own: %s" % topo.bpffs):
            print("  " + line)
        topo.build()
        topo.start_servers()
        demo_dr(topo)
        demo_tun(topo)
        demo_nat(topo)
        demo_fullnat(topo)
        say("all four modes done in %.0f s" % (time.time() - started))
    except KeyboardInterrupt as e:
        print("\ndemo-l4: interrupted (%s)" % (str(e) or "Ctrl-C"), file=sys.stderr)
        rc = 130
    except (DemoError, RuntimeError, subprocess.CalledProcessError, subprocess.TimeoutExpired) as e:
        detail = getattr(e, "stderr", None)
        print("\ndemo-l4: FAILED: %s%s" % (e, "\n" + detail if detail else ""), file=sys.stderr)
        log = (tmp / "l4.log")
        if log.exists():
            print("  the end of sluice l4's log:", file=sys.stderr)
            print("".join("    " + ln for ln in log.read_text(errors="replace").splitlines(True)[-15:]),
                  file=sys.stderr)
        rc = 1
    finally:
        # Ctrl-C again must not cut the cleanup short.
        for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(s, signal.SIG_IGN)
        say("cleaning up")
        topo.destroy()
        shutil.rmtree(tmp, ignore_errors=True)
        left = [ln for ln in t.sh("ip", "netns", "list").stdout.splitlines() if ln.startswith(t.TAG)]
        print("  %s" % ("done: processes, namespaces, mounts and pins removed" if not left
                        else "left behind: %s" % left))
    return rc


if __name__ == "__main__":
    sys.exit(main())
