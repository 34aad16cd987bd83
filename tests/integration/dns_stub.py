"""A small authoritative DNS server for tests, in the test process: A
records from a dict the test changes while it runs, and modes that make it
fail the way real resolvers do (SERVFAIL, NXDOMAIN, no answer at all).

Only what a resolver client needs: one question per query, A answers with
a compressed owner (a pointer to the question), AAAA and other types
answered NOERROR without records.
"""
import socket
import struct
import threading


class DnsStub:
    def __init__(self, host="127.0.0.1"):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((host, 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.address = "%s:%d" % (host, self.port)
        self.records = {}          # "app.test" -> (["127.0.0.2", ...], ttl)
        self.mode = "ok"           # "ok", "servfail", "nxdomain", "drop"
        self.queries = 0
        self.lock = threading.Lock()
        self._stop = False
        self.thread = threading.Thread(target=self._run, daemon=True)

    def start(self):
        self.thread.start()
        return self

    def stop(self):
        self._stop = True
        self.thread.join(timeout=5)
        self.sock.close()

    def set(self, name, addresses, ttl=1):
        with self.lock:
            self.records[name.lower().rstrip(".")] = (list(addresses), ttl)

    @staticmethod
    def _question(msg):
        pos, labels = 12, []
        while msg[pos]:
            n = msg[pos]
            labels.append(msg[pos + 1:pos + 1 + n].decode("ascii", "replace"))
            pos += n + 1
        pos += 1
        qtype, qclass = struct.unpack("!HH", msg[pos:pos + 4])
        return ".".join(labels).lower(), qtype, qclass, pos + 4

    def _answer(self, msg):
        qid, flags = struct.unpack("!HH", msg[:4])
        name, qtype, _, qend = self._question(msg)
        with self.lock:
            self.queries += 1
            mode = self.mode
            addrs, ttl = self.records.get(name, ([], 1))
        if mode == "drop":
            return None
        rcode = {"servfail": 2, "nxdomain": 3}.get(mode, 0)
        if mode == "ok" and name not in self.records:
            rcode = 3
        answers = b""
        count = 0
        if rcode == 0 and qtype == 1:
            for a in addrs:
                answers += struct.pack("!HHHIH", 0xC00C, 1, 1, ttl, 4) + socket.inet_aton(a)
                count += 1
        rd = flags & 0x0100
        head = struct.pack("!HHHHHH", qid, 0x8000 | 0x0400 | rd | 0x0080 | rcode, 1, count, 0, 0)
        return head + msg[12:qend] + answers

    def _run(self):
        while not self._stop:
            try:
                msg, peer = self.sock.recvfrom(4096)
            except socket.timeout:
                continue
            except OSError:
                return
            try:
                out = self._answer(msg)
            except (IndexError, struct.error):
                continue
            if out:
                self.sock.sendto(out, peer)
