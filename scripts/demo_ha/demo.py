"""`make demo-ha` (root): the HA lab of issue 12 and what happens to the
clients' traffic when an LB node fails. Run through scripts/demo-ha.sh.

The lab is tests/integration/ha_lab.py's (imported, not copied): a client,
two routers running BIRD (BGP, BFD, ECMP), four LB nodes running `sluice
l4` in two zones (a1, a2: priority 0; b1, b2: priority 1, one AS-path
prepend) and three reals, in network namespaces named s12x-*. The demo
shows the routes at a router and `sluice ha status` on a node, then, with
long-lived connections and a stream of new ones running to the DR VIP
(ha_traffic.py), one failure after another with its figures:

  crash        a1's sluice l4 and BIRD killed (kill -9)
  link cut     a2's fabric link goes down; its processes live on: only BFD tells
  drain        `sluice ha drain` on a1 (or the lab's withdraw): routes first, then stop
  zone lost    a1 and a2 both die: the routers switch to zone b
  zone back    a1 and a2 start again: the routers come back to zone a

Each node's `sluice l4` announces its VIPs through its `ha:` section
and runs its own BIRD. BFD: BFD=100x3 (interval ms x multiplier, the
default).

Everything is removed at the end, also on an error, Ctrl-C, SIGTERM or
SIGHUP (the lab's close()); namespaces left by a demo killed outright are
removed at the start (by the lab, by prefix).
"""
import os
import re
import signal
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
import ha_lab  # noqa: E402
from ha_lab import NODES, VIP_DR  # noqa: E402

PREFIX = "s12x-"
BOLD, INVERSE, OFF = "\033[1m", "\033[1;7m", "\033[0m"


class DemoLab(ha_lab.Lab):
    """The lab, with every process it starts in a session of its own: a
    Ctrl-C at the terminal then reaches only the demo, which removes them
    all (instead of each child dying on its own and printing about it)."""

    def spawn(self, key, ns, args, log_name=None, **kw):
        kw.setdefault("start_new_session", True)
        return super().spawn(key, ns, args, log_name, **kw)


class DemoError(Exception):
    pass


def say(msg):
    print("\n%s== %s%s" % (BOLD, msg, OFF), flush=True)


def part(title, lines=()):
    print("\n%s %s %s" % (INVERSE, title, OFF))
    for line in lines:
        print("  " + line)
    sys.stdout.flush()


def indent(text, by="    "):
    return "\n".join(by + ln for ln in text.rstrip("\n").splitlines())


def show_routes(lab, router="r1", vip=VIP_DR, bird=True):
    """The kernel's route for vip at router (ECMP next hops), and BIRD's
    routes with their AS paths (which node, how many prepends, which won)."""
    out = ha_lab.nsexec(lab.ns(router), "ip", "route", "show", vip + "/32").stdout
    print("  %s: ip route show %s/32" % (router, vip))
    print(indent(out or "(no route)\n"))
    if bird:
        print("  %s: BIRD's routes for %s/32 (birdc show route all)" % (router, vip))
        routes = sorted(lab.bird_routes(router, vip))
        shortest = min((len(path) for _, path, _ in routes), default=0)
        for node, path, best in routes:
            zone, prio = (NODES[node][0], NODES[node][1]) if node in NODES else ("?", 0)
            # BIRD marks one route best; with `merge paths` every route as
            # good as it (the same AS path length) joins the kernel's ECMP route.
            if len(path) == shortest:
                use = "shortest: in the ECMP route" + (" (BIRD's best)" if best else "")
            else:
                use = "not used: %d prepend%s more" % (len(path) - shortest, "" if len(path) - shortest == 1 else "s")
            print("    from %-3s zone %s  AS path %-22s %s" % (node, zone, " ".join(path), use))
    sys.stdout.flush()


def show_status(lab, node):
    say("sluice ha status on %s" % node)
    out = ha_lab.nsexec(lab.ns(node), lab.sluice_bin, "ha", "status", "-c", lab.l4_config_path(node),
                        check=False)
    print(indent(out.stdout + out.stderr))
    if out.returncode != 0:
        raise DemoError("sluice ha status on %s failed (status %d)" % (node, out.returncode))


FIGURES = []

# The VIPs the traffic goes to: every forwarding mode at once when the lab
# announces them all (its MODES; run_event then takes a list), else DR.
if hasattr(ha_lab, "MODES"):
    TRAFFIC = dict(ha_lab.MODES)
    # Four streams at once: each lighter, as test_ha_lab runs them (two
    # CPUs carry the client, the nodes, their sync and the reals).
    LOAD = dict(conns=8, probe_ms=10, interval_ms=(15, 30))
else:
    TRAFFIC = {"dr": VIP_DR}
    LOAD = {}


def traffic_of(f):
    """{mode: ha_traffic figures} of run_event's result, one VIP or several."""
    if len(TRAFFIC) == 1:
        return {next(iter(TRAFFIC)): f["traffic"]}
    return {mode: f["traffic"][vip] for mode, vip in TRAFFIC.items()}


def event(lab, name, what, ev, node, heal=True, bird=False):
    """One failure under traffic (ha_lab.run_event), its figures printed and
    kept for the summary; the routes at r1 right after; then the lab healed
    (unless heal=False: the next event starts from this state)."""
    part(name, what)
    vips = list(TRAFFIC.values())
    f = ha_lab.run_event(lab, ev, node, vips if len(vips) > 1 else vips[0], heal=False, **LOAD)
    down = f["session_down_ms"]
    print("  what the routers did:")
    who = node if ev not in ("zone", "zone-restore") else "zone %s's nodes" % NODES[node][0]
    if down and ev != "drain":
        print("    BGP session to %s down after %s"
              % (who, ", ".join("%s %.0f ms" % kv for kv in sorted(down.items()))))
    elif ev == "crash":
        print("    BGP sessions to %s stay up: its BIRD withdrew the routes over them" % who)
    elif ev == "drain":
        print("    the routes withdrawn over the live sessions, then the node stopped")
    print("    both routers' kernels routed every address as expected %.0f ms after the event" % f["routes_ms"])
    print("  what the clients saw (per VIP: long-lived connections, and a new connection every %d ms):"
          % LOAD.get("probe_ms", 3))
    for mode, tr in traffic_of(f).items():
        lg, pr = tr["long"], tr["probes"]
        print("    %-8s %-12s long-lived: broken %d of %d, longest wait %4.0f ms; new: %d failed of %d%s" % (
            mode.upper(), TRAFFIC[mode], lg["broken"], lg["connections"], lg["gap_ms"] or 0, pr["failed"],
            pr["sent"], " (within %.0f ms)" % pr["fail_window_ms"] if pr["failed"] else ""))
        for fail in lg["failures"][:3]:
            print("      broken: connection %s at %ss: %s" % (fail["conn"], fail["at_s"], fail["error"]))
    show_routes(lab, bird=bird)
    FIGURES.append((name, f))
    if heal:
        lab.heal()
    return f


def summary():
    say("the figures (BFD %d ms x %d; %s)" % (FIGURES[0][1]["bfd_ms"], FIGURES[0][1]["bfd_multiplier"],
                                              ", ".join(m.upper() for m in TRAFFIC)))
    print("  %-22s %12s %12s %14s %14s %8s" % ("event", "session down", "routes moved", "longest wait",
                                                 "failed new", "broken"))
    for name, f in FIGURES:
        figs = traffic_of(f).values()
        down = f["session_down_ms"]
        print("  %-22s %12s %12s %14s %14s %8d" % (
            name, "%.0f ms" % min(down.values()) if down and f["event"] != "drain" else "-", "%.0f ms" % f["routes_ms"],
            "%.0f ms" % max(t["long"]["gap_ms"] or 0 for t in figs),
            "%d / %d" % (sum(t["probes"]["failed"] for t in figs), sum(t["probes"]["sent"] for t in figs)),
            sum(t["long"]["broken"] for t in figs)))
    print("  (session down: the first router's BIRD; routes moved: both routers' kernels as expected;")
    print("   longest wait: of an established connection; TCP sends a lost segment again after 200 ms")
    print("   at the soonest; failed new: connections opened every %d ms that did not complete in 0.5 s)"
          % LOAD.get("probe_ms", 3))


def on_signal(signum, frame):
    raise KeyboardInterrupt("signal %d" % signum)


def main():
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    bfd = os.environ.get("BFD", "100x3")
    if not re.match(r"^[1-9]\d*x[1-9]\d*$", bfd):
        print("demo-ha: BFD is INTERVALxMULTIPLIER (e.g. 100x3)", file=sys.stderr)
        return 2
    why = ha_lab.have_tools()
    if why:
        print("demo-ha: " + why, file=sys.stderr)
        return 1
    interval, mult = (int(x) for x in bfd.split("x"))
    started = time.time()
    rc = 0
    lab = DemoLab(prefix=PREFIX, bfd=(interval, mult),
                  log=lambda m: print("  [lab] " + m, flush=True))
    try:
        say("the lab (network namespaces %s*, removed at the end)" % PREFIX)
        print("\n".join("  " + ln for ln in ha_lab.__doc__.split("\n\n")[1].splitlines()))
        print("  each node's sluice l4 announces through its ha: section and runs BIRD itself")
        print("  BFD on every BGP session: %d ms x %d = %d ms to detect a silent failure" % (interval, mult,
                                                                                           interval * mult))
        t0 = time.time()
        lab.build()
        ha_lab.wait_for(lab.sessions_established, 20)
        # A session is up a moment before its routes arrive: wait until the
        # router has every node's route, so the picture below is complete.
        ha_lab.wait_for(lambda: len(lab.bird_routes("r1", VIP_DR)) >= len(NODES), 20)
        print("  built in %.0f s; every BGP session up: %s" % (time.time() - t0, lab.sessions_established()))

        say("routes at a router: ECMP over zone a, zone b one AS-path prepend longer")
        show_routes(lab)
        show_status(lab, "a1")

        event(lab, "crash of a1", ["a1's sluice l4 killed (kill -9), its forwarder taken off: what it announced",
                                   "vanishes with the process, BIRD withdraws, the routers know at once"],
              "crash", "a1")
        event(lab, "link cut at a2", ["a2's fabric link goes down; its processes live on.",
                                      "Nothing closes: BFD (%d ms x %d) must tell the routers" % (interval, mult)],
              "cut", "a2")
        event(lab, "drain of a1", ["the VIPs are withdrawn first (%s), the routers move the flows,"
                                   % "sluice ha drain",
                                   "then sluice l4 stops: nothing is lost"], "drain", "a1")
        event(lab, "zone a lost", ["a1 and a2 die together: no zone-a node announces,",
                                   "the routers switch to zone b's longer path (b1, b2, ECMP)"],
              "zone", "a1", heal=False, bird=True)
        event(lab, "zone a restored", ["a1 and a2 start again and announce once their reals are up:",
                                       "the routers prefer zone a again; flows move back to the same reals"],
              "zone-restore", "a1", bird=True)
        summary()
        say("all done in %.0f s" % (time.time() - started))
    except KeyboardInterrupt as e:
        print("\ndemo-ha: interrupted (%s)" % (str(e) or "Ctrl-C"), file=sys.stderr)
        rc = 130
    except (DemoError, RuntimeError, subprocess.CalledProcessError, subprocess.TimeoutExpired) as e:
        detail = getattr(e, "stderr", None)
        print("\ndemo-ha: FAILED: %s%s" % (e, "\n" + detail if detail else ""), file=sys.stderr)
        print(lab.logs_tail(15), file=sys.stderr)
        rc = 1
    finally:
        # Ctrl-C again must not cut the cleanup short.
        for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(s, signal.SIG_IGN)
        say("cleaning up")
        lab.close()
        left = [n for n in ha_lab.sh("ip", "netns", "list").stdout.split() if n.startswith(PREFIX)]
        mounts = [ln.split()[1] for ln in open("/proc/mounts") if ln.split()[1].startswith("/tmp/" + PREFIX)]
        if left or mounts:
            print("  left behind: %s" % " ".join(left + mounts))
            rc = rc or 1
        else:
            print("demo done: everything it started is stopped (processes, namespaces, the bpffs mount)")
    return rc


if __name__ == "__main__":
    sys.exit(main())
