"""bench/ha.sh's report: the JSON lines of bench/ha/run.py -> a Markdown
table per series (p50, p99, max), the ratios keepalived / Sluice, and an
SVG strip plot of every failover (--svg FILE).

    python3 bench/ha/report.py results.jsonl [--svg gaps.svg]

Figures of one failover (from tests/integration/ha_traffic.py):
  outage  the new-connection failure window: from the start of the first
          probe connection (one every 3 ms, 0.5 s to complete) that failed
          to the start of the last one that failed; 0 when none failed.
          For Sluice only the flows ECMP sent to the lost node fail (the
          other node's go on); with VRRP all flows go through the master.
  stall   the longest time an established connection (16, one exchange
          every 10-20 ms) went without an answer: the outage as TCP sees
          it, rounded up by its retransmission timer (200 ms at least,
          doubling at each retry).
  broken  established connections that failed (reset, closed, answered by
          another real, or no answer in 5 s; keepalived's: 20 s).
  failed  probe connections that failed.
  down    Sluice: when the first router's BIRD logged its BGP session to
          the node down (BFD; none when the sessions stay up: a drain, or a
          kill -9 of sluice l4 whose BIRD lives on and withdraws).
  moved   Sluice: until both routers' kernels routed every address as
          expected (polled; includes the polling's own time, tens of ms);
          keepalived: until the backup held the VIP. From the event.
Percentiles: linear interpolation between the closest ranks (with 20
runs, p99 lies between the two largest).
"""
import argparse
import json
import math
import sys

# Like against like: a failure nothing announces (power loss, cut link)
# against keepalived's power loss, a drain against its graceful stop. A
# kill -9 has no keepalived counterpart: a killed keepalived moves
# nothing (its VIP stays on the node).
SLUICE_TO_VRRP_EVENT = {"power-loss": "crash", "cut": "crash", "drain": "drain"}
EVENT_NAMES = {"crash": "kill -9", "power-loss": "power loss", "cut": "link cut", "drain": "drain"}


def pct(values, p):
    v = sorted(values)
    if not v:
        return None
    k = (len(v) - 1) * p / 100.0
    lo, hi = math.floor(k), math.ceil(k)
    return v[lo] + (v[hi] - v[lo]) * (k - lo)


def figures(run):
    tr = run["traffic"]
    pr, lg = tr["probes"], tr["long"]
    # A drain's sessions may close after the routes moved (the node
    # stops): not what moved them.
    down = run.get("session_down_ms") or {} if run["event"] != "drain" else {}
    return {"outage": pr["fail_window_ms"] if pr["failed"] else 0.0, "stall": lg["gap_ms"] or 0.0,
            "broken": lg["broken"], "failed": pr["failed"],
            "down": min(down.values()) if down else None,
            "moved": run.get("routes_ms", run.get("takeover_ms"))}


def label(setting, event):
    if setting.startswith("sluice-"):
        return "Sluice BFD %s, %s" % (setting[len("sluice-"):], EVENT_NAMES.get(event, event))
    what = "power loss" if event == "crash" else "graceful stop"
    return "keepalived advert %s s, %s" % (setting[len("vrrp-"):], what)


def load(paths):
    series, errors = {}, {}
    for path in paths:
        for line in open(path):
            line = line.strip()
            if not line.startswith("{"):
                continue
            run = json.loads(line)
            key = (run["setting"], run["event"])
            if "error" in run:
                errors.setdefault(key, []).append(run["error"])
                continue
            series.setdefault(key, []).append(figures(run))
    return series, errors


def order(keys):
    """Sluice's settings (slower BFD first), then keepalived's (slower
    adverts first); events in EVENT_NAMES' order within each."""
    def rank(k):
        setting, event = k
        vrrp = setting.startswith("vrrp-")
        value = setting.split("-", 1)[1]
        value = float(value) if vrrp else float(value.split("x")[0]) * float(value.split("x")[1])
        ev = list(EVENT_NAMES).index(event) if event in EVENT_NAMES else len(EVENT_NAMES)
        return (vrrp, -value, ev)
    return sorted(keys, key=rank)


def fmt(v):
    if v is None:
        return "-"
    return "%.0f" % v if v >= 10 or v == 0 else "%.1f" % v


def table(series, errors):
    out = ["| series | runs | outage p50 / p99 / max ms | stall p50 / p99 / max ms | down p50 ms | moved p50 ms |"
           " broken per failover (total) | failed probes p50 |",
           "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for key in order(set(series) | set(errors)):
        runs = series.get(key, [])
        n_err = len(errors.get(key, []))
        col = lambda name: [r[name] for r in runs]  # noqa: E731
        down = [d for d in col("down") if d is not None]
        moved = [d for d in col("moved") if d is not None]
        broken = col("broken")
        runs_txt = "%d" % len(runs) + (" (+%d failed)" % n_err if n_err else "")
        out.append("| %s | %s | %s / %s / %s | %s / %s / %s | %s | %s | %s (%d) | %s |" % (
            label(*key), runs_txt,
            fmt(pct(col("outage"), 50)), fmt(pct(col("outage"), 99)), fmt(max(col("outage"), default=None)),
            fmt(pct(col("stall"), 50)), fmt(pct(col("stall"), 99)), fmt(max(col("stall"), default=None)),
            fmt(pct(down, 50)), fmt(pct(moved, 50)),
            "%.2f" % (sum(broken) / len(broken)) if broken else "-", sum(broken),
            fmt(pct(col("failed"), 50))))
    return "\n".join(out)


def ratio(a, b):
    if a is None or b is None:
        return "-"
    if b == 0:
        return "∞" if a > 0 else "="
    return "%.1f×" % (a / b)


def ratios(series):
    sluice = [k for k in order(series) if k[0].startswith("sluice-")]
    vrrp = sorted({k[0] for k in series if k[0].startswith("vrrp-")}, key=lambda s: -float(s.split("-")[1]))
    if not sluice or not vrrp:
        return ""
    head = "| Sluice series | " + " | ".join("%s: outage / stall p50" % label(v, "crash").split(",")[0]
                                              for v in vrrp) + " |"
    out = [head, "|---|" + "---:|" * len(vrrp)]
    for key in sluice:
        cells = []
        mine = series[key]
        for v in vrrp:
            other = series.get((v, SLUICE_TO_VRRP_EVENT.get(key[1])))
            if not other:
                cells.append("-" if key[1] in SLUICE_TO_VRRP_EVENT else "none: a killed keepalived moves nothing")
                continue
            cells.append("%s / %s" % (
                ratio(pct([r["outage"] for r in other], 50), pct([r["outage"] for r in mine], 50)),
                ratio(pct([r["stall"] for r in other], 50), pct([r["stall"] for r in mine], 50))))
        out.append("| %s | %s |" % (label(*key), " | ".join(cells)))
    return "\n".join(out)


# ------------------------------------------------------------------ plot --
def svg(series, path, title):
    keys = order(series)
    row_h, top, left, panel_w, gap_w = 22, 58, 250, 330, 40
    height = top + row_h * len(keys) + 50
    width = left + 2 * panel_w + gap_w + 20
    lo, hi = 0.0, 4.0                       # log10 ms: 1 ms .. 10 s; 0 ms drawn at the left edge
    zero_x = 14                             # offset of the "0" column inside a panel

    def x_of(panel_x, ms):
        if ms <= 0:
            return panel_x + zero_x
        lv = min(max(math.log10(ms), lo), hi)
        return panel_x + zero_x + 16 + (lv - lo) / (hi - lo) * (panel_w - zero_x - 26)

    s = ['<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="11">'
         % (width, height), '<rect width="100%" height="100%" fill="white"/>',
         '<text x="10" y="18" font-size="13" font-weight="bold">%s</text>' % title,
         '<text x="10" y="34" fill="#555">one dot per failover; bar: median; log scale (0 = nothing lost)</text>']
    for i, (name, field) in enumerate((("outage: new connections failing (ms)", "outage"),
                                       ("stall: longest wait of an established connection (ms)", "stall"))):
        px = left + i * (panel_w + gap_w)
        s.append('<text x="%d" y="%d" font-weight="bold">%s</text>' % (px, top - 8, name))
        for ms, txt in ((0, "0"), (1, "1"), (10, "10"), (100, "100"), (1000, "1 s"), (10000, "10 s")):
            x = x_of(px, ms)
            s.append('<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#ddd"/>'
                     % (x, top, x, top + row_h * len(keys)))
            s.append('<text x="%.1f" y="%d" text-anchor="middle" fill="#555">%s</text>' % (
                x, top + row_h * len(keys) + 14, txt))
        x200 = x_of(px, 200)
        s.append('<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#c44" stroke-dasharray="3,3"/>' % (
            x200, top, x200, top + row_h * len(keys)))
        if field == "stall":
            s.append('<text x="%.1f" y="%d" fill="#c44" text-anchor="middle">TCP min RTO 200 ms</text>' % (
                x200, top + row_h * len(keys) + 28))
        for r, key in enumerate(keys):
            y = top + r * row_h + row_h / 2
            color = "#1f6fb4" if key[0].startswith("sluice-") else "#e07b18"
            if i == 0:
                s.append('<text x="%d" y="%.1f" text-anchor="end" dominant-baseline="middle">%s</text>' % (
                    left - 10, y, label(*key)))
            if r % 2 == 0:
                s.append('<rect x="%d" y="%.1f" width="%d" height="%d" fill="#f4f4f4" opacity="0.6"/>' % (
                    px, y - row_h / 2, panel_w, row_h))
            vals = [run[field] for run in series[key]]
            for j, v in enumerate(vals):
                jitter = ((j * 7) % 9 - 4) * 1.2
                s.append('<circle cx="%.1f" cy="%.1f" r="3" fill="%s" fill-opacity="0.55"/>' % (
                    x_of(px, v), y + jitter, color))
            med = pct(vals, 50)
            if med is not None:
                xm = x_of(px, med)
                s.append('<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="black" stroke-width="2"/>' % (
                    xm, y - 8, xm, y + 8))
    s.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(s) + "\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("results", nargs="+")
    ap.add_argument("--svg")
    ap.add_argument("--title", default="HA failover in the lab")
    args = ap.parse_args()
    series, errors = load(args.results)
    if not series and not errors:
        sys.exit("report: no results in %s" % " ".join(args.results))
    print(table(series, errors))
    r = ratios(series)
    if r:
        print()
        print("keepalived's p50 / Sluice's p50 (how many times longer keepalived's gap is; a Sluice")
        print("power loss or link cut is set against keepalived's power loss, a drain against its")
        print("graceful stop; ∞: Sluice's median is 0, =: both are 0):")
        print()
        print(r)
    for key, errs in sorted(errors.items()):
        print("\n%s: %d failovers failed, first: %s" % (label(*key), len(errs), errs[0][:300]))
    if args.svg:
        svg(series, args.svg, args.title)
    if errors:
        sys.exit(1)


if __name__ == "__main__":
    main()
