"""`sluice l4` changed while it runs: services and reals added and removed
through the admin API (and `sluice l4 add-real ...`), the file reloaded on
SIGHUP, `sluice l4 list` with connection counts. Real TCP between network
namespaces (the DR topology of test_l4_netns.py)."""
import json
import re
import signal
import sys

from test_l4_netns import (ADMIN_PORT, NS_C, NS_LB, REALS, SERVER, SLUICE_BIN, TAG, VIP, KeepAlive, L4, get,
                           nsexec, real_of, topo, wait_for)  # noqa: F401 (topo is a fixture)

API_CLIENT = r'''
import json, sys, urllib.error, urllib.request
method, path, body = sys.argv[1], sys.argv[2], sys.argv[3]
req = urllib.request.Request("http://127.0.0.1:%s" % sys.argv[4] + path, method=method,
                             data=body.encode() if body else None)
try:
    with urllib.request.urlopen(req, timeout=5) as r:
        print(r.status); print(r.read().decode())
except urllib.error.HTTPError as e:
    print(e.code); print(e.read().decode())
'''


def api(method, path, body=None):
    """(status, decoded JSON or text) from the LB's admin API."""
    out = nsexec(NS_LB, sys.executable, "-c", API_CLIENT, method, path,
                 body if isinstance(body, str) else json.dumps(body) if body is not None else "",
                 str(ADMIN_PORT)).stdout
    status, _, text = out.partition("\n")
    try:
        return int(status), json.loads(text)
    except ValueError:
        return int(status), text


SVC = "tcp:%s:80" % VIP


def get_port(n, port, timeout=3):
    """n requests to VIP:port, each on a new connection."""
    code = r'''
import http.client, sys
for i in range(int(sys.argv[2])):
    try:
        c = http.client.HTTPConnection(sys.argv[1], int(sys.argv[3]), timeout=%d)
        c.request("GET", "/")
        print(c.getresponse().read().decode().strip(), flush=True)
        c.close()
    except Exception as e:
        print("ERR %%r" %% (e,), flush=True)
''' % timeout
    out = nsexec(NS_C, sys.executable, "-c", code, VIP, str(n), str(port), timeout=n * (timeout + 1) + 10).stdout
    return [line for line in out.splitlines() if line]


def test_l4_api_add_remove_reals_and_services(topo):
    l4 = L4(topo).start()
    status, doc = api("GET", "/api/l4/services")
    assert status == 200, doc
    (svc,) = doc["services"]
    assert svc["name"] == SVC and svc["mode"] == "dr" and svc["loaded"]
    assert [r["address"] for r in svc["reals"]] == ["10.0.0.11:80", "10.0.0.12:80", "10.0.0.13:80"]
    assert all(r["state"] == "up" and r["maglev_slots"] > 0 for r in svc["reals"]), svc

    # Long-lived connections on every real.
    conns = [KeepAlive(topo) for _ in range(9)]
    by_real = {}
    for c in conns:
        b = c.ask()
        assert not b.startswith("ERR"), b
        by_real.setdefault(real_of(b), []).append(c)

    # Remove r2: new flows never reach it; flows on r1 and r3 keep their real
    # (the table swap moves only r2's slots).
    status, doc = api("DELETE", "/api/l4/services/%s/reals/10.0.0.12:80" % SVC)
    assert status == 200 and doc == {"service": SVC, "removed": "10.0.0.12:80"}, doc
    assert wait_for(lambda: re.search(r"weights 10.0.0.11:80=1 10.0.0.13:80=1$", l4.new_log(), re.M), 5)
    bodies = get(24)
    assert bodies and {real_of(b) for b in bodies} == {"r1", "r3"}, bodies
    for name, cs in by_real.items():
        if name != "r2":
            for c in cs:
                assert c.ask() == "%s 10.0.0.2" % name
    status, doc = api("GET", "/api/l4/services/%s" % SVC)
    assert [r["address"] for r in doc["reals"]] == ["10.0.0.11:80", "10.0.0.13:80"], doc

    # Add it back with weight 3 through the CLI verb: it takes flows again.
    out = nsexec(NS_LB, SLUICE_BIN, "l4", "add-real", "-c", str(l4.conf), SVC, "10.0.0.12:80", "3")
    assert out.returncode == 0 and "3 reals" in out.stdout, out
    assert wait_for(lambda: re.search(r"10.0.0.12:80=3$", l4.new_log(), re.M), 5), l4.new_log()
    # Weights 1:3:1: 60 new flows miss r1 or r3 with a chance of 3 in a
    # million (30 missed one about once in a thousand runs).
    bodies = get(60)
    assert {real_of(b) for b in bodies} == {"r1", "r2", "r3"}, bodies
    for name, cs in by_real.items():
        if name != "r2":
            for c in cs:
                assert c.ask() == "%s 10.0.0.2" % name

    # A second service on port 8080 with two reals, added and removed.
    for name, _ in REALS:
        topo.spawn(TAG + name, sys.executable, "-c", SERVER, name, "8080")
    new = {"vip": "%s:8080" % VIP, "mode": "dr", "scheduler": "maglev",
           "reals": ["10.0.0.11:8080", {"address": "10.0.0.13:8080", "weight": 2}]}
    status, doc = api("POST", "/api/l4/services", new)
    assert status == 201, doc
    assert doc["name"] == "tcp:%s:8080" % VIP and [r["weight"] for r in doc["reals"]] == [1, 2], doc
    assert wait_for(lambda: "10.0.0.13:8080=2" in l4.new_log(), 5)
    bodies = get_port(20, 8080)
    assert bodies and {real_of(b) for b in bodies} == {"r1", "r3"}, bodies
    listing = l4.list()
    assert "TCP  10.0.0.100:8080" in listing and "ActConn" in listing, listing
    # ActConn counts the long-lived connections on r1 and r3 (at least).
    m = re.search(r"^TCP  10\.0\.0\.100:80 +maglev +dr +(\d+) +(\d+)", listing, re.M)
    assert m and int(m.group(1)) >= sum(len(cs) for n, cs in by_real.items() if n != "r2"), listing
    status, doc = api("GET", "/api/l4/services/%s" % SVC)
    assert sum(r["active_conns"] for r in doc["reals"]) == int(m.group(1)), doc
    status, doc = api("POST", "/api/l4/services", new)
    assert status == 409 and "exists" in doc["error"], doc
    status, doc = api("DELETE", "/api/l4/services/tcp:%s:8080" % VIP)
    assert status == 200, doc
    # Gone from XDP: the LB's own stack answers (nothing listens there).
    bodies = get_port(3, 8080, timeout=2)
    assert bodies and all(b.startswith("ERR") for b in bodies), bodies
    # Port 80 never noticed.
    for name, cs in by_real.items():
        if name != "r2":
            for c in cs:
                assert c.ask() == "%s 10.0.0.2" % name
    assert l4.stop() == 0


def test_l4_api_rejects_bad_changes(topo):
    l4 = L4(topo).start()
    cases = [
        ("POST", "/api/l4/services", "{not json", 400, "not JSON"),
        ("POST", "/api/l4/services", "[1]", 400, "JSON object"),
        ("POST", "/api/l4/services", {"vip": "10.0.0.100:81", "mode": "sideways"}, 400, "mode"),
        ("POST", "/api/l4/services", {"vip": "10.0.0.100:81", "reals": [{"address": "10.0.0.11", "weight": -1}]},
         400, "reals[0].weight"),
        ("POST", "/api/l4/services", {"vip": "10.0.0.100:81", "bogus": 1}, 400, "bogus"),
        ("POST", "/api/l4/services/%s/reals" % SVC, {"address": "not-an-ip"}, 400, "address"),
        ("POST", "/api/l4/services/%s/reals" % SVC, {"address": "10.0.0.11:80"}, 409, "already"),
        ("DELETE", "/api/l4/services/tcp:10.9.9.9:80", None, 404, "no service"),
        ("DELETE", "/api/l4/services/%s/reals/10.0.0.99:80" % SVC, None, 404, "no real"),
        ("PATCH", "/api/l4/services/%s/reals/10.0.0.11:80" % SVC, {"weight": "x"}, 400, "weight"),
        ("PUT", "/api/l4/services", "{}", 405, "not allowed"),
        ("GET", "/api/l4/nothing", None, 404, "no such path"),
    ]
    for method, path, body, want, words in cases:
        status, doc = api(method, path, body)
        assert status == want and words in doc["error"], (method, path, body, status, doc)
    # Nothing changed.
    status, doc = api("GET", "/api/l4/services")
    assert len(doc["services"]) == 1 and len(doc["services"][0]["reals"]) == 3, doc
    bodies = get(15)
    assert {real_of(b) for b in bodies} == {"r1", "r2", "r3"}, bodies
    # Drain through PATCH on the l4 path: weight 0, state drained.
    status, doc = api("PATCH", "/api/l4/services/%s/reals/10.0.0.13:80" % SVC, {"weight": 0})
    assert status == 200 and doc["weight"] == 0, doc
    assert wait_for(lambda: re.search(r"10.0.0.13:80=0$", l4.new_log(), re.M), 5)
    bodies = get(15)
    assert {real_of(b) for b in bodies} == {"r1", "r2"}, bodies
    assert l4.stop() == 0


def test_l4_sighup_reload(topo):
    l4 = L4(topo).start()
    keep = KeepAlive(topo)
    first = keep.ask()
    assert not first.startswith("ERR"), first
    mine = real_of(first)
    # The file loses one real (not the keep-alive's) and gains a service.
    gone = next(a for n, a in REALS if n != mine)
    text = l4.conf.read_text()
    text = re.sub(r'\s*- \{ address: "%s:80", weight: 1 \}' % re.escape(gone), "", text)
    text += '    - { vip: "%s:8080", mode: dr, reals: ["10.0.0.11:8080"] }\n' % VIP
    l4.conf.write_text(text)
    for name, _ in REALS:
        topo.spawn(TAG + name, sys.executable, "-c", SERVER, name, "8080")
    l4.proc.send_signal(signal.SIGHUP)
    assert wait_for(lambda: "reloaded" in l4.new_log(), 5), l4.new_log()
    bodies = get(24)
    gone_name = next(n for n, a in REALS if a == gone)
    assert bodies and gone_name not in {real_of(b) for b in bodies}, bodies
    assert keep.ask() == first
    bodies = get_port(5, 8080)
    assert bodies and all(real_of(b) == "r1" for b in bodies), bodies
    # A broken file: logged with file, line and key; the running state stays.
    l4.conf.write_text(text.replace("mode: dr", "mode: sideways", 1))
    l4.proc.send_signal(signal.SIGHUP)
    assert wait_for(lambda: "still running the previous configuration" in l4.new_log(), 5), l4.new_log()
    assert re.search(r"l4\.yaml:\d+: l4\.services\[\d\]\.mode", l4.new_log()), l4.new_log()
    assert keep.ask() == first
    assert get_port(2, 8080) and l4.proc.poll() is None
    assert l4.stop() == 0


def test_l4_restart_after_api_changes_keeps_indexes(topo):
    """A real added through the API gets an index of its own; a restart with
    a file that lists it finds the same index in the pinned maps, so its
    established flows stay on it."""
    l4 = L4(topo).start()
    api("DELETE", "/api/l4/services/%s/reals/10.0.0.11:80" % SVC)
    status, doc = api("POST", "/api/l4/services/%s/reals" % SVC, {"address": "10.0.0.11:80"})
    assert status == 201, doc
    idx = {r["address"]: r["index"] for r in doc["reals"]}
    assert len(set(idx.values())) == 3, idx
    assert wait_for(lambda: re.search(r"10.0.0.11:80=1$", l4.new_log(), re.M), 5)
    conns = [KeepAlive(topo) for _ in range(6)]
    first = [c.ask() for c in conns]
    assert not any(b.startswith("ERR") for b in first), first
    assert l4.stop() == 0
    l4.start()
    status, doc = api("GET", "/api/l4/services/%s" % SVC)
    assert {r["address"]: r["index"] for r in doc["reals"]} == idx, doc
    assert [c.ask() for c in conns] == first
    assert l4.stop() == 0
    # Stopped: `sluice l4 list` without -c reads the pinned maps; the reals
    # come from their owner field (weights unknown), with their connections.
    out = nsexec(NS_LB, SLUICE_BIN, "l4", "list", "--pin-dir", topo.bpffs + "/sluice").stdout
    assert "TCP  10.0.0.100:80" in out, out
    rows = re.findall(r"^  -> (10\.0\.0\.1[123]:80) +(\w+) +- +\d+% +(\d+) +(\d+)", out, re.M)
    assert sorted(r[0] for r in rows) == ["10.0.0.11:80", "10.0.0.12:80", "10.0.0.13:80"], out
    assert sum(int(r[2]) for r in rows) >= len(conns), out


def test_l4_schedulers(topo):
    """The same service re-added through the API with each scheduler:
    source-hash sends every connection of a client to one real, wrr spreads
    new connections by weight, rr evenly whatever the weights."""
    l4 = L4(topo).start()
    reals = [{"address": "10.0.0.11:80", "weight": 1}, {"address": "10.0.0.12:80", "weight": 1},
             {"address": "10.0.0.13:80", "weight": 6}]

    def use(scheduler):
        status, doc = api("DELETE", "/api/l4/services/%s" % SVC)
        assert status == 200, doc
        status, doc = api("POST", "/api/l4/services",
                          {"vip": "%s:80" % VIP, "mode": "dr", "scheduler": scheduler, "reals": reals})
        assert status == 201 and doc["scheduler"] == scheduler, doc
        assert wait_for(lambda: re.search(r"10.0.0.13:80=6$", l4.new_log(), re.M), 5)
        bodies = get(48)
        assert len(bodies) == 48 and not any(b.startswith("ERR") for b in bodies), bodies
        return {n: sum(real_of(b) == n for b in bodies) for n, _ in REALS}

    counts = use("source-hash")
    assert sorted(counts.values()) == [0, 0, 48], counts
    counts = use("wrr")
    # Weights 1:1:6 of 48: about 6, 6 and 36; the cursor walks the table,
    # whose slots are shared 1:1:6 but not in a strict cycle.
    assert counts["r3"] >= 24 and counts["r1"] >= 1 and counts["r2"] >= 1, counts
    counts = use("rr")
    assert all(c >= 8 for c in counts.values()), counts
    assert l4.stop() == 0
