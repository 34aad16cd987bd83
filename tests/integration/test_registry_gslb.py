"""Regions (GSLB) through sluice registry: a global name whose instances
are region VIPs with health checks. Callers in region A get A's VIP; when
A's VIP fails its check they get B's, and A's again once it recovers. The
answers are read over DNS (dig with the caller's Client Subnet, the TTL
checked) and through the API's /answer (which says why)."""
import socket
import subprocess

from helpers import free_port
from registry_node import Registry, tcp_listener, wait_until

ANSWER = "/api/registry/services/global/answer"


def listener_on(port, host="127.0.0.1"):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((host, port))
    s.listen(64)
    return s


def vip_for(r, client):
    doc = r.ok("GET", ANSWER + "?family=a&client=" + client)
    return [rec["id"] for rec in doc["records"]], doc


def dig_a(dns_port, subnet):
    """[(ttl, address)] of the A answer for global.sluice.test to a caller in subnet."""
    out = subprocess.run(["dig", "@127.0.0.1", "-p", str(dns_port), "+noall", "+answer", "+tries=1", "+time=2",
                          "global.sluice.test", "A", "+subnet=" + subnet], capture_output=True, text=True,
                         timeout=20)
    assert out.returncode == 0, out.stdout + out.stderr
    return [(int(f[1]), f[4]) for f in (line.split() for line in out.stdout.splitlines()) if len(f) == 5]


def test_region_vip_fails_over_and_back(tmp_path):
    vip_a, vip_b = tcp_listener(), listener_on(0, "127.0.0.2")   # two addresses, as two regions' VIPs
    port_a, port_b = vip_a.getsockname()[1], vip_b.getsockname()[1]
    dns_port = free_port()
    extra = ("  dns:\n    listen: [127.0.0.1:%d]\n    zone: sluice.test.\n" % dns_port +
             "  subnets:\n"
             "    - { cidr: 10.1.0.0/16, datacenter: a1, region: ra }\n"
             "    - { cidr: 10.2.0.0/16, datacenter: b1, region: rb }\n")
    services = ("    - name: global\n"
                "      dns_ttl: 1\n"
                "      health: { type: tcp, interval: 200ms, timeout: 200ms, rise: 1, fall: 2 }\n"
                "      instances:\n"
                "        - { id: vip-a, address: 127.0.0.1, port: %d, datacenter: a1, region: ra }\n"
                "        - { id: vip-b, address: 127.0.0.2, port: %d, datacenter: b1, region: rb }\n"
                % (port_a, port_b))
    r = Registry(tmp_path, extra=extra, services=services).start()
    try:
        for _ in range(5):
            ids, doc = vip_for(r, "10.1.2.3")
            assert ids == ["vip-a"] and doc["tier"] == "datacenter", doc
            assert vip_for(r, "10.2.9.9")[0] == ["vip-b"]
            # The same over DNS, with the service's TTL: A's callers get A's VIP, B's get B's.
            assert dig_a(dns_port, "10.1.2.0/24") == [(1, "127.0.0.1")]
            assert dig_a(dns_port, "10.2.9.0/24") == [(1, "127.0.0.2")]
        # By region name too (a caller whose datacenter is unknown).
        doc = r.ok("GET", ANSWER + "?region=ra")
        assert [x["id"] for x in doc["records"]] == ["vip-a"] and doc["tier"] == "region"
        vip_a.close()
        ids, doc = wait_until(lambda: (lambda v: v if v[0] == ["vip-b"] else None)(vip_for(r, "10.1.2.3")),
                              what="region A's callers to get B's VIP")
        assert doc["tier"] == "all" and doc["fail_open"] is False, doc
        assert not doc["tiers"]["datacenter"]["qualified"] and not doc["tiers"]["region"]["qualified"]
        assert r.instance("global", "vip-a")["health"] == "down"
        assert vip_for(r, "10.2.9.9")[0] == ["vip-b"]
        assert dig_a(dns_port, "10.1.2.0/24") == [(1, "127.0.0.2")]      # A's callers, over DNS: B's VIP
        vip_a = listener_on(port_a)
        wait_until(lambda: vip_for(r, "10.1.2.3")[0] == ["vip-a"], what="A's VIP back for A's callers")
        wait_until(lambda: dig_a(dns_port, "10.1.2.0/24") == [(1, "127.0.0.1")], what="A's VIP back over DNS")
    finally:
        vip_a.close()
        vip_b.close()
        r.stop()
        r.assert_clean()
