"""bench/ha.sh's driver: failovers under traffic in the HA lab
(tests/integration/ha_lab.py), repeated, one JSON line per failover.

    python3 bench/ha/run.py --bfd 100x3 --events crash,power-loss,drain \
        --vrrp 1,0.1 --vrrp-events crash,drain --repeat 20 --out FILE

One lab for the whole call (the BFD setting is the routers' and the LB
nodes' BIRD configuration, fixed when the lab is built). Rounds: each
round runs every series once (Sluice's events, then keepalived's per
advert interval), so slow drift on the machine hits every series alike.

Sluice's series are ha_lab.run_event (the lab's own event code). Those of
keepalived: ha_lab.run_vrrp_crash for a crash (a power loss of the master:
a killed keepalived would leave its VIP in place) and, for a drain,
run_vrrp_drain below: keepalived on the master stops gracefully (SIGTERM:
it sends a priority-0 advert and removes the VIP), then, once the backup
holds the VIP, the master's forwarder is stopped and taken off -- what
lab.drain does to a Sluice node once the routers have moved its flows.

Every line: {"setting", "event", "round", ...the lab's figures...} or, for
a failover that raised, {"setting", "event", "round", "error"} (the lab is
healed and the run goes on; a heal that fails ends it). SIGTERM and
Ctrl-C end it with the lab removed (the lab's context manager).
"""
import argparse
import json
import os
import signal
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
import ha_lab  # noqa: E402
import ha_traffic  # noqa: E402

SLUICE_EVENTS = ("crash", "power-loss", "cut", "drain")
VRRP_EVENTS = ("crash", "drain")


def run_vrrp_drain(lab, advert, settle=1.0, after=3.0):
    """keepalived VRRP on a1 (master) and a2 moving VIP_VRRP; a1 is drained
    under traffic: keepalived stops (SIGTERM), a2 takes the VIP, then a1's
    forwarder stops and is taken off. The same figures as
    ha_lab.run_vrrp_crash."""
    lab.start_keepalived(("a1", "a2"), advert_int=advert)
    if not ha_lab.wait_for(lambda: lab.vrrp_master() == "a1", 15):
        raise RuntimeError("no VRRP master a1: " + lab.read("a1", "keepalived.log")[-2000:])
    for r in ha_lab.ROUTERS:   # as run_vrrp_crash: no neighbour entry left from the start-up
        ha_lab.nsexec(lab.ns(r), "ip", "neigh", "flush", "to", ha_lab.VIP_VRRP, check=False)
    t = ha_traffic.Traffic(lab, ha_lab.VIP_VRRP, duration=60, timeout=20).start()
    try:
        time.sleep(settle)
        # SIGTERM without waiting for keepalived to exit (that takes about a
        # second, after its priority-0 advert): the takeover is timed.
        lab.event_at = t0 = time.time()
        lab.procs[("keepalived", "a1")].send_signal(signal.SIGTERM)
        ha_lab.wait_for(lambda: lab.vrrp_master() == "a2", 15, step=0.01)
        takeover_ms = (time.time() - t0) * 1000
        lab.stop_keepalived("a1")
        lab.stop_proc(("l4", "a1"))
        lab.detach("a1")
        time.sleep(after)
    finally:
        result = t.stop()
    master = lab.vrrp_master()
    lab.heal()
    return {"event": "vrrp-drain", "advert_int": advert, "takeover_ms": round(takeover_ms, 1),
            "master_after": master, "traffic": result}


def one(lab, setting, event, rnd, fn):
    started = time.time()
    try:
        figures = fn()
    except Exception as e:  # a failover that did not happen as it should: recorded, not hidden
        figures = {"error": "%s: %s" % (type(e).__name__, str(e)[:2000])}
        print("# %s %s round %d failed: %s" % (setting, event, rnd, figures["error"][:300]), file=sys.stderr)
        lab.heal()
    figures.update(setting=setting, event=event, round=rnd, wall_s=round(time.time() - started, 1),
                   loadavg=float(open("/proc/loadavg").read().split()[0]))
    return figures


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--prefix", default="s12h-")
    ap.add_argument("--bfd", default="100x3", help="BFD interval (ms) x multiplier of the lab's sessions")
    ap.add_argument("--events", default="crash,power-loss,drain", help="Sluice's events (none: '')")
    ap.add_argument("--vrrp", default="", help="keepalived advert intervals, e.g. 1,0.1 (none: '')")
    ap.add_argument("--vrrp-events", default="crash,drain")
    ap.add_argument("--node", default="a1")
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--out", required=True, help="JSON lines are appended here")
    args = ap.parse_args()
    why = ha_lab.have_tools()
    if why:
        sys.exit("ha bench: " + why)
    interval, mult = (int(x) for x in args.bfd.split("x"))
    events = [e for e in args.events.split(",") if e]
    vrrp_events = [e for e in args.vrrp_events.split(",") if e]
    adverts = [a for a in args.vrrp.split(",") if a]
    for e in events:
        if e not in SLUICE_EVENTS:
            sys.exit("ha bench: unknown event %r (%s)" % (e, ", ".join(SLUICE_EVENTS)))
    for e in vrrp_events:
        if e not in VRRP_EVENTS:
            sys.exit("ha bench: unknown keepalived event %r (%s)" % (e, ", ".join(VRRP_EVENTS)))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("ha bench: terminated"))
    setting = "sluice-%s" % args.bfd
    vip = ha_lab.VIP_DR
    with open(args.out, "a") as out, \
            ha_lab.Lab(prefix=args.prefix, bfd=(interval, mult),
                       log=lambda m: print("# " + m, file=sys.stderr)) as lab:
        t0 = time.time()
        lab.build()
        ha_lab.wait_for(lab.sessions_established, 20)
        print("# lab built in %.1f s (BFD %s)" % (time.time() - t0, args.bfd),
              file=sys.stderr, flush=True)

        def emit(figures):
            out.write(json.dumps(figures) + "\n")
            out.flush()
            tr = figures.get("traffic")
            brief = ha_traffic.summary(tr) if tr else figures.get("error", "")[:200]
            print("# %-16s %-10s round %2d: %s" % (figures["setting"], figures["event"], figures["round"], brief),
                  file=sys.stderr, flush=True)

        for rnd in range(1, args.repeat + 1):
            for e in events:
                emit(one(lab, setting, e, rnd, lambda e=e: ha_lab.run_event(lab, e, args.node, vip)))
            for a in adverts:
                for e in vrrp_events:
                    fn = (lambda a=a: ha_lab.run_vrrp_crash(lab, a)) if e == "crash" else \
                        (lambda a=a: run_vrrp_drain(lab, a))
                    emit(one(lab, "vrrp-%s" % a, e, rnd, fn))


if __name__ == "__main__":
    main()
