"""A small threaded HTTP/1.1 backend for tests and the demo.

It answers every request with its name, records what it saw (method,
path, headers, client address, body length), and can be told to fail,
delay, stream large bodies or answer chunked. GET /headers also echoes the
request's header fields in the body (the demo shows X-Forwarded-Proto).
"""
import hashlib
import http.server
import socket
import socketserver
import threading
import time


class _Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 1024


class HttpBackend:
    def __init__(self, name="backend", port=0, host="127.0.0.1", status=200, delay=0.0, tls=None):
        """tls: an ssl.SSLContext (server side) to speak HTTPS; each request
        then records its connection's "tls": version, resumed, sni."""
        self.name = name
        self.tls = tls
        self.host = host
        self.port = port
        self.status = status
        self.delay = delay
        self.requests = []
        self.lock = threading.Lock()
        self.server = None
        self.thread = None

    @property
    def address(self):
        return "%s:%d" % (self.host, self.port)

    def count(self):
        with self.lock:
            return len(self.requests)

    def client_ports(self):
        """Distinct source ports seen: one per TCP connection the proxy opened."""
        with self.lock:
            return {r["port"] for r in self.requests}

    def _handler(self):
        backend = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # One segment per response: a buffered writer flushed after each
            # request, and no Nagle delay waiting on the proxy's delayed ACK.
            wbufsize = 1 << 16
            disable_nagle_algorithm = True

            def handle_expect_100(self):
                # The buffered writer would hold "100 Continue" back until the
                # final response, and the client would wait for it in vain.
                ok = super().handle_expect_100()
                self.wfile.flush()
                return ok

            def log_message(self, *a):
                pass

            def _body(self):
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    h = hashlib.sha256()
                    n = 0
                    while True:
                        line = self.rfile.readline()
                        size = int(line.split(b";")[0], 16)
                        if size == 0:
                            while self.rfile.readline() not in (b"\r\n", b""):
                                pass
                            break
                        left = size
                        while left:
                            b = self.rfile.read(min(left, 1 << 16))
                            h.update(b)
                            left -= len(b)
                            n += len(b)
                        self.rfile.readline()
                    return n, h.hexdigest()
                length = int(self.headers.get("Content-Length", "0") or 0)
                h = hashlib.sha256()
                left = length
                while left:
                    b = self.rfile.read(min(left, 1 << 16))
                    if not b:
                        break
                    h.update(b)
                    left -= len(b)
                return length - left, h.hexdigest()

            def _answer(self):
                n, digest = self._body()
                with backend.lock:
                    backend.requests.append({
                        "method": self.command, "path": self.path,
                        "headers": {k: v for k, v in self.headers.items()},
                        "header_list": list(self.headers.items()),  # every field, in order
                        "client": self.client_address[0], "body_len": n,
                        "port": self.client_address[1],
                        "tls": backend._tls_facts(self.connection),
                    })
                if backend.delay:
                    time.sleep(backend.delay)
                path = self.path
                if path.startswith("/bytes/"):
                    self._send_bytes(int(path.split("/")[2].split("?")[0]))
                    return
                if path.startswith("/chunked/"):
                    self._send_chunked(int(path.split("/")[2]))
                    return
                status = backend.status
                if path.startswith("/status/"):
                    status = int(path.split("/")[2])
                body = ("%s %s %s body=%d sha256=%s\n" % (backend.name, self.command, path, n, digest)).encode()
                if path == "/headers":      # an echo of the request head, for the demo
                    body += "".join("%s: %s\n" % kv for kv in self.headers.items()).encode()
                self.send_response(status)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.send_header("X-Backend", backend.name)
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def _send_bytes(self, size):
                self.send_response(200)
                self.send_header("Content-Length", str(size))
                self.send_header("X-Backend", backend.name)
                self.end_headers()
                block = bytes(range(256)) * 256
                left = size
                while left:
                    chunk = block[: min(left, len(block))]
                    self.wfile.write(chunk)
                    left -= len(chunk)

            def _send_chunked(self, n_chunks):
                self.send_response(200)
                self.send_header("Transfer-Encoding", "chunked")
                self.send_header("X-Backend", backend.name)
                self.end_headers()
                for i in range(n_chunks):
                    data = ("chunk-%d;" % i).encode()
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                self.wfile.write(b"0\r\n\r\n")

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = do_OPTIONS = _answer

        return Handler

    @staticmethod
    def _tls_facts(conn):
        if not hasattr(conn, "version"):
            return None
        return {"version": conn.version(), "resumed": conn.session_reused,
                "sni": getattr(conn, "sni_seen", None)}

    def start(self):
        self.server = _Server((self.host, self.port), self._handler())
        self.port = self.server.server_address[1]
        if self.tls is not None:
            def remember_sni(sock, name, ctx):
                sock.sni_seen = name
            self.tls.sni_callback = remember_sni
            # The handshake runs on the first read, in the request's own
            # thread, so one slow client does not hold up accepting.
            self.server.socket = self.tls.wrap_socket(self.server.socket, server_side=True,
                                                      do_handshake_on_connect=False)
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)
        self.thread.start()
        return self

    def stop(self):
        if self.server:
            self.server.shutdown()
            self.server.server_close()
            self.server = None


def main():
    import argparse
    ap = argparse.ArgumentParser(description="demo HTTP backend")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--name", required=True)
    a = ap.parse_args()
    b = HttpBackend(name=a.name, port=a.port).start()
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        b.stop()


if __name__ == "__main__":
    main()
