"""The client's address in and out: PROXY protocol v1/v2 on listeners
(listeners[].proxy_protocol, trusted_proxies) and to backends
(pools[].send_proxy), and the forwarding headers (X-Forwarded-For's trust
rule, x_real_ip, forwarded).

Real senders and receivers: curl --haproxy-protocol, raw sockets for v2 with
TLVs, and HAProxy on both sides of Sluice (send-proxy-v2 in front,
accept-proxy behind) to prove the bytes interoperate."""
import os
import re
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import time

import pytest

from helpers import free_port, metric, wait_for, wait_port, count_lines, new_log_lines
from raw_servers import RawServer, parse_head
from tls_certs import CertAuthority

import conftest

SIG = b"\r\n\r\n\x00\r\nQUIT\n"


# ------------------------------------------------------------------ PROXY header, in Python

def crc32c(data):
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def tlv(t, v):
    return struct.pack("!BH", t, len(v)) + v


def v1(src, dst, sport, dport):
    fam = "TCP6" if ":" in src else "TCP4"
    return ("PROXY %s %s %s %d %d\r\n" % (fam, src, dst, sport, dport)).encode()


def v2(src=None, dst=None, sport=0, dport=0, tlvs=b"", crc=False, cmd=1):
    if src is None:
        fam, addrs = 0x00, b""
    elif ":" in src:
        fam = 0x21
        addrs = socket.inet_pton(socket.AF_INET6, src) + socket.inet_pton(socket.AF_INET6, dst)
        addrs += struct.pack("!HH", sport, dport)
    else:
        fam = 0x11
        addrs = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!HH", sport, dport)
    body = addrs + tlvs + (tlv(0x03, b"\0\0\0\0") if crc else b"")
    hdr = SIG + bytes([0x20 | cmd, fam]) + struct.pack("!H", len(body)) + body
    if crc:
        hdr = hdr[:-4] + struct.pack("!I", crc32c(hdr))
    return hdr


def parse_tlvs(b):
    out = {}
    while b:
        t, n = struct.unpack("!BH", b[:3])
        out[t] = b[3:3 + n]
        b = b[3 + n:]
    return out


def read_proxy_header(conn):
    """Read a PROXY header off a raw_servers.Conn: a dict of what it says."""
    while len(conn.buf) < 16 and conn._fill():
        pass
    if conn.buf.startswith(b"PROXY "):
        line = conn.read_line().decode()
        parts = line.split(" ")
        if parts[1] == "UNKNOWN":
            return {"version": 1, "local": True}
        return {"version": 1, "local": False, "src": parts[2], "dst": parts[3],
                "sport": int(parts[4]), "dport": int(parts[5])}
    if not conn.buf.startswith(SIG):
        return None
    total = 16 + struct.unpack("!H", bytes(conn.buf[14:16]))[0]
    while len(conn.buf) < total and conn._fill():
        pass
    hdr = bytes(conn.buf[:total])
    del conn.buf[:total]
    cmd, fam = hdr[12] & 0xF, hdr[13] >> 4
    info = {"version": 2, "local": cmd == 0, "raw": hdr}
    rest = hdr[16:]
    if fam == 1:
        info.update(src=socket.inet_ntoa(rest[0:4]), dst=socket.inet_ntoa(rest[4:8]),
                    sport=struct.unpack("!H", rest[8:10])[0], dport=struct.unpack("!H", rest[10:12])[0])
        rest = rest[12:]
    elif fam == 2:
        info.update(src=socket.inet_ntop(socket.AF_INET6, rest[0:16]), dst=socket.inet_ntop(socket.AF_INET6, rest[16:32]),
                    sport=struct.unpack("!H", rest[32:34])[0], dport=struct.unpack("!H", rest[34:36])[0])
        rest = rest[36:]
    info["tlvs"] = parse_tlvs(rest)
    if 0x20 in info["tlvs"]:
        info["ssl_sub"] = parse_tlvs(info["tlvs"][0x20][5:])
    return info


def pp_backend_handler(conn, srv):
    """A backend that takes a PROXY header, then answers HTTP/1.1 requests on
    the same connection, logging the header and each request."""
    hdr = read_proxy_header(conn)
    with srv.lock:
        srv.log.append({"kind": "header", "port": conn.rec.port, "pp": hdr})
    while True:
        head = conn.read_head()
        if head is None:
            return
        (method, target, _), fields = parse_head(head)
        with srv.lock:
            srv.log.append({"kind": "request", "port": conn.rec.port, "target": target, "fields": fields})
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n")


def pp_echo_handler(conn, srv):
    """TCP: log the PROXY header, then echo bytes back."""
    hdr = read_proxy_header(conn)
    with srv.lock:
        srv.log.append({"kind": "header", "port": conn.rec.port, "pp": hdr})
    if conn.buf:
        conn.sendall(bytes(conn.buf))
        conn.buf.clear()
    while True:
        b = conn.sock.recv(65536)
        if not b:
            return
        conn.sendall(b)


def headers_logged(srv):
    with srv.lock:
        return [e for e in srv.log if e["kind"] == "header"]


def requests_logged(srv):
    with srv.lock:
        return [e for e in srv.log if e["kind"] == "request"]


# ------------------------------------------------------------------ Sluice

def config(port, aport, backend, proto="http", listener=None, pool=None, tls=None, access_log=None,
           health=None, client_ca=None):
    y = "workers: 1\nadmin: { listen: 127.0.0.1:%d }\nlog: { level: warn }\npools:\n" % aport
    y += "  - name: app\n    retries: 0\n    passive: { max_fails: 0 }\n"
    for k, v in (pool or {}).items():
        y += "    %s: %s\n" % (k, v)
    if health:
        y += "    health_check: { %s }\n" % health
    y += "    backends: [%s]\n" % backend
    y += "listeners:\n  - name: web\n    listen: 127.0.0.1:%d\n    protocol: %s\n    pool: app\n" % (port, proto)
    for k, v in (listener or {}).items():
        y += "    %s: %s\n" % (k, v)
    if access_log:
        y += "    access_log: %s\n    access_log_format: json\n" % access_log
    if tls:
        y += "    tls:\n      certificates:\n        - cert: %s\n          key: %s\n" % (tls.chain, tls.key)
        if client_ca:
            y += "      client_certificates: { ca: %s, verify: required }\n" % client_ca
    return y


def start(sluice, backend, **kw):
    port, aport = free_port(), free_port()
    proxy = sluice(config(port, aport, backend, **kw), wait_ports=[port, aport])
    proxy.port, proxy.aport = port, aport
    return proxy


def pp_count(proxy, result):
    return metric(proxy.aport, "sluice_listener_proxy_headers_total", listener="web", result=result)


def exchange(port, data, source_ip=None, timeout=5.0):
    """Send data on a new connection, read until the server closes or a
    whole response with Content-Length arrived."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout,
                                 source_address=(source_ip, 0) if source_ip else None)
    try:
        s.sendall(data)
        out = b""
        while True:
            try:
                b = s.recv(65536)
            except (ConnectionResetError, socket.timeout):
                break
            if not b:
                break
            out += b
            head, sep, body = out.partition(b"\r\n\r\n")
            if sep:
                cl = [l for l in head.split(b"\r\n") if l.lower().startswith(b"content-length:")]
                if cl and len(body) >= int(cl[0].split(b":")[1]):
                    break
        return out
    finally:
        s.close()


GET = b"GET /who HTTP/1.1\r\nHost: app.test\r\n\r\n"


@pytest.fixture
def ppsrv():
    srv = RawServer(pp_backend_handler, name="pp-http")
    yield srv
    srv.stop()


@pytest.fixture
def backend(backends):
    b, = backends(1)
    return b


def sent_headers(b, i=-1):
    return {k.lower(): v for k, v in b.requests[i]["headers"].items()}


# ------------------------------------------------------------------ listeners: v1, v2

def test_v1_header_gives_the_client_address_to_xff_and_access_log(sluice, backend, tmp_path):
    log = tmp_path / "access.log"
    proxy = start(sluice, backend.address, access_log=log,
                  listener={"proxy_protocol": "v1", "trusted_proxies": "[127.0.0.1]"})
    before = pp_count(proxy, "accepted")
    r = exchange(proxy.port, v1("203.0.113.9", "198.51.100.1", 40000, 443) + GET)
    assert r.startswith(b"HTTP/1.1 200"), r
    assert sent_headers(backend)["x-forwarded-for"] == "203.0.113.9"
    assert backend.requests[-1]["client"] == "127.0.0.1"  # Sluice's own connection, of course
    line = new_log_lines(log, 0)[-1].decode()
    assert '"203.0.113.9"' in line, line
    assert pp_count(proxy, "accepted") == before + 1


def test_header_port_is_the_remote_port_of_a_log_format(sluice, backend, tmp_path):
    """$remote_addr and $remote_port of a log format are the header's
    source, not the proxy in front."""
    log = tmp_path / "access.log"
    port, aport = free_port(), free_port()
    y = config(port, aport, backend.address,
               listener={"proxy_protocol": "v1", "trusted_proxies": "[127.0.0.1]", "access_log": str(log),
                         "access_log_format": "who"})
    proxy = sluice(y + 'log_formats:\n  who: "$remote_addr $remote_port"\n', wait_ports=[port, aport])
    r = exchange(port, v1("203.0.113.9", "198.51.100.1", 40000, 443) + GET)
    assert r.startswith(b"HTTP/1.1 200"), r
    assert new_log_lines(log, 0)[-1].decode() == "203.0.113.9 40000"
    assert proxy


def test_hash_balancing_follows_the_header_address(sluice, backends):
    b1, b2 = backends(2)
    port, aport = free_port(), free_port()
    cfg = config(port, aport, "%s, %s" % (b1.address, b2.address), pool={"algorithm": "hash"},
                 listener={"proxy_protocol": "v1", "trusted_proxies": "[127.0.0.1]"})
    proxy = sluice(cfg, wait_ports=[port, aport])
    for i in range(24):
        assert exchange(port, v1("198.51.100.%d" % (i + 1), "192.0.2.1", 5000, 80) + GET).startswith(b"HTTP/1.1 200")
    # Every connection comes from 127.0.0.1: hashing on the peer would send all
    # 24 to one backend; on the header's addresses both get some.
    assert b1.count() and b2.count()
    # And one address sticks to its backend, whatever the socket.
    for _ in range(4):
        exchange(port, v1("203.0.113.77", "192.0.2.1", 5000, 80) + GET)
    last = [r["headers"].get("X-Forwarded-For") for b in (b1, b2) for r in b.requests]
    owners = {b.name for b in (b1, b2) for r in b.requests if r["headers"].get("X-Forwarded-For") == "203.0.113.77"}
    assert last.count("203.0.113.77") == 4 and len(owners) == 1


@pytest.mark.parametrize("h2c", [False, True], ids=["http1", "h2c"])
def test_curl_haproxy_protocol_v1(sluice, backend, h2c):
    proxy = start(sluice, backend.address, listener={"proxy_protocol": "any", "trusted_proxies": "[127.0.0.2]"})
    before = pp_count(proxy, "accepted")
    r = subprocess.run(["curl", "-sS", "--haproxy-protocol", "--interface", "127.0.0.2"]
                       + (["--http2-prior-knowledge"] if h2c else []) +
                       ["-o", "/dev/null", "-w", "%{http_version} %{http_code}",
                        "http://127.0.0.1:%d/curl" % proxy.port], capture_output=True, timeout=30)
    assert r.stdout == (b"2 200" if h2c else b"1.1 200"), r
    assert sent_headers(backend)["x-forwarded-for"] == "127.0.0.2"
    assert pp_count(proxy, "accepted") == before + 1


def test_v2_ipv6_with_tlvs_and_crc_in_pieces(sluice, backend):
    proxy = start(sluice, backend.address, listener={"proxy_protocol": "v2", "trusted_proxies": "[127.0.0.0/8]"})
    hdr = v2("2001:db8::7", "2001:db8::1", 5555, 443,
             tlvs=tlv(0x01, b"h2") + tlv(0x02, b"app.test") + tlv(0x05, b"abc") + tlv(0x04, b"\0" * 9), crc=True)
    s = socket.create_connection(("127.0.0.1", proxy.port), timeout=5)
    try:
        # One byte at a time: the listener takes the header in pieces.
        for i in range(len(hdr)):
            s.sendall(hdr[i:i + 1])
            time.sleep(0.002)
        s.sendall(GET)
        resp = s.recv(65536)
    finally:
        s.close()
    assert resp.startswith(b"HTTP/1.1 200"), resp
    assert sent_headers(backend)["x-forwarded-for"] == "2001:db8::7"


def test_v2_local_keeps_the_peer_address(sluice, backend):
    proxy = start(sluice, backend.address, listener={"proxy_protocol": "v2", "trusted_proxies": "[127.0.0.1]"})
    r = exchange(proxy.port, v2(cmd=0) + GET)
    assert r.startswith(b"HTTP/1.1 200"), r
    assert sent_headers(backend)["x-forwarded-for"] == "127.0.0.1"


@pytest.mark.parametrize("name,first", [
    ("bad_crc", v2("192.0.2.1", "192.0.2.2", 1, 2, crc=True)[:-1] + b"\x00"),
    ("v1_on_v2_listener", v1("192.0.2.1", "192.0.2.2", 1, 2)),
    ("no_header", GET),
    ("truncated_tlv", v2("192.0.2.1", "192.0.2.2", 1, 2, tlvs=b"\x01\x00\x09ab")),
    ("v1_too_long", b"PROXY TCP4 " + b"1" * 120 + b"\r\n"),
], ids=["bad_crc", "v1_on_v2_listener", "no_header", "truncated_tlv", "v1_too_long"])
def test_invalid_header_closes_the_connection(sluice, backend, name, first):
    proxy = start(sluice, backend.address, listener={"proxy_protocol": "v2", "trusted_proxies": "[127.0.0.1]"})
    before = pp_count(proxy, "invalid")
    r = exchange(proxy.port, first + GET)
    assert r == b"", r
    assert wait_for(lambda: pp_count(proxy, "invalid") == before + 1, timeout=5)
    assert backend.count() == 0


def test_untrusted_peer_is_refused_before_its_header_is_read(sluice, backend):
    proxy = start(sluice, backend.address, listener={"proxy_protocol": "any", "trusted_proxies": "[10.0.0.0/8]"})
    before = pp_count(proxy, "untrusted")
    r = exchange(proxy.port, v1("203.0.113.9", "198.51.100.1", 40000, 443) + GET)
    assert r == b""
    # The same without a header: a direct client is not served either.
    assert exchange(proxy.port, GET) == b""
    assert wait_for(lambda: pp_count(proxy, "untrusted") >= before + 2, timeout=5)
    assert backend.count() == 0


def test_header_that_never_completes_times_out(sluice, backend):
    proxy = start(sluice, backend.address, listener={"proxy_protocol": "v1", "trusted_proxies": "[127.0.0.1]",
                                                    "timeouts": "{ client_header: 300ms }"})
    before = pp_count(proxy, "timeout")
    s = socket.create_connection(("127.0.0.1", proxy.port), timeout=10)
    try:
        s.sendall(b"PROXY TCP4 192.0.2.1 ")
        assert s.recv(100) == b""  # closed by Sluice, within the bounded wait
    finally:
        s.close()
    assert wait_for(lambda: pp_count(proxy, "timeout") == before + 1, timeout=5)


def test_worker_exit_closes_connections_waiting_for_their_header(tmp_path, backend):
    port, aport = free_port(), free_port()
    cfg = "drain_timeout: 500ms\n" + config(port, aport, backend.address,
                                             listener={"proxy_protocol": "v2", "trusted_proxies": "[127.0.0.1]"})
    proxy = conftest.Sluice(tmp_path, cfg)
    proxy.start(wait_ports=[port, aport])
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    try:
        s.sendall(SIG[:5])
        time.sleep(0.2)
        assert proxy.stop(timeout=20) == 0
        assert s.recv(10) == b""  # closed, not left behind
    finally:
        s.close()
    # It held the drain up to its timeout, then the exiting worker closed it.
    assert "drain timeout, closing 1 connections" in proxy.read_log()
    proxy.assert_clean()


# ------------------------------------------------------------------ TLS, HTTP/2, TCP listeners

@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    ca = CertAuthority(tmp_path_factory.mktemp("pki"))
    return ca, ca.issue(["app.test"], key="ec")


def test_header_before_the_tls_client_hello(sluice, backend, pki):
    ca, cert = pki
    proxy = start(sluice, backend.address, tls=cert,
                  listener={"proxy_protocol": "v2", "trusted_proxies": "[127.0.0.1]"})
    raw = socket.create_connection(("127.0.0.1", proxy.port), timeout=5)
    raw.sendall(v2("198.51.100.23", "192.0.2.1", 1234, 443))
    ctx = ssl.create_default_context(cafile=ca.cert)
    with ctx.wrap_socket(raw, server_hostname="app.test") as s:
        s.sendall(GET)
        assert s.recv(65536).startswith(b"HTTP/1.1 200")
    h = sent_headers(backend)
    assert h["x-forwarded-for"] == "198.51.100.23" and h["x-forwarded-proto"] == "https"


def test_curl_v1_then_tls_and_http2(sluice, backend, pki):
    ca, cert = pki
    proxy = start(sluice, backend.address, tls=cert,
                  listener={"proxy_protocol": "v1", "trusted_proxies": "[127.0.0.3]"})
    r = subprocess.run(["curl", "-sS", "--http2", "--haproxy-protocol", "--interface", "127.0.0.3",
                        "--cacert", ca.cert, "--resolve", "app.test:%d:127.0.0.1" % proxy.port,
                        "-o", "/dev/null", "-w", "%{http_version} %{http_code}",
                        "https://app.test:%d/h2" % proxy.port], capture_output=True, timeout=30)
    assert r.stdout == b"2 200", r
    assert sent_headers(backend)["x-forwarded-for"] == "127.0.0.3"
    assert metric(proxy.aport, "sluice_http2_connections_total", listener="web") == 1


def test_tcp_listener_in_and_tcp_pool_out(sluice, tmp_path):
    echo = RawServer(pp_echo_handler, name="pp-echo")
    log = tmp_path / "tcp.log"
    try:
        proxy = start(sluice, echo.addr, proto="tcp", pool={"send_proxy": "v1"}, access_log=log,
                      listener={"proxy_protocol": "v2", "trusted_proxies": "[127.0.0.1]"})
        s = socket.create_connection(("127.0.0.1", proxy.port), timeout=5)
        s.sendall(v2("203.0.113.50", "192.0.2.80", 61000, 8443) + b"hello")
        got = b""
        while len(got) < 5:
            got += s.recv(100)
        s.close()
        assert got == b"hello"
        hdr = headers_logged(echo)[-1]["pp"]
        assert hdr == {"version": 1, "local": False, "src": "203.0.113.50", "dst": "192.0.2.80",
                       "sport": 61000, "dport": 8443}
        line = new_log_lines(log, 0)[-1].decode()
        assert '"203.0.113.50"' in line, line
    finally:
        echo.stop()


# ------------------------------------------------------------------ pools: send_proxy

def test_send_proxy_v2_carries_the_tls_facts(sluice, ppsrv, pki):
    ca, cert = pki
    proxy = start(sluice, ppsrv.addr, tls=cert, pool={"send_proxy": "v2"})
    ctx = ssl.create_default_context(cafile=ca.cert)
    ctx.set_alpn_protocols(["http/1.1"])
    with ctx.wrap_socket(socket.create_connection(("127.0.0.1", proxy.port), timeout=5),
                         server_hostname="app.test") as s:
        client_port = s.getsockname()[1]
        s.sendall(GET)
        assert s.recv(65536).startswith(b"HTTP/1.1 200")
    hdr = headers_logged(ppsrv)[-1]["pp"]
    assert hdr["version"] == 2 and not hdr["local"]
    assert (hdr["src"], hdr["sport"], hdr["dst"], hdr["dport"]) == ("127.0.0.1", client_port, "127.0.0.1", proxy.port)
    assert hdr["tlvs"][0x01] == b"http/1.1" and hdr["tlvs"][0x02] == b"app.test"
    assert hdr["tlvs"][0x20][0] & 0x01
    assert hdr["ssl_sub"][0x21].startswith(b"TLSv1") and hdr["ssl_sub"][0x23]


def test_send_proxy_v2_unique_id_is_the_request_id(sluice, ppsrv, tmp_path):
    """PP2_TYPE_UNIQUE_ID carries the id the access log writes as
    $request_id, so a backend's record and Sluice's can be matched."""
    log = tmp_path / "access.log"
    port, aport = free_port(), free_port()
    y = config(port, aport, ppsrv.addr, pool={"send_proxy": "v2"},
               listener={"access_log": str(log), "access_log_format": "ids"})
    sluice(y + 'log_formats:\n  ids: "$request_id"\n', wait_ports=[port, aport])
    assert exchange(port, GET).startswith(b"HTTP/1.1 200")
    uid = headers_logged(ppsrv)[-1]["pp"]["tlvs"][0x05].decode()
    assert re.fullmatch(r"[0-9a-f]{32}", uid), uid
    assert new_log_lines(log, 0)[-1].decode() == uid


def test_send_proxy_v2_says_the_client_certificate_was_verified(sluice, ppsrv, pki):
    ca, cert = pki
    alice = ca.issue(["alice"], client=True)
    proxy = start(sluice, ppsrv.addr, tls=cert, pool={"send_proxy": "v2"}, client_ca=ca.cert)
    ctx = ssl.create_default_context(cafile=ca.cert)
    ctx.load_cert_chain(alice.chain, alice.key)
    with ctx.wrap_socket(socket.create_connection(("127.0.0.1", proxy.port), timeout=5),
                         server_hostname="app.test") as s:
        s.sendall(GET)
        assert s.recv(65536).startswith(b"HTTP/1.1 200")
    client_flags = headers_logged(ppsrv)[-1]["pp"]["tlvs"][0x20][0]
    assert client_flags == 0x01 | 0x02 | 0x04  # SSL, CERT_CONN, CERT_SESS


def test_send_proxy_connection_reused_only_by_its_own_client(sluice, ppsrv):
    proxy = start(sluice, ppsrv.addr, pool={"send_proxy": "v1", "keepalive": 8},
                  listener={"proxy_protocol": "v1", "trusted_proxies": "[127.0.0.1]"})
    # Client A, two requests on one connection: one backend connection.
    s = socket.create_connection(("127.0.0.1", proxy.port), timeout=5)
    s.sendall(v1("203.0.113.1", "192.0.2.1", 1111, 80))
    for _ in range(2):
        s.sendall(GET)
        assert s.recv(65536).startswith(b"HTTP/1.1 200")
    s.close()
    # Client B after A left: A's pooled connection must not carry B.
    assert exchange(proxy.port, v1("203.0.113.2", "192.0.2.1", 2222, 80) + GET).startswith(b"HTTP/1.1 200")
    hdrs = headers_logged(ppsrv)
    reqs = requests_logged(ppsrv)
    assert [h["pp"]["src"] for h in hdrs] == ["203.0.113.1", "203.0.113.2"]
    by_port = {h["port"]: h["pp"]["src"] for h in hdrs}
    assert [by_port[r["port"]] for r in reqs] == ["203.0.113.1", "203.0.113.1", "203.0.113.2"]


def test_health_checks_send_local(sluice, ppsrv):
    proxy = start(sluice, ppsrv.addr, pool={"send_proxy": "v2"}, health="type: http, path: /hc, interval: 200ms, timeout: 150ms")
    assert wait_for(lambda: any(h["pp"] and h["pp"]["local"] for h in headers_logged(ppsrv)), timeout=10)
    assert wait_for(lambda: any(r["target"] == "/hc" for r in requests_logged(ppsrv)), timeout=10)
    assert metric(proxy.aport, "sluice_backend_up", pool="app", backend=ppsrv.addr) == 1


# ------------------------------------------------------------------ forwarding headers

def test_xff_from_an_untrusted_client_is_replaced(sluice, backend):
    proxy = start(sluice, backend.address)
    r = exchange(proxy.port, b"GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 6.6.6.6\r\n"
                             b"X-Forwarded-For: 7.7.7.7\r\n\r\n")
    assert r.startswith(b"HTTP/1.1 200")
    assert sent_headers(backend)["x-forwarded-for"] == "127.0.0.1"


def test_xff_from_a_trusted_proxy_is_appended_to(sluice, backend):
    proxy = start(sluice, backend.address, listener={"trusted_proxies": "[127.0.0.0/24]"})
    exchange(proxy.port, b"GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 192.0.2.5\r\n\r\n")
    assert sent_headers(backend)["x-forwarded-for"] == "192.0.2.5, 127.0.0.1"
    # Trust is the client's: the PROXY header's source, not the proxy's socket.
    proxy2 = start(sluice, backend.address,
                   listener={"trusted_proxies": "[127.0.0.1]", "proxy_protocol": "v1"})
    exchange(proxy2.port, v1("203.0.113.4", "192.0.2.1", 5, 80) +
             b"GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 6.6.6.6\r\n\r\n")
    assert sent_headers(backend)["x-forwarded-for"] == "203.0.113.4"


def test_x_real_ip_and_forwarded(sluice, backend):
    proxy = start(sluice, backend.address, listener={"x_real_ip": "true", "forwarded": "true",
                                                    "proxy_protocol": "v1", "trusted_proxies": "[127.0.0.1]"})
    exchange(proxy.port, v1("2001:db8::5", "2001:db8::1", 5, 80) +
             b"GET / HTTP/1.1\r\nHost: app.test:8080\r\nX-Real-IP: 6.6.6.6\r\nForwarded: for=6.6.6.6\r\n\r\n")
    h = sent_headers(backend)
    assert h["x-real-ip"] == "2001:db8::5"
    assert h["forwarded"] == 'for="[2001:db8::5]";proto=http;host="app.test:8080"'
    # A trusted client's Forwarded is appended to.
    exchange(proxy.port, v1("127.0.0.1", "127.0.0.1", 5, 80) +
             b"GET / HTTP/1.1\r\nHost: app.test\r\nForwarded: for=192.0.2.60\r\n\r\n")
    assert sent_headers(backend)["forwarded"] == "for=192.0.2.60, for=127.0.0.1;proto=http;host=app.test"


# ------------------------------------------------------------------ HAProxy on either side

HAPROXY = shutil.which("haproxy")
needs_haproxy = pytest.mark.skipif(not HAPROXY, reason="needs haproxy")


class Haproxy:
    def __init__(self, tmp_path, text):
        self.cfg = tmp_path / ("haproxy-%d.cfg" % free_port())
        self.cfg.write_text(text)
        check = subprocess.run([HAPROXY, "-c", "-f", str(self.cfg)], capture_output=True, timeout=30)
        assert check.returncode == 0, check.stdout + check.stderr
        self.proc = subprocess.Popen([HAPROXY, "-db", "-f", str(self.cfg)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)


HAPROXY_DEFAULTS = ("global\n  maxconn 100\ndefaults\n  timeout connect 5s\n  timeout client 10s\n"
                    "  timeout server 10s\n")


@needs_haproxy
@pytest.mark.parametrize("send", ["send-proxy", "send-proxy-v2"])
def test_haproxy_in_front_sends_the_header(sluice, backend, tmp_path, send):
    proxy = start(sluice, backend.address, listener={"proxy_protocol": "any", "trusted_proxies": "[127.0.0.1]"})
    hport = free_port()
    hap = Haproxy(tmp_path, HAPROXY_DEFAULTS +
                  "frontend f\n  mode tcp\n  bind 127.0.0.1:%d\n  default_backend b\n"
                  "backend b\n  mode tcp\n  server s 127.0.0.1:%d %s\n" % (hport, proxy.port, send))
    try:
        assert wait_port(hport, timeout=10)
        r = exchange(hport, GET, source_ip="127.0.0.9")
        assert r.startswith(b"HTTP/1.1 200"), r
        assert sent_headers(backend)["x-forwarded-for"] == "127.0.0.9"
    finally:
        hap.stop()


@needs_haproxy
@pytest.mark.parametrize("mode", ["v1", "v2"])
def test_haproxy_behind_accepts_what_sluice_sends(sluice, backend, tmp_path, mode):
    hport = free_port()
    hap = Haproxy(tmp_path, HAPROXY_DEFAULTS +
                  "frontend f\n  mode http\n  bind 127.0.0.1:%d accept-proxy\n"
                  "  http-request set-header X-Seen-Src %%[src]\n"
                  "  http-request set-header X-Seen-Dst %%[dst]:%%[dst_port]\n  default_backend b\n"
                  "backend b\n  mode http\n  server s %s\n" % (hport, backend.address))
    try:
        assert wait_port(hport, timeout=10) or True
        proxy = start(sluice, "127.0.0.1:%d" % hport, pool={"send_proxy": mode},
                      health="type: http, path: /hc, interval: 200ms, timeout: 150ms")
        # The checks' LOCAL / UNKNOWN header is accepted too: the backend comes up.
        assert wait_for(lambda: any(r["path"] == "/hc" for r in list(backend.requests)), timeout=10)
        r = exchange(proxy.port, GET, source_ip="127.0.0.7")
        assert r.startswith(b"HTTP/1.1 200"), r
        h = sent_headers(backend)
        assert h["x-seen-src"] == "127.0.0.7"
        assert h["x-seen-dst"] == "127.0.0.1:%d" % proxy.port
    finally:
        hap.stop()


NGINX = shutil.which("nginx")


@pytest.mark.skipif(not NGINX, reason="needs nginx")
def test_nginx_behind_accepts_v2(sluice, tmp_path):
    nport = free_port()
    conf = tmp_path / "nginx.conf"
    conf.write_text(
        "daemon off;\npid %s/nginx.pid;\nerror_log %s/nginx-error.log;\nevents {}\nhttp {\n"
        "  access_log off;\n  client_body_temp_path %s;\n  proxy_temp_path %s;\n  fastcgi_temp_path %s;\n"
        "  uwsgi_temp_path %s;\n  scgi_temp_path %s;\n"
        "  server {\n    listen 127.0.0.1:%d proxy_protocol;\n"
        "    location / { return 200 \"pp=$proxy_protocol_addr:$proxy_protocol_port\\n\"; }\n  }\n}\n"
        % ((tmp_path,) * 7 + (nport,)))
    ng = subprocess.Popen([NGINX, "-c", str(conf), "-p", str(tmp_path)],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert wait_port(nport, timeout=10, proc=ng)
        proxy = start(sluice, "127.0.0.1:%d" % nport, pool={"send_proxy": "v2"})
        s = socket.create_connection(("127.0.0.1", proxy.port), timeout=5, source_address=("127.0.0.8", 0))
        port = s.getsockname()[1]
        s.sendall(GET)
        r = b""
        while b"\n" not in r.partition(b"\r\n\r\n")[2]:
            b = s.recv(65536)
            if not b:
                break
            r += b
        s.close()
        assert r.startswith(b"HTTP/1.1 200") and r.endswith(b"pp=127.0.0.8:%d\n" % port), r
    finally:
        ng.send_signal(signal.SIGTERM)
        ng.wait(timeout=10)


# ------------------------------------------------------------------ configuration

BAD = [
    ("no_trusted", {"proxy_protocol": "v1"}, "http",
     "listeners[0].proxy_protocol: needs trusted_proxies"),
    ("bad_cidr", {"proxy_protocol": "v1", "trusted_proxies": "[10.0.0.1/8]"}, "http",
     "listeners[0].trusted_proxies[0]: address bits past the /8 prefix are set"),
    ("bad_prefix", {"trusted_proxies": "[10.0.0.0/33]"}, "http",
     "listeners[0].trusted_proxies[0]: the prefix length must be a number from 0 to 32"),
    ("bad_mode", {"proxy_protocol": "v3", "trusted_proxies": "[10.0.0.0/8]"}, "http",
     'listeners[0].proxy_protocol: expected off, v1, v2 or any, got "v3"'),
    ("x_real_ip_tcp", {"x_real_ip": "true"}, "tcp", "listeners[0].x_real_ip: only for http listeners"),
]


@pytest.mark.parametrize("name,listener,proto,expect", BAD, ids=[b[0] for b in BAD])
def test_config_errors(tmp_path, name, listener, proto, expect):
    path = tmp_path / "bad.yaml"
    path.write_text(config(free_port(), free_port(), "127.0.0.1:9", proto=proto, listener=listener))
    r = subprocess.run([conftest.SLUICE_BIN, "check", "-c", str(path)], capture_output=True, timeout=30)
    out = (r.stdout + r.stderr).decode()
    assert r.returncode != 0 and expect in out, out


def test_send_proxy_config_error(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(config(free_port(), free_port(), "127.0.0.1:9", pool={"send_proxy": "yes"}))
    r = subprocess.run([conftest.SLUICE_BIN, "check", "-c", str(path)], capture_output=True, timeout=30)
    out = (r.stdout + r.stderr).decode()
    assert r.returncode != 0 and 'pools[0].send_proxy: expected off, v1 or v2, got "yes"' in out, out
