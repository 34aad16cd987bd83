"""Regions (GSLB) through sluice registry: a global name whose instances
are region VIPs with health checks. Callers in region A get A's VIP; when
A's VIP fails its check they get B's, and A's again once it recovers. The
answers are read through the API's /answer (what DNS would answer)."""
import socket

from registry_node import Registry, tcp_listener, wait_until

ANSWER = "/api/registry/services/global/answer"


def listener_on(port):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", port))
    s.listen(64)
    return s


def vip_for(r, client):
    doc = r.ok("GET", ANSWER + "?family=a&client=" + client)
    return [rec["id"] for rec in doc["records"]], doc


def test_region_vip_fails_over_and_back(tmp_path):
    vip_a, vip_b = tcp_listener(), tcp_listener()
    port_a, port_b = vip_a.getsockname()[1], vip_b.getsockname()[1]
    extra = ("  subnets:\n"
             "    - { cidr: 10.1.0.0/16, datacenter: a1, region: ra }\n"
             "    - { cidr: 10.2.0.0/16, datacenter: b1, region: rb }\n")
    services = ("    - name: global\n"
                "      dns_ttl: 1\n"
                "      health: { type: tcp, interval: 200ms, timeout: 200ms, rise: 1, fall: 2 }\n"
                "      instances:\n"
                "        - { id: vip-a, address: 127.0.0.1, port: %d, datacenter: a1, region: ra }\n"
                "        - { id: vip-b, address: 127.0.0.1, port: %d, datacenter: b1, region: rb }\n"
                % (port_a, port_b))
    r = Registry(tmp_path, extra=extra, services=services).start()
    try:
        for _ in range(5):
            ids, doc = vip_for(r, "10.1.2.3")
            assert ids == ["vip-a"] and doc["tier"] == "datacenter", doc
            assert vip_for(r, "10.2.9.9")[0] == ["vip-b"]
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
        vip_a = listener_on(port_a)
        wait_until(lambda: vip_for(r, "10.1.2.3")[0] == ["vip-a"], what="A's VIP back for A's callers")
    finally:
        vip_a.close()
        vip_b.close()
        r.stop()
        r.assert_clean()
