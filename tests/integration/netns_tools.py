"""Helpers shared by the tests that build network namespaces with veths and
XDP (test_l4_netns.py, test_l4_tun.py, ha_lab.py, test_ha_announce.py,
test_ha_v6.py): running commands in a namespace, turning a veth's TX
checksum offload off, the "pass everything" XDP program that the peer of an
XDP_TX veth needs, a bounded wait and a process check.

Debian's python3 only (no pip packages): bench/ha.sh and `make demo-ha`
import it through ha_lab.py outside pytest.
"""
import ctypes
import errno
import os
import socket
import struct
import subprocess
import sys
import time


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
