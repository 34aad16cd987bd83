"""The service manager's end of sd_notify, for tests: a unix datagram
socket that collects what a daemon says (READY=1, RELOADING=1, ...) with
the sender's pid from SCM_CREDENTIALS, as systemd reads it."""
import socket
import struct
import time


class NotifySocket:
    def __init__(self, path):
        self.path = str(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self.sock.bind(self.path)

    def next(self, timeout=15.0):
        """The next message as (pid, {KEY: VALUE}), or None after timeout."""
        self.sock.settimeout(timeout)
        try:
            data, anc, _, _ = self.sock.recvmsg(4096, socket.CMSG_SPACE(12))
        except socket.timeout:
            return None
        pid = None
        for level, kind, payload in anc:
            if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                pid, _uid, _gid = struct.unpack("iII", payload[:12])
        fields = {}
        for line in data.decode().split("\n"):
            if line:
                key, _, value = line.partition("=")
                fields[key] = value
        return pid, fields

    def wait_for(self, key, timeout=15.0):
        """Messages up to and including the first with `key`: a list, the last
        one holding key (AssertionError if none comes in time)."""
        seen = []
        deadline = time.time() + timeout
        while time.time() < deadline:
            msg = self.next(timeout=max(0.1, deadline - time.time()))
            if msg is None:
                break
            seen.append(msg)
            if key in msg[1]:
                return seen
        raise AssertionError("no %s from the daemon; got %r" % (key, seen))

    def close(self):
        self.sock.close()
