"""Shared fixtures for Sluice integration tests: real binary, real sockets.

Backends are small threaded HTTP/1.1 servers run inside the test process
(see backends.py); the proxy is the real `sluice` executable, built with
AddressSanitizer and UBSan (build/sluice-asan) unless SLUICE_BIN says
otherwise. Every wait is bounded.
"""
import os
import signal
import socket
import subprocess
import time

import pytest

from backends import HttpBackend  # noqa: F401  (re-exported for tests)
from helpers import free_port, wait_port, http_get  # noqa: F401
from raw_servers import RawServer

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SLUICE_BIN = os.environ.get("SLUICE_BIN", os.path.join(ROOT, "build", "sluice-asan"))


class Sluice:
    """A running `sluice proxy` with its config file and log."""

    def __init__(self, tmp_path, config_text, workers=1, extra_args=()):
        self.tmp_path = tmp_path
        self.config_path = tmp_path / "sluice.yaml"
        self.config_path.write_text(config_text)
        self.log_path = tmp_path / "sluice.log"
        self.workers = workers
        self.extra_args = list(extra_args)
        self.proc = None

    def start(self, wait_ports=()):
        self.log = open(self.log_path, "ab")
        env = dict(os.environ)
        env.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0")
        env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1")
        self.proc = subprocess.Popen(
            [SLUICE_BIN, "proxy", "-c", str(self.config_path), "--workers", str(self.workers)]
            + self.extra_args,
            stdout=self.log, stderr=subprocess.STDOUT, env=env)
        for port in wait_ports:
            if not wait_port(port, timeout=10, proc=self.proc):
                raise RuntimeError("sluice did not listen on %d:\n%s" % (port, self.read_log()))
        return self

    def reload(self, config_text=None):
        if config_text is not None:
            self.config_path.write_text(config_text)
        self.proc.send_signal(signal.SIGHUP)

    def read_log(self):
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def stop(self, sig=signal.SIGTERM, timeout=40):
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self.log.close()
        rc = self.proc.returncode
        self.proc = None
        return rc

    def assert_clean(self):
        text = self.read_log()
        for bad in ("ERROR: AddressSanitizer", "runtime error:", "ERROR: LeakSanitizer"):
            assert bad not in text, "sanitizer report in sluice log:\n" + text[-4000:]


@pytest.fixture
def sluice(tmp_path):
    """Factory: sluice(config_text, wait_ports=[...]) -> started Sluice."""
    started = []

    def make(config_text, wait_ports=(), workers=1, extra_args=()):
        s = Sluice(tmp_path, config_text, workers=workers, extra_args=extra_args)
        started.append(s)
        return s.start(wait_ports=wait_ports)

    yield make
    for s in started:
        s.stop()
        s.assert_clean()


@pytest.fixture
def backends():
    """Factory: backends(n, **options) -> list of started HttpBackend."""
    made = []

    def make(n=1, **kw):
        out = []
        for i in range(n):
            b = HttpBackend(name="b%d" % (len(made) + 1), **kw)
            b.start()
            made.append(b)
            out.append(b)
        return out

    yield make
    for b in made:
        b.stop()


@pytest.fixture
def raw_servers():
    """Factory: raw_servers(handler, **kw) -> started RawServer, stopped at teardown."""
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
    """The `sluice` factory, but running the release build (for RSS measurements:
    AddressSanitizer's quarantine would make a worker's RSS meaningless)."""
    rel = os.path.join(ROOT, "build", "sluice")
    if not os.access(rel, os.X_OK):
        pytest.skip("build/sluice not built")
    # The factory reads SLUICE_BIN from this module's globals when it starts a proxy.
    monkeypatch.setitem(globals(), "SLUICE_BIN", rel)
    return sluice


# The files that change host-wide state or bind fixed ports are marked
# `host`: network namespaces and the HA labs (whose BFD timers also want
# the CPUs to themselves), mount namespaces, and the demos (fixed ports).
# tests/run.sh runs the others on one pytest-xdist worker per CPU, then
# these alone, one after another.
HOST_GROUP_MARKS = ("netns", "ha_lab", "ha_regions", "unshare", "demo")
_host_files = {}


def _uses_host(path):
    if path not in _host_files:
        with open(path, encoding="utf-8") as f:
            text = f.read()
        _host_files[path] = any(m in text for m in HOST_GROUP_MARKS)
    return _host_files[path]


def pytest_configure(config):
    config.addinivalue_line("markers", "host: touches host-wide state or fixed ports (run alone by tests/run.sh)")


def pytest_collection_modifyitems(config, items):
    for item in items:
        if _uses_host(str(item.fspath)):
            item.add_marker(pytest.mark.host)
