"""dns+tcp:// end to end: daemons in network namespaces d0, d1, d2 (TCP on
10.213.0.x:5555), a real dnsmasq (dnsfix.Dnsmasq) on 127.0.0.1:53 inside
the trainer's namespace t, whose resolver (/etc/netns/NS/resolv.conf,
bind-mounted by `ip netns exec`) points at it. The trainer resolves with
the system's getaddrinfo; the name's records change mid-epoch: every batch
still arrives exactly once with the bytes of a single-daemon run, and the
new replica serves. Root only (skipped with the reason elsewhere)."""

import json
import os
import subprocess
import time

import pytest

import dnsfix
import netns

WHY_NOT = netns.netns_supported() or dnsfix.dnsmasq_missing()
pytestmark = pytest.mark.skipif(WHY_NOT is not None, reason="skipped: %s" % WHY_NOT)

PIPELINES = {"train": dict(batch_size=2, size=32, crop="random_resized", flip=0.5,
                           cutout_size=8, cutmix_alpha=1.0, mixup_alpha=0.2)}
PORT = 5555
HOSTS = ["d0", "d1", "d2"]
NAME = "replicas.cmx.test"

TRAINER = r"""
import json, sys, time
sys.path[:0] = sys.argv[1:3]
import cutmixd
from netns import batch_key
c = cutmixd.Client(sys.argv[3], timeout=20, resend_timeout=0.5, discovery_interval=0.2)
print(json.dumps({"peers": [p["endpoint"] for p in c.peers()]}), flush=True)
for b in c.epoch(1):
    print(json.dumps({"key": batch_key(b), "ep": b.endpoint, "i": b.index}), flush=True)
    time.sleep(float(sys.argv[4]))
print(json.dumps({"done": True, "peers": c.peers()}), flush=True)
"""


@pytest.fixture(scope="module")
def net():
    with netns.topology(HOSTS + ["t"], "cmxq") as topo:
        yield topo


@pytest.fixture(scope="module")
def daemons(net, tmp_path_factory, ds_mixed):
    with netns.daemons_on(net, tmp_path_factory.mktemp("dnsnet"), HOSTS, PORT,
                          ds_mixed.config(), PIPELINES, server={"workers": 1}) as ds:
        yield ds


@pytest.fixture
def dns(net, tmp_path):
    with dnsfix.namespace_resolver(net.ns("t"), "127.0.0.1"):
        with dnsfix.Dnsmasq(tmp_path / "dns", port=53, prefix=net.exec_prefix("t")) as d:
            yield d


def trainer(net, tmp_path, endpoint, sleep):
    script = tmp_path / "trainer.py"
    script.write_text(TRAINER)
    here = os.path.dirname(os.path.abspath(__file__))
    return subprocess.Popen(net.exec_prefix("t") + [
        "/usr/bin/python3", str(script), os.path.join(here, "..", "..", "client", "python"),
        here, endpoint, str(sleep)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def lines_of(p, timeout=60):
    out, err = p.communicate(timeout=timeout)
    assert p.returncode == 0, err[-3000:]
    return [json.loads(x) for x in out.splitlines()]


def test_dnsmasq_records_change_mid_epoch(net, daemons, dns, tmp_path):
    addr = {h: net.addr(h) for h in HOSTS}
    ref = [x["key"] for x in lines_of(trainer(net, tmp_path, "tcp://%s:%d" % (addr["d0"], PORT),
                                              0)) if "key" in x]
    assert len(ref) > 12
    dns.set_records(NAME, [addr["d0"], addr["d1"]])
    dns.wait_resolves(NAME, [addr["d0"], addr["d1"]], prefix=net.exec_prefix("t"))
    p = trainer(net, tmp_path, "dns+tcp://%s:%d" % (NAME, PORT), 0.05)
    try:
        first = json.loads(p.stdout.readline())
        assert sorted(first["peers"]) == sorted("tcp://%s:%d" % (addr[h], PORT)
                                                for h in ("d0", "d1"))
        got = []
        deadline = time.monotonic() + 60
        while len(got) < 5 and time.monotonic() < deadline:
            got.append(json.loads(p.stdout.readline()))
        dns.set_records(NAME, [addr["d1"], addr["d2"]])
        changed_at = len(got)
        rest = lines_of(p)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    got += [x for x in rest if "key" in x]
    done = [x for x in rest if x.get("done")]
    assert [x["key"] for x in got] == ref               # exactly once, same bytes
    assert [x["i"] for x in got] == list(range(len(ref)))
    d2 = "tcp://%s:%d" % (addr["d2"], PORT)
    assert any(x["ep"] == d2 for x in got[changed_at:]), "the new replica never served"
    peers = {q["endpoint"]: q for q in done[0]["peers"]}
    d0 = "tcp://%s:%d" % (addr["d0"], PORT)
    assert d0 not in peers or peers[d0]["state"] == "gone from DNS"
