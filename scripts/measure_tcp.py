#!/usr/bin/python3
"""TCP transport of cutmixd: what ZMQ_SNDBUF on the daemon's ROUTER, ZMQ_RCVBUF
on the client's DEALER, the client window and the batch size do to img/s and
CPU per image, on loopback and on a veth pair between two network
namespaces with netem delay and a rate limit (so the bandwidth-delay product
matters). Prints a table (and JSON with --out). docs/PERFORMANCE.md, "TCP:
socket buffers and batching".

    /usr/bin/python3 scripts/measure_tcp.py                       # generated data, all paths
    /usr/bin/python3 scripts/measure_tcp.py --paths lo --rounds 5
    /usr/bin/python3 scripts/measure_tcp.py --root /data/imagenet-sample --out build/tcp.json

How:
- One bin/cutmixd per daemon SNDBUF value ([server] tcp_sndbuf_kb), each
  with pipelines b32/b128/b256 (the --batches) of --size x --size uint8 and
  a batch cache large enough for an epoch of each: every daemon computes
  each batch once (warm-up), then answers from memory, so what is measured
  is the transport (ZeroMQ + TCP + client), not JPEG decoding.
- Per setting a fresh client process (cutmixd.Client; the RCVBUF is set as a
  default socket option of the zmq.Context handed to it) fetches the last
  2 x window batches of epoch 0 (warm-up, nothing left in flight), then
  streams whole epochs for --seconds; its own CPU time and the daemon's
  (utime+stime of /proc/PID/stat, all threads) over that interval give ms
  per image; `ss -tmi` at the end gives the kernel's real buffer sizes
  (skmem rb of the client's socket, tb of the daemon's).
- Settings are varied one at a time around the baseline (OS buffers,
  window 4, the largest batch), in --rounds interleaved rounds (each round
  runs every setting once, in a shuffled order); the table shows img/s
  median and best, CPU ms/img minimum and median.
- Paths: `lo` (127.0.0.1); `wire-DELAY-RATE` (e.g. wire-10ms-1gbit): two
  new namespaces, the daemon in one, the client in the other, joined by a
  userspace delay line (two TUN devices, MTU 65000; each direction a FIFO
  at RATE with DELAY/2 of flight, so the round trip is DELAY; --queue-ms of
  backlog before a drop), for kernels without sch_netem; `veth-DELAY-RATE`:
  the same over a veth pair with netem delay DELAY and rate RATE on the
  daemon's side (the data direction). The namespaces
  are removed at the end, also on error or Ctrl-C. net.core.rmem_max /
  wmem_max and net.ipv4.tcp_rmem / tcp_wmem are read on the host and in
  the namespaces (they cap SO_RCVBUF / SO_SNDBUF) and printed; --ns-sysctl
  sets values only inside the namespaces this script creates.

Needs root for the wire and veth paths (`ip netns add`); `lo` needs nothing.
Internal mode: --client-worker JSON.
"""

import argparse
import json
import os
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "client" / "python"))
sys.path.insert(0, str(REPO / "scripts"))

PYTHON = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
DAEMON = REPO / "bin" / "cutmixd"
TICK = os.sysconf("SC_CLK_TCK")
SYSCTLS = ["net.core.rmem_max", "net.core.wmem_max", "net.core.rmem_default",
           "net.core.wmem_default", "net.ipv4.tcp_rmem", "net.ipv4.tcp_wmem"]


def log(msg):
    print("measure_tcp: " + msg, file=sys.stderr, flush=True)


def cpu_seconds(pid):
    """utime + stime of a process (all its threads), seconds."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def parse_size(text):
    """'-1' (OS default), '256K', '4M', '1048576' -> bytes (-1 kept)."""
    t = text.strip().upper()
    if t in ("-1", "OS", "AUTO"):
        return -1
    m = re.fullmatch(r"(\d+)([KM]?)I?B?", t)
    if not m:
        raise argparse.ArgumentTypeError("size must be -1, N, NK or NM, got %r" % text)
    return int(m.group(1)) << {"": 0, "K": 10, "M": 20}[m.group(2)]


def size_name(n):
    if n < 0:
        return "OS"
    if n % (1 << 20) == 0:
        return "%dM" % (n >> 20)
    if n % 1024 == 0:
        return "%dK" % (n >> 10)
    return str(n)


def skmem(ss_text):
    """rb/tb (bytes) and rtt (ms) of the first socket in `ss -tmi` output."""
    out = {}
    m = re.search(r"skmem:\(([^)]*)\)", ss_text)
    if m:
        for part in m.group(1).split(","):
            k = re.match(r"([a-z]+)(\d+)", part)
            if k and k.group(1) in ("rb", "tb"):
                out[k.group(1)] = int(k.group(2))
    m = re.search(r"\brtt:([\d.]+)/", ss_text)
    if m:
        out["rtt_ms"] = float(m.group(1))
    return out


def run(cmd, check=True, timeout=20):
    p = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=timeout)
    if check and p.returncode != 0:
        raise RuntimeError("%s: exit %d: %s" % (" ".join(map(str, cmd)), p.returncode,
                                               p.stderr.strip()))
    return p


# -- the client process ---------------------------------------------------------------

def client_worker(spec):
    """Warm up one epoch, print 'start', stream for spec['seconds'], print
    one JSON line with the counts, CPU and the socket's ss line."""
    import zmq
    import cutmixd

    ctx = zmq.Context()
    if spec["rcvbuf"] >= 0:
        ctx.setsockopt(zmq.RCVBUF, spec["rcvbuf"])  # default for the client's DEALER
    c = cutmixd.Client(spec["endpoint"], pipeline=spec["pipeline"], window=spec["window"],
                       timeout=spec["timeout"], context=ctx, shm=False)  # TCP, not shm
    try:
        if spec["warm"] == "epoch":
            for _ in c.epoch(0):
                pass
        else:
            # the last 2 x window batches of the epoch: the connection's window
            # and buffers grow, and no request is left in flight (an abandoned
            # epoch's replies would still cross the link while measuring)
            n = c.batches_per_epoch()
            for _ in c.epoch(0, start=max(0, n - 2 * spec["window"])):
                pass
        print("start", flush=True)
        me = os.getpid()
        cpu0, t0 = cpu_seconds(me), time.monotonic()
        images = batches = 0
        while time.monotonic() - t0 < spec["seconds"]:
            for b in c.epoch(0):
                images += len(b)
                batches += 1
                if time.monotonic() - t0 >= spec["seconds"]:
                    break
        t1, cpu1 = time.monotonic(), cpu_seconds(me)
        host, port = spec["endpoint"][len("tcp://"):].rsplit(":", 1)
        ss = run(["ss", "-tmni", "dst", "%s:%s" % (host, port)], check=False).stdout
        print(json.dumps({"images": images, "batches": batches, "wall": t1 - t0,
                          "cpu": cpu1 - cpu0, "ss": skmem(ss)}), flush=True)
        sys.stdin.readline()  # connected until the parent has read the daemon's socket
    finally:
        c.close()
        ctx.term()
    return 0


# -- namespaces ------------------------------------------------------------------------

class Veth:
    """Two namespaces <prefix>d (daemon, 10.214.0.1) and <prefix>c (client,
    10.214.0.2) joined by a veth pair; netem delay/rate on the daemon's end."""

    def __init__(self, prefix, delay, rate, ns_sysctl):
        self.d, self.c = prefix + "d", prefix + "c"
        self.created = []
        try:
            self.add_namespaces(ns_sysctl)
            run(["ip", "link", "add", "eth0", "netns", self.d, "type", "veth", "peer", "name",
                 "eth0", "netns", self.c])
            for ns, addr in ((self.d, "10.214.0.1"), (self.c, "10.214.0.2")):
                run(["ip", "-n", ns, "addr", "add", addr + "/30", "dev", "eth0"])
                run(["ip", "-n", ns, "link", "set", "eth0", "up"])
            netem = ["tc", "-n", self.d, "qdisc", "add", "dev", "eth0", "root", "netem",
                     "limit", "200000"]
            if delay:
                netem += ["delay", delay]
            if rate:
                netem += ["rate", rate]
            if delay or rate:
                run(netem)
        except BaseException:
            self.destroy()
            raise
        self.addr = "10.214.0.1"

    def add_namespaces(self, ns_sysctl):
        """The two namespaces (any left over from an earlier run first
        removed), loopback up, the sysctls `ns_sysctl` set in each."""
        for ns in (self.d, self.c):
            run(["ip", "netns", "del", ns], check=False)
            run(["ip", "netns", "add", ns])
            self.created.append(ns)
            run(["ip", "-n", ns, "link", "set", "lo", "up"])
            for kv in ns_sysctl:
                run(["ip", "netns", "exec", ns, "sysctl", "-q", "-w", kv])

    def prefix(self, who):
        return ["ip", "netns", "exec", self.d if who == "daemon" else self.c]

    def sysctls(self):
        return {ns: read_sysctls(["ip", "netns", "exec", ns]) for ns in (self.d, self.c)}

    def destroy(self):
        for ns in reversed(self.created):
            run(["ip", "netns", "del", ns], check=False)
        self.created = []


# The kernel here may lack sch_netem (CONFIG_NET_SCH_NETEM): this userspace
# delay line gives the same thing, a link of RATE with a round trip of
# DELAY, between two TUN devices (MTU 65000, so a Python loop keeps up).

TUNSETIFF, IFF_TUN, IFF_NO_PI = 0x400454CA, 0x0001, 0x1000
CLONE_NEWNET = 0x40000000


def tun_open(name):
    import fcntl
    import struct
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI))
    return fd


def wire_worker(spec):
    """Run inside the daemon's namespace: tun `cmxw` there and one in
    spec['peer_ns']; forward IP packets both ways, each direction a FIFO
    of spec['rate'] bit/s (0: unlimited) then spec['delay']/2 s of flight;
    a packet arriving when the direction already holds more than
    spec['queue'] s of backlog is dropped (a router's buffer)."""
    import ctypes
    import select
    from collections import deque

    fd_d = tun_open("cmxw")
    libc = ctypes.CDLL(None, use_errno=True)
    nsfd = os.open("/run/netns/" + spec["peer_ns"], os.O_RDONLY)
    if libc.setns(nsfd, CLONE_NEWNET) != 0:
        raise OSError(ctypes.get_errno(), "setns")
    fd_c = tun_open("cmxw")
    rate, half, qmax = spec["rate"], spec["delay"] / 2, spec["queue"]
    other = {fd_d: fd_c, fd_c: fd_d}
    q = {fd_d: deque(), fd_c: deque()}   # packets read from fd, going to other[fd]
    busy = {fd_d: 0.0, fd_c: 0.0}        # when that direction's link is free
    stop = []
    signal.signal(signal.SIGTERM, lambda *x: stop.append(1))
    print("ready", flush=True)
    while not stop:
        now = time.monotonic()
        heads = [d[0][0] for d in q.values() if d]
        timeout = max(0.0, min(heads) - now) if heads else 0.2
        try:
            r, _, _ = select.select([fd_d, fd_c], [], [], timeout)
        except InterruptedError:
            continue
        now = time.monotonic()
        for fd in r:
            for _ in range(64):
                try:
                    pkt = os.read(fd, 65536)
                except BlockingIOError:
                    break
                start = max(now, busy[fd])
                if start - now > qmax:
                    continue  # dropped: the queue is full
                busy[fd] = start + (len(pkt) * 8 / rate if rate else 0)
                q[fd].append((busy[fd] + half, pkt))
        for fd, d in q.items():
            while d and d[0][0] <= now:
                try:
                    os.write(other[fd], d.popleft()[1])
                except OSError:
                    pass  # the receiving tun's queue is full, or it is not up yet: a loss
    return 0


def parse_rate(text):
    m = re.fullmatch(r"(\d+(?:\.\d+)?)([kmg])bit", text or "")
    return float(m.group(1)) * {"k": 1e3, "m": 1e6, "g": 1e9}[m.group(2)] if m else 0.0


def parse_delay(text):
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(us|ms)", text or "")
    return float(m.group(1)) * {"us": 1e-6, "ms": 1e-3}[m.group(2)] if m else 0.0


class Wire(Veth):
    """Like Veth, but the namespaces are joined by the userspace delay line
    (wire_worker, a child process) instead of veth + netem."""

    def __init__(self, prefix, delay, rate, ns_sysctl, queue_ms):
        self.d, self.c = prefix + "d", prefix + "c"
        self.created, self.proc = [], None
        try:
            self.add_namespaces(ns_sysctl)
            spec = {"peer_ns": self.c, "rate": parse_rate(rate), "delay": parse_delay(delay),
                    "queue": queue_ms / 1000.0}
            self.proc = subprocess.Popen(
                ["ip", "netns", "exec", self.d, PYTHON, str(Path(__file__).resolve()),
                 "--wire-worker", json.dumps(spec)], stdout=subprocess.PIPE,
                stdin=subprocess.DEVNULL, text=True)
            if self.proc.stdout.readline().strip() != "ready":
                raise RuntimeError("the delay line did not start")
            for ns, addr, peer in ((self.d, "10.214.0.1", "10.214.0.2"),
                                   (self.c, "10.214.0.2", "10.214.0.1")):
                run(["ip", "-n", ns, "addr", "add", addr, "peer", peer, "dev", "cmxw"])
                run(["ip", "-n", ns, "link", "set", "cmxw", "mtu", "65000", "up"])
        except BaseException:
            self.destroy()
            raise
        self.addr = "10.214.0.1"

    def destroy(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # our own child, by PID
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        Veth.destroy(self)


class Loopback:
    addr = "127.0.0.1"

    def prefix(self, who):
        return []

    def sysctls(self):
        return {}

    def destroy(self):
        pass


def read_sysctls(prefix=()):
    out = {}
    for k in SYSCTLS:
        p = run(list(prefix) + ["sysctl", "-n", k], check=False)
        out[k] = " ".join(p.stdout.split()) if p.returncode == 0 else "?"
    return out


def make_path(name, uid, ns_sysctl, queue_ms):
    if name == "lo":
        return Loopback()
    m = re.fullmatch(r"(veth|wire)(?:-(\d+(?:\.\d+)?(?:us|ms)))?(?:-(\d+[kmg]bit))?", name)
    if not m:
        raise SystemExit("measure_tcp: path must be lo, veth[-DELAY][-RATE] or "
                         "wire[-DELAY][-RATE], got %r" % name)
    if m.group(1) == "wire":
        return Wire("cmxtcp%d" % uid, m.group(2), m.group(3), ns_sysctl, queue_ms)
    return Veth("cmxtcp%d" % uid, m.group(2), m.group(3), ns_sysctl)


# -- daemons -----------------------------------------------------------------------------

def make_dataset(work, a):
    if a.root:  # the batch caches are sized by --images: the folder's JPEG count
        root = Path(a.root).resolve()
        jpegs = [p for p in root.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg")]
        a.images = len(jpegs)
        if any(p.parent == root for p in jpegs):
            # a flat folder (the ImageNet sample: WNID_name.JPEG): a manifest, class = WNID
            a.manifest = Path(work) / "root.tsv"
            a.manifest.write_text("".join("%s\t%s\n" % (p.relative_to(root),
                                                         p.name.split("_", 1)[0])
                                          for p in sorted(jpegs)))
        return root
    import gen_dataset
    data = Path(work) / "data"
    src = Path(work) / "src"
    samples = gen_dataset.make_dataset(src, classes=1, per_class=256, photo=True, seed=5)
    files = [src / x.path for x in samples]
    for n in range(a.images):  # hard links: an epoch of --images from 256 distinct JPEGs
        d = data / ("c%d" % (n % 8))
        d.mkdir(parents=True, exist_ok=True)
        os.link(files[n % len(files)], d / ("%05d.jpg" % n))
    return data


def write_config(path, data, addr, port, sndbuf, batches, a):
    epoch_mb = a.images * a.size * a.size * 3 * len(batches) / (1 << 20)
    text = ["[server]", "endpoint = tcp://%s:%d" % (addr, port), "workers = 2",
            "batch_cache_mb = %d" % int(epoch_mb * 1.5 + 64), "max_client_window = 16",
            "log_level = notice"]
    text.append("shm = off")  # TCP is measured: no shared memory with a local client
    if sndbuf >= 0:
        text.append("tcp_sndbuf_kb = %d" % max(1, sndbuf // 1024))
    text += ["", "[dataset]", "root = %s" % data]
    if getattr(a, "manifest", None):
        text.append("manifest = %s" % a.manifest)
    text.append("")
    for b in batches:
        text += ["[pipeline.b%d]" % b, "batch_size = %d" % b, "size = %d" % a.size,
                 "crop = random_resized", "flip = 0.5", ""]
    Path(path).write_text("\n".join(text))


class Daemon:
    def __init__(self, work, path, sndbuf, port, data, batches, a):
        self.sndbuf, self.port, self.batches = sndbuf, port, batches
        self.endpoint = "tcp://%s:%d" % (path.addr, port)
        cfg = Path(work) / ("d%s.ini" % size_name(sndbuf))
        write_config(cfg, data, path.addr, port, sndbuf, batches, a)
        self.log = Path(work) / ("d%s.log" % size_name(sndbuf))
        self.logf = open(self.log, "wb")
        self.proc = subprocess.Popen(path.prefix("daemon") + [str(DAEMON), "--config", str(cfg)],
                                     stdout=self.logf, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)
        self.ns_prefix = path.prefix("daemon")
        deadline = time.monotonic() + a.timeout
        while "ready:" not in self.log.read_text(errors="replace"):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("cutmixd (sndbuf %s) did not start:\n%s"
                                   % (size_name(sndbuf), self.log.read_text(errors="replace")))
            time.sleep(0.05)

    def ss(self):
        p = run(self.ns_prefix + ["ss", "-tmni", "src", ":%d" % self.port], check=False)
        return skmem(p.stdout)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # our own child, by PID
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.logf.close()


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


# -- one measurement ----------------------------------------------------------------------

def measure(path, daemon, setting, a, warm="few"):
    spec = {"endpoint": daemon.endpoint, "pipeline": "b%d" % setting["batch"],
            "window": setting["window"], "rcvbuf": setting["rcvbuf"], "seconds": a.seconds,
            "timeout": a.timeout, "warm": warm}
    cmd = path.prefix("client") + [PYTHON, str(Path(__file__).resolve()), "--client-worker",
                                   json.dumps(spec)]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         stdin=subprocess.PIPE, text=True)
    try:
        deadline = a.timeout * 2 + a.seconds
        d0 = None
        t_end = time.monotonic() + deadline
        line = ""
        while time.monotonic() < t_end:
            line = p.stdout.readline()
            if not line:
                break
            if line.strip() == "start":
                d0 = cpu_seconds(daemon.proc.pid)
            elif line.startswith("{"):
                d1 = cpu_seconds(daemon.proc.pid)
                r = json.loads(line)
                r["daemon_cpu"] = d1 - d0
                r["daemon_ss"] = daemon.ss()
                p.stdin.write("bye\n")
                p.stdin.close()
                p.wait(a.timeout)
                return r
        raise RuntimeError("client failed (%s): %s" % (line.strip(), p.stderr.read()[-2000:]))
    finally:
        if p.poll() is None:
            p.kill()  # our own child, by PID
            p.wait()


def settings_of(a):
    """One factor at a time around the baseline; each setting once."""
    base = {"sndbuf": -1, "rcvbuf": -1, "window": 4, "batch": max(a.batches)}
    out = [dict(base)]

    def add(**kv):
        s = dict(base, **kv)
        if s not in out:
            out.append(s)
    for v in a.bufs:
        add(sndbuf=v)
        add(rcvbuf=v)
        add(sndbuf=v, rcvbuf=v)
    for w in a.windows:
        add(window=w)
    for b in a.batches:
        add(batch=b)
        add(batch=b, window=1)
    return out


def summarize(rows):
    ips = [r["images"] / r["wall"] for r in rows]
    dms = [1000 * r["daemon_cpu"] / r["images"] for r in rows]
    cms = [1000 * r["cpu"] / r["images"] for r in rows]
    last = rows[-1]
    return {"img_s_median": statistics.median(ips), "img_s_best": max(ips),
            "daemon_ms_min": min(dms), "daemon_ms_median": statistics.median(dms),
            "client_ms_min": min(cms), "client_ms_median": statistics.median(cms),
            "client_rb": last["ss"].get("rb"), "daemon_tb": last["daemon_ss"].get("tb"),
            "rtt_ms": last["ss"].get("rtt_ms"), "rounds": len(rows)}


def run_path(name, work, data, a, uid):
    path = make_path(name, uid, a.ns_sysctl, a.queue_ms)
    daemons = {}
    try:
        sysctls = path.sysctls()
        for ns, vals in sysctls.items():
            log("%s: %s: %s" % (name, ns, vals))
        sets = settings_of(a)
        for sb in sorted({s["sndbuf"] for s in sets}):
            # only the pipelines some setting uses: each one's epoch stays in memory
            bs = sorted({s["batch"] for s in sets if s["sndbuf"] == sb})
            daemons[sb] = Daemon(work, path, sb, free_port(), data, bs, a)
            for b in bs:  # every batch computed once, before anything is measured
                measure(path, daemons[sb], {"batch": b, "window": 4, "rcvbuf": -1}, a,
                        warm="epoch")
        results = {i: [] for i in range(len(sets))}
        rng = random.Random(a.seed)
        for rnd in range(a.rounds):
            order = list(range(len(sets)))
            rng.shuffle(order)
            for i in order:
                s = sets[i]
                r = measure(path, daemons[s["sndbuf"]], s, a)
                results[i].append(r)
                log("%s round %d: %s -> %.0f img/s" % (name, rnd + 1, fmt_setting(s),
                                                        r["images"] / r["wall"]))
        return {"path": name, "sysctls_in_namespaces": sysctls,
                "settings": [dict(s, **summarize(results[i])) for i, s in enumerate(sets)]}
    finally:
        for d in daemons.values():
            d.stop()
        path.destroy()


def fmt_setting(s):
    return "sndbuf %s rcvbuf %s window %d batch %d" % (size_name(s["sndbuf"]),
                                                       size_name(s["rcvbuf"]), s["window"],
                                                       s["batch"])


def print_table(res, img_bytes):
    print("\n### %s\n" % res["path"])
    print("| daemon SNDBUF | client RCVBUF | window | batch | img/s median (best) | Gbit/s | "
          "daemon CPU ms/img min (median) | client CPU ms/img min (median) | "
          "kernel rb / tb | rtt ms |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for s in res["settings"]:
        rb = "%s / %s" % (size_name(s["client_rb"]) if s["client_rb"] else "?",
                          size_name(s["daemon_tb"]) if s["daemon_tb"] else "?")
        print("| %s | %s | %d | %d | %.0f (%.0f) | %.2f | %.3f (%.3f) | %.3f (%.3f) | %s | %s |" % (
            size_name(s["sndbuf"]), size_name(s["rcvbuf"]), s["window"], s["batch"],
            s["img_s_median"], s["img_s_best"], s["img_s_median"] * img_bytes * 8 / 1e9,
            s["daemon_ms_min"], s["daemon_ms_median"], s["client_ms_min"],
            s["client_ms_median"], rb, s["rtt_ms"]))


class _Help(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    pass


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\nInternal mode")[0],
                                 formatter_class=_Help)
    ap.add_argument("--paths", default="lo,wire-1ms-10gbit,wire-10ms-1gbit,wire-10ms-10gbit",
                    help="comma-separated: lo, veth[-DELAY][-RATE] (netem)")
    ap.add_argument("--bufs", default="256K,1M,4M,16M",
                    help="SNDBUF/RCVBUF sizes tried besides the OS default (-1)")
    ap.add_argument("--windows", default="1,2,4,8", help="client windows tried")
    ap.add_argument("--batches", default="32,128,256", help="batch sizes tried")
    ap.add_argument("--size", type=int, default=224, help="output images SIZE x SIZE x 3 uint8")
    ap.add_argument("--images", type=int, default=1024,
                    help="images per epoch of the generated dataset")
    ap.add_argument("--root", help="a folder of class folders of JPEGs instead of generated "
                    "data (the whole folder is an epoch; --images is then its JPEG count)")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds")
    ap.add_argument("--seconds", type=float, default=2.0, help="measured seconds per setting")
    ap.add_argument("--timeout", type=float, default=120.0, help="limit of each wait (s)")
    ap.add_argument("--ns-sysctl", action="append", default=[], metavar="KEY=VALUE",
                    help="sysctl set inside the new namespaces only (repeatable), e.g. "
                    "net.core.rmem_max=67108864")
    ap.add_argument("--seed", type=int, default=1, help="order of the settings in a round")
    ap.add_argument("--out", help="also write the results as JSON here")
    ap.add_argument("--queue-ms", type=float, default=20.0,
                    help="wire paths: a direction's buffer, in ms at its rate (more: dropped)")
    ap.add_argument("--client-worker", help=argparse.SUPPRESS)
    ap.add_argument("--wire-worker", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.client_worker:
        return client_worker(json.loads(a.client_worker))
    if a.wire_worker:
        return wire_worker(json.loads(a.wire_worker))
    a.bufs = [parse_size(x) for x in a.bufs.split(",") if x]
    a.windows = [int(x) for x in a.windows.split(",") if x]
    a.batches = [int(x) for x in a.batches.split(",") if x]
    if not DAEMON.exists():
        raise SystemExit("measure_tcp: %s missing: run make" % DAEMON)
    work = tempfile.mkdtemp(prefix="measure_tcp.")
    out = {"host_sysctls": read_sysctls(), "args": {k: v for k, v in vars(a).items()
                                                    if k not in ("client_worker", "wire_worker")},
           "kernel": os.uname().release, "cpus": os.cpu_count(), "paths": []}
    log("host: %s" % out["host_sysctls"])
    # SIGTERM ends like Ctrl-C: the finally blocks stop the daemons and remove the namespaces
    signal.signal(signal.SIGTERM, lambda *x: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        data = make_dataset(work, a)
        for k, name in enumerate(p for p in a.paths.split(",") if p):
            out["paths"].append(run_path(name, work, data, a, os.getpid() * 10 + k))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    img_bytes = a.size * a.size * 3
    for res in out["paths"]:
        print_table(res, img_bytes)
    if a.out:
        Path(a.out).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
