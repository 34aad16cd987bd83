"""Helpers shared by the tests that build network namespaces with veths and
XDP (test_l4_netns.py, test_l4_sync.py, test_l4_tun.py, ha_lab.py,
test_ha_announce.py, test_ha_v6.py, test_ha_preempt.py, test_ha_routers.py):
running commands in a namespace, turning a veth's TX checksum offload off,
the "pass everything" XDP program that the peer of an XDP_TX veth needs, a
bounded wait and a process check; a lab's namespaces on a bridge with its
processes and bpffs (NetnsLab), a BIRD with its files in the test's
directory (Bird), and a `sluice` daemon with an ha: section (HaDaemon).

Debian's python3 only (no pip packages): bench/ha.sh and `make demo-ha`
import it through ha_lab.py outside pytest.
"""
import contextlib
import ctypes
import errno
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time

BIRD = shutil.which("bird") or "/usr/sbin/bird"
BIRDC = shutil.which("birdc") or "/usr/sbin/birdc"


def sh(*args, check=True, timeout=20):
    return subprocess.run(list(args), check=check, timeout=timeout, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)


def nsexec(ns, *args, **kw):
    return sh("ip", "netns", "exec", ns, *args, **kw)


def hold_prefix(prefix, timeout=900, log=None):
    """Hold the namespace prefix for this process's lifetime, waiting while
    another run holds it. Two runs of the same test (two checkouts, a
    `make test` beside a single test) then take turns instead of one
    removing the other's namespaces as leftovers; what is left under a
    prefix nobody holds is a dead run's. The hold is a bound abstract UNIX
    socket (no file to leave behind; the kernel lets go when the process
    dies). Returns the socket: keep it, close it to let go."""
    name = b"\0sluice-netns-" + prefix.encode()
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    deadline = time.time() + timeout
    said = False
    while True:
        try:
            s.bind(name)
            return s
        except OSError as e:
            if e.errno != errno.EADDRINUSE:
                s.close()
                raise
        if time.time() >= deadline:
            s.close()
            raise RuntimeError("namespace prefix %s: another run held it for %d s" % (prefix, timeout))
        if log and not said:
            log("namespace prefix %s is in use by another run: waiting for it (up to %d s)" % (prefix, timeout))
            said = True
        time.sleep(0.5)


ETHTOOL_STXCSUM = 0x17


def ethtool_set(ns, ifname, cmd, value):
    """A legacy ethtool set (ethtool -K), without the ethtool binary."""
    code = r'''
import ctypes, fcntl, socket, struct, sys
SIOCETHTOOL = 0x8946
val = ctypes.create_string_buffer(struct.pack("II", int(sys.argv[2]), int(sys.argv[3])))
ifr = struct.pack("16sP16x", sys.argv[1].encode(), ctypes.addressof(val))   # struct ifreq: 40 bytes
fcntl.ioctl(socket.socket(), SIOCETHTOOL, ifr)
'''
    nsexec(ns, sys.executable, "-c", code, ifname, str(cmd), str(value))


def pin_xdp_pass(path):
    """Load the two-instruction program "return XDP_PASS" with the bpf(2)
    syscall and pin it at path (on a bpffs), for `ip link set ... pinned`."""
    libc = ctypes.CDLL(None, use_errno=True)
    NR_BPF, BPF_PROG_LOAD, BPF_OBJ_PIN, BPF_PROG_TYPE_XDP = 321, 5, 6, 6
    insns = ctypes.create_string_buffer(struct.pack("<BBhiBBhi", 0xb7, 0, 0, 2, 0x95, 0, 0, 0))
    lic = ctypes.create_string_buffer(b"GPL")
    attr = ctypes.create_string_buffer(struct.pack("<IIQQ", BPF_PROG_TYPE_XDP, 2, ctypes.addressof(insns),
                                                   ctypes.addressof(lic)), 128)
    fd = libc.syscall(NR_BPF, BPF_PROG_LOAD, attr, 128)
    if fd < 0:
        raise OSError(ctypes.get_errno(), "BPF_PROG_LOAD")
    cpath = ctypes.create_string_buffer(path.encode())
    attr = ctypes.create_string_buffer(struct.pack("<QI", ctypes.addressof(cpath), fd), 128)
    rc = libc.syscall(NR_BPF, BPF_OBJ_PIN, attr, 128)
    os.close(fd)
    if rc < 0:
        raise OSError(ctypes.get_errno(), "BPF_OBJ_PIN")


def wait_for(pred, timeout, step=0.1):
    """pred()'s first true value within timeout seconds, else its last."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(step)
    return pred()


def pid_alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False


def missing_tools(root_for, tools=(), debian="iproute2", binaries=()):
    """None when this machine can run a namespace test, else why not (for
    pytest.skip): root (root_for says what for), the tools on PATH (the
    Debian packages that have them in `debian`), the sluice binaries built."""
    if os.geteuid() != 0:
        return "needs root (%s)" % root_for
    for tool in tools:
        if not shutil.which(tool):
            return "needs %s (Debian: %s)" % (tool, debian)
    for binary in binaries:
        if not os.path.exists(binary):
            return "%s not built" % binary
    return None


def add_bridge(ns, bridge="br0"):
    """A bridge (up) in namespace ns: the lab's switch."""
    nsexec(ns, "ip", "link", "add", bridge, "type", "bridge")
    nsexec(ns, "ip", "link", "set", bridge, "up")


def add_bridge_port(switch, ns, ifname, peer, addrs, link_opts=(), bridge="br0"):
    """A veth: ifname in ns, up, with addrs ("ADDRESS/LEN"; IPv6 ones
    without duplicate address detection, which would hold them tentative
    for a second or more), and its peer in namespace switch, up on the
    bridge. link_opts go to both ends (e.g. numtxqueues 2). Returns peer."""
    sh("ip", "link", "add", ifname, "netns", ns, *link_opts, "type", "veth", "peer", "name", peer,
       "netns", switch, *link_opts)
    nsexec(switch, "ip", "link", "set", peer, "master", bridge, "up")
    for addr in addrs:
        nsexec(ns, "ip", "addr", "add", addr, "dev", ifname, *(("nodad",) if ":" in addr else ()))
    nsexec(ns, "ip", "link", "set", ifname, "up")
    return peer


def read_pid(pidfile):
    """The pid in a daemon's pid file, or None (no file yet, or not a pid)."""
    try:
        text = pidfile.read_text().strip()
    except FileNotFoundError:
        return None
    return int(text) if text.isdigit() else None


class NetnsLab:
    """What a namespace test makes, so that destroy() removes all of it:
    namespaces (a switch with a bridge, hosts with veth ports on it), the
    processes spawned in them, daemons that leave their parent (BIRD) by pid
    and by pid file, and a bpffs of the lab's own with the "pass
    everything" XDP program pinned (`ip netns exec` remounts /sys, so
    /sys/fs/bpf would not outlive one command)."""

    def __init__(self, tmp):
        self.tmp = tmp
        self.namespaces, self.procs = [], []
        self.daemon_pids, self.daemon_pidfiles = [], []
        self.bpffs = str(tmp / "bpffs")
        self.mounted = False
        self.switch = None

    def add_ns(self, ns):
        """A new namespace (removed at destroy()) with its loopback up."""
        sh("ip", "netns", "add", ns)
        self.namespaces.append(ns)
        nsexec(ns, "ip", "link", "set", "lo", "up")

    def add_switch(self, ns):
        """The switch: a namespace with the bridge br0 that hosts join."""
        self.add_ns(ns)
        add_bridge(ns)
        self.switch = ns

    def add_host(self, ns, ifname, addrs, link_opts=()):
        """Namespace ns with ifname on the switch's bridge (see
        add_bridge_port; the bridge side is named after ns). Returns the
        bridge-side name."""
        self.add_ns(ns)
        return add_bridge_port(self.switch, ns, ifname, (ns + "p")[:15], addrs, link_opts)

    def mount_bpffs(self):
        """The lab's bpffs, with the XDP_PASS program pinned as xdp_pass."""
        os.makedirs(self.bpffs, exist_ok=True)
        sh("mount", "-t", "bpf", "bpf", self.bpffs)
        self.mounted = True
        pin_xdp_pass(self.bpffs + "/xdp_pass")

    def xdp_pass_on(self, ns, dev):
        """The pinned XDP_PASS program on dev: veth hands XDP_TX frames on
        only to a peer that runs XDP (NAPI). A physical NIC needs nothing
        of the sort."""
        nsexec(ns, "ip", "link", "set", "dev", dev, "xdpdrv", "pinned", self.bpffs + "/xdp_pass")

    def spawn(self, ns, *args, **kw):
        """A process in ns, killed at destroy()."""
        p = subprocess.Popen(["ip", "netns", "exec", ns] + list(args), **kw)
        self.procs.append(p)
        return p

    def stop_processes(self):
        """Kill what spawn() started, then the daemons by pid (those
        recorded, and those their pid files name now)."""
        for p in self.procs:
            if p.poll() is None:
                p.kill()
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        pids = set(self.daemon_pids)
        pids.update(pid for pid in map(read_pid, self.daemon_pidfiles) if pid)
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def detach_xdp(self):
        """Before the namespaces go: what outlives the processes on the
        bpffs (sluice l4's pinned links and maps). Nothing by default."""

    def destroy(self):
        self.stop_processes()
        if self.mounted:
            self.detach_xdp()
        for ns in reversed(self.namespaces):
            sh("ip", "netns", "del", ns, check=False)
        if self.mounted:
            sh("umount", self.bpffs, check=False)


def l4_detach(ns, binary, pin_dir):
    """`sluice l4 detach --remove-maps` on pin_dir, when it is there: the
    forwarder's XDP links and maps outlive its process; take them off as an
    operator would."""
    if os.path.isdir(pin_dir):
        nsexec(ns, binary, "l4", "detach", "--pin-dir", pin_dir, "--remove-maps", check=False)


@contextlib.contextmanager
def built(lab):
    """lab.build(), then lab.destroy() whatever happens (a build that
    failed half way included)."""
    try:
        lab.build()
        yield lab
    finally:
        lab.destroy()


def lab_fixture(make_lab, why_not):
    """A pytest fixture `lab`: skipped with why_not()'s reason when there is
    one, else make_lab(tmp_path) built for the test and destroyed after it.
    (pytest is imported here only: bench/ha.sh imports this module without
    it.)"""
    import pytest

    @pytest.fixture
    def lab(tmp_path):
        why = why_not()
        if why:
            pytest.skip(why)
        with built(make_lab(tmp_path)) as made:
            yield made
    return lab


class Bird:
    """A BIRD 2 in namespace ns with its files in directory, named
    STEM.conf, STEM.ctl (control socket), STEM.pid and STEM.log: nothing in
    /etc or /run. The router's BIRD a test starts itself, or (files only)
    the one an ha: section's managed mode starts."""

    def __init__(self, ns, directory, stem="bird"):
        self.ns = ns
        self.conf = directory / (stem + ".conf")
        self.sock = str(directory / (stem + ".ctl"))
        self.pidfile = directory / (stem + ".pid")
        self.log = directory / (stem + ".log")

    def start(self, config):
        """Write config and start BIRD on it; its pid, once it wrote it."""
        self.conf.write_text(config)
        nsexec(self.ns, BIRD, "-c", str(self.conf), "-s", self.sock, "-P", str(self.pidfile))
        pid = wait_for(lambda: read_pid(self.pidfile), 10)
        assert pid, "BIRD in %s wrote no pid file:\n%s" % (self.ns, self.read_log())
        return pid

    def pid(self):
        return read_pid(self.pidfile)

    def birdc(self, *cmd):
        """birdc's answer to cmd (whatever it says, errors included)."""
        return nsexec(self.ns, BIRDC, "-s", self.sock, *cmd, check=False).stdout

    def read_log(self):
        try:
            return self.log.read_text(errors="replace")
        except FileNotFoundError:
            return ""


ADMIN_GET = """\
import sys, urllib.request
req = urllib.request.Request(sys.argv[1], method=sys.argv[2])
print(urllib.request.urlopen(req, timeout=5).read().decode())
"""


class HaDaemon:
    """`sluice l4` or `sluice proxy` with an ha: section, run in namespace
    ns of lab (a NetnsLab): its config file, its log (restarts append to
    it; new_log() is this run's part), its admin API (asked from inside the
    namespace), `sluice ha` on its config, and the BIRD it starts in
    managed mode (`bird`, a Bird; its pid goes to lab.daemon_pids: BIRD
    outlives the daemon, teardown kills it).

    start() waits until the log has every line of ready_lines and the admin
    API answers; extra_args follow `-c CONFIG`."""

    def __init__(self, lab, ns, verb, binary, conf, log_path, admin, bird, ready_lines=(), extra_args=()):
        self.lab, self.ns, self.verb, self.binary = lab, ns, verb, binary
        self.conf, self.log_path, self.admin, self.bird = conf, log_path, admin, bird
        self.ready_lines, self.extra_args = tuple(ready_lines), tuple(extra_args)
        self.proc = None
        self.offset = 0
        self.api_error = ""
        lab.daemon_pidfiles.append(bird.pidfile)   # a daemon that failed half way may have started it

    def start(self):
        self.offset = len(self.read_log())
        with open(self.log_path, "ab") as log:
            self.proc = self.lab.spawn(self.ns, self.binary, self.verb, "-c", str(self.conf), *self.extra_args,
                                       stdout=log, stderr=subprocess.STDOUT)
        ok = wait_for(lambda: self.proc.poll() is not None or self.ready(), 30)
        assert ok and self.proc.poll() is None, "%s in %s did not start (%s):\n%s" % (
            self.verb, self.ns, self.api_error, self.read_log())
        pid = wait_for(self.bird.pid, 10)
        assert pid, "no pid in %s:\n%s" % (self.bird.pidfile, self.read_log())
        if pid not in self.lab.daemon_pids:
            self.lab.daemon_pids.append(pid)
        return self

    def ready(self):
        log = self.new_log()
        return all(line in log for line in self.ready_lines) and self.api_up()

    def stop(self):
        """SIGTERM; the daemon must exit 0."""
        self.proc.send_signal(signal.SIGTERM)
        assert self.proc.wait(timeout=30) == 0, self.new_log()

    def read_log(self):
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def new_log(self):
        return self.read_log()[self.offset:]

    def fetch(self, method, path):
        """The admin API's answer to METHOD path (a 2xx one), as text;
        None when there is none (api_error says why)."""
        out = nsexec(self.ns, sys.executable, "-c", ADMIN_GET, "http://%s%s" % (self.admin, path), method,
                     check=False)
        if out.returncode != 0:
            self.api_error = "%s %s: %s" % (method, path, (out.stderr.strip().splitlines() or [""])[-1])
            return None
        return out.stdout

    def api(self, method, path, check=True):
        """The admin API's JSON answer; None (check=False) or an assertion
        error when there is none."""
        text = self.fetch(method, path)
        try:
            return json.loads(text)
        except (TypeError, ValueError):
            if check:
                raise AssertionError("%s %s in %s: %r %s" % (method, path, self.ns, text, self.api_error))
            return None

    def api_up(self):
        return self.api("GET", "/api/ha", check=False) is not None

    def ha(self, check=True):
        return self.api("GET", "/api/ha", check)

    def metrics(self):
        text = self.fetch("GET", "/metrics")
        assert text is not None, self.api_error
        return text

    def ctl(self, *args):
        """`sluice ha ARGS -c CONFIG` in the daemon's namespace."""
        return nsexec(self.ns, self.binary, "ha", *args, "-c", str(self.conf), check=False)

    def bird_pid(self):
        """The pid in the managed BIRD's pid file (raises while there is
        none)."""
        return int(self.bird.pidfile.read_text().strip())


def proxy_web_yaml(listen, backend):
    """The pools: and listeners: of a `sluice proxy` config: the pool web
    with one backend (TCP health checks every 200 ms) behind the TCP
    listener vip on listen ("ADDRESS:PORT")."""
    return """\
pools:
  - name: web
    backends: ["{backend}"]
    health_check: {{ type: tcp, interval: 200ms, timeout: 150ms, rise: 1, fall: 1 }}
listeners:
  - {{ name: vip, listen: "{listen}", protocol: tcp, pool: web }}
""".format(listen=listen, backend=backend)
