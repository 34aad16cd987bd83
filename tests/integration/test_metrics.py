"""/metrics says what it counts: the documented families are the ones
served, the bytes counters move by exactly the bytes on the wire in each
direction, and a retry is counted on the backend its help text names.
Real binary, real sockets, loopback only."""
import re
import socket

import pytest

from helpers import admin, free_port, wait_for
from metrics_doc import documented_families, families, l4_md_families, value
from raw_servers import Blackhole, HttpClient, RawServer, is_closed, scripted_handler, upgrade_echo_handler
from stream_helpers import TcpBackend, UdpBackend, new_udp_client, tcp_roundtrip, udp_ask

RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 21\r\n\r\nthe response body...\n"

BYTE_FAMILIES = ("sluice_listener_bytes_received_total", "sluice_listener_bytes_sent_total",
                 "sluice_backend_bytes_sent_total", "sluice_backend_bytes_received_total")


def metrics_text(aport):
    status, raw = admin(aport, "GET", "/metrics")
    assert status == 200
    return raw.decode()


def config(aport, pools, listeners, timeouts=None):
    """pools: {name: [addr]}; listeners: [(name, port, protocol, pool)];
    timeouts: {key: value} for every listener."""
    y = "workers: 1\nadmin: { listen: 127.0.0.1:%d }\nlog: { level: warn }\npools:\n" % aport
    for name, addrs in pools.items():
        y += ("  - name: %s\n    algorithm: round_robin\n    retries: 1\n    passive: { max_fails: 0 }\n"
              "    backends: [%s]\n" % (name, ", ".join(addrs)))
    y += "listeners:\n"
    for name, port, proto, pool in listeners:
        y += "  - name: %s\n    listen: 127.0.0.1:%d\n    protocol: %s\n    pool: %s\n" % (name, port, proto, pool)
        if timeouts:
            y += "    timeouts: { %s }\n" % ", ".join("%s: %s" % kv for kv in timeouts.items())
    return y


class Bytes:
    """The four bytes counters of one listener and one backend, as deltas
    from when the object was made."""

    def __init__(self, aport, listener, pool, backend):
        self.aport, self.listener, self.pool, self.backend = aport, listener, pool, backend
        self.base = self.now()

    def now(self):
        text = metrics_text(self.aport)
        return (value(text, BYTE_FAMILIES[0], listener=self.listener),
                value(text, BYTE_FAMILIES[1], listener=self.listener),
                value(text, BYTE_FAMILIES[2], pool=self.pool, backend=self.backend),
                value(text, BYTE_FAMILIES[3], pool=self.pool, backend=self.backend))

    def delta(self):
        return tuple(int(n - b) for n, b in zip(self.now(), self.base))

    def assert_moved_by(self, want):
        """Exactly `want`: (client->sluice, sluice->client, sluice->backend,
        backend->sluice). The workers add after their send() returns, so
        the counters may lag what the sockets already saw by a moment."""
        want = tuple(want)
        wait_for(lambda: self.delta() == want, timeout=5)
        assert dict(zip(BYTE_FAMILIES, self.delta())) == dict(zip(BYTE_FAMILIES, want))


def read_until_close(sock, timeout=10):
    sock.settimeout(timeout)
    got = b""
    while True:
        b = sock.recv(65536)
        if not b:
            return got
        got += b


def test_http_bytes_are_counted_on_the_wire_in_each_direction(sluice):
    backend = RawServer(scripted_handler([RESPONSE]))
    try:
        port, aport = free_port(), free_port()
        proxy = sluice(config(aport, {"app": [backend.addr]}, [("web", port, "http", "app")]),
                       wait_ports=[port, aport])
        counters = Bytes(aport, "web", "app", backend.addr)

        body = b"b" * 1000
        head = (b"POST /upload HTTP/1.1\r\nHost: example.test\r\nContent-Type: text/plain\r\n"
                b"Connection: close\r\nContent-Length: %d\r\n\r\n" % len(body))
        with socket.create_connection(("127.0.0.1", port)) as c:
            c.sendall(head + body)
            answer = read_until_close(c)
        assert answer.startswith(b"HTTP/1.1 200 ") and answer.endswith(b"the response body...\n"), answer
        # The backend saw the head as Sluice rewrote it, then the body.
        (forwarded,) = backend.received()
        assert forwarded.endswith(b"\r\n\r\n" + body) and len(forwarded) != len(head + body)

        counters.assert_moved_by((len(head) + len(body), len(answer), len(forwarded), len(RESPONSE)))
        proxy.stop()
    finally:
        backend.stop()


def test_upgraded_connection_bytes_are_counted_both_ways(sluice):
    """After 101 the bytes of the tunnel count like any other."""
    backend = RawServer(upgrade_echo_handler)
    try:
        port, aport = free_port(), free_port()
        sluice(config(aport, {"ws": [backend.addr]}, [("web", port, "http", "ws")]), wait_ports=[port, aport])
        counters = Bytes(aport, "web", "ws", backend.addr)

        head = (b"GET /chat HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
        payload = b"p" * 3000
        with socket.create_connection(("127.0.0.1", port), timeout=10) as c:
            c.sendall(head)
            got = b""
            while b"\r\n\r\n" not in got:
                got += c.recv(65536)
            assert got.startswith(b"HTTP/1.1 101 ")
            c.sendall(payload)
            c.shutdown(socket.SHUT_WR)
            got += read_until_close(c)
        assert got.endswith(payload)
        (forwarded,) = backend.received()
        assert forwarded.endswith(payload)
        backend_101 = (b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
        counters.assert_moved_by((len(head) + len(payload), len(got), len(forwarded),
                                  len(backend_101) + len(payload)))
    finally:
        backend.stop()


def test_tcp_and_udp_bytes_are_counted_in_each_direction(sluice):
    echo, uecho = TcpBackend("echo"), UdpBackend("u")
    try:
        tport, uport, aport = free_port(), free_port(socket.SOCK_DGRAM), free_port()
        sluice(config(aport, {"echo": [echo.addr], "uecho": [uecho.addr]},
                      [("tcp-in", tport, "tcp", "echo"), ("udp-in", uport, "udp", "uecho")]),
               wait_ports=[tport, aport])
        tcp = Bytes(aport, "tcp-in", "echo", echo.addr)
        udp = Bytes(aport, "udp-in", "uecho", uecho.addr)

        payload = bytes(range(256)) * 40
        assert tcp_roundtrip(tport, payload) == payload
        tcp.assert_moved_by((len(payload), len(payload), len(payload), len(payload)))

        client = new_udp_client()
        try:
            reply = udp_ask(client, uport, b"x" * 100)
        finally:
            client.close()
        assert reply is not None and reply.endswith(b"x" * 100)
        # The backend prefixes its reply with "u|PORT|".
        udp.assert_moved_by((100, len(reply), 100, len(reply)))
    finally:
        echo.stop()
        uecho.stop()


def test_retry_is_counted_on_the_backend_that_failed(sluice):
    """The help text says: failed on this backend, then tried on another.
    A dead backend ahead of a live one in round robin: every request that
    tries the dead one first is retried, and the retry belongs to it."""
    live = RawServer(scripted_handler([RESPONSE]))
    echo = TcpBackend("echo")
    dead, dead_tcp = "127.0.0.1:%d" % free_port(), "127.0.0.1:%d" % free_port()
    try:
        port, tport, aport = free_port(), free_port(), free_port()
        sluice(config(aport, {"app": [dead, live.addr], "echo": [dead_tcp, echo.addr]},
                      [("web", port, "http", "app"), ("tcp-in", tport, "tcp", "echo")]),
               wait_ports=[port, tport, aport])
        for _ in range(6):
            with HttpClient(port) as c:
                c.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
                assert c.read_response().status == 200
            assert tcp_roundtrip(tport, b"ping") == b"ping"

        text = metrics_text(aport)
        for pool, failed, other in (("app", dead, live.addr), ("echo", dead_tcp, echo.addr)):
            failures = value(text, "sluice_backend_connect_failures_total", pool=pool, backend=failed)
            assert failures >= 2, (pool, failures)  # round robin: about every other request
            retries = {b: value(text, "sluice_backend_retries_total", pool=pool, backend=b) for b in (failed, other)}
            assert retries == {failed: failures, other: 0}, pool
        assert re.search(r"fail\w* on this backend", families(text)["sluice_backend_retries_total"][1])
    finally:
        live.stop()
        echo.stop()


def test_metrics_families_are_the_documented_ones(sluice):
    """docs/admin-api.md lists every family of the proxy's /metrics by its
    full name and type, and nothing else (the `sluice l4` ones are checked
    against `sluice l4` in test_l4_netns.py, the `sluice registry` ones in
    test_registry_api.py)."""
    backend = RawServer(scripted_handler([RESPONSE]))
    try:
        port, aport = free_port(), free_port()
        sluice(config(aport, {"app": [backend.addr]}, [("web", port, "http", "app")]), wait_ports=[port, aport])
        served = {name: t for name, (t, _) in families(metrics_text(aport)).items()}
    finally:
        backend.stop()
    documented = documented_families()
    proxy_documented = {n: t for n, t in documented.items()
                        if not n.startswith(("sluice_l4_", "sluice_registry_", "sluice_ha_"))}
    assert served == proxy_documented, {"served, not documented": sorted(set(served) - set(proxy_documented)),
                                        "documented, not served": sorted(set(proxy_documented) - set(served)),
                                        "types": {n: (served[n], proxy_documented[n]) for n in served
                                                  if n in proxy_documented and served[n] != proxy_documented[n]}}
    # docs/l4.md's table names the same l4 families as admin-api.md.
    assert l4_md_families() == {n for n in documented if n.startswith("sluice_l4_")}


def test_documented_families_parse():
    """The doc parser finds the tables (a renamed heading must not make the
    family check above vacuous)."""
    documented = documented_families()
    assert len(documented) >= 30
    assert "sluice_listener_connections_total" in documented and "connections_total" not in documented


def test_connect_timeouts_are_timeouts_and_send_no_request(sluice):
    """A backend that never accepts: the HTTP request and the TCP
    connection each end in a connect timeout, counted as a timeout of the
    listener (TCP as HTTP), as a connect failure of the backend, and not as
    a request sent to it (nothing was)."""
    hole = Blackhole()
    try:
        if not hole.reliable:
            pytest.skip("could not fill the accept queue of a loopback listener")
        port, tport, aport = free_port(), free_port(), free_port()
        sluice(config(aport, {"hole": [hole.addr]}, [("web", port, "http", "hole"), ("tcp-in", tport, "tcp", "hole")],
                      timeouts={"connect": "300ms"}),
               wait_ports=[port, aport])  # not tport: a probe would be one more TCP connection to time out
        with HttpClient(port) as c:
            c.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
            assert c.read_response().status == 504
        with socket.create_connection(("127.0.0.1", tport)) as t:
            assert is_closed(t, timeout=5)

        def counts():
            text = metrics_text(aport)
            return (value(text, "sluice_listener_timeouts_total", listener="web"),
                    value(text, "sluice_listener_timeouts_total", listener="tcp-in"),
                    value(text, "sluice_backend_connect_failures_total", pool="hole", backend=hole.addr),
                    value(text, "sluice_backend_requests_total", pool="hole", backend=hole.addr))
        wait_for(lambda: counts() == (1, 1, 2, 0), timeout=5)
        assert counts() == (1, 1, 2, 0)
    finally:
        hole.close()


def test_idle_tunnel_timeout_is_a_timeout(sluice):
    """An upgraded connection closed by timeouts.idle counts like a TCP
    relay closed by it."""
    backend = RawServer(upgrade_echo_handler)
    try:
        port, aport = free_port(), free_port()
        sluice(config(aport, {"ws": [backend.addr]}, [("web", port, "http", "ws")], timeouts={"idle": "300ms"}),
               wait_ports=[port, aport])
        with socket.create_connection(("127.0.0.1", port), timeout=10) as c:
            c.sendall(b"GET /chat HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
            got = b""
            while b"\r\n\r\n" not in got:
                got += c.recv(65536)
            assert got.startswith(b"HTTP/1.1 101 ")
            assert is_closed(c, timeout=5)  # idle: Sluice closes it
        assert wait_for(lambda: value(metrics_text(aport), "sluice_listener_timeouts_total", listener="web") == 1,
                        timeout=5)
    finally:
        backend.stop()
