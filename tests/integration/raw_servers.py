"""Raw-socket backends and clients for the HTTP proxy tests.

http.server is too slow for gigabyte bodies and too polite to send broken
responses, so these servers speak HTTP/1.1 by hand on plain sockets:

  RawServer(handler)       a threaded TCP server on 127.0.0.1 that records
                           connections (with their client ports) and every
                           byte it receives; `handler(conn, rec)` does the talking.
  sink_source_handler      a fast keep-alive HTTP server: hashes request bodies
                           (Content-Length or chunked) and streams large
                           deterministic response bodies (Content-Length or chunked).
  scripted_handler(...)    answers each request head with fixed raw bytes (malformed
                           responses, 100 Continue, HEAD/204/304, huge header sets).
  upgrade_echo_handler     answers Upgrade requests with 101 and echoes bytes after it.
  silent_handler           reads and records, never answers.
  blackhole()              a listening socket whose accept queue is full, so a
                           connect to it never completes (loopback only).

Everything binds to 127.0.0.1 and every blocking call has a timeout.
"""
import hashlib
import os
import select
import socket
import struct
import threading
import time

IO_TIMEOUT = 30.0


class Recorder:
    """What one accepted connection sent us."""

    def __init__(self, server, port, keep_bytes):
        self.server = server
        self.port = port
        self.keep_bytes = keep_bytes
        self.data = bytearray()
        self.nbytes = 0

    def note(self, b):
        self.nbytes += len(b)
        with self.server.lock:
            self.server.bytes_in += len(b)
        if self.keep_bytes:
            self.data += b


class Conn:
    """A socket with a read-ahead buffer, counting what it receives."""

    def __init__(self, sock, rec):
        self.sock = sock
        self.rec = rec
        self.buf = bytearray()
        self.eof = False

    def _fill(self, n=1 << 16):
        b = self.sock.recv(n)
        if not b:
            self.eof = True
            return False
        self.rec.note(b)
        self.buf += b
        return True

    def read_head(self, limit=1 << 20):
        """Bytes up to and including CRLFCRLF, or None at EOF."""
        while True:
            i = self.buf.find(b"\r\n\r\n")
            if i >= 0:
                head = bytes(self.buf[:i + 4])
                del self.buf[:i + 4]
                return head
            if len(self.buf) > limit or not self._fill():
                return None

    def read_line(self):
        while True:
            i = self.buf.find(b"\r\n")
            if i >= 0:
                line = bytes(self.buf[:i])
                del self.buf[:i + 2]
                return line
            if not self._fill():
                raise EOFError("eof in a line")

    def read_exact_into_hash(self, n, h):
        """Read n bytes, feeding them to h; fast path with recv_into."""
        take = min(n, len(self.buf))
        if take:
            h.update(self.buf[:take])
            del self.buf[:take]
            n -= take
        got = take
        block = bytearray(1 << 20)
        view = memoryview(block)
        while n:
            k = self.sock.recv_into(view, min(n, len(block)))
            if not k:
                self.eof = True
                break
            _count(self.rec, k)
            h.update(view[:k])
            n -= k
            got += k
        return got

    def read_chunked_into_hash(self, h):
        """Decode a chunked body (trusting the proxy validated it). Returns bytes of data."""
        total = 0
        while True:
            line = self.read_line()
            size = int(line.split(b";")[0], 16)
            if size == 0:
                while self.read_line() != b"":
                    pass
                return total
            got = self.read_exact_into_hash(size, h)
            total += got
            if got != size or self.read_line() != b"":
                raise EOFError("bad chunk")

    def sendall(self, data):
        self.sock.sendall(data)


def _count(rec, k):
    # Bulk reads are counted but not kept: a gigabyte would not fit the point.
    rec.nbytes += k
    with rec.server.lock:
        rec.server.bytes_in += k


def parse_head(head):
    """(method, target, version, {lower-name: [values]}) of a request or response head."""
    lines = head[:-4].split(b"\r\n")
    first = lines[0].decode("latin-1").split(" ", 2)
    headers = {}
    for ln in lines[1:]:
        name, _, value = ln.decode("latin-1").partition(":")
        headers.setdefault(name.strip().lower(), []).append(value.strip())
    return first, headers


class RawServer:
    """A threaded TCP server; handler(conn: Conn, server) runs per connection."""

    def __init__(self, handler, name="raw", keep_bytes=True, backlog=128):
        self.handler = handler
        self.name = name
        self.keep_bytes = keep_bytes
        self.lock = threading.Lock()
        self.records = []        # one Recorder per accepted connection
        self.bytes_in = 0
        self.log = []            # whatever handlers want to report (dicts)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(backlog)
        self.port = self.sock.getsockname()[1]
        self.stopping = False
        self.open_socks = set()
        self.thread = threading.Thread(target=self._accept_loop, daemon=True)
        self.thread.start()

    @property
    def addr(self):
        return "127.0.0.1:%d" % self.port

    def connections(self):
        with self.lock:
            return len(self.records)

    def client_ports(self):
        with self.lock:
            return {r.port for r in self.records}

    def received(self):
        """Everything received so far, per connection."""
        with self.lock:
            return [bytes(r.data) for r in self.records]

    def total_bytes(self):
        with self.lock:
            return self.bytes_in

    def _accept_loop(self):
        while not self.stopping:
            r, _, _ = select.select([self.sock], [], [], 0.05)
            if not r:
                continue
            try:
                s, addr = self.sock.accept()
            except OSError:
                continue
            s.settimeout(IO_TIMEOUT)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            rec = Recorder(self, addr[1], self.keep_bytes)
            with self.lock:
                self.records.append(rec)
                self.open_socks.add(s)
            threading.Thread(target=self._serve, args=(s, rec), daemon=True).start()

    def _serve(self, s, rec):
        try:
            self.handler(Conn(s, rec), self)
        except (OSError, EOFError, ValueError):
            pass
        finally:
            with self.lock:
                self.open_socks.discard(s)
            try:
                s.close()
            except OSError:
                pass

    def stop(self):
        self.stopping = True
        self.thread.join(timeout=5)
        self.sock.close()
        with self.lock:
            socks = list(self.open_socks)
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


# ---------------------------------------------------------------- handlers

def pattern_block(seed=b"sluice"):
    """1 MiB of pseudo-random bytes, the same for a seed on both ends."""
    out = bytearray()
    h = hashlib.sha512(seed).digest()
    while len(out) < (1 << 20):
        h = hashlib.sha512(h).digest()
        out += h * 16
    return bytes(out[:1 << 20])


def numbered_blocks(total, seed=b"sluice"):
    """Yield `total` bytes as 1 MiB blocks, each stamped with its index so a
    lost, repeated or reordered block changes the digest."""
    block = pattern_block(seed)
    i = 0
    left = total
    while left:
        n = min(left, len(block))
        b = struct.pack(">Q", i) + block[8:n] if n > 8 else block[:n]
        yield b
        left -= n
        i += 1


def sink_source_handler(conn, srv):
    """Keep-alive loop. Requests:
       GET /download/N            N bytes, Content-Length
       GET /download-chunked/N    N bytes, chunked with varying chunk sizes
       anything else              reads the body (CL or chunked) and answers
                                  "<len> <sha256>" with Content-Length.
    Every answer reports the digest it computed in srv.log."""
    while True:
        head = conn.read_head()
        if head is None:
            return
        (method, target, _), hdr = parse_head(head)
        h = hashlib.sha256()
        if "chunked" in ",".join(hdr.get("transfer-encoding", [])).lower():
            n = conn.read_chunked_into_hash(h)
        else:
            want = int(hdr.get("content-length", ["0"])[0])
            n = conn.read_exact_into_hash(want, h)
            if n != want:
                return
        parts = target.split("/")
        if target.startswith("/download/"):
            total = int(parts[2])
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % total)
            out = hashlib.sha256()
            for b in numbered_blocks(total):
                out.update(b)
                conn.sendall(b)
            with srv.lock:
                srv.log.append({"target": target, "sent": total, "sha256": out.hexdigest()})
            continue
        if target.startswith("/download-chunked/"):
            total = int(parts[2])
            conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            out = hashlib.sha256()
            sizes = [1, 7, 4096, 65536, 100000, 333]
            k = 0
            for b in numbered_blocks(total):
                pos = 0
                while pos < len(b):
                    piece = b[pos:pos + sizes[k % len(sizes)]]
                    k += 1
                    pos += len(piece)
                    out.update(piece)
                    ext = b";n=%d" % k if k % 5 == 0 else b""
                    conn.sendall(b"%x%s\r\n%s\r\n" % (len(piece), ext, piece))
            conn.sendall(b"0\r\nX-Trailer: done\r\n\r\n")
            with srv.lock:
                srv.log.append({"target": target, "sent": total, "sha256": out.hexdigest()})
            continue
        body = b"%d %s\n" % (n, h.hexdigest().encode())
        with srv.lock:
            srv.log.append({"target": target, "received": n, "sha256": h.hexdigest()})
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))


def scripted_handler(responses, close_after=False, read_body=True):
    """Answer the k-th request head on a connection with responses[k] (the
    last one repeats). A response may be a callable(head) -> bytes."""
    def handler(conn, srv):
        k = 0
        while True:
            head = conn.read_head()
            if head is None:
                return
            _, hdr = parse_head(head)
            if read_body and "content-length" in hdr:
                conn.read_exact_into_hash(int(hdr["content-length"][0]), hashlib.sha1())
            resp = responses[min(k, len(responses) - 1)]
            k += 1
            if callable(resp):
                resp = resp(head)
            with srv.lock:
                srv.log.append({"head": head})
            conn.sendall(resp)
            if close_after:
                conn.sock.shutdown(socket.SHUT_WR)
                # Read until the proxy closes, so our close is a FIN, not a reset.
                while conn._fill():
                    pass
                return
    return handler


def upgrade_echo_handler(conn, srv):
    """101 Switching Protocols to an Upgrade request, then echo every byte.
    An Upgrade request for /refuse... gets a normal 426, a request without
    Upgrade a normal 200 "plain", and the connection stays plain HTTP."""
    while True:
        head = conn.read_head()
        if head is None:
            return
        (_, target, _), hdr = parse_head(head)
        with srv.lock:
            srv.log.append({"head": head})
        if "upgrade" not in hdr:
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nplain\n")
            continue
        if target.startswith("/refuse"):
            body = b"no upgrade here\n"
            conn.sendall(b"HTTP/1.1 426 Upgrade Required\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
            continue
        conn.sendall(b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: %s\r\n\r\n"
                     % hdr["upgrade"][0].encode())
        if conn.buf:
            conn.sendall(bytes(conn.buf))
            conn.buf.clear()
        while True:
            b = conn.sock.recv(65536)
            if not b:
                conn.sock.shutdown(socket.SHUT_WR)
                return
            conn.rec.note(b)
            conn.sendall(b)


def silent_handler(conn, srv):
    """Read and record everything; never answer."""
    while conn._fill():
        pass


def recorder_handler(conn, srv):
    """Record everything; answer a complete body-less request with 200 "ok"
    (so tests can check the path works), never anything else."""
    while True:
        head = conn.read_head()
        if head is None:
            return
        _, hdr = parse_head(head)
        if "content-length" in hdr or "transfer-encoding" in hdr:
            silent_handler(conn, srv)
            return
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n")


# ---------------------------------------------------------------- blackhole

class Blackhole:
    """A port on 127.0.0.1 that never completes a TCP handshake: a listening
    socket with backlog 0 that never accepts, its one queue slot taken.
    Linux then drops further SYNs, so connect() just waits."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(0)
        self.port = self.sock.getsockname()[1]
        self.fillers = []
        self.reliable = False
        for _ in range(8):
            c = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            c.settimeout(0.3)
            self.fillers.append(c)
            try:
                c.connect(("127.0.0.1", self.port))
            except (socket.timeout, OSError):
                self.reliable = True  # this one hangs: the queue is full
                break

    @property
    def addr(self):
        return "127.0.0.1:%d" % self.port

    def close(self):
        for c in self.fillers:
            c.close()
        self.sock.close()


# ---------------------------------------------------------------- clients

def recv_until_close(sock, timeout=10.0, limit=1 << 26):
    """Everything the peer sends until it closes (or resets), bounded in time."""
    deadline = time.monotonic() + timeout
    out = bytearray()
    while time.monotonic() < deadline and len(out) < limit:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            b = sock.recv(65536)
        except socket.timeout:
            break
        except (ConnectionResetError, BrokenPipeError):
            break
        if not b:
            break
        out += b
    return bytes(out)


def is_closed(sock, timeout=3.0):
    """True if the peer closed (EOF or reset) within timeout, ignoring data."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            b = sock.recv(65536)
        except socket.timeout:
            return False
        except (ConnectionResetError, BrokenPipeError):
            return True
        if not b:
            return True
    return False


class Response:
    def __init__(self, status, reason, headers, body, raw_head):
        self.status = status
        self.reason = reason
        self.headers = headers   # lower-name -> [values]
        self.body = body
        self.raw_head = raw_head

    def header(self, name, default=None):
        v = self.headers.get(name.lower())
        return v[0] if v else default


class HttpClient:
    """One persistent client connection reading responses one at a time."""

    def __init__(self, port, timeout=10.0):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.timeout = timeout
        self.buf = bytearray()

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()

    def send(self, data):
        self.sock.sendall(data)

    def _fill(self):
        b = self.sock.recv(1 << 16)
        if not b:
            raise EOFError("connection closed by the proxy")
        self.buf += b

    def read_response(self, method="GET", sink=None):
        """Read one response. Bodies go to sink(bytes) if given (for big ones)."""
        deadline = time.monotonic() + self.timeout
        while b"\r\n\r\n" not in self.buf:
            if time.monotonic() > deadline:
                raise TimeoutError("no response head")
            self._fill()
        i = self.buf.index(b"\r\n\r\n")
        head = bytes(self.buf[:i + 4])
        del self.buf[:i + 4]
        first, hdr = parse_head(head)
        status = int(first[1])
        reason = first[2] if len(first) > 2 else ""
        body = bytearray()

        def emit(b):
            if sink:
                sink(b)
            else:
                body.extend(b)

        if method == "HEAD" or status < 200 or status in (204, 304):
            pass
        elif "chunked" in ",".join(hdr.get("transfer-encoding", [])).lower():
            while True:
                line = self._line()
                size = int(line.split(b";")[0], 16)
                if size == 0:
                    while self._line() != b"":
                        pass
                    break
                self._exact(size, emit)
                if self._line() != b"":
                    raise ValueError("bad chunk terminator")
        elif "content-length" in hdr:
            self._exact(int(hdr["content-length"][0]), emit)
        else:
            while True:
                try:
                    if self.buf:
                        emit(bytes(self.buf))
                        self.buf.clear()
                    self._fill()
                except EOFError:
                    break
        return Response(status, reason, hdr, bytes(body), head)

    def _line(self):
        while b"\r\n" not in self.buf:
            self._fill()
        i = self.buf.index(b"\r\n")
        line = bytes(self.buf[:i])
        del self.buf[:i + 2]
        return line

    def _exact(self, n, emit):
        while n:
            if not self.buf:
                self._fill()
            take = min(n, len(self.buf))
            emit(bytes(self.buf[:take]))
            del self.buf[:take]
            n -= take


# ---------------------------------------------------------------- process memory

def child_pids(pid):
    """Direct children of pid (the workers of a sluice master)."""
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                stat = f.read()
        except OSError:
            continue
        # pid (comm) state ppid ...: comm may hold spaces, so split after ')'
        fields = stat[stat.rindex(")") + 2:].split()
        if int(fields[1]) == pid:
            out.append(int(d))
    return out


def status_kib(pid, key):
    """A /proc/<pid>/status value in KiB (VmRSS, VmHWM), or 0."""
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


class RssSampler:
    """Samples VmRSS of the given pids every `interval` s in a thread; max_kib
    is the largest value seen, hwm_kib() the kernel's own peak (VmHWM)."""

    def __init__(self, pids, interval=0.05):
        self.pids = list(pids)
        self.interval = interval
        self.max_kib = 0
        self.samples = 0
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            for p in self.pids:
                self.max_kib = max(self.max_kib, status_kib(p, "VmRSS"))
            self.samples += 1
            self._stop.wait(self.interval)

    def __enter__(self):
        self._t.start()
        return self

    def __exit__(self, *a):
        self._stop.set()
        self._t.join(timeout=2)

    def hwm_kib(self):
        return max(status_kib(p, "VmHWM") for p in self.pids)


# ---------------------------------------------------------------- config

def http_config(port, pools, routes=None, default_pool=None, timeouts=None, limits=None,
                retries=0, keepalive=None, workers=1, admin_port=None, listener_extra=None,
                log_level="warn"):
    """YAML for one http listener on 127.0.0.1:port.

    pools: {name: [addr, ...]}; routes: [(host or None, path_prefix or None, pool)];
    timeouts/limits: {key: value} written as given ("500ms", "16k");
    admin_port: serve the admin API (and /metrics) there; listener_extra:
    {key: value} lines added to the listener as given."""
    admin_listen = "127.0.0.1:%d" % admin_port if admin_port else "off"
    y = "workers: %d\nadmin: { listen: %s }\nlog: { level: %s }\npools:\n" % (workers, admin_listen, log_level)
    for name, addrs in pools.items():
        y += "  - name: %s\n    retries: %d\n    passive: { max_fails: 0 }\n" % (name, retries)
        if keepalive is not None:
            y += "    keepalive: %d\n" % keepalive
        y += "    backends: [%s]\n" % ", ".join(addrs)
    y += "listeners:\n  - name: web\n    listen: 127.0.0.1:%d\n    protocol: http\n" % port
    if default_pool:
        y += "    pool: %s\n" % default_pool
    if routes:
        y += "    routes:\n"
        for host, prefix, pool in routes:
            y += "      - pool: %s\n" % pool
            if host:
                y += '        host: "%s"\n' % host
            if prefix:
                y += "        path_prefix: %s\n" % prefix
    if timeouts:
        y += "    timeouts: { %s }\n" % ", ".join("%s: %s" % kv for kv in timeouts.items())
    if limits:
        y += "    limits: { %s }\n" % ", ".join("%s: %s" % kv for kv in limits.items())
    for key, value in (listener_extra or {}).items():
        y += "    %s: %s\n" % (key, value)
    return y
