"""Several daemons, one trainer, on this host (ipc:// and 127.0.0.1):
fan-in, exactly-once delivery with the bytes of a single-daemon run, a
daemon killed or restarted mid-epoch, no daemon at all, a daemon with
another config, a trainer killed and resumed, data-parallel shards.

"The same bytes" is netns.batch_key: sha256 of every frame of a batch
except the request_id (header bytes 16..23). Every test is bounded in time
(client timeouts of a few seconds) and in requests (checked from the
client's per-daemon counters)."""

import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

import cutmixd
from helpers import BIN, COUNT_BIN, Daemon, free_port, require_binary, short_socket_dir
from netns import Trainer, TinyFake, batch_key, check_epoch

PIPELINES = {
    "train": dict(batch_size=2, size=32, crop="random_resized", flip=0.5, cutout_size=8,
                  cutmix_alpha=1.0, mixup_alpha=0.2, label_smoothing=0.1),
}
SERVER = {"workers": 1}
RESEND = 0.5   # the tests' resend_timeout (default 3 s): quick failover


def start_daemons(base, ds, names, server=None):
    out = []
    for name in names:
        srv = dict(SERVER, **(server or {}))
        out.append(Daemon(base / name, ds.config(), PIPELINES, server=srv, name=name).start())
    return out


def stop_all(daemons):
    for d in daemons:
        d.stop(check=False)


def wait_connected(c, timeout=5.0):
    """Every endpoint of the client has a connection (so the first requests
    spread over all of them)."""
    deadline = time.monotonic() + timeout
    while True:
        c._pump(time.monotonic() + 0.02)
        states = [p["state"] for p in c.peers()]
        if all(s == "up" for s in states):
            return
        assert time.monotonic() < deadline, "not all connected: %s" % c.peers()
        time.sleep(0.02)


def reference(d, epoch, rank=0, world=1):
    """Batch keys of `epoch` from one daemon alone."""
    with d.client("train", rank=rank, world=world, timeout=20) as c:
        return [batch_key(b) for b in c.epoch(epoch)]


def served(d):
    with d.client("train", timeout=10) as c:
        return c.stats()["batches"]


@pytest.fixture(scope="module")
def trio(tmp_path_factory, ds_mixed):
    """Three daemons with the same config, for the tests that keep them."""
    base = tmp_path_factory.mktemp("multi")
    ds = start_daemons(base, ds_mixed, ["m0", "m1", "m2"])
    yield ds
    for d in ds:
        d.stop()


@pytest.fixture(scope="module")
def ref(trio):
    """Single-daemon keys of epochs 0 and 1 (from m0)."""
    return {e: reference(trio[0], e) for e in (0, 1)}


@pytest.fixture
def fresh(tmp_path, ds_mixed):
    """Factory for daemons of one test (stopped, or killed, at its end)."""
    started = []

    def make(names, server=None):
        ds = start_daemons(tmp_path, ds_mixed, names, server)
        started.extend(ds)
        return ds

    yield make
    stop_all(started)


def test_fan_in_from_three_daemons(trio, ref):
    before = [served(d) for d in trio]
    eps = [d.endpoint for d in trio]
    with cutmixd.Client(eps, timeout=20, resend_timeout=RESEND) as c:
        assert c.window == 12  # 4 per endpoint by default
        wait_connected(c)
        for e in (0, 1):
            keys, by = [], {}
            for b in c.epoch(e):
                keys.append(batch_key(b))
                by[b.endpoint] = by.get(b.endpoint, 0) + 1
            assert keys == ref[e], "epoch %d differs from the single-daemon run" % e
            assert set(by) == set(eps), "epoch %d served by %s only" % (e, by)
        peers = c.peers()
        n = len(ref[0]) + len(ref[1])
        assert sum(p["batches"] for p in peers) == n
        assert sum(p["requests"] for p in peers) <= n + 1 + 3, peers  # + INFO, no resends
        assert c.dropped == 0
    after = [served(d) for d in trio]
    assert all(a > b for a, b in zip(after, before)), (before, after)
    assert sum(after) - sum(before) == n  # exactly once: no daemon computed a batch twice


def test_sigkill_one_daemon_mid_epoch(fresh, ds_mixed):
    ds = fresh(["k0", "k1", "k2"])
    want = reference(ds[0], 0)
    eps = [d.endpoint for d in ds]
    with cutmixd.Client(eps, window=6, timeout=10, resend_timeout=RESEND) as c:
        wait_connected(c)
        keys, gaps, last, killed_at = [], [], time.monotonic(), None
        for b in c.epoch(0):
            now = time.monotonic()
            gaps.append(now - last)
            last = now
            keys.append(batch_key(b))
            # Kill k1 while it owes this client replies (from batch 4 on).
            if killed_at is None and len(keys) >= 4 and (
                    c.peers()[1]["outstanding"] > 0 or len(keys) == 12):
                ds[1].kill()  # SIGKILL
                killed_at = len(keys)
        peers = {p["endpoint"]: p for p in c.peers()}
    assert killed_at is not None
    assert keys == want, "batches lost, repeated or different after the kill"
    stall = max(gaps[killed_at:])
    assert stall < RESEND * 4 + 1.0, "a %.2fs stall after the kill" % stall
    dead = peers[ds[1].endpoint]
    assert dead["state"] in ("not connected", "down"), dead
    assert sum(p["requests"] for p in peers.values()) <= len(want) + 1 + 6, peers


def test_frozen_daemon_is_bypassed_then_used_again(fresh, ds_mixed):
    """SIGSTOP: the connection stays up, the replies stop (a hung host, a
    dead link). After resend_timeout its requests go elsewhere and it is
    marked down; after SIGCONT a probe finds it and it serves again."""
    ds = fresh(["f0", "f1"])
    want = {e: reference(ds[0], e) for e in (0, 1, 2)}
    eps = [d.endpoint for d in ds]
    try:
        with cutmixd.Client(eps, window=4, timeout=10, resend_timeout=RESEND) as c:
            wait_connected(c)
            frozen = thawed = None
            after_thaw, gaps, last = [], [], time.monotonic()
            for e in (0, 1, 2):
                keys = []
                for b in c.epoch(e):
                    now = time.monotonic()
                    gaps.append(now - last)
                    last = now
                    keys.append(batch_key(b))
                    if thawed is not None:
                        after_thaw.append(b.endpoint)
                    if e == 0 and len(keys) == 3:
                        ds[1].proc.send_signal(signal.SIGSTOP)
                        frozen = now
                    if frozen and thawed is None and now - frozen > RESEND * 3:
                        assert c.peers()[1]["state"] == "down", c.peers()
                        ds[1].proc.send_signal(signal.SIGCONT)
                        thawed = now
                    time.sleep(0.03)
                assert keys == want[e], "epoch %d differs" % e
            peers = c.peers()
    finally:
        ds[1].proc.send_signal(signal.SIGCONT)
    assert max(gaps) < RESEND * 4 + 1.0, "a %.2fs stall" % max(gaps)
    assert peers[1]["downs"] >= 1 and peers[1]["resent"] >= 1, peers
    assert ds[1].endpoint in after_thaw, "the thawed daemon was never used again: %s" % peers
    assert sum(p["requests"] for p in peers) <= sum(map(len, want.values())) + 1 + 20, peers


def test_restarted_daemon_is_used_again(fresh, ds_mixed):
    ds = fresh(["r0", "r1"])
    want = {e: reference(ds[0], e) for e in (0, 1)}
    eps = [d.endpoint for d in ds]
    after_restart = []
    with cutmixd.Client(eps, window=4, timeout=10, resend_timeout=RESEND) as c:
        wait_connected(c)
        restarted = None
        for e in (0, 1):
            keys = []
            for b in c.epoch(e):
                keys.append(batch_key(b))
                if restarted is not None:
                    after_restart.append(b.endpoint)
                if e == 0 and len(keys) == 5:
                    ds[1].kill()             # SIGKILL
                    ds[1].start()            # same config, socket and data
                    restarted = time.monotonic()
                time.sleep(0.03)             # a trainer step
            assert keys == want[e], "epoch %d differs after the restart" % e
    assert ds[1].endpoint in after_restart, "the restarted daemon was never used again"
    assert served(ds[1]) > 0  # the new process's own counter


def test_all_daemons_gone_mid_epoch(fresh):
    ds = fresh(["g0", "g1"])
    eps = [d.endpoint for d in ds]
    with cutmixd.Client(eps, window=2, timeout=2.0, resend_timeout=RESEND) as c:
        wait_connected(c)
        got = 0
        t0 = None
        with pytest.raises(cutmixd.TimeoutError) as ei:
            for b in c.epoch(0):
                got += 1
                if got == 3:
                    for d in ds:
                        d.kill()
                    t0 = time.monotonic()
    took = time.monotonic() - t0
    assert took < 2.0 + 1.5, "no error %.2fs after every daemon died" % took
    msg = str(ei.value)
    assert all(ep in msg for ep in eps), msg


free_tcp_port = free_port


def test_no_daemon_at_all(tmp_path):
    eps = ["ipc://%s/none.sock" % short_socket_dir(tmp_path)[0],
           "tcp://127.0.0.1:%d" % free_tcp_port()]
    with cutmixd.Client(eps, timeout=1.5, resend_timeout=RESEND) as c:
        for call in (c.info, lambda: c.batch(0, 0), lambda: list(c.epoch(0))):
            t0 = time.monotonic()
            with pytest.raises(cutmixd.TimeoutError) as ei:
                call()
            took = time.monotonic() - t0
            assert 1.4 < took < 4.0, took
            msg = str(ei.value)
            assert "no daemon reachable" in msg and all(ep in msg for ep in eps), msg
            assert "not connected" in msg


def test_digest_mismatch_names_the_daemon(trio, ref, tmp_path, ds_mixed):
    bad = Daemon(tmp_path / "bad", ds_mixed.config(), PIPELINES,
                 server=dict(SERVER, seed=99), name="bad").start()
    try:
        eps = [trio[0].endpoint, trio[1].endpoint, bad.endpoint]
        with cutmixd.Client(eps, window=6, timeout=10, resend_timeout=RESEND) as c:
            wait_connected(c)
            good = c.info(endpoint=trio[0].endpoint)["config_digest"]  # pins m0's digest
            with pytest.raises(cutmixd.DigestMismatch) as ei:
                for e in (0, 1):
                    list(c.epoch(e))
            err = ei.value
            assert err.endpoint == bad.endpoint and bad.endpoint in str(err)
            assert err.expected == good and err.digest != good
            # The daemon stays refused; the others carry on, same bytes.
            assert [p["state"] for p in c.peers()][2] == "refused"
            assert [batch_key(b) for b in c.epoch(1)] == ref[1]
        # Pinned up front: refused at its first reply, whoever answers first.
        with cutmixd.Client([bad.endpoint, trio[2].endpoint], digest=good, timeout=10) as c:
            with pytest.raises(cutmixd.DigestMismatch) as ei:
                list(c.epoch(0))
            assert ei.value.endpoint == bad.endpoint and "digest= argument" in str(ei.value)
    finally:
        bad.stop()


def test_trainer_killed_and_resumed(trio, ref):
    eps = [d.endpoint for d in trio]
    k = 9
    t = Trainer(eps, epochs=[0], sleep=0.02, timeout=10, resend_timeout=RESEND)
    try:
        first = t.wait_batches(k, timeout=20)
        t.kill()  # SIGKILL: what it consumed is what it read before
    finally:
        t.close()
    assert [ln["k"] for ln in first] == list(range(k))
    t = Trainer(eps, epochs=[0], start=k, timeout=10, resend_timeout=RESEND)
    try:
        assert t.finish(timeout=30) == 0, t.report()
    finally:
        t.close()
    rest = check_epoch(t.lines, 0, ref[0], start=k)
    assert [ln["key"] for ln in first + rest] == ref[0]
    res = t.result()
    assert res and res.get("done"), t.lines[-1:]
    assert sum(p["requests"] for p in res["peers"]) <= len(ref[0]) - k + 1 + 3


@pytest.mark.parametrize("world", [2, 3])
def test_data_parallel_shards(trio, ds_mixed, world):
    eps = [trio[0].endpoint, trio[1].endpoint]
    shards, lengths = [], []
    for rank in range(world):
        with cutmixd.Client(eps, rank=rank, world=world, timeout=20,
                            resend_timeout=RESEND) as c:
            info = c.info()
            got = list(c.epoch(0))
            keys = [batch_key(b) for b in got]
            used = {b.endpoint for b in got}
        assert keys == reference(trio[2], 0, rank, world), "rank %d/%d" % (rank, world)
        assert len(got) == info["batches_per_epoch"]
        meta = np.concatenate([b.meta for b in got])
        assert len(meta) == info["samples_per_rank"]
        lengths.append(len(meta))
        shards.append(meta)
        assert len(used) == 2, "rank %d used %s only" % (rank, used)
    assert len(set(lengths)) == 1, "shards of unequal length: %s" % lengths
    real = [set(m["index"][m["pad"] == 0].tolist()) for m in shards]
    for i in range(world):
        for j in range(i + 1, world):
            assert not real[i] & real[j], "ranks %d and %d share samples" % (i, j)
    assert set().union(*real) == set(range(len(ds_mixed)))
    assert sum(len(r) for r in real) == len(ds_mixed)


# -- the C client over several daemons ----------------------------------------------

def count(args, timeout=60):
    require_binary(COUNT_BIN)
    p = subprocess.run([str(COUNT_BIN)] + [str(a) for a in args], capture_output=True,
                       text=True, timeout=timeout)
    assert p.returncode == 0, "cutmixd-count %s: exit %d\n%s%s" % (
        " ".join(map(str, args)), p.returncode, p.stdout, p.stderr)
    kv = {}
    for line in p.stdout.splitlines():
        k, _, v = line.rpartition(":") if line.startswith("served ") else line.partition(":")
        kv[k.strip()] = v.strip()
    return kv


def test_c_client_fan_in(trio):
    one = count(["-e", trio[0].endpoint, "-p", "train", "-E", 1])
    eps = [d.endpoint for d in trio]
    many = count(["-e", ",".join(eps), "-p", "train", "-E", 1, "-R", 500])
    assert many["checksum"] == one["checksum"] and many["batches"] == one["batches"]
    for ep in eps:
        served_n = int(many["served " + ep].split()[0])
        assert served_n > 0, many
    assert sum(int(many["served " + ep].split()[0]) for ep in eps) == int(one["batches"])


# -- CURVE (client side; fakes, and real daemons when they have [security]) ------------

def curve_pair():
    return cutmixd.curve_keypair()


def fake_endpoint(tmp_path, name):
    return "ipc://%s/%s.sock" % (short_socket_dir(tmp_path)[0], name)


def test_curve_fan_in_over_fake_daemons(tmp_path):
    spub, ssec = curve_pair()
    cpub, csec = curve_pair()
    eps = [fake_endpoint(tmp_path, n) for n in ("c0", "c1")]
    with TinyFake(eps[0], curve_secret=ssec) as f0, TinyFake(eps[1], curve_secret=ssec) as f1:
        with cutmixd.Client(eps, pipeline="train", timeout=5, server_key=spub,
                            public_key=cpub, secret_key=csec) as c:
            assert c.public_key == cpub
            wait_connected(c)
            got = [(b.index, int(b.images[0, 0, 0, 0])) for b in c.epoch(2)]
        assert got == [(k, 32 + k) for k in range(6)]
        assert f0.batches > 0 and f1.batches > 0
        # A client keypair made on the spot (daemons that check no client keys).
        with cutmixd.Client(eps, timeout=5, server_key=spub) as c:
            assert len(c.public_key) == 40 and c.public_key != cpub
            assert len(list(c.epoch(0))) == 6


def test_curve_wrong_server_key_or_none_times_out(tmp_path):
    spub, ssec = curve_pair()
    other, _ = curve_pair()
    ep = fake_endpoint(tmp_path, "cw")
    with TinyFake(ep, curve_secret=ssec) as f:
        with cutmixd.Client(ep, timeout=0.5, server_key=other) as c:
            with pytest.raises(cutmixd.TimeoutError, match="CURVE"):
                c.info()
        with cutmixd.Client(ep, timeout=0.5) as c:  # NULL mechanism: no handshake either
            with pytest.raises(cutmixd.TimeoutError):
                c.info()
        assert not f.requests  # nothing got through


def test_curve_argument_errors():
    spub, _ = curve_pair()
    cpub, csec = curve_pair()
    opub, osec = curve_pair()
    ep = "ipc:///nonexistent/x.sock"
    with pytest.raises(ValueError, match="need server_key"):
        cutmixd.Client(ep, public_key=cpub, secret_key=csec)
    with pytest.raises(ValueError, match="both"):
        cutmixd.Client(ep, server_key=spub, public_key=cpub)
    with pytest.raises(cutmixd.KeyFileError, match="does not belong"):
        cutmixd.Client(ep, server_key=spub, public_key=cpub, secret_key=osec)
    with pytest.raises(cutmixd.KeyFileError, match="server_key: not a Z85"):
        cutmixd.Client(ep, server_key=spub[:39])
    with pytest.raises(cutmixd.KeyFileError):
        cutmixd.Client(ep, server_key="~" * 40)  # '~' is not Z85
    assert issubclass(cutmixd.KeyFileError, ValueError)


def test_key_files(tmp_path):
    # A key with '=' and '#' in it: both are Z85 characters.
    for _ in range(100000):
        pub, sec = curve_pair()
        if "=" in pub and "#" in pub:
            break
    opub, osec = curve_pair()
    key = tmp_path / "alice.key"
    key.write_text("# cutmixd CURVE key pair: keep this file secret\n\n"
                   "public-key = %s\nsecret-key = %s\n" % (pub, sec))
    assert cutmixd.load_keypair(key) == (pub, sec)
    assert cutmixd.load_keypair(str(key)) == (pub, sec)
    assert cutmixd.load_public_key(key) == pub
    zcert = tmp_path / "z.key"
    zcert.write_text("#   ZeroMQ CURVE **Secret** Certificate\nmetadata\ncurve\n"
                     '    public-key = "%s"\n    secret-key = "%s"\n' % (pub, sec))
    assert cutmixd.load_keypair(zcert) == (pub, sec)
    for text in ("# cutmixd CURVE public key\npublic-key = %s\n" % pub, "%s\n" % pub):
        p = tmp_path / "alice.pub"
        p.write_text(text)
        assert cutmixd.load_public_key(p) == pub
        with pytest.raises(cutmixd.KeyFileError, match="no 'secret-key"):
            cutmixd.load_keypair(p)
    bad = tmp_path / "bad.key"
    for text, msg in [
            ("public-key = %s\nsecret-key = %s\n" % (pub, osec), "does not belong"),
            ("# x\npublic-key = %s\n" % pub[:39], r"bad.key:2: public-key: not a Z85"),
            ("hello world\n", r"bad.key:1: expected"),
            ("public-key = %s\npublic-key = %s\n" % (pub, opub),
             r"bad.key:2: public-key given twice"),
            ("secret-key = %s\n" % sec, "no 'public-key")]:
        bad.write_text(text)
        with pytest.raises(cutmixd.KeyFileError, match=msg):
            cutmixd.load_keypair(bad)
    with pytest.raises(cutmixd.KeyFileError, match="cannot read"):
        cutmixd.load_keypair(tmp_path / "missing.key")


def keygen(folder, name):
    """`cutmixd keygen NAME` in folder: True, or False when this daemon
    build has no keygen."""
    require_binary(BIN)
    p = subprocess.run([str(BIN), "keygen", name], cwd=str(folder), capture_output=True,
                       text=True, timeout=20)
    return p.returncode == 0 and (Path(folder) / (name + ".key")).exists()


def test_curve_fan_in_over_real_daemons(tmp_path, ds_mixed, ref):
    keys = tmp_path / "keys"
    (keys / "clients").mkdir(parents=True)
    if not (keygen(keys, "server") and keygen(keys / "clients", "alice")):
        pytest.skip("this bin/cutmixd has no `cutmixd keygen` ([security] not built in)")
    keygen(keys, "mallory")
    security = {"curve_secret_key_file": keys / "server.key",
                "authorized_keys": keys / "clients"}
    ds = []
    try:
        for name in ("s0", "s1"):
            ds.append(Daemon(tmp_path / name, ds_mixed.config(), PIPELINES,
                                  server=dict(SERVER), name=name, security=security).start())
        eps = [d.endpoint for d in ds]
        pub, sec = cutmixd.load_keypair(keys / "clients" / "alice.key")
        server = cutmixd.load_public_key(keys / "server.pub")
        with cutmixd.Client(eps, timeout=10, resend_timeout=RESEND, server_key=server,
                            public_key=pub, secret_key=sec) as c:
            wait_connected(c)
            got = list(c.epoch(0))
            assert [batch_key(b) for b in got] == ref[0]  # keys are not in the digest
            assert {b.endpoint for b in got} == set(eps)
        mpub, msec = cutmixd.load_keypair(keys / "mallory.key")
        with cutmixd.Client(eps, timeout=1.0, server_key=server, public_key=mpub,
                            secret_key=msec) as c:
            with pytest.raises(cutmixd.TimeoutError):
                c.info()
    finally:
        for d in ds:
            d.stop(check=False)
