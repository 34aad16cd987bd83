"""HTTP/2 to clients (src/proxy/h2_*.c): h2c with prior knowledge on a plain
http listener, every stream its own transaction to HTTP/1.1 backends.

Real clients: curl --http2-prior-knowledge, nghttp, h2load, and raw frames
(hyperframe + hpack, which python3-h2 brings) for what polite clients never
send: bad header blocks, floods. The 1 GiB tests run the release binary
(build/sluice), as test_http_proxy.py does, because AddressSanitizer's
quarantine would make the worker's RSS meaningless.
"""
import hashlib
import os
import re
import shutil
import signal
import socket
import subprocess
import time

import hpack
import pytest
from hyperframe.frame import (ContinuationFrame, DataFrame, Frame, GoAwayFrame, HeadersFrame, PingFrame,
                              RstStreamFrame, SettingsFrame)

from helpers import free_port, metric, wait_for
from raw_servers import RawServer, RssSampler, child_pids, numbered_blocks, parse_head, sink_source_handler

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
GIB = 1 << 30
PROTOCOL_ERROR, INTERNAL_ERROR, REFUSED_STREAM, ENHANCE_YOUR_CALM = 0x1, 0x2, 0x7, 0xb

pytestmark = pytest.mark.skipif(not shutil.which("curl") or not shutil.which("nghttp") or not shutil.which("h2load"),
                                reason="needs curl, nghttp and h2load")


def config(port, admin_port, pools, http2=None, access_log=None, retries=0, log_level="warn", timeouts=None):
    y = "workers: 1\nadmin: { listen: 127.0.0.1:%d }\nlog: { level: %s }\npools:\n" % (admin_port, log_level)
    for name, addrs in pools.items():
        y += "  - name: %s\n    retries: %d\n    passive: { max_fails: 0 }\n" % (name, retries)
        y += "    backends: [%s]\n" % ", ".join(addrs)
    y += "listeners:\n  - name: web\n    listen: 127.0.0.1:%d\n    pool: %s\n" % (port, next(iter(pools)))
    if http2:
        y += "    http2: { %s }\n" % ", ".join("%s: %s" % kv for kv in http2.items())
    if access_log:
        y += "    access_log: %s\n" % access_log
    if timeouts:
        y += "    timeouts: { %s }\n" % ", ".join("%s: %s" % kv for kv in timeouts.items())
    return y


def start(sluice, pools, **kw):
    port, aport = free_port(), free_port()
    proxy = sluice(config(port, aport, pools, **kw), wait_ports=[port, aport])
    proxy.port, proxy.aport = port, aport
    return proxy


@pytest.fixture
def raw_servers():
    made = []

    def make(handler, **kw):
        s = RawServer(handler, **kw)
        made.append(s)
        return s

    yield make
    for s in made:
        s.stop()


@pytest.fixture
def release_sluice(sluice, monkeypatch):
    rel = os.path.join(ROOT, "build", "sluice")
    if not os.access(rel, os.X_OK):
        pytest.skip("build/sluice not built")
    monkeypatch.setitem(sluice.__globals__, "SLUICE_BIN", rel)
    return sluice


def curl(port, path, *args, timeout=60):
    """One request with curl over h2c: (status, headers, body)."""
    r = subprocess.run(["curl", "-sS", "--http2-prior-knowledge", "-D", "-", *args,
                        "http://127.0.0.1:%d%s" % (port, path)], capture_output=True, timeout=timeout)
    assert r.returncode == 0, r.stderr
    head, _, body = r.stdout.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    assert lines[0].startswith("HTTP/2 "), lines[0]
    hdrs = {k.lower(): v.strip() for k, _, v in (l.partition(":") for l in lines[1:])}
    return int(lines[0].split()[1]), hdrs, body


class RawH2:
    """A client that writes frames as given: bad ones included."""

    def __init__(self, port, settings=True):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.enc, self.dec = hpack.Encoder(), hpack.Decoder()
        self.buf = b""
        self.auto_ack = True
        self.sock.sendall(PREFACE + (SettingsFrame(0).serialize() if settings else b""))

    def close(self):
        self.sock.close()

    def block(self, fields):
        return self.enc.encode(fields)

    def headers(self, sid, fields, end_stream=True, end_headers=True):
        f = HeadersFrame(sid)
        f.data = self.block(fields)
        if end_stream:
            f.flags.add("END_STREAM")
        if end_headers:
            f.flags.add("END_HEADERS")
        return f

    @staticmethod
    def data(sid, payload, end_stream=False):
        f = DataFrame(sid)
        f.data = payload
        if end_stream:
            f.flags.add("END_STREAM")
        return f

    def send(self, *frames):
        self.sock.sendall(b"".join(f.serialize() if isinstance(f, Frame) else f for f in frames))

    def frame(self):
        """The next frame, or None at the end of the connection."""
        while True:
            if len(self.buf) >= 9:
                f, length = Frame.parse_frame_header(memoryview(self.buf[:9]))
                if len(self.buf) >= 9 + length:
                    f.parse_body(memoryview(self.buf[9:9 + length]))
                    self.buf = self.buf[9 + length:]
                    if isinstance(f, SettingsFrame) and "ACK" not in f.flags and self.auto_ack:
                        ack = SettingsFrame(0)
                        ack.flags.add("ACK")
                        self.send(ack)
                    return f
            try:
                d = self.sock.recv(65536)
            except (ConnectionResetError, socket.timeout):
                return None
            if not d:
                return None
            self.buf += d

    def responses(self, sids):
        """Read until every stream in sids ended or was reset: {sid: ("rst", code) or (status, headers, body)}."""
        out, heads, bodies = {}, {}, {}
        while set(sids) - set(out):
            f = self.frame()
            if f is None or isinstance(f, GoAwayFrame):
                break
            if isinstance(f, HeadersFrame):
                h = dict(self.dec.decode(f.data))
                if int(h[":status"]) >= 200:
                    heads[f.stream_id] = h
            elif isinstance(f, DataFrame):
                bodies[f.stream_id] = bodies.get(f.stream_id, b"") + f.data
            elif isinstance(f, RstStreamFrame) and f.stream_id not in out:
                out[f.stream_id] = ("rst", f.error_code)
            if "END_STREAM" in getattr(f, "flags", ()) and f.stream_id in heads:
                h = heads[f.stream_id]
                out[f.stream_id] = (int(h[":status"]), h, bodies.get(f.stream_id, b""))
        return out

    def until_closed(self):
        """Read to the end of the connection: the GOAWAY seen, or None."""
        goaway = None
        for _ in range(100000):
            f = self.frame()
            if f is None:
                return goaway
            if isinstance(f, GoAwayFrame):
                goaway = f
        return goaway


def req(path="/", method="GET", extra=()):
    return [(":method", method), (":scheme", "http"), (":path", path), (":authority", "t")] + list(extra)


# ------------------------------------------------------------------ basics

def test_curl_get_post_and_large_response(sluice, backends, tmp_path):
    b, = backends(1)
    log = tmp_path / "access.log"
    proxy = start(sluice, {"app": [b.address]}, access_log=log)
    status, h, body = curl(proxy.port, "/hello")
    assert status == 200 and body == b"b1 GET /hello body=0 sha256=%s\n" % hashlib.sha256(b"").hexdigest().encode()
    assert h["x-backend"] == "b1"
    sent = {k.lower(): v for k, v in b.requests[-1]["headers"].items()}
    # :authority became Host; the client's address is appended for the backend.
    assert sent["host"] == "127.0.0.1:%d" % proxy.port and sent["x-forwarded-for"] == "127.0.0.1"
    status, _, body = curl(proxy.port, "/form", "-d", "hello world")
    assert status == 200 and b"POST /form body=11 sha256=%s" % hashlib.sha256(b"hello world").hexdigest().encode() in body
    status, h, body = curl(proxy.port, "/bytes/5000000")
    assert status == 200 and len(body) == 5000000 and body == (bytes(range(256)) * 256 * 77)[:5000000]
    status, h, body = curl(proxy.port, "/chunked/50")
    assert status == 200 and body == b"".join(b"chunk-%d;" % i for i in range(50))
    assert "transfer-encoding" not in h
    c = RawH2(proxy.port)
    c.send(c.headers(1, req("/hello", "HEAD")))
    status, h, body = c.responses([1])[1]
    c.close()
    assert status == 200 and body == b"" and h["content-length"] == "94"
    assert metric(proxy.aport, "sluice_http2_connections_total", listener="web") == 5
    assert metric(proxy.aport, "sluice_http2_streams_total", listener="web") == 5
    lines = wait_for(lambda: len(log.read_text().splitlines()) >= 5 and log.read_text().splitlines(), timeout=5)
    assert '"GET /hello HTTP/2.0" 200' in lines[0], lines[0]


def test_preface_split_across_reads_and_http1_still_works(sluice, backends):
    b, = backends(1)
    proxy = start(sluice, {"app": [b.address]})
    c = socket.create_connection(("127.0.0.1", proxy.port), timeout=10)
    # "PRI * HTTP/2.0\r\n\r\n" alone is a complete HTTP/1 head: the rest must be waited for.
    for piece in (PREFACE[:5], PREFACE[5:18], PREFACE[18:]):
        c.sendall(piece)
        time.sleep(0.1)
    h2 = RawH2.__new__(RawH2)
    h2.sock, h2.enc, h2.dec, h2.buf, h2.auto_ack = c, hpack.Encoder(), hpack.Decoder(), b"", True
    h2.send(SettingsFrame(0), h2.headers(1, req("/split")))
    r = h2.responses([1])
    assert r[1][0] == 200 and b"GET /split" in r[1][2]
    c.close()
    c = socket.create_connection(("127.0.0.1", proxy.port), timeout=10)
    c.sendall(b"GET /one HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    data = b""
    while True:
        d = c.recv(65536)
        if not d:
            break
        data += d
    assert data.startswith(b"HTTP/1.1 200") and b"GET /one" in data


def test_nghttp_many_streams_one_connection_spread_over_backends(sluice, backends):
    bs = backends(3)
    proxy = start(sluice, {"app": [b.address for b in bs]})
    r = subprocess.run(["nghttp", "-n", "-s", "-m", "60", "http://127.0.0.1:%d/many" % proxy.port],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert sum(b.count() for b in bs) == 60 and all(b.count() == 20 for b in bs), [b.count() for b in bs]
    assert metric(proxy.aport, "sluice_http2_connections_total", listener="web") == 1
    assert metric(proxy.aport, "sluice_listener_responses_total", listener="web", code="2xx") == 60


def test_h2load_bounded(sluice, backends):
    bs = backends(2)
    proxy = start(sluice, {"app": [b.address for b in bs]})
    r = subprocess.run(["h2load", "-n", "400", "-c", "4", "-m", "10", "http://127.0.0.1:%d/load" % proxy.port],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert re.search(r"requests: 400 total, 400 started, 400 done, 400 succeeded, 0 failed", r.stdout), r.stdout
    assert re.search(r"status codes: 400 2xx", r.stdout), r.stdout


# ------------------------------------------------------------------ what reaches a backend

BAD_HEADS = [
    ("uppercase name", req(extra=[("X-Upper", "1")])),
    ("connection", req(extra=[("connection", "keep-alive")])),
    ("keep-alive", req(extra=[("keep-alive", "5")])),
    ("proxy-connection", req(extra=[("proxy-connection", "close")])),
    ("transfer-encoding", req(extra=[("transfer-encoding", "chunked")])),
    ("upgrade", req(extra=[("upgrade", "websocket")])),
    ("te other than trailers", req(extra=[("te", "gzip")])),
    ("missing :path", [(":method", "GET"), (":scheme", "http"), (":authority", "t")]),
    ("missing :method", [(":scheme", "http"), (":path", "/"), (":authority", "t")]),
    ("unknown pseudo-header", req(extra=[(":foo", "bar")])),
    ("pseudo-header after a field", [(":method", "GET"), (":scheme", "http"), ("x-a", "1"), (":path", "/")]),
    ("duplicate :path", req() + [(":path", "/again")]),
    ("space in :path", [(":method", "GET"), (":scheme", "http"), (":path", "/a b"), (":authority", "t")]),
]


@pytest.mark.parametrize("name,fields", BAD_HEADS, ids=[n for n, _ in BAD_HEADS])
def test_malformed_request_is_reset_and_never_reaches_a_backend(sluice, backends, name, fields):
    b, = backends(1)
    proxy = start(sluice, {"app": [b.address]})
    c = RawH2(proxy.port)
    c.send(c.headers(1, fields))
    r = c.responses([1])
    assert r[1] == ("rst", PROTOCOL_ERROR), (name, r)
    # The connection goes on: a good request on it is answered.
    c.send(c.headers(3, req("/after")))
    r = c.responses([3])
    assert r[3][0] == 200, r
    c.close()
    assert [q["path"] for q in b.requests] == ["/after"]


@pytest.mark.parametrize("declared,sent", [(5, b"0123456789"), (10, b"abc")])
def test_content_length_mismatch_is_reset_before_the_backend(sluice, backends, declared, sent):
    b, = backends(1)
    proxy = start(sluice, {"app": [b.address]})
    c = RawH2(proxy.port)
    c.send(c.headers(1, req("/cl", "POST", [("content-length", str(declared))]), end_stream=False),
           c.data(1, sent, end_stream=True))
    r = c.responses([1])
    assert r[1] == ("rst", PROTOCOL_ERROR), r
    c.send(c.headers(3, req("/after")))
    assert c.responses([3])[3][0] == 200
    c.close()
    assert [q["path"] for q in b.requests] == ["/after"]


def test_many_tiny_data_frames_without_length_pause_and_arrive_whole(sluice, raw_servers):
    # Each 1-byte DATA frame becomes a 6-byte chunk upstream: the stream's
    # buffer fills before its window does, so the input pauses until the
    # backend has taken some, and nothing is lost or reordered.
    srv = raw_servers(sink_source_handler)
    proxy = start(sluice, {"app": [srv.addr]}, http2={"initial_window_size": "16k"})
    c = RawH2(proxy.port)
    payload = bytes((i * 7) % 251 for i in range(30000))
    frames = [c.headers(1, req("/tiny", "POST"), end_stream=False)]
    frames += [c.data(1, payload[i:i + 1]) for i in range(len(payload))]
    trailers = c.headers(1, [("x-trailer", "t")], end_stream=True)
    c.send(*frames, trailers)
    r = c.responses([1])
    c.close()
    assert r[1][0] == 200 and r[1][2] == b"%d %s\n" % (len(payload), hashlib.sha256(payload).hexdigest().encode()), r


def test_refused_request_is_logged_as_http2(sluice, backends, tmp_path):
    b, = backends(1)
    log = tmp_path / "access.log"
    proxy = start(sluice, {"app": [b.address]}, access_log=log, http2={"max_header_list_size": "1k"})
    c = RawH2(proxy.port)
    c.send(c.headers(1, req("/big", extra=[("x-big", "v" * 2000)])))
    assert c.responses([1])[1][0] == 431
    c.send(c.headers(3, req("/bad", extra=[("x-c", "\x01")])))
    assert c.responses([3])[3][0] in (400, "rst")
    c.close()
    text = wait_for(lambda: log.exists() and '"GET /big HTTP/2.0" 431' in log.read_text() and log.read_text(), timeout=5)
    assert text, log.read_text() if log.exists() else "no log"


def test_host_differing_from_authority_and_connect_are_answered(sluice, backends):
    b, = backends(1)
    proxy = start(sluice, {"app": [b.address]})
    c = RawH2(proxy.port)
    c.send(c.headers(1, req("/h", extra=[("host", "other")])),
           c.headers(3, [(":method", "CONNECT"), (":authority", "example.com:443")]))
    r = c.responses([1, 3])
    assert r[1][0] == 400 and b"host and :authority differ" in r[1][2], r
    assert r[3][0] == 501, r
    c.close()
    assert b.requests == []


def test_header_list_too_large_gets_431(sluice, backends):
    b, = backends(1)
    proxy = start(sluice, {"app": [b.address]}, http2={"max_header_list_size": "2k"})
    c = RawH2(proxy.port)
    c.send(c.headers(1, req("/big", extra=[("x-big", "v" * 3000)])))
    r = c.responses([1])
    assert r[1][0] == 431, r
    c.send(c.headers(3, req("/small", extra=[("x-small", "v" * 1000)])))
    assert c.responses([3])[3][0] == 200
    c.close()
    assert [q["path"] for q in b.requests] == ["/small"]


def test_cookie_crumbs_joined_for_the_backend(sluice, backends):
    b, = backends(1)
    proxy = start(sluice, {"app": [b.address]})
    c = RawH2(proxy.port)
    c.send(c.headers(1, req("/c", extra=[("cookie", "a=1"), ("x-mid", "m"), ("cookie", "b=2")])))
    assert c.responses([1])[1][0] == 200
    c.close()
    assert b.requests[0]["headers"]["cookie"] == "a=1; b=2"


# ------------------------------------------------------------------ limits and floods

def test_streams_past_the_limit_are_refused(sluice, backends):
    b, = backends(1, delay=0.5)
    proxy = start(sluice, {"app": [b.address]}, http2={"max_concurrent_streams": 2})
    c = RawH2(proxy.port)
    # All at once, before our SETTINGS can be acknowledged.
    c.send(*[c.headers(sid, req("/s%d" % sid)) for sid in (1, 3, 5, 7)])
    r = c.responses([1, 3, 5, 7])
    assert r[1][0] == 200 and r[3][0] == 200, r
    assert r[5] == ("rst", REFUSED_STREAM) and r[7] == ("rst", REFUSED_STREAM), r
    c.close()
    assert sorted(q["path"] for q in b.requests) == ["/s1", "/s3"]


def test_client_ignoring_the_acknowledged_limit_gets_goaway(sluice, backends):
    b, = backends(1)
    proxy = start(sluice, {"app": [b.address]}, http2={"max_concurrent_streams": 2})
    c = RawH2(proxy.port)
    c.send(c.headers(1, req("/first")))
    assert c.responses([1])[1][0] == 200  # our SETTINGS are acknowledged by now
    c.send(*[c.headers(sid, req("/s%d" % sid)) for sid in (3, 5, 7, 9)])
    goaway = c.until_closed()
    c.close()
    assert goaway is not None and goaway.error_code == PROTOCOL_ERROR, goaway
    assert [q["path"] for q in b.requests] == ["/first"]


FLOOD_LIMITS = {"max_resets": 50, "max_pings": 20, "max_settings": 20, "max_empty_frames": 20,
                "max_continuations": 4, "flood_window": "60s"}


def flood_frames(c, kind):
    if kind == "reset":
        out = []
        for i in range(200):
            sid = 1 + 2 * i
            out += [c.headers(sid, req("/r")), RstStreamFrame(sid, error_code=0x8)]
        return out
    if kind == "ping":
        return [PingFrame(0, opaque_data=b"%08d" % i) for i in range(200)]
    if kind == "settings":
        return [SettingsFrame(0) for _ in range(200)]
    if kind == "empty_frames":
        return [c.headers(1, req("/e", "POST"), end_stream=False)] + [c.data(1, b"") for _ in range(200)]
    if kind == "continuation":
        block = c.block(req("/c", extra=[("x-f%d" % i, "v" * 50) for i in range(20)]))
        step = len(block) // 10 + 1
        pieces = [block[i:i + step] for i in range(0, len(block), step)]
        h = HeadersFrame(1)
        h.data = pieces[0]
        h.flags.add("END_STREAM")
        frames = [h]
        for k, p in enumerate(pieces[1:]):
            f = ContinuationFrame(1)
            f.data = p
            if k == len(pieces) - 2:
                f.flags.add("END_HEADERS")
            frames.append(f)
        return frames
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["reset", "ping", "settings", "empty_frames", "continuation"])
def test_flood_closes_the_connection_and_is_counted(sluice, backends, kind):
    b, = backends(1)
    proxy = start(sluice, {"app": [b.address]}, http2=FLOOD_LIMITS)
    bystander = RawH2(proxy.port)
    bystander.send(bystander.headers(1, req("/before")))
    assert bystander.responses([1])[1][0] == 200
    c = RawH2(proxy.port)
    try:
        c.send(*flood_frames(c, kind))
    except (BrokenPipeError, ConnectionResetError):
        pass
    goaway = c.until_closed()
    c.close()
    assert goaway is not None and goaway.error_code == ENHANCE_YOUR_CALM, goaway
    assert metric(proxy.aport, "sluice_http2_flood_closes_total", listener="web", kind=kind) == 1
    for other in ["reset", "ping", "settings", "empty_frames", "continuation"]:
        if other != kind:
            assert metric(proxy.aport, "sluice_http2_flood_closes_total", listener="web", kind=other) == 0
    # Another connection, opened before, keeps working.
    bystander.send(bystander.headers(3, req("/after")))
    assert bystander.responses([3])[3][0] == 200
    bystander.close()


def test_polite_client_under_the_budgets_is_not_closed(sluice, backends):
    b, = backends(1)
    proxy = start(sluice, {"app": [b.address]}, http2=FLOOD_LIMITS)
    c = RawH2(proxy.port)
    frames = [PingFrame(0, opaque_data=b"%08d" % i) for i in range(10)]
    for i in range(20):
        sid = 1 + 2 * i
        frames += [c.headers(sid, req("/r%d" % i))]
    c.send(*frames)
    r = c.responses([1 + 2 * i for i in range(20)])
    assert all(v[0] == 200 for v in r.values()) and len(r) == 20, r
    c.close()
    for kind in ["reset", "ping", "settings", "empty_frames", "continuation", "ack_queue"]:
        assert metric(proxy.aport, "sluice_http2_flood_closes_total", listener="web", kind=kind) == 0


# ------------------------------------------------------------------ timeouts and draining

def test_idle_connection_gets_goaway(sluice, backends):
    b, = backends(1)
    proxy = start(sluice, {"app": [b.address]}, timeouts={"idle": "1s"})
    c = RawH2(proxy.port)
    c.send(c.headers(1, req("/x")))
    assert c.responses([1])[1][0] == 200
    t0 = time.monotonic()
    goaway = c.until_closed()
    c.close()
    assert goaway is not None and goaway.error_code == 0 and goaway.last_stream_id == 1, goaway
    assert time.monotonic() - t0 < 9  # bounded wait: the socket timeout is 10 s


def test_header_block_that_stops_half_way_ends_the_connection(sluice, backends):
    b, = backends(1)
    proxy = start(sluice, {"app": [b.address]}, timeouts={"client_header": "1s"})
    c = RawH2(proxy.port)
    c.auto_ack = False  # nothing but CONTINUATION may follow
    h = c.headers(1, req("/half"), end_headers=False)  # and none does
    c.send(h)
    goaway = c.until_closed()
    c.close()
    assert goaway is not None and goaway.error_code == 0, goaway
    assert b.requests == []
    assert metric(proxy.aport, "sluice_listener_timeouts_total", listener="web") == 1


def test_drain_sends_goaway_and_finishes_the_stream_in_flight(sluice, backends):
    b, = backends(1, delay=1.0)
    proxy = start(sluice, {"app": [b.address]})
    c = RawH2(proxy.port)
    c.send(c.headers(1, req("/slow")))
    wait_for(lambda: b.count() == 1 or b.requests, timeout=5)
    proxy.proc.send_signal(signal.SIGTERM)
    frames = []
    while True:
        f = c.frame()
        if f is None:
            break
        frames.append(f)
    c.close()
    goaways = [f for f in frames if isinstance(f, GoAwayFrame)]
    assert goaways and goaways[0].error_code == 0 and goaways[0].last_stream_id == 1, frames
    data = b"".join(f.data for f in frames if isinstance(f, DataFrame) and f.stream_id == 1)
    assert data.startswith(b"b1 GET /slow"), frames
    assert proxy.proc.wait(timeout=30) == 0


# ------------------------------------------------------------------ backends failing

def test_retry_over_h2_streams(sluice, backends):
    b, = backends(1)
    dead = "127.0.0.1:%d" % free_port()
    proxy = start(sluice, {"app": [dead, b.address]}, retries=2)
    c = RawH2(proxy.port)
    c.send(*[c.headers(1 + 2 * i, req("/retry%d" % i)) for i in range(6)])
    r = c.responses([1 + 2 * i for i in range(6)])
    assert len(r) == 6 and all(v[0] == 200 for v in r.values()), r
    c.close()
    assert b.count() == 6
    assert metric(proxy.aport, "sluice_backend_retries_total", pool="app", backend=dead) >= 3


def test_backend_gone_mid_response_resets_only_that_stream(sluice, raw_servers):
    def handler(conn, srv):
        head = conn.read_head()
        if head is None:
            return
        (_, target, _), _ = parse_head(head)
        if target == "/cut":
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n" + b"x" * 1000)
            time.sleep(0.3)
            return  # closes the connection in the middle of the body
        time.sleep(0.6)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")

    srv = raw_servers(handler)
    proxy = start(sluice, {"app": [srv.addr]})
    c = RawH2(proxy.port)
    c.send(c.headers(1, req("/cut")), c.headers(3, req("/fine")))
    r = c.responses([1, 3])
    assert r[1] == ("rst", INTERNAL_ERROR), r
    assert r[3][0] == 200 and r[3][2] == b"ok", r
    c.close()


# ------------------------------------------------------------------ 1 GiB each way

def worker_pid(proxy):
    pids = wait_for(lambda: child_pids(proxy.proc.pid), timeout=10)
    assert pids and len(pids) == 1
    return pids[0]


def test_gib_upload_and_download_byte_exact_with_bounded_rss(release_sluice, raw_servers):
    srv = raw_servers(sink_source_handler, keep_bytes=False)
    proxy = start(release_sluice, {"app": [srv.addr]})
    worker = worker_pid(proxy)
    want = hashlib.sha256()
    with RssSampler([worker]) as rss:
        # Upload without content-length: DATA goes upstream chunked.
        up = subprocess.Popen(["curl", "-sS", "--http2-prior-knowledge", "-T", "-",
                               "http://127.0.0.1:%d/upload" % proxy.port],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for blk in numbered_blocks(GIB):
            want.update(blk)
            up.stdin.write(blk)
        up.stdin.close()
        out = up.stdout.read()
        assert up.wait(timeout=120) == 0, up.stderr.read()
        assert out == b"%d %s\n" % (GIB, want.hexdigest().encode()), out
        down = subprocess.Popen(["curl", "-sS", "--http2-prior-knowledge",
                                 "http://127.0.0.1:%d/download/%d" % (proxy.port, GIB)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        got, n = hashlib.sha256(), 0
        while True:
            d = down.stdout.read(1 << 20)
            if not d:
                break
            got.update(d)
            n += len(d)
        assert down.wait(timeout=120) == 0, down.stderr.read()
    assert n == GIB and got.hexdigest() == want.hexdigest() == srv.log[-1]["sha256"]
    hwm = RssSampler([worker]).hwm_kib()
    print("1 GiB up + 1 GiB down over one h2c connection: worker RSS max %d KiB, VmHWM %d KiB (%d samples)"
          % (rss.max_kib, hwm, rss.samples))
    # Same bound as HTTP/1 (test_http_proxy.py): nothing close to the 1 GiB moved.
    assert rss.max_kib < 64 * 1024 and hwm < 64 * 1024, (rss.max_kib, hwm)


# ------------------------------------------------------------------ configuration

def test_http2_config_errors(tmp_path):
    bin_ = os.path.join(ROOT, "build", "sluice-asan")
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("""pools:
  - name: app
    backends: [127.0.0.1:1]
listeners:
  - name: web
    listen: 127.0.0.1:1
    pool: app
    http2:
      max_concurrent_streams: 0
      max_frame_size: 1k
      max_pings: lots
      max_stream: 3
  - name: raw
    listen: 127.0.0.1:2
    protocol: tcp
    pool: app
    http2: {}
""")
    r = subprocess.run([bin_, "check", "-c", str(cfg)], capture_output=True, text=True, timeout=30)
    assert r.returncode != 0
    err = r.stderr + r.stdout
    assert re.search(r"bad.yaml:9: listeners\[0\]\.http2\.max_concurrent_streams: expected an integer from 1 to 10000", err), err
    assert re.search(r"bad.yaml:10: listeners\[0\]\.http2\.max_frame_size: must be from 16k", err), err
    assert re.search(r"bad.yaml:11: listeners\[0\]\.http2\.max_pings: expected an integer", err), err
    assert re.search(r"bad.yaml:12: listeners\[0\]\.http2\.max_stream: unknown key", err), err
    assert re.search(r"bad.yaml:17: listeners\[1\]\.http2: only for http listeners", err), err


# ------------------------------------------------------------------ python3-h2

def test_h2_library_client_uploads_under_flow_control_on_many_streams(sluice, backends):
    """A polite client from python3-h2 (h2.connection): 16 streams at once,
    each uploading 256 KiB, sent only as the proxy's windows allow; every
    stream gets its backend's sha256 of exactly what it sent."""
    import h2.config
    import h2.connection
    import h2.events
    b1, b2 = backends(2)
    proxy = start(sluice, {"app": [b1.address, b2.address]})
    sock = socket.create_connection(("127.0.0.1", proxy.port), timeout=20)
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
    conn.initiate_connection()
    bodies, left, got, done = {}, {}, {}, set()
    for i in range(16):
        sid = conn.get_next_available_stream_id()
        bodies[sid] = os.urandom(256 * 1024)
        left[sid] = bodies[sid]
        conn.send_headers(sid, [(":method", "POST"), (":scheme", "http"), (":path", "/up/%d" % i),
                                (":authority", "t"), ("content-length", str(len(bodies[sid])))])
        got[sid] = b""
    deadline = time.time() + 60
    while len(done) < len(bodies) and time.time() < deadline:
        for sid, rest in list(left.items()):
            n = min(len(rest), conn.local_flow_control_window(sid), conn.max_outbound_frame_size)
            if n > 0:
                conn.send_data(sid, rest[:n], end_stream=(n == len(rest)))
                left[sid] = rest[n:]
                if not left[sid]:
                    del left[sid]
        sock.sendall(conn.data_to_send())
        data = sock.recv(65536)
        assert data, "the proxy closed the connection"
        for ev in conn.receive_data(data):
            if isinstance(ev, h2.events.DataReceived):
                got[ev.stream_id] += ev.data
                conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            elif isinstance(ev, h2.events.StreamEnded):
                done.add(ev.stream_id)
            elif isinstance(ev, h2.events.StreamReset):
                raise AssertionError("stream %d reset: %r" % (ev.stream_id, ev))
        sock.sendall(conn.data_to_send())
    sock.close()
    assert done == set(bodies)
    for sid, body in bodies.items():
        assert b"body=%d sha256=%s" % (len(body), hashlib.sha256(body).hexdigest().encode()) in got[sid], got[sid]
    assert b1.count() and b2.count()
