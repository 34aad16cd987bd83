"""Process lifecycle of `sluice proxy`: reload under load, broken reloads,
SIGTERM drain, worker supervision, access logs, `sluice check` and the
help texts, and a flood of idle connections."""
import json
import os
import re
import signal
import socket
import subprocess
import threading
import time

import pytest

from conftest import SLUICE_BIN
from helpers import admin_json, free_port, fresh_get, pool_backends, wait_for


def children(pid):
    """Pids of the live (not zombie) children of pid."""
    out = []
    try:
        with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
            pids = [int(x) for x in f.read().split()]
    except FileNotFoundError:
        return out
    for c in pids:
        try:
            with open("/proc/%d/stat" % c) as f:
                if f.read().rsplit(")", 1)[1].split()[0] != "Z":
                    out.append(c)
        except FileNotFoundError:
            pass
    return out


def make_config(port, aport, backends, extra_listener="", extra_top="", extra_pool=""):
    """backends: list of (address, weight)."""
    text = "admin: { listen: 127.0.0.1:%d }\n%spools:\n  - name: app\n" % (aport, extra_top)
    if extra_pool:
        text += "    %s\n" % extra_pool
    text += "    backends:\n"
    for addr, w in backends:
        text += "      - address: %s\n        weight: %d\n" % (addr, w)
    text += "listeners:\n  - name: web\n    listen: 127.0.0.1:%d\n    pool: app\n" % port
    if extra_listener:
        text += "".join("    %s\n" % l for l in extra_listener.strip("\n").split("\n"))
    return text


def weights(aport):
    return {a: b["weight"] for a, b in pool_backends(aport, "app").items()}


def status(aport):
    st, doc = admin_json(aport, "GET", "/api/status")
    assert st == 200
    return doc


def worker_pids(aport):
    return sorted(w["pid"] for w in status(aport)["workers"])


# ---------------------------------------------------------------- reload

def test_reload_under_load_loses_nothing(sluice, backends):
    bs = backends(3)
    port, aport = free_port(), free_port()
    a = [b.address for b in bs]
    configs = [
        make_config(port, aport, [(a[0], 1), (a[1], 1)]),
        make_config(port, aport, [(a[0], 1), (a[1], 1), (a[2], 1)]),   # add a backend
        make_config(port, aport, [(a[0], 3), (a[1], 1), (a[2], 1)]),   # change a weight
        make_config(port, aport, [(a[1], 2), (a[2], 1)]),              # remove one
    ]
    s = sluice(configs[0], wait_ports=[port, aport], workers=2)
    first_workers = worker_pids(aport)
    wrk = subprocess.Popen(["wrk", "-t2", "-c32", "-d8s", "http://127.0.0.1:%d/" % port],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        time.sleep(1.5)
        for n, text in enumerate(configs[1:], start=1):
            s.reload(text)
            expect = {addr: w for addr, w in (
                [(a[0], 1), (a[1], 1), (a[2], 1)], [(a[0], 3), (a[1], 1), (a[2], 1)],
                [(a[1], 2), (a[2], 1)])[n - 1]}
            assert wait_for(lambda: weights(aport) == expect, timeout=5), weights(aport)
            assert wait_for(lambda: status(aport)["reloads"] == n, timeout=2)
            time.sleep(1.5)
        out, _ = wrk.communicate(timeout=30)
    finally:
        if wrk.poll() is None:
            wrk.kill()
            wrk.wait()
    out = out.decode()
    assert re.search(r"\d+ requests in", out), out
    assert "Non-2xx" not in out, out
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    assert m is None or all(int(x) == 0 for x in m.groups()), out
    assert int(re.search(r"(\d+) requests in", out).group(1)) > 1000, out
    # The added backend took traffic; the removed one stopped getting it.
    assert bs[2].count() > 100
    log = s.read_log()
    assert log.count("reload done") == 3, log[-3000:]
    assert log.count("previous configuration retired") == 3, log[-3000:]
    # Old workers are gone: exactly the two current ones remain.
    assert wait_for(lambda: sorted(children(s.proc.pid)) == worker_pids(aport), timeout=10), \
        (children(s.proc.pid), worker_pids(aport))
    assert not set(first_workers) & set(worker_pids(aport))
    assert all(fresh_get(port)[0] == 200 for _ in range(6))


BROKEN = """admin: { listen: 127.0.0.1:%d }
pools:
  - name: app
    algorithm: fastest
    backends:
      - address: %s
        weight: -3
listeners:
  - name: web
    listen: 127.0.0.1:%d
    pool: nowhere
"""


def test_reload_with_broken_config_keeps_old(sluice, backends):
    bs = backends(2)
    port, aport = free_port(), free_port()
    s = sluice(make_config(port, aport, [(bs[0].address, 1), (bs[1].address, 1)]),
               wait_ports=[port, aport], workers=2)
    before = worker_pids(aport)
    s.reload(BROKEN % (aport, bs[0].address, port))
    path = str(s.config_path)
    assert wait_for(lambda: "reload aborted" in s.read_log(), timeout=5), s.read_log()
    log = s.read_log()
    assert "%s:4: pools[0].algorithm:" % path in log, log
    assert "%s:7: pools[0].backends[0].weight:" % path in log, log
    assert "%s:11: listeners[0].pool: no pool named \"nowhere\"" % path in log, log
    # Still the old configuration, same workers, traffic as before.
    assert worker_pids(aport) == before
    assert sorted(children(s.proc.pid)) == before
    assert status(aport)["reloads"] == 0
    assert len(pool_backends(aport, "app")) == 2
    seen = set(fresh_get(port)[1]["x-backend"] for _ in range(10))
    assert seen == {"b1", "b2"}
    # A good file afterwards is picked up.
    s.reload(make_config(port, aport, [(bs[0].address, 5)]))
    assert wait_for(lambda: weights(aport) == {bs[0].address: 5}, timeout=5)


def test_reload_with_unbindable_listener_keeps_old(sluice, backends):
    bs = backends(1)
    port, aport = free_port(), free_port()
    s = sluice(make_config(port, aport, [(bs[0].address, 1)]), wait_ports=[port, aport], workers=2)
    before = worker_pids(aport)
    fds_before = len(os.listdir("/proc/%d/fd" % s.proc.pid))
    # A second listener on a port somebody else holds: the reload must fail
    # cleanly, without leaking the sockets it opened on the way.
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen(1)
    taken = blocker.getsockname()[1]
    try:
        for _ in range(3):
            text = make_config(port, aport, [(bs[0].address, 1)])
            text += "  - name: extra\n    listen: 127.0.0.1:%d\n    pool: app\n" % taken
            text = text.replace("  - name: web\n", "  - name: aaa\n    listen: 127.0.0.1:%d\n    pool: app\n"
                                "  - name: web\n" % free_port())
            n = s.read_log().count("reload aborted")
            s.reload(text)
            assert wait_for(lambda: s.read_log().count("reload aborted") == n + 1, timeout=5), s.read_log()
        assert "cannot bind 127.0.0.1:%d" % taken in s.read_log()
        assert worker_pids(aport) == before
        assert fresh_get(port)[0] == 200
        # (<=: an admin connection of ours may have been open before.)
        assert len(os.listdir("/proc/%d/fd" % s.proc.pid)) <= fds_before
    finally:
        blocker.close()


# ---------------------------------------------------------------- stop

def test_sigterm_drains_in_flight_then_exits_0(sluice, backends):
    bs = backends(1)
    bs[0].delay = 1.5
    port, aport = free_port(), free_port()
    s = sluice(make_config(port, aport, [(bs[0].address, 1)]), wait_ports=[port, aport], workers=2)
    result = []
    t = threading.Thread(target=lambda: result.append(fresh_get(port, "/slow", timeout=10)))
    t.start()
    assert wait_for(lambda: bs[0].count() == 1, timeout=3)
    s.proc.send_signal(signal.SIGTERM)

    def refused():
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return False
        except ConnectionRefusedError:
            return True
        except OSError:
            return False
    assert wait_for(refused, timeout=1.0), "new connections still accepted after SIGTERM"
    t.join(5)
    assert result and result[0][0] == 200 and result[0][1]["x-backend"] == "b1", result
    assert s.proc.wait(timeout=10) == 0
    assert "stopped" in s.read_log()


def test_sigterm_with_idle_keepalive_client(sluice, backends):
    """An idle keep-alive client does not hold the stop up for long."""
    import http.client
    bs = backends(1)
    port, aport = free_port(), free_port()
    s = sluice(make_config(port, aport, [(bs[0].address, 1)]), wait_ports=[port, aport])
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    conn.request("GET", "/")
    assert conn.getresponse().read()
    t0 = time.time()
    s.proc.send_signal(signal.SIGTERM)
    assert s.proc.wait(timeout=10) == 0
    assert time.time() - t0 < 5
    conn.close()


# ---------------------------------------------------------------- supervision

def test_killed_worker_is_replaced(sluice, backends):
    bs = backends(2)
    port, aport = free_port(), free_port()
    s = sluice(make_config(port, aport, [(b.address, 1) for b in bs]), wait_ports=[port, aport], workers=2)
    before = worker_pids(aport)
    victim = before[0]
    os.kill(victim, signal.SIGKILL)
    assert wait_for(lambda: "(pid %d) was killed by signal 9" % victim in s.read_log(), timeout=5), s.read_log()
    assert wait_for(lambda: len(worker_pids(aport)) == 2 and victim not in worker_pids(aport)
                    and all(worker_pids(aport)), timeout=5)
    assert status(aport)["worker_restarts"] == 1
    assert sorted(children(s.proc.pid)) == worker_pids(aport)
    ok = sum(fresh_get(port)[0] == 200 for _ in range(40))
    assert ok == 40


def test_crash_looping_worker_backs_off(sluice, backends):
    """Killing a slot's worker over and over must not make the master spin."""
    bs = backends(1)
    port, aport = free_port(), free_port()
    s = sluice(make_config(port, aport, [(bs[0].address, 1)]), wait_ports=[port, aport], workers=1)
    for _ in range(4):
        pid = worker_pids(aport)[0]
        assert pid
        os.kill(pid, signal.SIGKILL)
        assert wait_for(lambda: worker_pids(aport)[0] not in (0, pid), timeout=5), s.read_log()[-2000:]
    assert wait_for(lambda: fresh_get(port)[0] == 200, timeout=5)
    assert status(aport)["worker_restarts"] == 4


# ---------------------------------------------------------------- access log

COMBINED = re.compile(r'^(\S+) - - \[([^\]]+)\] "([^"]*)" (\d{3}) (\d+) "([^"]*)" "([^"]*)"$')


def read_lines(path, n, timeout=2.0):
    def have():
        try:
            lines = open(path).read().splitlines()
        except FileNotFoundError:
            return None
        return lines if len(lines) >= n else None
    lines = wait_for(have, timeout=timeout, interval=0.02)
    assert lines, "access log %s has fewer than %d lines" % (path, n)
    return lines


def test_access_log_combined(sluice, backends, tmp_path):
    bs = backends(1)
    port, aport = free_port(), free_port()
    log = tmp_path / "access.log"
    sluice(make_config(port, aport, [(bs[0].address, 1)], "access_log: %s" % log), wait_ports=[port, aport])
    st, _, body = fresh_get(port, "/hello?x=1", headers={"Referer": "http://ref.example/", "User-Agent": "tester/1.0"})
    assert st == 200
    st2, _, body2 = fresh_get(port, "/status/404", source_ip="127.0.0.7",
                              headers={"User-Agent": 'evil "agent"'})
    assert st2 == 404
    lines = read_lines(log, 2)
    m = COMBINED.match(lines[0])
    assert m, lines[0]
    ip, ts, req, code, size, ref, ua = m.groups()
    assert ip == "127.0.0.1" and req == "GET /hello?x=1 HTTP/1.1" and code == "200"
    assert int(size) == len(body) and ref == "http://ref.example/" and ua == "tester/1.0"
    assert re.match(r"\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d \+0000$", ts), ts
    # The second line: other client, no referer, a quote escaped.
    assert lines[1].startswith("127.0.0.7 - - [")
    assert '"GET /status/404 HTTP/1.1" 404 %d "-" "evil \\"agent\\""' % len(body2) in lines[1], lines[1]


def test_access_log_json(sluice, backends, tmp_path):
    bs = backends(1)
    port, aport = free_port(), free_port()
    log = tmp_path / "access.json"
    sluice(make_config(port, aport, [(bs[0].address, 1)], "access_log: %s\naccess_log_format: json" % log),
           wait_ports=[port, aport])
    for i in range(5):
        # UTF-8 on the wire (http.client would send a str as Latin-1).
        assert fresh_get(port, "/j/%d" % i, headers={"User-Agent": 'ua "q" \\ \u00e9'.encode(),
                                                     "Referer": "r"})[0] == 200
    assert fresh_get(port, "/status/503")[0] == 503
    lines = read_lines(log, 6)
    docs = [json.loads(l) for l in lines]
    assert [d["request"] for d in docs[:5]] == ["GET /j/%d HTTP/1.1" % i for i in range(5)]
    for d in docs[:5]:
        assert d["status"] == 200 and d["client"] == "127.0.0.1" and d["referer"] == "r"
        assert d["upstream"] == bs[0].address and d["listener"] == "web"
        assert d["bytes_sent"] > 0 and d["duration_us"] >= 0
        # Quotes and backslashes escaped; UTF-8 text reads back as itself.
        assert d["user_agent"] == 'ua "q" \\ \u00e9', d["user_agent"]
    assert docs[5]["status"] == 503


# ---------------------------------------------------------------- CLI

def run_cli(*args):
    return subprocess.run([SLUICE_BIN] + list(args), capture_output=True, text=True, timeout=20)


def test_check_valid_file(tmp_path, backends):
    cfg = tmp_path / "ok.yaml"
    cfg.write_text(make_config(free_port(), free_port(), [("127.0.0.1:9001", 1), ("127.0.0.1:9002", 2)]))
    r = run_cli("check", "-c", str(cfg))
    assert r.returncode == 0, r.stderr
    assert "%s: ok" % cfg in r.stdout and "2 backends" in r.stdout
    r = run_cli("check", "-q", "-c", str(cfg))
    assert r.returncode == 0 and r.stdout == ""


def test_check_reports_every_error_with_line(tmp_path):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(
        "workers: 0\n"                        # 1
        "pools:\n"                            # 2
        "  - name: app\n"                     # 3
        "    algoritm: hash\n"                # 4
        "    backends:\n"                     # 5
        "      - address: 127.0.0.1:99999\n"  # 6
        "listeners:\n"                        # 7
        "  - name: web\n"                     # 8
        "    listen: 127.0.0.1:8080\n"        # 9
        "    pool: apps\n")                   # 10
    r = run_cli("check", "-c", str(cfg))
    assert r.returncode == 1
    lines = r.stderr.splitlines()
    f = str(cfg)
    expect = [
        "%s:1: workers: " % f,
        "%s:4: pools[0].algoritm: unknown key" % f,
        "%s:6: pools[0].backends[0].address: " % f,
        "%s:10: listeners[0].pool: no pool named \"apps\"" % f,
    ]
    for e in expect:
        assert any(l.startswith(e) for l in lines), (e, r.stderr)
    assert re.search(r"did you mean \"algorithm\"", r.stderr), r.stderr
    errs = [l for l in lines if re.match(re.escape(f) + r":\d+: \S+: .+", l)]
    assert len(errs) == 4, r.stderr
    assert lines[-1] == "%s: 4 errors" % f


def test_check_missing_file_and_usage(tmp_path):
    r = run_cli("check", "-c", str(tmp_path / "none.yaml"))
    assert r.returncode == 1 and "none.yaml:0: (root): cannot open" in r.stderr
    r = run_cli("check")
    assert r.returncode == 2


def test_help_texts():
    r = run_cli("--help")
    assert r.returncode == 0
    assert "proxy -c FILE" in r.stdout and "check -c FILE" in r.stdout
    r = run_cli("proxy", "--help")
    assert r.returncode == 0
    assert "--workers" in r.stdout and "SIGHUP" in r.stdout and "SIGTERM" in r.stdout
    r = run_cli("check", "--help")
    assert r.returncode == 0 and "FILE:LINE" in r.stdout
    r = run_cli("help", "proxy")
    assert r.returncode == 0 and "--pid-file" in r.stdout
    r = run_cli("frobnicate")
    assert r.returncode == 2 and "unknown command" in r.stderr
    r = run_cli("version")
    assert r.returncode == 0 and r.stdout.startswith("sluice ")


def test_proxy_refuses_broken_config(tmp_path):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("workers: lots\n")
    r = run_cli("proxy", "-c", str(cfg))
    assert r.returncode == 1
    assert "%s:1: workers:" % cfg in r.stderr and "not started" in r.stderr


# ---------------------------------------------------------------- idle flood

def test_idle_flood_is_bounded(sluice, backends):
    bs = backends(1)
    port, aport = free_port(), free_port()
    s = sluice(make_config(port, aport, [(bs[0].address, 1)],
                           "limits: { max_connections: 1000 }\ntimeouts: { client_header: 1s }"),
               wait_ports=[port, aport], workers=2)
    flood = []
    try:
        for _ in range(3000):
            c = socket.socket()
            c.setblocking(False)
            try:
                c.connect(("127.0.0.1", port))
            except BlockingIOError:
                pass
            flood.append(c)
        time.sleep(0.3)
        # A fresh client still gets served while the flood is open.
        t0 = time.time()
        st, _, _ = fresh_get(port, timeout=15)
        assert st == 200
        first = time.time() - t0
        for _ in range(5):
            assert fresh_get(port, timeout=15)[0] == 200
        print("fresh client served after %.2fs" % first)
        assert first < 10, first
        assert s.proc.poll() is None

        # After client_header the silent ones are closed.
        def all_closed():
            open_ = 0
            for c in flood:
                if c.fileno() < 0:
                    continue
                try:
                    d = c.recv(1)
                    if d == b"":
                        c.close()
                    else:
                        open_ += 1
                except BlockingIOError:
                    open_ += 1
                except OSError:
                    c.close()
            return open_ == 0
        assert wait_for(all_closed, timeout=20, interval=0.2)
    finally:
        for c in flood:
            c.close()
    assert fresh_get(port)[0] == 200
    assert "AddressSanitizer" not in s.read_log()


def two_listener_config(port_a, port_b, aport, backend, limit_a):
    return ("admin: { listen: 127.0.0.1:%d }\n"
            "pools:\n  - name: app\n    backends: [%s]\n"
            "listeners:\n"
            "  - name: small\n    listen: 127.0.0.1:%d\n    pool: app\n"
            "    limits: { max_connections: %d }\n"
            "  - name: big\n    listen: 127.0.0.1:%d\n    pool: app\n"
            % (aport, backend, port_a, limit_a, port_b))


def test_connection_limit_is_per_listener(sluice, backends):
    """One listener at its limit must not stop the others from accepting."""
    bs = backends(1)
    pa, pb, aport = free_port(), free_port(), free_port()
    sluice(two_listener_config(pa, pb, aport, bs[0].address, 5), wait_ports=[pb, aport])
    held = [socket.create_connection(("127.0.0.1", pa), timeout=5) for _ in range(5)]
    try:
        time.sleep(0.3)
        waiting = socket.create_connection(("127.0.0.1", pa), timeout=5)   # queued by the kernel
        t0 = time.time()
        for _ in range(3):
            assert fresh_get(pb, timeout=5)[0] == 200
        assert time.time() - t0 < 2
        # When a held connection goes away, the queued one is served.
        held.pop().close()
        waiting.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        waiting.settimeout(5)
        assert waiting.recv(100).startswith(b"HTTP/1.1 200")
        waiting.close()
    finally:
        for c in held:
            c.close()


def test_idle_keepalive_clients_evicted_at_limit(sluice, backends):
    """At the limit, an idle keep-alive client makes room for a new one."""
    import http.client
    bs = backends(1)
    pa, pb, aport = free_port(), free_port(), free_port()
    sluice(two_listener_config(pa, pb, aport, bs[0].address, 4), wait_ports=[pb, aport])
    idle = []
    for _ in range(4):
        c = http.client.HTTPConnection("127.0.0.1", pa, timeout=5)
        c.request("GET", "/")
        assert c.getresponse().read()
        idle.append(c)
    try:
        time.sleep(0.3)
        t0 = time.time()
        for _ in range(3):
            assert fresh_get(pa, timeout=5)[0] == 200
        assert time.time() - t0 < 3
    finally:
        for c in idle:
            c.close()


def metric(aport, name, **labels):
    from helpers import admin
    st, raw = admin(aport, "GET", "/metrics")
    assert st == 200
    want = ",".join('%s="%s"' % kv for kv in sorted(labels.items()))
    for line in raw.decode().splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            lab = line[len(name):].split(" ")[0].strip("{}")
            if all(('%s="%s"' % kv) in lab for kv in labels.items()):
                return float(line.rsplit(" ", 1)[1])
    raise AssertionError("no %s{%s} in /metrics" % (name, want))


def test_reload_keeps_runtime_state(sluice, backends):
    bs = backends(2)
    dead = "127.0.0.1:%d" % free_port()
    port, aport = free_port(), free_port()
    hc = "health_check: { type: tcp, interval: 100ms, timeout: 100ms, rise: 2, fall: 1 }"
    text = make_config(port, aport, [(bs[0].address, 1), (bs[1].address, 1), (dead, 1)], extra_pool=hc)
    s = sluice(text, wait_ports=[port, aport], workers=2)
    assert wait_for(lambda: pool_backends(aport, "app")[dead]["state"] == "down", timeout=3)
    assert admin_json(aport, "PATCH", "/api/pools/app/backends/%s" % bs[0].address, {"weight": 4})[0] == 200
    assert admin_json(aport, "POST", "/api/pools/app/backends/%s/disable" % bs[1].address)[0] == 200
    time.sleep(0.5)
    assert all(fresh_get(port)[1]["x-backend"] == "b1" for _ in range(10))
    requests_before = pool_backends(aport, "app")[bs[0].address]["counters"]["requests"]
    listener_before = metric(aport, "sluice_listener_requests_total", listener="web")
    assert listener_before >= 10

    s.reload(text)   # the same file
    assert wait_for(lambda: status(aport)["reloads"] == 1, timeout=5)
    info = pool_backends(aport, "app")
    assert info[bs[0].address]["weight"] == 4            # API change kept: the file did not change it
    assert info[bs[1].address]["admin"] == "disabled"
    assert info[dead]["state"] == "down"                 # no traffic to it while checks restart
    assert info[bs[0].address]["counters"]["requests"] >= requests_before
    assert metric(aport, "sluice_listener_requests_total", listener="web") >= listener_before
    assert all(fresh_get(port)[1]["x-backend"] == "b1" for _ in range(10))
    assert pool_backends(aport, "app")[dead]["counters"]["connect_failures"] == 0

    # A new weight in the file wins over the API's.
    s.reload(make_config(port, aport, [(bs[0].address, 7), (bs[1].address, 1), (dead, 1)], extra_pool=hc))
    assert wait_for(lambda: pool_backends(aport, "app")[bs[0].address]["weight"] == 7, timeout=5)


def test_reload_removes_and_adds_listeners(sluice, backends):
    bs = backends(1)
    bs[0].delay = 0.0
    port, gone, added, aport = free_port(), free_port(), free_port(), free_port()
    base = make_config(port, aport, [(bs[0].address, 1)])
    s = sluice(base + "  - name: gone\n    listen: 127.0.0.1:%d\n    pool: app\n" % gone,
               wait_ports=[port, gone, aport], workers=2)
    # A slow request keeps the old generation draining for a while.
    bs[0].delay = 2.0
    result = []
    t = threading.Thread(target=lambda: result.append(fresh_get(port, "/slow", timeout=10)))
    t.start()
    assert wait_for(lambda: bs[0].count() == 1, timeout=3)
    s.reload(base + "  - name: added\n    listen: 127.0.0.1:%d\n    pool: app\n" % added)
    assert wait_for(lambda: status(aport)["reloads"] == 1, timeout=5)
    bs[0].delay = 0.0

    def refused(p):
        try:
            socket.create_connection(("127.0.0.1", p), timeout=0.5).close()
            return False
        except ConnectionRefusedError:
            return True
        except OSError:
            return False
    # The removed listener refuses at once, although old workers still run.
    assert wait_for(lambda: refused(gone), timeout=1.0)
    assert fresh_get(added)[0] == 200
    assert fresh_get(port)[0] == 200
    t.join(5)
    assert result and result[0][0] == 200


def test_pid_file_and_sigint(sluice, backends, tmp_path):
    bs = backends(1)
    port, aport = free_port(), free_port()
    pid_file = tmp_path / "sluice.pid"
    s = sluice(make_config(port, aport, [(bs[0].address, 1)]), wait_ports=[port, aport],
               extra_args=["--pid-file", str(pid_file)])
    assert int(pid_file.read_text()) == s.proc.pid
    s.proc.send_signal(signal.SIGINT)
    assert s.proc.wait(timeout=10) == 0
    assert not pid_file.exists()


def test_drain_timeout_bounds_a_held_connection(sluice, backends):
    """drain_timeout: a request still in flight when it runs out is closed
    and the process exits (the default would hold it for 30 s)."""
    bs = backends(1)
    bs[0].delay = 20
    port, aport = free_port(), free_port()
    s = sluice(make_config(port, aport, [(bs[0].address, 1)], extra_top="drain_timeout: 1s\n"),
               wait_ports=[port, aport])
    result = []

    def slow():
        try:
            result.append(fresh_get(port, "/slow", timeout=25))
        except OSError as e:     # the expected end: closed without an answer
            result.append(e)
    t = threading.Thread(target=slow)
    t.start()
    assert wait_for(lambda: bs[0].count() == 1, timeout=3)
    s.proc.send_signal(signal.SIGTERM)
    assert s.proc.wait(timeout=15) == 0
    assert "drain timeout, closing 1 connection" in s.read_log(), s.read_log()
    t.join(25)
    assert result and isinstance(result[0], OSError), result


def test_reload_moves_admin_listen(sluice, backends):
    bs = backends(1)
    port, aport, aport2 = free_port(), free_port(), free_port()
    s = sluice(make_config(port, aport, [(bs[0].address, 1)]), wait_ports=[port, aport])
    s.reload(make_config(port, aport2, [(bs[0].address, 1)]))

    def answers(p):
        try:
            return admin_json(p, "GET", "/api/status")[0] == 200
        except OSError:
            return False
    assert wait_for(lambda: answers(aport2), timeout=5), s.read_log()
    assert wait_for(lambda: not answers(aport), timeout=5)
    assert "admin API moved to 127.0.0.1:%d" % aport2 in s.read_log()
    # An address that cannot be bound: logged, and the API stays where it is.
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen(1)
    taken = holder.getsockname()[1]
    try:
        s.reload(make_config(port, taken, [(bs[0].address, 1)]))
        assert wait_for(lambda: "admin.listen 127.0.0.1:%d" % taken in s.read_log(), timeout=5), s.read_log()
        assert answers(aport2)
    finally:
        holder.close()
