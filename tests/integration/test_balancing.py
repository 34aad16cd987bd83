"""Balancing algorithms and retries, end to end: the real binary, Python
backends, loopback only. Every request goes over a new connection unless
the test says otherwise."""
import collections
import socket
import struct
import threading
import time

import pytest

from helpers import admin_json, free_port, fresh_get, pool_backends, wait_for


def config(port, admin_port, backends, algorithm="round_robin", extra_pool="", extra_listener="",
           workers=1):
    """One pool "app" behind one http listener. backends: list of
    "ip:port" strings or (address, weight) tuples."""
    lines = ["workers: %d" % workers,
             "admin: { listen: 127.0.0.1:%d }" % admin_port,
             "pools:",
             "  - name: app",
             "    algorithm: %s" % algorithm]
    if extra_pool:
        lines += ["    " + l for l in extra_pool.strip("\n").split("\n")]
    lines.append("    backends:")
    for b in backends:
        addr, weight = b if isinstance(b, tuple) else (b, 1)
        lines += ["      - address: %s" % addr, "        weight: %d" % weight]
    lines += ["listeners:",
              "  - name: web",
              "    listen: 127.0.0.1:%d" % port,
              "    pool: app"]
    if extra_listener:
        lines += ["    " + l for l in extra_listener.strip("\n").split("\n")]
    return "\n".join(lines) + "\n"


def start(sluice, backends_list, **kw):
    port, aport = free_port(), free_port()
    s = sluice(config(port, aport, backends_list, **kw), wait_ports=[port, aport],
               workers=kw.get("workers", 1))
    return s, port, aport


def who(port, n, **kw):
    """Counter of X-Backend over n requests (each must be a 200)."""
    seen = collections.Counter()
    for _ in range(n):
        status, headers, body = fresh_get(port, **kw)
        assert status == 200, (status, body)
        seen[headers["x-backend"]] += 1
    return seen


# ---------------------------------------------------------------- algorithms

def test_round_robin_spreads_evenly(sluice, backends):
    bs = backends(3)
    s, port, _ = start(sluice, [b.address for b in bs])
    seen = who(port, 30)
    assert seen == {"b1": 10, "b2": 10, "b3": 10}, seen


def test_weights_are_honoured(sluice, backends):
    bs = backends(2)
    s, port, _ = start(sluice, [(bs[0].address, 3), (bs[1].address, 1)])
    seen = who(port, 40)
    # Smooth weighted round-robin with one worker is exact over a cycle.
    assert seen == {"b1": 30, "b2": 10}, seen


def test_weights_roughly_with_two_workers(sluice, backends):
    bs = backends(2)
    s, port, _ = start(sluice, [(bs[0].address, 3), (bs[1].address, 1)], workers=2)
    seen = who(port, 120)
    assert 70 <= seen["b1"] <= 110, seen


def hold_on(port, backend, before):
    """Send requests (each in a thread) until one is held by `backend`,
    which must be slow; the others come back at once. Returns the threads
    and their results."""
    results, threads = [], []
    deadline = time.time() + 5
    while backend.count() <= before and time.time() < deadline:
        t = threading.Thread(target=lambda: results.append(fresh_get(port, "/slow", timeout=10)))
        t.start()
        threads.append(t)
        wait_for(lambda: len(results) + backend.count() - before >= len(threads), timeout=2)
    assert backend.count() == before + 1
    return threads, results


def test_least_conn_prefers_idle_backends(sluice, backends):
    bs = backends(3)
    slow = bs[0]
    s, port, _ = start(sluice, [b.address for b in bs], algorithm="least_conn")
    slow.delay = 2.0
    threads, results = hold_on(port, slow, 0)
    # While b1 holds a connection, everything goes to b2 and b3, evenly.
    seen = who(port, 20)
    assert seen == {"b2": 10, "b3": 10}, seen
    for t in threads:
        t.join(10)
    assert all(r[0] == 200 for r in results), results


def test_p2c_spreads_and_avoids_busy(sluice, backends):
    bs = backends(3)
    s, port, _ = start(sluice, [b.address for b in bs], algorithm="p2c")
    seen = who(port, 90)
    assert set(seen) == {"b1", "b2", "b3"}, seen
    assert min(seen.values()) >= 10, seen
    # With a request stuck on b1, b1 loses every comparison of two
    # (distinct) candidates.
    bs[0].delay = 2.0
    threads, results = hold_on(port, bs[0], bs[0].count())
    seen2 = who(port, 30)
    assert seen2["b1"] == 0 and len(seen2) == 2, seen2
    for t in threads:
        t.join(10)
    assert all(r[0] == 200 for r in results), results


@pytest.mark.parametrize("key", ["client_ip", "header:X-User", "cookie:uid", "uri"])
def test_hash_keys_are_sticky_and_spread(sluice, backends, key):
    bs = backends(3)
    s, port, _ = start(sluice, [b.address for b in bs], algorithm="hash",
                       extra_pool='hash_key: "%s"' % key)

    def request(k):
        kw = {}
        if key == "client_ip":
            kw["source_ip"] = "127.0.0.%d" % (k + 2)
        elif key == "header:X-User":
            kw["headers"] = {"X-User": "user-%d" % k}
        elif key == "cookie:uid":
            kw["headers"] = {"Cookie": "theme=dark; uid=u%d; lang=en" % k}
        else:
            kw["path"] = "/item/%d?x=1" % k
        status, headers, body = fresh_get(port, **kw)
        assert status == 200, (status, body)
        return headers["x-backend"]

    owners = {}
    for k in range(24):
        first = request(k)
        for _ in range(3):
            assert request(k) == first, "key %d moved" % k
        owners[k] = first
    spread = collections.Counter(owners.values())
    assert len(spread) == 3 and min(spread.values()) >= 2, spread


def sticky_cookie_of(headers):
    sc = headers.get("set-cookie", "")
    assert sc.startswith("SLUICE="), headers
    return sc.split(";")[0]


def test_sticky_cookie(sluice, backends):
    bs = backends(3)
    s, port, aport = start(sluice, [b.address for b in bs], extra_pool="sticky_cookie: SLUICE")
    status, headers, _ = fresh_get(port)
    assert status == 200
    cookie = sticky_cookie_of(headers)
    owner = headers["x-backend"]
    owner_addr = bs[int(owner[1:]) - 1].address
    for _ in range(10):
        st, h, _ = fresh_get(port, headers={"Cookie": "a=b; " + cookie})
        assert st == 200 and h["x-backend"] == owner
        assert "set-cookie" not in h  # the cookie is already right
    # Without the cookie, round-robin goes on as usual.
    assert len(who(port, 6)) == 3

    # Draining keeps the sessions of existing clients, new ones avoid it.
    st, _ = admin_json(aport, "POST", "/api/pools/app/backends/%s/drain" % owner_addr)
    assert st == 200
    time.sleep(0.4)
    for _ in range(5):
        st, h, _ = fresh_get(port, headers={"Cookie": cookie})
        assert st == 200 and h["x-backend"] == owner
    assert owner not in who(port, 10)

    # Disabled: the session moves, and the client gets a new cookie.
    st, _ = admin_json(aport, "POST", "/api/pools/app/backends/%s/disable" % owner_addr)
    assert st == 200
    time.sleep(0.4)
    st, h, _ = fresh_get(port, headers={"Cookie": cookie})
    assert st == 200 and h["x-backend"] != owner
    new_cookie = sticky_cookie_of(h)
    assert new_cookie != cookie
    moved_to = h["x-backend"]
    for _ in range(5):
        st, h, _ = fresh_get(port, headers={"Cookie": new_cookie})
        assert st == 200 and h["x-backend"] == moved_to


# ---------------------------------------------------------------- retries

class ResetBackend:
    """Accepts, reads a request head (and whatever body came with it), then
    closes with SO_LINGER 0: a reset before any response byte."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.sock.settimeout(0.1)
        self.address = "127.0.0.1:%d" % self.sock.getsockname()[1]
        self.requests = []
        self.stopped = False
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        while not self.stopped:
            try:
                c, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            c.settimeout(2)
            data = b""
            try:
                while b"\r\n\r\n" not in data:
                    chunk = c.recv(65536)
                    if not chunk:
                        break
                    data += chunk
            except OSError:
                pass
            if data:
                self.requests.append(data.split(b"\r\n", 1)[0].decode())
            c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            c.close()

    def stop(self):
        self.stopped = True
        self.thread.join(2)
        self.sock.close()


@pytest.fixture
def reset_backend():
    rb = ResetBackend()
    yield rb
    rb.stop()


NO_PASSIVE = "passive: { max_fails: 0 }"


def test_connect_failure_is_retried(sluice, backends):
    bs = backends(1)
    dead = "127.0.0.1:%d" % free_port()
    s, port, aport = start(sluice, [dead, bs[0].address], extra_pool=NO_PASSIVE)
    for _ in range(10):
        status, headers, _ = fresh_get(port)
        assert status == 200 and headers["x-backend"] == "b1"
    info = pool_backends(aport, "app")
    assert info[dead]["counters"]["connect_failures"] >= 4
    # A retry is counted on the backend that failed, not the one retried on.
    assert info[dead]["counters"]["retries"] == info[dead]["counters"]["connect_failures"]
    assert info[bs[0].address]["counters"]["retries"] == 0


def test_reset_before_response_retried_for_get_not_post(sluice, backends, reset_backend):
    bs = backends(1)
    s, port, aport = start(sluice, [reset_backend.address, bs[0].address], extra_pool=NO_PASSIVE)
    for _ in range(6):
        status, headers, _ = fresh_get(port, "/get")
        assert status == 200 and headers["x-backend"] == "b1"
    assert len(reset_backend.requests) >= 3
    assert all(r.startswith("GET /get") for r in reset_backend.requests)
    info = pool_backends(aport, "app")
    assert info[reset_backend.address]["counters"]["retries"] == len(reset_backend.requests)
    assert info[bs[0].address]["counters"]["retries"] == 0

    # POST with a body: once sent, a POST may have had effects; no replay.
    reset_backend.requests.clear()
    got = collections.Counter()
    for i in range(6):
        status, headers, body = fresh_get(port, "/post", method="POST", body=b"x" * 100,
                                          headers={"Content-Type": "text/plain"})
        got[status] += 1
    assert set(got) == {200, 502}, got
    assert got[502] == len(reset_backend.requests), (got, reset_backend.requests)
    posts_at_b1 = [r for r in bs[0].requests if r["method"] == "POST"]
    assert len(posts_at_b1) == got[200]
    info = pool_backends(aport, "app")
    assert info[reset_backend.address]["counters"]["upstream_errors"] >= got[502] + 3


def test_retries_zero_gives_502(sluice, backends):
    bs = backends(1)
    dead = "127.0.0.1:%d" % free_port()
    s, port, _ = start(sluice, [dead, bs[0].address], extra_pool="retries: 0\n" + NO_PASSIVE)
    got = collections.Counter(fresh_get(port)[0] for _ in range(6))
    assert got == {200: 3, 502: 3}, got


def test_retries_exhausted_gives_502(sluice, backends):
    bs = backends(1)
    dead = ["127.0.0.1:%d" % free_port() for _ in range(3)]
    # retries: 1 -> two tries; with three dead backends ahead of the live
    # one, some requests use both tries on dead backends.
    s, port, _ = start(sluice, dead + [bs[0].address], extra_pool="retries: 1\n" + NO_PASSIVE)
    got = collections.Counter(fresh_get(port)[0] for _ in range(8))
    assert got[502] >= 1 and got[200] >= 1 and set(got) == {200, 502}, got
