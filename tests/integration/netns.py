"""Helpers of the multi-daemon tests (test_multi.py, test_netns.py).

- batch_key(): what "the same batch" means: sha256 of a batch's raw frames
  minus the request_id (header bytes 16..23), the only bytes that differ
  between two daemons with the same config (PROTOCOL.md section 12).
- Trainer: a client in a subprocess (optionally inside a network
  namespace) that prints one JSON line per batch, so a test can watch its
  progress, act on a daemon or a link at a given batch, SIGKILL it, and
  resume it with start=k. `python3 netns.py trainer --help`.
- Topology: network namespaces joined by veth pairs to a bridge in a
  namespace of its own, private addresses (10.213.0.0/24) only inside the
  namespaces; NetnsDaemon runs bin/cutmixd inside one of them.

Nothing here talks to anything outside 127.0.0.0/8, ipc:// and the
namespaces it creates.
"""

import argparse
import contextlib
import hashlib
import json
import os
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
for _p in (REPO / "client" / "python", HERE):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

PYTHON = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable


def batch_key(b):
    """sha256 (hex) of a Batch's frames without the request_id bytes."""
    h = hashlib.sha256()
    head = bytes(b.raw_frames[0])
    h.update(head[:16])
    h.update(head[24:])
    for f in b.raw_frames[1:]:
        h.update(f)
    return h.hexdigest()


# -- the trainer subprocess ---------------------------------------------------------

def trainer_main(argv):
    ap = argparse.ArgumentParser(prog="netns.py trainer",
                                 description="stream epochs, one JSON line per batch")
    ap.add_argument("--endpoints", required=True, help="comma-separated")
    ap.add_argument("--pipeline", default="train")
    ap.add_argument("--epochs", default="0", help="comma-separated epochs, in order")
    ap.add_argument("--start", type=int, default=0, help="first batch of the first epoch")
    ap.add_argument("--rank", type=int, default=0)
    ap.add_argument("--world", type=int, default=1)
    ap.add_argument("--window", type=int, default=None)
    ap.add_argument("--timeout", type=float, default=20.0)
    ap.add_argument("--resend-timeout", type=float, default=1.0)
    ap.add_argument("--sleep", type=float, default=0.0, help="seconds per batch (a slow trainer)")
    ap.add_argument("--digest", default=None)
    ap.add_argument("--stop-file", default=None,
                    help="after each epoch: stop if this file exists, else go on with the "
                         "next epoch number (up to --max-epochs epochs in all)")
    ap.add_argument("--max-epochs", type=int, default=20)
    a = ap.parse_args(argv)

    import cutmixd

    def out(obj):
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()

    epochs = [int(e) for e in a.epochs.split(",")]
    c = cutmixd.Client(a.endpoints.split(","), pipeline=a.pipeline, rank=a.rank,
                       world=a.world, window=a.window, timeout=a.timeout,
                       resend_timeout=a.resend_timeout, digest=a.digest)
    t0 = time.monotonic()
    try:
        n = c.batches_per_epoch()
        out({"start": True, "batches_per_epoch": n, "digest": c.digest})
        start = a.start
        i = 0
        while i < len(epochs) or (a.stop_file and i < a.max_epochs):
            e = epochs[i] if i < len(epochs) else epochs[-1] + (i - len(epochs) + 1)
            for b in c.epoch(e, start=start):
                out({"e": e, "k": b.index, "key": batch_key(b), "ep": b.endpoint,
                     "t": time.monotonic() - t0, "n": len(b),
                     "idx": [int(x) for x in b.meta["index"]],
                     "pad": [int(x) for x in b.meta["pad"]]})
                if a.sleep:
                    time.sleep(a.sleep)
            out({"epoch_done": e, "t": time.monotonic() - t0})
            start = 0
            i += 1
            if a.stop_file and i >= len(epochs) and os.path.exists(a.stop_file):
                break
        out({"done": True, "t": time.monotonic() - t0, "peers": c.peers(),
             "dropped": c.dropped})
        return 0
    except cutmixd.Error as exc:
        out({"error": type(exc).__name__, "msg": str(exc),
             "endpoint": getattr(exc, "endpoint", None), "t": time.monotonic() - t0,
             "peers": c.peers()})
        return 3
    finally:
        c.close()


class Trainer:
    """A trainer subprocess (netns.py trainer ...), optionally run through a
    command prefix such as ["ip", "netns", "exec", NS]. Lines are read as
    they come; every parsed line is kept in .lines."""

    def __init__(self, endpoints, prefix=(), **opts):
        cmd = list(prefix) + [PYTHON, str(Path(__file__).resolve()), "trainer",
                              "--endpoints", ",".join(endpoints)]
        for k, v in opts.items():
            if v is None:
                continue
            cmd += ["--" + k.replace("_", "-"), ",".join(map(str, v))
                    if isinstance(v, (list, tuple)) else str(v)]
        self.cmd = cmd
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     stdin=subprocess.DEVNULL)
        self.lines = []
        self._buf = b""

    def _read_some(self, timeout):
        r, _, _ = select.select([self.proc.stdout], [], [], max(0.0, timeout))
        if not r:
            return False
        chunk = os.read(self.proc.stdout.fileno(), 65536)
        if not chunk:
            return None  # EOF
        self._buf += chunk
        while b"\n" in self._buf:
            line, self._buf = self._buf.split(b"\n", 1)
            if line.strip():
                self.lines.append(json.loads(line))
        return True

    def next_line(self, timeout):
        """The next parsed line, or None on EOF / after `timeout` seconds."""
        if not hasattr(self, "_pos"):
            self._pos = 0
        deadline = time.monotonic() + timeout
        while self._pos >= len(self.lines):
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            if self._read_some(left) is None and self._pos >= len(self.lines):
                return None
        self._pos += 1
        return self.lines[self._pos - 1]

    def wait_batches(self, count, timeout):
        """Read until `count` batch lines have been seen; those lines."""
        deadline = time.monotonic() + timeout
        while len(self.batches()) < count:
            line = self.next_line(deadline - time.monotonic())
            if line is None:
                raise AssertionError("trainer: %d of %d batches within %gs\n%s"
                                     % (len(self.batches()), count, timeout, self.report()))
            if "error" in line:
                raise AssertionError("trainer failed: %s" % line)
        return self.batches()[:count]

    def batches(self):
        return [ln for ln in self.lines if "key" in ln]

    def finish(self, timeout):
        """Read to the end; the exit status (the process is killed if it
        takes longer than `timeout`)."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                self.kill()
                raise AssertionError("trainer did not finish within %gs\n%s"
                                     % (timeout, self.report()))
            if self._read_some(left) is None:
                break
        try:
            return self.proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError("trainer did not exit within %gs" % timeout)

    def result(self):
        for ln in self.lines:
            if "done" in ln or "error" in ln:
                return ln
        return None

    def kill(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            pass

    def stderr(self):
        try:
            if self.proc.poll() is not None:
                return self.proc.stderr.read().decode(errors="replace")[-3000:]
        except (OSError, ValueError):
            pass
        return ""

    def report(self):
        return "command: %s\nlast lines: %s\nstderr: %s" % (
            " ".join(self.cmd), self.lines[-3:], self.stderr())

    def close(self):
        self.kill()
        for f in (self.proc.stdout, self.proc.stderr):
            try:
                f.close()
            except Exception:
                pass


def check_epoch(lines, epoch, reference, start=0):
    """The batch lines of `epoch` are start..n-1 exactly once, in order, and
    their keys equal the reference run's."""
    got = [ln for ln in lines if ln.get("e") == epoch]
    ks = [ln["k"] for ln in got]
    assert ks == list(range(start, len(reference))), (
        "epoch %d: batches %s, expected %d..%d exactly once in order"
        % (epoch, ks, start, len(reference) - 1))
    for ln in got:
        assert ln["key"] == reference[ln["k"]], (
            "epoch %d batch %d (from %s) differs from the single-daemon run"
            % (epoch, ln["k"], ln["ep"]))
    return got


# -- a tiny fake daemon (client tests without bin/cutmixd) ---------------------------

def TinyFake(endpoint, n_batches=6, B=2, H=2, W=3, K=3, digest=bytes(range(32)),
             curve_secret=None):
    """fakes.FakeDaemon answering each request at once, pixels all
    epoch*16 + batch, optionally a CURVE server (``curve_secret``, Z85);
    ``requests`` lists what it received, ``batches`` counts batch replies."""
    from fakes import FakeDaemon
    return FakeDaemon(endpoint, n_batches=n_batches, B=B, H=H, W=W, K=K, digest=digest,
                      curve_secret=curve_secret, reorder=False, mark=False, max_window=16)


# -- network namespaces -------------------------------------------------------------

def run(*cmd, check=True):
    p = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=20)
    if check and p.returncode != 0:
        raise RuntimeError("%s: exit %d: %s" % (" ".join(map(str, cmd)), p.returncode,
                                               p.stderr.strip()))
    return p


def netns_supported():
    """None if this process may create network namespaces with veth pairs
    and a bridge, else the reason why not."""
    if os.geteuid() != 0:
        return "not root (creating network namespaces needs CAP_SYS_ADMIN and CAP_NET_ADMIN)"
    name = "cmxprobe%d" % os.getpid()
    try:
        p = run("ip", "netns", "add", name, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return "cannot run `ip`: %s" % exc
    if p.returncode != 0:
        return "`ip netns add` is not permitted here: %s" % p.stderr.strip()
    try:
        p = run("ip", "-n", name, "link", "add", "cmxpa", "type", "veth", "peer", "name",
                "cmxpb", check=False)
        if p.returncode != 0:
            return "cannot create a veth pair: %s" % p.stderr.strip()
        p = run("ip", "-n", name, "link", "add", "cmxbr", "type", "bridge", check=False)
        if p.returncode != 0:
            return "cannot create a bridge: %s" % p.stderr.strip()
    finally:
        run("ip", "netns", "del", name, check=False)
    return None


class Topology:
    """Hosts (network namespaces) on one Ethernet segment: each host has a
    veth `eth0` whose peer `p<i>` is a port of bridge br0 in namespace
    `<prefix>br`. Host i has address 10.213.0.(i+1)."""

    SUBNET = "10.213.0"

    def __init__(self, names, prefix=None):
        self.prefix = prefix or "cmx%d" % os.getpid()
        self.bridge_ns = self.prefix + "br"
        self.hosts = {}      # name -> (namespace, address, bridge port)
        self._created = []
        try:
            self._create(names)
        except BaseException:
            self.destroy()
            raise

    def _ns_add(self, ns):
        run("ip", "netns", "del", ns, check=False)  # a leftover of a killed run
        run("ip", "netns", "add", ns)
        self._created.append(ns)
        run("ip", "-n", ns, "link", "set", "lo", "up")

    def _create(self, names):
        self._ns_add(self.bridge_ns)
        run("ip", "-n", self.bridge_ns, "link", "add", "br0", "type", "bridge")
        run("ip", "-n", self.bridge_ns, "link", "set", "br0", "up")
        for i, name in enumerate(names):
            ns = "%s%s" % (self.prefix, name)
            self._ns_add(ns)
            port = "p%d" % i
            run("ip", "link", "add", "eth0", "netns", ns, "type", "veth", "peer", "name", port,
                "netns", self.bridge_ns)
            addr = "%s.%d" % (self.SUBNET, i + 1)
            run("ip", "-n", ns, "addr", "add", addr + "/24", "dev", "eth0")
            run("ip", "-n", ns, "link", "set", "eth0", "up")
            run("ip", "-n", self.bridge_ns, "link", "set", port, "master", "br0")
            run("ip", "-n", self.bridge_ns, "link", "set", port, "up")
            self.hosts[name] = (ns, addr, port)

    def ns(self, host):
        return self.hosts[host][0]

    def addr(self, host):
        return self.hosts[host][1]

    def exec_prefix(self, host):
        return ["ip", "netns", "exec", self.ns(host)]

    def link(self, host, up):
        """Take the host's bridge port down or up (its own interface stays
        up: the host sees nothing, its packets are lost on the way)."""
        run("ip", "-n", self.bridge_ns, "link", "set", self.hosts[host][2],
            "up" if up else "down")

    def destroy(self):
        for ns in reversed(self._created):
            run("ip", "netns", "del", ns, check=False)
        self._created = []


def clean_leftovers(tag):
    """Namespaces named <tag><pid>... of an earlier run that was killed
    before its teardown (their process is gone)."""
    p = run("ip", "netns", "list", check=False)
    for line in p.stdout.splitlines():
        m = re.match(r"(%s(\d+)\w*)" % re.escape(tag), line.strip())
        if m and not os.path.exists("/proc/%s" % m.group(2)):
            run("ip", "netns", "del", m.group(1), check=False)


@contextlib.contextmanager
def topology(names, tag):
    """A Topology of `names` with prefix <tag><this pid>, leftovers of a
    killed run with the same tag removed first; destroyed on exit."""
    clean_leftovers(tag)
    topo = Topology(names, prefix="%s%d" % (tag, os.getpid()))
    try:
        yield topo
    finally:
        topo.destroy()


@contextlib.contextmanager
def daemons_on(topo, base, hosts, port, dataset, pipelines, server=None):
    """One started NetnsDaemon per host (workdir base/<host>, TCP `port`),
    as a list in `hosts` order; all stopped on exit."""
    NetnsDaemon = netns_daemon_class()
    ds = []
    try:
        for h in hosts:
            ds.append(NetnsDaemon(base / h, topo, h, port, dataset, pipelines,
                                  server=server, name=h).start())
        yield ds
    finally:
        for d in ds:
            d.stop(check=False)


def netns_daemon_class():
    """helpers.Daemon running inside a namespace on TCP (imported lazily:
    helpers needs pytest)."""
    import helpers

    class NetnsDaemon(helpers.Daemon):
        def __init__(self, workdir, topo, host, port, dataset, pipelines, server=None,
                     name="cutmixd"):
            self.topo, self.host, self.port = topo, host, port
            ep = "tcp://%s:%d" % (topo.addr(host), port)
            srv = dict(server or {})
            srv["endpoint"] = ep
            super().__init__(workdir, dataset, pipelines, server=srv, name=name)
            self.endpoint = ep

        def command(self):
            return self.topo.exec_prefix(self.host) + super().command()

    return NetnsDaemon


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "trainer":
        sys.exit(trainer_main(sys.argv[2:]))
    print("usage: netns.py trainer --endpoints E1,E2 [...]", file=sys.stderr)
    sys.exit(2)
