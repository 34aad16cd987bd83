"""bench/tls_load.c, the load generator of bench/tls.sh, against a real TLS
server: a small threaded HTTPS server in this process (Python's ssl module,
that is OpenSSL) holding an ECDSA P-256 and an RSA-2048 certificate for the
same name. Each run lasts about a second.

What a benchmark must not get wrong is checked here: a full handshake never
resumes, a resumed one really resumed (SSL_session_reused, counted apart),
the client's signature algorithms choose the certificate, and a server that
gives no session makes resume mode fail loudly rather than time full
handshakes.
"""
import json
import os
import socket
import ssl
import subprocess
import threading

import pytest

from tls_certs import CertAuthority

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TLS_LOAD = os.path.join(ROOT, "build", "bench", "tls_load")
NAME = "bench.test"
BODY = b"hello from the test server\n"


class HttpsServer:
    """HTTP/1.1 keep-alive over TLS, a thread per connection, 200 for all."""

    def __init__(self, ctx, response=None):
        self.ctx = ctx
        self.response = response or b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(BODY) + BODY
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(512)
        self.port = self.sock.getsockname()[1]
        self.requests = 0
        self.stopped = False
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self):
        while not self.stopped:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        conn.settimeout(10)
        try:
            tls = self.ctx.wrap_socket(conn, server_side=True)
        except (OSError, ssl.SSLError):
            conn.close()
            return
        buf = b""
        try:
            while True:
                while b"\r\n\r\n" not in buf:
                    data = tls.recv(4096)
                    if not data:
                        # close_notify back: OpenSSL drops a session from
                        # its cache when the server never sent one.
                        tls.unwrap()
                        return
                    buf += data
                _, buf = buf.split(b"\r\n\r\n", 1)
                self.requests += 1
                tls.sendall(self.response)
        except (OSError, ssl.SSLError):
            pass
        finally:
            tls.close()

    def stop(self):
        self.stopped = True
        self.sock.close()


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    if not os.access(TLS_LOAD, os.X_OK):
        pytest.fail("%s is not built: run `make build/bench/tls_load`" % TLS_LOAD)
    ca = CertAuthority(tmp_path_factory.mktemp("pki"))
    return ca.issue([NAME], key="ec"), ca.issue([NAME], key="rsa")


def server_context(pki, tickets=True):
    ec, rsa = pki
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(ec.chain, ec.key)
    ctx.load_cert_chain(rsa.chain, rsa.key)  # both: OpenSSL picks by sigalgs
    if not tickets:
        ctx.options |= ssl.OP_NO_TICKET
        ctx.num_tickets = 0
    return ctx


@pytest.fixture
def server(pki):
    srv = HttpsServer(server_context(pki))
    yield srv
    srv.stop()


def tls_load(port, *args, check=True):
    cmd = [TLS_LOAD, *args, "-d", "1", "-S", NAME, "127.0.0.1:%d" % port]
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
    if check:
        assert r.returncode == 0, "%s: exit %d\n%s" % (" ".join(cmd), r.returncode, r.stderr.decode())
        lines = r.stdout.decode().splitlines()
        assert len(lines) == 1, r.stdout
        return json.loads(lines[0])
    return r


def no_errors(res):
    assert res["errors"] == {"connect": 0, "tls": 0, "http": 0}, res["first_error"]


@pytest.mark.parametrize("sigalgs,key,version", [
    ("ecdsa_secp256r1_sha256", "EC-256", "1.3"),
    ("rsa_pss_rsae_sha256:rsa_pkcs1_sha256", "RSA-2048", "1.3"),
    ("ecdsa_secp256r1_sha256", "EC-256", "1.2"),
])
def test_full_handshakes_are_counted_and_never_resumed(server, sigalgs, key, version):
    res = tls_load(server.port, "full", "-c", "4", "-t", version, "-s", sigalgs, "-l", "x")
    no_errors(res)
    assert res["mode"] == "full" and res["label"] == "x"
    assert res["handshakes"] > 0 and res["handshakes_per_s"] > 0
    assert res["resumed"] == 0
    assert res["requests"] == 0 and server.requests == 0
    assert res["server_key"] == key
    assert res["version"] == "TLSv" + version
    assert res["handshake_us"]["n"] == res["handshakes"]


def test_full_with_a_request_per_connection(server):
    res = tls_load(server.port, "full", "-c", "4", "-t", "1.3", "-r")
    no_errors(res)
    assert res["requests"] > 0 and res["non_2xx"] == 0
    # each timed connection made at most one request; the server saw them
    assert res["requests"] <= res["handshakes"] <= server.requests + 4


@pytest.mark.parametrize("version,extra", [("1.3", []), ("1.2", []), ("1.2", ["-T", "id"])])
def test_resume_really_resumes(server, version, extra):
    res = tls_load(server.port, "resume", "-c", "4", "-t", version, *extra)
    no_errors(res)
    assert res["handshakes"] > 0
    assert res["resumed"] == res["handshakes"]
    assert res["signature"] == "none"  # no certificate signature on a resumption


def test_resume_fails_loudly_when_the_server_gives_no_session(pki):
    srv = HttpsServer(server_context(pki, tickets=False))
    try:
        r = tls_load(srv.port, "resume", "-c", "2", "-t", "1.3", check=False)
    finally:
        srv.stop()
    assert r.returncode != 0
    assert b"no resumable session" in r.stderr


def test_resume_by_session_id_is_tls12_only(server):
    r = tls_load(server.port, "resume", "-t", "1.3", "-T", "id", check=False)
    assert r.returncode == 2 and b"-T id" in r.stderr


def test_keepalive_counts_requests_and_latency(server):
    res = tls_load(server.port, "keepalive", "-c", "8", "-t", "1.3")
    no_errors(res)
    assert res["handshakes"] == 8 and res["resumed"] == 0
    assert res["requests"] > 8 and res["non_2xx"] == 0 and res["server_closed"] == 0
    lat = res["request_us"]
    assert lat["n"] == res["requests"]
    assert 0 < lat["p50"] <= lat["p99"] <= lat["p999"] <= lat["max"]


def test_probe_paces_its_requests(server):
    res = tls_load(server.port, "probe", "-c", "2", "-i", "50")
    no_errors(res)
    # 2 connections, a 50 ms pause after each answer, for one second: at
    # most 2 * (1 s / 50 ms + 1) requests, however fast the server is.
    assert 2 <= res["requests"] <= 2 * (1000 // 50 + 1)
    assert res["request_us"]["n"] == res["requests"]


CHUNKED = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
CLOSING = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
UNFRAMED = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nno length"
NOT_FOUND = b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"


@pytest.mark.parametrize("response,expect", [
    (CHUNKED, "ok"), (CLOSING, "closed"), (UNFRAMED, "error"), (NOT_FOUND, "non_2xx"),
])
def test_response_framing(pki, response, expect):
    """Responses are read with lib/http1: a chunked body ends a response, a
    server's Connection: close is counted, a response without framing is an
    error, a non-2xx status is counted."""
    srv = HttpsServer(server_context(pki), response=response)
    try:
        r = tls_load(srv.port, "keepalive", "-c", "2", check=False)
    finally:
        srv.stop()
    res = json.loads(r.stdout.decode())
    if expect == "error":
        assert r.returncode == 1 and res["requests"] == 0
        assert res["errors"]["http"] > 0 and "unframed" in res["first_error"]
        return
    no_errors(res)
    assert r.returncode == 0 and res["requests"] > 2
    assert (res["server_closed"] > 0) == (expect == "closed")
    assert res["non_2xx"] == (res["requests"] if expect == "non_2xx" else 0)
    if expect == "closed":  # every request on a new connection
        assert res["handshakes"] >= res["requests"]


def test_nothing_listening_is_an_error(pki):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    r = tls_load(port, "full", "-c", "1", check=False)
    assert r.returncode == 1
    res = json.loads(r.stdout.decode())
    assert res["handshakes"] == 0 and res["errors"]["connect"] > 0
    assert "refused" in res["first_error"].lower()
