"""TLS session reuse in the running proxy (listeners[].tls.sessions,
docs/tls.md "Session reuse") with real clients: Python's ssl module (which
is OpenSSL's client) and openssl s_client, against the real binary with two
workers.

Which worker served a connection is read from the kernel while the
connection is open (`ss -tnp`: the process holding the server side of
that 4-tuple). SO_REUSEPORT spreads connections over the workers by their
source port, so a run of reconnects lands on both; every one of them must
resume, and at least one must land on a worker other than the one that
issued the session.
"""
import json
import os
import re
import subprocess
import ssl
import socket

import pytest

import conftest
from backends import HttpBackend
from helpers import admin, free_port, metric, wait_for
from tls_certs import CertAuthority

MAX_TRIES = 40   # reconnects to land on another worker (each lands on one of 2: a miss is 2**-40)


# ---------------------------------------------------------------- set-up

class Proxy:
    """One Sluice with one TLS http listener called "web" and 2 workers."""

    def __init__(self, tmp, ca, cert, backend, sessions, name="web"):
        self.tmp, self.ca = tmp, ca
        self.port, self.admin = free_port(), free_port()
        self.log = tmp / "access.json"
        self.cert, self.backend, self.name = cert, backend, name
        self.sluice = conftest.Sluice(tmp, self.config(sessions), workers=2)

    def config(self, sessions):
        block = "".join("        %s: %s\n" % kv for kv in sessions.items())
        return ("workers: 2\nadmin: { listen: 127.0.0.1:%d }\n" % self.admin
                + "pools:\n  - name: app\n    backends: [127.0.0.1:%d]\n" % self.backend.port
                + "listeners:\n  - name: %s\n    listen: 127.0.0.1:%d\n    protocol: http\n" % (self.name, self.port)
                + "    pool: app\n    access_log: %s\n    access_log_format: json\n" % self.log
                + "    tls:\n      certificates:\n        - cert: %s\n          key: %s\n"
                % (self.cert.chain, self.cert.key)
                + ("      sessions:\n" + block if block else ""))

    def start(self):
        self.sluice.start(wait_ports=[self.port])
        return self

    def stop(self):
        self.sluice.stop()
        self.sluice.assert_clean()

    def metric(self, name, **labels):
        return metric(self.admin, name, listener=self.name, **labels)

    def handshakes(self, resumed):
        return self.metric("sluice_tls_session_handshakes_total", resumed=resumed)

    def reloads_done(self):
        return self.sluice.read_log().count("reload done")


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pki")
    ca = CertAuthority(tmp)
    return ca, ca.issue(["example.test"], key="ec")


@pytest.fixture
def backend():
    b = HttpBackend("app").start()
    yield b
    b.stop()


@pytest.fixture
def proxies(tmp_path, pki, backend):
    """Factory: proxies(sessions_dict, sub="a") -> a started Proxy."""
    made = []

    def make(sessions, sub="a", name="web"):
        d = tmp_path / sub
        d.mkdir()
        p = Proxy(d, pki[0], pki[1], backend, sessions, name=name)
        made.append(p)
        return p.start()

    yield make
    for p in made:
        p.stop()


# ---------------------------------------------------------------- clients

def client_context(ca, version):
    ctx = ssl.create_default_context(cafile=ca.cert)
    ctx.minimum_version = ctx.maximum_version = version
    return ctx


def server_pid(port, client_port):
    """The process holding the server side of 127.0.0.1:port <- client_port."""
    out = subprocess.run(["ss", "-Htnp", "state", "established",
                          "( sport = :%d and dport = :%d )" % (port, client_port)],
                         capture_output=True, text=True, timeout=10).stdout
    m = re.search(r"pid=(\d+)", out)
    assert m, "no server socket for client port %d:\n%s" % (client_port, out)
    return int(m.group(1))


class Visit:
    """One connection: a request answered, then an orderly close."""

    def __init__(self, ctx, port, session=None):
        raw = socket.create_connection(("127.0.0.1", port), timeout=10)
        s = ctx.wrap_socket(raw, server_hostname="example.test", session=session)
        try:
            s.sendall(b"GET /v HTTP/1.1\r\nHost: example.test\r\n\r\n")
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = s.recv(4096)
                assert chunk, data
                data += chunk
            head, _, body = data.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200"), head
            length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))
            while len(body) < length:
                body += s.recv(4096)
            self.pid = server_pid(port, s.getsockname()[1])
            self.reused = s.session_reused
            # TLS 1.3 tickets arrive after the handshake: read above, with
            # the response. The session to offer next time is the newest.
            self.session = s.session
            self.version = s.version()
            # close_notify: without it OpenSSL marks the session of either
            # side not resumable.
            try:
                s.unwrap()
            except (ssl.SSLError, OSError):
                pass
        finally:
            s.close()


def resumes_on_another_worker(ctx, port, first, follow=False):
    """Reconnect with first's session until one connection lands on a worker
    other than the one that issued it; every connection must resume.
    follow: offer each connection's newest session next (TLS 1.3 clients
    use a ticket once) and track which worker issued it. Returns the visits."""
    visits, issuer, session = [], first.pid, first.session
    for _ in range(MAX_TRIES):
        v = Visit(ctx, port, session)
        visits.append(v)
        assert v.reused, "not resumed on pid %d (issued by %d) after %d visits" % (v.pid, issuer, len(visits))
        if v.pid != issuer:
            return visits
        if follow:
            issuer, session = v.pid, v.session
    raise AssertionError("%d connections all landed on worker %d" % (MAX_TRIES, issuer))


def access_log_resumption(proxy, n):
    """The access log entries' tls_resumption, sorted (each worker writes
    its own lines, so their order is not the connections')."""
    def ready():
        try:
            lines = proxy.log.read_bytes().splitlines()
        except FileNotFoundError:
            return None
        return lines if len(lines) >= n else None
    lines = wait_for(ready, timeout=10, interval=0.05)
    assert lines, "access log has fewer than %d lines" % n
    return sorted(json.loads(x)["tls_resumption"] for x in lines)


def write_keys(path, keys):
    """A key file of the given 80-byte keys, replaced atomically."""
    tmp = str(path) + ".new"
    with open(tmp, "wb") as f:
        f.write(b"".join(keys))
    os.chmod(tmp, 0o600)
    os.rename(tmp, path)


def wait_metric(proxy, name, at_least, **labels):
    ok = wait_for(lambda: proxy.metric(name, **labels) >= at_least, timeout=10, interval=0.1)
    assert ok, "%s%r stayed at %s (wanted >= %s)" % (name, labels, proxy.metric(name, **labels), at_least)


# ---------------------------------------------------------------- across workers

@pytest.mark.parametrize("version,follow", [(ssl.TLSVersion.TLSv1_3, True), (ssl.TLSVersion.TLSv1_2, False)],
                         ids=["tls13-ticket", "tls12-ticket"])
def test_ticket_resumes_on_another_worker(proxies, pki, version, follow):
    p = proxies({"cache_size": 0})
    ctx = client_context(pki[0], version)
    first = Visit(ctx, p.port)
    assert not first.reused
    visits = resumes_on_another_worker(ctx, p.port, first, follow=follow)
    n = len(visits)
    assert p.handshakes("ticket") == n and p.handshakes("no") == 1
    assert p.handshakes("cache") == 0
    assert p.metric("sluice_tls_tickets_total", event="issued") >= 1
    assert access_log_resumption(p, n + 1) == ["no"] + ["ticket"] * n
    # The per-worker handshake counters agree.
    v = "TLSv1.3" if version == ssl.TLSVersion.TLSv1_3 else "TLSv1.2"
    assert metric(p.admin, "sluice_tls_handshakes_total", listener="web", version=v, resumed="true") == n


def test_session_id_resumes_from_the_shared_cache(proxies, pki):
    p = proxies({"tickets": "false", "cache_size": 1000})
    ctx = client_context(pki[0], ssl.TLSVersion.TLSv1_2)
    first = Visit(ctx, p.port)
    assert not first.reused
    visits = resumes_on_another_worker(ctx, p.port, first)
    n = len(visits)
    assert p.handshakes("cache") == n and p.handshakes("ticket") == 0
    assert p.metric("sluice_tls_session_cache_total", event="stored") >= 1
    assert p.metric("sluice_tls_session_cache_total", event="hit") == n
    assert p.metric("sluice_tls_tickets_total", event="issued") == 0
    assert p.metric("sluice_tls_session_cache_capacity") >= 1000
    assert access_log_resumption(p, n + 1) == ["cache"] * n + ["no"]


def test_sessions_block_without_tickets_or_cache_never_resumes(proxies, pki):
    p = proxies({"tickets": "false", "cache_size": 0})
    ctx = client_context(pki[0], ssl.TLSVersion.TLSv1_2)
    first = Visit(ctx, p.port)
    again = Visit(ctx, p.port, first.session)
    assert not again.reused
    assert p.handshakes("no") == 2 and p.metric("sluice_tls_session_cache_capacity") == 0


# ---------------------------------------------------------------- across reloads

@pytest.mark.parametrize("how", ["sighup", "api"])
def test_resumes_across_a_reload(proxies, pki, how):
    p = proxies({"cache_size": 1000})
    ctx13 = client_context(pki[0], ssl.TLSVersion.TLSv1_3)
    ctx12 = client_context(pki[0], ssl.TLSVersion.TLSv1_2)
    s13, s12 = Visit(ctx13, p.port), Visit(ctx12, p.port)
    old_pids = {s13.pid, s12.pid}
    before = p.reloads_done()
    if how == "sighup":
        p.sluice.reload()
        assert wait_for(lambda: p.reloads_done() > before, timeout=20), p.sluice.read_log()[-2000:]
    else:
        status, body = admin(p.admin, "POST", "/api/reload")
        assert status == 200, body
    # New connections go to the new generation's workers only.
    for s, ctx in ((s13, ctx13), (s12, ctx12)):
        v = Visit(ctx, p.port, s.session)
        assert v.reused, v.version
        assert v.pid not in old_pids
    assert p.handshakes("ticket") == 2


def test_session_id_cache_survives_a_reload(proxies, pki):
    p = proxies({"tickets": "false", "cache_size": 1000})
    ctx = client_context(pki[0], ssl.TLSVersion.TLSv1_2)
    first = Visit(ctx, p.port)
    status, body = admin(p.admin, "POST", "/api/reload")
    assert status == 200, body
    v = Visit(ctx, p.port, first.session)
    assert v.reused and v.pid != first.pid
    assert p.handshakes("cache") == 1


# ---------------------------------------------------------------- across instances

def s_client(ca, port, *args):
    req = b"GET /s HTTP/1.1\r\nHost: example.test\r\nConnection: close\r\n\r\n"
    r = subprocess.run(["openssl", "s_client", "-connect", "127.0.0.1:%d" % port, "-CAfile", ca.cert,
                        "-servername", "example.test", "-ign_eof", *args],
                       input=req, capture_output=True, timeout=30)
    out = (r.stdout + r.stderr).decode(errors="replace")
    assert r.returncode == 0, out
    return out


@pytest.mark.parametrize("proto", ["-tls1_3", "-tls1_2"])
def test_instances_sharing_a_key_file_resume_each_others_tickets(proxies, pki, tmp_path, proto):
    shared, other = tmp_path / "shared.key", tmp_path / "other.key"
    write_keys(shared, [os.urandom(80), os.urandom(80)])
    write_keys(other, [os.urandom(80)])
    a = proxies({"ticket_key_file": shared, "cache_size": 0}, sub="a")
    b = proxies({"ticket_key_file": shared, "cache_size": 0}, sub="b")
    c = proxies({"ticket_key_file": other, "cache_size": 0}, sub="c")
    sess = str(tmp_path / "sess.pem")
    out = s_client(pki[0], a.port, proto, "-sess_out", sess)
    assert "New, TLSv1." in out, out
    out = s_client(pki[0], b.port, proto, "-sess_in", sess)
    assert "Reused, TLSv1." in out, out
    assert b.handshakes("ticket") == 1 and a.handshakes("ticket") == 0
    # Another key file: the ticket names a key instance C does not have.
    out = s_client(pki[0], c.port, proto, "-sess_in", sess)
    assert "New, TLSv1." in out and "Reused" not in out, out
    assert c.handshakes("ticket") == 0 and c.handshakes("no") == 1
    assert c.metric("sluice_tls_tickets_total", event="unknown_key") >= 1


# ---------------------------------------------------------------- key rotation

def test_key_file_rotation_is_picked_up_without_a_reload(proxies, pki, tmp_path):
    path = tmp_path / "tickets.key"
    k1, k2 = os.urandom(80), os.urandom(80)
    write_keys(path, [k1])
    p = proxies({"ticket_key_file": path, "cache_size": 0})
    ctx = client_context(pki[0], ssl.TLSVersion.TLSv1_2)
    s1 = Visit(ctx, p.port)
    assert Visit(ctx, p.port, s1.session).reused
    reloads = p.metric("sluice_tls_ticket_key_events_total", event="file_reloaded")
    # A new key in front: the old one still decrypts, and its ticket is renewed.
    write_keys(path, [k2, k1])
    wait_metric(p, "sluice_tls_ticket_key_events_total", reloads + 1, event="file_reloaded")
    assert p.metric("sluice_tls_ticket_keys") == 2
    v = Visit(ctx, p.port, s1.session)
    assert v.reused
    assert p.metric("sluice_tls_tickets_total", event="renewed") >= 1
    s2 = Visit(ctx, p.port)
    # The old key gone: its tickets no longer resume; the new key's do.
    write_keys(path, [k2])
    wait_metric(p, "sluice_tls_ticket_key_events_total", reloads + 2, event="file_reloaded")
    assert not Visit(ctx, p.port, s1.session).reused
    assert p.metric("sluice_tls_tickets_total", event="unknown_key") >= 1
    assert Visit(ctx, p.port, s2.session).reused
    assert "reload done" not in p.sluice.read_log()


def test_broken_key_file_is_refused_and_the_old_keys_stay(proxies, pki, tmp_path):
    path = tmp_path / "tickets.key"
    write_keys(path, [os.urandom(80)])
    p = proxies({"ticket_key_file": path, "cache_size": 0})
    ctx = client_context(pki[0], ssl.TLSVersion.TLSv1_3)
    s1 = Visit(ctx, p.port)
    with open(str(path) + ".new", "wb") as f:
        f.write(os.urandom(79))
    os.rename(str(path) + ".new", path)
    # The watcher refuses it...
    wait_metric(p, "sluice_tls_ticket_key_events_total", 1, event="file_refused")
    # ...and so does a reload, with the reason.
    status, body = admin(p.admin, "POST", "/api/reload")
    assert status == 400, body
    doc = json.loads(body)
    assert any("tls.sessions.ticket_key_file" in e and "not a multiple of 80" in e for e in doc["errors"]), doc
    resumes_on_another_worker(ctx, p.port, s1, follow=True)
    assert p.metric("sluice_tls_ticket_keys") == 1
    assert "ticket key file refused, keeping the 1 key(s) in use" in p.sluice.read_log()


def test_generated_keys_rotate_and_sessions_keep_resuming(proxies, pki):
    p = proxies({"ticket_rotate": "1s", "timeout": "10s", "cache_size": 0})
    ctx = client_context(pki[0], ssl.TLSVersion.TLSv1_2)
    s1 = Visit(ctx, p.port)
    wait_metric(p, "sluice_tls_ticket_key_events_total", 2, event="rotated")
    assert p.metric("sluice_tls_ticket_keys") >= 2
    # s1's key is no longer the current one: it still resumes, renewed.
    v = Visit(ctx, p.port, s1.session)
    assert v.reused
    assert p.metric("sluice_tls_tickets_total", event="renewed") >= 1


def test_a_failed_reload_puts_the_running_session_settings_back(proxies, pki, tmp_path):
    """The new configuration's session stores are set up before anything
    else of its generation; when the generation then fails (here: a new
    listener's port is taken), the running configuration's key file is
    back in force and the store made for the new listener is gone."""
    k1, k2 = tmp_path / "k1.key", tmp_path / "k2.key"
    write_keys(k1, [os.urandom(80)])
    write_keys(k2, [os.urandom(80)])
    p = proxies({"ticket_key_file": k1, "cache_size": 0})
    ctx = client_context(pki[0], ssl.TLSVersion.TLSv1_3)
    s1 = Visit(ctx, p.port)
    running = p.sluice.config_path.read_text()
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    try:
        extra = ("  - name: extra\n    listen: 127.0.0.1:%d\n    protocol: http\n    pool: app\n"
                 "    tls:\n      certificates:\n        - cert: %s\n          key: %s\n"
                 % (busy.getsockname()[1], pki[1].chain, pki[1].key))
        p.sluice.config_path.write_text(p.config({"ticket_key_file": k2, "cache_size": 0}) + extra)
        status, body = admin(p.admin, "POST", "/api/reload")
        assert status == 500, body
    finally:
        busy.close()
    v = Visit(ctx, p.port, s1.session)
    assert v.reused, "the aborted configuration's key file stayed in force"
    status, raw = admin(p.admin, "GET", "/metrics")
    assert b'listener="extra"' not in raw
    p.sluice.config_path.write_text(running)


def test_a_failed_connection_drops_its_session_from_the_cache(proxies, pki):
    """A connection that ends in a TLS error takes its session out of the
    shared cache (OpenSSL's "bad session" rule, through the store's remove
    callback), whichever worker the session is then looked up on; an
    orderly close keeps it."""
    p = proxies({"tickets": "false", "cache_size": 1000})
    ctx = client_context(pki[0], ssl.TLSVersion.TLSv1_2)
    kept = Visit(ctx, p.port)
    assert Visit(ctx, p.port, kept.session).reused
    raw = socket.create_connection(("127.0.0.1", p.port), timeout=10)
    s = ctx.wrap_socket(raw, server_hostname="example.test")
    session = s.session
    # An application record that fails its integrity check: the server's
    # read fails with bad_record_mac and it drops the connection.
    os.write(s.fileno(), b"\x17\x03\x03\x00\x20" + os.urandom(32))
    try:
        s.unwrap()  # our close_notify: the client keeps the session resumable
    except (ssl.SSLError, OSError):
        pass
    s.close()
    wait_metric(p, "sluice_tls_session_cache_total", 2, event="stored")
    misses = p.metric("sluice_tls_session_cache_total", event="miss")
    assert not Visit(ctx, p.port, session).reused
    # The client did offer it: the server looked it up and found nothing.
    assert p.metric("sluice_tls_session_cache_total", event="miss") == misses + 1
    assert Visit(ctx, p.port, kept.session).reused



def test_a_restarted_worker_resumes_the_others_sessions(proxies, pki):
    """A worker that died is replaced by a new fork of the master, which
    hands it the same stores: it resumes sessions issued before it existed."""
    p = proxies({"cache_size": 1000})
    ctx = client_context(pki[0], ssl.TLSVersion.TLSv1_2)
    first = Visit(ctx, p.port)
    os.kill(first.pid, 9)

    def replacement():
        log = p.sluice.read_log()
        tail = log[log.find("restarting it"):] if "restarting it" in log else ""
        m = re.search(r"worker \d+ started \(pid (\d+)\)", tail)
        return int(m.group(1)) if m else None
    new_pid = wait_for(replacement, timeout=10)
    assert new_pid, p.sluice.read_log()[-2000:]
    for _ in range(MAX_TRIES):
        v = Visit(ctx, p.port, first.session)
        assert v.reused
        if v.pid == new_pid:
            return
    raise AssertionError("no connection reached the restarted worker %d in %d tries" % (new_pid, MAX_TRIES))
