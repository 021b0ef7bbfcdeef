"""One epoch, one config digest (issue 14 item 11): a real daemon reloaded
(SIGHUP) mid-epoch with a changed dataset makes the Python client raise
EpochChanged, or restart the epoch under the new config when asked to;
never a silent mix of two dataset generations."""

import shutil

import numpy as np
import pytest

import cutmixd
import gen_dataset
from helpers import sighup_and_wait

PIPELINES = {"train": dict(batch_size=4, size=32, crop="random_resized", flip=0.5)}
N_BATCHES = 10  # 40 images / 4


@pytest.fixture
def grown(tmp_path):
    """A 40-image dataset, and a second generation of it (8 files fewer or
    8 more) to swap in."""
    root = tmp_path / "data"
    gen_dataset.make_dataset(root, classes=4, per_class=10, size=(48, 40), seed=3)
    return root


def change(root, how):
    if how == "shrink":
        for p in sorted((root / sorted(x.name for x in root.iterdir())[0]).iterdir())[:8]:
            p.unlink()
    else:
        extra = root.parent / "extra"
        gen_dataset.make_dataset(extra, classes=1, per_class=8, size=(48, 40), seed=9)
        for p in extra.iterdir():
            shutil.move(str(p), str(root / ("zz_" + p.name)))


def read_until_change(d, root, how, **kw):
    got = []
    with d.client("train", window=2, **kw) as c:
        it = c.epoch(1)
        for _ in range(3):
            got.append(next(it))
        change(root, how)
        line = sighup_and_wait(d, "reload: config digest")
        for b in it:
            got.append(b)
        return got, c, line


@pytest.mark.parametrize("how", ["shrink", "grow"])
def test_reload_mid_epoch_raises(daemon, grown, how):
    d = daemon({"root": str(grown)}, PIPELINES)
    with pytest.raises(cutmixd.EpochChanged) as ei:
        read_until_change(d, grown, how)
    e = ei.value
    assert e.epoch == 1 and e.yielded >= 3 and e.digest != e.expected
    assert "in the middle of epoch 1" in str(e) and "on_reload='restart'" in str(e)
    # The daemon keeps serving: a new iteration follows the new config whole.
    with d.client("train") as c:
        n = 32 if how == "shrink" else 48
        assert c.info()["dataset_size"] == n
        idx = np.concatenate([b.meta["index"] for b in c.epoch(1)])
        assert sorted(idx.tolist()) == list(range(n))


def test_reload_mid_epoch_restart(daemon, grown):
    d = daemon({"root": str(grown)}, PIPELINES)
    got, c, _ = read_until_change(d, grown, "shrink", on_reload="restart")
    assert c.epoch_restarts == 1
    # The batches after the restart are the whole epoch of the new config,
    # byte for byte what a fresh client gets, every sample exactly once.
    new = [b for b in got if b.digest != got[0].digest]
    assert [b.index for b in new] == list(range(8))
    with d.client("train") as fresh:
        want = list(fresh.epoch(1))
    assert [bytes(b.raw_frames[1]) for b in new] == [bytes(b.raw_frames[1]) for b in want]
    idx = np.concatenate([b.meta["index"] for b in new])
    assert sorted(idx.tolist()) == list(range(32))
    old = [b for b in got if b.digest == got[0].digest]
    assert [b.index for b in old] == list(range(len(old)))


def test_on_reload_checked():
    with pytest.raises(ValueError, match="on_reload must be 'error' or 'restart'"):
        cutmixd.Client("ipc:///nonexistent/x", on_reload="ignore")


def test_reload_between_epochs_is_quiet_and_asks_once(daemon, grown):
    """A reload between two epochs is no error: the next epoch is served
    whole from the new digest, each batch asked for once (the client sees
    the new digest on the first replies and adopts it, nothing re-sent)."""
    d = daemon({"root": str(grown)}, PIPELINES)
    with d.client("train", window=4) as c:
        first = list(c.epoch(0))
        d.server["seed"] = 77
        d.write_config()
        sighup_and_wait(d, "reload: config digest")
        before = c.stats()["requests"]
        second = list(c.epoch(1))
        after = c.stats()["requests"]
    assert len(second) == N_BATCHES and len({b.digest for b in second}) == 1
    assert second[0].digest != first[0].digest and c.epoch_restarts == 0
    assert after - before == N_BATCHES + 2  # the batches, one INFO, the STATS
