#!/usr/bin/env python3
"""What a client connection costs a worker in memory (docs/operations.md,
Capacity): one `sluice proxy` worker, N client connections, the worker's
VmRSS before, once they are accepted, and after one request on each.

    /usr/bin/python3 bench/conn_memory.py [N] [SLUICE_BINARY]

Uses 127.0.0.1 ports 19090 (listener), 19911 (admin) and 19012 (backend).
"""
import asyncio
import os
import re
import resource
import socket
import subprocess
import sys
import tempfile
import threading
import time

N = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
BINARY = sys.argv[2] if len(sys.argv) > 2 else "build/sluice"
CONFIG = """workers: 1
admin: { listen: 127.0.0.1:19911 }
log: { level: warn }
pools:
  - name: app
    keepalive: 64
    passive: { max_fails: 0 }
    backends: [127.0.0.1:19012]
listeners:
  - name: web
    listen: 127.0.0.1:19090
    protocol: http
    pool: app
"""


async def handle(reader, writer):
    """A keep-alive HTTP/1.1 backend answering every request with "ok"."""
    try:
        while await reader.readuntil(b"\r\n\r\n"):
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    writer.close()


def backend():
    async def main():
        server = await asyncio.start_server(handle, "127.0.0.1", 19012, backlog=1024)
        async with server:
            await server.serve_forever()
    asyncio.run(main())


def workers_rss_kib(master):
    pids = subprocess.run(["pgrep", "-P", str(master)], capture_output=True, text=True).stdout.split()
    total = 0
    for pid in pids:
        with open("/proc/%s/status" % pid) as f:
            total += next(int(l.split()[1]) for l in f if l.startswith("VmRSS:"))
    return total


def read_response(s):
    buf = b""
    while b"\r\n\r\n" not in buf:
        buf += s.recv(65536)
    head, _, body = buf.partition(b"\r\n\r\n")
    want = int(re.search(rb"content-length: (\d+)", head, re.I).group(1))
    while len(body) < want:
        body += s.recv(65536)


def main():
    resource.setrlimit(resource.RLIMIT_NOFILE, (N * 2 + 1000, N * 2 + 1000))
    threading.Thread(target=backend, daemon=True).start()
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        f.write(CONFIG)
    proxy = subprocess.Popen([BINARY, "proxy", "-c", f.name])
    try:
        time.sleep(1.5)
        start = workers_rss_kib(proxy.pid)
        conns = [socket.create_connection(("127.0.0.1", 19090)) for _ in range(N)]
        time.sleep(1)
        accepted = workers_rss_kib(proxy.pid)
        for s in conns:
            s.sendall(b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n")
        for s in conns:
            read_response(s)
        time.sleep(1)
        served = workers_rss_kib(proxy.pid)
        print("connections %d; worker RSS KiB: start %d, accepted %d (+%.2f per connection), "
              "after one request each %d (+%.2f per connection)"
              % (N, start, accepted, (accepted - start) / N, served, (served - start) / N))
        for s in conns:
            s.close()
    finally:
        proxy.terminate()
        proxy.wait()
        os.unlink(f.name)


if __name__ == "__main__":
    main()
