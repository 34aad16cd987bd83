"""Latency histograms on /metrics, the HTML stats page on the admin port,
and the Grafana dashboard's queries held against what /metrics serves.

Real binary, real clients (curl for HTTP/1 and HTTP/2, raw sockets, a
headless Chromium for the page's screenshot), loopback only. Durations are
asserted only from below: a backend that waits 300 ms before answering
cannot produce a request faster than that, whatever the machine's load."""
import html.parser
import json
import os
import re
import shutil
import subprocess


from helpers import admin, free_port, pool_backends, raw_request, wait_for
from metrics_doc import families, samples
from stream_helpers import TcpBackend, tcp_roundtrip

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DASHBOARD = os.path.join(ROOT, "docs", "grafana", "sluice-proxy.json")
STATS_PNG = os.path.join(ROOT, "docs", "img", "stats-page.png")

LE = ["0.0005", "0.001", "0.0025", "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5",
      "10", "30", "+Inf"]
HISTOGRAMS = {
    "sluice_listener_request_duration_seconds": "listener",
    "sluice_listener_connection_duration_seconds": "listener",
    "sluice_pool_upstream_connect_duration_seconds": "pool",
    "sluice_pool_upstream_header_duration_seconds": "pool",
}
DELAY = 0.3  # the slow backend's wait before it answers


def config(aport, pools, listeners, health=None, workers=2, retries=0):
    """pools: {name: [addr]}; listeners: [(name, port, protocol, pool)]."""
    y = "workers: %d\nadmin: { listen: 127.0.0.1:%d }\nlog: { level: warn }\npools:\n" % (workers, aport)
    for name, addrs in pools.items():
        y += "  - name: %s\n    retries: %d\n    passive: { max_fails: 0 }\n    backends: [%s]\n" % (
            name, retries, ", ".join(addrs))
        if health:
            y += "    health_check: { %s }\n" % health
    y += "listeners:\n"
    for name, port, proto, pool in listeners:
        y += "  - name: %s\n    listen: 127.0.0.1:%d\n    protocol: %s\n    pool: %s\n" % (name, port, proto, pool)
    return y


def metrics_text(aport):
    status, raw = admin(aport, "GET", "/metrics")
    assert status == 200
    return raw.decode()


def histogram(text, name, **labels):
    """{"buckets": [(le, count)...], "sum": s, "count": n} of one series,
    checked for the Prometheus histogram form on the way."""
    assert families(text)[name][0] == "histogram", name
    want = set(labels.items())
    got = samples(text)
    buckets = sorted(((dict(k)["le"], v) for (n, k), v in got.items()
                      if n == name + "_bucket" and want <= set(k)), key=lambda b: LE.index(b[0]))
    assert [le for le, _ in buckets] == LE, buckets
    counts = [v for _, v in buckets]
    assert counts == sorted(counts), "buckets are cumulative: %s" % buckets
    sums = [v for (n, k), v in got.items() if n == name + "_sum" and set(k) == want]
    total = [v for (n, k), v in got.items() if n == name + "_count" and set(k) == want]
    assert len(sums) == 1 and len(total) == 1, (sums, total)
    assert total[0] == counts[-1], "_count is the +Inf bucket"
    return {"buckets": dict(buckets), "sum": sums[0], "count": total[0]}


def curl(port, *args):
    r = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code} %{http_version}", *args,
                        "http://127.0.0.1:%d/" % port], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    return r.stdout.split()


def test_http_histograms_time_requests_connects_and_first_bytes(sluice, backends):
    """HTTP/1 and HTTP/2 requests to a backend that waits 300 ms: each is
    one observation of the listener's request time and of the pool's
    first-byte time, none of them under 300 ms; the connect histogram
    counts the new connections the backend saw, and a request refused by
    Sluice itself counts as a request that never reached a backend."""
    (slow,) = backends(1, delay=DELAY)
    port, aport = free_port(), free_port()
    sluice(config(aport, {"app": [slow.address]}, [("web", port, "http", "app")]), wait_ports=[port, aport])

    text = metrics_text(aport)
    for name, label in HISTOGRAMS.items():  # the families are there before any traffic
        assert families(text)[name][0] == "histogram"
    assert histogram(text, "sluice_listener_request_duration_seconds", listener="web")["count"] == 0
    assert histogram(text, "sluice_pool_upstream_header_duration_seconds", pool="app")["count"] == 0

    assert [curl(port) for _ in range(3)] == [["200", "1.1"]] * 3
    assert [curl(port, "--http2-prior-knowledge") for _ in range(2)] == [["200", "2"]] * 2

    text = metrics_text(aport)
    req = histogram(text, "sluice_listener_request_duration_seconds", listener="web")
    head = histogram(text, "sluice_pool_upstream_header_duration_seconds", pool="app")
    conn = histogram(text, "sluice_pool_upstream_connect_duration_seconds", pool="app")
    for h in (req, head):
        assert h["count"] == 5
        assert h["buckets"]["0.25"] == 0, "nothing answered faster than the backend's %.1f s wait" % DELAY
        assert h["sum"] >= 5 * DELAY
    # One connect per TCP connection the backend accepted (keep-alive reuses them).
    assert conn["count"] == len(slow.client_ports()) >= 1
    assert not [k for k in samples(text) if k[0].startswith("sluice_listener_connection_duration")
                and ("listener", "web") in k[1]], "an http listener has no connection-duration series"

    # Sluice's own answer (400 for a malformed head): a request, no backend time.
    assert raw_request(port, b"NOT HTTP AT ALL\r\n\r\n").startswith(b"HTTP/1.1 400 ")
    text = metrics_text(aport)
    assert histogram(text, "sluice_listener_request_duration_seconds", listener="web")["count"] == 6
    assert histogram(text, "sluice_pool_upstream_header_duration_seconds", pool="app")["count"] == 5


def test_tcp_connection_duration_and_connect_time(sluice):
    """A tcp listener: one connection-duration observation per connection,
    one connect per backend connection; no request-duration series."""
    echo = TcpBackend("echo")
    try:
        tport, aport = free_port(), free_port()
        sluice(config(aport, {"echo": [echo.addr]}, [("tcp-in", tport, "tcp", "echo")]), wait_ports=[aport])
        for i in range(3):
            assert tcp_roundtrip(tport, b"x" * (1000 * (i + 1))) == b"x" * (1000 * (i + 1))

        def counts():
            text = metrics_text(aport)
            return (histogram(text, "sluice_listener_connection_duration_seconds", listener="tcp-in")["count"],
                    histogram(text, "sluice_pool_upstream_connect_duration_seconds", pool="echo")["count"])
        wait_for(lambda: counts() == (3, 3), timeout=5)
        assert counts() == (3, 3)
        text = metrics_text(aport)
        assert not [k for k in samples(text) if k[0].startswith("sluice_listener_request_duration_seconds")]
    finally:
        echo.stop()


def test_histograms_survive_a_reload(sluice, backends):
    """Like every counter, the histograms carry over a reload (by listener
    and pool name) instead of going back to zero."""
    (b,) = backends(1)
    port, aport = free_port(), free_port()
    text_cfg = config(aport, {"app": [b.address]}, [("web", port, "http", "app")])
    proxy = sluice(text_cfg, wait_ports=[port, aport])
    for _ in range(4):
        assert curl(port) == ["200", "1.1"]
    before = metrics_text(aport)
    req = histogram(before, "sluice_listener_request_duration_seconds", listener="web")
    head = histogram(before, "sluice_pool_upstream_header_duration_seconds", pool="app")
    assert req["count"] == head["count"] == 4
    proxy.reload(text_cfg.replace("retries: 0", "retries: 2"))
    wait_for(lambda: samples(metrics_text(aport))[("sluice_reloads_total", frozenset())] == 1, timeout=10)
    after = metrics_text(aport)
    assert histogram(after, "sluice_listener_request_duration_seconds", listener="web") == req
    assert histogram(after, "sluice_pool_upstream_header_duration_seconds", pool="app") == head


# ---- the stats page ----

class Cells(html.parser.HTMLParser):
    """The page's tables, each a list of rows of (text, class) cells, and
    its meta refresh."""

    def __init__(self):
        super().__init__()
        self.tables, self.refresh, self.cell = [], None, None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self.cell = ["", a.get("class", "")]
        elif tag == "meta" and a.get("http-equiv") == "refresh":
            self.refresh = a.get("content")

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self.cell is not None:
            self.tables[-1][-1].append((self.cell[0].strip(), self.cell[1]))
            self.cell = None

    def handle_data(self, data):
        if self.cell is not None:
            self.cell[0] += data


def stats_lab(sluice, backends):
    """Two pools: "app" with a live backend and a dead one (health checks
    find it down), "tcp" behind a tcp listener; some traffic."""
    (live,) = backends(1)
    dead = "127.0.0.1:%d" % free_port()
    port, tport, aport = free_port(), free_port(), free_port()
    cfg = config(aport, {"app": [live.address, dead], "tcp": [live.address]},
                 [("web", port, "http", "app"), ("raw-in", tport, "tcp", "tcp")],
                 health="type: http, path: /, interval: 200ms, timeout: 100ms, rise: 1, fall: 1",
                 retries=1)  # the workers learn "down" on their next 100 ms tick: until then, a retry
    sluice(cfg, wait_ports=[port, tport, aport])
    assert wait_for(lambda: pool_backends(aport, "app")[dead]["state"] == "down", timeout=10)
    # The live one has passed a check too (on a loaded machine the dead one's
    # verdict can come first), so its row says how the last check went.
    assert wait_for(lambda: pool_backends(aport, "app")[live.address]["health"]["checks_ok"] > 0, timeout=10)
    for _ in range(6):
        assert curl(port) == ["200", "1.1"]
    return aport, live.address, dead


def test_stats_page_shows_every_listener_pool_and_backend(sluice, backends):
    aport, live, dead = stats_lab(sluice, backends)
    status, body = admin(aport, "GET", "/stats")
    assert status == 200
    page = body.decode()
    assert page.startswith("<!DOCTYPE html>") and "<script" not in page and "http://" not in page
    p = Cells()
    p.feed(page)
    assert p.refresh is None
    listeners, app, tcp = ({row[0][0]: row for row in table} for table in p.tables)
    assert listeners["web"][1][0] == "http" and listeners["raw-in"][1][0] == "tcp"
    assert set(app) == {"backend", live, dead, "total (2)"} and set(tcp) == {"backend", live, "total (1)"}
    # Backend rows: address, then the state cell, coloured by class.
    by_first = app
    assert by_first[live][1] == ("UP", "st UP")
    assert by_first[dead][1] == ("DOWN", "st DOWN")
    col = {name: i for i, (name, _) in enumerate(app["backend"])}
    assert by_first[live][col["requests"]][0] == "6" and by_first[live][col["2xx"]][0] == "6"
    assert by_first[dead][col["requests"]][0] == "0"
    # Latency from the histograms: a number for the live backend, a dash for the dead one.
    assert re.fullmatch(r"\d+\.\d\d (ms|s)", by_first[live][col["responsep50"]][0])
    assert by_first[dead][col["responsep50"]][0] == "\u2013"
    assert re.match(r"down for \d+s: failed: connection refused", by_first[dead][col["health check"]][0])
    assert by_first[live][col["health check"]][0].startswith("up: ok: HTTP 200")  # never changed
    assert "Pool app" in page and "Pool tcp" in page

    # Auto-refresh on request, refused when it makes no sense; other methods are not allowed.
    status, body = admin(aport, "GET", "/stats?refresh=5")
    p = Cells()
    p.feed(body.decode())
    assert status == 200 and p.refresh == "5"
    for bad in ("0", "abc", "99999", "-1", ""):
        status, body = admin(aport, "GET", "/stats?refresh=" + bad)
        assert status == 400 and "refresh" in json.loads(body)["error"], bad
    assert admin(aport, "POST", "/stats", body={})[0] == 405
    assert admin(aport, "GET", "/stats/more")[0] == 404


def png_facts(path):
    """(width, height, distinct colours, the set of colours)."""
    from PIL import Image
    with Image.open(path) as img:
        rgb = img.convert("RGB")
        colours = set(rgb.getdata())
        return rgb.size[0], rgb.size[1], len(colours), colours


def test_stats_page_screenshot_in_a_headless_browser(sluice, backends, tmp_path):
    """Chromium renders /stats: a picture of the size asked for, not blank,
    with the UP (green) and DOWN (red) state cells in it."""
    chromium = shutil.which("chromium")
    assert chromium, "chromium is in scripts/deps.sh"
    aport, live, dead = stats_lab(sluice, backends)
    status, body = admin(aport, "GET", "/stats")
    assert status == 200 and live.encode() in body and dead.encode() in body
    shot = tmp_path / "stats.png"
    r = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                        "--user-data-dir=%s" % (tmp_path / "chromium"), "--screenshot=%s" % shot,
                        "--window-size=1500,560", "http://127.0.0.1:%d/stats" % aport],
                       capture_output=True, text=True, timeout=120, env=dict(os.environ, HOME=str(tmp_path)))
    assert r.returncode == 0 and shot.exists(), r.stderr[-2000:]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    width, height, n_colours, colours = png_facts(shot)
    assert (width, height) == (1500, 560)
    assert n_colours > 50, "a page of text and coloured cells, not a blank one"
    assert (0x7f, 0xd1, 0x7f) in colours, "the UP cell's green"
    assert (0xf0, 0x80, 0x80) in colours, "the DOWN cell's red"
    if os.environ.get("SLUICE_UPDATE_DOCS_IMG"):
        shutil.copy(shot, STATS_PNG)


# ---- the Grafana dashboard ----

def dashboard_exprs():
    doc = json.load(open(DASHBOARD, encoding="utf-8"))
    exprs = []

    def walk(panels):
        for panel in panels:
            walk(panel.get("panels", []))
            for t in panel.get("targets", []):
                exprs.append((panel["title"], t["expr"]))
    walk(doc["panels"])
    return doc, exprs


def family_of(name, served):
    """A histogram's series (_bucket, _sum, _count) belong to its family."""
    for suffix in ("_bucket", "_sum", "_count"):
        base = name[:-len(suffix)] if name.endswith(suffix) else None
        if base and served.get(base, ("",))[0] == "histogram":
            return base
    return name


def test_grafana_dashboard_queries_name_served_metrics(sluice, backends):
    doc, exprs = dashboard_exprs()
    assert doc["title"] and doc["uid"] and doc["schemaVersion"] >= 30
    assert len(exprs) >= 10
    for panel in doc["panels"]:
        if panel.get("type") != "row":
            assert {"x", "y", "w", "h"} <= set(panel["gridPos"]), panel["title"]
    (b,) = backends(1)
    port, tport, aport = free_port(), free_port(), free_port()
    sluice(config(aport, {"app": [b.address]}, [("web", port, "http", "app"), ("raw-in", tport, "tcp", "app")]),
           wait_ports=[port, aport])
    served = families(metrics_text(aport))
    missing = []
    for title, expr in exprs:
        if "histogram_quantile" in expr:
            assert "_bucket" in expr and re.search(r"by \([^)]*\ble\b", expr), (title, expr)
        for name in set(re.findall(r"\b((?:sluice|process)_[a-z0-9_]+)\b", expr)):
            fam = family_of(name, served)
            if fam not in served:
                missing.append((title, name))
    assert not missing, "dashboard queries name metrics /metrics does not serve: %s" % missing
