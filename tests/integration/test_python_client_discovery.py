"""dns+tcp://NAME:PORT in the Python client (issue 10 item 2): every A/AAAA
record of NAME is a daemon, re-resolved every discovery_interval. Real
daemons on 127.0.0.x (one port, several loopback addresses, like replicas
behind one DNS name); the name's records come from an injected resolver
the test changes mid-epoch (getaddrinfo cannot be pointed at a test DNS
server outside a network namespace: the end-to-end run with a real dnsmasq
is in test_python_client_discovery_netns.py). Checks: exactly-once, bytes
of a single-daemon run, vanished replicas get no new request, a failed
resolution keeps the last set (logged once), no address -> a clear error."""

import logging
import socket
import time

import pytest

import cutmixd
from helpers import Daemon, free_port
from netns import batch_key

PIPELINES = {"train": dict(batch_size=2, size=32, crop="random_resized", flip=0.5,
                           cutout_size=8, cutmix_alpha=1.0, mixup_alpha=0.2)}
NAME = "replicas.cmx.test"


class Records:
    """The resolver the client is given: NAME -> the current list (or an
    exception to raise); counts calls."""

    def __init__(self, addrs):
        self.addrs = list(addrs)
        self.fail = None
        self.calls = 0

    def __call__(self, name, port):
        self.calls += 1
        assert name == NAME
        if self.fail is not None:
            raise self.fail
        return list(self.addrs)


@pytest.fixture(scope="module")
def replicas(tmp_path_factory, ds_mixed):
    port = free_port()
    ds = []
    try:
        for i in (2, 3, 4):
            d = Daemon(tmp_path_factory.mktemp("r%d" % i), ds_mixed.config(), PIPELINES,
                       server={"endpoint": "tcp://127.0.0.%d:%d" % (i, port), "workers": 1},
                       name="r%d" % i)
            ds.append(d.start())
        yield port, ds
    finally:
        for d in ds:
            d.stop(check=False)


@pytest.fixture(scope="module")
def reference(replicas):
    port, ds = replicas
    with cutmixd.Client(ds[0].server["endpoint"], timeout=20) as c:
        return [batch_key(b) for b in c.epoch(2)]


def test_bad_discovery_endpoints():
    for bad in ("dns+tcp://replicas", "dns+tcp://:5555", "dns+tcp://a:0", "dns+tcp://a:99999",
                "dns+tcp://a:55/x"):
        with pytest.raises(ValueError, match="expected dns\\+tcp://NAME:PORT"):
            cutmixd.Client(bad)
    with pytest.raises(ValueError, match="discovery_interval must be > 0"):
        cutmixd.Client("dns+tcp://a:5", discovery_interval=0)


def r2_requests(port):
    with cutmixd.Client("tcp://127.0.0.2:%d" % port, timeout=10) as s:
        return s.stats()["requests"]


def test_records_change_mid_epoch(replicas, reference):
    port, _ = replicas
    rec = Records(["127.0.0.2", "127.0.0.3"])
    got = []
    with cutmixd.Client("dns+tcp://%s:%d" % (NAME, port), timeout=20, resend_timeout=1.0,
                        discovery_interval=0.1, resolver=rec) as c:
        ep = {i: "tcp://127.0.0.%d:%d" % (i, port) for i in (2, 3, 4)}
        assert sorted(p["endpoint"] for p in c.peers()) == [ep[2], ep[3]]
        for b in c.epoch(2):
            got.append((batch_key(b), b.endpoint))
            if len(got) == 6:
                rec.addrs = ["127.0.0.3", "127.0.0.4"]
                time.sleep(0.15)
                r2_before = r2_requests(port)
            if len(got) == 7:
                asked_2 = {p["endpoint"]: p["requests"] for p in c.peers()}.get(ep[2])
        peers = {p["endpoint"]: p for p in c.peers()}
    assert [k for k, _ in got] == reference            # exactly once, same bytes, in order
    assert any(e == ep[4] for _, e in got[7:])         # the new replica is used
    assert ep[2] not in peers or peers[ep[2]]["requests"] == asked_2  # vanished: no new
    assert r2_requests(port) - r2_before <= 1  # ... (the daemon's count; 1: the STATS)
    assert rec.calls >= 2


def test_failed_resolution_keeps_last_set(replicas, reference, caplog):
    port, _ = replicas
    rec = Records(["127.0.0.2"])
    caplog.set_level(logging.WARNING, logger="cutmixd")
    keys = []
    with cutmixd.Client("dns+tcp://%s:%d" % (NAME, port), timeout=20,
                        discovery_interval=0.05, resolver=rec) as c:
        rec.fail = socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")
        for b in c.epoch(2):
            keys.append(batch_key(b))
            time.sleep(0.02)
        assert [p["endpoint"] for p in c.peers()] == ["tcp://127.0.0.2:%d" % port]
    assert keys == reference
    msgs = [r.getMessage() for r in caplog.records if "cannot resolve" in r.getMessage()]
    assert len(msgs) == 1 and NAME in msgs[0] and "keeping the last 1 address" in msgs[0]
    assert rec.calls > 3


def test_no_address_is_a_clear_error():
    rec = Records([])
    t0 = time.monotonic()
    with cutmixd.Client("dns+tcp://%s:5555" % NAME, timeout=1.0, resolver=rec) as c:
        with pytest.raises(cutmixd.TimeoutError, match="dns\\+tcp://%s:5555 -> no address"
                           % NAME.replace(".", "\\.")):
            c.info()
    assert time.monotonic() - t0 < 4.0
    assert rec.calls >= 2  # retried while empty
    rec.fail = socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    with cutmixd.Client("dns+tcp://%s:5555" % NAME, timeout=0.5, resolver=rec) as c:
        with pytest.raises(cutmixd.TimeoutError, match="cannot resolve .*Name or service"):
            c.info()


def test_replica_appears_later(replicas, reference):
    port, _ = replicas
    rec = Records([])
    with cutmixd.Client("dns+tcp://%s:%d" % (NAME, port), timeout=20,
                        discovery_interval=0.1, resolver=rec) as c:
        rec.addrs = ["127.0.0.4"]
        assert [batch_key(b) for b in c.epoch(2)] == reference


def test_real_getaddrinfo_localhost(replicas, tmp_path, ds_mixed):
    """The default resolver: localhost (127.0.0.1, and ::1 where /etc/hosts
    has it: a replica that refuses connections is simply not used)."""
    port = free_port()
    with Daemon(tmp_path, ds_mixed.config(), PIPELINES,
                server={"endpoint": "tcp://127.0.0.1:%d" % port, "workers": 1}) as d:
        with cutmixd.Client("dns+tcp://localhost:%d" % port, timeout=20) as c:
            eps = [p["endpoint"] for p in c.peers()]
            assert "tcp://127.0.0.1:%d" % port in eps
            assert len(list(c.epoch(0))) == c.batches_per_epoch()
        assert d.alive()
