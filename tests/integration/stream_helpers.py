"""Backends and a proxy runner for the TCP/UDP stream proxy tests.

Everything binds to 127.0.0.1 on ports the kernel hands out, and every
wait is bounded. The proxy binary is $SLUICE_BIN, else build/sluice-asan
if it was built (sanitizer reports are then checked at the end), else
build/sluice.
"""
import hashlib
import os
import select
import signal
import socket
import subprocess
import threading
import time

from helpers import free_port, wait_for  # noqa: F401  (shared with the other tests)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def sluice_binary():
    env = os.environ.get("SLUICE_BIN")
    if env:
        return env
    asan = os.path.join(ROOT, "build", "sluice-asan")
    if os.access(asan, os.X_OK):
        return asan
    return os.path.join(ROOT, "build", "sluice")


class TcpBackend:
    """A threaded TCP server on 127.0.0.1.

    mode "echo": sends back every chunk as it arrives; on EOF shuts down its
    write side. mode "digest": reads until EOF and only then answers
    b"<length> <sha256 hex>", so an answer proves the client's FIN got
    through while the other direction stayed open.
    """

    def __init__(self, mode="echo", tls=None):
        """tls: an ssl.SSLContext (server side) to speak TLS to the proxy."""
        self.mode = mode
        self.tls = tls
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.port = self.sock.getsockname()[1]
        self.addr = "127.0.0.1:%d" % self.port
        self.accepted = 0
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._accept_loop, daemon=True)
        self.thread.start()

    def _accept_loop(self):
        while not self.stopping.is_set():
            r, _, _ = select.select([self.sock], [], [], 0.1)
            if not r:
                continue
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            with self.lock:
                self.accepted += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        # Longer than any client-side wait: a backend giving up must never
        # be what ends a connection a test is waiting on.
        conn.settimeout(60)
        try:
            if self.tls is not None:
                conn = self.tls.wrap_socket(conn, server_side=True)
            if self.mode == "echo":
                while True:
                    data = conn.recv(65536)
                    if not data:
                        break
                    conn.sendall(data)
                conn.shutdown(socket.SHUT_WR)
            else:
                h = hashlib.sha256()
                n = 0
                while True:
                    data = conn.recv(65536)
                    if not data:
                        break
                    h.update(data)
                    n += len(data)
                conn.sendall(b"%d %s" % (n, h.hexdigest().encode()))
                conn.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        finally:
            conn.close()

    def count(self):
        with self.lock:
            return self.accepted

    def stop(self):
        self.stopping.set()
        self.thread.join(timeout=2)
        self.sock.close()


class UdpBackend:
    """A UDP echo server that names itself: the reply to payload P is
    b"<tag>|<source port>|" + P, so a test sees which backend answered and
    which proxy session socket the datagram came from."""

    def __init__(self, tag):
        self.tag = tag
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.addr = "127.0.0.1:%d" % self.port
        self.received = 0
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self):
        while not self.stopping.is_set():
            try:
                data, src = self.sock.recvfrom(65535)
            except socket.timeout:
                continue
            except OSError:
                continue
            self.received += 1
            try:
                self.sock.sendto(b"%s|%d|" % (self.tag.encode(), src[1]) + data, src)
            except OSError:
                pass

    def stop(self):
        self.stopping.set()
        self.thread.join(timeout=2)
        self.sock.close()


def parse_udp_reply(reply):
    """b"tag|port|payload" -> (tag, port, payload)."""
    tag, port, payload = reply.split(b"|", 2)
    return tag.decode(), int(port), payload


class StreamProxy:
    """`sluice proxy -c FILE` running with a given config."""

    def __init__(self, tmp_dir, config_text):
        self.config_path = os.path.join(tmp_dir, "sluice-stream.yaml")
        self.log_path = os.path.join(tmp_dir, "sluice-stream.log")
        with open(self.config_path, "w") as f:
            f.write(config_text)
        self.proc = None
        self.log = None

    def start(self, tcp_ports=(), timeout=10.0):
        self.log = open(self.log_path, "ab")
        env = dict(os.environ)
        env.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0")
        env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1")
        self.proc = subprocess.Popen([sluice_binary(), "proxy", "-c", self.config_path],
                                     stdout=self.log, stderr=subprocess.STDOUT, env=env)
        for port in tcp_ports:
            if not self._wait_listening(port, timeout):
                log = self.read_log()
                self.stop()
                raise RuntimeError("sluice is not listening on %d:\n%s" % (port, log[-4000:]))
        return self

    def _wait_listening(self, port, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    return True
            except OSError:
                time.sleep(0.05)
        return False

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def read_log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode(errors="replace")
        except FileNotFoundError:
            return ""

    def stop(self, timeout=15.0):
        """SIGTERM, then SIGKILL if draining takes too long. Returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        rc = self.proc.returncode
        self.log.close()
        self.proc = None
        return rc

    def sanitizer_reports(self):
        text = self.read_log()
        bad = ("ERROR: AddressSanitizer", "runtime error:", "ERROR: LeakSanitizer")
        return [b for b in bad if b in text]


def tcp_roundtrip(port, payload, timeout=10.0, half_close=True):
    """Send payload through the proxy while reading concurrently (bounded
    buffers on every hop would deadlock a send-then-read client), then
    shut down the write side and read until EOF. Returns what came back;
    raises TimeoutError if EOF does not arrive within timeout."""
    deadline = time.monotonic() + timeout
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.settimeout(timeout)
    errors = []

    def send():
        try:
            s.sendall(payload)
            if half_close:
                s.shutdown(socket.SHUT_WR)
        except OSError as e:
            errors.append(e)

    t = threading.Thread(target=send, daemon=True)
    t.start()
    chunks = []
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no EOF within %.1fs (%d bytes received)"
                                   % (timeout, sum(map(len, chunks))))
            s.settimeout(left)
            try:
                data = s.recv(1 << 16)
            except socket.timeout:
                continue
            if not data:
                break
            chunks.append(data)
    finally:
        t.join(timeout=timeout)
        s.close()
    if errors:
        raise errors[0]
    return b"".join(chunks)


def udp_ask(sock, port, payload, timeout=2.0):
    """One datagram to the proxy, one reply back (None on timeout)."""
    sock.settimeout(timeout)
    sock.sendto(payload, ("127.0.0.1", port))
    try:
        data, _ = sock.recvfrom(65535)
        return data
    except socket.timeout:
        return None


def udp_ask_retry(sock, port, payload, attempts=20, timeout=0.25):
    """Ask until a reply comes (for paths that lose the first datagrams,
    e.g. a session that started on a dead backend)."""
    for _ in range(attempts):
        r = udp_ask(sock, port, payload, timeout)
        if r is not None:
            return r
    return None


def new_udp_client():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    return s
