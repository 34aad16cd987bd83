"""A real 3-member etcd cluster (Debian's etcd-server) on loopback ports,
for the registry's cluster tests: started in a temporary directory, each
member killable and restartable, everything killed at the end."""
import os
import signal
import socket
import subprocess
import time
import urllib.request

ETCD = "/usr/bin/etcd"


def free_ports(n):
    """n distinct free loopback ports: every socket stays bound until all
    are taken, or the kernel may hand out the same port twice."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


class EtcdCluster:
    def __init__(self, tmp_path, members=3):
        self.dir = tmp_path / "etcd"
        self.dir.mkdir()
        self.n = members
        ports = free_ports(2 * members)
        self.client, self.peer = ports[:members], ports[members:]
        self.endpoints = ["http://127.0.0.1:%d" % p for p in self.client]
        self.initial = ",".join("m%d=http://127.0.0.1:%d" % (i, self.peer[i]) for i in range(members))
        self.procs = [None] * members
        self.logs = [None] * members

    def start_member(self, i):
        name = "m%d" % i
        self.logs[i] = open(self.dir / (name + ".log"), "ab")
        self.procs[i] = subprocess.Popen(
            [ETCD, "--name", name, "--data-dir", str(self.dir / name),
             "--listen-client-urls", self.endpoints[i], "--advertise-client-urls", self.endpoints[i],
             "--listen-peer-urls", "http://127.0.0.1:%d" % self.peer[i],
             "--initial-advertise-peer-urls", "http://127.0.0.1:%d" % self.peer[i],
             "--initial-cluster", self.initial, "--initial-cluster-state", "new",
             "--initial-cluster-token", "sluice-%d" % os.getpid(),
             "--heartbeat-interval", "50", "--election-timeout", "500", "--log-level", "warn"],
            stdout=self.logs[i], stderr=subprocess.STDOUT)

    def ready(self, i):
        req = urllib.request.Request(self.endpoints[i] + "/v3/kv/range", data=b'{"key":"AA=="}', method="POST",
                                     headers={"Grpc-Metadata-hasleader": "true"})
        try:
            with urllib.request.urlopen(req, timeout=1) as r:
                return r.status == 200
        except OSError:
            return False

    def wait_ready(self, timeout=20.0):
        deadline = time.time() + timeout
        for i in range(self.n):
            while not self.ready(i):
                if time.time() > deadline:
                    log = (self.dir / ("m%d.log" % i)).read_text(errors="replace")[-2000:]
                    raise RuntimeError("etcd member %d did not come up:\n%s" % (i, log))
                time.sleep(0.1)

    def start(self):
        for i in range(self.n):
            self.start_member(i)
        self.wait_ready()
        return self

    def kill(self, i):
        p = self.procs[i]
        if p is not None:
            p.send_signal(signal.SIGKILL)
            p.wait(timeout=10)
            self.logs[i].close()
            self.procs[i] = None

    def kill_all(self):
        for i in range(self.n):
            self.kill(i)

    def restart_all(self):
        for i in range(self.n):
            if self.procs[i] is None:
                self.start_member(i)
        self.wait_ready()
