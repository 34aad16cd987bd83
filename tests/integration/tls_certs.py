"""A throwaway certificate authority for the TLS tests, made with the openssl CLI.

    ca = CertAuthority(tmp_path / "pki")
    ec = ca.issue(["example.test", "*.example.test"], key="ec")    # ECDSA P-256
    rsa = ca.issue(["example.test"], key="rsa")                   # RSA-2048
    ec.chain, ec.key, ec.leaf, ca.cert                            # paths (str)
    client = ca.issue(["alice"], client=True)                     # for mTLS
    ocsp = ca.ocsp_response(ec, status="good")                    # DER file

The chain file holds the leaf, then an intermediate CA, as a server must
send it; `ca.cert` is the root a client trusts. Everything is written under
the directory given, so pytest's tmp_path cleans it up.
"""
import itertools
import os
import subprocess

_serial = itertools.count(1000)


def _openssl(*args, cwd=None, stdin=None):
    r = subprocess.run(["openssl", *args], cwd=cwd, input=stdin,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
    if r.returncode != 0:
        raise RuntimeError("openssl %s failed:\n%s" % (" ".join(args), r.stderr.decode(errors="replace")))
    return r.stdout


def _new_key(path, key):
    if key == "ec":
        _openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", path)
    elif key == "rsa":
        _openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", path)
    else:
        raise ValueError("key must be 'ec' or 'rsa'")


class Issued:
    """One certificate: its key, the leaf alone, and the chain a server sends."""

    def __init__(self, base, names):
        self.names = list(names)
        self.key = base + ".key"
        self.leaf = base + ".crt"
        self.chain = base + ".chain.pem"

    def serial(self):
        out = _openssl("x509", "-in", self.leaf, "-noout", "-serial").decode()
        return out.strip().split("=", 1)[1]


class CertAuthority:
    """A root CA and an intermediate that issues the leaves."""

    def __init__(self, directory, name="Sluice Test"):
        self.dir = str(directory)
        os.makedirs(self.dir, exist_ok=True)
        self.name = name
        self.root_key = os.path.join(self.dir, "root.key")
        self.cert = os.path.join(self.dir, "root.crt")
        self.int_key = os.path.join(self.dir, "intermediate.key")
        self.int_cert = os.path.join(self.dir, "intermediate.crt")
        _new_key(self.root_key, "ec")
        _openssl("req", "-x509", "-new", "-key", self.root_key, "-days", "30", "-subj",
                 "/CN=%s Root CA" % name, "-addext", "basicConstraints=critical,CA:TRUE",
                 "-addext", "keyUsage=critical,keyCertSign,cRLSign", "-out", self.cert)
        _new_key(self.int_key, "ec")
        csr = os.path.join(self.dir, "intermediate.csr")
        _openssl("req", "-new", "-key", self.int_key, "-subj", "/CN=%s Intermediate CA" % name, "-out", csr)
        ext = self._extfile("intermediate", ["basicConstraints=critical,CA:TRUE,pathlen:0",
                                             "keyUsage=critical,keyCertSign,cRLSign"])
        _openssl("x509", "-req", "-in", csr, "-CA", self.cert, "-CAkey", self.root_key,
                 "-set_serial", str(next(_serial)), "-days", "30", "-extfile", ext, "-out", self.int_cert)
        self._count = 0

    def _extfile(self, base, lines):
        path = os.path.join(self.dir, base + ".ext")
        with open(path, "w") as f:
            f.write("\n".join(lines) + "\n")
        return path

    def issue(self, names, key="ec", client=False, days=30, ocsp_url=None):
        """A leaf for names (DNS SANs; the first is also the CN)."""
        self._count += 1
        base = os.path.join(self.dir, "leaf%d-%s-%s" % (self._count, key, names[0].replace("*", "_")))
        leaf = Issued(base, names)
        _new_key(leaf.key, key)
        csr = base + ".csr"
        _openssl("req", "-new", "-key", leaf.key, "-subj", "/CN=%s" % names[0], "-out", csr)
        lines = ["basicConstraints=critical,CA:FALSE",
                 "extendedKeyUsage=%s" % ("clientAuth" if client else "serverAuth")]
        if not client:
            lines.append("subjectAltName=" + ",".join("DNS:" + n for n in names))
        if ocsp_url:
            lines.append("authorityInfoAccess=OCSP;URI:" + ocsp_url)
        ext = self._extfile(os.path.basename(base), lines)
        _openssl("x509", "-req", "-in", csr, "-CA", self.int_cert, "-CAkey", self.int_key,
                 "-set_serial", str(next(_serial)), "-days", str(days), "-extfile", ext, "-out", leaf.leaf)
        with open(leaf.chain, "w") as out:
            for part in (leaf.leaf, self.int_cert):
                with open(part) as f:
                    out.write(f.read())
        return leaf

    def ocsp_response(self, leaf, status="good"):
        """A signed OCSP response (DER) for leaf, as `openssl ocsp` answers it."""
        index = os.path.join(self.dir, "index-%s.txt" % leaf.serial())
        flag = "V" if status == "good" else "R"
        revoked = "260101000000Z" if status != "good" else ""
        with open(index, "w") as f:
            f.write("%s\t300101000000Z\t%s\t%s\tunknown\t/CN=%s\n" % (flag, revoked, leaf.serial(), leaf.names[0]))
        req = os.path.join(self.dir, "ocsp-%s.req" % leaf.serial())
        resp = os.path.join(self.dir, "ocsp-%s-%s.der" % (leaf.serial(), status))
        _openssl("ocsp", "-issuer", self.int_cert, "-cert", leaf.leaf, "-reqout", req, "-no_nonce")
        _openssl("ocsp", "-index", index, "-rsigner", self.int_cert, "-rkey", self.int_key,
                 "-CA", self.int_cert, "-reqin", req, "-respout", resp, "-ndays", "7")
        return resp
