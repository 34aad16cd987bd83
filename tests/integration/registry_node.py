"""A `sluice registry` node for the integration tests: its config, its
process (build/sluice-asan), and a small JSON client for its API."""
import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request

import pytest

from helpers import free_port, wait_port

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SLUICE_BIN = os.environ.get("SLUICE_BIN", os.path.join(ROOT, "build", "sluice-asan"))
TOKEN = "t0ken-for-tests"
SVC = "/api/registry/services"


def config_text(api_port, data_dir, extra="", token=TOKEN, services=""):
    """A registry: section with the given extra keys (indented two spaces)
    and services (a YAML list, indented four spaces)."""
    text = ("log:\n  level: debug\nadmin:\n  listen: 127.0.0.1:%d\nregistry:\n  node: test1\n"
            "  datacenter: dc1\n  region: r1\n  data_dir: %s\n  api: { merge_window: 20ms, max_watchers: 2000 }\n"
            % (api_port, data_dir))
    if token:
        text += "  token: %s\n" % token
    text += extra
    if services:
        text += "  services:\n" + services
    return text


class Registry:
    def __init__(self, tmp_path, extra="", services="", token=TOKEN, name="registry"):
        self.tmp_path = tmp_path
        self.port = free_port()
        self.data_dir = str(tmp_path / (name + "-data"))
        self.config_path = tmp_path / (name + ".yaml")
        self.log_path = tmp_path / (name + ".log")
        self.token = token
        self.write_config(extra, services)
        self.proc = None
        self.log = None

    def write_config(self, extra="", services=""):
        self.config_path.write_text(config_text(self.port, self.data_dir, extra, self.token, services))

    def start(self):
        self.log = open(self.log_path, "ab")
        env = dict(os.environ)
        env.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0")
        env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1")
        self.proc = subprocess.Popen([SLUICE_BIN, "registry", "-c", str(self.config_path)],
                                     stdout=self.log, stderr=subprocess.STDOUT, env=env)
        if not wait_port(self.port, timeout=15, proc=self.proc):
            raise RuntimeError("the registry did not listen on %d:\n%s" % (self.port, self.read_log()))
        return self

    def reload(self):
        self.proc.send_signal(signal.SIGHUP)

    def kill9(self):
        self.proc.kill()
        self.proc.wait(timeout=10)
        self.log.close()
        self.proc = None

    def stop(self, timeout=30):
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self.log.close()
        rc = self.proc.returncode
        self.proc = None
        return rc

    def read_log(self):
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def assert_clean(self):
        text = self.read_log()
        for bad in ("ERROR: AddressSanitizer", "runtime error:", "ERROR: LeakSanitizer"):
            assert bad not in text, "sanitizer report in the registry's log:\n" + text[-4000:]

    # ---- the API ----

    def call(self, method, path, body=None, token="default", headers=None, timeout=10.0):
        """(status, parsed JSON or raw bytes) of one request."""
        data = None
        h = dict(headers or {})
        if body is not None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            h["Content-Type"] = "application/json"
        tok = self.token if token == "default" else token
        if tok and method != "GET":
            h.setdefault("X-Sluice-Token", tok)
        req = urllib.request.Request("http://127.0.0.1:%d%s" % (self.port, path), data=data, method=method,
                                     headers=h)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                status, raw = r.status, r.read()
        except urllib.error.HTTPError as e:
            status, raw = e.code, e.read()
        try:
            return status, json.loads(raw)
        except ValueError:
            return status, raw

    def get(self, path, **kw):
        return self.call("GET", path, **kw)

    def ok(self, method, path, body=None, **kw):
        status, doc = self.call(method, path, body, **kw)
        assert status == 200, "%s %s -> %d %r" % (method, path, status, doc)
        return doc

    def service(self, name):
        return self.ok("GET", "/api/registry/services/" + name)

    def instance(self, name, iid):
        for inst in self.service(name)["instances"]:
            if inst["id"] == iid:
                return inst
        return None

    def metrics(self):
        with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % self.port, timeout=10) as r:
            return r.read().decode()


def tcp_listener():
    """A listening TCP socket on a free loopback port (a health check passes
    while it listens)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", 0))
    s.listen(64)
    return s


def wait_until(pred, timeout=20.0, interval=0.05, what="condition"):
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        last = pred()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError("timed out waiting for %s (last: %r)" % (what, last))


@pytest.fixture
def reg(tmp_path):
    """A factory of started registry nodes (keyword arguments as Registry's),
    each stopped and checked for sanitizer reports at the end of the test.
    Import it into a test module to use it."""
    nodes = []

    def make(**kw):
        r = Registry(tmp_path, **kw).start()
        nodes.append(r)
        return r
    yield make
    for r in nodes:
        r.stop()
        r.assert_clean()
