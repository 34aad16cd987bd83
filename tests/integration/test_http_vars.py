"""Request variables (src/proxy/http_vars.c) where a user meets them:
log_formats lines, request_headers / response_headers rules seen by the
backend and by the client (HTTP/1 and HTTP/2), route redirect: and return:,
a client trying to inject a header line through a variable, and the config
errors of `sluice check`.

Real clients: curl (HTTP/1.1 and h2c), raw sockets for bytes curl will
not send.
"""
import json
import re
import socket
import subprocess

import pytest

import conftest
from backends import HttpBackend
from helpers import count_lines, free_port, new_log_lines, raw_request, wait_for

CUSTOM = ('$remote_addr:$remote_port "$request" $status $body_bytes_sent in=$request_length '
          'up=$upstream_addr uct=$upstream_connect_time uht=$upstream_header_time '
          'urt=$upstream_response_time rt=$request_time tries=$upstream_tries route=$route pool=$pool '
          'ua="$http_user_agent" xt="$http_x_test" id=$request_id host=$host uri=$uri args=$args '
          'proto=$server_protocol scheme=$scheme ct="$sent_http_content_type"')


class Env:
    pass


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    e = Env()
    tmp = tmp_path_factory.mktemp("vars")
    e.backend = HttpBackend(name="b1", delay=0.2)
    e.backend.start()
    e.fast = HttpBackend(name="fast")
    e.fast.start()
    e.port, e.json_port = free_port(), free_port()
    e.log, e.json_log = tmp / "access.log", tmp / "access.json"
    cfg = f"""workers: 1
admin: {{ listen: off }}
log_formats:
  custom: '{CUSTOM}'
  as_json:
    format: '{{"ua":"$http_user_agent","status":$status,"uri":"$request_uri","rt":$request_time}}'
    escape: json
pools:
  - name: slow
    backends: [{e.backend.address}]
  - name: app
    backends: [{e.fast.address}]
listeners:
  - name: web
    listen: 127.0.0.1:{e.port}
    access_log: {e.log}
    access_log_format: custom
    request_headers:
      set: {{ X-Env: listener, X-Uri: "$request_uri" }}
      add: {{ X-Added: "from-listener" }}
    response_headers:
      add: {{ X-Request-Id: "$request_id", X-Upstream: "$upstream_addr", X-Path: "$uri" }}
    pool: app
    routes:
      - path_prefix: /slow
        name: slowroute
        pool: slow
      - path_prefix: /rules
        pool: app
        request_headers:
          set: {{ X-Env: "route-$route", Host: "backend.internal" }}
          add: {{ X-Client: "$remote_addr", X-Added: "from-route" }}
          remove: [X-Secret]
        response_headers:
          set: {{ Server: "sluice-test" }}
          remove: [X-Backend, X-Upstream]
      - path_prefix: /old
        redirect: {{ to: "https://$host/new$request_uri", status: 301 }}
      - path_prefix: /temp
        redirect: {{ to: "/elsewhere?from=$uri" }}
        response_headers:
          set: {{ Server: edge, Strict-Transport-Security: "max-age=60" }}
          add: {{ Location: /ignored }}
      - path_prefix: /forbidden
        return: {{ status: 403, body: "not here\\n" }}
  - name: jsonl
    listen: 127.0.0.1:{e.json_port}
    access_log: {e.json_log}
    access_log_format: as_json
    pool: app
"""
    e.proxy = conftest.Sluice(tmp, cfg)
    try:
        e.proxy.start(wait_ports=[e.port, e.json_port])
        yield e
    finally:
        e.proxy.stop()
        e.backend.stop()
        e.fast.stop()
        e.proxy.assert_clean()


def curl(*args):
    r = subprocess.run(["curl", "-sS", "--max-time", "10", "-D", "-", *args], capture_output=True, timeout=20)
    assert r.returncode == 0, r.stderr
    head, _, body = r.stdout.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers.setdefault(k.strip().lower(), []).append(v.strip())
    return status, headers, body


def last_request(backend):
    with backend.lock:
        return backend.requests[-1]


def log_line_for(path, before, needle):
    """The newest line of the log after its first `before` holding needle:
    lines of earlier tests may still arrive (a worker writes its buffer
    on a tick), so a line is found by its request, not its position."""
    def find():
        lines = [x.decode() for x in path.read_bytes().splitlines()[before:]] if path.exists() else []
        found = [x for x in lines if needle in x]
        return found[-1] if found else None
    line = wait_for(find, timeout=5)
    assert line, "no line with %r in %s" % (needle, path)
    return line


def parse_custom(line):
    fields = dict(re.findall(r'(\w+)=("[^"]*"|\S+)', line))
    return {k: v.strip('"') for k, v in fields.items()}


def test_custom_format_has_upstream_times_and_request_fields(env):
    before = count_lines(env.log)
    status, _, _ = curl("-A", "probe/1.0", "-H", "X-Test: hello", f"http://127.0.0.1:{env.port}/slow/x?a=1&b=2")
    assert status == 200
    line = log_line_for(env.log, before, "/slow/x?a=1")
    assert re.match(r'^127\.0\.0\.1:\d+ "GET /slow/x\?a=1&b=2 HTTP/1\.1" 200 \d+ ', line), line
    f = parse_custom(line)
    assert f["up"] == env.backend.address
    assert f["route"] == "slowroute" and f["pool"] == "slow" and f["tries"] == "1"
    assert f["ua"] == "probe/1.0" and f["xt"] == "hello"
    assert f["host"] == "127.0.0.1" and f["uri"] == "/slow/x" and f["args"] == "a=1&b=2"
    assert f["proto"] == "HTTP/1.1" and f["scheme"] == "http"
    assert f["ct"] == "text/plain"           # the backend's Content-Type
    assert re.fullmatch(r"[0-9a-f]{32}", f["id"])
    uct, uht, urt, rt = (float(f[k]) for k in ("uct", "uht", "urt", "rt"))
    # The backend sleeps 0.2 s before its head: the header time holds it,
    # and the times nest as nginx's do.
    assert 0 <= uct <= uht and uht >= 0.2 and urt >= uht and rt >= urt
    assert int(f["in"]) > len("GET /slow/x?a=1&b=2 HTTP/1.1\r\n")


def test_refused_request_logs_dashes_for_the_upstream(env):
    before = count_lines(env.log)
    got = raw_request(env.port, b"GET /x HTTP/1.1\r\nHost: a\r\nBad Header\r\n\r\n")
    assert got.startswith(b"HTTP/1.1 400")
    line = log_line_for(env.log, before, '"GET /x HTTP/1.1" 400')
    assert '"GET /x HTTP/1.1" 400 ' in line, line
    f = parse_custom(line)
    assert f["up"] == "-" and f["uct"] == "-" and f["uht"] == "-" and f["urt"] == "-" and f["ct"] == "-"


def test_http2_request_logged_as_http2(env):
    before = count_lines(env.log)
    status, _, _ = curl("--http2-prior-knowledge", f"http://127.0.0.1:{env.port}/h2?q=1")
    assert status == 200
    line = log_line_for(env.log, before, "/h2?q=1")
    assert '"GET /h2?q=1 HTTP/2.0" 200 ' in line, line
    f = parse_custom(line)
    assert f["proto"] == "HTTP/2.0" and f["up"] == env.fast.address and f["tries"] == "1"


def test_request_fields_outlive_the_head_in_the_buffer(env, tmp_path):
    """A body larger than the buffer pushes the request head out of it
    before the response comes: the log line and a response rule still read
    the request's fields (from the copy kept for them)."""
    body = tmp_path / "body"
    body.write_bytes(b"x" * 300000)
    before = count_lines(env.log)
    status, headers, _ = curl("--data-binary", "@%s" % body, "-A", "big/1", f"http://127.0.0.1:{env.port}/upload/it?k=v")
    assert status == 200
    assert headers["x-path"] == ["/upload/it"]
    line = log_line_for(env.log, before, "/upload/it")
    assert '"POST /upload/it?k=v HTTP/1.1" 200 ' in line, line
    f = parse_custom(line)
    assert f["ua"] == "big/1" and f["uri"] == "/upload/it" and int(f["in"]) > 300000


def test_log_values_are_escaped_so_a_line_cannot_be_forged(env):
    before = count_lines(env.log)
    ua = 'x" 200 0 "forged\\'
    status, _, _ = curl("-A", ua, f"http://127.0.0.1:{env.port}/forge")
    assert status == 200
    line = log_line_for(env.log, before, "/forge")
    assert all(x.startswith(b"127.0.0.1:") for x in env.log.read_bytes().splitlines())
    assert 'ua="x\\x22 200 0 \\x22forged\\x5C"' in line, line


def test_json_escape_format_parses(env):
    before = count_lines(env.json_log)
    ua = 'quote" back\\ tab\tend'
    status, _, _ = curl("-A", ua, f"http://127.0.0.1:{env.json_port}/p?q=%22")
    assert status == 200
    doc = json.loads(new_log_lines(env.json_log, before)[0])
    assert doc["ua"] == ua and doc["status"] == 200 and doc["uri"] == "/p?q=%22"
    assert doc["rt"] >= 0


def test_request_headers_listener_rules(env):
    curl("-H", "X-Env: from-client", "-H", "X-Secret: s", f"http://127.0.0.1:{env.port}/plain?z=1")
    h = last_request(env.fast)["headers"]
    assert h["X-Env"] == "listener"          # set replaced the client's
    assert h["X-Uri"] == "/plain?z=1"
    assert h["X-Added"] == "from-listener"
    assert h["X-Secret"] == "s"              # only the /rules route removes it


def test_request_headers_route_overrides_and_extends(env):
    curl("-H", "X-Secret: s", "-H", "X-Added: client", f"http://127.0.0.1:{env.port}/rules/a")
    r = last_request(env.fast)
    h = r["headers"]
    # add: the client's X-Added stays, the listener's and the route's follow
    assert [v for k, v in r["header_list"] if k == "X-Added"] == ["client", "from-listener", "from-route"]
    assert h["X-Env"] == "route-/rules"      # the route's set wins over the listener's
    assert h["Host"] == "backend.internal"
    assert h["X-Client"] == "127.0.0.1"
    assert "X-Secret" not in h
    assert h["X-Uri"] == "/rules/a"          # the listener's rules apply too


def test_response_headers_seen_by_the_client(env):
    status, headers, _ = curl(f"http://127.0.0.1:{env.port}/plain")
    assert status == 200
    assert re.fullmatch(r"[0-9a-f]{32}", headers["x-request-id"][0])
    assert headers["x-upstream"] == [env.fast.address]
    assert headers["x-backend"] == ["fast"]
    status, headers, _ = curl(f"http://127.0.0.1:{env.port}/rules/b")
    assert headers["server"] == ["sluice-test"]
    assert "x-backend" not in headers and "x-upstream" not in headers
    assert "x-request-id" in headers          # the listener's add still applies


def test_rules_apply_over_http2(env):
    status, headers, _ = curl("--http2-prior-knowledge", "-H", "X-Secret: s", f"http://127.0.0.1:{env.port}/rules/h2")
    assert status == 200
    assert headers["server"] == ["sluice-test"] and "x-backend" not in headers
    h = last_request(env.fast)["headers"]
    assert h["X-Env"] == "route-/rules" and "X-Secret" not in h and h["Host"] == "backend.internal"


def test_crlf_through_a_variable_cannot_add_a_header(env):
    """X-Uri is set from $request_uri: a client's %0D%0A stays encoded, and
    raw CR or LF in the target never gets past the parser."""
    curl(f"http://127.0.0.1:{env.port}/inj%0D%0AX-Injected:%20yes")
    h = last_request(env.fast)["headers"]
    assert h["X-Uri"] == "/inj%0D%0AX-Injected:%20yes"
    assert "X-Injected" not in h
    n = env.fast.count()
    got = raw_request(env.port, b"GET /inj\rX-Injected: yes HTTP/1.1\r\nHost: a\r\n\r\n")
    assert got.startswith(b"HTTP/1.1 400")
    got = raw_request(env.port, b"GET /a HTTP/1.1\r\nHost: a\r\nX-Test: a\x01b\r\n\r\n")
    assert got.startswith(b"HTTP/1.1 400")
    assert env.fast.count() == n


def test_redirect_301_with_variables(env):
    status, headers, body = curl("-I", "-o", "/dev/null", f"http://127.0.0.1:{env.port}/old/page?x=1")
    assert status == 301
    assert headers["location"] == ["https://127.0.0.1/new/old/page?x=1"]
    assert headers["content-length"] == [str(len(b"301 Moved Permanently\n"))]
    assert re.fullmatch(r"[0-9a-f]{32}", headers["x-request-id"][0])   # the listener's response rules apply
    assert "x-upstream" not in headers                                   # no backend: the value is empty, not sent
    assert headers["server"] == ["sluice"]
    status, headers, body = curl(f"http://127.0.0.1:{env.port}/temp/a")
    assert status == 302 and headers["location"] == ["/elsewhere?from=/temp/a"]   # the route's own Location only
    assert headers["server"] == ["edge"] and headers["strict-transport-security"] == ["max-age=60"]
    assert body == b"302 Found\n"


def test_redirect_and_return_keep_the_connection_and_log(env):
    before = count_lines(env.log)
    url = f"http://127.0.0.1:{env.port}"
    urls = []
    for path in ("/forbidden", "/old/x", "/plain"):
        urls += ["-o", "/dev/null", url + path]
    r = subprocess.run(["curl", "-sS", "-w", "%{http_code} %{num_connects}\n", *urls],
                       capture_output=True, timeout=20, text=True)
    assert r.stdout.split("\n")[:3] == ["403 1", "301 0", "200 0"], r.stdout
    # Lines of earlier tests may still arrive (a worker writes its log
    # buffer on a tick): find these three by their request.
    def mine():
        lines = [x.decode() for x in env.log.read_bytes().splitlines()[before:]]
        got = {}
        for path in ("/forbidden", "/old/x", "/plain"):
            found = [x for x in lines if '"GET %s HTTP/1.1"' % path in x]
            if not found:
                return None
            got[path] = parse_custom(found[-1])
        return got
    got = wait_for(mine, timeout=5)
    assert got, "no log lines for the three requests"
    assert got["/forbidden"]["up"] == "-" and got["/old/x"]["up"] == "-"
    assert got["/plain"]["up"] == env.fast.address
    status, _, body = curl(url + "/forbidden")
    assert status == 403 and body == b"not here\n"


def test_pipelined_requests_after_a_route_answer(env):
    """Requests sent back to back in one segment: each route answer is
    followed by the next request at once (the connection does not wait
    for bytes it already has)."""
    got = raw_request(env.port, b"GET /forbidden HTTP/1.1\r\nHost: a\r\n\r\n"
                                b"GET /old/p HTTP/1.1\r\nHost: a\r\n\r\n"
                                b"GET /plain HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
    assert re.findall(rb"HTTP/1\.1 (\d{3})", got) == [b"403", b"301", b"200"], got


def test_redirect_over_http2(env):
    status, headers, body = curl("--http2-prior-knowledge", f"http://127.0.0.1:{env.port}/forbidden")
    assert status == 403 and body == b"not here\n"
    status, headers, body = curl("--http2-prior-knowledge", f"http://127.0.0.1:{env.port}/old/z")
    assert status == 301 and headers["location"] == ["https://127.0.0.1/new/old/z"]
    assert body.startswith(b"301 Moved Permanently")


# ---------- config errors ----------

def check(tmp_path, text):
    path = tmp_path / "s.yaml"
    path.write_text(text)
    r = subprocess.run([conftest.SLUICE_BIN, "check", "-c", str(path)], capture_output=True, text=True, timeout=30)
    return r.returncode, r.stdout + r.stderr, str(path)


BASE = """pools:
  - name: app
    backends: [127.0.0.1:9]
listeners:
  - name: web
    listen: 127.0.0.1:18080
    pool: app
"""


def test_unknown_variable_is_a_config_error_with_a_guess(tmp_path):
    rc, out, path = check(tmp_path, "log_formats:\n  main: '$remote_addr $stauts'\n" + BASE +
                          "    access_log_format: main\n")
    assert rc != 0
    assert f'{path}:2: log_formats.main: unknown variable "$stauts" (did you mean "$status"?)' in out, out


def test_header_rule_errors(tmp_path):
    rc, out, path = check(tmp_path, BASE + "    request_headers:\n      set: { Content-Length: '5' }\n"
                          "      remove: ['Bad Name']\n    response_headers:\n      add: { X-A: '$nope' }\n")
    assert rc != 0
    assert f"{path}:9: listeners[0].request_headers.set.Content-Length: Content-Length frames the message" in out, out
    assert f'{path}:10: listeners[0].request_headers.remove[0]: "Bad Name" is not a valid header field name' in out
    assert f'{path}:12: listeners[0].response_headers.add.X-A: unknown variable "$nope"' in out


def test_unknown_log_format_and_bad_redirect(tmp_path):
    rc, out, path = check(tmp_path, BASE + "    access_log_format: mine\n    routes:\n      - path_prefix: /a\n"
                          "        redirect: { to: '/b', status: 200 }\n      - path_prefix: /c\n"
                          "        pool: app\n        return: { status: 404 }\n")
    assert rc != 0
    assert f'{path}:8: listeners[0].access_log_format: expected combined, json or a name of log_formats, got "mine"' in out, out
    assert f"{path}:11: listeners[0].routes[0].redirect.status:" in out, out
    assert f'{path}:12: listeners[0].routes[1]: a route has one of "pool", "redirect" and "return"' in out, out


# ---------- TLS variables ----------

def test_tls_variables_in_log_and_headers(tmp_path):
    from tls_certs import CertAuthority
    ca = CertAuthority(tmp_path / "pki")
    cert = ca.issue(["example.test"], key="ec")
    backend = HttpBackend(name="tlsb").start()
    port = free_port()
    log = tmp_path / "tls.log"
    cfg = f"""workers: 1
admin: {{ listen: off }}
log_formats:
  tls: '"$request" $status proto=$ssl_protocol cipher=$ssl_cipher sni=$ssl_server_name reused=$ssl_session_reused scheme=$scheme'
pools:
  - name: app
    backends: [{backend.address}]
listeners:
  - name: web
    listen: 127.0.0.1:{port}
    pool: app
    access_log: {log}
    access_log_format: tls
    request_headers:
      set: {{ X-TLS: "$ssl_protocol $ssl_server_name" }}
    tls:
      certificates:
        - cert: {cert.chain}
          key: {cert.key}
"""
    proxy = conftest.Sluice(tmp_path, cfg)
    try:
        proxy.start(wait_ports=[port])
        status, _, _ = curl("--cacert", ca.cert, "--resolve", f"example.test:{port}:127.0.0.1", "--tlsv1.3",
                            f"https://example.test:{port}/tls")
        assert status == 200
        assert last_request(backend)["headers"]["X-TLS"] == "TLSv1.3 example.test"
        line = log_line_for(log, 0, "/tls")
        f = parse_custom(line)
        assert f["proto"] == "TLSv1.3" and f["sni"] == "example.test" and f["reused"] == "."
        assert f["cipher"].startswith("TLS_") and f["scheme"] == "https"
    finally:
        proxy.stop()
        backend.stop()
        proxy.assert_clean()


def test_retry_counts_tries_and_logs_the_last_backend(tmp_path):
    """A pool whose first backend refuses connections: a request that
    tried it and then the live one logs tries=2 and the live backend."""
    live = HttpBackend(name="live").start()
    dead = free_port()  # nothing listens there: the connect is refused
    port = free_port()
    log = tmp_path / "retry.log"
    cfg = f"""workers: 1
admin: {{ listen: off }}
log_formats:
  r: '"$request" $status up=$upstream_addr tries=$upstream_tries uct=$upstream_connect_time urt=$upstream_response_time'
pools:
  - name: app
    retries: 2
    passive: {{ max_fails: 0 }}
    backends: [127.0.0.1:{dead}, {live.address}]
listeners:
  - name: web
    listen: 127.0.0.1:{port}
    pool: app
    access_log: {log}
    access_log_format: r
"""
    proxy = conftest.Sluice(tmp_path, cfg)
    try:
        proxy.start(wait_ports=[port])
        for i in range(4):
            status, _, _ = curl(f"http://127.0.0.1:{port}/r{i}")
            assert status == 200
        lines = [parse_custom(log_line_for(log, 0, "/r%d " % i)) for i in range(4)]
        assert all(x["up"] == live.address for x in lines)
        tries = [x["tries"] for x in lines]
        # round robin: a request that met the dead backend first tried two
        assert "2" in tries and set(tries) <= {"1", "2"}, tries
        assert all(float(x["urt"]) >= float(x["uct"]) >= 0 for x in lines)
    finally:
        proxy.stop()
        live.stop()
        proxy.assert_clean()
