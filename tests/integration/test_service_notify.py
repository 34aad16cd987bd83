"""sd_notify (src/core/service_notify.c): what a Type=notify systemd unit
waits for. The test plays the service manager: NOTIFY_SOCKET names a unix
datagram socket it owns, and it checks that `sluice proxy` says READY=1
once it serves, RELOADING=1 then READY=1 around a SIGHUP reload (applied or
refused), and STOPPING=1 on SIGTERM, in that order, all from the master
(the workers inherit NOTIFY_SOCKET but never speak); and `sluice l4` and
`sluice registry` the same."""
import signal

import pytest

from helpers import free_port, fresh_get, wait_for
from notify_socket import NotifySocket
from registry_node import Registry
from test_l4_netns import L4, topo  # noqa: F401 (topo is a fixture)


def config(port, backend):
    return ("admin: { listen: off }\n"
            "pools:\n"
            "  - name: app\n"
            "    backends: [%s]\n"
            "listeners:\n"
            "  - name: web\n"
            "    listen: 127.0.0.1:%d\n"
            "    pool: app\n" % (backend, port))


@pytest.fixture
def notify(tmp_path, monkeypatch):
    ns = NotifySocket(tmp_path / "notify.sock")
    monkeypatch.setenv("NOTIFY_SOCKET", ns.path)
    yield ns
    ns.close()


def test_proxy_says_ready_reloading_ready_stopping(sluice, backends, notify):
    b1, b2 = backends(2)
    port = free_port()
    s = sluice(config(port, b1.address), workers=2)
    main = s.proc.pid

    (pid, ready), = notify.wait_for("READY")
    assert pid == main and ready == {"READY": "1", "STATUS": "sluice proxy serving"}
    # READY means serving: the listener answers now, no waiting.
    assert fresh_get(port, "/")[2].startswith(b"b1")

    s.reload(config(port, b2.address))
    msgs = notify.wait_for("READY")
    assert [m[1].keys() for m in msgs] == [{"RELOADING", "MONOTONIC_USEC"}, {"READY", "STATUS"}]
    assert all(p == main for p, _ in msgs)
    reloading, ready = msgs[0][1], msgs[1][1]
    assert reloading["RELOADING"] == "1"
    first_usec = int(reloading["MONOTONIC_USEC"])
    assert first_usec > 0
    assert ready["STATUS"] == "sluice proxy serving; reload applied (1 since start)"
    assert wait_for(lambda: fresh_get(port, "/")[2].startswith(b"b2"))

    # A refused reload ends with READY=1 too (systemd would otherwise wait
    # for it until its timeout), and says so.
    s.reload(config(port, b2.address) + "bogus: 1\n")
    msgs = notify.wait_for("READY")
    assert [sorted(m[1]) for m in msgs] == [["MONOTONIC_USEC", "RELOADING"], ["READY", "STATUS"]]
    assert int(msgs[0][1]["MONOTONIC_USEC"]) > first_usec
    assert msgs[1][1]["STATUS"] == "sluice proxy serving; the last reload was not applied (see the log)"
    assert fresh_get(port, "/")[0] == 200

    s.proc.send_signal(signal.SIGTERM)
    (pid, stopping), = notify.wait_for("STOPPING")
    assert pid == main and stopping == {"STOPPING": "1"}
    assert s.proc.wait(timeout=30) == 0
    # Nothing more, from anyone (the workers exited without a word).
    assert notify.next(timeout=0.5) is None


def test_without_a_listening_manager_the_proxy_still_serves(sluice, backends, tmp_path, monkeypatch):
    """NOTIFY_SOCKET naming nothing: a warning in the log, and the proxy serves."""
    (b1,) = backends(1)
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "nobody-listens.sock"))
    port = free_port()
    s = sluice(config(port, b1.address), wait_ports=[port])
    assert fresh_get(port, "/")[0] == 200
    assert wait_for(lambda: "cannot notify the service manager" in s.read_log())


def test_l4_says_ready_reloading_ready_stopping(topo, notify):
    """`sluice l4` in the DR topology of test_l4_netns (root): READY=1 once
    attached, the reload pair on SIGHUP, STOPPING=1 on SIGTERM. `ip netns
    exec` keeps the environment, and the socket is a path, which a network
    namespace does not hide."""
    l4 = L4(topo).start()
    (pid, ready), = notify.wait_for("READY")
    assert pid == l4.proc.pid and ready == {"READY": "1", "STATUS": "sluice l4 serving"}

    l4.proc.send_signal(signal.SIGHUP)
    msgs = notify.wait_for("READY")
    assert [sorted(m[1]) for m in msgs] == [["MONOTONIC_USEC", "RELOADING"], ["READY", "STATUS"]]
    assert msgs[1][1]["STATUS"] == "sluice l4 serving; reload applied (1 since start)"

    assert l4.stop() == 0
    (pid, stopping), = notify.wait_for("STOPPING")
    assert pid == l4.proc.pid and stopping == {"STOPPING": "1"}


def test_registry_says_ready_reloading_ready_stopping(tmp_path, notify):
    """`sluice registry`: the same messages, from the one process."""
    reg = Registry(tmp_path).start()
    try:
        (pid, ready), = notify.wait_for("READY")
        assert pid == reg.proc.pid and ready == {"READY": "1", "STATUS": "sluice registry serving"}
        reg.reload()
        msgs = notify.wait_for("READY")
        assert [sorted(m[1]) for m in msgs] == [["MONOTONIC_USEC", "RELOADING"], ["READY", "STATUS"]]
        assert msgs[1][1]["STATUS"] == "sluice registry serving; reload applied (1 since start)"
        reg.proc.send_signal(signal.SIGTERM)
        (pid, stopping), = notify.wait_for("STOPPING")
        assert pid == reg.proc.pid and stopping == {"STOPPING": "1"}
    finally:
        reg.stop()
    reg.assert_clean()
