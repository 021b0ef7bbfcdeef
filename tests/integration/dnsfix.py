"""A real DNS server for the discovery tests (dns+tcp://NAME:PORT endpoints).

- Dnsmasq: Debian's dnsmasq, run by the test (optionally inside a network
  namespace, through a command prefix such as ["ip", "netns", "exec", NS]),
  answering only from a hosts directory it re-reads (--hostsdir; each
  change is also followed by SIGHUP to its PID and waited for), TTL 0, no
  upstream servers, names under the zone (default "cmx.test") answered
  locally only (NXDOMAIN for an unknown name, never forwarded).
  set_records(name, addrs) replaces the A/AAAA records of a name;
  wait_resolves(name, addrs, prefix) waits until a resolver run through
  `prefix` sees exactly that set.
- namespace_resolver(ns, server): points a namespace's resolver at the
  server: `ip netns exec NS` bind-mounts /etc/netns/NS/resolv.conf over
  /etc/resolv.conf (and nsswitch.conf: "hosts: files dns"). Removed again
  on exit.

Nothing here talks to anything outside 127.0.0.0/8 and the namespaces a
test creates. Needs root for namespaces and for port 53 (port is
configurable for loopback use without a namespace: the system resolver
always asks port 53, so only the namespace setup exercises getaddrinfo).

    python3 dnsfix.py selftest     # dnsmasq on 127.0.0.1:15353, records
                                   # changed, answers read with a raw query
"""

import ipaddress
import os
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

DNSMASQ = shutil.which("dnsmasq") or "/usr/sbin/dnsmasq"


def dnsmasq_missing():
    """None if dnsmasq can be run, else why not."""
    if not os.path.exists(DNSMASQ):
        return "dnsmasq is not installed (Debian: apt-get install dnsmasq)"
    return None


class Dnsmasq:
    """dnsmasq serving the records set with set_records() from a hosts
    directory in `workdir`, listening on `listen`:`port` (UDP and TCP)."""

    def __init__(self, workdir, listen="127.0.0.1", port=53, prefix=(), zone="cmx.test"):
        self.workdir = Path(workdir)
        self.listen, self.port, self.prefix, self.zone = listen, port, list(prefix), zone
        self.hostsdir = self.workdir / "dns-hosts"
        self.hostsdir.mkdir(parents=True, exist_ok=True)
        self.pidfile = self.workdir / "dnsmasq.pid"
        self.logfile = self.workdir / "dnsmasq.log"
        self.records = {}
        self.proc = None
        self.pid = None

    def command(self):
        return self.prefix + [
            DNSMASQ, "--keep-in-foreground", "--conf-file=/dev/null",
            "--no-resolv", "--no-hosts", "--no-poll", "--user=root", "--group=root",
            "--bind-interfaces", "--listen-address=" + self.listen,
            "--port=%d" % self.port, "--hostsdir=" + str(self.hostsdir),
            "--local=/%s/" % self.zone, "--domain-needed", "--local-ttl=0",
            "--neg-ttl=0", "--cache-size=0", "--pid-file=" + str(self.pidfile),
            "--log-facility=" + str(self.logfile), "--log-queries"]

    def start(self, timeout=10.0):
        self._write()
        self.proc = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                out = self.proc.stdout.read().decode(errors="replace")
                raise RuntimeError("dnsmasq exited %d: %s %s" % (self.proc.returncode, out,
                                                                 self.log()))
            try:
                pid = int(self.pidfile.read_text().strip())
            except (OSError, ValueError):
                pid = None
            if pid and self.log().find("started") >= 0:
                self.pid = pid
                return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError("dnsmasq did not start within %gs: %s" % (timeout, self.log()))

    def log(self):
        try:
            return self.logfile.read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def _write(self):
        lines = []
        for name, addrs in sorted(self.records.items()):
            for a in addrs:
                lines.append("%s %s\n" % (a, name))
        tmp = self.workdir / "hosts.tmp"
        tmp.write_text("".join(lines))
        os.replace(tmp, self.hostsdir / "records")

    def set_records(self, name, addrs):
        """The A/AAAA records of `name` are now exactly `addrs` (may be
        empty: the name then has no address). Reloaded at once (SIGHUP)."""
        for a in addrs:
            ipaddress.ip_address(a)  # a typo is the test's bug: fail here
        self.records[name] = list(addrs)
        self._write()
        if self.pid:
            os.kill(self.pid, signal.SIGHUP)

    def wait_resolves(self, name, addrs, prefix=None, timeout=10.0):
        """Wait until getaddrinfo, run through `prefix` (default: the
        server's own), returns exactly the set `addrs`."""
        want = sorted(set(addrs))
        pre = self.prefix if prefix is None else list(prefix)
        deadline = time.monotonic() + timeout
        got = None
        while time.monotonic() < deadline:
            got = resolve(name, pre)
            if got == want:
                return got
            time.sleep(0.1)
        raise AssertionError("%s resolves to %s, expected %s within %gs\n%s"
                             % (name, got, want, timeout, self.log()))

    def stop(self):
        if self.proc and self.proc.poll() is None:
            # The process we started (ip netns exec execs dnsmasq: same PID).
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self.proc and self.proc.stdout:
            self.proc.stdout.close()
        self.proc = None
        self.pid = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def resolve(name, prefix=()):
    """Sorted addresses getaddrinfo gives for `name`, through `prefix` (a
    namespace's resolver); [] if it does not resolve."""
    code = ("import socket,sys\n"
            "try:\n"
            " r=socket.getaddrinfo(sys.argv[1],None,proto=socket.IPPROTO_TCP)\n"
            "except socket.gaierror:\n"
            " r=[]\n"
            "print('\\n'.join(sorted({x[4][0] for x in r})))\n")
    p = subprocess.run(list(prefix) + ["/usr/bin/python3", "-c", code, name],
                       capture_output=True, text=True, timeout=20)
    if p.returncode != 0:
        raise RuntimeError("resolve %s: %s" % (name, p.stderr.strip()))
    return [x for x in p.stdout.split() if x]


@contextmanager
def namespace_resolver(ns, server):
    """Point namespace `ns`'s resolver at `server` (an address): the files
    `ip netns exec` bind-mounts over /etc/resolv.conf and nsswitch.conf."""
    d = Path("/etc/netns") / ns
    made_parent = not d.parent.exists()
    d.mkdir(parents=True, exist_ok=True)
    try:
        # attempts/timeout small: a test that stops the server sees it fast.
        (d / "resolv.conf").write_text("nameserver %s\noptions timeout:1 attempts:1\n" % server)
        (d / "nsswitch.conf").write_text("hosts: files dns\n")
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)
        if made_parent:
            try:
                d.parent.rmdir()
            except OSError:
                pass


def query_a(server, port, name, timeout=2.0):
    """A records for `name` straight from server:port over UDP (no system
    resolver): sorted addresses, [] for NXDOMAIN / no data."""
    qid = os.getpid() & 0xFFFF
    q = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0)
    for label in name.rstrip(".").split("."):
        q += bytes([len(label)]) + label.encode()
    q += b"\0" + struct.pack(">HH", 1, 1)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(timeout)
    try:
        s.sendto(q, (server, port))
        data, _ = s.recvfrom(4096)
    finally:
        s.close()
    an = struct.unpack(">H", data[6:8])[0]
    p = len(q)
    out = []
    for _ in range(an):
        if data[p] & 0xC0 == 0xC0:
            p += 2
        else:
            while data[p]:
                p += data[p] + 1
            p += 1
        rtype, _, _, rdlen = struct.unpack(">HHIH", data[p:p + 10])
        p += 10
        if rtype == 1 and rdlen == 4:
            out.append(socket.inet_ntoa(data[p:p + 4]))
        p += rdlen
    return sorted(out)


def _selftest():
    with tempfile.TemporaryDirectory() as d:
        port = 15353
        with Dnsmasq(d, port=port) as dns:
            name = "replicas." + dns.zone
            dns.set_records(name, ["127.0.0.2", "127.0.0.3"])
            assert query_a("127.0.0.1", port, name) == ["127.0.0.2", "127.0.0.3"], dns.log()
            dns.set_records(name, ["127.0.0.3"])
            assert query_a("127.0.0.1", port, name) == ["127.0.0.3"], dns.log()
            assert query_a("127.0.0.1", port, "nothere." + dns.zone) == []
        print("dnsfix selftest: ok")


if __name__ == "__main__":
    import sys
    if len(sys.argv) > 1 and sys.argv[1] == "selftest":
        _selftest()
        sys.exit(0)
    print(__doc__)
    sys.exit(2)
