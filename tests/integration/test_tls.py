"""TLS termination (listeners[].tls, docs/tls.md) with real clients: curl and
openssl s_client against the real binary with two workers.

One CA (tls_certs.py) issues an ECDSA and an RSA certificate for
example.test and *.example.test, and an ECDSA one for other.test. The
proxy has:
  web    http, tls with [ec, rsa, other], JSON access log, handshake_timeout 1s
  tcpweb tcp,  tls with [ec], relaying plaintext to the same HTTP backend
  echo   tcp,  tls with [ec], relaying to an echo server; combined access log
"""
import hashlib
import json
import os
import select
import socket
import ssl
import subprocess
import threading

import pytest

import conftest
from backends import HttpBackend
from helpers import count_lines, free_port, metric, new_log_lines, tls_listener_config, wait_for
from stream_helpers import TcpBackend
from tls_certs import CertAuthority

BIG = 20 * 1000 * 1000


class Env:
    pass


def listener(name, port, proto, certs, extra=""):
    lines = ["  - name: %s" % name, "    listen: 127.0.0.1:%d" % port, "    protocol: %s" % proto,
             "    pool: %s" % ("echo" if name == "echo" else "app"), extra.rstrip("\n") if extra else None,
             "    tls:", "      handshake_timeout: 1s", "      certificates:"]
    for c in certs:
        lines += ["        - cert: %s" % c.chain, "          key: %s" % c.key]
    return "\n".join(x for x in lines if x) + "\n"


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    e = Env()
    tmp = tmp_path_factory.mktemp("tls")
    e.tmp = tmp
    e.ca = CertAuthority(tmp / "pki")
    e.ec = e.ca.issue(["example.test", "*.example.test"], key="ec")
    e.rsa = e.ca.issue(["example.test", "*.example.test"], key="rsa")
    e.other = e.ca.issue(["other.test"], key="ec")
    e.backend = HttpBackend("app").start()
    e.echo = TcpBackend("echo")
    e.web, e.tcpweb, e.echo_port, e.admin = free_port(), free_port(), free_port(), free_port()
    e.json_log, e.text_log = tmp / "web.json", tmp / "echo.log"
    cfg = ("workers: 2\nadmin: { listen: 127.0.0.1:%d }\nlog: { level: debug }\n" % e.admin
           + "pools:\n  - name: app\n    backends: [127.0.0.1:%d]\n" % e.backend.port
           + "  - name: echo\n    backends: [%s]\n" % e.echo.addr
           + "listeners:\n"
           + listener("web", e.web, "http", [e.ec, e.rsa, e.other],
                      "    access_log: %s\n    access_log_format: json\n"
                      "    timeouts: { client_header: 30s, idle: 60s }\n" % e.json_log)
           + listener("tcpweb", e.tcpweb, "tcp", [e.ec])
           + listener("echo", e.echo_port, "tcp", [e.ec], "    access_log: %s\n" % e.text_log))
    e.proxy = conftest.Sluice(tmp, cfg, workers=2)
    try:
        e.proxy.start(wait_ports=[e.web, e.tcpweb, e.echo_port])
        yield e
    finally:
        e.proxy.stop()
        e.backend.stop()
        e.echo.stop()
        e.proxy.assert_clean()


# ---------------------------------------------------------------- clients

def curl(env, port, path="/", name="example.test", args=()):
    """curl over TLS, trusting the test CA; returns (exit code, body, stderr).
    HTTP/1.1 unless args ask for --http2 (an http listener offers h2 first)."""
    version = [] if "--http2" in args else ["--http1.1"]
    cmd = ["curl", "-sS", "--max-time", "30", "--cacert", env.ca.cert, "--resolve",
           "%s:%d:127.0.0.1" % (name, port), *version, *args, "https://%s:%d%s" % (name, port, path)]
    r = subprocess.run(cmd, capture_output=True, timeout=60)
    return r.returncode, r.stdout, r.stderr.decode(errors="replace")


def s_client(env, port, *args, stdin=b""):
    """openssl s_client; returns (exit code, stdout+stderr as text)."""
    cmd = ["openssl", "s_client", "-connect", "127.0.0.1:%d" % port, "-CAfile", env.ca.cert, *args]
    r = subprocess.run(cmd, input=stdin, capture_output=True, timeout=30)
    return r.returncode, (r.stdout + r.stderr).decode(errors="replace")


def subject_cn(out):
    for line in out.splitlines():
        if line.startswith("subject="):
            return line.split("CN = ", 1)[1].strip()
    raise AssertionError("no peer certificate in:\n" + out)


def tls_context(env):
    ctx = ssl.create_default_context(cafile=env.ca.cert)
    return ctx


def failures(env, listener, reason):
    return metric(env.admin, "sluice_tls_handshake_failures_total", listener=listener, reason=reason)


def handshakes(env, listener, version, resumed="false"):
    return metric(env.admin, "sluice_tls_handshakes_total", listener=listener, version=version, resumed=resumed)


# ---------------------------------------------------------------- HTTP

def test_https_request_and_forwarded_proto(env):
    before = len(env.backend.requests)
    rc, body, err = curl(env, env.web, "/hello", args=("-H", "X-Forwarded-Proto: http"))
    assert rc == 0, err
    assert body.startswith(b"app GET /hello"), body
    req = env.backend.requests[before]
    # The client's own X-Forwarded-Proto is replaced by the truth.
    assert req["headers"]["X-Forwarded-Proto"] == "https", req["headers"]


def json_log_entry(env, n_before, request):
    """The JSON access log's last line for `request` after the first
    n_before lines, once it is there: with two workers another worker's
    line may be flushed first (each flushes every 100 ms)."""
    def find():
        lines = env.json_log.read_bytes().splitlines()[n_before:]
        found = [d for d in (json.loads(x) for x in lines) if d["request"] == request]
        return found[-1] if found else None
    doc = wait_for(find, timeout=5)
    assert doc, "no %r line in %s" % (request, env.json_log)
    return doc


def test_http2_over_tls_by_alpn(env):
    """ALPN h2 (the listener's first choice): the connection is HTTP/2 from
    its first byte; each stream is a request with X-Forwarded-Proto https
    and the access log's TLS fields."""
    before = len(env.backend.requests)
    log_before = count_lines(env.json_log)
    rc, body, err = curl(env, env.web, "/h2", args=("--http2", "-v"))
    assert rc == 0, err
    assert "ALPN: server accepted h2" in err or "ALPN, server accepted to use h2" in err, err
    assert body.startswith(b"app GET /h2"), body
    assert env.backend.requests[before]["headers"]["X-Forwarded-Proto"] == "https"
    doc = json_log_entry(env, log_before, "GET /h2 HTTP/2.0")
    assert doc["tls_version"] == "TLSv1.3" and doc["sni"] == "example.test", doc


def test_keep_alive_several_requests_one_handshake(env):
    ctx = tls_context(env)
    import http.client
    conn = http.client.HTTPSConnection("example.test", env.web, context=ctx, timeout=10)
    conn.sock = ctx.wrap_socket(socket.create_connection(("127.0.0.1", env.web), timeout=10),
                                server_hostname="example.test")
    first = conn.sock
    for i in range(5):
        conn.request("GET", "/ka/%d" % i)
        r = conn.getresponse()
        assert r.status == 200
        assert r.read().startswith(b"app GET /ka/%d" % i)
        assert conn.sock is first  # the same TLS connection throughout
    conn.close()


def test_big_bodies_byte_exact(env):
    payload = os.urandom(BIG)
    up = env.tmp / "up.bin"
    up.write_bytes(payload)
    rc, body, err = curl(env, env.web, "/upload", args=("--data-binary", "@%s" % up,
                                                      "-H", "Content-Type: application/octet-stream"))
    assert rc == 0, err
    assert b"body=%d sha256=%s" % (BIG, hashlib.sha256(payload).hexdigest().encode()) in body, body
    down = env.tmp / "down.bin"
    rc, _, err = curl(env, env.web, "/bytes/%d" % BIG, args=("-o", str(down)))
    assert rc == 0, err
    block = bytes(range(256)) * 256
    expected = (block * (BIG // len(block) + 1))[:BIG]
    got = down.read_bytes()
    assert len(got) == BIG and got == expected


def test_many_connections_over_two_workers(env):
    before = sum(handshakes(env, "web", v) for v in ("TLSv1.2", "TLSv1.3"))
    results = []

    def one(i):
        results.append(curl(env, env.web, "/many/%d" % i)[0])
    threads = [threading.Thread(target=one, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert results == [0] * 16
    after = sum(handshakes(env, "web", v) for v in ("TLSv1.2", "TLSv1.3"))
    assert after - before >= 16


# ---------------------------------------------------------------- SNI, keys, versions, ALPN

@pytest.mark.parametrize("sni,cn", [("example.test", "example.test"), ("a.example.test", "example.test"),
                                    ("OTHER.test", "other.test"), ("other.test", "other.test"),
                                    ("unknown.test", "example.test"), ("a.b.example.test", "example.test"),
                                    (None, "example.test")])
def test_sni_chooses_the_certificate(env, sni, cn):
    args = ["-servername", sni] if sni else ["-noservername"]
    rc, out = s_client(env, env.web, *args)
    assert rc == 0, out
    assert subject_cn(out) == cn, out
    if sni and sni.lower() in ("a.example.test", "other.test", "example.test"):
        assert "Verify return code: 0 (ok)" in out, out


@pytest.mark.parametrize("version,arg", [("TLSv1.2", "-tls1_2"), ("TLSv1.3", "-tls1_3")])
@pytest.mark.parametrize("key,bits,client_args", [
    ("ec", 256, {"-tls1_2": ["-cipher", "ECDHE-ECDSA-AES128-GCM-SHA256"],
                 "-tls1_3": ["-sigalgs", "ecdsa_secp256r1_sha256"]}),
    ("rsa", 2048, {"-tls1_2": ["-cipher", "ECDHE-RSA-AES128-GCM-SHA256"],
                   "-tls1_3": ["-sigalgs", "rsa_pss_rsae_sha256"]}),
])
def test_ecdsa_or_rsa_by_what_the_client_accepts(env, version, arg, key, bits, client_args):
    rc, out = s_client(env, env.web, "-servername", "example.test", arg, *client_args[arg])
    assert rc == 0, out
    assert "Server public key is %d bit" % bits in out, out
    assert "New, %s, Cipher is" % version in out, out
    assert "Verify return code: 0 (ok)" in out, out


def test_tls11_refused(env):
    before = failures(env, "web", "protocol")
    rc, out = s_client(env, env.web, "-servername", "example.test", "-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0")
    assert rc != 0 and "New, TLSv1.1" not in out, out
    assert wait_for(lambda: failures(env, "web", "protocol") > before, timeout=5)


@pytest.mark.parametrize("offer,chosen", [("http/1.1", "http/1.1"), ("h2,http/1.1", "h2"),
                                          ("http/1.1,h2", "h2"), ("spdy/3,foo", None)])
def test_alpn(env, offer, chosen):
    rc, out = s_client(env, env.web, "-servername", "example.test", "-alpn", offer)
    assert rc == 0, out  # no overlap: no ALPN, but the handshake goes on
    if chosen:
        assert "ALPN protocol: %s" % chosen in out, out
    else:
        assert "No ALPN negotiated" in out, out


# ---------------------------------------------------------------- bad clients

def test_plain_http_on_tls_port_is_closed_and_others_unaffected(env):
    before = failures(env, "web", "protocol")
    with socket.create_connection(("127.0.0.1", env.web), timeout=10) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: example.test\r\n\r\n")
        got = b""
        try:
            while True:
                b = s.recv(4096)
                if not b:
                    break
                got += b
        except ConnectionResetError:
            pass
    assert b"HTTP/1.1" not in got  # at most a TLS alert, never an HTTP answer
    assert wait_for(lambda: failures(env, "web", "protocol") > before, timeout=5)
    rc, body, err = curl(env, env.web, "/after-garbage")
    assert rc == 0 and body.startswith(b"app GET /after-garbage"), err


def test_garbage_bytes_closed(env):
    with socket.create_connection(("127.0.0.1", env.web), timeout=10) as s:
        s.sendall(os.urandom(2048))
        s.settimeout(10)
        try:
            while s.recv(4096):
                pass
        except ConnectionResetError:
            pass
    rc, _, err = curl(env, env.web, "/still-fine")
    assert rc == 0, err


@pytest.mark.parametrize("which", ["web", "echo"])
def test_handshake_timeout_closes_a_silent_client(env, which):
    port = env.web if which == "web" else env.echo_port
    before = failures(env, which, "timeout")
    with socket.create_connection(("127.0.0.1", port), timeout=15) as s:
        s.sendall(b"\x16\x03\x01")  # the start of a record, then nothing
        try:
            assert s.recv(4096) == b""  # closed by the proxy: bounded by the socket timeout
        except ConnectionResetError:
            pass
    assert wait_for(lambda: failures(env, which, "timeout") > before, timeout=5)


# ---------------------------------------------------------------- TCP listeners

def test_tcp_listener_terminates_tls(env):
    before = len(env.backend.requests)
    rc, body, err = curl(env, env.tcpweb, "/through-tcp")
    assert rc == 0, err
    assert body.startswith(b"app GET /through-tcp"), body
    # A TCP listener relays bytes: the request arrives as curl wrote it.
    assert "X-Forwarded-Proto" not in env.backend.requests[before]["headers"]


def test_tcp_echo_big_stream_byte_exact(env):
    """20 MB up and back at once through the echo listener, one thread
    (an SSL object must not be used by two threads at once)."""
    payload = os.urandom(BIG)
    s = tls_context(env).wrap_socket(socket.create_connection(("127.0.0.1", env.echo_port), timeout=30),
                                     server_hostname="example.test")
    s.setblocking(False)
    view = memoryview(payload)
    sent, h, n = 0, hashlib.sha256(), 0
    while n < BIG:
        r, w, _ = select.select([s], [s] if sent < BIG else [], [], 30)
        assert r or w or s.pending(), "stalled: %d bytes sent, %d received" % (sent, n)
        if w:
            try:
                sent += s.send(view[sent:sent + (1 << 16)])
            except (ssl.SSLWantWriteError, ssl.SSLWantReadError):
                pass
        while True:
            try:
                b = s.recv(1 << 16)
            except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
                break
            assert b, "stream ended after %d bytes" % n
            h.update(b)
            n += len(b)
    assert n == BIG and h.hexdigest() == hashlib.sha256(payload).hexdigest()
    s.close()


def test_tcp_close_notify_passes_eof_both_ways(env):
    ctx = tls_context(env)
    with socket.create_connection(("127.0.0.1", env.echo_port), timeout=10) as raw:
        s = ctx.wrap_socket(raw, server_hostname="example.test")
        s.sendall(b"ping")
        assert s.recv(100) == b"ping"
        plain = s.unwrap()  # close_notify out; the echo server sees EOF and shuts; its close_notify back
        assert plain.recv(100) == b""  # then the proxy's FIN


# ---------------------------------------------------------------- access log

def test_access_log_json_has_tls_fields(env):
    before = count_lines(env.json_log)
    rc, _, err = curl(env, env.web, "/logged", name="a.example.test", args=("--tlsv1.2", "--tls-max", "1.2"))
    assert rc == 0, err
    doc = json_log_entry(env, before, "GET /logged HTTP/1.1")
    assert doc["tls_version"] == "TLSv1.2", doc
    assert doc["tls_cipher"].startswith("ECDHE-"), doc
    assert doc["sni"] == "a.example.test", doc
    assert doc["tls_resumed"] is False, doc


def test_access_log_text_has_tls_fields(env):
    before = count_lines(env.text_log)
    ctx = tls_context(env)
    with socket.create_connection(("127.0.0.1", env.echo_port), timeout=10) as raw:
        s = ctx.wrap_socket(raw, server_hostname="example.test")
        s.sendall(b"x")
        assert s.recv(10) == b"x"
        s.unwrap().recv(10)
    # Each worker writes its own lines: wait for this connection's (1 byte back).
    found = wait_for(lambda: [x for x in env.text_log.read_bytes().splitlines()[before:] if b'"TCP" 200 1 ' in x],
                     timeout=5, interval=0.05)
    assert found, env.text_log.read_text()
    line = found[-1].decode()
    assert ' tls=TLSv1.3 cipher=TLS_' in line and ' sni="example.test" resumed=no' in line, line


def test_resumed_session_counted_and_logged(tmp_path):
    """One worker: a TLS 1.2 session resumes (by ticket), counted and
    logged. Across workers, reloads and instances: test_tls_sessions.py."""
    ca = CertAuthority(tmp_path / "pki")
    ec = ca.issue(["example.test"], key="ec")
    backend = HttpBackend("one").start()
    port, aport = free_port(), free_port()
    log = tmp_path / "a.json"
    cfg = ("workers: 1\nadmin: { listen: 127.0.0.1:%d }\npools:\n  - name: app\n    backends: [127.0.0.1:%d]\n"
           "listeners:\n" % (aport, backend.port)
           + listener("web", port, "http", [ec], "    access_log: %s\n    access_log_format: json\n" % log))
    proxy = conftest.Sluice(tmp_path, cfg, workers=1)
    env = Env()
    env.ca, env.admin = ca, aport
    sess = str(tmp_path / "sess.pem")
    try:
        proxy.start(wait_ports=[port])
        req = b"GET /r HTTP/1.1\r\nHost: example.test\r\nConnection: close\r\n\r\n"
        rc, out = s_client(env, port, "-servername", "example.test", "-tls1_2", "-sess_out", sess,
                           "-ign_eof", stdin=req)
        assert rc == 0 and "New, TLSv1.2" in out, out
        rc, out = s_client(env, port, "-servername", "example.test", "-tls1_2", "-sess_in", sess,
                           "-ign_eof", stdin=req)
        assert rc == 0 and "Reused, TLSv1.2" in out, out
        assert handshakes(env, "web", "TLSv1.2", "true") == 1
        assert handshakes(env, "web", "TLSv1.2", "false") == 1
        docs = [json.loads(x) for x in new_log_lines(log, 0, 2)]
        assert [d["tls_resumed"] for d in docs] == [False, True], docs
        assert [d["tls_resumption"] for d in docs] == ["no", "ticket"], docs
    finally:
        proxy.stop()
        backend.stop()
        proxy.assert_clean()


# ---------------------------------------------------------------- configuration errors

def run_check(path):
    r = subprocess.run([conftest.SLUICE_BIN, "check", "-c", str(path)], capture_output=True, text=True, timeout=30)
    return r.returncode, r.stdout + r.stderr


def expired_cert(tmp_path):
    """A self-signed certificate that expired yesterday."""
    import datetime
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "old.test")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(7).not_valid_before(now - datetime.timedelta(days=10))
            .not_valid_after(now - datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("old.test")]), critical=False)
            .sign(key, hashes.SHA256()))
    c, k = tmp_path / "old.crt", tmp_path / "old.key"
    c.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    k.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption()))
    return str(c), str(k)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    d = tmp_path_factory.mktemp("badpki")
    ca = CertAuthority(d / "pki")
    p = Env()
    p.dir = d
    p.ec = ca.issue(["example.test"], key="ec")
    p.ec2 = ca.issue(["example.test"], key="ec")
    p.rsa = ca.issue(["example.test"], key="rsa")
    p.old_cert, p.old_key = expired_cert(d)
    return p


def certs(*pairs):
    out = ["certificates:"]
    for c, k in pairs:
        out += ["  - cert: %s" % c, "    key: %s" % k]
    return out


BAD = [
    ("missing_cert", "http", lambda p: certs(("/nonexistent/x.pem", p.ec.key)),
     "11: listeners[0].tls.certificates[0].cert: cannot read /nonexistent/x.pem: No such file or directory"),
    ("missing_key", "http", lambda p: certs((p.ec.chain, "/nonexistent/x.key")),
     "12: listeners[0].tls.certificates[0].key: cannot read /nonexistent/x.key: No such file or directory"),
    ("not_pem", "http", lambda p: certs((p.ec.key, p.ec.key)),
     "11: listeners[0].tls.certificates[0].cert: %s: not a PEM certificate"),
    ("key_mismatch", "http", lambda p: certs((p.ec.chain, p.rsa.key)),
     "12: listeners[0].tls.certificates[0].key: %s does not match the certificate in"),
    ("expired", "http", lambda p: certs((p.old_cert, p.old_key)),
     "11: listeners[0].tls.certificates[0].cert: %s: certificate expired on"),
    ("same_key_type_twice", "http", lambda p: certs((p.ec.chain, p.ec.key), (p.ec2.chain, p.ec2.key)),
     "13: listeners[0].tls.certificates[1]: same names and key type as certificates[0] (line 11)"),
    ("old_protocol", "http", lambda p: certs((p.ec.chain, p.ec.key)) + ["protocols: [TLSv1.2, TLSv1.1]"],
     "13: listeners[0].tls.protocols[1]: TLSv1.1 is not supported"),
    ("unknown_protocol", "http", lambda p: certs((p.ec.chain, p.ec.key)) + ["protocols: [TLSv1.4]"],
     '13: listeners[0].tls.protocols[0]: unknown protocol "TLSv1.4"'),
    ("bad_cipher", "http", lambda p: certs((p.ec.chain, p.ec.key)) + ['ciphers: "ECDHE-RSA-AES128-GCM-SHA256:FOO"'],
     '13: listeners[0].tls.ciphers: unknown cipher "FOO"'),
    ("bad_ciphersuite", "http", lambda p: certs((p.ec.chain, p.ec.key)) + ['ciphersuites: "TLS_AES_128_GCM_SHA257"'],
     '13: listeners[0].tls.ciphersuites: unknown TLS 1.3 ciphersuite "TLS_AES_128_GCM_SHA257"'),
    ("alpn_unknown_for_http", "http", lambda p: certs((p.ec.chain, p.ec.key)) + ["alpn: [http/1.1, spdy/3]"],
     '13: listeners[0].tls.alpn[1]: unknown ALPN protocol "spdy/3" for an http listener'),
    ("alpn_bad_name_for_tcp", "tcp", lambda p: certs((p.ec.chain, p.ec.key)) + ['alpn: ["two words"]'],
     "13: listeners[0].tls.alpn[0]: expected an ALPN protocol name"),
    ("tls_on_udp", "udp", lambda p: certs((p.ec.chain, p.ec.key)),
     "9: listeners[0].tls: tls is only for http and tcp listeners (protocol is udp)"),
    ("no_certificates", "http", lambda p: ["handshake_timeout: 5s"],
     '10: listeners[0].tls: missing required key "certificates"'),
    ("sessions_not_yet", "http", lambda p: certs((p.ec.chain, p.ec.key)) + ["unknown_key: 1"],
     "13: listeners[0].tls.unknown_key: unknown key"),
]


@pytest.mark.parametrize("name,proto,lines,expect", BAD, ids=[b[0] for b in BAD])
def test_config_errors_caught_by_check(pki, name, proto, lines, expect):
    path = pki.dir / ("%s.yaml" % name)
    path.write_text(tls_listener_config(proto, lines(pki)))
    rc, out = run_check(path)
    if "%s" in expect:
        files = {"not_pem": pki.ec.key, "key_mismatch": pki.rsa.key, "expired": pki.old_cert}
        expect = expect % files[name]
    assert rc == 1, out
    assert "%s:%s" % (path, expect) in out, out


def test_valid_config_checks_ok(pki):
    path = pki.dir / "ok.yaml"
    path.write_text(tls_listener_config("http", certs((pki.ec.chain, pki.ec.key), (pki.rsa.chain, pki.rsa.key))
                               + ["protocols: [TLSv1.3]", "alpn: [http/1.1]", 'ciphersuites: "TLS_AES_128_GCM_SHA256"']))
    rc, out = run_check(path)
    assert rc == 0, out
