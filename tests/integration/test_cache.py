"""`[server] batch_cache_mb`: recently built batches answered again from a
bounded cache, keyed by (config digest, pipeline, epoch, rank, world,
batch index).

- two clients streaming the same epoch at the same time cost one
  computation per batch (cache_misses = batches per epoch, the other
  requests are cache_hits), and get exactly the bytes a daemon without the
  cache sends;
- the cache never holds more than its budget, and the daemon's memory
  stays bounded while epochs far larger than the budget stream through;
- a reload that changes the digest never serves an old entry;
- a failed batch is not cached: every request for it gets the error.
"""

import os
import signal
import threading
import time

import pytest

import gen_dataset
from helpers import SANITIZER, Daemon

TRAIN = dict(batch_size=8, size=32, cutmix_alpha=1.0, mixup_alpha=0.5, cutout_size=8,
             flip=0.5)
N_IMAGES = 40


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("ds_cache")
    gen_dataset.make_dataset(root, classes=4, per_class=N_IMAGES // 4, size=(48, 40), seed=3)
    return {"root": str(root)}


def frames(b):
    """What a batch is, byte for byte, without the request id (16..23)."""
    h = bytes(b.raw_frames[0])
    return (h[:16] + h[24:],) + tuple(bytes(f) for f in b.raw_frames[1:])


def epoch_bytes(client, epoch, rank=0, world=1):
    return {b.index: frames(b) for b in client.epoch(epoch)}


def wait_log(d, text, after, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in d.log()[after:]:
            return
        time.sleep(0.02)
    raise AssertionError("no %r in the log within %gs:\n%s" % (text, timeout, d.tail()))


def test_two_clients_one_computation_same_bytes(tmp_path, dataset):
    ref = Daemon(tmp_path / "ref", dataset, {"train": TRAIN})
    with ref:
        with ref.client("train") as c:
            want = {e: epoch_bytes(c, e) for e in (0, 1)}
            bpe = c.batches_per_epoch()
        assert ref.client("train").stats()["cache_misses"] == 0  # off by default

    d = Daemon(tmp_path / "cached", dataset, {"train": TRAIN}, server={"batch_cache_mb": 64})
    with d:
        got, errors = {}, []

        def stream(name):
            try:
                with d.client("train") as c:
                    got[name] = {e: epoch_bytes(c, e) for e in (0, 1)}
            except Exception as exc:  # reported below
                errors.append(exc)

        threads = [threading.Thread(target=stream, args=(n,)) for n in ("a", "b")]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        assert not errors, errors
        assert got["a"] == want and got["b"] == want  # bytes equal, no cache or cache
        st = d.client("train").stats()
        assert st["cache_misses"] == 2 * bpe, st           # one computation per batch
        assert st["cache_hits"] == 2 * bpe, st             # the other client's requests
        assert st["images"] == 2 * 2 * N_IMAGES, st        # both were served in full
        assert st["cache_entries"] == 2 * bpe
        assert 0 < st["cache_bytes"] <= 64 << 20

        # A third trainer later (a sweep's next job) is served from memory.
        with d.client("train") as c:
            assert epoch_bytes(c, 0) == want[0]
        st2 = d.client("train").stats()
        assert st2["cache_misses"] == st["cache_misses"]
        assert st2["cache_hits"] == st["cache_hits"] + bpe
        # Another shard of the same epoch is other bytes: not a hit.
        with d.client("train", rank=1, world=2) as c:
            r1 = epoch_bytes(c, 0)
        assert d.client("train").stats()["cache_misses"] == st["cache_misses"] + len(r1)
    assert all(r1[i] != want[0][i] for i in r1)


def rss_of(pid):
    with open("/proc/%d/statm" % pid) as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def test_budget_is_never_exceeded(tmp_path, tmp_path_factory):
    root = tmp_path_factory.mktemp("ds_cache_big")
    gen_dataset.make_dataset(root, classes=2, per_class=32, size=(160, 160), seed=9)
    pipe = dict(batch_size=8, size=160, flip=0.5)       # 600 KiB per batch
    budget = 1 << 20
    d = Daemon(tmp_path, {"root": str(root)}, {"train": pipe}, server={"batch_cache_mb": 1})
    with d:
        with d.client("train") as c:
            list(c.epoch(0))
            rss0 = rss_of(d.proc.pid)
            streamed = 0
            for e in range(1, 9):                        # 8 epochs, 38 MiB of batches
                for b in c.epoch(e):
                    streamed += sum(len(f) for f in b.raw_frames[1:])
                    st = c.stats()
                    assert st["cache_bytes"] <= budget, st
                    assert st["cache_entries"] <= 1, st
            rss1 = rss_of(d.proc.pid)
            # Entries were evicted: replaying an old epoch computes again.
            before = c.stats()["cache_misses"]
            n = len(list(c.epoch(1)))
            assert c.stats()["cache_misses"] == before + n
    assert streamed > 30 * budget
    # Without eviction the daemon would hold every batch streamed; with it,
    # RSS grows by at most the budget (plus allocator slack). ASan's
    # quarantine keeps freed memory resident, so RSS says nothing there.
    if SANITIZER is None:
        assert rss1 - rss0 < budget + (4 << 20), (rss0, rss1, streamed)


def test_reload_never_serves_old_entries(tmp_path, dataset):
    d = Daemon(tmp_path / "d", dataset, {"train": dict(TRAIN)}, server={"batch_cache_mb": 64})
    with d:
        with d.client("train") as c:
            old = epoch_bytes(c, 0)
            assert epoch_bytes(c, 0) == old
            st = c.stats()
            assert st["cache_hits"] == len(old) and st["cache_entries"] == len(old)
            d.server["seed"] = 999                      # every batch changes
            d.write_config()
            mark = len(d.log())
            d.proc.send_signal(signal.SIGHUP)
            wait_log(d, "reload: config digest", mark)
            st = c.stats()
            assert st["cache_entries"] == 0 and st["cache_bytes"] == 0, st
            new = epoch_bytes(c, 0)
            st2 = c.stats()
            assert st2["cache_hits"] == st["cache_hits"], st2   # nothing old was served
            assert st2["cache_misses"] == st["cache_misses"] + len(new)
    assert all(new[i] != old[i] for i in new)
    fresh = Daemon(tmp_path / "fresh", dataset, {"train": dict(TRAIN)},
                   server={"seed": 999})
    with fresh:
        with fresh.client("train") as c:
            assert epoch_bytes(c, 0) == new


def test_failed_batch_is_not_cached(tmp_path, tmp_path_factory):
    import cutmixd
    root = tmp_path_factory.mktemp("ds_cache_bad")
    gen_dataset.make_dataset(root, classes=2, per_class=4, size=(32, 32), seed=4)
    victim = sorted(p for p in root.rglob("*.jpg"))[0]
    victim.write_bytes(b"this is not a jpeg")
    d = Daemon(tmp_path, {"root": str(root)}, {"train": dict(batch_size=8, size=32,
                                                             shuffle=False)},
               server={"batch_cache_mb": 8, "on_decode_error": "fail"})
    with d:
        for _ in range(2):
            with d.client("train") as c:
                with pytest.raises(cutmixd.DaemonError) as e:
                    c.batch(0, 0)
                assert "not a jpeg" in str(e.value).lower() or "decode" in str(e.value).lower()
        st = d.client("train").stats()
        assert st["cache_entries"] == 0 and st["cache_hits"] == 0, st
        assert st["cache_misses"] == 2
        assert d.alive()
