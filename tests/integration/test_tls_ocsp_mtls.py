"""OCSP stapling (tls.certificates[].ocsp) and client certificates
(tls.client_certificates), docs/tls.md, with openssl s_client and curl
against the real binary.

The proxy has:
  web   http, [ec with its OCSP response, rsa with its own]
  bare  http, [ec] without ocsp
  req   http, client_certificates verify: required, JSON access log
  opt   http, client_certificates verify: optional, subject_header X-Client-Cert, combined log;
        its pool is a raw backend that keeps each request head as it came
"""
import datetime
import json
import socket
import subprocess
import threading

import pytest

import conftest
from backends import HttpBackend
from helpers import free_port, metric, tls_listener_config, wait_for
from tls_certs import CertAuthority


class Env:
    pass


# ---------------------------------------------------------------- helpers

def _load(cert_path, key_path=None):
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    with open(cert_path, "rb") as f:
        cert = x509.load_pem_x509_certificate(f.read())
    key = None
    if key_path:
        with open(key_path, "rb") as f:
            key = serialization.load_pem_private_key(f.read(), None)
    return cert, key


def crafted_ocsp(path, leaf, issuer_cert, signer_cert, signer_key, status="good", cert_id_hash="sha1",
                 this_update=None, next_update=None, attach=True):
    """An OCSP response made with python-cryptography, for what `openssl
    ocsp` cannot make: past dates, a SHA-256 certificate ID, another signer."""
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.x509 import ocsp
    now = datetime.datetime.now(datetime.timezone.utc)
    this_update = this_update or now - datetime.timedelta(hours=1)
    next_update = next_update or now + datetime.timedelta(days=3)
    leaf_c, _ = _load(leaf)
    issuer_c, _ = _load(issuer_cert)
    signer_c, signer_k = _load(signer_cert, signer_key)
    st = {"good": ocsp.OCSPCertStatus.GOOD, "unknown": ocsp.OCSPCertStatus.UNKNOWN}[status]
    algo = {"sha1": hashes.SHA1(), "sha256": hashes.SHA256()}[cert_id_hash]
    b = (ocsp.OCSPResponseBuilder()
         .add_response(cert=leaf_c, issuer=issuer_c, algorithm=algo, cert_status=st, this_update=this_update,
                       next_update=next_update, revocation_time=None, revocation_reason=None)
         .responder_id(ocsp.OCSPResponderEncoding.HASH, signer_c))
    if attach:
        b = b.certificates([signer_c])
    resp = b.sign(signer_k, hashes.SHA256())
    with open(path, "wb") as f:
        f.write(resp.public_bytes(serialization.Encoding.DER))
    return str(path)


def expired_client(ca, tmp):
    """A client certificate from ca's intermediate that expired yesterday
    (its chain file: the leaf, then the intermediate)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
    issuer, issuer_key = _load(ca.int_cert, ca.int_key)
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "late")]))
            .issuer_name(issuer.subject).public_key(key.public_key()).serial_number(4242)
            .not_valid_before(now - datetime.timedelta(days=10)).not_valid_after(now - datetime.timedelta(days=1))
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .sign(issuer_key, hashes.SHA256()))
    c, k = tmp / "late.chain.pem", tmp / "late.key"
    c.write_bytes(cert.public_bytes(serialization.Encoding.PEM) + open(ca.int_cert, "rb").read())
    k.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption()))
    return str(c), str(k)


class RawBackend:
    """Answers 200 to every request and keeps each request head as bytes,
    so a test can count the lines of one field name."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.heads = []
        self.lock = threading.Lock()
        self.stopped = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stopped:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, c):
        c.settimeout(10)
        buf = b""
        try:
            while True:
                while b"\r\n\r\n" not in buf:
                    d = c.recv(65536)
                    if not d:
                        return
                    buf += d
                head, buf = buf.split(b"\r\n\r\n", 1)
                with self.lock:
                    self.heads.append(head)
                c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n")
        except OSError:
            pass
        finally:
            c.close()

    def stop(self):
        self.stopped = True
        self.sock.close()


def tls_listener(name, port, pool, certs, extra_tls=(), extra=""):
    lines = ["  - name: %s" % name, "    listen: 127.0.0.1:%d" % port, "    protocol: http", "    pool: %s" % pool]
    if extra:
        lines.append(extra.rstrip("\n"))
    lines += ["    tls:", "      certificates:"]
    for c, ocsp in certs:
        lines += ["        - cert: %s" % c.chain, "          key: %s" % c.key]
        if ocsp:
            lines.append("          ocsp: %s" % ocsp)
    lines += ["      %s" % x for x in extra_tls]
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    e = Env()
    tmp = tmp_path_factory.mktemp("ocspmtls")
    e.tmp = tmp
    e.ca = CertAuthority(tmp / "pki")
    e.ec = e.ca.issue(["example.test"], key="ec")
    e.rsa = e.ca.issue(["example.test"], key="rsa")
    e.ec_ocsp = e.ca.ocsp_response(e.ec, "good")
    e.rsa_ocsp = e.ca.ocsp_response(e.rsa, "good")
    e.alice = e.ca.issue(["alice"], client=True)
    e.late_cert, e.late_key = expired_client(e.ca, tmp)
    e.stranger_ca = CertAuthority(tmp / "other", name="Stranger")
    e.mallory = e.stranger_ca.issue(["mallory"], client=True)
    e.backend = HttpBackend("app").start()
    e.raw = RawBackend()
    e.web, e.bare, e.req, e.opt, e.admin = (free_port() for _ in range(5))
    e.json_log, e.text_log = tmp / "req.json", tmp / "opt.log"
    cfg = ("workers: 2\nadmin: { listen: 127.0.0.1:%d }\nlog: { level: debug }\n" % e.admin
           + "pools:\n  - name: app\n    backends: [127.0.0.1:%d]\n" % e.backend.port
           + "  - name: raw\n    backends: [127.0.0.1:%d]\n" % e.raw.port
           + "listeners:\n"
           + tls_listener("web", e.web, "app", [(e.ec, e.ec_ocsp), (e.rsa, e.rsa_ocsp)])
           + tls_listener("bare", e.bare, "app", [(e.ec, None)])
           + tls_listener("req", e.req, "app", [(e.ec, None)],
                          ["client_certificates: { ca: %s, verify: required }" % e.ca.cert],
                          "    access_log: %s\n    access_log_format: json\n" % e.json_log)
           + tls_listener("opt", e.opt, "raw", [(e.ec, None)],
                          ["client_certificates:", "  ca: %s" % e.ca.cert, "  verify: optional",
                           "  subject_header: X-Client-Cert"],
                          "    access_log: %s\n" % e.text_log))
    e.proxy = conftest.Sluice(tmp, cfg, workers=2)
    try:
        e.proxy.start(wait_ports=[e.web, e.bare, e.req, e.opt])
        yield e
    finally:
        e.proxy.stop()
        e.backend.stop()
        e.raw.stop()
        e.proxy.assert_clean()


def s_client(env, port, *args, stdin=b""):
    cmd = ["openssl", "s_client", "-connect", "127.0.0.1:%d" % port, "-CAfile", env.ca.cert,
           "-servername", "example.test", *args]
    r = subprocess.run(cmd, input=stdin, capture_output=True, timeout=30)
    return r.returncode, (r.stdout + r.stderr).decode(errors="replace")


def curl(env, port, args=(), path="/"):
    cmd = ["curl", "-sS", "--max-time", "20", "--cacert", env.ca.cert, "--resolve",
           "example.test:%d:127.0.0.1" % port, *args, "https://example.test:%d%s" % (port, path)]
    r = subprocess.run(cmd, capture_output=True, timeout=40)
    return r.returncode, r.stdout, r.stderr.decode(errors="replace")


def failures(env, listener, reason):
    return metric(env.admin, "sluice_tls_handshake_failures_total", listener=listener, reason=reason)


# ---------------------------------------------------------------- OCSP stapling

ECDSA = {"-tls1_2": ["-cipher", "ECDHE-ECDSA-AES128-GCM-SHA256"], "-tls1_3": ["-sigalgs", "ecdsa_secp256r1_sha256"]}
RSA = {"-tls1_2": ["-cipher", "ECDHE-RSA-AES128-GCM-SHA256"], "-tls1_3": ["-sigalgs", "rsa_pss_rsae_sha256"]}


@pytest.mark.parametrize("version", ["-tls1_2", "-tls1_3"])
@pytest.mark.parametrize("key", ["ec", "rsa"])
def test_each_certificate_staples_its_own_response(env, version, key):
    leaf = env.ec if key == "ec" else env.rsa
    other = env.rsa if key == "ec" else env.ec
    rc, out = s_client(env, env.web, "-status", version, *(ECDSA if key == "ec" else RSA)[version])
    assert rc == 0, out
    assert "Server public key is %d bit" % (256 if key == "ec" else 2048) in out, out
    assert "OCSP Response Status: successful" in out, out
    assert "Cert Status: good" in out, out
    assert "Serial Number: %s" % leaf.serial() in out, out
    assert "Serial Number: %s" % other.serial() not in out, out


def test_no_staple_without_ocsp(env):
    rc, out = s_client(env, env.bare, "-status")
    assert rc == 0, out
    assert "OCSP response: no response sent" in out, out


def test_staple_only_when_asked(env):
    rc, out = s_client(env, env.web)
    assert rc == 0, out
    assert "OCSP" not in out, out


# ---------------------------------------------------------------- client certificates

def test_required_refuses_a_client_without_certificate(env):
    before = failures(env, "req", "client_certificate")
    rc, body, err = curl(env, env.req)
    assert rc != 0 and not body, (rc, body, err)
    assert wait_for(lambda: failures(env, "req", "client_certificate") == before + 1, timeout=5)
    assert env.backend.count() == 0 or all(r["path"] != "/" for r in env.backend.requests)


def test_required_accepts_and_forwards_the_subject(env):
    rc, body, err = curl(env, env.req, ["--cert", env.alice.chain, "--key", env.alice.key], "/who")
    assert rc == 0, err
    assert body.startswith(b"app GET /who"), body
    seen = [r for r in env.backend.requests if r["path"] == "/who"]
    assert seen and seen[-1]["headers"].get("X-Client-Subject") == "CN=alice", seen

    def logged():
        docs = [json.loads(x) for x in env.json_log.read_bytes().splitlines()] if env.json_log.exists() else []
        return [d for d in docs if d["request"].startswith("GET /who ")]  # HTTP/2.0 or 1.1, as ALPN chose
    docs = wait_for(logged, timeout=5)
    assert docs and docs[-1].get("tls_client_subject") == "CN=alice", docs


@pytest.mark.parametrize("which", ["other_ca", "expired"])
@pytest.mark.parametrize("port_name", ["req", "opt"])
def test_a_bad_client_certificate_is_refused(env, which, port_name):
    cert, key = ((env.mallory.chain, env.mallory.key) if which == "other_ca" else (env.late_cert, env.late_key))
    port = getattr(env, port_name)
    before = failures(env, port_name, "client_certificate")
    rc, body, err = curl(env, port, ["--cert", cert, "--key", key], "/bad")
    assert rc != 0 and not body, (rc, body, err)
    assert wait_for(lambda: failures(env, port_name, "client_certificate") == before + 1, timeout=5)
    # The reason is in the log: why the certificate did not verify.
    why = "certificate has expired" if which == "expired" else "unable to get local issuer certificate"
    assert wait_for(lambda: why in env.proxy.read_log(), timeout=5), env.proxy.read_log()[-3000:]


def test_s_client_with_a_certificate_sees_its_ca_named(env):
    req = b"GET /s HTTP/1.1\r\nHost: example.test\r\nConnection: close\r\n\r\n"
    rc, out = s_client(env, env.req, "-cert", env.alice.leaf, "-cert_chain", env.ca.int_cert, "-key", env.alice.key, "-ign_eof", stdin=req)
    assert rc == 0, out
    assert "Acceptable client certificate CA names" in out and "Sluice Test Root CA" in out, out
    assert "HTTP/1.1 200" in out, out


def raw_heads_with(env, marker):
    with env.raw.lock:
        return [h for h in env.raw.heads if marker in h]


def test_optional_without_certificate_passes_and_a_spoofed_header_is_removed(env):
    rc, body, err = curl(env, env.opt, ["-H", "X-Client-Cert: CN=admin", "-H", "x-client-cert: CN=root"], "/nocert")
    assert rc == 0 and body == b"ok\n", (rc, body, err)
    heads = wait_for(lambda: raw_heads_with(env, b"GET /nocert "), timeout=5)
    assert heads, env.raw.heads
    assert b"x-client-cert" not in heads[-1].lower(), heads[-1]


def test_optional_with_certificate_sends_only_the_verified_subject(env):
    before = sum(1 for _ in env.text_log.read_bytes().splitlines()) if env.text_log.exists() else 0
    rc, body, err = curl(env, env.opt, ["--cert", env.alice.chain, "--key", env.alice.key,
                                        "-H", "X-Client-Cert: CN=admin"], "/cert")
    assert rc == 0 and body == b"ok\n", (rc, body, err)
    heads = wait_for(lambda: raw_heads_with(env, b"GET /cert "), timeout=5)
    lines = [x for x in heads[-1].split(b"\r\n") if x.lower().startswith(b"x-client-cert:")]
    assert lines == [b"X-Client-Cert: CN=alice"], heads[-1]

    def logged():
        got = env.text_log.read_bytes().splitlines()[before:] if env.text_log.exists() else []
        return [x for x in got if b"GET /cert " in x]
    found = wait_for(logged, timeout=5)
    assert found and b' client="CN=alice"' in found[-1], found


def test_mtls_config_check_ok(env, tmp_path):
    rc, out = run_check(tmp_path, tls_config([(env.ec, None)], ["client_certificates: { ca: %s }" % env.ca.cert]), env)
    assert rc == 0, out


# ---------------------------------------------------------------- configuration errors

def run_check(tmp_path, text, env):
    path = tmp_path / "check.yaml"
    path.write_text(text)
    r = subprocess.run([conftest.SLUICE_BIN, "check", "-c", str(path)], capture_output=True, text=True, timeout=30)
    return r.returncode, (path, r.stdout + r.stderr)


def tls_config(certs, extra_tls=(), env=None, proto="http"):
    """A listener whose first certificate's cert: is on line 11 (ocsp: on 13)."""
    lines = ["certificates:"]                  # 10
    for leaf, ocsp in certs:
        lines += ["  - cert: %s" % leaf.chain, "    key: %s" % leaf.key] + (["    ocsp: %s" % ocsp] if ocsp else [])
    return tls_listener_config(proto, lines + list(extra_tls))


@pytest.fixture(scope="module")
def bad(env, tmp_path_factory):
    d = tmp_path_factory.mktemp("badocsp")
    b = Env()
    b.dir = d
    ca = env.ca
    b.revoked = ca.ocsp_response(env.ec, "revoked")
    not_der = d / "not.der"
    not_der.write_bytes(open(env.ec_ocsp, "rb").read()[:-40])  # cut short
    b.not_der = str(not_der)
    # A signature that does not verify: the last byte of the response (the
    # end of the signature, no certificates follow) changed.
    b.bad_sig = crafted_ocsp(d / "badsig.der", env.ec.leaf, ca.int_cert, ca.int_cert, ca.int_key, attach=False)
    raw = bytearray(open(b.bad_sig, "rb").read())
    raw[-1] ^= 0x01
    open(b.bad_sig, "wb").write(bytes(raw))
    old = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=5)
    b.expired = crafted_ocsp(d / "expired.der", env.ec.leaf, ca.int_cert, ca.int_cert, ca.int_key,
                             this_update=old, next_update=old + datetime.timedelta(days=1))
    b.unknown = crafted_ocsp(d / "unknown.der", env.ec.leaf, ca.int_cert, ca.int_cert, ca.int_key, status="unknown")
    # Signed by the root, which is not the leaf's issuer (the intermediate
    # is), though the certificate file carries the root too.
    b.by_root = crafted_ocsp(d / "byroot.der", env.ec.leaf, ca.int_cert, ca.cert, ca.root_key)
    b.ec_with_root = Env()
    b.ec_with_root.key = env.ec.key
    b.ec_with_root.chain = str(d / "ec-with-root.pem")
    with open(b.ec_with_root.chain, "w") as out:
        for part in (env.ec.chain, ca.cert):
            out.write(open(part).read())
    # Good ones openssl ocsp does not make: a SHA-256 certificate ID, and a
    # delegated responder (a certificate the issuer gave OCSPSigning).
    b.sha256 = crafted_ocsp(d / "sha256.der", env.ec.leaf, ca.int_cert, ca.int_cert, ca.int_key,
                            cert_id_hash="sha256")
    resp_key = d / "responder.key"
    subprocess.run(["openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out",
                    str(resp_key)], check=True, capture_output=True)
    csr, ext, resp_crt = d / "responder.csr", d / "responder.ext", d / "responder.crt"
    subprocess.run(["openssl", "req", "-new", "-key", str(resp_key), "-subj", "/CN=OCSP responder", "-out", str(csr)],
                   check=True, capture_output=True)
    ext.write_text("basicConstraints=critical,CA:FALSE\nextendedKeyUsage=OCSPSigning\n")
    subprocess.run(["openssl", "x509", "-req", "-in", str(csr), "-CA", ca.int_cert, "-CAkey", ca.int_key,
                    "-set_serial", "77", "-days", "5", "-extfile", str(ext), "-out", str(resp_crt)],
                   check=True, capture_output=True)
    b.delegated = crafted_ocsp(d / "delegated.der", env.ec.leaf, ca.int_cert, str(resp_crt), str(resp_key))
    return b


OCSP_BAD = [
    ("missing", lambda e, b: "/nonexistent/r.der", None),
    ("not_der", lambda e, b: b.not_der, "not a DER OCSP response"),
    ("wrong_certificate", lambda e, b: e.rsa_ocsp, "it is not about this certificate"),
    ("bad_signature", lambda e, b: b.bad_sig, "its signature does not verify"),
    ("expired", lambda e, b: b.expired, "it is not current"),
    ("revoked", lambda e, b: b.revoked, "it says the certificate is revoked"),
    ("unknown", lambda e, b: b.unknown, "it says the certificate's status is unknown to the responder"),
]


@pytest.mark.parametrize("name,path,expect", OCSP_BAD, ids=[x[0] for x in OCSP_BAD])
def test_ocsp_config_errors(env, bad, tmp_path, name, path, expect):
    p = path(env, bad)
    rc, (cfg, out) = run_check(tmp_path, tls_config([(env.ec, p)]), env)
    assert rc == 1, out
    if expect is None:  # the same words as for cert: and key:
        assert "%s:13: listeners[0].tls.certificates[0].ocsp: cannot read %s: No such file or directory" % (
            cfg, p) in out, out
        return
    assert "%s:13: listeners[0].tls.certificates[0].ocsp: %s: %s" % (cfg, p, expect) in out, out


def test_ocsp_signed_by_a_certificate_that_is_not_the_issuer_is_refused(env, bad, tmp_path):
    rc, (cfg, out) = run_check(tmp_path, tls_config([(bad.ec_with_root, bad.by_root)]), env)
    assert rc == 1, out
    assert "%s:13: listeners[0].tls.certificates[0].ocsp: %s: its signer is not the certificate's issuer" % (
        cfg, bad.by_root) in out, out


@pytest.mark.parametrize("which", ["sha256", "delegated"])
def test_ocsp_accepted_forms(env, bad, tmp_path, which):
    rc, (cfg, out) = run_check(tmp_path, tls_config([(env.ec, getattr(bad, which))]), env)
    assert rc == 0, out


MTLS_BAD = [
    ("missing_ca", lambda e: ["client_certificates: { verify: required }"],
     '13: listeners[0].tls.client_certificates: missing required key "ca"'),
    ("ca_not_found", lambda e: ["client_certificates: { ca: /nonexistent/ca.pem }"],
     "13: listeners[0].tls.client_certificates.ca: cannot read /nonexistent/ca.pem: No such file or directory"),
    ("ca_is_a_leaf", lambda e: ["client_certificates: { ca: %s }" % e.alice.leaf],
     "13: listeners[0].tls.client_certificates.ca: %s: certificate 1 is not a CA certificate"),
    ("ca_not_pem", lambda e: ["client_certificates: { ca: %s }" % e.alice.key],
     "13: listeners[0].tls.client_certificates.ca: %s: no PEM certificate in it"),
    ("bad_verify", lambda e: ["client_certificates: { ca: %s, verify: on }" % e.ca.cert],
     "13: listeners[0].tls.client_certificates.verify:"),
    ("bad_header", lambda e: ["client_certificates: { ca: %s, subject_header: 'X Subject' }" % e.ca.cert],
     '13: listeners[0].tls.client_certificates.subject_header: expected an HTTP header name'),
]


@pytest.mark.parametrize("name,lines,expect", MTLS_BAD, ids=[x[0] for x in MTLS_BAD])
def test_mtls_config_errors(env, tmp_path, name, lines, expect):
    rc, (cfg, out) = run_check(tmp_path, tls_config([(env.ec, None)], lines(env)), env)
    if "%s" in expect:
        expect = expect % (env.alice.leaf if name == "ca_is_a_leaf" else env.alice.key)
    assert rc == 1, out
    assert "%s:%s" % (cfg, expect) in out, out


def test_subject_header_is_for_http_listeners_only(env, tmp_path):
    text = tls_config([(env.ec, None)], ["client_certificates: { ca: %s, subject_header: X-S }" % env.ca.cert],
                      proto="tcp")
    rc, (cfg, out) = run_check(tmp_path, text, env)
    assert rc == 1, out
    assert "%s:13: listeners[0].tls.client_certificates.subject_header: only http listeners" % cfg in out, out


def test_a_resumed_session_keeps_the_verified_subject(env, tmp_path):
    """One worker, so the TLS 1.2 session resumes: the abbreviated
    handshake has no certificate message, and the subject comes from the
    session; a client that resumes still cannot add its own header."""
    backend = HttpBackend("one").start()
    port, aport = free_port(), free_port()
    cfg = ("workers: 1\nadmin: { listen: 127.0.0.1:%d }\npools:\n  - name: app\n    backends: [127.0.0.1:%d]\n"
           "listeners:\n" % (aport, backend.port)
           + tls_listener("web", port, "app", [(env.ec, None)],
                          ["client_certificates: { ca: %s, verify: required }" % env.ca.cert]))
    proxy = conftest.Sluice(tmp_path, cfg, workers=1)
    sess = str(tmp_path / "sess.pem")
    try:
        proxy.start(wait_ports=[port])
        req = b"GET /%s HTTP/1.1\r\nHost: example.test\r\nX-Client-Subject: CN=root\r\nConnection: close\r\n\r\n"
        rc, out = s_client(env, port, "-tls1_2", "-cert", env.alice.leaf, "-cert_chain", env.ca.int_cert,
                           "-key", env.alice.key, "-sess_out", sess, "-ign_eof", stdin=req % b"first")
        assert rc == 0 and "New, TLSv1.2" in out and "HTTP/1.1 200" in out, out
        rc, out = s_client(env, port, "-tls1_2", "-sess_in", sess, "-ign_eof", stdin=req % b"again")
        assert rc == 0 and "Reused, TLSv1.2" in out and "HTTP/1.1 200" in out, out
        seen = {r["path"]: r["headers"] for r in backend.requests}
        assert seen["/first"].get("X-Client-Subject") == "CN=alice", seen
        assert seen["/again"].get("X-Client-Subject") == "CN=alice", seen
    finally:
        proxy.stop()
        backend.stop()
        proxy.assert_clean()


@pytest.mark.parametrize("proto", ["-tls1_2", "-tls1_3"])
def test_a_session_from_before_client_certificates_does_not_skip_them(env, tmp_path, proto):
    """Sessions survive reloads (tls.sessions); a session made while the
    listener asked for no certificate must not resume once it requires
    one, or the client would get in without any (the session ID context
    covers the client-certificate policy)."""
    from helpers import admin
    backend = HttpBackend("one").start()
    port, aport = free_port(), free_port()

    def cfg(extra_tls):
        return ("workers: 1\nadmin: { listen: 127.0.0.1:%d }\npools:\n  - name: app\n    backends: [127.0.0.1:%d]\n"
                "listeners:\n" % (aport, backend.port)
                + tls_listener("web", port, "app", [(env.ec, None)], extra_tls))
    proxy = conftest.Sluice(tmp_path, cfg([]), workers=1)
    sess = str(tmp_path / "sess.pem")
    req = b"GET /%s HTTP/1.1\r\nHost: example.test\r\nConnection: close\r\n\r\n"
    try:
        proxy.start(wait_ports=[port, aport])
        rc, out = s_client(env, port, proto, "-sess_out", sess, "-ign_eof", stdin=req % b"before")
        assert rc == 0 and "HTTP/1.1 200" in out, out
        # The same policy across a reload: the session resumes (so the
        # refusal below is the policy's doing, not a lost session).
        status, body = admin(aport, "POST", "/api/reload")
        assert status == 200, body
        rc, out = s_client(env, port, proto, "-sess_in", sess, "-ign_eof", stdin=req % b"same")
        assert rc == 0 and "Reused, " in out and "HTTP/1.1 200" in out, out
        proxy.config_path.write_text(cfg(["client_certificates: { ca: %s, verify: required }" % env.ca.cert]))
        status, body = admin(aport, "POST", "/api/reload")
        assert status == 200, body
        rc, out = s_client(env, port, proto, "-sess_in", sess, "-ign_eof", stdin=req % b"after")
        assert "Reused, " not in out, out
        assert "HTTP/1.1 200" not in out, out
        assert "/after" not in [r["path"] for r in backend.requests]
    finally:
        proxy.stop()
        backend.stop()
        proxy.assert_clean()
