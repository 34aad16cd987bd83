"""`sluice agent -c FILE`: the local DNS agent (docs/agent.md), asked by dig,
kdig and dnspython. Registered names are answered by the agent itself from
libsluice's lists, with the agent's own locality (dc1 here), weights and a
capped TTL; every other name is forwarded to the upstreams (NSD serving a
small zone) and the answer passed back byte for byte; upstream failures
move to the next upstream, then SERVFAIL; a registry killed, or an agent
restarted while the registry is down (with a cache_dir), does not stop
the registered names from being answered."""
import os
import signal
import socket
import struct
import subprocess
import time
import urllib.request

import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest

from helpers import free_port
from registry_node import Registry, wait_until

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SLUICE_BIN = os.environ.get("SLUICE_BIN", os.path.join(ROOT, "build", "sluice-asan"))

# web: two instances in dc1 (weights 100 and 300) and one in dc2; the
# agent is in dc1, so only dc1's are answered. ttl 30 s is capped to 5 s.
SERVICES = ("    - name: web\n      dns_ttl: 30\n      answer_count: 1\n      instances:\n"
            "        - { id: a, address: 10.1.0.10, port: 8080, weight: 100, datacenter: dc1, region: r1 }\n"
            "        - { id: b, address: 10.1.0.11, port: 8080, weight: 300, datacenter: dc1, region: r1 }\n"
            "        - { id: c, address: 10.2.0.10, port: 8080, weight: 100, datacenter: dc2, region: r1 }\n"
            "    - name: pair\n      dns_ttl: 2\n      answer_count: 2\n      instances:\n"
            "        - { id: a, address: 10.1.1.1, port: 80, datacenter: dc1, region: r1 }\n"
            "        - { id: b, address: 10.1.1.2, port: 80, datacenter: dc1, region: r1 }\n"
            "        - { id: c, address: 10.1.1.3, port: 80, datacenter: dc1, region: r1 }\n"
            "        - { id: d, address: \"2001:db8::1\", port: 80, datacenter: dc1, region: r1 }\n")

ZONE = """$ORIGIN example.test.
$TTL 300
@    IN SOA ns1.example.test. admin.example.test. 7 3600 600 86400 300
@    IN NS  ns1.example.test.
ns1  IN A   192.0.2.1
www  IN A   192.0.2.10
www  IN A   192.0.2.11
mail IN MX  10 www.example.test.
"""
# a TXT set too large for 1232 bytes: truncated over UDP
ZONE += "".join('big  IN TXT "%s"\n' % ("record %02d " % i + "x" * 90) for i in range(20))


# ---- the upstream: NSD with a small zone ----------------------------------

class Nsd:
    def __init__(self, tmp_path):
        self.dir = tmp_path / "nsd"
        self.dir.mkdir()
        self.port = free_port()
        (self.dir / "example.test.zone").write_text(ZONE)
        (self.dir / "nsd.conf").write_text(
            "server:\n    ip-address: 127.0.0.1@%d\n    server-count: 1\n    do-ip6: no\n    reuseport: no\n"
            "    username: \"\"\n    chroot: \"\"\n    database: \"\"\n    zonelistfile: \"%s/zone.list\"\n"
            "    xfrdfile: \"%s/xfrd.state\"\n    xfrdir: \"%s\"\n    pidfile: \"%s/nsd.pid\"\n"
            "    logfile: \"%s/nsd.log\"\n    verbosity: 0\n    rrl-ratelimit: 0\nremote-control:\n"
            "    control-enable: no\nzone:\n    name: example.test\n    zonefile: \"%s/example.test.zone\"\n"
            % ((self.port,) + (str(self.dir),) * 6))
        self.proc = subprocess.Popen(["nsd", "-d", "-c", str(self.dir / "nsd.conf")], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        wait_until(lambda: self.proc.poll() is None and answers_udp(self.port), timeout=20, what="NSD")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def answers_udp(port):
    try:
        query("www.example.test", "A", port, timeout=0.5)
        return True
    except Exception:
        return False


@pytest.fixture
def nsd(tmp_path):
    if not os.path.exists("/usr/sbin/nsd"):
        pytest.skip("nsd is not installed")
    n = Nsd(tmp_path)
    yield n
    n.stop()


# ---- the agent ----------------------------------------------------------------

class Agent:
    def __init__(self, tmp_path, registries, upstreams, extra="", name="agent", datacenter="dc1",
                 upstream_timeout="300ms"):
        self.tmp_path = tmp_path
        self.name = name
        self.port = free_port()
        self.admin = free_port()
        self.config_path = tmp_path / (name + ".yaml")
        self.log_path = tmp_path / (name + ".log")
        self.config_path.write_text(
            "log: { level: debug }\nadmin: { listen: 127.0.0.1:%d }\nagent:\n  listen: [127.0.0.1:%d]\n"
            "  zone: sluice.test.\n  registries: [%s]\n  datacenter: %s\n  region: r1\n  upstreams: [%s]\n"
            "  ttl_cap: 5s\n  first_wait: 500ms\n  upstream_timeout: %s\n%s"
            % (self.admin, self.port, ", ".join(registries), datacenter, ", ".join(upstreams), upstream_timeout,
               extra))
        self.proc = None

    def start(self):
        self.log = open(self.log_path, "ab")
        env = dict(os.environ)
        env.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0")
        env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1")
        self.proc = subprocess.Popen([SLUICE_BIN, "agent", "-c", str(self.config_path)], stdout=self.log,
                                     stderr=subprocess.STDOUT, env=env)
        wait_until(lambda: self.proc.poll() is not None or "agent: DNS on" in self.read_log(), timeout=20,
                   what="the agent to listen")
        assert self.proc.poll() is None, self.read_log()
        return self

    def stop(self):
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
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
            assert bad not in text, "sanitizer report in the agent's log:\n" + text[-4000:]

    def metrics(self):
        with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % self.admin, timeout=10) as r:
            return r.read().decode()


@pytest.fixture
def agents():
    started = []

    def make(*args, **kw):
        a = Agent(*args, **kw).start()
        started.append(a)
        return a
    yield make
    for a in started:
        rc = a.stop()
        a.assert_clean()
        assert rc in (0, None), a.read_log()[-3000:]


@pytest.fixture
def registry(tmp_path):
    r = Registry(tmp_path, services=SERVICES).start()
    yield r
    r.stop()
    r.assert_clean()


def reg_addr(r):
    return "127.0.0.1:%d" % r.port


def dead_port():
    """A loopback port nothing listens on (UDP or TCP)."""
    return free_port()


# ---- clients ----------------------------------------------------------------------

def query(name, rdtype, port, tcp=False, timeout=3.0):
    q = dns.message.make_query(name, rdtype, use_edns=0, payload=1232)
    if tcp:
        return dns.query.tcp(q, "127.0.0.1", port=port, timeout=timeout)
    return dns.query.udp(q, "127.0.0.1", port=port, timeout=timeout)


def addresses(resp):
    out = []
    for rrset in resp.answer:
        for rd in rrset:
            if rrset.rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA):
                out.append(rd.address)
    return out


def dig(port, *args):
    out = subprocess.run(["dig", "@127.0.0.1", "-p", str(port), "+tries=1", "+time=3"] + list(args),
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


def kdig(port, *args):
    out = subprocess.run(["kdig", "@127.0.0.1", "-p", str(port), "+retry=0", "+timeout=3"] + list(args),
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


def raw_udp(port, wire, timeout=3.0):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(timeout)
    try:
        s.sendto(wire, ("127.0.0.1", port))
        return s.recv(65535)
    finally:
        s.close()


def raw_tcp(port, wire, timeout=3.0):
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(struct.pack(">H", len(wire)) + wire)
        head = b""
        while len(head) < 2:
            chunk = s.recv(2 - len(head))
            assert chunk, "connection closed before the answer"
            head += chunk
        (n,) = struct.unpack(">H", head)
        body = b""
        while len(body) < n:
            chunk = s.recv(n - len(body))
            assert chunk, "connection closed in the answer"
            body += chunk
        return body


def metric(text, name, labels=""):
    key = name + ("{" + labels + "}" if labels else "")
    for line in text.splitlines():
        if line.startswith(key + " "):
            return float(line.split()[-1])
    return None


# ---- registered names -----------------------------------------------------------------

def test_registered_name_locality_weights_and_capped_ttl(tmp_path, registry, nsd, agents):
    a = agents(tmp_path, [reg_addr(registry)], ["127.0.0.1:%d" % nsd.port])
    counts = {}
    for i in range(400):
        r = query("web.sluice.test", "A", a.port)
        assert r.rcode() == dns.rcode.NOERROR
        assert r.flags & dns.flags.AA
        assert len(r.answer) == 1 and len(r.answer[0]) == 1      # answer_count 1
        assert r.answer[0].ttl == 5                               # dns_ttl 30 capped at 5
        ip = addresses(r)[0]
        counts[ip] = counts.get(ip, 0) + 1
    # only the agent's datacenter (dc1); 10.2.0.10 is in dc2
    assert set(counts) == {"10.1.0.10", "10.1.0.11"}, counts
    # weights 100:300: 10.1.0.11 about three times out of four (mean 300, sd 8.7)
    assert 240 <= counts["10.1.0.11"] <= 360, counts
    # answer_count 2: two different records per answer, drawn without
    # replacement, TTL 2 (below the cap); AAAA from the same list
    for i in range(50):
        r = query("pair.sluice.test", "A", a.port)
        ips = addresses(r)
        assert len(ips) == 2 and len(set(ips)) == 2 and set(ips) <= {"10.1.1.1", "10.1.1.2", "10.1.1.3"}
        assert r.answer[0].ttl == 2
    r = query("pair.sluice.test", "AAAA", a.port)
    assert addresses(r) == ["2001:db8::1"]
    # kdig and dig agree, over UDP and TCP
    out = kdig(a.port, "web.sluice.test", "A")
    assert "status: NOERROR" in out and "Flags: qr aa rd" in out
    assert "10.2.0.10" not in out
    out = dig(a.port, "+tcp", "Web.Sluice.TEST", "A")
    assert "status: NOERROR" in out and "Web.Sluice.TEST.\t5\tIN\tA\t10.1.0.1" in out


def test_srv_and_its_targets(tmp_path, registry, nsd, agents):
    a = agents(tmp_path, [reg_addr(registry)], ["127.0.0.1:%d" % nsd.port])
    r = query("_web._tcp.sluice.test", "SRV", a.port)
    assert r.rcode() == dns.rcode.NOERROR and r.flags & dns.flags.AA
    srv = sorted((rd.priority, rd.weight, rd.port, str(rd.target)) for rd in r.answer[0])
    # the tier's members at priority 0, the other healthy instance at 1
    assert srv == [(0, 100, 8080, "10-1-0-10.web.sluice.test."), (0, 300, 8080, "10-1-0-11.web.sluice.test."),
                   (1, 100, 8080, "10-2-0-10.web.sluice.test.")]
    extra = sorted((str(rr.name), rd.address) for rr in r.additional if rr.rdtype == dns.rdatatype.A for rd in rr)
    assert extra == [("10-1-0-10.web.sluice.test.", "10.1.0.10"), ("10-1-0-11.web.sluice.test.", "10.1.0.11"),
                     ("10-2-0-10.web.sluice.test.", "10.2.0.10")]
    assert addresses(query("10-2-0-10.web.sluice.test", "A", a.port)) == ["10.2.0.10"]
    assert query("10-9-9-9.web.sluice.test", "A", a.port).rcode() == dns.rcode.NXDOMAIN
    out = kdig(a.port, "+tcp", "_web._tcp.sluice.test", "SRV")
    assert "0 300 8080 10-1-0-11.web.sluice.test." in out


def test_unknown_name_under_the_zone_is_nxdomain(tmp_path, registry, nsd, agents):
    a = agents(tmp_path, [reg_addr(registry)], ["127.0.0.1:%d" % nsd.port])
    r = query("nope.sluice.test", "A", a.port)
    assert r.rcode() == dns.rcode.NXDOMAIN and r.flags & dns.flags.AA
    assert len(r.authority) == 1 and r.authority[0].rdtype == dns.rdatatype.SOA
    assert str(r.authority[0].name) == "sluice.test."
    # deeper names that are no service's: NXDOMAIN too, without asking the registry
    assert query("a.b.c.sluice.test", "A", a.port).rcode() == dns.rcode.NXDOMAIN
    # a service that exists, asked for a type it has none of: NODATA
    r = query("web.sluice.test", "AAAA", a.port)
    assert r.rcode() == dns.rcode.NOERROR and not r.answer and r.authority[0].rdtype == dns.rdatatype.SOA
    # a service registered later is answered on the next query (the 404 is not remembered for ever)
    registry.ok("PUT", "/api/registry/services/nope/instances/x",
                {"address": "10.1.9.9", "port": 80, "datacenter": "dc1", "region": "r1"})
    wait_until(lambda: addresses(query("nope.sluice.test", "A", a.port)) == ["10.1.9.9"], timeout=40,
               what="the new service answered")


def test_first_fetch_waits_then_servfail_when_no_registry_answers(tmp_path, nsd, agents):
    a = agents(tmp_path, ["127.0.0.1:%d" % dead_port()], ["127.0.0.1:%d" % nsd.port])
    r = query("web.sluice.test", "A", a.port)
    assert r.rcode() == dns.rcode.SERVFAIL   # after first_wait (500 ms) parked: see parked_total below
    # names outside the zone are still forwarded meanwhile
    assert sorted(addresses(query("www.example.test", "A", a.port))) == ["192.0.2.10", "192.0.2.11"]
    m = a.metrics()
    assert metric(m, "sluice_agent_dns_queries_total", 'kind="servfail"') >= 1
    assert metric(m, "sluice_agent_dns_parked_total") >= 1


# ---- forwarding -----------------------------------------------------------------------------

def test_forwarded_answers_are_byte_identical(tmp_path, registry, nsd, agents):
    a = agents(tmp_path, [reg_addr(registry)], ["127.0.0.1:%d" % nsd.port])
    for name, rdtype in (("www.example.test", "A"), ("mail.example.test", "MX"), ("nope.example.test", "A"),
                         ("Example.TEST", "SOA"), ("www.example.test", "TXT")):
        q = dns.message.make_query(name, rdtype, use_edns=0, payload=1232)
        q.id = 0x4242
        wire = q.to_wire()
        for send in (raw_udp, raw_tcp):
            direct = send(nsd.port, wire)
            via = send(a.port, wire)
            assert via[:2] == b"\x42\x42"            # the client's ID restored
            assert via[2:] == direct[2:], (name, rdtype, send.__name__)
    # a UDP answer with TC goes back as it is; dig then asks over TCP and the agent forwards over TCP
    q = dns.message.make_query("big.example.test", "TXT", use_edns=0, payload=1232)
    wire = q.to_wire()
    direct, via = raw_udp(nsd.port, wire), raw_udp(a.port, wire)
    assert via[2:] == direct[2:] and via[2] & 0x02
    out = dig(a.port, "big.example.test", "TXT")
    assert ";; Truncated, retrying in TCP mode." in out and "ANSWER: 20," in out
    m = a.metrics()
    assert metric(m, "sluice_agent_dns_queries_total", 'kind="forwarded"') >= 12
    assert metric(m, "sluice_agent_dns_messages_total", 'transport="tcp"') >= 6


def test_spoofed_answers_are_ignored(tmp_path, registry, agents):
    """A fake upstream that first answers with a wrong ID, then with another
    question, then right: only the last one reaches the client."""
    up = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    up.bind(("127.0.0.1", 0))
    a = agents(tmp_path, [reg_addr(registry)], ["127.0.0.1:%d" % up.getsockname()[1]],
               upstream_timeout="3s")
    client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    client.settimeout(5)
    q = dns.message.make_query("www.example.test", "A")
    q.id = 0x1111
    client.sendto(q.to_wire(), ("127.0.0.1", a.port))
    up.settimeout(5)
    data, peer = up.recvfrom(4096)
    sent = dns.message.from_wire(data)
    good = dns.message.make_response(sent)
    good.answer.append(dns.rrset.from_text("www.example.test.", 60, "IN", "A", "192.0.2.99"))
    wrong_id = dns.message.make_response(sent)
    wrong_id.id = (sent.id + 1) & 0xffff
    wrong_id.answer.append(dns.rrset.from_text("www.example.test.", 60, "IN", "A", "6.6.6.6"))
    other_q = dns.message.make_query("evil.example.test", "A")
    other_q.id = sent.id
    other = dns.message.make_response(other_q)
    other.answer.append(dns.rrset.from_text("evil.example.test.", 60, "IN", "A", "6.6.6.7"))
    for m in (wrong_id, other, good):
        up.sendto(m.to_wire(), peer)
    resp = dns.message.from_wire(client.recv(4096))
    assert resp.id == 0x1111
    assert addresses(resp) == ["192.0.2.99"]
    assert metric(a.metrics(), "sluice_agent_upstream_ignored_total") == 2
    client.close()
    up.close()


def test_upstream_failover_then_servfail(tmp_path, registry, nsd, agents):
    # nothing listens on the first (refused at once), the second never answers (times out)
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind(("127.0.0.1", 0))
    refused = "127.0.0.1:%d" % dead_port()
    quiet = "127.0.0.1:%d" % silent.getsockname()[1]
    a = agents(tmp_path, [reg_addr(registry)], [refused, quiet, "127.0.0.1:%d" % nsd.port])
    r = query("www.example.test", "A", a.port)
    assert sorted(addresses(r)) == ["192.0.2.10", "192.0.2.11"]
    r = query("www.example.test", "A", a.port, tcp=True)
    assert sorted(addresses(r)) == ["192.0.2.10", "192.0.2.11"]
    m = a.metrics()
    assert metric(m, "sluice_agent_upstream_failures_total", 'upstream="%s"' % refused) >= 1
    assert metric(m, "sluice_agent_upstream_failures_total", 'upstream="%s"' % quiet) >= 1
    # no upstream answers: SERVFAIL, while registered names are still answered
    b = agents(tmp_path, [reg_addr(registry)], [refused, quiet], name="agent-b")
    r = query("www.example.test", "A", b.port)
    assert r.rcode() == dns.rcode.SERVFAIL
    r = query("www.example.test", "A", b.port, tcp=True)
    assert r.rcode() == dns.rcode.SERVFAIL
    assert addresses(query("web.sluice.test", "A", b.port))[0] in ("10.1.0.10", "10.1.0.11")
    assert metric(b.metrics(), "sluice_agent_dns_queries_total", 'kind="servfail"') >= 2
    silent.close()


# ---- registry outages ------------------------------------------------------------------------

def test_registry_killed_the_agent_keeps_answering(tmp_path, nsd, agents):
    r = Registry(tmp_path, services=SERVICES).start()
    try:
        a = agents(tmp_path, [reg_addr(r)], ["127.0.0.1:%d" % nsd.port])
        assert addresses(query("web.sluice.test", "A", a.port))[0] in ("10.1.0.10", "10.1.0.11")
        r.kill9()
        for i in range(50):
            resp = query("web.sluice.test", "A", a.port)
            assert resp.rcode() == dns.rcode.NOERROR
            assert addresses(resp)[0] in ("10.1.0.10", "10.1.0.11")
        assert metric(a.metrics(), "sluice_agent_client_registry_reachable") == 0
    finally:
        r.stop()


def test_agent_restarted_while_the_registry_is_down_answers_from_its_cache(tmp_path, nsd, agents):
    r = Registry(tmp_path, services=SERVICES).start()
    cache = tmp_path / "agent-cache"
    try:
        extra = "  cache_dir: %s\n" % cache
        a = agents(tmp_path, [reg_addr(r)], ["127.0.0.1:%d" % nsd.port], extra=extra)
        assert addresses(query("web.sluice.test", "A", a.port))[0] in ("10.1.0.10", "10.1.0.11")
        wait_until(lambda: (cache / "web.json").exists(), what="the cache file")
        assert a.stop() == 0
        r.kill9()
        b = agents(tmp_path, [reg_addr(r)], ["127.0.0.1:%d" % nsd.port], extra=extra, name="agent-again")
        for i in range(20):
            resp = query("web.sluice.test", "A", b.port)
            assert resp.rcode() == dns.rcode.NOERROR
            assert addresses(resp)[0] in ("10.1.0.10", "10.1.0.11")
        # the same without a cache_dir: nothing to answer from
        c = agents(tmp_path, [reg_addr(r)], ["127.0.0.1:%d" % nsd.port], name="agent-nocache")
        assert query("web.sluice.test", "A", c.port).rcode() == dns.rcode.SERVFAIL
    finally:
        r.stop()


# ---- the command ---------------------------------------------------------------------------------

def test_check_help_and_config_errors(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("agent:\n  zone: sluice.test.\n  registries: [127.0.0.1:9950]\n  ttl_cap: 1500ms\n  colour: x\n")
    out = subprocess.run([SLUICE_BIN, "check", "-c", str(bad)], capture_output=True, text=True, timeout=30)
    assert out.returncode == 1
    assert "%s:4: agent.ttl_cap: a DNS TTL is a whole number of seconds" % bad in out.stderr
    assert "%s:5: agent.colour: unknown key" % bad in out.stderr
    out = subprocess.run([SLUICE_BIN, "agent", "--help"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0 and "Usage: sluice agent -c FILE" in out.stdout
    good = tmp_path / "good.yaml"
    good.write_text("agent:\n  zone: sluice.test.\n  registries: [127.0.0.1:9950]\n  listen: [127.0.0.1:5300]\n")
    out = subprocess.run([SLUICE_BIN, "check", "-c", str(good)], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0 and "DNS agent for sluice.test. on 127.0.0.1:5300" in out.stdout
    assert "listener" not in out.stdout, out.stdout    # no proxy part: the proxy says nothing


def test_metrics_served_are_the_documented_ones(tmp_path, registry, nsd, agents):
    from metrics_doc import documented_families, families
    a = agents(tmp_path, [reg_addr(registry)], ["127.0.0.1:%d" % nsd.port])
    query("web.sluice.test", "A", a.port)
    query("nope.sluice.test", "A", a.port)
    query("www.example.test", "A", a.port)
    # two labels down, the first not an address: not an SRV target, so
    # "other" is not followed (nor asked of the registry)
    assert query("www.other.sluice.test", "A", a.port).rcode() == dns.rcode.NXDOMAIN
    m = a.metrics()
    served = {n: t for n, (t, _) in families(m).items() if n.startswith("sluice_agent_")}
    documented = documented_families(path=os.path.join(ROOT, "docs", "agent.md"), section="## Status and metrics")
    assert served == documented, {"served, not documented": sorted(set(served) - set(documented)),
                                  "documented, not served": sorted(set(documented) - set(served))}
    assert metric(m, "sluice_agent_dns_queries_total", 'kind="local"') >= 1
    assert metric(m, "sluice_agent_dns_queries_total", 'kind="nxdomain"') >= 1
    assert metric(m, "sluice_agent_dns_queries_total", 'kind="forwarded"') >= 1
    assert metric(m, "sluice_agent_services") == 2
    assert metric(m, "sluice_agent_client_registry_reachable") == 1
    assert metric(m, "sluice_agent_client_updates_total") >= 1
    import json
    with urllib.request.urlopen("http://127.0.0.1:%d/api/status" % a.admin, timeout=10) as resp:
        st = json.loads(resp.read())["agent"]
    assert st["zone"] == "sluice.test." and st["datacenter"] == "dc1" and st["services"] == 2
    assert st["listen"] == ["127.0.0.1:%d" % a.port] and st["upstreams"] == ["127.0.0.1:%d" % nsd.port]
    assert st["registry_reachable"] is True and st["registry_node"] == reg_addr(registry)


def read_tcp_answers(sock, n):
    """n length-prefixed answers from a TCP socket, as dnspython messages."""
    buf, out = b"", []
    while len(out) < n:
        chunk = sock.recv(65535)
        assert chunk, "connection closed after %d answers" % len(out)
        buf += chunk
        while len(buf) >= 2 and len(buf) >= 2 + struct.unpack(">H", buf[:2])[0]:
            size = struct.unpack(">H", buf[:2])[0]
            out.append(dns.message.from_wire(buf[2:2 + size]))
            buf = buf[2 + size:]
    return out


def test_tcp_pipelined_queries_local_and_forwarded(tmp_path, registry, nsd, agents):
    """Several queries in one TCP write: a registered name, a forwarded one,
    an unknown one under the zone and a first fetch that waits; each
    answered once, matched by ID (answers may come out of order)."""
    a = agents(tmp_path, [reg_addr(registry)], ["127.0.0.1:%d" % nsd.port])
    names = [("web.sluice.test", "A"), ("www.example.test", "A"), ("nope.sluice.test", "A"),
             ("pair.sluice.test", "A"), ("mail.example.test", "MX")]
    wire = b""
    for i, (name, rdtype) in enumerate(names):
        q = dns.message.make_query(name, rdtype)
        q.id = 100 + i
        w = q.to_wire()
        wire += struct.pack(">H", len(w)) + w
    with socket.create_connection(("127.0.0.1", a.port), timeout=5) as s:
        s.sendall(wire)
        got = {m.id: m for m in read_tcp_answers(s, len(names))}
    assert sorted(got) == [100, 101, 102, 103, 104]
    assert addresses(got[100])[0] in ("10.1.0.10", "10.1.0.11")
    assert sorted(addresses(got[101])) == ["192.0.2.10", "192.0.2.11"]
    assert got[102].rcode() == dns.rcode.NXDOMAIN
    assert len(addresses(got[103])) == 2
    assert got[104].answer[0].rdtype == dns.rdatatype.MX


def test_limits_and_clients_that_go_away(tmp_path, registry, agents):
    """max_outstanding bounds the forwarded queries (the next one is
    SERVFAIL at once, counted); a TCP client that closes while its query is
    forwarded, and a UDP one that is gone when the answer comes, leave
    nothing behind (the agent stops cleanly, no sanitizer report)."""
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind(("127.0.0.1", 0))
    silent_tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    silent_tcp.bind(("127.0.0.1", silent.getsockname()[1]))
    silent_tcp.listen(8)
    a = agents(tmp_path, [reg_addr(registry)], ["127.0.0.1:%d" % silent.getsockname()[1]],
               extra="  max_outstanding: 2\n", upstream_timeout="2s")
    assert addresses(query("web.sluice.test", "A", a.port))[0] in ("10.1.0.10", "10.1.0.11")
    # two forwarded queries wait for the silent upstream; the third is refused at once
    waiting = []
    for i in range(2):
        c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        c.sendto(dns.message.make_query("w%d.example.test" % i, "A").to_wire(), ("127.0.0.1", a.port))
        waiting.append(c)
    wait_until(lambda: metric(a.metrics(), "sluice_agent_dns_outstanding") == 2, what="two outstanding")
    r = query("www.example.test", "A", a.port)
    assert r.rcode() == dns.rcode.SERVFAIL
    assert metric(a.metrics(), "sluice_agent_dns_refused_full_total", 'limit="max_outstanding"') == 1
    for c in waiting:
        c.close()   # gone before the SERVFAIL comes
    # a registered name with a list does not need a place in the table
    assert addresses(query("web.sluice.test", "A", a.port))[0] in ("10.1.0.10", "10.1.0.11")
    wait_until(lambda: metric(a.metrics(), "sluice_agent_dns_outstanding") == 0, what="the table empty again")
    # a TCP client that hangs up while its query is forwarded
    s = socket.create_connection(("127.0.0.1", a.port), timeout=5)
    w = dns.message.make_query("gone.example.test", "A").to_wire()
    s.sendall(struct.pack(">H", len(w)) + w)
    wait_until(lambda: metric(a.metrics(), "sluice_agent_dns_outstanding") == 1, what="the TCP query forwarded")
    s.close()
    wait_until(lambda: metric(a.metrics(), "sluice_agent_dns_outstanding") == 0, timeout=10,
               what="the TCP query given up")
    assert metric(a.metrics(), "sluice_agent_dns_tcp_connections") == 0
    silent.close()
    silent_tcp.close()


def test_wildcard_listener_answers_from_the_address_asked(tmp_path, registry, nsd, agents):
    """Listening on 0.0.0.0, answers (immediate and forwarded) leave from the
    address the query came to (IP_PKTINFO), so a client connected to
    127.0.0.2 accepts them."""
    a = Agent(tmp_path, [reg_addr(registry)], ["127.0.0.1:%d" % nsd.port])
    text = a.config_path.read_text().replace("listen: [127.0.0.1:", "listen: [0.0.0.0:")
    a.config_path.write_text(text)
    a.start()
    try:
        for name, want in (("web.sluice.test", None), ("www.example.test", ["192.0.2.10", "192.0.2.11"])):
            c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            c.settimeout(3)
            c.connect(("127.0.0.2", a.port))   # only datagrams from 127.0.0.2 reach it
            c.send(dns.message.make_query(name, "A").to_wire())
            resp = dns.message.from_wire(c.recv(4096))
            c.close()
            got = sorted(addresses(resp))
            if want:
                assert got == want
            else:
                assert got[0] in ("10.1.0.10", "10.1.0.11")
    finally:
        a.stop()
        a.assert_clean()
