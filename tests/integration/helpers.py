"""Small socket helpers for the integration tests (stdlib only)."""
import json
import os
import socket
import time
import urllib.request


_handed_out = set()


def free_port(kind=socket.SOCK_STREAM):
    """A port nothing listens on now, never handed out before in this
    process (two calls in a row could otherwise get the same one back).
    Under pytest-xdist each worker takes only the ports whose half equals
    its index modulo the worker count, so two workers never pick the same
    one (the half: Linux hands out even ports to bind(0), odd ones to
    connect())."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    index = int(worker[2:]) if worker[2:].isdigit() else 0
    for _ in range(10000):
        s = socket.socket(socket.AF_INET, kind)
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        if port not in _handed_out and (port >> 1) % count == index % count:
            _handed_out.add(port)
            return port
    raise RuntimeError("no free port found")


def wait_port(port, timeout=10.0, proc=None, host="127.0.0.1"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc is not None and proc.poll() is not None:
            return False
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False


def raw_request(port, data, timeout=5.0, read_until_close=True, host="127.0.0.1"):
    """Send raw bytes, return everything the server sends until it closes."""
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.sendall(data)
        chunks = []
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                b = s.recv(65536)
            except socket.timeout:
                break
            except ConnectionResetError:
                break
            if not b:
                break
            chunks.append(b)
            if not read_until_close:
                break
        return b"".join(chunks)


def http_get(port, path="/", headers=None, timeout=5.0, host="127.0.0.1"):
    req = urllib.request.Request("http://%s:%d%s" % (host, port, path), headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def admin(port, method, path, body=None, timeout=5.0):
    data = None
    headers = {}
    if body is not None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    req = urllib.request.Request("http://127.0.0.1:%d%s" % (port, path), data=data,
                                 method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            raw = r.read()
            return r.status, raw
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def wait_for(predicate, timeout=10.0, interval=0.05):
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = predicate()
        if v:
            return v
        time.sleep(interval)
    return predicate()


def admin_json(port, method, path, body=None, timeout=5.0):
    """admin() with the body parsed as JSON (None when it is not JSON)."""
    status, raw = admin(port, method, path, body, timeout=timeout)
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, None


def pool_backends(admin_port, pool):
    """{address: backend object} of one pool from GET /api/pools/POOL."""
    status, doc = admin_json(admin_port, "GET", "/api/pools/" + pool)
    assert status == 200, (status, doc)
    return {b["address"]: b for b in doc["backends"]}


def fresh_get(port, path="/", headers=None, timeout=5.0, source_ip=None, method="GET", body=None):
    """One request on a new connection: (status, headers with lower-case
    names, body). source_ip binds the client side (e.g. "127.0.0.2")."""
    import http.client
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout,
                                      source_address=(source_ip, 0) if source_ip else None)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        data = r.read()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, data
    finally:
        conn.close()


def metric(admin_port, name, **labels):
    """The value of one sample on /metrics (0 when absent), its labels matched
    exactly (label values here hold no commas)."""
    status, raw = admin(admin_port, "GET", "/metrics")
    assert status == 200, (status, raw[:200])
    want = sorted('%s="%s"' % kv for kv in labels.items())
    for line in raw.decode().splitlines():
        key, _, value = line.rpartition(" ")
        sample, _, label_text = key.partition("{")
        if sample == name and sorted(p for p in label_text.rstrip("}").split(",") if p) == want:
            return float(value)
    return 0.0


def count_lines(path):
    """How many lines a log file (a pathlib.Path) holds; 0 before it exists."""
    try:
        return len(path.read_bytes().splitlines())
    except FileNotFoundError:
        return 0


def new_log_lines(path, n_before, n_new=1, timeout=5.0):
    """The lines of a log file after its first n_before, once there are
    n_new of them (a worker writes its access log buffer every 100 ms)."""
    def ready():
        try:
            lines = path.read_bytes().splitlines()
        except FileNotFoundError:
            return None
        return lines[n_before:] if len(lines) >= n_before + n_new else None
    lines = wait_for(ready, timeout=timeout, interval=0.02)
    assert lines, "no new access log line in %s" % path
    return lines


def tls_listener_config(proto, tls_lines):
    """A one-listener config for `sluice check` whose listener's tls: block
    starts on line 9, its keys (tls_lines) from line 10, for tests that
    assert on error lines."""
    return ("pools:\n"                          # 1
            "  - name: app\n"                   # 2
            "    backends: [127.0.0.1:9]\n"     # 3
            "listeners:\n"                      # 4
            "  - name: web\n"                   # 5
            "    listen: 127.0.0.1:%d\n"        # 6
            "    protocol: %s\n"                # 7
            "    pool: app\n"                   # 8
            "    tls:\n" % (free_port(), proto)  # 9
            + "".join("      %s\n" % x for x in tls_lines))


def echo_stream(port):
    """A connection to 127.0.0.1:port for echo(): 10 s to connect and per read."""
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.settimeout(10)
    return s


def echo(s, payload):
    """Send payload on s and read back as many bytes (an echo backend)."""
    s.sendall(payload)
    got = b""
    while len(got) < len(payload):
        chunk = s.recv(65536)
        assert chunk, "the stream closed"
        got += chunk
    return got
