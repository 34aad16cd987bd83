"""The TCP and UDP stream proxy (src/proxy/stream_tcp.c, stream_udp.c) end to end: the real
binary, Python backends, loopback only.

One proxy serves all tests of this module; each test talks to its own
listener (and pool) so the tests do not disturb each other's balancing.
"""
import hashlib
import json
import os
import socket
import struct
import tempfile
import time

import pytest

from stream_helpers import (TcpBackend, UdpBackend, StreamProxy, free_port, new_udp_client,
                            parse_udp_reply, sluice_binary, tcp_roundtrip, udp_ask, udp_ask_retry,
                            wait_for)

pytestmark = pytest.mark.skipif(not os.access(sluice_binary(), os.X_OK),
                                reason="%s not built" % sluice_binary())

SHORT_SESSION_S = 1.5  # udp-short's session idle time; margins below allow for a slow CI box


def pool_yaml(name, backends):
    return ("  - name: %s\n    algorithm: round_robin\n    backends: [%s]\n"
            % (name, ", ".join(backends)))


def listener_yaml(name, port, proto, pool, extra=""):
    return ("  - name: %s\n    listen: 127.0.0.1:%d\n    protocol: %s\n    pool: %s\n%s"
            % (name, port, proto, pool, extra))


class Env:
    pass


@pytest.fixture(scope="module")
def env():
    e = Env()
    e.echo = [TcpBackend("echo") for _ in range(3)]
    e.echo_alt = [TcpBackend("echo") for _ in range(2)]
    e.digest = TcpBackend("digest")
    e.uecho = [UdpBackend("u%d" % i) for i in range(3)]
    e.ulive = UdpBackend("live")
    dead_tcp = "127.0.0.1:%d" % free_port()
    dead_tcp2 = "127.0.0.1:%d" % free_port()
    dead_udp = "127.0.0.1:%d" % free_port(socket.SOCK_DGRAM)
    e.dead_tcp = dead_tcp

    e.ports = {name: free_port() for name in
               ("splice", "copy", "down", "dead", "half_splice", "half_copy")}
    e.ports.update({name: free_port(socket.SOCK_DGRAM) for name in ("udp", "udp_short", "udp_down")})
    p = e.ports

    config = "workers: 1\nadmin: { listen: 127.0.0.1:%d }\npools:\n" % free_port()
    config += pool_yaml("echo", [b.addr for b in e.echo])
    config += pool_yaml("withdown", [e.echo_alt[0].addr, dead_tcp, e.echo_alt[1].addr])
    config += pool_yaml("alldead", [dead_tcp2])
    config += pool_yaml("digest", [e.digest.addr])
    config += pool_yaml("uecho", [b.addr for b in e.uecho])
    config += pool_yaml("udown", [dead_udp, e.ulive.addr])
    config += "listeners:\n"
    config += listener_yaml("tcp-splice", p["splice"], "tcp", "echo", "    splice: true\n")
    config += listener_yaml("tcp-copy", p["copy"], "tcp", "echo",
                            "    splice: false\n    access_log: __ACCESS_LOG__\n    access_log_format: json\n")
    config += listener_yaml("tcp-down", p["down"], "tcp", "withdown")
    config += listener_yaml("tcp-dead", p["dead"], "tcp", "alldead")
    config += listener_yaml("tcp-half-splice", p["half_splice"], "tcp", "digest", "    splice: true\n")
    config += listener_yaml("tcp-half-copy", p["half_copy"], "tcp", "digest", "    splice: false\n")
    config += listener_yaml("udp-in", p["udp"], "udp", "uecho", "    timeouts: { udp_session: 10s }\n")
    config += listener_yaml("udp-short", p["udp_short"], "udp", "uecho",
                            "    timeouts: { udp_session: %dms }\n" % int(SHORT_SESSION_S * 1000)
                            + "    access_log: __ACCESS_LOG__\n    access_log_format: json\n")
    config += listener_yaml("udp-down", p["udp_down"], "udp", "udown", "    timeouts: { udp_session: 10s }\n")

    tmp = tempfile.TemporaryDirectory(prefix="sluice-stream-")
    e.access_log = os.path.join(tmp.name, "stream-access.log")
    config = config.replace("__ACCESS_LOG__", e.access_log)
    e.proxy = StreamProxy(tmp.name, config)
    try:
        e.proxy.start(tcp_ports=[p["splice"], p["copy"]])
        yield e
    finally:
        was_alive = e.proxy.alive()
        log = e.proxy.read_log()
        e.proxy.stop()
        reports = e.proxy.sanitizer_reports()
        for b in e.echo + e.echo_alt + [e.digest] + e.uecho + [e.ulive]:
            b.stop()
        tmp.cleanup()
        assert was_alive, "sluice died during the stream tests:\n" + log[-4000:]
        assert not reports, "sanitizer report in sluice log:\n" + log[-4000:]


def access_entries(env):
    try:
        with open(env.access_log) as f:
            return [json.loads(line) for line in f if line.strip()]
    except FileNotFoundError:
        return []


@pytest.fixture(autouse=True)
def proxy_still_running(env):
    yield
    assert env.proxy.alive(), "sluice exited:\n" + env.proxy.read_log()[-4000:]


# ---- TCP ----

@pytest.mark.parametrize("listener", ["splice", "copy"])
def test_tcp_roundtrip_1mib_byte_exact(env, listener):
    payload = os.urandom(1 << 20)
    got = tcp_roundtrip(env.ports[listener], payload)
    assert len(got) == len(payload)
    assert got == payload


@pytest.mark.parametrize("listener", ["splice", "copy"])
def test_tcp_many_small_exchanges_on_one_connection(env, listener):
    # Interactive traffic: each message must come back before the next is sent.
    with socket.create_connection(("127.0.0.1", env.ports[listener]), timeout=5) as s:
        for i in range(50):
            msg = b"ping %d " % i + os.urandom(i * 37)
            s.sendall(msg)
            got = b""
            while len(got) < len(msg):
                chunk = s.recv(65536)
                assert chunk, "connection closed early"
                got += chunk
            assert got == msg


def test_tcp_round_robin_spreads_over_three_backends(env):
    before = [b.count() for b in env.echo]
    for i in range(9):
        msg = b"hello %d" % i
        assert tcp_roundtrip(env.ports["copy"], msg, timeout=5) == msg
    assert wait_for(lambda: sum(b.count() for b in env.echo) - sum(before) == 9)
    delta = [b.count() - n for b, n in zip(env.echo, before)]
    assert delta == [3, 3, 3]


def test_tcp_access_log_line_per_connection(env):
    msg = os.urandom(12345)
    assert tcp_roundtrip(env.ports["copy"], msg) == msg

    def mine():
        return [e for e in access_entries(env)
                if e.get("listener") == "tcp-copy" and e.get("bytes_sent") == len(msg)]
    # lines are buffered and flushed on the worker's tick
    entries = wait_for(mine, timeout=5)
    assert len(entries) == 1, access_entries(env)
    e = entries[0]
    assert e["request"] == "TCP" and e["status"] == 200 and e["client"] == "127.0.0.1"
    assert e["upstream"] in [b.addr for b in env.echo]


def test_tcp_down_backend_is_skipped_by_retry(env):
    before = [b.count() for b in env.echo_alt]
    for i in range(8):
        msg = b"retry me %d" % i
        assert tcp_roundtrip(env.ports["down"], msg, timeout=10) == msg
    assert wait_for(lambda: sum(b.count() for b in env.echo_alt) - sum(before) == 8)
    delta = [b.count() - n for b, n in zip(env.echo_alt, before)]
    assert all(d > 0 for d in delta), delta


def test_tcp_no_backend_closes_client(env):
    with socket.create_connection(("127.0.0.1", env.ports["dead"]), timeout=5) as s:
        s.settimeout(5)
        start = time.monotonic()
        try:
            s.sendall(b"anyone?")
            data = s.recv(100)
        except (ConnectionResetError, BrokenPipeError):
            data = b""
        assert data == b""
        assert time.monotonic() - start < 5


@pytest.mark.parametrize("listener", ["half_splice", "half_copy"])
def test_tcp_half_close_reply_after_client_eof(env, listener):
    # The digest backend answers only once it has seen EOF: the client's
    # SHUT_WR must be passed on while the backend-to-client direction stays open.
    payload = os.urandom(300 * 1024 + 7)
    got = tcp_roundtrip(env.ports[listener], payload, timeout=10)
    assert got == b"%d %s" % (len(payload), hashlib.sha256(payload).hexdigest().encode())


def test_tcp_client_reset_leaves_proxy_healthy(env):
    # Abort a few connections mid-transfer, then check normal service.
    for _ in range(5):
        s = socket.create_connection(("127.0.0.1", env.ports["splice"]), timeout=5)
        s.sendall(os.urandom(100000))
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()
    payload = os.urandom(65536)
    assert tcp_roundtrip(env.ports["splice"], payload) == payload


# ---- UDP ----

def test_udp_roundtrip_and_session_affinity(env):
    c = new_udp_client()
    try:
        seen = set()
        for i in range(6):
            payload = b"dgram %d " % i + os.urandom(100)
            reply = udp_ask_retry(c, env.ports["udp"], payload)
            assert reply is not None, "no UDP reply"
            tag, port, echoed = parse_udp_reply(reply)
            assert echoed == payload
            seen.add((tag, port))
        # same backend, and the same session socket, for every datagram
        assert len(seen) == 1, seen
    finally:
        c.close()


def test_udp_large_datagram(env):
    c = new_udp_client()
    try:
        payload = os.urandom(60000)
        reply = udp_ask_retry(c, env.ports["udp"], payload, timeout=1.0, attempts=5)
        assert reply is not None
        assert parse_udp_reply(reply)[2] == payload
    finally:
        c.close()


def test_udp_spreads_across_clients(env):
    clients = [new_udp_client() for _ in range(6)]
    try:
        tags = []
        for i, c in enumerate(clients):
            reply = udp_ask_retry(c, env.ports["udp"], b"who %d" % i)
            assert reply is not None
            tags.append(parse_udp_reply(reply)[0])
        # round robin over 3 backends, one new session per client
        assert sorted(tags.count(t) for t in set(tags)) == [2, 2, 2], tags
    finally:
        for c in clients:
            c.close()


def test_udp_session_expires_after_idle(env):
    c = new_udp_client()
    try:
        port = env.ports["udp_short"]
        first = udp_ask_retry(c, port, b"one")
        assert first is not None
        time.sleep(0.3)
        second = udp_ask(c, port, b"two")
        assert second is not None
        # within the idle time: the same session (same backend, same socket)
        assert parse_udp_reply(first)[:2] == parse_udp_reply(second)[:2]
        time.sleep(SHORT_SESSION_S + 1.0)
        third = udp_ask_retry(c, port, b"three")
        assert third is not None
        # a new session: a new socket (and, round robin, another backend)
        assert parse_udp_reply(third)[:2] != parse_udp_reply(second)[:2]
        # the expired session left its access-log line
        sent = len(first) + len(second)
        assert wait_for(lambda: [e for e in access_entries(env) if e.get("listener") == "udp-short"
                                 and e.get("request") == "UDP" and e.get("bytes_sent") == sent],
                        timeout=5), access_entries(env)
    finally:
        c.close()


def test_udp_refused_backend_fails_over(env):
    # Pool [dead, live]: a client whose session lands on the dead backend
    # gets ICMP port unreachable; after enough failures the backend is
    # ejected and its next datagram moves to the live one.
    clients = [new_udp_client() for _ in range(3)]
    try:
        for i, c in enumerate(clients):
            reply = udp_ask_retry(c, env.ports["udp_down"], b"hi %d" % i, attempts=40, timeout=0.25)
            assert reply is not None, "client %d never got a reply" % i
            assert parse_udp_reply(reply)[0] == "live"
    finally:
        for c in clients:
            c.close()
