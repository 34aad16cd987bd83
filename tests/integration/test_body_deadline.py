"""The request body deadline (timeouts.client_body, limits.min_body_rate).

Every byte a client sends pushes the connection's timer back, so a body
dripped one byte at a time used to hold a client connection and a backend
connection for as long as the sender liked. The body must now arrive within
client_body (plus 1/min_body_rate s per byte received, plus the time the
client was held up by a backend that did not take the body).
"""
import hashlib
import select
import socket
import time


from helpers import free_port, metric, wait_for
from raw_servers import HttpClient, http_config, numbered_blocks, parse_head, sink_source_handler

import conftest


def eof_recorder(conn, srv):
    """Read a head, then everything until the proxy closes; log both."""
    head = conn.read_head()
    if head is None:
        return
    with srv.lock:
        srv.log.append({"head": head})
    while conn._fill():
        pass
    with srv.lock:
        srv.log.append({"eof": True})


def late_reader(delay):
    """Read the head, take no body for `delay` seconds, then read it all and answer."""
    def handler(conn, srv):
        head = conn.read_head()
        if head is None:
            return
        _, hdr = parse_head(head)
        time.sleep(delay)
        h = hashlib.sha256()
        n = conn.read_exact_into_hash(int(hdr["content-length"][0]), h)
        body = b"%d %s\n" % (n, h.hexdigest().encode())
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
    return handler


def start_proxy(sluice, backend, timeouts=None, limits=None):
    port, aport = free_port(), free_port()
    proxy = sluice(http_config(port, {"app": [backend.addr]}, default_pool="app", admin_port=aport,
                               timeouts=timeouts, limits=limits), wait_ports=[port, aport])
    proxy.port, proxy.aport = port, aport
    return proxy


def test_dripped_body_gets_408_at_the_deadline(sluice, raw_servers):
    backend = raw_servers(eof_recorder)
    proxy = start_proxy(sluice, backend, timeouts={"client_body": "2s"})
    length = 40   # 28 s of drip at 0.7 s a byte: far past the deadline
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.sendall(b"POST /drip HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % length)
        t0 = time.monotonic()
        sent, got = 0, b""
        while sent < length and time.monotonic() - t0 < 12:
            try:
                s.sendall(b"x")
            except OSError:
                break
            sent += 1
            r, _, _ = select.select([s], [], [], 0.7)
            if r:
                break
        took = time.monotonic() - t0
        try:
            while True:
                b = s.recv(65536)
                if not b:
                    break
                got += b
        except (ConnectionResetError, socket.timeout):
            pass
    assert got.startswith(b"HTTP/1.1 408 "), (sent, took, got[:200])
    assert b"\r\nConnection: close\r\n" in got
    assert sent < length
    assert took >= 1.9, took   # not before the deadline (counted from the end of the head)
    # The backend connection was closed, not put back in the pool mid-body.
    assert wait_for(lambda: {"eof": True} in backend.log, 5), backend.log
    assert metric(proxy.aport, "sluice_listener_client_body_timeouts_total", listener="web") == 1
    assert metric(proxy.aport, "sluice_listener_timeouts_total", listener="web") >= 1


def test_fast_upload_within_the_deadline(sluice, raw_servers):
    backend = raw_servers(sink_source_handler, keep_bytes=False)
    proxy = start_proxy(sluice, backend, timeouts={"client_body": "2s"})
    total = 8 << 20
    h = hashlib.sha256()
    with HttpClient(proxy.port, timeout=20) as c:
        c.send(b"PUT /up HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % total)
        for block in numbered_blocks(total):
            h.update(block)
            c.send(block)
        r = c.read_response()
    assert r.status == 200 and r.body == b"%d %s\n" % (total, h.hexdigest().encode())
    assert metric(proxy.aport, "sluice_listener_client_body_timeouts_total", listener="web") == 0


def test_backend_backpressure_is_not_the_clients_time(sluice, raw_servers):
    """The backend takes no body for 4 s: the client cannot send (our buffer and
    the kernel's are full), and that wait does not count against client_body.
    min_body_rate 0, so no allowance for bytes received hides it."""
    backend = raw_servers(late_reader(4.0), keep_bytes=False)
    proxy = start_proxy(sluice, backend, timeouts={"client_body": "2s"}, limits={"min_body_rate": 0})
    total = 48 << 20   # more than the socket buffers on the way hold
    h = hashlib.sha256()
    with HttpClient(proxy.port, timeout=30) as c:
        c.send(b"PUT /held HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % total)
        for block in numbered_blocks(total):
            h.update(block)
            c.send(block)
        r = c.read_response()
    assert r.status == 200, r.raw_head
    assert r.body == b"%d %s\n" % (total, h.hexdigest().encode())
    assert metric(proxy.aport, "sluice_listener_client_body_timeouts_total", listener="web") == 0
