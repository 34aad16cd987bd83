"""Certificates without restarts (docs/tls.md "Reloading certificates"):
SIGHUP and POST /api/reload swap a listener's certificate, key and OCSP
response while clients keep connecting, with no failed handshake; a broken
file is refused with its reason and the old certificate keeps serving.

Each load thread makes fresh TLS connections (full handshakes, verified
against the test CA) with one request each, for a few seconds, while the
certificate file is replaced and a reload triggered several times.
"""
import datetime
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import threading
import time

import pytest

import conftest
from backends import HttpBackend
from helpers import admin, free_port, metric, wait_for
from tls_certs import CertAuthority
from test_tls_ocsp_mtls import crafted_ocsp

# Enough clients that connections wait in the accept queues while the
# workers change: a reload that opened new sockets instead of handing the
# old ones over resets some (checked: it fails this test).
LOAD_THREADS = 12
LOAD_MAX_SECONDS = 60.0   # a bound; the load stops when the test's reloads are done


def config(aport, port, backend_port, cert, key, ocsp=None):
    return ("workers: 2\nadmin: { listen: 127.0.0.1:%d }\nlog: { level: info }\n"
            "pools:\n  - name: app\n    backends: [127.0.0.1:%d]\n"
            "listeners:\n  - name: web\n    listen: 127.0.0.1:%d\n    protocol: http\n    pool: app\n"
            "    tls:\n      certificates:\n        - cert: %s\n          key: %s\n%s"
            % (aport, backend_port, port, cert, key, "          ocsp: %s\n" % ocsp if ocsp else ""))


def install(src, dst):
    """Replace dst with src's bytes in one rename, as a deploy tool would."""
    tmp = dst + ".new"
    shutil.copyfile(src, tmp)
    os.rename(tmp, dst)


def one_request(ctx, port):
    """A fresh connection, a full handshake and one request: the served
    certificate's serial (int), or raises."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname="example.test") as s:
            serial = int(s.getpeercert()["serialNumber"], 16)
            s.sendall(b"GET /load HTTP/1.1\r\nHost: example.test\r\nConnection: close\r\n\r\n")
            data = b""
            while True:
                d = s.recv(65536)
                if not d:
                    break
                data += d
    if not data.startswith(b"HTTP/1.1 200 "):
        raise RuntimeError("bad answer: %r" % data[:200])
    return serial


class Load:
    """LOAD_THREADS clients looping over one_request from entering the
    with block to leaving it."""

    def __init__(self, ctx, port):
        self.ctx, self.port = ctx, port
        self.ok = 0
        self.errors = []
        self.lock = threading.Lock()
        self.done = threading.Event()
        self.stop_at = time.time() + LOAD_MAX_SECONDS
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(LOAD_THREADS)]

    def _run(self):
        while not self.done.is_set() and time.time() < self.stop_at:
            try:
                one_request(self.ctx, self.port)
                with self.lock:
                    self.ok += 1
            except Exception as e:  # every failure is a finding
                with self.lock:
                    self.errors.append(repr(e))

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.done.set()
        for t in self.threads:
            t.join(timeout=30)


@pytest.fixture
def site(tmp_path):
    ca = CertAuthority(tmp_path / "pki")
    backend = HttpBackend("app").start()
    s = type("Site", (), {})()
    s.tmp, s.ca, s.backend = tmp_path, ca, backend
    s.port, s.admin = free_port(), free_port()
    s.cert, s.key = str(tmp_path / "live.chain.pem"), str(tmp_path / "live.key")
    s.first = ca.issue(["example.test"], key="ec")
    install(s.first.chain, s.cert)
    install(s.first.key, s.key)
    s.ctx = ssl.create_default_context(cafile=ca.cert)
    s.proxy = None
    yield s
    if s.proxy:
        s.proxy.stop()
        s.proxy.assert_clean()
    backend.stop()


def start(s, ocsp=None):
    s.proxy = conftest.Sluice(s.tmp, config(s.admin, s.port, s.backend.port, s.cert, s.key, ocsp), workers=2)
    s.proxy.start(wait_ports=[s.port, s.admin])


def serial_now(s):
    return one_request(s.ctx, s.port)


def post_reload(s):
    status, body = admin(s.admin, "POST", "/api/reload")
    return status, json.loads(body)


def failures(s):
    return sum(metric(s.admin, "sluice_tls_handshake_failures_total", listener="web", reason=r) or 0
               for r in ("protocol", "closed", "timeout", "client_certificate"))


def test_certificates_swap_under_load_with_no_failed_handshake(site):
    s = site
    start(s)
    assert serial_now(s) == int(s.first.serial(), 16)
    swaps = []
    with Load(s.ctx, s.port) as load:
        time.sleep(0.5)
        for i in range(4):
            leaf = s.ca.issue(["example.test"], key="ec" if i % 2 else "rsa")
            install(leaf.chain, s.cert)
            install(leaf.key, s.key)
            if i % 2:
                status, doc = post_reload(s)
                assert status == 200, doc
            else:
                s.proxy.proc.send_signal(signal.SIGHUP)
            want = int(leaf.serial(), 16)
            # New connections get the new certificate once the new
            # workers run (bounded wait; the load keeps going meanwhile).
            assert wait_for(lambda: serial_now(s) == want, timeout=10, interval=0.05), "serial %x never served" % want
            swaps.append(want)
            time.sleep(0.3)
    assert not load.errors, "%d failed of %d: %s" % (len(load.errors), load.ok + len(load.errors), load.errors[:5])
    assert load.ok > 0
    print("load: %d requests, each a full handshake, through 4 reloads" % load.ok)  # shown with -s
    assert serial_now(s) == swaps[-1]
    assert failures(s) == 0
    log = s.proxy.read_log()
    assert log.count("reload done") == 4, log[-3000:]


@pytest.mark.parametrize("how", ["api", "sighup"])
def test_a_broken_certificate_is_refused_and_the_old_one_serves(site, how):
    s = site
    start(s)
    first = int(s.first.serial(), 16)
    with open(s.cert, "w") as f:
        f.write("-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n")
    with Load(s.ctx, s.port) as load:
        if how == "api":
            status, doc = post_reload(s)
            assert status == 400, doc
            assert doc["error"].startswith("reload aborted: the configuration has 1 error(s)"), doc
            assert len(doc["errors"]) == 1, doc
            assert ("%s:14: listeners[0].tls.certificates[0].cert: %s: not a PEM certificate"
                    % (s.proxy.config_path, s.cert)) == doc["errors"][0], doc
        else:
            s.proxy.proc.send_signal(signal.SIGHUP)
        assert wait_for(lambda: "reload aborted" in s.proxy.read_log(), timeout=10)
    assert not load.errors, load.errors[:5]
    log = s.proxy.read_log()
    assert "listeners[0].tls.certificates[0].cert: %s: not a PEM certificate" % s.cert in log, log[-3000:]
    assert serial_now(s) == first


def test_a_refreshed_ocsp_response_is_picked_up_by_a_reload(site):
    s = site
    ca = s.ca
    now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    older, newer = now - datetime.timedelta(hours=5), now - datetime.timedelta(hours=1)
    live = str(s.tmp / "live.ocsp.der")
    crafted_ocsp(live, s.first.leaf, ca.int_cert, ca.int_cert, ca.int_key, this_update=older)
    start(s, ocsp=live)

    def this_update():
        r = subprocess.run(["openssl", "s_client", "-connect", "127.0.0.1:%d" % s.port, "-servername",
                            "example.test", "-CAfile", ca.cert, "-status"], input=b"", capture_output=True,
                           timeout=30)
        out = r.stdout.decode(errors="replace")
        assert r.returncode == 0 and "Cert Status: good" in out, out
        return [x.split(":", 1)[1].strip() for x in out.splitlines() if "This Update:" in x][0]

    fmt = "%b %d %H:%M:%S %Y GMT"
    assert datetime.datetime.strptime(this_update().replace("  ", " "), fmt).hour == older.hour
    fresh = str(s.tmp / "fresh.der")
    crafted_ocsp(fresh, s.first.leaf, ca.int_cert, ca.int_cert, ca.int_key, this_update=newer)
    install(fresh, live)
    status, doc = post_reload(s)
    assert status == 200, doc
    assert wait_for(lambda: datetime.datetime.strptime(this_update().replace("  ", " "), fmt).hour == newer.hour,
                    timeout=10)
