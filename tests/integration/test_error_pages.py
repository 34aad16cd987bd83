"""Custom error pages (listeners[].error_pages, src/proxy/error_pages.c).

A page replaces the body and Content-Type of an answer Sluice makes itself
(404 without a route, 502 when every backend failed, 503 when none is
available); a backend's own error response passes untouched. Checked with
curl and raw sockets, over HTTP/1.1 and HTTP/2: the framing stays exact
(Content-Length is the page's size, HEAD gets none of it), and a reload
reads the files again.
"""
import os
import shutil
import socket
import subprocess

import pytest

from helpers import admin, free_port, wait_for
from raw_servers import http_config

import conftest

pytestmark = pytest.mark.skipif(not shutil.which("curl"), reason="needs curl")

PAGE_503 = b"<!doctype html><title>Down</title><h1>We are down for a moment</h1>\n"
PAGE_404 = b'{"error": "no such page"}\n'
PAGE_502 = "<p>backend trouble \u2014 try again</p>\n".encode()


def dead_port():
    """A local port nothing listens on (connect is refused)."""
    return free_port()


def pages_yaml(pages):
    """error_pages: as a flow mapping of status -> path."""
    return "{ %s }" % ", ".join("%d: %s" % kv for kv in pages.items())


def start(tmp_path, pages, pool_addrs, routes=None, default_pool="app"):
    port, aport = free_port(), free_port()
    cfg = http_config(port, {"app": pool_addrs}, routes=routes, default_pool=default_pool, admin_port=aport,
                      listener_extra={"error_pages": pages_yaml(pages)})
    s = conftest.Sluice(tmp_path, cfg)
    s.start(wait_ports=[port, aport])
    return s, port, aport


def write(tmp_path, name, data):
    p = tmp_path / name
    p.write_bytes(data)
    return str(p)


def curl(port, path, *args):
    """(status, content_type, body bytes, headers text) of one curl run."""
    out = subprocess.run(["curl", "-sS", "-D", "-", "-o", "/dev/stdout", *args, "http://127.0.0.1:%d%s" % (port, path)],
                         capture_output=True, timeout=20)
    assert out.returncode == 0, out.stderr
    head, _, body = out.stdout.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    status = int(lines[0].split()[1])
    fields = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        fields[k.strip().lower()] = v.strip()
    return status, fields, body


def raw_exchange(port, request):
    """Send request bytes, read until the proxy closes; the whole answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(request)
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return data
            data += chunk


def split_answer(data):
    head, sep, body = data.partition(b"\r\n\r\n")
    assert sep, data
    lines = head.decode().split("\r\n")
    fields = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        fields[k.strip().lower()] = v.strip()
    return int(lines[0].split()[1]), fields, body


def test_503_page_when_no_backend_is_available(tmp_path, backends):
    (b,) = backends(1)
    page = write(tmp_path, "503.html", PAGE_503)
    s, port, aport = start(tmp_path, {503: page}, [b.address])
    try:
        assert curl(port, "/ok")[0] == 200
        assert admin(aport, "POST", "/api/pools/app/backends/%s/disable" % b.address)[0] == 200
        # Workers see the change on their next tick (100 ms).
        assert wait_for(lambda: curl(port, "/x")[0] == 503, timeout=10)
        status, fields, body = curl(port, "/x")
        assert status == 503
        assert body == PAGE_503
        assert fields["content-type"] == "text/html; charset=utf-8"
        assert fields["content-length"] == str(len(PAGE_503))
        assert fields["connection"] == "close"
        # HEAD: the same head (Content-Length of the page), and no body at all.
        data = raw_exchange(port, b"HEAD /x HTTP/1.1\r\nHost: t\r\n\r\n")
        status, fields, body = split_answer(data)
        assert status == 503 and fields["content-length"] == str(len(PAGE_503)) and body == b""
        # A GET read by its Content-Length alone: exactly the page, then the close.
        data = raw_exchange(port, b"GET /x HTTP/1.1\r\nHost: t\r\n\r\n")
        status, fields, body = split_answer(data)
        assert body == PAGE_503
    finally:
        s.stop()
        s.assert_clean()


def test_404_page_and_a_status_without_page(tmp_path, backends):
    (b,) = backends(1)
    page = write(tmp_path, "404.json", PAGE_404)
    s, port, _ = start(tmp_path, {404: page}, [b.address], routes=[(None, "/api/", "app")], default_pool=None)
    try:
        status, fields, body = curl(port, "/elsewhere")
        assert (status, body) == (404, PAGE_404)
        assert fields["content-type"] == "application/json"
        assert curl(port, "/api/x")[0] == 200
        # A status without a page keeps Sluice's line of text.
        data = raw_exchange(port, b"GET /api/x HTTP/1.1\r\nHost: t\r\nContent-Length: x\r\n\r\n")
        status, fields, body = split_answer(data)
        assert status == 400 and fields["content-type"] == "text/plain" and body.startswith(b"400 Bad Request")
    finally:
        s.stop()
        s.assert_clean()


def test_route_pages_before_the_listener_pages(tmp_path):
    """routes[].error_pages: a routed request's answer takes the route's
    page for its status, then the listener's; a request no route takes
    (404) and statuses the route has no page for take the listener's."""
    route_page = write(tmp_path, "api-502.json", b'{"error": "api backend down"}\n')
    listener_502 = write(tmp_path, "502.html", PAGE_502)
    listener_404 = write(tmp_path, "404.json", PAGE_404)
    port, aport = free_port(), free_port()
    cfg = http_config(port, {"app": ["127.0.0.1:%d" % dead_port()]}, routes=[(None, "/api/", "app"), (None, "/web/", "app")],
                      admin_port=aport, listener_extra={"error_pages": pages_yaml({502: listener_502, 404: listener_404})})
    cfg = cfg.replace("        path_prefix: /api/\n",
                      "        path_prefix: /api/\n        error_pages: { 502: %s }\n" % route_page)
    s = conftest.Sluice(tmp_path, cfg)
    s.start(wait_ports=[port, aport])
    try:
        status, fields, body = curl(port, "/api/x")
        assert (status, body, fields["content-type"]) == (502, b'{"error": "api backend down"}\n', "application/json")
        assert curl(port, "/web/x")[:3:2] == (502, PAGE_502)
        assert curl(port, "/elsewhere")[:3:2] == (404, PAGE_404)
    finally:
        s.stop()
        s.assert_clean()


def test_502_page_for_a_dead_backend_but_not_for_a_backend_502(tmp_path, backends):
    (b,) = backends(1)
    page = write(tmp_path, "502.html", PAGE_502)
    dead = "127.0.0.1:%d" % dead_port()
    port, aport = free_port(), free_port()
    cfg = http_config(port, {"app": [b.address], "gone": [dead]}, routes=[(None, "/gone/", "gone")],
                      default_pool="app", admin_port=aport, listener_extra={"error_pages": pages_yaml({502: page})})
    s = conftest.Sluice(tmp_path, cfg)
    s.start(wait_ports=[port, aport])
    try:
        status, fields, body = curl(port, "/gone/x")
        assert (status, body) == (502, PAGE_502)
        assert fields["content-length"] == str(len(PAGE_502))
        # The backend's own 502 is its answer, passed on as it is (nginx:
        # proxy_intercept_errors off).
        status, fields, body = curl(port, "/status/502")
        assert status == 502 and body != PAGE_502
        assert "sluice" not in fields.get("server", "")
    finally:
        s.stop()
        s.assert_clean()


def h2_exchange(sock, conn, stream_id, method, path):
    """One request on an open HTTP/2 connection (python h2), read to its
    end: (headers dict, body bytes, whether the stream ended cleanly)."""
    import h2.events
    conn.send_headers(stream_id, [(":method", method), (":path", path), (":scheme", "http"),
                                  (":authority", "t")], end_stream=True)
    sock.sendall(conn.data_to_send())
    headers, body = {}, b""
    while True:
        data = sock.recv(65536)
        assert data, "the proxy closed the HTTP/2 connection"
        for ev in conn.receive_data(data):
            if isinstance(ev, h2.events.ResponseReceived) and ev.stream_id == stream_id:
                headers = {k.decode(): v.decode() for k, v in ev.headers}
            elif isinstance(ev, h2.events.DataReceived) and ev.stream_id == stream_id:
                body += ev.data
                conn.acknowledge_received_data(ev.flow_controlled_length, stream_id)
            elif isinstance(ev, h2.events.StreamEnded) and ev.stream_id == stream_id:
                sock.sendall(conn.data_to_send())
                return headers, body, True
            elif isinstance(ev, (h2.events.StreamReset, h2.events.ConnectionTerminated)):
                return headers, body, False
        sock.sendall(conn.data_to_send())


def test_http2_page_and_the_connection_carries_on(tmp_path, backends):
    import h2.config
    import h2.connection
    (b,) = backends(1)
    page = write(tmp_path, "404.html", PAGE_503)
    s, port, _ = start(tmp_path, {404: page}, [b.address], routes=[(None, "/api/", "app")], default_pool=None)
    try:
        # One HTTP/2 connection: the page, a HEAD of it, then a proxied
        # request, each framed right and the connection kept.
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            conn = h2.connection.H2Connection(config=h2.config.H2Configuration(client_side=True))
            conn.initiate_connection()
            sock.sendall(conn.data_to_send())
            headers, body, ok = h2_exchange(sock, conn, 1, "GET", "/nothing")
            assert ok and headers[":status"] == "404" and body == PAGE_503
            assert headers["content-type"] == "text/html; charset=utf-8"
            assert headers["content-length"] == str(len(PAGE_503))
            headers, body, ok = h2_exchange(sock, conn, 3, "HEAD", "/nothing")
            assert ok and headers[":status"] == "404" and body == b""
            assert headers["content-length"] == str(len(PAGE_503))
            headers, body, ok = h2_exchange(sock, conn, 5, "GET", "/api/x")
            assert ok and headers[":status"] == "200"
    finally:
        s.stop()
        s.assert_clean()


def test_reload_reads_the_pages_again(tmp_path, backends):
    (b,) = backends(1)
    page = write(tmp_path, "404.html", b"<p>first</p>\n")
    s, port, aport = start(tmp_path, {404: page}, [b.address], routes=[(None, "/api/", "app")], default_pool=None)
    try:
        assert curl(port, "/x")[2] == b"<p>first</p>\n"
        # The file changes, the configuration does not: SIGHUP reads it again.
        write(tmp_path, "404.html", b"<p>second, longer</p>\n")
        s.reload()
        assert wait_for(lambda: curl(port, "/x")[2] == b"<p>second, longer</p>\n", timeout=10)
        # A reload whose page is gone is refused whole; the page served stays.
        os.unlink(page)
        s.reload()
        assert wait_for(lambda: "reload aborted" in s.read_log() or "cannot open %s" % page in s.read_log(),
                        timeout=10), s.read_log()
        assert "cannot open %s" % page in s.read_log()
        assert curl(port, "/x")[2] == b"<p>second, longer</p>\n"
    finally:
        s.stop()
        s.assert_clean()


def test_check_reports_bad_pages(tmp_path):
    big = write(tmp_path, "big.html", b"x" * (64 * 1024 + 1))
    ok = write(tmp_path, "ok.html", b"ok")
    cfg = http_config(8080, {"app": ["127.0.0.1:9"]}, default_pool="app",
                      listener_extra={"error_pages": pages_yaml({503: big, 200: ok})})
    path = tmp_path / "bad.yaml"
    path.write_text(cfg)
    out = subprocess.run([conftest.SLUICE_BIN, "check", "-c", str(path)], capture_output=True, text=True, timeout=30)
    assert out.returncode != 0
    line = next(i + 1 for i, t in enumerate(cfg.split("\n")) if "error_pages" in t)
    assert "%s:%d: listeners[0].error_pages.503: %s has 65537 bytes, more than the 65536 a page may have" % (
        path, line, big) in out.stderr, out.stderr
    assert "%s:%d: listeners[0].error_pages.200: not a status Sluice answers with itself" % (path, line) in out.stderr


def test_largest_page_arrives_whole(tmp_path, backends):
    """A page of the full 64 KiB: more than the usual head room of the
    HTTP/1 buffer, and more than HTTP/2's initial stream window (65535)."""
    import h2.config
    import h2.connection
    (b,) = backends(1)
    big = bytes((i * 7) % 251 for i in range(64 * 1024))
    page = write(tmp_path, "404.txt", big)
    s, port, _ = start(tmp_path, {404: page}, [b.address], routes=[(None, "/api/", "app")], default_pool=None)
    try:
        status, fields, body = split_answer(raw_exchange(port, b"GET /none HTTP/1.1\r\nHost: t\r\n\r\n"))
        assert status == 404 and fields["content-length"] == str(len(big)) and body == big
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            conn = h2.connection.H2Connection(config=h2.config.H2Configuration(client_side=True))
            conn.initiate_connection()
            sock.sendall(conn.data_to_send())
            headers, body, ok = h2_exchange(sock, conn, 1, "GET", "/none")
            assert ok and headers[":status"] == "404" and body == big
            headers, body, ok = h2_exchange(sock, conn, 3, "GET", "/api/x")
            assert ok and headers[":status"] == "200"
    finally:
        s.stop()
        s.assert_clean()
