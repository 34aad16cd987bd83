#!/usr/bin/env python3
"""Draw docs/img/dashboard.png and docs/img/stats-page.png from a real run.

Grafana is not packaged for Debian, so this is not a Grafana screenshot: it
is a rendering of the panels of docs/grafana/sluice-proxy.json, laid out by
their gridPos, each series computed from the panel's own PromQL query (the
few shapes the dashboard uses: rate, sum/count/min by, histogram_quantile,
a ratio) over /metrics scraped once a second from a running proxy under wrk
load. A query whose metric the proxy does not serve is drawn as "no data".

The run: build/sluice with two http listeners ("web" -> pool "app", three
backends of different speeds, one answering 5xx now and then; "api" ->
pool "api", two backends), wrk on each listener; a third of the way in one
"api" backend stops (its health checks fail: DOWN), two thirds in an "app"
backend is drained through the API and the configuration reloaded. At the
end Chromium screenshots /stats.

    /usr/bin/python3 docs/grafana/render.py [--seconds 60] [--sluice build/sluice]

Needs python3-matplotlib, wrk and chromium (scripts/deps.sh).
"""
import argparse
import http.server
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DASHBOARD = os.path.join(ROOT, "docs", "grafana", "sluice-proxy.json")
RATE_WINDOW = 5.0  # seconds: what $__rate_interval stands for here


# ---------------------------------------------------------------- the lab

class Backend:
    """A threaded HTTP/1.1 server answering after a random (exponential)
    wait with mean `mean_ms`; a share `errors` of its answers are 503."""

    def __init__(self, mean_ms, errors=0.0):
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # One segment per answer: headers and body written apart would
            # meet Nagle and the proxy's delayed ACK (40 ms a response).
            wbufsize = 1 << 16
            disable_nagle_algorithm = True

            def do_GET(self):
                time.sleep(random.expovariate(1000.0 / outer.mean_ms))
                status = 503 if random.random() < outer.errors else 200
                body = b"ok\n" if status == 200 else b"busy\n"
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                self.wfile.flush()

            def handle(self):
                try:
                    super().handle()
                except (BrokenPipeError, ConnectionResetError):
                    pass  # wrk hung up at the end of its run

            def log_message(self, *a):
                pass

        self.mean_ms, self.errors = mean_ms, errors
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.addr = "127.0.0.1:%d" % self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url, method="GET", body=None):
    req = urllib.request.Request(url, method=method, data=body)
    with urllib.request.urlopen(req, timeout=5) as r:
        return r.read().decode()


def wait_up(url, timeout=10):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            return get(url)
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("no answer from " + url)


def lab_config(aport, web, api, app_backends, api_backends):
    hc = "    health_check: { type: http, path: /, interval: 500ms, timeout: 450ms, rise: 2, fall: 3 }\n"
    return ("workers: 2\nadmin: { listen: 127.0.0.1:%d }\nlog: { level: error }\npools:\n"
            "  - name: app\n    algorithm: least_conn\n    backends: [%s]\n%s"
            "  - name: api\n    backends: [%s]\n%s"
            "listeners:\n"
            "  - name: web\n    listen: 127.0.0.1:%d\n    pool: app\n"
            "  - name: api\n    listen: 127.0.0.1:%d\n    pool: api\n"
            % (aport, ", ".join(b.addr for b in app_backends), hc, ", ".join(b.addr for b in api_backends), hc,
               web, api))


# ---------------------------------------------------------------- /metrics

SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$')
LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def parse_metrics(text):
    """{name: [(labels dict, value)]}"""
    out = {}
    for line in text.splitlines():
        m = SAMPLE.match(line)
        if m:
            labels = dict(LABEL.findall(m.group(2) or ""))
            labels["instance"] = "sluice"
            out.setdefault(m.group(1), []).append((labels, float(m.group(3))))
    return out


# ---------------------------------------------------------------- PromQL, the dashboard's shapes

def key_of(labels, by):
    return tuple((k, labels.get(k, "")) for k in by)


def selector_filter(samples, sel):
    """Only {instance=~"$instance"} and plain equalities appear; every
    series here is of the one instance."""
    want = dict((k, v) for k, v in LABEL.findall(sel or "") if k != "instance")
    return [(l, v) for l, v in samples if all(l.get(k) == v for k, v in want.items())]


def instant(snap, metric, sel):
    return selector_filter(snap.get(metric, []), sel)


def rate(snaps, i, metric, sel, window=RATE_WINDOW):
    """Per-second increase over the window ending at snapshot i, per series."""
    t1, now = snaps[i]
    j = i
    while j > 0 and t1 - snaps[j - 1][0] <= window + 0.01:
        j -= 1
    if j == i:
        return None
    t0, before = snaps[j]
    old = {tuple(sorted(l.items())): v for l, v in instant(before, metric, sel)}
    out = []
    for l, v in instant(now, metric, sel):
        prev = old.get(tuple(sorted(l.items())))
        if prev is not None:
            out.append((l, max(v - prev, 0.0) / (t1 - t0)))
    return out


def group(series, by, agg):
    groups = {}
    for l, v in series:
        groups.setdefault(key_of(l, by), []).append(v)
    return {k: agg(vs) for k, vs in groups.items()}


def histogram_quantile(phi, buckets):
    """PromQL's algorithm on [(le, cumulative count)]."""
    buckets = sorted(buckets, key=lambda b: float("inf") if b[0] == "+Inf" else float(b[0]))
    total = buckets[-1][1]
    if total <= 0:
        return None
    rank = phi * total
    prev_le, prev_count = 0.0, 0.0
    for le, count in buckets:
        if count >= rank:
            if le == "+Inf":
                return prev_le
            le = float(le)
            if count == prev_count:
                return le
            return prev_le + (le - prev_le) * (rank - prev_count) / (count - prev_count)
        prev_le, prev_count = (float(le) if le != "+Inf" else prev_le), count
    return prev_le


BY = r"(\w+) by \(([\w, ]*)\)"
SHAPES = [
    ("quantile", re.compile(r"^histogram_quantile\(([\d.]+), sum by \(([\w, ]*)\) \(rate\((\w+)(\{[^}]*\})?\[[^\]]+\]\)\)\)$")),
    ("ratio", re.compile(r"^sum by \(([\w, ]*)\) \(rate\((\w+)(\{[^}]*\})?\[[^\]]+\]\)\) / "
                         r"sum by \(([\w, ]*)\) \(rate\((\w+)(\{[^}]*\})?\[[^\]]+\]\)\)$")),
    ("agg_rate", re.compile(r"^" + BY + r" \(rate\((\w+)(\{[^}]*\})?\[[^\]]+\]\)\)$")),
    ("count_eq0", re.compile(r"^count by \(([\w, ]*)\) \((\w+)(\{[^}]*\})? == 0\)$")),
    ("agg", re.compile(r"^" + BY + r" \((\w+)(\{[^}]*\})?\)$")),
    ("plain_agg", re.compile(r"^(min|max|sum)\((\w+)(\{[^}]*\})?\)$")),
    ("sum_increase", re.compile(r"^sum\(increase\((\w+)(\{[^}]*\})?\[[^\]]+\]\)\)$")),
]
AGG = {"sum": sum, "min": min, "max": max, "count": len}


def evaluate(expr, snaps, i):
    """{group key: value} of expr at snapshot i; None when the metric is
    not served at all (the panel says "no data")."""
    for shape, rx in SHAPES:
        m = rx.match(expr)
        if not m:
            continue
        g = m.groups()
        if shape == "quantile":
            phi, by, metric, sel = float(g[0]), [s.strip() for s in g[1].split(",")], g[2], g[3]
            if metric not in snaps[i][1]:
                return None
            r = rate(snaps, i, metric, sel) or []
            keep = [b for b in by if b != "le"]
            per = {}
            for l, v in r:
                per.setdefault(key_of(l, keep), {}).setdefault(l["le"], 0.0)
                per[key_of(l, keep)][l["le"]] += v
            out = {}
            for k, bs in per.items():
                q = histogram_quantile(phi, list(bs.items()))
                if q is not None:
                    out[k] = q
            return out
        if shape == "ratio":
            by = [s.strip() for s in g[0].split(",")]
            if g[1] not in snaps[i][1]:
                return None
            num = group(rate(snaps, i, g[1], g[2]) or [], by, sum)
            den = group(rate(snaps, i, g[4], g[5]) or [], by, sum)
            return {k: num[k] / den[k] for k in num if den.get(k)}
        if shape == "agg_rate":
            agg, by, metric, sel = g[0], [s.strip() for s in g[1].split(",")], g[2], g[3]
            if metric not in snaps[i][1]:
                return None
            return group(rate(snaps, i, metric, sel) or [], by, AGG[agg])
        if shape == "count_eq0":
            by, metric, sel = [s.strip() for s in g[0].split(",")], g[1], g[2]
            if metric not in snaps[i][1]:
                return None
            series = instant(snaps[i][1], metric, sel)
            out = {k: 0.0 for k in group(series, by, len)}  # Prometheus would show no point; 0 reads better
            out.update(group([(l, v) for l, v in series if v == 0], by, len))
            return out
        if shape == "agg":
            agg, by, metric, sel = g[0], [s.strip() for s in g[1].split(",")], g[2], g[3]
            if metric not in snaps[i][1]:
                return None
            return group(instant(snaps[i][1], metric, sel), by, AGG[agg])
        if shape == "plain_agg":
            if g[1] not in snaps[i][1]:
                return None
            vals = [v for _, v in instant(snaps[i][1], g[1], g[2])]
            return {(): AGG[g[0]](vals)} if vals else {}
        if shape == "sum_increase":
            if g[0] not in snaps[i][1]:
                return None
            first = {tuple(sorted(l.items())): v for l, v in instant(snaps[0][1], g[0], g[1])}
            return {(): sum(v - first.get(tuple(sorted(l.items())), 0.0) for l, v in instant(snaps[i][1], g[0], g[1]))}
    raise ValueError("render.py does not know this query's shape: " + expr)


def legend(fmt, key):
    labels = dict(key)
    return re.sub(r"\{\{(\w+)\}\}", lambda m: labels.get(m.group(1), ""), fmt).strip()


# ---------------------------------------------------------------- drawing

UNITS = {"s": ("seconds", lambda v: v), "reqps": ("req/s", lambda v: v), "ops": ("/s", lambda v: v),
         "bytes": ("MiB", lambda v: v / 1048576.0), "percentunit": ("cores", lambda v: v), "short": ("", lambda v: v)}


def draw(doc, snaps, events, out_png):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    row_h = 0.36  # inches per grid row (Grafana: 30 px); 24 columns across
    rows = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in doc["panels"])
    width = 18.0
    height = rows * row_h + 0.6
    fig = plt.figure(figsize=(width, height), dpi=90, facecolor="#f4f5f8")
    fig.text(0.01, 1 - 0.25 / height, "%s  \u2014  rendering of the dashboard's panels from a live proxy "
             "(not a Grafana screenshot)" % doc["title"], fontsize=13, weight="bold", va="center")
    t0 = snaps[0][0]
    times = [t - t0 for t, _ in snaps]

    def box(gp, pad=0.06):
        x = gp["x"] / 24.0
        w = gp["w"] / 24.0
        top = 1 - (0.5 + gp["y"] * row_h) / height
        h = gp["h"] * row_h / height
        return [x + pad * w / 3 + 0.012, top - h + 0.42 / height, w - pad * w / 1.5 - 0.02, h - 0.75 / height]

    for p in doc["panels"]:
        gp = p["gridPos"]
        if p["type"] == "row":
            fig.text(0.01, 1 - (0.5 + gp["y"] * row_h + row_h / 2) / height, p["title"], fontsize=12,
                     weight="bold", color="#333", va="center")
            continue
        ax = fig.add_axes(box(gp))
        ax.set_title(p["title"], fontsize=10, loc="left")
        unit = p["fieldConfig"]["defaults"].get("unit", "short")
        uname, conv = UNITS.get(unit, ("", lambda v: v))
        if unit == "s":
            uname, conv = "ms", lambda v: v * 1000.0
        missing = []
        if p["type"] == "stat":
            texts = []
            for t in p["targets"]:
                vals = evaluate(t["expr"], snaps, len(snaps) - 1)
                if vals is None:
                    missing.append(re.findall(r"\b(?:sluice|process)_\w+", t["expr"])[0])
                    continue
                for k, v in vals.items():
                    texts.append("%s: %g" % (legend(t["legendFormat"], k), v))
            ax.axis("off")
            ax.text(0.5, 0.55, "\n".join(texts) or "no data", ha="center", va="center", fontsize=11,
                    bbox=dict(facecolor="#7fd17f" if texts else "#dddddd", edgecolor="none", pad=8))
        else:
            lines = {}
            for t in p["targets"]:
                for i in range(len(snaps)):
                    vals = evaluate(t["expr"], snaps, i)
                    if vals is None:
                        missing.append(re.findall(r"\b(?:sluice|process)_\w+", t["expr"])[0])
                        break
                    for k, v in vals.items():
                        lines.setdefault(legend(t["legendFormat"], k), {})[i] = conv(v)
            for name, pts in sorted(lines.items()):
                xs = [times[i] for i in sorted(pts)]
                ys = [pts[i] for i in sorted(pts)]
                ax.plot(xs, ys, linewidth=1.2, label=name)
            for at, what in events:
                ax.axvline(at - t0, color="#999", linestyle=":", linewidth=0.8)
            ax.set_ylabel(uname, fontsize=8)
            ax.tick_params(labelsize=7)
            ax.grid(True, alpha=0.3)
            ax.set_xlim(0, times[-1])
            if lines:
                ax.legend(fontsize=6.5, loc="upper left", ncol=2, framealpha=0.7)
            else:
                ax.text(0.5, 0.5, "no data", transform=ax.transAxes, ha="center", va="center", color="#888")
        if missing:
            ax.text(0.5, 0.12, "not served by this build: " + ", ".join(sorted(set(missing))),
                    transform=ax.transAxes, ha="center", fontsize=7, color="#a33")
    notes = "; ".join("%ds: %s" % (at - t0, what) for at, what in events)
    fig.text(0.01, 0.15 / height, "x axis: seconds of the run. Dotted lines: " + notes, fontsize=8, color="#555")
    fig.savefig(out_png, facecolor=fig.get_facecolor())
    plt.close(fig)


# ---------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=int, default=60)
    ap.add_argument("--sluice", default=os.path.join(ROOT, "build", "sluice"))
    ap.add_argument("--dashboard-png", default=os.path.join(ROOT, "docs", "img", "dashboard.png"))
    ap.add_argument("--stats-png", default=os.path.join(ROOT, "docs", "img", "stats-page.png"))
    args = ap.parse_args()
    doc = json.load(open(DASHBOARD, encoding="utf-8"))
    for p in doc["panels"]:  # fail early on a query this script cannot compute
        for t in p.get("targets", []):
            if not any(rx.match(t["expr"]) for _, rx in SHAPES):
                sys.exit("render.py: unknown query shape in %r: %s" % (p["title"], t["expr"]))

    random.seed(13)
    app = [Backend(3), Backend(12), Backend(25, errors=0.03)]
    api = [Backend(6), Backend(6)]
    web_port, api_port, aport = free_port(), free_port(), free_port()
    tmp = tempfile.mkdtemp(prefix="sluice-render-")
    cfg = os.path.join(tmp, "sluice.yaml")
    open(cfg, "w").write(lab_config(aport, web_port, api_port, app, api))
    proxy = subprocess.Popen([args.sluice, "proxy", "-c", cfg], stdout=open(os.path.join(tmp, "log"), "wb"),
                             stderr=subprocess.STDOUT)
    wrks = []
    try:
        admin = "http://127.0.0.1:%d" % aport
        wait_up(admin + "/metrics")
        time.sleep(1.5)  # health checks: every backend up
        for port, conns in ((web_port, 16), (api_port, 4)):
            wrks.append(subprocess.Popen(["wrk", "-t1", "-c%d" % conns, "-d%ds" % (args.seconds + 2),
                                          "http://127.0.0.1:%d/" % port],
                                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        snaps, events = [], []
        start = time.time()
        stopped = drained = False
        while time.time() - start < args.seconds:
            snaps.append((time.time(), parse_metrics(get(admin + "/metrics"))))
            elapsed = time.time() - start
            if not stopped and elapsed > args.seconds / 3:
                api[1].stop()
                events.append((time.time(), "api backend %s stopped" % api[1].addr))
                stopped = True
            if not drained and elapsed > 2 * args.seconds / 3:
                get("%s/api/pools/app/backends/%s/drain" % (admin, app[2].addr), method="POST", body=b"")
                proxy.send_signal(signal.SIGHUP)
                events.append((time.time(), "app backend %s drained, configuration reloaded" % app[2].addr))
                drained = True
            time.sleep(max(0.0, 1.0 - (time.time() - start) % 1.0))
        draw(doc, snaps, events, args.dashboard_png)
        print("wrote", args.dashboard_png)
        chromium = shutil.which("chromium")
        if chromium:
            subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                            "--user-data-dir=" + os.path.join(tmp, "chromium"),
                            "--screenshot=" + args.stats_png, "--window-size=1500,560", admin + "/stats"],
                           check=True, capture_output=True, timeout=120, env=dict(os.environ, HOME=tmp))
            print("wrote", args.stats_png)
    finally:
        for w in wrks:
            if w.poll() is None:
                w.terminate()
            w.wait()
        proxy.terminate()
        proxy.wait(timeout=30)
        for b in app + [api[0]]:
            b.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
