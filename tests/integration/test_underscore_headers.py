"""Header fields whose name contains '_' (listeners[].allow_underscores_in_headers).

Gateways that turn header names into variables (CGI, WSGI, PHP, Rack) map
'-' to '_', so `Transfer_Encoding` reaches the application as
Transfer-Encoding. A proxy that frames a request by its Content-Length and
passes `Transfer_Encoding: chunked` along lets such a back end read the body
as chunked, and whatever follows the chunked end is a second request that the
proxy never saw or routed. The back end here reads requests that way, so a
smuggled request shows up in its log.
"""
import hashlib
import socket
import time

import pytest

from helpers import free_port, metric, wait_for
from raw_servers import HttpClient, RawServer, http_config, parse_head

import conftest

SMUGGLED = b"GET /smuggled HTTP/1.1\r\nHost: t\r\n\r\n"
# Chunked, this body ends after "0\r\n\r\n"; by its Content-Length it is all one body.
BODY = b"0\r\n\r\n" + SMUGGLED


def folded(headers):
    """{lower-name: [values]} as a CGI-style gateway sees them: '_' is '-'."""
    out = {}
    for name, values in headers.items():
        out.setdefault(name.replace("_", "-"), []).extend(values)
    return out


def gateway_handler(conn, srv):
    """Keep-alive loop that frames requests like a CGI/WSGI gateway behind a
    lenient server: names folded, Transfer-Encoding before Content-Length.
    Logs each request it reads; answers with a Transfer_Encoding look-alike
    and an ordinary underscore field in the response."""
    while True:
        head = conn.read_head()
        if head is None:
            return
        (method, target, _), hdr = parse_head(head)
        with srv.lock:
            srv.log.append({"target": target, "head": head})
        fields = folded(hdr)
        if "chunked" in ",".join(fields.get("transfer-encoding", [])).lower():
            conn.read_chunked_into_hash(hashlib.sha256())
        elif "content-length" in fields:
            conn.read_exact_into_hash(int(fields["content-length"][0]), hashlib.sha256())
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer_Encoding: chunked\r\n"
                     b"X_Powered_By: gateway\r\n\r\nok\n")


class Env:
    pass


def start(tmp_path, allow):
    e = Env()
    e.backend = RawServer(gateway_handler, name="gateway")
    e.port, e.aport = free_port(), free_port()
    extra = {"allow_underscores_in_headers": "true"} if allow else None
    cfg = http_config(e.port, {"app": [e.backend.addr]}, default_pool="app", admin_port=e.aport,
                      listener_extra=extra)
    e.proxy = conftest.Sluice(tmp_path, cfg)
    e.proxy.start(wait_ports=[e.port, e.aport])
    return e


@pytest.fixture
def default_env(tmp_path):
    e = start(tmp_path, allow=False)
    yield e
    e.proxy.stop()
    e.backend.stop()
    e.proxy.assert_clean()


@pytest.fixture
def allow_env(tmp_path):
    e = start(tmp_path, allow=True)
    yield e
    e.proxy.stop()
    e.backend.stop()
    e.proxy.assert_clean()


def smuggle_attempt(port):
    """POST with Content-Length and Transfer_Encoding: chunked; returns the
    responses read on the connection (the proxy answers one request)."""
    raw = (b"POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\nTransfer_Encoding: chunked\r\n"
           b"X_Forwarded_For: 6.6.6.6\r\nX_Api_Key: k\r\n\r\n" % len(BODY)) + BODY
    with HttpClient(port, timeout=5) as c:
        c.send(raw)
        return c.read_response(method="POST")


def requests_seen(e):
    with e.backend.lock:
        return list(e.backend.log)


def test_underscore_headers_dropped_and_nothing_smuggled(default_env):
    e = default_env
    r = smuggle_attempt(e.port)
    assert r.status == 200 and r.body == b"ok\n"
    assert wait_for(lambda: requests_seen(e), 3)
    time.sleep(0.3)   # a smuggled request would come right behind the first one
    seen = requests_seen(e)
    assert [s["target"] for s in seen] == ["/upload"], seen
    _, hdr = parse_head(seen[0]["head"])
    # None of the '_' fields reached the back end; the framing it got is ours.
    assert not [n for n in hdr if "_" in n], seen[0]["head"]
    assert hdr["content-length"] == [str(len(BODY))]
    assert "transfer-encoding" not in hdr
    assert hdr["x-forwarded-for"] == ["127.0.0.1"]
    assert metric(e.aport, "sluice_listener_underscore_headers_dropped_total",
                  listener="web", direction="request") == 3


def test_response_framing_lookalike_dropped(default_env):
    """The back end's `Transfer_Encoding: chunked` beside the Content-Length does
    not reach the client; an ordinary '_' field in a response does."""
    e = default_env
    with socket.create_connection(("127.0.0.1", e.port), timeout=5) as s:
        s.sendall(b"GET /r HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        got = b""
        while True:
            b = s.recv(65536)
            if not b:
                break
            got += b
    head, _, body = got.partition(b"\r\n\r\n")
    _, hdr = parse_head(head + b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ") and body == b"ok\n"
    assert "transfer_encoding" not in hdr and "transfer-encoding" not in hdr
    assert hdr["x_powered_by"] == ["gateway"]
    assert metric(e.aport, "sluice_listener_underscore_headers_dropped_total",
                  listener="web", direction="response") == 1


def test_allow_underscores_passes_them_through(allow_env):
    e = allow_env
    # A body that frames the same either way, since this gateway would read it
    # as chunked: allowing the fields is the operator's call.
    with HttpClient(e.port, timeout=5) as c:
        c.send(b"POST /allowed HTTP/1.1\r\nHost: t\r\nX_Api_Key: k\r\nTransfer_Encoding: chunked\r\n"
               b"Content-Length: 5\r\n\r\n0\r\n\r\n")
        assert c.read_response(method="POST").status == 200
    seen = requests_seen(e)
    assert [s["target"] for s in seen] == ["/allowed"]
    _, hdr = parse_head(seen[0]["head"])
    assert hdr["x_api_key"] == ["k"] and hdr["transfer_encoding"] == ["chunked"]
    assert metric(e.aport, "sluice_listener_underscore_headers_dropped_total",
                  listener="web", direction="request") == 0
