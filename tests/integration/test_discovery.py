"""Replica discovery by DNS in the C client: endpoint dns+tcp://NAME:PORT.

Hosts are network namespaces (netns.Topology): `dns` runs a real dnsmasq
(dnsfix.Dnsmasq, records from a hosts folder it re-reads on SIGHUP, TTL
0), d0..d2 run one cutmixd each on port 5555 (same config and data), `t`
runs the trainer, bin/cutmixd-count -v (one line per batch: index, an
FNV-1a 64 of its images, labels and metadata, the daemon that served it),
with its resolver pointed at the dnsmasq (/etc/netns/NS/resolv.conf).
Records change while an epoch streams: a replica is added, one removed,
the DNS server answers nothing, then is gone. Every check is exactly-once
delivery in order and the bytes of a run against one daemon. Needs root;
skipped with the reason elsewhere.
"""

import re
import subprocess
import tempfile
import time

import pytest

import dnsfix
import netns
from helpers import BIN, COUNT_BIN, require_binary

WHY_NOT = netns.netns_supported() or dnsfix.dnsmasq_missing()
pytestmark = pytest.mark.skipif(WHY_NOT is not None,
                                reason="discovery tests skipped: %s" % WHY_NOT)

PIPELINES = {"train": dict(batch_size=2, size=32, crop="random_resized", flip=0.5,
                           cutmix_alpha=1.0, label_smoothing=0.1)}
PORT = 5555
HOSTS = ["d0", "d1", "d2"]
NAME = "replicas.cmx.test"
LINE = re.compile(r"^batch (\d+): (\d+) images(?: \(last\))? fnv ([0-9a-f]{16}) from (\S+)$")


@pytest.fixture(scope="module")
def net():
    with netns.topology(["dns"] + HOSTS + ["t"], "cmxd") as topo:
        yield topo


@pytest.fixture(scope="module")
def daemons(net, tmp_path_factory, ds_mixed):
    require_binary(BIN)
    require_binary(COUNT_BIN)
    with netns.daemons_on(net, tmp_path_factory.mktemp("disc"), HOSTS, PORT,
                          ds_mixed.config(), PIPELINES, server={"workers": 1}) as ds:
        yield dict(zip(HOSTS, ds))


@pytest.fixture
def dns(net):
    with tempfile.TemporaryDirectory() as d, \
            dnsfix.namespace_resolver(net.ns("t"), net.addr("dns")):
        server = dnsfix.Dnsmasq(d, listen=net.addr("dns"), prefix=net.exec_prefix("dns"))
        server.start()
        try:
            yield server
        finally:
            server.stop()


def count(net, endpoint, *extra):
    """cutmixd-count -v in namespace t (a Popen, stdout line-buffered)."""
    cmd = net.exec_prefix("t") + [str(COUNT_BIN), "-e", endpoint, "-p", "train", "-v",
                                  "-E", "1", "-t", "10000", "-R", "500"] + list(extra)
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def batch_lines(out):
    got = []
    for ln in out.splitlines():
        m = LINE.match(ln)
        if m:
            got.append((int(m.group(1)), m.group(3), m.group(4)))
    return got


@pytest.fixture(scope="module")
def reference(net, daemons):
    """{batch: fnv} of epoch 1 from d0 alone."""
    p = count(net, daemons["d0"].endpoint)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 0, err
    got = batch_lines(out)
    assert [k for k, _, _ in got] == list(range(len(got))) and len(got) >= 20, out
    return {k: h for k, h, _ in got}


def ep(net, host):
    return "tcp://%s:%d" % (net.addr(host), PORT)


def requests_of(net, host):
    """The `requests` counter of the daemon on `host` (cutmixd stats)."""
    p = subprocess.run(net.exec_prefix(host) + [str(BIN), "stats", ep(net, host)],
                       capture_output=True, text=True, timeout=20)
    assert p.returncode == 0, p.stderr
    return int(re.search(r'"requests":\s*(\d+)', p.stdout).group(1))


def stream(p, timeout, on_batch):
    """Read p's stdout line by line; on_batch(k, endpoint) after each batch."""
    deadline = time.monotonic() + timeout
    lines = []
    for ln in p.stdout:
        lines.append(ln)
        m = LINE.match(ln.strip())
        if m:
            on_batch(int(m.group(1)), m.group(4))
        assert time.monotonic() < deadline, "epoch did not finish in %gs" % timeout
    p.wait(timeout=max(1, deadline - time.monotonic()))
    return "".join(lines), p.stderr.read()


def check_exactly_once(out, reference):
    got = batch_lines(out)
    ks = [k for k, _, _ in got]
    assert ks == list(range(len(reference))), "batches %s, expected each of 0..%d once" % (
        ks, len(reference) - 1)
    for k, h, src in got:
        assert h == reference[k], "batch %d from %s differs from the one-daemon run" % (k, src)
    return got


def test_replicas_added_and_removed_mid_epoch(net, daemons, dns, reference):
    dns.set_records(NAME, [net.addr("d0"), net.addr("d1")])
    dns.wait_resolves(NAME, [net.addr("d0"), net.addr("d1")], prefix=net.exec_prefix("t"))
    p = count(net, "dns+tcp://%s:%d" % (NAME, PORT), "--discovery-interval", "200",
              "--sleep-ms", "150")
    state = {"added": None, "removed": None, "d0_requests": None}

    def on_batch(k, src):
        if k == 3 and state["added"] is None:
            dns.set_records(NAME, [net.addr(h) for h in HOSTS])
            state["added"] = k
        if state["added"] is not None and state["removed"] is None and src == ep(net, "d2"):
            dns.set_records(NAME, [net.addr("d1"), net.addr("d2")])
            state["removed"] = time.monotonic()
        if (state["removed"] and state["d0_requests"] is None
                and time.monotonic() > state["removed"] + 1.5):
            state["d0_requests"] = requests_of(net, "d0")

    out, err = stream(p, 60, on_batch)
    assert p.returncode == 0, err
    got = check_exactly_once(out, reference)
    srcs = [src for _, _, src in got]
    assert state["removed"], "the added replica d2 never served a batch:\n%s" % out
    assert ep(net, "d0") in srcs and ep(net, "d1") in srcs, srcs
    assert state["d0_requests"] is not None, "epoch ended too soon after the removal"
    # Once the removal was resolved, d0 got no request from the trainer
    # (the one more is the STATS request that reads the counter).
    after = requests_of(net, "d0")
    assert after - state["d0_requests"] <= 1, "%d requests went to a removed replica" % (
        after - state["d0_requests"] - 1)
    last = max(i for i, s in enumerate(srcs) if s != ep(net, "d0"))
    assert srcs[last] in (ep(net, "d1"), ep(net, "d2"))
    assert "served %s:" % ep(net, "d2") in out, out


def test_resolution_failure_keeps_last_set(net, daemons, dns, reference):
    dns.set_records(NAME, [net.addr("d1")])
    dns.wait_resolves(NAME, [net.addr("d1")], prefix=net.exec_prefix("t"))
    p = count(net, "dns+tcp://%s:%d" % (NAME, PORT), "--discovery-interval", "200",
              "--sleep-ms", "60")
    state = {}

    def on_batch(k, src):
        if k == 4 and "nx" not in state:
            dns.set_records(NAME, [])        # NXDOMAIN: the name has no address now
            state["nx"] = True
        if k == 12 and "stopped" not in state:
            dns.stop()                       # no server at all: timeouts
            state["stopped"] = True

    out, err = stream(p, 60, on_batch)
    assert p.returncode == 0, err
    got = check_exactly_once(out, reference)
    assert state == {"nx": True, "stopped": True}
    assert {src for _, _, src in got} == {ep(net, "d1")}


def test_nothing_resolvable_is_a_clear_error(net, daemons, dns):
    p = count(net, "dns+tcp://nothere.cmx.test:%d" % PORT, "-t", "2000")
    out, err = p.communicate(timeout=30)
    assert p.returncode == 1, (out, err)
    assert "timeout" in err and "cannot resolve 'nothere.cmx.test'" in err, err
