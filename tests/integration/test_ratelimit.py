"""Rate limits (listeners[].rate_limits) and connection limits
(listeners[].connection_limit), with real clients against the real binary
and two workers, which share the limits' buckets.

The load tests run wrk for a bounded time against a configured rate and
count the 200s. A leaky bucket with burst B at rate R admits B + 1 requests
at once and then R per second, so over D seconds of a client asking faster
than R the count is R*D + B + 1. The tolerance is +-15% (docs/configuration.md
says the same): wrk's own start and end, and a loaded machine, move the
count by a few requests, while a worker keeping its own buckets would admit
twice the count (two workers), far outside it.
"""
import json
import re
import shutil
import socket
import subprocess
import threading
import time

import pytest

from helpers import free_port, metric, new_log_lines, wait_for
from raw_servers import recv_until_close

TOLERANCE = 0.15


def config(port, aport, backend, listener_extra, protocol="http", access_log=None):
    y = ("workers: 2\nadmin: { listen: 127.0.0.1:%d }\nlog: { level: info }\n"
         "pools:\n  - name: app\n    retries: 0\n    passive: { max_fails: 0 }\n    backends: [%s]\n"
         "listeners:\n  - name: web\n    listen: 127.0.0.1:%d\n    protocol: %s\n    pool: app\n"
         % (aport, backend.address, port, protocol))
    if access_log:
        y += "    access_log: %s\n    access_log_format: json\n" % access_log
    return y + listener_extra


@pytest.fixture
def proxy(sluice, backends):
    """Factory: proxy(listener_extra, ...) -> (port, admin port, backend)."""
    def make(listener_extra, **kw):
        b, = backends(1)
        port, aport = free_port(), free_port()
        sluice(config(port, aport, b, listener_extra, **kw), wait_ports=[port, aport], workers=2)
        # Waiting for the port opened a connection: accepted and gone
        # before a test counts its own against a connection limit.
        assert wait_for(lambda: metric(aport, "sluice_listener_connections_total", listener="web") >= 1 and
                        metric(aport, "sluice_listener_active_connections", listener="web") == 0)
        return port, aport, b
    return make


def request(port, headers=b"", path=b"/"):
    """One HTTP/1.1 request on a new connection: (status, head, raw reply)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"GET " + path + b" HTTP/1.1\r\nHost: t\r\nConnection: close\r\n" + headers + b"\r\n")
        got = recv_until_close(s, timeout=10)
    m = re.match(rb"HTTP/1\.1 (\d{3})", got)
    return (int(m.group(1)) if m else None), got.partition(b"\r\n\r\n")[0], got


def run_wrk(port, seconds, header=None):
    """wrk for `seconds`; returns (responses, non-2xx responses, its output)."""
    cmd = ["wrk", "-t", "1", "-c", "4", "-d", "%ds" % seconds, "--timeout", "5s"]
    if header:
        cmd += ["-H", header]
    p = subprocess.run(cmd + ["http://127.0.0.1:%d/load" % port], capture_output=True, timeout=seconds + 30)
    out = p.stdout.decode()
    assert p.returncode == 0, out + p.stderr.decode()
    total = int(re.search(r"(\d+) requests in", out).group(1))
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return total, int(m.group(1)) if m else 0, out


def within(count, expected):
    return abs(count - expected) <= TOLERANCE * expected


needs_wrk = pytest.mark.skipif(not shutil.which("wrk"), reason="needs wrk")


@needs_wrk
def test_rate_and_burst_under_wrk_across_two_workers(proxy):
    rate, burst, seconds = 50, 10, 4
    port, aport, b = proxy("    rate_limits:\n      - { name: per_ip, key: client_ip, rate: %dr/s, burst: %d }\n"
                           % (rate, burst))
    total, rejected, out = run_wrk(port, seconds)
    ok = total - rejected
    expected = rate * seconds + burst + 1
    print("\nwrk, %d r/s burst %d for %d s over 2 workers: %d 200s (expected %d), %d refused"
          % (rate, burst, seconds, ok, expected, rejected))
    assert within(ok, expected), "%d 200s, expected %d +-%d%%\n%s" % (ok, expected, TOLERANCE * 100, out)
    assert rejected > ok, out  # wrk asks far faster than 50/s
    # Every admitted request reached the backend, and the metrics agree.
    labels = dict(listener="web", limit="per_ip")
    assert wait_for(lambda: metric(aport, "sluice_ratelimit_requests_total", result="passed", **labels) == b.count(),
                    timeout=10)
    assert b.count() >= ok
    assert metric(aport, "sluice_ratelimit_requests_total", result="rejected", **labels) >= rejected


@needs_wrk
def test_header_keys_have_separate_budgets(proxy):
    rate, burst, seconds = 20, 5, 3
    port, aport, b = proxy("    rate_limits:\n      - { name: api, key: \"header:X-Api-Key\", rate: %dr/s, burst: %d }\n"
                           % (rate, burst))
    results = {}

    def client(key):
        results[key] = run_wrk(port, seconds, header="X-Api-Key: %s" % key)

    threads = [threading.Thread(target=client, args=(k,)) for k in ("alice", "bob")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=seconds + 40)
    expected = rate * seconds + burst + 1
    for key, (total, rejected, out) in results.items():
        print("\nwrk, X-Api-Key %s: %d 200s (expected %d), %d refused" % (key, total - rejected, expected, rejected))
        assert within(total - rejected, expected), "%s: %d 200s, expected %d\n%s" % (key, total - rejected,
                                                                                     expected, out)
        assert rejected > 0, out
    # A request without the header has no key: this limit does not count it.
    for _ in range(10):
        assert request(port)[0] == 200


def test_burst_exact_then_429_with_retry_after_and_log(proxy, tmp_path):
    log = tmp_path / "access.json"
    port, aport, b = proxy("    rate_limits:\n      - { name: slow, rate: 1r/m, burst: 2 }\n", access_log=log)
    statuses = [request(port)[0] for _ in range(3)]
    assert statuses == [200, 200, 200]
    status, head, raw = request(port)
    assert status == 429, raw
    m = re.search(rb"\r\nRetry-After: (\d+)\r\n", head)
    assert m, head
    # The bucket frees one request a minute.
    assert 1 <= int(m.group(1)) <= 60, head
    assert b'rate limit "slow"' in raw
    assert b.count() == 3
    lines = [json.loads(x) for x in new_log_lines(log, 0, 4)]
    refused = [x for x in lines if x["status"] == 429]
    assert len(refused) == 1 and 'rate limit "slow" (1 r/m, burst 2) exceeded' in refused[0]["reason"], lines
    labels = dict(listener="web", limit="slow")
    assert metric(aport, "sluice_ratelimit_requests_total", result="passed", **labels) == 3
    assert metric(aport, "sluice_ratelimit_requests_total", result="rejected", **labels) == 1


def test_two_limits_refused_request_costs_the_other_nothing(proxy):
    # per_ip would allow 3 requests; api allows key "k" 1. A request api
    # refuses must not use per_ip's budget: a keyless request still has 2.
    port, aport, b = proxy("    rate_limits:\n"
                           "      - { name: per_ip, rate: 1r/m, burst: 2 }\n"
                           "      - { name: api, key: \"header:X-Key\", rate: 1r/m, status: 503 }\n")
    assert request(port, b"X-Key: k\r\n")[0] == 200
    for _ in range(3):
        status, head, _ = request(port, b"X-Key: k\r\n")
        assert status == 503 and b"Retry-After: " in head
    assert [request(port)[0] for _ in range(3)] == [200, 200, 429]


def test_status_close(proxy, tmp_path):
    log = tmp_path / "access.json"
    port, aport, b = proxy("    rate_limits:\n      - { name: once, rate: 1r/m, status: close }\n", access_log=log)
    assert request(port)[0] == 200
    status, _, raw = request(port)
    assert status is None and raw == b"", raw
    # Two workers, two log buffers: the lines come in either order.
    lines = sorted((json.loads(x) for x in new_log_lines(log, 0, 2)), key=lambda x: x["status"])
    assert [x["status"] for x in lines] == [200, 444], lines
    assert "rate limit \"once\"" in lines[1]["reason"]


@pytest.mark.skipif(not shutil.which("h2load") or not shutil.which("curl"), reason="needs h2load and curl")
def test_http2_each_stream_is_a_request(proxy):
    port, aport, b = proxy("    rate_limits:\n      - { name: h2, rate: 1r/m, burst: 4 }\n")
    p = subprocess.run(["h2load", "-n", "20", "-c", "1", "-m", "5", "http://127.0.0.1:%d/" % port],
                       capture_output=True, timeout=60)
    out = p.stdout.decode()
    assert re.search(r"status codes: 5 2xx, 0 3xx, 15 4xx, 0 5xx", out), out
    p = subprocess.run(["curl", "-s", "-i", "--http2-prior-knowledge", "--max-time", "10",
                        "http://127.0.0.1:%d/" % port], capture_output=True, timeout=20)
    head = p.stdout.decode(errors="replace").lower()
    assert head.startswith("http/2 429") and "\nretry-after: " in head, head
    assert metric(aport, "sluice_ratelimit_requests_total", listener="web", limit="h2", result="rejected") == 16


def serve_one(s):
    """A keep-alive request on an open connection: its status, or None if
    the connection is closed."""
    s.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
    data = b""
    while b"\r\n\r\n" not in data:
        try:
            chunk = s.recv(65536)
        except (ConnectionResetError, socket.timeout):
            return None
        if not chunk:
            return None
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    n = int(re.search(rb"Content-Length: (\d+)", head, re.I).group(1))
    while len(body) < n:
        body += s.recv(65536)
    return int(head.split()[1])


def refused(port):
    """A new connection is closed by the proxy without an answer (the reset
    may come before connect() returns)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            return serve_one(s) is None
    except (BrokenPipeError, ConnectionResetError):
        return True


def test_connection_limit_http(proxy):
    port, aport, b = proxy("    connection_limit: { key: client_ip, max: 3 }\n")
    held = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(3)]
    try:
        # Served, so each was accepted (by either worker) and counts.
        assert [serve_one(s) for s in held] == [200, 200, 200]
        assert refused(port)
        # The three stay open and go on working.
        assert [serve_one(s) for s in held] == [200, 200, 200]
        assert metric(aport, "sluice_connlimit_connections_total", listener="web", result="rejected") == 1
        # One leaves: a newcomer is served once the proxy has seen it go.
        held.pop().close()

        def newcomer_served():
            with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
                return serve_one(s) == 200
        assert wait_for(newcomer_served, timeout=10, interval=0.1)
    finally:
        for s in held:
            s.close()


def test_connection_limit_tcp(proxy):
    port, aport, b = proxy("    connection_limit: { max: 2 }\n", protocol="tcp")
    held = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(2)]
    try:
        assert [serve_one(s) for s in held] == [200, 200]
        assert refused(port)
        assert [serve_one(s) for s in held] == [200, 200]
        assert metric(aport, "sluice_connlimit_connections_total", listener="web", result="passed") == 3  # + wait_port
        assert metric(aport, "sluice_connlimit_connections_total", listener="web", result="rejected") == 1
    finally:
        for s in held:
            s.close()


@pytest.mark.skipif(not shutil.which("nghttp"), reason="needs nghttp")
def test_http2_status_close_resets_the_stream(proxy):
    port, aport, b = proxy("    rate_limits:\n      - { name: once, rate: 1r/m, status: close }\n")
    url = "http://127.0.0.1:%d/" % port
    # Two streams on one HTTP/2 connection: one is served, the other reset;
    # the connection stays up for the served one.
    p = subprocess.run(["nghttp", "-nv", url + "a", url + "b"], capture_output=True, timeout=30)
    out = p.stdout.decode()
    assert len(re.findall(r"recv RST_STREAM frame", out)) == 1, out
    assert len(re.findall(r":status: 200", out)) == 1, out
    assert metric(aport, "sluice_ratelimit_requests_total", listener="web", limit="once", result="rejected") == 1


def test_reload_keeps_buckets_of_an_unchanged_limit(sluice, backends):
    b, = backends(1)
    port, aport = free_port(), free_port()
    limit = "    rate_limits:\n      - { name: slow, rate: %s, burst: 1 }\n"
    proxy = sluice(config(port, aport, b, limit % "1r/m"), wait_ports=[port, aport], workers=2)
    assert [request(port)[0] for _ in range(3)] == [200, 200, 429]

    def reload(text):
        before = metric(aport, "sluice_reloads_total")
        proxy.reload(text)
        assert wait_for(lambda: metric(aport, "sluice_reloads_total") > before, timeout=20)

    # Same limit, another log level: the full bucket stays full, the counters go on.
    reload(config(port, aport, b, limit % "1r/m").replace("level: info", "level: warn"))
    assert request(port)[0] == 429
    labels = dict(listener="web", limit="slow")
    assert metric(aport, "sluice_ratelimit_requests_total", result="passed", **labels) == 2
    assert metric(aport, "sluice_ratelimit_requests_total", result="rejected", **labels) == 2
    # A new rate: the buckets start empty.
    reload(config(port, aport, b, limit % "2r/m"))
    assert request(port)[0] == 200


def test_connection_limit_tls_and_http2_handover(proxy, tmp_path):
    """On a TLS listener: the connection over the limit is reset before its
    handshake; a connection that turned to HTTP/2 (ALPN h2) keeps its count
    and gives it back when it closes."""
    import ssl
    from tls_certs import CertAuthority
    ca = CertAuthority(tmp_path / "pki")
    leaf = ca.issue(["localhost"])
    port, aport, b = proxy("    connection_limit: { max: 1 }\n    tls:\n      certificates:\n"
                           "        - { cert: %s, key: %s }\n" % (leaf.chain, leaf.key))
    ctx = ssl.create_default_context(cafile=ca.cert)
    ctx.set_alpn_protocols(["h2"])

    def handshake():
        """A TLS connection, or None if the proxy reset it (the reset may
        come before connect() returns)."""
        raw = None
        try:
            raw = socket.create_connection(("127.0.0.1", port), timeout=5)
            return ctx.wrap_socket(raw, server_hostname="localhost")
        except (ssl.SSLError, OSError):
            if raw:
                raw.close()
            return None

    first = handshake()
    assert first is not None and first.selected_alpn_protocol() == "h2"
    # The preface and an empty SETTINGS: the server's SETTINGS back means an
    # HTTP/2 connection took the HTTP/1 one's place (and its count).
    first.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00")
    assert first.recv(9)[3:4] == b"\x04"
    try:
        # The HTTP/2 connection holds the one place.
        assert handshake() is None
        assert metric(aport, "sluice_connlimit_connections_total", listener="web", result="rejected") == 1
    finally:
        first.close()

    def served():
        s = handshake()
        if s is None:
            return False
        s.close()
        return True
    # Once the proxy has seen it close, its place is free again.
    assert wait_for(served, timeout=10, interval=0.1)


def test_limit_named_by_a_route_applies_to_that_route_only(proxy):
    port, aport, b = proxy("    rate_limits:\n"
                           "      - { name: api, rate: 1r/m }\n"
                           "      - { name: all, rate: 1r/m, burst: 5 }\n"
                           "    routes:\n"
                           "      - { path_prefix: /api, pool: app, rate_limits: [api] }\n"
                           "      - { path_prefix: /, pool: app }\n")
    # /api: both limits (api allows 1); elsewhere only "all" (6 in all).
    assert [request(port, path=b"/api/x")[0] for _ in range(2)] == [200, 429]
    assert [request(port, path=b"/other")[0] for _ in range(6)] == [200, 200, 200, 200, 200, 429]
    labels = dict(listener="web", limit="api")
    assert metric(aport, "sluice_ratelimit_requests_total", result="passed", **labels) == 1
    assert metric(aport, "sluice_ratelimit_requests_total", result="rejected", **labels) == 1
