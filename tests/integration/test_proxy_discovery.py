"""Proxy pools fed by a registry service (pools[].discovery): the real
proxy (build/sluice-asan), a real `sluice registry` node, real HTTP and TCP
backends, and real clients (http.client, raw sockets, curl).

What is checked: members follow registrations, deregistrations, health and
weight changes without a reload (bounded waits, no timing assertion); a
member that stays keeps its connections (the proxy's keep-alive connection
to it, a long TCP stream through it); a removed member gets no new
requests while its open stream finishes; the service's protection (fail
open) applies; the last list stays while the registry is down, and a
cache_dir feeds a proxy restarted while it is down.
"""
import http.client
import http.server
import socket
import socketserver
import subprocess
import threading
import time

import pytest

from helpers import admin_json, echo, echo_stream, free_port, metric
from registry_node import reg, SVC, wait_until  # noqa: F401 (reg is a fixture)
from stream_helpers import TcpBackend

WAIT = 15.0  # bound of every wait for the proxy to follow a change


class Backend:
    """An HTTP/1.1 backend on 127.0.0.1: GET /health answers self.health
    (the registry's check), anything else 200 with the backend's name.
    Records the client port of each request (one per upstream connection)."""

    def __init__(self, name):
        self.name = name
        self.health = 200
        self.lock = threading.Lock()
        self.ports = []
        backend = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            wbufsize = 1 << 16
            disable_nagle_algorithm = True

            def log_message(self, *a):
                pass

            def do_GET(self):
                if self.path == "/health":
                    status, body = backend.health, b"health\n"
                else:
                    with backend.lock:
                        backend.ports.append(self.client_address[1])
                    status, body = 200, backend.name.encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("X-Backend", backend.name)
                self.end_headers()
                self.wfile.write(body)

        class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
            daemon_threads = True
            allow_reuse_address = True

        self.server = Server(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def count(self):
        with self.lock:
            return len(self.ports)

    def conn_ports(self):
        with self.lock:
            return set(self.ports)

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def http_backends():
    made = []

    def make(n):
        out = [Backend("m%d" % (len(made) + i + 1)) for i in range(n)]
        made.extend(out)
        return out
    yield make
    for b in made:
        b.stop()


def register(r, service, iid, port, weight=None):
    body = {"address": "127.0.0.1", "port": port}
    if weight is not None:
        body["weight"] = weight
    r.ok("PUT", SVC + "/%s/instances/%s" % (service, iid), body)


def proxy_config(admin_port, listen_port, registry_port, proto="http", service="web", extra="", cache_dir=None):
    disc = "      service: %s\n      registries: [127.0.0.1:%d]\n" % (service, registry_port)
    if cache_dir:
        disc += "      cache_dir: %s\n" % cache_dir
    return ("log: { level: debug }\nadmin: { listen: 127.0.0.1:%d }\nworkers: 1\n"
            "pools:\n  - name: web\n    retries: 0\n%s    discovery:\n%s"
            "listeners:\n  - name: front\n    listen: 127.0.0.1:%d\n    protocol: %s\n    pool: web\n"
            % (admin_port, extra, disc, listen_port, proto))


def members(admin_port):
    """{address: state} of pool web as /api/pools shows it."""
    status, doc = admin_json(admin_port, "GET", "/api/pools/web")
    assert status == 200, (status, doc)
    return {b["address"]: b["state"] for b in doc["backends"]}


def live_members(admin_port):
    return {a for a, st in members(admin_port).items() if st != "removed"}


def addr(b):
    return "127.0.0.1:%d" % b.port


def get(conn):
    conn.request("GET", "/")
    resp = conn.getresponse()
    return resp.status, resp.read().decode()


def fresh(port):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        return get(conn)
    finally:
        conn.close()


def serves(port, expected, n=None, conn=None):
    """Whether n requests (fresh connections, or on conn) are all answered
    by exactly the backends named in expected: the workers have picked up
    what the admin API already shows (they do on their next tick)."""
    n = n or 3 * len(expected)
    bodies = set()
    for _ in range(n):
        st, body = get(conn) if conn else fresh(port)
        if st != 200:
            return False
        bodies.add(body)
    return bodies == set(expected)


def start_proxy(sluice, admin_port, port, text):
    return sluice(text, wait_ports=[port, admin_port])


# ---------------------------------------------------------------------------


def test_http_pool_follows_the_registry(reg, sluice, http_backends):
    r = reg()
    m1, m2, m3 = http_backends(3)
    register(r, "web", "m1", m1.port)
    register(r, "web", "m2", m2.port)
    admin_port, port = free_port(), free_port()
    start_proxy(sluice, admin_port, port, proxy_config(admin_port, port, r.port))
    wait_until(lambda: live_members(admin_port) == {addr(m1), addr(m2)}, WAIT, what="m1 and m2 in the pool")

    # One client keep-alive connection through the whole test.
    client = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    wait_until(lambda: serves(port, {"m1", "m2"}, conn=client), WAIT, what="m1 and m2 serving")
    m2_conns = m2.conn_ports()
    assert len(m2_conns) == 1  # the proxy keeps one upstream connection to m2

    # A registration: m3 gets requests, without a reload.
    register(r, "web", "m3", m3.port)
    wait_until(lambda: live_members(admin_port) == {addr(m1), addr(m2), addr(m3)}, WAIT, what="m3 joins")
    wait_until(lambda: get(client)[1] == "m3", WAIT, what="a request on m3")

    # A deregistration: m1 drains and gets no new request.
    r.ok("DELETE", SVC + "/web/instances/m1")
    wait_until(lambda: addr(m1) not in live_members(admin_port), WAIT, what="m1 leaves")
    wait_until(lambda: serves(port, {"m2", "m3"}, conn=client), WAIT, what="m2 and m3 only")
    before = m1.count()
    answers = [get(client) for _ in range(12)]
    assert all(st == 200 for st, _ in answers)
    assert {body for _, body in answers} == {"m2", "m3"}
    assert m1.count() == before

    # m2 stayed through both changes: same upstream connection, and the
    # client's own keep-alive connection never broke.
    assert m2.conn_ports() == m2_conns

    # A weight change: m3 at 9 times m2's weight takes most requests.
    r.ok("PATCH", SVC + "/web/instances/m3", {"weight": 900})
    r.ok("PATCH", SVC + "/web/instances/m2", {"weight": 100})

    def weights():
        _, doc = admin_json(admin_port, "GET", "/api/pools/web")
        return {b["address"]: b["weight"] for b in doc["backends"] if b["state"] != "removed"}
    wait_until(lambda: weights() == {addr(m2): 100, addr(m3): 900}, WAIT, what="the new weights")

    def mostly_m3():
        c2, c3 = m2.count(), m3.count()
        for _ in range(50):
            assert get(client)[0] == 200
        return (m3.count() - c3) >= 4 * (m2.count() - c2)
    wait_until(mostly_m3, WAIT, what="m3 taking most requests")

    # The pool says where its members come from.
    _, doc = admin_json(admin_port, "GET", "/api/pools/web")
    d = doc["discovery"]
    assert d["service"] == "web" and d["source"] == "registry" and d["registry_reachable"] is True
    assert d["members"] == 2 and d["version"] > 0
    # /metrics carries members by address, as fixed backends.
    by_api = {b["address"]: b["counters"]["requests"] for b in doc["backends"]}
    assert metric(admin_port, "sluice_backend_requests_total", pool="web", backend=addr(m3)) == by_api[addr(m3)] > 0
    client.close()

    # The removed member's slot empties once quiet; curl, a client of its own, still gets answers.
    wait_until(lambda: addr(m1) not in members(admin_port), WAIT, what="m1's slot reclaimed")
    out = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "http://127.0.0.1:%d/" % port],
                         capture_output=True, text=True, timeout=20)
    assert out.stdout == "200"


def test_health_changes_and_fail_open(reg, sluice, http_backends):
    r = reg()
    m1, m2, m3 = http_backends(3)
    r.ok("PUT", SVC + "/web", {"protect_threshold": 0.5,
                               "health": {"type": "http", "path": "/health", "interval": "200ms",
                                          "timeout": "200ms", "rise": 1, "fall": 1}})
    for i, m in enumerate((m1, m2, m3)):
        register(r, "web", "m%d" % (i + 1), m.port)
    admin_port, port = free_port(), free_port()
    start_proxy(sluice, admin_port, port, proxy_config(admin_port, port, r.port))
    wait_until(lambda: live_members(admin_port) == {addr(m1), addr(m2), addr(m3)}, WAIT, what="three members")

    # m3 fails the registry's check: the proxy stops balancing to it.
    m3.health = 503
    wait_until(lambda: r.service("web")["healthy"] == 2, WAIT, what="m3 down at the registry")
    wait_until(lambda: addr(m3) not in live_members(admin_port), WAIT, what="m3 out of the pool")
    wait_until(lambda: serves(port, {"m1", "m2"}), WAIT, what="m1 and m2 only")
    before = m3.count()
    bodies = {fresh(port)[1] for _ in range(10)}
    assert bodies == {"m1", "m2"} and m3.count() == before

    # m2 too: 1 of 3 healthy is below the protect threshold, the service
    # fails open and all three take requests again.
    m2.health = 503
    wait_until(lambda: r.service("web")["fail_open"] is True, WAIT, what="fail-open at the registry")
    wait_until(lambda: live_members(admin_port) == {addr(m1), addr(m2), addr(m3)}, WAIT, what="fail-open members")
    _, doc = admin_json(admin_port, "GET", "/api/pools/web")
    assert doc["discovery"]["fail_open"] is True
    wait_until(lambda: serves(port, {"m1", "m2", "m3"}), WAIT, what="all three serving, failing open")

    # Both recover: protection off, all three healthy.
    m2.health = m3.health = 200
    wait_until(lambda: r.service("web")["healthy"] == 3, WAIT, what="all up again")
    wait_until(lambda: admin_json(admin_port, "GET", "/api/pools/web")[1]["discovery"]["fail_open"] is False,
               WAIT, what="protection off in the proxy")


def test_registry_outage_keeps_the_list_and_cache_serves_a_restart(reg, sluice, http_backends, tmp_path):
    r = reg()
    m1, m2 = http_backends(2)
    register(r, "web", "m1", m1.port)
    register(r, "web", "m2", m2.port)
    cache = tmp_path / "cache"
    admin_port, port = free_port(), free_port()
    text = proxy_config(admin_port, port, r.port, cache_dir=str(cache))
    p = start_proxy(sluice, admin_port, port, text)
    wait_until(lambda: live_members(admin_port) == {addr(m1), addr(m2)}, WAIT, what="two members")
    wait_until(lambda: serves(port, {"m1", "m2"}), WAIT, what="both serving")

    # The registry dies: the pool keeps its last list and keeps serving.
    r.kill9()
    wait_until(lambda: admin_json(admin_port, "GET", "/api/pools/web")[1]["discovery"]["registry_reachable"]
               is False, WAIT, what="the proxy noticing the outage")
    assert live_members(admin_port) == {addr(m1), addr(m2)}
    assert serves(port, {"m1", "m2"})

    # Restarted while the registry is still down: the cache feeds it.
    p.stop()
    p.assert_clean()
    p2 = start_proxy(sluice, admin_port, port, text)
    wait_until(lambda: live_members(admin_port) == {addr(m1), addr(m2)}, WAIT, what="members from the cache")
    _, doc = admin_json(admin_port, "GET", "/api/pools/web")
    assert doc["discovery"]["source"] == "cache"
    wait_until(lambda: serves(port, {"m1", "m2"}), WAIT, what="both serving from the cache's list")
    p2.stop()


def test_no_list_yet_answers_503_and_says_why_once(sluice, tmp_path):
    dead = free_port()  # no registry there
    admin_port, port = free_port(), free_port()
    p = start_proxy(sluice, admin_port, port, proxy_config(admin_port, port, dead))
    for _ in range(3):
        assert fresh(port)[0] == 503
    assert members(admin_port) == {}
    log = wait_until(lambda: (lambda t: t if "no members yet" in t else None)(p.read_log()), WAIT,
                     what="the log line")
    time.sleep(0.6)  # a few of the master's sync rounds
    assert p.read_log().count("no members yet") == 1, log


# ---- TCP ------------------------------------------------------------------


@pytest.fixture
def tcp_backends():
    made = []

    def make(n):
        out = [TcpBackend("echo") for _ in range(n)]
        made.extend(out)
        return out
    yield make
    for b in made:
        b.stop()


def test_tcp_pool_follows_the_registry(reg, sluice, tcp_backends):
    r = reg()
    e1, e2, e3 = tcp_backends(3)
    register(r, "echo", "e1", e1.port)
    admin_port, port = free_port(), free_port()
    start_proxy(sluice, admin_port, port, proxy_config(admin_port, port, r.port, proto="tcp", service="echo"))
    wait_until(lambda: live_members(admin_port) == {addr(e1)}, WAIT, what="e1 in the pool")

    def stream_works():
        s = echo_stream(port)
        try:
            s.sendall(b"?")
            return s.recv(10) == b"?"
        except OSError:
            return False
        finally:
            s.close()
    wait_until(stream_works, WAIT, what="the worker taking e1")

    # A long stream through e1, the only member.
    long = echo_stream(port)
    assert echo(long, b"hello\n") == b"hello\n"

    # Others come and go: the stream on e1 goes on.
    register(r, "echo", "e2", e2.port)
    register(r, "echo", "e3", e3.port)
    wait_until(lambda: live_members(admin_port) == {addr(e1), addr(e2), addr(e3)}, WAIT, what="e2, e3 join")

    def new_streams_reach_e2_and_e3():
        for _ in range(3):
            s = echo_stream(port)
            assert echo(s, b"x") == b"x"
            s.close()
        return e2.count() > 0 and e3.count() > 0
    wait_until(new_streams_reach_e2_and_e3, WAIT, what="e2 and e3 taking streams")
    assert echo(long, b"still here\n") == b"still here\n"
    r.ok("DELETE", SVC + "/echo/instances/e3")
    wait_until(lambda: live_members(admin_port) == {addr(e1), addr(e2)}, WAIT, what="e3 leaves")
    assert echo(long, b"and here\n") == b"and here\n"

    # e1 itself is removed: its open stream finishes, new streams go to e2 only.
    r.ok("DELETE", SVC + "/echo/instances/e1")
    wait_until(lambda: live_members(admin_port) == {addr(e2)}, WAIT, what="e1 leaves")

    def streams_all_to_e2(n=6):
        c1, c3, c2 = e1.count(), e3.count(), e2.count()
        for i in range(n):
            s = echo_stream(port)
            assert echo(s, b"new %d\n" % i) == b"new %d\n" % i
            s.close()
        return e1.count() == c1 and e3.count() == c3 and e2.count() == c2 + n
    wait_until(streams_all_to_e2, WAIT, what="the worker picking up e1's removal")
    assert streams_all_to_e2()
    assert echo(long, b"draining\n") == b"draining\n"
    # While the stream is open, e1's slot stays (draining, shown "removed").
    assert members(admin_port).get(addr(e1)) == "removed"
    long.close()
    wait_until(lambda: addr(e1) not in members(admin_port), WAIT, what="e1's slot reclaimed once quiet")


def test_tcp_pool_without_a_list_closes(sluice):
    admin_port, port = free_port(), free_port()
    start_proxy(sluice, admin_port, port, proxy_config(admin_port, port, free_port(), proto="tcp"))
    s = echo_stream(port)
    s.sendall(b"x")
    try:
        data = s.recv(100)
    except ConnectionResetError:
        data = b""
    assert data == b""
    s.close()


def test_backends_and_discovery_together_is_a_config_error(sluice, tmp_path):
    from conftest import SLUICE_BIN
    cfg = tmp_path / "both.yaml"
    cfg.write_text("pools:\n  - name: web\n    backends: [127.0.0.1:9001]\n    discovery:\n"
                   "      service: web\n      registries: [127.0.0.1:9950]\n"
                   "listeners:\n  - name: front\n    listen: 127.0.0.1:%d\n    pool: web\n" % free_port())
    out = subprocess.run([SLUICE_BIN, "check", "-c", str(cfg)], capture_output=True, text=True, timeout=30)
    assert out.returncode != 0
    assert ("%s:4: pools[0].discovery: a pool takes its backends from \"backends\" or from \"discovery\", not both"
            % cfg) in out.stdout + out.stderr


# ---- UDP ------------------------------------------------------------------


def test_udp_pool_follows_the_registry(reg, sluice):
    from stream_helpers import UdpBackend, new_udp_client, parse_udp_reply, udp_ask_retry
    r = reg()
    u1, u2 = UdpBackend("u1"), UdpBackend("u2")
    clients = []
    try:
        register(r, "dns", "u1", u1.port)
        admin_port, port = free_port(), free_port(socket.SOCK_DGRAM)
        sluice(proxy_config(admin_port, port, r.port, proto="udp", service="dns"), wait_ports=[admin_port])

        def tags(n=4):
            out = set()
            for _ in range(n):
                c = new_udp_client()
                clients.append(c)
                reply = udp_ask_retry(c, port, b"ping", attempts=4)
                out.add(parse_udp_reply(reply)[0] if reply else None)
            return out
        wait_until(lambda: tags() == {"u1"}, WAIT, what="u1 answering")
        session = new_udp_client()
        clients.append(session)
        assert parse_udp_reply(udp_ask_retry(session, port, b"hello"))[0] == "u1"

        # u2 joins: new sessions reach it, the open session stays on u1.
        register(r, "dns", "u2", u2.port)
        wait_until(lambda: "u2" in tags(), WAIT, what="u2 answering")
        assert parse_udp_reply(udp_ask_retry(session, port, b"again"))[0] == "u1"

        # u1 leaves: new sessions go to u2 only.
        r.ok("DELETE", SVC + "/dns/instances/u1")
        wait_until(lambda: tags(6) == {"u2"}, WAIT, what="u2 alone answering new sessions")
    finally:
        for c in clients:
            c.close()
        u1.stop()
        u2.stop()


def test_reload_keeps_the_members_and_their_counters(reg, sluice, http_backends):
    r = reg()
    m1, m2, m3 = http_backends(3)
    register(r, "web", "m1", m1.port)
    register(r, "web", "m2", m2.port)
    admin_port, port = free_port(), free_port()
    p = start_proxy(sluice, admin_port, port, proxy_config(admin_port, port, r.port))
    wait_until(lambda: serves(port, {"m1", "m2"}), WAIT, what="m1 and m2 serving")

    def requests():
        _, doc = admin_json(admin_port, "GET", "/api/pools/web")
        return {b["address"]: b["counters"]["requests"] for b in doc["backends"]}
    before = requests()
    assert before[addr(m1)] > 0 and before[addr(m2)] > 0

    # SIGHUP with another max_members: the new configuration has the members
    # at once (the registry client and its list outlive the reload), and
    # their counters carry over by address.
    p.reload(proxy_config(admin_port, port, r.port).replace("      service: web\n",
                                                           "      service: web\n      max_members: 8\n"))
    wait_until(lambda: "reload done" in p.read_log(), WAIT, what="the reload")
    after = requests()
    assert set(after) == {addr(m1), addr(m2)}
    assert all(after[a] >= before[a] for a in before)
    assert serves(port, {"m1", "m2"})

    # And it follows the registry from there.
    register(r, "web", "m3", m3.port)
    wait_until(lambda: serves(port, {"m1", "m2", "m3"}), WAIT, what="m3 after the reload")


def test_the_pools_own_health_checks_apply_to_members(reg, sluice, http_backends):
    r = reg()
    (m1,) = http_backends(1)
    dead = free_port()  # nothing listens there; the registry does not check it
    register(r, "web", "m1", m1.port)
    register(r, "web", "dead", dead)
    admin_port, port = free_port(), free_port()
    check = ("    passive: { max_fails: 0 }\n"
             "    health_check: { type: tcp, interval: 100ms, timeout: 100ms, rise: 1, fall: 1 }\n")
    start_proxy(sluice, admin_port, port, proxy_config(admin_port, port, r.port, extra=check))
    dead_addr = "127.0.0.1:%d" % dead
    wait_until(lambda: members(admin_port).get(dead_addr) == "down", WAIT, what="the dead member checked down")
    assert members(admin_port)[addr(m1)] == "up"
    wait_until(lambda: serves(port, {"m1"}, n=6), WAIT, what="only m1 serving")
